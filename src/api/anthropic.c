/* Anthropic Messages API: content[] blocks of type text (not streamed) and the text_delta events
 * of each content block (streamed, one stream key per content block index). No Anthropic event
 * repeats a block's text, so only the deltas change; what the core still holds when a block stops
 * goes out in a content_block_delta astgate adds before the stop. Code in tool calls: the input
 * object of each tool_use block whose tool carries code (not streamed, rewritten in place);
 * streamed, the block's input_json_delta events are held until its content_block_stop, then go
 * out as they came or as the rewritten input. Every other byte is kept. */
#include "api.h"
#include "changes.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_MATCHES 4096       /* values found in a body */
#define MAX_EVENT_MATCHES 1024 /* values found in one event */
#define MAX_BLOCKS 256         /* content blocks tracked per stream; later ones pass unchanged */

static int put(ag_buf_t *b, const char *s)
{
    return ag_buf_append(b, s, strlen(s));
}

/* ---- not streamed ---- */

enum { B_TEXT, B_MODEL, B_TOOL_NAME, B_TOOL_ID, B_TOOL_INPUT, B_NPATHS };

/* The last match of path for content block idx in m[0, n) (JavaScript keeps the last of
 * duplicate keys), or NULL. */
static const ag_jscan_match_t *block_member(const ag_jscan_match_t *m, size_t n, int path,
                                            size_t idx)
{
    const ag_jscan_match_t *found = NULL;
    for (size_t i = 0; i < n; i++)
        if (m[i].path == path && m[i].idx[0] == idx)
            found = &m[i];
    return found;
}

/* A tool_use block's input (the token m: JSON text, code escaped once, as ag_toolcode_rewrite
 * takes it) rewritten in place when its tool carries code; anything else leaves it as it came. */
static int body_tool(ag_api_env_t *env, ag_api_stats_t *st, ag_str_t body,
                     const ag_jscan_match_t *m, size_t n, const ag_jscan_match_t *input,
                     ag_buf_t *scratch, ag_buf_t *out, ag_changes_t *ch)
{
    const ag_jscan_match_t *name = block_member(m, n, B_TOOL_NAME, input->idx[0]);
    const ag_jscan_match_t *id = block_member(m, n, B_TOOL_ID, input->idx[0]);
    if (name == NULL)
        return AG_OK;
    ag_buf_reset(scratch);
    if (ag_jscan_decode(body, name->off, name->len, scratch, NULL, 0, NULL) != AG_OK)
        return AG_OK;
    size_t name_len = scratch->len;
    if (ag_tools_find(env->tools, ag_buf_str(scratch)) == NULL)
        return AG_OK;
    if (id && ag_jscan_decode(body, id->off, id->len, scratch, NULL, 0, NULL) != AG_OK)
        return AG_OK;
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_str(scratch->ptr, name_len);
    call.id = ag_str(scratch->ptr + name_len, scratch->len - name_len);
    call.input = AG_TOOL_IN_ARGS;
    bool changed = false;
    ag_buf_reset(out);
    int rc = ag_api_tool_rewrite(env, st, (int)(input->idx[0] & 0x7fffffff), &call,
                                 ag_jscan_token(body, input), out, &changed);
    if (rc != AG_OK || !changed)
        return AG_OK; /* passed through as it came (the reason, if any, was logged) */
    return ag_changes_raw(ch, input, ag_buf_str(out));
}

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    static const char *const pats[B_NPATHS] = {
        "content[*]{type=text}.text",      "model",
        "content[*]{type=tool_use}.name",  "content[*]{type=tool_use}.id",
        "content[*]{type=tool_use}.input",
    };
    ag_jscan_path_t paths[B_NPATHS];
    for (int i = 0; i < B_NPATHS; i++)
        if (ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]),
                                  i == B_TOOL_INPUT ? AG_JSCAN_OBJECT : AG_JSCAN_STRING) != AG_OK)
            return AG_EINVAL;
    ag_jscan_match_t *m = ag_xmalloc(MAX_MATCHES * sizeof(*m));
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t plain, rewritten;
    ag_buf_init(&plain, 64u << 20);
    ag_buf_init(&rewritten, 128u << 20);
    size_t n = 0;
    int rc = ag_jscan_find(body, paths, B_NPATHS, m, MAX_MATCHES, &n, NULL);
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if (m[i].path == B_MODEL) {
            if (env->model.len == 0 && m[i].len >= 2)
                env->model = ag_str(body.ptr + m[i].off + 1, m[i].len - 2); /* body outlives */
            continue;
        }
        if (m[i].path == B_TOOL_INPUT) {
            rc = body_tool(env, st, body, m, n, &m[i], &plain, &rewritten, &ch);
            continue;
        }
        if (m[i].path != B_TEXT)
            continue;
        ag_buf_reset(&plain);
        rc = ag_jscan_decode(body, m[i].off, m[i].len, &plain, NULL, 0, NULL);
        if (rc != AG_OK)
            break;
        ag_result_t res;
        ag_buf_reset(&rewritten);
        rc = ag_engine_rewrite(env->engine, ag_buf_str(&plain), &rewritten, &res);
        if (rc != AG_OK)
            break;
        ag_reply_summary_t sum;
        memset(&sum, 0, sizeof(sum));
        ag_api_report(env, m[i].idx[0], &res, &sum);
        if (env->on_reply)
            env->on_reply(env->ud, (int)(m[i].idx[0] & 0x7fffffff), &sum);
        ag_api_stats_add(st, &res);
        rc = ag_changes_result(&ch, body, &m[i], &res, ag_buf_str(&rewritten));
    }
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, body, out);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&plain);
    ag_buf_dispose(&rewritten);
    free(m);
    return rc == AG_OK ? AG_OK : AG_EINVAL;
}

/* ---- streamed ---- */

enum {
    P_TYPE,
    P_INDEX,
    P_DELTA,
    P_START,
    P_MODEL,
    P_TOOL_NAME,
    P_TOOL_ID,
    P_JSON,
    P_NPATHS,
};

#define CALL_ID_MAX 128 /* bytes of a call id kept for the audit log (Anthropic's are ~30) */
#define CALL_CHUNK 4096 /* bytes of input text per content_block_delta astgate writes */

/* A tool_use block whose tool carries code, from its content_block_start to its stop. */
typedef enum call_state {
    C_HELD,     /* its input_json_delta events are held until content_block_stop */
    C_RELEASED, /* past the hold limit: what was held went out as it came, the rest passes */
} call_state_t;

typedef struct held_call {
    call_state_t state;
    char name[AG_TOOL_NAME_MAX]; /* the tool (ag_tools_find knows it, so it fits) */
    char id[CALL_ID_MAX];        /* the call id, cut to fit (audit log only) */
    ag_buf_t json;               /* '"' + the raw contents of each partial_json string token:
                                    one JSON string token once closed (escapes never straddle
                                    tokens), whose decoded text is the input's JSON text */
    ag_buf_t frames;             /* per held event, its bytes around its partial_json contents
                                    (see hold_event): the events come back byte for byte */
    ag_str_t pre, post;          /* the last frame's bytes, as offsets into frames (ptr holds
                                    the offset): most frames repeat them */
} held_call_t;

typedef struct an_stream {
    ag_api_env_t *env;
    ag_api_stats_t *st;
    ag_sse_parser_t sse;
    ag_stream_t *core;
    ag_buf_t *out;    /* the client bytes of the current feed */
    ag_buf_t data;    /* the current event's data (a copy: the SSE view is short-lived) */
    ag_buf_t text;    /* what the core let through */
    ag_buf_t plain;   /* scratch: a decoded string */
    ag_buf_t spliced; /* the current event, rewritten */
    ag_buf_t added;   /* an event astgate adds */
    ag_changes_t ch;  /* changes to the current event */
    ag_jscan_path_t paths[P_NPATHS];
    ag_jscan_match_t *m;
    bool open[MAX_BLOCKS]; /* text went to the core and the block has not stopped */
    ag_reply_summary_t sum[MAX_BLOCKS];
    held_call_t *call[MAX_BLOCKS]; /* owned; NULL: not a tool_use block we hold */
    size_t max_held;               /* bytes held per call (input text and frames) */
    ag_buf_t input;                /* scratch: a held call's input text (or a tool's name) */
    ag_buf_t output;               /* scratch: the rewritten input */
    char model[256];
    bool ended; /* a block rule ended the stream */
} an_stream_t;

static void on_core_wait(void *ud, uint64_t key, uint64_t wait_ns, size_t bytes)
{
    an_stream_t *as = ud;
    ag_api_report_wait(as->env, wait_ns);
}

static void on_core_result(void *ud, uint64_t key, const ag_result_t *res)
{
    an_stream_t *as = ud;
    ag_api_stats_add(as->st, res);
    ag_reply_summary_t scratch;
    memset(&scratch, 0, sizeof(scratch));
    ag_api_report(as->env, key, res, key < MAX_BLOCKS ? &as->sum[key] : &scratch);
}

static void *stream_new(ag_api_env_t *env, ag_api_stats_t *st)
{
    an_stream_t *as = ag_xcalloc(1, sizeof(*as));
    as->env = env;
    as->st = st;
    ag_sse_init(&as->sse, AG_SSE_MAX_EVENT_DEFAULT);
    as->core = ag_stream_new(env->engine, env->max_held, on_core_result, as);
    ag_stream_set_hold(as->core, env->hold);
    ag_stream_set_wait(as->core, on_core_wait);
    ag_buf_init(&as->data, 64u << 20);
    ag_buf_init(&as->text, 64u << 20);
    ag_buf_init(&as->plain, 64u << 20);
    ag_buf_init(&as->spliced, 256u << 20);
    ag_buf_init(&as->added, 64u << 20);
    ag_changes_init(&as->ch);
    as->max_held = env->max_held ? env->max_held : (4u << 20);
    ag_buf_init(&as->input, 256u << 20);
    ag_buf_init(&as->output, 256u << 20);
    as->m = ag_xmalloc(MAX_EVENT_MATCHES * sizeof(*as->m));
    static const char *const pats[P_NPATHS] = {
        "type",
        "index",
        "delta{type=text_delta}.text",
        "content_block{type=text}.text",
        "message.model",
        "content_block{type=tool_use}.name",
        "content_block{type=tool_use}.id",
        "delta{type=input_json_delta}.partial_json",
    };
    for (int i = 0; i < P_NPATHS; i++) {
        int rc = ag_jscan_path_compile(&as->paths[i], ag_cstr(pats[i]),
                                       i == P_INDEX ? AG_JSCAN_NUMBER : AG_JSCAN_STRING);
        AG_ASSERT(rc == AG_OK);
    }
    return as;
}

static void call_free(an_stream_t *as, int index)
{
    held_call_t *c = as->call[index];
    if (c == NULL)
        return;
    ag_buf_dispose(&c->json);
    ag_buf_dispose(&c->frames);
    free(c);
    as->call[index] = NULL;
}

static void stream_free(void *state)
{
    an_stream_t *as = state;
    if (as == NULL)
        return;
    ag_sse_dispose(&as->sse);
    ag_api_report_hold(as->env, as->core); /* every stream once, however it ended */
    ag_stream_free(as->core);
    ag_buf_dispose(&as->data);
    ag_buf_dispose(&as->text);
    ag_buf_dispose(&as->plain);
    ag_buf_dispose(&as->spliced);
    ag_buf_dispose(&as->added);
    ag_changes_dispose(&as->ch);
    for (int i = 0; i < MAX_BLOCKS; i++)
        call_free(as, i);
    ag_buf_dispose(&as->input);
    ag_buf_dispose(&as->output);
    free(as->m);
    free(as);
}

/* An item as it came; an event cut off at the end of the stream gets its blank line (the
 * Anthropic SDK drops an event without one). */
static int raw_item(ag_buf_t *out, const ag_sse_item_t *it)
{
    size_t len = out->len;
    int rc = ag_buf_append(out, it->raw.ptr, it->raw.len);
    if (rc == AG_OK && it->kind == AG_SSE_EVENT && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(out, "\n\n", eol ? 1 : 2);
        if (rc != AG_OK)
            out->len = len;
    }
    return rc;
}

/* Passes an item on as it came. */
static int pass_raw(an_stream_t *as, const ag_sse_item_t *it)
{
    return raw_item(as->out, it);
}

static int emit_block_error(an_stream_t *as)
{
    char msg[768];
    const char *rule = as->st->blocked_rule ? as->st->blocked_rule : "";
    snprintf(msg, sizeof(msg), "astgate blocked the reply: %s (rule %s)",
             as->st->blocked_message && as->st->blocked_message[0] ? as->st->blocked_message : rule,
             rule);
    ag_buf_reset(&as->added);
    int rc = put(&as->added, "{\"type\":\"error\",\"error\":{\"type\":\"astgate_blocked\","
                             "\"message\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(&as->added, ag_cstr(msg));
    if (rc == AG_OK)
        rc = put(&as->added, "}}");
    if (rc == AG_OK)
        rc = ag_sse_write_event(as->out, AG_STR_LIT("error"), ag_buf_str(&as->added));
    as->ended = true;
    return rc;
}

/* A content_block_delta astgate adds: text the core held for a block that is ending. */
static int emit_delta(an_stream_t *as, int index, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
    ag_buf_reset(&as->added);
    int rc = ag_buf_appendf(&as->added,
                            "{\"type\":\"content_block_delta\",\"index\":%d,"
                            "\"delta\":{\"type\":\"text_delta\",\"text\":",
                            index);
    if (rc == AG_OK)
        rc = ag_json_append_str(&as->added, text);
    if (rc == AG_OK)
        rc = put(&as->added, "}}");
    if (rc == AG_OK)
        rc = ag_sse_write_event(as->out, AG_STR_LIT("content_block_delta"), ag_buf_str(&as->added));
    return rc;
}

/* A block's text is complete: what the core still held goes out before the event that ends it. */
static int finish_block(an_stream_t *as, int index)
{
    if (index < 0 || index >= MAX_BLOCKS || !as->open[index])
        return AG_OK;
    as->open[index] = false;
    ag_stream_status_t status;
    ag_buf_reset(&as->text);
    int rc = ag_stream_finish(as->core, (uint64_t)index, &as->text, &status);
    if (as->env->on_reply)
        as->env->on_reply(as->env->ud, index, &as->sum[index]);
    if (rc == AG_OK)
        rc = emit_delta(as, index, ag_buf_str(&as->text));
    if (rc == AG_OK && status == AG_STREAM_BLOCKED)
        rc = emit_block_error(as);
    return rc;
}

static int finish_all(an_stream_t *as)
{
    for (int i = 0; i < MAX_BLOCKS && !as->ended; i++) {
        int rc = finish_block(as, i);
        if (rc != AG_OK)
            return rc;
    }
    return AG_OK;
}

/* ---- tool calls ---- */

/* Bytes of the character of a JSON text at s[i]: inside a string an escape (a surrogate pair's
 * two \u escapes count as one character), else a UTF-8 sequence, else one byte. Cutting between
 * such characters never splits an escape, a pair or a multi-byte character. */
static size_t json_char(ag_str_t s, size_t i, bool in_string)
{
    size_t n = 1;
    if (in_string && s.ptr[i] == '\\') {
        n = 2;
        if (i + 1 < s.len && s.ptr[i + 1] == 'u') {
            n = 6;
            bool high = i + 3 < s.len && (s.ptr[i + 2] == 'd' || s.ptr[i + 2] == 'D') &&
                        strchr("89abAB", s.ptr[i + 3]) != NULL && s.ptr[i + 3] != '\0';
            if (high && i + 7 < s.len && s.ptr[i + 6] == '\\' && s.ptr[i + 7] == 'u')
                n = 12;
        }
    } else {
        while (i + n < s.len && n < 4 && ((unsigned char)s.ptr[i + n] & 0xc0) == 0x80)
            n++;
    }
    return n < s.len - i ? n : s.len - i;
}

/* The input's JSON text for block index as content_block_delta events astgate writes, cut
 * between characters (json_char) every CALL_CHUNK bytes or so; escaped in style (the upstream's
 * partial_json style). */
static int emit_call_text(an_stream_t *as, int index, ag_str_t text, unsigned style)
{
    bool in_string = false;
    int rc = AG_OK;
    for (size_t pos = 0; pos < text.len && rc == AG_OK;) {
        size_t end = pos;
        while (end < text.len && end - pos < CALL_CHUNK) {
            size_t n = json_char(text, end, in_string);
            if (n == 1 && text.ptr[end] == '"')
                in_string = !in_string;
            end += n;
        }
        ag_buf_reset(&as->added);
        rc = ag_buf_appendf(&as->added,
                            "{\"type\":\"content_block_delta\",\"index\":%d,"
                            "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"",
                            index);
        if (rc == AG_OK)
            rc = ag_jscan_escape(&as->added, ag_str(text.ptr + pos, end - pos), style);
        if (rc == AG_OK)
            rc = put(&as->added, "\"}}");
        if (rc == AG_OK)
            rc = ag_sse_write_event(as->out, AG_STR_LIT("content_block_delta"),
                                    ag_buf_str(&as->added));
        pos = end;
    }
    return rc;
}

static ag_tool_call_t call_of(const held_call_t *c)
{
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(c->name);
    call.id = ag_cstr(c->id);
    call.input = AG_TOOL_IN_ARGS;
    return call;
}

/* A frame record in held_call_t.frames: this header, then the pre bytes unless pre_len is
 * FRAME_SAME (the previous frame's), then the post bytes likewise. An event's raw bytes are pre
 * + its partial_json contents (json_len bytes of held_call_t.json) + post; when its data is not a
 * view into its raw bytes (several data lines), pre is the whole event and inline is false. */
typedef struct frame {
    uint32_t json_len; /* bytes this event added to held_call_t.json */
    uint32_t pre_len;
    uint32_t post_len;
    uint32_t inline_json; /* the contents sit between pre and post */
} frame_t;

#define FRAME_SAME UINT32_MAX

/* Whether part is the frame bytes last (an offset into frames in ptr) stands for. */
static bool frame_same(const ag_buf_t *frames, ag_str_t last, ag_str_t part)
{
    return last.len == part.len &&
           (part.len == 0 || memcmp(frames->ptr + (uintptr_t)last.ptr, part.ptr, part.len) == 0);
}

/* Holds an input_json_delta event of call c whose partial_json is the string token m of its data
 * json (a copy of it->data). AG_ETOOBIG past the hold limit, with c as it was. */
static int hold_event(an_stream_t *as, held_call_t *c, const ag_sse_item_t *it, ag_str_t json,
                      const ag_jscan_match_t *m)
{
    ag_str_t contents = ag_str(json.ptr + m->off + 1, m->len - 2);
    ag_str_t pre = it->raw, post = AG_STR_LIT("");
    /* the contents are cut out of the raw bytes when the data is a view into them (one data
     * line) and the event is whole; else the frame keeps the whole event */
    bool view = !it->eof && it->data.ptr >= it->raw.ptr &&
                it->data.ptr + it->data.len <= it->raw.ptr + it->raw.len;
    if (view) {
        size_t at = (size_t)(it->data.ptr - it->raw.ptr) + m->off + 1;
        pre = ag_str(it->raw.ptr, at);
        post = ag_str(it->raw.ptr + at + contents.len, it->raw.len - at - contents.len);
    }
    size_t need = 1 + contents.len + sizeof(frame_t) + pre.len + post.len + 2;
    if (c->json.len + c->frames.len + need > as->max_held || need >= FRAME_SAME)
        return AG_ETOOBIG;
    size_t json_len = c->json.len, frames_len = c->frames.len;
    frame_t f;
    memset(&f, 0, sizeof(f));
    f.json_len = (uint32_t)(contents.len + (c->json.len == 0));
    f.inline_json = view;
    bool same_pre = view && frame_same(&c->frames, c->pre, pre);
    bool same_post = view && frame_same(&c->frames, c->post, post);
    f.pre_len = same_pre ? FRAME_SAME : (uint32_t)pre.len;
    f.post_len = same_post ? FRAME_SAME : (uint32_t)post.len;
    ag_str_t none = {NULL, 0}; /* after a whole event, no frame repeats bytes */
    ag_str_t new_pre = view ? c->pre : none, new_post = view ? c->post : none;
    int rc = c->json.len == 0 ? ag_buf_appendc(&c->json, '"') : AG_OK;
    if (rc == AG_OK)
        rc = ag_buf_append(&c->json, contents.ptr, contents.len);
    if (rc == AG_OK)
        rc = ag_buf_append(&c->frames, &f, sizeof(f));
    if (rc == AG_OK && !same_pre) {
        if (view)
            new_pre = ag_str((const char *)(uintptr_t)c->frames.len, pre.len);
        rc = ag_buf_append(&c->frames, pre.ptr, pre.len);
    }
    if (rc == AG_OK && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(&c->frames, "\n\n", eol ? 1 : 2); /* its blank line */
        if (rc == AG_OK) {
            f.pre_len += eol ? 1 : 2;
            memcpy(c->frames.ptr + frames_len, &f, sizeof(f));
        }
    } else if (rc == AG_OK && view && !same_post) {
        new_post = ag_str((const char *)(uintptr_t)c->frames.len, post.len);
        rc = ag_buf_append(&c->frames, post.ptr, post.len);
    }
    if (rc != AG_OK) {
        c->json.len = json_len;
        c->frames.len = frames_len;
        return rc;
    }
    c->pre = new_pre;
    c->post = new_post;
    return AG_OK;
}

/* Writes the held events of c to out as they came. */
static int unhold(const held_call_t *c, ag_buf_t *out)
{
    if (c->frames.len == 0)
        return AG_OK;
    const char *fp = c->frames.ptr, *end = c->frames.ptr + c->frames.len;
    const char *jp = c->json.ptr;
    ag_str_t pre = AG_STR_LIT(""), post = AG_STR_LIT("");
    int rc = AG_OK;
    while (rc == AG_OK && fp + sizeof(frame_t) <= end) {
        frame_t f;
        memcpy(&f, fp, sizeof(f));
        fp += sizeof(f);
        if (!f.inline_json) {
            rc = ag_buf_append(out, fp, f.pre_len);
            fp += f.pre_len;
            jp += f.json_len;
            pre = post = AG_STR_LIT("");
            continue;
        }
        if (f.pre_len != FRAME_SAME) {
            pre = ag_str(fp, f.pre_len);
            fp += f.pre_len;
        }
        if (f.post_len != FRAME_SAME) {
            post = ag_str(fp, f.post_len);
            fp += f.post_len;
        }
        size_t skip = jp == c->json.ptr; /* the opening quote */
        rc = ag_buf_append(out, pre.ptr, pre.len);
        if (rc == AG_OK)
            rc = ag_buf_append(out, jp + skip, f.json_len - skip);
        if (rc == AG_OK)
            rc = ag_buf_append(out, post.ptr, post.len);
        jp += f.json_len;
    }
    return rc;
}

/* What a call held goes out as it came, and the rest of it will pass as it comes; why (when not
 * NULL) goes to the log. */
static int release_call(an_stream_t *as, int index, const char *why)
{
    held_call_t *c = as->call[index];
    if (c == NULL || c->state == C_RELEASED)
        return AG_OK;
    int rc = unhold(c, as->out);
    c->state = C_RELEASED;
    ag_buf_dispose(&c->json);
    ag_buf_dispose(&c->frames);
    if (why && as->env->on_tool_skip) {
        ag_tool_call_t call = call_of(c);
        as->env->on_tool_skip(as->env->ud, index, &call, why);
    }
    return rc;
}

/* Calls that never got their content_block_stop (a cut stream): their input as it came. */
static int release_calls(an_stream_t *as)
{
    int rc = AG_OK;
    for (int i = 0; i < MAX_BLOCKS && rc == AG_OK; i++) {
        if (as->call[i] == NULL)
            continue;
        rc = release_call(as, i, "the call ended without its content_block_stop");
        call_free(as, i);
    }
    return rc;
}

/* content_block_start of a tool_use block (its name is the string token name): held when the
 * tool carries code. The event itself always goes out at once. */
static int on_call_start(an_stream_t *as, const ag_sse_item_t *it, ag_str_t json, int index,
                         const ag_jscan_match_t *name, const ag_jscan_match_t *id)
{
    int rc = AG_OK;
    if (as->call[index]) { /* a second start for the index: the first call is over */
        rc = release_call(as, index, "the call ended without its content_block_stop");
        call_free(as, index);
    }
    ag_buf_reset(&as->input);
    if (rc != AG_OK ||
        ag_jscan_decode(json, name->off, name->len, &as->input, NULL, 0, NULL) != AG_OK ||
        ag_tools_find(as->env->tools, ag_buf_str(&as->input)) == NULL)
        return rc == AG_OK ? pass_raw(as, it) : rc;
    held_call_t *c = ag_xcalloc(1, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%.*s", (int)as->input.len, as->input.ptr);
    ag_buf_reset(&as->input);
    if (id && ag_jscan_decode(json, id->off, id->len, &as->input, NULL, 0, NULL) == AG_OK)
        snprintf(c->id, sizeof(c->id), "%.*s", (int)as->input.len, as->input.ptr);
    c->state = C_HELD;
    ag_buf_init(&c->json, as->max_held);
    ag_buf_init(&c->frames, as->max_held);
    as->call[index] = c;
    return pass_raw(as, it);
}

/* An input_json_delta of a held call (partial_json is the string token m): held, unless the
 * call would then hold more than max_held. */
static int on_call_delta(an_stream_t *as, const ag_sse_item_t *it, ag_str_t json, int index,
                         const ag_jscan_match_t *m)
{
    held_call_t *c = as->call[index];
    if (c->state == C_HELD) {
        int rc = hold_event(as, c, it, json, m);
        if (rc == AG_OK)
            return AG_OK;
        rc = release_call(as, index, "the arguments passed limits.max_held");
        if (rc != AG_OK)
            return rc;
    }
    return pass_raw(as, it);
}

/* A held call is complete (its content_block_stop, not yet written): its input, rewritten when
 * a rule changed it, else its events as they came; a block rule ends the stream instead. */
static int finish_call(an_stream_t *as, int index)
{
    held_call_t *c = as->call[index];
    ag_tool_call_t call = call_of(c);
    const char *blocked = as->st->blocked_rule;
    bool changed = false;
    int rc = AG_OK;
    if (c->state != C_HELD || c->json.len == 0)
        goto out; /* released, or nothing to look at */
    rc = ag_buf_appendc(&c->json, '"');
    ag_buf_reset(&as->input);
    if (rc != AG_OK ||
        ag_jscan_decode(ag_buf_str(&c->json), 0, c->json.len, &as->input, NULL, 0, NULL) != AG_OK) {
        rc = release_call(as, index, NULL);
        goto out;
    }
    ag_buf_reset(&as->output);
    int trc = ag_api_tool_rewrite(as->env, as->st, index, &call, ag_buf_str(&as->input),
                                  &as->output, &changed);
    if (as->st->blocked_rule != NULL && blocked == NULL) {
        rc = emit_block_error(as); /* the call never reaches the client */
        goto out;
    }
    if (trc == AG_OK && changed)
        rc = emit_call_text(as, index, ag_buf_str(&as->output),
                            ag_jscan_str_style(ag_buf_str(&c->json), 0, c->json.len));
    else
        rc = release_call(as, index, NULL);
out:
    call_free(as, index);
    return rc;
}

/* Writes the current event, with its changes when it has any. */
static int write_event(an_stream_t *as, const ag_sse_item_t *it, ag_str_t json)
{
    if (as->ch.n == 0)
        return pass_raw(as, it);
    ag_buf_reset(&as->spliced);
    int rc = ag_changes_apply(&as->ch, json, &as->spliced);
    if (rc == AG_OK)
        rc = ag_sse_write_event(as->out, it->event, ag_buf_str(&as->spliced));
    return rc;
}

/* Text for block index at the string token m (a text_delta, or a text block's start text). */
static int on_text(an_stream_t *as, const ag_sse_item_t *it, ag_str_t json, int index,
                   const ag_jscan_match_t *m)
{
    ag_buf_reset(&as->plain);
    if (ag_jscan_decode(json, m->off, m->len, &as->plain, NULL, 0, NULL) != AG_OK)
        return pass_raw(as, it);
    as->open[index] = true;
    ag_stream_status_t status;
    ag_buf_reset(&as->text);
    int rc = ag_stream_push(as->core, (uint64_t)index, ag_buf_str(&as->plain), &as->text, &status);
    if (rc != AG_OK)
        return rc;
    if (status != AG_STREAM_BLOCKED) {
        rc = ag_changes_text(&as->ch, json, m, ag_buf_str(&as->text));
        return rc == AG_OK ? write_event(as, it, json) : rc;
    }
    as->open[index] = false;
    if (as->env->on_reply)
        as->env->on_reply(as->env->ud, index, &as->sum[index]);
    /* a start event always goes out (a delta needs its block); a delta only with what came
     * before the blocked code; then the error */
    if (m->path == P_START || as->text.len) {
        rc = ag_changes_text(&as->ch, json, m, ag_buf_str(&as->text));
        if (rc == AG_OK)
            rc = write_event(as, it, json);
    }
    return rc == AG_OK ? emit_block_error(as) : rc;
}

static void keep_model(an_stream_t *as, ag_str_t json, const ag_jscan_match_t *m)
{
    if (as->env->model.len || m->len < 2 || m->len - 2 >= sizeof(as->model))
        return;
    memcpy(as->model, json.ptr + m->off + 1, m->len - 2);
    as->model[m->len - 2] = '\0';
    as->env->model = ag_str(as->model, m->len - 2);
}

static int on_event(an_stream_t *as, const ag_sse_item_t *it)
{
    ag_buf_reset(&as->data);
    if (ag_buf_append(&as->data, it->data.ptr, it->data.len) != AG_OK)
        return pass_raw(as, it);
    ag_str_t json = ag_buf_str(&as->data);
    size_t n = 0;
    if (ag_jscan_find(json, as->paths, P_NPATHS, as->m, MAX_EVENT_MATCHES, &n, NULL) != AG_OK)
        return pass_raw(as, it); /* not JSON we know: as it came */
    const ag_jscan_match_t *type = NULL, *delta = NULL, *start = NULL;
    const ag_jscan_match_t *tool = NULL, *tool_id = NULL, *partial = NULL;
    uint64_t index = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const ag_jscan_match_t *m = &as->m[i];
        if (m->path == P_TYPE && !type)
            type = m;
        else if (m->path == P_INDEX && index == UINT64_MAX &&
                 ag_jscan_get_u64(json, m, &index) != AG_OK)
            index = UINT64_MAX;
        else if (m->path == P_DELTA && !delta)
            delta = m;
        else if (m->path == P_START && !start)
            start = m;
        else if (m->path == P_MODEL)
            keep_model(as, json, m);
        else if (m->path == P_TOOL_NAME)
            tool = m; /* the last of duplicate keys, as JSON.parse */
        else if (m->path == P_TOOL_ID)
            tool_id = m;
        else if (m->path == P_JSON)
            partial = m;
    }
    ag_str_t t = it->event; /* the event type: from the data, else the event line */
    ag_buf_reset(&as->plain);
    if (type && ag_jscan_decode(json, type->off, type->len, &as->plain, NULL, 0, NULL) == AG_OK)
        t = ag_buf_str(&as->plain);
    ag_changes_reset(&as->ch);
    bool tracked = index < MAX_BLOCKS;
    if (ag_str_eqc(t, "content_block_delta") && delta && tracked)
        return on_text(as, it, json, (int)index, delta);
    if (ag_str_eqc(t, "content_block_delta") && partial && tracked && as->call[index])
        return on_call_delta(as, it, json, (int)index, partial);
    if (ag_str_eqc(t, "content_block_start") && start && tracked && !as->open[index])
        return on_text(as, it, json, (int)index, start);
    if (ag_str_eqc(t, "content_block_start") && tool && tracked)
        return on_call_start(as, it, json, (int)index, tool, tool_id);
    int rc = AG_OK;
    if (ag_str_eqc(t, "content_block_stop") && tracked) {
        if (as->call[index])
            rc = finish_call(as, (int)index);
        if (rc == AG_OK && !as->ended)
            rc = finish_block(as, (int)index);
    } else if (ag_str_eqc(t, "message_delta") || ag_str_eqc(t, "message_stop") ||
               ag_str_eqc(t, "error")) {
        rc = finish_all(as); /* a block that never stopped: its text goes out before */
        if (rc == AG_OK && !as->ended)
            rc = release_calls(as);
    }
    if (rc != AG_OK || as->ended)
        return rc;
    return pass_raw(as, it);
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    an_stream_t *as = ud;
    if (as->ended)
        return AG_OK;
    if (it->kind != AG_SSE_EVENT)
        return pass_raw(as, it);
    return on_event(as, it);
}

static int stream_feed(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended)
{
    an_stream_t *as = state;
    as->out = out;
    int rc = ag_sse_feed(&as->sse, bytes, on_item, as);
    *ended = as->ended;
    return rc;
}

static int stream_end(void *state, ag_buf_t *out)
{
    an_stream_t *as = state;
    as->out = out;
    int rc = ag_sse_finish(&as->sse, on_item, as);
    if (rc == AG_OK && !as->ended)
        rc = finish_all(as);
    if (rc == AG_OK && !as->ended)
        rc = release_calls(as);
    return rc;
}

const ag_api_t ag_api_anthropic = {
    "messages", "/v1/messages", rewrite_body, stream_new, stream_feed, stream_end, stream_free,
};

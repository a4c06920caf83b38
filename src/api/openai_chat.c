/* OpenAI Chat Completions: choices[].message.content (not streamed) and choices[].delta.content
 * (streamed, one stream key per choice index), and the code in tool calls: message.tool_calls[]
 * function.arguments / custom.input, streamed as delta.tool_calls[] fragments held per (choice,
 * index) until the call is complete. Only those strings change; the rest of every body and event
 * is copied byte for byte. */
#include "api.h"
#include "changes.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_CHOICES 128
#define MAX_MATCHES 512
#define MAX_MATCHES_GROWN 8192 /* an event or body with more values of interest passes through */
#define MAX_CALLS 1024         /* tool calls followed per stream; later ones pass through */
#define MAX_CALL_INDEX 1024    /* tool_calls[].index values above pass through (SDKs: < 128) */
#define MAX_NAME 1024          /* bytes of a tool call's decoded name or id */

/* ag_jscan_find into *m, growing it (up to MAX_MATCHES_GROWN) while the matches do not fit. */
static int find_grow(ag_str_t json, const ag_jscan_path_t *paths, size_t npaths,
                     ag_jscan_match_t **m, size_t *cap, size_t *n)
{
    for (;;) {
        int rc = ag_jscan_find(json, paths, npaths, *m, *cap, n, NULL);
        if (rc != AG_ETOOBIG || *cap >= MAX_MATCHES_GROWN)
            return rc;
        *cap *= 4;
        *m = ag_xrealloc(*m, *cap * sizeof(**m));
    }
}

/* Decodes the string token m into b (reset first); false when it is not one or does not fit. */
static bool decode_into(ag_buf_t *b, ag_str_t json, const ag_jscan_match_t *m)
{
    ag_buf_reset(b);
    return m != NULL && ag_jscan_decode(json, m->off, m->len, b, NULL, 0, NULL) == AG_OK;
}

/* ---- not streamed ---- */

enum { B_CONTENT, B_MODEL, B_CALL_ID, B_FNAME, B_FARGS, B_CNAME, B_CINPUT, B_NPATHS };

static bool is_body_tool_path(uint8_t path)
{
    return path >= B_CALL_ID && path < B_NPATHS;
}

typedef struct body_scratch {
    ag_buf_t name, id; /* decoded */
    ag_buf_t input;    /* a call's decoded input */
    ag_buf_t out;      /* the input after the rules */
} body_scratch_t;

/* One element of message.tool_calls[] (its matches g[0..ng)): the input of a tool we know goes
 * through the rules and, when it changed, into ch. A call we cannot read passes as it is. */
static int body_tool_call(ag_api_env_t *env, ag_api_stats_t *st, ag_str_t body,
                          const ag_jscan_match_t *g, size_t ng, ag_changes_t *ch, body_scratch_t *b)
{
    const ag_jscan_match_t *id = NULL, *fname = NULL, *cname = NULL;
    for (size_t i = 0; i < ng; i++) { /* duplicate keys: the last one counts, as in JSON.parse */
        if (g[i].path == B_CALL_ID)
            id = &g[i];
        else if (g[i].path == B_FNAME)
            fname = &g[i];
        else if (g[i].path == B_CNAME)
            cname = &g[i];
    }
    if (!decode_into(&b->id, body, id))
        ag_buf_reset(&b->id);
    for (size_t i = 0; i < ng; i++) {
        if (g[i].path != B_FARGS && g[i].path != B_CINPUT)
            continue;
        bool custom = g[i].path == B_CINPUT;
        if (!decode_into(&b->name, body, custom ? cname : fname) ||
            ag_tools_find(env->tools, ag_buf_str(&b->name)) == NULL ||
            !decode_into(&b->input, body, &g[i]))
            continue;
        ag_tool_call_t call;
        memset(&call, 0, sizeof(call));
        call.name = ag_buf_str(&b->name);
        call.id = ag_buf_str(&b->id);
        call.file = AG_STR_LIT("");
        call.input = custom ? AG_TOOL_IN_TEXT : AG_TOOL_IN_ARGS;
        bool changed = false;
        ag_buf_reset(&b->out);
        int rc = ag_api_tool_rewrite(env, st, (int)g[i].idx[0], &call, ag_buf_str(&b->input),
                                     &b->out, &changed);
        if (rc == AG_OK && changed) {
            rc = ag_changes_text(ch, body, &g[i], ag_buf_str(&b->out));
            if (rc != AG_OK)
                return rc;
        }
    }
    return AG_OK;
}

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    static const char *const pats[B_NPATHS] = {
        "choices[*].message.content",
        "model",
        "choices[*].message.tool_calls[*].id",
        "choices[*].message.tool_calls[*].function.name",
        "choices[*].message.tool_calls[*].function.arguments",
        "choices[*].message.tool_calls[*].custom.name",
        "choices[*].message.tool_calls[*].custom.input",
    };
    ag_jscan_path_t paths[B_NPATHS];
    for (int i = 0; i < B_NPATHS; i++)
        if (ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]), AG_JSCAN_STRING) != AG_OK)
            return AG_EINVAL;
    size_t cap = MAX_MATCHES;
    ag_jscan_match_t *m = ag_xmalloc(cap * sizeof(*m));
    size_t n = 0;
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t text, rewritten;
    ag_buf_init(&text, 64u << 20);
    ag_buf_init(&rewritten, 128u << 20);
    body_scratch_t b;
    ag_buf_init(&b.name, MAX_NAME);
    ag_buf_init(&b.id, MAX_NAME);
    ag_buf_init(&b.input, 64u << 20);
    ag_buf_init(&b.out, 128u << 20);
    int rc = find_grow(body, paths, B_NPATHS, &m, &cap, &n);
    for (size_t i = 0; i < n && rc == AG_OK; i++)
        if (m[i].path == B_MODEL && m[i].len >= 2 && env->model.len == 0)
            env->model = ag_str(body.ptr + m[i].off + 1, m[i].len - 2); /* body outlives logs */
    for (size_t i = 0; i < n && rc == AG_OK;) {
        if (is_body_tool_path(m[i].path)) {
            /* the matches of one tool_calls[] element are consecutive (document order) */
            size_t j = i + 1;
            while (j < n && is_body_tool_path(m[j].path) && m[j].idx[0] == m[i].idx[0] &&
                   m[j].idx[1] == m[i].idx[1])
                j++;
            rc = body_tool_call(env, st, body, &m[i], j - i, &ch, &b);
            i = j;
            continue;
        }
        if (m[i].path != B_CONTENT) {
            i++;
            continue;
        }
        ag_buf_reset(&text);
        rc = ag_jscan_decode(body, m[i].off, m[i].len, &text, NULL, 0, NULL);
        if (rc != AG_OK)
            break;
        ag_result_t res;
        ag_buf_reset(&rewritten);
        rc = ag_engine_rewrite(env->engine, ag_buf_str(&text), &rewritten, &res);
        if (rc != AG_OK)
            break;
        if (env->on_result && res.nevents)
            env->on_result(env->ud, (int)m[i].idx[0], &res);
        if (env->on_reply) {
            ag_reply_summary_t sum;
            memset(&sum, 0, sizeof(sum));
            ag_reply_summary_add(&sum, &res);
            env->on_reply(env->ud, (int)m[i].idx[0], &sum);
        }
        ag_api_stats_add(st, &res);
        rc = ag_changes_result(&ch, body, &m[i], &res, ag_buf_str(&rewritten));
        i++;
    }
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, body, out);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&text);
    ag_buf_dispose(&rewritten);
    ag_buf_dispose(&b.name);
    ag_buf_dispose(&b.id);
    ag_buf_dispose(&b.input);
    ag_buf_dispose(&b.out);
    free(m);
    return rc == AG_OK ? AG_OK : AG_EINVAL;
}

/* ---- streamed ---- */

typedef enum call_state {
    CALL_PASS, /* a tool we do not know, or a call already emitted or released: its fragments go
                  out as they came */
    CALL_HOLD, /* its input fragments are taken out of their events and joined in held */
} call_state_t;

/* A streamed tool call: the fragments of one (choice, tool_calls[].index). */
typedef struct call {
    int choice;
    uint32_t index;
    uint8_t state;  /* call_state_t */
    bool custom;    /* custom.input (free text), not function.arguments */
    bool ended;     /* a sign that the call ended came after its last fragment: it may go out */
    bool input_out; /* an input fragment went out as it came (the name can no longer change) */
    unsigned style; /* ag_jscan_str_style bits of the fragments held, for the re-encoding */
    ag_buf_t id;    /* decoded; for the audit log */
    ag_buf_t name;  /* decoded */
    ag_buf_t held;  /* the decoded fragments, joined; max env->max_held */
} call_t;

typedef struct chat_stream {
    ag_api_env_t *env;
    ag_api_stats_t *st;
    ag_sse_parser_t sse;
    ag_stream_t *core;
    ag_buf_t *out;      /* the client bytes of the current feed */
    ag_buf_t data;      /* a rewritten event's data */
    ag_buf_t text;      /* text the core let through for one choice */
    ag_buf_t decoded;   /* one delta's text */
    ag_buf_t rewritten; /* a tool call's input after the rules */
    ag_jscan_path_t paths[14];
    ag_jscan_match_t *m; /* mcap entries */
    size_t mcap;
    size_t *blank; /* the current event's held fragments (indexes into m), sent as ""; mcap */
    size_t nblank;
    ag_jscan_path_t epaths[6]; /* every member of an event, to tell one that carries nothing */
    ag_jscan_match_t em[64];
    call_t *calls; /* owned, ncalls in use */
    size_t ncalls, calls_cap;
    int last_index[MAX_CHOICES]; /* tool_calls[].index of each choice's last fragment; -1 none */
    /* the upstream's identity fields, raw JSON tokens, for events astgate adds */
    char id[256], created[32], model[256], fingerprint[256];
    bool has_fingerprint;
    bool choice_open[MAX_CHOICES]; /* a delta was seen and the choice is not finished */
    bool ended;                    /* a block rule ended the stream */
    bool block_pending;            /* a block matched while finishing into the current event */
    bool done;                     /* [DONE] passed */
    ag_reply_summary_t sum[MAX_CHOICES]; /* per choice, reported when it finishes */
} chat_stream_t;

enum {
    P_CONTENT,
    P_FINISH,
    P_INDEX,
    P_ID,
    P_CREATED,
    P_MODEL,
    P_FPRINT,
    P_TC_INDEX, /* the members of choices[*].delta.tool_calls[*] */
    P_TC_ID,
    P_TC_TYPE,
    P_TC_FNAME,
    P_TC_FARGS,
    P_TC_CNAME,
    P_TC_CINPUT,
    P_N
};

static void on_core_wait(void *ud, uint64_t key, uint64_t wait_ns, size_t bytes)
{
    chat_stream_t *cs = ud;
    ag_api_report_wait(cs->env, wait_ns);
}

static void on_core_result(void *ud, uint64_t key, const ag_result_t *res)
{
    chat_stream_t *cs = ud;
    ag_api_stats_add(cs->st, res);
    ag_reply_summary_t scratch;
    memset(&scratch, 0, sizeof(scratch));
    ag_api_report(cs->env, key, res, key < MAX_CHOICES ? &cs->sum[key] : &scratch);
}

static void *stream_new(ag_api_env_t *env, ag_api_stats_t *st)
{
    chat_stream_t *cs = ag_xcalloc(1, sizeof(*cs));
    cs->env = env;
    cs->st = st;
    ag_sse_init(&cs->sse, AG_SSE_MAX_EVENT_DEFAULT);
    cs->core = ag_stream_new(env->engine, env->max_held, on_core_result, cs);
    ag_stream_set_hold(cs->core, env->hold);
    ag_stream_set_wait(cs->core, on_core_wait);
    ag_buf_init(&cs->data, 64u << 20);
    ag_buf_init(&cs->text, 64u << 20);
    ag_buf_init(&cs->decoded, 64u << 20);
    ag_buf_init(&cs->rewritten, 128u << 20);
    cs->mcap = MAX_MATCHES;
    cs->m = ag_xmalloc(cs->mcap * sizeof(*cs->m));
    cs->blank = ag_xmalloc(cs->mcap * sizeof(*cs->blank));
    for (int c = 0; c < MAX_CHOICES; c++)
        cs->last_index[c] = -1;
    static const char *const pats[P_N] = {"choices[*].delta.content",
                                          "choices[*].finish_reason",
                                          "choices[*].index",
                                          "id",
                                          "created",
                                          "model",
                                          "system_fingerprint",
                                          "choices[*].delta.tool_calls[*].index",
                                          "choices[*].delta.tool_calls[*].id",
                                          "choices[*].delta.tool_calls[*].type",
                                          "choices[*].delta.tool_calls[*].function.name",
                                          "choices[*].delta.tool_calls[*].function.arguments",
                                          "choices[*].delta.tool_calls[*].custom.name",
                                          "choices[*].delta.tool_calls[*].custom.input"};
    for (int i = 0; i < P_N; i++) {
        bool num = i == P_INDEX || i == P_CREATED || i == P_TC_INDEX;
        int rc = ag_jscan_path_compile(&cs->paths[i], ag_cstr(pats[i]),
                                       num ? AG_JSCAN_NUMBER : AG_JSCAN_STRING);
        AG_ASSERT(rc == AG_OK);
    }
    static const char *const epats[6] = {"*",
                                         "choices[*].*",
                                         "choices[*].delta.*",
                                         "choices[*].delta.tool_calls[*].*",
                                         "choices[*].delta.tool_calls[*].function.*",
                                         "choices[*].delta.tool_calls[*].custom.*"};
    for (int i = 0; i < 6; i++) {
        int rc = ag_jscan_path_compile(&cs->epaths[i], ag_cstr(epats[i]), AG_JSCAN_ANY);
        AG_ASSERT(rc == AG_OK);
    }
    return cs;
}

static void call_dispose(call_t *c)
{
    ag_buf_dispose(&c->id);
    ag_buf_dispose(&c->name);
    ag_buf_dispose(&c->held);
}

static void stream_free(void *state)
{
    chat_stream_t *cs = state;
    if (cs == NULL)
        return;
    ag_sse_dispose(&cs->sse);
    ag_api_report_hold(cs->env, cs->core); /* every stream once, however it ended */
    ag_stream_free(cs->core);
    ag_buf_dispose(&cs->data);
    ag_buf_dispose(&cs->text);
    ag_buf_dispose(&cs->decoded);
    ag_buf_dispose(&cs->rewritten);
    for (size_t i = 0; i < cs->ncalls; i++)
        call_dispose(&cs->calls[i]);
    free(cs->calls);
    free(cs->m);
    free(cs->blank);
    free(cs);
}

static void keep_token(char *dst, size_t cap, ag_str_t json, const ag_jscan_match_t *m)
{
    if (m->len < cap) {
        memcpy(dst, json.ptr + m->off, m->len);
        dst[m->len] = '\0';
    }
}

/* An error event in place of a blocked code block; the stream ends after it. */
static int emit_block_error(chat_stream_t *cs)
{
    ag_buf_t j;
    ag_buf_init(&j, 1u << 16);
    char msg[512];
    snprintf(msg, sizeof(msg), "astgate blocked the reply: %s",
             cs->st->blocked_message && cs->st->blocked_message[0] ? cs->st->blocked_message
                                                                   : cs->st->blocked_rule);
    int rc = ag_buf_append(&j, "{\"error\":{\"message\":", 20);
    if (rc == AG_OK)
        rc = ag_json_append_str(&j, ag_cstr(msg));
    if (rc == AG_OK)
        rc = ag_buf_append(&j, ",\"type\":\"astgate_blocked\",\"param\":null,\"code\":", 46);
    if (rc == AG_OK)
        rc = ag_json_append_str(&j, ag_cstr(cs->st->blocked_rule ? cs->st->blocked_rule : ""));
    if (rc == AG_OK)
        rc = ag_buf_append(&j, "}}", 2);
    if (rc == AG_OK)
        rc = ag_sse_write_event(cs->out, ag_str(NULL, 0), ag_buf_str(&j));
    ag_buf_dispose(&j);
    cs->ended = true;
    return rc;
}

/* An event astgate adds to the stream: a chunk with the upstream's identity fields whose one
 * choice has the delta {pre"text"post}, text escaped in style. */
static int emit_chunk(chat_stream_t *cs, int choice, const char *pre, ag_str_t text, unsigned style,
                      const char *post)
{
    ag_buf_t j;
    ag_buf_init(&j, text.len * 6 + 4096);
    int rc = ag_buf_appendf(&j,
                            "{\"id\":%s,\"object\":\"chat.completion.chunk\",\"created\":%s,"
                            "\"model\":%s,",
                            cs->id[0] ? cs->id : "\"\"", cs->created[0] ? cs->created : "0",
                            cs->model[0] ? cs->model : "\"\"");
    if (rc == AG_OK && cs->has_fingerprint)
        rc = ag_buf_appendf(&j, "\"system_fingerprint\":%s,", cs->fingerprint);
    if (rc == AG_OK)
        rc = ag_buf_appendf(&j, "\"choices\":[{\"index\":%d,\"delta\":{%s\"", choice, pre);
    if (rc == AG_OK)
        rc = ag_jscan_escape(&j, text, style) == AG_OK ? AG_OK : AG_EINVAL;
    if (rc == AG_OK)
        rc = ag_buf_appendf(&j, "\"%s},\"logprobs\":null,\"finish_reason\":null}]}", post);
    if (rc == AG_OK)
        rc = ag_sse_write_event(cs->out, ag_str(NULL, 0), ag_buf_str(&j));
    ag_buf_dispose(&j);
    return rc;
}

/* An event astgate adds: text the core still held for a choice that is ending. */
static int emit_flush(chat_stream_t *cs, int choice, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
    return emit_chunk(cs, choice, "\"content\":", text, 0, "");
}

/* Finishes a choice: what the core held goes out. into: append to this buffer instead of a new
 * event (the event that ends the choice also carries its content). */
static int finish_choice(chat_stream_t *cs, int choice, ag_buf_t *into)
{
    if (choice < 0 || choice >= MAX_CHOICES || !cs->choice_open[choice])
        return AG_OK;
    cs->choice_open[choice] = false;
    ag_stream_status_t status;
    ag_reply_summary_t *sum = &cs->sum[choice];
    ag_buf_t *dst = into ? into : &cs->text;
    if (!into)
        ag_buf_reset(&cs->text);
    int rc = ag_stream_finish(cs->core, (uint64_t)choice, dst, &status);
    if (cs->env->on_reply)
        cs->env->on_reply(cs->env->ud, choice, sum);
    if (rc != AG_OK)
        return rc;
    if (status == AG_STREAM_BLOCKED && into) {
        cs->block_pending = true; /* the caller sends what came before, then the error */
        return AG_OK;
    }
    rc = into ? AG_OK : emit_flush(cs, choice, ag_buf_str(&cs->text));
    if (rc == AG_OK && status == AG_STREAM_BLOCKED)
        rc = emit_block_error(cs);
    return rc;
}

static int finish_all(chat_stream_t *cs)
{
    for (int c = 0; c < MAX_CHOICES && !cs->ended; c++) {
        int rc = finish_choice(cs, c, NULL);
        if (rc != AG_OK)
            return rc;
    }
    return AG_OK;
}

static int choice_of(const chat_stream_t *cs, size_t n, size_t pos)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        if (cs->m[i].path == P_INDEX && cs->m[i].idx[0] == pos &&
            ag_jscan_get_u64(ag_buf_str(&cs->data), &cs->m[i], &v) == AG_OK && v < MAX_CHOICES)
            return (int)v;
    }
    return (int)pos < MAX_CHOICES ? (int)pos : -1;
}

/* Passes an item on as it came; an event cut off at the end of the stream gets its blank line
 * (a client drops an event without one). */
static int pass_raw(chat_stream_t *cs, const ag_sse_item_t *it)
{
    int rc = ag_buf_append(cs->out, it->raw.ptr, it->raw.len);
    if (rc == AG_OK && it->kind == AG_SSE_EVENT && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(cs->out, "\n\n", eol ? 1 : 2);
    }
    return rc;
}

/* ---- streamed tool calls ---- */

/* A call's input as one fragment of its index, in an event of its own. */
static int emit_input(chat_stream_t *cs, const call_t *c, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
    char pre[96];
    snprintf(pre, sizeof(pre), "\"tool_calls\":[{\"index\":%u,\"%s\":{\"%s\":", c->index,
             c->custom ? "custom" : "function", c->custom ? "input" : "arguments");
    return emit_chunk(cs, c->choice, pre, text, c->style, "}}]");
}

static ag_tool_call_t call_view(const call_t *c)
{
    ag_tool_call_t tc;
    memset(&tc, 0, sizeof(tc));
    tc.name = ag_buf_str(&c->name);
    tc.id = ag_buf_str(&c->id);
    tc.file = AG_STR_LIT("");
    tc.input = c->custom ? AG_TOOL_IN_TEXT : AG_TOOL_IN_ARGS;
    return tc;
}

/* Adds what one call did to the stream's stats. */
static void stats_merge(ag_api_stats_t *dst, const ag_api_stats_t *src)
{
    dst->rewrites += src->rewrites;
    dst->flags += src->flags;
    dst->dropped += src->dropped;
    dst->had_code |= src->had_code;
    for (uint32_t i = 0; i < src->nrule_ids; i++)
        ag_api_stats_rule(dst, src->rule_ids[i]);
    if (dst->blocked_rule == NULL && src->blocked_rule != NULL) {
        dst->blocked_rule = src->blocked_rule;
        dst->blocked_message = src->blocked_message;
    }
}

/* A held call has ended: its input goes through the rules and out as one fragment (as it came
 * when the rules cannot read it); a block rule ends the stream with the error event instead. */
static int emit_call(chat_stream_t *cs, call_t *c)
{
    ag_tool_call_t tc = call_view(c);
    ag_api_stats_t one; /* this call's own, to tell its block from earlier ones */
    memset(&one, 0, sizeof(one));
    bool changed = false;
    ag_buf_reset(&cs->rewritten);
    int rc = ag_api_tool_rewrite(cs->env, &one, c->choice, &tc, ag_buf_str(&c->held),
                                 &cs->rewritten, &changed);
    stats_merge(cs->st, &one);
    c->state = CALL_PASS;
    if (one.blocked_rule != NULL) {
        cs->st->blocked_rule = one.blocked_rule; /* the error names this call's rule */
        cs->st->blocked_message = one.blocked_message;
        rc = emit_block_error(cs);
    } else {
        rc = emit_input(cs, c, rc == AG_OK ? ag_buf_str(&cs->rewritten) : ag_buf_str(&c->held));
    }
    ag_buf_dispose(&c->held);
    return rc;
}

/* Sends the held calls of choice that have ended, in ascending index order, up to the first one
 * still open or with a lower index not seen yet (all: every call of the choice has ended). Each
 * call's input thus goes out whole and contiguous, in index order, which the SDK helpers'
 * per-call events rely on. */
static int emit_ready(chat_stream_t *cs, int choice, bool all)
{
    for (;;) {
        call_t *low = NULL;
        uint32_t lower = 0; /* calls of the choice below low */
        for (size_t i = 0; i < cs->ncalls; i++) {
            call_t *c = &cs->calls[i];
            if (c->choice == choice && c->state == CALL_HOLD &&
                (low == NULL || c->index < low->index))
                low = c;
        }
        for (size_t i = 0; low != NULL && i < cs->ncalls; i++)
            lower += cs->calls[i].choice == choice && cs->calls[i].index < low->index;
        if (low == NULL || !(all || (low->ended && lower == low->index)))
            return AG_OK;
        int rc = emit_call(cs, low);
        if (rc != AG_OK || cs->ended)
            return rc;
    }
}

/* The stream ends: every held call goes out, choice by choice. */
static int finish_calls(chat_stream_t *cs)
{
    int rc = AG_OK;
    for (int c = 0; c < MAX_CHOICES && rc == AG_OK && !cs->ended; c++)
        rc = emit_ready(cs, c, true);
    return rc;
}

/* Whether the arguments held are a whole JSON object. With a fragment for another index this
 * tells that the call ended; an upstream that interleaves its parallel calls sends fragments of
 * the others while the arguments are still open, and the call stays held. Free text cannot tell. */
static bool args_whole(const call_t *c)
{
    if (c->custom)
        return false;
    ag_str_t t = ag_buf_str(&c->held);
    size_t e = t.len;
    while (e > 0 && (t.ptr[e - 1] == ' ' || t.ptr[e - 1] == '\n' || t.ptr[e - 1] == '\r' ||
                     t.ptr[e - 1] == '\t'))
        e--;
    size_t n = 0;
    return e > 0 && t.ptr[e - 1] == '}' && ag_jscan_find(t, NULL, 0, NULL, 0, &n, NULL) == AG_OK;
}

static call_t *call_find(chat_stream_t *cs, int choice, uint32_t index)
{
    for (size_t i = 0; i < cs->ncalls; i++)
        if (cs->calls[i].choice == choice && cs->calls[i].index == index)
            return &cs->calls[i];
    return NULL;
}

/* A new call (NULL past MAX_CALLS: it is not followed and passes as it is). */
static call_t *call_add(chat_stream_t *cs, int choice, uint32_t index)
{
    if (cs->ncalls == MAX_CALLS)
        return NULL;
    if (cs->ncalls == cs->calls_cap) {
        cs->calls_cap = cs->calls_cap ? cs->calls_cap * 2 : 4;
        cs->calls = ag_xrealloc(cs->calls, cs->calls_cap * sizeof(*cs->calls));
    }
    call_t *c = &cs->calls[cs->ncalls++];
    memset(c, 0, sizeof(*c));
    c->choice = choice;
    c->index = index;
    c->state = CALL_PASS;
    ag_buf_init(&c->id, MAX_NAME);
    ag_buf_init(&c->name, MAX_NAME);
    ag_buf_init(&c->held, cs->env->max_held ? cs->env->max_held : AG_SSE_MAX_EVENT_DEFAULT);
    return c;
}

/* Names the call (from the first fragment that carries a name, as long as none of its input went
 * out yet): a tool that carries code is held. */
static void call_name(chat_stream_t *cs, call_t *c, ag_str_t json, const ag_jscan_match_t *name,
                      const ag_jscan_match_t *id)
{
    if (c->name.len == 0 && !c->input_out && decode_into(&c->name, json, name) &&
        ag_tools_find(cs->env->tools, ag_buf_str(&c->name)) != NULL)
        c->state = CALL_HOLD;
    if (c->id.len == 0 && !decode_into(&c->id, json, id))
        ag_buf_reset(&c->id);
}

enum { T_INDEX, T_ID, T_TYPE, T_FNAME, T_FARGS, T_CNAME, T_CINPUT, T_N };

/* One element of a choice's delta.tool_calls[] (its matches m[i..j)). A fragment for another
 * index than the choice's last one may end held calls (they go out before the event); the input
 * fragment of a held call is joined to it and listed in blank[]. */
static int tool_fragment(chat_stream_t *cs, ag_str_t json, size_t n, size_t i, size_t j)
{
    const ag_jscan_match_t *f[T_N] = {NULL};
    for (size_t k = i; k < j; k++) /* duplicate keys: the last one counts, as in JSON.parse */
        f[cs->m[k].path - P_TC_INDEX] = &cs->m[k];
    uint64_t index;
    int choice = choice_of(cs, n, cs->m[i].idx[0]);
    if (f[T_INDEX] == NULL || ag_jscan_get_u64(json, f[T_INDEX], &index) != AG_OK ||
        index >= MAX_CALL_INDEX || choice < 0)
        return AG_OK; /* a fragment we cannot place: it passes as it is */
    if (cs->last_index[choice] != (int)index) {
        cs->last_index[choice] = (int)index;
        for (size_t k = 0; k < cs->ncalls; k++) {
            call_t *c = &cs->calls[k];
            if (c->choice == choice && c->state == CALL_HOLD && c->index != index && !c->ended)
                c->ended = args_whole(c);
        }
        int rc = emit_ready(cs, choice, false);
        if (rc != AG_OK || cs->ended)
            return rc;
    }
    call_t *c = call_find(cs, choice, (uint32_t)index);
    if (c == NULL) {
        c = call_add(cs, choice, (uint32_t)index);
        if (c == NULL)
            return AG_OK;
        c->custom = f[T_CNAME] || f[T_CINPUT] ||
                    (f[T_TYPE] && ag_jscan_str_eq(json, f[T_TYPE], AG_STR_LIT("custom")));
    }
    call_name(cs, c, json, c->custom ? f[T_CNAME] : f[T_FNAME], f[T_ID]);
    const ag_jscan_match_t *in = c->custom ? f[T_CINPUT] : f[T_FARGS];
    if (in == NULL)
        return AG_OK;
    if (c->state != CALL_HOLD) {
        c->input_out |= in->len > 2;
        return AG_OK;
    }
    size_t before = c->held.len;
    if (ag_jscan_decode(json, in->off, in->len, &c->held, NULL, 0, NULL) != AG_OK) {
        /* past max_held: what is held goes out as it came, and the rest of the call passes */
        ag_tool_call_t tc = call_view(c);
        if (cs->env->on_tool_skip)
            cs->env->on_tool_skip(cs->env->ud, choice, &tc,
                                  "the call is larger than limits.max_held");
        int rc = emit_input(cs, c, ag_buf_str(&c->held));
        c->state = CALL_PASS;
        c->input_out = true;
        ag_buf_dispose(&c->held);
        return rc;
    }
    if (c->held.len == before)
        return AG_OK; /* "" */
    c->style |= ag_jscan_str_style(json, in->off, in->len);
    c->ended = false;
    cs->blank[cs->nblank++] = (size_t)(in - cs->m);
    return AG_OK;
}

static bool key_is(ag_str_t json, const ag_jscan_match_t *m, const char *key)
{
    ag_jscan_match_t k = *m;
    k.off = m->key_off;
    k.len = m->key_len;
    k.type = AG_JSCAN_STRING;
    return ag_jscan_str_eq(json, &k, ag_cstr(key));
}

static bool key_in(ag_str_t json, const ag_jscan_match_t *m, const char *const *keys)
{
    for (; *keys; keys++)
        if (key_is(json, m, *keys))
            return true;
    return false;
}

/* Whether the token at off is a held fragment of the current event. */
static bool is_blank(const chat_stream_t *cs, size_t off)
{
    for (size_t b = 0; b < cs->nblank; b++)
        if (cs->m[cs->blank[b]].off == off)
            return true;
    return false;
}

/* Whether an event whose input fragments were all held carries nothing else a client uses: each
 * choice is {index, delta: {tool_calls: [{index, function: {arguments}} or custom: {input}]},
 * logprobs: null, finish_reason: null} (content and refusal may be null) with every fragment
 * held or empty, and the rest is what every chunk repeats (id, object, created, model,
 * system_fingerprint, service_tier, obfuscation, usage: null). Such an event is not sent: the
 * held input goes out in one fragment of its own. Anything else, or unknown, goes out. */
static bool only_held(chat_stream_t *cs, ag_str_t json, const ag_sse_item_t *it)
{
    static const char *const top[] = {
        "id",           "object",      "created", "model", "system_fingerprint",
        "service_tier", "obfuscation", NULL};
    static const char *const nulls[] = {"logprobs", "finish_reason", NULL};
    static const char *const delta_nulls[] = {"content", "refusal", NULL};
    size_t n = 0;
    if (it->has_id || it->retry >= 0 ||
        ag_jscan_find(json, cs->epaths, 6, cs->em, sizeof(cs->em) / sizeof(cs->em[0]), &n, NULL) !=
            AG_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        const ag_jscan_match_t *m = &cs->em[i];
        bool ok = false;
        switch (m->path) {
        case 0:
            ok = key_in(json, m, top) ||
                 (key_is(json, m, "choices") && m->type == AG_JSCAN_ARRAY) ||
                 (key_is(json, m, "usage") && m->type == AG_JSCAN_NULL);
            break;
        case 1:
            ok = (key_is(json, m, "index") && m->type == AG_JSCAN_NUMBER) ||
                 (key_is(json, m, "delta") && m->type == AG_JSCAN_OBJECT) ||
                 (key_in(json, m, nulls) && m->type == AG_JSCAN_NULL);
            break;
        case 2:
            ok = (key_is(json, m, "tool_calls") && m->type == AG_JSCAN_ARRAY) ||
                 (key_in(json, m, delta_nulls) && m->type == AG_JSCAN_NULL);
            break;
        case 3:
            ok = (key_is(json, m, "index") && m->type == AG_JSCAN_NUMBER) ||
                 ((key_is(json, m, "function") || key_is(json, m, "custom")) &&
                  m->type == AG_JSCAN_OBJECT);
            break;
        default:
            ok = key_is(json, m, m->path == 4 ? "arguments" : "input") &&
                 m->type == AG_JSCAN_STRING && (m->len == 2 || is_blank(cs, m->off));
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static bool is_tool_path(uint8_t path)
{
    return path >= P_TC_INDEX && path < P_N;
}

/* The tool-call fragments of an event, element by element (the matches of one element are
 * consecutive: document order). */
static int tool_fragments(chat_stream_t *cs, ag_str_t json, size_t n)
{
    cs->nblank = 0;
    for (size_t i = 0; i < n && !cs->ended;) {
        if (!is_tool_path(cs->m[i].path)) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && is_tool_path(cs->m[j].path) && cs->m[j].idx[0] == cs->m[i].idx[0] &&
               cs->m[j].idx[1] == cs->m[i].idx[1])
            j++;
        int rc = tool_fragment(cs, json, n, i, j);
        if (rc != AG_OK)
            return rc;
        i = j;
    }
    return AG_OK;
}

static int on_event(chat_stream_t *cs, const ag_sse_item_t *it)
{
    ag_str_t data = it->data;
    if (ag_str_eqc(data, "[DONE]")) {
        int rc = finish_all(cs);
        if (rc == AG_OK && !cs->ended)
            rc = finish_calls(cs);
        if (rc == AG_OK && !cs->ended)
            rc = pass_raw(cs, it);
        cs->done = true;
        return rc;
    }
    /* work on a copy: the SSE view is only valid during the callback, and splice reads it */
    ag_buf_reset(&cs->data);
    if (ag_buf_append(&cs->data, data.ptr, data.len) != AG_OK)
        return pass_raw(cs, it);
    ag_str_t json = ag_buf_str(&cs->data);
    size_t n = 0;
    size_t mcap = cs->mcap;
    int frc = find_grow(json, cs->paths, P_N, &cs->m, &cs->mcap, &n);
    if (cs->mcap != mcap)
        cs->blank = ag_xrealloc(cs->blank, cs->mcap * sizeof(*cs->blank));
    if (frc != AG_OK)
        return pass_raw(cs, it); /* not ours: pass it on */
    bool any_content = false;
    for (size_t i = 0; i < n; i++) {
        const ag_jscan_match_t *m = &cs->m[i];
        switch (m->path) {
        case P_ID:
            keep_token(cs->id, sizeof(cs->id), json, m);
            break;
        case P_CREATED:
            keep_token(cs->created, sizeof(cs->created), json, m);
            break;
        case P_MODEL:
            keep_token(cs->model, sizeof(cs->model), json, m);
            if (cs->env->model.len == 0 && m->len >= 2)
                cs->env->model = ag_str(cs->model + 1, m->len - 2);
            break;
        case P_FPRINT:
            keep_token(cs->fingerprint, sizeof(cs->fingerprint), json, m);
            cs->has_fingerprint = m->len < sizeof(cs->fingerprint);
            break;
        case P_CONTENT:
            any_content = true;
            break;
        default:
            break;
        }
    }
    /* tool-call fragments; then the held calls of the choices that end here go out before it */
    int trc = tool_fragments(cs, json, n);
    for (size_t i = 0; i < n && trc == AG_OK && !cs->ended; i++)
        if (cs->m[i].path == P_FINISH)
            trc = emit_ready(cs, choice_of(cs, n, cs->m[i].idx[0]), true);
    if (trc != AG_OK || cs->ended)
        return trc;
    /* choices that end here without content in this event: flush them in an event before it */
    for (size_t i = 0; i < n; i++) {
        if (cs->m[i].path != P_FINISH)
            continue;
        bool has_content = false;
        for (size_t k = 0; k < n; k++)
            if (cs->m[k].path == P_CONTENT && cs->m[k].idx[0] == cs->m[i].idx[0])
                has_content = true;
        if (!has_content) {
            int rc = finish_choice(cs, choice_of(cs, n, cs->m[i].idx[0]), NULL);
            if (rc != AG_OK || cs->ended)
                return rc;
        }
    }
    if (!any_content && cs->nblank == 0)
        return pass_raw(cs, it);
    if (!any_content && only_held(cs, json, it))
        return AG_OK;
    /* rewrite each content string to what the core lets through now */
    ag_jscan_splice_t sp[MAX_CHOICES];
    ag_jscan_edit_t ed[MAX_CHOICES];
    size_t texts_off[MAX_CHOICES];
    int choices[MAX_CHOICES];
    size_t nsp = 0;
    ag_buf_t texts;
    ag_buf_init(&texts, 128u << 20);
    int rc = AG_OK;
    for (size_t i = 0; i < n && rc == AG_OK && nsp < MAX_CHOICES; i++) {
        const ag_jscan_match_t *m = &cs->m[i];
        if (m->path != P_CONTENT)
            continue;
        int choice = choice_of(cs, n, m->idx[0]);
        ag_buf_reset(&cs->decoded);
        if (choice < 0 ||
            ag_jscan_decode(json, m->off, m->len, &cs->decoded, NULL, 0, NULL) != AG_OK)
            continue;
        cs->choice_open[choice] = true;
        size_t before = texts.len;
        ag_stream_status_t status;
        rc = ag_stream_push(cs->core, (uint64_t)choice, ag_buf_str(&cs->decoded), &texts, &status);
        if (rc != AG_OK)
            break;
        /* the same event also ends this choice: its held text goes in this content */
        for (size_t k = 0; k < n && rc == AG_OK && status != AG_STREAM_BLOCKED; k++)
            if (cs->m[k].path == P_FINISH && cs->m[k].idx[0] == m->idx[0])
                rc = finish_choice(cs, choice, &texts);
        if (rc == AG_OK && (status == AG_STREAM_BLOCKED || cs->block_pending)) {
            /* what the choices let through before the block still reaches the client, each
             * in an event of its own, then the error ends the stream */
            for (size_t j = 0; j < nsp && rc == AG_OK; j++)
                rc = emit_flush(cs, choices[j], ag_str(texts.ptr + texts_off[j], ed[j].text.len));
            if (rc == AG_OK)
                rc = emit_flush(cs, choice, ag_str(texts.ptr + before, texts.len - before));
            if (rc == AG_OK)
                rc = emit_block_error(cs);
            ag_buf_dispose(&texts);
            return rc;
        }
        choices[nsp] = choice;
        texts_off[nsp] = before;
        ed[nsp].start = 0;
        ed[nsp].end = 0;
        ed[nsp].text = ag_str(NULL, texts.len - before);
        sp[nsp].off = m->off;
        sp[nsp].len = m->len;
        sp[nsp].map = NULL;
        sp[nsp].edits = &ed[nsp];
        sp[nsp].nedits = 1;
        nsp++;
    }
    if (rc == AG_OK) {
        /* each content token becomes the JSON string of what goes out now */
        ag_buf_t toks;
        ag_buf_init(&toks, 128u << 20);
        size_t tok_off[MAX_CHOICES];
        for (size_t i = 0; i < nsp && rc == AG_OK; i++) {
            tok_off[i] = toks.len;
            rc = ag_buf_appendc(&toks, '"');
            if (rc == AG_OK)
                rc = ag_jscan_escape(
                    &toks, ag_str(texts.ptr ? texts.ptr + texts_off[i] : "", ed[i].text.len),
                    ag_jscan_str_style(json, sp[i].off, sp[i].len));
            if (rc == AG_OK)
                rc = ag_buf_appendc(&toks, '"');
        }
        for (size_t i = 0; i < nsp; i++) {
            size_t end = i + 1 < nsp ? tok_off[i + 1] : toks.len;
            sp[i].raw = ag_str(toks.ptr + tok_off[i], end - tok_off[i]);
            sp[i].edits = NULL;
            sp[i].nedits = 0;
        }
        /* with the held tool-call fragments, which go out as "", in document order */
        ag_jscan_splice_t *all = ag_xmalloc((nsp + cs->nblank + 1) * sizeof(*all));
        size_t nall = 0;
        for (size_t a = 0, b = 0; a < nsp || b < cs->nblank;) {
            const ag_jscan_match_t *bm = b < cs->nblank ? &cs->m[cs->blank[b]] : NULL;
            if (bm == NULL || (a < nsp && sp[a].off < bm->off)) {
                all[nall++] = sp[a++];
                continue;
            }
            memset(&all[nall], 0, sizeof(all[nall]));
            all[nall].off = bm->off;
            all[nall].len = bm->len;
            all[nall++].raw = AG_STR_LIT("\"\"");
            b++;
        }
        ag_buf_t spliced;
        ag_buf_init(&spliced, 128u << 20);
        if (rc == AG_OK)
            rc = ag_jscan_splice(json, all, nall, &spliced);
        free(all);
        if (rc == AG_OK)
            rc = ag_sse_write_event(cs->out, it->event, ag_buf_str(&spliced));
        ag_buf_dispose(&spliced);
        ag_buf_dispose(&toks);
    }
    ag_buf_dispose(&texts);
    return rc;
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    chat_stream_t *cs = ud;
    if (cs->ended)
        return AG_OK;
    if (it->kind != AG_SSE_EVENT || cs->done)
        return pass_raw(cs, it);
    return on_event(cs, it);
}

static int stream_feed(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended)
{
    chat_stream_t *cs = state;
    cs->out = out;
    int rc = ag_sse_feed(&cs->sse, bytes, on_item, cs);
    *ended = cs->ended;
    return rc;
}

static int stream_end(void *state, ag_buf_t *out)
{
    chat_stream_t *cs = state;
    cs->out = out;
    int rc = ag_sse_finish(&cs->sse, on_item, cs);
    if (rc == AG_OK && !cs->ended && !cs->done)
        rc = finish_all(cs);
    if (rc == AG_OK && !cs->ended && !cs->done)
        rc = finish_calls(cs);
    return rc;
}

const ag_api_t ag_api_openai_chat = {
    "chat.completions", "/v1/chat/completions", rewrite_body, stream_new, stream_feed, stream_end,
    stream_free,
};

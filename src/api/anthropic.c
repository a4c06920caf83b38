/* Anthropic Messages API: content[] blocks of type text (not streamed) and the text_delta events
 * of each content block (streamed, one stream key per content block index). No Anthropic event
 * repeats a block's text, so only the deltas change; what the core still holds when a block stops
 * goes out in a content_block_delta astgate adds before the stop. Every other byte is kept. */
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

enum { B_TEXT, B_MODEL, B_NPATHS };

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    static const char *const pats[B_NPATHS] = {"content[*]{type=text}.text", "model"};
    ag_jscan_path_t paths[B_NPATHS];
    for (int i = 0; i < B_NPATHS; i++)
        if (ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]), AG_JSCAN_STRING) != AG_OK)
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

enum { P_TYPE, P_INDEX, P_DELTA, P_START, P_MODEL, P_NPATHS };

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
    char model[256];
    bool ended; /* a block rule ended the stream */
} an_stream_t;

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
    ag_buf_init(&as->data, 64u << 20);
    ag_buf_init(&as->text, 64u << 20);
    ag_buf_init(&as->plain, 64u << 20);
    ag_buf_init(&as->spliced, 256u << 20);
    ag_buf_init(&as->added, 64u << 20);
    ag_changes_init(&as->ch);
    as->m = ag_xmalloc(MAX_EVENT_MATCHES * sizeof(*as->m));
    static const char *const pats[P_NPATHS] = {
        "type",          "index", "delta{type=text_delta}.text", "content_block{type=text}.text",
        "message.model",
    };
    for (int i = 0; i < P_NPATHS; i++) {
        int rc = ag_jscan_path_compile(&as->paths[i], ag_cstr(pats[i]),
                                       i == P_INDEX ? AG_JSCAN_NUMBER : AG_JSCAN_STRING);
        AG_ASSERT(rc == AG_OK);
    }
    return as;
}

static void stream_free(void *state)
{
    an_stream_t *as = state;
    if (as == NULL)
        return;
    ag_sse_dispose(&as->sse);
    ag_stream_free(as->core);
    ag_buf_dispose(&as->data);
    ag_buf_dispose(&as->text);
    ag_buf_dispose(&as->plain);
    ag_buf_dispose(&as->spliced);
    ag_buf_dispose(&as->added);
    ag_changes_dispose(&as->ch);
    free(as->m);
    free(as);
}

/* Passes an item on as it came; an event cut off at the end of the stream gets its blank line
 * (the Anthropic SDK drops an event without one). */
static int pass_raw(an_stream_t *as, const ag_sse_item_t *it)
{
    int rc = ag_buf_append(as->out, it->raw.ptr, it->raw.len);
    if (rc == AG_OK && it->kind == AG_SSE_EVENT && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(as->out, "\n\n", eol ? 1 : 2);
    }
    return rc;
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
    }
    ag_str_t t = it->event; /* the event type: from the data, else the event line */
    ag_buf_reset(&as->plain);
    if (type && ag_jscan_decode(json, type->off, type->len, &as->plain, NULL, 0, NULL) == AG_OK)
        t = ag_buf_str(&as->plain);
    ag_changes_reset(&as->ch);
    bool tracked = index < MAX_BLOCKS;
    if (ag_str_eqc(t, "content_block_delta") && delta && tracked)
        return on_text(as, it, json, (int)index, delta);
    if (ag_str_eqc(t, "content_block_start") && start && tracked && !as->open[index])
        return on_text(as, it, json, (int)index, start);
    int rc = AG_OK;
    if (ag_str_eqc(t, "content_block_stop") && tracked)
        rc = finish_block(as, (int)index);
    else if (ag_str_eqc(t, "message_delta") || ag_str_eqc(t, "message_stop") ||
             ag_str_eqc(t, "error"))
        rc = finish_all(as); /* a block that never stopped: its text goes out before */
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
    return rc;
}

const ag_api_t ag_api_anthropic = {
    "messages", "/v1/messages", rewrite_body, stream_new, stream_feed, stream_end, stream_free,
};

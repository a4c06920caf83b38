/* OpenAI Chat Completions: choices[].message.content (not streamed) and choices[].delta.content
 * (streamed, one stream key per choice index). Only the content strings change; the rest of every
 * body and event is copied byte for byte. */
#include "api.h"
#include "changes.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_CHOICES 128
#define MAX_MATCHES 512

/* ---- not streamed ---- */

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    ag_jscan_path_t paths[2];
    if (ag_jscan_path_compile(&paths[0], AG_STR_LIT("choices[*].message.content"),
                              AG_JSCAN_STRING) != AG_OK ||
        ag_jscan_path_compile(&paths[1], AG_STR_LIT("model"), AG_JSCAN_STRING) != AG_OK)
        return AG_EINVAL;
    ag_jscan_match_t *m = ag_xmalloc(MAX_MATCHES * sizeof(*m));
    size_t n = 0;
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t text, rewritten;
    ag_buf_init(&text, 64u << 20);
    ag_buf_init(&rewritten, 128u << 20);
    int rc = ag_jscan_find(body, paths, 2, m, MAX_MATCHES, &n, NULL);
    for (size_t i = 0; i < n && rc == AG_OK; i++)
        if (m[i].path == 1 && m[i].len >= 2 && env->model.len == 0)
            env->model = ag_str(body.ptr + m[i].off + 1, m[i].len - 2); /* body outlives logs */
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if (m[i].path != 0)
            continue;
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
    }
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, body, out);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&text);
    ag_buf_dispose(&rewritten);
    free(m);
    return rc == AG_OK ? AG_OK : AG_EINVAL;
}

/* ---- streamed ---- */

typedef struct chat_stream {
    ag_api_env_t *env;
    ag_api_stats_t *st;
    ag_sse_parser_t sse;
    ag_stream_t *core;
    ag_buf_t *out;    /* the client bytes of the current feed */
    ag_buf_t data;    /* a rewritten event's data */
    ag_buf_t text;    /* text the core let through for one choice */
    ag_buf_t decoded; /* one delta's text */
    ag_jscan_path_t paths[7];
    ag_jscan_match_t *m;
    /* the upstream's identity fields, raw JSON tokens, for events astgate adds */
    char id[256], created[32], model[256], fingerprint[256];
    bool has_fingerprint;
    bool choice_open[MAX_CHOICES]; /* a delta was seen and the choice is not finished */
    bool ended;                    /* a block rule ended the stream */
    bool block_pending;            /* a block matched while finishing into the current event */
    bool done;                     /* [DONE] passed */
    ag_reply_summary_t sum[MAX_CHOICES]; /* per choice, reported when it finishes */
} chat_stream_t;

enum { P_CONTENT, P_FINISH, P_INDEX, P_ID, P_CREATED, P_MODEL, P_FPRINT };

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
    ag_buf_init(&cs->data, 64u << 20);
    ag_buf_init(&cs->text, 64u << 20);
    ag_buf_init(&cs->decoded, 64u << 20);
    cs->m = ag_xmalloc(MAX_MATCHES * sizeof(*cs->m));
    static const char *const pats[] = {"choices[*].delta.content",
                                       "choices[*].finish_reason",
                                       "choices[*].index",
                                       "id",
                                       "created",
                                       "model",
                                       "system_fingerprint"};
    static const unsigned types[] = {AG_JSCAN_STRING, AG_JSCAN_STRING, AG_JSCAN_NUMBER,
                                     AG_JSCAN_STRING, AG_JSCAN_NUMBER, AG_JSCAN_STRING,
                                     AG_JSCAN_STRING};
    for (int i = 0; i < 7; i++) {
        int rc = ag_jscan_path_compile(&cs->paths[i], ag_cstr(pats[i]), types[i]);
        AG_ASSERT(rc == AG_OK);
    }
    return cs;
}

static void stream_free(void *state)
{
    chat_stream_t *cs = state;
    if (cs == NULL)
        return;
    ag_sse_dispose(&cs->sse);
    ag_stream_free(cs->core);
    ag_buf_dispose(&cs->data);
    ag_buf_dispose(&cs->text);
    ag_buf_dispose(&cs->decoded);
    free(cs->m);
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

/* An event astgate adds: text the core still held for a choice that is ending. */
static int emit_flush(chat_stream_t *cs, int choice, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
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
        rc = ag_buf_appendf(&j, "\"choices\":[{\"index\":%d,\"delta\":{\"content\":", choice);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&j, '"');
    if (rc == AG_OK)
        rc = ag_jscan_escape(&j, text, 0) == AG_OK ? AG_OK : AG_EINVAL;
    if (rc == AG_OK)
        rc = ag_buf_appendc(&j, '"');
    if (rc == AG_OK)
        rc = ag_buf_append(&j, "},\"logprobs\":null,\"finish_reason\":null}]}", 41);
    if (rc == AG_OK)
        rc = ag_sse_write_event(cs->out, ag_str(NULL, 0), ag_buf_str(&j));
    ag_buf_dispose(&j);
    return rc;
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

static int on_event(chat_stream_t *cs, const ag_sse_item_t *it)
{
    ag_str_t data = it->data;
    if (ag_str_eqc(data, "[DONE]")) {
        int rc = finish_all(cs);
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
    if (ag_jscan_find(json, cs->paths, 7, cs->m, MAX_MATCHES, &n, NULL) != AG_OK)
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
    if (!any_content)
        return pass_raw(cs, it);
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
        ag_buf_t spliced;
        ag_buf_init(&spliced, 128u << 20);
        if (rc == AG_OK)
            rc = ag_jscan_splice(json, sp, nsp, &spliced);
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
    return rc;
}

const ag_api_t ag_api_openai_chat = {
    "chat.completions", "/v1/chat/completions", rewrite_body, stream_new, stream_feed, stream_end,
    stream_free,
};

/* OpenAI Responses API: the output_text parts of output[].content[] (not streamed) and the
 * response.output_text.delta events (streamed, one stream key per (output_index, content_index)).
 * Every event that repeats a part's full text is kept equal to what the client was sent, and
 * sequence_number stays gapless when astgate adds an event. Every other byte passes unchanged. */
#include "api.h"
#include "changes.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_MATCHES 4096       /* values found in a body */
#define MAX_EVENT_MATCHES 1024 /* values found in one event */
#define MAX_PARTS 256          /* output_text parts tracked per stream; others pass unchanged */
#define MAX_INDEX 0xffffu      /* output_index and content_index must fit 16 bits for the key */

static int put(ag_buf_t *b, const char *s)
{
    return ag_buf_append(b, s, strlen(s));
}

static uint64_t part_key(uint64_t output_index, uint64_t content_index)
{
    return output_index << 16 | content_index;
}

/* ---- not streamed ---- */

enum { B_TEXT, B_MODEL, B_OUTPUT_TEXT, B_NPATHS };

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    static const char *const pats[B_NPATHS] = {"output[*].content[*]{type=output_text}.text",
                                               "model", "output_text"};
    ag_jscan_path_t paths[B_NPATHS];
    for (int i = 0; i < B_NPATHS; i++)
        if (ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]), AG_JSCAN_STRING) != AG_OK)
            return AG_EINVAL;
    ag_jscan_match_t *m = ag_xmalloc(MAX_MATCHES * sizeof(*m));
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t plain, rewritten, old_all, new_all;
    ag_buf_init(&plain, 64u << 20);
    ag_buf_init(&rewritten, 128u << 20);
    ag_buf_init(&old_all, 128u << 20);
    ag_buf_init(&new_all, 256u << 20);
    bool changed = false;
    const ag_jscan_match_t *output_text = NULL;
    size_t n = 0;
    int rc = ag_jscan_find(body, paths, B_NPATHS, m, MAX_MATCHES, &n, NULL);
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if (m[i].path == B_MODEL) {
            if (env->model.len == 0 && m[i].len >= 2)
                env->model = ag_str(body.ptr + m[i].off + 1, m[i].len - 2); /* body outlives */
            continue;
        }
        if (m[i].path == B_OUTPUT_TEXT) {
            output_text = &m[i];
            continue;
        }
        uint64_t key = part_key(m[i].idx[0] & MAX_INDEX, m[i].idx[1] & MAX_INDEX);
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
        ag_api_report(env, key, &res, &sum);
        if (env->on_reply)
            env->on_reply(env->ud, (int)(key & 0x7fffffff), &sum);
        ag_api_stats_add(st, &res);
        changed |= res.rewrites > 0;
        rc = ag_changes_result(&ch, body, &m[i], &res, ag_buf_str(&rewritten));
        if (rc == AG_OK)
            rc = ag_buf_append(&old_all, plain.ptr, plain.len);
        if (rc == AG_OK)
            rc = ag_buf_append(&new_all, rewritten.ptr, rewritten.len);
    }
    /* a server-side output_text (the SDK's convenience field) follows its parts */
    if (rc == AG_OK && changed && output_text) {
        ag_buf_reset(&plain);
        if (ag_jscan_decode(body, output_text->off, output_text->len, &plain, NULL, 0, NULL) ==
                AG_OK &&
            ag_str_eq(ag_buf_str(&plain), ag_buf_str(&old_all)))
            rc = ag_changes_text(&ch, body, output_text, ag_buf_str(&new_all));
    }
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, body, out);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&plain);
    ag_buf_dispose(&rewritten);
    ag_buf_dispose(&old_all);
    ag_buf_dispose(&new_all);
    free(m);
    return rc == AG_OK ? AG_OK : AG_EINVAL;
}

/* ---- streamed ---- */

/* One output_text part of the reply. */
typedef struct part {
    uint64_t key;
    ag_buf_t sent;     /* what the client was sent of its text, in order */
    char item_id[256]; /* the raw item_id token of its deltas, for deltas astgate adds */
    bool open;         /* deltas went to the core and the part is not finished */
    bool final;        /* sent is the part's whole text */
    bool lost;         /* sent overflowed: events repeating the text are left alone */
    ag_reply_summary_t sum;
} part_t;

enum {
    P_TYPE,
    P_SEQ,
    P_OUT,
    P_CONT,
    P_ITEM_ID,
    P_DELTA,
    P_TEXT,
    P_PART,
    P_ITEM,
    P_RESP,
    P_RESP_OT,
    P_MODEL,
    P_NPATHS
};

typedef struct resp_stream {
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
    part_t *parts;
    uint32_t nparts, cap;
    size_t sent_max;
    char model[256];
    uint64_t offset;   /* events added so far: added to each later sequence_number */
    uint64_t next_seq; /* the number of the next event out */
    bool ended;        /* a block rule ended the stream */
    bool done;         /* a [DONE] passed: the rest goes through as it is */
} resp_stream_t;

/* The current event, as scanned. */
typedef struct ev {
    const ag_sse_item_t *it;
    ag_str_t json;
    size_t n;
    const ag_jscan_match_t *type, *seqm, *delta, *text, *part, *item_id;
    bool has_seq, has_out, has_cont;
    uint64_t seq, out_idx, cont_idx;
} ev_t;

static part_t *find_part(resp_stream_t *rs, uint64_t key)
{
    for (uint32_t i = 0; i < rs->nparts; i++)
        if (rs->parts[i].key == key)
            return &rs->parts[i];
    return NULL;
}

static part_t *get_part(resp_stream_t *rs, uint64_t key)
{
    part_t *p = find_part(rs, key);
    if (p || rs->nparts == MAX_PARTS)
        return p;
    if (rs->nparts == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 4;
        rs->parts = ag_xrealloc(rs->parts, rs->cap * sizeof(*rs->parts));
    }
    p = &rs->parts[rs->nparts++];
    memset(p, 0, sizeof(*p));
    p->key = key;
    ag_buf_init(&p->sent, rs->sent_max);
    return p;
}

static void sent_append(part_t *p, ag_str_t text)
{
    if (!p->lost && ag_buf_append(&p->sent, text.ptr, text.len) != AG_OK)
        p->lost = true;
}

static void on_core_result(void *ud, uint64_t key, const ag_result_t *res)
{
    resp_stream_t *rs = ud;
    ag_api_stats_add(rs->st, res);
    part_t *p = find_part(rs, key);
    ag_reply_summary_t scratch;
    memset(&scratch, 0, sizeof(scratch));
    ag_api_report(rs->env, key, res, p ? &p->sum : &scratch);
}

static void *stream_new(ag_api_env_t *env, ag_api_stats_t *st)
{
    resp_stream_t *rs = ag_xcalloc(1, sizeof(*rs));
    rs->env = env;
    rs->st = st;
    ag_sse_init(&rs->sse, AG_SSE_MAX_EVENT_DEFAULT);
    rs->core = ag_stream_new(env->engine, env->max_held, on_core_result, rs);
    ag_buf_init(&rs->data, 64u << 20);
    ag_buf_init(&rs->text, 64u << 20);
    ag_buf_init(&rs->plain, 64u << 20);
    ag_buf_init(&rs->spliced, 256u << 20);
    ag_buf_init(&rs->added, 64u << 20);
    ag_changes_init(&rs->ch);
    rs->m = ag_xmalloc(MAX_EVENT_MATCHES * sizeof(*rs->m));
    size_t held = env->max_held ? env->max_held : (8u << 20);
    rs->sent_max = held * 4 + (1u << 20);
    static const char *const pats[P_NPATHS] = {
        "type",
        "sequence_number",
        "output_index",
        "content_index",
        "item_id",
        "delta",
        "text",
        "part{type=output_text}.text",
        "item.content[*]{type=output_text}.text",
        "response.output[*].content[*]{type=output_text}.text",
        "response.output_text",
        "response.model",
    };
    for (int i = 0; i < P_NPATHS; i++) {
        unsigned types =
            i == P_SEQ || i == P_OUT || i == P_CONT ? AG_JSCAN_NUMBER : AG_JSCAN_STRING;
        int rc = ag_jscan_path_compile(&rs->paths[i], ag_cstr(pats[i]), types);
        AG_ASSERT(rc == AG_OK);
    }
    return rs;
}

static void stream_free(void *state)
{
    resp_stream_t *rs = state;
    if (rs == NULL)
        return;
    ag_sse_dispose(&rs->sse);
    ag_stream_free(rs->core);
    ag_buf_dispose(&rs->data);
    ag_buf_dispose(&rs->text);
    ag_buf_dispose(&rs->plain);
    ag_buf_dispose(&rs->spliced);
    ag_buf_dispose(&rs->added);
    ag_changes_dispose(&rs->ch);
    for (uint32_t i = 0; i < rs->nparts; i++)
        ag_buf_dispose(&rs->parts[i].sent);
    free(rs->parts);
    free(rs->m);
    free(rs);
}

/* Passes an item on as it came; an event cut off at the end of the stream gets its blank line. */
static int pass_raw(resp_stream_t *rs, const ag_sse_item_t *it)
{
    int rc = ag_buf_append(rs->out, it->raw.ptr, it->raw.len);
    if (rc == AG_OK && it->kind == AG_SSE_EVENT && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(rs->out, "\n\n", eol ? 1 : 2);
    }
    return rc;
}

/* The number an event astgate adds gets: the slot of the event it goes before; every later
 * upstream number moves up by one. */
static uint64_t take_seq(resp_stream_t *rs)
{
    rs->offset++;
    return rs->next_seq++;
}

static int emit_block_error(resp_stream_t *rs)
{
    char msg[512];
    const char *rule = rs->st->blocked_rule ? rs->st->blocked_rule : "";
    snprintf(msg, sizeof(msg), "astgate blocked the reply: %s",
             rs->st->blocked_message && rs->st->blocked_message[0] ? rs->st->blocked_message
                                                                   : rule);
    /* the Responses error event; its "error" object is what makes the openai SDK (6.x) throw
     * instead of ending with a partial response */
    ag_buf_t fields;
    ag_buf_init(&fields, 1u << 16);
    int rc = put(&fields, "\"code\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(&fields, ag_cstr(rule));
    if (rc == AG_OK)
        rc = put(&fields, ",\"message\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(&fields, ag_cstr(msg));
    if (rc == AG_OK)
        rc = put(&fields, ",\"param\":null");
    ag_buf_reset(&rs->added);
    if (rc == AG_OK)
        rc = ag_buf_appendf(&rs->added,
                            "{\"type\":\"error\",%s,\"error\":{\"type\":\"astgate_blocked\",%s},"
                            "\"sequence_number\":%llu}",
                            fields.ptr, fields.ptr, (unsigned long long)take_seq(rs));
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, AG_STR_LIT("error"), ag_buf_str(&rs->added));
    ag_buf_dispose(&fields);
    rs->ended = true;
    return rc;
}

/* A response.output_text.delta astgate adds: text the core held for a part that is ending. */
static int emit_delta(resp_stream_t *rs, const part_t *p, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
    ag_buf_reset(&rs->added);
    int rc = put(&rs->added, "{\"type\":\"response.output_text.delta\",\"item_id\":");
    if (rc == AG_OK)
        rc =
            ag_buf_appendf(&rs->added, "%s,\"output_index\":%llu,\"content_index\":%llu,\"delta\":",
                           p->item_id[0] ? p->item_id : "\"\"", (unsigned long long)(p->key >> 16),
                           (unsigned long long)(p->key & MAX_INDEX));
    if (rc == AG_OK)
        rc = ag_json_append_str(&rs->added, text);
    if (rc == AG_OK)
        rc = ag_buf_appendf(&rs->added, ",\"logprobs\":[],\"sequence_number\":%llu}",
                            (unsigned long long)take_seq(rs));
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, AG_STR_LIT("response.output_text.delta"),
                                ag_buf_str(&rs->added));
    return rc;
}

/* A part's text is complete: what the core still held goes out in a delta of its own. */
static int finish_part(resp_stream_t *rs, part_t *p)
{
    if (!p->open)
        return AG_OK;
    p->open = false;
    ag_stream_status_t status;
    ag_buf_reset(&rs->text);
    int rc = ag_stream_finish(rs->core, p->key, &rs->text, &status);
    if (rs->env->on_reply)
        rs->env->on_reply(rs->env->ud, (int)(p->key & 0x7fffffff), &p->sum);
    if (rc != AG_OK)
        return rc;
    sent_append(p, ag_buf_str(&rs->text));
    p->final = true;
    rc = emit_delta(rs, p, ag_buf_str(&rs->text));
    if (rc == AG_OK && status == AG_STREAM_BLOCKED)
        rc = emit_block_error(rs);
    return rc;
}

/* Finishes the open parts of one output item (all of them when output_index is UINT64_MAX). */
static int finish_parts(resp_stream_t *rs, uint64_t output_index)
{
    for (uint32_t i = 0; i < rs->nparts && !rs->ended; i++) {
        if (output_index != UINT64_MAX && rs->parts[i].key >> 16 != output_index)
            continue;
        int rc = finish_part(rs, &rs->parts[i]);
        if (rc != AG_OK)
            return rc;
    }
    return AG_OK;
}

/* The final text of part key, for an event that repeats it; NULL: leave that text alone. A part
 * that was never streamed (its full text is all there is) is rewritten whole, once. */
static const ag_buf_t *final_text(resp_stream_t *rs, uint64_t key, ag_str_t json,
                                  const ag_jscan_match_t *m, int *rc)
{
    *rc = AG_OK;
    part_t *p = find_part(rs, key);
    if (p && p->open) {
        *rc = finish_part(rs, p);
        if (*rc != AG_OK || rs->ended)
            return NULL;
    }
    if (p == NULL)
        p = get_part(rs, key);
    if (p == NULL || p->lost)
        return NULL;
    if (p->final)
        return &p->sent;
    ag_buf_reset(&rs->plain);
    if (ag_jscan_decode(json, m->off, m->len, &rs->plain, NULL, 0, NULL) != AG_OK)
        return NULL;
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    ag_buf_reset(&p->sent);
    if (ag_engine_rewrite(rs->env->engine, ag_buf_str(&rs->plain), &p->sent, &res) != AG_OK) {
        ag_buf_reset(&p->sent);
        memset(&res, 0, sizeof(res));
        if (ag_buf_append(&p->sent, rs->plain.ptr, rs->plain.len) != AG_OK)
            p->lost = true;
    }
    p->final = true;
    ag_api_stats_add(rs->st, &res);
    ag_api_report(rs->env, key, &res, &p->sum);
    if (rs->env->on_reply)
        rs->env->on_reply(rs->env->ud, (int)(key & 0x7fffffff), &p->sum);
    if (res.blocked) {
        *rc = emit_block_error(rs);
        return NULL;
    }
    return p->lost ? NULL : &p->sent;
}

/* The full text at m (of part key) becomes what the client was sent. */
static int fix_full_text(resp_stream_t *rs, const ev_t *ev, uint64_t out_idx, uint64_t cont_idx,
                         const ag_jscan_match_t *m)
{
    if (out_idx > MAX_INDEX || cont_idx > MAX_INDEX)
        return AG_OK;
    int rc;
    const ag_buf_t *t = final_text(rs, part_key(out_idx, cont_idx), ev->json, m, &rc);
    if (rc != AG_OK || t == NULL)
        return rc;
    return ag_changes_text(&rs->ch, ev->json, m, ag_buf_str(t));
}

/* Writes the current event with its changes and its renumbered sequence_number. */
static int write_event(resp_stream_t *rs, const ev_t *ev)
{
    int rc = AG_OK;
    if (ev->has_seq) {
        uint64_t out = ev->seq + rs->offset;
        if (out != ev->seq) {
            char num[32];
            int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)out);
            rc = ag_changes_raw(&rs->ch, ev->seqm, ag_str(num, (size_t)len));
        }
        rs->next_seq = out + 1;
    }
    if (rc != AG_OK || rs->ch.n == 0)
        return rc == AG_OK ? pass_raw(rs, ev->it) : rc;
    ag_buf_reset(&rs->spliced);
    rc = ag_changes_apply(&rs->ch, ev->json, &rs->spliced);
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, ev->it->event, ag_buf_str(&rs->spliced));
    return rc;
}

static int on_delta(resp_stream_t *rs, ev_t *ev)
{
    if (!ev->delta || !ev->has_out || !ev->has_cont || ev->out_idx > MAX_INDEX ||
        ev->cont_idx > MAX_INDEX)
        return write_event(rs, ev);
    part_t *p = get_part(rs, part_key(ev->out_idx, ev->cont_idx));
    if (p == NULL || p->final)
        return write_event(rs, ev);
    if (ev->item_id && ev->item_id->len < sizeof(p->item_id)) {
        memcpy(p->item_id, ev->json.ptr + ev->item_id->off, ev->item_id->len);
        p->item_id[ev->item_id->len] = '\0';
    }
    ag_buf_reset(&rs->plain);
    if (ag_jscan_decode(ev->json, ev->delta->off, ev->delta->len, &rs->plain, NULL, 0, NULL) !=
        AG_OK)
        return write_event(rs, ev);
    p->open = true;
    ag_stream_status_t status;
    ag_buf_reset(&rs->text);
    int rc = ag_stream_push(rs->core, p->key, ag_buf_str(&rs->plain), &rs->text, &status);
    if (rc != AG_OK)
        return rc;
    sent_append(p, ag_buf_str(&rs->text));
    if (status == AG_STREAM_BLOCKED) {
        /* what came before the blocked block still reaches the client, then the error */
        p->open = false;
        if (rs->env->on_reply)
            rs->env->on_reply(rs->env->ud, (int)(p->key & 0x7fffffff), &p->sum);
        if (rs->text.len) {
            rc = ag_changes_text(&rs->ch, ev->json, ev->delta, ag_buf_str(&rs->text));
            if (rc == AG_OK)
                rc = write_event(rs, ev);
        }
        return rc == AG_OK ? emit_block_error(rs) : rc;
    }
    rc = ag_changes_text(&rs->ch, ev->json, ev->delta, ag_buf_str(&rs->text));
    return rc == AG_OK ? write_event(rs, ev) : rc;
}

static bool type_is(const ev_t *ev, const char *name)
{
    if (ev->type)
        return ag_jscan_str_eq(ev->json, ev->type, ag_cstr(name));
    return ag_str_eqc(ev->it->event, name);
}

/* response.completed / incomplete / failed: every part finishes, and the response's output holds
 * the texts the client was sent (its output_text too, when a server adds one). */
static int on_final_response(resp_stream_t *rs, ev_t *ev)
{
    int rc = finish_parts(rs, UINT64_MAX);
    const ag_jscan_match_t *ot = NULL;
    ag_buf_t old_all, new_all;
    ag_buf_init(&old_all, 256u << 20);
    ag_buf_init(&new_all, 256u << 20);
    bool ok_all = true;
    for (size_t i = 0; i < ev->n && rc == AG_OK && !rs->ended; i++) {
        const ag_jscan_match_t *m = &rs->m[i];
        if (m->path == P_RESP_OT)
            ot = m;
        if (m->path != P_RESP)
            continue;
        ag_buf_reset(&rs->plain);
        if (ag_jscan_decode(ev->json, m->off, m->len, &rs->plain, NULL, 0, NULL) != AG_OK ||
            ag_buf_append(&old_all, rs->plain.ptr, rs->plain.len) != AG_OK)
            ok_all = false;
        if (m->idx[0] > MAX_INDEX || m->idx[1] > MAX_INDEX) {
            ok_all = false;
            continue;
        }
        const ag_buf_t *t = final_text(rs, part_key(m->idx[0], m->idx[1]), ev->json, m, &rc);
        if (rc != AG_OK || rs->ended)
            break;
        if (t == NULL || ag_buf_append(&new_all, t->ptr, t->len) != AG_OK) {
            ok_all = false;
            continue;
        }
        rc = ag_changes_text(&rs->ch, ev->json, m, ag_buf_str(t));
    }
    if (rc == AG_OK && !rs->ended && ot && ok_all) {
        ag_buf_reset(&rs->plain);
        if (ag_jscan_decode(ev->json, ot->off, ot->len, &rs->plain, NULL, 0, NULL) == AG_OK &&
            ag_str_eq(ag_buf_str(&rs->plain), ag_buf_str(&old_all)))
            rc = ag_changes_text(&rs->ch, ev->json, ot, ag_buf_str(&new_all));
    }
    ag_buf_dispose(&old_all);
    ag_buf_dispose(&new_all);
    if (rc != AG_OK || rs->ended)
        return rc;
    return write_event(rs, ev);
}

static void keep_model(resp_stream_t *rs, ag_str_t json, const ag_jscan_match_t *m)
{
    if (rs->env->model.len || m->len < 2 || m->len - 2 >= sizeof(rs->model))
        return;
    memcpy(rs->model, json.ptr + m->off + 1, m->len - 2);
    rs->model[m->len - 2] = '\0';
    rs->env->model = ag_str(rs->model, m->len - 2);
}

static int on_event(resp_stream_t *rs, const ag_sse_item_t *it)
{
    if (ag_str_eqc(it->data, "[DONE]")) {
        int rc = finish_parts(rs, UINT64_MAX);
        if (rc == AG_OK && !rs->ended)
            rc = pass_raw(rs, it);
        rs->done = true;
        return rc;
    }
    ag_buf_reset(&rs->data);
    if (ag_buf_append(&rs->data, it->data.ptr, it->data.len) != AG_OK)
        return pass_raw(rs, it);
    ev_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.it = it;
    ev.json = ag_buf_str(&rs->data);
    if (ag_jscan_find(ev.json, rs->paths, P_NPATHS, rs->m, MAX_EVENT_MATCHES, &ev.n, NULL) != AG_OK)
        return pass_raw(rs, it); /* not JSON we know: as it came */
    for (size_t i = 0; i < ev.n; i++) {
        const ag_jscan_match_t *m = &rs->m[i];
        switch (m->path) {
        case P_TYPE:
            ev.type = ev.type ? ev.type : m;
            break;
        case P_SEQ:
            if (!ev.has_seq && ag_jscan_get_u64(ev.json, m, &ev.seq) == AG_OK &&
                ev.seq < UINT64_MAX / 2) {
                ev.has_seq = true;
                ev.seqm = m;
            }
            break;
        case P_OUT:
            ev.has_out = ev.has_out || ag_jscan_get_u64(ev.json, m, &ev.out_idx) == AG_OK;
            break;
        case P_CONT:
            ev.has_cont = ev.has_cont || ag_jscan_get_u64(ev.json, m, &ev.cont_idx) == AG_OK;
            break;
        case P_ITEM_ID:
            ev.item_id = ev.item_id ? ev.item_id : m;
            break;
        case P_DELTA:
            ev.delta = ev.delta ? ev.delta : m;
            break;
        case P_TEXT:
            ev.text = ev.text ? ev.text : m;
            break;
        case P_PART:
            ev.part = ev.part ? ev.part : m;
            break;
        case P_MODEL:
            keep_model(rs, ev.json, m);
            break;
        default:
            break;
        }
    }
    if (ev.has_seq)
        rs->next_seq = ev.seq + rs->offset;
    ag_changes_reset(&rs->ch);
    int rc = AG_OK;
    if (type_is(&ev, "response.output_text.delta"))
        return on_delta(rs, &ev);
    if (type_is(&ev, "response.output_text.done") || type_is(&ev, "response.content_part.done")) {
        const ag_jscan_match_t *m = type_is(&ev, "response.output_text.done") ? ev.text : ev.part;
        if (ev.has_out && ev.has_cont && m)
            rc = fix_full_text(rs, &ev, ev.out_idx, ev.cont_idx, m);
        else if (ev.has_out && ev.has_cont && ev.out_idx <= MAX_INDEX && ev.cont_idx <= MAX_INDEX) {
            part_t *p = find_part(rs, part_key(ev.out_idx, ev.cont_idx));
            rc = p ? finish_part(rs, p) : AG_OK;
        }
    } else if (type_is(&ev, "response.output_item.done")) {
        if (ev.has_out)
            rc = finish_parts(rs, ev.out_idx);
        for (size_t i = 0; i < ev.n && rc == AG_OK && !rs->ended && ev.has_out; i++)
            if (rs->m[i].path == P_ITEM)
                rc = fix_full_text(rs, &ev, ev.out_idx, rs->m[i].idx[0], &rs->m[i]);
    } else if (type_is(&ev, "response.completed") || type_is(&ev, "response.incomplete") ||
               type_is(&ev, "response.failed")) {
        return on_final_response(rs, &ev);
    } else if (type_is(&ev, "error")) {
        rc = finish_parts(rs, UINT64_MAX); /* the client gets what came before the error */
    }
    if (rc != AG_OK || rs->ended)
        return rc;
    return write_event(rs, &ev);
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    resp_stream_t *rs = ud;
    if (rs->ended)
        return AG_OK;
    if (it->kind != AG_SSE_EVENT || rs->done)
        return pass_raw(rs, it);
    return on_event(rs, it);
}

static int stream_feed(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended)
{
    resp_stream_t *rs = state;
    rs->out = out;
    int rc = ag_sse_feed(&rs->sse, bytes, on_item, rs);
    *ended = rs->ended;
    return rc;
}

static int stream_end(void *state, ag_buf_t *out)
{
    resp_stream_t *rs = state;
    rs->out = out;
    int rc = ag_sse_finish(&rs->sse, on_item, rs);
    if (rc == AG_OK && !rs->ended && !rs->done)
        rc = finish_parts(rs, UINT64_MAX);
    return rc;
}

const ag_api_t ag_api_openai_responses = {
    "responses", "/v1/responses", rewrite_body, stream_new, stream_feed, stream_end, stream_free,
};

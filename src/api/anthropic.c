/* Anthropic Messages API: content[] blocks of type text (not streamed) and the text_delta events
 * of each content block (streamed, one stream key per content block index). No Anthropic event
 * repeats a block's text, so only the deltas change; what the core still holds when a block stops
 * goes out in a content_block_delta astgate adds before the stop. Every other byte is kept. */
#include "api.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_MATCHES 4096       /* values found in a body */
#define MAX_EVENT_MATCHES 1024 /* values found in one event */
#define MAX_BLOCKS 256         /* content blocks tracked per stream; later ones pass unchanged */

/* ---- changes to one JSON text, applied in one splice ---- */

typedef struct change {
    size_t off, len; /* the token in the JSON text */
    size_t *map;     /* ag_jscan_decode's map (owned); NULL: raw replacement */
    size_t map_len;
    size_t first, nedits;    /* its edits: changes_t.e[first, first + nedits) */
    size_t raw_off, raw_len; /* raw replacement bytes, in changes_t.texts */
} change_t;

typedef struct changes {
    change_t *c;
    size_t n, cap;
    ag_jscan_edit_t *e; /* text.ptr holds an offset into texts until applied */
    size_t ne, ecap;
    ag_jscan_splice_t *sp;
    size_t spcap;
    ag_buf_t texts; /* replacement texts */
    ag_buf_t dec;   /* scratch: a decoded token */
} changes_t;

static void changes_init(changes_t *s)
{
    memset(s, 0, sizeof(*s));
    ag_buf_init(&s->texts, 256u << 20);
    ag_buf_init(&s->dec, 64u << 20);
}

static void changes_reset(changes_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->c[i].map);
    s->n = 0;
    s->ne = 0;
    ag_buf_reset(&s->texts);
}

static void changes_dispose(changes_t *s)
{
    changes_reset(s);
    free(s->c);
    free(s->e);
    free(s->sp);
    ag_buf_dispose(&s->texts);
    ag_buf_dispose(&s->dec);
}

static change_t *changes_add(changes_t *s, size_t off, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->c = ag_xrealloc(s->c, s->cap * sizeof(*s->c));
    }
    change_t *c = &s->c[s->n++];
    memset(c, 0, sizeof(*c));
    c->off = off;
    c->len = len;
    c->first = s->ne;
    return c;
}

static int changes_edit(changes_t *s, change_t *c, size_t start, size_t end, ag_str_t text)
{
    if (s->ne == s->ecap) {
        s->ecap = s->ecap ? s->ecap * 2 : 8;
        s->e = ag_xrealloc(s->e, s->ecap * sizeof(*s->e));
    }
    size_t at = s->texts.len;
    int rc = ag_buf_append(&s->texts, text.ptr, text.len);
    if (rc != AG_OK)
        return rc;
    s->e[s->ne].start = start;
    s->e[s->ne].end = end;
    s->e[s->ne].text = ag_str((const char *)(uintptr_t)at, text.len);
    s->ne++;
    c->nedits++;
    return AG_OK;
}

/* Decodes the string token m into s->dec with its offset map (owned by the caller). */
static int decode_mapped(changes_t *s, ag_str_t json, const ag_jscan_match_t *m, size_t **map,
                         size_t *map_len)
{
    ag_buf_reset(&s->dec);
    *map = ag_xmalloc((m->len + 1) * sizeof(**map));
    int rc = ag_jscan_decode(json, m->off, m->len, &s->dec, *map, m->len + 1, map_len);
    if (rc != AG_OK) {
        free(*map);
        *map = NULL;
    }
    return rc;
}

static bool utf8_cont(ag_str_t s, size_t i)
{
    return i < s.len && ((unsigned char)s.ptr[i] & 0xc0) == 0x80;
}

/* The string token m gets the decoded contents text: one edit over the span that differs, so the
 * common head and tail keep their bytes (and escapes). Nothing when text is what it holds. */
static int changes_text(changes_t *s, ag_str_t json, const ag_jscan_match_t *m, ag_str_t text)
{
    size_t *map = NULL, map_len = 0;
    int rc = decode_mapped(s, json, m, &map, &map_len);
    if (rc != AG_OK)
        return rc;
    ag_str_t old = ag_buf_str(&s->dec);
    if (ag_str_eq(old, text)) {
        free(map);
        return AG_OK;
    }
    size_t lim = old.len < text.len ? old.len : text.len;
    size_t p = 0;
    while (p < lim && old.ptr[p] == text.ptr[p])
        p++;
    while (p > 0 && utf8_cont(old, p))
        p--;
    size_t q = 0; /* common tail, not overlapping the head */
    while (q < lim - p && old.ptr[old.len - 1 - q] == text.ptr[text.len - 1 - q])
        q++;
    while (q > 0 && utf8_cont(old, old.len - q))
        q--;
    change_t *c = changes_add(s, m->off, m->len);
    c->map = map;
    c->map_len = map_len;
    return changes_edit(s, c, p, old.len - q, ag_str(text.ptr + p, text.len - q - p));
}

/* The engine's applied edits to the string token m (decoded coordinates). When they do not fit
 * the token (out of order, inside a character), one edit from the rewritten text instead. */
static int changes_result(changes_t *s, ag_str_t json, const ag_jscan_match_t *m,
                          const ag_result_t *res, ag_str_t rewritten)
{
    size_t *map = NULL, map_len = 0;
    int rc = decode_mapped(s, json, m, &map, &map_len);
    if (rc != AG_OK)
        return rc;
    ag_str_t old = ag_buf_str(&s->dec);
    size_t prev = 0, napplied = 0;
    bool fits = true;
    for (uint32_t k = 0; k < res->nevents && fits; k++) {
        const ag_event_t *ev = &res->events[k];
        if (ev->action != AG_ACTION_REWRITE || !ev->applied)
            continue;
        size_t st = ev->offset, en = ev->offset + ev->before.len;
        fits = st >= prev && en <= old.len && !utf8_cont(old, st) && !utf8_cont(old, en) &&
               (ev->before.len == 0 || memcmp(old.ptr + st, ev->before.ptr, ev->before.len) == 0);
        prev = en;
        napplied++;
    }
    if (!fits) {
        free(map);
        return changes_text(s, json, m, rewritten);
    }
    if (napplied == 0) {
        free(map);
        return AG_OK;
    }
    change_t *c = changes_add(s, m->off, m->len);
    c->map = map;
    c->map_len = map_len;
    for (uint32_t k = 0; k < res->nevents && rc == AG_OK; k++) {
        const ag_event_t *ev = &res->events[k];
        if (ev->action == AG_ACTION_REWRITE && ev->applied)
            rc = changes_edit(s, c, ev->offset, ev->offset + ev->before.len, ev->after);
    }
    return rc;
}

/* Appends json with every change applied. */
static int changes_apply(changes_t *s, ag_str_t json, ag_buf_t *out)
{
    /* by position (few changes: insertion sort) */
    for (size_t i = 1; i < s->n; i++) {
        change_t t = s->c[i];
        size_t j = i;
        for (; j > 0 && s->c[j - 1].off > t.off; j--)
            s->c[j] = s->c[j - 1];
        s->c[j] = t;
    }
    if (s->spcap < s->n) {
        s->spcap = s->n;
        s->sp = ag_xrealloc(s->sp, s->spcap * sizeof(*s->sp));
    }
    const char *base = ag_buf_str(&s->texts).ptr;
    for (size_t i = 0; i < s->ne; i++)
        s->e[i].text.ptr = base + (uintptr_t)s->e[i].text.ptr;
    for (size_t i = 0; i < s->n; i++) {
        const change_t *c = &s->c[i];
        ag_jscan_splice_t *sp = &s->sp[i];
        memset(sp, 0, sizeof(*sp));
        sp->off = c->off;
        sp->len = c->len;
        sp->map = c->map;
        sp->map_len = c->map_len;
        sp->edits = c->map ? s->e + c->first : NULL;
        sp->nedits = c->map ? c->nedits : 0;
        if (!c->map)
            sp->raw = ag_str(base + c->raw_off, c->raw_len);
    }
    int rc = ag_jscan_splice(json, s->sp, s->n, out);
    for (size_t i = 0; i < s->ne; i++) /* back to offsets: the set may be applied again */
        s->e[i].text.ptr = (const char *)(uintptr_t)(s->e[i].text.ptr - base);
    return rc;
}

static void report(ag_api_env_t *env, uint64_t key, const ag_result_t *res, ag_reply_summary_t *sum)
{
    ag_reply_summary_add(sum, res);
    if (env->on_result && res->nevents)
        env->on_result(env->ud, (int)(key & 0x7fffffff), res);
}

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
    changes_t ch;
    changes_init(&ch);
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
        report(env, m[i].idx[0], &res, &sum);
        if (env->on_reply)
            env->on_reply(env->ud, (int)(m[i].idx[0] & 0x7fffffff), &sum);
        ag_api_stats_add(st, &res);
        rc = changes_result(&ch, body, &m[i], &res, ag_buf_str(&rewritten));
    }
    if (rc == AG_OK)
        rc = changes_apply(&ch, body, out);
    changes_dispose(&ch);
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
    changes_t ch;     /* changes to the current event */
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
    report(as->env, key, res, key < MAX_BLOCKS ? &as->sum[key] : &scratch);
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
    changes_init(&as->ch);
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
    changes_dispose(&as->ch);
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
    int rc = changes_apply(&as->ch, json, &as->spliced);
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
        rc = changes_text(&as->ch, json, m, ag_buf_str(&as->text));
        return rc == AG_OK ? write_event(as, it, json) : rc;
    }
    as->open[index] = false;
    if (as->env->on_reply)
        as->env->on_reply(as->env->ud, index, &as->sum[index]);
    /* a start event always goes out (a delta needs its block); a delta only with what came
     * before the blocked code; then the error */
    if (m->path == P_START || as->text.len) {
        rc = changes_text(&as->ch, json, m, ag_buf_str(&as->text));
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
    changes_reset(&as->ch);
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

/* The OpenAI Responses adapter: not streamed, every output_text part is rewritten and every other
 * byte kept; streamed, realistic event sequences fed in random splits: the deltas of each part add
 * up to the engine's rewrite of its text, the events that repeat the text (output_text.done,
 * content_part.done, output_item.done, completed) hold the same text, sequence_number runs
 * without gaps, and every other event is the upstream's, byte for byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "api/api.h"
#include "json.h"
#include "jsonscan.h"
#include "rules.h"
#include "sse.h"

static ag_rules_t *rules;
static ag_engine_t *engine;

static int setup(void **state)
{
    const char *files[] = {"rules/mastra.yaml"};
    ag_diag_t d;
    if (ag_rules_load_files(files, 1, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return -1;
    }
    ag_engine_opts_t opts = {0};
    opts.bare = true;
    engine = ag_engine_new(rules, &opts);
    return 0;
}

static int teardown(void **state)
{
    ag_engine_free(engine);
    ag_rules_free(rules);
    return 0;
}

static uint64_t rng_state;
static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static void put(ag_buf_t *b, const char *s)
{
    assert_int_equal(ag_buf_append(b, s, strlen(s)), AG_OK);
}

static void put_json(ag_buf_t *b, ag_str_t s)
{
    assert_int_equal(ag_json_append_str(b, s), AG_OK);
}

static void rewrite(ag_engine_t *e, ag_str_t text, ag_buf_t *out)
{
    ag_result_t res;
    ag_buf_reset(out);
    assert_int_equal(ag_engine_rewrite(e, text, out, &res), AG_OK);
}

/* ---- what the adapter reports ---- */

typedef struct sink {
    int replies; /* on_reply calls */
    int results; /* on_result calls */
    uint32_t rewrites;
} sink_t;

static void on_result(void *ud, int index, const ag_result_t *res)
{
    sink_t *s = ud;
    s->results++;
    s->rewrites += res->rewrites;
}

static void on_reply(void *ud, int index, const ag_reply_summary_t *sum)
{
    sink_t *s = ud;
    s->replies++;
}

static void env_init(ag_api_env_t *env, ag_engine_t *e, sink_t *s)
{
    memset(env, 0, sizeof(*env));
    memset(s, 0, sizeof(*s));
    env->engine = e;
    env->on_result = on_result;
    env->on_reply = on_reply;
    env->ud = s;
}

static char model[256];

/* Streams sse through the adapter in random pieces of up to max_piece bytes. */
static bool run_stream(ag_api_env_t *env, ag_api_stats_t *st, ag_str_t sse, uint32_t max_piece,
                       ag_buf_t *out)
{
    const ag_api_t *api = &ag_api_openai_responses;
    void *s = api->stream_new(env, st);
    bool ended = false;
    size_t pos = 0;
    while (pos < sse.len && !ended) {
        size_t n = 1 + rng() % max_piece;
        if (n > sse.len - pos)
            n = sse.len - pos;
        assert_int_equal(api->stream_feed(s, ag_str(sse.ptr + pos, n), out, &ended), AG_OK);
        pos += n;
    }
    if (!ended)
        assert_int_equal(api->stream_end(s, out), AG_OK);
    /* env->model points into the stream's state: keep a copy */
    snprintf(model, sizeof(model), "%.*s", (int)env->model.len, env->model.ptr);
    api->stream_free(s);
    env->model = ag_cstr(model);
    return ended;
}

/* ---- SSE events, parsed ---- */

#define MAX_EVENTS 4096

typedef struct events {
    size_t n;
    char *name[MAX_EVENTS];
    char *data[MAX_EVENTS];
    size_t len[MAX_EVENTS];
} events_t;

static int collect(void *ud, const ag_sse_item_t *it)
{
    events_t *e = ud;
    if (it->kind != AG_SSE_EVENT)
        return AG_OK;
    assert_false(it->eof); /* every event ends with its blank line */
    assert_true(e->n < MAX_EVENTS);
    e->name[e->n] = ag_xstrndup(it->event.ptr, it->event.len);
    e->data[e->n] = ag_xstrndup(it->data.ptr, it->data.len);
    e->len[e->n] = it->data.len;
    e->n++;
    return AG_OK;
}

static void parse_events(ag_str_t sse, events_t *e)
{
    memset(e, 0, sizeof(*e));
    ag_sse_parser_t p;
    ag_sse_init(&p, 0);
    assert_int_equal(ag_sse_feed(&p, sse, collect, e), AG_OK);
    assert_int_equal(ag_sse_finish(&p, collect, e), AG_OK);
    ag_sse_dispose(&p);
}

static void events_free(events_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->name[i]);
        free(e->data[i]);
    }
    e->n = 0;
}

static ag_str_t data_of(const events_t *e, size_t i)
{
    return ag_str(e->data[i], e->len[i]);
}

/* ---- JSON access ---- */

#define MAXM 256

static size_t find(ag_str_t json, const char *path, unsigned types, ag_jscan_match_t *m)
{
    ag_jscan_path_t p;
    assert_int_equal(ag_jscan_path_compile(&p, ag_cstr(path), types), AG_OK);
    size_t n = 0;
    assert_int_equal(ag_jscan_find(json, &p, 1, m, MAXM, &n, NULL), AG_OK);
    return n;
}

/* The decoded string at path (the first match); false when there is none. */
static bool get_str(ag_str_t json, const char *path, ag_buf_t *out)
{
    ag_jscan_match_t m[MAXM];
    ag_buf_reset(out);
    if (find(json, path, AG_JSCAN_STRING, m) == 0)
        return false;
    assert_int_equal(ag_jscan_decode(json, m[0].off, m[0].len, out, NULL, 0, NULL), AG_OK);
    return true;
}

static bool get_num(ag_str_t json, const char *path, uint64_t *v)
{
    ag_jscan_match_t m[MAXM];
    if (find(json, path, AG_JSCAN_NUMBER, m) == 0)
        return false;
    assert_int_equal(ag_jscan_get_u64(json, &m[0], v), AG_OK);
    return true;
}

static bool type_is(ag_str_t json, const char *type)
{
    ag_jscan_match_t m[MAXM];
    return find(json, "type", AG_JSCAN_STRING, m) == 1 &&
           ag_jscan_str_eq(json, &m[0], ag_cstr(type));
}

/* json with the values that may change replaced by placeholders: sequence_number, and the text
 * of output_text parts in the events that carry it. What is left must not change. */
static void normalize(ag_str_t json, ag_buf_t *out)
{
    const char *paths[] = {"sequence_number", NULL, NULL, NULL};
    if (type_is(json, "response.output_text.delta"))
        paths[1] = "delta";
    else if (type_is(json, "response.output_text.done"))
        paths[1] = "text";
    else if (type_is(json, "response.content_part.done"))
        paths[1] = "part{type=output_text}.text";
    else if (type_is(json, "response.output_item.done"))
        paths[1] = "item.content[*]{type=output_text}.text";
    else if (type_is(json, "response.completed") || type_is(json, "response.incomplete")) {
        paths[1] = "response.output[*].content[*]{type=output_text}.text";
        paths[2] = "response.output_text";
    }
    ag_jscan_splice_t sp[MAXM];
    size_t nsp = 0;
    for (int k = 0; k < 3 && paths[k]; k++) {
        ag_jscan_match_t m[MAXM];
        size_t n = find(json, paths[k], k == 0 ? AG_JSCAN_NUMBER : AG_JSCAN_STRING, m);
        for (size_t i = 0; i < n; i++) {
            memset(&sp[nsp], 0, sizeof(sp[nsp]));
            sp[nsp].off = m[i].off;
            sp[nsp].len = m[i].len;
            sp[nsp].raw = k == 0 ? AG_STR_LIT("0") : AG_STR_LIT("\"\"");
            /* by position */
            for (size_t j = nsp; j > 0 && sp[j - 1].off > sp[j].off; j--) {
                ag_jscan_splice_t t = sp[j];
                sp[j] = sp[j - 1];
                sp[j - 1] = t;
            }
            nsp++;
        }
    }
    ag_buf_reset(out);
    assert_int_equal(ag_jscan_splice(json, sp, nsp, out), AG_OK);
}

/* ---- the upstream's events ---- */

enum {
    F_REASONING = 1,   /* a reasoning item first: the message is output 1 */
    F_FUNC = 2,        /* a function call with code in its arguments after the message */
    F_TWO_PARTS = 4,   /* the message has two output_text parts */
    F_NO_DONE = 8,     /* no output_text.done / content_part.done / output_item.done */
    F_OBFUSCATE = 16,  /* deltas carry an obfuscation field */
    F_OUTPUT_TEXT = 32 /* response.completed carries output_text */
};

typedef struct gen {
    ag_buf_t sse;
    ag_buf_t j;
    uint64_t seq;
    const char *eol;
} gen_t;

static void ev_begin(gen_t *g, const char *type)
{
    ag_buf_reset(&g->j);
    put(&g->j, "{\"type\":\"");
    put(&g->j, type);
    put(&g->j, "\"");
}

static void ev_end(gen_t *g, const char *type)
{
    assert_int_equal(
        ag_buf_appendf(&g->j, ",\"sequence_number\":%llu}", (unsigned long long)g->seq++), AG_OK);
    put(&g->sse, "event: ");
    put(&g->sse, type);
    put(&g->sse, g->eol);
    put(&g->sse, "data: ");
    assert_int_equal(ag_buf_append(&g->sse, g->j.ptr, g->j.len), AG_OK);
    put(&g->sse, g->eol);
    put(&g->sse, g->eol);
}

/* Random cut points of text on UTF-8 boundaries, with cuts around fences on purpose. */
static size_t next_cut(ag_str_t text, size_t pos)
{
    size_t n = pos + 1 + rng() % 12;
    const char *f = ag_memmem(ag_str(text.ptr + pos, text.len - pos), AG_STR_LIT("```"));
    if (f && rng() % 2)
        n = (size_t)(f - text.ptr) + rng() % 5;
    if (n <= pos)
        n = pos + 1;
    if (n > text.len)
        n = text.len;
    while (n < text.len && ((unsigned char)text.ptr[n] & 0xc0) == 0x80)
        n++;
    return n;
}

static const char *RESP_HEAD =
    "\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741476542,"
    "\"model\":\"gpt-4.1-2025-04-14\",\"error\":null,"
    "\"instructions\":null,\"metadata\":{}";
static const char *REASONING_ITEM =
    "{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[{\"type\":"
    "\"summary_text\",\"text\":\"Use ```ts and new Agent({ model: "
    "'gpt-4o' })\"}]}";
static const char *FUNC_ARGS = "{\\\"path\\\":\\\"a.ts\\\",\\\"code\\\":\\\"```ts\\\\nnew "
                               "Agent({ model: 'gpt-4o' })\\\\n```\\\"}";

static void message_item(gen_t *g, ag_str_t *texts, int nparts, const char *status)
{
    put(&g->j, "{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"");
    put(&g->j, status);
    put(&g->j, "\",\"role\":\"assistant\",\"content\":[");
    for (int c = 0; texts && c < nparts; c++) {
        put(&g->j, c ? ",{" : "{");
        put(&g->j, "\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":");
        put_json(&g->j, texts[c]);
        put(&g->j, "}");
    }
    put(&g->j, "]}");
}

static void func_item(gen_t *g, const char *status, bool args)
{
    put(&g->j, "{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":\"");
    put(&g->j, status);
    put(&g->j, "\",\"call_id\":\"call_1\",\"name\":\"write_file\",\"arguments\":\"");
    if (args)
        put(&g->j, FUNC_ARGS);
    put(&g->j, "\"}");
}

/* The event sequence of one streamed response whose message holds texts (one or two parts).
 * cut: stop after that many bytes of the last part's text (SIZE_MAX: the whole reply). */
static void gen_response(gen_t *g, ag_str_t *texts, int nparts, unsigned flags, size_t cut)
{
    int o = flags & F_REASONING ? 1 : 0;
    char idx[96];
    ev_begin(g, "response.created");
    put(&g->j, ",\"response\":{");
    put(&g->j, RESP_HEAD);
    put(&g->j, ",\"status\":\"in_progress\",\"output\":[],\"usage\":null}");
    ev_end(g, "response.created");
    ev_begin(g, "response.in_progress");
    put(&g->j, ",\"response\":{");
    put(&g->j, RESP_HEAD);
    put(&g->j, ",\"status\":\"in_progress\",\"output\":[],\"usage\":null}");
    ev_end(g, "response.in_progress");
    if (flags & F_REASONING) {
        ev_begin(g, "response.output_item.added");
        put(&g->j, ",\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\","
                   "\"summary\":[]}");
        ev_end(g, "response.output_item.added");
        ev_begin(g, "response.reasoning_summary_text.delta");
        put(&g->j, ",\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"delta\":"
                   "\"Use ```ts and new Agent({ model: 'gpt-4o' })\"");
        ev_end(g, "response.reasoning_summary_text.delta");
        ev_begin(g, "response.output_item.done");
        put(&g->j, ",\"output_index\":0,\"item\":");
        put(&g->j, REASONING_ITEM);
        ev_end(g, "response.output_item.done");
    }
    ev_begin(g, "response.output_item.added");
    snprintf(idx, sizeof(idx), ",\"output_index\":%d,\"item\":", o);
    put(&g->j, idx);
    message_item(g, NULL, 0, "in_progress");
    ev_end(g, "response.output_item.added");
    for (int c = 0; c < nparts; c++) {
        snprintf(idx, sizeof(idx),
                 ",\"item_id\":\"msg_1\",\"output_index\":%d,\"content_index\":%d", o, c);
        ev_begin(g, "response.content_part.added");
        put(&g->j, idx);
        put(&g->j, ",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],"
                   "\"text\":\"\"}");
        ev_end(g, "response.content_part.added");
        size_t end = c == nparts - 1 && cut < texts[c].len ? cut : texts[c].len;
        for (size_t pos = 0; pos < end;) {
            size_t next = next_cut(ag_str(texts[c].ptr, end), pos);
            ev_begin(g, "response.output_text.delta");
            put(&g->j, idx);
            put(&g->j, ",\"delta\":");
            put_json(&g->j, ag_str(texts[c].ptr + pos, next - pos));
            put(&g->j, ",\"logprobs\":[]");
            if (flags & F_OBFUSCATE)
                put(&g->j, ",\"obfuscation\":\"aZ3\"");
            ev_end(g, "response.output_text.delta");
            pos = next;
        }
        if (end < texts[c].len)
            return; /* the stream is cut off here */
        if (flags & F_NO_DONE)
            continue;
        ev_begin(g, "response.output_text.done");
        put(&g->j, idx);
        put(&g->j, ",\"text\":");
        put_json(&g->j, texts[c]);
        put(&g->j, ",\"logprobs\":[]");
        ev_end(g, "response.output_text.done");
        ev_begin(g, "response.content_part.done");
        put(&g->j, idx);
        put(&g->j, ",\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],"
                   "\"text\":");
        put_json(&g->j, texts[c]);
        put(&g->j, "}");
        ev_end(g, "response.content_part.done");
    }
    if (!(flags & F_NO_DONE)) {
        ev_begin(g, "response.output_item.done");
        snprintf(idx, sizeof(idx), ",\"output_index\":%d,\"item\":", o);
        put(&g->j, idx);
        message_item(g, texts, nparts, "completed");
        ev_end(g, "response.output_item.done");
    }
    if (flags & F_FUNC) {
        snprintf(idx, sizeof(idx), ",\"output_index\":%d,\"item\":", o + 1);
        ev_begin(g, "response.output_item.added");
        put(&g->j, idx);
        func_item(g, "in_progress", false);
        ev_end(g, "response.output_item.added");
        snprintf(idx, sizeof(idx), ",\"item_id\":\"fc_1\",\"output_index\":%d,\"delta\":\"", o + 1);
        ev_begin(g, "response.function_call_arguments.delta");
        put(&g->j, idx);
        put(&g->j, FUNC_ARGS);
        put(&g->j, "\"");
        ev_end(g, "response.function_call_arguments.delta");
        snprintf(idx, sizeof(idx), ",\"output_index\":%d,\"item\":", o + 1);
        ev_begin(g, "response.output_item.done");
        put(&g->j, idx);
        func_item(g, "completed", true);
        ev_end(g, "response.output_item.done");
    }
    ev_begin(g, "response.completed");
    put(&g->j, ",\"response\":{");
    put(&g->j, RESP_HEAD);
    put(&g->j, ",\"status\":\"completed\",\"output\":[");
    if (flags & F_REASONING) {
        put(&g->j, REASONING_ITEM);
        put(&g->j, ",");
    }
    message_item(g, texts, nparts, "completed");
    if (flags & F_FUNC) {
        put(&g->j, ",");
        func_item(g, "completed", true);
    }
    put(&g->j, "]");
    if (flags & F_OUTPUT_TEXT) {
        ag_buf_t all;
        ag_buf_init(&all, 1u << 24);
        for (int c = 0; c < nparts; c++)
            assert_int_equal(ag_buf_append(&all, texts[c].ptr, texts[c].len), AG_OK);
        put(&g->j, ",\"output_text\":");
        put_json(&g->j, ag_buf_str(&all));
        ag_buf_dispose(&all);
    }
    put(&g->j, ",\"usage\":{\"input_tokens\":36,\"output_tokens\":87,\"total_tokens\":123}}");
    ev_end(g, "response.completed");
}

static void gen_init(gen_t *g)
{
    ag_buf_init(&g->sse, 1u << 26);
    ag_buf_init(&g->j, 1u << 24);
    g->seq = 0;
    g->eol = "\n";
}

static void gen_dispose(gen_t *g)
{
    ag_buf_dispose(&g->sse);
    ag_buf_dispose(&g->j);
}

/* ---- the checks ---- */

/* Checks what the client got (px) against the upstream's events (up). want[c]: what part c of
 * the message must add up to (and what every event repeating it must hold). Returns the number
 * of events astgate added. */
static size_t check_stream(const events_t *up, const events_t *px, int o, ag_str_t *want,
                           int nparts, bool complete)
{
    ag_buf_t got[2], s, nu, np;
    for (int c = 0; c < 2; c++)
        ag_buf_init(&got[c], 1u << 24);
    ag_buf_init(&s, 1u << 24);
    ag_buf_init(&nu, 1u << 26);
    ag_buf_init(&np, 1u << 26);
    size_t u = 0, added = 0;
    for (size_t i = 0; i < px->n; i++) {
        ag_str_t d = data_of(px, i);
        assert_int_equal(ag_jscan_find(d, NULL, 0, NULL, 0, &(size_t){0}, NULL), AG_OK);
        uint64_t seq = 0;
        assert_true(get_num(d, "sequence_number", &seq));
        if (seq != i)
            fail_msg("event %zu has sequence_number %llu", i, (unsigned long long)seq);
        assert_true(get_str(d, "type", &s));
        assert_string_equal(px->name[i], s.ptr); /* the event line names the type */
        uint64_t oi = 0, ci = 0;
        if (type_is(d, "response.output_text.delta")) {
            assert_true(get_num(d, "output_index", &oi));
            assert_true(get_num(d, "content_index", &ci));
            assert_int_equal(oi, o);
            assert_true(ci < (uint64_t)nparts);
            assert_true(get_str(d, "delta", &s));
            assert_int_equal(ag_buf_append(&got[ci], s.ptr, s.len), AG_OK);
            assert_true(get_str(d, "item_id", &s));
            assert_string_equal(s.ptr, "msg_1");
        }
        if (type_is(d, "response.output_text.done") || type_is(d, "response.content_part.done")) {
            assert_true(get_num(d, "content_index", &ci));
            assert_true(ci < (uint64_t)nparts);
            assert_true(
                get_str(d, type_is(d, "response.output_text.done") ? "text" : "part.text", &s));
            assert_true(ag_str_eq(ag_buf_str(&s), want[ci]));
            assert_true(ag_str_eq(ag_buf_str(&got[ci]), want[ci])); /* after all its deltas */
        }
        if (type_is(d, "response.output_item.done") || type_is(d, "response.completed")) {
            ag_jscan_match_t m[MAXM];
            size_t n = find(d,
                            type_is(d, "response.completed")
                                ? "response.output[*].content[*]{type=output_text}.text"
                                : "item.content[*]{type=output_text}.text",
                            AG_JSCAN_STRING, m);
            for (size_t k = 0; k < n; k++) {
                size_t c = type_is(d, "response.completed") ? m[k].idx[1] : m[k].idx[0];
                assert_true(c < (size_t)nparts);
                ag_buf_reset(&s);
                assert_int_equal(ag_jscan_decode(d, m[k].off, m[k].len, &s, NULL, 0, NULL), AG_OK);
                assert_true(ag_str_eq(ag_buf_str(&s), want[c]));
                assert_true(ag_str_eq(ag_buf_str(&got[c]), want[c]));
            }
            if (get_str(d, "response.output_text", &s)) {
                ag_buf_t all;
                ag_buf_init(&all, 1u << 24);
                for (int c = 0; c < nparts; c++)
                    assert_int_equal(ag_buf_append(&all, want[c].ptr, want[c].len), AG_OK);
                assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&all)));
                ag_buf_dispose(&all);
            }
        }
        /* the upstream's event, with only the text and the number changed; or one astgate added */
        normalize(d, &np);
        if (u < up->n) {
            normalize(data_of(up, u), &nu);
            if (ag_str_eq(ag_buf_str(&nu), ag_buf_str(&np))) {
                u++;
                continue;
            }
        }
        if (!type_is(d, "response.output_text.delta"))
            fail_msg("event %zu differs from the upstream's:\n%s\n-- upstream %zu:\n%s\n", i,
                     np.ptr, u, u < up->n ? nu.ptr : "(none)");
        added++;
    }
    assert_int_equal(u, up->n); /* every upstream event went out, in order */
    if (complete)
        for (int c = 0; c < nparts; c++)
            if (!ag_str_eq(ag_buf_str(&got[c]), want[c]))
                fail_msg("part %d adds up to:\n%s\n-- want:\n%.*s", c, got[c].ptr, (int)want[c].len,
                         want[c].ptr);
    for (int c = 0; c < 2; c++)
        ag_buf_dispose(&got[c]);
    ag_buf_dispose(&s);
    ag_buf_dispose(&nu);
    ag_buf_dispose(&np);
    return added;
}

/* One streamed response for texts through the adapter, checked. Returns the events added. */
static size_t stream_case(ag_str_t *texts, int nparts, unsigned flags, uint32_t max_piece)
{
    ag_buf_t want[2];
    ag_str_t w[2];
    for (int c = 0; c < nparts; c++) {
        ag_buf_init(&want[c], 1u << 24);
        rewrite(engine, texts[c], &want[c]);
        w[c] = ag_buf_str(&want[c]);
    }
    gen_t g;
    gen_init(&g);
    gen_response(&g, texts, nparts, flags, SIZE_MAX);
    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    ag_buf_t out;
    ag_buf_init(&out, 1u << 26);
    assert_false(run_stream(&env, &st, ag_buf_str(&g.sse), max_piece, &out));
    events_t up, px;
    parse_events(ag_buf_str(&g.sse), &up);
    parse_events(ag_buf_str(&out), &px);
    size_t added = check_stream(&up, &px, flags & F_REASONING ? 1 : 0, w, nparts, true);
    assert_int_equal(sink.replies, nparts); /* one report per part */
    assert_true(ag_str_eqc(env.model, "gpt-4.1-2025-04-14"));
    events_free(&up);
    events_free(&px);
    ag_buf_dispose(&out);
    gen_dispose(&g);
    for (int c = 0; c < nparts; c++)
        ag_buf_dispose(&want[c]);
    return added;
}

/* ---- tests ---- */

static void test_golden_corpus_streamed(void **state)
{
    DIR *dir = opendir("tests/golden");
    assert_non_null(dir);
    struct dirent *de;
    int cases = 0;
    size_t added = 0;
    static const unsigned layouts[] = {0, F_REASONING | F_FUNC, F_NO_DONE | F_OBFUSCATE,
                                       F_OUTPUT_TEXT | F_FUNC,
                                       F_REASONING | F_NO_DONE | F_OUTPUT_TEXT};
    static const uint32_t pieces[] = {1, 7, 64, 100000};
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "tests/golden/%s/input.md", de->d_name);
        ag_buf_t in;
        ag_buf_init(&in, 1u << 24);
        if (ag_read_file(path, &in) != AG_OK) {
            ag_buf_dispose(&in);
            continue;
        }
        ag_str_t text = ag_buf_str(&in);
        for (int k = 0; k < 2; k++) {
            rng_state = (uint64_t)cases * 131 + (uint64_t)k;
            unsigned flags = layouts[(cases + k) % 5];
            added += stream_case(&text, 1, flags, pieces[(cases + k) % 4]);
        }
        cases++;
        ag_buf_dispose(&in);
    }
    closedir(dir);
    assert_true(cases >= 40);
    assert_true(added > 0); /* some held code went out in a delta astgate added */
}

static const char *AGENT_REPLY =
    "Here is the agent:\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n\n"
    "export const a = new Agent({\n  name: 'A',\n  instructions: 'Be brief.',\n"
    "  model: 'openai/gpt-4o',\n});\n```\n\nThat's it — café ✓.\n";
static const char *PROSE_REPLY = "And a second part with no code at all.\n";

static void test_two_parts_and_reasoning(void **state)
{
    ag_str_t texts[2] = {ag_cstr(AGENT_REPLY), ag_cstr(AGENT_REPLY)};
    for (uint32_t seed = 0; seed < 6; seed++) {
        rng_state = seed;
        texts[1] = seed % 2 ? ag_cstr(PROSE_REPLY) : ag_cstr(AGENT_REPLY);
        stream_case(texts, 2, F_REASONING | F_FUNC | (seed % 3 ? F_OUTPUT_TEXT : 0),
                    seed % 2 ? 3 : 1000);
    }
}

/* The held code block goes out in a delta astgate adds before output_text.done; every later
 * event's number moves up by one. Pinned on a fixed split. */
static void test_added_delta_and_renumbering(void **state)
{
    gen_t g;
    gen_init(&g);
    ag_str_t text = ag_cstr(AGENT_REPLY);
    /* one delta for the whole reply: the core lets the prose through and holds nothing... */
    rng_state = 5;
    gen_response(&g, &text, 1, 0, SIZE_MAX);
    ag_buf_t out, want;
    ag_buf_init(&out, 1u << 24);
    ag_buf_init(&want, 1u << 24);
    rewrite(engine, text, &want);
    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_false(run_stream(&env, &st, ag_buf_str(&g.sse), 100000, &out));
    events_t up, px;
    parse_events(ag_buf_str(&g.sse), &up);
    parse_events(ag_buf_str(&out), &px);
    ag_str_t w = ag_buf_str(&want);
    size_t added = check_stream(&up, &px, 0, &w, 1, true);
    /* the last line "That's it" may be held until the done: at most one added delta */
    assert_true(added <= 1);
    assert_int_equal(px.n, up.n + added);
    assert_true(st.rewrites == 1);
    assert_string_equal(st.rule_ids[0], "mastra-agent-model");
    assert_true(sink.results >= 1);
    events_free(&up);
    events_free(&px);

    /* ...while deltas that end inside the code block leave it held until the fence closes */
    gen_dispose(&g);
    gen_init(&g);
    const char *d2 = "```\\n";
    char sse[4096];
    snprintf(sse, sizeof(sse),
             "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"%s\","
             "\"logprobs\":[],\"sequence_number\":4}\n\n"
             "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"%s\","
             "\"logprobs\":[],\"sequence_number\":5}\n\n"
             "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\","
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"x\","
             "\"logprobs\":[],\"sequence_number\":6}\n\n"
             "event: response.in_progress\ndata: {\"type\":\"response.in_progress\","
             "\"sequence_number\":7}\n\n",
             "Here is the agent:\\n\\n```ts\\nexport const a = new Agent({ model: "
             "'openai/gpt-4o' });\\n",
             d2);
    ag_buf_reset(&out);
    env_init(&env, engine, &sink);
    memset(&st, 0, sizeof(st));
    assert_false(run_stream(&env, &st, ag_cstr(sse), 100000, &out));
    const char *want_out =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Here is the "
        "agent:\\n\\n\",\"logprobs\":[],\"sequence_number\":4}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"```ts\\nexport "
        "const a = new Agent({ model: 'openai/gpt-4.1-nano' });\\n```\\n\",\"logprobs\":[],"
        "\"sequence_number\":5}\n\n"
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"Here is the "
        "agent:\\n\\n```ts\\nexport const a = new Agent({ model: 'openai/gpt-4.1-nano' "
        "});\\n```\\n\",\"logprobs\":[],\"sequence_number\":6}\n\n"
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\","
        "\"sequence_number\":7}\n\n";
    assert_string_equal(out.ptr, want_out);

    /* the same without the closing fence before the done: astgate adds a delta, numbers move */
    snprintf(sse, sizeof(sse),
             "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"%s\","
             "\"logprobs\":[],\"sequence_number\":4}\n\n"
             "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\","
             "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"x\","
             "\"logprobs\":[],\"sequence_number\":5}\n\n"
             "event: response.in_progress\ndata: {\"type\":\"response.in_progress\","
             "\"sequence_number\":6}\n\n",
             "Here is the agent:\\n\\n```ts\\nexport const a = new Agent({ model: "
             "'openai/gpt-4o' });\\n");
    ag_buf_reset(&out);
    env_init(&env, engine, &sink);
    memset(&st, 0, sizeof(st));
    assert_false(run_stream(&env, &st, ag_cstr(sse), 100000, &out));
    want_out =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Here is the "
        "agent:\\n\\n\",\"logprobs\":[],\"sequence_number\":4}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"```ts\\nexport "
        "const a = new Agent({ model: 'openai/gpt-4.1-nano' });\\n\",\"logprobs\":[],"
        "\"sequence_number\":5}\n\n"
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\","
        "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"Here is the "
        "agent:\\n\\n```ts\\nexport const a = new Agent({ model: 'openai/gpt-4.1-nano' "
        "});\\n\",\"logprobs\":[],\"sequence_number\":6}\n\n"
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\","
        "\"sequence_number\":7}\n\n";
    assert_string_equal(out.ptr, want_out);
    assert_int_equal(sink.replies, 1);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
    gen_dispose(&g);
}

/* A stream cut off inside a code block: stream_end sends what was held, rewritten, numbered
 * after the last event. */
static void test_cut_stream_is_flushed(void **state)
{
    ag_str_t text = ag_cstr(AGENT_REPLY);
    const char *fence = strstr(AGENT_REPLY, "model:");
    size_t cut = (size_t)(fence - AGENT_REPLY) + 3;
    for (uint32_t seed = 0; seed < 8; seed++) {
        rng_state = seed;
        gen_t g;
        gen_init(&g);
        gen_response(&g, &text, 1, seed % 2 ? F_REASONING : 0, cut);
        ag_buf_t out, want;
        ag_buf_init(&out, 1u << 24);
        ag_buf_init(&want, 1u << 24);
        rewrite(engine, ag_str(AGENT_REPLY, cut), &want);
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, engine, &sink);
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        assert_false(run_stream(&env, &st, ag_buf_str(&g.sse), 1 + seed * 5, &out));
        events_t up, px;
        parse_events(ag_buf_str(&g.sse), &up);
        parse_events(ag_buf_str(&out), &px);
        ag_str_t w = ag_buf_str(&want);
        size_t added = check_stream(&up, &px, seed % 2 ? 1 : 0, &w, 1, true);
        assert_int_equal(added, 1); /* the open code block */
        assert_int_equal(sink.replies, 1);
        events_free(&up);
        events_free(&px);
        ag_buf_dispose(&out);
        ag_buf_dispose(&want);
        gen_dispose(&g);
    }
}

/* Events that carry a part's full text without any delta for it (a resumed stream): the text is
 * rewritten whole, the same in every event that repeats it. */
static void test_full_text_without_deltas(void **state)
{
    ag_buf_t want, out, s;
    ag_buf_init(&want, 1u << 24);
    ag_buf_init(&out, 1u << 24);
    ag_buf_init(&s, 1u << 24);
    rewrite(engine, ag_cstr(AGENT_REPLY), &want);
    assert_false(ag_str_eqc(ag_buf_str(&want), AGENT_REPLY));
    gen_t g;
    gen_init(&g);
    ag_str_t text = ag_cstr(AGENT_REPLY);
    ev_begin(&g, "response.output_text.done");
    put(&g.j, ",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":");
    put_json(&g.j, text);
    ev_end(&g, "response.output_text.done");
    ev_begin(&g, "response.completed");
    put(&g.j, ",\"response\":{\"id\":\"r\",\"model\":\"m\",\"output\":[");
    message_item(&g, &text, 1, "completed");
    put(&g.j, "]}");
    ev_end(&g, "response.completed");
    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_false(run_stream(&env, &st, ag_buf_str(&g.sse), 9, &out));
    events_t px;
    parse_events(ag_buf_str(&out), &px);
    assert_int_equal(px.n, 2);
    assert_true(get_str(data_of(&px, 0), "text", &s));
    assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&want)));
    assert_true(get_str(data_of(&px, 1), "response.output[0].content[0].text", &s));
    assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&want)));
    assert_int_equal(sink.replies, 1); /* rewritten once */
    assert_int_equal(st.rewrites, 1);
    events_free(&px);
    ag_buf_dispose(&want);
    ag_buf_dispose(&out);
    ag_buf_dispose(&s);
    gen_dispose(&g);
}

/* Not streamed: each output_text part rewritten in place, every other byte as it was (pretty
 * printed, \u escapes, refusal parts, function call arguments, reasoning). */
static void test_body_rewrite(void **state)
{
    ag_buf_t body, out, want, s, nb, no;
    ag_buf_init(&body, 1u << 24);
    ag_buf_init(&out, 1u << 24);
    ag_buf_init(&want, 1u << 24);
    ag_buf_init(&s, 1u << 24);
    ag_buf_init(&nb, 1u << 24);
    ag_buf_init(&no, 1u << 24);
    rewrite(engine, ag_cstr(AGENT_REPLY), &want);
    put(&body, "{\n  \"id\": \"resp_1\",\n  \"object\": \"response\",\n  \"model\": "
               "\"gpt-4.1-2025-04-14\",\n  \"output\": [\n    ");
    put(&body, REASONING_ITEM);
    put(&body, ",\n    {\"id\": \"msg_1\", \"type\": \"message\", \"role\": \"assistant\", "
               "\"content\": [\n      {\"type\": \"output_text\", \"annotations\": [], \"text\": ");
    put_json(&body, ag_cstr(AGENT_REPLY));
    put(&body, "},\n      {\"type\": \"refusal\", \"refusal\": \"new Agent({ model: 'gpt-4o' })\"},"
               "\n      {\"type\": \"output_text\", \"text\": \"caf\\u00e9 \\u2713\\n```ts\\nconst "
               "a = new Agent({ name: 'x', model: 'openai/gpt-4o' });\\n```\"}\n    ]},\n    "
               "{\"id\": \"fc_1\", \"type\": \"function_call\", \"call_id\": \"c\", \"name\": "
               "\"write_file\", \"arguments\": \"");
    put(&body, FUNC_ARGS);
    put(&body, "\"}\n  ],\n  \"output_text\": ");
    ag_buf_t all;
    ag_buf_init(&all, 1u << 24);
    put(&all, AGENT_REPLY);
    put(&all, "café ✓\n```ts\nconst a = new Agent({ name: 'x', model: 'openai/gpt-4o' });\n```");
    put_json(&body, ag_buf_str(&all));
    put(&body, ",\n  \"usage\": {\"input_tokens\": 1}\n}\n");

    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(ag_api_openai_responses.rewrite_body(&env, ag_buf_str(&body), &out, &st),
                     AG_OK);
    ag_str_t o = ag_buf_str(&out);
    assert_true(get_str(o, "output[1].content[0].text", &s));
    assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&want)));
    assert_true(get_str(o, "output[1].content[2].text", &s));
    assert_string_equal(s.ptr, "café ✓\n```ts\nconst a = new Agent({ name: 'x', model: "
                               "'openai/gpt-4.1-nano' });\n```");
    /* the unchanged escapes of the second part are still there, byte for byte */
    assert_non_null(strstr(out.ptr, "\"caf\\u00e9 \\u2713\\n```ts\\nconst a = new Agent({ name: "
                                    "'x', model: 'openai/gpt-4.1-nano' });\\n```\""));
    /* output_text follows its parts */
    ag_buf_reset(&all);
    assert_int_equal(ag_buf_append(&all, want.ptr, want.len), AG_OK);
    put(&all, "café ✓\n```ts\nconst a = new Agent({ name: 'x', model: 'openai/gpt-4.1-nano' "
              "});\n```");
    assert_true(get_str(o, "output_text", &s));
    assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&all)));
    /* everything else as it was */
    ag_jscan_splice_t sp[8];
    const char *paths[] = {"output[*].content[*]{type=output_text}.text", "output_text"};
    for (int which = 0; which < 2; which++) {
        ag_str_t j = which ? o : ag_buf_str(&body);
        ag_jscan_match_t m[MAXM];
        ag_jscan_path_t p[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(ag_jscan_path_compile(&p[k], ag_cstr(paths[k]), AG_JSCAN_STRING),
                             AG_OK);
        size_t n = 0;
        assert_int_equal(ag_jscan_find(j, p, 2, m, MAXM, &n, NULL), AG_OK);
        assert_int_equal(n, 3);
        for (size_t k = 0; k < n; k++) {
            memset(&sp[k], 0, sizeof(sp[k]));
            sp[k].off = m[k].off;
            sp[k].len = m[k].len;
            sp[k].raw = AG_STR_LIT("\"\"");
        }
        assert_int_equal(ag_jscan_splice(j, sp, n, which ? &no : &nb), AG_OK);
    }
    assert_string_equal(no.ptr, nb.ptr);
    assert_int_equal(st.rewrites, 2);
    assert_int_equal(sink.replies, 2); /* one per output_text part */
    assert_true(ag_str_eqc(env.model, "gpt-4.1-2025-04-14"));

    /* not JSON: the proxy passes it through */
    ag_buf_reset(&out);
    assert_int_equal(
        ag_api_openai_responses.rewrite_body(&env, AG_STR_LIT("{\"output\":["), &out, &st),
        AG_EINVAL);
    /* nothing to rewrite: byte for byte */
    ag_buf_reset(&out);
    ag_str_t plain = AG_STR_LIT("{ \"output\" : [ {\"type\":\"message\",\"content\":[{\"type\":"
                                "\"output_text\",\"text\":\"hi \\u0041\"}]} ] }");
    assert_int_equal(ag_api_openai_responses.rewrite_body(&env, plain, &out, &st), AG_OK);
    assert_true(ag_str_eq(ag_buf_str(&out), plain));
    ag_buf_dispose(&all);
    ag_buf_dispose(&body);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
    ag_buf_dispose(&s);
    ag_buf_dispose(&nb);
    ag_buf_dispose(&no);
}

/* A block rule: prose before the code reaches the client, then an error event numbered next, and
 * the stream ends; the held code never goes out. */
static void test_block_rule(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(AG_STR_LIT("id: no-eval\nlanguage: ts\n"
                                                  "message: eval runs arbitrary code\n"
                                                  "rule: {pattern: eval($X)}\n"
                                                  "metadata: {astgate: {action: block}}\n"),
                                       "t.yaml", &r, &d),
                     AG_OK);
    ag_engine_t *e = ag_engine_new(r, NULL);
    const char *reply = "Careful here.\n\n```ts\nexport function f(s: string) {\n  return "
                        "eval(s);\n}\n```\n\nPrefer a parser.\n";
    for (uint32_t seed = 0; seed < 10; seed++) {
        rng_state = seed;
        gen_t g;
        gen_init(&g);
        ag_str_t text = ag_cstr(reply);
        gen_response(&g, &text, 1, seed % 2 ? F_REASONING : F_NO_DONE, SIZE_MAX);
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, e, &sink);
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_t out, s, got;
        ag_buf_init(&out, 1u << 24);
        ag_buf_init(&s, 1u << 24);
        ag_buf_init(&got, 1u << 24);
        assert_true(run_stream(&env, &st, ag_buf_str(&g.sse), 1 + seed * 13, &out));
        assert_string_equal(st.blocked_rule, "no-eval");
        events_t px;
        parse_events(ag_buf_str(&out), &px);
        assert_true(px.n >= 2);
        for (size_t i = 0; i < px.n; i++) {
            ag_str_t dd = data_of(&px, i);
            uint64_t seq;
            assert_true(get_num(dd, "sequence_number", &seq));
            assert_int_equal(seq, i);
            if (type_is(dd, "response.output_text.delta")) {
                assert_true(get_str(dd, "delta", &s));
                assert_int_equal(ag_buf_append(&got, s.ptr, s.len), AG_OK);
            }
            if (i + 1 < px.n)
                assert_false(type_is(dd, "error"));
        }
        ag_str_t last = data_of(&px, px.n - 1);
        assert_string_equal(px.name[px.n - 1], "error");
        assert_true(type_is(last, "error"));
        assert_true(get_str(last, "code", &s));
        assert_string_equal(s.ptr, "no-eval");
        assert_true(get_str(last, "message", &s));
        assert_non_null(strstr(s.ptr, "eval runs arbitrary code"));
        assert_true(get_str(last, "error.type", &s)); /* what makes the openai SDK throw */
        assert_string_equal(s.ptr, "astgate_blocked");
        assert_true(get_str(last, "error.code", &s));
        assert_string_equal(s.ptr, "no-eval");
        assert_string_equal(got.ptr ? got.ptr : "", "Careful here.\n\n");
        assert_null(strstr(out.ptr, "eval(s)"));
        events_free(&px);
        ag_buf_dispose(&out);
        ag_buf_dispose(&s);
        ag_buf_dispose(&got);
        gen_dispose(&g);
    }
    ag_engine_free(e);
    ag_rules_free(r);
}

/* Framing the adapter does not know passes through: comments, [DONE], non-JSON data, CRLF. */
static void test_foreign_framing(void **state)
{
    const char *in = ": keepalive\r\n\r\nevent: response.created\r\ndata: {\"type\":\"response"
                     ".created\",\"response\":{\"model\":\"m1\"},\"sequence_number\":0}\r\n\r\n"
                     "data: not json\r\n\r\ndata: [DONE]\r\n\r\ndata: after\r\n\r\n";
    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    for (uint32_t p = 1; p < 8; p++) {
        ag_buf_reset(&out);
        env.model = ag_str(NULL, 0);
        assert_false(run_stream(&env, &st, ag_cstr(in), p, &out));
        assert_string_equal(out.ptr, in);
        assert_true(ag_str_eqc(env.model, "m1"));
    }
    /* an event cut off at the end gets its blank line */
    ag_buf_reset(&out);
    assert_false(run_stream(&env, &st, AG_STR_LIT("data: {\"type\":\"x\"}"), 4, &out));
    assert_string_equal(out.ptr, "data: {\"type\":\"x\"}\n\n");
    ag_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_corpus_streamed),
        cmocka_unit_test(test_two_parts_and_reasoning),
        cmocka_unit_test(test_added_delta_and_renumbering),
        cmocka_unit_test(test_cut_stream_is_flushed),
        cmocka_unit_test(test_full_text_without_deltas),
        cmocka_unit_test(test_body_rewrite),
        cmocka_unit_test(test_block_rule),
        cmocka_unit_test(test_foreign_framing),
    };
    return cmocka_run_group_tests_name("api_responses", tests, setup, teardown);
}

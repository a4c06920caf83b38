/* The Anthropic Messages adapter: not streamed, every text block is rewritten and every other byte
 * kept; streamed, realistic event sequences fed in random splits: the text of each text block
 * (its start text and its text_deltas) adds up to the engine's rewrite, held code goes out in a
 * content_block_delta before the block's stop, every event keeps its event line, and every other
 * event is the upstream's, byte for byte. Code in tool calls: tool_use inputs rewritten in place
 * (not streamed); streamed, a known tool's input_json_delta events held until the block's stop
 * and then sent as the rewrite or as they came (CRLF, several data lines, interleaved blocks), a
 * block rule, the hold limit, a cut stream. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "api/api.h"
#include "toolcode.h"
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
    int replies;
    int results;
    int reply_index[16];
    int skips;     /* tool calls passed through (on_tool_skip) */
    char why[128]; /* the last skip's reason */
    char tool[64]; /* the tool of the last result about a tool call */
    ag_api_env_t *env;
} sink_t;

static void on_result(void *ud, int index, const ag_result_t *res)
{
    sink_t *s = ud;
    s->results++;
    if (s->env && s->env->tool)
        snprintf(s->tool, sizeof(s->tool), "%.*s", (int)s->env->tool->call->name.len,
                 s->env->tool->call->name.ptr);
}

static void on_tool_skip(void *ud, int index, const ag_tool_call_t *call, const char *why)
{
    sink_t *s = ud;
    s->skips++;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static void on_reply(void *ud, int index, const ag_reply_summary_t *sum)
{
    sink_t *s = ud;
    if (s->replies < 16)
        s->reply_index[s->replies] = index;
    s->replies++;
}

static void env_init(ag_api_env_t *env, ag_engine_t *e, sink_t *s)
{
    memset(env, 0, sizeof(*env));
    memset(s, 0, sizeof(*s));
    env->engine = e;
    env->on_result = on_result;
    env->on_reply = on_reply;
    env->on_tool_skip = on_tool_skip;
    env->ud = s;
    s->env = env;
}

static char model[256];

/* Streams sse through the adapter in random pieces of up to max_piece bytes. */
static bool run_stream(ag_api_env_t *env, ag_api_stats_t *st, ag_str_t sse, uint32_t max_piece,
                       ag_buf_t *out)
{
    const ag_api_t *api = &ag_api_anthropic;
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

/* json with the text of text blocks replaced by "": what is left must not change. */
static void normalize(ag_str_t json, ag_buf_t *out)
{
    const char *path = NULL;
    if (type_is(json, "content_block_delta"))
        path = "delta{type=text_delta}.text";
    else if (type_is(json, "content_block_start"))
        path = "content_block{type=text}.text";
    ag_jscan_splice_t sp[2];
    size_t nsp = 0;
    if (path) {
        ag_jscan_match_t m[MAXM];
        nsp = find(json, path, AG_JSCAN_STRING, m);
        assert_true(nsp <= 1);
        if (nsp) {
            memset(&sp[0], 0, sizeof(sp[0]));
            sp[0].off = m[0].off;
            sp[0].len = m[0].len;
            sp[0].raw = AG_STR_LIT("\"\"");
        }
    }
    ag_buf_reset(out);
    assert_int_equal(ag_jscan_splice(json, sp, nsp, out), AG_OK);
}

/* ---- the upstream's events ---- */

enum {
    F_THINKING = 1,   /* a thinking block first: the text is block 1 */
    F_TOOL = 2,       /* a tool_use block with code in its input after the text */
    F_TWO_TEXTS = 4,  /* a second text block after the tool_use block (or right after the first) */
    F_SPACES = 8,     /* JSON with ", " and ": " as in Anthropic's docs */
    F_PING = 16,      /* ping events between deltas */
    F_START_TEXT = 32 /* the text block starts with part of the text in content_block_start */
};

typedef struct gen {
    ag_buf_t sse;
    ag_buf_t j;
    bool spaces;
} gen_t;

static void gen_init(gen_t *g)
{
    ag_buf_init(&g->sse, 1u << 26);
    ag_buf_init(&g->j, 1u << 24);
    g->spaces = false;
}

static void gen_dispose(gen_t *g)
{
    ag_buf_dispose(&g->sse);
    ag_buf_dispose(&g->j);
}

/* Appends JSON text written compactly; with spaces, ":" and "," outside strings get a space. */
static void js(gen_t *g, const char *s)
{
    if (!g->spaces) {
        put(&g->j, s);
        return;
    }
    bool in = false;
    for (const char *p = s; *p; p++) {
        assert_int_equal(ag_buf_appendc(&g->j, *p), AG_OK);
        if (*p == '\\' && in && p[1]) {
            assert_int_equal(ag_buf_appendc(&g->j, *++p), AG_OK);
            continue;
        }
        if (*p == '"')
            in = !in;
        else if (!in && (*p == ':' || *p == ','))
            assert_int_equal(ag_buf_appendc(&g->j, ' '), AG_OK);
    }
}

static void ev_begin(gen_t *g)
{
    ag_buf_reset(&g->j);
}

static void ev_end(gen_t *g, const char *type)
{
    put(&g->sse, "event: ");
    put(&g->sse, type);
    put(&g->sse, "\ndata: ");
    assert_int_equal(ag_buf_append(&g->sse, g->j.ptr, g->j.len), AG_OK);
    put(&g->sse, "\n\n");
}

static void simple(gen_t *g, const char *type, const char *json)
{
    ev_begin(g);
    js(g, json);
    ev_end(g, type);
}

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

static const char *TOOL_JSON = "{\\\"path\\\": \\\"a.ts\\\", \\\"code\\\": \\\"```ts\\\\nnew "
                               "Agent({ model: 'gpt-4o' })\\\\n```\\\"}";

/* One text block at index: start, deltas (cut: stop after that many bytes, no stop event). */
static void text_block(gen_t *g, int index, ag_str_t text, unsigned flags, size_t cut)
{
    char buf[128];
    size_t pos = 0;
    ev_begin(g);
    snprintf(buf, sizeof(buf), "{\"type\":\"content_block_start\",\"index\":%d,", index);
    js(g, buf);
    js(g, "\"content_block\":{\"type\":\"text\",\"text\":");
    if (flags & F_START_TEXT) {
        pos = next_cut(text, 0);
        put_json(&g->j, ag_str(text.ptr, pos));
    } else {
        put(&g->j, "\"\"");
    }
    js(g, "}}");
    ev_end(g, "content_block_start");
    size_t end = cut < text.len ? cut : text.len;
    if (pos > end)
        pos = end;
    while (pos < end) {
        size_t next = next_cut(ag_str(text.ptr, end), pos);
        ev_begin(g);
        snprintf(buf, sizeof(buf), "{\"type\":\"content_block_delta\",\"index\":%d,", index);
        js(g, buf);
        js(g, "\"delta\":{\"type\":\"text_delta\",\"text\":");
        put_json(&g->j, ag_str(text.ptr + pos, next - pos));
        js(g, "}}");
        ev_end(g, "content_block_delta");
        if ((flags & F_PING) && rng() % 4 == 0)
            simple(g, "ping", "{\"type\":\"ping\"}");
        pos = next;
    }
    if (end < text.len)
        return;
    snprintf(buf, sizeof(buf), "{\"type\":\"content_block_stop\",\"index\":%d}", index);
    simple(g, "content_block_stop", buf);
}

/* The events of one streamed message with its text blocks; returns the index of each. cut: the
 * stream ends after that many bytes of the last text (SIZE_MAX: the whole message). */
static void gen_message(gen_t *g, ag_str_t *texts, int ntexts, unsigned flags, size_t cut,
                        int *index)
{
    g->spaces = flags & F_SPACES;
    int i = 0;
    simple(g, "message_start",
           "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
           "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\","
           "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
           "\"output_tokens\":1}}}");
    if (flags & F_THINKING) {
        simple(g, "content_block_start",
               "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
               "\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
        simple(
            g, "content_block_delta",
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
            "\"thinking_delta\",\"thinking\":\"```ts\\nnew Agent({ model: 'gpt-4o' })\\n```\"}}");
        simple(g, "content_block_delta",
               "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
               "\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}");
        simple(g, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
        i++;
    }
    if (flags & F_PING)
        simple(g, "ping", "{\"type\":\"ping\"}");
    for (int t = 0; t < ntexts; t++) {
        index[t] = i;
        text_block(g, i++, texts[t], flags, t == ntexts - 1 ? cut : SIZE_MAX);
        if (t == ntexts - 1 && cut < texts[t].len)
            return; /* cut off */
        if (t == 0 && (flags & F_TOOL)) {
            char buf[160];
            snprintf(buf, sizeof(buf),
                     "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":{\"type\":"
                     "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"write_file\",\"input\":{}}}",
                     i);
            simple(g, "content_block_start", buf);
            ev_begin(g);
            snprintf(buf, sizeof(buf),
                     "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":"
                     "\"input_json_delta\",\"partial_json\":\"",
                     i);
            js(g, buf);
            put(&g->j, TOOL_JSON);
            js(g, "\"}}");
            ev_end(g, "content_block_delta");
            snprintf(buf, sizeof(buf), "{\"type\":\"content_block_stop\",\"index\":%d}", i);
            simple(g, "content_block_stop", buf);
            i++;
        }
    }
    simple(g, "message_delta",
           "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
           "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}");
    simple(g, "message_stop", "{\"type\":\"message_stop\"}");
}

/* ---- the checks ---- */

/* Checks what the client got (px) against the upstream's events (up): block index[t] adds up to
 * want[t]. Returns the number of events astgate added. */
static size_t check_stream(const events_t *up, const events_t *px, const int *index, ag_str_t *want,
                           int ntexts, bool complete)
{
    ag_buf_t got[4], s, nu, np;
    bool stopped[16] = {false};
    for (int t = 0; t < 4; t++)
        ag_buf_init(&got[t], 1u << 24);
    ag_buf_init(&s, 1u << 24);
    ag_buf_init(&nu, 1u << 26);
    ag_buf_init(&np, 1u << 26);
    size_t u = 0, added = 0;
    for (size_t i = 0; i < px->n; i++) {
        ag_str_t d = data_of(px, i);
        assert_int_equal(ag_jscan_find(d, NULL, 0, NULL, 0, &(size_t){0}, NULL), AG_OK);
        assert_true(get_str(d, "type", &s));
        assert_string_equal(px->name[i], s.ptr); /* every event keeps its event line */
        uint64_t bi = 99;
        get_num(d, "index", &bi);
        int t = -1;
        for (int k = 0; k < ntexts; k++)
            if ((uint64_t)index[k] == bi)
                t = k;
        if (t >= 0 && (get_str(d, "delta{type=text_delta}.text", &s) ||
                       get_str(d, "content_block{type=text}.text", &s))) {
            assert_false(stopped[bi]);
            assert_int_equal(ag_buf_append(&got[t], s.ptr, s.len), AG_OK);
        }
        if (type_is(d, "content_block_stop") && t >= 0) {
            stopped[bi] = true;
            assert_true(ag_str_eq(ag_buf_str(&got[t]), want[t]));
        }
        normalize(d, &np);
        if (u < up->n) {
            normalize(data_of(up, u), &nu);
            if (ag_str_eq(ag_buf_str(&nu), ag_buf_str(&np)) &&
                strcmp(px->name[i], up->name[u]) == 0) {
                u++;
                continue;
            }
        }
        /* one astgate added: exactly this shape */
        char shape[128];
        snprintf(shape, sizeof(shape),
                 "{\"type\":\"content_block_delta\",\"index\":%llu,\"delta\":{\"type\":"
                 "\"text_delta\",\"text\":\"\"}}",
                 (unsigned long long)bi);
        if (t < 0 || strcmp(np.ptr, shape) != 0)
            fail_msg("event %zu differs from the upstream's:\n%s\n-- upstream %zu:\n%s\n", i,
                     np.ptr, u, u < up->n ? nu.ptr : "(none)");
        added++;
    }
    assert_int_equal(u, up->n); /* every upstream event went out, in order */
    if (complete)
        for (int t = 0; t < ntexts; t++)
            if (!ag_str_eq(ag_buf_str(&got[t]), want[t]))
                fail_msg("block %d adds up to:\n%s\n-- want:\n%.*s", index[t], got[t].ptr,
                         (int)want[t].len, want[t].ptr);
    for (int t = 0; t < 4; t++)
        ag_buf_dispose(&got[t]);
    ag_buf_dispose(&s);
    ag_buf_dispose(&nu);
    ag_buf_dispose(&np);
    return added;
}

static size_t stream_case(ag_str_t *texts, int ntexts, unsigned flags, uint32_t max_piece)
{
    ag_buf_t want[4];
    ag_str_t w[4];
    for (int t = 0; t < ntexts; t++) {
        ag_buf_init(&want[t], 1u << 24);
        rewrite(engine, texts[t], &want[t]);
        w[t] = ag_buf_str(&want[t]);
    }
    gen_t g;
    gen_init(&g);
    int index[4];
    gen_message(&g, texts, ntexts, flags, SIZE_MAX, index);
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
    size_t added = check_stream(&up, &px, index, w, ntexts, true);
    assert_int_equal(sink.replies, ntexts); /* one report per text block */
    for (int t = 0; t < ntexts && t < 16; t++)
        assert_int_equal(sink.reply_index[t], index[t]);
    assert_string_equal(model, "claude-sonnet-4-5");
    events_free(&up);
    events_free(&px);
    ag_buf_dispose(&out);
    gen_dispose(&g);
    for (int t = 0; t < ntexts; t++)
        ag_buf_dispose(&want[t]);
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
    static const unsigned layouts[] = {0, F_THINKING | F_TOOL | F_PING, F_SPACES | F_START_TEXT,
                                       F_TOOL | F_SPACES, F_THINKING | F_PING | F_START_TEXT};
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
            added += stream_case(&text, 1, layouts[(cases + k) % 5], pieces[(cases + k) % 4]);
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
static const char *PROSE_REPLY = "And a second block with no code at all.\n";

static void test_several_blocks(void **state)
{
    ag_str_t texts[2];
    for (uint32_t seed = 0; seed < 8; seed++) {
        rng_state = seed;
        texts[0] = ag_cstr(AGENT_REPLY);
        texts[1] = seed % 2 ? ag_cstr(PROSE_REPLY) : ag_cstr(AGENT_REPLY);
        stream_case(texts, 2, F_THINKING | F_TOOL | (seed % 3 ? F_SPACES : F_PING),
                    seed % 2 ? 3 : 1000);
    }
}

/* Pinned bytes: held code goes out in a content_block_delta astgate adds before the stop. */
static void test_added_delta_before_stop(void **state)
{
    const char *in =
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, "
        "\"delta\": {\"type\": \"text_delta\", \"text\": \"Sure:\\n```ts\\nconst a = new "
        "Agent({ model: 'openai/gpt-4o' });\\n\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"```\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    const char *want =
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, "
        "\"delta\": {\"type\": \"text_delta\", \"text\": \"Sure:\\n\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"```ts\\nconst a = new Agent({ model: "
        "'openai/gpt-4.1-nano' });\\n```\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    for (uint32_t p = 1; p < 40; p += 7) {
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, engine, &sink);
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_t out;
        ag_buf_init(&out, 1u << 20);
        rng_state = p;
        assert_false(run_stream(&env, &st, ag_cstr(in), p, &out));
        assert_string_equal(out.ptr, want);
        assert_int_equal(st.rewrites, 1);
        assert_string_equal(st.rule_ids[0], "mastra-agent-model");
        assert_int_equal(sink.replies, 1);
        assert_int_equal(sink.results, 1);
        ag_buf_dispose(&out);
    }
}

/* A stream cut off inside a code block: stream_end sends what was held, rewritten. */
static void test_cut_stream_is_flushed(void **state)
{
    ag_str_t text = ag_cstr(AGENT_REPLY);
    const char *at = strstr(AGENT_REPLY, "model:");
    size_t cut = (size_t)(at - AGENT_REPLY) + 3;
    for (uint32_t seed = 0; seed < 8; seed++) {
        rng_state = seed;
        gen_t g;
        gen_init(&g);
        int index[1];
        gen_message(&g, &text, 1, seed % 2 ? F_THINKING : F_SPACES, cut, index);
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
        assert_int_equal(check_stream(&up, &px, index, &w, 1, true), 1);
        assert_int_equal(sink.replies, 1);
        events_free(&up);
        events_free(&px);
        ag_buf_dispose(&out);
        ag_buf_dispose(&want);
        gen_dispose(&g);
    }
}

/* Not streamed: text blocks rewritten in place, every other byte as it was. */
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
    put(&body, "{\"id\": \"msg_01\", \"type\": \"message\", \"role\": \"assistant\", \"model\": "
               "\"claude-sonnet-4-5\", \"content\": [{\"type\": \"thinking\", \"thinking\": "
               "\"new Agent({ model: 'gpt-4o' })\", \"signature\": \"x\"}, {\"type\": \"text\", "
               "\"text\": ");
    put_json(&body, ag_cstr(AGENT_REPLY));
    put(&body, ", \"citations\": null}, {\"type\": \"tool_use\", \"id\": \"toolu_1\", \"name\": "
               "\"write_file\", \"input\": {\"code\": \"```ts\\nnew Agent({ model: 'gpt-4o' "
               "})\\n```\"}}, {\"type\": \"text\", \"text\": \"caf\\u00e9\\n```ts\\nconst a = new "
               "Agent({ name: 'x', model: 'openai/gpt-4o' });\\n```\"}], \"stop_reason\": "
               "\"end_turn\", \"stop_sequence\": null, \"usage\": {\"input_tokens\": 2095, "
               "\"output_tokens\": 503}}");
    ag_api_env_t env;
    sink_t sink;
    env_init(&env, engine, &sink);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(ag_api_anthropic.rewrite_body(&env, ag_buf_str(&body), &out, &st), AG_OK);
    ag_str_t o = ag_buf_str(&out);
    assert_true(get_str(o, "content[1].text", &s));
    assert_true(ag_str_eq(ag_buf_str(&s), ag_buf_str(&want)));
    assert_non_null(strstr(out.ptr, "\"caf\\u00e9\\n```ts\\nconst a = new Agent({ name: 'x', "
                                    "model: 'openai/gpt-4.1-nano' });\\n```\""));
    assert_non_null(strstr(out.ptr, "\"input\": {\"code\": \"```ts\\nnew Agent({ model: 'gpt-4o' "
                                    "})\\n```\"}"));
    for (int which = 0; which < 2; which++) {
        ag_str_t j = which ? o : ag_buf_str(&body);
        ag_jscan_match_t m[MAXM];
        size_t n = find(j, "content[*]{type=text}.text", AG_JSCAN_STRING, m);
        assert_int_equal(n, 2);
        ag_jscan_splice_t sp[2];
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
    assert_int_equal(sink.replies, 2);
    assert_int_equal(sink.reply_index[0], 1);
    assert_int_equal(sink.reply_index[1], 3);
    assert_true(ag_str_eqc(env.model, "claude-sonnet-4-5"));
    ag_buf_reset(&out);
    assert_int_equal(ag_api_anthropic.rewrite_body(&env, AG_STR_LIT("{\"content\":["), &out, &st),
                     AG_EINVAL);
    ag_buf_dispose(&body);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
    ag_buf_dispose(&s);
    ag_buf_dispose(&nb);
    ag_buf_dispose(&no);
}

/* A block rule: prose before the code reaches the client, then an Anthropic error event (with
 * its event line), and the stream ends; the held code never goes out. */
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
        int index[1];
        gen_message(&g, &text, 1, seed % 2 ? F_THINKING : F_START_TEXT, SIZE_MAX, index);
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
        for (size_t i = 0; i + 1 < px.n; i++) {
            ag_str_t dd = data_of(&px, i);
            assert_false(type_is(dd, "error"));
            if (get_str(dd, "delta{type=text_delta}.text", &s) ||
                get_str(dd, "content_block{type=text}.text", &s))
                assert_int_equal(ag_buf_append(&got, s.ptr, s.len), AG_OK);
        }
        ag_str_t last = data_of(&px, px.n - 1);
        assert_string_equal(px.name[px.n - 1], "error");
        assert_true(type_is(last, "error"));
        assert_true(get_str(last, "error.type", &s));
        assert_string_equal(s.ptr, "astgate_blocked");
        assert_true(get_str(last, "error.message", &s));
        assert_non_null(strstr(s.ptr, "eval runs arbitrary code"));
        assert_non_null(strstr(s.ptr, "no-eval"));
        assert_string_equal(got.ptr ? got.ptr : "", "Careful here.\n\n");
        assert_null(strstr(out.ptr, "eval(s)"));
        assert_int_equal(sink.replies, 1);
        events_free(&px);
        ag_buf_dispose(&out);
        ag_buf_dispose(&s);
        ag_buf_dispose(&got);
        gen_dispose(&g);
    }
    ag_engine_free(e);
    ag_rules_free(r);
}

/* What the adapter does not rewrite passes through byte for byte: pings, upstream errors,
 * comments, CRLF framing, events without a data line, data it cannot parse. */
static void test_foreign_framing(void **state)
{
    const char *in = ": hello\r\n\r\nevent: message_start\r\ndata: {\"type\":\"message_start\","
                     "\"message\":{\"model\":\"claude-x\",\"content\":[]}}\r\n\r\nevent: ping\r\n"
                     "data: {\"type\": \"ping\"}\r\n\r\nevent: ping\r\n\r\ndata: not json\r\n\r\n"
                     "event: error\r\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                     "\"overloaded_error\",\"message\":\"Overloaded\"}}\r\n\r\n";
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
        rng_state = p;
        assert_false(run_stream(&env, &st, ag_cstr(in), p, &out));
        assert_string_equal(out.ptr, in);
        assert_string_equal(model, "claude-x");
    }
    /* an event cut off at the end gets its blank line (the SDK would drop it) */
    ag_buf_reset(&out);
    assert_false(run_stream(&env, &st, AG_STR_LIT("event: message_stop\ndata: {}"), 4, &out));
    assert_string_equal(out.ptr, "event: message_stop\ndata: {}\n\n");
    ag_buf_dispose(&out);
}

/* ---- code in tool calls ---- */

static const char *AGENT_TS =
    "import { Agent } from '@mastra/core/agent';\n"
    "import { openai } from '@ai-sdk/openai';\n\n"
    "// R\xc3\xa9ponse \xe2\x80\x94 \"quoted\" \xf0\x9f\x9a\x80\n"
    "export const a = new Agent({\n  name: \"W \\\"x\\\"\",\n  instructions: `tab\there`,\n"
    "  model: openai('gpt-4o'),\n});\n";

/* {"file_path": file, "content": code} (JSON.stringify's escaping, or \u escapes) */
static void write_input(ag_buf_t *j, const char *file, const char *code, unsigned style)
{
    put(j, "{\"file_path\": \"");
    put(j, file);
    put(j, "\", \"content\": \"");
    assert_int_equal(ag_jscan_escape(j, ag_cstr(code), style), AG_OK);
    put(j, "\"}");
}

/* What ag_toolcode_rewrite makes of a call's input (the input when it passes through). */
static void tool_want(ag_engine_t *e, const ag_tools_t *tools, const char *name, ag_str_t input,
                      ag_buf_t *out)
{
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(name);
    call.input = AG_TOOL_IN_ARGS;
    bool changed = false;
    ag_buf_reset(out);
    if (ag_toolcode_rewrite(e, tools, &call, input, out, &changed, NULL, NULL) != AG_OK) {
        ag_buf_reset(out);
        assert_int_equal(ag_buf_append(out, input.ptr, input.len), AG_OK);
    }
}

static void test_tool_body(void **state)
{
    ag_tools_t tools = {0};
    ag_tools_presets(&tools);
    ag_buf_t in, body, want, out, w;
    ag_buf_init(&in, 1u << 20);
    ag_buf_init(&body, 1u << 20);
    ag_buf_init(&want, 1u << 20);
    ag_buf_init(&out, 1u << 20);
    ag_buf_init(&w, 1u << 20);
    for (unsigned style = 0; style < 2; style++) {
        ag_buf_reset(&in);
        write_input(&in, "src/a.ts", AGENT_TS, style ? AG_JSCAN_ESC_ASCII : 0);
        tool_want(engine, &tools, "Write", ag_buf_str(&in), &w);
        assert_non_null(memmem(w.ptr, w.len, "openai('gpt-4.1-nano')", 22));
        /* a Write (rewritten), a tool we do not know and a server tool (both left alone) */
        for (int k = 0; k < 2; k++) {
            ag_buf_t *b = k ? &want : &body;
            ag_buf_reset(b);
            put(b, "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
                   "\"claude-x\","
                   "\"content\":[{\"type\":\"text\",\"text\":\"Here.\"},{\"type\":\"tool_use\","
                   "\"id\":\"toolu_1\",\"name\":\"Write\",\"input\": ");
            assert_int_equal(ag_buf_append(b, k ? w.ptr : in.ptr, k ? w.len : in.len), AG_OK);
            put(b, "},{\"input\":");
            assert_int_equal(ag_buf_append(b, in.ptr, in.len), AG_OK);
            put(b, ",\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"write_file\"},"
                   "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"Write\","
                   "\"input\":");
            assert_int_equal(ag_buf_append(b, in.ptr, in.len), AG_OK);
            put(b, "}],\"stop_reason\":\"tool_use\"}");
        }
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, engine, &sink);
        env.tools = &tools;
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_reset(&out);
        assert_int_equal(ag_api_anthropic.rewrite_body(&env, ag_buf_str(&body), &out, &st), AG_OK);
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.ptr, want.ptr, want.len);
        assert_true(st.rewrites > 0);
        assert_string_equal(sink.tool, "Write");
        /* without tools, nothing changes */
        env.tools = NULL;
        ag_buf_reset(&out);
        memset(&st, 0, sizeof(st));
        assert_int_equal(ag_api_anthropic.rewrite_body(&env, ag_buf_str(&body), &out, &st), AG_OK);
        assert_int_equal(out.len, body.len);
        assert_memory_equal(out.ptr, body.ptr, body.len);
    }
    ag_buf_dispose(&in);
    ag_buf_dispose(&body);
    ag_buf_dispose(&want);
    ag_buf_dispose(&out);
    ag_buf_dispose(&w);
    ag_tools_dispose(&tools);
}

/* One streamed call: its events appended to per-block lists, interleaved later. */
typedef struct tcall {
    int index;
    const char *name;
    ag_buf_t ev;  /* its events, in order */
    size_t *ends; /* end offset of each event in ev */
    size_t n;
} tcall_t;

static void tc_event(tcall_t *c, ag_buf_t *j, const char *type, const char *eol, bool split)
{
    put(&c->ev, "event: ");
    put(&c->ev, type);
    put(&c->ev, eol);
    put(&c->ev, "data: ");
    const char *cut = split ? strstr(j->ptr, ",\"delta\"") : NULL;
    if (cut) { /* two data lines, joined with "\n": whitespace in the JSON */
        assert_int_equal(ag_buf_append(&c->ev, j->ptr, (size_t)(cut - j->ptr) + 1), AG_OK);
        put(&c->ev, eol);
        put(&c->ev, "data: ");
        put(&c->ev, cut + 1);
    } else {
        assert_int_equal(ag_buf_append(&c->ev, j->ptr, j->len), AG_OK);
    }
    put(&c->ev, eol);
    put(&c->ev, eol);
    c->ends = realloc(c->ends, (c->n + 1) * sizeof(*c->ends));
    c->ends[c->n++] = c->ev.len;
}

/* A tool_use block for input, its partial_json cut at random points (inside escapes too, never
 * inside a UTF-8 character; some pieces empty). */
static void tc_gen(tcall_t *c, int index, const char *name, ag_str_t input, const char *eol)
{
    memset(c, 0, sizeof(*c));
    c->index = index;
    c->name = name;
    ag_buf_init(&c->ev, 1u << 24);
    ag_buf_t j;
    ag_buf_init(&j, 1u << 24);
    assert_int_equal(ag_buf_appendf(&j,
                                    "{\"type\":\"content_block_start\",\"index\":%d,"
                                    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_%d\","
                                    "\"name\":\"%s\",\"input\":{}}}",
                                    index, index, name),
                     AG_OK);
    tc_event(c, &j, "content_block_start", eol, false);
    for (size_t pos = 0; pos < input.len;) {
        size_t next = pos + rng() % 9;
        if (next > input.len)
            next = input.len;
        while (next < input.len && ((unsigned char)input.ptr[next] & 0xc0) == 0x80)
            next++;
        ag_buf_reset(&j);
        assert_int_equal(
            ag_buf_appendf(&j,
                           "{\"type\":\"content_block_delta\",\"index\":%d,"
                           "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
                           index),
            AG_OK);
        put_json(&j, ag_str(input.ptr + pos, next - pos));
        put(&j, "}}");
        tc_event(c, &j, "content_block_delta", eol, rng() % 4 == 0);
        pos = next;
    }
    ag_buf_reset(&j);
    assert_int_equal(ag_buf_appendf(&j, "{\"type\":\"content_block_stop\",\"index\":%d}", index),
                     AG_OK);
    tc_event(c, &j, "content_block_stop", eol, false);
    ag_buf_dispose(&j);
}

static void tc_dispose(tcall_t *c)
{
    ag_buf_dispose(&c->ev);
    free(c->ends);
}

/* The calls' events interleaved at random (each call's in order) between a message_start and
 * the message's end. */
static void tc_stream(tcall_t *c, int n, const char *eol, ag_buf_t *sse)
{
    size_t next[8] = {0};
    ag_buf_reset(sse);
    assert_int_equal(ag_buf_appendf(sse,
                                    "event: message_start%sdata: {\"type\":\"message_start\","
                                    "\"message\":{\"model\":\"claude-x\",\"content\":[]}}%s%s",
                                    eol, eol, eol),
                     AG_OK);
    for (;;) {
        int open = 0;
        for (int k = 0; k < n; k++)
            open += next[k] < c[k].n;
        if (open == 0)
            break;
        int k = (int)(rng() % (unsigned)n);
        if (next[k] == c[k].n)
            continue;
        size_t from = next[k] ? c[k].ends[next[k] - 1] : 0;
        assert_int_equal(ag_buf_append(sse, c[k].ev.ptr + from, c[k].ends[next[k]] - from), AG_OK);
        next[k]++;
    }
    assert_int_equal(ag_buf_appendf(sse,
                                    "event: message_delta%sdata: {\"type\":\"message_delta\","
                                    "\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":"
                                    "{\"output_tokens\":9}}%s%sevent: message_stop%sdata: "
                                    "{\"type\":\"message_stop\"}%s%s",
                                    eol, eol, eol, eol, eol, eol),
                     AG_OK);
}

/* Raw SSE events split by whether they are a given block's input_json_delta. */
typedef struct split {
    int index;
    ag_buf_t rest;  /* every other event, raw, in order */
    ag_buf_t held;  /* that block's input_json_delta events, raw, in order */
    ag_buf_t input; /* their partial_json, decoded and joined */
    bool stopped;   /* its content_block_stop was seen */
    bool late;      /* an input_json_delta came after it */
} split_t;

static int split_cb(void *ud, const ag_sse_item_t *it)
{
    split_t *sp = ud;
    ag_buf_t s;
    ag_buf_init(&s, 1u << 24);
    uint64_t index = UINT64_MAX;
    bool is_delta = it->kind == AG_SSE_EVENT && get_num(it->data, "index", &index) &&
                    (int)index == sp->index &&
                    get_str(it->data, "delta{type=input_json_delta}.partial_json", &s);
    if (is_delta) {
        sp->late |= sp->stopped;
        assert_int_equal(ag_buf_append(&sp->held, it->raw.ptr, it->raw.len), AG_OK);
        assert_int_equal(ag_buf_append(&sp->input, s.ptr, s.len), AG_OK);
    } else {
        if (index != UINT64_MAX && (int)index == sp->index &&
            type_is(it->data, "content_block_stop"))
            sp->stopped = true;
        assert_int_equal(ag_buf_append(&sp->rest, it->raw.ptr, it->raw.len), AG_OK);
    }
    ag_buf_dispose(&s);
    return AG_OK;
}

static void split_events(ag_str_t sse, int index, split_t *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->index = index;
    ag_buf_init(&sp->rest, 1u << 26);
    ag_buf_init(&sp->held, 1u << 26);
    ag_buf_init(&sp->input, 1u << 26);
    ag_sse_parser_t p;
    ag_sse_init(&p, 0);
    assert_int_equal(ag_sse_feed(&p, sse, split_cb, sp), AG_OK);
    assert_int_equal(ag_sse_finish(&p, split_cb, sp), AG_OK);
    ag_sse_dispose(&p);
}

static void split_dispose(split_t *sp)
{
    ag_buf_dispose(&sp->rest);
    ag_buf_dispose(&sp->held);
    ag_buf_dispose(&sp->input);
}

static bool buf_eq(const ag_buf_t *a, const ag_buf_t *b)
{
    return ag_str_eq(ag_buf_str(a), ag_buf_str(b));
}

/* Streamed, interleaved: a Write of a Mastra agent (rewritten), a tool astgate does not know, and
 * an Edit of a file that is not code (held, then sent as it came); LF and CRLF, several data
 * lines, random feeds. */
static void test_tool_stream(void **state)
{
    ag_tools_t tools = {0};
    ag_tools_presets(&tools);
    ag_buf_t write, edit, want, sse, out;
    ag_buf_init(&write, 1u << 20);
    ag_buf_init(&edit, 1u << 20);
    ag_buf_init(&want, 1u << 20);
    ag_buf_init(&sse, 1u << 26);
    ag_buf_init(&out, 1u << 26);
    put(&edit, "{\"file_path\":\"notes.txt\",\"old_string\":\"a\",\"new_string\":\"model: "
               "openai('gpt-4o')\\n\\u00e9\"}");
    for (uint32_t seed = 0; seed < 24; seed++) {
        rng_state = seed * 7919 + 1;
        const char *eol = seed % 2 ? "\r\n" : "\n";
        ag_buf_reset(&write);
        write_input(&write, "src/a.ts", AGENT_TS, seed % 3 == 0 ? AG_JSCAN_ESC_ASCII : 0);
        tool_want(engine, &tools, "Write", ag_buf_str(&write), &want);
        assert_false(buf_eq(&want, &write));
        tcall_t c[3];
        tc_gen(&c[0], 0, "Write", ag_buf_str(&write), eol);
        tc_gen(&c[1], 1, "Bash", AG_STR_LIT("{\"command\":\"echo \\\"hi\\\"\"}"), eol);
        tc_gen(&c[2], 2, "Edit", ag_buf_str(&edit), eol);
        tc_stream(c, 3, eol, &sse);
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, engine, &sink);
        env.tools = &tools;
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_reset(&out);
        assert_false(run_stream(&env, &st, ag_buf_str(&sse), 1 + seed * 11, &out));
        /* the Write: its input rewritten, all of it before its stop; every other event as it
         * came, in order, but the Edit's deltas, which come back as they came at its stop */
        split_t in0, out0, in2, out2;
        split_events(ag_buf_str(&sse), 0, &in0);
        split_events(ag_buf_str(&out), 0, &out0);
        assert_true(buf_eq(&in0.input, &write));
        assert_true(buf_eq(&out0.input, &want));
        assert_false(out0.late);
        split_events(ag_buf_str(&in0.rest), 2, &in2);
        split_events(ag_buf_str(&out0.rest), 2, &out2);
        assert_true(buf_eq(&in2.held, &out2.held));
        assert_false(out2.late);
        assert_true(buf_eq(&in2.rest, &out2.rest));
        assert_true(st.rewrites > 0);
        assert_int_equal(sink.skips, 0);
        split_dispose(&in0);
        split_dispose(&out0);
        split_dispose(&in2);
        split_dispose(&out2);
        for (int k = 0; k < 3; k++)
            tc_dispose(&c[k]);
    }
    ag_buf_dispose(&write);
    ag_buf_dispose(&edit);
    ag_buf_dispose(&want);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
    ag_tools_dispose(&tools);
}

/* What passes through unchanged does so byte for byte: input that is not JSON (reported), a call
 * past the hold limit (reported), a stream cut before the stop (reported, with the last event's
 * blank line added). */
static void test_tool_pass_through(void **state)
{
    ag_tools_t tools = {0};
    ag_tools_presets(&tools);
    ag_buf_t write, sse, out;
    ag_buf_init(&write, 1u << 20);
    ag_buf_init(&sse, 1u << 26);
    ag_buf_init(&out, 1u << 26);
    for (uint32_t seed = 0; seed < 12; seed++) {
        rng_state = seed + 100;
        const char *eol = seed % 2 ? "\r\n" : "\n";
        int mode = seed % 3; /* 0: not JSON, 1: past max_held, 2: cut */
        ag_buf_reset(&write);
        write_input(&write, "src/a.ts", AGENT_TS, 0);
        if (mode == 0)
            write.len -= 2; /* cut by max_tokens */
        tcall_t c;
        tc_gen(&c, 0, "Write", ag_buf_str(&write), eol);
        tc_stream(&c, 1, eol, &sse);
        if (mode == 2) { /* the stream ends inside the last delta's blank line */
            const char *stop = strstr(sse.ptr, "event: content_block_stop");
            assert_non_null(stop);
            sse.len = (size_t)(stop - sse.ptr) - strlen(eol);
        }
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, engine, &sink);
        env.tools = &tools;
        env.max_held = mode == 1 ? 600 : 0;
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_reset(&out);
        assert_false(run_stream(&env, &st, ag_buf_str(&sse), 1 + seed * 5, &out));
        if (mode == 2)
            put(&sse, "\n"); /* the blank line the adapter adds */
        assert_int_equal(out.len, sse.len);
        assert_memory_equal(out.ptr, sse.ptr, sse.len);
        assert_int_equal(sink.skips, 1);
        assert_non_null(strstr(sink.why, mode == 0   ? "not valid JSON"
                                         : mode == 1 ? "max_held"
                                                     : "content_block_stop"));
        tc_dispose(&c);
    }
    ag_buf_dispose(&write);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
    ag_tools_dispose(&tools);
}

/* A block rule on a call's code: the call never reaches the client; the stream ends with the
 * error event. */
static void test_tool_block(void **state)
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
    ag_tools_t tools = {0};
    ag_tools_presets(&tools);
    ag_buf_t write, sse, out, s;
    ag_buf_init(&write, 1u << 20);
    ag_buf_init(&sse, 1u << 26);
    ag_buf_init(&out, 1u << 26);
    ag_buf_init(&s, 1u << 20);
    write_input(&write, "src/calc.ts", "export const f = (s: string) => eval(s);\n", 0);
    for (uint32_t seed = 0; seed < 6; seed++) {
        rng_state = seed + 200;
        tcall_t c[2];
        tc_gen(&c[0], 0, "Bash", AG_STR_LIT("{\"command\":\"ls\"}"), "\n");
        tc_gen(&c[1], 1, "Write", ag_buf_str(&write), "\n");
        tc_stream(c, 2, "\n", &sse);
        ag_api_env_t env;
        sink_t sink;
        env_init(&env, e, &sink);
        env.tools = &tools;
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        ag_buf_reset(&out);
        assert_true(run_stream(&env, &st, ag_buf_str(&sse), 1 + seed * 7, &out));
        assert_string_equal(st.blocked_rule, "no-eval");
        assert_null(memmem(out.ptr, out.len, "eval(", 5));
        events_t px;
        parse_events(ag_buf_str(&out), &px);
        assert_string_equal(px.name[px.n - 1], "error");
        assert_true(get_str(data_of(&px, px.n - 1), "error.type", &s));
        assert_string_equal(s.ptr, "astgate_blocked");
        events_free(&px);
        for (int k = 0; k < 2; k++)
            tc_dispose(&c[k]);
    }
    ag_buf_dispose(&write);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
    ag_buf_dispose(&s);
    ag_tools_dispose(&tools);
    ag_engine_free(e);
    ag_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_corpus_streamed),
        cmocka_unit_test(test_several_blocks),
        cmocka_unit_test(test_added_delta_before_stop),
        cmocka_unit_test(test_cut_stream_is_flushed),
        cmocka_unit_test(test_body_rewrite),
        cmocka_unit_test(test_block_rule),
        cmocka_unit_test(test_foreign_framing),
        cmocka_unit_test(test_tool_body),
        cmocka_unit_test(test_tool_stream),
        cmocka_unit_test(test_tool_pass_through),
        cmocka_unit_test(test_tool_block),
    };
    return cmocka_run_group_tests_name("api_anthropic", tests, setup, teardown);
}

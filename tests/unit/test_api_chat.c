/* The OpenAI Chat Completions adapter and code in tool calls. Not streamed: only the input
 * literals of the calls of tools that carry code change (re-encoded in their own style), reported
 * with the call's tool, id and argument; a tool astgate does not know, or arguments that are not
 * JSON, leave the body byte for byte. Streamed (fed in random splits): a held call's input goes
 * out in one fragment, before the event that ended the call, equal to ag_toolcode_rewrite of the
 * whole input; the events left with nothing but held fragments are not sent; an unknown tool's
 * events are the upstream's; parallel calls go out in ascending index order even when the
 * upstream interleaves them; past max_held a call is released unchanged; a block rule ends the
 * stream with the error event. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "json.h"
#include "jsonscan.h"
#include "rules.h"
#include "sse.h"

static ag_rules_t *rules;
static ag_engine_t *engine;
static ag_tools_t tools;

static int setup(void **state)
{
    (void)state;
    ag_buf_t text;
    ag_buf_init(&text, 1u << 24);
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    const char *block = "\n---\nid: no-eval\nlanguage: TypeScript\nmessage: no eval\n"
                        "rule:\n  pattern: eval($X)\nmetadata:\n  astgate:\n    action: block\n";
    if (ag_read_file("rules/mastra.yaml", &text) != AG_OK ||
        ag_buf_append(&text, block, strlen(block)) != AG_OK ||
        ag_rules_load_mem(ag_buf_str(&text), "rules/mastra.yaml", &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return -1;
    }
    ag_buf_dispose(&text);
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.bare = true;
    engine = ag_engine_new(rules, &opts);
    ag_tools_presets(&tools);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_tools_dispose(&tools);
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

#define AGENT                                                                                      \
    "import { Agent } from '@mastra/core/agent';\n"                                                \
    "import { openai } from '@ai-sdk/openai';\n"                                                   \
    "export const a = new Agent({ name: 'a \"\xc3\xa9\"', instructions: 'x',\n"                    \
    "  model: openai('gpt-4o') });\n"

/* The arguments of a Write of AGENT to path. */
static void write_args(ag_buf_t *b, const char *path, const char *code)
{
    ag_buf_reset(b);
    put(b, "{\"file_path\": \"");
    put(b, path);
    put(b, "\", \"content\": ");
    put_json(b, ag_cstr(code));
    put(b, "}");
}

/* What the adapter must make of a call's input. */
static void want_of(const char *name, int input, ag_str_t in, ag_buf_t *out)
{
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(name);
    call.id = AG_STR_LIT("x");
    call.file = AG_STR_LIT("");
    call.input = input;
    bool changed = false;
    ag_buf_reset(out);
    if (ag_toolcode_rewrite(engine, &tools, &call, in, out, &changed, NULL, NULL) != AG_OK) {
        ag_buf_reset(out);
        assert_int_equal(ag_buf_append(out, in.ptr, in.len), AG_OK);
    }
}

/* ---- what the adapter reports ---- */

typedef struct sink {
    int results, skips;
    char tool[64], call_id[64], argument[64], why[128];
} sink_t;

static void on_result(void *ud, int index, const ag_result_t *res);
static void on_tool_skip(void *ud, int index, const ag_tool_call_t *call, const char *why);

static ag_api_env_t env;

static void on_result(void *ud, int index, const ag_result_t *res)
{
    sink_t *s = ud;
    (void)index;
    (void)res;
    s->results++;
    if (env.tool) {
        snprintf(s->tool, sizeof(s->tool), "%.*s", (int)env.tool->call->name.len,
                 env.tool->call->name.ptr);
        snprintf(s->call_id, sizeof(s->call_id), "%.*s", (int)env.tool->call->id.len,
                 env.tool->call->id.ptr);
        snprintf(s->argument, sizeof(s->argument), "%s", env.tool->field);
    }
}

static void on_tool_skip(void *ud, int index, const ag_tool_call_t *call, const char *why)
{
    sink_t *s = ud;
    (void)index;
    (void)call;
    s->skips++;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static void env_init(sink_t *s, size_t max_held)
{
    memset(&env, 0, sizeof(env));
    memset(s, 0, sizeof(*s));
    env.engine = engine;
    env.max_held = max_held;
    env.on_result = on_result;
    env.on_tool_skip = on_tool_skip;
    env.ud = s;
    env.tools = &tools;
}

/* ---- not streamed ---- */

static void test_body(void **state)
{
    (void)state;
    ag_buf_t args, body, out, want, got;
    ag_buf_init(&args, 1u << 20);
    ag_buf_init(&body, 1u << 20);
    ag_buf_init(&out, 1u << 20);
    ag_buf_init(&want, 1u << 20);
    ag_buf_init(&got, 1u << 20);
    write_args(&args, "src/a.ts", AGENT);
    put(&body,
        "{\"id\": \"c\", \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", "
        "\"content\": null, \"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\", "
        "\"function\": {\"name\": \"Write\", \"arguments\": ");
    put_json(&body, ag_buf_str(&args));
    put(&body, "}}, {\"id\": \"call_2\", \"type\": \"function\", \"function\": {\"name\": "
               "\"get_weather\", \"arguments\": \"{\\\"model\\\": \\\"gpt-4o\\\"}\"}}]}, "
               "\"finish_reason\": \"tool_calls\"}]}");
    sink_t s;
    env_init(&s, 1u << 20);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(ag_api_openai_chat.rewrite_body(&env, ag_buf_str(&body), &out, &st), AG_OK);
    want_of("Write", AG_TOOL_IN_ARGS, ag_buf_str(&args), &want);
    /* the rewritten arguments, in the body */
    ag_jscan_path_t p;
    assert_int_equal(
        ag_jscan_path_compile(&p, AG_STR_LIT("choices[*].message.tool_calls[*].function.arguments"),
                              AG_JSCAN_STRING),
        AG_OK);
    ag_jscan_match_t m[4];
    size_t n = 0;
    assert_int_equal(ag_jscan_find(ag_buf_str(&out), &p, 1, m, 4, &n, NULL), AG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ag_jscan_decode(ag_buf_str(&out), m[0].off, m[0].len, &got, NULL, 0, NULL),
                     AG_OK);
    assert_true(ag_str_eq(ag_buf_str(&got), ag_buf_str(&want)));
    /* every byte before the literal and after it is the upstream's */
    size_t head = m[0].off, tail = out.len - (m[0].off + m[0].len);
    assert_memory_equal(out.ptr, body.ptr, head);
    assert_memory_equal(out.ptr + out.len - tail, body.ptr + body.len - tail, tail);
    assert_false(ag_str_eq(ag_buf_str(&want), ag_buf_str(&args))); /* the agent is pinned */
    assert_true(st.rewrites > 0);
    assert_string_equal(s.tool, "Write");
    assert_string_equal(s.call_id, "call_1");
    assert_string_equal(s.argument, "content");
    ag_buf_dispose(&args);
    ag_buf_dispose(&body);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
    ag_buf_dispose(&got);
}

static void test_body_untouched(void **state)
{
    (void)state;
    /* arguments that are not JSON, a tool astgate does not know, a custom tool without code */
    const char *body =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"Write\","
        "\"arguments\":\"{\\\"file_path\\\":\\\"a.ts\\\",\\\"content\\\":\\\"new Agent({ model: "
        "'gpt-4o'\"}},{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"Other\","
        "\"arguments\":\"{\\\"content\\\":\\\"new Agent({ model: 'gpt-4o' })\\\"}\"}},"
        "{\"id\":\"call_3\",\"type\":\"custom\",\"custom\":{\"name\":\"apply_patch\",\"input\":"
        "\"*** Begin Patch\\n*** Add File: a.md\\n+hi\\n*** End Patch\\n\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}";
    sink_t s;
    env_init(&s, 1u << 20);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    assert_int_equal(ag_api_openai_chat.rewrite_body(&env, ag_cstr(body), &out, &st), AG_OK);
    assert_int_equal(out.len, strlen(body));
    assert_memory_equal(out.ptr, body, out.len);
    assert_int_equal(s.skips, 1); /* the arguments that are not JSON */
    assert_int_equal(st.rewrites, 0);
    ag_buf_dispose(&out);
}

/* ---- streamed ---- */

static void chunk(ag_buf_t *b, const char *choices_json)
{
    put(b, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,"
           "\"model\":\"m\",\"choices\":[");
    put(b, choices_json);
    put(b, "]}\n\n");
}

/* A fragment event: {index:k, function:{arguments: piece}}. */
static void frag(ag_buf_t *b, unsigned k, ag_str_t piece)
{
    ag_buf_t j;
    ag_buf_init(&j, 1u << 20);
    assert_int_equal(ag_buf_appendf(&j,
                                    "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%u,"
                                    "\"function\":{\"arguments\":",
                                    k),
                     AG_OK);
    put_json(&j, piece);
    put(&j, "}}]},\"finish_reason\":null}");
    assert_int_equal(ag_buf_appendc(&j, '\0'), AG_OK); /* a C string for chunk() */
    chunk(b, j.ptr);
    ag_buf_dispose(&j);
}

static void head(ag_buf_t *b, unsigned k, const char *id, const char *name)
{
    char j[512];
    snprintf(j, sizeof(j),
             "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%u,\"id\":\"%s\",\"type\":"
             "\"function\",\"function\":{\"name\":\"%s\",\"arguments\":\"\"}}]},"
             "\"finish_reason\":null}",
             k, id, name);
    chunk(b, j);
}

/* The output, read back: per index the input, its non-empty fragments, and the event of the first
 * one; the number of events, of error events, and where [DONE] and the finish chunk are. */
typedef struct seen {
    ag_buf_t input[4];
    int frags[4], first[4];
    int events, errors, done_at, finish_at;
    ag_jscan_path_t p[4];
} seen_t;

static int on_out(void *ud, const ag_sse_item_t *it)
{
    seen_t *sn = ud;
    if (it->kind != AG_SSE_EVENT)
        return AG_OK;
    int ev = sn->events++;
    if (ag_str_eqc(it->data, "[DONE]")) {
        sn->done_at = ev;
        return AG_OK;
    }
    ag_jscan_match_t m[64];
    size_t n = 0;
    assert_int_equal(ag_jscan_find(it->data, sn->p, 4, m, 64, &n, NULL), AG_OK);
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].path == 0) {
            assert_int_equal(ag_jscan_get_u64(it->data, &m[i], &k), AG_OK);
            assert_true(k < 4);
        } else if (m[i].path == 1) {
            ag_buf_t d;
            ag_buf_init(&d, 1u << 20);
            assert_int_equal(ag_jscan_decode(it->data, m[i].off, m[i].len, &d, NULL, 0, NULL),
                             AG_OK);
            if (d.len) {
                if (sn->frags[k]++ == 0)
                    sn->first[k] = ev;
                assert_int_equal(ag_buf_append(&sn->input[k], d.ptr, d.len), AG_OK);
            }
            ag_buf_dispose(&d);
        } else if (m[i].path == 2) {
            sn->finish_at = ev;
        } else {
            sn->errors++;
        }
    }
    return AG_OK;
}

static void seen_init(seen_t *sn)
{
    memset(sn, 0, sizeof(*sn));
    for (int k = 0; k < 4; k++)
        ag_buf_init(&sn->input[k], 1u << 20);
    sn->done_at = sn->finish_at = -1;
    assert_int_equal(ag_jscan_path_compile(&sn->p[0],
                                           AG_STR_LIT("choices[*].delta.tool_calls[*].index"),
                                           AG_JSCAN_NUMBER),
                     AG_OK);
    assert_int_equal(ag_jscan_path_compile(
                         &sn->p[1], AG_STR_LIT("choices[*].delta.tool_calls[*].function.arguments"),
                         AG_JSCAN_STRING),
                     AG_OK);
    assert_int_equal(
        ag_jscan_path_compile(&sn->p[2], AG_STR_LIT("choices[*].finish_reason"), AG_JSCAN_STRING),
        AG_OK);
    assert_int_equal(ag_jscan_path_compile(&sn->p[3], AG_STR_LIT("error.code"), AG_JSCAN_STRING),
                     AG_OK);
}

static void seen_dispose(seen_t *sn)
{
    for (int k = 0; k < 4; k++)
        ag_buf_dispose(&sn->input[k]);
}

/* Feeds sse in random pieces and reads the output back into sn. */
static bool run(ag_str_t sse, ag_api_stats_t *st, seen_t *sn, ag_buf_t *out)
{
    const ag_api_t *api = &ag_api_openai_chat;
    void *s = api->stream_new(&env, st);
    bool ended = false;
    for (size_t pos = 0; pos < sse.len && !ended;) {
        size_t n = 1 + rng() % 40;
        if (n > sse.len - pos)
            n = sse.len - pos;
        assert_int_equal(api->stream_feed(s, ag_str(sse.ptr + pos, n), out, &ended), AG_OK);
        pos += n;
    }
    if (!ended)
        assert_int_equal(api->stream_end(s, out), AG_OK);
    api->stream_free(s);
    ag_sse_parser_t p;
    ag_sse_init(&p, 1u << 24);
    assert_int_equal(ag_sse_feed(&p, ag_buf_str(out), on_out, sn), AG_OK);
    assert_int_equal(ag_sse_finish(&p, on_out, sn), AG_OK);
    ag_sse_dispose(&p);
    return ended;
}

/* Calls 0 and 1 (Write of AGENT, Write of AGENT elsewhere), their arguments cut in pieces of up
 * to 7 bytes (never inside a UTF-8 character), in turn or interleaved, then finish and [DONE]. */
static void gen_two(ag_buf_t *sse, const ag_buf_t *args, int ncalls, bool interleave)
{
    const char *names[2] = {"Write", "Write"};
    size_t pos[2] = {0, 0};
    bool started[2] = {false, false};
    chunk(sse, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},"
               "\"finish_reason\":null}");
    for (int k = 0; k < ncalls;) {
        int c = interleave ? (int)(rng() % (unsigned)ncalls) : k;
        if (pos[c] == args[c].len && started[c]) {
            if (!interleave)
                k++;
            else if (pos[0] == args[0].len && (ncalls < 2 || pos[1] == args[1].len))
                break;
            continue;
        }
        if (!started[c]) {
            head(sse, (unsigned)c, c ? "call_b" : "call_a", names[c]);
            started[c] = true;
            continue;
        }
        size_t n = pos[c] + 1 + rng() % 7;
        if (n > args[c].len)
            n = args[c].len;
        while (n < args[c].len && ((unsigned char)args[c].ptr[n] & 0xc0) == 0x80)
            n++;
        frag(sse, (unsigned)c, ag_str(args[c].ptr + pos[c], n - pos[c]));
        pos[c] = n;
    }
    chunk(sse, "{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}");
    put(sse, "data: [DONE]\n\n");
}

static void test_stream_one_call(void **state)
{
    (void)state;
    ag_buf_t args[2], sse, out, want;
    ag_buf_init(&args[0], 1u << 20);
    ag_buf_init(&args[1], 1u << 20);
    ag_buf_init(&sse, 1u << 20);
    ag_buf_init(&out, 1u << 22);
    ag_buf_init(&want, 1u << 20);
    write_args(&args[0], "src/a.ts", AGENT);
    want_of("Write", AG_TOOL_IN_ARGS, ag_buf_str(&args[0]), &want);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        rng_state = seed;
        ag_buf_reset(&sse);
        ag_buf_reset(&out);
        gen_two(&sse, args, 1, false);
        sink_t s;
        env_init(&s, 1u << 20);
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        seen_t sn;
        seen_init(&sn);
        assert_false(run(ag_buf_str(&sse), &st, &sn, &out));
        assert_true(ag_str_eq(ag_buf_str(&sn.input[0]), ag_buf_str(&want)));
        assert_int_equal(sn.frags[0], 1);  /* in one fragment */
        assert_int_equal(sn.first[0], 2);  /* role, header, the input */
        assert_int_equal(sn.finish_at, 3); /* then the finish chunk */
        assert_int_equal(sn.done_at, 4);   /* and [DONE]: nothing else went out */
        assert_int_equal(sn.errors, 0);
        seen_dispose(&sn);
    }
    /* without tools, the stream is the upstream's byte for byte */
    sink_t s;
    env_init(&s, 1u << 20);
    env.tools = NULL;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    seen_t sn;
    seen_init(&sn);
    ag_buf_reset(&out);
    assert_false(run(ag_buf_str(&sse), &st, &sn, &out));
    assert_int_equal(out.len, sse.len);
    assert_memory_equal(out.ptr, sse.ptr, sse.len);
    seen_dispose(&sn);
    ag_buf_dispose(&args[0]);
    ag_buf_dispose(&args[1]);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
}

static void test_stream_interleaved(void **state)
{
    (void)state;
    ag_buf_t args[2], sse, out, want[2];
    for (int k = 0; k < 2; k++) {
        ag_buf_init(&args[k], 1u << 20);
        ag_buf_init(&want[k], 1u << 20);
    }
    ag_buf_init(&sse, 1u << 20);
    ag_buf_init(&out, 1u << 22);
    write_args(&args[0], "src/a.ts", AGENT);
    write_args(&args[1], "src/b.ts", "export const b = new Agent({ name: 'b', model: 'x' });\n");
    for (int k = 0; k < 2; k++)
        want_of("Write", AG_TOOL_IN_ARGS, ag_buf_str(&args[k]), &want[k]);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        rng_state = seed * 977;
        ag_buf_reset(&sse);
        ag_buf_reset(&out);
        gen_two(&sse, args, 2, seed % 2 == 0);
        sink_t s;
        env_init(&s, 1u << 20);
        ag_api_stats_t st;
        memset(&st, 0, sizeof(st));
        seen_t sn;
        seen_init(&sn);
        assert_false(run(ag_buf_str(&sse), &st, &sn, &out));
        for (int k = 0; k < 2; k++) {
            assert_true(ag_str_eq(ag_buf_str(&sn.input[k]), ag_buf_str(&want[k])));
            assert_int_equal(sn.frags[k], 1);
        }
        assert_true(sn.first[0] < sn.first[1]);  /* ascending index order */
        assert_true(sn.first[1] < sn.finish_at); /* before the finish chunk */
        seen_dispose(&sn);
    }
    for (int k = 0; k < 2; k++) {
        ag_buf_dispose(&args[k]);
        ag_buf_dispose(&want[k]);
    }
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
}

static void test_stream_max_held(void **state)
{
    (void)state;
    ag_buf_t args[2], sse, out;
    ag_buf_init(&args[0], 1u << 20);
    ag_buf_init(&args[1], 1u << 20);
    ag_buf_init(&sse, 1u << 20);
    ag_buf_init(&out, 1u << 22);
    write_args(&args[0], "src/a.ts", AGENT);
    rng_state = 5;
    gen_two(&sse, args, 1, false);
    sink_t s;
    env_init(&s, 64); /* the call is larger: released as it came */
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    seen_t sn;
    seen_init(&sn);
    assert_false(run(ag_buf_str(&sse), &st, &sn, &out));
    assert_true(ag_str_eq(ag_buf_str(&sn.input[0]), ag_buf_str(&args[0])));
    assert_int_equal(s.skips, 1);
    assert_non_null(strstr(s.why, "max_held"));
    seen_dispose(&sn);
    ag_buf_dispose(&args[0]);
    ag_buf_dispose(&args[1]);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
}

static void test_stream_block(void **state)
{
    (void)state;
    ag_buf_t args[2], sse, out;
    ag_buf_init(&args[0], 1u << 20);
    ag_buf_init(&args[1], 1u << 20);
    ag_buf_init(&sse, 1u << 20);
    ag_buf_init(&out, 1u << 22);
    write_args(&args[0], "src/a.ts", AGENT);
    write_args(&args[1], "src/calc.ts", "export const calc = (s: string) => eval(s);\n");
    rng_state = 9;
    gen_two(&sse, args, 2, false);
    sink_t s;
    env_init(&s, 1u << 20);
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    seen_t sn;
    seen_init(&sn);
    assert_true(run(ag_buf_str(&sse), &st, &sn, &out));
    assert_non_null(st.blocked_rule);
    assert_string_equal(st.blocked_rule, "no-eval");
    assert_int_equal(sn.errors, 1);
    assert_int_equal(sn.frags[0], 1); /* the call before it went out, whole */
    assert_int_equal(sn.frags[1], 0); /* nothing of the blocked one */
    assert_int_equal(sn.done_at, -1); /* the error is the end */
    assert_int_equal(sn.finish_at, -1);
    seen_dispose(&sn);
    ag_buf_dispose(&args[0]);
    ag_buf_dispose(&args[1]);
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
}

/* ---- the hold policy's plumbing ---- */

static uint32_t hold_reports;
static ag_stream_hold_stats_t hold_last;
static uint32_t hold_waits;

static void on_held_wait(void *ud, uint64_t ns)
{
    (void)ud;
    (void)ns;
    hold_waits++;
}

static void on_hold(void *ud, const ag_stream_hold_stats_t *st)
{
    (void)ud;
    hold_reports++;
    hold_last = *st;
}

/* Each adapter reports its core's hold statistics once, when its stream is freed: after a clean
 * end, and after a stream cut short (no stream_end) too; the wait of held text reaches
 * on_held_wait. */
static void test_stream_hold_report(void **state)
{
    (void)state;
    const ag_api_t *apis[] = {&ag_api_openai_chat, &ag_api_openai_responses, &ag_api_anthropic};
    ag_buf_t sse, out;
    ag_buf_init(&sse, 1u << 20);
    ag_buf_init(&out, 1u << 22);
    chunk(&sse, "{\"index\":0,\"delta\":{\"content\":\"Here:\\n```ts\\nnew Agent({ model: "
                "'openai/gpt-4o' });\\n\"}}");
    chunk(&sse, "{\"index\":0,\"delta\":{\"content\":\"```\\n\"},\"finish_reason\":\"stop\"}");
    put(&sse, "data: [DONE]\n\n");
    for (size_t a = 0; a < sizeof(apis) / sizeof(apis[0]); a++) {
        for (int cut = 0; cut < 2; cut++) {
            sink_t s;
            env_init(&s, 1u << 20);
            env.hold = AG_STREAM_HOLD_MINIMAL;
            env.on_hold = on_hold;
            env.on_held_wait = on_held_wait;
            hold_reports = 0;
            hold_waits = 0;
            memset(&hold_last, 0xff, sizeof(hold_last));
            ag_api_stats_t st;
            memset(&st, 0, sizeof(st));
            void *p = apis[a]->stream_new(&env, &st);
            bool ended = false;
            ag_buf_reset(&out);
            if (a == 0) /* chat: a reply with a code block */
                assert_int_equal(apis[a]->stream_feed(p, ag_buf_str(&sse), &out, &ended), AG_OK);
            if (!cut)
                assert_int_equal(apis[a]->stream_end(p, &out), AG_OK);
            assert_int_equal(hold_reports, 0);
            apis[a]->stream_free(p);
            assert_int_equal(hold_reports, 1);
            assert_int_equal(hold_last.violations, 0);
            if (a == 0) {
                assert_non_null(strstr(out.ptr, "gpt-4.1-nano"));
                assert_true(hold_waits > 0); /* the held block waited for its closing fence */
            }
        }
    }
    ag_buf_dispose(&sse);
    ag_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_body_untouched),
        cmocka_unit_test(test_stream_one_call),
        cmocka_unit_test(test_stream_interleaved),
        cmocka_unit_test(test_stream_max_held),
        cmocka_unit_test(test_stream_block),
        cmocka_unit_test(test_stream_hold_report),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

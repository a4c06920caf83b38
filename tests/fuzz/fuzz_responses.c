/* libFuzzer target for the OpenAI Responses adapter's stream (run from the repository root, or
 * set ASTGATE_FUZZ_RULES; a block rule for eval($X) is added to the rules). The input drives a
 * generator of Responses event streams. Byte 0: bit 0 well-formed mode, bit 1 CRLF line ends,
 * bit 2 no event lines, bit 3 no done events, bit 4 a reasoning item first, bit 5 one message
 * with several parts (else one message per part), bit 6 tool calls; bytes 1-2: the seed of the
 * delta cuts, of the feed splits and of the tool calls' shapes. Well-formed mode: the rest is up
 * to 3 texts separated by NUL bytes, streamed as a full response; with bit 6 each text is the
 * input of a tool call instead (a Write's content or its whole arguments, a custom apply_patch's
 * envelope, an apply_patch_call's create_file or update_file diff; in deltas cut at random
 * points, or, for apply_patch_call, only in output_item.added/.done; calls interleaved or not;
 * strings escaped raw or as \uXXXX), after a message with the first text when bit 5 is set.
 * Otherwise the rest is a script of random events (deltas, done events, completed, errors,
 * [DONE], comments, data that is not JSON, tool items and their deltas and done events) for a
 * few (output, content) parts. The stream is fed in random pieces. Checks: feeding never fails;
 * the output is well-framed SSE (no event left without its blank line); every event astgate
 * writes is valid JSON whose event line names its type; sequence_number runs +1 from event to
 * event until a [DONE]; a block error is the last event and ends the stream; in well-formed mode
 * without a block, each part's deltas add up to the engine's rewrite of its text and every event
 * that repeats the text holds exactly that, and each call's deltas (when it streams), its .done,
 * its output_item.done and response.completed all hold ag_api_tool_rewrite's result for its
 * input (the non-streamed rewrite); a call that blocks ends the stream with the error.
 * FUZZ_DEBUG=1 prints the generated stream and the output of each input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "json.h"
#include "jsonscan.h"
#include "rules.h"
#include "sse.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_responses: check failed: %s (line %d)\n", #expr, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u << 10)
#define MAX_TEXTS 3
#define BIG ((size_t)1 << 28)

static ag_rules_t *rules;
static ag_engine_t *engine;
static ag_tools_t tools;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("ASTGATE_FUZZ_RULES");
    if (path == NULL)
        path = "rules/mastra.yaml";
    ag_buf_t text;
    ag_buf_init(&text, 1u << 24);
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    const char *block = "\n---\nid: no-eval\nlanguage: TypeScript\nmessage: no eval\n"
                        "rule:\n  pattern: eval($X)\nmetadata:\n  astgate:\n    action: block\n";
    if (ag_read_file(path, &text) != AG_OK || ag_buf_append(&text, block, strlen(block)) != AG_OK ||
        ag_rules_load_mem(ag_buf_str(&text), path, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        fprintf(stderr, "fuzz_responses: run from the repository root or set ASTGATE_FUZZ_RULES\n");
        abort();
    }
    ag_buf_dispose(&text);
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.bare = true;
    engine = ag_engine_new(rules, &opts);
    ag_tools_presets(&tools);
    return 0;
}

static uint64_t rng_state;
static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd_t;

static uint8_t rd_byte(rd_t *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static void put(ag_buf_t *b, const char *s)
{
    CHECK(ag_buf_append(b, s, strlen(s)) == AG_OK);
}

static void putf(ag_buf_t *b, const char *fmt, unsigned long long v)
{
    CHECK(ag_buf_appendf(b, fmt, v) == AG_OK);
}

static void put_json(ag_buf_t *b, ag_str_t s)
{
    CHECK(ag_json_append_str(b, s) == AG_OK);
}

/* raw bytes as the text a JSON string can carry (invalid UTF-8 becomes U+FFFD) */
static void sanitize(ag_str_t raw, ag_buf_t *out)
{
    ag_buf_t j;
    ag_buf_init(&j, BIG);
    put_json(&j, raw);
    ag_buf_reset(out);
    CHECK(ag_jscan_decode(ag_buf_str(&j), 0, j.len, out, NULL, 0, NULL) == AG_OK);
    ag_buf_dispose(&j);
}

typedef struct gen {
    ag_buf_t sse, j;
    uint64_t seq;
    const char *eol;
    bool names;
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
    putf(&g->j, ",\"sequence_number\":%llu}", (unsigned long long)g->seq++);
    if (g->names) {
        put(&g->sse, "event: ");
        put(&g->sse, type);
        put(&g->sse, g->eol);
    }
    put(&g->sse, "data: ");
    CHECK(ag_buf_append(&g->sse, g->j.ptr, g->j.len) == AG_OK);
    put(&g->sse, g->eol);
    put(&g->sse, g->eol);
}

static void oc(gen_t *g, unsigned o, unsigned c)
{
    putf(&g->j, ",\"item_id\":\"msg_%llu\"", o);
    putf(&g->j, ",\"output_index\":%llu", o);
    putf(&g->j, ",\"content_index\":%llu", c);
}

static void parts_json(gen_t *g, const ag_str_t *texts, int n)
{
    put(&g->j, "[");
    for (int i = 0; i < n; i++) {
        put(&g->j, i ? ",{" : "{");
        put(&g->j, "\"type\":\"output_text\",\"annotations\":[],\"text\":");
        put_json(&g->j, texts[i]);
        put(&g->j, "}");
    }
    put(&g->j, "]");
}

static void message_json(gen_t *g, unsigned o, const ag_str_t *texts, int n)
{
    putf(&g->j, "{\"id\":\"msg_%llu\",\"type\":\"message\",\"role\":\"assistant\",\"content\":", o);
    parts_json(g, texts, n);
    put(&g->j, "}");
}

static size_t cut_after(ag_str_t t, size_t pos)
{
    size_t n = pos + 1 + rng() % 9;
    if (n > t.len)
        n = t.len;
    while (n < t.len && ((unsigned char)t.ptr[n] & 0xc0) == 0x80)
        n++;
    return n;
}

/* ---- tool calls ---- */

enum { TC_WRITE, TC_CUSTOM, TC_CREATE, TC_UPDATE, TC_N };

static const char *const TC_ID[TC_N] = {"fc", "ctc", "apc", "apc"};
static const char *const TC_DELTA[TC_N] = {"response.function_call_arguments.delta",
                                           "response.custom_tool_call_input.delta",
                                           "response.apply_patch_call_operation_diff.delta",
                                           "response.apply_patch_call_operation_diff.delta"};
static const char *const TC_DONE[TC_N] = {"response.function_call_arguments.done",
                                          "response.custom_tool_call_input.done",
                                          "response.apply_patch_call_operation_diff.done",
                                          "response.apply_patch_call_operation_diff.done"};
static const char *const TC_FIELD[TC_N] = {"arguments", "input", "diff", "diff"};

/* One tool call of a well-formed stream. */
typedef struct tcall {
    int kind;       /* TC_* */
    unsigned o;     /* output index */
    bool streamed;  /* its input comes in delta events (else only in the item's copies) */
    ag_buf_t input; /* as the upstream sends it */
    ag_buf_t want;  /* what every copy the client gets must hold */
} tcall_t;

static unsigned str_style; /* how the generator escapes tool strings (AG_JSCAN_ESC_*) */

static void put_str(ag_buf_t *b, ag_str_t s)
{
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
    CHECK(ag_jscan_escape(b, s, str_style) == AG_OK);
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
}

/* A tool item (id: its number in the item ids) holding input. */
static void tool_item_json(ag_buf_t *j, int kind, unsigned id, ag_str_t input)
{
    switch (kind) {
    case TC_WRITE:
        CHECK(ag_buf_appendf(j,
                             "{\"id\":\"fc_%u\",\"type\":\"function_call\",\"status\":"
                             "\"completed\",\"arguments\":",
                             id) == AG_OK);
        put_str(j, input);
        CHECK(ag_buf_appendf(j, ",\"call_id\":\"call_%u\",\"name\":\"Write\"}", id) == AG_OK);
        break;
    case TC_CUSTOM:
        CHECK(ag_buf_appendf(j,
                             "{\"id\":\"ctc_%u\",\"type\":\"custom_tool_call\",\"call_id\":"
                             "\"call_%u\",\"name\":\"apply_patch\",\"input\":",
                             id, id) == AG_OK);
        put_str(j, input);
        put(j, "}");
        break;
    default:
        CHECK(ag_buf_appendf(j,
                             "{\"id\":\"apc_%u\",\"type\":\"apply_patch_call\",\"status\":"
                             "\"completed\",\"call_id\":\"call_%u\",\"operation\":{\"type\":"
                             "\"%s\",\"path\":\"src/a.ts\",\"diff\":",
                             id, id, kind == TC_CREATE ? "create_file" : "update_file") == AG_OK);
        put_str(j, input);
        put(j, "}}");
        break;
    }
}

static void tool_event(gen_t *g, const char *type, int kind, unsigned id, unsigned o)
{
    ev_begin(g, type);
    CHECK(ag_buf_appendf(&g->j, ",\"item_id\":\"%s_%u\",\"output_index\":%u", TC_ID[kind], id, o) ==
          AG_OK);
}

static void call_added(gen_t *g, const tcall_t *c, unsigned k)
{
    ev_begin(g, "response.output_item.added");
    putf(&g->j, ",\"output_index\":%llu,\"item\":", c->o);
    tool_item_json(&g->j, c->kind, k, ag_str("", 0));
    ev_end(g, "response.output_item.added");
}

/* The next delta of call c from *pos (all of them when all); false when there is none. */
static bool call_delta(gen_t *g, const tcall_t *c, unsigned k, size_t *pos, bool all)
{
    ag_str_t in = ag_buf_str(&c->input);
    if (!c->streamed || *pos >= in.len)
        return false;
    do {
        size_t next = cut_after(in, *pos);
        tool_event(g, TC_DELTA[c->kind], c->kind, k, c->o);
        put(&g->j, ",\"delta\":");
        put_str(&g->j, ag_str(in.ptr + *pos, next - *pos));
        ev_end(g, TC_DELTA[c->kind]);
        *pos = next;
    } while (all && *pos < in.len);
    return true;
}

static void call_done(gen_t *g, const tcall_t *c, unsigned k, unsigned flags)
{
    if (flags & 8)
        return;
    if (c->streamed) {
        tool_event(g, TC_DONE[c->kind], c->kind, k, c->o);
        CHECK(ag_buf_appendf(&g->j, ",\"%s\":", TC_FIELD[c->kind]) == AG_OK);
        put_str(&g->j, ag_buf_str(&c->input));
        ev_end(g, TC_DONE[c->kind]);
    }
    ev_begin(g, "response.output_item.done");
    putf(&g->j, ",\"output_index\":%llu,\"item\":", c->o);
    tool_item_json(&g->j, c->kind, k, ag_buf_str(&c->input));
    ev_end(g, "response.output_item.done");
}

/* The calls' events, one after the other or interleaved. */
static void gen_calls(gen_t *g, const tcall_t *calls, int ncalls, unsigned flags)
{
    if (rng() % 2) {
        size_t pos[MAX_TEXTS] = {0};
        for (int k = 0; k < ncalls; k++)
            call_added(g, &calls[k], (unsigned)k);
        for (bool more = true; more;) {
            more = false;
            for (int k = 0; k < ncalls; k++)
                more |= call_delta(g, &calls[k], (unsigned)k, &pos[k], false);
        }
        for (int k = 0; k < ncalls; k++)
            call_done(g, &calls[k], (unsigned)k, flags);
        return;
    }
    for (int k = 0; k < ncalls; k++) {
        size_t pos = 0;
        call_added(g, &calls[k], (unsigned)k);
        call_delta(g, &calls[k], (unsigned)k, &pos, true);
        call_done(g, &calls[k], (unsigned)k, flags);
    }
}

/* Call k's input from text (its kind drawn from the seed), and what astgate must make of it:
 * ag_api_tool_rewrite's result, or the input as it is. Returns whether a block rule matched. */
static bool call_make(tcall_t *c, ag_str_t text, unsigned k)
{
    c->kind = (int)(rng() % TC_N);
    c->streamed = c->kind < TC_CREATE || rng() % 2;
    ag_buf_reset(&c->input);
    if (c->kind == TC_WRITE && rng() % 4) {
        unsigned inner = str_style;
        str_style = rng() % 2 ? AG_JSCAN_ESC_ASCII : 0;
        put(&c->input, rng() % 3 ? "{\"file_path\":\"src/a.ts\",\"content\":"
                                 : "{\"file_path\": \"notes.md\", \"content\": ");
        put_str(&c->input, text);
        put(&c->input, "}");
        str_style = inner;
    } else {
        CHECK(ag_buf_append(&c->input, text.ptr, text.len) == AG_OK);
    }
    ag_api_env_t env;
    memset(&env, 0, sizeof(env));
    env.engine = engine;
    env.tools = &tools;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = c->kind == TC_WRITE ? AG_STR_LIT("Write") : AG_STR_LIT("apply_patch");
    call.file = AG_STR_LIT("src/a.ts");
    call.input = c->kind == TC_WRITE    ? AG_TOOL_IN_ARGS
                 : c->kind == TC_CUSTOM ? AG_TOOL_IN_TEXT
                 : c->kind == TC_CREATE ? AG_TOOL_IN_PATCH_CREATE
                                        : AG_TOOL_IN_PATCH_UPDATE;
    bool changed = false;
    ag_buf_reset(&c->want);
    if (ag_api_tool_rewrite(&env, &st, (int)k, &call, ag_buf_str(&c->input), &c->want, &changed) !=
        AG_OK) {
        ag_buf_reset(&c->want);
        CHECK(ag_buf_append(&c->want, c->input.ptr, c->input.len) == AG_OK);
    }
    return st.blocked_rule != NULL;
}

/* A full response: parts k = 0..n-1 at (o[k], c[k]), then the tool calls. */
static void gen_well_formed(gen_t *g, const ag_str_t *texts, int n, unsigned flags, unsigned *o,
                            unsigned *c, tcall_t *calls, int ncalls)
{
    bool one_msg = flags & 32;
    unsigned base = flags & 16 ? 1 : 0;
    ev_begin(g, "response.created");
    put(&g->j, ",\"response\":{\"id\":\"r\",\"model\":\"gpt-x\",\"output\":[]}");
    ev_end(g, "response.created");
    if (base) {
        ev_begin(g, "response.output_item.added");
        put(&g->j, ",\"output_index\":0,\"item\":{\"id\":\"rs\",\"type\":\"reasoning\"}");
        ev_end(g, "response.output_item.added");
        ev_begin(g, "response.reasoning_summary_text.delta");
        put(&g->j, ",\"output_index\":0,\"delta\":\"```ts\\nnew Agent({model:'gpt-4o'})\"");
        ev_end(g, "response.reasoning_summary_text.delta");
    }
    for (int k = 0; k < n; k++) {
        o[k] = one_msg ? base : base + (unsigned)k;
        c[k] = one_msg ? (unsigned)k : 0;
        if (k == 0 || !one_msg) {
            ev_begin(g, "response.output_item.added");
            putf(&g->j, ",\"output_index\":%llu,\"item\":", o[k]);
            message_json(g, o[k], NULL, 0);
            ev_end(g, "response.output_item.added");
        }
        ev_begin(g, "response.content_part.added");
        oc(g, o[k], c[k]);
        put(&g->j, ",\"part\":{\"type\":\"output_text\",\"text\":\"\"}");
        ev_end(g, "response.content_part.added");
        for (size_t pos = 0; pos < texts[k].len;) {
            size_t next = cut_after(texts[k], pos);
            ev_begin(g, "response.output_text.delta");
            oc(g, o[k], c[k]);
            put(&g->j, ",\"delta\":");
            put_json(&g->j, ag_str(texts[k].ptr + pos, next - pos));
            put(&g->j, ",\"logprobs\":[]");
            ev_end(g, "response.output_text.delta");
            pos = next;
        }
        if (!(flags & 8)) {
            ev_begin(g, "response.output_text.done");
            oc(g, o[k], c[k]);
            put(&g->j, ",\"text\":");
            put_json(&g->j, texts[k]);
            ev_end(g, "response.output_text.done");
            ev_begin(g, "response.content_part.done");
            oc(g, o[k], c[k]);
            put(&g->j, ",\"part\":{\"type\":\"output_text\",\"text\":");
            put_json(&g->j, texts[k]);
            put(&g->j, "}");
            ev_end(g, "response.content_part.done");
            if (!one_msg || k == n - 1) {
                ev_begin(g, "response.output_item.done");
                putf(&g->j, ",\"output_index\":%llu,\"item\":", o[k]);
                message_json(g, o[k], one_msg ? texts : texts + k, one_msg ? n : 1);
                ev_end(g, "response.output_item.done");
            }
        }
    }
    unsigned next_o = base + (unsigned)(one_msg ? n > 0 : n);
    for (int k = 0; k < ncalls; k++)
        calls[k].o = next_o + (unsigned)k;
    gen_calls(g, calls, ncalls, flags);
    ev_begin(g, "response.completed");
    put(&g->j, ",\"response\":{\"id\":\"r\",\"model\":\"gpt-x\",\"output\":[");
    if (base)
        put(&g->j, "{\"id\":\"rs\",\"type\":\"reasoning\"}");
    if (one_msg && n > 0) {
        put(&g->j, base ? "," : "");
        message_json(g, base, texts, n);
    } else {
        for (int k = 0; k < n; k++) {
            if (k || base)
                put(&g->j, ",");
            message_json(g, o[k], texts + k, 1);
        }
    }
    for (int k = 0; k < ncalls; k++) {
        if (k || base || n > 0)
            put(&g->j, ",");
        tool_item_json(&g->j, calls[k].kind, (unsigned)k, ag_buf_str(&calls[k].input));
    }
    put(&g->j, "]}");
    ev_end(g, "response.completed");
}

static void rd_text(rd_t *r, ag_buf_t *out)
{
    size_t len = rd_byte(r) % 48;
    if (len > r->n)
        len = r->n;
    sanitize(ag_str((const char *)r->p, len), out);
    r->p += len;
    r->n -= len;
}

/* Random events from the script. */
static void gen_script(gen_t *g, rd_t *r)
{
    ag_buf_t t[2];
    ag_buf_init(&t[0], BIG);
    ag_buf_init(&t[1], BIG);
    for (int steps = 0; r->n > 0 && steps < 400; steps++) {
        uint8_t op = rd_byte(r);
        uint8_t b = rd_byte(r);
        unsigned o = b % 3, c = (b >> 2) % 2;
        int kind = (b >> 3) % TC_N;
        ag_str_t ts[2];
        str_style = (b >> 5) % 2 ? AG_JSCAN_ESC_ASCII : 0;
        switch (op % 17) {
        case 0:
        case 1:
        case 2:
            rd_text(r, &t[0]);
            ev_begin(g, "response.output_text.delta");
            oc(g, o, c);
            put(&g->j, ",\"delta\":");
            put_json(&g->j, ag_buf_str(&t[0]));
            ev_end(g, "response.output_text.delta");
            break;
        case 3:
            rd_text(r, &t[0]);
            ev_begin(g, "response.output_text.done");
            oc(g, o, c);
            put(&g->j, ",\"text\":");
            put_json(&g->j, ag_buf_str(&t[0]));
            ev_end(g, "response.output_text.done");
            break;
        case 4:
            rd_text(r, &t[0]);
            ev_begin(g, "response.content_part.done");
            oc(g, o, c);
            put(&g->j, ",\"part\":{\"type\":\"output_text\",\"text\":");
            put_json(&g->j, ag_buf_str(&t[0]));
            put(&g->j, "}");
            ev_end(g, "response.content_part.done");
            break;
        case 5:
            rd_text(r, &t[0]);
            rd_text(r, &t[1]);
            ts[0] = ag_buf_str(&t[0]);
            ts[1] = ag_buf_str(&t[1]);
            ev_begin(g, "response.output_item.done");
            putf(&g->j, ",\"output_index\":%llu,\"item\":", o);
            message_json(g, o, ts, 1 + (b >> 3) % 2);
            ev_end(g, "response.output_item.done");
            break;
        case 6:
            rd_text(r, &t[0]);
            rd_text(r, &t[1]);
            ts[0] = ag_buf_str(&t[0]);
            ts[1] = ag_buf_str(&t[1]);
            ev_begin(g, (b >> 3) % 2 ? "response.incomplete" : "response.completed");
            put(&g->j, ",\"response\":{\"model\":\"m\",\"output\":[");
            message_json(g, 0, ts, 2);
            put(&g->j, ",");
            message_json(g, 1, ts + 1, 1);
            put(&g->j, "],\"output_text\":");
            CHECK(ag_buf_append(&t[0], t[1].ptr, t[1].len) == AG_OK);
            put_json(&g->j, ag_buf_str(&t[0]));
            put(&g->j, "}");
            ev_end(g, (b >> 3) % 2 ? "response.incomplete" : "response.completed");
            break;
        case 7:
            rd_text(r, &t[0]);
            ev_begin(g, "response.function_call_arguments.delta");
            putf(&g->j, ",\"output_index\":%llu,\"delta\":", o);
            put_json(&g->j, ag_buf_str(&t[0]));
            ev_end(g, "response.function_call_arguments.delta");
            break;
        case 8:
            put(&g->sse, "data: x not json");
            put(&g->sse, g->eol);
            put(&g->sse, g->eol);
            break;
        case 9:
            put(&g->sse, ": keepalive");
            put(&g->sse, g->eol);
            put(&g->sse, g->eol);
            break;
        case 10:
            ev_begin(g, "error");
            put(&g->j, ",\"code\":\"server_error\",\"message\":\"m\",\"param\":null");
            ev_end(g, "error");
            break;
        case 12: /* a tool item starts */
            ev_begin(g, "response.output_item.added");
            putf(&g->j, ",\"output_index\":%llu,\"item\":", o);
            tool_item_json(&g->j, kind, o, ag_str("", 0));
            ev_end(g, "response.output_item.added");
            break;
        case 13: /* a piece of its input */
            rd_text(r, &t[0]);
            tool_event(g, TC_DELTA[kind], kind, o, o);
            put(&g->j, ",\"delta\":");
            put_str(&g->j, ag_buf_str(&t[0]));
            ev_end(g, TC_DELTA[kind]);
            break;
        case 14: /* its .done */
            rd_text(r, &t[0]);
            tool_event(g, TC_DONE[kind], kind, o, o);
            CHECK(ag_buf_appendf(&g->j, ",\"%s\":", TC_FIELD[kind]) == AG_OK);
            put_str(&g->j, ag_buf_str(&t[0]));
            ev_end(g, TC_DONE[kind]);
            break;
        case 15: /* the item, done */
            rd_text(r, &t[0]);
            ev_begin(g, "response.output_item.done");
            putf(&g->j, ",\"output_index\":%llu,\"item\":", o);
            tool_item_json(&g->j, kind, o, ag_buf_str(&t[0]));
            ev_end(g, "response.output_item.done");
            break;
        case 16: /* a response with a message and two tool items */
            rd_text(r, &t[0]);
            rd_text(r, &t[1]);
            ts[0] = ag_buf_str(&t[0]);
            ev_begin(g, (b >> 7) ? "response.incomplete" : "response.completed");
            put(&g->j, ",\"response\":{\"model\":\"m\",\"output\":[");
            message_json(g, 0, ts, 1);
            put(&g->j, ",");
            tool_item_json(&g->j, kind, 1, ag_buf_str(&t[1]));
            put(&g->j, ",");
            tool_item_json(&g->j, (kind + 1) % TC_N, 2, ag_buf_str(&t[0]));
            put(&g->j, "]}");
            ev_end(g, (b >> 7) ? "response.incomplete" : "response.completed");
            break;
        default:
            if (b % 8 == 0) {
                put(&g->sse, "data: [DONE]");
                put(&g->sse, g->eol);
                put(&g->sse, g->eol);
            } else {
                ev_begin(g, "response.in_progress");
                ev_end(g, "response.in_progress");
            }
            break;
        }
    }
    ag_buf_dispose(&t[0]);
    ag_buf_dispose(&t[1]);
}

/* ---- checking the output ---- */

typedef struct seen {
    ag_buf_t got[MAX_TEXTS];  /* well-formed mode: deltas per part */
    ag_buf_t gotc[MAX_TEXTS]; /* ... and per tool call */
    const tcall_t *calls;     /* [ncalls] */
    int ncalls;
    ag_jscan_path_t tpaths[9]; /* R_* */
    unsigned o[MAX_TEXTS], c[MAX_TEXTS];
    const ag_buf_t *want; /* [MAX_TEXTS] */
    int n;
    bool well_formed, done, blocked, have_seq;
    uint64_t last_seq;
    ag_jscan_path_t paths[8];
    ag_jscan_match_t m[512];
    size_t nm; /* matches in m of the current event */
    ag_buf_t s;
} seen_t;

enum { Q_TYPE, Q_SEQ, Q_OUT, Q_CONT, Q_DELTA, Q_TEXT, Q_ITEM, Q_RESP, Q_N };
/* where a tool call's input repeats: a .done, output_item.done, response.completed */
enum { R_ARGS, R_INPUT, R_DIFF, R_IARGS, R_IINPUT, R_IDIFF, R_RARGS, R_RINPUT, R_RDIFF, R_N };

static int call_of(const seen_t *sn, uint64_t o)
{
    for (int k = 0; k < sn->ncalls; k++)
        if (sn->calls[k].o == o)
            return k;
    return -1;
}

/* A copy of call k's input at m holds what it must, and so do the deltas sent before it. */
static void check_call(seen_t *sn, ag_str_t json, const ag_jscan_match_t *m, int k)
{
    CHECK(k >= 0);
    ag_buf_reset(&sn->s);
    CHECK(ag_jscan_decode(json, m->off, m->len, &sn->s, NULL, 0, NULL) == AG_OK);
    CHECK(ag_str_eq(ag_buf_str(&sn->s), ag_buf_str(&sn->calls[k].want)));
    if (sn->calls[k].streamed)
        CHECK(ag_str_eq(ag_buf_str(&sn->gotc[k]), ag_buf_str(&sn->calls[k].want)));
}

/* The tool calls' events of a well-formed stream. */
static void check_tools(seen_t *sn, ag_str_t d, const ag_jscan_match_t *type, uint64_t o)
{
    bool is_delta = false, is_done = false;
    for (int k = 0; k < TC_N; k++) {
        is_delta |= ag_jscan_str_eq(d, type, ag_cstr(TC_DELTA[k]));
        is_done |= ag_jscan_str_eq(d, type, ag_cstr(TC_DONE[k]));
    }
    bool is_item = ag_jscan_str_eq(d, type, AG_STR_LIT("response.output_item.done"));
    bool is_resp = ag_jscan_str_eq(d, type, AG_STR_LIT("response.completed"));
    if (is_delta) {
        int k = call_of(sn, o);
        CHECK(k >= 0 && sn->calls[k].streamed);
        for (size_t i = 0; i < sn->nm; i++)
            if (sn->m[i].path == Q_DELTA) {
                ag_buf_reset(&sn->s);
                CHECK(ag_jscan_decode(d, sn->m[i].off, sn->m[i].len, &sn->s, NULL, 0, NULL) ==
                      AG_OK);
                CHECK(ag_buf_append(&sn->gotc[k], sn->s.ptr, sn->s.len) == AG_OK);
            }
        return;
    }
    if (!is_done && !is_item && !is_resp)
        return;
    ag_jscan_match_t tm[64];
    size_t n = 0;
    CHECK(ag_jscan_find(d, sn->tpaths, R_N, tm, 64, &n, NULL) == AG_OK);
    for (size_t i = 0; i < n; i++) {
        int p = tm[i].path;
        if (is_done && p <= R_DIFF)
            check_call(sn, d, &tm[i], call_of(sn, o));
        else if (is_item && p >= R_IARGS && p <= R_IDIFF)
            check_call(sn, d, &tm[i], call_of(sn, o));
        else if (is_resp && p >= R_RARGS)
            check_call(sn, d, &tm[i], call_of(sn, tm[i].idx[0]));
    }
}

static int part_of(const seen_t *sn, uint64_t o, uint64_t c)
{
    for (int k = 0; k < sn->n; k++)
        if (sn->o[k] == o && sn->c[k] == c)
            return k;
    return -1;
}

static void check_text(seen_t *sn, ag_str_t json, const ag_jscan_match_t *m, int k)
{
    CHECK(k >= 0);
    ag_buf_reset(&sn->s);
    CHECK(ag_jscan_decode(json, m->off, m->len, &sn->s, NULL, 0, NULL) == AG_OK);
    CHECK(ag_str_eq(ag_buf_str(&sn->s), ag_buf_str(&sn->want[k])));
    CHECK(ag_str_eq(ag_buf_str(&sn->got[k]), ag_buf_str(&sn->want[k])));
}

static int on_out(void *ud, const ag_sse_item_t *it)
{
    seen_t *sn = ud;
    if (it->kind != AG_SSE_EVENT)
        return AG_OK;
    CHECK(!it->eof);     /* every event written whole */
    CHECK(!sn->blocked); /* nothing after the block error */
    if (sn->done)
        return AG_OK;
    ag_str_t d = it->data;
    if (ag_str_eqc(d, "[DONE]")) {
        sn->done = true;
        return AG_OK;
    }
    if (d.len && d.ptr[0] == 'x')
        return AG_OK; /* the script's non-JSON data, passed on */
    size_t n = 0;
    CHECK(ag_jscan_find(d, sn->paths, Q_N, sn->m, 512, &n, NULL) == AG_OK);
    sn->nm = n;
    const ag_jscan_match_t *type = NULL;
    uint64_t seq = 0, o = UINT64_MAX, c = UINT64_MAX;
    bool has_seq = false;
    for (size_t i = 0; i < n; i++) {
        if (sn->m[i].path == Q_TYPE)
            type = &sn->m[i];
        else if (sn->m[i].path == Q_SEQ)
            has_seq = ag_jscan_get_u64(d, &sn->m[i], &seq) == AG_OK;
        else if (sn->m[i].path == Q_OUT)
            CHECK(ag_jscan_get_u64(d, &sn->m[i], &o) == AG_OK);
        else if (sn->m[i].path == Q_CONT)
            CHECK(ag_jscan_get_u64(d, &sn->m[i], &c) == AG_OK);
    }
    CHECK(type != NULL);
    if (it->event.len)
        CHECK(ag_jscan_str_eq(d, type, it->event)); /* the event line names the type */
    CHECK(has_seq);
    if (sn->have_seq)
        CHECK(seq == sn->last_seq + 1); /* no gap, no repeat */
    sn->have_seq = true;
    sn->last_seq = seq;
    if (ag_jscan_str_eq(d, type, AG_STR_LIT("error"))) {
        ag_jscan_path_t code;
        ag_jscan_match_t cm;
        size_t cn = 0;
        CHECK(ag_jscan_path_compile(&code, AG_STR_LIT("code"), AG_JSCAN_STRING) == AG_OK);
        CHECK(ag_jscan_find(d, &code, 1, &cm, 1, &cn, NULL) == AG_OK);
        if (cn == 1 && ag_jscan_str_eq(d, &cm, AG_STR_LIT("no-eval")))
            sn->blocked = true;
        return AG_OK;
    }
    if (!sn->well_formed)
        return AG_OK;
    if (sn->ncalls)
        check_tools(sn, d, type, o);
    bool is_delta = ag_jscan_str_eq(d, type, AG_STR_LIT("response.output_text.delta"));
    bool is_done = ag_jscan_str_eq(d, type, AG_STR_LIT("response.output_text.done")) ||
                   ag_jscan_str_eq(d, type, AG_STR_LIT("response.content_part.done"));
    bool is_item = ag_jscan_str_eq(d, type, AG_STR_LIT("response.output_item.done"));
    bool is_resp = ag_jscan_str_eq(d, type, AG_STR_LIT("response.completed"));
    for (size_t i = 0; i < n; i++) {
        const ag_jscan_match_t *m = &sn->m[i];
        if (m->path == Q_DELTA && is_delta) {
            int k = part_of(sn, o, c);
            CHECK(k >= 0);
            ag_buf_reset(&sn->s);
            CHECK(ag_jscan_decode(d, m->off, m->len, &sn->s, NULL, 0, NULL) == AG_OK);
            CHECK(ag_buf_append(&sn->got[k], sn->s.ptr, sn->s.len) == AG_OK);
        } else if (m->path == Q_TEXT && is_done) {
            check_text(sn, d, m, part_of(sn, o, c));
        } else if (m->path == Q_ITEM && is_item) {
            check_text(sn, d, m, part_of(sn, o, m->idx[0]));
        } else if (m->path == Q_RESP && is_resp) {
            check_text(sn, d, m, part_of(sn, m->idx[0], m->idx[1]));
        }
    }
    return AG_OK;
}

static void seen_init(seen_t *sn)
{
    memset(sn, 0, sizeof(*sn));
    static const char *const pats[Q_N] = {"type",
                                          "sequence_number",
                                          "output_index",
                                          "content_index",
                                          "delta",
                                          "text",
                                          "item.content[*].text",
                                          "response.output[*].content[*].text"};
    for (int i = 0; i < Q_N; i++)
        CHECK(ag_jscan_path_compile(&sn->paths[i], ag_cstr(pats[i]),
                                    i == Q_SEQ || i == Q_OUT || i == Q_CONT
                                        ? AG_JSCAN_NUMBER
                                        : AG_JSCAN_ANY) == AG_OK);
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_init(&sn->got[k], BIG);
        ag_buf_init(&sn->gotc[k], BIG);
    }
    ag_buf_init(&sn->s, BIG);
    static const char *const tpats[R_N] = {
        "arguments",
        "input",
        "diff",
        "item.arguments",
        "item.input",
        "item.operation.diff",
        "response.output[*].arguments",
        "response.output[*].input",
        "response.output[*].operation.diff",
    };
    for (int i = 0; i < R_N; i++)
        CHECK(ag_jscan_path_compile(&sn->tpaths[i], ag_cstr(tpats[i]), AG_JSCAN_STRING) == AG_OK);
}

static void seen_dispose(seen_t *sn)
{
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_dispose(&sn->got[k]);
        ag_buf_dispose(&sn->gotc[k]);
    }
    ag_buf_dispose(&sn->s);
}

static void on_result(void *ud, int index, const ag_result_t *res)
{
    (void)ud;
    (void)index;
    CHECK(res->nevents > 0 || res->held_max > 0); /* events, or a streamed block that held text */
}

static void on_reply(void *ud, int index, const ag_reply_summary_t *s)
{
    int *replies = ud;
    (void)index;
    (void)s;
    (*replies)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned flags = data[0];
    uint64_t seed = (uint64_t)data[1] << 8 | data[2];
    rd_t r = {data + 3, size - 3};
    gen_t g;
    ag_buf_init(&g.sse, BIG);
    ag_buf_init(&g.j, BIG);
    g.seq = 0;
    g.eol = flags & 2 ? "\r\n" : "\n";
    g.names = !(flags & 4);
    rng_state = seed;
    str_style = 0;

    bool well_formed = flags & 1;
    bool tool_mode = well_formed && (flags & 64);
    ag_buf_t texts[MAX_TEXTS], want[MAX_TEXTS];
    ag_str_t ts[MAX_TEXTS];
    unsigned o[MAX_TEXTS] = {0}, c[MAX_TEXTS] = {0};
    int ntexts = 0;
    tcall_t calls[MAX_TEXTS];
    int ncalls = 0, nparts = 0;
    bool tool_block = false;
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_init(&texts[k], BIG);
        ag_buf_init(&want[k], BIG);
        ag_buf_init(&calls[k].input, BIG);
        ag_buf_init(&calls[k].want, BIG);
    }
    if (well_formed) {
        while (ntexts < MAX_TEXTS && r.n > 0) {
            const uint8_t *z = memchr(r.p, 0, r.n);
            size_t len = z ? (size_t)(z - r.p) : r.n;
            sanitize(ag_str((const char *)r.p, len), &texts[ntexts]);
            ts[ntexts] = ag_buf_str(&texts[ntexts]);
            ag_result_t res;
            CHECK(ag_engine_rewrite(engine, ts[ntexts], &want[ntexts], &res) == AG_OK);
            ntexts++;
            r.p += len + (z != NULL);
            r.n -= len + (z != NULL);
        }
        if (ntexts == 0) {
            ts[0] = ag_buf_str(&texts[0]);
            ntexts = 1;
        }
        nparts = ntexts;
        if (tool_mode) {
            /* every text is a call's input; the first one is also a message's text (bit 5) */
            nparts = flags & 32 ? 1 : 0;
            str_style = rng() % 3 == 0 ? AG_JSCAN_ESC_ASCII : 0;
            for (ncalls = 0; ncalls < ntexts; ncalls++)
                tool_block |= call_make(&calls[ncalls], ts[ncalls], (unsigned)ncalls);
        }
        gen_well_formed(&g, ts, nparts, tool_mode ? flags & ~32u : flags, o, c, calls, ncalls);
    } else {
        gen_script(&g, &r);
    }

    int replies = 0;
    ag_api_env_t env;
    memset(&env, 0, sizeof(env));
    env.engine = engine;
    env.on_result = on_result;
    env.on_reply = on_reply;
    env.ud = &replies;
    env.tools = &tools;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    const ag_api_t *api = &ag_api_openai_responses;
    void *s = api->stream_new(&env, &st);
    ag_buf_t out;
    ag_buf_init(&out, BIG);
    bool ended = false;
    for (size_t pos = 0; pos < g.sse.len && !ended;) {
        size_t n = rng() % 3 == 0 ? 1 + rng() % 4 : 1 + rng() % 300;
        if (n > g.sse.len - pos)
            n = g.sse.len - pos;
        CHECK(api->stream_feed(s, ag_str(g.sse.ptr + pos, n), &out, &ended) == AG_OK);
        pos += n;
    }
    if (!ended)
        CHECK(api->stream_end(s, &out) == AG_OK);
    api->stream_free(s);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "IN:\n%.*s\nOUT:\n%.*s\nended %d blocked %s\n", (int)g.sse.len, g.sse.ptr,
                (int)out.len, out.ptr, ended, st.blocked_rule ? st.blocked_rule : "-");
    CHECK(!ended || st.blocked_rule != NULL); /* (a block found at the end ends it anyway) */

    seen_t sn;
    seen_init(&sn);
    sn.well_formed = well_formed && st.blocked_rule == NULL;
    sn.want = want;
    sn.n = nparts;
    sn.calls = calls;
    sn.ncalls = ncalls;
    memcpy(sn.o, o, sizeof(o));
    memcpy(sn.c, c, sizeof(c));
    ag_sse_parser_t p;
    ag_sse_init(&p, BIG);
    CHECK(ag_sse_feed(&p, ag_buf_str(&out), on_out, &sn) == AG_OK);
    CHECK(ag_sse_finish(&p, on_out, &sn) == AG_OK);
    ag_sse_dispose(&p);
    CHECK(sn.blocked == (st.blocked_rule != NULL)); /* a block ends in the error event */
    CHECK(!tool_block || st.blocked_rule != NULL);  /* a call that blocks is never let through */
    if (sn.well_formed) {
        for (int k = 0; k < nparts; k++)
            CHECK(ag_str_eq(ag_buf_str(&sn.got[k]), ag_buf_str(&want[k])));
        for (int k = 0; k < ncalls; k++)
            if (calls[k].streamed)
                CHECK(ag_str_eq(ag_buf_str(&sn.gotc[k]), ag_buf_str(&calls[k].want)));
        if (!tool_mode)
            CHECK(replies == ntexts);
    }
    seen_dispose(&sn);
    ag_buf_dispose(&out);
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_dispose(&texts[k]);
        ag_buf_dispose(&want[k]);
        ag_buf_dispose(&calls[k].input);
        ag_buf_dispose(&calls[k].want);
    }
    ag_buf_dispose(&g.sse);
    ag_buf_dispose(&g.j);
    return 0;
}

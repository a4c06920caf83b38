/* libFuzzer target for the Anthropic Messages adapter's stream (run from the repository root, or
 * set ASTGATE_FUZZ_RULES; a block rule for eval($X) is added to the rules). The input drives a
 * generator of Messages event streams. Byte 0: bit 0 well-formed mode, bit 1 CRLF line ends,
 * bit 2 JSON with spaces (", ", ": "), bit 3 a thinking block first, bit 4 a tool_use block
 * between text blocks, bit 5 pings, bit 6 text in content_block_start, bit 7 code in tool calls;
 * bytes 1-2: the seed of the delta cuts and of the feed splits. Well-formed mode: the rest is up
 * to 3 texts separated by NUL bytes, one text block each; with bit 7, each text is also the code
 * of a tool call after the text blocks (Write, Edit, MultiEdit, the text editor's create, or a tool
 * astgate does not know; a .ts, .tsx, .md or .txt file; \u escapes or raw UTF-8; sometimes cut
 * short, so not JSON), whose partial_json is cut at random points (inside escapes too) and whose
 * deltas interleave with the other calls'. Otherwise the rest is a script of random events
 * (starts of text and tool_use blocks of known and unknown tools, deltas of every kind, stops,
 * message events, errors, pings, comments, data that is not JSON, events without an event line).
 * The stream is fed in random pieces. Checks: feeding never fails; the output is well-framed SSE
 * (no event left without its blank line); every event that came with an event line still has it,
 * naming the data's type, and every event astgate adds has one; the data of each event is valid
 * JSON; a block error is the last event; in well-formed mode without a block, each text block
 * (start text and text_deltas) adds up to the engine's rewrite of its text, all of it before the
 * block's content_block_stop, one reply is reported per text block, and each tool call's joined
 * partial_json is, before its stop, what ag_toolcode_rewrite makes of its input (the input itself
 * when it passes through). With bit 7 the same calls also go through the non-streamed path: the
 * body comes back with exactly the tool_use inputs replaced by those rewrites. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "toolcode.h"
#include "json.h"
#include "jsonscan.h"
#include "rules.h"
#include "sse.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_anthropic: check failed: %s (line %d)\n", #expr, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u << 10)
#define MAX_TEXTS 3
#define MAX_CALLS MAX_TEXTS
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
        fprintf(stderr, "fuzz_anthropic: run from the repository root or set ASTGATE_FUZZ_RULES\n");
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
    const char *eol;
    bool spaces;
} gen_t;

/* JSON text written compactly; with spaces, ':' and ',' outside strings get a space */
static void js(gen_t *g, const char *s)
{
    bool in = false;
    for (const char *p = s; *p; p++) {
        CHECK(ag_buf_appendc(&g->j, *p) == AG_OK);
        if (*p == '\\' && in && p[1]) {
            CHECK(ag_buf_appendc(&g->j, *++p) == AG_OK);
            continue;
        }
        if (*p == '"')
            in = !in;
        else if (g->spaces && !in && (*p == ':' || *p == ','))
            CHECK(ag_buf_appendc(&g->j, ' ') == AG_OK);
    }
}

static void jsi(gen_t *g, const char *fmt, unsigned v)
{
    char buf[256];
    snprintf(buf, sizeof(buf), fmt, v);
    js(g, buf);
}

/* Writes the event in g->j; name NULL: no event line. */
static void ev_out(gen_t *g, const char *name)
{
    if (name) {
        put(&g->sse, "event: ");
        put(&g->sse, name);
        put(&g->sse, g->eol);
    }
    put(&g->sse, "data: ");
    CHECK(ag_buf_append(&g->sse, g->j.ptr, g->j.len) == AG_OK);
    put(&g->sse, g->eol);
    put(&g->sse, g->eol);
}

static void simple(gen_t *g, const char *name, const char *json)
{
    ag_buf_reset(&g->j);
    js(g, json);
    ev_out(g, name);
}

static void block_start(gen_t *g, unsigned index, const char *kind, ag_str_t text)
{
    ag_buf_reset(&g->j);
    jsi(g, "{\"type\":\"content_block_start\",\"index\":%u,\"content_block\":", index);
    if (strcmp(kind, "text") == 0) {
        js(g, "{\"type\":\"text\",\"text\":");
        put_json(&g->j, text);
        js(g, "}}");
    } else if (strncmp(kind, "tool_use", 8) == 0) {
        /* "tool_use" (an unknown tool) or "tool_use:NAME" */
        js(g, "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":");
        put_json(&g->j, ag_cstr(kind[8] == ':' ? kind + 9 : "write"));
        js(g, ",\"input\":{}}}");
    } else {
        js(g, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
    }
    ev_out(g, "content_block_start");
}

static void block_delta(gen_t *g, unsigned index, const char *kind, const char *field,
                        ag_str_t text, bool named)
{
    ag_buf_reset(&g->j);
    jsi(g, "{\"type\":\"content_block_delta\",\"index\":%u,\"delta\":{\"type\":\"", index);
    js(g, kind);
    js(g, "\",\"");
    js(g, field);
    js(g, "\":");
    put_json(&g->j, text);
    js(g, "}}");
    ev_out(g, named ? "content_block_delta" : NULL);
}

static void block_stop(gen_t *g, unsigned index)
{
    ag_buf_reset(&g->j);
    jsi(g, "{\"type\":\"content_block_stop\",\"index\":%u}", index);
    ev_out(g, "content_block_stop");
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

typedef struct fcall {
    char name[40];
    ag_buf_t json;  /* the input's JSON text as the model wrote it (maybe cut short) */
    ag_buf_t want;  /* what the client must get: ag_toolcode_rewrite's, or json */
    bool valid;     /* json is JSON */
    unsigned index; /* the block index */
} fcall_t;

static void put_str(ag_buf_t *b, ag_str_t text, unsigned style)
{
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
    CHECK(ag_jscan_escape(b, text, style) == AG_OK);
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
}

/* A call whose code is text: its JSON input, and what astgate must make of it. */
static void make_call(fcall_t *c, ag_str_t text)
{
    static const char *const exts[] = {"src/a.ts", "src/b.tsx", "notes.md", "notes.txt"};
    const char *file = exts[rng() % 4];
    unsigned style = rng() % 2 ? AG_JSCAN_ESC_ASCII : 0;
    ag_buf_t *j = &c->json;
    switch (rng() % 5) {
    case 0:
        snprintf(c->name, sizeof(c->name), "Write");
        put(j, "{\"file_path\":");
        put_str(j, ag_cstr(file), style);
        put(j, ",\"content\":");
        put_str(j, text, style);
        put(j, "}");
        break;
    case 1:
        snprintf(c->name, sizeof(c->name), "Edit");
        put(j, "{\"file_path\": ");
        put_str(j, ag_cstr(file), style);
        put(j, ", \"old_string\": \"x\", \"new_string\": ");
        put_str(j, text, style);
        put(j, ", \"replace_all\": false}");
        break;
    case 2:
        snprintf(c->name, sizeof(c->name), "MultiEdit");
        put(j, "{\"file_path\":");
        put_str(j, ag_cstr(file), style);
        put(j, ",\"edits\":[{\"old_string\":\"a\",\"new_string\":");
        put_str(j, text, style);
        put(j, "},{\"old_string\":\"b\",\"new_string\":\"\\u00e9\\n\"}]}");
        break;
    case 3:
        snprintf(c->name, sizeof(c->name), "str_replace_based_edit_tool");
        put(j, "{\"command\":\"create\",\"path\":");
        put_str(j, ag_cstr(file), style);
        put(j, ",\"file_text\":");
        put_str(j, text, style);
        put(j, "}");
        break;
    default:
        snprintf(c->name, sizeof(c->name), "write_file"); /* not a tool astgate knows */
        put(j, "{\"path\":");
        put_str(j, ag_cstr(file), style);
        put(j, ",\"content\":");
        put_str(j, text, style);
        put(j, "}");
        break;
    }
    if (rng() % 8 == 0) { /* cut short (max_tokens, fine-grained streaming) */
        size_t n = rng() % j->len;
        while (n > 0 && ((unsigned char)j->ptr[n] & 0xc0) == 0x80)
            n--;
        j->len = n;
    }
    size_t nm = 0;
    c->valid = ag_jscan_find(ag_buf_str(j), NULL, 0, NULL, 0, &nm, NULL) == AG_OK;
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(c->name);
    call.id = AG_STR_LIT("toolu_1");
    call.input = AG_TOOL_IN_ARGS;
    bool changed = false;
    int rc =
        ag_toolcode_rewrite(engine, &tools, &call, ag_buf_str(j), &c->want, &changed, NULL, NULL);
    CHECK(rc == AG_OK || rc == AG_ENOENT || rc == AG_EINVAL);
    CHECK(rc != AG_EINVAL || !c->valid);
    if (rc != AG_OK) {
        ag_buf_reset(&c->want);
        CHECK(ag_buf_append(&c->want, j->ptr, j->len) == AG_OK);
    }
}

/* The end of the next piece of a JSON text from pos: 0 to 11 bytes (anywhere, inside escapes
 * too), never inside a UTF-8 character (a partial_json is a JSON string of whole characters). */
static size_t cut_json(ag_str_t t, size_t pos)
{
    size_t n = pos + rng() % 12;
    if (n > t.len)
        n = t.len;
    while (n < t.len && ((unsigned char)t.ptr[n] & 0xc0) == 0x80)
        n++;
    return n;
}

/* The calls as tool_use blocks from index first: every start, then their deltas interleaved, each
 * call's stop right after its last delta. */
static void gen_calls(gen_t *g, fcall_t *calls, int n, unsigned first)
{
    size_t pos[MAX_CALLS] = {0};
    bool done[MAX_CALLS] = {false};
    char kind[64];
    for (int k = 0; k < n; k++) {
        calls[k].index = first + (unsigned)k;
        snprintf(kind, sizeof(kind), "tool_use:%s", calls[k].name);
        block_start(g, calls[k].index, kind, AG_STR_LIT(""));
    }
    for (int left = n; left > 0;) {
        int k = (int)(rng() % (unsigned)n);
        if (done[k])
            continue;
        ag_str_t t = ag_buf_str(&calls[k].json);
        size_t next = cut_json(t, pos[k]);
        block_delta(g, calls[k].index, "input_json_delta", "partial_json",
                    ag_str(t.ptr + pos[k], next - pos[k]), true);
        pos[k] = next;
        if (pos[k] == t.len) {
            block_stop(g, calls[k].index);
            done[k] = true;
            left--;
        }
    }
}

/* The non-streamed Message holding the calls whose input is JSON: the body, and the body the
 * client must get (each input replaced by its want). */
static void gen_body(const fcall_t *calls, int n, ag_buf_t *body, ag_buf_t *want)
{
    for (int w = 0; w < 2; w++) {
        ag_buf_t *b = w ? want : body;
        put(b,
            "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
            "\"content\":[{\"type\":\"text\",\"text\":\"Here.\"}");
        for (int k = 0; k < n; k++) {
            if (!calls[k].valid)
                continue;
            put(b, ",{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":");
            put_json(b, ag_cstr(calls[k].name));
            put(b, ",\"input\":");
            const ag_buf_t *in = w ? &calls[k].want : &calls[k].json;
            CHECK(ag_buf_append(b, in->ptr, in->len) == AG_OK);
            put(b, "}");
        }
        put(b, "],\"stop_reason\":\"tool_use\",\"stop_sequence\":null}");
    }
}

static const char *MESSAGE_START =
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
    "\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"usage\":"
    "{\"input_tokens\":1,\"output_tokens\":1}}}";

/* A full message: text k at block index idx[k]; with flag 128, ncalls calls after the texts. */
static void gen_well_formed(gen_t *g, const ag_str_t *texts, int n, unsigned flags, unsigned *idx,
                            fcall_t *calls, int ncalls)
{
    unsigned i = 0;
    simple(g, "message_start", MESSAGE_START);
    if (flags & 8) {
        block_start(g, i, "thinking", AG_STR_LIT(""));
        block_delta(g, i, "thinking_delta", "thinking", AG_STR_LIT("```ts\nnew Agent({})"), true);
        block_stop(g, i++);
    }
    for (int k = 0; k < n; k++) {
        idx[k] = i;
        size_t pos = flags & 64 ? cut_after(texts[k], 0) : 0;
        block_start(g, i, "text", ag_str(texts[k].ptr, pos));
        while (pos < texts[k].len) {
            size_t next = cut_after(texts[k], pos);
            block_delta(g, i, "text_delta", "text", ag_str(texts[k].ptr + pos, next - pos), true);
            if ((flags & 32) && rng() % 4 == 0)
                simple(g, "ping", "{\"type\":\"ping\"}");
            pos = next;
        }
        block_stop(g, i++);
        if (flags & 16) {
            block_start(g, i, "tool_use", AG_STR_LIT(""));
            block_delta(g, i, "input_json_delta", "partial_json",
                        AG_STR_LIT("{\"code\":\"```ts\\nnew Agent({model:'gpt-4o'})\"}"), true);
            block_stop(g, i++);
        }
    }
    if (ncalls)
        gen_calls(g, calls, ncalls, i);
    simple(g, "message_delta",
           "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
           "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}");
    simple(g, "message_stop", "{\"type\":\"message_stop\"}");
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

static void gen_script(gen_t *g, rd_t *r)
{
    ag_buf_t t;
    ag_buf_init(&t, BIG);
    for (int steps = 0; r->n > 0 && steps < 400; steps++) {
        uint8_t op = rd_byte(r);
        uint8_t b = rd_byte(r);
        unsigned index = b % 4;
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
            rd_text(r, &t);
            block_delta(g, index, "text_delta", "text", ag_buf_str(&t), (b >> 4) % 8 != 0);
            break;
        case 3:
            rd_text(r, &t);
            block_start(g, index,
                        (b >> 2) % 3 == 0   ? "tool_use"
                        : (b >> 2) % 3 == 1 ? ((b >> 4) % 2 ? "tool_use:Write" : "tool_use:Edit")
                                            : "text",
                        ag_buf_str(&t));
            break;
        case 4:
            block_stop(g, index);
            break;
        case 5:
            rd_text(r, &t);
            if ((b >> 2) % 4 == 3) { /* a piece of a Write's input */
                static const char *const pieces[] = {
                    "{\"file_path\":\"a.ts\",\"content\":\"",
                    "\"}",
                    "\\n",
                    "\\u00e9",
                    "\\\"",
                    "model: openai('gpt-4o')",
                    "new Agent({",
                    "eval(x)",
                    "\\ud83d\\ude80",
                };
                ag_buf_reset(&t);
                put(&t, pieces[(b >> 4) % 9]);
            }
            block_delta(g, index, (b >> 2) % 2 ? "input_json_delta" : "thinking_delta",
                        (b >> 2) % 2 ? "partial_json" : "thinking", ag_buf_str(&t), true);
            break;
        case 6:
            simple(g, "message_start", MESSAGE_START);
            break;
        case 7:
            simple(g, "message_delta",
                   "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                   "\"usage\":{\"output_tokens\":3}}");
            break;
        case 8:
            simple(g, "message_stop", "{\"type\":\"message_stop\"}");
            break;
        case 9:
            simple(g, "error",
                   "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                   "\"message\":\"Overloaded\"}}");
            break;
        case 10:
            simple(g, "ping", "{\"type\":\"ping\"}");
            break;
        default:
            put(&g->sse, b % 2 ? ": keepalive" : "data: x not json");
            put(&g->sse, g->eol);
            put(&g->sse, g->eol);
            break;
        }
    }
    ag_buf_dispose(&t);
}

/* ---- checking the output ---- */

typedef struct seen {
    ag_buf_t got[MAX_TEXTS];
    bool stopped[MAX_TEXTS];
    unsigned idx[MAX_TEXTS];
    const ag_buf_t *want;
    int n;
    const fcall_t *calls;
    int ncalls;
    ag_buf_t joined[MAX_CALLS]; /* each call's partial_json, decoded and joined */
    bool call_stopped[MAX_CALLS];
    bool well_formed, blocked, named;
    ag_jscan_path_t paths[5];
    ag_jscan_match_t m[64];
    ag_buf_t s;
} seen_t;

enum { Q_TYPE, Q_INDEX, Q_TEXT, Q_START, Q_JSON, Q_N };

static int on_out(void *ud, const ag_sse_item_t *it)
{
    seen_t *sn = ud;
    if (it->kind != AG_SSE_EVENT)
        return AG_OK;
    CHECK(!it->eof);     /* every event written whole */
    CHECK(!sn->blocked); /* nothing after the block error */
    ag_str_t d = it->data;
    if (d.len && d.ptr[0] == 'x')
        return AG_OK; /* the script's non-JSON data, passed on */
    size_t n = 0;
    CHECK(ag_jscan_find(d, sn->paths, Q_N, sn->m, 64, &n, NULL) == AG_OK);
    const ag_jscan_match_t *type = NULL, *text = NULL, *partial = NULL;
    uint64_t index = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const ag_jscan_match_t *m = &sn->m[i];
        if (m->path == Q_TYPE)
            type = m;
        else if (m->path == Q_INDEX)
            CHECK(ag_jscan_get_u64(d, m, &index) == AG_OK);
        else if (m->path == Q_TEXT || m->path == Q_START)
            text = m;
        else if (m->path == Q_JSON)
            partial = m;
    }
    CHECK(type != NULL);
    if (sn->named || it->event.len)
        CHECK(ag_jscan_str_eq(d, type, it->event)); /* the event line is there, naming the type */
    if (ag_jscan_str_eq(d, type, AG_STR_LIT("error"))) {
        ag_buf_reset(&sn->s);
        ag_jscan_path_t p;
        ag_jscan_match_t em;
        size_t en = 0;
        CHECK(ag_jscan_path_compile(&p, AG_STR_LIT("error.type"), AG_JSCAN_STRING) == AG_OK);
        CHECK(ag_jscan_find(d, &p, 1, &em, 1, &en, NULL) == AG_OK);
        CHECK(en == 1);
        sn->blocked = ag_jscan_str_eq(d, &em, AG_STR_LIT("astgate_blocked"));
        CHECK(it->event.len); /* an error event always has its line */
        return AG_OK;
    }
    if (!sn->well_formed)
        return AG_OK;
    for (int c = 0; c < sn->ncalls; c++) {
        if (sn->calls[c].index != index)
            continue;
        if (partial) {
            CHECK(!sn->call_stopped[c]); /* no input after the block's stop */
            CHECK(ag_jscan_decode(d, partial->off, partial->len, &sn->joined[c], NULL, 0, NULL) ==
                  AG_OK);
        }
        if (ag_jscan_str_eq(d, type, AG_STR_LIT("content_block_stop"))) {
            sn->call_stopped[c] = true; /* the whole input, rewritten or as it came */
            CHECK(ag_str_eq(ag_buf_str(&sn->joined[c]), ag_buf_str(&sn->calls[c].want)));
        }
        return AG_OK;
    }
    int k = -1;
    for (int i = 0; i < sn->n; i++)
        if (sn->idx[i] == index)
            k = i;
    if (k < 0)
        return AG_OK;
    if (text) {
        CHECK(!sn->stopped[k]); /* no text after the block's stop */
        ag_buf_reset(&sn->s);
        CHECK(ag_jscan_decode(d, text->off, text->len, &sn->s, NULL, 0, NULL) == AG_OK);
        CHECK(ag_buf_append(&sn->got[k], sn->s.ptr, sn->s.len) == AG_OK);
    }
    if (ag_jscan_str_eq(d, type, AG_STR_LIT("content_block_stop"))) {
        sn->stopped[k] = true;
        CHECK(ag_str_eq(ag_buf_str(&sn->got[k]), ag_buf_str(&sn->want[k])));
    }
    return AG_OK;
}

static void seen_init(seen_t *sn)
{
    memset(sn, 0, sizeof(*sn));
    static const char *const pats[Q_N] = {"type", "index", "delta{type=text_delta}.text",
                                          "content_block{type=text}.text",
                                          "delta{type=input_json_delta}.partial_json"};
    for (int i = 0; i < Q_N; i++)
        CHECK(ag_jscan_path_compile(&sn->paths[i], ag_cstr(pats[i]),
                                    i == Q_INDEX ? AG_JSCAN_NUMBER : AG_JSCAN_STRING) == AG_OK);
    for (int k = 0; k < MAX_TEXTS; k++)
        ag_buf_init(&sn->got[k], BIG);
    for (int k = 0; k < MAX_CALLS; k++)
        ag_buf_init(&sn->joined[k], BIG);
    ag_buf_init(&sn->s, BIG);
}

static void seen_dispose(seen_t *sn)
{
    for (int k = 0; k < MAX_TEXTS; k++)
        ag_buf_dispose(&sn->got[k]);
    for (int k = 0; k < MAX_CALLS; k++)
        ag_buf_dispose(&sn->joined[k]);
    ag_buf_dispose(&sn->s);
}

typedef struct replies {
    int text;            /* replies for text blocks */
    const unsigned *idx; /* the text blocks' indexes */
    int n;
} replies_t;

static void on_reply(void *ud, int index, const ag_reply_summary_t *s)
{
    replies_t *r = ud;
    (void)s;
    for (int k = 0; k < r->n; k++)
        if (r->idx[k] == (unsigned)index)
            r->text++;
}

/* The non-streamed path on the same calls: exactly the tool_use inputs change. */
static void check_body(const fcall_t *calls, int n)
{
    ag_buf_t body, want, out;
    ag_buf_init(&body, BIG);
    ag_buf_init(&want, BIG);
    ag_buf_init(&out, BIG);
    gen_body(calls, n, &body, &want);
    ag_api_env_t env;
    memset(&env, 0, sizeof(env));
    env.engine = engine;
    env.tools = &tools;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    CHECK(ag_api_anthropic.rewrite_body(&env, ag_buf_str(&body), &out, &st) == AG_OK);
    if (st.blocked_rule == NULL)
        CHECK(ag_str_eq(ag_buf_str(&out), ag_buf_str(&want)));
    ag_buf_dispose(&body);
    ag_buf_dispose(&want);
    ag_buf_dispose(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned flags = data[0];
    rng_state = (uint64_t)data[1] << 8 | data[2];
    rd_t r = {data + 3, size - 3};
    gen_t g;
    ag_buf_init(&g.sse, BIG);
    ag_buf_init(&g.j, BIG);
    g.eol = flags & 2 ? "\r\n" : "\n";
    g.spaces = flags & 4;

    bool well_formed = flags & 1;
    ag_buf_t texts[MAX_TEXTS], want[MAX_TEXTS];
    ag_str_t ts[MAX_TEXTS];
    unsigned idx[MAX_TEXTS] = {0};
    int ntexts = 0;
    fcall_t calls[MAX_CALLS];
    int ncalls = 0;
    memset(calls, 0, sizeof(calls));
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_init(&texts[k], BIG);
        ag_buf_init(&want[k], BIG);
    }
    for (int k = 0; k < MAX_CALLS; k++) {
        ag_buf_init(&calls[k].json, BIG);
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
        if (flags & 128)
            for (; ncalls < ntexts; ncalls++)
                make_call(&calls[ncalls], ts[ncalls]);
        gen_well_formed(&g, ts, ntexts, flags, idx, calls, ncalls);
    } else {
        gen_script(&g, &r);
    }

    replies_t replies = {0, idx, ntexts};
    ag_api_env_t env;
    memset(&env, 0, sizeof(env));
    env.engine = engine;
    env.on_reply = on_reply;
    env.ud = &replies;
    env.tools = &tools;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    const ag_api_t *api = &ag_api_anthropic;
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
    CHECK(!ended || st.blocked_rule != NULL);

    seen_t sn;
    seen_init(&sn);
    sn.well_formed = well_formed && st.blocked_rule == NULL;
    sn.named = well_formed;
    sn.want = want;
    sn.n = ntexts;
    sn.calls = calls;
    sn.ncalls = ncalls;
    memcpy(sn.idx, idx, sizeof(idx));
    ag_sse_parser_t p;
    ag_sse_init(&p, BIG);
    CHECK(ag_sse_feed(&p, ag_buf_str(&out), on_out, &sn) == AG_OK);
    CHECK(ag_sse_finish(&p, on_out, &sn) == AG_OK);
    ag_sse_dispose(&p);
    CHECK(sn.blocked == (st.blocked_rule != NULL)); /* a block ends in the error event */
    if (sn.well_formed) {
        for (int k = 0; k < ntexts; k++) {
            CHECK(sn.stopped[k]);
            CHECK(ag_str_eq(ag_buf_str(&sn.got[k]), ag_buf_str(&want[k])));
        }
        for (int c = 0; c < ncalls; c++)
            CHECK(sn.call_stopped[c]);
        CHECK(replies.text == ntexts);
    }
    seen_dispose(&sn);
    if (ncalls)
        check_body(calls, ncalls);
    ag_buf_dispose(&out);
    for (int k = 0; k < MAX_TEXTS; k++) {
        ag_buf_dispose(&texts[k]);
        ag_buf_dispose(&want[k]);
    }
    for (int k = 0; k < MAX_CALLS; k++) {
        ag_buf_dispose(&calls[k].json);
        ag_buf_dispose(&calls[k].want);
    }
    ag_buf_dispose(&g.sse);
    ag_buf_dispose(&g.j);
    return 0;
}

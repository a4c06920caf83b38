/* libFuzzer target for the OpenAI Chat Completions adapter's stream: text and tool calls (run from
 * the repository root, or set ASTGATE_FUZZ_RULES; a block rule for eval($X) is added to the
 * rules). The input drives a generator of chat.completion.chunk streams. Byte 0: bit 0 well-formed
 * mode, bit 1 CRLF line ends, bit 2 the fragments of parallel calls interleaved (sometimes two in
 * one chunk), bit 3 the events' strings ASCII-only (\uXXXX, as Python writes them), bit 4 a small
 * max_held (calls past it are released unchanged), bit 5 no [DONE], bit 6 a text reply before the
 * calls; bytes 1-2: the seed of the cuts and of the feed splits.
 * Well-formed mode: the rest is up to 4 pieces separated by NUL bytes. With bit 6 the first is the
 * text reply; each other piece becomes a tool call, its first byte picking the tool and shape
 * (bits 0-2 mod 6: Write, Edit, apply_patch as a function and as a custom tool, a tool astgate
 * does not know, Write with arguments that are not JSON) and whether the arguments escape
 * non-ASCII as \u (bit 3); the
 * arguments are cut at random points, also right after a backslash (inside escapes and between
 * the halves of \u surrogate pairs), never inside a UTF-8 character (a delta is text). Otherwise
 * the rest is a script of random events (fragments of a few indexes in two choices, with known
 * and unknown names, text, finish, usage, errors, [DONE], comments, data that is not JSON).
 * The stream is fed in random pieces. Checks: feeding never fails; the output is well-framed SSE;
 * the data of every event is JSON; a block error is the last event, and there is one exactly when
 * a block was reported. Well-formed mode without a block: each call's first fragment (id, type,
 * name) goes out unchanged before any of its input; what each index's fragments add up to equals
 * ag_toolcode_rewrite of the whole arguments (as they came when it does not apply, or past
 * max_held); a held call's input goes out in one fragment, the held calls in ascending index
 * order; an unknown tool's fragments are the upstream's, one for one; the text adds up to the
 * engine's rewrite; the finish chunk and [DONE] are kept. FUZZ_DEBUG=1 prints the generated
 * stream and the output of each input. */
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
            fprintf(stderr, "fuzz_chat: check failed: %s (line %d)\n", #expr, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u << 10)
#define MAX_CALLS 4
#define SMALL_HELD 96
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
        fprintf(stderr, "fuzz_chat: run from the repository root or set ASTGATE_FUZZ_RULES\n");
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

static void putn(ag_buf_t *b, ag_str_t s)
{
    CHECK(ag_buf_append(b, s.ptr, s.len) == AG_OK);
}

static void putf(ag_buf_t *b, const char *fmt, unsigned long long v)
{
    CHECK(ag_buf_appendf(b, fmt, v) == AG_OK);
}

/* A JSON string: JSON.stringify's way, or ASCII-only (\uXXXX, surrogate pairs). */
static void put_json(ag_buf_t *b, ag_str_t s, bool ascii)
{
    if (!ascii) {
        CHECK(ag_json_append_str(b, s) == AG_OK);
        return;
    }
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
    CHECK(ag_jscan_escape(b, s, AG_JSCAN_ESC_ASCII) == AG_OK);
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
}

/* raw bytes as the text a JSON string can carry (invalid UTF-8 becomes U+FFFD) */
static void sanitize(ag_str_t raw, ag_buf_t *out)
{
    ag_buf_t j;
    ag_buf_init(&j, BIG);
    CHECK(ag_json_append_str(&j, raw) == AG_OK);
    ag_buf_reset(out);
    CHECK(ag_jscan_decode(ag_buf_str(&j), 0, j.len, out, NULL, 0, NULL) == AG_OK);
    ag_buf_dispose(&j);
}

/* ---- generating the stream ---- */

typedef struct gen {
    ag_buf_t sse, j;
    const char *eol;
    bool ascii;
} gen_t;

static void chunk_begin(gen_t *g)
{
    ag_buf_reset(&g->j);
    put(&g->j, "{\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,"
               "\"model\":\"gpt-x\",\"system_fingerprint\":\"fp_1\",\"choices\":[");
}

static void chunk_end(gen_t *g)
{
    put(&g->j, "]}");
    put(&g->sse, "data: ");
    putn(&g->sse, ag_buf_str(&g->j));
    put(&g->sse, g->eol);
    put(&g->sse, g->eol);
}

static void raw_event(gen_t *g, const char *data)
{
    put(&g->sse, "data: ");
    put(&g->sse, data);
    put(&g->sse, g->eol);
    put(&g->sse, g->eol);
}

static void choice_open(gen_t *g, unsigned choice)
{
    putf(&g->j, "{\"index\":%llu,\"delta\":{", choice);
}

static void choice_close(gen_t *g, const char *finish)
{
    put(&g->j, "},\"logprobs\":null,\"finish_reason\":");
    put(&g->j, finish ? finish : "null");
    put(&g->j, "}");
}

typedef enum kind {
    K_WRITE,
    K_EDIT,
    K_PATCH_FN,
    K_PATCH_CUSTOM,
    K_UNKNOWN,
    K_NOT_JSON,
    K_N
} kind_t;

static const char *const KIND_NAME[K_N] = {"Write",       "Edit",      "apply_patch",
                                           "apply_patch", "run_shell", "Write"};

/* One generated call: its arguments, cut into fragments. */
typedef struct gcall {
    kind_t kind;
    ag_buf_t args;   /* the arguments (JSON text, or free text) */
    size_t cut[512]; /* fragment ends in args */
    size_t ncut;
    size_t next; /* items sent: 0 = the first fragment, then fragments 1..ncut */
} gcall_t;

static bool utf8_cont(ag_str_t s, size_t i)
{
    return i < s.len && ((unsigned char)s.ptr[i] & 0xc0) == 0x80;
}

static void cut_args(gcall_t *c)
{
    ag_str_t a = ag_buf_str(&c->args);
    c->ncut = 0;
    for (size_t pos = 0; pos < a.len && c->ncut < 511;) {
        size_t n = pos + 1 + rng() % 12;
        if (rng() % 3 == 0) { /* right after a backslash: inside an escape */
            const char *bs = memchr(a.ptr + pos, '\\', a.len - pos);
            if (bs != NULL && (size_t)(bs - a.ptr) < pos + 40)
                n = (size_t)(bs - a.ptr) + 1 + rng() % 3;
        }
        if (n > a.len)
            n = a.len;
        while (n < a.len && utf8_cont(a, n))
            n++;
        c->cut[c->ncut++] = n;
        pos = n;
    }
    if (c->ncut == 0 || c->cut[c->ncut - 1] != a.len)
        c->cut[c->ncut++] = a.len;
}

/* A JSON string token (quotes included) for s; ascii: non-ASCII as \u escapes. */
static void arg_str(ag_buf_t *b, ag_str_t s, bool ascii)
{
    put_json(b, s, ascii);
}

static void make_args(gcall_t *c, ag_str_t text, bool ascii)
{
    ag_buf_t *a = &c->args;
    ag_buf_reset(a);
    switch (c->kind) {
    case K_WRITE:
        put(a, "{\"file_path\":\"src/agent.ts\",\"content\":");
        arg_str(a, text, ascii);
        put(a, "}");
        break;
    case K_EDIT:
        put(a, "{\"file_path\": \"src/agent.ts\", \"old_string\": \"x\", \"new_string\": ");
        arg_str(a, text, ascii);
        put(a, "}");
        break;
    case K_PATCH_FN:
        put(a, "{\"input\":");
        {
            ag_buf_t p;
            ag_buf_init(&p, BIG);
            put(&p, "*** Begin Patch\n*** Add File: src/a.ts\n+");
            for (size_t i = 0; i < text.len; i++) {
                CHECK(ag_buf_appendc(&p, text.ptr[i]) == AG_OK);
                if (text.ptr[i] == '\n')
                    CHECK(ag_buf_appendc(&p, '+') == AG_OK);
            }
            put(&p, "\n*** End Patch\n");
            arg_str(a, ag_buf_str(&p), ascii);
            ag_buf_dispose(&p);
        }
        put(a, "}");
        break;
    case K_PATCH_CUSTOM:
        put(a, "*** Begin Patch\n*** Add File: src/a.ts\n+");
        putn(a, text);
        put(a, "\n*** End Patch\n");
        break;
    case K_UNKNOWN:
        put(a, "{\"cmd\":");
        arg_str(a, text, ascii);
        put(a, "}");
        break;
    default: /* K_NOT_JSON */
        put(a, "{\"file_path\":\"src/agent.ts\",\"content\":");
        arg_str(a, text, ascii);
        break;
    }
}

/* The next item of call k: its first fragment, or an arguments fragment. */
static void call_item(gen_t *g, const gcall_t *c, unsigned k)
{
    bool custom = c->kind == K_PATCH_CUSTOM;
    putf(&g->j, "{\"index\":%llu,", k);
    if (c->next == 0) {
        putf(&g->j, "\"id\":\"call_%llu\",", k);
        put(&g->j, custom ? "\"type\":\"custom\",\"custom\":{\"name\":\""
                          : "\"type\":\"function\",\"function\":{\"name\":\"");
        put(&g->j, KIND_NAME[c->kind]);
        put(&g->j, custom ? "\",\"input\":\"\"}}" : "\",\"arguments\":\"\"}}");
        return;
    }
    size_t from = c->next == 1 ? 0 : c->cut[c->next - 2], to = c->cut[c->next - 1];
    put(&g->j, custom ? "\"custom\":{\"input\":" : "\"function\":{\"arguments\":");
    put_json(&g->j, ag_str(c->args.ptr + from, to - from), g->ascii);
    put(&g->j, "}}");
}

static bool call_left(const gcall_t *c)
{
    return c->next <= c->ncut;
}

static void gen_well_formed(gen_t *g, unsigned flags, const ag_str_t *text, gcall_t *calls,
                            int ncalls)
{
    chunk_begin(g);
    choice_open(g, 0);
    put(&g->j, "\"role\":\"assistant\",\"content\":");
    put(&g->j, text ? "\"\"" : "null");
    choice_close(g, NULL);
    chunk_end(g);
    if (text) {
        for (size_t pos = 0; pos < text->len;) {
            size_t n = pos + 1 + rng() % 9;
            if (n > text->len)
                n = text->len;
            while (n < text->len && utf8_cont(*text, n))
                n++;
            chunk_begin(g);
            choice_open(g, 0);
            put(&g->j, "\"content\":");
            put_json(&g->j, ag_str(text->ptr + pos, n - pos), g->ascii);
            choice_close(g, NULL);
            chunk_end(g);
            pos = n;
        }
    }
    bool interleave = flags & 4;
    for (int k = 0;;) {
        if (interleave) {
            int live[MAX_CALLS], nlive = 0;
            for (int i = 0; i < ncalls; i++)
                if (call_left(&calls[i]))
                    live[nlive++] = i;
            if (nlive == 0)
                break;
            k = live[rng() % (unsigned)nlive];
        } else {
            while (k < ncalls && !call_left(&calls[k]))
                k++;
            if (k == ncalls)
                break;
        }
        chunk_begin(g);
        choice_open(g, 0);
        put(&g->j, "\"tool_calls\":[");
        call_item(g, &calls[k], (unsigned)k);
        calls[k].next++;
        /* sometimes a second call's item in the same chunk */
        int k2 = (k + 1 + (int)(rng() % MAX_CALLS)) % (ncalls ? ncalls : 1);
        if (interleave && k2 != k && call_left(&calls[k2]) && rng() % 3 == 0) {
            put(&g->j, ",");
            call_item(g, &calls[k2], (unsigned)k2);
            calls[k2].next++;
        }
        put(&g->j, "]");
        choice_close(g, NULL);
        chunk_end(g);
    }
    chunk_begin(g);
    choice_open(g, 0);
    choice_close(g, ncalls ? "\"tool_calls\"" : "\"stop\"");
    chunk_end(g);
    if (!(flags & 32))
        raw_event(g, "[DONE]");
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

static const char *const SCRIPT_NAMES[] = {"Write", "Edit", "apply_patch", "other", "MultiEdit"};

static void gen_script(gen_t *g, rd_t *r)
{
    ag_buf_t t;
    ag_buf_init(&t, BIG);
    for (int steps = 0; r->n > 0 && steps < 400; steps++) {
        uint8_t op = rd_byte(r);
        uint8_t b = rd_byte(r);
        unsigned choice = b % 2, index = (b >> 1) % 3;
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
        case 3:
            rd_text(r, &t);
            chunk_begin(g);
            choice_open(g, choice);
            put(&g->j, "\"tool_calls\":[");
            putf(&g->j, "{\"index\":%llu", index);
            if (op & 16)
                putf(&g->j, ",\"id\":\"call_%llu\"", b);
            if (op & 32) {
                put(&g->j, ",\"type\":\"custom\",\"custom\":{\"name\":\"");
                put(&g->j, SCRIPT_NAMES[(b >> 3) % 5]);
                put(&g->j, "\",\"input\":");
            } else if (op & 64) {
                put(&g->j, ",\"type\":\"function\",\"function\":{\"name\":\"");
                put(&g->j, SCRIPT_NAMES[(b >> 3) % 5]);
                put(&g->j, "\",\"arguments\":");
            } else {
                put(&g->j,
                    (op & 128) ? ",\"custom\":{\"input\":" : ",\"function\":{\"arguments\":");
            }
            put_json(&g->j, ag_buf_str(&t), g->ascii);
            put(&g->j, "}}]");
            choice_close(g, NULL);
            chunk_end(g);
            break;
        case 4:
        case 5:
            rd_text(r, &t);
            chunk_begin(g);
            choice_open(g, choice);
            put(&g->j, "\"content\":");
            put_json(&g->j, ag_buf_str(&t), g->ascii);
            choice_close(g, NULL);
            chunk_end(g);
            break;
        case 6:
            chunk_begin(g);
            choice_open(g, choice);
            choice_close(g, (b & 8) ? "\"tool_calls\"" : "\"stop\"");
            chunk_end(g);
            break;
        case 7:
            raw_event(g, "{\"id\":\"chatcmpl-f\",\"choices\":[],\"usage\":{\"total_tokens\":3}}");
            break;
        case 8:
            raw_event(g, "x not json");
            break;
        case 9:
            put(&g->sse, ": keepalive");
            put(&g->sse, g->eol);
            put(&g->sse, g->eol);
            break;
        case 10:
            raw_event(g, "{\"error\":{\"message\":\"m\",\"type\":\"server_error\",\"param\":null,"
                         "\"code\":null}}");
            break;
        default:
            if (b % 4 == 0)
                raw_event(g, "[DONE]");
            break;
        }
    }
    ag_buf_dispose(&t);
}

/* ---- checking the output ---- */

typedef struct seen {
    bool well_formed, blocked, done, finished;
    int ncalls;
    const gcall_t *calls;
    bool held[MAX_CALLS];      /* a tool astgate holds */
    bool head[MAX_CALLS];      /* the first fragment was seen */
    int frags[MAX_CALLS];      /* non-empty input fragments */
    ag_buf_t got[MAX_CALLS];   /* the input, joined */
    int last_held;             /* index of the last held call that went out */
    bool order_ok, contiguous; /* checked unless a small max_held released calls */
    ag_buf_t text;
    ag_jscan_path_t paths[12];
    ag_jscan_match_t m[1024];
    ag_buf_t s;
} seen_t;

enum {
    Q_CINDEX,
    Q_CONTENT,
    Q_FINISH,
    Q_INDEX,
    Q_ID,
    Q_TYPE,
    Q_FNAME,
    Q_FARGS,
    Q_CNAME,
    Q_CINPUT,
    Q_ERRCODE,
    Q_N
};

static void decode(seen_t *sn, ag_str_t d, const ag_jscan_match_t *m)
{
    ag_buf_reset(&sn->s);
    CHECK(ag_jscan_decode(d, m->off, m->len, &sn->s, NULL, 0, NULL) == AG_OK);
}

/* One element of delta.tool_calls (matches [i, j)). */
static void on_element(seen_t *sn, ag_str_t d, size_t i, size_t j)
{
    const ag_jscan_match_t *f[Q_N] = {NULL};
    for (size_t k = i; k < j; k++)
        f[sn->m[k].path] = &sn->m[k];
    uint64_t k = 0;
    CHECK(f[Q_INDEX] != NULL && ag_jscan_get_u64(d, f[Q_INDEX], &k) == AG_OK);
    CHECK(k < (uint64_t)sn->ncalls);
    const gcall_t *c = &sn->calls[k];
    bool custom = c->kind == K_PATCH_CUSTOM;
    if (f[Q_ID] || f[Q_TYPE] || f[Q_FNAME] || f[Q_CNAME]) {
        CHECK(!sn->head[k] && sn->got[k].len == 0); /* once, before any input */
        sn->head[k] = true;
        char want[32];
        snprintf(want, sizeof(want), "call_%u", (unsigned)k);
        CHECK(f[Q_ID] && ag_jscan_str_eq(d, f[Q_ID], ag_cstr(want)));
        CHECK(f[Q_TYPE] && ag_jscan_str_eq(d, f[Q_TYPE], ag_cstr(custom ? "custom" : "function")));
        const ag_jscan_match_t *name = custom ? f[Q_CNAME] : f[Q_FNAME];
        CHECK(name && ag_jscan_str_eq(d, name, ag_cstr(KIND_NAME[c->kind])));
    }
    const ag_jscan_match_t *in = custom ? f[Q_CINPUT] : f[Q_FARGS];
    CHECK((custom ? f[Q_FARGS] : f[Q_CINPUT]) == NULL);
    if (in == NULL)
        return;
    decode(sn, d, in);
    if (sn->s.len == 0)
        return;
    CHECK(sn->head[k]);
    CHECK(ag_buf_append(&sn->got[k], sn->s.ptr, sn->s.len) == AG_OK);
    sn->frags[k]++;
    if (sn->held[k]) {
        if (sn->frags[k] > 1)
            sn->contiguous = false;
        if ((int)k <= sn->last_held)
            sn->order_ok = false;
        sn->last_held = (int)k;
    }
}

static int on_out(void *ud, const ag_sse_item_t *it)
{
    seen_t *sn = ud;
    if (it->kind != AG_SSE_EVENT)
        return AG_OK;
    CHECK(!it->eof);     /* every event written whole */
    CHECK(!sn->blocked); /* nothing after the block error */
    ag_str_t d = it->data;
    if (sn->done)
        return AG_OK; /* (the script may send more after [DONE]: passed as it is) */
    if (ag_str_eqc(d, "[DONE]")) {
        sn->done = true;
        return AG_OK;
    }
    if (d.len && d.ptr[0] == 'x')
        return AG_OK; /* the script's non-JSON data, passed on */
    size_t n = 0;
    CHECK(ag_jscan_find(d, sn->paths, Q_N, sn->m, 1024, &n, NULL) == AG_OK);
    for (size_t i = 0; i < n; i++)
        if (sn->m[i].path == Q_ERRCODE && ag_jscan_str_eq(d, &sn->m[i], AG_STR_LIT("no-eval")))
            sn->blocked = true;
    if (!sn->well_formed)
        return AG_OK;
    for (size_t i = 0; i < n;) {
        const ag_jscan_match_t *m = &sn->m[i];
        if (m->path >= Q_INDEX && m->path <= Q_CINPUT) {
            size_t j = i + 1;
            while (j < n && sn->m[j].path >= Q_INDEX && sn->m[j].path <= Q_CINPUT &&
                   sn->m[j].idx[0] == m->idx[0] && sn->m[j].idx[1] == m->idx[1])
                j++;
            on_element(sn, d, i, j);
            i = j;
            continue;
        }
        if (m->path == Q_CONTENT) {
            decode(sn, d, m);
            CHECK(ag_buf_append(&sn->text, sn->s.ptr, sn->s.len) == AG_OK);
        } else if (m->path == Q_FINISH) {
            CHECK(!sn->finished);
            sn->finished = true;
        } else if (m->path == Q_CINDEX) {
            uint64_t c = 1;
            CHECK(ag_jscan_get_u64(d, m, &c) == AG_OK && c == 0);
        }
        i++;
    }
    return AG_OK;
}

static void seen_init(seen_t *sn)
{
    memset(sn, 0, sizeof(*sn));
    static const char *const pats[Q_N] = {"choices[*].index",
                                          "choices[*].delta.content",
                                          "choices[*].finish_reason",
                                          "choices[*].delta.tool_calls[*].index",
                                          "choices[*].delta.tool_calls[*].id",
                                          "choices[*].delta.tool_calls[*].type",
                                          "choices[*].delta.tool_calls[*].function.name",
                                          "choices[*].delta.tool_calls[*].function.arguments",
                                          "choices[*].delta.tool_calls[*].custom.name",
                                          "choices[*].delta.tool_calls[*].custom.input",
                                          "error.code"};
    for (int i = 0; i < Q_N; i++) {
        unsigned types = i == Q_CINDEX || i == Q_INDEX ? AG_JSCAN_NUMBER : AG_JSCAN_STRING;
        CHECK(ag_jscan_path_compile(&sn->paths[i], ag_cstr(pats[i]), types) == AG_OK);
    }
    for (int k = 0; k < MAX_CALLS; k++)
        ag_buf_init(&sn->got[k], BIG);
    ag_buf_init(&sn->text, BIG);
    ag_buf_init(&sn->s, BIG);
    sn->last_held = -1;
    sn->order_ok = true;
    sn->contiguous = true;
}

static void seen_dispose(seen_t *sn)
{
    for (int k = 0; k < MAX_CALLS; k++)
        ag_buf_dispose(&sn->got[k]);
    ag_buf_dispose(&sn->text);
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
    (void)ud;
    (void)index;
    (void)s;
}

static void on_tool_skip(void *ud, int index, const ag_tool_call_t *call, const char *why)
{
    (void)ud;
    (void)index;
    CHECK(call->name.len > 0 && why != NULL);
}

static void on_want_report(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    bool *blocked = ud;
    (void)site;
    if (res->blocked)
        *blocked = true;
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
    g.eol = flags & 2 ? "\r\n" : "\n";
    g.ascii = flags & 8;
    rng_state = seed;
    bool well_formed = flags & 1;
    size_t max_held = flags & 16 ? SMALL_HELD : (size_t)1 << 20;

    gcall_t calls[MAX_CALLS];
    ag_buf_t want[MAX_CALLS], text, want_text;
    ag_buf_init(&text, BIG);
    ag_buf_init(&want_text, BIG);
    for (int k = 0; k < MAX_CALLS; k++) {
        memset(&calls[k], 0, sizeof(calls[k]));
        ag_buf_init(&calls[k].args, BIG);
        ag_buf_init(&want[k], BIG);
    }
    int ncalls = 0;
    bool has_text = false, want_block = false;
    if (well_formed) {
        ag_buf_t piece;
        ag_buf_init(&piece, BIG);
        for (int p = 0; p < MAX_CALLS + 1 && r.n > 0; p++) {
            const uint8_t *z = memchr(r.p, 0, r.n);
            size_t len = z ? (size_t)(z - r.p) : r.n;
            const uint8_t *pp = r.p;
            r.p += len + (z != NULL);
            r.n -= len + (z != NULL);
            if (p == 0 && (flags & 64)) {
                sanitize(ag_str((const char *)pp, len), &text);
                has_text = true;
                continue;
            }
            if (ncalls == MAX_CALLS)
                break;
            uint8_t sel = len ? pp[0] : 0;
            sanitize(ag_str((const char *)pp + (len > 0), len - (len > 0)), &piece);
            gcall_t *c = &calls[ncalls++];
            c->kind = (kind_t)((sel & 7) % K_N);
            make_args(c, ag_buf_str(&piece), sel & 8);
            cut_args(c);
        }
        ag_buf_dispose(&piece);
        if (has_text) {
            ag_result_t res;
            CHECK(ag_engine_rewrite(engine, ag_buf_str(&text), &want_text, &res) == AG_OK);
            want_block |= res.blocked > 0;
        }
        for (int k = 0; k < ncalls; k++) {
            const gcall_t *c = &calls[k];
            ag_tool_call_t call;
            memset(&call, 0, sizeof(call));
            call.name = ag_cstr(KIND_NAME[c->kind]);
            call.id = AG_STR_LIT("call");
            call.file = AG_STR_LIT("");
            call.input = c->kind == K_PATCH_CUSTOM ? AG_TOOL_IN_TEXT : AG_TOOL_IN_ARGS;
            bool changed = false, blocked = false;
            int rc = AG_ENOENT;
            if (c->args.len <= max_held)
                rc = ag_toolcode_rewrite(engine, &tools, &call, ag_buf_str(&c->args), &want[k],
                                         &changed, on_want_report, &blocked);
            if (rc != AG_OK) {
                ag_buf_reset(&want[k]);
                CHECK(ag_buf_append(&want[k], c->args.ptr, c->args.len) == AG_OK);
            }
            CHECK(!changed || rc == AG_OK);
            want_block |= blocked;
        }
        gen_well_formed(&g, flags, has_text ? &(ag_str_t){text.ptr, text.len} : NULL, calls,
                        ncalls);
    } else {
        gen_script(&g, &r);
    }

    ag_api_env_t env;
    memset(&env, 0, sizeof(env));
    env.engine = engine;
    env.max_held = max_held;
    env.on_result = on_result;
    env.on_reply = on_reply;
    env.on_tool_skip = on_tool_skip;
    env.tools = &tools;
    ag_api_stats_t st;
    memset(&st, 0, sizeof(st));
    const ag_api_t *api = &ag_api_openai_chat;
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
    CHECK(!ended || st.blocked_rule != NULL);

    seen_t sn;
    seen_init(&sn);
    sn.well_formed = well_formed && st.blocked_rule == NULL;
    sn.ncalls = ncalls;
    sn.calls = calls;
    for (int k = 0; k < ncalls; k++)
        sn.held[k] = calls[k].kind != K_UNKNOWN;
    ag_sse_parser_t p;
    ag_sse_init(&p, BIG);
    CHECK(ag_sse_feed(&p, ag_buf_str(&out), on_out, &sn) == AG_OK);
    CHECK(ag_sse_finish(&p, on_out, &sn) == AG_OK);
    ag_sse_dispose(&p);
    CHECK(sn.blocked == (st.blocked_rule != NULL)); /* a block ends in the error event */
    if (well_formed)
        CHECK(want_block == (st.blocked_rule != NULL));
    if (sn.well_formed) {
        for (int k = 0; k < ncalls; k++) {
            CHECK(sn.head[k]);
            CHECK(ag_str_eq(ag_buf_str(&sn.got[k]), ag_buf_str(&want[k])));
            if (calls[k].kind == K_UNKNOWN) /* passed as they came, one for one */
                CHECK(sn.frags[k] == (int)calls[k].ncut - (calls[k].args.len == 0));
        }
        if (!(flags & 16)) {
            CHECK(sn.contiguous);
            CHECK(sn.order_ok);
        }
        if (has_text)
            CHECK(ag_str_eq(ag_buf_str(&sn.text), ag_buf_str(&want_text)));
        CHECK(sn.finished);
        CHECK(sn.done == !(flags & 32));
    }
    seen_dispose(&sn);
    ag_buf_dispose(&out);
    for (int k = 0; k < MAX_CALLS; k++) {
        ag_buf_dispose(&calls[k].args);
        ag_buf_dispose(&want[k]);
    }
    ag_buf_dispose(&text);
    ag_buf_dispose(&want_text);
    ag_buf_dispose(&g.sse);
    ag_buf_dispose(&g.j);
    return 0;
}

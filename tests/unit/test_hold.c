/* The hold policy's proof of correctness: with AG_STREAM_HOLD_MINIMAL, for every golden text case
 * and every way the reply is cut into deltas that this test tries, the text released after each
 * delta is a prefix of the non-streamed rewrite, the text assembled after ag_stream_finish equals
 * it, and the core counts no violation. Two families of splits: (a) one character per push, (b)
 * every cut c at a character boundary, fed as [0,c) then [c,len). All cuts, no sampling: under
 * ASan the corpus (143 replies, ~49 K pushes, ~49 K cuts) took 6 s with MINIMAL = BLOCK and 13 s
 * with the hold analysis of 8657113 (the budget is ~60 s; cuts_per_case samples if it grows).
 * A block rule adds one more property: nothing of the blocked match is ever released. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <unistd.h>

#include "fence.h"
#include "hold.h"
#include "rewrite.h"
#include "rules.h"
#include "stream.h"

#define MAX_REPORTS 12 /* failures printed in full; the rest are only counted */
/* (b) on every cut (0), or on a seeded sample of about this many per case, should the analysis
 * ever make every cut too slow under ASan */
static size_t cuts_per_case = 0;

static uint64_t rng_state = 14;
static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static ag_rules_t *mastra; /* rules/mastra.yaml, for the cases without rules.yaml */

static int setup(void **state)
{
    const char *files[] = {"rules/mastra.yaml"};
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_files(files, 1, &mastra, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    ag_rules_free(mastra);
    return 0;
}

/* One reply and what the stream must add up to. */
typedef struct hcase {
    const char *name;
    ag_engine_t *engine;
    ag_str_t in;
    ag_str_t want;   /* ag_engine_rewrite of the whole reply */
    bool blocked;    /* the whole rewrite hit an enforced block rule */
    size_t block_at; /* then: want's offset of the first blocked match, which is never released */
    uint32_t failures;
} hcase_t;

/* The engine as `astgate rewrite` sets it up (cmd_rewrite in src/cli/main.c: bare mode). */
static ag_engine_t *engine_for(const ag_rules_t *rules, size_t input_len)
{
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.bare = true;
    opts.max_reply = input_len + (1u << 20);
    opts.parse_timeout_us = 0;
    return ag_engine_new(rules, &opts);
}

/* Rewrites the whole reply into want and notes where a block rule matched. */
static void case_init(hcase_t *c, const char *name, ag_engine_t *engine, ag_str_t in,
                      ag_buf_t *want)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->engine = engine;
    c->in = in;
    ag_result_t res;
    ag_buf_reset(want);
    assert_int_equal(ag_engine_rewrite(engine, in, want, &res), AG_OK);
    c->want = ag_buf_str(want);
    c->block_at = SIZE_MAX;
    for (uint32_t i = 0; i < res.nevents && res.blocked; i++) {
        const ag_event_t *ev = &res.events[i];
        if (ev->action != AG_ACTION_BLOCK || ev->shadow)
            continue;
        /* the match's offset in want: the applied edits before it moved it */
        int64_t at = ev->offset;
        for (uint32_t j = 0; j < res.nevents; j++)
            if (res.events[j].applied && res.events[j].offset < ev->offset)
                at += (int64_t)res.events[j].after.len - (int64_t)res.events[j].before.len;
        c->blocked = true;
        c->block_at = (size_t)at;
        break;
    }
}

/* Writes s[from, from+n) into f with control characters visible. */
static void put_visible(FILE *f, ag_str_t s, size_t from, size_t n)
{
    for (size_t i = from; i < s.len && i < from + n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\r')
            fputs("\\r", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
}

/* Prints the failure (the case, the split, a short diff) for the first MAX_REPORTS of them. */
static void report(hcase_t *c, uint32_t *printed, const char *split, size_t cut, const char *what,
                   ag_str_t got)
{
    c->failures++;
    if ((*printed)++ >= MAX_REPORTS)
        return;
    size_t i = 0;
    while (i < got.len && i < c->want.len && got.ptr[i] == c->want.ptr[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr,
            "hold: %s, %s, cut at byte %zu: %s\n"
            "  released %zu bytes, the rewrite has %zu; they part at byte %zu\n"
            "  rewrite:  ...",
            c->name, split, cut, what, got.len, c->want.len, i);
    put_visible(stderr, c->want, from, i - from + 40);
    fputs("\n  released: ...", stderr);
    put_visible(stderr, got, from, i - from + 40);
    fputc('\n', stderr);
}

/* Checks the bytes released so far. 0 = good; else a description. */
static const char *check_released(const hcase_t *c, ag_str_t got)
{
    if (got.len > c->want.len || memcmp(got.ptr, c->want.ptr, got.len) != 0)
        return "the released text is not a prefix of the rewrite";
    if (c->blocked && got.len > c->block_at)
        return "text of a blocked match was released";
    return NULL;
}

/* Streams c->in cut at cuts[0..ncuts) (increasing byte offsets inside the reply) with the
 * minimal hold, checking after every push and at the end. Returns false on the first failure
 * (reported). */
static bool stream_split(hcase_t *c, const size_t *cuts, size_t ncuts, const char *split,
                         uint32_t *printed)
{
    ag_stream_t *s = ag_stream_new(c->engine, 0, NULL, NULL);
    ag_stream_set_hold(s, AG_STREAM_HOLD_MINIMAL);
    ag_stream_set_duty(s, 0); /* every due analysis, whatever the machine's speed */
    ag_buf_t out;
    ag_buf_init(&out, 1u << 24);
    ag_stream_status_t st = AG_STREAM_OK;
    bool ok = false;
    const char *why = NULL;
    size_t pos = 0, cut = 0;
    for (size_t i = 0; i <= ncuts && st == AG_STREAM_OK; i++) {
        size_t end = i < ncuts ? cuts[i] : c->in.len;
        cut = end;
        assert_int_equal(ag_stream_push(s, 3, ag_str(c->in.ptr + pos, end - pos), &out, &st),
                         AG_OK);
        pos = end;
        if ((why = check_released(c, ag_buf_str(&out))) != NULL)
            goto out;
    }
    if (st == AG_STREAM_OK) {
        cut = c->in.len;
        assert_int_equal(ag_stream_finish(s, 3, &out, &st), AG_OK);
        if ((why = check_released(c, ag_buf_str(&out))) != NULL)
            goto out;
    }
    if (st == AG_STREAM_BLOCKED && !c->blocked) {
        why = "the stream was blocked, the rewrite was not";
        goto out;
    }
    if (st == AG_STREAM_OK && c->blocked) {
        why = "the rewrite was blocked, the stream was not";
        goto out;
    }
    if (st == AG_STREAM_OK && out.len != c->want.len) {
        why = "the assembled text is shorter than the rewrite";
        goto out;
    }
    ag_stream_hold_stats_t hs;
    ag_stream_hold_stats(s, &hs);
    if (hs.violations != 0) {
        why = "the core counted a violation (a rewrite changed bytes already sent)";
        goto out;
    }
    ok = true;
out:
    if (!ok)
        report(c, printed, split, cut, why, ag_buf_str(&out));
    ag_stream_free(s);
    ag_buf_dispose(&out);
    return ok;
}

/* Offsets where a UTF-8 character starts, after the first one: the places a delta may begin. */
static size_t char_cuts(ag_str_t in, size_t *cuts)
{
    size_t n = 0;
    for (size_t i = 1; i < in.len; i++)
        if (((unsigned char)in.ptr[i] & 0xc0) != 0x80)
            cuts[n++] = i;
    return n;
}

typedef struct totals {
    uint32_t cases, changed, bad_cases;
    uint64_t pushes, cuts;
    uint32_t printed;
} totals_t;

/* (a) one character per push, (b) every cut in two pushes, for one case. */
static void check_case(hcase_t *c, totals_t *t)
{
    size_t *cuts = ag_xmalloc((c->in.len + 1) * sizeof(*cuts));
    size_t n = char_cuts(c->in, cuts);
    stream_split(c, cuts, n, "one character per push", &t->printed);
    t->pushes += n + 1;
    size_t tried = 0;
    for (size_t i = 0; i < n; i++) {
        /* a seeded sample when cuts_per_case is set: each cut kept with that many in n */
        if (cuts_per_case && n > cuts_per_case && rng() % n >= cuts_per_case)
            continue;
        tried++;
        if (!stream_split(c, &cuts[i], 1, "two pushes", &t->printed))
            break; /* one report per case for this family: the neighbours fail alike */
    }
    t->cuts += tried;
    free(cuts);
    t->cases++;
    t->changed += !ag_str_eq(c->in, c->want);
    t->bad_cases += c->failures > 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void test_golden_corpus_every_split(void **state)
{
    struct dirent **names = NULL;
    int nnames = scandir("tests/golden", &names, NULL, by_name);
    assert_true(nnames > 0);
    totals_t t;
    memset(&t, 0, sizeof(t));
    ag_buf_t in, want;
    ag_buf_init(&in, 1u << 24);
    ag_buf_init(&want, 1u << 26);
    for (int i = 0; i < nnames; i++) {
        const char *name = names[i]->d_name;
        char p[512];
        snprintf(p, sizeof(p), "tests/golden/%s/tool.txt", name);
        if (name[0] == '.' || access(p, F_OK) == 0)
            continue; /* tool-call cases go through ag_toolcode, not the stream core */
        snprintf(p, sizeof(p), "tests/golden/%s/input.md", name);
        ag_buf_reset(&in);
        if (ag_read_file(p, &in) != AG_OK)
            continue;
        ag_rules_t *own = NULL;
        snprintf(p, sizeof(p), "tests/golden/%s/rules.yaml", name);
        if (access(p, F_OK) == 0) {
            const char *files[] = {p};
            ag_diag_t d;
            memset(&d, 0, sizeof(d));
            if (ag_rules_load_files(files, 1, &own, &d) != AG_OK) {
                ag_diag_print(&d, stderr);
                fail_msg("%s: its rules.yaml does not load", name);
            }
        }
        ag_engine_t *engine = engine_for(own ? own : mastra, in.len);
        hcase_t c;
        case_init(&c, name, engine, ag_buf_str(&in), &want);
        check_case(&c, &t);
        ag_engine_free(engine);
        ag_rules_free(own);
    }
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    ag_buf_dispose(&in);
    ag_buf_dispose(&want);
    print_message("hold: %u golden text cases (%u changed by the rewrite), %llu one-character "
                  "pushes, %llu two-push cuts\n",
                  t.cases, t.changed, (unsigned long long)t.pushes, (unsigned long long)t.cuts);
    if (t.bad_cases)
        fail_msg("hold: %u of %u cases released text the rewrite does not have (first %d "
                 "failures above)",
                 t.bad_cases, t.cases, MAX_REPORTS);
    assert_true(t.cases >= 100);
    assert_true(t.changed >= 50);
}

/* The analysis of a growing block reparses incrementally from its previous parse (hold.h memo):
 * at every step it must find what an analysis from scratch finds. Every TS block of the golden
 * corpus, grown by 1 to 12 bytes at a time (seeded). */
static void test_incremental_analysis_equals_fresh(void **state)
{
    struct dirent **names = NULL;
    int nnames = scandir("tests/golden", &names, NULL, by_name);
    assert_true(nnames > 0);
    ag_buf_t in;
    ag_buf_init(&in, 1u << 24);
    ag_block_t *blocks = ag_xcalloc(64, sizeof(*blocks));
    ag_hold_memo_t *memo = ag_hold_memo_new(), *fresh = ag_hold_memo_new();
    uint64_t steps = 0, differ = 0;
    for (int i = 0; i < nnames; i++) {
        const char *name = names[i]->d_name;
        char p[512];
        snprintf(p, sizeof(p), "tests/golden/%s/input.md", name);
        ag_buf_reset(&in);
        if (name[0] == '.' || ag_read_file(p, &in) != AG_OK)
            continue;
        ag_rules_t *own = NULL;
        snprintf(p, sizeof(p), "tests/golden/%s/rules.yaml", name);
        if (access(p, F_OK) == 0) {
            const char *files[] = {p};
            ag_diag_t d;
            memset(&d, 0, sizeof(d));
            assert_int_equal(ag_rules_load_files(files, 1, &own, &d), AG_OK);
        }
        ag_engine_t *e = engine_for(own ? own : mastra, in.len);
        uint32_t nb = 0;
        if (ag_fence_find(ag_buf_str(&in), blocks, 64, &nb) != AG_OK)
            nb = 0;
        for (uint32_t b = 0; b < nb; b++) {
            if (ag_engine_block_lang(e, &blocks[b]) < 0)
                continue;
            ag_hold_memo_reset(memo);
            uint32_t len = blocks[b].end - blocks[b].start;
            for (uint32_t n = 0; n < len;) {
                n += 1 + rng() % 12;
                if (n > len)
                    n = len;
                ag_str_t code = ag_str(in.ptr + blocks[b].start, n);
                ag_hold_end_t e1, e2;
                uint32_t f1 = ag_hold_frontier(e, &blocks[b], code, memo, &e1);
                ag_hold_memo_reset(fresh);
                uint32_t f2 = ag_hold_frontier(e, &blocks[b], code, fresh, &e2);
                steps++;
                if (f1 != f2 || e1.quote != e2.quote || e1.line_comment != e2.line_comment ||
                    e1.settled != e2.settled || e1.free != e2.free) {
                    if (differ++ < MAX_REPORTS)
                        fprintf(stderr,
                                "hold: %s block %u, %u bytes: incremental frontier %u (settled "
                                "%d), from scratch %u (settled %d)\n",
                                name, b, n, f1, e1.settled, f2, e2.settled);
                }
            }
        }
        ag_engine_free(e);
        ag_rules_free(own);
    }
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    ag_hold_memo_free(memo);
    ag_hold_memo_free(fresh);
    free(blocks);
    ag_buf_dispose(&in);
    print_message("hold: %llu analyses of growing blocks, incremental and from scratch\n",
                  (unsigned long long)steps);
    assert_true(steps > 1000);
    if (differ)
        fail_msg("hold: %llu of %llu incremental analyses differ from scratch (first %d above)",
                 (unsigned long long)differ, (unsigned long long)steps, MAX_REPORTS);
}

/* An import still being typed may end up no import at all (its string broken by the line end):
 * neither where a missing import goes nor whether one is missing can be read from it yet. Every
 * split of each reply (found by fuzz_hold: the first released the line of `import { z }` before
 * the import the rewrite puts above it). */
static void test_import_being_typed(void **state)
{
    static const char *const replies[] = {
        "Agent:\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n"
        "import { z } from 'z async (\n"
        "export const a = new Agent({ name: 'a', model: anthropic('claude-3-5-sonnet') });\n"
        "```\n",
        "Agent:\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n"
        "import { openai } from 'x\n"
        "export const a = new Agent({ name: 'a', model: anthropic('claude-3-5-sonnet') });\n"
        "```\n",
    };
    ag_buf_t want;
    ag_buf_init(&want, 1u << 20);
    totals_t t;
    memset(&t, 0, sizeof(t));
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        ag_str_t in = ag_cstr(replies[i]);
        ag_engine_t *engine = engine_for(mastra, in.len);
        char name[32];
        snprintf(name, sizeof(name), "import being typed %zu", i);
        hcase_t c;
        case_init(&c, name, engine, in, &want);
        assert_non_null(strstr(want.ptr, "agent';\nimport { openai } from '@ai-sdk/openai';\n"));
        check_case(&c, &t);
        ag_engine_free(engine);
    }
    ag_buf_dispose(&want);
    if (t.bad_cases)
        fail_msg("hold: %u of %u replies released text the rewrite changes (above)", t.bad_cases,
                 t.cases);
}

/* A clock for ag_stream_set_clock: each read moves it by tick (an analysis, between its two
 * reads, then "takes" one tick); the test moves it between pushes. */
typedef struct fake_clock {
    uint64_t now, tick;
} fake_clock_t;

static uint64_t fake_now(void *ud)
{
    fake_clock_t *c = ud;
    c->now += c->tick;
    return c->now;
}

/* Streams reply in 16 deltas with the given duty; gap: clock time between two pushes. Returns
 * the analyses; *early: bytes released before the finish. Checks the assembled text. */
static uint64_t duty_run(ag_engine_t *e, ag_str_t reply, ag_str_t want, uint32_t duty, uint64_t gap,
                         size_t *early)
{
    fake_clock_t clk = {.now = 1000000, .tick = 20000}; /* 20 us per analysis */
    ag_stream_t *s = ag_stream_new(e, 0, NULL, NULL);
    ag_stream_set_hold(s, AG_STREAM_HOLD_MINIMAL);
    ag_stream_set_duty(s, duty);
    ag_stream_set_clock(s, fake_now, &clk);
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    ag_stream_status_t st;
    size_t pos = 0;
    for (uint32_t i = 0; i < 16; i++) {
        size_t end = reply.len * (i + 1) / 16;
        assert_int_equal(ag_stream_push(s, 1, ag_str(reply.ptr + pos, end - pos), &out, &st),
                         AG_OK);
        pos = end;
        clk.now += gap;
    }
    *early = out.len;
    assert_int_equal(ag_stream_finish(s, 1, &out, &st), AG_OK);
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.ptr, want.ptr, want.len);
    ag_stream_hold_stats_t hs;
    ag_stream_hold_stats(s, &hs);
    assert_int_equal(hs.violations, 0);
    ag_stream_free(s);
    ag_buf_dispose(&out);
    return hs.analyses;
}

/* The duty (ag_stream_set_duty): deltas that come in a burst are analysed once or twice, not
 * each; deltas at a model's pace (milliseconds apart) are each analysed as without a duty, and
 * release the same. */
static void test_duty_analyses_a_burst_once(void **state)
{
    static const char reply[] =
        "Here is the agent.\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n"
        "import { openai } from '@ai-sdk/openai';\n"
        "import { orderLookup } from '../tools/orders';\n\n"
        "export const orderAgent = new Agent({\n  id: 'order-agent',\n"
        "  name: 'Order Agent',\n  instructions: 'You help customers with their orders: look "
        "them up, explain the status and offer a refund when late.',\n"
        "  tools: { orderLookup },\n  model: openai('gpt-4o'),\n});\n```\n\nDone.\n";
    ag_str_t in = ag_cstr(reply);
    ag_engine_t *e = engine_for(mastra, in.len);
    ag_buf_t want;
    ag_buf_init(&want, 1u << 20);
    ag_result_t res;
    assert_int_equal(ag_engine_rewrite(e, in, &want, &res), AG_OK);
    assert_true(res.rewrites > 0);
    size_t early_all, early_burst, early_paced;
    uint64_t all = duty_run(e, in, ag_buf_str(&want), 0, 0, &early_all);
    uint64_t burst = duty_run(e, in, ag_buf_str(&want), AG_STREAM_DUTY, 0, &early_burst);
    uint64_t paced = duty_run(e, in, ag_buf_str(&want), AG_STREAM_DUTY, 5000000, &early_paced);
    print_message("hold: duty: %llu analyses without, %llu in a burst, %llu at 5 ms a delta\n",
                  (unsigned long long)all, (unsigned long long)burst, (unsigned long long)paced);
    assert_true(all >= 6);
    assert_true(burst <= 2);
    assert_int_equal(paced, all);
    assert_int_equal(early_paced, early_all);
    assert_true(early_all > 0);
    ag_buf_dispose(&want);
    ag_engine_free(e);
}

/* A block rule: the stream ends blocked and releases nothing of the match, whatever the split. */
static void test_block_rule_releases_nothing_of_the_match(void **state)
{
    static const char block[] = "\n---\nid: no-eval\nlanguage: TypeScript\nmessage: no eval\n"
                                "rule:\n  pattern: eval($X)\nmetadata:\n  astgate:\n"
                                "    action: block\n";
    static const char *const replies[] = {
        "Here you go:\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n"
        "const agent = new Agent({ name: 'a', model: 'openai/gpt-4o' });\n"
        "const code = eval(input);\n```\n\nDone.\n",
        "```ts\nconst x = 1;\n```\n\n```ts\nconst y = eval(x);\nconst z = 2;\n```\n",
        "import { Agent } from '@mastra/core/agent';\nconst r = eval('2 + 2');\n",
    };
    ag_buf_t text, want;
    ag_buf_init(&text, 1u << 24);
    ag_buf_init(&want, 1u << 24);
    ag_rules_t *rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_read_file("rules/mastra.yaml", &text), AG_OK);
    assert_int_equal(ag_buf_append(&text, block, strlen(block)), AG_OK);
    assert_int_equal(ag_rules_load_mem(ag_buf_str(&text), "mastra+block", &rules, &d), AG_OK);
    totals_t t;
    memset(&t, 0, sizeof(t));
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        ag_str_t in = ag_cstr(replies[i]);
        ag_engine_t *engine = engine_for(rules, in.len);
        char name[32];
        snprintf(name, sizeof(name), "block reply %zu", i);
        hcase_t c;
        case_init(&c, name, engine, in, &want);
        assert_true(c.blocked);
        check_case(&c, &t);
        ag_engine_free(engine);
    }
    ag_rules_free(rules);
    ag_buf_dispose(&text);
    ag_buf_dispose(&want);
    if (t.bad_cases)
        fail_msg("hold: %u of %u block-rule replies failed (above)", t.bad_cases, t.cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_corpus_every_split),
        cmocka_unit_test(test_block_rule_releases_nothing_of_the_match),
        cmocka_unit_test(test_incremental_analysis_equals_fresh),
        cmocka_unit_test(test_duty_analyses_a_burst_once),
        cmocka_unit_test(test_import_being_typed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* libFuzzer target for the rule loader: the input is a rule file. Whatever it holds, loading
 * returns AG_OK with at least one rule, or AG_EINVAL with a message and a position inside the
 * input; a rule set that loads also runs on a small reply without trouble. Leaks are LSan's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "rules.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_rules_load: check failed: %s (line %d)\n", #expr, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u << 10)

/* A reply that the rules of the seed corpus can match, to run a loaded rule set once. */
static const char REPLY[] = "Here:\n"
                            "```ts\n"
                            "import { Agent } from '@mastra/core/agent';\n"
                            "const base = { model: 'gpt-4o' };\n"
                            "export const a = new Agent({ name: 'a', ...base, model: openai('x') "
                            "});\n"
                            "foo(bar, 'baz'); old(thing_v1);\n"
                            "```\n";

/* Upper bounds for a diagnostic's position: lines as libyaml counts them (LF, CR, CRLF once, and
 * also NEL, LS, PS), and the longest line in bytes between LF/CR only (yamldoc positions reader
 * errors itself and does not break lines at NEL/LS/PS). */
static uint32_t count_lines(const uint8_t *p, size_t n, size_t *longest)
{
    uint32_t lines = 1;
    size_t cur = 0;
    *longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' || p[i] == '\r') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            if (cur > *longest)
                *longest = cur;
            cur = 0;
            lines++;
            continue;
        }
        cur++;
        if ((p[i] == 0xC2 && i + 1 < n && p[i + 1] == 0x85) ||
            (p[i] == 0xE2 && i + 2 < n && p[i + 1] == 0x80 &&
             (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)))
            lines++;
    }
    if (cur > *longest)
        *longest = cur;
    return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    ag_rules_t *r = (ag_rules_t *)(uintptr_t)1; /* must stay untouched on error */
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    int rc = ag_rules_load_mem(ag_str((const char *)data, size), "fuzz.yaml", &r, &d);
    CHECK(rc == AG_OK || rc == AG_EINVAL);
    if (rc == AG_EINVAL) {
        size_t longest;
        uint32_t lines = count_lines(data, size, &longest);
        CHECK(r == (ag_rules_t *)(uintptr_t)1);
        CHECK(d.msg[0] != '\0');
        CHECK(strcmp(d.file, "fuzz.yaml") == 0);
        if (d.line > lines + 1) {
            fprintf(stderr, "diag %u:%u (%u lines): %s\n", d.line, d.col, lines, d.msg);
            CHECK(d.line <= lines + 1);
        }
        /* a column is at most one past the end of the longest line (columns count characters,
         * lines are measured in bytes here, so this bound is loose) */
        if (d.col > longest + 2) {
            fprintf(stderr, "diag %u:%u (longest line %zu bytes): %s\n", d.line, d.col, longest,
                    d.msg);
            CHECK(d.col <= longest + 2);
        }
        return 0;
    }
    CHECK(r != NULL && r != (ag_rules_t *)(uintptr_t)1);
    CHECK(ag_rules_count(r) >= 1);
    /* a rule set that loads must run */
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.regex_match_limit = 100000;
    opts.parse_timeout_us = 200000;
    ag_engine_t *e = ag_engine_new(r, &opts);
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    ag_str_t reply = ag_str(REPLY, sizeof(REPLY) - 1);
    CHECK(ag_engine_rewrite(e, reply, &out, &res) == AG_OK);
    if (res.rewrites == 0)
        CHECK(out.len == reply.len && memcmp(out.ptr, reply.ptr, reply.len) == 0);
    ag_buf_dispose(&out);
    ag_engine_free(e);
    ag_rules_free(r);
    return 0;
}

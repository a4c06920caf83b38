/* libFuzzer target for the rewrite engine with rules/mastra.yaml (run from the repository root,
 * or set ASTGATE_FUZZ_RULES). The input is a reply. Checks: the output is exactly the input with
 * each applied event's `before` (found at its offset, line and column) replaced by its `after`,
 * edits in order and disjoint; the counts match the events; rewriting the output again changes
 * nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "fuzz.h"
#include "rules.h"

#define CHECK(expr) FUZZ_CHECK("fuzz_rewrite", expr)

#define FUZZ_MAX_INPUT (256u << 10)

static ag_rules_t *rules;
static ag_engine_t *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rules = fuzz_load_rules("fuzz_rewrite");
    engine = ag_engine_new(rules, NULL);
    return 0;
}

typedef struct applied {
    uint32_t offset, line, col;
    char *before, *after;
    size_t before_len, after_len;
} applied_t;

static void line_col(const char *s, uint32_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1, start = 0;
    for (uint32_t i = 0; i < off; i++)
        if (s[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = off - start + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    ag_str_t in = ag_str((const char *)data, size);
    ag_buf_t out1, out2, rebuilt;
    ag_buf_init(&out1, 64u << 20);
    ag_buf_init(&out2, 64u << 20);
    ag_buf_init(&rebuilt, 64u << 20);
    ag_result_t res;
    CHECK(ag_engine_rewrite(engine, in, &out1, &res) == AG_OK);

    /* copy the applied edits (events are borrowed until the next call) */
    applied_t *ap = calloc(res.nevents ? res.nevents : 1, sizeof(*ap));
    CHECK(ap != NULL);
    uint32_t nap = 0, napplied = 0, ndropped = 0;
    for (uint32_t i = 0; i < res.nevents; i++) {
        const ag_event_t *ev = &res.events[i];
        CHECK(ev->rule != NULL && ev->line >= 1 && ev->col >= 1);
        CHECK(ev->offset <= size);
        uint32_t line, col;
        line_col(in.ptr, ev->offset, &line, &col);
        CHECK(ev->line == line && ev->col == col);
        if (ev->action != AG_ACTION_REWRITE) {
            CHECK(ev->after.len == 0);
            continue;
        }
        if (!ev->applied) {
            ndropped++;
            CHECK(ev->reason != NULL && ev->reason[0] != '\0');
            continue;
        }
        napplied++;
        CHECK(ev->offset + ev->before.len <= size);
        CHECK(memcmp(in.ptr + ev->offset, ev->before.ptr, ev->before.len) == 0);
        applied_t *a = &ap[nap++];
        a->offset = ev->offset;
        a->line = ev->line;
        a->col = ev->col;
        a->before_len = ev->before.len;
        a->after_len = ev->after.len;
        a->before = malloc(a->before_len + 1);
        a->after = malloc(a->after_len + 1);
        CHECK(a->before && a->after);
        memcpy(a->before, ev->before.ptr, a->before_len);
        memcpy(a->after, ev->after.ptr, a->after_len);
    }
    CHECK(res.rewrites == napplied);
    CHECK(res.dropped == ndropped);

    /* events of applied edits come in reply order and never overlap; rebuild the output */
    size_t pos = 0;
    long long delta = 0;
    for (uint32_t i = 0; i < nap; i++) {
        CHECK(ap[i].offset >= pos);
        CHECK(ag_buf_append(&rebuilt, in.ptr + pos, ap[i].offset - pos) == AG_OK);
        CHECK(ag_buf_append(&rebuilt, ap[i].after, ap[i].after_len) == AG_OK);
        pos = ap[i].offset + ap[i].before_len;
        delta += (long long)ap[i].after_len - (long long)ap[i].before_len;
    }
    CHECK(ag_buf_append(&rebuilt, in.ptr + pos, size - pos) == AG_OK);
    CHECK((long long)out1.len == (long long)size + delta);
    CHECK(rebuilt.len == out1.len && memcmp(rebuilt.ptr, out1.ptr, out1.len) == 0);
    if (nap == 0)
        CHECK(out1.len == size && memcmp(out1.ptr, in.ptr, size) == 0);

    /* idempotent: the output is a fixed point */
    CHECK(ag_engine_rewrite(engine, ag_buf_str(&out1), &out2, &res) == AG_OK);
    if (out2.len != out1.len || memcmp(out2.ptr, out1.ptr, out1.len) != 0) {
        fprintf(stderr, "fuzz_rewrite: second rewrite changed the output (%u rewrites)\n",
                res.rewrites);
        for (uint32_t i = 0; i < res.nevents; i++)
            fprintf(stderr, "  %u:%u applied=%d `%.*s` -> `%.*s`\n", res.events[i].line,
                    res.events[i].col, res.events[i].applied, (int)res.events[i].before.len,
                    res.events[i].before.ptr, (int)res.events[i].after.len,
                    res.events[i].after.ptr);
        CHECK(!"idempotent");
    }

    for (uint32_t i = 0; i < nap; i++) {
        free(ap[i].before);
        free(ap[i].after);
    }
    free(ap);
    ag_buf_dispose(&out1);
    ag_buf_dispose(&out2);
    ag_buf_dispose(&rebuilt);
    return 0;
}

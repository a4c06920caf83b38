/* libFuzzer target for the streaming hold (stream.hold: minimal) with rules/mastra.yaml (run from
 * the repository root, or set ASTGATE_FUZZ_RULES). The input is a reply; its first byte seeds
 * the cut into deltas (whole UTF-8 characters, 1 to 16 bytes). Checks, after every delta: what the
 * core released so far is a prefix of ag_engine_rewrite of the whole reply; at the end: the
 * assembled text equals it, and the core counted no violation. This is the property test of
 * tests/unit/test_hold.c on inputs of the fuzzer's making. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "fuzz.h"
#include "rules.h"
#include "stream.h"

#define CHECK(expr) FUZZ_CHECK("fuzz_hold", expr)

#define FUZZ_MAX_INPUT (64u << 10)

static ag_rules_t *rules;
static ag_engine_t *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rules = fuzz_load_rules("fuzz_hold");
    ag_engine_opts_t eo;
    memset(&eo, 0, sizeof(eo));
    eo.bare = true; /* as the proxy's default configuration */
    engine = ag_engine_new(rules, &eo);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    ag_str_t in = ag_str((const char *)data + 1, size - 1);
    ag_buf_t want, out;
    ag_buf_init(&want, 16u << 20);
    ag_buf_init(&out, 16u << 20);
    ag_result_t res;
    CHECK(ag_engine_rewrite(engine, in, &want, &res) == AG_OK);
    ag_stream_t *s = ag_stream_new(engine, 4u << 20, NULL, NULL);
    ag_stream_set_hold(s, AG_STREAM_HOLD_MINIMAL);
    ag_stream_set_duty(s, 0); /* every due analysis */
    ag_stream_status_t st = AG_STREAM_OK;
    for (size_t i = 0; i < in.len && st == AG_STREAM_OK;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 16;
        if (n > in.len - i)
            n = in.len - i;
        while (i + n < in.len && ((unsigned char)in.ptr[i + n] & 0xC0) == 0x80)
            n++;
        CHECK(ag_stream_push(s, 0, ag_str(in.ptr + i, n), &out, &st) == AG_OK);
        CHECK(out.len <= want.len && (out.len == 0 || memcmp(out.ptr, want.ptr, out.len) == 0));
        i += n;
    }
    if (st == AG_STREAM_OK) {
        CHECK(ag_stream_finish(s, 0, &out, &st) == AG_OK);
        if (st == AG_STREAM_OK)
            CHECK(out.len == want.len && (out.len == 0 || memcmp(out.ptr, want.ptr, out.len) == 0));
    }
    if (st == AG_STREAM_OK || res.blocked == 0) {
        ag_stream_hold_stats_t hs;
        ag_stream_hold_stats(s, &hs);
        CHECK(hs.violations == 0);
    }
    ag_stream_free(s);
    ag_buf_dispose(&want);
    ag_buf_dispose(&out);
    return 0;
}

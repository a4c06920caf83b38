/* The streaming core: what the deltas add up to equals the non-streamed rewrite, whatever the
 * split; prose goes out at once; code is held until its fence closes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "rewrite.h"
#include "rules.h"
#include "stream.h"

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

/* Streams text in pieces (1-byte pieces when max_piece is 1) and returns the assembled output. */
static void stream_text(ag_str_t text, uint32_t max_piece, ag_buf_t *out)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_stream_status_t st;
    size_t pos = 0;
    while (pos < text.len) {
        size_t n = 1 + rng() % max_piece;
        if (n > text.len - pos)
            n = text.len - pos;
        assert_int_equal(ag_stream_push(s, 7, ag_str(text.ptr + pos, n), out, &st), AG_OK);
        assert_int_equal(st, AG_STREAM_OK);
        pos += n;
    }
    assert_int_equal(ag_stream_finish(s, 7, out, &st), AG_OK);
    ag_stream_free(s);
}

static void test_golden_corpus_any_split(void **state)
{
    DIR *dir = opendir("tests/golden");
    assert_non_null(dir);
    struct dirent *de;
    int cases = 0, changed = 0;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "tests/golden/%s/input.md", de->d_name);
        ag_buf_t in, want, got;
        ag_buf_init(&in, 1u << 24);
        ag_buf_init(&want, 1u << 24);
        ag_buf_init(&got, 1u << 24);
        if (ag_read_file(path, &in) != AG_OK) {
            ag_buf_dispose(&in);
            continue;
        }
        ag_result_t res;
        assert_int_equal(ag_engine_rewrite(engine, ag_buf_str(&in), &want, &res), AG_OK);
        changed += res.rewrites > 0;
        static const uint32_t pieces[] = {1, 2, 3, 7, 16, 64, 1000000};
        for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
            rng_state = (uint64_t)cases * 31 + p;
            ag_buf_reset(&got);
            stream_text(ag_buf_str(&in), pieces[p], &got);
            if (!ag_str_eq(ag_buf_str(&got), ag_buf_str(&want)))
                fail_msg("%s, pieces of up to %u bytes: the stream differs from the rewrite", path,
                         pieces[p]);
        }
        cases++;
        ag_buf_dispose(&in);
        ag_buf_dispose(&want);
        ag_buf_dispose(&got);
    }
    closedir(dir);
    assert_true(cases >= 40);
    assert_true(changed >= 20);
}

static void test_prose_goes_out_at_once(void **state)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("Here is your agent"), &out, &st), AG_OK);
    assert_string_equal(out.ptr, "Here is your agent");
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT(":\n\n``"), &out, &st), AG_OK);
    /* the backticks could open a fence: held */
    assert_string_equal(out.ptr, "Here is your agent:\n\n");
    assert_int_equal(ag_stream_held(s, 0), 2);
    ag_stream_free(s);
    ag_buf_dispose(&out);
}

static void test_code_held_until_fence_closes(void **state)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(ag_stream_push(s, 0,
                                    AG_STR_LIT("Code:\n```ts\nconst a = new Agent({ model: "
                                               "'openai/gpt-4o' });\n"),
                                    &out, &st),
                     AG_OK);
    assert_string_equal(out.ptr, "Code:\n");
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("``"), &out, &st), AG_OK);
    assert_string_equal(out.ptr, "Code:\n");
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("`\nDone."), &out, &st), AG_OK);
    assert_string_equal(out.ptr, "Code:\n```ts\nconst a = new Agent({ model: "
                                 "'openai/gpt-4.1-nano' });\n```\nDone.");
    ag_stream_free(s);
    ag_buf_dispose(&out);
}

static void test_other_languages_stream_through(void **state)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(
        ag_stream_push(s, 0, AG_STR_LIT("```python\nagent = Agent(model='gpt-4')"), &out, &st),
        AG_OK);
    assert_string_equal(out.ptr, "```python\nagent = Agent(model='gpt-4')");
    ag_stream_free(s);
    ag_buf_dispose(&out);
}

static void test_keys_are_independent(void **state)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_buf_t a, b;
    ag_buf_init(&a, 1 << 20);
    ag_buf_init(&b, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(
        ag_stream_push(s, 0, AG_STR_LIT("```ts\nnew Agent({ model: 'x' })\n"), &a, &st), AG_OK);
    assert_int_equal(ag_stream_push(s, 1, AG_STR_LIT("prose "), &b, &st), AG_OK);
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("```\n"), &a, &st), AG_OK);
    assert_int_equal(ag_stream_push(s, 1, AG_STR_LIT("more"), &b, &st), AG_OK);
    assert_int_equal(ag_stream_finish(s, 0, &a, &st), AG_OK);
    assert_int_equal(ag_stream_finish(s, 1, &b, &st), AG_OK);
    assert_string_equal(a.ptr, "```ts\nnew Agent({ model: 'openai/gpt-4.1-nano' })\n```\n");
    assert_string_equal(b.ptr, "prose more");
    ag_stream_free(s);
    ag_buf_dispose(&a);
    ag_buf_dispose(&b);
}

static void test_bare_code_is_held_prose_is_not(void **state)
{
    ag_stream_t *s = ag_stream_new(engine, 0, NULL, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(
        ag_stream_push(s, 0, AG_STR_LIT("import { Agent } from '@mastra/core';\n"), &out, &st),
        AG_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("new Agent({ model: 'a/b' });\n"), &out, &st),
                     AG_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(ag_stream_finish(s, 0, &out, &st), AG_OK);
    assert_string_equal(out.ptr, "import { Agent } from '@mastra/core';\n"
                                 "new Agent({ model: 'openai/gpt-4.1-nano' });\n");
    ag_stream_free(s);
    ag_buf_reset(&out);
    s = ag_stream_new(engine, 0, NULL, NULL);
    assert_int_equal(ag_stream_push(s, 0, AG_STR_LIT("Sure"), &out, &st), AG_OK);
    assert_string_equal(out.ptr, "Sure");
    ag_stream_free(s);
    ag_buf_dispose(&out);
}

static void test_block_rule_stops_the_key(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(AG_STR_LIT("id: no-eval\nlanguage: ts\n"
                                                  "rule: {pattern: eval($X)}\n"
                                                  "metadata: {astgate: {action: block}}\n"),
                                       "t.yaml", &r, &d),
                     AG_OK);
    ag_engine_t *e = ag_engine_new(r, NULL);
    ag_stream_t *s = ag_stream_new(e, 0, NULL, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_stream_status_t st;
    assert_int_equal(
        ag_stream_push(s, 0, AG_STR_LIT("Run:\n```ts\neval(x)\n```\nafter"), &out, &st), AG_OK);
    assert_int_equal(st, AG_STREAM_BLOCKED);
    assert_string_equal(out.ptr, "Run:\n");
    ag_stream_free(s);
    ag_engine_free(e);
    ag_rules_free(r);
    ag_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_corpus_any_split),
        cmocka_unit_test(test_prose_goes_out_at_once),
        cmocka_unit_test(test_code_held_until_fence_closes),
        cmocka_unit_test(test_other_languages_stream_through),
        cmocka_unit_test(test_keys_are_independent),
        cmocka_unit_test(test_bare_code_is_held_prose_is_not),
        cmocka_unit_test(test_block_rule_stops_the_key),
    };
    return cmocka_run_group_tests_name("stream", tests, setup, teardown);
}

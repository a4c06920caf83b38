/* Shadow mode: a rule (or the whole engine) in shadow mode reports what it would do and changes
 * and blocks nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "rewrite.h"
#include "rules.h"

static const char RULES[] =
    "id: pin\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
    "metadata: {astgate: {mode: shadow, ensure: {target: $C, key: model, string: nano}}}\n"
    "---\n"
    "id: no-eval\nlanguage: ts\nrule: {pattern: eval($X)}\n"
    "metadata: {astgate: {action: block, mode: shadow}}\n"
    "---\n"
    "id: pin-name\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
    "metadata: {astgate: {ensure: {target: $C, key: name, string: n}}}\n";

static const char REPLY[] = "```ts\neval(x);\nnew Agent({ name: 'a', model: 'gpt-4' });\n```\n";

static void test_rule_in_shadow_mode(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(AG_STR_LIT(RULES), "t.yaml", &r, &d), AG_OK);
    ag_engine_t *e = ag_engine_new(r, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_result_t res;
    assert_int_equal(ag_engine_rewrite(e, AG_STR_LIT(REPLY), &out, &res), AG_OK);
    /* the enforced rule rewrote; the shadowed ones changed and blocked nothing */
    assert_string_equal(out.ptr,
                        "```ts\neval(x);\nnew Agent({ name: 'n', model: 'gpt-4' });\n```\n");
    assert_int_equal(res.rewrites, 1);
    assert_int_equal(res.blocked, 0);
    assert_int_equal(res.shadowed, 2);
    int shadow_events = 0;
    for (uint32_t i = 0; i < res.nevents; i++) {
        const ag_event_t *ev = &res.events[i];
        if (strcmp(ev->rule, "pin-name") == 0) {
            assert_true(ev->applied);
            assert_false(ev->shadow);
        } else {
            assert_true(ev->shadow);
            assert_false(ev->applied);
            shadow_events++;
        }
        if (strcmp(ev->rule, "pin") == 0)
            assert_true(ag_str_eqc(ev->after, "'nano'"));
    }
    assert_int_equal(shadow_events, 2);
    ag_engine_free(e);
    ag_rules_free(r);
    ag_buf_dispose(&out);
}

static void test_engine_in_shadow_mode(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(AG_STR_LIT(RULES), "t.yaml", &r, &d), AG_OK);
    ag_engine_opts_t o = {0};
    o.shadow = true;
    ag_engine_t *e = ag_engine_new(r, &o);
    ag_buf_t out;
    ag_buf_init(&out, 1 << 20);
    ag_result_t res;
    assert_int_equal(ag_engine_rewrite(e, AG_STR_LIT(REPLY), &out, &res), AG_OK);
    assert_string_equal(out.ptr, REPLY);
    assert_int_equal(res.rewrites, 0);
    assert_int_equal(res.blocked, 0);
    assert_int_equal(res.shadowed, 3);
    ag_engine_free(e);
    ag_rules_free(r);
    ag_buf_dispose(&out);
}

static void test_bad_mode_is_refused(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(AG_STR_LIT("id: a\nlanguage: ts\nrule: {kind: identifier}\n"
                                                  "metadata: {astgate: {mode: maybe}}\n"),
                                       "t.yaml", &r, &d),
                     AG_EINVAL);
    assert_int_equal(d.line, 4);
    assert_non_null(strstr(d.msg, "enforce or shadow"));
}

static void test_bad_fence_language_is_refused(void **state)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(
        ag_rules_load_mem(AG_STR_LIT("id: a\nlanguage: ts\nrule: {kind: identifier}\n"
                                     "metadata:\n  astgate:\n    fences: [ts, 'type script']\n"),
                          "t.yaml", &r, &d),
        AG_EINVAL);
    assert_int_equal(d.line, 6);
    assert_int_equal(d.col, 18);
    assert_non_null(strstr(d.msg, "fence language"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_in_shadow_mode),
        cmocka_unit_test(test_engine_in_shadow_mode),
        cmocka_unit_test(test_bad_mode_is_refused),
        cmocka_unit_test(test_bad_fence_language_is_refused),
    };
    return cmocka_run_group_tests_name("shadow", tests, NULL, NULL);
}

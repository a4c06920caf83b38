/* Per-rule counters across reloads: counts are kept by rule id, a retired rule set's counts are
 * folded into the totals, and the reload figures are exposed as Prometheus reports its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics.h"
#include "rules.h"

static ag_rules_t *load(const char *text)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(ag_rules_load_mem(ag_cstr(text), "t.yaml", &r, &d), AG_OK);
    return r;
}

#define RULE(id) "id: " id "\nlanguage: ts\nrule: {pattern: eval($X)}\n"

/* the value of one exposition line, or -1 when the line is missing */
static double value(const ag_buf_t *o, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = o->ptr; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = nl ? nl + 1 : NULL;
    }
    return -1;
}

static void render(ag_buf_t *o, ag_mreg_t *reg)
{
    ag_wmetrics_t w;
    ag_wmetrics_init(&w);
    ag_wmetrics_t *ws[1] = {&w};
    ag_buf_reset(o);
    assert_int_equal(ag_metrics_render(o, ws, 1, reg), AG_OK);
}

static void test_counts_survive_a_reload_by_rule_id(void **state)
{
    (void)state;
    ag_mreg_t reg;
    ag_mreg_init(&reg);
    ag_buf_t o;
    ag_buf_init(&o, 1 << 20);
    ag_rules_t *r1 = load(RULE("a") "---\n" RULE("b"));
    /* two workers under the first rule set */
    ag_rmetrics_t *w0 = ag_rmetrics_new(&reg, r1);
    ag_rmetrics_t *w1 = ag_rmetrics_new(&reg, r1);
    ag_rm_inc(w0, 0, AG_RM_REWRITES);
    ag_rm_inc(w1, 0, AG_RM_REWRITES);
    ag_rm_inc(w1, 1, AG_RM_FLAGS);
    ag_rm_inc(w1, 7, AG_RM_FLAGS); /* out of range: ignored */
    render(&o, &reg);
    assert_true(value(&o, "astgate_rewrites_total{rule=\"a\"}") == 2);
    assert_true(value(&o, "astgate_flags_total{rule=\"b\"}") == 1);
    /* the reloaded set drops b, reorders and adds c: a keeps counting from 2 */
    ag_rules_t *r2 = load(RULE("c") "---\n" RULE("a"));
    ag_rmetrics_t *w0b = ag_rmetrics_new(&reg, r2);
    ag_rmetrics_free(&reg, w0);
    ag_rm_inc(w0b, 1, AG_RM_REWRITES);
    ag_rm_inc(w0b, 0, AG_RM_BLOCKS);
    render(&o, &reg);
    assert_true(value(&o, "astgate_rewrites_total{rule=\"a\"}") == 3);
    assert_true(value(&o, "astgate_blocks_total{rule=\"c\"}") == 1);
    /* a rule no longer loaded keeps its last value; each id appears once */
    ag_rmetrics_free(&reg, w1);
    render(&o, &reg);
    assert_true(value(&o, "astgate_flags_total{rule=\"b\"}") == 1);
    assert_true(value(&o, "astgate_rewrites_total{rule=\"a\"}") == 3);
    const char *first = strstr(o.ptr, "astgate_rewrites_total{rule=\"a\"}");
    assert_non_null(first);
    assert_null(strstr(first + 1, "astgate_rewrites_total{rule=\"a\"}"));
    ag_rmetrics_free(&reg, w0b);
    render(&o, &reg);
    assert_true(value(&o, "astgate_rewrites_total{rule=\"a\"}") == 3);
    ag_buf_dispose(&o);
    ag_mreg_dispose(&reg);
    ag_rules_free(r1);
    ag_rules_free(r2);
}

static void test_reload_figures(void **state)
{
    (void)state;
    ag_mreg_t reg;
    ag_mreg_init(&reg);
    ag_buf_t o;
    ag_buf_init(&o, 1 << 20);
    render(&o, &reg);
    assert_true(value(&o, "astgate_config_last_reload_successful") == 1);
    assert_true(value(&o, "astgate_config_reloads_total{result=\"failure\"}") == 0);
    ag_reload_stats_t st = {.success = 3,
                            .failure = 2,
                            .last_ok = false,
                            .last_ok_time = 1765000000.5,
                            .generation = 4};
    ag_mreg_set_reload(&reg, &st);
    render(&o, &reg);
    assert_true(value(&o, "astgate_config_last_reload_successful") == 0);
    assert_true(value(&o, "astgate_config_reloads_total{result=\"success\"}") == 3);
    assert_true(value(&o, "astgate_config_reloads_total{result=\"failure\"}") == 2);
    assert_true(value(&o, "astgate_config_last_reload_success_timestamp_seconds") == 1765000000.5);
    assert_true(value(&o, "astgate_config_generation") == 4);
    assert_non_null(strstr(o.ptr, "# TYPE astgate_config_last_reload_successful gauge\n"));
    assert_non_null(strstr(o.ptr, "# TYPE astgate_config_reloads_total counter\n"));
    ag_buf_dispose(&o);
    ag_mreg_dispose(&reg);
}

/* The hold's figures: held bytes per streamed response (bytes, whole bounds, le="0" for nothing
 * held), held seconds (nanoseconds in, seconds out) and the violations counter, summed over
 * workers. */
static void test_hold_figures(void **state)
{
    (void)state;
    ag_mreg_t reg;
    ag_mreg_init(&reg);
    ag_wmetrics_t w0, w1;
    ag_wmetrics_init(&w0);
    ag_wmetrics_init(&w1);
    ag_m_observe(&w0, AG_HIST_HELD_BYTES, 0);
    ag_m_observe(&w0, AG_HIST_HELD_BYTES, 64);
    ag_m_observe(&w1, AG_HIST_HELD_BYTES, 65);
    ag_m_observe(&w1, AG_HIST_HELD_BYTES, 2000000);  /* past the last bound: +Inf only */
    ag_m_observe(&w0, AG_HIST_HELD, 2000000);        /* 2 ms */
    ag_m_observe(&w1, AG_HIST_HELD, 40000000000ull); /* 40 s */
    ag_m_inc(&w1.hold_violations, 2);
    ag_wmetrics_t *ws[2] = {&w0, &w1};
    ag_buf_t o;
    ag_buf_init(&o, 1 << 20);
    assert_int_equal(ag_metrics_render(&o, ws, 2, &reg), AG_OK);
    assert_non_null(strstr(o.ptr, "# TYPE astgate_held_bytes histogram\n"));
    assert_true(value(&o, "astgate_held_bytes_bucket{le=\"0\"}") == 1);
    assert_true(value(&o, "astgate_held_bytes_bucket{le=\"64\"}") == 2);
    assert_true(value(&o, "astgate_held_bytes_bucket{le=\"256\"}") == 3);
    assert_true(value(&o, "astgate_held_bytes_bucket{le=\"1048576\"}") == 3);
    assert_true(value(&o, "astgate_held_bytes_bucket{le=\"+Inf\"}") == 4);
    assert_true(value(&o, "astgate_held_bytes_sum") == 0 + 64 + 65 + 2000000);
    assert_true(value(&o, "astgate_held_bytes_count") == 4);
    assert_null(strstr(o.ptr, "astgate_held_bytes_bucket{le=\"512\"}"));
    assert_true(value(&o, "astgate_held_seconds_bucket{le=\"0.001\"}") == 0);
    assert_true(value(&o, "astgate_held_seconds_bucket{le=\"0.0025\"}") == 1);
    assert_true(value(&o, "astgate_held_seconds_bucket{le=\"30\"}") == 1);
    assert_true(value(&o, "astgate_held_seconds_bucket{le=\"+Inf\"}") == 2);
    assert_true(value(&o, "astgate_held_seconds_sum") == 40.002);
    assert_true(value(&o, "astgate_hold_violations_total") == 2);
    assert_non_null(strstr(o.ptr, "# TYPE astgate_hold_violations_total counter\n"));
    /* the time histograms are unchanged: seconds, as %g */
    assert_true(value(&o, "astgate_upstream_seconds_bucket{le=\"0.005\"}") == 0);
    assert_true(value(&o, "astgate_upstream_seconds_bucket{le=\"300\"}") == 0);
    ag_buf_dispose(&o);
    ag_mreg_dispose(&reg);
}

/* Request-side hints: requests by route and arm (only those counted), bytes added, and the
 * per-arm reply counters, every arm shown, summed over workers. */
static void test_hint_figures(void **state)
{
    (void)state;
    ag_mreg_t reg;
    ag_mreg_init(&reg);
    ag_wmetrics_t w0, w1;
    ag_wmetrics_init(&w0);
    ag_wmetrics_init(&w1);
    ag_m_inc(&w0.hint_requests[AG_M_ROUTE_CHAT][AG_M_ARM_HINT], 2);
    ag_m_inc(&w1.hint_requests[AG_M_ROUTE_CHAT][AG_M_ARM_HINT], 1);
    ag_m_inc(&w1.hint_requests[AG_M_ROUTE_MESSAGES][AG_M_ARM_NO_SLOT], 4);
    ag_m_inc(&w0.hint_bytes, 100);
    ag_m_inc(&w1.hint_bytes, 23);
    ag_m_inc(&w0.arm_replies[AG_M_ARM_CONTROL][AG_M_AR_CODE], 5);
    ag_m_inc(&w1.arm_replies[AG_M_ARM_CONTROL][AG_M_AR_CORRECTED_OK], 5);
    ag_m_inc(&w1.arm_replies[AG_M_ARM_HINT][AG_M_AR_RAW_OK], 3);
    ag_wmetrics_t *ws[2] = {&w0, &w1};
    ag_buf_t o;
    ag_buf_init(&o, 1 << 20);
    assert_int_equal(ag_metrics_render(&o, ws, 2, &reg), AG_OK);
    assert_non_null(strstr(o.ptr, "# TYPE astgate_hint_requests_total counter\n"));
    assert_true(value(&o, "astgate_hint_requests_total{route=\"chat.completions\",arm=\"hint\"}") ==
                3);
    assert_true(value(&o, "astgate_hint_requests_total{route=\"messages\",arm=\"no_slot\"}") == 4);
    assert_null(strstr(o.ptr, "astgate_hint_requests_total{route=\"responses\""));
    assert_null(
        strstr(o.ptr, "astgate_hint_requests_total{route=\"chat.completions\",arm=\"off\"}"));
    assert_true(value(&o, "astgate_hint_bytes_total") == 123);
    assert_true(value(&o, "astgate_arm_replies_with_code_total{arm=\"control\"}") == 5);
    assert_true(value(&o, "astgate_arm_replies_with_code_total{arm=\"off\"}") == 0);
    assert_true(value(&o, "astgate_arm_replies_corrected_compliant_total{arm=\"control\"}") == 5);
    assert_true(value(&o, "astgate_arm_replies_raw_compliant_total{arm=\"hint\"}") == 3);
    assert_true(value(&o, "astgate_arm_replies_raw_compliant_total{arm=\"no_slot\"}") == 0);
    ag_buf_dispose(&o);
    ag_mreg_dispose(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_survive_a_reload_by_rule_id),
        cmocka_unit_test(test_reload_figures),
        cmocka_unit_test(test_hold_figures),
        cmocka_unit_test(test_hint_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

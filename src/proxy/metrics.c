/* Prometheus text format (version 0.0.4) for the proxy's counters and histograms. */
#include "metrics.h"

static const double BOUNDS[AG_HISTS][AG_M_BUCKETS] = {
    /* upstream */
    {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
    /* added */
    {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5},
    /* parse */
    {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
     1, 5},
};

static const char *const HIST_NAME[AG_HISTS] = {"astgate_upstream_seconds",
                                                 "astgate_added_seconds",
                                                 "astgate_parse_seconds"};
static const char *const HIST_HELP[AG_HISTS] = {
    "Time from sending a request upstream to the end of its reply.",
    "Time astgate itself spent on a request (parsing, matching, rewriting, copying).",
    "tree-sitter parse time per API reply with code."};
static const char *const ROUTE[AG_M_ROUTES] = {"chat.completions", "responses", "messages",
                                               "passthrough"};

void ag_wmetrics_init(ag_wmetrics_t *m, uint32_t nrules)
{
    memset(m, 0, sizeof(*m));
    size_t n = nrules ? nrules : 1;
    m->rewrites = ag_xcalloc(n, sizeof(uint64_t));
    m->flags = ag_xcalloc(n, sizeof(uint64_t));
    m->dropped = ag_xcalloc(n, sizeof(uint64_t));
    m->blocks = ag_xcalloc(n, sizeof(uint64_t));
    m->shadowed = ag_xcalloc(n, sizeof(uint64_t));
}

void ag_wmetrics_dispose(ag_wmetrics_t *m)
{
    free(m->rewrites);
    free(m->flags);
    free(m->dropped);
    free(m->blocks);
    free(m->shadowed);
}

void ag_m_observe(ag_wmetrics_t *m, ag_hist_kind_t h, uint64_t ns)
{
    ag_hist_t *x = &m->hist[h];
    double s = (double)ns / 1e9;
    for (int i = 0; i < AG_M_BUCKETS; i++)
        if (s <= BOUNDS[h][i]) {
            ag_m_inc(&x->bucket[i], 1);
            break;
        }
    ag_m_inc(&x->count, 1);
    ag_m_inc(&x->sum_ns, ns);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#define SUM(expr)                                                                                  \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (uint32_t w_ = 0; w_ < n; w_++) {                                                      \
            const ag_wmetrics_t *m = ws[w_];                                                       \
            s_ += load(&(expr));                                                                   \
        }                                                                                          \
        s_;                                                                                        \
    })

static int counter(ag_buf_t *o, const char *name, const char *help, uint64_t v)
{
    return ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                          (unsigned long long)v);
}

static int per_rule(ag_buf_t *o, ag_wmetrics_t *const *ws, uint32_t n, const ag_rules_t *rules,
                    const char *name, const char *help, size_t field_off)
{
    int rc = ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (uint32_t r = 0; r < ag_rules_count(rules) && rc == AG_OK; r++) {
        uint64_t v = 0;
        for (uint32_t w = 0; w < n; w++) {
            uint64_t *arr = *(uint64_t **)((const char *)ws[w] + field_off);
            v += load(&arr[r]);
        }
        rc = ag_buf_appendf(o, "%s{rule=\"%s\"} %llu\n", name, ag_rules_rule_id(rules, r),
                            (unsigned long long)v);
    }
    return rc;
}

int ag_metrics_render(ag_buf_t *o, ag_wmetrics_t *const *ws, uint32_t n, const ag_rules_t *rules)
{
    int rc = ag_buf_appendf(o, "# HELP astgate_requests_total Requests by route and status.\n"
                               "# TYPE astgate_requests_total counter\n");
    for (int r = 0; r < AG_M_ROUTES && rc == AG_OK; r++)
        for (int st = 100; st < 600 && rc == AG_OK; st++) {
            uint64_t v = SUM(m->requests[r][st]);
            if (v)
                rc = ag_buf_appendf(o, "astgate_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                    ROUTE[r], st, (unsigned long long)v);
        }
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_total", "API replies seen (choices, content parts).",
                     SUM(m->replies));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_with_code_total", "Replies that held a code block.",
                     SUM(m->replies_code));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_raw_compliant_total",
                     "Replies with code that no rule would change or flag.",
                     SUM(m->replies_raw_ok));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_corrected_compliant_total",
                     "Replies with code that comply once astgate rewrote them.",
                     SUM(m->replies_corrected_ok));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_unjudged_total",
                     "Replies with code too broken to judge (counted as not compliant).",
                     SUM(m->replies_unjudged));
    if (rc == AG_OK)
        rc = per_rule(o, ws, n, rules, "astgate_rewrites_total", "Edits applied, by rule.",
                      offsetof(ag_wmetrics_t, rewrites));
    if (rc == AG_OK)
        rc = per_rule(o, ws, n, rules, "astgate_flags_total", "Violations flagged, by rule.",
                      offsetof(ag_wmetrics_t, flags));
    if (rc == AG_OK)
        rc = per_rule(o, ws, n, rules, "astgate_edits_dropped_total",
                      "Edits dropped (overlap, parse check, cut-off reply), by rule.",
                      offsetof(ag_wmetrics_t, dropped));
    if (rc == AG_OK)
        rc = per_rule(o, ws, n, rules, "astgate_blocks_total", "Replies blocked, by rule.",
                      offsetof(ag_wmetrics_t, blocks));
    if (rc == AG_OK)
        rc = per_rule(o, ws, n, rules, "astgate_shadowed_total",
                      "Rewrites and blocks a shadow-mode rule would have made, by rule.",
                      offsetof(ag_wmetrics_t, shadowed));
    for (int h = 0; h < AG_HISTS && rc == AG_OK; h++) {
        rc = ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s histogram\n", HIST_NAME[h], HIST_HELP[h],
                            HIST_NAME[h]);
        uint64_t cum = 0;
        for (int b = 0; b < AG_M_BUCKETS && rc == AG_OK; b++) {
            cum += SUM(m->hist[h].bucket[b]);
            rc = ag_buf_appendf(o, "%s_bucket{le=\"%g\"} %llu\n", HIST_NAME[h], BOUNDS[h][b],
                                (unsigned long long)cum);
        }
        uint64_t count = SUM(m->hist[h].count);
        uint64_t sum = SUM(m->hist[h].sum_ns);
        if (rc == AG_OK)
            rc = ag_buf_appendf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n",
                                HIST_NAME[h], (unsigned long long)count, HIST_NAME[h],
                                (double)sum / 1e9, HIST_NAME[h], (unsigned long long)count);
    }
    if (rc == AG_OK) {
        int64_t v = 0;
        for (uint32_t w = 0; w < n; w++)
            v += __atomic_load_n(&ws[w]->streams_in_flight, __ATOMIC_RELAXED);
        rc = ag_buf_appendf(o, "# HELP astgate_streams_in_flight Streamed replies in progress.\n"
                               "# TYPE astgate_streams_in_flight gauge\n"
                               "astgate_streams_in_flight %lld\n",
                            (long long)v);
    }
    return rc;
}

/* Prometheus text format (version 0.0.4) for the proxy's counters and histograms. */
#include "metrics.h"

/* One histogram's exposition: bounds in seconds (bytes for a byte histogram), ascending */
typedef struct hist_def {
    const char *name;
    const char *help;
    bool bytes; /* observations and bounds in bytes; else nanoseconds observed, seconds shown */
    int nbounds;
    double bound[AG_M_BUCKETS];
} hist_def_t;

static const hist_def_t HIST[AG_HISTS] = {
    {"astgate_upstream_seconds",
     "Time from sending a request upstream to the end of its reply.",
     false,
     14,
     {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}},
    {"astgate_added_seconds",
     "Time astgate itself spent on a request (parsing, matching, rewriting, copying).",
     false,
     14,
     {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5}},
    {"astgate_parse_seconds",
     "tree-sitter parse time per API reply with code.",
     false,
     14,
     {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
      1, 5}},
    {"astgate_held_seconds",
     "How long streamed reply text waited in astgate before it was released.",
     false,
     14,
     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}},
    {"astgate_held_bytes",
     "Per streamed response, the most bytes of reply text astgate held back at once.",
     true,
     9,
     {0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576}},
};

static const char *const ROUTE[AG_M_ROUTES] = {"chat.completions", "responses", "messages",
                                               "passthrough"};

const char *const ag_m_arm_names[AG_M_ARMS] = {"off", "hint", "control", "no_slot"};

void ag_wmetrics_init(ag_wmetrics_t *m)
{
    memset(m, 0, sizeof(*m));
}

void ag_mreg_init(ag_mreg_t *reg)
{
    memset(reg, 0, sizeof(*reg));
    pthread_mutex_init(&reg->lock, NULL);
    reg->reload.last_ok = true;
}

void ag_mreg_dispose(ag_mreg_t *reg)
{
    while (reg->live)
        ag_rmetrics_free(reg, reg->live);
    for (uint32_t i = 0; i < reg->nids; i++)
        free(reg->ids[i]);
    free(reg->ids);
    free(reg->retired);
    free(reg->params);
    pthread_mutex_destroy(&reg->lock);
}

static uint32_t slot_of(ag_mreg_t *reg, const char *id)
{
    for (uint32_t i = 0; i < reg->nids; i++)
        if (strcmp(reg->ids[i], id) == 0)
            return i;
    if (reg->nids == reg->cap) {
        reg->cap = reg->cap ? reg->cap * 2 : 16;
        reg->ids = ag_xrealloc(reg->ids, reg->cap * sizeof(*reg->ids));
        reg->retired = ag_xrealloc(reg->retired, reg->cap * sizeof(*reg->retired));
    }
    reg->ids[reg->nids] = ag_xstrndup(id, strlen(id));
    memset(reg->retired[reg->nids], 0, sizeof(reg->retired[reg->nids]));
    return reg->nids++;
}

ag_rmetrics_t *ag_rmetrics_new(ag_mreg_t *reg, const ag_rules_t *rules)
{
    ag_rmetrics_t *rm = ag_xcalloc(1, sizeof(*rm));
    rm->n = ag_rules_count(rules);
    rm->c = ag_xcalloc(rm->n ? rm->n : 1, sizeof(*rm->c));
    rm->slot = ag_xcalloc(rm->n ? rm->n : 1, sizeof(*rm->slot));
    pthread_mutex_lock(&reg->lock);
    for (uint32_t i = 0; i < rm->n; i++)
        rm->slot[i] = slot_of(reg, ag_rules_rule_id(rules, i));
    rm->next = reg->live;
    if (reg->live)
        reg->live->prev = rm;
    reg->live = rm;
    pthread_mutex_unlock(&reg->lock);
    return rm;
}

void ag_rmetrics_free(ag_mreg_t *reg, ag_rmetrics_t *rm)
{
    if (rm == NULL)
        return;
    pthread_mutex_lock(&reg->lock);
    for (uint32_t i = 0; i < rm->n; i++)
        for (int k = 0; k < AG_RM_KINDS; k++)
            reg->retired[rm->slot[i]][k] += __atomic_load_n(&rm->c[i][k], __ATOMIC_RELAXED);
    if (rm->prev)
        rm->prev->next = rm->next;
    else
        reg->live = rm->next;
    if (rm->next)
        rm->next->prev = rm->prev;
    pthread_mutex_unlock(&reg->lock);
    free(rm->c);
    free(rm->slot);
    free(rm);
}

/* A Prometheus label value: backslash, double quote and line feed escaped. */
static int label_value(ag_buf_t *o, const char *v)
{
    int rc = AG_OK;
    for (const char *p = v; *p && rc == AG_OK; p++) {
        if (*p == '\\' || *p == '"')
            rc = ag_buf_appendc(o, '\\');
        if (rc == AG_OK)
            rc = *p == '\n' ? ag_buf_append(o, "\\n", 2) : ag_buf_appendc(o, *p);
    }
    return rc;
}

void ag_mreg_set_params(ag_mreg_t *reg, const ag_rules_t *rules)
{
    ag_buf_t b;
    ag_buf_init(&b, 4u << 20);
    int rc = AG_OK;
    for (uint32_t i = 0; i < ag_rules_count(rules) && rc == AG_OK; i++) {
        for (uint32_t j = 0; j < ag_rules_rule_nparams(rules, i) && rc == AG_OK; j++) {
            const char *name, *value;
            ag_rules_rule_param(rules, i, j, &name, &value);
            rc = ag_buf_append(&b, "astgate_rule_param_info{rule=\"", 30);
            if (rc == AG_OK)
                rc = label_value(&b, ag_rules_rule_id(rules, i));
            if (rc == AG_OK)
                rc = ag_buf_append(&b, "\",param=\"", 9);
            if (rc == AG_OK)
                rc = label_value(&b, name);
            if (rc == AG_OK)
                rc = ag_buf_append(&b, "\",value=\"", 9);
            if (rc == AG_OK)
                rc = label_value(&b, value);
            if (rc == AG_OK)
                rc = ag_buf_append(&b, "\"} 1\n", 5);
        }
    }
    char *text = NULL;
    if (rc == AG_OK && b.len) /* past 4 MiB of samples: none rather than some */
        text = ag_xstrndup(b.ptr, b.len);
    ag_buf_dispose(&b);
    pthread_mutex_lock(&reg->lock);
    char *old = reg->params;
    reg->params = text;
    pthread_mutex_unlock(&reg->lock);
    free(old);
}

void ag_mreg_set_reload(ag_mreg_t *reg, const ag_reload_stats_t *st)
{
    pthread_mutex_lock(&reg->lock);
    reg->reload = *st;
    pthread_mutex_unlock(&reg->lock);
}

void ag_m_observe(ag_wmetrics_t *m, ag_hist_kind_t h, uint64_t v)
{
    const hist_def_t *def = &HIST[h];
    ag_hist_t *x = &m->hist[h];
    double s = def->bytes ? (double)v : (double)v / 1e9;
    for (int i = 0; i < def->nbounds; i++)
        if (s <= def->bound[i]) {
            ag_m_inc(&x->bucket[i], 1);
            break;
        }
    ag_m_inc(&x->count, 1);
    ag_m_inc(&x->sum, v);
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

/* totals[slot][kind]: retired rule sets plus live ones; under reg->lock */
static uint64_t (*rule_totals(ag_mreg_t *reg))[AG_RM_KINDS]
{
    uint64_t(*t)[AG_RM_KINDS] = ag_xcalloc(reg->nids ? reg->nids : 1, sizeof(*t));
    if (reg->nids)
        memcpy(t, reg->retired, reg->nids * sizeof(*t));
    for (const ag_rmetrics_t *rm = reg->live; rm; rm = rm->next)
        for (uint32_t i = 0; i < rm->n; i++)
            for (int k = 0; k < AG_RM_KINDS; k++)
                t[rm->slot[i]][k] += load(&rm->c[i][k]);
    return t;
}

static int per_rule(ag_buf_t *o, ag_mreg_t *reg, uint64_t (*t)[AG_RM_KINDS], const char *name,
                    const char *help, int kind)
{
    int rc = ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (uint32_t i = 0; i < reg->nids && rc == AG_OK; i++)
        rc = ag_buf_appendf(o, "%s{rule=\"%s\"} %llu\n", name, reg->ids[i],
                            (unsigned long long)t[i][kind]);
    return rc;
}

static int reload_metrics(ag_buf_t *o, const ag_reload_stats_t *st)
{
    return ag_buf_appendf(
        o,
        "# HELP astgate_config_last_reload_successful Whether the last configuration reload "
        "succeeded (1) or failed (0).\n"
        "# TYPE astgate_config_last_reload_successful gauge\n"
        "astgate_config_last_reload_successful %d\n"
        "# HELP astgate_config_last_reload_success_timestamp_seconds When the configuration in "
        "force was loaded (unix seconds).\n"
        "# TYPE astgate_config_last_reload_success_timestamp_seconds gauge\n"
        "astgate_config_last_reload_success_timestamp_seconds %.3f\n"
        "# HELP astgate_config_reloads_total Configuration reloads (SIGHUP), by result.\n"
        "# TYPE astgate_config_reloads_total counter\n"
        "astgate_config_reloads_total{result=\"success\"} %llu\n"
        "astgate_config_reloads_total{result=\"failure\"} %llu\n"
        "# HELP astgate_config_generation The configuration in force: 1 at start, +1 per "
        "successful reload.\n"
        "# TYPE astgate_config_generation gauge\n"
        "astgate_config_generation %llu\n",
        st->last_ok ? 1 : 0, st->last_ok_time, (unsigned long long)st->success,
        (unsigned long long)st->failure, (unsigned long long)st->generation);
}

/* Request-side hints: requests by arm, bytes added, and the replies' accuracy per arm side by
 * side (every arm always shown, so that a ratio has both of its series from the start). */
static int hint_metrics(ag_buf_t *o, ag_wmetrics_t *const *ws, uint32_t n)
{
    int rc = ag_buf_appendf(o, "# HELP astgate_hint_requests_total API requests with hints "
                               "configured, by route and arm (hint: the hint was added; control: "
                               "hints: {ab} drew the control arm; no_slot: no system slot could "
                               "take it, left alone).\n"
                               "# TYPE astgate_hint_requests_total counter\n");
    for (int r = 0; r < AG_M_ROUTES && rc == AG_OK; r++)
        for (int a = AG_M_ARM_HINT; a < AG_M_ARMS && rc == AG_OK; a++) {
            uint64_t v = SUM(m->hint_requests[r][a]);
            if (v)
                rc =
                    ag_buf_appendf(o, "astgate_hint_requests_total{route=\"%s\",arm=\"%s\"} %llu\n",
                                   ROUTE[r], ag_m_arm_names[a], (unsigned long long)v);
        }
    if (rc == AG_OK)
        rc = counter(o, "astgate_hint_bytes_total", "Bytes hints added to request bodies.",
                     SUM(m->hint_bytes));
    static const struct {
        const char *name, *help;
    } ar[AG_M_ARS] = {
        {"astgate_arm_replies_with_code_total", "Replies that held a code block, by hints arm."},
        {"astgate_arm_replies_raw_compliant_total",
         "Replies with code that no rule would change or flag, by hints arm."},
        {"astgate_arm_replies_corrected_compliant_total",
         "Replies with code that comply once astgate rewrote them, by hints arm."},
    };
    for (int k = 0; k < AG_M_ARS && rc == AG_OK; k++) {
        rc = ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s counter\n", ar[k].name, ar[k].help,
                            ar[k].name);
        for (int a = 0; a < AG_M_ARMS && rc == AG_OK; a++)
            rc = ag_buf_appendf(o, "%s{arm=\"%s\"} %llu\n", ar[k].name, ag_m_arm_names[a],
                                (unsigned long long)SUM(m->arm_replies[a][k]));
    }
    return rc;
}

int ag_metrics_render(ag_buf_t *o, ag_wmetrics_t *const *ws, uint32_t n, ag_mreg_t *reg)
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
        rc =
            counter(o, "astgate_replies_raw_compliant_total",
                    "Replies with code that no rule would change or flag.", SUM(m->replies_raw_ok));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_corrected_compliant_total",
                     "Replies with code that comply once astgate rewrote them.",
                     SUM(m->replies_corrected_ok));
    if (rc == AG_OK)
        rc = counter(o, "astgate_replies_unjudged_total",
                     "Replies with code too broken to judge (counted as not compliant).",
                     SUM(m->replies_unjudged));
    if (rc == AG_OK)
        rc = hint_metrics(o, ws, n);
    pthread_mutex_lock(&reg->lock);
    uint64_t(*t)[AG_RM_KINDS] = rule_totals(reg);
    if (rc == AG_OK)
        rc = per_rule(o, reg, t, "astgate_rewrites_total", "Edits applied, by rule.",
                      AG_RM_REWRITES);
    if (rc == AG_OK)
        rc =
            per_rule(o, reg, t, "astgate_flags_total", "Violations flagged, by rule.", AG_RM_FLAGS);
    if (rc == AG_OK)
        rc = per_rule(o, reg, t, "astgate_edits_dropped_total",
                      "Edits dropped (overlap, parse check, cut-off reply), by rule.",
                      AG_RM_DROPPED);
    if (rc == AG_OK)
        rc = per_rule(o, reg, t, "astgate_blocks_total", "Replies blocked, by rule.", AG_RM_BLOCKS);
    if (rc == AG_OK)
        rc = per_rule(o, reg, t, "astgate_shadowed_total",
                      "Rewrites and blocks a shadow-mode rule would have made, by rule.",
                      AG_RM_SHADOWED);
    ag_reload_stats_t st = reg->reload;
    pthread_mutex_unlock(&reg->lock);
    free(t);
    if (rc == AG_OK)
        rc = counter(o, "astgate_hold_violations_total",
                     "Held code blocks whose rewrite changed bytes already sent to the client (a "
                     "bug in the hold analysis; expected to stay 0).",
                     SUM(m->hold_violations));
    for (int h = 0; h < AG_HISTS && rc == AG_OK; h++) {
        const hist_def_t *def = &HIST[h];
        rc = ag_buf_appendf(o, "# HELP %s %s\n# TYPE %s histogram\n", def->name, def->help,
                            def->name);
        uint64_t cum = 0;
        for (int b = 0; b < def->nbounds && rc == AG_OK; b++) {
            cum += SUM(m->hist[h].bucket[b]);
            /* whole bounds as integers (%g would print 1048576 as 1.04858e+06) */
            double v = def->bound[b];
            rc = v >= 1 && v == (double)(uint64_t)v
                     ? ag_buf_appendf(o, "%s_bucket{le=\"%llu\"} %llu\n", def->name,
                                      (unsigned long long)v, (unsigned long long)cum)
                     : ag_buf_appendf(o, "%s_bucket{le=\"%g\"} %llu\n", def->name, v,
                                      (unsigned long long)cum);
        }
        uint64_t count = SUM(m->hist[h].count);
        uint64_t sum = SUM(m->hist[h].sum);
        if (rc == AG_OK)
            rc = ag_buf_appendf(o, "%s_bucket{le=\"+Inf\"} %llu\n", def->name,
                                (unsigned long long)count);
        if (rc == AG_OK)
            rc = def->bytes ? ag_buf_appendf(o, "%s_sum %llu\n", def->name, (unsigned long long)sum)
                            : ag_buf_appendf(o, "%s_sum %.9f\n", def->name, (double)sum / 1e9);
        if (rc == AG_OK)
            rc = ag_buf_appendf(o, "%s_count %llu\n", def->name, (unsigned long long)count);
    }
    if (rc == AG_OK) {
        int64_t v = 0;
        for (uint32_t w = 0; w < n; w++)
            v += __atomic_load_n(&ws[w]->streams_in_flight, __ATOMIC_RELAXED);
        rc = ag_buf_appendf(o,
                            "# HELP astgate_streams_in_flight Streamed replies in progress.\n"
                            "# TYPE astgate_streams_in_flight gauge\n"
                            "astgate_streams_in_flight %lld\n",
                            (long long)v);
    }
    if (rc == AG_OK)
        rc = reload_metrics(o, &st);
    pthread_mutex_lock(&reg->lock);
    if (rc == AG_OK && reg->params)
        rc = ag_buf_appendf(o, "# HELP astgate_rule_param_info The value in force of each rule "
                               "parameter (metadata.astgate.params).\n"
                               "# TYPE astgate_rule_param_info gauge\n");
    if (rc == AG_OK && reg->params)
        rc = ag_buf_append(o, reg->params, strlen(reg->params));
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

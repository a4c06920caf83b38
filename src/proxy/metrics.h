/* Prometheus metrics of the proxy: plain per-worker counters (relaxed atomics, written only by
 * their worker), summed when /metrics is scraped. */
#ifndef AG_METRICS_H
#define AG_METRICS_H

#include "rules.h"

#include <pthread.h>

enum { AG_M_ROUTE_CHAT, AG_M_ROUTE_RESPONSES, AG_M_ROUTE_MESSAGES, AG_M_ROUTE_PASS, AG_M_ROUTES };

/* Request-side hints: the arm of an API request (hints: in astgate.yaml). */
enum {
    AG_M_ARM_OFF,     /* hints off for its route, or no loaded rule has a hint */
    AG_M_ARM_HINT,    /* the hint was added (hints: on, or the hint arm of hints: {ab}) */
    AG_M_ARM_CONTROL, /* hints: {ab}: drawn for the control arm, sent as it came */
    AG_M_ARM_NO_SLOT, /* hints wanted, but no system slot could take them: left alone */
    AG_M_ARMS
};
/* "off", "hint", "control", "no_slot" */
extern const char *const ag_m_arm_names[AG_M_ARMS];

/* Per-arm reply counters (ag_wmetrics_t.arm_replies). */
enum { AG_M_AR_CODE, AG_M_AR_RAW_OK, AG_M_AR_CORRECTED_OK, AG_M_ARS };

#define AG_M_BUCKETS 14

typedef struct ag_hist {
    uint64_t bucket[AG_M_BUCKETS]; /* cumulative counts are computed at render time */
    uint64_t count;
    uint64_t sum; /* nanoseconds; bytes for AG_HIST_HELD_BYTES */
} ag_hist_t;

typedef enum ag_hist_kind {
    AG_HIST_UPSTREAM,   /* upstream exchange, seconds */
    AG_HIST_ADDED,      /* time astgate added to a request */
    AG_HIST_PARSE,      /* tree-sitter parse time per reply */
    AG_HIST_HELD,       /* how long streamed reply text waited in astgate before its release */
    AG_HIST_HELD_BYTES, /* per streamed response, the most bytes held back at once (bytes) */
    AG_HISTS
} ag_hist_kind_t;

typedef struct ag_wmetrics {
    uint64_t requests[AG_M_ROUTES][600]; /* by route and status code */
    uint64_t replies;                    /* API replies seen (choices, content parts) */
    uint64_t replies_code;               /* ... that held a code block */
    uint64_t replies_raw_ok;             /* ... with code, that no rule would change or flag */
    uint64_t replies_corrected_ok;       /* ... with code, compliant once rewritten */
    uint64_t replies_unjudged;           /* ... with code too broken to judge (never compliant) */
    uint64_t hold_violations;            /* held blocks whose rewrite changed bytes already sent */
    uint64_t hint_requests[AG_M_ROUTES][AG_M_ARMS]; /* API requests by route and hints arm
                                                       (AG_M_ARM_OFF not counted) */
    uint64_t hint_bytes;                            /* bytes hints added to request bodies */
    uint64_t arm_replies[AG_M_ARMS][AG_M_ARS];      /* replies with code, by arm */
    ag_hist_t hist[AG_HISTS];
    int64_t streams_in_flight;
} ag_wmetrics_t;

void ag_wmetrics_init(ag_wmetrics_t *m);

static inline void ag_m_inc(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}
/* Counts one observation into histogram h: v in nanoseconds, or in bytes for
 * AG_HIST_HELD_BYTES. Only from m's worker. */
void ag_m_observe(ag_wmetrics_t *m, ag_hist_kind_t h, uint64_t v);

/* Per-rule counters. A rule set lives until a reload replaces it, but its rules' counters must
 * not restart: they are kept by rule id in a registry (one per process). Each worker counts into
 * its own ag_rmetrics_t for the rule set it uses (no lock: one writer, relaxed atomics, indexed
 * by the rule's position in its set); when a rule set is retired, its counts are folded into the
 * registry's totals by id. /metrics sums both under the registry's lock (never taken on the
 * request path). A rule id seen once stays in /metrics, with its last value. */
enum {
    AG_RM_REWRITES, /* edits applied */
    AG_RM_FLAGS,    /* violations flagged */
    AG_RM_DROPPED,  /* edits dropped (overlap, parse check, cut) */
    AG_RM_BLOCKS,   /* replies blocked */
    AG_RM_SHADOWED, /* what shadow mode would have done */
    AG_RM_KINDS
};

typedef struct ag_rmetrics {
    uint64_t (*c)[AG_RM_KINDS]; /* by rule index in its rule set */
    uint32_t n;                 /* rules */
    uint32_t *slot;             /* rule index -> the registry's slot for its id */
    struct ag_rmetrics *prev, *next;
} ag_rmetrics_t;

/* Configuration reloads (SIGHUP), as Prometheus reports its own. */
typedef struct ag_reload_stats {
    uint64_t success, failure;
    bool last_ok;        /* the last reload succeeded (true before any) */
    double last_ok_time; /* unix seconds of the last successful load (start counts) */
    uint64_t generation; /* 1 at start, +1 per successful reload */
} ag_reload_stats_t;

typedef struct ag_mreg {
    pthread_mutex_t lock;
    char **ids;                       /* slot -> rule id (owned) */
    uint64_t (*retired)[AG_RM_KINDS]; /* slot -> counts of retired rule sets */
    uint32_t nids, cap;
    ag_rmetrics_t *live;      /* every rule set's counters still counted into */
    ag_reload_stats_t reload; /* written under lock */
    char *params;             /* astgate_rule_param_info samples of the rule set in force
                                 (owned, under lock); NULL = no rule has parameters */
} ag_mreg_t;

void ag_mreg_init(ag_mreg_t *reg);
void ag_mreg_dispose(ag_mreg_t *reg);
/* Counters for rules, registered in reg (new ids get a slot). Thread-safe. */
ag_rmetrics_t *ag_rmetrics_new(ag_mreg_t *reg, const ag_rules_t *rules);
/* Folds rm's counts into reg's totals and frees it. Thread-safe; NULL: no-op. rm's writer must
 * be done with it. */
void ag_rmetrics_free(ag_mreg_t *reg, ag_rmetrics_t *rm);

static inline void ag_rm_inc(ag_rmetrics_t *rm, uint32_t rule, int kind)
{
    if (rule < rm->n)
        ag_m_inc(&rm->c[rule][kind], 1);
}

/* Names the parameter values of rules, the rule set new requests use (at start and after each
 * successful reload), in /metrics: astgate_rule_param_info{rule,param,value} 1. Thread-safe;
 * rules is only read during the call. */
void ag_mreg_set_params(ag_mreg_t *reg, const ag_rules_t *rules);

/* Sets the reload figures (thread-safe). */
void ag_mreg_set_reload(ag_mreg_t *reg, const ag_reload_stats_t *st);

/* The text exposition of the sum over workers and rule sets. */
AG_MUSTCHECK int ag_metrics_render(ag_buf_t *out, ag_wmetrics_t *const *workers, uint32_t n,
                                   ag_mreg_t *reg);

#endif

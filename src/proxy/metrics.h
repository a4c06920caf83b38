/* Prometheus metrics of the proxy: plain per-worker counters (relaxed atomics, written only by
 * their worker), summed when /metrics is scraped. */
#ifndef AG_METRICS_H
#define AG_METRICS_H

#include "rules.h"

enum { AG_M_ROUTE_CHAT, AG_M_ROUTE_RESPONSES, AG_M_ROUTE_MESSAGES, AG_M_ROUTE_PASS, AG_M_ROUTES };

#define AG_M_BUCKETS 14

typedef struct ag_hist {
    uint64_t bucket[AG_M_BUCKETS]; /* cumulative counts are computed at render time */
    uint64_t count;
    uint64_t sum_ns;
} ag_hist_t;

typedef enum ag_hist_kind {
    AG_HIST_UPSTREAM, /* upstream exchange, seconds */
    AG_HIST_ADDED,    /* time astgate added to a request */
    AG_HIST_PARSE,    /* tree-sitter parse time per reply */
    AG_HISTS
} ag_hist_kind_t;

typedef struct ag_wmetrics {
    uint64_t requests[AG_M_ROUTES][600]; /* by route and status code */
    uint64_t replies;                    /* API replies seen (choices, content parts) */
    uint64_t replies_code;               /* ... that held a code block */
    uint64_t replies_raw_ok;             /* ... with code, that no rule would change or flag */
    uint64_t replies_corrected_ok;       /* ... with code, compliant once rewritten */
    uint64_t replies_unjudged;           /* ... with code too broken to judge (never compliant) */
    uint64_t *rewrites;                  /* per rule: edits applied */
    uint64_t *flags;                     /* per rule */
    uint64_t *dropped;                   /* per rule: edits dropped (overlap, parse check, cut) */
    uint64_t *blocks;                    /* per rule: replies blocked */
    uint64_t *shadowed;                  /* per rule: what shadow mode would have done */
    ag_hist_t hist[AG_HISTS];
    int64_t streams_in_flight;
} ag_wmetrics_t;

void ag_wmetrics_init(ag_wmetrics_t *m, uint32_t nrules);
void ag_wmetrics_dispose(ag_wmetrics_t *m);

static inline void ag_m_inc(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}
void ag_m_observe(ag_wmetrics_t *m, ag_hist_kind_t h, uint64_t ns);

/* The text exposition of the sum over workers. */
AG_MUSTCHECK int ag_metrics_render(ag_buf_t *out, ag_wmetrics_t *const *workers, uint32_t n,
                                   const ag_rules_t *rules);

#endif

/* The matcher: evaluates compiled rules (rule.h) on a flattened tree (flat.h) with ast-grep's
 * semantics (shared/reference/rules.md §2.3-§2.5). One ag_matcher_t per thread, reused. */
#ifndef AG_MATCH_H
#define AG_MATCH_H

#include "flat.h"
#include "rule.h"

typedef struct ag_matcher {
    const ag_flat_t *flat;  /* the tree being matched (borrowed) */
    const ag_util_t *utils; /* utils of the rule being evaluated (borrowed) */
    uint32_t nutils;
    pcre2_match_data *md;      /* owned; reused for every regex */
    pcre2_match_context *mctx; /* owned; carries match and depth limits */
    uint64_t steps;            /* node comparisons so far (reset by the caller) */
    uint64_t max_steps;        /* 0 = unlimited; past it every match fails (budget) */
} ag_matcher_t;

/* regex_match_limit bounds PCRE2 backtracking on untrusted model output (0 = PCRE2's default). */
void ag_matcher_init(ag_matcher_t *m, uint32_t regex_match_limit);
void ag_matcher_dispose(ag_matcher_t *m);

/* Sets the tree and the utils of the rule about to be evaluated. */
void ag_matcher_bind(ag_matcher_t *m, const ag_flat_t *flat, const ag_util_t *utils,
                     uint32_t nutils);

/* True when node satisfies r. On success env holds the bindings; on failure env is unchanged. */
bool ag_match_rnode(ag_matcher_t *m, const ag_rnode_t *r, uint32_t node, ag_env_t *env);

/* True when node matches pattern p (including its root_kind). Same env contract. */
bool ag_match_pattern(ag_matcher_t *m, const ag_pattern_t *p, uint32_t node, ag_env_t *env);

/* Text a bound slot stands for: SINGLE → the node's text; MULTI → source from the first node's
 * start to the last node's end (empty when the run is empty); TEXT → text_buf span; UNSET → "". */
ag_str_t ag_env_text(const ag_flat_t *flat, const ag_env_t *env, int var, ag_str_t text_buf);

#endif

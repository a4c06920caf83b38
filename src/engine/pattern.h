/* ast-grep patterns: a pattern string parsed with the target grammar and converted into a tree of
 * metavariables, terminals and internal nodes (shared/reference/rules.md §1.3 and §2.2). */
#ifndef AG_PATTERN_H
#define AG_PATTERN_H

#include "rule.h"

/* Metavariable names of one rule, interned to env slot indices. */
typedef struct ag_vars {
    char *names[AG_MAX_VARS]; /* owned, NUL-terminated, without the leading $ signs */
    uint32_t count;
    uint32_t bound; /* bit per slot: interned while not_depth was 0, i.e. captured by
                       the rule where a match binds it (not only under `not`) */
    int not_depth;  /* set by the rule compiler around a `not` subrule */
} ag_vars_t;

void ag_vars_init(ag_vars_t *v);
void ag_vars_dispose(ag_vars_t *v);
/* Slot of name (no $ signs), adding it when new; AG_ETOOBIG past AG_MAX_VARS. Marks the slot in
 * `bound` unless not_depth > 0. */
AG_MUSTCHECK int ag_vars_intern(ag_vars_t *v, ag_str_t name);
/* Slot of name, or -1 when the rule never binds it. */
int ag_vars_find(const ag_vars_t *v, ag_str_t name);

/* Compiles src for lang. selector (len 0 = none) picks the first node of that kind in pre-order
 * and makes candidates need that kind. Captured metavariables are interned into vars. parser is
 * a scratch parser set to lang (borrowed). On failure returns AG_EINVAL and writes a sentence
 * for people into err ("pattern has multiple AST nodes", "selector `pair` matches nothing", ...).
 */
AG_MUSTCHECK int ag_pattern_compile(ag_lang_t lang, TSParser *parser, ag_str_t src,
                                    ag_str_t selector, ag_strictness_t strictness, ag_vars_t *vars,
                                    ag_pattern_t **out, char *err, size_t errlen);
void ag_pattern_free(ag_pattern_t *p);

/* The kind every match has at its root (selector or root node kind); 0 = any kind (root is a
 * metavariable). */
TSSymbol ag_pattern_kind(const ag_pattern_t *p);

/* The longest text that every match must contain (a named terminal of the pattern, e.g. the
 * identifier `Agent` in `new Agent($$$)`); len 0 when there is none. Used to skip parsing. */
ag_str_t ag_pattern_literal(const ag_pattern_t *p);

#endif

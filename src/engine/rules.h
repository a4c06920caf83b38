/* Rule files: ast-grep rule YAML (multi-document) plus astgate's `metadata.astgate` extension,
 * validated and compiled into rule.h structures for each grammar a rule applies to. */
#ifndef AG_RULES_H
#define AG_RULES_H

#include "rule.h"

typedef struct ag_rules ag_rules_t;

/* Loads and compiles every rule in the given files (in order; ids must be unique across them).
 * On any error nothing is returned: *out is left untouched, d holds file:line:col and the cause,
 * and the result is AG_EINVAL (bad rule) or AG_EIO (unreadable file). */
AG_MUSTCHECK int ag_rules_load_files(const char *const *paths, uint32_t npaths, ag_rules_t **out,
                                     ag_diag_t *d);
/* Same, from memory; name is used in diagnostics. */
AG_MUSTCHECK int ag_rules_load_mem(ag_str_t text, const char *name, ag_rules_t **out, ag_diag_t *d);
void ag_rules_free(ag_rules_t *r);
/* Number of rules loaded. */
uint32_t ag_rules_count(const ag_rules_t *r);
/* Id of rule i (0 <= i < ag_rules_count). */
const char *ag_rules_rule_id(const ag_rules_t *r, uint32_t i);

#endif

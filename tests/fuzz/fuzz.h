/* Shared by the libFuzzer targets that run the rule engine: a check that aborts with the target's
 * name, and the rule set they load (ASTGATE_FUZZ_RULES, else rules/mastra.yaml from the
 * repository root). Header-only: each target is one translation unit. */
#ifndef AG_FUZZ_H
#define AG_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define FUZZ_CHECK(name, expr)                                                                     \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s: check failed: %s (line %d)\n", name, #expr, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The rule set of ASTGATE_FUZZ_RULES (default rules/mastra.yaml); aborts, saying where to run
 * from, when it does not load. */
static inline ag_rules_t *fuzz_load_rules(const char *name)
{
    const char *path = getenv("ASTGATE_FUZZ_RULES");
    if (path == NULL)
        path = "rules/mastra.yaml";
    ag_rules_t *rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_files(&path, 1, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        fprintf(stderr, "%s: run from the repository root or set ASTGATE_FUZZ_RULES\n", name);
        abort();
    }
    return rules;
}

#endif

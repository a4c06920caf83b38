/* Private layout of a loaded rule set, shared by rules.c (which builds it) and rewrite.c /
 * ensure.c (which run it). */
#ifndef AG_RULES_INT_H
#define AG_RULES_INT_H

#include "pattern.h"
#include "rewrite.h"
#include "rules.h"
#include "strcase.h"

/* ---- metadata.astgate.ensure: "the value at this place equals V" ---- */

typedef enum ag_step {
    AG_STEP_SELF, /* the value itself */
    AG_STEP_KEY,  /* property `key` of an object (followed through spreads) */
    AG_STEP_ARG,  /* argument #arg of a call */
    AG_STEP_EACH, /* property `key` of every object element of an array */
} ag_step_t;

typedef enum ag_on_missing {
    AG_MISSING_DEFAULT, /* insert when the case pins a value, else skip */
    AG_MISSING_INSERT,
    AG_MISSING_FLAG,
    AG_MISSING_SKIP,
} ag_on_missing_t;

typedef enum ag_quote {
    AG_QUOTE_KEEP, /* the existing literal's quote, else the object's, else the block's, else ' */
    AG_QUOTE_SINGLE,
    AG_QUOTE_DOUBLE,
} ag_quote_t;

typedef struct ag_ensure_case {
    ag_rnode_t *when[AG_LANG_COUNT]; /* NULL = always */
    uint8_t step;                    /* ag_step_t */
    char *key;                       /* KEY, EACH */
    uint32_t key_len;
    uint32_t arg;       /* ARG */
    uint8_t on_missing; /* ag_on_missing_t */
    bool has_string;    /* pin a string literal's content */
    bool has_code;      /* pin raw code text */
    char *value;        /* string content or code text */
    uint32_t value_len;
    uint8_t quote;                /* ag_quote_t */
    bool recurse;                 /* apply the root ensure's cases to the value */
    struct ag_ensure_case *cases; /* first matching case applies */
    uint32_t ncases;
    struct ag_ensure_case *steps; /* every step applies, in order */
    uint32_t nsteps;
    struct ag_ensure_case *missing; /* KEY: what a missing property gets (first case whose
                                       `when` holds on the object) */
    uint32_t nmissing;
    char *import_name; /* the pinned code calls this name: bind it when unbound */
    uint32_t import_name_len;
    char *import_from; /* ... with `import { name } from 'import_from'` */
    uint32_t import_from_len;
    unsigned line, col; /* position in the rule file, for messages */
} ag_ensure_case_t;

typedef struct ag_ensure {
    int target; /* metavariable slot; -1 = the matched node */
    ag_ensure_case_t root;
} ag_ensure_t;

/* ---- transforms ---- */

typedef enum ag_transform_kind {
    AG_TRANSFORM_REPLACE,
    AG_TRANSFORM_SUBSTRING,
    AG_TRANSFORM_CONVERT,
    AG_TRANSFORM_REWRITE,
} ag_transform_kind_t;

typedef struct ag_transform {
    uint8_t kind;                 /* ag_transform_kind_t */
    int var;                      /* output slot */
    int source;                   /* input slot */
    pcre2_code *re;               /* REPLACE */
    char *by;                     /* REPLACE: replacement, PCRE2 syntax (${1}) */
    int32_t start_char, end_char; /* SUBSTRING: unicode chars, negative from the end */
    bool has_start, has_end;
    uint8_t to_case;     /* CONVERT: ag_case_t */
    uint8_t seps;        /* CONVERT: AG_SEP_* bits */
    uint32_t *rewriters; /* REWRITE: indices into the rule's rewriters, in the order given */
    uint32_t nrewriters;
    char *join_by; /* REWRITE: NULL = keep the text between the rewritten nodes */
    uint32_t join_len;
} ag_transform_t;

/* ---- one rule ---- */

typedef struct ag_rule_lang {
    bool enabled; /* the rule applies to this grammar */
    ag_rnode_t *rule;
    ag_util_t *utils;
    uint32_t nutils;
    ag_rnode_t *constraints[AG_MAX_VARS]; /* per slot; NULL = none */
    ag_rnode_t *expand_start; /* fix.expandStart: the edit also covers the previous sibling when it
                                 matches this; NULL = none */
    ag_rnode_t *expand_end;   /* fix.expandEnd: same with the next sibling */
} ag_rule_lang_t;

/* An entry of the rule's `rewriters:` list, run by transform.rewrite. It shares the rule's
 * metavariable slots (so it sees the rule's bindings, as ast-grep's rewriters inherit them) and
 * the rule's utils. */
typedef struct ag_rewriter {
    char *id;
    ag_rule_lang_t lang[AG_LANG_COUNT]; /* rule and constraints; utils are the rule's */
    ag_transform_t *transforms;         /* in evaluation order */
    uint32_t ntransforms;
    char *fix; /* template (required, as in ast-grep) */
    uint32_t fix_len;
} ag_rewriter_t;

typedef struct ag_rule_def {
    char *id;
    char *message;
    char *severity;
    uint8_t action; /* ag_action_t */
    bool redact;    /* metadata.astgate.redact: logs name the matched text's length, never
                       the text (credentials) */
    bool shadow;    /* metadata.astgate.mode: shadow: log what it would do, change
                     * nothing, block nothing */
    ag_vars_t vars;
    ag_rule_lang_t lang[AG_LANG_COUNT];
    ag_transform_t *transforms; /* in evaluation (dependency) order */
    uint32_t ntransforms;
    char *fix; /* template; NULL = none */
    uint32_t fix_len;
    ag_rewriter_t *rewriters; /* `rewriters:`, in file order */
    uint32_t nrewriters;
    ag_ensure_t *ensure; /* NULL = none */
    char **fences;       /* info-string languages; NULL = the engine's default */
    uint32_t nfences;
    char **literals; /* some literal must occur for the rule to match; none = always */
    uint32_t nliterals;
    uint32_t *literal_lens;
    const char *file; /* where it was defined */
    unsigned line;
    const char **param_names;  /* parameters of its file it declares or uses (arena) */
    const char **param_values; /* ... their values in force */
    uint32_t nparams;
    char *params_json; /* {"NAME":"VALUE",...} of those set by astgate.yaml or --set (not left
                          at their default), for the audit log; NULL = none */
    char *hint_text;   /* metadata.astgate.hint.text, parameters replaced (arena); NULL = none */
    uint32_t hint_text_len;
    char *hint_example; /* metadata.astgate.hint.example (code); NULL = none */
    uint32_t hint_example_len;
} ag_rule_def_t;

struct ag_rules {
    ag_rule_def_t *rules;
    uint32_t n;
    /* kind-indexed dispatch per grammar: rule indices for symbol s are
     * by_kind_idx[by_kind_off[s] .. by_kind_off[s + 1]) in file order */
    uint32_t *by_kind_off[AG_LANG_COUNT];
    uint32_t *by_kind_idx[AG_LANG_COUNT];
    uint32_t nsyms[AG_LANG_COUNT];
    bool need_literals;     /* every rule has literals: blocks can be skipped */
    struct ag_arena *arena; /* every allocation of the rule set */
    ag_diag_t *warnings;    /* what the files hold that ast-grep ignores and so does astgate */
    uint32_t nwarnings;
};

#endif

/* The compiled form of a rule file, shared by the loader (rules.c, which builds it from YAML), the
 * pattern compiler (pattern.c) and the matcher (match.c, which evaluates it on an ag_flat_t).
 * Every rule is compiled once per grammar it applies to, since kind and field ids differ between
 * the typescript and tsx grammars. All memory hangs off the owning ag_rules_t. */
#ifndef AG_RULE_H
#define AG_RULE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <tree_sitter/api.h>

#include "lang.h"
#include "util.h"

#define AG_MAX_VARS 32 /* metavariables (and transform outputs) per rule */

typedef enum ag_strictness {
    AG_STRICT_CST,
    AG_STRICT_SMART, /* default, as ast-grep */
    AG_STRICT_AST,
    AG_STRICT_RELAXED,
    AG_STRICT_SIGNATURE,
    AG_STRICT_TEMPLATE,
} ag_strictness_t;

/* ---- patterns (ast-grep pattern.rs semantics, see shared/reference/rules.md §1.3, §2.2) ---- */

typedef enum ag_pn_kind {
    AG_PN_META,     /* a metavariable */
    AG_PN_TERM,     /* a leaf: kind (+ text when named) */
    AG_PN_INTERNAL, /* kind + children */
} ag_pn_kind_t;

typedef enum ag_mv_kind {
    AG_MV_CAPTURE,       /* $A or $$A: one node, captured */
    AG_MV_DROPPED,       /* $_ / $_X / $$_: one node, not captured */
    AG_MV_MULTI,         /* $$$ / $$$_X: zero or more nodes, not captured */
    AG_MV_MULTI_CAPTURE, /* $$$A: zero or more nodes, captured */
} ag_mv_kind_t;

typedef struct ag_pnode {
    uint8_t kind;          /* ag_pn_kind_t */
    uint8_t mv;            /* ag_mv_kind_t, META only */
    bool named;            /* TERM/INTERNAL: the pattern node is named */
    bool mv_named;         /* META: must bind a named node ($A: true; $$A: false) */
    TSSymbol sym;          /* TERM/INTERNAL */
    int16_t var;           /* META capture slot, -1 when not captured */
    const char *text;      /* TERM: text of the leaf (owned by the pattern) */
    uint32_t len;          /* TERM: text length */
    struct ag_pnode *kids; /* INTERNAL: children (MISSING ones dropped) */
    uint32_t nkids;
} ag_pnode_t;

typedef struct ag_pattern {
    ag_pnode_t root;
    TSSymbol root_kind; /* selector kind that candidates must have; 0 = none */
    ag_strictness_t strictness;
    char *src; /* owned copy of the source the pattern was parsed from */
} ag_pattern_t;

/* ---- rule objects (ast-grep rule/mod.rs; evaluation order: atomic, composite, relational) ---- */

typedef enum ag_stop {
    AG_STOP_NEIGHBOR, /* default */
    AG_STOP_END,
    AG_STOP_RULE, /* stop_rule: inclusive */
} ag_stop_t;

struct ag_rnode;

typedef struct ag_relation {
    struct ag_rnode *rule; /* the rule the related node must satisfy */
    ag_stop_t stop;
    struct ag_rnode *stop_rule; /* AG_STOP_RULE only */
    TSFieldId field;            /* 0 = any (inside/has only) */
} ag_relation_t;

typedef struct ag_rnode {
    /* atomic */
    ag_pattern_t *pattern;  /* NULL = none */
    TSSymbol kind;          /* 0 = none */
    pcre2_code *regex;      /* NULL = none; unanchored search on the node text */
    ag_str_t regex_literal; /* text every regex match contains (loader's prefilter); len 0 = none */
    bool has_nth;           /* nthChild is set: the node's 1-based position is A*n+B, n >= 0 */
    int32_t nth_step;       /* nthChild: A (0 for a plain number) */
    int32_t nth_position;   /* nthChild: B (the position, for a plain number) */
    bool nth_reverse;
    struct ag_rnode *nth_of; /* nthChild.ofRule; NULL = count every named sibling */
    bool has_range;          /* range: the node spans exactly start..end */
    uint32_t range[4];       /* range: start line, start column, end line, end column; 0-based,
                                columns in characters, lines from the start of the code block */
    /* composite */
    struct ag_rnode **all;
    uint32_t nall;
    struct ag_rnode **any;
    uint32_t nany;
    struct ag_rnode *not_;
    int32_t matches; /* util index in the owning rule's utils; -1 = none */
    /* relational */
    ag_relation_t *inside, *has, *precedes, *follows;
} ag_rnode_t;

/* A metavariable environment: one slot per interned variable of a rule. Copied by value for
 * probes, so a failed probe never leaks bindings (ast-grep's copy-on-probe). */
typedef enum ag_slot_state {
    AG_SLOT_UNSET,
    AG_SLOT_SINGLE, /* node */
    AG_SLOT_MULTI,  /* a run of sibling nodes: multi_first .. multi_last (AG_NONE both = empty) */
    AG_SLOT_TEXT,   /* transform output: text_off/text_len into the match context's text buffer */
} ag_slot_state_t;

typedef struct ag_slot {
    uint8_t state;
    uint32_t node;               /* SINGLE */
    uint32_t multi_first;        /* MULTI: first node of the run, AG_NONE when empty */
    uint32_t multi_last;         /* MULTI: last node of the run (inclusive) */
    uint32_t text_off, text_len; /* TEXT */
} ag_slot_t;

typedef struct ag_env {
    ag_slot_t s[AG_MAX_VARS];
} ag_env_t;

/* A rule's `utils` entry. */
typedef struct ag_util {
    char *name;
    ag_rnode_t *rule;
} ag_util_t;

#endif

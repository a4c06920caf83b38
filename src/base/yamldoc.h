/* YAML text → tree of positioned nodes (libyaml event API), so the rule loader can validate with
 * exact file:line:col. Multi-document; aliases resolved; duplicate keys rejected. */
#ifndef AG_YAMLDOC_H
#define AG_YAMLDOC_H

#include "util.h"

/* Limits applied by ag_yaml_load. */
#define AG_YAML_MAX_NODES 100000 /* nodes over all documents, counting every alias expansion */
#define AG_YAML_MAX_DEPTH 64     /* nested mappings/sequences, counting through aliases */

typedef enum ag_ytype {
    AG_Y_SCALAR, /* text; see `plain` for null/bool/int resolution */
    AG_Y_MAP,    /* ordered (key, value) pairs; keys are scalars and unique by text */
    AG_Y_SEQ,    /* ordered items */
} ag_ytype_t;

typedef struct ag_ynode ag_ynode_t;

typedef struct ag_ypair {
    ag_ynode_t *key;   /* always AG_Y_SCALAR */
    ag_ynode_t *value; /* any type */
} ag_ypair_t;

/* One node. Everything reachable from ag_ydocs_t.roots is owned by that ag_ydocs_t and must be
 * treated as read-only. An alias is not a node of its own: it points at the anchored node, so a
 * node can appear in several places (the graph is a DAG, never a cycle) and its line/col are those
 * of the anchored node. */
struct ag_ynode {
    ag_ytype_t type;
    unsigned line; /* 1-based, where the node starts (first char of the scalar, `[`, `{`, `-` or
                      the first key of a block mapping) */
    unsigned col;  /* 1-based, in characters (code points), as libyaml counts */

    /* AG_Y_SCALAR */
    char *text; /* NUL-terminated; may contain NUL (escaped "\0"), so use len */
    size_t len; /* bytes */
    bool plain; /* plain style and untagged: `null`, `~` and empty resolve as null, `true` as bool,
                   `12` as int. false for '...', "...", |, > or an explicit tag (`!!str 12`) */
    char *tag;  /* explicit tag as libyaml resolved it ("tag:yaml.org,2002:str"), or NULL */

    /* AG_Y_MAP: pairs[0..n); AG_Y_SEQ: items[0..n) */
    ag_ypair_t *pairs;
    ag_ynode_t **items;
    uint32_t n;

    /* internal to yamldoc.c */
    uint32_t weight_;       /* nodes in this subtree with aliases expanded; 0 while being built */
    uint32_t height_;       /* collection nesting below and including this node */
    ag_ynode_t *next_node_; /* chain of every node allocated, for dispose */
};

typedef struct ag_ydocs {
    ag_ynode_t **roots; /* one per non-empty document, in order; owned */
    uint32_t n;
    ag_ynode_t *nodes_; /* internal: every allocated node */
} ag_ydocs_t;

/* Parses text (a YAML stream with any number of `---` documents) into *out.
 * Documents whose whole content is empty (a bare `---`, only comments) are skipped, so n can be 0.
 * Anchors are scoped to their document. Explicit tags are kept on scalars and otherwise ignored.
 * Errors (AG_EINVAL; d gets file:line:col and a message, *out untouched, nothing allocated):
 *   - YAML syntax/encoding errors, with libyaml's problem text at its position;
 *   - a mapping key that is a mapping or sequence ("mapping keys must be strings, not a mapping");
 *   - a duplicate key ("duplicate key `name` (first at line 3)") at the second key;
 *   - an unknown alias, or an alias to a node that contains it;
 *   - more than AG_YAML_MAX_NODES nodes or AG_YAML_MAX_DEPTH nesting (aliases expanded).
 * file is only copied into d. On success release *out with ag_ydocs_dispose. Thread-safe. */
AG_MUSTCHECK int ag_yaml_load(ag_str_t text, const char *file, ag_ydocs_t *out, ag_diag_t *d);

/* Frees everything owned by docs and zeroes it; a zeroed ag_ydocs_t is fine. */
void ag_ydocs_dispose(ag_ydocs_t *docs);

/* The value of `key` in map (compared as bytes with the key's text), or NULL when absent or when
 * map is NULL or not a mapping. Linear in the number of pairs. */
const ag_ynode_t *ag_ymap_get(const ag_ynode_t *map, const char *key);
/* Same with a byte view key. */
const ag_ynode_t *ag_ymap_getn(const ag_ynode_t *map, ag_str_t key);

/* Text of a scalar as a view; empty view for non-scalars. */
ag_str_t ag_yscalar_str(const ag_ynode_t *n);

/* True for a plain scalar that is empty or spelled `~`, `null`, `Null` or `NULL` (YAML 1.2 core
 * schema). */
bool ag_yscalar_is_null(const ag_ynode_t *n);
/* Plain scalar `true|True|TRUE|false|False|FALSE` → *out. AG_EINVAL otherwise (out untouched). */
AG_MUSTCHECK int ag_yscalar_bool(const ag_ynode_t *n, bool *out);
/* Plain scalar integer (YAML 1.2 core: [-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+) → *out.
 * AG_EINVAL if not an integer, AG_ETOOBIG if it does not fit a long; out untouched on error. */
AG_MUSTCHECK int ag_yscalar_int(const ag_ynode_t *n, long *out);

/* "a string", "a mapping" or "a sequence", for messages such as "`rule` must be a mapping,
 * not a sequence". */
const char *ag_ytype_name(ag_ytype_t t);

#endif

/* A tree-sitter tree flattened once into a pre-order array: O(1) parent, sibling and child steps
 * for the matcher (ts_node_parent walks down from the root on every call in 0.20.7). */
#ifndef AG_FLAT_H
#define AG_FLAT_H

#include <tree_sitter/api.h>

#include "util.h"

#define AG_NONE UINT32_MAX

typedef struct ag_fnode {
    uint32_t start, end;     /* byte offsets into the parsed source */
    uint32_t parent;         /* index; AG_NONE for the root */
    uint32_t first_child;    /* index; AG_NONE for a leaf */
    uint32_t next_sib;       /* index; AG_NONE for the last child */
    uint32_t prev_sib;       /* index; AG_NONE for the first child */
    uint32_t subtree_end;    /* descendants are the indices (i, subtree_end) */
    uint32_t child_count;    /* all children, named or not */
    TSSymbol sym;            /* public symbol (ts_node_symbol) */
    TSFieldId field;         /* field under the parent; 0 = none. Filled lazily: read it only
                              * through ag_flat_child_by_field */
    uint8_t named : 1;       /* ts_node_is_named */
    uint8_t extra : 1;       /* ts_node_is_extra (comments) */
    uint8_t missing : 1;     /* inserted by error recovery, zero width */
    uint8_t error : 1;       /* an ERROR node */
    uint8_t has_error : 1;   /* ts_node_has_error: this subtree holds an ERROR or MISSING node */
    uint8_t fields_done : 1; /* the field ids of this node's children are filled */
} ag_fnode_t;

typedef struct ag_flat {
    ag_fnode_t *nodes; /* nodes[0] is the root */
    TSNode *ts;        /* the tree-sitter node of each entry, for lazy field ids */
    uint32_t count;
    uint32_t cap;
    uint32_t errors; /* ERROR plus MISSING nodes */
    const char *src; /* borrowed source the tree was parsed from */
    uint32_t src_len;
    const TSLanguage *lang;
    uint32_t *left; /* scratch for ag_flat_build: siblings left per open level */
    uint32_t left_cap;
} ag_flat_t;

void ag_flat_init(ag_flat_t *f);
void ag_flat_dispose(ag_flat_t *f);
/* Rebuilds f from tree (reusing f's storage). src must outlive f's use. */
void ag_flat_build(ag_flat_t *f, const TSTree *tree, const char *src, uint32_t src_len);

static inline ag_str_t ag_flat_text(const ag_flat_t *f, uint32_t i)
{
    return (ag_str_t){f->src + f->nodes[i].start, f->nodes[i].end - f->nodes[i].start};
}
/* First child of i with the given field, or AG_NONE. Field ids cost a walk of the field map in
 * tree-sitter 0.20.7, so they are computed here, once per parent, on first use. */
uint32_t ag_flat_child_by_field(const ag_flat_t *f, uint32_t i, TSFieldId field);
/* The n-th (0-based) named child of i, or AG_NONE. */
uint32_t ag_flat_named_child(const ag_flat_t *f, uint32_t i, uint32_t n);
/* Kind name of node i. */
const char *ag_flat_kind(const ag_flat_t *f, uint32_t i);

#endif

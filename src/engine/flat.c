/* Flattens a tree-sitter tree into a pre-order array with one TSTreeCursor walk. */
#include "flat.h"

void ag_flat_init(ag_flat_t *f)
{
    memset(f, 0, sizeof(*f));
}

void ag_flat_dispose(ag_flat_t *f)
{
    free(f->nodes);
    free(f->ts);
    free(f->left);
    memset(f, 0, sizeof(*f));
}

static uint32_t push(ag_flat_t *f)
{
    if (f->count == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->nodes = ag_xrealloc(f->nodes, f->cap * sizeof(*f->nodes));
        f->ts = ag_xrealloc(f->ts, f->cap * sizeof(*f->ts));
    }
    return f->count++;
}

void ag_flat_build(ag_flat_t *f, const TSTree *tree, const char *src, uint32_t src_len)
{
    f->count = 0;
    f->errors = 0;
    f->src = src;
    f->src_len = src_len;
    f->lang = ts_tree_language(tree);
    TSTreeCursor c = ts_tree_cursor_new(ts_tree_root_node(tree));
    uint32_t parent = AG_NONE, last = AG_NONE; /* last: previous sibling at this depth */
    /* siblings still to visit at each open level: the cursor is never asked for a sibling or a
     * child that is not there (a failed step costs as much as a walk across hidden nodes) */
    uint32_t depth = 0;
    for (;;) {
        TSNode n = ts_tree_cursor_current_node(&c);
        uint32_t i = push(f);
        ag_fnode_t *fn = &f->nodes[i];
        fn->start = ts_node_start_byte(n);
        fn->end = ts_node_end_byte(n);
        fn->parent = parent;
        fn->first_child = AG_NONE;
        fn->next_sib = AG_NONE;
        fn->prev_sib = last;
        fn->subtree_end = i + 1;
        fn->child_count = ts_node_child_count(n);
        fn->sym = ts_node_symbol(n);
        fn->field = 0;
        fn->fields_done = 0;
        f->ts[i] = n;
        fn->named = ts_node_is_named(n);
        fn->extra = ts_node_is_extra(n);
        fn->missing = ts_node_is_missing(n);
        fn->error = fn->sym == (TSSymbol)-1;
        fn->has_error = 0; /* from the children, when the node closes */
        if (fn->missing || fn->error) {
            f->errors++;
            fn->has_error = 1;
        }
        if (last != AG_NONE)
            f->nodes[last].next_sib = i;
        else if (parent != AG_NONE)
            f->nodes[parent].first_child = i;
        if (fn->child_count > 0 && ts_tree_cursor_goto_first_child(&c)) {
            if (depth == f->left_cap) {
                f->left_cap = f->left_cap ? f->left_cap * 2 : 64;
                f->left = ag_xrealloc(f->left, f->left_cap * sizeof(*f->left));
            }
            f->left[depth++] = fn->child_count - 1;
            parent = i;
            last = AG_NONE;
            continue;
        }
        last = i;
        for (;;) {
            if (depth == 0)
                goto done;
            if (f->left[depth - 1] > 0 && ts_tree_cursor_goto_next_sibling(&c)) {
                f->left[depth - 1]--;
                break;
            }
            ts_tree_cursor_goto_parent(&c);
            depth--;
            /* close the parent: its subtree ends here */
            last = parent;
            f->nodes[parent].subtree_end = f->count;
            for (uint32_t k = f->nodes[parent].first_child; k != AG_NONE; k = f->nodes[k].next_sib)
                if (f->nodes[k].has_error) {
                    f->nodes[parent].has_error = 1;
                    break;
                }
            parent = f->nodes[parent].parent;
        }
    }
done:
    if (f->count)
        f->nodes[0].subtree_end = f->count;
    ts_tree_cursor_delete(&c);
}

static void fill_fields(const ag_flat_t *f, uint32_t i)
{
    ag_fnode_t *nodes = f->nodes; /* logically const: a cache of what the tree already says */
    TSTreeCursor c = ts_tree_cursor_new(f->ts[i]);
    if (ts_tree_cursor_goto_first_child(&c)) {
        uint32_t k = nodes[i].first_child;
        do {
            nodes[k].field = ts_tree_cursor_current_field_id(&c);
            k = nodes[k].next_sib;
        } while (k != AG_NONE && ts_tree_cursor_goto_next_sibling(&c));
    }
    ts_tree_cursor_delete(&c);
    nodes[i].fields_done = 1;
}

uint32_t ag_flat_child_by_field(const ag_flat_t *f, uint32_t i, TSFieldId field)
{
    if (!f->nodes[i].fields_done)
        fill_fields(f, i);
    for (uint32_t c = f->nodes[i].first_child; c != AG_NONE; c = f->nodes[c].next_sib)
        if (f->nodes[c].field == field)
            return c;
    return AG_NONE;
}

uint32_t ag_flat_named_child(const ag_flat_t *f, uint32_t i, uint32_t n)
{
    for (uint32_t c = f->nodes[i].first_child; c != AG_NONE; c = f->nodes[c].next_sib)
        if (f->nodes[c].named && n-- == 0)
            return c;
    return AG_NONE;
}

const char *ag_flat_kind(const ag_flat_t *f, uint32_t i)
{
    const ag_fnode_t *n = &f->nodes[i];
    if (n->error)
        return "ERROR";
    return ts_language_symbol_name(f->lang, n->sym);
}

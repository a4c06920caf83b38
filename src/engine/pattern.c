/* ast-grep patterns: parses a pattern with the target grammar and converts the tree into META /
 * TERM / INTERNAL nodes (ast-grep matcher/pattern.rs semantics, shared/reference/rules.md §2.2). */
#include "pattern.h"

#include "flat.h"

#define SYM_ERROR ((TSSymbol)-1)
/* Patterns are written by people; this bounds the matcher's recursion on them. */
#define MAX_PATTERN_DEPTH 128

void ag_vars_init(ag_vars_t *v)
{
    memset(v, 0, sizeof(*v));
}

void ag_vars_dispose(ag_vars_t *v)
{
    for (uint32_t i = 0; i < v->count; i++)
        free(v->names[i]);
    memset(v, 0, sizeof(*v));
}

int ag_vars_find(const ag_vars_t *v, ag_str_t name)
{
    for (uint32_t i = 0; i < v->count; i++)
        if (ag_str_eqc(name, v->names[i]))
            return (int)i;
    return -1;
}

int ag_vars_intern(ag_vars_t *v, ag_str_t name)
{
    int slot = ag_vars_find(v, name);
    if (slot < 0) {
        if (v->count >= AG_MAX_VARS)
            return AG_ETOOBIG;
        v->names[v->count] = ag_xstrndup(name.ptr, name.len);
        slot = (int)v->count++;
    }
    if (v->not_depth == 0)
        v->bound |= 1u << slot;
    return slot;
}

/* ---- metavariable syntax (ast-grep meta_var.rs extract_meta_var) ---- */

static bool is_name(ag_str_t s)
{
    if (s.len == 0 || !((s.ptr[0] >= 'A' && s.ptr[0] <= 'Z') || s.ptr[0] == '_'))
        return false;
    for (size_t i = 1; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* Fills kind/named/name when text is a metavariable. */
static bool parse_metavar(ag_str_t t, ag_mv_kind_t *kind, bool *named, ag_str_t *name)
{
    if (t.len < 2 || t.ptr[0] != '$')
        return false;
    if (t.len >= 3 && t.ptr[1] == '$' && t.ptr[2] == '$') {
        ag_str_t n = {t.ptr + 3, t.len - 3};
        if (n.len == 0) {
            *kind = AG_MV_MULTI;
        } else {
            if (!is_name(n))
                return false;
            *kind = n.ptr[0] == '_' ? AG_MV_MULTI : AG_MV_MULTI_CAPTURE;
        }
        *named = true;
        *name = n;
        return true;
    }
    ag_str_t n = {t.ptr + 1, t.len - 1};
    *named = true;
    if (n.ptr[0] == '$') {
        n.ptr++;
        n.len--;
        *named = false;
    }
    if (!is_name(n))
        return false;
    *kind = n.ptr[0] == '_' ? AG_MV_DROPPED : AG_MV_CAPTURE;
    *name = n;
    return true;
}

/* ---- conversion ---- */

typedef struct conv {
    const ag_flat_t *f;
    ag_vars_t *vars;
    char *err;
    size_t errlen;
} conv_t;

static int convert(conv_t *cv, uint32_t i, ag_pnode_t *out, unsigned depth)
{
    const ag_fnode_t *n = &cv->f->nodes[i];
    ag_str_t text = ag_flat_text(cv->f, i);
    ag_mv_kind_t mk;
    bool named;
    ag_str_t name;

    memset(out, 0, sizeof(*out));
    out->var = -1;
    if (depth > MAX_PATTERN_DEPTH) {
        snprintf(cv->err, cv->errlen, "pattern is nested too deeply (more than %d levels)",
                 MAX_PATTERN_DEPTH);
        return AG_EINVAL;
    }
    if (parse_metavar(text, &mk, &named, &name)) {
        out->kind = AG_PN_META;
        out->mv = (uint8_t)mk;
        out->mv_named = named;
        if (mk == AG_MV_CAPTURE || mk == AG_MV_MULTI_CAPTURE) {
            int slot = ag_vars_intern(cv->vars, name);
            if (slot < 0) {
                snprintf(cv->err, cv->errlen,
                         "too many metavariables in one rule (at most %d); `$%.*s` is one too many",
                         AG_MAX_VARS, (int)name.len, name.ptr);
                return AG_EINVAL;
            }
            out->var = (int16_t)slot;
        }
        return AG_OK;
    }
    out->sym = n->sym;
    out->named = n->named;
    if (n->first_child == AG_NONE) {
        out->kind = AG_PN_TERM;
        out->text = text.ptr;
        out->len = (uint32_t)text.len;
        return AG_OK;
    }
    out->kind = AG_PN_INTERNAL;
    uint32_t nk = 0;
    for (uint32_t c = n->first_child; c != AG_NONE; c = cv->f->nodes[c].next_sib)
        nk += !cv->f->nodes[c].missing;
    if (nk == 0)
        return AG_OK;
    out->kids = ag_xcalloc(nk, sizeof(*out->kids));
    for (uint32_t c = n->first_child; c != AG_NONE; c = cv->f->nodes[c].next_sib) {
        if (cv->f->nodes[c].missing)
            continue;
        /* nkids counts converted kids, so a failure frees exactly what was built */
        int rc = convert(cv, c, &out->kids[out->nkids], depth + 1);
        out->nkids++;
        if (rc != AG_OK)
            return rc;
    }
    return AG_OK;
}

static void pnode_dispose(ag_pnode_t *p)
{
    for (uint32_t i = 0; i < p->nkids; i++)
        pnode_dispose(&p->kids[i]);
    free(p->kids);
    p->kids = NULL;
    p->nkids = 0;
}

/* ast-grep is_single_node: one child, or two where the second is MISSING or has an empty kind. */
static bool is_single(const ag_flat_t *f, uint32_t i)
{
    const ag_fnode_t *n = &f->nodes[i];
    if (n->child_count == 1)
        return true;
    if (n->child_count != 2)
        return false;
    uint32_t second = f->nodes[n->first_child].next_sib;
    if (second == AG_NONE)
        return false;
    if (f->nodes[second].missing)
        return true;
    const char *kind = ag_flat_kind(f, second);
    return kind == NULL || kind[0] == '\0';
}

int ag_pattern_compile(ag_lang_t lang, TSParser *parser, ag_str_t src, ag_str_t selector,
                       ag_strictness_t strictness, ag_vars_t *vars, ag_pattern_t **out, char *err,
                       size_t errlen)
{
    ag_pattern_t *p = NULL;
    TSTree *tree = NULL;
    ag_flat_t f;
    int rc = AG_EINVAL;
    char dummy[1];

    ag_flat_init(&f);
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (src.len > UINT32_MAX / 2) {
        snprintf(err, errlen, "pattern is too long");
        goto out;
    }
    p = ag_xcalloc(1, sizeof(*p));
    p->strictness = strictness;
    p->src = ag_xstrndup(src.ptr ? src.ptr : "", src.len);
    p->root.var = -1;

    tree = ts_parser_parse_string(parser, NULL, p->src, (uint32_t)src.len);
    if (tree == NULL) {
        snprintf(err, errlen, "pattern could not be parsed (parser timeout or no language)");
        goto out;
    }
    ag_flat_build(&f, tree, p->src, (uint32_t)src.len);

    uint32_t node;
    if (selector.len > 0) {
        TSSymbol kind = ag_lang_kind(lang, selector);
        if (kind == 0) {
            snprintf(err, errlen, "selector `%.*s` is not a kind of this language",
                     (int)selector.len, selector.ptr);
            goto out;
        }
        node = AG_NONE;
        for (uint32_t i = 0; i < f.count; i++) {
            if (f.nodes[i].sym == kind) {
                node = i;
                break;
            }
        }
        if (node == AG_NONE) {
            snprintf(err, errlen, "selector `%.*s` matches nothing in the context",
                     (int)selector.len, selector.ptr);
            goto out;
        }
        p->root_kind = kind;
    } else {
        if (f.count == 0 || f.nodes[0].child_count == 0) {
            snprintf(err, errlen, "pattern is empty");
            goto out;
        }
        if (!is_single(&f, 0)) {
            snprintf(err, errlen,
                     "pattern has multiple AST nodes; use an object pattern with context and "
                     "selector");
            goto out;
        }
        node = 0;
        while (is_single(&f, node))
            node = f.nodes[node].first_child;
    }

    conv_t cv = {&f, vars, err, errlen};
    rc = convert(&cv, node, &p->root, 0);
    if (rc != AG_OK)
        goto out;
    rc = AG_EINVAL;
    if (p->root.kind == AG_PN_META &&
        (p->root.mv == AG_MV_MULTI || p->root.mv == AG_MV_MULTI_CAPTURE)) {
        snprintf(err, errlen, "a pattern cannot start with $$$");
        goto out;
    }
    *out = p;
    p = NULL;
    rc = AG_OK;
out:
    ag_pattern_free(p);
    if (tree)
        ts_tree_delete(tree);
    ag_flat_dispose(&f);
    return rc;
}

void ag_pattern_free(ag_pattern_t *p)
{
    if (p == NULL)
        return;
    pnode_dispose(&p->root);
    free(p->src);
    free(p);
}

TSSymbol ag_pattern_kind(const ag_pattern_t *p)
{
    if (p->root_kind)
        return p->root_kind;
    if (p->root.kind == AG_PN_META || p->root.sym == SYM_ERROR)
        return 0;
    return p->root.sym;
}

static void longest_term(const ag_pnode_t *n, ag_str_t *best)
{
    if (n->kind == AG_PN_TERM) {
        if (n->named && n->len > best->len)
            *best = (ag_str_t){n->text, n->len};
        return;
    }
    for (uint32_t i = 0; i < n->nkids; i++)
        longest_term(&n->kids[i], best);
}

ag_str_t ag_pattern_literal(const ag_pattern_t *p)
{
    ag_str_t best = {"", 0};
    /* under signature a leaf matches on kind alone; template is left out as well, so the
     * literal stays a safe filter for every level that compares leaf text with kinds */
    if (p->strictness == AG_STRICT_SIGNATURE || p->strictness == AG_STRICT_TEMPLATE)
        return best;
    longest_term(&p->root, &best);
    return best;
}

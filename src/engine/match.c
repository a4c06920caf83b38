/* The matcher: ast-grep's node matcher (5 outcomes), the child-list matcher with non-greedy $$$,
 * and the rule layer (atomic, composite, relational), on a flattened tree. Nothing here allocates:
 * probes copy the fixed-size env on the stack. */
#include "match.h"

#include "pattern.h"

#define SYM_ERROR ((TSSymbol)-1)
/* Rule nesting (utils may recurse once per tree level); bounds the C stack on deep input. */
#define MAX_RULE_DEPTH 512

#define NOINLINE __attribute__((noinline))

typedef enum outcome {
    MATCHED,   /* both consumed */
    SKIP_GOAL, /* pattern node is trivial here: move to the next pattern node */
    SKIP_CAND, /* candidate node is trivial here: move to the next candidate */
    SKIP_BOTH,
    NOMATCH,
} outcome_t;

void ag_matcher_init(ag_matcher_t *m, uint32_t regex_match_limit)
{
    memset(m, 0, sizeof(*m));
    m->md = pcre2_match_data_create(1, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    AG_ASSERT(m->md != NULL && m->mctx != NULL);
    if (regex_match_limit > 0) {
        pcre2_set_match_limit(m->mctx, regex_match_limit);
        pcre2_set_depth_limit(m->mctx, regex_match_limit);
    }
}

void ag_matcher_dispose(ag_matcher_t *m)
{
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    memset(m, 0, sizeof(*m));
}

void ag_matcher_bind(ag_matcher_t *m, const ag_flat_t *flat, const ag_util_t *utils,
                     uint32_t nutils)
{
    m->flat = flat;
    m->utils = utils;
    m->nutils = nutils;
}

/* Counts one comparison; false once the budget is spent. */
static inline bool tick(ag_matcher_t *m)
{
    m->steps++;
    return m->max_steps == 0 || m->steps <= m->max_steps;
}

static inline const ag_fnode_t *node_at(const ag_matcher_t *m, uint32_t i)
{
    return &m->flat->nodes[i];
}

/* Comments are extras; tree-sitter 0.20 also flags top-level ERROR nodes as extra, and those are
 * not comments. */
static inline bool is_comment(const ag_fnode_t *n)
{
    return n->extra && !n->error;
}

static inline bool skips_comments(ag_strictness_t s)
{
    return s == AG_STRICT_SMART || s == AG_STRICT_RELAXED || s == AG_STRICT_SIGNATURE ||
           s == AG_STRICT_TEMPLATE;
}

/* ---- metavariable environment ---- */

static bool is_named_leaf(const ag_flat_t *f, uint32_t i)
{
    for (uint32_t c = f->nodes[i].first_child; c != AG_NONE; c = f->nodes[c].next_sib)
        if (f->nodes[c].named)
            return false;
    return true;
}

/* ast-grep does_node_match_exactly, walking both subtrees in lockstep without recursion (the
 * tree is untrusted and may be deep). */
static bool nodes_exact(ag_matcher_t *m, uint32_t a, uint32_t b)
{
    const ag_flat_t *f = m->flat;
    uint32_t x = a, y = b;
    for (;;) {
        if (!tick(m))
            return false;
        bool descend = false;
        if (x != y) {
            if (is_named_leaf(f, x) || is_named_leaf(f, y)) {
                if (!ag_str_eq(ag_flat_text(f, x), ag_flat_text(f, y)))
                    return false;
            } else if (f->nodes[x].sym != f->nodes[y].sym ||
                       f->nodes[x].child_count != f->nodes[y].child_count) {
                return false;
            } else {
                descend = true;
            }
        }
        if (descend) {
            x = f->nodes[x].first_child;
            y = f->nodes[y].first_child;
            continue;
        }
        /* next pair in pre-order; equal child counts keep the two walks in step */
        for (;;) {
            if (x == a)
                return true;
            if (f->nodes[x].next_sib != AG_NONE) {
                x = f->nodes[x].next_sib;
                y = f->nodes[y].next_sib;
                break;
            }
            x = f->nodes[x].parent;
            y = f->nodes[y].parent;
        }
    }
}

static uint32_t next_named(const ag_flat_t *f, uint32_t i, uint32_t last)
{
    for (; i != AG_NONE; i = i == last ? AG_NONE : f->nodes[i].next_sib)
        if (f->nodes[i].named)
            return i;
    return AG_NONE;
}

/* Two runs of siblings are equal when their named nodes are pairwise exact (ast-grep
 * match_multi_var). */
static bool runs_exact(ag_matcher_t *m, uint32_t af, uint32_t al, uint32_t bf, uint32_t bl)
{
    const ag_flat_t *f = m->flat;
    uint32_t x = af == AG_NONE ? AG_NONE : next_named(f, af, al);
    uint32_t y = bf == AG_NONE ? AG_NONE : next_named(f, bf, bl);
    while (x != AG_NONE && y != AG_NONE) {
        if (!nodes_exact(m, x, y))
            return false;
        x = x == al ? AG_NONE : next_named(f, f->nodes[x].next_sib, al);
        y = y == bl ? AG_NONE : next_named(f, f->nodes[y].next_sib, bl);
    }
    return x == AG_NONE && y == AG_NONE;
}

static bool env_put(ag_matcher_t *m, ag_env_t *env, int var, uint32_t node)
{
    if (var < 0)
        return true;
    ag_slot_t *s = &env->s[var];
    if (s->state == AG_SLOT_SINGLE && !nodes_exact(m, s->node, node))
        return false;
    s->state = AG_SLOT_SINGLE; /* the latest occurrence wins, as in ast-grep */
    s->node = node;
    return true;
}

static bool env_put_multi(ag_matcher_t *m, ag_env_t *env, int var, uint32_t first, uint32_t last)
{
    if (var < 0)
        return true;
    ag_slot_t *s = &env->s[var];
    if (s->state == AG_SLOT_MULTI && !runs_exact(m, s->multi_first, s->multi_last, first, last))
        return false;
    s->state = AG_SLOT_MULTI;
    s->multi_first = first;
    s->multi_last = first == AG_NONE ? AG_NONE : last;
    return true;
}

/* Binds first..last minus its last `skip` nodes (trivial pattern nodes that followed the $$$). */
static bool bind_multi(ag_matcher_t *m, ag_env_t *env, int var, uint32_t first, uint32_t last,
                       uint32_t skip)
{
    if (var < 0)
        return true;
    if (first != AG_NONE) {
        for (uint32_t k = 0; k < skip; k++) {
            if (last == first) {
                first = last = AG_NONE;
                break;
            }
            last = node_at(m, last)->prev_sib;
        }
    }
    return env_put_multi(m, env, var, first, last);
}

ag_str_t ag_env_text(const ag_flat_t *flat, const ag_env_t *env, int var, ag_str_t text_buf)
{
    if (var < 0 || var >= AG_MAX_VARS)
        return (ag_str_t){"", 0};
    const ag_slot_t *s = &env->s[var];
    switch (s->state) {
    case AG_SLOT_SINGLE:
        return ag_flat_text(flat, s->node);
    case AG_SLOT_MULTI:
        if (s->multi_first == AG_NONE)
            return (ag_str_t){"", 0};
        return (ag_str_t){flat->src + flat->nodes[s->multi_first].start,
                          flat->nodes[s->multi_last].end - flat->nodes[s->multi_first].start};
    case AG_SLOT_TEXT:
        if ((size_t)s->text_off + s->text_len > text_buf.len)
            return (ag_str_t){"", 0};
        return (ag_str_t){text_buf.ptr + s->text_off, s->text_len};
    default:
        return (ag_str_t){"", 0};
    }
}

/* ---- one pattern node against one candidate (ast-grep match_node_impl) ---- */

static bool bind_leaf(ag_matcher_t *m, const ag_pnode_t *p, uint32_t c, ag_env_t *env)
{
    const ag_fnode_t *cn = node_at(m, c);
    switch (p->mv) {
    case AG_MV_CAPTURE:
        if (p->mv_named && !cn->named)
            return false;
        return env_put(m, env, p->var, c);
    case AG_MV_DROPPED:
        return !(p->mv_named && !cn->named);
    case AG_MV_MULTI:
        return true;
    case AG_MV_MULTI_CAPTURE:
        return env_put_multi(m, env, p->var, c, c);
    default:
        return false;
    }
}

static inline bool is_ellipsis(const ag_pnode_t *p)
{
    return p->kind == AG_PN_META && (p->mv == AG_MV_MULTI || p->mv == AG_MV_MULTI_CAPTURE);
}

static inline bool is_trivial(const ag_pnode_t *p)
{
    return p->kind == AG_PN_TERM && !p->named;
}

/* False when matching p can never write the env, so a probe needs no copy. */
static inline bool may_bind(const ag_pnode_t *p)
{
    if (p->kind == AG_PN_TERM)
        return false;
    if (p->kind == AG_PN_META)
        return p->mv == AG_MV_CAPTURE || p->mv == AG_MV_MULTI_CAPTURE;
    return true;
}

static inline bool term_text_eq(const ag_matcher_t *m, const ag_pnode_t *p, uint32_t c)
{
    const ag_fnode_t *cn = node_at(m, c);
    return p->len == cn->end - cn->start &&
           (p->len == 0 || memcmp(p->text, m->flat->src + cn->start, p->len) == 0);
}

static bool match_list(ag_matcher_t *m, const ag_pnode_t *g, uint32_t ng, uint32_t first,
                       ag_env_t *env, ag_strictness_t s);

static outcome_t match_node(ag_matcher_t *m, const ag_pnode_t *p, uint32_t c, ag_env_t *env,
                            ag_strictness_t s)
{
    if (!tick(m))
        return NOMATCH;
    const ag_fnode_t *cn = node_at(m, c);
    /* an ERROR node holds what the parser could not place: a pattern matches the structure it
     * recovered around it, and a metavariable may capture it (only ensure rules run on subtrees
     * with errors, and they flag what they cannot read; see rewrite.c) */
    if (cn->error && p->kind != AG_PN_META && p->sym != SYM_ERROR)
        return SKIP_CAND;
    switch (p->kind) {
    case AG_PN_TERM: {
        bool kind_ok = p->sym == cn->sym || p->sym == SYM_ERROR;
        /* unnamed leaves compare by kind only: tree-sitter-typescript gives some of them
         * wrong spans (ast-grep#1419) */
        if (kind_ok && (!p->named || term_text_eq(m, p, c)))
            return MATCHED;
        if (skips_comments(s) && is_comment(cn))
            return SKIP_CAND;
        bool sg = false, sc = false;
        switch (s) {
        case AG_STRICT_CST:
            break;
        case AG_STRICT_SMART:
            sc = !cn->named;
            break;
        case AG_STRICT_AST:
        case AG_STRICT_RELAXED:
            sg = !p->named;
            sc = !cn->named;
            break;
        case AG_STRICT_SIGNATURE:
            if (kind_ok)
                return MATCHED;
            sg = !p->named;
            sc = !cn->named;
            break;
        case AG_STRICT_TEMPLATE:
            if (term_text_eq(m, p, c))
                return MATCHED;
            sc = !cn->named;
            break;
        }
        return sg && sc ? SKIP_BOTH : sg ? SKIP_GOAL : sc ? SKIP_CAND : NOMATCH;
    }
    case AG_PN_META:
        if (skips_comments(s) && is_comment(cn))
            return SKIP_CAND;
        return bind_leaf(m, p, c, env) ? MATCHED : NOMATCH;
    case AG_PN_INTERNAL:
        if (!(s == AG_STRICT_TEMPLATE || p->sym == cn->sym || p->sym == SYM_ERROR))
            return NOMATCH;
        return match_list(m, p->kids, p->nkids, cn->first_child, env, s) ? MATCHED : NOMATCH;
    }
    return NOMATCH;
}

/* ---- a child list (ast-grep match_nodes_impl_recursive) ---- */

/* Pattern nodes that may stay unmatched once the candidates ran out. */
static bool skippable_rest(const ag_pnode_t *g, uint32_t ng, ag_strictness_t s)
{
    for (uint32_t k = 0; k < ng; k++) {
        const ag_pnode_t *p = &g[k];
        bool ok;
        switch (s) {
        case AG_STRICT_CST:
            ok = false;
            break;
        case AG_STRICT_SMART:
        case AG_STRICT_TEMPLATE:
            ok = is_ellipsis(p);
            break;
        default: /* ast, relaxed, signature */
            if (p->kind == AG_PN_META)
                ok = is_ellipsis(p) || !p->mv_named;
            else
                ok = p->kind == AG_PN_TERM && !p->named;
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Candidates left over after the last pattern node. */
static bool trailing_ok(const ag_fnode_t *c, ag_strictness_t s)
{
    switch (s) {
    case AG_STRICT_CST:
        return false;
    case AG_STRICT_SMART:
        return true;
    case AG_STRICT_AST:
        return !c->named;
    case AG_STRICT_RELAXED:
    case AG_STRICT_SIGNATURE:
        return !c->named || is_comment(c);
    case AG_STRICT_TEMPLATE:
        return is_comment(c);
    }
    return false;
}

static uint32_t last_sibling(const ag_matcher_t *m, uint32_t i)
{
    while (node_at(m, i)->next_sib != AG_NONE)
        i = node_at(m, i)->next_sib;
    return i;
}

/* Non-greedy probe of g against c: on a match the probe's bindings are kept. */
static NOINLINE bool probe_node(ag_matcher_t *m, const ag_pnode_t *g, uint32_t c, ag_env_t *env,
                                ag_strictness_t s)
{
    if (!may_bind(g))
        return match_node(m, g, c, env, s) == MATCHED;
    ag_env_t probe = *env;
    if (match_node(m, g, c, &probe, s) != MATCHED)
        return false;
    *env = probe;
    return true;
}

static bool match_list(ag_matcher_t *m, const ag_pnode_t *g, uint32_t ng, uint32_t first,
                       ag_env_t *env, ag_strictness_t s)
{
    uint32_t gi = 0, ci = first;
    if (ci == AG_NONE)
        return false;
    for (;;) {
        bool matched = false;
        if (gi == ng)
            return true;
        /* (a) an ellipsis: $$$ takes candidates until the next pattern node matches */
        if (is_ellipsis(&g[gi])) {
            int var = g[gi].mv == AG_MV_MULTI_CAPTURE ? g[gi].var : -1;
            uint32_t run = ci;
            gi++;
            if (gi == ng)
                return bind_multi(m, env, var, run, last_sibling(m, ci), 0);
            uint32_t skipped = 0;
            while (is_trivial(&g[gi])) {
                gi++;
                skipped++;
                if (gi == ng)
                    return bind_multi(m, env, var, run, last_sibling(m, ci), skipped);
            }
            if (is_ellipsis(&g[gi])) {
                /* $$$A $$$B: A takes exactly one node */
                ci = node_at(m, ci)->next_sib;
                if (ci == AG_NONE)
                    return false;
                if (!bind_multi(m, env, var, run, run, skipped))
                    return false;
                continue;
            }
            for (;;) {
                if (probe_node(m, &g[gi], ci, env, s)) {
                    uint32_t last = ci == run ? AG_NONE : node_at(m, ci)->prev_sib;
                    if (!bind_multi(m, env, var, ci == run ? AG_NONE : run, last, skipped))
                        return false;
                    matched = true;
                    break;
                }
                ci = node_at(m, ci)->next_sib;
                if (ci == AG_NONE)
                    return false;
            }
        }
        /* (b) one pattern node against the candidates, skipping trivial ones */
        while (!matched) {
            if (ci == AG_NONE) {
                if (!skippable_rest(&g[gi], ng - gi, s))
                    return false;
                gi = ng;
                break;
            }
            outcome_t r = match_node(m, &g[gi], ci, env, s);
            if (r == MATCHED)
                break;
            if (r == NOMATCH)
                return false;
            if (r == SKIP_CAND || r == SKIP_BOTH)
                ci = node_at(m, ci)->next_sib;
            if (r == SKIP_GOAL || r == SKIP_BOTH) {
                gi++;
                if (gi == ng)
                    break;
            }
        }
        /* (c) consume the matched pair */
        if (gi < ng) {
            gi++;
            ci = node_at(m, ci)->next_sib;
        }
        if (gi == ng) {
            for (; ci != AG_NONE; ci = node_at(m, ci)->next_sib)
                if (!trailing_ok(node_at(m, ci), s))
                    return false;
            return true;
        }
        if (ci == AG_NONE)
            return false;
    }
}

static bool match_root(ag_matcher_t *m, const ag_pnode_t *p, uint32_t c, ag_env_t *env,
                       ag_strictness_t s)
{
    /* a root metavariable binds even a comment under smart (ast-grep PR #2868) */
    if (p->kind == AG_PN_META && s == AG_STRICT_SMART)
        return tick(m) && bind_leaf(m, p, c, env);
    return match_node(m, p, c, env, s) == MATCHED;
}

bool ag_match_pattern(ag_matcher_t *m, const ag_pattern_t *p, uint32_t node, ag_env_t *env)
{
    const ag_fnode_t *n = node_at(m, node);
    const ag_pnode_t *root = &p->root;
    if (p->root_kind && n->sym != p->root_kind)
        return false;
    /* cheap kind filter before copying the env */
    if (root->kind != AG_PN_META && p->strictness != AG_STRICT_TEMPLATE && root->sym != SYM_ERROR &&
        root->sym != n->sym)
        return false;
    if (!may_bind(root))
        return match_root(m, root, node, env, p->strictness);
    ag_env_t probe = *env;
    if (!match_root(m, root, node, &probe, p->strictness))
        return false;
    *env = probe;
    return true;
}

/* ---- the rule layer (ast-grep rule/mod.rs) ---- */

static bool rule_match(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                       unsigned depth);

/* A rule made only of kind/regex/nthChild: it neither reads nor writes the env. */
static bool is_pure(const ag_rnode_t *r)
{
    while (r) {
        if (r->pattern || r->nall || r->nany || r->not_ || r->matches >= 0 || r->inside || r->has ||
            r->precedes || r->follows)
            return false;
        r = r->nth_of;
    }
    return true;
}

static const ag_rnode_t *util_rule(const ag_matcher_t *m, const ag_rnode_t *r)
{
    if (r->matches < 0 || (uint32_t)r->matches >= m->nutils)
        return NULL;
    return m->utils[r->matches].rule;
}

/* True when a step that may bind is followed by another step that may fail: the rule then needs
 * a private env so that a failure leaves the caller's env unchanged. */
static bool needs_private_env(const ag_matcher_t *m, const ag_rnode_t *r)
{
    bool pending = false, need = false;
#define STEP(present, binds)                                                                       \
    do {                                                                                           \
        if (present) {                                                                             \
            need |= pending;                                                                       \
            pending |= (binds);                                                                    \
        }                                                                                          \
    } while (0)
    STEP(r->kind != 0, false);
    STEP(r->pattern != NULL, true);
    STEP(r->regex != NULL, false);
    STEP(r->has_nth, false);
    STEP(r->has_range, false);
    for (uint32_t k = 0; k < r->nall; k++)
        STEP(true, !is_pure(r->all[k]));
    if (r->nany) {
        bool b = false;
        for (uint32_t k = 0; k < r->nany; k++)
            b |= !is_pure(r->any[k]);
        STEP(true, b);
    }
    STEP(r->not_ != NULL, false);
    if (r->matches >= 0) {
        const ag_rnode_t *u = util_rule(m, r);
        STEP(true, u && !is_pure(u));
    }
    STEP(r->inside != NULL, !is_pure(r->inside->rule));
    STEP(r->has != NULL, !is_pure(r->has->rule));
    STEP(r->precedes != NULL, !is_pure(r->precedes->rule));
    STEP(r->follows != NULL, !is_pure(r->follows->rule));
#undef STEP
    return need;
}

static bool regex_match(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i)
{
    if (!tick(m))
        return false;
    ag_str_t t = ag_flat_text(m->flat, i);
    /* the loader's literal is in every match: a memmem spares most pcre2 calls */
    if (r->regex_literal.len && !ag_memmem(t, r->regex_literal))
        return false;
    int rc = pcre2_match(r->regex, (PCRE2_SPTR)t.ptr, t.len, 0, 0, m->md, m->mctx);
    return rc >= 0; /* 0: matched, ovector too small for the groups */
}

/* Whether byte off of the source is at 0-based (line, col), col in characters. The column is
 * checked first (a walk back to the line start), lines only when it agrees. */
static bool at_point(const ag_flat_t *f, uint32_t off, uint32_t line, uint32_t col)
{
    const char *s = f->src;
    uint32_t ls = off, chars = 0;
    while (ls > 0 && s[ls - 1] != '\n') {
        ls--;
        if (((unsigned char)s[ls] & 0xC0) != 0x80)
            chars++;
        if (chars > col)
            return false;
    }
    if (chars != col)
        return false;
    uint32_t lines = 0;
    for (uint32_t k = 0; k < ls; k++)
        if (s[k] == '\n' && ++lines > line)
            return false;
    return lines == line;
}

static bool range_match(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i)
{
    const ag_fnode_t *n = node_at(m, i);
    return at_point(m->flat, n->start, r->range[0], r->range[1]) &&
           at_point(m->flat, n->end, r->range[2], r->range[3]);
}

/* Sub-rule probe whose bindings never escape (not, nthChild.ofRule, stopBy). */
static NOINLINE bool probe_rule(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                                unsigned depth)
{
    if (is_pure(r))
        return rule_match(m, r, i, env, depth);
    ag_env_t e = *env;
    return rule_match(m, r, i, &e, depth);
}

/* stopBy rules match with an empty env, as ast-grep's Node::matches does. */
static NOINLINE bool stop_match(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                                unsigned depth)
{
    if (is_pure(r))
        return rule_match(m, r, i, env, depth);
    ag_env_t e;
    memset(&e, 0, sizeof(e));
    return rule_match(m, r, i, &e, depth);
}

static bool nth_child(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                      unsigned depth)
{
    const ag_flat_t *f = m->flat;
    uint32_t parent = f->nodes[i].parent;
    if (parent == AG_NONE || !f->nodes[i].named)
        return false;
    int64_t pos = 0, total = 0;
    for (uint32_t c = f->nodes[parent].first_child; c != AG_NONE; c = f->nodes[c].next_sib) {
        if (!f->nodes[c].named)
            continue;
        if (r->nth_of && !probe_rule(m, r->nth_of, c, env, depth + 1)) {
            if (c == i)
                return false;
            continue;
        }
        total++;
        if (c == i) {
            pos = total;
            if (!r->nth_reverse)
                break;
        }
    }
    if (pos == 0)
        return false;
    if (r->nth_reverse)
        pos = total - pos + 1;
    int64_t d = pos - r->nth_position;
    if (r->nth_step == 0)
        return d == 0;
    return d % r->nth_step == 0 && d / r->nth_step >= 0;
}

static bool stop_here(ag_matcher_t *m, const ag_relation_t *rel, uint32_t x, ag_env_t *env,
                      unsigned depth)
{
    return rel->stop == AG_STOP_RULE && rel->stop_rule &&
           stop_match(m, rel->stop_rule, x, env, depth + 1);
}

static bool rel_inside(ag_matcher_t *m, const ag_relation_t *rel, uint32_t i, ag_env_t *env,
                       unsigned depth)
{
    const ag_flat_t *f = m->flat;
    uint32_t from = i;
    for (uint32_t a = f->nodes[i].parent; a != AG_NONE; from = a, a = f->nodes[a].parent) {
        if (!rel->field || ag_flat_child_by_field(f, a, rel->field) == from) {
            if (rule_match(m, rel->rule, a, env, depth + 1))
                return true;
        }
        if (rel->stop == AG_STOP_NEIGHBOR || stop_here(m, rel, a, env, depth))
            return false;
    }
    return false;
}

static bool rel_has(ag_matcher_t *m, const ag_relation_t *rel, uint32_t i, ag_env_t *env,
                    unsigned depth)
{
    const ag_flat_t *f = m->flat;
    if (rel->field) {
        uint32_t c = ag_flat_child_by_field(f, i, rel->field);
        if (c == AG_NONE)
            return false;
        if (rule_match(m, rel->rule, c, env, depth + 1))
            return true;
        if (rel->stop == AG_STOP_NEIGHBOR)
            return false;
        if (rel->stop == AG_STOP_END || !rel->stop_rule) {
            for (uint32_t j = c + 1; j < f->nodes[c].subtree_end; j++)
                if (rule_match(m, rel->rule, j, env, depth + 1))
                    return true;
            return false;
        }
        /* ast-grep (relational_rule.rs) looks one level below the field child here */
        if (stop_here(m, rel, c, env, depth))
            return false;
        for (uint32_t k = f->nodes[c].first_child; k != AG_NONE; k = f->nodes[k].next_sib)
            if (rule_match(m, rel->rule, k, env, depth + 1))
                return true;
        return false;
    }
    if (rel->stop == AG_STOP_NEIGHBOR) {
        for (uint32_t k = f->nodes[i].first_child; k != AG_NONE; k = f->nodes[k].next_sib)
            if (rule_match(m, rel->rule, k, env, depth + 1))
                return true;
        return false;
    }
    /* pre-order over the subtree: no recursion on the (untrusted) tree depth */
    uint32_t end = f->nodes[i].subtree_end;
    for (uint32_t j = i + 1; j < end;) {
        if (rule_match(m, rel->rule, j, env, depth + 1))
            return true;
        if (stop_here(m, rel, j, env, depth))
            j = f->nodes[j].subtree_end; /* inclusive stop: do not look below j */
        else
            j++;
    }
    return false;
}

/* precedes walks next siblings, follows previous ones (nearest first); all siblings count. */
static bool rel_sibling(ag_matcher_t *m, const ag_relation_t *rel, uint32_t i, ag_env_t *env,
                        unsigned depth, bool forward)
{
    const ag_flat_t *f = m->flat;
    for (uint32_t x = forward ? f->nodes[i].next_sib : f->nodes[i].prev_sib; x != AG_NONE;
         x = forward ? f->nodes[x].next_sib : f->nodes[x].prev_sib) {
        if (rule_match(m, rel->rule, x, env, depth + 1))
            return true;
        if (rel->stop == AG_STOP_NEIGHBOR || stop_here(m, rel, x, env, depth))
            return false;
    }
    return false;
}

/* The steps of one rule object in ast-grep's fixed order; kind goes first since it is pure. A
 * failing step leaves env as it found it, so only earlier successful steps need undoing, which
 * the caller arranges (needs_private_env). */
static bool rule_steps(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                       unsigned depth)
{
    if (r->kind && node_at(m, i)->sym != r->kind)
        return false;
    if (r->pattern && !ag_match_pattern(m, r->pattern, i, env))
        return false;
    if (r->regex && !regex_match(m, r, i))
        return false;
    if (r->has_nth && !nth_child(m, r, i, env, depth))
        return false;
    if (r->has_range && !range_match(m, r, i))
        return false;
    for (uint32_t k = 0; k < r->nall; k++)
        if (!rule_match(m, r->all[k], i, env, depth + 1))
            return false;
    if (r->nany) {
        uint32_t k = 0;
        while (k < r->nany && !rule_match(m, r->any[k], i, env, depth + 1))
            k++;
        if (k == r->nany)
            return false;
    }
    if (r->not_ && probe_rule(m, r->not_, i, env, depth + 1))
        return false;
    if (r->matches >= 0) {
        const ag_rnode_t *u = util_rule(m, r);
        if (!u || !rule_match(m, u, i, env, depth + 1))
            return false;
    }
    if (r->inside && !rel_inside(m, r->inside, i, env, depth))
        return false;
    if (r->has && !rel_has(m, r->has, i, env, depth))
        return false;
    if (r->precedes && !rel_sibling(m, r->precedes, i, env, depth, true))
        return false;
    if (r->follows && !rel_sibling(m, r->follows, i, env, depth, false))
        return false;
    return true;
}

static NOINLINE bool rule_steps_private(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i,
                                        ag_env_t *env, unsigned depth)
{
    ag_env_t e = *env;
    if (!rule_steps(m, r, i, &e, depth))
        return false;
    *env = e;
    return true;
}

static bool rule_match(ag_matcher_t *m, const ag_rnode_t *r, uint32_t i, ag_env_t *env,
                       unsigned depth)
{
    if (depth > MAX_RULE_DEPTH || !tick(m))
        return false;
    if (needs_private_env(m, r))
        return rule_steps_private(m, r, i, env, depth);
    return rule_steps(m, r, i, env, depth);
}

bool ag_match_rnode(ag_matcher_t *m, const ag_rnode_t *r, uint32_t node, ag_env_t *env)
{
    return rule_match(m, r, node, env, 0);
}

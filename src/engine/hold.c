/* The streaming hold (hold.h): the bytes of a code block still arriving that no rule can edit. */
#include "hold.h"

#include "flat.h"
#include "lang.h"
#include "rewrite_int.h"
#include "rules_int.h"

#include <pthread.h>

#define MAX_KEYS 8
#define MAX_IMPORTS 8

/* What the rules looking at a block may do, as far as the hold needs it. */
typedef struct needs {
    bool whole;             /* some rule's edits cannot be bounded: hold the whole block */
    bool edits;             /* some rule edits at all */
    ag_str_t key[MAX_KEYS]; /* the properties ensure rules pin */
    uint32_t nkeys;
    ag_str_t import[MAX_IMPORTS]; /* names an ensure may import */
    uint32_t nimports;
} needs_t;

static void add_str(ag_str_t *arr, uint32_t *n, uint32_t cap, ag_str_t s, bool *overflow)
{
    for (uint32_t i = 0; i < *n; i++)
        if (ag_str_eq(arr[i], s))
            return;
    if (*n == cap) {
        *overflow = true;
        return;
    }
    arr[(*n)++] = s;
}

static void case_imports(needs_t *nd, const ag_ensure_case_t *c)
{
    if (c->import_name)
        add_str(nd->import, &nd->nimports, MAX_IMPORTS, ag_str(c->import_name, c->import_name_len),
                &nd->whole);
    for (uint32_t i = 0; i < c->ncases; i++)
        case_imports(nd, &c->cases[i]);
    for (uint32_t i = 0; i < c->nsteps; i++)
        case_imports(nd, &c->steps[i]);
    for (uint32_t i = 0; i < c->nmissing; i++)
        case_imports(nd, &c->missing[i]);
}

static void rule_needs(const ag_engine_t *e, const bool *active, needs_t *nd)
{
    memset(nd, 0, sizeof(*nd));
    for (uint32_t r = 0; r < e->rules->n; r++) {
        const ag_rule_def_t *def = &e->rules->rules[r];
        if (!active[r] || def->shadow || e->opts.shadow)
            continue;
        if (def->action == AG_ACTION_BLOCK) {
            nd->whole = true; /* a blocked block must never have gone out */
            continue;
        }
        if (def->action == AG_ACTION_FLAG && def->ensure == NULL && def->fix == NULL)
            continue;
        if (def->ensure == NULL) {
            if (def->fix)
                nd->whole = true; /* a fix lands on whatever matches: not bounded here */
            continue;
        }
        const ag_ensure_case_t *root = &def->ensure->root;
        if (def->ensure->target < 0 || root->step != AG_STEP_KEY || root->key == NULL) {
            nd->whole = true;
            continue;
        }
        nd->edits = true;
        add_str(nd->key, &nd->nkeys, MAX_KEYS, ag_str(root->key, root->key_len), &nd->whole);
        case_imports(nd, root);
    }
}

/* The grammar symbols the analysis looks at, per grammar: looked up by name once (a lookup
 * walks every symbol of the grammar). */
typedef struct syms {
    TSSymbol program, import_statement, export_statement, statement_block, class_body, switch_case,
        variable_declarator, function_declaration, generator_function_declaration,
        class_declaration, pair, shorthand, spread, computed, identifier, property_id, string;
} syms_t;

static syms_t syms_of[AG_LANG_COUNT];
static pthread_once_t syms_once = PTHREAD_ONCE_INIT;

typedef struct hold {
    ag_engine_t *e;
    const ag_flat_t *f;
    ag_lang_t lang;
    uint32_t len; /* bytes of code received (the rest of the source is the completion) */
    const needs_t *nd;
    const syms_t *k;
} hold_t;

static TSSymbol sym(ag_lang_t l, const char *n)
{
    return ag_lang_kind(l, ag_cstr(n));
}

static void syms_init(void)
{
    for (int l = 0; l < AG_LANG_COUNT; l++) {
        syms_t *k = &syms_of[l];
        k->program = sym((ag_lang_t)l, "program");
        k->import_statement = sym((ag_lang_t)l, "import_statement");
        k->export_statement = sym((ag_lang_t)l, "export_statement");
        k->statement_block = sym((ag_lang_t)l, "statement_block");
        k->class_body = sym((ag_lang_t)l, "class_body");
        k->switch_case = sym((ag_lang_t)l, "switch_case");
        k->variable_declarator = sym((ag_lang_t)l, "variable_declarator");
        k->function_declaration = sym((ag_lang_t)l, "function_declaration");
        k->generator_function_declaration = sym((ag_lang_t)l, "generator_function_declaration");
        k->class_declaration = sym((ag_lang_t)l, "class_declaration");
        k->pair = sym((ag_lang_t)l, "pair");
        k->shorthand = sym((ag_lang_t)l, "shorthand_property_identifier");
        k->spread = sym((ag_lang_t)l, "spread_element");
        k->computed = sym((ag_lang_t)l, "computed_property_name");
        k->identifier = sym((ag_lang_t)l, "identifier");
        k->property_id = sym((ag_lang_t)l, "property_identifier");
        k->string = sym((ag_lang_t)l, "string");
    }
}

static bool is(const hold_t *h, uint32_t i, TSSymbol s)
{
    return s != 0 && h->f->nodes[i].sym == s;
}

static ag_str_t text(const hold_t *h, uint32_t i)
{
    return ag_flat_text(h->f, i);
}

static bool is_key(const hold_t *h, ag_str_t t)
{
    if (t.len >= 2 && (t.ptr[0] == '\'' || t.ptr[0] == '"') && t.ptr[t.len - 1] == t.ptr[0])
        t = ag_str(t.ptr + 1, t.len - 2);
    for (uint32_t k = 0; k < h->nd->nkeys; k++)
        if (ag_str_eq(t, h->nd->key[k]))
            return true;
    return false;
}

/* A name being typed at the end of the code that may still become a key: "mo" of "model". */
static bool key_prefix(const hold_t *h, uint32_t i)
{
    const ag_fnode_t *n = &h->f->nodes[i];
    if (n->start >= h->len)
        return false;
    ag_str_t t = ag_str(h->f->src + n->start, h->len - n->start);
    if (t.len && (t.ptr[0] == '\'' || t.ptr[0] == '"' || t.ptr[0] == '`'))
        t = ag_str(t.ptr + 1, t.len - 1);
    for (uint32_t k = 0; k < h->nd->nkeys; k++)
        if (t.len <= h->nd->key[k].len && memcmp(t.ptr, h->nd->key[k].ptr, t.len) == 0)
            return true;
    return false;
}

/* The scope a declaration at i lives in (as ensure.c resolves names), and whether that scope is
 * still open: more code may still come into it and refer to the declaration. */
static bool scope_open(const hold_t *h, uint32_t i)
{
    for (uint32_t a = h->f->nodes[i].parent; a != AG_NONE; a = h->f->nodes[a].parent) {
        if (is(h, a, h->k->program))
            return true;
        if (is(h, a, h->k->statement_block) || is(h, a, h->k->class_body) ||
            is(h, a, h->k->switch_case))
            return h->f->nodes[a].end > h->len || h->f->nodes[a].missing;
    }
    return true;
}

/* Whether the declaration at i is in the program's own scope. */
static bool scope_top(const hold_t *h, uint32_t i)
{
    for (uint32_t a = h->f->nodes[i].parent; a != AG_NONE; a = h->f->nodes[a].parent) {
        if (is(h, a, h->k->program))
            return true;
        if (is(h, a, h->k->statement_block) || is(h, a, h->k->class_body) ||
            is(h, a, h->k->switch_case))
            return false;
    }
    return true;
}

/* Whether the declaration at i is exported (`export const`, `export function`): ensure never
 * follows an exported binding into its initializer. */
static bool exported(const hold_t *h, uint32_t i)
{
    uint32_t a = h->f->nodes[i].parent;
    if (is(h, i, h->k->variable_declarator) && a != AG_NONE)
        a = h->f->nodes[a].parent; /* the declarator's lexical/variable declaration */
    return a != AG_NONE && is(h, a, h->k->export_statement);
}

/* The end of the line of the import at i, before its line ending: where ensure adds one. */
static uint32_t import_point(const hold_t *h, uint32_t i)
{
    uint32_t le = h->f->nodes[i].end;
    while (le < h->len && h->f->src[le] != '\n')
        le++;
    if (le > h->f->nodes[i].end && h->f->src[le - 1] == '\r')
        le--;
    return le;
}

/* Whether some complete import statement binds name (one still being typed may end up no
 * import at all: `import { openai } from 'x` followed by a line end). */
static bool import_binds(const hold_t *h, ag_str_t name)
{
    for (uint32_t c = h->f->nodes[0].first_child; c != AG_NONE; c = h->f->nodes[c].next_sib) {
        if (!is(h, c, h->k->import_statement) || h->f->nodes[c].end >= h->len)
            continue;
        for (uint32_t i = c + 1; i < h->f->nodes[c].subtree_end; i++)
            if (is(h, i, h->k->identifier) && ag_str_eq(text(h, i), name))
                return true;
    }
    return false;
}

/* perm: the earliest place held for a reason that lasts until the block closes (a pinned
 * property, a spread, a top-level declaration, the import point). */
static uint32_t structural(hold_t *h, uint32_t *perm)
{
    const ag_flat_t *f = h->f;
    uint32_t fr = h->len;
    *perm = UINT32_MAX;
    /* the import section: where a missing import would go */
    bool need_import = false;
    for (uint32_t k = 0; k < h->nd->nimports; k++)
        if (!import_binds(h, h->nd->import[k]))
            need_import = true;
    if (need_import) {
        uint32_t last = AG_NONE, before_last = AG_NONE, first = AG_NONE;
        bool code_after = false; /* a statement follows the imports: the point cannot move */
        for (uint32_t c = f->nodes[0].first_child; c != AG_NONE; c = f->nodes[c].next_sib) {
            if (!f->nodes[c].named || f->nodes[c].extra)
                continue;
            if (first == AG_NONE)
                first = c;
            if (is(h, c, h->k->import_statement)) {
                before_last = last;
                last = c;
            } else if (f->nodes[c].end < h->len && !f->nodes[c].has_error)
                code_after = true; /* complete, and more text follows it: it cannot grow into
                                      an import */
        }
        if (last != AG_NONE && f->nodes[last].end >= h->len)
            last = before_last; /* still being typed (`import { z } from 'z as`): it may end up
                                   no import at all, and the point before it */
        uint32_t at = 0;
        if (last != AG_NONE) {
            at = import_point(h, last);
        } else if (first != AG_NONE) {
            at = f->nodes[first].start;
            while (at > 0 && f->src[at - 1] != '\n')
                at--;
        }
        if (at < fr)
            fr = at;
        if (code_after)
            *perm = at;
    }
    for (uint32_t i = 1; i < f->count; i++) {
        const ag_fnode_t *n = &f->nodes[i];
        if (n->start >= fr)
            continue;
        if ((n->error || n->missing) && n->start < h->len) {
            fr = n->start; /* the code does not parse here yet: nothing after it is known */
            continue;
        }
        /* properties a rule pins, and spreads (the pinned property may come through them) */
        if ((is(h, i, h->k->pair) && is_key(h, text(h, ag_flat_named_child(f, i, 0) == AG_NONE
                                                           ? i
                                                           : ag_flat_named_child(f, i, 0)))) ||
            (is(h, i, h->k->shorthand) && is_key(h, text(h, i))) || is(h, i, h->k->spread) ||
            is(h, i, h->k->computed)) {
            fr = n->start;
            /* lasting, unless a shorthand name still being typed (it may grow into another) */
            if (fr < *perm && !(is(h, i, h->k->shorthand) && n->end >= h->len))
                *perm = fr;
            continue;
        }
        /* a name still being typed that may become one */
        if (n->end >= h->len &&
            (is(h, i, h->k->shorthand) || is(h, i, h->k->property_id) ||
             is(h, i, h->k->identifier) || is(h, i, h->k->string)) &&
            key_prefix(h, i)) {
            fr = n->start;
            continue;
        }
        /* declarations a later value may still refer to (ensure follows them) */
        if ((is(h, i, h->k->variable_declarator) || is(h, i, h->k->function_declaration) ||
             is(h, i, h->k->generator_function_declaration) || is(h, i, h->k->class_declaration)) &&
            !exported(h, i) && scope_open(h, i)) {
            uint32_t at = n->start;
            uint32_t p = n->parent;
            if (is(h, i, h->k->variable_declarator) && p != AG_NONE)
                at = f->nodes[p].start; /* from `const` on */
            if (at < fr)
                fr = at;
            uint32_t nm = ag_flat_named_child(f, i, 0);
            if (at < *perm && scope_top(h, i) && nm != AG_NONE && f->nodes[nm].end < h->len)
                *perm = at; /* the program's scope stays open to the end (once its name is
                               whole, it stays a declaration) */
        }
    }
    return fr;
}

/* Whether the code ends inside a plain string or a line comment (see ag_hold_end_t). */
static void end_state(const hold_t *h, ag_hold_end_t *end)
{
    const ag_flat_t *f = h->f;
    if (h->len == 0)
        return;
    uint32_t deepest = AG_NONE;
    for (uint32_t i = 1; i < f->count; i++) {
        const ag_fnode_t *n = &f->nodes[i];
        if (n->start < h->len && n->end >= h->len && (is(h, i, h->k->string) || n->extra))
            deepest = i;
    }
    if (deepest == AG_NONE)
        return;
    const ag_fnode_t *n = &f->nodes[deepest];
    const char *src = f->src;
    if (is(h, deepest, h->k->string) && n->end > h->len &&
        (src[n->start] == '\'' || src[n->start] == '"')) {
        /* completed: the closing quote is the completion's, after a plain character */
        if (src[h->len - 1] != '\\' && src[n->end - 1] == src[n->start] && n->end == h->len + 1)
            end->quote = src[n->start];
    } else if (n->extra && n->end == h->len && n->end - n->start >= 2 && src[n->start] == '/' &&
               src[n->start + 1] == '/') {
        end->line_comment = true;
    }
}

ag_hold_memo_t *ag_hold_memo_new(void)
{
    return ag_xcalloc(1, sizeof(ag_hold_memo_t));
}

void ag_hold_memo_reset(ag_hold_memo_t *m)
{
    ag_engine_probe_memo_dispose(m);
}

void ag_hold_memo_free(ag_hold_memo_t *m)
{
    if (m == NULL)
        return;
    ag_engine_probe_memo_dispose(m);
    free(m);
}

uint32_t ag_hold_frontier(ag_engine_t *e, const ag_block_t *blk, ag_str_t code,
                          ag_hold_memo_t *memo, ag_hold_end_t *end)
{
    memset(end, 0, sizeof(*end));
    if (code.len >= UINT32_MAX / 2)
        return 0;
    bool *active = ag_xcalloc(e->rules->n ? e->rules->n : 1, sizeof(bool));
    int lang = ag_engine_block_rules(e, blk, active);
    uint32_t fr = (uint32_t)code.len;
    needs_t nd;
    if (lang < 0)
        goto out;
    rule_needs(e, active, &nd);
    if (nd.whole) {
        fr = 0;
        end->settled = true;
        goto out;
    }
    if (!nd.edits) {
        end->settled = end->free = true; /* only flags: nothing ever changes */
        goto out;
    }
    /* where the rules would edit the code as it stands, and its parse for the structure */
    uint32_t now;
    TSTree *tree = ag_engine_probe(e, code, (ag_lang_t)lang, active, memo, &now);
    if (tree == NULL) {
        fr = 0;
        goto out;
    }
    if (now < fr)
        fr = now;
    hold_t h;
    memset(&h, 0, sizeof(h));
    h.e = e;
    h.f = &e->flat;
    h.lang = (ag_lang_t)lang;
    h.len = (uint32_t)code.len;
    h.nd = &nd;
    pthread_once(&syms_once, syms_init);
    h.k = &syms_of[lang];
    uint32_t perm;
    uint32_t st = structural(&h, &perm);
    if (st < fr)
        fr = st;
    end->settled = perm <= fr;
    end_state(&h, end);
out:
    free(active);
    return fr;
}

/* Rule files: validates ast-grep rule YAML plus metadata.astgate and compiles it, once per
 * grammar, into rule.h structures. Every error names file:line:col and the cause; a rule set with
 * any error is refused as a whole. */
#include "rules.h"

#include "arena.h"
#include "json.h"
#include "rules_int.h"
#include "yamldoc.h"

#include <errno.h>
#include <stdarg.h>
#include <strings.h>

#define MAX_RULES 4096
#define MAX_DEPTH 64

typedef struct kindset {
    bool any;      /* every kind */
    uint8_t *bits; /* nsyms bits when !any */
} kindset_t;

typedef struct litset {
    bool none; /* no literal is required */
    uint32_t n;
    ag_str_t lits[8];
} litset_t;

typedef enum ptype {
    PT_STRING,
    PT_INT,
    PT_BOOL,
} ptype_t;

/* A parameter of the file being loaded (metadata.astgate.params). */
typedef struct fparam {
    ag_str_t name;          /* in the YAML tree of the file */
    const ag_ynode_t *decl; /* its first declaration */
    uint8_t type;           /* ptype_t */
    const ag_ynode_t *dflt; /* default, NULL = none */
    const ag_ynode_t *pat;  /* pattern, NULL = none */
    pcre2_code *re;         /* the pattern compiled (owned by the rule set) */
    const char *value;      /* in force (arena), NULL until resolved */
    bool set;               /* given by a set, not the default */
} fparam_t;

typedef struct ctx {
    const char *file;
    ag_diag_t *d;
    ag_arena_t *arena;
    struct ag_rules *rules;
    TSParser *parser[AG_LANG_COUNT];
    /* the rule being compiled */
    ag_rule_def_t *def;
    const ag_ynode_t *utils_node; /* the rule's utils mapping, NULL if none */
    int depth;
    kindset_t *kinds[AG_LANG_COUNT];      /* per rule index: kinds its top rule can match */
    struct umemo *memo;                   /* per util of the rule being compiled */
    ag_str_t src;                         /* the text of the file being compiled */
    fparam_t params[AG_RULES_MAX_PARAMS]; /* the file's parameters */
    uint32_t nparams;
    uint32_t used;                /* bit k: the rule being compiled declares or uses params[k] */
    const ag_rules_set_t *global; /* --set values */
    uint32_t nglobal;
    bool *global_hit;     /* global[j] named a parameter of some file */
    struct gutil *gutils; /* utilDirs utils, every rule may `matches` them */
    uint32_t ngutils;
    ag_ydocs_t *gdocs; /* their YAML, kept until the load ends */
    uint32_t ngdocs;
} ctx_t;

/* A global util (sgconfig.yml utilDirs). */
typedef struct gutil {
    ag_str_t name;
    const ag_ynode_t *rule;
    const char *file;
    ag_str_t src; /* the text of its file */
} gutil_t;

/* patterns and regexes are not in the arena: remember them for ag_rules_free */
typedef struct owned {
    ag_pattern_t **patterns;
    uint32_t npatterns, cap_patterns;
    pcre2_code **regexes;
    uint32_t nregexes, cap_regexes;
} owned_t;

typedef struct ag_rules_priv {
    struct ag_rules pub;
    owned_t owned;
} ag_rules_priv_t;

static int fail(ctx_t *c, const ag_ynode_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ctx_t *c, const ag_ynode_t *at, const char *fmt, ...)
{
    char msg[sizeof(c->d->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ag_diag_set(c->d, c->file, at ? at->line : 0, at ? at->col : 0, "%s", msg);
    return AG_EINVAL;
}

/* Something ast-grep silently ignores: astgate ignores it too, and says so (once per place: the
 * rules compile once per grammar). */
static void warn(ctx_t *c, const ag_ynode_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn(ctx_t *c, const ag_ynode_t *at, const char *fmt, ...)
{
    ag_rules_t *r = c->rules;
    unsigned line = at ? at->line : 0, col = at ? at->col : 0;
    for (uint32_t i = 0; i < r->nwarnings; i++)
        if (r->warnings[i].line == line && r->warnings[i].col == col &&
            strcmp(r->warnings[i].file, c->file ? c->file : "") == 0)
            return;
    r->warnings = ag_xrealloc(r->warnings, (r->nwarnings + 1) * sizeof(*r->warnings));
    ag_diag_t *d = &r->warnings[r->nwarnings++];
    memset(d, 0, sizeof(*d));
    char msg[sizeof(d->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ag_diag_set(d, c->file, line, col, "%s", msg);
}

static owned_t *owned_of(ctx_t *c)
{
    return &((ag_rules_priv_t *)c->rules)->owned;
}

static void own_pattern(ctx_t *c, ag_pattern_t *p)
{
    owned_t *o = owned_of(c);
    if (o->npatterns == o->cap_patterns) {
        o->cap_patterns = o->cap_patterns ? o->cap_patterns * 2 : 16;
        o->patterns = ag_xrealloc(o->patterns, o->cap_patterns * sizeof(*o->patterns));
    }
    o->patterns[o->npatterns++] = p;
}

static void own_regex(ctx_t *c, pcre2_code *re)
{
    owned_t *o = owned_of(c);
    if (o->nregexes == o->cap_regexes) {
        o->cap_regexes = o->cap_regexes ? o->cap_regexes * 2 : 16;
        o->regexes = ag_xrealloc(o->regexes, o->cap_regexes * sizeof(*o->regexes));
    }
    o->regexes[o->nregexes++] = re;
}

static bool is_map(const ag_ynode_t *n)
{
    return n && n->type == AG_Y_MAP;
}

static bool is_scalar(const ag_ynode_t *n)
{
    return n && n->type == AG_Y_SCALAR;
}

static ag_str_t sv(const ag_ynode_t *n)
{
    return ag_str(n->text, n->len);
}

static int need_scalar(ctx_t *c, const ag_ynode_t *n, const char *what)
{
    if (!is_scalar(n) || ag_yscalar_is_null(n))
        return fail(c, n, "%s must be a string, not %s", what,
                    n ? (is_scalar(n) ? "null" : ag_ytype_name(n->type)) : "missing");
    return AG_OK;
}

static int need_map(ctx_t *c, const ag_ynode_t *n, const char *what)
{
    if (!is_map(n))
        return fail(c, n, "%s must be a mapping, not %s", what,
                    is_scalar(n) && ag_yscalar_is_null(n) ? "null" : ag_ytype_name(n->type));
    return AG_OK;
}

/* Checks every key of map against the allowed list (NULL-terminated). */
static bool known(ag_str_t key, const char *const *allowed)
{
    for (const char *const *a = allowed; *a; a++)
        if (ag_str_eqc(key, *a))
            return true;
    return false;
}

static int check_keys(ctx_t *c, const ag_ynode_t *map, const char *const *allowed,
                      const char *where)
{
    for (uint32_t i = 0; i < map->n; i++) {
        const ag_ynode_t *k = map->pairs[i].key;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (ag_str_eqc(sv(k), *a))
                ok = true;
        if (!ok) {
            char list[400] = "";
            size_t off = 0;
            for (const char *const *a = allowed; *a; a++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                        a == allowed ? "" : ", ", *a);
            return fail(c, k, "unknown field `%.*s`%s%s, expected one of %s", (int)k->len, k->text,
                        where ? " in " : "", where ? where : "", list);
        }
    }
    return AG_OK;
}

/* ---- kinds and literals (for dispatch and the parse prefilter) ---- */

static kindset_t ks_any(void)
{
    return (kindset_t){true, NULL};
}

static kindset_t ks_new(ctx_t *c, ag_lang_t lang)
{
    uint32_t n = c->rules->nsyms[lang];
    return (kindset_t){false, ag_arena_alloc(c->arena, (n + 7) / 8)};
}

static void ks_add(kindset_t *k, TSSymbol s)
{
    k->bits[s / 8] |= (uint8_t)(1u << (s % 8));
}

static kindset_t ks_and(ctx_t *c, ag_lang_t lang, kindset_t a, kindset_t b)
{
    if (a.any)
        return b;
    if (b.any)
        return a;
    kindset_t r = ks_new(c, lang);
    for (uint32_t i = 0; i < (c->rules->nsyms[lang] + 7) / 8; i++)
        r.bits[i] = a.bits[i] & b.bits[i];
    return r;
}

static kindset_t ks_or(ctx_t *c, ag_lang_t lang, kindset_t a, kindset_t b)
{
    if (a.any || b.any)
        return ks_any();
    kindset_t r = ks_new(c, lang);
    for (uint32_t i = 0; i < (c->rules->nsyms[lang] + 7) / 8; i++)
        r.bits[i] = a.bits[i] | b.bits[i];
    return r;
}

/* Per util memo, so that utils calling utils are walked once each (no exponential walk). */
typedef struct umemo {
    uint8_t kstate, lstate; /* 0 not yet, 1 in progress (a cycle: be conservative), 2 done */
    kindset_t k;
    litset_t l;
} umemo_t;

static kindset_t kinds_of(ctx_t *c, ag_lang_t lang, const ag_rnode_t *r, const ag_util_t *utils,
                          int depth);

static kindset_t util_kinds(ctx_t *c, ag_lang_t lang, uint32_t u, const ag_util_t *utils, int depth)
{
    umemo_t *m = &c->memo[u];
    if (m->kstate == 2)
        return m->k;
    if (m->kstate == 1)
        return ks_any();
    m->kstate = 1;
    m->k = kinds_of(c, lang, utils[u].rule, utils, depth + 1);
    m->kstate = 2;
    return m->k;
}

static kindset_t kinds_of(ctx_t *c, ag_lang_t lang, const ag_rnode_t *r, const ag_util_t *utils,
                          int depth)
{
    kindset_t k = ks_any();
    if (depth > MAX_DEPTH)
        return k;
    if (r->pattern && ag_pattern_kind(r->pattern)) {
        kindset_t p = ks_new(c, lang);
        ks_add(&p, ag_pattern_kind(r->pattern));
        k = ks_and(c, lang, k, p);
    }
    if (r->kind) {
        kindset_t p = ks_new(c, lang);
        ks_add(&p, r->kind);
        k = ks_and(c, lang, k, p);
    }
    for (uint32_t i = 0; i < r->nall; i++)
        k = ks_and(c, lang, k, kinds_of(c, lang, r->all[i], utils, depth + 1));
    if (r->nany) {
        kindset_t u = kinds_of(c, lang, r->any[0], utils, depth + 1);
        for (uint32_t i = 1; i < r->nany; i++)
            u = ks_or(c, lang, u, kinds_of(c, lang, r->any[i], utils, depth + 1));
        k = ks_and(c, lang, k, u);
    }
    if (r->matches >= 0)
        k = ks_and(c, lang, k, util_kinds(c, lang, (uint32_t)r->matches, utils, depth));
    return k;
}

/* A literal every match of the regex must contain: the regex is ^?literal$? with no
 * metacharacters (e.g. ^Agent$), or starts with such a run followed by a group. */
static ag_str_t regex_literal(ctx_t *c, ag_str_t re)
{
    size_t i = 0;
    if (i < re.len && re.ptr[i] == '^')
        i++;
    size_t start = i;
    while (i < re.len) {
        char ch = re.ptr[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '_' || ch == '-' || ch == '@' || ch == '/' || ch == ' ' || ch == ':' ||
            ch == '\'' || ch == '"')
            i++;
        else
            break;
    }
    size_t end = i;
    /* a quantifier applies to the last character: leave it out */
    if (i < re.len && (re.ptr[i] == '?' || re.ptr[i] == '*' || re.ptr[i] == '{') && end > start)
        end--;
    /* an alternation anywhere (outside escapes) may make the run optional: no literal then */
    for (size_t j = 0; j < re.len; j++) {
        if (re.ptr[j] == '\\') {
            j++;
            continue;
        }
        if (re.ptr[j] == '|')
            return ag_str(NULL, 0);
    }
    if (end <= start)
        return ag_str(NULL, 0);
    return ag_str(re.ptr + start, end - start);
}

static litset_t lit_none(void)
{
    litset_t l;
    memset(&l, 0, sizeof(l));
    l.none = true;
    return l;
}

static litset_t lit_one(ag_str_t s)
{
    litset_t l;
    memset(&l, 0, sizeof(l));
    if (s.len == 0) {
        l.none = true;
        return l;
    }
    l.n = 1;
    l.lits[0] = s;
    return l;
}

static size_t lit_score(const litset_t *l)
{
    if (l->none || l->n == 0)
        return 0;
    size_t min = SIZE_MAX;
    for (uint32_t i = 0; i < l->n; i++)
        if (l->lits[i].len < min)
            min = l->lits[i].len;
    return min;
}

/* both a and b are required: keep the more selective one */
static litset_t lit_and(litset_t a, litset_t b)
{
    return lit_score(&b) > lit_score(&a) ? b : a;
}

/* either a or b: the union */
static litset_t lit_or(litset_t a, litset_t b)
{
    if (a.none || b.none)
        return lit_none();
    litset_t r = a;
    for (uint32_t i = 0; i < b.n; i++) {
        bool dup = false;
        for (uint32_t j = 0; j < r.n; j++)
            if (ag_str_eq(r.lits[j], b.lits[i]))
                dup = true;
        if (dup)
            continue;
        if (r.n == 8)
            return lit_none();
        r.lits[r.n++] = b.lits[i];
    }
    return r;
}

static litset_t lits_of(umemo_t *mm, const ag_rnode_t *r, const ag_util_t *utils, int depth);

static litset_t util_lits(umemo_t *mm, uint32_t u, const ag_util_t *utils, int depth)
{
    umemo_t *m = &mm[u];
    if (m->lstate == 2)
        return m->l;
    if (m->lstate == 1)
        return lit_none();
    m->lstate = 1;
    m->l = lits_of(mm, utils[u].rule, utils, depth + 1);
    m->lstate = 2;
    return m->l;
}

static litset_t lits_of(umemo_t *mm, const ag_rnode_t *r, const ag_util_t *utils, int depth)
{
    litset_t l = lit_none();
    if (depth > MAX_DEPTH)
        return l;
    if (r->pattern)
        l = lit_and(l, lit_one(ag_pattern_literal(r->pattern)));
    if (r->regex)
        l = lit_and(l, lit_one(r->regex_literal));
    for (uint32_t i = 0; i < r->nall; i++)
        l = lit_and(l, lits_of(mm, r->all[i], utils, depth + 1));
    if (r->nany) {
        litset_t u = lits_of(mm, r->any[0], utils, depth + 1);
        for (uint32_t i = 1; i < r->nany; i++)
            u = lit_or(u, lits_of(mm, r->any[i], utils, depth + 1));
        l = lit_and(l, u);
    }
    if (r->matches >= 0)
        l = lit_and(l, util_lits(mm, (uint32_t)r->matches, utils, depth));
    if (r->has)
        l = lit_and(l, lits_of(mm, r->has->rule, utils, depth + 1));
    if (r->inside)
        l = lit_and(l, lits_of(mm, r->inside->rule, utils, depth + 1));
    if (r->precedes)
        l = lit_and(l, lits_of(mm, r->precedes->rule, utils, depth + 1));
    if (r->follows)
        l = lit_and(l, lits_of(mm, r->follows->rule, utils, depth + 1));
    return l;
}

/* ---- rule objects ---- */

static const char *const RULE_KEYS[] = {"pattern", "kind", "regex",    "nthChild", "range",
                                        "inside",  "has",  "precedes", "follows",  "all",
                                        "any",     "not",  "matches",  NULL};

static int compile_rnode(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, ag_rnode_t **out);

static int parse_strictness(ctx_t *c, const ag_ynode_t *n, ag_strictness_t *out)
{
    static const char *const names[] = {"cst", "smart", "ast", "relaxed", "signature", "template"};
    if (need_scalar(c, n, "strictness") != AG_OK)
        return AG_EINVAL;
    for (int i = 0; i < 6; i++)
        if (ag_str_eqc(sv(n), names[i])) {
            *out = (ag_strictness_t)i;
            return AG_OK;
        }
    return fail(c, n,
                "unknown strictness `%.*s`, expected one of cst, smart, ast, relaxed, "
                "signature, template",
                (int)n->len, n->text);
}

static int compile_pattern(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, ag_pattern_t **out)
{
    ag_str_t src, selector = ag_str(NULL, 0);
    ag_strictness_t strictness = AG_STRICT_SMART;
    const ag_ynode_t *at = n;
    if (is_map(n)) {
        static const char *const keys[] = {"context", "selector", "strictness", NULL};
        if (check_keys(c, n, keys, "pattern") != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *ctxn = ag_ymap_get(n, "context");
        if (ctxn == NULL)
            return fail(c, n, "a pattern object needs `context`");
        if (need_scalar(c, ctxn, "pattern context") != AG_OK)
            return AG_EINVAL;
        src = sv(ctxn);
        at = ctxn;
        const ag_ynode_t *sel = ag_ymap_get(n, "selector");
        if (sel) {
            if (need_scalar(c, sel, "selector") != AG_OK)
                return AG_EINVAL;
            selector = sv(sel);
            if (ag_lang_kind(lang, selector) == 0)
                return fail(c, sel, "selector `%.*s` is not a kind of %s", (int)sel->len, sel->text,
                            ag_lang_name(lang));
        }
        const ag_ynode_t *st = ag_ymap_get(n, "strictness");
        if (st && parse_strictness(c, st, &strictness) != AG_OK)
            return AG_EINVAL;
    } else {
        if (need_scalar(c, n, "pattern") != AG_OK)
            return AG_EINVAL;
        src = sv(n);
    }
    char err[256] = "";
    ag_pattern_t *p = NULL;
    if (ag_pattern_compile(lang, c->parser[lang], src, selector, strictness, &c->def->vars, &p, err,
                           sizeof(err)) != AG_OK)
        return fail(c, at, "bad pattern: %s", err[0] ? err : "does not compile");
    own_pattern(c, p);
    *out = p;
    return AG_OK;
}

/* Whether the first len bytes of scalar n appear verbatim in the file at its line:col. */
static bool scalar_verbatim(const ctx_t *c, const ag_ynode_t *n, size_t len)
{
    const char *p = c->src.ptr, *end = c->src.ptr + c->src.len;
    if (p == NULL || !n->plain)
        return false;
    for (unsigned l = 1; l < n->line && p < end; p++)
        if (*p == '\n')
            l++;
    for (unsigned col = 1; col < n->col && p < end; p++)
        if (((unsigned char)*p & 0xC0) != 0x80)
            col++;
    while (p < end && ((unsigned char)*p & 0xC0) == 0x80)
        p++;
    return (size_t)(end - p) >= len && memcmp(p, n->text, len) == 0 && memchr(p, '\n', len) == NULL;
}

static int compile_regex(ctx_t *c, const ag_ynode_t *n, pcre2_code **out, ag_str_t *lit)
{
    if (need_scalar(c, n, "regex") != AG_OK)
        return AG_EINVAL;
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)n->text, n->len, PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        /* point at the offending character when the scalar stands as it is on one line of the
         * file; otherwise (folded, quoted with escapes) at the start of the scalar. Columns count
         * characters, as the YAML positions do. */
        unsigned chars = 0;
        for (size_t i = 0; i < erroff && i < n->len; i++)
            chars += ((unsigned char)n->text[i] & 0xC0) != 0x80;
        if (!scalar_verbatim(c, n, erroff))
            chars = 0;
        ag_diag_set(c->d, c->file, n->line, n->col + chars, "bad regex `%.*s`: %s at offset %zu",
                    (int)n->len, n->text, (char *)msg, (size_t)erroff);
        return AG_EINVAL;
    }
    own_regex(c, re);
    *out = re;
    if (lit) {
        ag_str_t l = regex_literal(c, sv(n));
        *lit = ag_str(ag_arena_strndup(c->arena, l.ptr ? l.ptr : "", l.len), l.len);
    }
    return AG_OK;
}

static int compile_relation(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, const char *name,
                            ag_relation_t **out)
{
    if (need_map(c, n, name) != AG_OK)
        return AG_EINVAL;
    static const char *const keys[] = {
        "pattern", "kind", "regex", "nthChild", "range",   "inside", "has",   "precedes",
        "follows", "all",  "any",   "not",      "matches", "stopBy", "field", NULL};
    ag_relation_t *rel = ag_arena_alloc(c->arena, sizeof(*rel));
    /* the relation's own rule is the mapping without stopBy/field */
    ag_ynode_t inner = *n;
    inner.pairs = ag_arena_alloc(c->arena, (n->n ? n->n : 1) * sizeof(*inner.pairs));
    inner.n = 0;
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *k = n->pairs[i].key;
        const ag_ynode_t *v = n->pairs[i].value;
        if (ag_str_eqc(sv(k), "stopBy")) {
            if (is_scalar(v) && ag_str_eqc(sv(v), "neighbor")) {
                rel->stop = AG_STOP_NEIGHBOR;
            } else if (is_scalar(v) && ag_str_eqc(sv(v), "end")) {
                rel->stop = AG_STOP_END;
            } else if (is_map(v)) {
                rel->stop = AG_STOP_RULE;
                if (compile_rnode(c, lang, v, &rel->stop_rule) != AG_OK)
                    return AG_EINVAL;
            } else {
                return fail(c, v, "stopBy must be `neighbor`, `end` or a rule");
            }
        } else if (ag_str_eqc(sv(k), "field")) {
            if (ag_str_eqc(ag_cstr(name), "precedes") || ag_str_eqc(ag_cstr(name), "follows"))
                return fail(c, k, "`field` is only allowed in `inside` and `has`");
            if (need_scalar(c, v, "field") != AG_OK)
                return AG_EINVAL;
            rel->field = ag_lang_field(lang, sv(v));
            if (rel->field == 0)
                return fail(c, v, "`%.*s` is not a field of %s", (int)v->len, v->text,
                            ag_lang_name(lang));
        } else if (!known(sv(k), keys)) {
            /* ast-grep ignores an unknown key here (it refuses one at the top and in a rule) */
            warn(c, k, "warning: unknown field `%.*s` in %s is ignored (as ast-grep does)",
                 (int)k->len, k->text, name);
        } else {
            inner.pairs[inner.n++] = n->pairs[i];
        }
    }
    if (compile_rnode(c, lang, &inner, &rel->rule) != AG_OK)
        return AG_EINVAL;
    *out = rel;
    return AG_OK;
}

static int compile_list(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, const char *name,
                        ag_rnode_t ***out, uint32_t *nout)
{
    if (n->type != AG_Y_SEQ)
        return fail(c, n, "`%s` must be a sequence of rules", name);
    ag_rnode_t **list = ag_arena_alloc(c->arena, (n->n ? n->n : 1) * sizeof(*list));
    for (uint32_t i = 0; i < n->n; i++)
        if (compile_rnode(c, lang, n->items[i], &list[i]) != AG_OK)
            return AG_EINVAL;
    *out = list;
    *nout = n->n;
    return AG_OK;
}

/* A rule's own utils first, then the global ones (utilDirs), as ast-grep looks them up. */
static int util_index(ctx_t *c, const ag_ynode_t *name)
{
    uint32_t nlocal = c->utils_node ? c->utils_node->n : 0;
    for (uint32_t i = 0; i < nlocal; i++)
        if (ag_str_eq(sv(c->utils_node->pairs[i].key), sv(name)))
            return (int)i;
    for (uint32_t g = 0; g < c->ngutils; g++)
        if (ag_str_eq(c->gutils[g].name, sv(name)))
            return (int)(nlocal + g);
    return -1;
}

/* An+B as ast-grep reads it: spaces anywhere, `n` or `N`, optional signs and numbers
 * ("2n+1", "-n+3", "n", "+3"); false when malformed. */
static bool parse_anb(ag_str_t s, int32_t *a, int32_t *b)
{
    char t[64];
    size_t k = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == ' ' || s.ptr[i] == '\t')
            continue;
        if (k + 1 == sizeof(t))
            return false;
        t[k++] = s.ptr[i];
    }
    t[k] = '\0';
    const char *p = t;
    long sign = 1, num = 0;
    bool digits = false;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    while (*p >= '0' && *p <= '9') {
        num = num * 10 + (*p++ - '0');
        digits = true;
        if (num > INT32_MAX)
            return false;
    }
    if (*p != 'n' && *p != 'N') {
        if (!digits || *p)
            return false;
        *a = 0;
        *b = (int32_t)(sign * num);
        return true;
    }
    p++;
    long step = sign * (digits ? num : 1);
    long off = 0;
    if (*p == '+' || *p == '-') {
        long s2 = *p++ == '-' ? -1 : 1;
        bool d2 = false;
        while (*p >= '0' && *p <= '9') {
            off = off * 10 + (*p++ - '0');
            d2 = true;
            if (off > INT32_MAX)
                return false;
        }
        if (!d2)
            return false;
        off *= s2;
    }
    if (*p)
        return false;
    *a = (int32_t)step;
    *b = (int32_t)off;
    return true;
}

static int compile_nth(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, ag_rnode_t *r)
{
    const ag_ynode_t *pos = n;
    if (is_map(n)) {
        static const char *const keys[] = {"position", "reverse", "ofRule", NULL};
        if (check_keys(c, n, keys, "nthChild") != AG_OK)
            return AG_EINVAL;
        pos = ag_ymap_get(n, "position");
        if (pos == NULL)
            return fail(c, n, "nthChild needs `position`");
        const ag_ynode_t *rev = ag_ymap_get(n, "reverse");
        if (rev && ag_yscalar_bool(rev, &r->nth_reverse) != AG_OK)
            return fail(c, rev, "`reverse` must be true or false");
        const ag_ynode_t *of = ag_ymap_get(n, "ofRule");
        if (of && compile_rnode(c, lang, of, &r->nth_of) != AG_OK)
            return AG_EINVAL;
    }
    long v = 0;
    r->has_nth = true;
    if (is_scalar(pos) && pos->plain && ag_yscalar_int(pos, &v) == AG_OK && v >= INT32_MIN &&
        v <= INT32_MAX) {
        r->nth_position = (int32_t)v; /* 0 or less matches nothing, as in ast-grep */
        return AG_OK;
    }
    if (!is_scalar(pos) || !parse_anb(sv(pos), &r->nth_step, &r->nth_position)) {
        ag_str_t t = is_scalar(pos) ? sv(pos) : ag_str("", 0);
        if (ag_str_eqc(t, "odd") || ag_str_eqc(t, "even"))
            return fail(c, pos,
                        "nthChild position `%.*s` is not accepted by ast-grep 0.51.1: write "
                        "'%s'",
                        (int)t.len, t.ptr, ag_str_eqc(t, "odd") ? "2n+1" : "2n");
        return fail(c, pos,
                    "nthChild position must be a number or an An+B string like '2n+1' or "
                    "'-n+3'");
    }
    return AG_OK;
}

/* range: {start: {line, column}, end: {line, column}}, 0-based as in ast-grep, which ignores
 * other keys (so does astgate, with a warning). */
static int compile_range(ctx_t *c, const ag_ynode_t *n, ag_rnode_t *r)
{
    if (need_map(c, n, "range") != AG_OK)
        return AG_EINVAL;
    static const char *const ends[] = {"start", "end"};
    static const char *const fields[] = {"line", "column"};
    for (uint32_t i = 0; i < n->n; i++) {
        ag_str_t key = sv(n->pairs[i].key);
        if (!ag_str_eqc(key, "start") && !ag_str_eqc(key, "end"))
            warn(c, n->pairs[i].key, "unknown field `%.*s` in range is ignored (as ast-grep does)",
                 (int)key.len, key.ptr);
    }
    for (int e = 0; e < 2; e++) {
        const ag_ynode_t *p = ag_ymap_get(n, ends[e]);
        if (p == NULL)
            return fail(c, n, "range needs `start` and `end`");
        if (need_map(c, p, ends[e]) != AG_OK)
            return AG_EINVAL;
        for (uint32_t i = 0; i < p->n; i++) {
            ag_str_t key = sv(p->pairs[i].key);
            if (!ag_str_eqc(key, "line") && !ag_str_eqc(key, "column"))
                warn(c, p->pairs[i].key,
                     "unknown field `%.*s` in range.%s is ignored (as ast-grep does)", (int)key.len,
                     key.ptr, ends[e]);
        }
        for (int k = 0; k < 2; k++) {
            const ag_ynode_t *v = ag_ymap_get(p, fields[k]);
            long lv;
            if (v == NULL)
                return fail(c, p, "range.%s needs `line` and `column`", ends[e]);
            if (!is_scalar(v) || ag_yscalar_int(v, &lv) != AG_OK || lv < 0 || lv > INT32_MAX)
                return fail(c, v, "range.%s.%s must be a number from 0", ends[e], fields[k]);
            r->range[e * 2 + k] = (uint32_t)lv;
        }
    }
    r->has_range = true;
    return AG_OK;
}

static int compile_rnode(ctx_t *c, ag_lang_t lang, const ag_ynode_t *n, ag_rnode_t **out)
{
    int rc = AG_EINVAL;
    if (++c->depth > MAX_DEPTH) {
        fail(c, n, "rule nested deeper than %d levels", MAX_DEPTH);
        goto out;
    }
    if (need_map(c, n, "a rule") != AG_OK)
        goto out;
    if (check_keys(c, n, RULE_KEYS, NULL) != AG_OK)
        goto out;
    ag_rnode_t *r = ag_arena_alloc(c->arena, sizeof(*r));
    r->matches = -1;
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *k = n->pairs[i].key;
        const ag_ynode_t *v = n->pairs[i].value;
        ag_str_t key = sv(k);
        if (ag_str_eqc(key, "pattern")) {
            if (compile_pattern(c, lang, v, &r->pattern) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "kind")) {
            if (need_scalar(c, v, "kind") != AG_OK)
                goto out;
            r->kind = ag_lang_kind(lang, sv(v));
            if (r->kind == 0)
                goto bad_kind;
        } else if (ag_str_eqc(key, "regex")) {
            if (compile_regex(c, v, &r->regex, &r->regex_literal) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "nthChild")) {
            if (compile_nth(c, lang, v, r) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "range")) {
            if (compile_range(c, v, r) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "inside")) {
            if (compile_relation(c, lang, v, "inside", &r->inside) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "has")) {
            if (compile_relation(c, lang, v, "has", &r->has) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "precedes")) {
            if (compile_relation(c, lang, v, "precedes", &r->precedes) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "follows")) {
            if (compile_relation(c, lang, v, "follows", &r->follows) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "all")) {
            if (compile_list(c, lang, v, "all", &r->all, &r->nall) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "any")) {
            if (compile_list(c, lang, v, "any", &r->any, &r->nany) != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "not")) {
            /* a `not` never binds: its metavariables cannot feed a fix */
            c->def->vars.not_depth++;
            int nrc = compile_rnode(c, lang, v, &r->not_);
            c->def->vars.not_depth--;
            if (nrc != AG_OK)
                goto out;
        } else if (ag_str_eqc(key, "matches")) {
            if (need_scalar(c, v, "matches") != AG_OK)
                goto out;
            r->matches = util_index(c, v);
            if (r->matches < 0) {
                fail(c, v, "`matches` names an unknown util `%.*s`", (int)v->len, v->text);
                goto out;
            }
        }
        continue;
    bad_kind:
        fail(c, v, "`%.*s` is not a kind of %s", (int)v->len, v->text, ag_lang_name(lang));
        goto out;
    }
    *out = r;
    rc = AG_OK;
out:
    c->depth--;
    return rc;
}

/* A util that reaches itself through `matches` on the same node would never stop. */
static bool util_cycle(const ag_rnode_t *r, const ag_util_t *utils, uint32_t nutils, uint8_t *state,
                       int depth)
{
    if (r == NULL || depth > MAX_DEPTH * 4)
        return false;
    if (r->matches >= 0) {
        uint32_t u = (uint32_t)r->matches;
        if (state[u] == 1)
            return true;
        if (state[u] == 0) {
            state[u] = 1;
            if (util_cycle(utils[u].rule, utils, nutils, state, depth + 1))
                return true;
            state[u] = 2;
        }
    }
    for (uint32_t i = 0; i < r->nall; i++)
        if (util_cycle(r->all[i], utils, nutils, state, depth + 1))
            return true;
    for (uint32_t i = 0; i < r->nany; i++)
        if (util_cycle(r->any[i], utils, nutils, state, depth + 1))
            return true;
    return util_cycle(r->not_, utils, nutils, state, depth + 1);
}

/* ---- parameters: metadata.astgate.params, `${{ params.NAME }}` ---- */

static int param_find(const ctx_t *c, ag_str_t name)
{
    for (uint32_t k = 0; k < c->nparams; k++)
        if (ag_str_eq(c->params[k].name, name))
            return (int)k;
    return -1;
}

static bool ident(ag_str_t s)
{
    if (s.len == 0 || s.len > 64)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        bool ok = ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Why v is not a value of p, or NULL when it is. */
static const char *param_bad_value(const fparam_t *p, ag_str_t v)
{
    if (memchr(v.ptr, '\0', v.len))
        return "contains a NUL byte";
    if (p->type == PT_INT) {
        size_t i = v.len && (v.ptr[0] == '-' || v.ptr[0] == '+');
        if (i == v.len || v.len > 19)
            return "is not a whole number (type int)";
        for (; i < v.len; i++)
            if (v.ptr[i] < '0' || v.ptr[i] > '9')
                return "is not a whole number (type int)";
    } else if (p->type == PT_BOOL) {
        if (!ag_str_eqc(v, "true") && !ag_str_eqc(v, "false"))
            return "is not true or false (type bool)";
    }
    if (p->re) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
        int m = pcre2_match(p->re, (PCRE2_SPTR)v.ptr, v.len, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                            md, NULL);
        pcre2_match_data_free(md);
        if (m < 0)
            return "does not match the parameter's pattern";
    }
    return NULL;
}

/* One declaration `NAME: {type, default, pattern, description}` of the document being read. */
static int param_declare(ctx_t *c, const ag_ynode_t *key, const ag_ynode_t *decl)
{
    static const char *const keys[] = {"type", "default", "pattern", "description", NULL};
    if (!ident(sv(key)))
        return fail(c, key, "parameter name `%.*s` must be an identifier ([A-Za-z_][A-Za-z0-9_]*)",
                    (int)key->len, key->text);
    if (need_map(c, decl, "a parameter declaration") != AG_OK ||
        check_keys(c, decl, keys, "a parameter declaration") != AG_OK)
        return AG_EINVAL;
    fparam_t p;
    memset(&p, 0, sizeof(p));
    p.name = sv(key);
    p.decl = key;
    const ag_ynode_t *t = ag_ymap_get(decl, "type");
    if (t) {
        if (is_scalar(t) && ag_str_eqc(sv(t), "string"))
            p.type = PT_STRING;
        else if (is_scalar(t) && ag_str_eqc(sv(t), "int"))
            p.type = PT_INT;
        else if (is_scalar(t) && ag_str_eqc(sv(t), "bool"))
            p.type = PT_BOOL;
        else
            return fail(c, t, "parameter type must be string, int or bool");
    }
    const ag_ynode_t *desc = ag_ymap_get(decl, "description");
    if (desc && !is_scalar(desc))
        return fail(c, desc, "`description` must be a string");
    p.pat = ag_ymap_get(decl, "pattern");
    if (p.pat && compile_regex(c, p.pat, &p.re, NULL) != AG_OK)
        return AG_EINVAL;
    p.dflt = ag_ymap_get(decl, "default");
    if (p.dflt) {
        if (need_scalar(c, p.dflt, "a parameter's default") != AG_OK)
            return AG_EINVAL;
        const char *why = param_bad_value(&p, sv(p.dflt));
        if (why)
            return fail(c, p.dflt, "the default of parameter `%.*s`, `%.*s`, %s", (int)p.name.len,
                        p.name.ptr, (int)p.dflt->len, p.dflt->text, why);
    }
    int k = param_find(c, p.name);
    if (k >= 0) { /* declared again in another rule of the file: must say the same */
        const fparam_t *q = &c->params[k];
        bool same = q->type == p.type && (q->dflt == NULL) == (p.dflt == NULL) &&
                    (q->pat == NULL) == (p.pat == NULL) &&
                    (!p.dflt || ag_str_eq(sv(q->dflt), sv(p.dflt))) &&
                    (!p.pat || ag_str_eq(sv(q->pat), sv(p.pat)));
        if (!same)
            return fail(c, key,
                        "parameter `%.*s` is declared again with another type, default or "
                        "pattern (first at line %u)",
                        (int)p.name.len, p.name.ptr, q->decl->line);
        return AG_OK;
    }
    if (c->nparams == AG_RULES_MAX_PARAMS)
        return fail(c, key, "too many parameters in one file (at most %d)", AG_RULES_MAX_PARAMS);
    c->params[c->nparams++] = p;
    return AG_OK;
}

static const ag_ynode_t *params_node(const ag_ynode_t *doc)
{
    const ag_ynode_t *meta = is_map(doc) ? ag_ymap_get(doc, "metadata") : NULL;
    const ag_ynode_t *ag = is_map(meta) ? ag_ymap_get(meta, "astgate") : NULL;
    return is_map(ag) ? ag_ymap_get(ag, "params") : NULL;
}

/* A set value for parameter k; the set's place for messages. */
static int param_assign(ctx_t *c, uint32_t k, const ag_rules_set_t *st)
{
    fparam_t *p = &c->params[k];
    const char *why = param_bad_value(p, ag_cstr(st->value));
    if (why) {
        if (st->file)
            ag_diag_set(c->d, st->file, st->line, st->col, "parameter `%s` of %s: `%s` %s",
                        st->name, c->file, st->value, why);
        else
            ag_diag_set(c->d, NULL, 0, 0, "--set %s=%s: parameter `%s` of %s: the value %s",
                        st->name, st->value, st->name, c->file, why);
        return AG_EINVAL;
    }
    p->value = ag_arena_strndup(c->arena, st->value, strlen(st->value));
    p->set = true;
    return AG_OK;
}

/* Reads every declaration of the file, then gives each parameter its value. */
static int params_resolve(ctx_t *c, const ag_ydocs_t *docs, const ag_rules_src_t *src)
{
    c->nparams = 0;
    for (uint32_t i = 0; i < docs->n; i++) {
        const ag_ynode_t *ps = params_node(docs->roots[i]);
        if (ps == NULL)
            continue;
        if (need_map(c, ps, "metadata.astgate.params") != AG_OK)
            return AG_EINVAL;
        for (uint32_t j = 0; j < ps->n; j++)
            if (param_declare(c, ps->pairs[j].key, ps->pairs[j].value) != AG_OK)
                return AG_EINVAL;
    }
    for (uint32_t k = 0; k < c->nparams; k++) {
        fparam_t *p = &c->params[k];
        if (p->dflt)
            p->value = ag_arena_strndup(c->arena, p->dflt->text, p->dflt->len);
    }
    for (uint32_t j = 0; src && j < src->nsets; j++) {
        const ag_rules_set_t *st = &src->sets[j];
        int k = param_find(c, ag_cstr(st->name));
        if (k < 0) {
            char list[256] = "";
            size_t off = 0;
            for (uint32_t q = 0; q < c->nparams && off < sizeof(list); q++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%.*s", q ? ", " : "",
                                        (int)c->params[q].name.len, c->params[q].name.ptr);
            ag_diag_set(c->d, st->file, st->line, st->col,
                        "`set`: %s declares no parameter `%s` (%s%s)", c->file, st->name,
                        c->nparams ? "its parameters: " : "it has no parameters",
                        c->nparams ? list : "");
            return AG_EINVAL;
        }
        if (param_assign(c, (uint32_t)k, st) != AG_OK)
            return AG_EINVAL;
    }
    for (uint32_t j = 0; j < c->nglobal; j++) {
        int k = param_find(c, ag_cstr(c->global[j].name));
        if (k < 0)
            continue;
        c->global_hit[j] = true;
        if (param_assign(c, (uint32_t)k, &c->global[j]) != AG_OK)
            return AG_EINVAL;
    }
    for (uint32_t k = 0; k < c->nparams; k++) {
        const fparam_t *p = &c->params[k];
        if (p->value == NULL)
            return fail(c, p->decl,
                        "parameter `%.*s` has no default and is not set (astgate.yaml: "
                        "`rules: [{file: %s, set: {%.*s: ...}}]`, or --set %.*s=...)",
                        (int)p->name.len, p->name.ptr, c->file, (int)p->name.len, p->name.ptr,
                        (int)p->name.len, p->name.ptr);
    }
    return AG_OK;
}

/* The text of scalar n with every `${{ params.NAME }}` replaced by NAME's value, in the arena. */
static int expand(ctx_t *c, const ag_ynode_t *n, char **out, uint32_t *out_len)
{
    ag_str_t t = sv(n);
    if (ag_memmem(t, ag_cstr("${{")) == NULL) {
        *out = ag_arena_strndup(c->arena, t.ptr, t.len);
        *out_len = (uint32_t)t.len;
        return AG_OK;
    }
    ag_buf_t b;
    ag_buf_init(&b, 1u << 20);
    int rc = AG_OK;
    size_t i = 0;
    while (i < t.len && rc == AG_OK) {
        const char *p = ag_memmem(ag_str(t.ptr + i, t.len - i), ag_cstr("${{"));
        if (p == NULL) {
            rc = ag_buf_append(&b, t.ptr + i, t.len - i);
            break;
        }
        rc = ag_buf_append(&b, t.ptr + i, (size_t)(p - (t.ptr + i)));
        size_t j = (size_t)(p - t.ptr) + 3;
        while (j < t.len && t.ptr[j] == ' ')
            j++;
        size_t s = j + 7;
        bool ok = t.len - j >= 7 && memcmp(t.ptr + j, "params.", 7) == 0;
        j = ok ? s : j;
        while (ok && j < t.len &&
               (t.ptr[j] == '_' || (t.ptr[j] >= 'a' && t.ptr[j] <= 'z') ||
                (t.ptr[j] >= 'A' && t.ptr[j] <= 'Z') || (t.ptr[j] >= '0' && t.ptr[j] <= '9')))
            j++;
        ag_str_t name = ag_str(t.ptr + s, ok ? j - s : 0);
        while (ok && j < t.len && t.ptr[j] == ' ')
            j++;
        if (!ok || name.len == 0 || t.len - j < 2 || memcmp(t.ptr + j, "}}", 2) != 0) {
            rc = fail(c, n, "`${{` begins a parameter: write `${{ params.NAME }}`");
            break;
        }
        int k = param_find(c, name);
        if (k < 0) {
            rc = fail(c, n,
                      "unknown parameter `%.*s` (declare it under metadata.astgate.params: "
                      "`%.*s: {type: string, default: ...}`)",
                      (int)name.len, name.ptr, (int)name.len, name.ptr);
            break;
        }
        c->used |= 1u << k;
        if (rc == AG_OK)
            rc = ag_buf_append(&b, c->params[k].value, strlen(c->params[k].value));
        i = j + 2;
    }
    if (rc == AG_ETOOBIG)
        rc = fail(c, n, "the value is larger than 1 MiB once its parameters are replaced");
    if (rc == AG_OK) {
        ag_str_t r = ag_buf_str(&b);
        *out = ag_arena_strndup(c->arena, r.ptr, r.len);
        *out_len = (uint32_t)r.len;
    }
    ag_buf_dispose(&b);
    return rc;
}

/* The rule's parameters (those its document declares or its values use) into def. */
static void params_store(ctx_t *c, const ag_ynode_t *doc, ag_rule_def_t *def)
{
    const ag_ynode_t *ps = params_node(doc);
    for (uint32_t j = 0; ps && is_map(ps) && j < ps->n; j++) {
        int k = param_find(c, sv(ps->pairs[j].key));
        if (k >= 0)
            c->used |= 1u << k;
    }
    uint32_t n = (uint32_t)__builtin_popcount(c->used);
    if (n == 0)
        return;
    def->param_names = ag_arena_alloc(c->arena, n * sizeof(char *));
    def->param_values = ag_arena_alloc(c->arena, n * sizeof(char *));
    ag_buf_t json;
    ag_buf_init(&json, 1u << 20);
    bool any_set = false;
    for (uint32_t k = 0; k < c->nparams; k++) {
        if (!(c->used & (1u << k)))
            continue;
        const fparam_t *p = &c->params[k];
        def->param_names[def->nparams] = ag_arena_strndup(c->arena, p->name.ptr, p->name.len);
        def->param_values[def->nparams++] = p->value;
        if (!p->set)
            continue;
        int rc = ag_buf_append(&json, any_set ? "," : "{", 1);
        if (rc == AG_OK)
            rc = ag_json_append_str(&json, p->name);
        if (rc == AG_OK)
            rc = ag_buf_append(&json, ":", 1);
        if (rc == AG_OK)
            rc = ag_json_append_str(&json, ag_cstr(p->value));
        any_set = any_set || rc == AG_OK;
        if (rc != AG_OK) /* values over 1 MiB in all: the audit line names none */
            json.len = 0;
    }
    if (any_set && json.len && ag_buf_append(&json, "}", 1) == AG_OK) {
        ag_str_t r = ag_buf_str(&json);
        def->params_json = ag_arena_strndup(c->arena, r.ptr, r.len);
    }
    ag_buf_dispose(&json);
}

/* ---- metadata.astgate.ensure ---- */

/* import: {name: N, from: MODULE} */
static int parse_import(ctx_t *c, const ag_ynode_t *n, ag_ensure_case_t *ec)
{
    static const char *const keys[] = {"name", "from", NULL};
    if (need_map(c, n, "import") != AG_OK || check_keys(c, n, keys, "import") != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *name = ag_ymap_get(n, "name");
    const ag_ynode_t *from = ag_ymap_get(n, "from");
    if (name == NULL || from == NULL)
        return fail(c, n, "`import` needs `name` and `from`");
    if (need_scalar(c, name, "import name") != AG_OK ||
        need_scalar(c, from, "import from") != AG_OK)
        return AG_EINVAL;
    if (expand(c, name, &ec->import_name, &ec->import_name_len) != AG_OK ||
        expand(c, from, &ec->import_from, &ec->import_from_len) != AG_OK)
        return AG_EINVAL;
    ag_str_t nm = ag_str(ec->import_name, ec->import_name_len);
    ag_str_t fr = ag_str(ec->import_from, ec->import_from_len);
    if (!ag_js_ident(nm))
        return fail(c, name, "`import.name` must be a JavaScript identifier");
    if (fr.len == 0 || memchr(fr.ptr, '\'', fr.len) || memchr(fr.ptr, '"', fr.len) ||
        memchr(fr.ptr, '\\', fr.len) || memchr(fr.ptr, '\n', fr.len))
        return fail(c, from, "`import.from` must be a module name without quotes or backslashes");
    return AG_OK;
}

/* The value keys shared by an ensure step and a `missing` entry: string | code, quote, import. */
static int parse_value(ctx_t *c, const ag_ynode_t *n, ag_ensure_case_t *ec)
{
    const ag_ynode_t *str = ag_ymap_get(n, "string");
    const ag_ynode_t *code = ag_ymap_get(n, "code");
    if (str && code)
        return fail(c, code, "use either `string` or `code`, not both");
    if (str || code) {
        const ag_ynode_t *vn = str ? str : code;
        if (!is_scalar(vn))
            return fail(c, vn, "`%s` must be a scalar", str ? "string" : "code");
        if (code && vn->len == 0)
            return fail(c, vn, "`code` must not be empty");
        ec->has_string = str != NULL;
        ec->has_code = code != NULL;
        if (expand(c, vn, &ec->value, &ec->value_len) != AG_OK)
            return AG_EINVAL;
        if (code && ec->value_len == 0)
            return fail(c, vn, "`code` must not be empty once its parameters are replaced");
    }
    const ag_ynode_t *q = ag_ymap_get(n, "quote");
    if (q) {
        if (is_scalar(q) && ag_str_eqc(sv(q), "keep"))
            ec->quote = AG_QUOTE_KEEP;
        else if (is_scalar(q) && ag_str_eqc(sv(q), "single"))
            ec->quote = AG_QUOTE_SINGLE;
        else if (is_scalar(q) && ag_str_eqc(sv(q), "double"))
            ec->quote = AG_QUOTE_DOUBLE;
        else
            return fail(c, q, "`quote` must be keep, single or double");
    }
    const ag_ynode_t *imp = ag_ymap_get(n, "import");
    if (imp) {
        if (parse_import(c, imp, ec) != AG_OK)
            return AG_EINVAL;
        if (!ec->has_code)
            return fail(c, imp, "`import` goes with a `code` value that uses the name");
    }
    return AG_OK;
}

/* One entry of `missing`: {when?, string | code, quote?, import?}. */
static int parse_missing(ctx_t *c, ag_lang_t lang, bool first, const ag_ynode_t *n,
                         ag_ensure_case_t *ec)
{
    static const char *const keys[] = {"when", "string", "code", "quote", "import", NULL};
    if (need_map(c, n, "a `missing` value") != AG_OK ||
        check_keys(c, n, keys, "a `missing` value") != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *when = ag_ymap_get(n, "when");
    if (when && compile_rnode(c, lang, when, &ec->when[lang]) != AG_OK)
        return AG_EINVAL;
    if (!first)
        return AG_OK;
    ec->line = n->line;
    ec->col = n->col;
    if (parse_value(c, n, ec) != AG_OK)
        return AG_EINVAL;
    if (!ec->has_string && !ec->has_code)
        return fail(c, n, "a `missing` value needs exactly one of `string` and `code`");
    return AG_OK;
}

static int parse_case(ctx_t *c, ag_lang_t lang, bool first, const ag_ynode_t *n,
                      ag_ensure_case_t *ec, bool root)
{
    static const char *const root_keys[] = {"target",  "key",    "arg",   "each",  "onMissing",
                                            "string",  "code",   "quote", "cases", "steps",
                                            "missing", "import", NULL};
    static const char *const case_keys[] = {"when",   "key",     "arg",    "each",  "onMissing",
                                            "string", "code",    "quote",  "cases", "recurse",
                                            "steps",  "missing", "import", NULL};
    if (need_map(c, n, root ? "ensure" : "an ensure case") != AG_OK)
        return AG_EINVAL;
    if (check_keys(c, n, root ? root_keys : case_keys, root ? "ensure" : "an ensure case") != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *when = ag_ymap_get(n, "when");
    if (when && compile_rnode(c, lang, when, &ec->when[lang]) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *cases = ag_ymap_get(n, "cases");
    const ag_ynode_t *steps = ag_ymap_get(n, "steps");
    const ag_ynode_t *missing = ag_ymap_get(n, "missing");
    if (first) {
        ec->line = n->line;
        ec->col = n->col;
        const ag_ynode_t *key = ag_ymap_get(n, "key");
        const ag_ynode_t *arg = ag_ymap_get(n, "arg");
        const ag_ynode_t *each = ag_ymap_get(n, "each");
        if ((key != NULL) + (arg != NULL) + (each != NULL) > 1)
            return fail(c, n, "use only one of `key`, `arg` and `each` in one ensure step");
        ec->step = AG_STEP_SELF;
        if (key || each) {
            const ag_ynode_t *kn = key ? key : each;
            if (need_scalar(c, kn, key ? "key" : "each") != AG_OK)
                return AG_EINVAL;
            ec->step = key ? AG_STEP_KEY : AG_STEP_EACH;
            ec->key = ag_arena_strndup(c->arena, kn->text, kn->len);
            ec->key_len = (uint32_t)kn->len;
        } else if (arg) {
            long v;
            if (!is_scalar(arg) || ag_yscalar_int(arg, &v) != AG_OK || v < 0 || v > 255)
                return fail(c, arg, "`arg` must be an argument index from 0");
            ec->step = AG_STEP_ARG;
            ec->arg = (uint32_t)v;
        }
        if (parse_value(c, n, ec) != AG_OK)
            return AG_EINVAL;
        if (missing) {
            if (ec->step != AG_STEP_KEY && ec->step != AG_STEP_EACH)
                return fail(c, missing, "`missing` only applies to a `key` or `each` step");
            if (missing->type != AG_Y_SEQ || missing->n == 0)
                return fail(c, missing, "`missing` must be a non-empty sequence of values");
            ec->missing = ag_arena_alloc(c->arena, missing->n * sizeof(*ec->missing));
            ec->nmissing = missing->n;
        }
        const ag_ynode_t *om = ag_ymap_get(n, "onMissing");
        if (om) {
            if (is_scalar(om) && ag_str_eqc(sv(om), "insert"))
                ec->on_missing = AG_MISSING_INSERT;
            else if (is_scalar(om) && ag_str_eqc(sv(om), "flag"))
                ec->on_missing = AG_MISSING_FLAG;
            else if (is_scalar(om) && ag_str_eqc(sv(om), "skip"))
                ec->on_missing = AG_MISSING_SKIP;
            else
                return fail(c, om, "`onMissing` must be insert, flag or skip");
            if (ec->step != AG_STEP_KEY && ec->step != AG_STEP_EACH)
                return fail(c, om, "`onMissing` only applies to a `key` or `each` step");
            if (ec->on_missing == AG_MISSING_INSERT && !ec->has_string && !ec->has_code && !missing)
                return fail(c, om,
                            "`onMissing: insert` needs a `string`, `code` or `missing` "
                            "to insert");
        }
        const ag_ynode_t *rec = ag_ymap_get(n, "recurse");
        if (rec && ag_yscalar_bool(rec, &ec->recurse) != AG_OK)
            return fail(c, rec, "`recurse` must be true or false");
        int what =
            (ec->has_string || ec->has_code) + (cases != NULL) + ec->recurse + (steps != NULL);
        if (what != 1)
            return fail(c, n,
                        "an ensure step needs exactly one of `string`, `code`, `cases`, "
                        "`steps` and `recurse: true`");
        if (steps) {
            if (steps->type != AG_Y_SEQ || steps->n == 0)
                return fail(c, steps, "`steps` must be a non-empty sequence");
            ec->steps = ag_arena_alloc(c->arena, steps->n * sizeof(*ec->steps));
            ec->nsteps = steps->n;
        }
        if (cases) {
            if (cases->type != AG_Y_SEQ || cases->n == 0)
                return fail(c, cases, "`cases` must be a non-empty sequence");
            ec->cases = ag_arena_alloc(c->arena, cases->n * sizeof(*ec->cases));
            ec->ncases = cases->n;
        }
    }
    for (uint32_t i = 0; i < ec->ncases; i++)
        if (parse_case(c, lang, first, cases->items[i], &ec->cases[i], false) != AG_OK)
            return AG_EINVAL;
    for (uint32_t i = 0; i < ec->nsteps; i++)
        if (parse_case(c, lang, first, steps->items[i], &ec->steps[i], false) != AG_OK)
            return AG_EINVAL;
    for (uint32_t i = 0; i < ec->nmissing; i++) {
        const ag_ynode_t *m = missing->items[i];
        if (parse_missing(c, lang, first, m, &ec->missing[i]) != AG_OK)
            return AG_EINVAL;
    }
    return AG_OK;
}

static int var_of(ctx_t *c, const ag_ynode_t *n, const char *what, bool intern)
{
    if (need_scalar(c, n, what) != AG_OK)
        return -1;
    ag_str_t s = sv(n);
    if (s.len < 2 || s.ptr[0] != '$') {
        fail(c, n, "%s must be a metavariable like $NAME", what);
        return -1;
    }
    s.ptr++;
    s.len--;
    if (s.len > 2 && s.ptr[0] == '$' && s.ptr[1] == '$') {
        s.ptr += 2; /* $$$NAME: the same slot as $NAME */
        s.len -= 2;
    }
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || ch == '_' || (i > 0 && ch >= '0' && ch <= '9'))) {
            fail(c, n, "%s must be a metavariable like $NAME", what);
            return -1;
        }
    }
    int v = intern ? ag_vars_intern(&c->def->vars, s) : ag_vars_find(&c->def->vars, s);
    if (v < 0 && intern)
        fail(c, n, "too many metavariables (at most %d)", AG_MAX_VARS);
    else if (v < 0)
        fail(c, n, "%s `$%.*s` is never bound by the rule", what, (int)s.len, s.ptr);
    return v;
}

/* ---- transforms and fix ---- */

/* One transform in object form: op names it, body holds its arguments (a mapping). */
static int compile_transform(ctx_t *c, const ag_ynode_t *op, const ag_ynode_t *body,
                             ag_transform_t *t)
{
    if (need_map(c, body, "a transform") != AG_OK)
        return AG_EINVAL;
    if (ag_str_eqc(sv(op), "replace")) {
        static const char *const keys[] = {"source", "replace", "by", NULL};
        if (check_keys(c, body, keys, "replace") != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *re = ag_ymap_get(body, "replace");
        const ag_ynode_t *by = ag_ymap_get(body, "by");
        if (re == NULL || by == NULL)
            return fail(c, body, "replace needs `source`, `replace` and `by`");
        t->kind = AG_TRANSFORM_REPLACE;
        if (compile_regex(c, re, &t->re, NULL) != AG_OK)
            return AG_EINVAL;
        if (!is_scalar(by))
            return fail(c, by, "`by` must be a string");
        t->by = ag_arena_strndup(c->arena, by->text, by->len);
    } else if (ag_str_eqc(sv(op), "substring")) {
        static const char *const keys[] = {"source", "startChar", "endChar", NULL};
        if (check_keys(c, body, keys, "substring") != AG_OK)
            return AG_EINVAL;
        t->kind = AG_TRANSFORM_SUBSTRING;
        const ag_ynode_t *s = ag_ymap_get(body, "startChar");
        const ag_ynode_t *e = ag_ymap_get(body, "endChar");
        long lv;
        if (s) {
            if (!is_scalar(s) || ag_yscalar_int(s, &lv) != AG_OK || lv < INT32_MIN ||
                lv > INT32_MAX)
                return fail(c, s, "`startChar` must be an integer");
            t->start_char = (int32_t)lv;
            t->has_start = true;
        }
        if (e) {
            if (!is_scalar(e) || ag_yscalar_int(e, &lv) != AG_OK || lv < INT32_MIN ||
                lv > INT32_MAX)
                return fail(c, e, "`endChar` must be an integer");
            t->end_char = (int32_t)lv;
            t->has_end = true;
        }
    } else if (ag_str_eqc(sv(op), "convert")) {
        static const char *const keys[] = {"source", "toCase", "separatedBy", NULL};
        if (check_keys(c, body, keys, "convert") != AG_OK)
            return AG_EINVAL;
        t->kind = AG_TRANSFORM_CONVERT;
        const ag_ynode_t *tc = ag_ymap_get(body, "toCase");
        if (tc == NULL)
            return fail(c, body, "convert needs `toCase`");
        int k = is_scalar(tc) ? ag_case_parse(sv(tc)) : -1;
        if (k < 0)
            return fail(c, tc,
                        "unknown toCase `%.*s`, expected one of lowerCase, upperCase, "
                        "capitalize, camelCase, snakeCase, kebabCase, pascalCase",
                        is_scalar(tc) ? (int)tc->len : 0, is_scalar(tc) ? tc->text : "");
        t->to_case = (uint8_t)k;
        t->seps = AG_SEP_ALL;
        const ag_ynode_t *sb = ag_ymap_get(body, "separatedBy");
        if (sb) {
            if (sb->type != AG_Y_SEQ)
                return fail(c, sb, "`separatedBy` must be a sequence");
            t->seps = 0;
            for (uint32_t i = 0; i < sb->n; i++) {
                const ag_ynode_t *it = sb->items[i];
                int b = is_scalar(it) ? ag_sep_parse(sv(it)) : -1;
                if (b < 0)
                    return fail(c, it,
                                "unknown separator `%.*s`, expected one of caseChange, dash, "
                                "dot, slash, space, underscore",
                                is_scalar(it) ? (int)it->len : 0, is_scalar(it) ? it->text : "");
                t->seps |= (uint8_t)b;
            }
        }
    } else if (ag_str_eqc(sv(op), "rewrite")) {
        static const char *const keys[] = {"source", "rewriters", "joinBy", NULL};
        if (check_keys(c, body, keys, "rewrite") != AG_OK)
            return AG_EINVAL;
        t->kind = AG_TRANSFORM_REWRITE;
        const ag_ynode_t *ids = ag_ymap_get(body, "rewriters");
        if (ids == NULL)
            return fail(c, body, "rewrite needs `rewriters`");
        if (ids->type != AG_Y_SEQ)
            return fail(c, ids, "`rewriters` must be a sequence of rewriter ids");
        t->rewriters = ag_arena_alloc(c->arena, (ids->n ? ids->n : 1) * sizeof(*t->rewriters));
        for (uint32_t i = 0; i < ids->n; i++) {
            const ag_ynode_t *id = ids->items[i];
            if (need_scalar(c, id, "a rewriter id") != AG_OK)
                return AG_EINVAL;
            uint32_t k = 0;
            while (k < c->def->nrewriters && !ag_str_eqc(sv(id), c->def->rewriters[k].id))
                k++;
            if (k == c->def->nrewriters) {
                /* ast-grep skips an undefined rewriter without a word */
                warn(c, id,
                     "rewriter `%.*s` is not defined in this rule's `rewriters`: ignored "
                     "(as ast-grep does)",
                     (int)id->len, id->text);
                continue;
            }
            t->rewriters[t->nrewriters++] = k;
        }
        const ag_ynode_t *jb = ag_ymap_get(body, "joinBy");
        if (jb) {
            if (!is_scalar(jb))
                return fail(c, jb, "`joinBy` must be a string");
            t->join_by = ag_arena_strndup(c->arena, jb->text, jb->len);
            t->join_len = (uint32_t)jb->len;
        }
    } else {
        return fail(c, op,
                    "unknown transform `%.*s`, expected one of replace, substring, convert, "
                    "rewrite",
                    (int)op->len, op->text);
    }
    const ag_ynode_t *src = ag_ymap_get(body, "source");
    if (src == NULL)
        return fail(c, body, "a transform needs `source`");
    t->source = var_of(c, src, "source", false);
    if (t->source < 0)
        return AG_EINVAL;
    return AG_OK;
}

/* A node for a piece of the scalar v, starting off bytes into its text: at its own column when
 * the scalar sits verbatim on its line, else at v. */
static ag_ynode_t *piece_at(ctx_t *c, const ag_ynode_t *v, size_t off, ag_str_t text)
{
    ag_ynode_t *p = ag_arena_alloc(c->arena, sizeof(*p));
    memset(p, 0, sizeof(*p));
    p->type = AG_Y_SCALAR;
    p->line = v->line;
    p->col = v->col;
    if (off <= v->len && scalar_verbatim(c, v, v->len))
        for (size_t i = 0; i < off; i++)
            if (((unsigned char)v->text[i] & 0xC0) != 0x80)
                p->col++;
    p->text = ag_arena_strndup(c->arena, text.ptr, text.len);
    p->len = text.len;
    p->plain = true;
    return p;
}

static void set_pos(ag_ynode_t *n, unsigned line, unsigned col, int depth)
{
    n->line = line;
    n->col = col;
    if (depth > 4)
        return;
    for (uint32_t i = 0; n->type == AG_Y_SEQ && i < n->n; i++)
        set_pos(n->items[i], line, col, depth + 1);
    for (uint32_t i = 0; n->type == AG_Y_MAP && i < n->n; i++)
        set_pos(n->pairs[i].value, line, col, depth + 1);
}

static ag_str_t str_trim(ag_str_t s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t' || s.ptr[0] == '\n' || s.ptr[0] == '\r'))
        s.ptr++, s.len--;
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t' ||
                     s.ptr[s.len - 1] == '\n' || s.ptr[s.len - 1] == '\r'))
        s.len--;
    return s;
}

#define MAX_TARGS 8

/* The string form `op($SRC, key=value, ...)` (ast-grep >= 0.38), split as ast-grep splits it: the
 * name up to the first `(`, every `)` at the end dropped, the source up to the first `,`, then
 * `key=value` pairs whose value is a '...', "..." or [...] span or runs to the next `,`; each value
 * is read as YAML. The arguments then go through the object form's checks. */
static int compile_transform_string(ctx_t *c, const ag_ynode_t *v, ag_transform_t *t)
{
    ag_str_t in = sv(v);
    ag_str_t all = str_trim(in);
    size_t base = (size_t)(all.ptr - in.ptr);
    const char *open = memchr(all.ptr, '(', all.len);
    int rc = AG_EINVAL;
    ag_ydocs_t docs[MAX_TARGS];
    uint32_t ndocs = 0;
    memset(docs, 0, sizeof(docs));
    if (open == NULL)
        return fail(c, v,
                    "transform `%.*s` has a syntax error: expected name($SOURCE, key=value, ...)",
                    (int)all.len, all.ptr);
    ag_str_t func = str_trim(ag_str(all.ptr, (size_t)(open - all.ptr)));
    ag_str_t rest = ag_str(open + 1, all.len - (size_t)(open + 1 - all.ptr));
    if (rest.len == 0 || rest.ptr[rest.len - 1] != ')')
        warn(c, piece_at(c, v, base + all.len, ag_str("", 0)),
             "transform `%.*s` lacks its closing `)` (ast-grep accepts it too)", (int)all.len,
             all.ptr);
    while (rest.len && rest.ptr[rest.len - 1] == ')')
        rest.len--;
    const char *comma = memchr(rest.ptr, ',', rest.len);
    if (comma == NULL)
        return fail(c, piece_at(c, v, (size_t)(rest.ptr - in.ptr), ag_str("", 0)),
                    "transform `%.*s` has a syntax error: expected `,` and arguments after the "
                    "source (ast-grep refuses it too)",
                    (int)all.len, all.ptr);
    ag_str_t src = str_trim(ag_str(rest.ptr, (size_t)(comma - rest.ptr)));
    ag_ynode_t *opn = piece_at(c, v, (size_t)(func.ptr - in.ptr), func);
    ag_ynode_t *srcn = piece_at(c, v, (size_t)(src.ptr - in.ptr), src);
    ag_ypair_t *pairs = ag_arena_alloc(c->arena, (MAX_TARGS + 1) * sizeof(*pairs));
    uint32_t np = 0;
    pairs[np].key = piece_at(c, v, (size_t)(src.ptr - in.ptr), AG_STR_LIT("source"));
    pairs[np++].value = srcn;
    ag_str_t r = str_trim(ag_str(comma + 1, rest.len - (size_t)(comma + 1 - rest.ptr)));
    while (r.len) {
        const char *eq = memchr(r.ptr, '=', r.len);
        if (eq == NULL) {
            fail(c, piece_at(c, v, (size_t)(r.ptr - in.ptr), ag_str("", 0)),
                 "transform `%.*s` has a syntax error: expected key=value at `%.*s`", (int)all.len,
                 all.ptr, (int)r.len, r.ptr);
            goto out;
        }
        ag_str_t key = str_trim(ag_str(r.ptr, (size_t)(eq - r.ptr)));
        ag_str_t nx = ag_str(eq + 1, r.len - (size_t)(eq + 1 - r.ptr));
        while (nx.len && (nx.ptr[0] == ' ' || nx.ptr[0] == '\t'))
            nx.ptr++, nx.len--;
        size_t vend;
        if (nx.len && (nx.ptr[0] == '\'' || nx.ptr[0] == '"' || nx.ptr[0] == '[')) {
            char close = nx.ptr[0] == '[' ? ']' : nx.ptr[0];
            const char *q = nx.len > 1 ? memchr(nx.ptr + 1, close, nx.len - 1) : NULL;
            if (q == NULL) {
                fail(c, piece_at(c, v, (size_t)(nx.ptr - in.ptr), ag_str("", 0)),
                     "transform `%.*s` has a syntax error: `%c` is never closed", (int)all.len,
                     all.ptr, nx.ptr[0]);
                goto out;
            }
            vend = (size_t)(q + 1 - nx.ptr);
        } else {
            const char *cm = memchr(nx.ptr, ',', nx.len);
            vend = cm ? (size_t)(cm - nx.ptr) : nx.len;
        }
        ag_str_t val = ag_str(nx.ptr, vend);
        ag_ynode_t *at = piece_at(c, v, (size_t)(val.ptr - in.ptr), val);
        if (str_trim(val).len == 0) {
            fail(c, at, "transform argument `%.*s` has no value", (int)key.len, key.ptr);
            goto out;
        }
        if (ndocs == MAX_TARGS) {
            fail(c, at, "too many transform arguments");
            goto out;
        }
        ag_diag_t yd;
        memset(&yd, 0, sizeof(yd));
        if (ag_yaml_load(val, c->file, &docs[ndocs], &yd) != AG_OK) {
            fail(c, at, "transform argument `%.*s`: invalid value `%.*s`: %s", (int)key.len,
                 key.ptr, (int)val.len, val.ptr, yd.msg);
            goto out;
        }
        ag_ydocs_t *dd = &docs[ndocs++];
        ag_ynode_t *valn = at;
        if (dd->n > 0) {
            valn = dd->roots[0];
            set_pos(valn, at->line, at->col, 0);
        }
        ag_ynode_t *keyn = piece_at(c, v, (size_t)(key.ptr - in.ptr), key);
        if (ag_str_eqc(key, "source")) {
            fail(c, keyn, "`source` is not a valid argument: the source is the first one");
            goto out;
        }
        uint32_t k = 0;
        while (k < np && !ag_str_eq(sv(pairs[k].key), key))
            k++;
        if (k == np)
            np++; /* the last of a repeated key wins, as in ast-grep */
        pairs[k].key = keyn;
        pairs[k].value = valn;
        r = ag_str(nx.ptr + vend, nx.len - vend);
        r = str_trim(r);
        while (r.len && r.ptr[0] == ',')
            r.ptr++, r.len--;
        r = str_trim(r);
    }
    ag_ynode_t *body = ag_arena_alloc(c->arena, sizeof(*body));
    memset(body, 0, sizeof(*body));
    body->type = AG_Y_MAP;
    body->line = v->line;
    body->col = v->col;
    body->pairs = pairs;
    body->n = np;
    rc = compile_transform(c, opn, body, t);
out:
    for (uint32_t i = 0; i < ndocs; i++)
        ag_ydocs_dispose(&docs[i]);
    return rc;
}

static int compile_transforms(ctx_t *c, const ag_ynode_t *n, ag_transform_t **out, uint32_t *nout)
{
    if (need_map(c, n, "transform") != AG_OK)
        return AG_EINVAL;
    ag_rule_def_t *def = c->def;
    ag_transform_t *list = ag_arena_alloc(c->arena, (n->n ? n->n : 1) * sizeof(*list));
    uint32_t nlist = 0;
    *out = list;
    *nout = 0;
    /* intern every output first so transforms may use each other */
    int outs[AG_MAX_VARS];
    if (n->n > AG_MAX_VARS)
        return fail(c, n, "too many transforms");
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *k = n->pairs[i].key;
        int v = ag_vars_intern(&def->vars, sv(k));
        if (v < 0)
            return fail(c, k, "too many metavariables (at most %d)", AG_MAX_VARS);
        outs[i] = v;
    }
    bool done[AG_MAX_VARS] = {false};
    ag_transform_t tmp[AG_MAX_VARS];
    memset(tmp, 0, sizeof(tmp));
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *v = n->pairs[i].value;
        ag_transform_t *t = &tmp[i];
        t->var = outs[i];
        if (is_scalar(v)) {
            if (compile_transform_string(c, v, t) != AG_OK)
                return AG_EINVAL;
            continue;
        }
        if (need_map(c, v, "a transform") != AG_OK)
            return AG_EINVAL;
        if (v->n != 1)
            return fail(c, v,
                        "a transform has exactly one of replace, substring, convert, rewrite");
        if (compile_transform(c, v->pairs[0].key, v->pairs[0].value, t) != AG_OK)
            return AG_EINVAL;
    }
    /* dependency order: a transform runs after the transform whose output it reads */
    for (uint32_t round = 0; round < n->n; round++) {
        for (uint32_t i = 0; i < n->n; i++) {
            if (done[i])
                continue;
            bool ready = true;
            for (uint32_t j = 0; j < n->n; j++)
                if (!done[j] && tmp[i].source == outs[j])
                    ready = false;
            if (ready) {
                list[nlist++] = tmp[i];
                done[i] = true;
            }
        }
    }
    if (nlist != n->n)
        return fail(c, n, "transforms depend on each other in a cycle");
    *nout = nlist;
    return AG_OK;
}

static int check_template_vars(ctx_t *c, const ag_ynode_t *n, ag_str_t t)
{
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] != '$')
            continue;
        size_t j = i;
        while (j < t.len && t.ptr[j] == '$' && j - i < 3)
            j++;
        size_t s = j;
        while (j < t.len && ((t.ptr[j] >= 'A' && t.ptr[j] <= 'Z') || t.ptr[j] == '_' ||
                             (j > s && t.ptr[j] >= '0' && t.ptr[j] <= '9')))
            j++;
        if (j == s) {
            i = j - 1;
            continue;
        }
        int v = ag_vars_find(&c->def->vars, ag_str(t.ptr + s, j - s));
        if (!(j - s == 1 && t.ptr[s] == '_') && v < 0)
            return fail(c, n, "fix uses `%.*s`, which the rule never binds", (int)(j - i),
                        t.ptr + i);
        if (v >= 0 && !(c->def->vars.bound & (1u << v)))
            return fail(c, n,
                        "fix uses `%.*s`, which the rule binds only under `not` (a `not` "
                        "never binds)",
                        (int)(j - i), t.ptr + i);
        i = j - 1;
    }
    return AG_OK;
}

/* fix: a template, a FixConfig {template, expandStart, expandEnd, title}, or a list of them (the
 * first applies, as in ast-grep). expandStart/expandEnd compile for every grammar of langs. */
static int compile_fix(ctx_t *c, const ag_ynode_t *n, char **out, uint32_t *out_len,
                       ag_rule_lang_t *langs)
{
    const ag_ynode_t *t = n;
    if (n->type == AG_Y_SEQ) {
        if (n->n == 0)
            return fail(c, n, "`fix` list is empty");
        t = n->items[0]; /* ast-grep applies the first fixer */
    }
    if (is_map(t)) {
        static const char *const keys[] = {"template", "expandStart", "expandEnd", "title", NULL};
        if (check_keys(c, t, keys, "fix") != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *xs = ag_ymap_get(t, "expandStart");
        const ag_ynode_t *xe = ag_ymap_get(t, "expandEnd");
        for (int li = 0; li < AG_LANG_COUNT; li++) {
            if (!langs[li].enabled)
                continue;
            if (xs && compile_rnode(c, (ag_lang_t)li, xs, &langs[li].expand_start) != AG_OK)
                return AG_EINVAL;
            if (xe && compile_rnode(c, (ag_lang_t)li, xe, &langs[li].expand_end) != AG_OK)
                return AG_EINVAL;
        }
        const ag_ynode_t *tpl = ag_ymap_get(t, "template");
        if (tpl == NULL)
            return fail(c, t, "a fix object needs `template`");
        t = tpl;
    }
    if (!is_scalar(t))
        return fail(c, t, "`fix` must be a string template");
    if (expand(c, t, out, out_len) != AG_OK)
        return AG_EINVAL;
    if (check_template_vars(c, t, ag_str(*out, *out_len)) != AG_OK)
        return AG_EINVAL;
    return AG_OK;
}

/* ---- rewriters (transform.rewrite) ---- */

/* `constraints` of a rule or a rewriter (`who`): a rule object per metavariable it binds. */
static int compile_constraints(ctx_t *c, ag_lang_t l, const ag_rule_def_t *def,
                               const ag_ynode_t *cons, ag_rule_lang_t *rl, const char *who)
{
    for (uint32_t i = 0; i < cons->n; i++) {
        const ag_ynode_t *key = cons->pairs[i].key;
        ag_str_t name = sv(key);
        if (name.len && name.ptr[0] == '$') {
            name.ptr++;
            name.len--;
        }
        int v = ag_vars_find(&def->vars, name);
        if (v < 0)
            return fail(c, key, "constraint on `%.*s`, which the %s never binds", (int)key->len,
                        key->text, who);
        if (compile_rnode(c, l, cons->pairs[i].value, &rl->constraints[v]) != AG_OK)
            return AG_EINVAL;
    }
    return AG_OK;
}

static int compile_rewriters(ctx_t *c, const ag_ynode_t *n, const bool langs[AG_LANG_COUNT])
{
    static const char *const keys[] = {"id",        "rule", "constraints", "utils",
                                       "transform", "fix",  NULL};
    ag_rule_def_t *def = c->def;
    if (n->type != AG_Y_SEQ)
        return fail(c, n, "`rewriters` must be a sequence of rules");
    def->rewriters = ag_arena_alloc(c->arena, (n->n ? n->n : 1) * sizeof(*def->rewriters));
    memset(def->rewriters, 0, (n->n ? n->n : 1) * sizeof(*def->rewriters));
    /* ids first: a rewriter's own transforms may name any of them, itself included */
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *rw = n->items[i];
        if (need_map(c, rw, "a rewriter") != AG_OK || check_keys(c, rw, keys, "rewriter") != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *id = ag_ymap_get(rw, "id");
        if (id == NULL)
            return fail(c, rw, "a rewriter needs `id`");
        if (need_scalar(c, id, "id") != AG_OK)
            return AG_EINVAL;
        for (uint32_t k = 0; k < i; k++)
            if (ag_str_eqc(sv(id), def->rewriters[k].id))
                return fail(c, id, "duplicate rewriter id `%.*s`", (int)id->len, id->text);
        def->rewriters[i].id = ag_arena_strndup(c->arena, id->text, id->len);
        def->nrewriters = i + 1;
    }
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *rw = n->items[i];
        ag_rewriter_t *w = &def->rewriters[i];
        const ag_ynode_t *rule = ag_ymap_get(rw, "rule");
        const ag_ynode_t *fix = ag_ymap_get(rw, "fix");
        const ag_ynode_t *utils = ag_ymap_get(rw, "utils");
        const ag_ynode_t *cons = ag_ymap_get(rw, "constraints");
        if (rule == NULL || fix == NULL)
            return fail(c, rw, "rewriter `%s` needs `rule` and `fix`", w->id);
        if (utils)
            return fail(c, utils,
                        "`utils` inside a rewriter is not supported by astgate yet; put them in "
                        "the rule's `utils`, which its rewriters can use");
        if (cons && need_map(c, cons, "constraints") != AG_OK)
            return AG_EINVAL;
        for (int li = 0; li < AG_LANG_COUNT; li++) {
            if (!langs[li])
                continue;
            ag_rule_lang_t *rl = &w->lang[li];
            rl->enabled = true;
            if (compile_rnode(c, (ag_lang_t)li, rule, &rl->rule) != AG_OK)
                return AG_EINVAL;
            if (cons && compile_constraints(c, (ag_lang_t)li, def, cons, rl, "rewriter") != AG_OK)
                return AG_EINVAL;
        }
    }
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *rw = n->items[i];
        ag_rewriter_t *w = &def->rewriters[i];
        const ag_ynode_t *tr = ag_ymap_get(rw, "transform");
        if (tr && compile_transforms(c, tr, &w->transforms, &w->ntransforms) != AG_OK)
            return AG_EINVAL;
        if (compile_fix(c, ag_ymap_get(rw, "fix"), &w->fix, &w->fix_len, w->lang) != AG_OK)
            return AG_EINVAL;
    }
    return AG_OK;
}

/* ---- one rule document ---- */

static const char *const TOP_KEYS[] = {"id",        "language", "rule",      "constraints", "utils",
                                       "transform", "fix",      "rewriters", "message",     "note",
                                       "severity",  "labels",   "files",     "ignores",     "url",
                                       "metadata",  NULL};

static int parse_language(ctx_t *c, const ag_ynode_t *n, bool langs[AG_LANG_COUNT])
{
    static const struct {
        const char *name;
        bool ts, tsx;
    } names[] = {
        {"typescript", true, true}, {"ts", true, true},   {"javascript", true, true},
        {"js", true, true},         {"tsx", false, true}, {"jsx", false, true},
    };
    if (need_scalar(c, n, "language") != AG_OK)
        return AG_EINVAL;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (n->len == strlen(names[i].name) && strncasecmp(n->text, names[i].name, n->len) == 0) {
            langs[AG_LANG_TS] = names[i].ts;
            langs[AG_LANG_TSX] = names[i].tsx;
            return AG_OK;
        }
    }
    return fail(c, n,
                "language `%.*s` is not supported: astgate parses TypeScript, Tsx, "
                "JavaScript and Jsx",
                (int)n->len, n->text);
}

/* metadata.astgate.hint: {text, example}: what the proxy may tell the model before it writes
 * (hints: on), so that the rule has less to fix. */
static int parse_hint(ctx_t *c, const ag_ynode_t *h)
{
    ag_rule_def_t *def = c->def;
    if (h == NULL)
        return AG_OK;
    if (need_map(c, h, "metadata.astgate.hint") != AG_OK)
        return AG_EINVAL;
    static const char *const keys[] = {"text", "example", NULL};
    if (check_keys(c, h, keys, "metadata.astgate.hint") != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *text = ag_ymap_get(h, "text");
    const ag_ynode_t *example = ag_ymap_get(h, "example");
    if (text == NULL)
        return fail(c, h,
                    "metadata.astgate.hint needs a `text` (one or two sentences for the "
                    "model)");
    if (need_scalar(c, text, "hint `text`") != AG_OK)
        return AG_EINVAL;
    if (example && need_scalar(c, example, "hint `example`") != AG_OK)
        return AG_EINVAL;
    if (expand(c, text, &def->hint_text, &def->hint_text_len) != AG_OK)
        return AG_EINVAL;
    if (def->hint_text_len == 0 || def->hint_text_len > AG_RULES_MAX_HINT)
        return fail(c, text, "hint `text` must hold 1 to %d bytes, not %u", AG_RULES_MAX_HINT,
                    def->hint_text_len);
    if (example && expand(c, example, &def->hint_example, &def->hint_example_len) != AG_OK)
        return AG_EINVAL;
    if (example && def->hint_example_len > AG_RULES_MAX_HINT)
        return fail(c, example, "hint `example` must hold at most %d bytes, not %u",
                    AG_RULES_MAX_HINT, def->hint_example_len);
    return AG_OK;
}

static int parse_astgate(ctx_t *c, const ag_ynode_t *meta, const ag_ynode_t **ensure_node)
{
    const ag_ynode_t *ag = is_map(meta) ? ag_ymap_get(meta, "astgate") : NULL;
    ag_rule_def_t *def = c->def;
    *ensure_node = NULL;
    if (ag == NULL)
        return AG_OK;
    if (need_map(c, ag, "metadata.astgate") != AG_OK)
        return AG_EINVAL;
    static const char *const keys[] = {"action", "fences", "ensure", "mode",
                                       "params", "hint",   "redact", NULL};
    if (check_keys(c, ag, keys, "metadata.astgate") != AG_OK)
        return AG_EINVAL;
    if (parse_hint(c, ag_ymap_get(ag, "hint")) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *action = ag_ymap_get(ag, "action");
    if (action) {
        if (is_scalar(action) && ag_str_eqc(sv(action), "rewrite"))
            def->action = AG_ACTION_REWRITE;
        else if (is_scalar(action) && ag_str_eqc(sv(action), "flag"))
            def->action = AG_ACTION_FLAG;
        else if (is_scalar(action) && ag_str_eqc(sv(action), "block"))
            def->action = AG_ACTION_BLOCK;
        else
            return fail(c, action, "action must be rewrite, flag or block");
    }
    const ag_ynode_t *redact = ag_ymap_get(ag, "redact");
    if (redact) {
        if (is_scalar(redact) && ag_str_eqc(sv(redact), "true"))
            def->redact = true;
        else if (!(is_scalar(redact) && ag_str_eqc(sv(redact), "false")))
            return fail(c, redact, "redact must be true or false");
    }
    const ag_ynode_t *mode = ag_ymap_get(ag, "mode");
    if (mode) {
        if (is_scalar(mode) && ag_str_eqc(sv(mode), "shadow"))
            def->shadow = true;
        else if (!(is_scalar(mode) && ag_str_eqc(sv(mode), "enforce")))
            return fail(c, mode, "mode must be enforce or shadow");
    }
    const ag_ynode_t *fences = ag_ymap_get(ag, "fences");
    if (fences) {
        if (fences->type != AG_Y_SEQ)
            return fail(c, fences, "`fences` must be a sequence of fence languages");
        if (fences->n > 32)
            return fail(c, fences, "`fences` lists at most 32 languages");
        def->fences = ag_arena_alloc(c->arena, (fences->n ? fences->n : 1) * sizeof(char *));
        for (uint32_t i = 0; i < fences->n; i++) {
            const ag_ynode_t *f = fences->items[i];
            if (!is_scalar(f))
                return fail(c, f, "a fence language must be a string");
            if (f->len > 31 || strpbrk(f->text, " \t\r\n") != NULL)
                return fail(c, f,
                            "`%.*s` cannot be a fence language (one word of at most 31 "
                            "bytes)",
                            (int)f->len, f->text);
            char *name = ag_arena_strndup(c->arena, f->text, f->len);
            for (char *p = name; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            def->fences[def->nfences++] = name;
        }
    }
    *ensure_node = ag_ymap_get(ag, "ensure");
    return AG_OK;
}

static int compile_doc(ctx_t *c, const ag_ynode_t *doc, ag_rule_def_t *def)
{
    if (need_map(c, doc, "a rule document") != AG_OK)
        return AG_EINVAL;
    if (check_keys(c, doc, TOP_KEYS, NULL) != AG_OK)
        return AG_EINVAL;
    c->def = def;
    c->used = 0;
    ag_vars_init(&def->vars);
    def->file = ag_arena_strndup(c->arena, c->file, strlen(c->file));
    def->line = doc->line;
    const ag_ynode_t *id = ag_ymap_get(doc, "id");
    if (id == NULL)
        return fail(c, doc, "missing field `id`");
    if (need_scalar(c, id, "id") != AG_OK)
        return AG_EINVAL;
    def->id = ag_arena_strndup(c->arena, id->text, id->len);
    for (uint32_t i = 0; i < c->rules->n; i++)
        if (strcmp(c->rules->rules[i].id, def->id) == 0)
            return fail(c, id, "duplicate rule id `%s` (first in %s:%u)", def->id,
                        c->rules->rules[i].file, c->rules->rules[i].line);
    const ag_ynode_t *lang = ag_ymap_get(doc, "language");
    if (lang == NULL)
        return fail(c, doc, "rule `%s`: missing field `language`", def->id);
    bool langs[AG_LANG_COUNT] = {false};
    if (parse_language(c, lang, langs) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *rule = ag_ymap_get(doc, "rule");
    if (rule == NULL)
        return fail(c, doc, "rule `%s`: missing field `rule`", def->id);
    const ag_ynode_t *msg = ag_ymap_get(doc, "message");
    if (msg && !is_scalar(msg))
        return fail(c, msg, "`message` must be a string");
    def->message = "";
    uint32_t msg_len = 0;
    if (msg && expand(c, msg, &def->message, &msg_len) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *sev = ag_ymap_get(doc, "severity");
    def->severity = "";
    if (sev) {
        static const char *const levels[] = {"hint", "info", "warning", "error", "off", NULL};
        bool ok = false;
        for (const char *const *l = levels; *l; l++)
            if (is_scalar(sev) && ag_str_eqc(sv(sev), *l))
                ok = true;
        if (!ok)
            return fail(c, sev, "severity must be one of hint, info, warning, error, off");
        def->severity = ag_arena_strndup(c->arena, sev->text, sev->len);
    }
    const ag_ynode_t *ensure = NULL;
    if (parse_astgate(c, ag_ymap_get(doc, "metadata"), &ensure) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *fix = ag_ymap_get(doc, "fix");
    if (fix && ensure)
        return fail(c, ensure, "rule `%s`: use either `fix` or `metadata.astgate.ensure`, not both",
                    def->id);
    const ag_ynode_t *action = ag_ymap_get(ag_ymap_get(doc, "metadata"), "astgate");
    action = action ? ag_ymap_get(action, "action") : NULL;
    if (action == NULL)
        def->action = (fix || ensure) ? AG_ACTION_REWRITE : AG_ACTION_FLAG;
    else if (def->action == AG_ACTION_REWRITE && !fix && !ensure)
        return fail(c, action, "rule `%s`: action rewrite needs a `fix` or an `ensure`", def->id);
    const ag_ynode_t *utils = ag_ymap_get(doc, "utils");
    if (utils && need_map(c, utils, "utils") != AG_OK)
        return AG_EINVAL;
    c->utils_node = utils;
    const ag_ynode_t *constraints = ag_ymap_get(doc, "constraints");
    if (constraints && need_map(c, constraints, "constraints") != AG_OK)
        return AG_EINVAL;

    bool first = true;
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        if (!langs[li])
            continue;
        ag_lang_t l = (ag_lang_t)li;
        ag_rule_lang_t *rl = &def->lang[li];
        rl->enabled = true;
        uint32_t nlocal = utils ? utils->n : 0;
        if (nlocal + c->ngutils) {
            rl->nutils = nlocal + c->ngutils;
            if (rl->nutils > 256)
                return fail(c, utils ? utils : doc, "too many utils (at most 256)");
            rl->utils = ag_arena_alloc(c->arena, rl->nutils * sizeof(*rl->utils));
            for (uint32_t i = 0; i < nlocal; i++)
                rl->utils[i].name =
                    ag_arena_strndup(c->arena, utils->pairs[i].key->text, utils->pairs[i].key->len);
            for (uint32_t g = 0; g < c->ngutils; g++)
                rl->utils[nlocal + g].name =
                    ag_arena_strndup(c->arena, c->gutils[g].name.ptr, c->gutils[g].name.len);
            for (uint32_t i = 0; i < nlocal; i++)
                if (compile_rnode(c, l, utils->pairs[i].value, &rl->utils[i].rule) != AG_OK)
                    return AG_EINVAL;
            /* global utils compile with their own file for messages */
            const char *file = c->file;
            ag_str_t src = c->src;
            for (uint32_t g = 0; g < c->ngutils; g++) {
                c->file = c->gutils[g].file;
                c->src = c->gutils[g].src;
                int grc = compile_rnode(c, l, c->gutils[g].rule, &rl->utils[nlocal + g].rule);
                c->file = file;
                c->src = src;
                if (grc != AG_OK)
                    return AG_EINVAL;
            }
            for (uint32_t i = 0; i < rl->nutils; i++) {
                uint8_t state[256] = {0};
                state[i] = 1;
                if (util_cycle(rl->utils[i].rule, rl->utils, rl->nutils, state, 0)) {
                    if (i < nlocal)
                        return fail(c, utils->pairs[i].key,
                                    "util `%s` matches itself on the same node (a cycle)",
                                    rl->utils[i].name);
                    c->file = c->gutils[i - nlocal].file;
                    fail(c, c->gutils[i - nlocal].rule,
                         "util `%s` matches itself on the same node (a cycle)", rl->utils[i].name);
                    c->file = file;
                    return AG_EINVAL;
                }
            }
        }
        if (compile_rnode(c, l, rule, &rl->rule) != AG_OK)
            return AG_EINVAL;
        c->memo = ag_arena_alloc(c->arena, (rl->nutils ? rl->nutils : 1) * sizeof(*c->memo));
        kindset_t k = kinds_of(c, l, rl->rule, rl->utils, 0);
        if (k.any)
            return fail(c, rule,
                        "rule `%s`: the rule must specify a set of AST kinds to match; "
                        "try adding a `kind` rule",
                        def->id);
        c->kinds[li][c->rules->n] = k;
        if (constraints && compile_constraints(c, l, def, constraints, rl, "rule") != AG_OK)
            return AG_EINVAL;
        if (ensure) {
            if (first)
                def->ensure = ag_arena_alloc(c->arena, sizeof(*def->ensure));
            if (parse_case(c, l, first, ensure, &def->ensure->root, true) != AG_OK)
                return AG_EINVAL;
            if (first) {
                const ag_ynode_t *target = ag_ymap_get(ensure, "target");
                def->ensure->target = -1;
                if (target) {
                    def->ensure->target = var_of(c, target, "ensure target", false);
                    if (def->ensure->target < 0)
                        return AG_EINVAL;
                }
            }
        }
        first = false;
    }
    const ag_ynode_t *rewriters = ag_ymap_get(doc, "rewriters");
    if (rewriters && compile_rewriters(c, rewriters, langs) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *transform = ag_ymap_get(doc, "transform");
    if (transform && compile_transforms(c, transform, &def->transforms, &def->ntransforms) != AG_OK)
        return AG_EINVAL;
    if (fix && compile_fix(c, fix, &def->fix, &def->fix_len, def->lang) != AG_OK)
        return AG_EINVAL;
    params_store(c, doc, def);
    return AG_OK;
}

/* ---- the rule set ---- */

/* True when every match of r binds variable v to one node: only then may the literals of a
 * constraint on v join the rule's prefilter (a constraint does not judge a variable the
 * matching branch left unbound, as in ast-grep). Conservative: false when unsure. */
static bool pn_binds(const ag_pnode_t *p, int v)
{
    if (p->kind == AG_PN_META)
        return p->mv == AG_MV_CAPTURE && p->var == v;
    for (uint32_t i = 0; p->kind == AG_PN_INTERNAL && i < p->nkids; i++)
        if (pn_binds(&p->kids[i], v))
            return true;
    return false;
}

static bool always_binds(const ag_rnode_t *r, const ag_util_t *utils, int v, int depth)
{
    if (r == NULL || depth > 32)
        return false;
    if (r->pattern && pn_binds(&r->pattern->root, v))
        return true;
    for (uint32_t i = 0; i < r->nall; i++)
        if (always_binds(r->all[i], utils, v, depth + 1))
            return true;
    if (r->nany) {
        uint32_t i = 0;
        while (i < r->nany && always_binds(r->any[i], utils, v, depth + 1))
            i++;
        if (i == r->nany)
            return true;
    }
    if (r->matches >= 0 && always_binds(utils[r->matches].rule, utils, v, depth + 1))
        return true;
    const ag_relation_t *rel[] = {r->inside, r->has, r->precedes, r->follows};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++)
        if (rel[i] && always_binds(rel[i]->rule, utils, v, depth + 1))
            return true;
    return false;
}

static void store_literals(ctx_t *c, ag_rule_def_t *def)
{
    litset_t l = lit_none();
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        ag_rule_lang_t *rl = &def->lang[li];
        if (!rl->enabled)
            continue;
        l = lits_of(c->memo, rl->rule, rl->utils, 0);
        for (int v = 0; v < AG_MAX_VARS; v++)
            if (rl->constraints[v] && always_binds(rl->rule, rl->utils, v, 0))
                l = lit_and(l, lits_of(c->memo, rl->constraints[v], rl->utils, 0));
        break;
    }
    if (l.none || l.n == 0)
        return;
    def->literals = ag_arena_alloc(c->arena, l.n * sizeof(char *));
    def->literal_lens = ag_arena_alloc(c->arena, l.n * sizeof(uint32_t));
    for (uint32_t i = 0; i < l.n; i++) {
        def->literals[i] = ag_arena_strndup(c->arena, l.lits[i].ptr, l.lits[i].len);
        def->literal_lens[i] = (uint32_t)l.lits[i].len;
    }
    def->nliterals = l.n;
}

static int load_text(ctx_t *c, ag_str_t text, const ag_rules_src_t *src, uint32_t *cap)
{
    c->src = text;
    ag_ydocs_t docs;
    memset(&docs, 0, sizeof(docs));
    int rc = ag_yaml_load(text, c->file, &docs, c->d);
    if (rc != AG_OK)
        return rc;
    if (docs.n == 0) {
        rc = fail(c, NULL, "no rules in this file");
        goto out;
    }
    rc = params_resolve(c, &docs, src);
    if (rc != AG_OK)
        goto out;
    for (uint32_t i = 0; i < docs.n; i++) {
        struct ag_rules *rs = c->rules;
        if (rs->n == MAX_RULES) {
            rc = fail(c, docs.roots[i], "too many rules (at most %d)", MAX_RULES);
            goto out;
        }
        if (rs->n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            rs->rules = ag_xrealloc(rs->rules, *cap * sizeof(*rs->rules));
            for (int li = 0; li < AG_LANG_COUNT; li++)
                c->kinds[li] = ag_xrealloc(c->kinds[li], *cap * sizeof(kindset_t));
        }
        ag_rule_def_t *def = &rs->rules[rs->n];
        memset(def, 0, sizeof(*def));
        for (int li = 0; li < AG_LANG_COUNT; li++)
            c->kinds[li][rs->n] = ks_any();
        c->utils_node = NULL;
        rc = compile_doc(c, docs.roots[i], def);
        if (rc != AG_OK) {
            ag_vars_dispose(&def->vars);
            goto out;
        }
        store_literals(c, def);
        rs->n++;
    }
out:
    ag_ydocs_dispose(&docs);
    return rc;
}

/* A utilDirs file: every document is a util of `id`, `language` and `rule`, which ast-grep
 * requires; other keys ast-grep ignores, and astgate too, with a warning. */
static int load_utils(ctx_t *c, ag_str_t text)
{
    c->gdocs = ag_xrealloc(c->gdocs, (c->ngdocs + 1) * sizeof(*c->gdocs));
    ag_ydocs_t *docs = &c->gdocs[c->ngdocs];
    memset(docs, 0, sizeof(*docs));
    int rc = ag_yaml_load(text, c->file, docs, c->d);
    if (rc != AG_OK)
        return rc;
    c->ngdocs++;
    for (uint32_t i = 0; i < docs->n; i++) {
        const ag_ynode_t *doc = docs->roots[i];
        if (need_map(c, doc, "a util document") != AG_OK)
            return AG_EINVAL;
        for (uint32_t k = 0; k < doc->n; k++) {
            ag_str_t key = sv(doc->pairs[k].key);
            if (ag_str_eqc(key, "utils"))
                return fail(c, doc->pairs[k].key,
                            "`utils` inside a global util is not supported by astgate yet");
            if (!ag_str_eqc(key, "id") && !ag_str_eqc(key, "language") && !ag_str_eqc(key, "rule"))
                warn(c, doc->pairs[k].key,
                     "unknown field `%.*s` in a global util is ignored (as ast-grep does)",
                     (int)key.len, key.ptr);
        }
        const ag_ynode_t *id = ag_ymap_get(doc, "id");
        const ag_ynode_t *lang = ag_ymap_get(doc, "language");
        const ag_ynode_t *rule = ag_ymap_get(doc, "rule");
        if (id == NULL || lang == NULL || rule == NULL)
            return fail(c, doc, "a global util needs `id`, `language` and `rule`");
        if (need_scalar(c, id, "id") != AG_OK)
            return AG_EINVAL;
        bool langs[AG_LANG_COUNT] = {false};
        if (parse_language(c, lang, langs) != AG_OK)
            return AG_EINVAL;
        for (uint32_t g = 0; g < c->ngutils; g++)
            if (ag_str_eq(c->gutils[g].name, sv(id)))
                return fail(c, id, "duplicate global util `%.*s` (first in %s)", (int)id->len,
                            id->text, c->gutils[g].file);
        c->gutils = ag_xrealloc(c->gutils, (c->ngutils + 1) * sizeof(*c->gutils));
        c->gutils[c->ngutils++] =
            (gutil_t){.name = sv(id),
                      .rule = rule,
                      .file = ag_arena_strndup(c->arena, c->file, strlen(c->file)),
                      .src = text};
    }
    return AG_OK;
}

static void build_dispatch(ctx_t *c)
{
    struct ag_rules *rs = c->rules;
    rs->need_literals = rs->n > 0;
    for (uint32_t r = 0; r < rs->n; r++)
        if (rs->rules[r].nliterals == 0)
            rs->need_literals = false;
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        uint32_t nsyms = rs->nsyms[li];
        uint32_t *off = ag_arena_alloc(c->arena, (nsyms + 1) * sizeof(uint32_t));
        uint32_t total = 0;
        for (uint32_t s = 0; s < nsyms; s++) {
            off[s] = total;
            for (uint32_t r = 0; r < rs->n; r++) {
                kindset_t k = c->kinds[li][r];
                if (rs->rules[r].lang[li].enabled && !k.any && (k.bits[s / 8] >> (s % 8)) & 1)
                    total++;
            }
        }
        off[nsyms] = total;
        uint32_t *idx = ag_arena_alloc(c->arena, (total ? total : 1) * sizeof(uint32_t));
        uint32_t at = 0;
        for (uint32_t s = 0; s < nsyms; s++)
            for (uint32_t r = 0; r < rs->n; r++) {
                kindset_t k = c->kinds[li][r];
                if (rs->rules[r].lang[li].enabled && !k.any && (k.bits[s / 8] >> (s % 8)) & 1)
                    idx[at++] = r;
            }
        rs->by_kind_off[li] = off;
        rs->by_kind_idx[li] = idx;
    }
}

static int load(const ag_str_t *texts, const ag_rules_src_t *srcs, uint32_t n,
                const ag_rules_set_t *global, uint32_t nglobal, ag_rules_t **out, ag_diag_t *d)
{
    ag_rules_priv_t *priv = ag_xcalloc(1, sizeof(*priv));
    struct ag_rules *rs = &priv->pub;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    c.d = d;
    c.rules = rs;
    c.arena = rs->arena = ag_arena_new(16384);
    c.global = global;
    c.nglobal = nglobal;
    c.global_hit = ag_xcalloc(nglobal ? nglobal : 1, sizeof(bool));
    uint32_t cap = 0;
    int rc = AG_OK;
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        c.parser[li] = ag_lang_parser_new((ag_lang_t)li, 0);
        rs->nsyms[li] = ts_language_symbol_count(ag_lang_grammar((ag_lang_t)li));
    }
    for (uint32_t i = 0; i < n && rc == AG_OK; i++) {
        c.file = srcs[i].path;
        if (srcs[i].utils)
            rc = load_utils(&c, texts[i]);
    }
    for (uint32_t i = 0; i < n && rc == AG_OK; i++) {
        c.file = srcs[i].path;
        if (!srcs[i].utils)
            rc = load_text(&c, texts[i], &srcs[i], &cap);
    }
    for (uint32_t i = 0; i < c.ngdocs; i++)
        ag_ydocs_dispose(&c.gdocs[i]);
    free(c.gdocs);
    free(c.gutils);
    for (uint32_t j = 0; j < nglobal && rc == AG_OK; j++) {
        if (c.global_hit[j])
            continue;
        const ag_rules_set_t *g = &global[j];
        if (g->file)
            ag_diag_set(d, g->file, g->line, g->col, "no rule file declares a parameter `%s`",
                        g->name);
        else
            ag_diag_set(d, NULL, 0, 0, "--set %s: no rule file declares a parameter `%s`", g->name,
                        g->name);
        rc = AG_EINVAL;
    }
    if (rc == AG_OK)
        build_dispatch(&c);
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        ts_parser_delete(c.parser[li]);
        free(c.kinds[li]);
    }
    free(c.global_hit);
    if (rc != AG_OK) {
        ag_rules_free(rs);
        return rc;
    }
    *out = rs;
    return AG_OK;
}

int ag_rules_load_mem(ag_str_t text, const char *name, ag_rules_t **out, ag_diag_t *d)
{
    ag_rules_src_t src = {.path = name, .text = text};
    return ag_rules_load_srcs(&src, 1, NULL, 0, out, d);
}

int ag_rules_load_files(const char *const *paths, uint32_t npaths, ag_rules_t **out, ag_diag_t *d)
{
    ag_rules_src_t *srcs = ag_xcalloc(npaths ? npaths : 1, sizeof(*srcs));
    for (uint32_t i = 0; i < npaths; i++)
        srcs[i].path = paths[i];
    int rc = ag_rules_load_srcs(srcs, npaths, NULL, 0, out, d);
    free(srcs);
    return rc;
}

int ag_rules_load_srcs(const ag_rules_src_t *srcs, uint32_t npaths, const ag_rules_set_t *global,
                       uint32_t nglobal, ag_rules_t **out, ag_diag_t *d)
{
    ag_buf_t *bufs = ag_xcalloc(npaths ? npaths : 1, sizeof(*bufs));
    ag_str_t *texts = ag_xcalloc(npaths ? npaths : 1, sizeof(*texts));
    int rc = AG_OK;
    for (uint32_t i = 0; i < npaths; i++) {
        ag_buf_init(&bufs[i], 16u << 20);
        if (srcs[i].text.ptr) {
            texts[i] = srcs[i].text;
            continue;
        }
        rc = ag_read_file(srcs[i].path, &bufs[i]);
        if (rc != AG_OK) {
            if (rc == AG_ETOOBIG)
                ag_diag_set(d, srcs[i].path, 0, 0, "rule file is larger than 16 MiB");
            else
                ag_diag_set(d, srcs[i].path, 0, 0, "cannot read rule file: %s", strerror(errno));
            goto out;
        }
        texts[i] = ag_buf_str(&bufs[i]);
    }
    if (npaths == 0) {
        ag_diag_set(d, NULL, 0, 0, "no rule files given");
        rc = AG_EINVAL;
        goto out;
    }
    rc = load(texts, srcs, npaths, global, nglobal, out, d);
out:
    for (uint32_t i = 0; i < npaths; i++)
        ag_buf_dispose(&bufs[i]);
    free(bufs);
    free(texts);
    return rc;
}

int ag_rules_parse_set(const char *arg, char *name, size_t name_cap, ag_rules_set_t *out,
                       ag_diag_t *d)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : 0;
    if (eq == NULL || !ident(ag_str(arg, n)) || n >= name_cap) {
        ag_diag_set(d, NULL, 0, 0, "--set takes NAME=VALUE with NAME an identifier, not `%s`", arg);
        return AG_EINVAL;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    memset(out, 0, sizeof(*out));
    out->name = name;
    out->value = eq + 1;
    return AG_OK;
}

bool ag_rules_rule_hint(const ag_rules_t *r, uint32_t i, ag_str_t *text, ag_str_t *example)
{
    if (i >= r->n || r->rules[i].hint_text == NULL)
        return false;
    const ag_rule_def_t *def = &r->rules[i];
    *text = ag_str(def->hint_text, def->hint_text_len);
    *example = ag_str(def->hint_example, def->hint_example ? def->hint_example_len : 0);
    return true;
}

/* A hint already given by an earlier rule (a pack of rules may share one) is given once. */
static bool hint_seen(const ag_rules_t *r, uint32_t i)
{
    ag_str_t t, e, t2, e2;
    if (!ag_rules_rule_hint(r, i, &t, &e))
        return true;
    for (uint32_t j = 0; j < i; j++)
        if (ag_rules_rule_hint(r, j, &t2, &e2) && ag_str_eq(t, t2) && ag_str_eq(e, e2))
            return true;
    return false;
}

int ag_rules_hint(const ag_rules_t *r, ag_buf_t *out, uint32_t *nrules)
{
    size_t old = out->len;
    uint32_t n = 0;
    int rc = AG_OK;
    for (uint32_t i = 0; i < r->n && rc == AG_OK; i++) {
        if (hint_seen(r, i))
            continue;
        const ag_rule_def_t *def = &r->rules[i];
        if (n++ == 0)
            rc = ag_buf_appendf(out, "astgate rules for generated code:");
        if (rc == AG_OK)
            rc = ag_buf_appendf(out, "\n- %.*s", (int)def->hint_text_len, def->hint_text);
        size_t elen = def->hint_example ? def->hint_example_len : 0;
        while (elen && (def->hint_example[elen - 1] == '\n' || def->hint_example[elen - 1] == ' '))
            elen--;
        if (rc == AG_OK && elen)
            rc = ag_buf_appendf(out, "\n```%s\n%.*s\n```",
                                def->lang[AG_LANG_TS].enabled ? "ts" : "tsx", (int)elen,
                                def->hint_example);
    }
    if (rc != AG_OK) {
        out->len = old;
        if (out->ptr)
            out->ptr[old] = '\0';
        return rc;
    }
    if (nrules)
        *nrules = n;
    return AG_OK;
}

uint32_t ag_rules_rule_nparams(const ag_rules_t *r, uint32_t i)
{
    return i < r->n ? r->rules[i].nparams : 0;
}

void ag_rules_rule_param(const ag_rules_t *r, uint32_t i, uint32_t j, const char **name,
                         const char **value)
{
    AG_ASSERT(i < r->n && j < r->rules[i].nparams);
    *name = r->rules[i].param_names[j];
    *value = r->rules[i].param_values[j];
}

void ag_rules_free(ag_rules_t *r)
{
    if (r == NULL)
        return;
    ag_rules_priv_t *priv = (ag_rules_priv_t *)r;
    for (uint32_t i = 0; i < priv->owned.npatterns; i++)
        ag_pattern_free(priv->owned.patterns[i]);
    for (uint32_t i = 0; i < priv->owned.nregexes; i++)
        pcre2_code_free(priv->owned.regexes[i]);
    free(priv->owned.patterns);
    free(priv->owned.regexes);
    free(r->warnings);
    for (uint32_t i = 0; i < r->n; i++)
        ag_vars_dispose(&r->rules[i].vars);
    free(r->rules);
    ag_arena_free(r->arena);
    free(priv);
}

uint32_t ag_rules_count(const ag_rules_t *r)
{
    return r->n;
}

const char *ag_rules_rule_id(const ag_rules_t *r, uint32_t i)
{
    return i < r->n ? r->rules[i].id : "";
}

void ag_rules_print_warnings(const ag_rules_t *r, FILE *f)
{
    for (uint32_t i = 0; r && i < r->nwarnings; i++)
        ag_diag_print(&r->warnings[i], f);
}

/* Unit tests for the pattern compiler (pattern.c) and the matcher (match.c) on real TypeScript
 * trees: each case pins one piece of ast-grep's semantics (shared/reference/rules.md §1.3, §2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "flat.h"
#include "lang.h"
#include "match.h"
#include "pattern.h"

typedef struct fx {
    TSParser *parser;
    TSTree *tree;
    char *code;
    ag_flat_t flat;
    ag_vars_t vars;
    ag_matcher_t m;
    ag_util_t utils[4];
    uint32_t nutils;
    ag_pattern_t *pats[64];
    unsigned npats;
    pcre2_code *res[16];
    unsigned nres;
    void *blocks[512];
    unsigned nblocks;
    /* the first match of the last scan */
    uint32_t hit;
    ag_env_t env;
    char text[8][512];
    unsigned ntext;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->parser = ag_lang_parser_new(AG_LANG_TS, 0);
    ag_flat_init(&fx->flat);
    ag_vars_init(&fx->vars);
    ag_matcher_init(&fx->m, 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    for (unsigned i = 0; i < fx->npats; i++)
        ag_pattern_free(fx->pats[i]);
    for (unsigned i = 0; i < fx->nres; i++)
        pcre2_code_free(fx->res[i]);
    for (unsigned i = 0; i < fx->nblocks; i++)
        free(fx->blocks[i]);
    if (fx->tree)
        ts_tree_delete(fx->tree);
    free(fx->code);
    ag_flat_dispose(&fx->flat);
    ag_vars_dispose(&fx->vars);
    ag_matcher_dispose(&fx->m);
    ts_parser_delete(fx->parser);
    free(fx);
    return 0;
}

/* ---- fixture helpers ---- */

static void *tnew(fx_t *fx, size_t n)
{
    assert_true(fx->nblocks < sizeof(fx->blocks) / sizeof(fx->blocks[0]));
    void *p = calloc(1, n);
    assert_non_null(p);
    fx->blocks[fx->nblocks++] = p;
    return p;
}

static void code(fx_t *fx, const char *src)
{
    if (fx->tree)
        ts_tree_delete(fx->tree);
    free(fx->code);
    fx->code = strdup(src);
    fx->tree = ts_parser_parse_string(fx->parser, NULL, fx->code, (uint32_t)strlen(src));
    assert_non_null(fx->tree);
    ag_flat_build(&fx->flat, fx->tree, fx->code, (uint32_t)strlen(src));
    ag_matcher_bind(&fx->m, &fx->flat, fx->utils, fx->nutils);
}

static ag_pattern_t *pat_sel(fx_t *fx, const char *src, const char *selector, ag_strictness_t s)
{
    char err[256];
    ag_pattern_t *p = NULL;
    int rc =
        ag_pattern_compile(AG_LANG_TS, fx->parser, ag_cstr(src), ag_cstr(selector ? selector : ""),
                           s, &fx->vars, &p, err, sizeof(err));
    if (rc != AG_OK)
        fail_msg("pattern `%s` does not compile: %s", src, err);
    assert_true(fx->npats < sizeof(fx->pats) / sizeof(fx->pats[0]));
    fx->pats[fx->npats++] = p;
    return p;
}

static ag_pattern_t *pat(fx_t *fx, const char *src, ag_strictness_t s)
{
    return pat_sel(fx, src, NULL, s);
}

static int compile_err(fx_t *fx, const char *src, const char *selector, char *err, size_t n)
{
    ag_pattern_t *p = NULL;
    int rc =
        ag_pattern_compile(AG_LANG_TS, fx->parser, ag_cstr(src), ag_cstr(selector ? selector : ""),
                           AG_STRICT_SMART, &fx->vars, &p, err, n);
    assert_null(p);
    return rc;
}

static TSSymbol kind_of(const char *name)
{
    TSSymbol k = ag_lang_kind(AG_LANG_TS, ag_cstr(name));
    assert_int_not_equal(k, 0);
    return k;
}

static TSFieldId field_of(const char *name)
{
    TSFieldId f = ag_lang_field(AG_LANG_TS, ag_cstr(name));
    assert_int_not_equal(f, 0);
    return f;
}

static ag_rnode_t *rnew(fx_t *fx)
{
    ag_rnode_t *r = tnew(fx, sizeof(*r));
    r->matches = -1;
    return r;
}

static ag_rnode_t *rpat(fx_t *fx, const char *src, ag_strictness_t s)
{
    ag_rnode_t *r = rnew(fx);
    r->pattern = pat(fx, src, s);
    return r;
}

static ag_rnode_t *rkind(fx_t *fx, const char *kind)
{
    ag_rnode_t *r = rnew(fx);
    r->kind = kind_of(kind);
    return r;
}

static pcre2_code *re(fx_t *fx, const char *src)
{
    int code_err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                  &code_err, &off, NULL);
    assert_non_null(c);
    fx->res[fx->nres++] = c;
    return c;
}

static ag_rnode_t *rregex(fx_t *fx, const char *src)
{
    ag_rnode_t *r = rnew(fx);
    r->regex = re(fx, src);
    return r;
}

static ag_relation_t *rel(fx_t *fx, ag_rnode_t *rule, ag_stop_t stop, const char *field)
{
    ag_relation_t *x = tnew(fx, sizeof(*x));
    x->rule = rule;
    x->stop = stop;
    x->field = field ? field_of(field) : 0;
    return x;
}

static ag_rnode_t **rlist(fx_t *fx, unsigned n, ...)
{
    ag_rnode_t **l = tnew(fx, n * sizeof(*l));
    va_list ap;
    va_start(ap, n);
    for (unsigned i = 0; i < n; i++)
        l[i] = va_arg(ap, ag_rnode_t *);
    va_end(ap);
    return l;
}

/* Every node in pre-order against r (fresh env each); remembers the first match. */
static unsigned scan(fx_t *fx, const ag_rnode_t *r)
{
    unsigned n = 0;
    fx->hit = AG_NONE;
    for (uint32_t i = 0; i < fx->flat.count; i++) {
        ag_env_t env;
        memset(&env, 0, sizeof(env));
        if (ag_match_rnode(&fx->m, r, i, &env)) {
            if (n++ == 0) {
                fx->hit = i;
                fx->env = env;
            }
        }
    }
    return n;
}

static unsigned scan_pat(fx_t *fx, const ag_pattern_t *p)
{
    unsigned n = 0;
    fx->hit = AG_NONE;
    for (uint32_t i = 0; i < fx->flat.count; i++) {
        ag_env_t env;
        memset(&env, 0, sizeof(env));
        if (ag_match_pattern(&fx->m, p, i, &env)) {
            if (n++ == 0) {
                fx->hit = i;
                fx->env = env;
            }
        }
    }
    return n;
}

/* Matches of pattern src (strictness s) in code c. */
static unsigned count(fx_t *fx, const char *src, ag_strictness_t s, const char *c)
{
    ag_pattern_t *p = pat(fx, src, s);
    code(fx, c);
    return scan_pat(fx, p);
}

static const char *text_in(fx_t *fx, const ag_env_t *env, const char *var)
{
    int slot = ag_vars_find(&fx->vars, ag_cstr(var));
    ag_str_t t = ag_env_text(&fx->flat, env, slot, (ag_str_t){"", 0});
    char *buf = fx->text[fx->ntext++ % 8];
    snprintf(buf, sizeof(fx->text[0]), "%.*s", (int)t.len, t.ptr);
    return buf;
}

/* Text of var in the env of the first match. */
static const char *var(fx_t *fx, const char *name)
{
    return text_in(fx, &fx->env, name);
}

static uint8_t state_of(fx_t *fx, const char *name)
{
    int slot = ag_vars_find(&fx->vars, ag_cstr(name));
    assert_true(slot >= 0);
    return fx->env.s[slot].state;
}

static const char *hit_text(fx_t *fx)
{
    assert_int_not_equal(fx->hit, AG_NONE);
    ag_str_t t = ag_flat_text(&fx->flat, fx->hit);
    char *buf = fx->text[fx->ntext++ % 8];
    snprintf(buf, sizeof(fx->text[0]), "%.*s", (int)t.len, t.ptr);
    return buf;
}

/* ---- vars and compilation ---- */

static void test_vars_intern(void **state)
{
    (void)state;
    ag_vars_t v;
    ag_vars_init(&v);
    assert_int_equal(ag_vars_intern(&v, AG_STR_LIT("A")), 0);
    assert_int_equal(ag_vars_intern(&v, AG_STR_LIT("B")), 1);
    assert_int_equal(ag_vars_intern(&v, AG_STR_LIT("A")), 0);
    assert_int_equal(ag_vars_find(&v, AG_STR_LIT("B")), 1);
    assert_int_equal(ag_vars_find(&v, AG_STR_LIT("C")), -1);
    char name[16];
    for (int i = 2; i < AG_MAX_VARS; i++) {
        snprintf(name, sizeof(name), "V%d", i);
        assert_int_equal(ag_vars_intern(&v, ag_cstr(name)), i);
    }
    assert_int_equal(ag_vars_intern(&v, AG_STR_LIT("ONE_TOO_MANY")), AG_ETOOBIG);
    assert_int_equal(ag_vars_intern(&v, AG_STR_LIT("A")), 0);
    ag_vars_dispose(&v);
}

static void test_compile_errors(void **state)
{
    fx_t *fx = *state;
    char err[256];
    assert_int_equal(compile_err(fx, "", NULL, err, sizeof(err)), AG_EINVAL);
    assert_string_equal(err, "pattern is empty");
    assert_int_equal(compile_err(fx, "a; b", NULL, err, sizeof(err)), AG_EINVAL);
    assert_string_equal(
        err, "pattern has multiple AST nodes; use an object pattern with context and selector");
    assert_int_equal(compile_err(fx, "({ a: 1 })", "no_such_kind", err, sizeof(err)), AG_EINVAL);
    assert_string_equal(err, "selector `no_such_kind` is not a kind of this language");
    assert_int_equal(compile_err(fx, "foo(1)", "pair", err, sizeof(err)), AG_EINVAL);
    assert_string_equal(err, "selector `pair` matches nothing in the context");
    assert_int_equal(compile_err(fx, "$$$A", NULL, err, sizeof(err)), AG_EINVAL);
    assert_string_equal(err, "a pattern cannot start with $$$");
    assert_int_equal(compile_err(fx, "$$$", NULL, err, sizeof(err)), AG_EINVAL);
    /* NULL err is allowed */
    assert_int_equal(compile_err(fx, "", NULL, NULL, 0), AG_EINVAL);
}

static void test_compile_too_many_vars(void **state)
{
    fx_t *fx = *state;
    char src[1024] = "f(";
    for (int i = 0; i <= AG_MAX_VARS; i++) {
        char one[16];
        snprintf(one, sizeof(one), "%s$V%d", i ? ", " : "", i);
        strcat(src, one);
    }
    strcat(src, ")");
    char err[256];
    assert_int_equal(compile_err(fx, src, NULL, err, sizeof(err)), AG_EINVAL);
    assert_non_null(strstr(err, "too many metavariables"));
}

static const ag_pnode_t *only_arg(const ag_pattern_t *p)
{
    /* call_expression -> arguments -> ( X ) */
    assert_int_equal(p->root.kind, AG_PN_INTERNAL);
    const ag_pnode_t *args = &p->root.kids[1];
    assert_int_equal(args->kind, AG_PN_INTERNAL);
    assert_int_equal(args->nkids, 3);
    return &args->kids[1];
}

static void test_metavar_syntax(void **state)
{
    fx_t *fx = *state;
    const ag_pnode_t *n;

    n = only_arg(pat(fx, "f($A)", AG_STRICT_SMART));
    assert_int_equal(n->kind, AG_PN_META);
    assert_int_equal(n->mv, AG_MV_CAPTURE);
    assert_true(n->mv_named);
    assert_int_equal(n->var, ag_vars_find(&fx->vars, AG_STR_LIT("A")));

    n = only_arg(pat(fx, "f($$OP)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_CAPTURE);
    assert_false(n->mv_named);
    assert_int_equal(n->var, ag_vars_find(&fx->vars, AG_STR_LIT("OP")));

    n = only_arg(pat(fx, "f($_)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_DROPPED);
    assert_int_equal(n->var, -1);
    n = only_arg(pat(fx, "f($_X1)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_DROPPED);
    assert_int_equal(ag_vars_find(&fx->vars, AG_STR_LIT("_X1")), -1);

    n = only_arg(pat(fx, "f($$$)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_MULTI);
    assert_int_equal(n->var, -1);
    n = only_arg(pat(fx, "f($$$_REST)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_MULTI);
    assert_int_equal(n->var, -1);
    n = only_arg(pat(fx, "f($$$ARGS)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_MULTI_CAPTURE);
    assert_int_equal(n->var, ag_vars_find(&fx->vars, AG_STR_LIT("ARGS")));

    n = only_arg(pat(fx, "f($A1_B)", AG_STRICT_SMART));
    assert_int_equal(n->mv, AG_MV_CAPTURE);
    assert_true(ag_vars_find(&fx->vars, AG_STR_LIT("A1_B")) >= 0);

    /* not metavariables: lower case, leading digit, bare $, text around it */
    n = only_arg(pat(fx, "f($abc)", AG_STRICT_SMART));
    assert_int_equal(n->kind, AG_PN_TERM);
    n = only_arg(pat(fx, "f($1)", AG_STRICT_SMART));
    assert_int_equal(n->kind, AG_PN_TERM);
    n = only_arg(pat(fx, "f($)", AG_STRICT_SMART));
    assert_int_equal(n->kind, AG_PN_TERM);
    n = only_arg(pat(fx, "f('openai/$X')", AG_STRICT_SMART));
    assert_int_equal(n->kind, AG_PN_INTERNAL);
    assert_int_equal(ag_vars_find(&fx->vars, AG_STR_LIT("X")), -1);
}

static void test_pattern_kind_and_root(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat(fx, "new Agent($$$ARGS)", AG_STRICT_SMART);
    assert_int_equal(ag_pattern_kind(p), kind_of("new_expression"));
    assert_int_equal(p->root_kind, 0);
    p = pat(fx, "{ model: $M }", AG_STRICT_SMART);
    assert_int_equal(ag_pattern_kind(p), kind_of("object"));
    p = pat(fx, "123", AG_STRICT_SMART);
    assert_int_equal(p->root.kind, AG_PN_TERM);
    assert_int_equal(ag_pattern_kind(p), kind_of("number"));
    p = pat(fx, "$A", AG_STRICT_SMART);
    assert_int_equal(ag_pattern_kind(p), 0);
    p = pat_sel(fx, "({ model: $M })", "pair", AG_STRICT_SMART);
    assert_int_equal(p->root_kind, kind_of("pair"));
    assert_int_equal(ag_pattern_kind(p), kind_of("pair"));
    /* selector picking a metavariable: the selector kind still constrains candidates */
    p = pat_sel(fx, "class A { $F }", "property_identifier", AG_STRICT_SMART);
    assert_int_equal(p->root.kind, AG_PN_META);
    assert_int_equal(ag_pattern_kind(p), kind_of("property_identifier"));
    code(fx, "let b = 123");
    assert_int_equal(scan_pat(fx, p), 0);
    code(fx, "class B { c }");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(var(fx, "F"), "c");
}

static void test_pattern_owns_source(void **state)
{
    fx_t *fx = *state;
    char *src = strdup("createAgent({ model: $M })");
    ag_pattern_t *p = pat(fx, src, AG_STRICT_SMART);
    memset(src, 'x', strlen(src));
    free(src);
    code(fx, "createAgent({ model: 'gpt-4o' })");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(var(fx, "M"), "'gpt-4o'");
    ag_str_t lit = ag_pattern_literal(p);
    assert_int_equal(lit.len, strlen("createAgent"));
    assert_memory_equal(lit.ptr, "createAgent", lit.len);
}

static void test_pattern_literal(void **state)
{
    fx_t *fx = *state;
    ag_str_t lit = ag_pattern_literal(pat(fx, "new Agent($$$)", AG_STRICT_SMART));
    assert_int_equal(lit.len, 5);
    assert_memory_equal(lit.ptr, "Agent", 5);
    lit = ag_pattern_literal(pat(fx, "openai('gpt-4o-mini')", AG_STRICT_RELAXED));
    assert_int_equal(lit.len, strlen("gpt-4o-mini"));
    assert_memory_equal(lit.ptr, "gpt-4o-mini", lit.len);
    /* only metavariables and unnamed tokens: nothing to require */
    assert_int_equal(ag_pattern_literal(pat(fx, "$A($$$B)", AG_STRICT_SMART)).len, 0);
    /* levels that ignore the text of leaves */
    assert_int_equal(ag_pattern_literal(pat(fx, "new Agent($$$)", AG_STRICT_SIGNATURE)).len, 0);
    assert_int_equal(ag_pattern_literal(pat(fx, "new Agent($$$)", AG_STRICT_TEMPLATE)).len, 0);
}

static void test_error_pattern_accepted(void **state)
{
    fx_t *fx = *state;
    /* `123+` parses with an ERROR root: accepted, any kind, children compared */
    ag_pattern_t *p = pat(fx, "123+", AG_STRICT_SMART);
    assert_int_equal(p->root.kind, AG_PN_INTERNAL);
    assert_int_equal(p->root.sym, (TSSymbol)-1);
    assert_int_equal(ag_pattern_kind(p), 0);
    code(fx, "x = 123 + 4; y = 5 + 4;");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(hit_text(fx), "123 + 4");
}

/* ---- single patterns ---- */

static void test_new_agent(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(count(fx, "new Agent($$$ARGS)", AG_STRICT_SMART,
                           "const a = new Agent({ name: 'a' }, 2);\n"
                           "const b = new Other();\n"
                           "const c = Agent({});\n"
                           "const d = new Agent();\n"),
                     2);
    assert_string_equal(hit_text(fx), "new Agent({ name: 'a' }, 2)");
    assert_string_equal(var(fx, "ARGS"), "{ name: 'a' }, 2");
    assert_int_equal(state_of(fx, "ARGS"), AG_SLOT_MULTI);
}

static void test_object_pattern(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat(fx, "{ model: $M }", AG_STRICT_SMART);
    code(fx, "f({ model: 'x' }); g({ name: 'a', model: 'y' }); h({ model: 'z', name: 'b' });");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(var(fx, "M"), "'x'");
}

static void test_selector_pair(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat_sel(fx, "({ model: $M })", "pair", AG_STRICT_SMART);
    code(fx, "new Agent({ name: 'a', model: openai('gpt-4o'), tools: {} });");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(hit_text(fx), "model: openai('gpt-4o')");
    assert_string_equal(var(fx, "M"), "openai('gpt-4o')");
}

static void test_single_arg_smart(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat(fx, "openai($ID)", AG_STRICT_SMART);
    code(fx, "openai('gpt-4o')");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(var(fx, "ID"), "'gpt-4o'");
    code(fx, "openai('a', 'b')");
    assert_int_equal(scan_pat(fx, p), 0);
    code(fx, "openai()");
    assert_int_equal(scan_pat(fx, p), 0);
}

static void test_comma_trap(void **state)
{
    fx_t *fx = *state;
    const char *c = "openai('gpt-4o')";
    assert_int_equal(count(fx, "$F($M, $$$REST)", AG_STRICT_SMART, c), 0);
    assert_int_equal(count(fx, "$F($M, $$$REST)", AG_STRICT_RELAXED, c), 1);
    assert_string_equal(var(fx, "F"), "openai");
    assert_string_equal(var(fx, "M"), "'gpt-4o'");
    assert_int_equal(state_of(fx, "REST"), AG_SLOT_UNSET);
    assert_int_equal(count(fx, "$F($M, $$$REST)", AG_STRICT_AST, c), 1);
    /* commas after a $$$ are tolerated under smart */
    assert_int_equal(count(fx, "$F($$$A, $M)", AG_STRICT_SMART, c), 1);
    assert_int_equal(count(fx, "new Agent({ $$$A, model: $M, $$$B })", AG_STRICT_SMART,
                           "new Agent({ name: 'c', model: 'x' })"),
                     0);
    assert_int_equal(count(fx, "new Agent({ $$$A, model: $M, $$$B })", AG_STRICT_SMART,
                           "new Agent({ name: 'c', model: 'x', })"),
                     1);
    assert_int_equal(count(fx, "new Agent({ $$$A, model: $M, $$$B })", AG_STRICT_RELAXED,
                           "new Agent({ name: 'c', model: 'x' })"),
                     1);
    assert_string_equal(var(fx, "A"), "name: 'c'");
    assert_string_equal(var(fx, "M"), "'x'");
}

static void test_comments_and_strictness(void **state)
{
    fx_t *fx = *state;
    const char *c = "foo(/* c */ bar)";
    assert_int_equal(count(fx, "$A($B)", AG_STRICT_SMART, c), 1);
    assert_string_equal(var(fx, "A"), "foo");
    assert_string_equal(var(fx, "B"), "bar");
    assert_int_equal(count(fx, "$A($B)", AG_STRICT_RELAXED, c), 1);
    assert_int_equal(count(fx, "$A($B)", AG_STRICT_SIGNATURE, c), 1);
    assert_int_equal(count(fx, "$A(bar)", AG_STRICT_AST, c), 0);
    assert_int_equal(count(fx, "$A(bar)", AG_STRICT_CST, c), 0);
    /* a trailing comment after the last argument */
    assert_int_equal(count(fx, "$A($B)", AG_STRICT_SMART, "foo(bar /* c */)"), 1);
    assert_int_equal(count(fx, "$A($B)", AG_STRICT_AST, "foo(bar /* c */)"), 0);
}

static void test_strictness_levels(void **state)
{
    fx_t *fx = *state;
    /* quote kinds differ: unnamed nodes are skipped only by ast/relaxed/signature */
    const char *imp = "import A from \"lib\"";
    assert_int_equal(count(fx, "import $A from 'lib'", AG_STRICT_CST, imp), 0);
    assert_int_equal(count(fx, "import $A from 'lib'", AG_STRICT_SMART, imp), 0);
    assert_int_equal(count(fx, "import $A from 'lib'", AG_STRICT_AST, imp), 1);
    assert_int_equal(count(fx, "import $A from 'lib'", AG_STRICT_RELAXED, imp), 1);
    assert_int_equal(count(fx, "import $A from 'lib'", AG_STRICT_SIGNATURE, imp), 1);
    /* a pattern token missing in the code */
    assert_int_equal(count(fx, "print($A,)", AG_STRICT_CST, "print(123)"), 0);
    assert_int_equal(count(fx, "print($A,)", AG_STRICT_SMART, "print(123)"), 0);
    assert_int_equal(count(fx, "print($A,)", AG_STRICT_AST, "print(123)"), 1);
    /* trailing unnamed nodes in the code */
    assert_int_equal(count(fx, "let a = 1", AG_STRICT_CST, "let a = 1;"), 0);
    assert_int_equal(count(fx, "let a = 1", AG_STRICT_SMART, "let a = 1;"), 1);
    assert_int_equal(count(fx, "let a = 1", AG_STRICT_AST, "let a = 1;"), 1);
    assert_int_equal(
        count(fx, "import { foo } from 'bar'", AG_STRICT_RELAXED, "import { foo, } from 'bar'"), 1);
    assert_int_equal(
        count(fx, "import { foo } from 'bar'", AG_STRICT_RELAXED, "import { foo, bar } from 'bar'"),
        0);
    /* signature ignores the text of named leaves */
    assert_int_equal(count(fx, "foo('a')", AG_STRICT_SMART, "bar('b')"), 0);
    assert_int_equal(count(fx, "foo('a')", AG_STRICT_SIGNATURE, "bar('b')"), 1);
    /* template ignores kinds: an assignment pattern finds a declarator */
    assert_int_equal(count(fx, "$A = $B", AG_STRICT_SMART, "let a = 123"), 0);
    assert_true(count(fx, "$A = $B", AG_STRICT_TEMPLATE, "let a = 123") >= 1);
    assert_string_equal(var(fx, "B"), "123");
}

static void test_unnamed_terms_by_kind(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat(fx, "foo($A)", AG_STRICT_CST);
    ag_pnode_t *open = &p->root.kids[1].kids[0];
    assert_int_equal(open->kind, AG_PN_TERM);
    assert_false(open->named);
    /* the unnamed `(` keeps matching whatever its recorded text */
    open->text = "[";
    code(fx, "foo(1)");
    assert_int_equal(scan_pat(fx, p), 1);
    /* a named leaf compares text */
    ag_pnode_t *callee = &p->root.kids[0];
    assert_int_equal(callee->kind, AG_PN_TERM);
    assert_true(callee->named);
    callee->text = "bar";
    assert_int_equal(scan_pat(fx, p), 0);
}

static void test_repeated_metavar(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(count(fx, "$A($A)", AG_STRICT_SMART, "foo(foo)"), 1);
    assert_int_equal(count(fx, "$A($A)", AG_STRICT_SMART, "foo(bar)"), 0);
    assert_int_equal(count(fx, "$A + $A", AG_STRICT_SMART, "x = a.b + a.b"), 1);
    assert_int_equal(count(fx, "$A + $A", AG_STRICT_SMART, "x = a.b + a.c"), 0);
    /* quotes are part of the text */
    assert_int_equal(count(fx, "$A + $A", AG_STRICT_SMART, "x = 'q' + \"q\""), 0);
    assert_int_equal(count(fx, "$A + $A", AG_STRICT_SMART, "x = f(1, [2]) + f(1, [2])"), 1);
    assert_int_equal(count(fx, "$A + $A", AG_STRICT_SMART, "x = f(1, [2]) + f(1, [3])"), 0);
    /* ($P) => $F($P) (ast-grep gh-1087) */
    assert_int_equal(count(fx, "($P) => $F($P)", AG_STRICT_SMART, "(x) => bar(x)"), 1);
}

static void test_repeated_multi(void **state)
{
    fx_t *fx = *state;
    const char *p = "f([$$$A], [$$$A])";
    assert_int_equal(count(fx, p, AG_STRICT_SMART, "f([1, 2], [1,2])"), 1);
    assert_int_equal(count(fx, p, AG_STRICT_SMART, "f([1, 2], [1, 3])"), 0);
    assert_int_equal(count(fx, p, AG_STRICT_SMART, "f([1, 2], [1])"), 0);
    assert_int_equal(count(fx, p, AG_STRICT_SMART, "f([], [])"), 1);
    assert_string_equal(var(fx, "A"), "");
}

static void test_ellipsis_positions(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(count(fx, "foo($$$)", AG_STRICT_SMART, "foo()"), 1);
    assert_int_equal(count(fx, "foo($$$A, c)", AG_STRICT_SMART, "foo(a, b, c)"), 1);
    assert_string_equal(var(fx, "A"), "a, b");
    assert_int_equal(count(fx, "foo($$$A, a, b, c)", AG_STRICT_SMART, "foo(a, b, c)"), 1);
    assert_string_equal(var(fx, "A"), "");
    assert_int_equal(count(fx, "foo($$$A, a, b, c)", AG_STRICT_SMART, "foo(b, c)"), 0);
    assert_int_equal(count(fx, "foo(a, $$$B)", AG_STRICT_SMART, "foo(a, b, c)"), 1);
    assert_string_equal(var(fx, "B"), "b, c");
    /* $$$ in the middle */
    assert_int_equal(count(fx, "foo($A, $$$MID, last)", AG_STRICT_SMART, "foo(1, 2, 3, last)"), 1);
    assert_string_equal(var(fx, "A"), "1");
    assert_string_equal(var(fx, "MID"), "2, 3");
    assert_int_equal(count(fx, "foo($A, $$$MID, $B)", AG_STRICT_SMART, "foo(1, 2)"), 1);
    assert_string_equal(var(fx, "MID"), "");
    assert_string_equal(var(fx, "B"), "2");
    /* non-greedy without backtracking: $B takes the first candidate, as in ast-grep */
    assert_int_equal(count(fx, "foo($A, $$$MID, $B)", AG_STRICT_SMART, "foo(1, 2, 3)"), 0);
    assert_int_equal(count(fx, "print($$$A,b,$$$C)", AG_STRICT_AST, "print(a, b, c,)"), 1);
    assert_string_equal(var(fx, "A"), "a");
    assert_string_equal(var(fx, "C"), "c,");
    /* $$$A $$$B: A takes exactly one node */
    ag_pattern_t *p = pat_sel(fx, "function f($$$X $$$Y) {}", "formal_parameters", AG_STRICT_SMART);
    code(fx, "function g(a, b, c) {}");
    assert_int_equal(scan_pat(fx, p), 1);
    assert_string_equal(var(fx, "X"), "a");
    assert_string_equal(var(fx, "Y"), ", b, c");
}

static void test_ellipsis_probe_isolated(void **state)
{
    fx_t *fx = *state;
    /* probing `let $P = g()` against `let a = 0` binds $P = a and then fails: that binding must
     * not survive into the real match (ast-grep test_leading_ellipsis_metavar_anchor) */
    assert_int_equal(count(fx, "function _() {\n  $$$A\n  let $P = g()\n  let $Q = h()\n  $$$B\n}",
                           AG_STRICT_SMART,
                           "function _() { let a = 0; let p = g(); let q = h(); let b = 1; }"),
                     1);
    assert_string_equal(var(fx, "P"), "p");
    assert_string_equal(var(fx, "Q"), "q");
    assert_string_equal(var(fx, "A"), "let a = 0;");
    assert_string_equal(var(fx, "B"), "let b = 1;");
}

static void test_unnamed_capture(void **state)
{
    fx_t *fx = *state;
    code(fx, "x = a + b");
    ag_rnode_t *r = rkind(fx, "binary_expression");
    r->has = rel(fx, rpat(fx, "$$OP", AG_STRICT_SMART), AG_STOP_NEIGHBOR, "operator");
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(var(fx, "OP"), "+");
    /* $A binds named nodes only */
    r = rkind(fx, "binary_expression");
    r->has = rel(fx, rpat(fx, "$NOP", AG_STRICT_SMART), AG_STOP_NEIGHBOR, "operator");
    assert_int_equal(scan(fx, r), 0);
}

static void test_root_metavar_comment(void **state)
{
    fx_t *fx = *state;
    ag_rnode_t *r = rkind(fx, "comment");
    r->pattern = pat(fx, "$A", AG_STRICT_SMART);
    code(fx, "// hello\nx;");
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(var(fx, "A"), "// hello");
    r->pattern = pat(fx, "$A", AG_STRICT_RELAXED);
    assert_int_equal(scan(fx, r), 0);
}

static void test_env_untouched_on_failure(void **state)
{
    fx_t *fx = *state;
    ag_pattern_t *p = pat(fx, "$A($A, $B)", AG_STRICT_SMART);
    code(fx, "foo(foo2, 1)");
    ag_env_t env, before;
    memset(&env, 0, sizeof(env));
    int b = ag_vars_find(&fx->vars, AG_STR_LIT("B"));
    env.s[b].state = AG_SLOT_TEXT;
    env.s[b].text_off = 1;
    env.s[b].text_len = 2;
    before = env;
    for (uint32_t i = 0; i < fx->flat.count; i++)
        assert_false(ag_match_pattern(&fx->m, p, i, &env));
    assert_memory_equal(&env, &before, sizeof(env));
    ag_str_t t = ag_env_text(&fx->flat, &env, b, AG_STR_LIT("xyz"));
    assert_int_equal(t.len, 2);
    assert_memory_equal(t.ptr, "yz", 2);
    /* out of range TEXT and unknown slots give "" */
    env.s[b].text_len = 9;
    assert_int_equal(ag_env_text(&fx->flat, &env, b, AG_STR_LIT("xyz")).len, 0);
    assert_int_equal(ag_env_text(&fx->flat, &env, -1, AG_STR_LIT("xyz")).len, 0);
}

/* ---- the rule layer ---- */

static void test_has_field(void **state)
{
    fx_t *fx = *state;
    code(fx, "const o = { a: 'x', x: 1, model: 'gpt' };");
    ag_rnode_t *r = rkind(fx, "pair");
    r->has = rel(fx, rregex(fx, "x"), AG_STOP_NEIGHBOR, "key");
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(hit_text(fx), "x: 1");
    r->has = rel(fx, rregex(fx, "x"), AG_STOP_NEIGHBOR, NULL);
    assert_int_equal(scan(fx, r), 2);
    /* field + end: the field child and its descendants */
    r->has = rel(fx, rkind(fx, "string_fragment"), AG_STOP_END, "value");
    assert_int_equal(scan(fx, r), 2);
    r->has = rel(fx, rkind(fx, "string_fragment"), AG_STOP_NEIGHBOR, "value");
    assert_int_equal(scan(fx, r), 0);
    /* binding through has */
    r = rkind(fx, "pair");
    r->has = rel(fx, rpat(fx, "'gpt'", AG_STRICT_SMART), AG_STOP_NEIGHBOR, "value");
    ag_rnode_t *kv = rnew(fx);
    kv->pattern = pat_sel(fx, "({ $K: $V })", "pair", AG_STRICT_SMART);
    r->all = rlist(fx, 1, kv);
    r->nall = 1;
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(var(fx, "K"), "model");
}

static void test_has_stop_by(void **state)
{
    fx_t *fx = *state;
    code(fx, "function test() { if (x) { var a = 1 } }\n"
             "function other() { function inner() { var a = 1 } }");
    ag_rnode_t *target = rpat(fx, "var a = 1", AG_STRICT_SMART);
    ag_rnode_t *r = rkind(fx, "function_declaration");
    r->has = rel(fx, target, AG_STOP_NEIGHBOR, NULL);
    assert_int_equal(scan(fx, r), 0);
    r->has = rel(fx, target, AG_STOP_END, NULL);
    assert_int_equal(scan(fx, r), 3); /* test, other, inner */
    /* stopBy a rule: do not look inside nested functions (the stop node itself is tested) */
    r->has = rel(fx, target, AG_STOP_RULE, NULL);
    r->has->stop_rule = rkind(fx, "function_declaration");
    assert_int_equal(scan(fx, r), 2); /* test, inner */
    assert_string_equal(hit_text(fx), "function test() { if (x) { var a = 1 } }");
    ag_rnode_t *r2 = rkind(fx, "function_declaration");
    r2->has = rel(fx, rpat(fx, "function inner() { $$$ }", AG_STRICT_SMART), AG_STOP_RULE, NULL);
    r2->has->stop_rule = rkind(fx, "function_declaration");
    assert_int_equal(scan(fx, r2), 1);
    assert_string_equal(hit_text(fx), "function other() { function inner() { var a = 1 } }");
}

static void test_inside(void **state)
{
    fx_t *fx = *state;
    code(fx, "new Agent({ model: openai('gpt-4o') }); f({ model: 'x' });");
    ag_rnode_t *r = rkind(fx, "string");
    r->inside = rel(fx, rkind(fx, "new_expression"), AG_STOP_END, NULL);
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(hit_text(fx), "'gpt-4o'");
    r->inside = rel(fx, rkind(fx, "new_expression"), AG_STOP_NEIGHBOR, NULL);
    assert_int_equal(scan(fx, r), 0);
    r->inside = rel(fx, rkind(fx, "arguments"), AG_STOP_NEIGHBOR, NULL);
    assert_int_equal(scan(fx, r), 1);
    /* stopBy rule, inclusive: stop at the first object, so new_expression is never reached */
    r->inside = rel(fx, rkind(fx, "new_expression"), AG_STOP_RULE, NULL);
    r->inside->stop_rule = rkind(fx, "object");
    assert_int_equal(scan(fx, r), 0);
    r->inside->stop_rule = rkind(fx, "new_expression");
    assert_int_equal(scan(fx, r), 1);
    /* field: only the constructor identifier, not identifiers deeper in the arguments */
    ag_rnode_t *id = rkind(fx, "identifier");
    id->inside = rel(fx, rkind(fx, "new_expression"), AG_STOP_NEIGHBOR, "constructor");
    assert_int_equal(scan(fx, id), 1);
    assert_string_equal(hit_text(fx), "Agent");
    id->inside = rel(fx, rkind(fx, "new_expression"), AG_STOP_END, "arguments");
    assert_int_equal(scan(fx, id), 1);
    assert_string_equal(hit_text(fx), "openai");
    /* binding through inside */
    ag_rnode_t *s = rkind(fx, "string");
    s->inside = rel(fx, rpat(fx, "new $C($$$)", AG_STRICT_SMART), AG_STOP_END, NULL);
    assert_int_equal(scan(fx, s), 1);
    assert_string_equal(var(fx, "C"), "Agent");
}

static void test_precedes_follows(void **state)
{
    fx_t *fx = *state;
    code(fx, "var b = 2; alert(b); var a = 1;");
    ag_rnode_t *r = rpat(fx, "var b = 2", AG_STRICT_SMART);
    r->precedes = rel(fx, rpat(fx, "var a = 1", AG_STRICT_SMART), AG_STOP_END, NULL);
    assert_int_equal(scan(fx, r), 1);
    r->precedes->stop = AG_STOP_NEIGHBOR;
    assert_int_equal(scan(fx, r), 0);
    r->precedes->stop = AG_STOP_RULE;
    r->precedes->stop_rule = rkind(fx, "expression_statement");
    assert_int_equal(scan(fx, r), 0);

    ag_rnode_t *f = rpat(fx, "var a = 1", AG_STRICT_SMART);
    f->follows = rel(fx, rpat(fx, "var b = $N", AG_STRICT_SMART), AG_STOP_END, NULL);
    assert_int_equal(scan(fx, f), 1);
    assert_string_equal(var(fx, "N"), "2");
    f->follows->stop = AG_STOP_NEIGHBOR;
    assert_int_equal(scan(fx, f), 0);

    /* siblings include unnamed nodes: the neighbor of a pair is the comma */
    code(fx, "x = { a: 1, b: 2 }");
    ag_rnode_t *p = rkind(fx, "pair");
    p->precedes = rel(fx, rkind(fx, "pair"), AG_STOP_NEIGHBOR, NULL);
    assert_int_equal(scan(fx, p), 0);
    p->precedes->stop = AG_STOP_END;
    assert_int_equal(scan(fx, p), 1);
    assert_string_equal(hit_text(fx), "a: 1");
}

static void test_not_leaks_nothing(void **state)
{
    fx_t *fx = *state;
    code(fx, "foo(1); bar(x);");
    /* the inner all binds F and A, then fails on kind: not succeeds, and nothing escapes */
    ag_rnode_t *inner = rnew(fx);
    inner->all = rlist(fx, 2, rpat(fx, "$F($A)", AG_STRICT_SMART), rkind(fx, "identifier"));
    inner->nall = 2;
    ag_rnode_t *r = rkind(fx, "call_expression");
    r->not_ = inner;
    assert_int_equal(scan(fx, r), 2);
    assert_int_equal(state_of(fx, "F"), AG_SLOT_UNSET);
    assert_int_equal(state_of(fx, "A"), AG_SLOT_UNSET);
    /* a not whose rule matches rejects, again without bindings */
    ag_rnode_t *r2 = rkind(fx, "call_expression");
    r2->not_ = rpat(fx, "$G(1)", AG_STRICT_SMART);
    assert_int_equal(scan(fx, r2), 1);
    assert_string_equal(hit_text(fx), "bar(x)");
    assert_int_equal(state_of(fx, "G"), AG_SLOT_UNSET);
    ag_env_t env;
    memset(&env, 0, sizeof(env));
    uint32_t foo = fx->flat.nodes[fx->flat.nodes[0].first_child].first_child;
    assert_true(ag_str_eqc(ag_flat_text(&fx->flat, foo), "foo(1)"));
    assert_false(ag_match_rnode(&fx->m, r2, foo, &env));
    assert_int_equal(env.s[ag_vars_find(&fx->vars, AG_STR_LIT("G"))].state, AG_SLOT_UNSET);
    /* not sees earlier bindings: pattern binds X, not compares against it */
    code(fx, "f(a, a); f(a, b);");
    ag_rnode_t *r3 = rpat(fx, "f($X, $Y)", AG_STRICT_SMART);
    r3->not_ = rpat(fx, "f($X, $X)", AG_STRICT_SMART);
    assert_int_equal(scan(fx, r3), 1);
    assert_string_equal(hit_text(fx), "f(a, b)");
}

static void test_any_all_bindings(void **state)
{
    fx_t *fx = *state;
    ag_rnode_t *r = rkind(fx, "call_expression");
    r->any = rlist(fx, 3, rpat(fx, "$A(1)", AG_STRICT_SMART), rpat(fx, "$B($C)", AG_STRICT_SMART),
                   rpat(fx, "$D($E)", AG_STRICT_SMART));
    r->nany = 3;
    code(fx, "foo(1)");
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(var(fx, "A"), "foo");
    assert_int_equal(state_of(fx, "B"), AG_SLOT_UNSET);
    assert_int_equal(state_of(fx, "D"), AG_SLOT_UNSET);
    code(fx, "foo(2)");
    assert_int_equal(scan(fx, r), 1);
    assert_int_equal(state_of(fx, "A"), AG_SLOT_UNSET);
    assert_string_equal(var(fx, "B"), "foo");
    assert_string_equal(var(fx, "C"), "2");
    assert_int_equal(state_of(fx, "D"), AG_SLOT_UNSET);

    /* all keeps every binding; a later failure undoes the earlier ones */
    ag_rnode_t *a = rnew(fx);
    a->all = rlist(fx, 2, rpat(fx, "$P($Q)", AG_STRICT_SMART), rregex(fx, "^foo"));
    a->nall = 2;
    code(fx, "foo(3); bar(4)");
    assert_int_equal(scan(fx, a), 1);
    assert_string_equal(var(fx, "P"), "foo");
    assert_string_equal(var(fx, "Q"), "3");
    ag_env_t env;
    memset(&env, 0, sizeof(env));
    uint32_t bar = fx->flat.count;
    for (uint32_t i = 0; i < fx->flat.count; i++)
        if (ag_str_eqc(ag_flat_text(&fx->flat, i), "bar(4)"))
            bar = i;
    assert_true(bar < fx->flat.count);
    assert_false(ag_match_rnode(&fx->m, a, bar, &env));
    assert_int_equal(env.s[ag_vars_find(&fx->vars, AG_STR_LIT("P"))].state, AG_SLOT_UNSET);
    /* pattern + relational in one rule object: the relational failure undoes the pattern */
    ag_rnode_t *pr = rpat(fx, "$P($Q)", AG_STRICT_SMART);
    pr->has = rel(fx, rkind(fx, "string"), AG_STOP_END, NULL);
    assert_false(ag_match_rnode(&fx->m, pr, bar, &env));
    assert_int_equal(env.s[ag_vars_find(&fx->vars, AG_STR_LIT("P"))].state, AG_SLOT_UNSET);
}

static void test_order_has_first_only(void **state)
{
    fx_t *fx = *state;
    /* has binds the first descendant that matches; a later check does not make it retry */
    code(fx, "f(a, b)");
    ag_rnode_t *r = rkind(fx, "arguments");
    ag_rnode_t *h = rkind(fx, "arguments");
    h->has = rel(fx, rpat(fx, "$X", AG_STRICT_SMART), AG_STOP_NEIGHBOR, NULL);
    ag_rnode_t *last = rnew(fx);
    last->pattern = pat_sel(fx, "f($$$, $X)", "arguments", AG_STRICT_SMART);
    r->all = rlist(fx, 2, h, last);
    r->nall = 2;
    assert_int_equal(scan(fx, r), 0);
    ag_rnode_t *first = rnew(fx);
    first->pattern = pat_sel(fx, "f($X, $$$)", "arguments", AG_STRICT_SMART);
    r->all[1] = first;
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(var(fx, "X"), "a");
}

static void test_nth_child(void **state)
{
    fx_t *fx = *state;
    code(fx, "new Agent(/* c */ { a: 1 }, x)");
    ag_rnode_t *r = rkind(fx, "object");
    r->has_nth = true;
    r->nth_position = 1;
    assert_int_equal(scan(fx, r), 0); /* the comment is child #1 */
    r->nth_position = 2;
    assert_int_equal(scan(fx, r), 1);
    ag_rnode_t *nc = rnew(fx);
    nc->not_ = rkind(fx, "comment");
    r->nth_of = nc;
    r->nth_position = 1;
    assert_int_equal(scan(fx, r), 1);
    r->nth_position = 2;
    assert_int_equal(scan(fx, r), 0);
    /* reverse counts from the end */
    r->nth_of = NULL;
    r->nth_reverse = true;
    r->nth_position = 2;
    assert_int_equal(scan(fx, r), 1);
    r->nth_position = 1;
    assert_int_equal(scan(fx, r), 0);
    /* unnamed nodes never count and never match */
    code(fx, "[1, 2, 3]");
    ag_rnode_t *n3 = rkind(fx, "number");
    n3->has_nth = true;
    n3->nth_position = 3;
    assert_int_equal(scan(fx, n3), 1);
    assert_string_equal(hit_text(fx), "3");
    /* a node failing ofRule has no position */
    ag_rnode_t *odd = rkind(fx, "number");
    odd->has_nth = true;
    odd->nth_position = 1;
    odd->nth_of = rregex(fx, "^[13]$");
    assert_int_equal(scan(fx, odd), 1);
    assert_string_equal(hit_text(fx), "1");
    odd->nth_position = 2;
    assert_int_equal(scan(fx, odd), 1);
    assert_string_equal(hit_text(fx), "3");
    /* An+B (positions checked on ast-grep 0.51.1 with f(a1, ..., a7)) */
    code(fx, "[a1, a2, a3, a4, a5, a6, a7]");
    ag_rnode_t *an = rkind(fx, "identifier");
    an->has_nth = true;
    an->nth_step = 2; /* 2n+1: a1 a3 a5 a7 */
    an->nth_position = 1;
    assert_int_equal(scan(fx, an), 4);
    an->nth_step = -1; /* -n+3: a1 a2 a3 */
    an->nth_position = 3;
    assert_int_equal(scan(fx, an), 3);
    an->nth_step = 3; /* 3n-1: a2 a5 */
    an->nth_position = -1;
    assert_int_equal(scan(fx, an), 2);
    an->nth_step = -2; /* -2n-1: none */
    assert_int_equal(scan(fx, an), 0);
    an->nth_step = 1; /* n-2: all */
    an->nth_position = -2;
    assert_int_equal(scan(fx, an), 7);
    an->nth_step = 2; /* 2n, reversed: a2 a4 a6 */
    an->nth_position = 0;
    an->nth_reverse = true;
    assert_int_equal(scan(fx, an), 3);
}

static void test_range(void **state)
{
    fx_t *fx = *state;
    /* checked on ast-grep 0.51.1: 0-based lines, columns in characters, both ends exact */
    code(fx, "const \xc3\xa9 = \"\xc3\xa9\xc3\xa9\" + foo(a1);\nlet y = 2;");
    ag_rnode_t *r = rkind(fx, "string");
    r->has_range = true;
    uint32_t str[4] = {0, 10, 0, 14}; /* "éé": bytes 11..17 */
    memcpy(r->range, str, sizeof(str));
    assert_int_equal(scan(fx, r), 1);
    assert_string_equal(hit_text(fx), "\"\xc3\xa9\xc3\xa9\"");
    r->range[3] = 13; /* the end must match too */
    assert_int_equal(scan(fx, r), 0);
    ag_rnode_t *d = rkind(fx, "lexical_declaration");
    d->has_range = true;
    uint32_t second[4] = {1, 0, 1, 10};
    memcpy(d->range, second, sizeof(second));
    assert_int_equal(scan(fx, d), 1);
    assert_string_equal(hit_text(fx), "let y = 2;");
    d->range[0] = d->range[2] = 0; /* same columns on the first line: no declaration there */
    assert_int_equal(scan(fx, d), 0);
}

static void test_regex(void **state)
{
    fx_t *fx = *state;
    code(fx, "f('gpt-4', \"openai/gpt-4o\", 'claude')");
    ag_rnode_t *r = rkind(fx, "string");
    r->regex = re(fx, "gpt");
    assert_int_equal(scan(fx, r), 2);
    r->regex = re(fx, "^gpt-4$");
    assert_int_equal(scan(fx, r), 0); /* the quotes are part of the text */
    r->regex = re(fx, "^'gpt-4'$");
    assert_int_equal(scan(fx, r), 1);
    r->regex = re(fx, "^.CLAUDE.$");
    assert_int_equal(scan(fx, r), 0);
    r->regex = re(fx, "(?i)^.CLAUDE.$");
    assert_int_equal(scan(fx, r), 1);
    /* the loader's literal prefilter is consulted before pcre2 */
    r->regex = re(fx, "gpt-4");
    r->regex_literal = AG_STR_LIT("gpt-4");
    assert_int_equal(scan(fx, r), 2);
    r->regex_literal = AG_STR_LIT("not-in-any-string");
    assert_int_equal(scan(fx, r), 0);
}

static void test_regex_match_limit(void **state)
{
    fx_t *fx = *state;
    /* a match that needs backtracking: found with the default limits, not with a tiny one */
    code(fx, "f('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab')");
    ag_rnode_t *r = rkind(fx, "string");
    r->regex = re(fx, "^'(a|aa)+b'$");
    assert_int_equal(scan(fx, r), 1);
    ag_matcher_t limited;
    ag_matcher_init(&limited, 10);
    ag_matcher_bind(&limited, &fx->flat, NULL, 0);
    unsigned n = 0;
    for (uint32_t i = 0; i < fx->flat.count; i++) {
        ag_env_t env;
        memset(&env, 0, sizeof(env));
        n += ag_match_rnode(&limited, r, i, &env);
    }
    ag_matcher_dispose(&limited);
    assert_int_equal(n, 0);
}

static void test_matches_util(void **state)
{
    fx_t *fx = *state;
    fx->utils[0].name = "is-number";
    fx->utils[0].rule = rkind(fx, "number");
    /* util 1 recurses on children forever: it terminates because it walks down */
    ag_rnode_t *down = rnew(fx);
    down->has = rel(fx, NULL, AG_STOP_NEIGHBOR, NULL);
    ag_rnode_t *self = rnew(fx);
    self->matches = 1;
    down->has->rule = self;
    fx->utils[1].name = "down";
    fx->utils[1].rule = down;
    /* util 2: a number somewhere below, by recursion */
    ag_rnode_t *deep = rnew(fx);
    ag_rnode_t *again = rnew(fx);
    again->matches = 2;
    ag_rnode_t *viahas = rnew(fx);
    viahas->has = rel(fx, again, AG_STOP_NEIGHBOR, NULL);
    ag_rnode_t *num = rnew(fx);
    num->matches = 0;
    deep->any = rlist(fx, 2, num, viahas);
    deep->nany = 2;
    fx->utils[2].name = "deep-number";
    fx->utils[2].rule = deep;
    fx->nutils = 3;

    code(fx, "f(1, g(h(2)), 'x')");
    ag_rnode_t *r = rkind(fx, "call_expression");
    r->matches = 0;
    assert_int_equal(scan(fx, r), 0);
    ag_rnode_t *n = rnew(fx);
    n->matches = 0;
    assert_int_equal(scan(fx, n), 2);
    ag_rnode_t *d = rnew(fx);
    d->matches = 1;
    assert_int_equal(scan(fx, d), 0);
    ag_rnode_t *dn = rkind(fx, "call_expression");
    dn->matches = 2;
    assert_int_equal(scan(fx, dn), 3);
    /* an index out of range never matches */
    ag_rnode_t *bad = rnew(fx);
    bad->matches = 7;
    assert_int_equal(scan(fx, bad), 0);
}

static char *deep_source(unsigned depth)
{
    char *s = malloc(2 * depth + 2);
    assert_non_null(s);
    memset(s, '[', depth);
    s[depth] = '1';
    memset(s + depth + 1, ']', depth);
    s[2 * depth + 1] = '\0';
    return s;
}

static void test_deep_input_bounded(void **state)
{
    fx_t *fx = *state;
    /* a recursive util on a very deep tree: bounded rule depth, no stack overflow */
    ag_rnode_t *again = rnew(fx);
    again->matches = 0;
    ag_rnode_t *viahas = rnew(fx);
    viahas->has = rel(fx, again, AG_STOP_NEIGHBOR, NULL);
    ag_rnode_t *deep = rnew(fx);
    deep->any = rlist(fx, 2, rkind(fx, "number"), viahas);
    deep->nany = 2;
    fx->utils[0].name = "deep";
    fx->utils[0].rule = deep;
    fx->nutils = 1;
    char *src = deep_source(3000);
    code(fx, src);
    free(src);
    ag_rnode_t *top = rkind(fx, "program");
    top->matches = 0;
    ag_env_t env;
    memset(&env, 0, sizeof(env));
    assert_false(ag_match_rnode(&fx->m, top, 0, &env));
    /* a shallow array nearby still works */
    ag_rnode_t *arr = rkind(fx, "array");
    arr->matches = 0;
    uint32_t inner = fx->flat.count;
    for (uint32_t i = 0; i < fx->flat.count; i++)
        if (fx->flat.nodes[i].sym == kind_of("number"))
            inner = fx->flat.nodes[fx->flat.nodes[i].parent].parent;
    assert_true(inner < fx->flat.count);
    assert_true(ag_match_rnode(&fx->m, arr, inner, &env));
    /* has stopBy end is iterative: it reaches the bottom of the deep tree */
    ag_rnode_t *hasnum = rkind(fx, "program");
    hasnum->has = rel(fx, rkind(fx, "number"), AG_STOP_END, NULL);
    assert_true(ag_match_rnode(&fx->m, hasnum, 0, &env));
    /* inside stopBy end walks up iteratively */
    ag_rnode_t *innum = rkind(fx, "number");
    innum->inside = rel(fx, rkind(fx, "program"), AG_STOP_END, NULL);
    assert_int_equal(scan(fx, innum), 1);
    /* repeated metavariables over deep equal subtrees compare without recursion */
    char *a = deep_source(2000);
    char *both = malloc(2 * strlen(a) + 8);
    assert_non_null(both);
    sprintf(both, "%s + %s", a, a);
    free(a);
    ag_pattern_t *p = pat(fx, "$X + $X", AG_STRICT_SMART);
    code(fx, both);
    free(both);
    assert_int_equal(scan_pat(fx, p), 1);
}

static void test_step_budget(void **state)
{
    fx_t *fx = *state;
    ag_rnode_t *r = rkind(fx, "program");
    r->has = rel(fx, rpat(fx, "target($A)", AG_STRICT_SMART), AG_STOP_END, NULL);
    code(fx, "a(1); b(2); c(3); d(4); e(5); target(6);");
    ag_env_t env;
    memset(&env, 0, sizeof(env));
    fx->m.steps = 0;
    assert_true(ag_match_rnode(&fx->m, r, 0, &env));
    uint64_t used = fx->m.steps;
    assert_true(used > 10);
    fx->m.steps = 0;
    fx->m.max_steps = used - 1;
    memset(&env, 0, sizeof(env));
    assert_false(ag_match_rnode(&fx->m, r, 0, &env));
    fx->m.steps = 0;
    fx->m.max_steps = used;
    assert_true(ag_match_rnode(&fx->m, r, 0, &env));
    fx->m.max_steps = 0;
}

static void test_no_allocation_while_matching(void **state)
{
    fx_t *fx = *state;
    ag_rnode_t *r = rkind(fx, "new_expression");
    r->pattern = pat(fx, "new Agent({ $$$A, model: $M, $$$B })", AG_STRICT_RELAXED);
    r->has = rel(fx, rkind(fx, "string"), AG_STOP_END, NULL);
    ag_rnode_t *nc = rnew(fx);
    nc->not_ = rpat(fx, "new Agent({ $$$, name: 'x', $$$ })", AG_STRICT_RELAXED);
    r->all = rlist(fx, 1, nc);
    r->nall = 1;
    code(fx, "new Agent({ name: 'a', model: 'gpt' }); new Agent({ model: 'b' });");
    uint64_t before = ag_alloc_count;
    assert_int_equal(scan(fx, r), 2);
    assert_int_equal(ag_alloc_count, before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vars_intern),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_compile_errors),
        T(test_compile_too_many_vars),
        T(test_metavar_syntax),
        T(test_pattern_kind_and_root),
        T(test_pattern_owns_source),
        T(test_pattern_literal),
        T(test_error_pattern_accepted),
        T(test_new_agent),
        T(test_object_pattern),
        T(test_selector_pair),
        T(test_single_arg_smart),
        T(test_comma_trap),
        T(test_comments_and_strictness),
        T(test_strictness_levels),
        T(test_unnamed_terms_by_kind),
        T(test_repeated_metavar),
        T(test_repeated_multi),
        T(test_ellipsis_positions),
        T(test_ellipsis_probe_isolated),
        T(test_unnamed_capture),
        T(test_root_metavar_comment),
        T(test_env_untouched_on_failure),
        T(test_has_field),
        T(test_has_stop_by),
        T(test_inside),
        T(test_precedes_follows),
        T(test_not_leaks_nothing),
        T(test_any_all_bindings),
        T(test_order_has_first_only),
        T(test_nth_child),
        T(test_range),
        T(test_regex),
        T(test_regex_match_limit),
        T(test_matches_util),
        T(test_deep_input_bounded),
        T(test_step_budget),
        T(test_no_allocation_while_matching),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for transforms (strcase.c, rules.c's transform loader, rewrite.c's run_transforms):
 * transform.convert against outputs of the pinned ast-grep 0.51.1 CLI (`ast-grep scan` on the
 * same words), the string form of transforms, and their load errors with file:line:col. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "rewrite.h"
#include "rules.h"
#include "rules_int.h"
#include "strcase.h"

#define NAME "t.yaml"

static void expect_case(const char *in, ag_case_t to, unsigned seps, const char *want)
{
    ag_buf_t out;
    ag_buf_init(&out, 1024);
    assert_int_equal(ag_case_convert(ag_cstr(in), to, seps, &out), AG_OK);
    if (!ag_str_eqc(ag_buf_str(&out), want))
        fail_msg("convert(%s, case %d, seps %#x): want %s, got %.*s", in, (int)to, seps, want,
                 (int)out.len, out.ptr ? out.ptr : "");
    ag_buf_dispose(&out);
}

/* ---- convert: word splitting and cases (each row checked on ast-grep 0.51.1) ---- */

static void test_convert_snake_splitting(void **state)
{
    (void)state;
    static const char *const rows[][2] = {
        {"HTTPServerError", "http_server_error"},
        {"a1B2c", "a1b_2c"},
        {"XMLHttpRequest2Go", "xml_http_request2_go"},
        {"__foo__bar", "foo_bar"},
        {"fooBAR", "foo_bar"},
        {"foo.bar/baz qux-x_y", "foo_bar_baz_qux_x_y"},
        {"123abc", "12_3abc"},
        {"IPv6Address", "i_pv6_address"},
        {"v2Api", "v2_api"},
        {"ab12CD34ef", "ab12cd3_4ef"},
        {"a1B", "a1b"},
        {"a1Bc", "a1_bc"},
        {"AB1c", "ab_1c"},
        {"1Ab", "1_ab"},
        {"A1b", "a_1b"},
        {"aB1c", "a_b_1c"},
        {"a1BBc", "a1b_bc"},
        {"aBCd", "a_b_cd"},
        {"a-1B", "a_1b"},
        {"xA1b", "x_a_1b"},
        {"a$B", "a$b"},
        {"\xc3\x89"
         "coleNormale",
         "\xc3\xa9"
         "cole_normale"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        expect_case(rows[i][0], AG_CASE_SNAKE, AG_SEP_ALL, rows[i][1]);
}

static void test_convert_cases(void **state)
{
    (void)state;
    /* HTTPServerError, fooBAR, hello_World_ABC, ab12CD34ef, __x__ in each case */
    static const char *const in[] = {"HTTPServerError", "fooBAR", "hello_World_ABC", "ab12CD34ef",
                                     "__x__"};
    static const char *const want[][5] = {
        /* lower */ {"httpservererror", "foobar", "hello_world_abc", "ab12cd34ef", "__x__"},
        /* upper */ {"HTTPSERVERERROR", "FOOBAR", "HELLO_WORLD_ABC", "AB12CD34EF", "__X__"},
        /* capitalize */ {"HTTPServerError", "FooBAR", "Hello_World_ABC", "Ab12CD34ef", "__x__"},
        /* camel */ {"httpServerError", "fooBAR", "helloWorldABC", "ab12cd34ef", "x"},
        /* snake */ {"http_server_error", "foo_bar", "hello_world_abc", "ab12cd3_4ef", "x"},
        /* kebab */ {"http-server-error", "foo-bar", "hello-world-abc", "ab12cd3-4ef", "x"},
        /* pascal */ {"HTTPServerError", "FooBAR", "HelloWorldABC", "Ab12CD34ef", "X"},
    };
    for (int c = AG_CASE_LOWER; c <= AG_CASE_PASCAL; c++)
        for (size_t i = 0; i < 5; i++)
            expect_case(in[i], (ag_case_t)c, AG_SEP_ALL, want[c][i]);
    expect_case("\xc3\xa9"
                "1\xc3\x89",
                AG_CASE_UPPER, AG_SEP_ALL,
                "\xc3\x89"
                "1\xc3\x89");
}

/* Case mappings that grow (Unicode's full mapping, as ast-grep's Rust to_uppercase): checked on
 * ast-grep 0.51.1's CLI (tests/parity case transform-convert-upper-special). */
static void test_convert_full_case_mapping(void **state)
{
    (void)state;
    expect_case("stra\xc3\x9f"
                "eNeu",
                AG_CASE_UPPER, AG_SEP_ALL, "STRASSENEU");
    expect_case("\xef\xac\x81"
                "ne",
                AG_CASE_UPPER, AG_SEP_ALL, "FINE");
    expect_case("\xef\xac\x81"
                "ne",
                AG_CASE_CAPITALIZE, AG_SEP_ALL, "FIne");
    expect_case("\xc5\x89"
                "a",
                AG_CASE_UPPER, AG_SEP_ALL,
                "\xca\xbc"
                "NA");
    /* U+0130 lower-cases to i + U+0307 */
    expect_case("\xc4\xb0"
                "X",
                AG_CASE_LOWER, AG_SEP_ALL,
                "i\xcc\x87"
                "x");
}

static void test_convert_separated_by(void **state)
{
    (void)state;
    const char *in = "fooBar_baz-qux.x/y zW";
    expect_case(in, AG_CASE_SNAKE, AG_SEP_UNDERSCORE, "foobar_baz-qux.x/y zw");
    expect_case(in, AG_CASE_CAMEL, AG_SEP_UNDERSCORE, "foobarBaz-qux.x/y zW");
    expect_case(in, AG_CASE_SNAKE, AG_SEP_CASE_CHANGE, "foo_bar_baz-qux.x/y z_w");
    expect_case(in, AG_CASE_SNAKE, AG_SEP_DASH | AG_SEP_CASE_CHANGE, "foo_bar_baz_qux.x/y z_w");
    expect_case(in, AG_CASE_CAMEL, AG_SEP_DASH | AG_SEP_CASE_CHANGE, "fooBar_bazQux.x/y zW");
    expect_case(in, AG_CASE_SNAKE, AG_SEP_SPACE | AG_SEP_SLASH, "foobar_baz-qux.x_y_zw");
    expect_case(in, AG_CASE_CAMEL, AG_SEP_DOT, "foobar_baz-quxX/y zW");
    expect_case(in, AG_CASE_CAMEL, 0, "foobar_baz-qux.x/y zw");
    expect_case("a__b", AG_CASE_SNAKE, AG_SEP_CASE_CHANGE, "a___b");
    expect_case("a__b", AG_CASE_CAMEL, AG_SEP_UNDERSCORE, "aB");
    expect_case("aB1c", AG_CASE_SNAKE, AG_SEP_UNDERSCORE, "ab1c");
}

static void test_convert_names(void **state)
{
    (void)state;
    assert_int_equal(ag_case_parse(AG_STR_LIT("kebabCase")), AG_CASE_KEBAB);
    assert_int_equal(ag_case_parse(AG_STR_LIT("SnakeCase")), -1);
    assert_int_equal(ag_sep_parse(AG_STR_LIT("caseChange")), AG_SEP_CASE_CHANGE);
    assert_int_equal(ag_sep_parse(AG_STR_LIT("comma")), -1);
}

/* ---- transforms in a rule: both forms give the same fix ---- */

static ag_rules_t *load_ok(const char *yaml)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_mem(ag_cstr(yaml), NAME, &r, &d) != AG_OK)
        fail_msg("rules do not load: %u:%u: %s", d.line, d.col, d.msg);
    return r;
}

/* The first block of reply rewritten by the rules in yaml. */
static void expect_rewrite(const char *yaml, const char *reply, const char *want)
{
    ag_rules_t *r = load_ok(yaml);
    ag_engine_t *e = ag_engine_new(r, NULL);
    assert_non_null(e);
    ag_buf_t out;
    ag_buf_init(&out, 1u << 16);
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    int rc = ag_engine_rewrite(e, ag_cstr(reply), &out, &res);
    bool same = ag_str_eqc(ag_buf_str(&out), want);
    char got[512];
    snprintf(got, sizeof(got), "%.*s", (int)out.len, out.ptr ? out.ptr : "");
    ag_buf_dispose(&out);
    ag_engine_free(e);
    ag_rules_free(r);
    assert_int_equal(rc, AG_OK);
    if (!same)
        fail_msg("want:\n%s\ngot:\n%s", want, got);
}

static void expect_err(const char *yaml, unsigned line, unsigned col, const char *needle)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    int rc = ag_rules_load_mem(ag_cstr(yaml), NAME, &r, &d);
    if (rc == AG_OK)
        ag_rules_free(r);
    assert_int_equal(rc, AG_EINVAL);
    if (strstr(d.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", d.msg, needle);
    if (d.line != line || d.col != col)
        fail_msg("expected %u:%u, got %u:%u: %s", line, col, d.line, d.col, d.msg);
}

#define RULE_HEAD                                                                                  \
    "id: t\n"                                                                                      \
    "language: ts\n"                                                                               \
    "rule: {pattern: \"old($A)\"}\n"                                                               \
    "transform:\n"

static void test_convert_in_fix(void **state)
{
    (void)state;
    expect_rewrite(RULE_HEAD "  N:\n"
                             "    convert: {source: $A, toCase: snakeCase}\n"
                             "  M:\n"
                             "    convert:\n"
                             "      source: $A\n"
                             "      toCase: camelCase\n"
                             "      separatedBy: [dash]\n"
                             "fix: fresh($N, $M)\n",
                   "```ts\nold(HTTPServer_x);\n```\n",
                   "```ts\nfresh(http_server_x, httpserver_x);\n```\n");
}

static void test_string_form(void **state)
{
    (void)state;
    /* each string form gives what its object form gives */
    expect_rewrite(
        RULE_HEAD "  N: convert($A, toCase=snakeCase)\n"
                  "  M: convert( $A , toCase = 'camelCase', separatedBy=[dash, caseChange])\n"
                  "  R: replace($A, replace='a|e', by=\"X\")\n"
                  "  S: substring($A, startChar=1, endChar=-1)\n"
                  "  T: replace($N, replace=_, by=', ')\n"
                  "fix: fresh($N, $M, $R, $S, $T)\n",
        "```ts\nold(fooBar_baz);\n```\n",
        "```ts\nfresh(foo_bar_baz, fooBar_baz, fooBXr_bXz, ooBar_ba, foo, bar, baz);\n```\n");
    /* the last of a repeated argument wins, a trailing comma is fine */
    expect_rewrite(RULE_HEAD "  N: convert($A, toCase=snakeCase, toCase=pascalCase,)\n"
                             "fix: $N\n",
                   "```ts\nold(foo_bar);\n```\n", "```ts\nFooBar;\n```\n");
}

static void test_string_form_errors(void **state)
{
    (void)state;
    /* col of the value's start on line 5 ("  N: " is 5 columns) */
    expect_err(RULE_HEAD "  N: substring($A)\n", 5, 16, "syntax error");
    expect_err(RULE_HEAD "  N: frobnicate($A, x=1)\n", 5, 6, "unknown transform `frobnicate`");
    expect_err(RULE_HEAD "  N: convert($A, toCase=SnakeCase)\n", 5, 25,
               "unknown toCase `SnakeCase`");
    expect_err(RULE_HEAD "  N: convert($A, toCase=snakeCase, separatedBy=[bogus])\n", 5, 48,
               "unknown separator `bogus`");
    expect_err(RULE_HEAD "  N: convert($A, bogus=1, toCase=snakeCase)\n", 5, 18,
               "unknown field `bogus`");
    expect_err(RULE_HEAD "  N: convert($A)\n", 5, 14, "syntax error");
    expect_err(RULE_HEAD "  N: convert($A, separatedBy=[dash])\n", 5, 6, "convert needs `toCase`");
    expect_err(RULE_HEAD "  N: replace($A, replace='a', by='x)\n", 5, 34, "never closed");
    expect_err(RULE_HEAD "  N: replace($A, replace=[a-z]+, by=x)\n", 5, 31,
               "unknown field `+, by`");
    expect_err(RULE_HEAD "  N: replace(A, replace=a, by=x)\n", 5, 14, "metavariable");
    expect_err(RULE_HEAD "  N: replace($B, replace=a, by=x)\n", 5, 14, "never bound");
    expect_err(RULE_HEAD "  N: replace($A, replace='(', by=x)\n", 5, 26, "regex");
    expect_err(RULE_HEAD "  N: substring($A, startChar=1.5)\n", 5, 30, "integer");
    expect_err(RULE_HEAD "  N: substring($A, source=$A, startChar=1)\n", 5, 20,
               "`source` is not a valid argument");
    expect_err(RULE_HEAD "  N:\n    convert: {source: $A, toCase: snake}\n", 6, 35,
               "unknown toCase `snake`");
}

/* ---- transform.rewrite (each output checked on ast-grep 0.51.1 with the same rule) ---- */

static void test_rewrite_transform(void **state)
{
    (void)state;
    /* first listed rewriter that matches wins per node */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {pattern: \"log($A)\"}\n"
                   "rewriters:\n"
                   "  - {id: num, rule: {kind: number}, fix: '810'}\n"
                   "  - {id: two, rule: {regex: '^2$'}, fix: '1919'}\n"
                   "transform:\n"
                   "  B: {rewrite: {source: $A, rewriters: [two, num]}}\n"
                   "fix: out($B)\n",
                   "```ts\nlog(t(1, 2, 3));\nlog([1, [2, [3]]]);\n```\n",
                   "```ts\nout(t(810, 1919, 810));\nout([810, [1919, [810]]]);\n```\n");
    /* a $$$ source, joinBy, rewriters' own metavariables, string form */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {pattern: \"log($$$A)\"}\n"
                   "rewriters:\n"
                   "  - {id: num, rule: {kind: number, pattern: $N}, fix: 'n$N'}\n"
                   "  - {id: ident, rule: {kind: identifier, pattern: $X}, fix: '<$X>'}\n"
                   "transform:\n"
                   "  B: rewrite($$$A, rewriters=[ident, num], joinBy=' + ')\n"
                   "fix: out($B)\n",
                   "```ts\nlog(foo(a, b), 7);\n```\n",
                   "```ts\nout(<foo> + <a> + <b> + n7);\n```\n");
    /* outermost first: the array's fix wins over the numbers inside; recursion */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {pattern: \"log($A)\"}\n"
                   "rewriters:\n"
                   "  - id: flat\n"
                   "    rule: {pattern: '[$$$C]'}\n"
                   "    transform:\n"
                   "      D: {rewrite: {source: $$$C, rewriters: [flat]}}\n"
                   "    fix: $D\n"
                   "  - {id: num, rule: {kind: number}, fix: 'x'}\n"
                   "transform:\n"
                   "  B: {rewrite: {source: $A, rewriters: [num, flat]}}\n"
                   "fix: out($B)\n",
                   "```ts\nlog([1, [2, [3, [4]]]]);\n```\n", "```ts\nout(1, 2, 3, 4);\n```\n");
    /* a rewriter starts from the enclosing rule's bindings: $C must equal the rule's */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {pattern: \"f($A, $C)\"}\n"
                   "rewriters:\n"
                   "  - {id: same, rule: {pattern: $C}, fix: 'SAME'}\n"
                   "transform:\n"
                   "  B: {rewrite: {source: $A, rewriters: [same]}}\n"
                   "fix: g($B)\n",
                   "```ts\nf(1, 1);\nf(1, 2);\n```\n", "```ts\ng(SAME);\ng(1);\n```\n");
}

static void test_rewrite_errors(void **state)
{
    (void)state;
    expect_err("id: t\n"
               "language: ts\n"
               "rule: {pattern: \"log($A)\"}\n"
               "rewriters:\n"
               "  - {id: num, rule: {kind: number}}\n", /* 5:5 */
               5, 5, "rewriter `num` needs `rule` and `fix`");
    expect_err("id: t\n"
               "language: ts\n"
               "rule: {pattern: \"log($A)\"}\n"
               "rewriters:\n"
               "  - {id: num, rule: {kind: number}, fix: x}\n"
               "  - {id: num, rule: {kind: number}, fix: y}\n", /* 6:10 */
               6, 10, "duplicate rewriter id `num`");
    expect_err("id: t\n"
               "language: ts\n"
               "rule: {pattern: \"log($A)\"}\n"
               "rewriters:\n"
               "  - {id: num, rule: {kind: number}, fix: x, bogus: 1}\n", /* 5:45 */
               5, 45, "unknown field `bogus`");
    expect_err("id: t\n"
               "language: ts\n"
               "rule: {pattern: \"log($A)\"}\n"
               "transform:\n"
               "  B: {rewrite: {source: $A}}\n", /* 5:16 */
               5, 16, "rewrite needs `rewriters`");
    /* an undefined rewriter: ast-grep skips it silently, astgate warns at its place */
    ag_rules_t *r = load_ok("id: t\n"
                            "language: ts\n"
                            "rule: {pattern: \"log($A)\"}\n"
                            "transform:\n"
                            "  B: rewrite($A, rewriters=[nope])\n");
    assert_int_equal(r->nwarnings, 1);
    assert_non_null(strstr(r->warnings[0].msg, "rewriter `nope` is not defined"));
    assert_int_equal(r->warnings[0].line, 5);
    ag_rules_free(r);
}

/* ---- fix.expandStart / expandEnd (outputs checked on ast-grep 0.51.1) ---- */

static void test_fix_expand(void **state)
{
    (void)state;
    /* the comma after (or before) a removed element goes with it */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {kind: identifier, regex: '^y$'}\n"
                   "fix:\n"
                   "  template: ''\n"
                   "  expandEnd: {regex: ','}\n",
                   "```ts\nf(x, y, z);\ng(y);\n```\n", "```ts\nf(x,  z);\ng();\n```\n");
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {kind: identifier, regex: '^z$'}\n"
                   "fix: {template: '', expandStart: {regex: ','}}\n",
                   "```ts\nf(x, y, z);\n```\n", "```ts\nf(x, y);\n```\n");
    /* one sibling each way at most, as ast-grep: [1,,, 2] loses one comma */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {kind: number, regex: '^1$'}\n"
                   "fix: {template: '', expandEnd: {regex: ','}}\n",
                   "```ts\nconst a = [1,,, 2];\n```\n", "```ts\nconst a = [,, 2];\n```\n");
    /* a sibling that does not match leaves the range alone */
    expect_rewrite("id: t\n"
                   "language: ts\n"
                   "rule: {kind: identifier, regex: '^x$'}\n"
                   "fix: {template: 'Q', expandEnd: {kind: identifier}}\n",
                   "```ts\nf(x, y);\n```\n", "```ts\nf(Q, y);\n```\n");
    expect_err("id: t\n"
               "language: ts\n"
               "rule: {kind: identifier}\n"
               "fix: {template: '', expandEnd: {kind: nonsense}}\n", /* `nonsense` at 4:39 */
               4, 39, "nonsense");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_snake_splitting),
        cmocka_unit_test(test_convert_cases),
        cmocka_unit_test(test_convert_full_case_mapping),
        cmocka_unit_test(test_convert_separated_by),
        cmocka_unit_test(test_convert_names),
        cmocka_unit_test(test_convert_in_fix),
        cmocka_unit_test(test_string_form),
        cmocka_unit_test(test_string_form_errors),
        cmocka_unit_test(test_rewrite_transform),
        cmocka_unit_test(test_rewrite_errors),
        cmocka_unit_test(test_fix_expand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

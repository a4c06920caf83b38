/* Unit tests for indent.c: a multi-line metavariable's text inside a fix, re-indented as ast-grep
 * 0.51.1 does it (each expected string below is what the pinned ast-grep writes), and the
 * engine's fix templates using it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "indent.h"
#include "rewrite.h"
#include "rules.h"

/* The variable is src's first template string (from its first '`' to the next one), whose inside
 * keeps its own indentation; tmpl_line is the template's line up to the variable. */
static void check_var(const char *src, const char *tmpl_line, const char *match_indent,
                      const char *want)
{
    ag_str_t s = ag_cstr(src);
    const char *start = strchr(src, '`');
    assert_non_null(start);
    const char *end = strchr(start + 1, '`');
    assert_non_null(end);
    ag_str_t text = ag_str(start, (size_t)(end - start) + 1);
    ag_buf_t out;
    ag_buf_init(&out, 4096);
    assert_int_equal(
        ag_indent_append_var(&out, s, (uint32_t)(start - src), text,
                             ag_indent_of_line(ag_cstr(tmpl_line), (uint32_t)strlen(tmpl_line)),
                             ag_cstr(match_indent)),
        AG_OK);
    if (!ag_str_eqc(ag_buf_str(&out), want))
        fail_msg("want\n%s\ngot\n%.*s", want, (int)out.len, out.ptr);
    ag_buf_dispose(&out);
}

static void test_one_line_copied(void **state)
{
    (void)state;
    check_var("    wrap(`abc`);", "  ", "    ", "`abc`");
}

static void test_dedent_to_template_line(void **state)
{
    (void)state;
    /* starts on a line indented 6, template line 0, match line 0: later lines lose 6 spaces,
     * and a line indented less than that is kept as it is */
    check_var("wrap(\n      `a\n  b\n\n        c`);\n", "G(", "", "`a\n  b\n\n  c`");
    /* template line indented 2: they lose 4 */
    check_var("wrap(\n      `a\n  b\n\n        c`);\n", "  ", "", "`a\n  b\n\n    c`");
}

static void test_indent_to_template_line(void **state)
{
    (void)state;
    /* starts on a line indented 0, template line 2: every later line gains 2, an empty one too */
    check_var("wrap(`a\n  b\n\n        c`);\n", "  ", "", "`a\n    b\n  \n          c`");
}

static void test_match_indent_on_every_later_line(void **state)
{
    (void)state;
    /* the matched line's indentation (4) goes before every later line, after the shift */
    check_var("    wrap(`a\n  b\n\n        c`);\n", "G(", "    ", "`a\n      b\n    \n        c`");
    check_var("    wrap(`a\n  b\n\n        c`);\n", "  ", "    ", "`a\n    b\n    \n          c`");
    check_var("  wrap(\n      `a\n  b\n\n        c`);\n", "  ", "  ", "`a\n    b\n  \n      c`");
}

static void test_tabs_and_crlf(void **state)
{
    (void)state;
    /* tabs are indentation bytes like spaces; a line's own CRLF stays */
    check_var("\twrap(\r\n\t\t`a\r\n\t\t\tb\r\n\t\tc`);\r\n", "G(", "\t", "`a\r\n\t\tb\r\n\tc`");
}

/* The engine: a fix whose metavariable spans lines (what tests/parity's fix-indent-* check
 * against ast-grep, kept here so a unit run catches it). */
static void test_engine_fix(void **state)
{
    (void)state;
    const char *yaml = "id: g\nlanguage: ts\nrule: {pattern: \"wrap($A)\"}\n"
                       "fix: \"guard(\\n  $A,\\n)\"\n";
    ag_rules_t *rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_rules_load_mem(ag_cstr(yaml), "t.yaml", &rules, &d), AG_OK);
    ag_engine_t *e = ag_engine_new(rules, NULL);
    ag_buf_t out;
    ag_buf_init(&out, 1u << 16);
    ag_result_t res;
    const char *code = "function f() {\n  wrap({\n    a: 1,\n    b: 2,\n  });\n}\n";
    assert_int_equal(ag_engine_rewrite_code(e, ag_cstr(code), AG_STR_LIT("ts"), false, &out, &res),
                     AG_OK);
    const char *want =
        "function f() {\n  guard(\n    {\n      a: 1,\n      b: 2,\n    },\n  );\n}\n";
    if (!ag_str_eqc(ag_buf_str(&out), want))
        fail_msg("want\n%s\ngot\n%.*s", want, (int)out.len, out.ptr);
    assert_int_equal(res.rewrites, 1);
    ag_buf_dispose(&out);
    ag_engine_free(e);
    ag_rules_free(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line_copied),
        cmocka_unit_test(test_dedent_to_template_line),
        cmocka_unit_test(test_indent_to_template_line),
        cmocka_unit_test(test_match_indent_on_every_later_line),
        cmocka_unit_test(test_tabs_and_crlf),
        cmocka_unit_test(test_engine_fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

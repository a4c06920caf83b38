/* Unit tests for fence: finding fenced code blocks and classifying their language. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fence.h"
#include "lang.h"

#define MAXB 8

typedef struct found {
    int rc;
    uint32_t n;
    ag_block_t b[MAXB];
} found_t;

static found_t find(const char *text)
{
    found_t f;

    memset(&f, 0, sizeof(f));
    f.rc = ag_fence_find(ag_cstr(text), f.b, MAXB, &f.n);
    return f;
}

static void assert_str(ag_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void assert_code(const char *text, const ag_block_t *b, const char *want)
{
    assert_str(ag_block_code(ag_cstr(text), b), want);
}

/* one block with the given code, closed or not, and lang */
static void assert_one(const char *text, const char *code, bool closed, const char *lang)
{
    found_t f = find(text);

    assert_int_equal(f.rc, AG_OK);
    assert_int_equal(f.n, 1);
    assert_code(text, &f.b[0], code);
    assert_int_equal(f.b[0].closed, closed);
    assert_str(f.b[0].lang, lang);
}

static void assert_none(const char *text)
{
    found_t f = find(text);

    assert_int_equal(f.rc, AG_OK);
    assert_int_equal(f.n, 0);
    assert_false(ag_fence_any(ag_cstr(text)));
}

static void test_basic_offsets(void **state)
{
    (void)state;
    const char *t = "Here:\n```ts\nconst x = 1;\n```\nDone.\n";
    found_t f = find(t);

    assert_int_equal(f.rc, AG_OK);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.b[0].open_start, 6);
    assert_int_equal(f.b[0].start, 12);
    assert_int_equal(f.b[0].end, 25);
    assert_int_equal(f.b[0].close_end, 28);
    assert_true(f.b[0].closed);
    assert_str(f.b[0].info, "ts");
    assert_str(f.b[0].lang, "ts");
    assert_code(t, &f.b[0], "const x = 1;\n");
    assert_true(ag_fence_any(ag_cstr(t)));
}

static void test_crlf(void **state)
{
    (void)state;
    const char *t = "a\r\n```ts \r\nlet y;\r\n```\r\nb\r\n";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_str(f.b[0].info, "ts");
    assert_code(t, &f.b[0], "let y;\r\n");
    assert_int_equal(f.b[0].open_start, 3);
    assert_int_equal(f.b[0].start, 11);
    /* close_end stops before the CR */
    assert_int_equal(f.b[0].close_end, 22);
    assert_int_equal(t[f.b[0].close_end], '\r');
    assert_true(f.b[0].closed);
}

static void test_cr_at_end_is_line_ending(void **state)
{
    (void)state;
    /* a reply cut between CR and LF: the closer still closes */
    assert_one("```ts\r\nx\r\n```\r", "x\r\n", true, "ts");
    /* a lone CR inside a line is an ordinary byte: trailing text, not a closer */
    assert_one("```\nx\n```\r \n", "x\n```\r \n", false, "");
}

static void test_tabs(void **state)
{
    (void)state;
    /* a tab before the fence is 4 columns: not a fence */
    assert_none("\t```ts\nx\n");
    assert_none("  \t```ts\nx\n");
    /* so the closer below opens a block of its own */
    assert_one("\t```ts\nx\n```\ny\n", "y\n", false, "");
    /* tabs around the info string are trimmed, and end the first word */
    found_t f = find("```\tts\tx=1 \t\ncode\n```\t \n");
    assert_int_equal(f.n, 1);
    assert_str(f.b[0].info, "ts\tx=1");
    assert_str(f.b[0].lang, "ts");
    /* tabs after a closer are allowed */
    assert_true(f.b[0].closed);
    assert_code("```\tts\tx=1 \t\ncode\n```\t \n", &f.b[0], "code\n");
}

static void test_nested_longer_fence(void **state)
{
    (void)state;
    const char *t = "````md\n```ts\nx\n```\n````\nafter\n";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_str(f.b[0].lang, "md");
    assert_code(t, &f.b[0], "```ts\nx\n```\n");
    assert_true(f.b[0].closed);
}

static void test_tilde_and_backtick_do_not_close_each_other(void **state)
{
    (void)state;
    assert_one("~~~ts\na\n```\nb\n~~~\n", "a\n```\nb\n", true, "ts");
    assert_one("```ts\na\n~~~\nb\n```\n", "a\n~~~\nb\n", true, "ts");
    /* a tilde fence may have backticks in its info string */
    found_t f = find("~~~ ts `x`\ny\n~~~\n");
    assert_int_equal(f.n, 1);
    assert_str(f.b[0].info, "ts `x`");
}

static void test_short_closer_does_not_close(void **state)
{
    (void)state;
    assert_one("````ts\na\n```\nb\n", "a\n```\nb\n", false, "ts");
    /* a longer closer does */
    assert_one("```ts\na\n`````\nb\n", "a\n", true, "ts");
}

static void test_closer_with_trailing_text_does_not_close(void **state)
{
    (void)state;
    assert_one("```ts\na\n``` x\nb\n```\n", "a\n``` x\nb\n", true, "ts");
    assert_one("```ts\na\n```ts\nb\n", "a\n```ts\nb\n", false, "ts");
}

static void test_indent(void **state)
{
    (void)state;
    /* up to 3 spaces before opener and closer, independently */
    const char *t = "   ```ts\n  x\n ```\n";
    found_t f = find(t);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.b[0].open_start, 0);
    assert_code(t, &f.b[0], "  x\n");
    assert_true(f.b[0].closed);
    /* 4 spaces: not an opener */
    assert_none("    ```ts\nx\n    ```\n");
    /* 4 spaces: not a closer */
    assert_one("```ts\nx\n    ```\n", "x\n    ```\n", false, "ts");
}

static void test_no_trailing_newline(void **state)
{
    (void)state;
    const char *t = "```ts\nx\n```";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_true(f.b[0].closed);
    assert_int_equal(f.b[0].end, 8);
    assert_int_equal(f.b[0].close_end, 11);
    assert_code(t, &f.b[0], "x\n");
}

static void test_empty_block(void **state)
{
    (void)state;
    const char *t = "```ts\n```\n";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_true(f.b[0].closed);
    assert_int_equal(f.b[0].start, 6);
    assert_int_equal(f.b[0].end, 6);
    assert_int_equal(f.b[0].close_end, 9);
}

static void test_info_extra_words(void **state)
{
    (void)state;
    found_t f = find("```  ts title=\"x.ts\"  \nx\n```\n");

    assert_int_equal(f.n, 1);
    assert_str(f.b[0].info, "ts title=\"x.ts\"");
    assert_str(f.b[0].lang, "ts");
}

static void test_unlabeled(void **state)
{
    (void)state;
    found_t f = find("```\nx\n```\n");

    assert_int_equal(f.n, 1);
    assert_int_equal(f.b[0].info.len, 0);
    assert_int_equal(f.b[0].lang.len, 0);
    /* spaces only: still unlabeled */
    f = find("```   \nx\n```\n");
    assert_int_equal(f.n, 1);
    assert_int_equal(f.b[0].info.len, 0);
}

static void test_back_to_back(void **state)
{
    (void)state;
    const char *t = "```ts\na\n```\n```js\nb\n```\n~~~\nc\n~~~\n";
    found_t f = find(t);

    assert_int_equal(f.n, 3);
    assert_code(t, &f.b[0], "a\n");
    assert_code(t, &f.b[1], "b\n");
    assert_code(t, &f.b[2], "c\n");
    assert_str(f.b[1].lang, "js");
    assert_int_equal(f.b[1].open_start, 12);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(f.b[i].closed);
}

static void test_no_fence(void **state)
{
    (void)state;
    assert_none("");
    assert_none("just text\nno code here\n");
    assert_none("``\n`` not three\n");
    assert_none("~~ nor this\n");
}

static void test_inline_code(void **state)
{
    (void)state;
    /* backticks in a backtick info string: an inline span, not a fence */
    assert_none("```ts const x = 1```\n");
    assert_none("Use ``a ` b`` and ```x``` inline.\n");
    assert_none("text ```ts\nx\n");
    assert_one("text ```ts\nx\n```\ny", "y", false, "");
    /* an inline span on a line does not hide a real fence after it */
    assert_one("```ts const x```\n```ts\ny\n```\n", "y\n", true, "ts");
}

static void test_unclosed_at_end(void **state)
{
    (void)state;
    const char *t = "Sure:\n```ts\nconst a = {\n  b: 1,";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_false(f.b[0].closed);
    assert_int_equal(f.b[0].end, strlen(t));
    assert_int_equal(f.b[0].close_end, strlen(t));
    assert_code(t, &f.b[0], "const a = {\n  b: 1,");
}

static void test_lone_fence_at_end(void **state)
{
    (void)state;
    const char *t = "text\n```";
    found_t f = find(t);

    assert_int_equal(f.n, 1);
    assert_false(f.b[0].closed);
    assert_int_equal(f.b[0].open_start, 5);
    assert_int_equal(f.b[0].start, 8);
    assert_int_equal(f.b[0].end, 8);
    assert_int_equal(f.b[0].lang.len, 0);
    /* the same with a line ending */
    assert_one("text\n```ts\n", "", false, "ts");
    /* and after a closed block, the last line opens a new one */
    f = find("```\na\n```\n```");
    assert_int_equal(f.n, 2);
    assert_true(f.b[0].closed);
    assert_false(f.b[1].closed);
}

static void test_too_many(void **state)
{
    (void)state;
    const char *t = "```\n```\n```\n```\n```\n```\n";
    ag_block_t b[2];
    uint32_t n = 99;

    assert_int_equal(ag_fence_find(ag_cstr(t), b, 2, &n), AG_ETOOBIG);
    assert_int_equal(n, 2);
    assert_int_equal(b[1].open_start, 8);
    assert_int_equal(ag_fence_find(ag_cstr(t), NULL, 0, &n), AG_ETOOBIG);
    assert_int_equal(n, 0);
    ag_block_t c[3];
    assert_int_equal(ag_fence_find(ag_cstr(t), c, 3, &n), AG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ag_fence_find(ag_cstr("none"), NULL, 0, &n), AG_OK);
    assert_int_equal(n, 0);
}

static void test_next(void **state)
{
    (void)state;
    const char *t = "x\n```ts\na\n```\ny\n~~~\nb";
    ag_str_t s = ag_cstr(t);
    uint32_t pos = 0;
    ag_block_t b;

    assert_int_equal(ag_fence_next(s, &pos, &b), AG_OK);
    assert_int_equal(pos, 14);
    assert_int_equal(ag_fence_next(s, &pos, &b), AG_OK);
    assert_false(b.closed);
    assert_int_equal(pos, strlen(t));
    assert_int_equal(ag_fence_next(s, &pos, &b), AG_ENOENT);
}

static void test_any(void **state)
{
    (void)state;
    assert_true(ag_fence_any(AG_STR_LIT("a\n   ~~~~ anything\n")));
    assert_true(ag_fence_any(AG_STR_LIT("```")));
    assert_false(ag_fence_any(AG_STR_LIT("a `b` ```c``` \n    ```\n")));
    assert_false(ag_fence_any(ag_str(NULL, 0)));
}

static ag_block_t with_lang(const char *lang)
{
    ag_block_t b;

    memset(&b, 0, sizeof(b));
    b.lang = ag_cstr(lang);
    b.info = b.lang;
    return b;
}

static void test_classify_default(void **state)
{
    (void)state;
    ag_fence_langs_t l;
    ag_fence_langs_default(&l);
    static const char *const ts[] = {"ts",  "typescript", "js", "javascript", "mts",       "cts",
                                     "mjs", "cjs",        "",   "TS",         "TypeScript"};
    static const char *const tsx[] = {"tsx", "jsx", "TSX", "Jsx"};
    static const char *const other[] = {"python", "t", "tss", "json", "typescriptx", "sh"};

    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        ag_block_t b = with_lang(ts[i]);
        assert_int_equal(ag_fence_classify(&b, &l), AG_LANG_TS);
    }
    for (size_t i = 0; i < sizeof(tsx) / sizeof(tsx[0]); i++) {
        ag_block_t b = with_lang(tsx[i]);
        assert_int_equal(ag_fence_classify(&b, &l), AG_LANG_TSX);
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        ag_block_t b = with_lang(other[i]);
        assert_int_equal(ag_fence_classify(&b, &l), -1);
    }
}

static void test_classify_found_block(void **state)
{
    (void)state;
    ag_fence_langs_t l;
    ag_fence_langs_default(&l);
    found_t f = find("```TS title=a\nx\n```\n```python\ny\n```\n```jsx\n<a/>\n```\n```\nz\n```\n");

    assert_int_equal(f.n, 4);
    assert_int_equal(ag_fence_classify(&f.b[0], &l), AG_LANG_TS);
    assert_int_equal(ag_fence_classify(&f.b[1], &l), -1);
    assert_int_equal(ag_fence_classify(&f.b[2], &l), AG_LANG_TSX);
    assert_int_equal(ag_fence_classify(&f.b[3], &l), AG_LANG_TS);
}

static void test_langs_custom(void **state)
{
    (void)state;
    ag_fence_langs_t l;
    ag_block_t ts = with_lang("ts"), none = with_lang(""), py = with_lang("Python");

    memset(&l, 0, sizeof(l));
    assert_int_equal(ag_fence_classify(&ts, &l), -1);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("PYTHON")), AG_OK);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("python")), AG_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(ag_fence_classify(&py, &l), AG_LANG_TS);
    assert_int_equal(ag_fence_classify(&none, &l), -1);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("")), AG_OK);
    assert_int_equal(ag_fence_classify(&none, &l), AG_LANG_TS);

    ag_fence_langs_default(&l);
    assert_int_equal(ag_fence_classify(&ts, &l), AG_LANG_TS);
    ag_fence_langs_clear(&l);
    assert_int_equal(l.n, 0);
    assert_int_equal(ag_fence_classify(&ts, &l), -1);
    assert_int_equal(ag_fence_classify(&none, &l), -1);
}

static void test_langs_limits(void **state)
{
    (void)state;
    ag_fence_langs_t l;
    char name[16];

    ag_fence_langs_clear(&l);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("a b")), AG_EINVAL);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("a\tb")), AG_EINVAL);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("a\n")), AG_EINVAL);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("0123456789012345678901234567890")), AG_OK);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("01234567890123456789012345678901")),
                     AG_ETOOBIG);
    for (int i = 1; i < AG_FENCE_LANGS_MAX; i++) {
        snprintf(name, sizeof(name), "l%d", i % 100);
        assert_int_equal(ag_fence_langs_add(&l, ag_cstr(name)), AG_OK);
    }
    assert_int_equal(l.n, AG_FENCE_LANGS_MAX);
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("one-more")), AG_ETOOBIG);
    /* present already: fine even when full */
    assert_int_equal(ag_fence_langs_add(&l, AG_STR_LIT("L5")), AG_OK);
    ag_block_t b = with_lang("L31");
    assert_int_equal(ag_fence_classify(&b, &l), AG_LANG_TS);
    b = with_lang("0123456789012345678901234567890");
    assert_int_equal(ag_fence_classify(&b, &l), AG_LANG_TS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_offsets),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cr_at_end_is_line_ending),
        cmocka_unit_test(test_tabs),
        cmocka_unit_test(test_nested_longer_fence),
        cmocka_unit_test(test_tilde_and_backtick_do_not_close_each_other),
        cmocka_unit_test(test_short_closer_does_not_close),
        cmocka_unit_test(test_closer_with_trailing_text_does_not_close),
        cmocka_unit_test(test_indent),
        cmocka_unit_test(test_no_trailing_newline),
        cmocka_unit_test(test_empty_block),
        cmocka_unit_test(test_info_extra_words),
        cmocka_unit_test(test_unlabeled),
        cmocka_unit_test(test_back_to_back),
        cmocka_unit_test(test_no_fence),
        cmocka_unit_test(test_inline_code),
        cmocka_unit_test(test_unclosed_at_end),
        cmocka_unit_test(test_lone_fence_at_end),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_classify_default),
        cmocka_unit_test(test_classify_found_block),
        cmocka_unit_test(test_langs_custom),
        cmocka_unit_test(test_langs_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

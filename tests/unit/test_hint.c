/* Unit tests for request-side hints: metadata.astgate.hint in rules.c (loading, errors, the
 * combined text) and hint.c (every slot shape of the three APIs, bytes outside the insertion
 * unchanged, escaping, bodies left alone). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "hint.h"
#include "rules.h"

static ag_buf_t buf;

static int setup(void **state)
{
    (void)state;
    ag_buf_init(&buf, 1 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_buf_dispose(&buf);
    return 0;
}

/* ---- hint.c ---- */

/* Applies hint to body and compares the whole result with want, and the slot. */
static void check(ag_hint_api_t api, const char *body, const char *hint, const char *want,
                  ag_hint_slot_t want_slot)
{
    ag_buf_reset(&buf);
    ag_hint_slot_t slot = AG_HINT_SLOT_NONE;
    assert_int_equal(ag_hint_apply(api, ag_cstr(body), ag_cstr(hint), &buf, &slot), AG_OK);
    assert_string_equal(buf.ptr, want);
    assert_int_equal(slot, want_slot);
    /* bytes outside the insertion: the result minus one contiguous span is the body (or, for a
     * replaced null, the body minus "null") */
    size_t bl = strlen(body), ol = buf.len, pre = 0, post = 0;
    while (pre < bl && pre < ol && body[pre] == buf.ptr[pre])
        pre++;
    while (post < bl - pre && post < ol - pre && body[bl - 1 - post] == buf.ptr[ol - 1 - post])
        post++;
    size_t cut = bl - pre - post;
    assert_true(cut == 0 || (want_slot == AG_HINT_SLOT_REPLACE_NULL && cut <= 4));
    json_error_t err;
    json_t *j = json_loadb(buf.ptr, buf.len, 0, &err);
    assert_non_null(j);
    json_decref(j);
}

/* The body is left alone: AG_ENOENT and out exactly as it was. */
static void check_alone(ag_hint_api_t api, const char *body)
{
    ag_buf_reset(&buf);
    assert_int_equal(ag_buf_append(&buf, "keep", 4), AG_OK);
    ag_hint_slot_t slot = AG_HINT_SLOT_NONE;
    assert_int_equal(ag_hint_apply(api, ag_cstr(body), ag_cstr("H"), &buf, &slot), AG_ENOENT);
    assert_int_equal(slot, AG_HINT_SLOT_NONE);
    assert_string_equal(buf.ptr, "keep");
}

static void test_chat(void **state)
{
    (void)state;
    /* string content of the first system message */
    check(AG_HINT_CHAT,
          "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
          "{\"role\":\"user\",\"content\":\"hi\"}]}",
          "H",
          "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\\n\\nH\"},"
          "{\"role\":\"user\",\"content\":\"hi\"}]}",
          AG_HINT_SLOT_APPEND_STR);
    /* developer role, content before role, pretty-printed */
    check(
        AG_HINT_CHAT,
        "{\n  \"messages\": [\n    {\"content\": \"D\", \"role\": \"developer\"}\n  ]\n}\n", "H",
        "{\n  \"messages\": [\n    {\"content\": \"D\\n\\nH\", \"role\": \"developer\"}\n  ]\n}\n",
        AG_HINT_SLOT_APPEND_STR);
    /* array content: a text part at its end */
    check(AG_HINT_CHAT,
          "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"A\"}]}]}",
          "H",
          "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},"
          "{\"type\":\"text\",\"text\":\"H\"}]}]}",
          AG_HINT_SLOT_APPEND_PART);
    check(
        AG_HINT_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":[ ]}]}", "H",
        "{\"messages\":[{\"role\":\"system\",\"content\":[ {\"type\":\"text\",\"text\":\"H\"}]}]}",
        AG_HINT_SLOT_APPEND_PART);
    /* the first system message is not the first message; the second system one is untouched */
    check(AG_HINT_CHAT,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"system\",\"content\":"
          "\"s1\"},{\"role\":\"system\",\"content\":\"s2\"}]}",
          "H",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"system\",\"content\":"
          "\"s1\\n\\nH\"},{\"role\":\"system\",\"content\":\"s2\"}]}",
          AG_HINT_SLOT_APPEND_STR);
    /* no system message: a new first one; an empty array */
    check(AG_HINT_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"stream\":true}",
          "H",
          "{\"messages\":[{\"role\":\"system\",\"content\":\"H\"},{\"role\":\"user\",\"content\":"
          "\"u\"}],\"stream\":true}",
          AG_HINT_SLOT_NEW_MESSAGE);
    check(AG_HINT_CHAT, "{\"messages\":[]}", "H",
          "{\"messages\":[{\"role\":\"system\",\"content\":\"H\"}]}", AG_HINT_SLOT_NEW_MESSAGE);
    /* a "system" role nested deeper (a tool's argument) is not a message */
    check(
        AG_HINT_CHAT,
        "{\"x\":{\"messages\":[{\"role\":\"system\",\"content\":\"no\"}]},\"messages\":[]}", "H",
        "{\"x\":{\"messages\":[{\"role\":\"system\",\"content\":\"no\"}]},\"messages\":[{\"role\":"
        "\"system\",\"content\":\"H\"}]}",
        AG_HINT_SLOT_NEW_MESSAGE);
}

static void test_responses(void **state)
{
    (void)state;
    check(AG_HINT_RESPONSES, "{\"model\":\"m\",\"instructions\":\"I\",\"input\":\"x\"}", "H",
          "{\"model\":\"m\",\"instructions\":\"I\\n\\nH\",\"input\":\"x\"}",
          AG_HINT_SLOT_APPEND_STR);
    check(AG_HINT_RESPONSES, "{\"model\":\"m\",\"instructions\":null,\"input\":\"x\"}", "H",
          "{\"model\":\"m\",\"instructions\":\"H\",\"input\":\"x\"}", AG_HINT_SLOT_REPLACE_NULL);
    check(AG_HINT_RESPONSES, " {\"model\":\"m\",\"input\":[]} ", "H",
          " {\"instructions\":\"H\",\"model\":\"m\",\"input\":[]} ", AG_HINT_SLOT_NEW_KEY);
}

static void test_anthropic(void **state)
{
    (void)state;
    check(AG_HINT_ANTHROPIC, "{\"system\":\"S\",\"messages\":[]}", "H",
          "{\"system\":\"S\\n\\nH\",\"messages\":[]}", AG_HINT_SLOT_APPEND_STR);
    check(AG_HINT_ANTHROPIC,
          "{\"system\":[{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":"
          "\"ephemeral\"}}],\"messages\":[]}",
          "H",
          "{\"system\":[{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":"
          "\"ephemeral\"}},{\"type\":\"text\",\"text\":\"H\"}],\"messages\":[]}",
          AG_HINT_SLOT_APPEND_PART);
    check(AG_HINT_ANTHROPIC, "{\"system\":[],\"messages\":[]}", "H",
          "{\"system\":[{\"type\":\"text\",\"text\":\"H\"}],\"messages\":[]}",
          AG_HINT_SLOT_APPEND_PART);
    check(AG_HINT_ANTHROPIC, "{\"system\":null,\"messages\":[]}", "H",
          "{\"system\":\"H\",\"messages\":[]}", AG_HINT_SLOT_REPLACE_NULL);
    check(AG_HINT_ANTHROPIC, "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[]}", "H",
          "{\"system\":\"H\",\"model\":\"c\",\"max_tokens\":9,\"messages\":[]}",
          AG_HINT_SLOT_NEW_KEY);
}

static void test_escaping(void **state)
{
    (void)state;
    /* quotes, backslash, newline, a control byte, non-ASCII, invalid UTF-8 (U+FFFD) */
    check(AG_HINT_ANTHROPIC, "{\"messages\":[]}", "a\"b\\c\nd\x01\xc3\xa9\xff",
          "{\"system\":\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\xef\xbf\xbd\",\"messages\":[]}",
          AG_HINT_SLOT_NEW_KEY);
    /* a string written with \u escapes only: the hint's non-ASCII too */
    check(AG_HINT_RESPONSES, "{\"model\":\"m\",\"instructions\":\"caf\\u00e9\"}", "\xc3\xa9",
          "{\"model\":\"m\",\"instructions\":\"caf\\u00e9\\n\\n\\u00e9\"}",
          AG_HINT_SLOT_APPEND_STR);
    /* the decoded result is the old text + "\n\n" + hint */
    const char *hint = "x = `${y}` // \"q\" \\ \xe2\x80\xa8";
    ag_buf_reset(&buf);
    assert_int_equal(ag_hint_apply(AG_HINT_CHAT,
                                   ag_cstr("{\"messages\":[{\"role\":\"system\",\"content\":"
                                           "\"a\\/b\"}]}"),
                                   ag_cstr(hint), &buf, NULL),
                     AG_OK);
    json_error_t err;
    json_t *j = json_loadb(buf.ptr, buf.len, 0, &err);
    assert_non_null(j);
    const char *got = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content"));
    char want[128];
    snprintf(want, sizeof(want), "a/b\n\n%s", hint);
    assert_string_equal(got, want);
    json_decref(j);
}

static void test_left_alone(void **state)
{
    (void)state;
    check_alone(AG_HINT_CHAT, "");
    check_alone(AG_HINT_CHAT, "not json");
    check_alone(AG_HINT_CHAT, "{\"messages\":[}");
    check_alone(AG_HINT_CHAT, "[{\"messages\":[]}]");
    check_alone(AG_HINT_CHAT, "{\"prompt\":\"completions, not chat\"}");
    check_alone(AG_HINT_CHAT, "{\"messages\":{}}");
    check_alone(AG_HINT_CHAT, "{\"messages\":[],\"messages\":[]}");
    check_alone(AG_HINT_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":null}]}");
    check_alone(AG_HINT_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":7}]}");
    check_alone(AG_HINT_RESPONSES, "{\"instructions\":\"I\"}");
    check_alone(AG_HINT_RESPONSES, "{\"input\":\"x\",\"instructions\":{}}");
    check_alone(AG_HINT_RESPONSES,
                "{\"input\":\"x\",\"instructions\":\"a\",\"instructions\":\"b\"}");
    check_alone(AG_HINT_ANTHROPIC, "{\"system\":\"S\"}");
    check_alone(AG_HINT_ANTHROPIC, "{\"system\":1,\"messages\":[]}");
    check_alone(AG_HINT_ANTHROPIC, "{\"system\":\"a\",\"system\":\"b\",\"messages\":[]}");
    /* more system messages than the scan holds */
    ag_buf_t big;
    ag_buf_init(&big, 1 << 20);
    assert_int_equal(ag_buf_appendf(&big, "{\"messages\":["), AG_OK);
    for (int i = 0; i < 200; i++)
        assert_int_equal(
            ag_buf_appendf(&big, "%s{\"role\":\"system\",\"content\":\"s\"}", i ? "," : ""), AG_OK);
    assert_int_equal(ag_buf_appendf(&big, "]}"), AG_OK);
    check_alone(AG_HINT_CHAT, big.ptr);
    ag_buf_dispose(&big);
}

static void test_too_big(void **state)
{
    (void)state;
    ag_buf_t small;
    ag_buf_init(&small, 20);
    assert_int_equal(ag_buf_append(&small, "ab", 2), AG_OK);
    assert_int_equal(ag_hint_apply(AG_HINT_ANTHROPIC, ag_cstr("{\"messages\":[]}"),
                                   ag_cstr("a hint that is too long"), &small, NULL),
                     AG_ETOOBIG);
    assert_int_equal(small.len, 2);
    assert_string_equal(small.ptr, "ab");
    ag_buf_dispose(&small);
}

/* ---- metadata.astgate.hint ---- */

static const char *const RULE_A = "id: a\n"
                                  "language: TypeScript\n"
                                  "rule: {pattern: f($X)}\n"
                                  "metadata:\n"
                                  "  astgate:\n"
                                  "    params:\n"
                                  "      m: {type: string, default: m1}\n"
                                  "    hint:\n"
                                  "      text: Call g, not f (${{ params.m }}).\n"
                                  "      example: |\n"
                                  "        g('${{ params.m }}');\n"
                                  "---\n"
                                  "id: b\n"
                                  "language: Tsx\n"
                                  "rule: {pattern: h($X)}\n"
                                  "metadata: {astgate: {hint: {text: No h.}}}\n"
                                  "---\n"
                                  "id: c\n"
                                  "language: TypeScript\n"
                                  "rule: {pattern: k($X)}\n"
                                  "---\n"
                                  "id: d\n"
                                  "language: TypeScript\n"
                                  "rule: {pattern: j($X)}\n"
                                  "metadata: {astgate: {hint: {text: No h.}}}\n";

static void test_rules_hint(void **state)
{
    (void)state;
    ag_rules_t *r = NULL;
    ag_diag_t d;
    ag_rules_set_t set = {.name = "m", .value = "m2"};
    ag_rules_src_t src = {.path = "h.yaml", .text = ag_cstr(RULE_A), .sets = &set, .nsets = 1};
    assert_int_equal(ag_rules_load_srcs(&src, 1, NULL, 0, &r, &d), AG_OK);
    ag_str_t t, e;
    assert_true(ag_rules_rule_hint(r, 0, &t, &e));
    assert_true(ag_str_eqc(t, "Call g, not f (m2)."));
    assert_true(ag_str_eqc(e, "g('m2');\n"));
    assert_false(ag_rules_rule_hint(r, 2, &t, &e));
    uint32_t n = 0;
    ag_buf_reset(&buf);
    assert_int_equal(ag_rules_hint(r, &buf, &n), AG_OK);
    assert_int_equal(n, 2); /* d's hint equals b's: given once */
    assert_string_equal(buf.ptr, "astgate rules for generated code:\n"
                                 "- Call g, not f (m2).\n"
                                 "```ts\n"
                                 "g('m2');\n"
                                 "```\n"
                                 "- No h.");
    ag_rules_free(r);

    /* no rule with a hint: nothing */
    assert_int_equal(
        ag_rules_load_mem(ag_cstr("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"), "n", &r, &d),
        AG_OK);
    ag_buf_reset(&buf);
    n = 9;
    assert_int_equal(ag_rules_hint(r, &buf, &n), AG_OK);
    assert_int_equal(n, 0);
    assert_int_equal(buf.len, 0);
    ag_rules_free(r);
}

static void check_err(const char *hint_yaml, unsigned line, unsigned col, const char *msg)
{
    char text[512];
    snprintf(text, sizeof(text),
             "id: a\nlanguage: ts\nrule: {pattern: f($A)}\nmetadata:\n  astgate:\n    hint:%s",
             hint_yaml);
    ag_rules_t *r = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_rules_load_mem(ag_cstr(text), "e.yaml", &r, &d), AG_EINVAL);
    assert_null(r);
    assert_string_equal(d.file, "e.yaml");
    assert_int_equal(d.line, line);
    assert_int_equal(d.col, col);
    if (strstr(d.msg, msg) == NULL)
        fail_msg("`%s` does not hold `%s`", d.msg, msg);
}

static void test_rules_hint_errors(void **state)
{
    (void)state;
    check_err(" x\n", 6, 11, "metadata.astgate.hint must be a mapping");
    check_err("\n      text: t\n      examples: e\n", 8, 7,
              "unknown field `examples` in metadata.astgate.hint");
    check_err("\n      example: e\n", 7, 7, "needs a `text`");
    check_err("\n      text: [a]\n", 7, 13, "hint `text` must be a string");
    check_err("\n      text: t\n      example: {a: 1}\n", 8, 16, "hint `example` must be a string");
    check_err("\n      text: ''\n", 7, 13, "hint `text` must hold 1 to 4096 bytes");
    check_err("\n      text: ${{ params.nope }}\n", 7, 13, "unknown parameter `nope`");
}

/* The Mastra pack's hint is built from its `model` parameter. */
static void test_mastra_hint(void **state)
{
    (void)state;
    ag_rules_t *r = NULL;
    ag_diag_t d;
    ag_rules_set_t set = {.name = "model", .value = "gpt-4.1-mini"};
    ag_rules_src_t src = {.path = "rules/mastra.yaml", .sets = &set, .nsets = 1};
    if (ag_rules_load_srcs(&src, 1, NULL, 0, &r, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        fail();
    }
    ag_buf_reset(&buf);
    uint32_t n = 0;
    assert_int_equal(ag_rules_hint(r, &buf, &n), AG_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(buf.ptr, "model: openai('gpt-4.1-mini')"));
    assert_null(strstr(buf.ptr, "gpt-4.1-nano"));
    assert_null(strstr(buf.ptr, "${{"));
    ag_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_left_alone, setup, teardown),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test_setup_teardown(test_rules_hint, setup, teardown),
        cmocka_unit_test(test_rules_hint_errors),
        cmocka_unit_test_setup_teardown(test_mastra_hint, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

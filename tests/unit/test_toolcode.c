/* Unit tests for the rewrite of one tool call's input (toolcode.c) with small inline rule sets:
 * which calls and fields hold code, the kinds (whole, fragment, SEARCH/REPLACE, patch), minimal
 * re-encoding (escapes kept outside the changed bytes), reports, and the error codes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonscan.h"
#include "rules.h"
#include "toolcode.h"

#define MAX_REPORTS 16

typedef struct report {
    char field[64];
    char file[64];
    bool fragment;
    ag_result_t res; /* counts only: events are borrowed */
    char reason[64]; /* the first event's */
    uint32_t line;   /* ... and line */
} report_t;

typedef struct fx {
    ag_rules_t *rules;
    ag_engine_t *e;
    ag_tools_t tools;
    ag_buf_t out;
    bool changed;
    report_t rep[MAX_REPORTS];
    uint32_t nrep;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    ag_buf_init(&fx->out, 1u << 20);
    ag_tools_presets(&fx->tools);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ag_engine_free(fx->e);
    ag_rules_free(fx->rules);
    ag_tools_dispose(&fx->tools);
    ag_buf_dispose(&fx->out);
    free(fx);
    return 0;
}

static void use_rules(fx_t *fx, const char *yaml)
{
    ag_engine_free(fx->e);
    ag_rules_free(fx->rules);
    fx->rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_mem(ag_cstr(yaml), "t.yaml", &fx->rules, &d) != AG_OK)
        fail_msg("rules do not load: %u:%u: %s", d.line, d.col, d.msg);
    fx->e = ag_engine_new(fx->rules, NULL);
}

static void on_report(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    fx_t *fx = ud;
    assert_true(fx->nrep < MAX_REPORTS);
    assert_true(res->blocks > 0);
    report_t *r = &fx->rep[fx->nrep++];
    memset(r, 0, sizeof(*r));
    snprintf(r->field, sizeof(r->field), "%s", site->field);
    snprintf(r->file, sizeof(r->file), "%.*s", (int)site->file.len, site->file.ptr);
    r->fragment = site->fragment;
    r->res = *res;
    r->res.events = NULL;
    if (res->nevents) {
        snprintf(r->reason, sizeof(r->reason), "%s", res->events[0].reason);
        r->line = res->events[0].line;
    }
}

/* Rewrites input as a call of tool name; returns the code; fx->out holds the output. */
static int call(fx_t *fx, const char *name, int input, const char *file, const char *in)
{
    ag_tool_call_t c;
    memset(&c, 0, sizeof(c));
    c.name = ag_cstr(name);
    c.id = AG_STR_LIT("call_1");
    c.file = ag_cstr(file);
    c.input = input;
    ag_buf_reset(&fx->out);
    fx->nrep = 0;
    fx->changed = true;
    return ag_toolcode_rewrite(fx->e, &fx->tools, &c, ag_cstr(in), &fx->out, &fx->changed,
                               on_report, fx);
}

static void assert_out(fx_t *fx, const char *want)
{
    if (!ag_str_eqc(ag_buf_str(&fx->out), want))
        fail_msg("output differs:\n--- want\n%s\n--- got\n%.*s\n---", want, (int)fx->out.len,
                 fx->out.ptr);
}

/* AG_OK and the output; changed must say whether it differs. */
static void check(fx_t *fx, const char *name, int input, const char *file, const char *in,
                  const char *want)
{
    assert_int_equal(call(fx, name, input, file, in), AG_OK);
    assert_out(fx, want);
    assert_int_equal(fx->changed, strcmp(in, want) != 0);
    if (input == AG_TOOL_IN_ARGS) {
        size_t n = 0;
        assert_int_equal(ag_jscan_find(ag_buf_str(&fx->out), NULL, 0, NULL, 0, &n, NULL), AG_OK);
    }
}

static const char RENAME[] = "id: rename\n"
                             "language: ts\n"
                             "message: rename it\n"
                             "rule: {pattern: oldName}\n"
                             "fix: newName\n";

/* a fix that adds a line (re-indented like the matched line) */
static const char SPLIT[] = "id: split\n"
                            "language: ts\n"
                            "rule: {pattern: oldName}\n"
                            "fix: \"newName\\nsecondName\"\n";

static const char PIN[] = "id: pin\n"
                          "language: ts\n"
                          "rule: {pattern: \"new Agent($C)\"}\n"
                          "metadata:\n"
                          "  astgate:\n"
                          "    ensure: {target: $C, key: model, string: nano}\n";

/* ---- which calls ---- */

static void test_not_code(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    const char *in = "{\"file_path\":\"a.ts\",\"content\":\"oldName;\"}";
    assert_int_equal(call(fx, "Unknown", AG_TOOL_IN_ARGS, NULL, in), AG_ENOENT);
    assert_int_equal(fx->out.len, 0);
    assert_false(fx->changed);
    /* not code by extension, no file at all, no field */
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL,
                          "{\"file_path\":\"a.py\",\"content\":\"oldName;\"}"),
                     AG_ENOENT);
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL, "{\"content\":\"oldName;\"}"),
                     AG_ENOENT);
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL, "{\"file_path\":\"a.ts\"}"),
                     AG_ENOENT);
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL, "[1,2]"), AG_ENOENT);
    assert_int_equal(fx->out.len, 0);
    assert_int_equal(fx->nrep, 0);
    /* a tool without a free-text field given text */
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_TEXT, NULL, "oldName;"), AG_ENOENT);
    /* a patch that touches no code */
    assert_int_equal(call(fx, "apply_patch", AG_TOOL_IN_TEXT, NULL,
                          "*** Begin Patch\n*** Add File: a.py\n+oldName\n*** End Patch\n"),
                     AG_ENOENT);
    /* a preset turned off */
    ag_tool_t off;
    memset(&off, 0, sizeof(off));
    snprintf(off.name, sizeof(off.name), "Write");
    off.off = true;
    ag_tools_set(&fx->tools, &off);
    assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL, in), AG_ENOENT);
}

static void test_invalid_json(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    static const char *const bad[] = {
        "{\"file_path\":\"a.ts\",\"content\":\"oldName;",
        "{\"file_path\":\"a.ts\",\"content\":\"oldName;\"}}",
        "{\"file_path\":\"a.ts\",\"content\":\"old\\qName\"}",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(call(fx, "Write", AG_TOOL_IN_ARGS, NULL, bad[i]), AG_EINVAL);
        assert_int_equal(fx->out.len, 0);
        assert_int_equal(fx->nrep, 0);
    }
}

/* ---- whole files and fragments ---- */

static void test_whole_keeps_escapes(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    /* Python's separators and ASCII escapes, PHP's \/, Go's \u003c: only the changed bytes are
     * written anew */
    check(fx, "Write", AG_TOOL_IN_ARGS, NULL,
          "{\"file_path\": \"src\\/caf\\u00e9.ts\", \"content\": \"// \\u00e9 \\ud83d\\ude80 "
          "\\u003c\\/\\n\\toldName(\\\"x\\\");\\r\\n\", \"n\": 1.50}",
          "{\"file_path\": \"src\\/caf\\u00e9.ts\", \"content\": \"// \\u00e9 \\ud83d\\ude80 "
          "\\u003c\\/\\n\\tnewName(\\\"x\\\");\\r\\n\", \"n\": 1.50}");
    assert_int_equal(fx->nrep, 1);
    assert_string_equal(fx->rep[0].field, "content");
    assert_string_equal(fx->rep[0].file, "src/caf\xc3\xa9.ts");
    assert_false(fx->rep[0].fragment);
    assert_int_equal(fx->rep[0].res.rewrites, 1);
    assert_int_equal(fx->rep[0].line, 2);
    /* new text in an ASCII-escaped token is escaped the same way */
    use_rules(fx, "id: r\nlanguage: ts\nrule: {pattern: oldName}\nfix: caf\xc3\xa9\n");
    check(fx, "Write", AG_TOOL_IN_ARGS, NULL,
          "{\"file_path\":\"a.ts\",\"content\":\"// \\u00e9\\noldName;\"}",
          "{\"file_path\":\"a.ts\",\"content\":\"// \\u00e9\\ncaf\\u00e9;\"}");
}

static void test_unchanged_is_byte_for_byte(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    const char *in = " {\"file_path\" : \"a.ts\" , \"content\":\"other\\/thing;\\u0041\"}\n";
    check(fx, "Write", AG_TOOL_IN_ARGS, NULL, in, in);
    assert_int_equal(fx->nrep, 1); /* a rule looked at the code */
    assert_int_equal(fx->rep[0].res.nevents, 0);
}

static void test_fragments(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN);
    check(fx, "Edit", AG_TOOL_IN_ARGS, NULL,
          "{\"file_path\":\"a.ts\",\"old_string\":\"new Agent({ model: 'big' })\","
          "\"new_string\":\"new Agent({ model: 'big' })\"}",
          "{\"file_path\":\"a.ts\",\"old_string\":\"new Agent({ model: 'big' })\","
          "\"new_string\":\"new Agent({ model: 'nano' })\"}");
    assert_int_equal(fx->nrep, 1);
    assert_string_equal(fx->rep[0].field, "new_string");
    assert_true(fx->rep[0].fragment);
    /* a fragment that does not parse: a flag, nothing changes */
    const char *open = "{\"file_path\":\"a.ts\",\"old_string\":\"x\","
                       "\"new_string\":\"const a = new Agent({\\n  model: 'big',\\n\"}";
    check(fx, "Edit", AG_TOOL_IN_ARGS, NULL, open, open);
    assert_int_equal(fx->nrep, 1);
    assert_int_equal(fx->rep[0].res.flags, 1);
    assert_string_equal(fx->rep[0].reason, "fragment");
    /* MultiEdit: every edit's new_string, reported with its index */
    check(fx, "MultiEdit", AG_TOOL_IN_ARGS, NULL,
          "{\"file_path\":\"a.tsx\",\"edits\":[{\"new_string\":\"new Agent({ model: 'a' })\"},"
          "{\"old_string\":\"\",\"new_string\":\"new Agent({ model: 'b' })\"}]}",
          "{\"file_path\":\"a.tsx\",\"edits\":[{\"new_string\":\"new Agent({ model: 'nano' })\"},"
          "{\"old_string\":\"\",\"new_string\":\"new Agent({ model: 'nano' })\"}]}");
    assert_int_equal(fx->nrep, 2);
    assert_string_equal(fx->rep[0].field, "edits[0].new_string");
    assert_string_equal(fx->rep[1].field, "edits[1].new_string");
    /* the text editor: whichever of its fields the command uses */
    check(fx, "str_replace_based_edit_tool", AG_TOOL_IN_ARGS, NULL,
          "{\"command\":\"insert\",\"path\":\"a.ts\",\"insert_line\":2,"
          "\"insert_text\":\"new Agent({ model: 'a' });\\n\"}",
          "{\"command\":\"insert\",\"path\":\"a.ts\",\"insert_line\":2,"
          "\"insert_text\":\"new Agent({ model: 'nano' });\\n\"}");
    assert_string_equal(fx->rep[0].field, "insert_text");
}

static void test_markdown_file(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    check(fx, "Write", AG_TOOL_IN_ARGS, NULL,
          "{\"file_path\":\"README.MD\",\"content\":\"oldName\\n```ts\\noldName;\\n```\\n\"}",
          "{\"file_path\":\"README.MD\",\"content\":\"oldName\\n```ts\\nnewName;\\n```\\n\"}");
    assert_int_equal(fx->rep[0].res.blocks, 1);
}

/* ---- Cline's SEARCH/REPLACE blocks ---- */

static void test_search_replace(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    /* the SEARCH sides and markers never change; longer markers, CRLF, the older <<< >>> form */
    check(fx, "replace_in_file", AG_TOOL_IN_ARGS, NULL,
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\noldName(1);\\n=======\\noldName(2);\\n"
          "+++++++ REPLACE\\n\\n---------- SEARCH\\r\\noldName(3);\\r\\n==========\\r\\n"
          "oldName(4);\\r\\n++++++++++ REPLACE\\r\\n<<<<<<< SEARCH\\nx\\n=======\\noldName(5);\\n"
          ">>>>>>> REPLACE>\\n\"}",
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\noldName(1);\\n=======\\nnewName(2);\\n"
          "+++++++ REPLACE\\n\\n---------- SEARCH\\r\\noldName(3);\\r\\n==========\\r\\n"
          "newName(4);\\r\\n++++++++++ REPLACE\\r\\n<<<<<<< SEARCH\\nx\\n=======\\nnewName(5);\\n"
          ">>>>>>> REPLACE>\\n\"}");
    assert_int_equal(fx->nrep, 3);
    assert_string_equal(fx->rep[0].field, "diff");
    assert_true(fx->rep[0].fragment);
    assert_int_equal(fx->rep[0].line, 4); /* the line in the diff */
    assert_int_equal(fx->rep[1].line, 10);
    /* an empty SEARCH side: the REPLACE side is the whole file */
    check(
        fx, "replace_in_file", AG_TOOL_IN_ARGS, NULL,
        "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\n=======\\noldName;\\n+++++++ REPLACE\\n\"}",
        "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\n=======\\nnewName;\\n+++++++ "
        "REPLACE\\n\"}");
    assert_false(fx->rep[0].fragment);
    /* a new line in the REPLACE side keeps the marker on a line of its own */
    use_rules(fx, SPLIT);
    check(fx, "replace_in_file", AG_TOOL_IN_ARGS, NULL,
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\nx\\n=======\\n  oldName;\\n"
          "+++++++ REPLACE\"}",
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\nx\\n=======\\n  newName\\n  "
          "secondName;\\n+++++++ REPLACE\"}");
    /* no REPLACE marker: the rest is a fragment whose end we do not see */
    use_rules(fx, RENAME);
    check(fx, "replace_in_file", AG_TOOL_IN_ARGS, NULL,
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\n=======\\noldName;\\n\"}",
          "{\"path\":\"a.ts\",\"diff\":\"------- SEARCH\\n=======\\nnewName;\\n\"}");
    assert_true(fx->rep[0].fragment);
}

/* ---- patches ---- */

static void test_patch_envelope(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, SPLIT);
    const char *in = "*** Begin Patch\n"
                     "*** Add File: src/a.ts\n"
                     "+let a;\n"
                     "+  oldName;\n"
                     "+let b;\n"
                     "*** Update File: src/b.mjs\n"
                     "*** Move to: src/c.mjs\n"
                     "@@ function f() {\n"
                     " oldName(0);\n"
                     "-oldName(1);\n"
                     "+oldName(2);\n"
                     "+oldName(3);\n"
                     " x;\n"
                     "+oldName(4);\n"
                     "*** End of File\n"
                     "*** Update File: src/d.py\n"
                     "+oldName\n"
                     "*** Delete File: src/e.ts\n"
                     "*** End Patch\n";
    const char *want = "*** Begin Patch\n"
                       "*** Add File: src/a.ts\n"
                       "+let a;\n"
                       "+  newName\n"
                       "+  secondName;\n"
                       "+let b;\n"
                       "*** Update File: src/b.mjs\n"
                       "*** Move to: src/c.mjs\n"
                       "@@ function f() {\n"
                       " oldName(0);\n"
                       "-oldName(1);\n"
                       "+newName\n"
                       "+secondName(2);\n"
                       "+newName\n"
                       "+secondName(3);\n"
                       " x;\n"
                       "+newName\n"
                       "+secondName(4);\n"
                       "*** End of File\n"
                       "*** Update File: src/d.py\n"
                       "+oldName\n"
                       "*** Delete File: src/e.ts\n"
                       "*** End Patch\n";
    check(fx, "apply_patch", AG_TOOL_IN_TEXT, NULL, in, want);
    assert_int_equal(fx->nrep, 3);
    assert_string_equal(fx->rep[0].field, "input");
    assert_string_equal(fx->rep[0].file, "src/a.ts");
    assert_false(fx->rep[0].fragment);
    assert_string_equal(fx->rep[1].file, "src/b.mjs");
    assert_true(fx->rep[1].fragment);
    assert_int_equal(fx->rep[1].line, 11);
    assert_int_equal(fx->rep[2].line, 14);
    /* the same envelope in JSON arguments, with padded markers */
    use_rules(fx, RENAME);
    check(fx, "apply_patch", AG_TOOL_IN_ARGS, NULL,
          "{\"input\":\" *** Begin Patch\\n*** Add File: a.ts \\n+oldName;\\n  *** End Patch\"}",
          "{\"input\":\" *** Begin Patch\\n*** Add File: a.ts \\n+newName;\\n  *** End Patch\"}");
    assert_false(fx->rep[0].fragment);
    /* without an End Patch the last body may be cut: a fragment */
    check(fx, "mastra_workspace_apply_patch", AG_TOOL_IN_ARGS, NULL,
          "{\"patchText\":\"*** Begin Patch\\n*** Add File: a.ts\\n+oldName;\\n\"}",
          "{\"patchText\":\"*** Begin Patch\\n*** Add File: a.ts\\n+newName;\\n\"}");
    assert_true(fx->rep[0].fragment);
    /* + lines before the envelope are not the patch's */
    check(fx, "apply_patch", AG_TOOL_IN_TEXT, NULL,
          "+oldName;\n*** Begin Patch\n*** Add File: a.ts\n+oldName;\n*** End Patch\n+oldName;\n",
          "+oldName;\n*** Begin Patch\n*** Add File: a.ts\n+newName;\n*** End Patch\n+oldName;\n");
}

static void test_patch_operations(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    check(fx, "apply_patch", AG_TOOL_IN_PATCH_CREATE, "src/a.ts", "+let a;\n+oldName;",
          "+let a;\n+newName;");
    assert_string_equal(fx->rep[0].field, "diff");
    assert_string_equal(fx->rep[0].file, "src/a.ts");
    assert_false(fx->rep[0].fragment);
    check(fx, "apply_patch", AG_TOOL_IN_PATCH_UPDATE, "src/a.ts",
          "@@\n-oldName;\n+oldName(1);\n oldName;", "@@\n-oldName;\n+newName(1);\n oldName;");
    assert_true(fx->rep[0].fragment);
    assert_int_equal(call(fx, "apply_patch", AG_TOOL_IN_PATCH_CREATE, "a.txt", "+oldName;\n"),
                     AG_ENOENT);
    assert_int_equal(fx->out.len, 0);
}

/* ---- reports, tools from astgate.yaml, limits ---- */

static void test_block_is_reported(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, "id: no-eval\nlanguage: ts\nrule: {pattern: \"eval($X)\"}\n"
                  "metadata: {astgate: {action: block}}\n");
    const char *in = "{\"file_path\":\"a.ts\",\"content\":\"eval(x);\"}";
    check(fx, "Write", AG_TOOL_IN_ARGS, NULL, in, in);
    assert_int_equal(fx->nrep, 1);
    assert_int_equal(fx->rep[0].res.blocked, 1);
}

static void test_custom_tool(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    /* no file argument: the code is TypeScript; a value two paths name is rewritten once */
    ag_tool_t t;
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "run_ts");
    snprintf(t.field[0].path, sizeof(t.field[0].path), "code");
    snprintf(t.field[1].path, sizeof(t.field[1].path), "*");
    snprintf(t.field[2].path, sizeof(t.field[2].path), "%s", "");
    t.nfields = 3;
    ag_tools_set(&fx->tools, &t);
    check(fx, "run_ts", AG_TOOL_IN_ARGS, NULL, "{\"code\":\"oldName;\",\"n\":\"oldName\"}",
          "{\"code\":\"newName;\",\"n\":\"newName\"}");
    assert_int_equal(fx->nrep, 2);
    check(fx, "run_ts", AG_TOOL_IN_TEXT, NULL, "oldName;", "newName;");
    assert_string_equal(fx->rep[0].field, "input");
}

static void test_out_cap(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    ag_buf_t small;
    ag_buf_init(&small, 8);
    ag_tool_call_t c;
    memset(&c, 0, sizeof(c));
    c.name = AG_STR_LIT("Write");
    bool changed = true;
    assert_int_equal(ag_toolcode_rewrite(fx->e, &fx->tools, &c,
                                         AG_STR_LIT("{\"file_path\":\"a.ts\",\"content\":\"x\"}"),
                                         &small, &changed, NULL, NULL),
                     AG_ETOOBIG);
    assert_int_equal(small.len, 0);
    c.name = AG_STR_LIT("apply_patch");
    c.input = AG_TOOL_IN_PATCH_CREATE;
    c.file = AG_STR_LIT("a.ts");
    assert_int_equal(ag_toolcode_rewrite(fx->e, &fx->tools, &c, AG_STR_LIT("+oldName;\n"), &small,
                                         &changed, NULL, NULL),
                     AG_ETOOBIG);
    assert_int_equal(small.len, 0);
    ag_buf_dispose(&small);
}

static void test_many_edits(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME);
    ag_buf_t in, want, out;
    ag_buf_init(&in, 1u << 20);
    ag_buf_init(&want, 1u << 20);
    ag_buf_init(&out, 1u << 20);
    assert_int_equal(ag_buf_appendf(&in, "{\"file_path\":\"a.ts\",\"edits\":["), AG_OK);
    assert_int_equal(ag_buf_appendf(&want, "{\"file_path\":\"a.ts\",\"edits\":["), AG_OK);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(
            ag_buf_appendf(&in, "%s{\"new_string\":\"oldName(%d);\"}", i ? "," : "", i), AG_OK);
        assert_int_equal(
            ag_buf_appendf(&want, "%s{\"new_string\":\"newName(%d);\"}", i ? "," : "", i), AG_OK);
    }
    assert_int_equal(ag_buf_appendf(&in, "]}"), AG_OK);
    assert_int_equal(ag_buf_appendf(&want, "]}"), AG_OK);
    ag_tool_call_t c;
    memset(&c, 0, sizeof(c));
    c.name = AG_STR_LIT("MultiEdit");
    bool changed = false;
    assert_int_equal(
        ag_toolcode_rewrite(fx->e, &fx->tools, &c, ag_buf_str(&in), &out, &changed, NULL, NULL),
        AG_OK);
    assert_true(changed);
    assert_true(ag_str_eq(ag_buf_str(&out), ag_buf_str(&want)));
    ag_buf_dispose(&in);
    ag_buf_dispose(&want);
    ag_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_keeps_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_is_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_markdown_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_operations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_tool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_edits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

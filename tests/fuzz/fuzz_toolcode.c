/* libFuzzer target for the rewrite of one tool call's input (toolcode.c; run from the repository
 * root, or set ASTGATE_FUZZ_RULES; a block rule for eval($X) and a rename rule whose fix adds a
 * line are added to the rules). Byte 0 picks the tool (a preset, or an unknown name); byte 1: bits
 * 0-1 the input kind (args, text, patch-create, patch-update), bit 2 structured mode, bits 3-4
 * the escaping of the JSON that structured mode writes (non-ASCII as \uXXXX, '/' as \/), bits
 * 5-7 the structured shape. Raw mode: the rest is the input as it is. Structured mode: the rest
 * is code, put in a call of the chosen shape (Write, Edit, MultiEdit, replace_in_file, apply_patch
 * with an Add File and an Update File, a create_file diff), and the rewritten field must be exactly
 * what the engine makes of the code (ag_engine_rewrite_code; + lines re-prefixed).
 * Checks for every input: the result is AG_OK, AG_ENOENT or AG_EINVAL (out untouched unless
 * AG_OK); AG_OK and not changed: the output is the input byte for byte; AG_OK with arguments: the
 * output is valid JSON, and rewriting it again changes nothing when the first rewrite changed
 * nothing but well-formed code. FUZZ_DEBUG=1 prints the input and output. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "jsonscan.h"
#include "rules.h"
#include "toolcode.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_toolcode: check failed: %s (line %d)\n", #expr, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_MAX_INPUT (64u << 10)
#define BIG ((size_t)1 << 26)

static ag_rules_t *rules;
static ag_engine_t *engine;
static ag_tools_t tools;

static const char *const NAMES[] = {
    "Write",
    "Edit",
    "MultiEdit",
    "write_to_file",
    "replace_in_file",
    "str_replace_editor",
    "str_replace_based_edit_tool",
    "apply_patch",
    "mastra_workspace_write_file",
    "mastra_workspace_edit_file",
    "mastra_workspace_apply_patch",
    "workspace_write_file",
    "unknown_tool",
};
#define NNAMES (sizeof(NAMES) / sizeof(NAMES[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("ASTGATE_FUZZ_RULES");
    if (path == NULL)
        path = "rules/mastra.yaml";
    ag_buf_t text;
    ag_buf_init(&text, 1u << 24);
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    const char *more = "\n---\nid: no-eval\nlanguage: TypeScript\nmessage: no eval\n"
                       "rule:\n  pattern: eval($X)\nmetadata:\n  astgate:\n    action: block\n"
                       "---\nid: split\nlanguage: TypeScript\nrule:\n  pattern: oldName\n"
                       "fix: \"newName\\nsecondName\"\n";
    if (ag_read_file(path, &text) != AG_OK || ag_buf_append(&text, more, strlen(more)) != AG_OK ||
        ag_rules_load_mem(ag_buf_str(&text), path, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        fprintf(stderr, "fuzz_toolcode: run from the repository root or set ASTGATE_FUZZ_RULES\n");
        abort();
    }
    ag_buf_dispose(&text);
    engine = ag_engine_new(rules, NULL);
    ag_tools_presets(&tools);
    return 0;
}

static void put(ag_buf_t *b, const char *s)
{
    CHECK(ag_buf_append(b, s, strlen(s)) == AG_OK);
}

/* A JSON string of s: standard, or with non-ASCII as \uXXXX (Python) and '/' as \/ (PHP). */
static void put_json(ag_buf_t *b, ag_str_t s, unsigned style)
{
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
    CHECK(ag_jscan_escape(b, s, style) == AG_OK);
    CHECK(ag_buf_appendc(b, '"') == AG_OK);
}

/* raw bytes as text a JSON string can carry (invalid UTF-8 becomes U+FFFD) */
static void sanitize(ag_str_t raw, ag_buf_t *out)
{
    ag_buf_t j;
    ag_buf_init(&j, BIG);
    CHECK(ag_json_append_str(&j, raw) == AG_OK);
    ag_buf_reset(out);
    CHECK(ag_jscan_decode(ag_buf_str(&j), 0, j.len, out, NULL, 0, NULL) == AG_OK);
    ag_buf_dispose(&j);
}

/* '+' before every line of s */
static void plus_lines(ag_buf_t *b, ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (i == 0 || s.ptr[i - 1] == '\n')
            CHECK(ag_buf_appendc(b, '+') == AG_OK);
        CHECK(ag_buf_appendc(b, s.ptr[i]) == AG_OK);
    }
}

/* Whether a line of s could be read as a marker of the shapes below. */
static bool has_marker_line(ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (i > 0 && s.ptr[i - 1] != '\n')
            continue;
        size_t k = i;
        while (k < s.len && (s.ptr[k] == ' ' || s.ptr[k] == '\t'))
            k++;
        if (k < s.len && strchr("-=+<>*@", s.ptr[k]))
            return true;
    }
    return false;
}

static void on_report(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    uint32_t *n = ud;
    CHECK(site->field != NULL && res->blocks > 0);
    (*n)++;
}

static int run(const ag_tool_call_t *c, ag_str_t in, ag_buf_t *out, bool *changed)
{
    uint32_t reports = 0;
    size_t mark = out->len;
    int rc = ag_toolcode_rewrite(engine, &tools, c, in, out, changed, on_report, &reports);
    CHECK(rc == AG_OK || rc == AG_ENOENT || rc == AG_EINVAL);
    if (rc != AG_OK) {
        CHECK(out->len == mark);
        CHECK(!*changed);
        CHECK(rc != AG_EINVAL || c->input == AG_TOOL_IN_ARGS);
        return rc;
    }
    ag_str_t o = ag_str(ag_buf_str(out).ptr + mark, out->len - mark);
    if (!*changed)
        CHECK(ag_str_eq(o, in));
    else
        CHECK(!ag_str_eq(o, in));
    if (c->input == AG_TOOL_IN_ARGS) {
        size_t n = 0;
        CHECK(ag_jscan_find(o, NULL, 0, NULL, 0, &n, NULL) == AG_OK);
    }
    return rc;
}

/* The engine's own rewrite of code as a piece: what the field must hold afterwards. */
static void expect(ag_str_t code, const char *label, bool fragment, bool plus, bool keep_eol,
                   ag_buf_t *want)
{
    ag_buf_t rw;
    ag_buf_init(&rw, BIG);
    ag_result_t res;
    CHECK(ag_engine_rewrite_code(engine, code, ag_cstr(label), fragment, &rw, &res) == AG_OK);
    ag_buf_reset(want);
    if (plus)
        plus_lines(want, ag_buf_str(&rw));
    else
        CHECK(ag_buf_append(want, rw.ptr, rw.len) == AG_OK);
    if (keep_eol && code.len && code.ptr[code.len - 1] == '\n' &&
        (rw.len == 0 || rw.ptr[rw.len - 1] != '\n'))
        CHECK(ag_buf_appendc(want, '\n') == AG_OK);
    ag_buf_dispose(&rw);
}

/* The decoded string at path in json. */
static void field_of(ag_str_t json, const char *path, ag_buf_t *got)
{
    ag_jscan_path_t p;
    ag_jscan_match_t m;
    size_t n = 0;
    CHECK(ag_jscan_path_compile(&p, ag_cstr(path), AG_JSCAN_STRING) == AG_OK);
    CHECK(ag_jscan_find(json, &p, 1, &m, 1, &n, NULL) == AG_OK && n == 1);
    ag_buf_reset(got);
    CHECK(ag_jscan_decode(json, m.off, m.len, got, NULL, 0, NULL) == AG_OK);
}

static void structured(unsigned shape, unsigned style, ag_str_t raw)
{
    ag_buf_t code, in, out, want, got, tmp;
    ag_buf_init(&code, BIG);
    ag_buf_init(&in, BIG);
    ag_buf_init(&out, BIG);
    ag_buf_init(&want, BIG);
    ag_buf_init(&got, BIG);
    ag_buf_init(&tmp, BIG);
    sanitize(raw, &code);
    if (shape >= 3 && (code.len == 0 || code.ptr[code.len - 1] != '\n'))
        CHECK(ag_buf_appendc(&code, '\n') == AG_OK); /* lines of a diff end in line feeds */
    ag_str_t c = ag_buf_str(&code);
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    const char *path = "content", *label = "ts";
    bool fragment = false, plus = false, keep_eol = false, exact = true;
    ag_str_t prefix = ag_str(NULL, 0), suffix = ag_str(NULL, 0);
    switch (shape) {
    case 0:
        call.name = AG_STR_LIT("Write");
        put(&in, "{\"file_path\": \"src/a.tsx\", \"content\": ");
        put_json(&in, c, style);
        put(&in, "}");
        label = "tsx";
        break;
    case 1:
        call.name = AG_STR_LIT("Edit");
        path = "new_string";
        fragment = true;
        put(&in, "{\"file_path\":\"a.ts\",\"old_string\":\"x\",\"new_string\":");
        put_json(&in, c, style);
        put(&in, "}");
        break;
    case 2:
        call.name = AG_STR_LIT("MultiEdit");
        path = "edits[1].new_string";
        fragment = true;
        put(&in, "{\"file_path\":\"a.mjs\",\"edits\":[{\"new_string\":\"x\"},{\"new_string\":");
        put_json(&in, c, style);
        put(&in, "}]}");
        label = "mjs";
        break;
    case 3:
    case 4: {
        call.name = AG_STR_LIT("replace_in_file");
        path = "diff";
        fragment = shape == 3;
        keep_eol = true;
        exact = !has_marker_line(c);
        prefix = shape == 3 ? AG_STR_LIT("------- SEARCH\nx\n=======\n")
                            : AG_STR_LIT("------- SEARCH\n=======\n");
        suffix = AG_STR_LIT("+++++++ REPLACE\n");
        CHECK(ag_buf_append(&tmp, prefix.ptr, prefix.len) == AG_OK);
        CHECK(ag_buf_append(&tmp, c.ptr, c.len) == AG_OK);
        CHECK(ag_buf_append(&tmp, suffix.ptr, suffix.len) == AG_OK);
        put(&in, "{\"path\":\"a.ts\",\"diff\":");
        put_json(&in, ag_buf_str(&tmp), style);
        put(&in, "}");
        break;
    }
    case 5:
    case 6: {
        call.name = AG_STR_LIT("apply_patch");
        path = "input";
        plus = true;
        keep_eol = true;
        fragment = shape == 6;
        prefix = shape == 5 ? AG_STR_LIT("*** Begin Patch\n*** Add File: a.ts\n")
                            : AG_STR_LIT("*** Begin Patch\n*** Update File: a.ts\n@@\n-x\n");
        suffix = AG_STR_LIT("*** End Patch\n");
        CHECK(ag_buf_append(&tmp, prefix.ptr, prefix.len) == AG_OK);
        plus_lines(&tmp, c);
        CHECK(ag_buf_append(&tmp, suffix.ptr, suffix.len) == AG_OK);
        put(&in, "{\"input\":");
        put_json(&in, ag_buf_str(&tmp), style);
        put(&in, "}");
        break;
    }
    default:
        call.name = AG_STR_LIT("apply_patch");
        call.input = AG_TOOL_IN_PATCH_CREATE;
        call.file = AG_STR_LIT("a.cts");
        label = "cts";
        plus = true;
        plus_lines(&in, c);
        break;
    }
    bool changed = false;
    CHECK(run(&call, ag_buf_str(&in), &out, &changed) == AG_OK);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "IN:\n%.*s\nOUT:\n%.*s\n", (int)in.len, in.ptr, (int)out.len, out.ptr);
    expect(c, label, fragment, plus, keep_eol, &want);
    if (call.input == AG_TOOL_IN_ARGS) {
        field_of(ag_buf_str(&out), path, &got);
    } else {
        CHECK(ag_buf_append(&got, out.ptr, out.len) == AG_OK);
    }
    if (exact) {
        ag_buf_reset(&tmp);
        CHECK(ag_buf_append(&tmp, prefix.ptr, prefix.len) == AG_OK);
        CHECK(ag_buf_append(&tmp, want.ptr, want.len) == AG_OK);
        CHECK(ag_buf_append(&tmp, suffix.ptr, suffix.len) == AG_OK);
        CHECK(ag_str_eq(ag_buf_str(&got), ag_buf_str(&tmp)));
    }
    ag_buf_dispose(&code);
    ag_buf_dispose(&in);
    ag_buf_dispose(&out);
    ag_buf_dispose(&want);
    ag_buf_dispose(&got);
    ag_buf_dispose(&tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned mode = data[1];
    ag_str_t rest = ag_str((const char *)data + 2, size - 2);
    if (mode & 4) {
        unsigned style =
            ((mode >> 3) & 1 ? AG_JSCAN_ESC_ASCII : 0) | ((mode >> 4) & 1 ? AG_JSCAN_ESC_SLASH : 0);
        structured(mode >> 5, style, rest);
        return 0;
    }
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(NAMES[data[0] % NNAMES]);
    call.input = (int)(mode & 3);
    call.file = (mode >> 3) & 1 ? AG_STR_LIT("a.md") : AG_STR_LIT("a.ts");
    ag_buf_t out, again;
    ag_buf_init(&out, BIG);
    ag_buf_init(&again, BIG);
    bool changed = false;
    int rc = run(&call, rest, &out, &changed);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "IN:\n%.*s\nOUT (%d):\n%.*s\n", (int)rest.len, rest.ptr, rc, (int)out.len,
                out.ptr);
    if (rc == AG_OK && changed) {
        /* what a rewrite made is left alone by the next one */
        bool changed2 = false;
        CHECK(run(&call, ag_buf_str(&out), &again, &changed2) == AG_OK);
        CHECK(!changed2);
    }
    ag_buf_dispose(&out);
    ag_buf_dispose(&again);
    return 0;
}

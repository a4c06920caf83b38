/* Unit tests for `astgate eval` (eval.c): exact counts over small in-memory JSONL inputs in every
 * record format, bad lines with their numbers, replies without code counted apart, rewritten and
 * unfixable replies (flag, dropped fix, block), per-rule rows, the table text, the JSON summary
 * (parsed back with jansson), files and the command line's exit statuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <unistd.h>

#include "eval.h"
#include "rules.h"

/* two rules: a rewrite and a flag */
static const char TWO_RULES[] = "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n"
                                "---\n"
                                "id: no-eval\nlanguage: ts\nmessage: do not eval\n"
                                "rule: {pattern: \"eval($X)\"}\n";

/* a fix the parse check drops, next to a fix that applies */
static const char DROPPING_RULES[] =
    "id: breaks\nlanguage: ts\nrule: {pattern: badIdent}\nfix: \"foo(\"\n"
    "---\n"
    "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n";

static const char BLOCK_RULE[] = "id: no-eval\nlanguage: ts\nrule: {pattern: \"eval($X)\"}\n"
                                 "metadata: {astgate: {action: block}}\n";

typedef struct fx {
    ag_rules_t *rules;
    ag_eval_t *ev;
    ag_buf_t out;
    json_t *json;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    ag_buf_init(&fx->out, 1u << 20);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ag_eval_free(fx->ev);
    ag_rules_free(fx->rules);
    ag_buf_dispose(&fx->out);
    json_decref(fx->json);
    free(fx);
    return 0;
}

static void use_rules(fx_t *fx, const char *yaml)
{
    ag_eval_free(fx->ev);
    fx->ev = NULL;
    ag_rules_free(fx->rules);
    fx->rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_mem(ag_cstr(yaml), "t.yaml", &fx->rules, &d) != AG_OK)
        fail_msg("rules do not load: %u:%u: %s", d.line, d.col, d.msg);
    fx->ev = ag_eval_new(fx->rules, NULL);
    assert_non_null(fx->ev);
}

static const ag_eval_stats_t *run(fx_t *fx, const char *jsonl)
{
    ag_eval_text(fx->ev, ag_cstr(jsonl));
    return ag_eval_stats(fx->ev);
}

static void assert_counts(const ag_eval_counts_t *c, uint64_t raw_ok, uint64_t corrected_ok,
                          uint64_t rewritten, uint64_t unfixable)
{
    assert_int_equal(c->raw_ok, raw_ok);
    assert_int_equal(c->corrected_ok, corrected_ok);
    assert_int_equal(c->rewritten, rewritten);
    assert_int_equal(c->unfixable, unfixable);
}

static uint32_t rule_of(const ag_eval_stats_t *st, const char *id)
{
    for (uint32_t i = 0; i < st->nrules; i++)
        if (strcmp(st->rule_ids[i], id) == 0)
            return i;
    fail_msg("no rule %s in the stats", id);
    return 0;
}

static const char *table(fx_t *fx, const ag_eval_info_t *info)
{
    ag_buf_reset(&fx->out);
    assert_int_equal(ag_eval_format_table(fx->ev, info, &fx->out), AG_OK);
    return fx->out.ptr;
}

static json_t *summary(fx_t *fx, const ag_eval_info_t *info)
{
    ag_buf_reset(&fx->out);
    assert_int_equal(ag_eval_format_json(fx->ev, info, &fx->out), AG_OK);
    json_decref(fx->json);
    json_error_t err;
    fx->json = json_loadb(fx->out.ptr, fx->out.len, 0, &err);
    if (fx->json == NULL)
        fail_msg("the summary is not JSON (%d:%d: %s):\n%s", err.line, err.column, err.text,
                 fx->out.ptr);
    return fx->json;
}

static json_int_t jint(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static double jnum(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        fail_msg("%s is not a number", key);
    return json_number_value(v);
}

static void assert_has_line(const char *text, const char *line)
{
    if (strstr(text, line) == NULL)
        fail_msg("the table has no line containing \"%s\":\n%s", line, text);
}

/* ---- input formats ---- */

static void test_fine_tuning_record(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* two assistant messages (one with content parts), a user message that must not count */
    const ag_eval_stats_t *st = run(
        fx, "{\"messages\": [{\"role\": \"system\", \"content\": \"```ts\\noldName;\\n```\"},"
            " {\"role\": \"user\", \"content\": \"```ts\\noldName;\\n```\"},"
            " {\"role\": \"assistant\", \"content\": \"```ts\\noldName;\\n```\"},"
            " {\"role\": \"user\", \"content\": \"again\"},"
            " {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"```ts\\n\"},"
            " {\"type\": \"summary_text\", \"text\": \"eval(x);\\n\"},"
            " {\"type\": \"text\", \"text\": \"newName;\\n```\"}]}]}\n");
    assert_int_equal(st->lines, 1);
    assert_int_equal(st->used, 1);
    assert_int_equal(st->bad, 0);
    assert_int_equal(st->replies, 2);
    assert_int_equal(st->with_code, 2);
    assert_counts(&st->all, 1, 2, 1, 0);
}

static void test_chat_completion_object(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* n = 3: one to rewrite, one compliant, one tool call without content (not a reply) */
    const ag_eval_stats_t *st =
        run(fx, "{\"id\": \"chatcmpl-1\", \"object\": \"chat.completion\", \"choices\": ["
                "{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": "
                "\"```ts\\noldName;\\n```\"}},"
                "{\"index\": 1, \"message\": {\"role\": \"assistant\", \"content\": "
                "\"```ts\\nok();\\n```\"}},"
                "{\"index\": 2, \"message\": {\"role\": \"assistant\", \"content\": null, "
                "\"tool_calls\": []}}]}\n");
    assert_int_equal(st->used, 1);
    assert_int_equal(st->replies, 2);
    assert_int_equal(st->with_code, 2);
    assert_counts(&st->all, 1, 2, 1, 0);
}

static void test_responses_object(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* the output_text parts of every message item form one reply; reasoning items, refusals and
     * input_text parts are not part of it */
    const ag_eval_stats_t *st =
        run(fx, "{\"object\": \"response\", \"output\": ["
                "{\"type\": \"reasoning\", \"summary\": [{\"type\": \"summary_text\", \"text\": "
                "\"eval(x)\"}]},"
                "{\"type\": \"message\", \"role\": \"assistant\", \"content\": ["
                "{\"type\": \"output_text\", \"text\": \"Here:\\n\\n```ts\\n\"},"
                "{\"type\": \"refusal\", \"refusal\": \"eval(x)\"}]},"
                "{\"type\": \"message\", \"role\": \"assistant\", \"content\": ["
                "{\"type\": \"output_text\", \"text\": \"oldName;\\n```\\n\"}]}]}\n");
    assert_int_equal(st->used, 1);
    assert_int_equal(st->replies, 1);
    assert_int_equal(st->with_code, 1);
    assert_counts(&st->all, 0, 1, 1, 0);
    assert_counts(&st->rule[rule_of(st, "no-eval")], 1, 1, 0, 0);
}

static void test_completion_and_batch_records(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"```ts\\noldName;\\n```\"}\n"
                "{\"custom_id\": \"r1\", \"response\": {\"status_code\": 200, \"body\": "
                "{\"choices\": [{\"message\": {\"content\": \"```ts\\nok();\\n```\"}}]}}}\n"
                "{\"choices\": [{\"text\": \"```ts\\noldName;\\n```\"}]}\n");
    assert_int_equal(st->used, 3);
    assert_int_equal(st->replies, 3);
    assert_counts(&st->all, 1, 3, 2, 0);
}

/* ---- tool calls ---- */

/* JSON text of a flat object of string members: k1, v1, k2, v2, ..., NULL. */
static char *args(const char *k, ...)
{
    json_t *o = json_object();
    va_list ap;
    va_start(ap, k);
    for (; k; k = va_arg(ap, const char *))
        json_object_set_new(o, k, json_string(va_arg(ap, const char *)));
    va_end(ap);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* A Chat tool call {id, type: function, function: {name, arguments}}; takes text. */
static json_t *fn_call(const char *id, const char *name, char *text)
{
    json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name",
                          name, "arguments", text);
    free(text);
    return c;
}

/* The record as one JSONL line, judged; takes rec. */
static const ag_eval_stats_t *run_record(fx_t *fx, json_t *rec)
{
    assert_non_null(rec);
    char *line = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    ag_eval_text(fx->ev, ag_cstr(line));
    free(line);
    return ag_eval_stats(fx->ev);
}

static void assert_replies(const ag_eval_stats_t *st, uint64_t replies, uint64_t calls,
                           uint64_t no_code, uint64_t with_code)
{
    if (st->replies != replies || st->calls != calls || st->no_code != no_code ||
        st->with_code != with_code)
        fail_msg("replies %" PRIu64 ", calls %" PRIu64 ", no code %" PRIu64 ", with code %" PRIu64
                 "; want %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
                 " (ag_toolcode_rewrite still a stub?)",
                 st->replies, st->calls, st->no_code, st->with_code, replies, calls, no_code,
                 with_code);
}

/* Chat: function calls and a custom call next to the text; tools without code are not replies */
static void test_tool_calls_chat(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    json_t *calls = json_array();
    json_array_append_new(
        calls, fn_call("call_1", "Write",
                       args("file_path", "src/a.ts", "content", "const a = oldName;\n", NULL)));
    json_array_append_new(calls,
                          fn_call("call_2", "Write",
                                  args("file_path", "notes.py", "content", "oldName = 1\n", NULL)));
    json_array_append_new(calls, fn_call("call_3", "get_weather", args("city", "Paris", NULL)));
    json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", "call_4", "type",
                                           "custom", "custom", "name", "apply_patch", "input",
                                           "*** Begin Patch\n*** Add File: src/b.ts\n+eval(x);\n"
                                           "*** End Patch\n"));
    json_t *edit = json_array();
    json_array_append_new(edit, fn_call("call_5", "Edit",
                                        args("file_path", "src/c.ts", "old_string", "x",
                                             "new_string", "ok();", NULL)));
    const ag_eval_stats_t *st = run_record(
        fx, json_pack("{s:s,s:[{s:i,s:{s:s,s:s,s:o}},{s:i,s:{s:s,s:n,s:o}}]}", "object",
                      "chat.completion", "choices", "index", 0, "message", "role", "assistant",
                      "content", "I'll write the files.", "tool_calls", calls, "index", 1,
                      "message", "role", "assistant", "content", "tool_calls", edit));
    assert_int_equal(st->used, 1);
    assert_int_equal(st->bad, 0);
    /* the text (no code), Write src/a.ts, apply_patch, Edit */
    assert_replies(st, 4, 3, 1, 3);
    assert_counts(&st->all, 1, 2, 1, 1);
    assert_int_equal(st->all.flagged, 1);
    assert_counts(&st->rule[rule_of(st, "rename")], 2, 3, 1, 0);
    assert_counts(&st->rule[rule_of(st, "no-eval")], 2, 2, 0, 1);
    assert_int_equal(st->unfixable_lines[0], 1);
    assert_has_line(table(fx, NULL), "  tool calls                   3   of the replies: calls to "
                                     "tools that carry code\n");
    assert_int_equal(jint(summary(fx, NULL), "tool_calls"), 3);
}

/* Fine-tuning records: an assistant message's tool_calls and legacy function_call (arguments
 * written as an object too); fragments that do not parse on their own are flags */
static void test_tool_calls_fine_tuning(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    json_t *multi = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}]}", "file_path", "src/m.ts", "edits",
                              "old_string", "a", "new_string", "oldName();", "old_string", "b",
                              "new_string", "if (x) {\n  oldName();");
    char *multi_text = json_dumps(multi, JSON_COMPACT);
    json_decref(multi);
    json_t *rec = json_pack(
        "{s:[{s:s,s:s},{s:s,s:n,s:[o]},{s:s,s:s,s:s},{s:s,s:n,s:[o]},{s:s,s:n,s:{s:s,s:{s:s,"
        "s:s}}},{s:s,s:s}]}",
        "messages", "role", "user", "content", "Fix it.", /* */
        "role", "assistant", "content", "tool_calls",
        fn_call("c1", "read_file", args("path", "src/m.ts", NULL)),    /* no code: one reply */
        "role", "tool", "tool_call_id", "c1", "content", "oldName();", /* not a reply */
        "role", "assistant", "content", "tool_calls",
        fn_call("c2", "MultiEdit", multi_text), /* one rewrite, one fragment flagged */
        "role", "assistant", "content", "function_call", "name", "write_to_file", "arguments",
        "path", "src/b.tsx", "content", "export const B = () => <div>{oldName}</div>;\n", "role",
        "assistant", "content", "Done.");
    const ag_eval_stats_t *st = run_record(fx, rec);
    assert_int_equal(st->used, 1);
    assert_replies(st, 4, 2, 2, 2);
    assert_counts(&st->all, 0, 1, 2, 1);
    assert_int_equal(st->all.flagged, 1);
}

/* Responses: function_call, custom_tool_call and apply_patch_call items, each a reply of its own
 * next to the output text */
static void test_tool_calls_responses(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    char *write = args("file_path", "src/a.ts", "content", "ok();\n", NULL);
    json_t *rec = json_pack(
        "{s:s,s:[{s:s,s:s,s:[{s:s,s:s}]},{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s},"
        "{s:s,s:s,s:s,s:{s:s,s:s,s:s}},{s:s,s:s,s:s,s:{s:s,s:s,s:s}},"
        "{s:s,s:s,s:s,s:{s:s,s:s}},{s:s,s:s,s:s,s:s}]}",
        "object", "response", "output",
        /* the text: one reply, no code */
        "type", "message", "role", "assistant", "content", "type", "output_text", "text", "Here.",
        /* compliant as written */
        "type", "function_call", "call_id", "c1", "name", "Write", "arguments", write,
        /* an Update hunk: its + line is rewritten */
        "type", "custom_tool_call", "call_id", "c2", "name", "apply_patch", "input",
        "*** Begin Patch\n*** Update File: src/a.ts\n@@\n-old();\n+oldName();\n*** End Patch\n",
        /* the native apply_patch: a new file, and an update the flag rule catches */
        "type", "apply_patch_call", "call_id", "c3", "status", "completed", "operation", "type",
        "create_file", "path", "src/n.ts", "diff", "+const n = oldName;\n", /* */
        "type", "apply_patch_call", "call_id", "c4", "status", "completed", "operation", "type",
        "update_file", "path", "src/u.ts", "diff", "@@ function f() {\n-  a();\n+  eval(y);\n",
        /* no code */
        "type", "apply_patch_call", "call_id", "c5", "status", "completed", "operation", "type",
        "delete_file", "path", "src/old.ts", /* */
        "type", "function_call", "call_id", "c6", "name", "shell", "arguments", "{\"cmd\":\"ls\"}");
    free(write);
    const ag_eval_stats_t *st = run_record(fx, rec);
    assert_int_equal(st->used, 1);
    assert_replies(st, 5, 4, 1, 4);
    assert_counts(&st->all, 1, 3, 2, 1);
    assert_int_equal(st->all.flagged, 1);
}

/* Arguments that are not JSON: a reply nobody judged (the proxy passes them through) */
static void test_tool_call_not_json(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr("Write");
    call.input = AG_TOOL_IN_ARGS;
    assert_int_equal(
        ag_eval_call(fx->ev, &call, ag_cstr("{\"file_path\": \"a.ts\", \"content\": \"oldN"), 1),
        AG_OK);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->replies, 1);
    assert_int_equal(st->calls, 1);
    assert_int_equal(st->unjudged, 1);
    assert_int_equal(st->with_code, 0);
    /* a tool that carries no code is not a reply at all */
    call.name = ag_cstr("get_weather");
    assert_int_equal(ag_eval_call(fx->ev, &call, ag_cstr("{\"city\": \"Paris\"}"), 2), AG_ENOENT);
    assert_int_equal(st->replies, 1);
}

/* A message whose only output is calls that carry no code: one reply without code, not a bad
 * line */
static void test_calls_without_code(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    json_t *calls = json_array();
    json_array_append_new(calls, fn_call("c1", "get_weather", args("city", "Paris", NULL)));
    json_array_append_new(calls, fn_call("c2", "get_time", args("tz", "UTC", NULL)));
    const ag_eval_stats_t *st =
        run_record(fx, json_pack("{s:[{s:{s:s,s:n,s:o}}]}", "choices", "message", "role",
                                 "assistant", "content", "tool_calls", calls));
    assert_int_equal(st->used, 1);
    assert_int_equal(st->bad, 0);
    assert_replies(st, 1, 0, 1, 0);
    st = run_record(fx, json_pack("{s:[{s:s,s:s,s:s,s:s}]}", "output", "type", "function_call",
                                  "call_id", "c3", "name", "get_weather", "arguments", "{}"));
    assert_int_equal(st->used, 2);
    assert_replies(st, 2, 0, 2, 0);
}

/* astgate.yaml's tools (ag_eval_set_tools): a preset turned off, a tool of one's own */
static void test_tools_from_config(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    ag_tools_t tools;
    memset(&tools, 0, sizeof(tools));
    ag_tools_presets(&tools);
    ag_tool_t t;
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "Write");
    t.off = true;
    ag_tools_set(&tools, &t);
    snprintf(t.name, sizeof(t.name), "my_write");
    snprintf(t.file, sizeof(t.file), "path");
    snprintf(t.field[0].path, sizeof(t.field[0].path), "body");
    t.field[0].kind = AG_TOOL_WHOLE;
    t.nfields = 1;
    t.off = false;
    ag_tools_set(&tools, &t);
    ag_eval_set_tools(fx->ev, &tools);
    ag_tools_dispose(&tools); /* the evaluator keeps a copy */
    json_t *calls = json_array();
    json_array_append_new(
        calls, fn_call("c1", "Write", args("file_path", "a.ts", "content", "oldName;\n", NULL)));
    json_array_append_new(
        calls, fn_call("c2", "my_write", args("path", "b.ts", "body", "oldName;\n", NULL)));
    const ag_eval_stats_t *st =
        run_record(fx, json_pack("{s:[{s:{s:s,s:n,s:o}}]}", "choices", "message", "role",
                                 "assistant", "content", "tool_calls", calls));
    assert_replies(st, 1, 1, 0, 1);
    assert_counts(&st->all, 0, 1, 1, 0);
}

/* ---- bad lines ---- */

static void test_bad_lines_numbered(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"```ts\\nok();\\n```\"}\n"                  /* 1 */
                "not json\n"                                                   /* 2 */
                "\n"                                                           /* 3 blank */
                "[1, 2]\n"                                                     /* 4 */
                "{\"prompt\": \"x\"}\r\n"                                      /* 5 */
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n" /* 6 */
                "   \t\r\n"                                                    /* 7 blank */
                "{\"completion\": 3}\n"                                        /* 8 */
                "{\"choices\": [{\"message\": {\"content\": \"```ts\\n");      /* 9, cut off */
    assert_int_equal(st->lines, 9);
    assert_int_equal(st->blank, 2);
    assert_int_equal(st->used, 1);
    assert_int_equal(st->bad, 6);
    assert_int_equal(st->nbad_list, 6);
    const uint64_t want[] = {2, 4, 5, 6, 8, 9};
    for (int i = 0; i < 6; i++)
        assert_int_equal(st->bad_list[i].line, want[i]);
    assert_non_null(strstr(st->bad_list[0].msg, "invalid JSON"));
    assert_string_equal(st->bad_list[1].msg, "not a JSON object");
    assert_non_null(strstr(st->bad_list[2].msg, "not a known record"));
    assert_string_equal(st->bad_list[3].msg,
                        "no assistant message with text content or tool calls");
    assert_string_equal(st->bad_list[4].msg, "\"completion\" is not a string");
    assert_non_null(strstr(st->bad_list[5].msg, "invalid JSON"));
    assert_int_equal(st->replies, 1);
    /* the table names them */
    assert_has_line(table(fx, NULL),
                    "lines 9: 1 used, 2 blank, 6 bad (skipped: lines 2, 4, 5, 6, 8, 9)");
}

static void test_bad_line_cap(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    for (uint64_t i = 1; i <= AG_EVAL_MAX_BAD + 5; i++)
        assert_int_equal(ag_eval_line(fx->ev, ag_cstr("nope"), i), AG_EINVAL);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->bad, AG_EVAL_MAX_BAD + 5);
    assert_int_equal(st->nbad_list, AG_EVAL_MAX_BAD);
    assert_int_equal(st->bad_list[AG_EVAL_MAX_BAD - 1].line, AG_EVAL_MAX_BAD);
}

/* ---- what is counted ---- */

static void test_no_code_counted_apart(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* prose, prose that mentions oldName, a python block: no block any rule looks at */
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"Just prose.\"}\n"
                "{\"completion\": \"Rename oldName to something better.\"}\n"
                "{\"completion\": \"```python\\noldName = 1\\n```\"}\n"
                "{\"completion\": \"```ts\\nok();\\n```\"}\n");
    assert_int_equal(st->replies, 4);
    assert_int_equal(st->no_code, 3);
    assert_int_equal(st->with_code, 1);
    assert_counts(&st->all, 1, 1, 0, 0);
    const char *t = table(fx, NULL);
    assert_has_line(t, "  replies                      4   1 with code, 3 without code (not "
                       "counted in the accuracy)\n");
    assert_has_line(t, "  raw accuracy            100.0%   1 of 1 compliant as written\n");
    /* only replies without code: no accuracy at all */
    use_rules(fx, TWO_RULES);
    st = run(fx, "{\"completion\": \"Just prose.\"}\n");
    assert_int_equal(st->no_code, 1);
    assert_int_equal(st->with_code, 0);
    assert_counts(&st->all, 0, 0, 0, 0);
    t = table(fx, NULL);
    assert_has_line(t, "  raw accuracy               n/a   0 of 0 compliant as written\n");
    assert_has_line(t, "  difference                 n/a\n");
    json_t *j = summary(fx, NULL);
    assert_true(json_is_null(json_object_get(j, "raw_accuracy_pct")));
    assert_true(json_is_null(json_object_get(j, "difference_pp")));
}

static void test_bare_code_counts_as_code(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st = run(fx, "{\"completion\": \"const x = oldName;\\n\"}\n");
    assert_int_equal(st->with_code, 1);
    assert_counts(&st->all, 0, 1, 1, 0);
    /* without bare mode the same reply has no code */
    ag_eval_free(fx->ev);
    ag_engine_opts_t o;
    memset(&o, 0, sizeof(o));
    fx->ev = ag_eval_new(fx->rules, &o);
    st = run(fx, "{\"completion\": \"const x = oldName;\\n\"}\n");
    assert_int_equal(st->no_code, 1);
    assert_int_equal(st->with_code, 0);
}

static void test_rewritten_reply(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    assert_int_equal(
        ag_eval_reply(fx->ev, ag_cstr("```ts\nconst a = oldName + oldName;\n```\n"), 7), AG_OK);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->replies, 1);
    assert_counts(&st->all, 0, 1, 1, 0);
    assert_counts(&st->rule[rule_of(st, "rename")], 0, 1, 1, 0);
    assert_counts(&st->rule[rule_of(st, "no-eval")], 1, 1, 0, 0);
    assert_int_equal(st->nunfixable_lines, 0);
}

static void test_unfixable_flag(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st = run(fx, "{\"completion\": \"```ts\\nok();\\n```\"}\n"
                                        "{\"completion\": \"```ts\\neval(x);\\n```\"}\n");
    assert_int_equal(st->with_code, 2);
    assert_counts(&st->all, 1, 1, 0, 1);
    assert_counts(&st->rule[rule_of(st, "no-eval")], 1, 1, 0, 1);
    assert_counts(&st->rule[rule_of(st, "rename")], 2, 2, 0, 0);
    assert_int_equal(st->nunfixable_lines, 1);
    assert_int_equal(st->unfixable_lines[0], 2);
}

/* A flag is counted as flagged, and as unfixable before and after. */
static void test_flagged_counted(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st = run(fx, "{\"completion\": \"```ts\\neval(x);\\n```\"}\n"
                                        "{\"completion\": \"```ts\\noldName();\\n```\"}\n");
    assert_int_equal(st->all.flagged, 1);
    assert_int_equal(st->rule[rule_of(st, "no-eval")].flagged, 1);
    assert_int_equal(st->rule[rule_of(st, "rename")].flagged, 0);
    assert_int_equal(st->all.corrected_ok, 1);
}

/* Code too broken to judge is reported apart: not with code, never compliant. */
static void test_unjudged_apart(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"```ts\\noldName(]]] ))) }}} ;; ) ] } oldName(((\\n```\"}\n"
                "{\"completion\": \"```ts\\nok();\\n```\"}\n");
    assert_int_equal(st->replies, 2);
    assert_int_equal(st->unjudged, 1);
    assert_int_equal(st->with_code, 1);
    assert_int_equal(st->all.raw_ok, 1);
    assert_int_equal(st->all.corrected_ok, 1);
    const char *t = table(fx, NULL);
    assert_has_line(t, "  not judged                   1   code too broken to judge");
}

static void test_unfixable_dropped_fix(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, DROPPING_RULES);
    /* the rename applies, the other fix would break the parse and is dropped */
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"```ts\\nbadIdent;\\noldName;\\n```\"}\n");
    assert_int_equal(st->with_code, 1);
    assert_counts(&st->all, 0, 0, 1, 1);
    assert_counts(&st->rule[rule_of(st, "breaks")], 0, 0, 0, 1);
    assert_counts(&st->rule[rule_of(st, "rename")], 0, 1, 1, 0);
}

static void test_block_is_never_corrected(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, BLOCK_RULE);
    const ag_eval_stats_t *st = run(fx, "{\"completion\": \"```ts\\neval(a);\\n```\"}\n");
    assert_counts(&st->all, 0, 0, 0, 1);
    assert_counts(&st->rule[0], 0, 0, 0, 1);
    /* another rule's rewrite removes what was blocked: the second pass finds nothing, but the
     * proxy would have blocked the reply, so it is not corrected compliant */
    use_rules(fx, "id: no-old-call\nlanguage: ts\nrule: {pattern: oldName()}\n"
                  "metadata: {astgate: {action: block}}\n"
                  "---\n"
                  "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n");
    st = run(fx, "{\"completion\": \"```ts\\noldName();\\n```\"}\n");
    assert_counts(&st->all, 0, 0, 1, 1);
    assert_counts(&st->rule[rule_of(st, "no-old-call")], 0, 0, 0, 1);
    assert_counts(&st->rule[rule_of(st, "rename")], 0, 1, 1, 0);
}

static void test_per_rule_rows(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st =
        run(fx, "{\"completion\": \"```ts\\noldName;\\n```\"}\n"            /* rename only */
                "{\"completion\": \"```ts\\noldName;\\neval(x);\\n```\"}\n" /* both */
                "{\"completion\": \"```ts\\neval(y);\\n```\"}\n"            /* flag only */
                "{\"completion\": \"```ts\\nfine();\\n```\"}\n"             /* neither */
                "{\"completion\": \"no code\"}\n");
    assert_int_equal(st->nrules, 2);
    assert_string_equal(st->rule_ids[0], "rename");
    assert_string_equal(st->rule_ids[1], "no-eval");
    assert_int_equal(st->with_code, 4);
    assert_int_equal(st->no_code, 1);
    assert_counts(&st->all, 1, 2, 2, 2);
    assert_counts(&st->rule[0], 2, 4, 2, 0);
    assert_counts(&st->rule[1], 2, 2, 0, 2);
    assert_int_equal(st->nunfixable_lines, 2);
    assert_int_equal(st->unfixable_lines[0], 2);
    assert_int_equal(st->unfixable_lines[1], 3);

    const char *rules[] = {"a.yaml", "b.yaml"};
    ag_eval_info_t info;
    memset(&info, 0, sizeof(info));
    info.source = "data.jsonl";
    info.rule_files = rules;
    info.nrule_files = 2;
    const char *t = table(fx, &info);
    assert_has_line(t, "astgate eval: data.jsonl\nrules: a.yaml, b.yaml (2 rules)\n\n");
    assert_has_line(t, "  replies                      5   4 with code, 1 without code (not "
                       "counted in the accuracy)\n");
    assert_has_line(t, "  raw accuracy             25.0%   1 of 4 compliant as written\n");
    assert_has_line(t, "  corrected accuracy       50.0%   2 of 4 compliant after the rewrite\n");
    assert_has_line(t, "  difference            +25.0 pp\n");
    assert_has_line(t, "  rewritten                    2   replies the rewrite changed\n");
    assert_has_line(t, "  unfixable                    2   still not compliant after the rewrite\n"
                       "                                   lines 2, 3\n");
    assert_has_line(t, "  flagged                      2   not fixable here: the audit lines say "
                       "why (in unfixable)\n");
    assert_has_line(t, "  rule         raw   corrected   difference   rewritten   unfixable   "
                       "flagged\n");
    assert_has_line(t,
                    "  rename     50.0%      100.0%     +50.0 pp           2           0         "
                    "0\n");
    assert_has_line(t,
                    "  no-eval    50.0%       50.0%      +0.0 pp           0           2         "
                    "2\n");
    assert_has_line(t, "  lines 5: 5 used, 0 bad\n");
    assert_null(strstr(t, "tool calls")); /* no line for them without any */

    json_t *j = summary(fx, &info);
    assert_int_equal(jint(j, "version"), 1);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "offline");
    const json_t *input = json_object_get(j, "input");
    assert_string_equal(json_string_value(json_object_get(input, "file")), "data.jsonl");
    assert_int_equal(jint(input, "lines"), 5);
    assert_int_equal(jint(input, "used"), 5);
    assert_int_equal(jint(input, "bad"), 0);
    assert_int_equal(json_array_size(json_object_get(j, "rule_files")), 2);
    assert_int_equal(jint(j, "replies"), 5);
    assert_int_equal(jint(j, "with_code"), 4);
    assert_int_equal(jint(j, "no_code"), 1);
    assert_int_equal(jint(j, "raw_compliant"), 1);
    assert_int_equal(jint(j, "corrected_compliant"), 2);
    assert_int_equal(jint(j, "rewritten"), 2);
    assert_int_equal(jint(j, "unfixable"), 2);
    assert_int_equal(jint(j, "flagged"), 2);
    assert_int_equal(jint(j, "unjudged"), 0);
    assert_int_equal(jint(j, "tool_calls"), 0);
    assert_float_equal(jnum(j, "raw_accuracy_pct"), 25.0, 1e-9);
    assert_float_equal(jnum(j, "corrected_accuracy_pct"), 50.0, 1e-9);
    assert_float_equal(jnum(j, "difference_pp"), 25.0, 1e-9);
    const json_t *ul = json_object_get(j, "unfixable_lines");
    assert_int_equal(json_array_size(ul), 2);
    assert_int_equal(json_integer_value(json_array_get(ul, 1)), 3);
    const json_t *rows = json_object_get(j, "rules");
    assert_int_equal(json_array_size(rows), 2);
    const json_t *r1 = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(r1, "id")), "no-eval");
    assert_int_equal(jint(r1, "raw_compliant"), 2);
    assert_int_equal(jint(r1, "corrected_compliant"), 2);
    assert_int_equal(jint(r1, "rewritten"), 0);
    assert_int_equal(jint(r1, "unfixable"), 2);
    assert_int_equal(jint(r1, "flagged"), 2);
    assert_float_equal(jnum(r1, "difference_pp"), 0.0, 1e-9);
    assert_float_equal(jnum(json_array_get(rows, 0), "corrected_accuracy_pct"), 100.0, 1e-9);
    assert_int_equal(json_array_size(json_object_get(j, "bad_lines")), 0);
    assert_null(json_object_get(j, "live"));
}

static void test_json_bad_lines_and_escaping(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    run(fx, "{\"completion\": \"```ts\\nok();\\n```\"}\n{\"error\": {\"message\": \"quota "
            "\\\"x\\\"\\n\"}}\n");
    ag_eval_info_t info;
    memset(&info, 0, sizeof(info));
    info.source = "we\"ird\x01.jsonl";
    json_t *j = summary(fx, &info);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "input"), "file")),
                        "we\"ird\x01.jsonl");
    const json_t *bad = json_object_get(j, "bad_lines");
    assert_int_equal(json_array_size(bad), 1);
    assert_int_equal(jint(json_array_get(bad, 0), "line"), 2);
    /* the control byte in the upstream message became a space */
    assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "error")),
                        "an error object: quota \"x\" ");
}

static void test_live_errors_in_reports(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* what the live mode records: requests, grouped failures, judged replies */
    for (int i = 0; i < 4; i++)
        ag_eval_add_request(fx->ev);
    ag_eval_add_error(fx->ev, 429, AG_STR_LIT("Rate limit reached"));
    ag_eval_add_error(fx->ev, 0, AG_STR_LIT("Couldn't connect to server"));
    ag_eval_add_error(fx->ev, 429, AG_STR_LIT("Rate limit reached"));
    assert_int_equal(ag_eval_reply(fx->ev, ag_cstr("```ts\noldName;\n```"), 1), AG_OK);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->requests, 4);
    assert_int_equal(st->failed, 3);
    assert_int_equal(st->nerrors, 2);
    assert_int_equal(st->errors[0].count, 2);
    ag_eval_info_t info;
    memset(&info, 0, sizeof(info));
    info.live = true;
    info.upstream = "http://127.0.0.1:9";
    info.model = "gpt-4.1-nano";
    info.samples = 4;
    info.has_temperature = true;
    info.temperature = 0.5;
    const char *t = table(fx, &info);
    assert_has_line(
        t, "astgate eval --live: model gpt-4.1-nano at http://127.0.0.1:9, temperature 0.5\n");
    assert_has_line(t, "  upstream errors 3:\n    2 x HTTP 429: Rate limit reached\n"
                       "    1 x no HTTP answer: Couldn't connect to server\n");
    json_t *j = summary(fx, &info);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "live");
    const json_t *live = json_object_get(j, "live");
    assert_string_equal(json_string_value(json_object_get(live, "model")), "gpt-4.1-nano");
    assert_int_equal(jint(live, "samples"), 4);
    assert_float_equal(jnum(live, "temperature"), 0.5, 1e-9);
    assert_int_equal(jint(live, "requests"), 4);
    assert_int_equal(jint(live, "answered"), 1);
    assert_int_equal(jint(live, "failed"), 3);
    const json_t *errs = json_object_get(live, "errors");
    assert_int_equal(json_array_size(errs), 2);
    assert_int_equal(jint(json_array_get(errs, 0), "status"), 429);
    assert_int_equal(jint(json_array_get(errs, 0), "count"), 2);
    assert_int_equal(jint(json_array_get(errs, 1), "status"), 0);
    assert_int_equal(jint(j, "rewritten"), 1);
}

/* ---- files and the command line ---- */

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/test_eval_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_file(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    char *path = write_tmp("{\"completion\": \"```ts\\noldName;\\n```\"}\n\nbad\n"
                           "{\"completion\": \"```ts\\neval(1);\\n```\"}"); /* no final newline */
    assert_int_equal(ag_eval_file(fx->ev, path, false), AG_OK);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->lines, 4);
    assert_int_equal(st->used, 2);
    assert_int_equal(st->bad, 1);
    assert_int_equal(st->bad_list[0].line, 3);
    assert_counts(&st->all, 0, 1, 1, 1);
    assert_int_equal(st->unfixable_lines[0], 4);
    unlink(path);
    free(path);
    assert_int_equal(ag_eval_file(fx->ev, "/nonexistent/eval.jsonl", false), AG_EIO);
}

/* Runs ag_eval_main with stdout and stderr discarded. */
static int run_main(int argc, const char **argv)
{
    fflush(stdout);
    fflush(stderr);
    int out = dup(1), err = dup(2);
    int null = open("/dev/null", O_WRONLY);
    assert_true(out >= 0 && err >= 0 && null >= 0);
    dup2(null, 1);
    dup2(null, 2);
    int rc = ag_eval_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
    close(out);
    close(err);
    close(null);
    return rc;
}

/* ---- groups (one per model and hint arm), rounding, kept examples ---- */

static const ag_eval_group_t *group_of(const ag_eval_stats_t *st, const char *model, bool hint)
{
    for (uint32_t i = 0; i < st->ngroups; i++)
        if (st->groups[i].hint == hint && strcmp(st->groups[i].model, model) == 0)
            return &st->groups[i];
    fail_msg("no group %s%s", model, hint ? " +hint" : "");
    return NULL;
}

static void test_groups_by_record_model(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st = run(
        fx, "{\"model\": \"m-a\", \"choices\": [{\"message\": {\"content\": "
            "\"```ts\\noldName;\\n```\"}}]}\n"
            "{\"model\": \"m-b\", \"output\": [{\"type\": \"message\", \"content\": [{\"type\": "
            "\"output_text\", \"text\": \"```ts\\nfine();\\n```\"}]}]}\n"
            "{\"model\": \"m-a\", \"messages\": [{\"role\": \"assistant\", \"content\": "
            "\"```ts\\neval(x);\\n```\"}]}\n"
            "{\"custom_id\": \"1\", \"response\": {\"body\": {\"model\": \"m-b\", \"choices\": "
            "[{\"message\": {\"content\": \"no code\"}}]}}}\n"
            "{\"completion\": \"```ts\\nfine();\\n```\"}\n");
    assert_int_equal(st->replies, 5);
    /* the record without a model: its source names two models, so it stays apart */
    assert_int_equal(st->ngroups, 3);
    assert_string_equal(st->groups[0].model, "m-a");
    assert_string_equal(st->groups[1].model, "m-b");
    assert_string_equal(st->groups[2].model, "");
    const ag_eval_group_t *a = group_of(st, "m-a", false), *b = group_of(st, "m-b", false);
    assert_int_equal(a->replies, 2);
    assert_int_equal(a->with_code, 2);
    assert_counts(&a->all, 0, 1, 1, 1);
    assert_int_equal(a->all.flagged, 1);
    assert_counts(&a->rule[rule_of(st, "rename")], 1, 2, 1, 0);
    assert_counts(&a->rule[rule_of(st, "no-eval")], 1, 1, 0, 1);
    assert_int_equal(b->replies, 2);
    assert_int_equal(b->with_code, 1);
    assert_int_equal(b->no_code, 1);
    assert_counts(&b->all, 1, 1, 0, 0);
    /* groups partition the run */
    uint64_t replies = 0, raw = 0;
    for (uint32_t i = 0; i < st->ngroups; i++) {
        replies += st->groups[i].replies;
        raw += st->groups[i].all.raw_ok;
    }
    assert_int_equal(replies, st->replies);
    assert_int_equal(raw, st->all.raw_ok);

    const char *t = table(fx, NULL);
    assert_has_line(t, "  model        replies  with code      raw   corrected   difference  "
                       "rewritten  flagged  unfixable\n");
    assert_has_line(t, "  m-a                2          2     0.0%       50.0%     +50.0 pp   "
                       "       1        1          1\n");
    assert_has_line(t, "  (no model)         1          1   100.0%      100.0%      +0.0 pp");
    assert_has_line(t, "\n  all models:\n");
    json_t *j = summary(fx, NULL);
    json_t *models = json_object_get(j, "models");
    assert_int_equal(json_array_size(models), 3);
    json_t *m0 = json_array_get(models, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "model")), "m-a");
    assert_string_equal(json_string_value(json_object_get(m0, "hint")), "off");
    assert_int_equal(jint(m0, "replies"), 2);
    assert_float_equal(jnum(m0, "raw_accuracy_pct"), 0.0, 1e-9);
    assert_float_equal(jnum(m0, "corrected_accuracy_pct"), 50.0, 1e-9);
    assert_float_equal(jnum(m0, "difference_pp"), 50.0, 1e-9);
    json_t *r1 = json_array_get(json_object_get(m0, "rules"), 1);
    assert_string_equal(json_string_value(json_object_get(r1, "id")), "no-eval");
    assert_int_equal(jint(r1, "flagged"), 1);
    assert_true(json_object_get(m0, "requests") == NULL); /* offline */
}

static void test_unlabeled_records_join_the_one_model(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    const ag_eval_stats_t *st = run(fx, "{\"completion\": \"```ts\\noldName;\\n```\"}\n"
                                        "{\"model\": \"only\", \"choices\": [{\"message\": "
                                        "{\"content\": \"```ts\\nfine();\\n```\"}}]}\n");
    assert_int_equal(st->ngroups, 1);
    assert_string_equal(st->groups[0].model, "only");
    assert_int_equal(st->groups[0].replies, 2);
    assert_counts(&st->groups[0].all, 1, 2, 1, 0);
    assert_counts(&st->groups[0].rule[rule_of(st, "rename")], 1, 2, 1, 0);
    /* one model: the single-model table, no models block */
    const char *t = table(fx, NULL);
    assert_null(strstr(t, "  model "));
    assert_null(strstr(t, "all models:"));
}

static void test_select_groups_live(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    ag_eval_select(fx->ev, "x", false);
    ag_eval_select(fx->ev, "x", true); /* made now: groups keep the order of these calls */
    ag_eval_select(fx->ev, "x", false);
    assert_int_equal(ag_eval_reply(fx->ev, ag_cstr("```ts\noldName;\n```\n"), 1), AG_OK);
    ag_eval_add_request(fx->ev);
    ag_eval_add_error(fx->ev, 500, ag_cstr("boom"));
    ag_eval_add_request(fx->ev);
    ag_eval_select(fx->ev, "x", true);
    assert_int_equal(ag_eval_reply(fx->ev, ag_cstr("```ts\nfine();\n```\n"), 1), AG_OK);
    ag_eval_add_request(fx->ev);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->ngroups, 2);
    assert_false(st->groups[0].hint);
    assert_true(st->groups[1].hint);
    assert_int_equal(st->groups[0].requests, 2);
    assert_int_equal(st->groups[0].failed, 1);
    assert_int_equal(st->groups[1].requests, 1);
    assert_counts(&st->groups[0].all, 0, 1, 1, 0);
    assert_counts(&st->groups[1].all, 1, 1, 0, 0);
    ag_eval_info_t info;
    memset(&info, 0, sizeof(info));
    info.live = true;
    info.model = "x";
    info.samples = 1;
    info.variants = 2;
    info.hint = "both";
    const char *t = table(fx, &info);
    assert_has_line(t, "astgate eval --live: models x at ?, hint both\n");
    assert_has_line(t, "  x +hint         1          1   100.0%      100.0%      +0.0 pp");
    json_t *j = summary(fx, &info);
    json_t *m1 = json_array_get(json_object_get(j, "models"), 1);
    assert_string_equal(json_string_value(json_object_get(m1, "hint")), "on");
    assert_int_equal(jint(m1, "requests"), 1);
    assert_int_equal(jint(m1, "failed"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "live"), "hint")),
                        "both");
}

static void test_percentages_round_down(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    /* 1999 of 2000 = 99.95 %: rounding to nearest would print 100.0 % */
    for (uint64_t i = 0; i < 1999; i++)
        assert_int_equal(ag_eval_reply(fx->ev, ag_cstr("const x = 1;\n"), i + 1), AG_OK);
    assert_int_equal(ag_eval_reply(fx->ev, ag_cstr("const x = oldName;\n"), 2000), AG_OK);
    const ag_eval_stats_t *st = ag_eval_stats(fx->ev);
    assert_int_equal(st->with_code, 2000);
    const char *t = table(fx, NULL);
    assert_has_line(t, "  raw accuracy             99.9%   1999 of 2000 compliant as written\n");
    assert_has_line(t, "  difference             +0.1 pp\n");
    json_t *j = summary(fx, NULL);
    assert_float_equal(jnum(j, "raw_accuracy_pct"), 99.95, 1e-9);
    assert_float_equal(jnum(json_array_get(json_object_get(j, "models"), 0), "raw_accuracy_pct"),
                       99.95, 1e-9);
}

static void test_examples_kept(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, TWO_RULES);
    ag_eval_keep_examples(fx->ev, true);
    const ag_eval_stats_t *st =
        run(fx, "{\"model\": \"m\", \"completion\": \"```ts\\noldName;\\n```\"}\n"
                "{\"model\": \"m\", \"completion\": \"```ts\\neval(x);\\n```\"}\n"
                "{\"model\": \"m\", \"completion\": \"```ts\\nfine();\\n```\"}\n");
    assert_int_equal(st->with_code, 3);
    json_t *ex = ag_eval_examples_json(fx->ev);
    assert_non_null(ex);
    assert_int_equal(json_array_size(ex), 2);
    json_t *rw = json_array_get(ex, 0), *fl = json_array_get(ex, 1);
    assert_string_equal(json_string_value(json_object_get(rw, "kind")), "rewritten");
    assert_string_equal(json_string_value(json_object_get(rw, "model")), "m");
    assert_int_equal(jint(rw, "line"), 1);
    assert_string_equal(json_string_value(json_object_get(rw, "before")), "```ts\noldName;\n```");
    assert_string_equal(json_string_value(json_object_get(rw, "after")), "```ts\nnewName;\n```");
    assert_string_equal(json_string_value(json_object_get(fl, "kind")), "flagged");
    assert_null(json_object_get(fl, "after"));
    json_t *reasons = json_object_get(fl, "reasons");
    if (json_array_size(reasons) != 2)
        fail_msg("reasons: %s", json_dumps(reasons, 0));
    assert_string_equal(json_string_value(json_array_get(reasons, 0)),
                        "no-eval 2:1: flagged: do not eval");
    assert_string_equal(json_string_value(json_array_get(reasons, 1)),
                        "no-eval 2:1: still after the rewrite: do not eval");
    json_decref(ex);
}

static void test_main_exit_status(void **state)
{
    (void)state;
    char *rules = write_tmp(TWO_RULES);
    char *good = write_tmp("{\"completion\": \"```ts\\noldName;\\n```\"}\nbad\n");
    char *useless = write_tmp("bad\n\n{\"x\": 1}\n");
    {
        const char *a[] = {"--rules", rules, good};
        assert_int_equal(run_main(3, a), 0);
    }
    {
        char opt[300];
        snprintf(opt, sizeof(opt), "--rules=%s", rules);
        const char *a[] = {opt, "--json", good};
        assert_int_equal(run_main(3, a), 0);
    }
    {
        const char *a[] = {"--rules", rules, useless};
        assert_int_equal(run_main(3, a), 1);
    }
    {
        const char *a[] = {"--rules", rules, "/nonexistent/eval.jsonl"};
        assert_int_equal(run_main(3, a), 1);
    }
    {
        const char *a[] = {"--rules", "/nonexistent/rules.yaml", good};
        assert_int_equal(run_main(3, a), 1);
    }
    {
        const char *a[] = {good};
        assert_int_equal(run_main(1, a), 2); /* no --rules */
    }
    {
        const char *a[] = {"--rules", rules};
        assert_int_equal(run_main(2, a), 2); /* no data */
    }
    {
        const char *a[] = {"--rules", rules, good, good};
        assert_int_equal(run_main(4, a), 0); /* several data files are read, grouped by model */
    }
    {
        const char *a[] = {"--rules", rules, "--bogus", good};
        assert_int_equal(run_main(4, a), 2);
    }
    {
        const char *a[] = {"--rules"};
        assert_int_equal(run_main(1, a), 2);
    }
    {
        const char *a[] = {"--rules", rules, "--model", "m", good};
        assert_int_equal(run_main(5, a), 2); /* live options without --live */
    }
    {
        const char *a[] = {"--rules", rules, "--live", "--upstream", "http://127.0.0.1:9",
                           "--model", "m"};
        assert_int_equal(run_main(7, a), 2); /* no --prompts */
    }
    {
        const char *a[] = {"--rules", rules, "--live",    "--upstream", "http://127.0.0.1:9",
                           "--model", "m",   "--prompts", good,         "-n",
                           "0"};
        assert_int_equal(run_main(11, a), 2);
    }
    {
        const char *a[] = {"--rules", rules, "--live",    "--upstream", "http://127.0.0.1:9",
                           "--model", "m",   "--prompts", good,         "--temperature",
                           "3"};
        assert_int_equal(run_main(11, a), 2);
    }
    {
        const char *a[] = {"--rules", rules, "--live",    "--upstream", "ftp://x",
                           "--model", "m",   "--prompts", good};
        assert_int_equal(run_main(9, a), 2);
    }
    {
        /* no usable prompt: a blank file */
        char *empty = write_tmp("\n  \n");
        const char *a[] = {"--rules", rules, "--live",    "--upstream", "http://127.0.0.1:9",
                           "--model", "m",   "--prompts", empty};
        assert_int_equal(run_main(9, a), 1);
        unlink(empty);
        free(empty);
    }
    unlink(rules);
    unlink(good);
    unlink(useless);
    free(rules);
    free(good);
    free(useless);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fine_tuning_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_completion_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_and_batch_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_calls_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_calls_fine_tuning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_calls_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_call_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls_without_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tools_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_numbered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_line_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_code_counted_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_code_counts_as_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewritten_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfixable_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfixable_dropped_fix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flagged_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unjudged_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_is_never_corrected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_rule_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_bad_lines_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_errors_in_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_by_record_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlabeled_records_join_the_one_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_groups_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percentages_round_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples_kept, setup, teardown),
        cmocka_unit_test(test_main_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the rewrite engine (rewrite.c, ensure.c) with small inline rule sets: minimal
 * edits, quotes, line endings, overlaps, duplicates, the parse check, actions, fences, the literal
 * prefilter, bare mode, cut-off replies, transforms, events and the audit line. Every case also
 * checks that rewriting the output again changes nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "audit.h"
#include "json.h"
#include "rewrite.h"
#include "rules.h"

typedef struct fx {
    ag_rules_t *rules;
    ag_engine_t *e;
    ag_buf_t out;   /* output of the last rewrite */
    ag_buf_t again; /* output of rewriting `out` */
    ag_buf_t line;  /* audit lines */
    ag_result_t res;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    ag_buf_init(&fx->out, 1u << 20);
    ag_buf_init(&fx->again, 1u << 20);
    ag_buf_init(&fx->line, 1u << 16);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    ag_engine_free(fx->e);
    ag_rules_free(fx->rules);
    ag_buf_dispose(&fx->out);
    ag_buf_dispose(&fx->again);
    ag_buf_dispose(&fx->line);
    free(fx);
    return 0;
}

/* Loads yaml and makes a fresh engine (opts may be NULL). */
static void use_rules(fx_t *fx, const char *yaml, const ag_engine_opts_t *opts)
{
    ag_engine_free(fx->e);
    fx->e = NULL;
    ag_rules_free(fx->rules);
    fx->rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_mem(ag_cstr(yaml), "t.yaml", &fx->rules, &d) != AG_OK)
        fail_msg("rules do not load: %u:%u: %s", d.line, d.col, d.msg);
    fx->e = ag_engine_new(fx->rules, opts);
    assert_non_null(fx->e);
}

/* Rewrites reply into fx->out; fx->res holds the result (events valid until the next call). */
static ag_str_t rewrite(fx_t *fx, const char *reply, size_t len)
{
    ag_buf_reset(&fx->out);
    memset(&fx->res, 0, sizeof(fx->res));
    assert_int_equal(ag_engine_rewrite(fx->e, ag_str(reply, len), &fx->out, &fx->res), AG_OK);
    return ag_buf_str(&fx->out);
}

static void assert_str_eq(ag_str_t got, const char *want)
{
    if (!ag_str_eqc(got, want))
        fail_msg("output differs:\n--- want (%zu bytes)\n%s\n--- got (%zu bytes)\n%.*s\n---",
                 strlen(want), want, got.len, (int)got.len, got.ptr);
}

/* Rewriting fx->out again must change nothing (invalidates fx->res's events). */
static void assert_idempotent(fx_t *fx)
{
    ag_result_t res;
    ag_buf_reset(&fx->again);
    assert_int_equal(ag_engine_rewrite(fx->e, ag_buf_str(&fx->out), &fx->again, &res), AG_OK);
    if (!ag_str_eq(ag_buf_str(&fx->again), ag_buf_str(&fx->out)))
        fail_msg("not idempotent: second rewrite of\n%.*s\ngave\n%.*s", (int)fx->out.len,
                 fx->out.ptr, (int)fx->again.len, fx->again.ptr);
    assert_int_equal(res.rewrites, 0);
}

/* rewrite + expected output + idempotence */
static void check(fx_t *fx, const char *reply, const char *want)
{
    assert_str_eq(rewrite(fx, reply, strlen(reply)), want);
}

static const ag_event_t *event_of(fx_t *fx, const char *rule, uint32_t nth)
{
    for (uint32_t i = 0; i < fx->res.nevents; i++)
        if (strcmp(fx->res.events[i].rule, rule) == 0 && nth-- == 0)
            return &fx->res.events[i];
    fail_msg("no event #%u of rule %s", nth, rule);
    return NULL;
}

/* ---- rule sets ---- */

static const char RENAME[] = "id: rename\n"
                             "language: ts\n"
                             "rule: {pattern: oldName}\n"
                             "fix: newName\n";

static const char PIN[] = "id: pin\n"
                          "language: ts\n"
                          "message: pin the model\n"
                          "rule: {pattern: \"new Agent($C)\"}\n"
                          "metadata:\n"
                          "  astgate:\n"
                          "    ensure: {target: $C, key: model, string: nano}\n";

/* ---- minimal edits ---- */

static void test_minimal_edits(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME, NULL);
    const char *reply = "Prose  with\todd spacing and `oldName` inline.\r\n"
                        "\n"
                        "```ts\n"
                        "const  x =   oldName ( 1 ,2 );   // oldName in a comment\n"
                        "\tlet y=oldName;;  \n"
                        "const s = 'oldName';\n"
                        "```\n"
                        "After: oldName.   \n";
    const char *want = "Prose  with\todd spacing and `oldName` inline.\r\n"
                       "\n"
                       "```ts\n"
                       "const  x =   newName ( 1 ,2 );   // oldName in a comment\n"
                       "\tlet y=newName;;  \n"
                       "const s = 'oldName';\n"
                       "```\n"
                       "After: oldName.   \n";
    ag_str_t out = rewrite(fx, reply, strlen(reply));
    assert_str_eq(out, want);
    assert_int_equal(fx->res.rewrites, 2);
    /* bytes before the first edit and after the last one are the reply's */
    const ag_event_t *first = event_of(fx, "rename", 0);
    const ag_event_t *last = event_of(fx, "rename", 1);
    assert_true(first->applied && last->applied);
    assert_memory_equal(out.ptr, reply, first->offset);
    size_t tail = strlen(reply) - (last->offset + last->before.len);
    assert_memory_equal(out.ptr + out.len - tail, reply + strlen(reply) - tail, tail);
    assert_idempotent(fx);
}

/* ---- quotes, line endings ---- */

static void test_quote_style_kept(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    check(fx,
          "```ts\n"
          "new Agent({ model: 'big' });\n"
          "new Agent({ model: \"big\" });\n"
          "new Agent({ model: `big` });\n"
          "new Agent({ name: \"n\" });\n"
          "```\n",
          "```ts\n"
          "new Agent({ model: 'nano' });\n"
          "new Agent({ model: \"nano\" });\n"
          "new Agent({ model: `nano` });\n"
          "new Agent({ name: \"n\", model: \"nano\" });\n"
          "```\n");
    assert_int_equal(fx->res.rewrites, 4);
    assert_idempotent(fx);
    /* already right in any quote: nothing to do */
    const char *ok = "```ts\nnew Agent({ model: \"nano\" }); new Agent({ model: `nano` });\n```\n";
    check(fx, ok, ok);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.nevents, 0);
}

static void test_crlf_and_tabs(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    /* ensure inserts a property with the neighbour's tab and CRLF */
    check(fx,
          "```ts\r\n"
          "new Agent({\r\n"
          "\tname: 'a'\r\n"
          "});\r\n"
          "```\r\n",
          "```ts\r\n"
          "new Agent({\r\n"
          "\tname: 'a',\r\n"
          "\tmodel: 'nano'\r\n"
          "});\r\n"
          "```\r\n");
    assert_idempotent(fx);
    /* with a trailing comma and a trailing comment */
    check(fx,
          "```ts\r\n"
          "new Agent({\r\n"
          "\t\tname: 'a', // the name\r\n"
          "});\r\n"
          "```\r\n",
          "```ts\r\n"
          "new Agent({\r\n"
          "\t\tname: 'a', // the name\r\n"
          "\t\tmodel: 'nano',\r\n"
          "});\r\n"
          "```\r\n");
    assert_idempotent(fx);
    /* a fix template's line breaks take the matched line's indentation and line ending */
    use_rules(
        fx, "id: modern\nlanguage: ts\nrule: {pattern: \"legacy($A)\"}\nfix: \"modern(\\n  $A)\"\n",
        NULL);
    check(fx, "```ts\r\n\tx = legacy(1);\r\n```\r\n",
          "```ts\r\n\tx = modern(\r\n\t  1);\r\n```\r\n");
    assert_idempotent(fx);
}

/* ---- overlaps and duplicates ---- */

static void test_overlap_first_start_wins(void **state)
{
    fx_t *fx = *state;
    /* the inner rule comes first in the file; the outer edit starts first and wins */
    use_rules(fx,
              "id: inner\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n"
              "---\n"
              "id: outer\nlanguage: ts\nrule: {pattern: \"wrap($A)\"}\nfix: wrapped(newName)\n",
              NULL);
    check(fx, "```ts\nwrap(oldName);\noldName;\n```\n",
          "```ts\nwrapped(newName);\nnewName;\n```\n");
    assert_int_equal(fx->res.rewrites, 2);
    assert_int_equal(fx->res.dropped, 1);
    const ag_event_t *dropped = event_of(fx, "inner", 0);
    assert_false(dropped->applied);
    assert_non_null(dropped->other_rule);
    assert_string_equal(dropped->other_rule, "outer");
    assert_non_null(strstr(dropped->reason, "overlap"));
    assert_int_equal(dropped->line, 2);
    assert_int_equal(dropped->col, 6);
    assert_true(ag_str_eqc(dropped->before, "oldName"));
    assert_true(ag_str_eqc(dropped->after, "newName"));
    const ag_event_t *kept = event_of(fx, "inner", 1);
    assert_true(kept->applied);
    assert_null(kept->other_rule);
    assert_true(event_of(fx, "outer", 0)->applied);
    assert_idempotent(fx);
}

static void test_overlap_same_span_rule_order(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: alpha\nlanguage: ts\nrule: {pattern: oldName}\nfix: alphaName\n"
              "---\n"
              "id: beta\nlanguage: ts\nrule: {pattern: oldName}\nfix: betaName\n",
              NULL);
    check(fx, "```ts\noldName;\n```\n", "```ts\nalphaName;\n```\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.dropped, 1);
    const ag_event_t *ev = event_of(fx, "beta", 0);
    assert_false(ev->applied);
    assert_string_equal(ev->other_rule, "alpha");
    assert_idempotent(fx);
}

static void test_insertions_at_one_point_all_kept(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: k1\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
              "metadata: {astgate: {ensure: {target: $C, key: model, string: nano}}}\n"
              "---\n"
              "id: k2\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
              "metadata: {astgate: {ensure: {target: $C, key: temperature, code: '0'}}}\n",
              NULL);
    check(fx, "```ts\nnew Agent({ name: 'a' });\n```\n",
          "```ts\nnew Agent({ name: 'a', model: 'nano', temperature: 0 });\n```\n");
    assert_int_equal(fx->res.rewrites, 2);
    assert_int_equal(fx->res.dropped, 0);
    assert_idempotent(fx);
}

static void test_duplicate_edits_counted_once(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    /* two agents share one config: both matches make the same edit */
    check(fx,
          "```ts\n"
          "const cfg = { model: 'big' };\n"
          "new Agent(cfg);\n"
          "new Agent(cfg);\n"
          "```\n",
          "```ts\n"
          "const cfg = { model: 'nano' };\n"
          "new Agent(cfg);\n"
          "new Agent(cfg);\n"
          "```\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.dropped, 0);
    assert_int_equal(fx->res.nevents, 1);
    assert_idempotent(fx);
}

/* ---- the parse check ---- */

static void test_parse_breaking_edit_dropped(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: breaks\nlanguage: ts\nrule: {pattern: badIdent}\nfix: \"foo(\"\n"
              "---\n"
              "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n",
              NULL);
    check(fx, "```ts\nbadIdent;\noldName;\n```\n", "```ts\nbadIdent;\nnewName;\n```\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.dropped, 1);
    const ag_event_t *ev = event_of(fx, "breaks", 0);
    assert_false(ev->applied);
    assert_non_null(strstr(ev->reason, "parse"));
    assert_null(ev->other_rule);
    assert_true(ag_str_eqc(ev->before, "badIdent"));
    assert_true(ag_str_eqc(ev->after, "foo("));
    assert_true(event_of(fx, "rename", 0)->applied);
    assert_idempotent(fx);
}

/* ---- actions ---- */

static void test_flag_action(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: no-eval\nlanguage: ts\nmessage: do not eval\nrule: {pattern: \"eval($X)\"}\n",
              NULL);
    const char *reply = "```ts\nconst r = eval('1 + 1');\n```\n";
    check(fx, reply, reply);
    assert_int_equal(fx->res.flags, 1);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.blocked, 0);
    assert_int_equal(fx->res.nevents, 1);
    const ag_event_t *ev = &fx->res.events[0];
    assert_int_equal(ev->action, AG_ACTION_FLAG);
    assert_false(ev->applied);
    assert_string_equal(ev->message, "do not eval");
    assert_true(ag_str_eqc(ev->before, "eval('1 + 1')"));
    assert_int_equal(ev->after.len, 0);
    assert_int_equal(ev->line, 2);
    assert_int_equal(ev->col, 11);
    assert_idempotent(fx);
}

static void test_block_action(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: no-eval\nlanguage: ts\nrule: {pattern: \"eval($X)\"}\n"
              "metadata: {astgate: {action: block}}\n",
              NULL);
    const char *reply = "```ts\neval(a);\neval(b);\n```\n";
    check(fx, reply, reply);
    assert_int_equal(fx->res.blocked, 2);
    assert_int_equal(fx->res.flags, 0);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.nevents, 2);
    assert_int_equal(fx->res.events[0].action, AG_ACTION_BLOCK);
    assert_true(ag_str_eqc(fx->res.events[1].before, "eval(b)"));
    assert_idempotent(fx);
}

/* ---- which blocks ---- */

static void test_rule_fences(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n"
              "metadata: {astgate: {fences: [TSX, vue]}}\n",
              NULL);
    check(fx,
          "```ts\noldName;\n```\n"
          "```\noldName;\n```\n"
          "```tsx\noldName;\n```\n"
          "```vue\noldName;\n```\n",
          "```ts\noldName;\n```\n"
          "```\noldName;\n```\n"
          "```tsx\nnewName;\n```\n"
          "```vue\nnewName;\n```\n");
    assert_int_equal(fx->res.blocks, 2);
    assert_int_equal(fx->res.rewrites, 2);
    assert_idempotent(fx);
    /* without `fences` the defaults apply: ts, unlabeled, tsx; not vue or python */
    use_rules(fx, RENAME, NULL);
    check(fx,
          "```ts\noldName;\n```\n"
          "```\noldName;\n```\n"
          "```tsx\noldName;\n```\n"
          "```python\noldName\n```\n",
          "```ts\nnewName;\n```\n"
          "```\nnewName;\n```\n"
          "```tsx\nnewName;\n```\n"
          "```python\noldName\n```\n");
    assert_int_equal(fx->res.blocks, 3);
    assert_idempotent(fx);
}

static void test_literal_prefilter(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    const char *none = "```ts\nconst x = new Thing({ model: 'big' });\n```\n";
    check(fx, none, none);
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.parsed, 0);
    const char *some = "```ts\nconst x = new Agent({ model: 'big' });\n```\n";
    check(fx, some, "```ts\nconst x = new Agent({ model: 'nano' });\n```\n");
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.parsed, 1);
    /* only the blocks with the literal are parsed */
    check(fx, "```ts\nfoo();\n```\n```ts\nnew Agent({});\n```\n```js\nbar();\n```\n",
          "```ts\nfoo();\n```\n```ts\nnew Agent({ model: 'nano' });\n```\n```js\nbar();\n```\n");
    assert_int_equal(fx->res.blocks, 3);
    assert_int_equal(fx->res.parsed, 1);
    assert_idempotent(fx);
    /* a rule with no literal (kind only) needs every block parsed */
    use_rules(fx, "id: ids\nlanguage: ts\nrule: {kind: debugger_statement}\n", NULL);
    check(fx, none, none);
    assert_int_equal(fx->res.parsed, 1);
}

static void test_bare_mode(void **state)
{
    fx_t *fx = *state;
    const char *code = "import { Agent } from '@mastra/core/agent';\n"
                       "export const a = new Agent({ model: 'big' });\n";
    const char *fixed = "import { Agent } from '@mastra/core/agent';\n"
                        "export const a = new Agent({ model: 'nano' });\n";
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.bare = false;
    use_rules(fx, PIN, &opts);
    check(fx, code, code);
    assert_int_equal(fx->res.blocks, 0);
    assert_int_equal(fx->res.parsed, 0);
    opts.bare = true;
    use_rules(fx, PIN, &opts);
    check(fx, code, fixed);
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.rewrites, 1);
    assert_idempotent(fx);
    /* prose is not tried as code, even when it mentions an agent */
    const char *prose = "Use new Agent({ model: 'big' }) to make an agent.\n";
    check(fx, prose, prose);
    assert_int_equal(fx->res.parsed, 0);
    /* a reply with a fence is never bare */
    const char *fenced = "const a = new Agent({ model: 'big' });\n```ts\nfoo();\n```\n";
    check(fx, fenced, fenced);
    assert_int_equal(fx->res.rewrites, 0);
}

static void test_truncated_reply(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    /* cut inside the model string: the value is not complete, leave it */
    const char *cut1 = "Here:\n```ts\nconst a = new Agent({ model: 'gpt-4";
    check(fx, cut1, cut1);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.dropped, 1);
    assert_false(fx->res.events[0].applied);
    assert_non_null(strstr(fx->res.events[0].reason, "cut off"));
    assert_idempotent(fx);
    /* cut later: the model value is complete and gets fixed */
    check(fx, "Here:\n```ts\nconst a = new Agent({ model: 'gpt-4o', name: 'x",
          "Here:\n```ts\nconst a = new Agent({ model: 'nano', name: 'x");
    assert_int_equal(fx->res.rewrites, 1);
    assert_idempotent(fx);
    /* cut before the object closes and without a model: no insertion into an unfinished object */
    const char *cut3 = "```ts\nconst a = new Agent({ name: 'x', ";
    check(fx, cut3, cut3);
    assert_int_equal(fx->res.rewrites, 0);
    assert_idempotent(fx);
    /* cut inside a template literal value */
    const char *cut4 = "```ts\nnew Agent({ model: `gpt-4o";
    check(fx, cut4, cut4);
    assert_int_equal(fx->res.rewrites, 0);
    assert_idempotent(fx);
    /* brackets inside a regex literal are not code to close */
    check(fx,
          "```ts\nconst re = /[(]/, p = /\\(/, b = /[{]/;\nconst a = new Agent({ model: 'gpt-4o', "
          "name: 'x",
          "```ts\nconst re = /[(]/, p = /\\(/, b = /[{]/;\nconst a = new Agent({ model: 'nano', "
          "name: 'x");
    assert_int_equal(fx->res.rewrites, 1);
    /* a '/' after an operand divides: the bracket after it is code */
    check(fx,
          "```ts\nconst a = new Agent({ model: 'gpt-4o', tools: { t: x / 2, u: {\n v: 1 } }, "
          "name: 'x",
          "```ts\nconst a = new Agent({ model: 'nano', tools: { t: x / 2, u: {\n v: 1 } }, "
          "name: 'x");
    assert_int_equal(fx->res.rewrites, 1);
    /* cut inside a regex literal's class */
    check(fx, "```ts\nconst a = new Agent({ model: 'gpt-4o' });\nconst re = /[a-(",
          "```ts\nconst a = new Agent({ model: 'nano' });\nconst re = /[a-(");
    assert_int_equal(fx->res.rewrites, 1);
    assert_idempotent(fx);
}

/* ---- transforms ---- */

static void test_transforms_in_fix(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: t\n"
              "language: ts\n"
              "rule: {pattern: \"old($A)\"}\n"
              "transform:\n"
              "  R:\n"
              "    replace: {source: $A, replace: \"^(\\\\w+)_v1$\", by: \"${1}_v2\"}\n"
              "  S:\n"
              "    substring: {source: $A, startChar: 1, endChar: -1}\n"
              "  T:\n"
              "    substring: {source: $R, startChar: -2}\n"
              "fix: fresh($R, $S, $T)\n",
              NULL);
    check(fx, "```ts\nold(thing_v1);\n```\n", "```ts\nfresh(thing_v2, hing_v, v2);\n```\n");
    assert_idempotent(fx);
    /* substring counts characters, not bytes */
    check(fx, "```ts\nold(h\xc3\xa9llo_v1);\n```\n",
          "```ts\nfresh(h\xc3\xa9llo_v2, \xc3\xa9llo_v, v2);\n```\n");
    assert_idempotent(fx);
    /* replace finds nothing: the source is kept */
    check(fx, "```ts\nold(other);\n```\n", "```ts\nfresh(other, the, er);\n```\n");
    assert_idempotent(fx);
}

/* A transform's output over several lines in a multi-line fix: each later line gains the
 * indentation of the template line it lands on and not the matched line's (ast-grep 0.51.1;
 * tests/parity case fix-indent-transform-multiline). */
static void test_transform_multiline_in_fix(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: t\n"
              "language: ts\n"
              "rule: {pattern: \"wrap($A)\"}\n"
              "transform:\n"
              "  T: {replace: {source: $A, replace: zz, by: yy}}\n"
              "fix: \"{\\n  go($T);\\n}\"\n",
              NULL);
    check(fx, "```ts\nwrap(a(\n  1));\n```\n", "```ts\n{\n  go(a(\n    1));\n};\n```\n");
    check(fx, "```ts\nif (x) {\n  wrap(b(\n    3));\n}\n```\n",
          "```ts\nif (x) {\n  {\n    go(b(\n      3));\n  };\n}\n```\n");
    assert_idempotent(fx);
}

/* An ensure rule's `when: {matches: UTIL}` looks the util up among its own rule's utils, not
 * those of whichever rule the block's scan tried last (two packs loaded together broke each
 * other's rewrites that way). */
static void test_ensure_when_matches_own_utils(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: first\n"
              "language: ts\n"
              "rule:\n"
              "  all:\n"
              "    - kind: call_expression\n"
              "    - has: {field: function, regex: ^pin$}\n"
              "    - has: {field: arguments, has: {kind: object, pattern: $OPTS}}\n"
              "utils:\n"
              "  is-string: {kind: string}\n"
              "metadata:\n"
              "  astgate:\n"
              "    ensure:\n"
              "      target: $OPTS\n"
              "      key: model\n"
              "      cases:\n"
              "        - when: {matches: is-string}\n"
              "          string: right\n"
              "        - string: wrong\n"
              "---\n"
              "id: second\n"
              "language: ts\n"
              "rule: {kind: pair}\n"
              "utils:\n"
              "  something-else: {kind: number}\n",
              NULL);
    check(fx, "```ts\npin({ model: 'm' });\n```\n", "```ts\npin({ model: 'right' });\n```\n");
    assert_idempotent(fx);
}

/* A constraint judges a metavariable only where the matching branch bound it to one node (as in
 * ast-grep): `f($A)` matches though its branch leaves $B unbound, and the constraint's literal
 * does not keep the rule from a reply that lacks it. */
static void test_constraint_on_unbound_variable(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: c\n"
              "language: ts\n"
              "rule:\n"
              "  any:\n"
              "    - pattern: f($A)\n"
              "    - pattern: g($A, $B)\n"
              "constraints:\n"
              "  B: {regex: ^xyzzy$}\n"
              "fix: X\n",
              NULL);
    check(fx, "```ts\nf(1);\n```\n", "```ts\nX;\n```\n");
    check(fx, "```ts\nf(1); g(1, xyzzy); g(1, y);\n```\n", "```ts\nX; X; g(1, y);\n```\n");
    assert_idempotent(fx);
}

/* ---- code with a parse error: a rule does not fire there, and says so ---- */

static void test_parse_error_flags_instead_of_rewrite(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: rename\n"
              "language: ts\n"
              "rule: {pattern: \"oldName($$$A)\"}\n"
              "fix: newName($$$A)\n",
              NULL);
    /* the call matched holds a parse error: no edit, a flag with the reason */
    const char *broken = "```ts\nconst x = oldName(1, ;\nconst y = 2;\n```\n";
    check(fx, broken, broken);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.flags, 1);
    const ag_event_t *ev = event_of(fx, "rename", 0);
    assert_int_equal(ev->action, AG_ACTION_FLAG);
    assert_string_equal(ev->reason, "not applied: the code has a parse error here");
    assert_true(ev->before.len >= 8 && memcmp(ev->before.ptr, "oldName(", 8) == 0);
    assert_int_equal(ev->line, 2);
    assert_int_equal(ev->col, 11);
    /* the same code without the error is rewritten, and nothing is flagged */
    check(fx, "```ts\nconst x = oldName(1);\nconst y = 2;\n```\n",
          "```ts\nconst x = newName(1);\nconst y = 2;\n```\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.flags, 0);
    /* a parse error where the rule does not match: no flag */
    check(fx, "```ts\nconst x = other(1, ;\n```\n", "```ts\nconst x = other(1, ;\n```\n");
    assert_int_equal(fx->res.flags, 0);
    assert_int_equal(fx->res.nevents, 0);
}

/* ---- events ---- */

/* A fix widened by expandEnd: the event's offset/before is the span the edit replaces, its
 * match_offset/match_len the matched node alone (scan --json reports that, as ast-grep). */
static void test_event_match_span_with_expand(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: drop\n"
              "language: ts\n"
              "rule: {pattern: debug, inside: {kind: array}}\n"
              "fix: {template: '', expandEnd: {regex: ','}}\n",
              NULL);
    const char *reply = "```ts\nconst a = [debug, y];\n```\n";
    check(fx, reply, "```ts\nconst a = [ y];\n```\n");
    assert_int_equal(fx->res.nevents, 1);
    const ag_event_t *ev = &fx->res.events[0];
    assert_int_equal(ev->offset, strstr(reply, "debug") - reply);
    assert_int_equal(ev->before.len, 6); /* "debug," */
    assert_int_equal(ev->match_offset, ev->offset);
    assert_int_equal(ev->match_len, 5); /* "debug" */
    /* not widened: the same span */
    check(fx, "```ts\nconst b = [debug];\n```\n", "```ts\nconst b = [];\n```\n");
    ev = &fx->res.events[0];
    assert_int_equal(ev->match_offset, ev->offset);
    assert_int_equal(ev->match_len, ev->before.len);
}

static void test_event_fields(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    const char *reply = "Intro.\n"
                        "```python\nprint(1)\n```\n"
                        "Then:\n"
                        "```ts\n"
                        "const a = new Agent({\n"
                        "  model: 'big',\n" /* line 8, `'big'` at column 10 */
                        "});\n"
                        "```\n";
    rewrite(fx, reply, strlen(reply));
    assert_int_equal(fx->res.nevents, 1);
    const ag_event_t *ev = &fx->res.events[0];
    assert_string_equal(ev->rule, "pin");
    assert_int_equal(ev->action, AG_ACTION_REWRITE);
    assert_true(ev->applied);
    assert_string_equal(ev->reason, "");
    assert_null(ev->other_rule);
    assert_int_equal(ev->block, 1); /* the python block is block 0 */
    assert_int_equal(ev->line, 8);
    assert_int_equal(ev->col, 10);
    assert_int_equal(ev->offset, (uint32_t)(strstr(reply, "'big'") - reply));
    assert_true(ag_str_eqc(ev->before, "'big'"));
    assert_true(ag_str_eqc(ev->after, "'nano'"));
    assert_string_equal(ev->message, "pin the model");
    /* an insertion has an empty `before` */
    const char *ins = "```ts\nnew Agent({ name: 'a' });\n```\n";
    rewrite(fx, ins, strlen(ins));
    assert_int_equal(fx->res.nevents, 1);
    assert_int_equal(fx->res.events[0].before.len, 0);
    assert_true(ag_str_eqc(fx->res.events[0].after, ", model: 'nano'"));
    assert_int_equal(fx->res.events[0].line, 2);
    assert_int_equal(fx->res.events[0].col, 22); /* just after `'a'` */
}

/* BUG (see report): the prefilter takes `abc` as required by `^abc[(]?$|^zed$`: the `(` inside the
 * character class hides the top-level `|` from regex_literal (rules.c), so a block holding only
 * `zed` is never parsed and the match is missed. */
static void test_prefilter_regex_alternation_after_class(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, "id: re\nlanguage: ts\nrule: {kind: identifier, regex: \"^abc[(]?$|^zed$\"}\n",
              NULL);
    const char *reply = "```ts\nzed;\n```\n";
    check(fx, reply, reply);
    assert_int_equal(fx->res.parsed, 1);
    assert_int_equal(fx->res.flags, 1);
    assert_true(ag_str_eqc(fx->res.events[0].before, "zed"));
}

/* BUG (see report): a pinned value that needs an escape (`it's` in single quotes) is never seen as
 * equal (literal_content refuses escapes), so every later rewrite makes a no-op edit `'it\'s'` →
 * `'it\'s'` and reports it as an applied rewrite. README: present and equal → nothing to do. */
static void test_pinned_value_with_escape_is_stable(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: q\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
              "metadata: {astgate: {ensure: {target: $C, key: model, string: \"it's\"}}}\n",
              NULL);
    check(fx, "```ts\nnew Agent({ model: 'x' });\n```\n",
          "```ts\nnew Agent({ model: 'it\\'s' });\n```\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_idempotent(fx); /* also wants 0 rewrites the second time */
    /* the same value in the other quote needs no escape and is equal */
    const char *ok = "```ts\nnew Agent({ model: \"it's\" });\n```\n";
    check(fx, ok, ok);
    assert_int_equal(fx->res.nevents, 0);
}

/* BUG (see report): an edit dropped because the reply is cut off can sit in the completion the
 * engine added for parsing (here after the closing quote it supplied), so its event points past
 * the end of the reply. Positions of events must lie inside the reply. Found by fuzz_rewrite. */
static void test_dropped_event_points_into_reply(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    const char *reply = "```ts\nnew Agent({ name: 'x"; /* 26 bytes, line 2 has 20 */
    check(fx, reply, reply);
    assert_int_equal(fx->res.dropped, 1);
    const ag_event_t *ev = &fx->res.events[0];
    assert_false(ev->applied);
    if (ev->offset > strlen(reply) || ev->line != 2 || ev->col > 21)
        fail_msg("event at %u:%u, offset %u, in a reply of %zu bytes", ev->line, ev->col,
                 ev->offset, strlen(reply));
}

/* Regression: an event's `before` was cut to the length of the last parsed block's code, not its
 * own block's, so an edit in an earlier, longer block lost its `before` text. */
static void test_event_before_in_earlier_block(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    const char *reply = "```ts\n"
                        "const a = new Agent({ name: 'a long enough name', model: 'big' });\n"
                        "```\n"
                        "and\n"
                        "```ts\n"
                        "Agent\n"
                        "```\n";
    ag_str_t out = rewrite(fx, reply, strlen(reply));
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.parsed, 2);
    const ag_event_t *ev = &fx->res.events[0];
    assert_true(ev->applied);
    assert_true(ag_str_eqc(ev->after, "'nano'"));
    if (!ag_str_eqc(ev->before, "'big'"))
        fail_msg("event before is `%.*s`, want `'big'`", (int)ev->before.len, ev->before.ptr);
    assert_non_null(ag_memmem(out, AG_STR_LIT("model: 'nano'")));
}

/* Regression: ensure inserted into an object that holds a parse error; the inserted property
 * landed inside the error, so every further rewrite inserted it again. */
static void test_idempotent_on_object_with_parse_error(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: pin-name\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
              "metadata:\n  astgate:\n    ensure:\n      target: $C\n      key: model\n"
              "      cases:\n"
              "        - when: {kind: object}\n          key: name\n          string: nano\n",
              NULL);
    const char *reply = "```ts\n"
                        "new Agent({\n"
                        "  model: {\n"
                        "    provider: 'openai',\n"
                        "    a b: ',\n"
                        "  },\n"
                        "});\n"
                        "```\n";
    rewrite(fx, reply, strlen(reply));
    assert_idempotent(fx);
}

/* BUG (see report): ensure pins values inside code that holds a parse error. (1) A string with a
 * line break inside '...': the first rewrite pins `'<LF>i'`, then the stray `'` below reads as the
 * model's value and the second rewrite replaces it. (2) Call arguments holding an ERROR: `t-3` is
 * taken as argument 0, and after that edit `o` is. (3), (4) below. The replies are cut off (no
 * closing fence), found by fuzz_rewrite and minimized. */
static void test_idempotent_on_values_with_parse_errors(void **state)
{
    fx_t *fx = *state;
    char path[512];
    const char *rel = "rules/mastra.yaml";
    const char *cut = strstr(__FILE__, "tests/unit/");
    if (access(rel, R_OK) != 0 && cut)
        snprintf(path, sizeof(path), "%.*s%s", (int)(cut - __FILE__), __FILE__, rel);
    else
        snprintf(path, sizeof(path), "%s", rel);
    ag_buf_t yaml;
    ag_buf_init(&yaml, 1u << 20);
    if (ag_read_file(path, &yaml) != AG_OK) {
        ag_buf_dispose(&yaml);
        fail_msg("cannot read %s", path);
    }
    use_rules(fx, yaml.ptr, NULL);
    ag_buf_dispose(&yaml);
    const char *reply = "```ts\n"
                        "new Agent({model:openai('\n"
                        "i');\n"
                        "'\n"
                        "})";
    rewrite(fx, reply, strlen(reply));
    assert_idempotent(fx);
    const char *reply2 = "```\nnew Agent({model:openai(t t-3o)";
    rewrite(fx, reply2, strlen(reply2));
    assert_idempotent(fx);
    /* (3) a const whose declaration holds an ERROR: `-4` is pinned, then `i` */
    const char *reply3 = "```ts\nconst model=openai(MODEL_ID)\n"
                         "const MODEL_ID=@-4i(l=p=new Agent({s:'',model});";
    rewrite(fx, reply3, strlen(reply3));
    assert_idempotent(fx);
    /* (4) a `const model` inside a broken statement: `O` is pinned, then the shorthand resolves to
     * the other `const model` and the whole `new Agent(...)` is replaced by a string */
    const char *reply4 =
        "```ts\n({q\nimportt';\n\ncntMD OosEL_ID = '';\nconst model=openai(O)\nt''\n"
        "});const model=openai(new Agent({e:'',model})";
    rewrite(fx, reply4, strlen(reply4));
    assert_idempotent(fx);
}

/* BUG (see report): a NUL byte in code. tree-sitter-typescript's scanner reads NUL as the end of
 * input inside a template literal, so the tree does not describe the bytes: here the first rewrite
 * replaces a string holding a backtick, which turns the rest of the line from template text into
 * code, and the second rewrite then finds another agent. Found by fuzz_rewrite, minimized. */
static void test_idempotent_with_nul_byte(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: pin\nlanguage: ts\nrule: {pattern: \"new Agent($C)\"}\n"
              "metadata:\n  astgate:\n    ensure:\n      target: $C\n      key: model\n"
              "      cases:\n"
              "        - when: {kind: string}\n          string: openai/gpt-4.1-nano\n"
              "        - when: {kind: call_expression}\n          arg: 0\n"
              "          string: gpt-4.1-nano\n",
              NULL);
    static const char reply[] = "```\n`\0 new Agent({a:'',model:('`')})}`;"
                                "const base={model:openai(''),y:e=new Agent({...base";
    rewrite(fx, reply, sizeof(reply) - 1);
    assert_idempotent(fx);
}

/* BUG (see report): error recovery is not local. The first statement is broken (`{:'',e:=`); the
 * first agent is sound and gets `name` inserted into its model object, and that edit changes how
 * the parser recovers, so the second agent, unsound before, is sound after and the second rewrite
 * pins its model. Found by fuzz_rewrite (after the fixes for the cases above), minimized. */
static void test_idempotent_when_an_edit_moves_error_recovery(void **state)
{
    fx_t *fx = *state;
    char path[512];
    const char *rel = "rules/mastra.yaml";
    const char *cut = strstr(__FILE__, "tests/unit/");
    if (access(rel, R_OK) != 0 && cut)
        snprintf(path, sizeof(path), "%.*s%s", (int)(cut - __FILE__), __FILE__, rel);
    else
        snprintf(path, sizeof(path), "%s", rel);
    ag_buf_t yaml;
    ag_buf_init(&yaml, 1u << 20);
    if (ag_read_file(path, &yaml) != AG_OK) {
        ag_buf_dispose(&yaml);
        fail_msg("cannot read %s", path);
    }
    use_rules(fx, yaml.ptr, NULL);
    ag_buf_dispose(&yaml);
    const char *reply = "```ts\n"
                        "{:'',e:=new Agent({\n"
                        "e:'Quizer',\n"
                        "ions: 'Ask.',\n"
                        "  model: {\n"
                        "    provider: 'openai',\n"
                        "    teristions\n"
                        "  },\n"
                        "});t=new Agent({e:'',model:''});r";
    rewrite(fx, reply, strlen(reply));
    assert_idempotent(fx);
}

/* ---- code without fences (tool calls) ---- */

/* Rewrites code as a piece labelled label into fx->out; fx->res holds the result. */
static ag_str_t rewrite_code(fx_t *fx, const char *code, const char *label, bool fragment)
{
    ag_buf_reset(&fx->out);
    memset(&fx->res, 0, sizeof(fx->res));
    assert_int_equal(
        ag_engine_rewrite_code(fx->e, ag_cstr(code), ag_cstr(label), fragment, &fx->out, &fx->res),
        AG_OK);
    return ag_buf_str(&fx->out);
}

static void test_code_whole(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME, NULL);
    assert_str_eq(rewrite_code(fx, "let a = 1;\n  oldName();\n", "ts", false),
                  "let a = 1;\n  newName();\n");
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.rewrites, 1);
    const ag_event_t *ev = event_of(fx, "rename", 0);
    assert_int_equal(ev->block, 0);
    assert_int_equal(ev->line, 2);
    assert_int_equal(ev->col, 3);
    assert_int_equal(ev->offset, 13);
    assert_true(ag_str_eqc(ev->before, "oldName"));
    /* the origin is added as for replies */
    ag_engine_set_origin(fx->e, 3, 10, 100);
    rewrite_code(fx, "oldName;\n", "ts", false);
    ag_engine_set_origin(fx->e, 0, 0, 0);
    assert_int_equal(fx->res.events[0].block, 3);
    assert_int_equal(fx->res.events[0].line, 11);
    assert_int_equal(fx->res.events[0].offset, 100);
    /* a whole file that does not parse is rewritten where it can be, as a block would be */
    assert_str_eq(rewrite_code(fx, "oldName; (\n", "ts", false), "newName; (\n");
    /* no fence is looked for: fence lines are code here */
    const char *md = "```ts\noldName;\n```\n";
    rewrite_code(fx, md, "ts", false);
    assert_int_equal(fx->res.blocks, 1);
}

static void test_code_label_picks_rules_and_grammar(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: rename\nlanguage: ts\nrule: {pattern: oldName}\nfix: newName\n"
              "metadata: {astgate: {fences: [tsx, jsx]}}\n",
              NULL);
    const char *jsx = "const v = <div>{oldName}</div>;\n";
    assert_str_eq(rewrite_code(fx, jsx, "ts", false), jsx);
    assert_int_equal(fx->res.blocks, 0); /* no rule looks at ts */
    assert_int_equal(fx->res.nevents, 0);
    assert_str_eq(rewrite_code(fx, jsx, "tsx", false), "const v = <div>{newName}</div>;\n");
    assert_int_equal(fx->res.blocks, 1);
    assert_str_eq(rewrite_code(fx, jsx, "JSX", false), "const v = <div>{newName}</div>;\n");
    assert_str_eq(rewrite_code(fx, jsx, "py", false), jsx);
    assert_int_equal(fx->res.blocks, 0);
    /* the default fence set: every name of the TypeScript family */
    use_rules(fx, RENAME, NULL);
    static const char *const labels[] = {"ts", "mts", "cts", "js", "mjs", "cjs", "jsx", "tsx"};
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        assert_str_eq(rewrite_code(fx, "oldName;\n", labels[i], false), "newName;\n");
        assert_int_equal(fx->res.blocks, 1);
    }
    assert_str_eq(rewrite_code(fx, "oldName;\n", "vue", false), "oldName;\n");
}

static void test_code_fragment_sound_is_rewritten(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    assert_str_eq(
        rewrite_code(fx, "  return new Agent({ name: 'a', model: 'big' });\n", "ts", true),
        "  return new Agent({ name: 'a', model: 'nano' });\n");
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.flags, 0);
    /* a fragment that is an expression, or statements, parses on its own */
    assert_str_eq(rewrite_code(fx, "new Agent({ model: 'big' })", "ts", true),
                  "new Agent({ model: 'nano' })");
}

static void test_code_fragment_unsound_is_flagged(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, PIN, NULL);
    /* left open: parses only completed */
    const char *open = "const a = new Agent({\n  model: 'big',\n";
    assert_str_eq(rewrite_code(fx, open, "ts", true), open);
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.rewrites, 0);
    assert_int_equal(fx->res.dropped, 0);
    assert_int_equal(fx->res.flags, 1);
    assert_int_equal(fx->res.nevents, 1);
    const ag_event_t *ev = &fx->res.events[0];
    assert_int_equal(ev->action, AG_ACTION_FLAG);
    assert_false(ev->applied);
    assert_string_equal(ev->reason, "fragment");
    assert_string_equal(ev->message, "pin the model");
    assert_true(ag_str_eqc(ev->before, "'big'"));
    assert_int_equal(ev->after.len, 0);
    assert_int_equal(ev->line, 2);
    assert_int_equal(ev->col, 10);
    /* a stray closer: an ERROR node */
    const char *stray = "new Agent({ model: 'big' });\n  }\n}\n";
    assert_str_eq(rewrite_code(fx, stray, "ts", true), stray);
    assert_int_equal(fx->res.flags, 1);
    assert_string_equal(fx->res.events[0].reason, "fragment");
    /* the same code as a whole file is rewritten where it can be */
    assert_str_eq(rewrite_code(fx, open, "ts", false), "const a = new Agent({\n  model: 'nano',\n");
    /* a flag rule's flag stays what it is */
    use_rules(fx,
              "id: no-eval\nlanguage: ts\nmessage: do not eval\nrule: {pattern: \"eval($X)\"}\n",
              NULL);
    rewrite_code(fx, "eval(x);\n}\n", "ts", true);
    assert_int_equal(fx->res.flags, 1);
    assert_string_equal(fx->res.events[0].reason, "");
}

static void test_code_markdown(void **state)
{
    fx_t *fx = *state;
    use_rules(fx, RENAME, NULL);
    assert_str_eq(rewrite_code(fx, "# T\n\n```ts\noldName;\n```\n", "md", false),
                  "# T\n\n```ts\nnewName;\n```\n");
    assert_int_equal(fx->res.blocks, 1);
    assert_int_equal(fx->res.events[0].line, 4);
    /* never bare code, whatever the engine's bare option */
    ag_engine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.bare = true;
    use_rules(fx, RENAME, &o);
    assert_str_eq(rewrite_code(fx, "const x = oldName;\n", "mdx", false), "const x = oldName;\n");
    assert_int_equal(fx->res.blocks, 0);
    /* a fragment of Markdown: a block it cuts off is a fragment */
    use_rules(fx, PIN, NULL);
    const char *cut = "text\n```ts\nconst a = new Agent({ model: 'big',\n";
    assert_str_eq(rewrite_code(fx, cut, "markdown", true), cut);
    assert_int_equal(fx->res.flags, 1);
    assert_string_equal(fx->res.events[0].reason, "fragment");
    /* ... while a whole document's cut block is completed, as a reply's */
    assert_str_eq(rewrite_code(fx, cut, "md", false),
                  "text\n```ts\nconst a = new Agent({ model: 'nano',\n");
}

/* ---- the audit line ---- */

/* A strict JSON checker for one value; records the raw body of top-level string `want_key`. */
typedef struct jp {
    const char *s, *end;
    int depth;
    const char *want_key;
    ag_str_t found;
} jp_t;

static bool j_value(jp_t *p);

static bool j_utf8(jp_t *p)
{
    const unsigned char *u = (const unsigned char *)p->s;
    size_t left = (size_t)(p->end - p->s);
    size_t n = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || left < n || u[0] > 0xF4)
        return false;
    for (size_t i = 1; i < n; i++)
        if ((u[i] & 0xC0) != 0x80)
            return false;
    p->s += n;
    return true;
}

static bool j_string(jp_t *p, ag_str_t *body)
{
    if (p->s >= p->end || *p->s != '"')
        return false;
    const char *start = ++p->s;
    while (p->s < p->end && *p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            p->s++;
            if (p->s >= p->end)
                return false;
            if (*p->s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p->s + i >= p->end || !strchr("0123456789abcdefABCDEF", p->s[i]))
                        return false;
                p->s += 5;
            } else if (strchr("\"\\/bfnrt", *p->s) && *p->s) {
                p->s++;
            } else {
                return false;
            }
        } else if (c >= 0x80) {
            if (!j_utf8(p))
                return false;
        } else {
            p->s++;
        }
    }
    if (p->s >= p->end)
        return false;
    if (body)
        *body = ag_str(start, (size_t)(p->s - start));
    p->s++;
    return true;
}

static bool j_lit(jp_t *p, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, w, n) != 0)
        return false;
    p->s += n;
    return true;
}

static bool j_number(jp_t *p)
{
    const char *s = p->s;
    if (p->s < p->end && *p->s == '-')
        p->s++;
    while (p->s < p->end && ((*p->s >= '0' && *p->s <= '9') || strchr(".eE+-", *p->s)))
        p->s++;
    return p->s > s;
}

static bool j_value(jp_t *p)
{
    if (p->s >= p->end)
        return false;
    char c = *p->s;
    if (c == '"')
        return j_string(p, NULL);
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        p->depth++;
        p->s++;
        if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
            p->s++;
            p->depth--;
            return true;
        }
        for (;;) {
            if (obj) {
                ag_str_t key;
                if (!j_string(p, &key) || p->s >= p->end || *p->s++ != ':')
                    return false;
                if (p->depth == 1 && p->want_key && ag_str_eqc(key, p->want_key)) {
                    if (p->s >= p->end || *p->s != '"' || !j_string(p, &p->found))
                        return false;
                } else if (!j_value(p)) {
                    return false;
                }
            } else if (!j_value(p)) {
                return false;
            }
            if (p->s >= p->end)
                return false;
            if (*p->s == ',') {
                p->s++;
                continue;
            }
            if (*p->s++ != (obj ? '}' : ']'))
                return false;
            p->depth--;
            return true;
        }
    }
    if (c == 't')
        return j_lit(p, "true");
    if (c == 'f')
        return j_lit(p, "false");
    if (c == 'n')
        return j_lit(p, "null");
    return j_number(p);
}

/* line must be exactly one JSON object and "\n"; returns the decoded value of key. */
static void check_json_line(ag_str_t line, const char *key, ag_buf_t *decoded)
{
    assert_true(line.len >= 3);
    assert_int_equal(line.ptr[line.len - 1], '\n');
    assert_null(memchr(line.ptr, '\n', line.len - 1));
    jp_t p = {line.ptr, line.ptr + line.len - 1, 0, key, {NULL, 0}};
    assert_int_equal(*p.s, '{');
    if (!j_value(&p) || p.s != p.end)
        fail_msg("not one JSON object: %.*s", (int)line.len, line.ptr);
    assert_non_null(p.found.ptr);
    ag_buf_reset(decoded);
    assert_int_equal(ag_json_decode_str(p.found, decoded), AG_OK);
}

/* metadata.astgate.redact: the audit line of a rule whose match may be a credential gives the
 * matched text's size, never the text nor the replacement; `redact` must be a boolean. */
static void test_audit_line_redacted(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: key\n"
              "language: ts\n"
              "rule: {kind: string, regex: \"^.sk-[A-Za-z0-9]{20,}.$\"}\n"
              "fix: process.env.OPENAI_API_KEY\n"
              "metadata: {astgate: {redact: true}}\n"
              "---\n"
              "id: plain\n"
              "language: ts\n"
              "rule: {pattern: \"debugger\"}\n",
              NULL);
    const char *reply = "```ts\nconst k = 'sk-Q7vT2mXr9LpZk3WbN8yHc4Df';\ndebugger;\n```\n";
    rewrite(fx, reply, strlen(reply));
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.nevents, 2);
    for (uint32_t i = 0; i < fx->res.nevents; i++) {
        const ag_event_t *ev = &fx->res.events[i];
        ag_buf_reset(&fx->line);
        assert_int_equal(ag_audit_format(&fx->line, ev, NULL, 1763771177058), AG_OK);
        ag_str_t line = ag_buf_str(&fx->line);
        if (strcmp(ev->rule, "key") == 0) {
            assert_true(ev->redact);
            assert_null(ag_memmem(line, AG_STR_LIT("Q7vT2mXr9LpZk3WbN8yHc4Df")));
            assert_null(ag_memmem(line, AG_STR_LIT("\"before\"")));
            assert_null(ag_memmem(line, AG_STR_LIT("\"after\"")));
            assert_non_null(ag_memmem(line, AG_STR_LIT("\"redacted\":true,\"before_bytes\":29")));
        } else {
            assert_false(ev->redact);
            assert_non_null(ag_memmem(line, AG_STR_LIT("\"before\":\"debugger\"")));
        }
    }
    ag_rules_t *r = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_rules_load_mem(ag_cstr("id: k\nlanguage: ts\nrule: {kind: string}\n"
                                               "metadata: {astgate: {redact: yes-please}}\n"),
                                       "t.yaml", &r, &d),
                     AG_EINVAL);
    assert_int_equal(d.line, 4);
    assert_string_equal(d.msg, "redact must be true or false");
}

static void test_audit_line_is_one_json_line(void **state)
{
    fx_t *fx = *state;
    use_rules(fx,
              "id: \"pin\\\"q\\nx\"\n" /* id: pin"q<LF>x */
              "language: ts\n"
              "rule: {pattern: \"new Agent($C)\"}\n"
              "metadata: {astgate: {ensure: {target: $C, key: model, string: nano}}}\n"
              "---\n"
              "id: flag\n"
              "language: ts\n"
              "message: \"line one\\nline\\ttwo \\u0001\"\n"
              "rule: {pattern: \"new Agent($C)\"}\n",
              NULL);
    /* a model string holding control bytes, DEL, U+2028 and an invalid byte */
    const char *raw = "'a\001b\177c\te\342\200\250d\377'";
    char reply[256];
    snprintf(reply, sizeof(reply), "```ts\nnew Agent({ model: %s });\n```\n", raw);
    rewrite(fx, reply, strlen(reply));
    assert_int_equal(fx->res.rewrites, 1);
    assert_int_equal(fx->res.flags, 1);
    ag_buf_t dec;
    ag_buf_init(&dec, 1u << 16);
    ag_audit_ctx_t ctx;
    ag_audit_ctx_init(&ctx);
    ctx.file = "reply\n\"name\".md";
    ctx.request_id = "req\x1b[31m";
    for (uint32_t i = 0; i < fx->res.nevents; i++) {
        const ag_event_t *ev = &fx->res.events[i];
        ag_buf_reset(&fx->line);
        assert_int_equal(ag_audit_format(&fx->line, ev, &ctx, 1763771177058), AG_OK);
        ag_str_t line = ag_buf_str(&fx->line);
        /* no raw control byte or DEL anywhere before the final newline */
        for (size_t k = 0; k + 1 < line.len; k++)
            if ((unsigned char)line.ptr[k] < 0x20 || line.ptr[k] == 0x7f)
                fail_msg("raw byte 0x%02x at %zu in %.*s", (unsigned char)line.ptr[k], k,
                         (int)line.len, line.ptr);
        assert_null(ag_memmem(line, AG_STR_LIT("\xe2\x80\xa8")));
        assert_non_null(ag_memmem(line, AG_STR_LIT("\"time\":\"2025-11-22T00:26:17.058Z\"")));
        check_json_line(line, "before", &dec);
        /* decoded: the same bytes, the invalid one as U+FFFD */
        const char *want = ev->action == AG_ACTION_FLAG
                               ? "new Agent({ model: 'a\001b\177c\te\342\200\250d\357\277\275' })"
                               : "'a\001b\177c\te\342\200\250d\357\277\275'";
        assert_true(ag_str_eqc(ag_buf_str(&dec), want));
        check_json_line(line, "rule", &dec);
        assert_true(ag_str_eqc(ag_buf_str(&dec), ev->rule));
        check_json_line(line, "request_id", &dec);
        assert_true(ag_str_eqc(ag_buf_str(&dec), "req\x1b[31m"));
        if (ev->action == AG_ACTION_FLAG) {
            check_json_line(line, "message", &dec);
            assert_true(ag_str_eqc(ag_buf_str(&dec), "line one\nline\ttwo \x01"));
        } else {
            check_json_line(line, "after", &dec);
            assert_true(ag_str_eqc(ag_buf_str(&dec), "'nano'"));
        }
    }
    ag_buf_dispose(&dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minimal_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quote_style_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf_and_tabs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_first_start_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_same_span_rule_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insertions_at_one_point_all_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_edits_counted_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_breaking_edit_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_action, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_action, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_fences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literal_prefilter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transforms_in_fix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transform_multiline_in_fix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_when_matches_own_utils, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constraint_on_unbound_variable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_error_flags_instead_of_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_match_span_with_expand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefilter_regex_alternation_after_class, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pinned_value_with_escape_is_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_event_points_into_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_before_in_earlier_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_on_object_with_parse_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_on_values_with_parse_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_with_nul_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_when_an_edit_moves_error_recovery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_audit_line_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_line_is_one_json_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_label_picks_rules_and_grammar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_fragment_sound_is_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_fragment_unsound_is_flagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_markdown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

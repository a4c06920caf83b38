/* Rule parameters (metadata.astgate.params, `${{ params.NAME }}`): substitution at load time in
 * message, fix, ensure string/code and import; values from the default, a file's `set` and the
 * global sets (--set), last wins; every error with its place; the values in force reach the rule
 * set (for /metrics), the audit line (set values only) and astgate.yaml's `rules` entries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "metrics.h"
#include "rewrite.h"
#include "rules.h"
#include "rules_int.h"

#define NAME "p.yaml"

/* a fix rule and an ensure rule of one file sharing the parameter `model` */
static const char RULES[] = "id: fix-model\n"                      /* 1 */
                            "language: ts\n"                       /* 2 */
                            "message: use ${{ params.model }}\n"   /* 3 */
                            "rule: {pattern: pick($A)}\n"          /* 4 */
                            "fix: pick('${{params.model}}', $A)\n" /* 5 */
                            "metadata:\n"                          /* 6 */
                            "  astgate:\n"                         /* 7 */
                            "    params:\n"                        /* 8 */
                            "      model: {type: string, default: gpt-4.1-nano,\n"
                            "              pattern: '[a-z0-9.-]+'}\n"         /* 10 */
                            "      tries: {type: int, default: 3}\n"          /* 11 */
                            "---\n"                                           /* 12 */
                            "id: ensure-model\n"                              /* 13 */
                            "language: ts\n"                                  /* 14 */
                            "rule: {pattern: new Agent($C)}\n"                /* 15 */
                            "metadata:\n"                                     /* 16 */
                            "  astgate:\n"                                    /* 17 */
                            "    ensure:\n"                                   /* 18 */
                            "      target: $C\n"                              /* 19 */
                            "      key: model\n"                              /* 20 */
                            "      cases:\n"                                  /* 21 */
                            "        - when: {kind: call_expression}\n"       /* 22 */
                            "          code: openai('${{ params.model }}')\n" /* 23 */
                            "          import: {name: openai, from: '@ai-sdk/openai'}\n"
                            "        - string: openai/${{ params.model }}\n"; /* 25 */

static int load(const char *yaml, const ag_rules_set_t *fsets, uint32_t nf,
                const ag_rules_set_t *global, uint32_t ng, ag_rules_t **r, ag_diag_t *d)
{
    ag_rules_src_t src = {.path = NAME, .text = ag_cstr(yaml), .sets = fsets, .nsets = nf};
    memset(d, 0, sizeof(*d));
    return ag_rules_load_srcs(&src, 1, global, ng, r, d);
}

static void expect_err(const char *yaml, const ag_rules_set_t *fsets, uint32_t nf,
                       const ag_rules_set_t *global, uint32_t ng, const char *file, unsigned line,
                       unsigned col, const char *needle)
{
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(load(yaml, fsets, nf, global, ng, &r, &d), AG_EINVAL);
    assert_null(r);
    if (strstr(d.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", d.msg, needle);
    assert_string_equal(d.file, file);
    if (d.line != line || d.col != col)
        fail_msg("expected %u:%u, got %u:%u: %s", line, col, d.line, d.col, d.msg);
}

static ag_engine_t *g_engine; /* res->events live until the next rewrite or free_rules */

static void free_rules(ag_rules_t *r)
{
    ag_engine_free(g_engine);
    g_engine = NULL;
    ag_rules_free(r);
}

static char *rewrite(const ag_rules_t *r, const char *code, ag_result_t *res, ag_buf_t *out)
{
    ag_engine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.bare = true;
    ag_engine_free(g_engine);
    g_engine = ag_engine_new(r, &o);
    ag_buf_reset(out);
    assert_int_equal(ag_engine_rewrite(g_engine, ag_cstr(code), out, res), AG_OK);
    assert_int_equal(ag_buf_appendc(out, '\0'), AG_OK);
    return out->ptr;
}

static void test_defaults(void **state)
{
    (void)state;
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(load(RULES, NULL, 0, NULL, 0, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].message, "use gpt-4.1-nano");
    assert_string_equal(r->rules[0].fix, "pick('gpt-4.1-nano', $A)");
    const ag_ensure_case_t *root = &r->rules[1].ensure->root;
    assert_string_equal(root->cases[0].value, "openai('gpt-4.1-nano')");
    assert_string_equal(root->cases[1].value, "openai/gpt-4.1-nano");
    /* the first rule declares both; the second uses only model */
    assert_int_equal(ag_rules_rule_nparams(r, 0), 2);
    assert_int_equal(ag_rules_rule_nparams(r, 1), 1);
    const char *n, *v;
    ag_rules_rule_param(r, 1, 0, &n, &v);
    assert_string_equal(n, "model");
    assert_string_equal(v, "gpt-4.1-nano");
    ag_rules_rule_param(r, 0, 1, &n, &v);
    assert_string_equal(n, "tries");
    assert_string_equal(v, "3");
    /* nothing set: the audit line names nothing */
    assert_null(r->rules[0].params_json);
    ag_rules_free(r);
}

static void test_sets_last_wins(void **state)
{
    (void)state;
    ag_rules_set_t fs[] = {{"model", "gpt-4.1-mini", "astgate.yaml", 3, 30}};
    ag_rules_set_t gs[] = {{"model", "gpt-4.1", NULL, 0, 0}};
    ag_rules_t *r = NULL;
    ag_diag_t d;
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    ag_result_t res;
    assert_int_equal(load(RULES, fs, 1, NULL, 0, &r, &d), AG_OK);
    assert_string_equal(r->rules[1].ensure->root.cases[1].value, "openai/gpt-4.1-mini");
    assert_string_equal(r->rules[0].params_json, "{\"model\":\"gpt-4.1-mini\"}");
    assert_string_equal(rewrite(r, "const a = new Agent({ model: 'x' });\npick(1);\n", &res, &out),
                        "const a = new Agent({ model: 'openai/gpt-4.1-mini' });\n"
                        "pick('gpt-4.1-mini', 1);\n");
    /* the events carry the set values, and the audit line names them */
    assert_true(res.nevents >= 1);
    assert_string_equal(res.events[0].params, "{\"model\":\"gpt-4.1-mini\"}");
    ag_buf_t line;
    ag_buf_init(&line, 1u << 20);
    assert_int_equal(ag_audit_format(&line, &res.events[0], NULL, 1), AG_OK);
    assert_non_null(
        ag_memmem(ag_buf_str(&line), ag_cstr(",\"params\":{\"model\":\"gpt-4.1-mini\"}}")));
    free_rules(r);
    /* --set wins over the file's set */
    assert_int_equal(load(RULES, fs, 1, gs, 1, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].fix, "pick('gpt-4.1', $A)");
    assert_string_equal(rewrite(r, "new Agent({ model: anthropic('c') });\n", &res, &out),
                        "import { openai } from '@ai-sdk/openai';\n"
                        "new Agent({ model: openai('gpt-4.1') });\n");
    free_rules(r);
    ag_buf_dispose(&line);
    ag_buf_dispose(&out);
}

static void test_errors(void **state)
{
    (void)state;
    /* a set for a parameter the file does not declare: at the set's place */
    ag_rules_set_t bad_name[] = {{"modle", "x", "astgate.yaml", 4, 28}};
    expect_err(RULES, bad_name, 1, NULL, 0, "astgate.yaml", 4, 28, "declares no parameter `modle`");
    /* a --set no file declares */
    ag_rules_set_t bad_global[] = {{"modle", "x", NULL, 0, 0}};
    expect_err(RULES, NULL, 0, bad_global, 1, "", 0, 0, "--set modle: no rule file declares");
    /* the pattern and the type */
    ag_rules_set_t quote[] = {{"model", "a'b", "astgate.yaml", 5, 9}};
    expect_err(RULES, quote, 1, NULL, 0, "astgate.yaml", 5, 9,
               "does not match the parameter's pattern");
    ag_rules_set_t tries[] = {{"tries", "many", "astgate.yaml", 6, 9}};
    expect_err(RULES, tries, 1, NULL, 0, "astgate.yaml", 6, 9, "not a whole number");
    /* a use of an undeclared parameter: at the scalar */
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\nfix: g(${{ params.nope }})\n", NULL, 0,
               NULL, 0, NAME, 4, 6, "unknown parameter `nope`");
    /* a malformed reference */
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\nfix: g(${{ model }})\n", NULL, 0, NULL,
               0, NAME, 4, 6, "write `${{ params.NAME }}`");
    /* no default and not set: at the declaration */
    static const char NODEF[] = "id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"
                                "fix: g('${{ params.model }}')\n"
                                "metadata:\n  astgate:\n    params:\n      model: {type: string}\n";
    expect_err(NODEF, NULL, 0, NULL, 0, NAME, 8, 7, "has no default and is not set");
    ag_rules_set_t ok[] = {{"model", "m", "astgate.yaml", 1, 1}};
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(load(NODEF, ok, 1, NULL, 0, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].fix, "g('m')");
    free_rules(r);
    /* a default of the wrong type, an unknown type, a bad name */
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"
               "metadata: {astgate: {params: {n: {type: int, default: x}}}}\n",
               NULL, 0, NULL, 0, NAME, 4, 55, "not a whole number");
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"
               "metadata: {astgate: {params: {n: {type: float}}}}\n",
               NULL, 0, NULL, 0, NAME, 4, 41, "string, int or bool");
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"
               "metadata: {astgate: {params: {a-b: {}}}}\n",
               NULL, 0, NULL, 0, NAME, 4, 31, "must be an identifier");
    /* declared again differently in another rule of the file */
    expect_err("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"
               "metadata: {astgate: {params: {n: {default: x}}}}\n---\n"
               "id: b\nlanguage: ts\nrule: {pattern: g($A)}\n"
               "metadata: {astgate: {params: {n: {default: y}}}}\n",
               NULL, 0, NULL, 0, NAME, 9, 31, "declared again");
}

/* the shipped pack: the default is today's behaviour, a set value reaches every pinned place */
static void test_mastra_pack(void **state)
{
    (void)state;
    static const char REPLY[] = "```ts\n"
                                "import { Agent } from '@mastra/core/agent';\n"
                                "import { anthropic } from '@ai-sdk/anthropic';\n"
                                "const a = new Agent({ name: 'a', model: anthropic('c') });\n"
                                "const b = new Agent({ name: 'b', model: 'openai/gpt-4o' });\n"
                                "const c = new Agent({ name: 'c', model: openai('gpt-4o') });\n"
                                "```\n";
    ag_rules_src_t src = {.path = "rules/mastra.yaml"};
    ag_rules_set_t gs[] = {{"model", "gpt-4.1-mini", NULL, 0, 0}};
    ag_rules_t *r = NULL;
    ag_diag_t d;
    ag_buf_t out;
    ag_buf_init(&out, 1u << 20);
    ag_result_t res;
    assert_int_equal(ag_rules_load_srcs(&src, 1, NULL, 0, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].message, "Mastra agents must run on gpt-4.1-nano");
    assert_null(strstr(rewrite(r, REPLY, &res, &out), "mini"));
    assert_non_null(strstr(out.ptr, "model: 'openai/gpt-4.1-nano'"));
    free_rules(r);
    assert_int_equal(ag_rules_load_srcs(&src, 1, gs, 1, &r, &d), AG_OK);
    rewrite(r, REPLY, &res, &out);
    assert_null(strstr(out.ptr, "nano"));
    assert_non_null(strstr(out.ptr, "model: openai('gpt-4.1-mini') });\nconst b"));
    assert_non_null(strstr(out.ptr, "model: 'openai/gpt-4.1-mini'"));
    assert_non_null(strstr(out.ptr, "name: 'c', model: openai('gpt-4.1-mini')"));
    free_rules(r);
    ag_buf_dispose(&out);
}

static void test_metrics_info(void **state)
{
    (void)state;
    ag_rules_set_t gs[] = {{"model", "gpt-4.1-mini", NULL, 0, 0}};
    ag_rules_t *r = NULL;
    ag_diag_t d;
    assert_int_equal(load(RULES, NULL, 0, gs, 1, &r, &d), AG_OK);
    ag_mreg_t reg;
    ag_mreg_init(&reg);
    ag_mreg_set_params(&reg, r);
    ag_wmetrics_t w;
    ag_wmetrics_init(&w);
    ag_wmetrics_t *ws[1] = {&w};
    ag_buf_t o;
    ag_buf_init(&o, 1u << 20);
    assert_int_equal(ag_metrics_render(&o, ws, 1, &reg), AG_OK);
    assert_int_equal(ag_buf_appendc(&o, '\0'), AG_OK);
    assert_non_null(strstr(o.ptr, "# TYPE astgate_rule_param_info gauge\n"));
    assert_non_null(strstr(
        o.ptr,
        "astgate_rule_param_info{rule=\"fix-model\",param=\"model\",value=\"gpt-4.1-mini\"} 1\n"
        "astgate_rule_param_info{rule=\"fix-model\",param=\"tries\",value=\"3\"} 1\n"
        "astgate_rule_param_info{rule=\"ensure-model\",param=\"model\",value=\"gpt-4.1-mini\"} "
        "1\n"));
    ag_rules_free(r);
    /* a rule set without parameters: no series, no HELP */
    assert_int_equal(
        ag_rules_load_mem(ag_cstr("id: a\nlanguage: ts\nrule: {pattern: f($A)}\n"), NAME, &r, &d),
        AG_OK);
    ag_mreg_set_params(&reg, r);
    ag_buf_reset(&o);
    assert_int_equal(ag_metrics_render(&o, ws, 1, &reg), AG_OK);
    assert_null(ag_memmem(ag_buf_str(&o), ag_cstr("astgate_rule_param_info")));
    ag_rules_free(r);
    ag_buf_dispose(&o);
    ag_mreg_dispose(&reg);
}

static void test_config_rules_entries(void **state)
{
    (void)state;
    char cwd[512], text[1200], path[64];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(text, sizeof(text),
             "rules:\n"
             "  - {file: %s/rules/mastra.yaml, set: {model: gpt-4.1-mini}}\n",
             cwd);
    snprintf(path, sizeof(path), "/tmp/astgate-params-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.nrules, 1);
    assert_int_equal(cfg.nrule_sets[0], 1);
    assert_string_equal(cfg.rule_sets[0][0].value, "gpt-4.1-mini");
    ag_rules_t *r = NULL;
    assert_int_equal(ag_config_load_rules(&cfg, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].message, "Mastra agents must run on gpt-4.1-mini");
    ag_rules_free(r);
    /* --set over the file's set */
    assert_int_equal(ag_config_add_set(&cfg, "model=gpt-4.1", &d), AG_OK);
    assert_int_equal(ag_config_load_rules(&cfg, &r, &d), AG_OK);
    assert_string_equal(r->rules[0].message, "Mastra agents must run on gpt-4.1");
    ag_rules_free(r);
    assert_int_equal(ag_config_add_set(&cfg, "nope", &d), AG_EINVAL);
    ag_config_dispose(&cfg);
    /* an unknown parameter in astgate.yaml: the config's file:line:col */
    snprintf(text, sizeof(text),
             "rules:\n"
             "  - file: %s/rules/mastra.yaml\n"
             "    set: {modle: gpt-4.1-mini}\n",
             cwd);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(ag_config_load_rules(&cfg, &r, &d), AG_EINVAL);
    assert_string_equal(d.file, path);
    assert_int_equal(d.line, 3);
    assert_int_equal(d.col, 18);
    assert_non_null(strstr(d.msg, "declares no parameter `modle`"));
    ag_config_dispose(&cfg);
    /* a value that is not a scalar */
    fd = open(path, O_WRONLY | O_TRUNC);
    static const char BAD[] = "rules: [{file: a.yaml, set: {model: [x]}}]\n";
    assert_int_equal(write(fd, BAD, strlen(BAD)), (ssize_t)strlen(BAD));
    close(fd);
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_EINVAL);
    assert_int_equal(d.line, 1);
    assert_int_equal(d.col, 37);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_sets_last_wins),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_mastra_pack),
        cmocka_unit_test(test_metrics_info), cmocka_unit_test(test_config_rules_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* astgate command line: argument parsing and dispatch to the subcommands. */
#include "audit.h"
#include "config.h"
#include "eval.h"
#include "proxy.h"
#include "lang.h"
#include "rewrite.h"
#include "rules.h"
#include "ruletest.h"
#include "scan.h"
#include "toolcode.h"
#include "tsalloc.h"

#include <errno.h>

#define AG_VERSION "0.1.0"
#define MAX_RULE_FILES 64

static const char USAGE[] =
    "usage: astgate <command> [options]\n"
    "\n"
    "Enforces rules on the TypeScript that language models generate.\n"
    "\n"
    "commands:\n"
    "  rewrite --rules FILE [--rules FILE...] [--set NAME=VALUE...] [--log FILE] [--no-bare]\n"
    "          [INPUT]\n"
    "      Rewrite one reply (markdown or bare code) from INPUT or stdin to stdout.\n"
    "      Each rewrite, dropped edit and flag is a JSON line on stderr or in --log FILE.\n"
    "      --no-bare: do not treat a reply without fences as code. --set: a rule parameter\n"
    "      (metadata.astgate.params) for every file that declares it.\n"
    "  rewrite --tool NAME [--input KIND] --rules FILE... [--log FILE] [INPUT]\n"
    "      Rewrite the input of one call of tool NAME (a built-in preset: Write, Edit,\n"
    "      MultiEdit, apply_patch, ...) as the proxy does. KIND: args (the arguments JSON,\n"
    "      the default), text (a custom tool's free text), patch-create:PATH or\n"
    "      patch-update:PATH (the diff of a Responses apply_patch_call). A call without\n"
    "      code or with arguments that are not JSON comes out unchanged, with a note.\n"
    "  serve [--config FILE] [--listen HOST:PORT] [--upstream URL] [--rules FILE...]\n"
    "        [--set NAME=VALUE...]\n"
    "      Run the proxy. Without --config: the embedded default (127.0.0.1:8080 in front of\n"
    "      https://api.openai.com with rules/mastra.yaml). --check: validate and exit.\n"
    "  eval --rules FILE... [--json] DATA.jsonl\n"
    "  eval --live --upstream URL --model MODEL --prompts FILE [-n K] [--temperature T]\n"
    "       --rules FILE...\n"
    "      Measure raw vs corrected rule compliance (astgate eval --help).\n"
    "  check-rules [--set NAME=VALUE...] FILE...\n"
    "      Validate rule files and exit: 0 when all are good, 1 with file:line:col: cause.\n"
    "  test [-c sgconfig.yml] [--filter REGEX] [-U|--update-all]\n"
    "      Run ast-grep-format rule tests (valid/invalid cases, snapshots) through astgate;\n"
    "      -U writes the snapshots that are new or differ (astgate test --help).\n"
    "  scan --rules FILE... [--set NAME=VALUE...] [--json] [-U|--update-all] INPUT...\n"
    "      Print every match of the rules in source files (--json: one JSON line each, in\n"
    "      ast-grep's shape); -U writes the fixes back (astgate scan --help).\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "astgate: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'astgate --help'.\n");
    return 2;
}

static int check_runtime(void)
{
    ag_diag_t d;
    if (ag_lang_check(&d) != AG_OK) {
        fprintf(stderr, "astgate: ");
        ag_diag_print(&d, stderr);
        return 1;
    }
    return 0;
}

/* --set NAME=VALUE arguments of rewrite: names point into names[i], values into argv. */
typedef struct cli_sets {
    ag_rules_set_t v[MAX_RULE_FILES];
    char names[MAX_RULE_FILES][128];
    uint32_t n;
} cli_sets_t;

static int add_cli_set(cli_sets_t *s, const char *cmd, const char *arg)
{
    ag_diag_t d;
    if (s->n == MAX_RULE_FILES)
        return usage_error("%s: too many --set (at most 64)", cmd);
    if (ag_rules_parse_set(arg, s->names[s->n], sizeof(s->names[0]), &s->v[s->n], &d) != AG_OK)
        return usage_error("%s", d.msg);
    s->n++;
    return 0;
}

static int cmd_check_rules(int argc, char **argv)
{
    const char *files[MAX_RULE_FILES];
    uint32_t n = 0;
    static cli_sets_t sets; /* 8 KiB: not on the stack */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs("usage: astgate check-rules [--set NAME=VALUE...] FILE...\n", stdout);
            return 0;
        }
        if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            if (a[5] == '\0' && i + 1 >= argc)
                return usage_error("check-rules: %s needs NAME=VALUE", a);
            if (add_cli_set(&sets, "check-rules", a[5] ? a + 6 : argv[++i]))
                return 2;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            return usage_error("check-rules: unknown option '%s'", a);
        if (n == MAX_RULE_FILES)
            return usage_error("check-rules: too many rule files (at most %s)", "64");
        files[n++] = a;
    }
    if (n == 0)
        return usage_error("check-rules: %s", "no rule files given");
    if (check_runtime())
        return 1;
    ag_rules_src_t srcs[MAX_RULE_FILES];
    memset(srcs, 0, sizeof(srcs));
    for (uint32_t i = 0; i < n; i++)
        srcs[i].path = files[i];
    ag_rules_t *rules = NULL;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_srcs(srcs, n, sets.v, sets.n, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    ag_rules_print_warnings(rules, stderr);
    printf("astgate: %u rule%s in %u file%s ok\n", ag_rules_count(rules),
           ag_rules_count(rules) == 1 ? "" : "s", n, n == 1 ? "" : "s");
    ag_rules_free(rules);
    return 0;
}

/* The audit lines of one tool call's results (ag_toolcode_rewrite's report). */
typedef struct tool_log {
    ag_buf_t *lines;
    const char *file;
    int rc;
} tool_log_t;

static void on_tool_result(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    tool_log_t *tl = ud;
    ag_audit_ctx_t ctx;
    ag_audit_ctx_init(&ctx);
    ctx.file = tl->file;
    ctx.tool = site->call->name;
    ctx.call_id = site->call->id;
    ctx.argument = site->field;
    ctx.tool_file = site->file;
    for (uint32_t i = 0; i < res->nevents && tl->rc == AG_OK; i++)
        tl->rc = ag_audit_format(tl->lines, &res->events[i], &ctx, 0);
}

/* --input KIND of `rewrite --tool` into call. */
static bool tool_input(const char *kind, ag_tool_call_t *call)
{
    if (strcmp(kind, "args") == 0) {
        call->input = AG_TOOL_IN_ARGS;
    } else if (strcmp(kind, "text") == 0) {
        call->input = AG_TOOL_IN_TEXT;
    } else if (strncmp(kind, "patch-create:", 13) == 0) {
        call->input = AG_TOOL_IN_PATCH_CREATE;
        call->file = ag_cstr(kind + 13);
    } else if (strncmp(kind, "patch-update:", 13) == 0) {
        call->input = AG_TOOL_IN_PATCH_UPDATE;
        call->file = ag_cstr(kind + 13);
    } else {
        return false;
    }
    return true;
}

/* `rewrite --tool`: one call's input, as the proxy rewrites it (the built-in presets). */
static int rewrite_tool(ag_engine_t *engine, const ag_tool_call_t *call, ag_str_t in, ag_buf_t *out,
                        ag_buf_t *lines, const char *file)
{
    ag_tools_t tools;
    memset(&tools, 0, sizeof(tools));
    ag_tools_presets(&tools);
    tool_log_t tl = {lines, file, AG_OK};
    bool changed = false;
    int rc = ag_toolcode_rewrite(engine, &tools, call, in, out, &changed, on_tool_result, &tl);
    ag_tools_dispose(&tools);
    if (rc != AG_OK) {
        ag_buf_reset(out);
        if (rc == AG_ENOENT)
            fprintf(stderr, "astgate: no code in this call of %.*s; passed through unchanged\n",
                    (int)call->name.len, call->name.ptr);
        else if (rc == AG_EINVAL)
            fprintf(stderr,
                    "astgate: the arguments are not valid JSON; passed through unchanged\n");
        else
            fprintf(stderr,
                    "astgate: the rewritten input is too large; passed through unchanged\n");
        return ag_buf_append(out, in.ptr, in.len);
    }
    if (tl.rc != AG_OK)
        fprintf(stderr, "astgate: the audit lines are too large; some are missing\n");
    return AG_OK;
}

static int cmd_rewrite(int argc, char **argv)
{
    const char *files[MAX_RULE_FILES];
    uint32_t nfiles = 0;
    const char *input = "-", *log_path = NULL, *tool = NULL, *kind = "args";
    bool have_input = false, bare = true;
    static cli_sets_t sets; /* 8 KiB: not on the stack */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            if (a[5] == '\0' && i + 1 >= argc)
                return usage_error("rewrite: %s needs NAME=VALUE", a);
            if (add_cli_set(&sets, "rewrite", a[5] ? a + 6 : argv[++i]))
                return 2;
        } else if (strcmp(a, "--tool") == 0 || strcmp(a, "--input") == 0) {
            if (i + 1 >= argc)
                return usage_error("rewrite: %s needs a value", a);
            if (a[2] == 't')
                tool = argv[++i];
            else
                kind = argv[++i];
        } else if (strcmp(a, "--rules") == 0 || strcmp(a, "--log") == 0) {
            if (i + 1 >= argc)
                return usage_error("rewrite: %s needs a file", a);
            if (a[2] == 'r') {
                if (nfiles == MAX_RULE_FILES)
                    return usage_error("rewrite: too many rule files (at most %s)", "64");
                files[nfiles++] = argv[++i];
            } else {
                log_path = argv[++i];
            }
        } else if (strncmp(a, "--rules=", 8) == 0) {
            if (nfiles == MAX_RULE_FILES)
                return usage_error("rewrite: too many rule files (at most %s)", "64");
            files[nfiles++] = a + 8;
        } else if (strncmp(a, "--log=", 6) == 0) {
            log_path = a + 6;
        } else if (strcmp(a, "--no-bare") == 0) {
            bare = false;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("rewrite: unknown option '%s'", a);
        } else if (have_input) {
            return usage_error("rewrite: only one INPUT is read; extra argument '%s'", a);
        } else {
            input = a;
            have_input = true;
        }
    }
    if (nfiles == 0)
        return usage_error("rewrite: %s", "--rules FILE is required");
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(tool);
    if (!tool_input(kind, &call))
        return usage_error("rewrite: --input takes args, text, patch-create:PATH or "
                           "patch-update:PATH, not '%s'",
                           kind);
    if (tool == NULL && strcmp(kind, "args") != 0)
        return usage_error("rewrite: %s", "--input needs --tool");
    ag_rules_t *rules = NULL;
    if (check_runtime())
        return 1;
    ag_rules_src_t srcs[MAX_RULE_FILES];
    memset(srcs, 0, sizeof(srcs));
    for (uint32_t i = 0; i < nfiles; i++)
        srcs[i].path = files[i];
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_rules_load_srcs(srcs, nfiles, sets.v, sets.n, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    ag_rules_print_warnings(rules, stderr);
    int status = 1;
    FILE *log = stderr;
    ag_engine_t *engine = NULL;
    ag_buf_t in, out, line;
    ag_buf_init(&in, 64u << 20);
    ag_buf_init(&out, 128u << 20);
    ag_buf_init(&line, 64u << 20);
    if (log_path) {
        log = fopen(log_path, "a");
        if (log == NULL) {
            fprintf(stderr, "astgate: cannot open log %s: %s\n", log_path, strerror(errno));
            goto out;
        }
    }
    int rc = ag_read_file(input, &in);
    if (rc != AG_OK) {
        if (rc == AG_ETOOBIG)
            fprintf(stderr, "astgate: %s: input is larger than 64 MiB\n", input);
        else
            fprintf(stderr, "astgate: cannot read %s: %s\n",
                    strcmp(input, "-") == 0 ? "stdin" : input, strerror(errno));
        goto out;
    }
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.bare = bare;
    opts.max_reply = in.len + (1u << 20);
    opts.parse_timeout_us = 0;
    engine = ag_engine_new(rules, &opts);
    if (tool) {
        if (rewrite_tool(engine, &call, ag_buf_str(&in), &out, &line, have_input ? input : NULL) !=
            AG_OK)
            goto out;
        if (fwrite(out.ptr ? out.ptr : "", 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
            fprintf(stderr, "astgate: cannot write the output: %s\n", strerror(errno));
            goto out;
        }
        fwrite(line.ptr ? line.ptr : "", 1, line.len, log);
        fflush(log);
        status = 0;
        goto out;
    }
    ag_result_t res;
    if (ag_engine_rewrite(engine, ag_buf_str(&in), &out, &res) != AG_OK) {
        /* a rewrite never loses the reply: pass it through */
        ag_buf_reset(&out);
        if (ag_buf_append(&out, in.ptr, in.len) != AG_OK)
            goto out;
        fprintf(stderr, "astgate: the rewritten reply is too large; passed through unchanged\n");
    }
    if (fwrite(out.ptr ? out.ptr : "", 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, "astgate: cannot write the output: %s\n", strerror(errno));
        goto out;
    }
    ag_audit_ctx_t ctx;
    ag_audit_ctx_init(&ctx);
    ctx.file = have_input ? input : NULL;
    for (uint32_t i = 0; i < res.nevents; i++) {
        ag_buf_reset(&line);
        if (ag_audit_format(&line, &res.events[i], &ctx, 0) == AG_OK)
            fwrite(line.ptr, 1, line.len, log);
    }
    fflush(log);
    status = 0;
out:
    if (log && log != stderr)
        fclose(log);
    ag_engine_free(engine);
    ag_rules_free(rules);
    ag_buf_dispose(&in);
    ag_buf_dispose(&out);
    ag_buf_dispose(&line);
    return status;
}

typedef struct serve_args {
    const char *config, *listen, *upstream;
    const char **rules_files;
    uint32_t nrules;
    long workers;      /* -1: the config's */
    const char **sets; /* --set NAME=VALUE */
    uint32_t nsets;
} serve_args_t;

/* The configuration and rules of `serve`: the file, then the command line's overrides; errors
 * printed with file:line:col. At start and on SIGHUP (ag_proxy_set_loader). */
static int serve_load(void *ud, ag_config_t *cfg, ag_rules_t **rules)
{
    const serve_args_t *a = ud;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    *rules = NULL;
    if (ag_config_load(a->config, cfg, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    if ((a->listen && ag_config_set_listen(cfg, a->listen, &d) != AG_OK) ||
        (a->upstream && ag_config_set_upstream(cfg, a->upstream, &d) != AG_OK)) {
        fprintf(stderr, "astgate: %s\n", d.msg);
        ag_config_dispose(cfg);
        return 1;
    }
    for (uint32_t i = 0; i < a->nrules; i++)
        if (ag_config_add_rules(cfg, a->rules_files[i], i == 0, &d) != AG_OK) {
            fprintf(stderr, "astgate: %s\n", d.msg);
            ag_config_dispose(cfg);
            return 1;
        }
    for (uint32_t i = 0; i < a->nsets; i++)
        if (ag_config_add_set(cfg, a->sets[i], &d) != AG_OK) {
            fprintf(stderr, "astgate: %s\n", d.msg);
            ag_config_dispose(cfg);
            return 1;
        }
    if (a->workers >= 0)
        cfg->workers = (uint32_t)a->workers;
    if (ag_config_load_rules(cfg, rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        ag_config_dispose(cfg);
        return 1;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    const char *config = NULL, *listen = NULL, *upstream = NULL;
    const char *rules_files[MAX_RULE_FILES];
    const char *sets[MAX_RULE_FILES];
    uint32_t nrules = 0, nsets = 0;
    long workers = -1;
    bool check = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0)
            slot = &config;
        else if (strcmp(a, "--listen") == 0)
            slot = &listen;
        else if (strcmp(a, "--upstream") == 0)
            slot = &upstream;
        if (slot) {
            if (i + 1 >= argc)
                return usage_error("serve: %s needs a value", a);
            *slot = argv[++i];
        } else if (strcmp(a, "--rules") == 0) {
            if (i + 1 >= argc)
                return usage_error("serve: %s needs a file", a);
            if (nrules == MAX_RULE_FILES)
                return usage_error("serve: too many rule files (at most %s)", "64");
            rules_files[nrules++] = argv[++i];
        } else if (strcmp(a, "--set") == 0) {
            if (i + 1 >= argc)
                return usage_error("serve: %s needs NAME=VALUE", a);
            if (nsets == MAX_RULE_FILES)
                return usage_error("serve: too many --set (at most %s)", "64");
            sets[nsets++] = argv[++i];
        } else if (strcmp(a, "--workers") == 0) {
            if (i + 1 >= argc)
                return usage_error("serve: %s needs a number", a);
            char *end = NULL;
            workers = strtol(argv[++i], &end, 10);
            if (*end || workers < 0 || workers > 256)
                return usage_error("serve: --workers takes 0 to 256, not '%s'", argv[i]);
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            return usage_error("serve: unknown argument '%s'", a);
        }
    }
    if (check_runtime())
        return 1;
    serve_args_t sa = {config, listen, upstream, rules_files, nrules, workers, sets, nsets};
    ag_config_t cfg;
    int status = 1;
    ag_rules_t *rules = NULL;
    if (serve_load(&sa, &cfg, &rules) != 0)
        return 1;
    if (check) {
        printf("astgate: configuration %s ok (%u rule%s)\n", cfg.source, ag_rules_count(rules),
               ag_rules_count(rules) == 1 ? "" : "s");
        status = 0;
        goto out;
    }
    ag_proxy_set_loader(serve_load, &sa);
    status = ag_proxy_run(&cfg, rules);
    ag_proxy_set_loader(NULL, NULL);
out:
    ag_rules_free(rules);
    ag_config_dispose(&cfg);
    return status;
}

int main(int argc, char **argv)
{
    ag_tsalloc_install(); /* before any tree-sitter object exists */
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("astgate %s (tree-sitter-typescript 0.23.2, tree-sitter language ABI %d)\n",
               AG_VERSION, TREE_SITTER_LANGUAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "rewrite") == 0)
        return cmd_rewrite(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return ag_eval_main(argc - 2, argv + 2);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "check-rules") == 0)
        return cmd_check_rules(argc - 2, argv + 2);
    if (strcmp(cmd, "test") == 0)
        return ag_ruletest_main(argc - 2, argv + 2);
    if (strcmp(cmd, "scan") == 0)
        return ag_scan_main(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}

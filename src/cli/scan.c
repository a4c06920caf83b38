/* `astgate scan`: every match of the rules in source files, one line each (JSON shaped like
 * ast-grep's `scan --json=stream`), and with -U the files rewritten in place. */
#include "scan.h"

#include "json.h"
#include "lang.h"
#include "rewrite.h"
#include "rules.h"

#include <errno.h>
#include <stdlib.h>

#define MAX_RULE_FILES 64
#define SCAN_MAX_INPUT (64u << 20) /* bytes per input file */
#define SCAN_MAX_EVENTS 4096       /* the engine's events per run (rewrite.c's MAX_EVENTS) */

static const char SCAN_USAGE[] =
    "usage: astgate scan --rules FILE [--rules FILE...] [--set NAME=VALUE...] [--json] [-U]\n"
    "                    INPUT...\n"
    "\n"
    "Runs the rules over each INPUT as one block of code (.tsx and .jsx with the TSX grammar,\n"
    "anything else as TypeScript) and prints each match: file:line:col: [action: reason] rule: "
    "msg,\n"
    "or with --json one JSON object per line, shaped like ast-grep's `scan --json=stream`\n"
    "({\"ruleId\",\"action\",\"file\",\"range\":{\"byteOffset\":{start,end},\"start\":{line,column}"
    ",\n"
    "\"end\":{line,column}},\"text\",\"replacement\",...}: lines and columns 0-based, columns in\n"
    "characters, as ast-grep counts them). A rewrite rule's edit that is not applied says\n"
    "\"applied\":false and why; one widened by expandStart/expandEnd gives the bytes it replaces\n"
    "as \"replacementOffsets\". -U, --update-all: write the rewritten code back to each INPUT.\n";

typedef struct scan_args {
    const char *files[MAX_RULE_FILES];
    uint32_t nfiles;
    ag_rules_set_t sets[MAX_RULE_FILES];
    char names[MAX_RULE_FILES][128];
    uint32_t nsets;
    bool json, update;
} scan_args_t;

static int scan_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "astgate: scan: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'astgate scan --help'.\n");
    return 2;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* The fence label an input is run under: its extension says the grammar. */
static ag_str_t input_label(const char *path)
{
    if (has_suffix(path, ".tsx") || has_suffix(path, ".jsx"))
        return AG_STR_LIT("tsx");
    if (has_suffix(path, ".js") || has_suffix(path, ".mjs") || has_suffix(path, ".cjs"))
        return AG_STR_LIT("js");
    return AG_STR_LIT("ts");
}

/* A place in the code: 0-based line, and column in characters (UTF-8 lead bytes), as ast-grep. */
typedef struct pos {
    uint32_t off, line, col;
} pos_t;

/* Moves p forward to off (off >= p->off). */
static void pos_advance(ag_str_t code, pos_t *p, uint32_t off)
{
    for (uint32_t i = p->off; i < off && i < code.len; i++) {
        unsigned char c = (unsigned char)code.ptr[i];
        if (c == '\n') {
            p->line++;
            p->col = 0;
        } else if ((c & 0xC0) != 0x80) {
            p->col++;
        }
    }
    p->off = off;
}

static int evref_cmp(const void *a, const void *b)
{
    const ag_event_t *x = *(const ag_event_t *const *)a, *y = *(const ag_event_t *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->before.len != y->before.len) /* the outer match first */
        return x->before.len > y->before.len ? -1 : 1;
    return x < y ? -1 : x > y;
}

static const char *action_name(const ag_event_t *ev)
{
    switch (ev->action) {
    case AG_ACTION_REWRITE:
        return "rewrite";
    case AG_ACTION_BLOCK:
        return "block";
    case AG_ACTION_FLAG:
        break;
    }
    return "flag";
}

/* One event as a JSON line into b: s and e bound the matched node, text is its source. */
static int format_json(ag_buf_t *b, const char *file, const ag_event_t *ev, pos_t s, pos_t e,
                       ag_str_t text)
{
    int rc = ag_buf_appendf(b, "{\"ruleId\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(b, ag_cstr(ev->rule));
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, ",\"action\":\"%s\",\"file\":", action_name(ev));
    if (rc == AG_OK)
        rc = ag_json_append_str(b, ag_cstr(file));
    if (rc == AG_OK)
        rc = ag_buf_appendf(b,
                            ",\"range\":{\"byteOffset\":{\"start\":%u,\"end\":%u},"
                            "\"start\":{\"line\":%u,\"column\":%u},"
                            "\"end\":{\"line\":%u,\"column\":%u}},\"text\":",
                            s.off, e.off, s.line, s.col, e.line, e.col);
    if (rc == AG_OK)
        rc = ag_json_append_str(b, text);
    if (rc == AG_OK && ev->action == AG_ACTION_REWRITE) {
        rc = ag_buf_appendf(b, ",\"replacement\":");
        if (rc == AG_OK)
            rc = ag_json_append_str(b, ev->after);
        if (rc == AG_OK && (ev->match_offset != ev->offset || ev->match_len != ev->before.len))
            rc = ag_buf_appendf(b, ",\"replacementOffsets\":{\"start\":%u,\"end\":%u}", ev->offset,
                                ev->offset + (uint32_t)ev->before.len);
        if (rc == AG_OK)
            rc = ag_buf_appendf(b, ",\"applied\":%s", ev->applied ? "true" : "false");
    }
    if (rc == AG_OK && ev->reason && ev->reason[0]) {
        rc = ag_buf_appendf(b, ",\"reason\":");
        if (rc == AG_OK)
            rc = ag_json_append_str(b, ag_cstr(ev->reason));
    }
    if (rc == AG_OK) {
        rc = ag_buf_appendf(b, ",\"message\":");
        if (rc == AG_OK)
            rc = ag_json_append_str(b, ag_cstr(ev->message ? ev->message : ""));
    }
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, "}\n");
    return rc;
}

/* Writes data to path through a temporary file beside it, renamed over it. */
static int write_back(const char *path, ag_str_t data)
{
    size_t n = strlen(path);
    char *tmp = ag_xmalloc(n + 16);
    snprintf(tmp, n + 16, "%s.astgate-tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = AG_EIO, err = 0;
    if (f == NULL) {
        err = errno;
        goto out;
    }
    if (fwrite(data.ptr ? data.ptr : "", 1, data.len, f) != data.len) {
        err = errno;
        fclose(f);
        goto out;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        err = errno;
    else
        rc = AG_OK;
out:
    if (rc != AG_OK) {
        fprintf(stderr, "astgate: scan: cannot write %s: %s\n", path, strerror(err));
        remove(tmp);
    }
    free(tmp);
    return rc;
}

/* Scans one input: its matches on stdout, and with -U the rewrite written back. */
static int scan_file(ag_engine_t *engine, const scan_args_t *a, const char *path, ag_buf_t *in,
                     ag_buf_t *out, ag_buf_t *line)
{
    ag_buf_reset(in);
    ag_buf_reset(out);
    int rc = ag_read_file(path, in);
    if (rc != AG_OK) {
        if (rc == AG_ETOOBIG)
            fprintf(stderr, "astgate: scan: %s: input is larger than 64 MiB\n", path);
        else
            fprintf(stderr, "astgate: scan: cannot read %s: %s\n",
                    strcmp(path, "-") == 0 ? "stdin" : path, strerror(errno));
        return rc;
    }
    ag_str_t code = ag_buf_str(in);
    ag_result_t res;
    if (ag_engine_rewrite_code(engine, code, input_label(path), false, out, &res) != AG_OK) {
        fprintf(stderr, "astgate: scan: %s: the rewritten code is too large\n", path);
        return AG_ETOOBIG;
    }
    const ag_event_t **refs = ag_xcalloc(res.nevents ? res.nevents : 1, sizeof(*refs));
    for (uint32_t i = 0; i < res.nevents; i++)
        refs[i] = &res.events[i];
    qsort(refs, res.nevents, sizeof(*refs), evref_cmp);
    pos_t at = {0, 0, 0};
    const char *name = strcmp(path, "-") == 0 ? "STDIN" : path;
    for (uint32_t i = 0; i < res.nevents && rc == AG_OK; i++) {
        const ag_event_t *ev = refs[i];
        /* the matched node, inside the edit's span (expandStart/expandEnd widen only the edit) */
        pos_advance(code, &at, ev->offset);
        pos_t start = at;
        pos_advance(code, &start, ev->match_offset);
        pos_t end = start;
        pos_advance(code, &end, ev->match_offset + ev->match_len);
        ag_str_t text = ev->match_offset == ev->offset && ev->match_len == ev->before.len
                            ? ev->before
                            : ag_str(code.ptr + ev->match_offset, ev->match_len);
        ag_buf_reset(line);
        if (a->json)
            rc = format_json(line, name, ev, start, end, text);
        else
            rc = ag_buf_appendf(
                line, "%s:%u:%u: [%s%s%s] %s%s%s\n", name, start.line + 1, start.col + 1,
                action_name(ev), ev->reason && ev->reason[0] ? ": " : "",
                ev->reason ? ev->reason : "", ev->rule, ev->message && ev->message[0] ? ": " : "",
                ev->message ? ev->message : "");
        if (rc == AG_OK)
            fwrite(line->ptr, 1, line->len, stdout);
    }
    free(refs);
    if (res.nevents >= SCAN_MAX_EVENTS)
        fprintf(stderr, "astgate: scan: %s: stopped at %u matches; the rest are not reported\n",
                path, (unsigned)SCAN_MAX_EVENTS);
    if (rc != AG_OK) {
        fprintf(stderr, "astgate: scan: %s: a match is too large to print\n", path);
        return rc;
    }
    if (a->update && strcmp(path, "-") != 0 && !ag_str_eq(ag_buf_str(out), code))
        return write_back(path, ag_buf_str(out));
    return AG_OK;
}

static int parse_args(int argc, char **argv, scan_args_t *a, const char **inputs, uint32_t *ninputs)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--rules") == 0 || strncmp(s, "--rules=", 8) == 0) {
            if (s[7] == '\0' && i + 1 >= argc)
                return scan_usage_error("%s needs a file", s);
            if (a->nfiles == MAX_RULE_FILES)
                return scan_usage_error("too many rule files (at most %s)", "64");
            a->files[a->nfiles++] = s[7] ? s + 8 : argv[++i];
        } else if (strcmp(s, "--set") == 0 || strncmp(s, "--set=", 6) == 0) {
            if (s[5] == '\0' && i + 1 >= argc)
                return scan_usage_error("%s needs NAME=VALUE", s);
            if (a->nsets == MAX_RULE_FILES)
                return scan_usage_error("too many --set (at most %s)", "64");
            ag_diag_t d;
            if (ag_rules_parse_set(s[5] ? s + 6 : argv[++i], a->names[a->nsets],
                                   sizeof(a->names[0]), &a->sets[a->nsets], &d) != AG_OK)
                return scan_usage_error("%s", d.msg);
            a->nsets++;
        } else if (strcmp(s, "--json") == 0 || strcmp(s, "--json=stream") == 0) {
            a->json = true;
        } else if (strcmp(s, "-U") == 0 || strcmp(s, "--update-all") == 0) {
            a->update = true;
        } else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(SCAN_USAGE, stdout);
            return 1;
        } else if (s[0] == '-' && s[1] != '\0') {
            return scan_usage_error("unknown option '%s'", s);
        } else {
            inputs[(*ninputs)++] = s;
        }
    }
    if (a->nfiles == 0)
        return scan_usage_error("%s", "--rules FILE is required");
    if (*ninputs == 0)
        return scan_usage_error("%s", "no INPUT given");
    return 0;
}

int ag_scan_main(int argc, char **argv)
{
    static scan_args_t a; /* 12 KiB: not on the stack */
    memset(&a, 0, sizeof(a));
    const char **inputs = ag_xcalloc((size_t)argc + 1, sizeof(*inputs));
    uint32_t ninputs = 0;
    int status = parse_args(argc, argv, &a, inputs, &ninputs);
    if (status != 0) {
        free(inputs);
        return status == 1 ? 0 : status; /* 1: --help was printed */
    }
    status = 1;
    ag_rules_t *rules = NULL;
    ag_engine_t *engine = NULL;
    ag_buf_t in, out, line;
    ag_buf_init(&in, SCAN_MAX_INPUT);
    ag_buf_init(&out, 2 * (size_t)SCAN_MAX_INPUT);
    ag_buf_init(&line, 2 * (size_t)SCAN_MAX_INPUT);
    ag_rules_src_t srcs[MAX_RULE_FILES];
    memset(srcs, 0, sizeof(srcs));
    for (uint32_t i = 0; i < a.nfiles; i++)
        srcs[i].path = a.files[i];
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_lang_check(&d) != AG_OK) {
        fprintf(stderr, "astgate: ");
        ag_diag_print(&d, stderr);
        goto out;
    }
    if (ag_rules_load_srcs(srcs, a.nfiles, a.sets, a.nsets, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        goto out;
    }
    ag_rules_print_warnings(rules, stderr);
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.max_reply = out.max;
    engine = ag_engine_new(rules, &opts);
    status = 0;
    for (uint32_t i = 0; i < ninputs; i++)
        if (scan_file(engine, &a, inputs[i], &in, &out, &line) != AG_OK)
            status = 1;
    fflush(stdout);
out:
    ag_engine_free(engine);
    ag_rules_free(rules);
    ag_buf_dispose(&in);
    ag_buf_dispose(&out);
    ag_buf_dispose(&line);
    free(inputs);
    return status;
}

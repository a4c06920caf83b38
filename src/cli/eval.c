/* `astgate eval`: runs the engine twice over each reply (as written, then over its own output)
 * and counts raw and corrected compliance, overall and per rule. Records are decoded with jansson;
 * the live mode sends prompts through the proxy's curl-multi-on-libevent client (upstream.h). */
#include "eval.h"

#include "config.h"
#include "hint.h"
#include "json.h"
#include "lang.h"
#include "report.h"
#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULE_FILES 64
#define MAX_OUTPUT (32u << 20)    /* bytes of a rewritten reply */
#define MAX_BODY (32u << 20)      /* bytes of one upstream answer */
#define PROGRESS_MIN (256u << 10) /* inputs smaller than this get no bar */

/* per-rule marks for the reply being judged */
enum {
    HIT_ANY1 = 1,   /* any event of the rule in the first pass */
    HIT_RW1 = 2,    /* an applied rewrite of the rule in the first pass */
    HIT_BLK1 = 4,   /* a block of the rule in the first pass */
    HIT_ANY2 = 8,   /* any event of the rule in the second pass */
    HIT_FLAG1 = 16, /* a flag of the rule in the first pass: not fixable here */
};

struct ag_eval {
    const ag_rules_t *rules;
    ag_engine_t *engine;
    ag_buf_t out1;    /* first pass output */
    ag_buf_t out2;    /* second pass output (only its result matters) */
    ag_buf_t joined;  /* a reply assembled from several parts */
    ag_tools_t tools; /* tools whose calls carry code (owned copy) */
    const char **ids; /* rule ids, borrowed from rules */
    ag_eval_counts_t *rule;
    uint8_t *hit;
    ag_eval_bad_t *bad;
    uint32_t bad_cap;
    ag_eval_error_t errors[AG_EVAL_MAX_ERRORS];
    ag_eval_stats_t st;
    ag_eval_group_t groups[AG_EVAL_MAX_GROUPS];
    uint32_t cur;          /* the group replies count in; UINT32_MAX = the source's, made when
                              the first reply comes */
    const char *src_label; /* offline: the file being read (borrowed for the read) */
    bool by_record;        /* a record's "model" picks its group (offline) */
    uint32_t src_first;    /* groups[src_first..] were made while reading the current source */
    /* examples for the report */
    bool keep;
    json_t *examples;
    uint32_t nkept[3]; /* rewritten, flagged, unfixable */
    ag_buf_t reasons;  /* "rule line:col: why" lines of the reply being judged */
};

enum { EX_REWRITTEN, EX_FLAGGED, EX_UNFIXABLE };

/* ---- progress bar ---- */

typedef struct progress {
    bool on;
    bool drawn;
    int last_pct;
    uint64_t last_ns;
} progress_t;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Redraws when the percentage changed or a tenth of a second passed. */
static void progress_draw(progress_t *p, uint64_t done, uint64_t total, const char *what)
{
    if (!p->on || total == 0)
        return;
    int pct = (int)(done * 100 / total);
    uint64_t now = mono_ns();
    if (p->drawn && pct == p->last_pct && now - p->last_ns < 100000000u && done < total)
        return;
    p->drawn = true;
    p->last_pct = pct;
    p->last_ns = now;
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3d%% %s", bar, pct, what);
    fflush(stderr);
}

static void progress_end(progress_t *p)
{
    if (p->on && p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->drawn = false;
}

/* ---- the evaluator ---- */

ag_eval_t *ag_eval_new(const ag_rules_t *rules, const ag_engine_opts_t *opts)
{
    ag_eval_t *ev = ag_xcalloc(1, sizeof(*ev));
    ag_engine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.bare = true;
    if (opts)
        o = *opts;
    if (o.max_reply == 0 || o.max_reply > MAX_OUTPUT)
        o.max_reply = MAX_OUTPUT;
    ev->rules = rules;
    ev->engine = ag_engine_new(rules, &o);
    ag_tools_presets(&ev->tools);
    ag_buf_init(&ev->out1, MAX_OUTPUT + 1);
    ag_buf_init(&ev->out2, MAX_OUTPUT + 1);
    ag_buf_init(&ev->joined, AG_EVAL_MAX_LINE);
    uint32_t n = ag_rules_count(rules);
    ev->ids = ag_xcalloc(n ? n : 1, sizeof(*ev->ids));
    ev->rule = ag_xcalloc(n ? n : 1, sizeof(*ev->rule));
    ev->hit = ag_xcalloc(n ? n : 1, 1);
    for (uint32_t i = 0; i < n; i++)
        ev->ids[i] = ag_rules_rule_id(rules, i);
    ev->st.nrules = n;
    ev->st.rule_ids = ev->ids;
    ev->st.rule = ev->rule;
    ev->st.errors = ev->errors;
    ev->st.groups = ev->groups;
    ev->cur = UINT32_MAX;
    ev->by_record = true;
    ag_buf_init(&ev->reasons, 64u << 10);
    return ev;
}

/* ---- groups ---- */

static uint32_t find_group(ag_eval_t *ev, const char *model, bool hint)
{
    for (uint32_t i = 0; i < ev->st.ngroups; i++)
        if (ev->groups[i].hint == hint && strcmp(ev->groups[i].model, model) == 0)
            return i;
    if (ev->st.ngroups == AG_EVAL_MAX_GROUPS) {
        ag_eval_group_t *last = &ev->groups[AG_EVAL_MAX_GROUPS - 1];
        snprintf(last->model, sizeof(last->model), "(other models)");
        return AG_EVAL_MAX_GROUPS - 1;
    }
    ag_eval_group_t *g = &ev->groups[ev->st.ngroups];
    memset(g, 0, sizeof(*g));
    size_t n = strlen(model);
    if (n >= sizeof(g->model)) {
        n = sizeof(g->model) - 1;
        while (n > 0 && ((unsigned char)model[n] & 0xc0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++)
        g->model[i] = (unsigned char)model[i] < 0x20 || model[i] == 0x7f ? ' ' : model[i];
    g->model[n] = '\0';
    g->hint = hint;
    g->rule = ag_xcalloc(ev->st.nrules ? ev->st.nrules : 1, sizeof(*g->rule));
    return ev->st.ngroups++;
}

void ag_eval_select(ag_eval_t *ev, const char *model, bool hint)
{
    ev->cur = find_group(ev, model ? model : "", hint);
}

/* The group the reply being judged counts in. */
static ag_eval_group_t *grp(ag_eval_t *ev)
{
    if (ev->cur == UINT32_MAX)
        ev->cur = find_group(ev, ev->src_label ? ev->src_label : "", false);
    return &ev->groups[ev->cur];
}

static void add_counts(ag_eval_counts_t *to, const ag_eval_counts_t *from)
{
    to->raw_ok += from->raw_ok;
    to->corrected_ok += from->corrected_ok;
    to->rewritten += from->rewritten;
    to->unfixable += from->unfixable;
    to->flagged += from->flagged;
}

/* Group b's counts go to group a; b is removed (later groups move down). */
static void merge_group(ag_eval_t *ev, uint32_t a, uint32_t b)
{
    ag_eval_group_t *to = &ev->groups[a], *from = &ev->groups[b];
    to->replies += from->replies;
    to->with_code += from->with_code;
    to->no_code += from->no_code;
    to->unjudged += from->unjudged;
    to->skipped += from->skipped;
    to->calls += from->calls;
    to->requests += from->requests;
    to->failed += from->failed;
    add_counts(&to->all, &from->all);
    for (uint32_t i = 0; i < ev->st.nrules; i++)
        add_counts(&to->rule[i], &from->rule[i]);
    free(from->rule);
    memmove(from, from + 1, (ev->st.ngroups - b - 1) * sizeof(*from));
    ev->st.ngroups--;
}

static void begin_source(ag_eval_t *ev, const char *label)
{
    ev->src_label = label;
    ev->cur = UINT32_MAX;
    ev->src_first = ev->st.ngroups;
}

/* The records of a source that carry no model belong to the one model its other records name,
 * when they name exactly one (a data set of one model's replies in several shapes). */
static void end_source(ag_eval_t *ev)
{
    const char *label = ev->src_label ? ev->src_label : "";
    uint32_t unlabeled = UINT32_MAX, named = UINT32_MAX, nnamed = 0;
    for (uint32_t i = ev->src_first; i < ev->st.ngroups; i++) {
        if (strcmp(ev->groups[i].model, label) == 0 && !ev->groups[i].hint) {
            unlabeled = i;
        } else {
            named = i;
            nnamed++;
        }
    }
    if (unlabeled != UINT32_MAX && nnamed == 1)
        merge_group(ev, named, unlabeled);
    ev->src_label = NULL;
    ev->cur = UINT32_MAX;
}

void ag_eval_free(ag_eval_t *ev)
{
    if (ev == NULL)
        return;
    ag_engine_free(ev->engine);
    ag_buf_dispose(&ev->out1);
    ag_buf_dispose(&ev->out2);
    ag_buf_dispose(&ev->joined);
    ag_tools_dispose(&ev->tools);
    free(ev->ids);
    free(ev->rule);
    free(ev->hit);
    free(ev->bad);
    for (uint32_t i = 0; i < ev->st.ngroups; i++)
        free(ev->groups[i].rule);
    json_decref(ev->examples);
    ag_buf_dispose(&ev->reasons);
    free(ev);
}

void ag_eval_set_tools(ag_eval_t *ev, const ag_tools_t *tools)
{
    ag_tools_dispose(&ev->tools);
    ag_tools_copy(&ev->tools, tools);
}

const ag_eval_stats_t *ag_eval_stats(const ag_eval_t *ev)
{
    return &ev->st;
}

/* Copies s into a message slot: control bytes become spaces, cut at a character boundary. */
static void copy_msg(char *dst, const char *s, size_t len)
{
    size_t n = len < AG_EVAL_MSG - 1 ? len : AG_EVAL_MSG - 1;
    if (n < len)
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

void ag_eval_bad_line(ag_eval_t *ev, uint64_t line, const char *msg)
{
    ev->st.bad++;
    if (ev->st.nbad_list == AG_EVAL_MAX_BAD)
        return;
    if (ev->st.nbad_list == ev->bad_cap) {
        ev->bad_cap = ev->bad_cap ? ev->bad_cap * 2 : 16;
        ev->bad = ag_xrealloc(ev->bad, ev->bad_cap * sizeof(*ev->bad));
    }
    ag_eval_bad_t *b = &ev->bad[ev->st.nbad_list++];
    b->line = line;
    copy_msg(b->msg, msg, strlen(msg));
    ev->st.bad_list = ev->bad;
}

void ag_eval_add_error(ag_eval_t *ev, long status, ag_str_t msg)
{
    char m[AG_EVAL_MSG];
    copy_msg(m, msg.ptr ? msg.ptr : "", msg.len);
    ev->st.failed++;
    grp(ev)->failed++;
    for (uint32_t i = 0; i < ev->st.nerrors; i++) {
        if (ev->errors[i].status == status && strcmp(ev->errors[i].msg, m) == 0) {
            ev->errors[i].count++;
            return;
        }
    }
    if (ev->st.nerrors == AG_EVAL_MAX_ERRORS) {
        ag_eval_error_t *last = &ev->errors[AG_EVAL_MAX_ERRORS - 1];
        last->status = -1;
        snprintf(last->msg, sizeof(last->msg), "other errors");
        last->count++;
        return;
    }
    ag_eval_error_t *e = &ev->errors[ev->st.nerrors++];
    e->status = status;
    memcpy(e->msg, m, sizeof(m));
    e->count = 1;
}

void ag_eval_add_request(ag_eval_t *ev)
{
    ev->st.requests++;
    grp(ev)->requests++;
}

static uint32_t rule_index(const ag_eval_t *ev, const char *id)
{
    for (uint32_t i = 0; i < ev->st.nrules; i++)
        if (ev->ids[i] == id || strcmp(ev->ids[i], id) == 0)
            return i;
    return UINT32_MAX;
}

static void mark(ag_eval_t *ev, const ag_result_t *r, bool first)
{
    for (uint32_t k = 0; k < r->nevents; k++) {
        const ag_event_t *e = &r->events[k];
        uint32_t i = rule_index(ev, e->rule);
        if (i == UINT32_MAX)
            continue;
        if (!first) {
            ev->hit[i] |= HIT_ANY2;
            continue;
        }
        ev->hit[i] |= HIT_ANY1;
        if (e->action == AG_ACTION_REWRITE && e->applied)
            ev->hit[i] |= HIT_RW1;
        if (e->action == AG_ACTION_BLOCK)
            ev->hit[i] |= HIT_BLK1;
        if (e->action == AG_ACTION_FLAG)
            ev->hit[i] |= HIT_FLAG1;
    }
}

/* One pass over a reply or a call: the engine results it gave, summed (a call can hold several
 * pieces of code, each with its own result). */
typedef struct pass {
    ag_eval_t *ev;
    bool first; /* marks go to the first-pass bits */
    uint32_t blocks, rewrites, flags, dropped, blocked, unjudged, nevents;
} pass_t;

/* The events worth a reason in the report: in the reply as written, flags, blocks and edits
 * not applied; after the rewrite, anything left. */
static void note_reasons(ag_eval_t *ev, const ag_result_t *r, bool first)
{
    char line[512];
    for (uint32_t k = 0; k < r->nevents; k++) {
        const ag_event_t *e = &r->events[k];
        const char *what = NULL;
        if (!first)
            what = "still after the rewrite";
        else if (e->action == AG_ACTION_FLAG)
            what = "flagged";
        else if (e->action == AG_ACTION_BLOCK)
            what = "blocked";
        else if (e->action == AG_ACTION_REWRITE && !e->applied)
            what = "edit dropped";
        if (what == NULL)
            continue;
        const char *why = e->reason && e->reason[0] ? e->reason : e->message ? e->message : "";
        int n = snprintf(line, sizeof(line), "%s %u:%u: %s%s%s\n", e->rule ? e->rule : "?", e->line,
                         e->col, what, why[0] ? ": " : "", why);
        if (n > 0 &&
            ag_buf_append(&ev->reasons, line,
                          (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) != AG_OK)
            return;
    }
}

static void pass_add(pass_t *p, const ag_result_t *r)
{
    if (p->ev->keep)
        note_reasons(p->ev, r, p->first);
    p->blocks += r->blocks;
    p->rewrites += r->rewrites;
    p->flags += r->flags;
    p->dropped += r->dropped;
    p->blocked += r->blocked;
    p->unjudged += r->unjudged;
    p->nevents += r->nevents;
    mark(p->ev, r, p->first);
}

static void on_piece(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    (void)site;
    pass_add(ud, res);
}

/* Rewrites in (the reply text, or the input of call when it is set) into out. */
static int run_pass(ag_eval_t *ev, const ag_tool_call_t *call, ag_str_t in, ag_buf_t *out,
                    bool first, pass_t *p)
{
    memset(p, 0, sizeof(*p));
    p->ev = ev;
    p->first = first;
    ag_buf_reset(out);
    if (call == NULL) {
        ag_result_t r;
        int rc = ag_engine_rewrite(ev->engine, in, out, &r);
        if (rc == AG_OK)
            pass_add(p, &r);
        return rc;
    }
    bool changed = false;
    return ag_toolcode_rewrite(ev->engine, &ev->tools, call, in, out, &changed, on_piece, p);
}

static bool clean(const pass_t *p)
{
    return p->nevents == 0 && p->rewrites == 0 && p->flags == 0 && p->blocked == 0 &&
           p->dropped == 0;
}

/* A copy of s for the report, cut at AG_EVAL_KEEP_TEXT bytes on a character boundary. */
static json_t *kept_text(ag_str_t s, bool *cut)
{
    size_t n = s.len;
    if (n > AG_EVAL_KEEP_TEXT) {
        n = AG_EVAL_KEEP_TEXT;
        while (n > 0 && ((unsigned char)s.ptr[n] & 0xc0) == 0x80)
            n--;
        *cut = true;
    }
    json_t *j = json_stringn(s.ptr ? s.ptr : "", n);
    return j ? j : json_string("(not valid UTF-8)");
}

static void keep_example(ag_eval_t *ev, int kind, ag_str_t before, ag_str_t after, uint64_t line)
{
    static const uint32_t cap[3] = {AG_EVAL_KEEP_REWRITTEN, AG_EVAL_KEEP_UNFIXABLE,
                                    AG_EVAL_KEEP_UNFIXABLE};
    static const char *const name[3] = {"rewritten", "flagged", "unfixable"};
    if (ev->nkept[kind] >= cap[kind])
        return;
    ev->nkept[kind]++;
    if (ev->examples == NULL)
        ev->examples = json_array();
    const ag_eval_group_t *g = grp(ev);
    bool cut = false;
    json_t *ex = json_object();
    json_object_set_new(ex, "kind", json_string(name[kind]));
    json_object_set_new(ex, "model", json_string(g->model));
    json_object_set_new(ex, "hint", json_string(g->hint ? "on" : "off"));
    json_object_set_new(ex, "line", json_integer((json_int_t)line));
    json_object_set_new(ex, "before", kept_text(before, &cut));
    if (kind == EX_REWRITTEN)
        json_object_set_new(ex, "after", kept_text(after, &cut));
    json_t *reasons = json_array();
    ag_str_t r = ag_buf_str(&ev->reasons);
    size_t pos = 0;
    while (pos < r.len) {
        const char *nl = memchr(r.ptr + pos, '\n', r.len - pos);
        size_t end = nl ? (size_t)(nl - r.ptr) : r.len;
        json_t *t = json_stringn(r.ptr + pos, end - pos);
        if (t)
            json_array_append_new(reasons, t);
        pos = end + 1;
    }
    json_object_set_new(ex, "reasons", reasons);
    json_object_set_new(ex, "truncated", json_boolean(cut));
    json_array_append_new(ev->examples, ex);
}

/* Judges a reply (call NULL) or a tool call's input: the engine as written, then over its own
 * output when the first pass had anything to say. */
static int judge_one(ag_eval_t *ev, const ag_tool_call_t *call, ag_str_t in, uint64_t line)
{
    pass_t p1, p2;
    uint32_t n = ev->st.nrules;
    memset(ev->hit, 0, n ? n : 1);
    ag_buf_reset(&ev->reasons);
    int rc = run_pass(ev, call, in, &ev->out1, true, &p1);
    if (rc == AG_ENOENT)
        return AG_ENOENT; /* a tool that carries no code we know: not a reply */
    ag_eval_group_t *g = grp(ev);
    if (call && rc == AG_EINVAL) {
        /* arguments that are not JSON (a slip, a cut reply): the proxy passes them through
         * unchanged, so they are a reply nobody judged */
        ev->st.replies++;
        ev->st.calls++;
        ev->st.unjudged++;
        g->replies++;
        g->calls++;
        g->unjudged++;
        return AG_OK;
    }
    if (rc != AG_OK) {
        ev->st.skipped++;
        g->skipped++;
        return AG_ETOOBIG;
    }
    ev->st.replies++;
    ev->st.calls += call != NULL;
    g->replies++;
    g->calls += call != NULL;
    if (p1.blocks == 0) {
        ev->st.no_code++;
        g->no_code++;
        return AG_OK;
    }
    if (p1.unjudged) {
        /* code too broken to judge: reported apart, never counted as compliant */
        ev->st.unjudged++;
        g->unjudged++;
        return AG_OK;
    }
    ev->st.with_code++;
    g->with_code++;
    bool raw_ok = clean(&p1);
    bool fixed_ok = raw_ok; /* nothing changed: the second pass would see the same reply */
    if (!raw_ok) {
        if (run_pass(ev, call, ag_buf_str(&ev->out1), &ev->out2, false, &p2) == AG_OK) {
            fixed_ok = clean(&p2) && p1.blocked == 0;
        } else {
            /* the output cannot be checked: nothing the first pass touched counts as fixed */
            for (uint32_t i = 0; i < n; i++)
                if (ev->hit[i] & HIT_ANY1)
                    ev->hit[i] |= HIT_ANY2;
            fixed_ok = false;
        }
    }
    ag_eval_counts_t c = {raw_ok, fixed_ok, p1.rewrites > 0, !fixed_ok, p1.flags > 0};
    add_counts(&ev->st.all, &c);
    add_counts(&g->all, &c);
    if (!fixed_ok && ev->st.nunfixable_lines < AG_EVAL_MAX_EXAMPLES) {
        uint32_t k = ev->st.nunfixable_lines;
        if (k == 0 || ev->st.unfixable_lines[k - 1] != line)
            ev->st.unfixable_lines[ev->st.nunfixable_lines++] = line;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t h = ev->hit[i];
        bool ok = !(h & (HIT_ANY2 | HIT_BLK1));
        ag_eval_counts_t rc1 = {!(h & HIT_ANY1), ok, (h & HIT_RW1) != 0, !ok, (h & HIT_FLAG1) != 0};
        add_counts(&ev->rule[i], &rc1);
        add_counts(&g->rule[i], &rc1);
    }
    if (ev->keep && call == NULL) {
        if (p1.flags > 0)
            keep_example(ev, EX_FLAGGED, in, ag_str(NULL, 0), line);
        else if (!fixed_ok)
            keep_example(ev, EX_UNFIXABLE, in, ag_str(NULL, 0), line);
        else if (p1.rewrites > 0)
            keep_example(ev, EX_REWRITTEN, in, ag_buf_str(&ev->out1), line);
    }
    return AG_OK;
}

void ag_eval_keep_examples(ag_eval_t *ev, bool on)
{
    ev->keep = on;
}

void *ag_eval_examples_json(const ag_eval_t *ev)
{
    return ev->examples ? json_incref(ev->examples) : NULL;
}

int ag_eval_reply(ag_eval_t *ev, ag_str_t reply, uint64_t line)
{
    return judge_one(ev, NULL, reply, line);
}

int ag_eval_call(ag_eval_t *ev, const ag_tool_call_t *call, ag_str_t input, uint64_t line)
{
    return judge_one(ev, call, input, line);
}

/* ---- records ---- */

/* The text of a message's content: a string, or the text of its text/output_text parts. */
static bool content_text(ag_eval_t *ev, const json_t *content, ag_str_t *out)
{
    if (json_is_string(content)) {
        *out = ag_str(json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content))
        return false;
    bool found = false;
    ag_buf_reset(&ev->joined);
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *text = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_string(text))
            continue;
        if (type && strcmp(type, "text") != 0 && strcmp(type, "output_text") != 0)
            continue;
        if (ag_buf_append(&ev->joined, json_string_value(text), json_string_length(text)) != AG_OK)
            return false;
        found = true;
    }
    *out = ag_buf_str(&ev->joined);
    return found;
}

/* Judges one reply; counts judged ones in *n and too large ones in *big. */
static void judge(ag_eval_t *ev, ag_str_t text, uint64_t line, uint32_t *n, uint32_t *big)
{
    if (ag_eval_reply(ev, text, line) == AG_OK)
        (*n)++;
    else
        (*big)++;
}

static ag_str_t jstr(const json_t *s)
{
    return json_is_string(s) ? ag_str(json_string_value(s), json_string_length(s))
                             : ag_str(NULL, 0);
}

/* Judges one call whose input is a JSON string, or (arguments written as an object, as some
 * hand-made records do) the object's JSON text. Returns whether it was judged (or skipped as too
 * large): false for a tool that carries no code we know. */
static bool judge_call(ag_eval_t *ev, ag_tool_call_t *call, const json_t *input, uint64_t line,
                       uint32_t *n, uint32_t *big)
{
    char *dumped = NULL;
    ag_str_t in;
    if (json_is_string(input)) {
        in = jstr(input);
    } else if (call->input == AG_TOOL_IN_ARGS && json_is_object(input)) {
        dumped = json_dumps(input, JSON_COMPACT);
        if (dumped == NULL)
            return false;
        in = ag_cstr(dumped);
    } else {
        return false;
    }
    int rc = ag_eval_call(ev, call, in, line);
    free(dumped);
    if (rc == AG_ENOENT)
        return false;
    if (rc == AG_OK)
        (*n)++;
    else
        (*big)++;
    return true;
}

/* The tool calls of a Chat message (or of a fine-tuning record's assistant message):
 * tool_calls[] of {type: function, function: {name, arguments}} or {type: custom, custom: {name,
 * input}}, and the legacy function_call {name, arguments}. *seen counts the calls there were,
 * judged or not; returns the calls judged. */
static uint32_t judge_chat_calls(ag_eval_t *ev, const json_t *msg, uint64_t line, uint32_t *n,
                                 uint32_t *big, uint32_t *seen)
{
    uint32_t judged = 0;
    size_t i;
    const json_t *tc;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, tc)
    {
        const json_t *custom = json_object_get(tc, "custom");
        const json_t *fn = json_object_get(tc, "function");
        const json_t *body = json_is_object(custom) ? custom : fn;
        ag_tool_call_t call;
        memset(&call, 0, sizeof(call));
        call.id = jstr(json_object_get(tc, "id"));
        call.name = jstr(json_object_get(body, "name"));
        call.input = body == custom ? AG_TOOL_IN_TEXT : AG_TOOL_IN_ARGS;
        (*seen)++;
        if (call.name.ptr && json_is_object(body) &&
            judge_call(ev, &call, json_object_get(body, body == custom ? "input" : "arguments"),
                       line, n, big))
            judged++;
    }
    const json_t *fc = json_object_get(msg, "function_call");
    if (json_is_object(fc)) {
        ag_tool_call_t call;
        memset(&call, 0, sizeof(call));
        call.name = jstr(json_object_get(fc, "name"));
        call.input = AG_TOOL_IN_ARGS;
        (*seen)++;
        if (call.name.ptr && judge_call(ev, &call, json_object_get(fc, "arguments"), line, n, big))
            judged++;
    }
    return judged;
}

/* A reply whose only output was tool calls that carry no code: one reply without code. */
static void no_code_reply(ag_eval_t *ev, uint32_t *n)
{
    ev->st.replies++;
    ev->st.no_code++;
    (*n)++;
}

/* An assistant message or a choice's message: its text, then its tool calls. */
static void judge_message(ag_eval_t *ev, const json_t *msg, const json_t *legacy, uint64_t line,
                          uint32_t *n, uint32_t *big)
{
    ag_str_t text;
    bool has_text = true;
    if (content_text(ev, json_object_get(msg, "content"), &text))
        judge(ev, text, line, n, big);
    else if (json_is_string(legacy))
        judge(ev, jstr(legacy), line, n, big);
    else
        has_text = false;
    uint32_t seen = 0;
    if (judge_chat_calls(ev, msg, line, n, big, &seen) == 0 && seen > 0 && !has_text)
        no_code_reply(ev, n);
}

/* Every assistant message of a fine-tuning record. */
static void judge_messages(ag_eval_t *ev, const json_t *msgs, uint64_t line, uint32_t *n,
                           uint32_t *big)
{
    size_t i;
    const json_t *item;
    json_array_foreach(msgs, i, item)
    {
        const char *role = json_string_value(json_object_get(item, "role"));
        if (role && strcmp(role, "assistant") == 0)
            judge_message(ev, item, NULL, line, n, big);
    }
}

/* Every choice of a Chat Completions object (or a legacy completions object's text). */
static void judge_choices(ag_eval_t *ev, const json_t *choices, uint64_t line, uint32_t *n,
                          uint32_t *big)
{
    size_t i;
    const json_t *item;
    json_array_foreach(choices, i, item)
    {
        judge_message(ev, json_object_get(item, "message"), json_object_get(item, "text"), line, n,
                      big);
    }
}

/* The tool-call items of a Responses object's output: function_call (arguments),
 * custom_tool_call (input) and apply_patch_call (operation.diff of a create_file or update_file,
 * as the tool apply_patch). *seen counts them; returns the calls judged. */
static uint32_t judge_output_calls(ag_eval_t *ev, const json_t *output, uint64_t line, uint32_t *n,
                                   uint32_t *big, uint32_t *seen)
{
    uint32_t judged = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(output, i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        const json_t *input = NULL;
        ag_tool_call_t call;
        memset(&call, 0, sizeof(call));
        call.id = jstr(json_object_get(item, "call_id"));
        call.name = jstr(json_object_get(item, "name"));
        if (type == NULL) {
            continue;
        } else if (strcmp(type, "function_call") == 0) {
            call.input = AG_TOOL_IN_ARGS;
            input = json_object_get(item, "arguments");
        } else if (strcmp(type, "custom_tool_call") == 0) {
            call.input = AG_TOOL_IN_TEXT;
            input = json_object_get(item, "input");
        } else if (strcmp(type, "apply_patch_call") == 0) {
            const json_t *op = json_object_get(item, "operation");
            const char *optype = json_string_value(json_object_get(op, "type"));
            (*seen)++;
            if (optype == NULL ||
                (strcmp(optype, "create_file") != 0 && strcmp(optype, "update_file") != 0))
                continue; /* delete_file carries no code */
            call.name = ag_cstr("apply_patch");
            call.file = jstr(json_object_get(op, "path"));
            call.input = optype[0] == 'c' ? AG_TOOL_IN_PATCH_CREATE : AG_TOOL_IN_PATCH_UPDATE;
            if (judge_call(ev, &call, json_object_get(op, "diff"), line, n, big))
                judged++;
            continue;
        } else {
            continue;
        }
        (*seen)++;
        if (call.name.ptr && judge_call(ev, &call, input, line, n, big))
            judged++;
    }
    return judged;
}

/* A Responses object is one reply: the output_text parts of its message items joined, as the
 * SDKs' response.output_text; then each tool call item is a reply of its own. */
static void judge_output(ag_eval_t *ev, const json_t *output, uint64_t line, uint32_t *n,
                         uint32_t *big)
{
    bool found = false, too_big = false;
    size_t i, k;
    const json_t *item, *part;
    ag_buf_reset(&ev->joined);
    json_array_foreach(output, i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        const json_t *parts = json_object_get(item, "content");
        if (type == NULL || strcmp(type, "message") != 0 || !json_is_array(parts))
            continue;
        json_array_foreach(parts, k, part)
        {
            const char *pt = json_string_value(json_object_get(part, "type"));
            const json_t *t = json_object_get(part, "text");
            if (too_big || pt == NULL || strcmp(pt, "output_text") != 0 || !json_is_string(t))
                continue;
            if (ag_buf_append(&ev->joined, json_string_value(t), json_string_length(t)) != AG_OK)
                too_big = true;
            found = true;
        }
    }
    if (too_big)
        (*big)++;
    else if (found)
        judge(ev, ag_buf_str(&ev->joined), line, n, big);
    uint32_t seen = 0;
    if (judge_output_calls(ev, output, line, n, big, &seen) == 0 && seen > 0 && !found)
        no_code_reply(ev, n);
}

int ag_eval_record(ag_eval_t *ev, const void *json, uint64_t line, char *why)
{
    const json_t *root = json;
    const char *err = NULL;
    char tmp[AG_EVAL_MSG];
    uint32_t n = 0, big = 0;
    if (!json_is_object(root)) {
        err = "not a JSON object";
        goto out;
    }
    const json_t *msgs = json_object_get(root, "messages");
    const json_t *choices = json_object_get(root, "choices");
    const json_t *output = json_object_get(root, "output");
    const json_t *body = json_object_get(json_object_get(root, "response"), "body");
    if (!msgs && !choices && !output && json_is_object(body)) {
        /* a Batch API output line: {"custom_id": ..., "response": {"status_code": ..., "body"}} */
        root = body;
        msgs = json_object_get(root, "messages");
        choices = json_object_get(root, "choices");
        output = json_object_get(root, "output");
    }
    const json_t *completion = json_object_get(root, "completion");
    const json_t *error = json_object_get(root, "error");
    const json_t *model = json_object_get(root, "model");
    if (!json_is_string(model))
        model = json_object_get(json, "model");
    /* a line --save wrote under --hint on/both says so: its own row, as in the live run */
    const json_t *hint = json_object_get(json, "hint");
    bool hinted = json_is_string(hint) && strcmp(json_string_value(hint), "on") == 0;
    uint32_t saved = ev->cur;
    if (ev->by_record && json_is_string(model) && json_string_length(model) > 0)
        ev->cur = find_group(ev, json_string_value(model), hinted);
    else if (ev->by_record && hinted)
        ev->cur = find_group(ev, ev->src_label ? ev->src_label : "", true);
    if (msgs) {
        err = json_is_array(msgs) ? "no assistant message with text content or tool calls"
                                  : "\"messages\" is not an array";
        judge_messages(ev, msgs, line, &n, &big);
    } else if (choices) {
        err = json_is_array(choices) ? "no choice with text content or tool calls"
                                     : "\"choices\" is not an array";
        judge_choices(ev, choices, line, &n, &big);
    } else if (output) {
        err = json_is_array(output)
                  ? "no output_text part in a message item of \"output\", and no tool call"
                  : "\"output\" is not an array";
        judge_output(ev, output, line, &n, &big);
    } else if (completion) {
        err = "\"completion\" is not a string";
        if (json_is_string(completion))
            judge(ev, ag_str(json_string_value(completion), json_string_length(completion)), line,
                  &n, &big);
    } else if (json_is_object(error)) {
        const char *m = json_string_value(json_object_get(error, "message"));
        snprintf(tmp, sizeof(tmp), "an error object: %s", m ? m : "(no message)");
        err = tmp;
    } else {
        err = "not a known record: expected \"messages\", \"choices\", \"output\" or "
              "\"completion\"";
    }
    ev->cur = saved;
out:
    if (n > 0)
        return AG_OK;
    if (big > 0)
        err = "the reply is too large to rewrite";
    if (why)
        copy_msg(why, err, strlen(err));
    return AG_EINVAL;
}

static bool blank(ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] != ' ' && s.ptr[i] != '\t' && s.ptr[i] != '\r' && s.ptr[i] != '\n' &&
            s.ptr[i] != '\f' && s.ptr[i] != '\v')
            return false;
    return true;
}

int ag_eval_line(ag_eval_t *ev, ag_str_t line, uint64_t lineno)
{
    char why[AG_EVAL_MSG];
    ev->st.lines++;
    if (line.len && line.ptr[line.len - 1] == '\r')
        line.len--;
    if (blank(line)) {
        ev->st.blank++;
        return AG_OK;
    }
    if (line.len > AG_EVAL_MAX_LINE) {
        ag_eval_bad_line(ev, lineno, "line longer than 8 MiB");
        return AG_EINVAL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(line.ptr, line.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (j == NULL) {
        snprintf(why, sizeof(why), "invalid JSON at column %d: %s", jerr.column, jerr.text);
        ag_eval_bad_line(ev, lineno, why);
        return AG_EINVAL;
    }
    int rc = ag_eval_record(ev, j, lineno, why);
    json_decref(j);
    if (rc != AG_OK) {
        ag_eval_bad_line(ev, lineno, why);
        return AG_EINVAL;
    }
    ev->st.used++;
    return AG_OK;
}

void ag_eval_text(ag_eval_t *ev, ag_str_t text)
{
    begin_source(ev, NULL);
    uint64_t lineno = 0;
    size_t pos = 0;
    while (pos < text.len) {
        const char *nl = memchr(text.ptr + pos, '\n', text.len - pos);
        size_t end = nl ? (size_t)(nl - text.ptr) : text.len;
        (void)ag_eval_line(ev, ag_str(text.ptr + pos, end - pos), ++lineno);
        pos = end + 1;
    }
    end_source(ev);
}

/* Calls fn for every line of path ("-" = stdin), without its '\n'; draws a bar for large files. */
static int each_line(const char *path, bool progress, void (*fn)(void *, ag_str_t, uint64_t),
                     void *arg)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (f == NULL)
        return AG_EIO;
    progress_t bar = {0};
    struct stat sb;
    uint64_t total = 0, done = 0;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode))
        total = (uint64_t)sb.st_size;
    bar.on = progress && total >= PROGRESS_MIN;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    uint64_t lineno = 0;
    char what[64];
    while ((got = getline(&buf, &cap, f)) >= 0) {
        done += (uint64_t)got;
        size_t len = (size_t)got;
        if (len && buf[len - 1] == '\n')
            len--;
        fn(arg, ag_str(buf, len), ++lineno);
        snprintf(what, sizeof(what), "%" PRIu64 " lines", lineno);
        progress_draw(&bar, done, total, what);
    }
    int err = ferror(f) ? errno : 0;
    progress_end(&bar);
    free(buf);
    if (!is_stdin)
        fclose(f);
    if (err) {
        errno = err;
        return AG_EIO;
    }
    return AG_OK;
}

static void file_line(void *arg, ag_str_t line, uint64_t lineno)
{
    (void)ag_eval_line(arg, line, lineno);
}

int ag_eval_file(ag_eval_t *ev, const char *path, bool progress)
{
    begin_source(ev, strcmp(path, "-") == 0 ? "stdin" : path);
    int rc = each_line(path, progress, file_line, ev);
    end_source(ev);
    return rc;
}

/* ---- reports ---- */

typedef struct out {
    ag_buf_t *b;
    int rc; /* first error; later writes are skipped */
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    if (o->rc != AG_OK)
        return;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->rc = AG_EINVAL;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        o->rc = ag_buf_append(o->b, small, (size_t)n);
        return;
    }
    char *big = ag_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->rc = ag_buf_append(o->b, big, (size_t)n);
    free(big);
}

static void put_json_str(out_t *o, const char *s)
{
    if (o->rc == AG_OK)
        o->rc = ag_json_append_str(o->b, ag_cstr(s ? s : ""));
}

/* A percentage in units of 1/scale of a percent, rounded down: a figure never overstates (99.96%
 * shows as 99.9%, not 100.0%). Integer arithmetic, so the figure is exact. */
static int64_t pct_units(uint64_t num, uint64_t den, uint64_t scale)
{
    return (int64_t)((num * 100u * scale) / den);
}

/* "32.3%" (rounded down), or "n/a" without a denominator. */
static const char *fmt_pct(char *b, size_t n, uint64_t num, uint64_t den)
{
    if (den == 0)
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%.1f%%", (double)pct_units(num, den, 10) / 10.0);
    return b;
}

/* The difference of the two figures as shown, so that the table adds up. */
static const char *fmt_diff(char *b, size_t n, uint64_t raw, uint64_t fixed, uint64_t den)
{
    if (den == 0)
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%+.1f pp",
                 (double)(pct_units(fixed, den, 10) - pct_units(raw, den, 10)) / 10.0);
    return b;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static void put_header(out_t *o, const ag_eval_stats_t *st, const ag_eval_info_t *in)
{
    if (in->live) {
        put(o, "astgate eval --live: model%s %s at %s", in->variants > 1 ? "s" : "",
            in->model ? in->model : "?", in->upstream ? in->upstream : "?");
        if (in->has_temperature)
            put(o, ", temperature %g", in->temperature);
        if (in->hint && strcmp(in->hint, "off") != 0)
            put(o, ", hint %s", in->hint);
        put(o, "\n");
    } else {
        put(o, "astgate eval: %s\n",
            in->source == NULL             ? "(memory)"
            : strcmp(in->source, "-") == 0 ? "stdin"
                                           : in->source);
    }
    if (in->nrule_files) {
        put(o, "rules: ");
        for (uint32_t i = 0; i < in->nrule_files; i++)
            put(o, "%s%s", i ? ", " : "", in->rule_files[i]);
        put(o, " (%u rule%s)\n", st->nrules, plural(st->nrules, "", "s"));
    }
    if (in->live) {
        uint32_t nv = in->variants ? in->variants : 1;
        uint64_t total = st->used * (in->samples ? in->samples : 1) * nv;
        put(o, "prompts %" PRIu64 " x %u", st->used, in->samples ? in->samples : 1);
        bool both = in->hint && strcmp(in->hint, "both") == 0;
        if (nv > (both ? 2u : 1u))
            put(o, " x %u models", both ? nv / 2 : nv);
        if (both)
            put(o, " x 2 (without and with the hint)");
        put(o, " = %" PRIu64 " request%s: %" PRIu64 " answered, %" PRIu64 " failed\n", total,
            plural(total, "", "s"), st->requests - st->failed, st->failed);
    }
    put(o, "\n");
}

static void put_lines_list(out_t *o, const uint64_t *lines, uint32_t n, uint64_t total)
{
    for (uint32_t i = 0; i < n; i++)
        put(o, "%s%" PRIu64, i ? ", " : "", lines[i]);
    if (total > n)
        put(o, ", ...");
}

/* A group's name in the table: the model, "+hint" for the hinted arm. */
static const char *group_name(char *b, size_t n, const ag_eval_group_t *g)
{
    snprintf(b, n, "%s%s", g->model[0] ? g->model : "(no model)", g->hint ? " +hint" : "");
    return b;
}

/* Several models: one row each, then their rows per rule. */
static void put_models(out_t *o, const ag_eval_stats_t *st, bool live)
{
    char p1[32], p2[32], d[32], name[AG_EVAL_MAX_MODEL + 8];
    int w = 5;
    for (uint32_t i = 0; i < st->ngroups; i++) {
        int l = (int)strlen(group_name(name, sizeof(name), &st->groups[i]));
        if (l > w)
            w = l > 48 ? 48 : l;
    }
    put(o, "  %-*s %9s %10s %8s %11s %12s %10s %8s %10s%s\n", w, "model", "replies", "with code",
        "raw", "corrected", "difference", "rewritten", "flagged", "unfixable",
        live ? "     failed" : "");
    for (uint32_t i = 0; i < st->ngroups; i++) {
        const ag_eval_group_t *g = &st->groups[i];
        uint64_t den = g->with_code;
        put(o,
            "  %-*.*s %9" PRIu64 " %10" PRIu64 " %8s %11s %12s %10" PRIu64 " %8" PRIu64
            " %10" PRIu64,
            w, w, group_name(name, sizeof(name), g), g->replies, g->with_code,
            fmt_pct(p1, sizeof(p1), g->all.raw_ok, den),
            fmt_pct(p2, sizeof(p2), g->all.corrected_ok, den),
            fmt_diff(d, sizeof(d), g->all.raw_ok, g->all.corrected_ok, den), g->all.rewritten,
            g->all.flagged, g->all.unfixable);
        if (live)
            put(o, " %10" PRIu64, g->failed);
        put(o, "\n");
    }
    int rw = 4;
    for (uint32_t i = 0; i < st->nrules; i++) {
        int l = (int)strlen(st->rule_ids[i]);
        if (l > rw)
            rw = l > 48 ? 48 : l;
    }
    put(o, "\n  %-*s %-*s %8s %11s %12s %10s %8s %10s\n", rw, "rule", w, "model", "raw",
        "corrected", "difference", "rewritten", "flagged", "unfixable");
    for (uint32_t r = 0; r < st->nrules; r++) {
        for (uint32_t i = 0; i < st->ngroups; i++) {
            const ag_eval_group_t *g = &st->groups[i];
            const ag_eval_counts_t *c = &g->rule[r];
            uint64_t den = g->with_code;
            put(o, "  %-*.*s %-*.*s %8s %11s %12s %10" PRIu64 " %8" PRIu64 " %10" PRIu64 "\n", rw,
                rw, i == 0 ? st->rule_ids[r] : "", w, w, group_name(name, sizeof(name), g),
                fmt_pct(p1, sizeof(p1), c->raw_ok, den),
                fmt_pct(p2, sizeof(p2), c->corrected_ok, den),
                fmt_diff(d, sizeof(d), c->raw_ok, c->corrected_ok, den), c->rewritten, c->flagged,
                c->unfixable);
        }
    }
    put(o, "\n  all models:\n");
}

int ag_eval_format_table(const ag_eval_t *ev, const ag_eval_info_t *info, ag_buf_t *b)
{
    const ag_eval_stats_t *st = &ev->st;
    ag_eval_info_t none;
    memset(&none, 0, sizeof(none));
    const ag_eval_info_t *in = info ? info : &none;
    out_t o = {b, AG_OK};
    char p1[32], p2[32], d[32];
    uint64_t den = st->with_code;
    const ag_eval_counts_t *a = &st->all;
    const char *where = in->live ? "prompt line" : "line";

    put_header(&o, st, in);
    if (st->ngroups > 1)
        put_models(&o, st, in->live);
    put(&o,
        "  %-20s %9" PRIu64 "   %" PRIu64 " with code, %" PRIu64
        " without code (not counted in the accuracy)\n",
        "replies", st->replies, st->with_code, st->no_code);
    if (st->calls)
        put(&o, "  %-20s %9" PRIu64 "   of the replies: calls to tools that carry code\n",
            "tool calls", st->calls);
    if (st->unjudged)
        put(&o,
            "  %-20s %9" PRIu64 "   code too broken to judge (apart: neither compliant nor "
            "counted in the accuracy)\n",
            "not judged", st->unjudged);
    put(&o, "  %-20s %9s   %" PRIu64 " of %" PRIu64 " compliant as written\n", "raw accuracy",
        fmt_pct(p1, sizeof(p1), a->raw_ok, den), a->raw_ok, den);
    put(&o, "  %-20s %9s   %" PRIu64 " of %" PRIu64 " compliant after the rewrite\n",
        "corrected accuracy", fmt_pct(p2, sizeof(p2), a->corrected_ok, den), a->corrected_ok, den);
    put(&o, "  %-20s %9s\n", "difference", fmt_diff(d, sizeof(d), a->raw_ok, a->corrected_ok, den));
    put(&o, "  %-20s %9" PRIu64 "   replies the rewrite changed\n", "rewritten", a->rewritten);
    put(&o, "  %-20s %9" PRIu64 "   still not compliant after the rewrite", "unfixable",
        a->unfixable);
    if (st->nunfixable_lines) {
        put(&o, "\n  %-20s %9s   %s%s ", "", "", where, plural(st->nunfixable_lines, "", "s"));
        put_lines_list(&o, st->unfixable_lines, st->nunfixable_lines, a->unfixable);
    }
    put(&o, "\n");
    put(&o, "  %-20s %9" PRIu64 "   not fixable here: the audit lines say why (in unfixable)\n",
        "flagged", a->flagged);
    if (st->skipped)
        put(&o, "  %-20s %9" PRIu64 "   too large to rewrite\n", "skipped replies", st->skipped);

    /* one row per rule */
    int w = 4;
    for (uint32_t i = 0; i < st->nrules; i++) {
        int l = (int)strlen(st->rule_ids[i]);
        if (l > w)
            w = l > 48 ? 48 : l;
    }
    put(&o, "\n  %-*s %8s %11s %12s %11s %11s %9s\n", w, "rule", "raw", "corrected", "difference",
        "rewritten", "unfixable", "flagged");
    for (uint32_t i = 0; i < st->nrules; i++) {
        const ag_eval_counts_t *c = &st->rule[i];
        put(&o, "  %-*.*s %8s %11s %12s %11" PRIu64 " %11" PRIu64 " %9" PRIu64 "\n", w, w,
            st->rule_ids[i], fmt_pct(p1, sizeof(p1), c->raw_ok, den),
            fmt_pct(p2, sizeof(p2), c->corrected_ok, den),
            fmt_diff(d, sizeof(d), c->raw_ok, c->corrected_ok, den), c->rewritten, c->unfixable,
            c->flagged);
    }

    /* where the replies came from */
    put(&o, "\n  %s %" PRIu64 ": %" PRIu64 " used", in->live ? "prompt lines" : "lines", st->lines,
        st->used);
    if (st->blank)
        put(&o, ", %" PRIu64 " blank", st->blank);
    put(&o, ", %" PRIu64 " bad", st->bad);
    if (st->bad) {
        put(&o, " (skipped: %s%s ", where, plural(st->bad, "", "s"));
        uint64_t nums[10];
        uint32_t k = 0;
        for (; k < st->nbad_list && k < 10; k++)
            nums[k] = st->bad_list[k].line;
        put_lines_list(&o, nums, k, st->bad);
        put(&o, ")");
    }
    put(&o, "\n");
    if (in->live && st->nerrors) {
        put(&o, "  upstream errors %" PRIu64 ":\n", st->failed);
        for (uint32_t i = 0; i < st->nerrors; i++) {
            const ag_eval_error_t *e = &st->errors[i];
            if (e->status > 0)
                put(&o, "    %" PRIu64 " x HTTP %ld: %s\n", e->count, e->status, e->msg);
            else if (e->status == 0)
                put(&o, "    %" PRIu64 " x no HTTP answer: %s\n", e->count, e->msg);
            else
                put(&o, "    %" PRIu64 " x %s\n", e->count, e->msg);
        }
    }
    return o.rc;
}

/* A percentage with two decimals, rounded down, or null. */
static void put_json_pct(out_t *o, const char *key, uint64_t num, uint64_t den)
{
    if (den == 0)
        put(o, "\"%s\": null", key);
    else
        put(o, "\"%s\": %.2f", key, (double)pct_units(num, den, 100) / 100.0);
}

static void put_json_counts(out_t *o, const ag_eval_counts_t *c, uint64_t den, const char *ind)
{
    put(o, "%s\"raw_compliant\": %" PRIu64 ",\n", ind, c->raw_ok);
    put(o, "%s\"corrected_compliant\": %" PRIu64 ",\n", ind, c->corrected_ok);
    put(o, "%s\"rewritten\": %" PRIu64 ",\n", ind, c->rewritten);
    put(o, "%s\"unfixable\": %" PRIu64 ",\n", ind, c->unfixable);
    put(o, "%s\"flagged\": %" PRIu64 ",\n%s", ind, c->flagged, ind);
    put_json_pct(o, "raw_accuracy_pct", c->raw_ok, den);
    put(o, ",\n%s", ind);
    put_json_pct(o, "corrected_accuracy_pct", c->corrected_ok, den);
    if (den == 0)
        put(o, ",\n%s\"difference_pp\": null", ind);
    else
        put(o, ",\n%s\"difference_pp\": %.2f", ind,
            (double)(pct_units(c->corrected_ok, den, 100) - pct_units(c->raw_ok, den, 100)) /
                100.0);
}

int ag_eval_format_json(const ag_eval_t *ev, const ag_eval_info_t *info, ag_buf_t *b)
{
    const ag_eval_stats_t *st = &ev->st;
    ag_eval_info_t none;
    memset(&none, 0, sizeof(none));
    const ag_eval_info_t *in = info ? info : &none;
    out_t o = {b, AG_OK};

    put(&o, "{\n  \"version\": 1,\n  \"mode\": \"%s\",\n  \"input\": {\"file\": ",
        in->live ? "live" : "offline");
    if (in->source)
        put_json_str(&o, in->source);
    else
        put(&o, "null");
    put(&o,
        ", \"lines\": %" PRIu64 ", \"used\": %" PRIu64 ", \"blank\": %" PRIu64 ", \"bad\": %" PRIu64
        "},\n",
        st->lines, st->used, st->blank, st->bad);
    put(&o, "  \"rule_files\": [");
    for (uint32_t i = 0; i < in->nrule_files; i++) {
        put(&o, "%s", i ? ", " : "");
        put_json_str(&o, in->rule_files[i]);
    }
    put(&o, "],\n");
    put(&o,
        "  \"replies\": %" PRIu64 ",\n  \"with_code\": %" PRIu64 ",\n  \"no_code\": %" PRIu64
        ",\n  \"skipped\": %" PRIu64 ",\n  \"unjudged\": %" PRIu64 ",\n  \"tool_calls\": %" PRIu64
        ",\n",
        st->replies, st->with_code, st->no_code, st->skipped, st->unjudged, st->calls);
    put_json_counts(&o, &st->all, st->with_code, "  ");
    put(&o, ",\n  \"unfixable_lines\": [");
    for (uint32_t i = 0; i < st->nunfixable_lines; i++)
        put(&o, "%s%" PRIu64, i ? ", " : "", st->unfixable_lines[i]);
    put(&o, "],\n  \"rules\": [");
    for (uint32_t i = 0; i < st->nrules; i++) {
        put(&o, "%s\n    {\n      \"id\": ", i ? "," : "");
        put_json_str(&o, st->rule_ids[i]);
        put(&o, ",\n");
        put_json_counts(&o, &st->rule[i], st->with_code, "      ");
        put(&o, "\n    }");
    }
    put(&o, "%s],\n  \"models\": [", st->nrules ? "\n  " : "");
    for (uint32_t g = 0; g < st->ngroups; g++) {
        const ag_eval_group_t *m = &st->groups[g];
        put(&o, "%s\n    {\n      \"model\": ", g ? "," : "");
        put_json_str(&o, m->model);
        put(&o,
            ",\n      \"hint\": \"%s\",\n      \"replies\": %" PRIu64
            ",\n      \"with_code\": %" PRIu64 ",\n      \"no_code\": %" PRIu64
            ",\n      \"skipped\": %" PRIu64 ",\n      \"unjudged\": %" PRIu64
            ",\n      \"tool_calls\": %" PRIu64 ",\n",
            m->hint ? "on" : "off", m->replies, m->with_code, m->no_code, m->skipped, m->unjudged,
            m->calls);
        if (in->live)
            put(&o, "      \"requests\": %" PRIu64 ",\n      \"failed\": %" PRIu64 ",\n",
                m->requests, m->failed);
        put_json_counts(&o, &m->all, m->with_code, "      ");
        put(&o, ",\n      \"rules\": [");
        for (uint32_t i = 0; i < st->nrules; i++) {
            put(&o, "%s\n        {\n          \"id\": ", i ? "," : "");
            put_json_str(&o, st->rule_ids[i]);
            put(&o, ",\n");
            put_json_counts(&o, &m->rule[i], m->with_code, "          ");
            put(&o, "\n        }");
        }
        put(&o, "%s]\n    }", st->nrules ? "\n      " : "");
    }
    put(&o, "%s],\n  \"bad_lines\": [", st->ngroups ? "\n  " : "");
    for (uint32_t i = 0; i < st->nbad_list; i++) {
        put(&o, "%s\n    {\"line\": %" PRIu64 ", \"error\": ", i ? "," : "", st->bad_list[i].line);
        put_json_str(&o, st->bad_list[i].msg);
        put(&o, "}");
    }
    put(&o, "%s]", st->nbad_list ? "\n  " : "");
    if (in->live) {
        put(&o, ",\n  \"live\": {\n    \"upstream\": ");
        put_json_str(&o, in->upstream);
        put(&o, ",\n    \"model\": ");
        put_json_str(&o, in->model);
        put(&o, ",\n    \"hint\": \"%s\"", in->hint ? in->hint : "off");
        put(&o, ",\n    \"prompts\": %" PRIu64 ",\n    \"samples\": %u,\n    \"temperature\": ",
            st->used, in->samples);
        if (in->has_temperature)
            put(&o, "%g", in->temperature);
        else
            put(&o, "null");
        put(&o,
            ",\n    \"requests\": %" PRIu64 ",\n    \"answered\": %" PRIu64
            ",\n    \"failed\": %" PRIu64 ",\n    \"errors\": [",
            st->requests, st->requests - st->failed, st->failed);
        for (uint32_t i = 0; i < st->nerrors; i++) {
            const ag_eval_error_t *e = &st->errors[i];
            put(&o, "%s\n      {\"status\": ", i ? "," : "");
            if (e->status >= 0)
                put(&o, "%ld", e->status);
            else
                put(&o, "null");
            put(&o, ", \"message\": ");
            put_json_str(&o, e->msg);
            put(&o, ", \"count\": %" PRIu64 "}", e->count);
        }
        put(&o, "%s]\n  }", st->nerrors ? "\n    " : "");
    }
    put(&o, "\n}\n");
    return o.rc;
}

/* ---- live mode ---- */

typedef struct prompt {
    json_t *msgs;  /* the request's messages (owned) */
    uint64_t line; /* in the prompts file */
} prompt_t;

typedef struct prompts {
    ag_eval_t *ev;
    const ag_eval_live_opts_t *o;
    prompt_t *v;
    uint32_t n, cap;
} prompts_t;

/* Drops the trailing assistant messages (a fine-tuning record's answer) of a messages array. */
static void drop_answers(json_t *msgs)
{
    size_t n = json_array_size(msgs);
    while (n > 0) {
        const char *role = json_string_value(json_object_get(json_array_get(msgs, n - 1), "role"));
        if (role == NULL || strcmp(role, "assistant") != 0)
            break;
        json_array_remove(msgs, --n);
    }
}

static void prompt_line(void *arg, ag_str_t line, uint64_t lineno)
{
    prompts_t *ps = arg;
    ag_eval_t *ev = ps->ev;
    json_t *msgs = NULL, *req = NULL;
    char why[AG_EVAL_MSG];
    ev->st.lines++;
    if (line.len && line.ptr[line.len - 1] == '\r')
        line.len--;
    if (blank(line)) {
        ev->st.blank++;
        return;
    }
    size_t i = 0;
    while (i < line.len && (line.ptr[i] == ' ' || line.ptr[i] == '\t'))
        i++;
    if (line.ptr[i] == '{') {
        json_error_t jerr;
        json_t *j = json_loadb(line.ptr, line.len, 0, &jerr);
        if (j == NULL) {
            snprintf(why, sizeof(why), "invalid JSON at column %d: %s", jerr.column, jerr.text);
            ag_eval_bad_line(ev, lineno, why);
            return;
        }
        msgs = json_object_get(j, "messages");
        if (json_is_array(msgs))
            msgs = json_deep_copy(msgs);
        else
            msgs = NULL;
        json_decref(j);
        if (msgs == NULL) {
            ag_eval_bad_line(ev, lineno, "a JSON prompt line needs a \"messages\" array");
            return;
        }
        drop_answers(msgs);
        if (json_array_size(msgs) == 0) {
            ag_eval_bad_line(ev, lineno, "no message left once the assistant answer is dropped");
            goto out;
        }
    } else {
        json_t *text = json_stringn(line.ptr, line.len);
        if (text == NULL) {
            ag_eval_bad_line(ev, lineno, "the prompt is not valid UTF-8");
            return;
        }
        msgs = json_array();
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", text));
    }
    /* every model's request must encode: check it once here */
    req = json_object();
    json_object_set_new(req, "model", json_string(ps->o->models[0]));
    json_object_set(req, "messages", msgs);
    char *body = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (body == NULL) {
        ag_eval_bad_line(ev, lineno, "the prompt cannot be encoded as JSON");
        goto out;
    }
    free(body);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 16;
        ps->v = ag_xrealloc(ps->v, ps->cap * sizeof(*ps->v));
    }
    ps->v[ps->n].msgs = json_incref(msgs);
    ps->v[ps->n].line = lineno;
    ps->n++;
    ev->st.used++;
out:
    json_decref(req);
    json_decref(msgs);
}

typedef struct live {
    ag_eval_t *ev;
    const ag_eval_live_opts_t *o;
    struct event_base *base;
    ag_upstream_t *up;
    struct curl_slist *hdrs;
    char *url;
    const prompt_t *prompts;
    uint32_t nprompts;
    uint64_t total, next, done, failed;
    uint32_t inflight, parallel;
    uint32_t nvariants; /* models x hint arms */
    uint32_t narms;     /* 1 or 2 */
    bool first_on;      /* the first (or only) arm carries the hint */
    uint64_t started_ns;
    progress_t bar;
} live_t;

typedef struct job {
    live_t *lv;
    CURL *easy;
    uint32_t prompt;
    uint32_t variant; /* model (variant / narms) and hint arm (variant % narms) */
    bool too_big;
    char *req; /* the request body (curl reads it in place) */
    ag_buf_t body;
} job_t;

static const char *variant_model(const live_t *lv, uint32_t v)
{
    return lv->o->models[v / lv->narms];
}

static bool variant_hint(const live_t *lv, uint32_t v)
{
    return v % lv->narms == 0 ? lv->first_on : true;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    job_t *j = arg;
    if (ag_buf_append(&j->body, p, size * n) != AG_OK) {
        j->too_big = true;
        return 0;
    }
    return size * n;
}

/* s (len bytes) as a new string without the API key: each occurrence becomes "***" (a key has
 * at least 4 bytes, so the result is never longer than s). */
static char *scrub(const char *s, size_t len, const char *key)
{
    size_t klen = key ? strlen(key) : 0, o = 0;
    char *dst = ag_xmalloc(len + 1);
    for (size_t i = 0; i < len;) {
        if (klen >= 4 && len - i >= klen && memcmp(s + i, key, klen) == 0) {
            memcpy(dst + o, "***", 3);
            o += 3;
            i += klen;
        } else {
            dst[o++] = s[i++];
        }
    }
    dst[o] = '\0';
    return dst;
}

static void job_error(live_t *lv, long status, const char *msg, size_t len)
{
    lv->failed++;
    char *m = scrub(msg, len, lv->o->api_key);
    ag_eval_add_error(lv->ev, status, ag_cstr(m));
    free(m);
}

/* The message of a failed answer: error.message of its JSON, else the start of the body. */
static void http_error(live_t *lv, long status, const ag_buf_t *body)
{
    json_t *j = json_loadb(body->ptr ? body->ptr : "", body->len, 0, NULL);
    const json_t *m = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(m))
        job_error(lv, status, json_string_value(m), json_string_length(m));
    else if (body->len)
        job_error(lv, status, body->ptr, body->len < 160 ? body->len : 160);
    else
        job_error(lv, status, "(empty body)", 12);
    json_decref(j);
}

static void judge_answer(live_t *lv, const job_t *j, long status)
{
    json_error_t jerr;
    json_t *doc = json_loadb(j->body.ptr ? j->body.ptr : "", j->body.len, JSON_ALLOW_NUL, &jerr);
    char why[AG_EVAL_MSG + 64];
    if (doc == NULL) {
        snprintf(why, sizeof(why), "the answer is not JSON: %s", jerr.text);
        job_error(lv, status, why, strlen(why));
        return;
    }
    char rwhy[AG_EVAL_MSG];
    if (ag_eval_record(lv->ev, doc, lv->prompts[j->prompt].line, rwhy) != AG_OK) {
        job_error(lv, status, rwhy, strlen(rwhy));
    } else if (lv->o->save) {
        /* the model asked for, so that an offline run groups the lines as this one did */
        if (json_is_object(doc) && !json_is_string(json_object_get(doc, "model")))
            json_object_set_new(doc, "model", json_string(variant_model(lv, j->variant)));
        /* and the arm: a later offline run keeps the hinted answers in a row of their own */
        if (json_is_object(doc) && variant_hint(lv, j->variant))
            json_object_set_new(doc, "hint", json_string("on"));
        json_dumpf(doc, lv->o->save, JSON_COMPACT);
        fputc('\n', lv->o->save);
    }
    json_decref(doc);
}

static void start_jobs(live_t *lv);

static void job_finish(live_t *lv)
{
    char what[128];
    ag_eval_add_request(lv->ev);
    lv->done++;
    snprintf(what, sizeof(what), "%" PRIu64 "/%" PRIu64 " requests, %" PRIu64 " failed, %.1f s",
             lv->done, lv->total, lv->failed, (double)(mono_ns() - lv->started_ns) / 1e9);
    progress_draw(&lv->bar, lv->done, lv->total, what);
}

static void on_done(CURL *easy, CURLcode result, void *priv)
{
    job_t *j = priv;
    live_t *lv = j->lv;
    long status = 0;
    ag_eval_select(lv->ev, variant_model(lv, j->variant), variant_hint(lv, j->variant));
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (result != CURLE_OK) {
        /* curl's own sentence, not its error buffer: that one carries timings ("after 120097
         * milliseconds") and would split one cause into many groups */
        char m[96];
        if (j->too_big)
            snprintf(m, sizeof(m), "the answer is larger than %u MiB", MAX_BODY >> 20);
        else if (result == CURLE_OPERATION_TIMEDOUT)
            snprintf(m, sizeof(m), "no complete answer within %.3g s (--timeout)",
                     (lv->o->timeout_ms ? lv->o->timeout_ms : 120000) / 1000.0);
        else
            snprintf(m, sizeof(m), "%s", curl_easy_strerror(result));
        job_error(lv, 0, m, strlen(m));
    } else if (status < 200 || status > 299) {
        http_error(lv, status, &j->body);
    } else {
        judge_answer(lv, j, status);
    }
    curl_easy_cleanup(easy);
    ag_buf_dispose(&j->body);
    free(j->req);
    free(j);
    lv->inflight--;
    job_finish(lv);
    start_jobs(lv);
    if (lv->done == lv->total)
        event_base_loopbreak(lv->base);
}

/* The job's request with the rules' hint as its system instruction. A request the hint cannot
 * go into (it always can: eval builds it) counts as a failed request of its group. */
static int add_hint(live_t *lv, job_t *j)
{
    ag_buf_t out;
    ag_buf_init(&out, MAX_BODY);
    int rc = ag_hint_apply(AG_HINT_CHAT, ag_cstr(j->req), lv->o->hint, &out, NULL);
    if (rc == AG_OK)
        rc = ag_buf_append(&out, "", 1); /* curl reads a C string */
    if (rc != AG_OK) {
        ag_buf_dispose(&out);
        ag_eval_select(lv->ev, variant_model(lv, j->variant), true);
        job_error(lv, 0, "the hint cannot be added to the request", 39);
        job_finish(lv);
        return rc;
    }
    free(j->req);
    j->req = ag_xmalloc(out.len);
    memcpy(j->req, out.ptr, out.len);
    ag_buf_dispose(&out);
    return AG_OK;
}

static void start_jobs(live_t *lv)
{
    while (lv->inflight < lv->parallel && lv->next < lv->total) {
        /* prompt by prompt, each to every model in turn: a run cut short has them all alike */
        uint64_t k = lv->next++;
        uint32_t v = (uint32_t)(k % lv->nvariants);
        uint32_t p = (uint32_t)((k / lv->nvariants) % lv->nprompts);
        job_t *j = ag_xcalloc(1, sizeof(*j));
        j->lv = lv;
        j->prompt = p;
        j->variant = v;
        json_t *req = json_object();
        json_object_set_new(req, "model", json_string(variant_model(lv, v)));
        json_object_set(req, "messages", lv->prompts[p].msgs);
        if (lv->o->has_temperature)
            json_object_set_new(req, "temperature", json_real(lv->o->temperature));
        j->req = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(req);
        AG_ASSERT(j->req != NULL); /* the same messages encoded when the prompt was read */
        if (variant_hint(lv, v) && add_hint(lv, j) != AG_OK) {
            free(j->req);
            free(j);
            continue;
        }
        ag_buf_init(&j->body, MAX_BODY);
        CURL *e = curl_easy_init();
        AG_ASSERT(e != NULL);
        j->easy = e;
        long timeout = lv->o->timeout_ms ? (long)lv->o->timeout_ms : 120000L;
        curl_easy_setopt(e, CURLOPT_URL, lv->url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, j);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, lv->hdrs);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->req);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(j->req));
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000L ? timeout : 10000L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_USERAGENT, "astgate-eval");
        if (ag_upstream_start(lv->up, e) != AG_OK) {
            ag_eval_select(lv->ev, variant_model(lv, v), variant_hint(lv, v));
            job_error(lv, 0, "cannot start the transfer", 25);
            curl_easy_cleanup(e);
            ag_buf_dispose(&j->body);
            free(j->req);
            free(j);
            job_finish(lv);
            continue;
        }
        lv->inflight++;
    }
}

/* base + "/v1/chat/completions"; a base that already ends in /v1 gets "/chat/completions". */
static char *chat_url(const char *base)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    bool v1 = n >= 3 && memcmp(base + n - 3, "/v1", 3) == 0;
    const char *tail = v1 ? "/chat/completions" : "/v1/chat/completions";
    char *url = ag_xmalloc(n + strlen(tail) + 1);
    memcpy(url, base, n);
    strcpy(url + n, tail);
    return url;
}

int ag_eval_live(ag_eval_t *ev, const char *prompts_path, const ag_eval_live_opts_t *o)
{
    prompts_t ps = {ev, o, NULL, 0, 0};
    live_t lv;
    memset(&lv, 0, sizeof(lv));
    AG_ASSERT(o->nmodels >= 1);
    ev->by_record = false; /* the group is the model asked for, not the one the answer names */
    bool arm_off = o->arm_off || !o->arm_on;
    lv.narms = arm_off && o->arm_on ? 2 : 1;
    lv.first_on = !arm_off;
    for (uint32_t i = 0; i < o->nmodels; i++) {
        if (arm_off)
            ag_eval_select(ev, o->models[i], false);
        if (o->arm_on)
            ag_eval_select(ev, o->models[i], true);
    }
    int rc = each_line(prompts_path, false, prompt_line, &ps);
    if (rc != AG_OK)
        goto out;
    if (ps.n == 0) {
        rc = AG_EINVAL;
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = AG_EIO;
        goto out;
    }
    lv.ev = ev;
    lv.o = o;
    lv.prompts = ps.v;
    lv.nprompts = ps.n;
    lv.nvariants = o->nmodels * lv.narms;
    lv.total = (uint64_t)ps.n * (o->samples ? o->samples : 1) * lv.nvariants;
    lv.started_ns = mono_ns();
    lv.parallel = o->parallel ? o->parallel : 4;
    lv.bar.on = o->progress;
    lv.url = chat_url(o->upstream);
    lv.hdrs = curl_slist_append(lv.hdrs, "Content-Type: application/json");
    lv.hdrs = curl_slist_append(lv.hdrs, "Accept: application/json");
    if (o->api_key && o->api_key[0]) {
        size_t n = strlen(o->api_key) + 32;
        char *h = ag_xmalloc(n);
        snprintf(h, n, "Authorization: Bearer %s", o->api_key);
        lv.hdrs = curl_slist_append(lv.hdrs, h);
        memset(h, 0, n);
        free(h);
    }
    lv.base = event_base_new();
    AG_ASSERT(lv.base != NULL);
    lv.up = ag_upstream_new(lv.base, on_done, NULL); /* eval makes its own handles */
    start_jobs(&lv);
    if (lv.done < lv.total)
        event_base_dispatch(lv.base);
    /* curl keeps a timer while a transfer runs, so the loop only ends by on_done's loopbreak */
    AG_ASSERT(lv.done == lv.total && lv.inflight == 0);
    progress_end(&lv.bar);
    ag_upstream_free(lv.up);
    event_base_free(lv.base);
    curl_slist_free_all(lv.hdrs);
    free(lv.url);
    curl_global_cleanup();
    rc = AG_OK;
out:
    for (uint32_t i = 0; i < ps.n; i++)
        json_decref(ps.v[i].msgs);
    free(ps.v);
    return rc;
}

/* ---- command line ---- */

static const char EVAL_USAGE[] =
    "usage: astgate eval --rules FILE [--rules FILE...] [--config FILE] [--set NAME=VALUE...]\n"
    "                    [--json] [--html FILE] [--no-bare] DATA.jsonl [DATA.jsonl...]\n"
    "       astgate eval --live --upstream URL --model MODEL[,MODEL...] --prompts FILE [-n K]\n"
    "                    [--temperature T] [--parallel N] [--timeout SECONDS] [--save FILE]\n"
    "                    --rules FILE [--rules FILE...] [--config FILE] [--json] [--html FILE]\n"
    "                    [--hint off|on|both] [--no-bare]\n"
    "\n"
    "Measures how many replies follow the rules as written (raw) and after astgate's rewrite\n"
    "(corrected). DATA.jsonl (\"-\" = stdin) holds one record a line: a fine-tuning record\n"
    "{\"messages\": [...]} (its assistant messages), a Chat Completions or Responses API\n"
    "response object, or {\"completion\": \"...\"}. Replies without code are counted apart.\n"
    "Tool calls that carry code (Write, apply_patch, ...: the built-in presets, or the tools of\n"
    "--config FILE, an astgate.yaml whose rules apply when no --rules is given) are judged too,\n"
    "each as a reply of its own. Records are grouped by their \"model\" field (records without\n"
    "one: by file), with one row per model when there are several.\n"
    "\n"
    "--live sends each prompt of FILE (one a line: plain text, or {\"messages\": [...]})\n"
    "K times (default 1) to each MODEL (--model A,B or --model A --model B: one row each) at\n"
    "URL/v1/chat/completions, N at once (default 4), with the key in OPENAI_API_KEY, and\n"
    "judges what comes back. --hint on adds the rules' hints (metadata.astgate.hint) to each\n"
    "request as its system message; both sends every prompt without and with them (two rows\n"
    "per model). --save FILE keeps every answer as a JSONL line for a later offline run.\n"
    "--timeout applies per request (default 120 s).\n"
    "\n"
    "--json prints a machine-readable summary instead of the table (\"models\": one entry per\n"
    "model). --html FILE also writes a self-contained page: charts, the table, examples.\n"
    "Percentages are rounded down. --set NAME=VALUE sets a rule parameter\n"
    "(metadata.astgate.params) in every rule file that declares it.\n"
    "\n"
    "Exit status: 0 done (whatever the accuracy), 1 unreadable or unusable data, rules that do\n"
    "not load, or every live request failed, 2 usage error.\n";

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "astgate: eval: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'astgate eval --help'.\n");
    return 2;
}

/* The value of option name at argv[*i] ("--name VALUE" or "--name=VALUE"), or NULL when argv[*i]
 * is another option. *missing is set when the option has no value. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* The bad lines counted since bad0 (st->bad then) and listed since list0 (st->nbad_list then). */
static void print_bad_lines(const ag_eval_stats_t *st, const char *file, uint64_t bad0,
                            uint32_t list0)
{
    const char *name = strcmp(file, "-") == 0 ? "stdin" : file;
    for (uint32_t i = list0; i < st->nbad_list; i++)
        fprintf(stderr, "astgate: %s:%" PRIu64 ": %s\n", name, st->bad_list[i].line,
                st->bad_list[i].msg);
    uint64_t listed = st->nbad_list - list0;
    if (st->bad - bad0 > listed)
        fprintf(stderr, "astgate: %s: %" PRIu64 " more bad lines\n", name, st->bad - bad0 - listed);
}

/* --html FILE: the page from the --json summary parsed back (its figures are the JSON's), with
 * the kept examples. Errors name the file. */
static int write_html(const ag_eval_t *ev, const ag_eval_info_t *info, const char *path)
{
    int rc = AG_EIO;
    ag_buf_t js, page;
    json_t *doc = NULL;
    FILE *f = NULL;
    ag_buf_init(&js, 64u << 20);
    ag_buf_init(&page, 256u << 20);
    if (ag_eval_format_json(ev, info, &js) != AG_OK) {
        fprintf(stderr, "astgate: %s: the summary is larger than 64 MiB\n", path);
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(js.ptr, js.len, 0, &jerr);
    AG_ASSERT(doc != NULL); /* our own JSON */
    json_t *ex = ag_eval_examples_json(ev);
    json_object_set_new(doc, "examples", ex ? ex : json_array());
    if (ag_report_html(doc, &page) != AG_OK) {
        fprintf(stderr, "astgate: %s: the page is larger than 256 MiB\n", path);
        goto out;
    }
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "astgate: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (fwrite(page.ptr, 1, page.len, f) != page.len) {
        fprintf(stderr, "astgate: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    int c = fclose(f);
    f = NULL;
    if (c != 0) {
        fprintf(stderr, "astgate: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    rc = AG_OK;
out:
    if (f)
        fclose(f);
    json_decref(doc);
    ag_buf_dispose(&js);
    ag_buf_dispose(&page);
    return rc;
}

int ag_eval_main(int argc, char **argv)
{
    const char *files[MAX_RULE_FILES];
    uint32_t nfiles = 0;
    static ag_rules_set_t sets[MAX_RULE_FILES]; /* --set NAME=VALUE */
    static char set_names[MAX_RULE_FILES][128];
    uint32_t nsets = 0;
    const char *datas[AG_EVAL_MAX_GROUPS];
    uint32_t ndatas = 0;
    static char model_buf[AG_EVAL_MAX_GROUPS][AG_EVAL_MAX_MODEL];
    const char *models[AG_EVAL_MAX_GROUPS];
    uint32_t nmodels = 0;
    char models_joined[AG_EVAL_MAX_GROUPS * AG_EVAL_MAX_MODEL];
    const char *data = NULL, *upstream = NULL, *prompts = NULL, *save = NULL, *html = NULL;
    const char *config = NULL;
    const char *n_arg = NULL, *temp_arg = NULL, *par_arg = NULL, *timeout_arg = NULL;
    const char *hint_arg = NULL;
    bool json = false, live = false, bare = true;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        bool missing = false;
        struct {
            const char *name;
            const char **slot;
        } opts[] = {{"--upstream", &upstream},
                    {"--prompts", &prompts},
                    {"--save", &save},
                    {"-n", &n_arg},
                    {"--temperature", &temp_arg},
                    {"--parallel", &par_arg},
                    {"--timeout", &timeout_arg},
                    {"--config", &config},
                    {"--html", &html},
                    {"--hint", &hint_arg}};
        bool taken = false;
        v = opt_value(argc, argv, &i, "--rules", &missing);
        if (v != NULL) {
            if (nfiles == MAX_RULE_FILES)
                return usage("too many rule files (at most %s)", "64");
            files[nfiles++] = v;
            continue;
        }
        v = opt_value(argc, argv, &i, "--model", &missing);
        if (v != NULL) {
            /* --model A --model B, or --model A,B */
            for (const char *p = v;; p++) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                if (len == 0)
                    return usage("--model takes names separated by commas, not '%s'", v);
                if (len >= AG_EVAL_MAX_MODEL)
                    return usage("a model name is longer than 127 bytes: '%s'", v);
                if (nmodels == AG_EVAL_MAX_GROUPS)
                    return usage("too many models (at most %s)", "64");
                memcpy(model_buf[nmodels], p, len);
                model_buf[nmodels][len] = '\0';
                for (uint32_t k = 0; k < nmodels; k++)
                    if (strcmp(models[k], model_buf[nmodels]) == 0)
                        return usage("model '%s' is named twice", model_buf[nmodels]);
                models[nmodels] = model_buf[nmodels];
                nmodels++;
                if (comma == NULL)
                    break;
                p = comma;
            }
            continue;
        }
        v = opt_value(argc, argv, &i, "--set", &missing);
        if (v != NULL) {
            ag_diag_t sd;
            if (nsets == MAX_RULE_FILES)
                return usage("too many --set (at most %s)", "64");
            if (ag_rules_parse_set(v, set_names[nsets], sizeof(set_names[0]), &sets[nsets], &sd) !=
                AG_OK)
                return usage("%s", sd.msg);
            nsets++;
            continue;
        }
        for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]) && !taken && !missing; k++) {
            v = opt_value(argc, argv, &i, opts[k].name, &missing);
            if (v != NULL) {
                *opts[k].slot = v;
                taken = true;
            }
        }
        if (missing)
            return usage("%s needs a value", a);
        if (taken)
            continue;
        if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--live") == 0) {
            live = true;
        } else if (strcmp(a, "--no-bare") == 0) {
            bare = false;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(EVAL_USAGE, stdout);
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage("unknown option '%s'", a);
        } else if (ndatas == AG_EVAL_MAX_GROUPS) {
            return usage("too many data files (at most %s)", "64");
        } else {
            datas[ndatas++] = a;
            data = datas[0];
        }
    }
    if (nfiles == 0 && config == NULL)
        return usage("%s", "--rules FILE (or --config FILE) is required");
    double samples = 1, temperature = 0, parallel = 4, timeout_s = 120;
    if (live) {
        if (data)
            return usage("--live reads --prompts FILE, not a data file ('%s')", data);
        if (!upstream || nmodels == 0 || !prompts)
            return usage("%s", "--live needs --upstream URL, --model MODEL and --prompts FILE");
        if (strncmp(upstream, "http://", 7) != 0 && strncmp(upstream, "https://", 8) != 0)
            return usage("--upstream must be an http:// or https:// URL, not '%s'", upstream);
        if (n_arg && (!parse_num(n_arg, 1, 10000, &samples) || samples != floor(samples)))
            return usage("-n takes a whole number from 1 to 10000, not '%s'", n_arg);
        if (temp_arg && !parse_num(temp_arg, 0, 2, &temperature))
            return usage("--temperature takes a number from 0 to 2, not '%s'", temp_arg);
        if (par_arg && (!parse_num(par_arg, 1, 64, &parallel) || parallel != floor(parallel)))
            return usage("--parallel takes a whole number from 1 to 64, not '%s'", par_arg);
        if (timeout_arg && !parse_num(timeout_arg, 0.001, 3600, &timeout_s))
            return usage("--timeout takes seconds from 0.001 to 3600, not '%s'", timeout_arg);
        if (hint_arg && strcmp(hint_arg, "off") != 0 && strcmp(hint_arg, "on") != 0 &&
            strcmp(hint_arg, "both") != 0)
            return usage("--hint takes off, on or both, not '%s'", hint_arg);
    } else {
        const char *only_live = upstream      ? "--upstream"
                                : nmodels     ? "--model"
                                : prompts     ? "--prompts"
                                : n_arg       ? "-n"
                                : temp_arg    ? "--temperature"
                                : par_arg     ? "--parallel"
                                : timeout_arg ? "--timeout"
                                : save        ? "--save"
                                : hint_arg    ? "--hint"
                                              : NULL;
        if (only_live)
            return usage("%s needs --live", only_live);
        if (data == NULL)
            return usage("%s", "no data file given (DATA.jsonl, or - for stdin)");
    }

    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_lang_check(&d) != AG_OK) {
        fprintf(stderr, "astgate: ");
        ag_diag_print(&d, stderr);
        return 1;
    }
    /* astgate.yaml: its tools, and its rules unless --rules names others */
    ag_config_t *cfg = NULL;
    const char *const *rule_files = files;
    if (config) {
        cfg = ag_xcalloc(1, sizeof(*cfg));
        if (ag_config_load(config, cfg, &d) != AG_OK) {
            ag_diag_print(&d, stderr);
            free(cfg);
            return 1;
        }
        if (nfiles == 0) {
            rule_files = (const char *const *)cfg->rules;
            nfiles = cfg->nrules;
        }
    }
    ag_rules_t *rules = NULL;
    ag_rules_src_t srcs[MAX_RULE_FILES];
    memset(srcs, 0, sizeof(srcs));
    for (uint32_t i = 0; i < nfiles && i < MAX_RULE_FILES; i++) {
        srcs[i].path = rule_files[i];
        if (cfg && rule_files == (const char *const *)cfg->rules) { /* astgate.yaml's `set:` */
            srcs[i].sets = cfg->rule_sets[i];
            srcs[i].nsets = cfg->nrule_sets[i];
        }
    }
    if (ag_rules_load_srcs(srcs, nfiles, sets, nsets, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        if (cfg)
            ag_config_dispose(cfg);
        free(cfg);
        return 1;
    }
    ag_rules_print_warnings(rules, stderr);
    int status = 1;
    FILE *save_f = NULL;
    ag_buf_t hint;
    ag_buf_init(&hint, 1u << 20);
    ag_buf_t report;
    ag_buf_init(&report, 64u << 20);
    ag_engine_opts_t eo;
    memset(&eo, 0, sizeof(eo));
    eo.bare = bare;
    ag_eval_t *ev = ag_eval_new(rules, &eo);
    if (cfg)
        ag_eval_set_tools(ev, &cfg->tools);
    const ag_eval_stats_t *st = ag_eval_stats(ev);
    bool tty = isatty(STDERR_FILENO) == 1;
    ag_eval_info_t info;
    memset(&info, 0, sizeof(info));
    info.rule_files = rule_files;
    info.nrule_files = nfiles;
    info.live = live;

    if (html)
        ag_eval_keep_examples(ev, true);
    if (!live) {
        static char sources[8192];
        size_t sl = 0;
        for (uint32_t f = 0; f < ndatas; f++) {
            const char *name = strcmp(datas[f], "-") == 0 ? "stdin" : datas[f];
            uint64_t bad0 = st->bad, used0 = st->used;
            uint32_t list0 = st->nbad_list;
            if (ag_eval_file(ev, datas[f], tty) != AG_OK) {
                fprintf(stderr, "astgate: cannot read %s: %s\n", name, strerror(errno));
                goto out;
            }
            print_bad_lines(st, datas[f], bad0, list0);
            if (st->used == used0) {
                fprintf(stderr, "astgate: %s: no usable line\n", name);
                goto out;
            }
            int w = snprintf(sources + sl, sizeof(sources) - sl, "%s%s", f ? ", " : "", datas[f]);
            if (w > 0 && (size_t)w < sizeof(sources) - sl)
                sl += (size_t)w;
        }
        info.source = ndatas == 1 ? data : sources;
    } else {
        info.source = prompts;
        info.upstream = upstream;
        size_t ml = 0;
        for (uint32_t m = 0; m < nmodels; m++) {
            size_t l = strlen(models[m]);
            if (m)
                models_joined[ml++] = ',';
            memcpy(models_joined + ml, models[m], l);
            ml += l;
        }
        models_joined[ml] = '\0';
        info.model = models_joined;
        bool on = hint_arg && strcmp(hint_arg, "off") != 0;
        bool both = hint_arg && strcmp(hint_arg, "both") == 0;
        info.variants = nmodels * (both ? 2 : 1);
        info.hint = hint_arg ? hint_arg : "off";
        if (on) {
            uint32_t nh = 0;
            if (ag_rules_hint(rules, &hint, &nh) != AG_OK) {
                fprintf(stderr, "astgate: --hint: the rules' hints are larger than 1 MiB\n");
                goto out;
            }
            if (nh == 0) {
                fprintf(stderr,
                        "astgate: --hint %s: no loaded rule has a hint "
                        "(metadata.astgate.hint)\n",
                        hint_arg);
                goto out;
            }
        }
        info.samples = (uint32_t)samples;
        info.has_temperature = temp_arg != NULL;
        info.temperature = temperature;
        if (save) {
            save_f = fopen(save, "w");
            if (save_f == NULL) {
                fprintf(stderr, "astgate: cannot open %s: %s\n", save, strerror(errno));
                goto out;
            }
        }
        const char *key = getenv("OPENAI_API_KEY");
        if (key == NULL || key[0] == '\0')
            fprintf(stderr, "astgate: OPENAI_API_KEY is not set: requests go without "
                            "Authorization\n");
        for (const char *k = key; k && *k; k++) {
            if ((unsigned char)*k < 0x20 || *k == 0x7f) {
                fprintf(stderr, "astgate: OPENAI_API_KEY holds a control character\n");
                goto out;
            }
        }
        ag_eval_live_opts_t lo;
        memset(&lo, 0, sizeof(lo));
        lo.upstream = upstream;
        lo.models = models;
        lo.nmodels = nmodels;
        lo.hint = ag_buf_str(&hint);
        lo.arm_on = hint_arg && strcmp(hint_arg, "off") != 0;
        lo.arm_off = !lo.arm_on || strcmp(hint_arg, "both") == 0;
        lo.api_key = key;
        lo.samples = (uint32_t)samples;
        lo.has_temperature = temp_arg != NULL;
        lo.temperature = temperature;
        lo.parallel = (uint32_t)parallel;
        lo.timeout_ms = (uint32_t)(timeout_s * 1000);
        if (lo.timeout_ms == 0)
            lo.timeout_ms = 1;
        lo.save = save_f;
        lo.progress = tty;
        int rc = ag_eval_live(ev, prompts, &lo);
        if (rc == AG_EIO) {
            fprintf(stderr, "astgate: cannot read %s: %s\n",
                    strcmp(prompts, "-") == 0 ? "stdin" : prompts, strerror(errno));
            goto out;
        }
        print_bad_lines(st, prompts, 0, 0);
        if (rc != AG_OK) {
            fprintf(stderr, "astgate: %s: no usable prompt\n", prompts);
            goto out;
        }
    }
    int rc =
        json ? ag_eval_format_json(ev, &info, &report) : ag_eval_format_table(ev, &info, &report);
    if (rc != AG_OK) {
        fprintf(stderr, "astgate: the report is larger than 64 MiB\n");
        goto out;
    }
    if (html && write_html(ev, &info, html) != AG_OK)
        goto out;
    if (fwrite(report.ptr, 1, report.len, stdout) != report.len || fflush(stdout) != 0) {
        fprintf(stderr, "astgate: cannot write the report: %s\n", strerror(errno));
        goto out;
    }
    if (live && st->requests > 0 && st->failed == st->requests) {
        fprintf(stderr, "astgate: every request failed\n");
        goto out;
    }
    status = 0;
out:
    if (save_f && fclose(save_f) != 0 && status == 0) {
        fprintf(stderr, "astgate: cannot write %s: %s\n", save, strerror(errno));
        status = 1;
    }
    ag_buf_dispose(&report);
    ag_buf_dispose(&hint);
    ag_eval_free(ev);
    ag_rules_free(rules);
    if (cfg)
        ag_config_dispose(cfg);
    free(cfg);
    return status;
}

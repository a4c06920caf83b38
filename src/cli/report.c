/* `astgate eval --html`: the summary as a page to look at. Everything printed comes from the JSON
 * summary, and every string in it is escaped: replies are model output and may hold markup. */
#include "report.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BAR_H 200          /* px: the height of a 100 % bar */
#define BAR_W 52           /* px: a label ("88.88%": 45.8 px in 12px DejaVu Sans) fits over it */
#define GROUP_GAP 56       /* px between groups of bars */
#define LABEL_MAX 18       /* bytes of a group name under the chart; the bar titles hold it whole */
#define CHART_TOP 24       /* px above the 100 % line, for the labels */
#define CHART_BOTTOM 44    /* px below the axis, for the group names */
#define CHART_LEFT 44      /* px, for the axis figures */
#define MAX_DIFF_LINES 600 /* lines of a side a diff is computed for; longer: shown whole */
#define CONTEXT 3          /* lines around a change in a diff */

typedef struct page {
    ag_buf_t *b;
    int rc;
} page_t;

static void raw(page_t *p, const char *s, size_t n)
{
    if (p->rc == AG_OK)
        p->rc = ag_buf_append(p->b, s, n);
}

static void put(page_t *p, const char *s)
{
    raw(p, s, strlen(s));
}

static void putf(page_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(page_t *p, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    raw(p, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Text for an element's content or a quoted attribute: & < > " ' escaped, control bytes other
 * than tab and line feed (and NUL, which JSON strings may hold) shown as U+FFFD. */
static void esc(page_t *p, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                rep = "&#xFFFD;";
        }
        if (rep) {
            raw(p, s + start, i - start);
            put(p, rep);
            start = i + 1;
        }
    }
    raw(p, s + start, n - start);
}

static void esc_c(page_t *p, const char *s)
{
    esc(p, s ? s : "", s ? strlen(s) : 0);
}

static void esc_j(page_t *p, const json_t *s)
{
    if (json_is_string(s))
        esc(p, json_string_value(s), json_string_length(s));
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long jint(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* A figure as the JSON has it: two decimals, without a ".00". */
static const char *fig(char *b, size_t n, double v)
{
    snprintf(b, n, "%.2f", v);
    size_t l = strlen(b);
    if (l > 3 && strcmp(b + l - 3, ".00") == 0)
        b[l - 3] = '\0';
    return b;
}

static void put_pct(page_t *p, const json_t *v)
{
    char b[64];
    if (json_is_number(v))
        putf(p, "%s%%", fig(b, sizeof(b), json_number_value(v)));
    else
        put(p, "n/a");
}

static void put_pp(page_t *p, const json_t *v)
{
    char b[64];
    if (!json_is_number(v)) {
        put(p, "n/a");
        return;
    }
    double d = json_number_value(v);
    putf(p, "%s%s pp", d >= 0 ? "+" : "", fig(b, sizeof(b), d));
}

/* s cut to LABEL_MAX bytes (at a character boundary) with an ellipsis. */
static void esc_short(page_t *p, const char *s)
{
    size_t n = strlen(s);
    if (n <= LABEL_MAX) {
        esc(p, s, n);
        return;
    }
    n = LABEL_MAX - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    esc(p, s, n);
    put(p, "\xe2\x80\xa6");
}

/* A models[] row's name as shown: the model, " +hint" for the hinted arm. */
static void put_name(page_t *p, const json_t *m)
{
    const char *name = jstr(m, "model");
    esc_c(p, name[0] ? name : "(no model)");
    if (strcmp(jstr(m, "hint"), "on") == 0)
        put(p, " +hint");
}

static const char STYLE[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;"
    "max-width:72em;padding:0 1em;color:#1d2330;background:#fff}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px "
    "solid #d8dce4;padding-bottom:.2em}"
    ".meta{color:#555}table{border-collapse:collapse;margin:.5em 0}"
    "th,td{padding:.25em .7em;border-bottom:1px solid #e3e6ec;text-align:right}"
    "th:first-child,td:first-child,td.name{text-align:left}th{background:#f3f5f8}"
    ".chart{overflow-x:auto}svg{display:block;margin:.5em 0}"
    ".bar.raw{fill:#c8553d}.bar.corrected{fill:#2a9d8f}.bar.raw.hint{fill:#e9a27c}"
    ".bar.corrected.hint{fill:#8fd3c9}.axis{stroke:#8a93a3;stroke-width:1}"
    ".grid{stroke:#e3e6ec;stroke-width:1}"
    "svg text{font:12px system-ui,sans-serif;fill:#1d2330}svg text.na{fill:#8a93a3}"
    ".key span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;"
    "vertical-align:-.1em}.key .raw{background:#c8553d}.key .corrected{background:#2a9d8f}"
    ".key .raw.hint{background:#e9a27c}.key .corrected.hint{background:#8fd3c9}"
    "pre{background:#f6f8fa;padding:.6em .8em;overflow:auto;font:13px/1.4 ui-monospace,"
    "'SFMono-Regular',Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}"
    ".diff .del{background:#fde8e6;color:#8a1c10;display:block}"
    ".diff .add{background:#e4f6ea;color:#135c2c;display:block}"
    ".diff .hunk{color:#6a4fb3;display:block}"
    ".example{margin:1em 0 1.5em}.example h3{font-size:1em;margin:.2em 0}"
    "ul.reasons{margin:.3em 0;color:#8a1c10}";

/* ---- charts ---- */

/* A group of bars: one model (or one rule of one model), its row without the hint and its row
 * with it side by side, so that the hint's effect reads within the group. */
typedef struct bar_group {
    const json_t *off; /* the counts without the hint (raw_accuracy_pct, ...); NULL: none */
    const json_t *on;  /* the counts with the rules' hints in the request; NULL: none */
    const char *model; /* the model's name as the JSON has it */
    const char *rule;  /* per-rule chart: the rule id; NULL in the model chart */
} bar_group_t;

/* The bars of a group, in order; a chart shows the hinted two only when the run had that arm,
 * the plain two only when it had the other. */
static const struct series {
    const char *name; /* data-series and the CSS class */
    const char *key;  /* the figure in the row */
    bool hint;        /* from the hinted row */
    const char *says; /* in the bar's title */
} SERIES[] = {
    {"raw", "raw_accuracy_pct", false, "raw"},
    {"corrected", "corrected_accuracy_pct", false, "corrected"},
    {"raw", "raw_accuracy_pct", true, "raw with the hints"},
    {"corrected", "corrected_accuracy_pct", true, "corrected with the hints"},
};

static bool is_hinted(const json_t *m)
{
    return strcmp(jstr(m, "hint"), "on") == 0;
}

static void put_group_name(page_t *p, const bar_group_t *g, const char *between)
{
    if (g->rule) {
        esc_c(p, g->rule);
        put(p, between);
    }
    esc_c(p, g->model[0] ? g->model : "(no model)");
}

/* One bar at x, or, when the figure is n/a (no reply with code, or no such arm for this model),
 * a gap labelled "n/a": never a bar of no height, which would read as 0 %. */
static void put_bar(page_t *p, double x, const struct series *s, const bar_group_t *g)
{
    char b[64];
    double base = CHART_TOP + BAR_H;
    const json_t *v = json_object_get(s->hint ? g->on : g->off, s->key);
    const char *cls = s->hint ? " hint" : "";
    if (!json_is_number(v)) {
        putf(p, "<text class=\"na\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" ", x + BAR_W / 2.0,
             base - 4);
        putf(p, "data-series=\"%s\" data-hint=\"%s\" data-group=\"", s->name,
             s->hint ? "on" : "off");
        put_group_name(p, g, " / ");
        put(p, "\">n/a<title>");
        put_group_name(p, g, ", ");
        putf(p, ": %s n/a</title></text>\n", s->says);
        return;
    }
    double val = json_number_value(v);
    double clamped = val < 0 ? 0 : val > 100 ? 100 : val;
    double h = clamped * BAR_H / 100.0;
    putf(p, "<rect class=\"bar %s%s\" x=\"%.1f\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" ", s->name,
         cls, x, base - h, BAR_W, h);
    putf(p, "data-series=\"%s\" data-hint=\"%s\" data-value=\"%s\" data-group=\"", s->name,
         s->hint ? "on" : "off", fig(b, sizeof(b), val));
    put_group_name(p, g, " / ");
    put(p, "\"><title>");
    put_group_name(p, g, ", ");
    putf(p, ": %s %s%%</title></rect>\n", s->says, fig(b, sizeof(b), val));
    putf(p, "<text class=\"label\" x=\"%.1f\" y=\"%.2f\" text-anchor=\"middle\">%s%%</text>\n",
         x + BAR_W / 2.0, base - h - 4, fig(b, sizeof(b), val));
}

static void put_chart(page_t *p, const char *id, const char *title, const bar_group_t *g, size_t n)
{
    bool any_off = false, any_on = false;
    for (size_t i = 0; i < n; i++) {
        any_off |= g[i].off != NULL;
        any_on |= g[i].on != NULL;
    }
    if (!any_off && !any_on)
        any_off = true; /* no row at all: the axes and the key of a plain run */
    size_t first = any_off ? 0 : 2, last = any_on ? 4 : 2, nb = last - first;
    double gw = nb * BAR_W + GROUP_GAP;
    double width = CHART_LEFT + n * gw + 10;
    double height = CHART_TOP + BAR_H + CHART_BOTTOM;
    /* the chart scrolls rather than shrinks: a shrunk one would shrink its labels too */
    putf(p, "<div class=\"chart\"><svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" ", id);
    putf(p, "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" ", width, height,
         width, height);
    putf(p, "aria-label=\"%s\">\n", title);
    for (int t = 0; t <= 100; t += 25) {
        double y = CHART_TOP + BAR_H - t * BAR_H / 100.0;
        putf(p, "<line class=\"%s\" x1=\"%d\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\"/>",
             t ? "grid" : "axis", CHART_LEFT - 4, width - 10, y, y);
        putf(p, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", CHART_LEFT - 8,
             y + 4, t);
    }
    for (size_t i = 0; i < n; i++) {
        double x = CHART_LEFT + GROUP_GAP / 2.0 + i * gw;
        put(p, "<g class=\"bars\" data-group=\"");
        put_group_name(p, &g[i], " / ");
        put(p, "\">\n");
        for (size_t k = first; k < last; k++)
            put_bar(p, x + (k - first) * BAR_W, &SERIES[k], &g[i]);
        double cx = x + nb * BAR_W / 2.0;
        double y = CHART_TOP + BAR_H + 16;
        putf(p, "<text class=\"group\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", cx, y);
        if (g[i].rule) {
            esc_short(p, g[i].rule);
            putf(p,
                 "</text>\n<text class=\"group\" x=\"%.1f\" y=\"%.1f\" "
                 "text-anchor=\"middle\">",
                 cx, y + 15);
        }
        esc_short(p, g[i].model[0] ? g[i].model : "(no model)");
        put(p, "</text>\n</g>\n");
    }
    put(p, "</svg></div>\n<p class=\"key\">");
    if (any_off)
        put(p, "<span class=\"raw\"></span>raw (as written)<span class=\"corrected\"></span>"
               "corrected (after the rewrite)");
    if (any_on)
        put(p, "<span class=\"raw hint\"></span>raw, the rules' hints in the request<span "
               "class=\"corrected hint\"></span>corrected, with the hints");
    put(p, "</p>\n");
}

/* The group of model in g[0..*n), added when new. */
static bar_group_t *model_group(bar_group_t *g, size_t *n, const char *model)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(g[i].model, model) == 0)
            return &g[i];
    g[*n].model = model;
    return &g[(*n)++];
}

/* The row of rule id in a models[] row's rules, or NULL. */
static const json_t *rule_row(const json_t *m, const char *id)
{
    size_t k;
    const json_t *r;
    if (m == NULL)
        return NULL;
    json_array_foreach(json_object_get(m, "rules"), k, r)
    {
        if (strcmp(jstr(r, "id"), id) == 0)
            return r;
    }
    return NULL;
}

/* The two charts: per model, then per rule and model, each group holding a model's rows without
 * and with the hint (matched by name: eval writes one row per model and arm, in any order). */
static void put_charts(page_t *p, const json_t *models)
{
    size_t nm = json_array_size(models), ng = 0, nr = 0, i, k;
    const json_t *m, *r;
    bar_group_t *g = ag_xcalloc(nm ? nm : 1, sizeof(*g));
    json_array_foreach(models, i, m)
    {
        bar_group_t *x = model_group(g, &ng, jstr(m, "model"));
        const json_t **arm = is_hinted(m) ? &x->on : &x->off;
        if (*arm == NULL)
            *arm = m;
        nr += json_array_size(json_object_get(m, "rules"));
    }
    put(p, "<h2 id=\"by-model\">Accuracy per model</h2>\n");
    put_chart(p, "chart-models", "raw and corrected accuracy per model", g, ng);

    /* rule by rule, in the order they first appear, each model's group side by side */
    bar_group_t *rg = ag_xcalloc(nr ? nr : 1, sizeof(*rg));
    size_t nrg = 0;
    json_array_foreach(models, i, m)
    {
        json_array_foreach(json_object_get(m, "rules"), k, r)
        {
            const char *id = jstr(r, "id");
            bool seen = false;
            for (size_t q = 0; q < nrg && !seen; q++)
                seen = strcmp(rg[q].rule, id) == 0;
            if (seen)
                continue;
            for (size_t q = 0; q < ng && nrg < nr; q++) {
                bar_group_t x = {rule_row(g[q].off, id), rule_row(g[q].on, id), g[q].model, id};
                if (x.off || x.on)
                    rg[nrg++] = x;
            }
        }
    }
    put(p, "<h2 id=\"by-rule\">Accuracy per rule</h2>\n");
    put_chart(p, "chart-rules", "raw and corrected accuracy per rule and model", rg, nrg);
    free(rg);
    free(g);
}

/* ---- tables ---- */

static void put_counts_cells(page_t *p, const json_t *c)
{
    put(p, "<td class=\"raw\">");
    put_pct(p, json_object_get(c, "raw_accuracy_pct"));
    put(p, "</td><td class=\"corrected\">");
    put_pct(p, json_object_get(c, "corrected_accuracy_pct"));
    put(p, "</td><td class=\"difference\">");
    put_pp(p, json_object_get(c, "difference_pp"));
    putf(p,
         "</td><td class=\"rewritten\">%lld</td><td class=\"flagged\">%lld</td>"
         "<td class=\"unfixable\">%lld</td>",
         jint(c, "rewritten"), jint(c, "flagged"), jint(c, "unfixable"));
}

static void put_models_table(page_t *p, const json_t *models)
{
    put(p, "<table id=\"models\"><thead><tr><th>model</th><th>hint</th><th>replies</th>"
           "<th>with code</th><th>raw</th><th>corrected</th><th>difference</th>"
           "<th>rewritten</th><th>flagged</th><th>unfixable</th></tr></thead><tbody>\n");
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        put(p, "<tr><td class=\"model\">");
        const char *name = jstr(m, "model");
        esc_c(p, name[0] ? name : "(no model)");
        put(p, "</td><td class=\"hint\">");
        esc_c(p, jstr(m, "hint"));
        putf(p, "</td><td class=\"replies\">%lld</td><td class=\"with_code\">%lld</td>",
             jint(m, "replies"), jint(m, "with_code"));
        put_counts_cells(p, m);
        put(p, "</tr>\n");
    }
    put(p, "</tbody></table>\n");
}

static void put_rules_table(page_t *p, const json_t *models)
{
    put(p, "<table id=\"rules\"><thead><tr><th>rule</th><th>model</th><th>raw</th>"
           "<th>corrected</th><th>difference</th><th>rewritten</th><th>flagged</th>"
           "<th>unfixable</th></tr></thead><tbody>\n");
    size_t i, k;
    const json_t *m, *r;
    json_array_foreach(models, i, m)
    {
        json_array_foreach(json_object_get(m, "rules"), k, r)
        {
            put(p, "<tr><td class=\"rule\">");
            esc_c(p, jstr(r, "id"));
            put(p, "</td><td class=\"name\">");
            put_name(p, m);
            put(p, "</td>");
            put_counts_cells(p, r);
            put(p, "</tr>\n");
        }
    }
    put(p, "</tbody></table>\n");
}

/* ---- diffs ---- */

typedef struct lines {
    const char **ptr;
    size_t *len;
    size_t n;
} lines_t;

static void split(const char *s, size_t n, lines_t *out)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += s[i] == '\n';
    out->ptr = ag_xcalloc(cap, sizeof(*out->ptr));
    out->len = ag_xcalloc(cap, sizeof(*out->len));
    out->n = 0;
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - s) : n;
        out->ptr[out->n] = s + pos;
        out->len[out->n++] = end - pos;
        pos = end + 1;
    }
}

static bool same(const lines_t *a, size_t i, const lines_t *b, size_t j)
{
    return a->len[i] == b->len[j] && memcmp(a->ptr[i], b->ptr[j], a->len[i]) == 0;
}

static void put_line(page_t *p, const char *cls, char mark, const char *s, size_t n)
{
    if (cls)
        putf(p, "<span class=\"%s\">", cls);
    raw(p, &mark, 1);
    esc(p, s, n);
    put(p, cls ? "</span>" : "\n");
}

/* A unified diff (CONTEXT lines around each change) of before and after, by longest common
 * subsequence over lines. */
static void put_diff(page_t *p, const json_t *before, const json_t *after)
{
    lines_t a, b;
    split(json_string_value(before), json_string_length(before), &a);
    split(json_string_value(after), json_string_length(after), &b);
    put(p, "<pre class=\"diff\">");
    if (a.n > MAX_DIFF_LINES || b.n > MAX_DIFF_LINES) {
        for (size_t i = 0; i < a.n; i++)
            put_line(p, "del", '-', a.ptr[i], a.len[i]);
        for (size_t j = 0; j < b.n; j++)
            put_line(p, "add", '+', b.ptr[j], b.len[j]);
        goto out;
    }
    /* lcs[i][j]: the common lines of a[i..] and b[j..] */
    size_t w = b.n + 1;
    uint32_t *lcs = ag_xcalloc((a.n + 1) * w, sizeof(*lcs));
    for (size_t i = a.n; i-- > 0;)
        for (size_t j = b.n; j-- > 0;)
            lcs[i * w + j] = same(&a, i, &b, j) ? lcs[(i + 1) * w + j + 1] + 1
                             : lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] ? lcs[(i + 1) * w + j]
                                                                          : lcs[i * w + j + 1];
    /* the edit script: ' ', '-', '+' with the line of a or b */
    size_t cap = a.n + b.n + 1, ne = 0;
    char *op = ag_xmalloc(cap);
    size_t *ia = ag_xcalloc(cap, sizeof(*ia)), *ib = ag_xcalloc(cap, sizeof(*ib));
    size_t i = 0, j = 0;
    while (i < a.n || j < b.n) {
        ia[ne] = i;
        ib[ne] = j;
        if (i < a.n && j < b.n && same(&a, i, &b, j)) {
            op[ne++] = ' ';
            i++;
            j++;
        } else if (i < a.n && (j == b.n || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
            op[ne++] = '-'; /* removals first, as diff -u prints them */
            i++;
        } else {
            op[ne++] = '+';
            j++;
        }
    }
    for (size_t k = 0; k < ne;) {
        if (op[k] == ' ') {
            k++;
            continue;
        }
        /* a hunk: from CONTEXT lines before this change to CONTEXT after the last change that
         * is at most 2 * CONTEXT lines from the previous one */
        size_t s = k > CONTEXT ? k - CONTEXT : 0, e = k;
        for (size_t q = k; q < ne; q++) {
            if (op[q] != ' ')
                e = q;
            else if (q - e > 2 * CONTEXT)
                break;
        }
        e = e + CONTEXT + 1 < ne ? e + CONTEXT + 1 : ne;
        size_t na = 0, nb = 0;
        for (size_t q = s; q < e; q++) {
            na += op[q] != '+';
            nb += op[q] != '-';
        }
        putf(p, "<span class=\"hunk\">@@ -%zu,%zu +%zu,%zu @@</span>", ia[s] + 1, na, ib[s] + 1,
             nb);
        for (size_t q = s; q < e; q++) {
            if (op[q] == ' ')
                put_line(p, NULL, ' ', a.ptr[ia[q]], a.len[ia[q]]);
            else if (op[q] == '-')
                put_line(p, "del", '-', a.ptr[ia[q]], a.len[ia[q]]);
            else
                put_line(p, "add", '+', b.ptr[ib[q]], b.len[ib[q]]);
        }
        k = e;
    }
    free(lcs);
    free(op);
    free(ia);
    free(ib);
out:
    put(p, "</pre>\n");
    free(a.ptr);
    free(a.len);
    free(b.ptr);
    free(b.len);
}

/* ---- examples ---- */

static void put_examples(page_t *p, const json_t *examples, const char *kind, const char *title,
                         const char *none)
{
    putf(p, "<h2 id=\"%s\">%s</h2>\n", kind, title);
    size_t i, k, shown = 0;
    const json_t *ex, *r;
    json_array_foreach(examples, i, ex)
    {
        if (strcmp(jstr(ex, "kind"), kind) != 0)
            continue;
        shown++;
        putf(p, "<div class=\"example %s\"><h3>", kind);
        put_name(p, ex);
        putf(p, ", line %lld%s</h3>\n", jint(ex, "line"),
             json_is_true(json_object_get(ex, "truncated")) ? " (cut to 16 KiB)" : "");
        const json_t *reasons = json_object_get(ex, "reasons");
        if (json_array_size(reasons)) {
            put(p, "<ul class=\"reasons\">");
            json_array_foreach(reasons, k, r)
            {
                put(p, "<li>");
                esc_j(p, r);
                put(p, "</li>");
            }
            put(p, "</ul>\n");
        }
        if (json_is_string(json_object_get(ex, "after"))) {
            put_diff(p, json_object_get(ex, "before"), json_object_get(ex, "after"));
        } else {
            put(p, "<pre class=\"reply\">");
            esc_j(p, json_object_get(ex, "before"));
            put(p, "</pre>\n");
        }
        put(p, "</div>\n");
    }
    if (shown == 0)
        putf(p, "<p class=\"none\">%s</p>\n", none);
}

int ag_report_html(const struct json_t *summary, ag_buf_t *out)
{
    page_t pg = {out, AG_OK};
    page_t *p = &pg;
    const json_t *s = summary;
    const json_t *models = json_object_get(s, "models");
    const json_t *live = json_object_get(s, "live");
    const json_t *examples = json_object_get(s, "examples");
    put(p, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<title>astgate eval</title>\n<style>");
    put(p, STYLE);
    put(p, "</style>\n</head>\n<body>\n<h1>astgate eval</h1>\n<p class=\"meta\">");
    if (json_is_object(live)) {
        put(p, "live: ");
        esc_c(p, jstr(live, "upstream"));
        putf(p, ", %lld prompts x %lld, %lld requests (%lld failed)", jint(live, "prompts"),
             jint(live, "samples"), jint(live, "requests"), jint(live, "failed"));
    } else {
        put(p, "offline: ");
        esc_c(p, jstr(json_object_get(s, "input"), "file"));
    }
    put(p, "<br>rules: ");
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(s, "rule_files"), i, v)
    {
        if (i)
            put(p, ", ");
        esc_j(p, v);
    }
    putf(p,
         "<br>%lld replies, %lld with code; accuracy = compliant / with code, rounded down; "
         "n/a when no reply has code</p>\n",
         jint(s, "replies"), jint(s, "with_code"));

    put_charts(p, models);

    put(p, "<h2 id=\"table\">Models</h2>\n");
    put_models_table(p, models);
    put(p, "<h2 id=\"rules-table\">Rules</h2>\n");
    put_rules_table(p, models);

    put_examples(p, examples, "rewritten", "Rewritten (before / after)",
                 "No rewritten reply was kept.");
    put_examples(p, examples, "flagged", "Flagged", "No reply was flagged.");
    put_examples(p, examples, "unfixable", "Unfixable", "No reply stayed unfixable.");
    put(p, "</body>\n</html>\n");
    return pg.rc;
}

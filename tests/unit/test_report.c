/* Unit tests for the HTML report (report.c): every string of the summary escaped (model names,
 * rule ids, replies, reasons), bars whose height is the figure in groups of a model's four (raw
 * and corrected, without and with the hint), n/a as a labelled gap without a bar, the unified
 * diff of a rewritten reply, and a page cut at the buffer's maximum reported. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "report.h"

typedef struct fx {
    json_t *doc;
    ag_buf_t out;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    ag_buf_init(&fx->out, 4u << 20);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    json_decref(fx->doc);
    ag_buf_dispose(&fx->out);
    free(fx);
    return 0;
}

/* A summary as eval --json writes it under --hint both, with two models (one hostile, its rows
 * without and with the hint apart, the other with only a hinted row of n/a), and examples. */
static const char SUMMARY[] =
    "{\"version\": 1, \"mode\": \"offline\", \"input\": {\"file\": \"d<1>.jsonl\"},"
    " \"rule_files\": [\"r&s.yaml\"], \"replies\": 4, \"with_code\": 3,"
    " \"models\": ["
    "  {\"model\": \"<script>alert(1)</script>\", \"hint\": \"off\", \"replies\": 2,"
    "   \"with_code\": 2, \"raw_accuracy_pct\": 66.66, \"corrected_accuracy_pct\": 100.00,"
    "   \"difference_pp\": 33.34, \"rewritten\": 1, \"flagged\": 0, \"unfixable\": 0,"
    "   \"rules\": [{\"id\": \"r\\\"><img onerror=x>\", \"raw_accuracy_pct\": 66.66,"
    "     \"corrected_accuracy_pct\": 100.00, \"difference_pp\": 33.34, \"rewritten\": 1,"
    "     \"flagged\": 0, \"unfixable\": 0}]},"
    "  {\"model\": \"prose\", \"hint\": \"on\", \"replies\": 2, \"with_code\": 0,"
    "   \"raw_accuracy_pct\": null, \"corrected_accuracy_pct\": null, \"difference_pp\": null,"
    "   \"rewritten\": 0, \"flagged\": 0, \"unfixable\": 0,"
    "   \"rules\": [{\"id\": \"r\\\"><img onerror=x>\", \"raw_accuracy_pct\": null,"
    "     \"corrected_accuracy_pct\": null, \"difference_pp\": null, \"rewritten\": 0,"
    "     \"flagged\": 0, \"unfixable\": 0}]},"
    "  {\"model\": \"<script>alert(1)</script>\", \"hint\": \"on\", \"replies\": 2,"
    "   \"with_code\": 2, \"raw_accuracy_pct\": 50.00, \"corrected_accuracy_pct\": 75.00,"
    "   \"difference_pp\": 25.00, \"rewritten\": 1, \"flagged\": 0, \"unfixable\": 0,"
    "   \"rules\": [{\"id\": \"r\\\"><img onerror=x>\", \"raw_accuracy_pct\": 0.00,"
    "     \"corrected_accuracy_pct\": 75.00, \"difference_pp\": 75.00, \"rewritten\": 1,"
    "     \"flagged\": 0, \"unfixable\": 0}]}],"
    " \"examples\": ["
    "  {\"kind\": \"rewritten\", \"model\": \"m\", \"hint\": \"off\", \"line\": 3,"
    "   \"before\": \"a\\nb </pre><script>\\nc\\nd\\ne\\nf\\ng\\nh\\n\","
    "   \"after\": \"a\\nb </pre><script>\\nC\\nd\\ne\\nf\\ng\\nh\\n\", \"reasons\": [],"
    "   \"truncated\": false},"
    "  {\"kind\": \"flagged\", \"model\": \"m\", \"hint\": \"off\", \"line\": 4,"
    "   \"before\": \"x\\u0000\\u0007y\", \"reasons\": [\"r 1:1: flagged: <b>no</b>\"],"
    "   \"truncated\": true}]}";

static const char *render(fx_t *fx)
{
    json_error_t err;
    fx->doc = json_loads(SUMMARY, JSON_ALLOW_NUL, &err);
    if (fx->doc == NULL)
        fail_msg("SUMMARY is not JSON: %d:%d: %s", err.line, err.column, err.text);
    assert_int_equal(ag_report_html(fx->doc, &fx->out), AG_OK);
    assert_int_equal(ag_buf_append(&fx->out, "", 1), AG_OK);
    return fx->out.ptr;
}

static void assert_has(const char *page, const char *s)
{
    if (strstr(page, s) == NULL)
        fail_msg("the page has no \"%s\"", s);
}

static void test_everything_escaped(void **state)
{
    const char *page = render(*state);
    /* the only tags are ours: no script, no img, no attribute that a string closed */
    assert_null(strstr(page, "<script"));
    assert_null(strstr(page, "<img"));
    assert_null(strstr(page, "<b>"));
    assert_null(strstr(page, "</pre><"));
    assert_has(page, "<td class=\"model\">&lt;script&gt;alert(1)&lt;/script&gt;</td>");
    assert_has(page, "<td class=\"rule\">r&quot;&gt;&lt;img onerror=x&gt;</td>");
    assert_has(page, "data-group=\"r&quot;&gt;&lt;img onerror=x&gt; / &lt;script&gt;");
    assert_has(page, "offline: d&lt;1&gt;.jsonl<br>rules: r&amp;s.yaml");
    assert_has(page, "<li>r 1:1: flagged: &lt;b&gt;no&lt;/b&gt;</li>");
    /* NUL and other control bytes are shown, not passed on */
    assert_has(page, "<pre class=\"reply\">x&#xFFFD;&#xFFFD;y</pre>");
    assert_has(page, "m, line 4 (cut to 16 KiB)");
    assert_has(page, "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                     "'none'; style-src 'unsafe-inline'\">");
}

/* How many times s occurs in the part of page from `from` to the next `to`. */
static int count_in(const char *page, const char *from, const char *to, const char *s)
{
    const char *a = strstr(page, from);
    if (a == NULL)
        fail_msg("the page has no \"%s\"", from);
    const char *end = strstr(a, to);
    if (end == NULL)
        fail_msg("no \"%s\" after \"%s\"", to, from);
    int n = 0;
    for (const char *q = strstr(a, s); q && q < end; q = strstr(q + 1, s))
        n++;
    return n;
}

static void test_bars_and_tables(void **state)
{
    const char *page = render(*state);
    /* a model's group holds its four bars, its rows without and with the hint found by name
     * though another model's row sits between them: 66.66 % of a 200 px bar, on the axis at
     * y = 224, then 100 %, then the hinted 50 % and 75 % (lighter), 52 px apart */
    assert_has(page, "<g class=\"bars\" data-group=\"&lt;script&gt;alert(1)&lt;/script&gt;\">\n"
                     "<rect class=\"bar raw\" x=\"72.0\" y=\"90.68\" width=\"52\" "
                     "height=\"133.32\" data-series=\"raw\" data-hint=\"off\" "
                     "data-value=\"66.66\"");
    assert_has(page, "text-anchor=\"middle\">66.66%</text>");
    assert_has(page, "<rect class=\"bar corrected\" x=\"124.0\" y=\"24.00\" width=\"52\" "
                     "height=\"200.00\" data-series=\"corrected\" data-hint=\"off\" "
                     "data-value=\"100\"");
    assert_has(page, "<rect class=\"bar raw hint\" x=\"176.0\" y=\"124.00\" width=\"52\" "
                     "height=\"100.00\" data-series=\"raw\" data-hint=\"on\" data-value=\"50\"");
    assert_has(page, "<rect class=\"bar corrected hint\" x=\"228.0\" y=\"74.00\" width=\"52\" "
                     "height=\"150.00\" data-series=\"corrected\" data-hint=\"on\" "
                     "data-value=\"75\"");
    /* a figure of 0 is a bar of no height labelled 0%; n/a is a labelled gap, no bar */
    assert_has(page, "height=\"0.00\" data-series=\"raw\" data-hint=\"on\" data-value=\"0\"");
    assert_has(page, "<text class=\"label\" x=\"202.0\" y=\"220.00\" text-anchor=\"middle\">"
                     "0%</text>");
    assert_has(page, "<g class=\"bars\" data-group=\"prose\">\n<text class=\"na\" x=\"362.0\" "
                     "y=\"220.0\" text-anchor=\"middle\" data-series=\"raw\" data-hint=\"off\" "
                     "data-group=\"prose\">n/a<title>prose: raw n/a</title></text>");
    assert_has(page, "data-series=\"corrected\" data-hint=\"on\" data-group=\"prose\">n/a");
    assert_null(strstr(page, "data-value=\"\""));
    /* two groups of four: four bars (the first model) and four gaps (the second) */
    assert_int_equal(count_in(page, "id=\"chart-models\"", "</svg>", "<g class=\"bars\""), 2);
    assert_int_equal(count_in(page, "id=\"chart-models\"", "</svg>", "<rect class=\"bar "), 4);
    assert_int_equal(count_in(page, "id=\"chart-models\"", "</svg>", "<text class=\"na\""), 4);
    assert_int_equal(count_in(page, "id=\"chart-rules\"", "</svg>", "<rect class=\"bar "), 4);
    assert_int_equal(count_in(page, "id=\"chart-rules\"", "</svg>", "<text class=\"na\""), 4);
    /* the groups are named by the model alone; the key says which bar is which */
    assert_has(page, ">prose</text>\n</g>");
    assert_null(strstr(page, " +hint</text>\n</g>"));
    assert_has(page, "raw, the rules' hints in the request");
    /* the tables keep a row per model and arm */
    assert_has(page, "<td class=\"raw\">66.66%</td><td class=\"corrected\">100%</td>"
                     "<td class=\"difference\">+33.34 pp</td><td class=\"rewritten\">1</td>");
    assert_has(page, "<td class=\"hint\">on</td><td class=\"replies\">2</td><td "
                     "class=\"with_code\">0</td><td class=\"raw\">n/a</td>");
    assert_has(page, "<td class=\"name\">&lt;script&gt;alert(1)&lt;/script&gt; +hint</td>"
                     "<td class=\"raw\">0%</td>");
}

static void test_unified_diff(void **state)
{
    const char *page = render(*state);
    /* line 3 changed: three lines of context each side, removals before additions */
    assert_has(page, "<pre class=\"diff\"><span class=\"hunk\">@@ -1,6 +1,6 @@</span> a\n"
                     " b &lt;/pre&gt;&lt;script&gt;\n"
                     "<span class=\"del\">-c</span><span class=\"add\">+C</span> d\n e\n f\n"
                     "</pre>");
}

static void test_cut_page(void **state)
{
    fx_t *fx = *state;
    json_error_t err;
    fx->doc = json_loads(SUMMARY, JSON_ALLOW_NUL, &err);
    assert_non_null(fx->doc);
    ag_buf_dispose(&fx->out);
    ag_buf_init(&fx->out, 1000);
    assert_int_equal(ag_report_html(fx->doc, &fx->out), AG_ETOOBIG);
    assert_true(fx->out.len <= 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_everything_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bars_and_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unified_diff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_page, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The HTML report of `astgate eval --html FILE`: one self-contained page (inline CSS and SVG, no
 * script, nothing fetched) rendered from the same summary as `--json`, so that its figures are
 * the JSON's by construction. */
#ifndef AG_REPORT_H
#define AG_REPORT_H

#include "util.h"

struct json_t;

/* Appends the page to out. summary is the `astgate eval --json` document (see README: "models",
 * "rules", "live", ...) with, optionally, "examples" (ag_eval_examples_json). Every string from
 * it is HTML-escaped (replies are model output: hostile); the page carries a Content-Security-
 * Policy that allows no script and no fetch. Percentages are printed as the JSON has them (two
 * decimals, rounded down by eval), null as "n/a", a labelled gap in a chart and never a bar. The
 * charts hold one group per model (per rule and model): its raw and corrected bars, then those of
 * its hinted row ("hint": "on", matched by "model") when the summary has one. Borrowed; not
 * modified. Returns AG_OK, or AG_ETOOBIG when out's maximum is reached (out then holds a cut
 * page). Thread-safe. */
AG_MUSTCHECK int ag_report_html(const struct json_t *summary, ag_buf_t *out);

#endif

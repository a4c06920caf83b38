/* `astgate eval`: how often replies follow the rules as written (raw) and after the rewrite
 * (corrected), over a JSONL file of replies (offline) or over replies fetched from an upstream's
 * /v1/chat/completions (live). The counting core works on in-memory lines; files, the upstream and
 * the command line sit on top of it. */
#ifndef AG_EVAL_H
#define AG_EVAL_H

#include "rewrite.h"
#include "toolcode.h"

#define AG_EVAL_MAX_LINE (8u << 20)   /* bytes of one JSONL line; a longer line is a bad line */
#define AG_EVAL_MAX_BAD 1000          /* bad lines kept with their message; the rest are counted */
#define AG_EVAL_MAX_EXAMPLES 20       /* line numbers of unfixable replies kept */
#define AG_EVAL_MAX_ERRORS 32         /* distinct (status, message) upstream errors kept */
#define AG_EVAL_MSG 200               /* bytes of a kept message, NUL included */
#define AG_EVAL_MAX_GROUPS 64         /* models (x hint arms) counted apart; more go to the last */
#define AG_EVAL_MAX_MODEL 128         /* bytes of a model name kept, NUL included */
#define AG_EVAL_KEEP_REWRITTEN 5      /* rewritten replies kept for the report (--html) */
#define AG_EVAL_KEEP_UNFIXABLE 10     /* flagged and unfixable replies kept, each */
#define AG_EVAL_KEEP_TEXT (16u << 10) /* bytes of a kept reply (before, after) */

typedef struct ag_eval ag_eval_t;

/* Counts over replies with code (overall, or for one rule). For one rule a reply is raw compliant
 * when the first pass has no event of that rule, rewritten when it has an applied rewrite of it,
 * corrected compliant when the second pass (over the rewritten reply) has no event of it and the
 * first pass had no block of it; unfixable is the complement of corrected compliant. */
typedef struct ag_eval_counts {
    uint64_t raw_ok;       /* no rewrite, flag, block or dropped edit in the reply as written */
    uint64_t corrected_ok; /* nothing left to do after the rewrite, and nothing blocked */
    uint64_t rewritten;    /* at least one rewrite applied */
    uint64_t unfixable;    /* not corrected compliant */
    uint64_t flagged;      /* a flag in the reply as written: not fixable from the code at hand
                              (part of unfixable) */
} ag_eval_counts_t;

/* The counts of one model (live: as asked for; offline: a record's "model" field) and hint arm.
 * The same definitions as the whole run's; groups partition it. */
typedef struct ag_eval_group {
    char model[AG_EVAL_MAX_MODEL]; /* "" = the records carry no model and came from memory */
    bool hint;                     /* live: requests carried the rules' hints */
    uint64_t replies, with_code, no_code, unjudged, skipped, calls;
    uint64_t requests, failed; /* live */
    ag_eval_counts_t all;
    ag_eval_counts_t *rule; /* nrules counts, in rule-file order (owned by the evaluator) */
} ag_eval_group_t;

typedef struct ag_eval_bad {
    uint64_t line;         /* 1-based line number in the input */
    char msg[AG_EVAL_MSG]; /* why it was skipped, for people */
} ag_eval_bad_t;

typedef struct ag_eval_error {
    long status;           /* HTTP status; 0 = no HTTP answer (connection, timeout) */
    char msg[AG_EVAL_MSG]; /* the upstream's error.message, or curl's; never holds the API key */
    uint64_t count;
} ag_eval_error_t;

/* Everything counted so far; owned by the ag_eval_t, valid until the next call on it. */
typedef struct ag_eval_stats {
    uint64_t lines;     /* lines read (data file offline, prompts file live), blank ones included */
    uint64_t blank;     /* lines holding only white space: ignored */
    uint64_t used;      /* lines that gave at least one reply (live: usable prompts) */
    uint64_t bad;       /* lines skipped, each reported (first AG_EVAL_MAX_BAD in bad_list) */
    uint64_t replies;   /* replies judged */
    uint64_t no_code;   /* replies with no code block for any rule: apart, not in the accuracy */
    uint64_t with_code; /* the accuracy denominator: replies - no_code */
    uint64_t skipped;   /* replies too large for the engine (also in bad_list) */
    uint64_t unjudged;  /* replies with code too broken to judge: apart, not in with_code */
    uint64_t calls;     /* of the replies, tool calls judged (calls to tools that carry code) */
    ag_eval_counts_t all;
    uint32_t nrules;
    const char *const *rule_ids;  /* nrules ids, in rule-file order (borrowed from the rules) */
    const ag_eval_counts_t *rule; /* nrules counts, same order */
    const ag_eval_bad_t *bad_list;
    uint32_t nbad_list;
    uint64_t unfixable_lines[AG_EVAL_MAX_EXAMPLES]; /* first unfixable replies' line numbers */
    uint32_t nunfixable_lines;
    /* live mode */
    uint64_t requests; /* requests finished (answered or failed) */
    uint64_t failed;   /* requests that gave no judged reply; grouped in errors */
    const ag_eval_error_t *errors;
    uint32_t nerrors; /* distinct kinds; more kinds than AG_EVAL_MAX_ERRORS go to the last */
    /* per model (and hint arm), in order of first appearance (live: of --model) */
    const ag_eval_group_t *groups;
    uint32_t ngroups;
} ag_eval_stats_t;

/* What the report says about where the numbers come from (all fields may be NULL / 0). */
typedef struct ag_eval_info {
    const char *source; /* data file offline, prompts file live; "-" = stdin */
    const char *const *rule_files;
    uint32_t nrule_files;
    bool live;
    const char *upstream; /* live: base URL as given */
    const char *model;    /* live: the models asked for, joined with "," */
    uint32_t samples;     /* live: requests per prompt (-n) and per model (and hint arm) */
    uint32_t variants;    /* live: models x hint arms; 0 = 1 */
    const char *hint;     /* live: "off", "on" or "both" (--hint); NULL = "off" */
    bool has_temperature; /* live: --temperature given */
    double temperature;
} ag_eval_info_t;

/* rules is borrowed and must outlive the evaluator; opts may be NULL for the defaults (bare code
 * tried, no parse timeout). Tool calls are judged against the built-in presets until
 * ag_eval_set_tools. */
ag_eval_t *ag_eval_new(const ag_rules_t *rules, const ag_engine_opts_t *opts);
void ag_eval_free(ag_eval_t *ev);

/* Live mode: later replies, requests and errors count for model (cut to AG_EVAL_MAX_MODEL - 1
 * bytes) and hint arm; the group is created now, so groups keep the order of these calls. Past
 * AG_EVAL_MAX_GROUPS groups, new ones count in the last, renamed "(other models)". */
void ag_eval_select(ag_eval_t *ev, const char *model, bool hint);

/* Keep examples for the report: up to AG_EVAL_KEEP_REWRITTEN rewritten replies (before and
 * after) and AG_EVAL_KEEP_UNFIXABLE flagged and unfixable ones with their reasons (tool calls
 * are not kept). Off by default: it copies every such reply. */
void ag_eval_keep_examples(ag_eval_t *ev, bool on);

/* The kept examples as a jansson array (json_t *, a reference the caller owns and releases with
 * json_decref; NULL when none was kept): objects
 * {"kind": "rewritten"|"flagged"|"unfixable", "model", "hint": "off"|"on", "line", "before",
 * "after" (rewritten: the reply after the rewrite), "reasons": ["rule line:col: why", ...],
 * "truncated": bool}. The caller owns it (json_decref). */
void *ag_eval_examples_json(const ag_eval_t *ev);

/* The tools whose calls carry code (astgate.yaml's, see ag_config_t.tools): copied. */
void ag_eval_set_tools(ag_eval_t *ev, const ag_tools_t *tools);

/* Judges one reply (markdown or bare code); line is where it came from (for the unfixable
 * examples). Returns AG_OK, or AG_ETOOBIG when the engine cannot hold its output: the reply is
 * then skipped and reported as a bad line entry. */
AG_MUSTCHECK int ag_eval_reply(ag_eval_t *ev, ag_str_t reply, uint64_t line);

/* Judges one tool call's input (ag_toolcode_rewrite with the evaluator's tools) as a reply of
 * its own, with the same definitions as reply text: with code when the rewrite found code, raw
 * compliant when no rule would change or flag it, corrected compliant when a second pass over the
 * rewritten input finds nothing and nothing was blocked. Returns AG_OK (counted in replies and
 * calls; arguments that are not JSON count as not judged), AG_ENOENT (the tool carries no code we
 * know: not a reply, nothing counted) or AG_ETOOBIG (skipped, like a reply too large). */
AG_MUSTCHECK int ag_eval_call(ag_eval_t *ev, const ag_tool_call_t *call, ag_str_t input,
                              uint64_t line);

/* Judges the replies in one decoded JSON record (a jansson json_t *, passed as void * so this
 * header does not need jansson): {"messages": [...]} (every assistant message), a Chat Completions
 * object (every choice's message.content, or legacy text), a Responses object (the output_text
 * parts of its message items, joined as one reply), {"completion": "..."}, or a Batch API output
 * line whose response.body is one of those. Tool calls are judged too, each as a reply of its own
 * (ag_eval_call): an assistant message's or choice's tool_calls (function arguments, custom
 * input) and legacy function_call, a Responses object's function_call, custom_tool_call and
 * apply_patch_call items. A message (choice, Responses object) whose only output is tool calls
 * without code counts as one reply without code. Returns AG_OK when at least one reply was
 * judged, else AG_EINVAL with the reason in why (may be NULL; AG_EVAL_MSG bytes). Counts no
 * line. */
AG_MUSTCHECK int ag_eval_record(ag_eval_t *ev, const void *json, uint64_t line, char *why);

/* One JSONL line (without its line end; a trailing \r is ignored). Blank lines count as blank;
 * a line that is not JSON or not a known record is counted bad and kept in bad_list. Returns
 * AG_OK (used or blank) or AG_EINVAL (bad). */
int ag_eval_line(ag_eval_t *ev, ag_str_t line, uint64_t lineno);

/* Every line of text, numbered from 1. */
void ag_eval_text(ag_eval_t *ev, ag_str_t text);

/* Reads path ("-" = stdin) line by line. Records that carry a "model" (Chat and Responses
 * objects, fine-tuning records with a top-level "model", a Batch line's body) count in that
 * model's group; the others in the group of the one model the file's records name, or, when
 * they name none or several, in a group named after the file. progress: draw a bar on stderr (the
 * caller decides, e.g. when stderr is a terminal; it is drawn only for inputs of 256 KiB or more).
 * Returns AG_OK, or AG_EIO when the file cannot be opened or read (errno kept). */
AG_MUSTCHECK int ag_eval_file(ag_eval_t *ev, const char *path, bool progress);

/* Adds a bad line with its reason (e.g. a prompt line the live mode cannot use). */
void ag_eval_bad_line(ag_eval_t *ev, uint64_t line, const char *msg);

/* Live mode: counts one failed request (grouped by status and message). */
void ag_eval_add_error(ag_eval_t *ev, long status, ag_str_t msg);
/* Live mode: counts one finished request (call it for answered and failed ones). */
void ag_eval_add_request(ag_eval_t *ev);

const ag_eval_stats_t *ag_eval_stats(const ag_eval_t *ev);

/* The report for people: a header, the overall block, a row per rule; appended to out. */
AG_MUSTCHECK int ag_eval_format_table(const ag_eval_t *ev, const ag_eval_info_t *info,
                                      ag_buf_t *out);
/* The same as one JSON document (see bench/accuracy/README.md for the fields); appended to out. */
AG_MUSTCHECK int ag_eval_format_json(const ag_eval_t *ev, const ag_eval_info_t *info,
                                     ag_buf_t *out);

/* Live mode parameters. */
typedef struct ag_eval_live_opts {
    const char *upstream;      /* base URL: https://api.openai.com, or one ending in /v1 */
    const char *const *models; /* each prompt goes to each model: one group per model */
    uint32_t nmodels;          /* >= 1 */
    const char *api_key;       /* sent as Authorization: Bearer; NULL = no header */
    uint32_t samples;          /* requests per prompt, >= 1 */
    bool has_temperature;
    double temperature;
    uint32_t parallel;   /* requests in flight; 0 = 4 */
    uint32_t timeout_ms; /* per request; 0 = 120 s */
    FILE *save;          /* each answered body as one JSONL line; NULL = none */
    bool progress;       /* draw a bar on stderr: requests done, failed, elapsed */
    ag_str_t hint;       /* the rules' hint text (ag_rules_hint), borrowed; for hint arms */
    bool arm_off;        /* send each prompt without the hint (one group per model) */
    bool arm_on;         /* and/or with it, as the system message (ag_hint_apply); both: two
                            groups per model, "off" first. Neither = arm_off. */
} ag_eval_live_opts_t;

/* Parses a prompts file (one plain-text prompt per line, or a JSON line {"messages": [...]} whose
 * trailing assistant messages are dropped), sends each prompt samples times to each model at the
 * upstream's /v1/chat/completions (non-streamed) and judges the replies, each in its model's
 * group. With arm_on the hint goes into each request as Chat's system instruction
 * (ag_hint_apply: appended to the first system/developer message, or a new first message).
 * --save lines carry the model asked for in "model" when the answer has none. Bad prompt
 * lines are counted bad. Returns AG_OK when at least one prompt was sent, AG_EIO when the file
 * cannot be read, AG_EINVAL when it has no usable prompt. Upstream failures are counted in the
 * stats, never returned. */
AG_MUSTCHECK int ag_eval_live(ag_eval_t *ev, const char *prompts_path,
                              const ag_eval_live_opts_t *opts);

/* `astgate eval ARGS`: argv[0] is the first argument after "eval". Exit status: 0 done (whatever
 * the accuracy), 1 the data cannot be read / no line is usable / every live request failed /
 * the rules do not load, 2 usage error. */
int ag_eval_main(int argc, char **argv);

#endif

/* API adapters: what the proxy knows of one upstream API (OpenAI Chat Completions first). An
 * adapter finds the reply text in a non-streamed body or in streamed events, runs the engine or the
 * streaming core on it, and writes the result back, keeping every other byte. */
#ifndef AG_API_H
#define AG_API_H

#include "rewrite.h"
#include "stream.h"
#include "toolcode.h"

#define AG_API_MAX_RULE_IDS 16

/* What an adapter did to one reply; the proxy turns it into headers, logs and metrics. */
typedef struct ag_api_stats {
    uint32_t rewrites; /* edits applied */
    uint32_t flags;
    uint32_t dropped;
    const char *rule_ids[AG_API_MAX_RULE_IDS]; /* rules that rewrote, first seen first */
    uint32_t nrule_ids;
    const char *blocked_rule; /* set when a block rule matched */
    const char *blocked_message;
    bool had_code; /* some reply text held a code block */
} ag_api_stats_t;

/* One reply (a choice, a content part) as the rules saw it, for metrics. */
typedef struct ag_reply_summary {
    bool had_code;     /* a code block was considered */
    uint32_t rewrites; /* applied */
    uint32_t flags;
    uint32_t dropped;
    uint32_t blocked;
    uint32_t shadowed; /* what shadow-mode rules would have done */
    uint32_t unjudged; /* code blocks too broken to judge */
    uint64_t parse_ns;
} ag_reply_summary_t;

void ag_reply_summary_add(ag_reply_summary_t *s, const ag_result_t *res);

/* Given by the proxy for each request. */
typedef struct ag_api_env {
    ag_engine_t *engine;   /* the worker's engine */
    size_t max_held;       /* ag_stream_new's max_text */
    ag_stream_hold_t hold; /* ag_stream_set_hold's policy, set right after ag_stream_new */
    /* called for each engine result (the audit log); index: the choice or content part */
    void (*on_result)(void *ud, int index, const ag_result_t *res);
    /* called once per reply when it is complete (metrics) */
    void (*on_reply)(void *ud, int index, const ag_reply_summary_t *s);
    void *ud;
    ag_str_t model;          /* filled by the adapter when it reads the upstream's model */
    const ag_tools_t *tools; /* tools whose calls carry code; NULL = tool calls pass through */
    /* set while on_result reports the code of a tool call (NULL for reply text) */
    const ag_tool_site_t *tool;
    /* a tool call passed through unchanged for a reason worth a log line (arguments that are not
     * JSON); may be NULL */
    void (*on_tool_skip)(void *ud, int index, const ag_tool_call_t *call, const char *why);
    /* called once per streamed response, when the adapter's state is freed (however the stream
     * ended: cleanly, blocked, cut off), with its streaming core's hold statistics (metrics);
     * may be NULL */
    void (*on_hold)(void *ud, const ag_stream_hold_stats_t *st);
    /* reply text waited ns in astgate before it was released (astgate_held_seconds): called
     * through ag_api_report_wait from the streaming core's wait callback (ag_stream_set_wait),
     * per release of text that arrived in an earlier push; may be NULL */
    void (*on_held_wait)(void *ud, uint64_t ns);
} ag_api_env_t;

typedef struct ag_api {
    const char *name; /* for logs: "chat.completions" */
    const char *path; /* route it serves, e.g. "/v1/chat/completions" */
    /* Non-streamed 2xx JSON body → the new body in out (appended). AG_EINVAL when the body is not
     * what the API sends (the proxy then passes it through). */
    int (*rewrite_body)(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st);
    /* Streamed 2xx body. */
    void *(*stream_new)(ag_api_env_t *env, ag_api_stats_t *st);
    /* Upstream bytes in, client bytes out (appended). After a block, *ended is set: the stream
     * was closed with an error event and nothing more may be sent. */
    int (*stream_feed)(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended);
    /* The upstream body ended (cleanly or not): flush what is held. */
    int (*stream_end)(void *state, ag_buf_t *out);
    void (*stream_free)(void *state);
} ag_api_t;

extern const ag_api_t ag_api_openai_chat;
extern const ag_api_t ag_api_openai_responses;
extern const ag_api_t ag_api_anthropic;

/* An engine result for reply `key`: counted into sum, and logged through env->on_result when it
 * has events. */
void ag_api_report(ag_api_env_t *env, uint64_t key, const ag_result_t *res,
                   ag_reply_summary_t *sum);

/* A complete tool call's input (ag_toolcode_rewrite), rewritten into out and reported: each
 * engine result to env->on_result (env->tool set meanwhile), the call once to env->on_reply as a
 * reply of its own when it had code (so metrics count it like reply text), and into st (a block
 * rule sets st->blocked_rule: the caller answers with the API's error). index: the choice, output
 * item or content block. Returns AG_OK (out holds the input, changed or not), or AG_ENOENT /
 * AG_EINVAL (out untouched: pass the input through as it came; AG_EINVAL was reported to
 * env->on_tool_skip), or AG_ETOOBIG. */
AG_MUSTCHECK int ag_api_tool_rewrite(ag_api_env_t *env, ag_api_stats_t *st, int index,
                                     const ag_tool_call_t *call, ag_str_t input, ag_buf_t *out,
                                     bool *changed);

/* Reports a release's wait (ag_stream_wait_cb's wait_ns) to env->on_held_wait (when set). */
void ag_api_report_wait(ag_api_env_t *env, uint64_t wait_ns);
/* Reports core's hold statistics to env->on_hold (when set); core may be NULL (nothing). For an
 * adapter's stream_free, before it frees core. */
void ag_api_report_hold(ag_api_env_t *env, const ag_stream_t *core);

/* Adds a rule id to st (once). */
void ag_api_stats_rule(ag_api_stats_t *st, const char *id);
/* Counts a result into st; sets blocked_rule from the first block event. */
void ag_api_stats_add(ag_api_stats_t *st, const ag_result_t *res);

#endif

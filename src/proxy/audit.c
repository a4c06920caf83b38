/* The audit log's JSON lines. */
#include "audit.h"

#include "json.h"

#include <time.h>

void ag_audit_ctx_init(ag_audit_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->choice = -1;
    c->streamed = -1;
}

const char *ag_action_name(ag_action_t a)
{
    switch (a) {
    case AG_ACTION_REWRITE:
        return "rewrite";
    case AG_ACTION_FLAG:
        return "flag";
    case AG_ACTION_BLOCK:
        return "block";
    }
    return "?";
}

static int kv_str(ag_buf_t *b, const char *key, ag_str_t v)
{
    int rc = ag_buf_append(b, ",\"", 2);
    if (rc == AG_OK)
        rc = ag_buf_append(b, key, strlen(key));
    if (rc == AG_OK)
        rc = ag_buf_append(b, "\":", 2);
    if (rc == AG_OK)
        rc = ag_json_append_str(b, v);
    return rc;
}

int ag_audit_begin(ag_buf_t *b, int64_t time_ms)
{
    if (time_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    return ag_buf_appendf(b, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          (int)(time_ms % 1000));
}

int ag_audit_format(ag_buf_t *b, const ag_event_t *ev, const ag_audit_ctx_t *ctx, int64_t time_ms)
{
    int rc = ag_audit_begin(b, time_ms);
    if (rc == AG_OK && ctx && ctx->request_id)
        rc = kv_str(b, "request_id", ag_cstr(ctx->request_id));
    if (rc == AG_OK && ctx && ctx->route)
        rc = kv_str(b, "route", ag_cstr(ctx->route));
    if (rc == AG_OK && ctx && ctx->model.len)
        rc = kv_str(b, "model", ctx->model);
    if (rc == AG_OK && ctx && ctx->choice >= 0)
        rc = ag_buf_appendf(b, ",\"choice\":%d", ctx->choice);
    if (rc == AG_OK && ctx && ctx->streamed >= 0)
        rc = ag_buf_appendf(b, ",\"streamed\":%s", ctx->streamed ? "true" : "false");
    if (rc == AG_OK && ctx && ctx->file)
        rc = kv_str(b, "file", ag_cstr(ctx->file));
    if (rc == AG_OK && ctx && ctx->tool.len)
        rc = kv_str(b, "tool", ctx->tool);
    if (rc == AG_OK && ctx && ctx->tool.len && ctx->call_id.len)
        rc = kv_str(b, "call_id", ctx->call_id);
    if (rc == AG_OK && ctx && ctx->tool.len && ctx->argument)
        rc = kv_str(b, "argument", ag_cstr(ctx->argument));
    if (rc == AG_OK && ctx && ctx->tool.len && ctx->tool_file.len)
        rc = kv_str(b, "path", ctx->tool_file);
    if (rc == AG_OK)
        rc = kv_str(b, "rule", ag_cstr(ev->rule));
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, ",\"action\":\"%s\"", ag_action_name(ev->action));
    if (rc == AG_OK && ev->action == AG_ACTION_REWRITE)
        rc = ag_buf_appendf(b, ",\"applied\":%s", ev->applied ? "true" : "false");
    if (rc == AG_OK && ev->shadow)
        rc = ag_buf_append(b, ",\"mode\":\"shadow\"", 16);
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, ",\"block\":%u,\"line\":%u,\"column\":%u", ev->block, ev->line,
                            ev->col);
    if (rc == AG_OK && ev->redact) /* the text may be a credential: its size only */
        rc = ag_buf_appendf(b, ",\"redacted\":true,\"before_bytes\":%zu", ev->before.len);
    if (rc == AG_OK && !ev->redact)
        rc = kv_str(b, "before", ev->before);
    if (rc == AG_OK && !ev->redact && ev->action == AG_ACTION_REWRITE)
        rc = kv_str(b, "after", ev->after);
    if (rc == AG_OK && ev->reason && ev->reason[0])
        rc = kv_str(b, "reason", ag_cstr(ev->reason));
    if (rc == AG_OK && ev->other_rule)
        rc = kv_str(b, "kept_rule", ag_cstr(ev->other_rule));
    if (rc == AG_OK && ev->action != AG_ACTION_REWRITE && ev->message && ev->message[0])
        rc = kv_str(b, "message", ag_cstr(ev->message));
    if (rc == AG_OK && ev->params) /* a JSON object the rule loader made */
        rc = ag_buf_append(b, ",\"params\":", 10);
    if (rc == AG_OK && ev->params)
        rc = ag_buf_append(b, ev->params, strlen(ev->params));
    if (rc == AG_OK)
        rc = ag_buf_append(b, "}\n", 2);
    return rc;
}

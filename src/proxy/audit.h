/* The audit log: one JSON line per rewrite, dropped edit, flag or block. Every non-printable byte
 * is escaped, so a line is always one line of valid JSON whatever the model wrote. */
#ifndef AG_AUDIT_H
#define AG_AUDIT_H

#include "rewrite.h"

/* Where an event happened, beyond the reply itself (the proxy fills it; the CLI leaves it zero). */
typedef struct ag_audit_ctx {
    const char *request_id; /* NULL = not in a request */
    const char *route;      /* e.g. "/v1/chat/completions" */
    ag_str_t model;         /* upstream model, len 0 = unknown */
    int choice;             /* choice index; -1 = none */
    int streamed;           /* 1 streamed, 0 not, -1 unknown */
    const char *file;       /* input file name (CLI); NULL = none */
    ag_str_t tool;          /* the code came from a tool call: its tool name (len 0 = reply
                               text) */
    ag_str_t call_id;       /* ... its call id (len 0 = none) */
    const char *argument;   /* ... the argument that held it ("content", "edits[1].new_string") */
    ag_str_t tool_file;     /* ... the file it writes (len 0 = none) */
} ag_audit_ctx_t;

void ag_audit_ctx_init(ag_audit_ctx_t *c);

/* Appends one JSON line (with its "\n") for ev to b. time_ms: wall clock in milliseconds since the
 * epoch (0 = now). */
AG_MUSTCHECK int ag_audit_format(ag_buf_t *b, const ag_event_t *ev, const ag_audit_ctx_t *ctx,
                                 int64_t time_ms);

/* Appends the opening of a log line, `{"time":"YYYY-MM-DDTHH:MM:SS.mmmZ"`, for lines of other
 * kinds written to the same log. time_ms as above. */
AG_MUSTCHECK int ag_audit_begin(ag_buf_t *b, int64_t time_ms);

const char *ag_action_name(ag_action_t a);

#endif

/* Server-sent events (text/event-stream) framing: an incremental parser that hands out each event,
 * comment and stray blank line with its exact raw bytes (for byte-for-byte pass-through), and
 * writers for the safe subset a proxy emits. */
#ifndef AG_SSE_H
#define AG_SSE_H

#include "util.h"

/*
 * What the parser accepts (WHATWG HTML "event stream interpretation", plus what the OpenAI SDK does
 * at end of stream; see wire-formats.md section 4):
 * - A line ends at LF, CRLF or a lone CR. A CR at the end of the bytes fed so far is held until the
 *   next byte (or ag_sse_finish) shows whether an LF follows, so a CR|LF split across feeds is one
 *   line ending.
 * - One UTF-8 BOM (EF BB BF) at the very start of the stream is dropped, even when split across
 *   feeds; anywhere else it is ordinary bytes.
 * - A line starting with ':' is a comment. Any other non-blank line is a field: the name runs up to
 *   the first ':' (the whole line when there is none, and the value is then empty); one space right
 *   after the colon is dropped. Names are case-sensitive: "data" appends its value to the data
 *   (several data lines are joined with "\n"), "event" sets the event name, "id" the id (ignored
 *   when the value holds a NUL byte), "retry" the retry time (ignored unless the value is 1+ ASCII
 *   digits; saturates at LONG_MAX). Other names are ignored. Later lines override earlier ones.
 * - A blank line ends the event in progress (an event = one or more field lines). Unlike a browser
 *   the parser delivers events without a data line too (has_data false; e.g. "event: ping\n\n"), so
 *   no upstream byte is lost; a client that follows the spec would not dispatch them.
 *
 * Items and their raw bytes. The raw bytes of consecutive items are consecutive bytes of the
 * stream: after ag_sse_finish with no error their concatenation is the whole stream minus the
 * leading BOM, nothing left out. The kinds:
 * - AG_SSE_EVENT: raw runs from the event's first line to its blank line, line ending included.
 *   Comment lines between the first field line and the blank line belong to the event (in raw,
 *   not delivered on their own).
 * - AG_SSE_COMMENT: a comment line outside an event; raw is the line and its line ending.
 * - AG_SSE_BLANK: a blank line that ended no event (e.g. the "\n" after ": keepalive\n"); raw is
 *   that line ending. Pass it through or drop it; it means nothing to a client.
 * Each item is delivered as soon as its last byte is known, except that a CR at the end of the
 * bytes fed so far waits for the next byte (see above).
 *
 * Limits: no item may exceed max_event raw bytes. As soon as the bytes of the item in progress go
 * past it, feed returns AG_ETOOBIG (an event that spans feeds is kept in a buffer that grows up to
 * max_event; an event inside one feed is not copied). The result does not depend on how the stream
 * is split into feeds: the same items with the same fields and raw bytes, then the same code.
 *
 * Thread-safety: a parser is used by one thread at a time; parsers share nothing.
 */

/* Default max_event, bytes: 4 MiB (response.completed repeats the whole output). */
#define AG_SSE_MAX_EVENT_DEFAULT ((size_t)4 << 20)

typedef enum ag_sse_kind {
    AG_SSE_EVENT,   /* an event, ended by a blank line (or by ag_sse_finish: eof set) */
    AG_SSE_COMMENT, /* a ':' line outside an event, e.g. ": keepalive" */
    AG_SSE_BLANK,   /* a blank line that ended no event; only raw is set */
} ag_sse_kind_t;

/* One item. All views are borrowed for the duration of the callback only: they point into the
 * caller's fed bytes or the parser's buffers. Views that are not set have len 0 (ptr non-NULL). */
typedef struct ag_sse_item {
    ag_sse_kind_t kind;
    ag_str_t event; /* EVENT: value of the last "event" line; len 0 when none (or empty) */
    ag_str_t data;  /* EVENT: data lines joined with "\n" (a view into raw when there is one data
                     * line); COMMENT: the text after ':' with one leading space dropped */
    ag_str_t id;    /* EVENT: value of the last valid "id" line, when has_id */
    ag_str_t raw;   /* exact bytes of the item as received (see above) */
    long retry;     /* EVENT: milliseconds from the last valid "retry" line; -1 when none */
    bool has_id;    /* EVENT: an "id" line was seen (its value may be empty) */
    bool has_data;  /* EVENT: at least one "data" line (a spec client dispatches only then) */
    bool eof;       /* EVENT: delivered by ag_sse_finish without its blank line; raw ends with the
                     * last line, with or without its line ending */
} ag_sse_item_t;

/* Called for each item in stream order; it must not call into the parser. A non-zero return stops
 * parsing: the feed/finish call returns that value at once and the parser stays stopped (see
 * ag_sse_feed). */
typedef int (*ag_sse_cb)(void *ud, const ag_sse_item_t *it);

/* The parser, in the caller's storage. Fields are private. */
typedef struct ag_sse_parser {
    ag_buf_t buf;     /* raw bytes of the item in progress when it spans feeds; max = max_event */
    ag_buf_t scratch; /* the data of an event with 2+ data lines, joined */
    size_t line;      /* offset in buf of the unfinished line (buf has no line ending past it,
                       * but for a final CR when cr is set) */
    int err;          /* sticky: AG_ETOOBIG or a callback's stop code; 0 = none */
    uint8_t bom;      /* bytes of a leading BOM matched and held while !started (0-2) */
    bool started;     /* the leading-BOM check is over */
    bool cr;          /* buf ends with a CR ending the line at `line`; an LF next joins it */
    /* the event in progress; offsets from the item's first raw byte */
    bool in_event;   /* a field line was seen since the last item */
    bool has_id;     /* see ag_sse_item_t */
    uint8_t ndata;   /* data lines so far, saturating at 2 (2: the data is in scratch) */
    size_t ev_off;   /* event name */
    size_t ev_len;   /* event name */
    size_t id_off;   /* id */
    size_t id_len;   /* id */
    size_t data_off; /* the first data line's value, while ndata == 1 */
    size_t data_len; /* the first data line's value, while ndata == 1 */
    long retry;      /* -1 = none */
} ag_sse_parser_t;

/* Sets up p for a new stream. max_event: bytes, the largest item (raw) accepted; 0 = default
 * AG_SSE_MAX_EVENT_DEFAULT. Allocates nothing until an item spans feeds or has 2+ data lines. */
void ag_sse_init(ag_sse_parser_t *p, size_t max_event);
/* Frees p's buffers; p may be initialised again. */
void ag_sse_dispose(ag_sse_parser_t *p);

/* Parses the next bytes of the stream (any split: inside a field name, between CR and LF, inside a
 * UTF-8 character), calling cb for each item completed. Bytes of an unfinished item are copied
 * into p; bytes is not kept after the call. Returns AG_OK when all bytes were taken (there is no
 * AG_AGAIN: "need more" is the normal state), AG_ETOOBIG (see Limits), or the non-zero value cb
 * returned. After an error the parser is stopped: later feed and finish calls return the same
 * code and call nothing. */
AG_MUSTCHECK int ag_sse_feed(ag_sse_parser_t *p, ag_str_t bytes, ag_sse_cb cb, void *ud);

/* End of stream: delivers what is still held. An unfinished last line counts as a complete line,
 * a held CR as a line ending, and an event without its blank line is delivered with eof set (as
 * the OpenAI SDK does; the Anthropic SDK and eventsource-parser would drop it). Returns AG_OK, the
 * parser's error if it was stopped, or cb's non-zero value. In every case p is then ready for a
 * new stream, as after ag_sse_init (buffers kept for reuse). */
AG_MUSTCHECK int ag_sse_finish(ag_sse_parser_t *p, ag_sse_cb cb, void *ud);

/* Appends one event in the form every client accepts: "event: NAME\n" when event.len > 0, then
 * "data: LINE\n" for each line of data (split at LF, CRLF and lone CR, which a reader gets back as
 * "\n"; empty data gives one "data: \n"), then "\n". AG_EINVAL when event holds a CR or LF,
 * AG_ETOOBIG when out would pass its max; on error out is left as it was. */
AG_MUSTCHECK int ag_sse_write_event(ag_buf_t *out, ag_str_t event, ag_str_t data);

/* Appends the comment ": TEXT\n\n" (":\n\n" when text is empty), e.g. a "keepalive" heartbeat.
 * AG_EINVAL when text holds a CR or LF, AG_ETOOBIG when out would pass its max; on error out is
 * left as it was. */
AG_MUSTCHECK int ag_sse_write_comment(ag_buf_t *out, ag_str_t text);

#endif

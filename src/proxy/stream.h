/* The streaming core: hold back the code blocks of a text that arrives in deltas, rewrite each one
 * when it closes (or when the text ends), and let everything else through at once. It works on
 * (stream key, text delta) and knows nothing of JSON or SSE: an API adapter extracts the deltas
 * (a choice index, an output/content index, a content block index → key) and writes the results
 * back. What the deltas of one key add up to equals ag_engine_rewrite() of the whole text. */
#ifndef AG_STREAM_H
#define AG_STREAM_H

#include "rewrite.h"

typedef struct ag_stream ag_stream_t;

/* Called after each rewrite of a held block (or bare reply), with the engine's result (events
 * borrowed for the call), whether or not anything happened. */
typedef void (*ag_stream_result_cb)(void *ud, uint64_t key, const ag_result_t *res);

/* engine is borrowed (per thread). max_text caps the bytes kept per key (the text of the held
 * block and what the engine needs); past it the key passes through unchanged. */
ag_stream_t *ag_stream_new(ag_engine_t *engine, size_t max_text, ag_stream_result_cb cb, void *ud);
void ag_stream_free(ag_stream_t *s);

typedef enum ag_stream_status {
    AG_STREAM_OK = 0,
    AG_STREAM_BLOCKED = 1, /* a block matched a rule with action block: it was not emitted; the
                            * caller ends the stream with an error */
} ag_stream_status_t;

/* Adds delta to key's text and appends to out what can be sent now (possibly nothing: at most the
 * last line when it could open a fence, or a code block until it closes). Returns AG_OK and sets
 * *status; AG_ETOOBIG only when out is full. */
AG_MUSTCHECK int ag_stream_push(ag_stream_t *s, uint64_t key, ag_str_t delta, ag_buf_t *out,
                                ag_stream_status_t *status);

/* The text of key is complete: appends everything still held, rewritten. */
AG_MUSTCHECK int ag_stream_finish(ag_stream_t *s, uint64_t key, ag_buf_t *out,
                                  ag_stream_status_t *status);

/* How much of an open code block is held. */
typedef enum ag_stream_hold {
    AG_STREAM_HOLD_BLOCK = 0,   /* the whole block, until its closing fence */
    AG_STREAM_HOLD_MINIMAL = 1, /* only from the first place a rule could still edit (see
                                   hold.h); everything before it goes out as it arrives */
} ag_stream_hold_t;

/* Sets the hold policy for keys that start after the call (default AG_STREAM_HOLD_BLOCK). */
void ag_stream_set_hold(ag_stream_t *s, ag_stream_hold_t hold);

/* The minimal hold's CPU budget: after an analysis that took t of CPU, the next analysis of the
 * same block waits until (1 + duty) * t of wall time has passed since it started (the text in
 * between is held; a later push or the finish takes it). It keeps the analyses at most
 * 1 / (1 + duty) of a stream's time: deltas that come as fast as a proxy can read them (several
 * in one read, a burst) are analysed once, while at a model's pace (milliseconds between deltas,
 * against tens of microseconds per analysis) every due analysis runs. Default AG_STREAM_DUTY;
 * 0 = analyse whenever due (the property tests). */
#define AG_STREAM_DUTY 10
void ag_stream_set_duty(ag_stream_t *s, uint32_t duty);
/* The clock the duty reads, in nanoseconds, for both the wall time and an analysis's CPU time
 * (default CLOCK_MONOTONIC and CLOCK_THREAD_CPUTIME_ID; tests set their own). */
typedef uint64_t (*ag_stream_clock_fn)(void *ud);
void ag_stream_set_clock(ag_stream_t *s, ag_stream_clock_fn clock, void *ud);

/* Called when text that arrived in an earlier push goes out (a held block, a held line):
 * wait_ns is how long its oldest byte waited in the core, bytes how many went out. ud is
 * ag_stream_new's. For astgate_held_seconds. */
typedef void (*ag_stream_wait_cb)(void *ud, uint64_t key, uint64_t wait_ns, size_t bytes);
void ag_stream_set_wait(ag_stream_t *s, ag_stream_wait_cb cb);

/* What the hold did over the stream's life, for metrics and the rewrite log. */
typedef struct ag_stream_hold_stats {
    uint64_t held_max;   /* most bytes held at once by one key */
    uint64_t violations; /* blocks whose rewrite changed bytes already sent (a bug in the hold
                            analysis: counted and logged, never expected) */
    uint64_t analyses;   /* hold analyses run (ag_hold_frontier calls), for the benches */
} ag_stream_hold_stats_t;
void ag_stream_hold_stats(const ag_stream_t *s, ag_stream_hold_stats_t *st);

/* Bytes currently held back for key (0 when nothing is). */
size_t ag_stream_held(const ag_stream_t *s, uint64_t key);

#endif

/* Unit tests for sse: the incremental parser (every framing variant of wire-formats.md section 4,
 * raw bytes, limits, any split of the input) and the writers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include "sse.h"

#define MAXI 128
#define POOL (1 << 18)

/* A copy of one delivered item (views die with the callback). */
typedef struct rec_item {
    ag_sse_kind_t kind;
    ag_str_t event, data, id, raw; /* into rec_t.pool */
    long retry;
    bool has_id, has_data, eof;
    bool data_in_raw; /* the delivered data view pointed into the delivered raw view */
} rec_item_t;

typedef struct rec {
    int rc;         /* first non-zero code of the feeds and finish */
    size_t n;       /* items */
    size_t stop_at; /* the callback returns stop_code on item number stop_at (0-based) */
    int stop_code;  /* 0 = never stop */
    rec_item_t it[MAXI];
    size_t used;
    char pool[POOL];
} rec_t;

static ag_str_t keep(rec_t *r, ag_str_t s)
{
    assert_true(r->used + s.len <= POOL);
    char *q = r->pool + r->used;
    if (s.len > 0)
        memcpy(q, s.ptr, s.len);
    r->used += s.len;
    return ag_str(q, s.len);
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    rec_t *r = ud;
    assert_true(r->n < MAXI);
    rec_item_t *c = &r->it[r->n];
    assert_non_null(it->event.ptr);
    assert_non_null(it->data.ptr);
    assert_non_null(it->id.ptr);
    assert_non_null(it->raw.ptr);
    c->kind = it->kind;
    c->event = keep(r, it->event);
    c->data = keep(r, it->data);
    c->id = keep(r, it->id);
    c->raw = keep(r, it->raw);
    c->retry = it->retry;
    c->has_id = it->has_id;
    c->has_data = it->has_data;
    c->eof = it->eof;
    c->data_in_raw =
        it->data.ptr >= it->raw.ptr && it->data.ptr + it->data.len <= it->raw.ptr + it->raw.len;
    r->n++;
    if (r->stop_code != 0 && r->n == r->stop_at + 1)
        return r->stop_code;
    return 0;
}

static rec_t *rec_new(void)
{
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    return r;
}

/* Feeds in[0, len) in pieces of step bytes (0: in one piece), then finishes. */
static void feed_step(ag_sse_parser_t *p, rec_t *r, const char *in, size_t len, size_t step)
{
    size_t pos = 0;

    if (step == 0)
        step = len ? len : 1;
    while (pos < len && r->rc == 0) {
        size_t k = len - pos < step ? len - pos : step;
        r->rc = ag_sse_feed(p, ag_str(in + pos, k), on_item, r);
        pos += k;
    }
    int frc = ag_sse_finish(p, on_item, r);
    if (r->rc == 0)
        r->rc = frc;
    else
        assert_int_equal(frc, r->rc); /* the error is sticky */
}

static rec_t *run_step(const char *in, size_t len, size_t max, size_t step)
{
    ag_sse_parser_t p;
    rec_t *r = rec_new();

    ag_sse_init(&p, max);
    feed_step(&p, r, in, len, step);
    ag_sse_dispose(&p);
    return r;
}

static rec_t *run1(const char *in)
{
    return run_step(in, strlen(in), 0, 0);
}

/* Feeds the NULL-terminated list of chunks, then finishes. */
static rec_t *run_chunks(size_t max, const char *const *chunks)
{
    ag_sse_parser_t p;
    rec_t *r = rec_new();

    ag_sse_init(&p, max);
    for (size_t i = 0; chunks[i] != NULL && r->rc == 0; i++)
        r->rc = ag_sse_feed(&p, ag_cstr(chunks[i]), on_item, r);
    int frc = ag_sse_finish(&p, on_item, r);
    if (r->rc == 0)
        r->rc = frc;
    ag_sse_dispose(&p);
    return r;
}

static void assert_str(ag_str_t s, const char *want)
{
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("got \"%.*s\" (%zu bytes), want \"%s\"", (int)s.len, s.ptr, s.len, want);
}

static void assert_event(const rec_t *r, size_t i, const char *event, const char *data,
                         const char *raw)
{
    assert_true(i < r->n);
    assert_int_equal(r->it[i].kind, AG_SSE_EVENT);
    assert_str(r->it[i].event, event);
    assert_str(r->it[i].data, data);
    assert_str(r->it[i].raw, raw);
}

static void assert_kind(const rec_t *r, size_t i, ag_sse_kind_t kind, const char *raw)
{
    assert_true(i < r->n);
    assert_int_equal(r->it[i].kind, kind);
    assert_str(r->it[i].raw, raw);
}

static void assert_same(const rec_t *a, const rec_t *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const rec_item_t *x = &a->it[i], *y = &b->it[i];
        assert_int_equal(x->kind, y->kind);
        assert_true(ag_str_eq(x->event, y->event));
        assert_true(ag_str_eq(x->data, y->data));
        assert_true(ag_str_eq(x->id, y->id));
        assert_true(ag_str_eq(x->raw, y->raw));
        assert_int_equal(x->retry, y->retry);
        assert_int_equal(x->has_id, y->has_id);
        assert_int_equal(x->has_data, y->has_data);
        assert_int_equal(x->eof, y->eof);
    }
}

/* the raw bytes of all items, in order */
static void assert_raw_concat(const rec_t *r, const char *want, size_t want_len)
{
    size_t at = 0;

    for (size_t i = 0; i < r->n; i++) {
        assert_true(at + r->it[i].raw.len <= want_len);
        assert_memory_equal(r->it[i].raw.ptr, want + at, r->it[i].raw.len);
        at += r->it[i].raw.len;
    }
    assert_int_equal(at, want_len);
}

/* ---- line endings ---- */

static void test_lf(void **state)
{
    (void)state;
    rec_t *r = run1("data: a\n\ndata: b\n\n");
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "", "a", "data: a\n\n");
    assert_event(r, 1, "", "b", "data: b\n\n");
    assert_false(r->it[0].eof);
    assert_true(r->it[0].has_data);
    assert_false(r->it[0].has_id);
    assert_int_equal(r->it[0].retry, -1);
    free(r);
}

static void test_crlf(void **state)
{
    (void)state;
    rec_t *r = run1("event: e\r\ndata: a\r\n\r\ndata: b\r\n\r\n");
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "e", "a", "event: e\r\ndata: a\r\n\r\n");
    assert_event(r, 1, "", "b", "data: b\r\n\r\n");
    free(r);
}

static void test_lone_cr(void **state)
{
    (void)state;
    rec_t *r = run1("event: e\rdata: a\rdata: b\r\rdata: c\r\r");
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "e", "a\nb", "event: e\rdata: a\rdata: b\r\r");
    assert_event(r, 1, "", "c", "data: c\r\r");
    assert_false(r->it[1].eof); /* the last CR is a line ending at finish */
    free(r);
}

static void test_mixed_endings(void **state)
{
    (void)state;
    rec_t *r = run1("data: a\rdata: b\r\ndata: c\n\r\n");
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a\nb\nc", "data: a\rdata: b\r\ndata: c\n\r\n");
    free(r);
}

/* a CR ending one feed and an LF starting the next are one line ending, not two */
static void test_cr_lf_split_across_feeds(void **state)
{
    (void)state;
    static const char *const c1[] = {"data: a\r", "\n", "\r", "\ndata: b\r", "\n\r", "\n", NULL};
    rec_t *r = run_chunks(0, c1);
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "", "a", "data: a\r\n\r\n");
    assert_event(r, 1, "", "b", "data: b\r\n\r\n");
    free(r);

    /* the blank line's CR at the end of a feed: the event waits for the next byte */
    static const char *const c2[] = {"data: a\r\r", "\ndata: b\n\n", NULL};
    r = run_chunks(0, c2);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "", "a", "data: a\r\r\n");
    assert_event(r, 1, "", "b", "data: b\n\n");
    free(r);

    /* a held CR followed by something else is a lone CR */
    static const char *const c3[] = {"data: a\r", "\r", "data: b\r", "\r", NULL};
    r = run_chunks(0, c3);
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "", "a", "data: a\r\r");
    assert_event(r, 1, "", "b", "data: b\r\r");
    free(r);
}

static void test_bom(void **state)
{
    (void)state;
    /* stripped at the start */
    rec_t *r = run1("\xEF\xBB\xBF"
                    "data: a\n\n");
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a", "data: a\n\n");
    free(r);

    /* split byte by byte across feeds */
    static const char *const c1[] = {"\xEF", "\xBB", "\xBF", "data: a\n\n", NULL};
    r = run_chunks(0, c1);
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a", "data: a\n\n");
    free(r);

    /* only one, and only at the start: a second BOM is part of the field name */
    r = run1("\xEF\xBB\xBF\xEF\xBB\xBF"
             "data: a\n\n");
    assert_int_equal(r->n, 1);
    assert_int_equal(r->it[0].kind, AG_SSE_EVENT);
    assert_false(r->it[0].has_data);
    assert_str(r->it[0].raw, "\xEF\xBB\xBF"
                             "data: a\n\n");
    free(r);
    r = run1("data: a\n\n\xEF\xBB\xBF"
             "data: b\n\n");
    assert_int_equal(r->n, 2);
    assert_false(r->it[1].has_data);
    free(r);

    /* a BOM prefix that turns out not to be one is kept as bytes */
    static const char *const c2[] = {"\xEF\xBB", ": c\n", NULL};
    r = run_chunks(0, c2);
    assert_int_equal(r->n, 1);
    assert_kind(r, 0, AG_SSE_EVENT, "\xEF\xBB: c\n");
    assert_true(r->it[0].eof);
    free(r);
    static const char *const c3[] = {"\xEF", NULL};
    r = run_chunks(0, c3);
    assert_int_equal(r->n, 1);
    assert_kind(r, 0, AG_SSE_EVENT, "\xEF");
    free(r);
}

/* ---- fields ---- */

static void test_space_after_colon(void **state)
{
    (void)state;
    rec_t *r = run1("data:x\n\ndata: x\n\ndata:  x\n\nevent:e\ndata:\n\n");
    assert_int_equal(r->n, 4);
    assert_event(r, 0, "", "x", "data:x\n\n");
    assert_event(r, 1, "", "x", "data: x\n\n");
    assert_event(r, 2, "", " x", "data:  x\n\n");
    assert_event(r, 3, "e", "", "event:e\ndata:\n\n");
    assert_true(r->it[3].has_data);
    free(r);
}

static void test_multiline_data(void **state)
{
    (void)state;
    rec_t *r = run1("data: a\ndata:\ndata: c\n\ndata: one\n\n");
    assert_int_equal(r->n, 2);
    assert_event(r, 0, "", "a\n\nc", "data: a\ndata:\ndata: c\n\n");
    assert_false(r->it[0].data_in_raw); /* joined in scratch */
    assert_event(r, 1, "", "one", "data: one\n\n");
    assert_true(r->it[1].data_in_raw); /* one data line: a view, no copy */
    free(r);

    /* an event split across feeds is joined the same way */
    static const char *const c[] = {"data: a\nda", "ta: b\ndata: c", "\n\n", NULL};
    r = run_chunks(0, c);
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a\nb\nc", "data: a\ndata: b\ndata: c\n\n");
    free(r);
}

static void test_no_colon(void **state)
{
    (void)state;
    rec_t *r = run1("data\n\nevent\ndata: x\n\nfoo\n\n");
    assert_int_equal(r->n, 3);
    assert_event(r, 0, "", "", "data\n\n");
    assert_true(r->it[0].has_data);
    assert_event(r, 1, "", "x", "event\ndata: x\n\n");
    assert_event(r, 2, "", "", "foo\n\n"); /* unknown field: an event with nothing set */
    assert_false(r->it[2].has_data);
    free(r);
}

static void test_event_id_retry(void **state)
{
    (void)state;
    rec_t *r = run1("event: response.created\nid: 7\nretry: 1500\ndata: {}\n\n"
                    "event: a\nevent: b\nid: 1\nid:\nretry: 10\nretry: 2x\nretry:\ndata: d\n\n"
                    "id: a\xC3\xA9\n\n"
                    "retry: 99999999999999999999999\n\n");
    assert_int_equal(r->n, 4);
    assert_event(r, 0, "response.created", "{}",
                 "event: response.created\nid: 7\nretry: 1500\n"
                 "data: {}\n\n");
    assert_true(r->it[0].has_id);
    assert_str(r->it[0].id, "7");
    assert_int_equal(r->it[0].retry, 1500);

    assert_str(r->it[1].event, "b"); /* the last line wins */
    assert_true(r->it[1].has_id);
    assert_str(r->it[1].id, "");
    assert_int_equal(r->it[1].retry, 10); /* "2x" and "" are ignored */

    assert_str(r->it[2].id, "a\xC3\xA9");
    assert_false(r->it[2].has_data);
    assert_int_equal(r->it[2].retry, -1);

    assert_int_equal(r->it[3].retry, LONG_MAX); /* saturates */
    free(r);

    /* an id holding a NUL is ignored (spec) */
    static const char in[] = "id: 1\nid: x\0y\ndata: z\n\n";
    r = run_step(in, sizeof(in) - 1, 0, 0);
    assert_int_equal(r->n, 1);
    assert_true(r->it[0].has_id);
    assert_str(r->it[0].id, "1");
    assert_int_equal(r->it[0].raw.len, sizeof(in) - 1);
    free(r);
}

/* field names are case-sensitive and must match exactly */
static void test_field_names(void **state)
{
    (void)state;
    rec_t *r = run1("Data: a\ndata : b\nevents: c\nID: d\n\n");
    assert_int_equal(r->n, 1);
    assert_false(r->it[0].has_data);
    assert_false(r->it[0].has_id);
    assert_int_equal(r->it[0].event.len, 0);
    free(r);
}

/* ---- comments and blank lines ---- */

static void test_comments(void **state)
{
    (void)state;
    rec_t *r =
        run1(": keepalive\n\n:\n:x\r\ndata: a\n: inside\ndata: b\n\n: OPENROUTER PROCESSING\n\n");
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 7);
    assert_kind(r, 0, AG_SSE_COMMENT, ": keepalive\n");
    assert_str(r->it[0].data, "keepalive");
    assert_kind(r, 1, AG_SSE_BLANK, "\n");
    assert_kind(r, 2, AG_SSE_COMMENT, ":\n");
    assert_str(r->it[2].data, "");
    assert_kind(r, 3, AG_SSE_COMMENT, ":x\r\n");
    assert_str(r->it[3].data, "x");
    /* a comment inside an event stays in its raw bytes and is not delivered on its own */
    assert_event(r, 4, "", "a\nb", "data: a\n: inside\ndata: b\n\n");
    assert_kind(r, 5, AG_SSE_COMMENT, ": OPENROUTER PROCESSING\n");
    assert_kind(r, 6, AG_SSE_BLANK, "\n");
    free(r);

    /* a comment is delivered as soon as its line ends, before the next feed */
    ag_sse_parser_t p;
    r = rec_new();
    ag_sse_init(&p, 0);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT(": ping\n"), on_item, r), AG_OK);
    assert_int_equal(r->n, 1);
    assert_kind(r, 0, AG_SSE_COMMENT, ": ping\n");
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_OK);
    assert_int_equal(r->n, 1);
    ag_sse_dispose(&p);
    free(r);
}

/* blank lines alone dispatch no event */
static void test_blank_lines_only(void **state)
{
    (void)state;
    rec_t *r = run1("\n\r\n\r\n\n");
    assert_int_equal(r->n, 4);
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(r->it[i].kind, AG_SSE_BLANK);
    assert_str(r->it[1].raw, "\r\n");
    assert_str(r->it[2].raw, "\r\n");
    free(r);

    r = run1("data: a\n\n\n\ndata: b\n\n");
    assert_int_equal(r->n, 4);
    assert_event(r, 0, "", "a", "data: a\n\n");
    assert_kind(r, 1, AG_SSE_BLANK, "\n");
    assert_kind(r, 2, AG_SSE_BLANK, "\n");
    assert_event(r, 3, "", "b", "data: b\n\n");
    free(r);

    r = run1("");
    assert_int_equal(r->rc, AG_OK);
    assert_int_equal(r->n, 0);
    free(r);
}

/* an event without a data line is still delivered, so that no byte is lost */
static void test_event_without_data(void **state)
{
    (void)state;
    rec_t *r = run1("event: ping\n\n");
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "ping", "", "event: ping\n\n");
    assert_false(r->it[0].has_data);
    free(r);
}

/* ---- end of stream ---- */

static void test_finish_flushes_last_event(void **state)
{
    (void)state;
    ag_sse_parser_t p;
    rec_t *r = rec_new();

    ag_sse_init(&p, 0);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: a\n\ndata: [DONE]"), on_item, r), AG_OK);
    assert_int_equal(r->n, 1);
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_OK);
    assert_int_equal(r->n, 2);
    assert_event(r, 1, "", "[DONE]", "data: [DONE]");
    assert_true(r->it[1].eof);
    assert_false(r->it[0].eof);

    /* p is ready for a new stream, BOM check included */
    r->n = 0;
    assert_int_equal(ag_sse_feed(&p,
                                 AG_STR_LIT("\xEF\xBB\xBF"
                                            "event: a\ndata: b\n"),
                                 on_item, r),
                     AG_OK);
    assert_int_equal(r->n, 0);
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_OK);
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "a", "b", "event: a\ndata: b\n");
    assert_true(r->it[0].eof);
    ag_sse_dispose(&p);
    free(r);

    /* a held CR at the end is a line ending: here it completes the event */
    r = run1("data: a\n\r");
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a", "data: a\n\r");
    assert_false(r->it[0].eof);
    free(r);

    r = run1("data: a\r");
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "", "a", "data: a\r");
    assert_true(r->it[0].eof);
    free(r);

    /* an unfinished comment line */
    r = run1("data: a\n\n: bye");
    assert_int_equal(r->n, 2);
    assert_kind(r, 1, AG_SSE_COMMENT, ": bye");
    free(r);

    /* finish on a new parser delivers nothing */
    r = run1("");
    assert_int_equal(r->n, 0);
    free(r);
}

/* ---- whole streams, any split ---- */

static const char openai_chat[] =
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"```ts\\nconst x\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\" = 1;\\n```\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

static const char openai_responses[] =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":"
    "\"in_progress\",\"output\":[]},\"sequence_number\":0}\n\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":0,"
    "\"content_index\":0,\"delta\":\"const x\",\"logprobs\":[],\"sequence_number\":4}\n\n"
    ": keepalive\n\n"
    "event: response.output_text.done\n"
    "data: {\"type\":\"response.output_text.done\",\"text\":\"const x = 1;\","
    "\"sequence_number\":6}\n\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":"
    "\"completed\"},\"sequence_number\":9}\n\n";

static const char anthropic[] =
    "event: message_start\r\n"
    "data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1\", \"content\": []}}\r\n\r\n"
    "event: content_block_start\r\n"
    "data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": "
    "\"text\", \"text\": \"\"}}\r\n\r\n"
    "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
    "event: content_block_delta\r\n"
    "data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": "
    "\"text_delta\", \"text\": \"H\xC3\xA9llo \xF0\x9F\x98\x80\"}}\r\n\r\n"
    "event: message_stop\r\ndata: {\"type\": \"message_stop\"}\r\n\r\n";

/* every framing variant at once, ending without its blank line */
static const char mixed[] = "\xEF\xBB\xBF: hello\r\n\r\nevent: a\rdata:x\r\ndata:  y\n\n"
                            "data\r\rid: 1\nretry: 10\ndata: z\n: inner\n\n\n"
                            "event\ndata: last";

static void check_splits(const char *in, size_t len, size_t skip, size_t nevents)
{
    rec_t *one = run_step(in, len, 0, 0);
    assert_int_equal(one->rc, AG_OK);
    size_t events = 0;
    for (size_t i = 0; i < one->n; i++)
        events += one->it[i].kind == AG_SSE_EVENT;
    assert_int_equal(events, nevents);
    assert_raw_concat(one, in + skip, len - skip);

    for (size_t step = 1; step <= 7; step++) {
        rec_t *r = run_step(in, len, 0, step);
        assert_same(one, r);
        free(r);
    }
    /* every cut into two feeds */
    for (size_t cut = 0; cut <= len; cut++) {
        ag_sse_parser_t p;
        rec_t *r = rec_new();
        ag_sse_init(&p, 0);
        r->rc = ag_sse_feed(&p, ag_str(in, cut), on_item, r);
        if (r->rc == 0)
            r->rc = ag_sse_feed(&p, ag_str(in + cut, len - cut), on_item, r);
        if (r->rc == 0)
            r->rc = ag_sse_finish(&p, on_item, r);
        ag_sse_dispose(&p);
        assert_same(one, r);
        free(r);
    }
    free(one);
}

static void test_reference_streams_any_split(void **state)
{
    (void)state;
    check_splits(openai_chat, sizeof(openai_chat) - 1, 0, 5);
    check_splits(openai_responses, sizeof(openai_responses) - 1, 0, 4);
    check_splits(anthropic, sizeof(anthropic) - 1, 0, 5);
    check_splits(mixed, sizeof(mixed) - 1, 3, 4);

    rec_t *r = run_step(mixed, sizeof(mixed) - 1, 0, 1);
    assert_int_equal(r->n, 7);
    assert_kind(r, 0, AG_SSE_COMMENT, ": hello\r\n");
    assert_kind(r, 1, AG_SSE_BLANK, "\r\n");
    assert_event(r, 2, "a", "x\n y", "event: a\rdata:x\r\ndata:  y\n\n");
    assert_event(r, 3, "", "", "data\r\r");
    assert_event(r, 4, "", "z", "id: 1\nretry: 10\ndata: z\n: inner\n\n");
    assert_int_equal(r->it[4].retry, 10);
    assert_kind(r, 5, AG_SSE_BLANK, "\n");
    assert_event(r, 6, "", "last", "event\ndata: last");
    assert_true(r->it[6].eof);
    free(r);

    r = run_step(anthropic, sizeof(anthropic) - 1, 0, 3);
    assert_str(r->it[3].event, "content_block_delta");
    assert_str(r->it[3].data, "{\"type\": \"content_block_delta\", \"index\": 0, \"delta\": "
                              "{\"type\": \"text_delta\", \"text\": \"H\xC3\xA9llo "
                              "\xF0\x9F\x98\x80\"}}");
    free(r);
}

/* ---- limits and stopping ---- */

static void test_too_big(void **state)
{
    (void)state;
    static const char in[] = "data: a\n\ndata: bcd\n\ndata: e\n\n";
    /* the second event is 11 bytes: a cap of 11 takes it, 10 does not */
    for (size_t step = 0; step <= 3; step++) {
        rec_t *r = run_step(in, sizeof(in) - 1, 11, step);
        assert_int_equal(r->rc, AG_OK);
        assert_int_equal(r->n, 3);
        free(r);

        r = run_step(in, sizeof(in) - 1, 10, step);
        assert_int_equal(r->rc, AG_ETOOBIG);
        assert_int_equal(r->n, 1); /* the items before it were delivered */
        assert_event(r, 0, "", "a", "data: a\n\n");
        free(r);
    }

    /* the CR held at the cap: an LF after it goes past the cap, anything else does not */
    static const char *const c1[] = {"data: a\r", "\r", "\n", NULL};
    rec_t *r = run_chunks(9, c1);
    assert_int_equal(r->rc, AG_ETOOBIG);
    assert_int_equal(r->n, 0);
    free(r);
    static const char *const c2[] = {"data: a\r", "\r", "x", NULL};
    r = run_chunks(9, c2);
    assert_int_equal(r->rc, AG_OK);
    assert_event(r, 0, "", "a", "data: a\r\r");
    free(r);

    /* an unfinished event past the cap fails before its end arrives; the error sticks */
    ag_sse_parser_t p;
    r = rec_new();
    ag_sse_init(&p, 16);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: 0123456789"), on_item, r), AG_OK);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("x"), on_item, r), AG_ETOOBIG);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("\n\ndata: a\n\n"), on_item, r), AG_ETOOBIG);
    assert_int_equal(r->n, 0);
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_ETOOBIG);
    /* finish made p ready for a new stream */
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: a\n\n"), on_item, r), AG_OK);
    assert_int_equal(r->n, 1);
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_OK);
    ag_sse_dispose(&p);
    free(r);

    /* comments count too */
    r = run_step(": 0123456789\n", 13, 12, 0);
    assert_int_equal(r->rc, AG_ETOOBIG);
    free(r);
}

static void test_callback_stop(void **state)
{
    (void)state;
    const char *in = openai_responses;
    size_t len = sizeof(openai_responses) - 1;

    for (size_t step = 1; step <= len; step += 37) {
        ag_sse_parser_t p;
        rec_t *r = rec_new();
        r->stop_at = 1;
        r->stop_code = 42;
        ag_sse_init(&p, 0);
        for (size_t pos = 0; pos < len && r->rc == 0; pos += step) {
            size_t k = len - pos < step ? len - pos : step;
            r->rc = ag_sse_feed(&p, ag_str(in + pos, k), on_item, r);
        }
        assert_int_equal(r->rc, 42);
        assert_int_equal(r->n, 2); /* nothing after the stop */
        assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: x\n\n"), on_item, r), 42);
        assert_int_equal(ag_sse_finish(&p, on_item, r), 42);
        assert_int_equal(r->n, 2);
        ag_sse_dispose(&p);
        free(r);
    }

    /* a stop on the event delivered by finish */
    rec_t *r = rec_new();
    ag_sse_parser_t p;
    r->stop_at = 0;
    r->stop_code = -9;
    ag_sse_init(&p, 0);
    assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: x"), on_item, r), AG_OK);
    assert_int_equal(ag_sse_finish(&p, on_item, r), -9);
    ag_sse_dispose(&p);
    free(r);
}

/* an event inside one feed is not copied; the parser allocates only for held or joined events */
static void test_no_alloc_in_one_feed(void **state)
{
    (void)state;
    ag_sse_parser_t p;
    rec_t *r = rec_new();

    ag_sse_init(&p, 0);
    uint64_t before = ag_alloc_count;
    assert_int_equal(ag_sse_feed(&p, ag_str(openai_chat, sizeof(openai_chat) - 1), on_item, r),
                     AG_OK);
    assert_int_equal(ag_alloc_count, before);
    assert_int_equal(r->n, 5);
    for (size_t i = 0; i < r->n; i++)
        assert_true(r->it[i].data_in_raw);

    /* many events spanning feeds reuse one buffer */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("data: {\"a\":"), on_item, r), AG_OK);
        assert_int_equal(ag_sse_feed(&p, AG_STR_LIT("1}\n\n"), on_item, r), AG_OK);
        r->n = 0;
        r->used = 0;
    }
    assert_true(ag_alloc_count - before <= 2);
    assert_int_equal(ag_sse_finish(&p, on_item, r), AG_OK);
    ag_sse_dispose(&p);
    free(r);
}

/* ---- writers ---- */

static void test_write_event(void **state)
{
    (void)state;
    ag_buf_t out;

    ag_buf_init(&out, 1024);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT("message_stop"),
                                        AG_STR_LIT("{\"type\":\"message_stop\"}")),
                     AG_OK);
    assert_str(ag_buf_str(&out), "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");

    ag_buf_reset(&out);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT(""), AG_STR_LIT("[DONE]")), AG_OK);
    assert_str(ag_buf_str(&out), "data: [DONE]\n\n");

    ag_buf_reset(&out);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT(""), AG_STR_LIT("a\nb\r\nc\rd\n")), AG_OK);
    assert_str(ag_buf_str(&out), "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n");

    ag_buf_reset(&out);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT("e"), ag_str(NULL, 0)), AG_OK);
    assert_str(ag_buf_str(&out), "event: e\ndata: \n\n");

    /* what is written parses back to the same event */
    ag_buf_reset(&out);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT("x.y"), AG_STR_LIT(" lead\n\nend\n")),
                     AG_OK);
    rec_t *r = run_step(out.ptr, out.len, 0, 0);
    assert_int_equal(r->n, 1);
    assert_event(r, 0, "x.y", " lead\n\nend\n", out.ptr);
    free(r);

    /* errors leave out as it was */
    ag_buf_reset(&out);
    assert_int_equal(ag_buf_append(&out, "keep", 4), AG_OK);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT("a\nb"), AG_STR_LIT("x")), AG_EINVAL);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT("a\rb"), AG_STR_LIT("x")), AG_EINVAL);
    assert_str(ag_buf_str(&out), "keep");
    ag_buf_dispose(&out);

    ag_buf_init(&out, 20);
    assert_int_equal(ag_buf_append(&out, "keep", 4), AG_OK);
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT(""), AG_STR_LIT("012345678")), AG_ETOOBIG);
    assert_str(ag_buf_str(&out), "keep");
    assert_int_equal(ag_sse_write_event(&out, AG_STR_LIT(""), AG_STR_LIT("01234567")), AG_OK);
    assert_int_equal(out.len, 20);
    ag_buf_dispose(&out);
}

static void test_write_comment(void **state)
{
    (void)state;
    ag_buf_t out;

    ag_buf_init(&out, 16);
    assert_int_equal(ag_sse_write_comment(&out, AG_STR_LIT("keepalive")), AG_OK);
    assert_str(ag_buf_str(&out), ": keepalive\n\n");
    assert_int_equal(ag_sse_write_comment(&out, AG_STR_LIT("x\ny")), AG_EINVAL);
    assert_int_equal(ag_sse_write_comment(&out, AG_STR_LIT("toolong")), AG_ETOOBIG);
    assert_str(ag_buf_str(&out), ": keepalive\n\n");
    ag_buf_reset(&out);
    assert_int_equal(ag_sse_write_comment(&out, AG_STR_LIT("")), AG_OK);
    assert_str(ag_buf_str(&out), ":\n\n");

    rec_t *r = run_step(out.ptr, out.len, 0, 0);
    assert_int_equal(r->n, 2);
    assert_kind(r, 0, AG_SSE_COMMENT, ":\n");
    assert_kind(r, 1, AG_SSE_BLANK, "\n");
    free(r);
    ag_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_lone_cr),
        cmocka_unit_test(test_mixed_endings),
        cmocka_unit_test(test_cr_lf_split_across_feeds),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_space_after_colon),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_no_colon),
        cmocka_unit_test(test_event_id_retry),
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_blank_lines_only),
        cmocka_unit_test(test_event_without_data),
        cmocka_unit_test(test_finish_flushes_last_event),
        cmocka_unit_test(test_reference_streams_any_split),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_no_alloc_in_one_feed),
        cmocka_unit_test(test_write_event),
        cmocka_unit_test(test_write_comment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

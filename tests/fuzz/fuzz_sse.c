/* libFuzzer target for sse. Input: 4 header bytes (cap selector, stop selector, 2 split-seed bytes)
 * then the stream. Checks that
 * - fed in one piece, the parser gives exactly the items of a byte-at-a-time reference parser
 *   written here from the rules in sse.h (kind, event, data, id, retry, flags, raw) and the same
 *   result code;
 * - fed in pseudo-random pieces (empty feeds included), byte by byte, and cut after every CR, it
 *   gives the same items and code;
 * - the raw bytes of the items, concatenated, are the stream minus a leading BOM: all of it when
 *   the result is AG_OK (finish leaves nothing out: a last event without its blank line, an
 *   unfinished last line and a held CR are all delivered); a prefix of it when the callback
 *   stopped; with AG_ETOOBIG a prefix after which more than max_event bytes remain (the item that
 *   went past the cap starts right there). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_sse: check failed: %s (line %d)\n", #expr, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define STOP_CODE 77

/* Items serialised into log, raw bytes concatenated into raws. */
typedef struct rec {
    ag_buf_t log;
    ag_buf_t raws;
    size_t n;
    size_t stop_at; /* stop (return STOP_CODE) on item number stop_at; SIZE_MAX = never */
} rec_t;

static void rec_init(rec_t *r, size_t stop_at)
{
    ag_buf_init(&r->log, SIZE_MAX / 4);
    ag_buf_init(&r->raws, SIZE_MAX / 4);
    r->n = 0;
    r->stop_at = stop_at;
}

static void rec_dispose(rec_t *r)
{
    ag_buf_dispose(&r->log);
    ag_buf_dispose(&r->raws);
}

static void put(ag_buf_t *b, const void *p, size_t n)
{
    CHECK(ag_buf_append(b, p, n) == AG_OK);
}

static void put_str(ag_buf_t *b, const char *p, size_t n)
{
    put(b, &n, sizeof(n));
    put(b, p, n);
}

/* one item, whoever produced it; returns the callback's code */
static int record(rec_t *r, ag_sse_kind_t kind, ag_str_t event, ag_str_t data, ag_str_t id,
                  ag_str_t raw, long retry, bool has_id, bool has_data, bool eof)
{
    unsigned char head[4] = {(unsigned char)kind, has_id, has_data, eof};

    put(&r->log, head, sizeof(head));
    put(&r->log, &retry, sizeof(retry));
    put_str(&r->log, event.ptr, event.len);
    put_str(&r->log, data.ptr, data.len);
    put_str(&r->log, id.ptr, id.len);
    put_str(&r->log, raw.ptr, raw.len);
    put(&r->raws, raw.ptr, raw.len);
    return r->n++ == r->stop_at ? STOP_CODE : 0;
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    CHECK(it->event.ptr && it->data.ptr && it->id.ptr && it->raw.ptr);
    CHECK(it->kind == AG_SSE_EVENT || it->kind == AG_SSE_COMMENT || it->kind == AG_SSE_BLANK);
    CHECK(it->raw.len > 0);
    return record(ud, it->kind, it->event, it->data, it->id, it->raw, it->retry, it->has_id,
                  it->has_data, it->eof);
}

/* ---- the reference: one byte at a time, no buffering tricks ---- */

typedef struct ref {
    const char *t;
    size_t item; /* first byte of the item in progress */
    bool in_event, has_id;
    size_t ndata;
    ag_buf_t data;
    ag_str_t event, id;
    long retry;
} ref_t;

static void ref_reset(ref_t *f)
{
    f->in_event = f->has_id = false;
    f->ndata = 0;
    ag_buf_reset(&f->data);
    f->event = f->id = ag_str("", 0);
    f->retry = -1;
}

static bool str_is(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int ref_event(ref_t *f, rec_t *r, size_t end, bool eof)
{
    int rc = record(r, AG_SSE_EVENT, f->event, ag_buf_str(&f->data), f->id,
                    ag_str(f->t + f->item, end - f->item), f->retry, f->has_id, f->ndata > 0, eof);
    ref_reset(f);
    f->item = end;
    return rc;
}

/* line [ls, le), ending at end */
static int ref_line(ref_t *f, rec_t *r, size_t ls, size_t le, size_t end)
{
    const char *t = f->t;
    int rc = 0;

    if (le == ls) {
        if (f->in_event)
            return ref_event(f, r, end, false);
        rc = record(r, AG_SSE_BLANK, ag_str("", 0), ag_str("", 0), ag_str("", 0),
                    ag_str(t + f->item, end - f->item), -1, false, false, false);
        f->item = end;
        return rc;
    }
    if (t[ls] == ':') {
        if (f->in_event)
            return 0;
        size_t x = ls + 1;
        if (x < le && t[x] == ' ')
            x++;
        rc = record(r, AG_SSE_COMMENT, ag_str("", 0), ag_str(t + x, le - x), ag_str("", 0),
                    ag_str(t + f->item, end - f->item), -1, false, false, false);
        f->item = end;
        return rc;
    }
    f->in_event = true;
    size_t c = ls;
    while (c < le && t[c] != ':')
        c++;
    size_t v = c < le ? c + 1 : le;
    if (v < le && t[v] == ' ')
        v++;
    const char *name = t + ls, *val = t + v;
    size_t nlen = c - ls, vlen = le - v;
    if (str_is(name, nlen, "data")) {
        if (f->ndata++ > 0)
            put(&f->data, "\n", 1);
        put(&f->data, val, vlen);
    } else if (str_is(name, nlen, "event")) {
        f->event = ag_str(val, vlen);
    } else if (str_is(name, nlen, "id")) {
        bool nul = false;
        for (size_t k = 0; k < vlen; k++)
            nul |= val[k] == '\0';
        if (!nul) {
            f->has_id = true;
            f->id = ag_str(val, vlen);
        }
    } else if (str_is(name, nlen, "retry") && vlen > 0) {
        long n = 0;
        size_t k;
        for (k = 0; k < vlen && val[k] >= '0' && val[k] <= '9'; k++) {
            int d = val[k] - '0';
            n = n > (LONG_MAX - d) / 10 ? LONG_MAX : n * 10 + d;
        }
        if (k == vlen)
            f->retry = n;
    }
    return 0;
}

static int ref_parse(const char *t, size_t len, size_t cap, rec_t *r)
{
    ref_t f = {0};
    size_t pos = 0;
    int rc = 0;

    ag_buf_init(&f.data, SIZE_MAX / 4);
    f.t = t;
    ref_reset(&f);
    if (len >= 3 && memcmp(t, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    f.item = pos;
    while (pos < len && rc == 0) {
        size_t i = pos;
        while (i < len && t[i] != '\n' && t[i] != '\r')
            i++;
        size_t end = i == len ? len : i + 1;
        if (i + 1 < len && t[i] == '\r' && t[i + 1] == '\n')
            end = i + 2;
        if (end - f.item > cap) {
            rc = AG_ETOOBIG;
            break;
        }
        rc = ref_line(&f, r, pos, i, end);
        pos = end;
    }
    if (rc == 0 && f.in_event)
        rc = ref_event(&f, r, len, true);
    ag_buf_dispose(&f.data);
    return rc;
}

/* ---- drivers ---- */

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

enum { ONE_SHOT, RANDOM, BYTEWISE, AFTER_CR };

static int drive(int mode, const char *t, size_t len, size_t cap, uint32_t seed, rec_t *r)
{
    ag_sse_parser_t p;
    size_t pos = 0;
    int rc = 0;

    if (seed == 0) /* xorshift's fixed point */
        seed = 1;
    ag_sse_init(&p, cap);
    while (pos < len && rc == 0) {
        size_t k = len - pos;
        if (mode == RANDOM) {
            uint32_t x = rnd(&seed);
            size_t want = x % 8 == 0 ? 0 : x % 8 < 6 ? 1 + (x >> 8) % 8 : (x >> 8) % 256;
            k = want < k ? want : k;
        } else if (mode == BYTEWISE) {
            k = 1;
        } else if (mode == AFTER_CR) {
            const char *cr = memchr(t + pos, '\r', len - pos);
            k = cr ? (size_t)(cr - (t + pos)) + 1 : k;
        }
        rc = ag_sse_feed(&p, ag_str(t + pos, k), on_item, r);
        pos += k;
    }
    int frc = ag_sse_finish(&p, on_item, r);
    if (rc == 0)
        rc = frc;
    else
        CHECK(frc == rc); /* stopped parsers stay stopped */
    ag_sse_dispose(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t cap = data[0] < 128 ? 0 : (size_t)(data[0] - 127) * 2; /* 0 = default */
    size_t stop_at = data[1] >= 224 ? (size_t)(data[1] - 224) : SIZE_MAX;
    uint32_t seed = (uint32_t)data[2] << 8 | data[3];
    const char *t = (const char *)data + 4;
    size_t len = size - 4;
    rec_t want, one;

    for (size_t k = 0; k < len; k++)
        seed = seed * 31 + (uint8_t)t[k];

    rec_init(&want, stop_at);
    int want_rc = ref_parse(t, len, cap ? cap : AG_SSE_MAX_EVENT_DEFAULT, &want);

    rec_init(&one, stop_at);
    int rc = drive(ONE_SHOT, t, len, cap, seed, &one);
    CHECK(rc == want_rc);
    CHECK(one.n == want.n);
    CHECK(ag_str_eq(ag_buf_str(&one.log), ag_buf_str(&want.log)));

    /* raw bytes partition the stream */
    size_t skip = len >= 3 && memcmp(t, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    ag_str_t body = ag_str(t + skip, len - skip);
    ag_str_t raws = ag_buf_str(&one.raws);
    CHECK(raws.len <= body.len && (raws.len == 0 || memcmp(raws.ptr, body.ptr, raws.len) == 0));
    if (rc == AG_OK)
        CHECK(raws.len == body.len);
    else if (rc == AG_ETOOBIG)
        CHECK(body.len - raws.len > (cap ? cap : AG_SSE_MAX_EVENT_DEFAULT));
    else
        CHECK(rc == STOP_CODE && one.n == stop_at + 1);

    /* any split gives the same */
    static const int modes[] = {RANDOM, RANDOM, BYTEWISE, AFTER_CR};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        rec_t other;
        rec_init(&other, stop_at);
        int orc = drive(modes[m], t, len, cap, seed + (uint32_t)m * 0x9E3779B9u, &other);
        CHECK(orc == rc);
        CHECK(other.n == one.n);
        CHECK(ag_str_eq(ag_buf_str(&other.log), ag_buf_str(&one.log)));
        rec_dispose(&other);
    }

    rec_dispose(&want);
    rec_dispose(&one);
    return 0;
}

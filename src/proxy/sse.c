/* SSE framing. Lines are found with memchr; the event in progress is a set of offsets into its raw
 * bytes, which stay in the caller's chunk while the event is inside one feed and are copied into
 * p->buf only when it spans feeds. */
#include "sse.h"

#include <limits.h>

static const char bom_bytes[3] = {'\xEF', '\xBB', '\xBF'};

/* The next LF and CR at or after a position of one chunk, cached so that each byte is searched at
 * most once for each (a CRLF stream finds both at every line end; an LF stream has no CR, and one
 * failed search per chunk says so). */
typedef struct scan {
    const char *s;
    size_t n;
    size_t lf; /* offset of the next LF, n when none; SIZE_MAX before the first search */
    size_t cr; /* same for CR */
} scan_t;

static size_t find_from(const char *s, size_t n, size_t from, char c)
{
    if (from >= n)
        return n;
    const char *q = memchr(s + from, c, n - from);
    return q ? (size_t)(q - s) : n;
}

/* offset of the first CR or LF at or after pos; n when there is none */
static size_t next_eol(scan_t *sc, size_t pos)
{
    if (sc->lf == SIZE_MAX || sc->lf < pos)
        sc->lf = find_from(sc->s, sc->n, pos, '\n');
    if (sc->cr == SIZE_MAX || sc->cr < pos)
        sc->cr = find_from(sc->s, sc->n, pos, '\r');
    return sc->lf < sc->cr ? sc->lf : sc->cr;
}

static void reset_event(ag_sse_parser_t *p)
{
    p->in_event = false;
    p->has_id = false;
    p->ndata = 0;
    p->ev_off = p->ev_len = 0;
    p->id_off = p->id_len = 0;
    p->data_off = p->data_len = 0;
    p->retry = -1;
}

static void reset_stream(ag_sse_parser_t *p)
{
    ag_buf_reset(&p->buf);
    ag_buf_reset(&p->scratch);
    p->line = 0;
    p->err = AG_OK;
    p->bom = 0;
    p->started = false;
    p->cr = false;
    reset_event(p);
}

void ag_sse_init(ag_sse_parser_t *p, size_t max_event)
{
    if (max_event == 0)
        max_event = AG_SSE_MAX_EVENT_DEFAULT;
    ag_buf_init(&p->buf, max_event);
    /* joined data is never longer than the event's raw bytes */
    ag_buf_init(&p->scratch, max_event);
    reset_stream(p);
}

void ag_sse_dispose(ag_sse_parser_t *p)
{
    ag_buf_dispose(&p->buf);
    ag_buf_dispose(&p->scratch);
}

/* base[0, raw_len) is the event's raw bytes */
static int deliver_event(ag_sse_parser_t *p, const char *base, size_t raw_len, bool eof,
                         ag_sse_cb cb, void *ud)
{
    ag_sse_item_t it;

    it.kind = AG_SSE_EVENT;
    it.event = ag_str(base + p->ev_off, p->ev_len);
    it.data = p->ndata == 2 ? ag_buf_str(&p->scratch) : ag_str(base + p->data_off, p->data_len);
    it.id = ag_str(base + p->id_off, p->id_len);
    it.raw = ag_str(base, raw_len);
    it.retry = p->retry;
    it.has_id = p->has_id;
    it.has_data = p->ndata > 0;
    it.eof = eof;
    reset_event(p);
    return cb(ud, &it);
}

static int deliver_other(ag_sse_kind_t kind, const char *base, size_t raw_len, ag_str_t text,
                         ag_sse_cb cb, void *ud)
{
    ag_sse_item_t it;

    it.kind = kind;
    it.event = it.id = ag_str(base, 0);
    it.data = text;
    it.raw = ag_str(base, raw_len);
    it.retry = -1;
    it.has_id = it.has_data = it.eof = false;
    return cb(ud, &it);
}

static int add_data(ag_sse_parser_t *p, const char *base, size_t off, size_t len)
{
    int rc = AG_OK;

    if (p->ndata == 0) {
        /* the common case: one data line, handed out as a view into raw */
        p->data_off = off;
        p->data_len = len;
        p->ndata = 1;
        return AG_OK;
    }
    if (p->ndata == 1) {
        ag_buf_reset(&p->scratch);
        rc = ag_buf_append(&p->scratch, base + p->data_off, p->data_len);
        p->ndata = 2;
    }
    if (rc == AG_OK)
        rc = ag_buf_appendc(&p->scratch, '\n');
    if (rc == AG_OK)
        rc = ag_buf_append(&p->scratch, base + off, len);
    return rc;
}

/* 1+ ASCII digits, saturating at LONG_MAX; false for anything else */
static bool parse_retry(const char *s, size_t n, long *out)
{
    long v = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)((unsigned char)s[i] - '0');
        if (d > 9)
            return false;
        v = v > (LONG_MAX - (long)d) / 10 ? LONG_MAX : v * 10 + (long)d;
    }
    *out = v;
    return true;
}

/* One complete line of the item whose raw bytes start at base: content [ls, le), line ending up to
 * end. Sets *done when the line completes the item (which is then delivered). */
static int take_line(ag_sse_parser_t *p, const char *base, size_t ls, size_t le, size_t end,
                     ag_sse_cb cb, void *ud, bool *done)
{
    const char *l = base + ls;
    size_t len = le - ls;

    *done = false;
    if (len == 0) {
        *done = true;
        if (p->in_event)
            return deliver_event(p, base, end, false, cb, ud);
        return deliver_other(AG_SSE_BLANK, base, end, ag_str(base, 0), cb, ud);
    }
    if (l[0] == ':') {
        if (p->in_event)
            return AG_OK; /* stays in the event's raw bytes */
        size_t t = (len > 1 && l[1] == ' ') ? 2 : 1;
        *done = true;
        return deliver_other(AG_SSE_COMMENT, base, end, ag_str(l + t, len - t), cb, ud);
    }

    p->in_event = true;
    const char *colon = memchr(l, ':', len);
    size_t name_len = colon ? (size_t)(colon - l) : len;
    size_t v = colon ? name_len + 1 : len;
    if (v < len && l[v] == ' ')
        v++;
    size_t voff = ls + v, vlen = len - v;

    switch (name_len) {
    case 2:
        if (memcmp(l, "id", 2) == 0 && memchr(base + voff, '\0', vlen) == NULL) {
            p->has_id = true;
            p->id_off = voff;
            p->id_len = vlen;
        }
        break;
    case 4:
        if (memcmp(l, "data", 4) == 0)
            return add_data(p, base, voff, vlen);
        break;
    case 5:
        if (memcmp(l, "event", 5) == 0) {
            p->ev_off = voff;
            p->ev_len = vlen;
        } else if (memcmp(l, "retry", 5) == 0) {
            long r;
            if (parse_retry(base + voff, vlen, &r))
                p->retry = r;
        }
        break;
    default:
        break;
    }
    return AG_OK;
}

/* Parses s[0, n), n > 0, after the BOM check. */
static int run(ag_sse_parser_t *p, const char *s, size_t n, ag_sse_cb cb, void *ud)
{
    scan_t sc = {s, n, SIZE_MAX, SIZE_MAX};
    size_t pos = 0;
    bool done;
    int rc;

    /* An item held from earlier feeds: append its next lines to buf until it completes. */
    while (p->buf.len > 0 && pos < n) {
        size_t le;
        if (p->cr) {
            /* the held CR ends the line; an LF right after it is part of that line ending */
            le = p->buf.len - 1;
            p->cr = false;
            if (s[pos] == '\n') {
                rc = ag_buf_appendc(&p->buf, '\n');
                if (rc != AG_OK)
                    return rc;
                pos++;
            }
        } else {
            size_t k = next_eol(&sc, pos);
            bool open = k == n || (s[k] == '\r' && k + 1 == n);
            size_t stop = open ? n : k + 1 + (s[k] == '\r' && s[k + 1] == '\n');
            le = p->buf.len + (k - pos);
            rc = ag_buf_append(&p->buf, s + pos, stop - pos);
            if (rc != AG_OK)
                return rc;
            pos = stop;
            if (open) {
                p->cr = k < n;
                return AG_OK;
            }
        }
        size_t end = p->buf.len;
        rc = take_line(p, p->buf.ptr, p->line, le, end, cb, ud, &done);
        if (rc != AG_OK)
            return rc;
        if (done) {
            ag_buf_reset(&p->buf);
            p->line = 0;
        } else {
            p->line = end;
        }
    }

    /* Items that start in this chunk: parsed in place, offsets from item. */
    size_t item = pos, line = pos;
    bool cr = false;
    while (line < n) {
        size_t k = next_eol(&sc, line);
        if (k == n)
            break;
        if (s[k] == '\r' && k + 1 == n) {
            cr = true; /* wait for the next byte */
            break;
        }
        size_t end = k + 1 + (s[k] == '\r' && s[k + 1] == '\n');
        if (end - item > p->buf.max)
            return AG_ETOOBIG;
        rc = take_line(p, s + item, line - item, k - item, end - item, cb, ud, &done);
        if (rc != AG_OK)
            return rc;
        line = end;
        if (done)
            item = end;
    }
    if (item < n) {
        rc = ag_buf_append(&p->buf, s + item, n - item);
        if (rc != AG_OK)
            return rc;
        p->line = line - item;
        p->cr = cr;
    }
    return AG_OK;
}

int ag_sse_feed(ag_sse_parser_t *p, ag_str_t bytes, ag_sse_cb cb, void *ud)
{
    const char *s = bytes.ptr;
    size_t n = bytes.len;
    int rc = p->err;

    if (rc != AG_OK || n == 0)
        return rc;
    if (!p->started) {
        while (n > 0 && p->bom < 3 && s[0] == bom_bytes[p->bom]) {
            p->bom++;
            s++;
            n--;
        }
        if (n == 0 && p->bom < 3)
            return AG_OK; /* all of it may still be a BOM */
        p->started = true;
        if (p->bom < 3) /* not a BOM: the bytes held are the stream's first */
            rc = run(p, bom_bytes, p->bom, cb, ud);
        p->bom = 0;
    }
    if (rc == AG_OK && n > 0)
        rc = run(p, s, n, cb, ud);
    if (rc != AG_OK)
        p->err = rc;
    return rc;
}

int ag_sse_finish(ag_sse_parser_t *p, ag_sse_cb cb, void *ud)
{
    int rc = p->err;
    bool done = false;

    if (rc != AG_OK)
        goto out;
    if (!p->started && p->bom > 0) {
        rc = run(p, bom_bytes, p->bom, cb, ud);
        if (rc != AG_OK)
            goto out;
    }
    if (p->buf.len > 0) {
        size_t end = p->buf.len;
        size_t le = p->cr ? end - 1 : end;
        if (p->cr || le > p->line)
            rc = take_line(p, p->buf.ptr, p->line, le, end, cb, ud, &done);
        if (rc == AG_OK && !done) {
            /* only an event keeps an item open across complete lines */
            AG_ASSERT(p->in_event);
            rc = deliver_event(p, p->buf.ptr, end, true, cb, ud);
        }
    }
out:
    reset_stream(p);
    return rc;
}

static bool has_eol(ag_str_t s)
{
    return s.len > 0 && (memchr(s.ptr, '\n', s.len) != NULL || memchr(s.ptr, '\r', s.len) != NULL);
}

int ag_sse_write_event(ag_buf_t *out, ag_str_t event, ag_str_t data)
{
    scan_t sc = {data.ptr, data.len, SIZE_MAX, SIZE_MAX};
    size_t old = out->len, pos = 0;
    int rc = AG_OK;

    if (has_eol(event))
        return AG_EINVAL;
    if (event.len > 0) {
        rc = ag_buf_append(out, "event: ", 7);
        if (rc == AG_OK)
            rc = ag_buf_append(out, event.ptr, event.len);
        if (rc == AG_OK)
            rc = ag_buf_appendc(out, '\n');
        if (rc != AG_OK)
            goto out;
    }
    for (;;) {
        size_t k = next_eol(&sc, pos);
        rc = ag_buf_append(out, "data: ", 6);
        if (rc == AG_OK && k > pos)
            rc = ag_buf_append(out, data.ptr + pos, k - pos);
        if (rc == AG_OK)
            rc = ag_buf_appendc(out, '\n');
        if (rc != AG_OK || k == data.len)
            break;
        pos = k + 1 + (data.ptr[k] == '\r' && k + 1 < data.len && data.ptr[k + 1] == '\n');
    }
    if (rc == AG_OK)
        rc = ag_buf_appendc(out, '\n');
out:
    if (rc != AG_OK && out->ptr != NULL) {
        out->len = old;
        out->ptr[old] = '\0';
    }
    return rc;
}

int ag_sse_write_comment(ag_buf_t *out, ag_str_t text)
{
    size_t old = out->len;
    int rc;

    if (has_eol(text))
        return AG_EINVAL;
    rc = ag_buf_append(out, text.len > 0 ? ": " : ":", text.len > 0 ? 2 : 1);
    if (rc == AG_OK && text.len > 0)
        rc = ag_buf_append(out, text.ptr, text.len);
    if (rc == AG_OK)
        rc = ag_buf_append(out, "\n\n", 2);
    if (rc != AG_OK && out->ptr != NULL) {
        out->len = old;
        out->ptr[old] = '\0';
    }
    return rc;
}

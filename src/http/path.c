/* Request-target normalisation (see path.h): one pass that checks every byte, then the path's
 * segments walked right to left, once to measure and once to write. */
#include "path.h"

/* A segment as it comes out of step 2, for step 4. */
enum { SEG_NORMAL, SEG_DOT, SEG_DOTDOT };

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Only valid after check_bytes has accepted the escape at p[0..2]. */
static unsigned char escape_value(const char *p)
{
    return (unsigned char)(hex_value((unsigned char)p[1]) << 4 | hex_value((unsigned char)p[2]));
}

/* The reason for a byte refused in both parts, or NULL. */
static const char *bad_byte(unsigned char c)
{
    if (c == ' ')
        return "space in the request target";
    if (c < 0x20 || c == 0x7F)
        return "control character in the request target";
    if (c >= 0x80)
        return "non-ASCII byte in the request target (it must be percent-encoded)";
    if (c == '#')
        return "fragment in the request target";
    return NULL;
}

/* Step 1 for the path [0, plen) and the query check for [plen, len); NULL when all is fine. */
static const char *check_bytes(const char *p, size_t plen, size_t len)
{
    const char *why;

    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)p[i];
        why = bad_byte(c);
        if (why)
            return why;
        if (c == '\\')
            return "backslash in the path";
        if (c != '%')
            continue;
        /* the escape must end before the '?' that ends the path */
        if (plen - i < 3 || hex_value((unsigned char)p[i + 1]) < 0 ||
            hex_value((unsigned char)p[i + 2]) < 0)
            return "bad percent-encoding in the path";
        unsigned char v = escape_value(p + i);
        if (v == '/')
            return "encoded slash in the path";
        if (v == '\\')
            return "encoded backslash in the path";
        if (v < 0x20 || v == 0x7F)
            return "encoded control character in the path";
        i += 2;
    }
    for (size_t i = plen; i < len; i++) {
        why = bad_byte((unsigned char)p[i]);
        if (why)
            return why;
    }
    return NULL;
}

/* Step 2 for the segment [s, e): its kind, and its length once decoded. */
static int classify(const char *p, size_t s, size_t e, size_t *dlen)
{
    size_t n = 0, dots = 0;

    for (size_t i = s; i < e; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            c = escape_value(p + i);
            i += 2;
            n += is_unreserved(c) ? 1 : 3; /* a kept escape can be no dot */
        } else {
            n++;
        }
        dots += c == '.';
    }
    *dlen = n;
    if (dots == n && n == 1)
        return SEG_DOT;
    if (dots == n && n == 2)
        return SEG_DOTDOT;
    return SEG_NORMAL;
}

/* Writes the segment [s, e) decoded (step 2) at dst; returns the bytes written. */
static size_t put_segment(const char *p, size_t s, size_t e, char *dst)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = s; i < e; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c != '%') {
            dst[n++] = (char)c;
            continue;
        }
        c = escape_value(p + i);
        i += 2;
        if (is_unreserved(c)) {
            dst[n++] = (char)c;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
        }
    }
    return n;
}

/*
 * Steps 3 and 4 over the path [0, plen) (p[0] == '/', bytes checked). Walking the segments right
 * to left, a ".." cancels the nearest ordinary segment to its left that is not cancelled yet: the
 * same pairs as RFC 3986 5.2.4's left-to-right output buffer, and a ".." left unpaired at the end
 * is one that would climb above the root. Going this way needs no stack, so the exact result
 * length is known before a byte is written; the writing pass (dst != NULL, *out_plen from the
 * measuring pass) fills dst from its end. Returns false when dots climb above the root.
 */
static bool walk(const char *p, size_t plen, char *dst, size_t *out_plen)
{
    size_t e = plen, skip = 0, kept = 0, bytes = 0, w = dst ? *out_plen : 0;
    bool trailing = p[plen - 1] == '/', last = true;

    for (;;) {
        while (e > 0 && p[e - 1] == '/')
            e--;
        if (e == 0)
            break;
        size_t s = e, seg_end = e, dlen;
        while (p[s - 1] != '/') /* stops at p[0] == '/' at the latest */
            s--;
        e = s;
        int kind = classify(p, s, seg_end, &dlen);
        if (last && kind != SEG_NORMAL)
            trailing = true; /* "/a/." and "/a/.." end in '/' like "/a/" */
        if (last && trailing && dst && *out_plen > 1)
            dst[--w] = '/'; /* *out_plen > 1: some segment is kept */
        last = false;
        if (kind == SEG_DOT)
            continue;
        if (kind == SEG_DOTDOT) {
            skip++;
            continue;
        }
        if (skip > 0) {
            skip--;
            continue;
        }
        kept++;
        bytes += dlen;
        if (dst) {
            w -= dlen;
            size_t n = put_segment(p, s, seg_end, dst + w);
            AG_ASSERT(n == dlen);
            dst[--w] = '/';
        }
    }
    if (skip > 0)
        return false;
    if (kept == 0) {
        if (dst)
            dst[--w] = '/';
        *out_plen = 1;
    } else {
        *out_plen = kept + bytes + trailing;
    }
    if (dst)
        AG_ASSERT(w == 0);
    return true;
}

int ag_http_path_normalize(ag_str_t target, char *out, size_t cap, size_t *out_len,
                           size_t *path_len, const char **why)
{
    const char *p = target.ptr, *q = NULL, *reason = NULL;
    size_t len = target.len, plen = 0, olen = 0, oplen = 0;
    bool ok = false;
    int rc = AG_EINVAL;

    if (len == 0 || p[0] != '/') {
        reason = "the request target does not start with '/' (only origin form is accepted)";
        goto out;
    }
    q = memchr(p, '?', len);
    plen = q ? (size_t)(q - p) : len;
    reason = check_bytes(p, plen, len);
    if (reason)
        goto out;
    if (!walk(p, plen, NULL, &oplen)) {
        reason = "dot segments above the root";
        goto out;
    }
    olen = oplen + (len - plen);
    if (cap < olen + 1) {
        rc = AG_ETOOBIG;
        reason = "normalised request target too long for the buffer";
        goto out;
    }
    ok = walk(p, plen, out, &oplen);
    AG_ASSERT(ok);
    memcpy(out + oplen, p + plen, len - plen);
    out[olen] = '\0';
    if (out_len)
        *out_len = olen;
    if (path_len)
        *path_len = oplen;
    rc = AG_OK;
out:
    if (rc != AG_OK && why)
        *why = reason;
    return rc;
}

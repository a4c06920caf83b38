/* JSON string escaping and unescaping. The encoder must never emit invalid JSON or invalid UTF-8,
 * since audit lines and error bodies may quote arbitrary upstream bytes. */
#include "json.h"

static const char hexdig[] = "0123456789abcdef";

/* Length of the well-formed UTF-8 sequence at p[0..n) (RFC 3629 table 3-7), or 0 if the first
 * byte does not start one. n >= 1. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    }
    return len;
}

int ag_json_append_str(ag_buf_t *b, ag_str_t s)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    size_t start_len = b->len, run = 0, i = 0;
    int rc = ag_buf_appendc(b, '"');

    /* Bytes that pass through are appended in runs: [i - run, i). */
    while (rc == AG_OK && i < s.len) {
        unsigned char c = p[i];
        char esc[8];
        size_t esclen = 0, adv = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, esclen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            static const char shortesc[0x20] = {
                ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
            if (c < 0x20 && shortesc[c]) {
                esc[0] = '\\', esc[1] = shortesc[c], esclen = 2;
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hexdig[c >> 4], esc[5] = hexdig[c & 15], esclen = 6;
            }
        } else if (c >= 0x80) {
            size_t n = utf8_len(p + i, s.len - i);
            if (n == 0) {
                memcpy(esc, "\\ufffd", 6), esclen = 6;
            } else if (n == 3 && c == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] & 0xfe) == 0xa8) {
                memcpy(esc, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6), esclen = 6, adv = 3;
            } else {
                run += n, i += n;
                continue;
            }
        } else {
            run++, i++;
            continue;
        }
        if (run > 0)
            rc = ag_buf_append(b, s.ptr + i - run, run);
        if (rc == AG_OK)
            rc = ag_buf_append(b, esc, esclen);
        run = 0;
        i += adv;
    }
    if (rc == AG_OK && run > 0)
        rc = ag_buf_append(b, s.ptr + i - run, run);
    if (rc == AG_OK)
        rc = ag_buf_appendc(b, '"');
    if (rc != AG_OK) {
        b->len = start_len;
        if (b->ptr != NULL)
            b->ptr[b->len] = '\0';
    }
    return rc;
}

/* Four hex digits at p → value, or -1. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int put_utf8(ag_buf_t *out, unsigned long cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f)), n = 4;
    }
    return ag_buf_append(out, u, n);
}

int ag_json_decode_str(ag_str_t body, ag_buf_t *out)
{
    const char *p = body.ptr, *end = body.ptr + body.len;
    size_t start_len = out->len;
    int rc = AG_OK;

    while (rc == AG_OK && p < end) {
        /* Copy the run up to the next byte that needs attention. */
        const char *q = p;
        while (q < end && *q != '\\' && *q != '"' && (unsigned char)*q >= 0x20)
            q++;
        if (q > p) {
            rc = ag_buf_append(out, p, (size_t)(q - p));
            p = q;
            continue;
        }
        if (*p != '\\' || end - p < 2) {
            rc = AG_EINVAL; /* raw quote, raw control byte, or trailing backslash */
            break;
        }
        char e = p[1];
        p += 2;
        static const char simple[][2] = {{'"', '"'},  {'\\', '\\'}, {'/', '/'},  {'b', '\b'},
                                         {'f', '\f'}, {'n', '\n'},  {'r', '\r'}, {'t', '\t'}};
        if (e != 'u') {
            rc = AG_EINVAL;
            for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
                if (simple[i][0] == e) {
                    rc = ag_buf_appendc(out, simple[i][1]);
                    break;
                }
            }
            continue;
        }
        long cp = end - p >= 4 ? hex4(p) : -1;
        if (cp < 0) {
            rc = AG_EINVAL;
            break;
        }
        p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            /* A high surrogate counts only with a low one right after; otherwise the next
             * escape is decoded on its own in the next round. */
            long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else {
                cp = 0xfffd;
            }
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            cp = 0xfffd;
        }
        rc = put_utf8(out, (unsigned long)cp);
    }
    if (rc != AG_OK) {
        out->len = start_len;
        if (out->ptr != NULL)
            out->ptr[out->len] = '\0';
    }
    return rc;
}

/* libFuzzer target for path.c: the input is a request target. Checks that
 * - the result code and bytes equal those of a reference written here from path.h's rules the
 *   plain way (decode, merge slashes, then RFC 3986 5.2.4's input/output buffer loop, refusing a
 *   ".." with nothing to remove), with allocations and no shared code;
 * - an accepted result starts with '/', its path holds no "//", "/./", "/../", does not end in
 *   "/." or "/..", holds no refused byte and only uppercase escapes that are kept; its query is
 *   the input's byte for byte; out_len and path_len match the bytes; it is a fixed point;
 * - cap: out_len + 1 fits, out_len is AG_ETOOBIG and leaves out untouched; a refused target is
 *   AG_EINVAL with a reason whatever the cap, and leaves the out-params alone.
 * Every call reads from an exact-size heap copy, so ASan reports any read past target.len. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_http_path: check failed: %s (line %d)\n", #expr, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void put(ag_buf_t *b, const void *p, size_t n)
{
    CHECK(ag_buf_append(b, p, n) == AG_OK);
}

static int hexdig(unsigned char c)
{
    const char *d = "0123456789abcdef0123456789ABCDEF";
    const char *f = c ? strchr(d, c) : NULL;
    return f ? (int)((f - d) % 16) : -1;
}

static bool unreserved(unsigned char c)
{
    return (c && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~", c));
}

/* refused anywhere in the target */
static bool refused(unsigned char c)
{
    return c <= 0x20 || c >= 0x7F || c == '#';
}

static bool refused_escape(unsigned char v)
{
    return v == '/' || v == '\\' || v < 0x20 || v == 0x7F;
}

static bool starts(ag_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && memcmp(s.ptr, lit, n) == 0;
}

/* ---- the reference ---- */

static int ref_normalize(const char *t, size_t n, ag_buf_t *res, size_t *res_plen)
{
    ag_buf_t dec, merged;
    int rc = AG_EINVAL;
    size_t plen = 0;

    ag_buf_init(&dec, SIZE_MAX / 4);
    ag_buf_init(&merged, SIZE_MAX / 4);
    if (n == 0 || t[0] != '/')
        goto out;
    while (plen < n && t[plen] != '?')
        plen++;
    for (size_t i = plen; i < n; i++)
        if (refused((unsigned char)t[i]))
            goto out;

    /* decode */
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)t[i];
        if (refused(c) || c == '\\')
            goto out;
        if (c != '%') {
            put(&dec, &c, 1);
            continue;
        }
        if (i + 2 >= plen || hexdig((unsigned char)t[i + 1]) < 0 ||
            hexdig((unsigned char)t[i + 2]) < 0)
            goto out;
        unsigned char v =
            (unsigned char)(hexdig((unsigned char)t[i + 1]) * 16 + hexdig((unsigned char)t[i + 2]));
        if (refused_escape(v))
            goto out;
        if (unreserved(v)) {
            put(&dec, &v, 1);
        } else {
            char esc[4];
            snprintf(esc, sizeof(esc), "%%%02X", v);
            put(&dec, esc, 3);
        }
        i += 2;
    }

    /* merge slashes */
    for (size_t i = 0; i < dec.len; i++)
        if (dec.ptr[i] != '/' || i == 0 || dec.ptr[i - 1] != '/')
            put(&merged, dec.ptr + i, 1);

    /* RFC 3986 5.2.4; the input buffer is merged, rewritten in place from its front */
    char *in = merged.ptr;
    size_t left = merged.len;
    ag_buf_reset(res);
    while (left > 0) {
        ag_str_t s = ag_str(in, left);
        size_t k = 0;                              /* B and C: replace the first k bytes with "/" */
        if (starts(s, "../") || starts(s, "./")) { /* A */
            size_t a = starts(s, "./") ? 2 : 3;
            in += a;
            left -= a;
            continue;
        }
        if (starts(s, "/./") || (left == 2 && starts(s, "/."))) { /* B */
            k = left == 2 ? 2 : 3;
        } else if (starts(s, "/../") || (left == 3 && starts(s, "/.."))) { /* C */
            if (res->len == 0) /* nothing to remove: above the root */
                goto out;
            while (res->ptr[res->len - 1] != '/')
                res->len--;
            res->len--;
            k = left == 3 ? 3 : 4;
        } else if ((left == 1 && in[0] == '.') || (left == 2 && starts(s, ".."))) { /* D */
            left = 0;
            continue;
        } else { /* E */
            size_t e = in[0] == '/' ? 1 : 0;
            while (e < left && in[e] != '/')
                e++;
            put(res, in, e);
            in += e;
            left -= e;
            continue;
        }
        in += k - 1;
        left -= k - 1;
        in[0] = '/';
    }
    CHECK(res->len > 0 && res->ptr[0] == '/');
    *res_plen = res->len;
    put(res, t + plen, n - plen);
    rc = AG_OK;
out:
    ag_buf_dispose(&dec);
    ag_buf_dispose(&merged);
    return rc;
}

/* ---- the properties ---- */

static bool has(const char *p, size_t n, const char *lit)
{
    return ag_memmem(ag_str(p, n), ag_cstr(lit)) != NULL;
}

static bool ends(const char *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && memcmp(p + n - k, lit, k) == 0;
}

static void check_result(const char *t, size_t n, const char *out, size_t olen, size_t plen)
{
    const char *q = memchr(t, '?', n);
    size_t tq = q ? (size_t)(q - t) : n; /* where the input's query starts */

    CHECK(olen <= n && out[olen] == '\0' && strlen(out) == olen);
    CHECK(plen >= 1 && plen <= olen && out[0] == '/');
    CHECK(plen == olen || out[plen] == '?');
    CHECK(memchr(out, '?', plen) == NULL);
    CHECK(olen - plen == n - tq && memcmp(out + plen, t + tq, n - tq) == 0);
    CHECK(!has(out, plen, "//") && !has(out, plen, "/./") && !has(out, plen, "/../"));
    CHECK(!ends(out, plen, "/.") && !ends(out, plen, "/.."));
    for (size_t i = 0; i < olen; i++) {
        unsigned char c = (unsigned char)out[i];
        CHECK(!refused(c));
        if (i >= plen || c != '%')
            continue;
        CHECK(i + 2 < plen);
        unsigned char h1 = (unsigned char)out[i + 1], h2 = (unsigned char)out[i + 2];
        CHECK(strchr("0123456789ABCDEF", h1) && strchr("0123456789ABCDEF", h2));
        unsigned char v = (unsigned char)(hexdig(h1) * 16 + hexdig(h2));
        CHECK(!unreserved(v) && !refused_escape(v));
        i += 2;
    }
    for (size_t i = 0; i < plen; i++)
        CHECK(out[i] != '\\');
}

/* ag_http_path_normalize on an exact-size copy of t */
static int norm(const char *t, size_t n, char *out, size_t cap, size_t *olen, size_t *plen,
                const char **why)
{
    char *copy = malloc(n ? n : 1);
    CHECK(copy);
    if (n)
        memcpy(copy, t, n);
    int rc = ag_http_path_normalize(ag_str(copy, n), out, cap, olen, plen, why);
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    char *out = malloc(size + 1), *again = malloc(size + 1);
    size_t olen = SIZE_MAX, plen = SIZE_MAX, olen2 = 0, plen2 = 0, ref_plen = 0;
    const char *why = NULL, *why2 = NULL;
    ag_buf_t ref;

    CHECK(out && again);
    ag_buf_init(&ref, SIZE_MAX / 4);
    int rc = norm(t, size, out, size + 1, &olen, &plen, &why);
    int ref_rc = ref_normalize(t, size, &ref, &ref_plen);
    CHECK(rc == ref_rc);
    if (rc != AG_OK) {
        CHECK(rc == AG_EINVAL && why && why[0]);
        CHECK(olen == SIZE_MAX && plen == SIZE_MAX);
        CHECK(norm(t, size, out, 0, &olen, &plen, &why2) == AG_EINVAL);
        CHECK(why2 == why && olen == SIZE_MAX && plen == SIZE_MAX);
        goto out;
    }
    CHECK(why == NULL);
    CHECK(olen == ref.len && memcmp(out, ref.ptr, olen) == 0 && plen == ref_plen);
    check_result(t, size, out, olen, plen);

    /* a fixed point */
    CHECK(norm(out, olen, again, olen + 1, &olen2, &plen2, &why) == AG_OK);
    CHECK(olen2 == olen && plen2 == plen && memcmp(again, out, olen + 1) == 0);

    /* one byte short: refused, out untouched */
    memset(again, 0x5A, size + 1);
    CHECK(norm(t, size, again, olen, &olen2, &plen2, &why) == AG_ETOOBIG);
    CHECK(why && why[0]);
    for (size_t i = 0; i < size + 1; i++)
        CHECK(again[i] == 0x5A);
out:
    ag_buf_dispose(&ref);
    free(out);
    free(again);
    return 0;
}

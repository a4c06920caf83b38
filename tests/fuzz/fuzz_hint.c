/* libFuzzer target for hint.c. Input: byte 0 picks the API, byte 1 the hint's length, then the
 * hint, then the request body. Invariants: a body that is not valid JSON is left alone; when the
 * hint is added the result is valid JSON and equals the body with one span inserted (or a `null`
 * replaced), and that span is exactly the slot's shape around the hint JSON-escaped: the hint
 * decodes back from it, so nothing but the slot changed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hint.h"
#include "jsonscan.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_hint: check failed: %s (line %d)\n", #expr, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool starts(ag_str_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.ptr, p, n) == 0;
}

static bool ends(ag_str_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.ptr + s.len - n, p, n) == 0;
}

/* Decodes raw (the inside of a JSON string, no quotes) into out; AG_OK when it is one. */
static int decode_inside(ag_str_t raw, ag_buf_t *out)
{
    ag_buf_t q;
    ag_buf_init(&q, 1u << 20);
    int rc = ag_buf_appendc(&q, '"');
    if (rc == AG_OK)
        rc = ag_buf_append(&q, raw.ptr, raw.len);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&q, '"');
    if (rc == AG_OK)
        rc = ag_jscan_decode(ag_buf_str(&q), 0, q.len, out, NULL, 0, NULL);
    ag_buf_dispose(&q);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    ag_hint_api_t api = (ag_hint_api_t)(data[0] % 3);
    size_t hl = data[1];
    if (hl > size - 2)
        hl = size - 2;
    ag_str_t hint = ag_str((const char *)data + 2, hl);
    ag_str_t body = ag_str((const char *)data + 2 + hl, size - 2 - hl);

    ag_buf_t out, norm, got;
    ag_buf_init(&out, 1u << 22);
    ag_buf_init(&norm, 1u << 20);
    ag_buf_init(&got, 1u << 20);
    size_t n;
    bool valid = ag_jscan_find(body, NULL, 0, NULL, 0, &n, NULL) == AG_OK;
    ag_hint_slot_t slot = AG_HINT_SLOT_NONE;
    int rc = ag_hint_apply(api, body, hint, &out, &slot);
    CHECK(rc == AG_OK || rc == AG_ENOENT);
    if (!valid)
        CHECK(rc == AG_ENOENT);
    if (rc == AG_ENOENT) {
        CHECK(out.len == 0 && slot == AG_HINT_SLOT_NONE);
        goto out;
    }
    CHECK(ag_jscan_find(ag_buf_str(&out), NULL, 0, NULL, 0, &n, NULL) == AG_OK);

    /* out = body[0, at) + insertion + body[at + bcut, ...) for some at: at most the common
     * prefix, at least where the common suffix allows (both can run into the insertion, whose
     * bytes may equal the body's next ones) */
    size_t bcut = slot == AG_HINT_SLOT_REPLACE_NULL ? 4 : 0;
    CHECK(out.len + bcut > body.len);
    size_t inslen = out.len + bcut - body.len;
    size_t pre = 0, suf = 0;
    while (pre < body.len && pre < out.len && body.ptr[pre] == out.ptr[pre])
        pre++;
    while (suf < body.len && suf < out.len &&
           body.ptr[body.len - 1 - suf] == out.ptr[out.len - 1 - suf])
        suf++;
    size_t lo = body.len > bcut + suf ? body.len - bcut - suf : 0;

    /* the hint as it decodes once escaped (invalid UTF-8 becomes U+FFFD) */
    ag_buf_t esc;
    ag_buf_init(&esc, 1u << 20);
    CHECK(ag_jscan_escape(&esc, hint, 0) == AG_OK);
    CHECK(decode_inside(ag_buf_str(&esc), &norm) == AG_OK);
    ag_buf_dispose(&esc);

    /* locate the whole insertion by its shape: search the window around the differing span */
    const char *open = NULL, *close = NULL;
    switch (slot) {
    case AG_HINT_SLOT_APPEND_STR:
        open = "\\n\\n";
        close = "";
        break;
    case AG_HINT_SLOT_APPEND_PART:
        open = "{\"type\":\"text\",\"text\":\"";
        close = "\"}";
        break;
    case AG_HINT_SLOT_NEW_MESSAGE:
        open = "{\"role\":\"system\",\"content\":\"";
        close = "\"}";
        break;
    case AG_HINT_SLOT_NEW_KEY:
        open = api == AG_HINT_RESPONSES ? "\"instructions\":\"" : "\"system\":\"";
        close = "\"";
        break;
    case AG_HINT_SLOT_REPLACE_NULL:
        open = "\"";
        close = "\"";
        break;
    case AG_HINT_SLOT_NONE:
        CHECK(0);
    }
    bool found = false;
    for (size_t at = lo; at <= pre && at + bcut <= body.len && !found; at++) {
        ag_str_t w = ag_str(out.ptr + at, inslen);
        if (bcut && memcmp(body.ptr + at, "null", 4) != 0)
            continue;
        ag_str_t mid = w;
        if (slot == AG_HINT_SLOT_APPEND_PART && starts(mid, ","))
            mid = ag_str(mid.ptr + 1, mid.len - 1);
        if (slot == AG_HINT_SLOT_NEW_MESSAGE || slot == AG_HINT_SLOT_NEW_KEY)
            if (ends(mid, ","))
                mid.len--;
        if (!starts(mid, open) || !ends(mid, close))
            continue;
        ag_str_t inner = ag_str(mid.ptr + strlen(open), mid.len - strlen(open) - strlen(close));
        if (slot == AG_HINT_SLOT_APPEND_STR) {
            /* escaped in the joined string's style: compare decoded, "\n\n" already stripped */
            if (out.ptr[at + inslen] != '"')
                continue;
        }
        got.len = 0;
        if (decode_inside(inner, &got) != AG_OK || got.len != norm.len ||
            (norm.len && memcmp(got.ptr, norm.ptr, norm.len) != 0))
            continue;
        found = true;
    }
    CHECK(found);
out:
    ag_buf_dispose(&out);
    ag_buf_dispose(&norm);
    ag_buf_dispose(&got);
    return 0;
}

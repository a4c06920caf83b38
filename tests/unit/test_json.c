/* Unit tests for json.c: string escaping and decoding, including a randomized round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"

static ag_buf_t buf;

static int setup(void **state)
{
    (void)state;
    ag_buf_init(&buf, 1 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_buf_dispose(&buf);
    return 0;
}

/* Encodes n bytes of s into buf (after resetting it) and compares with the expected text. */
static void check_enc(const char *s, size_t n, const char *want)
{
    ag_buf_reset(&buf);
    assert_int_equal(ag_json_append_str(&buf, ag_str(s, n)), AG_OK);
    assert_int_equal(buf.len, strlen(want));
    assert_memory_equal(buf.ptr, want, buf.len);
}
#define ENC(lit, want) check_enc((lit), sizeof(lit) - 1, (want))

static void test_enc_ascii_and_short_escapes(void **state)
{
    (void)state;
    ENC("", "\"\"");
    ENC("plain text / ok", "\"plain text / ok\"");
    ENC("a\"b\\c", "\"a\\\"b\\\\c\"");
    ENC("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
}

static void test_enc_control_del_nul(void **state)
{
    (void)state;
    ENC("\x01\x1f", "\"\\u0001\\u001f\"");
    ENC("a\0b", "\"a\\u0000b\"");
    ENC("\x7f", "\"\\u007f\"");
    ENC("\x1b[31m", "\"\\u001b[31m\"");
}

static void test_enc_valid_utf8_passes(void **state)
{
    (void)state;
    ENC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"");
    /* U+2027 and U+202A are neighbours of the two escaped terminators and pass through. */
    ENC("\xe2\x80\xa7\xe2\x80\xaa", "\"\xe2\x80\xa7\xe2\x80\xaa\"");
}

static void test_enc_line_separators(void **state)
{
    (void)state;
    ENC("a\xe2\x80\xa8"
        "b\xe2\x80\xa9",
        "\"a\\u2028b\\u2029\"");
}

static void test_enc_invalid_utf8_each_byte(void **state)
{
    (void)state;
    ENC("\xff", "\"\\ufffd\"");
    ENC("\x80x", "\"\\ufffdx\"");
    /* truncated 3-byte sequence: both bytes replaced, the next ASCII byte kept */
    ENC("\xe2\x82x", "\"\\ufffd\\ufffdx\"");
    /* truncated at the end of input */
    ENC("a\xf0\x9f\x98", "\"a\\ufffd\\ufffd\\ufffd\"");
    /* overlong NUL and overlong '/' */
    ENC("\xc0\x80", "\"\\ufffd\\ufffd\"");
    ENC("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");
    /* UTF-16 surrogate U+D800 encoded in UTF-8 */
    ENC("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
    /* above U+10FFFF */
    ENC("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    ENC("\xf5\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* a valid character right after garbage is kept */
    ENC("\xc3\xc3\xa9", "\"\\ufffd\xc3\xa9\"");
}

static void test_enc_appends_and_overflow_restores(void **state)
{
    (void)state;
    ag_buf_t b;
    ag_buf_init(&b, 12);
    assert_int_equal(ag_buf_append(&b, "x=", 2), AG_OK);
    assert_int_equal(ag_json_append_str(&b, AG_STR_LIT("ab\n")), AG_OK);
    assert_string_equal(b.ptr, "x=\"ab\\n\"");
    /* 8 bytes used, 4 left: "\u0001" needs 8 more, so this fails and leaves b alone */
    assert_int_equal(ag_json_append_str(&b, AG_STR_LIT("\x01")), AG_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.ptr, "x=\"ab\\n\"");
    /* a failure in the middle of a long plain run also restores */
    assert_int_equal(ag_json_append_str(&b, AG_STR_LIT("abcdef")), AG_ETOOBIG);
    assert_string_equal(b.ptr, "x=\"ab\\n\"");
    /* exactly fits */
    assert_int_equal(ag_json_append_str(&b, AG_STR_LIT("ab")), AG_OK);
    assert_string_equal(b.ptr, "x=\"ab\\n\"\"ab\"");
    ag_buf_dispose(&b);
}

static void check_dec(const char *s, size_t n, const char *want, size_t wantlen)
{
    ag_buf_reset(&buf);
    assert_int_equal(ag_json_decode_str(ag_str(s, n), &buf), AG_OK);
    assert_int_equal(buf.len, wantlen);
    assert_memory_equal(buf.ptr, want, wantlen);
}
#define DEC(lit, want) check_dec((lit), sizeof(lit) - 1, (want), sizeof(want) - 1)

static void test_dec_simple_escapes(void **state)
{
    (void)state;
    DEC("", "");
    DEC("plain", "plain");
    DEC("\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t");
    DEC("a\\u0041\\u00e9\\u00E9\\u20AC", "aA\xc3\xa9\xc3\xa9\xe2\x82\xac");
    DEC("x\\u0000y", "x\0y");
    /* raw non-ASCII bytes (even invalid UTF-8) are copied */
    DEC("\xc3\xa9\xff", "\xc3\xa9\xff");
}

static void test_dec_surrogates(void **state)
{
    (void)state;
    DEC("\\ud83d\\ude00", "\xf0\x9f\x98\x80");
    DEC("\\uD83D\\uDE00!", "\xf0\x9f\x98\x80!");
    DEC("\\udbff\\udfff", "\xf4\x8f\xbf\xbf");
    /* lone high at the end, lone high before a non-surrogate escape, before plain text */
    DEC("\\ud83d", "\xef\xbf\xbd");
    DEC("\\ud83d\\u0041", "\xef\xbf\xbd"
                          "A");
    DEC("\\ud83dx", "\xef\xbf\xbd"
                    "x");
    /* two highs: each alone; lone low; reversed pair */
    DEC("\\ud83d\\ud83d\\ude00", "\xef\xbf\xbd\xf0\x9f\x98\x80");
    DEC("\\ude00", "\xef\xbf\xbd");
    DEC("\\ude00\\ud83d", "\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_dec_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\\x",  "ab\\", "\\u12",        "\\u12G4",        "\\u",     "a\"b",
        "a\nb", "\x01", "\\ud83d\\u12", "\\ud83d\\uzzzz", "\\U0041",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ag_buf_reset(&buf);
        assert_int_equal(ag_buf_append(&buf, "keep", 4), AG_OK);
        assert_int_equal(ag_json_decode_str(ag_cstr(bad[i]), &buf), AG_EINVAL);
        assert_int_equal(buf.len, 4);
        assert_string_equal(buf.ptr, "keep");
    }
}

static void test_dec_overflow(void **state)
{
    (void)state;
    ag_buf_t b;
    ag_buf_init(&b, 3);
    assert_int_equal(ag_json_decode_str(AG_STR_LIT("ab"), &b), AG_OK);
    assert_int_equal(ag_json_decode_str(AG_STR_LIT("\\u00e9"), &b), AG_ETOOBIG);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.ptr, "ab");
    ag_buf_dispose(&b);
}

/* --- randomized round trip ------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
    rng ^= rng << 13; /* xorshift64, fixed seed: deterministic */
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Independent UTF-8 check for the tests: decode the code point, then reject overlongs,
 * surrogates and values above U+10FFFF. Returns the sequence length or 0. */
static size_t ref_utf8(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, cp = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, cp = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < minimum[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

static void put_cp(ag_buf_t *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80)
        u[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (unsigned char)(0xc0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (unsigned char)(0xe0 | cp >> 12), u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f)),
        u[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (unsigned char)(0xf0 | cp >> 18), u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f)),
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f)), u[3] = (unsigned char)(0x80 | (cp & 0x3f)),
        n = 4;
    assert_int_equal(ag_buf_append(b, u, n), AG_OK);
}

/* Encoded text must be one JSON string: quotes only at the ends (or escaped), no raw control
 * bytes or DEL, valid UTF-8 throughout, no raw U+2028/U+2029. */
static void check_encoded_shape(const ag_buf_t *e)
{
    const unsigned char *p = (const unsigned char *)e->ptr;
    assert_true(e->len >= 2 && p[0] == '"' && p[e->len - 1] == '"');
    for (size_t i = 1; i + 1 < e->len;) {
        assert_true(p[i] >= 0x20 && p[i] != 0x7f);
        if (p[i] == '\\') {
            i += 2;
            continue;
        }
        assert_true(p[i] != '"');
        size_t n = ref_utf8(p + i, e->len - 1 - i);
        assert_true(n > 0);
        assert_false(n == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 &&
                     (p[i + 2] == 0xa8 || p[i + 2] == 0xa9));
        i += n;
    }
}

static void round_trip(const ag_buf_t *in, const ag_buf_t *want)
{
    ag_buf_t e, d;
    ag_buf_init(&e, 1 << 20);
    ag_buf_init(&d, 1 << 20);
    assert_int_equal(ag_json_append_str(&e, ag_buf_str(in)), AG_OK);
    check_encoded_shape(&e);
    assert_int_equal(ag_json_decode_str(ag_str(e.ptr + 1, e.len - 2), &d), AG_OK);
    assert_int_equal(d.len, want->len);
    if (want->len)
        assert_memory_equal(d.ptr, want->ptr, want->len);
    ag_buf_dispose(&e);
    ag_buf_dispose(&d);
}

static void test_round_trip_valid_utf8(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        ag_buf_t in;
        ag_buf_init(&in, 1 << 20);
        size_t n = rnd() % 40;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp;
            switch (rnd() % 6) {
            case 0:
                cp = rnd() % 0x80; /* ASCII incl. controls, quote, backslash, DEL */
                break;
            case 1:
                cp = 0x2026 + rnd() % 6; /* around U+2028/2029 */
                break;
            case 2:
                cp = 0x80 + rnd() % 0x780;
                break;
            case 3:
                cp = 0x800 + rnd() % 0xf800;
                break;
            case 4:
                cp = 0x10000 + rnd() % 0x100000;
                break;
            default:
                cp = (uint32_t[]){'"', '\\', 0, 0x7f, 0xfffd, 0xd7ff, 0xe000, 0x10ffff}[rnd() % 8];
                break;
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 'S';
            put_cp(&in, cp);
        }
        round_trip(&in, &in);
        ag_buf_dispose(&in);
    }
}

static void test_round_trip_random_bytes(void **state)
{
    (void)state;
    for (int iter = 0; iter < 5000; iter++) {
        ag_buf_t in, want;
        ag_buf_init(&in, 1 << 20);
        ag_buf_init(&want, 1 << 20);
        size_t n = rnd() % 48;
        for (size_t i = 0; i < n; i++) {
            /* bias towards the high half and UTF-8 lead/continuation bytes */
            unsigned char c = (unsigned char)(rnd() % 3 ? 0x80 | rnd() : rnd());
            assert_int_equal(ag_buf_appendc(&in, (char)c), AG_OK);
        }
        /* expected decode: valid sequences kept, each other byte → U+FFFD */
        const unsigned char *p = (const unsigned char *)in.ptr;
        for (size_t i = 0; i < in.len;) {
            size_t len = ref_utf8(p + i, in.len - i);
            if (len == 0) {
                assert_int_equal(ag_buf_append(&want, "\xef\xbf\xbd", 3), AG_OK);
                i++;
            } else {
                assert_int_equal(ag_buf_append(&want, p + i, len), AG_OK);
                i += len;
            }
        }
        round_trip(&in, &want);
        ag_buf_dispose(&in);
        ag_buf_dispose(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enc_ascii_and_short_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enc_control_del_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enc_valid_utf8_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enc_line_separators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enc_invalid_utf8_each_byte, setup, teardown),
        cmocka_unit_test(test_enc_appends_and_overflow_restores),
        cmocka_unit_test_setup_teardown(test_dec_simple_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dec_surrogates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dec_malformed, setup, teardown),
        cmocka_unit_test(test_dec_overflow),
        cmocka_unit_test(test_round_trip_valid_utf8),
        cmocka_unit_test(test_round_trip_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

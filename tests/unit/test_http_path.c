/* Unit tests for path.c: each rule of ag_http_path_normalize (path.h) on a target that only that
 * rule changes or refuses, the reason given, and the buffer contract (cap, NUL, out-params). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "path.h"

/* Normalises the first n bytes of in from an exact-size copy (so ASan sees any read past the end)
 * into a roomy buffer; returns the code and fills out/why. */
static int norm_n(const char *in, size_t n, char *out, size_t cap, size_t *olen, size_t *plen,
                  const char **why)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, in, n);
    int rc = ag_http_path_normalize(ag_str(copy, n), out, cap, olen, plen, why);
    free(copy);
    return rc;
}

/* in normalises to want, whose path part is want_plen bytes long; and want is a fixed point. */
static void check_ok_n(const char *in, size_t n, const char *want, size_t want_plen)
{
    char out[512];
    size_t olen = 999, plen = 999;
    const char *why = "untouched";

    memset(out, 'X', sizeof(out));
    int rc = norm_n(in, n, out, sizeof(out), &olen, &plen, &why);
    if (rc != AG_OK)
        fail_msg("\"%.*s\": rc %d (%s), wanted \"%s\"", (int)n, in, rc, why, want);
    assert_string_equal(out, want);
    assert_int_equal(olen, strlen(want));
    assert_int_equal(plen, want_plen);
    assert_string_equal(why, "untouched"); /* written only on error */

    /* idempotent */
    char again[512];
    size_t olen2 = 0, plen2 = 0;
    rc = norm_n(out, olen, again, sizeof(again), &olen2, &plen2, &why);
    assert_int_equal(rc, AG_OK);
    assert_string_equal(again, want);
    assert_int_equal(plen2, want_plen);
}

static void check_ok(const char *in, const char *want, size_t want_plen)
{
    check_ok_n(in, strlen(in), want, want_plen);
}

/* in is refused with AG_EINVAL and a reason containing because; nothing else is written. */
static void check_bad_n(const char *in, size_t n, const char *because)
{
    char out[512];
    size_t olen = 999, plen = 998;
    const char *why = NULL;

    memset(out, 'X', sizeof(out));
    int rc = norm_n(in, n, out, sizeof(out), &olen, &plen, &why);
    if (rc != AG_EINVAL)
        fail_msg("\"%.*s\": rc %d, wanted AG_EINVAL (%s)", (int)n, in, rc, because);
    assert_non_null(why);
    if (!strstr(why, because))
        fail_msg("\"%.*s\": reason \"%s\", wanted one with \"%s\"", (int)n, in, why, because);
    assert_int_equal(olen, 999);
    assert_int_equal(plen, 998);
    assert_int_equal(out[0], 'X');

    /* refused whatever the cap */
    why = NULL;
    rc = norm_n(in, n, out, 1, &olen, &plen, &why);
    assert_int_equal(rc, AG_EINVAL);
    assert_non_null(strstr(why, because));
}

static void check_bad(const char *in, const char *because)
{
    check_bad_n(in, strlen(in), because);
}

static void unchanged_targets(void **state)
{
    (void)state;
    check_ok("/", "/", 1);
    check_ok("/v1/chat/completions", "/v1/chat/completions", 20);
    check_ok("/a/", "/a/", 3);
    check_ok("/a/b.c/d-e_f~g/...", "/a/b.c/d-e_f~g/...", 18);
    check_ok("/.a/a./..a/a..", "/.a/a./..a/a..", 14);
    check_ok("/!$&'()*+,;=:@\"<>{}|^`[]", "/!$&'()*+,;=:@\"<>{}|^`[]", 24);
}

static void rejects_other_forms(void **state)
{
    (void)state;
    check_bad("", "start with '/'");
    check_bad("*", "start with '/'");
    check_bad("http://example.com/v1", "start with '/'");
    check_bad("example.com:443", "start with '/'");
    check_bad("v1/chat", "start with '/'");
    check_bad("?a=1", "start with '/'");
}

static void merges_slashes(void **state)
{
    (void)state;
    check_ok("/v1//chat///completions?a=1", "/v1/chat/completions?a=1", 20);
    check_ok("//", "/", 1);
    check_ok("///a", "/a", 2);
    check_ok("/a//", "/a/", 3);
    check_ok("/a//b//?x//y", "/a/b/?x//y", 5); /* not in the query */
}

static void removes_dot_segments(void **state)
{
    (void)state;
    check_ok("/v1/x/../chat/completions", "/v1/chat/completions", 20);
    check_ok("/a/./b", "/a/b", 4);
    check_ok("/a/b/../c", "/a/c", 4);
    check_ok("/a/b/../../c", "/c", 2);
    check_ok("/a/b/c/./../../g", "/a/g", 4); /* RFC 3986 5.4.1 */
    check_ok("/a/.", "/a/", 3);
    check_ok("/a/b/..", "/a/", 3);
    check_ok("/a/b/../", "/a/", 3);
    check_ok("/a/..", "/", 1);
    check_ok("/.", "/", 1);
    check_ok("/./", "/", 1);
    check_ok("/./a", "/a", 2);
    check_ok("/a/.//b", "/a/b", 4);
    check_ok("/a//..", "/", 1); /* slashes merged first: "/a/.." */
    check_ok("/a/..?x=/../", "/?x=/../", 1);
}

static void rejects_dots_above_root(void **state)
{
    (void)state;
    check_bad("/..", "dot segments above the root");
    check_bad("/../v1", "dot segments above the root");
    check_bad("/a/../..", "dot segments above the root");
    check_bad("/a/../../b/c/d", "dot segments above the root");
    check_bad("/./../a", "dot segments above the root");
    check_bad("//..//a", "dot segments above the root");
    check_bad("/%2e%2e/a", "dot segments above the root");
}

static void decodes_unreserved_only(void **state)
{
    (void)state;
    check_ok("/v1/x/%2e%2E/chat/completions", "/v1/chat/completions", 20);
    check_ok("/a/%2e/b", "/a/b", 4);
    check_ok("/a/.%2E", "/", 1);
    check_ok("/%7e", "/~", 2);
    check_ok("/%7Euser", "/~user", 6);
    check_ok("/%41%62%30%2D%5F%2e", "/Ab0-_.", 7);
    check_ok("/a%2e%2e", "/a..", 4);
    check_ok("/%2e%2e%2e", "/...", 4);
    /* reserved and non-ASCII escapes stay, hex in uppercase */
    check_ok("/a%20b", "/a%20b", 6);
    check_ok("/caf%c3%a9", "/caf%C3%A9", 10);
    check_ok("/%3f%23%25%3A%40%2b", "/%3F%23%25%3A%40%2B", 19);
    check_ok("/%2541", "/%2541", 6); /* decoded once, not twice */
    check_ok("/%ff%80", "/%FF%80", 7);
}

static void query_kept_byte_for_byte(void **state)
{
    (void)state;
    check_ok("/v1?a=%2e%2f%zz&b=%7e/../x//y\\z", "/v1?a=%2e%2f%zz&b=%7e/../x//y\\z", 3);
    check_ok("/a?", "/a?", 2);
    check_ok("/a??b?", "/a??b?", 2);
    check_ok("/%7e/./?%7e", "/~/?%7e", 3);
}

static void rejects_bad_escapes(void **state)
{
    (void)state;
    check_bad("/a%2fb", "encoded slash in the path");
    check_bad("/a%2Fb", "encoded slash in the path");
    check_bad("/a%5cb", "encoded backslash in the path");
    check_bad("/a%5Cb", "encoded backslash in the path");
    check_bad("/a%00b", "encoded control character in the path");
    check_bad("/a%0a", "encoded control character in the path");
    check_bad("/a%1F", "encoded control character in the path");
    check_bad("/a%7f", "encoded control character in the path");
    check_bad("/a%zz", "bad percent-encoding");
    check_bad("/a%", "bad percent-encoding");
    check_bad("/a%4", "bad percent-encoding");
    check_bad("/a%4g", "bad percent-encoding");
    check_bad("/a%4?x", "bad percent-encoding"); /* an escape does not run into the query */
    check_bad("/a%?41", "bad percent-encoding");
    check_bad("/a%%41", "bad percent-encoding");
}

static void rejects_bad_bytes(void **state)
{
    (void)state;
    check_bad_n("/a\0b", 4, "control character");
    check_bad_n("\0/a", 3, "start with '/'");
    check_bad_n("/a?b\0", 5, "control character");
    check_bad("/a\tb", "control character");
    check_bad("/a\r\nb", "control character");
    check_bad("/a\x7f", "control character");
    check_bad("/a b", "space");
    check_bad("/a?b c", "space");
    check_bad("/a\\b", "backslash in the path");
    check_bad("/a#b", "fragment");
    check_bad("/a?b#c", "fragment");
    check_bad("/caf\xc3\xa9", "percent-encoded");
    check_bad("/a?q=\xc3\xa9", "percent-encoded");
    check_bad("/a?q=\x7f", "control character");
}

static void leftmost_problem_wins(void **state)
{
    (void)state;
    check_bad("/../a%2f", "encoded slash"); /* bytes before dots */
    check_bad("/a%2f\\", "encoded slash");
    check_bad("/a\\%2f", "backslash");
    check_bad("/a%zz?#", "bad percent-encoding");
}

static void cap_and_out_params(void **state)
{
    (void)state;
    const char *in = "/a/b/../c?q";
    char out[16];
    size_t olen = 77, plen = 78;
    const char *why = NULL;

    /* "/a/c?q" needs 7 bytes with its NUL; the target itself is 11 */
    memset(out, 'X', sizeof(out));
    assert_int_equal(ag_http_path_normalize(ag_cstr(in), out, 6, &olen, &plen, &why), AG_ETOOBIG);
    assert_non_null(why);
    assert_int_equal(olen, 77);
    assert_int_equal(plen, 78);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 'X');
    assert_int_equal(ag_http_path_normalize(ag_cstr(in), out, 0, &olen, &plen, &why), AG_ETOOBIG);

    assert_int_equal(ag_http_path_normalize(ag_cstr(in), out, 7, &olen, &plen, &why), AG_OK);
    assert_string_equal(out, "/a/c?q");
    assert_int_equal(olen, 6);
    assert_int_equal(plen, 4);
    assert_int_equal(out[7], 'X');

    /* out-params may be NULL */
    assert_int_equal(ag_http_path_normalize(ag_cstr("/x"), out, 3, NULL, NULL, NULL), AG_OK);
    assert_string_equal(out, "/x");
    assert_int_equal(ag_http_path_normalize(ag_cstr("/x"), out, 2, NULL, NULL, NULL), AG_ETOOBIG);
    assert_int_equal(ag_http_path_normalize(ag_cstr("x"), out, 2, NULL, NULL, NULL), AG_EINVAL);
    assert_int_equal(ag_http_path_normalize(ag_str(NULL, 0), out, 2, NULL, NULL, NULL), AG_EINVAL);
}

static void long_target(void **state)
{
    (void)state;
    /* 300 segments "a/" then as many "../": back to "/" exactly, one more ".." is refused */
    char in[1 + 300 * 2 + 300 * 3 + 3 + 1];
    size_t n = 0;

    in[n++] = '/';
    for (int i = 0; i < 300; i++) {
        in[n++] = 'a';
        in[n++] = '/';
    }
    for (int i = 0; i < 300; i++) {
        memcpy(in + n, "../", 3);
        n += 3;
    }
    check_ok_n(in, n, "/", 1);
    memcpy(in + n, "..", 2);
    check_bad_n(in, n + 2, "dot segments above the root");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unchanged_targets),        cmocka_unit_test(rejects_other_forms),
        cmocka_unit_test(merges_slashes),           cmocka_unit_test(removes_dot_segments),
        cmocka_unit_test(rejects_dots_above_root),  cmocka_unit_test(decodes_unreserved_only),
        cmocka_unit_test(query_kept_byte_for_byte), cmocka_unit_test(rejects_bad_escapes),
        cmocka_unit_test(rejects_bad_bytes),        cmocka_unit_test(leftmost_problem_wins),
        cmocka_unit_test(cap_and_out_params),       cmocka_unit_test(long_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

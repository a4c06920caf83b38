/* Request-target normalisation for the HTTP/1.1 front end: one canonical spelling of an
 * origin-form target, so that routing and rules never see two spellings of one path. */
#ifndef AG_HTTP_PATH_H
#define AG_HTTP_PATH_H

#include "util.h"

/*
 * ag_http_path_normalize: checks and normalises an origin-form request target (RFC 9112 3.2.1:
 * absolute-path [ "?" query ]) as received. Pure: no allocation, no global state, thread-safe.
 *
 * In:  target   the bytes as received, not NUL-terminated; read only within [ptr, ptr + len).
 *               It must start with '/': empty, absolute-form ("http://h/"), authority-form
 *               ("h:443") and asterisk-form ("*") targets are AG_EINVAL.
 *      out, cap where to write the result; cap counts the NUL. out must not overlap target.
 *               The result is never longer than the target, so cap >= target.len + 1 always fits.
 * Out: out       the normalised target, NUL-terminated (it holds no NUL of its own);
 *      *out_len  its length without the NUL;
 *      *path_len the length of its path part: out[path_len] is '?' or the NUL.
 *      out_len, path_len and why may be NULL.
 * Returns AG_OK; AG_EINVAL for a target refused by the rules below; AG_ETOOBIG when cap is less
 * than the normalised length + 1. On error only *why is written: a short static English reason
 * ("encoded slash in the path", ...), and out, *out_len and *path_len are left as they were.
 * Precedence: the leftmost bad byte or escape, then dot segments above the root, then AG_ETOOBIG
 * (a bad target is AG_EINVAL whatever the cap).
 *
 * Path (before the first '?'), in this order:
 * 1. Refused: bytes <= 0x20 (control characters, space) and 0x7F; bytes >= 0x80 (clients must
 *    percent-encode them); '#' (a fragment is never sent); a raw '\'; '%' not followed by two hex
 *    digits; and the escapes %2F (encoded '/'), %5C (encoded '\'), %00-%1F and %7F. Hex digits
 *    match either case.
 * 2. %XX of an unreserved character (ALPHA DIGIT - . _ ~) is decoded (RFC 3986 6.2.2.2: %41 ->
 *    "A", %2e -> "."); every other escape stays, with its hex digits uppercased (%c3 -> %C3).
 * 3. Runs of '/' become one '/' (nginx merge_slashes).
 * 4. Dot segments are removed (RFC 3986 5.2.4): "/a/./b" -> "/a/b", "/a/b/../c" -> "/a/c"; a last
 *    segment "." or ".." leaves a trailing '/' ("/a/b/.." -> "/a/"). A ".." with nothing left
 *    to remove (it would climb above the root: "/..", "/a/../..") is AG_EINVAL, never clamped
 *    to "/" (nginx answers 400). Segments such as "..." or ".a" are ordinary.
 * Query (from the first '?' on, '?' included, even when empty): copied byte for byte, no decoding,
 * no case change, '%' not checked; bytes <= 0x20, 0x7F, >= 0x80 and '#' are refused as above;
 * '\' is allowed there.
 *
 * So on success the path part starts with '/', holds no "//", no "/./" or "/../" and does not end
 * in "/." or "/..", holds only bytes step 1 allows and only escapes that step 2 keeps, in
 * uppercase; and normalising the result again gives the same bytes.
 */
AG_MUSTCHECK int ag_http_path_normalize(ag_str_t target, char *out, size_t cap, size_t *out_len,
                                        size_t *path_len, const char **why);

#endif

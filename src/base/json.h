/* JSON string encoding (audit log, error bodies) and decoding of JSON string contents. */
#ifndef AG_JSON_H
#define AG_JSON_H

#include "util.h"

/* Appends s to b as a quoted JSON string that is always valid JSON and valid UTF-8, whatever
 * bytes s holds:
 *   - `"` and `\` get a backslash; \b \f \n \r \t use the short escapes; other bytes below 0x20
 *     and DEL (0x7f) become \u00XX (lowercase hex);
 *   - U+2028 and U+2029 become \u2028 and \u2029 (JavaScript line terminators);
 *   - each byte that is not part of a well-formed UTF-8 sequence (RFC 3629: no overlongs,
 *     surrogates or code points above U+10FFFF) becomes \ufffd, one per byte;
 *   - every other byte, including valid multi-byte UTF-8, is copied as is.
 * Returns 0, or ag_buf_append's error (AG_ETOOBIG past b->max), in which case b is left as it
 * was before the call. */
AG_MUSTCHECK int ag_json_append_str(ag_buf_t *b, ag_str_t s);

/* Decodes the contents of a JSON string (the bytes between the quotes, quotes excluded) and
 * appends the result to out. Handles \" \\ \/ \b \f \n \r \t and \uXXXX (any hex case),
 * combining surrogate pairs into one UTF-8 character; a lone or misordered surrogate becomes
 * U+FFFD. \u0000 yields a NUL byte. Other bytes are copied as is (no UTF-8 validation).
 * Returns AG_EINVAL for a malformed escape (unknown letter, fewer than 4 hex digits, trailing
 * `\`), a raw `"` or a raw control byte below 0x20 (RFC 8259 forbids both unescaped), or
 * ag_buf_append's error. On any error out is left as it was before the call. */
AG_MUSTCHECK int ag_json_decode_str(ag_str_t body, ag_buf_t *out);

#endif

/* Raw-JSON locator and splicer: finds values at small path patterns in one validating pass over a
 * body, decodes string tokens with a decoded→raw offset map, and rewrites parts of those strings
 * while every other byte of the body stays as it was (no re-serialisation). No allocation except
 * into caller-provided arrays and capped ag_buf_t buffers. */
#ifndef AG_JSONSCAN_H
#define AG_JSONSCAN_H

#include "util.h"

#define AG_JSCAN_MAX_DEPTH 64  /* nested arrays/objects; one more is AG_EINVAL */
#define AG_JSCAN_MAX_PATHS 16  /* paths per ag_jscan_find call */
#define AG_JSCAN_MAX_STEPS 16  /* steps per path */
#define AG_JSCAN_MAX_IDX 4     /* array steps per path (each reports its concrete index) */
#define AG_JSCAN_MAX_FILTERS 4 /* {key=value} filters per path */
#define AG_JSCAN_PATH_TEXT 160 /* bytes of (unescaped) key names and filter text per path */

/* Value types, as bits: a path's type mask and a match's type. */
enum {
    AG_JSCAN_STRING = 1,
    AG_JSCAN_NUMBER = 2,
    AG_JSCAN_OBJECT = 4,
    AG_JSCAN_ARRAY = 8,
    AG_JSCAN_TRUE = 16,
    AG_JSCAN_FALSE = 32,
    AG_JSCAN_NULL = 64,
    AG_JSCAN_ANY = 127,
};

/*
 * Path patterns. A path names values by the chain of member names and array positions that leads
 * to them from the root:
 *
 *   pattern := filters [ ['.'] key filters ] { '.' key filters | '[' sel ']' filters }
 *              (the first step may also be '[' sel ']'; the empty pattern names the root)
 *   key     := "*" (any member name) or bytes other than . [ ] { } = \ ; a '\' makes the next
 *              byte literal ("\*" is a member named "*", "a\.b" one named "a.b")
 *   sel     := "*" (any element) or decimal digits (that element only)
 *   filters := { '{' fkey '=' fvalue '}' }      fkey non-empty; '\' escapes as in key; fvalue may
 *              hold '.', '=', and be empty
 *
 * A filter constrains the value reached by the step right before it (or the root, for filters at
 * the start): that value must be an object whose member fkey is a string equal to fvalue after
 * JSON decoding. The member may come before or after the matched value; with duplicate keys the
 * last occurrence counts (as in JavaScript's JSON.parse). Examples:
 *   choices[*].message.content                         chat completion text, idx[0] = choice
 *   output[*].content[*]{type=output_text}.text        Responses: only output_text parts
 *   content[*]{type=text}.text                         Anthropic text blocks
 *   {type=content_block_delta}delta{type=text_delta}.text
 *   response.output[*].content[*]{type=output_text}.text
 *   sequence_number                                    any value; the caller reads the number
 *
 * A path is compiled into caller storage; it keeps no pointer to the pattern.
 */
typedef struct ag_jscan_path {
    /* Private: filled by ag_jscan_path_compile. */
    uint8_t nsteps;
    uint8_t narr;
    uint8_t nfilters;
    uint8_t types;
    uint16_t textlen;
    struct ag_jscan_step {
        uint8_t kind; /* key, any key, index, any index */
        uint8_t slot; /* array steps: position in ag_jscan_match_t.idx */
        uint16_t off; /* key: bytes in text */
        uint16_t len;
        size_t index; /* index steps */
    } step[AG_JSCAN_MAX_STEPS];
    struct ag_jscan_filter {
        uint8_t depth; /* value depth the filter applies to (0 = root) */
        uint16_t koff, klen, voff, vlen;
    } filter[AG_JSCAN_MAX_FILTERS];
    char text[AG_JSCAN_PATH_TEXT];
} ag_jscan_path_t;

/* Compiles pattern into *p; types is a mask of AG_JSCAN_* value types the path accepts (0 = any);
 * values of other types at the path are simply not matched (e.g. AG_JSCAN_STRING skips a null
 * "content"). AG_EINVAL for a malformed pattern or a bad mask, AG_ETOOBIG when a limit above is
 * passed. *p is written only on success. */
AG_MUSTCHECK int ag_jscan_path_compile(ag_jscan_path_t *p, ag_str_t pattern, unsigned types);

/* One value found. Offsets are bytes into the scanned text. */
typedef struct ag_jscan_match {
    size_t off;     /* first byte of the value token (the '"' for strings) */
    size_t len;     /* bytes of the whole token: strings include both quotes,
                     * objects/arrays run to their closing bracket */
    size_t key_off; /* member name token (with quotes) when the path's last step is
                     * a key; key_len == 0 otherwise */
    size_t key_len;
    size_t idx[AG_JSCAN_MAX_IDX]; /* element index of each array step, in path order */
    uint8_t path;                 /* index of the path in the paths[] given to ag_jscan_find */
    uint8_t nidx;                 /* idx entries in use (= array steps of the path) */
    uint8_t type;                 /* one AG_JSCAN_* type bit */
} ag_jscan_match_t;

static inline ag_str_t ag_jscan_token(ag_str_t json, const ag_jscan_match_t *m)
{
    return (ag_str_t){json.ptr + m->off, m->len};
}

/*
 * Validates json (RFC 8259: one value with optional whitespace around it; strings must be UTF-8
 * without raw control bytes; no byte order mark; at most AG_JSCAN_MAX_DEPTH nested containers)
 * and, in the same single pass, records every value that matches one of paths[0..npaths) into
 * out[0..cap), in document order of the values' first bytes. A value matching several paths is
 * reported once per path. Duplicate keys: every occurrence is reported.
 * Returns AG_OK with *n = matches. AG_EINVAL for malformed JSON, with *errpos (when not NULL) set
 * to the offset of the first byte that cannot continue a valid text (json.len when it ended
 * early; the opening bracket for too deep nesting); also AG_EINVAL (errpos untouched) when npaths
 * is above AG_JSCAN_MAX_PATHS. AG_ETOOBIG when more than cap matches would be needed (a match
 * inside an object whose filter is still undecided counts until the object closes). On errors
 * *n is not written and out[] holds scratch. paths/out may be NULL when npaths/cap is 0 (npaths
 * 0 = validate only). Thread-safe: no shared state.
 */
AG_MUSTCHECK int ag_jscan_find(ag_str_t json, const ag_jscan_path_t *paths, size_t npaths,
                               ag_jscan_match_t *out, size_t cap, size_t *n, size_t *errpos);

/* Whether m is a string whose decoded contents equal want. */
bool ag_jscan_str_eq(ag_str_t json, const ag_jscan_match_t *m, ag_str_t want);

/* Reads m as a non-negative integer written without fraction or exponent ("0", "17"). AG_EINVAL
 * for other values (including "-1", "1.0", "1e3") and values above UINT64_MAX. */
AG_MUSTCHECK int ag_jscan_get_u64(ag_str_t json, const ag_jscan_match_t *m, uint64_t *v);

/*
 * Decodes the string token json[off, off+len) (quotes included, e.g. a match's off/len) and
 * appends its UTF-8 contents to out: escapes are resolved, \uXXXX surrogate pairs are combined,
 * lone or misordered surrogates become U+FFFD, \u0000 gives a NUL byte.
 * When map is not NULL, it receives one entry per decoded byte plus one for the end: map[i] is
 * the offset in json where the raw form of the character holding decoded byte i starts (its
 * first byte, or the '\' of its escape, or the first '\' of a surrogate pair); map[decoded len]
 * is the offset of the closing quote. Offsets are absolute (into json), and decoded byte i is
 * out->ptr[old out->len + i]. So decoded bytes [a, b) come from raw json[map[a], map[b]) when a
 * and b are character boundaries. map_cap >= len - 1 is always enough. *map_len (when not NULL)
 * gets the entries written (decoded length + 1).
 * AG_EINVAL: the span is not a valid string token (bad escape, raw control byte or quote, invalid
 * UTF-8, span outside json). AG_ETOOBIG: map_cap too small, or out->max reached. On error out is
 * left as it was and *map_len is not written.
 */
AG_MUSTCHECK int ag_jscan_decode(ag_str_t json, size_t off, size_t len, ag_buf_t *out, size_t *map,
                                 size_t map_cap, size_t *map_len);

/* Escape style of an existing string token, so that replacements look like the text around them:
 *   ASCII: the token writes non-ASCII only as \uXXXX escapes (it has at least one such escape
 *          and no raw byte >= 0x80): non-ASCII is escaped the same way, with surrogate pairs;
 *   SLASH: the token has "\/" and no raw '/': '/' is written "\/";
 *   UPPER: its \u escapes use only upper-case hex letters (A-F), none lower-case. */
enum {
    AG_JSCAN_ESC_ASCII = 1,
    AG_JSCAN_ESC_SLASH = 2,
    AG_JSCAN_ESC_UPPER = 4,
};

/* Style bits of the string token json[off, off+len); 0 for a span that is not one. */
unsigned ag_jscan_str_style(ag_str_t json, size_t off, size_t len);

/* Appends text JSON-escaped without quotes: '"' and '\' get a backslash, \b \f \n \r \t their
 * short escapes, other bytes below 0x20 \u00XX; everything else is raw UTF-8 unless style says
 * otherwise (see above). Each byte of text that is not part of well-formed UTF-8 becomes U+FFFD.
 * AG_ETOOBIG past out->max, leaving out as it was. */
AG_MUSTCHECK int ag_jscan_escape(ag_buf_t *out, ag_str_t text, unsigned style);

/* One change to a decoded string: decoded bytes [start, end) are replaced by text (plain UTF-8,
 * escaped on output). start and end must be UTF-8 character boundaries of the decoded text. */
typedef struct ag_jscan_edit {
    size_t start;
    size_t end;
    ag_str_t text;
} ag_jscan_edit_t;

/* Changes to one token of the body. */
typedef struct ag_jscan_splice {
    size_t off; /* token span in the body (a match's off/len) */
    size_t len;
    const size_t *map; /* ag_jscan_decode's map of this string token, map_len entries;
                        * NULL: replace the whole span [off, off+len) by raw */
    size_t map_len;
    const ag_jscan_edit_t *edits; /* in decoded coordinates, sorted, not overlapping (touching is
                                   * fine); nedits may be 0 */
    size_t nedits;
    ag_str_t raw; /* only when map is NULL: replacement bytes, copied as they are
                   * (e.g. a renumbered "sequence_number") */
} ag_jscan_splice_t;

/*
 * Appends json to out with the changes of sp[0..n) applied, in one pass. sp must be sorted by off
 * with spans that do not overlap. For a string token, each edit replaces raw bytes
 * [map[start], map[end]) with its text escaped in the token's own style (ag_jscan_str_style);
 * every byte outside the replaced spans is copied unchanged, so with no edits out receives json
 * byte for byte. One exception, for invalid UTF-16 only: if a deletion would bring a lone high
 * surrogate escape (\ud800-\udbff, decoded as U+FFFD) right before a lone low one, which would
 * then decode as a pair, the high one is rewritten as \ufffd (same length, same decoded text).
 * The decoded result is always the old decoded text with the edits applied. AG_EINVAL for spans out
 * of order or outside json, maps that do not end at the token's closing quote, edits out of order
 * or range, or an edit boundary inside a character (map[i] == map[i - 1]). AG_ETOOBIG past
 * out->max. On error out is left as it was.
 */
AG_MUSTCHECK int ag_jscan_splice(ag_str_t json, const ag_jscan_splice_t *sp, size_t n,
                                 ag_buf_t *out);

#endif

/* transform.convert: case conversion with ast-grep's word splitting. Case tests and maps go
 * through the C.UTF-8 locale object (thread-safe *_l calls), made once. */
#include "strcase.h"
#include "casefull.h"

#include <locale.h>
#include <pthread.h>
#include <wctype.h>

static locale_t utf8_loc;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
    utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

int ag_case_parse(ag_str_t name)
{
    static const char *const names[] = {"lowerCase", "upperCase", "capitalize", "camelCase",
                                        "snakeCase", "kebabCase", "pascalCase"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (ag_str_eqc(name, names[i]))
            return (int)i;
    return -1;
}

int ag_sep_parse(ag_str_t name)
{
    static const char *const names[] = {"dash",  "dot",        "space",
                                        "slash", "underscore", "caseChange"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (ag_str_eqc(name, names[i]))
            return (int)(1u << i);
    return -1;
}

/* Decodes the character at s[i]; *len gets its byte length. Invalid UTF-8: one byte, -1. */
static int32_t decode(ag_str_t s, size_t i, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s.ptr + i;
    size_t left = s.len - i;
    unsigned n = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    *len = 1;
    if (n == 0 || n > left)
        return -1;
    if (n == 1)
        return p[0];
    int32_t c = p[0] & (0x7F >> n);
    for (unsigned k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return -1;
        c = (c << 6) | (p[k] & 0x3F);
    }
    *len = n;
    return c;
}

static bool is_upper(int32_t c)
{
    if (c < 0)
        return false;
    if (c < 0x80 || utf8_loc == (locale_t)0)
        return c >= 'A' && c <= 'Z';
    return iswupper_l((wint_t)c, utf8_loc);
}

static bool is_lower(int32_t c)
{
    if (c < 0)
        return false;
    if (c < 0x80 || utf8_loc == (locale_t)0)
        return c >= 'a' && c <= 'z';
    return iswlower_l((wint_t)c, utf8_loc);
}

static int put_char(ag_buf_t *out, int32_t c)
{
    char b[4];
    size_t n;
    if (c < 0x80) {
        b[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        b[0] = (char)(0xC0 | (c >> 6));
        b[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        b[0] = (char)(0xE0 | (c >> 12));
        b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (c >> 18));
        b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return ag_buf_append(out, b, n);
}

/* The mapping of c to several characters (U+00DF to "SS"), or NULL: Unicode's full case mapping,
 * as Rust's to_uppercase/to_lowercase apply it for ast-grep. */
static const struct ag_casefull *full_case(int32_t c, int upper)
{
    const struct ag_casefull *t = upper ? AG_UPPER_FULL : AG_LOWER_FULL;
    size_t lo = 0, hi = upper ? sizeof(AG_UPPER_FULL) / sizeof(AG_UPPER_FULL[0])
                              : sizeof(AG_LOWER_FULL) / sizeof(AG_LOWER_FULL[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].cp == (uint32_t)c)
            return &t[mid];
        if (t[mid].cp < (uint32_t)c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Appends s with every character mapped: upper (1), lower (0), or as it is (-1). */
static int map_chars(ag_str_t s, int upper, ag_buf_t *out)
{
    int rc = AG_OK;
    for (size_t i = 0; i < s.len && rc == AG_OK;) {
        size_t n;
        int32_t c = decode(s, i, &n);
        if (c < 0 || upper < 0) {
            rc = ag_buf_append(out, s.ptr + i, n);
        } else {
            int32_t m = c;
            if (c < 0x80 || utf8_loc == (locale_t)0) {
                if (upper && c >= 'a' && c <= 'z')
                    m = c - 32;
                else if (!upper && c >= 'A' && c <= 'Z')
                    m = c + 32;
            } else {
                const struct ag_casefull *f = full_case(c, upper);
                if (f) {
                    rc = ag_buf_append(out, f->utf8, f->len);
                    i += n;
                    continue;
                }
                m = (int32_t)(upper ? towupper_l((wint_t)c, utf8_loc)
                                    : towlower_l((wint_t)c, utf8_loc));
            }
            rc = put_char(out, m);
        }
        i += n;
    }
    return rc;
}

/* First character upper (or lower), the rest as it is. */
static int initial(ag_str_t s, int upper, ag_buf_t *out)
{
    if (s.len == 0)
        return AG_OK;
    size_t n;
    (void)decode(s, 0, &n);
    int rc = map_chars(ag_str(s.ptr, n), upper, out);
    if (rc == AG_OK)
        rc = ag_buf_append(out, s.ptr + n, s.len - n);
    return rc;
}

enum split_state {
    ST_IGNORE, /* caseChange not asked for */
    ST_LOWER,  /* after a lower-case character (or at a word's start) */
    ST_ONE,    /* after one character that is not lower case */
    ST_MULTI,  /* after several: the last one may start the next word */
};

static bool is_sep(int32_t c, unsigned seps)
{
    return (c == '-' && (seps & AG_SEP_DASH)) || (c == '.' && (seps & AG_SEP_DOT)) ||
           (c == ' ' && (seps & AG_SEP_SPACE)) || (c == '/' && (seps & AG_SEP_SLASH)) ||
           (c == '_' && (seps & AG_SEP_UNDERSCORE));
}

/* Words of s, as ast-grep splits them: up to 'max' (start, end) byte pairs; returns the count
 * (words past max are merged into the last one). */
static size_t split_words(ag_str_t s, unsigned seps, size_t (*w)[2], size_t max)
{
    size_t nw = 0, left = 0, last = 0;
    enum split_state st = (seps & AG_SEP_CASE_CHANGE) ? ST_LOWER : ST_IGNORE;
#define EMIT(a, b)                                                                                 \
    do {                                                                                           \
        if ((b) > (a) && nw < max) {                                                               \
            w[nw][0] = (a);                                                                        \
            w[nw][1] = (b);                                                                        \
            nw++;                                                                                  \
        } else if ((b) > (a))                                                                      \
            w[max - 1][1] = (b);                                                                   \
    } while (0)
    for (size_t i = 0; i < s.len;) {
        size_t n;
        int32_t c = decode(s, i, &n);
        if (is_sep(c, seps)) {
            EMIT(left, i);
            left = i + n;
            if (st != ST_IGNORE)
                st = ST_LOWER;
        } else if (st != ST_IGNORE) {
            bool lower = is_lower(c);
            switch (st) {
            case ST_LOWER:
                if (is_upper(c)) {
                    EMIT(left, i);
                    left = i;
                    st = ST_ONE;
                } else if (!lower) {
                    st = ST_ONE; /* a digit or symbol joins the word before */
                }
                break;
            case ST_ONE:
                if (lower)
                    st = ST_LOWER;
                else {
                    st = ST_MULTI;
                    last = i;
                }
                break;
            case ST_MULTI:
                if (lower) {
                    EMIT(left, last); /* HTTPServer: the S starts the next word */
                    left = last;
                    st = ST_LOWER;
                } else
                    last = i;
                break;
            case ST_IGNORE:
                break;
            }
        }
        i += n;
    }
    EMIT(left, s.len);
#undef EMIT
    return nw;
}

int ag_case_convert(ag_str_t in, ag_case_t to, unsigned seps, ag_buf_t *out)
{
    pthread_once(&utf8_once, utf8_init);
    switch (to) {
    case AG_CASE_LOWER:
        return map_chars(in, 0, out);
    case AG_CASE_UPPER:
        return map_chars(in, 1, out);
    case AG_CASE_CAPITALIZE:
        return initial(in, 1, out);
    default:
        break;
    }
    size_t w[256][2];
    size_t nw = split_words(in, seps, w, sizeof(w) / sizeof(w[0]));
    int rc = AG_OK;
    for (size_t k = 0; k < nw && rc == AG_OK; k++) {
        ag_str_t word = ag_str(in.ptr + w[k][0], w[k][1] - w[k][0]);
        if (k > 0 && (to == AG_CASE_SNAKE || to == AG_CASE_KEBAB))
            rc = ag_buf_appendc(out, to == AG_CASE_SNAKE ? '_' : '-');
        if (rc != AG_OK)
            break;
        if (to == AG_CASE_PASCAL || (to == AG_CASE_CAMEL && k > 0))
            rc = initial(word, 1, out);
        else
            rc = map_chars(word, 0, out);
    }
    return rc;
}

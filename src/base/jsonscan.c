/* Raw-JSON locator and splicer. The scanner is an explicit-stack tokenizer that tracks, per open
 * container, which paths can still match below it; everything else is validated and skipped. */
#include "jsonscan.h"

enum { STEP_KEY, STEP_ANYKEY, STEP_INDEX, STEP_ANYINDEX };

#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL

/* ---- UTF-8 and string primitives ---- */

/* Length of the well-formed UTF-8 sequence at p[0..n) (RFC 3629), or 0 if none starts there. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return len;
}

/* Whether any of the 8 bytes in v is '"', '\\', below 0x20 or above 0x7f. Each test is exact for
 * "any byte" even though the borrow may flag bytes above the first hit. */
static inline bool special8(uint64_t v)
{
    uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
    uint64_t hit = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) | v;
    return (hit & HIGH) != 0;
}

/* End of the run starting at i of bytes that stand for themselves in a JSON string (printable
 * ASCII other than '"' and '\\', and well-formed UTF-8 sequences); stops at e or the first other
 * byte. This is where long strings are spent, hence the word-at-a-time skip. */
static size_t plain_run(const char *s, size_t i, size_t e)
{
    const unsigned char *u = (const unsigned char *)s;

    for (;;) {
        while (e - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (special8(v))
                break;
            i += 8;
        }
        while (i < e && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\')
            i++;
        if (i >= e)
            return e;
        if (u[i] < 0x80)
            return i;
        size_t n = utf8_len(u + i, e - i);
        if (n == 0)
            return i;
        i += n;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Value of the 4 hex digits at s[i..i+4) (i + 4 <= e checked by the caller), or -1. */
static long hex4(const char *s, size_t i)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hexval(s[i + k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Raw length of the escape at s[i] == '\\' (2 or 6), or 0 if malformed; nothing past e is read. */
static size_t esc_len(const char *s, size_t i, size_t e)
{
    if (e - i < 2)
        return 0;
    switch (s[i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return 2;
    case 'u':
        return e - i >= 6 && hex4(s, i + 2) >= 0 ? 6 : 0;
    default:
        return 0;
    }
}

/* Whether s[i, e) (s[i] == '\\') is a proper prefix of a valid escape. */
static bool esc_prefix(const char *s, size_t i, size_t e)
{
    if (e - i < 2)
        return true;
    if (s[i + 1] != 'u' || e - i >= 6)
        return false;
    for (size_t k = i + 2; k < e; k++) {
        if (hexval(s[k]) < 0)
            return false;
    }
    return true;
}

static size_t put_utf8(unsigned char *u, unsigned long cp)
{
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (unsigned char)(0xf0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the escape at s[i] == '\\' into u (1-4 bytes, *ulen); returns the raw bytes it takes
 * (2, 6, or 12 for a surrogate pair) or 0 if malformed. A high surrogate counts as a pair only
 * with a low one right after it; otherwise it, and any low one alone, is U+FFFD. */
static size_t esc_decode(const char *s, size_t i, size_t e, unsigned char *u, size_t *ulen)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    size_t n = esc_len(s, i, e);

    if (n == 0)
        return 0;
    if (n == 2) {
        u[0] = (unsigned char)to[strchr(from, s[i + 1]) - from];
        *ulen = 1;
        return 2;
    }
    long cp = hex4(s, i + 2);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        long lo = e - i >= 12 && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s, i + 8) : -1;
        if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            n = 12;
        } else {
            cp = 0xfffd;
        }
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        cp = 0xfffd;
    }
    *ulen = put_utf8(u, (unsigned long)cp);
    return n;
}

/* Whether the raw string contents s[i, e) (already validated) decode to want. */
static bool raw_eq(const char *s, size_t i, size_t e, bool esc, ag_str_t want)
{
    if (!esc)
        return e - i == want.len && (want.len == 0 || memcmp(s + i, want.ptr, want.len) == 0);
    size_t w = 0;
    while (i < e) {
        if (s[i] == '\\') {
            unsigned char u[4];
            size_t ulen = 0, adv = esc_decode(s, i, e, u, &ulen);
            if (adv == 0 || want.len - w < ulen || memcmp(want.ptr + w, u, ulen) != 0)
                return false;
            w += ulen;
            i += adv;
        } else {
            if (w >= want.len || want.ptr[w] != s[i])
                return false;
            w++;
            i++;
        }
    }
    return w == want.len;
}

/* Validates the string token at s[i] == '"': *end = offset after the closing quote, *esc =
 * whether it holds a backslash. On error *bad = offset of the offending byte (len: unterminated).
 */
static int scan_str(const char *s, size_t len, size_t i, size_t *end, bool *esc, size_t *bad)
{
    *esc = false;
    i++;
    for (;;) {
        i = plain_run(s, i, len);
        if (i >= len) {
            *bad = len;
            return AG_EINVAL;
        }
        if (s[i] == '"') {
            *end = i + 1;
            return AG_OK;
        }
        size_t n = s[i] == '\\' ? esc_len(s, i, len) : 0;
        if (n == 0) {
            /* Raw control byte, invalid UTF-8 or bad escape; an escape cut short by the end of
             * the text counts as the text ending early. */
            *bad = s[i] == '\\' && esc_prefix(s, i, len) ? len : i;
            return AG_EINVAL;
        }
        *esc = true;
        i += n;
    }
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Validates the number at s[i]: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_num(const char *s, size_t len, size_t i, size_t *end, size_t *bad)
{
    if (s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && is_digit(s[i])) {
        while (i < len && is_digit(s[i]))
            i++;
    } else {
        goto fail;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !is_digit(s[i]))
            goto fail;
        while (i < len && is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !is_digit(s[i]))
            goto fail;
        while (i < len && is_digit(s[i]))
            i++;
    }
    *end = i;
    return AG_OK;
fail:
    *bad = i;
    return AG_EINVAL;
}

/* ---- path patterns ---- */

/* Copies pattern bytes from *i up to an unescaped byte of stops (or the end) into p->text. */
static int take_text(ag_jscan_path_t *p, ag_str_t pat, size_t *i, const char *stops, uint16_t *off,
                     uint16_t *len)
{
    *off = p->textlen;
    while (*i < pat.len) {
        char c = pat.ptr[*i];
        if (c != '\0' && strchr(stops, c) != NULL)
            break;
        if (c == '\\') {
            if (*i + 1 >= pat.len)
                return AG_EINVAL;
            c = pat.ptr[++*i];
        }
        if (p->textlen >= AG_JSCAN_PATH_TEXT)
            return AG_ETOOBIG;
        p->text[p->textlen++] = c;
        ++*i;
    }
    *len = (uint16_t)(p->textlen - *off);
    return AG_OK;
}

/* Filters at *i, all applying to the value at depth p->nsteps. */
static int take_filters(ag_jscan_path_t *p, ag_str_t pat, size_t *i)
{
    while (*i < pat.len && pat.ptr[*i] == '{') {
        if (p->nfilters == AG_JSCAN_MAX_FILTERS)
            return AG_ETOOBIG;
        uint16_t koff, klen, voff, vlen;
        ++*i;
        int rc = take_text(p, pat, i, "{}=[].", &koff, &klen);
        if (rc != AG_OK)
            return rc;
        if (klen == 0 || *i >= pat.len || pat.ptr[*i] != '=')
            return AG_EINVAL;
        ++*i;
        rc = take_text(p, pat, i, "{}", &voff, &vlen);
        if (rc != AG_OK)
            return rc;
        if (*i >= pat.len || pat.ptr[*i] != '}')
            return AG_EINVAL;
        ++*i;
        p->filter[p->nfilters].depth = p->nsteps;
        p->filter[p->nfilters].koff = koff;
        p->filter[p->nfilters].klen = klen;
        p->filter[p->nfilters].voff = voff;
        p->filter[p->nfilters].vlen = vlen;
        p->nfilters++;
    }
    return AG_OK;
}

int ag_jscan_path_compile(ag_jscan_path_t *out, ag_str_t pat, unsigned types)
{
    ag_jscan_path_t p;
    size_t i = 0;
    int rc;

    if (types & ~(unsigned)AG_JSCAN_ANY)
        return AG_EINVAL;
    memset(&p, 0, sizeof(p));
    p.types = (uint8_t)(types ? types : AG_JSCAN_ANY);
    rc = take_filters(&p, pat, &i);
    if (rc != AG_OK)
        return rc;
    while (i < pat.len) {
        if (p.nsteps == AG_JSCAN_MAX_STEPS)
            return AG_ETOOBIG;
        struct ag_jscan_step *st = &p.step[p.nsteps];
        if (pat.ptr[i] == '[') {
            i++;
            if (i < pat.len && pat.ptr[i] == '*') {
                st->kind = STEP_ANYINDEX;
                i++;
            } else {
                size_t v = 0, start = i;
                for (; i < pat.len && is_digit(pat.ptr[i]); i++) {
                    if (v > (SIZE_MAX - 9) / 10)
                        return AG_EINVAL;
                    v = v * 10 + (size_t)(pat.ptr[i] - '0');
                }
                if (i == start)
                    return AG_EINVAL;
                st->kind = STEP_INDEX;
                st->index = v;
            }
            if (i >= pat.len || pat.ptr[i] != ']')
                return AG_EINVAL;
            i++;
            if (p.narr == AG_JSCAN_MAX_IDX)
                return AG_ETOOBIG;
            st->slot = p.narr++;
        } else {
            if (pat.ptr[i] == '.')
                i++;
            else if (p.nsteps > 0)
                return AG_EINVAL;
            size_t start = i;
            rc = take_text(&p, pat, &i, ".[]{}=", &st->off, &st->len);
            if (rc != AG_OK)
                return rc;
            if (st->len == 0)
                return AG_EINVAL;
            st->kind = i - start == 1 && pat.ptr[start] == '*' ? STEP_ANYKEY : STEP_KEY;
        }
        p.nsteps++;
        rc = take_filters(&p, pat, &i);
        if (rc != AG_OK)
            return rc;
    }
    *out = p;
    return AG_OK;
}

/* ---- the scanner ---- */

typedef struct frame {
    size_t start;     /* offset of the opening bracket */
    size_t cur;       /* arrays: index of the element being read */
    size_t mark;      /* match count before this container's own matches */
    size_t own;       /* this container's own matches: out[mark, mark + own) */
    uint64_t fok;     /* filter bits whose key's last occurrence held the wanted string */
    uint64_t ftarget; /* filter bits whose key is the member being read */
    uint32_t alive;   /* paths that can still match below this container */
    uint32_t fmask;   /* paths with filters on this container */
    bool obj;
} frame_t;

typedef struct scan {
    const char *s;
    size_t len;
    const ag_jscan_path_t *paths;
    ag_jscan_match_t *out;
    size_t cap, n;
    size_t key_off, key_len; /* name of the member being read; key_len 0 in arrays and at root */
    int depth;               /* open containers */
    /* Per value depth d (0..AG_JSCAN_MAX_STEPS): paths ending at d, paths longer than d, paths
     * with a filter at d. Deeper values use 0. */
    uint32_t end_at[AG_JSCAN_MAX_STEPS + 1];
    uint32_t longer[AG_JSCAN_MAX_STEPS + 1];
    uint32_t fpaths[AG_JSCAN_MAX_STEPS + 1];
    frame_t st[AG_JSCAN_MAX_DEPTH];
} scan_t;

static inline uint32_t at_depth(const uint32_t *t, int d)
{
    return d <= AG_JSCAN_MAX_STEPS ? t[d] : 0;
}

/* Filter bit of filter f of path p in frame_t.fok/ftarget. */
static inline uint64_t fbit(int p, int f)
{
    return 1ULL << (p * AG_JSCAN_MAX_FILTERS + f);
}

static int emit(scan_t *sc, uint32_t hits, int type, size_t off, size_t len)
{
    while (hits) {
        int p = __builtin_ctz(hits);
        hits &= hits - 1;
        const ag_jscan_path_t *pa = &sc->paths[p];
        if (!(pa->types & type))
            continue;
        if (sc->n == sc->cap)
            return AG_ETOOBIG;
        ag_jscan_match_t *m = &sc->out[sc->n++];
        memset(m, 0, sizeof(*m));
        m->off = off;
        m->len = len;
        m->path = (uint8_t)p;
        m->type = (uint8_t)type;
        m->nidx = pa->narr;
        for (int i = 0; i < pa->nsteps; i++) {
            if (pa->step[i].kind >= STEP_INDEX)
                m->idx[pa->step[i].slot] = sc->st[i].cur;
        }
        if (pa->nsteps > 0 && pa->step[pa->nsteps - 1].kind <= STEP_ANYKEY) {
            m->key_off = sc->key_off;
            m->key_len = sc->key_len;
        }
    }
    return AG_OK;
}

/* A value of the given type starts at off at depth sc->depth; cand = paths whose steps matched
 * the way down to it. Reports it and, for containers, opens its frame. */
static int value_begin(scan_t *sc, uint32_t cand, int type, size_t off, size_t len)
{
    int d = sc->depth;
    bool container = type == AG_JSCAN_OBJECT || type == AG_JSCAN_ARRAY;

    if (container && d == AG_JSCAN_MAX_DEPTH)
        return AG_EINVAL;
    if (type != AG_JSCAN_OBJECT)
        cand &= ~at_depth(sc->fpaths, d); /* a filter needs an object */
    size_t mark = sc->n;
    if (cand) {
        int rc = emit(sc, cand & at_depth(sc->end_at, d), type, off, len);
        if (rc != AG_OK)
            return rc;
    }
    if (container) {
        frame_t *f = &sc->st[d];
        f->start = off;
        f->cur = 0;
        f->mark = mark;
        f->own = sc->n - mark;
        f->fok = 0;
        f->ftarget = 0;
        f->alive = cand & at_depth(sc->longer, d);
        f->fmask = cand & at_depth(sc->fpaths, d);
        f->obj = type == AG_JSCAN_OBJECT;
        sc->depth++;
    }
    return AG_OK;
}

/* Closes the innermost container, which ends just before end: fills in the length of its own
 * matches and drops the matches of paths whose filters on it failed. */
static void close_frame(scan_t *sc, size_t end)
{
    frame_t *f = &sc->st[--sc->depth];
    uint32_t fail = 0;

    for (size_t i = f->mark; i < f->mark + f->own; i++)
        sc->out[i].len = end - f->start;
    for (uint32_t m = f->fmask; m; m &= m - 1) {
        int p = __builtin_ctz(m);
        const ag_jscan_path_t *pa = &sc->paths[p];
        for (int k = 0; k < pa->nfilters; k++) {
            if (pa->filter[k].depth == sc->depth && !(f->fok & fbit(p, k)))
                fail |= 1u << p;
        }
    }
    if (fail) {
        size_t w = f->mark;
        for (size_t r = f->mark; r < sc->n; r++) {
            if (!(fail & (1u << sc->out[r].path)))
                sc->out[w++] = sc->out[r];
        }
        sc->n = w;
    }
}

/* Reads the member name at *i (after '{' or ',' and whitespace) and the ':' after it; sets *cand
 * to the paths that go on into the member's value and marks the filters keyed by this name. */
static int member(scan_t *sc, size_t *i, uint32_t *cand, size_t *bad)
{
    const char *s = sc->s;
    frame_t *f = &sc->st[sc->depth - 1];
    int d = sc->depth - 1; /* the object's own depth = index of the step that picks the member */
    size_t end;
    bool esc;

    if (*i >= sc->len || s[*i] != '"') {
        *bad = *i;
        return AG_EINVAL;
    }
    int rc = scan_str(s, sc->len, *i, &end, &esc, bad);
    if (rc != AG_OK)
        return rc;
    sc->key_off = *i;
    sc->key_len = end - *i;
    size_t k = skip_ws(s, sc->len, end);
    if (k >= sc->len || s[k] != ':') {
        *bad = k;
        return AG_EINVAL;
    }
    *i = skip_ws(s, sc->len, k + 1);

    uint32_t c = 0;
    size_t klen = end - 2 - sc->key_off; /* raw bytes between the quotes */
    for (uint32_t m = f->alive; m; m &= m - 1) {
        int p = __builtin_ctz(m);
        const ag_jscan_path_t *pa = &sc->paths[p];
        const struct ag_jscan_step *st = &pa->step[d];
        if (st->kind == STEP_ANYKEY) {
            c |= 1u << p;
        } else if (st->kind == STEP_KEY) {
            /* an unescaped name matches only a wanted name of its length */
            if (!esc
                    ? klen == st->len && memcmp(s + sc->key_off + 1, pa->text + st->off, klen) == 0
                    : raw_eq(s, sc->key_off + 1, end - 1, esc, ag_str(pa->text + st->off, st->len)))
                c |= 1u << p;
        }
    }
    *cand = c;
    f->ftarget = 0;
    for (uint32_t m = f->fmask; m; m &= m - 1) {
        int p = __builtin_ctz(m);
        const ag_jscan_path_t *pa = &sc->paths[p];
        for (int q = 0; q < pa->nfilters; q++) {
            if (pa->filter[q].depth == d &&
                raw_eq(s, sc->key_off + 1, end - 1, esc,
                       ag_str(pa->text + pa->filter[q].koff, pa->filter[q].klen)))
                f->ftarget |= fbit(p, q);
        }
    }
    return AG_OK;
}

/* Paths that go on into the current element of the innermost (array) container. */
static uint32_t element(scan_t *sc)
{
    frame_t *f = &sc->st[sc->depth - 1];
    int d = sc->depth - 1;
    uint32_t c = 0;

    sc->key_len = 0;
    for (uint32_t m = f->alive; m; m &= m - 1) {
        int p = __builtin_ctz(m);
        const ag_jscan_path_t *pa = &sc->paths[p];
        if (pa->step[d].kind == STEP_ANYINDEX ||
            (pa->step[d].kind == STEP_INDEX && pa->step[d].index == f->cur))
            c |= 1u << p;
    }
    return c;
}

/* Settles the filters keyed by the member whose value (of the given type) was just read. */
static void settle_filters(scan_t *sc, frame_t *f, int type, size_t off, size_t end, bool esc)
{
    for (uint64_t m = f->ftarget; m; m &= m - 1) {
        int b = __builtin_ctzll(m);
        int p = b / AG_JSCAN_MAX_FILTERS, q = b % AG_JSCAN_MAX_FILTERS;
        const ag_jscan_path_t *pa = &sc->paths[p];
        if (type == AG_JSCAN_STRING &&
            raw_eq(sc->s, off + 1, end - 1, esc,
                   ag_str(pa->text + pa->filter[q].voff, pa->filter[q].vlen)))
            f->fok |= 1ULL << b;
        else
            f->fok &= ~(1ULL << b);
    }
    f->ftarget = 0;
}

/* Validates the literal true/false/null at s[i]. */
static int scan_lit(const char *s, size_t len, size_t i, int *type, size_t *end, size_t *bad)
{
    const char *w = s[i] == 't' ? "true" : s[i] == 'f' ? "false" : s[i] == 'n' ? "null" : "";
    size_t n = strlen(w);

    for (size_t j = 0; j < n || n == 0; j++) {
        if (n == 0 || i + j >= len || s[i + j] != w[j]) {
            *bad = i + j;
            return AG_EINVAL;
        }
    }
    *type = w[0] == 't' ? AG_JSCAN_TRUE : w[0] == 'f' ? AG_JSCAN_FALSE : AG_JSCAN_NULL;
    *end = i + n;
    return AG_OK;
}

/* After a value ending at *i: consumes closing brackets and the next ',' plus member name. Returns
 * AG_OK with *i at the next value and *cand its paths, AG_ENOENT at the end of the text, or
 * AG_EINVAL. */
static int next_value(scan_t *sc, size_t *i, uint32_t *cand, size_t *bad)
{
    const char *s = sc->s;
    size_t len = sc->len;

    for (;;) {
        *i = skip_ws(s, len, *i);
        if (sc->depth == 0) {
            if (*i != len) {
                *bad = *i;
                return AG_EINVAL;
            }
            return AG_ENOENT;
        }
        frame_t *f = &sc->st[sc->depth - 1];
        if (*i < len && s[*i] == ',') {
            *i = skip_ws(s, len, *i + 1);
            if (f->obj)
                return member(sc, i, cand, bad);
            f->cur++;
            *cand = element(sc);
            return AG_OK;
        }
        if (*i >= len || s[*i] != (f->obj ? '}' : ']')) {
            *bad = *i;
            return AG_EINVAL;
        }
        close_frame(sc, ++*i);
    }
}

static int run(scan_t *sc, size_t *bad)
{
    const char *s = sc->s;
    size_t len = sc->len, i = skip_ws(s, len, 0);
    uint32_t cand = sc->end_at[0] | sc->longer[0] | sc->fpaths[0];
    int rc;

    for (;;) {
        /* A value starts at i; cand = the paths that reached it. */
        frame_t *parent = sc->depth > 0 ? &sc->st[sc->depth - 1] : NULL;
        size_t end = i;
        bool esc = false;
        int type = 0;
        if (i >= len) {
            *bad = len;
            return AG_EINVAL;
        }
        char c = s[i];
        if (c == '{' || c == '[') {
            type = c == '{' ? AG_JSCAN_OBJECT : AG_JSCAN_ARRAY;
            if (parent != NULL && parent->ftarget)
                settle_filters(sc, parent, type, i, i, false);
            rc = value_begin(sc, cand, type, i, 0);
            if (rc != AG_OK) {
                *bad = i;
                return rc;
            }
            i = skip_ws(s, len, i + 1);
            if (i < len && s[i] == (c == '{' ? '}' : ']')) {
                close_frame(sc, ++i);
            } else if (c == '[') {
                cand = element(sc);
                continue;
            } else {
                rc = member(sc, &i, &cand, bad);
                if (rc != AG_OK)
                    return rc;
                continue;
            }
        } else {
            if (c == '"') {
                type = AG_JSCAN_STRING;
                rc = scan_str(s, len, i, &end, &esc, bad);
            } else if (c == '-' || is_digit(c)) {
                type = AG_JSCAN_NUMBER;
                rc = scan_num(s, len, i, &end, bad);
            } else {
                rc = scan_lit(s, len, i, &type, &end, bad);
            }
            if (rc != AG_OK)
                return rc;
            if (parent != NULL && parent->ftarget)
                settle_filters(sc, parent, type, i, end, esc);
            if (cand) {
                rc = value_begin(sc, cand, type, i, end - i);
                if (rc != AG_OK)
                    return rc;
            }
            i = end;
        }
        rc = next_value(sc, &i, &cand, bad);
        if (rc == AG_ENOENT)
            return AG_OK;
        if (rc != AG_OK)
            return rc;
    }
}

int ag_jscan_find(ag_str_t json, const ag_jscan_path_t *paths, size_t npaths, ag_jscan_match_t *out,
                  size_t cap, size_t *n, size_t *errpos)
{
    if (json.ptr == NULL)
        json.ptr = ""; /* {NULL, 0}: no arithmetic on NULL */
    scan_t sc;
    size_t bad = 0;

    if (npaths > AG_JSCAN_MAX_PATHS)
        return AG_EINVAL;
    /* Only the fields the scan reads before writing; the frame stack stays uninitialised. */
    sc.s = json.ptr;
    sc.len = json.len;
    sc.paths = paths;
    sc.out = out;
    sc.cap = out != NULL ? cap : 0;
    sc.n = 0;
    sc.key_off = 0;
    sc.key_len = 0;
    sc.depth = 0;
    memset(sc.end_at, 0, sizeof(sc.end_at));
    memset(sc.longer, 0, sizeof(sc.longer));
    memset(sc.fpaths, 0, sizeof(sc.fpaths));
    for (size_t p = 0; p < npaths; p++) {
        const ag_jscan_path_t *pa = &paths[p];
        AG_ASSERT(pa->nsteps <= AG_JSCAN_MAX_STEPS && pa->nfilters <= AG_JSCAN_MAX_FILTERS);
        sc.end_at[pa->nsteps] |= 1u << p;
        for (int d = 0; d < pa->nsteps; d++)
            sc.longer[d] |= 1u << p;
        for (int k = 0; k < pa->nfilters; k++)
            sc.fpaths[pa->filter[k].depth] |= 1u << p;
    }
    int rc = run(&sc, &bad);
    if (rc == AG_OK)
        *n = sc.n;
    else if (rc == AG_EINVAL && errpos != NULL)
        *errpos = bad;
    return rc;
}

bool ag_jscan_str_eq(ag_str_t json, const ag_jscan_match_t *m, ag_str_t want)
{
    if (m->type != AG_JSCAN_STRING || m->len < 2 || m->off > json.len || m->len > json.len - m->off)
        return false;
    return raw_eq(json.ptr, m->off + 1, m->off + m->len - 1, true, want);
}

int ag_jscan_get_u64(ag_str_t json, const ag_jscan_match_t *m, uint64_t *v)
{
    uint64_t x = 0;

    if (m->type != AG_JSCAN_NUMBER || m->len == 0 || m->off > json.len ||
        m->len > json.len - m->off)
        return AG_EINVAL;
    for (size_t i = 0; i < m->len; i++) {
        char c = json.ptr[m->off + i];
        if (!is_digit(c) || x > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
            return AG_EINVAL;
        x = x * 10 + (uint64_t)(c - '0');
    }
    *v = x;
    return AG_OK;
}

/* ---- decoding with an offset map ---- */

static bool is_str_token(ag_str_t json, size_t off, size_t len)
{
    return off <= json.len && len <= json.len - off && len >= 2 && json.ptr[off] == '"' &&
           json.ptr[off + len - 1] == '"';
}

int ag_jscan_decode(ag_str_t json, size_t off, size_t len, ag_buf_t *out, size_t *map,
                    size_t map_cap, size_t *map_len)
{
    const char *s = json.ptr;
    size_t start = out->len, d = 0, i, e;
    int rc = AG_OK;

    if (!is_str_token(json, off, len))
        return AG_EINVAL;
    i = off + 1;
    e = off + len - 1;
    while (i < e) {
        size_t q = plain_run(s, i, e);
        if (q > i) {
            size_t n = q - i;
            if (map != NULL && (map_cap <= d || map_cap - d <= n)) {
                rc = AG_ETOOBIG;
                break;
            }
            rc = ag_buf_append(out, s + i, n);
            if (rc != AG_OK)
                break;
            if (map != NULL) {
                /* Continuation bytes map to the start of their character. */
                for (size_t j = 0; j < n; j++)
                    map[d + j] = (s[i + j] & 0xc0) == 0x80 ? map[d + j - 1] : i + j;
            }
            d += n;
            i = q;
            continue;
        }
        unsigned char u[4];
        size_t ulen = 0, adv = s[i] == '\\' ? esc_decode(s, i, e, u, &ulen) : 0;
        if (adv == 0) {
            rc = AG_EINVAL;
            break;
        }
        if (map != NULL && (map_cap <= d || map_cap - d <= ulen)) {
            rc = AG_ETOOBIG;
            break;
        }
        rc = ag_buf_append(out, u, ulen);
        if (rc != AG_OK)
            break;
        for (size_t j = 0; map != NULL && j < ulen; j++)
            map[d + j] = i;
        d += ulen;
        i += adv;
    }
    if (rc == AG_OK && map != NULL && map_cap <= d)
        rc = AG_ETOOBIG;
    if (rc != AG_OK) {
        out->len = start;
        if (out->ptr != NULL)
            out->ptr[start] = '\0';
        return rc;
    }
    if (map != NULL)
        map[d] = e;
    if (map_len != NULL)
        *map_len = d + 1;
    return AG_OK;
}

/* ---- escaping and splicing ---- */

unsigned ag_jscan_str_style(ag_str_t json, size_t off, size_t len)
{
    const unsigned char *u = (const unsigned char *)json.ptr;
    bool raw_hi = false, esc_hi = false, raw_slash = false, esc_slash = false;
    bool hex_upper = false, hex_lower = false;

    if (!is_str_token(json, off, len))
        return 0;
    for (size_t i = off + 1, e = off + len - 1; i < e; i++) {
        if (u[i] >= 0x80) {
            raw_hi = true;
        } else if (u[i] == '/') {
            raw_slash = true;
        } else if (u[i] == '\\' && i + 1 < e) {
            i++;
            if (u[i] == '/') {
                esc_slash = true;
            } else if (u[i] == 'u' && e - i >= 5) {
                long cp = hex4(json.ptr, i + 1);
                for (int k = 1; k <= 4; k++) {
                    hex_upper |= u[i + k] >= 'A' && u[i + k] <= 'F';
                    hex_lower |= u[i + k] >= 'a' && u[i + k] <= 'f';
                }
                esc_hi |= cp >= 0x80;
                i += 4;
            }
        }
    }
    return (esc_hi && !raw_hi ? AG_JSCAN_ESC_ASCII : 0) |
           (esc_slash && !raw_slash ? AG_JSCAN_ESC_SLASH : 0) |
           (hex_upper && !hex_lower ? AG_JSCAN_ESC_UPPER : 0);
}

static int put_u(ag_buf_t *out, unsigned long v, const char *hex)
{
    char e[6] = {'\\',       'u', hex[(v >> 12) & 15], hex[(v >> 8) & 15], hex[(v >> 4) & 15],
                 hex[v & 15]};
    return ag_buf_append(out, e, 6);
}

int ag_jscan_escape(ag_buf_t *out, ag_str_t text, unsigned style)
{
    const unsigned char *u = (const unsigned char *)text.ptr;
    const char *hex = style & AG_JSCAN_ESC_UPPER ? "0123456789ABCDEF" : "0123456789abcdef";
    bool ascii = style & AG_JSCAN_ESC_ASCII, slash = style & AG_JSCAN_ESC_SLASH;
    size_t start = out->len, run = 0, i = 0;
    int rc = AG_OK;

    /* Bytes that pass through are appended in runs: [run, i). */
    while (rc == AG_OK && i < text.len) {
        unsigned char c = u[i];
        size_t n = 1;
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && !(c == '/' && slash)) {
                i++;
                continue;
            }
        } else {
            n = utf8_len(u + i, text.len - i);
            if (n != 0 && !ascii) {
                i += n;
                continue;
            }
        }
        if (i > run)
            rc = ag_buf_append(out, text.ptr + run, i - run);
        if (rc != AG_OK)
            break;
        if (c < 0x80) {
            static const char shortesc[0x20] = {
                ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
            char e2[2] = {'\\', (char)c};
            if (c < 0x20 && shortesc[c])
                e2[1] = shortesc[c];
            rc = c < 0x20 && !shortesc[c] ? put_u(out, c, hex) : ag_buf_append(out, e2, 2);
        } else if (n == 0) {
            rc = ascii ? put_u(out, 0xfffd, hex) : ag_buf_append(out, "\xef\xbf\xbd", 3);
            n = 1;
        } else {
            unsigned long cp = n == 2 ? u[i] & 0x1fUL : n == 3 ? u[i] & 0x0fUL : u[i] & 0x07UL;
            for (size_t k = 1; k < n; k++)
                cp = (cp << 6) | (u[i + k] & 0x3fUL);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                rc = put_u(out, 0xd800 + (cp >> 10), hex);
                if (rc == AG_OK)
                    rc = put_u(out, 0xdc00 + (cp & 0x3ff), hex);
            } else {
                rc = put_u(out, cp, hex);
            }
        }
        i += n;
        run = i;
    }
    if (rc == AG_OK && i > run)
        rc = ag_buf_append(out, text.ptr + run, i - run);
    if (rc != AG_OK) {
        out->len = start;
        if (out->ptr != NULL)
            out->ptr[start] = '\0';
    }
    return rc;
}

/* Whether decoded offset a starts a character (or is the end) according to map. */
static bool boundary(const size_t *map, size_t a)
{
    return a == 0 || map[a] != map[a - 1];
}

/* Whether json[i, e) starts with a \uXXXX escape of a code unit in [lo, hi]. */
static bool surrogate_at(ag_str_t json, size_t i, size_t e, long lo, long hi)
{
    long v = e >= i && e - i >= 6 && json.ptr[i] == '\\' && json.ptr[i + 1] == 'u'
                 ? hex4(json.ptr, i + 2)
                 : -1;
    return v >= lo && v <= hi;
}

/*
 * Lone surrogate escapes decode to U+FFFD, but two of them meeting in the output (a lone high one
 * left of an edit whose replacement, with any edits right after it, is empty, and a lone low one
 * right of it) would decode as one other character. When that happens the high one, already in
 * out, is rewritten as \ufffd: same length, same decoded text. This is the only byte outside the
 * edits' raw spans that splicing may change.
 */
typedef struct seam {
    size_t raw_end; /* out->len after the last raw copy inside the token */
    size_t hi_at;   /* out offset of a lone high surrogate escape ending that copy; SIZE_MAX none */
} seam_t;

/* Copies json[from, to) to out, part of it inside the string token whose closing quote is at
 * qpos; hi_end: the copy ends with a lone high surrogate escape. */
static int copy_raw(ag_buf_t *out, ag_str_t json, size_t from, size_t to, size_t qpos, bool hi_end,
                    unsigned style, seam_t *sm)
{
    if (from == to)
        return AG_OK;
    if (sm->hi_at != SIZE_MAX && out->len == sm->raw_end &&
        surrogate_at(json, from, qpos, 0xdc00, 0xdfff))
        memcpy(out->ptr + sm->hi_at, style & AG_JSCAN_ESC_UPPER ? "\\uFFFD" : "\\ufffd", 6);
    int rc = ag_buf_append(out, json.ptr + from, to - from);
    if (rc == AG_OK) {
        sm->raw_end = out->len;
        sm->hi_at = hi_end ? out->len - 6 : SIZE_MAX;
    }
    return rc;
}

int ag_jscan_splice(ag_str_t json, const ag_jscan_splice_t *sp, size_t n, ag_buf_t *out)
{
    if (json.ptr == NULL)
        json.ptr = ""; /* {NULL, 0}: no arithmetic on NULL */
    size_t start = out->len, pos = 0, floor = 0;
    int rc = AG_OK;

    for (size_t k = 0; rc == AG_OK && k < n; k++) {
        const ag_jscan_splice_t *x = &sp[k];
        if (x->off < floor || x->off > json.len || x->len > json.len - x->off) {
            rc = AG_EINVAL;
            break;
        }
        floor = x->off + x->len;
        if (x->map == NULL) {
            rc = ag_buf_append(out, json.ptr + pos, x->off - pos);
            if (rc == AG_OK)
                rc = ag_buf_append(out, x->raw.ptr, x->raw.len);
            pos = floor;
            continue;
        }
        size_t qpos = floor - 1; /* closing quote */
        if (x->len < 2 || x->map_len == 0 || x->map[x->map_len - 1] != qpos) {
            rc = AG_EINVAL;
            break;
        }
        unsigned style = x->nedits > 0 ? ag_jscan_str_style(json, x->off, x->len) : 0;
        seam_t sm = {0, SIZE_MAX};
        size_t dprev = 0;
        for (size_t j = 0; rc == AG_OK && j < x->nedits; j++) {
            const ag_jscan_edit_t *ed = &x->edits[j];
            if (ed->start < dprev || ed->end < ed->start || ed->end >= x->map_len ||
                !boundary(x->map, ed->start) || !boundary(x->map, ed->end)) {
                rc = AG_EINVAL;
                break;
            }
            size_t ra = x->map[ed->start], rb = x->map[ed->end];
            if (ra < pos || ra <= x->off || rb < ra || rb > qpos) {
                rc = AG_EINVAL;
                break;
            }
            bool hi_end = ed->start > 0 && x->map[ed->start - 1] + 6 == ra &&
                          surrogate_at(json, ra - 6, ra, 0xd800, 0xdbff);
            rc = copy_raw(out, json, pos, ra, qpos, hi_end, style, &sm);
            if (rc == AG_OK)
                rc = ag_jscan_escape(out, ed->text, style);
            pos = rb;
            dprev = ed->end;
        }
        if (rc == AG_OK && x->nedits > 0) {
            rc = copy_raw(out, json, pos, qpos, qpos, false, style, &sm);
            pos = qpos;
        }
    }
    if (rc == AG_OK)
        rc = ag_buf_append(out, json.ptr + pos, json.len - pos);
    if (rc != AG_OK) {
        out->len = start;
        if (out->ptr != NULL)
            out->ptr[start] = '\0';
    }
    return rc;
}

/* libFuzzer target for jsonscan: the input is a JSON body. A reference parser written here (a
 * recursive one that builds a small tree) decides validity and, evaluating the same paths on the
 * tree, which values match; ag_jscan_find must agree exactly. Then every string found is decoded
 * with its map (checked against json.c's decoder), spliced with no edits (must give the input
 * back) and with edits derived from the input (bytes outside the edited spans unchanged, the
 * result valid JSON whose strings decode to the edited text). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "jsonscan.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_jsonscan: check failed: %s (line %d)\n", #expr, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAXM 4096

/* n bytes of a and b are equal; either may be NULL when n is 0. */
static int eqn(const void *a, const void *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

/* ---- the paths, in pattern form and in a reference form ---- */

enum { R_KEY, R_ANYKEY, R_INDEX, R_ANYINDEX };

typedef struct rstep {
    int kind;
    const char *key; /* R_KEY */
    size_t index;    /* R_INDEX */
} rstep_t;

typedef struct rfilter {
    int depth;
    const char *key, *val;
} rfilter_t;

typedef struct rpath {
    const char *pattern;
    unsigned types;
    int nsteps;
    rstep_t step[6];
    int nfilters;
    rfilter_t filter[3];
} rpath_t;

#define K(k)                                                                                       \
    {                                                                                              \
        R_KEY, k, 0                                                                                \
    }
#define AK                                                                                         \
    {                                                                                              \
        R_ANYKEY, NULL, 0                                                                          \
    }
#define I(n)                                                                                       \
    {                                                                                              \
        R_INDEX, NULL, n                                                                           \
    }
#define AI                                                                                         \
    {                                                                                              \
        R_ANYINDEX, NULL, 0                                                                        \
    }

static const rpath_t rpaths[] = {
    {"", 0, 0, {{0}}, 0, {{0}}},
    {"*", 0, 1, {AK}, 0, {{0}}},
    {"[*]", 0, 1, {AI}, 0, {{0}}},
    {"*.*", AG_JSCAN_STRING, 2, {AK, AK}, 0, {{0}}},
    {"*[*]", AG_JSCAN_STRING, 2, {AK, AI}, 0, {{0}}},
    {"[*].*", AG_JSCAN_STRING | AG_JSCAN_NUMBER, 2, {AI, AK}, 0, {{0}}},
    {"[*][*]", 0, 2, {AI, AI}, 0, {{0}}},
    {"*[*].*", AG_JSCAN_STRING, 3, {AK, AI, AK}, 0, {{0}}},
    {"choices[*].message.content",
     AG_JSCAN_STRING,
     4,
     {K("choices"), AI, K("message"), K("content")},
     0,
     {{0}}},
    {"choices[*].delta.content",
     AG_JSCAN_STRING,
     4,
     {K("choices"), AI, K("delta"), K("content")},
     0,
     {{0}}},
    {"output[*].content[*]{type=output_text}.text",
     AG_JSCAN_STRING,
     5,
     {K("output"), AI, K("content"), AI, K("text")},
     1,
     {{4, "type", "output_text"}}},
    {"content[*]{type=text}.text",
     AG_JSCAN_STRING,
     3,
     {K("content"), AI, K("text")},
     1,
     {{2, "type", "text"}}},
    {"{type=t}delta{type=x}{type=\xc3\xa9}.text",
     AG_JSCAN_STRING,
     2,
     {K("delta"), K("text")},
     3,
     {{0, "type", "t"}, {1, "type", "x"}, {1, "type", "\xc3\xa9"}}},
    {"a\\.b[1]", 0, 2, {K("a.b"), I(1)}, 0, {{0}}},
    {"*.*.*", 0, 3, {AK, AK, AK}, 0, {{0}}},
    {"[*]{type=}{k=\\{\\}}.x[1]", 0, 3, {AI, K("x"), I(1)}, 2, {{1, "type", ""}, {1, "k", "{}"}}},
};
#define NP (sizeof(rpaths) / sizeof(rpaths[0]))

static const rpath_t *const rp = rpaths;
static ag_jscan_path_t paths[NP];

static void init_paths(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (size_t p = 0; p < NP; p++)
        CHECK(ag_jscan_path_compile(&paths[p], ag_cstr(rp[p].pattern), rp[p].types) == AG_OK);
}

/* ---- reference parser: recursive, builds nodes in document order ---- */

typedef struct node {
    size_t off, len;
    size_t key_off, key_len; /* member name token; key_len 0 when the parent is not an object */
    size_t index;            /* position in the parent */
    int parent, depth, type;
} node_t;

static const unsigned char *J;
static size_t L;
static node_t *nodes;
static size_t nn;

static void ws(size_t *i)
{
    while (*i < L && (J[*i] == ' ' || J[*i] == '\t' || J[*i] == '\n' || J[*i] == '\r'))
        ++*i;
}

/* Decodes one UTF-8 character at J[i] by value ranges; 0 if not well-formed. */
static size_t ref_utf8(size_t i)
{
    unsigned c = J[i], need, cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        need = 1, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        need = 2, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        need = 3, cp = c & 0x07;
    else
        return 0;
    if (L - i <= need)
        return 0;
    for (unsigned k = 1; k <= need; k++) {
        if ((J[i + k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (J[i + k] & 0x3f);
    }
    static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need + 1;
}

static int ref_string(size_t *i)
{
    ++*i;
    while (*i < L) {
        unsigned char c = J[*i];
        if (c == '"') {
            ++*i;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (*i + 1 >= L)
                return 0;
            c = J[*i + 1];
            if (c == 'u') {
                if (L - *i < 6)
                    return 0;
                for (int k = 2; k < 6; k++) {
                    if (!strchr("0123456789abcdefABCDEF", J[*i + k]) || J[*i + k] == 0)
                        return 0;
                }
                *i += 6;
            } else if (c && strchr("\"\\/bfnrt", c)) {
                *i += 2;
            } else {
                return 0;
            }
            continue;
        }
        size_t n = ref_utf8(*i);
        if (n == 0)
            return 0;
        *i += n;
    }
    return 0;
}

static int digits(size_t *i)
{
    size_t s = *i;
    while (*i < L && J[*i] >= '0' && J[*i] <= '9')
        ++*i;
    return *i > s;
}

static int ref_value(size_t *i, int parent, int depth, size_t koff, size_t klen, size_t index)
{
    if (*i >= L)
        return 0;
    int me = (int)nn++;
    node_t *nd = &nodes[me];
    nd->off = *i;
    nd->key_off = koff;
    nd->key_len = klen;
    nd->index = index;
    nd->parent = parent;
    nd->depth = depth;
    unsigned char c = J[*i];
    if (c == '{' || c == '[') {
        nd->type = c == '{' ? AG_JSCAN_OBJECT : AG_JSCAN_ARRAY;
        if (depth >= AG_JSCAN_MAX_DEPTH)
            return 0;
        ++*i;
        ws(i);
        size_t k = 0;
        if (*i < L && J[*i] == (c == '{' ? '}' : ']')) {
            ++*i;
        } else {
            for (;;) {
                size_t ko = 0, kl = 0;
                if (c == '{') {
                    if (*i >= L || J[*i] != '"')
                        return 0;
                    ko = *i;
                    if (!ref_string(i))
                        return 0;
                    kl = *i - ko;
                    ws(i);
                    if (*i >= L || J[*i] != ':')
                        return 0;
                    ++*i;
                    ws(i);
                }
                if (!ref_value(i, me, depth + 1, ko, kl, k++))
                    return 0;
                ws(i);
                if (*i < L && J[*i] == ',') {
                    ++*i;
                    ws(i);
                    continue;
                }
                if (*i < L && J[*i] == (c == '{' ? '}' : ']')) {
                    ++*i;
                    break;
                }
                return 0;
            }
        }
    } else if (c == '"') {
        nodes[me].type = AG_JSCAN_STRING;
        if (!ref_string(i))
            return 0;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        nodes[me].type = AG_JSCAN_NUMBER;
        if (J[*i] == '-')
            ++*i;
        if (*i < L && J[*i] == '0')
            ++*i;
        else if (!digits(i))
            return 0;
        if (*i < L && J[*i] == '.') {
            ++*i;
            if (!digits(i))
                return 0;
        }
        if (*i < L && (J[*i] == 'e' || J[*i] == 'E')) {
            ++*i;
            if (*i < L && (J[*i] == '+' || J[*i] == '-'))
                ++*i;
            if (!digits(i))
                return 0;
        }
    } else {
        static const char *w[] = {"true", "false", "null"};
        static const int t[] = {AG_JSCAN_TRUE, AG_JSCAN_FALSE, AG_JSCAN_NULL};
        int ok = 0;
        for (int k = 0; k < 3 && !ok; k++) {
            size_t n = strlen(w[k]);
            if (L - *i >= n && memcmp(J + *i, w[k], n) == 0) {
                nodes[me].type = t[k];
                *i += n;
                ok = 1;
            }
        }
        if (!ok)
            return 0;
    }
    nodes[me].len = *i - nodes[me].off;
    return 1;
}

static int ref_parse(void)
{
    size_t i = 0;
    nn = 0;
    ws(&i);
    if (!ref_value(&i, -1, 0, 0, 0, 0))
        return 0;
    ws(&i);
    return i == L;
}

/* Decoded contents of a string token at J[off, off+len) into b (reset first). */
static void ref_decode(ag_buf_t *b, size_t off, size_t len)
{
    ag_buf_reset(b);
    CHECK(ag_json_decode_str(ag_str((const char *)J + off + 1, len - 2), b) == AG_OK);
}

static int str_is(ag_buf_t *tmp, size_t off, size_t len, const char *want)
{
    ref_decode(tmp, off, len);
    return tmp->len == strlen(want) && eqn(tmp->ptr, want, tmp->len);
}

/* Whether node x (an object) passes filter f: its last member named f->key is the string
 * f->val. */
static int ref_filter(ag_buf_t *tmp, int x, const rfilter_t *f)
{
    if (nodes[x].type != AG_JSCAN_OBJECT)
        return 0;
    int last = -1;
    for (size_t c = (size_t)x + 1; c < nn && nodes[c].off < nodes[x].off + nodes[x].len; c++) {
        if (nodes[c].parent == x && str_is(tmp, nodes[c].key_off, nodes[c].key_len, f->key))
            last = (int)c;
    }
    return last >= 0 && nodes[last].type == AG_JSCAN_STRING &&
           str_is(tmp, nodes[last].off, nodes[last].len, f->val);
}

/* Expected matches in document order (paths in index order per value). */
static size_t ref_match(ag_buf_t *tmp, ag_jscan_match_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t v = 0; v < nn; v++) {
        int anc[AG_JSCAN_MAX_DEPTH + 1];
        int d = nodes[v].depth;
        for (int x = (int)v, k = d; x >= 0; x = nodes[x].parent, k--)
            anc[k] = x;
        for (size_t p = 0; p < NP; p++) {
            const rpath_t *r = &rp[p];
            if (r->nsteps != d || !(paths[p].types & nodes[v].type))
                continue;
            int ok = 1, nidx = 0;
            ag_jscan_match_t mm;
            memset(&mm, 0, sizeof(mm));
            for (int s = 0; s < d && ok; s++) {
                const node_t *c = &nodes[anc[s + 1]];
                int in_obj = nodes[anc[s]].type == AG_JSCAN_OBJECT;
                switch (r->step[s].kind) {
                case R_KEY:
                    ok = in_obj && str_is(tmp, c->key_off, c->key_len, r->step[s].key);
                    break;
                case R_ANYKEY:
                    ok = in_obj;
                    break;
                case R_INDEX:
                    ok = !in_obj && c->index == r->step[s].index;
                    mm.idx[nidx++] = c->index;
                    break;
                default:
                    ok = !in_obj;
                    mm.idx[nidx++] = c->index;
                    break;
                }
            }
            for (int f = 0; f < r->nfilters && ok; f++)
                ok = ref_filter(tmp, anc[r->filter[f].depth], &r->filter[f]);
            if (!ok)
                continue;
            mm.off = nodes[v].off;
            mm.len = nodes[v].len;
            mm.path = (uint8_t)p;
            mm.type = (uint8_t)nodes[v].type;
            mm.nidx = (uint8_t)nidx;
            if (d > 0 && r->step[d - 1].kind <= R_ANYKEY) {
                mm.key_off = nodes[v].key_off;
                mm.key_len = nodes[v].key_len;
            }
            if (n < cap)
                out[n] = mm;
            n++;
        }
    }
    return n;
}

static void same_match(const ag_jscan_match_t *a, const ag_jscan_match_t *b)
{
    CHECK(a->off == b->off);
    CHECK(a->len == b->len);
    CHECK(a->path == b->path);
    CHECK(a->type == b->type);
    CHECK(a->nidx == b->nidx);
    CHECK(a->key_len == b->key_len);
    CHECK(a->key_len == 0 || a->key_off == b->key_off);
    for (int k = 0; k < a->nidx; k++)
        CHECK(a->idx[k] == b->idx[k]);
}

/* ---- edits ---- */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int valid_utf8(const unsigned char *p, size_t n)
{
    const unsigned char *sj = J;
    size_t sl = L;
    int ok = 1;
    J = p;
    L = n;
    for (size_t i = 0; i < n && ok;) {
        size_t k = ref_utf8(i);
        ok = k != 0;
        i += k;
    }
    J = sj;
    L = sl;
    return ok;
}

typedef struct target {
    size_t m;     /* match index */
    ag_buf_t dec; /* decoded contents */
    size_t *map;  /* its map */
    size_t ml;    /* map entries */
    ag_jscan_edit_t ed[3];
    size_t ned;
    ag_buf_t want; /* decoded contents after the edits */
} target_t;

static const char *const repls[] = {
    "",          "x",   "const y = 2;\n", "\"q\\u\"", "\t\x01\x1f", "\xc3\xa9", "\xf0\x9f\x98\x80",
    "</script>", "a/b", "\xe2\x80\xa8",   "\x7f",     "\\",
};

static void pick_edits(target_t *t, const uint8_t *data, size_t size)
{
    size_t dl = t->dec.len, pos = 0;
    const char *d = ag_buf_str(&t->dec).ptr;
    t->ned = 1 + rnd() % 3;
    ag_buf_reset(&t->want);
    for (size_t k = 0; k < t->ned; k++) {
        size_t a = pos + (dl > pos ? rnd() % (dl - pos + 1) : 0);
        size_t b = a + (dl > a ? rnd() % (dl - a + 1) : 0);
        if (rnd() % 3 == 0)
            b = a; /* insertion */
        while (a > 0 && a < dl && (d[a] & 0xc0) == 0x80)
            a--;
        while (b < dl && (d[b] & 0xc0) == 0x80)
            b++;
        if (b < a)
            b = a;
        ag_str_t r = ag_cstr(repls[rnd() % (sizeof(repls) / sizeof(repls[0]))]);
        if (size > 0 && rnd() % 2) {
            size_t o = rnd() % size, n = rnd() % 16;
            if (n > size - o)
                n = size - o;
            if (valid_utf8(data + o, n))
                r = ag_str((const char *)data + o, n);
        }
        t->ed[k] = (ag_jscan_edit_t){a, b, r};
        CHECK(ag_buf_append(&t->want, d + pos, a - pos) == AG_OK);
        CHECK(ag_buf_append(&t->want, r.ptr, r.len) == AG_OK);
        pos = b;
    }
    CHECK(ag_buf_append(&t->want, d + pos, dl - pos) == AG_OK);
}

/* Whether out[0, n) equals in[0, n), except that a lone high surrogate escape of in may read
 * \ufffd in out (the one rewrite ag_jscan_splice allows). */
static int same_bytes(const char *out, const unsigned char *in, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if ((unsigned char)out[k] == in[k])
            continue;
        size_t s = k >= 2 ? k - 2 : 0;
        if (n - s < 6 || memcmp(out + s, "\\u", 2) != 0 || memcmp(in + s, "\\u", 2) != 0 ||
            strncasecmp(out + s + 2, "fffd", 4) != 0 || (in[s + 2] | 0x20) != 'd' ||
            strchr("89abAB", in[s + 3]) == NULL || in[s + 3] == 0)
            return 0;
        k = s + 5;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ag_jscan_match_t m[MAXM], want[MAXM], m2[MAXM];
    ag_buf_t tmp, out, dec;
    target_t tg[2];
    size_t n = 0, errpos = 0, n0 = 0, e0 = 0;
    ag_str_t json = ag_str((const char *)data, size);

    init_paths();
    ag_buf_init(&tmp, 1 << 24);
    ag_buf_init(&out, 1 << 24);
    ag_buf_init(&dec, 1 << 24);
    memset(tg, 0, sizeof(tg));

    int rc = ag_jscan_find(json, paths, NP, m, MAXM, &n, &errpos);
    int rc0 = ag_jscan_find(json, NULL, 0, NULL, 0, &n0, &e0);
    CHECK(rc0 == AG_OK || rc0 == AG_EINVAL);
    J = data;
    L = size;
    nodes = malloc(sizeof(node_t) * (size + 1));
    int valid = ref_parse();
    CHECK(valid == (rc0 == AG_OK));
    if (rc0 == AG_EINVAL) {
        CHECK(e0 <= size);
        CHECK(rc == AG_EINVAL && errpos == e0); /* validation does not depend on the paths */
        goto out;
    }
    CHECK(n0 == 0);
    size_t nw = ref_match(&tmp, want, MAXM);
    if (rc == AG_ETOOBIG) {
        CHECK(nw > MAXM);
        goto out;
    }
    CHECK(rc == AG_OK);
    CHECK(n == nw);
    for (size_t i = 0; i < n; i++)
        same_match(&m[i], &want[i]);

    /* Decode every string with its map; check the map against the raw text. */
    size_t *map = malloc(sizeof(size_t) * (size + 1));
    size_t nstr = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].type != AG_JSCAN_STRING)
            continue;
        nstr++;
        size_t ml = 0;
        ag_buf_reset(&dec);
        CHECK(ag_jscan_decode(json, m[i].off, m[i].len, &dec, map, m[i].len - 1, &ml) == AG_OK);
        CHECK(ml == dec.len + 1);
        ref_decode(&tmp, m[i].off, m[i].len);
        CHECK(tmp.len == dec.len && eqn(tmp.ptr, dec.ptr, dec.len));
        CHECK(map[0] == m[i].off + 1 || dec.len == 0);
        CHECK(map[dec.len] == m[i].off + m[i].len - 1);
        for (size_t k = 0; k < dec.len; k++) {
            int cont = (dec.ptr[k] & 0xc0) == 0x80;
            CHECK(map[k] <= map[k + 1]);
            CHECK(cont == (k > 0 && map[k] == map[k - 1])); /* boundaries agree with UTF-8 */
            if (!cont && data[map[k]] != '\\')
                CHECK(data[map[k]] == (unsigned char)dec.ptr[k]);
        }
        CHECK(ag_jscan_str_eq(json, &m[i], ag_buf_str(&dec)));
    }

    /* No edits (one string through its map, another replaced by its own bytes): the same bytes
     * back. */
    {
        ag_jscan_splice_t none[2];
        size_t k = 0;
        for (size_t i = 0; i < n && k < 2; i++) {
            if (m[i].type != AG_JSCAN_STRING || (k == 1 && m[i].off < none[0].off + none[0].len))
                continue;
            none[k] = (ag_jscan_splice_t){m[i].off,
                                          m[i].len,
                                          NULL,
                                          0,
                                          NULL,
                                          0,
                                          ag_str((const char *)data + m[i].off, m[i].len)};
            if (k == 0) {
                ag_buf_reset(&dec);
                CHECK(ag_jscan_decode(json, m[i].off, m[i].len, &dec, map, m[i].len - 1,
                                      &none[0].map_len) == AG_OK);
                none[0].map = map;
            }
            k++;
        }
        ag_buf_reset(&out);
        CHECK(ag_jscan_splice(json, none, k, &out) == AG_OK);
        CHECK(out.len == size && eqn(out.ptr, data, size));
    }
    free(map);
    if (nstr == 0)
        goto out;

    /* Edit one or two distinct string tokens (never a member named "type" or "k", which the
     * filters read). */
    rng = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < size; i++)
        rng = (rng ^ data[i]) * 0x100000001b3ULL;
    rng |= 1;
    size_t nt = 0;
    for (size_t tries = 0; tries < 8 && nt < 2; tries++) {
        size_t i = rnd() % n;
        if (m[i].type != AG_JSCAN_STRING)
            continue;
        if (m[i].key_len > 0 && (str_is(&tmp, m[i].key_off, m[i].key_len, "type") ||
                                 str_is(&tmp, m[i].key_off, m[i].key_len, "k")))
            continue;
        if (nt == 1 && m[i].off == m[tg[0].m].off)
            continue;
        target_t *t = &tg[nt++];
        t->m = i;
        ag_buf_init(&t->dec, 1 << 24);
        ag_buf_init(&t->want, 1 << 24);
        t->map = malloc(sizeof(size_t) * m[i].len);
        CHECK(ag_jscan_decode(json, m[i].off, m[i].len, &t->dec, t->map, m[i].len - 1, &t->ml) ==
              AG_OK);
        pick_edits(t, data, size);
    }
    if (nt == 0)
        goto out;
    if (nt == 2 && m[tg[1].m].off < m[tg[0].m].off) {
        target_t x = tg[0];
        tg[0] = tg[1];
        tg[1] = x;
    }
    ag_jscan_splice_t sp[2];
    for (size_t k = 0; k < nt; k++) {
        const ag_jscan_match_t *t = &m[tg[k].m];
        sp[k] = (ag_jscan_splice_t){t->off,   t->len,    tg[k].map, tg[k].ml,
                                    tg[k].ed, tg[k].ned, {NULL, 0}};
    }
    ag_buf_reset(&out);
    CHECK(ag_jscan_splice(json, sp, nt, &out) == AG_OK);

    /* Walk input and output together: every byte outside the replaced raw spans is the same, in
     * place, and each replacement is an escaping of its text that decodes back to it and keeps
     * the token's style. */
    {
        size_t ip = 0, op = 0;
        for (size_t k = 0; k < nt; k++) {
            const ag_jscan_match_t *t = &m[tg[k].m];
            unsigned st = ag_jscan_str_style(json, t->off, t->len);
            for (size_t e = 0; e < tg[k].ned; e++) {
                const ag_jscan_edit_t *ed = &tg[k].ed[e];
                size_t ra = tg[k].map[ed->start], rb = tg[k].map[ed->end];
                CHECK(ra >= ip && rb >= ra && ra > t->off && rb < t->off + t->len);
                CHECK(out.len - op >= ra - ip && same_bytes(out.ptr + op, data + ip, ra - ip));
                op += ra - ip;
                ag_buf_reset(&dec);
                CHECK(ag_jscan_escape(&dec, ed->text, st) == AG_OK);
                CHECK(out.len - op >= dec.len && eqn(out.ptr + op, dec.ptr, dec.len));
                op += dec.len;
                ip = rb;
                ag_buf_reset(&tmp);
                CHECK(ag_json_decode_str(ag_buf_str(&dec), &tmp) == AG_OK);
                CHECK(tmp.len == ed->text.len && eqn(tmp.ptr, ed->text.ptr, tmp.len));
                for (size_t q = 0; q < dec.len; q++) {
                    unsigned char c = (unsigned char)dec.ptr[q];
                    CHECK(!(st & AG_JSCAN_ESC_ASCII) || c < 0x80);
                    CHECK(!(st & AG_JSCAN_ESC_SLASH) || c != '/' ||
                          (q > 0 && dec.ptr[q - 1] == '\\'));
                    CHECK(c >= 0x20);
                }
            }
        }
        CHECK(out.len - op == size - ip && same_bytes(out.ptr + op, data + ip, size - ip));
    }

    /* The result is valid, has the same matches, and the edited tokens decode as intended. */
    size_t n2 = 0;
    CHECK(ag_jscan_find(ag_buf_str(&out), paths, NP, m2, MAXM, &n2, NULL) == AG_OK);
    CHECK(n2 == n);
    for (size_t i = 0; i < n; i++) {
        CHECK(m2[i].path == m[i].path && m2[i].type == m[i].type && m2[i].nidx == m[i].nidx);
        for (int k = 0; k < m[i].nidx; k++)
            CHECK(m2[i].idx[k] == m[i].idx[k]);
        if (m[i].type != AG_JSCAN_STRING)
            continue;
        ag_buf_reset(&dec);
        CHECK(ag_jscan_decode(ag_buf_str(&out), m2[i].off, m2[i].len, &dec, NULL, 0, NULL) ==
              AG_OK);
        const target_t *t = NULL;
        for (size_t k = 0; k < nt; k++) {
            if (m[tg[k].m].off == m[i].off)
                t = &tg[k];
        }
        if (t == NULL) {
            ref_decode(&tmp, m[i].off, m[i].len);
            CHECK(dec.len == tmp.len && eqn(dec.ptr, tmp.ptr, dec.len));
            continue;
        }
        CHECK(dec.len == t->want.len && eqn(dec.ptr, t->want.ptr, dec.len));
    }
out:
    for (size_t k = 0; k < 2; k++) {
        ag_buf_dispose(&tg[k].dec);
        ag_buf_dispose(&tg[k].want);
        free(tg[k].map);
    }
    free(nodes);
    ag_buf_dispose(&tmp);
    ag_buf_dispose(&out);
    ag_buf_dispose(&dec);
    return 0;
}

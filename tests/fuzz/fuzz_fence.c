/* libFuzzer target for fence: the input is a reply. Checks, with predicates written here apart
 * from fence.c, that the blocks found are exactly the ones the rules in fence.h define, and that
 * the result is stable under appending "\n", cutting at a line boundary and a smaller max. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fence.h"
#include "lang.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_fence: check failed: %s (line %d)\n", #expr, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A line of t: [s, e) without its line ending; nx = start of the following line. */
typedef struct ln {
    size_t s, e, nx;
} ln_t;

static ln_t line_from(const char *t, size_t len, size_t s)
{
    ln_t l = {s, s, s};

    while (l.e < len && t[l.e] != '\n')
        l.e++;
    l.nx = l.e < len ? l.e + 1 : len;
    if (l.e > s && t[l.e - 1] == '\r')
        l.e--;
    return l;
}

static bool is_line_start(const char *t, size_t len, size_t at)
{
    return at == 0 || (at <= len && t[at - 1] == '\n');
}

/* Fence of a line: fills ch, run and rest (first byte after the run); false when none. */
static bool fence_of(const char *t, ln_t l, char *ch, size_t *run, size_t *rest)
{
    size_t sp = 0;

    while (l.s + sp < l.e && t[l.s + sp] == ' ')
        sp++;
    if (sp > 3 || l.s + sp >= l.e)
        return false;
    *ch = t[l.s + sp];
    if (*ch != '`' && *ch != '~')
        return false;
    size_t k = l.s + sp;
    while (k < l.e && t[k] == *ch)
        k++;
    *run = k - (l.s + sp);
    *rest = k;
    return *run >= 3;
}

static bool opener(const char *t, ln_t l, char *ch, size_t *run, size_t *rest)
{
    if (!fence_of(t, l, ch, run, rest))
        return false;
    for (size_t k = *rest; *ch == '`' && k < l.e; k++) {
        if (t[k] == '`')
            return false;
    }
    return true;
}

static bool closer(const char *t, ln_t l, char ch, size_t min)
{
    char c;
    size_t run, rest;

    if (!fence_of(t, l, &c, &run, &rest) || c != ch || run < min)
        return false;
    for (size_t k = rest; k < l.e; k++) {
        if (t[k] != ' ' && t[k] != '\t')
            return false;
    }
    return true;
}

/* no line starting in [from, to) is an opener */
static void check_no_opener(const char *t, size_t len, size_t from, size_t to)
{
    for (size_t s = from; s < to;) {
        ln_t l = line_from(t, len, s);
        char ch;
        size_t run, rest;
        CHECK(!opener(t, l, &ch, &run, &rest));
        s = l.nx;
    }
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* b is exactly the block opened at b->open_start; returns where scanning resumes after it */
static size_t check_block(const char *t, size_t len, const ag_block_t *b)
{
    char ch;
    size_t run, rest;

    CHECK(b->open_start <= b->start && b->start <= b->end && b->end <= b->close_end &&
          b->close_end <= len);
    CHECK(is_line_start(t, len, b->open_start));
    ln_t ol = line_from(t, len, b->open_start);
    CHECK(opener(t, ol, &ch, &run, &rest));
    CHECK(b->start == ol.nx);

    /* info: the rest of the opener line trimmed of spaces/tabs; lang: up to the first blank */
    size_t is = rest, ie = ol.e;
    while (is < ie && blank(t[is]))
        is++;
    while (ie > is && blank(t[ie - 1]))
        ie--;
    CHECK(b->info.ptr == t + is && b->info.len == ie - is);
    CHECK(b->lang.ptr == b->info.ptr && b->lang.len <= b->info.len);
    for (size_t k = 0; k < b->lang.len; k++)
        CHECK(!blank(b->lang.ptr[k]));
    CHECK(b->lang.len == b->info.len || blank(b->info.ptr[b->lang.len]));

    /* the block ends at the first closer, or runs to the end */
    size_t s = b->start;
    while (s < len) {
        ln_t l = line_from(t, len, s);
        if (closer(t, l, ch, run))
            break;
        s = l.nx;
    }
    if (b->closed) {
        CHECK(s < len);
        ln_t cl = line_from(t, len, s);
        CHECK(b->end == s && b->close_end == cl.e);
        return cl.nx;
    }
    CHECK(s >= len);
    CHECK(b->end == len && b->close_end == len);
    return len;
}

/* independent classification under the default set */
static int expect_class(ag_str_t lang)
{
    static const char *const names[] = {
        "ts", "typescript", "tsx", "js", "javascript", "jsx", "mts", "cts", "mjs", "cjs", ""};
    char low[40];

    if (lang.len >= sizeof(low))
        return -1;
    for (size_t k = 0; k < lang.len; k++) {
        char c = lang.ptr[k];
        low[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    low[lang.len] = 0;
    if (memchr(low, 0, lang.len) != NULL)
        return -1;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (strcmp(low, names[k]) == 0)
            return strcmp(low, "tsx") == 0 || strcmp(low, "jsx") == 0 ? AG_LANG_TSX : AG_LANG_TS;
    }
    return -1;
}

static bool same_block(const ag_block_t *a, const ag_block_t *b)
{
    return a->start == b->start && a->end == b->end && a->open_start == b->open_start &&
           a->close_end == b->close_end && a->closed == b->closed && a->info.ptr == b->info.ptr &&
           a->info.len == b->info.len && a->lang.ptr == b->lang.ptr && a->lang.len == b->lang.len;
}

/* same block, views compared by offset (a from ta, b from tb) */
static bool same_offsets(const char *ta, const ag_block_t *a, const char *tb, const ag_block_t *b)
{
    return a->open_start == b->open_start && a->closed == b->closed &&
           a->info.ptr - ta == b->info.ptr - tb && a->info.len == b->info.len &&
           a->lang.len == b->lang.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    size_t len = size;
    uint32_t cap = (uint32_t)(len / 3 + 1); /* an opener line takes 3+ bytes */
    ag_block_t *b = calloc(cap, sizeof(*b));
    ag_block_t *b2 = calloc(cap + 1, sizeof(*b2));
    char *t2 = malloc(len + 1);
    uint32_t n = 0, n2 = 0;
    ag_fence_langs_t def, empty, unlabeled;

    CHECK(b && b2 && t2);
    CHECK(ag_fence_find(ag_str(t, len), b, cap, &n) == AG_OK);
    CHECK(ag_fence_any(ag_str(t, len)) == (n > 0));

    /* the blocks are exactly those the rules define: no opener in the gaps, each block right */
    size_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        CHECK(b[i].open_start >= at);
        check_no_opener(t, len, at, b[i].open_start);
        at = check_block(t, len, &b[i]);
        CHECK(b[i].closed || i == n - 1);
    }
    check_no_opener(t, len, at, len);

    /* ag_fence_next walks the same blocks */
    uint32_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        ag_block_t x;
        CHECK(ag_fence_next(ag_str(t, len), &pos, &x) == AG_OK);
        CHECK(same_block(&x, &b[i]));
    }
    {
        ag_block_t x;
        CHECK(ag_fence_next(ag_str(t, len), &pos, &x) == AG_ENOENT);
    }

    /* a smaller max: the first max blocks and AG_ETOOBIG */
    if (n > 0) {
        uint32_t m = n / 2;
        CHECK(ag_fence_find(ag_str(t, len), b2, m, &n2) == AG_ETOOBIG);
        CHECK(n2 == m);
        for (uint32_t i = 0; i < m; i++)
            CHECK(same_block(&b2[i], &b[i]));
    }

    /* classification */
    ag_fence_langs_default(&def);
    ag_fence_langs_clear(&empty);
    ag_fence_langs_clear(&unlabeled);
    CHECK(ag_fence_langs_add(&unlabeled, AG_STR_LIT("")) == AG_OK);
    for (uint32_t i = 0; i < n; i++) {
        CHECK(ag_fence_classify(&b[i], &def) == expect_class(b[i].lang));
        CHECK(ag_fence_classify(&b[i], &empty) == -1);
        CHECK(ag_fence_classify(&b[i], &unlabeled) == (b[i].lang.len == 0 ? AG_LANG_TS : -1));
    }

    /* appending "\n" changes only what the unterminated last line and the end of text touch */
    memcpy(t2, t, len);
    t2[len] = '\n';
    CHECK(ag_fence_find(ag_str(t2, len + 1), b2, cap + 1, &n2) == AG_OK);
    CHECK(n2 == n);
    for (uint32_t i = 0; i < n; i++) {
        CHECK(same_offsets(t, &b[i], t2, &b2[i]));
        if (b[i].closed) {
            CHECK(b2[i].start == b[i].start && b2[i].end == b[i].end &&
                  b2[i].close_end == b[i].close_end);
            continue;
        }
        bool open_last = b[i].start == len && t[len - 1] != '\n';
        CHECK(b2[i].start == (open_last ? len + 1 : b[i].start));
        CHECK(b2[i].end == len + 1 && b2[i].close_end == len + 1);
    }

    /* a prefix cut at a line boundary k: blocks opened before k, those not closed before k now
     * unclosed at k (what a stream sees so far) */
    size_t lines = 0;
    for (size_t k = 0; k < len; k++)
        lines += t[k] == '\n';
    size_t step = lines / 16 + 1, li = 0;
    for (size_t k = 1; k <= len; k++) {
        if (t[k - 1] != '\n' || li++ % step != 0)
            continue;
        CHECK(ag_fence_find(ag_str(t, k), b2, cap, &n2) == AG_OK);
        uint32_t want = 0;
        while (want < n && b[want].open_start < k)
            want++;
        CHECK(n2 == want);
        for (uint32_t i = 0; i < n2; i++) {
            bool closes_before = b[i].closed && b[i].close_end < k;
            if (closes_before) {
                CHECK(same_block(&b2[i], &b[i]));
            } else {
                CHECK(!b2[i].closed && b2[i].open_start == b[i].open_start &&
                      b2[i].start == b[i].start && b2[i].end == k && b2[i].close_end == k &&
                      b2[i].info.ptr == b[i].info.ptr && b2[i].info.len == b[i].info.len);
            }
        }
    }

    free(b);
    free(b2);
    free(t2);
    return 0;
}

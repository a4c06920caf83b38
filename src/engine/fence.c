/* Finds fenced code blocks in a reply: one pass over the lines (memchr for LF), no allocation. */
#include "fence.h"

#include "lang.h"

/* One line: [start, end) without its line ending; next is where the following line starts (the
 * text length for the last line). */
typedef struct line {
    uint32_t start, end, next;
} line_t;

/* A fence run on a line: 0-3 spaces, then 3+ of ch. */
typedef struct run {
    char ch;      /* '`' or '~' */
    uint32_t at;  /* offset of the first fence character */
    uint32_t len; /* run length, >= 3 */
} run_t;

static line_t line_at(const char *p, uint32_t len, uint32_t pos)
{
    const char *nl = memchr(p + pos, '\n', len - pos);
    line_t l;

    l.start = pos;
    l.end = nl ? (uint32_t)(nl - p) : len;
    l.next = nl ? l.end + 1 : len;
    /* CR before LF, or as the text's last byte, is part of the line ending */
    if (l.end > l.start && p[l.end - 1] == '\r')
        l.end--;
    return l;
}

static bool fence_run(const char *p, line_t l, run_t *r)
{
    uint32_t i = l.start;

    /* a tab in the indent makes it 4+ columns, so only spaces are allowed */
    while (i < l.end && p[i] == ' ' && i - l.start < 4)
        i++;
    if (i == l.end || i - l.start > 3 || (p[i] != '`' && p[i] != '~'))
        return false;
    r->ch = p[i];
    r->at = i;
    while (i < l.end && p[i] == r->ch)
        i++;
    r->len = i - r->at;
    return r->len >= 3;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_closer(const char *p, line_t l, const run_t *open)
{
    run_t r;

    if (!fence_run(p, l, &r) || r.ch != open->ch || r.len < open->len)
        return false;
    for (uint32_t i = r.at + r.len; i < l.end; i++) {
        if (!is_blank(p[i]))
            return false;
    }
    return true;
}

/* Moves *pos line by line to the next opening fence line; fills *l, *r and info. */
static bool next_opener(const char *p, uint32_t len, uint32_t *pos, line_t *l, run_t *r,
                        ag_str_t *info)
{
    for (uint32_t i = *pos; i < len;) {
        line_t cur = line_at(p, len, i);

        i = cur.next;
        if (!fence_run(p, cur, r))
            continue;
        uint32_t s = r->at + r->len, e = cur.end;
        while (s < e && is_blank(p[s]))
            s++;
        while (e > s && is_blank(p[e - 1]))
            e--;
        if (r->ch == '`' && memchr(p + s, '`', e - s) != NULL)
            continue;
        *info = ag_str(p + s, e - s);
        *l = cur;
        *pos = i;
        return true;
    }
    return false;
}

int ag_fence_next(ag_str_t text, uint32_t *pos, ag_block_t *b)
{
    if (text.len > UINT32_MAX)
        return AG_ETOOBIG;

    const char *p = text.ptr;
    uint32_t len = (uint32_t)text.len;
    uint32_t i = *pos;
    line_t open;
    run_t r;
    ag_str_t info;

    if (!next_opener(p, len, &i, &open, &r, &info))
        return AG_ENOENT;

    size_t w = 0;
    while (w < info.len && !is_blank(info.ptr[w]))
        w++;
    b->open_start = open.start;
    b->start = open.next;
    b->info = info;
    b->lang = ag_str(info.ptr, w);
    while (i < len) {
        line_t cur = line_at(p, len, i);

        if (is_closer(p, cur, &r)) {
            b->end = cur.start;
            b->close_end = cur.end;
            b->closed = true;
            *pos = cur.next;
            return AG_OK;
        }
        i = cur.next;
    }
    b->end = b->close_end = len;
    b->closed = false;
    *pos = len;
    return AG_OK;
}

int ag_fence_find(ag_str_t text, ag_block_t *out, uint32_t max, uint32_t *n)
{
    uint32_t pos = 0, k = 0;
    ag_block_t extra;
    int rc;

    for (;;) {
        rc = ag_fence_next(text, &pos, k < max ? &out[k] : &extra);
        if (rc != AG_OK)
            break;
        if (k == max) {
            rc = AG_ETOOBIG;
            break;
        }
        k++;
    }
    if (rc == AG_ENOENT)
        rc = AG_OK;
    *n = k;
    return rc;
}

bool ag_fence_any(ag_str_t text)
{
    uint32_t pos = 0;
    line_t l;
    run_t r;
    ag_str_t info;

    return text.len <= UINT32_MAX && next_opener(text.ptr, (uint32_t)text.len, &pos, &l, &r, &info);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* a is any case, b lower-case */
static bool eq_nocase(ag_str_t a, const char *b, size_t blen)
{
    if (a.len != blen)
        return false;
    for (size_t i = 0; i < blen; i++) {
        if (lower(a.ptr[i]) != b[i])
            return false;
    }
    return true;
}

void ag_fence_langs_clear(ag_fence_langs_t *l)
{
    l->n = 0;
}

int ag_fence_langs_add(ag_fence_langs_t *l, ag_str_t name)
{
    if (name.len > AG_FENCE_LANG_MAX_LEN)
        return AG_ETOOBIG;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (is_blank(c) || c == '\r' || c == '\n')
            return AG_EINVAL;
    }
    for (uint32_t i = 0; i < l->n; i++) {
        if (eq_nocase(name, l->name[i], l->len[i]))
            return AG_OK;
    }
    if (l->n == AG_FENCE_LANGS_MAX)
        return AG_ETOOBIG;
    for (size_t i = 0; i < name.len; i++)
        l->name[l->n][i] = lower(name.ptr[i]);
    l->len[l->n] = (uint8_t)name.len;
    l->n++;
    return AG_OK;
}

void ag_fence_langs_default(ag_fence_langs_t *l)
{
    static const char *const names[] = {
        "ts", "typescript", "tsx", "js", "javascript", "jsx", "mts", "cts", "mjs", "cjs", ""};

    ag_fence_langs_clear(l);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int rc = ag_fence_langs_add(l, ag_cstr(names[i]));
        AG_ASSERT(rc == AG_OK);
    }
}

int ag_fence_classify(const ag_block_t *b, const ag_fence_langs_t *l)
{
    for (uint32_t i = 0; i < l->n; i++) {
        if (eq_nocase(b->lang, l->name[i], l->len[i])) {
            bool tsx = eq_nocase(b->lang, "tsx", 3) || eq_nocase(b->lang, "jsx", 3);
            return tsx ? AG_LANG_TSX : AG_LANG_TS;
        }
    }
    return -1;
}

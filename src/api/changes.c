/* Changes to one JSON text, applied in one splice (see changes.h). */
#include "changes.h"

void ag_changes_init(ag_changes_t *s)
{
    memset(s, 0, sizeof(*s));
    ag_buf_init(&s->texts, 256u << 20);
    ag_buf_init(&s->dec, 64u << 20);
}

void ag_changes_reset(ag_changes_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->c[i].map);
    s->n = 0;
    s->ne = 0;
    ag_buf_reset(&s->texts);
}

void ag_changes_dispose(ag_changes_t *s)
{
    ag_changes_reset(s);
    free(s->c);
    free(s->e);
    free(s->sp);
    ag_buf_dispose(&s->texts);
    ag_buf_dispose(&s->dec);
}

ag_change_t *ag_changes_add(ag_changes_t *s, size_t off, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->c = ag_xrealloc(s->c, s->cap * sizeof(*s->c));
    }
    ag_change_t *c = &s->c[s->n++];
    memset(c, 0, sizeof(*c));
    c->off = off;
    c->len = len;
    c->first = s->ne;
    return c;
}

int ag_changes_edit(ag_changes_t *s, ag_change_t *c, size_t start, size_t end, ag_str_t text)
{
    if (s->ne == s->ecap) {
        s->ecap = s->ecap ? s->ecap * 2 : 8;
        s->e = ag_xrealloc(s->e, s->ecap * sizeof(*s->e));
    }
    size_t at = s->texts.len;
    int rc = ag_buf_append(&s->texts, text.ptr, text.len);
    if (rc != AG_OK)
        return rc;
    s->e[s->ne].start = start;
    s->e[s->ne].end = end;
    s->e[s->ne].text = ag_str((const char *)(uintptr_t)at, text.len);
    s->ne++;
    c->nedits++;
    return AG_OK;
}

/* Decodes the string token m into s->dec with its offset map (owned by the caller). */
static int decode_mapped(ag_changes_t *s, ag_str_t json, const ag_jscan_match_t *m, size_t **map,
                         size_t *map_len)
{
    ag_buf_reset(&s->dec);
    *map = ag_xmalloc((m->len + 1) * sizeof(**map));
    int rc = ag_jscan_decode(json, m->off, m->len, &s->dec, *map, m->len + 1, map_len);
    if (rc != AG_OK) {
        free(*map);
        *map = NULL;
    }
    return rc;
}

static bool utf8_cont(ag_str_t s, size_t i)
{
    return i < s.len && ((unsigned char)s.ptr[i] & 0xc0) == 0x80;
}

/* The string token m gets the decoded contents text: one edit over the span that differs, so the
 * common head and tail keep their bytes (and escapes). Nothing when text is what it holds. */
int ag_changes_text(ag_changes_t *s, ag_str_t json, const ag_jscan_match_t *m, ag_str_t text)
{
    size_t *map = NULL, map_len = 0;
    int rc = decode_mapped(s, json, m, &map, &map_len);
    if (rc != AG_OK)
        return rc;
    ag_str_t old = ag_buf_str(&s->dec);
    if (ag_str_eq(old, text)) {
        free(map);
        return AG_OK;
    }
    size_t lim = old.len < text.len ? old.len : text.len;
    size_t p = 0;
    while (p < lim && old.ptr[p] == text.ptr[p])
        p++;
    while (p > 0 && utf8_cont(old, p))
        p--;
    size_t q = 0; /* common tail, not overlapping the head */
    while (q < lim - p && old.ptr[old.len - 1 - q] == text.ptr[text.len - 1 - q])
        q++;
    while (q > 0 && utf8_cont(old, old.len - q))
        q--;
    ag_change_t *c = ag_changes_add(s, m->off, m->len);
    c->map = map;
    c->map_len = map_len;
    return ag_changes_edit(s, c, p, old.len - q, ag_str(text.ptr + p, text.len - q - p));
}

/* Raw replacement of a token (a renumbered sequence_number). */
int ag_changes_raw(ag_changes_t *s, const ag_jscan_match_t *m, ag_str_t raw)
{
    size_t at = s->texts.len;
    int rc = ag_buf_append(&s->texts, raw.ptr, raw.len);
    if (rc != AG_OK)
        return rc;
    ag_change_t *c = ag_changes_add(s, m->off, m->len);
    c->raw_off = at;
    c->raw_len = raw.len;
    return AG_OK;
}

/* The engine's applied edits to the string token m (decoded coordinates). When they do not fit
 * the token (out of order, inside a character), one edit from the rewritten text instead. */
int ag_changes_result(ag_changes_t *s, ag_str_t json, const ag_jscan_match_t *m,
                      const ag_result_t *res, ag_str_t rewritten)
{
    size_t *map = NULL, map_len = 0;
    int rc = decode_mapped(s, json, m, &map, &map_len);
    if (rc != AG_OK)
        return rc;
    ag_str_t old = ag_buf_str(&s->dec);
    size_t prev = 0, napplied = 0;
    bool fits = true;
    for (uint32_t k = 0; k < res->nevents && fits; k++) {
        const ag_event_t *ev = &res->events[k];
        if (ev->action != AG_ACTION_REWRITE || !ev->applied)
            continue;
        size_t st = ev->offset, en = ev->offset + ev->before.len;
        fits = st >= prev && en <= old.len && !utf8_cont(old, st) && !utf8_cont(old, en) &&
               (ev->before.len == 0 || memcmp(old.ptr + st, ev->before.ptr, ev->before.len) == 0);
        prev = en;
        napplied++;
    }
    if (!fits) {
        free(map);
        return ag_changes_text(s, json, m, rewritten);
    }
    if (napplied == 0) {
        free(map);
        return AG_OK;
    }
    ag_change_t *c = ag_changes_add(s, m->off, m->len);
    c->map = map;
    c->map_len = map_len;
    for (uint32_t k = 0; k < res->nevents && rc == AG_OK; k++) {
        const ag_event_t *ev = &res->events[k];
        if (ev->action == AG_ACTION_REWRITE && ev->applied)
            rc = ag_changes_edit(s, c, ev->offset, ev->offset + ev->before.len, ev->after);
    }
    return rc;
}

/* Appends json with every change applied. */
int ag_changes_apply(ag_changes_t *s, ag_str_t json, ag_buf_t *out)
{
    /* by position (few changes: insertion sort) */
    for (size_t i = 1; i < s->n; i++) {
        ag_change_t t = s->c[i];
        size_t j = i;
        for (; j > 0 && s->c[j - 1].off > t.off; j--)
            s->c[j] = s->c[j - 1];
        s->c[j] = t;
    }
    if (s->spcap < s->n) {
        s->spcap = s->n;
        s->sp = ag_xrealloc(s->sp, s->spcap * sizeof(*s->sp));
    }
    const char *base = ag_buf_str(&s->texts).ptr;
    for (size_t i = 0; i < s->ne; i++)
        s->e[i].text.ptr = base + (uintptr_t)s->e[i].text.ptr;
    for (size_t i = 0; i < s->n; i++) {
        const ag_change_t *c = &s->c[i];
        ag_jscan_splice_t *sp = &s->sp[i];
        memset(sp, 0, sizeof(*sp));
        sp->off = c->off;
        sp->len = c->len;
        sp->map = c->map;
        sp->map_len = c->map_len;
        sp->edits = c->map ? s->e + c->first : NULL;
        sp->nedits = c->map ? c->nedits : 0;
        if (!c->map)
            sp->raw = ag_str(base + c->raw_off, c->raw_len);
    }
    int rc = ag_jscan_splice(json, s->sp, s->n, out);
    for (size_t i = 0; i < s->ne; i++) /* back to offsets: the set may be applied again */
        s->e[i].text.ptr = (const char *)(uintptr_t)(s->e[i].text.ptr - base);
    return rc;
}

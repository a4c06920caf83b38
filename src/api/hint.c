/* Request-side hints: one validating scan of the request body finds the system slot, then the
 * body is copied with one insertion (or a null replaced), never re-serialised. */
#include "hint.h"

#include "jsonscan.h"

#define MAX_MATCHES 130 /* the root, `messages`, and up to 128 system/developer contents */

const char *ag_hint_slot_name(ag_hint_slot_t s)
{
    switch (s) {
    case AG_HINT_SLOT_APPEND_STR:
        return "append";
    case AG_HINT_SLOT_APPEND_PART:
        return "part";
    case AG_HINT_SLOT_NEW_MESSAGE:
        return "message";
    case AG_HINT_SLOT_NEW_KEY:
        return "key";
    case AG_HINT_SLOT_REPLACE_NULL:
        return "null";
    case AG_HINT_SLOT_NONE:
        break;
    }
    return "none";
}

typedef struct scan {
    ag_jscan_match_t m[MAX_MATCHES];
    size_t n;
} scan_t;

static int scan(ag_str_t body, const char *const *pats, size_t np, scan_t *s)
{
    ag_jscan_path_t paths[4];
    AG_ASSERT(np <= 4);
    for (size_t i = 0; i < np; i++)
        AG_ASSERT(ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]), 0) == AG_OK);
    if (ag_jscan_find(body, paths, np, s->m, MAX_MATCHES, &s->n, NULL) != AG_OK)
        return AG_ENOENT; /* not JSON, or too many system messages: left alone */
    return AG_OK;
}

/* The only match of path p (NULL when none); *dup set when there are several. */
static const ag_jscan_match_t *only(const scan_t *s, uint8_t p, bool *dup)
{
    const ag_jscan_match_t *r = NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (s->m[i].path != p)
            continue;
        if (r)
            *dup = true;
        r = &s->m[i];
    }
    return r;
}

/* Whether the array or object token at m holds anything. */
static bool nonempty(ag_str_t body, const ag_jscan_match_t *m)
{
    for (size_t i = m->off + 1; i + 1 < m->off + m->len; i++)
        if (body.ptr[i] != ' ' && body.ptr[i] != '\t' && body.ptr[i] != '\n' && body.ptr[i] != '\r')
            return true;
    return false;
}

/* What goes in: pre, then hint JSON-escaped (after sep, escaped the same way), then post. */
typedef ag_hint_place_t piece_t;

static int emit(ag_str_t body, ag_str_t hint, const piece_t *p, ag_buf_t *out)
{
    size_t old = out->len;
    int rc = ag_buf_append(out, body.ptr, p->at);
    if (rc == AG_OK)
        rc = ag_buf_append(out, p->pre, strlen(p->pre));
    if (rc == AG_OK)
        rc = ag_jscan_escape(out, ag_cstr(p->sep), p->style);
    if (rc == AG_OK)
        rc = ag_jscan_escape(out, hint, p->style);
    if (rc == AG_OK)
        rc = ag_buf_append(out, p->post, strlen(p->post));
    if (rc == AG_OK)
        rc = ag_buf_append(out, body.ptr + p->at + p->cut, body.len - p->at - p->cut);
    if (rc != AG_OK) {
        out->len = old;
        if (out->ptr)
            out->ptr[old] = '\0';
    }
    return rc;
}

/* An existing slot value m: a string gets "\n\n" + hint before its closing quote, an array a text
 * part before its closing bracket, null (when allowed) becomes the hint. */
static int into_value(ag_str_t body, const ag_jscan_match_t *m, bool null_ok, piece_t *p,
                      ag_hint_slot_t *slot)
{
    memset(p, 0, sizeof(*p));
    p->pre = p->sep = p->post = "";
    if (m->type == AG_JSCAN_STRING) {
        p->at = m->off + m->len - 1;
        p->sep = "\n\n";
        p->style = ag_jscan_str_style(body, m->off, m->len);
        *slot = AG_HINT_SLOT_APPEND_STR;
        return AG_OK;
    }
    if (m->type == AG_JSCAN_ARRAY) {
        p->at = m->off + m->len - 1;
        p->pre = nonempty(body, m) ? ",{\"type\":\"text\",\"text\":\""
                                   : "{\"type\":\"text\",\"text\":\"";
        p->post = "\"}";
        *slot = AG_HINT_SLOT_APPEND_PART;
        return AG_OK;
    }
    if (m->type == AG_JSCAN_NULL && null_ok) {
        p->at = m->off;
        p->cut = m->len;
        p->pre = "\"";
        p->post = "\"";
        *slot = AG_HINT_SLOT_REPLACE_NULL;
        return AG_OK;
    }
    return AG_ENOENT;
}

static int chat(ag_str_t body, scan_t *s, piece_t *p, ag_hint_slot_t *slot)
{
    static const char *const pats[] = {"", "messages", "messages[*]{role=system}.content",
                                       "messages[*]{role=developer}.content"};
    if (scan(body, pats, 4, s) != AG_OK)
        return AG_ENOENT;
    bool dup = false;
    const ag_jscan_match_t *root = only(s, 0, &dup);
    const ag_jscan_match_t *msgs = only(s, 1, &dup);
    if (root == NULL || root->type != AG_JSCAN_OBJECT || msgs == NULL || dup ||
        msgs->type != AG_JSCAN_ARRAY)
        return AG_ENOENT;
    /* the first system/developer message; a content given twice in it: the last counts */
    const ag_jscan_match_t *c = NULL;
    for (size_t i = 0; i < s->n; i++) {
        const ag_jscan_match_t *m = &s->m[i];
        if (m->path >= 2 && (c == NULL || m->idx[0] <= c->idx[0]))
            c = m;
    }
    if (c)
        return into_value(body, c, false, p, slot);
    memset(p, 0, sizeof(*p));
    p->at = msgs->off + 1;
    p->pre = "{\"role\":\"system\",\"content\":\"";
    p->sep = "";
    p->post = nonempty(body, msgs) ? "\"}," : "\"}";
    *slot = AG_HINT_SLOT_NEW_MESSAGE;
    return AG_OK;
}

/* Responses (`instructions`) and Anthropic (`system`): one top-level key. */
static int keyed(ag_hint_api_t api, ag_str_t body, scan_t *s, piece_t *p, ag_hint_slot_t *slot)
{
    static const char *const rpats[] = {"", "instructions", "input", "model"};
    static const char *const apats[] = {"", "system", "messages"};
    bool resp = api == AG_HINT_RESPONSES;
    if (scan(body, resp ? rpats : apats, resp ? 4 : 3, s) != AG_OK)
        return AG_ENOENT;
    bool dup = false, dup_shape = false;
    const ag_jscan_match_t *root = only(s, 0, &dup);
    const ag_jscan_match_t *slotv = only(s, 1, &dup);
    bool shaped;
    if (resp) {
        shaped = only(s, 2, &dup_shape) != NULL || only(s, 3, &dup_shape) != NULL;
    } else {
        const ag_jscan_match_t *msgs = only(s, 2, &dup);
        shaped = msgs != NULL && msgs->type == AG_JSCAN_ARRAY;
    }
    if (root == NULL || root->type != AG_JSCAN_OBJECT || !shaped || dup)
        return AG_ENOENT;
    if (slotv)
        return into_value(body, slotv, true, p, slot);
    memset(p, 0, sizeof(*p));
    p->at = root->off + 1;
    p->pre = resp ? "\"instructions\":\"" : "\"system\":\"";
    p->sep = "";
    p->post = nonempty(body, root) ? "\"," : "\"";
    *slot = AG_HINT_SLOT_NEW_KEY;
    return AG_OK;
}

int ag_hint_locate(ag_hint_api_t api, ag_str_t body, ag_hint_place_t *at)
{
    scan_t s;
    ag_hint_slot_t where = AG_HINT_SLOT_NONE;
    int rc = api == AG_HINT_CHAT ? chat(body, &s, at, &where) : keyed(api, body, &s, at, &where);
    at->slot = rc == AG_OK ? where : AG_HINT_SLOT_NONE;
    return rc;
}

int ag_hint_emit(ag_str_t body, ag_str_t hint, const ag_hint_place_t *at, ag_buf_t *out)
{
    return emit(body, hint, at, out);
}

int ag_hint_apply(ag_hint_api_t api, ag_str_t body, ag_str_t hint, ag_buf_t *out,
                  ag_hint_slot_t *slot)
{
    ag_hint_place_t at;
    int rc = ag_hint_locate(api, body, &at);
    if (rc == AG_OK)
        rc = emit(body, hint, &at, out);
    if (rc == AG_OK && slot)
        *slot = at.slot;
    return rc;
}

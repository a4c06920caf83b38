/* YAML → positioned node tree, built from libyaml parser events with an explicit stack (no
 * recursion), so nesting and alias expansion are bounded before they cost anything. */
#include "yamldoc.h"

#include <limits.h>
#include <stdarg.h>
#include <yaml.h>

/* Maps with more keys than this get a hash index for the duplicate check, so a huge mapping
 * costs O(n) rather than O(n^2). */
#define LINEAR_KEYS 16

/* Open-addressing hash table from byte strings to nodes: anchors (owning their names) and the key
 * index of large mappings (borrowing the key nodes' text). */
typedef struct tab_ent {
    const char *key; /* NULL = empty slot */
    size_t len;
    uint64_t hash;
    ag_ynode_t *val;
} tab_ent_t;

typedef struct tab {
    tab_ent_t *ents;
    uint32_t cap; /* 0 or a power of two */
    uint32_t n;
    bool owns_keys;
} tab_t;

typedef struct frame {
    ag_ynode_t *node;     /* open mapping or sequence */
    ag_ynode_t *key;      /* mapping only: key seen, value not yet */
    uint32_t cap;         /* allocated pairs/items */
    uint32_t count_start; /* builder count before this node */
    uint32_t height;      /* max height of children so far */
    tab_t keys;           /* mapping only: index of keys once n > LINEAR_KEYS */
} frame_t;

typedef struct builder {
    const char *file;
    ag_diag_t *d;
    ag_ynode_t *nodes; /* chain of all allocated nodes */
    ag_ynode_t **roots;
    uint32_t nroots, roots_cap;
    ag_ynode_t *root; /* root of the current document once complete */
    frame_t stack[AG_YAML_MAX_DEPTH];
    uint32_t depth;
    tab_t anchors;
    uint32_t count; /* nodes so far with alias expansion, checked against AG_YAML_MAX_NODES */
} builder_t;

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static tab_ent_t *tab_find(const tab_t *t, const char *key, size_t len, uint64_t h)
{
    if (t->cap == 0)
        return NULL;
    for (uint32_t i = (uint32_t)h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        tab_ent_t *e = &t->ents[i];
        if (e->key == NULL)
            return NULL;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

static void tab_insert_new(tab_t *t, const char *key, size_t len, uint64_t h, ag_ynode_t *val)
{
    if ((t->n + 1) * 2 > t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 16;
        tab_ent_t *ne = ag_xcalloc(ncap, sizeof(*ne));
        for (uint32_t i = 0; i < t->cap; i++) {
            tab_ent_t *e = &t->ents[i];
            if (e->key == NULL)
                continue;
            uint32_t j = (uint32_t)e->hash & (ncap - 1);
            while (ne[j].key != NULL)
                j = (j + 1) & (ncap - 1);
            ne[j] = *e;
        }
        free(t->ents);
        t->ents = ne;
        t->cap = ncap;
    }
    uint32_t i = (uint32_t)h & (t->cap - 1);
    while (t->ents[i].key != NULL)
        i = (i + 1) & (t->cap - 1);
    t->ents[i] = (tab_ent_t){key, len, h, val};
    t->n++;
}

static void tab_clear(tab_t *t)
{
    if (t->owns_keys) {
        for (uint32_t i = 0; i < t->cap; i++)
            free((char *)t->ents[i].key);
    }
    free(t->ents);
    t->ents = NULL;
    t->cap = t->n = 0;
}

static int fail(builder_t *b, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(builder_t *b, yaml_mark_t m, const char *fmt, ...)
{
    char msg[sizeof(b->d->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ag_diag_set(b->d, b->file, (unsigned)m.line + 1, (unsigned)m.column + 1, "%s", msg);
    return AG_EINVAL;
}

/* Key text for a message: bounded, control bytes shown as '?'. */
static const char *show(const ag_ynode_t *n, char *out, size_t outsz)
{
    size_t max = outsz - 4, j = 0;
    for (size_t i = 0; i < n->len && j < max; i++) {
        unsigned char c = (unsigned char)n->text[i];
        out[j++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (n->len > max)
        out[j++] = '.', out[j++] = '.', out[j++] = '.';
    out[j] = '\0';
    return out;
}

static int new_node(builder_t *b, ag_ytype_t type, yaml_mark_t m, ag_ynode_t **out)
{
    if (b->count >= AG_YAML_MAX_NODES)
        return fail(b, m, "too many YAML nodes (more than %d, aliases expanded)",
                    AG_YAML_MAX_NODES);
    ag_ynode_t *n = ag_xcalloc(1, sizeof(*n));
    n->type = type;
    n->line = (unsigned)m.line + 1;
    n->col = (unsigned)m.column + 1;
    n->next_node_ = b->nodes;
    b->nodes = n;
    b->count++;
    *out = n;
    return AG_OK;
}

static void add_anchor(builder_t *b, const yaml_char_t *anchor, ag_ynode_t *n)
{
    if (anchor == NULL)
        return;
    const char *name = (const char *)anchor;
    size_t len = strlen(name);
    uint64_t h = hash_bytes(name, len);
    tab_ent_t *e = tab_find(&b->anchors, name, len, h);
    if (e != NULL) {
        e->val = n; /* YAML lets a later anchor of the same name override */
        return;
    }
    tab_insert_new(&b->anchors, ag_xstrndup(name, len), len, h, n);
}

static int check_key(builder_t *b, frame_t *f, ag_ynode_t *key, yaml_mark_t m)
{
    ag_ynode_t *map = f->node;
    const ag_ynode_t *first = NULL;
    if (map->n < LINEAR_KEYS) {
        for (uint32_t i = 0; i < map->n && first == NULL; i++) {
            const ag_ynode_t *k = map->pairs[i].key;
            if (k->len == key->len && memcmp(k->text, key->text, key->len) == 0)
                first = k;
        }
    } else {
        if (f->keys.cap == 0) {
            for (uint32_t i = 0; i < map->n; i++) {
                ag_ynode_t *k = map->pairs[i].key;
                tab_insert_new(&f->keys, k->text, k->len, hash_bytes(k->text, k->len), k);
            }
        }
        uint64_t h = hash_bytes(key->text, key->len);
        const tab_ent_t *e = tab_find(&f->keys, key->text, key->len, h);
        if (e != NULL)
            first = e->val;
        else
            tab_insert_new(&f->keys, key->text, key->len, h, key);
    }
    if (first != NULL) {
        char buf[80];
        return fail(b, m, "duplicate key `%s` (first at line %u)", show(key, buf, sizeof(buf)),
                    first->line);
    }
    return AG_OK;
}

/* Places a complete node (m = where its event started) into the open collection, or makes it
 * the document root. */
static int attach(builder_t *b, ag_ynode_t *n, yaml_mark_t m)
{
    if (b->depth == 0) {
        b->root = n;
        return AG_OK;
    }
    frame_t *f = &b->stack[b->depth - 1];
    ag_ynode_t *c = f->node;
    if (n->height_ > f->height)
        f->height = n->height_;
    if (c->type == AG_Y_SEQ) {
        if (c->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 4;
            c->items = ag_xrealloc(c->items, f->cap * sizeof(*c->items));
        }
        c->items[c->n++] = n;
        return AG_OK;
    }
    if (f->key == NULL) {
        if (n->type != AG_Y_SCALAR)
            return fail(b, m, "a mapping key must be a string, not %s", ag_ytype_name(n->type));
        int rc = check_key(b, f, n, m);
        if (rc != AG_OK)
            return rc;
        f->key = n;
        return AG_OK;
    }
    if (c->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4;
        c->pairs = ag_xrealloc(c->pairs, f->cap * sizeof(*c->pairs));
    }
    c->pairs[c->n++] = (ag_ypair_t){f->key, n};
    f->key = NULL;
    return AG_OK;
}

static int on_scalar(builder_t *b, const yaml_event_t *ev)
{
    ag_ynode_t *n = NULL;
    int rc = new_node(b, AG_Y_SCALAR, ev->start_mark, &n);
    if (rc != AG_OK)
        return rc;
    n->text = ag_xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    n->len = ev->data.scalar.length;
    if (ev->data.scalar.tag != NULL)
        n->tag = ag_xstrndup((const char *)ev->data.scalar.tag,
                             strlen((const char *)ev->data.scalar.tag));
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && n->tag == NULL;
    n->weight_ = 1;
    n->height_ = 0;
    add_anchor(b, ev->data.scalar.anchor, n);
    return attach(b, n, ev->start_mark);
}

static int on_alias(builder_t *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    size_t len = strlen(name);
    const tab_ent_t *e = tab_find(&b->anchors, name, len, hash_bytes(name, len));
    if (e == NULL)
        return fail(b, ev->start_mark, "unknown alias `*%.64s`", name);
    ag_ynode_t *n = e->val;
    if (n->weight_ == 0)
        return fail(b, ev->start_mark, "alias `*%.64s` refers to a node that contains it", name);
    if (n->weight_ > AG_YAML_MAX_NODES - b->count)
        return fail(b, ev->start_mark, "too many YAML nodes (more than %d, aliases expanded)",
                    AG_YAML_MAX_NODES);
    if (b->depth + n->height_ > AG_YAML_MAX_DEPTH)
        return fail(b, ev->start_mark, "YAML nesting deeper than %d levels", AG_YAML_MAX_DEPTH);
    b->count += n->weight_;
    return attach(b, n, ev->start_mark);
}

static int on_start(builder_t *b, const yaml_event_t *ev, ag_ytype_t type)
{
    if (b->depth > 0) {
        const frame_t *top = &b->stack[b->depth - 1];
        if (top->node->type == AG_Y_MAP && top->key == NULL)
            return fail(b, ev->start_mark, "a mapping key must be a string, not %s",
                        ag_ytype_name(type));
    }
    if (b->depth == AG_YAML_MAX_DEPTH)
        return fail(b, ev->start_mark, "YAML nesting deeper than %d levels", AG_YAML_MAX_DEPTH);
    uint32_t before = b->count;
    ag_ynode_t *n = NULL;
    int rc = new_node(b, type, ev->start_mark, &n);
    if (rc != AG_OK)
        return rc;
    const yaml_char_t *anchor =
        type == AG_Y_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    add_anchor(b, anchor, n);
    frame_t *f = &b->stack[b->depth++];
    memset(f, 0, sizeof(*f));
    f->node = n;
    f->count_start = before;
    return AG_OK;
}

static int on_end(builder_t *b)
{
    AG_ASSERT(b->depth > 0);
    frame_t *f = &b->stack[--b->depth];
    ag_ynode_t *n = f->node;
    /* libyaml guarantees a value for every key (an empty scalar if none was written). */
    AG_ASSERT(f->key == NULL);
    tab_clear(&f->keys);
    n->weight_ = b->count - f->count_start;
    n->height_ = f->height + 1;
    yaml_mark_t m = {0, n->line - 1, n->col - 1};
    return attach(b, n, m);
}

static void on_document_end(builder_t *b)
{
    ag_ynode_t *r = b->root;
    b->root = NULL;
    tab_clear(&b->anchors);
    if (r == NULL || (r->type == AG_Y_SCALAR && r->plain && r->len == 0))
        return;
    if (b->nroots == b->roots_cap) {
        b->roots_cap = b->roots_cap ? b->roots_cap * 2 : 4;
        b->roots = ag_xrealloc(b->roots, b->roots_cap * sizeof(*b->roots));
    }
    b->roots[b->nroots++] = r;
}

/* libyaml's reader reports a byte offset, not a mark: turn it into line and column. */
static yaml_mark_t offset_mark(ag_str_t text, size_t off)
{
    yaml_mark_t m = {off, 0, 0};
    if (off > text.len)
        off = text.len;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        if (c == '\n' || (c == '\r' && (i + 1 >= text.len || text.ptr[i + 1] != '\n'))) {
            m.line++;
            m.column = 0;
        } else if ((c & 0xc0) != 0x80 && c != '\r') {
            m.column++;
        }
    }
    return m;
}

static int parser_error(builder_t *b, const yaml_parser_t *p, ag_str_t text)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail(b, p->problem_mark, "out of memory while parsing YAML");
    case YAML_READER_ERROR:
        if (p->problem_value != -1)
            return fail(b, offset_mark(text, p->problem_offset), "%s (byte 0x%02x)", problem,
                        (unsigned)p->problem_value & 0xffu);
        return fail(b, offset_mark(text, p->problem_offset), "%s", problem);
    default:
        if (p->context != NULL)
            return fail(b, p->problem_mark, "%s (%s at line %zu column %zu)", problem, p->context,
                        p->context_mark.line + 1, p->context_mark.column + 1);
        return fail(b, p->problem_mark, "%s", problem);
    }
}

static void free_nodes(ag_ynode_t *n)
{
    while (n != NULL) {
        ag_ynode_t *next = n->next_node_;
        free(n->text);
        free(n->tag);
        free(n->pairs);
        free(n->items);
        free(n);
        n = next;
    }
}

int ag_yaml_load(ag_str_t text, const char *file, ag_ydocs_t *out, ag_diag_t *d)
{
    builder_t *b = ag_xcalloc(1, sizeof(*b));
    b->file = file;
    b->d = d;
    b->anchors.owns_keys = true;
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev = false, done = false;
    int rc = AG_OK;

    if (!yaml_parser_initialize(&parser)) {
        free(b);
        ag_diag_set(d, file, 0, 0, "out of memory while parsing YAML");
        return AG_EINVAL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text.ptr ? text.ptr : ""),
                                 text.len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = parser_error(b, &parser, text);
            goto out;
        }
        have_ev = true;
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            rc = on_scalar(b, &ev);
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(b, &ev);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_start(b, &ev, AG_Y_MAP);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_start(b, &ev, AG_Y_SEQ);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            rc = on_end(b);
            break;
        case YAML_DOCUMENT_START_EVENT:
            b->root = NULL;
            break;
        case YAML_DOCUMENT_END_EVENT:
            on_document_end(b);
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        have_ev = false;
        if (rc != AG_OK)
            goto out;
    }
    out->roots = b->roots;
    out->n = b->nroots;
    out->nodes_ = b->nodes;
    b->roots = NULL;
    b->nodes = NULL;
out:
    if (have_ev)
        yaml_event_delete(&ev);
    yaml_parser_delete(&parser);
    for (uint32_t i = 0; i < b->depth; i++)
        tab_clear(&b->stack[i].keys);
    tab_clear(&b->anchors);
    free_nodes(b->nodes);
    free(b->roots);
    free(b);
    return rc;
}

void ag_ydocs_dispose(ag_ydocs_t *docs)
{
    if (docs == NULL)
        return;
    free_nodes(docs->nodes_);
    free(docs->roots);
    memset(docs, 0, sizeof(*docs));
}

const ag_ynode_t *ag_ymap_getn(const ag_ynode_t *map, ag_str_t key)
{
    if (map == NULL || map->type != AG_Y_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->n; i++) {
        const ag_ynode_t *k = map->pairs[i].key;
        if (ag_str_eq(ag_str(k->text, k->len), key))
            return map->pairs[i].value;
    }
    return NULL;
}

const ag_ynode_t *ag_ymap_get(const ag_ynode_t *map, const char *key)
{
    return ag_ymap_getn(map, ag_cstr(key));
}

ag_str_t ag_yscalar_str(const ag_ynode_t *n)
{
    if (n == NULL || n->type != AG_Y_SCALAR)
        return ag_str("", 0);
    return ag_str(n->text, n->len);
}

static bool plain_is(const ag_ynode_t *n, const char *const *words)
{
    if (n == NULL || n->type != AG_Y_SCALAR || !n->plain)
        return false;
    for (; *words != NULL; words++) {
        if (ag_str_eqc(ag_str(n->text, n->len), *words))
            return true;
    }
    return false;
}

bool ag_yscalar_is_null(const ag_ynode_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    return plain_is(n, nulls);
}

int ag_yscalar_bool(const ag_ynode_t *n, bool *out)
{
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (plain_is(n, trues)) {
        *out = true;
        return AG_OK;
    }
    if (plain_is(n, falses)) {
        *out = false;
        return AG_OK;
    }
    return AG_EINVAL;
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 99;
}

int ag_yscalar_int(const ag_ynode_t *n, long *out)
{
    if (n == NULL || n->type != AG_Y_SCALAR || !n->plain)
        return AG_EINVAL;
    const char *p = n->text, *end = n->text + n->len;
    bool neg = false;
    unsigned base = 10;
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'o')) {
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    } else if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p == end)
        return AG_EINVAL;
    /* Accumulate the magnitude as unsigned so LONG_MIN fits. */
    unsigned long limit = neg ? (unsigned long)LONG_MAX + 1 : (unsigned long)LONG_MAX;
    unsigned long v = 0;
    bool big = false;
    for (; p < end; p++) {
        unsigned dv = (unsigned)digit_value(*p);
        if (dv >= base)
            return AG_EINVAL;
        if (v > (limit - dv) / base)
            big = true;
        else
            v = v * base + dv;
    }
    if (big)
        return AG_ETOOBIG;
    if (neg)
        *out = v == (unsigned long)LONG_MAX + 1 ? LONG_MIN : -(long)v;
    else
        *out = (long)v;
    return AG_OK;
}

const char *ag_ytype_name(ag_ytype_t t)
{
    switch (t) {
    case AG_Y_SCALAR:
        return "a string";
    case AG_Y_MAP:
        return "a mapping";
    case AG_Y_SEQ:
        return "a sequence";
    }
    return "a node";
}

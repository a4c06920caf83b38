/* Bump allocator: a list of chunks, freed at once. */
#include "arena.h"

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} chunk_t;

struct ag_arena {
    chunk_t *head;
    size_t chunk;
};

static chunk_t *chunk_new(size_t size)
{
    chunk_t *c = ag_xmalloc(sizeof(*c) + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

ag_arena_t *ag_arena_new(size_t chunk)
{
    ag_arena_t *a = ag_xmalloc(sizeof(*a));
    a->chunk = chunk ? chunk : 4096;
    a->head = chunk_new(a->chunk);
    return a;
}

void ag_arena_free(ag_arena_t *a)
{
    if (a == NULL)
        return;
    chunk_t *c = a->head;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *ag_arena_alloc(ag_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    chunk_t *c = a->head;
    if (c->size - c->used < n) {
        size_t size = n > a->chunk ? n : a->chunk;
        c = chunk_new(size);
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *ag_arena_strndup(ag_arena_t *a, const char *s, size_t n)
{
    char *p = ag_arena_alloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ag_arena_reset(ag_arena_t *a)
{
    chunk_t *c = a->head;
    while (c->next) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    /* the oldest chunk is last in the list; keep it */
    a->head = c;
    c->used = 0;
}

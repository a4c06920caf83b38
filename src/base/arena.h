/* A bump allocator for data that lives and dies together (a rule set, one request). */
#ifndef AG_ARENA_H
#define AG_ARENA_H

#include "util.h"

typedef struct ag_arena ag_arena_t;

ag_arena_t *ag_arena_new(size_t chunk);
void ag_arena_free(ag_arena_t *a);
/* Zeroed, 16-byte aligned memory; aborts on OOM. */
void *ag_arena_alloc(ag_arena_t *a, size_t n);
char *ag_arena_strndup(ag_arena_t *a, const char *s, size_t n);
/* Forgets everything allocated but keeps the first chunk for reuse. */
void ag_arena_reset(ag_arena_t *a);

#endif

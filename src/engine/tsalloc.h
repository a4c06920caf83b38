/* A per-thread recycling allocator for tree-sitter's many small, short-lived blocks (subtrees,
 * stack nodes, arrays): a parse and the delete of its tree allocate and free a few hundred of
 * them, which glibc serves from its slower bins once its per-thread cache (7 blocks a size) is
 * full. */
#ifndef AG_TSALLOC_H
#define AG_TSALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* Makes tree-sitter allocate through the functions below. Call once, before any tree-sitter
 * object exists (first thing in main). Does nothing in sanitizer builds, where libc's allocator
 * is the one that catches use-after-free. Returns whether the pool is in use. */
bool ag_tsalloc_install(void);

/* The allocator itself (exposed for tests). Blocks of up to AG_TSALLOC_SMALL bytes are rounded up
 * to a multiple of 16 and, when freed, kept on the freeing thread's list for their size, up to
 * AG_TSALLOC_KEEP bytes a thread; larger blocks go to libc. Allocation failures abort, as
 * tree-sitter's own default does. Thread-safe: the lists are per thread, and a block may be
 * freed by any thread. */
#define AG_TSALLOC_SMALL 1024u
#define AG_TSALLOC_KEEP (4u << 20)
void *ag_tsalloc_malloc(size_t n);
void *ag_tsalloc_calloc(size_t n, size_t size);
void *ag_tsalloc_realloc(void *p, size_t n);
void ag_tsalloc_free(void *p);
/* Bytes kept on this thread's lists. */
size_t ag_tsalloc_kept(void);
/* Returns this thread's kept blocks to libc (also done when a thread exits). */
void ag_tsalloc_trim(void);

#endif

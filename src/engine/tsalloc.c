/* Size-class free lists per thread in front of libc's malloc, for tree-sitter. Each block carries
 * a 16-byte header with its usable size, so free and realloc need no lookup. */
#include "tsalloc.h"

#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tree_sitter/api.h>

#define HDR 16u /* keeps the user pointer 16-byte aligned, like malloc's */
#define NCLASS (AG_TSALLOC_SMALL / 16u)

typedef struct pool {
    void *head[NCLASS]; /* class c holds blocks of (c + 1) * 16 usable bytes; the link is the
                           block's first word */
    size_t kept;        /* bytes on the lists */
    bool registered;    /* the thread-exit destructor knows this thread's pool */
} pool_t;

static __thread pool_t pool;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg)
{
    (void)arg;
    ag_tsalloc_trim();
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        exit_key = 0; /* no destructor: the kept blocks of exiting threads stay allocated */
}

static void *oom(size_t n)
{
    fprintf(stderr, "astgate: out of memory (%zu bytes for tree-sitter)\n", n);
    abort();
}

void *ag_tsalloc_malloc(size_t n)
{
    if (n == 0)
        n = 1;
    if (n <= AG_TSALLOC_SMALL) {
        size_t c = (n - 1) >> 4;
        size_t size = (c + 1) << 4;
        void *p = pool.head[c];
        if (p) {
            memcpy(&pool.head[c], p, sizeof(void *));
            pool.kept -= size;
            return p;
        }
        n = size;
    } else if (n > SIZE_MAX - HDR) {
        return oom(n);
    }
    unsigned char *h = malloc(HDR + n);
    if (h == NULL)
        return oom(n);
    uint64_t sz = n;
    memcpy(h, &sz, sizeof(sz));
    return h + HDR;
}

static size_t usable(const void *p)
{
    uint64_t sz;
    memcpy(&sz, (const unsigned char *)p - HDR, sizeof(sz));
    return (size_t)sz;
}

void ag_tsalloc_free(void *p)
{
    if (p == NULL)
        return;
    size_t size = usable(p);
    if (size <= AG_TSALLOC_SMALL && pool.kept + size <= AG_TSALLOC_KEEP) {
        if (!pool.registered) {
            pthread_once(&exit_once, make_key);
            if (exit_key)
                pthread_setspecific(exit_key, &pool);
            pool.registered = true;
        }
        size_t c = (size >> 4) - 1;
        memcpy(p, &pool.head[c], sizeof(void *));
        pool.head[c] = p;
        pool.kept += size;
        return;
    }
    free((unsigned char *)p - HDR);
}

void *ag_tsalloc_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return oom(SIZE_MAX);
    void *p = ag_tsalloc_malloc(n * size);
    memset(p, 0, n * size);
    return p;
}

void *ag_tsalloc_realloc(void *p, size_t n)
{
    if (p == NULL)
        return ag_tsalloc_malloc(n);
    size_t have = usable(p);
    if (n <= have && (have <= AG_TSALLOC_SMALL || n > have / 2))
        return p;
    void *q = ag_tsalloc_malloc(n);
    memcpy(q, p, n < have ? n : have);
    ag_tsalloc_free(p);
    return q;
}

size_t ag_tsalloc_kept(void)
{
    return pool.kept;
}

void ag_tsalloc_trim(void)
{
    for (size_t c = 0; c < NCLASS; c++) {
        void *p = pool.head[c];
        while (p) {
            void *next;
            memcpy(&next, p, sizeof(next));
            free((unsigned char *)p - HDR);
            p = next;
        }
        pool.head[c] = NULL;
    }
    pool.kept = 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define AG_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define AG_SANITIZED 1
#endif
#endif

bool ag_tsalloc_install(void)
{
#ifdef AG_SANITIZED
    return false;
#else
    ts_set_allocator(ag_tsalloc_malloc, ag_tsalloc_calloc, ag_tsalloc_realloc, ag_tsalloc_free);
    return true;
#endif
}

/* Shared basics: byte views, capped buffers, error codes, diagnostics, allocation. */
#ifndef AG_UTIL_H
#define AG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AG_MUSTCHECK __attribute__((warn_unused_result))

/* Error codes: 0 ok, negative failure. */
enum {
    AG_OK = 0,
    AG_AGAIN = -1,   /* incremental parser needs more bytes */
    AG_EINVAL = -2,  /* malformed input; details in an ag_diag_t when one is given */
    AG_ETOOBIG = -3, /* a configured limit was reached */
    AG_EIO = -4,     /* read/write failed; errno converted at the call site */
    AG_ENOENT = -5,  /* file or item not found */
};

/* Always-on invariant check for our own logic (never for input). */
#define AG_ASSERT(expr) ((expr) ? (void)0 : ag_assert_fail(#expr, __FILE__, __LINE__))
_Noreturn void ag_assert_fail(const char *expr, const char *file, int line);

/* Borrowed bytes; never assumed NUL-terminated. */
typedef struct ag_str {
    const char *ptr;
    size_t len;
} ag_str_t;

#define AG_STR_LIT(s) ((ag_str_t){(s), sizeof(s) - 1})
static inline ag_str_t ag_str(const char *p, size_t n)
{
    return (ag_str_t){p, n};
}
static inline ag_str_t ag_cstr(const char *s)
{
    return (ag_str_t){s, s ? strlen(s) : 0};
}
static inline bool ag_str_eq(ag_str_t a, ag_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
static inline bool ag_str_eqc(ag_str_t a, const char *c)
{
    return ag_str_eq(a, ag_cstr(c));
}
/* ASCII case-insensitive comparison with a C string (header names). */
static inline bool ag_str_eqci(ag_str_t a, const char *c)
{
    size_t n = strlen(c);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)c[i];
        if ((unsigned)(x - 'A') < 26u)
            x += 32;
        if ((unsigned)(y - 'A') < 26u)
            y += 32;
        if (x != y)
            return false;
    }
    return true;
}

/* Allocation that aborts on OOM; only for sizes we control (see STYLE.md). */
void *ag_xmalloc(size_t n);
void *ag_xcalloc(size_t n, size_t size);
void *ag_xrealloc(void *p, size_t n);
char *ag_xstrndup(const char *s, size_t n);
/* Optional counting hook for allocation budgets in tests: total calls so far. */
extern uint64_t ag_alloc_count;

/* Owned growable bytes with a maximum set at init; always NUL-terminated after ptr[len]. */
typedef struct ag_buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max; /* bytes; append past it fails with AG_ETOOBIG */
} ag_buf_t;

void ag_buf_init(ag_buf_t *b, size_t max);
void ag_buf_dispose(ag_buf_t *b);
void ag_buf_reset(ag_buf_t *b);
AG_MUSTCHECK int ag_buf_append(ag_buf_t *b, const void *p, size_t n);
AG_MUSTCHECK int ag_buf_appendc(ag_buf_t *b, char c);
AG_MUSTCHECK int ag_buf_appendf(ag_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline ag_str_t ag_buf_str(const ag_buf_t *b)
{
    return (ag_str_t){b->ptr ? b->ptr : "", b->len};
}

/* A problem in a file meant for people: printed by main as file:line:col: msg. */
typedef struct ag_diag {
    char file[256];
    unsigned line; /* 1-based; 0 = unknown */
    unsigned col;  /* 1-based; 0 = unknown */
    char msg[512];
} ag_diag_t;

void ag_diag_set(ag_diag_t *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Writes "file:line:col: msg\n" (parts that are unknown are left out). */
void ag_diag_print(const ag_diag_t *d, FILE *out);

/* Reads a whole file (or stdin when path is "-") into b; AG_EIO with errno kept on failure. */
AG_MUSTCHECK int ag_read_file(const char *path, ag_buf_t *b);

/* Finds needle in haystack; NULL when absent. */
const char *ag_memmem(ag_str_t hay, ag_str_t needle);

/* Whether s is an ASCII JavaScript identifier ([A-Za-z_$][A-Za-z0-9_$]*). */
bool ag_js_ident(ag_str_t s);

#endif

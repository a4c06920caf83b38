/* Shared basics: allocation that aborts on OOM, capped buffers, diagnostics, file reading. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>

uint64_t ag_alloc_count;

void ag_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "astgate: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void oom(size_t n)
{
    fprintf(stderr, "astgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *ag_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    ag_alloc_count++;
    return p;
}

void *ag_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    ag_alloc_count++;
    return p;
}

void *ag_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    ag_alloc_count++;
    return q;
}

char *ag_xstrndup(const char *s, size_t n)
{
    char *p = ag_xmalloc(n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ag_buf_init(ag_buf_t *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void ag_buf_dispose(ag_buf_t *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

void ag_buf_reset(ag_buf_t *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

static int reserve(ag_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return AG_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return AG_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->ptr = ag_xrealloc(b->ptr, cap);
    b->cap = cap;
    return AG_OK;
}

int ag_buf_append(ag_buf_t *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc != AG_OK)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return AG_OK;
}

int ag_buf_appendc(ag_buf_t *b, char c)
{
    return ag_buf_append(b, &c, 1);
}

int ag_buf_appendf(ag_buf_t *b, const char *fmt, ...)
{
    /* format straight into the free space; a second pass only when it did not fit */
    va_list ap;
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->ptr + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room && (size_t)n <= b->max - b->len) {
        b->len += (size_t)n;
        return AG_OK;
    }
    if (room)
        b->ptr[b->len] = '\0'; /* b stays as it was */
    if (n < 0)
        return AG_EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc != AG_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AG_OK;
}

void ag_diag_set(ag_diag_t *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
    if (d == NULL)
        return;
    snprintf(d->file, sizeof(d->file), "%s", file ? file : "");
    d->line = line;
    d->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
}

void ag_diag_print(const ag_diag_t *d, FILE *out)
{
    if (d->file[0])
        fprintf(out, "%s:", d->file);
    if (d->line)
        fprintf(out, "%u:", d->line);
    if (d->line && d->col)
        fprintf(out, "%u:", d->col);
    fprintf(out, "%s%s\n", d->file[0] || d->line ? " " : "", d->msg);
}

int ag_read_file(const char *path, ag_buf_t *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return AG_EIO;
    char chunk[65536];
    int rc = AG_OK;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0) {
            rc = ag_buf_append(b, chunk, n);
            if (rc != AG_OK)
                break;
        }
        if (n < sizeof(chunk)) {
            if (ferror(f)) {
                rc = AG_EIO;
            }
            break;
        }
    }
    int saved = errno;
    if (f != stdin)
        fclose(f);
    errno = saved;
    if (rc == AG_OK && b->ptr == NULL)
        rc = ag_buf_append(b, "", 0);
    return rc;
}

const char *ag_memmem(ag_str_t hay, ag_str_t needle)
{
    if (needle.len == 0)
        return hay.ptr;
    if (hay.len < needle.len)
        return NULL;
    return memmem(hay.ptr, hay.len, needle.ptr, needle.len);
}

bool ag_js_ident(ag_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '$' ||
                  (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

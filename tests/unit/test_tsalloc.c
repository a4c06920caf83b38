/* Unit tests for tsalloc.c, the per-thread recycling allocator tree-sitter uses in astgate (the
 * sanitizer builds leave tree-sitter on libc, so the allocator is exercised here directly). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "tsalloc.h"

static int teardown(void **state)
{
    (void)state;
    ag_tsalloc_trim();
    return 0;
}

static void recycles_by_size(void **state)
{
    (void)state;
    unsigned char *a = ag_tsalloc_malloc(40);
    assert_int_equal((uintptr_t)a % 16, 0);
    memset(a, 0xab, 40);
    ag_tsalloc_free(a);
    assert_int_equal(ag_tsalloc_kept(), 48);
    /* the same class (33..48 bytes) gets the same block back */
    unsigned char *b = ag_tsalloc_malloc(48);
    assert_ptr_equal(a, b);
    assert_int_equal(ag_tsalloc_kept(), 0);
    /* another class does not */
    unsigned char *c = ag_tsalloc_malloc(100);
    assert_ptr_not_equal(c, b);
    ag_tsalloc_free(b);
    ag_tsalloc_free(c);
    assert_int_equal(ag_tsalloc_kept(), 48 + 112);
    ag_tsalloc_trim();
    assert_int_equal(ag_tsalloc_kept(), 0);
    /* zero bytes: a valid, freeable block */
    void *z = ag_tsalloc_malloc(0);
    assert_non_null(z);
    ag_tsalloc_free(z);
    ag_tsalloc_free(NULL);
}

static void calloc_zeroes_recycled_blocks(void **state)
{
    (void)state;
    unsigned char *a = ag_tsalloc_malloc(64);
    memset(a, 0xff, 64);
    ag_tsalloc_free(a);
    unsigned char *b = ag_tsalloc_calloc(8, 8);
    assert_ptr_equal(a, b);
    for (int i = 0; i < 64; i++)
        assert_int_equal(b[i], 0);
    ag_tsalloc_free(b);
}

static void large_blocks_are_not_kept(void **state)
{
    (void)state;
    void *p = ag_tsalloc_malloc(AG_TSALLOC_SMALL + 1);
    memset(p, 1, AG_TSALLOC_SMALL + 1);
    ag_tsalloc_free(p);
    assert_int_equal(ag_tsalloc_kept(), 0);
}

static void keeps_at_most_the_cap(void **state)
{
    (void)state;
    enum { N = (AG_TSALLOC_KEEP / 512) + 100 };
    static void *blocks[N];
    for (int i = 0; i < N; i++)
        blocks[i] = ag_tsalloc_malloc(512);
    for (int i = 0; i < N; i++)
        ag_tsalloc_free(blocks[i]);
    assert_int_equal(ag_tsalloc_kept(), AG_TSALLOC_KEEP);
}

static void realloc_keeps_contents(void **state)
{
    (void)state;
    unsigned char *p = ag_tsalloc_realloc(NULL, 10);
    for (int i = 0; i < 10; i++)
        p[i] = (unsigned char)i;
    /* within the block's class: same block */
    assert_ptr_equal(ag_tsalloc_realloc(p, 16), p);
    /* small to large and back */
    unsigned char *q = ag_tsalloc_realloc(p, 5000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(q[i], i);
    memset(q + 10, 7, 4990);
    unsigned char *r = ag_tsalloc_realloc(q, 100);
    assert_ptr_not_equal(r, q); /* far smaller than the large block: moved */
    for (int i = 0; i < 10; i++)
        assert_int_equal(r[i], i);
    assert_int_equal(r[99], 7);
    ag_tsalloc_free(r);
}

static void *thread_frees(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < 16; i++)
        ag_tsalloc_free(blocks[i]);
    return (void *)ag_tsalloc_kept();
}

/* A block freed by another thread goes to that thread's lists, which are returned to libc when it
 * exits (LeakSanitizer fails this test otherwise). */
static void other_threads_free_and_exit(void **state)
{
    (void)state;
    void *blocks[16];
    for (int i = 0; i < 16; i++)
        blocks[i] = ag_tsalloc_malloc(32);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_frees, blocks), 0);
    void *kept = NULL;
    assert_int_equal(pthread_join(t, &kept), 0);
    assert_int_equal((size_t)kept, 16 * 32);
    assert_int_equal(ag_tsalloc_kept(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(recycles_by_size, teardown),
        cmocka_unit_test_teardown(calloc_zeroes_recycled_blocks, teardown),
        cmocka_unit_test_teardown(large_blocks_are_not_kept, teardown),
        cmocka_unit_test_teardown(keeps_at_most_the_cap, teardown),
        cmocka_unit_test_teardown(realloc_keeps_contents, teardown),
        cmocka_unit_test_teardown(other_threads_free_and_exit, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for util.c's capped buffer: ag_buf_appendf formats in place when the text fits, grows
 * when it does not, and leaves the buffer as it was (NUL-terminated) past its maximum. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

static void appendf_fits_and_grows(void **state)
{
    (void)state;
    ag_buf_t b;
    ag_buf_init(&b, 1 << 20);
    assert_int_equal(ag_buf_appendf(&b, "%s-%d", "a", 1), AG_OK); /* empty buffer: grows */
    assert_int_equal(ag_buf_append(&b, "", 0), AG_OK);
    size_t cap = b.cap;
    assert_int_equal(ag_buf_appendf(&b, ",%03u", 7u), AG_OK); /* fits in the room */
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.ptr, "a-1,007");
    assert_int_equal(b.len, 7);
    /* longer than the room: a second pass after growing */
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ag_buf_appendf(&b, "[%s]", big), AG_OK);
    assert_int_equal(b.len, 7 + 2 + 299);
    assert_int_equal(b.ptr[b.len], '\0');
    assert_int_equal(b.ptr[7], '[');
    assert_int_equal(b.ptr[b.len - 1], ']');
    ag_buf_dispose(&b);
}

static void appendf_past_max_changes_nothing(void **state)
{
    (void)state;
    ag_buf_t b;
    ag_buf_init(&b, 10);
    assert_int_equal(ag_buf_append(&b, "abcd", 4), AG_OK);
    assert_true(b.cap > 10); /* room for the text below: the in-place pass is the one that fails */
    assert_int_equal(ag_buf_appendf(&b, "%s", "0123456789"), AG_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.ptr, "abcd");
    /* too long for the room as well */
    assert_int_equal(ag_buf_appendf(&b, "%0100d", 5), AG_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.ptr, "abcd");
    /* exactly up to the maximum is fine */
    assert_int_equal(ag_buf_appendf(&b, "%06d", 42), AG_OK);
    assert_string_equal(b.ptr, "abcd000042");
    assert_int_equal(ag_buf_appendf(&b, "%s", "z"), AG_ETOOBIG);
    assert_string_equal(b.ptr, "abcd000042");
    ag_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appendf_fits_and_grows),
        cmocka_unit_test(appendf_past_max_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The SSE encoder: framing, the event line rule, and data split on CR, LF and CRLF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sse/sse.h"

static void expect_frame(uint64_t id, const char *type, const char *data, const char *expected) {
    text t;
    text_init(&t);
    sse_encode_event(&t, id, type, data, strlen(data));
    assert_non_null(text_cstring(&t));
    assert_string_equal(t.data, expected);
    text_free(&t);
}

static void message_type_has_no_event_line(void **state) {
    expect_frame(42, "message", "{\"a\":1}", "id: 42\ndata: {\"a\":1}\n\n");
}

static void other_types_name_the_event(void **state) {
    expect_frame(7, "status", "x", "id: 7\nevent: status\ndata: x\n\n");
}

static void empty_data_is_one_empty_line(void **state) {
    expect_frame(1, "message", "", "id: 1\ndata: \n\n");
}

static void lines_split_on_lf_cr_and_crlf(void **state) {
    expect_frame(3, "message", "a\nb\rc\r\nd", "id: 3\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
}

static void trailing_and_doubled_line_ends_keep_empty_lines(void **state) {
    expect_frame(4, "message", "a\n", "id: 4\ndata: a\ndata: \n\n");
    expect_frame(5, "message", "\r\n\r\n", "id: 5\ndata: \ndata: \ndata: \n\n");
    expect_frame(6, "message", "a\n\rb", "id: 6\ndata: a\ndata: \ndata: b\n\n");
}

static void long_lines_are_kept_whole(void **state) {
    char data[70000];
    memset(data, 'x', sizeof data - 1);
    data[sizeof data - 1] = '\0';
    text t;
    text_init(&t);
    sse_encode_event(&t, 9, "message", data, strlen(data));
    assert_int_equal(t.length, strlen("id: 9\ndata: ") + strlen(data) + 2);
    text_free(&t);
}

static void frame_is_cached_on_the_event(void **state) {
    event *e = event_create("a/b", 3, "message", false, "hi", 2);
    assert_non_null(e);
    e->id = 11;
    buffer *first = sse_event_frame(e);
    assert_ptr_equal(first, sse_event_frame(e));
    assert_string_equal(first->data, "id: 11\ndata: hi\n\n");
    event_release(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_type_has_no_event_line),
        cmocka_unit_test(other_types_name_the_event),
        cmocka_unit_test(empty_data_is_one_empty_line),
        cmocka_unit_test(lines_split_on_lf_cr_and_crlf),
        cmocka_unit_test(trailing_and_doubled_line_ends_keep_empty_lines),
        cmocka_unit_test(long_lines_are_kept_whole),
        cmocka_unit_test(frame_is_cached_on_the_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

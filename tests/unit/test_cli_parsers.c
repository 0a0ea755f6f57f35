/* The client commands' parsers: the JSON scanner and the incremental SSE parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli_internal.h"

static bool valid(const char *json) {
    return cli_json_is_valid(json, strlen(json));
}

static void json_validation_is_strict(void **state) {
    assert_true(valid("{\"a\":[1,-2.5e3,true,false,null,\"x\\u00e9\\n\"]}"));
    assert_true(valid(" 42 "));
    assert_true(valid("\"\""));
    assert_false(valid(""));
    assert_false(valid("plain text"));
    assert_false(valid("{\"a\":1,}"));
    assert_false(valid("[1 2]"));
    assert_false(valid("01"));
    assert_false(valid("1."));
    assert_false(valid("\"tab\there\""));
    assert_false(valid("\"\\x\""));
    assert_false(valid("{\"a\":1} x"));
    assert_false(valid("tru"));
}

static void json_depth_is_bounded(void **state) {
    char deep[2001];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    assert_false(valid(deep));
}

static void json_elements_are_found_whole(void **state) {
    const char *json =
        "{\"events\":[{\"id\":\"1\",\"data\":\"a]\\\"}\"},{\"id\":\"2\"}],\"next\":\"2\"}";
    size_t start, end;
    assert_true(cli_json_find_member(json, strlen(json), "next", &start, &end));
    assert_int_equal(end - start, 3);
    assert_true(cli_json_find_member(json, strlen(json), "events", &start, &end));
    size_t first_end = cli_json_skip_value(json, end, start + 1);
    assert_memory_equal(json + start + 1, "{\"id\":\"1\",\"data\":\"a]\\\"}\"}",
                        first_end - start - 1);
    assert_false(cli_json_find_member(json, strlen(json), "missing", &start, &end));
}

static void json_strings_round_trip(void **state) {
    text out;
    text_init(&out);
    const char *token = "\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"";
    assert_true(cli_json_decode_string(&out, token, strlen(token)));
    assert_string_equal(text_cstring(&out), "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80");
    text_clear(&out);
    cli_json_append_string(&out, "q\"\x01\n", 4);
    assert_string_equal(text_cstring(&out), "\"q\\\"\\u0001\\n\"");
    text_clear(&out);
    const char *spaced = "{ \"a\" : [ 1 , \"x y\" ] }\n";
    cli_json_append_compact(&out, spaced, strlen(spaced));
    assert_string_equal(text_cstring(&out), "{\"a\":[1,\"x y\"]}");
    text_free(&out);
}

typedef struct seen_events {
    text log; /* "id|type|data;" per event */
    int stop_after;
    int count;
} seen_events;

static int record_event(void *context, const char *id, const char *type, const char *data,
                        size_t data_length) {
    seen_events *seen = context;
    text_printf(&seen->log, "%s|%s|", id, type);
    text_append(&seen->log, data, data_length);
    text_append_char(&seen->log, ';');
    seen->count++;
    return seen->stop_after && seen->count >= seen->stop_after ? 1 : 0;
}

/* Feeds the stream one byte at a time, which exercises every split point. */
static const char *parse_bytewise(seen_events *seen, cli_sse_parser *parser, const char *stream) {
    for (size_t i = 0; stream[i]; i++)
        if (cli_sse_feed(parser, stream + i, 1) != 0) break;
    return text_cstring(&seen->log);
}

static void sse_frames_follow_the_html_rules(void **state) {
    seen_events seen = {0};
    text_init(&seen.log);
    cli_sse_parser parser;
    cli_sse_init(&parser, record_event, &seen);
    const char *stream = ": hello\nretry: 1500\n\n"
                         "id: 1\ndata: {\"a\":1}\n\n"
                         "id: 2\r\nevent: status\r\ndata: one\r\ndata:two\r\n\r\n"
                         "id: 3\revent: herald.reset\rdata\r\r"
                         "id: 4\n\n"   /* no data: only the id changes */
                         "data: x\n\n" /* the id carries over */
                         "id: 5\ndata: partial";
    assert_string_equal(parse_bytewise(&seen, &parser, stream),
                        "1|message|{\"a\":1};2|status|one\ntwo;3|herald.reset|;4|message|x;");
    assert_int_equal(parser.retry_ms, 1500);
    cli_sse_restart(&parser); /* the partial event is dropped, the last id stays */
    assert_string_equal(text_cstring(&parser.id), "5");
    cli_sse_feed(&parser, "data: y\n\n", 9);
    assert_string_equal(text_cstring(&seen.log),
                        "1|message|{\"a\":1};2|status|one\ntwo;3|herald.reset|;4|message|x;"
                        "5|message|y;");
    cli_sse_free(&parser);
    text_free(&seen.log);
}

static void sse_callback_can_stop_the_parser(void **state) {
    seen_events seen = {.stop_after = 1};
    text_init(&seen.log);
    cli_sse_parser parser;
    cli_sse_init(&parser, record_event, &seen);
    const char *stream = "id: 1\ndata: a\n\nid: 2\ndata: b\n\n";
    assert_int_equal(cli_sse_feed(&parser, stream, strlen(stream)), 1);
    assert_string_equal(text_cstring(&seen.log), "1|message|a;");
    cli_sse_free(&parser);
    text_free(&seen.log);
}

static void topics_are_encoded_per_segment(void **state) {
    text out;
    text_init(&out);
    cli_append_topic_path(&out, "orders/a b/é");
    assert_string_equal(text_cstring(&out), "orders/a%20b/%C3%A9");
    text_clear(&out);
    cli_append_query_value(&out, "orders/*");
    assert_string_equal(text_cstring(&out), "orders%2F%2A");
    text_free(&out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_validation_is_strict),
        cmocka_unit_test(json_depth_is_bounded),
        cmocka_unit_test(json_elements_are_found_whole),
        cmocka_unit_test(json_strings_round_trip),
        cmocka_unit_test(sse_frames_follow_the_html_rules),
        cmocka_unit_test(sse_callback_can_stop_the_parser),
        cmocka_unit_test(topics_are_encoded_per_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

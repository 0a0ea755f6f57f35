#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "http/http_parser.h"

static const http_limits default_limits = {
    .max_header_bytes = 16384,
    .max_body_bytes = 1048576,
    .max_headers = 100,
};

/* ---------- helpers ---------- */

/* Feeds the whole input at once; returns the status of the first request. */
static http_parse_status parse_whole(http_parser *p, const char *input, size_t *consumed) {
    return http_parser_execute(p, input, strlen(input), consumed);
}

/* Describes everything the parser produced for input fed in pieces ending at cuts[] (ascending,
 * each < length) and then the rest; pipelined requests are handled by reset-and-continue. Two runs
 * with the same input must give the same description whatever the cuts. */
static char *describe(const char *input, size_t length, const http_limits *limits,
                      const size_t *cuts, size_t cut_count) {
    text out;
    text_init(&out);
    http_parser p;
    http_parser_init(&p, limits);
    size_t offset = 0;
    size_t request_start = 0;
    bool stopped = false;
    for (size_t piece = 0; piece <= cut_count && !stopped; piece++) {
        size_t piece_end = piece < cut_count ? cuts[piece] : length;
        while (offset < piece_end) {
            size_t consumed = 0;
            http_parse_status status =
                http_parser_execute(&p, input + offset, piece_end - offset, &consumed);
            assert_true(consumed <= piece_end - offset);
            offset += consumed;
            if (status == HTTP_PARSE_NEED_MORE) {
                assert_int_equal(offset, piece_end);
                continue;
            }
            if (status == HTTP_PARSE_ERROR) {
                text_printf(&out, "error %d %s (%s) at %zu\n", p.error_status, p.error_code,
                            p.error_message, offset);
                stopped = true;
                break;
            }
            const http_request *r = http_parser_request(&p);
            assert_non_null(r);
            assert_non_null(r->body);
            assert_int_equal(r->body[r->body_length], '\0');
            text_printf(&out, "request [%zu,%zu) %s %s 1.%d ka=%d ec=%d ch=%d cl=%d/%llu\n",
                        request_start, offset, r->method, r->target, r->version_minor,
                        r->keep_alive, r->expect_continue, r->chunked, r->has_content_length,
                        (unsigned long long)r->content_length);
            for (size_t i = 0; i < r->header_count; i++) {
                text_printf(&out, "  %s=[%s]\n", r->headers[i].name, r->headers[i].value);
            }
            text_printf(&out, "  body %zu [", r->body_length);
            text_append(&out, r->body, r->body_length);
            text_append_cstring(&out, "]\n");
            http_parser_reset(&p);
            assert_null(p.state);
            request_start = offset;
        }
    }
    if (!stopped) text_printf(&out, "need more, started=%d\n", http_parser_started(&p));
    http_parser_free(&p);
    assert_false(text_failed(&out));
    char *result = strdup(text_cstring(&out));
    text_free(&out);
    return result;
}

/* The description must not depend on where the input is split: at every single position, and
 * one byte at a time. Returns the description of the whole input. */
static char *assert_split_invariant(const char *input, size_t length, const http_limits *limits) {
    char *whole = describe(input, length, limits, NULL, 0);
    for (size_t cut = 1; cut < length; cut++) {
        char *split = describe(input, length, limits, &cut, 1);
        if (strcmp(whole, split) != 0) {
            fail_msg("split at %zu differs:\n%s\nvs\n%s", cut, whole, split);
        }
        free(split);
    }
    if (length > 1) {
        size_t *cuts = malloc((length - 1) * sizeof *cuts);
        assert_non_null(cuts);
        for (size_t i = 0; i < length - 1; i++)
            cuts[i] = i + 1;
        char *bytewise = describe(input, length, limits, cuts, length - 1);
        if (strcmp(whole, bytewise) != 0) {
            fail_msg("byte at a time differs:\n%s\nvs\n%s", whole, bytewise);
        }
        free(bytewise);
        free(cuts);
    }
    return whole;
}

static void check_split_invariant(const char *input, const http_limits *limits) {
    free(assert_split_invariant(input, strlen(input), limits));
}

/* Parses input (length bytes, NULs allowed) whole with limits, expects an error, and checks the
 * split invariant. */
static void expect_error_bytes(const char *input, size_t length, const http_limits *limits,
                               int status, const char *code) {
    http_parser p;
    http_parser_init(&p, limits);
    size_t consumed = 0;
    http_parse_status result = http_parser_execute(&p, input, length, &consumed);
    if (result != HTTP_PARSE_ERROR) fail_msg("expected error %d for: %s", status, input);
    if (p.error_status != status) {
        fail_msg("expected %d, got %d (%s) for: %s", status, p.error_status, p.error_message,
                 input);
    }
    assert_string_equal(p.error_code, code);
    assert_non_null(p.error_message);
    assert_true(strlen(p.error_message) > 10);
    assert_true(consumed <= length);
    /* Sticky until reset. */
    assert_int_equal(http_parser_execute(&p, "GET", 3, &consumed), HTTP_PARSE_ERROR);
    assert_int_equal(consumed, 0);
    http_parser_reset(&p);
    assert_null(p.state);
    assert_int_equal(p.error_status, 0);
    http_parser_free(&p);
    free(assert_split_invariant(input, length, limits));
}

/* These take string literals so that embedded NUL bytes are part of the input. */
#define expect_error_with(literal, limits, status, code)                                           \
    expect_error_bytes(literal, sizeof(literal) - 1, limits, status, code)
#define expect_error(literal, status, code)                                                        \
    expect_error_with(literal, &default_limits, status, code)
#define expect_bad_request(literal) expect_error(literal, 400, "bad_request")

/* Parses input whole, expects one complete request using all of it, checks the split invariant.
 * The parser is left holding the request for the caller to inspect and free. */
static const http_request *expect_request(http_parser *p, const char *input,
                                          const http_limits *limits) {
    http_parser_init(p, limits);
    size_t consumed = 0;
    http_parse_status status = parse_whole(p, input, &consumed);
    if (status != HTTP_PARSE_REQUEST_COMPLETE) {
        fail_msg("expected a request, got status %d (%d %s) for: %s", status, p->error_status,
                 p->error_message ? p->error_message : "", input);
    }
    assert_int_equal(consumed, strlen(input));
    check_split_invariant(input, limits);
    const http_request *r = http_parser_request(p);
    assert_non_null(r);
    assert_non_null(r->body);
    return r;
}

/* ---------- valid requests ---------- */

static void test_idle_parser_owns_no_memory(void **unused) {
    http_parser p;
    http_parser_init(&p, &default_limits);
    assert_null(p.state);
    assert_false(http_parser_started(&p));
    assert_false(http_parser_headers_complete(&p));
    assert_null(http_parser_request(&p));
    size_t consumed = 99;
    assert_int_equal(http_parser_execute(&p, "", 0, &consumed), HTTP_PARSE_NEED_MORE);
    assert_int_equal(consumed, 0);
    assert_null(p.state);
    assert_int_equal(http_parser_execute(&p, "G", 1, &consumed), HTTP_PARSE_NEED_MORE);
    assert_int_equal(consumed, 1);
    assert_non_null(p.state);
    assert_true(http_parser_started(&p));
    http_parser_reset(&p);
    assert_null(p.state);
    assert_false(http_parser_started(&p));
    http_parser_free(&p);
    /* An idle connection's parser is a few dozen bytes, not a buffer. */
    assert_true(sizeof(http_parser) <= 128);
}

static void test_simple_get(void **unused) {
    http_parser p;
    const http_request *r =
        expect_request(&p, "GET /topics/orders?since=4 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                       &default_limits);
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->target, "/topics/orders?since=4");
    assert_int_equal(r->version_minor, 1);
    assert_int_equal(r->header_count, 1);
    assert_string_equal(r->headers[0].name, "host");
    assert_string_equal(r->headers[0].value, "example.com:8080");
    assert_int_equal(r->headers[0].value_length, 16);
    assert_true(r->keep_alive);
    assert_false(r->expect_continue);
    assert_false(r->chunked);
    assert_false(r->has_content_length);
    assert_string_equal(r->body, "");
    assert_int_equal(r->body_length, 0);
    assert_true(http_parser_headers_complete(&p));
    assert_string_equal(http_request_header(r, "host"), "example.com:8080");
    assert_null(http_request_header(r, "accept"));

    /* Complete is sticky until reset. */
    size_t consumed = 7;
    assert_int_equal(http_parser_execute(&p, "GET / ", 6, &consumed), HTTP_PARSE_REQUEST_COMPLETE);
    assert_int_equal(consumed, 0);
    http_parser_free(&p);
    assert_null(p.state);
}

static void test_header_values_are_trimmed_and_names_lowercased(void **unused) {
    http_parser p;
    const http_request *r = expect_request(&p,
                                           "GET / HTTP/1.1\r\n"
                                           "HOST:h\r\n"
                                           "X-Custom-Thing: \t a \t b \t \r\n"
                                           "X-Empty:\r\n"
                                           "X-Spaces:    \r\n"
                                           "X-Obs-Text: caf\xc3\xa9\r\n"
                                           "\r\n",
                                           &default_limits);
    assert_int_equal(r->header_count, 5);
    assert_string_equal(r->headers[0].name, "host");
    assert_string_equal(r->headers[0].value, "h");
    assert_string_equal(r->headers[1].name, "x-custom-thing");
    assert_string_equal(r->headers[1].value, "a \t b");
    assert_int_equal(r->headers[1].value_length, 5);
    assert_string_equal(r->headers[2].value, "");
    assert_int_equal(r->headers[2].value_length, 0);
    assert_string_equal(r->headers[3].value, "");
    assert_string_equal(http_request_header(r, "x-obs-text"), "caf\xc3\xa9");
    http_parser_free(&p);
}

static void test_post_with_content_length(void **unused) {
    http_parser p;
    const http_request *r = expect_request(&p,
                                           "POST /topics/a/events HTTP/1.1\r\n"
                                           "Host: h\r\n"
                                           "Content-Type: application/json\r\n"
                                           "Content-Length: 13\r\n"
                                           "\r\n"
                                           "{\"n\":1,\"x\":2}",
                                           &default_limits);
    assert_string_equal(r->method, "POST");
    assert_true(r->has_content_length);
    assert_int_equal(r->content_length, 13);
    assert_int_equal(r->body_length, 13);
    assert_string_equal(r->body, "{\"n\":1,\"x\":2}");
    http_parser_free(&p);
}

static void test_body_with_nul_bytes(void **unused) {
    static const char input[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na\0b";
    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(http_parser_execute(&p, input, sizeof input - 1, &consumed),
                     HTTP_PARSE_REQUEST_COMPLETE);
    assert_int_equal(consumed, sizeof input - 1);
    const http_request *r = http_parser_request(&p);
    assert_int_equal(r->body_length, 3);
    assert_memory_equal(r->body, "a\0b", 4);
    http_parser_free(&p);
    free(assert_split_invariant(input, sizeof input - 1, &default_limits));
}

static void test_repeated_identical_content_length(void **unused) {
    http_parser p;
    const http_request *r = expect_request(&p,
                                           "POST / HTTP/1.1\r\nHost: h\r\n"
                                           "Content-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
                                           &default_limits);
    assert_int_equal(r->content_length, 2);
    assert_string_equal(r->body, "ok");
    http_parser_free(&p);
}

static void test_chunked_with_extensions_and_trailers(void **unused) {
    http_parser p;
    const http_request *r = expect_request(&p,
                                           "POST /in HTTP/1.1\r\n"
                                           "Host: h\r\n"
                                           "Transfer-Encoding: Chunked\r\n"
                                           "\r\n"
                                           "4;name=value;flag\r\n"
                                           "Wiki\r\n"
                                           "0005 ; q = \"a \\\"quoted\\\" ; value\"\r\n"
                                           "pedia\r\n"
                                           "E\r\n"
                                           " in\r\n\r\nchunks.\r\n"
                                           "0;last\r\n"
                                           "X-Checksum: abc\r\n"
                                           "X-Other:\r\n"
                                           "\r\n",
                                           &default_limits);
    assert_true(r->chunked);
    assert_false(r->has_content_length);
    assert_string_equal(r->body, "Wikipedia in\r\n\r\nchunks.");
    assert_int_equal(r->body_length, 23);
    /* Trailers are discarded, never merged into the headers. */
    assert_int_equal(r->header_count, 2);
    assert_null(http_request_header(r, "x-checksum"));
    http_parser_free(&p);
}

static void test_chunked_empty_body(void **unused) {
    http_parser p;
    const http_request *r = expect_request(
        &p, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &default_limits);
    assert_true(r->chunked);
    assert_string_equal(r->body, "");
    assert_int_equal(r->body_length, 0);
    http_parser_free(&p);
}

static void test_pipelined_requests(void **unused) {
    static const char first[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    static const char second[] = "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    char input[sizeof first + sizeof second];
    snprintf(input, sizeof input, "%s%s", first, second);

    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p, input, &consumed), HTTP_PARSE_REQUEST_COMPLETE);
    assert_int_equal(consumed, strlen(first));
    assert_string_equal(http_parser_request(&p)->body, "hello");
    assert_int_equal(http_parser_execute(&p, input + consumed, strlen(second), &consumed),
                     HTTP_PARSE_REQUEST_COMPLETE);
    assert_int_equal(consumed, 0);
    http_parser_reset(&p);
    assert_false(http_parser_started(&p));

    size_t offset = strlen(first);
    assert_int_equal(http_parser_execute(&p, input + offset, strlen(input) - offset, &consumed),
                     HTTP_PARSE_REQUEST_COMPLETE);
    assert_int_equal(consumed, strlen(second));
    const http_request *r = http_parser_request(&p);
    assert_string_equal(r->target, "/b");
    assert_false(r->keep_alive);
    http_parser_free(&p);

    char *description = assert_split_invariant(input, strlen(input), &default_limits);
    char expected[64];
    snprintf(expected, sizeof expected, "request [0,%zu) POST /a", strlen(first));
    assert_non_null(strstr(description, expected));
    snprintf(expected, sizeof expected, "request [%zu,%zu) GET /b", strlen(first), strlen(input));
    assert_non_null(strstr(description, expected));
    free(description);

    /* A chunked request followed by the start of another. */
    check_split_invariant("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nGET /part",
                          &default_limits);
}

static void test_keep_alive_rules(void **unused) {
    struct {
        const char *input;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: foo,  keep-alive \r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_parser p;
        const http_request *r = expect_request(&p, cases[i].input, &default_limits);
        if (r->keep_alive != cases[i].keep_alive) fail_msg("keep_alive wrong: %s", cases[i].input);
        http_parser_free(&p);
    }
    http_parser p;
    const http_request *r = expect_request(&p, "GET / HTTP/1.0\r\n\r\n", &default_limits);
    assert_int_equal(r->version_minor, 0);
    assert_int_equal(r->header_count, 0);
    http_parser_free(&p);
}

static void test_expect_continue(void **unused) {
    static const char headers[] =
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n";
    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p, headers, &consumed), HTTP_PARSE_NEED_MORE);
    assert_int_equal(consumed, strlen(headers));
    assert_true(http_parser_headers_complete(&p));
    const http_request *r = http_parser_request(&p);
    assert_non_null(r);
    assert_true(r->expect_continue);
    assert_int_equal(http_parser_execute(&p, "body", 4, &consumed), HTTP_PARSE_REQUEST_COMPLETE);
    assert_string_equal(http_parser_request(&p)->body, "body");
    http_parser_free(&p);

    r = expect_request(&p, "GET / HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\n\r\n",
                       &default_limits);
    assert_false(r->expect_continue);
    http_parser_free(&p);
    /* RFC 9110 §10.1.1: ignored in HTTP/1.0. */
    r = expect_request(&p, "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &default_limits);
    assert_false(r->expect_continue);
    http_parser_free(&p);
}

static void test_headers_not_complete_before_blank_line(void **unused) {
    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p, "GET / HTTP/1.1\r\nHost: h\r\n", &consumed),
                     HTTP_PARSE_NEED_MORE);
    assert_false(http_parser_headers_complete(&p));
    assert_null(http_parser_request(&p));
    assert_true(http_parser_started(&p));
    http_parser_free(&p);
}

static void test_leading_empty_lines_and_asterisk(void **unused) {
    http_parser p;
    const http_request *r =
        expect_request(&p, "\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &default_limits);
    assert_string_equal(r->method, "OPTIONS");
    assert_string_equal(r->target, "*");
    http_parser_free(&p);
    r = expect_request(&p, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &default_limits);
    assert_string_equal(http_request_header(r, "host"), "[::1]:8080");
    http_parser_free(&p);
    r = expect_request(&p, "GET / HTTP/1.1\r\nHost:\r\n\r\n", &default_limits);
    assert_string_equal(http_request_header(r, "host"), "");
    http_parser_free(&p);
}

/* ---------- hostile requests ---------- */

static void test_request_smuggling_defences(void **unused) {
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                       "Content-Length: 3\r\n\r\n0\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                       "Content-Length: 4\r\n\r\nabcd");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabcd");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3,\r\n\r\nabc");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3 3\r\n\r\nabc");
    expect_bad_request(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n");
    expect_bad_request(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    /* Fits in 64 bits, so it is a size, just a too large one. */
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n", 413,
                 "payload_too_large");

    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p,
                                 "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n",
                                 &consumed),
                     HTTP_PARSE_ERROR);
    assert_string_equal(p.error_message,
                        "The request has both Content-Length and Transfer-Encoding.");
    http_parser_free(&p);
}

static void test_transfer_codings(void **unused) {
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n");
    expect_bad_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n");
    expect_bad_request("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

static void test_bad_chunks(void **unused) {
#define CHUNKED_HEAD "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    expect_bad_request(CHUNKED_HEAD "zz\r\n");
    expect_bad_request(CHUNKED_HEAD "\r\n");
    expect_bad_request(CHUNKED_HEAD "-1\r\n");
    expect_bad_request(CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "5\rhello\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "10000000000000000\r\n");  /* 17 digits */
    expect_bad_request(CHUNKED_HEAD "00000000000000001\r\n");  /* 17 digits with zeros */
    expect_bad_request(CHUNKED_HEAD "3\r\nabcX\r\n0\r\n\r\n"); /* no CRLF after data */
    expect_bad_request(CHUNKED_HEAD "3\r\nabc\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3\r\nabc\r0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3 \r\nabc\r\n0\r\n\r\n"); /* whitespace without extension */
    expect_bad_request(CHUNKED_HEAD "3;\r\nabc\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3;a=\r\nabc\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3;a=\"x\r\nabc\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3;a=b c\r\nabc\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "3;a\0\r\nabc\r\n0\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "0\r\nBad Name: x\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "0\r\nX: a\r\n folded\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "0\r\nX: a\0b\r\n\r\n");
    expect_bad_request(CHUNKED_HEAD "0\r\nX: a\r\n\rx");
    expect_bad_request(CHUNKED_HEAD "0\r\nX: a\n\r\n");
    expect_bad_request(CHUNKED_HEAD "0\r\n\n");
    /* 16 digits fit in 64 bits: a huge size is a too large body, not a syntax error. */
    expect_error(CHUNKED_HEAD "FFFFFFFFFFFFFFFF\r\n", 413, "payload_too_large");
}

static void test_line_endings(void **unused) {
    expect_bad_request("GET / HTTP/1.1\nHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\n\n");
    expect_bad_request("GET / HTTP/1.1\rHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\n\rX");
    expect_bad_request("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_bad_header_fields(void **unused) {
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n\ttwo\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\n Host: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost : h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: z\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01 b\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x0b\r\n\r\n");

    static const char with_nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    http_parser p;
    http_parser_init(&p, &default_limits);
    size_t consumed = 0;
    assert_int_equal(http_parser_execute(&p, with_nul, sizeof with_nul - 1, &consumed),
                     HTTP_PARSE_ERROR);
    assert_int_equal(p.error_status, 400);
    /* Refused at the NUL itself, not at the end of the line. */
    assert_int_equal(consumed, strlen(with_nul) + 1);
    http_parser_free(&p);
    free(assert_split_invariant(with_nul, sizeof with_nul - 1, &default_limits));
}

static void test_host_rules(void **unused) {
    expect_bad_request("GET / HTTP/1.1\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
    expect_bad_request("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n");
}

static void test_request_line_errors(void **unused) {
    expect_bad_request("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
    expect_bad_request("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    expect_bad_request("GET * HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET  / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET /  HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.1 \r\nHost: h\r\n\r\n");
    expect_bad_request("GET /\r\n\r\n");
    expect_bad_request("GET\r\n\r\n");
    expect_bad_request(" GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("G(T / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / http/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.10\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/11\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / HTTP/1.x\r\nHost: h\r\n\r\n");
    expect_bad_request("GET / FOO/1.1\r\nHost: h\r\n\r\n");
    expect_bad_request("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
}

static void test_unsupported_versions(void **unused) {
    expect_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "bad_request");
    expect_error("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "bad_request");
    expect_error("GET / HTTP/0.9\r\n\r\n", 505, "bad_request");
    expect_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "bad_request");
}

static void test_header_count_limit(void **unused) {
    http_limits limits = default_limits;
    limits.max_headers = 3;
    http_parser p;
    const http_request *r =
        expect_request(&p, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", &limits);
    assert_int_equal(r->header_count, 3);
    http_parser_free(&p);
    expect_error_with("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits, 431,
                      "headers_too_large");
}

static void test_header_bytes_limit(void **unused) {
    static const char input[] = "GET /x HTTP/1.1\r\nHost: h\r\nX-Pad: abcdef\r\n\r\n";
    http_limits limits = default_limits;
    limits.max_header_bytes = strlen(input);
    http_parser p;
    expect_request(&p, input, &limits);
    http_parser_free(&p);

    limits.max_header_bytes = strlen(input) - 1;
    expect_error_with(input, &limits, 431, "headers_too_large");

    /* Over the limit is refused as it arrives, not when the line ends. */
    limits.max_header_bytes = 64;
    char long_line[200];
    snprintf(long_line, sizeof long_line, "GET /%0100d", 0);
    http_parser_init(&p, &limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p, long_line, &consumed), HTTP_PARSE_ERROR);
    assert_int_equal(p.error_status, 431);
    assert_int_equal(consumed, 65);
    http_parser_free(&p);

    /* Leading empty lines count too, so a stream of CRLF cannot go on for ever. */
    limits.max_header_bytes = 8;
    expect_error_with("\r\n\r\n\r\n\r\n\r\n", &limits, 431, "headers_too_large");
}

static void test_chunk_extensions_and_trailers_count_as_header_bytes(void **unused) {
    static const char head[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"; /* 56 bytes */
    assert_int_equal(strlen(head), 56);
    http_limits limits = default_limits;
    limits.max_header_bytes = 56 + 10;

    /* The extension ";abcdefg" (8 bytes, CRLF excluded) + the empty trailer section's CRLF:
     * exactly at the limit. */
    http_parser p;
    const http_request *r = expect_request(&p, CHUNKED_HEAD "1;abcdefg\r\nx\r\n0\r\n\r\n", &limits);
    assert_string_equal(r->body, "x");
    http_parser_free(&p);
    expect_error_with(CHUNKED_HEAD "1;abcdefgh\r\nx\r\n0\r\n\r\n", &limits, 431,
                      "headers_too_large");

    /* "X: 123" CRLF + final CRLF = 10 trailer bytes: exactly at the limit. */
    expect_request(&p, CHUNKED_HEAD "1\r\nx\r\n0\r\nX: 123\r\n\r\n", &limits);
    http_parser_free(&p);
    expect_error_with(CHUNKED_HEAD "1\r\nx\r\n0\r\nX: 1234\r\n\r\n", &limits, 431,
                      "headers_too_large");
    /* Many small chunks without extensions are fine: only extensions count. */
    expect_request(&p, CHUNKED_HEAD "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n1\r\ne\r\n0\r\n\r\n",
                   &limits);
    assert_string_equal(http_parser_request(&p)->body, "abcde");
    http_parser_free(&p);
}

static void test_body_limit(void **unused) {
    http_limits limits = default_limits;
    limits.max_body_bytes = 10;
    http_parser p;
    expect_request(&p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
                   &limits);
    http_parser_free(&p);

    /* Refused from Content-Length alone, before the body arrives. */
    static const char too_large[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    http_parser_init(&p, &limits);
    size_t consumed = 0;
    assert_int_equal(parse_whole(&p, too_large, &consumed), HTTP_PARSE_ERROR);
    assert_int_equal(p.error_status, 413);
    assert_string_equal(p.error_code, "payload_too_large");
    assert_int_equal(consumed, strlen(too_large));
    http_parser_free(&p);
    expect_error_with(too_large, &limits, 413, "payload_too_large");

    expect_request(&p, CHUNKED_HEAD "4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n", &limits);
    assert_int_equal(http_parser_request(&p)->body_length, 10);
    http_parser_free(&p);
    /* A chunk that would cross the limit is refused at its size line. */
    expect_error_with(CHUNKED_HEAD "4\r\n0123\r\n7\r\n", &limits, 413, "payload_too_large");
    expect_error_with(CHUNKED_HEAD "b\r\n", &limits, 413, "payload_too_large");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_parser_owns_no_memory),
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_header_values_are_trimmed_and_names_lowercased),
        cmocka_unit_test(test_post_with_content_length),
        cmocka_unit_test(test_body_with_nul_bytes),
        cmocka_unit_test(test_repeated_identical_content_length),
        cmocka_unit_test(test_chunked_with_extensions_and_trailers),
        cmocka_unit_test(test_chunked_empty_body),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_headers_not_complete_before_blank_line),
        cmocka_unit_test(test_leading_empty_lines_and_asterisk),
        cmocka_unit_test(test_request_smuggling_defences),
        cmocka_unit_test(test_transfer_codings),
        cmocka_unit_test(test_bad_chunks),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_bad_header_fields),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_unsupported_versions),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_chunk_extensions_and_trailers_count_as_header_bytes),
        cmocka_unit_test(test_body_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer harness for the HTTP/1.1 request parser.
 *
 * The input is a byte stream from a client. It is parsed three ways: whole, split at one position
 * derived from the first byte, and (for small inputs) one byte at a time. Pipelined requests are
 * handled as a connection would: reset and continue with the unconsumed rest. All three runs must
 * describe the same requests and the same error, and every result must respect the documented
 * invariants. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "http/http_parser.h"

enum { MAX_BYTEWISE_INPUT = 4096 };

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #condition);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Small limits so the fuzzer reaches them; the second set is the server's default. */
static const http_limits limit_sets[] = {
    {.max_header_bytes = 300, .max_body_bytes = 64, .max_headers = 6},
    {.max_header_bytes = 16384, .max_body_bytes = 1048576, .max_headers = 100},
};

static bool is_token_char(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void check_request(const http_request *r, const http_limits *limits) {
    CHECK(r != NULL);
    CHECK(r->method[0] != '\0');
    for (const char *c = r->method; *c; c++)
        CHECK(is_token_char((unsigned char)*c));
    CHECK(r->target[0] == '/' || strcmp(r->target, "*") == 0);
    CHECK(r->version_minor == 0 || r->version_minor == 1);
    CHECK(r->header_count <= limits->max_headers);
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        CHECK(h->name[0] != '\0');
        for (const char *c = h->name; *c; c++) {
            CHECK(is_token_char((unsigned char)*c) && !(*c >= 'A' && *c <= 'Z'));
        }
        CHECK(strlen(h->value) == h->value_length);
        if (h->value_length > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_length - 1] != ' ' && h->value[h->value_length - 1] != '\t');
        }
    }
    CHECK(!(r->chunked && r->has_content_length));
    CHECK(r->body != NULL);
    CHECK(r->body[r->body_length] == '\0');
    CHECK(r->body_length <= limits->max_body_bytes);
    if (r->has_content_length) CHECK(r->body_length == r->content_length);
    if (!r->chunked && !r->has_content_length) CHECK(r->body_length == 0);
}

static void check_error(const http_parser *p) {
    switch (p->error_status) {
    case 400:
    case 505:
        CHECK(strcmp(p->error_code, "bad_request") == 0);
        break;
    case 413:
        CHECK(strcmp(p->error_code, "payload_too_large") == 0);
        break;
    case 431:
        CHECK(strcmp(p->error_code, "headers_too_large") == 0);
        break;
    default:
        CHECK(!"error status outside the documented set");
    }
    CHECK(p->error_message != NULL && strlen(p->error_message) > 10);
}

/* Parses data in pieces ending at the given cuts (ascending) and describes what came out. */
static void describe(const uint8_t *data, size_t size, const http_limits *limits,
                     const size_t *cuts, size_t cut_count, text *out) {
    const char *input = (const char *)data;
    http_parser p;
    http_parser_init(&p, limits);
    size_t offset = 0;
    size_t request_start = 0;
    bool stopped = false;
    for (size_t piece = 0; piece <= cut_count && !stopped; piece++) {
        size_t piece_end = piece < cut_count ? cuts[piece] : size;
        while (offset < piece_end) {
            size_t available = piece_end - offset;
            size_t consumed = SIZE_MAX;
            http_parse_status status =
                http_parser_execute(&p, input + offset, available, &consumed);
            CHECK(consumed <= available);
            offset += consumed;
            CHECK(http_parser_started(&p));
            if (status == HTTP_PARSE_NEED_MORE) {
                CHECK(consumed == available);
                CHECK(p.error_status == 0);
                continue;
            }
            /* Sticky until reset, consuming nothing. */
            size_t again = SIZE_MAX;
            CHECK(http_parser_execute(&p, input + offset, size - offset, &again) == status);
            CHECK(again == 0);
            if (status == HTTP_PARSE_ERROR) {
                check_error(&p);
                text_printf(out, "error %d %s at %zu\n", p.error_status, p.error_message, offset);
                stopped = true;
                break;
            }
            CHECK(status == HTTP_PARSE_REQUEST_COMPLETE);
            CHECK(p.error_status == 0);
            CHECK(offset > request_start);
            CHECK(http_parser_headers_complete(&p));
            const http_request *r = http_parser_request(&p);
            check_request(r, limits);
            text_printf(out, "request [%zu,%zu) %s %s 1.%d ka=%d ec=%d ch=%d cl=%d/%llu\n",
                        request_start, offset, r->method, r->target, r->version_minor,
                        r->keep_alive, r->expect_continue, r->chunked, r->has_content_length,
                        (unsigned long long)r->content_length);
            for (size_t i = 0; i < r->header_count; i++) {
                text_printf(out, "%s=", r->headers[i].name);
                text_append(out, r->headers[i].value, r->headers[i].value_length);
                text_append_char(out, '\n');
            }
            text_printf(out, "body %zu:", r->body_length);
            text_append(out, r->body, r->body_length);
            text_append_char(out, '\n');
            http_parser_reset(&p);
            CHECK(p.state == NULL && !http_parser_started(&p));
            request_start = offset;
        }
    }
    if (!stopped) text_printf(out, "need more from %zu\n", request_start);
    http_parser_free(&p);
    CHECK(p.state == NULL);
    CHECK(!text_failed(out));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const http_limits *limits = &limit_sets[size > 0 ? data[0] & 1 : 0];

    text whole;
    text_init(&whole);
    describe(data, size, limits, NULL, 0, &whole);

    if (size > 1) {
        size_t cut = 1 + (size_t)data[0] * 131u % (size - 1);
        text split;
        text_init(&split);
        describe(data, size, limits, &cut, 1, &split);
        CHECK(split.length == whole.length && memcmp(split.data, whole.data, whole.length) == 0);
        text_free(&split);
    }

    if (size > 1 && size <= MAX_BYTEWISE_INPUT) {
        size_t *cuts = malloc((size - 1) * sizeof *cuts);
        CHECK(cuts != NULL);
        for (size_t i = 0; i < size - 1; i++)
            cuts[i] = i + 1;
        text bytewise;
        text_init(&bytewise);
        describe(data, size, limits, cuts, size - 1, &bytewise);
        CHECK(bytewise.length == whole.length &&
              memcmp(bytewise.data, whole.data, whole.length) == 0);
        text_free(&bytewise);
        free(cuts);
    }

    text_free(&whole);
    return 0;
}

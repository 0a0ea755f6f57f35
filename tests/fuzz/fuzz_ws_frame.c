/* libFuzzer harness for the WebSocket frame parser, with and without permessage-deflate.
 * The first input byte picks the configuration and the chunking; the rest is the client's byte
 * stream. The stream is parsed whole and in pseudo-random chunks: both must deliver the same
 * messages and end with the same verdict, and every delivered message must respect the protocol
 * (text is UTF-8, sizes within the limit, close codes valid) with memory bounded by the limit. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "ws/ws.h"

#define MAX_RECORDS 4096

static void check(bool condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_ws_frame: %s\n", what);
        abort();
    }
}

typedef struct record {
    uint8_t opcode;
    unsigned close_code;
    size_t length;
    uint64_t hash;
} record;

typedef struct outcome {
    record records[MAX_RECORDS];
    size_t count;
    bool error;
    unsigned error_code;
} outcome;

static uint64_t fnv1a(const char *data, size_t length) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < length; i++)
        h = (h ^ (uint8_t)data[i]) * 1099511628211ull;
    return h;
}

static void check_message(const ws_parser *p, const ws_message *m) {
    check(m->data != NULL, "message data is never NULL");
    switch (m->opcode) {
    case WS_OPCODE_TEXT:
        check(utf8_validate(m->data, m->length, NULL), "text messages are UTF-8");
        /* fall through */
    case WS_OPCODE_BINARY:
        check(m->length <= p->max_message, "messages are within the limit");
        check(!p->reject_binary || m->opcode == WS_OPCODE_TEXT, "binary refused when asked");
        break;
    case WS_OPCODE_PING:
    case WS_OPCODE_PONG:
        check(m->length <= 125, "control payloads are short");
        break;
    case WS_OPCODE_CLOSE:
        check(m->length <= 123, "close reasons are short");
        check(m->close_code == 0 ? m->length == 0 : ws_close_code_is_valid(m->close_code),
              "close codes are valid");
        check(utf8_validate(m->data, m->length, NULL), "close reasons are UTF-8");
        break;
    default:
        check(false, "only known opcodes are delivered");
    }
}

static void parse(const ws_parser_config *config, const uint8_t *input, size_t size,
                  uint32_t chunk_seed, outcome *out) {
    memset(out, 0, sizeof *out);
    char *data = malloc(size ? size : 1);
    check(data != NULL, "malloc");
    if (size) memcpy(data, input, size);
    ws_parser p;
    ws_parser_init(&p, config);
    size_t heap_bound = p.max_message + 1 + 64 * 1024;
    size_t pos = 0;
    uint32_t seed = chunk_seed;
    bool stop = false;
    while (!stop) {
        size_t n = size - pos;
        if (chunk_seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 23;
            if (want < n) n = want;
        }
        char *chunk = data + pos;
        size_t left = n;
        for (;;) {
            size_t used = 0;
            ws_message m;
            ws_parse_status status = ws_parser_feed(&p, chunk, left, &used, &m);
            check(ws_parser_heap_bytes(&p) <= heap_bound, "memory stays within the limit");
            if (status == WS_PARSE_ERROR) {
                check(used == 0, "an error consumes nothing");
                check(ws_parser_heap_bytes(&p) == 0, "a failed parser holds nothing");
                out->error = true;
                out->error_code = p.close_code;
                stop = true;
                break;
            }
            check(used <= left, "consumed within the input");
            if (status == WS_PARSE_NEED_MORE) {
                check(used == left, "need-more consumes everything");
                if (p.message_opcode == 0 && config->deflate.client_no_context_takeover)
                    check(ws_parser_heap_bytes(&p) == 0, "an idle parser holds nothing");
                break;
            }
            check_message(&p, &m);
            if (out->count < MAX_RECORDS) {
                record *r = &out->records[out->count++];
                r->opcode = (uint8_t)m.opcode;
                r->close_code = m.close_code;
                r->length = m.length;
                r->hash = fnv1a(m.data, m.length);
            }
            chunk += used;
            left -= used;
        }
        pos += n;
        if (pos == size) stop = true;
    }
    ws_parser_free(&p);
    free(data);
}

static outcome whole, chunked;

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = bytes[0];
    ws_parser_config config = {0};
    if (flags & 1) {
        config.deflate.enabled = true;
        config.deflate.server_no_context_takeover = true;
        config.deflate.client_no_context_takeover = !(flags & 8);
        config.deflate.server_max_window_bits = 15;
        config.deflate.client_max_window_bits = 15;
    }
    config.reject_binary = (flags & 2) != 0;
    config.max_message = (flags & 4) ? 300 : 0;
    uint32_t chunk_seed = (uint32_t)(flags >> 4) + 1;

    parse(&config, bytes + 1, size - 1, 0, &whole);
    parse(&config, bytes + 1, size - 1, chunk_seed, &chunked);
    check(whole.count == chunked.count, "same number of messages however the bytes are split");
    for (size_t i = 0; i < whole.count; i++) {
        check(whole.records[i].opcode == chunked.records[i].opcode, "same opcodes");
        check(whole.records[i].length == chunked.records[i].length, "same lengths");
        check(whole.records[i].hash == chunked.records[i].hash, "same payloads");
        check(whole.records[i].close_code == chunked.records[i].close_code, "same close codes");
    }
    check(whole.error == chunked.error, "same verdict");
    check(whole.error_code == chunked.error_code, "same close code for the failure");
    if (whole.error) {
        unsigned c = whole.error_code;
        check(c == 1002 || c == 1003 || c == 1007 || c == 1009 || c == 1011,
              "failures use the documented codes");
    }
    return 0;
}

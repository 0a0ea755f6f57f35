/* permessage-deflate: the RFC 7692 §7.2.3 examples, round trips through the parser (fragmented,
 * with control frames between, split everywhere), context takeover, zip bombs bounded by the
 * message limit, corrupt data, fail-fast UTF-8 on inflated text, and the memory it costs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws/ws.h"

static const uint8_t MASK[4] = {0xa1, 0x5b, 0x00, 0xfe};

enum { FIN = 0x80, RSV1 = 0x40 };
enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_PING = 9 };

static const ws_parser_config DEFLATE = {.deflate = {.enabled = true,
                                                     .server_no_context_takeover = true,
                                                     .client_no_context_takeover = true,
                                                     .server_max_window_bits = 15,
                                                     .client_max_window_bits = 15}};

static const ws_parser_config TAKEOVER = {.deflate = {.enabled = true,
                                                      .server_no_context_takeover = true,
                                                      .client_no_context_takeover = false,
                                                      .server_max_window_bits = 15,
                                                      .client_max_window_bits = 15}};

/* ---- frames ---- */

static void frame(text *t, uint8_t first, const void *payload, size_t n) {
    uint8_t header[14];
    size_t h = 0;
    header[h++] = first;
    if (n < 126) {
        header[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        header[h++] = 0x80 | 126;
        header[h++] = (uint8_t)(n >> 8);
        header[h++] = (uint8_t)n;
    } else {
        header[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            header[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    memcpy(header + h, MASK, 4);
    h += 4;
    text_append(t, header, h);
    size_t start = t->length;
    if (n) text_append(t, payload, n);
    for (size_t i = 0; i < n; i++)
        t->data[start + i] ^= (char)MASK[i & 3];
}

/* An unmasked frame as printed in RFC 7692 (short lengths only), sent masked. */
static void rfc_frame(text *t, const uint8_t *bytes, size_t n) {
    assert_true(n >= 2 && bytes[1] < 126 && (size_t)bytes[1] == n - 2);
    frame(t, bytes[0], bytes + 2, n - 2);
}

/* ---- running the parser ---- */

#define MAX_GOT 8

typedef struct got {
    int count;
    ws_opcode opcode[MAX_GOT];
    size_t length[MAX_GOT];
    char *data[MAX_GOT];
    bool error;
    unsigned error_code;
    size_t max_heap;
} got;

static void got_free(got *g) {
    for (int i = 0; i < g->count; i++)
        free(g->data[i]);
    memset(g, 0, sizeof *g);
}

static bool feed(ws_parser *p, char *data, size_t n, got *g) {
    for (;;) {
        size_t used = 0;
        ws_message m;
        ws_parse_status status = ws_parser_feed(p, data, n, &used, &m);
        size_t heap = ws_parser_heap_bytes(p);
        if (heap > g->max_heap) g->max_heap = heap;
        if (status == WS_PARSE_ERROR) {
            g->error = true;
            g->error_code = p->close_code;
            assert_int_equal(ws_parser_heap_bytes(p), 0);
            return false;
        }
        if (status == WS_PARSE_NEED_MORE) return true;
        assert_true(g->count < MAX_GOT);
        g->opcode[g->count] = m.opcode;
        g->length[g->count] = m.length;
        g->data[g->count] = malloc(m.length + 1);
        memcpy(g->data[g->count], m.data, m.length);
        g->data[g->count][m.length] = '\0';
        g->count++;
        data += used;
        n -= used;
    }
}

static void run(const ws_parser_config *config, const text *input, const size_t *cuts,
                size_t cut_count, got *g) {
    memset(g, 0, sizeof *g);
    char *copy = malloc(input->length + 1);
    if (input->length) memcpy(copy, input->data, input->length);
    ws_parser p;
    ws_parser_init(&p, config);
    size_t start = 0;
    bool ok = true;
    for (size_t i = 0; ok && i <= cut_count; i++) {
        size_t end = i < cut_count ? cuts[i] : input->length;
        ok = feed(&p, copy + start, end - start, g);
        start = end;
    }
    if (ok && p.message_opcode == 0 && config->deflate.client_no_context_takeover) {
        size_t used;
        ws_message m;
        ws_parser_feed(&p, copy, 0, &used, &m);
        assert_int_equal(ws_parser_heap_bytes(&p), 0); /* idle: nothing held, zlib included */
    }
    ws_parser_free(&p);
    free(copy);
}

static void assert_same(const got *a, const got *b) {
    assert_int_equal(a->count, b->count);
    for (int i = 0; i < a->count; i++) {
        assert_int_equal(a->opcode[i], b->opcode[i]);
        assert_int_equal(a->length[i], b->length[i]);
        assert_memory_equal(a->data[i], b->data[i], a->length[i]);
    }
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->error_code, b->error_code);
}

static void parse_everywhere(const ws_parser_config *config, const text *input, got *result) {
    run(config, input, NULL, 0, result);
    got other;
    for (size_t cut = 0; cut <= input->length; cut++) {
        if (input->length > 300 && cut > 30 && cut + 30 < input->length && cut % 1999 != 0)
            continue;
        run(config, input, &cut, 1, &other);
        assert_same(result, &other);
        got_free(&other);
    }
    if (input->length <= 20000) {
        size_t *all = malloc((input->length + 1) * sizeof *all);
        for (size_t i = 0; i < input->length; i++)
            all[i] = i + 1;
        run(config, input, all, input->length, &other);
        assert_same(result, &other);
        got_free(&other);
        free(all);
    }
}

static void expect_messages(const ws_parser_config *config, const text *input, int count,
                            const char *expected) {
    got g;
    parse_everywhere(config, input, &g);
    assert_false(g.error);
    assert_int_equal(g.count, count);
    for (int i = 0; i < count; i++) {
        assert_int_equal(g.opcode[i], WS_OPCODE_TEXT);
        assert_string_equal(g.data[i], expected);
    }
    got_free(&g);
}

static void expect_error(const ws_parser_config *config, const text *input, unsigned code) {
    got g;
    parse_everywhere(config, input, &g);
    assert_true(g.error);
    assert_int_equal(g.error_code, code);
    got_free(&g);
}

static char *random_bytes(size_t n, uint32_t seed, bool letters) {
    char *data = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = letters ? (char)('a' + (seed >> 16) % 26) : (char)(seed >> 16);
    }
    data[n] = '\0';
    return data;
}

/* ---- RFC 7692 §7.2.3 ---- */

static void rfc_examples_inflate_to_hello(void **state) {
    static const uint8_t single[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t first[] = {0x41, 0x03, 0xf2, 0x48, 0xcd};
    static const uint8_t second[] = {0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t stored[] = {0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff,
                                     0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t two_blocks[] = {0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00,
                                         0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
    text input;

    text_init(&input); /* §7.2.3.1 */
    rfc_frame(&input, single, sizeof single);
    expect_messages(&DEFLATE, &input, 1, "Hello");
    text_free(&input);

    text_init(&input); /* §7.2.3.1, fragmented, with a ping between */
    rfc_frame(&input, first, sizeof first);
    frame(&input, FIN | OP_PING, "", 0);
    rfc_frame(&input, second, sizeof second);
    got g;
    parse_everywhere(&DEFLATE, &input, &g);
    assert_int_equal(g.count, 2);
    assert_int_equal(g.opcode[0], WS_OPCODE_PING);
    assert_string_equal(g.data[1], "Hello");
    got_free(&g);
    text_free(&input);

    text_init(&input); /* §7.2.3.3 no compression (a stored block) */
    rfc_frame(&input, stored, sizeof stored);
    expect_messages(&DEFLATE, &input, 1, "Hello");
    text_free(&input);

    text_init(&input); /* §7.2.3.4 BFINAL set */
    rfc_frame(&input, bfinal, sizeof bfinal);
    expect_messages(&DEFLATE, &input, 1, "Hello");
    text_free(&input);

    text_init(&input); /* §7.2.3.5 two deflate blocks in one message */
    rfc_frame(&input, two_blocks, sizeof two_blocks);
    expect_messages(&DEFLATE, &input, 1, "Hello");
    text_free(&input);
}

static void rfc_example_with_context_takeover(void **state) {
    /* §7.2.3.2: the second "Hello" refers back into the first message's window. */
    static const uint8_t first[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t bfinal[] = {0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t again[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
    text input;
    text_init(&input);
    rfc_frame(&input, first, sizeof first);
    rfc_frame(&input, again, sizeof again);
    expect_messages(&TAKEOVER, &input, 2, "Hello");
    text_free(&input);
    /* The window survives a message that ended its deflate stream (BFINAL). */
    text_init(&input);
    rfc_frame(&input, bfinal, sizeof bfinal);
    rfc_frame(&input, again, sizeof again);
    rfc_frame(&input, again, sizeof again);
    expect_messages(&TAKEOVER, &input, 3, "Hello");
    text_free(&input);
    /* Without takeover the back-reference has nothing to point at. */
    text_init(&input);
    rfc_frame(&input, first, sizeof first);
    rfc_frame(&input, again, sizeof again);
    expect_error(&DEFLATE, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
}

static void empty_compressed_messages(void **state) {
    text input;
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_TEXT, "\x00", 1);
    frame(&input, FIN | RSV1 | OP_TEXT, "", 0);
    frame(&input, RSV1 | OP_TEXT, "", 0);
    frame(&input, FIN | OP_CONT, "", 0);
    expect_messages(&DEFLATE, &input, 3, "");
    text_free(&input);
}

static void uncompressed_messages_still_work(void **state) {
    text input;
    text_init(&input);
    frame(&input, FIN | OP_TEXT, "plain", 5);
    frame(&input, OP_TEXT, "pl", 2);
    frame(&input, FIN | OP_CONT, "ain", 3);
    expect_messages(&DEFLATE, &input, 2, "plain");
    text_free(&input);
}

/* ---- outgoing ---- */

static void hello_deflates_like_the_rfc(void **state) {
    ws_deflater d;
    ws_deflater_init(&d, 15, true);
    assert_null(d.stream); /* nothing allocated before the first message */
    for (int round = 0; round < 3; round++) {
        text out;
        text_init(&out);
        assert_true(ws_deflate_message(&d, "Hello", 5, &out));
        assert_int_equal(out.length, 7);
        assert_memory_equal(out.data, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
        text_clear(&out);
        assert_true(ws_deflate_message(&d, "", 0, &out));
        assert_int_equal(out.length, 1);
        assert_int_equal(out.data[0], 0);
        text_free(&out);
    }
    print_message("deflater at 15 window bits: %zu bytes of zlib state\n", d.heap_bytes);
    ws_deflater_release(&d);
    assert_null(d.stream);
    assert_int_equal(d.heap_bytes, 0);
    ws_deflater_free(&d);
}

static void encode_message_compresses_only_when_it_helps(void **state) {
    ws_deflater d;
    ws_deflater_init(&d, 15, true);
    text out;
    text_init(&out);
    /* "Hello" deflates to 7 bytes: sent plain. */
    assert_true(ws_encode_message(&out, WS_OPCODE_TEXT, "Hello", 5, &d));
    assert_int_equal(out.length, 7);
    assert_memory_equal(out.data, "\x81\x05Hello", 7);

    size_t sizes[] = {200, 70000, 300000};
    for (size_t k = 0; k < 3; k++) {
        size_t n = sizes[k];
        char *data = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            data[i] = "{\"op\":\"event\",\"topic\":\"orders/1\"} "[i % 35];
        text_clear(&out);
        text_append_cstring(&out, "prefix kept");
        assert_true(ws_encode_message(&out, WS_OPCODE_TEXT, data, n, &d));
        assert_memory_equal(out.data, "prefix kept", 11);
        assert_int_equal((uint8_t)out.data[11], 0xC1); /* FIN + RSV1 + text */
        size_t header = (uint8_t)out.data[12] < 126 ? 2 : (uint8_t)out.data[12] == 126 ? 4 : 10;
        size_t compressed = out.length - 11 - header;
        assert_true(compressed < n / (n < 1000 ? 2 : 10));
        assert_int_equal(ws_frame_header_size(compressed), header);
        /* The same bytes every time (encode once, share with every connection). */
        text again;
        text_init(&again);
        assert_true(ws_encode_message(&again, WS_OPCODE_TEXT, data, n, &d));
        assert_int_equal(again.length, out.length - 11);
        assert_memory_equal(again.data, out.data + 11, again.length);
        text_free(&again);
        /* A client inflates it back. */
        text input;
        text_init(&input);
        frame(&input, FIN | RSV1 | OP_TEXT, out.data + 11 + header, compressed);
        got g;
        run(&DEFLATE, &input, NULL, 0, &g);
        assert_false(g.error);
        assert_int_equal(g.length[0], n);
        assert_memory_equal(g.data[0], data, n);
        got_free(&g);
        text_free(&input);
        free(data);
    }
    /* Control frames are never compressed; without a deflater nothing is. */
    text_clear(&out);
    assert_true(
        ws_encode_message(&out, WS_OPCODE_PING, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 32, &d));
    assert_int_equal((uint8_t)out.data[0], 0x89);
    text_clear(&out);
    assert_true(
        ws_encode_message(&out, WS_OPCODE_BINARY, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 32, NULL));
    assert_int_equal((uint8_t)out.data[0], 0x82);
    text_free(&out);
    ws_deflater_free(&d);
}

/* Compresses data as one message and sends it in `pieces` fragments with a ping between. */
static void compressed_message(text *input, ws_deflater *d, uint8_t opcode, const char *data,
                               size_t n, size_t pieces) {
    text compressed;
    text_init(&compressed);
    assert_true(ws_deflate_message(d, data, n, &compressed));
    size_t step = compressed.length / pieces + 1;
    size_t at = 0;
    for (size_t i = 0; i < pieces; i++) {
        size_t end = i + 1 == pieces ? compressed.length : at + step;
        if (end > compressed.length) end = compressed.length;
        uint8_t first =
            (uint8_t)((i == 0 ? (RSV1 | opcode) : OP_CONT) | (i + 1 == pieces ? FIN : 0));
        frame(input, first, compressed.data + at, end - at);
        if (i + 1 < pieces) frame(input, FIN | OP_PING, "between", 7);
        at = end;
    }
    text_free(&compressed);
}

static void round_trips(void **state) {
    static const size_t sizes[] = {0, 1, 100, 5000, 70000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int kind = 0; kind < 3; kind++) {
            size_t n = sizes[s];
            char *data = random_bytes(n, (uint32_t)(n + (size_t)kind), kind != 1);
            if (kind == 2)
                for (size_t i = 0; i + 3 <= n; i += 7)
                    memcpy(data + i, "\xE2\x82\xAC", 3);
            uint8_t opcode = kind == 1 ? OP_BINARY : OP_TEXT;
            for (size_t pieces = 1; pieces <= 3; pieces += 2) {
                ws_deflater d;
                ws_deflater_init(&d, 15, true);
                text input;
                text_init(&input);
                compressed_message(&input, &d, opcode, data, n, pieces);
                compressed_message(&input, &d, opcode, data, n, 1);
                got g;
                parse_everywhere(&DEFLATE, &input, &g);
                assert_false(g.error);
                int messages = 0;
                for (int i = 0; i < g.count; i++) {
                    if (g.opcode[i] == WS_OPCODE_PING) continue;
                    assert_int_equal(g.opcode[i], opcode);
                    assert_int_equal(g.length[i], n);
                    assert_memory_equal(g.data[i], data, n);
                    messages++;
                }
                assert_int_equal(messages, 2);
                got_free(&g);
                text_free(&input);
                ws_deflater_free(&d);
            }
            free(data);
        }
    }
}

static void every_window_size_round_trips(void **state) {
    char *data = random_bytes(40000, 7, true);
    memcpy(data + 30000, data, 10000); /* a match 30000 back: only a 15-bit window reaches it */
    for (int bits = 8; bits <= 15; bits++) {
        ws_deflater d;
        ws_deflater_init(&d, bits, true);
        assert_int_equal(d.window_bits, bits < 9 ? 9 : bits);
        text input;
        text_init(&input);
        compressed_message(&input, &d, OP_TEXT, data, 40000, 1);
        got g;
        run(&DEFLATE, &input, NULL, 0, &g);
        assert_false(g.error);
        assert_memory_equal(g.data[0], data, 40000);
        got_free(&g);
        if (bits == 9 || bits == 15)
            print_message("deflater at %d window bits: %zu bytes\n", bits, d.heap_bytes);
        text_free(&input);
        ws_deflater_free(&d);
    }
    free(data);
}

static void deflater_with_context_takeover(void **state) {
    ws_deflater d;
    ws_deflater_init(&d, 15, false);
    const char *message = "{\"op\":\"event\",\"topic\":\"chat/1\",\"data\":\"hello there\"}";
    size_t n = strlen(message);
    text first, second;
    text_init(&first);
    text_init(&second);
    assert_true(ws_deflate_message(&d, message, n, &first));
    assert_true(ws_deflate_message(&d, message, n, &second));
    assert_true(second.length < first.length); /* the window was kept */
    text input;
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_TEXT, first.data, first.length);
    frame(&input, FIN | RSV1 | OP_TEXT, second.data, second.length);
    expect_messages(&TAKEOVER, &input, 2, message);
    text_free(&input);
    text_free(&first);
    text_free(&second);
    ws_deflater_free(&d);
}

/* ---- limits and corrupt input ---- */

static void zip_bomb_is_bounded(void **state) {
    size_t big = 10u << 20;
    char *zeros = calloc(1, big);
    ws_deflater d;
    ws_deflater_init(&d, 15, true);
    text input;

    /* 10 MiB of zeros is ~10 KiB on the wire: 1009, with memory never past the limit. */
    text_init(&input);
    compressed_message(&input, &d, OP_BINARY, zeros, big, 1);
    assert_true(input.length < 20000);
    got g;
    parse_everywhere(&DEFLATE, &input, &g);
    assert_true(g.error);
    assert_int_equal(g.error_code, WS_CLOSE_MESSAGE_TOO_BIG);
    assert_true(g.max_heap <= WS_DEFAULT_MAX_MESSAGE + 1 + 64 * 1024);
    got_free(&g);
    text_free(&input);

    /* The same in many small fragments. */
    text_init(&input);
    compressed_message(&input, &d, OP_TEXT, zeros, big, 5);
    run(&DEFLATE, &input, NULL, 0, &g);
    assert_int_equal(g.error_code, WS_CLOSE_MESSAGE_TOO_BIG);
    got_free(&g);
    text_free(&input);

    /* Exactly at the limit is fine, one byte more is not. */
    text_init(&input);
    compressed_message(&input, &d, OP_BINARY, zeros, WS_DEFAULT_MAX_MESSAGE, 1);
    run(&DEFLATE, &input, NULL, 0, &g);
    assert_false(g.error);
    assert_int_equal(g.length[0], WS_DEFAULT_MAX_MESSAGE);
    assert_true(g.max_heap <= WS_DEFAULT_MAX_MESSAGE + 1 + 64 * 1024); /* the buffer is capped */
    got_free(&g);
    text_clear(&input);
    compressed_message(&input, &d, OP_BINARY, zeros, WS_DEFAULT_MAX_MESSAGE + 1, 1);
    run(&DEFLATE, &input, NULL, 0, &g);
    assert_int_equal(g.error_code, WS_CLOSE_MESSAGE_TOO_BIG);
    got_free(&g);
    text_free(&input);

    ws_parser_config small = DEFLATE;
    small.max_message = 1000;
    text_init(&input);
    char *letters = random_bytes(1001, 3, true);
    compressed_message(&input, &d, OP_TEXT, letters, 1000, 1);
    run(&small, &input, NULL, 0, &g);
    assert_false(g.error);
    got_free(&g);
    text_clear(&input);
    compressed_message(&input, &d, OP_TEXT, letters, 1001, 2);
    expect_error(&small, &input, WS_CLOSE_MESSAGE_TOO_BIG);
    text_free(&input);
    free(letters);

    /* The wire size of a compressed message is bounded too: max + max/4 + 1 KiB, from the header.
     */
    char *noise = malloc(3000);
    for (size_t i = 0; i < 453; i++)
        memcpy(noise + 5 * i, "\x00\x00\x00\xff\xff", 5); /* empty */
    memcpy(noise + 2265,
           "\x00\x04\x00\xfb\xff"
           "abcd",
           9); /* a stored block: 2274 bytes */
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_BINARY, noise, 2274);
    run(&small, &input, NULL, 0, &g);
    assert_false(g.error);
    assert_string_equal(g.data[0], "abcd");
    got_free(&g);
    text_clear(&input);
    frame(&input, FIN | RSV1 | OP_BINARY, noise, 2275);
    input.length = 4;
    run(&small, &input, NULL, 0, &g);
    assert_int_equal(g.error_code, WS_CLOSE_MESSAGE_TOO_BIG);
    got_free(&g);
    text_free(&input);
    free(noise);

    ws_deflater_free(&d);
    free(zeros);
}

static void corrupt_data_is_1007(void **state) {
    text input;
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_TEXT, "\xff\xff\xff\xff", 4);
    expect_error(&DEFLATE, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
    /* A reserved block type (BTYPE 11). */
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_BINARY, "\x07", 1);
    expect_error(&DEFLATE, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
}

static void inflated_text_fails_fast_on_bad_utf8(void **state) {
    size_t n = 100000;
    char *data = random_bytes(n, 11, true);
    data[3] = (char)0xC0;
    ws_deflater d;
    ws_deflater_init(&d, 15, true);
    text compressed;
    text_init(&compressed);
    assert_true(ws_deflate_message(&d, data, n, &compressed));
    text input;
    text_init(&input);
    frame(&input, FIN | RSV1 | OP_TEXT, compressed.data, compressed.length);
    expect_error(&DEFLATE, &input, WS_CLOSE_INVALID_PAYLOAD);
    /* Half of the compressed bytes already tell. */
    input.length = 14 + compressed.length / 2;
    got g;
    run(&DEFLATE, &input, NULL, 0, &g);
    assert_true(g.error);
    assert_int_equal(g.error_code, WS_CLOSE_INVALID_PAYLOAD);
    got_free(&g);
    /* Truncated at the end of the inflated message. */
    text_clear(&compressed);
    assert_true(ws_deflate_message(&d, "ab\xE2\x82", 4, &compressed));
    text_clear(&input);
    frame(&input, FIN | RSV1 | OP_TEXT, compressed.data, compressed.length);
    expect_error(&DEFLATE, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
    text_free(&compressed);
    ws_deflater_free(&d);
    free(data);
}

/* ---- memory ---- */

static void memory_per_connection(void **state) {
    char *data = random_bytes(20000, 5, true);
    ws_deflater d;
    ws_deflater_init(&d, 15, true);
    text input;
    text_init(&input);
    compressed_message(&input, &d, OP_TEXT, data, 20000, 1);
    text pristine; /* the parser unmasks in place */
    text_init(&pristine);
    text_append(&pristine, input.data, input.length);
    ws_parser p;
    ws_parser_init(&p, &DEFLATE);
    assert_int_equal(ws_parser_heap_bytes(&p), 0);
    size_t used;
    ws_message m;
    size_t half = input.length / 2;
    assert_int_equal(ws_parser_feed(&p, input.data, half, &used, &m), WS_PARSE_NEED_MORE);
    size_t in_flight = ws_parser_heap_bytes(&p);
    size_t buffer = p.message_capacity;
    print_message("compressed message in flight: %zu bytes (inflate %zu + buffer %zu); "
                  "sizeof(ws_parser) %zu\n",
                  in_flight, in_flight - buffer, buffer, sizeof(ws_parser));
    assert_true(in_flight - buffer < 64 * 1024);
    assert_int_equal(ws_parser_feed(&p, input.data + half, input.length - half, &used, &m),
                     WS_PARSE_MESSAGE);
    assert_int_equal(m.length, 20000);
    assert_int_equal(
        ws_parser_feed(&p, input.data + half + used, input.length - half - used, &used, &m),
        WS_PARSE_NEED_MORE);
    assert_int_equal(ws_parser_heap_bytes(&p), 0); /* idle again: zlib freed */
    ws_parser_free(&p);

    /* Many connections dropped mid-message release everything (LeakSanitizer checks). */
    enum { CONNECTIONS = 300 };
    ws_parser *many = malloc(CONNECTIONS * sizeof *many);
    for (int i = 0; i < CONNECTIONS; i++) {
        ws_parser_init(&many[i], &DEFLATE);
        char *copy = malloc(half);
        memcpy(copy, pristine.data, half);
        assert_int_equal(ws_parser_feed(&many[i], copy, half, &used, &m), WS_PARSE_NEED_MORE);
        free(copy);
    }
    for (int i = 0; i < CONNECTIONS; i++)
        ws_parser_free(&many[i]);
    free(many);

    text_free(&pristine);
    text_free(&input);
    ws_deflater_free(&d);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_examples_inflate_to_hello),
        cmocka_unit_test(rfc_example_with_context_takeover),
        cmocka_unit_test(empty_compressed_messages),
        cmocka_unit_test(uncompressed_messages_still_work),
        cmocka_unit_test(hello_deflates_like_the_rfc),
        cmocka_unit_test(encode_message_compresses_only_when_it_helps),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(every_window_size_round_trips),
        cmocka_unit_test(deflater_with_context_takeover),
        cmocka_unit_test(zip_bomb_is_bounded),
        cmocka_unit_test(corrupt_data_is_1007),
        cmocka_unit_test(inflated_text_fails_fast_on_bad_utf8),
        cmocka_unit_test(memory_per_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The client frame parser and the server frame encoder: length boundaries, masking, fragmentation
 * with interleaved control frames, every protocol error with its close code, close payloads, the
 * size limit and memory. Every input is also fed split at every position and byte by byte, and
 * must give the same messages and the same verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws/ws.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

enum { FIN = 0x80, RSV1 = 0x40, RSV2 = 0x20, RSV3 = 0x10 };
enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

/* ---- building client frames ---- */

/* form: 0 = minimal length encoding, else 7, 16 or 64 (possibly non-minimal). */
static void frame_ex(text *t, uint8_t first, const void *payload, size_t n, int form, bool masked) {
    uint8_t header[14];
    size_t h = 0;
    header[h++] = first;
    uint8_t mask_bit = masked ? 0x80 : 0;
    if (form == 0) form = n < 126 ? 7 : n <= 0xFFFF ? 16 : 64;
    if (form == 7) {
        header[h++] = (uint8_t)(mask_bit | n);
    } else if (form == 16) {
        header[h++] = mask_bit | 126;
        header[h++] = (uint8_t)(n >> 8);
        header[h++] = (uint8_t)n;
    } else {
        header[h++] = mask_bit | 127;
        for (int i = 7; i >= 0; i--)
            header[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (masked) {
        memcpy(header + h, MASK, 4);
        h += 4;
    }
    text_append(t, header, h);
    size_t start = t->length;
    if (n) text_append(t, payload, n);
    if (masked)
        for (size_t i = 0; i < n; i++)
            t->data[start + i] ^= (char)MASK[i & 3];
}

static void frame(text *t, uint8_t first, const void *payload, size_t n) {
    frame_ex(t, first, payload, n, 0, true);
}

static void frame_s(text *t, uint8_t first, const char *payload) {
    frame(t, first, payload, strlen(payload));
}

/* ---- running the parser ---- */

#define MAX_GOT 16

typedef struct got {
    int count;
    ws_opcode opcode[MAX_GOT];
    size_t length[MAX_GOT];
    char *data[MAX_GOT];
    unsigned close_code[MAX_GOT];
    bool error;
    unsigned error_code;
    size_t max_heap;
} got;

static void got_free(got *g) {
    for (int i = 0; i < g->count; i++)
        free(g->data[i]);
    memset(g, 0, sizeof *g);
}

static void record(got *g, const ws_message *m) {
    assert_true(g->count < MAX_GOT);
    assert_non_null(m->data);
    g->opcode[g->count] = m->opcode;
    g->length[g->count] = m->length;
    g->data[g->count] = malloc(m->length + 1);
    memcpy(g->data[g->count], m->data, m->length);
    g->data[g->count][m->length] = '\0';
    g->close_code[g->count] = m->close_code;
    g->count++;
}

/* Feeds one chunk, collecting messages; false once the parser failed. */
static bool feed(ws_parser *p, char *data, size_t n, got *g) {
    for (;;) {
        size_t used = 0;
        ws_message m;
        ws_parse_status status = ws_parser_feed(p, data, n, &used, &m);
        size_t heap = ws_parser_heap_bytes(p);
        if (heap > g->max_heap) g->max_heap = heap;
        if (status == WS_PARSE_ERROR) {
            assert_int_equal(used, 0);
            g->error = true;
            g->error_code = p->close_code;
            assert_non_null(p->error_message);
            assert_int_equal(ws_parser_heap_bytes(p), 0);
            /* Errors are sticky. */
            assert_int_equal(ws_parser_feed(p, data, n, &used, &m), WS_PARSE_ERROR);
            assert_int_equal(used, 0);
            return false;
        }
        if (status == WS_PARSE_NEED_MORE) {
            assert_int_equal(used, n);
            return true;
        }
        assert_true(used <= n);
        record(g, &m);
        data += used;
        n -= used;
    }
}

/* Feeds input in chunks ending at the given cuts (increasing), then the rest. */
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
    if (ok) {
        /* Idle once nothing is in progress: no heap memory. */
        size_t used;
        ws_message m;
        assert_int_equal(ws_parser_feed(&p, copy, 0, &used, &m), WS_PARSE_NEED_MORE);
        if (p.message_opcode == 0) assert_int_equal(ws_parser_heap_bytes(&p), 0);
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
        assert_int_equal(a->close_code[i], b->close_code[i]);
    }
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->error_code, b->error_code);
}

/* Parses input whole, then split in two at every position (sampled for big inputs), then in
 * three, then byte by byte; all must agree. Leaves the whole-input result in *result. */
static void parse_everywhere(const ws_parser_config *config, const text *input, got *result) {
    run(config, input, NULL, 0, result);
    got other;
    for (size_t cut = 0; cut <= input->length; cut++) {
        if (input->length > 400 && cut > 40 && cut + 40 < input->length && cut % 997 != 0) continue;
        run(config, input, &cut, 1, &other);
        assert_same(result, &other);
        got_free(&other);
        size_t cuts[2] = {cut / 2, cut};
        run(config, input, cuts, 2, &other);
        assert_same(result, &other);
        got_free(&other);
    }
    size_t *all = malloc((input->length + 1) * sizeof *all);
    for (size_t i = 0; i < input->length; i++)
        all[i] = i + 1;
    run(config, input, all, input->length, &other);
    assert_same(result, &other);
    got_free(&other);
    free(all);
}

static void expect_error(const ws_parser_config *config, const text *input, unsigned code) {
    got g;
    parse_everywhere(config, input, &g);
    assert_true(g.error);
    assert_int_equal(g.error_code, code);
    got_free(&g);
}

/* The error must come from the first `prefix` bytes alone (fail fast). */
static void expect_error_within(const ws_parser_config *config, const text *input, size_t prefix,
                                unsigned code) {
    expect_error(config, input, code);
    text cut;
    text_init(&cut);
    text_append(&cut, input->data, prefix);
    got g;
    run(config, &cut, NULL, 0, &g);
    assert_true(g.error);
    assert_int_equal(g.error_code, code);
    got_free(&g);
    text_free(&cut);
}

static char *pattern(size_t n) {
    char *data = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    data[n] = '\0';
    return data;
}

/* ---- lengths and masking ---- */

static const size_t BOUNDARIES[] = {0, 1, 125, 126, 127, 65535, 65536, 70001};

static void parses_every_length_boundary(void **state) {
    for (size_t i = 0; i < sizeof BOUNDARIES / sizeof BOUNDARIES[0]; i++) {
        size_t n = BOUNDARIES[i];
        char *payload = pattern(n);
        for (int op = OP_TEXT; op <= OP_BINARY; op++) {
            text input;
            text_init(&input);
            frame(&input, (uint8_t)(FIN | op), payload, n);
            got g;
            parse_everywhere(NULL, &input, &g);
            assert_false(g.error);
            assert_int_equal(g.count, 1);
            assert_int_equal(g.opcode[0], op);
            assert_int_equal(g.length[0], n);
            assert_memory_equal(g.data[0], payload, n);
            got_free(&g);
            text_free(&input);
        }
        free(payload);
    }
}

static void control_frame_lengths(void **state) {
    char *payload = pattern(125);
    for (size_t n = 0; n <= 125; n += (n < 4 || n > 120) ? 1 : 17) {
        text input;
        text_init(&input);
        frame(&input, FIN | OP_PING, payload, n);
        frame(&input, FIN | OP_PONG, payload, n);
        got g;
        parse_everywhere(NULL, &input, &g);
        assert_int_equal(g.count, 2);
        assert_int_equal(g.opcode[0], WS_OPCODE_PING);
        assert_int_equal(g.opcode[1], WS_OPCODE_PONG);
        assert_int_equal(g.length[0], n);
        assert_memory_equal(g.data[0], payload, n);
        got_free(&g);
        text_free(&input);
    }
    free(payload);
}

static void unmasks_the_rfc_example(void **state) {
    /* RFC 6455 §5.7: a single-frame masked text message "Hello". */
    static const uint8_t bytes[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    text input;
    text_init(&input);
    text_append(&input, bytes, sizeof bytes);
    got g;
    parse_everywhere(NULL, &input, &g);
    assert_int_equal(g.count, 1);
    assert_string_equal(g.data[0], "Hello");
    got_free(&g);
    text_free(&input);
}

static void masks_with_any_key_and_offset(void **state) {
    /* Lengths around the 8-byte word unmasking, fragments at odd offsets. */
    char *payload = pattern(40);
    for (size_t first = 0; first <= 19; first++) {
        text input;
        text_init(&input);
        frame(&input, OP_BINARY, payload, first);
        frame(&input, FIN | OP_CONT, payload + first, 19 - first + 2);
        got g;
        parse_everywhere(NULL, &input, &g);
        assert_int_equal(g.count, 1);
        assert_int_equal(g.length[0], 21);
        assert_memory_equal(g.data[0], payload, 21);
        got_free(&g);
        text_free(&input);
    }
    free(payload);
}

/* ---- fragmentation ---- */

static void fragmented_message_with_interleaved_control_frames(void **state) {
    text input;
    text_init(&input);
    frame_s(&input, OP_TEXT, "Hel");
    frame_s(&input, FIN | OP_PING, "ping!");
    frame_s(&input, OP_CONT, "lo");
    frame_s(&input, FIN | OP_PONG, "");
    frame_s(&input, OP_CONT, "");
    frame_s(&input, FIN | OP_CONT, ", world");
    frame_s(&input, FIN | OP_BINARY, "\x01\x02");
    got g;
    parse_everywhere(NULL, &input, &g);
    assert_false(g.error);
    assert_int_equal(g.count, 4);
    assert_int_equal(g.opcode[0], WS_OPCODE_PING);
    assert_string_equal(g.data[0], "ping!");
    assert_int_equal(g.opcode[1], WS_OPCODE_PONG);
    assert_int_equal(g.length[1], 0);
    assert_int_equal(g.opcode[2], WS_OPCODE_TEXT);
    assert_string_equal(g.data[2], "Hello, world");
    assert_int_equal(g.opcode[3], WS_OPCODE_BINARY);
    assert_int_equal(g.length[3], 2);
    got_free(&g);
    text_free(&input);
}

static void code_point_split_across_fragments(void **state) {
    text input;
    text_init(&input);
    frame_s(&input, OP_TEXT, "\xE2");
    frame_s(&input, FIN | OP_PING, "");
    frame_s(&input, OP_CONT, "\x82");
    frame_s(&input, FIN | OP_CONT, "\xAC!");
    got g;
    parse_everywhere(NULL, &input, &g);
    assert_int_equal(g.count, 2);
    assert_string_equal(g.data[1], "\xE2\x82\xAC!");
    got_free(&g);
    text_free(&input);
}

static void bad_utf8_fails_fast(void **state) {
    /* Across fragments: the message is not finished, the fault is already known. */
    text input;
    text_init(&input);
    frame_s(&input, OP_TEXT, "ok \xED");
    size_t before = input.length;
    frame_s(&input, OP_CONT, "\xA0\x80 and more");
    expect_error_within(NULL, &input, before + 6 + 1, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);

    /* Inside one long frame: the first bytes decide. */
    char *payload = pattern(5000);
    payload[3] = (char)0xC0;
    text_init(&input);
    frame(&input, FIN | OP_TEXT, payload, 5000);
    expect_error_within(NULL, &input, 8 + 4, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
    free(payload);

    /* Truncated at the message end. */
    text_init(&input);
    frame_s(&input, OP_TEXT, "abc\xE2\x82");
    frame_s(&input, FIN | OP_CONT, "");
    expect_error(NULL, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);
    text_init(&input);
    frame_s(&input, FIN | OP_TEXT, "\xF0\x90\x80");
    expect_error(NULL, &input, WS_CLOSE_INVALID_PAYLOAD);
    text_free(&input);

    /* Binary messages are not UTF-8 checked. */
    text_init(&input);
    frame_s(&input, FIN | OP_BINARY, "\xC0\xFF");
    got g;
    parse_everywhere(NULL, &input, &g);
    assert_false(g.error);
    assert_int_equal(g.opcode[0], WS_OPCODE_BINARY);
    got_free(&g);
    text_free(&input);
}

/* ---- protocol errors ---- */

static void expect_frame_error(const ws_parser_config *config, uint8_t first, const char *payload,
                               unsigned code, size_t within) {
    text input;
    text_init(&input);
    frame_s(&input, first, payload);
    expect_error_within(config, &input, within, code);
    text_free(&input);
}

static void reserved_bits_and_opcodes(void **state) {
    expect_frame_error(NULL, FIN | RSV2 | OP_TEXT, "x", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, FIN | RSV3 | OP_TEXT, "x", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, FIN | RSV1 | OP_TEXT, "x", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, FIN | RSV1 | OP_PING, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    for (uint8_t op = 3; op <= 7; op++)
        expect_frame_error(NULL, FIN | op, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    for (uint8_t op = 11; op <= 15; op++)
        expect_frame_error(NULL, FIN | op, "", WS_CLOSE_PROTOCOL_ERROR, 1);

    /* With deflate, RSV1 is allowed only on a data message's first frame. */
    ws_parser_config deflate = {.deflate = {.enabled = true, .client_no_context_takeover = true}};
    expect_frame_error(&deflate, FIN | RSV1 | OP_PING, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(&deflate, FIN | RSV1 | OP_CLOSE, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    text input;
    text_init(&input);
    frame_s(&input, OP_TEXT, "plain");
    size_t before = input.length;
    frame_s(&input, FIN | RSV1 | OP_CONT, "x");
    expect_error_within(&deflate, &input, before + 1, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
}

static void unmasked_frames_are_refused(void **state) {
    text input;
    text_init(&input);
    frame_ex(&input, FIN | OP_TEXT, "hi", 2, 0, false);
    expect_error_within(NULL, &input, 2, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
    text_init(&input);
    frame_ex(&input, FIN | OP_PING, "", 0, 0, false);
    expect_error_within(NULL, &input, 2, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
}

static void lengths_must_be_minimal(void **state) {
    char *payload = pattern(65535);
    struct {
        size_t n;
        int form;
        size_t header;
    } cases[] = {{0, 16, 4}, {125, 16, 4}, {0, 64, 10}, {126, 64, 10}, {65535, 64, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        text input;
        text_init(&input);
        frame_ex(&input, FIN | OP_BINARY, payload, cases[i].n, cases[i].form, true);
        expect_error_within(NULL, &input, cases[i].header, WS_CLOSE_PROTOCOL_ERROR);
        text_free(&input);
    }
    free(payload);
    /* The top bit of a 64-bit length must be 0 (1002, even though it is also too big). */
    static const uint8_t top_bit[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    text input;
    text_init(&input);
    text_append(&input, top_bit, sizeof top_bit);
    expect_error_within(NULL, &input, 10, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
}

static void control_frames_must_be_short_and_whole(void **state) {
    char *payload = pattern(200);
    text input;
    text_init(&input);
    frame(&input, FIN | OP_PING, payload, 126);
    expect_error_within(NULL, &input, 2, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
    text_init(&input);
    frame(&input, FIN | OP_CLOSE, payload, 200);
    expect_error_within(NULL, &input, 2, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
    /* 125 bytes in a non-minimal 16-bit length is refused as well. */
    text_init(&input);
    frame_ex(&input, FIN | OP_PONG, payload, 125, 16, true);
    expect_error_within(NULL, &input, 2, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
    free(payload);
    expect_frame_error(NULL, OP_PING, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, OP_CLOSE, "", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, OP_PONG, "", WS_CLOSE_PROTOCOL_ERROR, 1);
}

static void fragmentation_order_errors(void **state) {
    /* A continuation without a message. */
    expect_frame_error(NULL, FIN | OP_CONT, "x", WS_CLOSE_PROTOCOL_ERROR, 1);
    expect_frame_error(NULL, OP_CONT, "x", WS_CLOSE_PROTOCOL_ERROR, 1);
    text input;
    text_init(&input);
    frame_s(&input, FIN | OP_TEXT, "done");
    size_t before = input.length;
    frame_s(&input, FIN | OP_CONT, "x");
    expect_error_within(NULL, &input, before + 1, WS_CLOSE_PROTOCOL_ERROR);
    text_free(&input);
    /* A new data frame inside an unfinished message (not merged). */
    for (int op = OP_TEXT; op <= OP_BINARY; op++) {
        text_init(&input);
        frame_s(&input, OP_TEXT, "part");
        frame_s(&input, FIN | OP_PING, "");
        before = input.length;
        frame_s(&input, (uint8_t)(FIN | op), "new");
        got g;
        parse_everywhere(NULL, &input, &g);
        assert_true(g.error);
        assert_int_equal(g.error_code, WS_CLOSE_PROTOCOL_ERROR);
        assert_int_equal(g.count, 1); /* the ping came through first */
        got_free(&g);
        expect_error_within(NULL, &input, before + 1, WS_CLOSE_PROTOCOL_ERROR);
        text_free(&input);
    }
}

static void binary_can_be_refused_early(void **state) {
    ws_parser_config config = {.reject_binary = true};
    expect_frame_error(&config, FIN | OP_BINARY, "\x01", WS_CLOSE_UNSUPPORTED_DATA, 1);
    text input;
    text_init(&input);
    frame_s(&input, FIN | OP_TEXT, "text is fine");
    got g;
    parse_everywhere(&config, &input, &g);
    assert_false(g.error);
    assert_int_equal(g.count, 1);
    got_free(&g);
    text_free(&input);
}

/* ---- close frames ---- */

static void close_with(const char *payload, size_t n, bool ok, unsigned code_or_error) {
    text input;
    text_init(&input);
    frame(&input, FIN | OP_CLOSE, payload, n);
    got g;
    parse_everywhere(NULL, &input, &g);
    if (ok) {
        assert_false(g.error);
        assert_int_equal(g.count, 1);
        assert_int_equal(g.opcode[0], WS_OPCODE_CLOSE);
        assert_int_equal(g.close_code[0], code_or_error);
        assert_int_equal(g.length[0], n >= 2 ? n - 2 : 0);
        if (n > 2) assert_memory_equal(g.data[0], payload + 2, n - 2);
    } else {
        assert_true(g.error);
        assert_int_equal(g.error_code, code_or_error);
    }
    got_free(&g);
    text_free(&input);
}

static void close_code(unsigned code, bool ok) {
    char payload[2] = {(char)(code >> 8), (char)code};
    close_with(payload, 2, ok, ok ? code : WS_CLOSE_PROTOCOL_ERROR);
}

static void close_payload_rules(void **state) {
    close_with("", 0, true, 0);                            /* no code */
    close_with("\x03", 1, false, WS_CLOSE_PROTOCOL_ERROR); /* 1 byte */
    close_with("\x03\xE8", 2, true, 1000);
    close_with("\x03\xE8"
               "bye \xE2\x98\x83",
               9, true, 1000);
    close_with("\x03\xE8\xC0\x80", 4, false, WS_CLOSE_INVALID_PAYLOAD);
    close_with("\x03\xE8"
               "ab\xE2\x98",
               6, false, WS_CLOSE_INVALID_PAYLOAD);                         /* truncated */
    close_with("\x03\xE9\xED\xA0\x80", 5, false, WS_CLOSE_INVALID_PAYLOAD); /* surrogate */
    char longest[125];
    longest[0] = 0x0F;
    longest[1] = (char)0xA0; /* 4000 */
    memset(longest + 2, 'r', 123);
    close_with(longest, 125, true, 4000);

    static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                       1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        assert_true(ws_close_code_is_valid(valid[i]));
        close_code(valid[i], true);
    }
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        assert_false(ws_close_code_is_valid(invalid[i]));
        close_code(invalid[i], false);
    }
}

static void close_ends_parsing(void **state) {
    text input;
    text_init(&input);
    frame_s(&input, OP_TEXT, "unfinished");
    frame_s(&input, FIN | OP_CLOSE, "\x03\xE9going");
    text_append_cstring(&input, "\xFF\xFF garbage after the close is ignored");
    got g;
    parse_everywhere(NULL, &input, &g);
    assert_false(g.error);
    assert_int_equal(g.count, 1);
    assert_int_equal(g.close_code[0], 1001);
    assert_string_equal(g.data[0], "going");
    got_free(&g);
    text_free(&input);
}

/* ---- the size limit and memory ---- */

static void messages_over_the_limit_fail_1009_from_the_header(void **state) {
    ws_parser_config config = {.max_message = 1000};
    char *payload = pattern(70000);
    text input;

    text_init(&input);
    frame(&input, FIN | OP_TEXT, payload, 1000);
    got g;
    parse_everywhere(&config, &input, &g);
    assert_false(g.error);
    assert_int_equal(g.length[0], 1000);
    assert_true(g.max_heap <= 1001);
    got_free(&g);
    text_free(&input);

    text_init(&input);
    frame(&input, FIN | OP_TEXT, payload, 1001);
    expect_error_within(&config, &input, 4, WS_CLOSE_MESSAGE_TOO_BIG);
    text_free(&input);

    /* Fragments adding up past the limit: failed at the header of the one that passes it. */
    text_init(&input);
    frame(&input, OP_BINARY, payload, 600);
    frame(&input, FIN | OP_PING, "", 0);
    frame(&input, OP_CONT, payload, 400);
    size_t before = input.length;
    frame(&input, FIN | OP_CONT, payload, 1);
    expect_error_within(&config, &input, before + 2, WS_CLOSE_MESSAGE_TOO_BIG);
    text_free(&input);

    /* The default limit is 1 MiB; a 64-bit length claiming 2^62 bytes fails at once. */
    static const uint8_t huge[] = {0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0};
    text_init(&input);
    text_append(&input, huge, sizeof huge);
    expect_error_within(NULL, &input, 10, WS_CLOSE_MESSAGE_TOO_BIG);
    text_free(&input);
    /* 1 MiB + 1, from the header alone */
    static const uint8_t over[] = {0x81, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 1};
    text_init(&input);
    text_append(&input, over, sizeof over);
    expect_error_within(NULL, &input, 10, WS_CLOSE_MESSAGE_TOO_BIG);
    text_free(&input);
    free(payload);
}

static void memory_is_held_only_while_a_message_is_in_flight(void **state) {
    ws_parser p;
    ws_parser_init(&p, NULL);
    assert_int_equal(p.max_message, WS_DEFAULT_MAX_MESSAGE);
    char *payload = pattern(3000);
    text input;
    text_init(&input);
    frame(&input, OP_TEXT, payload, 3000);
    size_t used;
    ws_message m;
    /* A single whole frame in one read is delivered in place: no heap at all. */
    text whole;
    text_init(&whole);
    frame(&whole, FIN | OP_TEXT, payload, 3000);
    assert_int_equal(ws_parser_feed(&p, whole.data, whole.length, &used, &m), WS_PARSE_MESSAGE);
    assert_int_equal(ws_parser_heap_bytes(&p), 0);
    assert_true(m.data >= whole.data && m.data < whole.data + whole.length);
    assert_int_equal(ws_parser_feed(&p, whole.data + used, whole.length - used, &used, &m),
                     WS_PARSE_NEED_MORE);
    /* A fragment in progress holds a buffer, bounded by what arrived. */
    assert_int_equal(ws_parser_feed(&p, input.data, 500, &used, &m), WS_PARSE_NEED_MORE);
    assert_true(ws_parser_heap_bytes(&p) > 0 && ws_parser_heap_bytes(&p) <= 1024);
    assert_int_equal(ws_parser_feed(&p, input.data + 500, input.length - 500, &used, &m),
                     WS_PARSE_NEED_MORE);
    text_clear(&input);
    frame(&input, FIN | OP_CONT, "!", 1);
    assert_int_equal(ws_parser_feed(&p, input.data, input.length, &used, &m), WS_PARSE_MESSAGE);
    assert_int_equal(m.length, 3001);
    assert_true(ws_parser_heap_bytes(&p) >= 3001);
    assert_int_equal(ws_parser_feed(&p, input.data + used, 0, &used, &m), WS_PARSE_NEED_MORE);
    assert_int_equal(ws_parser_heap_bytes(&p), 0);
    ws_parser_free(&p);
    text_free(&input);
    text_free(&whole);
    free(payload);
    print_message("sizeof(ws_parser) = %zu bytes\n", sizeof(ws_parser));
}

/* ---- the encoder ---- */

static void encodes_every_length_boundary(void **state) {
    static const struct {
        size_t n;
        size_t header;
        uint8_t bytes[10];
    } cases[] = {
        {0, 2, {0x81, 0x00}},
        {125, 2, {0x81, 0x7D}},
        {126, 4, {0x81, 0x7E, 0x00, 0x7E}},
        {65535, 4, {0x81, 0x7E, 0xFF, 0xFF}},
        {65536, 10, {0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}},
    };
    char *payload = pattern(65536);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].n;
        assert_int_equal(ws_frame_header_size(n), cases[i].header);
        text out;
        text_init(&out);
        assert_true(ws_encode_frame(&out, WS_OPCODE_TEXT, payload, n));
        assert_int_equal(out.length, cases[i].header + n);
        assert_memory_equal(out.data, cases[i].bytes, cases[i].header);
        assert_memory_equal(out.data + cases[i].header, payload, n);

        char *buffer = malloc(n + 10);
        assert_int_equal(ws_encode_frame_to(buffer, n + 10, WS_OPCODE_TEXT, payload, n),
                         cases[i].header + n);
        assert_memory_equal(buffer, out.data, out.length);
        assert_int_equal(
            ws_encode_frame_to(buffer, cases[i].header + n - 1, WS_OPCODE_TEXT, payload, n), 0);

        /* Masked the way a client would, it parses back (split everywhere). */
        text input;
        text_init(&input);
        frame(&input, FIN | OP_TEXT, payload, n);
        assert_memory_equal(input.data, out.data, 1);
        assert_int_equal((uint8_t)input.data[1], (uint8_t)out.data[1] | 0x80);
        assert_memory_equal(input.data + 2, out.data + 2, cases[i].header - 2);
        got g;
        parse_everywhere(NULL, &input, &g);
        assert_int_equal(g.length[0], n);
        got_free(&g);
        text_free(&input);
        free(buffer);
        text_free(&out);
    }
    uint8_t header[WS_MAX_SERVER_HEADER];
    assert_int_equal(ws_encode_frame_header(header, WS_OPCODE_BINARY, false, true, 1), 2);
    assert_int_equal(header[0], 0x42);
    assert_int_equal(header[1], 0x01);
    assert_int_equal(ws_encode_frame_header(header, WS_OPCODE_CONTINUATION, true, false,
                                            UINT64_C(0x0123456789AB)),
                     10);
    static const uint8_t big[10] = {0x80, 0x7F, 0, 0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB};
    assert_memory_equal(header, big, 10);
    free(payload);
}

static void encodes_control_frames(void **state) {
    text out;
    text_init(&out);
    assert_true(ws_encode_frame(&out, WS_OPCODE_PING, "hi", 2));
    assert_memory_equal(out.data, "\x89\x02hi", 4);
    text_clear(&out);
    assert_true(ws_encode_frame(&out, WS_OPCODE_PONG, NULL, 0));
    assert_memory_equal(out.data, "\x8A\x00", 2);
    char big[126] = {0};
    text_clear(&out);
    assert_false(ws_encode_frame(&out, WS_OPCODE_PING, big, 126));
    assert_int_equal(out.length, 0);
    assert_int_equal(ws_encode_frame_to(big, sizeof big, WS_OPCODE_PONG, big, 126), 0);

    ws_encode_close(&out, 0, NULL, 0);
    assert_int_equal(out.length, 2);
    assert_memory_equal(out.data, "\x88\x00", 2);
    text_clear(&out);
    ws_encode_close(&out, 1001, "bye", 3);
    assert_memory_equal(out.data,
                        "\x88\x05\x03\xE9"
                        "bye",
                        7);
    /* A long reason is cut to 123 bytes at a code point boundary. */
    char reason[200];
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xE2\x82\xAC", 3); /* bytes 122..124: the euro sign straddles 123 */
    memset(reason + 125, 'b', 75);
    text_clear(&out);
    ws_encode_close(&out, 1000, reason, sizeof reason);
    assert_int_equal(out.length, 2 + 2 + 122);
    assert_int_equal((uint8_t)out.data[1], 124);
    text_clear(&out);
    ws_encode_close(&out, 1000, reason, 125);
    assert_int_equal(out.length, 2 + 2 + 122);
    text_clear(&out);
    memset(reason, 'a', sizeof reason);
    ws_encode_close(&out, 1000, reason, sizeof reason);
    assert_int_equal(out.length, 2 + 125);
    text_free(&out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_every_length_boundary),
        cmocka_unit_test(control_frame_lengths),
        cmocka_unit_test(unmasks_the_rfc_example),
        cmocka_unit_test(masks_with_any_key_and_offset),
        cmocka_unit_test(fragmented_message_with_interleaved_control_frames),
        cmocka_unit_test(code_point_split_across_fragments),
        cmocka_unit_test(bad_utf8_fails_fast),
        cmocka_unit_test(reserved_bits_and_opcodes),
        cmocka_unit_test(unmasked_frames_are_refused),
        cmocka_unit_test(lengths_must_be_minimal),
        cmocka_unit_test(control_frames_must_be_short_and_whole),
        cmocka_unit_test(fragmentation_order_errors),
        cmocka_unit_test(binary_can_be_refused_early),
        cmocka_unit_test(close_payload_rules),
        cmocka_unit_test(close_ends_parsing),
        cmocka_unit_test(messages_over_the_limit_fail_1009_from_the_header),
        cmocka_unit_test(memory_is_held_only_while_a_message_is_in_flight),
        cmocka_unit_test(encodes_every_length_boundary),
        cmocka_unit_test(encodes_control_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

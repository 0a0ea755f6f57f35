/* Client frames in (RFC 6455 §5): an incremental parser that checks every header field as soon as
 * its byte arrives, unmasks in place, assembles fragmented messages with control frames delivered
 * in between, validates text as UTF-8 as the bytes (or the inflated bytes) arrive, and enforces
 * the message limit from the length fields. Server frames out: unmasked, minimal lengths. */
#include <stdlib.h>
#include <string.h>

#include "ws/ws_internal.h"

enum { STAGE_HEADER, STAGE_PAYLOAD, STAGE_CLOSED, STAGE_FAILED };

/* Internal result of a step: keep going, or return this status. */
enum { STEP_CONTINUE = -1 };

bool ws_close_code_is_valid(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static bool is_control(unsigned opcode) {
    return (opcode & 0x8) != 0;
}

/* ---- lifecycle and memory ---- */

void ws_parser_init(ws_parser *p, const ws_parser_config *config) {
    memset(p, 0, sizeof *p);
    size_t max = config && config->max_message ? config->max_message : WS_DEFAULT_MAX_MESSAGE;
    if (max > SIZE_MAX / 4) max = SIZE_MAX / 4;
    p->max_message = max;
    p->max_compressed = max + max / 4 + 1024;
    if (config) {
        p->reject_binary = config->reject_binary;
        p->deflate = config->deflate;
    }
}

static void release_message(ws_parser *p) {
    free(p->message);
    p->message = NULL;
    p->message_length = p->message_capacity = 0;
}

static void release_inflater(ws_parser *p) {
    ws_inflater_free(p->inflater);
    p->inflater = NULL;
}

void ws_parser_free(ws_parser *p) {
    release_message(p);
    release_inflater(p);
}

size_t ws_parser_heap_bytes(const ws_parser *p) {
    return p->message_capacity + ws_inflater_heap_bytes(p->inflater);
}

bool ws_parser_reserve(ws_parser *p, size_t room) {
    size_t limit = p->max_message + 1;
    if (room > limit - p->message_length) return false;
    size_t needed = p->message_length + room;
    if (needed <= p->message_capacity) return true;
    size_t capacity = p->message_capacity ? p->message_capacity * 2 : 256;
    if (capacity < needed) capacity = needed;
    if (capacity > limit) capacity = limit;
    char *message = realloc(p->message, capacity);
    if (!message) return false;
    p->message = message;
    p->message_capacity = capacity;
    return true;
}

static int fail(ws_parser *p, unsigned code, const char *message) {
    p->stage = STAGE_FAILED;
    p->close_code = code;
    p->error_message = message;
    release_message(p);
    release_inflater(p);
    return WS_PARSE_ERROR;
}

/* ---- unmasking ---- */

static void unmask(char *data, size_t length, const uint8_t mask[4], uint64_t offset) {
    uint8_t rotated[8];
    for (int k = 0; k < 8; k++)
        rotated[k] = mask[(offset + (unsigned)k) & 3];
    uint64_t word_mask;
    memcpy(&word_mask, rotated, 8);
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, 8);
        word ^= word_mask;
        memcpy(data + i, &word, 8);
    }
    for (; i < length; i++)
        data[i] = (char)(data[i] ^ rotated[i & 7]);
}

/* ---- the header, byte by byte ---- */

static int first_byte(ws_parser *p, uint8_t b) {
    p->fin = (b & 0x80) != 0;
    p->rsv1 = (b & 0x40) != 0;
    p->opcode = b & 0x0F;
    if (b & 0x30) return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A reserved bit (RSV2/RSV3) is set.");
    switch (p->opcode) {
    case WS_OPCODE_CONTINUATION:
        if (!p->message_opcode)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A continuation frame without a message.");
        if (p->rsv1)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "RSV1 is set on a continuation frame.");
        return STEP_CONTINUE;
    case WS_OPCODE_TEXT:
    case WS_OPCODE_BINARY:
        if (p->message_opcode)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR,
                        "A new data frame inside an unfinished fragmented message.");
        if (p->rsv1 && !p->deflate.enabled)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "RSV1 is set but no compression was agreed.");
        if (p->opcode == WS_OPCODE_BINARY && p->reject_binary)
            return fail(p, WS_CLOSE_UNSUPPORTED_DATA, "Binary messages are not supported.");
        return STEP_CONTINUE;
    case WS_OPCODE_CLOSE:
    case WS_OPCODE_PING:
    case WS_OPCODE_PONG:
        if (!p->fin) return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A control frame is fragmented.");
        if (p->rsv1) return fail(p, WS_CLOSE_PROTOCOL_ERROR, "RSV1 is set on a control frame.");
        return STEP_CONTINUE;
    default:
        return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A reserved opcode.");
    }
}

static int check_length(ws_parser *p) {
    if (is_control(p->opcode)) return STEP_CONTINUE;
    bool compressed = p->opcode == WS_OPCODE_CONTINUATION ? p->message_compressed : p->rsv1;
    if (compressed) {
        uint64_t so_far = p->opcode == WS_OPCODE_CONTINUATION ? p->message_wire_bytes : 0;
        if (p->payload_length > p->max_compressed - so_far)
            return fail(p, WS_CLOSE_MESSAGE_TOO_BIG, "The message is over the size limit.");
    } else {
        uint64_t so_far = p->opcode == WS_OPCODE_CONTINUATION ? p->message_length : 0;
        if (p->payload_length > p->max_message - so_far)
            return fail(p, WS_CLOSE_MESSAGE_TOO_BIG, "The message is over the size limit.");
    }
    return STEP_CONTINUE;
}

static int second_byte(ws_parser *p, uint8_t b) {
    if (!(b & 0x80)) return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A client frame is not masked.");
    unsigned length7 = b & 0x7F;
    if (is_control(p->opcode) && length7 > WS_MAX_CONTROL_PAYLOAD)
        return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A control frame is over 125 bytes.");
    unsigned extended = length7 == 126 ? 2 : length7 == 127 ? 8 : 0;
    p->header_needed = (uint8_t)(2 + extended + 4);
    if (extended) return STEP_CONTINUE;
    p->payload_length = length7;
    return check_length(p);
}

static int extended_length(ws_parser *p) {
    const uint8_t *h = p->header + 2;
    if (p->header_needed == 2 + 2 + 4) {
        p->payload_length = (uint64_t)h[0] << 8 | h[1];
        if (p->payload_length < 126)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A frame length is not minimally encoded.");
    } else {
        uint64_t length = 0;
        for (int i = 0; i < 8; i++)
            length = length << 8 | h[i];
        if (length >> 63)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A 64-bit frame length has its top bit set.");
        if (length <= 0xFFFF)
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A frame length is not minimally encoded.");
        p->payload_length = length;
    }
    return check_length(p);
}

static int header_complete(ws_parser *p) {
    memcpy(p->mask, p->header + p->header_needed - 4, 4);
    p->payload_received = 0;
    p->control_length = 0;
    if (p->opcode == WS_OPCODE_TEXT || p->opcode == WS_OPCODE_BINARY) {
        p->message_opcode = p->opcode;
        p->message_compressed = p->rsv1;
        p->message_wire_bytes = 0;
        p->message_length = 0;
        utf8_stream_init(&p->utf8);
        if (p->message_compressed && !p->inflater) {
            p->inflater = ws_inflater_new();
            if (!p->inflater)
                return fail(p, WS_CLOSE_INTERNAL_ERROR, "Out of memory for decompression.");
        }
    }
    if (!is_control(p->opcode) && p->message_compressed) p->message_wire_bytes += p->payload_length;
    p->stage = STAGE_PAYLOAD;
    return STEP_CONTINUE;
}

/* Takes header bytes from data[*pos..]; STEP_CONTINUE when more are needed or it is complete. */
static int take_header(ws_parser *p, const char *data, size_t length, size_t *pos) {
    while (*pos < length && p->stage == STAGE_HEADER) {
        uint8_t b = (uint8_t)data[(*pos)++];
        p->header[p->header_length++] = b;
        int step = STEP_CONTINUE;
        if (p->header_length == 1) {
            p->header_needed = 2;
            step = first_byte(p, b);
        } else if (p->header_length == 2) {
            step = second_byte(p, b);
        } else if (p->header_needed > 6 && p->header_length == p->header_needed - 4) {
            step = extended_length(p);
        }
        if (step == STEP_CONTINUE && p->header_length == p->header_needed) {
            p->header_length = 0;
            step = header_complete(p);
        }
        if (step != STEP_CONTINUE) return step;
    }
    return STEP_CONTINUE;
}

/* ---- payloads ---- */

static int deliver(ws_message *message, ws_opcode opcode, const char *data, size_t length) {
    message->opcode = opcode;
    message->data = length ? data : "";
    message->length = length;
    message->close_code = 0;
    return WS_PARSE_MESSAGE;
}

static int control_complete(ws_parser *p, const char *payload, size_t length, ws_message *message) {
    if (p->opcode != WS_OPCODE_CLOSE) return deliver(message, p->opcode, payload, length);
    if (length == 1)
        return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A close frame with a 1-byte payload.");
    unsigned code = 0;
    if (length >= 2) {
        code = (unsigned)(uint8_t)payload[0] << 8 | (uint8_t)payload[1];
        if (!ws_close_code_is_valid(code))
            return fail(p, WS_CLOSE_PROTOCOL_ERROR, "A close frame with an invalid code.");
        utf8_stream reason;
        utf8_stream_init(&reason);
        if (!utf8_stream_validate(&reason, payload + 2, length - 2, NULL) ||
            !utf8_stream_complete(&reason))
            return fail(p, WS_CLOSE_INVALID_PAYLOAD, "A close reason is not valid UTF-8.");
        payload += 2;
        length -= 2;
    }
    deliver(message, WS_OPCODE_CLOSE, payload, length);
    message->close_code = code;
    p->stage = STAGE_CLOSED;
    return WS_PARSE_MESSAGE;
}

static int check_text(ws_parser *p, const char *data, size_t length) {
    if (p->message_opcode == WS_OPCODE_TEXT && !utf8_stream_validate(&p->utf8, data, length, NULL))
        return fail(p, WS_CLOSE_INVALID_PAYLOAD, "A text message is not valid UTF-8.");
    return STEP_CONTINUE;
}

static int inflate_result(ws_parser *p, ws_inflate_status status, size_t before) {
    /* The new output is validated first, so the verdict does not depend on how input was split. */
    if (p->message_length > before) {
        int step = check_text(p, p->message + before, p->message_length - before);
        if (step != STEP_CONTINUE) return step;
    }
    switch (status) {
    case WS_INFLATE_OK:
        return STEP_CONTINUE;
    case WS_INFLATE_TOO_BIG:
        return fail(p, WS_CLOSE_MESSAGE_TOO_BIG,
                    "The decompressed message is over the size limit.");
    case WS_INFLATE_BAD_DATA:
        return fail(p, WS_CLOSE_INVALID_PAYLOAD, "A compressed message does not decompress.");
    default:
        return fail(p, WS_CLOSE_INTERNAL_ERROR, "Out of memory for a message.");
    }
}

static int message_complete(ws_parser *p, ws_message *message) {
    if (p->message_compressed) {
        size_t before = p->message_length;
        int step = inflate_result(p, ws_inflater_finish(p->inflater, p), before);
        if (step != STEP_CONTINUE) return step;
        if (p->deflate.client_no_context_takeover)
            release_inflater(p);
        else if (!ws_inflater_next_message(p->inflater))
            return fail(p, WS_CLOSE_INTERNAL_ERROR, "Out of memory for decompression.");
    }
    if (p->message_opcode == WS_OPCODE_TEXT && !utf8_stream_complete(&p->utf8))
        return fail(p, WS_CLOSE_INVALID_PAYLOAD, "A text message ends inside a UTF-8 sequence.");
    ws_opcode opcode = (ws_opcode)p->message_opcode;
    p->message_opcode = 0; /* the buffer is released at the next feed */
    return deliver(message, opcode, p->message, p->message_length);
}

/* Handles the next n payload bytes at chunk (n may be 0 for an empty frame). */
static int take_payload(ws_parser *p, char *chunk, size_t n, ws_message *message) {
    bool whole = p->payload_received == 0 && n == p->payload_length;
    unmask(chunk, n, p->mask, p->payload_received);
    p->payload_received += n;
    bool frame_done = p->payload_received == p->payload_length;
    if (frame_done) p->stage = STAGE_HEADER;

    if (is_control(p->opcode)) {
        if (whole) return control_complete(p, chunk, n, message);
        memcpy(p->control + p->control_length, chunk, n);
        p->control_length = (uint8_t)(p->control_length + n);
        if (!frame_done) return STEP_CONTINUE;
        return control_complete(p, p->control, p->control_length, message);
    }

    if (whole && p->fin && p->opcode != WS_OPCODE_CONTINUATION && !p->message_compressed) {
        /* A whole message in one frame and one read: deliver it in place, no copy. */
        int step = check_text(p, chunk, n);
        if (step != STEP_CONTINUE) return step;
        if (p->message_opcode == WS_OPCODE_TEXT && !utf8_stream_complete(&p->utf8))
            return fail(p, WS_CLOSE_INVALID_PAYLOAD,
                        "A text message ends inside a UTF-8 sequence.");
        ws_opcode opcode = (ws_opcode)p->message_opcode;
        p->message_opcode = 0;
        return deliver(message, opcode, chunk, n);
    }

    if (p->message_compressed) {
        if (n > 0) {
            size_t before = p->message_length;
            int step = inflate_result(p, ws_inflater_run(p->inflater, p, chunk, n), before);
            if (step != STEP_CONTINUE) return step;
        }
    } else if (n > 0) {
        int step = check_text(p, chunk, n);
        if (step != STEP_CONTINUE) return step;
        if (!ws_parser_reserve(p, n))
            return fail(p, WS_CLOSE_INTERNAL_ERROR, "Out of memory for a message.");
        memcpy(p->message + p->message_length, chunk, n);
        p->message_length += n;
    }
    if (frame_done && p->fin) return message_complete(p, message);
    return STEP_CONTINUE;
}

ws_parse_status ws_parser_feed(ws_parser *p, char *data, size_t length, size_t *consumed,
                               ws_message *message) {
    *consumed = 0;
    if (p->stage == STAGE_FAILED) return WS_PARSE_ERROR;
    if (p->stage == STAGE_CLOSED) {
        release_message(p);
        release_inflater(p);
        *consumed = length;
        return WS_PARSE_NEED_MORE;
    }
    if (!p->message_opcode) release_message(p); /* the last delivered message is done with */
    size_t pos = 0;
    for (;;) {
        int step;
        if (p->stage == STAGE_HEADER) {
            if (pos == length) break;
            step = take_header(p, data, length, &pos);
        } else {
            uint64_t remaining = p->payload_length - p->payload_received;
            size_t n = remaining < length - pos ? (size_t)remaining : length - pos;
            if (n == 0 && remaining > 0) break;
            step = take_payload(p, data + pos, n, message);
            pos += n;
        }
        if (step != STEP_CONTINUE) {
            *consumed = step == WS_PARSE_ERROR ? 0 : pos;
            return (ws_parse_status)step;
        }
    }
    *consumed = length;
    return WS_PARSE_NEED_MORE;
}

/* ---- server frames ---- */

size_t ws_frame_header_size(uint64_t payload_length) {
    return payload_length < 126 ? 2 : payload_length <= 0xFFFF ? 4 : 10;
}

size_t ws_encode_frame_header(uint8_t *out, ws_opcode opcode, bool fin, bool rsv1,
                              uint64_t payload_length) {
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (payload_length < 126) {
        out[1] = (uint8_t)payload_length;
        return 2;
    }
    if (payload_length <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_length >> 8);
        out[3] = (uint8_t)payload_length;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_length >> (56 - 8 * i));
    return 10;
}

size_t ws_encode_frame_to(void *out, size_t capacity, ws_opcode opcode, const void *payload,
                          size_t length) {
    if (is_control(opcode) && length > WS_MAX_CONTROL_PAYLOAD) return 0;
    size_t header = ws_frame_header_size(length);
    if (capacity < header || capacity - header < length) return 0;
    ws_encode_frame_header(out, opcode, true, false, length);
    if (length) memcpy((char *)out + header, payload, length);
    return header + length;
}

bool ws_encode_frame(text *out, ws_opcode opcode, const void *payload, size_t length) {
    if (is_control(opcode) && length > WS_MAX_CONTROL_PAYLOAD) return false;
    uint8_t header[WS_MAX_SERVER_HEADER];
    size_t header_length = ws_encode_frame_header(header, opcode, true, false, length);
    text_append(out, header, header_length);
    if (length) text_append(out, payload, length);
    return !text_failed(out);
}

static void truncate_text(text *t, size_t length) {
    if (!t->data || t->failed) return;
    t->length = length;
    t->data[length] = '\0';
}

bool ws_encode_message(text *out, ws_opcode opcode, const void *payload, size_t length,
                       ws_deflater *deflater) {
    if (!deflater || is_control(opcode)) return ws_encode_frame(out, opcode, payload, length);
    size_t start = out->length;
    static const uint8_t room[WS_MAX_SERVER_HEADER] = {0};
    text_append(out, room, sizeof room);
    if (text_failed(out)) return false;
    if (!ws_deflate_message(deflater, payload, length, out) ||
        out->length - start - sizeof room >= length) {
        /* Could not compress, or it did not help: a plain frame is always allowed. */
        if (text_failed(out)) return false;
        truncate_text(out, start);
        return ws_encode_frame(out, opcode, payload, length);
    }
    size_t compressed = out->length - start - sizeof room;
    uint8_t header[WS_MAX_SERVER_HEADER];
    size_t header_length = ws_encode_frame_header(header, opcode, true, true, compressed);
    memcpy(out->data + start, header, header_length);
    memmove(out->data + start + header_length, out->data + start + sizeof room, compressed);
    truncate_text(out, start + header_length + compressed);
    return true;
}

void ws_encode_close(text *out, unsigned code, const char *reason, size_t reason_length) {
    if (code == 0) {
        ws_encode_frame(out, WS_OPCODE_CLOSE, NULL, 0);
        return;
    }
    char payload[WS_MAX_CONTROL_PAYLOAD];
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    size_t n =
        reason_length < WS_MAX_CONTROL_PAYLOAD - 2 ? reason_length : WS_MAX_CONTROL_PAYLOAD - 2;
    while (n > 0 && n < reason_length && ((unsigned char)reason[n] & 0xC0) == 0x80)
        n--;
    if (n) memcpy(payload + 2, reason, n);
    ws_encode_frame(out, WS_OPCODE_CLOSE, payload, n + 2);
}

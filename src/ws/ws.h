#ifndef HERALD_WS_WS_H
#define HERALD_WS_WS_H
/* Owns: the WebSocket protocol (RFC 6455) and permessage-deflate (RFC 7692), independent of
 * sockets: the opening handshake decision and its 101 response head, the incremental parser of
 * client frames with message assembly and its close codes, the encoder of server frames, the
 * incremental UTF-8 validator, and the zlib state for compressed messages. No I/O, no libuv.
 *
 * Memory per connection: a ws_parser is a plain struct (256 bytes). It holds heap memory only
 * while a message is in flight: the assembly buffer (grown as bytes arrive, never past the
 * message limit) and, for a compressed message, an inflate stream (40,056 bytes measured). Both are
 * released when the message has been delivered and the caller has fed again (it loops until
 * WS_PARSE_NEED_MORE anyway), so an idle connection holds no heap memory.
 *
 * permessage-deflate policy: herald always answers "server_no_context_takeover;
 * client_no_context_takeover". The first means every outgoing message is compressed on its own,
 * so an event frame is compressed ONCE and the same bytes go to every subscriber, and the
 * deflate state need not live per connection (one ws_deflater per thread will do). The second
 * lets the inflate stream be freed after each incoming message. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/text.h"

#define WS_DEFAULT_MAX_MESSAGE ((size_t)1 << 20) /* --ws-max-message default: 1 MiB */
#define WS_MAX_HEADER_SIZE 14                    /* client frame: 2 + 8 (length) + 4 (mask) */
#define WS_MAX_SERVER_HEADER 10                  /* server frame: 2 + 8, no mask */
#define WS_MAX_CONTROL_PAYLOAD 125
#define WS_ACCEPT_LENGTH 28 /* base64 of a SHA-1 digest */

typedef enum ws_opcode {
    WS_OPCODE_CONTINUATION = 0x0,
    WS_OPCODE_TEXT = 0x1,
    WS_OPCODE_BINARY = 0x2,
    WS_OPCODE_CLOSE = 0x8,
    WS_OPCODE_PING = 0x9,
    WS_OPCODE_PONG = 0xA,
} ws_opcode;

/* Close codes herald sends (RFC 6455 §7.4.1). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_INVALID_PAYLOAD = 1007, /* bad UTF-8, undecompressable data */
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_MESSAGE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* A close code a peer may put in a close frame: 1000-1003, 1007-1014 (1012-1014 are registered
 * by IANA, so accepted), 3000-4999. Never 0-999, 1004-1006, 1015, 1016-2999 or >= 5000. */
bool ws_close_code_is_valid(unsigned code);

/* ---- UTF-8, validated incrementally across chunks ---------------------------------------- */

/* Tracks a code point split between chunks. Zero-initialised (or utf8_stream_init) = at a
 * boundary. Strict Unicode Table 3-7: no overlongs, no surrogates, nothing past U+10FFFF. */
typedef struct utf8_stream {
    uint8_t need;      /* continuation bytes still expected */
    uint8_t low, high; /* allowed range of the next continuation byte */
    bool failed;
} utf8_stream;

void utf8_stream_init(utf8_stream *s);
/* Validates the next chunk. False as soon as a byte cannot continue any well-formed sequence;
 * *error_offset (may be NULL) is that byte's index in this chunk. A failed stream stays failed
 * (error_offset 0 on later calls). */
bool utf8_stream_validate(utf8_stream *s, const void *data, size_t length, size_t *error_offset);
/* True when the bytes so far end on a code point boundary (a message may end here). */
bool utf8_stream_complete(const utf8_stream *s);

/* ---- permessage-deflate parameters and negotiation (RFC 7692) ---------------------------- */

typedef struct ws_deflate_params {
    bool enabled;
    bool server_no_context_takeover; /* herald's outgoing messages are compressed independently */
    bool client_no_context_takeover; /* the client's are too: inflate state is per message */
    bool server_max_window_bits_offered; /* then the response must echo it */
    uint8_t server_max_window_bits; /* window herald must stay within when compressing, 9..15 */
    uint8_t client_max_window_bits; /* window the client may use, 8..15 (we inflate with 15) */
} ws_deflate_params;

/* Picks the first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions value
 * (several offers, comma-separated; repeated header lines joined with ","). An offer is declined
 * (the next one is tried) for an unknown, duplicate or malformed parameter, a window-bits value
 * outside 8..15 (exactly "8".."15", bare only for client_max_window_bits), or
 * server_max_window_bits=8, which zlib cannot produce. Other extensions are ignored. The result
 * always has both no_context_takeover flags set (herald's choice, see the top of this file) and
 * server_max_window_bits = the offered value or 15. False (params zeroed) when none fits. */
bool ws_deflate_negotiate(const char *offers, size_t length, ws_deflate_params *params);
/* Appends the Sec-WebSocket-Extensions response value, e.g. "permessage-deflate;
 * server_no_context_takeover; client_no_context_takeover[; server_max_window_bits=10]" (the
 * window is echoed when offered, as RFC 7692 §7.1.2.1 requires to accept the offer). */
void ws_deflate_params_format(const ws_deflate_params *params, text *out);

/* ---- Opening handshake (RFC 6455 §4.2) --------------------------------------------------- */

/* The request's parts; header values with surrounding whitespace removed, NULL when absent.
 * Repeated Sec-WebSocket-Protocol / -Extensions lines are joined with "," by the caller. */
typedef struct ws_handshake_request {
    const char *method;
    int http_version_minor; /* HTTP/1.x: must be at least 1 */
    const char *upgrade;
    const char *connection;
    const char *key;
    const char *version;
    const char *protocol;
    const char *extensions;
} ws_handshake_request;

typedef struct ws_handshake_options {
    const char *subprotocol; /* chosen when the client offers it (e.g. "herald.v1"); may be NULL */
    bool allow_deflate;      /* negotiate permessage-deflate when offered */
} ws_handshake_options;

typedef struct ws_handshake_result {
    int status;                /* 101, or 400 / 426 */
    const char *error_code;    /* SPEC §2 code for the JSON error body ("bad_request") */
    const char *error_message; /* one clear sentence */
    const char *error_headers; /* extra "Name: value\r\n" lines for the error response, or NULL */
    char accept[WS_ACCEPT_LENGTH + 1]; /* Sec-WebSocket-Accept value */
    const char *subprotocol;           /* options->subprotocol when chosen, else NULL */
    ws_deflate_params deflate;         /* .enabled when permessage-deflate was negotiated */
} ws_handshake_result;

/* Decides the handshake. 400: method not GET, HTTP older than 1.1, Upgrade without the token
 * "websocket" or Connection without "upgrade" (comma lists, case-insensitive), or a
 * Sec-WebSocket-Key that is not the canonical base64 of exactly 16 bytes. 426 (error_headers
 * "Sec-WebSocket-Version: 13\r\n"): Sec-WebSocket-Version missing or not exactly 13. */
bool ws_handshake_check(const ws_handshake_request *request, const ws_handshake_options *options,
                        ws_handshake_result *result);
/* base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), NUL-terminated. */
void ws_handshake_accept(const char *key, size_t key_length, char out[WS_ACCEPT_LENGTH + 1]);
/* Appends the whole "HTTP/1.1 101 Switching Protocols" head of an accepted handshake, blank line
 * included; extra_headers are complete "Name: value\r\n" lines (e.g. Herald-Epoch) or NULL. */
void ws_handshake_response_head(const ws_handshake_result *result, const char *extra_headers,
                                text *out);

/* ---- Outgoing messages: the deflater ----------------------------------------------------- */

typedef struct ws_deflater {
    struct z_stream_s *stream; /* NULL until the first message, and after ws_deflater_release */
    int window_bits;           /* 9..15 */
    int level;                 /* zlib level, default 6 */
    bool no_context_takeover;  /* reset after each message (herald: always) */
    size_t heap_bytes;         /* zlib memory currently held */
} ws_deflater;

/* window_bits: the connection's server_max_window_bits (9..15; 15 for a shared deflater).
 * Allocates nothing yet. */
void ws_deflater_init(ws_deflater *d, int window_bits, bool no_context_takeover);
void ws_deflater_free(ws_deflater *d);
/* Frees the zlib state (~262 KiB at 15 bits) until the next message: for a per-connection
 * deflater going idle. Only meaningful with no_context_takeover. */
void ws_deflater_release(ws_deflater *d);
/* Appends the compressed payload of one whole message: raw deflate, sync-flushed, with the
 * trailing 00 00 ff ff removed (RFC 7692 §7.2.1). False on a zlib or allocation failure. */
bool ws_deflate_message(ws_deflater *d, const void *data, size_t length, text *out);

/* ---- Outgoing frames (server -> client: never masked) ------------------------------------ */

/* Header size for a payload of this length: 2, 4 or 10. */
size_t ws_frame_header_size(uint64_t payload_length);
/* Writes a server frame header into out (at least WS_MAX_SERVER_HEADER bytes), with the minimal
 * length encoding; returns its size. rsv1 marks a compressed message's first frame. */
size_t ws_encode_frame_header(uint8_t *out, ws_opcode opcode, bool fin, bool rsv1,
                              uint64_t payload_length);
/* Writes a whole unfragmented frame into a caller buffer; returns its size, or 0 when capacity is
 * too small or a control payload is over 125 bytes. */
size_t ws_encode_frame_to(void *out, size_t capacity, ws_opcode opcode, const void *payload,
                          size_t length);
/* Appends a whole unfragmented frame (FIN set). False (nothing appended) for a control payload
 * over 125 bytes; allocation failures are sticky in the text. */
bool ws_encode_frame(text *out, ws_opcode opcode, const void *payload, size_t length);
/* Appends a text or binary message frame: compressed with RSV1 when deflater is non-NULL and
 * that makes it smaller, else plain. The bytes depend only on the payload and the deflater's
 * window, so with no context takeover one encoding serves every connection whose
 * server_max_window_bits >= the deflater's. False on failure. */
bool ws_encode_message(text *out, ws_opcode opcode, const void *payload, size_t length,
                       ws_deflater *deflater);
/* Appends a close frame: empty when code is 0, else the code and the reason, cut to 123 bytes at
 * a UTF-8 boundary. */
void ws_encode_close(text *out, unsigned code, const char *reason, size_t reason_length);

/* ---- Incoming frames (client -> server) -------------------------------------------------- */

typedef struct ws_parser_config {
    size_t max_message;        /* (decompressed) message limit; 0 -> WS_DEFAULT_MAX_MESSAGE */
    bool reject_binary;        /* a binary message fails with 1003 at its first header byte */
    ws_deflate_params deflate; /* from the handshake; all zero = no compression */
} ws_parser_config;

typedef enum ws_parse_status {
    WS_PARSE_NEED_MORE, /* all input consumed, nothing to deliver */
    WS_PARSE_MESSAGE,   /* *message is set; feed the rest of the input (even if empty) next */
    WS_PARSE_ERROR,     /* fail the connection: send a close with parser.close_code, stop reading */
} ws_parse_status;

typedef struct ws_message {
    ws_opcode opcode;    /* TEXT, BINARY (complete messages), PING, PONG, CLOSE */
    const char *data;    /* payload (CLOSE: the reason); text is valid UTF-8 */
    size_t length;       /* never over the limit; data is "" when 0 */
    unsigned close_code; /* CLOSE: the peer's code (valid), 0 when it sent an empty close */
} ws_message;

typedef struct ws_inflater ws_inflater; /* private; heap only while a compressed message is read */

typedef struct ws_parser {
    /* configuration */
    size_t max_message;
    size_t max_compressed; /* wire bytes of one compressed message: max + max/4 + 1 KiB */
    ws_deflate_params deflate;
    bool reject_binary;
    /* the current frame */
    uint8_t stage;
    uint8_t header[WS_MAX_HEADER_SIZE];
    uint8_t header_length, header_needed;
    uint8_t opcode;
    bool fin, rsv1;
    uint8_t mask[4];
    uint64_t payload_length, payload_received;
    /* the current data message (fragments so far) */
    uint8_t message_opcode; /* 0 when no message is in progress */
    bool message_compressed;
    utf8_stream utf8;
    uint64_t message_wire_bytes;
    char *message;
    size_t message_length, message_capacity;
    ws_inflater *inflater;
    /* a control frame split across reads */
    uint8_t control_length;
    char control[WS_MAX_CONTROL_PAYLOAD];
    /* the failure, once WS_PARSE_ERROR was returned */
    unsigned close_code;
    const char *error_message;
} ws_parser;

void ws_parser_init(ws_parser *p, const ws_parser_config *config);
void ws_parser_free(ws_parser *p);

/* Consumes bytes (unmasking them IN PLACE); *consumed says how many. Bytes may be split
 * anywhere. A delivered message's data points into these bytes or into the parser; it stays
 * valid until the next call (and, in the first case, while the caller keeps its bytes). After a
 * close frame, later bytes are consumed and ignored. Once WS_PARSE_ERROR is returned every call
 * returns it again without consuming. */
ws_parse_status ws_parser_feed(ws_parser *p, char *data, size_t length, size_t *consumed,
                               ws_message *message);
/* Heap bytes the parser holds now (assembly buffer + zlib); 0 when idle. */
size_t ws_parser_heap_bytes(const ws_parser *p);

#endif

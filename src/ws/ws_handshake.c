/* The opening handshake (RFC 6455 §4.2) and the permessage-deflate offer parser (RFC 7692 §7).
 * Nothing here allocates except the caller's text, and every scan is bounded by the value's
 * length, so huge or hostile header values cost time linear in their size and nothing else. */
#include "core/encoding.h"
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "ws/ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- small lexical helpers (RFC 9110 §5.6) ---- */

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(unsigned char c) {
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool equals_nocase(const char *a, size_t a_length, const char *b) {
    size_t b_length = strlen(b);
    if (a_length != b_length) return false;
    for (size_t i = 0; i < a_length; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
    return true;
}

/* Whether a comma-separated list holds an element equal to want (case-insensitive or not). */
static bool list_contains(const char *list, const char *want, bool ignore_case) {
    if (!list) return false;
    size_t want_length = strlen(want);
    const char *p = list;
    for (;;) {
        while (*p && (is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (!*p) return false;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_ows((unsigned char)end[-1]))
            end--;
        size_t length = (size_t)(end - start);
        if (ignore_case ? equals_nocase(start, length, want)
                        : (length == want_length && memcmp(start, want, length) == 0))
            return true;
    }
}

/* ---- Sec-WebSocket-Key / Accept ---- */

/* Canonical base64 of exactly 16 bytes: 22 symbols, the last with its 4 padding bits zero, "==". */
static bool key_is_valid(const char *key) {
    unsigned char raw[16];
    size_t length = 0;
    return key && strlen(key) == 24 && base64_decode(key, 24, raw, sizeof raw, &length) &&
           length == 16;
}

void ws_handshake_accept(const char *key, size_t key_length, char out[WS_ACCEPT_LENGTH + 1]) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int digest_length = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
              EVP_DigestUpdate(ctx, key, key_length) &&
              EVP_DigestUpdate(ctx, WS_GUID, sizeof WS_GUID - 1) &&
              EVP_DigestFinal_ex(ctx, digest, &digest_length);
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    out[WS_ACCEPT_LENGTH] = '\0';
}

/* ---- permessage-deflate offers ---- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ows(cursor *c) {
    while (c->p < c->end && is_ows((unsigned char)*c->p))
        c->p++;
}

static bool take_token(cursor *c, const char **start, size_t *length) {
    *start = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p))
        c->p++;
    *length = (size_t)(c->p - *start);
    return *length > 0;
}

/* A token or quoted-string value, unquoted into out (truncated values are marked too long). */
typedef struct param_value {
    char text[8];
    size_t length; /* may exceed sizeof text - 1: then the value is too long to be a window size */
} param_value;

static bool take_value(cursor *c, param_value *v) {
    v->length = 0;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\') {
                c->p++;
                if (c->p == c->end) return false;
            }
            if (v->length < sizeof v->text - 1) v->text[v->length] = *c->p;
            v->length++;
            c->p++;
        }
        if (c->p == c->end) return false; /* unterminated */
        c->p++;
    } else {
        const char *start;
        size_t length;
        if (!take_token(c, &start, &length)) return false;
        for (size_t i = 0; i < length && i < sizeof v->text - 1; i++)
            v->text[i] = start[i];
        v->length = length;
    }
    v->text[v->length < sizeof v->text ? v->length : sizeof v->text - 1] = '\0';
    return true;
}

/* Exactly "8".."15" (RFC 7692 §7.1.2: 1*DIGIT limited to these, no leading zero); 0 if not. */
static int window_bits(const param_value *v) {
    if (v->length == 1 && (v->text[0] == '8' || v->text[0] == '9')) return v->text[0] - '0';
    if (v->length == 2 && v->text[0] == '1' && v->text[1] >= '0' && v->text[1] <= '5')
        return 10 + v->text[1] - '0';
    return 0;
}

/* Skips to just past the next comma outside a quoted string (or to the end). */
static void skip_element(cursor *c) {
    bool quoted = false;
    while (c->p < c->end) {
        char ch = *c->p++;
        if (quoted) {
            if (ch == '\\' && c->p < c->end)
                c->p++;
            else if (ch == '"')
                quoted = false;
        } else if (ch == '"') {
            quoted = true;
        } else if (ch == ',') {
            return;
        }
    }
}

enum { SEEN_SERVER_NCT = 1, SEEN_CLIENT_NCT = 2, SEEN_SERVER_BITS = 4, SEEN_CLIENT_BITS = 8 };

/* Parses one offer's parameters. Returns false when the syntax breaks (the caller resyncs at the
 * next comma); *acceptable says whether a permessage-deflate offer can be taken as it stands. */
static bool parse_params(cursor *c, bool deflate, bool *acceptable, ws_deflate_params *params) {
    unsigned seen = 0;
    *acceptable = deflate;
    for (;;) {
        skip_ows(c);
        if (c->p == c->end || *c->p == ',') return true;
        if (*c->p != ';') return false;
        c->p++;
        skip_ows(c);
        const char *name;
        size_t name_length;
        if (!take_token(c, &name, &name_length)) return false;
        skip_ows(c);
        param_value value = {0};
        bool has_value = false;
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (!take_value(c, &value)) return false;
            has_value = true;
        }
        if (!deflate) continue;
        unsigned flag;
        if (equals_nocase(name, name_length, "server_no_context_takeover")) {
            flag = SEEN_SERVER_NCT;
            if (has_value) *acceptable = false;
        } else if (equals_nocase(name, name_length, "client_no_context_takeover")) {
            flag = SEEN_CLIENT_NCT;
            if (has_value) *acceptable = false;
        } else if (equals_nocase(name, name_length, "server_max_window_bits")) {
            flag = SEEN_SERVER_BITS;
            int bits = has_value ? window_bits(&value) : 0;
            if (bits < 9) *acceptable = false; /* absent, invalid, or 8 (zlib cannot do 8) */
            params->server_max_window_bits = (uint8_t)bits;
            params->server_max_window_bits_offered = true;
        } else if (equals_nocase(name, name_length, "client_max_window_bits")) {
            flag = SEEN_CLIENT_BITS;
            int bits = has_value ? window_bits(&value) : 15;
            if (bits == 0) *acceptable = false;
            params->client_max_window_bits = (uint8_t)bits;
        } else {
            *acceptable = false; /* unknown parameter */
            continue;
        }
        if (seen & flag) *acceptable = false; /* duplicate */
        seen |= flag;
    }
}

bool ws_deflate_negotiate(const char *offers, size_t length, ws_deflate_params *params) {
    memset(params, 0, sizeof *params);
    if (!offers) return false;
    cursor c = {offers, offers + length};
    while (c.p < c.end) {
        skip_ows(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        if (c.p == c.end) break;
        const char *name;
        size_t name_length;
        if (!take_token(&c, &name, &name_length)) {
            skip_element(&c);
            continue;
        }
        bool deflate = equals_nocase(name, name_length, "permessage-deflate");
        ws_deflate_params offer = {.server_max_window_bits = 15, .client_max_window_bits = 15};
        bool acceptable;
        if (!parse_params(&c, deflate, &acceptable, &offer)) {
            skip_element(&c);
            continue;
        }
        if (c.p < c.end) c.p++; /* the comma */
        if (acceptable) {
            offer.enabled = true;
            offer.server_no_context_takeover = true;
            offer.client_no_context_takeover = true;
            *params = offer;
            return true;
        }
    }
    return false;
}

void ws_deflate_params_format(const ws_deflate_params *params, text *out) {
    text_append_cstring(out, "permessage-deflate");
    if (params->server_no_context_takeover)
        text_append_cstring(out, "; server_no_context_takeover");
    if (params->client_no_context_takeover)
        text_append_cstring(out, "; client_no_context_takeover");
    if (params->server_max_window_bits_offered || params->server_max_window_bits < 15)
        text_printf(out, "; server_max_window_bits=%u", (unsigned)params->server_max_window_bits);
}

/* ---- the handshake ---- */

static bool reject(ws_handshake_result *r, int status, const char *message) {
    r->status = status;
    r->error_code = "bad_request";
    r->error_message = message;
    r->error_headers = status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL;
    return false;
}

bool ws_handshake_check(const ws_handshake_request *request, const ws_handshake_options *options,
                        ws_handshake_result *result) {
    memset(result, 0, sizeof *result);
    if (!request->method || strcmp(request->method, "GET") != 0)
        return reject(result, 400, "A WebSocket handshake must use GET.");
    if (request->http_version_minor < 1)
        return reject(result, 400, "A WebSocket handshake needs HTTP/1.1.");
    if (!list_contains(request->upgrade, "websocket", true))
        return reject(result, 400, "The Upgrade header must name websocket.");
    if (!list_contains(request->connection, "upgrade", true))
        return reject(result, 400, "The Connection header must include Upgrade.");
    if (!request->version || strcmp(request->version, "13") != 0)
        return reject(result, 426, "Unsupported WebSocket version: this server speaks 13.");
    if (!key_is_valid(request->key))
        return reject(result, 400, "Sec-WebSocket-Key must be the base64 of 16 bytes.");

    ws_handshake_accept(request->key, strlen(request->key), result->accept);
    if (!result->accept[0]) {
        result->status = 500;
        result->error_code = "unavailable";
        result->error_message = "The handshake could not be computed.";
        return false;
    }
    if (options && options->subprotocol &&
        list_contains(request->protocol, options->subprotocol, false))
        result->subprotocol = options->subprotocol;
    if (options && options->allow_deflate && request->extensions)
        ws_deflate_negotiate(request->extensions, strlen(request->extensions), &result->deflate);
    result->status = 101;
    return true;
}

void ws_handshake_response_head(const ws_handshake_result *result, const char *extra_headers,
                                text *out) {
    text_append_cstring(out, "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: ");
    text_append_cstring(out, result->accept);
    text_append_cstring(out, "\r\n");
    if (result->subprotocol) {
        text_append_cstring(out, "Sec-WebSocket-Protocol: ");
        text_append_cstring(out, result->subprotocol);
        text_append_cstring(out, "\r\n");
    }
    if (result->deflate.enabled) {
        text_append_cstring(out, "Sec-WebSocket-Extensions: ");
        ws_deflate_params_format(&result->deflate, out);
        text_append_cstring(out, "\r\n");
    }
    if (extra_headers) text_append_cstring(out, extra_headers);
    text_append_cstring(out, "\r\n");
}

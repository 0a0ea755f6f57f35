#include "http/http_parser.h"
#include "core/encoding.h"

#include <stdlib.h>
#include <string.h>

/* The parser is a byte-at-a-time state machine, so the result never depends on how the input was
 * split. Only body data is copied in bulk, and a bulk copy does exactly what byte steps would.
 *
 * The request line and header lines are appended to one growable storage block and rewritten in
 * place into NUL-terminated strings when their CRLF arrives. Everything stored stays below the
 * number of bytes counted against max_header_bytes, so that limit also bounds the storage.
 * Chunk extensions and trailers are validated byte by byte and never stored: once the headers are
 * complete the storage must not move, because the request points into it. */

enum {
    INITIAL_HEADER_STORAGE = 512,
    INITIAL_BODY_STORAGE = 4096,
    /* 16 hex digits hold any uint64_t, so a longer size (even with leading zeros) is rejected
     * rather than risking an overflow. */
    MAX_CHUNK_SIZE_DIGITS = 16,
};

typedef enum parse_phase {
    PHASE_REQUEST_LINE, /* line mode; empty lines before the request line are skipped */
    PHASE_HEADER_LINE,  /* line mode; the empty line ends the headers */
    PHASE_BODY_IDENTITY,
    PHASE_CHUNK_SIZE,
    PHASE_CHUNK_EXTENSION,
    PHASE_CHUNK_SIZE_LF,
    PHASE_CHUNK_DATA,
    PHASE_CHUNK_DATA_CR,
    PHASE_CHUNK_DATA_LF,
    PHASE_TRAILER_START, /* first byte of a trailer line, or CR of the final empty line */
    PHASE_TRAILER_NAME,
    PHASE_TRAILER_VALUE,
    PHASE_TRAILER_LF,
    PHASE_FINAL_LF,
    PHASE_COMPLETE,
    PHASE_ERROR,
} parse_phase;

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (RFC 9112 §7.1.1) */
typedef enum extension_state {
    EXTENSION_BEFORE_SEMICOLON, /* after whitespace: only more whitespace or ";" may follow */
    EXTENSION_BEFORE_NAME,
    EXTENSION_NAME,
    EXTENSION_AFTER_NAME, /* whitespace after a name: "=" or ";" must follow */
    EXTENSION_BEFORE_VALUE,
    EXTENSION_TOKEN_VALUE,
    EXTENSION_QUOTED_VALUE,
    EXTENSION_QUOTED_ESCAPE,
    EXTENSION_AFTER_QUOTED,
} extension_state;

/* Offsets, not pointers: the storage may move while the headers are still arriving. */
typedef struct field_offsets {
    size_t name;
    size_t value;
    size_t value_length;
} field_offsets;

struct http_parser_state {
    parse_phase phase;
    extension_state extension;
    bool line_saw_cr;
    bool headers_complete;
    size_t header_bytes; /* request line, headers, chunk extensions and trailers so far */

    char *storage;
    size_t storage_length;
    size_t storage_capacity;
    size_t line_start; /* where the line being received starts in storage */
    size_t target_offset;

    field_offsets *fields;
    size_t field_count;
    size_t field_capacity;
    http_header *headers; /* built from fields once the headers are complete */

    char *body;
    size_t body_length;
    size_t body_capacity;
    size_t body_limit;  /* the body never grows past this */
    uint64_t remaining; /* identity: body bytes left; chunked: bytes left in the chunk */
    uint64_t chunk_size;
    unsigned chunk_size_digits;

    http_request request;
};

/* ---------- character classes (RFC 9110 §5.6) ---------- */

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_whitespace(unsigned char c) {
    return c == ' ' || c == '\t';
}

/* CTL characters other than HTAB never appear in a valid request line, field or extension. */
static bool is_forbidden_control(unsigned char c) {
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool equals_ignore_case(const char *text, size_t length, const char *lowercase_literal) {
    size_t literal_length = strlen(lowercase_literal);
    if (length != literal_length) return false;
    for (size_t i = 0; i < length; i++) {
        if (to_lower(text[i]) != lowercase_literal[i]) return false;
    }
    return true;
}

/* Walks a comma-separated field value (RFC 9110 §5.6.1): each call yields the next element with
 * surrounding whitespace removed, possibly empty. False when the list is exhausted. */
static bool next_list_element(const char **cursor, const char *end, const char **element,
                              size_t *element_length) {
    if (*cursor == NULL) return false;
    const char *start = *cursor;
    const char *comma = memchr(start, ',', (size_t)(end - start));
    const char *stop = comma ? comma : end;
    *cursor = comma ? comma + 1 : NULL;
    while (start < stop && is_whitespace((unsigned char)*start))
        start++;
    while (stop > start && is_whitespace((unsigned char)stop[-1]))
        stop--;
    *element = start;
    *element_length = (size_t)(stop - start);
    return true;
}

/* ---------- errors ---------- */

static bool fail(http_parser *p, int status, const char *code, const char *message) {
    p->error_status = status;
    p->error_code = code;
    p->error_message = message;
    if (p->state) p->state->phase = PHASE_ERROR;
    return false;
}

static bool fail_bad_request(http_parser *p, const char *message) {
    return fail(p, 400, "bad_request", message);
}

static bool fail_out_of_memory(http_parser *p) {
    return fail(p, 503, "unavailable", "The server is out of memory for this request.");
}

/* ---------- storage ---------- */

static size_t grown_capacity(size_t capacity, size_t needed, size_t initial, size_t limit) {
    size_t grown = capacity ? capacity : initial;
    while (grown < needed)
        grown = grown > SIZE_MAX / 2 ? SIZE_MAX : grown * 2;
    if (grown > limit) grown = limit;
    return grown < needed ? needed : grown;
}

static bool append_to_storage(http_parser *p, char c) {
    http_parser_state *s = p->state;
    if (s->storage_length + 1 > s->storage_capacity) {
        /* Never reached past the limit: stored bytes stay below the counted bytes. */
        size_t limit = p->limits.max_header_bytes + 1;
        size_t capacity = grown_capacity(s->storage_capacity, s->storage_length + 1,
                                         INITIAL_HEADER_STORAGE, limit);
        char *storage = realloc(s->storage, capacity);
        if (!storage) return fail_out_of_memory(p);
        s->storage = storage;
        s->storage_capacity = capacity;
    }
    s->storage[s->storage_length++] = c;
    return true;
}

static bool reserve_body(http_parser *p, size_t extra) {
    http_parser_state *s = p->state;
    size_t needed = s->body_length + extra + 1; /* + the terminating NUL */
    if (needed <= s->body_capacity) return true;
    size_t capacity = grown_capacity(s->body_capacity, needed, INITIAL_BODY_STORAGE, s->body_limit);
    char *body = realloc(s->body, capacity);
    if (!body) return fail_out_of_memory(p);
    s->body = body;
    s->body_capacity = capacity;
    return true;
}

static void append_to_body(http_parser_state *s, const char *data, size_t length) {
    memcpy(s->body + s->body_length, data, length);
    s->body_length += length;
}

/* Counts one byte against max_header_bytes (request line, headers, chunk extensions, trailers). */
static bool count_header_byte(http_parser *p) {
    http_parser_state *s = p->state;
    if (s->header_bytes >= p->limits.max_header_bytes) {
        return fail(p, 431, "headers_too_large",
                    "The request line and header fields are larger than the server accepts.");
    }
    s->header_bytes++;
    return true;
}

/* ---------- request line ---------- */

static bool is_valid_target_char(unsigned char c) {
    /* Visible ASCII only; a fragment is never part of a request-target (RFC 9112 §3.2). */
    return c > 0x20 && c < 0x7f && c != '#';
}

static bool parse_request_line(http_parser *p, char *line, size_t length) {
    http_parser_state *s = p->state;
    static const char *const shape_message =
        "The request line must be a method, a target and an HTTP version separated by single "
        "spaces.";

    size_t method_end = 0;
    while (method_end < length && is_tchar((unsigned char)line[method_end]))
        method_end++;
    if (method_end == 0 || (method_end < length && line[method_end] != ' ')) {
        return fail_bad_request(p, "The request method must be a token such as GET or POST.");
    }
    if (method_end == length) return fail_bad_request(p, shape_message);

    size_t target_start = method_end + 1;
    size_t target_end = target_start;
    while (target_end < length && line[target_end] != ' ')
        target_end++;
    if (target_end == length || target_end == target_start) {
        return fail_bad_request(p, shape_message);
    }
    for (size_t i = target_start; i < target_end; i++) {
        if (!is_valid_target_char((unsigned char)line[i])) {
            return fail_bad_request(p, "The request target contains a character that is not "
                                       "allowed.");
        }
    }
    size_t target_length = target_end - target_start;
    bool asterisk = target_length == 1 && line[target_start] == '*';
    if (line[target_start] != '/' && !asterisk) {
        return fail_bad_request(
            p, "The request target must be a path starting with \"/\", or \"*\" for OPTIONS.");
    }

    const char *version = line + target_end + 1;
    size_t version_length = length - target_end - 1;
    if (version_length != 8 || memcmp(version, "HTTP/", 5) != 0 ||
        !is_digit((unsigned char)version[5]) || version[6] != '.' ||
        !is_digit((unsigned char)version[7])) {
        return fail_bad_request(p, "The request line must end with an HTTP version such as "
                                   "HTTP/1.1.");
    }
    if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
        return fail(p, 505, "bad_request", "Only HTTP/1.0 and HTTP/1.1 are supported.");
    }
    line[method_end] = '\0';
    if (asterisk && strcmp(line, "OPTIONS") != 0) {
        return fail_bad_request(p, "The \"*\" request target is only allowed with OPTIONS.");
    }
    line[target_end] = '\0';

    s->request.version_minor = version[7] - '0';
    s->target_offset = s->line_start + target_start;
    /* Keep "METHOD\0TARGET\0"; the version needs no storage. */
    s->storage_length = s->line_start + target_end + 1;
    s->line_start = s->storage_length;
    s->phase = PHASE_HEADER_LINE;
    return true;
}

/* ---------- header fields ---------- */

static bool store_header_field(http_parser *p, size_t length) {
    http_parser_state *s = p->state;
    /* Room for the value's NUL before taking a pointer: this may move the storage. The count
     * of bytes already includes the line's CR, so this stays within the limit. */
    if (!append_to_storage(p, '\0')) return false;
    s->storage_length--;
    char *line = s->storage + s->line_start;

    if (is_whitespace((unsigned char)line[0])) {
        return fail_bad_request(
            p, "A header line starts with whitespace; folded header values are not allowed.");
    }
    size_t name_end = 0;
    while (name_end < length && is_tchar((unsigned char)line[name_end]))
        name_end++;
    if (name_end < length && is_whitespace((unsigned char)line[name_end])) {
        return fail_bad_request(p,
                                "A header field name is followed by whitespace before the colon.");
    }
    if (name_end == length) {
        return fail_bad_request(p, "A header line has no colon after the field name.");
    }
    if (name_end == 0 || line[name_end] != ':') {
        return fail_bad_request(p, "A header field name contains a character that is not "
                                   "allowed.");
    }
    if (s->field_count >= p->limits.max_headers) {
        return fail(p, 431, "headers_too_large",
                    "The request has more header fields than the server accepts.");
    }
    if (s->field_count == s->field_capacity) {
        size_t capacity =
            grown_capacity(s->field_capacity, s->field_count + 1, 8, p->limits.max_headers);
        field_offsets *fields = realloc(s->fields, capacity * sizeof *fields);
        if (!fields) return fail_out_of_memory(p);
        s->fields = fields;
        s->field_capacity = capacity;
    }

    for (size_t i = 0; i < name_end; i++)
        line[i] = to_lower(line[i]);
    line[name_end] = '\0';
    size_t value_start = name_end + 1;
    size_t value_end = length;
    while (value_start < value_end && is_whitespace((unsigned char)line[value_start])) {
        value_start++;
    }
    while (value_end > value_start && is_whitespace((unsigned char)line[value_end - 1])) {
        value_end--;
    }
    /* Control characters were refused as they arrived; HTAB inside a value is allowed. */
    size_t value_length = value_end - value_start;
    memmove(line + name_end + 1, line + value_start, value_length);
    line[name_end + 1 + value_length] = '\0';

    s->fields[s->field_count++] = (field_offsets){
        .name = s->line_start,
        .value = s->line_start + name_end + 1,
        .value_length = value_length,
    };
    s->storage_length = s->line_start + name_end + 1 + value_length + 1;
    s->line_start = s->storage_length;
    return true;
}

/* ---------- header semantics ---------- */

static bool is_reg_name_char(unsigned char c) {
    /* unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2) */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
    return c != '\0' && strchr("-._~%!$&'()*+,;=", c) != NULL;
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2); an empty value is allowed. */
static bool is_valid_host(const char *value, size_t length) {
    size_t i = 0;
    if (length > 0 && value[0] == '[') {
        i = 1;
        while (i < length && value[i] != ']') {
            if (!is_reg_name_char((unsigned char)value[i]) && value[i] != ':') return false;
            i++;
        }
        if (i == length || i == 1) return false;
        i++;
    } else {
        while (i < length && is_reg_name_char((unsigned char)value[i]))
            i++;
    }
    if (i == length) return true;
    if (value[i] != ':') return false;
    for (i++; i < length; i++) {
        if (!is_digit((unsigned char)value[i])) return false;
    }
    return true;
}

/* Content-Length = 1*DIGIT; a list of identical values is accepted (RFC 9110 §8.6). */
static bool parse_content_length(const http_header *header, bool *seen, uint64_t *length) {
    const char *cursor = header->value;
    const char *end = header->value + header->value_length;
    const char *element;
    size_t element_length;
    while (next_list_element(&cursor, end, &element, &element_length)) {
        if (element_length == 0) return false;
        uint64_t value = 0;
        for (size_t i = 0; i < element_length; i++) {
            unsigned char c = (unsigned char)element[i];
            if (!is_digit(c)) return false;
            if (value > (UINT64_MAX - (uint64_t)(c - '0')) / 10) return false;
            value = value * 10 + (uint64_t)(c - '0');
        }
        if (*seen && value != *length) return false;
        *seen = true;
        *length = value;
    }
    return true;
}

static bool list_contains(const http_header *header, const char *lowercase_token) {
    const char *cursor = header->value;
    const char *end = header->value + header->value_length;
    const char *element;
    size_t element_length;
    while (next_list_element(&cursor, end, &element, &element_length)) {
        if (equals_ignore_case(element, element_length, lowercase_token)) return true;
    }
    return false;
}

/* Only "chunked", exactly once, is understood: any other coding would have to be decoded, and
 * an ambiguous framing is how requests are smuggled. */
static bool is_chunked_only(const http_header *headers, size_t count) {
    size_t chunked_count = 0;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(headers[i].name, "transfer-encoding") != 0) continue;
        const char *cursor = headers[i].value;
        const char *end = headers[i].value + headers[i].value_length;
        const char *element;
        size_t element_length;
        while (next_list_element(&cursor, end, &element, &element_length)) {
            if (!equals_ignore_case(element, element_length, "chunked")) return false;
            chunked_count++;
        }
    }
    return chunked_count == 1;
}

static bool apply_header_semantics(http_parser *p) {
    http_parser_state *s = p->state;
    http_request *r = &s->request;
    size_t host_count = 0;
    bool host_valid = true;
    bool has_transfer_encoding = false;
    bool content_length_valid = true;
    bool connection_close = false;
    bool connection_keep_alive = false;

    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        if (strcmp(h->name, "host") == 0) {
            host_count++;
            host_valid = host_valid && is_valid_host(h->value, h->value_length);
        } else if (strcmp(h->name, "content-length") == 0) {
            content_length_valid =
                content_length_valid &&
                parse_content_length(h, &r->has_content_length, &r->content_length);
        } else if (strcmp(h->name, "transfer-encoding") == 0) {
            has_transfer_encoding = true;
        } else if (strcmp(h->name, "connection") == 0) {
            connection_close = connection_close || list_contains(h, "close");
            connection_keep_alive = connection_keep_alive || list_contains(h, "keep-alive");
        } else if (strcmp(h->name, "expect") == 0) {
            /* An HTTP/1.0 client cannot expect 100 Continue (RFC 9110 §10.1.1). */
            r->expect_continue =
                r->expect_continue || (r->version_minor == 1 && list_contains(h, "100-continue"));
        }
    }

    if (has_transfer_encoding && r->version_minor == 0) {
        return fail_bad_request(p, "Transfer-Encoding is not allowed in an HTTP/1.0 request.");
    }
    bool has_content_length_header = r->has_content_length || !content_length_valid;
    if (has_transfer_encoding && has_content_length_header) {
        return fail_bad_request(p, "The request has both Content-Length and Transfer-Encoding.");
    }
    if (has_transfer_encoding && !is_chunked_only(r->headers, r->header_count)) {
        return fail_bad_request(
            p, "The only supported Transfer-Encoding is a single \"chunked\" coding.");
    }
    if (!content_length_valid) {
        return fail_bad_request(
            p, "Content-Length must be one decimal number, repeated only with the same value.");
    }
    if (host_count > 1) return fail_bad_request(p, "The request has more than one Host header.");
    if (host_count == 0 && r->version_minor == 1) {
        return fail_bad_request(p, "An HTTP/1.1 request must have a Host header.");
    }
    if (!host_valid) return fail_bad_request(p, "The Host header is not a valid host and port.");

    r->chunked = has_transfer_encoding;
    r->keep_alive =
        r->version_minor == 1 ? !connection_close : connection_keep_alive && !connection_close;
    if (r->has_content_length && r->content_length > p->limits.max_body_bytes) {
        return fail(p, 413, "payload_too_large",
                    "The request body is larger than the server accepts.");
    }
    return true;
}

static void complete_request(http_parser *p) {
    http_parser_state *s = p->state;
    if (s->body) s->body[s->body_length] = '\0';
    s->request.body = s->body ? s->body : "";
    s->request.body_length = s->body_length;
    s->phase = PHASE_COMPLETE;
}

static bool finish_headers(http_parser *p) {
    http_parser_state *s = p->state;
    http_request *r = &s->request;
    if (s->field_count > 0) {
        s->headers = malloc(s->field_count * sizeof *s->headers);
        if (!s->headers) return fail_out_of_memory(p);
        for (size_t i = 0; i < s->field_count; i++) {
            s->headers[i] = (http_header){
                .name = s->storage + s->fields[i].name,
                .value = s->storage + s->fields[i].value,
                .value_length = s->fields[i].value_length,
            };
        }
    }
    free(s->fields);
    s->fields = NULL;
    s->field_capacity = 0;

    r->method = s->storage;
    r->target = s->storage + s->target_offset;
    r->headers = s->headers;
    r->header_count = s->field_count;
    s->headers_complete = true;
    if (!apply_header_semantics(p)) return false;

    if (r->chunked) {
        size_t max = p->limits.max_body_bytes;
        s->body_limit = max < SIZE_MAX ? max + 1 : SIZE_MAX;
        s->phase = PHASE_CHUNK_SIZE;
    } else if (r->has_content_length && r->content_length > 0) {
        s->body_limit = r->content_length < SIZE_MAX ? (size_t)r->content_length + 1 : SIZE_MAX;
        s->remaining = r->content_length;
        s->phase = PHASE_BODY_IDENTITY;
    } else {
        complete_request(p);
    }
    return true;
}

/* ---------- byte steps ---------- */

/* Request line and header lines: CRLF-terminated, stored, then handled as a whole. */
static bool step_line(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    if (!count_header_byte(p)) return false;
    if (s->line_saw_cr) {
        if (c != '\n') return fail_bad_request(p, "A CR in the request is not followed by LF.");
        s->line_saw_cr = false;
        size_t length = s->storage_length - s->line_start;
        if (s->phase == PHASE_REQUEST_LINE) {
            /* RFC 9112 §2.2: empty lines before the request line are ignored. */
            if (length == 0) return true;
            return parse_request_line(p, s->storage + s->line_start, length);
        }
        if (length == 0) return finish_headers(p);
        return store_header_field(p, length);
    }
    if (c == '\r') {
        s->line_saw_cr = true;
        return true;
    }
    if (c == '\n') return fail_bad_request(p, "A line in the request ends with LF without CR.");
    if (is_forbidden_control(c)) {
        return fail_bad_request(p, "The request line or a header contains a control character.");
    }
    return append_to_storage(p, (char)c);
}

static bool step_chunk_size(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    int digit = hex_digit_value(c);
    if (digit >= 0) {
        if (s->chunk_size_digits == MAX_CHUNK_SIZE_DIGITS) {
            return fail_bad_request(p, "A chunk size has too many hexadecimal digits.");
        }
        s->chunk_size = s->chunk_size * 16 + (uint64_t)digit;
        s->chunk_size_digits++;
        return true;
    }
    if (s->chunk_size_digits == 0) {
        return fail_bad_request(p, "A chunk does not start with its size in hexadecimal.");
    }
    if (c == '\r') {
        s->phase = PHASE_CHUNK_SIZE_LF;
        return true;
    }
    if (c == '\n') return fail_bad_request(p, "A chunk size line ends with LF without CR.");
    if (c == ';' || is_whitespace(c)) {
        if (!count_header_byte(p)) return false;
        s->phase = PHASE_CHUNK_EXTENSION;
        s->extension = c == ';' ? EXTENSION_BEFORE_NAME : EXTENSION_BEFORE_SEMICOLON;
        return true;
    }
    return fail_bad_request(p, "A chunk size contains a character that is not a hex digit.");
}

/* Returns the next extension state, or -1 when the byte is not allowed; CR ends the line. */
static int next_extension_state(extension_state state, unsigned char c) {
    bool ws = is_whitespace(c);
    bool tchar = is_tchar(c);
    switch (state) {
    case EXTENSION_BEFORE_SEMICOLON:
        return ws ? EXTENSION_BEFORE_SEMICOLON : c == ';' ? EXTENSION_BEFORE_NAME : -1;
    case EXTENSION_BEFORE_NAME:
        return ws ? EXTENSION_BEFORE_NAME : tchar ? EXTENSION_NAME : -1;
    case EXTENSION_NAME:
        if (tchar) return EXTENSION_NAME;
        if (ws) return EXTENSION_AFTER_NAME;
        return c == '=' ? EXTENSION_BEFORE_VALUE : c == ';' ? EXTENSION_BEFORE_NAME : -1;
    case EXTENSION_AFTER_NAME:
        if (ws) return EXTENSION_AFTER_NAME;
        return c == '=' ? EXTENSION_BEFORE_VALUE : c == ';' ? EXTENSION_BEFORE_NAME : -1;
    case EXTENSION_BEFORE_VALUE:
        if (ws) return EXTENSION_BEFORE_VALUE;
        return c == '"' ? EXTENSION_QUOTED_VALUE : tchar ? EXTENSION_TOKEN_VALUE : -1;
    case EXTENSION_TOKEN_VALUE:
        if (tchar) return EXTENSION_TOKEN_VALUE;
        return ws ? EXTENSION_BEFORE_SEMICOLON : c == ';' ? EXTENSION_BEFORE_NAME : -1;
    case EXTENSION_QUOTED_VALUE:
        if (c == '"') return EXTENSION_AFTER_QUOTED;
        if (c == '\\') return EXTENSION_QUOTED_ESCAPE;
        return is_forbidden_control(c) ? -1 : EXTENSION_QUOTED_VALUE; /* qdtext */
    case EXTENSION_QUOTED_ESCAPE:
        return is_forbidden_control(c) ? -1 : EXTENSION_QUOTED_VALUE;
    case EXTENSION_AFTER_QUOTED:
        return ws ? EXTENSION_BEFORE_SEMICOLON : c == ';' ? EXTENSION_BEFORE_NAME : -1;
    }
    return -1;
}

static bool step_chunk_extension(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    if (c == '\r') {
        bool may_end = s->extension == EXTENSION_NAME || s->extension == EXTENSION_TOKEN_VALUE ||
                       s->extension == EXTENSION_AFTER_QUOTED;
        if (!may_end) return fail_bad_request(p, "A chunk extension is malformed.");
        s->phase = PHASE_CHUNK_SIZE_LF;
        return true;
    }
    if (!count_header_byte(p)) return false;
    int next = next_extension_state(s->extension, c);
    if (next < 0) return fail_bad_request(p, "A chunk extension is malformed.");
    s->extension = (extension_state)next;
    return true;
}

static bool end_chunk_size_line(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    if (c != '\n') return fail_bad_request(p, "A chunk size line does not end with CRLF.");
    if (s->chunk_size == 0) {
        s->phase = PHASE_TRAILER_START;
        return true;
    }
    if (s->chunk_size > p->limits.max_body_bytes - s->body_length) {
        return fail(p, 413, "payload_too_large",
                    "The request body is larger than the server accepts.");
    }
    s->remaining = s->chunk_size;
    s->phase = PHASE_CHUNK_DATA;
    return true;
}

/* Trailer fields are checked like header fields and then discarded (RFC 9112 §7.1.2). */
static bool step_trailer(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    if (!count_header_byte(p)) return false;
    switch (s->phase) {
    case PHASE_TRAILER_START:
        if (c == '\r') {
            s->phase = PHASE_FINAL_LF;
            return true;
        }
        if (is_whitespace(c)) {
            return fail_bad_request(
                p, "A trailer line starts with whitespace; folded values are not allowed.");
        }
        if (!is_tchar(c)) {
            return fail_bad_request(p, "A trailer field name contains a character that is not "
                                       "allowed.");
        }
        s->phase = PHASE_TRAILER_NAME;
        return true;
    case PHASE_TRAILER_NAME:
        if (c == ':') {
            s->phase = PHASE_TRAILER_VALUE;
            return true;
        }
        if (is_tchar(c)) return true;
        return fail_bad_request(p, "A trailer field name contains a character that is not "
                                   "allowed.");
    case PHASE_TRAILER_VALUE:
        if (c == '\r') {
            s->phase = PHASE_TRAILER_LF;
            return true;
        }
        if (is_forbidden_control(c)) {
            return fail_bad_request(p, "A trailer field contains a control character.");
        }
        return true;
    case PHASE_TRAILER_LF:
        if (c != '\n') return fail_bad_request(p, "A CR in the trailer is not followed by LF.");
        s->phase = PHASE_TRAILER_START;
        return true;
    case PHASE_FINAL_LF:
        if (c != '\n') return fail_bad_request(p, "The chunked body does not end with CRLF.");
        complete_request(p);
        return true;
    default:
        return fail_bad_request(p, "The parser reached an impossible state.");
    }
}

static bool step_byte(http_parser *p, unsigned char c) {
    http_parser_state *s = p->state;
    switch (s->phase) {
    case PHASE_REQUEST_LINE:
    case PHASE_HEADER_LINE:
        return step_line(p, c);
    case PHASE_CHUNK_SIZE:
        return step_chunk_size(p, c);
    case PHASE_CHUNK_EXTENSION:
        return step_chunk_extension(p, c);
    case PHASE_CHUNK_SIZE_LF:
        return end_chunk_size_line(p, c);
    case PHASE_CHUNK_DATA_CR:
        if (c != '\r') return fail_bad_request(p, "Chunk data is not followed by CRLF.");
        s->phase = PHASE_CHUNK_DATA_LF;
        return true;
    case PHASE_CHUNK_DATA_LF:
        if (c != '\n') return fail_bad_request(p, "Chunk data is not followed by CRLF.");
        s->chunk_size = 0;
        s->chunk_size_digits = 0;
        s->phase = PHASE_CHUNK_SIZE;
        return true;
    case PHASE_TRAILER_START:
    case PHASE_TRAILER_NAME:
    case PHASE_TRAILER_VALUE:
    case PHASE_TRAILER_LF:
    case PHASE_FINAL_LF:
        return step_trailer(p, c);
    case PHASE_BODY_IDENTITY:
    case PHASE_CHUNK_DATA:
    case PHASE_COMPLETE:
    case PHASE_ERROR:
        break;
    }
    return fail_bad_request(p, "The parser reached an impossible state.");
}

/* Copies as much body data as the current chunk or Content-Length still expects. */
static bool copy_body(http_parser *p, const char *data, size_t length, size_t *used) {
    http_parser_state *s = p->state;
    size_t take = s->remaining < length ? (size_t)s->remaining : length;
    if (!reserve_body(p, take)) return false;
    append_to_body(s, data, take);
    s->remaining -= take;
    *used = take;
    if (s->remaining == 0) {
        if (s->phase == PHASE_BODY_IDENTITY) {
            complete_request(p);
        } else {
            s->phase = PHASE_CHUNK_DATA_CR;
        }
    }
    return true;
}

/* ---------- public API ---------- */

void http_parser_init(http_parser *p, const http_limits *limits) {
    memset(p, 0, sizeof *p);
    p->limits = *limits;
}

void http_parser_reset(http_parser *p) {
    http_parser_state *s = p->state;
    if (s) {
        free(s->storage);
        free(s->fields);
        free(s->headers);
        free(s->body);
        free(s);
    }
    p->state = NULL;
    p->error_status = 0;
    p->error_code = NULL;
    p->error_message = NULL;
}

void http_parser_free(http_parser *p) {
    http_parser_reset(p);
}

http_parse_status http_parser_execute(http_parser *p, const char *data, size_t length,
                                      size_t *consumed) {
    size_t ignored;
    if (!consumed) consumed = &ignored;
    *consumed = 0;
    if (p->error_status != 0) return HTTP_PARSE_ERROR;
    if (p->state && p->state->phase == PHASE_COMPLETE) return HTTP_PARSE_REQUEST_COMPLETE;
    if (length == 0) return HTTP_PARSE_NEED_MORE;
    if (!p->state) {
        p->state = calloc(1, sizeof *p->state);
        if (!p->state) {
            fail_out_of_memory(p);
            return HTTP_PARSE_ERROR;
        }
    }

    http_parser_state *s = p->state;
    size_t position = 0;
    while (position < length) {
        bool ok;
        if (s->phase == PHASE_BODY_IDENTITY || s->phase == PHASE_CHUNK_DATA) {
            size_t used = 0;
            ok = copy_body(p, data + position, length - position, &used);
            position += used;
        } else {
            ok = step_byte(p, (unsigned char)data[position]);
            position++; /* the offending byte counts as consumed */
        }
        if (!ok) {
            *consumed = position;
            return HTTP_PARSE_ERROR;
        }
        if (s->phase == PHASE_COMPLETE) {
            *consumed = position;
            return HTTP_PARSE_REQUEST_COMPLETE;
        }
    }
    *consumed = position;
    return HTTP_PARSE_NEED_MORE;
}

bool http_parser_headers_complete(const http_parser *p) {
    return p->state != NULL && p->state->headers_complete;
}

bool http_parser_started(const http_parser *p) {
    return p->state != NULL || p->error_status != 0;
}

const http_request *http_parser_request(const http_parser *p) {
    if (!http_parser_headers_complete(p)) return NULL;
    return &p->state->request;
}

const char *http_request_header(const http_request *r, const char *lowercase_name) {
    if (!r) return NULL;
    for (size_t i = 0; i < r->header_count; i++) {
        if (strcmp(r->headers[i].name, lowercase_name) == 0) return r->headers[i].value;
    }
    return NULL;
}

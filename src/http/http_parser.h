#ifndef HERALD_HTTP_PARSER_H
#define HERALD_HTTP_PARSER_H
/* Owns: the strict, incremental HTTP/1.1 request parser (RFC 9112) and the storage of the one
 * request it is parsing. Bytes may arrive split anywhere; nothing is read past the end of the
 * current request, so pipelined requests are handled one at a time by the caller.
 *
 * Memory: an idle parser owns no heap memory; header and body storage is allocated when bytes
 * arrive and freed by http_parser_reset / http_parser_free. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_limits {
    size_t max_header_bytes; /* request line + headers (+ chunked trailers); over it -> 431 */
    size_t max_body_bytes;   /* decoded body; over it -> 413 (checked early from Content-Length) */
    size_t max_headers;      /* number of header fields; over it -> 431 */
} http_limits;

typedef struct http_header {
    const char *name;  /* lowercased, NUL-terminated */
    const char *value; /* surrounding whitespace removed, NUL-terminated */
    size_t value_length;
} http_header;

typedef struct http_request {
    const char *method; /* e.g. "GET", NUL-terminated */
    const char *target; /* raw request-target ("/path?query" or "*"), NUL-terminated */
    int version_minor;  /* HTTP/1.0 -> 0, HTTP/1.1 -> 1 */
    const http_header *headers;
    size_t header_count;
    bool keep_alive;      /* from the version and the Connection header */
    bool expect_continue; /* "Expect: 100-continue" was sent */
    bool chunked;         /* Transfer-Encoding: chunked */
    bool has_content_length;
    uint64_t content_length;
    const char *body; /* decoded body, NUL-terminated (never NULL once complete) */
    size_t body_length;
} http_request;

typedef enum http_parse_status {
    HTTP_PARSE_NEED_MORE,        /* all input consumed; feed more */
    HTTP_PARSE_REQUEST_COMPLETE, /* a whole request is available; unconsumed input belongs to the
                                    next */
    HTTP_PARSE_ERROR,            /* malformed or over a limit: answer the error and close */
} http_parse_status;

typedef struct http_parser_state http_parser_state; /* private, heap, only while parsing */

typedef struct http_parser {
    http_limits limits;
    http_parser_state *state; /* NULL when idle */
    int error_status;       /* 400, 413, 431, 505 (503 when out of memory) once HTTP_PARSE_ERROR was
                               returned */
    const char *error_code; /* "bad_request", "payload_too_large", "headers_too_large" */
    const char *error_message;
} http_parser;

void http_parser_init(http_parser *p, const http_limits *limits);
void http_parser_free(http_parser *p);
/* Forget the current request and its storage; ready for the next one on the same connection. */
void http_parser_reset(http_parser *p);

/* Consumes bytes from data; *consumed says how many. Once REQUEST_COMPLETE or ERROR is returned,
 * further calls return the same status without consuming until http_parser_reset. */
http_parse_status http_parser_execute(http_parser *p, const char *data, size_t length,
                                      size_t *consumed);

/* True once the request line and all headers have been parsed (the body may still be pending):
 * the header timeout stops, and "100 Continue" may be sent when expect_continue is set. */
bool http_parser_headers_complete(const http_parser *p);
/* True when any byte of a request has been received since the last reset. */
bool http_parser_started(const http_parser *p);

/* The request: valid after headers complete (body only after REQUEST_COMPLETE), until reset. */
const http_request *http_parser_request(const http_parser *p);

/* First value of a header (name in lowercase), or NULL. */
const char *http_request_header(const http_request *r, const char *lowercase_name);

#endif

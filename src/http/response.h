#ifndef HERALD_HTTP_RESPONSE_H
#define HERALD_HTTP_RESPONSE_H
/* Owns: the bytes of an HTTP/1.1 response head and herald's JSON error bodies (SPEC §2). */
#include <stdbool.h>
#include <stddef.h>

#include "core/text.h"

#define HTTP_NO_CONTENT_LENGTH ((size_t)-1)

const char *http_status_reason(int status);

/* Appends the status line and headers up to and including the blank line. extra_headers are
 * complete "Name: value\r\n" lines or NULL. content_length HTTP_NO_CONTENT_LENGTH omits it
 * (for streams delimited by the connection's end). */
void http_response_head(text *t, int status, const char *content_type, size_t content_length,
                        bool keep_alive, const char *epoch, const char *extra_headers);

/* {"error":code,"message":message} — with "position" when position_or_negative >= 0. */
void http_error_body(text *t, const char *code, const char *message,
                     long long position_or_negative);

#endif

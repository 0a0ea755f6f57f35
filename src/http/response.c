#include "http/response.h"

#include "core/json.h"

#include <string.h>

const char *http_status_reason(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

void http_response_head(text *t, int status, const char *content_type, size_t content_length,
                        bool keep_alive, const char *epoch, const char *extra_headers) {
    text_printf(t, "HTTP/1.1 %d %s\r\n", status, http_status_reason(status));
    if (epoch) text_printf(t, "Herald-Epoch: %s\r\n", epoch);
    if (content_type) text_printf(t, "Content-Type: %s\r\n", content_type);
    if (content_length != HTTP_NO_CONTENT_LENGTH)
        text_printf(t, "Content-Length: %zu\r\n", content_length);
    if (!keep_alive) text_append_cstring(t, "Connection: close\r\n");
    if (extra_headers) text_append_cstring(t, extra_headers);
    text_append_cstring(t, "\r\n");
}

void http_error_body(text *t, const char *code, const char *message,
                     long long position_or_negative) {
    text_append_cstring(t, "{\"error\":");
    json_append_string(t, code, strlen(code));
    text_append_cstring(t, ",\"message\":");
    json_append_string(t, message, strlen(message));
    if (position_or_negative >= 0) text_printf(t, ",\"position\":%lld", position_or_negative);
    text_append_char(t, '}');
}

/* CORS (SPEC §9): the allowed origin list, the WebSocket Origin check, and response headers. */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

#define CORS_MAX_REQUESTED_HEADERS 32
#define CORS_MAX_REQUESTED_HEADERS_LENGTH 1024

static const char expose_headers[] = "ETag, Herald-Epoch, Idempotent-Replayed, Retry-After";
static const char allow_methods[] = "GET, POST, PATCH, DELETE, OPTIONS";

void auth_cors_init(auth_cors_policy *policy) {
    memset(policy, 0, sizeof *policy);
}

void auth_cors_free(auth_cors_policy *policy) {
    if (!policy) return;
    for (size_t i = 0; i < policy->count; i++)
        free(policy->origins[i]);
    free(policy->origins);
    auth_cors_init(policy);
}

static bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_null_origin(const char *s, size_t n) {
    return n == 4 && memcmp(s, "null", 4) == 0;
}

static bool scheme_is(const char *scheme, size_t length, const char *name) {
    return length == strlen(name) && memcmp(scheme, name, length) == 0;
}

/* The port a browser leaves out of the origin it serialises. */
static bool is_default_port(const char *scheme, size_t length, unsigned long port) {
    if (port == 80) return scheme_is(scheme, length, "http") || scheme_is(scheme, length, "ws");
    if (port == 443) return scheme_is(scheme, length, "https") || scheme_is(scheme, length, "wss");
    return false;
}

/* Parses scheme://host[:port] into out (AUTH_ORIGIN_MAX_LENGTH + 1 bytes) in normal form:
 * lower-case scheme and host, no default port. false for anything else ("null" included). */
static bool origin_normalize(const char *s, size_t n, char *out, size_t *out_length) {
    if (!s || n == 0 || n > AUTH_ORIGIN_MAX_LENGTH) return false;
    size_t i = 0, o = 0;
    if (!is_alpha((unsigned char)s[0])) return false;
    while (i < n && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                     s[i] == '+' || s[i] == '-' || s[i] == '.'))
        out[o++] = lower(s[i++]);
    size_t scheme_length = o;
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0) return false;
    memcpy(out + o, "://", 3);
    o += 3;
    i += 3;
    size_t host_start = i;
    if (i < n && s[i] == '[') {
        out[o++] = s[i++];
        while (i < n && (is_hex((unsigned char)s[i]) || s[i] == ':' || s[i] == '.'))
            out[o++] = lower(s[i++]);
        if (i == n || s[i] != ']' || i - host_start < 3) return false;
        out[o++] = s[i++];
    } else {
        while (i < n && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                         s[i] == '-' || s[i] == '.' || s[i] == '_'))
            out[o++] = lower(s[i++]);
        if (i == host_start) return false;
    }
    if (i < n && s[i] == ':') {
        size_t port_start = ++i;
        unsigned long port = 0;
        while (i < n && is_digit((unsigned char)s[i]) && i - port_start < 5)
            port = port * 10 + (unsigned long)(s[i++] - '0');
        size_t digits = i - port_start;
        if (digits == 0 || s[port_start] == '0' || port > 65535) return false;
        bool default_port = is_default_port(out, scheme_length, port);
        if (!default_port) {
            out[o++] = ':';
            memcpy(out + o, s + port_start, digits);
            o += digits;
        }
    }
    if (i != n) return false; /* path, trailing '/', query, userinfo, bad character */
    out[o] = '\0';
    *out_length = o;
    return true;
}

auth_status auth_cors_add(auth_cors_policy *policy, const char *entry, size_t length) {
    if (!entry) return AUTH_ORIGIN_INVALID;
    if (length == 1 && entry[0] == '*') {
        policy->any = true;
        return AUTH_OK;
    }
    if (is_null_origin(entry, length)) {
        policy->allow_null = true;
        return AUTH_OK;
    }
    char normal[AUTH_ORIGIN_MAX_LENGTH + 1];
    size_t normal_length;
    if (!origin_normalize(entry, length, normal, &normal_length)) return AUTH_ORIGIN_INVALID;
    for (size_t i = 0; i < policy->count; i++)
        if (strcmp(policy->origins[i], normal) == 0) return AUTH_OK;
    char **origins = realloc(policy->origins, (policy->count + 1) * sizeof *origins);
    if (!origins) return AUTH_NO_MEMORY;
    policy->origins = origins;
    char *copy = malloc(normal_length + 1);
    if (!copy) return AUTH_NO_MEMORY;
    memcpy(copy, normal, normal_length + 1);
    policy->origins[policy->count++] = copy;
    return AUTH_OK;
}

bool auth_cors_configured(const auth_cors_policy *policy) {
    return policy && (policy->any || policy->allow_null || policy->count > 0);
}

typedef enum cors_answer { CORS_REFUSED, CORS_ECHO, CORS_WILDCARD } cors_answer;

static cors_answer classify(const auth_cors_policy *policy, const char *origin, size_t length) {
    if (!policy || !origin) return CORS_REFUSED;
    if (is_null_origin(origin, length)) return policy->allow_null ? CORS_ECHO : CORS_REFUSED;
    char normal[AUTH_ORIGIN_MAX_LENGTH + 1];
    size_t normal_length;
    if (!origin_normalize(origin, length, normal, &normal_length)) return CORS_REFUSED;
    for (size_t i = 0; i < policy->count; i++)
        if (strcmp(policy->origins[i], normal) == 0) return CORS_ECHO;
    return policy->any ? CORS_WILDCARD : CORS_REFUSED;
}

bool auth_cors_origin_allowed(const auth_cors_policy *policy, const char *origin, size_t length) {
    return classify(policy, origin, length) != CORS_REFUSED;
}

/* Access-Control-Allow-Origin (and -Credentials when echoed). */
static void append_allow_origin(text *out, cors_answer answer, const char *origin, size_t length) {
    text_append_cstring(out, "Access-Control-Allow-Origin: ");
    if (answer == CORS_ECHO) {
        text_append(out, origin, length); /* checked: only origin characters */
        text_append_cstring(out, "\r\nAccess-Control-Allow-Credentials: true\r\n");
    } else {
        text_append_cstring(out, "*\r\n");
    }
}

bool auth_cors_append_headers(const auth_cors_policy *policy, const char *origin,
                              size_t origin_length, text *out) {
    if (!auth_cors_configured(policy)) return false;
    cors_answer answer = classify(policy, origin, origin_length);
    if (answer != CORS_REFUSED) {
        append_allow_origin(out, answer, origin, origin_length);
        text_printf(out, "Access-Control-Expose-Headers: %s\r\n", expose_headers);
    }
    text_append_cstring(out, "Vary: Origin\r\n");
    return answer != CORS_REFUSED;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c) {
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Appends the requested header names joined with ", " when they are an acceptable list. */
static bool append_requested_headers(text *out, const char *list, size_t length) {
    if (!list || length > CORS_MAX_REQUESTED_HEADERS_LENGTH) return false;
    size_t marks[CORS_MAX_REQUESTED_HEADERS][2], count = 0, i = 0;
    for (;;) {
        const char *comma = i < length ? memchr(list + i, ',', length - i) : NULL;
        size_t end = comma ? (size_t)(comma - list) : length, start = i;
        while (start < end && (list[start] == ' ' || list[start] == '\t'))
            start++;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end > start) { /* empty list elements are skipped (RFC 9110 §5.6.1) */
            if (count == CORS_MAX_REQUESTED_HEADERS) return false;
            for (size_t k = start; k < end; k++)
                if (!is_tchar((unsigned char)list[k])) return false;
            marks[count][0] = start;
            marks[count][1] = end;
            count++;
        }
        if (!comma) break;
        i = (size_t)(comma - list) + 1;
    }
    if (count == 0) return false;
    text_append_cstring(out, "Access-Control-Allow-Headers: ");
    for (size_t k = 0; k < count; k++) {
        if (k) text_append_cstring(out, ", ");
        text_append(out, list + marks[k][0], marks[k][1] - marks[k][0]);
    }
    text_append_cstring(out, "\r\n");
    return true;
}

bool auth_cors_append_preflight(const auth_cors_policy *policy, const char *origin,
                                size_t origin_length, const char *request_headers,
                                size_t request_headers_length, text *out) {
    if (!auth_cors_configured(policy)) return false;
    cors_answer answer = classify(policy, origin, origin_length);
    if (answer != CORS_REFUSED) {
        append_allow_origin(out, answer, origin, origin_length);
        text_printf(out, "Access-Control-Allow-Methods: %s\r\n", allow_methods);
        if (!append_requested_headers(out, request_headers, request_headers_length))
            text_append_cstring(out,
                                "Access-Control-Allow-Headers: " AUTH_CORS_DEFAULT_HEADERS "\r\n");
        text_append_cstring(out, "Access-Control-Max-Age: 600\r\n");
    }
    text_append_cstring(out, "Vary: Origin, Access-Control-Request-Headers\r\n");
    return answer != CORS_REFUSED;
}

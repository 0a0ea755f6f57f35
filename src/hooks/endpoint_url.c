#include "hooks/endpoint_url.h"

#include <string.h>

static bool fail(const char **problem, const char *sentence) {
    if (problem) *problem = sentence;
    return false;
}

static bool prefix_nocase(const char *s, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    if (n < k) return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != prefix[i]) return false;
    }
    return true;
}

bool endpoint_url_parse(const char *url, size_t length, endpoint_url *out, const char **problem) {
    memset(out, 0, sizeof *out);
    out->host_class = ADDRESS_INVALID;
    if (!url || length == 0) return fail(problem, "The webhook URL must not be empty.");
    if (length > ENDPOINT_URL_MAX_LENGTH)
        return fail(problem, "The webhook URL must be at most 2048 bytes.");
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7F)
            return fail(problem, "The webhook URL must not contain spaces, control characters or "
                                 "non-ASCII bytes (percent-encode them).");
        if (c == '\\') return fail(problem, "The webhook URL must not contain backslashes.");
    }

    size_t i;
    if (prefix_nocase(url, length, "https://")) {
        out->https = true;
        i = 8;
    } else if (prefix_nocase(url, length, "http://")) {
        i = 7;
    } else {
        return fail(problem, "The webhook URL must start with http:// or https://.");
    }

    /* The authority ends at the first '/', '?' or '#'. */
    size_t authority = i;
    while (i < length && url[i] != '/' && url[i] != '?' && url[i] != '#')
        i++;
    size_t authority_end = i;
    if (memchr(url + authority, '@', authority_end - authority))
        return fail(problem, "The webhook URL must not contain credentials (user:password@); put "
                             "them in the path or use the signing secret.");

    /* host [":" port] */
    size_t host_start = authority, host_end;
    if (host_start < authority_end && url[host_start] == '[') {
        const char *close = memchr(url + host_start, ']', authority_end - host_start);
        if (!close) return fail(problem, "The webhook URL has an unterminated IPv6 address.");
        host_end = (size_t)(close - url) + 1;
        if (host_end < authority_end && url[host_end] != ':')
            return fail(problem, "The webhook URL has text after its IPv6 address.");
        out->host_is_ipv6 = true;
    } else {
        const char *colon = memchr(url + host_start, ':', authority_end - host_start);
        host_end = colon ? (size_t)(colon - url) : authority_end;
    }
    if (host_end == host_start) return fail(problem, "The webhook URL must name a host.");

    out->port = out->https ? 443 : 80;
    if (host_end < authority_end) { /* url[host_end] == ':' */
        size_t p = host_end + 1;
        if (p < authority_end) {
            unsigned long port = 0;
            for (; p < authority_end; p++) {
                if (url[p] < '0' || url[p] > '9' || port > 65535)
                    return fail(problem, "The webhook URL's port must be a number 1-65535.");
                port = port * 10 + (unsigned long)(url[p] - '0');
            }
            if (port == 0 || port > 65535)
                return fail(problem, "The webhook URL's port must be a number 1-65535.");
            out->port = (uint16_t)port;
            out->port_explicit = true;
        }
    }

    const char *host = url + host_start;
    size_t host_length = host_end - host_start;
    if (memchr(host, '%', host_length))
        return fail(problem, "The webhook URL's host must not be percent-encoded or carry an IPv6 "
                             "zone.");
    out->host_class = url_host_literal_class_n(host, host_length);
    if (out->host_class == ADDRESS_INVALID)
        return fail(problem, "The webhook URL's host is not a valid name or IP address.");
    if (out->host_is_ipv6) {
        host++;
        host_length -= 2;
    }
    if (host_length > ENDPOINT_URL_MAX_HOST)
        return fail(problem, "The webhook URL's host is too long.");
    for (size_t k = 0; k < host_length; k++) {
        char c = host[k];
        out->host[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out->host[host_length] = '\0';

    /* path, query, fragment */
    size_t path_start = authority_end;
    while (i < length && url[i] != '?' && url[i] != '#')
        i++;
    out->path_offset = path_start;
    out->path_length = i - path_start;
    size_t query_start = i;
    if (i < length && url[i] == '?')
        while (i < length && url[i] != '#')
            i++;
    out->query_offset = query_start;
    out->query_length = i - query_start;
    out->sendable_length = i;
    return true;
}

bool endpoint_url_check(const char *url, size_t length, bool allow_private, endpoint_url *out,
                        const char **problem) {
    if (!endpoint_url_parse(url, length, out, problem)) return false;
    if (out->host_class != ADDRESS_NAME && !address_class_allowed(out->host_class, allow_private)) {
        if (problem)
            *problem = allow_private
                           ? "The webhook URL's host is a multicast or broadcast address."
                           : "The webhook URL's host is not a public address (loopback, private, "
                             "link-local and reserved addresses are refused).";
        return false;
    }
    return true;
}

#ifndef HERALD_HOOKS_ENDPOINT_URL_H
#define HERALD_HOOKS_ENDPOINT_URL_H
/* Owns: parsing and vetting the URL of an outbound webhook endpoint (SPEC §7) — scheme, host,
 * port, request target — before anything is resolved or connected. A refusal comes with one human
 * sentence for the 400 invalid_url message. The resolved addresses are checked again at delivery
 * (hooks/address.h), so a name that resolves to a private address is caught there.
 *
 * Accepted: "http://" or "https://" (scheme case-insensitive), a host, an optional ":port"
 * (1–65535; empty means the default), then an optional path and query. Decisions, each closing a
 * way for two URL parsers to disagree about the host:
 *   - userinfo ("user:pass@") is refused: it would put credentials in logs, and it is the classic
 *     trick for hiding the real host;
 *   - backslashes, whitespace, control characters, non-ASCII bytes and '%' in the host are
 *     refused anywhere (non-ASCII must be percent-encoded in the path, IDNs given as punycode);
 *   - a fragment is dropped (it is never sent);
 *   - at most ENDPOINT_URL_MAX_LENGTH bytes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hooks/address.h"

#define ENDPOINT_URL_MAX_LENGTH 2048
#define ENDPOINT_URL_MAX_HOST 254

typedef struct endpoint_url {
    bool https;
    char host[ENDPOINT_URL_MAX_HOST + 1]; /* lowercase; an IPv6 literal without its brackets */
    bool host_is_ipv6;
    uint16_t port; /* explicit, or 80/443 */
    bool port_explicit;
    address_class host_class; /* url_host_literal_class of the host: ADDRESS_NAME for DNS names */
    /* Slices of the URL given to endpoint_url_parse. path: from its '/' up to '?' or '#', empty
     * when the URL has none (the request target is then "/"); query: from its '?' up to '#',
     * empty when absent. sendable_length: the URL without its fragment, what curl is given. */
    size_t path_offset, path_length;
    size_t query_offset, query_length;
    size_t sendable_length;
} endpoint_url;

/* Parses url (length bytes, no NUL needed). false with *problem set (static sentence) when it is
 * not an acceptable endpoint URL; the host class is not judged here. */
bool endpoint_url_parse(const char *url, size_t length, endpoint_url *out, const char **problem);

/* The registration check: parses url and refuses hosts whose literal class is not allowed
 * (address_class_allowed; names pass here and are checked when resolved). */
bool endpoint_url_check(const char *url, size_t length, bool allow_private, endpoint_url *out,
                        const char **problem);

#endif

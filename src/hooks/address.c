#include "hooks/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

const char *address_class_name(address_class cls) {
    switch (cls) {
    case ADDRESS_PUBLIC:
        return "public";
    case ADDRESS_LOOPBACK:
        return "loopback";
    case ADDRESS_PRIVATE:
        return "private";
    case ADDRESS_LINK_LOCAL:
        return "link-local";
    case ADDRESS_UNSPECIFIED:
        return "unspecified";
    case ADDRESS_SHARED:
        return "shared (carrier-grade NAT)";
    case ADDRESS_MULTICAST:
        return "multicast";
    case ADDRESS_BROADCAST:
        return "broadcast";
    case ADDRESS_RESERVED:
        return "reserved";
    case ADDRESS_NAME:
        return "name";
    case ADDRESS_INVALID:
        break;
    }
    return "invalid";
}

bool address_class_allowed(address_class cls, bool allow_private) {
    switch (cls) {
    case ADDRESS_PUBLIC:
        return true;
    case ADDRESS_LOOPBACK:
    case ADDRESS_PRIVATE:
    case ADDRESS_LINK_LOCAL:
    case ADDRESS_UNSPECIFIED:
    case ADDRESS_SHARED:
    case ADDRESS_RESERVED:
        return allow_private;
    case ADDRESS_MULTICAST:
    case ADDRESS_BROADCAST:
    case ADDRESS_NAME:
    case ADDRESS_INVALID:
        break;
    }
    return false;
}

/* True when address lies in prefix/bits (host byte order). */
static bool in4(uint32_t address, uint32_t prefix, unsigned bits) {
    uint32_t mask = bits == 0 ? 0 : 0xFFFFFFFFu << (32 - bits);
    return (address & mask) == prefix;
}

#define IPV4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

address_class address_classify_ipv4(uint32_t a) {
    if (a == 0) return ADDRESS_UNSPECIFIED;
    if (a == 0xFFFFFFFFu) return ADDRESS_BROADCAST;
    if (in4(a, IPV4(0, 0, 0, 0), 8)) return ADDRESS_RESERVED;
    if (in4(a, IPV4(10, 0, 0, 0), 8)) return ADDRESS_PRIVATE;
    if (in4(a, IPV4(100, 64, 0, 0), 10)) return ADDRESS_SHARED;
    if (in4(a, IPV4(127, 0, 0, 0), 8)) return ADDRESS_LOOPBACK;
    if (in4(a, IPV4(169, 254, 0, 0), 16)) return ADDRESS_LINK_LOCAL;
    if (in4(a, IPV4(172, 16, 0, 0), 12)) return ADDRESS_PRIVATE;
    if (in4(a, IPV4(192, 0, 0, 0), 24)) return ADDRESS_RESERVED;   /* IETF protocol assignments */
    if (in4(a, IPV4(192, 0, 2, 0), 24)) return ADDRESS_RESERVED;   /* TEST-NET-1 */
    if (in4(a, IPV4(192, 88, 99, 0), 24)) return ADDRESS_RESERVED; /* 6to4 relay anycast */
    if (in4(a, IPV4(192, 168, 0, 0), 16)) return ADDRESS_PRIVATE;
    if (in4(a, IPV4(198, 18, 0, 0), 15)) return ADDRESS_RESERVED;   /* benchmarking */
    if (in4(a, IPV4(198, 51, 100, 0), 24)) return ADDRESS_RESERVED; /* TEST-NET-2 */
    if (in4(a, IPV4(203, 0, 113, 0), 24)) return ADDRESS_RESERVED;  /* TEST-NET-3 */
    if (in4(a, IPV4(224, 0, 0, 0), 4)) return ADDRESS_MULTICAST;
    if (in4(a, IPV4(240, 0, 0, 0), 4)) return ADDRESS_RESERVED;
    return ADDRESS_PUBLIC;
}

static uint32_t ipv4_at(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool zeros(const unsigned char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

address_class address_classify_ipv6(const unsigned char b[16]) {
    if (zeros(b, 16)) return ADDRESS_UNSPECIFIED;
    if (zeros(b, 15) && b[15] == 1) return ADDRESS_LOOPBACK;
    /* ::ffff:a.b.c.d (mapped) */
    if (zeros(b, 10) && b[10] == 0xFF && b[11] == 0xFF)
        return address_classify_ipv4(ipv4_at(b + 12));
    /* ::ffff:0:a.b.c.d (translated, RFC 2765) */
    if (zeros(b, 8) && b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0)
        return address_classify_ipv4(ipv4_at(b + 12));
    /* ::a.b.c.d (compatible, deprecated) */
    if (zeros(b, 12)) return address_classify_ipv4(ipv4_at(b + 12));
    /* 64:ff9b::/96 (NAT64 well-known) and 64:ff9b:1::/48 (local-use NAT64) */
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B) {
        if (zeros(b + 4, 8)) return address_classify_ipv4(ipv4_at(b + 12));
        if (b[4] == 0x00 && b[5] == 0x01) return ADDRESS_PRIVATE;
    }
    /* 100::/64 discard-only */
    if (b[0] == 0x01 && b[1] == 0x00 && zeros(b + 2, 6)) return ADDRESS_RESERVED;
    if (b[0] == 0x20 && b[1] == 0x01) {
        if (b[2] < 0x02) return ADDRESS_RESERVED;                  /* 2001::/23, Teredo included */
        if (b[2] == 0x0D && b[3] == 0xB8) return ADDRESS_RESERVED; /* 2001:db8::/32 */
    }
    /* 2002::/16 6to4 */
    if (b[0] == 0x20 && b[1] == 0x02) return address_classify_ipv4(ipv4_at(b + 2));
    if (b[0] == 0x3F && b[1] == 0xFF && (b[2] & 0xF0) == 0) return ADDRESS_RESERVED; /* 3fff::/20 */
    if ((b[0] & 0xFE) == 0xFC) return ADDRESS_PRIVATE;                               /* fc00::/7 */
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return ADDRESS_LINK_LOCAL;            /* fe80::/10 */
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) return ADDRESS_PRIVATE;               /* fec0::/10 */
    if (b[0] == 0xFF) return ADDRESS_MULTICAST;
    if ((b[0] & 0xE0) != 0x20) return ADDRESS_RESERVED; /* outside 2000::/3 global unicast */
    return ADDRESS_PUBLIC;
}

address_class address_classify(const struct sockaddr *address) {
    if (!address) return ADDRESS_INVALID;
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        return address_classify_ipv4(ntohl(in->sin_addr.s_addr));
    }
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        return address_classify_ipv6(in6->sin6_addr.s6_addr);
    }
    return ADDRESS_INVALID;
}

bool address_is_public(const struct sockaddr *address) {
    return address_classify(address) == ADDRESS_PUBLIC;
}

/* ---- literals ---- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One part of an IPv4 literal: decimal, 0-prefixed octal or 0x-prefixed hex ("0x" alone is 0,
 * as inet_aton and WHATWG have it). false on a bad digit or a value past 32 bits. */
static bool parse_ipv4_part(const char *p, size_t n, uint64_t *value) {
    if (n == 0) return false;
    unsigned base = 10;
    if (n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        n -= 2;
    } else if (n >= 2 && p[0] == '0') {
        base = 8;
        p++;
        n--;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = hex_digit(p[i]);
        if (d < 0 || (unsigned)d >= base) return false;
        v = v * base + (unsigned)d;
        if (v > 0xFFFFFFFFu) return false;
    }
    *value = v;
    return true;
}

bool address_parse_ipv4_literal(const char *host, size_t length, uint32_t *address) {
    if (length > 0 && host[length - 1] == '.') length--;
    if (length == 0) return false;
    uint64_t parts[4];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i < length && host[i] != '.') continue;
        if (count == 4 || !parse_ipv4_part(host + start, i - start, &parts[count])) return false;
        count++;
        start = i + 1;
    }
    uint64_t value = 0;
    for (size_t i = 0; i + 1 < count; i++) {
        if (parts[i] > 255) return false;
        value |= parts[i] << (8 * (3 - i));
    }
    uint64_t last_limit = count == 1 ? 0xFFFFFFFFu : (1ull << (8 * (5 - count))) - 1;
    if (parts[count - 1] > last_limit) return false;
    *address = (uint32_t)(value | parts[count - 1]);
    return true;
}

static address_class ipv6_literal_class(const char *p, size_t n) {
    char buffer[INET6_ADDRSTRLEN + 8];
    if (n == 0 || n >= sizeof buffer || memchr(p, '%', n)) return ADDRESS_INVALID;
    memcpy(buffer, p, n);
    buffer[n] = '\0';
    unsigned char bytes[16];
    if (inet_pton(AF_INET6, buffer, bytes) != 1) return ADDRESS_INVALID;
    return address_classify_ipv6(bytes);
}

static bool is_label_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* WHATWG "ends in a number": the last label is all digits, or 0x followed by hex digits. */
static bool ends_in_number(const char *host, size_t n) {
    size_t start = n;
    while (start > 0 && host[start - 1] != '.')
        start--;
    const char *label = host + start;
    size_t length = n - start;
    if (length == 0) return false;
    bool digits = true;
    for (size_t i = 0; i < length; i++)
        if (label[i] < '0' || label[i] > '9') digits = false;
    if (digits) return true;
    if (length < 2 || label[0] != '0' || label[1] != 'x') return false;
    for (size_t i = 2; i < length; i++)
        if (hex_digit(label[i]) < 0) return false;
    return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool is_localhost_name(const char *host, size_t n) {
    static const char *const names[] = {"localhost", "localhost.localdomain", "ip6-localhost",
                                        "ip6-loopback"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (n == strlen(names[i]) && memcmp(host, names[i], n) == 0) return true;
    return ends_with(host, n, ".localhost");
}

address_class url_host_literal_class_n(const char *host, size_t n) {
    if (!host || n == 0) return ADDRESS_INVALID;
    if (host[0] == '[') {
        if (n < 2 || host[n - 1] != ']') return ADDRESS_INVALID;
        return ipv6_literal_class(host + 1, n - 2);
    }
    if (memchr(host, ':', n)) return ipv6_literal_class(host, n);

    char name[256];
    if (n > 254) return ADDRESS_INVALID; /* 253 plus a trailing dot */
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != '.' && !is_label_char(c)) return ADDRESS_INVALID;
        name[i] = c;
    }
    if (name[n - 1] == '.') n--; /* one trailing dot: the root, same host */
    if (n == 0) return ADDRESS_INVALID;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && name[i] != '.') {
            if (++label > 63) return ADDRESS_INVALID;
            continue;
        }
        if (label == 0) return ADDRESS_INVALID; /* empty label */
        label = 0;
    }
    if (ends_in_number(name, n)) {
        uint32_t address;
        if (!address_parse_ipv4_literal(name, n, &address)) return ADDRESS_INVALID;
        return address_classify_ipv4(address);
    }
    if (is_localhost_name(name, n)) return ADDRESS_LOOPBACK;
    return ADDRESS_NAME;
}

address_class url_host_literal_class(const char *host) {
    return host ? url_host_literal_class_n(host, strlen(host)) : ADDRESS_INVALID;
}

#ifndef HERALD_HOOKS_ADDRESS_H
#define HERALD_HOOKS_ADDRESS_H
/* Owns: the SSRF defence's view of addresses (SPEC §7): which IPv4/IPv6 addresses a webhook may
 * be delivered to, both for a resolved struct sockaddr (checked at connect time, the real
 * defence) and for the host of a URL as written (checked at registration, before any DNS).
 *
 * Only globally routable unicast counts as public. IPv6 forms that carry an IPv4 address —
 * IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96, IPv4-compatible ::/96, NAT64
 * 64:ff9b::/96 and 6to4 2002::/16 — are classified by the IPv4 address they embed. IPv6 outside
 * 2000::/3 with no other meaning is reserved. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum address_class {
    ADDRESS_PUBLIC,
    ADDRESS_LOOPBACK,    /* 127/8, ::1, localhost and *.localhost */
    ADDRESS_PRIVATE,     /* 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48 */
    ADDRESS_LINK_LOCAL,  /* 169.254/16, fe80::/10 */
    ADDRESS_UNSPECIFIED, /* 0.0.0.0, :: */
    ADDRESS_SHARED,      /* 100.64/10, carrier-grade NAT */
    ADDRESS_MULTICAST,   /* 224/4, ff00::/8 */
    ADDRESS_BROADCAST,   /* 255.255.255.255 */
    ADDRESS_RESERVED,    /* 0/8, 192.0.0/24, documentation and benchmarking ranges, 240/4,
                            100::/64, 2001::/23, 2001:db8::/32, 3fff::/20, 5f00::/16, other
                            IPv6 outside 2000::/3 */
    ADDRESS_NAME,        /* url_host_literal_class only: a DNS name, to be resolved and checked */
    ADDRESS_INVALID,     /* url_host_literal_class: not a valid host; sockaddr: not AF_INET(6) */
} address_class;

/* "public", "loopback", "private", "link-local", … for logs and error messages. */
const char *address_class_name(address_class cls);

/* Whether a delivery may go to an address of this class. Public always; with allow_private
 * (--webhook-allow-private) everything that can be a TCP peer, i.e. not multicast, broadcast,
 * a name or invalid. */
bool address_class_allowed(address_class cls, bool allow_private);

address_class address_classify_ipv4(uint32_t address); /* host byte order */
address_class address_classify_ipv6(const unsigned char address[16]);
/* AF_INET or AF_INET6; anything else (or NULL) is ADDRESS_INVALID. */
address_class address_classify(const struct sockaddr *address);
bool address_is_public(const struct sockaddr *address);

/* Parses an IPv4 host the way inet_aton(3), curl and WHATWG URL parsers do: 1–4 dot-separated
 * parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes, one
 * trailing dot allowed ("0x7f.1", "0177.0.0.1", "2130706433", "127.1"). false when it is not such
 * a literal. length excludes any NUL. */
bool address_parse_ipv4_literal(const char *host, size_t length, uint32_t *address);

/* The class of a URL host as written (case-insensitive, without port): an IPv4 literal in any
 * form above, an IPv6 literal with or without brackets ("[::1]", "[::ffff:7f00:1]"; zone ids are
 * invalid), localhost names (localhost, *.localhost, localhost.localdomain, ip6-localhost,
 * ip6-loopback; a trailing dot allowed) as loopback. A host whose last label is numeric but
 * which is not a valid IPv4 literal ("1.2.3.256", "08.1") is invalid, as WHATWG rules; other hosts
 * are ADDRESS_NAME when they are valid DNS names (ASCII letters, digits, '-', '_', labels of
 * 1–63, at most 253 bytes) and invalid otherwise. */
address_class url_host_literal_class(const char *host);
address_class url_host_literal_class_n(const char *host, size_t length);

#endif

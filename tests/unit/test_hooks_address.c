#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "hooks/address.h"
#include "hooks/endpoint_url.h"

typedef struct address_case {
    const char *text;
    address_class expected;
} address_case;

/* Numeric addresses, each checked as a sockaddr (inet_pton) and as a URL host literal. */
static const address_case numeric[] = {
    {"93.184.216.34", ADDRESS_PUBLIC},
    {"8.8.8.8", ADDRESS_PUBLIC},
    {"1.1.1.1", ADDRESS_PUBLIC},
    {"172.15.255.255", ADDRESS_PUBLIC},
    {"172.32.0.0", ADDRESS_PUBLIC},
    {"100.63.255.255", ADDRESS_PUBLIC},
    {"100.128.0.0", ADDRESS_PUBLIC},
    {"223.255.255.255", ADDRESS_PUBLIC},
    {"127.0.0.1", ADDRESS_LOOPBACK},
    {"127.255.255.254", ADDRESS_LOOPBACK},
    {"10.0.0.1", ADDRESS_PRIVATE},
    {"10.255.255.255", ADDRESS_PRIVATE},
    {"172.16.0.1", ADDRESS_PRIVATE},
    {"172.31.255.255", ADDRESS_PRIVATE},
    {"192.168.1.1", ADDRESS_PRIVATE},
    {"169.254.169.254", ADDRESS_LINK_LOCAL},
    {"0.0.0.0", ADDRESS_UNSPECIFIED},
    {"0.1.2.3", ADDRESS_RESERVED},
    {"100.64.0.1", ADDRESS_SHARED},
    {"100.127.255.255", ADDRESS_SHARED},
    {"224.0.0.1", ADDRESS_MULTICAST},
    {"239.255.255.250", ADDRESS_MULTICAST},
    {"240.0.0.1", ADDRESS_RESERVED},
    {"255.255.255.254", ADDRESS_RESERVED},
    {"255.255.255.255", ADDRESS_BROADCAST},
    {"192.0.0.8", ADDRESS_RESERVED},
    {"192.0.2.1", ADDRESS_RESERVED},
    {"198.18.0.1", ADDRESS_RESERVED},
    {"198.19.255.255", ADDRESS_RESERVED},
    {"198.51.100.7", ADDRESS_RESERVED},
    {"203.0.113.9", ADDRESS_RESERVED},
    {"2606:2800:220:1::", ADDRESS_PUBLIC},
    {"2606:2800:220:1:248:1893:25c8:1946", ADDRESS_PUBLIC},
    {"2001:4860:4860::8888", ADDRESS_PUBLIC},
    {"::1", ADDRESS_LOOPBACK},
    {"::", ADDRESS_UNSPECIFIED},
    {"fc00::1", ADDRESS_PRIVATE},
    {"fd12:3456:789a::1", ADDRESS_PRIVATE},
    {"fec0::1", ADDRESS_PRIVATE},
    {"fe80::1", ADDRESS_LINK_LOCAL},
    {"febf::1", ADDRESS_LINK_LOCAL},
    {"ff02::1", ADDRESS_MULTICAST},
    {"::ffff:127.0.0.1", ADDRESS_LOOPBACK},
    {"::ffff:7f00:1", ADDRESS_LOOPBACK},
    {"::ffff:10.1.2.3", ADDRESS_PRIVATE},
    {"::ffff:169.254.169.254", ADDRESS_LINK_LOCAL},
    {"::ffff:93.184.216.34", ADDRESS_PUBLIC},
    {"::ffff:0:127.0.0.1", ADDRESS_LOOPBACK},
    {"::127.0.0.1", ADDRESS_LOOPBACK},
    {"::10.0.0.1", ADDRESS_PRIVATE},
    {"::0.0.0.2", ADDRESS_RESERVED},
    {"64:ff9b::127.0.0.1", ADDRESS_LOOPBACK},
    {"64:ff9b::a9fe:a9fe", ADDRESS_LINK_LOCAL},
    {"64:ff9b::93.184.216.34", ADDRESS_PUBLIC},
    {"64:ff9b:1::1", ADDRESS_PRIVATE},
    {"2002:c0a8:0101::1", ADDRESS_PRIVATE}, /* 6to4 of 192.168.1.1 */
    {"2002:7f00:1::", ADDRESS_LOOPBACK},
    {"2002:5db8:d822::1", ADDRESS_PUBLIC}, /* 6to4 of 93.184.216.34 */
    {"2001:db8::1", ADDRESS_RESERVED},
    {"2001::1", ADDRESS_RESERVED}, /* Teredo */
    {"2001:2::1", ADDRESS_RESERVED},
    {"3fff::1", ADDRESS_RESERVED},
    {"100::1", ADDRESS_RESERVED},
    {"5f00::1", ADDRESS_RESERVED},
    {"4000::1", ADDRESS_RESERVED},
    {"::2:3:4:5", ADDRESS_RESERVED},
};

static address_class classify_text(const char *text) {
    if (strchr(text, ':')) {
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof in6);
        in6.sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &in6.sin6_addr) != 1) fail_msg("bad test address %s", text);
        return address_classify((const struct sockaddr *)&in6);
    }
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    if (inet_pton(AF_INET, text, &in.sin_addr) != 1) fail_msg("bad test address %s", text);
    return address_classify((const struct sockaddr *)&in);
}

static void test_sockaddr_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++) {
        address_class got = classify_text(numeric[i].text);
        if (got != numeric[i].expected)
            fail_msg("%s: got %s, expected %s", numeric[i].text, address_class_name(got),
                     address_class_name(numeric[i].expected));
    }
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    inet_pton(AF_INET, "93.184.216.34", &in.sin_addr);
    assert_true(address_is_public((const struct sockaddr *)&in));
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    assert_false(address_is_public((const struct sockaddr *)&in));
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    assert_int_equal(address_classify(&unix_like), ADDRESS_INVALID);
    assert_false(address_is_public(&unix_like));
    assert_false(address_is_public(NULL));
}

static void test_literal_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++) {
        char bracketed[80];
        const char *host = numeric[i].text;
        if (strchr(host, ':')) {
            strcpy(bracketed, "[");
            strcat(bracketed, host);
            strcat(bracketed, "]");
            host = bracketed;
        }
        address_class got = url_host_literal_class(host);
        if (got != numeric[i].expected)
            fail_msg("literal %s: got %s, expected %s", host, address_class_name(got),
                     address_class_name(numeric[i].expected));
    }
}

static void test_odd_literals(void **state) {
    (void)state;
    static const address_case cases[] = {
        /* Forms inet_aton, curl and browsers accept for 127.0.0.1. */
        {"0x7f.1", ADDRESS_LOOPBACK},
        {"0X7F.1", ADDRESS_LOOPBACK},
        {"0177.0.0.1", ADDRESS_LOOPBACK},
        {"2130706433", ADDRESS_LOOPBACK},
        {"0x7f000001", ADDRESS_LOOPBACK},
        {"017700000001", ADDRESS_LOOPBACK},
        {"127.1", ADDRESS_LOOPBACK},
        {"127.0.1", ADDRESS_LOOPBACK},
        {"127.0.0.1.", ADDRESS_LOOPBACK},
        {"0x7f.0x0.0x0.0x1", ADDRESS_LOOPBACK},
        {"0", ADDRESS_UNSPECIFIED},
        {"0x", ADDRESS_UNSPECIFIED},
        {"0.0.0.0", ADDRESS_UNSPECIFIED},
        {"10.1", ADDRESS_PRIVATE},
        {"012.0.0.1", ADDRESS_PRIVATE},
        {"3232235777", ADDRESS_PRIVATE},    /* 192.168.1.1 */
        {"0xa9fea9fe", ADDRESS_LINK_LOCAL}, /* 169.254.169.254 */
        {"169.254.43518", ADDRESS_LINK_LOCAL},
        {"1572395042", ADDRESS_PUBLIC}, /* 93.184.216.34 */
        {"[::1]", ADDRESS_LOOPBACK},
        {"[::ffff:7f00:1]", ADDRESS_LOOPBACK},
        {"[::FFFF:127.0.0.1]", ADDRESS_LOOPBACK},
        {"[0:0:0:0:0:0:0:1]", ADDRESS_LOOPBACK},
        {"[0000::0001]", ADDRESS_LOOPBACK},
        {"::1", ADDRESS_LOOPBACK}, /* unbracketed, as a resolver would see it */
        {"localhost", ADDRESS_LOOPBACK},
        {"LocalHost", ADDRESS_LOOPBACK},
        {"localhost.", ADDRESS_LOOPBACK},
        {"api.localhost", ADDRESS_LOOPBACK},
        {"a.b.LOCALHOST.", ADDRESS_LOOPBACK},
        {"localhost.localdomain", ADDRESS_LOOPBACK},
        {"ip6-localhost", ADDRESS_LOOPBACK},
        {"ip6-loopback", ADDRESS_LOOPBACK},
        {"example.com", ADDRESS_NAME},
        {"EXAMPLE.com.", ADDRESS_NAME},
        {"notlocalhost", ADDRESS_NAME},
        {"localhost.example.com", ADDRESS_NAME},
        {"1.2.3.4.example.com", ADDRESS_NAME},
        {"my_host-1.internal", ADDRESS_NAME},
        {"0x7g.1", ADDRESS_INVALID}, /* last label numeric, the rest not an IPv4 part */
        /* Invalid: numeric-looking but not an IPv4 address, bad characters, empty labels. */
        {"256.0.0.1", ADDRESS_INVALID},
        {"1.2.3.4.5", ADDRESS_INVALID},
        {"127.0.0.256", ADDRESS_INVALID},
        {"127.0.65536", ADDRESS_INVALID},
        {"08.0.0.1", ADDRESS_INVALID},
        {"4294967296", ADDRESS_INVALID},
        {"example.123", ADDRESS_INVALID},
        {"example.0x1", ADDRESS_INVALID},
        {"", ADDRESS_INVALID},
        {".", ADDRESS_INVALID},
        {"..", ADDRESS_INVALID},
        {"a..b", ADDRESS_INVALID},
        {".example.com", ADDRESS_INVALID},
        {"exa mple.com", ADDRESS_INVALID},
        {"exämple.com", ADDRESS_INVALID},
        {"example.com%00", ADDRESS_INVALID},
        {"[::1", ADDRESS_INVALID},
        {"[]", ADDRESS_INVALID},
        {"[fe80::1%25eth0]", ADDRESS_INVALID},
        {"[127.0.0.1]", ADDRESS_INVALID},
        {"[::1]:80", ADDRESS_INVALID},
        {"1:2", ADDRESS_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        address_class got = url_host_literal_class(cases[i].text);
        if (got != cases[i].expected)
            fail_msg("host \"%s\": got %s, expected %s", cases[i].text, address_class_name(got),
                     address_class_name(cases[i].expected));
    }
    assert_int_equal(url_host_literal_class(NULL), ADDRESS_INVALID);
    /* Labels of 63 are fine, 64 are not; 253 bytes in all. */
    char label[80];
    memset(label, 'a', 63);
    strcpy(label + 63, ".com");
    assert_int_equal(url_host_literal_class(label), ADDRESS_NAME);
    memset(label, 'a', 64);
    strcpy(label + 64, ".com");
    assert_int_equal(url_host_literal_class(label), ADDRESS_INVALID);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name);
    for (size_t i = 50; i < sizeof long_name; i += 51)
        long_name[i] = '.';
    long_name[255] = '\0';
    assert_int_equal(url_host_literal_class(long_name), ADDRESS_INVALID);
}

static void test_ipv4_literal_parser(void **state) {
    (void)state;
    uint32_t a;
    assert_true(address_parse_ipv4_literal("1.2.3.4", 7, &a));
    assert_int_equal(a, 0x01020304);
    assert_true(address_parse_ipv4_literal("1.2.772", 7, &a));
    assert_int_equal(a, 0x01020304);
    assert_true(address_parse_ipv4_literal("0xffffffff", 10, &a));
    assert_int_equal(a, 0xFFFFFFFFu);
    assert_false(address_parse_ipv4_literal("1.2.3.4.", 9, &a)); /* two trailing dots */
    assert_false(address_parse_ipv4_literal("", 0, &a));
    assert_false(address_parse_ipv4_literal("1..2", 4, &a));
    assert_false(address_parse_ipv4_literal("1.2.3.-4", 8, &a));
    assert_false(address_parse_ipv4_literal("+1.2.3.4", 8, &a));
    assert_false(address_parse_ipv4_literal("99999999999999999999", 20, &a));
}

static void test_class_policy(void **state) {
    (void)state;
    assert_true(address_class_allowed(ADDRESS_PUBLIC, false));
    for (int c = ADDRESS_LOOPBACK; c <= ADDRESS_INVALID; c++)
        assert_false(address_class_allowed((address_class)c, false));
    assert_true(address_class_allowed(ADDRESS_LOOPBACK, true));
    assert_true(address_class_allowed(ADDRESS_PRIVATE, true));
    assert_true(address_class_allowed(ADDRESS_LINK_LOCAL, true));
    assert_false(address_class_allowed(ADDRESS_MULTICAST, true));
    assert_false(address_class_allowed(ADDRESS_BROADCAST, true));
    assert_false(address_class_allowed(ADDRESS_INVALID, true));
}

/* ---- endpoint URLs ---- */

static endpoint_url parse_ok(const char *url) {
    endpoint_url u;
    const char *problem = NULL;
    if (!endpoint_url_parse(url, strlen(url), &u, &problem))
        fail_msg("refused %s: %s", url, problem);
    return u;
}

static void assert_slice(const char *url, size_t offset, size_t length, const char *expected) {
    if (length != strlen(expected) || memcmp(url + offset, expected, length) != 0)
        fail_msg("%s: slice \"%.*s\", expected \"%s\"", url, (int)length, url + offset, expected);
}

static void test_url_parse(void **state) {
    (void)state;
    const char *url = "https://Example.COM:8443/hooks/in?x=1&y=2#frag";
    endpoint_url u = parse_ok(url);
    assert_true(u.https);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 8443);
    assert_true(u.port_explicit);
    assert_int_equal(u.host_class, ADDRESS_NAME);
    assert_slice(url, u.path_offset, u.path_length, "/hooks/in");
    assert_slice(url, u.query_offset, u.query_length, "?x=1&y=2");
    assert_int_equal(u.sendable_length, strlen("https://Example.COM:8443/hooks/in?x=1&y=2"));

    url = "HTTP://93.184.216.34";
    u = parse_ok(url);
    assert_false(u.https);
    assert_int_equal(u.port, 80);
    assert_false(u.port_explicit);
    assert_int_equal(u.path_length, 0);
    assert_int_equal(u.query_length, 0);
    assert_int_equal(u.host_class, ADDRESS_PUBLIC);

    url = "https://[2606:2800:220:1::]/x";
    u = parse_ok(url);
    assert_true(u.host_is_ipv6);
    assert_string_equal(u.host, "2606:2800:220:1::");
    assert_int_equal(u.port, 443);
    assert_int_equal(u.host_class, ADDRESS_PUBLIC);

    url = "http://[::1]:8080?q";
    u = parse_ok(url);
    assert_int_equal(u.port, 8080);
    assert_int_equal(u.host_class, ADDRESS_LOOPBACK);
    assert_int_equal(u.path_length, 0);
    assert_slice(url, u.query_offset, u.query_length, "?q");

    url = "http://example.com:/p#";
    u = parse_ok(url);
    assert_int_equal(u.port, 80);
    assert_false(u.port_explicit);
    assert_int_equal(u.sendable_length, strlen(url) - 1);

    url = "http://example.com/a@b/c?d=e@f"; /* '@' after the authority is just a character */
    u = parse_ok(url);
    assert_string_equal(u.host, "example.com");

    u = parse_ok("http://0x7f.1/");
    assert_int_equal(u.host_class, ADDRESS_LOOPBACK);
    u = parse_ok("http://example.com:65535");
    assert_int_equal(u.port, 65535);
}

static void test_url_refusals(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "example.com",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com",
        "javascript:alert(1)",
        "http:/example.com",
        "http:example.com",
        "http://",
        "http:///path",
        "http://:80/",
        "http://user:pass@example.com/",
        "http://user@example.com/",
        "http://@example.com/",
        "http://example.com@127.0.0.1/",
        "http://example.com\\@127.0.0.1/",
        "http://example.com\\.127.0.0.1/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/\t",
        "http://example.com/\r\nX-Injected: 1",
        "http://exämple.com/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:99999999999999999999/",
        "http://example.com:8o/",
        "http://example.com:-1/",
        "http://example.com:+80/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[::1]:/", /* fine for the port, but see below: parses */
        "http://::1/",
        "http://256.1.1.1/",
        "http://1.2.3.4.5/",
        "http://a..b/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        endpoint_url u;
        const char *problem = NULL;
        bool ok = endpoint_url_parse(bad[i], strlen(bad[i]), &u, &problem);
        bool expected_ok = strcmp(bad[i], "http://[::1]:/") == 0;
        if (ok != expected_ok) fail_msg("%s: parse gave %d", bad[i], ok);
        if (!ok && (!problem || !*problem)) fail_msg("%s: no problem sentence", bad[i]);
    }
    char long_url[3000] = "https://example.com/";
    memset(long_url + 20, 'a', 2100);
    long_url[2120] = '\0';
    endpoint_url u;
    const char *problem = NULL;
    assert_false(endpoint_url_parse(long_url, strlen(long_url), &u, &problem));
    assert_false(endpoint_url_parse(NULL, 0, &u, &problem));
}

static void test_url_policy(void **state) {
    (void)state;
    static const char *const refused[] = {
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://foo.localhost/",
        "http://10.0.0.1/",
        "http://192.168.0.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:a00:1::]/",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        endpoint_url u;
        const char *problem = NULL;
        if (endpoint_url_check(refused[i], strlen(refused[i]), false, &u, &problem))
            fail_msg("accepted %s", refused[i]);
        assert_non_null(problem);
    }
    static const char *const accepted[] = {
        "https://example.com/hook",
        "http://93.184.216.34/",
        "https://[2606:2800:220:1::]/",
        "https://hooks.example.org:8443/a?b=c",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        endpoint_url u;
        const char *problem = NULL;
        if (!endpoint_url_check(accepted[i], strlen(accepted[i]), false, &u, &problem))
            fail_msg("refused %s: %s", accepted[i], problem);
    }
    /* --webhook-allow-private lets local receivers in, but never multicast or broadcast. */
    endpoint_url u;
    const char *problem = NULL;
    assert_true(endpoint_url_check("http://127.0.0.1:9000/", 22, true, &u, &problem));
    assert_true(endpoint_url_check("http://localhost/", 17, true, &u, &problem));
    assert_false(endpoint_url_check("http://224.0.0.1/", 17, true, &u, &problem));
    assert_false(endpoint_url_check("http://255.255.255.255/", 23, true, &u, &problem));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sockaddr_table), cmocka_unit_test(test_literal_table),
        cmocka_unit_test(test_odd_literals),   cmocka_unit_test(test_ipv4_literal_parser),
        cmocka_unit_test(test_class_policy),   cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_url_refusals),   cmocka_unit_test(test_url_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

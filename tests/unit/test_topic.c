#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "hub/topic.h"

static bool name_ok(const char *s) {
    return topic_name_valid(s, strlen(s));
}

static bool pattern_ok(const char *s) {
    return topic_pattern_valid(s, strlen(s));
}

static bool is_pattern(const char *s) {
    return topic_is_pattern(s, strlen(s));
}

static bool matches(const char *pattern, const char *topic) {
    return topic_pattern_matches(pattern, strlen(pattern), topic, strlen(topic));
}

static bool type_ok(const char *s) {
    return event_type_valid(s, strlen(s));
}

static void test_name_valid(void **state) {
    assert_true(name_ok("orders"));
    assert_true(name_ok("orders/123"));
    assert_true(name_ok("a/b/c/d"));
    assert_true(name_ok("x"));
    /* every allowed character class */
    assert_true(name_ok("abcdefghijklmnopqrstuvwxyz"));
    assert_true(name_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    assert_true(name_ok("0123456789"));
    assert_true(name_ok("_"));
    assert_true(name_ok("."));
    assert_true(name_ok(":"));
    assert_true(name_ok("@"));
    assert_true(name_ok("-"));
    assert_true(name_ok("user@example.com/inbox:v1_2-3"));
    assert_true(name_ok(".."));
}

static void test_name_invalid(void **state) {
    assert_false(name_ok(""));
    assert_false(topic_name_valid(NULL, 0));
    assert_false(name_ok("/"));
    assert_false(name_ok("/a"));
    assert_false(name_ok("a/"));
    assert_false(name_ok("a//b"));
    assert_false(name_ok("a b"));
    assert_false(name_ok(" "));
    assert_false(name_ok("a%20b"));
    assert_false(name_ok("a*"));
    assert_false(name_ok("*"));
    assert_false(name_ok("a/*"));
    assert_false(name_ok("a/**"));
    assert_false(name_ok("a#b"));
    assert_false(name_ok("a?b"));
    assert_false(name_ok("a\\b"));
    assert_false(name_ok("a+b"));
    assert_false(name_ok("a\tb"));
    assert_false(name_ok("a\nb"));
    assert_false(name_ok("caf\xc3\xa9"));
    /* an embedded NUL inside the counted length */
    assert_false(topic_name_valid("a\0b", 3));
    /* the length is what counts, not the NUL */
    assert_true(topic_name_valid("ab/cd", 2));
    assert_false(topic_name_valid("ab/cd", 3));
}

static void test_name_length(void **state) {
    char name[TOPIC_MAX_LENGTH + 2];
    memset(name, 'a', sizeof name);
    assert_true(topic_name_valid(name, 200));
    assert_false(topic_name_valid(name, 201));
    assert_true(topic_name_valid(name, 1));
    assert_false(topic_name_valid(name, 0));
    /* 200 bytes of many segments */
    for (size_t i = 1; i < 200; i += 2)
        name[i] = '/';
    assert_true(topic_name_valid(name, 199));  /* "a/a/.../a", 100 segments */
    assert_false(topic_name_valid(name, 200)); /* ends with '/' */
}

static void test_pattern_valid(void **state) {
    assert_true(pattern_ok("orders"));
    assert_true(pattern_ok("orders/123"));
    assert_true(pattern_ok("orders/*"));
    assert_true(pattern_ok("orders/**"));
    assert_true(pattern_ok("*"));
    assert_true(pattern_ok("**"));
    assert_true(pattern_ok("*/*"));
    assert_true(pattern_ok("*/**"));
    assert_true(pattern_ok("a/*/c"));
    assert_true(pattern_ok("a/*/c/**"));
    assert_true(pattern_ok("*/b/*"));
    assert_true(pattern_ok("user@x.io/a:b_c-d/*"));

    assert_false(pattern_ok(""));
    assert_false(topic_pattern_valid(NULL, 0));
    assert_false(pattern_ok("a*"));
    assert_false(pattern_ok("*a"));
    assert_false(pattern_ok("a*b"));
    assert_false(pattern_ok("a/b*"));
    assert_false(pattern_ok("***"));
    assert_false(pattern_ok("a/***"));
    assert_false(pattern_ok("**/a"));
    assert_false(pattern_ok("a/**/b"));
    assert_false(pattern_ok("a/**/**"));
    assert_false(pattern_ok("/a"));
    assert_false(pattern_ok("a/"));
    assert_false(pattern_ok("a//b"));
    assert_false(pattern_ok("/*"));
    assert_false(pattern_ok("*/"));
    assert_false(pattern_ok("a b/*"));
    assert_false(pattern_ok("a%/*"));
    assert_false(pattern_ok("/"));

    char pattern[TOPIC_MAX_LENGTH + 2];
    memset(pattern, 'p', sizeof pattern);
    pattern[198] = '/';
    pattern[199] = '*';
    assert_true(topic_pattern_valid(pattern, 200));
    pattern[200] = '*';
    assert_false(topic_pattern_valid(pattern, 201));
}

static void test_is_pattern(void **state) {
    assert_false(is_pattern("orders"));
    assert_false(is_pattern("orders/123"));
    assert_true(is_pattern("*"));
    assert_true(is_pattern("**"));
    assert_true(is_pattern("orders/*"));
    assert_true(is_pattern("orders/**"));
    assert_true(is_pattern("a/*/c"));
    assert_true(is_pattern("*/b"));
}

static void test_matching(void **state) {
    static const struct {
        const char *pattern;
        const char *topic;
        bool match;
    } table[] = {
        {"orders", "orders", true},
        {"orders", "orders/1", false},
        {"orders", "order", false},
        {"orders", "ordersx", false},
        {"orders/1", "orders/1", true},
        {"orders/1", "orders/12", false},
        {"orders/*", "orders/1", true},
        {"orders/*", "orders/1/items", false},
        {"orders/*", "orders", false},
        {"orders/*", "other/1", false},
        {"orders/**", "orders/1", true},
        {"orders/**", "orders/1/items", true},
        {"orders/**", "orders/1/items/2/x", true},
        {"orders/**", "orders", false},
        {"orders/**", "ordersx/1", false},
        {"a/**", "a", false},
        {"a/**", "a/b", true},
        {"**", "a", true},
        {"**", "a/b", true},
        {"**", "a/b/c/d/e", true},
        {"*", "a", true},
        {"*", "anything@x.y", true},
        {"*", "a/b", false},
        {"*/*", "a/b", true},
        {"*/*", "a", false},
        {"*/*", "a/b/c", false},
        {"*/**", "a", false},
        {"*/**", "a/b", true},
        {"*/**", "a/b/c", true},
        {"a/*/c", "a/b/c", true},
        {"a/*/c", "a/x/c", true},
        {"a/*/c", "a/b/d", false},
        {"a/*/c", "a/c", false},
        {"a/*/c", "a/b/c/d", false},
        {"a/*/c/**", "a/b/c/d", true},
        {"a/*/c/**", "a/b/c", false},
        {"*/b/*", "a/b/c", true},
        {"*/b/*", "a/x/c", false},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        bool got = matches(table[i].pattern, table[i].topic);
        if (got != table[i].match)
            fail_msg("pattern %s topic %s: expected %d", table[i].pattern, table[i].topic,
                     table[i].match);
    }
    /* counted lengths are respected */
    assert_true(topic_pattern_matches("a/*xyz", 3, "a/bc", 4));
    assert_false(topic_pattern_matches("a/*", 3, "a/bc/d", 6));
    assert_true(topic_pattern_matches("a/*", 3, "a/bc/d", 4));
    assert_false(matches("**", ""));
    assert_false(matches("", "a"));
}

static void test_event_type(void **state) {
    assert_true(type_ok("message"));
    assert_true(type_ok("order.created"));
    assert_true(type_ok("a:b_c-D9"));
    assert_true(type_ok("x"));
    assert_false(type_ok(""));
    assert_false(event_type_valid(NULL, 0));
    assert_false(type_ok("a b"));
    assert_false(type_ok("a/b"));
    assert_false(type_ok("a@b"));
    assert_false(type_ok("a*"));
    assert_false(type_ok("caf\xc3\xa9"));
    char type[66];
    memset(type, 't', sizeof type);
    assert_true(event_type_valid(type, 64));
    assert_false(event_type_valid(type, 65));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid),  cmocka_unit_test(test_name_invalid),
        cmocka_unit_test(test_name_length), cmocka_unit_test(test_pattern_valid),
        cmocka_unit_test(test_is_pattern),  cmocka_unit_test(test_matching),
        cmocka_unit_test(test_event_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

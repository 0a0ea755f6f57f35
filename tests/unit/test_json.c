#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* Literal byte strings may contain NUL, so cases carry their length (sizeof - 1). */
#define BYTES(s) s, sizeof(s) - 1

#define END "Unexpected end of input."
#define EMPTY "Empty input: expected a JSON value."
#define BAD_UTF8 "Invalid UTF-8 in a string."
#define SURROGATE                                                                                  \
    "Invalid \\u escape: a UTF-16 surrogate must be a high surrogate followed by a low one."
#define BAD_HEX "Invalid \\u escape: expected four hex digits."
#define BAD_ESCAPE "Invalid escape sequence in a string."
#define CONTROL "Unescaped control character in a string."
#define LEADING_ZERO "Leading zeros are not allowed in numbers."
#define LITERAL "Invalid literal: expected true, false or null."

static void assert_valid(const char *data, size_t length) {
    json_error error = {0, NULL};
    if (!json_validate(data, length, &error))
        fail_msg("expected valid: %.*s (error at %zu: %s)", (int)length, data, error.position,
                 error.message);
}

static void assert_invalid(const char *data, size_t length, size_t position, const char *message) {
    json_error error = {(size_t)-1, NULL};
    if (json_validate(data, length, &error)) fail_msg("expected invalid: %.*s", (int)length, data);
    if (error.position != position || strcmp(error.message, message) != 0)
        fail_msg("%.*s: got %zu \"%s\", expected %zu \"%s\"", (int)length, data, error.position,
                 error.message, position, message);
    /* json_minify reports the same fault. */
    text out;
    text_init(&out);
    json_error minify_error = {0, NULL};
    assert_false(json_minify(data, length, &out, &minify_error));
    assert_int_equal(minify_error.position, position);
    assert_string_equal(minify_error.message, message);
    text_free(&out);
}

static void test_valid_values(void **state) {
    (void)state;
    static const char *const cases[] = {
        "null",
        "true",
        "false",
        "0",
        "-0",
        "7",
        "-0.5e+10",
        "1E5",
        "1e-5",
        "0.000",
        "12.5E+003",
        "123456789012345678901234567890123456789012345678901234567890",
        "-1.7976931348623157e+308999",
        "\"\"",
        "\"hello\"",
        "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 \\u00e9 \\uD83D\\uDE00 \\uFFFF\"",
        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \x7F\"",
        "{}",
        "[]",
        "{\"a\":1}",
        "[1,\"two\",[3],{\"four\":4},true,false,null]",
        " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \n",
        "{\"a\":1,\"a\":2}", /* duplicate keys are allowed by RFC 8259 */
        "[[[[[[[[[[]]]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_valid(cases[i], strlen(cases[i]));
    assert_valid(BYTES("\"a\\u0000b\""));
    assert_true(json_validate("1", 1, NULL)); /* error is optional */
}

static void test_depth_limit(void **state) {
    (void)state;
    char deep[2 * JSON_MAX_DEPTH + 2];
    memset(deep, '[', JSON_MAX_DEPTH);
    memset(deep + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
    assert_valid(deep, 2 * JSON_MAX_DEPTH);

    memset(deep, '[', JSON_MAX_DEPTH + 1);
    memset(deep + JSON_MAX_DEPTH + 1, ']', JSON_MAX_DEPTH + 1);
    assert_invalid(deep, 2 * JSON_MAX_DEPTH + 2, JSON_MAX_DEPTH,
                   "Nesting is too deep (the limit is 64 levels).");

    /* Objects count too: {"a":{"a":...}} 65 deep. */
    text t;
    text_init(&t);
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
        text_append_cstring(&t, "{\"a\":");
    assert_invalid(t.data, t.length, (size_t)JSON_MAX_DEPTH * 5,
                   "Nesting is too deep (the limit is 64 levels).");
    text_free(&t);

    /* Very deep input is rejected without recursion. */
    size_t huge = 1000000;
    char *brackets = malloc(huge);
    assert_non_null(brackets);
    memset(brackets, '[', huge);
    assert_invalid(brackets, huge, JSON_MAX_DEPTH, "Nesting is too deep (the limit is 64 levels).");
    free(brackets);
}

typedef struct invalid_case {
    const char *data;
    size_t length;
    size_t position;
    const char *message;
} invalid_case;

static void test_invalid_documents(void **state) {
    (void)state;
    static const invalid_case cases[] = {
        /* empty and whitespace only */
        {BYTES(""), 0, EMPTY},
        {BYTES(" \t\r\n"), 4, EMPTY},
        /* trailing commas */
        {BYTES("{\"a\":1,}"), 7, "Trailing comma before '}'."},
        {BYTES("[1,2,]"), 5, "Trailing comma before ']'."},
        {BYTES("[1, ]"), 4, "Trailing comma before ']'."},
        {BYTES("[,1]"), 1, "Unexpected character ',' where a value was expected."},
        {BYTES("{,}"), 1, "Unexpected character ',' where a string key was expected."},
        {BYTES("[1,,2]"), 3, "Unexpected character ',' where a value was expected."},
        /* numbers */
        {BYTES("01"), 1, LEADING_ZERO},
        {BYTES("-01"), 2, LEADING_ZERO},
        {BYTES("[00]"), 2, LEADING_ZERO},
        {BYTES("1."), 2, END},
        {BYTES("1.e5"), 2, "Expected a digit after the decimal point."},
        {BYTES("[1.]"), 3, "Expected a digit after the decimal point."},
        {BYTES(".5"), 0, "Unexpected character '.' where a value was expected."},
        {BYTES("+1"), 0, "Unexpected character '+' where a value was expected."},
        {BYTES("-"), 1, END},
        {BYTES("-a"), 1, "Expected a digit after '-'."},
        {BYTES("- 1"), 1, "Expected a digit after '-'."},
        {BYTES("1e"), 2, END},
        {BYTES("1e+"), 3, END},
        {BYTES("1ex"), 2, "Expected a digit in the exponent."},
        {BYTES("1e+x"), 3, "Expected a digit in the exponent."},
        {BYTES("0x10"), 1, "Unexpected character 'x' after the JSON value."},
        {BYTES("1 2"), 2, "Unexpected character '2' after the JSON value."},
        {BYTES("NaN"), 0, "Unexpected character 'N' where a value was expected."},
        {BYTES("Infinity"), 0, "Unexpected character 'I' where a value was expected."},
        {BYTES("-Infinity"), 1, "Expected a digit after '-'."},
        /* literals */
        {BYTES("tru"), 3, END},
        {BYTES("trux"), 3, LITERAL},
        {BYTES("nul1"), 3, LITERAL},
        {BYTES("fals"), 4, END},
        {BYTES("True"), 0, "Unexpected character 'T' where a value was expected."},
        {BYTES("truefalse"), 4, "Unexpected character 'f' after the JSON value."},
        /* surrogate escapes */
        {BYTES("\"\\ud800\""), 7, SURROGATE},
        {BYTES("\"\\uD800x\""), 7, SURROGATE},
        {BYTES("\"\\ud800\\n\""), 8, SURROGATE},
        {BYTES("\"\\ud800\\u0041\""), 9, SURROGATE},
        {BYTES("\"\\ud800\\ud800\""), 10, SURROGATE},
        {BYTES("\"\\ud800\\uDBFF\""), 10, SURROGATE},
        {BYTES("\"\\udc00\""), 4, SURROGATE},
        {BYTES("\"\\uDFFF\""), 4, SURROGATE},
        {BYTES("\"\\ud800"), 7, END},
        {BYTES("\"\\ud800\\"), 8, END},
        {BYTES("\"\\ud800\\ud"), 10, END},
        /* bad escapes */
        {BYTES("\"\\x\""), 2, BAD_ESCAPE},
        {BYTES("\"\\'\""), 2, BAD_ESCAPE},
        {BYTES("\"\\U0041\""), 2, BAD_ESCAPE},
        {BYTES("\"\\a\""), 2, BAD_ESCAPE},
        {BYTES("\"\\u12G4\""), 5, BAD_HEX},
        {BYTES("\"\\u12\""), 5, BAD_HEX},
        {BYTES("\"\\u"), 3, END},
        {BYTES("\"\\"), 2, END},
        /* control characters in strings */
        {BYTES("\"a\tb\""), 2, CONTROL},
        {BYTES("\"a\nb\""), 2, CONTROL},
        {BYTES("\"\x01\""), 1, CONTROL},
        {BYTES("\"\x1F\""), 1, CONTROL},
        {BYTES("[\"ok\",\"a\0\"]"), 8, CONTROL},
        /* unclosed structures */
        {BYTES("["), 1, END},
        {BYTES("{"), 1, END},
        {BYTES("[[]"), 3, END},
        {BYTES("[1,"), 3, END},
        {BYTES("[1"), 2, END},
        {BYTES("{\"a\""), 4, END},
        {BYTES("{\"a\":"), 5, END},
        {BYTES("{\"a\":1"), 6, END},
        {BYTES("{\"a\":1,"), 7, END},
        {BYTES("\"abc"), 4, END},
        {BYTES("]"), 0, "Unexpected character ']' where a value was expected."},
        {BYTES("}"), 0, "Unexpected character '}' where a value was expected."},
        /* structure */
        {BYTES("{\"a\" 1}"), 5, "Unexpected character '1' where ':' was expected."},
        {BYTES("{a:1}"), 1, "Unexpected character 'a' where a string key was expected."},
        {BYTES("{1:1}"), 1, "Unexpected character '1' where a string key was expected."},
        {BYTES("{\"a\":1 \"b\":2}"), 7, "Unexpected character '\"' where ',' or '}' was expected."},
        {BYTES("{\"a\":1]"), 6, "Unexpected character ']' where ',' or '}' was expected."},
        {BYTES("[1 2]"), 3, "Unexpected character '2' where ',' or ']' was expected."},
        {BYTES("[1}"), 2, "Unexpected character '}' where ',' or ']' was expected."},
        {BYTES("[1:2]"), 2, "Unexpected character ':' where ',' or ']' was expected."},
        {BYTES("{\"a\"::1}"), 5, "Unexpected character ':' where a value was expected."},
        {BYTES("[1]x"), 3, "Unexpected character 'x' after the JSON value."},
        {BYTES("[1]]"), 3, "Unexpected character ']' after the JSON value."},
        {BYTES("{} {}"), 3, "Unexpected character '{' after the JSON value."},
        {BYTES("'a'"), 0, "Unexpected character ''' where a value was expected."},
        {BYTES("\\"), 0, "Unexpected character '\\' where a value was expected."},
        /* comments */
        {BYTES("/* c */ 1"), 0, "Unexpected character '/' where a value was expected."},
        {BYTES("[1] // c"), 4, "Unexpected character '/' after the JSON value."},
        {BYTES("[1,# c\n2]"), 3, "Unexpected character '#' where a value was expected."},
        /* bytes outside strings */
        {BYTES("\f1"), 0, "Unexpected control character where a value was expected."},
        {BYTES("[1,\0]"), 3, "Unexpected control character where a value was expected."},
        {BYTES("1\0"), 1, "Unexpected control character after the JSON value."},
        {BYTES("[1\x7F]"), 2, "Unexpected control character where ',' or ']' was expected."},
        {BYTES("\xEF\xBB\xBF{}"), 0, "Unexpected non-ASCII character where a value was expected."},
        {BYTES("{\"a\"\xC2\xA0:1}"), 4, "Unexpected non-ASCII character where ':' was expected."},
        {BYTES("{\xFF}"), 1, "Unexpected non-ASCII character where a string key was expected."},
        /* invalid UTF-8 in strings */
        {BYTES("\"\xC3\""), 2, BAD_UTF8},
        {BYTES("\"\xC3"), 2, END},
        {BYTES("\"\xFF\""), 1, BAD_UTF8},
        {BYTES("\"\x80\""), 1, BAD_UTF8},
        {BYTES("\"\xED\xA0\x80\""), 2, BAD_UTF8},
        {BYTES("\"\xE0\x80\x80\""), 2, BAD_UTF8},
        {BYTES("\"\xC0\xAF\""), 1, BAD_UTF8},
        {BYTES("\"\xF4\x90\x80\x80\""), 2, BAD_UTF8},
        {BYTES("{\"ok\":\"0123456789abcdef\xF0\x9F\x98\"}"), 26, BAD_UTF8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const invalid_case *c = &cases[i];
        assert_invalid(c->data, c->length, c->position, c->message);
    }
}

static void assert_minifies(const char *input, const char *expected) {
    text out;
    text_init(&out);
    text_append_cstring(&out, "prefix:"); /* minify appends */
    json_error error = {0, NULL};
    if (!json_minify(input, strlen(input), &out, &error))
        fail_msg("minify failed on %s at %zu: %s", input, error.position, error.message);
    assert_int_equal(out.length, 7 + strlen(expected));
    assert_memory_equal(out.data, "prefix:", 7);
    assert_memory_equal(out.data + 7, expected, strlen(expected));
    text_free(&out);
}

static void test_minify(void **state) {
    (void)state;
    assert_minifies("  null  ", "null");
    assert_minifies("{ \"a\" : 1 , \"b\" : [ true , false , null ] }",
                    "{\"a\":1,\"b\":[true,false,null]}");
    assert_minifies("\n\t[\r\n  1,\n  2\n]\n", "[1,2]");
    assert_minifies("{\"a\":1}", "{\"a\":1}");
    /* Big numbers and exotic spellings are preserved exactly. */
    assert_minifies("[ 123456789012345678901234567890.000000000000000000001e-400 , -0.0E+00 ]",
                    "[123456789012345678901234567890.000000000000000000001e-400,-0.0E+00]");
    assert_minifies("18446744073709551617", "18446744073709551617");
    /* Strings are copied byte for byte, escapes as written, whitespace inside kept. */
    assert_minifies("{ \"a b\" : \" x \\t \\u00E9 \\/ \xC3\xA9 \" }",
                    "{\"a b\":\" x \\t \\u00E9 \\/ \xC3\xA9 \"}");
    assert_minifies("[ \"\\\"\" , \"\\\\\" ]", "[\"\\\"\",\"\\\\\"]");
    assert_minifies("{ } ", "{}");
    assert_minifies("[ [ ] , { } ]", "[[],{}]");
}

static void expect_member(json_span object, size_t *cursor, const char *key, const char *value) {
    json_span k, v;
    assert_true(json_object_next(object, cursor, &k, &v));
    assert_int_equal(k.length, strlen(key));
    assert_memory_equal(k.data, key, k.length);
    assert_int_equal(v.length, strlen(value));
    assert_memory_equal(v.data, value, v.length);
}

static void expect_element(json_span array, size_t *cursor, const char *value) {
    json_span e;
    assert_true(json_array_next(array, cursor, &e));
    assert_int_equal(e.length, strlen(value));
    assert_memory_equal(e.data, value, e.length);
}

static json_span span_of(const char *s) {
    return (json_span){s, strlen(s)};
}

static void test_object_iteration(void **state) {
    (void)state;
    const char *doc =
        " { \"a\" : 1 , \"b\\\"}\" : { \"x\" : [ 1 , \"]}\" ] } ,\"c\":\"s\",\"d\":[],"
        "\"e\":-1.5e3 , \"f\" : null } ";
    assert_valid(doc, strlen(doc));
    json_span object = span_of(doc);
    size_t cursor = 0;
    json_span k, v;
    expect_member(object, &cursor, "\"a\"", "1");
    expect_member(object, &cursor, "\"b\\\"}\"", "{ \"x\" : [ 1 , \"]}\" ] }");
    expect_member(object, &cursor, "\"c\"", "\"s\"");
    expect_member(object, &cursor, "\"d\"", "[]");
    expect_member(object, &cursor, "\"e\"", "-1.5e3");
    expect_member(object, &cursor, "\"f\"", "null");
    assert_false(json_object_next(object, &cursor, &k, &v));
    assert_false(json_object_next(object, &cursor, &k, &v)); /* stays at the end */

    cursor = 0;
    assert_false(json_object_next(span_of("{ }"), &cursor, &k, &v));
    cursor = 0;
    assert_false(json_object_next(span_of("[1]"), &cursor, &k, &v)); /* not an object */
    cursor = 0;
    assert_false(json_object_next((json_span){NULL, 0}, &cursor, &k, &v));

    /* Nested value spans validate on their own. */
    cursor = 0;
    expect_member(span_of("{\"o\":{\"p\":[true]}}"), &cursor, "\"o\"", "{\"p\":[true]}");
}

static void test_array_iteration(void **state) {
    (void)state;
    const char *doc = "[ 1 , \"two, [three]\" , [ 3 , [ ] ] , { \"k\" : \"]\" } , true , false , "
                      "null , -0.5e+10 ]";
    assert_valid(doc, strlen(doc));
    json_span array = span_of(doc);
    size_t cursor = 0;
    json_span e;
    expect_element(array, &cursor, "1");
    expect_element(array, &cursor, "\"two, [three]\"");
    expect_element(array, &cursor, "[ 3 , [ ] ]");
    expect_element(array, &cursor, "{ \"k\" : \"]\" }");
    expect_element(array, &cursor, "true");
    expect_element(array, &cursor, "false");
    expect_element(array, &cursor, "null");
    expect_element(array, &cursor, "-0.5e+10");
    assert_false(json_array_next(array, &cursor, &e));
    assert_false(json_array_next(array, &cursor, &e));

    cursor = 0;
    assert_false(json_array_next(span_of(" [ ] "), &cursor, &e));
    cursor = 0;
    assert_false(json_array_next(span_of("{}"), &cursor, &e));
    cursor = 0;
    expect_element(span_of("[[]]"), &cursor, "[]");
}

static void test_iteration_garbage_stays_in_bounds(void **state) {
    (void)state;
    /* Not valid JSON: the walkers give up or return something, but never overrun (ASan). */
    static const char *const garbage[] = {
        "[",     "{",     "[1,", "{\"a\"", "{\"a\":",   "{\"a\":,", "[\"",
        "[\"\\", "{\"\\", "[[[", "[:",     "{:}",       "[1 2]",    "{\"a\":1 \"b\":2}",
        "[}",    "{]",    "[,]", "{,}",    "[\"a\\\"]",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        size_t length = strlen(garbage[i]);
        char *copy = malloc(length ? length : 1);
        assert_non_null(copy);
        memcpy(copy, garbage[i], length);
        json_span span = {copy, length};
        json_span k, v;
        size_t cursor = 0, previous = 0;
        for (int n = 0; n < 10 && json_object_next(span, &cursor, &k, &v); n++) {
            assert_true(cursor > previous && cursor <= length);
            previous = cursor;
        }
        cursor = previous = 0;
        for (int n = 0; n < 10 && json_array_next(span, &cursor, &v); n++) {
            assert_true(cursor > previous && cursor <= length);
            previous = cursor;
        }
        (void)json_kind_of(span);
        text t;
        text_init(&t);
        (void)json_string_decode(span, &t);
        (void)json_string_equals(span, "a");
        text_free(&t);
        free(copy);
    }
}

static void test_kind_of(void **state) {
    (void)state;
    assert_int_equal(json_kind_of(span_of(" {}")), JSON_KIND_OBJECT);
    assert_int_equal(json_kind_of(span_of("\n[1]")), JSON_KIND_ARRAY);
    assert_int_equal(json_kind_of(span_of("\"s\"")), JSON_KIND_STRING);
    assert_int_equal(json_kind_of(span_of("-1")), JSON_KIND_NUMBER);
    assert_int_equal(json_kind_of(span_of("0.5")), JSON_KIND_NUMBER);
    assert_int_equal(json_kind_of(span_of("true")), JSON_KIND_TRUE);
    assert_int_equal(json_kind_of(span_of("false")), JSON_KIND_FALSE);
    assert_int_equal(json_kind_of(span_of("null")), JSON_KIND_NULL);
    assert_int_equal(json_kind_of(span_of("")), JSON_KIND_INVALID);
    assert_int_equal(json_kind_of(span_of("   ")), JSON_KIND_INVALID);
    assert_int_equal(json_kind_of(span_of("tru")), JSON_KIND_INVALID);
    assert_int_equal(json_kind_of(span_of("x")), JSON_KIND_INVALID);
    assert_int_equal(json_kind_of((json_span){NULL, 0}), JSON_KIND_INVALID);
}

static void assert_decodes(const char *literal, const char *expected, size_t expected_length) {
    text out;
    text_init(&out);
    assert_valid(literal, strlen(literal));
    assert_true(json_string_decode(span_of(literal), &out));
    assert_int_equal(out.length, expected_length);
    assert_memory_equal(out.data, expected, expected_length);
    text_free(&out);
}

static void test_string_decode(void **state) {
    (void)state;
    assert_decodes("\"\"", "", 0);
    assert_decodes("\"plain\"", "plain", 5);
    assert_decodes("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    assert_decodes("\"a\\u0000b\"", "a\0b", 3);
    assert_decodes("\"\\u0041\\u00e9\\u00E9\"", "A\xC3\xA9\xC3\xA9", 5);
    assert_decodes("\"\\u07FF\\u0800\\uFFFF\"", "\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF", 8);
    assert_decodes("\"\\uD83D\\uDE00\"", "\xF0\x9F\x98\x80", 4);              /* U+1F600 */
    assert_decodes("\"\\ud800\\udc00\"", "\xF0\x90\x80\x80", 4);              /* U+10000 */
    assert_decodes("\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4);              /* U+10FFFF */
    assert_decodes("\"caf\xC3\xA9 \\u2028\"", "caf\xC3\xA9 \xE2\x80\xA8", 9); /* raw UTF-8 kept */

    text out;
    text_init(&out);
    assert_false(json_string_decode(span_of("abc"), &out));
    assert_false(json_string_decode(span_of("\""), &out));
    assert_false(json_string_decode(span_of("\"\\\""), &out));
    assert_false(json_string_decode(span_of("\"\\ud800\""), &out));
    assert_false(json_string_decode(span_of("\"\\udc00\""), &out));
    assert_false(json_string_decode(span_of("\"\\u12\""), &out));
    assert_false(json_string_decode((json_span){NULL, 0}, &out));
    text_free(&out);
}

static void test_string_equals(void **state) {
    (void)state;
    assert_true(json_string_equals(span_of("\"topic\""), "topic"));
    assert_true(json_string_equals(span_of("\"\""), ""));
    assert_true(json_string_equals(span_of("\"t\\u006fpic\""), "topic"));
    assert_true(json_string_equals(span_of("\"a\\nb\""), "a\nb"));
    assert_true(json_string_equals(span_of("\"\\uD83D\\uDE00!\""), "\xF0\x9F\x98\x80!"));
    assert_false(json_string_equals(span_of("\"topic\""), "topi"));
    assert_false(json_string_equals(span_of("\"topi\""), "topic"));
    assert_false(json_string_equals(span_of("\"a\\nb\""), "a\\nb"));
    assert_false(json_string_equals(span_of("\"a\\u0000\""), "a"));
    assert_false(json_string_equals(span_of("topic"), "topic"));
    assert_false(json_string_equals(span_of("\"\\x\""), "x"));
}

static void assert_appends(const char *input, size_t length, const char *expected) {
    text out;
    text_init(&out);
    json_append_string(&out, input, length);
    assert_int_equal(out.length, strlen(expected));
    assert_memory_equal(out.data, expected, out.length);
    /* The literal is valid JSON and decodes back to the input. */
    assert_valid(out.data, out.length);
    text decoded;
    text_init(&decoded);
    assert_true(json_string_decode((json_span){out.data, out.length}, &decoded));
    assert_int_equal(decoded.length, length);
    if (length) assert_memory_equal(decoded.data, input, length);
    text_free(&decoded);
    text_free(&out);
}

static void test_append_string(void **state) {
    (void)state;
    assert_appends(BYTES(""), "\"\"");
    assert_appends(NULL, 0, "\"\"");
    assert_appends(BYTES("hello world"), "\"hello world\"");
    assert_appends(BYTES("say \"hi\" \\ bye / "), "\"say \\\"hi\\\" \\\\ bye / \"");
    assert_appends(BYTES("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
    assert_appends(BYTES("\x00\x01\x1F\x7F"), "\"\\u0000\\u0001\\u001f\x7F\"");
    assert_appends(BYTES("caf\xC3\xA9 \xF0\x9F\x98\x80"), "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");
    assert_appends(BYTES("a\xE2\x80\xA8z\xE2\x80\xA9"), "\"a\\u2028z\\u2029\"");
    assert_appends(BYTES("\xE2\x80\xA7\xE2\x80\xAA"),
                   "\"\xE2\x80\xA7\xE2\x80\xAA\""); /* neighbours */

    text out;
    text_init(&out);
    text_append_cstring(&out, "x=");
    json_append_string(&out, "a\"b", 3);
    assert_string_equal(text_cstring(&out), "x=\"a\\\"b\"");
    text_free(&out);
}

typedef struct utf8_case {
    const char *data;
    size_t length;
    size_t error; /* (size_t)-1 when well-formed */
} utf8_case;

#define WELL_FORMED ((size_t)-1)

static void test_utf8_table(void **state) {
    (void)state;
    static const utf8_case cases[] = {
        {BYTES(""), WELL_FORMED},
        {BYTES("plain ASCII text, long enough for the word-at-a-time path"), WELL_FORMED},
        {BYTES("\x7F"), WELL_FORMED},             /* U+007F */
        {BYTES("\xC2\x80"), WELL_FORMED},         /* U+0080 */
        {BYTES("\xDF\xBF"), WELL_FORMED},         /* U+07FF */
        {BYTES("\xE0\xA0\x80"), WELL_FORMED},     /* U+0800 */
        {BYTES("\xED\x9F\xBF"), WELL_FORMED},     /* U+D7FF */
        {BYTES("\xEE\x80\x80"), WELL_FORMED},     /* U+E000 */
        {BYTES("\xEF\xBF\xBF"), WELL_FORMED},     /* U+FFFF */
        {BYTES("\xF0\x90\x80\x80"), WELL_FORMED}, /* U+10000 */
        {BYTES("\xF4\x8F\xBF\xBF"), WELL_FORMED}, /* U+10FFFF */
        {BYTES("0123456789\xC3\xA9"
               "0123456789abcdef\xF0\x9F\x98\x80xyz"),
         WELL_FORMED},
        /* overlong forms */
        {BYTES("\xC0\x80"), 0},
        {BYTES("\xC0\xAF"), 0},
        {BYTES("\xC1\xBF"), 0},
        {BYTES("\xE0\x80\x80"), 1},
        {BYTES("\xE0\x9F\xBF"), 1},
        {BYTES("\xF0\x80\x80\x80"), 1},
        {BYTES("\xF0\x8F\xBF\xBF"), 1},
        /* surrogates and beyond U+10FFFF */
        {BYTES("\xED\xA0\x80"), 1},
        {BYTES("\xED\xBF\xBF"), 1},
        {BYTES("\xF4\x90\x80\x80"), 1},
        {BYTES("\xF5\x80\x80\x80"), 0},
        {BYTES("\xF7\xBF\xBF\xBF"), 0},
        {BYTES("\xF8\x88\x80\x80\x80"), 0},
        {BYTES("\xFE"), 0},
        {BYTES("\xFF"), 0},
        /* stray continuation bytes */
        {BYTES("\x80"), 0},
        {BYTES("\xBF"), 0},
        {BYTES("a\x80"), 1},
        {BYTES("\xC3\xA9\xA9"), 2},
        /* truncated sequences: at the end the fault is the end of input */
        {BYTES("\xC3"), 1},
        {BYTES("\xE2\x82"), 2},
        {BYTES("\xF0\x9F\x98"), 3},
        {BYTES("\xE2\x82"
               "A"),
         2},
        {BYTES("\xC3\xC3\xA9"), 1},
        {BYTES("\xF0\x9F\x98"
               "\xF0\x9F\x98\x80"),
         3},
        /* faults after the word-at-a-time path */
        {BYTES("abcdefghij\xC0\x80"), 10},
        {BYTES("0123456789abcdef\xE2\x82\xAC"
               "01234567\xED\xA0\x80"),
         28},
        {BYTES("0123456\xF4\x8F\xBF"), 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const utf8_case *c = &cases[i];
        size_t position = 12345;
        bool ok = utf8_validate(c->data, c->length, &position);
        if (c->error == WELL_FORMED) {
            if (!ok) fail_msg("case %zu: expected well-formed, fault at %zu", i, position);
        } else if (ok || position != c->error) {
            fail_msg("case %zu: expected fault at %zu, got %s %zu", i, c->error,
                     ok ? "valid" : "fault at", position);
        }
        assert_true(utf8_validate(c->data, c->length, NULL) == ok);

        /* Inside a JSON string the same bytes fault at the same place (shifted by the opening
         * quote); a sequence cut short by the closing quote is reported at that quote. */
        text doc;
        text_init(&doc);
        text_append_char(&doc, '"');
        text_append(&doc, c->data, c->length);
        text_append_char(&doc, '"');
        if (c->error == WELL_FORMED)
            assert_valid(doc.data, doc.length);
        else
            assert_invalid(doc.data, doc.length, c->error + 1, BAD_UTF8);
        text_free(&doc);
    }
    assert_true(utf8_validate(NULL, 0, NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_values),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_minify),
        cmocka_unit_test(test_object_iteration),
        cmocka_unit_test(test_array_iteration),
        cmocka_unit_test(test_iteration_garbage_stays_in_bounds),
        cmocka_unit_test(test_kind_of),
        cmocka_unit_test(test_string_decode),
        cmocka_unit_test(test_string_equals),
        cmocka_unit_test(test_append_string),
        cmocka_unit_test(test_utf8_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

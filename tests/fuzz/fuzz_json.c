/* libFuzzer harness for core/json: validation, minify, iteration, string helpers, UTF-8. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static void check(bool condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_json: %s\n", what);
        abort();
    }
}

/* Slow reference for utf8_validate, written differently: decode by bit patterns, and after each
 * byte ask whether the code points still reachable from the prefix meet the valid range of the
 * sequence's length (minus surrogates). The fault is the first byte after which none do, or the
 * end of input inside a sequence. */
static bool reference_utf8(const unsigned char *p, size_t n, size_t *error) {
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t max_of[5] = {0, 0, 0x7FF, 0xFFFF, 0x10FFFF};
    size_t i = 0;
    while (i < n) {
        unsigned char lead = p[i];
        size_t length;
        if (lead < 0x80) {
            i++;
            continue;
        } else if ((lead & 0xE0) == 0xC0) {
            length = 2;
        } else if ((lead & 0xF0) == 0xE0) {
            length = 3;
        } else if ((lead & 0xF8) == 0xF0) {
            length = 4;
        } else {
            *error = i;
            return false;
        }
        uint32_t bits = lead & (0x7F >> length);
        for (size_t k = 0; k < length; k++) {
            if (k > 0) {
                if (i + k == n) {
                    *error = n;
                    return false;
                }
                if ((p[i + k] & 0xC0) != 0x80) {
                    *error = i + k;
                    return false;
                }
                bits = bits << 6 | (p[i + k] & 0x3F);
            }
            unsigned remaining = (unsigned)(length - 1 - k);
            uint64_t low = (uint64_t)bits << (6 * remaining);
            uint64_t high = low | (((uint64_t)1 << (6 * remaining)) - 1);
            uint64_t a = low > min_of[length] ? low : min_of[length];
            uint64_t b = high < max_of[length] ? high : max_of[length];
            bool reachable = a <= b && !(length == 3 && a >= 0xD800 && b <= 0xDFFF);
            if (!reachable) {
                *error = i + k;
                return false;
            }
        }
        i += length;
    }
    return true;
}

static bool is_end_message(const char *message) {
    return strcmp(message, "Unexpected end of input.") == 0 ||
           strcmp(message, "Empty input: expected a JSON value.") == 0;
}

/* The literal json_append_string makes of bytes is valid and decodes back to them. */
static void check_string_round_trip(const char *data, size_t length) {
    text literal, decoded;
    text_init(&literal);
    text_init(&decoded);
    json_append_string(&literal, data, length);
    check(json_validate(literal.data, literal.length, NULL), "append_string output is valid");
    json_span span = {literal.data, literal.length};
    check(json_kind_of(span) == JSON_KIND_STRING, "append_string output is a string");
    check(json_string_decode(span, &decoded), "append_string output decodes");
    check(decoded.length == length && (length == 0 || memcmp(decoded.data, data, length) == 0),
          "append_string round trip");
    check(memchr(literal.data, '\n', literal.length) == NULL, "append_string escapes newlines");
    text_free(&literal);
    text_free(&decoded);
}

/* A validated string span decodes to valid UTF-8 that compares equal and round-trips. */
static void check_string(json_span string) {
    check(json_kind_of(string) == JSON_KIND_STRING, "string kind");
    text decoded;
    text_init(&decoded);
    check(json_string_decode(string, &decoded), "valid string decodes");
    check(utf8_validate(decoded.data, decoded.length, NULL), "decoded string is UTF-8");
    char *expected = malloc(decoded.length + 1);
    check(expected != NULL, "malloc");
    if (decoded.length) memcpy(expected, decoded.data, decoded.length);
    expected[decoded.length] = '\0';
    if (memchr(expected, '\0', decoded.length) == NULL) {
        check(json_string_equals(string, expected), "string equals its decoding");
        if (decoded.length > 0) {
            expected[decoded.length - 1] ^= 1;
            check(!json_string_equals(string, expected), "string differs from another");
        }
    }
    free(expected);
    check_string_round_trip(decoded.data, decoded.length);
    text_free(&decoded);
}

static void check_minified_value(json_span value, json_span minified) {
    text out;
    text_init(&out);
    check(json_minify(value.data, value.length, &out, NULL), "member value minifies");
    check(out.length == minified.length && memcmp(out.data, minified.data, out.length) == 0,
          "member value minifies to the minified document's member");
    check(json_kind_of(value) == json_kind_of(minified), "same kind after minify");
    text_free(&out);
}

/* Walks a valid document and its minified form in lock step. */
static void check_walk(json_span doc, json_span minified) {
    json_kind kind = json_kind_of(doc);
    check(kind != JSON_KIND_INVALID, "valid document has a kind");
    check(kind == json_kind_of(minified), "minify keeps the kind");
    size_t cursor = 0, minified_cursor = 0, previous = 0;
    json_span key, value, minified_key, minified_value;
    if (kind == JSON_KIND_OBJECT) {
        while (json_object_next(doc, &cursor, &key, &value)) {
            check(cursor > previous && cursor <= doc.length, "object cursor advances");
            previous = cursor;
            check(json_object_next(minified, &minified_cursor, &minified_key, &minified_value),
                  "minified object has as many members");
            check(key.length == minified_key.length &&
                      memcmp(key.data, minified_key.data, key.length) == 0,
                  "keys survive minify");
            check_string(key);
            check(json_validate(value.data, value.length, NULL), "member value is valid");
            check_minified_value(value, minified_value);
        }
        check(!json_object_next(minified, &minified_cursor, &minified_key, &minified_value),
              "minified object has no extra members");
    } else if (kind == JSON_KIND_ARRAY) {
        while (json_array_next(doc, &cursor, &value)) {
            check(cursor > previous && cursor <= doc.length, "array cursor advances");
            previous = cursor;
            check(json_array_next(minified, &minified_cursor, &minified_value),
                  "minified array has as many elements");
            check(json_validate(value.data, value.length, NULL), "element is valid");
            check_minified_value(value, minified_value);
            if (json_kind_of(value) == JSON_KIND_STRING) check_string(value);
        }
        check(!json_array_next(minified, &minified_cursor, &minified_value),
              "minified array has no extra elements");
    } else if (kind == JSON_KIND_STRING) {
        check_string(minified);
    }
}

/* The walkers must stay in bounds and terminate on anything. */
static void walk_garbage(const char *data, size_t size) {
    json_span span = {data, size}, key, value;
    size_t cursor = 0, previous = 0;
    while (json_object_next(span, &cursor, &key, &value)) {
        check(cursor > previous && cursor <= size, "garbage object cursor advances");
        check(key.data >= data && key.data + key.length <= data + size, "key in bounds");
        check(value.data >= data && value.data + value.length <= data + size, "value in bounds");
        previous = cursor;
    }
    cursor = previous = 0;
    while (json_array_next(span, &cursor, &value)) {
        check(cursor > previous && cursor <= size, "garbage array cursor advances");
        check(value.data >= data && value.data + value.length <= data + size, "element in bounds");
        previous = cursor;
    }
    (void)json_kind_of(span);
    text t;
    text_init(&t);
    (void)json_string_decode(span, &t);
    text_free(&t);
    (void)json_string_equals(span, "herald");
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *data = (const char *)bytes;

    /* UTF-8 against the reference, and the fault position is the end of the longest good prefix. */
    size_t utf8_error = 0, reference_error = 0;
    bool utf8_ok = utf8_validate(data, size, &utf8_error);
    bool reference_ok = reference_utf8(bytes, size, &reference_error);
    check(utf8_ok == reference_ok, "utf8_validate agrees with the reference");
    if (!utf8_ok) {
        check(utf8_error == reference_error, "utf8 fault position agrees with the reference");
        size_t prefix_error = 0;
        check(utf8_validate(data, utf8_error, &prefix_error) || prefix_error == utf8_error,
              "utf8 prefix before the fault is good");
    } else {
        check_string_round_trip(data, size);
    }

    json_error error = {0, NULL};
    bool valid = json_validate(data, size, &error);
    text minified;
    text_init(&minified);
    json_error minify_error = {0, NULL};
    bool minify_ok = json_minify(data, size, &minified, &minify_error);
    check(valid == minify_ok, "minify agrees with validate");

    if (!valid) {
        check(error.message != NULL && error.position <= size, "error is set and in range");
        check(minify_error.position == error.position &&
                  strcmp(minify_error.message, error.message) == 0,
              "minify reports the same error");
        /* Everything before the fault is a valid prefix: cut there, the input is either complete
         * or ends early exactly at the cut. */
        json_error prefix_error = {0, NULL};
        if (!json_validate(data, error.position, &prefix_error))
            check(prefix_error.position == error.position && is_end_message(prefix_error.message),
                  "the bytes before the fault are a valid prefix");
        if (!utf8_ok) check(error.position <= utf8_error, "bad UTF-8 is caught by its fault");
    } else {
        check(utf8_ok, "valid JSON is valid UTF-8");
        check(minified.length <= size, "minify does not grow");
        text again;
        text_init(&again);
        check(json_minify(minified.data, minified.length, &again, NULL), "minified output valid");
        check(again.length == minified.length &&
                  memcmp(again.data, minified.data, minified.length) == 0,
              "minify is idempotent");
        text_free(&again);
        check_walk((json_span){data, size}, (json_span){minified.data, minified.length});
    }
    text_free(&minified);

    walk_garbage(data, size);
    return 0;
}

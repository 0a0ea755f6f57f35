#ifndef HERALD_CORE_JSON_H
#define HERALD_CORE_JSON_H
/* Owns: herald's strict JSON (RFC 8259) reader and writer helpers. herald carries published
 * JSON as text, so the reader validates and minifies without building a tree (no precision loss
 * on big numbers), reports the byte offset of the first fault, and lets callers walk an object's
 * members or an array's elements as raw spans. Input must also be valid UTF-8. */
#include <stdbool.h>
#include <stddef.h>

#include "core/text.h"

#define JSON_MAX_DEPTH 64

typedef struct json_error {
    size_t position;     /* 0-based byte offset of the fault */
    const char *message; /* one human sentence, static */
} json_error;

/* Validates one JSON value (surrounding whitespace allowed). true when valid. */
bool json_validate(const char *data, size_t length, json_error *error);
/* Validates and appends the value without insignificant whitespace to out. On failure out may
 * hold partial content (discard it); false also on allocation failure, told apart by
 * text_failed(out). */
bool json_minify(const char *data, size_t length, text *out, json_error *error);

/* Raw spans of an already validated value. */
typedef struct json_span {
    const char *data;
    size_t length;
} json_span;

typedef enum json_kind {
    JSON_KIND_INVALID,
    JSON_KIND_OBJECT,
    JSON_KIND_ARRAY,
    JSON_KIND_STRING,
    JSON_KIND_NUMBER,
    JSON_KIND_TRUE,
    JSON_KIND_FALSE,
    JSON_KIND_NULL,
} json_kind;

/* The kind of the value at the start of span (leading whitespace skipped). */
json_kind json_kind_of(json_span value);

/* Iteration over a validated object: *cursor starts at 0. Each call yields the next member's key
 * span (with quotes) and value span; returns false at the end. */
bool json_object_next(json_span object, size_t *cursor, json_span *key, json_span *value);
/* Iteration over a validated array's elements. */
bool json_array_next(json_span array, size_t *cursor, json_span *element);
/* Decodes a validated string span (with quotes) into out (UTF-8, escapes resolved). */
bool json_string_decode(json_span string, text *out);
/* true when the string span (with quotes) decodes to exactly the given bytes. */
bool json_string_equals(json_span string, const char *expected);

/* Appends s as a JSON string literal (quotes and escapes). s must be valid UTF-8. */
void json_append_string(text *out, const char *s, size_t length);

/* Strict UTF-8 check (no overlongs, surrogates, > U+10FFFF); on failure *error_position is the
 * offset of the first byte that cannot begin or continue a valid sequence. */
bool utf8_validate(const char *data, size_t length, size_t *error_position);

#endif

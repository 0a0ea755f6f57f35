#ifndef HERALD_CORE_TEXT_H
#define HERALD_CORE_TEXT_H
/* Owns: a growable byte string for composing responses and encodings.
 * Allocation failure is sticky: text_failed() reports it once at the end instead of at every
 * append. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buffer.h"

typedef struct text {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
} text;

void text_init(text *t);
void text_free(text *t);
void text_clear(text *t); /* keeps the allocation */
void text_append(text *t, const void *data, size_t length);
void text_append_cstring(text *t, const char *s);
void text_append_char(text *t, char c);
void text_append_u64(text *t, uint64_t value);
void text_printf(text *t, const char *format, ...) __attribute__((format(printf, 2, 3)));
bool text_failed(const text *t);
/* A NUL-terminated view (the NUL is not counted); NULL after a failed allocation. */
const char *text_cstring(text *t);
/* Moves the content into a new refcounted buffer; the text is left empty. NULL on failure. */
buffer *text_to_buffer(text *t);

#endif

#include "core/text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void text_init(text *t) {
    memset(t, 0, sizeof *t);
}

void text_free(text *t) {
    free(t->data);
    text_init(t);
}

void text_clear(text *t) {
    t->length = 0;
    t->failed = false;
}

static bool text_reserve(text *t, size_t extra) {
    if (t->failed) return false;
    if (t->length + extra + 1 <= t->capacity) return true;
    size_t capacity = t->capacity ? t->capacity : 64;
    while (capacity < t->length + extra + 1)
        capacity *= 2;
    char *data = realloc(t->data, capacity);
    if (!data) {
        t->failed = true;
        return false;
    }
    t->data = data;
    t->capacity = capacity;
    return true;
}

void text_append(text *t, const void *data, size_t length) {
    if (!text_reserve(t, length)) return;
    if (length) memcpy(t->data + t->length, data, length);
    t->length += length;
    t->data[t->length] = '\0';
}

void text_append_cstring(text *t, const char *s) {
    text_append(t, s, strlen(s));
}

void text_append_char(text *t, char c) {
    text_append(t, &c, 1);
}

void text_append_u64(text *t, uint64_t value) {
    char digits[24];
    int length = snprintf(digits, sizeof digits, "%" PRIu64, value);
    text_append(t, digits, (size_t)length);
}

void text_printf(text *t, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char small[256];
    int length = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (length < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)length < sizeof small) {
        text_append(t, small, (size_t)length);
        return;
    }
    if (!text_reserve(t, (size_t)length)) return;
    va_start(args, format);
    vsnprintf(t->data + t->length, (size_t)length + 1, format, args);
    va_end(args);
    t->length += (size_t)length;
}

bool text_failed(const text *t) {
    return t->failed;
}

const char *text_cstring(text *t) {
    if (!text_reserve(t, 0)) return NULL;
    t->data[t->length] = '\0';
    return t->data;
}

buffer *text_to_buffer(text *t) {
    if (t->failed) return NULL;
    buffer *b = buffer_from(t->data, t->length);
    t->length = 0;
    return b;
}

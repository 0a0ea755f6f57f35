#include "http/url.h"
#include "core/encoding.h"

#include <stdlib.h>
#include <string.h>

bool url_decode(const char *src, size_t length, bool plus_is_space, text *out) {
    for (size_t i = 0; i < length; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= length) return false;
            int high = hex_digit_value((unsigned char)src[i + 1]),
                low = hex_digit_value((unsigned char)src[i + 2]);
            if (high < 0 || low < 0) return false;
            c = (char)(high * 16 + low);
            if (c == '\0') return false;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        text_append_char(out, c);
    }
    return !text_failed(out);
}

static char *decode_copy(const char *src, size_t length, size_t *decoded_length) {
    text t;
    text_init(&t);
    if (!url_decode(src, length, true, &t) || !text_cstring(&t)) {
        text_free(&t);
        return NULL;
    }
    if (decoded_length) *decoded_length = t.length;
    return t.data; /* ownership moves to the caller */
}

bool url_query_parse(const char *query, size_t length, url_query *out) {
    memset(out, 0, sizeof *out);
    size_t start = 0;
    while (start < length) {
        size_t end = start;
        while (end < length && query[end] != '&')
            end++;
        if (end > start) {
            if (out->count == URL_MAX_PARAMETERS) goto fail;
            const char *equals = memchr(query + start, '=', end - start);
            size_t name_end = equals ? (size_t)(equals - query) : end;
            url_parameter *p = &out->parameters[out->count];
            p->name = decode_copy(query + start, name_end - start, NULL);
            if (!p->name) goto fail;
            p->value = equals ? decode_copy(equals + 1, end - name_end - 1, &p->value_length)
                              : decode_copy("", 0, &p->value_length);
            if (!p->value) {
                free(p->name);
                goto fail;
            }
            out->count++;
        }
        start = end + 1;
    }
    return true;
fail:
    url_query_free(out);
    return false;
}

void url_query_free(url_query *q) {
    for (size_t i = 0; i < q->count; i++) {
        free(q->parameters[i].name);
        free(q->parameters[i].value);
    }
    q->count = 0;
}

const char *url_query_get(const url_query *q, const char *name) {
    for (size_t i = 0; i < q->count; i++)
        if (strcmp(q->parameters[i].name, name) == 0) return q->parameters[i].value;
    return NULL;
}

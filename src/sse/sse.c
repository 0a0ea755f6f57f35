#include "sse/sse.h"

#include <string.h>

void sse_encode_event(text *out, uint64_t id, const char *type, const char *data,
                      size_t data_length) {
    text_append_cstring(out, "id: ");
    text_append_u64(out, id);
    text_append_char(out, '\n');
    if (strcmp(type, "message") != 0) {
        text_append_cstring(out, "event: ");
        text_append_cstring(out, type);
        text_append_char(out, '\n');
    }
    size_t start = 0;
    for (size_t i = 0; i <= data_length; i++) {
        if (i < data_length && data[i] != '\r' && data[i] != '\n') continue;
        text_append_cstring(out, "data: ");
        text_append(out, data + start, i - start);
        text_append_char(out, '\n');
        if (i < data_length && data[i] == '\r' && i + 1 < data_length && data[i + 1] == '\n') i++;
        start = i + 1;
    }
    text_append_char(out, '\n');
}

buffer *sse_event_frame(event *e) {
    if (e->encodings[EVENT_ENCODING_SSE]) return e->encodings[EVENT_ENCODING_SSE];
    text t;
    text_init(&t);
    sse_encode_event(&t, e->id, e->type, e->data, e->data_length);
    e->encodings[EVENT_ENCODING_SSE] = text_to_buffer(&t);
    text_free(&t);
    return e->encodings[EVENT_ENCODING_SSE];
}

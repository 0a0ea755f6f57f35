#include "core/buffer.h"

#include <stdlib.h>
#include <string.h>

buffer *buffer_allocate(size_t length) {
    buffer *b = malloc(sizeof(buffer) + length + 1);
    if (!b) return NULL;
    atomic_init(&b->references, 1);
    b->length = length;
    b->data[length] = '\0'; /* convenient for text, never counted */
    return b;
}

buffer *buffer_from(const void *data, size_t length) {
    buffer *b = buffer_allocate(length);
    if (b && length) memcpy(b->data, data, length);
    return b;
}

buffer *buffer_retain(buffer *b) {
    atomic_fetch_add_explicit(&b->references, 1, memory_order_relaxed);
    return b;
}

void buffer_release(buffer *b) {
    if (b && atomic_fetch_sub_explicit(&b->references, 1, memory_order_acq_rel) == 1) free(b);
}

#ifndef HERALD_CORE_BUFFER_H
#define HERALD_CORE_BUFFER_H
/* Owns: refcounted immutable byte buffers, the only memory shared between owners.
 * An encoded event (SSE frame, JSON) is built once into a buffer and every subscriber's
 * write queue holds a reference instead of a copy. */
#include <stdatomic.h>
#include <stddef.h>

typedef struct buffer {
    atomic_int references;
    size_t length;
    char data[];
} buffer;

/* A new buffer holding a copy of data (length bytes), one reference. NULL when out of memory. */
buffer *buffer_from(const void *data, size_t length);
/* A new buffer of length bytes, uninitialised, one reference; the creator fills data. */
buffer *buffer_allocate(size_t length);
buffer *buffer_retain(buffer *b);
void buffer_release(buffer *b); /* NULL is allowed */

#endif

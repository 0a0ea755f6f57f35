/* permessage-deflate with zlib (RFC 7692 §7.2): raw deflate streams, each message sync-flushed
 * with its trailing 00 00 ff ff removed by the sender and put back by the receiver. zlib's
 * memory goes through a counting allocator so tests and callers can see what a connection
 * costs. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws/ws_internal.h"

/* ---- counting allocator ---- */

typedef struct allocation {
    size_t size;
    max_align_t align;
} allocation;

static voidpf counted_alloc(voidpf opaque, uInt items, uInt size) {
    size_t bytes = (size_t)items * size;
    allocation *a = malloc(sizeof(allocation) + bytes);
    if (!a) return Z_NULL;
    a->size = bytes;
    *(size_t *)opaque += bytes;
    return (char *)a + sizeof(allocation);
}

static void counted_free(voidpf opaque, voidpf address) {
    if (!address) return;
    allocation *a = (allocation *)((char *)address - sizeof(allocation));
    *(size_t *)opaque -= a->size;
    free(a);
}

/* ---- incoming: the inflater ---- */

struct ws_inflater {
    z_stream z;
    size_t zlib_bytes; /* what zlib holds now */
    bool ended;        /* the final deflate block was seen: ignore the rest of the message */
};

ws_inflater *ws_inflater_new(void) {
    ws_inflater *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->z.zalloc = counted_alloc;
    f->z.zfree = counted_free;
    f->z.opaque = &f->zlib_bytes;
    if (inflateInit2(&f->z, -15) != Z_OK) {
        free(f);
        return NULL;
    }
    return f;
}

void ws_inflater_free(ws_inflater *f) {
    if (!f) return;
    inflateEnd(&f->z);
    free(f);
}

size_t ws_inflater_heap_bytes(const ws_inflater *f) {
    return f ? sizeof *f + f->zlib_bytes : 0;
}

/* Inflates one piece of input (at most 1 GiB, so it fits zlib's counters). */
static ws_inflate_status inflate_piece(ws_inflater *f, ws_parser *p, const unsigned char *input,
                                       size_t length) {
    f->z.next_in = (Bytef *)(uintptr_t)input;
    f->z.avail_in = (uInt)length;
    for (;;) {
        if (p->message_length == p->message_capacity) {
            if (p->message_length > p->max_message) return WS_INFLATE_TOO_BIG;
            if (!ws_parser_reserve(p, 1)) return WS_INFLATE_NO_MEMORY;
        }
        size_t room = p->message_capacity - p->message_length;
        if (room > (1u << 30)) room = 1u << 30;
        f->z.next_out = (Bytef *)p->message + p->message_length;
        f->z.avail_out = (uInt)room;
        int rc = inflate(&f->z, Z_SYNC_FLUSH);
        p->message_length += room - f->z.avail_out;
        if (p->message_length > p->max_message) return WS_INFLATE_TOO_BIG;
        if (rc == Z_STREAM_END) {
            f->ended = true; /* anything after the final block is ignored */
            return WS_INFLATE_OK;
        }
        if (rc == Z_MEM_ERROR) return WS_INFLATE_NO_MEMORY;
        if (rc != Z_OK && rc != Z_BUF_ERROR) return WS_INFLATE_BAD_DATA;
        if (f->z.avail_out > 0) return WS_INFLATE_OK; /* input used up, output flushed */
    }
}

ws_inflate_status ws_inflater_run(ws_inflater *f, ws_parser *p, const void *input, size_t length) {
    const unsigned char *bytes = input;
    while (length > 0 && !f->ended) {
        size_t piece = length > (1u << 30) ? (1u << 30) : length;
        ws_inflate_status status = inflate_piece(f, p, bytes, piece);
        if (status != WS_INFLATE_OK) return status;
        bytes += piece;
        length -= piece;
    }
    return WS_INFLATE_OK;
}

ws_inflate_status ws_inflater_finish(ws_inflater *f, ws_parser *p) {
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
    return ws_inflater_run(f, p, tail, sizeof tail);
}

bool ws_inflater_next_message(ws_inflater *f) {
    if (!f->ended) return true; /* the stream just continues */
    /* The sender ended its deflate stream (BFINAL) yet keeps its window: start a new stream
     * primed with the old window. */
    unsigned char *window = malloc(1u << 15);
    uInt window_length = 0;
    bool ok = window && inflateGetDictionary(&f->z, window, &window_length) == Z_OK &&
              inflateReset(&f->z) == Z_OK &&
              (window_length == 0 || inflateSetDictionary(&f->z, window, window_length) == Z_OK);
    free(window);
    f->ended = false;
    return ok;
}

/* ---- outgoing: the deflater ---- */

void ws_deflater_init(ws_deflater *d, int window_bits, bool no_context_takeover) {
    memset(d, 0, sizeof *d);
    d->window_bits = window_bits < 9 ? 9 : window_bits > 15 ? 15 : window_bits;
    d->level = Z_DEFAULT_COMPRESSION;
    d->no_context_takeover = no_context_takeover;
}

void ws_deflater_release(ws_deflater *d) {
    if (!d->stream) return;
    deflateEnd(d->stream);
    free(d->stream);
    d->stream = NULL;
}

void ws_deflater_free(ws_deflater *d) {
    ws_deflater_release(d);
}

static bool deflater_start(ws_deflater *d) {
    if (d->stream) return true;
    z_stream *z = calloc(1, sizeof *z);
    if (!z) return false;
    z->zalloc = counted_alloc;
    z->zfree = counted_free;
    z->opaque = &d->heap_bytes;
    if (deflateInit2(z, d->level, Z_DEFLATED, -d->window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return false;
    }
    d->stream = z;
    return true;
}

bool ws_deflate_message(ws_deflater *d, const void *data, size_t length, text *out) {
    if (!deflater_start(d)) return false;
    z_stream *z = d->stream;
    size_t start = out->length;
    unsigned char chunk[16384];
    const unsigned char *input = data;
    bool ok = true;
    /* Feed at most 1 GiB per call so avail_in never overflows; sync-flush only with the last. */
    do {
        size_t piece = length > (1u << 30) ? (1u << 30) : length;
        z->next_in = (Bytef *)(uintptr_t)input;
        z->avail_in = (uInt)piece;
        input += piece;
        length -= piece;
        int flush = length == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        do {
            z->next_out = chunk;
            z->avail_out = sizeof chunk;
            int rc = deflate(z, flush);
            if (rc != Z_OK && rc != Z_BUF_ERROR) ok = false;
            text_append(out, chunk, sizeof chunk - z->avail_out);
        } while (ok && z->avail_out == 0);
    } while (ok && length > 0);
    static const char tail[4] = {0x00, 0x00, (char)0xff, (char)0xff};
    if (ok && !text_failed(out) && out->length - start >= 4 &&
        memcmp(out->data + out->length - 4, tail, 4) == 0) {
        out->length -= 4;
        out->data[out->length] = '\0';
    } else {
        ok = false;
    }
    if (!ok || d->no_context_takeover) {
        if (deflateReset(z) != Z_OK) ws_deflater_release(d);
    }
    if (!ok && !text_failed(out) && out->data) {
        out->length = start;
        out->data[start] = '\0';
    }
    return ok;
}

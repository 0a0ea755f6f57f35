#ifndef HERALD_WS_INTERNAL_H
#define HERALD_WS_INTERNAL_H
/* Private to src/ws: the inflate stream of one compressed incoming message, shared between the
 * frame parser (ws_frame.c) and the zlib code (ws_deflate.c). */
#include "ws/ws.h"

typedef enum ws_inflate_status {
    WS_INFLATE_OK,
    WS_INFLATE_TOO_BIG,   /* the output would pass the message limit -> 1009 */
    WS_INFLATE_BAD_DATA,  /* not a raw deflate stream -> 1007 */
    WS_INFLATE_NO_MEMORY, /* -> 1011 */
} ws_inflate_status;

/* NULL when out of memory. The stream inflates with a 15-bit window, valid for any client. */
ws_inflater *ws_inflater_new(void);
void ws_inflater_free(ws_inflater *f);
size_t ws_inflater_heap_bytes(const ws_inflater *f);
/* Inflates a chunk of the current message's compressed payload, appending the output to
 * p->message (grown by ws_parser_reserve, never past p->max_message + 1 bytes, the last byte
 * only to detect an overflow). */
ws_inflate_status ws_inflater_run(ws_inflater *f, ws_parser *p, const void *input, size_t length);
/* Ends the message: inflates the 00 00 ff ff tail RFC 7692 §7.2.2 says the sender removed. */
ws_inflate_status ws_inflater_finish(ws_inflater *f, ws_parser *p);
/* Prepares for the next message with context takeover (keeps the window). False on failure. */
bool ws_inflater_next_message(ws_inflater *f);

/* Makes room for at least `room` more bytes after p->message_length (capacity never above
 * p->max_message + 1). False when that is impossible or out of memory. */
bool ws_parser_reserve(ws_parser *p, size_t room);

#endif

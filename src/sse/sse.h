#ifndef HERALD_SSE_H
#define HERALD_SSE_H
/* Owns: the Server-Sent Events wire format (SPEC §5) — event frames, encoded once per event and
 * shared by every stream — and the stream handler (sse/stream.c). */
#include <stddef.h>

#include "core/event.h"
#include "core/text.h"

/* Appends "id: N\n[event: T\n]data: ...\n\n". Text data is split on CR, LF and CRLF into one
 * data line each; JSON data is minified and so is one line. The event line is omitted for the
 * type "message" so EventSource.onmessage fires. */
void sse_encode_event(text *out, uint64_t id, const char *type, const char *data,
                      size_t data_length);
/* The event's frame, encoded on first use and cached on the event. NULL when out of memory. */
buffer *sse_event_frame(event *e);

#endif

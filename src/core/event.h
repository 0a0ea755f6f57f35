#ifndef HERALD_CORE_EVENT_H
#define HERALD_CORE_EVENT_H
/* Owns: the event value (refcounted) and its encodings, each made once per event and shared.
 * Events are created by the publisher, get their id and time from the store's writer thread,
 * and are immutable once they reach the loop thread; the cached encodings are built lazily on
 * the loop thread only. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buffer.h"
#include "core/text.h"

#define EVENT_TYPE_MAX 64

typedef enum event_encoding_kind {
    EVENT_ENCODING_SSE,              /* sse_event_frame */
    EVENT_ENCODING_WS_JSON,          /* {"op":"event",...} text frame */
    EVENT_ENCODING_WS_JSON_DEFLATED, /* the same, permessage-deflate compressed */
    EVENT_ENCODING_WS_RAW,           /* the data alone as a text frame (raw mode) */
    EVENT_ENCODING_WS_RAW_DEFLATED,
    EVENT_ENCODING_COUNT,
} event_encoding_kind;

typedef struct event {
    atomic_int references;
    uint64_t id;
    int64_t time_ms; /* unix milliseconds, set when stored */
    char *topic;     /* NUL-terminated */
    size_t topic_length;
    char type[EVENT_TYPE_MAX + 1];
    bool data_is_json; /* data is minified JSON text; otherwise UTF-8 text carried as a string */
    char *data;        /* NUL-terminated */
    size_t data_length;
    buffer *json; /* {"id","topic","type","time","data"}, built by event_json */
    /* Each transport's wire encoding, built on first use by that transport and shared by every
     * subscriber (see event_encoding_kind). */
    buffer *encodings[EVENT_ENCODING_COUNT];
} event;

event *event_create(const char *topic, size_t topic_length, const char *type, bool data_is_json,
                    const char *data, size_t data_length);
event *event_retain(event *e);
void event_release(event *e); /* NULL allowed */

/* The event's JSON object, encoded once and cached. NULL when out of memory. */
buffer *event_json(event *e);
/* Appends the event's JSON object to t (uses the cached encoding). */
void event_append_json(event *e, text *t);
/* "2026-12-03T15:00:00.123Z" (24 characters and a NUL). */
void event_format_time(int64_t time_ms, char out[25]);

/* The publish receipt: {"id","topic","type","time"} for a single publish, {"ids":[..]} for a batch.
 */
void event_append_receipt(text *t, event *const *events, size_t count, bool batch);

typedef struct event_list {
    event **events;
    size_t count;
    size_t capacity;
} event_list;
bool event_list_push(event_list *l, event *e); /* takes the reference */
void event_list_free(event_list *l);           /* releases every event */

#endif

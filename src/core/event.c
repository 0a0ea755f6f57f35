#include "core/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"

event *event_create(const char *topic, size_t topic_length, const char *type, bool data_is_json,
                    const char *data, size_t data_length) {
    size_t type_length = strlen(type);
    if (type_length > EVENT_TYPE_MAX) return NULL;
    event *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->topic = malloc(topic_length + 1);
    e->data = malloc(data_length + 1);
    if (!e->topic || !e->data) {
        free(e->topic);
        free(e->data);
        free(e);
        return NULL;
    }
    atomic_init(&e->references, 1);
    memcpy(e->topic, topic, topic_length);
    e->topic[topic_length] = '\0';
    e->topic_length = topic_length;
    memcpy(e->type, type, type_length + 1);
    e->data_is_json = data_is_json;
    if (data_length) memcpy(e->data, data, data_length);
    e->data[data_length] = '\0';
    e->data_length = data_length;
    return e;
}

event *event_retain(event *e) {
    atomic_fetch_add_explicit(&e->references, 1, memory_order_relaxed);
    return e;
}

void event_release(event *e) {
    if (!e || atomic_fetch_sub_explicit(&e->references, 1, memory_order_acq_rel) != 1) return;
    buffer_release(e->json);
    for (int i = 0; i < EVENT_ENCODING_COUNT; i++)
        buffer_release(e->encodings[i]);
    free(e->topic);
    free(e->data);
    free(e);
}

void event_format_time(int64_t time_ms, char out[25]) {
    time_t seconds = (time_t)(time_ms / 1000);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    size_t length = strftime(out, 25, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + length, 25 - length, ".%03dZ", (int)(time_ms % 1000));
}

static void append_data_value(const event *e, text *t) {
    if (e->data_is_json)
        text_append(t, e->data, e->data_length);
    else
        json_append_string(t, e->data, e->data_length);
}

buffer *event_json(event *e) {
    if (e->json) return e->json;
    text t;
    text_init(&t);
    char time[25];
    event_format_time(e->time_ms, time);
    text_append_cstring(&t, "{\"id\":\"");
    text_append_u64(&t, e->id);
    text_append_cstring(&t, "\",\"topic\":");
    json_append_string(&t, e->topic, e->topic_length);
    text_append_cstring(&t, ",\"type\":");
    json_append_string(&t, e->type, strlen(e->type));
    text_append_cstring(&t, ",\"time\":\"");
    text_append_cstring(&t, time);
    text_append_cstring(&t, "\",\"data\":");
    append_data_value(e, &t);
    text_append_char(&t, '}');
    e->json = text_to_buffer(&t);
    text_free(&t);
    return e->json;
}

void event_append_json(event *e, text *t) {
    buffer *json = event_json(e);
    if (json)
        text_append(t, json->data, json->length);
    else
        t->failed = true;
}

void event_append_receipt(text *t, event *const *events, size_t count, bool batch) {
    if (!batch && count == 1) {
        const event *e = events[0];
        char time[25];
        event_format_time(e->time_ms, time);
        text_append_cstring(t, "{\"id\":\"");
        text_append_u64(t, e->id);
        text_append_cstring(t, "\",\"topic\":");
        json_append_string(t, e->topic, e->topic_length);
        text_append_cstring(t, ",\"type\":");
        json_append_string(t, e->type, strlen(e->type));
        text_append_cstring(t, ",\"time\":\"");
        text_append_cstring(t, time);
        text_append_cstring(t, "\"}");
        return;
    }
    text_append_cstring(t, "{\"ids\":[");
    for (size_t i = 0; i < count; i++) {
        text_append_cstring(t, i ? ",\"" : "\"");
        text_append_u64(t, events[i]->id);
        text_append_char(t, '"');
    }
    text_append_cstring(t, "]}");
}

bool event_list_push(event_list *l, event *e) {
    if (l->count == l->capacity) {
        size_t capacity = l->capacity ? l->capacity * 2 : 16;
        event **events = realloc(l->events, capacity * sizeof *events);
        if (!events) {
            event_release(e);
            return false;
        }
        l->events = events;
        l->capacity = capacity;
    }
    l->events[l->count++] = e;
    return true;
}

void event_list_free(event_list *l) {
    for (size_t i = 0; i < l->count; i++)
        event_release(l->events[i]);
    free(l->events);
    memset(l, 0, sizeof *l);
}

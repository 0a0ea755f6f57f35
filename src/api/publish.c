/* Publishing (SPEC §3): body classification, single and batch publishes, Idempotency-Key.
 * The answer is sent from the store's callback, once the event is durable. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "core/json.h"
#include "hub/topic.h"

#define BATCH_MAX_EVENTS 1000
#define IDEMPOTENCY_KEY_MAX 200

typedef enum body_kind { BODY_JSON, BODY_TEXT, BODY_JSON_OR_TEXT, BODY_UNSUPPORTED } body_kind;

/* The media type decides how the body is read: JSON, text, or "JSON if it parses" for clients
 * (curl) that send no type or a form type by default. */
static body_kind classify_content_type(const char *content_type) {
    if (!content_type || !*content_type) return BODY_JSON_OR_TEXT;
    size_t length = strcspn(content_type, ";");
    while (length > 0 && (content_type[length - 1] == ' ' || content_type[length - 1] == '\t'))
        length--;
    if (length == 16 && strncasecmp(content_type, "application/json", 16) == 0) return BODY_JSON;
    if (length > 5 && length < 128 && strncasecmp(content_type + length - 5, "+json", 5) == 0 &&
        strncasecmp(content_type, "application/", 12) == 0)
        return BODY_JSON;
    if (length == 33 && strncasecmp(content_type, "application/x-www-form-urlencoded", 33) == 0)
        return BODY_JSON_OR_TEXT;
    if (length > 5 && strncasecmp(content_type, "text/", 5) == 0) {
        /* herald carries text as UTF-8 only; another declared charset is refused, not guessed. */
        const char *charset = strcasestr(content_type + length, "charset=");
        if (charset) {
            charset += 8;
            if (*charset == '"') charset++;
            if (strncasecmp(charset, "utf-8", 5) != 0 && strncasecmp(charset, "us-ascii", 8) != 0)
                return BODY_UNSUPPORTED;
        }
        return BODY_TEXT;
    }
    return BODY_UNSUPPORTED;
}

typedef struct body_value {
    bool is_json;
    text minified; /* JSON bodies: the minified value */
} body_value;

/* Reads the body per its media type. On a fault it answers the request and returns false. */
static bool read_body(api_request *r, body_value *out) {
    connection *c = r->connection;
    const http_request *h = r->http;
    text_init(&out->minified);
    body_kind kind = classify_content_type(http_request_header(h, "content-type"));
    if (kind == BODY_UNSUPPORTED) {
        connection_respond_error(c, 415, "unsupported_media_type",
                                 "Send application/json, text/* in UTF-8, or no Content-Type.",
                                 NULL);
        return false;
    }
    json_error error = {0};
    if (kind != BODY_TEXT) {
        if (json_minify(h->body, h->body_length, &out->minified, &error)) {
            out->is_json = true;
            return true;
        }
        if (text_failed(&out->minified)) {
            connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
            text_free(&out->minified);
            return false;
        }
        if (kind == BODY_JSON) {
            char message[200];
            snprintf(message, sizeof message, "The body is not valid JSON: %s", error.message);
            connection_respond_error_at(c, 400, "invalid_json", message, error.position);
            text_free(&out->minified);
            return false;
        }
    }
    text_free(&out->minified);
    out->is_json = false;
    size_t position = 0;
    if (!utf8_validate(h->body, h->body_length, &position)) {
        connection_respond_error_at(c, 400, "invalid_utf8", "The body is not valid UTF-8 text.",
                                    position);
        return false;
    }
    return true;
}

static bool read_idempotency_key(api_request *r, const char **key, size_t *length) {
    *key = http_request_header(r->http, "idempotency-key");
    *length = *key ? strlen(*key) : 0;
    if (*key && (*length == 0 || *length > IDEMPOTENCY_KEY_MAX)) {
        connection_respond_error(r->connection, 400, "invalid_parameter",
                                 "Idempotency-Key must be 1-200 bytes.", NULL);
        return false;
    }
    return true;
}

static void on_published(void *context, const store_publish_result *result) {
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (!result->ok) {
            connection_respond_error(
                c, 503, "unavailable",
                result->error_message ? result->error_message : "The store failed.", NULL);
        } else if (result->replayed) {
            connection_respond(c, 200, "application/json", result->receipt->data,
                               result->receipt->length, "Idempotent-Replayed: true\r\n");
        } else {
            c->server->events_published += result->event_count;
            connection_respond(c, 201, "application/json", result->receipt->data,
                               result->receipt->length, NULL);
        }
    }
    connection_release(c);
}

static const connection_handler publish_handler = {0};

static void submit(api_request *r, const store_item *items, size_t count, bool batch) {
    connection *c = r->connection;
    const char *key;
    size_t key_length;
    if (!read_idempotency_key(r, &key, &key_length)) return;
    if (!r->server->store || r->server->shutting_down) {
        connection_respond_error(c, 503, "unavailable", "The server is shutting down.", NULL);
        return;
    }
    text store_key;
    text_init(&store_key);
    /* Single and batch receipts differ in shape, so their keys live apart. */
    const char *namespaced =
        idempotency_store_key(&store_key, batch ? "b:" : "p:", key, key_length);
    if (key && !namespaced) {
        text_free(&store_key);
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    connection_hold(c);
    int rc = store_publish(r->server->store, items, count, namespaced, store_key.length, batch,
                           on_published, c);
    text_free(&store_key);
    if (rc != 0) {
        connection_release(c);
        connection_respond_error(c, 503, "unavailable", "The store is not accepting events.", NULL);
        return;
    }
    connection_begin_handler(c, CONNECTION_WAITING, &publish_handler, NULL);
}

void api_handle_publish(api_request *r) {
    if (!api_allowed(r, access_publish(r->server->access, &r->identity, r->topic))) return;
    const char *type = url_query_get(&r->query, "type");
    if (!type) type = "message";
    if (!event_type_valid(type, strlen(type))) {
        connection_respond_error(r->connection, 400, "invalid_type",
                                 "The type must be 1-64 bytes of letters, digits and '_.:-'.",
                                 NULL);
        return;
    }
    body_value body;
    if (!read_body(r, &body)) return;
    store_item item = {
        .topic = r->topic,
        .topic_length = strlen(r->topic),
        .type = type,
        .data_is_json = body.is_json,
        .data = body.is_json ? body.minified.data : r->http->body,
        .data_length = body.is_json ? body.minified.length : r->http->body_length,
    };
    if (!item.data) item.data = "";
    submit(r, &item, 1, false);
    text_free(&body.minified);
}

/* One entry of {"events":[{"topic","type","data"}]}; strings decoded into owned texts. */
typedef struct batch_entry {
    text topic;
    text type;
} batch_entry;

static bool batch_fail(api_request *r, const char *code, const char *message) {
    connection_respond_error(r->connection, 400, code, message, NULL);
    return false;
}

static bool read_batch_entry(api_request *r, json_span element, size_t index, batch_entry *entry,
                             store_item *item) {
    char message[160];
    if (json_kind_of(element) != JSON_KIND_OBJECT) {
        snprintf(message, sizeof message, "events[%zu] must be an object.", index);
        return batch_fail(r, "invalid_json", message);
    }
    json_span key, value, data = {"null", 4};
    bool has_topic = false, has_type = false;
    size_t cursor = 0;
    while (json_object_next(element, &cursor, &key, &value)) {
        /* A repeated member: the last one counts, as everywhere else in herald. */
        if (json_string_equals(key, "topic")) {
            text_clear(&entry->topic);
            if (json_kind_of(value) != JSON_KIND_STRING ||
                !json_string_decode(value, &entry->topic))
                break;
            has_topic = true;
        } else if (json_string_equals(key, "type")) {
            text_clear(&entry->type);
            if (json_kind_of(value) != JSON_KIND_STRING ||
                !json_string_decode(value, &entry->type)) {
                snprintf(message, sizeof message, "events[%zu].type must be a string.", index);
                return batch_fail(r, "invalid_type", message);
            }
            has_type = true;
        } else if (json_string_equals(key, "data")) {
            data = value;
        }
    }
    if (!has_topic || !text_cstring(&entry->topic) ||
        !topic_name_valid(entry->topic.data, entry->topic.length)) {
        snprintf(message, sizeof message, "events[%zu].topic must be a valid topic name.", index);
        return batch_fail(r, "invalid_topic", message);
    }
    if (!has_type) text_append_cstring(&entry->type, "message");
    if (!text_cstring(&entry->type) || strlen(entry->type.data) != entry->type.length ||
        !event_type_valid(entry->type.data, entry->type.length)) {
        snprintf(message, sizeof message,
                 "events[%zu].type must be 1-64 bytes of letters, digits and '_.:-'.", index);
        return batch_fail(r, "invalid_type", message);
    }
    *item = (store_item){entry->topic.data, entry->topic.length, entry->type.data, true,
                         data.data,         data.length};
    return true;
}

void api_handle_publish_batch(api_request *r) {
    connection *c = r->connection;
    const char *content_type = http_request_header(r->http, "content-type");
    body_kind kind = classify_content_type(content_type);
    if (kind != BODY_JSON && kind != BODY_JSON_OR_TEXT) {
        connection_respond_error(c, 415, "unsupported_media_type",
                                 "A batch is sent as application/json.", NULL);
        return;
    }
    text body;
    text_init(&body);
    json_error error = {0};
    if (!json_minify(r->http->body, r->http->body_length, &body, &error)) {
        if (text_failed(&body)) {
            connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
            text_free(&body);
            return;
        }
        char message[200];
        snprintf(message, sizeof message, "The body is not valid JSON: %s", error.message);
        connection_respond_error_at(c, 400, "invalid_json", message, error.position);
        text_free(&body);
        return;
    }
    json_span root = {body.data, body.length}, key, value, events = {NULL, 0};
    size_t cursor = 0;
    if (json_kind_of(root) == JSON_KIND_OBJECT)
        while (json_object_next(root, &cursor, &key, &value))
            if (json_string_equals(key, "events")) events = value;
    if (!events.data || json_kind_of(events) != JSON_KIND_ARRAY) {
        batch_fail(r, "invalid_json",
                   "The body must be {\"events\":[{\"topic\",\"type\",\"data\"},...]}.");
        text_free(&body);
        return;
    }
    size_t count = 0;
    json_span element;
    cursor = 0;
    while (json_array_next(events, &cursor, &element))
        count++;
    if (count == 0 || count > BATCH_MAX_EVENTS) {
        batch_fail(r, "invalid_parameter", "A batch holds 1 to 1000 events.");
        text_free(&body);
        return;
    }
    batch_entry *entries = calloc(count, sizeof *entries);
    store_item *items = calloc(count, sizeof *items);
    bool ok = entries && items;
    if (!ok) connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
    cursor = 0;
    for (size_t i = 0; ok && json_array_next(events, &cursor, &element); i++)
        ok = read_batch_entry(r, element, i, &entries[i], &items[i]) &&
             api_allowed(r, access_publish(r->server->access, &r->identity, entries[i].topic.data));
    if (ok) submit(r, items, count, true);
    for (size_t i = 0; entries && i < count; i++) {
        text_free(&entries[i].topic);
        text_free(&entries[i].type);
    }
    free(entries);
    free(items);
    text_free(&body);
}

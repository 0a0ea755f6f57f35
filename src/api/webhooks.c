/* Webhooks out (SPEC §7): endpoint management and the delivery log. Changes go through the
 * store's writer thread (the answer is sent once they are durable); reads run on the store's read
 * connection. The deliverer learns of every change from the store, not from here.
 *
 * Decisions: the secret is shown only when it is made (create, rotate-secret), never by GET or
 * list; "description" is always a string ("" when none); "types" is null when every type is
 * delivered; a delivery id is "msg_<n>" (a bare "<n>" is accepted too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "core/json.h"
#include "hooks/deliverer.h"
#include "hooks/endpoint_url.h"
#include "hooks/signature.h"
#include "hub/topic.h"
#include "store/outbox.h"

#define WEBHOOK_MAX_PATTERNS 64
#define WEBHOOK_MAX_TYPES 64
#define WEBHOOK_MAX_DESCRIPTION 1024
#define DELIVERIES_DEFAULT_LIMIT 100
#define DELIVERIES_MAX_LIMIT 1000

/* ---- answers ------------------------------------------------------------------------------ */

static void respond_json(connection *c, int status, text *body, const char *extra_headers) {
    if (text_failed(body)) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    connection_respond(c, status, "application/json", body->data ? body->data : "", body->length,
                       extra_headers);
}

static void not_found(connection *c) {
    connection_respond_error(c, 404, "not_found", "No such webhook endpoint.", NULL);
}

static void store_failed(connection *c) {
    connection_respond_error(c, 503, "unavailable",
                             "The store could not complete the change; try again.", NULL);
}

static void method_not_allowed(connection *c, const char *allow) {
    char headers[96], message[128];
    snprintf(headers, sizeof headers, "Allow: %s\r\n", allow);
    snprintf(message, sizeof message, "This path allows only %s.", allow);
    connection_respond_error(c, 405, "method_not_allowed", message, headers);
}

static void append_time(text *t, int64_t ms) {
    char time[25];
    event_format_time(ms, time);
    text_append_char(t, '"');
    text_append_cstring(t, time);
    text_append_char(t, '"');
}

static void append_webhook(text *t, const store_webhook *w, bool with_secret) {
    text_append_cstring(t, "{\"id\":");
    json_append_string(t, w->id, strlen(w->id));
    text_append_cstring(t, ",\"url\":");
    json_append_string(t, w->url, strlen(w->url));
    text_append_cstring(t, ",\"topics\":");
    text_append_cstring(t, w->topics);
    text_append_cstring(t, ",\"types\":");
    text_append_cstring(t, w->types ? w->types : "null");
    text_append_cstring(t, ",\"description\":");
    json_append_string(t, w->description, strlen(w->description));
    text_append_cstring(t, w->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    text_append_cstring(t, ",\"created\":");
    append_time(t, w->created_ms);
    if (with_secret) {
        text_append_cstring(t, ",\"secret\":");
        json_append_string(t, w->secret, strlen(w->secret));
    }
    text_append_char(t, '}');
}

static void respond_webhook(connection *c, int status, const store_webhook *w, bool with_secret) {
    text body;
    text_init(&body);
    append_webhook(&body, w, with_secret);
    char headers[128] = "";
    if (status == 201) snprintf(headers, sizeof headers, "Location: /v1/webhooks/%s\r\n", w->id);
    respond_json(c, status, &body, headers[0] ? headers : NULL);
    text_free(&body);
}

/* ---- waiting for the writer ----------------------------------------------------------------- */

static const connection_handler waiting_handler = {0};

/* The connection waits for a store callback, which answers and releases it. */
static void wait_for_store(connection *c) {
    connection_begin_handler(c, CONNECTION_WAITING, &waiting_handler, NULL);
}

static bool store_usable(api_request *r) {
    if (r->server->store && !r->server->shutting_down) return true;
    connection_respond_error(r->connection, 503, "unavailable", "The server is shutting down.",
                             NULL);
    return false;
}

/* Answers the store's refusal to queue (closing or out of memory). */
static void not_queued(connection *c) {
    connection_release(c);
    connection_respond_error(c, 503, "unavailable", "The store is not accepting changes.", NULL);
}

static void answer_webhook(void *context, int status, const store_webhook *w, int ok_status,
                           bool with_secret) {
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (status == STORE_OUTBOX_OK && w)
            respond_webhook(c, ok_status, w, with_secret);
        else if (status == STORE_OUTBOX_NOT_FOUND)
            not_found(c);
        else
            store_failed(c);
    }
    connection_release(c);
}

static void on_created(void *context, int status, const store_webhook *w) {
    answer_webhook(context, status, w, 201, true);
}

static void on_updated(void *context, int status, const store_webhook *w) {
    answer_webhook(context, status, w, 200, false);
}

static void on_rotated(void *context, int status, const store_webhook *w) {
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (status == STORE_OUTBOX_OK && w) {
            text body;
            text_init(&body);
            text_append_cstring(&body, "{\"secret\":");
            json_append_string(&body, w->secret, strlen(w->secret));
            text_append_char(&body, '}');
            respond_json(c, 200, &body, NULL);
            text_free(&body);
        } else if (status == STORE_OUTBOX_NOT_FOUND) {
            not_found(c);
        } else {
            store_failed(c);
        }
    }
    connection_release(c);
}

static void on_deleted(void *context, int status, uint64_t count) {
    (void)count;
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (status == STORE_OUTBOX_OK)
            connection_respond(c, 204, NULL, NULL, 0, NULL);
        else if (status == STORE_OUTBOX_NOT_FOUND)
            not_found(c);
        else
            store_failed(c);
    }
    connection_release(c);
}

static void answer_queued(connection *c, int status, uint64_t count,
                          const char *not_found_message) {
    if (connection_is_closing(c)) return;
    if (status == STORE_OUTBOX_OK) {
        text body;
        text_init(&body);
        text_printf(&body, "{\"queued\":%llu}", (unsigned long long)count);
        respond_json(c, 202, &body, NULL);
        text_free(&body);
    } else if (status == STORE_OUTBOX_NOT_FOUND) {
        connection_respond_error(c, 404, "not_found", not_found_message, NULL);
    } else if (status == STORE_OUTBOX_DISABLED) {
        connection_respond_error(c, 409, "invalid_parameter",
                                 "The webhook endpoint is disabled; enable it first.", NULL);
    } else {
        store_failed(c);
    }
}

static void on_retried(void *context, int status, uint64_t count) {
    answer_queued(context, status, count, "No such delivery of this webhook endpoint.");
    connection_release(context);
}

static void on_replayed(void *context, int status, uint64_t count) {
    answer_queued(context, status, count, "No such webhook endpoint.");
    connection_release(context);
}

/* ---- request bodies ------------------------------------------------------------------------- */

static bool json_content_type(const char *content_type) {
    if (!content_type || !*content_type) return true;
    size_t length = strcspn(content_type, ";");
    while (length > 0 && (content_type[length - 1] == ' ' || content_type[length - 1] == '\t'))
        length--;
    return (length == 16 && strncasecmp(content_type, "application/json", 16) == 0) ||
           (length == 33 &&
            strncasecmp(content_type, "application/x-www-form-urlencoded", 33) == 0) ||
           (length > 17 && strncasecmp(content_type, "application/", 12) == 0 &&
            strncasecmp(content_type + length - 5, "+json", 5) == 0);
}

/* The body as a minified JSON object into out. An empty body is {} when allow_empty. Answers
 * and returns false on a fault. */
static bool read_object(api_request *r, text *out, bool allow_empty) {
    connection *c = r->connection;
    const http_request *h = r->http;
    size_t length = h->body_length;
    bool blank = true;
    for (size_t i = 0; blank && i < length; i++)
        blank = h->body[i] == ' ' || h->body[i] == '\t' || h->body[i] == '\r' || h->body[i] == '\n';
    if (blank && allow_empty) {
        text_append_cstring(out, "{}");
        return true;
    }
    if (!json_content_type(http_request_header(h, "content-type"))) {
        connection_respond_error(c, 415, "unsupported_media_type",
                                 "Send the body as application/json.", NULL);
        return false;
    }
    json_error error = {0};
    if (!json_minify(h->body ? h->body : "", length, out, &error)) {
        if (text_failed(out)) {
            connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
            return false;
        }
        char message[200];
        snprintf(message, sizeof message, "The body is not valid JSON: %s", error.message);
        connection_respond_error_at(c, 400, "invalid_json", message, error.position);
        return false;
    }
    if (json_kind_of((json_span){out->data, out->length}) != JSON_KIND_OBJECT) {
        connection_respond_error(c, 400, "invalid_json", "The body must be a JSON object.", NULL);
        return false;
    }
    return true;
}

/* The fields of a create or a PATCH, decoded and validated. */
typedef struct webhook_input {
    text url;         /* as given, without a fragment */
    text topics;      /* canonical JSON array */
    text types;       /* canonical JSON array (empty text with has_types: null) */
    text description; /* decoded */
    text secret;
    bool has_url, has_topics, has_types, has_description, has_secret, has_enabled;
    bool enabled;
} webhook_input;

static void input_init(webhook_input *in) {
    memset(in, 0, sizeof *in);
    text_init(&in->url);
    text_init(&in->topics);
    text_init(&in->types);
    text_init(&in->description);
    text_init(&in->secret);
}

static void input_free(webhook_input *in) {
    text_free(&in->url);
    text_free(&in->topics);
    text_free(&in->types);
    text_free(&in->description);
    /* The secret is wiped before its memory goes back. */
    if (in->secret.data) memset(in->secret.data, 0, in->secret.capacity);
    text_free(&in->secret);
}

static bool bad(connection *c, const char *code, const char *message) {
    connection_respond_error(c, 400, code, message, NULL);
    return false;
}

/* Decodes a string value; false (and no answer) when it is not a string without NULs. */
static bool decode_string(json_span value, text *out) {
    if (json_kind_of(value) != JSON_KIND_STRING || !json_string_decode(value, out)) return false;
    return text_cstring(out) && strlen(out->data) == out->length;
}

/* A JSON array of 1..max strings each accepted by valid, re-encoded canonically into out. */
static bool read_names(connection *c, json_span value, size_t max,
                       bool (*valid)(const char *, size_t), const char *code, const char *message,
                       text *out) {
    if (json_kind_of(value) != JSON_KIND_ARRAY) return bad(c, code, message);
    json_span element;
    size_t cursor = 0, count = 0;
    text name;
    text_init(&name);
    text_append_char(out, '[');
    while (json_array_next(value, &cursor, &element)) {
        text_clear(&name);
        if (++count > max || !decode_string(element, &name) || !valid(name.data, name.length)) {
            text_free(&name);
            return bad(c, code, message);
        }
        if (count > 1) text_append_char(out, ',');
        json_append_string(out, name.data, name.length);
    }
    text_free(&name);
    text_append_char(out, ']');
    if (count == 0) return bad(c, code, message);
    if (text_failed(out)) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return false;
    }
    return true;
}

static bool read_input(api_request *r, json_span object, bool create, webhook_input *in) {
    connection *c = r->connection;
    json_span key, value;
    size_t cursor = 0;
    static const char topics_message[] =
        "topics must be a list of 1-64 topic patterns (e.g. [\"orders/**\"]).";
    static const char types_message[] =
        "types must be a list of 1-64 event types (letters, digits and '_.:-'), or null for all.";
    while (json_object_next(object, &cursor, &key, &value)) {
        if (json_string_equals(key, "url")) {
            text_clear(&in->url);
            if (!decode_string(value, &in->url))
                return bad(c, "invalid_url",
                           "url must be a string: the http(s) URL to deliver to.");
            in->has_url = true;
        } else if (json_string_equals(key, "topics")) {
            text_clear(&in->topics);
            if (!read_names(c, value, WEBHOOK_MAX_PATTERNS, topic_pattern_valid, "invalid_topic",
                            topics_message, &in->topics))
                return false;
            in->has_topics = true;
        } else if (json_string_equals(key, "types")) {
            text_clear(&in->types);
            if (json_kind_of(value) != JSON_KIND_NULL &&
                !read_names(c, value, WEBHOOK_MAX_TYPES, event_type_valid, "invalid_type",
                            types_message, &in->types))
                return false;
            in->has_types = true;
        } else if (json_string_equals(key, "description")) {
            text_clear(&in->description);
            if (json_kind_of(value) != JSON_KIND_NULL &&
                (!decode_string(value, &in->description) ||
                 in->description.length > WEBHOOK_MAX_DESCRIPTION))
                return bad(c, "invalid_parameter",
                           "description must be a string of at most 1024 bytes.");
            in->has_description = true;
        } else if (json_string_equals(key, "enabled")) {
            json_kind kind = json_kind_of(value);
            if (kind != JSON_KIND_TRUE && kind != JSON_KIND_FALSE)
                return bad(c, "invalid_parameter", "enabled must be true or false.");
            in->enabled = kind == JSON_KIND_TRUE;
            in->has_enabled = true;
        } else if (json_string_equals(key, "secret")) {
            if (!create)
                return bad(c, "invalid_parameter",
                           "The secret is changed with POST /v1/webhooks/{id}/rotate-secret.");
            text_clear(&in->secret);
            if (json_kind_of(value) == JSON_KIND_NULL) continue; /* generated */
            if (!decode_string(value, &in->secret))
                return bad(c, "invalid_parameter", "secret must be a string (whsec_…).");
            webhook_secret_status status =
                webhook_secret_parse_for_endpoint(in->secret.data, in->secret.length, NULL);
            if (status != WEBHOOK_SECRET_OK)
                return bad(c, "invalid_parameter", webhook_secret_status_message(status));
            in->has_secret = true;
        }
        /* Other members are ignored, as most JSON APIs do. */
    }
    if (create && !in->has_url)
        return bad(c, "invalid_url", "url is required: the http(s) URL to deliver to.");
    if (create && !in->has_topics) return bad(c, "invalid_topic", topics_message);
    if (in->has_url) {
        endpoint_url parsed;
        const char *problem = NULL;
        if (!endpoint_url_check(in->url.data, in->url.length,
                                r->server->config.webhook_allow_private, &parsed, &problem))
            return bad(c, "invalid_url", problem ? problem : "The URL is not acceptable.");
        in->url.length = parsed.sendable_length; /* a fragment is never sent: not kept either */
        in->url.data[in->url.length] = '\0';
    }
    return true;
}

/* false when out of memory. The fields point into in. */
static bool fields_from_input(webhook_input *in, store_webhook_fields *f) {
    memset(f, 0, sizeof *f);
    f->enabled = in->has_enabled ? in->enabled : -1;
    bool ok = true;
    if (in->has_url) ok = ok && (f->url = text_cstring(&in->url)) != NULL;
    if (in->has_topics) ok = ok && (f->topics = text_cstring(&in->topics)) != NULL;
    if (in->has_types) {
        f->set_types = true;
        if (in->types.length) ok = ok && (f->types = text_cstring(&in->types)) != NULL;
    }
    if (in->has_description) {
        f->description = in->description.length ? text_cstring(&in->description) : "";
        ok = ok && f->description != NULL;
    }
    if (in->has_secret) ok = ok && (f->secret = text_cstring(&in->secret)) != NULL;
    return ok;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static void handle_list(api_request *r) {
    store_webhook_list list;
    if (store_webhook_list_all(r->server->store, &list) != 0) {
        connection_respond_error(r->connection, 503, "unavailable", "The store could not be read.",
                                 NULL);
        return;
    }
    text body;
    text_init(&body);
    text_append_cstring(&body, "{\"webhooks\":[");
    for (size_t i = 0; i < list.count; i++) {
        if (i) text_append_char(&body, ',');
        append_webhook(&body, list.items[i], false);
    }
    text_append_cstring(&body, "]}");
    respond_json(r->connection, 200, &body, NULL);
    text_free(&body);
    store_webhook_list_free(&list);
}

static void handle_create(api_request *r) {
    connection *c = r->connection;
    text body;
    text_init(&body);
    webhook_input in;
    input_init(&in);
    if (read_object(r, &body, false) &&
        read_input(r, (json_span){body.data, body.length}, true, &in)) {
        char generated[WEBHOOK_GENERATED_SECRET_LENGTH + 1] = "";
        if (!in.has_secret && !webhook_secret_generate(generated)) {
            connection_respond_error(c, 503, "unavailable", "No randomness for a secret.", NULL);
        } else {
            store_webhook_fields fields;
            bool ok = fields_from_input(&in, &fields);
            if (!in.has_secret) fields.secret = generated;
            if (!ok) {
                connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
            } else {
                connection_hold(c);
                if (store_webhook_create(r->server->store, &fields, on_created, c) != 0)
                    not_queued(c);
                else
                    wait_for_store(c);
            }
        }
        memset(generated, 0, sizeof generated);
    }
    input_free(&in);
    text_free(&body);
}

static void handle_get(api_request *r, const char *id) {
    store_webhook *w = NULL;
    int found = store_webhook_get(r->server->store, id, &w);
    if (found == 0)
        respond_webhook(r->connection, 200, w, false);
    else if (found == 1)
        not_found(r->connection);
    else
        connection_respond_error(r->connection, 503, "unavailable", "The store could not be read.",
                                 NULL);
    store_webhook_free(w);
}

static void handle_patch(api_request *r, const char *id) {
    connection *c = r->connection;
    text body;
    text_init(&body);
    webhook_input in;
    input_init(&in);
    if (read_object(r, &body, false) &&
        read_input(r, (json_span){body.data, body.length}, false, &in)) {
        store_webhook_fields fields;
        if (!fields_from_input(&in, &fields)) {
            connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        } else {
            connection_hold(c);
            if (store_webhook_update(r->server->store, id, &fields, on_updated, c) != 0)
                not_queued(c);
            else
                wait_for_store(c);
        }
    }
    input_free(&in);
    text_free(&body);
}

static void handle_delete(api_request *r, const char *id) {
    connection *c = r->connection;
    connection_hold(c);
    if (store_webhook_delete(r->server->store, id, on_deleted, c) != 0)
        not_queued(c);
    else
        wait_for_store(c);
}

/* POST …/rotate-secret, optionally {"secret":"whsec_…"} to choose the new one. */
static void handle_rotate(api_request *r, const char *id) {
    connection *c = r->connection;
    text body;
    text_init(&body);
    text secret;
    text_init(&secret);
    char generated[WEBHOOK_GENERATED_SECRET_LENGTH + 1] = "";
    bool ok = read_object(r, &body, true);
    json_span key, value;
    size_t cursor = 0;
    while (ok && json_object_next((json_span){body.data, body.length}, &cursor, &key, &value)) {
        if (!json_string_equals(key, "secret") || json_kind_of(value) == JSON_KIND_NULL) continue;
        webhook_secret_status status = WEBHOOK_SECRET_NOT_BASE64;
        if (!decode_string(value, &secret) ||
            (status = webhook_secret_parse_for_endpoint(secret.data, secret.length, NULL)) !=
                WEBHOOK_SECRET_OK)
            ok = bad(c, "invalid_parameter", webhook_secret_status_message(status));
    }
    if (ok && !secret.length && !webhook_secret_generate(generated)) {
        connection_respond_error(c, 503, "unavailable", "No randomness for a secret.", NULL);
        ok = false;
    }
    if (ok) {
        connection_hold(c);
        if (store_webhook_rotate_secret(r->server->store, id,
                                        secret.length ? secret.data : generated,
                                        DELIVERER_SECRET_OVERLAP_MS, on_rotated, c) != 0)
            not_queued(c);
        else
            wait_for_store(c);
    }
    memset(generated, 0, sizeof generated);
    if (secret.data) memset(secret.data, 0, secret.capacity);
    text_free(&secret);
    text_free(&body);
}

/* The response body of an attempt as a JSON string, when it is text (cut at STORE_RESPONSE_MAX,
 * possibly inside a UTF-8 sequence); otherwise null. */
static void append_response(text *t, const store_attempt *a) {
    if (!a->response || !a->response_length) {
        text_append_cstring(t, "null");
        return;
    }
    size_t length = a->response_length, position = 0;
    if (!utf8_validate(a->response, length, &position)) {
        if (length == STORE_RESPONSE_MAX && position + 4 > length) {
            length = position;
        } else {
            text_append_cstring(t, "null");
            return;
        }
    }
    json_append_string(t, a->response, length);
}

static void append_delivery(text *t, const store_webhook *w, const store_delivery *d) {
    text_printf(t, "{\"id\":\"msg_%llu\",\"webhook_id\":", (unsigned long long)d->id);
    json_append_string(t, w->id, strlen(w->id));
    text_printf(t, ",\"event_id\":\"%llu\",\"status\":\"%s\",\"next_attempt\":",
                (unsigned long long)d->event_id, store_delivery_status_name(d->status));
    if (d->next_attempt_ms >= 0)
        append_time(t, d->next_attempt_ms);
    else
        text_append_cstring(t, "null");
    text_printf(t, ",\"attempt_count\":%u,\"created\":", d->attempt_count);
    append_time(t, d->created_ms);
    text_append_cstring(t, ",\"attempts\":[");
    for (size_t i = 0; i < d->attempts_listed; i++) {
        const store_attempt *a = &d->attempts[i];
        if (i) text_append_char(t, ',');
        text_append_cstring(t, "{\"time\":");
        append_time(t, a->time_ms);
        if (a->status_code > 0)
            text_printf(t, ",\"status_code\":%d", a->status_code);
        else
            text_append_cstring(t, ",\"status_code\":null");
        text_printf(t, ",\"latency_ms\":%lld,\"error\":", (long long)a->latency_ms);
        if (a->error)
            json_append_string(t, a->error, strlen(a->error));
        else
            text_append_cstring(t, "null");
        text_append_cstring(t, ",\"response\":");
        append_response(t, a);
        text_append_char(t, '}');
    }
    text_append_cstring(t, "]}");
}

static void handle_deliveries(api_request *r, const char *id) {
    connection *c = r->connection;
    store_delivery_status status;
    const char *status_text = url_query_get(&r->query, "status");
    if (status_text && !store_delivery_status_parse(status_text, &status)) {
        bad(c, "invalid_parameter",
            "status must be pending, succeeded, failed, dead or cancelled.");
        return;
    }
    size_t limit = DELIVERIES_DEFAULT_LIMIT;
    const char *limit_text = url_query_get(&r->query, "limit");
    if (limit_text) {
        uint64_t value;
        if (!parse_event_id(limit_text, &value) || value < 1 || value > DELIVERIES_MAX_LIMIT) {
            bad(c, "invalid_parameter", "limit must be 1-1000.");
            return;
        }
        limit = (size_t)value;
    }
    store_webhook *w = NULL;
    int found = store_webhook_get(r->server->store, id, &w);
    if (found != 0) {
        if (found == 1)
            not_found(c);
        else
            connection_respond_error(c, 503, "unavailable", "The store could not be read.", NULL);
        return;
    }
    store_delivery_list list;
    if (store_delivery_list_recent(r->server->store, w->key, status_text ? &status : NULL, limit,
                                   &list) != 0) {
        store_webhook_free(w);
        connection_respond_error(c, 503, "unavailable", "The store could not be read.", NULL);
        return;
    }
    text body;
    text_init(&body);
    text_append_cstring(&body, "{\"deliveries\":[");
    for (size_t i = 0; i < list.count; i++) {
        if (i) text_append_char(&body, ',');
        append_delivery(&body, w, &list.items[i]);
    }
    text_append_cstring(&body, "]}");
    respond_json(c, 200, &body, NULL);
    text_free(&body);
    store_delivery_list_free(&list);
    store_webhook_free(w);
}

static void handle_retry(api_request *r, const char *id, const char *delivery) {
    connection *c = r->connection;
    uint64_t delivery_id = 0;
    if (strncmp(delivery, "msg_", 4) == 0) delivery += 4;
    /* An id that cannot exist is simply not found, as an unknown one is. */
    if (!parse_event_id(delivery, &delivery_id) || delivery_id == 0 || delivery_id > INT64_MAX)
        delivery_id = 0;
    connection_hold(c);
    if (store_webhook_retry(r->server->store, id, delivery_id, on_retried, c) != 0)
        not_queued(c);
    else
        wait_for_store(c);
}

/* POST …/replay {"since":"ID"} (a decimal id as a string or a whole number; absent: 0). */
static void handle_replay(api_request *r, const char *id) {
    connection *c = r->connection;
    text body;
    text_init(&body);
    if (!read_object(r, &body, true)) {
        text_free(&body);
        return;
    }
    uint64_t since = 0;
    json_span key, value;
    size_t cursor = 0;
    bool ok = true;
    text since_text;
    text_init(&since_text);
    while (ok && json_object_next((json_span){body.data, body.length}, &cursor, &key, &value)) {
        if (!json_string_equals(key, "since")) continue;
        json_kind kind = json_kind_of(value);
        text_clear(&since_text);
        if (kind == JSON_KIND_STRING)
            ok = decode_string(value, &since_text);
        else if (kind == JSON_KIND_NUMBER)
            text_append(&since_text, value.data, value.length);
        else
            ok = false;
        ok = ok && text_cstring(&since_text) && parse_event_id(since_text.data, &since);
        if (!ok)
            bad(c, "invalid_id", "since must be an event id: a decimal number such as \"42\".");
    }
    text_free(&since_text);
    text_free(&body);
    if (!ok) return;
    connection_hold(c);
    if (store_webhook_replay(r->server->store, id, since, on_replayed, c) != 0)
        not_queued(c);
    else
        wait_for_store(c);
}

/* ---- routing -------------------------------------------------------------------------------- */

#define MAX_SEGMENTS 4
#define MAX_SEGMENT 64

/* Splits "/a/b/c" into segments; false when there are too many, or one is empty or too long. */
static bool split_path(const char *rest, size_t length,
                       char segments[MAX_SEGMENTS][MAX_SEGMENT + 1], size_t *count) {
    *count = 0;
    size_t i = 0;
    while (i < length) {
        if (rest[i] != '/' || *count == MAX_SEGMENTS) return false;
        size_t start = ++i;
        while (i < length && rest[i] != '/')
            i++;
        size_t n = i - start;
        if (n == 0 || n > MAX_SEGMENT) return false;
        memcpy(segments[*count], rest + start, n);
        segments[(*count)++][n] = '\0';
    }
    return true;
}

static bool method_is(api_request *r, const char *method) {
    return strcmp(r->http->method, method) == 0;
}

void api_handle_webhooks(api_request *r, const char *rest, size_t rest_length) {
    if (!api_allowed(r, access_manage(r->server->access, &r->identity))) return;
    connection *c = r->connection;
    char segments[MAX_SEGMENTS][MAX_SEGMENT + 1];
    size_t count;
    if (!split_path(rest, rest_length, segments, &count)) {
        connection_respond_error(c, 404, "not_found", "No such endpoint.", NULL);
        return;
    }
    const char *id = count > 0 ? segments[0] : NULL;
    if (count == 0) {
        if (!method_is(r, "GET") && !method_is(r, "POST")) {
            method_not_allowed(c, "GET, POST");
            return;
        }
        if (!store_usable(r)) return;
        if (method_is(r, "GET"))
            handle_list(r);
        else
            handle_create(r);
    } else if (count == 1) {
        if (!method_is(r, "GET") && !method_is(r, "PATCH") && !method_is(r, "DELETE")) {
            method_not_allowed(c, "GET, PATCH, DELETE");
            return;
        }
        if (!store_usable(r)) return;
        if (method_is(r, "GET"))
            handle_get(r, id);
        else if (method_is(r, "PATCH"))
            handle_patch(r, id);
        else
            handle_delete(r, id);
    } else if (count == 2 && strcmp(segments[1], "rotate-secret") == 0) {
        if (!method_is(r, "POST"))
            method_not_allowed(c, "POST");
        else if (store_usable(r))
            handle_rotate(r, id);
    } else if (count == 2 && strcmp(segments[1], "replay") == 0) {
        if (!method_is(r, "POST"))
            method_not_allowed(c, "POST");
        else if (store_usable(r))
            handle_replay(r, id);
    } else if (count == 2 && strcmp(segments[1], "deliveries") == 0) {
        if (!method_is(r, "GET"))
            method_not_allowed(c, "GET");
        else if (store_usable(r))
            handle_deliveries(r, id);
    } else if (count == 4 && strcmp(segments[1], "deliveries") == 0 &&
               strcmp(segments[3], "retry") == 0) {
        if (!method_is(r, "POST"))
            method_not_allowed(c, "POST");
        else if (store_usable(r))
            handle_retry(r, id, segments[2]);
    } else {
        connection_respond_error(c, 404, "not_found", "No such endpoint.", NULL);
    }
}

/* Webhooks in (SPEC §8): source management (admin) and POST /v1/hooks/{name}, which verifies a
 * provider's signature, deduplicates by the provider's id and stores the body as an event in
 * the source's topic — so open SSE and WebSocket subscribers see it at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/request.h"
#include "core/json.h"
#include "hooks/signature.h"
#include "hooks/sources.h"
#include "hub/topic.h"

#define TOLERANCE_MAX_SECONDS 86400
#define DEDUPLICATION_TTL_MS (72LL * 3600 * 1000)

static void append_source(text *t, const hook_source *s) {
    char created[25];
    event_format_time(s->created_ms, created);
    text_append_cstring(t, "{\"name\":");
    json_append_string(t, s->name, strlen(s->name));
    text_printf(t, ",\"scheme\":\"%s\",\"topic\":", hook_scheme_name(s->scheme));
    json_append_string(t, s->topic, strlen(s->topic));
    text_printf(t, ",\"tolerance\":%lld,\"created\":\"%s\"}", (long long)s->tolerance_seconds,
                created);
}

static void respond_text(connection *c, int status, text *t) {
    if (text_failed(t))
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
    else
        connection_respond(c, status, "application/json", t->data, t->length, NULL);
    text_free(t);
}

typedef struct source_request {
    connection *connection;
    hook_source source; /* for the 201 body */
    char *secret;
    char *topic;
} source_request;

static void on_source_saved(void *context, source_outcome outcome, const char *error_message) {
    source_request *q = context;
    connection *c = q->connection;
    if (!connection_is_closing(c)) {
        if (outcome == SOURCE_SAVED) {
            text t;
            text_init(&t);
            append_source(&t, &q->source);
            respond_text(c, 201, &t);
        } else if (outcome == SOURCE_NAME_TAKEN) {
            connection_respond_error(c, 409, "invalid_parameter",
                                     "A source with this name already exists.", NULL);
        } else {
            connection_respond_error(
                c, 503, "unavailable",
                error_message ? error_message : "The source could not be saved.", NULL);
        }
    }
    free(q->secret);
    free(q->topic);
    free(q);
    connection_release(c);
}

static void on_source_removed(void *context, source_outcome outcome, const char *error_message) {
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (outcome == SOURCE_SAVED)
            connection_respond(c, 204, NULL, NULL, 0, NULL);
        else
            connection_respond_error(
                c, 503, "unavailable",
                error_message ? error_message : "The source could not be deleted.", NULL);
    }
    connection_release(c);
}

static const connection_handler waiting_handler = {0};

/* Decodes a string member into out, replacing what a repeated member put there (the last one
 * counts). */
static bool string_member(json_span value, text *out) {
    text_clear(out);
    return json_kind_of(value) == JSON_KIND_STRING && json_string_decode(value, out) &&
           text_cstring(out) && strlen(out->data) == out->length;
}

static void create_source(api_request *r, source_registry *registry) {
    connection *c = r->connection;
    text body, name, scheme, secret, topic;
    text_init(&body);
    text_init(&name);
    text_init(&scheme);
    text_init(&secret);
    text_init(&topic);
    json_error error = {0};
    int64_t tolerance = HOOK_DEFAULT_TOLERANCE_SECONDS;
    const char *problem = NULL, *code = "invalid_parameter";
    hook_scheme parsed_scheme = HOOK_SCHEME_STANDARD;
    if (!json_minify(r->http->body, r->http->body_length, &body, &error)) {
        char message[200];
        snprintf(message, sizeof message, "The body is not valid JSON: %s", error.message);
        connection_respond_error_at(c, 400, "invalid_json", message, error.position);
        goto done;
    }
    json_span root = {body.data, body.length}, key, value;
    size_t cursor = 0;
    bool has_name = false, has_scheme = false, has_secret = false, has_topic = false;
    if (json_kind_of(root) != JSON_KIND_OBJECT) problem = "The body must be a JSON object.";
    while (!problem && json_object_next(root, &cursor, &key, &value)) {
        if (json_string_equals(key, "name"))
            has_name = string_member(value, &name);
        else if (json_string_equals(key, "scheme"))
            has_scheme = string_member(value, &scheme);
        else if (json_string_equals(key, "secret"))
            has_secret = string_member(value, &secret);
        else if (json_string_equals(key, "topic"))
            has_topic = string_member(value, &topic);
        else if (json_string_equals(key, "tolerance")) {
            char digits[16] = {0};
            if (json_kind_of(value) != JSON_KIND_NUMBER || value.length >= sizeof digits) {
                problem = "tolerance must be a whole number of seconds from 1 to 86400.";
                break;
            }
            memcpy(digits, value.data, value.length);
            char *end;
            long long seconds = strtoll(digits, &end, 10);
            if (*end || seconds < 1 || seconds > TOLERANCE_MAX_SECONDS) {
                problem = "tolerance must be a whole number of seconds from 1 to 86400.";
                break;
            }
            tolerance = seconds;
        }
    }
    if (!problem && (!has_name || !source_name_valid(name.data, name.length)))
        problem = "name must be 1-64 characters of a-z, 0-9, '_' and '-'.";
    if (!problem && (!has_scheme || !hook_scheme_parse(scheme.data, &parsed_scheme)))
        problem = "scheme must be standard, stripe or github.";
    if (!problem && (!has_secret || secret.length == 0 || secret.length > 1024))
        problem = "secret must be a non-empty string (at most 1024 bytes).";
    if (!problem && parsed_scheme == HOOK_SCHEME_STANDARD) {
        webhook_key key_bytes;
        webhook_secret_status status = webhook_secret_parse(secret.data, secret.length, &key_bytes);
        if (status != WEBHOOK_SECRET_OK) problem = webhook_secret_status_message(status);
    }
    if (!problem && (!has_topic || !topic_name_valid(topic.data, topic.length))) {
        problem = "topic must be a topic name (1-200 bytes of letters, digits, '_.:@-' and '/').";
        code = "invalid_topic";
    }
    if (problem) {
        connection_respond_error(c, 400, code, problem, NULL);
        goto done;
    }
    if (source_registry_find(registry, name.data)) {
        connection_respond_error(c, 409, "invalid_parameter",
                                 "A source with this name already exists.", NULL);
        goto done;
    }
    source_request *q = calloc(1, sizeof *q);
    if (!q) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        goto done;
    }
    q->connection = c;
    snprintf(q->source.name, sizeof q->source.name, "%s", name.data);
    q->source.scheme = parsed_scheme;
    q->source.secret = q->secret = secret.data;
    q->source.topic = q->topic = topic.data;
    q->source.tolerance_seconds = tolerance;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    q->source.created_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    text_init(&secret); /* ownership moved into q */
    text_init(&topic);
    connection_hold(c);
    if (!source_registry_add(registry, &q->source, on_source_saved, q)) {
        connection_release(c);
        free(q->secret);
        free(q->topic);
        free(q);
        connection_respond_error(c, 503, "unavailable", "The source could not be saved.", NULL);
        goto done;
    }
    connection_begin_handler(c, CONNECTION_WAITING, &waiting_handler, NULL);
done:
    text_free(&body);
    text_free(&name);
    text_free(&scheme);
    text_free(&secret);
    text_free(&topic);
}

void api_handle_sources(api_request *r, const char *rest, size_t rest_length) {
    if (!api_allowed(r, access_manage(r->server->access, &r->identity))) return;
    connection *c = r->connection;
    source_registry *registry = r->server->sources;
    if (!registry) {
        connection_respond_error(c, 503, "unavailable", "Sources are not available.", NULL);
        return;
    }
    const char *method = r->http->method;
    if (rest_length == 0) {
        if (strcmp(method, "POST") == 0) {
            create_source(r, registry);
        } else if (strcmp(method, "GET") == 0) {
            text t;
            text_init(&t);
            text_append_cstring(&t, "{\"sources\":[");
            for (const hook_source *s = source_registry_first(registry); s; s = s->next) {
                if (s != source_registry_first(registry)) text_append_char(&t, ',');
                append_source(&t, s);
            }
            text_append_cstring(&t, "]}");
            respond_text(c, 200, &t);
        } else {
            connection_respond_error(c, 405, "method_not_allowed",
                                     "This path allows only GET, POST.", "Allow: GET, POST\r\n");
        }
        return;
    }
    /* /v1/sources/{name} */
    char name[SOURCE_NAME_MAX + 1];
    if (rest[0] != '/' || rest_length - 1 > SOURCE_NAME_MAX ||
        !source_name_valid(rest + 1, rest_length - 1)) {
        connection_respond_error(c, 404, "not_found", "No such source.", NULL);
        return;
    }
    memcpy(name, rest + 1, rest_length - 1);
    name[rest_length - 1] = '\0';
    const hook_source *s = source_registry_find(registry, name);
    if (strcmp(method, "GET") == 0 && s) {
        text t;
        text_init(&t);
        append_source(&t, s);
        respond_text(c, 200, &t);
    } else if (strcmp(method, "DELETE") == 0 && s) {
        connection_hold(c);
        if (!source_registry_remove(registry, name, on_source_removed, c)) {
            connection_release(c);
            connection_respond_error(c, 503, "unavailable", "The source could not be deleted.",
                                     NULL);
            return;
        }
        connection_begin_handler(c, CONNECTION_WAITING, &waiting_handler, NULL);
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
        connection_respond_error(c, 405, "method_not_allowed", "This path allows only GET, DELETE.",
                                 "Allow: GET, DELETE\r\n");
    } else {
        connection_respond_error(c, 404, "not_found", "No such source.", NULL);
    }
}

/* ---- POST /v1/hooks/{name} ---- */

static const char *lookup_header(const void *context, const char *lowercase_name) {
    return http_request_header(context, lowercase_name);
}

/* The body's top-level string member, decoded, when the body is a JSON object. */
static bool body_string_member(const text *minified, const char *member, text *out) {
    if (!minified->data) return false;
    json_span root = {minified->data, minified->length}, key, value;
    size_t cursor = 0;
    if (json_kind_of(root) != JSON_KIND_OBJECT) return false;
    while (json_object_next(root, &cursor, &key, &value))
        if (json_string_equals(key, member)) return string_member(value, out);
    return false;
}

static void on_hook_stored(void *context, const store_publish_result *result) {
    connection *c = context;
    if (!connection_is_closing(c)) {
        if (!result->ok) {
            connection_respond_error(
                c, 503, "unavailable",
                result->error_message ? result->error_message : "The store failed.", NULL);
        } else if (result->replayed) {
            static const char duplicate[] = "{\"received\":true,\"duplicate\":true}";
            connection_respond(c, 200, "application/json", duplicate, sizeof duplicate - 1, NULL);
        } else {
            c->server->events_published += result->event_count;
            char body[80];
            int length = snprintf(body, sizeof body, "{\"received\":true,\"id\":\"%llu\"}",
                                  (unsigned long long)result->events[0]->id);
            connection_respond(c, 200, "application/json", body, (size_t)length, NULL);
        }
    }
    connection_release(c);
}

void api_handle_hook(api_request *r, const char *name_in_path, size_t name_length) {
    connection *c = r->connection;
    const http_request *h = r->http;
    char name[SOURCE_NAME_MAX + 1];
    source_registry *registry = r->server->sources;
    const hook_source *source = NULL;
    if (registry && name_length <= SOURCE_NAME_MAX &&
        source_name_valid(name_in_path, name_length)) {
        memcpy(name, name_in_path, name_length);
        name[name_length] = '\0';
        source = source_registry_find(registry, name);
    }
    if (!source) {
        connection_respond_error(c, 404, "not_found", "No such webhook source.", NULL);
        return;
    }
    if (strcmp(h->method, "POST") != 0) {
        connection_respond_error(c, 405, "method_not_allowed", "This path allows only POST.",
                                 "Allow: POST\r\n");
        return;
    }
    int64_t now = (int64_t)time(NULL);
    hook_verdict verdict = hook_verify(source->scheme, source->secret, lookup_header, h, h->body,
                                       h->body_length, now, source->tolerance_seconds);
    if (verdict != HOOK_VERDICT_OK) {
        const char *code = hook_verdict_error_code(verdict);
        connection_respond_error(c, 401, code ? code : "invalid_signature",
                                 hook_verdict_message(source->scheme, verdict), NULL);
        return;
    }
    /* The body: JSON when it parses, else UTF-8 text. */
    text minified, type, dedup_id, key;
    text_init(&minified);
    text_init(&type);
    text_init(&dedup_id);
    text_init(&key);
    json_error error = {0};
    bool is_json = json_minify(h->body, h->body_length, &minified, &error);
    size_t bad_byte = 0;
    if (!is_json) {
        text_free(&minified);
        if (!utf8_validate(h->body, h->body_length, &bad_byte)) {
            connection_respond_error_at(c, 400, "invalid_utf8",
                                        "The body is neither JSON nor UTF-8 text.", bad_byte);
            goto done;
        }
    }
    switch (source->scheme) {
    case HOOK_SCHEME_STANDARD: {
        const char *id = http_request_header(h, "webhook-id");
        text_append_cstring(&dedup_id, id ? id : "");
        if (!body_string_member(&minified, "type", &type)) text_clear(&type);
        break;
    }
    case HOOK_SCHEME_STRIPE:
        if (!body_string_member(&minified, "id", &dedup_id)) text_clear(&dedup_id);
        if (!body_string_member(&minified, "type", &type)) text_clear(&type);
        break;
    case HOOK_SCHEME_GITHUB: {
        const char *delivery = http_request_header(h, "x-github-delivery");
        const char *event_name = http_request_header(h, "x-github-event");
        text_append_cstring(&dedup_id, delivery ? delivery : "");
        text_append_cstring(&type, event_name ? event_name : "");
        break;
    }
    }
    /* A provider's type that is not a valid herald type is carried as "webhook". */
    if (!text_cstring(&type) || !event_type_valid(type.data, type.length)) {
        text_clear(&type);
        text_append_cstring(&type, "webhook");
    }
    /* Deduplication rides on the store's idempotency records, namespaced by source, so the
     * check and the event are one transaction. */
    if (dedup_id.length > 0) {
        char prefix[SOURCE_NAME_MAX + 4];
        snprintf(prefix, sizeof prefix, "h:%s:", source->name);
        idempotency_store_key(&key, prefix, dedup_id.data, dedup_id.length);
    }
    if (!text_cstring(&type) || text_failed(&key)) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        goto done;
    }
    store_item item = {
        .topic = source->topic,
        .topic_length = strlen(source->topic),
        .type = type.data,
        .data_is_json = is_json,
        .data = is_json ? minified.data : (h->body ? h->body : ""),
        .data_length = is_json ? minified.length : h->body_length,
    };
    if (!r->server->store || r->server->shutting_down) {
        connection_respond_error(c, 503, "unavailable", "The server is shutting down.", NULL);
        goto done;
    }
    connection_hold(c);
    if (store_publish_keyed(r->server->store, &item, 1, key.length ? key.data : NULL, key.length,
                            DEDUPLICATION_TTL_MS, false, on_hook_stored, c) != 0) {
        connection_release(c);
        connection_respond_error(c, 503, "unavailable", "The store is not accepting events.", NULL);
        goto done;
    }
    connection_begin_handler(c, CONNECTION_WAITING, &waiting_handler, NULL);
done:
    text_free(&minified);
    text_free(&type);
    text_free(&dedup_id);
    text_free(&key);
}

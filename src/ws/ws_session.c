/* WebSocket sessions (SPEC §6). Every subscription subscribes to the hub first and then replays
 * history from the store, switching to live delivery only once a read finds nothing newer —
 * the same no-gap rule as SSE. Event frames are encoded once per event and shared; with
 * permessage-deflate the compressed frame is shared too (no context takeover). */
#include "ws/ws_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "hub/topic.h"
#include "ws/ws.h"

#define WS_REPLAY_PAGE 256
#define WS_MAX_SUBSCRIPTIONS 100
#define WS_CLOSE_TIMEOUT_MS 5000
#define WS_IDEMPOTENCY_KEY_MAX 200

typedef struct ws_session ws_session;

typedef struct ws_subscription {
    struct ws_subscription *next;
    ws_session *session;
    char *pattern;
    hub_subscription *hub;
    uint64_t last_sent_id;
    bool replaying;
} ws_subscription;

struct ws_session {
    server *server;
    connection *connection;
    ws_parser parser;
    bool raw;
    bool deflate;
    bool close_sent;
    bool close_received;
    uint64_t
        last_live_id; /* newest event sent live: one event matching two subscriptions goes once */
    uint64_t last_heard_ms;
    ws_subscription *subscriptions;
    size_t subscription_count;
    access_identity identity; /* from the handshake; every subscribe and publish is checked */
    /* Ids sent live while some subscription replays, so its replay skips them (ascending). */
    uint64_t *live_sent;
    size_t live_sent_count, live_sent_capacity;
};

static ws_deflater shared_deflater;
static bool shared_deflater_ready;

static ws_deflater *session_deflater(ws_session *s) {
    if (!s->deflate) return NULL;
    if (!shared_deflater_ready) {
        ws_deflater_init(&shared_deflater, 15, true);
        shared_deflater_ready = true;
    }
    return &shared_deflater;
}

void ws_session_cleanup(void) {
    if (shared_deflater_ready) ws_deflater_free(&shared_deflater);
    shared_deflater_ready = false;
}

/* ---- sending ---- */

static void send_text(ws_session *s, const char *data, size_t length) {
    if (s->close_sent) return;
    text frame;
    text_init(&frame);
    if (ws_encode_message(&frame, WS_OPCODE_TEXT, data, length, session_deflater(s)) &&
        !text_failed(&frame))
        connection_write_bytes(s->connection, frame.data, frame.length);
    else
        connection_close(s->connection);
    text_free(&frame);
}

static void send_control(ws_session *s, ws_opcode opcode, const char *payload, size_t length) {
    if (s->close_sent) return;
    text frame;
    text_init(&frame);
    if (ws_encode_frame(&frame, opcode, payload, length) && !text_failed(&frame))
        connection_write_bytes(s->connection, frame.data, frame.length);
    text_free(&frame);
}

/* Sends a close frame (code 0: empty payload) and stops sending; the socket closes when the
 * client answers, or after a timeout. */
static void send_close(ws_session *s, unsigned code, const char *reason) {
    if (s->close_sent) return;
    text frame;
    text_init(&frame);
    ws_encode_close(&frame, code, reason, reason ? strlen(reason) : 0);
    if (!text_failed(&frame)) connection_write_final(s->connection, frame.data, frame.length);
    text_free(&frame);
    s->close_sent = true;
    /* Whatever happens, the socket is gone after the close timeout: a client that neither
     * reads nor answers cannot hold it. */
    connection_set_handler_timer(s->connection, WS_CLOSE_TIMEOUT_MS);
    if (s->close_received || code == WS_CLOSE_PROTOCOL_ERROR || code == WS_CLOSE_INVALID_PAYLOAD ||
        code == WS_CLOSE_MESSAGE_TOO_BIG || code == WS_CLOSE_UNSUPPORTED_DATA ||
        code == WS_CLOSE_POLICY_VIOLATION)
        connection_close_after_flush(s->connection); /* failing the connection: no need to wait */
}

static buffer *event_frame(ws_session *s, event *e) {
    ws_deflater *deflater = session_deflater(s);
    event_encoding_kind kind =
        s->raw ? (deflater ? EVENT_ENCODING_WS_RAW_DEFLATED : EVENT_ENCODING_WS_RAW)
               : (deflater ? EVENT_ENCODING_WS_JSON_DEFLATED : EVENT_ENCODING_WS_JSON);
    if (e->encodings[kind]) return e->encodings[kind];
    text payload, frame;
    text_init(&payload);
    text_init(&frame);
    if (s->raw) {
        text_append(&payload, e->data, e->data_length);
    } else {
        buffer *json = event_json(e);
        if (json) {
            text_append_cstring(&payload, "{\"op\":\"event\",");
            text_append(&payload, json->data + 1, json->length - 1);
        } else {
            payload.failed = true;
        }
    }
    if (!text_failed(&payload) &&
        ws_encode_message(&frame, WS_OPCODE_TEXT, payload.data ? payload.data : "", payload.length,
                          deflater))
        e->encodings[kind] = text_to_buffer(&frame);
    text_free(&payload);
    text_free(&frame);
    return e->encodings[kind];
}

static bool sent_live(const ws_session *s, uint64_t id) {
    size_t low = 0, high = s->live_sent_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (s->live_sent[middle] == id) return true;
        if (s->live_sent[middle] < id)
            low = middle + 1;
        else
            high = middle;
    }
    return false;
}

static bool any_replaying(const ws_session *s) {
    for (const ws_subscription *sub = s->subscriptions; sub; sub = sub->next)
        if (sub->replaying) return true;
    return false;
}

static void remember_live(ws_session *s, uint64_t id) {
    if (!any_replaying(s)) return;
    if (s->live_sent_count == s->live_sent_capacity) {
        size_t capacity = s->live_sent_capacity ? s->live_sent_capacity * 2 : 64;
        uint64_t *ids = realloc(s->live_sent, capacity * sizeof *ids);
        if (!ids) return; /* at worst a replay repeats an event */
        s->live_sent = ids;
        s->live_sent_capacity = capacity;
    }
    s->live_sent[s->live_sent_count++] = id;
}

static void forget_live_when_replays_end(ws_session *s) {
    if (any_replaying(s)) return;
    free(s->live_sent);
    s->live_sent = NULL;
    s->live_sent_count = s->live_sent_capacity = 0;
}

static void send_event(ws_session *s, ws_subscription *sub, event *e) {
    if (e->id <= sub->last_sent_id) return;
    sub->last_sent_id = e->id;
    if (sub->replaying && sent_live(s, e->id)) return; /* another subscription sent it live */
    buffer *frame = event_frame(s, e);
    if (!frame) {
        connection_close(s->connection);
        return;
    }
    if (!s->close_sent) connection_write(s->connection, frame);
}

/* {"op":OP[,"ref":REF]...} — ref is echoed as the client wrote it (any JSON value). */
static void begin_reply(text *t, const char *op, json_span ref) {
    text_append_cstring(t, "{\"op\":\"");
    text_append_cstring(t, op);
    text_append_char(t, '"');
    if (ref.data) {
        text_append_cstring(t, ",\"ref\":");
        text_append(t, ref.data, ref.length);
    }
}

static void finish_reply(ws_session *s, text *t) {
    text_append_char(t, '}');
    if (text_failed(t))
        connection_close(s->connection);
    else
        send_text(s, t->data, t->length);
    text_free(t);
}

static void send_error(ws_session *s, json_span ref, const char *code, const char *message) {
    text t;
    text_init(&t);
    begin_reply(&t, "error", ref);
    text_append_cstring(&t, ",\"code\":");
    json_append_string(&t, code, strlen(code));
    text_append_cstring(&t, ",\"message\":");
    json_append_string(&t, message, strlen(message));
    finish_reply(s, &t);
}

/* ---- subscriptions ---- */

static void send_reset(ws_session *s, ws_subscription *sub, const char *reason, const char *field,
                       uint64_t id) {
    text t;
    text_init(&t);
    text_append_cstring(&t, "{\"op\":\"reset\",\"topic\":");
    json_append_string(&t, sub->pattern, strlen(sub->pattern));
    text_printf(&t, ",\"reason\":\"%s\",\"%s\":\"%llu\"", reason, field, (unsigned long long)id);
    finish_reply(s, &t);
}

/* Pages of history for each replaying subscription until caught up, or until the write queue
 * is half full (the drained hook continues). */
static void replay(ws_session *s) {
    connection *c = s->connection;
    size_t pause_at = s->server->config.send_buffer_bytes / 2;
    for (ws_subscription *sub = s->subscriptions; sub; sub = sub->next) {
        while (sub->replaying && !connection_is_closing(c) && !s->close_sent) {
            if (c->queued_bytes >= pause_at) return;
            store *st = s->server->store;
            char *patterns[1] = {sub->pattern};
            topic_selection selection = {patterns, 1};
            resolved_topics topics;
            event_list page = {0};
            if (!st || !topic_selection_resolve(&selection, st, &topics)) {
                send_close(s, WS_CLOSE_INTERNAL_ERROR, "store unavailable");
                return;
            }
            int rc = topics.count ? store_read(st, topics.names, topics.count, sub->last_sent_id,
                                               false, WS_REPLAY_PAGE, &page)
                                  : 0;
            uint64_t trimmed = resolved_trimmed_through(&topics, st);
            resolved_topics_free(&topics);
            if (rc != 0) {
                event_list_free(&page);
                send_close(s, WS_CLOSE_INTERNAL_ERROR, "store unavailable");
                return;
            }
            if (trimmed > sub->last_sent_id) {
                if (sub->last_sent_id != 0)
                    send_reset(s, sub, "history_truncated", "oldest",
                               page.count ? page.events[0]->id : trimmed + 1);
                sub->last_sent_id = trimmed;
            }
            for (size_t i = 0; i < page.count; i++)
                send_event(s, sub, page.events[i]);
            if (page.count < WS_REPLAY_PAGE) {
                sub->replaying = false;
                forget_live_when_replays_end(s);
            }
            event_list_free(&page);
        }
    }
}

static void on_hub_event(void *subscriber, event *e) {
    ws_subscription *sub = subscriber;
    ws_session *s = sub->session;
    if (sub->replaying || e->id <= sub->last_sent_id) return; /* a replay reads it from the store */
    if (e->id <= s->last_live_id) {
        sub->last_sent_id = e->id; /* already sent through another subscription */
        return;
    }
    s->last_live_id = e->id;
    remember_live(s, e->id);
    send_event(s, sub, e);
}

static ws_subscription *find_subscription(ws_session *s, const char *pattern,
                                          ws_subscription ***link) {
    for (ws_subscription **p = &s->subscriptions; *p; p = &(*p)->next)
        if (strcmp((*p)->pattern, pattern) == 0) {
            if (link) *link = p;
            return *p;
        }
    return NULL;
}

static void subscription_free(ws_session *s, ws_subscription *sub) {
    hub_unsubscribe(s->server->hub, sub->hub);
    free(sub->pattern);
    free(sub);
}

/* Subscribes live first, then (with since) replays. Returns NULL with *error set. */
static ws_subscription *subscribe(ws_session *s, const char *pattern, bool has_since,
                                  uint64_t since, const char **error_code,
                                  const char **error_message) {
    if (find_subscription(s, pattern, NULL)) {
        *error_code = "invalid_parameter";
        *error_message = "This connection is already subscribed to that topic.";
        return NULL;
    }
    if (s->subscription_count >= WS_MAX_SUBSCRIPTIONS) {
        *error_code = "invalid_parameter";
        *error_message = "A connection may hold at most 100 subscriptions.";
        return NULL;
    }
    ws_subscription *sub = calloc(1, sizeof *sub);
    if (sub) sub->pattern = strdup(pattern);
    if (sub && sub->pattern)
        sub->hub = hub_subscribe(s->server->hub, pattern, strlen(pattern), on_hub_event, sub);
    if (!sub || !sub->pattern || !sub->hub) {
        if (sub) free(sub->pattern);
        free(sub);
        *error_code = "unavailable";
        *error_message = "Out of memory.";
        return NULL;
    }
    sub->session = s;
    sub->next = s->subscriptions;
    s->subscriptions = sub;
    s->subscription_count++;
    uint64_t head = store_head_id(s->server->store);
    sub->last_sent_id = head;
    if (has_since && since <= head) {
        sub->last_sent_id = since;
        sub->replaying = true;
    }
    return sub;
}

/* ---- herald.v1 messages ---- */

typedef struct ws_request {
    json_span op, ref, topic, since, type, data, idempotency_key;
} ws_request;

static bool span_to_string(json_span span, text *out) {
    return span.data && json_kind_of(span) == JSON_KIND_STRING && json_string_decode(span, out) &&
           text_cstring(out) && strlen(out->data) == out->length;
}

static void handle_subscribe(ws_session *s, const ws_request *q) {
    text topic, since_text;
    text_init(&topic);
    text_init(&since_text);
    uint64_t since = 0;
    bool has_since = q->since.data && json_kind_of(q->since) != JSON_KIND_NULL;
    if (!span_to_string(q->topic, &topic) || !topic_pattern_valid(topic.data, topic.length)) {
        send_error(s, q->ref, "invalid_topic", "topic must be a topic name or pattern.");
    } else if (has_since &&
               !(span_to_string(q->since, &since_text) &&
                 parse_event_id(since_text.data, &since)) &&
               !(json_kind_of(q->since) == JSON_KIND_NUMBER && q->since.length <= 20 &&
                 (text_append(&since_text, q->since.data, q->since.length),
                  text_cstring(&since_text)) &&
                 parse_event_id(since_text.data, &since))) {
        send_error(s, q->ref, "invalid_id", "since must be an event id (a decimal string).");
    } else {
        const char *code = NULL, *message = NULL;
        access_decision decision = access_subscribe(s->server->access, &s->identity, topic.data);
        ws_subscription *sub = NULL;
        if (decision != ACCESS_ALLOWED) {
            code = decision == ACCESS_FORBIDDEN ? "forbidden" : "unauthorized";
            message = access_refusal_message(&s->identity, decision);
        } else {
            sub = subscribe(s, topic.data, has_since, since, &code, &message);
        }
        if (!sub) {
            send_error(s, q->ref, code, message);
        } else {
            uint64_t head = store_head_id(s->server->store);
            text t;
            text_init(&t);
            begin_reply(&t, "subscribed", q->ref);
            text_append_cstring(&t, ",\"topic\":");
            json_append_string(&t, topic.data, topic.length);
            text_printf(&t, ",\"next\":\"%llu\"",
                        (unsigned long long)(has_since && since <= head ? since : head));
            finish_reply(s, &t);
            if (has_since && since > head) send_reset(s, sub, "unknown_id", "head", head);
            if (sub->replaying) replay(s);
        }
    }
    text_free(&topic);
    text_free(&since_text);
}

static void handle_unsubscribe(ws_session *s, const ws_request *q) {
    text topic;
    text_init(&topic);
    ws_subscription **link = NULL;
    ws_subscription *sub = NULL;
    if (!span_to_string(q->topic, &topic)) {
        send_error(s, q->ref, "invalid_topic", "topic must be the subscribed topic or pattern.");
    } else if (!(sub = find_subscription(s, topic.data, &link))) {
        send_error(s, q->ref, "not_found", "This connection is not subscribed to that topic.");
    } else {
        *link = sub->next;
        s->subscription_count--;
        subscription_free(s, sub);
        forget_live_when_replays_end(s);
        text t;
        text_init(&t);
        begin_reply(&t, "unsubscribed", q->ref);
        text_append_cstring(&t, ",\"topic\":");
        json_append_string(&t, topic.data, topic.length);
        finish_reply(s, &t);
    }
    text_free(&topic);
}

typedef struct publish_request {
    connection *connection;
    char *ref; /* raw JSON of the ref, or NULL */
} publish_request;

static uint64_t receipt_id(const buffer *receipt) {
    json_span root = {receipt->data, receipt->length}, key, value;
    size_t cursor = 0;
    uint64_t id = 0;
    while (json_object_next(root, &cursor, &key, &value))
        if (json_string_equals(key, "id") && value.length > 2) {
            char digits[24];
            size_t n = value.length - 2 < sizeof digits - 1 ? value.length - 2 : sizeof digits - 1;
            memcpy(digits, value.data + 1, n);
            digits[n] = '\0';
            parse_event_id(digits, &id);
        }
    return id;
}

static void on_ws_published(void *context, const store_publish_result *result) {
    publish_request *p = context;
    connection *c = p->connection;
    ws_session *s = connection_is_closing(c) ? NULL : c->handler_state;
    if (s && !s->raw) {
        json_span ref = {p->ref, p->ref ? strlen(p->ref) : 0};
        if (!result->ok) {
            send_error(s, ref, "unavailable",
                       result->error_message ? result->error_message : "The store failed.");
        } else {
            uint64_t id = result->replayed ? receipt_id(result->receipt) : result->events[0]->id;
            text t;
            text_init(&t);
            begin_reply(&t, "ack", ref);
            text_printf(&t, ",\"id\":\"%llu\"", (unsigned long long)id);
            finish_reply(s, &t);
        }
    } else if (s && !result->ok) {
        send_close(s, WS_CLOSE_INTERNAL_ERROR, "store unavailable");
    }
    if (result->ok && !result->replayed) c->server->events_published += result->event_count;
    free(p->ref);
    free(p);
    connection_release(c);
}

static bool submit_publish(ws_session *s, json_span ref, const store_item *item, const char *key,
                           size_t key_length) {
    publish_request *p = calloc(1, sizeof *p);
    if (!p) return false;
    p->connection = s->connection;
    if (ref.data && !(p->ref = strndup(ref.data, ref.length))) {
        free(p);
        return false;
    }
    text store_key;
    text_init(&store_key);
    const char *namespaced = idempotency_store_key(&store_key, "p:", key, key_length);
    connection_hold(s->connection);
    int rc = !s->server->store || (key && !namespaced)
                 ? -1
                 : store_publish(s->server->store, item, 1, namespaced, store_key.length, false,
                                 on_ws_published, p);
    text_free(&store_key);
    if (rc != 0) {
        connection_release(s->connection);
        free(p->ref);
        free(p);
        return false;
    }
    return true;
}

static void handle_publish(ws_session *s, const ws_request *q) {
    text topic, type, key;
    text_init(&topic);
    text_init(&type);
    text_init(&key);
    bool has_key = q->idempotency_key.data && json_kind_of(q->idempotency_key) != JSON_KIND_NULL;
    if (!span_to_string(q->topic, &topic) || !topic_name_valid(topic.data, topic.length)) {
        send_error(s, q->ref, "invalid_topic",
                   "topic must be a topic name (no patterns when publishing).");
    } else if (q->type.data &&
               !(span_to_string(q->type, &type) && event_type_valid(type.data, type.length))) {
        send_error(s, q->ref, "invalid_type",
                   "type must be 1-64 bytes of letters, digits and '_.:-'.");
    } else if (has_key && !(span_to_string(q->idempotency_key, &key) && key.length >= 1 &&
                            key.length <= WS_IDEMPOTENCY_KEY_MAX)) {
        send_error(s, q->ref, "invalid_parameter",
                   "idempotency_key must be a string of 1-200 bytes.");
    } else if (access_publish(s->server->access, &s->identity, topic.data) != ACCESS_ALLOWED) {
        access_decision decision = access_publish(s->server->access, &s->identity, topic.data);
        send_error(s, q->ref, decision == ACCESS_FORBIDDEN ? "forbidden" : "unauthorized",
                   access_refusal_message(&s->identity, decision));
    } else {
        json_span data = q->data.data ? q->data : (json_span){"null", 4};
        store_item item = {topic.data, topic.length, q->type.data ? type.data : "message",
                           true,       data.data,    data.length};
        if (!submit_publish(s, q->ref, &item, has_key ? key.data : NULL, has_key ? key.length : 0))
            send_error(s, q->ref, "unavailable", "The store is not accepting events.");
    }
    text_free(&topic);
    text_free(&type);
    text_free(&key);
}

static void handle_json_message(ws_session *s, const char *data, size_t length) {
    text minified;
    text_init(&minified);
    json_error error = {0};
    json_span none = {NULL, 0};
    if (!json_minify(data, length, &minified, &error)) {
        char message[200];
        snprintf(message, sizeof message, "The message is not valid JSON: %s", error.message);
        send_error(s, none, "invalid_json", message);
        text_free(&minified);
        return;
    }
    json_span root = {minified.data, minified.length}, key, value;
    ws_request q = {0};
    size_t cursor = 0;
    if (json_kind_of(root) != JSON_KIND_OBJECT) {
        send_error(s, none, "invalid_json", "Each message must be a JSON object with an \"op\".");
        text_free(&minified);
        return;
    }
    while (json_object_next(root, &cursor, &key, &value)) {
        if (json_string_equals(key, "op"))
            q.op = value;
        else if (json_string_equals(key, "ref"))
            q.ref = value;
        else if (json_string_equals(key, "topic"))
            q.topic = value;
        else if (json_string_equals(key, "since"))
            q.since = value;
        else if (json_string_equals(key, "type"))
            q.type = value;
        else if (json_string_equals(key, "data"))
            q.data = value;
        else if (json_string_equals(key, "idempotency_key"))
            q.idempotency_key = value;
    }
    if (q.op.data && json_string_equals(q.op, "subscribe"))
        handle_subscribe(s, &q);
    else if (q.op.data && json_string_equals(q.op, "unsubscribe"))
        handle_unsubscribe(s, &q);
    else if (q.op.data && json_string_equals(q.op, "publish"))
        handle_publish(s, &q);
    else if (q.op.data && json_string_equals(q.op, "ping")) {
        text t;
        text_init(&t);
        begin_reply(&t, "pong", q.ref);
        finish_reply(s, &t);
    } else {
        send_error(s, q.ref, "invalid_parameter",
                   "op must be subscribe, unsubscribe, publish or ping.");
    }
    text_free(&minified);
}

/* Raw mode: a client text frame is published to the topic, JSON when it parses. */
static void handle_raw_message(ws_session *s, const char *data, size_t length) {
    ws_subscription *sub = s->subscriptions;
    if (access_publish(s->server->access, &s->identity, sub->pattern) != ACCESS_ALLOWED) {
        send_close(s, WS_CLOSE_POLICY_VIOLATION, "not allowed to publish to this topic");
        return;
    }
    text minified;
    text_init(&minified);
    json_error error = {0};
    bool is_json = json_minify(data, length, &minified, &error);
    store_item item = {
        sub->pattern, strlen(sub->pattern),           "message",
        is_json,      is_json ? minified.data : data, is_json ? minified.length : length};
    json_span none = {NULL, 0};
    if (!submit_publish(s, none, &item, NULL, 0))
        send_close(s, WS_CLOSE_INTERNAL_ERROR, "store unavailable");
    text_free(&minified);
}

/* ---- connection hooks ---- */

static void session_free(ws_session *s) {
    while (s->subscriptions) {
        ws_subscription *sub = s->subscriptions;
        s->subscriptions = sub->next;
        subscription_free(s, sub);
    }
    ws_parser_free(&s->parser);
    access_identity_free(&s->identity);
    free(s->live_sent);
    free(s);
}

static void on_closed(connection *c) {
    ws_session *s = c->handler_state;
    c->handler_state = NULL;
    if (s) session_free(s);
}

static void on_data(connection *c, const char *bytes, size_t length) {
    ws_session *s = c->handler_state;
    /* The bytes are the connection's own read buffer (or its held copy): unmasked in place. */
    char *data = (char *)bytes;
    s->last_heard_ms = uv_now(c->server->loop);
    while (!connection_is_closing(c) && c->handler_state == s) {
        size_t consumed = 0;
        ws_message message;
        ws_parse_status status = ws_parser_feed(&s->parser, data, length, &consumed, &message);
        data += consumed;
        length -= consumed;
        if (status == WS_PARSE_NEED_MORE) return;
        if (status == WS_PARSE_ERROR) {
            send_close(s, s->parser.close_code, s->parser.error_message);
            return;
        }
        if (s->close_received) continue; /* nothing counts after the client's close */
        switch (message.opcode) {
        case WS_OPCODE_TEXT:
            if (!s->close_sent) {
                if (s->raw)
                    handle_raw_message(s, message.data, message.length);
                else
                    handle_json_message(s, message.data, message.length);
            }
            break;
        case WS_OPCODE_PING:
            send_control(s, WS_OPCODE_PONG, message.data, message.length);
            break;
        case WS_OPCODE_CLOSE:
            s->close_received = true;
            if (s->close_sent) {
                connection_close_after_flush(c);
            } else {
                /* Echo the client's code (RFC 6455 §5.5.1); an empty close is answered empty. */
                send_close(s, message.close_code, NULL);
            }
            break;
        default:
            break; /* pong: hearing from the client is all that matters */
        }
    }
}

static void on_timer(connection *c) {
    ws_session *s = c->handler_state;
    if (!s) return;
    if (s->close_sent) {
        connection_close(c); /* the client never answered our close */
        return;
    }
    uint64_t interval = (uint64_t)s->server->config.ws_ping_interval_ms;
    if (uv_now(c->server->loop) - s->last_heard_ms >= 2 * interval) {
        send_close(s, WS_CLOSE_GOING_AWAY, "no frame from the client for two ping intervals");
        return;
    }
    send_control(s, WS_OPCODE_PING, NULL, 0);
    connection_set_handler_timer(c, (int64_t)interval);
}

static void on_drained(connection *c) {
    ws_session *s = c->handler_state;
    if (s && !s->close_sent) replay(s);
}

static void on_shutdown(connection *c) {
    ws_session *s = c->handler_state;
    if (s) send_close(s, WS_CLOSE_GOING_AWAY, "server shutting down");
    connection_close_after_flush(c);
}

static void on_overflow(connection *c) {
    ws_session *s = c->handler_state;
    if (s)
        send_close(s, WS_CLOSE_POLICY_VIOLATION, "send buffer full: resume from your last id");
    else
        connection_close(c);
}

static const connection_handler ws_handler = {
    .closed = on_closed,
    .timer = on_timer,
    .drained = on_drained,
    .shutdown = on_shutdown,
    .data = on_data,
    .overflow = on_overflow,
};

/* ---- the upgrade ---- */

/* Every value of a header, joined with "," (Sec-WebSocket-Protocol/-Extensions may repeat). */
static const char *joined_header(const http_request *h, const char *name, text *out) {
    bool any = false;
    for (size_t i = 0; i < h->header_count; i++) {
        if (strcmp(h->headers[i].name, name) != 0) continue;
        if (any) text_append_char(out, ',');
        text_append(out, h->headers[i].value, h->headers[i].value_length);
        any = true;
    }
    return any ? text_cstring(out) : NULL;
}

void ws_session_upgrade(api_request *r, bool raw) {
    connection *c = r->connection;
    server *srv = r->server;
    const http_request *h = r->http;
    if (srv->shutting_down || !srv->store) {
        connection_respond_error(c, 503, "unavailable", "The server is shutting down.", NULL);
        return;
    }
    const access_policy *policy = srv->access;
    const char *origin = http_request_header(h, "origin");
    if (policy && auth_cors_configured(&policy->cors) && origin &&
        !auth_cors_origin_allowed(&policy->cors, origin, strlen(origin))) {
        connection_respond_error(c, 403, "forbidden",
                                 "This origin is not allowed (see --cors-origin).", NULL);
        return;
    }
    /* With tokens configured the handshake itself needs a credential (SPEC §9); raw mode is one
     * subscription, checked here too. */
    if (policy && access_tokens_configured(policy) && !r->identity.admin &&
        !r->identity.has_claims) {
        api_allowed(r, ACCESS_UNAUTHORIZED);
        return;
    }
    if (raw && policy && !api_allowed(r, access_subscribe(policy, &r->identity, r->topic))) return;
    uint64_t since = 0;
    const char *since_text = raw ? url_query_get(&r->query, "since") : NULL;
    if (since_text && !parse_event_id(since_text, &since)) {
        connection_respond_error(c, 400, "invalid_id",
                                 "since must be an event id (a decimal number).", NULL);
        return;
    }
    text protocols, extensions;
    text_init(&protocols);
    text_init(&extensions);
    ws_handshake_request request = {
        .method = h->method,
        .http_version_minor = h->version_minor,
        .upgrade = http_request_header(h, "upgrade"),
        .connection = http_request_header(h, "connection"),
        .key = http_request_header(h, "sec-websocket-key"),
        .version = http_request_header(h, "sec-websocket-version"),
        .protocol = joined_header(h, "sec-websocket-protocol", &protocols),
        .extensions = joined_header(h, "sec-websocket-extensions", &extensions),
    };
    ws_handshake_options options = {.subprotocol = raw ? NULL : "herald.v1",
                                    .allow_deflate = srv->config.ws_deflate};
    ws_handshake_result result;
    bool accepted = ws_handshake_check(&request, &options, &result);
    text_free(&protocols);
    text_free(&extensions);
    if (!accepted) {
        c->keep_alive = false;
        connection_respond_error(c, result.status, result.error_code, result.error_message,
                                 result.error_headers);
        return;
    }
    ws_session *s = calloc(1, sizeof *s);
    if (!s) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    s->server = srv;
    s->connection = c;
    s->raw = raw;
    s->identity = r->identity; /* the session owns the claims from here on */
    auth_claims_init(&r->identity.claims);
    /* One shared compressed frame per event needs the full window; a client that asks for a
     * smaller one gets uncompressed frames (allowed: RSV1 is per message). */
    s->deflate = result.deflate.enabled && result.deflate.server_max_window_bits >= 15;
    ws_parser_config parser_config = {
        .max_message = srv->config.ws_max_message_bytes,
        .reject_binary = true,
        .deflate = result.deflate,
    };
    ws_parser_init(&s->parser, &parser_config);
    text head;
    text_init(&head);
    char extra[64];
    snprintf(extra, sizeof extra, "Herald-Epoch: %s\r\n", srv->epoch);
    ws_handshake_response_head(&result, extra, &head);
    connection_write_bytes(c, head.data, head.length);
    text_free(&head);
    connection_begin_handler(c, CONNECTION_UPGRADED, &ws_handler, s);
    s->last_heard_ms = uv_now(srv->loop);
    connection_set_handler_timer(c, srv->config.ws_ping_interval_ms);
    if (raw) {
        const char *code, *message;
        ws_subscription *sub = subscribe(s, r->topic, since_text != NULL, since, &code, &message);
        if (!sub) {
            send_close(s, WS_CLOSE_INTERNAL_ERROR, message);
            return;
        }
        if (sub->replaying) replay(s);
    }
}

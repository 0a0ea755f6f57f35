/* `herald subscribe --via ws`: one herald.v1 connection to /v1/ws holding a subscription per
 * TOPIC; each event is printed as its event object. A dropped connection is reopened after
 * 1-3 s and every TOPIC resubscribed from its own cursor, so nothing is missed or repeated.
 *
 * Cursors. The server sends each subscription's events in ascending order, but the
 * subscriptions of one connection replay independently, so the printed stream as a whole is not
 * ordered and one "last id" cannot resume them all. Each TOPIC therefore keeps a cursor: the id
 * up to which every event it matches has been received. It starts at the "next" of the
 * subscribed answer and follows the events that match that TOPIC alone, which can only have
 * come through its own subscription. An event matching several TOPICs may have come through
 * any of them ahead of another one's replay, so it moves no cursor (unless no subscription of
 * the connection replays, when everything arrives in id order) and is remembered instead, so
 * that a later replay does not print it twice. */
#include <errno.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "core/json.h"

/* Reconnect after 1 s plus a random part up to 2 s, so that many clients do not return at once. */
#define RECONNECT_MIN_MS 1000L
#define RECONNECT_SPREAD_MS 2000L
/* Remembered ids of events matching several TOPICs; the oldest go first beyond this. */
#define SHARED_IDS_LIMIT (1u << 20)

typedef struct topic_state {
    const char *pattern;
    char ref[24]; /* the subscribe's ref: its 1-based position, as a JSON string's content */
    bool has_cursor;
    uint64_t cursor;
} topic_state;

typedef struct subscriber {
    topic_state *topics;
    size_t topic_count;
    const char *url;
    const char *token;
    cli_ws_endpoint endpoint;
    cli_ws_client client;
    long count_limit;
    long printed;
    bool connected_once; /* failures before the first handshake are fatal, after it retried */
    bool replaying;      /* some subscription of this connection was sent with a since */
    bool stop;
    int exit_status;
    uint64_t *shared_ids; /* ascending */
    size_t shared_count, shared_capacity;
    text line, scratch;
} subscriber;

/* ---- topics ----------------------------------------------------------------------------- */

static size_t segment_length(const char *segment) {
    return strcspn(segment, "/");
}

/* '*' matches one segment; a final '**' one or more trailing segments (SPEC §1). */
static bool pattern_matches(const char *pattern, const char *topic) {
    for (;;) {
        size_t pattern_segment = segment_length(pattern);
        size_t topic_segment = segment_length(topic);
        bool pattern_last = pattern[pattern_segment] == '\0';
        bool topic_last = topic[topic_segment] == '\0';
        if (pattern_last && pattern_segment == 2 && memcmp(pattern, "**", 2) == 0)
            return topic_segment > 0;
        bool star = pattern_segment == 1 && pattern[0] == '*';
        if (topic_segment == 0) return false;
        if (!star && (pattern_segment != topic_segment || memcmp(pattern, topic, topic_segment)))
            return false;
        if (pattern_last || topic_last) return pattern_last && topic_last;
        pattern += pattern_segment + 1;
        topic += topic_segment + 1;
    }
}

static bool parse_id(const char *digits, uint64_t *id) {
    size_t length = strlen(digits);
    if (length == 0 || length > 20 || strspn(digits, "0123456789") != length) return false;
    errno = 0;
    unsigned long long value = strtoull(digits, NULL, 10);
    if (errno) return false;
    *id = value;
    return true;
}

/* The decoded content of a string span into sub->scratch; NULL when it is not a string. */
static const char *decode_string(subscriber *sub, json_span span) {
    text_clear(&sub->scratch);
    if (!span.data || json_kind_of(span) != JSON_KIND_STRING ||
        !json_string_decode(span, &sub->scratch))
        return NULL;
    return text_cstring(&sub->scratch);
}

static bool span_to_id(subscriber *sub, json_span span, uint64_t *id) {
    const char *digits = decode_string(sub, span);
    return digits && parse_id(digits, id);
}

/* The TOPIC a server answer's ref names, or NULL. */
static topic_state *topic_of_ref(subscriber *sub, json_span ref) {
    for (size_t i = 0; ref.data && i < sub->topic_count; i++)
        if (json_string_equals(ref, sub->topics[i].ref)) return &sub->topics[i];
    return NULL;
}

/* ---- remembered ids --------------------------------------------------------------------- */

static size_t shared_position(const subscriber *sub, uint64_t id) {
    size_t low = 0, high = sub->shared_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (sub->shared_ids[middle] < id)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

static bool shared_contains(const subscriber *sub, uint64_t id) {
    size_t position = shared_position(sub, id);
    return position < sub->shared_count && sub->shared_ids[position] == id;
}

static void drop_shared_front(subscriber *sub, size_t count) {
    if (count == 0) return;
    memmove(sub->shared_ids, sub->shared_ids + count,
            (sub->shared_count - count) * sizeof *sub->shared_ids);
    sub->shared_count -= count;
}

static void remember_shared(subscriber *sub, uint64_t id) {
    if (sub->shared_count == SHARED_IDS_LIMIT) drop_shared_front(sub, SHARED_IDS_LIMIT / 8);
    if (sub->shared_count == sub->shared_capacity) {
        size_t capacity = sub->shared_capacity ? sub->shared_capacity * 2 : 64;
        uint64_t *ids = realloc(sub->shared_ids, capacity * sizeof *ids);
        if (!ids) return; /* at worst a later replay prints this event again */
        sub->shared_ids = ids;
        sub->shared_capacity = capacity;
    }
    size_t position = shared_position(sub, id);
    if (position < sub->shared_count)
        memmove(sub->shared_ids + position + 1, sub->shared_ids + position,
                (sub->shared_count - position) * sizeof *sub->shared_ids);
    sub->shared_ids[position] = id;
    sub->shared_count++;
}

/* Ids no subscription can send again (at or below every cursor) are forgotten. */
static void forget_covered_shared(subscriber *sub) {
    uint64_t lowest = UINT64_MAX;
    for (size_t i = 0; i < sub->topic_count; i++) {
        if (!sub->topics[i].has_cursor) return;
        if (sub->topics[i].cursor < lowest) lowest = sub->topics[i].cursor;
    }
    drop_shared_front(sub, shared_position(sub, lowest + (lowest < UINT64_MAX)));
}

/* ---- output ----------------------------------------------------------------------------- */

/* Writes sub->line as one line. A closed stdout (| head) ends the command quietly. */
static void emit_line(subscriber *sub) {
    if (!cli_write_line(&sub->line, &sub->exit_status)) {
        sub->stop = true;
        return;
    }
    sub->printed++;
    if (sub->count_limit && sub->printed >= sub->count_limit) sub->stop = true;
}

/* The event message without its "op" member, the rest byte for byte in the server's order. */
static void emit_event_object(subscriber *sub, json_span message) {
    text_clear(&sub->line);
    text_append_char(&sub->line, '{');
    size_t cursor = 0;
    json_span key, value;
    bool first = true;
    while (json_object_next(message, &cursor, &key, &value)) {
        if (json_string_equals(key, "op")) continue;
        if (!first) text_append_char(&sub->line, ',');
        text_append(&sub->line, key.data, key.length);
        text_append_char(&sub->line, ':');
        text_append(&sub->line, value.data, value.length);
        first = false;
    }
    text_append_char(&sub->line, '}');
    emit_line(sub);
}

/* ---- messages --------------------------------------------------------------------------- */

typedef struct server_message {
    json_span op, ref, id, topic, code, message, reason, next, oldest, head;
} server_message;

static void read_members(json_span object, server_message *out) {
    memset(out, 0, sizeof *out);
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"op", offsetof(server_message, op)},
        {"ref", offsetof(server_message, ref)},
        {"id", offsetof(server_message, id)},
        {"topic", offsetof(server_message, topic)},
        {"code", offsetof(server_message, code)},
        {"message", offsetof(server_message, message)},
        {"reason", offsetof(server_message, reason)},
        {"next", offsetof(server_message, next)},
        {"oldest", offsetof(server_message, oldest)},
        {"head", offsetof(server_message, head)},
    };
    size_t cursor = 0;
    json_span key, value;
    while (json_object_next(object, &cursor, &key, &value))
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (json_string_equals(key, fields[i].name))
                *(json_span *)((char *)out + fields[i].offset) = value;
}

static void handle_event(subscriber *sub, json_span message, const server_message *fields) {
    uint64_t id = 0;
    bool has_id = span_to_id(sub, fields->id, &id);
    const char *topic = decode_string(sub, fields->topic);
    size_t matches = 0;
    topic_state *only = NULL;
    bool all_covered = true;
    for (size_t i = 0; topic && i < sub->topic_count; i++) {
        topic_state *state = &sub->topics[i];
        if (!pattern_matches(state->pattern, topic)) continue;
        matches++;
        only = state;
        if (!(state->has_cursor && state->cursor >= id)) all_covered = false;
    }
    if (has_id && matches > 0 && (all_covered || (matches > 1 && shared_contains(sub, id))))
        return; /* printed already (a replay overlapping another subscription) */

    emit_event_object(sub, message);
    if (!has_id || matches == 0) return;
    if (matches == 1 || !sub->replaying) {
        /* Came in order: every matching TOPIC has received everything up to it. */
        for (size_t i = 0; i < sub->topic_count; i++) {
            topic_state *state = &sub->topics[i];
            if ((matches == 1 && state != only) ||
                (matches > 1 && !pattern_matches(state->pattern, topic)))
                continue;
            if (!state->has_cursor || state->cursor < id) state->cursor = id;
            state->has_cursor = true;
        }
        forget_covered_shared(sub);
    } else {
        remember_shared(sub, id);
    }
}

static void handle_reset(subscriber *sub, const server_message *fields) {
    text topic;
    text_init(&topic);
    if (fields->topic.data && json_kind_of(fields->topic) == JSON_KIND_STRING)
        json_string_decode(fields->topic, &topic);
    const char *topic_name = text_cstring(&topic);
    uint64_t id = 0;
    if (json_string_equals(fields->reason, "unknown_id") && span_to_id(sub, fields->head, &id)) {
        fprintf(stderr,
                "herald: warning: %s: the server never issued the requested event id (a new "
                "store?); following from its newest event %s\n",
                topic_name ? topic_name : "?", text_cstring(&sub->scratch));
        /* The old ids mean nothing to this store: start this TOPIC over from its head. */
        for (size_t i = 0; i < sub->topic_count; i++)
            if (topic_name && strcmp(sub->topics[i].pattern, topic_name) == 0) {
                sub->topics[i].cursor = id;
                sub->topics[i].has_cursor = true;
            }
        sub->shared_count = 0;
    } else if (json_string_equals(fields->reason, "history_truncated") &&
               decode_string(sub, fields->oldest)) {
        fprintf(stderr,
                "herald: warning: %s: events before %s have left the server's history; some "
                "were missed\n",
                topic_name ? topic_name : "?", text_cstring(&sub->scratch));
    } else {
        fprintf(stderr, "herald: warning: %s: the server reset the subscription\n",
                topic_name ? topic_name : "?");
    }
    text_free(&topic);
}

static void handle_error(subscriber *sub, const server_message *fields) {
    text message, code;
    text_init(&message);
    text_init(&code);
    if (fields->message.data && json_kind_of(fields->message) == JSON_KIND_STRING)
        json_string_decode(fields->message, &message);
    if (fields->code.data && json_kind_of(fields->code) == JSON_KIND_STRING)
        json_string_decode(fields->code, &code);
    const char *message_text = message.length ? text_cstring(&message) : NULL;
    const char *code_text = code.length ? text_cstring(&code) : NULL;
    fprintf(stderr, "herald: %s (%s)\n", message_text ? message_text : "the server refused",
            code_text ? code_text : "error");
    text_free(&message);
    text_free(&code);
    sub->exit_status = CLI_EXIT_FAILURE;
    sub->stop = true;
}

static void handle_message(subscriber *sub, const char *data, size_t length) {
    json_span message = {data, length};
    if (!json_validate(data, length, NULL) || json_kind_of(message) != JSON_KIND_OBJECT) {
        fprintf(stderr, "herald: warning: ignoring a message that is not a JSON object\n");
        return;
    }
    server_message fields;
    read_members(message, &fields);
    if (json_string_equals(fields.op, "event")) {
        handle_event(sub, message, &fields);
    } else if (json_string_equals(fields.op, "subscribed")) {
        topic_state *state = topic_of_ref(sub, fields.ref);
        uint64_t next = 0;
        if (state && span_to_id(sub, fields.next, &next)) {
            state->cursor = next;
            state->has_cursor = true;
        }
    } else if (json_string_equals(fields.op, "reset")) {
        handle_reset(sub, &fields);
    } else if (json_string_equals(fields.op, "error")) {
        handle_error(sub, &fields);
    } /* pong, ack, unsubscribed: nothing to do */
}

/* ---- connections ------------------------------------------------------------------------ */

static bool send_subscriptions(subscriber *sub) {
    text request;
    text_init(&request);
    bool sent = true;
    sub->replaying = false;
    for (size_t i = 0; i < sub->topic_count && sent; i++) {
        topic_state *state = &sub->topics[i];
        text_clear(&request);
        text_append_cstring(&request, "{\"op\":\"subscribe\",\"topic\":");
        json_append_string(&request, state->pattern, strlen(state->pattern));
        text_printf(&request, ",\"ref\":\"%s\"", state->ref);
        if (state->has_cursor) {
            text_printf(&request, ",\"since\":\"%llu\"", (unsigned long long)state->cursor);
            sub->replaying = true;
        }
        text_append_char(&request, '}');
        if (text_failed(&request)) {
            fprintf(stderr, "herald: out of memory\n");
            sub->exit_status = CLI_EXIT_FAILURE;
            sub->stop = true;
            sent = false;
        } else {
            sent = cli_ws_send_text(&sub->client, request.data, request.length);
        }
    }
    text_free(&request);
    return sent;
}

/* Subscribes and prints until the connection ends; returns how it ended (CLI_WS_OK when the
 * command is over). */
static cli_ws_status run_connection(subscriber *sub) {
    if (!send_subscriptions(sub)) return sub->stop ? CLI_WS_OK : CLI_WS_LOST;
    while (!sub->stop) {
        cli_ws_status status = cli_ws_receive(&sub->client, 1000);
        if (status == CLI_WS_TIMEOUT) continue;
        if (status != CLI_WS_OK) return status;
        handle_message(sub, sub->client.message.data, sub->client.message.length);
    }
    return CLI_WS_OK;
}

static long reconnect_delay_ms(void) {
    unsigned char random_bytes[2] = {0, 0};
    RAND_bytes(random_bytes, sizeof random_bytes);
    long spread = (random_bytes[0] << 8 | random_bytes[1]) % (RECONNECT_SPREAD_MS + 1);
    return RECONNECT_MIN_MS + spread;
}

/* A 429 or 5xx after a good start is worth retrying (a restarting server); the rest is not. */
static bool worth_retrying(const subscriber *sub, cli_ws_status status) {
    switch (status) {
    case CLI_WS_UNREACHABLE:
    case CLI_WS_LOST:
    case CLI_WS_TIMEOUT:
        return sub->connected_once;
    case CLI_WS_REFUSED:
        return sub->connected_once &&
               (sub->client.http_status == 429 || sub->client.http_status >= 500);
    case CLI_WS_CLOSED:
        /* 1001 going away, 1008 too slow, 1011 server error: resume. A close for a protocol
         * violation or an unsupported or oversized message would only happen again. */
        return sub->client.close_code != 1002 && sub->client.close_code != 1003 &&
               sub->client.close_code != 1007 && sub->client.close_code != 1009;
    default:
        return false;
    }
}

static void run(subscriber *sub) {
    while (!sub->stop && !cli_interrupted) {
        cli_ws_status status = cli_ws_connect(&sub->client, &sub->endpoint, sub->token);
        if (status == CLI_WS_OK) {
            sub->connected_once = true;
            status = run_connection(sub);
        }
        if (sub->stop || cli_interrupted || status == CLI_WS_INTERRUPTED) break;
        if (!worth_retrying(sub, status)) {
            cli_ws_report(&sub->client, status, sub->url);
            sub->exit_status = CLI_EXIT_FAILURE;
            break;
        }
        long delay = reconnect_delay_ms();
        text description;
        text_init(&description);
        cli_ws_describe(&sub->client, status, sub->url, &description);
        const char *line = text_cstring(&description);
        fprintf(stderr, "herald: %s; reconnecting in %ld ms\n", line ? line : "connection lost",
                delay);
        text_free(&description);
        cli_ws_close(&sub->client, 1000);
        if (!cli_sleep_ms(delay)) break;
    }
    cli_ws_close(&sub->client, 1000);
}

int cli_subscribe_ws(const cli_ws_subscribe_request *request) {
    subscriber sub = {
        .topic_count = request->topic_count,
        .url = request->url,
        .token = request->token,
        .count_limit = request->count_limit,
        .exit_status = CLI_EXIT_OK,
    };
    uint64_t since = 0;
    if (request->since && !parse_id(request->since, &since)) {
        fprintf(stderr, "herald subscribe: --since needs an event id (a decimal number)\n");
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < request->topic_count; i++) {
        if (!utf8_validate(request->topics[i], strlen(request->topics[i]), NULL)) {
            fprintf(stderr, "herald subscribe: a TOPIC is not valid UTF-8\n");
            return CLI_EXIT_USAGE;
        }
    }
    if (request->token && strpbrk(request->token, "\r\n")) {
        fprintf(stderr, "herald subscribe: the token must not contain line breaks\n");
        return CLI_EXIT_USAGE;
    }
    cli_ws_endpoint_init(&sub.endpoint);
    cli_ws_url_result parsed = cli_ws_endpoint_parse(&sub.endpoint, request->url, "/v1/ws");
    if (parsed != CLI_WS_URL_OK) {
        fprintf(stderr,
                parsed == CLI_WS_URL_TLS
                    ? "herald: --via ws supports http:// server URLs only (no TLS): %s\n"
                    : "herald: --via ws needs a server URL of the form http://HOST[:PORT]: %s\n",
                request->url);
        cli_ws_endpoint_free(&sub.endpoint);
        return CLI_EXIT_USAGE;
    }
    sub.topics = calloc(request->topic_count, sizeof *sub.topics);
    if (!sub.topics) {
        fprintf(stderr, "herald: out of memory\n");
        cli_ws_endpoint_free(&sub.endpoint);
        return CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; i < request->topic_count; i++) {
        sub.topics[i].pattern = request->topics[i];
        snprintf(sub.topics[i].ref, sizeof sub.topics[i].ref, "%zu", i + 1);
        sub.topics[i].has_cursor = request->since != NULL;
        sub.topics[i].cursor = since;
    }
    text_init(&sub.line);
    text_init(&sub.scratch);
    cli_ws_init(&sub.client);
    cli_install_signal_handlers();

    run(&sub);

    cli_ws_free(&sub.client);
    text_free(&sub.line);
    text_free(&sub.scratch);
    free(sub.shared_ids);
    free(sub.topics);
    cli_ws_endpoint_free(&sub.endpoint);
    return sub.exit_status;
}

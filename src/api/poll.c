/* Polling (SPEC §4): short polls with ETag/304, and long polls that hold the request until an
 * event newer than the cursor is committed. A cursor, not the connection, decides what a client
 * gets, so an unclean disconnect loses nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"

#define POLL_LIMIT_DEFAULT 100
#define POLL_LIMIT_MAX 1000
#define POLL_WAIT_MAX_SECONDS 60

typedef struct poll_state {
    connection *connection;
    server *server;
    topic_selection selection;
    bool has_since;
    uint64_t since;
    size_t limit;
    bool has_if_none_match;
    bool if_none_match_any;    /* "*" */
    uint64_t known_cursors[8]; /* the entity-tags sent, as cursors (weak comparison) */
    size_t known_cursor_count;
    hub_subscription **subscriptions; /* one per selection pattern */
    size_t subscription_count;
} poll_state;

static void poll_state_free(poll_state *p) {
    unsubscribe_selection(p->server->hub, p->subscriptions, p->subscription_count);
    topic_selection_free(&p->selection);
    free(p);
}

/* If-None-Match is a list of entity-tags compared weakly (RFC 9110 §13.1.2): W/"7" and "7"
 * both name cursor 7, and "*" matches any answer. */
static void read_if_none_match(poll_state *p, const char *value) {
    const char *at = value;
    while (*at) {
        while (*at == ' ' || *at == '\t' || *at == ',')
            at++;
        if (*at == '*') p->if_none_match_any = true;
        if (at[0] == 'W' && at[1] == '/') at += 2;
        if (*at == '"') {
            const char *end = strchr(at + 1, '"');
            if (!end) return;
            char digits[24];
            size_t length = (size_t)(end - at - 1);
            uint64_t cursor;
            if (length < sizeof digits && p->known_cursor_count < 8) {
                memcpy(digits, at + 1, length);
                digits[length] = '\0';
                if (parse_event_id(digits, &cursor))
                    p->known_cursors[p->known_cursor_count++] = cursor;
            }
            at = end + 1;
        } else {
            while (*at && *at != ',')
                at++;
        }
    }
}

static bool cursor_known(const poll_state *p, uint64_t cursor) {
    if (p->if_none_match_any) return true;
    for (size_t i = 0; i < p->known_cursor_count; i++)
        if (p->known_cursors[i] == cursor) return true;
    return false;
}

typedef enum poll_outcome { POLL_ANSWERED, POLL_NOTHING_NEW, POLL_FAILED } poll_outcome;

/* Reads what the cursor has not seen. Answers (200/304) unless nothing is new and the caller
 * may wait (may_wait); then returns POLL_NOTHING_NEW with nothing sent. */
static poll_outcome poll_answer(poll_state *p, bool may_wait, bool timed_out) {
    connection *c = p->connection;
    store *st = p->server->store;
    resolved_topics topics;
    event_list events = {0};
    if (!st || !topic_selection_resolve(&p->selection, st, &topics)) {
        connection_respond_error(c, 503, "unavailable", "The store is not available.", NULL);
        return POLL_FAILED;
    }
    /* Nothing newer than the cursor can exist: skip the read (the cheap "no change"). */
    bool nothing_newer = p->has_since && p->since >= topics.head_id;
    if (topics.count > 0 && !nothing_newer &&
        store_read(st, topics.names, topics.count, p->since, !p->has_since, p->limit, &events) !=
            0) {
        resolved_topics_free(&topics);
        connection_respond_error(c, 503, "unavailable", "The store could not be read.", NULL);
        return POLL_FAILED;
    }
    /* Checked after the read, which brings trimmed_through up to the snapshot it saw. */
    bool truncated =
        p->has_since && p->since != 0 &&
        (p->since > store_head_id(st) || resolved_trimmed_through(&topics, st) > p->since);
    uint64_t next = events.count   ? events.events[events.count - 1]->id
                    : p->has_since ? p->since
                                   : topics.head_id;
    resolved_topics_free(&topics);
    if (events.count == 0 && may_wait && !truncated) {
        if (!p->has_since) {
            /* "Without since, wait only when the topics have none": from here, anything newer. */
            p->has_since = true;
            p->since = next;
        }
        return POLL_NOTHING_NEW;
    }
    char etag[32];
    snprintf(etag, sizeof etag, "\"%llu\"", (unsigned long long)next);
    char headers[96];
    snprintf(headers, sizeof headers, "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    /* The client already holds what this answer would say: its ETag is the cursor we would
     * return (also without since, when the newest events are unchanged). */
    if (p->has_if_none_match && (cursor_known(p, next) || (events.count == 0 && timed_out))) {
        event_list_free(&events);
        connection_respond(c, 304, NULL, NULL, 0, headers);
        return POLL_ANSWERED;
    }
    text body;
    text_init(&body);
    text_append_cstring(&body, "{\"events\":[");
    for (size_t i = 0; i < events.count; i++) {
        if (i) text_append_char(&body, ',');
        event_append_json(events.events[i], &body);
    }
    text_printf(&body, "],\"next\":\"%llu\",\"truncated\":%s}", (unsigned long long)next,
                truncated ? "true" : "false");
    event_list_free(&events);
    if (text_failed(&body))
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
    else
        connection_respond(c, 200, "application/json", body.data, body.length, headers);
    text_free(&body);
    return POLL_ANSWERED;
}

static void poll_finish(connection *c, bool timed_out) {
    poll_state *p = c->handler_state;
    if (!p) return;
    /* The state goes before the answer: answering hands the connection back to the parser. */
    c->handler_state = NULL;
    p->connection = c;
    poll_outcome outcome = poll_answer(p, false, timed_out);
    (void)outcome;
    poll_state_free(p);
}

static void poll_on_event(void *subscriber, event *e) {
    connection *c = subscriber;
    poll_state *p = c->handler_state;
    if (!p || e->id <= p->since) return;
    poll_finish(c, false);
}

static void poll_on_timer(connection *c) {
    poll_finish(c, true);
}

static void poll_on_closed(connection *c) {
    poll_state *p = c->handler_state;
    c->handler_state = NULL;
    if (p) poll_state_free(p);
}

static void poll_on_shutdown(connection *c) {
    poll_finish(c, true); /* answered as if it had timed out */
}

static const connection_handler long_poll_handler = {
    .closed = poll_on_closed,
    .timer = poll_on_timer,
    .shutdown = poll_on_shutdown,
};

static bool parse_bounded(const char *text, unsigned long minimum, unsigned long maximum,
                          unsigned long *out) {
    uint64_t value;
    if (!parse_event_id(text, &value) || value < minimum || value > maximum) return false;
    *out = (unsigned long)value;
    return true;
}

void api_handle_poll(api_request *r) {
    connection *c = r->connection;
    poll_state *p = calloc(1, sizeof *p);
    if (!p) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    p->connection = c;
    p->server = r->server;
    p->limit = POLL_LIMIT_DEFAULT;
    unsigned long wait_seconds = 0, limit = POLL_LIMIT_DEFAULT;
    const char *since = url_query_get(&r->query, "since");
    const char *limit_text = url_query_get(&r->query, "limit");
    const char *wait_text = url_query_get(&r->query, "wait");
    const char *if_none_match = http_request_header(r->http, "if-none-match");
    if (since && !parse_event_id(since, &p->since)) {
        free(p);
        connection_respond_error(c, 400, "invalid_id",
                                 "since must be an event id (a decimal number).", NULL);
        return;
    }
    if (limit_text && !parse_bounded(limit_text, 1, POLL_LIMIT_MAX, &limit)) {
        free(p);
        connection_respond_error(c, 400, "invalid_parameter",
                                 "limit must be a whole number from 1 to 1000.", NULL);
        return;
    }
    if (wait_text && !parse_bounded(wait_text, 0, POLL_WAIT_MAX_SECONDS, &wait_seconds)) {
        free(p);
        connection_respond_error(c, 400, "invalid_parameter",
                                 "wait must be a whole number of seconds from 0 to 60.", NULL);
        return;
    }
    if (!topic_selection_from_request(r, &p->selection)) {
        free(p);
        return;
    }
    if (!api_allowed_to_subscribe(r, &p->selection)) {
        topic_selection_free(&p->selection);
        free(p);
        return;
    }
    p->has_since = since != NULL;
    p->limit = limit;
    if (if_none_match) {
        p->has_if_none_match = true;
        read_if_none_match(p, if_none_match);
    }
    if (poll_answer(p, wait_seconds > 0 && !r->server->shutting_down, false) != POLL_NOTHING_NEW) {
        poll_state_free(p);
        return;
    }
    p->subscriptions = subscribe_selection(r->server->hub, &p->selection, poll_on_event, c);
    if (!p->subscriptions) {
        poll_state_free(p);
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    p->subscription_count = p->selection.count;
    connection_begin_handler(c, CONNECTION_WAITING, &long_poll_handler, p);
    connection_set_handler_timer(c, (int64_t)wait_seconds * 1000);
}

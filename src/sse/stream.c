/* The SSE stream handler (SPEC §5). Resume without gap or duplicate: the stream subscribes to
 * live events first, then replays history from the store page by page (paced by the write
 * queue), and switches to live delivery only once a read finds nothing newer — all on the loop
 * thread, so no event can fall between the last read and the switch. Every event is sent at
 * most once because the stream remembers the newest id it sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "http/response.h"
#include "sse/sse.h"

#define REPLAY_PAGE 256

typedef struct stream_state {
    server *server;
    topic_selection selection;
    uint64_t last_sent_id;
    bool replaying;
    hub_subscription **subscriptions; /* one per selection pattern */
    size_t subscription_count;
} stream_state;

static void stream_state_free(stream_state *s) {
    unsubscribe_selection(s->server->hub, s->subscriptions, s->subscription_count);
    topic_selection_free(&s->selection);
    free(s);
}

static void stream_send(connection *c, stream_state *s, event *e) {
    if (e->id <= s->last_sent_id) return;
    buffer *frame = sse_event_frame(e);
    if (!frame) {
        connection_close(c);
        return;
    }
    s->last_sent_id = e->id;
    connection_write(c, frame);
}

static void write_reset(connection *c, uint64_t cursor, const char *data);

/* Sends pages of history until caught up, or until the write queue is half full (then the
 * drained hook continues). After every read, a trimmed id beyond what was sent means events
 * left history before this stream could send them: the client is told with herald.reset. */
static void stream_replay(connection *c) {
    stream_state *s = c->handler_state;
    size_t pause_at = c->server->config.send_buffer_bytes / 2;
    while (s->replaying && !connection_is_closing(c)) {
        if (c->queued_bytes >= pause_at) return;
        resolved_topics topics;
        event_list page = {0};
        store *st = c->server->store;
        if (!st || !topic_selection_resolve(&s->selection, st, &topics)) {
            connection_close(c);
            return;
        }
        int rc = topics.count ? store_read(st, topics.names, topics.count, s->last_sent_id, false,
                                           REPLAY_PAGE, &page)
                              : 0;
        uint64_t trimmed = resolved_trimmed_through(&topics, st);
        resolved_topics_free(&topics);
        if (rc != 0) {
            event_list_free(&page);
            connection_close(c);
            return;
        }
        if (trimmed > s->last_sent_id && s->last_sent_id == 0) {
            s->last_sent_id =
                trimmed; /* "since 0" asks for the oldest retained: no gap to report */
        } else if (trimmed > s->last_sent_id) {
            uint64_t oldest = page.count ? page.events[0]->id : trimmed + 1;
            char data[96];
            snprintf(data, sizeof data, "{\"reason\":\"history_truncated\",\"oldest\":\"%llu\"}",
                     (unsigned long long)oldest);
            write_reset(c, s->last_sent_id, data);
            s->last_sent_id = trimmed;
        }
        for (size_t i = 0; i < page.count && !connection_is_closing(c); i++)
            stream_send(c, s, page.events[i]);
        bool caught_up = page.count < REPLAY_PAGE;
        event_list_free(&page);
        if (caught_up) s->replaying = false;
    }
}

static void stream_on_event(void *subscriber, event *e) {
    connection *c = subscriber;
    stream_state *s = c->handler_state;
    if (!s || s->replaying) return; /* the replay reads it from the store */
    stream_send(c, s, e);
}

static void stream_on_closed(connection *c) {
    stream_state *s = c->handler_state;
    c->handler_state = NULL;
    if (s) stream_state_free(s);
}

static void stream_on_drained(connection *c) {
    stream_state *s = c->handler_state;
    if (s && s->replaying) stream_replay(c);
}

static void stream_on_shutdown(connection *c) {
    connection_close_after_flush(c); /* frames are whole, so the stream ends on an event boundary */
}

static const connection_handler stream_handler = {
    .closed = stream_on_closed,
    .drained = stream_on_drained,
    .shutdown = stream_on_shutdown,
};

/* The reset carries the cursor the stream continues from as its id, so a browser that
 * reconnects resumes from there instead of sending the stale id again. */
static void write_reset(connection *c, uint64_t cursor, const char *data) {
    text t;
    text_init(&t);
    text_append_cstring(&t, "id: ");
    text_append_u64(&t, cursor);
    text_append_cstring(&t, "\nevent: herald.reset\ndata: ");
    text_append_cstring(&t, data);
    text_append_cstring(&t, "\n\n");
    if (!text_failed(&t)) connection_write_bytes(c, t.data, t.length);
    text_free(&t);
}

/* The resume id: the Last-Event-ID header wins, as a reconnecting browser sends its newest id
 * there while the URL still carries the first one. */
static const char *resume_id_text(api_request *r) {
    const char *header = http_request_header(r->http, "last-event-id");
    if (header && *header) return header;
    const char *value = url_query_get(&r->query, "lastEventId");
    if (value) return value;
    return url_query_get(&r->query, "since");
}

void api_handle_stream(api_request *r) {
    connection *c = r->connection;
    server *srv = r->server;
    const char *resume_text = resume_id_text(r);
    uint64_t resume_id = 0;
    bool has_resume_id = resume_text != NULL; /* the text lives in the request, gone after begin */
    if (has_resume_id && !parse_event_id(resume_text, &resume_id)) {
        connection_respond_error(c, 400, "invalid_id",
                                 "The resume id must be an event id (a decimal number).", NULL);
        return;
    }
    if (srv->shutting_down || !srv->store) {
        connection_respond_error(c, 503, "unavailable", "The server is shutting down.", NULL);
        return;
    }
    stream_state *s = calloc(1, sizeof *s);
    if (!s) {
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    s->server = srv;
    if (!topic_selection_from_request(r, &s->selection)) {
        free(s);
        return;
    }
    if (!api_allowed_to_subscribe(r, &s->selection)) {
        topic_selection_free(&s->selection);
        free(s);
        return;
    }
    /* Live first, so nothing committed from here on can be missed. */
    s->subscriptions = subscribe_selection(srv->hub, &s->selection, stream_on_event, c);
    if (!s->subscriptions) {
        stream_state_free(s);
        connection_respond_error(c, 503, "unavailable", "Out of memory.", NULL);
        return;
    }
    s->subscription_count = s->selection.count;
    text head;
    text_init(&head);
    text headers;
    text_init(&headers);
    text_append_cstring(&headers, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    if (c->response_headers) text_append_cstring(&headers, c->response_headers);
    http_response_head(&head, 200, "text/event-stream", HTTP_NO_CONTENT_LENGTH, false, srv->epoch,
                       text_cstring(&headers));
    text_free(&headers);
    text_append_cstring(&head, ": herald\nretry: 3000\n\n");
    connection_write_bytes(c, head.data, head.length);
    text_free(&head);
    connection_begin_handler(c, CONNECTION_STREAMING, &stream_handler, s);
    if (!has_resume_id) {
        s->last_sent_id = store_head_id(srv->store); /* live only */
        return;
    }
    uint64_t head_id = store_head_id(srv->store);
    if (resume_id > head_id) {
        char data[96];
        snprintf(data, sizeof data, "{\"reason\":\"unknown_id\",\"head\":\"%llu\"}",
                 (unsigned long long)head_id);
        write_reset(c, head_id, data);
        s->last_sent_id = head_id;
        return;
    }
    s->last_sent_id = resume_id;
    s->replaying = true;
    stream_replay(c);
}

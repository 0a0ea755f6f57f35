#include "net/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/router.h"
#include "core/text.h"
#include "http/response.h"

#define WRITE_BATCH 64
#define HELD_INPUT_LIMIT (64 * 1024) /* then reading pauses until the waiting answer is out */

/* libuv calls alloc and read back to back for one stream, so one loop-wide read buffer serves
 * every connection and an idle connection owns no read memory. */
static char read_buffer[64 * 1024];

static void connection_flush(connection *c);
static void connection_process_input(connection *c, const char *data, size_t length);

/* ---- lifetime ---- */

static void connection_free(connection *c) {
    for (size_t i = 0; i < c->queue_count; i++)
        buffer_release(c->queue[(c->queue_head + i) % c->queue_capacity].data);
    free(c->queue);
    free(c->held_input);
    free(c->write_request);
    free(c->response_headers);
    http_parser_free(&c->parser);
    free(c);
}

static void on_handle_closed(uv_handle_t *handle) {
    connection *c = handle->data;
    if (--c->open_handles == 0 && c->operations == 0) connection_free(c);
}

void connection_hold(connection *c) {
    c->operations++;
}

void connection_release(connection *c) {
    if (--c->operations == 0 && c->closing && c->open_handles == 0) connection_free(c);
}

bool connection_is_closing(const connection *c) {
    return c->closing;
}

/* Leaves the server's list and count: a connection that only lingers or closes no longer
 * takes a --max-connections slot or a part in shutdown. */
static void connection_unlist(connection *c) {
    if (c->unlisted) return;
    c->unlisted = true;
    server *s = c->server;
    if (c->previous)
        c->previous->next = c->next;
    else
        s->connections = c->next;
    if (c->next) c->next->previous = c->previous;
    /* c's own links stay: a walk of the list that is standing on c can still step on. */
    s->connection_count--;
}

void connection_close(connection *c) {
    if (c->closing) return;
    c->closing = true;
    connection_unlist(c);
    if (c->handler && c->handler->closed) c->handler->closed(c);
    c->handler = NULL;
    c->open_handles = 2;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void connection_set_timer(connection *c, connection_timer_kind kind, int64_t timeout_ms);

static void on_linger_shutdown(uv_shutdown_t *request, int status) {
    connection *c = request->data;
    free(request);
    if (status != 0 && !c->closing) connection_close(c);
    connection_release(c);
}

/* After a final answer: half-close, so the client reads the whole answer, and drain what it
 * still sends until it closes too (or a second passes). Closing at once with unread request
 * bytes would make the kernel send a reset that can destroy the answer before it is read. */
static void connection_linger(connection *c) {
    if (c->lingering || c->closing) return;
    c->lingering = true;
    connection_unlist(c);
    uv_shutdown_t *request = malloc(sizeof *request);
    if (!request) {
        connection_close(c);
        return;
    }
    request->data = c;
    connection_hold(c);
    if (uv_shutdown(request, (uv_stream_t *)&c->tcp, on_linger_shutdown) != 0) {
        free(request);
        connection_release(c);
        connection_close(c);
        return;
    }
    connection_set_timer(c, TIMER_LINGER, 1000);
}

void connection_close_after_flush(connection *c) {
    c->close_after_flush = true;
    if (c->queue_count == 0 && c->writes_in_flight == 0) connection_linger(c);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *timer) {
    connection *c = timer->data;
    connection_timer_kind kind = c->timer_kind;
    c->timer_kind = TIMER_NONE;
    if (kind == TIMER_LINGER) {
        connection_close(c);
        return;
    }
    if (kind == TIMER_HANDLER) {
        if (c->handler && c->handler->timer) c->handler->timer(c);
        return;
    }
    if (kind == TIMER_HEADER || kind == TIMER_BODY) {
        /* A client too slow to send its request is cut off: 408 tells an honest one why. */
        c->keep_alive = false;
        connection_respond_error(c, 408, "bad_request", "The request was not received in time.",
                                 NULL);
        return;
    }
    connection_close(c); /* idle keep-alive */
}

static void connection_set_timer(connection *c, connection_timer_kind kind, int64_t timeout_ms) {
    if (c->closing) return;
    c->timer_kind = kind;
    if (kind == TIMER_NONE)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
}

void connection_set_handler_timer(connection *c, int64_t timeout_ms) {
    connection_set_timer(c, TIMER_HANDLER, timeout_ms);
}

/* ---- writing ---- */

static void on_wakeup(uv_idle_t *idle) {
    (void)idle; /* its being active is the point: see mark_dirty */
}

static void mark_dirty(connection *c) {
    if (c->dirty) return;
    if (c->server->flusher_closed) {
        connection_flush(c); /* shutting down: no more loop phases to batch in */
        return;
    }
    /* Writes made outside the poll phase (timers) must not wait for the next I/O wakeup: an
     * active idle handle makes this iteration's poll return at once, and the check phase
     * right after it flushes. */
    if (!c->server->dirty && !uv_is_active((uv_handle_t *)&c->server->wakeup))
        uv_idle_start(&c->server->wakeup, on_wakeup);
    c->dirty = true;
    c->next_dirty = c->server->dirty;
    c->server->dirty = c;
    connection_hold(c); /* the dirty list references it */
}

static size_t gather(connection *c, uv_buf_t *bufs, size_t skip);
static void consume(connection *c, size_t written);

/* The bytes that would wait behind the buffer being written if length more were queued. */
static size_t backlog_after(const connection *c, size_t length) {
    if (c->queue_count == 0) return 0;
    const write_entry *head = &c->queue[c->queue_head];
    return c->queued_bytes - (head->data->length - head->offset) + length;
}

/* Writes what the socket accepts right now, without waiting and without the drained hook. */
static void write_ahead(connection *c) {
    if (c->closing || c->writes_in_flight) return;
    uv_buf_t bufs[WRITE_BATCH];
    while (c->queue_count > 0) {
        size_t n = gather(c, bufs, 0);
        int written = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
        if (written <= 0) return; /* full, or an error the next flush reports */
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += bufs[i].len;
        consume(c, (size_t)written);
        if ((size_t)written < total) return;
    }
}

static void connection_enqueue(connection *c, buffer *data, bool bounded) {
    if (c->closing || c->close_after_flush || data->length == 0) return;
    /* The limit bounds the backlog waiting behind the buffer being written, so one response or
     * event larger than the limit still reaches a reader that keeps up. */
    if (bounded && backlog_after(c, data->length) > c->server->config.send_buffer_bytes) {
        /* Writes are batched per loop iteration; before judging the reader slow, hand the
         * kernel what it takes now. */
        write_ahead(c);
    }
    if (bounded && backlog_after(c, data->length) > c->server->config.send_buffer_bytes) {
        /* A reader this far behind would make everyone wait or memory grow: cut it off; it
         * resumes from its last id. */
        if (c->handler && c->handler->overflow)
            c->handler->overflow(c);
        else
            connection_close(c);
        return;
    }
    if (c->queue_count == c->queue_capacity) {
        size_t capacity = c->queue_capacity ? c->queue_capacity * 2 : 4;
        write_entry *queue = malloc(capacity * sizeof *queue);
        if (!queue) {
            connection_close(c);
            return;
        }
        for (size_t i = 0; i < c->queue_count; i++)
            queue[i] = c->queue[(c->queue_head + i) % c->queue_capacity];
        free(c->queue);
        c->queue = queue;
        c->queue_head = 0;
        c->queue_capacity = capacity;
    }
    c->queue[(c->queue_head + c->queue_count) % c->queue_capacity] =
        (write_entry){buffer_retain(data), 0};
    c->queue_count++;
    c->queued_bytes += data->length;
    mark_dirty(c);
}

void connection_write(connection *c, buffer *data) {
    connection_enqueue(c, data, true);
}

void connection_write_final(connection *c, const void *data, size_t length) {
    buffer *b = buffer_from(data, length);
    if (!b) {
        connection_close(c);
        return;
    }
    connection_enqueue(c, b, false);
    buffer_release(b);
}

void connection_write_bytes(connection *c, const void *data, size_t length) {
    buffer *b = buffer_from(data, length);
    if (!b) {
        connection_close(c);
        return;
    }
    connection_write(c, b);
    buffer_release(b);
}

static size_t gather(connection *c, uv_buf_t *bufs, size_t skip) {
    size_t n = 0;
    for (size_t i = skip; i < c->queue_count && n < WRITE_BATCH; i++, n++) {
        write_entry *entry = &c->queue[(c->queue_head + i) % c->queue_capacity];
        bufs[n] = uv_buf_init(entry->data->data + entry->offset,
                              (unsigned)(entry->data->length - entry->offset));
    }
    return n;
}

/* Drops written bytes from the front of the queue. */
static void consume(connection *c, size_t written) {
    while (written > 0 && c->queue_count > 0) {
        write_entry *entry = &c->queue[c->queue_head];
        size_t remaining = entry->data->length - entry->offset;
        size_t step = written < remaining ? written : remaining;
        entry->offset += step;
        written -= step;
        c->queued_bytes -= step;
        if (entry->offset == entry->data->length) {
            buffer_release(entry->data);
            c->queue_head = (c->queue_head + 1) % c->queue_capacity;
            c->queue_count--;
        }
    }
}

static void on_write_done(uv_write_t *request, int status) {
    connection *c = request->data;
    size_t bytes = 0;
    for (size_t i = 0; i < c->writes_in_flight; i++) {
        write_entry *entry = &c->queue[(c->queue_head + i) % c->queue_capacity];
        bytes += entry->data->length - entry->offset;
    }
    c->writes_in_flight = 0;
    if (status == 0) consume(c, bytes);
    if (status != 0 || c->closing) {
        if (!c->closing) connection_close(c);
        connection_release(c);
        return;
    }
    connection_flush(c);
    connection_release(c);
}

static void connection_flush(connection *c) {
    if (c->closing || c->writes_in_flight) return;
    uv_buf_t bufs[WRITE_BATCH];
    while (c->queue_count > 0) {
        size_t n = gather(c, bufs, 0);
        int written = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
        if (written == UV_EAGAIN) written = 0;
        if (written < 0) {
            connection_close(c);
            return;
        }
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += bufs[i].len;
        consume(c, (size_t)written);
        if ((size_t)written < total) {
            /* The socket is full: let libuv finish these entries when it drains. */
            n = gather(c, bufs, 0);
            if (!c->write_request) c->write_request = malloc(sizeof *c->write_request);
            if (!c->write_request) {
                connection_close(c);
                return;
            }
            c->write_request->data = c;
            c->writes_in_flight = n;
            connection_hold(c);
            if (uv_write(c->write_request, (uv_stream_t *)&c->tcp, bufs, (unsigned)n,
                         on_write_done) != 0) {
                c->writes_in_flight = 0;
                connection_release(c);
                connection_close(c);
            }
            return;
        }
    }
    if (c->write_request) {
        free(c->write_request); /* idle connections keep no write request */
        c->write_request = NULL;
    }
    if (c->close_after_flush) {
        connection_linger(c);
        return;
    }
    if (c->handler && c->handler->drained) c->handler->drained(c);
}

static void on_check(uv_check_t *check) {
    server *s = check->data;
    uv_idle_stop(&s->wakeup);
    while (s->dirty) {
        connection *c = s->dirty;
        s->dirty = c->next_dirty;
        c->dirty = false;
        c->next_dirty = NULL;
        connection_flush(c);
        connection_release(c);
    }
}

/* ---- responses ---- */

void connection_respond(connection *c, int status, const char *content_type, const char *body,
                        size_t body_length, const char *extra_headers) {
    if (c->closing) return;
    bool keep_alive = c->keep_alive && !c->server->shutting_down;
    text t;
    text_init(&t);
    /* 204 and 304 have no body, and a Content-Length on them would describe a representation. */
    bool bodiless = status == 204 || status == 304;
    text headers;
    text_init(&headers);
    if (extra_headers) text_append_cstring(&headers, extra_headers);
    if (c->response_headers) text_append_cstring(&headers, c->response_headers);
    http_response_head(&t, status, content_type, bodiless ? HTTP_NO_CONTENT_LENGTH : body_length,
                       keep_alive, c->server->epoch,
                       headers.length ? text_cstring(&headers) : NULL);
    text_free(&headers);
    if (body_length && !c->head_request)
        text_append(&t, body, body_length); /* HEAD: the head only */
    buffer *b = text_to_buffer(&t);
    text_free(&t);
    if (!b) {
        connection_close(c);
        return;
    }
    connection_write(c, b);
    buffer_release(b);
    if (!keep_alive) {
        /* The answer ends the handler (it has cleaned up), and with it the connection. */
        c->handler = NULL;
        c->handler_state = NULL;
        connection_close_after_flush(c);
        return;
    }
    if (c->mode != CONNECTION_READING_REQUEST) connection_end_handler(c);
}

void connection_respond_error(connection *c, int status, const char *code, const char *message,
                              const char *extra_headers) {
    text body;
    text_init(&body);
    http_error_body(&body, code, message, -1);
    connection_respond(c, status, "application/json", body.data, body.length, extra_headers);
    text_free(&body);
}

void connection_respond_error_at(connection *c, int status, const char *code, const char *message,
                                 size_t position) {
    text body;
    text_init(&body);
    http_error_body(&body, code, message, (long long)position);
    connection_respond(c, status, "application/json", body.data, body.length, NULL);
    text_free(&body);
}

/* ---- handlers ---- */

void connection_begin_handler(connection *c, connection_mode mode,
                              const connection_handler *handler, void *state) {
    c->mode = mode;
    c->handler = handler;
    c->handler_state = state;
    /* Handlers keep copies of what they need, so the request's storage goes now: a long-lived
     * stream must not keep its request head in memory. */
    http_parser_reset(&c->parser);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void resume_reading(connection *c) {
    if (c->closing) return;
    char *held = c->held_input;
    size_t held_length = c->held_length;
    c->held_input = NULL;
    c->held_length = 0;
    if (held) {
        connection_process_input(c, held, held_length);
        free(held);
    } else if (!c->in_input_processing) {
        connection_set_timer(c, TIMER_IDLE, c->server->config.idle_timeout_ms);
    }
    if (c->read_paused && !c->closing && !c->close_after_flush &&
        c->mode == CONNECTION_READING_REQUEST) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

void connection_end_handler(connection *c) {
    c->handler = NULL;
    c->handler_state = NULL;
    c->mode = CONNECTION_READING_REQUEST;
    if (c->timer_kind == TIMER_HANDLER) connection_set_timer(c, TIMER_NONE, 0);
    /* Inside connection_process_input the loop itself goes on with the next request. */
    if (!c->in_input_processing) {
        http_parser_reset(&c->parser);
        c->continue_sent = false;
        resume_reading(c);
    }
}

/* ---- reading ---- */

static void hold_input(connection *c, const char *data, size_t length) {
    if (length == 0) return;
    if (c->mode == CONNECTION_STREAMING) return; /* a stream's client has nothing more to say */
    char *held = realloc(c->held_input, c->held_length + length);
    if (!held) {
        connection_close(c);
        return;
    }
    memcpy(held + c->held_length, data, length);
    c->held_input = held;
    c->held_length += length;
    /* Enough is waiting: stop reading (TCP pushes back on the client) until the answer it waits
     * behind has gone out; resume_reading starts again. */
    if (c->held_length >= HELD_INPUT_LIMIT && !c->read_paused) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = true;
    }
}

static void connection_process_input(connection *c, const char *data, size_t length) {
    c->in_input_processing = true;
    while (!c->closing && !c->close_after_flush) {
        if (c->mode != CONNECTION_READING_REQUEST) {
            hold_input(c, data, length);
            break;
        }
        if (length == 0) break;
        bool was_started = http_parser_started(&c->parser);
        size_t consumed = 0;
        http_parse_status status = http_parser_execute(&c->parser, data, length, &consumed);
        data += consumed;
        length -= consumed;
        if (status == HTTP_PARSE_ERROR) {
            c->keep_alive = false;
            connection_respond_error(c, c->parser.error_status, c->parser.error_code,
                                     c->parser.error_message, NULL);
            break;
        }
        if (status == HTTP_PARSE_NEED_MORE) {
            if (http_parser_headers_complete(&c->parser)) {
                const http_request *r = http_parser_request(&c->parser);
                if (r->expect_continue && !c->continue_sent) {
                    c->continue_sent = true;
                    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
                    connection_write_bytes(c, continue_line, sizeof continue_line - 1);
                }
                if (c->timer_kind != TIMER_BODY)
                    connection_set_timer(c, TIMER_BODY, c->server->config.idle_timeout_ms);
            } else if (!was_started && http_parser_started(&c->parser)) {
                connection_set_timer(c, TIMER_HEADER, c->server->config.header_timeout_ms);
            }
            break;
        }
        /* A whole request. */
        connection_set_timer(c, TIMER_NONE, 0);
        const http_request *r = http_parser_request(&c->parser);
        c->keep_alive = r->keep_alive;
        c->head_request = strcmp(r->method, "HEAD") == 0;
        c->server->requests_total++;
        api_handle_request(c, r);
        if (c->closing || c->close_after_flush) break;
        if (c->mode == CONNECTION_READING_REQUEST) {
            http_parser_reset(&c->parser);
            c->continue_sent = false;
        } else {
            /* The answer comes later; bytes after the request wait for it — or, once the
             * connection has left HTTP (WebSocket), belong to the new protocol. */
            if (c->handler && c->handler->data) {
                if (length) c->handler->data(c, data, length);
            } else {
                hold_input(c, data, length);
            }
            length = 0;
            break;
        }
    }
    c->in_input_processing = false;
    if (!c->closing && c->mode == CONNECTION_READING_REQUEST && !http_parser_started(&c->parser) &&
        !c->close_after_flush)
        connection_set_timer(c, TIMER_IDLE, c->server->config.idle_timeout_ms);
    else if (!c->closing && c->mode == CONNECTION_READING_REQUEST && c->timer_kind == TIMER_NONE &&
             http_parser_started(&c->parser))
        connection_set_timer(c, TIMER_HEADER, c->server->config.header_timeout_ms);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    *buf = uv_buf_init(read_buffer, sizeof read_buffer);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    connection *c = stream->data;
    if (nread < 0) {
        connection_close(c);
        return;
    }
    if (nread == 0 || c->closing || c->close_after_flush)
        return; /* a closing client's last words are dropped */
    if (c->handler && c->handler->data) {
        connection_hold(c);
        c->handler->data(c, buf->base, (size_t)nread);
        connection_release(c);
        return;
    }
    if (c->mode != CONNECTION_READING_REQUEST) {
        hold_input(c, buf->base, (size_t)nread);
        return;
    }
    connection_hold(c);
    connection_process_input(c, buf->base, (size_t)nread);
    connection_release(c);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *listener, int status) {
    server *s = listener->data;
    if (status < 0) return;
    connection *c = calloc(1, sizeof *c);
    if (!c) return;
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    http_limits limits = {s->config.max_header_bytes, s->config.max_body_bytes, 100};
    http_parser_init(&c->parser, &limits);
    c->next = s->connections;
    if (s->connections) s->connections->previous = c;
    s->connections = c;
    s->connection_count++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        connection_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->shutting_down || s->connection_count > s->config.max_connections) {
        c->keep_alive = false;
        connection_respond_error(c, 503, "unavailable",
                                 s->shutting_down
                                     ? "The server is shutting down."
                                     : "The server has too many connections; try again soon.",
                                 "Retry-After: 1\r\n");
        return;
    }
    connection_set_timer(c, TIMER_HEADER, s->config.header_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- heartbeat and shutdown ---- */

static void on_heartbeat(uv_timer_t *timer) {
    server *s = timer->data;
    for (connection *c = s->connections; c; c = c->next)
        if (c->mode == CONNECTION_STREAMING && !c->closing) connection_write(c, s->heartbeat_frame);
}

static void on_signal(uv_signal_t *signal, int number) {
    server_begin_shutdown(signal->data);
}

void server_on_shutdown(server *s, void (*hook)(void *context), void *context) {
    if (s->shutdown_hook_count == SERVER_MAX_SHUTDOWN_HOOKS) return;
    s->shutdown_hooks[s->shutdown_hook_count].hook = hook;
    s->shutdown_hooks[s->shutdown_hook_count].context = context;
    s->shutdown_hook_count++;
}

void server_begin_shutdown(server *s) {
    if (s->shutting_down) return;
    s->shutting_down = true;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->heartbeat, NULL);
    connection *c = s->connections;
    while (c) {
        connection *next = c->next;
        connection_hold(c);
        if (c->handler && c->handler->shutdown)
            c->handler->shutdown(c);
        else if (c->mode == CONNECTION_READING_REQUEST && !http_parser_started(&c->parser))
            connection_close(c);
        /* a request being received or a publish waiting for its commit finishes, then closes */
        next = c->next;
        connection_release(c);
        c = next;
    }
    for (size_t i = 0; i < s->shutdown_hook_count; i++)
        s->shutdown_hooks[i].hook(s->shutdown_hooks[i].context);
    /* The store flushes what is queued and answers those publishes before it closes. */
    store_close(s->store);
    s->store = NULL;
    for (c = s->connections; c;) {
        connection *next = c->next;
        connection_close_after_flush(c);
        c = next;
    }
    on_check(&s->flusher);
    uv_close((uv_handle_t *)&s->flusher, NULL);
    uv_close((uv_handle_t *)&s->wakeup, NULL);
    s->flusher_closed = true;
    buffer_release(s->heartbeat_frame);
    s->heartbeat_frame = NULL;
}

int server_start(server *s, uv_loop_t *loop, const server_config *config, store *st, hub *h,
                 const struct access_policy *access, char *error, size_t error_size) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->config = *config;
    s->store = st;
    s->hub = h;
    s->access = access;
    snprintf(s->epoch, sizeof s->epoch, "%s", store_epoch(st));
    struct sockaddr_storage address;
    if (uv_ip4_addr(config->listen_host, config->listen_port, (struct sockaddr_in *)&address) !=
            0 &&
        uv_ip6_addr(config->listen_host, config->listen_port, (struct sockaddr_in6 *)&address) !=
            0) {
        snprintf(error, error_size, "Cannot listen on '%s': not an IPv4 or IPv6 address.",
                 config->listen_host);
        return -1;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int rc =
        uv_tcp_bind(&s->listener, (struct sockaddr *)&address, 0); /* libuv sets SO_REUSEADDR */
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
    if (rc != 0) {
        snprintf(error, error_size, "Cannot listen on %s:%d: %s.", config->listen_host,
                 config->listen_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        return -1;
    }
    struct sockaddr_storage bound;
    int bound_length = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &bound_length);
    char host[INET6_ADDRSTRLEN];
    int port;
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        snprintf(s->bound_address, sizeof s->bound_address, "[%s]:%d", host, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        snprintf(s->bound_address, sizeof s->bound_address, "%s:%d", host, port);
    }
    uv_idle_init(loop, &s->wakeup);
    uv_check_init(loop, &s->flusher);
    s->flusher.data = s;
    uv_check_start(&s->flusher, on_check);
    static const char ping[] = ": ping\n\n";
    s->heartbeat_frame = buffer_from(ping, sizeof ping - 1);
    uv_timer_init(loop, &s->heartbeat);
    s->heartbeat.data = s;
    uv_timer_start(&s->heartbeat, on_heartbeat, (uint64_t)config->sse_heartbeat_ms,
                   (uint64_t)config->sse_heartbeat_ms);
    uv_signal_init(loop, &s->sigterm);
    uv_signal_init(loop, &s->sigint);
    s->sigterm.data = s;
    s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    printf("herald listening on http://%s\n", s->bound_address);
    fflush(stdout);
    return 0;
}

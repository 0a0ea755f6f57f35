#ifndef HERALD_NET_SERVER_H
#define HERALD_NET_SERVER_H
/* Owns: the listening socket, every connection's lifecycle (read, parse, timeouts, close), the
 * bounded per-connection write queue, and orderly shutdown. Handlers (api/, sse/) answer
 * requests through the connection_* functions below; a handler that answers later (a publish
 * waiting for its commit, a long poll, a stream) switches the connection's mode and holds an
 * operation so the connection outlives its socket until the handler is done. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buffer.h"
#include "core/config.h"
#include "http/http_parser.h"
#include "hub/hub.h"
#include "store/store.h"

typedef struct connection connection;
typedef struct server server;

#define SERVER_MAX_SHUTDOWN_HOOKS 4

typedef enum connection_mode {
    CONNECTION_READING_REQUEST, /* parsing; the next request is answered synchronously */
    CONNECTION_WAITING,         /* an answer comes later (publish commit, long poll) */
    CONNECTION_STREAMING,       /* an open event stream: the response never ends */
    CONNECTION_UPGRADED,        /* no longer HTTP (WebSocket): the handler's data hook reads */
} connection_mode;

typedef enum connection_timer_kind {
    TIMER_NONE,
    TIMER_HEADER,
    TIMER_IDLE,
    TIMER_BODY,
    TIMER_HANDLER, /* owned by the handler (long-poll wait) */
    TIMER_LINGER,  /* half-closed after a final answer: waiting for the client's end */
} connection_timer_kind;

typedef struct write_entry {
    buffer *data;
    size_t offset;
} write_entry;

/* Hooks of the handler that owns a waiting or streaming connection. */
typedef struct connection_handler {
    void (*closed)(connection *c);   /* the socket is gone: unsubscribe, drop state */
    void (*timer)(connection *c);    /* the TIMER_HANDLER deadline passed */
    void (*drained)(connection *c);  /* the write queue emptied (flow-controlled replay) */
    void (*shutdown)(connection *c); /* the server is stopping: finish or close */
    /* Bytes from the client once the connection left HTTP (a WebSocket); without this hook such
     * bytes are held for the next request (waiting) or dropped (streaming). */
    void (*data)(connection *c, const char *data, size_t length);
    /* The send buffer is full (a slow reader): the handler ends the connection its own way
     * (WebSocket close 1008). Without it the connection is closed at once. */
    void (*overflow)(connection *c);
} connection_handler;

struct connection {
    uv_tcp_t tcp;
    uv_timer_t timer;
    server *server;
    connection *previous, *next; /* all connections */
    connection *next_dirty;      /* pending flush in this loop iteration */
    http_parser parser;
    connection_mode mode;
    connection_timer_kind timer_kind;
    bool closing;
    bool close_after_flush;
    bool lingering;
    bool read_paused; /* enough pipelined input is held: not reading until it is processed */
    bool unlisted;    /* out of the server's list (closing or lingering) */
    bool continue_sent;
    bool in_input_processing;
    bool dirty;
    bool keep_alive;
    bool head_request; /* the request being answered is HEAD: no body (RFC 9110 §9.3.2) */
    int operations;    /* handler work that still references this connection */
    int open_handles;  /* tcp + timer until their close callbacks ran */
    char *held_input;  /* bytes that arrived while the connection was not reading requests */
    size_t held_length;
    write_entry *queue;
    size_t queue_head, queue_count, queue_capacity;
    size_t queued_bytes;
    size_t writes_in_flight;
    uv_write_t *write_request;
    const connection_handler *handler;
    void *handler_state;
    char *response_headers; /* lines added to every response of the current request (CORS) */
};

struct server {
    uv_loop_t *loop;
    server_config config;
    uv_tcp_t listener;
    uv_signal_t sigterm, sigint;
    uv_check_t flusher;
    uv_idle_t wakeup; /* active while writes wait for the flusher */
    uv_timer_t heartbeat;
    store *store;
    hub *hub;
    const struct access_policy *access;
    struct source_registry *sources; /* inbound webhook sources (set by main) */
    connection *connections;
    connection *dirty;
    size_t connection_count;
    bool shutting_down;
    bool flusher_closed;
    char bound_address[300];
    char epoch[16]; /* copied from the store: responses outlive store_close at shutdown */
    buffer *heartbeat_frame;
    struct {
        void (*hook)(void *context);
        void *context;
    } shutdown_hooks[SERVER_MAX_SHUTDOWN_HOOKS];
    size_t shutdown_hook_count;
    uint64_t requests_total;
    uint64_t events_published;
};

/* Starts listening and prints "herald listening on http://HOST:PORT". Returns 0 or -1 with a
 * sentence in error. The server owns store and hub from here on. */
int server_start(server *s, uv_loop_t *loop, const server_config *config, store *st, hub *h,
                 const struct access_policy *access, char *error, size_t error_size);
/* Begins the orderly shutdown of SPEC §10 (also what SIGTERM/SIGINT do). */
void server_begin_shutdown(server *s);
/* Called once when shutdown begins, after listening stopped and before the store closes
 * (e.g. the webhook deliverer finishing its attempts). At most SERVER_MAX_SHUTDOWN_HOOKS. */
void server_on_shutdown(server *s, void (*hook)(void *context), void *context);

/* Queues bytes on the connection (the buffer is retained). Writes are coalesced and sent at the
 * end of the loop iteration; past the send-buffer limit the connection is closed. */
void connection_write(connection *c, buffer *data);
void connection_write_bytes(connection *c, const void *data, size_t length);
/* The last words of a connection (a close frame): queued even past the send-buffer limit. */
void connection_write_final(connection *c, const void *data, size_t length);
/* A complete response (head + body) in one buffer; then the connection reads the next request
 * (keep-alive) or closes. */
void connection_respond(connection *c, int status, const char *content_type, const char *body,
                        size_t body_length, const char *extra_headers);
void connection_respond_error(connection *c, int status, const char *code, const char *message,
                              const char *extra_headers);
/* An error with the "position" member (invalid JSON/UTF-8). */
void connection_respond_error_at(connection *c, int status, const char *code, const char *message,
                                 size_t position);
/* Switch to waiting/streaming with a handler; operations keep the struct alive after close. */
void connection_begin_handler(connection *c, connection_mode mode,
                              const connection_handler *handler, void *state);
void connection_end_handler(connection *c); /* back to reading requests */
void connection_set_handler_timer(connection *c, int64_t timeout_ms);
void connection_hold(connection *c);    /* +1 operation */
void connection_release(connection *c); /* -1 operation; frees a closed connection at 0 */
void connection_close(connection *c);
void connection_close_after_flush(connection *c);
bool connection_is_closing(const connection *c);

#endif

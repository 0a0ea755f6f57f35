#ifndef HERALD_CLI_CLI_INTERNAL_H
#define HERALD_CLI_CLI_INTERNAL_H
/* Owns: the pieces shared by the client commands: option parsing, URL building, the small JSON
 * scanner, the incremental SSE parser, the libcurl plumbing and the blocking WebSocket client.
 * Not used outside src/cli. */
#include <curl/curl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/text.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* ---- options ---------------------------------------------------------------------------- */

/* One "--name VALUE" option; every option of the client commands takes a value. */
typedef struct cli_option {
    const char *name; /* with the dashes: "--type" */
    const char **value;
} cli_option;

typedef enum { CLI_PARSED, CLI_HELP, CLI_USAGE_ERROR } cli_parse_result;

/* Parses argv[1..] (options before or after positionals, "--name value" or "--name=value",
 * "--" ends the options). Positionals are stored in order into positionals (room for argc
 * entries). On a usage error the reason is printed to stderr and the caller prints the usage. */
cli_parse_result cli_parse_arguments(int argc, char **argv, const cli_option *options,
                                     size_t option_count, const char **positionals,
                                     size_t *positional_count);

/* --url, else HERALD_URL, else the default; never NULL. */
const char *cli_server_url(const char *url_option);
/* --token, else HERALD_TOKEN, else NULL. */
const char *cli_token(const char *token_option);

/* ---- URLs ------------------------------------------------------------------------------- */

void cli_append_base_url(text *out, const char *url); /* without trailing slashes */
/* Percent-encodes each segment of a topic, keeping the '/' between segments. */
void cli_append_topic_path(text *out, const char *topic);
void cli_append_query_value(text *out, const char *value);

/* ---- JSON ------------------------------------------------------------------------------- */

#define CLI_JSON_INVALID ((size_t)-1)

/* The offset just past the JSON value that starts at or after `position` (leading whitespace
 * skipped), or CLI_JSON_INVALID when there is no valid value there. Strict (RFC 8259). */
size_t cli_json_skip_value(const char *json, size_t length, size_t position);
size_t cli_json_skip_whitespace(const char *json, size_t length, size_t position);
/* True when the whole of json is one JSON value (whitespace around it allowed). */
bool cli_json_is_valid(const char *json, size_t length);
/* Appends valid JSON without the whitespace outside strings, so it fits on one line. */
void cli_json_append_compact(text *out, const char *json, size_t length);
/* Appends bytes as a quoted JSON string. */
void cli_json_append_string(text *out, const char *bytes, size_t length);
/* Finds key in the top-level object json; on success [*start, *end) is the member's value. */
bool cli_json_find_member(const char *json, size_t length, const char *key, size_t *start,
                          size_t *end);
/* Appends the decoded content of the JSON string token json[0..length) (quotes included).
 * False when it is not a valid string token. */
bool cli_json_decode_string(text *out, const char *json, size_t length);

/* ---- SSE -------------------------------------------------------------------------------- */

/* Called for each dispatched event; id is "" when the stream never sent one. Non-zero stops the
 * parser and is returned by cli_sse_feed. */
typedef int cli_sse_event_fn(void *context, const char *id, const char *type, const char *data,
                             size_t data_length);

/* The event-stream interpretation of the HTML standard, fed in arbitrary chunks. */
typedef struct cli_sse_parser {
    text line;
    text data;
    text type;
    text id;           /* the "last event ID buffer": kept across events and reconnects */
    long retry_ms;     /* from "retry:", or the initial value set by the caller */
    bool skip_next_lf; /* the previous chunk ended in CR: an LF starting the next one is its pair */
    bool line_too_long; /* a line over the limit is dropped rather than grown without bound */
    cli_sse_event_fn *on_event;
    void *context;
} cli_sse_parser;

void cli_sse_init(cli_sse_parser *parser, cli_sse_event_fn *on_event, void *context);
void cli_sse_free(cli_sse_parser *parser);
int cli_sse_feed(cli_sse_parser *parser, const char *bytes, size_t length);
/* A new connection: a partly received event is discarded, the last id and retry are kept. */
void cli_sse_restart(cli_sse_parser *parser);

/* ---- HTTP ------------------------------------------------------------------------------- */

/* Set by SIGINT/SIGTERM once cli_install_signal_handlers ran (which also ignores SIGPIPE). */
extern volatile sig_atomic_t cli_interrupted;
void cli_install_signal_handlers(void);
/* Sleeps up to milliseconds, returning early (false) when interrupted. */
bool cli_sleep_ms(long milliseconds);

/* A handle with the options every client request shares: URL, user agent, timeouts, no
 * redirects, the error buffer (CURL_ERROR_SIZE bytes) and an abort on cli_interrupted. */
CURL *cli_curl_new(const char *url, char *error_buffer);
/* A CURLOPT_WRITEFUNCTION collecting the body into the text passed as CURLOPT_WRITEDATA. */
size_t cli_collect_body(char *bytes, size_t size, size_t count, void *text_pointer);
/* Adds "Authorization: Bearer token" when token is set; the list (maybe NULL) is returned. */
struct curl_slist *cli_add_authorization(struct curl_slist *headers, const char *token);

/* "herald: <message> (<status>)" from the server's JSON error body. */
void cli_report_http_error(long status, const char *body, size_t length);
/* "herald: cannot reach <url>: <reason>" or the curl failure as it is. */
void cli_report_curl_error(CURLcode code, const char *error_buffer, const char *url);

/* ---- WebSocket client (cli_ws.c) -------------------------------------------------------- */

/* Where a WebSocket connects, from the server URL (http:// only: no TLS in this client). */
typedef struct cli_ws_endpoint {
    text host;      /* for getaddrinfo: an IPv6 address without its brackets */
    text port;      /* "80" when the URL names none */
    text authority; /* the Host header, as written in the URL */
    text path;      /* the URL's path (trailing slashes removed) + the endpoint's path */
} cli_ws_endpoint;

typedef enum {
    CLI_WS_URL_OK,
    CLI_WS_URL_TLS,     /* https:// (or wss://) */
    CLI_WS_URL_INVALID, /* not an http://HOST[:PORT][/PATH] URL */
} cli_ws_url_result;

void cli_ws_endpoint_init(cli_ws_endpoint *endpoint);
void cli_ws_endpoint_free(cli_ws_endpoint *endpoint);
/* Fills an initialised endpoint for endpoint_path ("/v1/ws") under url. */
cli_ws_url_result cli_ws_endpoint_parse(cli_ws_endpoint *endpoint, const char *url,
                                        const char *endpoint_path);

typedef enum {
    CLI_WS_OK,             /* connected, or a text message is in client->message */
    CLI_WS_TIMEOUT,        /* nothing complete within the time given */
    CLI_WS_INTERRUPTED,    /* cli_interrupted was set (SIGINT/SIGTERM) */
    CLI_WS_UNREACHABLE,    /* no TCP connection; client->error says why */
    CLI_WS_REFUSED,        /* an HTTP answer other than 101: http_status, error_body */
    CLI_WS_CLOSED,         /* the server sent a close frame (answered): close_code/reason */
    CLI_WS_LOST,           /* end of stream, reset, silence or no handshake answer: error */
    CLI_WS_PROTOCOL_ERROR, /* the server broke RFC 6455 (or a bad 101); failed, see error */
    CLI_WS_NO_MEMORY,
} cli_ws_status;

/* One connection at a time; cli_ws_connect may be called again to reconnect. */
typedef struct cli_ws_client {
    int socket_fd; /* -1 when not connected */
    text input;    /* received bytes; those before input_offset are consumed */
    size_t input_offset;
    text message;      /* the last complete text message (valid until the next receive) */
    bool message_open; /* a fragmented message is being reassembled into message */
    bool close_sent, close_received, failed;
    int close_code; /* of the server's close frame (1005 when it carried none) */
    text close_reason;
    long http_status; /* of a refused handshake */
    text error_body;  /* of a refused handshake */
    text error;       /* why the last call failed */
    long long last_heard_ms, ping_sent_ms;
    bool ping_outstanding;
} cli_ws_client;

void cli_ws_init(cli_ws_client *client);
void cli_ws_free(cli_ws_client *client);
/* TCP connect (10 s limit) and opening handshake with Sec-WebSocket-Protocol herald.v1 and,
 * when token is set, Authorization: Bearer token. Checks the 101's Sec-WebSocket-Accept. */
cli_ws_status cli_ws_connect(cli_ws_client *client, cli_ws_endpoint *endpoint, const char *token);
/* One masked text frame. false (client->error set) when the connection is unusable. */
bool cli_ws_send_text(cli_ws_client *client, const char *data, size_t length);
/* Waits up to timeout_ms for the next text message, answering pings and echoing a close on the
 * way; a server silent for 30 s is pinged and given up 15 s later (CLI_WS_LOST). */
cli_ws_status cli_ws_receive(cli_ws_client *client, long timeout_ms);
/* The closing handshake with code (bounded wait for the server's answer), then the socket is
 * closed. Harmless on a closed or failed connection. */
void cli_ws_close(cli_ws_client *client, unsigned code);
/* Appends a one-line description of status ("cannot reach URL: ...") without "herald: ". */
void cli_ws_describe(cli_ws_client *client, cli_ws_status status, const char *url, text *out);
/* "herald: <description>" on stderr; a refused handshake as cli_report_http_error does. */
void cli_ws_report(cli_ws_client *client, cli_ws_status status, const char *url);

/* herald subscribe --via ws (cli_subscribe_ws.c). */
typedef struct cli_ws_subscribe_request {
    const char *const *topics;
    size_t topic_count;
    const char *url;   /* the server URL */
    const char *token; /* or NULL */
    const char *since; /* an event id, or NULL for live only */
    long count_limit;  /* 0: no limit */
} cli_ws_subscribe_request;

/* Installs the signal handlers itself; returns the exit status. */
int cli_subscribe_ws(const cli_ws_subscribe_request *request);

/* Writes line and a newline to stdout, flushed (one event per line). false when it cannot:
 * *exit_status is then set (a closed pipe, as in `| head -1`, is a clean exit). */
bool cli_write_line(text *line, int *exit_status);

#endif

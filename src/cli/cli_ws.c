/* A small blocking RFC 6455 client for `--via ws`: one TCP connection, the opening handshake
 * (subprotocol herald.v1, no extensions offered), masked client frames, reassembly of the
 * server's fragmented text messages, pings answered, closes echoed. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "core/encoding.h"

#ifndef HERALD_VERSION
#define HERALD_VERSION "0.0.0"
#endif

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_SUBPROTOCOL "herald.v1"

#define WS_OPCODE_CONTINUATION 0x0
#define WS_OPCODE_TEXT 0x1
#define WS_OPCODE_BINARY 0x2
#define WS_OPCODE_CLOSE 0x8
#define WS_OPCODE_PING 0x9
#define WS_OPCODE_PONG 0xA

#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_UNSUPPORTED_DATA 1003
#define WS_CLOSE_MESSAGE_TOO_BIG 1009

/* Far above herald's event sizes; a larger message is a broken or hostile server. */
#define WS_MAX_MESSAGE (64u * 1024 * 1024)
#define WS_MAX_HANDSHAKE_HEADERS (16u * 1024)
#define WS_MAX_ERROR_BODY (64u * 1024)
#define WS_CONNECT_TIMEOUT_MS 10000L
#define WS_HANDSHAKE_TIMEOUT_MS 10000L
#define WS_SEND_TIMEOUT_S 30
/* Silence after which the client pings, and how long it then waits before giving up. */
#define WS_PING_AFTER_MS 30000LL
#define WS_PONG_WAIT_MS 15000LL
/* How long a closing handshake may take before the socket is closed anyway. */
#define WS_CLOSE_WAIT_MS 2000L
#define WS_READ_CHUNK 65536

static long long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* ---- endpoint --------------------------------------------------------------------------- */

void cli_ws_endpoint_init(cli_ws_endpoint *endpoint) {
    text_init(&endpoint->host);
    text_init(&endpoint->port);
    text_init(&endpoint->authority);
    text_init(&endpoint->path);
}

void cli_ws_endpoint_free(cli_ws_endpoint *endpoint) {
    text_free(&endpoint->host);
    text_free(&endpoint->port);
    text_free(&endpoint->authority);
    text_free(&endpoint->path);
}

static bool has_prefix_ignoring_case(const char *value, const char *prefix) {
    return strncasecmp(value, prefix, strlen(prefix)) == 0;
}

cli_ws_url_result cli_ws_endpoint_parse(cli_ws_endpoint *endpoint, const char *url,
                                        const char *endpoint_path) {
    if (has_prefix_ignoring_case(url, "https://") || has_prefix_ignoring_case(url, "wss://"))
        return CLI_WS_URL_TLS;
    if (!has_prefix_ignoring_case(url, "http://")) return CLI_WS_URL_INVALID;
    const char *authority = url + strlen("http://");
    size_t authority_length = strcspn(authority, "/?#");
    const char *rest = authority + authority_length;
    if (authority_length == 0 || memchr(authority, '@', authority_length))
        return CLI_WS_URL_INVALID;

    const char *host = authority, *port = NULL;
    size_t host_length;
    if (authority[0] == '[') { /* [IPv6]:port */
        const char *close = memchr(authority, ']', authority_length);
        if (!close) return CLI_WS_URL_INVALID;
        host = authority + 1;
        host_length = (size_t)(close - host);
        const char *after = close + 1;
        if (after < rest && *after != ':') return CLI_WS_URL_INVALID;
        if (after < rest) port = after + 1;
    } else {
        const char *colon = memchr(authority, ':', authority_length);
        host_length = colon ? (size_t)(colon - authority) : authority_length;
        if (colon) port = colon + 1;
    }
    size_t port_length = port ? (size_t)(rest - port) : 0;
    if (host_length == 0 ||
        (port && (port_length == 0 || port_length > 5 || strspn(port, "0123456789") < port_length)))
        return CLI_WS_URL_INVALID;

    text_append(&endpoint->host, host, host_length);
    if (port)
        text_append(&endpoint->port, port, port_length);
    else
        text_append_cstring(&endpoint->port, "80");
    text_append(&endpoint->authority, authority, authority_length);
    /* The URL's own path (a herald behind a path prefix), without its trailing slashes. */
    size_t path_length = strcspn(rest, "?#");
    while (path_length > 0 && rest[path_length - 1] == '/')
        path_length--;
    text_append(&endpoint->path, rest, path_length);
    text_append_cstring(&endpoint->path, endpoint_path);
    return CLI_WS_URL_OK;
}

/* ---- client state ----------------------------------------------------------------------- */

void cli_ws_init(cli_ws_client *client) {
    memset(client, 0, sizeof *client);
    client->socket_fd = -1;
    text_init(&client->input);
    text_init(&client->message);
    text_init(&client->close_reason);
    text_init(&client->error_body);
    text_init(&client->error);
}

static void disconnect(cli_ws_client *client) {
    if (client->socket_fd >= 0) close(client->socket_fd);
    client->socket_fd = -1;
}

void cli_ws_free(cli_ws_client *client) {
    disconnect(client);
    text_free(&client->input);
    text_free(&client->message);
    text_free(&client->close_reason);
    text_free(&client->error_body);
    text_free(&client->error);
}

/* Forgets everything of the previous connection. */
static void reset_state(cli_ws_client *client) {
    disconnect(client);
    text_clear(&client->input);
    text_clear(&client->message);
    text_clear(&client->close_reason);
    text_clear(&client->error_body);
    text_clear(&client->error);
    client->input_offset = 0;
    client->message_open = false;
    client->close_sent = false;
    client->close_received = false;
    client->failed = false;
    client->close_code = 0;
    client->http_status = 0;
    client->ping_outstanding = false;
}

static cli_ws_status set_error(cli_ws_client *client, cli_ws_status status, const char *format,
                               const char *detail) {
    /* A lost or failed connection is past a closing handshake. */
    if (status == CLI_WS_LOST || status == CLI_WS_PROTOCOL_ERROR) client->failed = true;
    text_clear(&client->error);
    text_printf(&client->error, format, detail);
    return status;
}

/* ---- socket I/O ------------------------------------------------------------------------- */

static bool send_all(cli_ws_client *client, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t sent = send(client->socket_fd, bytes, length, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            set_error(client, CLI_WS_LOST, "%s",
                      sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                          ? "the server stopped reading"
                          : strerror(sent < 0 ? errno : EPIPE));
            return false;
        }
        bytes += sent;
        length -= (size_t)sent;
    }
    return true;
}

typedef enum { READ_DATA, READ_TIMEOUT, READ_INTERRUPTED, READ_END, READ_ERROR } read_result;

/* Waits up to timeout_ms for bytes and appends what arrives to client->input. */
static read_result read_some(cli_ws_client *client, long timeout_ms, bool stop_on_interrupt) {
    struct pollfd descriptor = {.fd = client->socket_fd, .events = POLLIN};
    int ready = poll(&descriptor, 1, (int)(timeout_ms < 0 ? 0 : timeout_ms));
    if (ready < 0 && errno == EINTR)
        return stop_on_interrupt && cli_interrupted ? READ_INTERRUPTED : READ_TIMEOUT;
    if (ready < 0) {
        set_error(client, CLI_WS_LOST, "%s", strerror(errno));
        return READ_ERROR;
    }
    if (ready == 0) return READ_TIMEOUT;
    char chunk[WS_READ_CHUNK];
    ssize_t received = recv(client->socket_fd, chunk, sizeof chunk, 0);
    if (received < 0 && (errno == EINTR || errno == EAGAIN)) return READ_TIMEOUT;
    if (received < 0) {
        set_error(client, CLI_WS_LOST, "%s", strerror(errno));
        return READ_ERROR;
    }
    if (received == 0) {
        set_error(client, CLI_WS_LOST, "%s", "the server closed the connection");
        return READ_END;
    }
    text_append(&client->input, chunk, (size_t)received);
    if (text_failed(&client->input)) {
        set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
        return READ_ERROR;
    }
    client->last_heard_ms = monotonic_ms();
    client->ping_outstanding = false; /* any byte proves the connection alive */
    return READ_DATA;
}

/* Connects to one address within the deadline (a non-blocking connect, so that it can time out
 * and be interrupted). Returns the socket or -1 with errno set. */
static int connect_address(const struct addrinfo *address, long long deadline_ms) {
    int fd = socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) return -1;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int result = connect(fd, address->ai_addr, address->ai_addrlen);
    if (result < 0 && errno == EINPROGRESS) {
        for (;;) {
            long long remaining = deadline_ms - monotonic_ms();
            if (remaining <= 0 || cli_interrupted) {
                close(fd);
                errno = cli_interrupted ? EINTR : ETIMEDOUT;
                return -1;
            }
            struct pollfd descriptor = {.fd = fd, .events = POLLOUT};
            int ready = poll(&descriptor, 1, (int)(remaining < 1000 ? remaining : 1000));
            if (ready < 0 && errno != EINTR) break;
            if (ready > 0) break;
        }
        int socket_error = 0;
        socklen_t length = sizeof socket_error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &socket_error, &length) < 0) socket_error = errno;
        result = socket_error ? -1 : 0;
        if (socket_error) errno = socket_error;
    }
    if (result < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    fcntl(fd, F_SETFL, flags);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval send_timeout = {.tv_sec = WS_SEND_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    return fd;
}

static cli_ws_status open_socket(cli_ws_client *client, cli_ws_endpoint *endpoint) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    const char *host = text_cstring(&endpoint->host);
    const char *port = text_cstring(&endpoint->port);
    if (!host || !port) return set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
    int lookup = getaddrinfo(host, port, &hints, &addresses);
    if (lookup != 0)
        return set_error(client, CLI_WS_UNREACHABLE, "%s",
                         lookup == EAI_SYSTEM ? strerror(errno) : gai_strerror(lookup));
    long long deadline = monotonic_ms() + WS_CONNECT_TIMEOUT_MS;
    int last_error = ECONNREFUSED;
    for (const struct addrinfo *address = addresses; address && client->socket_fd < 0;
         address = address->ai_next) {
        client->socket_fd = connect_address(address, deadline);
        if (client->socket_fd < 0) last_error = errno;
    }
    freeaddrinfo(addresses);
    if (client->socket_fd >= 0) return CLI_WS_OK;
    if (cli_interrupted) return CLI_WS_INTERRUPTED;
    return set_error(client, CLI_WS_UNREACHABLE, "%s", strerror(last_error));
}

/* ---- handshake -------------------------------------------------------------------------- */

/* The value of the first header called name in the block [headers, end), trimmed; NULL when
 * absent. */
static const char *find_header(const char *headers, const char *end, const char *name,
                               size_t *value_length) {
    size_t name_length = strlen(name);
    const char *line = headers;
    while (line < end) {
        const char *line_end = line;
        while (line_end + 1 < end && !(line_end[0] == '\r' && line_end[1] == '\n'))
            line_end++;
        if (line_end + 1 >= end) line_end = end;
        if ((size_t)(line_end - line) > name_length && line[name_length] == ':' &&
            strncasecmp(line, name, name_length) == 0) {
            const char *value = line + name_length + 1;
            while (value < line_end && (*value == ' ' || *value == '\t'))
                value++;
            const char *value_end = line_end;
            while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
                value_end--;
            *value_length = (size_t)(value_end - value);
            return value;
        }
        line = line_end + 2;
    }
    return NULL;
}

static bool equals_ignoring_case(const char *value, size_t length, const char *expected) {
    return length == strlen(expected) && strncasecmp(value, expected, length) == 0;
}

/* True when the comma-separated list holds token (case-insensitive). */
static bool list_has_token(const char *value, size_t length, const char *token) {
    size_t position = 0;
    while (position < length) {
        size_t end = position;
        while (end < length && value[end] != ',')
            end++;
        size_t start = position;
        while (start < end && (value[start] == ' ' || value[start] == '\t'))
            start++;
        size_t stop = end;
        while (stop > start && (value[stop - 1] == ' ' || value[stop - 1] == '\t'))
            stop--;
        if (equals_ignoring_case(value + start, stop - start, token)) return true;
        position = end + 1;
    }
    return false;
}

/* base64(SHA-1(key + GUID)), RFC 6455 §4.2.2. */
static bool expected_accept(const char *key, char *out, size_t out_size) {
    text input;
    text_init(&input);
    text_append_cstring(&input, key);
    text_append_cstring(&input, WS_GUID);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    bool ok = !text_failed(&input) &&
              EVP_Digest(input.data, input.length, digest, &digest_length, EVP_sha1(), NULL) == 1 &&
              BASE64_LENGTH(digest_length) + 1 <= out_size;
    if (ok) base64_encode(digest, digest_length, out);
    text_free(&input);
    return ok;
}

/* Reads the error body of a refused handshake (Content-Length, else up to the end). */
static void read_error_body(cli_ws_client *client, const char *headers, const char *headers_end,
                            long long deadline_ms) {
    size_t value_length = 0;
    const char *value = find_header(headers, headers_end, "Content-Length", &value_length);
    size_t wanted = WS_MAX_ERROR_BODY;
    if (value && value_length > 0 && value_length < 10 &&
        strspn(value, "0123456789") >= value_length) {
        size_t declared = (size_t)strtoul(value, NULL, 10);
        if (declared < wanted) wanted = declared;
    }
    size_t body_start = client->input_offset;
    while (client->input.length - body_start < wanted) {
        long long remaining = deadline_ms - monotonic_ms();
        if (remaining <= 0 || read_some(client, remaining, true) != READ_DATA) break;
    }
    size_t available = client->input.length - body_start;
    text_append(&client->error_body, client->input.data + body_start,
                available < wanted ? available : wanted);
}

static cli_ws_status check_upgrade(cli_ws_client *client, const char *headers, const char *end,
                                   const char *key) {
    size_t length = 0;
    const char *value = find_header(headers, end, "Upgrade", &length);
    if (!value || !equals_ignoring_case(value, length, "websocket"))
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                         "the 101 answer lacks 'Upgrade: websocket'");
    value = find_header(headers, end, "Connection", &length);
    if (!value || !list_has_token(value, length, "upgrade"))
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                         "the 101 answer lacks 'Connection: Upgrade'");
    char accept[BASE64_LENGTH(EVP_MAX_MD_SIZE) + 1];
    if (!expected_accept(key, accept, sizeof accept))
        return set_error(client, CLI_WS_NO_MEMORY, "%s", "cannot compute SHA-1");
    value = find_header(headers, end, "Sec-WebSocket-Accept", &length);
    if (!value || length != strlen(accept) || memcmp(value, accept, length) != 0)
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                         "Sec-WebSocket-Accept does not match the key sent");
    value = find_header(headers, end, "Sec-WebSocket-Protocol", &length);
    if (value && !(length == strlen(WS_SUBPROTOCOL) && memcmp(value, WS_SUBPROTOCOL, length) == 0))
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                         "the server chose a subprotocol other than " WS_SUBPROTOCOL);
    if (find_header(headers, end, "Sec-WebSocket-Extensions", &length))
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                         "the server chose an extension that was not offered");
    return CLI_WS_OK;
}

static cli_ws_status handshake(cli_ws_client *client, const cli_ws_endpoint *endpoint,
                               const char *token) {
    unsigned char nonce[16];
    char key[BASE64_LENGTH(sizeof nonce) + 1];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return set_error(client, CLI_WS_NO_MEMORY, "%s", "no random bytes for the key");
    base64_encode(nonce, sizeof nonce, key);

    text request;
    text_init(&request);
    text_append_cstring(&request, "GET ");
    text_append(&request, endpoint->path.data, endpoint->path.length);
    text_append_cstring(&request, " HTTP/1.1\r\nHost: ");
    text_append(&request, endpoint->authority.data, endpoint->authority.length);
    text_printf(&request,
                "\r\nUser-Agent: herald/" HERALD_VERSION "\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: " WS_SUBPROTOCOL "\r\n",
                key);
    if (token) text_printf(&request, "Authorization: Bearer %s\r\n", token);
    text_append_cstring(&request, "\r\n");
    bool sent = !text_failed(&request) && send_all(client, request.data, request.length);
    bool out_of_memory = text_failed(&request);
    text_free(&request);
    if (out_of_memory) return set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
    if (!sent) return CLI_WS_LOST;

    long long deadline = monotonic_ms() + WS_HANDSHAKE_TIMEOUT_MS;
    size_t header_block_length = 0; /* up to and including the blank line */
    while (!header_block_length) {
        if (client->input.length > WS_MAX_HANDSHAKE_HEADERS)
            return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s",
                             "the handshake answer is too long");
        long long remaining = deadline - monotonic_ms();
        if (remaining <= 0)
            return set_error(client, CLI_WS_LOST, "%s", "no answer to the WebSocket handshake");
        read_result result = read_some(client, remaining < 1000 ? remaining : 1000, true);
        if (result == READ_INTERRUPTED) return CLI_WS_INTERRUPTED;
        if (result == READ_END || result == READ_ERROR)
            return text_failed(&client->input) ? CLI_WS_NO_MEMORY : CLI_WS_LOST;
        const char *data = client->input.data;
        for (size_t i = 3; data && i < client->input.length && !header_block_length; i++)
            if (memcmp(data + i - 3, "\r\n\r\n", 4) == 0) header_block_length = i + 1;
    }

    const char *response = text_cstring(&client->input); /* NUL-terminated for sscanf */
    if (!response) return set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
    client->input_offset = header_block_length; /* frames may follow at once */
    const char *blank_line = response + header_block_length - 4;
    int status = 0;
    if (sscanf(response, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 100)
        return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s", "the answer is not HTTP/1.1");
    const char *headers = memchr(response, '\n', (size_t)(blank_line - response) + 2) + 1;
    const char *headers_end = blank_line + 2;
    if (status != 101) {
        client->http_status = status;
        read_error_body(client, headers, headers_end, deadline);
        return CLI_WS_REFUSED;
    }
    cli_ws_status checked = check_upgrade(client, headers, headers_end, key);
    if (checked != CLI_WS_OK) return checked;
    client->last_heard_ms = monotonic_ms();
    return CLI_WS_OK;
}

cli_ws_status cli_ws_connect(cli_ws_client *client, cli_ws_endpoint *endpoint, const char *token) {
    reset_state(client);
    cli_ws_status status = open_socket(client, endpoint);
    if (status == CLI_WS_OK) status = handshake(client, endpoint, token);
    if (status != CLI_WS_OK) disconnect(client);
    return status;
}

/* ---- frames ----------------------------------------------------------------------------- */

static bool send_frame(cli_ws_client *client, int opcode, const char *payload, size_t length) {
    unsigned char header[14];
    size_t header_length = 0;
    header[header_length++] = (unsigned char)(0x80 | opcode); /* FIN: never fragmented */
    if (length < 126) {
        header[header_length++] = (unsigned char)(0x80 | length);
    } else if (length <= 0xFFFF) {
        header[header_length++] = 0x80 | 126;
        header[header_length++] = (unsigned char)(length >> 8);
        header[header_length++] = (unsigned char)length;
    } else {
        header[header_length++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            header[header_length++] = (unsigned char)((uint64_t)length >> shift);
    }
    unsigned char mask[4];
    if (RAND_bytes(mask, sizeof mask) != 1) {
        set_error(client, CLI_WS_LOST, "%s", "no random bytes for the frame mask");
        return false;
    }
    memcpy(header + header_length, mask, sizeof mask);
    header_length += sizeof mask;

    text frame;
    text_init(&frame);
    text_append(&frame, header, header_length);
    text_append(&frame, payload, length);
    bool ok = !text_failed(&frame);
    if (ok) {
        unsigned char *masked = (unsigned char *)frame.data + header_length;
        for (size_t i = 0; i < length; i++)
            masked[i] ^= mask[i & 3];
        ok = send_all(client, frame.data, frame.length);
    } else {
        set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
    }
    text_free(&frame);
    return ok;
}

bool cli_ws_send_text(cli_ws_client *client, const char *data, size_t length) {
    if (client->socket_fd < 0 || client->close_sent) {
        set_error(client, CLI_WS_LOST, "%s", "the connection is closing");
        return false;
    }
    return send_frame(client, WS_OPCODE_TEXT, data, length);
}

static bool send_close_frame(cli_ws_client *client, unsigned code, const char *reason,
                             size_t reason_length) {
    if (client->close_sent) return true;
    client->close_sent = true;
    char payload[125];
    size_t length = 0;
    if (code) {
        payload[length++] = (char)(code >> 8);
        payload[length++] = (char)(code & 0xFF);
        if (reason_length > sizeof payload - 2) reason_length = sizeof payload - 2;
        if (reason_length) memcpy(payload + length, reason, reason_length);
        length += reason_length;
    }
    return send_frame(client, WS_OPCODE_CLOSE, payload, length);
}

/* The server broke the protocol: close with code and give up on the connection. */
static cli_ws_status fail_connection(cli_ws_client *client, unsigned code, const char *reason) {
    send_close_frame(client, code, NULL, 0); /* best effort: the reason below is what counts */
    return set_error(client, CLI_WS_PROTOCOL_ERROR, "%s", reason);
}

typedef struct ws_frame {
    bool fin;
    int opcode;
    const char *payload;
    size_t length;
} ws_frame;

/* Takes one complete frame from the input: 1 taken, 0 more bytes needed, -1 the connection was
 * failed (*status says how). */
static int take_frame(cli_ws_client *client, ws_frame *frame, cli_ws_status *status) {
    const unsigned char *bytes = (const unsigned char *)client->input.data + client->input_offset;
    size_t available = client->input.length - client->input_offset;
    if (available < 2) return 0;
    frame->fin = bytes[0] & 0x80;
    frame->opcode = bytes[0] & 0x0F;
    size_t header_length = 2;
    uint64_t length = bytes[1] & 0x7F;
    if (bytes[0] & 0x70) {
        *status = fail_connection(client, WS_CLOSE_PROTOCOL_ERROR,
                                  "a frame with reserved bits set (no extension was negotiated)");
        return -1;
    }
    if (bytes[1] & 0x80) {
        *status =
            fail_connection(client, WS_CLOSE_PROTOCOL_ERROR, "a masked frame from the server");
        return -1;
    }
    bool known = frame->opcode <= WS_OPCODE_BINARY ||
                 (frame->opcode >= WS_OPCODE_CLOSE && frame->opcode <= WS_OPCODE_PONG);
    if (!known) {
        *status =
            fail_connection(client, WS_CLOSE_PROTOCOL_ERROR, "a frame with an unknown opcode");
        return -1;
    }
    if (length == 126) {
        if (available < 4) return 0;
        length = (uint64_t)bytes[2] << 8 | bytes[3];
        header_length = 4;
    } else if (length == 127) {
        if (available < 10) return 0;
        length = 0;
        for (int i = 2; i < 10; i++)
            length = length << 8 | bytes[i];
        header_length = 10;
    }
    bool control = frame->opcode >= WS_OPCODE_CLOSE;
    if (control && (!frame->fin || length > 125)) {
        *status = fail_connection(client, WS_CLOSE_PROTOCOL_ERROR,
                                  "a fragmented or oversized control frame");
        return -1;
    }
    if (length > WS_MAX_MESSAGE || (!control && client->message.length + length > WS_MAX_MESSAGE)) {
        *status = fail_connection(client, WS_CLOSE_MESSAGE_TOO_BIG, "a message over 64 MiB");
        return -1;
    }
    if (available - header_length < length) return 0;
    frame->payload = (const char *)bytes + header_length;
    frame->length = (size_t)length;
    client->input_offset += header_length + (size_t)length;
    return 1;
}

/* Drops the consumed input so the buffer does not grow with the connection's lifetime. */
static void compact_input(cli_ws_client *client) {
    if (client->input_offset == client->input.length) {
        text_clear(&client->input);
        client->input_offset = 0;
    } else if (client->input_offset >= WS_READ_CHUNK) {
        size_t rest = client->input.length - client->input_offset;
        memmove(client->input.data, client->input.data + client->input_offset, rest);
        client->input.length = rest;
        client->input_offset = 0;
    }
}

/* Handles one frame; CLI_WS_OK with *complete set when a text message is ready. */
static cli_ws_status handle_frame(cli_ws_client *client, const ws_frame *frame, bool *complete) {
    switch (frame->opcode) {
    case WS_OPCODE_PING:
        if (!client->close_sent &&
            !send_frame(client, WS_OPCODE_PONG, frame->payload, frame->length))
            return CLI_WS_LOST;
        return CLI_WS_OK;
    case WS_OPCODE_PONG:
        return CLI_WS_OK;
    case WS_OPCODE_CLOSE: {
        if (frame->length == 1)
            return fail_connection(client, WS_CLOSE_PROTOCOL_ERROR, "a close frame of one byte");
        client->close_received = true;
        client->close_code =
            frame->length >= 2
                ? ((unsigned char)frame->payload[0] << 8 | (unsigned char)frame->payload[1])
                : 1005; /* "no status received" */
        text_clear(&client->close_reason);
        if (frame->length > 2)
            text_append(&client->close_reason, frame->payload + 2, frame->length - 2);
        /* Echo the code (RFC 6455 §5.5.1); the server then closes the TCP connection. */
        send_close_frame(client, frame->length >= 2 ? (unsigned)client->close_code : 0, NULL, 0);
        return CLI_WS_CLOSED;
    }
    case WS_OPCODE_BINARY:
        return fail_connection(client, WS_CLOSE_UNSUPPORTED_DATA, "a binary message");
    case WS_OPCODE_TEXT:
        if (client->message_open)
            return fail_connection(client, WS_CLOSE_PROTOCOL_ERROR,
                                   "a new message inside an unfinished one");
        text_clear(&client->message);
        client->message_open = true;
        break;
    default: /* continuation */
        if (!client->message_open)
            return fail_connection(client, WS_CLOSE_PROTOCOL_ERROR,
                                   "a continuation frame without a message");
    }
    text_append(&client->message, frame->payload, frame->length);
    if (text_failed(&client->message))
        return set_error(client, CLI_WS_NO_MEMORY, "%s", "out of memory");
    if (frame->fin) {
        client->message_open = false;
        *complete = true;
    }
    return CLI_WS_OK;
}

static cli_ws_status receive(cli_ws_client *client, long timeout_ms, bool stop_on_interrupt) {
    if (client->socket_fd < 0 || client->failed)
        return set_error(client, CLI_WS_LOST, "%s", "not connected");
    if (client->close_received) return CLI_WS_CLOSED;
    long long deadline = monotonic_ms() + timeout_ms;
    for (;;) {
        ws_frame frame;
        cli_ws_status status = CLI_WS_OK;
        int taken;
        while ((taken = take_frame(client, &frame, &status)) == 1) {
            bool complete = false;
            status = handle_frame(client, &frame, &complete);
            if (status != CLI_WS_OK || complete) {
                compact_input(client);
                return status;
            }
        }
        if (taken < 0) return status;
        compact_input(client);
        if (stop_on_interrupt && cli_interrupted) return CLI_WS_INTERRUPTED;

        long long now = monotonic_ms();
        if (now >= deadline) return CLI_WS_TIMEOUT;
        /* Keep-alive: a silent server is pinged, and given up when it stays silent. */
        long long ping_due = client->last_heard_ms + WS_PING_AFTER_MS;
        if (!client->ping_outstanding && now >= ping_due && !client->close_sent) {
            if (!send_frame(client, WS_OPCODE_PING, NULL, 0)) return CLI_WS_LOST;
            client->ping_outstanding = true;
            client->ping_sent_ms = now;
        }
        long long give_up = client->ping_sent_ms + WS_PONG_WAIT_MS;
        if (client->ping_outstanding && now >= give_up)
            return set_error(client, CLI_WS_LOST, "%s", "no answer from the server for 45 s");
        long long wake = deadline;
        if (!client->ping_outstanding && ping_due < wake) wake = ping_due;
        if (client->ping_outstanding && give_up < wake) wake = give_up;
        long wait = (long)(wake - now);
        if (wait > 1000) wait = 1000; /* bounds the delay of a signal landing before poll */
        read_result result = read_some(client, wait, stop_on_interrupt);
        if (result == READ_INTERRUPTED) return CLI_WS_INTERRUPTED;
        if (result == READ_END || result == READ_ERROR)
            return text_failed(&client->input) ? CLI_WS_NO_MEMORY : CLI_WS_LOST;
    }
}

cli_ws_status cli_ws_receive(cli_ws_client *client, long timeout_ms) {
    return receive(client, timeout_ms, true);
}

void cli_ws_close(cli_ws_client *client, unsigned code) {
    if (client->socket_fd < 0) return;
    if (!client->failed && !client->close_received && send_close_frame(client, code, NULL, 0)) {
        /* Wait (briefly) for the server's close, discarding what comes before it. */
        long long deadline = monotonic_ms() + WS_CLOSE_WAIT_MS;
        for (;;) {
            long long remaining = deadline - monotonic_ms();
            if (remaining <= 0 || receive(client, (long)remaining, false) != CLI_WS_OK) break;
        }
    }
    disconnect(client);
}

/* ---- reporting -------------------------------------------------------------------------- */

void cli_ws_describe(cli_ws_client *client, cli_ws_status status, const char *url, text *out) {
    const char *error = client->error.length ? text_cstring(&client->error) : NULL;
    switch (status) {
    case CLI_WS_OK:
        text_append_cstring(out, "connected");
        break;
    case CLI_WS_TIMEOUT:
        text_printf(out, "no answer from %s", url);
        break;
    case CLI_WS_INTERRUPTED:
        text_append_cstring(out, "interrupted");
        break;
    case CLI_WS_UNREACHABLE:
        text_printf(out, "cannot reach %s: %s", url, error ? error : "connection failed");
        break;
    case CLI_WS_REFUSED:
        text_printf(out, "%s refused the WebSocket (%ld)", url, client->http_status);
        break;
    case CLI_WS_CLOSED:
        text_printf(out, "the server closed the WebSocket (%d", client->close_code);
        if (client->close_reason.length) {
            text_append_cstring(out, ": ");
            text_append(out, client->close_reason.data, client->close_reason.length);
        }
        text_append_char(out, ')');
        break;
    case CLI_WS_LOST:
        text_printf(out, "connection to %s lost: %s", url, error ? error : "unknown error");
        break;
    case CLI_WS_PROTOCOL_ERROR:
        text_printf(out, "WebSocket protocol error from %s: %s", url, error ? error : "unknown");
        break;
    case CLI_WS_NO_MEMORY:
        text_append_cstring(out, "out of memory");
        break;
    }
}

void cli_ws_report(cli_ws_client *client, cli_ws_status status, const char *url) {
    if (status == CLI_WS_REFUSED) {
        cli_report_http_error(client->http_status, client->error_body.data,
                              client->error_body.length);
        return;
    }
    text description;
    text_init(&description);
    cli_ws_describe(client, status, url, &description);
    const char *line = text_cstring(&description);
    fprintf(stderr, "herald: %s\n", line ? line : "out of memory");
    text_free(&description);
}

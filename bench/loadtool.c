/*
 * herald-load: a load generator for herald and its peers (Nchan, a Node `ws` server).
 *
 *   herald-load sse      -n SUBS -m EVENTS [options]   SSE fan-out
 *   herald-load longpoll -n SUBS -m EVENTS [options]   long-poll fan-out
 *   herald-load ws       -n SUBS -m EVENTS [options]   WebSocket fan-out
 *   herald-load pub      -m EVENTS --publishers W      publish throughput (no subscribers)
 *
 * Subscribers live in forked child processes (--procs), each with its own epoll loop; the
 * parent process publishes and coordinates through a shared memory page. Every published body
 * is {"t":<CLOCK_MONOTONIC ns at send>,"seq":<n>,"pad":"xxx"} padded to --size bytes; the
 * subscribers parse their streams incrementally, take the latency from "t" and check loss and
 * duplicates per connection with a bitmap over "seq". Nothing is allocated per message: the
 * connections, their buffers and the bitmaps are allocated once, before the run.
 *
 * A protocol is a struct proto (request builder plus response callbacks) over one small HTTP/1.1
 * response reader; a new one is a new struct proto and a case in main(). WebSocket is one: its
 * on_head accepts the 101 and marks the connection upgraded, and every later byte goes to its
 * frame parser (links with zlib for --ws-deflate).
 *
 * At the end it prints one line of JSON on stdout (progress and errors go to stderr).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_PROCS 64
#define MAX_PIDS 16
#define RBUF_SIZE (256 * 1024)
#define SUB_BUF_SIZE 2048 /* request out, then response headers in */
#define REQ_HEAD_MAX 1024
#define MAX_EVENTS 1024

/* ------------------------------------------------------------------ time */

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t g_now; /* refreshed after every read, used as the receive time */

/* ------------------------------------------------------------------ histogram */

/* Log-linear buckets over microseconds: exact below 64 us, then 32 buckets per power of two
 * (about 3 % resolution), up to 2^63 us. Fixed size, no allocation. */
#define HIST_BUCKETS 1920

static inline unsigned hist_index(uint64_t us) {
    if (us < 64) return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - 5u;
    return shift * 32u + (unsigned)(us >> shift);
}

static uint64_t hist_lower(unsigned idx) {
    if (idx < 64) return idx;
    unsigned shift = idx / 32u - 1u;
    return (uint64_t)(idx - shift * 32u) << shift;
}

static inline void hist_add(uint64_t *h, uint64_t ns) {
    h[hist_index(ns / 1000u)]++;
}

/* p in [0,1]; result in ms (bucket midpoint). */
static double hist_pct_ms(const uint64_t *h, double p) {
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += h[i];
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen > rank) {
            double lo = (double)hist_lower(i);
            double hi = (double)(i + 1 < HIST_BUCKETS ? hist_lower(i + 1) : hist_lower(i) + 1);
            return (lo + hi) / 2.0 / 1000.0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ options */

enum mode { MODE_SSE, MODE_LONGPOLL, MODE_PUB, MODE_WS };
enum target { T_HERALD, T_NCHAN, T_NODE };
static const char *const target_names[] = {"herald", "nchan", "node"};

static struct {
    enum mode mode;
    enum target target;
    const char *host;
    int port;
    char topic[160];
    const char *sub_path; /* printf format with one %s for the topic */
    const char *pub_path;
    long subs;
    long events;
    double rate;
    int publishers;
    long max_lag;
    int size;
    int src_addrs;
    int procs;
    int connect_batch;
    int settle_ms;
    double drain_s;
    double duration_s;
    double timeout_s;
    double ready_timeout_s;
    int lp_wait;
    int npids;
    pid_t pids[MAX_PIDS];
    const char *label;
    bool progress;
    bool ws_json;    /* herald: the /v1/ws JSON protocol instead of raw /v1/topics/{t}/ws */
    bool ws_deflate; /* offer permessage-deflate (no context takeover either way) */
} opt;

static const char *mode_name(void) {
    return opt.mode == MODE_SSE        ? "sse"
           : opt.mode == MODE_LONGPOLL ? "longpoll"
           : opt.mode == MODE_WS       ? "ws"
                                       : "pub";
}

/* ------------------------------------------------------------------ shared stats */

struct stats {
    uint64_t connected; /* subscribers ready (SSE: 200 + headers; long-poll: 1st request sent) */
    uint64_t connect_failures; /* never became ready */
    uint64_t disconnects;      /* SSE stream ended by the server after it was ready */
    uint64_t reconnects;       /* long-poll: connection re-opened */
    uint64_t bad_status;       /* responses with an unexpected status */
    uint64_t protocol_errors;
    uint64_t deliveries;
    uint64_t unique;
    uint64_t dups;
    uint64_t out_of_range; /* a seq we never published */
    uint64_t first_ns, last_ns, max_lat_ns;
    uint64_t ws_deflate; /* WebSocket subscribers with permessage-deflate negotiated */
    uint64_t ws_pings;   /* pings answered */
    uint64_t ws_zmsgs;   /* compressed messages inflated */
    uint64_t ready_done; /* every connection attempt of this process resolved */
    uint64_t finished;
    double cpu_run_s; /* CPU used by the process from the start of publishing to the end */
    uint64_t hist[HIST_BUCKETS];
};

struct shared {
    int phase; /* PH_* */
    uint64_t t_first_pub;
    struct stats p[MAX_PROCS];
};

enum { PH_CONNECT, PH_RUN, PH_STOP };

static struct shared *shm;
static struct stats st; /* this process's counters, copied into shm->p[me] */
static int me = -1;

#define LD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static void stats_flush(bool with_hist) {
    if (me < 0) return;
    struct stats *d = &shm->p[me];
    ST(d->connected, st.connected);
    ST(d->connect_failures, st.connect_failures);
    ST(d->disconnects, st.disconnects);
    ST(d->reconnects, st.reconnects);
    ST(d->bad_status, st.bad_status);
    ST(d->protocol_errors, st.protocol_errors);
    ST(d->deliveries, st.deliveries);
    ST(d->unique, st.unique);
    ST(d->dups, st.dups);
    ST(d->out_of_range, st.out_of_range);
    ST(d->ws_deflate, st.ws_deflate);
    ST(d->ws_pings, st.ws_pings);
    ST(d->ws_zmsgs, st.ws_zmsgs);
    ST(d->first_ns, st.first_ns);
    ST(d->last_ns, st.last_ns);
    ST(d->max_lat_ns, st.max_lat_ns);
    if (with_hist) memcpy(d->hist, st.hist, sizeof st.hist);
}

static int err_budget = 8;
static void note(const char *fmt, ...) {
    if (err_budget <= 0) return;
    if (--err_budget == 0) {
        fprintf(stderr, "herald-load[%d]: (further errors not shown)\n", (int)getpid());
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "herald-load[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "herald-load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------------ connections */

enum cstate { C_CLOSED, C_CONNECTING, C_WRITING, C_READING, C_IDLE };
enum hstate { H_HEAD, H_LEN, H_CSIZE, H_CDATA, H_CCRLF, H_CTRAILER, H_EOF, H_UPGRADED };

struct conn;

struct proto {
    /* Build the next request into c->buf (c->wlen). NULL: connect and stay idle (publisher). */
    int (*request)(struct conn *c);
    void (*on_header)(struct conn *c, const char *name, size_t nl, const char *val, size_t vl);
    /* After the status line and headers; return false to drop the connection. */
    bool (*on_head)(struct conn *c);
    void (*on_body)(struct conn *c, const char *p, size_t n);
    void (*on_complete)(struct conn *c);
    void (*on_close)(struct conn *c); /* the socket is gone (EOF, error, or protocol error) */
};

struct conn {
    int fd;
    uint32_t idx; /* index in this process (bitmap row) */
    uint32_t src; /* source address: 127.0.0.(src+1) */
    const struct proto *proto;
    uint8_t state, hstate;
    bool ready; /* counted as connected */
    bool dead;  /* refused by the server: do not reconnect */
    bool chunked, has_len, conn_close, in_ext;
    char *buf;
    uint32_t bufcap, wlen, woff, hlen;
    int status;
    uint64_t left;
    /* value scanner ("t", "seq", "next" keys in JSON text) */
    uint8_t sc_state, sc_key, sc_pos;
    uint64_t sc_num;
    /* SSE line reader */
    uint8_t line_state, pfx_len;
    char pfx[6];
    bool ev_has_t, ev_has_seq;
    uint64_t ev_t, ev_seq;
    /* long-poll cursor */
    char cursor[48];
    char lastmod[48];
    /* publisher */
    uint64_t sent_ns;
    /* WebSocket (after the 101, c->buf is reused: see WS_OUT_OFF and friends) */
    bool upgraded;    /* set by on_head: the rest of the stream is WebSocket frames */
    bool ws_accept;   /* Sec-WebSocket-Accept matched */
    bool ws_deflate;  /* permessage-deflate negotiated */
    bool ws_nctx;     /* ... with server_no_context_takeover */
    bool ws_in_frame; /* header read, payload of ws_left bytes pending */
    bool ws_fin, ws_msg, ws_z, ws_zover, ws_closing, ws_wout;
    uint8_t ws_op, ws_hlen, ws_hneed, ws_match;
    uint8_t ws_hdr[14];
    uint16_t ws_clen, ws_zlen, ws_olen, ws_ooff;
    uint64_t ws_left;
};

static int ep = -1;
static char *rbuf;
static uint8_t *bitmap; /* per process: subs x events bits */
static uint64_t bitmap_row;

static void conn_close(struct conn *c);
static void ws_flush_out(struct conn *c);
static double self_cpu(int who);
static void conn_want(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static bool conn_open(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note("socket: %s", strerror(errno));
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + c->src);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
        note("bind 127.0.0.%u: %s", c->src + 1, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return false;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &dst.sin_addr);
    c->state = C_CONNECTING;
    c->hstate = H_HEAD;
    c->hlen = c->wlen = c->woff = 0;
    int r = connect(c->fd, (struct sockaddr *)&dst, sizeof dst);
    if (r < 0 && errno != EINPROGRESS) {
        note("connect: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        c->state = C_CLOSED;
        return false;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add: %s", strerror(errno));
    return true;
}

/* Write c->buf[woff..wlen); on completion switch to reading the response. */
static void conn_flush(struct conn *c) {
    while (c->woff < c->wlen) {
        ssize_t w = send(c->fd, c->buf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                if (c->state != C_WRITING) conn_want(c, EPOLLOUT | EPOLLIN);
                c->state = C_WRITING;
                return;
            }
            note("send: %s", strerror(errno));
            conn_close(c);
            return;
        }
        c->woff += (uint32_t)w;
    }
    bool was_writing = c->state == C_WRITING || c->state == C_CONNECTING;
    c->state = C_READING;
    c->hstate = H_HEAD;
    c->hlen = 0;
    if (was_writing) conn_want(c, EPOLLIN);
}

static void conn_send_request(struct conn *c) {
    c->woff = 0;
    if (c->proto->request(c) < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = C_CLOSED;
    if (c->proto->on_close) c->proto->on_close(c);
}

/* ------------------------------------------------------------------ HTTP/1.1 response reader */

static void http_complete(struct conn *c) {
    c->hstate = H_HEAD;
    c->hlen = 0;
    c->proto->on_complete(c);
}

static bool http_parse_head(struct conn *c) {
    char *p = c->buf, *end = c->buf + c->hlen;
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol || end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0) return false;
    c->status = atoi(p + 9);
    c->chunked = c->has_len = c->conn_close = false;
    c->left = 0;
    if (p[7] == '0') c->conn_close = true;
    p = eol + 1;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) break;
        char *le = eol;
        if (le > p && le[-1] == '\r') le--;
        if (le == p) break;
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            size_t nl = (size_t)(colon - p);
            char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(le - v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (nl == 17 && strncasecmp(p, "transfer-encoding", nl) == 0) {
                if (vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0) c->chunked = true;
            } else if (nl == 14 && strncasecmp(p, "content-length", nl) == 0) {
                c->has_len = true;
                c->left = strtoull(v, NULL, 10);
            } else if (nl == 10 && strncasecmp(p, "connection", nl) == 0) {
                if (vl == 5 && strncasecmp(v, "close", 5) == 0) c->conn_close = true;
            }
            if (c->proto->on_header) c->proto->on_header(c, p, nl, v, vl);
        }
        p = eol + 1;
    }
    return true;
}

/* Feeds response bytes; may close c. */
static void http_feed(struct conn *c, const char *p, size_t n) {
    while (n > 0 && c->fd >= 0) {
        if (c->state != C_READING) {
            note("unexpected %zu bytes from the server", n);
            st.protocol_errors++;
            conn_close(c);
            return;
        }
        switch (c->hstate) {
        case H_HEAD: {
            uint32_t old = c->hlen;
            size_t k = n;
            if (k > c->bufcap - 1 - old) k = c->bufcap - 1 - old;
            memcpy(c->buf + old, p, k);
            c->hlen = old + (uint32_t)k;
            uint32_t from = old > 3 ? old - 3 : 0;
            char *hdr_end = memmem(c->buf + from, c->hlen - from, "\r\n\r\n", 4);
            if (!hdr_end) {
                if (c->hlen >= c->bufcap - 1) {
                    note("response headers larger than %u bytes", c->bufcap);
                    st.protocol_errors++;
                    conn_close(c);
                    return;
                }
                return; /* consumed everything */
            }
            uint32_t head_len = (uint32_t)(hdr_end - c->buf) + 4;
            size_t used = head_len - old;
            p += used;
            n -= used;
            c->hlen = head_len;
            if (!http_parse_head(c)) {
                note("malformed response head");
                st.protocol_errors++;
                conn_close(c);
                return;
            }
            if (!c->proto->on_head(c)) {
                conn_close(c);
                return;
            }
            if (c->fd < 0) return;
            if (c->upgraded) {
                c->hstate = H_UPGRADED; /* 101: the bytes after the head are the new protocol */
            } else if (c->status == 204 || c->status == 304 ||
                       (c->status >= 100 && c->status < 200)) {
                http_complete(c);
            } else if (c->chunked) {
                c->hstate = H_CSIZE;
                c->left = 0;
                c->in_ext = false;
            } else if (c->has_len) {
                c->hstate = H_LEN;
                if (c->left == 0) http_complete(c);
            } else {
                c->hstate = H_EOF;
            }
            break;
        }
        case H_LEN: {
            size_t k = n < c->left ? n : (size_t)c->left;
            c->proto->on_body(c, p, k);
            p += k;
            n -= k;
            c->left -= k;
            if (c->left == 0 && c->fd >= 0) http_complete(c);
            break;
        }
        case H_CSIZE: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->in_ext = false;
                c->hstate = c->left ? H_CDATA : H_CTRAILER;
                if (c->hstate == H_CTRAILER) c->left = 0; /* bytes on the trailer line */
            } else if (c->in_ext || ch == '\r') {
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->in_ext = true;
            } else {
                int d = (ch >= '0' && ch <= '9')   ? ch - '0'
                        : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                        : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                                   : -1;
                if (d < 0 || c->left > (UINT64_MAX >> 4)) {
                    note("bad chunk size");
                    st.protocol_errors++;
                    conn_close(c);
                    return;
                }
                c->left = c->left * 16 + (uint64_t)d;
            }
            break;
        }
        case H_CDATA: {
            size_t k = n < c->left ? n : (size_t)c->left;
            c->proto->on_body(c, p, k);
            p += k;
            n -= k;
            c->left -= k;
            if (c->left == 0) c->hstate = H_CCRLF;
            break;
        }
        case H_CCRLF: {
            char ch = *p++;
            n--;
            if (ch == '\n') c->hstate = H_CSIZE;
            break;
        }
        case H_CTRAILER: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                if (c->left == 0) {
                    http_complete(c);
                } else {
                    c->left = 0;
                }
            } else if (ch != '\r') {
                c->left++;
            }
            break;
        }
        case H_EOF:
        case H_UPGRADED:
            c->proto->on_body(c, p, n);
            n = 0;
            break;
        }
    }
}

static void conn_readable(struct conn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, RBUF_SIZE, 0);
        g_now = now_ns();
        if (r > 0) {
            http_feed(c, rbuf, (size_t)r);
            if (c->fd < 0 || r < RBUF_SIZE) return;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r == 0 && c->state == C_READING && c->hstate == H_EOF) {
            /* close-delimited body: the end of the body */
            int fd = c->fd;
            c->conn_close = true;
            c->proto->on_complete(c);
            if (c->fd == fd) conn_close(c);
            return;
        }
        if (r < 0) note("recv: %s", strerror(errno));
        conn_close(c);
        return;
    }
}

static void conn_event(struct conn *c, uint32_t events) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            note("connect to %s:%d: %s", opt.host, opt.port, strerror(err));
            conn_close(c);
            return;
        }
        if (c->proto->request) {
            conn_send_request(c);
        } else {
            c->state = C_IDLE;
            conn_want(c, EPOLLIN);
        }
        return;
    }
    if ((events & EPOLLOUT) && c->hstate == H_UPGRADED && c->state == C_READING) {
        ws_flush_out(c);
        if (c->fd < 0) return;
    }
    if ((events & EPOLLOUT) && c->state == C_WRITING) {
        conn_flush(c);
        if (c->fd < 0) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->state == C_IDLE) {
            /* an idle keep-alive connection closed by the server */
            char b[256];
            ssize_t r = recv(c->fd, b, sizeof b, 0);
            if (r > 0) {
                note("unexpected bytes on an idle connection");
                st.protocol_errors++;
            }
            if (r < 0 && errno == EAGAIN) return;
            conn_close(c);
            return;
        }
        conn_readable(c);
    }
}

/* ------------------------------------------------------------------ value scanner */

/* Finds "t":N, "seq":N and "next":N / "next":"N" in JSON text, across any split of the input,
 * without buffering. A key is only recognised right after a quote, so string contents (which
 * cannot hold an unescaped quote) never match. */
enum { K_T, K_SEQ, K_NEXT };
static const char *const key_names[] = {"t", "seq", "next"};
static const uint8_t key_lens[] = {1, 3, 4};
enum { S_IDLE, S_Q, S_KEY, S_COLON, S_VALUE, S_NUM };

typedef void (*kv_fn)(struct conn *c, int key, uint64_t v);

static void scan(struct conn *c, const char *p, size_t n, kv_fn fn) {
    const char *end = p + n;
    while (p < end) {
        if (c->sc_state == S_IDLE) {
            const char *q = memchr(p, '"', (size_t)(end - p));
            if (!q) return;
            p = q + 1;
            c->sc_state = S_Q;
            continue;
        }
        char ch = *p++;
        switch (c->sc_state) {
        case S_Q:
            c->sc_pos = 1;
            if (ch == 't') {
                c->sc_key = K_T;
                c->sc_state = S_KEY;
            } else if (ch == 's') {
                c->sc_key = K_SEQ;
                c->sc_state = S_KEY;
            } else if (ch == 'n') {
                c->sc_key = K_NEXT;
                c->sc_state = S_KEY;
            } else if (ch != '"') {
                c->sc_state = S_IDLE;
            }
            break;
        case S_KEY:
            if (c->sc_pos == key_lens[c->sc_key]) {
                c->sc_state = ch == '"' ? S_COLON : S_IDLE;
            } else if (ch == key_names[c->sc_key][c->sc_pos]) {
                c->sc_pos++;
            } else {
                c->sc_state = ch == '"' ? S_Q : S_IDLE;
            }
            break;
        case S_COLON:
            if (ch == ':')
                c->sc_state = S_VALUE;
            else if (ch != ' ' && ch != '\t')
                c->sc_state = ch == '"' ? S_Q : S_IDLE;
            break;
        case S_VALUE:
            if (ch >= '0' && ch <= '9') {
                c->sc_num = (uint64_t)(ch - '0');
                c->sc_state = S_NUM;
            } else if (ch == '"') {
                if (c->sc_key != K_NEXT) c->sc_state = S_Q; /* a string value: not ours */
            } else if (ch != ' ' && ch != '\t') {
                c->sc_state = S_IDLE;
            }
            break;
        case S_NUM:
            if (ch >= '0' && ch <= '9') {
                c->sc_num = c->sc_num * 10 + (uint64_t)(ch - '0');
            } else {
                fn(c, c->sc_key, c->sc_num);
                c->sc_state = ch == '"' ? S_Q : S_IDLE;
            }
            break;
        }
    }
}

/* ------------------------------------------------------------------ deliveries */

static void deliver(struct conn *c, uint64_t t, uint64_t seq) {
    st.deliveries++;
    uint64_t lat = g_now > t ? g_now - t : 0;
    hist_add(st.hist, lat);
    if (lat > st.max_lat_ns) st.max_lat_ns = lat;
    if (!st.first_ns) st.first_ns = g_now;
    st.last_ns = g_now;
    if (seq >= (uint64_t)opt.events) {
        st.out_of_range++;
        return;
    }
    if (!bitmap) {
        st.unique++;
        return;
    }
    uint64_t bit = (uint64_t)c->idx * bitmap_row + seq;
    uint8_t mask = (uint8_t)(1u << (bit & 7));
    if (bitmap[bit >> 3] & mask) {
        st.dups++;
    } else {
        bitmap[bit >> 3] |= mask;
        st.unique++;
    }
}

/* ------------------------------------------------------------------ protocol: SSE */

static char sub_path[512];
static char pub_path[512];
static char host_hdr[64];

static int sse_request(struct conn *c) {
    int n = snprintf(c->buf, c->bufcap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nUser-Agent: herald-load\r\n\r\n",
                     sub_path, host_hdr);
    c->wlen = (uint32_t)n;
    return 0;
}

static bool sub_became_ready(struct conn *c) {
    if (!c->ready) {
        c->ready = true;
        st.connected++;
    }
    return true;
}

static bool sse_head(struct conn *c) {
    if (c->status != 200) {
        note("SSE subscribe: status %d", c->status);
        st.bad_status++;
        return false;
    }
    c->line_state = 0;
    c->pfx_len = 0;
    c->sc_state = S_IDLE;
    c->ev_has_t = c->ev_has_seq = false;
    return sub_became_ready(c);
}

static void sse_kv(struct conn *c, int key, uint64_t v) {
    if (key == K_T) {
        c->ev_t = v;
        c->ev_has_t = true;
    } else if (key == K_SEQ) {
        c->ev_seq = v;
        c->ev_has_seq = true;
    }
}

enum { L_START, L_DATA, L_SKIP };

static void sse_dispatch(struct conn *c) {
    if (c->ev_has_seq && c->ev_has_t) deliver(c, c->ev_t, c->ev_seq);
    c->ev_has_t = c->ev_has_seq = false;
    c->sc_state = S_IDLE;
}

/* Line-oriented SSE reader (LF or CRLF line ends): "data:" lines go through the value scanner,
 * a blank line dispatches the event, other fields and comments are skipped. */
static void sse_body(struct conn *c, const char *p, size_t n) {
    const char *end = p + n;
    while (p < end) {
        if (c->line_state == L_START) {
            char ch = *p++;
            if (ch == '\n') {
                if (c->pfx_len == 0) sse_dispatch(c);
                c->pfx_len = 0;
                continue;
            }
            if (ch == '\r') continue;
            c->pfx[c->pfx_len++] = ch;
            if (memcmp(c->pfx, "data:", c->pfx_len) != 0)
                c->line_state = L_SKIP;
            else if (c->pfx_len == 5)
                c->line_state = L_DATA;
            continue;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *seg = nl ? nl : end;
        if (c->line_state == L_DATA) scan(c, p, (size_t)(seg - p), sse_kv);
        if (!nl) return;
        if (c->line_state == L_DATA) scan(c, "\n", 1, sse_kv); /* ends a number */
        c->line_state = L_START;
        c->pfx_len = 0;
        p = nl + 1;
    }
}

static void sse_complete(struct conn *c) {
    /* The server ended the stream. */
    conn_close(c);
}

static void sub_closed(struct conn *c) {
    if (c->ready) {
        st.disconnects++;
        if (LD(shm->phase) != PH_STOP) note("subscriber %u: stream closed by the server", c->idx);
    } else {
        st.connect_failures++;
    }
}

static const struct proto proto_sse = {
    .request = sse_request,
    .on_head = sse_head,
    .on_body = sse_body,
    .on_complete = sse_complete,
    .on_close = sub_closed,
};

/* ------------------------------------------------------------------ protocol: long-poll */

static bool lp_reconnect(struct conn *c);

static int lp_request(struct conn *c) {
    int n;
    if (opt.target == T_HERALD) {
        n = snprintf(c->buf, c->bufcap,
                     "GET %s?since=%s&wait=%d&limit=1000 HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: application/json\r\nUser-Agent: herald-load\r\n\r\n",
                     sub_path, c->cursor[0] ? c->cursor : "0", opt.lp_wait, host_hdr);
    } else if (c->cursor[0]) {
        n = snprintf(c->buf, c->bufcap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nIf-None-Match: %s\r\n"
                     "If-Modified-Since: %s\r\nUser-Agent: herald-load\r\n\r\n",
                     sub_path, host_hdr, c->cursor, c->lastmod);
    } else {
        n = snprintf(c->buf, c->bufcap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: herald-load\r\n\r\n", sub_path,
                     host_hdr);
    }
    if (n <= 0 || (uint32_t)n >= c->bufcap) return -1;
    c->wlen = (uint32_t)n;
    return 0;
}

static void copy_val(char *dst, size_t cap, const char *v, size_t vl) {
    if (vl >= cap) vl = cap - 1;
    memcpy(dst, v, vl);
    dst[vl] = 0;
}

static void lp_header(struct conn *c, const char *name, size_t nl, const char *v, size_t vl) {
    if (c->status != 200) return;
    if (nl == 4 && strncasecmp(name, "etag", 4) == 0) {
        if (opt.target == T_HERALD) { /* ETag: "<next>" */
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            if (vl >= 2 && v[0] == 'W' && v[1] == '/') { /* tolerate a weak tag */
                v += 3;
                vl = vl >= 4 ? vl - 4 : 0;
            }
        }
        copy_val(c->cursor, sizeof c->cursor, v, vl);
    } else if (nl == 13 && strncasecmp(name, "last-modified", 13) == 0) {
        copy_val(c->lastmod, sizeof c->lastmod, v, vl);
    }
}

static bool lp_head(struct conn *c) {
    c->sc_state = S_IDLE;
    c->ev_has_t = false;
    if (c->status == 200 || c->status == 304) return true;
    if (c->status == 408 && opt.target == T_NCHAN) return true; /* nchan's subscriber timeout */
    note("long-poll: status %d", c->status);
    st.bad_status++;
    c->dead = true;
    return false;
}

static void lp_kv(struct conn *c, int key, uint64_t v) {
    if (key == K_T) {
        c->ev_t = v;
        c->ev_has_t = true;
    } else if (key == K_SEQ) {
        if (c->ev_has_t) deliver(c, c->ev_t, v);
        c->ev_has_t = false;
    } else if (key == K_NEXT && opt.target == T_HERALD) {
        snprintf(c->cursor, sizeof c->cursor, "%" PRIu64, v);
    }
}

static void lp_body(struct conn *c, const char *p, size_t n) {
    scan(c, p, n, lp_kv);
}

static void lp_complete(struct conn *c) {
    scan(c, "\n", 1, lp_kv); /* ends a number at the very end of the body */
    if (LD(shm->phase) == PH_STOP) return;
    if (c->conn_close) {
        int fd = c->fd;
        c->fd = -1; /* closed quietly: a reconnect, not a failure */
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        c->state = C_CLOSED;
        lp_reconnect(c);
        return;
    }
    conn_send_request(c);
}

static bool lp_reconnect(struct conn *c) {
    st.reconnects++;
    c->fd = -1;
    return conn_open(c);
}

static void lp_closed(struct conn *c) {
    if (!c->ready) {
        st.connect_failures++;
        return;
    }
    if (c->dead) {
        st.disconnects++;
        return;
    }
    if (LD(shm->phase) == PH_STOP) return;
    if (st.reconnects > 100000) return; /* something is badly wrong; stop hammering */
    if (!lp_reconnect(c)) st.disconnects++;
}

static const struct proto proto_lp = {
    .request = lp_request,
    .on_header = lp_header,
    .on_head = lp_head,
    .on_body = lp_body,
    .on_complete = lp_complete,
    .on_close = lp_closed,
};

/* ------------------------------------------------------------------ protocol: WebSocket */

/* RFC 6455 subscriber. The handshake uses the RFC's sample key, so the expected
 * Sec-WebSocket-Accept is a constant. After the 101, c->buf (SUB_BUF_SIZE bytes) is reused:
 *   [WS_OUT_OFF, +WS_OUT_CAP)   frames to the server not yet written (subscribe, pong, close)
 *   [WS_CTL_OFF, +WS_CTL_CAP)   the payload of the control frame being read (<= 125 bytes)
 *   [WS_Z_OFF, bufcap)          a compressed message being read (permessage-deflate), which is
 *                               inflated when its last frame has arrived
 * Server frames are parsed incrementally (7-, 16- and 64-bit lengths, fragmentation, control
 * frames between fragments); an uncompressed text message goes straight through the value
 * scanner, so nothing is buffered or allocated per message. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define WS_OUT_OFF 0u
#define WS_OUT_CAP 256u
#define WS_CTL_OFF 256u
#define WS_CTL_CAP 128u
#define WS_Z_OFF 384u
#define WS_ZOUT_SIZE (64 * 1024)

static z_stream ws_zs; /* one raw inflate stream per process, reset for every message */
static bool ws_zs_ready;
static char *ws_zout;
static uint64_t ws_rng = 0x9e3779b97f4a7c15ull;

static uint32_t ws_mask_key(void) { /* xorshift64: masks need not be strong for a benchmark */
    ws_rng ^= ws_rng << 13;
    ws_rng ^= ws_rng >> 7;
    ws_rng ^= ws_rng << 17;
    return (uint32_t)(ws_rng >> 16);
}

static int ws_request(struct conn *c) {
    c->upgraded = c->ws_accept = c->ws_deflate = c->ws_nctx = false;
    c->ws_in_frame = c->ws_msg = c->ws_closing = c->ws_wout = false;
    c->ws_hlen = 0;
    c->ws_olen = c->ws_ooff = 0;
    int n = snprintf(c->buf, c->bufcap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s%s"
                     "User-Agent: herald-load\r\n\r\n",
                     sub_path, host_hdr, opt.ws_json ? "Sec-WebSocket-Protocol: herald.v1\r\n" : "",
                     opt.ws_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                      "server_no_context_takeover; client_no_context_takeover\r\n"
                                    : "");
    if (n <= 0 || (uint32_t)n >= c->bufcap) return -1;
    c->wlen = (uint32_t)n;
    return 0;
}

/* Does the comma/semicolon separated header value hold this token (case-insensitive)? */
static bool has_token(const char *v, size_t vl, const char *tok) {
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vl; i++) {
        if (strncasecmp(v + i, tok, tl) != 0) continue;
        bool start = i == 0 || v[i - 1] == ' ' || v[i - 1] == ';' || v[i - 1] == ',';
        bool end = i + tl == vl || v[i + tl] == ' ' || v[i + tl] == ';' || v[i + tl] == ',' ||
                   v[i + tl] == '=';
        if (start && end) return true;
    }
    return false;
}

static void ws_header(struct conn *c, const char *name, size_t nl, const char *v, size_t vl) {
    if (c->status != 101) return;
    if (nl == 20 && strncasecmp(name, "sec-websocket-accept", nl) == 0) {
        c->ws_accept = vl == strlen(WS_ACCEPT) && memcmp(v, WS_ACCEPT, vl) == 0;
    } else if (nl == 24 && strncasecmp(name, "sec-websocket-extensions", nl) == 0) {
        if (has_token(v, vl, "permessage-deflate")) {
            c->ws_deflate = true;
            c->ws_nctx = has_token(v, vl, "server_no_context_takeover");
        }
    }
}

static void ws_fail(struct conn *c, const char *what) {
    note("subscriber %u: WebSocket: %s", c->idx, what);
    st.protocol_errors++;
    conn_close(c);
}

/* Writes what is queued in the out area; on a short write waits for EPOLLOUT. */
static void ws_flush_out(struct conn *c) {
    char *out = c->buf + WS_OUT_OFF;
    while (c->ws_ooff < c->ws_olen) {
        ssize_t w = send(c->fd, out + c->ws_ooff, c->ws_olen - c->ws_ooff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                if (!c->ws_wout) conn_want(c, EPOLLIN | EPOLLOUT);
                c->ws_wout = true;
                return;
            }
            note("send: %s", strerror(errno));
            conn_close(c);
            return;
        }
        c->ws_ooff += (uint16_t)w;
    }
    c->ws_olen = c->ws_ooff = 0;
    if (c->ws_wout) {
        c->ws_wout = false;
        conn_want(c, EPOLLIN);
    }
}

/* Queues one masked client frame (FIN set) and writes it. */
static void ws_send(struct conn *c, uint8_t op, const char *payload, size_t len) {
    if (c->ws_ooff > 0) { /* compact what is left */
        memmove(c->buf + WS_OUT_OFF, c->buf + WS_OUT_OFF + c->ws_ooff, c->ws_olen - c->ws_ooff);
        c->ws_olen = (uint16_t)(c->ws_olen - c->ws_ooff);
        c->ws_ooff = 0;
    }
    size_t hl = len < 126 ? 6 : 8;
    if (len > 0xffff || c->ws_olen + hl + len > WS_OUT_CAP) {
        ws_fail(c, "outgoing frames do not fit the buffer (the server does not read?)");
        return;
    }
    uint8_t *f = (uint8_t *)c->buf + WS_OUT_OFF + c->ws_olen;
    f[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        f[1] = (uint8_t)(0x80 | len);
    } else {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(len >> 8);
        f[3] = (uint8_t)len;
    }
    uint32_t key = ws_mask_key();
    uint8_t *m = f + hl - 4;
    memcpy(m, &key, 4);
    for (size_t i = 0; i < len; i++)
        f[hl + i] = (uint8_t)payload[i] ^ m[i & 3];
    bool was_empty = c->ws_olen == 0;
    c->ws_olen = (uint16_t)(c->ws_olen + hl + len);
    if (was_empty) ws_flush_out(c);
}

static bool ws_head(struct conn *c) {
    if (c->status != 101) {
        note("WebSocket subscribe: status %d", c->status);
        st.bad_status++;
        c->dead = true;
        return false;
    }
    if (!c->ws_accept) {
        note("WebSocket subscribe: missing or wrong Sec-WebSocket-Accept");
        st.protocol_errors++;
        return false;
    }
    if (c->ws_deflate && !opt.ws_deflate) {
        note("WebSocket subscribe: the server negotiated permessage-deflate without an offer");
        st.protocol_errors++;
        return false;
    }
    if (c->ws_deflate && !c->ws_nctx) {
        note("WebSocket subscribe: permessage-deflate without server_no_context_takeover");
        st.protocol_errors++;
        return false;
    }
    if (c->ws_deflate) st.ws_deflate++;
    c->upgraded = true;
    c->ws_in_frame = c->ws_msg = false;
    c->ws_hlen = 0;
    if (opt.ws_json) {
        char m[256];
        int n = snprintf(m, sizeof m, "{\"op\":\"subscribe\",\"topic\":\"%s\",\"ref\":\"1\"}",
                         opt.topic);
        ws_send(c, 0x1, m, (size_t)n);
        return c->fd >= 0; /* ready once "subscribed" arrives */
    }
    return sub_became_ready(c);
}

/* Streaming match of "subscribed" (the JSON protocol's answer to subscribe). The pattern's
 * only repeated character is the quote at both ends, so a mismatch restarts at 0 or 1. */
static void ws_match(struct conn *c, const char *p, size_t n) {
    static const char pat[] = "\"subscribed\"";
    for (size_t i = 0; i < n && c->ws_match < sizeof pat - 1; i++) {
        if (p[i] == pat[c->ws_match])
            c->ws_match++;
        else
            c->ws_match = p[i] == '"' ? 1 : 0;
    }
}

static void ws_text(struct conn *c, const char *p, size_t n) {
    scan(c, p, n, sse_kv);
    if (opt.ws_json && !c->ready) ws_match(c, p, n);
}

static void ws_message_end(struct conn *c) {
    if (c->ws_z) {
        if (c->ws_zover) {
            ws_fail(c, "compressed message larger than the buffer");
            return;
        }
        if (!ws_zs_ready) {
            ws_zout = malloc(WS_ZOUT_SIZE);
            if (!ws_zout || inflateInit2(&ws_zs, -15) != Z_OK) die("zlib: inflateInit2 failed");
            ws_zs_ready = true;
        }
        unsigned char *z = (unsigned char *)c->buf + WS_Z_OFF;
        memcpy(z + c->ws_zlen, "\x00\x00\xff\xff", 4); /* RFC 7692 §7.2.2 */
        st.ws_zmsgs++;
        inflateReset(&ws_zs);
        ws_zs.next_in = z;
        ws_zs.avail_in = c->ws_zlen + 4u;
        int r;
        do {
            ws_zs.next_out = (unsigned char *)ws_zout;
            ws_zs.avail_out = WS_ZOUT_SIZE;
            r = inflate(&ws_zs, Z_SYNC_FLUSH);
            ws_text(c, ws_zout, WS_ZOUT_SIZE - ws_zs.avail_out);
        } while (r == Z_OK && ws_zs.avail_out == 0);
        if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
            ws_fail(c, "cannot inflate a compressed message");
            return;
        }
    }
    scan(c, "\n", 1, sse_kv); /* ends a number at the very end of the message */
    c->ws_msg = false;
    if (c->ev_has_t && c->ev_has_seq) {
        deliver(c, c->ev_t, c->ev_seq);
    } else if (opt.ws_json && !c->ready) {
        if (c->ws_match == 12) {
            sub_became_ready(c);
        } else {
            note("subscriber %u: unexpected answer to subscribe", c->idx);
            st.protocol_errors++;
            c->dead = true;
            conn_close(c);
        }
    }
    c->ev_has_t = c->ev_has_seq = false;
}

static void ws_control_end(struct conn *c) {
    const char *pl = c->buf + WS_CTL_OFF;
    if (c->ws_op == 0x9) { /* ping: pong with the same payload */
        st.ws_pings++;
        ws_send(c, 0xA, pl, c->ws_clen);
    } else if (c->ws_op == 0x8) { /* close: echo the code, then hang up */
        if (LD(shm->phase) != PH_STOP) {
            unsigned code = c->ws_clen >= 2 ? ((unsigned)(uint8_t)pl[0] << 8 | (uint8_t)pl[1]) : 0;
            note("subscriber %u: close %u from the server: %.*s", c->idx, code,
                 c->ws_clen > 2 ? (int)c->ws_clen - 2 : 0, pl + 2);
        }
        if (!c->ws_closing) {
            c->ws_closing = true;
            ws_send(c, 0x8, pl, c->ws_clen >= 2 ? 2 : 0);
        }
        if (c->fd >= 0) conn_close(c);
    }
    /* pong: nothing to do */
}

/* Called when a frame header is complete. */
static void ws_frame_start(struct conn *c) {
    uint8_t b0 = c->ws_hdr[0], b1 = c->ws_hdr[1];
    uint8_t op = b0 & 0x0f;
    bool rsv1 = b0 & 0x40;
    if (b1 & 0x80) {
        ws_fail(c, "masked frame from the server");
        return;
    }
    if (b0 & 0x30) {
        ws_fail(c, "RSV2/RSV3 set");
        return;
    }
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
        len = (uint64_t)c->ws_hdr[2] << 8 | c->ws_hdr[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | c->ws_hdr[i];
        if (len >> 63) {
            ws_fail(c, "64-bit length with the top bit set");
            return;
        }
    }
    c->ws_fin = b0 & 0x80;
    c->ws_left = len;
    if (op >= 0x8) {
        if (op != 0x8 && op != 0x9 && op != 0xA) {
            ws_fail(c, "unknown control opcode");
            return;
        }
        if (!c->ws_fin || len > 125 || rsv1) {
            ws_fail(c, "bad control frame");
            return;
        }
        c->ws_op = op;
        c->ws_clen = 0;
    } else if (op == 0x1 || op == 0x2) {
        if (c->ws_msg) {
            ws_fail(c, "a new message inside an unfinished one");
            return;
        }
        if (rsv1 && !c->ws_deflate) {
            ws_fail(c, "RSV1 without permessage-deflate");
            return;
        }
        c->ws_op = op;
        c->ws_msg = true;
        c->ws_z = rsv1;
        c->ws_zlen = 0;
        c->ws_zover = false;
        c->ws_match = 0;
        c->sc_state = S_IDLE;
        c->ev_has_t = c->ev_has_seq = false;
    } else if (op == 0x0) {
        if (!c->ws_msg) {
            ws_fail(c, "continuation without a message");
            return;
        }
        if (rsv1) {
            ws_fail(c, "RSV1 on a continuation frame");
            return;
        }
        c->ws_op = 0x0;
    } else {
        {
            ws_fail(c, "unknown data opcode");
            return;
        }
    }
    c->ws_in_frame = true;
}

static void ws_payload(struct conn *c, const char *p, size_t n) {
    if (c->ws_op >= 0x8) {
        memcpy(c->buf + WS_CTL_OFF + c->ws_clen, p, n); /* len <= 125 checked */
        c->ws_clen = (uint16_t)(c->ws_clen + n);
    } else if (c->ws_z) {
        uint32_t room = c->bufcap - WS_Z_OFF - 4u; /* 4: the tail appended before inflating */
        if (c->ws_zover || c->ws_zlen + n > room) {
            c->ws_zover = true;
            return;
        }
        memcpy(c->buf + WS_Z_OFF + c->ws_zlen, p, n);
        c->ws_zlen = (uint16_t)(c->ws_zlen + n);
    } else {
        ws_text(c, p, n);
    }
}

static void ws_frame_end(struct conn *c) {
    c->ws_in_frame = false;
    c->ws_hlen = 0;
    if (c->ws_op >= 0x8)
        ws_control_end(c);
    else if (c->ws_fin)
        ws_message_end(c);
}

static void ws_body(struct conn *c, const char *p, size_t n) {
    while (n > 0 && c->fd >= 0) {
        if (!c->ws_in_frame) {
            c->ws_hdr[c->ws_hlen++] = (uint8_t)*p++;
            n--;
            if (c->ws_hlen == 2) {
                uint8_t l7 = c->ws_hdr[1] & 0x7f;
                c->ws_hneed = (uint8_t)(2 +
                                        (l7 == 126   ? 2
                                         : l7 == 127 ? 8
                                                     : 0) +
                                        (c->ws_hdr[1] & 0x80 ? 4 : 0));
            }
            if (c->ws_hlen >= 2 && c->ws_hlen == c->ws_hneed) {
                ws_frame_start(c);
                if (c->fd < 0) return;
                if (c->ws_left == 0) ws_frame_end(c);
            }
            continue;
        }
        size_t k = n < c->ws_left ? n : (size_t)c->ws_left;
        ws_payload(c, p, k);
        if (c->fd < 0) return;
        p += k;
        n -= k;
        c->ws_left -= k;
        if (c->ws_left == 0) ws_frame_end(c);
    }
}

static void ws_complete(struct conn *c) {
    conn_close(c); /* a non-101 answer ended */
}

static const struct proto proto_ws = {
    .request = ws_request,
    .on_header = ws_header,
    .on_head = ws_head,
    .on_body = ws_body,
    .on_complete = ws_complete,
    .on_close = sub_closed,
};

/* ------------------------------------------------------------------ protocol: publisher */

static struct {
    uint64_t sent, acked, errors, first_ns, last_ack_ns, inflight;
    uint64_t hist[HIST_BUCKETS];
    uint64_t max_ns;
    uint64_t reconnects;
} pub;

static char pad_bytes[1 << 16];

static int pub_build(struct conn *c, uint64_t seq) {
    char head[64];
    uint64_t t = now_ns();
    int hl =
        snprintf(head, sizeof head, "{\"t\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"pad\":\"", t, seq);
    int padn = opt.size - hl - 2;
    if (padn < 0) padn = 0;
    int body_len = hl + padn + 2;
    int n = snprintf(c->buf, c->bufcap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nUser-Agent: herald-load\r\n\r\n",
                     pub_path, host_hdr, body_len);
    if (n <= 0 || (uint32_t)(n + body_len) > c->bufcap) return -1;
    memcpy(c->buf + n, head, (size_t)hl);
    memcpy(c->buf + n + hl, pad_bytes, (size_t)padn);
    memcpy(c->buf + n + hl + padn, "\"}", 2);
    c->wlen = (uint32_t)(n + body_len);
    c->woff = 0;
    c->sent_ns = t;
    return 0;
}

static bool pub_head(struct conn *c) {
    if (c->status < 200 || c->status > 299) {
        note("publish: status %d", c->status);
        c->ready = false; /* marks this request failed */
    } else {
        c->ready = true;
    }
    return true;
}

static void pub_body(struct conn *c, const char *p, size_t n) {
    (void)c;
    (void)p;
    (void)n;
}

static void pub_complete(struct conn *c) {
    uint64_t now = now_ns();
    pub.inflight--;
    if (c->ready) {
        pub.acked++;
        pub.last_ack_ns = now;
        uint64_t lat = now - c->sent_ns;
        hist_add(pub.hist, lat);
        if (lat > pub.max_ns) pub.max_ns = lat;
    } else {
        pub.errors++;
    }
    c->sent_ns = 0;
    if (c->conn_close) {
        int fd = c->fd;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        c->fd = -1;
        c->state = C_CLOSED;
        pub.reconnects++;
        conn_open(c);
        return;
    }
    c->state = C_IDLE;
}

static void pub_closed(struct conn *c) {
    if (c->sent_ns) { /* in flight: unknown outcome, counted as an error */
        pub.inflight--;
        pub.errors++;
        c->sent_ns = 0;
        note("publish connection closed with a request in flight");
    }
    if (LD(shm->phase) == PH_STOP || pub.reconnects > 1000) return;
    pub.reconnects++;
    conn_open(c);
}

static const struct proto proto_pub = {
    .request = NULL,
    .on_head = pub_head,
    .on_body = pub_body,
    .on_complete = pub_complete,
    .on_close = pub_closed,
};

/* ------------------------------------------------------------------ event loop */

static struct epoll_event evs[MAX_EVENTS];

static void loop_once(int timeout_ms) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
        conn_event(evs[i].data.ptr, evs[i].events);
}

/* ------------------------------------------------------------------ subscriber process */

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void sub_process(int k, long first, long count) {
    me = k;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc((size_t)count, sizeof *conns);
    char *bufs = malloc((size_t)count * SUB_BUF_SIZE);
    if (!conns || !bufs) die("out of memory for %ld connections", count);
    if (opt.events > 0) {
        bitmap_row = (uint64_t)opt.events;
        uint64_t bytes = ((uint64_t)count * bitmap_row + 7) / 8;
        if (bytes <= (8ull << 30)) {
            bitmap = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (bitmap == MAP_FAILED) bitmap = NULL;
        }
        if (!bitmap) note("no duplicate detection: bitmap too large");
    }
    const struct proto *proto = opt.mode == MODE_SSE  ? &proto_sse
                                : opt.mode == MODE_WS ? &proto_ws
                                                      : &proto_lp;
    ws_rng ^= (uint64_t)getpid() * 0x2545f4914f6cdd1dull;
    for (long i = 0; i < count; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->idx = (uint32_t)i;
        c->src = (uint32_t)((first + i) % opt.src_addrs);
        c->proto = proto;
        c->buf = bufs + (size_t)i * SUB_BUF_SIZE;
        c->bufcap = SUB_BUF_SIZE;
    }
    uint64_t deadline = now_ns() + (uint64_t)(opt.ready_timeout_s * 1e9);
    uint64_t hard = now_ns() + (uint64_t)(opt.timeout_s * 1e9);
    long opened = 0;
    bool ready_done = false;
    double cpu_at_run = -1;
    for (;;) {
        /* pace the connection ramp: at most connect_batch attempts unresolved at once */
        long pending = opened - (long)st.connected - (long)st.connect_failures;
        while (opened < count && pending < opt.connect_batch) {
            if (!conn_open(&conns[opened])) st.connect_failures++;
            opened++;
            pending++;
        }
        if (!ready_done && opened == count && (long)(st.connected + st.connect_failures) >= count) {
            ready_done = true;
        }
        if (!ready_done && now_ns() > deadline) {
            note("%ld subscribers still not ready after %.0f s", count - (long)st.connected,
                 opt.ready_timeout_s);
            ready_done = true;
        }
        if (opt.mode == MODE_LONGPOLL && !ready_done) {
            /* a long-poller is ready once its first request is written */
            for (long i = 0; i < opened; i++) {
                struct conn *c = &conns[i];
                if (!c->ready && c->state == C_READING) sub_became_ready(c);
            }
        }
        stats_flush(false);
        if (ready_done) ST(shm->p[k].ready_done, 1);
        int phase = LD(shm->phase);
        if (phase != PH_CONNECT && cpu_at_run < 0) cpu_at_run = self_cpu(RUSAGE_SELF);
        if (phase == PH_STOP || now_ns() > hard) break;
        loop_once(opt.mode == MODE_LONGPOLL && !ready_done ? 5 : 20);
    }
    /* final numbers */
    stats_flush(true);
    shm->p[k].cpu_run_s = cpu_at_run >= 0 ? self_cpu(RUSAGE_SELF) - cpu_at_run : 0;
    ST(shm->p[k].finished, 1);
    _exit(0);
}

/* ------------------------------------------------------------------ RSS */

static long rss_of(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* The server's processes: each --server-pid and its children (the nginx workers). */
static int server_procs(pid_t *out, int cap, bool *has_children) {
    int n = 0;
    for (int i = 0; i < opt.npids && n < cap; i++) {
        out[n++] = opt.pids[i];
        has_children[i] = false;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d)) && n < cap) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
            char path[300], buf[512];
            snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            size_t len = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[len] = 0;
            char *rp = strrchr(buf, ')');
            char state;
            int ppid;
            if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == opt.pids[i]) {
                out[n++] = (pid_t)atoi(de->d_name);
                has_children[i] = true;
            }
        }
        if (d) closedir(d);
    }
    return n;
}

/* RSS in KiB of the server: for a process with children (nginx master) the sum over its
 * children (the workers), otherwise the process itself. -1 when unknown. */
static long server_rss(void) {
    if (opt.npids == 0) return -1;
    pid_t pids[256];
    bool has_children[MAX_PIDS];
    int n = server_procs(pids, 256, has_children);
    long total = 0;
    int owner = -1;
    for (int i = 0; i < n; i++) {
        bool is_top = false;
        for (int k = 0; k < opt.npids; k++)
            if (pids[i] == opt.pids[k]) {
                is_top = true;
                owner = k;
            }
        if (is_top && has_children[owner]) continue; /* the nginx master: not counted */
        long r = rss_of(pids[i]);
        if (r < 0 && is_top) return -1;
        if (r > 0) total += r;
    }
    return total;
}

/* CPU time (user + system, seconds) used so far by the server's processes, all threads. */
static double server_cpu(void) {
    if (opt.npids == 0) return -1;
    pid_t pids[256];
    bool has_children[MAX_PIDS];
    int n = server_procs(pids, 256, has_children);
    unsigned long long ticks = 0;
    for (int i = 0; i < n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        unsigned long long ut, stt;
        /* after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime */
        if (rp && sscanf(rp + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                         &stt) == 2)
            ticks += ut + stt;
    }
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ publisher / coordinator */

static void sum_stats(struct stats *s, int nprocs, bool with_hist) {
    memset(s, 0, sizeof *s);
    for (int k = 0; k < nprocs; k++) {
        struct stats *p = &shm->p[k];
        s->connected += LD(p->connected);
        s->connect_failures += LD(p->connect_failures);
        s->disconnects += LD(p->disconnects);
        s->reconnects += LD(p->reconnects);
        s->bad_status += LD(p->bad_status);
        s->protocol_errors += LD(p->protocol_errors);
        s->deliveries += LD(p->deliveries);
        s->unique += LD(p->unique);
        s->dups += LD(p->dups);
        s->out_of_range += LD(p->out_of_range);
        s->ws_deflate += LD(p->ws_deflate);
        s->ws_pings += LD(p->ws_pings);
        s->ws_zmsgs += LD(p->ws_zmsgs);
        uint64_t f = LD(p->first_ns), l = LD(p->last_ns), m = LD(p->max_lat_ns);
        if (f && (!s->first_ns || f < s->first_ns)) s->first_ns = f;
        if (l > s->last_ns) s->last_ns = l;
        if (m > s->max_lat_ns) s->max_lat_ns = m;
        if (with_hist)
            for (unsigned i = 0; i < HIST_BUCKETS; i++)
                s->hist[i] += p->hist[i];
    }
}

static void usage(void) {
    fputs("usage: herald-load sse|longpoll|ws|pub [options]\n"
          "  --target herald|nchan|node  URL layout (default herald; node: bench/peers/"
          "ws-broadcast.mjs)\n"
          "  --host A --port P       server (default 127.0.0.1:8080)\n"
          "  --topic NAME            topic/channel (default: fresh bench-<pid>-<ns>)\n"
          "  --sub-path F --pub-path F  override paths (printf format, %s = topic)\n"
          "  -n, --subs N            subscribers (default 1000; pub mode: 0)\n"
          "  -m, --events M          events to publish (default 1000; 0: connect, measure, quit)\n"
          "  --rate R                events/s (default 0: as fast as acknowledged)\n"
          "  --publishers W          concurrent publish connections (default 1)\n"
          "  --max-lag L             hold publishing while subscribers trail by more than L\n"
          "                          events on average (default 0: off)\n"
          "  --size B                body size in bytes (default 64)\n"
          "  --src-addrs K           source addresses 127.0.0.1..K (default 8)\n"
          "  --procs P               subscriber processes (default: 1 per 18,000)\n"
          "  --connect-batch C       connection attempts in flight (default 500)\n"
          "  --settle-ms MS          pause after connecting, before measuring (default 500)\n"
          "  --duration S            stop publishing after S seconds (default 60)\n"
          "  --drain S               wait up to S s without progress for deliveries (default 5)\n"
          "  --timeout S             hard limit for the whole run (default 300)\n"
          "  --lp-wait S             herald long-poll wait= (default 30)\n"
          "  --ws-json               ws, herald: the JSON protocol (GET /v1/ws, then subscribe)\n"
          "                          instead of raw mode (GET /v1/topics/{topic}/ws)\n"
          "  --ws-deflate            ws: offer permessage-deflate (server_no_context_takeover;\n"
          "                          client_no_context_takeover) and inflate what comes\n"
          "  --server-pid PID[,PID]  report the server's RSS (children summed, e.g. nginx)\n"
          "  --label TEXT            copied into the JSON\n"
          "  --progress              progress lines on stderr\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2) usage();
    if (strcmp(argv[1], "sse") == 0)
        opt.mode = MODE_SSE;
    else if (strcmp(argv[1], "longpoll") == 0)
        opt.mode = MODE_LONGPOLL;
    else if (strcmp(argv[1], "pub") == 0)
        opt.mode = MODE_PUB;
    else if (strcmp(argv[1], "ws") == 0)
        opt.mode = MODE_WS;
    else
        usage();
    opt.target = T_HERALD;
    opt.host = "127.0.0.1";
    opt.port = 8080;
    opt.subs = opt.mode == MODE_PUB ? 0 : 1000;
    opt.events = 1000;
    opt.publishers = 1;
    opt.size = 64;
    opt.src_addrs = 8;
    opt.connect_batch = 500;
    opt.settle_ms = 500;
    opt.drain_s = 5;
    opt.duration_s = 60;
    opt.timeout_s = 300;
    opt.ready_timeout_s = 60;
    opt.lp_wait = 30;
    opt.label = "";
    static const struct option lo[] = {{"target", 1, 0, 'T'},        {"host", 1, 0, 'H'},
                                       {"port", 1, 0, 'p'},          {"topic", 1, 0, 't'},
                                       {"sub-path", 1, 0, 'S'},      {"pub-path", 1, 0, 'P'},
                                       {"subs", 1, 0, 'n'},          {"events", 1, 0, 'm'},
                                       {"rate", 1, 0, 'r'},          {"publishers", 1, 0, 'w'},
                                       {"max-lag", 1, 0, 'L'},       {"size", 1, 0, 'z'},
                                       {"src-addrs", 1, 0, 'k'},     {"procs", 1, 0, 'j'},
                                       {"connect-batch", 1, 0, 'b'}, {"settle-ms", 1, 0, 's'},
                                       {"duration", 1, 0, 'd'},      {"drain", 1, 0, 'D'},
                                       {"timeout", 1, 0, 'o'},       {"server-pid", 1, 0, 'x'},
                                       {"label", 1, 0, 'l'},         {"progress", 0, 0, 'v'},
                                       {"lp-wait", 1, 0, 'W'},       {"ready-timeout", 1, 0, 'R'},
                                       {"ws-json", 0, 0, 'J'},       {"ws-deflate", 0, 0, 'Z'},
                                       {"help", 0, 0, 'h'},          {0, 0, 0, 0}};
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "n:m:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'T':
            if (strcmp(optarg, "herald") == 0)
                opt.target = T_HERALD;
            else if (strcmp(optarg, "nchan") == 0)
                opt.target = T_NCHAN;
            else if (strcmp(optarg, "node") == 0)
                opt.target = T_NODE;
            else
                die("--target: herald, nchan or node");
            break;
        case 'H':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 't':
            snprintf(opt.topic, sizeof opt.topic, "%s", optarg);
            break;
        case 'S':
            opt.sub_path = optarg;
            break;
        case 'P':
            opt.pub_path = optarg;
            break;
        case 'n':
            opt.subs = atol(optarg);
            break;
        case 'm':
            opt.events = atol(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'w':
            opt.publishers = atoi(optarg);
            break;
        case 'L':
            opt.max_lag = atol(optarg);
            break;
        case 'z':
            opt.size = atoi(optarg);
            break;
        case 'k':
            opt.src_addrs = atoi(optarg);
            break;
        case 'j':
            opt.procs = atoi(optarg);
            break;
        case 'b':
            opt.connect_batch = atoi(optarg);
            break;
        case 's':
            opt.settle_ms = atoi(optarg);
            break;
        case 'd':
            opt.duration_s = atof(optarg);
            break;
        case 'D':
            opt.drain_s = atof(optarg);
            break;
        case 'o':
            opt.timeout_s = atof(optarg);
            break;
        case 'R':
            opt.ready_timeout_s = atof(optarg);
            break;
        case 'W':
            opt.lp_wait = atoi(optarg);
            break;
        case 'l':
            opt.label = optarg;
            break;
        case 'v':
            opt.progress = true;
            break;
        case 'J':
            opt.ws_json = true;
            break;
        case 'Z':
            opt.ws_deflate = true;
            break;
        case 'x': {
            char *s = optarg;
            while (*s && opt.npids < MAX_PIDS) {
                opt.pids[opt.npids++] = (pid_t)strtol(s, &s, 10);
                if (*s == ',') s++;
            }
            break;
        }
        default:
            usage();
        }
    }
    if (opt.port <= 0 || opt.port > 65535) die("bad --port");
    struct in_addr a;
    if (inet_pton(AF_INET, opt.host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
        die("--host must be a loopback IPv4 address (127.x.y.z)");
    if (opt.subs < 0 || opt.events < 0 || opt.publishers < 1 || opt.size < 0 ||
        opt.size > (int)sizeof pad_bytes || opt.src_addrs < 1 || opt.src_addrs > 254 ||
        opt.connect_batch < 1)
        die("bad numeric option");
    if (opt.mode == MODE_PUB) opt.subs = 0;
    if (opt.ws_json && (opt.mode != MODE_WS || opt.target != T_HERALD))
        die("--ws-json: ws mode against herald only");
    if (opt.ws_deflate && opt.mode != MODE_WS) die("--ws-deflate: ws mode only");
    if (opt.target == T_NODE && opt.mode != MODE_WS && opt.mode != MODE_PUB)
        die("--target node: ws or pub mode only (the Node peer has no SSE or long-poll)");
    if (opt.procs <= 0) opt.procs = (int)((opt.subs + 17999) / 18000);
    if (opt.subs == 0) opt.procs = 0;
    if (opt.procs > MAX_PROCS) die("at most %d --procs", MAX_PROCS);
    if (opt.procs > opt.subs) opt.procs = (int)opt.subs;
    for (size_t i = 0; opt.label[i]; i++)
        if (opt.label[i] == '"' || opt.label[i] == '\\' || (unsigned char)opt.label[i] < 32)
            die("--label: no quotes, backslashes or control characters");
    if (!opt.topic[0])
        snprintf(opt.topic, sizeof opt.topic, "bench-%d-%" PRIu64, (int)getpid(),
                 (uint64_t)(now_ns() % 1000000000ull));
    const char *sp = opt.sub_path, *pp = opt.pub_path;
    if (!sp)
        sp = opt.target != T_HERALD ? "/sub/%s"
             : opt.mode == MODE_SSE ? "/v1/topics/%s/stream"
             : opt.mode == MODE_WS  ? (opt.ws_json ? "/v1/ws" : "/v1/topics/%s/ws")
                                    : "/v1/topics/%s/events";
    if (!pp) pp = opt.target != T_HERALD ? "/pub/%s" : "/v1/topics/%s/events";
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(sub_path, sizeof sub_path, sp, opt.topic);
    snprintf(pub_path, sizeof pub_path, pp, opt.topic);
#pragma GCC diagnostic pop
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", opt.host, opt.port);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    memset(pad_bytes, 'x', sizeof pad_bytes);
    rbuf = malloc(RBUF_SIZE);
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!rbuf || shm == MAP_FAILED) die("out of memory");
    shm->phase = PH_CONNECT;

    long rss_before = server_rss();
    uint64_t t0 = now_ns();
    pid_t kids[MAX_PROCS];
    int nprocs = opt.procs;
    for (int k = 0; k < nprocs; k++) {
        long first = opt.subs * k / nprocs, last = opt.subs * (k + 1) / nprocs;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) sub_process(k, first, last - first);
        kids[k] = pid;
    }

    /* the publishers live in this process */
    ep = epoll_create1(EPOLL_CLOEXEC);
    int npub = opt.events > 0 ? opt.publishers : 0;
    struct conn *pubs = calloc((size_t)(npub ? npub : 1), sizeof *pubs);
    uint32_t pcap = REQ_HEAD_MAX + (uint32_t)opt.size + 64;
    if (pcap < SUB_BUF_SIZE) pcap = SUB_BUF_SIZE;
    for (int i = 0; i < npub; i++) {
        pubs[i].fd = -1;
        pubs[i].proto = &proto_pub;
        pubs[i].buf = malloc(pcap);
        pubs[i].bufcap = pcap;
        pubs[i].src = 0;
        if (!pubs[i].buf) die("out of memory");
        if (!conn_open(&pubs[i])) die("cannot connect publisher to %s:%d", opt.host, opt.port);
    }

    /* wait for every subscriber process to resolve its connection attempts */
    uint64_t hard = t0 + (uint64_t)(opt.timeout_s * 1e9);
    for (;;) {
        int done = 0;
        for (int k = 0; k < nprocs; k++)
            done += LD(shm->p[k].ready_done) ? 1 : 0;
        int idle = 0;
        for (int i = 0; i < npub; i++)
            idle += pubs[i].state == C_IDLE;
        if (done == nprocs && idle == npub) break;
        if (now_ns() > hard) die("timed out while connecting");
        if (pub.reconnects > 50) die("publishers cannot connect to %s:%d", opt.host, opt.port);
        for (int k = 0; k < nprocs; k++) {
            int status;
            if (waitpid(kids[k], &status, WNOHANG) == kids[k])
                die("subscriber process %d exited early", k);
        }
        loop_once(20);
    }
    uint64_t t_connected = now_ns();
    {
        uint64_t until = now_ns() + (uint64_t)opt.settle_ms * 1000000ull;
        while (now_ns() < until)
            loop_once(10);
    }
    long rss_idle = server_rss();
    struct stats agg;
    sum_stats(&agg, nprocs, false);
    uint64_t nsubs = agg.connected;
    if (opt.progress)
        fprintf(stderr, "herald-load: %" PRIu64 " subscribers ready, %" PRIu64 " failed, %.2f s\n",
                agg.connected, agg.connect_failures, (double)(t_connected - t0) / 1e9);

    /* publish */
    double cpu0 = server_cpu(), tool_cpu0 = self_cpu(RUSAGE_SELF);
    ST(shm->phase, PH_RUN);
    uint64_t t_pub0 = now_ns();
    uint64_t pub_deadline = t_pub0 + (uint64_t)(opt.duration_s * 1e9);
    uint64_t next_progress = t_pub0 + 1000000000ull;
    uint64_t seq = 0;
    bool stopped_early = false;
    while (npub && (seq < (uint64_t)opt.events || pub.inflight > 0)) {
        uint64_t now = now_ns();
        if (now > hard) break;
        if (now > pub_deadline && seq < (uint64_t)opt.events) {
            stopped_early = true;
            opt.events = (long)seq; /* what was published is what is expected */
        }
        uint64_t delivered = 0;
        if (opt.max_lag && nsubs) {
            for (int k = 0; k < nprocs; k++)
                delivered += LD(shm->p[k].deliveries);
        }
        for (int i = 0; i < npub; i++) { /* a publish unanswered for 30 s: give it up */
            struct conn *c = &pubs[i];
            if (c->sent_ns && c->fd >= 0 && now > c->sent_ns + 30000000000ull) {
                note("publish unanswered after 30 s; reconnecting");
                conn_close(c);
            }
        }
        for (int i = 0; i < npub && seq < (uint64_t)opt.events; i++) {
            struct conn *c = &pubs[i];
            if (c->state != C_IDLE) continue;
            if (opt.rate > 0 && (double)seq >= (double)(now - t_pub0) * opt.rate / 1e9 + 1) break;
            if (opt.max_lag && nsubs && seq > delivered / nsubs + (uint64_t)opt.max_lag) break;
            if (pub_build(c, seq) < 0) die("request too large");
            if (!pub.first_ns) {
                pub.first_ns = c->sent_ns;
                ST(shm->t_first_pub, c->sent_ns);
            }
            seq++;
            pub.sent++;
            pub.inflight++;
            conn_flush(c); /* from C_IDLE: no epoll change unless the write would block */
        }
        if (opt.progress && now > next_progress) {
            next_progress += 1000000000ull;
            sum_stats(&agg, nprocs, false);
            fprintf(stderr,
                    "herald-load: sent %" PRIu64 " acked %" PRIu64 " delivered %" PRIu64 "\n",
                    pub.sent, pub.acked, agg.deliveries);
        }
        loop_once(opt.rate > 0 || opt.max_lag ? 1 : 20);
    }

    /* drain: wait for the deliveries, or for no progress during --drain seconds */
    uint64_t expected = pub.acked * nsubs;
    uint64_t last_progress = now_ns(), last_count = 0;
    while (nsubs && npub) {
        sum_stats(&agg, nprocs, false);
        uint64_t now = now_ns();
        if (agg.unique >= expected || now > hard) break;
        if (agg.deliveries != last_count) {
            last_count = agg.deliveries;
            last_progress = now;
        } else if ((double)(now - last_progress) / 1e9 > opt.drain_s) {
            break;
        }
        loop_once(20);
    }
    long rss_end = server_rss();
    double cpu1 = server_cpu(), tool_cpu1 = self_cpu(RUSAGE_SELF);
    double server_cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;

    ST(shm->phase, PH_STOP);
    for (int k = 0; k < nprocs; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        if (!LD(shm->p[k].finished)) note("subscriber process %d did not finish cleanly", k);
    }
    sum_stats(&agg, nprocs, true);
    double tool_cpu = tool_cpu1 - tool_cpu0;
    for (int k = 0; k < nprocs; k++)
        tool_cpu += shm->p[k].cpu_run_s;

    double pub_s =
        pub.last_ack_ns > pub.first_ns ? (double)(pub.last_ack_ns - pub.first_ns) / 1e9 : 0;
    if (opt.rate > 0 && pub_s > 0 && (double)pub.acked / pub_s < opt.rate * 0.95)
        fprintf(stderr,
                "herald-load: --rate %.0f not reached (%.0f events/s): the server acknowledges "
                "too slowly for %d publisher connection(s); add --publishers\n",
                opt.rate, (double)pub.acked / pub_s, npub);
    double win_s = agg.last_ns > pub.first_ns ? (double)(agg.last_ns - pub.first_ns) / 1e9 : 0;
    uint64_t loss = expected > agg.unique ? expected - agg.unique : 0;
    double per_conn = -1;
    if (rss_before >= 0 && rss_idle >= 0 && nsubs)
        per_conn = (double)(rss_idle - rss_before) * 1024.0 / (double)nsubs;

    printf("{\"tool\":\"herald-load\",\"mode\":\"%s\",\"target\":\"%s\",\"label\":\"%s\","
           "\"subscribers\":%ld,\"connected\":%" PRIu64 ",\"connect_failures\":%" PRIu64
           ",\"disconnects\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"bad_status\":%" PRIu64
           ",\"protocol_errors\":%" PRIu64 ",\"publishers\":%d,\"events\":%" PRIu64
           ",\"publish_errors\":%" PRIu64 ",\"stopped_early\":%s,\"deliveries\":%" PRIu64
           ",\"expected_deliveries\":%" PRIu64 ",\"loss\":%" PRIu64 ",\"duplicates\":%" PRIu64
           ",\"unknown_seq\":%" PRIu64 ",\"deliveries_per_s\":%.0f,\"events_per_s\":%.0f"
           ",\"publish_s\":%.3f,\"window_s\":%.3f,\"latency_ms_p50\":%.3f,\"latency_ms_p99\":%.3f"
           ",\"latency_ms_max\":%.3f,\"ack_ms_p50\":%.3f,\"ack_ms_p99\":%.3f,\"ack_ms_max\":%.3f"
           ",\"connect_s\":%.3f,\"rss_before_kib\":%ld,\"rss_idle_kib\":%ld,\"rss_end_kib\":%ld"
           ",\"rss_per_conn_bytes\":%.0f,\"server_cpu_s\":%.2f,\"deliveries_per_server_cpu_s\":%.0f"
           ",\"events_per_server_cpu_s\":%.0f,\"tool_cpu_s\":%.2f,\"size\":%d,\"topic\":\"%s\""
           ",\"ws_proto\":\"%s\",\"ws_deflate_offered\":%s,\"ws_deflate_negotiated\":%" PRIu64
           ",\"ws_pings\":%" PRIu64 ",\"ws_compressed_messages\":%" PRIu64 "}\n",
           mode_name(), target_names[opt.target], opt.label, opt.subs, agg.connected,
           agg.connect_failures, agg.disconnects, agg.reconnects, agg.bad_status,
           agg.protocol_errors + 0, npub, pub.acked, pub.errors, stopped_early ? "true" : "false",
           agg.deliveries, expected, loss, agg.dups, agg.out_of_range,
           win_s > 0 ? (double)agg.deliveries / win_s : 0,
           pub_s > 0 ? (double)pub.acked / pub_s : 0, pub_s, win_s, hist_pct_ms(agg.hist, 0.50),
           hist_pct_ms(agg.hist, 0.99), (double)agg.max_lat_ns / 1e6, hist_pct_ms(pub.hist, 0.50),
           hist_pct_ms(pub.hist, 0.99), (double)pub.max_ns / 1e6, (double)(t_connected - t0) / 1e9,
           rss_before, rss_idle, rss_end, per_conn, server_cpu_s,
           server_cpu_s > 0 ? (double)agg.deliveries / server_cpu_s : 0,
           server_cpu_s > 0 ? (double)pub.acked / server_cpu_s : 0, tool_cpu, opt.size, opt.topic,
           opt.mode != MODE_WS ? ""
           : opt.ws_json       ? "json"
                               : "raw",
           opt.ws_deflate ? "true" : "false", agg.ws_deflate, agg.ws_pings, agg.ws_zmsgs);
    return 0;
}

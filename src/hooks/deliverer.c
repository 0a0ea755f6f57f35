/* Outbound webhook delivery: libcurl multi on the libuv loop, endpoints taking turns for the
 * concurrency slots, due deliveries loaded from the store's outbox, outcomes written back in
 * batches. See deliverer.h for the model. */
#include "hooks/deliverer.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hooks/address.h"
#include "store/store.h"

#define DEFAULT_TIMEOUT_MS 15000
#define LOAD_BATCH_MIN 16
#define LOAD_BATCH_MAX 256

/* ---- claimed delivery ids: open addressing, linear probing, backward-shift deletion ------- */

typedef struct id_set {
    uint64_t *slots; /* 0: empty (delivery ids start at 1) */
    size_t capacity; /* a power of two */
    size_t count;
} id_set;

static size_t id_slot(const id_set *s, uint64_t id) {
    uint64_t x = id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x ^ (x >> 29)) & (s->capacity - 1);
}

static bool id_set_contains(const id_set *s, uint64_t id) {
    if (!s->capacity) return false;
    for (size_t i = id_slot(s, id);; i = (i + 1) & (s->capacity - 1)) {
        if (s->slots[i] == id) return true;
        if (s->slots[i] == 0) return false;
    }
}

static bool id_set_add(id_set *s, uint64_t id);

static bool id_set_grow(id_set *s) {
    size_t capacity = s->capacity ? s->capacity * 2 : 256;
    uint64_t *slots = calloc(capacity, sizeof *slots);
    if (!slots) return false;
    id_set old = *s;
    s->slots = slots;
    s->capacity = capacity;
    s->count = 0;
    for (size_t i = 0; i < old.capacity; i++)
        if (old.slots[i]) id_set_add(s, old.slots[i]);
    free(old.slots);
    return true;
}

static bool id_set_add(id_set *s, uint64_t id) {
    if ((s->count + 1) * 2 > s->capacity && !id_set_grow(s)) return false;
    size_t i = id_slot(s, id);
    while (s->slots[i] && s->slots[i] != id)
        i = (i + 1) & (s->capacity - 1);
    if (!s->slots[i]) s->count++;
    s->slots[i] = id;
    return true;
}

static void id_set_remove(id_set *s, uint64_t id) {
    if (!s->capacity) return;
    size_t mask = s->capacity - 1, i = id_slot(s, id);
    while (s->slots[i] != id) {
        if (!s->slots[i]) return;
        i = (i + 1) & mask;
    }
    s->slots[i] = 0;
    s->count--;
    /* Moves back the entries of the cluster that would no longer be found. */
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t home = id_slot(s, s->slots[j]);
        bool reachable = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (reachable) continue;
        s->slots[i] = s->slots[j];
        s->slots[j] = 0;
        i = j;
    }
}

/* ---- the model ----------------------------------------------------------------------------- */

typedef struct hook_socket {
    uv_poll_t poll;
    deliverer *d;
    curl_socket_t fd;
    int action; /* what curl waits for: CURL_POLL_IN, _OUT, _INOUT */
    struct hook_socket *previous, *next;
} hook_socket;

typedef struct hook_delivery hook_delivery;

typedef struct hook_endpoint {
    uint64_t key;
    char id[STORE_WEBHOOK_ID_LENGTH + 1];
    char *url;
    webhook_key secret;
    webhook_key previous_secret;
    bool has_previous;
    int64_t previous_until_ms;
    int references; /* the deliverer's table + each delivery of it */
    bool removed;   /* deleted, disabled or gone: nothing new starts */
    size_t in_flight;
    size_t claimed; /* its deliveries queued, in flight or awaiting their record */
    hook_delivery *queue_head, *queue_tail;
    size_t queued;
    bool more_due;       /* the outbox may hold due deliveries that are not loaded */
    int64_t next_due_ms; /* the next known due time after the last load (-1: none) */
} hook_endpoint;

struct hook_delivery {
    hook_delivery *next; /* queue or results list */
    bool gone;           /* answered 410: its endpoint is disabled once this outcome is recorded */
    hook_delivery *active_prev, *active_next; /* in flight */
    deliverer *d;
    hook_endpoint *endpoint;
    uint64_t id;
    uint32_t attempts; /* before this one */
    event *event;      /* NULL: the body is missing */
    CURL *easy;
    struct curl_slist *headers;
    char *response;
    size_t response_length;
    size_t response_seen;
    bool response_capped;
    char retry_after[64];
    char curl_error[CURL_ERROR_SIZE];
    char refused[200];
    uint64_t started_ns;
    bool counted; /* counts toward the global cap (not yet slow) */
    store_attempt_record record;
    char *error; /* owned text of record.attempt.error */
};

typedef struct record_batch {
    deliverer *d;
    hook_delivery *deliveries;
    size_t count;
    store_attempt_record records[];
} record_batch;

struct deliverer {
    uv_loop_t *loop;
    store *store;
    CURLM *multi;
    int64_t timeout_ms;
    size_t concurrency;
    size_t endpoint_concurrency;
    size_t load_batch;
    bool allow_private;
    retry_schedule schedule;
    char epoch[16];

    uv_timer_t curl_timer;
    uv_timer_t wake_timer;
    uv_idle_t pump_idle;
    int open_handles;
    bool curl_timer_armed;
    uint64_t curl_deadline_ns;

    hook_endpoint **endpoints; /* sorted by key */
    size_t endpoint_count;
    size_t turn;           /* round-robin start */
    size_t in_flight;      /* attempts counted toward the global cap */
    size_t all_in_flight;  /* every attempt in flight, slow ones included */
    hook_delivery *active; /* in flight, newest first */
    id_set claimed;
    hook_delivery *results_head, *results_tail;
    size_t result_count;
    size_t batches_in_flight;
    hook_socket *sockets;
    int64_t last_rescan_ms;
    bool pump_requested;
    bool started;
    bool stopping;
    bool stopped; /* handles closing; freed when they and the batches are done */
    bool store_failure_reported;
};

static int64_t wall_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void request_pump(deliverer *d);

/* ---- lifetime ------------------------------------------------------------------------------ */

static void endpoint_unref(hook_endpoint *e) {
    if (--e->references > 0) return;
    OPENSSL_cleanse(&e->secret, sizeof e->secret);
    OPENSSL_cleanse(&e->previous_secret, sizeof e->previous_secret);
    free(e->url);
    free(e);
}

static void delivery_free(hook_delivery *h) {
    if (h->easy) curl_easy_cleanup(h->easy);
    curl_slist_free_all(h->headers);
    event_release(h->event);
    free(h->response);
    free(h->error);
    endpoint_unref(h->endpoint);
    free(h);
}

/* A delivery leaves the claimed set: its next load may attempt it again. */
static void release_claim(deliverer *d, hook_delivery *h) {
    id_set_remove(&d->claimed, h->id);
    h->endpoint->claimed--;
}

static void maybe_free(deliverer *d) {
    if (!d->stopped || d->open_handles || d->batches_in_flight) return;
    free(d->claimed.slots);
    free(d);
    curl_global_cleanup();
}

static void on_handle_closed(uv_handle_t *handle) {
    deliverer *d = handle->data;
    d->open_handles--;
    maybe_free(d);
}

/* ---- curl on the loop ----------------------------------------------------------------------- */

static void check_finished(deliverer *d);

static void on_socket_closed(uv_handle_t *handle) {
    hook_socket *hs = handle->data;
    deliverer *d = hs->d;
    free(hs);
    d->open_handles--;
    maybe_free(d);
}

static void socket_close(hook_socket *hs) {
    deliverer *d = hs->d;
    if (hs->previous)
        hs->previous->next = hs->next;
    else
        d->sockets = hs->next;
    if (hs->next) hs->next->previous = hs->previous;
    hs->previous = hs->next = NULL;
    uv_close((uv_handle_t *)&hs->poll, on_socket_closed);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
    hook_socket *hs = poll->data;
    deliverer *d = hs->d;
    int flags = 0;
    if (status < 0) flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(d->multi, hs->fd, flags, &running);
    check_finished(d);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int action, void *user, void *socket_data) {
    deliverer *d = user;
    hook_socket *hs = socket_data;
    if (action == CURL_POLL_REMOVE) {
        if (hs) {
            curl_multi_assign(d->multi, fd, NULL);
            socket_close(hs);
        }
        return 0;
    }
    if (!hs) {
        hs = calloc(1, sizeof *hs);
        if (!hs) return -1;
        if (uv_poll_init_socket(d->loop, &hs->poll, fd) != 0) {
            free(hs);
            return -1;
        }
        hs->d = d;
        hs->fd = fd;
        hs->poll.data = hs;
        hs->next = d->sockets;
        if (d->sockets) d->sockets->previous = hs;
        d->sockets = hs;
        d->open_handles++;
        curl_multi_assign(d->multi, fd, hs);
    }
    hs->action = action;
    int events =
        (action & CURL_POLL_IN ? UV_READABLE : 0) | (action & CURL_POLL_OUT ? UV_WRITABLE : 0);
    if (events)
        uv_poll_start(&hs->poll, events, on_poll);
    else
        uv_poll_stop(&hs->poll);
    return 0;
}

static void on_curl_timeout(uv_timer_t *timer) {
    deliverer *d = timer->data;
    d->curl_timer_armed = false;
    int running;
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_finished(d);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *user) {
    deliverer *d = user;
    if (timeout_ms < 0) {
        uv_timer_stop(&d->curl_timer);
        d->curl_timer_armed = false;
        return 0;
    }
    /* Never act from inside this callback: a 0 timeout fires on the next loop iteration. */
    uv_timer_start(&d->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    d->curl_timer_armed = true;
    d->curl_deadline_ns = uv_hrtime() + (uint64_t)timeout_ms * 1000000;
    return 0;
}

/* The SSRF defence at connect time: every address curl is about to connect to is checked, so a
 * name that resolves to a private address (or rebinds to one) is refused. */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose,
                                    struct curl_sockaddr *address) {
    hook_delivery *h = user;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        address_class cls = address_classify(&address->addr);
        if (!address_class_allowed(cls, h->d->allow_private)) {
            char ip[INET6_ADDRSTRLEN] = "?";
            if (address->family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)&address->addr)->sin_addr, ip,
                          sizeof ip);
            else if (address->family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&address->addr)->sin6_addr, ip,
                          sizeof ip);
            snprintf(h->refused, sizeof h->refused,
                     "Refused to connect to %s, a %s address (only public addresses are allowed "
                     "without --webhook-allow-private).",
                     ip, address_class_name(cls));
            return CURL_SOCKET_BAD;
        }
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static size_t on_body(char *data, size_t size, size_t count, void *user) {
    hook_delivery *h = user;
    size_t n = size * count;
    if (h->response_length < STORE_RESPONSE_MAX) {
        if (!h->response) h->response = malloc(STORE_RESPONSE_MAX);
        if (h->response) {
            size_t room = STORE_RESPONSE_MAX - h->response_length;
            size_t take = n < room ? n : room;
            memcpy(h->response + h->response_length, data, take);
            h->response_length += take;
        }
    }
    h->response_seen += n;
    if (h->response_seen > DELIVERER_RESPONSE_READ_MAX) {
        h->response_capped = true; /* enough: the status decides, not the rest of the body */
        return 0;
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t count, void *user) {
    hook_delivery *h = user;
    size_t n = size * count;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        h->retry_after[0] = '\0'; /* a new response (after a 1xx) */
    } else if (n > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        const char *p = data + 12, *end = data + n;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t length = (size_t)(end - p);
        if (length >= sizeof h->retry_after) length = sizeof h->retry_after - 1;
        memcpy(h->retry_after, p, length);
        h->retry_after[length] = '\0';
    }
    return n;
}

/* ---- outcomes -------------------------------------------------------------------------------- */

static void disable_in_store(deliverer *d, hook_endpoint *e);

static void on_recorded(void *context, int status) {
    record_batch *b = context;
    deliverer *d = b->d;
    if (status != 0 && !d->store_failure_reported) {
        /* They stay due in the outbox and are attempted again (at least once). */
        fprintf(stderr, "herald: could not record webhook attempts; they will be retried\n");
        d->store_failure_reported = true;
    }
    hook_delivery *h = b->deliveries;
    while (h) {
        hook_delivery *next = h->next;
        hook_endpoint *e = h->endpoint;
        release_claim(d, h);
        if (status != 0) {
            /* Still due in the outbox; looked at again in a while, not at once, so a failing
             * disk never turns into a storm of attempts. */
            int64_t later = wall_ms() + DELIVERER_RESCAN_MS;
            if (e->next_due_ms < 0 || e->next_due_ms > later) e->next_due_ms = later;
        } else if (h->record.status == STORE_DELIVERY_FAILED &&
                   (e->next_due_ms < 0 || h->record.next_attempt_ms < e->next_due_ms)) {
            e->next_due_ms = h->record.next_attempt_ms;
        }
        if (h->gone) disable_in_store(d, e);
        delivery_free(h);
        h = next;
    }
    free(b);
    d->batches_in_flight--;
    if (d->stopped)
        maybe_free(d);
    else
        request_pump(d);
}

/* Hands the finished attempts to the store in one job. While running, one batch at a time: the
 * next batch collects everything that finishes meanwhile (a group commit of outcomes). */
static void flush_results(deliverer *d) {
    if (!d->results_head || (d->batches_in_flight && !d->stopping)) return;
    record_batch *b = malloc(sizeof *b + d->result_count * sizeof b->records[0]);
    if (!b) return; /* tried again on the next pump */
    b->d = d;
    b->deliveries = d->results_head;
    b->count = d->result_count;
    size_t i = 0;
    for (hook_delivery *h = b->deliveries; h; h = h->next)
        b->records[i++] = h->record;
    d->results_head = d->results_tail = NULL;
    d->result_count = 0;
    if (store_record_attempts(d->store, b->records, b->count, on_recorded, b) != 0) {
        d->batches_in_flight++;
        on_recorded(b, -1);
        return;
    }
    d->batches_in_flight++;
}

static void record_outcome(deliverer *d, hook_delivery *h, delivery_verdict v, int status_code,
                           int64_t latency_ms, const char *error) {
    int64_t now = wall_ms();
    h->error = error ? strdup(error) : NULL;
    h->record = (store_attempt_record){
        .delivery_id = h->id,
        .status = v.status,
        .next_attempt_ms = v.status == STORE_DELIVERY_FAILED ? now + v.delay_ms : 0,
        .attempt =
            {
                .time_ms = now - latency_ms,
                .status_code = status_code,
                .latency_ms = latency_ms,
                .error = h->error,
                .response = h->response,
                .response_length = h->response_length,
            },
    };
    h->next = NULL;
    if (d->results_tail)
        d->results_tail->next = h;
    else
        d->results_head = h;
    d->results_tail = h;
    d->result_count++;
}

/* An attempt that could not even start counts as a failed one (so it is never retried faster
 * than the schedule). */
static void fail_to_start(deliverer *d, hook_delivery *h, const char *why) {
    delivery_verdict v =
        delivery_judge(0, NULL, wall_ms() / 1000, h->attempts + 1, &d->schedule, NULL, NULL);
    record_outcome(d, h, v, 0, 0, why);
}

static void drop_queue(deliverer *d, hook_endpoint *e) {
    hook_delivery *h = e->queue_head;
    while (h) {
        hook_delivery *next = h->next;
        release_claim(d, h);
        delivery_free(h);
        h = next;
    }
    e->queue_head = e->queue_tail = NULL;
    e->queued = 0;
}

static void on_disabled(void *context, int status, const store_webhook *webhook) {
    (void)context;
    (void)webhook;
    if (status != STORE_OUTBOX_OK && status != STORE_OUTBOX_NOT_FOUND)
        fprintf(stderr, "herald: could not disable a webhook endpoint that answered 410\n");
}

/* A 410 stops the endpoint at once here; the store learns it only after the 410 attempt itself
 * is recorded (on_recorded), so the delivery log never shows the delivery cancelled without
 * the attempt that cancelled it. */
static void stop_gone_endpoint(deliverer *d, hook_delivery *h) {
    hook_endpoint *e = h->endpoint;
    h->gone = true;
    if (e->removed) return;
    e->removed = true;
    drop_queue(d, e);
    fprintf(stderr, "herald: webhook endpoint %s answered 410 Gone; it has been disabled\n", e->id);
}

static void disable_in_store(deliverer *d, hook_endpoint *e) {
    store_webhook_fields fields = {.enabled = 0};
    store_webhook_update(d->store, e->id, &fields, on_disabled, NULL);
}

static const char *describe_failure(const hook_delivery *h, CURLcode code, int64_t timeout_ms,
                                    char *out, size_t size) {
    if (h->refused[0]) return h->refused;
    const char *detail = h->curl_error[0] ? h->curl_error : curl_easy_strerror(code);
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(out, size, "No answer within %" PRId64 " ms.", timeout_ms);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(out, size, "Could not resolve the host: %s", detail);
        break;
    case CURLE_COULDNT_CONNECT:
        snprintf(out, size, "Could not connect: %s", detail);
        break;
    default:
        snprintf(out, size, "The request failed: %s", detail);
        break;
    }
    return out;
}

static void finish_attempt(deliverer *d, hook_delivery *h, CURLcode code) {
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    int64_t latency_ms = (int64_t)((uv_hrtime() - h->started_ns) / 1000000);
    curl_multi_remove_handle(d->multi, h->easy);
    curl_easy_cleanup(h->easy);
    h->easy = NULL;
    curl_slist_free_all(h->headers);
    h->headers = NULL;
    if (h->active_prev)
        h->active_prev->active_next = h->active_next;
    else
        d->active = h->active_next;
    if (h->active_next) h->active_next->active_prev = h->active_prev;
    h->active_prev = h->active_next = NULL;
    if (h->counted) d->in_flight--;
    d->all_in_flight--;
    h->endpoint->in_flight--;

    bool answered = status >= 100 && (code == CURLE_OK || h->response_capped);
    char problem[CURL_ERROR_SIZE + 128];
    const char *error;
    delivery_verdict v;
    if (answered) {
        v = delivery_judge(status, h->retry_after[0] ? h->retry_after : NULL, wall_ms() / 1000,
                           h->attempts + 1, &d->schedule, NULL, NULL);
        error = delivery_status_problem(status, problem, sizeof problem);
    } else {
        v = delivery_judge(0, NULL, wall_ms() / 1000, h->attempts + 1, &d->schedule, NULL, NULL);
        error = describe_failure(h, code, d->timeout_ms, problem, sizeof problem);
    }
    record_outcome(d, h, v, status >= 100 && status <= 999 ? (int)status : 0, latency_ms, error);
    if (v.disable_endpoint) stop_gone_endpoint(d, h);
    request_pump(d);
}

static void check_finished(deliverer *d) {
    CURLMsg *message;
    int left;
    while ((message = curl_multi_info_read(d->multi, &left))) {
        if (message->msg != CURLMSG_DONE) continue;
        CURL *easy = message->easy_handle;
        CURLcode code = message->data.result;
        hook_delivery *h = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&h);
        if (h) finish_attempt(d, h, code);
    }
}

/* ---- starting attempts ---------------------------------------------------------------------- */

static void start_attempt(deliverer *d, hook_delivery *h, int64_t now_ms) {
    hook_endpoint *e = h->endpoint;
    if (!h->event) {
        delivery_verdict dead = {.status = STORE_DELIVERY_DEAD};
        record_outcome(d, h, dead, 0, 0, "The event's body is missing from the outbox.");
        return;
    }
    buffer *body = event_json(h->event); /* cached by the event, which lives as long as h */
    if (!body) {
        fail_to_start(d, h, "Out of memory.");
        return;
    }
    const webhook_key *previous =
        e->has_previous && now_ms < e->previous_until_ms ? &e->previous_secret : NULL;
    delivery_headers headers;
    bool ok = delivery_headers_build(&headers, d->epoch, h->event->id, now_ms / 1000, &e->secret,
                                     previous, body->data, body->length);
    struct curl_slist *list = NULL;
    const char *lines[] = {"Content-Type: application/json", headers.id_line,
                           headers.timestamp_line, headers.signature_line.data,
                           "Expect:" /* no 100-continue round trip */};
    for (size_t i = 0; ok && i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *more = curl_slist_append(list, lines[i]);
        if (!more)
            ok = false;
        else
            list = more;
    }
    delivery_headers_free(&headers);
    h->headers = list;
    CURL *easy = ok ? curl_easy_init() : NULL;
    if (!easy) {
        fail_to_start(d, h, "Out of memory.");
        return;
    }
    h->easy = easy;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
    curl_easy_setopt(easy, CURLOPT_URL, e->url);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, (const char *)body->data);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->length);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "herald/" HERALD_VERSION);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is a failure */
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* no proxy from the environment */
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, h);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->curl_error);
    h->started_ns = uv_hrtime();
    if (curl_multi_add_handle(d->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        h->easy = NULL;
        fail_to_start(d, h, "Could not start the request.");
        return;
    }
    h->active_next = d->active;
    if (d->active) d->active->active_prev = h;
    d->active = h;
    h->counted = true;
    d->in_flight++;
    d->all_in_flight++;
    e->in_flight++;
}

/* ---- loading due deliveries -------------------------------------------------------------------
 */

typedef struct load_context {
    deliverer *d;
    hook_endpoint *e;
    bool stopped_early;
} load_context;

static bool on_due(void *context, uint64_t id, uint32_t attempts, event *ev) {
    load_context *l = context;
    deliverer *d = l->d;
    hook_endpoint *e = l->e;
    if (id_set_contains(&d->claimed, id)) { /* in flight or awaiting its record */
        event_release(ev);
        return true;
    }
    hook_delivery *h = e->queued < d->load_batch ? calloc(1, sizeof *h) : NULL;
    if (!h || !id_set_add(&d->claimed, id)) {
        free(h);
        event_release(ev);
        l->stopped_early = true;
        return false;
    }
    h->d = d;
    h->endpoint = e;
    e->references++;
    h->id = id;
    h->attempts = attempts;
    h->event = ev;
    e->claimed++;
    if (e->queue_tail)
        e->queue_tail->next = h;
    else
        e->queue_head = h;
    e->queue_tail = h;
    e->queued++;
    return true;
}

static void load_due(deliverer *d, hook_endpoint *e, int64_t now_ms) {
    e->more_due = false;
    e->next_due_ms = -1;
    /* Claimed ones come back from the query too: look past them. */
    size_t scan = d->load_batch + e->claimed;
    load_context l = {.d = d, .e = e};
    int visited = store_deliveries_due(d->store, e->key, now_ms, scan, on_due, &l);
    if (visited < 0) {
        e->next_due_ms = now_ms + 1000; /* the read failed: try again soon */
        return;
    }
    if (l.stopped_early || (size_t)visited >= scan) {
        e->more_due = true;
        return;
    }
    e->next_due_ms = store_deliveries_next_due(d->store, e->key, now_ms);
}

static bool endpoint_due(const hook_endpoint *e, int64_t now_ms) {
    return e->more_due || (e->next_due_ms >= 0 && e->next_due_ms <= now_ms);
}

static void on_wake(uv_timer_t *timer);

static void arm_wake_timer(deliverer *d, int64_t now_ms) {
    int64_t next = d->last_rescan_ms + DELIVERER_RESCAN_MS;
    for (size_t i = 0; i < d->endpoint_count; i++) {
        const hook_endpoint *e = d->endpoints[i];
        /* Due ones that wait for a free slot are started when a slot frees, not by the timer. */
        if (!e->removed && e->next_due_ms > now_ms && e->next_due_ms < next) next = e->next_due_ms;
    }
    int64_t delay = next - now_ms;
    if (delay < 0) delay = 0;
    if (delay > DELIVERER_RESCAN_MS) delay = DELIVERER_RESCAN_MS;
    uv_timer_start(&d->wake_timer, on_wake, (uint64_t)delay, 0);
}

/* An attempt that has waited DELIVERER_SLOW_ATTEMPT_MS for its answer stops counting toward the
 * global cap (it still holds its endpoint's slot): endpoints that hang can then never fill the
 * global cap and starve the healthy ones. Returns when the next counted attempt turns slow
 * (monotonic ns; 0: none). */
static uint64_t release_slow_attempts(deliverer *d) {
    uint64_t now = uv_hrtime(), slow_ns = (uint64_t)DELIVERER_SLOW_ATTEMPT_MS * 1000000, next = 0;
    for (hook_delivery *h = d->active; h; h = h->active_next) {
        if (!h->counted) continue;
        if (now - h->started_ns >= slow_ns) {
            h->counted = false;
            d->in_flight--;
        } else if (!next || h->started_ns + slow_ns < next) {
            next = h->started_ns + slow_ns;
        }
    }
    return next;
}

/* Starts what the free slots allow, endpoints taking turns one attempt at a time. */
static void pump(deliverer *d) {
    if (d->stopping) return;
    int64_t now = wall_ms();
    uint64_t next_slow = release_slow_attempts(d);
    size_t n = d->endpoint_count;
    bool progress = n > 0;
    while (progress && d->in_flight < d->concurrency) {
        progress = false;
        for (size_t k = 0; k < n && d->in_flight < d->concurrency; k++) {
            hook_endpoint *e = d->endpoints[(d->turn + k) % n];
            if (e->removed || e->in_flight >= d->endpoint_concurrency) continue;
            if (!e->queue_head && endpoint_due(e, now)) load_due(d, e, now);
            hook_delivery *h = e->queue_head;
            if (!h) continue;
            e->queue_head = h->next;
            if (!e->queue_head) e->queue_tail = NULL;
            e->queued--;
            h->next = NULL;
            start_attempt(d, h, now);
            progress = true;
        }
        d->turn = n ? (d->turn + 1) % n : 0;
    }
    flush_results(d);
    arm_wake_timer(d, now);
    /* Full: wake up when an attempt turns slow and frees its global slot. */
    if (d->in_flight >= d->concurrency && next_slow) {
        uint64_t now_ns = uv_hrtime();
        uint64_t delay = next_slow > now_ns ? (next_slow - now_ns) / 1000000 + 1 : 0;
        if (delay < uv_timer_get_due_in(&d->wake_timer))
            uv_timer_start(&d->wake_timer, on_wake, delay, 0);
    }
}

static void on_pump(uv_idle_t *idle) {
    deliverer *d = idle->data;
    uv_idle_stop(idle);
    d->pump_requested = false;
    pump(d);
}

/* Pumps once on the next loop iteration, however many reasons arrive meanwhile. */
static void request_pump(deliverer *d) {
    if (d->stopping || d->pump_requested || !d->started) return;
    d->pump_requested = true;
    uv_idle_start(&d->pump_idle, on_pump);
}

static void on_wake(uv_timer_t *timer) {
    deliverer *d = timer->data;
    int64_t now = wall_ms();
    /* The safety net: a missed notification or a clock jump strands nothing for long. */
    bool rescan = now - d->last_rescan_ms >= DELIVERER_RESCAN_MS || now < d->last_rescan_ms;
    if (rescan) d->last_rescan_ms = now;
    for (size_t i = 0; i < d->endpoint_count; i++) {
        hook_endpoint *e = d->endpoints[i];
        if (rescan || (e->next_due_ms >= 0 && e->next_due_ms <= now)) e->more_due = true;
    }
    pump(d);
}

/* ---- endpoints ------------------------------------------------------------------------------ */

static void endpoint_remove(deliverer *d, hook_endpoint *e) {
    e->removed = true;
    drop_queue(d, e);
    endpoint_unref(e); /* the table's reference; deliveries in flight keep theirs */
}

static void endpoint_apply(hook_endpoint *e, const store_webhook *w, int64_t now_ms) {
    char *url = strdup(w->url);
    if (url) {
        free(e->url);
        e->url = url;
    }
    webhook_key key;
    if (webhook_secret_parse(w->secret, strlen(w->secret), &key) == WEBHOOK_SECRET_OK)
        e->secret = key;
    e->has_previous = false;
    if (w->previous_secret && w->previous_secret_until_ms > now_ms &&
        webhook_secret_parse(w->previous_secret, strlen(w->previous_secret), &key) ==
            WEBHOOK_SECRET_OK) {
        e->previous_secret = key;
        e->has_previous = true;
        e->previous_until_ms = w->previous_secret_until_ms;
    }
    OPENSSL_cleanse(&key, sizeof key);
}

/* Brings the table in line with the stored endpoints (both sorted by key). */
static void reconcile(deliverer *d) {
    store_webhook_list list;
    if (store_webhook_list_all(d->store, &list) != 0) {
        fprintf(stderr, "herald: could not read the webhook endpoints\n");
        return;
    }
    int64_t now = wall_ms();
    hook_endpoint **table = calloc(list.count ? list.count : 1, sizeof *table);
    if (!table) {
        store_webhook_list_free(&list);
        return;
    }
    size_t count = 0, old = 0;
    for (size_t i = 0; i < list.count; i++) {
        const store_webhook *w = list.items[i];
        while (old < d->endpoint_count && d->endpoints[old]->key < w->key)
            endpoint_remove(d, d->endpoints[old++]);
        hook_endpoint *e = NULL;
        if (old < d->endpoint_count && d->endpoints[old]->key == w->key) e = d->endpoints[old++];
        if (e && (!w->enabled || e->removed)) {
            endpoint_remove(d, e);
            e = NULL;
        }
        if (!w->enabled) continue;
        if (!e) {
            e = calloc(1, sizeof *e);
            if (!e) continue; /* picked up by the next change */
            e->key = w->key;
            e->references = 1;
            e->next_due_ms = -1;
            snprintf(e->id, sizeof e->id, "%s", w->id);
        }
        endpoint_apply(e, w, now);
        if (!e->url) {
            endpoint_remove(d, e);
            continue;
        }
        e->more_due = true;
        table[count++] = e;
    }
    while (old < d->endpoint_count)
        endpoint_remove(d, d->endpoints[old++]);
    free(d->endpoints);
    d->endpoints = table;
    d->endpoint_count = count;
    if (d->turn >= count) d->turn = 0;
    store_webhook_list_free(&list);
}

static hook_endpoint *find_endpoint(deliverer *d, uint64_t key) {
    size_t low = 0, high = d->endpoint_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (d->endpoints[middle]->key < key)
            low = middle + 1;
        else
            high = middle;
    }
    return low < d->endpoint_count && d->endpoints[low]->key == key ? d->endpoints[low] : NULL;
}

static void on_outbox_change(void *context, store_outbox_change change, const uint64_t *keys,
                             size_t count) {
    deliverer *d = context;
    if (d->stopping || !d->started) return;
    if (change == STORE_OUTBOX_ENDPOINTS_CHANGED) {
        reconcile(d);
    } else {
        for (size_t i = 0; i < count; i++) {
            hook_endpoint *e = find_endpoint(d, keys[i]);
            if (e) e->more_due = true;
        }
    }
    request_pump(d);
}

/* ---- create, start, stop --------------------------------------------------------------------- */

int deliverer_create(uv_loop_t *loop, store *st, const deliverer_options *options, deliverer **out,
                     char *error, size_t error_size) {
    *out = NULL;
    retry_schedule schedule;
    const char *problem = NULL;
    if (options->retry_schedule) {
        if (!retry_schedule_parse(options->retry_schedule, &schedule, &problem)) {
            snprintf(error, error_size, "--webhook-retry-schedule: %s", problem);
            return -1;
        }
    } else {
        retry_schedule_default(&schedule);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(error, error_size, "could not initialise libcurl");
        return -1;
    }
    deliverer *d = calloc(1, sizeof *d);
    CURLM *multi = d ? curl_multi_init() : NULL;
    if (!multi) {
        free(d);
        curl_global_cleanup();
        snprintf(error, error_size, "out of memory starting the webhook deliverer");
        return -1;
    }
    d->loop = loop;
    d->store = st;
    d->multi = multi;
    d->schedule = schedule;
    d->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (d->timeout_ms > LONG_MAX) d->timeout_ms = LONG_MAX;
    d->concurrency = options->concurrency ? options->concurrency : 64;
    d->endpoint_concurrency = options->endpoint_concurrency ? options->endpoint_concurrency : 4;
    d->load_batch = d->endpoint_concurrency * 4;
    if (d->load_batch < LOAD_BATCH_MIN) d->load_batch = LOAD_BATCH_MIN;
    if (d->load_batch > LOAD_BATCH_MAX) d->load_batch = LOAD_BATCH_MAX;
    d->allow_private = options->allow_private;
    snprintf(d->epoch, sizeof d->epoch, "%s", store_epoch(st));
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, d);
    /* Idle keep-alive connections kept for reuse: one per slot. */
    long cache = d->concurrency > 1000 ? 1000 : (long)d->concurrency;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, cache < 16 ? 16L : cache);
    uv_timer_init(loop, &d->curl_timer);
    uv_timer_init(loop, &d->wake_timer);
    uv_idle_init(loop, &d->pump_idle);
    d->curl_timer.data = d->wake_timer.data = d->pump_idle.data = d;
    d->open_handles = 3;
    *out = d;
    return 0;
}

void deliverer_start(deliverer *d) {
    if (d->started || d->stopping) return;
    d->started = true;
    d->last_rescan_ms = wall_ms();
    store_set_outbox_listener(d->store, on_outbox_change, d);
    reconcile(d); /* every endpoint starts with more_due: a restart attempts all that is due */
    request_pump(d);
}

/* Drives curl with poll(2) until the attempts in flight finish or the grace period ends: the
 * shutdown hook runs inside a loop callback, where the loop itself cannot be run. */
static void drain(deliverer *d) {
    uint64_t deadline = uv_hrtime() + (uint64_t)DELIVERER_STOP_GRACE_MS * 1000000;
    while (d->active) {
        uint64_t now = uv_hrtime();
        if (now >= deadline) break;
        uint64_t wait_ns = deadline - now;
        if (d->curl_timer_armed)
            wait_ns =
                d->curl_deadline_ns > now
                    ? (d->curl_deadline_ns - now < wait_ns ? d->curl_deadline_ns - now : wait_ns)
                    : 0;
        size_t n = 0;
        for (hook_socket *hs = d->sockets; hs; hs = hs->next)
            n++;
        struct pollfd *fds = calloc(n ? n : 1, sizeof *fds);
        if (!fds) break;
        size_t used = 0;
        for (hook_socket *hs = d->sockets; hs; hs = hs->next) {
            short events = (short)((hs->action & CURL_POLL_IN ? POLLIN : 0) |
                                   (hs->action & CURL_POLL_OUT ? POLLOUT : 0));
            if (!events) continue;
            fds[used].fd = hs->fd;
            fds[used++].events = events;
        }
        int ready = poll(fds, (nfds_t)used, (int)((wait_ns + 999999) / 1000000));
        if (ready < 0 && errno != EINTR) {
            free(fds);
            break;
        }
        int running;
        for (size_t i = 0; ready > 0 && i < used; i++) {
            if (!fds[i].revents) continue;
            int flags = (fds[i].revents & (POLLIN | POLLHUP) ? CURL_CSELECT_IN : 0) |
                        (fds[i].revents & POLLOUT ? CURL_CSELECT_OUT : 0) |
                        (fds[i].revents & (POLLERR | POLLNVAL) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(d->multi, fds[i].fd, flags, &running);
        }
        free(fds);
        if (d->curl_timer_armed && uv_hrtime() >= d->curl_deadline_ns) {
            d->curl_timer_armed = false;
            curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        check_finished(d);
    }
}

void deliverer_stop(void *context) {
    deliverer *d = context;
    if (d->stopping) return;
    d->stopping = true;
    store_set_outbox_listener(d->store, NULL, NULL);
    uv_idle_stop(&d->pump_idle);
    uv_timer_stop(&d->wake_timer);
    for (size_t i = 0; i < d->endpoint_count; i++)
        drop_queue(d, d->endpoints[i]);
    size_t in_flight = d->all_in_flight;
    if (in_flight)
        fprintf(stderr, "herald: waiting for %zu webhook attempt%s in flight\n", in_flight,
                in_flight == 1 ? "" : "s");
    drain(d);
    /* Abandoned: still due in the outbox, attempted again after a restart. */
    size_t abandoned = 0;
    while (d->active) {
        hook_delivery *h = d->active;
        d->active = h->active_next;
        curl_multi_remove_handle(d->multi, h->easy);
        release_claim(d, h);
        delivery_free(h);
        abandoned++;
    }
    d->in_flight = d->all_in_flight = 0;
    if (abandoned)
        fprintf(stderr, "herald: abandoned %zu webhook attempt%s after %d s; they stay due\n",
                abandoned, abandoned == 1 ? "" : "s", DELIVERER_STOP_GRACE_MS / 1000);
    flush_results(d); /* committed by store_close, which runs right after this hook */
    curl_multi_cleanup(d->multi);
    d->multi = NULL;
    while (d->sockets)
        socket_close(d->sockets);
    uv_close((uv_handle_t *)&d->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->wake_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->pump_idle, on_handle_closed);
    for (size_t i = 0; i < d->endpoint_count; i++)
        endpoint_remove(d, d->endpoints[i]);
    free(d->endpoints);
    d->endpoints = NULL;
    d->endpoint_count = 0;
    d->stopped = true;
    maybe_free(d);
}

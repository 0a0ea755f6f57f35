/* Integration test of src/hooks/deliverer.c: the real store, libcurl on the uv loop, and a tiny
 * HTTP receiver on the same loop that answers with scripted statuses. Checks delivery, retries
 * from the outbox's due times, the per-endpoint cap, 410, and a clean stop (ASan/LSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the above first */
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "hooks/deliverer.h"
#include "hooks/verify.h"
#include "store/outbox.h"
#include "store/store.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* ---- the receiver ------------------------------------------------------------------------- */

typedef struct receiver {
    uv_tcp_t listener;
    int port;
    int statuses[8]; /* answer i gets statuses[i] (the last one repeats) */
    int status_count;
    int requests;
    int verified;
    int in_flight;
    int max_in_flight;
    int delay_ms;
    int open_handles;
} receiver;

typedef struct peer {
    uv_tcp_t tcp;
    uv_timer_t timer;
    receiver *r;
    char buffer[65536];
    size_t length;
    int status;
    int closing;
} peer;

static void on_peer_closed(uv_handle_t *handle) {
    peer *p = handle->data;
    if (--p->closing == 0) free(p);
}

static void peer_close(peer *p) {
    if (p->closing) return;
    p->closing = 2;
    uv_close((uv_handle_t *)&p->tcp, on_peer_closed);
    uv_close((uv_handle_t *)&p->timer, on_peer_closed);
}

static const char *header_value(const char *head, const char *name) {
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, name, n) == 0 && line[2 + n] == ':') return line + 3 + n;
    return NULL;
}

static void copy_header(const char *head, const char *name, char *out, size_t size) {
    const char *v = header_value(head, name);
    out[0] = '\0';
    if (!v) return;
    while (*v == ' ')
        v++;
    size_t n = strcspn(v, "\r");
    if (n >= size) n = size - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static void on_written(uv_write_t *w, int status) {
    free(w);
}

static void answer(peer *p) {
    receiver *r = p->r;
    r->in_flight--;
    static char response[128];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                     p->status);
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t buf = uv_buf_init(response, (unsigned)n);
    uv_write(w, (uv_stream_t *)&p->tcp, &buf, 1, on_written);
}

static void on_delay(uv_timer_t *timer) {
    answer(timer->data);
}

/* Handles every complete request in the buffer. */
static void serve(peer *p) {
    receiver *r = p->r;
    for (;;) {
        p->buffer[p->length] = '\0';
        char *end = strstr(p->buffer, "\r\n\r\n");
        if (!end) return;
        const char *length_text = header_value(p->buffer, "content-length");
        size_t head = (size_t)(end + 4 - p->buffer);
        size_t body = length_text ? strtoul(length_text, NULL, 10) : 0;
        if (p->length < head + body) return;
        char id[128], timestamp[64], signature[512];
        copy_header(p->buffer, "webhook-id", id, sizeof id);
        copy_header(p->buffer, "webhook-timestamp", timestamp, sizeof timestamp);
        copy_header(p->buffer, "webhook-signature", signature, sizeof signature);
        if (hook_verify_standard(SECRET, id, timestamp, signature, p->buffer + head, body,
                                 atoll(timestamp), 300) == HOOK_VERDICT_OK)
            r->verified++;
        int index = r->requests < r->status_count ? r->requests : r->status_count - 1;
        p->status = r->statuses[index];
        r->requests++;
        if (++r->in_flight > r->max_in_flight) r->max_in_flight = r->in_flight;
        memmove(p->buffer, p->buffer + head + body, p->length - head - body);
        p->length -= head + body;
        if (r->delay_ms)
            uv_timer_start(&p->timer, on_delay, (uint64_t)r->delay_ms, 0);
        else
            answer(p);
    }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    peer *p = handle->data;
    *buf = uv_buf_init(p->buffer + p->length, (unsigned)(sizeof p->buffer - 1 - p->length));
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    peer *p = stream->data;
    if (n < 0) {
        peer_close(p);
        return;
    }
    p->length += (size_t)n;
    serve(p);
}

static void on_connection(uv_stream_t *server, int status) {
    receiver *r = server->data;
    peer *p = calloc(1, sizeof *p);
    p->r = r;
    uv_tcp_init(server->loop, &p->tcp);
    uv_timer_init(server->loop, &p->timer);
    p->tcp.data = p->timer.data = p;
    uv_accept(server, (uv_stream_t *)&p->tcp);
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

static void receiver_start(uv_loop_t *loop, receiver *r) {
    struct sockaddr_in address;
    uv_ip4_addr("127.0.0.1", 0, &address);
    uv_tcp_init(loop, &r->listener);
    r->listener.data = r;
    assert_int_equal(uv_tcp_bind(&r->listener, (struct sockaddr *)&address, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->listener, 64, on_connection), 0);
    struct sockaddr_storage bound;
    int length = sizeof bound;
    uv_tcp_getsockname(&r->listener, (struct sockaddr *)&bound, &length);
    r->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void close_peers(uv_handle_t *handle, void *arg) {
    if (handle->type == UV_TCP && handle != arg && !uv_is_closing(handle) && handle->data) {
        peer *p = handle->data;
        if (&p->tcp == (uv_tcp_t *)handle) peer_close(p);
    }
}

/* ---- fixture ------------------------------------------------------------------------------ */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

typedef struct fixture {
    uv_loop_t loop;
    char directory[4096];
    store *s;
    deliverer *d;
    receiver r;
    char id[STORE_WEBHOOK_ID_LENGTH + 1];
    uint64_t key;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    const char *tmp = getenv("HERALD_TEST_TMP");
    snprintf(f->directory, sizeof f->directory, "%s", tmp && *tmp ? tmp : "/tmp");
    mkdir(f->directory, 0700);
    strncat(f->directory, "/deliverer-XXXXXX", sizeof f->directory - strlen(f->directory) - 1);
    assert_non_null(mkdtemp(f->directory));
    store_options options = {.data_directory = f->directory};
    char error[256];
    if (store_open(&f->loop, &options, &f->s, error, sizeof error) != 0) fail_msg("%s", error);
    f->r.statuses[0] = 200;
    f->r.status_count = 1;
    receiver_start(&f->loop, &f->r);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->d) deliverer_stop(f->d);
    store_close(f->s);
    uv_close((uv_handle_t *)&f->r.listener, NULL);
    uv_walk(&f->loop, close_peers, &f->r.listener);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->directory, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start(fixture *f, const char *schedule, size_t endpoint_concurrency) {
    deliverer_options options = {.timeout_ms = 5000,
                                 .retry_schedule = schedule,
                                 .concurrency = 64,
                                 .endpoint_concurrency = endpoint_concurrency,
                                 .allow_private = true};
    char error[256];
    if (deliverer_create(&f->loop, f->s, &options, &f->d, error, sizeof error) != 0)
        fail_msg("%s", error);
    deliverer_start(f->d);
}

static void on_created(void *context, int status, const store_webhook *w) {
    fixture *f = context;
    assert_int_equal(status, STORE_OUTBOX_OK);
    snprintf(f->id, sizeof f->id, "%s", w->id);
    f->key = w->key;
}

static void create_endpoint(fixture *f) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", f->r.port);
    store_webhook_fields fields = {
        .url = url, .topics = "[\"t/**\"]", .enabled = -1, .secret = SECRET};
    assert_int_equal(store_webhook_create(f->s, &fields, on_created, f), 0);
}

static void on_published(void *context, const store_publish_result *result) {
    assert_true(result->ok);
}

static void publish(fixture *f, size_t count) {
    store_item items[64];
    for (size_t i = 0; i < count; i++)
        items[i] = (store_item){.topic = "t/1",
                                .topic_length = 3,
                                .type = "message",
                                .data_is_json = true,
                                .data = "{\"n\":1}",
                                .data_length = 7};
    assert_int_equal(store_publish(f->s, items, count, NULL, 0, true, on_published, NULL), 0);
}

typedef bool (*condition)(fixture *f);

typedef struct waiter {
    fixture *f;
    condition done;
    bool met;
} waiter;

static void on_check(uv_timer_t *timer) {
    waiter *w = timer->data;
    if (w->done(w->f)) {
        w->met = true;
        uv_stop(timer->loop);
    }
}

static void stop_timer(uv_timer_t *timer) {
    uv_stop(timer->loop);
}

/* Runs the loop until done(f) or the deadline. */
static bool run_until(fixture *f, condition done, uint64_t timeout_ms) {
    waiter w = {.f = f, .done = done};
    uv_timer_t check, deadline;
    uv_timer_init(&f->loop, &check);
    uv_timer_init(&f->loop, &deadline);
    check.data = &w;
    uv_timer_start(&check, on_check, 5, 5);
    uv_timer_start(&deadline, stop_timer, timeout_ms, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&check, NULL);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return w.met;
}

static size_t count_status(fixture *f, store_delivery_status status) {
    store_delivery_list list;
    if (store_delivery_list_recent(f->s, f->key, &status, 1000, &list) != 0) return 0;
    size_t n = list.count;
    store_delivery_list_free(&list);
    return n;
}

static bool twenty_succeeded(fixture *f) {
    return count_status(f, STORE_DELIVERY_SUCCEEDED) == 20;
}

static bool one_succeeded(fixture *f) {
    return count_status(f, STORE_DELIVERY_SUCCEEDED) == 1;
}

static bool one_dead(fixture *f) {
    return count_status(f, STORE_DELIVERY_DEAD) == 1;
}

static bool one_cancelled(fixture *f) {
    return count_status(f, STORE_DELIVERY_CANCELLED) == 1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_delivers_and_records(void **state) {
    fixture *f = *state;
    f->r.delay_ms = 20;
    start(f, "10ms", 3);
    create_endpoint(f);
    publish(f, 20);
    assert_true(run_until(f, twenty_succeeded, 10000));
    assert_int_equal(f->r.requests, 20);
    assert_int_equal(f->r.verified, 20);
    assert_true(f->r.max_in_flight <= 3);
    assert_true(f->r.max_in_flight >= 2); /* attempts do run concurrently */
}

static void test_retries_from_due_times(void **state) {
    fixture *f = *state;
    f->r.statuses[0] = 500;
    f->r.statuses[1] = 503;
    f->r.statuses[2] = 200;
    f->r.status_count = 3;
    start(f, "50ms,50ms,50ms", 4);
    create_endpoint(f);
    publish(f, 1);
    assert_true(run_until(f, one_succeeded, 10000));
    assert_int_equal(f->r.requests, 3);
    store_delivery_list list;
    assert_int_equal(store_delivery_list_recent(f->s, f->key, NULL, 10, &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].attempts_listed, 3);
    assert_int_equal(list.items[0].attempts[0].status_code, 500);
    assert_int_equal(list.items[0].attempts[1].status_code, 503);
    assert_int_equal(list.items[0].attempts[2].status_code, 200);
    assert_non_null(list.items[0].attempts[0].error);
    assert_null(list.items[0].attempts[2].error);
    store_delivery_list_free(&list);
}

static bool endpoint_disabled(fixture *f) {
    store_webhook *w = NULL;
    bool disabled = store_webhook_get(f->s, f->id, &w) == 0 && !w->enabled;
    store_webhook_free(w);
    return disabled && one_cancelled(f);
}

static void test_gone_disables(void **state) {
    fixture *f = *state;
    f->r.statuses[0] = 410;
    start(f, "10ms", 4);
    create_endpoint(f);
    publish(f, 1);
    assert_true(run_until(f, endpoint_disabled, 10000));
    assert_int_equal(f->r.requests, 1);
}

static void test_refused_address(void **state) {
    fixture *f = *state;
    deliverer_options options = {.retry_schedule = "10ms", .allow_private = false};
    char error[256];
    assert_int_equal(deliverer_create(&f->loop, f->s, &options, &f->d, error, sizeof error), 0);
    deliverer_start(f->d);
    create_endpoint(f); /* the store takes what the API vetted; the connect-time check refuses */
    publish(f, 1);
    assert_true(run_until(f, one_dead, 10000));
    assert_int_equal(f->r.requests, 0);
    store_delivery_list list;
    assert_int_equal(store_delivery_list_recent(f->s, f->key, NULL, 10, &list), 0);
    assert_int_equal(list.items[0].attempts_listed, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(list.items[0].attempts[i].status_code, 0);
        assert_non_null(strstr(list.items[0].attempts[i].error, "loopback"));
    }
    store_delivery_list_free(&list);
}

static void test_bad_schedule(void **state) {
    fixture *f = *state;
    deliverer_options options = {.retry_schedule = "5s,,1m"};
    char error[256] = "";
    assert_int_equal(deliverer_create(&f->loop, f->s, &options, &f->d, error, sizeof error), -1);
    assert_null(f->d);
    assert_non_null(strstr(error, "--webhook-retry-schedule"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivers_and_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_from_due_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_disables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_schedule, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the webhook outbox in src/store: deliveries written in the event's transaction,
 * filters, cancellation, due times, attempt records, retry, replay, pruning, and the generic
 * store_run jobs it is built on. A real uv loop and a real SQLite file in a scratch directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the above first */
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/outbox.h"
#include "store/store.h"
#include "store/store_internal.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* ---- fixtures ----------------------------------------------------------------------------- */

static char base_directory[2048];

static void make_directory(char *out, size_t size) {
    if (!base_directory[0]) {
        const char *tmp = getenv("HERALD_TEST_TMP");
        snprintf(base_directory, sizeof base_directory, "%s", tmp && *tmp ? tmp : "/tmp");
        mkdir(base_directory, 0700);
    }
    snprintf(out, size, "%s/outbox-XXXXXX", base_directory);
    assert_non_null(mkdtemp(out));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

typedef struct fixture {
    uv_loop_t loop;
    char directory[4096];
    store_options options;
    store *s;
} fixture;

static void open_store(fixture *f) {
    char error[256] = "";
    f->options.data_directory = f->directory;
    if (store_open(&f->loop, &f->options, &f->s, error, sizeof error) != 0)
        fail_msg("store_open: %s", error);
}

static void close_store(fixture *f) {
    store_close(f->s);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    make_directory(f->directory, sizeof f->directory);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->s) close_store(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->directory, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void run(fixture *f) {
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int64_t query(fixture *f, const char *sql) {
    char path[4200];
    snprintf(path, sizeof path, "%s/herald.db", f->directory);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct webhook_result {
    int calls;
    int status;
    uint64_t key;
    char id[STORE_WEBHOOK_ID_LENGTH + 1];
    bool enabled;
    char secret[128];
    char previous_secret[128];
    int64_t previous_until_ms;
    char types[256];
    char topics[256];
} webhook_result;

static void on_webhook(void *context, int status, const store_webhook *w) {
    webhook_result *r = context;
    r->calls++;
    r->status = status;
    if (!w) return;
    r->key = w->key;
    snprintf(r->id, sizeof r->id, "%s", w->id);
    r->enabled = w->enabled;
    snprintf(r->secret, sizeof r->secret, "%s", w->secret);
    snprintf(r->previous_secret, sizeof r->previous_secret, "%s",
             w->previous_secret ? w->previous_secret : "");
    r->previous_until_ms = w->previous_secret_until_ms;
    snprintf(r->types, sizeof r->types, "%s", w->types ? w->types : "(all)");
    snprintf(r->topics, sizeof r->topics, "%s", w->topics);
}

typedef struct count_result {
    int calls;
    int status;
    uint64_t count;
} count_result;

static void on_count(void *context, int status, uint64_t count) {
    count_result *r = context;
    r->calls++;
    r->status = status;
    r->count = count;
}

static webhook_result create(fixture *f, const char *topics, const char *types) {
    store_webhook_fields fields = {.url = "http://127.0.0.1:9/hook",
                                   .topics = topics,
                                   .types = types,
                                   .enabled = -1,
                                   .secret = SECRET};
    webhook_result r = {0};
    assert_int_equal(store_webhook_create(f->s, &fields, on_webhook, &r), 0);
    run(f);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, STORE_OUTBOX_OK);
    assert_int_equal(strlen(r.id), STORE_WEBHOOK_ID_LENGTH);
    return r;
}

static webhook_result update(fixture *f, const char *id, store_webhook_fields fields) {
    webhook_result r = {0};
    assert_int_equal(store_webhook_update(f->s, id, &fields, on_webhook, &r), 0);
    run(f);
    assert_int_equal(r.calls, 1);
    return r;
}

static void on_published(void *context, const store_publish_result *result) {
    uint64_t *id = context;
    assert_true(result->ok);
    *id = result->events[0]->id;
}

static uint64_t publish(fixture *f, const char *topic, const char *type, const char *data) {
    store_item it = {.topic = topic,
                     .topic_length = strlen(topic),
                     .type = type,
                     .data_is_json = true,
                     .data = data,
                     .data_length = strlen(data)};
    uint64_t id = 0;
    assert_int_equal(store_publish(f->s, &it, 1, NULL, 0, false, on_published, &id), 0);
    run(f);
    assert_int_not_equal(id, 0);
    return id;
}

typedef struct due_list {
    uint64_t ids[64];
    uint32_t attempts[64];
    uint64_t event_ids[64];
    char data[64][64];
    size_t count;
} due_list;

static bool collect(void *context, uint64_t id, uint32_t attempts, event *e) {
    due_list *l = context;
    if (l->count < 64) {
        l->ids[l->count] = id;
        l->attempts[l->count] = attempts;
        l->event_ids[l->count] = e ? e->id : 0;
        snprintf(l->data[l->count], sizeof l->data[0], "%s", e ? e->data : "(missing)");
        l->count++;
    }
    event_release(e);
    return true;
}

static due_list due(fixture *f, uint64_t key, int64_t now_ms) {
    due_list l = {0};
    assert_true(store_deliveries_due(f->s, key, now_ms, 64, collect, &l) >= 0);
    return l;
}

static void on_recorded(void *context, int status) {
    *(int *)context = status;
}

static void record(fixture *f, uint64_t delivery_id, store_delivery_status status,
                   int64_t next_attempt_ms, int status_code, const char *error) {
    store_attempt_record r = {.delivery_id = delivery_id,
                              .status = status,
                              .next_attempt_ms = next_attempt_ms,
                              .attempt = {.time_ms = store_now_ms(f->s),
                                          .status_code = status_code,
                                          .latency_ms = 12,
                                          .error = (char *)error,
                                          .response = (char *)"body",
                                          .response_length = 4}};
    int recorded = -99;
    assert_int_equal(store_record_attempts(f->s, &r, 1, on_recorded, &recorded), 0);
    run(f);
    assert_int_equal(recorded, 0);
}

typedef struct heard {
    int endpoint_changes;
    int queued_calls;
    uint64_t keys[16];
    size_t key_count;
} heard;

static void listen_outbox(void *context, store_outbox_change change, const uint64_t *keys,
                          size_t count) {
    heard *h = context;
    if (change == STORE_OUTBOX_ENDPOINTS_CHANGED) {
        h->endpoint_changes++;
        return;
    }
    h->queued_calls++;
    for (size_t i = 0; i < count && h->key_count < 16; i++)
        h->keys[h->key_count++] = keys[i];
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_endpoint_lifecycle(void **state) {
    fixture *f = *state;
    open_store(f);
    heard h = {0};
    store_set_outbox_listener(f->s, listen_outbox, &h);
    webhook_result a = create(f, "[\"orders/**\"]", "[\"status\"]");
    webhook_result b = create(f, "[\"**\"]", NULL);
    assert_string_not_equal(a.id, b.id);
    assert_true(b.key > a.key);
    assert_string_equal(a.types, "[\"status\"]");
    assert_string_equal(b.types, "(all)");
    assert_true(a.enabled);
    assert_int_equal(h.endpoint_changes, 2);

    store_webhook *w = NULL;
    assert_int_equal(store_webhook_get(f->s, a.id, &w), 0);
    assert_string_equal(w->url, "http://127.0.0.1:9/hook");
    assert_string_equal(w->topics, "[\"orders/**\"]");
    assert_string_equal(w->description, "");
    store_webhook_free(w);
    assert_int_equal(store_webhook_get(f->s, "wh_0000000000000000", &w), 1);
    assert_null(w);

    /* Only the given fields change; types can go back to "every type". */
    webhook_result u =
        update(f, a.id,
               (store_webhook_fields){
                   .description = "d", .set_types = true, .types = NULL, .enabled = -1});
    assert_int_equal(u.status, STORE_OUTBOX_OK);
    assert_string_equal(u.types, "(all)");
    assert_string_equal(u.topics, "[\"orders/**\"]");
    assert_int_equal(update(f, "wh_0000000000000000", (store_webhook_fields){.enabled = 0}).status,
                     STORE_OUTBOX_NOT_FOUND);
    assert_int_equal(update(f, "nonsense", (store_webhook_fields){.enabled = 0}).status,
                     STORE_OUTBOX_NOT_FOUND);

    /* Rotation keeps the old secret for the overlap. */
    webhook_result rotated = {0};
    int64_t before = store_now_ms(f->s);
    assert_int_equal(store_webhook_rotate_secret(f->s, a.id,
                                                 "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1000,
                                                 on_webhook, &rotated),
                     0);
    run(f);
    assert_int_equal(rotated.status, STORE_OUTBOX_OK);
    assert_string_equal(rotated.secret, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_string_equal(rotated.previous_secret, SECRET);
    assert_true(rotated.previous_until_ms >= before + 1000);

    store_webhook_list list;
    assert_int_equal(store_webhook_list_all(f->s, &list), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0]->id, a.id); /* creation order */
    store_webhook_list_free(&list);

    count_result deleted = {0};
    assert_int_equal(store_webhook_delete(f->s, a.id, on_count, &deleted), 0);
    run(f);
    assert_int_equal(deleted.status, STORE_OUTBOX_OK);
    assert_int_equal(store_webhook_get(f->s, a.id, &w), 1);
    count_result again = {0};
    assert_int_equal(store_webhook_delete(f->s, a.id, on_count, &again), 0);
    run(f);
    assert_int_equal(again.status, STORE_OUTBOX_NOT_FOUND);

    /* Endpoints survive a restart; keys are never reused. */
    close_store(f);
    open_store(f);
    webhook_result c = create(f, "[\"x\"]", NULL);
    assert_true(c.key > b.key);
    assert_int_equal(store_webhook_get(f->s, b.id, &w), 0);
    store_webhook_free(w);
    assert_int_equal(query(f, "SELECT value FROM meta WHERE key = 'schema_version'"), 2);
}

static void test_deliveries_written_with_the_event(void **state) {
    fixture *f = *state;
    open_store(f);
    heard h = {0};
    store_set_outbox_listener(f->s, listen_outbox, &h);
    webhook_result orders = create(f, "[\"orders/*\"]", "[\"created\"]");
    webhook_result all = create(f, "[\"orders/**\",\"users/1\"]", NULL);
    webhook_result off = create(f, "[\"**\"]", NULL);
    assert_int_equal(update(f, off.id, (store_webhook_fields){.enabled = 0}).status,
                     STORE_OUTBOX_OK);

    uint64_t e1 = publish(f, "orders/1", "created", "{\"n\":1}");
    uint64_t e2 = publish(f, "orders/1", "updated", "{\"n\":2}");
    uint64_t e3 = publish(f, "orders/1/items", "created", "{\"n\":3}");
    uint64_t e4 = publish(f, "users/1", "created", "{\"n\":4}");
    publish(f, "users/2", "created", "{\"n\":5}"); /* matches nothing */

    /* orders: e1 only; all: e1, e2, e3, e4; the disabled endpoint: nothing. */
    int64_t now = store_now_ms(f->s) + 1;
    due_list d = due(f, orders.key, now);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.event_ids[0], e1);
    assert_int_equal(d.attempts[0], 0);
    assert_string_equal(d.data[0], "{\"n\":1}");
    d = due(f, all.key, now);
    assert_int_equal(d.count, 4);
    uint64_t want[] = {e1, e2, e3, e4};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(d.event_ids[i], want[i]);
    assert_int_equal(due(f, off.key, now).count, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 5);
    assert_int_equal(query(f, "SELECT count(*) FROM delivery_events"), 4); /* one body per event */
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries WHERE status = 0"), 5);

    /* The listener heard which endpoints got deliveries, each commit once. */
    assert_int_equal(h.queued_calls, 4);
    assert_int_equal(h.keys[0], orders.key);
    assert_int_equal(h.keys[1], all.key);

    /* Nothing is due before it was written. */
    assert_int_equal(due(f, all.key, 0).count, 0);
}

static void test_failed_commit_writes_no_delivery(void **state) {
    fixture *f = *state;
    open_store(f);
    create(f, "[\"**\"]", NULL);
    store_test_limit_pages(f->s, true);
    size_t big_length = 1 << 20;
    char *big = malloc(big_length + 3);
    memset(big, 'x', big_length + 2);
    big[0] = '"';
    big[big_length + 1] = '"';
    big[big_length + 2] = '\0';
    store_item it = {.topic = "a",
                     .topic_length = 1,
                     .type = "message",
                     .data_is_json = true,
                     .data = big,
                     .data_length = big_length + 2};
    assert_int_equal(store_publish(f->s, &it, 1, NULL, 0, false, NULL, NULL), 0);
    run(f);
    free(big);
    store_test_limit_pages(f->s, false);
    assert_int_equal(query(f, "SELECT count(*) FROM events"), 0);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 0);
    assert_int_equal(query(f, "SELECT count(*) FROM delivery_events"), 0);
    /* The filters still work after the rollback. */
    publish(f, "a", "message", "1");
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 1);
}

static void test_attempts_and_due_times(void **state) {
    fixture *f = *state;
    open_store(f);
    webhook_result w = create(f, "[\"t\"]", NULL);
    publish(f, "t", "message", "1");
    publish(f, "t", "message", "2");
    int64_t now = store_now_ms(f->s) + 1;
    due_list d = due(f, w.key, now);
    assert_int_equal(d.count, 2);
    uint64_t first = d.ids[0], second = d.ids[1];

    /* A failure with a retry in 5 s: not due now, due then; the next due time says when. */
    record(f, first, STORE_DELIVERY_FAILED, now + 5000, 500, "The endpoint answered 500.");
    record(f, second, STORE_DELIVERY_SUCCEEDED, 0, 200, NULL);
    assert_int_equal(due(f, w.key, now).count, 0);
    assert_int_equal(store_deliveries_next_due(f->s, w.key, now), now + 5000);
    d = due(f, w.key, now + 5000);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.ids[0], first);
    assert_int_equal(d.attempts[0], 1);
    assert_int_equal(store_deliveries_next_due(f->s, w.key, now + 5000), -1);

    /* The log: newest first, statuses, attempts with their details. */
    store_delivery_list list;
    assert_int_equal(store_delivery_list_recent(f->s, w.key, NULL, 100, &list), 0);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].id, second);
    assert_int_equal(list.items[0].status, STORE_DELIVERY_SUCCEEDED);
    assert_int_equal(list.items[0].next_attempt_ms, -1);
    assert_int_equal(list.items[1].status, STORE_DELIVERY_FAILED);
    assert_int_equal(list.items[1].next_attempt_ms, now + 5000);
    assert_int_equal(list.items[1].attempts_listed, 1);
    assert_int_equal(list.items[1].attempts[0].status_code, 500);
    assert_int_equal(list.items[1].attempts[0].latency_ms, 12);
    assert_string_equal(list.items[1].attempts[0].error, "The endpoint answered 500.");
    assert_int_equal(list.items[1].attempts[0].response_length, 4);
    assert_null(list.items[0].attempts[0].error);
    store_delivery_list_free(&list);
    store_delivery_status failed = STORE_DELIVERY_FAILED;
    assert_int_equal(store_delivery_list_recent(f->s, w.key, &failed, 100, &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].id, first);
    store_delivery_list_free(&list);
    assert_int_equal(store_delivery_list_recent(f->s, w.key, NULL, 1, &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].id, second);
    store_delivery_list_free(&list);

    /* Dead: finished, never due again. */
    record(f, first, STORE_DELIVERY_DEAD, 0, 500, "The endpoint answered 500.");
    assert_int_equal(due(f, w.key, INT64_MAX).count, 0);
    assert_int_equal(query(f, "SELECT attempts FROM deliveries WHERE status = 3"), 2);

    /* Due times live in the outbox: a restart finds what is due. */
    publish(f, "t", "message", "3");
    close_store(f);
    open_store(f);
    assert_int_equal(due(f, w.key, store_now_ms(f->s) + 1).count, 1);
}

static void test_cancel_on_delete_and_disable(void **state) {
    fixture *f = *state;
    open_store(f);
    webhook_result a = create(f, "[\"c\"]", NULL);
    webhook_result b = create(f, "[\"c\"]", NULL);
    publish(f, "c", "message", "1");
    publish(f, "c", "message", "2");
    int64_t now = store_now_ms(f->s) + 1;
    due_list in_flight = due(f, a.key, now);
    assert_int_equal(in_flight.count, 2);
    record(f, in_flight.ids[1], STORE_DELIVERY_FAILED, now + 100000, 500, "x");

    /* Disabled: every unfinished delivery is cancelled, none is due. */
    webhook_result off = update(f, a.id, (store_webhook_fields){.enabled = 0});
    assert_int_equal(off.status, STORE_OUTBOX_OK);
    assert_false(off.enabled);
    assert_int_equal(due(f, a.key, INT64_MAX).count, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries WHERE status = 4"), 2);
    /* An attempt that was in flight fails afterwards: the delivery stays cancelled... */
    record(f, in_flight.ids[0], STORE_DELIVERY_FAILED, now + 1000, 500, "late failure");
    assert_int_equal(due(f, a.key, INT64_MAX).count, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries WHERE status = 4"), 2);
    assert_int_equal(query(f, "SELECT count(*) FROM attempts"), 2); /* ...but is recorded */
    /* New events are not queued for it. */
    publish(f, "c", "message", "3");
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 5);

    /* Deleted: the other endpoint's deliveries go the same way; nothing refers to it any more. */
    count_result deleted = {0};
    assert_int_equal(store_webhook_delete(f->s, b.id, on_count, &deleted), 0);
    run(f);
    assert_int_equal(deleted.status, STORE_OUTBOX_OK);
    assert_int_equal(deleted.count, 3);
    assert_int_equal(due(f, b.key, INT64_MAX).count, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries WHERE status = 4"), 5);
    publish(f, "c", "message", "4");
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 5);

    /* A retry or a replay on a disabled endpoint is refused. */
    count_result refused = {0};
    assert_int_equal(store_webhook_retry(f->s, a.id, in_flight.ids[0], on_count, &refused), 0);
    run(f);
    assert_int_equal(refused.status, STORE_OUTBOX_DISABLED);
    assert_int_equal(store_webhook_replay(f->s, a.id, 0, on_count, &refused), 0);
    run(f);
    assert_int_equal(refused.status, STORE_OUTBOX_DISABLED);
}

static void test_retry_and_replay(void **state) {
    fixture *f = *state;
    f->options.history_size = 2;
    open_store(f);
    heard h = {0};
    store_set_outbox_listener(f->s, listen_outbox, &h);
    webhook_result w = create(f, "[\"r/**\"]", "[\"t\"]");
    webhook_result other = create(f, "[\"**\"]", NULL);
    uint64_t e1 = publish(f, "r/a", "t", "1");
    publish(f, "r/a", "u", "2"); /* type does not match */
    uint64_t e3 = publish(f, "r/b", "t", "3");
    publish(f, "x", "t", "4"); /* topic does not match */
    uint64_t e5 = publish(f, "r/a", "t", "5");
    uint64_t e6 = publish(f, "r/a", "t", "6"); /* r/a keeps 5 and 6: e1 leaves history */
    int64_t now = store_now_ms(f->s) + 1;
    due_list d = due(f, w.key, now);
    assert_int_equal(d.count, 4);
    /* The body outlives history. */
    assert_int_equal(d.event_ids[0], e1);
    assert_string_equal(d.data[0], "1");
    for (size_t i = 0; i < d.count; i++)
        record(f, d.ids[i], STORE_DELIVERY_DEAD, 0, 500, "x");

    /* Manual retry: due now even though dead; "failed" because it failed before. */
    h.queued_calls = 0;
    count_result retried = {0};
    assert_int_equal(store_webhook_retry(f->s, w.id, d.ids[0], on_count, &retried), 0);
    run(f);
    assert_int_equal(retried.status, STORE_OUTBOX_OK);
    assert_int_equal(h.queued_calls, 1);
    due_list again = due(f, w.key, store_now_ms(f->s) + 1);
    assert_int_equal(again.count, 1);
    assert_int_equal(again.ids[0], d.ids[0]);
    assert_string_equal(again.data[0], "1");
    assert_int_equal(query(f, "SELECT status FROM deliveries WHERE id = (SELECT min(id) FROM"
                              " deliveries)"),
                     STORE_DELIVERY_FAILED);
    /* Not one of this endpoint's deliveries, or none at all. */
    due_list of_other = due(f, other.key, now);
    assert_true(of_other.count > 0);
    assert_int_equal(store_webhook_retry(f->s, w.id, of_other.ids[0], on_count, &retried), 0);
    run(f);
    assert_int_equal(retried.status, STORE_OUTBOX_NOT_FOUND);
    assert_int_equal(store_webhook_retry(f->s, w.id, 999999, on_count, &retried), 0);
    run(f);
    assert_int_equal(retried.status, STORE_OUTBOX_NOT_FOUND);

    /* Replay: retained matching events after since (e1 has left history). */
    count_result replayed = {0};
    assert_int_equal(store_webhook_replay(f->s, w.id, 0, on_count, &replayed), 0);
    run(f);
    assert_int_equal(replayed.status, STORE_OUTBOX_OK);
    assert_int_equal(replayed.count, 3);
    assert_int_equal(store_webhook_replay(f->s, w.id, e5, on_count, &replayed), 0);
    run(f);
    assert_int_equal(replayed.count, 1);
    assert_int_equal(store_webhook_replay(f->s, w.id, e6, on_count, &replayed), 0);
    run(f);
    assert_int_equal(replayed.count, 0);
    assert_int_equal(store_webhook_replay(f->s, "wh_0000000000000000", 0, on_count, &replayed), 0);
    run(f);
    assert_int_equal(replayed.status, STORE_OUTBOX_NOT_FOUND);
    d = due(f, w.key, store_now_ms(f->s) + 1);
    assert_int_equal(d.count, 5); /* the retried one and four new */
    uint64_t want[] = {e1, e3, e5, e6, e6};
    for (size_t i = 0; i < d.count; i++)
        assert_int_equal(d.event_ids[i], want[i]);
}

static void test_pruning(void **state) {
    fixture *f = *state;
    open_store(f);
    webhook_result w = create(f, "[\"p\"]", NULL);
    publish(f, "p", "message", "1");
    publish(f, "p", "message", "2");
    publish(f, "p", "message", "3");
    due_list d = due(f, w.key, store_now_ms(f->s) + 1);
    assert_int_equal(d.count, 3);
    record(f, d.ids[0], STORE_DELIVERY_SUCCEEDED, 0, 200, NULL);
    record(f, d.ids[1], STORE_DELIVERY_DEAD, 0, 500, "x");
    /* d.ids[2] stays pending. */
    store_test_run_maintenance(f->s);
    run(f);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 3); /* too recent */
    store_test_set_clock_offset(f->s, STORE_DELIVERY_RETENTION_MS + 1000);
    store_test_run_maintenance(f->s);
    run(f);
    assert_int_equal(query(f, "SELECT count(*) FROM deliveries"), 1);
    assert_int_equal(query(f, "SELECT count(*) FROM attempts"), 0);
    assert_int_equal(query(f, "SELECT count(*) FROM delivery_events"), 1);
    d = due(f, w.key, store_now_ms(f->s));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.data[0], "3");
}

/* ---- store_run ---------------------------------------------------------------------------- */

typedef struct job_state {
    const char *sql;
    int result; /* what run returns */
    int status; /* what done got */
    int done_calls;
    int order;
} job_state;

static int job_order;

static int run_sql(struct sqlite3 *db, void *context) {
    job_state *j = context;
    if (sqlite3_exec(db, j->sql, NULL, NULL, NULL) != SQLITE_OK) return -1;
    return j->result;
}

static void job_done(void *context, int status) {
    job_state *j = context;
    j->status = status;
    j->done_calls++;
    j->order = ++job_order;
}

static void test_store_run(void **state) {
    fixture *f = *state;
    open_store(f);
    job_state create_table = {.sql = "CREATE TABLE jobs(x)"};
    job_state kept = {.sql = "INSERT INTO jobs VALUES (1)"};
    job_state rolled_back = {.sql = "INSERT INTO jobs VALUES (2)", .result = 7};
    job_state broken = {.sql = "INSERT INTO no_such_table VALUES (3)"};
    job_state after = {.sql = "INSERT INTO jobs VALUES (4)"};
    /* Queued together: one transaction, each job in its own savepoint, in order. */
    store_test_pause_writer(f->s, true);
    job_state *all[] = {&create_table, &kept, &rolled_back, &broken, &after};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(store_run(f->s, run_sql, job_done, all[i]), 0);
    store_test_pause_writer(f->s, false);
    run(f);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(all[i]->done_calls, 1);
        assert_int_equal(all[i]->order, (int)i + 1);
    }
    assert_int_equal(kept.status, 0);
    assert_int_equal(rolled_back.status, 7);
    assert_int_equal(broken.status, -1);
    assert_int_equal(after.status, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM jobs"), 2);
    assert_int_equal(query(f, "SELECT sum(x) FROM jobs"), 5);

    /* A failed transaction reports STORE_JOB_FAILED and keeps nothing. */
    store_test_limit_pages(f->s, true);
    static char big_sql[1 << 21];
    snprintf(big_sql, sizeof big_sql, "INSERT INTO jobs VALUES (zeroblob(%d))", 1 << 20);
    job_state too_big = {.sql = big_sql};
    assert_int_equal(store_run(f->s, run_sql, job_done, &too_big), 0);
    run(f);
    store_test_limit_pages(f->s, false);
    assert_int_equal(too_big.done_calls, 1);
    assert_int_not_equal(too_big.status, 0);
    assert_int_equal(query(f, "SELECT count(*) FROM jobs"), 2);

    /* store_close runs what is queued and calls back before returning. */
    job_state last = {.sql = "INSERT INTO jobs VALUES (10)"};
    store_test_pause_writer(f->s, true);
    assert_int_equal(store_run(f->s, run_sql, job_done, &last), 0);
    store_close(f->s);
    assert_int_equal(last.done_calls, 1);
    assert_int_equal(last.status, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->s = NULL;
    assert_int_equal(query(f, "SELECT count(*) FROM jobs"), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_endpoint_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliveries_written_with_the_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_writes_no_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempts_and_due_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_on_delete_and_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

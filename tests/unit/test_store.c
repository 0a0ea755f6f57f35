/* Unit tests for src/store: a real uv loop, a real SQLite file in a scratch directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the above first */
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_internal.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

static char base_directory[2048];

static void make_directory(char *out, size_t size) {
    if (!base_directory[0]) {
        const char *tmp = getenv("HERALD_TEST_TMP");
        snprintf(base_directory, sizeof base_directory, "%s", tmp && *tmp ? tmp : "/tmp");
        mkdir(base_directory, 0700);
    }
    snprintf(out, size, "%s/store-XXXXXX", base_directory);
    assert_non_null(mkdtemp(out));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_directory(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
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
    int rc = store_open(&f->loop, &f->options, &f->s, error, sizeof error);
    if (rc != 0) fail_msg("store_open: %s", error);
    assert_non_null(f->s);
}

static void close_store(fixture *f) {
    store_close(f->s);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT); /* finishes closing the handles, frees the store */
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
    remove_directory(f->directory);
    free(f);
    return 0;
}

/* Runs the loop until every queued publish has called back. */
static void wait_for_store(fixture *f) {
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* ---- publishing helpers ------------------------------------------------------------------- */

typedef struct outcome {
    int calls;
    int order; /* global callback order */
    bool ok;
    bool replayed;
    char error[256];
    uint64_t ids[16];
    size_t count;
    char receipt[1024];
} outcome;

static int callback_order;

static void record(void *context, const store_publish_result *result) {
    outcome *o = context;
    o->calls++;
    o->order = ++callback_order;
    o->ok = result->ok;
    o->replayed = result->replayed;
    snprintf(o->error, sizeof o->error, "%s", result->error_message ? result->error_message : "");
    o->count = result->event_count;
    for (size_t i = 0; i < result->event_count && i < 16; i++)
        o->ids[i] = result->events[i]->id;
    if (result->receipt)
        snprintf(o->receipt, sizeof o->receipt, "%.*s", (int)result->receipt->length,
                 result->receipt->data);
    else
        o->receipt[0] = '\0';
}

static store_item item(const char *topic, const char *data) {
    store_item it = {.topic = topic,
                     .topic_length = strlen(topic),
                     .type = "message",
                     .data_is_json = true,
                     .data = data,
                     .data_length = strlen(data)};
    return it;
}

static void publish(fixture *f, const char *topic, const char *data, const char *key, outcome *o) {
    store_item it = item(topic, data);
    assert_int_equal(store_publish(f->s, &it, 1, key, key ? strlen(key) : 0, false, record, o), 0);
}

static uint64_t publish_now(fixture *f, const char *topic, const char *data) {
    outcome o = {0};
    publish(f, topic, data, NULL, &o);
    wait_for_store(f);
    assert_int_equal(o.calls, 1);
    assert_true(o.ok);
    assert_int_equal(o.count, 1);
    return o.ids[0];
}

typedef struct listened {
    uint64_t ids[4096];
    size_t count;
    int calls;
    bool in_order;
    int callbacks_before; /* callback_order when the listener first ran */
} listened;

static void on_commit(void *context, event *const *events, size_t count) {
    listened *l = context;
    if (!l->calls) l->callbacks_before = callback_order;
    l->calls++;
    for (size_t i = 0; i < count; i++) {
        uint64_t previous = l->count ? l->ids[l->count - 1] : 0;
        if (events[i]->id <= previous) l->in_order = false;
        if (l->count < 4096) l->ids[l->count++] = events[i]->id;
    }
}

static void read_ids(fixture *f, const char *const *topics, size_t topic_count, uint64_t after,
                     bool newest, size_t limit, uint64_t *ids, size_t *count) {
    event_list list = {0};
    assert_int_equal(store_read(f->s, topics, topic_count, after, newest, limit, &list), 0);
    *count = list.count;
    for (size_t i = 0; i < list.count; i++)
        ids[i] = list.events[i]->id;
    event_list_free(&list);
}

static int64_t count_rows(fixture *f, const char *sql) {
    char path[4200];
    snprintf(path, sizeof path, "%s/herald.db", f->directory);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_ids_grow_across_reopen(void **state) {
    fixture *f = *state;
    open_store(f);
    char epoch[9];
    snprintf(epoch, sizeof epoch, "%s", store_epoch(f->s));
    assert_int_equal(strlen(epoch), 8);
    assert_int_equal(strspn(epoch, "0123456789abcdef"), 8);
    assert_int_equal(store_head_id(f->s), 0);
    assert_int_equal(publish_now(f, "a", "1"), 1);
    assert_int_equal(publish_now(f, "b", "2"), 2);
    assert_int_equal(publish_now(f, "a", "3"), 3);
    assert_int_equal(store_head_id(f->s), 3);
    close_store(f);

    open_store(f);
    assert_string_equal(store_epoch(f->s), epoch);
    assert_int_equal(store_head_id(f->s), 3);
    assert_int_equal(store_topic_count(f->s), 2);
    assert_int_equal(store_find_topic(f->s, "a")->head_id, 3);
    assert_int_equal(store_find_topic(f->s, "b")->head_id, 2);
    assert_int_equal(publish_now(f, "c", "4"), 4);
    close_store(f);

    /* A second server on the same directory is refused. */
    open_store(f);
    store *other = NULL;
    char error[256];
    store_options options = f->options;
    assert_int_equal(store_open(&f->loop, &options, &other, error, sizeof error), -1);
    assert_null(other);
    assert_non_null(strstr(error, "in use"));
    close_store(f);

    /* A new directory is a new store: new epoch, ids from 1. */
    fixture g = {0};
    assert_int_equal(uv_loop_init(&g.loop), 0);
    make_directory(g.directory, sizeof g.directory);
    open_store(&g);
    assert_string_not_equal(store_epoch(g.s), epoch);
    assert_int_equal(publish_now(&g, "a", "1"), 1);
    close_store(&g);
    assert_int_equal(uv_loop_close(&g.loop), 0);
    remove_directory(g.directory);
}

static void test_ids_grow_after_everything_trimmed(void **state) {
    fixture *f = *state;
    f->options.history_size = 1;
    open_store(f);
    publish_now(f, "a", "1");
    publish_now(f, "a", "2");
    close_store(f);
    /* Delete every event behind the store's back: the sequence must still continue. */
    char path[4200];
    snprintf(path, sizeof path, "%s/herald.db", f->directory);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM events", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_store(f);
    assert_int_equal(store_head_id(f->s), 2);
    assert_int_equal(publish_now(f, "b", "3"), 3);
}

static void test_group_commit(void **state) {
    fixture *f = *state;
    open_store(f);
    static listened l;
    memset(&l, 0, sizeof l);
    l.in_order = true;
    store_set_commit_listener(f->s, on_commit, &l);
    enum { N = 1000 };
    static outcome outcomes[N];
    memset(outcomes, 0, sizeof outcomes);
    callback_order = 0;
    store_test_pause_writer(f->s, true);
    for (int i = 0; i < N; i++) {
        char topic[16];
        snprintf(topic, sizeof topic, "t%d", i % 7);
        publish(f, topic, "{\"n\":1}", NULL, &outcomes[i]);
    }
    store_test_pause_writer(f->s, false);
    wait_for_store(f);
    for (int i = 0; i < N; i++) {
        assert_int_equal(outcomes[i].calls, 1);
        assert_true(outcomes[i].ok);
        assert_int_equal(outcomes[i].ids[0], (uint64_t)i + 1);
        assert_int_equal(outcomes[i].order, i + 1);
    }
    assert_true(l.in_order);
    assert_int_equal(l.count, N);
    assert_int_equal(l.ids[0], 1);
    assert_int_equal(l.ids[N - 1], N);
    assert_int_equal(l.callbacks_before, 0); /* the listener runs before the callbacks */
    assert_int_equal(store_head_id(f->s), N);
    store_statistics stats;
    store_test_statistics(f->s, &stats);
    printf("group commit: %d publishes in %" PRIu64 " transactions (largest group %" PRIu64 ")\n",
           N, stats.transactions, stats.max_group_requests);
    assert_int_equal(stats.transactions, 1);
    assert_int_equal(stats.grouped_requests, N);
    uint64_t total = 0;
    for (int i = 0; i < 7; i++) {
        char topic[16];
        snprintf(topic, sizeof topic, "t%d", i);
        const store_topic *t = store_find_topic(f->s, topic);
        assert_non_null(t);
        assert_string_equal(t->name, topic);
        total += t->head_id > 0;
    }
    assert_int_equal(total, 7);
    assert_int_equal(store_find_topic(f->s, "t6")->head_id, 1000 - (1000 - 7) % 7);
}

static void test_group_size_is_capped(void **state) {
    fixture *f = *state;
    open_store(f);
    enum { N = STORE_GROUP_MAX_EVENTS + 100 };
    static outcome outcomes[N];
    memset(outcomes, 0, sizeof outcomes);
    store_test_pause_writer(f->s, true);
    for (int i = 0; i < N; i++)
        publish(f, "a", "1", NULL, &outcomes[i]);
    store_test_pause_writer(f->s, false);
    wait_for_store(f);
    store_statistics stats;
    store_test_statistics(f->s, &stats);
    assert_int_equal(stats.transactions, 2);
    assert_int_equal(stats.max_group_requests, STORE_GROUP_MAX_EVENTS);
    assert_int_equal(outcomes[N - 1].ids[0], N);
}

static void test_batch_atomic(void **state) {
    fixture *f = *state;
    open_store(f);
    store_item items[3] = {item("x", "1"), item("y", "\"two\""), item("x", "3")};
    items[1].data_is_json = false;
    items[1].data = "two";
    items[1].data_length = 3;
    items[2].type = "status";
    outcome o = {0};
    assert_int_equal(store_publish(f->s, items, 3, NULL, 0, true, record, &o), 0);
    wait_for_store(f);
    assert_true(o.ok);
    assert_int_equal(o.count, 3);
    assert_int_equal(o.ids[0], 1);
    assert_int_equal(o.ids[1], 2);
    assert_int_equal(o.ids[2], 3);
    assert_string_equal(o.receipt, "{\"ids\":[\"1\",\"2\",\"3\"]}");

    /* A single publish gets the single receipt. */
    outcome single = {0};
    publish(f, "orders/1", "{}", NULL, &single);
    wait_for_store(f);
    assert_true(single.ok);
    const char *prefix = "{\"id\":\"4\",\"topic\":\"orders/1\",\"type\":\"message\",\"time\":\"";
    assert_int_equal(strncmp(single.receipt, prefix, strlen(prefix)), 0);
    assert_int_equal(strlen(single.receipt), strlen(prefix) + 24 + 2);

    const char *topics[] = {"x", "y"};
    event_list list = {0};
    assert_int_equal(store_read(f->s, topics, 2, 0, false, 10, &list), 0);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.events[1]->data, "two");
    assert_false(list.events[1]->data_is_json);
    assert_string_equal(list.events[2]->type, "status");
    assert_int_equal(list.events[0]->time_ms, list.events[2]->time_ms);
    assert_true(list.events[0]->time_ms > 1700000000000LL);
    event_list_free(&list);
    assert_int_equal(store_find_topic(f->s, "x")->head_id, 3);
    assert_int_equal(store_find_topic(f->s, "y")->head_id, 2);
}

static void test_idempotency(void **state) {
    fixture *f = *state;
    open_store(f);
    static listened l;
    memset(&l, 0, sizeof l);
    l.in_order = true;
    store_set_commit_listener(f->s, on_commit, &l);
    outcome first = {0}, again = {0};
    publish(f, "a", "1", "key-1", &first);
    wait_for_store(f);
    assert_true(first.ok);
    assert_false(first.replayed);
    publish(f, "a", "different body", "key-1", &again);
    wait_for_store(f);
    assert_true(again.ok);
    assert_true(again.replayed);
    assert_int_equal(again.count, 0);
    assert_string_equal(again.receipt, first.receipt);
    assert_int_equal(store_head_id(f->s), 1);
    assert_int_equal(l.count, 1);

    /* The same key twice within one group: the second replays the first's receipt. */
    outcome one = {0}, two = {0}, other = {0};
    store_statistics before, after;
    store_test_statistics(f->s, &before);
    store_test_pause_writer(f->s, true);
    publish(f, "b", "1", "key-2", &one);
    publish(f, "b", "2", "key-2", &two);
    publish(f, "b", "3", "key-3", &other);
    store_test_pause_writer(f->s, false);
    wait_for_store(f);
    store_test_statistics(f->s, &after);
    assert_int_equal(after.transactions, before.transactions + 1);
    assert_true(one.ok && two.ok && other.ok);
    assert_false(one.replayed);
    assert_true(two.replayed);
    assert_false(other.replayed);
    assert_string_equal(two.receipt, one.receipt);
    assert_int_equal(one.ids[0], 2);
    assert_int_equal(other.ids[0], 3);
    assert_int_equal(store_head_id(f->s), 3);
    assert_int_equal(l.count, 3);

    /* A batch receipt is replayed as it was, whatever the repeat asks for. */
    store_item items[2] = {item("c", "1"), item("c", "2")};
    outcome batch = {0}, batch_again = {0};
    assert_int_equal(store_publish(f->s, items, 2, "key-4", 5, true, record, &batch), 0);
    wait_for_store(f);
    assert_int_equal(store_publish(f->s, items, 1, "key-4", 5, false, record, &batch_again), 0);
    wait_for_store(f);
    assert_string_equal(batch.receipt, "{\"ids\":[\"4\",\"5\"]}");
    assert_true(batch_again.replayed);
    assert_string_equal(batch_again.receipt, batch.receipt);

    /* Keys survive a restart. */
    close_store(f);
    open_store(f);
    outcome after_restart = {0};
    publish(f, "a", "1", "key-1", &after_restart);
    wait_for_store(f);
    assert_true(after_restart.replayed);
    assert_string_equal(after_restart.receipt, first.receipt);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events"), 5);
}

static void test_history_size_trimming(void **state) {
    fixture *f = *state;
    f->options.history_size = 3;
    open_store(f);
    for (int i = 0; i < 5; i++)
        publish_now(f, "a", "1");
    publish_now(f, "b", "1");
    const store_topic *a = store_find_topic(f->s, "a");
    assert_int_equal(a->head_id, 5);
    assert_int_equal(a->trimmed_through, 2);
    assert_int_equal(store_find_topic(f->s, "b")->trimmed_through, 0);
    uint64_t ids[16];
    size_t n;
    const char *topics[] = {"a"};
    read_ids(f, topics, 1, 0, false, 100, ids, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[2], 5);

    /* A batch larger than history in one group trims within the same transaction. */
    store_item items[5] = {item("c", "1"), item("c", "2"), item("c", "3"), item("c", "4"),
                           item("c", "5")};
    outcome o = {0};
    assert_int_equal(store_publish(f->s, items, 5, NULL, 0, true, record, &o), 0);
    wait_for_store(f);
    assert_true(o.ok);
    assert_int_equal(store_find_topic(f->s, "c")->trimmed_through, 8);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events WHERE topic = 'c'"), 3);

    close_store(f);
    open_store(f);
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 2);
    assert_int_equal(store_find_topic(f->s, "c")->trimmed_through, 8);
}

static void test_age_trimming_and_key_expiry(void **state) {
    fixture *f = *state;
    f->options.history_age_ms = 60 * 60 * 1000;
    f->options.idempotency_ttl_ms = 60 * 60 * 1000;
    open_store(f);
    publish_now(f, "a", "1");
    publish_now(f, "b", "2");
    outcome keyed = {0};
    publish(f, "a", "3", "old-key", &keyed);
    wait_for_store(f);
    assert_int_equal(keyed.ids[0], 3);

    store_test_set_clock_offset(f->s, 2 * 60 * 60 * 1000); /* two hours later */
    /* An expired key no longer replays, even before maintenance has removed it. */
    outcome reused = {0};
    publish(f, "c", "4", "old-key", &reused);
    wait_for_store(f);
    assert_true(reused.ok);
    assert_false(reused.replayed);
    assert_int_equal(reused.ids[0], 4);
    outcome stale = {0};
    publish(f, "c", "5", "stale-key", &stale);
    wait_for_store(f);
    store_test_set_clock_offset(f->s, 4 * 60 * 60 * 1000); /* four hours after the start */
    assert_int_equal(publish_now(f, "a", "6"), 6);

    store_test_run_maintenance(f->s);
    wait_for_store(f);
    /* Events 1-5 are older than an hour (4 and 5 were stored two hours ago). */
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 3);
    assert_int_equal(store_find_topic(f->s, "b")->trimmed_through, 2);
    assert_int_equal(store_find_topic(f->s, "c")->trimmed_through, 5);
    assert_int_equal(store_find_topic(f->s, "a")->head_id, 6);
    uint64_t ids[16];
    size_t n;
    const char *topics[] = {"a", "b", "c"};
    read_ids(f, topics, 3, 0, false, 100, ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 6);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM idempotency"), 0);
    assert_int_equal(count_rows(f, "SELECT trimmed_through FROM topics WHERE name = 'c'"), 5);
}

static void test_age_trimming_in_chunks(void **state) {
    fixture *f = *state;
    f->options.history_age_ms = 1000;
    f->options.history_size = 100000;
    open_store(f);
    enum { N = STORE_MAINTENANCE_CHUNK * 2 + 10 };
    static store_item items[1000];
    for (int i = 0; i < 1000; i++)
        items[i] = item(i % 2 ? "odd" : "even", "0");
    static outcome outcomes[N / 1000 + 1];
    memset(outcomes, 0, sizeof outcomes);
    int published = 0, k = 0;
    while (published < N) {
        int count = N - published < 1000 ? N - published : 1000;
        assert_int_equal(
            store_publish(f->s, items, (size_t)count, NULL, 0, true, record, &outcomes[k++]), 0);
        published += count;
    }
    wait_for_store(f);
    store_test_set_clock_offset(f->s, 10000);
    assert_int_equal(publish_now(f, "odd", "last"), N + 1);
    store_test_run_maintenance(f->s);
    wait_for_store(f);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events"), 1);
    assert_int_equal(store_find_topic(f->s, "even")->trimmed_through, N - 1);
    assert_int_equal(store_find_topic(f->s, "odd")->trimmed_through, N);
}

static void stop_loop(uv_timer_t *timer) {
    uv_close((uv_handle_t *)timer, NULL);
}

static void test_maintenance_timer(void **state) {
    fixture *f = *state;
    f->options.history_age_ms = 1000;
    f->options.maintenance_interval_ms = 20;
    open_store(f);
    publish_now(f, "a", "1");
    store_test_set_clock_offset(f->s, 5000);
    uv_timer_t wait;
    uv_timer_init(&f->loop, &wait);
    uv_timer_start(&wait, stop_loop, 300, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the store's own timer does not hold the loop open */
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 1);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events"), 0);
    assert_int_equal(publish_now(f, "a", "2"), 2);
}

static void test_read(void **state) {
    fixture *f = *state;
    open_store(f);
    /* ids 1..30: topic a gets 1,4,7..; b gets 2,5,8..; c gets 3,6,9.. */
    for (int i = 0; i < 30; i++) {
        const char *topic = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
        publish_now(f, topic, "{}");
    }
    uint64_t ids[64];
    size_t n;
    const char *ab[] = {"a", "b"};
    read_ids(f, ab, 2, 0, false, 100, ids, &n);
    assert_int_equal(n, 20);
    for (size_t i = 1; i < n; i++)
        assert_true(ids[i] > ids[i - 1]);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 4);

    read_ids(f, ab, 2, 10, false, 3, ids, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 11);
    assert_int_equal(ids[1], 13);
    assert_int_equal(ids[2], 14);

    read_ids(f, ab, 2, 0, true, 4, ids, &n); /* the 4 most recent, oldest first */
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 25);
    assert_int_equal(ids[1], 26);
    assert_int_equal(ids[2], 28);
    assert_int_equal(ids[3], 29);

    const char *c[] = {"c"};
    read_ids(f, c, 1, 0, true, 2, ids, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 27);
    assert_int_equal(ids[1], 30);
    read_ids(f, c, 1, 20, false, 100, ids, &n);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 21);

    const char *all[] = {"a", "b", "c", "missing", "a"};
    read_ids(f, all, 5, 27, false, 100, ids, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 28);
    read_ids(f, all, 5, 30, false, 100, ids, &n);
    assert_int_equal(n, 0);
    read_ids(f, all, 5, 0, true, 1000, ids, &n);
    assert_int_equal(n, 30);

    const char *none[] = {"missing"};
    read_ids(f, none, 1, 0, true, 10, ids, &n);
    assert_int_equal(n, 0);
    read_ids(f, ab, 2, 0, false, 0, ids, &n);
    assert_int_equal(n, 0);

    event_list list = {0};
    assert_int_equal(store_read(f->s, c, 1, 29, false, 10, &list), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.events[0]->topic, "c");
    assert_string_equal(list.events[0]->data, "{}");
    assert_true(list.events[0]->data_is_json);
    event_list_free(&list);
}

static void test_read_sees_only_handed_back_events(void **state) {
    fixture *f = *state;
    open_store(f);
    assert_int_equal(publish_now(f, "a", "1"), 1);
    outcome o = {0};
    publish(f, "a", "2", NULL, &o);
    /* Wait until the writer has committed, without letting the loop take the result. */
    store_statistics stats;
    for (int i = 0; i < 5000; i++) {
        store_test_statistics(f->s, &stats);
        if (stats.transactions == 2) break;
        usleep(1000);
    }
    assert_int_equal(stats.transactions, 2);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events"), 2);
    uint64_t ids[4];
    size_t n;
    const char *a[] = {"a"};
    read_ids(f, a, 1, 0, false, 10, ids, &n);
    assert_int_equal(n, 1);
    read_ids(f, a, 1, 0, true, 10, ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(store_head_id(f->s), 1);
    assert_int_equal(o.calls, 0);
    wait_for_store(f);
    assert_int_equal(o.calls, 1);
    read_ids(f, a, 1, 0, false, 10, ids, &n);
    assert_int_equal(n, 2);
}

static void test_read_reports_trimming_not_yet_handed_back(void **state) {
    fixture *f = *state;
    f->options.history_size = 2;
    open_store(f);
    for (int i = 0; i < 3; i++)
        publish_now(f, "a", "1");
    publish_now(f, "b", "1");
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 1);
    outcome o = {0};
    publish(f, "a", "5", NULL, &o); /* trims event 2 of topic a */
    store_statistics stats;
    for (int i = 0; i < 5000; i++) {
        store_test_statistics(f->s, &stats);
        if (stats.transactions == 5) break;
        usleep(1000);
    }
    assert_int_equal(stats.transactions, 5);
    assert_int_equal(o.calls, 0);
    uint64_t ids[8];
    size_t n;
    const char *a[] = {"a"};
    read_ids(f, a, 1, 1, false, 10, ids, &n);
    assert_int_equal(n, 1); /* 2 is gone, 5 not yet visible */
    assert_int_equal(ids[0], 3);
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 2); /* the gap is visible */
    assert_int_equal(store_find_topic(f->s, "a")->head_id, 3);
    const char *ab[] = {"b", "a"};
    read_ids(f, ab, 2, 0, true, 10, ids, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 4);
    wait_for_store(f);
    assert_int_equal(store_find_topic(f->s, "a")->trimmed_through, 2);
    assert_int_equal(store_find_topic(f->s, "a")->head_id, 5);
}

static void test_failed_commit_stores_nothing(void **state) {
    fixture *f = *state;
    open_store(f);
    static listened l;
    memset(&l, 0, sizeof l);
    l.in_order = true;
    store_set_commit_listener(f->s, on_commit, &l);
    assert_int_equal(publish_now(f, "a", "1"), 1);
    assert_int_equal(l.count, 1);

    store_test_limit_pages(f->s, true);
    size_t big_length = 1 << 20;
    char *big = malloc(big_length + 1);
    memset(big, 'x', big_length);
    big[big_length] = '\0';
    store_item it = item("a", big);
    it.data_is_json = false;
    outcome failed = {0}, same_group = {0};
    store_test_pause_writer(f->s, true);
    assert_int_equal(store_publish(f->s, &it, 1, "k", 1, false, record, &failed), 0);
    publish(f, "new-topic", "2", NULL, &same_group);
    store_test_pause_writer(f->s, false);
    wait_for_store(f);
    free(big);
    assert_int_equal(failed.calls, 1);
    assert_false(failed.ok);
    printf("failed commit says: %s\n", failed.error);
    assert_non_null(strstr(failed.error, "disk is full"));
    assert_int_equal(failed.count, 0);
    assert_string_equal(failed.receipt, "");
    /* The whole group fails together; nothing of it is applied. */
    assert_int_equal(same_group.calls, 1);
    assert_false(same_group.ok);
    assert_string_equal(same_group.error, failed.error);
    assert_int_equal(l.count, 1);
    assert_int_equal(store_head_id(f->s), 1);
    assert_null(store_find_topic(f->s, "new-topic"));
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events"), 1);
    assert_int_equal(count_rows(f, "SELECT value FROM meta WHERE key = 'last_id'"), 1);

    store_test_limit_pages(f->s, false);
    uint64_t next = 2; /* the failed group did not use up ids */
    outcome retry = {0};
    publish(f, "a", "3", "k", &retry); /* the key was not recorded by the failed attempt */
    wait_for_store(f);
    assert_true(retry.ok);
    assert_false(retry.replayed);
    assert_int_equal(retry.ids[0], next);
}

static void test_close_finishes_queued_publishes(void **state) {
    fixture *f = *state;
    open_store(f);
    enum { N = 200 };
    static outcome outcomes[N];
    memset(outcomes, 0, sizeof outcomes);
    for (int i = 0; i < N; i++)
        publish(f, "a", "1", NULL, &outcomes[i]);
    store *s = f->s;
    store_close(s);
    for (int i = 0; i < N; i++) {
        assert_int_equal(outcomes[i].calls, 1);
        assert_true(outcomes[i].ok);
        assert_int_equal(outcomes[i].ids[0], (uint64_t)i + 1);
    }
    store_item it = item("a", "1");
    assert_int_equal(store_publish(s, &it, 1, NULL, 0, false, record, &outcomes[0]), -1);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    open_store(f);
    assert_int_equal(store_head_id(f->s), N);
}

static void count_topic(void *context, const store_topic *topic) {
    size_t *n = context;
    if (topic->head_id) (*n)++;
}

static void test_many_topics(void **state) {
    fixture *f = *state;
    open_store(f);
    enum { N = 3000 };
    static outcome outcomes[N];
    memset(outcomes, 0, sizeof outcomes);
    for (int i = 0; i < N; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "topic/%d", i);
        publish(f, topic, "1", NULL, &outcomes[i]);
    }
    wait_for_store(f);
    assert_int_equal(store_topic_count(f->s), N);
    size_t visited = 0;
    store_each_topic(f->s, count_topic, &visited);
    assert_int_equal(visited, N);
    assert_int_equal(store_find_topic(f->s, "topic/1234")->head_id, 1235);
    assert_null(store_find_topic(f->s, "topic/3000"));
    const char *topics[100];
    char names[100][32];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "topic/%d", i * 30);
        topics[i] = names[i];
    }
    uint64_t ids[128];
    size_t n;
    read_ids(f, topics, 100, 0, false, 128, ids, &n);
    assert_int_equal(n, 100);
    assert_int_equal(ids[99], 2971);
    read_ids(f, topics, 100, 0, true, 3, ids, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 2911);
    close_store(f);
    open_store(f);
    assert_int_equal(store_topic_count(f->s), N);
    assert_int_equal(store_find_topic(f->s, "topic/2999")->head_id, N);
}

/* ---- throughput (printed, not asserted) -------------------------------------------------- */

typedef struct pipeline {
    fixture *f;
    size_t remaining;
    size_t done;
    bool failed;
} pipeline;

static void pipeline_next(void *context, const store_publish_result *result) {
    pipeline *p = context;
    if (!result->ok) p->failed = true;
    p->done++;
    if (p->remaining) {
        p->remaining--;
        store_item it = item("bench/topic", "{\"price\":101.5,\"qty\":3}");
        store_publish(p->f->s, &it, 1, NULL, 0, false, pipeline_next, p);
    }
}

static void count_done(void *context, const store_publish_result *result) {
    size_t *done = context;
    if (result->ok) (*done)++;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_throughput(void **state) {
    fixture *f = *state;
    open_store(f);
    enum { N = 100000, IN_FLIGHT = 1000 };
    /* 1000 concurrent publishers, each publishing again as soon as its previous one commits. */
    pipeline p = {.f = f, .remaining = N - IN_FLIGHT};
    double start = seconds_now();
    for (int i = 0; i < IN_FLIGHT; i++) {
        store_item it = item("bench/topic", "{\"price\":101.5,\"qty\":3}");
        assert_int_equal(store_publish(f->s, &it, 1, NULL, 0, false, pipeline_next, &p), 0);
    }
    wait_for_store(f);
    double elapsed = seconds_now() - start;
    assert_int_equal(p.done, N);
    assert_false(p.failed);
    store_statistics stats;
    store_test_statistics(f->s, &stats);
    printf("throughput: %d single-item publishes, %d in flight: %.0f events/s, %" PRIu64
           " transactions, %.1f publishes per group on average, largest %" PRIu64 "\n",
           N, IN_FLIGHT, N / elapsed, stats.transactions,
           (double)stats.grouped_requests / (double)stats.transactions, stats.max_group_requests);
    assert_int_equal(store_head_id(f->s), N);

    /* The same count queued all at once: groups as large as the cap allows. */
    store_statistics before;
    store_test_statistics(f->s, &before);
    static size_t done;
    done = 0;
    start = seconds_now();
    for (int i = 0; i < N; i++) {
        store_item it = item("bench/topic", "{\"price\":101.5,\"qty\":3}");
        assert_int_equal(store_publish(f->s, &it, 1, NULL, 0, false, count_done, &done), 0);
    }
    wait_for_store(f);
    elapsed = seconds_now() - start;
    assert_int_equal(done, N);
    store_test_statistics(f->s, &stats);
    printf("throughput: %d single-item publishes queued at once: %.0f events/s, %" PRIu64
           " transactions\n",
           N, N / elapsed, stats.transactions - before.transactions);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ids_grow_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_grow_after_everything_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_size_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_size_trimming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_trimming_and_key_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_trimming_in_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_sees_only_handed_back_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_reports_trimming_not_yet_handed_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_finishes_queued_publishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

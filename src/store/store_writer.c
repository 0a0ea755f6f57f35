/* The writer thread: commits queued publishes in groups (one transaction, one fsync per group)
 * and runs maintenance (age trimming, key expiry). It touches only its own connection and the
 * objects handed to it through the queue; results go back to the loop as store_group objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_internal.h"

static const char *const write_sql[STORE_W_STATEMENTS] = {
    [STORE_W_BEGIN] = "BEGIN IMMEDIATE",
    [STORE_W_COMMIT] = "COMMIT",
    [STORE_W_ROLLBACK] = "ROLLBACK",
    [STORE_W_INSERT_EVENT] = "INSERT INTO events(id, topic, type, time_ms, data_is_json, data) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [STORE_W_FIND_KEY] = "SELECT receipt, created_ms FROM idempotency WHERE key = ?1",
    [STORE_W_PUT_KEY] = "INSERT OR REPLACE INTO idempotency(key, receipt, created_ms) "
                        "VALUES (?1, ?2, ?3)",
    [STORE_W_UPSERT_TOPIC] =
        "INSERT INTO topics(name, head_id, trimmed_through) VALUES (?1, ?2, ?3) "
        "ON CONFLICT(name) DO UPDATE SET head_id = max(head_id, excluded.head_id), "
        "trimmed_through = max(trimmed_through, excluded.trimmed_through)",
    [STORE_W_TRIM_FIND] = "SELECT id FROM events WHERE topic = ?1 ORDER BY id DESC LIMIT 1 "
                          "OFFSET ?2",
    [STORE_W_TRIM_DELETE] = "DELETE FROM events WHERE topic = ?1 AND id <= ?2",
    [STORE_W_SET_LAST_ID] = "UPDATE meta SET value = ?1 WHERE key = 'last_id'",
    [STORE_W_OLDEST] = "SELECT id, time_ms, topic FROM events ORDER BY id LIMIT ?1",
    [STORE_W_DELETE_THROUGH] = "DELETE FROM events WHERE id <= ?1",
    [STORE_W_EXPIRE_KEYS] = "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM "
                            "idempotency WHERE created_ms < ?1 LIMIT ?2)",
    [STORE_W_SAVEPOINT] = "SAVEPOINT store_job",
    [STORE_W_RELEASE] = "RELEASE store_job",
    [STORE_W_ROLLBACK_TO] = "ROLLBACK TO store_job",
};

int store_writer_prepare(store *s, char *error, size_t error_size) {
    for (int i = 0; i < STORE_W_STATEMENTS; i++) {
        if (sqlite3_prepare_v3(s->writer, write_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->write_statements[i], NULL) != SQLITE_OK) {
            snprintf(error, error_size, "could not prepare the store's statements: %s",
                     sqlite3_errmsg(s->writer));
            return -1;
        }
    }
    return 0;
}

void store_writer_finalize(store *s) {
    for (int i = 0; i < STORE_W_STATEMENTS; i++) {
        sqlite3_finalize(s->write_statements[i]);
        s->write_statements[i] = NULL;
    }
}

int64_t store_clock_ms(store *s) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 +
           atomic_load_explicit(&s->clock_offset_ms, memory_order_relaxed);
}

void store_group_free(store_group *g) {
    if (!g) return;
    store_request *r = g->requests;
    while (r) {
        store_request *next = r->next;
        for (size_t i = 0; i < r->count; i++)
            event_release(r->events[i]);
        buffer_release(r->receipt);
        free(r);
        r = next;
    }
    store_job *j = g->jobs;
    while (j) {
        store_job *next = j->next;
        free(j);
        j = next;
    }
    free(g->events);
    free(g->updates);
    free(g->outbox_keys);
    text_free(&g->names);
    free(g);
}

/* ---- small helpers ---------------------------------------------------------------------- */

typedef struct writer_failure {
    int code;
    char message[160];
} writer_failure;

static bool fail(store *s, writer_failure *f, int code) {
    if (!f->code) {
        f->code = code ? code : SQLITE_ERROR;
        snprintf(f->message, sizeof f->message, "%s",
                 code == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(s->writer));
    }
    return false;
}

/* Runs a statement without results to completion. */
static bool run(store *s, int which, writer_failure *f) {
    sqlite3_stmt *st = s->write_statements[which];
    int rc = sqlite3_step(st);
    bool ok = rc == SQLITE_DONE || rc == SQLITE_ROW;
    if (!ok) fail(s, f, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ok;
}

static bool add_update(store_group *g, const char *name, size_t name_length, uint64_t head_id,
                       uint64_t trimmed_through) {
    if (g->update_count == g->update_capacity) {
        size_t capacity = g->update_capacity ? g->update_capacity * 2 : 8;
        store_topic_update *updates = realloc(g->updates, capacity * sizeof *updates);
        if (!updates) return false;
        g->updates = updates;
        g->update_capacity = capacity;
    }
    store_topic_update *u = &g->updates[g->update_count++];
    u->name_offset = g->names.length;
    u->name_length = name_length;
    u->head_id = head_id;
    u->trimmed_through = trimmed_through;
    text_append(&g->names, name, name_length);
    return !text_failed(&g->names);
}

static void rollback(store *s) {
    if (!sqlite3_get_autocommit(s->writer)) {
        sqlite3_stmt *st = s->write_statements[STORE_W_ROLLBACK];
        sqlite3_step(st);
        sqlite3_reset(st);
    }
}

static void apply_page_limit(store *s) {
    int request = atomic_exchange(&s->page_limit, 0);
    if (!request) return;
    /* max_page_count is clamped to the current size when lowered below it. */
    const char *sql =
        request == 1 ? "PRAGMA max_page_count = 1" : "PRAGMA max_page_count = 4294967294";
    sqlite3_exec(s->writer, sql, NULL, NULL, NULL);
}

static void post(store *s, store_group *g) {
    uv_mutex_lock(&s->mutex);
    if (s->done_tail)
        s->done_tail->next = g;
    else
        s->done_head = g;
    s->done_tail = g;
    uv_mutex_unlock(&s->mutex);
    uv_async_send(&s->async);
}

/* ---- group commit ----------------------------------------------------------------------- */

static int compare_by_topic(const void *a, const void *b) {
    const event *x = *(event *const *)a, *y = *(event *const *)b;
    size_t n = x->topic_length < y->topic_length ? x->topic_length : y->topic_length;
    int c = memcmp(x->topic, y->topic, n);
    if (c) return c;
    if (x->topic_length != y->topic_length) return x->topic_length < y->topic_length ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Looks the key up; a live record makes the request a replay. */
static bool check_key(store *s, store_request *r, int64_t now, writer_failure *f) {
    sqlite3_stmt *st = s->write_statements[STORE_W_FIND_KEY];
    sqlite3_bind_blob(st, 1, r->key, (int)r->key_length, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    bool ok = true;
    if (rc == SQLITE_ROW) {
        int64_t created = sqlite3_column_int64(st, 1);
        if (created > now - s->idempotency_ttl_ms) {
            const void *receipt = sqlite3_column_blob(st, 0);
            int length = sqlite3_column_bytes(st, 0);
            r->receipt = buffer_from(receipt, (size_t)length);
            if (!r->receipt)
                ok = fail(s, f, SQLITE_NOMEM);
            else
                r->replayed = true;
        }
    } else if (rc != SQLITE_DONE) {
        ok = fail(s, f, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ok;
}

static bool store_request_events(store *s, store_group *g, store_request *r, int64_t now,
                                 writer_failure *f) {
    sqlite3_stmt *st = s->write_statements[STORE_W_INSERT_EVENT];
    for (size_t i = 0; i < r->count; i++) {
        event *e = r->events[i];
        e->id = ++s->last_id;
        e->time_ms = now;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)e->id);
        sqlite3_bind_text(st, 2, e->topic, (int)e->topic_length, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->type, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, e->time_ms);
        sqlite3_bind_int(st, 5, e->data_is_json);
        sqlite3_bind_blob(st, 6, e->data, (int)e->data_length, SQLITE_STATIC);
        if (!run(s, STORE_W_INSERT_EVENT, f)) return false;
        g->events[g->event_count++] = e;
    }
    text t;
    text_init(&t);
    event_append_receipt(&t, r->events, r->count, r->batch);
    r->receipt = text_to_buffer(&t);
    text_free(&t);
    if (!r->receipt) return fail(s, f, SQLITE_NOMEM);
    if (r->key) {
        sqlite3_stmt *put = s->write_statements[STORE_W_PUT_KEY];
        sqlite3_bind_blob(put, 1, r->key, (int)r->key_length, SQLITE_STATIC);
        sqlite3_bind_blob(put, 2, r->receipt->data, (int)r->receipt->length, SQLITE_STATIC);
        /* created_ms holds the time the record would have been made under the store-wide TTL:
         * a longer-lived key (webhook deduplication, 72 h) is stored as if made later, so the
         * lookup and the expiry sweep need no second column. */
        int64_t extra =
            r->key_ttl_ms > s->idempotency_ttl_ms ? r->key_ttl_ms - s->idempotency_ttl_ms : 0;
        sqlite3_bind_int64(put, 3, now + extra);
        if (!run(s, STORE_W_PUT_KEY, f)) return false;
    }
    return true;
}

/* Records each touched topic's head and trims it to history_size. */
static bool update_topics(store *s, store_group *g, writer_failure *f) {
    if (!g->event_count) return true;
    event **sorted = malloc(g->event_count * sizeof *sorted);
    if (!sorted) return fail(s, f, SQLITE_NOMEM);
    memcpy(sorted, g->events, g->event_count * sizeof *sorted);
    qsort(sorted, g->event_count, sizeof *sorted, compare_by_topic);
    bool ok = true;
    for (size_t i = 0; ok && i < g->event_count; i++) {
        const event *e = sorted[i];
        if (i + 1 < g->event_count && e->topic_length == sorted[i + 1]->topic_length &&
            memcmp(e->topic, sorted[i + 1]->topic, e->topic_length) == 0)
            continue; /* not the newest of its topic */
        uint64_t trimmed = 0;
        sqlite3_stmt *find = s->write_statements[STORE_W_TRIM_FIND];
        sqlite3_bind_text(find, 1, e->topic, (int)e->topic_length, SQLITE_STATIC);
        sqlite3_bind_int64(find, 2, (sqlite3_int64)s->history_size);
        int rc = sqlite3_step(find);
        if (rc == SQLITE_ROW)
            trimmed = (uint64_t)sqlite3_column_int64(find, 0);
        else if (rc != SQLITE_DONE)
            ok = fail(s, f, rc);
        sqlite3_reset(find);
        sqlite3_clear_bindings(find);
        if (ok && trimmed) {
            sqlite3_stmt *del = s->write_statements[STORE_W_TRIM_DELETE];
            sqlite3_bind_text(del, 1, e->topic, (int)e->topic_length, SQLITE_STATIC);
            sqlite3_bind_int64(del, 2, (sqlite3_int64)trimmed);
            ok = run(s, STORE_W_TRIM_DELETE, f);
        }
        if (ok) {
            sqlite3_stmt *up = s->write_statements[STORE_W_UPSERT_TOPIC];
            sqlite3_bind_text(up, 1, e->topic, (int)e->topic_length, SQLITE_STATIC);
            sqlite3_bind_int64(up, 2, (sqlite3_int64)e->id);
            sqlite3_bind_int64(up, 3, (sqlite3_int64)trimmed);
            ok = run(s, STORE_W_UPSERT_TOPIC, f);
        }
        if (ok && !add_update(g, e->topic, e->topic_length, e->id, trimmed))
            ok = fail(s, f, SQLITE_NOMEM);
    }
    free(sorted);
    return ok;
}

/* Runs the group's jobs, each in its own savepoint. false when the transaction itself failed. */
static bool run_jobs(store *s, store_group *g, writer_failure *f) {
    for (store_job *j = g->jobs; j; j = j->next) {
        if (!run(s, STORE_W_SAVEPOINT, f)) return false;
        j->status = j->run(s->writer, j->context);
        /* Some errors (full disk, I/O, out of memory) roll the whole transaction back. */
        if (sqlite3_get_autocommit(s->writer)) return fail(s, f, SQLITE_ABORT);
        if (j->status != 0 && !run(s, STORE_W_ROLLBACK_TO, f)) return false;
        if (!run(s, STORE_W_RELEASE, f)) return false;
    }
    /* A job changed the endpoints: the publishes of this transaction use the new filters. */
    if (s->hook_filters_stale) {
        int rc = store_outbox_load_filters(s);
        if (rc != SQLITE_OK) return fail(s, f, rc);
    }
    return true;
}

static store_group *commit_group(store *s, store_request *requests, size_t request_count,
                                 size_t event_count, store_job *jobs) {
    store_group *g = calloc(1, sizeof *g);
    if (!g) return NULL; /* the caller puts the requests back and retries */
    g->requests = requests;
    g->request_count = request_count;
    g->jobs = jobs;
    for (store_job *j = jobs; j; j = j->next)
        j->status = STORE_JOB_FAILED;
    event **events = malloc((event_count ? event_count : 1) * sizeof *events);
    if (!events) {
        snprintf(g->error_message, sizeof g->error_message,
                 "The event store is out of memory; nothing was stored.");
        return g;
    }
    g->events = events;
    text_init(&g->names);
    apply_page_limit(s);

    uint64_t saved_last_id = s->last_id;
    int64_t now = store_clock_ms(s);
    if (now < s->last_time_ms) now = s->last_time_ms;
    writer_failure f = {0};
    s->hook_mark++;
    bool ok = run(s, STORE_W_BEGIN, &f);
    if (ok && jobs) ok = run_jobs(s, g, &f);
    for (store_request *r = requests; ok && r; r = r->next) {
        if (r->key && !check_key(s, r, now, &f)) ok = false;
        if (ok && !r->replayed) ok = store_request_events(s, g, r, now, &f);
    }
    if (ok && g->event_count) {
        int rc = store_outbox_enqueue(s, g, now);
        if (rc != SQLITE_OK) ok = fail(s, &f, rc);
    }
    if (ok) ok = update_topics(s, g, &f);
    if (ok && s->last_id != saved_last_id) {
        sqlite3_bind_int64(s->write_statements[STORE_W_SET_LAST_ID], 1, (sqlite3_int64)s->last_id);
        ok = run(s, STORE_W_SET_LAST_ID, &f);
    }
    if (ok) ok = run(s, STORE_W_COMMIT, &f);
    if (request_count) atomic_fetch_add(&s->transactions, 1);
    atomic_fetch_add(&s->grouped_requests, request_count);
    unsigned long long max = atomic_load(&s->max_group_requests);
    while (request_count > max &&
           !atomic_compare_exchange_weak(&s->max_group_requests, &max, request_count)) {
    }

    if (ok) {
        g->ok = true;
        g->last_id = s->last_id;
        s->last_time_ms = now;
        return g;
    }
    rollback(s);
    s->last_id = saved_last_id;
    for (store_job *j = jobs; j; j = j->next)
        j->status = STORE_JOB_FAILED;
    g->outbox_key_count = 0;
    /* The filters may hold what a rolled-back job wrote: read them again from the database. */
    if (jobs) s->hook_filters_stale = true;
    if (s->hook_filters_stale && store_outbox_load_filters(s) != SQLITE_OK)
        fprintf(stderr, "herald: could not reload the webhook filters: %s\n",
                sqlite3_errmsg(s->writer));
    for (store_request *r = requests; r; r = r->next) {
        buffer_release(r->receipt);
        r->receipt = NULL;
        r->replayed = false;
        for (size_t i = 0; i < r->count; i++) {
            r->events[i]->id = 0;
            r->events[i]->time_ms = 0;
        }
    }
    g->event_count = 0;
    g->update_count = 0;
    const char *reason = f.code == SQLITE_FULL     ? "the disk is full"
                         : f.code == SQLITE_NOMEM  ? "it is out of memory"
                         : f.code == SQLITE_IOERR  ? "of an I/O error"
                         : f.code == SQLITE_BUSY   ? "the database is locked"
                         : f.code == SQLITE_LOCKED ? "the database is locked"
                                                   : NULL;
    if (reason)
        snprintf(g->error_message, sizeof g->error_message,
                 "The event store could not save the event because %s; nothing was stored.",
                 reason);
    else
        snprintf(g->error_message, sizeof g->error_message,
                 "The event store could not save the event (%s); nothing was stored.", f.message);
    return g;
}

/* ---- maintenance ------------------------------------------------------------------------ */

typedef struct trimmed_row {
    size_t name_offset;
    size_t name_length;
    uint64_t id;
    const char *names; /* set before sorting */
} trimmed_row;

static int compare_trimmed(const void *a, const void *b) {
    const trimmed_row *x = a, *y = b;
    size_t n = x->name_length < y->name_length ? x->name_length : y->name_length;
    int c = memcmp(x->names + x->name_offset, y->names + y->name_offset, n);
    if (c) return c;
    if (x->name_length != y->name_length) return x->name_length < y->name_length ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* One maintenance transaction. Sets *more when another chunk is due. */
static store_group *maintain(store *s, bool *more) {
    *more = false;
    store_group *g = calloc(1, sizeof *g);
    if (!g) {
        *more = true; /* try again on the next round */
        return NULL;
    }
    g->maintenance = true;
    g->ok = true;
    text_init(&g->names);
    int64_t now = store_clock_ms(s);
    writer_failure f = {0};
    text scratch;
    text_init(&scratch);
    trimmed_row *rows = NULL;
    size_t row_count = 0;

    bool ok = run(s, STORE_W_BEGIN, &f);
    /* Times never decrease along ids, so the old events are a prefix of the id order. */
    uint64_t boundary = 0;
    if (ok) {
        rows = malloc(STORE_MAINTENANCE_CHUNK * sizeof *rows);
        if (!rows) ok = fail(s, &f, SQLITE_NOMEM);
    }
    if (ok) {
        int64_t cutoff = now - s->history_age_ms;
        sqlite3_stmt *st = s->write_statements[STORE_W_OLDEST];
        sqlite3_bind_int64(st, 1, STORE_MAINTENANCE_CHUNK);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (sqlite3_column_int64(st, 1) >= cutoff) break;
            trimmed_row *row = &rows[row_count++];
            row->id = (uint64_t)sqlite3_column_int64(st, 0);
            row->name_offset = scratch.length;
            row->name_length = (size_t)sqlite3_column_bytes(st, 2);
            text_append(&scratch, sqlite3_column_text(st, 2), row->name_length);
            boundary = row->id;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) ok = fail(s, &f, rc);
        if (text_failed(&scratch)) ok = fail(s, &f, SQLITE_NOMEM);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (row_count == STORE_MAINTENANCE_CHUNK) *more = true;
    }
    if (ok && boundary) {
        sqlite3_bind_int64(s->write_statements[STORE_W_DELETE_THROUGH], 1, (sqlite3_int64)boundary);
        ok = run(s, STORE_W_DELETE_THROUGH, &f);
        for (size_t i = 0; i < row_count; i++)
            rows[i].names = scratch.data;
        qsort(rows, row_count, sizeof *rows, compare_trimmed);
        for (size_t i = 0; ok && i < row_count; i++) {
            const trimmed_row *row = &rows[i];
            if (i + 1 < row_count && row->name_length == rows[i + 1].name_length &&
                memcmp(scratch.data + row->name_offset, scratch.data + rows[i + 1].name_offset,
                       row->name_length) == 0)
                continue; /* the newest trimmed id of each topic is last */
            const char *name = scratch.data + row->name_offset;
            sqlite3_stmt *up = s->write_statements[STORE_W_UPSERT_TOPIC];
            sqlite3_bind_text(up, 1, name, (int)row->name_length, SQLITE_STATIC);
            sqlite3_bind_int64(up, 2, (sqlite3_int64)row->id);
            sqlite3_bind_int64(up, 3, (sqlite3_int64)row->id);
            ok = run(s, STORE_W_UPSERT_TOPIC, &f);
            if (ok && !add_update(g, name, row->name_length, 0, row->id))
                ok = fail(s, &f, SQLITE_NOMEM);
        }
    }
    if (ok) {
        bool more_deliveries = false;
        int rc = store_outbox_maintain(s, now, &more_deliveries);
        if (rc != SQLITE_OK) ok = fail(s, &f, rc);
        if (more_deliveries) *more = true;
    }
    if (ok) {
        sqlite3_stmt *st = s->write_statements[STORE_W_EXPIRE_KEYS];
        sqlite3_bind_int64(st, 1, now - s->idempotency_ttl_ms);
        sqlite3_bind_int64(st, 2, STORE_MAINTENANCE_CHUNK);
        ok = run(s, STORE_W_EXPIRE_KEYS, &f);
        if (ok && sqlite3_changes(s->writer) == STORE_MAINTENANCE_CHUNK) *more = true;
    }
    if (ok) ok = run(s, STORE_W_COMMIT, &f);
    free(rows);
    text_free(&scratch);
    if (!ok) {
        rollback(s);
        *more = false;
        g->update_count = 0;
        fprintf(stderr, "herald: store maintenance failed: %s\n", f.message);
    }
    g->maintenance_finished = !*more;
    return g;
}

/* ---- the thread ------------------------------------------------------------------------- */

void store_writer_main(void *arg) {
    store *s = arg;
    uv_mutex_lock(&s->mutex);
    for (;;) {
        while ((!s->queue_head && !s->job_head && !s->maintenance_requested && !s->stopping) ||
               (s->writer_paused && !s->stopping)) {
            s->writer_waiting = true;
            uv_cond_wait(&s->cond, &s->mutex);
            s->writer_waiting = false;
        }
        if (!s->queue_head && !s->job_head && s->stopping) break;
        /* Take the queued jobs, up to STORE_GROUP_MAX_JOBS. */
        store_job *jobs = s->job_head, *last_job = NULL;
        size_t job_count = 0;
        for (store_job *j = s->job_head; j && job_count < STORE_GROUP_MAX_JOBS; j = j->next) {
            job_count++;
            last_job = j;
        }
        if (last_job) {
            s->job_head = last_job->next;
            if (!s->job_head) s->job_tail = NULL;
            last_job->next = NULL;
        }
        /* Take every queued request, up to STORE_GROUP_MAX_EVENTS events. */
        store_request *taken = s->queue_head, *last = NULL;
        size_t request_count = 0, event_count = 0;
        for (store_request *r = s->queue_head; r; r = r->next) {
            if (request_count && event_count + r->count > STORE_GROUP_MAX_EVENTS) break;
            request_count++;
            event_count += r->count;
            last = r;
        }
        if (last) {
            s->queue_head = last->next;
            if (!s->queue_head) s->queue_tail = NULL;
            last->next = NULL;
        } else {
            taken = NULL;
        }
        bool maintenance = s->maintenance_requested && !s->stopping;
        if (maintenance) s->maintenance_requested = false;
        uv_mutex_unlock(&s->mutex);

        bool requeue = false, retry = false, more = false;
        if (taken || jobs) {
            store_group *g = commit_group(s, taken, request_count, event_count, jobs);
            if (g)
                post(s, g);
            else
                requeue = retry = true;
        }
        if (maintenance) {
            store_group *g = maintain(s, &more);
            if (g)
                post(s, g);
            else
                retry = true;
        }

        uv_mutex_lock(&s->mutex);
        if (more) s->maintenance_requested = true;
        if (requeue && taken) { /* out of memory for the group itself: put it back, wait */
            last->next = s->queue_head;
            s->queue_head = taken;
            if (!s->queue_tail) s->queue_tail = last;
        }
        if (requeue && jobs) {
            last_job->next = s->job_head;
            s->job_head = jobs;
            if (!s->job_tail) s->job_tail = last_job;
        }
        if (retry) {
            uv_mutex_unlock(&s->mutex);
            uv_sleep(10);
            uv_mutex_lock(&s->mutex);
        }
    }
    uv_mutex_unlock(&s->mutex);
}

/* ---- test hooks --------------------------------------------------------------------------- */

void store_test_statistics(store *s, store_statistics *out) {
    out->transactions = atomic_load(&s->transactions);
    out->grouped_requests = atomic_load(&s->grouped_requests);
    out->max_group_requests = atomic_load(&s->max_group_requests);
}

void store_test_set_clock_offset(store *s, int64_t offset_ms) {
    atomic_store(&s->clock_offset_ms, offset_ms);
}

void store_test_pause_writer(store *s, bool pause) {
    uv_mutex_lock(&s->mutex);
    s->writer_paused = pause;
    if (!pause && s->writer_waiting) uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->mutex);
}

void store_test_limit_pages(store *s, bool limit) {
    atomic_store(&s->page_limit, limit ? 1 : 2);
}

/* The loop side of the store: open/close, the topic table, publishing into the writer's queue,
 * completions handed back by the writer, and reads on a read-only connection. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_internal.h"

#define DEFAULT_HISTORY_SIZE 1000
#define DEFAULT_AGE_MS (24 * 60 * 60 * 1000LL)
#define DEFAULT_MAINTENANCE_MS (60 * 1000LL)
#define MAX_AGE_MS (1000LL * 60 * 60 * 24 * 365 * 1000) /* a thousand years */
#define SCHEMA_VERSION 2                                /* 2: the webhook outbox */

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    " type TEXT NOT NULL, time_ms INTEGER NOT NULL, data_is_json INTEGER NOT NULL,"
    " data BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_topic_id ON events(topic, id);"
    "CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, head_id INTEGER NOT NULL,"
    " trimmed_through INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS idempotency(key BLOB PRIMARY KEY, receipt BLOB NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency(created_ms);";

#define EVENT_COLUMNS "SELECT id, topic, type, time_ms, data_is_json, data FROM events "
static const char *const read_sql[STORE_READ_STATEMENTS] = {
    [STORE_READ_ONE_AFTER] =
        EVENT_COLUMNS "WHERE topic = ?1 AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4",
    [STORE_READ_ONE_NEWEST] = EVENT_COLUMNS "WHERE topic = ?1 AND id <= ?3 ORDER BY id DESC "
                                            "LIMIT ?4",
    /* With the (topic, id) index SQLite walks each listed topic in id order and stops a topic
     * once the sorter already holds `limit` better rows: the cost is about topics x limit rows,
     * not the topics' whole history. */
    [STORE_READ_MANY_AFTER] =
        EVENT_COLUMNS "WHERE topic IN (SELECT value FROM json_each(?1)) AND id > ?2 AND id <= ?3 "
                      "ORDER BY id LIMIT ?4",
    [STORE_READ_MANY_NEWEST] = EVENT_COLUMNS
    "WHERE topic IN (SELECT value FROM json_each(?1)) AND id <= ?3 ORDER BY id DESC LIMIT ?4",
    [STORE_READ_TRIMMED_ONE] = "SELECT name, trimmed_through FROM topics WHERE name = ?1",
    [STORE_READ_TRIMMED_MANY] = ("SELECT name, trimmed_through FROM topics "
                                 "WHERE name IN (SELECT value FROM json_each(?1))"),
    [STORE_READ_BEGIN] = "BEGIN",
    [STORE_READ_COMMIT] = "COMMIT",
};

/* ---- topic table (loop thread) ---------------------------------------------------------- */

static uint64_t hash_name(const char *name, size_t length) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < length; i++) {
        h ^= (unsigned char)name[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static store_topic_entry **find_slot(const store *s, const char *name, size_t length,
                                     uint64_t hash) {
    size_t mask = s->slot_capacity - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        store_topic_entry *e = s->slots[i];
        if (!e ||
            (e->hash == hash && e->name_length == length && memcmp(e->name, name, length) == 0))
            return &s->slots[i];
    }
}

static bool grow_slots(store *s) {
    size_t capacity = s->slot_capacity ? s->slot_capacity * 2 : 64;
    store_topic_entry **slots = calloc(capacity, sizeof *slots);
    if (!slots) return false;
    store_topic_entry **old = s->slots;
    s->slots = slots;
    s->slot_capacity = capacity;
    for (size_t i = 0; i < s->topic_count; i++) {
        store_topic_entry *e = s->topics[i];
        *find_slot(s, e->name, e->name_length, e->hash) = e;
    }
    free(old);
    return true;
}

static store_topic_entry *find_or_add_topic(store *s, const char *name, size_t length) {
    uint64_t hash = hash_name(name, length);
    if (s->slot_capacity) {
        store_topic_entry *e = *find_slot(s, name, length, hash);
        if (e) return e;
    }
    if ((s->topic_count + 1) * 2 > s->slot_capacity && !grow_slots(s)) return NULL;
    if (s->topic_count == s->topic_capacity) {
        size_t capacity = s->topic_capacity ? s->topic_capacity * 2 : 64;
        store_topic_entry **topics = realloc(s->topics, capacity * sizeof *topics);
        if (!topics) return NULL;
        s->topics = topics;
        s->topic_capacity = capacity;
    }
    store_topic_entry *e = calloc(1, sizeof *e + length + 1);
    if (!e) return NULL;
    memcpy(e->name, name, length);
    e->name[length] = '\0';
    e->name_length = length;
    e->hash = hash;
    e->topic.name = e->name;
    s->topics[s->topic_count++] = e;
    *find_slot(s, name, length, hash) = e;
    return e;
}

const store_topic *store_find_topic(const store *s, const char *name) {
    if (!s->slot_capacity) return NULL;
    size_t length = strlen(name);
    store_topic_entry *e = *find_slot(s, name, length, hash_name(name, length));
    return e ? &e->topic : NULL;
}

void store_each_topic(const store *s, void (*visit)(void *context, const store_topic *topic),
                      void *context) {
    for (size_t i = 0; i < s->topic_count; i++)
        visit(context, &s->topics[i]->topic);
}

size_t store_topic_count(const store *s) {
    return s->topic_count;
}

const char *store_epoch(const store *s) {
    return s->epoch;
}

uint64_t store_head_id(const store *s) {
    return s->head_id;
}

void store_set_commit_listener(store *s, store_commit_listener listener, void *context) {
    s->listener = listener;
    s->listener_context = context;
}

/* ---- completions (loop thread) ---------------------------------------------------------- */

static void outstanding_add(store *s) {
    if (s->outstanding++ == 0) uv_ref((uv_handle_t *)&s->async);
}

static void outstanding_done(store *s, size_t n) {
    s->outstanding -= n;
    if (s->outstanding == 0 && !s->closed) uv_unref((uv_handle_t *)&s->async);
}

static void complete_group(store *s, store_group *g) {
    if (g->ok) {
        for (size_t i = 0; i < g->update_count; i++) {
            const store_topic_update *u = &g->updates[i];
            store_topic_entry *e =
                find_or_add_topic(s, g->names.data + u->name_offset, u->name_length);
            if (!e) {
                fprintf(stderr, "herald: out of memory recording a topic\n");
                continue;
            }
            if (u->head_id > e->topic.head_id) e->topic.head_id = u->head_id;
            if (u->trimmed_through > e->topic.trimmed_through)
                e->topic.trimmed_through = u->trimmed_through;
        }
        if (g->last_id > s->head_id) s->head_id = g->last_id;
        if (g->event_count && s->listener)
            s->listener(s->listener_context, g->events, g->event_count);
    }
    for (store_request *r = g->requests; r; r = r->next) {
        bool stored = g->ok && !r->replayed;
        store_publish_result result = {
            .ok = g->ok,
            .error_message = g->ok ? NULL : g->error_message,
            .replayed = g->ok && r->replayed,
            .events = stored ? r->events : NULL,
            .event_count = stored ? r->count : 0,
            .receipt = g->ok ? r->receipt : NULL,
        };
        if (r->callback) r->callback(r->context, &result);
    }
    if (g->ok) store_outbox_notify(s, g);
    size_t done = g->request_count;
    for (store_job *j = g->jobs; j; j = j->next) {
        if (j->done) j->done(j->context, j->status);
        done++;
    }
    if (g->maintenance_finished) {
        s->maintenance_in_flight = false;
        done++;
    }
    store_group_free(g);
    outstanding_done(s, done);
}

/* One group at a time, so a callback that closes the store finds the rest still queued. */
static void drain_completions(store *s) {
    for (;;) {
        uv_mutex_lock(&s->mutex);
        store_group *g = s->done_head;
        if (g) {
            s->done_head = g->next;
            if (!s->done_head) s->done_tail = NULL;
            g->next = NULL;
        }
        uv_mutex_unlock(&s->mutex);
        if (!g) return;
        complete_group(s, g);
    }
}

static void on_async(uv_async_t *handle) {
    drain_completions(handle->data);
}

static void queue_maintenance(store *s) {
    if (s->maintenance_in_flight || s->closing) return;
    s->maintenance_in_flight = true;
    outstanding_add(s);
    uv_mutex_lock(&s->mutex);
    s->maintenance_requested = true;
    if (s->writer_waiting) uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->mutex);
}

static void on_timer(uv_timer_t *handle) {
    queue_maintenance(handle->data);
}

void store_test_run_maintenance(store *s) {
    queue_maintenance(s);
}

/* ---- publish ---------------------------------------------------------------------------- */

int store_publish(store *s, const store_item *items, size_t count, const char *idempotency_key,
                  size_t idempotency_key_length, bool batch, store_publish_callback callback,
                  void *context) {
    return store_publish_keyed(s, items, count, idempotency_key, idempotency_key_length, 0, batch,
                               callback, context);
}

int store_publish_keyed(store *s, const store_item *items, size_t count,
                        const char *idempotency_key, size_t idempotency_key_length,
                        int64_t key_ttl_ms, bool batch, store_publish_callback callback,
                        void *context) {
    if (s->closing || !items || count == 0 || count > (1u << 20) ||
        idempotency_key_length > INT32_MAX)
        return -1;
    if (!idempotency_key) idempotency_key_length = 0;
    store_request *r = malloc(sizeof *r + count * sizeof(event *) + idempotency_key_length + 1);
    if (!r) return -1;
    memset(r, 0, sizeof *r);
    r->callback = callback;
    r->context = context;
    r->batch = batch;
    for (size_t i = 0; i < count; i++) {
        const store_item *it = &items[i];
        if (it->topic_length > INT32_MAX || it->data_length > INT32_MAX) {
            r->events[i] = NULL; /* SQLite lengths are ints */
            while (i--)
                event_release(r->events[i]);
            free(r);
            return -1;
        }
        r->events[i] = event_create(it->topic, it->topic_length, it->type ? it->type : "message",
                                    it->data_is_json, it->data ? it->data : "",
                                    it->data ? it->data_length : 0);
        if (!r->events[i]) {
            while (i--)
                event_release(r->events[i]);
            free(r);
            return -1;
        }
    }
    r->count = count;
    if (idempotency_key_length) {
        r->key = (char *)&r->events[count];
        memcpy(r->key, idempotency_key, idempotency_key_length);
        r->key[idempotency_key_length] = '\0';
        r->key_length = idempotency_key_length;
        r->key_ttl_ms = key_ttl_ms;
    }
    outstanding_add(s);
    uv_mutex_lock(&s->mutex);
    if (s->queue_tail)
        s->queue_tail->next = r;
    else
        s->queue_head = r;
    s->queue_tail = r;
    if (s->writer_waiting) uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->mutex);
    return 0;
}

/* ---- jobs ------------------------------------------------------------------------------- */

int store_run(store *s, store_job_function run, store_job_done done, void *context) {
    if (s->closing || !run) return -1;
    store_job *j = calloc(1, sizeof *j);
    if (!j) return -1;
    j->run = run;
    j->done = done;
    j->context = context;
    j->status = STORE_JOB_FAILED;
    outstanding_add(s);
    uv_mutex_lock(&s->mutex);
    if (s->job_tail)
        s->job_tail->next = j;
    else
        s->job_head = j;
    s->job_tail = j;
    if (s->writer_waiting) uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->mutex);
    return 0;
}

/* ---- read ------------------------------------------------------------------------------- */

/* A JSON array of the names for json_each (names are bytes; anything unusual is escaped). */
static void append_json_names(text *t, const char *const *topics, size_t count) {
    text_append_char(t, '[');
    for (size_t i = 0; i < count; i++) {
        if (i) text_append_char(t, ',');
        text_append_char(t, '"');
        for (const unsigned char *p = (const unsigned char *)topics[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                text_printf(t, "\\%c", *p);
            else if (*p < 0x20)
                text_printf(t, "\\u%04x", *p);
            else
                text_append_char(t, (char)*p);
        }
        text_append_char(t, '"');
    }
    text_append_char(t, ']');
}

static int step_statement(store *s, int which) {
    sqlite3_stmt *st = s->read_statements[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Raises the loop's trimmed_through from the read's snapshot: the writer may have deleted events
 * whose trimming has not been handed back yet, and a reader must then still see the gap. (The
 * head is never raised here: the hub decides when events become visible.) */
static int refresh_trimmed(store *s, bool many, const char *topic) {
    sqlite3_stmt *st = s->read_statements[many ? STORE_READ_TRIMMED_MANY : STORE_READ_TRIMMED_ONE];
    if (many)
        sqlite3_bind_text(st, 1, s->read_topics.data, (int)s->read_topics.length, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        size_t length = (size_t)sqlite3_column_bytes(st, 0);
        uint64_t trimmed = (uint64_t)sqlite3_column_int64(st, 1);
        if (!name || !s->slot_capacity) continue;
        store_topic_entry *e = *find_slot(s, name, length, hash_name(name, length));
        if (e && trimmed > e->topic.trimmed_through) e->topic.trimmed_through = trimmed;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_read(store *s, const char *const *topics, size_t topic_count, uint64_t after_id,
               bool newest, size_t limit, event_list *out) {
    if (!topic_count || !limit || s->head_id == 0) return 0;
    if (!newest && after_id >= s->head_id) return 0;
    if (limit > INT64_MAX) limit = INT64_MAX;
    bool many = topic_count > 1;
    if (many) {
        text_clear(&s->read_topics);
        append_json_names(&s->read_topics, topics, topic_count);
        if (text_failed(&s->read_topics)) return -1;
    }
    /* One read transaction: the events and the trimmed marks come from the same snapshot. */
    if (step_statement(s, STORE_READ_BEGIN)) {
        fprintf(stderr, "herald: store read failed: %s\n", sqlite3_errmsg(s->reader));
        return -1;
    }
    sqlite3_stmt *st;
    if (many) {
        st = s->read_statements[newest ? STORE_READ_MANY_NEWEST : STORE_READ_MANY_AFTER];
        sqlite3_bind_text(st, 1, s->read_topics.data, (int)s->read_topics.length, SQLITE_STATIC);
    } else {
        st = s->read_statements[newest ? STORE_READ_ONE_NEWEST : STORE_READ_ONE_AFTER];
        sqlite3_bind_text(st, 1, topics[0], -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 2, after_id > INT64_MAX ? INT64_MAX : (sqlite3_int64)after_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->head_id);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
    size_t first = out->count;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *topic = (const char *)sqlite3_column_text(st, 1);
        size_t topic_length = (size_t)sqlite3_column_bytes(st, 1);
        const char *type = (const char *)sqlite3_column_text(st, 2);
        const char *data = sqlite3_column_blob(st, 5);
        size_t data_length = (size_t)sqlite3_column_bytes(st, 5);
        event *e = topic && type
                       ? event_create(topic, topic_length, type, sqlite3_column_int(st, 4) != 0,
                                      data ? data : "", data_length)
                       : NULL;
        if (!e) {
            result = -1;
            break;
        }
        e->id = (uint64_t)sqlite3_column_int64(st, 0);
        e->time_ms = sqlite3_column_int64(st, 3);
        if (!event_list_push(out, e)) { /* it released e */
            result = -1;
            break;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) result = -1;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (result == 0) result = refresh_trimmed(s, many, topics[0]);
    if (result != 0) fprintf(stderr, "herald: store read failed: %s\n", sqlite3_errmsg(s->reader));
    step_statement(s, STORE_READ_COMMIT); /* ends the snapshot so checkpoints can proceed */
    if (result != 0) {
        while (out->count > first)
            event_release(out->events[--out->count]);
        return -1;
    }
    if (newest) {
        for (size_t i = first, j = out->count; i + 1 < j; i++, j--) {
            event *t = out->events[i];
            out->events[i] = out->events[j - 1];
            out->events[j - 1] = t;
        }
    }
    return 0;
}

/* ---- open and close --------------------------------------------------------------------- */

static int make_directories(const char *path, char *error, size_t error_size) {
    char *copy = strdup(path);
    if (!copy) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            snprintf(error, error_size, "could not create the data directory %s: %s", copy,
                     strerror(errno));
            free(copy);
            return -1;
        }
        *p = saved;
        if (!saved) break;
    }
    free(copy);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(error, error_size, "the data directory %s is not a directory", path);
        return -1;
    }
    return 0;
}

static int exec(sqlite3 *db, const char *sql, char *error, size_t error_size) {
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) == SQLITE_OK) return 0;
    snprintf(error, error_size, "could not set up the store: %s",
             message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return -1;
}

/* One integer from a query (or fallback when no row). -1 on error. */
static int query_int(sqlite3 *db, const char *sql, int64_t fallback, int64_t *out) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
               ? sqlite3_column_int64(st, 0)
               : fallback;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int load_meta(store *s, char *error, size_t error_size) {
    sqlite3 *db = s->writer;
    if (exec(db, "BEGIN IMMEDIATE", error, error_size)) return -1;
    if (exec(db, schema_sql, error, error_size)) goto fail;
    int64_t version = 0;
    if (query_int(db, "SELECT value FROM meta WHERE key = 'schema_version'", 0, &version))
        goto db_fail;
    if (version > SCHEMA_VERSION) {
        snprintf(error, error_size, "the store was written by a newer herald (schema %" PRId64 ")",
                 version);
        goto fail;
    }
    if (store_outbox_schema(db, error, error_size)) goto fail;
    /* An older herald would ignore the outbox (and lose deliveries): mark the store as newer. */
    if (version > 0 && version < SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql, "UPDATE meta SET value = %d WHERE key = 'schema_version'",
                 SCHEMA_VERSION);
        if (exec(db, sql, error, error_size)) goto fail;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'epoch'", -1, &st, NULL))
        goto db_fail;
    bool have_epoch = false;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 8) {
        memcpy(s->epoch, sqlite3_column_text(st, 0), 8);
        s->epoch[8] = '\0';
        have_epoch = true;
    }
    sqlite3_finalize(st);
    if (!have_epoch) {
        unsigned char random[4];
        if (RAND_bytes(random, sizeof random) != 1) {
            snprintf(error, error_size, "could not make the store epoch: no randomness");
            goto fail;
        }
        snprintf(s->epoch, sizeof s->epoch, "%02x%02x%02x%02x", random[0], random[1], random[2],
                 random[3]);
        char sql[160];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch', '%s'),"
                 " ('schema_version', %d)",
                 s->epoch, SCHEMA_VERSION);
        if (exec(db, sql, error, error_size)) goto fail;
    }
    if (exec(db, "INSERT OR IGNORE INTO meta(key, value) VALUES ('last_id', 0)", error, error_size))
        goto fail;
    /* The sequence only grows: take the largest id any table has seen. */
    int64_t last_id = 0, max_event = 0, max_head = 0, last_time = 0;
    if (query_int(db, "SELECT value FROM meta WHERE key = 'last_id'", 0, &last_id) ||
        query_int(db, "SELECT max(id) FROM events", 0, &max_event) ||
        query_int(db, "SELECT max(head_id) FROM topics", 0, &max_head) ||
        query_int(db, "SELECT time_ms FROM events ORDER BY id DESC LIMIT 1", 0, &last_time))
        goto db_fail;
    if (max_event > last_id) last_id = max_event;
    if (max_head > last_id) last_id = max_head;
    s->last_id = (uint64_t)(last_id > 0 ? last_id : 0);
    s->last_time_ms = last_time;
    s->head_id = s->last_id;

    if (sqlite3_prepare_v2(db, "SELECT name, head_id, trimmed_through FROM topics", -1, &st, NULL))
        goto db_fail;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_topic_entry *e = find_or_add_topic(s, (const char *)sqlite3_column_text(st, 0),
                                                 (size_t)sqlite3_column_bytes(st, 0));
        if (!e) {
            sqlite3_finalize(st);
            snprintf(error, error_size, "out of memory loading the topics");
            goto fail;
        }
        e->topic.head_id = (uint64_t)sqlite3_column_int64(st, 1);
        e->topic.trimmed_through = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) goto db_fail;
    if (exec(db, "COMMIT", error, error_size)) goto fail;
    return 0;
db_fail:
    snprintf(error, error_size, "could not read the store: %s", sqlite3_errmsg(db));
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static void free_store(store *s) {
    for (size_t i = 0; i < s->topic_count; i++)
        free(s->topics[i]);
    free(s->topics);
    free(s->slots);
    text_free(&s->read_topics);
    uv_mutex_destroy(&s->mutex);
    uv_cond_destroy(&s->cond);
    free(s);
}

static void close_databases(store *s) {
    for (int i = 0; i < STORE_READ_STATEMENTS; i++) {
        sqlite3_finalize(s->read_statements[i]);
        s->read_statements[i] = NULL;
    }
    store_outbox_finalize(s);
    store_outbox_free_filters(s);
    sqlite3_close(s->reader);
    s->reader = NULL;
    store_writer_finalize(s);
    sqlite3_close(s->writer);
    s->writer = NULL;
    if (s->lock_fd >= 0) close(s->lock_fd);
    s->lock_fd = -1;
}

int store_open(uv_loop_t *loop, const store_options *options, store **out, char *error,
               size_t error_size) {
    *out = NULL;
    if (!options->data_directory || !*options->data_directory) {
        snprintf(error, error_size, "no data directory was given");
        return -1;
    }
    if (make_directories(options->data_directory, error, error_size)) return -1;
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    s->loop = loop;
    s->lock_fd = -1;
    s->history_size = options->history_size ? options->history_size : DEFAULT_HISTORY_SIZE;
    if (s->history_size > INT64_MAX) s->history_size = INT64_MAX;
    s->history_age_ms = options->history_age_ms > 0 ? options->history_age_ms : DEFAULT_AGE_MS;
    s->idempotency_ttl_ms =
        options->idempotency_ttl_ms > 0 ? options->idempotency_ttl_ms : DEFAULT_AGE_MS;
    /* Keeps now - age far from overflow. */
    if (s->history_age_ms > MAX_AGE_MS) s->history_age_ms = MAX_AGE_MS;
    if (s->idempotency_ttl_ms > MAX_AGE_MS) s->idempotency_ttl_ms = MAX_AGE_MS;
    s->maintenance_interval_ms = options->maintenance_interval_ms > 0
                                     ? options->maintenance_interval_ms
                                     : DEFAULT_MAINTENANCE_MS;
    text_init(&s->read_topics);
    if (uv_mutex_init(&s->mutex)) {
        free(s);
        snprintf(error, error_size, "could not create a mutex");
        return -1;
    }
    if (uv_cond_init(&s->cond)) {
        uv_mutex_destroy(&s->mutex);
        free(s);
        snprintf(error, error_size, "could not create a condition variable");
        return -1;
    }

    char path[4096];
    int n = snprintf(path, sizeof path, "%s/herald.lock", options->data_directory);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(error, error_size, "the data directory path is too long");
        goto fail;
    }
    /* One server per data directory: a second writer would fight over the id sequence. */
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        snprintf(error, error_size, "could not open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(error, error_size, "the data directory %s is in use by another herald process",
                 options->data_directory);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/herald.db", options->data_directory);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->writer, flags, NULL) != SQLITE_OK) {
        snprintf(error, error_size, "could not open the store %s: %s", path,
                 s->writer ? sqlite3_errmsg(s->writer) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->writer, 5000);
    /* synchronous=FULL: an acknowledged publish survives power loss, not only kill -9. */
    if (exec(s->writer,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
             " PRAGMA journal_size_limit = 67108864; PRAGMA cache_size = -16384;"
             " PRAGMA temp_store = MEMORY",
             error, error_size))
        goto fail;
    int64_t wal = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->writer, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
        wal = sqlite3_step(st) == SQLITE_ROW &&
              strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
    }
    if (!wal) {
        snprintf(error, error_size, "the store %s cannot use write-ahead logging", path);
        goto fail;
    }
    if (load_meta(s, error, error_size) || store_writer_prepare(s, error, error_size)) goto fail;

    if (sqlite3_open_v2(path, &s->reader, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(error, error_size, "could not open the store %s for reading: %s", path,
                 s->reader ? sqlite3_errmsg(s->reader) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->reader, 5000);
    for (int i = 0; i < STORE_READ_STATEMENTS; i++) {
        if (sqlite3_prepare_v3(s->reader, read_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->read_statements[i], NULL) != SQLITE_OK) {
            snprintf(error, error_size, "could not prepare the store's reads: %s",
                     sqlite3_errmsg(s->reader));
            goto fail;
        }
    }
    if (store_outbox_prepare(s, error, error_size)) goto fail;
    if (store_outbox_load_filters(s) != SQLITE_OK) {
        snprintf(error, error_size, "could not load the webhook endpoints: %s",
                 sqlite3_errmsg(s->writer));
        goto fail;
    }

    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 2;
    uv_timer_start(&s->timer, on_timer, (uint64_t)s->maintenance_interval_ms,
                   (uint64_t)s->maintenance_interval_ms);
    uv_unref((uv_handle_t *)&s->timer);
    if (uv_thread_create(&s->thread, store_writer_main, s) != 0) {
        snprintf(error, error_size, "could not start the store's writer thread");
        s->closing = true;
        store_close(s); /* frees s once the loop has closed the handles */
        return -1;
    }
    s->thread_started = true;
    *out = s;
    return 0;
fail:
    close_databases(s);
    free_store(s);
    return -1;
}

static void on_handle_closed(uv_handle_t *handle) {
    store *s = handle->data;
    if (--s->open_handles == 0) free_store(s);
}

void store_close(store *s) {
    if (!s || s->close_called) return;
    s->close_called = true;
    s->closing = true;
    uv_timer_stop(&s->timer);
    uv_mutex_lock(&s->mutex);
    s->stopping = true;
    uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->mutex);
    if (s->thread_started) uv_thread_join(&s->thread);
    s->thread_started = false;
    drain_completions(s); /* every queued publish's callback runs before we return */
    s->closed = true;
    close_databases(s);
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

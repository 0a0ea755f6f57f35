/* The webhook outbox, writer side: schema, the enabled endpoints' filters, deliveries queued in
 * the publish transaction, the outbox's jobs (endpoint changes, retry, replay, attempt results)
 * and pruning. Reads on the loop are in store_outbox_read.c. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "hub/topic.h"
#include "store/store_internal.h"

static const char *const outbox_schema_sql =
    /* key: internal and never reused (AUTOINCREMENT), so a deleted endpoint's old deliveries can
     * never be mistaken for a new endpoint's. */
    "CREATE TABLE IF NOT EXISTS webhooks(key INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, url TEXT NOT NULL, topics TEXT NOT NULL, types TEXT,"
    " description TEXT NOT NULL, enabled INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " secret TEXT NOT NULL, previous_secret TEXT,"
    " previous_secret_until_ms INTEGER NOT NULL DEFAULT 0);"
    /* The body of every event that has deliveries, so trimming history never loses one. */
    "CREATE TABLE IF NOT EXISTS delivery_events(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    " type TEXT NOT NULL, time_ms INTEGER NOT NULL, data_is_json INTEGER NOT NULL,"
    " data BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS deliveries(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " webhook_key INTEGER NOT NULL, event_id INTEGER NOT NULL, status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, next_attempt_ms INTEGER, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL);"
    /* Only unfinished deliveries have a due time: the due index holds nothing else. */
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(webhook_key, next_attempt_ms)"
    " WHERE next_attempt_ms IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries(updated_ms)"
    " WHERE next_attempt_ms IS NULL;"
    "CREATE INDEX IF NOT EXISTS deliveries_log ON deliveries(webhook_key, status, id);"
    "CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);"
    "CREATE TABLE IF NOT EXISTS attempts(delivery_id INTEGER NOT NULL, time_ms INTEGER NOT NULL,"
    " status_code INTEGER, latency_ms INTEGER NOT NULL, error TEXT, response BLOB);"
    "CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id);";

static const char *const outbox_sql[STORE_O_STATEMENTS] = {
    [STORE_O_INSERT_BODY] = "INSERT OR IGNORE INTO delivery_events(id, topic, type, time_ms,"
                            " data_is_json, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [STORE_O_INSERT_DELIVERY] = "INSERT INTO deliveries(webhook_key, event_id, status, attempts,"
                                " next_attempt_ms, created_ms, updated_ms)"
                                " VALUES (?1, ?2, 0, 0, ?3, ?3, ?3)",
    [STORE_O_INSERT_ATTEMPT] = "INSERT INTO attempts(delivery_id, time_ms, status_code,"
                               " latency_ms, error, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* A delivery cancelled while its attempt was in flight stays cancelled, unless the attempt
     * succeeded (then that is the truth). SET expressions all see the old row. */
    [STORE_O_UPDATE_DELIVERY] =
        "UPDATE deliveries SET attempts = attempts + 1, updated_ms = ?4,"
        " status = CASE WHEN ?2 = 1 OR status IN (0, 2) THEN ?2 ELSE status END,"
        " next_attempt_ms = CASE WHEN ?2 = 1 OR status IN (0, 2) THEN ?3 ELSE next_attempt_ms END"
        " WHERE id = ?1",
    [STORE_O_PRUNE_DELIVERIES] =
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE next_attempt_ms IS"
        " NULL AND updated_ms < ?1 ORDER BY updated_ms LIMIT ?2) RETURNING id, event_id",
    [STORE_O_PRUNE_ATTEMPTS] = "DELETE FROM attempts WHERE delivery_id = ?1",
    [STORE_O_PRUNE_BODY] = "DELETE FROM delivery_events WHERE id = ?1 AND NOT EXISTS"
                           " (SELECT 1 FROM deliveries WHERE event_id = ?1)",
};

/* ---- names -------------------------------------------------------------------------------- */

static const char *const status_names[STORE_DELIVERY_STATUS_COUNT] = {
    "pending", "succeeded", "failed", "dead", "cancelled"};

const char *store_delivery_status_name(store_delivery_status status) {
    return (unsigned)status < STORE_DELIVERY_STATUS_COUNT ? status_names[status] : "unknown";
}

bool store_delivery_status_parse(const char *name, store_delivery_status *out) {
    for (int i = 0; i < STORE_DELIVERY_STATUS_COUNT; i++)
        if (name && strcmp(name, status_names[i]) == 0) {
            *out = (store_delivery_status)i;
            return true;
        }
    return false;
}

int64_t store_now_ms(store *s) {
    return store_clock_ms(s);
}

/* ---- open and close ------------------------------------------------------------------------ */

int store_outbox_schema(sqlite3 *db, char *error, size_t error_size) {
    char *message = NULL;
    if (sqlite3_exec(db, outbox_schema_sql, NULL, NULL, &message) == SQLITE_OK) return 0;
    snprintf(error, error_size, "could not set up the webhook outbox: %s",
             message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return -1;
}

int store_outbox_prepare(store *s, char *error, size_t error_size) {
    for (int i = 0; i < STORE_O_STATEMENTS; i++)
        if (sqlite3_prepare_v3(s->writer, outbox_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->outbox_statements[i], NULL) != SQLITE_OK) {
            snprintf(error, error_size, "could not prepare the outbox's statements: %s",
                     sqlite3_errmsg(s->writer));
            return -1;
        }
    for (int i = 0; i < STORE_OR_STATEMENTS; i++)
        if (sqlite3_prepare_v3(s->reader, store_outbox_read_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->outbox_read_statements[i], NULL) != SQLITE_OK) {
            snprintf(error, error_size, "could not prepare the outbox's reads: %s",
                     sqlite3_errmsg(s->reader));
            return -1;
        }
    return 0;
}

void store_outbox_finalize(store *s) {
    for (int i = 0; i < STORE_O_STATEMENTS; i++) {
        sqlite3_finalize(s->outbox_statements[i]);
        s->outbox_statements[i] = NULL;
    }
    for (int i = 0; i < STORE_OR_STATEMENTS; i++) {
        sqlite3_finalize(s->outbox_read_statements[i]);
        s->outbox_read_statements[i] = NULL;
    }
}

/* ---- filters ------------------------------------------------------------------------------ */

static void filter_release(store_hook_filter *f) {
    free(f->topics);
    free(f->types);
    free(f->strings);
    memset(f, 0, sizeof *f);
}

void store_outbox_free_filters(store *s) {
    for (size_t i = 0; i < s->hook_filter_count; i++)
        filter_release(&s->hook_filters[i]);
    free(s->hook_filters);
    s->hook_filters = NULL;
    s->hook_filter_count = 0;
}

/* Decodes a JSON array of strings into spans of strings (NUL-separated). */
static bool parse_spans(const char *json, text *strings, store_hook_span **out, size_t *count) {
    json_span array = {json, strlen(json)}, element;
    if (json_kind_of(array) != JSON_KIND_ARRAY) return false;
    size_t n = 0, cursor = 0;
    while (json_array_next(array, &cursor, &element))
        n++;
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) return false;
    *count = 0;
    cursor = 0;
    while (json_array_next(array, &cursor, &element)) {
        if (json_kind_of(element) != JSON_KIND_STRING) return false;
        size_t offset = strings->length;
        if (!json_string_decode(element, strings)) return false;
        (*out)[*count].offset = offset;
        (*out)[(*count)++].length = strings->length - offset;
        text_append_char(strings, '\0');
    }
    return !text_failed(strings);
}

/* A filter from an endpoint's stored topics and types (types NULL: every type). */
static int filter_parse(uint64_t key, const char *topics, const char *types, store_hook_filter *f) {
    memset(f, 0, sizeof *f);
    f->key = key;
    text strings;
    text_init(&strings);
    bool ok = topics && parse_spans(topics, &strings, &f->topics, &f->topic_count);
    if (ok && types) ok = parse_spans(types, &strings, &f->types, &f->type_count);
    f->strings = strings.data; /* owned by the filter from here */
    if (!ok) {
        filter_release(f);
        return text_failed(&strings) ? SQLITE_NOMEM : SQLITE_CORRUPT;
    }
    if (!f->strings) { /* an empty array of topics matches nothing */
        f->strings = calloc(1, 1);
        if (!f->strings) {
            filter_release(f);
            return SQLITE_NOMEM;
        }
    }
    return SQLITE_OK;
}

static bool filter_matches(const store_hook_filter *f, const event *e) {
    if (f->types) {
        size_t type_length = strlen(e->type);
        bool any = false;
        for (size_t i = 0; !any && i < f->type_count; i++)
            any = f->types[i].length == type_length &&
                  memcmp(f->strings + f->types[i].offset, e->type, type_length) == 0;
        if (!any) return false;
    }
    for (size_t i = 0; i < f->topic_count; i++)
        if (topic_pattern_matches(f->strings + f->topics[i].offset, f->topics[i].length, e->topic,
                                  e->topic_length))
            return true;
    return false;
}

int store_outbox_load_filters(store *s) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->writer,
                                "SELECT key, topics, types FROM webhooks WHERE enabled = 1"
                                " ORDER BY key",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    store_hook_filter *filters = NULL;
    size_t count = 0, capacity = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            store_hook_filter *more = realloc(filters, grown * sizeof *more);
            if (!more) {
                rc = SQLITE_NOMEM;
                break;
            }
            filters = more;
            capacity = grown;
        }
        rc = filter_parse((uint64_t)sqlite3_column_int64(st, 0),
                          (const char *)sqlite3_column_text(st, 1),
                          (const char *)sqlite3_column_text(st, 2), &filters[count]);
        if (rc != SQLITE_OK) break;
        count++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < count; i++)
            filter_release(&filters[i]);
        free(filters);
        return rc == SQLITE_ROW ? SQLITE_ERROR : rc;
    }
    store_outbox_free_filters(s);
    s->hook_filters = filters;
    s->hook_filter_count = count;
    s->hook_filters_stale = false;
    return SQLITE_OK;
}

/* ---- queueing deliveries ------------------------------------------------------------------ */

static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int insert_body(store *s, const event *e) {
    sqlite3_stmt *st = s->outbox_statements[STORE_O_INSERT_BODY];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)e->id);
    sqlite3_bind_text(st, 2, e->topic, (int)e->topic_length, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, e->time_ms);
    sqlite3_bind_int(st, 5, e->data_is_json);
    sqlite3_bind_blob(st, 6, e->data, (int)e->data_length, SQLITE_STATIC);
    return step_done(st);
}

static int insert_delivery(store *s, uint64_t key, uint64_t event_id, int64_t now_ms) {
    sqlite3_stmt *st = s->outbox_statements[STORE_O_INSERT_DELIVERY];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)key);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)event_id);
    sqlite3_bind_int64(st, 3, now_ms);
    return step_done(st);
}

static bool add_outbox_key(store_group *g, uint64_t key) {
    if (g->outbox_key_count == g->outbox_key_capacity) {
        size_t capacity = g->outbox_key_capacity ? g->outbox_key_capacity * 2 : 8;
        uint64_t *keys = realloc(g->outbox_keys, capacity * sizeof *keys);
        if (!keys) return false;
        g->outbox_keys = keys;
        g->outbox_key_capacity = capacity;
    }
    g->outbox_keys[g->outbox_key_count++] = key;
    return true;
}

int store_outbox_enqueue(store *s, store_group *g, int64_t now_ms) {
    if (s->hook_filters_stale) {
        int rc = store_outbox_load_filters(s);
        if (rc != SQLITE_OK) return rc;
    }
    for (size_t i = 0; i < g->event_count; i++) {
        const event *e = g->events[i];
        bool body_written = false;
        for (size_t k = 0; k < s->hook_filter_count; k++) {
            store_hook_filter *f = &s->hook_filters[k];
            if (!filter_matches(f, e)) continue;
            int rc = body_written ? SQLITE_OK : insert_body(s, e);
            body_written = true;
            if (rc == SQLITE_OK) rc = insert_delivery(s, f->key, e->id, now_ms);
            if (rc != SQLITE_OK) return rc;
            if (f->mark != s->hook_mark) {
                f->mark = s->hook_mark;
                if (!add_outbox_key(g, f->key)) return SQLITE_NOMEM;
            }
        }
    }
    return SQLITE_OK;
}

void store_outbox_notify(store *s, const store_group *g) {
    if (g->outbox_key_count && s->outbox_listener)
        s->outbox_listener(s->outbox_listener_context, STORE_OUTBOX_DELIVERIES_QUEUED,
                           g->outbox_keys, g->outbox_key_count);
}

void store_set_outbox_listener(store *s, store_outbox_listener listener, void *context) {
    s->outbox_listener = listener;
    s->outbox_listener_context = context;
}

/* ---- pruning ------------------------------------------------------------------------------ */

typedef struct pruned_row {
    int64_t id;
    int64_t event_id;
} pruned_row;

int store_outbox_maintain(store *s, int64_t now_ms, bool *more) {
    *more = false;
    pruned_row *rows = malloc(STORE_MAINTENANCE_CHUNK * sizeof *rows);
    if (!rows) return SQLITE_NOMEM;
    sqlite3_stmt *st = s->outbox_statements[STORE_O_PRUNE_DELIVERIES];
    sqlite3_bind_int64(st, 1, now_ms - STORE_DELIVERY_RETENTION_MS);
    sqlite3_bind_int64(st, 2, STORE_MAINTENANCE_CHUNK);
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && count < STORE_MAINTENANCE_CHUNK) {
        rows[count].id = sqlite3_column_int64(st, 0);
        rows[count++].event_id = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
    for (size_t i = 0; rc == SQLITE_OK && i < count; i++) {
        sqlite3_stmt *attempts = s->outbox_statements[STORE_O_PRUNE_ATTEMPTS];
        sqlite3_bind_int64(attempts, 1, rows[i].id);
        rc = step_done(attempts);
        if (rc != SQLITE_OK) break;
        sqlite3_stmt *body = s->outbox_statements[STORE_O_PRUNE_BODY];
        sqlite3_bind_int64(body, 1, rows[i].event_id);
        rc = step_done(body);
    }
    if (count == STORE_MAINTENANCE_CHUNK) *more = true;
    free(rows);
    return rc;
}

/* ---- jobs --------------------------------------------------------------------------------- */

typedef enum outbox_job_kind {
    JOB_CREATE,
    JOB_UPDATE,
    JOB_ROTATE,
    JOB_DELETE,
    JOB_RETRY,
    JOB_REPLAY,
    JOB_RECORD,
} outbox_job_kind;

typedef struct outbox_job {
    store *s;
    outbox_job_kind kind;
    char id[STORE_WEBHOOK_ID_LENGTH + 1];
    /* inputs (owned copies) */
    char *url, *topics, *types, *description, *secret;
    bool set_types;
    int enabled;
    uint64_t delivery_id;
    uint64_t since;
    int64_t overlap_ms;
    const store_attempt_record *records; /* borrowed from the caller until done */
    size_t record_count;
    /* outputs */
    store_webhook *webhook;
    uint64_t key;
    uint64_t count;
    /* callbacks */
    store_webhook_callback webhook_callback;
    store_outbox_callback count_callback;
    void (*record_done)(void *context, int status);
    void *context;
} outbox_job;

static void job_free(outbox_job *j) {
    free(j->url);
    free(j->topics);
    free(j->types);
    free(j->description);
    free(j->secret);
    store_webhook_free(j->webhook);
    free(j);
}

static bool copy_string(char **out, const char *value) {
    if (!value) return true;
    *out = strdup(value);
    return *out != NULL;
}

void store_webhook_free(store_webhook *w) {
    if (!w) return;
    free(w->url);
    free(w->topics);
    free(w->types);
    free(w->description);
    free(w->secret);
    free(w->previous_secret);
    free(w);
}

static char *column_string(sqlite3_stmt *st, int column, bool *ok) {
    const unsigned char *value = sqlite3_column_text(st, column);
    if (!value) return NULL;
    char *copy = strdup((const char *)value);
    if (!copy) *ok = false;
    return copy;
}

store_webhook *store_webhook_from_row(sqlite3_stmt *st) {
    store_webhook *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    bool ok = true;
    w->key = (uint64_t)sqlite3_column_int64(st, 0);
    const unsigned char *id = sqlite3_column_text(st, 1);
    snprintf(w->id, sizeof w->id, "%s", id ? (const char *)id : "");
    w->url = column_string(st, 2, &ok);
    w->topics = column_string(st, 3, &ok);
    w->types = column_string(st, 4, &ok);
    w->description = column_string(st, 5, &ok);
    w->enabled = sqlite3_column_int(st, 6) != 0;
    w->created_ms = sqlite3_column_int64(st, 7);
    w->secret = column_string(st, 8, &ok);
    w->previous_secret = column_string(st, 9, &ok);
    w->previous_secret_until_ms = sqlite3_column_int64(st, 10);
    if (!ok || !w->url || !w->topics || !w->description || !w->secret) {
        store_webhook_free(w);
        return NULL;
    }
    return w;
}

/* Reads the endpoint back on the writer connection (inside the job's transaction). */
static int read_back(sqlite3 *db, outbox_job *j) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, STORE_WEBHOOK_COLUMNS "WHERE key = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)j->key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        j->webhook = store_webhook_from_row(st);
        rc = j->webhook ? SQLITE_OK : SQLITE_NOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The endpoint's key and enabled flag by public id: SQLITE_OK, SQLITE_NOTFOUND or an error. */
static int find_endpoint(sqlite3 *db, const char *id, uint64_t *key, bool *enabled, char **topics,
                         char **types) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db, "SELECT key, enabled, topics, types FROM webhooks WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *key = (uint64_t)sqlite3_column_int64(st, 0);
        *enabled = sqlite3_column_int(st, 1) != 0;
        bool ok = true;
        if (topics) *topics = column_string(st, 2, &ok);
        if (types) *types = column_string(st, 3, &ok);
        rc = ok ? SQLITE_OK : SQLITE_NOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Cancels the endpoint's unfinished deliveries; adds their number to *count. */
static int cancel_deliveries(sqlite3 *db, uint64_t key, int64_t now_ms, uint64_t *count) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE deliveries SET status = 4, next_attempt_ms = NULL,"
                                " updated_ms = ?2 WHERE webhook_key = ?1 AND"
                                " next_attempt_ms IS NOT NULL",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)key);
    sqlite3_bind_int64(st, 2, now_ms);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) *count += (uint64_t)sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* A job's result: SQLITE_NOTFOUND becomes STORE_OUTBOX_NOT_FOUND, other errors are logged. */
static int job_result(sqlite3 *db, int rc) {
    if (rc == SQLITE_OK) return STORE_OUTBOX_OK;
    if (rc == SQLITE_NOTFOUND) return STORE_OUTBOX_NOT_FOUND;
    fprintf(stderr, "herald: webhook outbox change failed: %s\n", sqlite3_errmsg(db));
    return -1;
}

static int run_create(sqlite3 *db, outbox_job *j) {
    int64_t now = store_clock_ms(j->s);
    int rc = SQLITE_ERROR;
    /* Random ids: not guessable, never shared with a deleted endpoint; retried on a collision. */
    for (int tries = 0; tries < 4; tries++) {
        unsigned char random[8];
        if (RAND_bytes(random, sizeof random) != 1) return -1;
        snprintf(j->id, sizeof j->id, "wh_%02x%02x%02x%02x%02x%02x%02x%02x", random[0], random[1],
                 random[2], random[3], random[4], random[5], random[6], random[7]);
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO webhooks(id, url, topics, types, description,"
                                " enabled, created_ms, secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                                " ?8)",
                                -1, &st, NULL);
        if (rc != SQLITE_OK) break;
        sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, j->url, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, j->topics, -1, SQLITE_STATIC);
        if (j->types)
            sqlite3_bind_text(st, 4, j->types, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_text(st, 5, j->description ? j->description : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, j->enabled != 0);
        sqlite3_bind_int64(st, 7, now);
        sqlite3_bind_text(st, 8, j->secret, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_CONSTRAINT) break;
    }
    if (rc != SQLITE_DONE) return job_result(db, rc);
    j->key = (uint64_t)sqlite3_last_insert_rowid(db);
    j->s->hook_filters_stale = true;
    return job_result(db, read_back(db, j));
}

static int run_update(sqlite3 *db, outbox_job *j) {
    bool enabled;
    int rc = find_endpoint(db, j->id, &j->key, &enabled, NULL, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE webhooks SET url = coalesce(?2, url),"
                            " topics = coalesce(?3, topics),"
                            " types = CASE WHEN ?4 THEN ?5 ELSE types END,"
                            " description = coalesce(?6, description),"
                            " enabled = CASE WHEN ?7 >= 0 THEN ?7 ELSE enabled END WHERE key = ?1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)j->key);
    if (j->url) sqlite3_bind_text(st, 2, j->url, -1, SQLITE_STATIC);
    if (j->topics) sqlite3_bind_text(st, 3, j->topics, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, j->set_types);
    if (j->types) sqlite3_bind_text(st, 5, j->types, -1, SQLITE_STATIC);
    if (j->description) sqlite3_bind_text(st, 6, j->description, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, j->enabled);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return job_result(db, rc);
    /* Disabled: nothing of it is retried any more (also when it was disabled already). */
    if (j->enabled == 0) rc = cancel_deliveries(db, j->key, store_clock_ms(j->s), &j->count);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc != SQLITE_OK) return job_result(db, rc);
    j->s->hook_filters_stale = true;
    return job_result(db, read_back(db, j));
}

static int run_rotate(sqlite3 *db, outbox_job *j) {
    bool enabled;
    int rc = find_endpoint(db, j->id, &j->key, &enabled, NULL, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE webhooks SET previous_secret = secret,"
                            " previous_secret_until_ms = ?3, secret = ?2 WHERE key = ?1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)j->key);
    sqlite3_bind_text(st, 2, j->secret, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, store_clock_ms(j->s) + j->overlap_ms);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return job_result(db, rc);
    return job_result(db, read_back(db, j));
}

static int run_delete(sqlite3 *db, outbox_job *j) {
    bool enabled;
    int rc = find_endpoint(db, j->id, &j->key, &enabled, NULL, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db, "DELETE FROM webhooks WHERE key = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)j->key);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return job_result(db, rc);
    rc = cancel_deliveries(db, j->key, store_clock_ms(j->s), &j->count);
    if (rc != SQLITE_OK) return job_result(db, rc);
    j->s->hook_filters_stale = true;
    return STORE_OUTBOX_OK;
}

static int run_retry(sqlite3 *db, outbox_job *j) {
    bool enabled;
    int rc = find_endpoint(db, j->id, &j->key, &enabled, NULL, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    if (!enabled) return STORE_OUTBOX_DISABLED;
    sqlite3_stmt *st;
    /* Due now, whatever it was; "failed" when it has failed before, as SPEC §7 defines it. */
    rc = sqlite3_prepare_v2(db,
                            "UPDATE deliveries SET status = CASE WHEN status = 1 OR attempts = 0"
                            " THEN 0 ELSE 2 END, next_attempt_ms = ?3, updated_ms = ?3"
                            " WHERE id = ?1 AND webhook_key = ?2",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)j->delivery_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)j->key);
    sqlite3_bind_int64(st, 3, store_clock_ms(j->s));
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return job_result(db, rc);
    if (sqlite3_changes(db) == 0) return STORE_OUTBOX_NOT_FOUND;
    j->count = 1;
    return STORE_OUTBOX_OK;
}

static int run_replay(sqlite3 *db, outbox_job *j) {
    bool enabled;
    char *topics = NULL, *types = NULL;
    int rc = find_endpoint(db, j->id, &j->key, &enabled, &topics, &types);
    if (rc == SQLITE_OK && !enabled) {
        free(topics);
        free(types);
        return STORE_OUTBOX_DISABLED;
    }
    store_hook_filter filter;
    if (rc == SQLITE_OK) rc = filter_parse(j->key, topics, types, &filter);
    free(topics);
    free(types);
    if (rc != SQLITE_OK) return job_result(db, rc);
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db,
                            "SELECT id, topic, type, time_ms, data_is_json, data FROM events"
                            " WHERE id > ?1 ORDER BY id",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        filter_release(&filter);
        return job_result(db, rc);
    }
    sqlite3_bind_int64(st, 1, j->since > INT64_MAX ? INT64_MAX : (sqlite3_int64)j->since);
    int64_t now = store_clock_ms(j->s);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 2);
        event e = {
            .id = (uint64_t)sqlite3_column_int64(st, 0),
            .topic = (char *)sqlite3_column_text(st, 1),
            .topic_length = (size_t)sqlite3_column_bytes(st, 1),
            .time_ms = sqlite3_column_int64(st, 3),
            .data_is_json = sqlite3_column_int(st, 4) != 0,
            .data = (char *)sqlite3_column_blob(st, 5),
            .data_length = (size_t)sqlite3_column_bytes(st, 5),
        };
        if (!e.topic || !type) continue;
        snprintf(e.type, sizeof e.type, "%s", type);
        if (!e.data) e.data = "";
        if (!filter_matches(&filter, &e)) continue;
        int step = insert_body(j->s, &e);
        if (step == SQLITE_OK) step = insert_delivery(j->s, j->key, e.id, now);
        if (step != SQLITE_OK) {
            rc = step;
            break;
        }
        j->count++;
    }
    sqlite3_finalize(st);
    filter_release(&filter);
    return job_result(db, rc == SQLITE_DONE ? SQLITE_OK : rc);
}

static int run_record(sqlite3 *db, outbox_job *j) {
    store *s = j->s;
    int64_t now = store_clock_ms(s);
    for (size_t i = 0; i < j->record_count; i++) {
        const store_attempt_record *r = &j->records[i];
        const store_attempt *a = &r->attempt;
        sqlite3_stmt *st = s->outbox_statements[STORE_O_INSERT_ATTEMPT];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)r->delivery_id);
        sqlite3_bind_int64(st, 2, a->time_ms);
        if (a->status_code > 0) sqlite3_bind_int(st, 3, a->status_code);
        sqlite3_bind_int64(st, 4, a->latency_ms);
        if (a->error) sqlite3_bind_text(st, 5, a->error, -1, SQLITE_STATIC);
        if (a->response)
            sqlite3_bind_blob(st, 6, a->response,
                              (int)(a->response_length > STORE_RESPONSE_MAX ? STORE_RESPONSE_MAX
                                                                            : a->response_length),
                              SQLITE_STATIC);
        int rc = step_done(st);
        if (rc != SQLITE_OK) return job_result(db, rc);
        st = s->outbox_statements[STORE_O_UPDATE_DELIVERY];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)r->delivery_id);
        sqlite3_bind_int(st, 2, (int)r->status);
        if (r->status == STORE_DELIVERY_FAILED) sqlite3_bind_int64(st, 3, r->next_attempt_ms);
        sqlite3_bind_int64(st, 4, now);
        rc = step_done(st);
        if (rc != SQLITE_OK) return job_result(db, rc);
    }
    return STORE_OUTBOX_OK;
}

static int job_run(sqlite3 *db, void *context) {
    outbox_job *j = context;
    switch (j->kind) {
    case JOB_CREATE:
        return run_create(db, j);
    case JOB_UPDATE:
        return run_update(db, j);
    case JOB_ROTATE:
        return run_rotate(db, j);
    case JOB_DELETE:
        return run_delete(db, j);
    case JOB_RETRY:
        return run_retry(db, j);
    case JOB_REPLAY:
        return run_replay(db, j);
    case JOB_RECORD:
        return run_record(db, j);
    }
    return -1;
}

static void job_done(void *context, int status) {
    outbox_job *j = context;
    store *s = j->s;
    if (status != STORE_OUTBOX_OK) {
        store_webhook_free(j->webhook);
        j->webhook = NULL;
    }
    /* The listener (the deliverer) learns of the change before the API answers. */
    if (status == STORE_OUTBOX_OK && s->outbox_listener) {
        switch (j->kind) {
        case JOB_CREATE:
        case JOB_UPDATE:
        case JOB_ROTATE:
        case JOB_DELETE:
            s->outbox_listener(s->outbox_listener_context, STORE_OUTBOX_ENDPOINTS_CHANGED, &j->key,
                               1);
            break;
        case JOB_RETRY:
        case JOB_REPLAY:
            if (j->count)
                s->outbox_listener(s->outbox_listener_context, STORE_OUTBOX_DELIVERIES_QUEUED,
                                   &j->key, 1);
            break;
        case JOB_RECORD:
            break;
        }
    }
    if (j->webhook_callback) j->webhook_callback(j->context, status, j->webhook);
    if (j->count_callback) j->count_callback(j->context, status, j->count);
    if (j->record_done) j->record_done(j->context, status);
    job_free(j);
}

static outbox_job *job_new(store *s, outbox_job_kind kind, const char *id) {
    if (!s || s->closing) return NULL;
    outbox_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->s = s;
    j->kind = kind;
    j->enabled = -1;
    if (id) snprintf(j->id, sizeof j->id, "%s", id);
    return j;
}

static int job_submit(outbox_job *j) {
    if (store_run(j->s, job_run, job_done, j) != 0) {
        job_free(j);
        return -1;
    }
    return 0;
}

static bool valid_id(const char *id) {
    return id && strlen(id) == STORE_WEBHOOK_ID_LENGTH && strncmp(id, "wh_", 3) == 0;
}

static bool copy_fields(outbox_job *j, const store_webhook_fields *fields) {
    j->set_types = fields->set_types;
    j->enabled = fields->enabled;
    return copy_string(&j->url, fields->url) && copy_string(&j->topics, fields->topics) &&
           copy_string(&j->types, fields->types) &&
           copy_string(&j->description, fields->description) &&
           copy_string(&j->secret, fields->secret);
}

int store_webhook_create(store *s, const store_webhook_fields *fields,
                         store_webhook_callback callback, void *context) {
    if (!fields->url || !fields->topics || !fields->secret) return -1;
    outbox_job *j = job_new(s, JOB_CREATE, NULL);
    if (!j) return -1;
    if (!copy_fields(j, fields)) {
        job_free(j);
        return -1;
    }
    if (j->enabled < 0) j->enabled = 1;
    j->webhook_callback = callback;
    j->context = context;
    return job_submit(j);
}

/* An id that cannot exist still goes through the writer, so every answer comes the same way. */
int store_webhook_update(store *s, const char *id, const store_webhook_fields *fields,
                         store_webhook_callback callback, void *context) {
    outbox_job *j = job_new(s, JOB_UPDATE, valid_id(id) ? id : "");
    if (!j) return -1;
    if (!copy_fields(j, fields)) {
        job_free(j);
        return -1;
    }
    j->webhook_callback = callback;
    j->context = context;
    return job_submit(j);
}

int store_webhook_rotate_secret(store *s, const char *id, const char *new_secret,
                                int64_t overlap_ms, store_webhook_callback callback,
                                void *context) {
    if (!new_secret) return -1;
    outbox_job *j = job_new(s, JOB_ROTATE, valid_id(id) ? id : "");
    if (!j) return -1;
    if (!copy_string(&j->secret, new_secret)) {
        job_free(j);
        return -1;
    }
    j->overlap_ms = overlap_ms < 0 ? 0 : overlap_ms;
    j->webhook_callback = callback;
    j->context = context;
    return job_submit(j);
}

int store_webhook_delete(store *s, const char *id, store_outbox_callback callback, void *context) {
    outbox_job *j = job_new(s, JOB_DELETE, valid_id(id) ? id : "");
    if (!j) return -1;
    j->count_callback = callback;
    j->context = context;
    return job_submit(j);
}

int store_webhook_retry(store *s, const char *id, uint64_t delivery_id,
                        store_outbox_callback callback, void *context) {
    outbox_job *j = job_new(s, JOB_RETRY, valid_id(id) ? id : "");
    if (!j) return -1;
    j->delivery_id = delivery_id;
    j->count_callback = callback;
    j->context = context;
    return job_submit(j);
}

int store_webhook_replay(store *s, const char *id, uint64_t since, store_outbox_callback callback,
                         void *context) {
    outbox_job *j = job_new(s, JOB_REPLAY, valid_id(id) ? id : "");
    if (!j) return -1;
    j->since = since;
    j->count_callback = callback;
    j->context = context;
    return job_submit(j);
}

int store_record_attempts(store *s, const store_attempt_record *records, size_t count,
                          void (*done)(void *context, int status), void *context) {
    outbox_job *j = job_new(s, JOB_RECORD, NULL);
    if (!j) return -1;
    j->records = records;
    j->record_count = count;
    j->record_done = done;
    j->context = context;
    return job_submit(j);
}

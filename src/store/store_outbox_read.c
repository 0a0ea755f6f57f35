/* The webhook outbox, loop side: reads on the read-only connection for the management API and
 * the deliverer. Every read is an indexed range with a limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

const char *const store_outbox_read_sql[STORE_OR_STATEMENTS] = {
    [STORE_OR_WEBHOOK_BY_ID] = STORE_WEBHOOK_COLUMNS "WHERE id = ?1",
    [STORE_OR_WEBHOOKS] = STORE_WEBHOOK_COLUMNS "ORDER BY key",
    /* deliveries_due: the endpoint's unfinished deliveries in due order. */
    [STORE_OR_DUE] = "SELECT d.id, d.attempts, d.event_id, e.topic, e.type, e.time_ms,"
                     " e.data_is_json, e.data FROM deliveries d"
                     " LEFT JOIN delivery_events e ON e.id = d.event_id"
                     " WHERE d.webhook_key = ?1 AND d.next_attempt_ms <= ?2"
                     " ORDER BY d.next_attempt_ms, d.id LIMIT ?3",
    [STORE_OR_NEXT_DUE] = "SELECT min(next_attempt_ms) FROM deliveries"
                          " WHERE webhook_key = ?1 AND next_attempt_ms > ?2",
    [STORE_OR_DELIVERIES_BY_STATUS] =
        "SELECT id, event_id, status, attempts, next_attempt_ms, created_ms FROM deliveries"
        " WHERE webhook_key = ?1 AND status = ?2 ORDER BY id DESC LIMIT ?3",
    [STORE_OR_ATTEMPTS] = "SELECT time_ms, status_code, latency_ms, error, response FROM"
                          " (SELECT rowid AS r, * FROM attempts WHERE delivery_id = ?1"
                          " ORDER BY rowid DESC LIMIT ?2) ORDER BY r",
};

static void finish(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void report(store *s, const char *what) {
    fprintf(stderr, "herald: webhook outbox read (%s) failed: %s\n", what,
            sqlite3_errmsg(s->reader));
}

/* ---- endpoints ---------------------------------------------------------------------------- */

int store_webhook_get(store *s, const char *id, store_webhook **out) {
    *out = NULL;
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_WEBHOOK_BY_ID];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW) {
        *out = store_webhook_from_row(st);
        result = *out ? 0 : -1;
    } else {
        result = rc == SQLITE_DONE ? 1 : -1;
        if (result < 0) report(s, "endpoint");
    }
    finish(st);
    return result;
}

void store_webhook_list_free(store_webhook_list *list) {
    for (size_t i = 0; i < list->count; i++)
        store_webhook_free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

int store_webhook_list_all(store *s, store_webhook_list *out) {
    out->items = NULL;
    out->count = 0;
    size_t capacity = 0;
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_WEBHOOKS];
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            store_webhook **items = realloc(out->items, grown * sizeof *items);
            if (!items) {
                result = -1;
                break;
            }
            out->items = items;
            capacity = grown;
        }
        store_webhook *w = store_webhook_from_row(st);
        if (!w) {
            result = -1;
            break;
        }
        out->items[out->count++] = w;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        report(s, "endpoints");
        result = -1;
    }
    finish(st);
    if (result != 0) store_webhook_list_free(out);
    return result;
}

/* ---- the delivery log --------------------------------------------------------------------- */

void store_delivery_list_free(store_delivery_list *list) {
    for (size_t i = 0; i < list->count; i++) {
        store_delivery *d = &list->items[i];
        for (size_t k = 0; k < d->attempts_listed; k++) {
            free(d->attempts[k].error);
            free(d->attempts[k].response);
        }
        free(d->attempts);
    }
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int load_attempts(store *s, store_delivery *d) {
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_ATTEMPTS];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)d->id);
    sqlite3_bind_int64(st, 2, STORE_ATTEMPTS_LISTED);
    size_t capacity = 0;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (d->attempts_listed == capacity) {
            size_t grown = capacity ? capacity * 2 : 4;
            store_attempt *attempts = realloc(d->attempts, grown * sizeof *attempts);
            if (!attempts) {
                result = -1;
                break;
            }
            d->attempts = attempts;
            capacity = grown;
        }
        store_attempt *a = &d->attempts[d->attempts_listed++];
        memset(a, 0, sizeof *a);
        a->time_ms = sqlite3_column_int64(st, 0);
        a->status_code = sqlite3_column_int(st, 1);
        a->latency_ms = sqlite3_column_int64(st, 2);
        const unsigned char *error = sqlite3_column_text(st, 3);
        if (error && !(a->error = strdup((const char *)error))) result = -1;
        const void *response = sqlite3_column_blob(st, 4);
        size_t length = (size_t)sqlite3_column_bytes(st, 4);
        if (response && length) {
            a->response = malloc(length + 1);
            if (a->response) {
                memcpy(a->response, response, length);
                a->response[length] = '\0';
                a->response_length = length;
            } else {
                result = -1;
            }
        }
        if (result) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) result = -1;
    finish(st);
    return result;
}

static int load_status(store *s, uint64_t key, store_delivery_status status, size_t limit,
                       store_delivery_list *out, size_t *capacity) {
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_DELIVERIES_BY_STATUS];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)key);
    sqlite3_bind_int(st, 2, (int)status);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->count == *capacity) {
            size_t grown = *capacity ? *capacity * 2 : 16;
            store_delivery *items = realloc(out->items, grown * sizeof *items);
            if (!items) {
                result = -1;
                break;
            }
            out->items = items;
            *capacity = grown;
        }
        store_delivery *d = &out->items[out->count++];
        memset(d, 0, sizeof *d);
        d->id = (uint64_t)sqlite3_column_int64(st, 0);
        d->event_id = (uint64_t)sqlite3_column_int64(st, 1);
        d->status = (store_delivery_status)sqlite3_column_int(st, 2);
        d->attempt_count = (uint32_t)sqlite3_column_int64(st, 3);
        d->next_attempt_ms =
            sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
        d->created_ms = sqlite3_column_int64(st, 5);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) result = -1;
    finish(st);
    return result;
}

static int newest_first(const void *a, const void *b) {
    const store_delivery *x = a, *y = b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

int store_delivery_list_recent(store *s, uint64_t webhook_key, const store_delivery_status *status,
                               size_t limit, store_delivery_list *out) {
    out->items = NULL;
    out->count = 0;
    if (!limit) return 0;
    if (limit > 100000) limit = 100000;
    size_t capacity = 0;
    /* One snapshot for the deliveries and their attempts. */
    sqlite3_stmt *begin = s->read_statements[STORE_READ_BEGIN];
    int result = sqlite3_step(begin) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(begin);
    /* Per status over the (webhook_key, status, id) index, then merged: the newest `limit` of
     * each status hold the newest `limit` overall, and no status is ever scanned past that. */
    for (int k = 0; result == 0 && k < STORE_DELIVERY_STATUS_COUNT; k++) {
        if (status && (int)*status != k) continue;
        result = load_status(s, webhook_key, (store_delivery_status)k, limit, out, &capacity);
    }
    if (result == 0) {
        if (out->count) qsort(out->items, out->count, sizeof *out->items, newest_first);
        if (out->count > limit) out->count = limit;
        for (size_t i = 0; result == 0 && i < out->count; i++)
            result = load_attempts(s, &out->items[i]);
    }
    sqlite3_stmt *commit = s->read_statements[STORE_READ_COMMIT];
    sqlite3_step(commit);
    sqlite3_reset(commit);
    if (result != 0) {
        report(s, "deliveries");
        store_delivery_list_free(out);
    }
    return result;
}

/* ---- the deliverer ------------------------------------------------------------------------ */

int store_deliveries_due(store *s, uint64_t webhook_key, int64_t now_ms, size_t scan_limit,
                         store_due_visit visit, void *context) {
    if (!scan_limit) return 0;
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_DUE];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)webhook_key);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, scan_limit > INT32_MAX ? INT32_MAX : (sqlite3_int64)scan_limit);
    int rc, visited = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        uint32_t attempts = (uint32_t)sqlite3_column_int64(st, 1);
        event *e = NULL;
        if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
            const char *topic = (const char *)sqlite3_column_text(st, 3);
            const char *type = (const char *)sqlite3_column_text(st, 4);
            const char *data = sqlite3_column_blob(st, 7);
            size_t data_length = (size_t)sqlite3_column_bytes(st, 7);
            if (topic && type) {
                e = event_create(topic, (size_t)sqlite3_column_bytes(st, 3), type,
                                 sqlite3_column_int(st, 6) != 0, data ? data : "", data_length);
                if (!e) break; /* out of memory: the rest stays due for the next load */
                e->id = (uint64_t)sqlite3_column_int64(st, 2);
                e->time_ms = sqlite3_column_int64(st, 5);
            }
        }
        visited++;
        if (!visit(context, id, attempts, e)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        report(s, "due deliveries");
        visited = -1;
    }
    finish(st);
    return visited;
}

int64_t store_deliveries_next_due(store *s, uint64_t webhook_key, int64_t after_ms) {
    sqlite3_stmt *st = s->outbox_read_statements[STORE_OR_NEXT_DUE];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)webhook_key);
    sqlite3_bind_int64(st, 2, after_ms);
    int64_t next = -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        next = sqlite3_column_int64(st, 0);
    finish(st);
    return next;
}

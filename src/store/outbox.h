#ifndef HERALD_STORE_OUTBOX_H
#define HERALD_STORE_OUTBOX_H
/* Owns: the webhook outbox inside the store (SPEC §7) — endpoints, deliveries, their attempts and
 * a copy of each delivered event's body — and the rules that keep it lossless:
 *
 * - A delivery row is written for every matching enabled endpoint in the same transaction as
 *   the event (the writer keeps the enabled endpoints' filters in memory), so a crash at any
 *   moment never loses a delivery.
 * - The outbox is the only schedule: a pending or failed delivery has next_attempt_ms (its due
 *   time); every other status has none. The deliverer loads due deliveries from here, so a
 *   restart, a clock jump or a missed timer never strands one.
 * - The body is copied once per event into the outbox, so history trimming never takes away an
 *   event that still has to be delivered (or retried by hand).
 * - Deleting or disabling an endpoint cancels its pending and failed deliveries; an attempt that
 *   finishes afterwards is recorded but never brings a cancelled delivery back.
 * - Finished deliveries (succeeded, dead, cancelled) are pruned with their attempts by the
 *   store's maintenance STORE_DELIVERY_RETENTION_MS after their last change.
 *
 * Threads: every function is called on the loop thread. Changes run as store_run jobs on the
 * writer thread and call back on the loop once committed; reads run on the loop's read-only
 * connection (indexed, bounded). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/event.h"

typedef struct store store;

/* "wh_" + 16 lowercase hex digits. */
#define STORE_WEBHOOK_ID_LENGTH 19
#define STORE_RESPONSE_MAX 4096                              /* response bytes kept per attempt */
#define STORE_DELIVERY_RETENTION_MS (7LL * 24 * 3600 * 1000) /* finished deliveries kept 7 days */
#define STORE_ATTEMPTS_LISTED 100 /* newest attempts shown per delivery */

/* Results of the outbox's jobs (and -1 / STORE_JOB_FAILED: the store failed). */
enum {
    STORE_OUTBOX_OK = 0,
    STORE_OUTBOX_NOT_FOUND = 1, /* no such endpoint, or no such delivery of it */
    STORE_OUTBOX_DISABLED = 2,  /* the endpoint is disabled (retry, replay) */
};

typedef enum store_delivery_status {
    STORE_DELIVERY_PENDING = 0,   /* not attempted yet (or queued again by hand) */
    STORE_DELIVERY_SUCCEEDED = 1, /* a 2xx */
    STORE_DELIVERY_FAILED = 2,    /* failed at least once and still retrying */
    STORE_DELIVERY_DEAD = 3,      /* the retry schedule is exhausted */
    STORE_DELIVERY_CANCELLED = 4, /* its endpoint was deleted or disabled */
    STORE_DELIVERY_STATUS_COUNT
} store_delivery_status;

const char *store_delivery_status_name(store_delivery_status status);
bool store_delivery_status_parse(const char *name, store_delivery_status *out);

/* An endpoint as stored. Every string is owned by the struct. */
typedef struct store_webhook {
    uint64_t key; /* internal, never reused */
    char id[STORE_WEBHOOK_ID_LENGTH + 1];
    char *url;
    char *topics;      /* minified JSON array of pattern strings */
    char *types;       /* minified JSON array of type strings; NULL: every type */
    char *description; /* "" when none */
    bool enabled;
    int64_t created_ms;
    char *secret;
    char *previous_secret; /* NULL: none; signs beside secret until previous_secret_until_ms */
    int64_t previous_secret_until_ms;
} store_webhook;

void store_webhook_free(store_webhook *w); /* NULL allowed */

/* The fields of a create (all but types and description required) or an update (NULL: keep).
 * Values are validated by the caller; topics and types are minified JSON arrays of strings. */
typedef struct store_webhook_fields {
    const char *url;
    const char *topics;
    bool set_types;    /* update: change types (to NULL: every type) */
    const char *types; /* NULL with set_types (or at create): every type */
    const char *description;
    int enabled; /* -1: keep (create: enabled) */
    const char *secret;
} store_webhook_fields;

/* status: STORE_OUTBOX_OK (webhook is the endpoint as committed, borrowed for the call),
 * STORE_OUTBOX_NOT_FOUND, or a failure (webhook NULL). */
typedef void (*store_webhook_callback)(void *context, int status, const store_webhook *webhook);
/* status as above; count: deliveries queued (replay) or cancelled (delete, disable). */
typedef void (*store_outbox_callback)(void *context, int status, uint64_t count);

/* Each returns 0, or -1 when the store is closing or memory ran out (no callback then). The
 * arguments are copied. */
int store_webhook_create(store *s, const store_webhook_fields *fields,
                         store_webhook_callback callback, void *context);
/* Disabling cancels the endpoint's pending and failed deliveries. */
int store_webhook_update(store *s, const char *id, const store_webhook_fields *fields,
                         store_webhook_callback callback, void *context);
/* The new secret signs from now on; the current one keeps signing beside it for overlap_ms. */
int store_webhook_rotate_secret(store *s, const char *id, const char *new_secret,
                                int64_t overlap_ms, store_webhook_callback callback, void *context);
/* Removes the endpoint and cancels its pending and failed deliveries. */
int store_webhook_delete(store *s, const char *id, store_outbox_callback callback, void *context);
/* Makes one delivery of the endpoint due now, whatever its status (a dead one gets one more
 * attempt). STORE_OUTBOX_DISABLED for a disabled endpoint. */
int store_webhook_retry(store *s, const char *id, uint64_t delivery_id,
                        store_outbox_callback callback, void *context);
/* Queues a new delivery, due now, for every retained event with id > since that matches the
 * endpoint's filters. STORE_OUTBOX_DISABLED for a disabled endpoint. */
int store_webhook_replay(store *s, const char *id, uint64_t since, store_outbox_callback callback,
                         void *context);

/* ---- reads (loop thread, read connection) ---------------------------------------------- */

/* 0 and *out (owned by the caller), 1 when there is no such endpoint, -1 on a database error. */
int store_webhook_get(store *s, const char *id, store_webhook **out);

typedef struct store_webhook_list {
    store_webhook **items; /* in creation order, owned */
    size_t count;
} store_webhook_list;
int store_webhook_list_all(store *s, store_webhook_list *out); /* 0 or -1 */
void store_webhook_list_free(store_webhook_list *list);

typedef struct store_attempt {
    int64_t time_ms; /* when it started */
    int status_code; /* 0: no HTTP response */
    int64_t latency_ms;
    char *error; /* NULL: none */
    char *response;
    size_t response_length; /* at most STORE_RESPONSE_MAX */
} store_attempt;

typedef struct store_delivery {
    uint64_t id;
    uint64_t event_id;
    store_delivery_status status;
    uint32_t attempt_count;  /* every attempt ever made */
    int64_t next_attempt_ms; /* -1: none (finished) */
    int64_t created_ms;
    store_attempt *attempts; /* the newest STORE_ATTEMPTS_LISTED, oldest first */
    size_t attempts_listed;
} store_delivery;

typedef struct store_delivery_list {
    store_delivery *items; /* newest first */
    size_t count;
} store_delivery_list;

/* The newest deliveries of an endpoint (key), all statuses or one, at most limit, with their
 * attempts. 0 or -1. */
int store_delivery_list_recent(store *s, uint64_t webhook_key, const store_delivery_status *status,
                               size_t limit, store_delivery_list *out);
void store_delivery_list_free(store_delivery_list *list);

/* ---- the deliverer's side -------------------------------------------------------------- */

/* Called for each due delivery, oldest due first. event is a new reference the callee takes
 * (NULL when the body is missing, which should not happen). Return false to stop. */
typedef bool (*store_due_visit)(void *context, uint64_t delivery_id, uint32_t attempts, event *e);
/* Visits up to scan_limit deliveries of the endpoint with next_attempt_ms <= now_ms. Returns the
 * number visited, or -1 on a database error. */
int store_deliveries_due(store *s, uint64_t webhook_key, int64_t now_ms, size_t scan_limit,
                         store_due_visit visit, void *context);
/* The earliest due time of the endpoint's deliveries that is later than after_ms; -1: none. */
int64_t store_deliveries_next_due(store *s, uint64_t webhook_key, int64_t after_ms);

/* The outcome of one attempt. */
typedef struct store_attempt_record {
    uint64_t delivery_id;
    /* SUCCEEDED; FAILED (due again at next_attempt_ms); DEAD; CANCELLED (the endpoint answered
     * 410). A delivery cancelled meanwhile stays cancelled unless the attempt succeeded. */
    store_delivery_status status;
    int64_t next_attempt_ms;
    store_attempt attempt; /* its strings are borrowed */
} store_attempt_record;

/* Records attempts (each: an attempts row, the delivery's attempt count, status and due time).
 * records must stay valid until done runs (status 0 or a failure). */
int store_record_attempts(store *s, const store_attempt_record *records, size_t count,
                          void (*done)(void *context, int status), void *context);

typedef enum store_outbox_change {
    STORE_OUTBOX_ENDPOINTS_CHANGED, /* endpoints were created, changed or deleted */
    STORE_OUTBOX_DELIVERIES_QUEUED, /* the endpoints got deliveries due now */
} store_outbox_change;
/* Called on the loop after the change committed (so reads see it). keys: the endpoints
 * concerned. */
typedef void (*store_outbox_listener)(void *context, store_outbox_change change,
                                      const uint64_t *keys, size_t count);
void store_set_outbox_listener(store *s, store_outbox_listener listener, void *context);

/* The store's wall clock in ms (what due times are written with). */
int64_t store_now_ms(store *s);

#endif

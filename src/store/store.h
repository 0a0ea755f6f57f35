#ifndef HERALD_STORE_H
#define HERALD_STORE_H
/* Owns: durable history in SQLite (WAL) — events, topics, the store-wide id sequence, the store
 * epoch and Idempotency-Key records — and the single writer thread that commits publishes in
 * groups (many publishes per transaction).
 *
 * Threads: every function here is called on the loop thread. The writer thread never touches
 * loop state; it hands finished batches back through a uv_async_t, and the loop then calls the
 * commit listener (in id order) followed by each publish's callback. Reads run on the loop thread
 * on a separate read-only connection and only see events whose commit has been handed back, so a
 * reader never sees an event the hub has not yet fanned out.
 *
 * Loop lifetime: while publishes (or a maintenance run) are in flight the store keeps the loop
 * alive, so uv_run(UV_RUN_DEFAULT) returns only after their callbacks ran; otherwise its handles
 * do not hold the loop open. One store per data directory: a second store_open on a directory in
 * use (by this or another process) fails. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/event.h"

typedef struct store_options {
    const char *data_directory;      /* created if missing; holds herald.db */
    size_t history_size;             /* events kept per topic (default 1000) */
    int64_t history_age_ms;          /* events older than this are trimmed (default 24h) */
    int64_t idempotency_ttl_ms;      /* Idempotency-Key records kept (default 24h) */
    int64_t maintenance_interval_ms; /* how often age trimming and key expiry run (default 60s) */
} store_options;

typedef struct store store;

/* Metadata of one topic as of the last commit handed back to the loop. */
typedef struct store_topic {
    const char *name;
    uint64_t head_id;         /* newest id ever stored in the topic */
    uint64_t trimmed_through; /* newest id that has left history (0: none has) */
} store_topic;

typedef struct store_item {
    const char *topic; /* validated by the caller */
    size_t topic_length;
    const char *type; /* validated, NUL-terminated */
    bool data_is_json;
    const char *data;
    size_t data_length;
} store_item;

typedef struct store_publish_result {
    bool ok;                   /* false: nothing stored, see error_message */
    const char *error_message; /* for a 503 "unavailable" answer */
    bool replayed;             /* the Idempotency-Key was seen: events is empty */
    event *const *events;      /* the stored events, in id order (borrowed for the callback) */
    size_t event_count;
    buffer *receipt; /* the response body (borrowed): the original one when replayed */
} store_publish_result;

typedef void (*store_publish_callback)(void *context, const store_publish_result *result);
/* Called on the loop for every committed batch, before the publish callbacks, in id order. */
typedef void (*store_commit_listener)(void *context, event *const *events, size_t count);

int store_open(uv_loop_t *loop, const store_options *options, store **out, char *error,
               size_t error_size);
/* Finishes every queued publish (their callbacks run before this returns), stops the writer
 * thread and closes the database. The store's memory is freed when its uv handles have closed:
 * run the loop afterwards (as for any uv_close). */
void store_close(store *s);

void store_set_commit_listener(store *s, store_commit_listener listener, void *context);

/* Queues items for the writer thread; they are copied, so the caller's memory may go away.
 * The callback runs on the loop once the batch containing them has committed (or failed).
 * Callbacks run in publish order; the ids of one call are consecutive and in item order.
 * batch selects the receipt shape (see event_append_receipt). With an idempotency key
 * (NULL/0 for none) a repeat within the TTL stores nothing and reports replayed with the
 * original receipt. Returns 0, or -1 when the store is closing, count is 0 or memory ran out (no
 * callback then). */
int store_publish(store *s, const store_item *items, size_t count, const char *idempotency_key,
                  size_t idempotency_key_length, bool batch, store_publish_callback callback,
                  void *context);
/* The same with the key remembered for key_ttl_ms (when longer than the store's TTL): inbound
 * webhook deduplication keeps provider ids for 72 h. */
int store_publish_keyed(store *s, const store_item *items, size_t count,
                        const char *idempotency_key, size_t idempotency_key_length,
                        int64_t key_ttl_ms, bool batch, store_publish_callback callback,
                        void *context);

/* Events of the given topics (exact names), oldest first, at most limit:
 * newest=false: those with id > after_id; newest=true: the most recent ones (after_id ignored).
 * Only ids <= store_head_id() are returned. Appends new references to out. Returns 0, or -1 on a
 * database error (out is then as it was).
 * The read also brings the topics' trimmed_through up to date with the snapshot it read, so to
 * detect a gap check store_find_topic(..)->trimmed_through AFTER store_read: then an event
 * missing from the result because it left history is always reported by trimmed_through. */
int store_read(store *s, const char *const *topics, size_t topic_count, uint64_t after_id,
               bool newest, size_t limit, event_list *out);

/* ---- jobs on the writer thread ----------------------------------------------------------
 * A general way to change the database without blocking the loop: run() is called on the writer
 * thread with the writer's connection, inside the transaction of the next group (shared with
 * publishes and other jobs, so many jobs cost one fsync), wrapped in its own SAVEPOINT. It returns
 * 0 to keep its changes or any other value to have them rolled back (the rest of the transaction
 * goes on); it must not touch loop state or start/end transactions itself. done() is then called
 * on the loop with run's value once the transaction has committed — a read on the loop sees the
 * changes by then — or with STORE_JOB_FAILED when it did not commit (disk full, I/O error; run's
 * changes are then gone even if it returned 0). Jobs run in the order they were queued (within a
 * transaction, queued jobs run before the group's publishes).
 * context belongs to the caller; the store only passes it along. Returns 0, or -1 when the store
 * is closing or memory ran out (then neither run nor done is called). store_close runs every
 * queued job and calls its done before returning. */
#define STORE_JOB_FAILED (-1000)
struct sqlite3;
typedef int (*store_job_function)(struct sqlite3 *db, void *context);
typedef void (*store_job_done)(void *context, int status);
int store_run(store *s, store_job_function run, store_job_done done, void *context);

const char *store_epoch(const store *s); /* 8 lowercase hex digits */
uint64_t store_head_id(const store *s);  /* newest id handed back to the loop (0: none yet) */
const store_topic *store_find_topic(const store *s, const char *name); /* NULL: never used */
void store_each_topic(const store *s, void (*visit)(void *context, const store_topic *topic),
                      void *context);
size_t store_topic_count(const store *s);

#endif

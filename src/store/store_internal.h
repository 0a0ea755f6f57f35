#ifndef HERALD_STORE_INTERNAL_H
#define HERALD_STORE_INTERNAL_H
/* Owns: the store's private state shared by store.c (loop side: open/close, topic table, reads,
 * completions) and store_writer.c (the writer thread: group commit and maintenance), plus a few
 * test-only hooks. Nothing outside src/store/ and its unit test includes this file.
 *
 * Hand-over between the threads: the loop queues store_request objects (events already created,
 * ids not yet assigned) under `mutex`; the writer takes all of them (up to a cap), commits them in
 * one transaction and appends one store_group per transaction to the `done` list, then wakes the
 * loop with `async`. Each request and group has exactly one owner at a time: the queue, the writer,
 * the done list, then the loop, which frees it after the callbacks. */
#include <sqlite3.h>
#include <stdatomic.h>

#include "core/text.h"
#include "store/outbox.h"
#include "store/store.h"

/* At most this many events are committed in one transaction (a request is never split; one
 * request always fits). Bounds the latency of the first publish in a very large group. */
#define STORE_GROUP_MAX_EVENTS 8192
/* Age trimming and key expiry delete at most this many rows per transaction; the rest continue in
 * the next transaction, after the publishes queued meanwhile. */
#define STORE_MAINTENANCE_CHUNK 5000
/* At most this many store_run jobs share one transaction. */
#define STORE_GROUP_MAX_JOBS 1024

/* A store_run job: queued by the loop, run by the writer inside a group's transaction, completed
 * on the loop. Owned by the queue, then the writer, then the group, then the loop (freed after
 * done ran). */
typedef struct store_job {
    struct store_job *next;
    store_job_function run;
    store_job_done done;
    void *context;
    int status; /* run's result, or STORE_JOB_FAILED when the transaction did not commit */
} store_job;

typedef struct store_request {
    struct store_request *next;
    store_publish_callback callback;
    void *context;
    bool batch;
    bool replayed;   /* set by the writer */
    buffer *receipt; /* set by the writer; owned */
    char *key;       /* NULL: none; points into this allocation */
    size_t key_length;
    int64_t key_ttl_ms; /* how long the key is remembered; 0: the store's idempotency TTL */
    size_t count;
    event *events[]; /* owned references; ids and times set by the writer */
} store_request;

/* A topic's new metadata after one transaction (0 fields: unchanged). */
typedef struct store_topic_update {
    size_t name_offset; /* into store_group.names */
    size_t name_length;
    uint64_t head_id;
    uint64_t trimmed_through;
} store_topic_update;

/* One transaction's outcome, handed from the writer to the loop. */
typedef struct store_group {
    struct store_group *next;
    store_request *requests; /* in queue order, owned */
    size_t request_count;
    bool ok;
    char error_message[320];
    event **events; /* stored events in id order; references borrowed from the requests */
    size_t event_count;
    uint64_t last_id; /* newest id after this transaction */
    store_topic_update *updates;
    size_t update_count;
    size_t update_capacity;
    text names;
    bool maintenance;          /* a maintenance transaction (no requests) */
    bool maintenance_finished; /* the last transaction of one maintenance run */
    store_job *jobs;           /* run in this transaction, in queue order, owned */
    /* Webhook endpoints (keys) that got new deliveries in this transaction, each once. */
    uint64_t *outbox_keys;
    size_t outbox_key_count;
    size_t outbox_key_capacity;
} store_group;

/* The writer's copy of one enabled endpoint's filters (see store_outbox.c). Patterns and types
 * are spans into strings. */
typedef struct store_hook_span {
    size_t offset;
    size_t length;
} store_hook_span;

typedef struct store_hook_filter {
    uint64_t key;
    uint64_t mark; /* the transaction that last queued a delivery for it */
    store_hook_span *topics;
    size_t topic_count;
    store_hook_span *types; /* NULL: every type */
    size_t type_count;
    char *strings;
} store_hook_filter;

typedef struct store_topic_entry {
    store_topic topic; /* topic.name points at name */
    size_t name_length;
    uint64_t hash;
    char name[];
} store_topic_entry;

enum {
    STORE_READ_ONE_AFTER,
    STORE_READ_ONE_NEWEST,
    STORE_READ_MANY_AFTER,
    STORE_READ_MANY_NEWEST,
    STORE_READ_TRIMMED_ONE,
    STORE_READ_TRIMMED_MANY,
    STORE_READ_BEGIN,
    STORE_READ_COMMIT,
    STORE_READ_STATEMENTS
};

enum {
    STORE_W_BEGIN,
    STORE_W_COMMIT,
    STORE_W_ROLLBACK,
    STORE_W_INSERT_EVENT,
    STORE_W_FIND_KEY,
    STORE_W_PUT_KEY,
    STORE_W_UPSERT_TOPIC,
    STORE_W_TRIM_FIND,
    STORE_W_TRIM_DELETE,
    STORE_W_SET_LAST_ID,
    STORE_W_OLDEST,
    STORE_W_DELETE_THROUGH,
    STORE_W_EXPIRE_KEYS,
    STORE_W_SAVEPOINT,
    STORE_W_RELEASE,
    STORE_W_ROLLBACK_TO,
    STORE_W_STATEMENTS
};

/* Statements of the outbox (store_outbox.c), on the writer connection. */
enum {
    STORE_O_INSERT_BODY,
    STORE_O_INSERT_DELIVERY,
    STORE_O_INSERT_ATTEMPT,
    STORE_O_UPDATE_DELIVERY,
    STORE_O_PRUNE_DELIVERIES,
    STORE_O_PRUNE_ATTEMPTS,
    STORE_O_PRUNE_BODY,
    STORE_O_STATEMENTS
};

/* Reads of the outbox, on the read connection (loop thread). */
enum {
    STORE_OR_WEBHOOK_BY_ID,
    STORE_OR_WEBHOOKS,
    STORE_OR_DUE,
    STORE_OR_NEXT_DUE,
    STORE_OR_DELIVERIES_BY_STATUS,
    STORE_OR_ATTEMPTS,
    STORE_OR_STATEMENTS
};

struct store {
    uv_loop_t *loop;
    size_t history_size;
    int64_t history_age_ms;
    int64_t idempotency_ttl_ms;
    int64_t maintenance_interval_ms;
    char epoch[9];

    /* Loop thread only. */
    sqlite3 *reader;
    sqlite3_stmt *read_statements[STORE_READ_STATEMENTS];
    text read_topics;           /* scratch: the JSON array of topic names for a many-topic read */
    store_topic_entry **topics; /* in creation order, for store_each_topic */
    size_t topic_count;
    size_t topic_capacity;
    store_topic_entry **slots; /* open addressing, power-of-two capacity */
    size_t slot_capacity;
    uint64_t head_id;
    store_commit_listener listener;
    void *listener_context;
    store_outbox_listener outbox_listener;
    void *outbox_listener_context;
    sqlite3_stmt *outbox_read_statements[STORE_OR_STATEMENTS];
    uv_async_t async;
    uv_timer_t timer;
    int open_handles;
    size_t outstanding; /* requests and maintenance runs not yet completed; async is ref'ed
                           while > 0 so uv_run keeps going until their callbacks ran */
    bool maintenance_in_flight;
    bool closing;      /* store_publish refuses new work */
    bool close_called; /* store_close has started */
    bool closed;       /* the databases are closed, the handles closing */
    int lock_fd;       /* flock'ed herald.lock: one server per data directory */

    /* Shared, under mutex. */
    uv_mutex_t mutex;
    uv_cond_t cond;
    store_request *queue_head;
    store_request *queue_tail;
    store_job *job_head;
    store_job *job_tail;
    bool maintenance_requested;
    bool stopping;
    bool writer_waiting;
    bool writer_paused; /* test hook: the writer takes nothing while set */
    store_group *done_head;
    store_group *done_tail;

    /* Writer thread only (after store_open). */
    uv_thread_t thread;
    bool thread_started;
    sqlite3 *writer;
    sqlite3_stmt *write_statements[STORE_W_STATEMENTS];
    sqlite3_stmt *outbox_statements[STORE_O_STATEMENTS];
    uint64_t last_id;
    int64_t last_time_ms;
    store_hook_filter *hook_filters; /* enabled endpoints, in key order */
    size_t hook_filter_count;
    uint64_t hook_mark;      /* counts transactions, for store_hook_filter.mark */
    bool hook_filters_stale; /* a job changed the endpoints: reload before using the filters */

    /* Test hooks and counters (atomics: read from the loop, written by the writer). */
    atomic_llong clock_offset_ms;
    atomic_int page_limit;      /* > 0: apply PRAGMA max_page_count before the next group */
    atomic_ullong transactions; /* publish transactions */
    atomic_ullong grouped_requests;
    atomic_ullong max_group_requests;
};

/* store_writer.c */
int store_writer_prepare(store *s, char *error, size_t error_size);
void store_writer_finalize(store *s);
void store_writer_main(void *arg);
int64_t store_clock_ms(store *s);
void store_group_free(store_group *g);

/* store_outbox.c (writer thread unless noted) */
/* Creates the outbox tables (inside load_meta's transaction). */
int store_outbox_schema(sqlite3 *db, char *error, size_t error_size);
int store_outbox_prepare(store *s, char *error, size_t error_size); /* both connections */
void store_outbox_finalize(store *s);
void store_outbox_free_filters(store *s);
/* Loads the enabled endpoints' filters from the writer connection: SQLITE_OK or an error. */
int store_outbox_load_filters(store *s);
/* Queues a delivery for every enabled endpoint matching each of the group's events, in the
 * group's transaction: SQLITE_OK or an error code. */
int store_outbox_enqueue(store *s, store_group *g, int64_t now_ms);
/* One chunk of pruning finished deliveries older than the retention: SQLITE_OK or an error;
 * *more when another chunk is due. */
int store_outbox_maintain(store *s, int64_t now_ms, bool *more);
/* The columns store_webhook_from_row reads, in its order. */
#define STORE_WEBHOOK_COLUMNS                                                                      \
    "SELECT key, id, url, topics, types, description, enabled, created_ms, secret,"                \
    " previous_secret, previous_secret_until_ms FROM webhooks "
/* A store_webhook from a row of STORE_WEBHOOK_COLUMNS; NULL when out of memory. */
store_webhook *store_webhook_from_row(sqlite3_stmt *st);
extern const char *const store_outbox_read_sql[STORE_OR_STATEMENTS]; /* store_outbox_read.c */
/* Loop thread: tells the outbox listener about a committed group's new deliveries. */
void store_outbox_notify(store *s, const store_group *g);

/* Test-only hooks. */
typedef struct store_statistics {
    uint64_t transactions;       /* publish transactions committed or rolled back */
    uint64_t grouped_requests;   /* publish requests those transactions carried */
    uint64_t max_group_requests; /* the largest group */
} store_statistics;
void store_test_statistics(store *s, store_statistics *out);
/* Adds offset_ms to the writer's wall clock (for age trimming and key expiry tests). */
void store_test_set_clock_offset(store *s, int64_t offset_ms);
/* Queues a maintenance run now, as the timer would. */
void store_test_run_maintenance(store *s);
/* Holds the writer before it takes the next group (true) or lets it go on (false), so a test can
 * queue several publishes that are then certain to share one transaction. */
void store_test_pause_writer(store *s, bool pause);
/* Caps the database at its current size before the next group (simulates a full disk);
 * 0 lifts the cap. */
void store_test_limit_pages(store *s, bool limit);

#endif

#ifndef HERALD_HOOKS_DELIVERER_H
#define HERALD_HOOKS_DELIVERER_H
/* Owns: delivering webhooks out (SPEC §7) — libcurl multi driven by the libuv loop (a uv_poll_t
 * per socket, a uv_timer_t for curl's timeouts: no thread per request, nothing blocking), the
 * Standard Webhooks headers of each attempt, the verdict on each answer (success, retry when, dead,
 * endpoint gone), the global and per-endpoint concurrency caps, and the orderly stop.
 *
 * The store's outbox is the schedule (store/outbox.h): the deliverer loads due deliveries per
 * endpoint in bounded batches from the read connection — at start, when deliveries are queued or
 * come due, and every few seconds as a safety net — and writes each attempt's outcome back through
 * the writer thread. A delivery is "claimed" in memory from the moment it is loaded until its
 * outcome has committed, so it is never attempted twice at once; nothing else lives only in
 * memory, so a crash or restart loses no delivery (at least once).
 *
 * Isolation: an endpoint never has more than endpoint_concurrency attempts in flight, and
 * endpoints take turns for the concurrency slots of the global cap. An attempt that has waited
 * DELIVERER_SLOW_ATTEMPT_MS for its answer gives its global slot back (it keeps its endpoint's),
 * so slow or hanging endpoints only ever occupy their own slots, however many of them there are;
 * the attempts in flight are then at most concurrency plus the slow ones, each endpoint bounded
 * by its own cap.
 *
 * Threads: loop thread only. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/text.h"
#include "hooks/schedule.h"
#include "hooks/signature.h"
#include "store/outbox.h"

/* The longest a stop waits for attempts in flight; the rest are abandoned (still due in the
 * outbox, so they are attempted again after a restart). */
#define DELIVERER_STOP_GRACE_MS 10000
/* An attempt waiting this long for its answer no longer counts toward the global cap (only
 * toward its endpoint's), so hanging endpoints cannot fill the global cap. */
#define DELIVERER_SLOW_ATTEMPT_MS 1000
/* How often every endpoint's due deliveries are looked for even without a reason. */
#define DELIVERER_RESCAN_MS 5000
/* A response body is read up to this size (the first STORE_RESPONSE_MAX bytes are kept). */
#define DELIVERER_RESPONSE_READ_MAX (1024 * 1024)
/* How long a rotated-out secret keeps signing. */
#define DELIVERER_SECRET_OVERLAP_MS (24LL * 3600 * 1000)

typedef struct deliverer deliverer;
typedef struct store store;

typedef struct deliverer_options {
    int64_t timeout_ms;          /* per attempt (default 15 s) */
    const char *retry_schedule;  /* "5s,5m,…"; NULL: RETRY_SCHEDULE_DEFAULT */
    size_t concurrency;          /* attempts in flight at once (default 64) */
    size_t endpoint_concurrency; /* per endpoint (default 4) */
    bool allow_private;          /* deliver to loopback/private addresses too */
} deliverer_options;

/* Returns 0, or -1 with one sentence in error (a bad retry schedule, curl failing). */
int deliverer_create(uv_loop_t *loop, store *st, const deliverer_options *options, deliverer **out,
                     char *error, size_t error_size);
/* Loads the endpoints and begins delivering what is due. */
void deliverer_start(deliverer *d);
/* The server's shutdown hook (context: the deliverer). Starts nothing new, lets the attempts in
 * flight finish for up to DELIVERER_STOP_GRACE_MS (driving curl itself: the loop cannot run
 * inside a hook), abandons the rest, queues the outcomes to the store (which commits them in
 * store_close) and releases curl. The deliverer frees itself once its handles have closed and
 * the store has answered; it must not be used afterwards. */
void deliverer_stop(void *context);

/* ---- pure parts (delivery_request.c), exposed for tests ---------------------------------- */

#define DELIVERY_WEBHOOK_ID_MAX 48

/* "evt_<epoch>_<event id>": the same on every attempt, so receivers can deduplicate. */
size_t delivery_webhook_id(char out[DELIVERY_WEBHOOK_ID_MAX], const char *epoch, uint64_t event_id);

/* The Standard Webhooks headers of one attempt, as complete header lines for curl
 * ("webhook-id: …"). previous: a rotated-out key still in its overlap, or NULL. */
typedef struct delivery_headers {
    char id_line[DELIVERY_WEBHOOK_ID_MAX + 16];
    char timestamp_line[48];
    text signature_line;
} delivery_headers;

bool delivery_headers_build(delivery_headers *h, const char *epoch, uint64_t event_id,
                            int64_t unix_seconds, const webhook_key *current,
                            const webhook_key *previous, const void *body, size_t body_length);
void delivery_headers_free(delivery_headers *h);

/* What one attempt's answer means. */
typedef struct delivery_verdict {
    store_delivery_status status; /* SUCCEEDED, FAILED (retry after delay_ms), DEAD, CANCELLED */
    int64_t delay_ms;             /* FAILED only */
    bool disable_endpoint;        /* 410 Gone */
} delivery_verdict;

/* status_code: the HTTP status received (0: none — connection failure, timeout). retry_after:
 * the Retry-After header of the answer (NULL: none), honoured on 429 and 503. attempts: how many
 * attempts the delivery has had, this one included. */
delivery_verdict delivery_judge(long status_code, const char *retry_after, int64_t unix_seconds,
                                uint32_t attempts, const retry_schedule *schedule,
                                retry_random random, void *random_context);

/* One sentence for an attempt that got an HTTP answer other than 2xx (NULL for 2xx). */
const char *delivery_status_problem(long status_code, char *out, size_t size);

#endif

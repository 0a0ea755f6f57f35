#ifndef HERALD_HOOKS_SCHEDULE_H
#define HERALD_HOOKS_SCHEDULE_H
/* Owns: when a failed webhook delivery is tried again (SPEC §7) — the retry schedule of
 * --webhook-retry-schedule, its ±20 % jitter, and the Retry-After header of a 429/503. Pure: the
 * clock and the random source are parameters. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RETRY_SCHEDULE_MAX_STEPS 32
#define RETRY_SCHEDULE_MAX_STEP_MS (7LL * 24 * 3600 * 1000) /* one step is at most 7 days */
#define RETRY_SCHEDULE_DEFAULT "5s,5m,30m,2h,5h,10h,10h"
#define RETRY_JITTER_PERCENT 20
#define RETRY_AFTER_MAX_MS (3600LL * 1000)

typedef struct retry_schedule {
    int64_t delays_ms[RETRY_SCHEDULE_MAX_STEPS]; /* delay after the 1st, 2nd, … failed attempt */
    size_t count;
} retry_schedule;

/* Parses "500ms,2s,1m,…": comma-separated durations in herald's notation (ms, s, m, h, d; a bare
 * number is seconds — parse_duration_ms), spaces around an item allowed. Each item 1 ms–7 days,
 * 1–RETRY_SCHEDULE_MAX_STEPS items. false with *problem (a static sentence) on an empty item, a
 * bad number or unit, a zero or too long step, too many steps; out is then unchanged. */
bool retry_schedule_parse(const char *text, retry_schedule *out, const char **problem);
/* RETRY_SCHEDULE_DEFAULT: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
void retry_schedule_default(retry_schedule *out);

/* A source of uniformly distributed 64-bit values. */
typedef uint64_t (*retry_random)(void *context);
/* RAND_bytes; when it fails, the middle of the range (no jitter). */
uint64_t retry_random_default(void *context);

/* The delay before the next attempt after failed_attempts failures (1 = the first attempt failed):
 * step failed_attempts of the schedule, jittered uniformly within ±20 % (integer ms, both ends
 * included). -1 when the schedule is exhausted (or failed_attempts is 0): the delivery is dead.
 * random NULL means retry_random_default. */
int64_t retry_schedule_delay_ms(const retry_schedule *schedule, size_t failed_attempts,
                                retry_random random, void *context);

/* The delay a Retry-After value asks for, in ms: delta-seconds ("120") or an HTTP-date
 * (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850 and asctime forms
 * RFC 9110 requires recipients to accept) relative to now; a date in the past is 0. Capped at
 * RETRY_AFTER_MAX_MS. -1 — ignore the header — when value is NULL or malformed. */
int64_t retry_after_parse_ms(const char *value, int64_t now_unix_seconds);

/* The delay to wait: the jittered schedule step, but no sooner than a Retry-After delay
 * (retry_after_ms < 0: none). -1 when the schedule is exhausted. */
int64_t retry_next_delay_ms(const retry_schedule *schedule, size_t failed_attempts,
                            int64_t retry_after_ms, retry_random random, void *context);

#endif

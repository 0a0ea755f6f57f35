#include "hooks/schedule.h"

#include <string.h>

#include <openssl/rand.h>

#include "core/config.h"

bool retry_schedule_parse(const char *text, retry_schedule *out, const char **problem) {
    static const char *const empty_item =
        "The retry schedule needs comma-separated durations such as 500ms,2s,1m (no empty items).";
    static const char *const bad_item =
        "Each retry delay must be a duration such as 500ms, 2s, 1m or 2h (a bare number is "
        "seconds).";
    static const char *const bad_range = "Each retry delay must be between 1ms and 7 days.";
    static const char *const too_many = "The retry schedule may have at most 32 delays.";
    retry_schedule parsed = {.count = 0};
    if (!text) text = "";
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (a == b) {
            if (problem) *problem = empty_item;
            return false;
        }
        char item[32];
        if ((size_t)(b - a) >= sizeof item) {
            if (problem) *problem = bad_item;
            return false;
        }
        memcpy(item, a, (size_t)(b - a));
        item[b - a] = '\0';
        int64_t ms = parse_duration_ms(item);
        if (ms < 0) {
            if (problem) *problem = bad_item;
            return false;
        }
        if (ms == 0 || ms > RETRY_SCHEDULE_MAX_STEP_MS) {
            if (problem) *problem = bad_range;
            return false;
        }
        if (parsed.count == RETRY_SCHEDULE_MAX_STEPS) {
            if (problem) *problem = too_many;
            return false;
        }
        parsed.delays_ms[parsed.count++] = ms;
        if (!*end) break;
        p = end + 1;
    }
    *out = parsed;
    return true;
}

void retry_schedule_default(retry_schedule *out) {
    static const int64_t defaults[] = {5000,     300000,   1800000, 7200000,
                                       18000000, 36000000, 36000000};
    memset(out, 0, sizeof *out);
    memcpy(out->delays_ms, defaults, sizeof defaults);
    out->count = sizeof defaults / sizeof defaults[0];
}

uint64_t retry_random_default(void *context) {
    (void)context;
    uint64_t value;
    if (RAND_bytes((unsigned char *)&value, sizeof value) != 1) return UINT64_C(1) << 63;
    return value;
}

int64_t retry_schedule_delay_ms(const retry_schedule *schedule, size_t failed_attempts,
                                retry_random random, void *context) {
    if (failed_attempts == 0 || failed_attempts > schedule->count) return -1;
    int64_t base = schedule->delays_ms[failed_attempts - 1];
    int64_t jitter = base * RETRY_JITTER_PERCENT / 100;
    uint64_t r = (random ? random : retry_random_default)(context);
    /* u in [0, 1) from the top 53 bits; floor(u * (2j + 1)) lies in [0, 2j]. */
    double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
    int64_t offset = (int64_t)(u * (double)(2 * jitter + 1));
    if (offset > 2 * jitter) offset = 2 * jitter;
    return base - jitter + offset;
}

/* ---- Retry-After ---- */

static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const long_day_names[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                             "Friday", "Saturday", "Sunday"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int64_t civil_year_of(int64_t unix_seconds) {
    int64_t z = (unix_seconds >= 0 ? unix_seconds : unix_seconds - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    return (int64_t)yoe + era * 400 + (m <= 2);
}

static bool is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m) {
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Reads exactly n digits at *p. */
static bool digits(const char **p, size_t n, unsigned *value) {
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *value = v;
    return true;
}

static bool literal(const char **p, const char *expected) {
    size_t n = strlen(expected);
    if (strncmp(*p, expected, n) != 0) return false;
    *p += n;
    return true;
}

static bool one_of(const char **p, const char *const *names, size_t count, unsigned *index) {
    for (size_t i = 0; i < count; i++)
        if (literal(p, names[i])) {
            *index = (unsigned)i;
            return true;
        }
    return false;
}

static bool month(const char **p, unsigned *m) {
    if (!one_of(p, month_names, 12, m)) return false;
    (*m)++;
    return true;
}

/* "HH:MM:SS" */
static bool time_of_day(const char **p, unsigned *h, unsigned *mi, unsigned *s) {
    return digits(p, 2, h) && literal(p, ":") && digits(p, 2, mi) && literal(p, ":") &&
           digits(p, 2, s) && *h < 24 && *mi < 60 && *s <= 60;
}

/* An HTTP-date (RFC 9110 §5.6.7) as unix seconds. */
static bool parse_http_date(const char *value, int64_t now, int64_t *out) {
    const char *p = value;
    unsigned weekday, d = 0, m = 0, y = 0, h = 0, mi = 0, s = 0;
    int64_t year;
    if (one_of(&p, long_day_names, 7, &weekday) && literal(&p, ", ")) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        if (!(digits(&p, 2, &d) && literal(&p, "-") && month(&p, &m) && literal(&p, "-") &&
              digits(&p, 2, &y) && literal(&p, " ") && time_of_day(&p, &h, &mi, &s) &&
              literal(&p, " GMT") && *p == '\0'))
            return false;
        /* A two-digit year more than 50 years in the future is the most recent past one. */
        int64_t current = civil_year_of(now);
        year = current - current % 100 + y;
        if (year > current + 50) year -= 100;
    } else {
        p = value;
        if (!one_of(&p, day_names, 7, &weekday)) return false;
        if (literal(&p, ", ")) {
            /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
            if (!(digits(&p, 2, &d) && literal(&p, " ") && month(&p, &m) && literal(&p, " ") &&
                  digits(&p, 4, &y) && literal(&p, " ") && time_of_day(&p, &h, &mi, &s) &&
                  literal(&p, " GMT") && *p == '\0'))
                return false;
        } else {
            /* asctime: "Sun Nov  6 08:49:37 1994" */
            if (!(literal(&p, " ") && month(&p, &m) && literal(&p, " "))) return false;
            if (*p == ' ') {
                p++;
                if (!digits(&p, 1, &d)) return false;
            } else if (!digits(&p, 2, &d)) {
                return false;
            }
            if (!(literal(&p, " ") && time_of_day(&p, &h, &mi, &s) && literal(&p, " ") &&
                  digits(&p, 4, &y) && *p == '\0'))
                return false;
        }
        year = y;
    }
    if (d < 1 || d > days_in_month(year, m)) return false;
    *out = days_from_civil(year, m, d) * 86400 + h * 3600 + mi * 60 + s;
    return true;
}

int64_t retry_after_parse_ms(const char *value, int64_t now_unix_seconds) {
    if (!value || !*value) return -1;
    if (value[0] >= '0' && value[0] <= '9') {
        /* delta-seconds: digits only; a huge value is valid and simply capped. */
        int64_t seconds = 0;
        for (const char *p = value; *p; p++) {
            if (*p < '0' || *p > '9') return -1;
            if (seconds <= RETRY_AFTER_MAX_MS / 1000) seconds = seconds * 10 + (*p - '0');
        }
        int64_t ms = seconds > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : seconds * 1000;
        return ms;
    }
    int64_t when;
    if (!parse_http_date(value, now_unix_seconds, &when)) return -1;
    if (when <= now_unix_seconds) return 0;
    int64_t seconds = when - now_unix_seconds;
    return seconds > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : seconds * 1000;
}

int64_t retry_next_delay_ms(const retry_schedule *schedule, size_t failed_attempts,
                            int64_t retry_after_ms, retry_random random, void *context) {
    int64_t delay = retry_schedule_delay_ms(schedule, failed_attempts, random, context);
    if (delay < 0) return -1;
    return retry_after_ms > delay ? retry_after_ms : delay;
}

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "hooks/schedule.h"

static void assert_schedule(const char *text, const int64_t *expected, size_t count) {
    retry_schedule s;
    const char *problem = NULL;
    if (!retry_schedule_parse(text, &s, &problem)) fail_msg("refused \"%s\": %s", text, problem);
    assert_int_equal(s.count, count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(s.delays_ms[i], expected[i]);
}

static void test_parse(void **state) {
    (void)state;
    static const int64_t a[] = {500, 2000, 60000, 7200000};
    assert_schedule("500ms,2s,1m,2h", a, 4);
    static const int64_t b[] = {5000};
    assert_schedule("5", b, 1);
    static const int64_t c[] = {1, 30000, 86400000};
    assert_schedule(" 1ms , 30 ,1d", c, 3);

    retry_schedule def, parsed;
    retry_schedule_default(&def);
    assert_true(retry_schedule_parse(RETRY_SCHEDULE_DEFAULT, &parsed, NULL));
    assert_int_equal(def.count, 7);
    assert_int_equal(parsed.count, 7);
    assert_memory_equal(def.delays_ms, parsed.delays_ms, sizeof(int64_t) * 7);
    static const int64_t d[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};
    assert_memory_equal(def.delays_ms, d, sizeof d);

    /* 32 steps fit, 33 do not. */
    char many[200] = "1";
    for (int i = 1; i < 32; i++)
        strcat(many, ",1");
    assert_true(retry_schedule_parse(many, &parsed, NULL));
    assert_int_equal(parsed.count, 32);
    strcat(many, ",1");
    const char *problem = NULL;
    assert_false(retry_schedule_parse(many, &parsed, &problem));
    assert_non_null(problem);
}

static void test_parse_refusals(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        ",",
        "5s,",
        ",5s",
        "5s,,5m",
        "5s, ,5m",
        "5x",
        "5 s",
        "s",
        "ms",
        "-5s",
        "+5s",
        "1.5s",
        "5S",
        "0",
        "0ms",
        "8d",
        "1e3",
        "5s;5m",
        "5s 5m",
        "0x10",
        "10000000000000000000s",
        "99999999999999999999999999999999ms",
    };
    retry_schedule s;
    retry_schedule_default(&s);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *problem = NULL;
        if (retry_schedule_parse(bad[i], &s, &problem)) fail_msg("accepted \"%s\"", bad[i]);
        if (!problem) fail_msg("no problem sentence for \"%s\"", bad[i]);
    }
    /* A refused schedule leaves the old one in place. */
    assert_int_equal(s.count, 7);
    assert_false(retry_schedule_parse(NULL, &s, NULL));
    assert_true(retry_schedule_parse("7d", &s, NULL));
}

/* A deterministic source (splitmix64) and the two extremes. */
static uint64_t splitmix(void *context) {
    uint64_t *x = context;
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t lowest(void *context) {
    (void)context;
    return 0;
}
static uint64_t highest(void *context) {
    (void)context;
    return UINT64_MAX;
}

static void test_jitter(void **state) {
    (void)state;
    retry_schedule s;
    retry_schedule_default(&s);
    uint64_t seed = 42;
    for (size_t attempt = 1; attempt <= s.count; attempt++) {
        int64_t base = s.delays_ms[attempt - 1];
        int64_t low = base * 8 / 10, high = base * 12 / 10;
        int64_t min = INT64_MAX, max = 0;
        double sum = 0;
        for (int i = 0; i < 1000; i++) {
            int64_t d = retry_schedule_delay_ms(&s, attempt, splitmix, &seed);
            if (d < low || d > high)
                fail_msg("attempt %zu: %lld outside [%lld, %lld]", attempt, (long long)d,
                         (long long)low, (long long)high);
            if (d < min) min = d;
            if (d > max) max = d;
            sum += (double)d;
        }
        /* It really jitters: spread over most of the range, centred on the step. */
        assert_true(max - min > (high - low) * 8 / 10);
        double mean = sum / 1000;
        assert_true(mean > (double)base * 0.97 && mean < (double)base * 1.03);
        assert_int_equal(retry_schedule_delay_ms(&s, attempt, lowest, NULL), low);
        assert_int_equal(retry_schedule_delay_ms(&s, attempt, highest, NULL), high);
    }
    /* The default source also stays in bounds. */
    for (int i = 0; i < 1000; i++) {
        int64_t d = retry_schedule_delay_ms(&s, 1, NULL, NULL);
        assert_true(d >= 4000 && d <= 6000);
    }
    /* Exhausted: dead. */
    assert_int_equal(retry_schedule_delay_ms(&s, 8, lowest, NULL), -1);
    assert_int_equal(retry_schedule_delay_ms(&s, 0, lowest, NULL), -1);
    /* Tiny steps: 1 ms cannot jitter; 500 ms within 400..600. */
    assert_true(retry_schedule_parse("1ms,500ms", &s, NULL));
    assert_int_equal(retry_schedule_delay_ms(&s, 1, highest, NULL), 1);
    assert_int_equal(retry_schedule_delay_ms(&s, 2, lowest, NULL), 400);
    assert_int_equal(retry_schedule_delay_ms(&s, 2, highest, NULL), 600);
}

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */

static void test_retry_after(void **state) {
    (void)state;
    assert_int_equal(retry_after_parse_ms("0", NOW), 0);
    assert_int_equal(retry_after_parse_ms("120", NOW), 120000);
    assert_int_equal(retry_after_parse_ms("0120", NOW), 120000);
    assert_int_equal(retry_after_parse_ms("3600", NOW), 3600000);
    assert_int_equal(retry_after_parse_ms("3601", NOW), 3600000);
    assert_int_equal(retry_after_parse_ms("99999999999999999999999", NOW), 3600000);

    /* The three HTTP-date forms of RFC 9110, 90 s after NOW. */
    assert_int_equal(retry_after_parse_ms("Tue, 14 Nov 2023 22:14:50 GMT", NOW), 90000);
    assert_int_equal(retry_after_parse_ms("Tuesday, 14-Nov-23 22:14:50 GMT", NOW), 90000);
    assert_int_equal(retry_after_parse_ms("Tue Nov 14 22:14:50 2023", NOW), 90000);
    assert_int_equal(retry_after_parse_ms("Wed Nov  1 00:00:00 2023", NOW - 13 * 86400), 0);
    assert_int_equal(retry_after_parse_ms("Wed Nov  1 00:00:00 2023", 1698796800 - 5), 5000);
    /* Past dates mean "now"; far ones are capped. */
    assert_int_equal(retry_after_parse_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOW), 0);
    assert_int_equal(retry_after_parse_ms("Sunday, 06-Nov-94 08:49:37 GMT", NOW), 0);
    assert_int_equal(retry_after_parse_ms("Fri, 31 Dec 9999 23:59:59 GMT", NOW), 3600000);
    assert_int_equal(retry_after_parse_ms("Wed, 15 Nov 2023 22:13:20 GMT", NOW), 3600000);
    /* Leap day and a leap second. */
    assert_int_equal(retry_after_parse_ms("Thu, 29 Feb 2024 00:00:10 GMT", 1709164800), 10000);
    assert_int_equal(retry_after_parse_ms("Thu, 29 Feb 2024 00:00:60 GMT", 1709164800), 60000);
    /* A two-digit year more than 50 years ahead is the previous century. */
    assert_int_equal(retry_after_parse_ms("Friday, 31-Dec-99 23:59:59 GMT", NOW), 0);
    assert_int_equal(retry_after_parse_ms("Monday, 14-Nov-73 22:13:20 GMT", NOW), 3600000);

    static const char *const ignored[] = {
        NULL,
        "",
        " 120",
        "120 ",
        "-1",
        "+5",
        "1.5",
        "1e3",
        "soon",
        "Tue, 14 Nov 2023 22:14:50 UTC",
        "Tue, 14 Nov 2023 22:14:50",
        "Tue, 14 Nov 2023 22:14:50 GMT ",
        "Tue, 14 Nov 23 22:14:50 GMT",
        "Tue, 4 Nov 2023 22:14:50 GMT",
        "Tue, 14 nov 2023 22:14:50 GMT",
        "Tue, 31 Nov 2023 22:14:50 GMT",
        "Tue, 29 Feb 2023 22:14:50 GMT",
        "Tue, 00 Nov 2023 22:14:50 GMT",
        "Tue, 14 Nov 2023 24:00:00 GMT",
        "Tue, 14 Nov 2023 22:60:00 GMT",
        "Tue, 14 Nov 2023 22:14:61 GMT",
        "Tue,14 Nov 2023 22:14:50 GMT",
        "Tues, 14 Nov 2023 22:14:50 GMT",
        "Tuesday, 14 Nov 2023 22:14:50 GMT",
        "Tue, 14-Nov-23 22:14:50 GMT",
        "Tue Nov 14 22:14:50 23",
        "Tue Nov 1 22:14:50 2023",
        "2023-11-14T22:14:50Z",
    };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (retry_after_parse_ms(ignored[i], NOW) != -1)
            fail_msg("Retry-After \"%s\" not ignored", ignored[i] ? ignored[i] : "(null)");
}

static void test_next_delay(void **state) {
    (void)state;
    retry_schedule s;
    retry_schedule_default(&s);
    assert_int_equal(retry_next_delay_ms(&s, 1, -1, lowest, NULL), 4000);
    assert_int_equal(retry_next_delay_ms(&s, 1, 60000, lowest, NULL), 60000);
    assert_int_equal(retry_next_delay_ms(&s, 2, 60000, lowest, NULL), 240000);
    assert_int_equal(retry_next_delay_ms(&s, 8, 60000, lowest, NULL), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),      cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_jitter),     cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_next_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

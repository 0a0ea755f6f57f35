/* Unit tests for the pure parts of a webhook delivery (src/hooks/delivery_request.c): the
 * Standard Webhooks headers, checked with herald's independent verifier, and the verdict on each
 * kind of answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the above first */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hooks/deliverer.h"
#include "hooks/verify.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define OTHER "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static webhook_key key_of(const char *secret) {
    webhook_key key;
    assert_int_equal(webhook_secret_parse(secret, strlen(secret), &key), WEBHOOK_SECRET_OK);
    return key;
}

static const char *value_of(const char *line, const char *name) {
    size_t n = strlen(name);
    assert_memory_equal(line, name, n);
    assert_memory_equal(line + n, ": ", 2);
    return line + n + 2;
}

static void test_webhook_id(void **state) {
    (void)state;
    char id[DELIVERY_WEBHOOK_ID_MAX];
    assert_int_equal(delivery_webhook_id(id, "0a1b2c3d", 42), strlen("evt_0a1b2c3d_42"));
    assert_string_equal(id, "evt_0a1b2c3d_42");
    delivery_webhook_id(id, "0a1b2c3d", UINT64_MAX);
    assert_string_equal(id, "evt_0a1b2c3d_18446744073709551615");
}

static void test_headers_verify(void **state) {
    (void)state;
    const char body[] =
        "{\"id\":\"7\",\"topic\":\"a\",\"type\":\"message\",\"time\":\"x\",\"data\":1}";
    webhook_key current = key_of(SECRET);
    delivery_headers h;
    assert_true(
        delivery_headers_build(&h, "deadbeef", 7, 1796319236, &current, NULL, body, strlen(body)));
    const char *id = value_of(h.id_line, "webhook-id");
    const char *timestamp = value_of(h.timestamp_line, "webhook-timestamp");
    const char *signature = value_of(h.signature_line.data, "webhook-signature");
    assert_string_equal(id, "evt_deadbeef_7");
    assert_string_equal(timestamp, "1796319236");
    assert_int_equal(strlen(signature), WEBHOOK_SIGNATURE_LENGTH);
    assert_memory_equal(signature, "v1,", 3);
    assert_int_equal(
        hook_verify_standard(SECRET, id, timestamp, signature, body, strlen(body), 1796319236, 300),
        HOOK_VERDICT_OK);
    assert_int_equal(
        hook_verify_standard(OTHER, id, timestamp, signature, body, strlen(body), 1796319236, 300),
        HOOK_VERDICT_INVALID_SIGNATURE);
    /* The body, the id and the timestamp are all signed. */
    assert_int_equal(hook_verify_standard(SECRET, id, timestamp, signature, body, strlen(body) - 1,
                                          1796319236, 300),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_standard(SECRET, "evt_deadbeef_8", timestamp, signature, body,
                                          strlen(body), 1796319236, 300),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_standard(SECRET, id, "1796319237", signature, body, strlen(body),
                                          1796319236, 300),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    delivery_headers_free(&h);
}

static void test_headers_during_rotation(void **state) {
    (void)state;
    const char body[] = "{}";
    webhook_key current = key_of(OTHER), previous = key_of(SECRET);
    delivery_headers h;
    assert_true(
        delivery_headers_build(&h, "00000000", 1, 1700000000, &current, &previous, body, 2));
    const char *id = value_of(h.id_line, "webhook-id");
    const char *timestamp = value_of(h.timestamp_line, "webhook-timestamp");
    const char *signature = value_of(h.signature_line.data, "webhook-signature");
    /* "v1,<new> v1,<old>": each secret verifies alone. */
    assert_int_equal(strlen(signature), 2 * WEBHOOK_SIGNATURE_LENGTH + 1);
    assert_int_equal(signature[WEBHOOK_SIGNATURE_LENGTH], ' ');
    const char *secrets[] = {SECRET, OTHER};
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(
            hook_verify_standard(secrets[i], id, timestamp, signature, body, 2, 1700000000, 300),
            HOOK_VERDICT_OK);
    char first[WEBHOOK_SIGNATURE_LENGTH + 1];
    memcpy(first, signature, WEBHOOK_SIGNATURE_LENGTH);
    first[WEBHOOK_SIGNATURE_LENGTH] = '\0';
    assert_int_equal(hook_verify_standard(OTHER, id, timestamp, first, body, 2, 1700000000, 300),
                     HOOK_VERDICT_OK);
    assert_int_equal(hook_verify_standard(SECRET, id, timestamp, first, body, 2, 1700000000, 300),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    delivery_headers_free(&h);
}

/* A random source at one end of the range, to pin the jitter. */
static uint64_t lowest(void *context) {
    (void)context;
    return 0;
}

static uint64_t highest(void *context) {
    (void)context;
    return UINT64_MAX;
}

static void test_verdicts(void **state) {
    (void)state;
    retry_schedule schedule;
    const char *problem = NULL;
    assert_true(retry_schedule_parse("1s,10s", &schedule, &problem));
    int64_t now = 1700000000;

    for (long code = 200; code <= 299; code += 33) {
        delivery_verdict v = delivery_judge(code, NULL, now, 1, &schedule, lowest, NULL);
        assert_int_equal(v.status, STORE_DELIVERY_SUCCEEDED);
        assert_false(v.disable_endpoint);
    }
    delivery_verdict gone = delivery_judge(410, NULL, now, 1, &schedule, lowest, NULL);
    assert_int_equal(gone.status, STORE_DELIVERY_CANCELLED);
    assert_true(gone.disable_endpoint);

    /* Failures (no answer, redirects, 4xx, 5xx) follow the schedule with ±20 % jitter. */
    long failures[] = {0, 301, 302, 307, 400, 404, 429, 500, 503};
    for (size_t i = 0; i < sizeof failures / sizeof failures[0]; i++) {
        delivery_verdict low = delivery_judge(failures[i], NULL, now, 1, &schedule, lowest, NULL);
        delivery_verdict high = delivery_judge(failures[i], NULL, now, 2, &schedule, highest, NULL);
        assert_int_equal(low.status, STORE_DELIVERY_FAILED);
        assert_int_equal(low.delay_ms, 800);
        assert_int_equal(high.status, STORE_DELIVERY_FAILED);
        assert_int_equal(high.delay_ms, 12000);
        /* After the last step: dead. */
        assert_int_equal(delivery_judge(failures[i], NULL, now, 3, &schedule, lowest, NULL).status,
                         STORE_DELIVERY_DEAD);
    }

    /* Retry-After on 429 and 503 only: no sooner than it says, capped at an hour. */
    assert_int_equal(delivery_judge(429, "120", now, 1, &schedule, lowest, NULL).delay_ms, 120000);
    assert_int_equal(delivery_judge(503, "120", now, 1, &schedule, lowest, NULL).delay_ms, 120000);
    assert_int_equal(delivery_judge(503, "999999", now, 1, &schedule, lowest, NULL).delay_ms,
                     3600 * 1000);
    assert_int_equal(delivery_judge(500, "120", now, 1, &schedule, lowest, NULL).delay_ms, 800);
    assert_int_equal(delivery_judge(429, "soon", now, 1, &schedule, lowest, NULL).delay_ms, 800);
    assert_int_equal(delivery_judge(429, "0", now, 1, &schedule, lowest, NULL).delay_ms, 800);
    /* An HTTP-date 30 s ahead. */
    assert_int_equal(
        delivery_judge(503, "Tue, 14 Nov 2023 22:13:50 GMT", 1700000000, 1, &schedule, lowest, NULL)
            .delay_ms,
        30000);
    /* The schedule still ends: Retry-After does not keep a delivery alive. */
    assert_int_equal(delivery_judge(429, "1", now, 3, &schedule, lowest, NULL).status,
                     STORE_DELIVERY_DEAD);
}

static void test_status_problems(void **state) {
    (void)state;
    char out[160];
    assert_null(delivery_status_problem(200, out, sizeof out));
    assert_null(delivery_status_problem(204, out, sizeof out));
    assert_non_null(strstr(delivery_status_problem(302, out, sizeof out), "redirect"));
    assert_non_null(strstr(delivery_status_problem(410, out, sizeof out), "disabled"));
    assert_non_null(strstr(delivery_status_problem(500, out, sizeof out), "500"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook_id),
        cmocka_unit_test(test_headers_verify),
        cmocka_unit_test(test_headers_during_rotation),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_status_problems),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

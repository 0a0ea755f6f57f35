/* Durations, sizes, flags and HERALD_* variables of `herald serve`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"

static void durations(void **state) {
    assert_int_equal(parse_duration_ms("500ms"), 500);
    assert_int_equal(parse_duration_ms("15s"), 15000);
    assert_int_equal(parse_duration_ms("15"), 15000);
    assert_int_equal(parse_duration_ms("5m"), 300000);
    assert_int_equal(parse_duration_ms("2h"), 7200000);
    assert_int_equal(parse_duration_ms(""), -1);
    assert_int_equal(parse_duration_ms("-1s"), -1);
    assert_int_equal(parse_duration_ms("1x"), -1);
    assert_int_equal(parse_duration_ms("s"), -1);
    assert_int_equal(parse_duration_ms("99999999999999999999s"), -1);
}

static void sizes(void **state) {
    assert_int_equal(parse_size_bytes("65536"), 65536);
    assert_int_equal(parse_size_bytes("64KiB"), 65536);
    assert_int_equal(parse_size_bytes("1MiB"), 1048576);
    assert_int_equal(parse_size_bytes("1MB"), 1000000);
    assert_int_equal(parse_size_bytes("1 MiB"), -1);
    assert_int_equal(parse_size_bytes("MiB"), -1);
}

static void flags_win_over_variables(void **state) {
    setenv("HERALD_HISTORY_SIZE", "5", 1);
    setenv("HERALD_SSE_HEARTBEAT", "2s", 1);
    server_config config;
    server_config_defaults(&config);
    char *argv[] = {"serve", "--history-size", "7", "--listen=127.0.0.1:0", "--insecure"};
    char error[256];
    assert_int_equal(server_config_parse(&config, 5, argv, error, sizeof error), 0);
    assert_int_equal(config.history_size, 7);
    assert_int_equal(config.sse_heartbeat_ms, 2000);
    assert_int_equal(config.listen_port, 0);
    assert_string_equal(config.listen_host, "127.0.0.1");
    assert_true(config.insecure);
    unsetenv("HERALD_HISTORY_SIZE");
    unsetenv("HERALD_SSE_HEARTBEAT");
}

static void bad_flags_are_explained(void **state) {
    server_config config;
    server_config_defaults(&config);
    char error[256];
    char *unknown[] = {"serve", "--nope"};
    assert_int_equal(server_config_parse(&config, 2, unknown, error, sizeof error), -1);
    assert_non_null(strstr(error, "--nope"));
    char *bad[] = {"serve", "--history-age", "soon"};
    assert_int_equal(server_config_parse(&config, 3, bad, error, sizeof error), -1);
    assert_non_null(strstr(error, "duration"));
    char *missing[] = {"serve", "--data"};
    assert_int_equal(server_config_parse(&config, 2, missing, error, sizeof error), -1);
    char *listen[] = {"serve", "--listen", "nowhere"};
    assert_int_equal(server_config_parse(&config, 3, listen, error, sizeof error), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations),
        cmocka_unit_test(sizes),
        cmocka_unit_test(flags_win_over_variables),
        cmocka_unit_test(bad_flags_are_explained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The opening handshake: the accept value, every refusal with its status, the subprotocol, the
 * 101 head, and permessage-deflate offer parsing and the response herald chooses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws/ws.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static ws_handshake_request good_request(void) {
    ws_handshake_request r = {
        .method = "GET",
        .http_version_minor = 1,
        .upgrade = "websocket",
        .connection = "Upgrade",
        .key = RFC_KEY,
        .version = "13",
    };
    return r;
}

static const ws_handshake_options HERALD = {.subprotocol = "herald.v1", .allow_deflate = true};

static void expect_status(const ws_handshake_request *r, int status) {
    ws_handshake_result result;
    bool ok = ws_handshake_check(r, &HERALD, &result);
    assert_int_equal(result.status, status);
    assert_int_equal(ok, status == 101);
    if (status != 101) {
        assert_string_equal(result.error_code, "bad_request");
        assert_non_null(result.error_message);
        if (status == 426)
            assert_string_equal(result.error_headers, "Sec-WebSocket-Version: 13\r\n");
        else
            assert_null(result.error_headers);
    }
}

static void accept_value_of_the_rfc_example(void **state) {
    char accept[WS_ACCEPT_LENGTH + 1];
    ws_handshake_accept(RFC_KEY, strlen(RFC_KEY), accept);
    assert_string_equal(accept, RFC_ACCEPT);

    ws_handshake_request r = good_request();
    ws_handshake_result result;
    assert_true(ws_handshake_check(&r, &HERALD, &result));
    assert_int_equal(result.status, 101);
    assert_string_equal(result.accept, RFC_ACCEPT);
    assert_null(result.subprotocol);
    assert_false(result.deflate.enabled);

    text head;
    text_init(&head);
    ws_handshake_response_head(&result, "Herald-Epoch: 0badcafe\r\n", &head);
    assert_string_equal(text_cstring(&head), "HTTP/1.1 101 Switching Protocols\r\n"
                                             "Upgrade: websocket\r\n"
                                             "Connection: Upgrade\r\n"
                                             "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                                             "Herald-Epoch: 0badcafe\r\n"
                                             "\r\n");
    text_free(&head);
}

static void bad_keys_are_400(void **state) {
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ",    /* no padding */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "AAAAAAAAAAAAAAAAAAAA",      /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAA=",  /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAA",  /* 18 bytes */
        "dGhlIHNhbXBsZSBub25jZR==",  /* non-zero padding bits */
        "dGhlIHNhbXBsZSBub25jZ!==",  /* not base64 */
        "dGhlIHNhbXBs ZSBub25jZQ=",  /* a space inside */
        "dGhlIHNhbXBsZSBub25jZQ==x",
        "=GhlIHNhbXBsZSBub25jZQ==",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_handshake_request r = good_request();
        r.key = bad[i];
        expect_status(&r, 400);
    }
    ws_handshake_request r = good_request();
    r.key = NULL;
    expect_status(&r, 400);
    r.key = "AAAAAAAAAAAAAAAAAAAAAA=="; /* 16 zero bytes */
    expect_status(&r, 101);
    r.key = "/////////////////////w=="; /* 16 bytes of 0xFF */
    expect_status(&r, 101);
}

static void method_version_upgrade_and_connection(void **state) {
    ws_handshake_request r = good_request();
    r.method = "POST";
    expect_status(&r, 400);
    r.method = "get";
    expect_status(&r, 400);
    r.method = NULL;
    expect_status(&r, 400);

    r = good_request();
    r.http_version_minor = 0;
    expect_status(&r, 400);

    static const struct {
        const char *upgrade, *connection;
        int status;
    } cases[] = {
        {"websocket", "Upgrade", 101},
        {"WebSocket", "upgrade", 101},
        {"h2c, websocket", "keep-alive, Upgrade", 101},
        {"websocket ,h2c", "Upgrade ,keep-alive", 101},
        {" websocket\t", "UPGRADE", 101},
        {NULL, "Upgrade", 400},
        {"", "Upgrade", 400},
        {"h2c", "Upgrade", 400},
        {"websocket2", "Upgrade", 400},
        {"web socket", "Upgrade", 400},
        {"websocket", NULL, 400},
        {"websocket", "keep-alive", 400},
        {"websocket", "upgrade-ish", 400},
        {"websocket", "close", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = good_request();
        r.upgrade = cases[i].upgrade;
        r.connection = cases[i].connection;
        expect_status(&r, cases[i].status);
    }
}

static void other_versions_get_426(void **state) {
    static const char *versions[] = {"8", "12", "14", "13, 8", "013", "", NULL};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        ws_handshake_request r = good_request();
        r.version = versions[i];
        expect_status(&r, 426);
    }
}

static void subprotocol_is_chosen_when_offered(void **state) {
    static const struct {
        const char *offered;
        bool chosen;
    } cases[] = {
        {"herald.v1", true},
        {"chat, herald.v1", true},
        {" herald.v1 ,chat", true},
        {"chat", false},
        {"Herald.v1", false},
        {"herald.v1x", false},
        {"herald", false},
        {"", false},
        {NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ws_handshake_request r = good_request();
        r.protocol = cases[i].offered;
        ws_handshake_result result;
        assert_true(ws_handshake_check(&r, &HERALD, &result));
        if (cases[i].chosen)
            assert_string_equal(result.subprotocol, "herald.v1");
        else
            assert_null(result.subprotocol);
    }
    /* Raw mode offers none. */
    ws_handshake_request r = good_request();
    r.protocol = "herald.v1";
    ws_handshake_options none = {0};
    ws_handshake_result result;
    assert_true(ws_handshake_check(&r, &none, &result));
    assert_null(result.subprotocol);
    assert_true(ws_handshake_check(&r, NULL, &result));
    assert_null(result.subprotocol);
}

/* ---- permessage-deflate ---- */

#define HERALD_RESPONSE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* NULL response: no offer is acceptable. */
static void expect_negotiation(const char *offers, const char *response) {
    ws_deflate_params params;
    bool ok = ws_deflate_negotiate(offers, strlen(offers), &params);
    if (!response) {
        assert_false(ok);
        assert_false(params.enabled);
        return;
    }
    assert_true(ok);
    assert_true(params.enabled);
    assert_true(params.server_no_context_takeover);
    assert_true(params.client_no_context_takeover);
    text t;
    text_init(&t);
    ws_deflate_params_format(&params, &t);
    assert_string_equal(text_cstring(&t), response);
    text_free(&t);
}

static void deflate_offers_accepted(void **state) {
    expect_negotiation("permessage-deflate", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; client_max_window_bits",
                       HERALD_RESPONSE); /* browsers */
    expect_negotiation("PerMessage-Deflate", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate;client_max_window_bits=10", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; client_max_window_bits=\"10\"", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; client_max_window_bits=8", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                       HERALD_RESPONSE);
    expect_negotiation("permessage-deflate ; server_no_context_takeover ;client_max_window_bits",
                       HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; server_max_window_bits=10",
                       HERALD_RESPONSE "; server_max_window_bits=10");
    expect_negotiation("permessage-deflate; server_max_window_bits=\"9\"",
                       HERALD_RESPONSE "; server_max_window_bits=9");
    expect_negotiation("permessage-deflate; server_max_window_bits=15",
                       HERALD_RESPONSE "; server_max_window_bits=15");

    ws_deflate_params params;
    const char *both = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=11";
    assert_true(ws_deflate_negotiate(both, strlen(both), &params));
    assert_int_equal(params.server_max_window_bits, 12);
    assert_int_equal(params.client_max_window_bits, 11);
    assert_true(ws_deflate_negotiate("permessage-deflate", 18, &params));
    assert_int_equal(params.server_max_window_bits, 15);
    assert_false(params.server_max_window_bits_offered);
}

static void deflate_offers_declined(void **state) {
    static const char *declined[] = {
        "",
        ",, ,",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",  /* zlib cannot make 8-bit windows */
        "permessage-deflate; server_max_window_bits",    /* needs a value */
        "permessage-deflate; server_max_window_bits=16", /* out of range */
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=010", /* no leading zero */
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; unknown",
        "permessage-deflate; unknown=1",
        "permessage-deflate;",
        "permessage-deflate;;",
        "permessage-deflate; =10",
        "permessage-deflate x",
        "permessage-deflate; client_max_window_bits=\"10",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate/1",
        "\"permessage-deflate\"",
    };
    for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++)
        expect_negotiation(declined[i], NULL);
}

static void deflate_falls_back_to_a_later_offer(void **state) {
    expect_negotiation("permessage-deflate; server_max_window_bits=8, permessage-deflate",
                       HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
                       HERALD_RESPONSE "; server_max_window_bits=11");
    expect_negotiation("x-webkit-deflate-frame; no_context_takeover, permessage-deflate; "
                       "client_max_window_bits",
                       HERALD_RESPONSE);
    expect_negotiation("foo; bar=\"a,b;c\", permessage-deflate", HERALD_RESPONSE);
    expect_negotiation("foo; bar=\"a\\\",permessage-deflate; unknown\", permessage-deflate",
                       HERALD_RESPONSE);
    expect_negotiation("permessage-deflate; =10, permessage-deflate", HERALD_RESPONSE);
    expect_negotiation("permessage-deflate x, permessage-deflate", HERALD_RESPONSE);
    expect_negotiation(",permessage-deflate,", HERALD_RESPONSE);
    /* The first acceptable offer wins. */
    expect_negotiation("permessage-deflate; server_max_window_bits=10, permessage-deflate",
                       HERALD_RESPONSE "; server_max_window_bits=10");
}

static void handshake_negotiates_deflate(void **state) {
    ws_handshake_request r = good_request();
    r.protocol = "herald.v1";
    r.extensions = "permessage-deflate; client_max_window_bits";
    ws_handshake_result result;
    assert_true(ws_handshake_check(&r, &HERALD, &result));
    assert_true(result.deflate.enabled);
    text head;
    text_init(&head);
    ws_handshake_response_head(&result, NULL, &head);
    assert_string_equal(text_cstring(&head), "HTTP/1.1 101 Switching Protocols\r\n"
                                             "Upgrade: websocket\r\n"
                                             "Connection: Upgrade\r\n"
                                             "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                                             "Sec-WebSocket-Protocol: herald.v1\r\n"
                                             "Sec-WebSocket-Extensions: " HERALD_RESPONSE "\r\n"
                                             "\r\n");
    text_free(&head);

    /* Not allowed by the options: no extension, still 101. */
    ws_handshake_options plain = {.subprotocol = "herald.v1"};
    assert_true(ws_handshake_check(&r, &plain, &result));
    assert_false(result.deflate.enabled);
    /* Declined offer: still 101. */
    r.extensions = "permessage-deflate; server_max_window_bits=8";
    assert_true(ws_handshake_check(&r, &HERALD, &result));
    assert_false(result.deflate.enabled);
}

static void huge_header_values_are_handled(void **state) {
    size_t n = 1 << 20;
    char *list = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        list[i] = i % 8 == 7 ? ',' : 'k';
    list[n] = '\0';
    ws_handshake_request r = good_request();
    r.connection = list;
    r.upgrade = list;
    r.protocol = list;
    r.extensions = list;
    expect_status(&r, 400);
    memcpy(list + n - 9, ",upgrade,", 9);
    r.upgrade = "websocket";
    expect_status(&r, 101);
    /* A long run of offers, the acceptable one last. */
    for (size_t i = 0; i < n; i++)
        list[i] = "permessage-deflate; x, "[i % 23];
    memcpy(list + n - 20, ", permessage-deflate", 20);
    ws_deflate_params params;
    assert_true(ws_deflate_negotiate(list, n, &params));
    /* An unterminated quote running to the end. */
    list[0] = '"';
    memset(list + 1, 'q', n - 1);
    assert_false(ws_deflate_negotiate(list, n, &params));
    free(list);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_value_of_the_rfc_example),
        cmocka_unit_test(bad_keys_are_400),
        cmocka_unit_test(method_version_upgrade_and_connection),
        cmocka_unit_test(other_versions_get_426),
        cmocka_unit_test(subprotocol_is_chosen_when_offered),
        cmocka_unit_test(deflate_offers_accepted),
        cmocka_unit_test(deflate_offers_declined),
        cmocka_unit_test(deflate_falls_back_to_a_later_offer),
        cmocka_unit_test(handshake_negotiates_deflate),
        cmocka_unit_test(huge_header_values_are_handled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

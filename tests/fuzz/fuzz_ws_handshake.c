/* libFuzzer harness for the WebSocket handshake and the permessage-deflate offer parser: any
 * header values are handled, an accepted handshake always has a well-formed answer, and
 * herald's own Sec-WebSocket-Extensions answer, read back as an offer, gives the same parameters.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws.h"

static void check(bool condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_ws_handshake: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    /* Up to eight NUL-separated fields: upgrade, connection, key, version, protocol, extensions,
     * method. */
    char *copy = malloc(size + 1);
    check(copy != NULL, "malloc");
    memcpy(copy, bytes, size);
    copy[size] = '\0';
    const char *fields[8] = {0};
    size_t count = 0;
    char *p = copy;
    while (count < 8 && p <= copy + size) {
        fields[count++] = p;
        p += strlen(p) + 1;
    }

    /* The offer parser on the raw bytes (embedded NULs included). */
    ws_deflate_params params;
    if (ws_deflate_negotiate((const char *)bytes, size, &params)) {
        check(params.enabled && params.server_no_context_takeover &&
                  params.client_no_context_takeover,
              "an accepted offer has herald's settings");
        check(params.server_max_window_bits >= 9 && params.server_max_window_bits <= 15,
              "server window in range");
        check(params.client_max_window_bits >= 8 && params.client_max_window_bits <= 15,
              "client window in range");
        text answer;
        text_init(&answer);
        ws_deflate_params_format(&params, &answer);
        ws_deflate_params again;
        check(ws_deflate_negotiate(answer.data, answer.length, &again), "the answer is an offer");
        check(again.server_max_window_bits == params.server_max_window_bits,
              "the answer keeps the window");
        text_free(&answer);
    } else {
        check(!params.enabled, "a declined negotiation is zeroed");
    }

    ws_handshake_request request = {
        .method = count > 6 && fields[6][0] ? fields[6] : "GET",
        .http_version_minor = size > 0 ? bytes[0] % 3 : 1,
        .upgrade = count > 0 ? fields[0] : NULL,
        .connection = count > 1 ? fields[1] : NULL,
        .key = count > 2 ? fields[2] : NULL,
        .version = count > 3 ? fields[3] : NULL,
        .protocol = count > 4 ? fields[4] : NULL,
        .extensions = count > 5 ? fields[5] : NULL,
    };
    ws_handshake_options options = {.subprotocol = "herald.v1", .allow_deflate = true};
    ws_handshake_result result;
    bool ok = ws_handshake_check(&request, &options, &result);
    if (ok) {
        check(result.status == 101, "accepted is 101");
        check(strlen(result.accept) == WS_ACCEPT_LENGTH, "accept value length");
        check(strlen(request.key) == 24, "accepted keys are 24 characters");
        text head;
        text_init(&head);
        ws_handshake_response_head(&result, NULL, &head);
        const char *h = text_cstring(&head);
        check(h && strncmp(h, "HTTP/1.1 101 ", 13) == 0, "101 status line");
        check(head.length >= 4 && memcmp(h + head.length - 4, "\r\n\r\n", 4) == 0, "head ends");
        text_free(&head);
    } else {
        check(result.status == 400 || result.status == 426, "refusals are 400 or 426");
        check(result.error_message != NULL && result.error_code != NULL, "refusals explain");
    }
    free(copy);
    return 0;
}

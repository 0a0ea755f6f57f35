#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/encoding.h"
#include "hooks/signature.h"

/* The Standard Webhooks published test vector (checked independently with node:crypto). */
#define VECTOR_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VECTOR_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VECTOR_TIMESTAMP 1614265330
#define VECTOR_BODY "{\"test\": 2432232314}"
#define VECTOR_SIGNATURE "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* base64("this is the old secret!!"); its signature from `openssl dgst -sha256 -hmac`. */
#define OLD_SECRET "whsec_dGhpcyBpcyB0aGUgb2xkIHNlY3JldCEh"
#define OLD_SIGNATURE "v1,ByARiHDQQYRPKnKpbGgTxTXBobRQ1Sa9a9SpJSmL6NQ="

static webhook_key parse_ok(const char *secret) {
    webhook_key key;
    memset(&key, 0, sizeof key);
    assert_int_equal(webhook_secret_parse(secret, strlen(secret), &key), WEBHOOK_SECRET_OK);
    return key;
}

static void test_base64_round_trip(void **state) {
    (void)state;
    unsigned char bytes[64];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof bytes; n++) {
        char encoded[BASE64_LENGTH(64) + 1];
        base64_encode(bytes, n, encoded);
        assert_int_equal(strlen(encoded), BASE64_LENGTH(n));
        text t;
        text_init(&t);
        base64_append(&t, bytes, n);
        assert_int_equal(t.length, strlen(encoded));
        assert_memory_equal(t.data ? t.data : "", encoded, t.length);
        text_free(&t);
        unsigned char decoded[64];
        size_t length = 99;
        assert_true(base64_decode(encoded, strlen(encoded), decoded, sizeof decoded, &length));
        assert_int_equal(length, n);
        if (n) assert_memory_equal(decoded, bytes, n);
        if (n) assert_false(base64_decode(encoded, strlen(encoded), decoded, n - 1, &length));
    }
    char known[16];
    base64_encode("foob", 4, known);
    assert_string_equal(known, "Zm9vYg==");
}

static void test_base64_strict(void **state) {
    (void)state;
    static const char *const bad[] = {
        "Zm9vYg=",                             /* length not a multiple of 4 */
        "Zm9vYg",                              /* unpadded */
        "Zm9vYh==",                            /* non-zero unused bits */
        "Zm9vYmF=",                            /* non-zero unused bits (one '=') */
        "Zm9v\nYg==", "Zm9v Yg==", "Zm==Zm9v", /* '=' inside */
        "====",       "A===",      "Zm9vYg-_", /* URL-safe alphabet */
        "Zm9vY*==",
    };
    unsigned char out[16];
    size_t length;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (base64_decode(bad[i], strlen(bad[i]), out, sizeof out, &length))
            fail_msg("decoded non-canonical base64 \"%s\"", bad[i]);
    assert_true(base64_decode("", 0, out, sizeof out, &length));
    assert_int_equal(length, 0);
}

static void test_hex(void **state) {
    (void)state;
    text t;
    text_init(&t);
    hex_append(&t, "\x00\x9f\xff", 3);
    assert_string_equal(text_cstring(&t), "009fff");
    text_free(&t);
    unsigned char out[3];
    assert_true(hex_decode_exact("009FfF", 6, out, 3));
    assert_memory_equal(out, "\x00\x9f\xff", 3);
    assert_false(hex_decode_exact("009fff", 6, out, 2)); /* wrong length */
    assert_false(hex_decode_exact("009ff", 5, out, 3));  /* odd */
    assert_false(hex_decode_exact("009ffg", 6, out, 3)); /* bad char */
    assert_false(hex_decode_exact("0x9fff", 6, out, 3)); /* prefix */
    assert_false(hex_decode_exact("00 fff", 6, out, 3)); /* space */
}

static void test_secret_parse(void **state) {
    (void)state;
    webhook_key with = parse_ok(VECTOR_SECRET);
    webhook_key without = parse_ok("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_int_equal(with.length, 24);
    assert_int_equal(without.length, 24);
    assert_memory_equal(with.bytes, without.bytes, 24);

    webhook_key key;
    assert_int_equal(webhook_secret_parse("", 0, &key), WEBHOOK_SECRET_EMPTY);
    assert_int_equal(webhook_secret_parse("whsec_", 6, &key), WEBHOOK_SECRET_EMPTY);
    assert_int_equal(webhook_secret_parse("whsec_not base64", 16, &key), WEBHOOK_SECRET_NOT_BASE64);
    assert_int_equal(webhook_secret_parse("whsec_MfKQ", 10, &key), WEBHOOK_SECRET_OK);
    assert_int_equal(key.length, 3);
    /* 129 bytes of key is too long even for a source; 128 is the limit. */
    char long_secret[300];
    unsigned char zeros[129] = {0};
    base64_encode(zeros, 128, long_secret);
    assert_int_equal(webhook_secret_parse(long_secret, strlen(long_secret), &key),
                     WEBHOOK_SECRET_OK);
    assert_int_equal(key.length, 128);
    base64_encode(zeros, 129, long_secret);
    assert_int_equal(webhook_secret_parse(long_secret, strlen(long_secret), &key),
                     WEBHOOK_SECRET_TOO_LONG);

    /* Endpoint secrets: prefix required, 24..64 bytes. */
    assert_int_equal(webhook_secret_parse_for_endpoint(VECTOR_SECRET, strlen(VECTOR_SECRET), &key),
                     WEBHOOK_SECRET_OK);
    assert_int_equal(
        webhook_secret_parse_for_endpoint("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32, &key),
        WEBHOOK_SECRET_MISSING_PREFIX);
    assert_int_equal(webhook_secret_parse_for_endpoint("whsec_MfKQ", 10, &key),
                     WEBHOOK_SECRET_TOO_SHORT);
    char endpoint_secret[300] = "whsec_";
    base64_encode(zeros, 64, endpoint_secret + 6);
    assert_int_equal(
        webhook_secret_parse_for_endpoint(endpoint_secret, strlen(endpoint_secret), NULL),
        WEBHOOK_SECRET_OK);
    base64_encode(zeros, 65, endpoint_secret + 6);
    assert_int_equal(
        webhook_secret_parse_for_endpoint(endpoint_secret, strlen(endpoint_secret), NULL),
        WEBHOOK_SECRET_TOO_LONG);
    for (int s = WEBHOOK_SECRET_OK; s <= WEBHOOK_SECRET_TOO_LONG; s++)
        assert_non_null(webhook_secret_status_message((webhook_secret_status)s));
}

static void test_secret_generate(void **state) {
    (void)state;
    char a[WEBHOOK_GENERATED_SECRET_LENGTH + 1], b[WEBHOOK_GENERATED_SECRET_LENGTH + 1];
    assert_true(webhook_secret_generate(a));
    assert_true(webhook_secret_generate(b));
    assert_int_equal(strlen(a), 38);
    assert_memory_equal(a, "whsec_", 6);
    assert_string_not_equal(a, b);
    webhook_key key;
    assert_int_equal(webhook_secret_parse_for_endpoint(a, strlen(a), &key), WEBHOOK_SECRET_OK);
    assert_int_equal(key.length, 24);
}

static void test_standard_vector(void **state) {
    (void)state;
    webhook_key key = parse_ok(VECTOR_SECRET);
    text header;
    text_init(&header);
    assert_true(webhook_signature_append(&header, &key, NULL, VECTOR_ID, strlen(VECTOR_ID),
                                         VECTOR_TIMESTAMP, VECTOR_BODY, strlen(VECTOR_BODY)));
    assert_string_equal(text_cstring(&header), VECTOR_SIGNATURE);

    /* During rotation: the current signature, a space, the rotated-out one. */
    webhook_key old = parse_ok(OLD_SECRET);
    text_clear(&header);
    assert_true(webhook_signature_append(&header, &key, &old, VECTOR_ID, strlen(VECTOR_ID),
                                         VECTOR_TIMESTAMP, VECTOR_BODY, strlen(VECTOR_BODY)));
    assert_string_equal(text_cstring(&header), VECTOR_SIGNATURE " " OLD_SIGNATURE);
    text_free(&header);

    /* An event body and id in herald's shape (expected from `openssl dgst -sha256 -mac HMAC`). */
    text_init(&header);
    assert_true(
        webhook_signature_append(&header, &key, NULL, "evt_1a2b3c4d_42", 15, 1700000000, "{}", 2));
    assert_string_equal(text_cstring(&header), "v1,rHtCDCgiMJZ+wXLQBABaTeC160Od/oXRpd3481ueQe8=");
    assert_int_equal(header.length, WEBHOOK_SIGNATURE_LENGTH);
    text_free(&header);
}

static void test_timestamp_format(void **state) {
    (void)state;
    char out[24];
    assert_int_equal(webhook_timestamp_format(1614265330, out), 10);
    assert_string_equal(out, "1614265330");
    assert_int_equal(webhook_timestamp_format(0, out), 1);
    assert_string_equal(out, "0");
}

static void test_hmac_empty_key_and_parts(void **state) {
    (void)state;
    /* HMAC-SHA256 with an empty key over an empty message (RFC 4231 style, from openssl). */
    unsigned char mac[WEBHOOK_HMAC_BYTES];
    assert_true(webhook_hmac_sha256("", 0, NULL, 0, NULL, 0, NULL, 0, mac));
    text hex;
    text_init(&hex);
    hex_append(&hex, mac, sizeof mac);
    assert_string_equal(text_cstring(&hex),
                        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    /* Parts are concatenated: ("ab","c","") == ("a","","bc"). */
    unsigned char one[WEBHOOK_HMAC_BYTES], two[WEBHOOK_HMAC_BYTES];
    assert_true(webhook_hmac_sha256("k", 1, "ab", 2, "c", 1, "", 0, one));
    assert_true(webhook_hmac_sha256("k", 1, "a", 1, "", 0, "bc", 2, two));
    assert_memory_equal(one, two, sizeof one);
    text_free(&hex);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_secret_parse),
        cmocka_unit_test(test_secret_generate),
        cmocka_unit_test(test_standard_vector),
        cmocka_unit_test(test_timestamp_format),
        cmocka_unit_test(test_hmac_empty_key_and_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

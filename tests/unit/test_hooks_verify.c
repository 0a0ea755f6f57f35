#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/encoding.h"
#include "hooks/signature.h"
#include "hooks/verify.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS "1614265330"
#define NOW 1614265330
#define BODY "{\"test\": 2432232314}"
#define SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
#define OTHER_SIG "v1,ByARiHDQQYRPKnKpbGgTxTXBobRQ1Sa9a9SpJSmL6NQ="
#define TOL 300

/* Stripe: `printf '%s' '1614265330.<body>' | openssl dgst -sha256 -hmac 'whsec_MfKQ…'`. */
#define STRIPE_BODY "{\"id\":\"evt_1\",\"type\":\"charge.succeeded\"}"
#define STRIPE_HEX "916d3251244d96df1c479ab838af0dc67682b1e1239151e80c59ace69735dae4"
/* The same HMAC keyed with the base64-decoded secret — the wrong key for Stripe. */
#define STRIPE_DECODED_KEY_HEX "30caeb6d5df47ac3a8f0a33b3fb7fac22b0976fd6256afed81f9621698441a22"
#define ZERO_HEX "0000000000000000000000000000000000000000000000000000000000000000"

/* GitHub's documented example (checked with openssl dgst -sha256 -hmac). */
#define GITHUB_SECRET "It's a Secret to Everybody"
#define GITHUB_BODY "Hello, World!"
#define GITHUB_HEX "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static hook_verdict standard(const char *secret, const char *id, const char *ts, const char *sig,
                             const char *body, int64_t now) {
    return hook_verify_standard(secret, id, ts, sig, body, body ? strlen(body) : 0, now, TOL);
}

/* A correct v1 signature for an arbitrary timestamp text (so a timestamp refusal is not a
 * signature refusal in disguise). */
static void sign_standard(const char *timestamp, char *out) {
    webhook_key key;
    assert_int_equal(webhook_secret_parse(SECRET, strlen(SECRET), &key), WEBHOOK_SECRET_OK);
    unsigned char mac[WEBHOOK_HMAC_BYTES];
    assert_true(webhook_standard_hmac(&key, ID, strlen(ID), timestamp, strlen(timestamp), BODY,
                                      strlen(BODY), mac));
    memcpy(out, "v1,", 3);
    base64_encode(mac, sizeof mac, out + 3);
}

static void sign_stripe(const char *timestamp, char *out) {
    unsigned char mac[WEBHOOK_HMAC_BYTES];
    assert_true(webhook_hmac_sha256(SECRET, strlen(SECRET), timestamp, strlen(timestamp), ".", 1,
                                    STRIPE_BODY, strlen(STRIPE_BODY), mac));
    text hex;
    text_init(&hex);
    hex_append(&hex, mac, sizeof mac);
    sprintf(out, "t=%s,v1=%s", timestamp, text_cstring(&hex));
    text_free(&hex);
}

static void test_standard_accepts(void **state) {
    (void)state;
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW), HOOK_VERDICT_OK);
    /* Secret without its prefix. */
    assert_int_equal(standard("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ID, TS, SIG, BODY, NOW),
                     HOOK_VERDICT_OK);
    /* Several signatures: only the second matches; other versions around it are ignored. */
    assert_int_equal(standard(SECRET, ID, TS, OTHER_SIG " " SIG, BODY, NOW), HOOK_VERDICT_OK);
    assert_int_equal(standard(SECRET, ID, TS, "v2,abc v1a,xyz  " SIG " v1,!!!", BODY, NOW),
                     HOOK_VERDICT_OK);
    /* Tolerance is inclusive, both ways. */
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW + 300), HOOK_VERDICT_OK);
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW - 300), HOOK_VERDICT_OK);
    /* A plain decimal number with leading zeros is still a number (and is what was signed). */
    char sig[64];
    sign_standard("0" TS, sig);
    assert_int_equal(standard(SECRET, ID, "0" TS, sig, BODY, NOW), HOOK_VERDICT_OK);
}

static void test_standard_rejects(void **state) {
    (void)state;
    assert_int_equal(standard("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ID, TS, SIG, BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(standard(SECRET, ID, TS, SIG, "{\"test\": 2432232315}", NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(standard(SECRET, ID "x", TS, SIG, BODY, NOW), HOOK_VERDICT_INVALID_SIGNATURE);
    /* The same bytes under another version, or v1 with mangled base64. */
    assert_int_equal(
        standard(SECRET, ID, TS, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, NOW),
        HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(
        standard(SECRET, ID, TS, "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, NOW),
        HOOK_VERDICT_INVALID_SIGNATURE);
    static const char *const mangled[] = {
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",      /* unpadded */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",     /* non-canonical last symbol */
        "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=",     /* URL-safe alphabet */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O==",     /* 31 bytes */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=AAAA", /* 35 bytes */
        "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",     /* version is case-sensitive */
        "v1,",
        ",",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=,", /* trailing comma in the value */
    };
    for (size_t i = 0; i < sizeof mangled / sizeof mangled[0]; i++)
        if (standard(SECRET, ID, TS, mangled[i], BODY, NOW) != HOOK_VERDICT_INVALID_SIGNATURE)
            fail_msg("accepted or misjudged %s", mangled[i]);
    /* A secret that is not base64 matches nothing. */
    assert_int_equal(standard("whsec_%%%%", ID, TS, SIG, BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(standard(NULL, ID, TS, SIG, BODY, NOW), HOOK_VERDICT_INVALID_SIGNATURE);
}

static void test_standard_missing_and_malformed(void **state) {
    (void)state;
    assert_int_equal(standard(SECRET, NULL, TS, SIG, BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(standard(SECRET, "", TS, SIG, BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(standard(SECRET, ID, NULL, SIG, BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(standard(SECRET, ID, TS, NULL, BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(standard(SECRET, ID, TS, "", BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(standard(SECRET, ID, TS, "garbage", BODY, NOW), HOOK_VERDICT_MALFORMED);
    assert_int_equal(standard(SECRET, ID, TS, "   ", BODY, NOW), HOOK_VERDICT_MALFORMED);
    /* An empty body is a body. */
    assert_int_equal(hook_verify_standard(SECRET, ID, TS, SIG, NULL, 0, NOW, TOL),
                     HOOK_VERDICT_INVALID_SIGNATURE);
}

static void test_standard_timestamps(void **state) {
    (void)state;
    /* 6 minutes old / ahead: refused even with the right signature. */
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW + 360),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW - 360),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW + 301),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(standard(SECRET, ID, TS, SIG, BODY, NOW - 301),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    /* Not plain decimal seconds: refused though each is correctly signed. */
    static const char *const bad[] = {
        "",
        "abc",
        "1e9",
        "-1",
        "+5",
        " " TS,
        TS " ",
        "1614265330.0",
        "0x60",
        "1_000",
        "99999999999999999999",
        "9223372036854775808",
        "1614265330\t",
        "١٢٣",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sig[64];
        sign_standard(bad[i], sig);
        if (standard(SECRET, ID, bad[i], sig, BODY, NOW) != HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE)
            fail_msg("timestamp \"%s\" not refused as out of tolerance", bad[i]);
    }
    /* The largest int64 parses and is simply far in the future. */
    assert_false(hook_timestamp_acceptable("9223372036854775807", NOW, TOL));
    assert_true(hook_timestamp_acceptable("9223372036854775807", INT64_MAX, 0));
    assert_true(hook_timestamp_acceptable("0", 0, 0));
    assert_false(hook_timestamp_acceptable("0", 1, 0));
    assert_false(hook_timestamp_acceptable(TS, -1, TOL));
    assert_false(hook_timestamp_acceptable(TS, NOW, -1));
    assert_false(hook_timestamp_acceptable(NULL, NOW, TOL));
    /* Huge tolerance cannot overflow. */
    assert_true(hook_timestamp_acceptable("0", INT64_MAX, INT64_MAX));
}

static hook_verdict stripe(const char *secret, const char *header, const char *body, int64_t now) {
    return hook_verify_stripe(secret, header, body, strlen(body), now, TOL);
}

static void test_stripe(void **state) {
    (void)state;
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW), HOOK_VERDICT_OK);
    /* Uppercase hex decodes to the same bytes. */
    char upper[] = "t=" TS ",v1=" STRIPE_HEX;
    for (char *c = upper + 15; *c; c++)
        if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
    assert_int_equal(stripe(SECRET, upper, STRIPE_BODY, NOW), HOOK_VERDICT_OK);
    /* Any v1 may match; v0 and unknown keys ignored; t anywhere. */
    assert_int_equal(
        stripe(SECRET, "t=" TS ",v1=" ZERO_HEX ",v1=" STRIPE_HEX ",v0=" ZERO_HEX, STRIPE_BODY, NOW),
        HOOK_VERDICT_OK);
    assert_int_equal(stripe(SECRET, "v1=" STRIPE_HEX ",foo=bar,t=" TS, STRIPE_BODY, NOW),
                     HOOK_VERDICT_OK);

    /* Keyed with the decoded secret (Standard Webhooks' way): silently wrong, so refused. */
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_DECODED_KEY_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(
        stripe("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW),
        HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY "x", NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v0=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v2=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(SECRET, "t=" TS, STRIPE_BODY, NOW), HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX "00", STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    char short_hex[] = "t=" TS ",v1=" STRIPE_HEX;
    short_hex[strlen(short_hex) - 1] = '\0';
    assert_int_equal(stripe(SECRET, short_hex, STRIPE_BODY, NOW), HOOK_VERDICT_INVALID_SIGNATURE);
    char bad_char[] = "t=" TS ",v1=" STRIPE_HEX;
    bad_char[20] = 'g';
    assert_int_equal(stripe(SECRET, bad_char, STRIPE_BODY, NOW), HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe("", "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(stripe(NULL, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_INVALID_SIGNATURE);

    /* Missing and malformed headers. */
    assert_int_equal(hook_verify_stripe(SECRET, NULL, "", 0, NOW, TOL),
                     HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(stripe(SECRET, "", STRIPE_BODY, NOW), HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(stripe(SECRET, "v1=" STRIPE_HEX, STRIPE_BODY, NOW), HOOK_VERDICT_MALFORMED);
    assert_int_equal(stripe(SECRET, "t=" TS ",t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_MALFORMED);
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX ",", STRIPE_BODY, NOW),
                     HOOK_VERDICT_MALFORMED);
    assert_int_equal(stripe(SECRET, "t=" TS " v1=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(stripe(SECRET, "sha256=" STRIPE_HEX, STRIPE_BODY, NOW),
                     HOOK_VERDICT_MALFORMED);
    assert_int_equal(stripe(SECRET, "garbage", STRIPE_BODY, NOW), HOOK_VERDICT_MALFORMED);
}

static void test_stripe_timestamps(void **state) {
    (void)state;
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW + 360),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW - 360),
                     HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE);
    assert_int_equal(stripe(SECRET, "t=" TS ",v1=" STRIPE_HEX, STRIPE_BODY, NOW - 300),
                     HOOK_VERDICT_OK);
    static const char *const bad[] = {"",   "abc",         "1e9",         "-1",
                                      "+5", " 1614265330", "1614265330 ", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char header[128];
        sign_stripe(bad[i], header);
        if (stripe(SECRET, header, STRIPE_BODY, NOW) != HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE)
            fail_msg("stripe t=\"%s\" not refused as out of tolerance", bad[i]);
    }
    char good[128];
    sign_stripe(TS, good);
    assert_string_equal(good, "t=" TS ",v1=" STRIPE_HEX);
}

static void test_github(void **state) {
    (void)state;
    const size_t n = strlen(GITHUB_BODY);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=" GITHUB_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_OK);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=" GITHUB_HEX, "Hello, World?", n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(
        hook_verify_github("It's a Secret to Nobody", "sha256=" GITHUB_HEX, GITHUB_BODY, n),
        HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=" ZERO_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=" GITHUB_HEX "0", GITHUB_BODY, n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=", GITHUB_BODY, n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha256=" GITHUB_HEX " ", GITHUB_BODY, n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github("", "sha256=" GITHUB_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_INVALID_SIGNATURE);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, NULL, GITHUB_BODY, n),
                     HOOK_VERDICT_MISSING_HEADER);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "", GITHUB_BODY, n),
                     HOOK_VERDICT_MISSING_HEADER);
    /* The SHA-1 header's form, or no prefix, is not the SHA-256 header. */
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "sha1=" GITHUB_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_MALFORMED);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, GITHUB_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_MALFORMED);
    assert_int_equal(hook_verify_github(GITHUB_SECRET, "SHA256=" GITHUB_HEX, GITHUB_BODY, n),
                     HOOK_VERDICT_MALFORMED);
}

/* hook_verify through a header lookup, as the handler will call it. */
typedef struct fake_headers {
    const char *names[4];
    const char *values[4];
} fake_headers;

static const char *lookup(const void *context, const char *name) {
    const fake_headers *h = context;
    for (int i = 0; i < 4 && h->names[i]; i++)
        if (strcmp(h->names[i], name) == 0) return h->values[i];
    return NULL;
}

static void test_dispatch_and_codes(void **state) {
    (void)state;
    fake_headers standard_headers = {{"webhook-id", "webhook-timestamp", "webhook-signature"},
                                     {ID, TS, SIG}};
    assert_int_equal(hook_verify(HOOK_SCHEME_STANDARD, SECRET, lookup, &standard_headers, BODY,
                                 strlen(BODY), NOW, TOL),
                     HOOK_VERDICT_OK);
    assert_int_equal(hook_verify(HOOK_SCHEME_STRIPE, SECRET, lookup, &standard_headers, BODY,
                                 strlen(BODY), NOW, TOL),
                     HOOK_VERDICT_MISSING_HEADER);
    fake_headers stripe_headers = {{"stripe-signature"}, {"t=" TS ",v1=" STRIPE_HEX}};
    assert_int_equal(hook_verify(HOOK_SCHEME_STRIPE, SECRET, lookup, &stripe_headers, STRIPE_BODY,
                                 strlen(STRIPE_BODY), NOW, TOL),
                     HOOK_VERDICT_OK);
    fake_headers github_headers = {{"x-hub-signature-256"}, {"sha256=" GITHUB_HEX}};
    assert_int_equal(hook_verify(HOOK_SCHEME_GITHUB, GITHUB_SECRET, lookup, &github_headers,
                                 GITHUB_BODY, strlen(GITHUB_BODY), NOW, TOL),
                     HOOK_VERDICT_OK);

    assert_null(hook_verdict_error_code(HOOK_VERDICT_OK));
    assert_string_equal(hook_verdict_error_code(HOOK_VERDICT_INVALID_SIGNATURE),
                        "invalid_signature");
    assert_string_equal(hook_verdict_error_code(HOOK_VERDICT_MISSING_HEADER), "invalid_signature");
    assert_string_equal(hook_verdict_error_code(HOOK_VERDICT_MALFORMED), "invalid_signature");
    assert_string_equal(hook_verdict_error_code(HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE),
                        "timestamp_out_of_tolerance");
    for (int s = HOOK_SCHEME_STANDARD; s <= HOOK_SCHEME_GITHUB; s++) {
        hook_scheme parsed;
        assert_true(hook_scheme_parse(hook_scheme_name((hook_scheme)s), &parsed));
        assert_int_equal(parsed, s);
        for (int v = HOOK_VERDICT_OK; v <= HOOK_VERDICT_MALFORMED; v++)
            assert_non_null(hook_verdict_message((hook_scheme)s, (hook_verdict)v));
    }
    hook_scheme parsed;
    assert_false(hook_scheme_parse("Stripe", &parsed));
    assert_false(hook_scheme_parse("", &parsed));
    assert_false(hook_scheme_parse(NULL, &parsed));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_accepts),
        cmocka_unit_test(test_standard_rejects),
        cmocka_unit_test(test_standard_missing_and_malformed),
        cmocka_unit_test(test_standard_timestamps),
        cmocka_unit_test(test_stripe),
        cmocka_unit_test(test_stripe_timestamps),
        cmocka_unit_test(test_github),
        cmocka_unit_test(test_dispatch_and_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer harness for src/auth: the JWT verifier (fixed secret) on raw input and on tokens the
 * harness signs itself (so the fuzzer reaches the claims parser), the Authorization and Cookie
 * extractors, the CORS origin parser and header writer, and pattern subsumption checked against
 * brute force over a small topic universe. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth.h"
#include "hub/topic.h"

#define SECRET "herald-test-secret-0123456789abcdef" /* the unit tests' (seed tokens verify) */
#define OTHER_SECRET "fuzz-secret-0123456789abcdef-0124"
#define NOW INT64_C(1800000000)

static void check(bool condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_auth_jwt: %s\n", what);
        abort();
    }
}

static auth_jwt_verdict verify(const char *token, size_t length, const char *secret, int64_t leeway,
                               auth_claims *claims) {
    return auth_verify_jwt(token, length, (const unsigned char *)secret, strlen(secret), NOW,
                           leeway, claims);
}

static void check_claims(const auth_claims *claims) {
    check(claims->expires_at > NOW - 1000, "an accepted token is not expired");
    const auth_pattern_list *lists[2] = {&claims->subscribe, &claims->publish};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l]->count; i++) {
            const char *p = lists[l]->patterns[i];
            check(topic_pattern_valid(p, strlen(p)), "claim patterns are valid");
            if (l == 0)
                check(auth_claims_allow_subscribe(claims, p, strlen(p)), "claim covers itself");
        }
    }
}

/* Raw input as a token: whatever it is, a verdict, and claims only with OK. */
static void fuzz_raw_token(const char *data, size_t size) {
    auth_claims claims;
    auth_jwt_verdict verdict = verify(data, size, SECRET, (int64_t)(size % 7) - 1, &claims);
    check(verdict >= AUTH_JWT_OK && verdict <= AUTH_JWT_NO_MEMORY, "verdict in range");
    if (verdict == AUTH_JWT_OK) {
        check_claims(&claims);
        auth_claims other;
        check(verify(data, size, OTHER_SECRET, 0, &other) == AUTH_JWT_BAD_SIGNATURE,
              "another secret fails");
        auth_claims_free(&other);
    } else {
        check(claims.subscribe.count == 0 && claims.publish.count == 0, "no claims on failure");
    }
    auth_claims_free(&claims);
}

static size_t base64url_encode(const unsigned char *in, size_t length, char *out) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (length - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (length - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    return o;
}

/* "header JSON\npayload JSON" signed here with SECRET: the signature is good, so the verdict
 * is never bad_signature, and a token accepted with SECRET fails with another secret and with any
 * flipped signature character. */
static void fuzz_signed_token(const char *data, size_t size) {
    const char *newline = memchr(data, '\n', size);
    if (!newline) return;
    size_t header_length = (size_t)(newline - data), payload_length = size - header_length - 1;
    size_t capacity = (size / 3 + 2) * 4 + 64;
    char *token = malloc(capacity);
    check(token != NULL, "malloc");
    size_t n = base64url_encode((const unsigned char *)data, header_length, token);
    token[n++] = '.';
    n += base64url_encode((const unsigned char *)newline + 1, payload_length, token + n);
    unsigned char mac[32];
    unsigned int mac_length = 0;
    check(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)token, n, mac,
               &mac_length) != NULL,
          "HMAC");
    token[n++] = '.';
    n += base64url_encode(mac, sizeof mac, token + n);
    check(n <= capacity, "token fits");

    auth_claims claims;
    auth_jwt_verdict verdict = verify(token, n, SECRET, 0, &claims);
    check(verdict != AUTH_JWT_BAD_SIGNATURE, "a good signature is good");
    if (n > AUTH_JWT_MAX_LENGTH) check(verdict == AUTH_JWT_MALFORMED, "size limit");
    if (verdict == AUTH_JWT_OK) {
        check_claims(&claims);
        auth_claims other;
        check(verify(token, n, OTHER_SECRET, 0, &other) == AUTH_JWT_BAD_SIGNATURE,
              "another secret fails");
        auth_claims_free(&other);
        token[n - 10] = token[n - 10] == 'A' ? 'B' : 'A';
        check(verify(token, n, SECRET, 0, &other) == AUTH_JWT_BAD_SIGNATURE,
              "a changed signature fails");
        auth_claims_free(&other);
    }
    auth_claims_free(&claims);
    free(token);
}

static bool visible(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E) return false;
    return n > 0;
}

static void fuzz_extraction(const char *data, size_t size) {
    const char *token = NULL;
    size_t length = 0;
    if (auth_token_from_authorization(data, size, &token, &length)) {
        check(token > data && token + length <= data + size, "bearer token in bounds");
        check(visible(token, length), "bearer token visible ASCII");
        check(auth_token_well_formed(token, length), "bearer token well-formed");
    }
    /* "Bearer " + a well-formed token gives it back */
    if (auth_token_well_formed(data, size)) {
        char *value = malloc(size + 8);
        check(value != NULL, "malloc");
        memcpy(value, "Bearer ", 7);
        memcpy(value + 7, data, size);
        check(auth_token_from_authorization(value, size + 7, &token, &length) && length == size &&
                  token == value + 7,
              "bearer round trip");
        free(value);
    }
    if (auth_token_from_cookie(data, size, &token, &length)) {
        check(token > data && token + length <= data + size, "cookie token in bounds");
        check(visible(token, length), "cookie token visible ASCII");
        for (size_t i = 0; i < length; i++)
            check(token[i] != '"' && token[i] != ';' && token[i] != ',' && token[i] != '\\',
                  "cookie-octets only");
    }
    /* "herald_token=" + cookie-octets gives them back, also after other cookies */
    bool octets = size > 0;
    for (size_t i = 0; i < size && octets; i++)
        octets = (unsigned char)data[i] >= 0x21 && (unsigned char)data[i] <= 0x7E &&
                 data[i] != '"' && data[i] != ';' && data[i] != ',' && data[i] != '\\';
    if (octets) {
        char *value = malloc(size + 32);
        check(value != NULL, "malloc");
        int prefix = sprintf(value, "a=1; herald_token=");
        memcpy(value + prefix, data, size);
        check(auth_token_from_cookie(value, (size_t)prefix + size, &token, &length) &&
                  length == size && token == value + prefix,
              "cookie round trip");
        free(value);
    }
}

/* Every header line the CORS writer makes is "Name: value\r\n" with a visible value. */
static void check_header_lines(const text *out) {
    size_t i = 0;
    while (i < out->length) {
        const char *line = out->data + i;
        const char *end = memchr(line, '\r', out->length - i);
        check(end != NULL && end + 1 < out->data + out->length && end[1] == '\n', "CRLF lines");
        const char *colon = memchr(line, ':', (size_t)(end - line));
        check(colon != NULL && colon + 1 < end && colon[1] == ' ', "Name: value");
        for (const char *p = line; p < end; p++)
            check((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7E, "no control bytes");
        i = (size_t)(end - out->data) + 2;
    }
}

static void fuzz_cors(const char *data, size_t size) {
    auth_cors_policy policy;
    auth_cors_init(&policy);
    check(auth_cors_add(&policy, "https://app.example.com", 23) == AUTH_OK, "add");
    bool allowed = auth_cors_origin_allowed(&policy, data, size);
    text out;
    text_init(&out);
    check(auth_cors_append_headers(&policy, data, size, &out) == allowed, "headers agree");
    check_header_lines(&out);
    text_clear(&out);
    check(auth_cors_append_preflight(&policy, "https://app.example.com", 23, data, size, &out),
          "preflight allowed");
    check_header_lines(&out);
    text_clear(&out);

    auth_status status = auth_cors_add(&policy, data, size);
    if (status == AUTH_OK && !(size == 1 && data[0] == '*')) {
        check(auth_cors_origin_allowed(&policy, data, size), "an added origin is allowed");
        check(auth_cors_append_headers(&policy, data, size, &out), "and gets headers");
        check_header_lines(&out);
    }
    text_free(&out);
    auth_cors_free(&policy);
}

/* ---- subsumption against brute force ------------------------------------------------------ */

#define UNIVERSE_MAX 400
static char universe[UNIVERSE_MAX][16];
static size_t universe_count;

/* Topics of 1-5 segments over {a, b, c}: one more segment than the longest pattern below. */
static void build_universe(void) {
    static const char *const names[] = {"a", "b", "c"};
    for (size_t segments = 1; segments <= 5; segments++) {
        size_t total = 1;
        for (size_t s = 0; s < segments; s++)
            total *= 3;
        for (size_t k = 0; k < total; k++) {
            size_t rest = k;
            char *p = universe[universe_count++];
            p[0] = '\0';
            for (size_t s = 0; s < segments; s++) {
                if (s) strcat(p, "/");
                strcat(p, names[rest % 3]);
                rest /= 3;
            }
        }
    }
}

/* A pattern of 1-4 segments from {a, b, *, **, x y} (the last two may make it invalid). */
static size_t decode_pattern(const uint8_t **bytes, const uint8_t *end, char *out) {
    static const char *const segments[] = {"a", "b", "*", "**", "a", "b", "*", "x y"};
    out[0] = '\0';
    if (*bytes == end) return 0;
    size_t count = (size_t)(**bytes % 4) + 1;
    bool allow_odd = **bytes & 0x80;
    (*bytes)++;
    for (size_t s = 0; s < count; s++) {
        uint8_t b = *bytes < end ? *(*bytes)++ : 0;
        size_t choice = b % (allow_odd ? 8 : 4);
        if (s) strcat(out, "/");
        strcat(out, segments[choice]);
    }
    return strlen(out);
}

static void fuzz_subsumption(const uint8_t *bytes, size_t size) {
    if (universe_count == 0) build_universe();
    const uint8_t *p = bytes, *end = bytes + size;
    char claim[64], requested[64];
    size_t claim_length = decode_pattern(&p, end, claim);
    size_t requested_length = decode_pattern(&p, end, requested);
    if (!claim_length || !requested_length) return;
    bool claim_valid = topic_pattern_valid(claim, claim_length);
    bool requested_valid = topic_pattern_valid(requested, requested_length);
    bool covers = auth_pattern_covers(claim, claim_length, requested, requested_length);
    if (!claim_valid || !requested_valid) {
        check(!covers, "invalid patterns never cover");
        return;
    }
    bool expected = true;
    for (size_t t = 0; t < universe_count && expected; t++) {
        size_t n = strlen(universe[t]);
        if (topic_pattern_matches(requested, requested_length, universe[t], n) &&
            !topic_pattern_matches(claim, claim_length, universe[t], n))
            expected = false;
    }
    if (covers != expected) {
        fprintf(stderr, "covers(%s, %s) = %d, brute force %d\n", claim, requested, covers,
                expected);
        abort();
    }
}

/* Raw bytes split at the first '\n' as claim and requested: structural invariants. */
static void fuzz_raw_patterns(const char *data, size_t size) {
    const char *newline = memchr(data, '\n', size);
    if (!newline) return;
    const char *a = data, *b = newline + 1;
    size_t a_length = (size_t)(newline - data), b_length = size - a_length - 1;
    bool covers = auth_pattern_covers(a, a_length, b, b_length);
    if (covers)
        check(topic_pattern_valid(a, a_length) && topic_pattern_valid(b, b_length),
              "covers only valid patterns");
    if (topic_pattern_valid(a, a_length))
        check(auth_pattern_covers(a, a_length, a, a_length), "covers is reflexive");
    if (topic_name_valid(b, b_length) && topic_pattern_valid(a, a_length))
        check(covers == topic_pattern_matches(a, a_length, b, b_length),
              "on a topic, covers is matching");
    if (covers && auth_pattern_covers(b, b_length, a, a_length))
        check(a_length == b_length && memcmp(a, b, a_length) == 0, "antisymmetric");
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *data = (const char *)bytes;
    fuzz_raw_token(data, size);
    fuzz_signed_token(data, size);
    fuzz_extraction(data, size);
    fuzz_cors(data, size);
    fuzz_subsumption(bytes, size);
    fuzz_raw_patterns(data, size);
    return 0;
}

/* libFuzzer harness for src/hooks: the three inbound signature verifiers, checked against slow
 * reference verifiers written differently (OpenSSL's one-shot HMAC, EVP base64 and hex decoders,
 * strtoull), a sign-then-verify round trip, the endpoint URL parser and host classifier with their
 * invariants (plus a differential against inet_aton for IPv4 literals), secrets, the retry
 * schedule and Retry-After.
 *
 * Input: fields separated by '\n'. Standard Webhooks reads webhook-id, webhook-timestamp,
 * webhook-signature and the body (the rest); a missing field is an absent header. Stripe and
 * GitHub read their header from the first field and the body from the rest. The first field is
 * also a URL, a host, a secret, a schedule and a Retry-After value. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/encoding.h"
#include "hooks/address.h"
#include "hooks/endpoint_url.h"
#include "hooks/schedule.h"
#include "hooks/signature.h"
#include "hooks/verify.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define GITHUB_SECRET "It's a Secret to Everybody"
#define NOW 1614265330
#define TOLERANCE 300

static void check(bool condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "fuzz_hooks_signature: %s\n", what);
        abort();
    }
}

/* A NUL-terminated copy (stops at an embedded NUL, as a C header value would). */
static char *copy(const char *p, size_t n) {
    char *s = malloc(n + 1);
    check(s != NULL, "malloc");
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ---- reference verifiers ---- */

static bool ref_timestamp_ok(const char *t) {
    if (!*t) return false;
    for (const char *p = t; *p; p++)
        if (*p < '0' || *p > '9') return false;
    while (t[0] == '0' && t[1])
        t++;
    if (strlen(t) > 19) return false;
    errno = 0;
    unsigned long long v = strtoull(t, NULL, 10);
    if (errno || v > INT64_MAX) return false;
    __int128 d = (__int128)v - NOW;
    return d <= TOLERANCE && d >= -TOLERANCE;
}

static void ref_hmac(const void *key, size_t key_length, const char *a, const char *b,
                     const void *body, size_t body_length, unsigned char out[32]) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char *message = malloc(la + lb + body_length + 1);
    check(message != NULL, "malloc");
    memcpy(message, a, la);
    memcpy(message + la, b, lb);
    if (body_length) memcpy(message + la + lb, body, body_length);
    unsigned int length = 0;
    static const unsigned char empty = 0;
    check(HMAC(EVP_sha256(), key_length ? key : &empty, (int)key_length, message,
               la + lb + body_length, out, &length) != NULL &&
              length == 32,
          "reference HMAC");
    free(message);
}

/* Canonical base64 of exactly 32 bytes: EVP decodes it and EVP re-encodes the same text. */
static bool ref_base64_32(const char *s, size_t n, unsigned char out[32]) {
    if (n != 44) return false;
    unsigned char decoded[33];
    if (EVP_DecodeBlock(decoded, (const unsigned char *)s, 44) != 33) return false;
    char again[45];
    EVP_EncodeBlock((unsigned char *)again, decoded, 32);
    if (memcmp(again, s, 44) != 0) return false;
    memcpy(out, decoded, 32);
    return true;
}

static bool ref_hex_32(const char *s, size_t n, unsigned char out[32]) {
    if (n != 64 || strlen(s) != 64) return false;
    size_t length = 0;
    return OPENSSL_hexstr2buf_ex(out, 32, &length, s, '\0') == 1 && length == 32;
}

static hook_verdict ref_standard(const char *id, const char *ts, const char *sig, const char *body,
                                 size_t body_length) {
    if (!id || !*id || !ts || !sig || !*sig) return HOOK_VERDICT_MISSING_HEADER;
    if (!strchr(sig, ',')) return HOOK_VERDICT_MALFORMED;
    if (!ref_timestamp_ok(ts)) return HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE;
    unsigned char key[64];
    int key_length = EVP_DecodeBlock(key, (const unsigned char *)SECRET + 6, 32);
    check(key_length == 24, "reference key");
    unsigned char expected[32];
    char *prefix = malloc(strlen(id) + strlen(ts) + 3);
    check(prefix != NULL, "malloc");
    sprintf(prefix, "%s.%s.", id, ts);
    ref_hmac(key, 24, prefix, "", body, body_length, expected);
    free(prefix);
    char *tokens = copy(sig, strlen(sig));
    bool matched = false;
    char *save = NULL;
    for (char *token = strtok_r(tokens, " ", &save); token; token = strtok_r(NULL, " ", &save)) {
        unsigned char candidate[32];
        if (strncmp(token, "v1,", 3) == 0 &&
            ref_base64_32(token + 3, strlen(token + 3), candidate) &&
            memcmp(candidate, expected, 32) == 0)
            matched = true;
    }
    free(tokens);
    return matched ? HOOK_VERDICT_OK : HOOK_VERDICT_INVALID_SIGNATURE;
}

static hook_verdict ref_stripe(const char *header, const char *body, size_t body_length) {
    if (!header || !*header) return HOOK_VERDICT_MISSING_HEADER;
    /* Split on every ',' (strtok would merge empty elements, so walk by hand). */
    size_t count = 1;
    for (const char *p = header; *p; p++)
        count += *p == ',';
    char **elements = calloc(count, sizeof *elements);
    char *all = copy(header, strlen(header));
    check(elements != NULL, "calloc");
    char *p = all;
    for (size_t i = 0; i < count; i++) {
        elements[i] = p;
        char *comma = strchr(p, ',');
        if (comma) {
            *comma = '\0';
            p = comma + 1;
        }
    }
    hook_verdict verdict = HOOK_VERDICT_INVALID_SIGNATURE;
    const char *t = NULL;
    int ts = 0;
    for (size_t i = 0; i < count; i++) {
        if (!strchr(elements[i], '=')) verdict = HOOK_VERDICT_MALFORMED;
        if (strncmp(elements[i], "t=", 2) == 0) {
            t = elements[i] + 2;
            ts++;
        }
    }
    if (verdict != HOOK_VERDICT_MALFORMED && ts != 1) verdict = HOOK_VERDICT_MALFORMED;
    if (verdict != HOOK_VERDICT_MALFORMED && !ref_timestamp_ok(t))
        verdict = HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE;
    if (verdict == HOOK_VERDICT_INVALID_SIGNATURE) {
        unsigned char expected[32];
        ref_hmac(SECRET, strlen(SECRET), t, ".", body, body_length, expected);
        for (size_t i = 0; i < count; i++) {
            unsigned char candidate[32];
            if (strncmp(elements[i], "v1=", 3) == 0 &&
                ref_hex_32(elements[i] + 3, strlen(elements[i] + 3), candidate) &&
                memcmp(candidate, expected, 32) == 0)
                verdict = HOOK_VERDICT_OK;
        }
    }
    free(all);
    free(elements);
    return verdict;
}

static hook_verdict ref_github(const char *header, const char *body, size_t body_length) {
    if (!header || !*header) return HOOK_VERDICT_MISSING_HEADER;
    if (strncmp(header, "sha256=", 7) != 0) return HOOK_VERDICT_MALFORMED;
    unsigned char expected[32], candidate[32];
    ref_hmac(GITHUB_SECRET, strlen(GITHUB_SECRET), "", "", body, body_length, expected);
    return ref_hex_32(header + 7, strlen(header + 7), candidate) &&
                   memcmp(candidate, expected, 32) == 0
               ? HOOK_VERDICT_OK
               : HOOK_VERDICT_INVALID_SIGNATURE;
}

/* ---- the real ones ---- */

static void fuzz_signatures(char *fields[4], size_t field_count, const char *after_first,
                            size_t after_first_length) {
    const char *id = field_count > 0 ? fields[0] : NULL;
    const char *ts = field_count > 1 ? fields[1] : NULL;
    const char *sig = field_count > 2 ? fields[2] : NULL;
    const char *body = field_count > 3 ? fields[3] : "";
    size_t body_length = strlen(body);

    hook_verdict got = hook_verify_standard(SECRET, id, ts, sig, body, body_length, NOW, TOLERANCE);
    check(got == ref_standard(id, ts, sig, body, body_length), "standard agrees with reference");

    /* Round trip: our own signature, after whatever the input listed, always verifies. */
    if (id && *id) {
        webhook_key key;
        check(webhook_secret_parse(SECRET, strlen(SECRET), &key) == WEBHOOK_SECRET_OK, "key");
        text header;
        text_init(&header);
        if (sig) {
            text_append_cstring(&header, sig);
            text_append_char(&header, ' ');
        }
        check(webhook_signature_append(&header, &key, &key, id, strlen(id), NOW, body, body_length),
              "sign");
        char now_text[24];
        webhook_timestamp_format(NOW, now_text);
        check(hook_verify_standard(SECRET, id, now_text, text_cstring(&header), body, body_length,
                                   NOW + TOLERANCE, TOLERANCE) == HOOK_VERDICT_OK,
              "standard round trip");
        check(hook_verify_standard(SECRET, id, now_text, text_cstring(&header), body, body_length,
                                   NOW + TOLERANCE + 1,
                                   TOLERANCE) == HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE,
              "standard round trip, stale");
        text_free(&header);
    }

    const char *header = field_count > 0 ? fields[0] : NULL;
    got = hook_verify_stripe(SECRET, header, after_first, after_first_length, NOW, TOLERANCE);
    check(got == ref_stripe(header, after_first, after_first_length), "stripe agrees");
    got = hook_verify_github(GITHUB_SECRET, header, after_first, after_first_length);
    check(got == ref_github(header, after_first, after_first_length), "github agrees");
    check(got != HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE, "github has no timestamp");
}

static bool is_lower_host(const char *h) {
    for (; *h; h++)
        if ((*h >= 'A' && *h <= 'Z') || *h == '@' || *h == '\\' || *h == '%' || *h <= ' ' ||
            (unsigned char)*h >= 0x7F)
            return false;
    return true;
}

static void fuzz_url(const char *url, size_t length) {
    endpoint_url u;
    const char *problem = NULL;
    bool ok = endpoint_url_parse(url, length, &u, &problem);
    if (!ok) {
        check(problem != NULL && *problem, "a refusal explains itself");
        return;
    }
    check(u.host[0] != '\0' && is_lower_host(u.host), "host is clean");
    check(u.port != 0, "port");
    check(u.host_class != ADDRESS_INVALID, "parsed host is valid");
    check(u.path_offset + u.path_length == u.query_offset, "path then query");
    check(u.query_offset + u.query_length == u.sendable_length, "query then fragment");
    check(u.sendable_length <= length, "in bounds");
    check(u.sendable_length == length || url[u.sendable_length] == '#', "fragment cut at '#'");
    check(u.path_length == 0 || url[u.path_offset] == '/', "path starts with /");
    check(u.query_length == 0 || url[u.query_offset] == '?', "query starts with ?");
    check(memchr(url, '@', u.path_offset) == NULL, "no userinfo");
    char bracketed[ENDPOINT_URL_MAX_HOST + 3];
    snprintf(bracketed, sizeof bracketed, u.host_is_ipv6 ? "[%s]" : "%s", u.host);
    check(url_host_literal_class(bracketed) == u.host_class, "host class is stable");
    endpoint_url again;
    bool checked = endpoint_url_check(url, length, false, &again, &problem);
    check(checked == (u.host_class == ADDRESS_NAME || u.host_class == ADDRESS_PUBLIC),
          "policy follows the class");
}

static void fuzz_host(const char *host) {
    address_class cls = url_host_literal_class(host);
    check(cls >= ADDRESS_PUBLIC && cls <= ADDRESS_INVALID, "class in range");
    check(address_class_name(cls) != NULL, "class has a name");
    /* inet_aton agrees on plain IPv4 literals (digits, hex, dots; no trailing dot). */
    size_t n = strlen(host);
    if (n == 0 || n > 64 || host[n - 1] == '.') return;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefxABCDEFX.", host[i])) return;
    uint32_t ours;
    struct in_addr theirs;
    bool ok = address_parse_ipv4_literal(host, n, &ours);
    bool their_ok = inet_aton(host, &theirs) != 0;
    /* glibc takes a bare "0x" part as 0 like WHATWG, but older libcs refuse it: skip those. */
    if (strstr(host, "0x.") || strstr(host, "0X.") ||
        (n >= 2 && (host[n - 1] == 'x' || host[n - 1] == 'X') && host[n - 2] == '0'))
        return;
    check(ok == their_ok, "IPv4 literal agrees with inet_aton");
    if (ok) check(ours == ntohl(theirs.s_addr), "IPv4 value agrees with inet_aton");
}

static uint64_t fixed_random(void *context) {
    return *(const uint64_t *)context;
}

static void fuzz_misc(const char *field, const uint8_t *bytes, size_t size) {
    webhook_key key;
    if (webhook_secret_parse(field, strlen(field), &key) == WEBHOOK_SECRET_OK) {
        check(key.length >= 1 && key.length <= WEBHOOK_KEY_CAPACITY, "key length");
        const char *b64 = strncmp(field, "whsec_", 6) == 0 ? field + 6 : field;
        char again[BASE64_LENGTH(WEBHOOK_KEY_CAPACITY) + 1];
        base64_encode(key.bytes, key.length, again);
        check(strcmp(again, b64) == 0, "secret round trip");
    }
    (void)webhook_secret_parse_for_endpoint(field, strlen(field), NULL);

    retry_schedule schedule;
    if (retry_schedule_parse(field, &schedule, NULL)) {
        check(schedule.count >= 1 && schedule.count <= RETRY_SCHEDULE_MAX_STEPS, "step count");
        uint64_t r = 0;
        memcpy(&r, bytes, size < 8 ? size : 8);
        for (size_t i = 1; i <= schedule.count; i++) {
            int64_t base = schedule.delays_ms[i - 1];
            check(base >= 1 && base <= RETRY_SCHEDULE_MAX_STEP_MS, "step range");
            int64_t d = retry_schedule_delay_ms(&schedule, i, NULL, NULL);
            int64_t e = retry_next_delay_ms(&schedule, i, -1, fixed_random, &r);
            check(d >= base - base / 5 && d <= base + base / 5, "jitter bounds");
            check(e >= base - base / 5 && e <= base + base / 5, "jitter bounds (next)");
        }
        check(retry_schedule_delay_ms(&schedule, schedule.count + 1, NULL, NULL) == -1, "dead");
    }
    int64_t after = retry_after_parse_ms(field, NOW);
    check(after == -1 || (after >= 0 && after <= RETRY_AFTER_MAX_MS), "Retry-After range");

    if (size >= 16) {
        check(address_classify_ipv6(bytes) <= ADDRESS_RESERVED, "IPv6 class");
        uint32_t v4;
        memcpy(&v4, bytes, 4);
        check(address_classify_ipv4(v4) <= ADDRESS_RESERVED, "IPv4 class");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *data = (const char *)bytes;
    char *fields[4] = {NULL, NULL, NULL, NULL};
    size_t field_count = 0, start = 0;
    for (size_t i = 0; i <= size && field_count < 4; i++) {
        if (field_count < 3 && i < size && data[i] != '\n') continue;
        if (field_count == 3) i = size; /* the body is the rest, newlines and all */
        fields[field_count++] = copy(data + start, i - start);
        start = i + 1;
    }
    const char *newline = memchr(data, '\n', size);
    const char *after_first = newline ? newline + 1 : data + size;
    size_t after_first_length = (size_t)(data + size - after_first);

    fuzz_signatures(fields, field_count, after_first, after_first_length);
    fuzz_url(data, size);
    fuzz_url(fields[0], strlen(fields[0]));
    fuzz_host(fields[0]);
    fuzz_misc(fields[0], bytes, size);

    for (size_t i = 0; i < field_count; i++)
        free(fields[i]);
    return 0;
}

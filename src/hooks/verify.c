#include "hooks/verify.h"

#include <string.h>

#include <openssl/crypto.h>

#include "core/encoding.h"
#include "hooks/signature.h"

const char *hook_verdict_error_code(hook_verdict verdict) {
    switch (verdict) {
    case HOOK_VERDICT_OK:
        return NULL;
    case HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE:
        return "timestamp_out_of_tolerance";
    case HOOK_VERDICT_INVALID_SIGNATURE:
    case HOOK_VERDICT_MISSING_HEADER:
    case HOOK_VERDICT_MALFORMED:
        break;
    }
    return "invalid_signature";
}

const char *hook_verdict_message(hook_scheme scheme, hook_verdict verdict) {
    switch (verdict) {
    case HOOK_VERDICT_OK:
        return "The signature is valid.";
    case HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE:
        return scheme == HOOK_SCHEME_STRIPE
                   ? "The Stripe-Signature timestamp is not decimal seconds within the source's "
                     "tolerance of now."
                   : "The webhook-timestamp header is not decimal seconds within the source's "
                     "tolerance of now.";
    case HOOK_VERDICT_MISSING_HEADER:
        switch (scheme) {
        case HOOK_SCHEME_STANDARD:
            return "The webhook-id, webhook-timestamp and webhook-signature headers are required.";
        case HOOK_SCHEME_STRIPE:
            return "The Stripe-Signature header is required.";
        case HOOK_SCHEME_GITHUB:
            return "The X-Hub-Signature-256 header is required.";
        }
        break;
    case HOOK_VERDICT_MALFORMED:
        switch (scheme) {
        case HOOK_SCHEME_STANDARD:
            return "The webhook-signature header must list \"v1,<base64>\" signatures.";
        case HOOK_SCHEME_STRIPE:
            return "The Stripe-Signature header must be \"t=<timestamp>,v1=<hex>\".";
        case HOOK_SCHEME_GITHUB:
            return "The X-Hub-Signature-256 header must be \"sha256=<hex>\".";
        }
        break;
    case HOOK_VERDICT_INVALID_SIGNATURE:
        break;
    }
    return "No signature matches the request body and the source's secret.";
}

bool hook_scheme_parse(const char *name, hook_scheme *scheme) {
    if (!name) return false;
    if (strcmp(name, "standard") == 0)
        *scheme = HOOK_SCHEME_STANDARD;
    else if (strcmp(name, "stripe") == 0)
        *scheme = HOOK_SCHEME_STRIPE;
    else if (strcmp(name, "github") == 0)
        *scheme = HOOK_SCHEME_GITHUB;
    else
        return false;
    return true;
}

const char *hook_scheme_name(hook_scheme scheme) {
    switch (scheme) {
    case HOOK_SCHEME_STANDARD:
        return "standard";
    case HOOK_SCHEME_STRIPE:
        return "stripe";
    case HOOK_SCHEME_GITHUB:
        return "github";
    }
    return "unknown";
}

/* Plain decimal seconds from [p, p + length): digits only, at least one, no overflow. */
static bool parse_seconds(const char *p, size_t length, int64_t *value) {
    if (length == 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < length; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        int digit = p[i] - '0';
        if (v > (INT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    *value = v;
    return true;
}

static bool seconds_acceptable(const char *p, size_t length, int64_t now, int64_t tolerance) {
    int64_t t;
    if (now < 0 || tolerance < 0 || !parse_seconds(p, length, &t)) return false;
    /* Both are non-negative, so the differences cannot overflow. */
    return t >= now ? t - now <= tolerance : now - t <= tolerance;
}

bool hook_timestamp_acceptable(const char *timestamp, int64_t now, int64_t tolerance) {
    return timestamp && seconds_acceptable(timestamp, strlen(timestamp), now, tolerance);
}

/* ---- Standard Webhooks ---- */

hook_verdict hook_verify_standard(const char *secret, const char *webhook_id,
                                  const char *webhook_timestamp, const char *webhook_signature,
                                  const void *body, size_t body_length, int64_t now,
                                  int64_t tolerance) {
    if (!webhook_id || !*webhook_id || !webhook_timestamp || !webhook_signature ||
        !*webhook_signature)
        return HOOK_VERDICT_MISSING_HEADER;
    if (!strchr(webhook_signature, ',')) return HOOK_VERDICT_MALFORMED;
    size_t timestamp_length = strlen(webhook_timestamp);
    if (!seconds_acceptable(webhook_timestamp, timestamp_length, now, tolerance))
        return HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE;

    webhook_key key;
    if (!secret || webhook_secret_parse(secret, strlen(secret), &key) != WEBHOOK_SECRET_OK)
        return HOOK_VERDICT_INVALID_SIGNATURE;
    unsigned char expected[WEBHOOK_HMAC_BYTES];
    bool computed = webhook_standard_hmac(&key, webhook_id, strlen(webhook_id), webhook_timestamp,
                                          timestamp_length, body, body_length, expected);
    OPENSSL_cleanse(&key, sizeof key);
    if (!computed) return HOOK_VERDICT_INVALID_SIGNATURE;

    bool matched = false;
    const char *p = webhook_signature;
    while (*p) {
        if (*p == ' ') {
            p++;
            continue;
        }
        const char *end = strchr(p, ' ');
        if (!end) end = p + strlen(p);
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (comma && comma - p == 2 && p[0] == 'v' && p[1] == '1') {
            const char *value = comma + 1;
            unsigned char candidate[WEBHOOK_HMAC_BYTES + 3];
            size_t decoded = 0;
            if (base64_decode(value, (size_t)(end - value), candidate, sizeof candidate,
                              &decoded) &&
                decoded == WEBHOOK_HMAC_BYTES &&
                CRYPTO_memcmp(candidate, expected, WEBHOOK_HMAC_BYTES) == 0)
                matched = true;
        }
        p = end;
    }
    return matched ? HOOK_VERDICT_OK : HOOK_VERDICT_INVALID_SIGNATURE;
}

/* ---- hex schemes (Stripe, GitHub) ---- */

static bool hex_matches(const char *hex, size_t length, const unsigned char *expected) {
    unsigned char candidate[WEBHOOK_HMAC_BYTES];
    return hex_decode_exact(hex, length, candidate, WEBHOOK_HMAC_BYTES) &&
           CRYPTO_memcmp(candidate, expected, WEBHOOK_HMAC_BYTES) == 0;
}

hook_verdict hook_verify_stripe(const char *secret, const char *stripe_signature, const void *body,
                                size_t body_length, int64_t now, int64_t tolerance) {
    if (!stripe_signature || !*stripe_signature) return HOOK_VERDICT_MISSING_HEADER;

    /* First pass: shape and the one t. */
    const char *t = NULL;
    size_t t_length = 0;
    for (const char *p = stripe_signature;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *equals = memchr(p, '=', (size_t)(end - p));
        if (!equals) return HOOK_VERDICT_MALFORMED;
        if (equals - p == 1 && p[0] == 't') {
            if (t) return HOOK_VERDICT_MALFORMED;
            t = equals + 1;
            t_length = (size_t)(end - t);
        }
        if (!*end) break;
        p = end + 1;
    }
    if (!t) return HOOK_VERDICT_MALFORMED;
    if (!seconds_acceptable(t, t_length, now, tolerance))
        return HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE;

    if (!secret || !*secret) return HOOK_VERDICT_INVALID_SIGNATURE;
    unsigned char expected[WEBHOOK_HMAC_BYTES];
    if (!webhook_hmac_sha256(secret, strlen(secret), t, t_length, ".", 1, body, body_length,
                             expected))
        return HOOK_VERDICT_INVALID_SIGNATURE;

    /* Second pass: every v1 candidate. */
    bool matched = false;
    for (const char *p = stripe_signature;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (end - p >= 3 && p[0] == 'v' && p[1] == '1' && p[2] == '=' &&
            hex_matches(p + 3, (size_t)(end - p - 3), expected))
            matched = true;
        if (!*end) break;
        p = end + 1;
    }
    return matched ? HOOK_VERDICT_OK : HOOK_VERDICT_INVALID_SIGNATURE;
}

hook_verdict hook_verify_github(const char *secret, const char *hub_signature_256, const void *body,
                                size_t body_length) {
    static const char prefix[] = "sha256=";
    if (!hub_signature_256 || !*hub_signature_256) return HOOK_VERDICT_MISSING_HEADER;
    if (strncmp(hub_signature_256, prefix, sizeof prefix - 1) != 0) return HOOK_VERDICT_MALFORMED;
    if (!secret || !*secret) return HOOK_VERDICT_INVALID_SIGNATURE;
    unsigned char expected[WEBHOOK_HMAC_BYTES];
    if (!webhook_hmac_sha256(secret, strlen(secret), body, body_length, NULL, 0, NULL, 0, expected))
        return HOOK_VERDICT_INVALID_SIGNATURE;
    const char *hex = hub_signature_256 + sizeof prefix - 1;
    return hex_matches(hex, strlen(hex), expected) ? HOOK_VERDICT_OK
                                                   : HOOK_VERDICT_INVALID_SIGNATURE;
}

hook_verdict hook_verify(hook_scheme scheme, const char *secret, hook_header_lookup lookup,
                         const void *context, const void *body, size_t body_length, int64_t now,
                         int64_t tolerance) {
    switch (scheme) {
    case HOOK_SCHEME_STANDARD:
        return hook_verify_standard(
            secret, lookup(context, "webhook-id"), lookup(context, "webhook-timestamp"),
            lookup(context, "webhook-signature"), body, body_length, now, tolerance);
    case HOOK_SCHEME_STRIPE:
        return hook_verify_stripe(secret, lookup(context, "stripe-signature"), body, body_length,
                                  now, tolerance);
    case HOOK_SCHEME_GITHUB:
        return hook_verify_github(secret, lookup(context, "x-hub-signature-256"), body,
                                  body_length);
    }
    return HOOK_VERDICT_INVALID_SIGNATURE;
}

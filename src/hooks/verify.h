#ifndef HERALD_HOOKS_VERIFY_H
#define HERALD_HOOKS_VERIFY_H
/* Owns: verifying inbound webhooks (SPEC §8) under the three schemes — Standard Webhooks, Stripe
 * and GitHub — down to one verdict per request. Pure: the clock is a parameter, nothing is
 * stored or logged.
 *
 * Header values are NUL-terminated as the HTTP parser gives them (surrounding whitespace already
 * removed); NULL means the header is absent. The body is the exact bytes received.
 *
 * Order of checks, so equal inputs always give the same verdict: missing header, then the shape of
 * the signature header (Stripe's t= is part of it), then the timestamp, then the signatures. A
 * stale or malformed timestamp is therefore reported as such whether or not a signature would
 * have matched, and no HMAC is computed for it. Signatures are compared in constant time over the
 * decoded bytes (CRYPTO_memcmp); a candidate that does not decode to exactly 32 bytes — wrong
 * length, bad characters, non-canonical base64 — matches nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum hook_verdict {
    HOOK_VERDICT_OK,
    HOOK_VERDICT_INVALID_SIGNATURE,          /* well-formed, but no supported signature matches */
    HOOK_VERDICT_TIMESTAMP_OUT_OF_TOLERANCE, /* not plain decimal seconds, or too far from now */
    HOOK_VERDICT_MISSING_HEADER,             /* a required header is absent or empty */
    HOOK_VERDICT_MALFORMED,                  /* the signature header has no recognisable shape */
} hook_verdict;

typedef enum hook_scheme {
    HOOK_SCHEME_STANDARD,
    HOOK_SCHEME_STRIPE,
    HOOK_SCHEME_GITHUB,
} hook_scheme;

#define HOOK_DEFAULT_TOLERANCE_SECONDS 300

/* The JSON error code of a rejection (SPEC §2/§8): "invalid_signature" for invalid, missing and
 * malformed alike (a bad or missing signature), "timestamp_out_of_tolerance"; NULL for OK.
 * Every rejection is status 401. */
const char *hook_verdict_error_code(hook_verdict verdict);
/* One human sentence for the error's "message"; names the header at fault. */
const char *hook_verdict_message(hook_scheme scheme, hook_verdict verdict);

/* "standard", "stripe", "github" → scheme; false for anything else. */
bool hook_scheme_parse(const char *name, hook_scheme *scheme);
const char *hook_scheme_name(hook_scheme scheme);

/* A timestamp that is a plain decimal number of seconds (one or more ASCII digits: no sign, space,
 * exponent or fraction; a value past INT64_MAX is refused, never wrapped) within tolerance seconds
 * of now in either direction. now < 0 or tolerance < 0 accepts nothing. */
bool hook_timestamp_acceptable(const char *timestamp, int64_t now, int64_t tolerance);

/* Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature. The signature header is a
 * space-separated list of "<version>,<base64>"; any v1 may match, other versions (v1a, v2, …) and
 * entries without a comma are ignored. The secret is `whsec_` + base64 or the base64 alone; a
 * secret that does not parse matches nothing. MALFORMED: no entry with a comma at all. */
hook_verdict hook_verify_standard(const char *secret, const char *webhook_id,
                                  const char *webhook_timestamp, const char *webhook_signature,
                                  const void *body, size_t body_length, int64_t now,
                                  int64_t tolerance);

/* Stripe: Stripe-Signature "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]", hex HMAC-SHA256 over
 * "<t>.<body>" keyed with the secret string's own bytes (`whsec_…` included, not decoded).
 * Elements are split on ',' and at their first '='; unknown keys are ignored, any v1 may match.
 * MALFORMED: an element without '=', no t, or more than one t. */
hook_verdict hook_verify_stripe(const char *secret, const char *stripe_signature, const void *body,
                                size_t body_length, int64_t now, int64_t tolerance);

/* GitHub: X-Hub-Signature-256 "sha256=<hex>" over the body, keyed with the secret's own bytes.
 * No timestamp is signed (replays are stopped by X-GitHub-Delivery deduplication, elsewhere).
 * MALFORMED: the value does not start with "sha256=". */
hook_verdict hook_verify_github(const char *secret, const char *hub_signature_256, const void *body,
                                size_t body_length);

/* Header lookup for hook_verify: the first value of a lowercase header name, or NULL. */
typedef const char *(*hook_header_lookup)(const void *context, const char *lowercase_name);

/* Verifies a request under scheme, fetching the headers the scheme needs through lookup. */
hook_verdict hook_verify(hook_scheme scheme, const char *secret, hook_header_lookup lookup,
                         const void *context, const void *body, size_t body_length, int64_t now,
                         int64_t tolerance);

#endif

#ifndef HERALD_HOOKS_SIGNATURE_H
#define HERALD_HOOKS_SIGNATURE_H
/* Owns: webhook secrets and the HMAC-SHA256 signatures of the Standard Webhooks specification
 * (SPEC §7): parsing a `whsec_…` secret into key bytes, generating one, and composing the
 * `webhook-signature` header of an outbound delivery, with a rotated-out secret signing beside
 * the current one. Pure apart from the random bytes of webhook_secret_generate. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/text.h"

#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_PREFIX_LENGTH 6
/* Key sizes the Standard Webhooks specification recommends for secrets herald signs with. */
#define WEBHOOK_KEY_MIN_BYTES 24
#define WEBHOOK_KEY_MAX_BYTES 64
/* Largest key any parsed secret may hold (inbound sources are given a little more room). */
#define WEBHOOK_KEY_CAPACITY 128
#define WEBHOOK_GENERATED_KEY_BYTES 24
/* "whsec_" + base64 of 24 bytes. */
#define WEBHOOK_GENERATED_SECRET_LENGTH (WEBHOOK_SECRET_PREFIX_LENGTH + 32)
#define WEBHOOK_HMAC_BYTES 32
/* "v1," + base64 of an HMAC-SHA256. */
#define WEBHOOK_SIGNATURE_LENGTH (3 + 44)

typedef struct webhook_key {
    unsigned char bytes[WEBHOOK_KEY_CAPACITY];
    size_t length;
} webhook_key;

typedef enum webhook_secret_status {
    WEBHOOK_SECRET_OK,
    WEBHOOK_SECRET_MISSING_PREFIX, /* the prefix was required and is absent */
    WEBHOOK_SECRET_NOT_BASE64,     /* the part after the prefix is not canonical base64 */
    WEBHOOK_SECRET_EMPTY,          /* decodes to no bytes */
    WEBHOOK_SECRET_TOO_SHORT,      /* fewer than WEBHOOK_KEY_MIN_BYTES (endpoint secrets only) */
    WEBHOOK_SECRET_TOO_LONG,       /* more than the limit of the function that was called */
} webhook_secret_status;

/* One human sentence for a status, for a 400's "message". */
const char *webhook_secret_status_message(webhook_secret_status status);

/* A Standard Webhooks secret as an inbound source is given it: `whsec_` + base64, or the base64
 * alone. Key of 1..WEBHOOK_KEY_CAPACITY bytes. */
webhook_secret_status webhook_secret_parse(const char *secret, size_t length, webhook_key *key);

/* A secret supplied for an outbound endpoint (POST /v1/webhooks): the `whsec_` prefix is required
 * and the key must hold WEBHOOK_KEY_MIN_BYTES..WEBHOOK_KEY_MAX_BYTES bytes. key may be NULL. */
webhook_secret_status webhook_secret_parse_for_endpoint(const char *secret, size_t length,
                                                        webhook_key *key);

/* Writes a fresh "whsec_" + base64(24 bytes from RAND_bytes) and a NUL into out. false — out
 * holds "" — when the random generator fails. */
bool webhook_secret_generate(char out[WEBHOOK_GENERATED_SECRET_LENGTH + 1]);

/* HMAC-SHA256 of the concatenation of up to three parts under key bytes (any part may have
 * length 0). false only when OpenSSL fails. The building block of every scheme. */
bool webhook_hmac_sha256(const void *key, size_t key_length, const void *part1, size_t length1,
                         const void *part2, size_t length2, const void *part3, size_t length3,
                         unsigned char out[WEBHOOK_HMAC_BYTES]);

/* The Standard Webhooks HMAC over "<id>.<timestamp>.<body>"; timestamp is the exact text of the
 * webhook-timestamp header. */
bool webhook_standard_hmac(const webhook_key *key, const char *id, size_t id_length,
                           const char *timestamp, size_t timestamp_length, const void *body,
                           size_t body_length, unsigned char out[WEBHOOK_HMAC_BYTES]);

/* Writes the webhook-timestamp value (decimal seconds) plus a NUL; returns its length. */
size_t webhook_timestamp_format(int64_t unix_seconds, char out[24]);

/* Appends the webhook-signature value "v1,<base64>" for the current key and, when previous is not
 * NULL (a rotated-out secret still inside its 24 h overlap), " v1,<base64>" for it. false when
 * OpenSSL fails or out's allocation failed; out is then unspecified. */
bool webhook_signature_append(text *out, const webhook_key *current, const webhook_key *previous,
                              const char *id, size_t id_length, int64_t unix_seconds,
                              const void *body, size_t body_length);

#endif

#include "hooks/signature.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/encoding.h"

const char *webhook_secret_status_message(webhook_secret_status status) {
    switch (status) {
    case WEBHOOK_SECRET_OK:
        return "The secret is valid.";
    case WEBHOOK_SECRET_MISSING_PREFIX:
        return "The secret must start with whsec_ followed by base64.";
    case WEBHOOK_SECRET_NOT_BASE64:
        return "The secret after whsec_ must be canonical (padded) base64.";
    case WEBHOOK_SECRET_EMPTY:
        return "The secret must not be empty.";
    case WEBHOOK_SECRET_TOO_SHORT:
        return "The secret must decode to at least 24 bytes.";
    case WEBHOOK_SECRET_TOO_LONG:
        return "The secret decodes to too many bytes (at most 64 for an endpoint).";
    }
    return "The secret is invalid.";
}

static bool has_prefix(const char *secret, size_t length) {
    return length >= WEBHOOK_SECRET_PREFIX_LENGTH &&
           memcmp(secret, WEBHOOK_SECRET_PREFIX, WEBHOOK_SECRET_PREFIX_LENGTH) == 0;
}

/* Decodes the base64 after an optional prefix; capacity bounds the key. */
static webhook_secret_status decode_secret(const char *secret, size_t length, size_t capacity,
                                           webhook_key *key) {
    if (has_prefix(secret, length)) {
        secret += WEBHOOK_SECRET_PREFIX_LENGTH;
        length -= WEBHOOK_SECRET_PREFIX_LENGTH;
    }
    if (length == 0) return WEBHOOK_SECRET_EMPTY;
    /* Base64 of at most capacity bytes is at most BASE64_LENGTH(capacity) symbols. */
    if (length > BASE64_LENGTH(capacity)) return WEBHOOK_SECRET_TOO_LONG;
    unsigned char scratch[BASE64_LENGTH(WEBHOOK_KEY_CAPACITY) / 4 * 3];
    size_t decoded = 0;
    webhook_secret_status status = WEBHOOK_SECRET_OK;
    if (!base64_decode(secret, length, scratch, sizeof scratch, &decoded))
        status = WEBHOOK_SECRET_NOT_BASE64;
    else if (decoded == 0)
        status = WEBHOOK_SECRET_EMPTY;
    else if (decoded > capacity)
        status = WEBHOOK_SECRET_TOO_LONG;
    else if (key) {
        memcpy(key->bytes, scratch, decoded);
        key->length = decoded;
    }
    OPENSSL_cleanse(scratch, sizeof scratch);
    return status;
}

webhook_secret_status webhook_secret_parse(const char *secret, size_t length, webhook_key *key) {
    if (!secret) return WEBHOOK_SECRET_EMPTY;
    return decode_secret(secret, length, WEBHOOK_KEY_CAPACITY, key);
}

webhook_secret_status webhook_secret_parse_for_endpoint(const char *secret, size_t length,
                                                        webhook_key *key) {
    if (!secret || !has_prefix(secret, length)) return WEBHOOK_SECRET_MISSING_PREFIX;
    webhook_key parsed;
    webhook_secret_status status = decode_secret(secret, length, WEBHOOK_KEY_MAX_BYTES, &parsed);
    if (status != WEBHOOK_SECRET_OK) return status;
    if (parsed.length < WEBHOOK_KEY_MIN_BYTES) return WEBHOOK_SECRET_TOO_SHORT;
    if (key) *key = parsed;
    return WEBHOOK_SECRET_OK;
}

bool webhook_secret_generate(char out[WEBHOOK_GENERATED_SECRET_LENGTH + 1]) {
    unsigned char bytes[WEBHOOK_GENERATED_KEY_BYTES];
    out[0] = '\0';
    if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
    memcpy(out, WEBHOOK_SECRET_PREFIX, WEBHOOK_SECRET_PREFIX_LENGTH);
    base64_encode(bytes, sizeof bytes, out + WEBHOOK_SECRET_PREFIX_LENGTH);
    OPENSSL_cleanse(bytes, sizeof bytes);
    return true;
}

bool webhook_hmac_sha256(const void *key, size_t key_length, const void *part1, size_t length1,
                         const void *part2, size_t length2, const void *part3, size_t length3,
                         unsigned char out[WEBHOOK_HMAC_BYTES]) {
    /* EVP_MAC_init treats a NULL key as "keep the previous one"; an empty key is a real key. */
    static const unsigned char empty = 0;
    if (key_length == 0) key = &empty;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t written = 0;
    bool ok = ctx && EVP_MAC_init(ctx, key, key_length, params) &&
              (length1 == 0 || EVP_MAC_update(ctx, part1, length1)) &&
              (length2 == 0 || EVP_MAC_update(ctx, part2, length2)) &&
              (length3 == 0 || EVP_MAC_update(ctx, part3, length3)) &&
              EVP_MAC_final(ctx, out, &written, WEBHOOK_HMAC_BYTES) &&
              written == WEBHOOK_HMAC_BYTES;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

bool webhook_standard_hmac(const webhook_key *key, const char *id, size_t id_length,
                           const char *timestamp, size_t timestamp_length, const void *body,
                           size_t body_length, unsigned char out[WEBHOOK_HMAC_BYTES]) {
    /* "<id>.<timestamp>." is hashed in one part so the body is never copied. */
    text prefix;
    text_init(&prefix);
    text_append(&prefix, id, id_length);
    text_append_char(&prefix, '.');
    text_append(&prefix, timestamp, timestamp_length);
    text_append_char(&prefix, '.');
    bool ok = !text_failed(&prefix) &&
              webhook_hmac_sha256(key->bytes, key->length, prefix.data, prefix.length, body,
                                  body_length, NULL, 0, out);
    text_free(&prefix);
    return ok;
}

size_t webhook_timestamp_format(int64_t unix_seconds, char out[24]) {
    int n = snprintf(out, 24, "%" PRId64, unix_seconds);
    return n > 0 ? (size_t)n : 0;
}

static bool append_one(text *out, const webhook_key *key, const char *id, size_t id_length,
                       const char *timestamp, size_t timestamp_length, const void *body,
                       size_t body_length) {
    unsigned char mac[WEBHOOK_HMAC_BYTES];
    if (!webhook_standard_hmac(key, id, id_length, timestamp, timestamp_length, body, body_length,
                               mac))
        return false;
    text_append_cstring(out, "v1,");
    base64_append(out, mac, sizeof mac);
    return true;
}

bool webhook_signature_append(text *out, const webhook_key *current, const webhook_key *previous,
                              const char *id, size_t id_length, int64_t unix_seconds,
                              const void *body, size_t body_length) {
    char timestamp[24];
    size_t timestamp_length = webhook_timestamp_format(unix_seconds, timestamp);
    if (!append_one(out, current, id, id_length, timestamp, timestamp_length, body, body_length))
        return false;
    if (previous) {
        text_append_char(out, ' ');
        if (!append_one(out, previous, id, id_length, timestamp, timestamp_length, body,
                        body_length))
            return false;
    }
    return !text_failed(out);
}

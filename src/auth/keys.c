/* API key sets (SPEC §9): parsing and the constant-time matcher. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/auth.h"

const char *auth_status_message(auth_status status) {
    switch (status) {
    case AUTH_OK:
        return "OK.";
    case AUTH_KEY_EMPTY:
        return "An API key is empty.";
    case AUTH_KEY_BAD_CHARACTER:
        return "An API key must be visible ASCII without spaces or commas.";
    case AUTH_KEY_TOO_LONG:
        return "An API key is longer than 1024 bytes.";
    case AUTH_ORIGIN_INVALID:
        return "A CORS origin must be '*', 'null' or scheme://host[:port] without a path.";
    case AUTH_NO_MEMORY:
        return "Out of memory.";
    }
    return "Unknown error.";
}

void auth_key_set_init(auth_key_set *set) {
    memset(set, 0, sizeof *set);
}

void auth_key_set_free(auth_key_set *set) {
    if (!set) return;
    if (set->digests) OPENSSL_cleanse(set->digests, set->capacity * sizeof set->digests[0]);
    free(set->digests);
    auth_key_set_init(set);
}

static bool sha256(const char *data, size_t length, unsigned char digest[32]) {
    unsigned int digest_length = 0;
    return EVP_Digest(length ? data : "", length, digest, &digest_length, EVP_sha256(), NULL) ==
               1 &&
           digest_length == 32;
}

static auth_status key_check(const char *key, size_t length) {
    if (!key || length == 0) return AUTH_KEY_EMPTY;
    if (length > AUTH_KEY_MAX_LENGTH) return AUTH_KEY_TOO_LONG;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x21 || c > 0x7E || c == ',') return AUTH_KEY_BAD_CHARACTER;
    }
    return AUTH_OK;
}

static bool reserve(auth_key_set *set, size_t extra) {
    if (set->count + extra <= set->capacity) return true;
    size_t capacity = set->capacity ? set->capacity : 4;
    while (capacity < set->count + extra)
        capacity *= 2;
    unsigned char(*digests)[32] = calloc(capacity, sizeof digests[0]);
    if (!digests) return false;
    if (set->count) memcpy(digests, set->digests, set->count * sizeof digests[0]);
    if (set->digests) OPENSSL_cleanse(set->digests, set->capacity * sizeof set->digests[0]);
    free(set->digests);
    set->digests = digests;
    set->capacity = capacity;
    return true;
}

auth_status auth_key_set_add(auth_key_set *set, const char *key, size_t length) {
    auth_status status = key_check(key, length);
    if (status != AUTH_OK) return status;
    if (!reserve(set, 1)) return AUTH_NO_MEMORY;
    if (!sha256(key, length, set->digests[set->count])) return AUTH_NO_MEMORY;
    set->count++;
    return AUTH_OK;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

auth_status auth_key_set_add_list(auth_key_set *set, const char *list, size_t length,
                                  size_t *failed_item) {
    size_t before = set->count, item = 0, i = 0;
    if (failed_item) *failed_item = 0;
    if (!list) length = 0;
    for (;;) {
        item++;
        const char *comma = length > i ? memchr(list + i, ',', length - i) : NULL;
        size_t end = comma ? (size_t)(comma - list) : length;
        size_t start = i, stop = end;
        while (start < stop && is_blank(list[start]))
            start++;
        while (stop > start && is_blank(list[stop - 1]))
            stop--;
        auth_status status = auth_key_set_add(set, list + start, stop - start);
        if (status != AUTH_OK) {
            if (set->count > before)
                OPENSSL_cleanse(set->digests[before], (set->count - before) * 32);
            set->count = before;
            if (failed_item) *failed_item = item;
            return status;
        }
        if (!comma) return AUTH_OK;
        i = end + 1;
    }
}

bool auth_api_key_matches(const auth_key_set *set, const char *candidate, size_t length) {
    if (!set || !candidate) return false;
    unsigned char digest[32];
    if (!sha256(candidate, length, digest)) return false;
    /* Every key is compared; the result is accumulated without branching on it. */
    unsigned int found = 0;
    for (size_t i = 0; i < set->count; i++)
        found |= (unsigned int)(CRYPTO_memcmp(digest, set->digests[i], sizeof digest) == 0);
    OPENSSL_cleanse(digest, sizeof digest);
    return found != 0;
}

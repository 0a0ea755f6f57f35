/* HS256 JWT verification (RFC 7519 / 7515 compact form) and herald's claims (SPEC §9). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth.h"
#include "core/json.h"
#include "hub/topic.h"

/* ---- base64url (RFC 4648 §5) without padding, canonical ------------------------------------ */

static int base64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* out holds at least length * 3 / 4 bytes. false on a character outside the alphabet
 * (padding included), a length that leaves one lone character, or unused trailing bits that are
 * not zero (so each byte string has exactly one encoding). */
static bool base64url_decode(const char *s, size_t length, unsigned char *out, size_t *out_length) {
    if (length % 4 == 1) return false;
    size_t o = 0, i = 0;
    uint32_t bits = 0;
    for (; i < length; i++) {
        int v = base64url_value((unsigned char)s[i]);
        if (v < 0) return false;
        bits = bits << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (unsigned char)(bits >> 16);
            out[o++] = (unsigned char)(bits >> 8);
            out[o++] = (unsigned char)bits;
            bits = 0;
        }
    }
    switch (length % 4) {
    case 2: /* 12 bits: one byte and 4 zero bits */
        if (bits & 0xF) return false;
        out[o++] = (unsigned char)(bits >> 4);
        break;
    case 3: /* 18 bits: two bytes and 2 zero bits */
        if (bits & 0x3) return false;
        out[o++] = (unsigned char)(bits >> 10);
        out[o++] = (unsigned char)(bits >> 2);
        break;
    default:
        break;
    }
    *out_length = o;
    return true;
}

/* ---- numbers ------------------------------------------------------------------------------- */

static int64_t saturating_add(int64_t a, int64_t b) {
    if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
    return a + b;
}

/* The ceiling of a validated JSON number (NumericDate may have a fraction or an exponent),
 * exactly, saturated to [-INT64_MAX, INT64_MAX]. With integer `now`: now >= exp exactly when
 * now >= ceil(exp), and now < nbf exactly when now < ceil(nbf). */
static int64_t number_ceiling(const char *p, size_t n) {
    size_t i = 0;
    bool negative = false;
    if (i < n && p[i] == '-') {
        negative = true;
        i++;
    }
    size_t int_start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    size_t int_length = i - int_start, frac_start = i, frac_length = 0;
    if (i < n && p[i] == '.') {
        frac_start = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        frac_length = i - frac_start;
    }
    int64_t exponent = 0;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        bool exponent_negative = false;
        if (i < n && (p[i] == '+' || p[i] == '-')) exponent_negative = p[i++] == '-';
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            if (exponent < 1000000) exponent = exponent * 10 + (p[i] - '0');
            i++;
        }
        if (exponent_negative) exponent = -exponent;
    }
    /* value = digits * 10^scale, with `whole` digits before the decimal point. */
    int64_t digits = (int64_t)(int_length + frac_length);
    int64_t whole = digits + exponent - (int64_t)frac_length;
    uint64_t magnitude = 0;
    bool saturated = false, remainder = false;
    for (int64_t k = 0; k < digits; k++) {
        char c = k < (int64_t)int_length ? p[int_start + (size_t)k]
                                         : p[frac_start + (size_t)(k - (int64_t)int_length)];
        unsigned d = (unsigned)(c - '0');
        if (k >= whole) {
            if (d) remainder = true;
        } else if (!saturated) {
            if (magnitude > ((uint64_t)INT64_MAX - d) / 10)
                saturated = true;
            else
                magnitude = magnitude * 10 + d;
        }
    }
    for (int64_t k = digits; k < whole && magnitude != 0 && !saturated; k++) {
        if (magnitude > (uint64_t)INT64_MAX / 10)
            saturated = true;
        else
            magnitude *= 10;
    }
    if (saturated) magnitude = (uint64_t)INT64_MAX;
    if (negative) return -(int64_t)magnitude; /* the ceiling of a negative value truncates */
    return saturating_add((int64_t)magnitude, remainder ? 1 : 0);
}

/* ---- claims -------------------------------------------------------------------------------- */

void auth_claims_init(auth_claims *claims) {
    memset(claims, 0, sizeof *claims);
}

static void pattern_list_free(auth_pattern_list *list) {
    for (size_t i = 0; i < list->count; i++)
        free(list->patterns[i]);
    free(list->patterns);
    list->patterns = NULL;
    list->count = 0;
}

void auth_claims_free(auth_claims *claims) {
    if (!claims) return;
    pattern_list_free(&claims->subscribe);
    pattern_list_free(&claims->publish);
    auth_claims_init(claims);
}

bool auth_claims_allow_subscribe(const auth_claims *claims, const char *topic_or_pattern,
                                 size_t length) {
    if (!claims || !topic_pattern_valid(topic_or_pattern, length)) return false;
    for (size_t i = 0; i < claims->subscribe.count; i++) {
        const char *claim = claims->subscribe.patterns[i];
        if (auth_pattern_covers(claim, strlen(claim), topic_or_pattern, length)) return true;
    }
    return false;
}

bool auth_claims_allow_publish(const auth_claims *claims, const char *topic, size_t length) {
    if (!claims || !topic_name_valid(topic, length)) return false;
    for (size_t i = 0; i < claims->publish.count; i++) {
        const char *claim = claims->publish.patterns[i];
        if (topic_pattern_matches(claim, strlen(claim), topic, length)) return true;
    }
    return false;
}

const char *auth_jwt_verdict_name(auth_jwt_verdict verdict) {
    switch (verdict) {
    case AUTH_JWT_OK:
        return "ok";
    case AUTH_JWT_MALFORMED:
        return "malformed";
    case AUTH_JWT_BAD_SIGNATURE:
        return "bad_signature";
    case AUTH_JWT_WRONG_ALGORITHM:
        return "wrong_algorithm";
    case AUTH_JWT_EXPIRED:
        return "expired";
    case AUTH_JWT_NOT_YET_VALID:
        return "not_yet_valid";
    case AUTH_JWT_NO_MEMORY:
        return "no_memory";
    }
    return "unknown";
}

const char *auth_jwt_verdict_message(auth_jwt_verdict verdict) {
    switch (verdict) {
    case AUTH_JWT_OK:
        return "The token is valid.";
    case AUTH_JWT_MALFORMED:
        return "The token is not a well-formed HS256 JWT with exp and valid herald claims.";
    case AUTH_JWT_BAD_SIGNATURE:
        return "The token's signature does not match.";
    case AUTH_JWT_WRONG_ALGORITHM:
        return "The token must be signed with HS256.";
    case AUTH_JWT_EXPIRED:
        return "The token has expired.";
    case AUTH_JWT_NOT_YET_VALID:
        return "The token is not valid yet.";
    case AUTH_JWT_NO_MEMORY:
        return "The server ran out of memory while checking the token.";
    }
    return "The token was refused.";
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* Counts a member; false when it repeats. */
static bool first_time(json_span key, const char *name, json_span value, json_span *slot,
                       bool *matched) {
    if (*matched || !json_string_equals(key, name)) return true;
    *matched = true;
    if (slot->data) return false;
    *slot = value;
    return true;
}

/* An array of strings, each a valid topic pattern, into list. */
static auth_jwt_verdict parse_patterns(json_span array, auth_pattern_list *list) {
    if (json_kind_of(array) != JSON_KIND_ARRAY) return AUTH_JWT_MALFORMED;
    size_t cursor = 0, count = 0;
    json_span element;
    while (json_array_next(array, &cursor, &element))
        count++;
    if (count == 0) return AUTH_JWT_OK;
    list->patterns = calloc(count, sizeof *list->patterns);
    if (!list->patterns) return AUTH_JWT_NO_MEMORY;
    text decoded;
    text_init(&decoded);
    auth_jwt_verdict verdict = AUTH_JWT_OK;
    cursor = 0;
    while (verdict == AUTH_JWT_OK && list->count < count &&
           json_array_next(array, &cursor, &element)) {
        if (json_kind_of(element) != JSON_KIND_STRING) {
            verdict = AUTH_JWT_MALFORMED;
            break;
        }
        text_clear(&decoded);
        if (!json_string_decode(element, &decoded)) {
            verdict = text_failed(&decoded) ? AUTH_JWT_NO_MEMORY : AUTH_JWT_MALFORMED;
            break;
        }
        if (!topic_pattern_valid(decoded.data, decoded.length)) {
            verdict = AUTH_JWT_MALFORMED;
            break;
        }
        char *copy = malloc(decoded.length + 1);
        if (!copy) {
            verdict = AUTH_JWT_NO_MEMORY;
            break;
        }
        memcpy(copy, decoded.data, decoded.length);
        copy[decoded.length] = '\0';
        list->patterns[list->count++] = copy;
    }
    text_free(&decoded);
    return verdict;
}

static auth_jwt_verdict parse_herald(json_span herald, auth_claims *claims) {
    if (json_kind_of(herald) != JSON_KIND_OBJECT) return AUTH_JWT_MALFORMED;
    json_span key, value, subscribe = {0}, publish = {0};
    size_t cursor = 0;
    while (json_object_next(herald, &cursor, &key, &value)) {
        bool matched = false;
        if (!first_time(key, "subscribe", value, &subscribe, &matched) ||
            !first_time(key, "publish", value, &publish, &matched))
            return AUTH_JWT_MALFORMED;
    }
    auth_jwt_verdict verdict = AUTH_JWT_OK;
    if (subscribe.data) verdict = parse_patterns(subscribe, &claims->subscribe);
    if (verdict == AUTH_JWT_OK && publish.data) verdict = parse_patterns(publish, &claims->publish);
    return verdict;
}

static bool valid_object(const unsigned char *data, size_t length) {
    return json_validate((const char *)data, length, NULL) &&
           json_kind_of((json_span){(const char *)data, length}) == JSON_KIND_OBJECT;
}

static auth_jwt_verdict check_header(const unsigned char *data, size_t length) {
    if (!valid_object(data, length)) return AUTH_JWT_MALFORMED;
    json_span header = {(const char *)data, length}, key, value;
    json_span alg = {0}, typ = {0}, crit = {0};
    size_t cursor = 0;
    while (json_object_next(header, &cursor, &key, &value)) {
        bool matched = false;
        if (!first_time(key, "alg", value, &alg, &matched) ||
            !first_time(key, "typ", value, &typ, &matched) ||
            !first_time(key, "crit", value, &crit, &matched))
            return AUTH_JWT_MALFORMED;
    }
    /* No extension is understood, so any "crit" must be refused (RFC 7515 §4.1.11). */
    if (crit.data) return AUTH_JWT_MALFORMED;
    if (typ.data && json_kind_of(typ) != JSON_KIND_STRING) return AUTH_JWT_MALFORMED;
    if (!alg.data || json_kind_of(alg) != JSON_KIND_STRING || !json_string_equals(alg, "HS256"))
        return AUTH_JWT_WRONG_ALGORITHM;
    return AUTH_JWT_OK;
}

static bool signature_matches(const char *signed_part, size_t signed_length,
                              const unsigned char *signature, size_t signature_length,
                              const unsigned char *secret, size_t secret_length) {
    if (signature_length != 32 || !secret || secret_length == 0 || secret_length > INT_MAX)
        return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_length, (const unsigned char *)signed_part,
              signed_length, mac, &mac_length) ||
        mac_length != 32)
        return false;
    bool equal = CRYPTO_memcmp(mac, signature, 32) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return equal;
}

static auth_jwt_verdict check_payload(const unsigned char *data, size_t length, int64_t now,
                                      int64_t leeway, auth_claims *claims) {
    if (!valid_object(data, length)) return AUTH_JWT_MALFORMED;
    json_span payload = {(const char *)data, length}, key, value;
    json_span exp = {0}, nbf = {0}, iat = {0}, herald = {0};
    size_t cursor = 0;
    while (json_object_next(payload, &cursor, &key, &value)) {
        bool matched = false;
        if (!first_time(key, "exp", value, &exp, &matched) ||
            !first_time(key, "nbf", value, &nbf, &matched) ||
            !first_time(key, "iat", value, &iat, &matched) ||
            !first_time(key, "herald", value, &herald, &matched))
            return AUTH_JWT_MALFORMED;
    }
    if (!exp.data || json_kind_of(exp) != JSON_KIND_NUMBER) return AUTH_JWT_MALFORMED;
    if (nbf.data && json_kind_of(nbf) != JSON_KIND_NUMBER) return AUTH_JWT_MALFORMED;
    if (iat.data && json_kind_of(iat) != JSON_KIND_NUMBER) return AUTH_JWT_MALFORMED;
    if (herald.data) {
        auth_jwt_verdict verdict = parse_herald(herald, claims);
        if (verdict != AUTH_JWT_OK) return verdict;
    }
    if (leeway < 0) leeway = 0;
    claims->expires_at = number_ceiling(exp.data, exp.length);
    if (saturating_add(now, -leeway) >= claims->expires_at) return AUTH_JWT_EXPIRED;
    if (nbf.data && saturating_add(now, leeway) < number_ceiling(nbf.data, nbf.length))
        return AUTH_JWT_NOT_YET_VALID;
    return AUTH_JWT_OK;
}

static auth_jwt_verdict verify(const char *token, size_t length, const unsigned char *secret,
                               size_t secret_length, int64_t now, int64_t leeway,
                               auth_claims *claims) {
    if (!token || length == 0 || length > AUTH_JWT_MAX_LENGTH) return AUTH_JWT_MALFORMED;
    const char *first = memchr(token, '.', length);
    if (!first) return AUTH_JWT_MALFORMED;
    size_t header_length = (size_t)(first - token);
    const char *payload = first + 1;
    const char *second = memchr(payload, '.', length - header_length - 1);
    if (!second) return AUTH_JWT_MALFORMED;
    size_t payload_length = (size_t)(second - payload);
    const char *signature = second + 1;
    size_t signature_length = length - header_length - payload_length - 2;
    if (memchr(signature, '.', signature_length)) return AUTH_JWT_MALFORMED; /* JWE, extra */
    if (header_length == 0 || payload_length == 0) return AUTH_JWT_MALFORMED;

    /* Decoded sizes are at most 3/4 of the encoded ones, so one token-sized buffer holds all. */
    unsigned char decoded[AUTH_JWT_MAX_LENGTH];
    unsigned char *header_bytes = decoded;
    size_t header_bytes_length = 0, payload_bytes_length = 0, signature_bytes_length = 0;
    if (!base64url_decode(token, header_length, header_bytes, &header_bytes_length))
        return AUTH_JWT_MALFORMED;
    unsigned char *payload_bytes = header_bytes + header_bytes_length;
    if (!base64url_decode(payload, payload_length, payload_bytes, &payload_bytes_length))
        return AUTH_JWT_MALFORMED;
    unsigned char *signature_bytes = payload_bytes + payload_bytes_length;
    if (!base64url_decode(signature, signature_length, signature_bytes, &signature_bytes_length))
        return AUTH_JWT_MALFORMED;

    auth_jwt_verdict verdict = check_header(header_bytes, header_bytes_length);
    if (verdict != AUTH_JWT_OK) return verdict;
    /* Nothing in the payload is looked at before the signature is known to be good. */
    if (!signature_matches(token, header_length + 1 + payload_length, signature_bytes,
                           signature_bytes_length, secret, secret_length))
        return AUTH_JWT_BAD_SIGNATURE;
    return check_payload(payload_bytes, payload_bytes_length, now, leeway, claims);
}

auth_jwt_verdict auth_verify_jwt(const char *token, size_t length, const unsigned char *secret,
                                 size_t secret_length, int64_t now, int64_t leeway,
                                 auth_claims *claims) {
    auth_claims_init(claims);
    auth_jwt_verdict verdict = verify(token, length, secret, secret_length, now, leeway, claims);
    if (verdict != AUTH_JWT_OK) auth_claims_free(claims);
    return verdict;
}

#ifndef HERALD_AUTH_AUTH_H
#define HERALD_AUTH_AUTH_H
/* Owns: the pure access-control building blocks of SPEC §9 — API key sets compared in constant
 * time, HS256 JWT verification with herald's subscribe/publish claims (and the pattern
 * subsumption that checks a requested subscription pattern against them), extraction of a token
 * from Authorization / query / Cookie values, and the CORS origin list with its response headers.
 * No I/O and no event loop: every function takes what it needs (the clock included) and reports
 * errors as return values. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/text.h"

/* ---- configuration errors (API keys, CORS origins) -------------------------------------- */

typedef enum auth_status {
    AUTH_OK = 0,
    AUTH_KEY_EMPTY,         /* an empty key, or an empty item in a comma-separated list */
    AUTH_KEY_BAD_CHARACTER, /* keys are visible ASCII (0x21-0x7E) without ',' */
    AUTH_KEY_TOO_LONG,      /* over AUTH_KEY_MAX_LENGTH */
    AUTH_ORIGIN_INVALID,    /* not '*', 'null' or scheme://host[:port] */
    AUTH_NO_MEMORY,
} auth_status;

/* One human sentence, static. */
const char *auth_status_message(auth_status status);

/* ---- API keys ----------------------------------------------------------------------------- */

#define AUTH_KEY_MAX_LENGTH 1024

/* Holds only the SHA-256 digest of each key, never the key itself. */
typedef struct auth_key_set {
    unsigned char (*digests)[32];
    size_t count;
    size_t capacity;
} auth_key_set;

void auth_key_set_init(auth_key_set *set);
void auth_key_set_free(auth_key_set *set);
/* One key as given (e.g. one --api-key): 1..AUTH_KEY_MAX_LENGTH bytes of 0x21-0x7E except ','.
 * Nothing is trimmed. A duplicate is accepted (it changes nothing). */
auth_status auth_key_set_add(auth_key_set *set, const char *key, size_t length);
/* A comma-separated list (HERALD_API_KEYS): each item is trimmed of spaces and tabs, then added
 * as above. An empty item ("a,,b", "a,", or an empty / blank list) is rejected. All-or-nothing:
 * on failure the set is unchanged and *failed_item (1-based, may be NULL) names the item. */
auth_status auth_key_set_add_list(auth_key_set *set, const char *list, size_t length,
                                  size_t *failed_item);
/* true when candidate equals one of the keys. Constant time in the keys: the candidate is hashed
 * once and its digest compared with CRYPTO_memcmp against every key's digest, no early exit. The
 * time depends only on the candidate's length and the number of keys. */
bool auth_api_key_matches(const auth_key_set *set, const char *candidate, size_t length);

/* ---- topic pattern subsumption ------------------------------------------------------------ */

/* true when every topic that `requested` can match is also matched by `claim` (both topic
 * patterns, a plain topic name being a pattern without wildcards). false when either is not a
 * valid pattern. Works on segment structure and ignores the 200-byte topic limit, so it may
 * refuse a pattern whose only extra topics would be over-long; it never allows more. */
bool auth_pattern_covers(const char *claim, size_t claim_length, const char *requested,
                         size_t requested_length);

/* ---- JWT (HS256) -------------------------------------------------------------------------- */

#define AUTH_JWT_MAX_LENGTH 8192

typedef enum auth_jwt_verdict {
    AUTH_JWT_OK = 0,
    AUTH_JWT_MALFORMED,       /* shape, base64url, JSON, claims, size */
    AUTH_JWT_BAD_SIGNATURE,   /* HMAC mismatch, wrong length, empty signature or empty secret */
    AUTH_JWT_WRONG_ALGORITHM, /* header alg missing, not a string, or not exactly "HS256" */
    AUTH_JWT_EXPIRED,         /* now >= exp (+ leeway) */
    AUTH_JWT_NOT_YET_VALID,   /* now < nbf (- leeway) */
    AUTH_JWT_NO_MEMORY,
} auth_jwt_verdict;

typedef struct auth_pattern_list {
    char **patterns; /* NUL-terminated, each a valid topic pattern */
    size_t count;
} auth_pattern_list;

typedef struct auth_claims {
    auth_pattern_list subscribe;
    auth_pattern_list publish;
    int64_t expires_at; /* exp rounded up to whole seconds (saturated), for closing at expiry */
} auth_claims;

/* Verifies `header.payload.signature` (base64url without padding, canonical) with HMAC-SHA256
 * keyed by secret, then the claims at `now` (unix seconds) with `leeway` seconds of clock skew
 * (0 by default; negative counts as 0). Order: size and shape, base64url, header (JSON object,
 * no "crit", "alg" exactly "HS256"), signature (constant time), payload (JSON object: numeric
 * "exp" required, numeric "nbf"/"iat" optional, "herald" an object whose optional "subscribe" and
 * "publish" are arrays of valid topic patterns), then exp and nbf. A repeated alg/typ/crit/exp/
 * nbf/iat/herald/subscribe/publish member is malformed. Other claims are ignored.
 * claims is always initialised (empty unless AUTH_JWT_OK) and must be freed with
 * auth_claims_free. */
auth_jwt_verdict auth_verify_jwt(const char *token, size_t length, const unsigned char *secret,
                                 size_t secret_length, int64_t now, int64_t leeway,
                                 auth_claims *claims);
void auth_claims_init(auth_claims *claims);
void auth_claims_free(auth_claims *claims);
/* "ok", "malformed", "bad_signature", … */
const char *auth_jwt_verdict_name(auth_jwt_verdict verdict);
/* One human sentence for a 401 body. */
const char *auth_jwt_verdict_message(auth_jwt_verdict verdict);

/* Subscribing (or polling) a topic or pattern: some subscribe claim covers it
 * (auth_pattern_covers). false for an invalid topic/pattern. */
bool auth_claims_allow_subscribe(const auth_claims *claims, const char *topic_or_pattern,
                                 size_t length);
/* Publishing to a topic (a name, never a pattern): some publish claim matches it. */
bool auth_claims_allow_publish(const auth_claims *claims, const char *topic, size_t length);

/* ---- token extraction ---------------------------------------------------------------------- */

/* A token is 1+ bytes of visible ASCII (0x21-0x7E). */
bool auth_token_well_formed(const char *token, size_t length);
/* From an Authorization field value: optional SP/HTAB around, scheme "Bearer" (any case), one or
 * more SP, then a well-formed token running to the end. *token points into value. */
bool auth_token_from_authorization(const char *value, size_t length, const char **token,
                                   size_t *token_length);
/* From an already percent-decoded ?token= value: the value itself when well-formed. */
bool auth_token_from_query(const char *value, size_t length, const char **token,
                           size_t *token_length);
/* From a Cookie field value: the first cookie named exactly "herald_token" among pairs split on
 * ';' (SP/HTAB around names and values ignored). A value in double quotes is unquoted. The value
 * must be 1+ cookie-octets (RFC 6265: visible ASCII except '"', ',', ';', '\'); when the first
 * herald_token is empty or malformed, false (later ones are not tried). */
bool auth_token_from_cookie(const char *value, size_t length, const char **token,
                            size_t *token_length);

#define AUTH_COOKIE_NAME "herald_token"

/* ---- CORS --------------------------------------------------------------------------------- */

#define AUTH_ORIGIN_MAX_LENGTH 512

/* Entries are kept normalised: lower-case scheme and host, the default port (http 80, https
 * 443, ws 80, wss 443) dropped. */
typedef struct auth_cors_policy {
    bool any;        /* '*' was given */
    bool allow_null; /* 'null' was given */
    char **origins;
    size_t count;
} auth_cors_policy;

void auth_cors_init(auth_cors_policy *policy);
void auth_cors_free(auth_cors_policy *policy);
/* One --cors-origin value: "*", "null", or scheme://host[:port] (host: letters, digits, '-',
 * '.', '_' or a bracketed IPv6 literal; port 1-65535 without leading zeros; no userinfo, path,
 * query or trailing slash). */
auth_status auth_cors_add(auth_cors_policy *policy, const char *entry, size_t length);
/* true once any entry was added. */
bool auth_cors_configured(const auth_cors_policy *policy);
/* The request's Origin is allowed: it parses as an origin whose normalised form is listed, or
 * '*' is listed (except for "null", which must itself be listed). Also the WebSocket check. */
bool auth_cors_origin_allowed(const auth_cors_policy *policy, const char *origin, size_t length);

/* Appends the CORS lines ("Name: value\r\n") of an ordinary response; origin may be NULL
 * (no Origin header). Nothing when the policy is empty. Otherwise always "Vary: Origin", and
 * for an allowed origin before it:
 *   Access-Control-Allow-Origin: <origin as sent>   (or "*" when allowed only through '*')
 *   Access-Control-Allow-Credentials: true          (only when the origin is echoed)
 *   Access-Control-Expose-Headers: ETag, Herald-Epoch, Idempotent-Replayed, Retry-After
 * Returns whether the origin was allowed. */
bool auth_cors_append_headers(const auth_cors_policy *policy, const char *origin,
                              size_t origin_length, text *out);
/* The same for a preflight (OPTIONS) answer; request_headers is the
 * Access-Control-Request-Headers value or NULL. Nothing when the policy is empty; otherwise
 * always "Vary: Origin, Access-Control-Request-Headers", and for an allowed origin before it:
 *   Access-Control-Allow-Origin / -Credentials as above
 *   Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS
 *   Access-Control-Allow-Headers: <the requested names, re-joined with ", ", when they are a
 *       list of 1-32 tokens in at most 1024 bytes; else AUTH_CORS_DEFAULT_HEADERS>
 *   Access-Control-Max-Age: 600 */
bool auth_cors_append_preflight(const auth_cors_policy *policy, const char *origin,
                                size_t origin_length, const char *request_headers,
                                size_t request_headers_length, text *out);

#define AUTH_CORS_DEFAULT_HEADERS                                                                  \
    "Authorization, Content-Type, Idempotency-Key, If-None-Match, Last-Event-ID"

#endif

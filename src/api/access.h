#ifndef HERALD_API_ACCESS_H
#define HERALD_API_ACCESS_H
/* Owns: herald's access rules (SPEC §9) applied to requests — who may manage, publish and
 * subscribe — built from the auth/ building blocks, and the CORS answer for browsers.
 *
 * - API keys (--api-key / HERALD_API_KEYS): once any is set, managing and publishing need a key,
 *   unless a JWT's publish claim allows the topic. A key allows everything.
 * - JWTs (--jwt-secret): once set, subscribing (polling, SSE, WebSocket) needs a token whose
 *   subscribe claim covers the topic or pattern, or a key.
 * - Credentials come from "Authorization: Bearer", then ?token=, then the herald_token cookie.
 * - Refusals: 401 when no valid credential was presented, 403 when a valid one does not allow it.
 */
#include <stdbool.h>

#include "auth/auth.h"
#include "core/config.h"
#include "http/http_parser.h"
#include "http/url.h"

typedef struct access_policy {
    auth_key_set keys;
    unsigned char *jwt_secret;
    size_t jwt_secret_length;
    auth_cors_policy cors;
} access_policy;

int access_policy_build(access_policy *policy, const server_config *config, char *error,
                        size_t error_size);
void access_policy_free(access_policy *policy);
bool access_keys_configured(const access_policy *policy);
bool access_tokens_configured(const access_policy *policy);

typedef struct access_identity {
    bool admin;      /* presented a valid API key */
    bool has_claims; /* presented a valid JWT */
    auth_claims claims;
    bool presented;      /* some credential was sent */
    const char *refusal; /* why a presented credential was not accepted (for 401) */
} access_identity;

void access_identify(const access_policy *policy, const http_request *request,
                     const url_query *query, access_identity *identity);
void access_identity_free(access_identity *identity);

typedef enum access_decision {
    ACCESS_ALLOWED,
    ACCESS_UNAUTHORIZED,
    ACCESS_FORBIDDEN
} access_decision;

access_decision access_manage(const access_policy *policy, const access_identity *identity);
access_decision access_publish(const access_policy *policy, const access_identity *identity,
                               const char *topic);
access_decision access_subscribe(const access_policy *policy, const access_identity *identity,
                                 const char *pattern);
/* A refusal's message for the JSON error body. */
const char *access_refusal_message(const access_identity *identity, access_decision decision);

#endif

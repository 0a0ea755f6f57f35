#include "api/access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int access_policy_build(access_policy *policy, const server_config *config, char *error,
                        size_t error_size) {
    memset(policy, 0, sizeof *policy);
    auth_key_set_init(&policy->keys);
    auth_cors_init(&policy->cors);
    for (size_t i = 0; i < config->api_keys.count; i++) {
        const char *key = config->api_keys.items[i];
        auth_status status = auth_key_set_add(&policy->keys, key, strlen(key));
        if (status != AUTH_OK) {
            snprintf(error, error_size, "API key %zu is not usable: %s", i + 1,
                     auth_status_message(status));
            return -1;
        }
    }
    if (config->jwt_secret) {
        policy->jwt_secret_length = strlen(config->jwt_secret);
        policy->jwt_secret = (unsigned char *)strdup(config->jwt_secret);
        if (!policy->jwt_secret) {
            snprintf(error, error_size, "Out of memory.");
            return -1;
        }
    }
    for (size_t i = 0; i < config->cors_origins.count; i++) {
        const char *origin = config->cors_origins.items[i];
        auth_status status = auth_cors_add(&policy->cors, origin, strlen(origin));
        if (status != AUTH_OK) {
            snprintf(error, error_size, "CORS origin '%s' is not usable: %s", origin,
                     auth_status_message(status));
            return -1;
        }
    }
    return 0;
}

void access_policy_free(access_policy *policy) {
    auth_key_set_free(&policy->keys);
    auth_cors_free(&policy->cors);
    free(policy->jwt_secret);
    memset(policy, 0, sizeof *policy);
}

bool access_keys_configured(const access_policy *policy) {
    return policy->keys.count > 0;
}

bool access_tokens_configured(const access_policy *policy) {
    return policy->jwt_secret != NULL;
}

/* from_cookie: a cookie rides along with any request a browser makes, so it may carry a
 * subscriber token but never an API key. */
static bool find_token(const http_request *request, const url_query *query, const char **token,
                       size_t *length, bool *from_cookie) {
    *from_cookie = false;
    const char *authorization = http_request_header(request, "authorization");
    if (authorization &&
        auth_token_from_authorization(authorization, strlen(authorization), token, length))
        return true;
    const char *from_query = query ? url_query_get(query, "token") : NULL;
    if (from_query && auth_token_from_query(from_query, strlen(from_query), token, length))
        return true;
    const char *cookie = http_request_header(request, "cookie");
    if (cookie && auth_token_from_cookie(cookie, strlen(cookie), token, length)) {
        *from_cookie = true;
        return true;
    }
    return false;
}

void access_identify(const access_policy *policy, const http_request *request,
                     const url_query *query, access_identity *identity) {
    memset(identity, 0, sizeof *identity);
    auth_claims_init(&identity->claims);
    const char *token;
    size_t length;
    const char *authorization = http_request_header(request, "authorization");
    bool from_cookie;
    if (!find_token(request, query, &token, &length, &from_cookie)) {
        if (authorization) {
            identity->presented = true;
            identity->refusal = "The Authorization header must be 'Bearer <token>'.";
        }
        return;
    }
    identity->presented = true;
    if (!from_cookie && access_keys_configured(policy) &&
        auth_api_key_matches(&policy->keys, token, length)) {
        identity->admin = true;
        return;
    }
    if (!access_tokens_configured(policy)) {
        identity->refusal = "The credential is not a valid API key.";
        return;
    }
    auth_jwt_verdict verdict =
        auth_verify_jwt(token, length, policy->jwt_secret, policy->jwt_secret_length,
                        (int64_t)time(NULL), 0, &identity->claims);
    if (verdict == AUTH_JWT_OK)
        identity->has_claims = true;
    else
        identity->refusal = auth_jwt_verdict_message(verdict);
}

void access_identity_free(access_identity *identity) {
    auth_claims_free(&identity->claims);
}

static access_decision refuse(const access_identity *identity) {
    return identity->admin || identity->has_claims ? ACCESS_FORBIDDEN : ACCESS_UNAUTHORIZED;
}

access_decision access_manage(const access_policy *policy, const access_identity *identity) {
    if (!access_keys_configured(policy) || identity->admin) return ACCESS_ALLOWED;
    return refuse(identity);
}

access_decision access_publish(const access_policy *policy, const access_identity *identity,
                               const char *topic) {
    if (!access_keys_configured(policy) || identity->admin) return ACCESS_ALLOWED;
    if (identity->has_claims && auth_claims_allow_publish(&identity->claims, topic, strlen(topic)))
        return ACCESS_ALLOWED;
    return refuse(identity);
}

access_decision access_subscribe(const access_policy *policy, const access_identity *identity,
                                 const char *pattern) {
    if (!access_tokens_configured(policy) || identity->admin) return ACCESS_ALLOWED;
    if (identity->has_claims &&
        auth_claims_allow_subscribe(&identity->claims, pattern, strlen(pattern)))
        return ACCESS_ALLOWED;
    return refuse(identity);
}

const char *access_refusal_message(const access_identity *identity, access_decision decision) {
    if (decision == ACCESS_FORBIDDEN) return "The credential does not allow this topic or action.";
    if (identity->refusal) return identity->refusal;
    return "A credential is needed: send 'Authorization: Bearer <key or token>', ?token= or the "
           "herald_token cookie.";
}

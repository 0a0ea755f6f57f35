#include "api/router.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "core/text.h"
#include "hub/topic.h"
#include "ws/ws_session.h"

static bool path_is(const char *path, size_t length, const char *expected) {
    return strlen(expected) == length && memcmp(path, expected, length) == 0;
}

static bool method_is(const http_request *r, const char *method) {
    return strcmp(r->method, method) == 0;
}

static void method_not_allowed(connection *c, const char *allow) {
    char headers[128];
    snprintf(headers, sizeof headers, "Allow: %s\r\n", allow);
    char message[160];
    snprintf(message, sizeof message, "This path allows only %s.", allow);
    connection_respond_error(c, 405, "method_not_allowed", message, headers);
}

static void respond_health(connection *c, const char *status) {
    char body[64];
    int length = snprintf(body, sizeof body, "{\"status\":\"%s\"}", status);
    connection_respond(c, 200, "application/json", body, (size_t)length,
                       "Cache-Control: no-cache\r\n");
}

static void respond_metrics(api_request *r) {
    server *s = r->server;
    text t;
    text_init(&t);
    text_printf(&t,
                "# HELP herald_connections Open client connections.\n"
                "# TYPE herald_connections gauge\nherald_connections %zu\n"
                "# HELP herald_requests_total HTTP requests received.\n"
                "# TYPE herald_requests_total counter\nherald_requests_total %llu\n"
                "# HELP herald_events_published_total Events stored and fanned out.\n"
                "# TYPE herald_events_published_total counter\nherald_events_published_total %llu\n"
                "# HELP herald_subscriptions Live subscriptions (streams and long polls).\n"
                "# TYPE herald_subscriptions gauge\nherald_subscriptions %zu\n"
                "# HELP herald_topics Topics known to the store.\n"
                "# TYPE herald_topics gauge\nherald_topics %zu\n"
                "# HELP herald_last_event_id Newest event id.\n"
                "# TYPE herald_last_event_id gauge\nherald_last_event_id %llu\n",
                s->connection_count, (unsigned long long)s->requests_total,
                (unsigned long long)s->events_published, hub_subscription_count(s->hub),
                s->store ? store_topic_count(s->store) : 0,
                (unsigned long long)(s->store ? store_head_id(s->store) : 0));
    connection_respond(r->connection, 200, "text/plain; version=0.0.4", t.data, t.length, NULL);
    text_free(&t);
}

/* /v1/topics/{topic}/{verb}: the topic may contain '/' (raw or %2F); the last segment is the verb.
 */
static void route_topic(api_request *r, const char *rest, size_t rest_length) {
    connection *c = r->connection;
    const char *slash = NULL;
    for (size_t i = rest_length; i > 0; i--)
        if (rest[i - 1] == '/') {
            slash = rest + i - 1;
            break;
        }
    if (!slash) {
        connection_respond_error(c, 404, "not_found",
                                 "No such endpoint: topic paths end in /events, /stream or /ws.",
                                 NULL);
        return;
    }
    const char *verb = slash + 1;
    size_t verb_length = rest_length - (size_t)(verb - rest);
    text topic;
    text_init(&topic);
    if (!url_decode(rest, (size_t)(slash - rest), false, &topic) || !text_cstring(&topic) ||
        !topic_name_valid(topic.data, topic.length)) {
        text_free(&topic);
        connection_respond_error(
            c, 400, "invalid_topic",
            "The topic must be 1-200 bytes of letters, digits, '_.:@-' and '/' "
            "with no empty segment.",
            NULL);
        return;
    }
    r->topic = topic.data; /* freed by the router */
    const http_request *h = r->http;
    if (path_is(verb, verb_length, "events")) {
        if (method_is(h, "POST"))
            api_handle_publish(r);
        else if (method_is(h, "GET"))
            api_handle_poll(r);
        else
            method_not_allowed(c, "GET, POST");
    } else if (path_is(verb, verb_length, "stream")) {
        if (method_is(h, "GET"))
            api_handle_stream(r);
        else
            method_not_allowed(c, "GET");
    } else if (path_is(verb, verb_length, "ws")) {
        if (method_is(h, "GET"))
            ws_session_upgrade(r, true);
        else
            method_not_allowed(c, "GET");
    } else {
        connection_respond_error(c, 404, "not_found",
                                 "No such endpoint: topic paths end in /events, /stream or /ws.",
                                 NULL);
    }
}

bool api_allowed(api_request *r, access_decision decision) {
    if (decision == ACCESS_ALLOWED) return true;
    const char *message = access_refusal_message(&r->identity, decision);
    if (decision == ACCESS_FORBIDDEN)
        connection_respond_error(r->connection, 403, "forbidden", message, NULL);
    else
        connection_respond_error(r->connection, 401, "unauthorized", message,
                                 "WWW-Authenticate: Bearer\r\n");
    return false;
}

bool api_allowed_to_subscribe(api_request *r, const topic_selection *selection) {
    for (size_t i = 0; i < selection->count; i++)
        if (!api_allowed(r,
                         access_subscribe(r->server->access, &r->identity, selection->patterns[i])))
            return false;
    return true;
}

/* CORS: the headers every response of this request carries, and the preflight answer.
 * Returns true when the request was a preflight and has been answered. */
static bool apply_cors(connection *c, const http_request *h) {
    free(c->response_headers);
    c->response_headers = NULL;
    const access_policy *policy = c->server->access;
    if (!policy || !auth_cors_configured(&policy->cors)) return false;
    const char *origin = http_request_header(h, "origin");
    text headers;
    text_init(&headers);
    bool preflight = strcmp(h->method, "OPTIONS") == 0 && origin &&
                     http_request_header(h, "access-control-request-method");
    if (preflight) {
        const char *requested = http_request_header(h, "access-control-request-headers");
        if (!auth_cors_append_preflight(&policy->cors, origin, strlen(origin), requested,
                                        requested ? strlen(requested) : 0, &headers)) {
            text_free(&headers);
            connection_respond_error(c, 403, "forbidden",
                                     "This origin is not allowed (see --cors-origin).",
                                     "Vary: Origin\r\n");
            return true;
        }
        connection_respond(c, 204, NULL, NULL, 0, text_cstring(&headers));
        text_free(&headers);
        return true;
    }
    auth_cors_append_headers(&policy->cors, origin, origin ? strlen(origin) : 0, &headers);
    if (headers.length && text_cstring(&headers))
        c->response_headers = headers.data; /* owned by c */
    else
        text_free(&headers);
    return false;
}

/* A Host that a rebound DNS name would produce: a domain name (letters and dots) other than
 * localhost. IP literals and single-label names cannot be rebound by a web page's author. */
static bool host_is_rebindable_name(const char *host) {
    if (host[0] == '[') return false; /* an IPv6 literal */
    size_t length = strcspn(host, ":");
    bool letter = false, dot = false;
    for (size_t i = 0; i < length; i++) {
        if (isalpha((unsigned char)host[i])) letter = true;
        if (host[i] == '.') dot = true;
    }
    if (!letter || !dot) return false;
    static const char localhost[] = ".localhost";
    size_t suffix = sizeof localhost - 1;
    if (length >= suffix && strncasecmp(host + length - suffix, localhost, suffix) == 0)
        return false;
    if (length >= suffix + 1 && host[length - 1] == '.' &&
        strncasecmp(host + length - suffix - 1, localhost, suffix) == 0)
        return false;
    return true;
}

/* A browser sends Origin on cross-origin requests and WebSocket handshakes, and delivers a
 * no-cors POST or a WebSocket even though the page may not read the answer. So a page of another
 * site must not reach herald through a visitor's browser (CSRF): a request whose Origin is neither
 * herald's own nor allowed by --cors-origin is refused. An open herald (no keys) on loopback also
 * answers only to loopback Host names, so a rebound DNS name cannot reach it. */
static bool refuse_foreign_browser(connection *c, const http_request *h) {
    const access_policy *policy = c->server->access;
    const char *host = http_request_header(h, "host");
    if (policy && !access_keys_configured(policy) && !c->server->config.insecure && host &&
        host_is_rebindable_name(host)) {
        connection_respond_error(
            c, 403, "forbidden",
            "This herald has no API keys and answers only to localhost or an IP address "
            "in Host (a defence against DNS rebinding).",
            NULL);
        return true;
    }
    const char *origin = http_request_header(h, "origin");
    if (!origin) return false;
    if (host) {
        size_t host_length = strlen(host);
        for (const char *scheme = "http://"; scheme;
             scheme = strcmp(scheme, "http://") == 0 ? "https://" : NULL) {
            size_t scheme_length = strlen(scheme);
            if (strlen(origin) == scheme_length + host_length &&
                strncasecmp(origin, scheme, scheme_length) == 0 &&
                strcasecmp(origin + scheme_length, host) == 0)
                return false; /* herald's own origin */
        }
    }
    if (policy && auth_cors_configured(&policy->cors) &&
        auth_cors_origin_allowed(&policy->cors, origin, strlen(origin)))
        return false;
    connection_respond_error(
        c, 403, "forbidden",
        "Requests from this web page's origin are not allowed (see --cors-origin).",
        "Vary: Origin\r\n");
    return true;
}

void api_handle_request(connection *c, const http_request *h) {
    api_request r = {.connection = c, .server = c->server, .http = h};
    free(c->response_headers);
    c->response_headers = NULL;
    if (refuse_foreign_browser(c, h)) return;
    if (apply_cors(c, h)) return;
    const char *target = h->target;
    const char *question = strchr(target, '?');
    size_t path_length = question ? (size_t)(question - target) : strlen(target);
    if (question && !url_query_parse(question + 1, strlen(question + 1), &r.query)) {
        connection_respond_error(c, 400, "invalid_parameter",
                                 "The query string is malformed or has more than 64 parameters.",
                                 NULL);
        return;
    }
    if (c->server->access)
        access_identify(c->server->access, h, &r.query, &r.identity);
    else
        auth_claims_init(&r.identity.claims);
    static const char topics_prefix[] = "/v1/topics/";
    if (path_is(target, path_length, "/healthz")) {
        if (method_is(h, "GET"))
            respond_health(c, "ok");
        else
            method_not_allowed(c, "GET");
    } else if (path_is(target, path_length, "/readyz")) {
        if (!method_is(h, "GET"))
            method_not_allowed(c, "GET");
        else if (c->server->store && !c->server->shutting_down)
            respond_health(c, "ready");
        else
            connection_respond_error(c, 503, "unavailable", "The store is not available.", NULL);
    } else if (path_is(target, path_length, "/metrics")) {
        if (method_is(h, "GET"))
            respond_metrics(&r);
        else
            method_not_allowed(c, "GET");
    } else if (path_is(target, path_length, "/v1/events")) {
        if (method_is(h, "POST"))
            api_handle_publish_batch(&r);
        else if (method_is(h, "GET"))
            api_handle_poll(&r);
        else
            method_not_allowed(c, "GET, POST");
    } else if (path_is(target, path_length, "/v1/ws")) {
        if (method_is(h, "GET"))
            ws_session_upgrade(&r, false);
        else
            method_not_allowed(c, "GET");
    } else if (path_is(target, path_length, "/v1/stream")) {
        if (method_is(h, "GET"))
            api_handle_stream(&r);
        else
            method_not_allowed(c, "GET");
    } else if (path_length >= 12 && memcmp(target, "/v1/webhooks", 12) == 0 &&
               (path_length == 12 || target[12] == '/')) {
        api_handle_webhooks(&r, target + 12, path_length - 12);
    } else if (path_length >= 11 && memcmp(target, "/v1/sources", 11) == 0 &&
               (path_length == 11 || target[11] == '/')) {
        api_handle_sources(&r, target + 11, path_length - 11);
    } else if (path_length > 10 && memcmp(target, "/v1/hooks/", 10) == 0) {
        api_handle_hook(&r, target + 10, path_length - 10);
    } else if (path_length > sizeof topics_prefix - 1 &&
               memcmp(target, topics_prefix, sizeof topics_prefix - 1) == 0) {
        route_topic(&r, target + sizeof topics_prefix - 1,
                    path_length - (sizeof topics_prefix - 1));
    } else {
        connection_respond_error(c, 404, "not_found", "No such endpoint.", NULL);
    }
    free(r.topic);
    url_query_free(&r.query);
    access_identity_free(&r.identity);
}

#ifndef HERALD_API_REQUEST_H
#define HERALD_API_REQUEST_H
/* Owns: what the router learned about a request, handed to one handler for the duration of
 * its synchronous part; handlers copy what they keep. Also the topic selection shared by
 * polling and streams: the topics and patterns a request names, resolved against the store. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/access.h"
#include "http/http_parser.h"
#include "http/url.h"
#include "net/server.h"

#define SELECTION_MAX_PATTERNS 32

typedef struct api_request {
    connection *connection;
    server *server;
    const http_request *http;
    url_query query;
    char *topic; /* decoded {topic} of /v1/topics/{topic}/{verb}, else NULL */
    access_identity identity;
} api_request;

typedef struct topic_selection {
    char **patterns; /* owned copies: names or patterns (sized to fit: streams are long-lived) */
    size_t count;
} topic_selection;

/* From the path's topic, or from every ?topic= of the query. On bad input it answers 400 and
 * returns false. */
bool topic_selection_from_request(api_request *r, topic_selection *out);
void topic_selection_free(topic_selection *s);

/* Answers 401 (with WWW-Authenticate) or 403 unless allowed; true when allowed. */
bool api_allowed(api_request *r, access_decision decision);
/* Subscribing to every topic or pattern of the selection (polling and streams). */
bool api_allowed_to_subscribe(api_request *r, const topic_selection *selection);

/* The names of known topics matching the selection (borrowed from the store's table). */
typedef struct resolved_topics {
    const char **names;
    size_t count;
    size_t capacity;
    uint64_t head_id;         /* newest id among them (0: none) */
    uint64_t trimmed_through; /* newest id that has left history among them */
} resolved_topics;

bool topic_selection_resolve(const topic_selection *s, const store *st, resolved_topics *out);
void resolved_topics_free(resolved_topics *r);
/* The newest trimmed id among the resolved topics as the store knows it now. Call it after a
 * store_read: the read brings trimmed_through up to date with the snapshot it saw. */
uint64_t resolved_trimmed_through(const resolved_topics *r, const store *st);

/* One live subscription per pattern of the selection; NULL when out of memory (then none is
 * left subscribed). Unsubscribe with unsubscribe_selection. */
hub_subscription **subscribe_selection(hub *h, const topic_selection *s,
                                       hub_deliver_callback deliver, void *subscriber);
void unsubscribe_selection(hub *h, hub_subscription **subscriptions, size_t count);

/* The store's key for a deduplication id: a namespace ("p:" publishers' Idempotency-Keys and
 * WebSocket idempotency_key, "h:<source>:" inbound webhooks) so one kind can never answer for
 * another, then the id itself, or its SHA-256 when longer than 200 bytes. NULL when key is NULL. */
const char *idempotency_store_key(text *out, const char *namespace_prefix, const char *key,
                                  size_t length);

/* Parses a decimal event id ("0".."18446744073709551615"). */
bool parse_event_id(const char *text, uint64_t *out);

void api_handle_publish(api_request *r);
void api_handle_publish_batch(api_request *r);
void api_handle_poll(api_request *r);
void api_handle_stream(api_request *r);
/* /v1/webhooks[/...]: rest is what follows "/v1/webhooks" ("" or "/wh_1/deliveries"...). */
void api_handle_webhooks(api_request *r, const char *rest, size_t rest_length);
/* /v1/sources[/...] and POST /v1/hooks/{name}. */
void api_handle_sources(api_request *r, const char *rest, size_t rest_length);
void api_handle_hook(api_request *r, const char *name, size_t name_length);

#endif

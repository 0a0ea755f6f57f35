#ifndef HERALD_HUB_H
#define HERALD_HUB_H
/* Owns: live subscriptions and fan-out of committed events. A subscription is to one topic or
 * one pattern; publishing finds the matching subscriptions through an index (a hash of exact
 * topics and a segment trie of patterns), never by scanning every subscription.
 *
 * Loop thread only. deliver callbacks may unsubscribe any subscription (their own included) and
 * subscribe new ones while hub_publish is running; a subscription removed during a publish gets
 * no further deliveries, and one added during a publish gets none of that event. */
#include <stddef.h>

#include "core/event.h"

typedef struct hub hub;
typedef struct hub_subscription hub_subscription;

/* subscriber is the caller's context (e.g. the connection). */
typedef void (*hub_deliver_callback)(void *subscriber, event *e);

hub *hub_create(void);
/* All subscriptions must have been removed. */
void hub_destroy(hub *h);

/* pattern must be valid (topic_pattern_valid). Returns NULL when out of memory. */
hub_subscription *hub_subscribe(hub *h, const char *pattern, size_t pattern_length,
                                hub_deliver_callback deliver, void *subscriber);
void hub_unsubscribe(hub *h, hub_subscription *subscription);

/* Calls deliver once per matching subscription (a subscriber with two matching subscriptions is
 * called twice; transports skip ids they already sent). */
void hub_publish(hub *h, event *e);

size_t hub_subscription_count(const hub *h);

#endif

#ifndef HERALD_HUB_INTERNAL_H
#define HERALD_HUB_INTERNAL_H
/* Owns: introspection of the hub's index, for tests only. */
#include <stddef.h>

#include "hub/hub.h"

typedef struct hub_stats {
    size_t exact_topics;      /* exact_entry count: topics with an exact subscription */
    size_t trie_nodes;        /* pattern trie nodes, the root not counted */
    size_t deferred;          /* subscriptions removed during a publish, not yet freed */
    size_t subscription_size; /* bytes of one subscription (before malloc overhead) */
} hub_stats;

hub_stats hub_get_stats(const hub *h);

#endif

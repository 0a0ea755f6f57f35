#include "hub/hub.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hub/hub_internal.h"
#include "hub/topic.h"

/* The index.
 *
 * - Exact subscriptions (no wildcard): a hash table from topic to an exact_entry that holds the
 *   topic string once and the list of its subscriptions.
 * - Pattern subscriptions: a trie over segments. A node's named children live in one hash table
 *   for the whole trie, keyed by (parent node, segment); its '*' child hangs off the node itself.
 *   A node holds the subscriptions whose pattern ends at it ("ends", e.g. a/ * ends at the '*'
 *   node) and those whose pattern is the node's path followed by '/ **' ("rest"); the root's
 *   "rest" list holds the pattern '**'. The pattern string is never stored per subscription: it is
 *   the path of the node.
 *
 * Subscription lists are intrusive, circular and doubly linked, so subscribe and unsubscribe are
 * O(1) after the lookup; publish costs the exact lookup, the trie nodes on matching paths and one
 * step per matching subscription.
 *
 * (A space splits slash-star pairs in these comments.)
 *
 * Re-entrancy: while any publish runs (depth > 0) nothing is unlinked or freed. An unsubscribed
 * subscription is flagged removed (never delivered again) and chained onto a deferred list that
 * the outermost publish drains when it finishes; list heads therefore never change under a walk.
 * New subscriptions are appended at the tail of their list and record the publish clock; a
 * publish only delivers to subscriptions whose clock is older than its own, so one added during
 * a publish does not get that event (but does get the events of later, even nested, publishes).
 * Hash tables may grow while a publish is running, so the walk never keeps a pointer into a
 * bucket array across a callback, only pointers to entries and nodes, which stay put. */

/* ---- hashing: SipHash-1-3 with a per-hub random key (topics come from clients) ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t read_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash13(const uint64_t key[2], const void *data, size_t length) {
    const unsigned char *in = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    size_t whole = length & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = read_u64_le(in + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)length << 56;
    for (size_t i = 0; i < (length & 7); i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* ---- an intrusive chained hash table; entries start with a hash_link ---- */

typedef struct hash_link {
    struct hash_link *next;
    uint32_t hash;
    uint32_t key_length; /* topic or segment length, kept here to fill the padding */
} hash_link;

typedef struct hash_table {
    hash_link **buckets;
    size_t mask; /* bucket count - 1; the count is a power of two */
    size_t count;
} hash_table;

#define HASH_MIN_BUCKETS 16

static bool table_init(hash_table *t) {
    t->buckets = calloc(HASH_MIN_BUCKETS, sizeof *t->buckets);
    t->mask = HASH_MIN_BUCKETS - 1;
    t->count = 0;
    return t->buckets != NULL;
}

/* Failure to resize only costs speed: chains get longer. */
static void table_resize(hash_table *t, size_t buckets) {
    hash_link **fresh = calloc(buckets, sizeof *fresh);
    if (!fresh) return;
    for (size_t i = 0; i <= t->mask; i++) {
        hash_link *l = t->buckets[i];
        while (l) {
            hash_link *next = l->next;
            size_t at = l->hash & (buckets - 1);
            l->next = fresh[at];
            fresh[at] = l;
            l = next;
        }
    }
    free(t->buckets);
    t->buckets = fresh;
    t->mask = buckets - 1;
}

static void table_insert(hash_table *t, hash_link *l) {
    if (t->count >= t->mask + 1 && (t->mask + 1) <= SIZE_MAX / (2 * sizeof(hash_link *)))
        table_resize(t, (t->mask + 1) * 2);
    size_t at = l->hash & t->mask;
    l->next = t->buckets[at];
    t->buckets[at] = l;
    t->count++;
}

static void table_remove(hash_table *t, hash_link *l) {
    hash_link **p = &t->buckets[l->hash & t->mask];
    while (*p != l)
        p = &(*p)->next;
    *p = l->next;
    t->count--;
    if (t->mask + 1 > HASH_MIN_BUCKETS && t->count < (t->mask + 1) / 8)
        table_resize(t, (t->mask + 1) / 2);
}

static hash_link *table_first(const hash_table *t, uint32_t hash) {
    return t->buckets[hash & t->mask];
}

/* ---- subscriptions and the index ---- */

enum {
    SUB_EXACT = 0, /* owner is an exact_entry */
    SUB_ENDS = 1,  /* owner is a trie_node, in its "ends" list */
    SUB_REST = 2,  /* owner is a trie_node, in its "rest" list ('/ **') */
    SUB_KIND_MASK = 3,
    SUB_REMOVED = 4,
    SUB_FLAG_BITS = 3,
};

struct hub_subscription {
    hub_subscription *next, *prev; /* circular list of the owner */
    hub_deliver_callback deliver;
    union {
        void *subscriber;
        hub_subscription *next_removed; /* once removed: the deferred-free chain */
    };
    void *owner;    /* exact_entry or trie_node */
    uint64_t state; /* publish clock at subscribe << SUB_FLAG_BITS | flags */
};
_Static_assert(sizeof(hub_subscription) <= 5 * sizeof(void *) + sizeof(uint64_t),
               "a subscription is per connection: keep it small");

typedef struct exact_entry {
    hash_link link; /* key: the topic; link.key_length is its length */
    hub_subscription *subscriptions;
    char topic[]; /* NUL-terminated */
} exact_entry;

typedef struct trie_node {
    hash_link link; /* key: (parent, segment); link.key_length is the segment's length */
    struct trie_node *parent;
    struct trie_node *star;  /* the '*' child */
    hub_subscription *ends;  /* patterns ending at this node */
    hub_subscription *rest;  /* patterns "<this node's path>/ **" */
    uint32_t named_children; /* children in the edge table */
    char segment[];          /* "*" for a star node, "" for the root */
} trie_node;

struct hub {
    hash_table exact;
    hash_table edges;
    trie_node *root;
    uint64_t key[2];
    uint64_t clock; /* incremented by every publish */
    unsigned depth; /* publishes running */
    size_t count;   /* live subscriptions */
    size_t nodes;   /* trie nodes but the root */
    hub_subscription *removed;
};

/* The publish clock fits in the state word above the flag bits. */
#define CLOCK_LIMIT (UINT64_MAX >> SUB_FLAG_BITS)

static void list_append(hub_subscription **head, hub_subscription *s) {
    if (!*head) {
        s->next = s->prev = s;
        *head = s;
        return;
    }
    hub_subscription *tail = (*head)->prev;
    s->prev = tail;
    s->next = *head;
    tail->next = s;
    (*head)->prev = s;
}

static void list_unlink(hub_subscription **head, hub_subscription *s) {
    if (s->next == s) {
        *head = NULL;
        return;
    }
    s->prev->next = s->next;
    s->next->prev = s->prev;
    if (*head == s) *head = s->next;
}

static uint32_t exact_hash(const hub *h, const char *topic, size_t length) {
    return (uint32_t)siphash13(h->key, topic, length);
}

static uint64_t segment_hash(const hub *h, const char *segment, size_t length) {
    return siphash13(h->key, segment, length);
}

static uint32_t edge_hash(const trie_node *parent, uint64_t segment_hash) {
    return (uint32_t)(segment_hash ^ mix64((uint64_t)(uintptr_t)parent));
}

static exact_entry *exact_find(const hub *h, const char *topic, size_t length, uint32_t hash) {
    for (hash_link *l = table_first(&h->exact, hash); l; l = l->next) {
        exact_entry *x = (exact_entry *)l;
        if (l->hash == hash && l->key_length == length && memcmp(x->topic, topic, length) == 0)
            return x;
    }
    return NULL;
}

static trie_node *edge_find(const hub *h, const trie_node *parent, const char *segment,
                            size_t length, uint32_t hash) {
    for (hash_link *l = table_first(&h->edges, hash); l; l = l->next) {
        trie_node *n = (trie_node *)l;
        if (l->hash == hash && n->parent == parent && l->key_length == length &&
            memcmp(n->segment, segment, length) == 0)
            return n;
    }
    return NULL;
}

static trie_node *node_create(trie_node *parent, const char *segment, size_t length) {
    trie_node *n = calloc(1, sizeof *n + length + 1);
    if (!n) return NULL;
    n->parent = parent;
    n->link.key_length = (uint32_t)length;
    memcpy(n->segment, segment, length);
    n->segment[length] = '\0';
    return n;
}

static bool node_is_star(const trie_node *n) {
    return n->parent && n->parent->star == n;
}

/* Frees n and its now-empty ancestors (never the root). */
static void prune(hub *h, trie_node *n) {
    while (n != h->root && !n->ends && !n->rest && !n->star && n->named_children == 0) {
        trie_node *parent = n->parent;
        if (node_is_star(n)) {
            parent->star = NULL;
        } else {
            table_remove(&h->edges, &n->link);
            parent->named_children--;
        }
        free(n);
        h->nodes--;
        n = parent;
    }
}

/* The node at the end of the segments of pattern[0, length), created as needed; NULL when out
 * of memory (after pruning whatever this call created). length may be 0: the root. */
static trie_node *trie_path(hub *h, const char *pattern, size_t length) {
    trie_node *n = h->root;
    size_t i = 0;
    while (i < length) {
        const char *segment = pattern + i;
        const char *slash = memchr(segment, '/', length - i);
        size_t n_length = slash ? (size_t)(slash - segment) : length - i;
        trie_node *child;
        if (n_length == 1 && segment[0] == '*') {
            child = n->star;
            if (!child) {
                child = node_create(n, "*", 1);
                if (!child) goto fail;
                n->star = child;
                h->nodes++;
            }
        } else {
            uint32_t hash = edge_hash(n, segment_hash(h, segment, n_length));
            child = edge_find(h, n, segment, n_length, hash);
            if (!child) {
                child = node_create(n, segment, n_length);
                if (!child) goto fail;
                child->link.hash = hash;
                table_insert(&h->edges, &child->link);
                n->named_children++;
                h->nodes++;
            }
        }
        n = child;
        i += n_length + 1;
    }
    return n;
fail:
    prune(h, n);
    return NULL;
}

hub *hub_create(void) {
    hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (getrandom(h->key, sizeof h->key, GRND_NONBLOCK) != (ssize_t)sizeof h->key) {
        /* No entropy yet: still distinct per process and hub, if weaker. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        h->key[0] = mix64((uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30));
        h->key[1] = mix64((uint64_t)(uintptr_t)h ^ h->key[0]);
    }
    h->root = node_create(NULL, "", 0);
    if (!h->root || !table_init(&h->exact) || !table_init(&h->edges)) {
        free(h->root);
        free(h->exact.buckets);
        free(h->edges.buckets);
        free(h);
        return NULL;
    }
    return h;
}

static void free_list(hub_subscription *head) {
    if (!head) return;
    hub_subscription *s = head;
    do {
        hub_subscription *next = s->next;
        free(s);
        s = next;
    } while (s != head);
}

static void free_node(trie_node *n) {
    free_list(n->ends);
    free_list(n->rest);
    free(n);
}

/* Frees n's chain of '*' descendants (star, star->star, ...), then n. Named children are in the
 * edge table and freed from there. */
static void free_node_and_stars(trie_node *n) {
    trie_node *star = n->star;
    while (star) {
        trie_node *next = star->star;
        free_node(star);
        star = next;
    }
    free_node(n);
}

static void free_table(hash_table *t, void (*free_entry)(hash_link *)) {
    for (size_t i = 0; i <= t->mask; i++) {
        hash_link *l = t->buckets[i];
        while (l) {
            hash_link *next = l->next;
            free_entry(l);
            l = next;
        }
    }
    free(t->buckets);
}

static void free_exact(hash_link *l) {
    free_list(((exact_entry *)l)->subscriptions);
    free(l);
}

static void free_edge(hash_link *l) {
    free_node_and_stars((trie_node *)l);
}

void hub_destroy(hub *h) {
    if (!h) return;
    /* Every subscription should be gone; free whatever is left rather than leak it. */
    free_table(&h->exact, free_exact);
    free_table(&h->edges, free_edge);
    free_node_and_stars(h->root);
    free(h);
}

hub_subscription *hub_subscribe(hub *h, const char *pattern, size_t pattern_length,
                                hub_deliver_callback deliver, void *subscriber) {
    if (!deliver || !topic_pattern_valid(pattern, pattern_length)) return NULL;
    hub_subscription *s = malloc(sizeof *s);
    if (!s) return NULL;
    s->deliver = deliver;
    s->subscriber = subscriber;

    if (!topic_is_pattern(pattern, pattern_length)) {
        uint32_t hash = exact_hash(h, pattern, pattern_length);
        exact_entry *x = exact_find(h, pattern, pattern_length, hash);
        if (!x) {
            x = malloc(sizeof *x + pattern_length + 1);
            if (!x) {
                free(s);
                return NULL;
            }
            x->link.hash = hash;
            x->link.key_length = (uint32_t)pattern_length;
            x->subscriptions = NULL;
            memcpy(x->topic, pattern, pattern_length);
            x->topic[pattern_length] = '\0';
            table_insert(&h->exact, &x->link);
        }
        s->owner = x;
        s->state = h->clock << SUB_FLAG_BITS | SUB_EXACT;
        list_append(&x->subscriptions, s);
    } else {
        bool rest = pattern_length >= 2 && pattern[pattern_length - 1] == '*' &&
                    pattern[pattern_length - 2] == '*';
        /* "a/b/ **" ends at the node for "a/b"; "**" alone at the root. */
        size_t path_length = rest ? (pattern_length > 2 ? pattern_length - 3 : 0) : pattern_length;
        trie_node *n = trie_path(h, pattern, path_length);
        if (!n) {
            free(s);
            return NULL;
        }
        s->owner = n;
        s->state = h->clock << SUB_FLAG_BITS | (rest ? SUB_REST : SUB_ENDS);
        list_append(rest ? &n->rest : &n->ends, s);
    }
    h->count++;
    return s;
}

static void unlink_and_free(hub *h, hub_subscription *s) {
    unsigned kind = (unsigned)(s->state & SUB_KIND_MASK);
    if (kind == SUB_EXACT) {
        exact_entry *x = s->owner;
        list_unlink(&x->subscriptions, s);
        if (!x->subscriptions) {
            table_remove(&h->exact, &x->link);
            free(x);
        }
    } else {
        trie_node *n = s->owner;
        list_unlink(kind == SUB_REST ? &n->rest : &n->ends, s);
        prune(h, n);
    }
    free(s);
}

void hub_unsubscribe(hub *h, hub_subscription *s) {
    if (!s || (s->state & SUB_REMOVED)) return;
    h->count--;
    if (h->depth == 0) {
        unlink_and_free(h, s);
        return;
    }
    /* A publish may be walking this list (or standing on s): unlink once it is over. */
    s->state |= SUB_REMOVED;
    s->next_removed = h->removed;
    h->removed = s;
}

/* Delivers e to the live subscriptions of the list at *head that are older than this publish.
 * The head is re-read on entry only: it cannot change while any publish runs, since nothing is
 * unlinked then; appended subscriptions are reached but skipped by the clock test. */
static void deliver_list(hub_subscription *const *head, event *e, uint64_t clock) {
    hub_subscription *first = *head;
    if (!first) return;
    hub_subscription *s = first;
    do {
        uint64_t state = s->state;
        if (!(state & SUB_REMOVED) && (state >> SUB_FLAG_BITS) < clock)
            s->deliver(s->subscriber, e);
        s = s->next;
    } while (s != first);
}

typedef struct publish_walk {
    const char *topic;
    uint16_t start[TOPIC_MAX_LENGTH / 2 + 1];
    uint16_t length[TOPIC_MAX_LENGTH / 2 + 1];
    uint64_t hash[TOPIC_MAX_LENGTH / 2 + 1]; /* segment hashes, computed on first use */
    bool hashed[TOPIC_MAX_LENGTH / 2 + 1];
    size_t segments;
    event *e;
    uint64_t clock;
} publish_walk;

/* n has matched the first i segments. */
static void walk_trie(hub *h, publish_walk *w, trie_node *n, size_t i) {
    if (i == w->segments) {
        deliver_list(&n->ends, w->e, w->clock);
        return;
    }
    if (n->rest) deliver_list(&n->rest, w->e, w->clock);
    if (n->named_children) {
        if (!w->hashed[i]) {
            w->hash[i] = segment_hash(h, w->topic + w->start[i], w->length[i]);
            w->hashed[i] = true;
        }
        trie_node *child =
            edge_find(h, n, w->topic + w->start[i], w->length[i], edge_hash(n, w->hash[i]));
        if (child) walk_trie(h, w, child, i + 1);
    }
    if (n->star) walk_trie(h, w, n->star, i + 1);
}

static void drain_removed(hub *h) {
    while (h->removed) {
        hub_subscription *s = h->removed;
        h->removed = s->next_removed;
        unlink_and_free(h, s);
    }
}

void hub_publish(hub *h, event *e) {
    if (!e || !e->topic || e->topic_length == 0 || e->topic_length > TOPIC_MAX_LENGTH) return;
    if (h->clock == CLOCK_LIMIT) return; /* 2^61 publishes: not in this universe */
    uint64_t clock = ++h->clock;
    h->depth++;

    uint32_t hash = exact_hash(h, e->topic, e->topic_length);
    exact_entry *x = exact_find(h, e->topic, e->topic_length, hash);
    if (x) deliver_list(&x->subscriptions, e, clock);

    /* Skip the trie when it holds no patterns at all. */
    trie_node *root = h->root;
    if (root->rest || root->star || root->named_children) {
        publish_walk w;
        w.topic = e->topic;
        w.e = e;
        w.clock = clock;
        w.segments = 0;
        size_t i = 0;
        for (;;) {
            const char *slash = memchr(e->topic + i, '/', e->topic_length - i);
            size_t n = slash ? (size_t)(slash - (e->topic + i)) : e->topic_length - i;
            /* Not a valid topic name: no pattern can match it. */
            if (n == 0 || w.segments == TOPIC_MAX_LENGTH / 2 + 1) goto done;
            w.start[w.segments] = (uint16_t)i;
            w.length[w.segments] = (uint16_t)n;
            w.hashed[w.segments] = false;
            w.segments++;
            if (!slash) break;
            i += n + 1;
        }
        walk_trie(h, &w, root, 0);
    }
done:
    if (--h->depth == 0) drain_removed(h);
}

size_t hub_subscription_count(const hub *h) {
    return h->count;
}

hub_stats hub_get_stats(const hub *h) {
    hub_stats stats = {
        .exact_topics = h->exact.count,
        .trie_nodes = h->nodes,
        .subscription_size = sizeof(hub_subscription),
    };
    for (const hub_subscription *s = h->removed; s; s = s->next_removed)
        stats.deferred++;
    return stats;
}

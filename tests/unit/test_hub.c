#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event.h"
#include "hub/hub.h"
#include "hub/hub_internal.h"
#include "hub/topic.h"

static event *make_event(const char *topic) {
    event *e = event_create(topic, strlen(topic), "message", true, "{}", 2);
    assert_non_null(e);
    return e;
}

static void publish(hub *h, const char *topic) {
    event *e = make_event(topic);
    hub_publish(h, e);
    event_release(e);
}

static hub_subscription *subscribe(hub *h, const char *pattern, hub_deliver_callback deliver,
                                   void *subscriber) {
    hub_subscription *s = hub_subscribe(h, pattern, strlen(pattern), deliver, subscriber);
    assert_non_null(s);
    return s;
}

static void assert_index_empty(const hub *h) {
    hub_stats stats = hub_get_stats(h);
    assert_int_equal(hub_subscription_count(h), 0);
    assert_int_equal(stats.exact_topics, 0);
    assert_int_equal(stats.trie_nodes, 0);
    assert_int_equal(stats.deferred, 0);
}

/* ---- a subscriber that counts and remembers the last topic ---- */

typedef struct recorder {
    int calls;
    char last_topic[TOPIC_MAX_LENGTH + 1];
    event *last_event;
} recorder;

static void record(void *subscriber, event *e) {
    recorder *r = subscriber;
    r->calls++;
    r->last_event = e;
    snprintf(r->last_topic, sizeof r->last_topic, "%s", e->topic);
}

static void test_exact_and_pattern_delivery(void **state) {
    hub *h = hub_create();
    assert_non_null(h);
    static const char *patterns[] = {
        "orders/1", "orders/*", "orders/**", "orders", "**",    "*",   "a/*/c",
        "a/**",     "*/*/c",    "a/b/c",     "*/b/**", "a/*/*", "b/1",
    };
    enum { PATTERNS = sizeof patterns / sizeof patterns[0] };
    static const char *topics[] = {
        "orders/1", "orders/1/items", "orders",  "orders/2", "a",     "a/b",
        "a/b/c",    "a/x/c",          "a/b/c/d", "b/1",      "x/b/y", "zzz"};
    recorder rec[PATTERNS];
    memset(rec, 0, sizeof rec);
    hub_subscription *subs[PATTERNS];
    for (size_t i = 0; i < PATTERNS; i++)
        subs[i] = subscribe(h, patterns[i], record, &rec[i]);
    assert_int_equal(hub_subscription_count(h), PATTERNS);

    for (size_t t = 0; t < sizeof topics / sizeof topics[0]; t++) {
        int before[PATTERNS];
        for (size_t i = 0; i < PATTERNS; i++)
            before[i] = rec[i].calls;
        event *e = make_event(topics[t]);
        hub_publish(h, e);
        for (size_t i = 0; i < PATTERNS; i++) {
            bool expect = topic_pattern_matches(patterns[i], strlen(patterns[i]), topics[t],
                                                strlen(topics[t]));
            if (rec[i].calls - before[i] != (expect ? 1 : 0))
                fail_msg("pattern %s topic %s: %d deliveries, expected %d", patterns[i], topics[t],
                         rec[i].calls - before[i], expect);
            if (expect) assert_ptr_equal(rec[i].last_event, e); /* the same event, not a copy */
        }
        event_release(e);
    }
    /* spot checks independent of topic_pattern_matches */
    assert_int_equal(rec[0].calls, 1);  /* orders/1 */
    assert_int_equal(rec[1].calls, 2);  /* orders/{*}: orders/1, orders/2 */
    assert_int_equal(rec[2].calls, 3);  /* orders/{**}: orders/1, orders/1/items, orders/2 */
    assert_int_equal(rec[3].calls, 1);  /* orders */
    assert_int_equal(rec[4].calls, 12); /* {**} */
    assert_int_equal(rec[5].calls, 3);  /* {*}: orders, a, zzz */
    assert_int_equal(rec[6].calls, 2);  /* a/{*}/c: a/b/c, a/x/c */
    assert_int_equal(rec[7].calls, 4);  /* a/{**}: a/b, a/b/c, a/x/c, a/b/c/d */

    for (size_t i = 0; i < PATTERNS; i++)
        hub_unsubscribe(h, subs[i]);
    assert_index_empty(h);
    hub_destroy(h);
}

static void test_counts_and_duplicates(void **state) {
    hub *h = hub_create();
    assert_non_null(h);
    recorder r = {0};
    assert_int_equal(hub_subscription_count(h), 0);
    hub_subscription *a = subscribe(h, "t", record, &r);
    hub_subscription *b = subscribe(h, "t", record, &r);
    hub_subscription *c = subscribe(h, "*", record, &r);
    assert_int_equal(hub_subscription_count(h), 3);
    publish(h, "t");
    assert_int_equal(r.calls, 3); /* one subscriber, three matching subscriptions */
    hub_unsubscribe(h, b);
    assert_int_equal(hub_subscription_count(h), 2);
    publish(h, "t");
    assert_int_equal(r.calls, 5);
    publish(h, "u");
    assert_int_equal(r.calls, 6);
    publish(h, "t/u");
    assert_int_equal(r.calls, 6);
    hub_unsubscribe(h, a);
    hub_unsubscribe(h, c);
    publish(h, "t");
    assert_int_equal(r.calls, 6);
    assert_index_empty(h);

    /* invalid patterns are refused */
    assert_null(hub_subscribe(h, "a*b", 3, record, &r));
    assert_null(hub_subscribe(h, "", 0, record, &r));
    assert_null(hub_subscribe(h, "a/**/b", 6, record, &r));
    assert_null(hub_subscribe(h, "a//b", 4, record, &r));
    assert_int_equal(hub_subscription_count(h), 0);

    /* a subscription is small: no pattern copy, a few pointers */
    assert_true(hub_get_stats(h).subscription_size <= 48);
    hub_destroy(h);
}

/* ---- unsubscribing during delivery ---- */

typedef struct actor {
    hub *h;
    int calls;
    hub_subscription *self;
    hub_subscription *victim; /* unsubscribed on the first call */
} actor;

static void unsubscribe_self(void *subscriber, event *e) {
    actor *a = subscriber;
    a->calls++;
    hub_unsubscribe(a->h, a->self);
    a->self = NULL;
}

static void unsubscribe_victim(void *subscriber, event *e) {
    actor *a = subscriber;
    a->calls++;
    if (a->victim) hub_unsubscribe(a->h, a->victim);
    a->victim = NULL;
}

static void test_unsubscribe_self_during_delivery(void **state) {
    hub *h = hub_create();
    actor first = {.h = h}, last = {.h = h}, pattern = {.h = h};
    recorder middle = {0};
    first.self = subscribe(h, "t", unsubscribe_self, &first);
    subscribe(h, "t", record, &middle);
    last.self = subscribe(h, "t", unsubscribe_self, &last);
    pattern.self = subscribe(h, "**", unsubscribe_self, &pattern);
    publish(h, "t");
    assert_int_equal(first.calls, 1);
    assert_int_equal(middle.calls, 1);
    assert_int_equal(last.calls, 1);
    assert_int_equal(pattern.calls, 1);
    assert_int_equal(hub_subscription_count(h), 1);
    assert_int_equal(hub_get_stats(h).deferred, 0); /* freed at the end of the publish */
    assert_int_equal(hub_get_stats(h).trie_nodes, 0);
    publish(h, "t");
    assert_int_equal(first.calls, 1);
    assert_int_equal(middle.calls, 2);
    assert_int_equal(last.calls, 1);
    assert_int_equal(pattern.calls, 1);
    hub_destroy(h); /* one subscription left: destroy frees it (ASan checks) */
}

static void test_unsubscribe_other_during_delivery(void **state) {
    hub *h = hub_create();
    /* Two subscriptions that each unsubscribe the other: whichever runs first wins, the other
     * must not be called. Same list, exact vs pattern, and two different trie nodes. */
    static const char *pairs[][3] = {
        {"t", "t", "t"},      {"t/1", "t/*", "t/1"}, {"t/*", "t/**", "t/1"},
        {"**", "t/1", "t/1"}, {"*/1", "t/*", "t/1"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        actor a = {.h = h}, b = {.h = h};
        hub_subscription *sa = subscribe(h, pairs[i][0], unsubscribe_victim, &a);
        hub_subscription *sb = subscribe(h, pairs[i][1], unsubscribe_victim, &b);
        a.victim = sb;
        b.victim = sa;
        publish(h, pairs[i][2]);
        if (a.calls + b.calls != 1)
            fail_msg("%s vs %s: %d + %d calls", pairs[i][0], pairs[i][1], a.calls, b.calls);
        assert_int_equal(hub_subscription_count(h), 1);
        publish(h, pairs[i][2]);
        assert_int_equal(a.calls + b.calls, 2);
        hub_unsubscribe(h, a.calls ? sa : sb);
        assert_index_empty(h);
    }

    /* In one list, delivery is in subscription order: a later one is not yet visited. */
    actor killer = {.h = h};
    recorder victim = {0}, bystander = {0};
    subscribe(h, "x", unsubscribe_victim, &killer);
    hub_subscription *bystander_sub = subscribe(h, "x", record, &bystander);
    killer.victim = subscribe(h, "x", record, &victim);
    publish(h, "x");
    assert_int_equal(killer.calls, 1);
    assert_int_equal(bystander.calls, 1);
    assert_int_equal(victim.calls, 0);
    hub_unsubscribe(h, bystander_sub);
    assert_int_equal(hub_subscription_count(h), 1);
    hub_destroy(h);
}

/* Unsubscribes every subscription in a shared table (its own included). */
typedef struct everyone {
    hub *h;
    hub_subscription *subs[64];
    size_t count;
    int calls;
} everyone;

static void unsubscribe_everyone(void *subscriber, event *e) {
    everyone *all = subscriber;
    all->calls++;
    for (size_t i = 0; i < all->count; i++) {
        if (all->subs[i]) hub_unsubscribe(all->h, all->subs[i]);
        all->subs[i] = NULL;
    }
    assert_int_equal(hub_subscription_count(all->h), 0);
    assert_int_equal(hub_get_stats(all->h).deferred, all->count); /* nothing freed yet */
}

static void test_unsubscribe_all_during_delivery(void **state) {
    hub *h = hub_create();
    everyone all = {.h = h};
    static const char *patterns[] = {"a/b", "a/b", "a/*", "*/b", "*/*", "**", "a/**", "a/b"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
        all.subs[all.count++] = subscribe(h, patterns[i], unsubscribe_everyone, &all);
    publish(h, "a/b");
    assert_int_equal(all.calls, 1);
    assert_index_empty(h);
    publish(h, "a/b");
    assert_int_equal(all.calls, 1);
    hub_destroy(h);
}

/* ---- subscribing during delivery ---- */

typedef struct spawner {
    hub *h;
    int calls;
    recorder *spawned;
    hub_subscription *subs[8];
    size_t count;
    bool flood; /* also add many unrelated topics and patterns (hash tables grow mid-walk) */
    hub_subscription **flooded;
} spawner;

#define FLOOD 2000

static void spawn(void *subscriber, event *e) {
    spawner *s = subscriber;
    s->calls++;
    if (s->count) return;
    static const char *patterns[] = {"t", "*", "**", "t/**", "t/*", "*/*"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
        s->subs[s->count++] = subscribe(s->h, patterns[i], record, s->spawned);
    if (s->flood) {
        for (int i = 0; i < FLOOD; i++) {
            char name[32];
            snprintf(name, sizeof name, i % 2 ? "f%d" : "f%d/*/x", i);
            s->flooded[i] = subscribe(s->h, name, record, s->spawned);
        }
    }
}

static void test_subscribe_during_delivery(void **state) {
    for (int flood = 0; flood < 2; flood++) {
        hub *h = hub_create();
        recorder spawned = {0}, after = {0};
        hub_subscription *flooded[FLOOD];
        spawner s = {.h = h, .spawned = &spawned, .flood = flood, .flooded = flooded};
        /* The spawner is first in the exact list; the list and the trie are walked after it. */
        hub_subscription *spawner_sub = subscribe(h, "t", spawn, &s);
        hub_subscription *after_exact = subscribe(h, "t", record, &after);
        hub_subscription *after_pattern = subscribe(h, "*", record, &after);
        publish(h, "t");
        assert_int_equal(s.calls, 1);
        assert_int_equal(after.calls, 2);
        assert_int_equal(spawned.calls, 0); /* added during the publish: not this event */
        publish(h, "t");
        assert_int_equal(s.calls, 2);
        assert_int_equal(after.calls, 4);
        assert_int_equal(spawned.calls, 3); /* t, *, ** */
        publish(h, "t/1");
        assert_int_equal(spawned.calls, 7); /* four more of the patterns match t/1 */
        hub_unsubscribe(h, spawner_sub);
        hub_unsubscribe(h, after_exact);
        hub_unsubscribe(h, after_pattern);
        for (size_t i = 0; i < s.count; i++)
            hub_unsubscribe(h, s.subs[i]);
        if (flood)
            for (int i = 0; i < FLOOD; i++)
                hub_unsubscribe(h, flooded[i]);
        assert_index_empty(h);
        hub_destroy(h);
    }
}

/* Unsubscribed and subscribed again during one publish: the index node is reused. */
typedef struct resubscriber {
    hub *h;
    hub_subscription *old;
    hub_subscription *fresh;
    recorder *r;
} resubscriber;

static void resubscribe(void *subscriber, event *e) {
    resubscriber *x = subscriber;
    if (x->fresh) return;
    hub_unsubscribe(x->h, x->old);
    x->fresh = subscribe(x->h, "p/*/q/**", record, x->r);
    x->old = NULL;
}

static void test_resubscribe_during_delivery(void **state) {
    hub *h = hub_create();
    recorder r = {0};
    resubscriber x = {.h = h, .r = &r};
    hub_subscription *trigger = subscribe(h, "p/1/q/2", resubscribe, &x);
    x.old = subscribe(h, "p/*/q/**", record, &r);
    publish(h, "p/1/q/2");
    assert_int_equal(r.calls, 0); /* old removed before its turn, fresh too new */
    assert_int_equal(hub_subscription_count(h), 2);
    assert_int_equal(hub_get_stats(h).trie_nodes, 3);
    publish(h, "p/1/q/2");
    assert_int_equal(r.calls, 1);
    hub_unsubscribe(h, trigger);
    hub_unsubscribe(h, x.fresh);
    assert_index_empty(h);
    hub_destroy(h);
}

/* ---- re-entrant publish ---- */

typedef struct republisher {
    hub *h;
    int calls;
    recorder *late; /* subscribed to "inner" just before the inner publish */
    hub_subscription *late_sub;
    hub_subscription *inner_victim; /* unsubscribed from inside the inner publish */
} republisher;

static void inner_unsubscribe(void *subscriber, event *e) {
    republisher *p = subscriber;
    if (p->inner_victim) {
        hub_unsubscribe(p->h, p->inner_victim);
        p->inner_victim = NULL;
    }
}

static void republish(void *subscriber, event *e) {
    republisher *p = subscriber;
    p->calls++;
    if (strcmp(e->topic, "outer") != 0) return;
    p->late_sub = subscribe(p->h, "inner", record, p->late);
    publish(p->h, "inner");
    assert_true(hub_get_stats(p->h).deferred >= 1); /* still running the outer publish */
}

static void test_reentrant_publish(void **state) {
    hub *h = hub_create();
    recorder on_outer = {0}, on_inner = {0}, on_all = {0}, victim = {0}, late = {0};
    republisher p = {.h = h, .late = &late};
    hub_subscription *subs[6];
    subs[0] = subscribe(h, "outer", republish, &p);
    subs[1] = subscribe(h, "outer", record, &on_outer);
    p.inner_victim = subscribe(h, "outer", record, &victim);
    subs[2] = subscribe(h, "inner", record, &on_inner);
    subs[3] = subscribe(h, "inner", inner_unsubscribe, &p);
    subs[4] = subscribe(h, "**", record, &on_all);
    subs[5] = subscribe(h, "*", republish, &p);

    /* "outer" reaches the republisher twice (exact and {*}), so "inner" is published twice from
     * inside it; each inner event reaches the republisher again through {*}. */
    publish(h, "outer");
    assert_int_equal(p.calls, 4);
    assert_int_equal(on_outer.calls, 1);
    assert_int_equal(on_inner.calls, 2);
    assert_int_equal(on_all.calls, 3);
    /* each late subscription was made before an inner publish began: 2 + 1 */
    assert_int_equal(late.calls, 3);
    assert_int_equal(victim.calls, 0); /* removed by the first inner publish */
    assert_int_equal(hub_get_stats(h).deferred, 0);
    assert_int_equal(hub_subscription_count(h), 6 + 2); /* two late subscriptions */

    for (size_t i = 0; i < 6; i++)
        hub_unsubscribe(h, subs[i]);
    assert_int_equal(hub_subscription_count(h), 2);
    hub_destroy(h); /* frees the two late subscriptions */
}

/* ---- pruning ---- */

static void test_pruning(void **state) {
    hub *h = hub_create();
    recorder r = {0};
    hub_subscription *a = subscribe(h, "a/b/*", record, &r);
    assert_int_equal(hub_get_stats(h).trie_nodes, 3);
    hub_subscription *b = subscribe(h, "a/b/c/**", record, &r);
    assert_int_equal(hub_get_stats(h).trie_nodes, 4);
    hub_subscription *c = subscribe(h, "a/**", record, &r);
    assert_int_equal(hub_get_stats(h).trie_nodes, 4);
    hub_unsubscribe(h, a);
    assert_int_equal(hub_get_stats(h).trie_nodes, 3); /* a, b, c */
    hub_unsubscribe(h, b);
    assert_int_equal(hub_get_stats(h).trie_nodes, 1); /* a */
    hub_unsubscribe(h, c);
    assert_index_empty(h);

    /* many patterns, unsubscribed in a scrambled order */
    enum { N = 3000 };
    hub_subscription **subs = calloc(N, sizeof *subs);
    assert_non_null(subs);
    for (int i = 0; i < N; i++) {
        char pattern[64];
        switch (i % 5) {
        case 0:
            snprintf(pattern, sizeof pattern, "p/%d/*", i % 97);
            break;
        case 1:
            snprintf(pattern, sizeof pattern, "*/%d/**", i % 89);
            break;
        case 2:
            snprintf(pattern, sizeof pattern, "p/*/%d/*/x", i);
            break;
        case 3:
            snprintf(pattern, sizeof pattern, "**");
            break;
        default:
            snprintf(pattern, sizeof pattern, "exact/%d", (i / 5) % 50);
            break;
        }
        subs[i] = subscribe(h, pattern, record, &r);
    }
    assert_int_equal(hub_subscription_count(h), N);
    assert_int_equal(hub_get_stats(h).exact_topics, 50);
    unsigned step = 1237; /* coprime with 3000 */
    for (unsigned i = 0, j = 0; i < N; i++, j = (j + step) % N) {
        hub_unsubscribe(h, subs[j]);
        subs[j] = NULL;
    }
    for (int i = 0; i < N; i++)
        assert_null(subs[i]);
    assert_index_empty(h);
    free(subs);
    hub_destroy(h);
}

/* ---- scale: 10,000 on one topic, 10,000 elsewhere ---- */

static int counted;

static void count_call(void *subscriber, event *e) {
    counted++;
    assert_string_equal(e->topic, "hot/topic");
}

static void must_not_call(void *subscriber, event *e) {
    fail_msg("subscription %p for another topic got %s", subscriber, e->topic);
}

static void test_many_subscribers(void **state) {
    enum { HOT = 10000, COLD = 10000 };
    hub *h = hub_create();
    hub_subscription **hot = calloc(HOT, sizeof *hot);
    hub_subscription **cold = calloc(COLD, sizeof *cold);
    assert_non_null(hot);
    assert_non_null(cold);
    for (int i = 0; i < HOT; i++)
        hot[i] = subscribe(h, "hot/topic", count_call, NULL);
    for (int i = 0; i < COLD; i++) {
        char pattern[64];
        switch (i % 4) {
        case 0:
            snprintf(pattern, sizeof pattern, "cold/%d", i);
            break;
        case 1:
            snprintf(pattern, sizeof pattern, "hot/topic/%d", i);
            break;
        case 2:
            snprintf(pattern, sizeof pattern, "hot/%d/*", i);
            break;
        default:
            snprintf(pattern, sizeof pattern, "cold/*/%d/**", i);
            break;
        }
        cold[i] = subscribe(h, pattern, must_not_call, (void *)(intptr_t)i);
    }
    assert_int_equal(hub_subscription_count(h), HOT + COLD);
    assert_int_equal(hub_get_stats(h).exact_topics, 1 + COLD / 2);

    for (int round = 1; round <= 20; round++) {
        publish(h, "hot/topic");
        assert_int_equal(counted, round * HOT);
    }
    publish(h, "nobody/here");
    assert_int_equal(counted, 20 * HOT);

    for (int i = 0; i < COLD; i++)
        hub_unsubscribe(h, cold[i]);
    for (int i = 0; i < HOT; i++)
        hub_unsubscribe(h, hot[i]);
    assert_index_empty(h);
    free(hot);
    free(cold);
    hub_destroy(h);
}

/* ---- differential: the index against topic_pattern_matches ---- */

static uint32_t rng_state = 12345;

static uint32_t rng(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static void random_name(char *out, size_t size, bool pattern) {
    static const char *segments[] = {"a", "b", "c", "ab"};
    int n = 1 + (int)(rng() % 4);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *segment = segments[rng() % 4];
        if (pattern) {
            uint32_t roll = rng() % 6;
            if (roll == 0) segment = "*";
            if (roll == 1 && i == n - 1) segment = "**";
        }
        at += (size_t)snprintf(out + at, size - at, "%s%s", i ? "/" : "", segment);
    }
}

static void test_against_matcher(void **state) {
    enum { SUBS = 400, TOPICS = 300 };
    hub *h = hub_create();
    char patterns[SUBS][32];
    recorder rec[SUBS];
    hub_subscription *subs[SUBS];
    memset(rec, 0, sizeof rec);
    for (int i = 0; i < SUBS; i++) {
        random_name(patterns[i], sizeof patterns[i], true);
        assert_true(topic_pattern_valid(patterns[i], strlen(patterns[i])));
        subs[i] = subscribe(h, patterns[i], record, &rec[i]);
    }
    for (int phase = 0; phase < 3; phase++) {
        int expected[SUBS] = {0};
        for (int t = 0; t < TOPICS; t++) {
            char topic[32];
            random_name(topic, sizeof topic, false);
            publish(h, topic);
            for (int i = 0; i < SUBS; i++)
                if (subs[i] &&
                    topic_pattern_matches(patterns[i], strlen(patterns[i]), topic, strlen(topic)))
                    expected[i]++;
        }
        for (int i = 0; i < SUBS; i++) {
            if (rec[i].calls != expected[i])
                fail_msg("phase %d pattern %s: %d deliveries, expected %d", phase, patterns[i],
                         rec[i].calls, expected[i]);
            rec[i].calls = 0;
        }
        /* drop about half of what is left */
        for (int i = 0; i < SUBS; i++) {
            if (subs[i] && (rng() % 2 || phase == 2)) {
                hub_unsubscribe(h, subs[i]);
                subs[i] = NULL;
            }
        }
    }
    assert_index_empty(h);
    hub_destroy(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_pattern_delivery),
        cmocka_unit_test(test_counts_and_duplicates),
        cmocka_unit_test(test_unsubscribe_self_during_delivery),
        cmocka_unit_test(test_unsubscribe_other_during_delivery),
        cmocka_unit_test(test_unsubscribe_all_during_delivery),
        cmocka_unit_test(test_subscribe_during_delivery),
        cmocka_unit_test(test_resubscribe_during_delivery),
        cmocka_unit_test(test_reentrant_publish),
        cmocka_unit_test(test_pruning),
        cmocka_unit_test(test_many_subscribers),
        cmocka_unit_test(test_against_matcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

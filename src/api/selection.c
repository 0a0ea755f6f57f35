#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "hub/topic.h"

#include <openssl/sha.h>

bool parse_event_id(const char *text, uint64_t *out) {
    size_t length = strlen(text);
    if (length == 0 || length > 20) return false;
    uint64_t value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return false;
        value = value * 10 + digit;
    }
    *out = value;
    return true;
}

static bool selection_add(topic_selection *s, const char *pattern, size_t length) {
    for (size_t i = 0; i < s->count; i++)
        if (strlen(s->patterns[i]) == length && memcmp(s->patterns[i], pattern, length) == 0)
            return true;
    char *copy = strndup(pattern, length);
    char **patterns = copy ? realloc(s->patterns, (s->count + 1) * sizeof *patterns) : NULL;
    if (!patterns) {
        free(copy);
        return false;
    }
    s->patterns = patterns;
    s->patterns[s->count++] = copy;
    return true;
}

bool topic_selection_from_request(api_request *r, topic_selection *out) {
    memset(out, 0, sizeof *out);
    if (r->topic) {
        if (selection_add(out, r->topic, strlen(r->topic))) return true;
        connection_respond_error(r->connection, 503, "unavailable", "Out of memory.", NULL);
        return false;
    }
    for (size_t i = 0; i < r->query.count; i++) {
        const url_parameter *p = &r->query.parameters[i];
        if (strcmp(p->name, "topic") != 0) continue;
        if (!topic_pattern_valid(p->value, p->value_length)) {
            topic_selection_free(out);
            connection_respond_error(
                r->connection, 400, "invalid_topic",
                "Each topic must be a topic name or pattern ('*' for one segment, "
                "a final '**' for the rest).",
                NULL);
            return false;
        }
        if (out->count == SELECTION_MAX_PATTERNS) {
            topic_selection_free(out);
            connection_respond_error(r->connection, 400, "invalid_parameter",
                                     "At most 32 topics may be named in one request.", NULL);
            return false;
        }
        if (!selection_add(out, p->value, p->value_length)) {
            topic_selection_free(out);
            connection_respond_error(r->connection, 503, "unavailable", "Out of memory.", NULL);
            return false;
        }
    }
    if (out->count == 0) {
        connection_respond_error(r->connection, 400, "invalid_parameter",
                                 "Name at least one topic with ?topic=NAME (repeatable).", NULL);
        return false;
    }
    return true;
}

void topic_selection_free(topic_selection *s) {
    for (size_t i = 0; i < s->count; i++)
        free(s->patterns[i]);
    free(s->patterns);
    s->patterns = NULL;
    s->count = 0;
}

static bool resolved_add(resolved_topics *r, const store_topic *t) {
    for (size_t i = 0; i < r->count; i++)
        if (r->names[i] == t->name) return true;
    if (r->count == r->capacity) {
        size_t capacity = r->capacity ? r->capacity * 2 : 8;
        const char **names = realloc(r->names, capacity * sizeof *names);
        if (!names) return false;
        r->names = names;
        r->capacity = capacity;
    }
    r->names[r->count++] = t->name;
    if (t->head_id > r->head_id) r->head_id = t->head_id;
    if (t->trimmed_through > r->trimmed_through) r->trimmed_through = t->trimmed_through;
    return true;
}

typedef struct pattern_visit {
    const topic_selection *selection;
    resolved_topics *out;
    bool failed;
} pattern_visit;

static void visit_topic(void *context, const store_topic *t) {
    pattern_visit *v = context;
    size_t name_length = strlen(t->name);
    for (size_t i = 0; i < v->selection->count; i++) {
        const char *p = v->selection->patterns[i];
        if (topic_is_pattern(p, strlen(p)) &&
            topic_pattern_matches(p, strlen(p), t->name, name_length)) {
            if (!resolved_add(v->out, t)) v->failed = true;
            return;
        }
    }
}

bool topic_selection_resolve(const topic_selection *s, const store *st, resolved_topics *out) {
    memset(out, 0, sizeof *out);
    bool any_pattern = false;
    for (size_t i = 0; i < s->count; i++) {
        const char *p = s->patterns[i];
        if (topic_is_pattern(p, strlen(p))) {
            any_pattern = true;
            continue;
        }
        const store_topic *t = store_find_topic(st, p);
        if (t && !resolved_add(out, t)) return false;
    }
    if (any_pattern) {
        pattern_visit v = {s, out, false};
        store_each_topic(st, visit_topic, &v);
        if (v.failed) return false;
    }
    return true;
}

void resolved_topics_free(resolved_topics *r) {
    free(r->names);
    memset(r, 0, sizeof *r);
}

hub_subscription **subscribe_selection(hub *h, const topic_selection *s,
                                       hub_deliver_callback deliver, void *subscriber) {
    hub_subscription **subscriptions = calloc(s->count, sizeof *subscriptions);
    if (!subscriptions) return NULL;
    for (size_t i = 0; i < s->count; i++) {
        subscriptions[i] =
            hub_subscribe(h, s->patterns[i], strlen(s->patterns[i]), deliver, subscriber);
        if (!subscriptions[i]) {
            unsubscribe_selection(h, subscriptions, i);
            return NULL;
        }
    }
    return subscriptions;
}

void unsubscribe_selection(hub *h, hub_subscription **subscriptions, size_t count) {
    for (size_t i = 0; i < count; i++)
        hub_unsubscribe(h, subscriptions[i]);
    free(subscriptions);
}

uint64_t resolved_trimmed_through(const resolved_topics *r, const store *st) {
    uint64_t trimmed = 0;
    for (size_t i = 0; i < r->count; i++) {
        const store_topic *t = store_find_topic(st, r->names[i]);
        if (t && t->trimmed_through > trimmed) trimmed = t->trimmed_through;
    }
    return trimmed;
}

const char *idempotency_store_key(text *out, const char *namespace_prefix, const char *key,
                                  size_t length) {
    if (!key) return NULL;
    text_append_cstring(out, namespace_prefix);
    if (length <= 200) {
        text_append(out, key, length);
    } else {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)key, length, digest);
        text_append_cstring(out, "sha256:");
        for (size_t i = 0; i < sizeof digest; i++)
            text_printf(out, "%02x", digest[i]);
    }
    return text_cstring(out);
}

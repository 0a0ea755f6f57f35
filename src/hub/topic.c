#include "hub/topic.h"

#include <string.h>

#include "core/event.h"

/* [A-Za-z0-9_.:-], shared by topic segments and event types. */
static bool common_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static bool segment_char(unsigned char c) {
    return common_char(c) || c == '@';
}

/* A non-empty run of segment characters. */
static bool literal_segment(const char *segment, size_t length) {
    if (length == 0) return false;
    for (size_t i = 0; i < length; i++)
        if (!segment_char((unsigned char)segment[i])) return false;
    return true;
}

static bool is_star(const char *segment, size_t length) {
    return length == 1 && segment[0] == '*';
}

static bool is_double_star(const char *segment, size_t length) {
    return length == 2 && segment[0] == '*' && segment[1] == '*';
}

/* Length of the segment starting at s (up to the next '/' or end). */
static size_t segment_length(const char *s, size_t remaining) {
    const char *slash = memchr(s, '/', remaining);
    return slash ? (size_t)(slash - s) : remaining;
}

bool topic_name_valid(const char *name, size_t length) {
    if (!name || length == 0 || length > TOPIC_MAX_LENGTH) return false;
    if (name[0] == '/' || name[length - 1] == '/') return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/') {
            if (name[i - 1] == '/') return false; /* empty segment; i > 0 since name[0] != '/' */
        } else if (!segment_char(c)) {
            return false;
        }
    }
    return true;
}

bool topic_pattern_valid(const char *pattern, size_t length) {
    if (!pattern || length == 0 || length > TOPIC_MAX_LENGTH) return false;
    size_t i = 0;
    for (;;) {
        size_t n = segment_length(pattern + i, length - i);
        bool last = i + n == length;
        const char *segment = pattern + i;
        if (!literal_segment(segment, n) && !is_star(segment, n) &&
            !(last && is_double_star(segment, n)))
            return false;
        if (last) return true;
        i += n + 1;
        if (i == length) return false; /* trailing '/' */
    }
}

bool topic_is_pattern(const char *pattern, size_t length) {
    if (!pattern) return false;
    size_t i = 0;
    while (i <= length) {
        size_t n = segment_length(pattern + i, length - i);
        if (is_star(pattern + i, n) || is_double_star(pattern + i, n)) return true;
        i += n + 1;
    }
    return false;
}

bool topic_pattern_matches(const char *pattern, size_t pattern_length, const char *topic,
                           size_t topic_length) {
    if (!pattern || !topic || pattern_length == 0 || topic_length == 0) return false;
    size_t p = 0, t = 0;
    for (;;) {
        size_t pn = segment_length(pattern + p, pattern_length - p);
        bool pattern_last = p + pn == pattern_length;
        /* A final '**' takes every remaining segment; at least one remains here. */
        if (pattern_last && is_double_star(pattern + p, pn)) return t < topic_length;
        if (t >= topic_length) return false; /* the topic ran out of segments first */
        size_t tn = segment_length(topic + t, topic_length - t);
        if (tn == 0) return false; /* never match an empty segment */
        if (!is_star(pattern + p, pn) && (pn != tn || memcmp(pattern + p, topic + t, pn) != 0))
            return false;
        bool topic_last = t + tn == topic_length;
        if (pattern_last || topic_last) return pattern_last && topic_last;
        p += pn + 1;
        t += tn + 1;
        if (p >= pattern_length) return false; /* trailing '/' in an invalid pattern */
    }
}

bool event_type_valid(const char *type, size_t length) {
    if (!type || length == 0 || length > EVENT_TYPE_MAX) return false;
    for (size_t i = 0; i < length; i++)
        if (!common_char((unsigned char)type[i])) return false;
    return true;
}

/* Topic pattern subsumption: does one pattern match every topic another can match? */
#include <string.h>

#include "auth/auth.h"
#include "hub/topic.h"

typedef struct segment {
    const char *data;
    size_t length;
    bool last;
} segment;

static segment segment_at(const char *s, size_t length, size_t at) {
    const char *slash = memchr(s + at, '/', length - at);
    size_t n = slash ? (size_t)(slash - (s + at)) : length - at;
    return (segment){s + at, n, at + n == length};
}

static bool is_star(segment s) {
    return s.length == 1 && s.data[0] == '*';
}

static bool is_double_star(segment s) {
    return s.length == 2 && s.data[0] == '*' && s.data[1] == '*';
}

/* Segment by segment, with c and r the claim's and the request's segments at the same depth:
 * - a claim's final '**' takes the one or more segments the request still has: covered;
 * - a request's '**' (always final) matches topics of every length from here on, which a claim
 *   segment that is not '**' cannot all match: not covered;
 * - otherwise c must cover r: c is '*', or both are the same literal ('*' in the request is not
 *   covered by a literal: it also matches other names);
 * - the two must end together (a claim that goes on needs more segments than the request's
 *   topics have; a claim that stops cannot match the request's longer topics). */
bool auth_pattern_covers(const char *claim, size_t claim_length, const char *requested,
                         size_t requested_length) {
    if (!topic_pattern_valid(claim, claim_length) ||
        !topic_pattern_valid(requested, requested_length))
        return false;
    size_t ci = 0, ri = 0;
    for (;;) {
        segment c = segment_at(claim, claim_length, ci);
        segment r = segment_at(requested, requested_length, ri);
        if (c.last && is_double_star(c)) return true;
        if (is_double_star(r)) return false;
        if (!is_star(c) && (is_star(r) || c.length != r.length || memcmp(c.data, r.data, c.length)))
            return false;
        if (c.last || r.last) return c.last && r.last;
        ci += c.length + 1;
        ri += r.length + 1;
    }
}

#ifndef HERALD_HUB_TOPIC_H
#define HERALD_HUB_TOPIC_H
/* Owns: the naming rules (SPEC §1) for topics, topic patterns and event types. */
#include <stdbool.h>
#include <stddef.h>

#define TOPIC_MAX_LENGTH 200

/* 1-200 bytes of [A-Za-z0-9_.:@-] and '/', no leading/trailing '/', no empty segment. */
bool topic_name_valid(const char *name, size_t length);
/* A topic name where a whole segment may be '*', and the last segment may be '**'. */
bool topic_pattern_valid(const char *pattern, size_t length);
/* true when the pattern contains a '*' or '**' segment. */
bool topic_is_pattern(const char *pattern, size_t length);
/* '*' matches exactly one segment; a final '**' matches one or more trailing segments. */
bool topic_pattern_matches(const char *pattern, size_t pattern_length, const char *topic,
                           size_t topic_length);
/* 1-64 bytes of [A-Za-z0-9_.:-]. */
bool event_type_valid(const char *type, size_t length);

#endif

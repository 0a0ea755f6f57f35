#ifndef HERALD_HTTP_URL_H
#define HERALD_HTTP_URL_H
/* Owns: splitting a request-target into path and query, percent-decoding, and the query
 * parameters of one request (decoded copies, freed with url_query_free). */
#include <stdbool.h>
#include <stddef.h>

#include "core/text.h"

#define URL_MAX_PARAMETERS 64

typedef struct url_parameter {
    char *name;
    char *value;
    size_t value_length;
} url_parameter;

typedef struct url_query {
    url_parameter parameters[URL_MAX_PARAMETERS];
    size_t count;
} url_query;

/* Percent-decodes src into out ('+' stays '+'; query values decode '+' as space when
 * plus_is_space). false on a malformed escape or a decoded NUL. */
bool url_decode(const char *src, size_t length, bool plus_is_space, text *out);

/* Parses "a=1&b=2" (without '?'). false when malformed or more than URL_MAX_PARAMETERS. */
bool url_query_parse(const char *query, size_t length, url_query *out);
void url_query_free(url_query *q);
/* The first value of name, or NULL. */
const char *url_query_get(const url_query *q, const char *name);

#endif

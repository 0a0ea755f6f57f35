#ifndef HERALD_HOOKS_SOURCES_H
#define HERALD_HOOKS_SOURCES_H
/* Owns: the registry of inbound webhook sources (SPEC §8): name, scheme, secret, target topic
 * and timestamp tolerance. Sources live in memory on the loop thread and in the store's
 * SQLite file (table `sources`); changes are written on libuv's thread pool with their own
 * connection, and take effect in memory only once durable. */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "hooks/verify.h"

#define SOURCE_NAME_MAX 64

typedef struct hook_source {
    struct hook_source *next;
    char name[SOURCE_NAME_MAX + 1];
    hook_scheme scheme;
    char *secret;
    char *topic;
    int64_t tolerance_seconds;
    int64_t created_ms;
} hook_source;

typedef struct source_registry source_registry;

/* path: the SQLite database file (the store's herald.db). */
int source_registry_open(uv_loop_t *loop, const char *database_path, source_registry **out,
                         char *error, size_t error_size);
void source_registry_close(source_registry *r); /* after the loop finished the pending work */

const hook_source *source_registry_find(const source_registry *r, const char *name);
const hook_source *source_registry_first(const source_registry *r); /* then ->next */

/* [a-z0-9_-]{1,64} */
bool source_name_valid(const char *name, size_t length);

typedef enum source_outcome { SOURCE_SAVED, SOURCE_NAME_TAKEN, SOURCE_FAILED } source_outcome;
typedef void (*source_done_callback)(void *context, source_outcome outcome,
                                     const char *error_message);
/* Persists a new source (copied) and then adds it; false when the name is taken (nothing done). */
bool source_registry_add(source_registry *r, const hook_source *source, source_done_callback done,
                         void *context);
/* Deletes it durably, then from memory; false when there is no such source. */
bool source_registry_remove(source_registry *r, const char *name, source_done_callback done,
                            void *context);

#endif

#include "hooks/sources.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct source_registry {
    uv_loop_t *loop;
    char *database_path;
    hook_source *sources;
    int pending; /* thread-pool jobs not yet completed */
};

typedef struct source_job {
    uv_work_t work;
    source_registry *registry;
    bool remove;
    hook_source *source; /* add: the new source (owned until inserted); remove: name only */
    bool ok;
    bool name_taken;
    char error[160];
    source_done_callback done;
    void *context;
} source_job;

static void source_free(hook_source *s) {
    if (!s) return;
    free(s->secret);
    free(s->topic);
    free(s);
}

bool source_name_valid(const char *name, size_t length) {
    if (length == 0 || length > SOURCE_NAME_MAX) return false;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static sqlite3 *open_database(const char *path, char *error, size_t error_size) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(error, error_size, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (sqlite3_exec(
            db,
            "CREATE TABLE IF NOT EXISTS sources(name TEXT PRIMARY KEY, scheme TEXT NOT NULL, "
            "secret TEXT NOT NULL, topic TEXT NOT NULL, tolerance INTEGER NOT NULL, created_ms "
            "INTEGER NOT NULL)",
            NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(error, error_size, "cannot create the sources table: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static void link_source(source_registry *r, hook_source *s) {
    hook_source **link = &r->sources; /* kept sorted by name for stable listings */
    while (*link && strcmp((*link)->name, s->name) < 0)
        link = &(*link)->next;
    s->next = *link;
    *link = s;
}

int source_registry_open(uv_loop_t *loop, const char *database_path, source_registry **out,
                         char *error, size_t error_size) {
    source_registry *r = calloc(1, sizeof *r);
    if (!r || !(r->database_path = strdup(database_path))) {
        free(r);
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    r->loop = loop;
    sqlite3 *db = open_database(database_path, error, error_size);
    if (!db) {
        source_registry_close(r);
        return -1;
    }
    sqlite3_stmt *select = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT name, scheme, secret, topic, tolerance, created_ms FROM sources", -1, &select,
        NULL);
    while (rc == SQLITE_OK && sqlite3_step(select) == SQLITE_ROW) {
        hook_source *s = calloc(1, sizeof *s);
        const char *name = (const char *)sqlite3_column_text(select, 0);
        const char *scheme = (const char *)sqlite3_column_text(select, 1);
        if (!s || !name || !scheme || strlen(name) > SOURCE_NAME_MAX ||
            !hook_scheme_parse(scheme, &s->scheme)) {
            free(s);
            continue; /* a row this version cannot use is left alone, not fatal */
        }
        snprintf(s->name, sizeof s->name, "%s", name);
        s->secret = strdup((const char *)sqlite3_column_text(select, 2));
        s->topic = strdup((const char *)sqlite3_column_text(select, 3));
        s->tolerance_seconds = sqlite3_column_int64(select, 4);
        s->created_ms = sqlite3_column_int64(select, 5);
        if (!s->secret || !s->topic) {
            source_free(s);
            continue;
        }
        link_source(r, s);
    }
    sqlite3_finalize(select);
    sqlite3_close(db);
    *out = r;
    return 0;
}

void source_registry_close(source_registry *r) {
    if (!r) return;
    while (r->sources) {
        hook_source *s = r->sources;
        r->sources = s->next;
        source_free(s);
    }
    free(r->database_path);
    free(r);
}

const hook_source *source_registry_find(const source_registry *r, const char *name) {
    for (const hook_source *s = r->sources; s; s = s->next)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

const hook_source *source_registry_first(const source_registry *r) {
    return r->sources;
}

/* Thread pool: one short transaction on its own connection. */
static void run_job(uv_work_t *work) {
    source_job *job = work->data;
    sqlite3 *db = open_database(job->registry->database_path, job->error, sizeof job->error);
    if (!db) return;
    sqlite3_stmt *statement = NULL;
    const char *sql =
        job->remove ? "DELETE FROM sources WHERE name = ?1"
                    : "INSERT INTO sources(name, scheme, secret, topic, tolerance, created_ms) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
    if (sqlite3_prepare_v2(db, sql, -1, &statement, NULL) == SQLITE_OK) {
        const hook_source *s = job->source;
        sqlite3_bind_text(statement, 1, s->name, -1, SQLITE_STATIC);
        if (!job->remove) {
            sqlite3_bind_text(statement, 2, hook_scheme_name(s->scheme), -1, SQLITE_STATIC);
            sqlite3_bind_text(statement, 3, s->secret, -1, SQLITE_STATIC);
            sqlite3_bind_text(statement, 4, s->topic, -1, SQLITE_STATIC);
            sqlite3_bind_int64(statement, 5, s->tolerance_seconds);
            sqlite3_bind_int64(statement, 6, s->created_ms);
        }
        job->ok = sqlite3_step(statement) == SQLITE_DONE;
        /* Two creates of one name racing: the second loses here. */
        job->name_taken = !job->ok && sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY;
    }
    if (!job->ok)
        snprintf(job->error, sizeof job->error, "The source could not be saved: %s.",
                 sqlite3_errmsg(db));
    sqlite3_finalize(statement);
    sqlite3_close(db);
}

static void finish_job(uv_work_t *work, int status) {
    source_job *job = work->data;
    source_registry *r = job->registry;
    r->pending--;
    if (job->ok && !job->remove) {
        link_source(r, job->source);
        job->source = NULL;
    } else if (job->ok && job->remove) {
        for (hook_source **link = &r->sources; *link; link = &(*link)->next)
            if (strcmp((*link)->name, job->source->name) == 0) {
                hook_source *gone = *link;
                *link = gone->next;
                source_free(gone);
                break;
            }
    }
    job->done(job->context,
              job->ok           ? SOURCE_SAVED
              : job->name_taken ? SOURCE_NAME_TAKEN
                                : SOURCE_FAILED,
              job->ok ? NULL : job->error);
    source_free(job->source);
    free(job);
}

static bool queue_job(source_registry *r, bool remove, hook_source *source,
                      source_done_callback done, void *context) {
    source_job *job = calloc(1, sizeof *job);
    if (!job) {
        source_free(source);
        return false;
    }
    job->work.data = job;
    job->registry = r;
    job->remove = remove;
    job->source = source;
    job->done = done;
    job->context = context;
    if (uv_queue_work(r->loop, &job->work, run_job, finish_job) != 0) {
        source_free(source);
        free(job);
        return false;
    }
    r->pending++;
    return true;
}

bool source_registry_add(source_registry *r, const hook_source *source, source_done_callback done,
                         void *context) {
    if (source_registry_find(r, source->name)) return false;
    hook_source *copy = calloc(1, sizeof *copy);
    if (!copy) return false;
    *copy = *source;
    copy->next = NULL;
    copy->secret = strdup(source->secret);
    copy->topic = strdup(source->topic);
    if (!copy->secret || !copy->topic) {
        source_free(copy);
        return false;
    }
    return queue_job(r, false, copy, done, context);
}

bool source_registry_remove(source_registry *r, const char *name, source_done_callback done,
                            void *context) {
    if (!source_registry_find(r, name)) return false;
    hook_source *key = calloc(1, sizeof *key);
    if (!key) return false;
    snprintf(key->name, sizeof key->name, "%s", name);
    return queue_job(r, true, key, done, context);
}

#ifndef HERALD_CORE_CONFIG_H
#define HERALD_CORE_CONFIG_H
/* Owns: `herald serve` settings — defaults, command-line flags, HERALD_* environment variables
 * (a flag wins over its variable), and the duration/size notations of SPEC §10. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values of a repeatable flag (or a comma-separated variable), owned by the config. */
typedef struct string_list {
    char **items;
    size_t count;
} string_list;

typedef struct server_config {
    char listen_host[256];
    int listen_port;
    const char *data_directory;
    size_t history_size;
    int64_t history_age_ms;
    int64_t sse_heartbeat_ms;
    int64_t header_timeout_ms;
    int64_t idle_timeout_ms;
    size_t max_connections;
    size_t max_body_bytes;
    size_t max_header_bytes;
    size_t send_buffer_bytes;
    bool insecure;
    size_t ws_max_message_bytes;
    int64_t ws_ping_interval_ms;
    bool ws_deflate;
    string_list api_keys;     /* --api-key, HERALD_API_KEYS */
    const char *jwt_secret;   /* --jwt-secret */
    string_list cors_origins; /* --cors-origin, HERALD_CORS_ORIGINS */
    int64_t webhook_timeout_ms;
    const char *webhook_retry_schedule; /* NULL: 5s,5m,30m,2h,5h,10h,10h */
    size_t webhook_concurrency;
    size_t webhook_endpoint_concurrency;
    bool webhook_allow_private;
} server_config;

/* "500ms", "15s", "5m", "2h", "1d", or a bare number of seconds. -1 when malformed. */
int64_t parse_duration_ms(const char *text);
/* "65536", "64KiB", "1MiB", "1GiB" (also KB/MB/GB as powers of 1000). -1 when malformed. */
int64_t parse_size_bytes(const char *text);

void server_config_defaults(server_config *config);
/* Applies HERALD_* variables then flags (argv[0] is "serve"). On a bad flag writes one clear
 * sentence into error and returns -1; returns 1 when --help was asked (usage printed). */
int server_config_parse(server_config *config, int argc, char **argv, char *error,
                        size_t error_size);
void server_config_print_usage(void);
void server_config_free(server_config *config);

#endif

#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum option_kind {
    OPTION_STRING,
    OPTION_LISTEN,
    OPTION_COUNT,
    OPTION_DURATION,
    OPTION_SIZE,
    OPTION_FLAG,
    OPTION_SWITCH,
    OPTION_LIST
} option_kind;

typedef struct option {
    const char *name; /* flag without "--"; the variable is HERALD_ + upper-case with '_' */
    option_kind kind;
    size_t offset;
    const char *help;
    const char *variable; /* when the variable's name is not derived from the flag */
} option;

#define FIELD(name) offsetof(server_config, name)

static const option options[] = {
    {"listen", OPTION_LISTEN, 0,
     "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks a free one)", NULL},
    {"data", OPTION_STRING, FIELD(data_directory),
     "directory of the embedded store (default ./herald-data)", NULL},
    {"history-size", OPTION_COUNT, FIELD(history_size), "events kept per topic (default 1000)",
     NULL},
    {"history-age", OPTION_DURATION, FIELD(history_age_ms),
     "how long events are kept (default 24h)", NULL},
    {"sse-heartbeat", OPTION_DURATION, FIELD(sse_heartbeat_ms),
     "interval of ': ping' comments on SSE streams (default 15s)", NULL},
    {"header-timeout", OPTION_DURATION, FIELD(header_timeout_ms),
     "time allowed to receive a request's headers (default 10s)", NULL},
    {"idle-timeout", OPTION_DURATION, FIELD(idle_timeout_ms),
     "keep-alive idle time before closing (default 60s)", NULL},
    {"max-connections", OPTION_COUNT, FIELD(max_connections),
     "open connections allowed; more get 503 (default 10000)", NULL},
    {"max-body", OPTION_SIZE, FIELD(max_body_bytes), "largest request body (default 1MiB)", NULL},
    {"max-header", OPTION_SIZE, FIELD(max_header_bytes), "largest request head (default 16KiB)",
     NULL},
    {"send-buffer", OPTION_SIZE, FIELD(send_buffer_bytes),
     "per-connection send buffer; a slower reader is disconnected (default 1MiB)", NULL},
    {"insecure", OPTION_FLAG, FIELD(insecure), "allow a non-loopback --listen without API keys",
     NULL},
    {"ws-max-message", OPTION_SIZE, FIELD(ws_max_message_bytes),
     "largest WebSocket message accepted; larger closes 1009 (default 1MiB)", NULL},
    {"ws-ping-interval", OPTION_DURATION, FIELD(ws_ping_interval_ms),
     "WebSocket ping interval; silent for two intervals closes 1001 (default 30s)", NULL},
    {"ws-deflate", OPTION_SWITCH, FIELD(ws_deflate), "permessage-deflate on|off (default on)",
     NULL},
    {"api-key", OPTION_LIST, FIELD(api_keys),
     "admin/publisher API key (repeatable; HERALD_API_KEYS is comma-separated)", "HERALD_API_KEYS"},
    {"jwt-secret", OPTION_STRING, FIELD(jwt_secret),
     "HS256 secret of subscriber/publisher tokens (JWT)", NULL},
    {"webhook-timeout", OPTION_DURATION, FIELD(webhook_timeout_ms),
     "time allowed for one webhook attempt (default 15s)", NULL},
    {"webhook-retry-schedule", OPTION_STRING, FIELD(webhook_retry_schedule),
     "delays between webhook attempts (default 5s,5m,30m,2h,5h,10h,10h)", NULL},
    {"webhook-concurrency", OPTION_COUNT, FIELD(webhook_concurrency),
     "webhook attempts making progress at once; one waiting over 1s stops counting (default 64)",
     NULL},
    {"webhook-endpoint-concurrency", OPTION_COUNT, FIELD(webhook_endpoint_concurrency),
     "webhook attempts in flight per endpoint (default 4)", NULL},
    {"webhook-allow-private", OPTION_FLAG, FIELD(webhook_allow_private),
     "allow webhook URLs on loopback/private addresses", NULL},
    {"cors-origin", OPTION_LIST, FIELD(cors_origins),
     "allowed browser origin, e.g. https://app.example (repeatable, or *)", "HERALD_CORS_ORIGINS"},
};

int64_t parse_duration_ms(const char *text) {
    if (!text || !isdigit((unsigned char)*text)) return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || value > 1000000000ULL) return -1;
    int64_t unit;
    if (*end == '\0' || strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        unit = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        unit = 86400 * 1000;
    else
        return -1;
    return (int64_t)value * unit;
}

int64_t parse_size_bytes(const char *text) {
    if (!text || !isdigit((unsigned char)*text)) return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || value > (1ULL << 40)) return -1;
    int64_t unit;
    if (*end == '\0' || strcmp(end, "B") == 0)
        unit = 1;
    else if (strcmp(end, "KiB") == 0)
        unit = 1024;
    else if (strcmp(end, "MiB") == 0)
        unit = 1024 * 1024;
    else if (strcmp(end, "GiB") == 0)
        unit = 1024 * 1024 * 1024;
    else if (strcmp(end, "KB") == 0 || strcmp(end, "kB") == 0)
        unit = 1000;
    else if (strcmp(end, "MB") == 0)
        unit = 1000 * 1000;
    else if (strcmp(end, "GB") == 0)
        unit = 1000 * 1000 * 1000;
    else
        return -1;
    return (int64_t)value * unit;
}

void server_config_defaults(server_config *config) {
    memset(config, 0, sizeof *config);
    snprintf(config->listen_host, sizeof config->listen_host, "127.0.0.1");
    config->listen_port = 8080;
    config->data_directory = "./herald-data";
    config->history_size = 1000;
    config->history_age_ms = 24LL * 3600 * 1000;
    config->sse_heartbeat_ms = 15 * 1000;
    config->header_timeout_ms = 10 * 1000;
    config->idle_timeout_ms = 60 * 1000;
    config->max_connections = 10000;
    config->max_body_bytes = 1024 * 1024;
    config->max_header_bytes = 16 * 1024;
    config->send_buffer_bytes = 1024 * 1024;
    config->ws_max_message_bytes = 1024 * 1024;
    config->ws_ping_interval_ms = 30 * 1000;
    config->ws_deflate = true;
    config->webhook_timeout_ms = 15 * 1000;
    config->webhook_concurrency = 64;
    config->webhook_endpoint_concurrency = 4;
}

static int parse_listen(server_config *config, const char *value) {
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value) return -1;
    const char *host = value;
    size_t host_length = (size_t)(colon - value);
    if (host[0] == '[' && host_length >= 2 && host[host_length - 1] == ']') {
        host++;
        host_length -= 2;
    }
    if (host_length == 0 || host_length >= sizeof config->listen_host) return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535) return -1;
    memcpy(config->listen_host, host, host_length);
    config->listen_host[host_length] = '\0';
    config->listen_port = (int)port;
    return 0;
}

static int apply_option(server_config *config, const option *o, const char *value,
                        const char *source, char *error, size_t error_size) {
    char *field = (char *)config + o->offset;
    switch (o->kind) {
    case OPTION_STRING:
        if (!*value) break;
        *(const char **)field = value;
        return 0;
    case OPTION_LISTEN:
        if (parse_listen(config, value) == 0) return 0;
        break;
    case OPTION_COUNT: {
        char *end;
        errno = 0;
        unsigned long long count = strtoull(value, &end, 10);
        if (!isdigit((unsigned char)*value) || errno || *end || count == 0 || count > 100000000ULL)
            break;
        *(size_t *)field = (size_t)count;
        return 0;
    }
    case OPTION_DURATION: {
        int64_t ms = parse_duration_ms(value);
        if (ms <= 0) break;
        *(int64_t *)field = ms;
        return 0;
    }
    case OPTION_SIZE: {
        int64_t bytes = parse_size_bytes(value);
        if (bytes <= 0) break;
        *(size_t *)field = (size_t)bytes;
        return 0;
    }
    case OPTION_LIST: {
        string_list *list = (string_list *)field;
        if (!*value) break;
        char **items = realloc(list->items, (list->count + 1) * sizeof *items);
        if (!items) break;
        list->items = items;
        if (!(list->items[list->count] = strdup(value))) break;
        list->count++;
        return 0;
    }
    case OPTION_SWITCH:
    case OPTION_FLAG:
        if (strcmp(value, "on") == 0 || strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "yes") == 0) {
            *(bool *)field = true;
            return 0;
        }
        if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0 || strcmp(value, "false") == 0 ||
            strcmp(value, "no") == 0) {
            *(bool *)field = false;
            return 0;
        }
        break;
    }
    snprintf(error, error_size, "%s has an invalid value '%s': expected %s.", source, value,
             o->kind == OPTION_DURATION ? "a duration such as 500ms, 15s, 5m or 2h"
             : o->kind == OPTION_SIZE   ? "a size such as 65536, 64KiB or 1MiB"
             : o->kind == OPTION_COUNT  ? "a positive whole number"
             : o->kind == OPTION_LISTEN ? "HOST:PORT, e.g. 127.0.0.1:8080"
             : o->kind == OPTION_FLAG   ? "true or false"
             : o->kind == OPTION_SWITCH ? "on or off"
             : o->kind == OPTION_LIST   ? "a non-empty value"
                                        : "a non-empty value");
    return -1;
}

static void variable_name(const option *o, char *out, size_t size) {
    if (o->variable) {
        snprintf(out, size, "%s", o->variable);
        return;
    }
    size_t length = (size_t)snprintf(out, size, "HERALD_%s", o->name);
    for (size_t i = 7; i < length && i < size; i++)
        out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

void server_config_print_usage(void) {
    printf("usage: herald serve [options]\n\n"
           "Starts the herald server on the embedded store. Every option can also be set with\n"
           "its HERALD_* variable (e.g. --history-size as HERALD_HISTORY_SIZE); a flag wins.\n"
           "Durations: 500ms, 15s, 5m, 2h, 1d (a bare number means seconds). Sizes: 65536, 64KiB, "
           "1MiB.\n\n"
           "options:\n");
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", options[i].name,
                 options[i].kind == OPTION_FLAG ? "" : " VALUE");
        if (strlen(flag) > 26)
            printf("  %s\n  %-26s %s\n", flag, "", options[i].help);
        else
            printf("  %-26s %s\n", flag, options[i].help);
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

int server_config_parse(server_config *config, int argc, char **argv, char *error,
                        size_t error_size) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        char name[64];
        variable_name(&options[i], name, sizeof name);
        const char *value = getenv(name);
        if (value && options[i].kind == OPTION_LIST) {
            /* A list variable is comma-separated; items are trimmed of spaces. */
            const char *start = value;
            while (*start) {
                const char *end = strchr(start, ',');
                size_t length = end ? (size_t)(end - start) : strlen(start);
                while (length && (*start == ' ' || *start == '\t'))
                    start++, length--;
                while (length && (start[length - 1] == ' ' || start[length - 1] == '\t'))
                    length--;
                char item[1100];
                if (length == 0 || length >= sizeof item) {
                    snprintf(error, error_size, "%s has an empty or over-long item.", name);
                    return -1;
                }
                memcpy(item, start, length);
                item[length] = '\0';
                if (apply_option(config, &options[i], item, name, error, error_size) != 0)
                    return -1;
                if (!end) break;
                start = end + 1;
                if (!*start) {
                    snprintf(error, error_size, "%s ends with an empty item.", name);
                    return -1;
                }
            }
        } else if (value &&
                   apply_option(config, &options[i], value, name, error, error_size) != 0) {
            return -1;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *argument = argv[a];
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            server_config_print_usage();
            return 1;
        }
        if (strncmp(argument, "--", 2) != 0) {
            snprintf(error, error_size, "Unexpected argument '%s' (see herald serve --help).",
                     argument);
            return -1;
        }
        const char *name = argument + 2;
        const char *equals = strchr(name, '=');
        size_t name_length = equals ? (size_t)(equals - name) : strlen(name);
        const option *found = NULL;
        for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
            if (strlen(options[i].name) == name_length &&
                strncmp(options[i].name, name, name_length) == 0)
                found = &options[i];
        if (!found) {
            snprintf(error, error_size, "Unknown option '%.*s' (see herald serve --help).",
                     (int)(name_length + 2), argument);
            return -1;
        }
        const char *value;
        if (equals)
            value = equals + 1;
        else if (found->kind == OPTION_FLAG)
            value = "true";
        else if (a + 1 < argc)
            value = argv[++a];
        else {
            snprintf(error, error_size, "Option '--%s' needs a value.", found->name);
            return -1;
        }
        char source[80];
        snprintf(source, sizeof source, "--%s", found->name);
        if (apply_option(config, found, value, source, error, error_size) != 0) return -1;
    }
    return 0;
}

static void string_list_free(string_list *list) {
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void server_config_free(server_config *config) {
    string_list_free(&config->api_keys);
    string_list_free(&config->cors_origins);
}

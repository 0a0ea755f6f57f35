/* herald: command dispatch (serve, publish, subscribe, version) and the serve wiring:
 * store -> commit listener -> hub -> transports. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api/access.h"
#include "cli/cli.h"
#include "core/config.h"
#include "hooks/deliverer.h"
#include "hooks/sources.h"
#include "hub/hub.h"
#include "net/server.h"
#include "store/store.h"
#include "ws/ws_session.h"

static void print_usage(FILE *out) {
    fprintf(out, "usage: herald <command> [options]\n\n"
                 "herald takes an event once and delivers it by polling, Server-Sent Events,\n"
                 "WebSockets and webhooks.\n\n"
                 "commands:\n"
                 "  serve       run the server (herald serve --help)\n"
                 "  publish     publish an event (herald publish --help)\n"
                 "  subscribe   print a topic's events as they arrive (herald subscribe --help)\n"
                 "  version     print the version\n");
}

static void on_commit(void *context, event *const *events, size_t count) {
    hub *h = context;
    for (size_t i = 0; i < count; i++)
        hub_publish(h, events[i]);
}

static bool host_is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

static void close_walk(uv_handle_t *handle, void *arg) {
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

/* The serve command's settings and access policy: freed in one place whatever way serving ends
 * (both frees are idempotent). */
static server_config config;
static access_policy serve_access;

static int serve_configured(void);

static int serve_main(int argc, char **argv) {
    server_config_defaults(&config);
    char error[512];
    int parsed = server_config_parse(&config, argc, argv, error, sizeof error);
    int status = parsed == 1 ? 0 : parsed != 0 ? 2 : serve_configured();
    if (parsed < 0) fprintf(stderr, "herald: %s\n", error);
    access_policy_free(&serve_access);
    server_config_free(&config);
    return status;
}

static int serve_configured(void) {
    char error[512];
    if (strcmp(config.listen_host, "localhost") == 0)
        snprintf(config.listen_host, sizeof config.listen_host, "127.0.0.1");
    if (access_policy_build(&serve_access, &config, error, sizeof error) != 0) {
        fprintf(stderr, "herald: %s\n", error);
        server_config_free(&config);
        return 2;
    }
    bool keys = access_keys_configured(&serve_access);
    if (!keys && !host_is_loopback(config.listen_host)) {
        if (!config.insecure) {
            fprintf(
                stderr,
                "herald: refusing to listen on %s without API keys: anyone who can reach it could "
                "publish and manage herald. Set --api-key (or HERALD_API_KEYS), listen on "
                "127.0.0.1, "
                "or pass --insecure to accept that.\n",
                config.listen_host);
            access_policy_free(&serve_access);
            server_config_free(&config);
            return 2;
        }
        fprintf(
            stderr,
            "herald: warning: listening on %s with no API keys (--insecure): anyone who can reach "
            "it may publish and manage.\n",
            config.listen_host);
    } else if (!keys) {
        fprintf(stderr, "herald: warning: no API keys are configured; listening on loopback only, "
                        "open to local "
                        "clients.\n");
    }
    if (keys && !access_tokens_configured(&serve_access))
        fprintf(stderr, "herald: note: no --jwt-secret: subscribing (polling, SSE, WebSocket) is "
                        "open to anyone "
                        "who can reach herald; publishing and management need a key.\n");
    if (config.jwt_secret && strlen(config.jwt_secret) < 32)
        fprintf(
            stderr,
            "herald: warning: --jwt-secret is shorter than 32 bytes; use a long random secret.\n");
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    store_options options = {
        .data_directory = config.data_directory,
        .history_size = config.history_size,
        .history_age_ms = config.history_age_ms,
    };
    store *st = NULL;
    if (store_open(loop, &options, &st, error, sizeof error) != 0) {
        fprintf(stderr, "herald: cannot open the store in %s: %s\n", config.data_directory, error);
        return 1;
    }
    hub *h = hub_create();
    if (!h) {
        fprintf(stderr, "herald: out of memory\n");
        store_close(st);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    store_set_commit_listener(st, on_commit, h);
    char database_path[4096];
    snprintf(database_path, sizeof database_path, "%s/herald.db", config.data_directory);
    source_registry *sources = NULL;
    if (source_registry_open(loop, database_path, &sources, error, sizeof error) != 0) {
        fprintf(stderr, "herald: cannot load webhook sources: %s\n", error);
        store_close(st);
        uv_run(loop, UV_RUN_DEFAULT);
        hub_destroy(h);
        return 1;
    }
    deliverer_options delivery = {
        .timeout_ms = config.webhook_timeout_ms,
        .retry_schedule = config.webhook_retry_schedule,
        .concurrency = config.webhook_concurrency,
        .endpoint_concurrency = config.webhook_endpoint_concurrency,
        .allow_private = config.webhook_allow_private,
    };
    deliverer *webhooks = NULL;
    if (deliverer_create(loop, st, &delivery, &webhooks, error, sizeof error) != 0) {
        fprintf(stderr, "herald: %s\n", error);
        store_close(st);
        uv_run(loop, UV_RUN_DEFAULT);
        hub_destroy(h);
        source_registry_close(sources);
        return 2;
    }
    static server s;
    if (server_start(&s, loop, &config, st, h, &serve_access, error, sizeof error) != 0) {
        fprintf(stderr, "herald: %s\n", error);
        deliverer_stop(webhooks);
        store_close(st);
        uv_walk(loop, close_walk, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        hub_destroy(h);
        source_registry_close(sources);
        return 1;
    }
    s.sources = sources; /* requests arrive only once the loop runs */
    /* The deliverer finishes its attempts before the store closes (server_begin_shutdown). */
    server_on_shutdown(&s, deliverer_stop, webhooks);
    deliverer_start(webhooks);
    uv_run(loop, UV_RUN_DEFAULT);
    hub_destroy(h);
    ws_session_cleanup();
    source_registry_close(sources);
    uv_loop_close(loop);
    access_policy_free(&serve_access);
    server_config_free(&config);
    fprintf(stderr, "herald: stopped\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "serve") == 0) return serve_main(argc - 1, argv + 1);
    if (strcmp(command, "publish") == 0) return cli_publish_main(argc - 1, argv + 1);
    if (strcmp(command, "subscribe") == 0) return cli_subscribe_main(argc - 1, argv + 1);
    if (strcmp(command, "version") == 0 && argc > 2 &&
        (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        printf("usage: herald version\n\nPrints \"herald X.Y.Z\".\n");
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("herald %s\n", HERALD_VERSION);
        return 0;
    }
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
        strcmp(command, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    fprintf(stderr, "herald: unknown command '%s'\n\n", command);
    print_usage(stderr);
    return 2;
}

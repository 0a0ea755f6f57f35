/* Option parsing, URL building, signals and libcurl plumbing shared by the client commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_internal.h"

#ifndef HERALD_VERSION
#define HERALD_VERSION "0.0.0"
#endif

cli_parse_result cli_parse_arguments(int argc, char **argv, const cli_option *options,
                                     size_t option_count, const char **positionals,
                                     size_t *positional_count) {
    bool options_ended = false;
    *positional_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        /* A lone "-" is a positional, so is anything after "--" (data such as "-5"). */
        bool is_option = !options_ended && argument[0] == '-' && argument[1] != '\0';
        if (!is_option) {
            positionals[(*positional_count)++] = argument;
            continue;
        }
        if (strcmp(argument, "--") == 0) {
            options_ended = true;
            continue;
        }
        if (strcmp(argument, "-h") == 0 || strcmp(argument, "--help") == 0) return CLI_HELP;
        size_t name_length = strcspn(argument, "=");
        const cli_option *option = NULL;
        for (size_t k = 0; k < option_count; k++) {
            if (strlen(options[k].name) == name_length &&
                memcmp(options[k].name, argument, name_length) == 0)
                option = &options[k];
        }
        if (!option) {
            fprintf(stderr, "herald %s: unknown option '%.*s'\n", argv[0], (int)name_length,
                    argument);
            return CLI_USAGE_ERROR;
        }
        if (argument[name_length] == '=') {
            *option->value = argument + name_length + 1;
        } else if (i + 1 < argc) {
            *option->value = argv[++i];
        } else {
            fprintf(stderr, "herald %s: option '%s' needs a value\n", argv[0], option->name);
            return CLI_USAGE_ERROR;
        }
    }
    return CLI_PARSED;
}

const char *cli_server_url(const char *url_option) {
    if (url_option && *url_option) return url_option;
    const char *environment = getenv("HERALD_URL");
    if (environment && *environment) return environment;
    return CLI_DEFAULT_URL;
}

const char *cli_token(const char *token_option) {
    if (token_option && *token_option) return token_option;
    const char *environment = getenv("HERALD_TOKEN");
    return environment && *environment ? environment : NULL;
}

void cli_append_base_url(text *out, const char *url) {
    size_t length = strlen(url);
    while (length > 0 && url[length - 1] == '/')
        length--;
    text_append(out, url, length);
}

static void append_percent_encoded(text *out, const char *value, const char *keep) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        bool unreserved = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                          (*c >= '0' && *c <= '9') || strchr("-._~", *c) || strchr(keep, *c);
        if (unreserved) {
            text_append_char(out, (char)*c);
        } else {
            text_append_char(out, '%');
            text_append_char(out, hex[*c >> 4]);
            text_append_char(out, hex[*c & 15]);
        }
    }
}

void cli_append_topic_path(text *out, const char *topic) {
    append_percent_encoded(out, topic, "/");
}

void cli_append_query_value(text *out, const char *value) {
    append_percent_encoded(out, value, "");
}

volatile sig_atomic_t cli_interrupted = 0;

static void note_interrupt(int signal_number) {
    (void)signal_number;
    cli_interrupted = 1;
}

void cli_install_signal_handlers(void) {
    /* No SA_RESTART: a blocking wait should return at once so the command can end. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = note_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    /* A closed stdout (| head) then shows up as EPIPE on the write, which ends the command
     * cleanly, instead of killing it halfway through a line. */
    signal(SIGPIPE, SIG_IGN);
}

bool cli_sleep_ms(long milliseconds) {
    /* Short slices bound the delay of a signal that lands just before a slice starts. */
    while (milliseconds > 0 && !cli_interrupted) {
        long slice = milliseconds < 100 ? milliseconds : 100;
        struct timespec duration = {.tv_sec = 0, .tv_nsec = slice * 1000000L};
        nanosleep(&duration, NULL);
        milliseconds -= slice;
    }
    return !cli_interrupted;
}

static int abort_when_interrupted(void *context, curl_off_t download_total, curl_off_t download_now,
                                  curl_off_t upload_total, curl_off_t upload_now) {
    return cli_interrupted ? 1 : 0;
}

CURL *cli_curl_new(const char *url, char *error_buffer) {
    CURL *curl = curl_easy_init();
    if (!curl) return NULL;
    error_buffer[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "herald/" HERALD_VERSION);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_when_interrupted);
    return curl;
}

size_t cli_collect_body(char *bytes, size_t size, size_t count, void *text_pointer) {
    text *body = text_pointer;
    text_append(body, bytes, size * count);
    return text_failed(body) ? 0 : size * count;
}

struct curl_slist *cli_add_authorization(struct curl_slist *headers, const char *token) {
    if (!token) return headers;
    text header;
    text_init(&header);
    text_printf(&header, "Authorization: Bearer %s", token);
    const char *line = text_cstring(&header);
    struct curl_slist *appended = line ? curl_slist_append(headers, line) : NULL;
    text_free(&header);
    return appended ? appended : headers;
}

void cli_report_http_error(long status, const char *body, size_t length) {
    text message;
    text_init(&message);
    size_t start, end;
    const char *reason = NULL;
    if (body && (cli_json_find_member(body, length, "message", &start, &end) ||
                 cli_json_find_member(body, length, "error", &start, &end))) {
        if (cli_json_decode_string(&message, body + start, end - start) && message.length)
            reason = text_cstring(&message);
    }
    if (!reason) reason = status == 304 ? "not modified" : "the server refused the request";
    fprintf(stderr, "herald: %s (%ld)\n", reason, status);
    text_free(&message);
}

void cli_report_curl_error(CURLcode code, const char *error_buffer, const char *url) {
    const char *reason = error_buffer && *error_buffer ? error_buffer : curl_easy_strerror(code);
    bool unreachable = code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                       code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_OPERATION_TIMEDOUT;
    if (unreachable)
        fprintf(stderr, "herald: cannot reach %s: %s\n", url, reason);
    else
        fprintf(stderr, "herald: request to %s failed: %s\n", url, reason);
}

bool cli_write_line(text *line, int *exit_status) {
    text_append_char(line, '\n');
    if (text_failed(line)) {
        fprintf(stderr, "herald: out of memory\n");
        *exit_status = CLI_EXIT_FAILURE;
        return false;
    }
    if (fwrite(line->data, 1, line->length, stdout) != line->length || fflush(stdout) != 0) {
        if (errno != EPIPE)
            fprintf(stderr, "herald: cannot write to stdout: %s\n", strerror(errno));
        *exit_status = errno == EPIPE ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        return false;
    }
    return true;
}

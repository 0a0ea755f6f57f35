/* `herald subscribe`: follow topics over SSE, short polling or long polling and print each
 * event as one JSON line (WebSockets: cli_subscribe_ws.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_internal.h"

static const char subscribe_usage[] =
    "Usage: herald subscribe TOPIC... [options]\n"
    "\n"
    "Print each event of the TOPICs as one JSON object per line (flushed per line) until\n"
    "interrupted (SIGINT or SIGTERM, exit 0) or --count events have been printed. A TOPIC\n"
    "may be a pattern: orders/* (one segment) or orders/** (any trailing segments).\n"
    "\n"
    "Options:\n"
    "  --via MODE       sse (default), ws, poll or longpoll\n"
    "  --since ID       start after event ID, replaying the retained events after it;\n"
    "                   without it only events published from now on are printed\n"
    "  --count N        exit 0 after printing N events\n"
    "  --interval D     pause between requests with --via poll: 500ms, 2s, 1m or a number\n"
    "                   of seconds (default 1s)\n"
    "  --token TOKEN    send Authorization: Bearer TOKEN (env HERALD_TOKEN)\n"
    "  --url URL        server URL (env HERALD_URL, default " CLI_DEFAULT_URL ")\n"
    "  -h, --help       print this help and exit\n"
    "\n"
    "Output:\n"
    "  poll, longpoll   each event object as the server sends it:\n"
    "                   {\"id\",\"topic\",\"type\",\"time\",\"data\"}\n"
    "  ws               the same event objects, taken from the server's event messages\n"
    "                   (without their \"op\" member, the rest byte for byte); reset notices\n"
    "                   (history truncated, unknown id) are warnings on stderr\n"
    "  sse              an SSE frame carries no topic or time, so each line is\n"
    "                   {\"id\",\"type\",\"data\"}: data is the JSON value when the frame's data\n"
    "                   is JSON text, else a JSON string. herald.reset notices (history\n"
    "                   truncated, unknown id) are printed the same way.\n"
    "\n"
    "sse resumes a dropped stream from the last id (Last-Event-ID) after the server's retry\n"
    "delay, so nothing is missed or repeated. ws holds one WebSocket to /v1/ws (herald.v1,\n"
    "http:// URLs only) with a subscription per TOPIC; a dropped connection is reopened after\n"
    "1-3 s and each TOPIC resubscribed from the last event printed for it, so again nothing\n"
    "is missed or repeated. A subscription the server refuses (an error such as forbidden)\n"
    "ends the command with status 1. poll and longpoll (wait=30) follow the server's\n"
    "\"next\" cursor; without --since their first request only fetches that cursor.\n"
    "\n"
    "Exit status: 0 done or interrupted, 1 server or connection error, 2 usage error.\n";

/* Long polls ask the server to hold each request this long (seconds). */
#define LONG_POLL_WAIT 30
/* The largest page a poll asks for; a full page is followed at once. */
#define POLL_LIMIT 1000
/* Without heartbeats (every 15 s by default) for this long, an SSE connection is presumed dead. */
#define SSE_SILENCE_LIMIT 45L
/* Pause before retrying a failed long poll, so a down server is not hammered. */
#define RETRY_PAUSE_MS 1000L

typedef struct subscription {
    const char **topics;
    size_t topic_count;
    const char *base_url;
    const char *token;
    const char *since;
    long count_limit; /* 0: no limit */
    long printed;
    long interval_ms;
    bool connected_once; /* failures before the first answer are fatal, after it retried */
    bool stop;
    int exit_status;
    text line;
} subscription;

/* ---- output ----------------------------------------------------------------------------- */

/* Writes sub->line as one output line. A closed stdout (| head) ends the command quietly. */
static void emit_line(subscription *sub) {
    if (!cli_write_line(&sub->line, &sub->exit_status)) {
        sub->stop = true;
        return;
    }
    sub->printed++;
    if (sub->count_limit && sub->printed >= sub->count_limit) sub->stop = true;
}

static void emit_event_object(subscription *sub, const char *json, size_t length) {
    text_clear(&sub->line);
    cli_json_append_compact(&sub->line, json, length);
    emit_line(sub);
}

/* ---- URLs ------------------------------------------------------------------------------- */

/* The per-topic path for one plain topic, the multi-topic form for several or a pattern.
 * Returns the separator for the next query parameter. */
static char append_subscription_url(const subscription *sub, text *url, const char *verb) {
    cli_append_base_url(url, sub->base_url);
    if (sub->topic_count == 1 && !strchr(sub->topics[0], '*')) {
        text_append_cstring(url, "/v1/topics/");
        cli_append_topic_path(url, sub->topics[0]);
        text_printf(url, "/%s", verb);
        return '?';
    }
    text_printf(url, "/v1/%s", verb);
    for (size_t i = 0; i < sub->topic_count; i++) {
        text_append_cstring(url, i == 0 ? "?topic=" : "&topic=");
        cli_append_query_value(url, sub->topics[i]);
    }
    return '&';
}

/* A 5xx or 429 after a good start is worth retrying; anything else is the client's fault. */
static bool is_retryable_status(long status) {
    return status == 429 || status >= 500;
}

/* ---- SSE -------------------------------------------------------------------------------- */

typedef struct sse_connection {
    subscription *sub;
    cli_sse_parser *parser;
    CURL *curl;
    long http_status; /* 0 until the first body bytes arrive */
    text error_body;
} sse_connection;

static int print_sse_event(void *context, const char *id, const char *type, const char *data,
                           size_t data_length) {
    subscription *sub = context;
    text_clear(&sub->line);
    text_append_cstring(&sub->line, "{\"id\":");
    if (*id)
        cli_json_append_string(&sub->line, id, strlen(id));
    else
        text_append_cstring(&sub->line, "null");
    text_append_cstring(&sub->line, ",\"type\":");
    cli_json_append_string(&sub->line, type, strlen(type));
    text_append_cstring(&sub->line, ",\"data\":");
    if (cli_json_is_valid(data, data_length))
        cli_json_append_compact(&sub->line, data, data_length);
    else
        cli_json_append_string(&sub->line, data, data_length);
    text_append_char(&sub->line, '}');
    emit_line(sub);
    return sub->stop ? 1 : 0;
}

static size_t receive_sse(char *bytes, size_t size, size_t count, void *context) {
    sse_connection *connection = context;
    size_t length = size * count;
    if (connection->http_status == 0) {
        curl_easy_getinfo(connection->curl, CURLINFO_RESPONSE_CODE, &connection->http_status);
        if (connection->http_status >= 200 && connection->http_status <= 299)
            connection->sub->connected_once = true;
    }
    if (connection->http_status < 200 || connection->http_status > 299) {
        if (connection->error_body.length < 65536)
            text_append(&connection->error_body, bytes, length);
        return length;
    }
    int result = cli_sse_feed(connection->parser, bytes, length);
    if (result < 0) {
        fprintf(stderr, "herald: out of memory\n");
        connection->sub->exit_status = CLI_EXIT_FAILURE;
        connection->sub->stop = true;
    }
    return result == 0 ? length : 0; /* 0 makes curl end the transfer */
}

/* One connection of the stream. Returns true to reconnect, false when the command is over. */
static bool run_sse_connection(subscription *sub, cli_sse_parser *parser, const char *url) {
    sse_connection connection = {.sub = sub, .parser = parser};
    text_init(&connection.error_body);
    text last_event_id;
    text_init(&last_event_id);
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    headers = curl_slist_append(headers, "Cache-Control: no-cache");
    if (parser->id.length) {
        text_printf(&last_event_id, "Last-Event-ID: %s", text_cstring(&parser->id));
        headers = curl_slist_append(headers, text_cstring(&last_event_id));
    }
    headers = cli_add_authorization(headers, sub->token);

    char error_buffer[CURL_ERROR_SIZE];
    connection.curl = cli_curl_new(url, error_buffer);
    if (!connection.curl || !headers || text_failed(&last_event_id)) {
        fprintf(stderr, "herald: out of memory\n");
        sub->exit_status = CLI_EXIT_FAILURE;
        sub->stop = true;
    } else {
        curl_easy_setopt(connection.curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(connection.curl, CURLOPT_WRITEFUNCTION, receive_sse);
        curl_easy_setopt(connection.curl, CURLOPT_WRITEDATA, &connection);
        curl_easy_setopt(connection.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(connection.curl, CURLOPT_LOW_SPEED_TIME, SSE_SILENCE_LIMIT);
        CURLcode code = curl_easy_perform(connection.curl);
        long status = connection.http_status;
        if (status == 0) curl_easy_getinfo(connection.curl, CURLINFO_RESPONSE_CODE, &status);
        if (sub->stop || cli_interrupted) {
            /* done: --count reached, stdout closed or a signal */
        } else if (status != 0 && (status < 200 || status > 299)) {
            cli_report_http_error(status, connection.error_body.data, connection.error_body.length);
            if (!sub->connected_once || !is_retryable_status(status)) {
                sub->exit_status = CLI_EXIT_FAILURE;
                sub->stop = true;
            }
        } else if (code != CURLE_OK && !sub->connected_once) {
            cli_report_curl_error(code, error_buffer, url);
            sub->exit_status = CLI_EXIT_FAILURE;
            sub->stop = true;
        } else if (code != CURLE_OK) {
            fprintf(stderr, "herald: stream lost (%s); reconnecting in %ld ms\n",
                    *error_buffer ? error_buffer : curl_easy_strerror(code), parser->retry_ms);
        } else {
            fprintf(stderr, "herald: stream ended; reconnecting in %ld ms\n", parser->retry_ms);
        }
    }
    curl_easy_cleanup(connection.curl);
    curl_slist_free_all(headers);
    text_free(&last_event_id);
    text_free(&connection.error_body);
    return !sub->stop && !cli_interrupted;
}

static int run_sse(subscription *sub) {
    cli_sse_parser parser;
    cli_sse_init(&parser, print_sse_event, sub);
    if (sub->since) text_append_cstring(&parser.id, sub->since);
    text url;
    text_init(&url);
    append_subscription_url(sub, &url, "stream");
    const char *url_string = text_cstring(&url);
    if (!url_string) {
        fprintf(stderr, "herald: out of memory\n");
        sub->exit_status = CLI_EXIT_FAILURE;
    } else {
        while (run_sse_connection(sub, &parser, url_string) && cli_sleep_ms(parser.retry_ms))
            cli_sse_restart(&parser);
    }
    text_free(&url);
    cli_sse_free(&parser);
    return sub->exit_status;
}

/* ---- polling ---------------------------------------------------------------------------- */

typedef struct poll_state {
    bool long_poll;
    bool bootstrapping; /* the first request without --since: learn the cursor, print nothing */
    text cursor;        /* the since for the next request ("" for none) */
    text etag;          /* the last ETag, sent back as If-None-Match */
    text response;
} poll_state;

/* Prints each element of the events array; returns how many there were. */
static size_t print_events_array(subscription *sub, const char *json, size_t start, size_t end) {
    size_t printed = 0;
    size_t position = cli_json_skip_whitespace(json, end, start + 1);
    while (position < end && json[position] != ']' && !sub->stop) {
        size_t element_end = cli_json_skip_value(json, end, position);
        if (element_end == CLI_JSON_INVALID) break;
        emit_event_object(sub, json + position, element_end - position);
        printed++;
        position = cli_json_skip_whitespace(json, end, element_end);
        if (position < end && json[position] == ',') position++;
        position = cli_json_skip_whitespace(json, end, position);
    }
    return printed;
}

/* Handles a 200 answer. False when it is not the shape §4 promises. */
static bool handle_poll_answer(subscription *sub, poll_state *state, CURL *curl) {
    const char *body = state->response.data;
    size_t length = state->response.length;
    size_t events_start, events_end, next_start, next_end, truncated_start, truncated_end;
    if (!body || !cli_json_find_member(body, length, "events", &events_start, &events_end) ||
        body[events_start] != '[' ||
        !cli_json_find_member(body, length, "next", &next_start, &next_end))
        return false;
    text next;
    text_init(&next);
    bool next_ok = cli_json_decode_string(&next, body + next_start, next_end - next_start);
    const char *next_id = text_cstring(&next);
    if (!next_ok || !next_id) {
        text_free(&next);
        return false;
    }
    bool truncated =
        cli_json_find_member(body, length, "truncated", &truncated_start, &truncated_end) &&
        truncated_end - truncated_start == 4 && memcmp(body + truncated_start, "true", 4) == 0;

    size_t event_count = 0;
    if (!state->bootstrapping)
        event_count = print_events_array(sub, body, events_start, events_end);
    bool restart = false;
    if (truncated && !state->bootstrapping && !sub->stop) {
        /* An unchanged cursor with nothing returned is one this store never issued (a wiped
         * store): start again from its newest event, as SSE does after herald.reset unknown_id. */
        restart = event_count == 0 && strcmp(next_id, text_cstring(&state->cursor)) == 0;
        if (restart)
            fprintf(stderr,
                    "herald: the server never issued event %s (a new store?); following "
                    "from its newest event\n",
                    next_id);
        else
            fprintf(stderr,
                    "herald: events after %s have left the server's history; some were "
                    "missed\n",
                    text_cstring(&state->cursor));
    }
    text_clear(&state->cursor);
    if (!restart) text_append_cstring(&state->cursor, next_id);
    text_free(&next);

    struct curl_header *etag = NULL;
    text_clear(&state->etag);
    if (curl_easy_header(curl, "ETag", 0, CURLH_HEADER, -1, &etag) == CURLHE_OK)
        text_append_cstring(&state->etag, etag->value);
    state->bootstrapping = restart;
    return true;
}

/* One request. Returns the pause before the next one in ms, or -1 when the command is over. */
static long poll_once(subscription *sub, poll_state *state) {
    bool waiting = state->long_poll && !state->bootstrapping;
    text url, if_none_match;
    text_init(&url);
    text_init(&if_none_match);
    char separator = append_subscription_url(sub, &url, "events");
    text_printf(&url, "%climit=%d", separator, POLL_LIMIT);
    if (state->cursor.length) text_printf(&url, "&since=%s", text_cstring(&state->cursor));
    if (waiting) text_printf(&url, "&wait=%d", LONG_POLL_WAIT);
    struct curl_slist *headers = NULL;
    if (state->etag.length && !state->bootstrapping) {
        text_printf(&if_none_match, "If-None-Match: %s", text_cstring(&state->etag));
        headers = curl_slist_append(headers, text_cstring(&if_none_match));
    }
    headers = cli_add_authorization(headers, sub->token);
    text_clear(&state->response);

    long pause = -1;
    char error_buffer[CURL_ERROR_SIZE];
    const char *url_string = text_cstring(&url);
    CURL *curl = url_string ? cli_curl_new(url_string, error_buffer) : NULL;
    if (!curl || text_failed(&if_none_match)) {
        fprintf(stderr, "herald: out of memory\n");
        sub->exit_status = CLI_EXIT_FAILURE;
        goto done;
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, cli_collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state->response);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, waiting ? LONG_POLL_WAIT + 15L : 30L);
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    long retry_pause = sub->interval_ms > RETRY_PAUSE_MS ? sub->interval_ms : RETRY_PAUSE_MS;
    if (cli_interrupted) {
        /* done */
    } else if (code != CURLE_OK) {
        if (sub->connected_once) {
            pause = retry_pause;
            fprintf(stderr, "herald: request failed (%s); retrying in %ld ms\n",
                    *error_buffer ? error_buffer : curl_easy_strerror(code), pause);
        } else {
            cli_report_curl_error(code, error_buffer, url_string);
            sub->exit_status = CLI_EXIT_FAILURE;
        }
    } else if (status == 304) {
        pause = state->long_poll ? 0 : sub->interval_ms;
    } else if (status != 200) {
        cli_report_http_error(status, state->response.data, state->response.length);
        if (sub->connected_once && is_retryable_status(status))
            pause = retry_pause;
        else
            sub->exit_status = CLI_EXIT_FAILURE;
    } else if (!handle_poll_answer(sub, state, curl)) {
        fprintf(stderr, "herald: unexpected answer from %s\n", url_string);
        sub->exit_status = CLI_EXIT_FAILURE;
    } else {
        sub->connected_once = true;
        if (!sub->stop) pause = state->long_poll ? 0 : sub->interval_ms;
    }

done:
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    text_free(&url);
    text_free(&if_none_match);
    return pause;
}

static int run_poll(subscription *sub, bool long_poll) {
    poll_state state = {.long_poll = long_poll, .bootstrapping = sub->since == NULL};
    text_init(&state.cursor);
    text_init(&state.etag);
    text_init(&state.response);
    if (sub->since) text_append_cstring(&state.cursor, sub->since);
    for (;;) {
        long pause = poll_once(sub, &state);
        if (pause < 0 || sub->stop || !cli_sleep_ms(pause)) break;
    }
    text_free(&state.cursor);
    text_free(&state.etag);
    text_free(&state.response);
    return sub->exit_status;
}

/* ---- arguments -------------------------------------------------------------------------- */

static bool parse_positive(const char *value, long maximum, long *out) {
    char *end;
    errno = 0;
    long number = strtol(value, &end, 10);
    if (errno || end == value || *end || number <= 0 || number > maximum) return false;
    *out = number;
    return true;
}

/* "500ms", "2s", "1m", "1h" or a bare number of seconds, as herald's other durations. */
static bool parse_interval(const char *value, long *milliseconds) {
    char *end;
    errno = 0;
    long number = strtol(value, &end, 10);
    if (errno || end == value || number <= 0 || number > 86400000L) return false;
    long unit = 0;
    if (strcmp(end, "ms") == 0) unit = 1;
    if (strcmp(end, "s") == 0 || *end == '\0') unit = 1000;
    if (strcmp(end, "m") == 0) unit = 60 * 1000;
    if (strcmp(end, "h") == 0) unit = 60 * 60 * 1000;
    if (unit == 0 || number > 86400000L / unit) return false;
    *milliseconds = number * unit;
    return true;
}

static bool is_event_id(const char *value) {
    size_t length = strlen(value);
    return length > 0 && length <= 20 && strspn(value, "0123456789") == length;
}

int cli_subscribe_main(int argc, char **argv) {
    const char *via = NULL, *since = NULL, *count = NULL, *interval = NULL, *url = NULL,
               *token = NULL;
    const cli_option options[] = {
        {"--via", &via},           {"--since", &since}, {"--count", &count},
        {"--interval", &interval}, {"--url", &url},     {"--token", &token},
    };
    subscription sub = {.interval_ms = 1000, .exit_status = CLI_EXIT_OK};
    sub.topics = calloc((size_t)argc + 1, sizeof *sub.topics);
    if (!sub.topics) {
        fprintf(stderr, "herald: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    cli_parse_result parsed = cli_parse_arguments(
        argc, argv, options, sizeof options / sizeof options[0], sub.topics, &sub.topic_count);
    const char *problem = NULL;
    if (parsed == CLI_PARSED) {
        if (sub.topic_count == 0)
            problem = "at least one TOPIC is required";
        else if (since && !is_event_id(since))
            problem = "--since needs an event id (a decimal number)";
        else if (count && !parse_positive(count, 1000000000L, &sub.count_limit))
            problem = "--count needs a positive number";
        else if (interval && !parse_interval(interval, &sub.interval_ms))
            problem = "--interval needs a duration such as 500ms, 2s or 1m";
        else if (via && strcmp(via, "sse") && strcmp(via, "poll") && strcmp(via, "longpoll") &&
                 strcmp(via, "ws"))
            problem = "--via must be sse, ws, poll or longpoll";
        for (size_t i = 0; i < sub.topic_count && !problem; i++)
            if (!*sub.topics[i]) problem = "a TOPIC is empty";
    }
    int status = CLI_EXIT_USAGE;
    if (parsed == CLI_HELP) {
        fputs(subscribe_usage, stdout);
        status = CLI_EXIT_OK;
    } else if (parsed == CLI_USAGE_ERROR || problem) {
        if (problem) fprintf(stderr, "herald subscribe: %s\n", problem);
        fputs(subscribe_usage, stderr);
    } else if (via && strcmp(via, "ws") == 0) {
        cli_ws_subscribe_request request = {
            .topics = sub.topics,
            .topic_count = sub.topic_count,
            .url = cli_server_url(url),
            .token = cli_token(token),
            .since = since,
            .count_limit = sub.count_limit,
        };
        status = cli_subscribe_ws(&request);
    } else if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "herald: cannot initialise libcurl\n");
        status = CLI_EXIT_FAILURE;
    } else {
        sub.base_url = cli_server_url(url);
        sub.token = cli_token(token);
        sub.since = since;
        text_init(&sub.line);
        cli_install_signal_handlers();
        if (!via || strcmp(via, "sse") == 0)
            status = run_sse(&sub);
        else
            status = run_poll(&sub, strcmp(via, "longpoll") == 0);
        text_free(&sub.line);
        curl_global_cleanup();
    }
    free(sub.topics);
    return status;
}

/* `herald publish`: one POST (or one herald.v1 publish over a WebSocket), the receipt on
 * stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_internal.h"
#include "core/json.h"

/* How long to wait for the server's answer to a publish, as the HTTP request's timeout. */
#define WS_ACK_TIMEOUT_MS 60000L

static const char publish_usage[] =
    "Usage: herald publish TOPIC [DATA] [options]\n"
    "\n"
    "Publish one event to TOPIC and print the server's receipt\n"
    "{\"id\",\"topic\",\"type\",\"time\"} as one JSON line (with --via ws: {\"id\"}, from\n"
    "the WebSocket acknowledgement).\n"
    "\n"
    "DATA is the event's body; without it the body is read from stdin. It is stored as\n"
    "JSON when it parses as JSON, else as a text string. Put -- before DATA that starts\n"
    "with '-' (herald publish t -- -5).\n"
    "\n"
    "Options:\n"
    "  --type T               event type (default: message)\n"
    "  --idempotency-key K    a repeat with the same key within 24 h stores nothing new\n"
    "                         and prints the original receipt\n"
    "  --via MODE             http (default): POST /v1/topics/TOPIC/events; ws: a\n"
    "                         WebSocket to /v1/ws (herald.v1, http:// URLs only) sending one\n"
    "                         publish message and waiting for the server's ack (the event is\n"
    "                         durable); DATA must then be UTF-8\n"
    "  --token TOKEN          send Authorization: Bearer TOKEN (env HERALD_TOKEN)\n"
    "  --url URL              server URL (env HERALD_URL, default " CLI_DEFAULT_URL ")\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "Exit status: 0 published, 1 server or connection error, 2 usage error.\n";

static bool read_all(FILE *stream, text *out) {
    char chunk[65536];
    size_t count;
    while ((count = fread(chunk, 1, sizeof chunk, stream)) > 0)
        text_append(out, chunk, count);
    return !ferror(stream) && !text_failed(out);
}

/* POST {url}/v1/topics/{topic}/events[?type=T] */
static int send_event(const char *base_url, const char *topic, const char *type,
                      const char *idempotency_key, const char *token, const text *body) {
    text url, response, header;
    text_init(&url);
    text_init(&response);
    text_init(&header);
    cli_append_base_url(&url, base_url);
    text_append_cstring(&url, "/v1/topics/");
    cli_append_topic_path(&url, topic);
    text_append_cstring(&url, "/events");
    if (type) {
        text_append_cstring(&url, "?type=");
        cli_append_query_value(&url, type);
    }
    if (idempotency_key) text_printf(&header, "Idempotency-Key: %s", idempotency_key);

    /* No Content-Type: herald then stores the body as JSON when it parses, else as text, which
     * is what the command promises. An empty "Content-Type:" removes curl's form default, and
     * an empty "Expect:" avoids a 1 s 100-continue pause on large bodies. */
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type:");
    headers = curl_slist_append(headers, "Expect:");
    if (idempotency_key) headers = curl_slist_append(headers, text_cstring(&header));
    headers = cli_add_authorization(headers, token);

    int status = CLI_EXIT_FAILURE;
    char error_buffer[CURL_ERROR_SIZE];
    const char *url_string = text_cstring(&url);
    CURL *curl = url_string && headers ? cli_curl_new(url_string, error_buffer) : NULL;
    if (!curl || text_failed(&header)) {
        fprintf(stderr, "herald: out of memory\n");
        goto done;
    }
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->length ? body->data : "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->length);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, cli_collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);

    CURLcode code = curl_easy_perform(curl);
    if (code != CURLE_OK) {
        cli_report_curl_error(code, error_buffer, url_string);
        goto done;
    }
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    if (http_status < 200 || http_status > 299) {
        cli_report_http_error(http_status, response.data, response.length);
        goto done;
    }
    if (response.length) fwrite(response.data, 1, response.length, stdout);
    if (!response.length || response.data[response.length - 1] != '\n') fputc('\n', stdout);
    status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;

done:
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    text_free(&url);
    text_free(&response);
    text_free(&header);
    return status;
}

/* {"op":"publish","topic":T,"type":TYPE,"data":DATA,"ref":"1"[,"idempotency_key":K]}: DATA as
 * JSON when it parses (a JSON text on one line), else as a JSON string. */
static void append_publish_message(text *message, const char *topic, const char *type,
                                   const char *idempotency_key, const text *body) {
    text_append_cstring(message, "{\"op\":\"publish\",\"topic\":");
    json_append_string(message, topic, strlen(topic));
    text_append_cstring(message, ",\"type\":");
    json_append_string(message, type ? type : "message", strlen(type ? type : "message"));
    text_append_cstring(message, ",\"data\":");
    const char *data = body->length ? body->data : "";
    size_t before = message->length;
    if (!json_minify(data, body->length, message, NULL) && !text_failed(message)) {
        message->length = before; /* not JSON: drop the partial copy, send it as text */
        json_append_string(message, data, body->length);
    }
    text_append_cstring(message, ",\"ref\":\"1\"");
    if (idempotency_key) {
        text_append_cstring(message, ",\"idempotency_key\":");
        json_append_string(message, idempotency_key, strlen(idempotency_key));
    }
    text_append_char(message, '}');
}

/* "herald: <message> (<code>)" from an error message of the herald.v1 protocol. */
static void report_ws_error(json_span message) {
    text reason, code;
    text_init(&reason);
    text_init(&code);
    size_t cursor = 0;
    json_span key, value;
    while (json_object_next(message, &cursor, &key, &value)) {
        if (json_kind_of(value) != JSON_KIND_STRING) continue;
        if (json_string_equals(key, "message")) json_string_decode(value, &reason);
        if (json_string_equals(key, "code")) json_string_decode(value, &code);
    }
    const char *reason_text = reason.length ? text_cstring(&reason) : NULL;
    const char *code_text = code.length ? text_cstring(&code) : NULL;
    fprintf(stderr, "herald: %s (%s)\n", reason_text ? reason_text : "the server refused",
            code_text ? code_text : "error");
    text_free(&reason);
    text_free(&code);
}

/* Handles one message from the server while waiting for the ack. Returns an exit status once
 * the publish is answered, -1 to keep waiting. */
static int handle_ack_message(const char *data, size_t length) {
    json_span message = {data, length};
    if (!json_validate(data, length, NULL) || json_kind_of(message) != JSON_KIND_OBJECT) return -1;
    json_span op = {0}, ref = {0}, id = {0}, key, value;
    size_t cursor = 0;
    while (json_object_next(message, &cursor, &key, &value)) {
        if (json_string_equals(key, "op")) op = value;
        if (json_string_equals(key, "ref")) ref = value;
        if (json_string_equals(key, "id")) id = value;
    }
    bool ours = !ref.data || json_string_equals(ref, "1"); /* an error without ref: bad JSON */
    if (!op.data || !ours) return -1;
    if (json_string_equals(op, "error")) {
        report_ws_error(message);
        return CLI_EXIT_FAILURE;
    }
    if (!json_string_equals(op, "ack") || !ref.data) return -1;
    if (!id.data || json_kind_of(id) != JSON_KIND_STRING) {
        fprintf(stderr, "herald: the server's ack carries no event id\n");
        return CLI_EXIT_FAILURE;
    }
    fputs("{\"id\":", stdout);
    fwrite(id.data, 1, id.length, stdout);
    fputs("}\n", stdout);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static int send_event_ws(const char *base_url, const char *topic, const char *type,
                         const char *idempotency_key, const char *token, const text *body) {
    bool strings_ok =
        utf8_validate(topic, strlen(topic), NULL) &&
        (!type || utf8_validate(type, strlen(type), NULL)) &&
        (!idempotency_key || utf8_validate(idempotency_key, strlen(idempotency_key), NULL));
    if (!strings_ok || !utf8_validate(body->length ? body->data : "", body->length, NULL)) {
        fprintf(stderr,
                "herald publish: --via ws sends text frames: the %s must be UTF-8 "
                "(use --via http)\n",
                strings_ok ? "DATA" : "TOPIC, type and idempotency key");
        return CLI_EXIT_USAGE;
    }
    if (token && strpbrk(token, "\r\n")) {
        fprintf(stderr, "herald publish: the token must not contain line breaks\n");
        return CLI_EXIT_USAGE;
    }
    cli_ws_endpoint endpoint;
    cli_ws_endpoint_init(&endpoint);
    cli_ws_url_result parsed = cli_ws_endpoint_parse(&endpoint, base_url, "/v1/ws");
    if (parsed != CLI_WS_URL_OK) {
        fprintf(stderr,
                parsed == CLI_WS_URL_TLS
                    ? "herald: --via ws supports http:// server URLs only (no TLS): %s\n"
                    : "herald: --via ws needs a server URL of the form http://HOST[:PORT]: %s\n",
                base_url);
        cli_ws_endpoint_free(&endpoint);
        return CLI_EXIT_USAGE;
    }
    text message;
    text_init(&message);
    append_publish_message(&message, topic, type, idempotency_key, body);
    cli_ws_client client;
    cli_ws_init(&client);
    int status = CLI_EXIT_FAILURE;
    cli_ws_status connection = CLI_WS_NO_MEMORY;
    if (!text_failed(&message)) connection = cli_ws_connect(&client, &endpoint, token);
    if (connection == CLI_WS_OK && !cli_ws_send_text(&client, message.data, message.length))
        connection = CLI_WS_LOST;
    if (connection != CLI_WS_OK) {
        cli_ws_report(&client, connection, base_url);
    } else {
        /* Wait for the answer to ref "1"; pings are answered on the way. */
        long long waited_ms = 0;
        int answer = -1;
        while (answer < 0) {
            connection = cli_ws_receive(&client, 1000);
            if (connection == CLI_WS_TIMEOUT && (waited_ms += 1000) < WS_ACK_TIMEOUT_MS) continue;
            if (connection != CLI_WS_OK) break;
            answer = handle_ack_message(client.message.data, client.message.length);
        }
        if (answer >= 0) {
            status = answer;
        } else {
            text description;
            text_init(&description);
            cli_ws_describe(&client, connection, base_url, &description);
            const char *line = text_cstring(&description);
            fprintf(stderr, "herald: no acknowledgement of the publish: %s\n",
                    line ? line : "out of memory");
            text_free(&description);
        }
        cli_ws_close(&client, 1000);
    }
    cli_ws_free(&client);
    text_free(&message);
    cli_ws_endpoint_free(&endpoint);
    return status;
}

int cli_publish_main(int argc, char **argv) {
    const char *type = NULL, *idempotency_key = NULL, *url = NULL, *token = NULL, *via = NULL;
    const cli_option options[] = {
        {"--type", &type}, {"--idempotency-key", &idempotency_key},
        {"--via", &via},   {"--token", &token},
        {"--url", &url},
    };
    const char **positionals = calloc((size_t)argc + 1, sizeof *positionals);
    if (!positionals) {
        fprintf(stderr, "herald: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    size_t positional_count = 0;
    cli_parse_result parsed = cli_parse_arguments(
        argc, argv, options, sizeof options / sizeof options[0], positionals, &positional_count);
    const char *topic = positional_count > 0 ? positionals[0] : NULL;
    const char *data = positional_count > 1 ? positionals[1] : NULL;
    free(positionals);
    if (parsed == CLI_HELP) {
        fputs(publish_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == CLI_PARSED && (positional_count < 1 || positional_count > 2)) {
        fprintf(stderr, "herald publish: %s\n",
                positional_count < 1 ? "a TOPIC is required" : "too many arguments");
        parsed = CLI_USAGE_ERROR;
    }
    if (parsed == CLI_PARSED && !*topic) {
        fprintf(stderr, "herald publish: the TOPIC is empty\n");
        parsed = CLI_USAGE_ERROR;
    }
    if (parsed == CLI_PARSED && via && strcmp(via, "http") != 0 && strcmp(via, "ws") != 0) {
        fprintf(stderr, "herald publish: --via must be http or ws\n");
        parsed = CLI_USAGE_ERROR;
    }
    if (parsed != CLI_PARSED) {
        fputs(publish_usage, stderr);
        return CLI_EXIT_USAGE;
    }

    text body;
    text_init(&body);
    if (data) {
        text_append_cstring(&body, data);
    } else if (!read_all(stdin, &body)) {
        fprintf(stderr, "herald: cannot read the event data from stdin\n");
        text_free(&body);
        return CLI_EXIT_FAILURE;
    }

    int status = CLI_EXIT_FAILURE;
    if (via && strcmp(via, "ws") == 0) {
        status = send_event_ws(cli_server_url(url), topic, type, idempotency_key, cli_token(token),
                               &body);
    } else if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "herald: cannot initialise libcurl\n");
    } else {
        status =
            send_event(cli_server_url(url), topic, type, idempotency_key, cli_token(token), &body);
        curl_global_cleanup();
    }
    text_free(&body);
    return status;
}

/* `herald publish`: one POST, the receipt on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_internal.h"

static const char publish_usage[] =
    "Usage: herald publish TOPIC [DATA] [options]\n"
    "\n"
    "Publish one event to TOPIC and print the server's receipt\n"
    "{\"id\",\"topic\",\"type\",\"time\"} as one JSON line.\n"
    "\n"
    "DATA is the event's body; without it the body is read from stdin. It is stored as\n"
    "JSON when it parses as JSON, else as a text string. Put -- before DATA that starts\n"
    "with '-' (herald publish t -- -5).\n"
    "\n"
    "Options:\n"
    "  --type T               event type (default: message)\n"
    "  --idempotency-key K    a repeat with the same key within 24 h stores nothing new\n"
    "                         and prints the original receipt\n"
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

int cli_publish_main(int argc, char **argv) {
    const char *type = NULL, *idempotency_key = NULL, *url = NULL, *token = NULL;
    const cli_option options[] = {
        {"--type", &type},
        {"--idempotency-key", &idempotency_key},
        {"--token", &token},
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
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "herald: cannot initialise libcurl\n");
    } else {
        status = send_event(cli_server_url(url), topic, type, idempotency_key, token, &body);
        curl_global_cleanup();
    }
    text_free(&body);
    return status;
}

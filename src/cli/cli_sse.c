/* Incremental text/event-stream parser following the HTML standard's interpretation rules, so
 * `herald subscribe` sees exactly what a browser's EventSource would. */
#include <string.h>

#include "cli/cli_internal.h"

/* Far above herald's 1 MiB event limit; a longer line is a broken stream, not an event. */
#define SSE_MAX_LINE (16u * 1024 * 1024)

void cli_sse_init(cli_sse_parser *parser, cli_sse_event_fn *on_event, void *context) {
    memset(parser, 0, sizeof *parser);
    text_init(&parser->line);
    text_init(&parser->data);
    text_init(&parser->type);
    text_init(&parser->id);
    parser->retry_ms = 3000;
    parser->on_event = on_event;
    parser->context = context;
}

void cli_sse_free(cli_sse_parser *parser) {
    text_free(&parser->line);
    text_free(&parser->data);
    text_free(&parser->type);
    text_free(&parser->id);
}

void cli_sse_restart(cli_sse_parser *parser) {
    text_clear(&parser->line);
    text_clear(&parser->data);
    text_clear(&parser->type);
    parser->skip_next_lf = false;
    parser->line_too_long = false;
}

static int dispatch_event(cli_sse_parser *parser) {
    /* An event without data lines only updates the last event id, as in EventSource. */
    if (parser->data.length == 0) {
        text_clear(&parser->type);
        return 0;
    }
    parser->data.length--; /* the LF appended after the last data line */
    const char *data = text_cstring(&parser->data);
    const char *type = parser->type.length ? text_cstring(&parser->type) : "message";
    const char *id = text_cstring(&parser->id);
    if (!data || !type || !id) return -1;
    int result = parser->on_event(parser->context, id, type, data, parser->data.length);
    text_clear(&parser->data);
    text_clear(&parser->type);
    return result;
}

static bool field_is(const char *field, size_t field_length, const char *name) {
    return field_length == strlen(name) && memcmp(field, name, field_length) == 0;
}

static int process_line(cli_sse_parser *parser) {
    const char *line = parser->line.data;
    size_t length = parser->line.length;
    int result = 0;
    if (parser->line_too_long) {
        parser->line_too_long = false;
    } else if (length == 0) {
        result = dispatch_event(parser);
    } else if (line[0] != ':') { /* lines starting with ':' are comments (heartbeats) */
        const char *colon = memchr(line, ':', length);
        size_t field_length = colon ? (size_t)(colon - line) : length;
        const char *value = colon ? colon + 1 : line + length;
        size_t value_length = length - (size_t)(value - line);
        if (value_length && value[0] == ' ') {
            value++;
            value_length--;
        }
        if (field_is(line, field_length, "event")) {
            text_clear(&parser->type);
            text_append(&parser->type, value, value_length);
        } else if (field_is(line, field_length, "data")) {
            text_append(&parser->data, value, value_length);
            text_append_char(&parser->data, '\n');
        } else if (field_is(line, field_length, "id")) {
            if (!memchr(value, '\0', value_length)) {
                text_clear(&parser->id);
                text_append(&parser->id, value, value_length);
            }
        } else if (field_is(line, field_length, "retry")) {
            long retry = 0;
            size_t i = 0;
            while (i < value_length && value[i] >= '0' && value[i] <= '9' && retry < 100000000)
                retry = retry * 10 + (value[i++] - '0');
            if (i == value_length && value_length > 0) parser->retry_ms = retry;
        }
    }
    text_clear(&parser->line);
    if (result == 0 && (text_failed(&parser->data) || text_failed(&parser->type) ||
                        text_failed(&parser->id) || text_failed(&parser->line)))
        return -1;
    return result;
}

int cli_sse_feed(cli_sse_parser *parser, const char *bytes, size_t length) {
    size_t position = 0;
    while (position < length) {
        char c = bytes[position];
        if (parser->skip_next_lf) {
            parser->skip_next_lf = false;
            if (c == '\n') {
                position++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            parser->skip_next_lf = c == '\r'; /* CRLF is one line end */
            position++;
            int result = process_line(parser);
            if (result != 0) return result;
            continue;
        }
        /* Append the run up to the next line end in one go. */
        size_t end = position;
        while (end < length && bytes[end] != '\r' && bytes[end] != '\n')
            end++;
        if (parser->line.length + (end - position) > SSE_MAX_LINE) {
            parser->line_too_long = true;
            text_clear(&parser->line);
        }
        if (!parser->line_too_long) text_append(&parser->line, bytes + position, end - position);
        position = end;
    }
    return 0;
}

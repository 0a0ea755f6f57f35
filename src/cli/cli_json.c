/* A small strict JSON scanner: enough to validate data, split the polling response into its
 * event objects and read the error message, without a JSON library. */
#include <string.h>

#include "cli/cli_internal.h"

/* Deep enough for any real event; the limit keeps hostile input from exhausting the stack. */
#define JSON_MAX_DEPTH 256

static bool is_json_whitespace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool is_hex_digit(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

size_t cli_json_skip_whitespace(const char *json, size_t length, size_t position) {
    while (position < length && is_json_whitespace(json[position]))
        position++;
    return position;
}

/* position is at the opening quote. */
static size_t skip_string(const char *json, size_t length, size_t position) {
    position++;
    while (position < length) {
        unsigned char c = (unsigned char)json[position];
        if (c == '"') return position + 1;
        if (c < 0x20) return CLI_JSON_INVALID;
        if (c != '\\') {
            position++;
            continue;
        }
        if (position + 1 >= length) return CLI_JSON_INVALID;
        char escape = json[position + 1];
        if (escape == 'u') {
            if (position + 6 > length) return CLI_JSON_INVALID;
            for (size_t i = 2; i < 6; i++)
                if (!is_hex_digit(json[position + i])) return CLI_JSON_INVALID;
            position += 6;
        } else if (escape != '\0' && strchr("\"\\/bfnrt", escape)) {
            position += 2;
        } else {
            return CLI_JSON_INVALID;
        }
    }
    return CLI_JSON_INVALID;
}

static size_t skip_digits(const char *json, size_t length, size_t position) {
    size_t start = position;
    while (position < length && is_digit(json[position]))
        position++;
    return position > start ? position : CLI_JSON_INVALID;
}

static size_t skip_number(const char *json, size_t length, size_t position) {
    if (json[position] == '-') position++;
    if (position >= length) return CLI_JSON_INVALID;
    if (json[position] == '0') {
        position++;
    } else {
        position = skip_digits(json, length, position);
        if (position == CLI_JSON_INVALID) return position;
    }
    if (position < length && json[position] == '.') {
        position = skip_digits(json, length, position + 1);
        if (position == CLI_JSON_INVALID) return position;
    }
    if (position < length && (json[position] == 'e' || json[position] == 'E')) {
        position++;
        if (position < length && (json[position] == '+' || json[position] == '-')) position++;
        position = skip_digits(json, length, position);
    }
    return position;
}

static size_t skip_literal(const char *json, size_t length, size_t position, const char *word) {
    size_t word_length = strlen(word);
    if (length - position < word_length || memcmp(json + position, word, word_length) != 0)
        return CLI_JSON_INVALID;
    return position + word_length;
}

static size_t skip_value(const char *json, size_t length, size_t position, int depth);

/* Objects and arrays share one loop: members are "key": value in objects, plain values in
 * arrays. */
static size_t skip_container(const char *json, size_t length, size_t position, int depth) {
    char close = json[position] == '{' ? '}' : ']';
    bool is_object = close == '}';
    position = cli_json_skip_whitespace(json, length, position + 1);
    if (position < length && json[position] == close) return position + 1;
    for (;;) {
        if (is_object) {
            if (position >= length || json[position] != '"') return CLI_JSON_INVALID;
            position = skip_string(json, length, position);
            if (position == CLI_JSON_INVALID) return position;
            position = cli_json_skip_whitespace(json, length, position);
            if (position >= length || json[position] != ':') return CLI_JSON_INVALID;
            position++;
        }
        position = skip_value(json, length, position, depth + 1);
        if (position == CLI_JSON_INVALID) return position;
        position = cli_json_skip_whitespace(json, length, position);
        if (position >= length) return CLI_JSON_INVALID;
        if (json[position] == close) return position + 1;
        if (json[position] != ',') return CLI_JSON_INVALID;
        position = cli_json_skip_whitespace(json, length, position + 1);
    }
}

static size_t skip_value(const char *json, size_t length, size_t position, int depth) {
    if (depth > JSON_MAX_DEPTH) return CLI_JSON_INVALID;
    position = cli_json_skip_whitespace(json, length, position);
    if (position >= length) return CLI_JSON_INVALID;
    switch (json[position]) {
    case '{':
    case '[':
        return skip_container(json, length, position, depth);
    case '"':
        return skip_string(json, length, position);
    case 't':
        return skip_literal(json, length, position, "true");
    case 'f':
        return skip_literal(json, length, position, "false");
    case 'n':
        return skip_literal(json, length, position, "null");
    default:
        if (json[position] == '-' || is_digit(json[position]))
            return skip_number(json, length, position);
        return CLI_JSON_INVALID;
    }
}

size_t cli_json_skip_value(const char *json, size_t length, size_t position) {
    return skip_value(json, length, position, 0);
}

bool cli_json_is_valid(const char *json, size_t length) {
    size_t end = cli_json_skip_value(json, length, 0);
    return end != CLI_JSON_INVALID && cli_json_skip_whitespace(json, length, end) == length;
}

void cli_json_append_compact(text *out, const char *json, size_t length) {
    size_t position = 0;
    while (position < length) {
        if (json[position] == '"') {
            size_t end = skip_string(json, length, position);
            if (end == CLI_JSON_INVALID) end = length;
            text_append(out, json + position, end - position);
            position = end;
        } else {
            if (!is_json_whitespace(json[position])) text_append_char(out, json[position]);
            position++;
        }
    }
}

void cli_json_append_string(text *out, const char *bytes, size_t length) {
    text_append_char(out, '"');
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)bytes[i];
        switch (c) {
        case '"':
            text_append_cstring(out, "\\\"");
            break;
        case '\\':
            text_append_cstring(out, "\\\\");
            break;
        case '\n':
            text_append_cstring(out, "\\n");
            break;
        case '\r':
            text_append_cstring(out, "\\r");
            break;
        case '\t':
            text_append_cstring(out, "\\t");
            break;
        default:
            if (c < 0x20)
                text_printf(out, "\\u%04x", c);
            else
                text_append_char(out, (char)c);
        }
    }
    text_append_char(out, '"');
}

bool cli_json_find_member(const char *json, size_t length, const char *key, size_t *start,
                          size_t *end) {
    size_t key_length = strlen(key);
    size_t position = cli_json_skip_whitespace(json, length, 0);
    if (position >= length || json[position] != '{') return false;
    position = cli_json_skip_whitespace(json, length, position + 1);
    while (position < length && json[position] == '"') {
        size_t key_end = skip_string(json, length, position);
        if (key_end == CLI_JSON_INVALID) return false;
        /* Raw comparison: the keys herald uses never need escapes. */
        bool matches = key_end - position - 2 == key_length &&
                       memcmp(json + position + 1, key, key_length) == 0;
        position = cli_json_skip_whitespace(json, length, key_end);
        if (position >= length || json[position] != ':') return false;
        size_t value_start = cli_json_skip_whitespace(json, length, position + 1);
        size_t value_end = cli_json_skip_value(json, length, value_start);
        if (value_end == CLI_JSON_INVALID) return false;
        if (matches) {
            *start = value_start;
            *end = value_end;
            return true;
        }
        position = cli_json_skip_whitespace(json, length, value_end);
        if (position >= length || json[position] != ',') return false;
        position = cli_json_skip_whitespace(json, length, position + 1);
    }
    return false;
}

static unsigned parse_hex4(const char *digits) {
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        char c = digits[i];
        value = value * 16 + (unsigned)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return value;
}

static void append_utf8(text *out, unsigned code_point) {
    char bytes[4];
    size_t count;
    if (code_point < 0x80) {
        bytes[0] = (char)code_point;
        count = 1;
    } else if (code_point < 0x800) {
        bytes[0] = (char)(0xC0 | (code_point >> 6));
        bytes[1] = (char)(0x80 | (code_point & 0x3F));
        count = 2;
    } else if (code_point < 0x10000) {
        bytes[0] = (char)(0xE0 | (code_point >> 12));
        bytes[1] = (char)(0x80 | ((code_point >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (code_point & 0x3F));
        count = 3;
    } else {
        bytes[0] = (char)(0xF0 | (code_point >> 18));
        bytes[1] = (char)(0x80 | ((code_point >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((code_point >> 6) & 0x3F));
        bytes[3] = (char)(0x80 | (code_point & 0x3F));
        count = 4;
    }
    text_append(out, bytes, count);
}

bool cli_json_decode_string(text *out, const char *json, size_t length) {
    if (length < 2 || json[0] != '"' || skip_string(json, length, 0) != length) return false;
    for (size_t i = 1; i + 1 < length; i++) {
        if (json[i] != '\\') {
            text_append_char(out, json[i]);
            continue;
        }
        char escape = json[++i];
        switch (escape) {
        case 'b':
            text_append_char(out, '\b');
            break;
        case 'f':
            text_append_char(out, '\f');
            break;
        case 'n':
            text_append_char(out, '\n');
            break;
        case 'r':
            text_append_char(out, '\r');
            break;
        case 't':
            text_append_char(out, '\t');
            break;
        case 'u': {
            unsigned code_point = parse_hex4(json + i + 1);
            i += 4;
            /* A surrogate pair is one code point; a lone surrogate becomes U+FFFD. */
            if (code_point >= 0xD800 && code_point < 0xDC00 && i + 6 < length &&
                json[i + 1] == '\\' && json[i + 2] == 'u') {
                unsigned low = parse_hex4(json + i + 3);
                if (low >= 0xDC00 && low < 0xE000) {
                    code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
            }
            if (code_point >= 0xD800 && code_point < 0xE000) code_point = 0xFFFD;
            append_utf8(out, code_point);
            break;
        }
        default: /* '"', '\\' and '/' stand for themselves */
            text_append_char(out, escape);
        }
    }
    return true;
}

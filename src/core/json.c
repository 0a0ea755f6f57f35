#include "core/json.h"
#include "core/encoding.h"

#include <stdint.h>
#include <string.h>

/* The reader is a single forward pass over the bytes with an explicit stack of open containers
 * (no recursion), so its cost is linear and its stack use is constant. Minifying is the same pass:
 * every byte that is not insignificant whitespace is copied, in runs between whitespace gaps, so
 * strings and numbers come out byte-for-byte as written.
 *
 * Error positions are the offset of the first byte at which the input stops being a prefix of any
 * valid JSON text; when the input simply ends too early that is its length. Consequently, for an
 * invalid input with fault position p, the first p bytes are either valid or fail at p with
 * "Unexpected end of input." (the fuzz harness checks exactly that). */

/* ---- Messages ---------------------------------------------------------------------------------
 * json_error.message must be static, so messages naming the offending character come from tables:
 * index 0 is any control byte, 1 any non-ASCII byte, 2.. the printable ASCII characters '!'..'~'
 * (space is whitespace and never unexpected). */

// clang-format off
#define JSON_PRINTABLE(X, w)                                                                      \
    X("!", w) X("\"", w) X("#", w) X("$", w) X("%", w) X("&", w) X("'", w) X("(", w) X(")", w)    \
    X("*", w) X("+", w) X(",", w) X("-", w) X(".", w) X("/", w) X("0", w) X("1", w) X("2", w)     \
    X("3", w) X("4", w) X("5", w) X("6", w) X("7", w) X("8", w) X("9", w) X(":", w) X(";", w)     \
    X("<", w) X("=", w) X(">", w) X("?", w) X("@", w) X("A", w) X("B", w) X("C", w) X("D", w)     \
    X("E", w) X("F", w) X("G", w) X("H", w) X("I", w) X("J", w) X("K", w) X("L", w) X("M", w)     \
    X("N", w) X("O", w) X("P", w) X("Q", w) X("R", w) X("S", w) X("T", w) X("U", w) X("V", w)     \
    X("W", w) X("X", w) X("Y", w) X("Z", w) X("[", w) X("\\", w) X("]", w) X("^", w) X("_", w)    \
    X("`", w) X("a", w) X("b", w) X("c", w) X("d", w) X("e", w) X("f", w) X("g", w) X("h", w)     \
    X("i", w) X("j", w) X("k", w) X("l", w) X("m", w) X("n", w) X("o", w) X("p", w) X("q", w)     \
    X("r", w) X("s", w) X("t", w) X("u", w) X("v", w) X("w", w) X("x", w) X("y", w) X("z", w)     \
    X("{", w) X("|", w) X("}", w) X("~", w)
// clang-format on

#define JSON_UNEXPECTED_ENTRY(c, where) "Unexpected character '" c "' " where ".",
#define JSON_UNEXPECTED_TABLE(name, where)                                                         \
    static const char *const name[] = {"Unexpected control character " where ".",                  \
                                       "Unexpected non-ASCII character " where ".",                \
                                       JSON_PRINTABLE(JSON_UNEXPECTED_ENTRY, where)}

JSON_UNEXPECTED_TABLE(unexpected_in_value, "where a value was expected");
JSON_UNEXPECTED_TABLE(unexpected_in_key, "where a string key was expected");
JSON_UNEXPECTED_TABLE(unexpected_in_colon, "where ':' was expected");
JSON_UNEXPECTED_TABLE(unexpected_in_array, "where ',' or ']' was expected");
JSON_UNEXPECTED_TABLE(unexpected_in_object, "where ',' or '}' was expected");
JSON_UNEXPECTED_TABLE(unexpected_after_end, "after the JSON value");
_Static_assert(sizeof unexpected_in_value / sizeof *unexpected_in_value == 2 + ('~' - '!' + 1),
               "one message per printable character");

#define JSON_STRINGIFY_(x) #x
#define JSON_STRINGIFY(x) JSON_STRINGIFY_(x)

static const char MSG_END[] = "Unexpected end of input.";
static const char MSG_EMPTY[] = "Empty input: expected a JSON value.";
static const char MSG_TRAILING_COMMA_ARRAY[] = "Trailing comma before ']'.";
static const char MSG_TRAILING_COMMA_OBJECT[] = "Trailing comma before '}'.";
static const char MSG_TOO_DEEP[] =
    "Nesting is too deep (the limit is " JSON_STRINGIFY(JSON_MAX_DEPTH) " levels).";
static const char MSG_LEADING_ZERO[] = "Leading zeros are not allowed in numbers.";
static const char MSG_MINUS_DIGIT[] = "Expected a digit after '-'.";
static const char MSG_FRACTION_DIGIT[] = "Expected a digit after the decimal point.";
static const char MSG_EXPONENT_DIGIT[] = "Expected a digit in the exponent.";
static const char MSG_LITERAL[] = "Invalid literal: expected true, false or null.";
static const char MSG_CONTROL_IN_STRING[] = "Unescaped control character in a string.";
static const char MSG_BAD_UTF8[] = "Invalid UTF-8 in a string.";
static const char MSG_BAD_ESCAPE[] = "Invalid escape sequence in a string.";
static const char MSG_BAD_HEX[] = "Invalid \\u escape: expected four hex digits.";
static const char MSG_SURROGATE[] =
    "Invalid \\u escape: a UTF-16 surrogate must be a high surrogate followed by a low one.";
static const char MSG_OUT_OF_MEMORY[] = "Out of memory.";

static size_t message_index(unsigned char c) {
    if (c <= 0x20 || c == 0x7F) return 0;
    if (c >= 0x80) return 1;
    return 2 + (size_t)(c - 0x21);
}

/* ---- UTF-8 ------------------------------------------------------------------------------------
 */

/* Checks the sequence starting at p (avail >= 1 bytes) per Unicode Table 3-7. Returns its length,
 * or 0 with *bad = the offset of the first byte that cannot begin or continue it (avail when the
 * input ends inside the sequence). */
static size_t utf8_sequence(const unsigned char *p, size_t avail, size_t *bad) {
    unsigned char lead = p[0];
    if (lead < 0x80) return 1;
    size_t need;
    unsigned char low = 0x80, high = 0xBF; /* range of the second byte */
    if (lead < 0xC2) {
        *bad = 0; /* continuation byte, or C0/C1 (always overlong) */
        return 0;
    } else if (lead < 0xE0) {
        need = 1;
    } else if (lead < 0xF0) {
        need = 2;
        if (lead == 0xE0) low = 0xA0;  /* overlong below U+0800 */
        if (lead == 0xED) high = 0x9F; /* UTF-16 surrogates */
    } else if (lead < 0xF5) {
        need = 3;
        if (lead == 0xF0) low = 0x90;  /* overlong below U+10000 */
        if (lead == 0xF4) high = 0x8F; /* above U+10FFFF */
    } else {
        *bad = 0;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k == avail) {
            *bad = avail;
            return 0;
        }
        unsigned char c = p[k];
        if (c < low || c > high) {
            *bad = k;
            return 0;
        }
        low = 0x80;
        high = 0xBF;
    }
    return need + 1;
}

#define ALL_HIGH_BITS UINT64_C(0x8080808080808080)
#define ALL_ONES_BYTES UINT64_C(0x0101010101010101)

bool utf8_validate(const char *data, size_t length, size_t *error_position) {
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    while (i < length) {
        /* ASCII fast path: eight bytes at a time while none has its high bit set. */
        while (length - i >= 8) {
            uint64_t word;
            memcpy(&word, p + i, 8);
            if (word & ALL_HIGH_BITS) break;
            i += 8;
        }
        while (i < length && p[i] < 0x80)
            i++;
        if (i == length) break;
        size_t bad;
        size_t n = utf8_sequence(p + i, length - i, &bad);
        if (n == 0) {
            if (error_position) *error_position = i + bad;
            return false;
        }
        i += n;
    }
    return true;
}

/* ---- Scanner ----------------------------------------------------------------------------------
 */

typedef enum scan_state {
    EXPECT_TOP_VALUE,     /* start of input */
    EXPECT_FIRST_ELEMENT, /* after '[': a value or ']' */
    EXPECT_NEXT_ELEMENT,  /* after ',' in an array */
    EXPECT_MEMBER_VALUE,  /* after ':' */
    EXPECT_FIRST_KEY,     /* after '{': a string or '}' */
    EXPECT_NEXT_KEY,      /* after ',' in an object */
    EXPECT_COLON,         /* after a key */
    EXPECT_COMMA_OR_CLOSE,
    EXPECT_END, /* after the top-level value: only whitespace */
} scan_state;

typedef struct scanner {
    const unsigned char *p;
    size_t length;
    size_t i;
    text *out;        /* minify target, or NULL */
    size_t run_start; /* start of the bytes not yet copied to out */
    json_error *error;
    size_t depth;
    unsigned char stack[JSON_MAX_DEPTH]; /* '{' or '[' per open container */
} scanner;

static bool fail(scanner *s, size_t position, const char *message) {
    if (s->error) {
        s->error->position = position;
        s->error->message = message;
    }
    return false;
}

static bool fail_unexpected(scanner *s, const char *const *table) {
    return fail(s, s->i, table[message_index(s->p[s->i])]);
}

static bool is_whitespace(unsigned char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static void skip_whitespace(scanner *s) {
    size_t start = s->i;
    while (s->i < s->length && is_whitespace(s->p[s->i]))
        s->i++;
    if (s->out && s->i != start) {
        text_append(s->out, s->p + s->run_start, start - s->run_start);
        s->run_start = s->i;
    }
}

/* Reads the four hex digits of a \u escape starting at `at`. A high surrogate (D800-DBFF) is only
 * allowed when want_low is false and a low one (DC00-DFFF) only when it is true; whether a code
 * unit is a surrogate is known from its first two digits, which is where such faults are reported.
 */
static bool scan_hex4(scanner *s, size_t at, bool want_low, unsigned *unit) {
    unsigned value = 0;
    for (size_t k = 0; k < 4; k++) {
        size_t position = at + k;
        if (position == s->length) return fail(s, position, MSG_END);
        int digit = hex_digit_value(s->p[position]);
        if (digit < 0) return fail(s, position, MSG_BAD_HEX);
        if (want_low && k == 0 && digit != 0xD) return fail(s, position, MSG_SURROGATE);
        if (k == 1 && value == 0xD && (want_low ? digit < 0xC : digit >= 0xC))
            return fail(s, position, MSG_SURROGATE);
        value = value << 4 | (unsigned)digit;
    }
    *unit = value;
    return true;
}

/* s->i is at the backslash. */
static bool scan_escape(scanner *s) {
    size_t i = s->i;
    if (i + 1 == s->length) return fail(s, i + 1, MSG_END);
    switch (s->p[i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        s->i = i + 2;
        return true;
    case 'u':
        break;
    default:
        return fail(s, i + 1, MSG_BAD_ESCAPE);
    }
    unsigned unit;
    if (!scan_hex4(s, i + 2, false, &unit)) return false;
    i += 6;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        if (i == s->length) return fail(s, i, MSG_END);
        if (s->p[i] != '\\') return fail(s, i, MSG_SURROGATE);
        if (i + 1 == s->length) return fail(s, i + 1, MSG_END);
        if (s->p[i + 1] != 'u') return fail(s, i + 1, MSG_SURROGATE);
        if (!scan_hex4(s, i + 2, true, &unit)) return false;
        i += 6;
    }
    s->i = i;
    return true;
}

/* True when any of the eight bytes is a control character, '"', '\\' or non-ASCII: the bytes a
 * string scan must stop at. Exact as a whole-word test (individual byte flags may be off). */
static bool word_needs_attention(uint64_t word) {
    uint64_t quote = word ^ (ALL_ONES_BYTES * '"');
    uint64_t backslash = word ^ (ALL_ONES_BYTES * '\\');
    uint64_t control = (word - ALL_ONES_BYTES * 0x20) & ~word;
    uint64_t has_quote = (quote - ALL_ONES_BYTES) & ~quote;
    uint64_t has_backslash = (backslash - ALL_ONES_BYTES) & ~backslash;
    return ((word | control | has_quote | has_backslash) & ALL_HIGH_BITS) != 0;
}

/* s->i is at the opening quote. */
static bool scan_string(scanner *s) {
    const unsigned char *p = s->p;
    size_t i = s->i + 1;
    for (;;) {
        while (s->length - i >= 8) {
            uint64_t word;
            memcpy(&word, p + i, 8);
            if (word_needs_attention(word)) break;
            i += 8;
        }
        if (i == s->length) return fail(s, i, MSG_END);
        unsigned char c = p[i];
        if (c == '"') {
            s->i = i + 1;
            return true;
        } else if (c == '\\') {
            s->i = i;
            if (!scan_escape(s)) return false;
            i = s->i;
        } else if (c < 0x20) {
            return fail(s, i, MSG_CONTROL_IN_STRING);
        } else if (c >= 0x80) {
            size_t bad;
            size_t n = utf8_sequence(p + i, s->length - i, &bad);
            if (n == 0) return fail(s, i + bad, i + bad == s->length ? MSG_END : MSG_BAD_UTF8);
            i += n;
        } else {
            i++;
        }
    }
}

/* s->i is at '-' or a digit. Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static bool scan_number(scanner *s) {
    const unsigned char *p = s->p;
    size_t n = s->length, i = s->i;
    if (p[i] == '-') i++;
    if (i == n) return fail(s, i, MSG_END);
    if (p[i] == '0') {
        i++;
        if (i < n && is_digit(p[i])) return fail(s, i, MSG_LEADING_ZERO);
    } else if (is_digit(p[i])) {
        while (i < n && is_digit(p[i]))
            i++;
    } else {
        return fail(s, i, MSG_MINUS_DIGIT);
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i == n) return fail(s, i, MSG_END);
        if (!is_digit(p[i])) return fail(s, i, MSG_FRACTION_DIGIT);
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        if (i == n) return fail(s, i, MSG_END);
        if (!is_digit(p[i])) return fail(s, i, MSG_EXPONENT_DIGIT);
        while (i < n && is_digit(p[i]))
            i++;
    }
    s->i = i;
    return true;
}

static bool scan_literal(scanner *s, const char *word) {
    size_t i = s->i;
    for (size_t k = 0; word[k]; k++, i++) {
        if (i == s->length) return fail(s, i, MSG_END);
        if (s->p[i] != (unsigned char)word[k]) return fail(s, i, MSG_LITERAL);
    }
    s->i = i;
    return true;
}

static scan_state after_value(const scanner *s) {
    return s->depth == 0 ? EXPECT_END : EXPECT_COMMA_OR_CLOSE;
}

/* Starts the value at s->i (not whitespace, not end of input). */
static bool scan_value(scanner *s, scan_state *state) {
    unsigned char c = s->p[s->i];
    switch (c) {
    case '{':
    case '[':
        if (s->depth == JSON_MAX_DEPTH) return fail(s, s->i, MSG_TOO_DEEP);
        s->stack[s->depth++] = c;
        s->i++;
        *state = c == '{' ? EXPECT_FIRST_KEY : EXPECT_FIRST_ELEMENT;
        return true;
    case '"':
        if (!scan_string(s)) return false;
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (!scan_number(s)) return false;
        break;
    case 't':
        if (!scan_literal(s, "true")) return false;
        break;
    case 'f':
        if (!scan_literal(s, "false")) return false;
        break;
    case 'n':
        if (!scan_literal(s, "null")) return false;
        break;
    default:
        return fail_unexpected(s, unexpected_in_value);
    }
    *state = after_value(s);
    return true;
}

static bool close_container(scanner *s, scan_state *state) {
    s->depth--;
    s->i++;
    *state = after_value(s);
    return true;
}

static bool scan_step(scanner *s, scan_state *state) {
    unsigned char c = s->p[s->i];
    switch (*state) {
    case EXPECT_TOP_VALUE:
    case EXPECT_MEMBER_VALUE:
        return scan_value(s, state);
    case EXPECT_FIRST_ELEMENT:
        if (c == ']') return close_container(s, state);
        return scan_value(s, state);
    case EXPECT_NEXT_ELEMENT:
        if (c == ']') return fail(s, s->i, MSG_TRAILING_COMMA_ARRAY);
        return scan_value(s, state);
    case EXPECT_FIRST_KEY:
    case EXPECT_NEXT_KEY:
        if (c == '}') {
            if (*state == EXPECT_NEXT_KEY) return fail(s, s->i, MSG_TRAILING_COMMA_OBJECT);
            return close_container(s, state);
        }
        if (c != '"') return fail_unexpected(s, unexpected_in_key);
        if (!scan_string(s)) return false;
        *state = EXPECT_COLON;
        return true;
    case EXPECT_COLON:
        if (c != ':') return fail_unexpected(s, unexpected_in_colon);
        s->i++;
        *state = EXPECT_MEMBER_VALUE;
        return true;
    case EXPECT_COMMA_OR_CLOSE: {
        bool in_object = s->stack[s->depth - 1] == '{';
        if (c == ',') {
            s->i++;
            *state = in_object ? EXPECT_NEXT_KEY : EXPECT_NEXT_ELEMENT;
            return true;
        }
        if (c == (in_object ? '}' : ']')) return close_container(s, state);
        return fail_unexpected(s, in_object ? unexpected_in_object : unexpected_in_array);
    }
    case EXPECT_END:
        return fail_unexpected(s, unexpected_after_end);
    }
    return false;
}

static bool scan(scanner *s) {
    scan_state state = EXPECT_TOP_VALUE;
    for (;;) {
        skip_whitespace(s);
        if (s->i == s->length) {
            if (state == EXPECT_END) return true;
            return fail(s, s->i, state == EXPECT_TOP_VALUE ? MSG_EMPTY : MSG_END);
        }
        if (!scan_step(s, &state)) return false;
    }
}

static void scanner_init(scanner *s, const char *data, size_t length, text *out,
                         json_error *error) {
    s->p = (const unsigned char *)(data ? data : "");
    s->length = data ? length : 0;
    s->i = 0;
    s->out = out;
    s->run_start = 0;
    s->error = error;
    s->depth = 0;
}

bool json_validate(const char *data, size_t length, json_error *error) {
    scanner s;
    scanner_init(&s, data, length, NULL, error);
    return scan(&s);
}

/* On failure out may hold part of the value: callers must discard it. Allocation failure in out
 * also returns false (message "Out of memory.", position 0; text_failed(out) tells it apart). */
bool json_minify(const char *data, size_t length, text *out, json_error *error) {
    scanner s;
    scanner_init(&s, data, length, out, error);
    if (!scan(&s)) return false;
    text_append(out, s.p + s.run_start, s.i - s.run_start);
    if (text_failed(out)) return fail(&s, 0, MSG_OUT_OF_MEMORY);
    return true;
}

/* ---- Walking validated values ------------------------------------------------------------------
 * These trust that the span was validated but stay within its bounds whatever it holds. */

static size_t raw_skip_whitespace(const char *p, size_t n, size_t i) {
    while (i < n && is_whitespace((unsigned char)p[i]))
        i++;
    return i;
}

/* i is at the opening quote; returns the offset after the closing one (or n). */
static size_t raw_skip_string(const char *p, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (p[i] == '\\') {
            if (++i == n) break;
        } else if (p[i] == '"') {
            return i + 1;
        }
    }
    return n;
}

static bool raw_is_delimiter(char c) {
    return c == ',' || c == ':' || c == ']' || c == '}' || is_whitespace((unsigned char)c);
}

/* i < n; returns the offset after the value starting at i (i itself when there is none). */
static size_t raw_skip_value(const char *p, size_t n, size_t i) {
    if (p[i] == '"') return raw_skip_string(p, n, i);
    if (p[i] != '{' && p[i] != '[') {
        while (i < n && !raw_is_delimiter(p[i]))
            i++;
        return i;
    }
    size_t depth = 0;
    while (i < n) {
        char c = p[i];
        if (c == '"') {
            i = raw_skip_string(p, n, i);
            continue;
        }
        i++;
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) return i;
        }
    }
    return n;
}

json_kind json_kind_of(json_span value) {
    if (!value.data) return JSON_KIND_INVALID;
    size_t i = raw_skip_whitespace(value.data, value.length, 0);
    if (i == value.length) return JSON_KIND_INVALID;
    const char *p = value.data + i;
    size_t rest = value.length - i;
    switch (p[0]) {
    case '{':
        return JSON_KIND_OBJECT;
    case '[':
        return JSON_KIND_ARRAY;
    case '"':
        return JSON_KIND_STRING;
    case 't':
        return rest >= 4 && memcmp(p, "true", 4) == 0 ? JSON_KIND_TRUE : JSON_KIND_INVALID;
    case 'f':
        return rest >= 5 && memcmp(p, "false", 5) == 0 ? JSON_KIND_FALSE : JSON_KIND_INVALID;
    case 'n':
        return rest >= 4 && memcmp(p, "null", 4) == 0 ? JSON_KIND_NULL : JSON_KIND_INVALID;
    default:
        return p[0] == '-' || is_digit((unsigned char)p[0]) ? JSON_KIND_NUMBER : JSON_KIND_INVALID;
    }
}

/* Moves *cursor to the next item of the container span opened by `open` and closed by `close`:
 * returns the offset of the item's first byte, or 0 at the end (an item never starts at 0). */
static size_t container_next(json_span span, size_t *cursor, char open, char close) {
    const char *p = span.data;
    size_t n = span.length, i = *cursor;
    if (!p || i >= n) goto end;
    if (i == 0) {
        i = raw_skip_whitespace(p, n, 0);
        if (i == n || p[i] != open) goto end;
        i = raw_skip_whitespace(p, n, i + 1);
        if (i == n || p[i] == close) goto end;
        return i;
    }
    i = raw_skip_whitespace(p, n, i);
    if (i == n || p[i] != ',') goto end;
    i = raw_skip_whitespace(p, n, i + 1);
    if (i == n) goto end;
    return i;
end:
    *cursor = n;
    return 0;
}

bool json_object_next(json_span object, size_t *cursor, json_span *key, json_span *value) {
    size_t i = container_next(object, cursor, '{', '}');
    if (i == 0) return false;
    const char *p = object.data;
    size_t n = object.length;
    if (p[i] != '"') goto end;
    size_t key_start = i;
    i = raw_skip_string(p, n, i);
    size_t key_end = i;
    i = raw_skip_whitespace(p, n, i);
    if (i == n || p[i] != ':') goto end;
    i = raw_skip_whitespace(p, n, i + 1);
    if (i == n) goto end;
    size_t value_start = i;
    i = raw_skip_value(p, n, i);
    if (i == value_start) goto end;
    key->data = p + key_start;
    key->length = key_end - key_start;
    value->data = p + value_start;
    value->length = i - value_start;
    *cursor = i;
    return true;
end:
    *cursor = n;
    return false;
}

bool json_array_next(json_span array, size_t *cursor, json_span *element) {
    size_t i = container_next(array, cursor, '[', ']');
    if (i == 0) return false;
    size_t end = raw_skip_value(array.data, array.length, i);
    if (end == i) {
        *cursor = array.length;
        return false;
    }
    element->data = array.data + i;
    element->length = end - i;
    *cursor = end;
    return true;
}

/* ---- Strings ----------------------------------------------------------------------------------
 */

static size_t utf8_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool read_hex4(const char *p, size_t end, size_t at, uint32_t *unit) {
    if (end - at < 4) return false; /* at <= end always holds here */
    uint32_t value = 0;
    for (size_t k = 0; k < 4; k++) {
        int digit = hex_digit_value((unsigned char)p[at + k]);
        if (digit < 0) return false;
        value = value << 4 | (uint32_t)digit;
    }
    *unit = value;
    return true;
}

/* Decodes the escape at p[*i] (a backslash, *i < end) into out; advances *i. 0 when malformed. */
static size_t decode_escape(const char *p, size_t end, size_t *i, unsigned char out[4]) {
    size_t at = *i;
    if (end - at < 2) return 0;
    char simple;
    switch (p[at + 1]) {
    case '"':
        simple = '"';
        break;
    case '\\':
        simple = '\\';
        break;
    case '/':
        simple = '/';
        break;
    case 'b':
        simple = '\b';
        break;
    case 'f':
        simple = '\f';
        break;
    case 'n':
        simple = '\n';
        break;
    case 'r':
        simple = '\r';
        break;
    case 't':
        simple = '\t';
        break;
    case 'u': {
        uint32_t cp;
        if (!read_hex4(p, end, at + 2, &cp)) return 0;
        at += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low;
            if (end - at < 6 || p[at] != '\\' || p[at + 1] != 'u') return 0;
            if (!read_hex4(p, end, at + 2, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
            at += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        *i = at;
        return utf8_encode(cp, out);
    }
    default:
        return 0;
    }
    out[0] = (unsigned char)simple;
    *i = at + 2;
    return 1;
}

static bool string_body(json_span string, size_t *end) {
    if (!string.data || string.length < 2 || string.data[0] != '"' ||
        string.data[string.length - 1] != '"')
        return false;
    *end = string.length - 1;
    return true;
}

/* Returns false for a malformed span and when out's allocation has failed. */
bool json_string_decode(json_span string, text *out) {
    size_t end;
    if (!string_body(string, &end)) return false;
    const char *p = string.data;
    size_t i = 1;
    while (i < end) {
        const char *backslash = memchr(p + i, '\\', end - i);
        size_t run_end = backslash ? (size_t)(backslash - p) : end;
        text_append(out, p + i, run_end - i);
        i = run_end;
        if (i == end) break;
        unsigned char bytes[4];
        size_t n = decode_escape(p, end, &i, bytes);
        if (n == 0) return false;
        text_append(out, bytes, n);
    }
    return !text_failed(out);
}

bool json_string_equals(json_span string, const char *expected) {
    size_t end;
    if (!string_body(string, &end) || !expected) return false;
    const char *p = string.data;
    size_t want = strlen(expected), matched = 0, i = 1;
    while (i < end) {
        const char *backslash = memchr(p + i, '\\', end - i);
        size_t run_end = backslash ? (size_t)(backslash - p) : end;
        size_t run = run_end - i;
        if (run > want - matched || memcmp(p + i, expected + matched, run) != 0) return false;
        matched += run;
        i = run_end;
        if (i == end) break;
        unsigned char bytes[4];
        size_t n = decode_escape(p, end, &i, bytes);
        if (n == 0 || n > want - matched || memcmp(bytes, expected + matched, n) != 0) return false;
        matched += n;
    }
    return matched == want;
}

/* Escapes '"', '\\', control characters and U+2028/U+2029 (line terminators in JavaScript source
 * before ES2019, so the output is safe to embed in a script); other bytes are copied as is. */
void json_append_string(text *out, const char *s, size_t length) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    text_append_char(out, '"');
    size_t run_start = 0, i = 0;
    while (i < length) {
        unsigned char c = p[i];
        char escape[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t escape_length = 2, consumed = 1;
        if (c == '"' || c == '\\') {
            escape[1] = (char)c;
        } else if (c == '\n') {
            escape[1] = 'n';
        } else if (c == '\r') {
            escape[1] = 'r';
        } else if (c == '\t') {
            escape[1] = 't';
        } else if (c == '\b') {
            escape[1] = 'b';
        } else if (c == '\f') {
            escape[1] = 'f';
        } else if (c < 0x20) {
            memcpy(escape + 1, "u00", 3);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 0xF];
            escape_length = 6;
        } else if (c == 0xE2 && length - i >= 3 && p[i + 1] == 0x80 &&
                   (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
            memcpy(escape + 1, p[i + 2] == 0xA8 ? "u2028" : "u2029", 5);
            escape_length = 6;
            consumed = 3;
        } else {
            i++;
            continue;
        }
        text_append(out, p + run_start, i - run_start);
        text_append(out, escape, escape_length);
        i += consumed;
        run_start = i;
    }
    if (length > run_start) text_append(out, p + run_start, length - run_start);
    text_append_char(out, '"');
}

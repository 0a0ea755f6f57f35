/* Where a client's token comes from: Authorization, ?token=, or the herald_token cookie. */
#include <string.h>
#include <strings.h>

#include "auth/auth.h"

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Narrows [*start, *end) past SP/HTAB on both sides. */
static void trim(const char *s, size_t *start, size_t *end) {
    while (*start < *end && is_blank(s[*start]))
        (*start)++;
    while (*end > *start && is_blank(s[*end - 1]))
        (*end)--;
}

bool auth_token_well_formed(const char *token, size_t length) {
    if (!token || length == 0) return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c < 0x21 || c > 0x7E) return false;
    }
    return true;
}

bool auth_token_from_authorization(const char *value, size_t length, const char **token,
                                   size_t *token_length) {
    if (!value) return false;
    size_t start = 0, end = length;
    trim(value, &start, &end);
    static const char scheme[] = "Bearer";
    size_t scheme_length = sizeof scheme - 1;
    if (end - start < scheme_length + 2 || strncasecmp(value + start, scheme, scheme_length) != 0)
        return false;
    size_t i = start + scheme_length;
    if (value[i] != ' ') return false; /* "Bearerx", "Bearer\tx" */
    while (i < end && value[i] == ' ')
        i++;
    if (!auth_token_well_formed(value + i, end - i)) return false;
    *token = value + i;
    *token_length = end - i;
    return true;
}

bool auth_token_from_query(const char *value, size_t length, const char **token,
                           size_t *token_length) {
    if (!auth_token_well_formed(value, length)) return false;
    *token = value;
    *token_length = length;
    return true;
}

/* RFC 6265 §4.1.1 cookie-octet. */
static bool cookie_octet(unsigned char c) {
    return c >= 0x21 && c <= 0x7E && c != '"' && c != ',' && c != ';' && c != '\\';
}

bool auth_token_from_cookie(const char *value, size_t length, const char **token,
                            size_t *token_length) {
    if (!value) return false;
    static const char name[] = AUTH_COOKIE_NAME;
    size_t name_length = sizeof name - 1;
    size_t i = 0;
    while (i < length) {
        const char *semicolon = memchr(value + i, ';', length - i);
        size_t pair_end = semicolon ? (size_t)(semicolon - value) : length;
        const char *equals = memchr(value + i, '=', pair_end - i);
        if (equals) {
            size_t name_start = i, name_end = (size_t)(equals - value);
            trim(value, &name_start, &name_end);
            if (name_end - name_start == name_length &&
                memcmp(value + name_start, name, name_length) == 0) {
                size_t start = (size_t)(equals - value) + 1, end = pair_end;
                trim(value, &start, &end);
                if (end - start >= 2 && value[start] == '"' && value[end - 1] == '"') {
                    start++;
                    end--;
                }
                if (start == end) return false;
                for (size_t k = start; k < end; k++)
                    if (!cookie_octet((unsigned char)value[k])) return false;
                *token = value + start;
                *token_length = end - start;
                return true;
            }
        }
        if (!semicolon) break;
        i = pair_end + 1;
    }
    return false;
}

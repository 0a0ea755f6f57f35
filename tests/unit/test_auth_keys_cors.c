/* Unit tests for src/auth: API key sets, token extraction, CORS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

/* ---- API keys ------------------------------------------------------------------------------ */

static bool matches(const auth_key_set *set, const char *candidate) {
    return auth_api_key_matches(set, candidate, strlen(candidate));
}

static auth_status add(auth_key_set *set, const char *key) {
    return auth_key_set_add(set, key, strlen(key));
}

static auth_status add_list(auth_key_set *set, const char *list, size_t *item) {
    return auth_key_set_add_list(set, list, strlen(list), item);
}

static void test_key_add(void **state) {
    auth_key_set set;
    auth_key_set_init(&set);
    assert_int_equal(add(&set, "k1"), AUTH_OK);
    assert_int_equal(add(&set, "sk_live_4f9a~!#$%&'()*+-./:;<=>?@[\\]^_`{|}"), AUTH_OK);
    assert_int_equal(add(&set, ""), AUTH_KEY_EMPTY);
    assert_int_equal(auth_key_set_add(&set, NULL, 0), AUTH_KEY_EMPTY);
    assert_int_equal(add(&set, "a b"), AUTH_KEY_BAD_CHARACTER);
    assert_int_equal(add(&set, " ab"), AUTH_KEY_BAD_CHARACTER); /* nothing is trimmed here */
    assert_int_equal(add(&set, "a,b"), AUTH_KEY_BAD_CHARACTER);
    assert_int_equal(add(&set, "a\tb"), AUTH_KEY_BAD_CHARACTER);
    assert_int_equal(add(&set, "a\x7f"), AUTH_KEY_BAD_CHARACTER);
    assert_int_equal(add(&set, "cl\xc3\xa9"), AUTH_KEY_BAD_CHARACTER);
    assert_int_equal(auth_key_set_add(&set, "a\0b", 3), AUTH_KEY_BAD_CHARACTER);
    char long_key[AUTH_KEY_MAX_LENGTH + 2];
    memset(long_key, 'x', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(add(&set, long_key), AUTH_KEY_TOO_LONG);
    long_key[AUTH_KEY_MAX_LENGTH] = '\0';
    assert_int_equal(add(&set, long_key), AUTH_OK);
    assert_int_equal(set.count, 3);
    assert_true(matches(&set, long_key));
    assert_true(matches(&set, "sk_live_4f9a~!#$%&'()*+-./:;<=>?@[\\]^_`{|}"));
    auth_key_set_free(&set);
    assert_int_equal(set.count, 0);
    auth_key_set_free(&set);

    for (auth_status s = AUTH_OK; s <= AUTH_NO_MEMORY; s++) {
        const char *message = auth_status_message(s);
        assert_true(strlen(message) > 2);
        assert_int_equal(message[strlen(message) - 1], '.');
    }
}

static void test_key_list(void **state) {
    auth_key_set set;
    auth_key_set_init(&set);
    size_t item = 99;
    assert_int_equal(add_list(&set, "alpha, beta ,gamma", &item), AUTH_OK);
    assert_int_equal(item, 0);
    assert_int_equal(set.count, 3);
    assert_true(matches(&set, "alpha"));
    assert_true(matches(&set, "beta"));
    assert_true(matches(&set, "gamma"));
    assert_false(matches(&set, " beta"));
    assert_false(matches(&set, "beta "));
    assert_false(matches(&set, "alpha, beta ,gamma"));

    assert_int_equal(add_list(&set, "\t one\t,  two  ", &item), AUTH_OK);
    assert_int_equal(set.count, 5);
    assert_true(matches(&set, "one"));
    assert_true(matches(&set, "two"));
    assert_int_equal(add_list(&set, "solo", NULL), AUTH_OK);
    assert_int_equal(set.count, 6);

    /* all-or-nothing, with the 1-based item at fault */
    static const struct {
        const char *list;
        auth_status status;
        size_t item;
    } bad[] = {
        {"", AUTH_KEY_EMPTY, 1},
        {"   ", AUTH_KEY_EMPTY, 1},
        {",", AUTH_KEY_EMPTY, 1},
        {",a", AUTH_KEY_EMPTY, 1},
        {"a,", AUTH_KEY_EMPTY, 2},
        {"a,,b", AUTH_KEY_EMPTY, 2},
        {"a, ,b", AUTH_KEY_EMPTY, 2},
        {"x1,x2,x3,", AUTH_KEY_EMPTY, 4},
        {"a b,c", AUTH_KEY_BAD_CHARACTER, 1},
        {"x1,x2\x01", AUTH_KEY_BAD_CHARACTER, 2},
        {"x1,x2\n", AUTH_KEY_BAD_CHARACTER, 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        item = 0;
        assert_int_equal(add_list(&set, bad[i].list, &item), bad[i].status);
        assert_int_equal(item, bad[i].item);
        assert_int_equal(set.count, 6);
        assert_false(matches(&set, "x1"));
    }
    assert_int_equal(auth_key_set_add_list(&set, NULL, 0, &item), AUTH_KEY_EMPTY);
    /* length governs: "p,q" of "p,q,r" */
    assert_int_equal(auth_key_set_add_list(&set, "p,q,r", 3, &item), AUTH_OK);
    assert_true(matches(&set, "q"));
    assert_false(matches(&set, "r"));
    auth_key_set_free(&set);
}

static void test_key_matches(void **state) {
    auth_key_set set;
    auth_key_set_init(&set);
    assert_false(matches(&set, "anything")); /* no keys: nothing matches */
    assert_false(matches(&set, ""));
    assert_false(auth_api_key_matches(NULL, "a", 1));
    assert_int_equal(add(&set, "secret-key-1"), AUTH_OK);
    assert_true(matches(&set, "secret-key-1"));
    assert_false(matches(&set, "secret-key-"));
    assert_false(matches(&set, "secret-key-12"));
    assert_false(matches(&set, "Secret-key-1"));
    assert_false(matches(&set, "secret-key-2"));
    assert_false(matches(&set, ""));
    assert_false(auth_api_key_matches(&set, NULL, 0));
    assert_false(auth_api_key_matches(&set, "secret-key-1\0", 13));
    assert_true(auth_api_key_matches(&set, "secret-key-1 and more", 12));

    /* many keys: each matches itself, a key differing in one byte matches none */
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%03d", i);
        assert_int_equal(add(&set, key), AUTH_OK);
    }
    assert_int_equal(add(&set, "key-007"), AUTH_OK); /* duplicate: accepted */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%03d", i);
        assert_true(matches(&set, key));
        key[0] = 'K';
        assert_false(matches(&set, key));
    }
    assert_true(matches(&set, "secret-key-1"));
    assert_false(matches(&set, "key-200"));
    auth_key_set_free(&set);
}

/* ---- token extraction ---------------------------------------------------------------------- */

/* The extracted token as a string, or NULL. */
static char extracted[256];

static const char *from_authorization(const char *value) {
    const char *token = NULL;
    size_t length = 0;
    if (!auth_token_from_authorization(value, strlen(value), &token, &length)) return NULL;
    assert_true(token >= value && token + length <= value + strlen(value));
    snprintf(extracted, sizeof extracted, "%.*s", (int)length, token);
    return extracted;
}

static const char *from_cookie(const char *value) {
    const char *token = NULL;
    size_t length = 0;
    if (!auth_token_from_cookie(value, strlen(value), &token, &length)) return NULL;
    assert_true(token >= value && token + length <= value + strlen(value));
    snprintf(extracted, sizeof extracted, "%.*s", (int)length, token);
    return extracted;
}

static void test_authorization(void **state) {
    assert_string_equal(from_authorization("Bearer abc"), "abc");
    assert_string_equal(from_authorization("bearer abc"), "abc");
    assert_string_equal(from_authorization("BEARER abc"), "abc");
    assert_string_equal(from_authorization("bEaReR abc"), "abc");
    assert_string_equal(from_authorization("Bearer    abc"), "abc");
    assert_string_equal(from_authorization(" \tBearer abc \t "), "abc");
    assert_string_equal(from_authorization("Bearer a.b-c_d~e+f/g=="), "a.b-c_d~e+f/g==");
    assert_string_equal(from_authorization("Bearer sk_!#$%&'()*,;<>?@[]^`{|}\"\\"),
                        "sk_!#$%&'()*,;<>?@[]^`{|}\"\\");
    assert_string_equal(from_authorization("Bearer x"), "x");

    assert_null(from_authorization(""));
    assert_null(from_authorization("Bearer"));
    assert_null(from_authorization("Bearer "));
    assert_null(from_authorization("Bearer    "));
    assert_null(from_authorization("Bearerabc"));
    assert_null(from_authorization("Bearer\tabc"));
    assert_null(from_authorization("Bearer: abc"));
    assert_null(from_authorization("Basic YWxhZGRpbjpvcGVuc2VzYW1l"));
    assert_null(from_authorization("Token abc"));
    assert_null(from_authorization("Bear abc"));
    assert_null(from_authorization("Bearer a b"));
    assert_null(from_authorization("Bearer a\tb"));
    assert_null(from_authorization("Bearer abc\x01"));
    assert_null(from_authorization("Bearer \r\nabc"));
    assert_null(from_authorization("Bearer cl\xc3\xa9"));
    assert_null(from_authorization("Bearer abc, Bearer def"));
    assert_null(from_authorization("xBearer abc"));

    const char *token = NULL;
    size_t length = 0;
    assert_false(auth_token_from_authorization(NULL, 0, &token, &length));
    /* length governs, NUL is a control byte */
    assert_true(auth_token_from_authorization("Bearer abcdef", 10, &token, &length));
    assert_int_equal(length, 3);
    assert_memory_equal(token, "abc", 3);
    assert_false(auth_token_from_authorization("Bearer ab\0c", 11, &token, &length));
}

static void test_query_token(void **state) {
    const char *token = NULL;
    size_t length = 0;
    assert_true(auth_token_from_query("eyJ.x.y", 7, &token, &length));
    assert_int_equal(length, 7);
    assert_false(auth_token_from_query("", 0, &token, &length));
    assert_false(auth_token_from_query(NULL, 0, &token, &length));
    assert_false(auth_token_from_query("a b", 3, &token, &length)); /* '+' decoded to space */
    assert_false(auth_token_from_query("a\nb", 3, &token, &length));
    assert_true(auth_token_well_formed("~", 1));
    assert_false(auth_token_well_formed("\x7f", 1));
}

static void test_cookie(void **state) {
    assert_string_equal(from_cookie("herald_token=abc"), "abc");
    assert_string_equal(from_cookie("a=1; herald_token=abc; b=2"), "abc");
    assert_string_equal(from_cookie("a=1;herald_token=abc;b=2"), "abc");
    assert_string_equal(from_cookie("a=1;  herald_token = abc  ;b=2"), "abc");
    assert_string_equal(from_cookie("herald_token=\"abc\""), "abc");
    assert_string_equal(from_cookie("x=\"q;r\"; herald_token=abc"), "abc"); /* not a grammar */
    assert_string_equal(from_cookie("flag; herald_token=abc"), "abc");
    assert_string_equal(from_cookie("herald_token=a=b"), "a=b");
    assert_string_equal(from_cookie("herald_token=eyJhbGciOiJIUzI1NiJ9.e30.sig-_"),
                        "eyJhbGciOiJIUzI1NiJ9.e30.sig-_");
    assert_string_equal(from_cookie("herald_token=first; herald_token=second"), "first");
    assert_string_equal(from_cookie("session=herald_token; herald_token=t"), "t");
    assert_string_equal(from_cookie("herald_token=abc;"), "abc");

    assert_null(from_cookie(""));
    assert_null(from_cookie("herald_token"));
    assert_null(from_cookie("herald_token="));
    assert_null(from_cookie("herald_token=  "));
    assert_null(from_cookie("herald_token=\"\""));
    assert_null(from_cookie("herald_token=\""));
    assert_null(from_cookie("herald_token=\"abc"));
    assert_null(from_cookie("herald_token=abc\""));
    assert_null(from_cookie("herald_token=a\"b"));
    assert_null(from_cookie("herald_token=a b"));
    assert_null(from_cookie("herald_token=a,b"));
    assert_null(from_cookie("herald_token=a\\b"));
    assert_null(from_cookie("herald_token=cl\xc3\xa9"));
    assert_null(from_cookie("Herald_token=abc"));
    assert_null(from_cookie("herald_tokens=abc"));
    assert_null(from_cookie("xherald_token=abc"));
    assert_null(from_cookie("a=herald_token=abc"));
    assert_null(from_cookie("herald_token=; herald_token=second")); /* the first one decides */
    assert_null(from_cookie("other=abc"));

    const char *token = NULL;
    size_t length = 0;
    assert_false(auth_token_from_cookie(NULL, 0, &token, &length));
    assert_true(auth_token_from_cookie("herald_token=abcdef", 16, &token, &length));
    assert_int_equal(length, 3);
}

/* ---- CORS ---------------------------------------------------------------------------------- */

static auth_status cors_add(auth_cors_policy *policy, const char *entry) {
    return auth_cors_add(policy, entry, strlen(entry));
}

static bool allowed(const auth_cors_policy *policy, const char *origin) {
    return auth_cors_origin_allowed(policy, origin, strlen(origin));
}

static void test_cors_entries(void **state) {
    auth_cors_policy policy;
    auth_cors_init(&policy);
    assert_false(auth_cors_configured(&policy));
    static const char *const good[] = {
        "https://example.com",  "http://localhost:3000", "HTTPS://Example.COM",
        "https://a.com:443",    "http://[::1]:8080",     "http://127.0.0.1:8080",
        "https://my_host.test", "app+x.y-z://h",         "https://a.com:65535",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (cors_add(&policy, good[i]) != AUTH_OK) fail_msg("refused %s", good[i]);
    assert_int_equal(policy.count, 8); /* Example.COM is example.com again */
    assert_string_equal(policy.origins[0], "https://example.com");
    assert_string_equal(policy.origins[2], "https://a.com");
    assert_string_equal(policy.origins[3], "http://[::1]:8080");
    assert_false(policy.any);
    assert_false(policy.allow_null);

    static const char *const bad[] = {
        "",
        "example.com",
        "https://",
        "https:/example.com",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?x=1",
        "https://example.com#f",
        "https://user@example.com",
        "https://exa mple.com",
        "https://example.com:",
        "https://example.com:0",
        "https://example.com:08080",
        "https://example.com:65536",
        "https://example.com:123456",
        "https://example.com:80a",
        "http://[]",
        "http://[:]",
        "http://[::1",
        "http://[::g]",
        "1http://a",
        "//example.com",
        "*.example.com",
        "https://*.example.com",
        "NULL",
        "nul",
        "**",
        " https://example.com",
        "https://ex%41mple.com",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (cors_add(&policy, bad[i]) != AUTH_ORIGIN_INVALID) fail_msg("accepted %s", bad[i]);
    assert_int_equal(auth_cors_add(&policy, NULL, 0), AUTH_ORIGIN_INVALID);
    char long_origin[AUTH_ORIGIN_MAX_LENGTH + 2];
    memcpy(long_origin, "https://", 8);
    memset(long_origin + 8, 'a', sizeof long_origin - 9);
    long_origin[sizeof long_origin - 1] = '\0';
    assert_int_equal(cors_add(&policy, long_origin), AUTH_ORIGIN_INVALID);
    long_origin[AUTH_ORIGIN_MAX_LENGTH] = '\0';
    assert_int_equal(cors_add(&policy, long_origin), AUTH_OK);
    assert_true(allowed(&policy, long_origin));

    assert_int_equal(cors_add(&policy, "*"), AUTH_OK);
    assert_true(policy.any);
    assert_int_equal(cors_add(&policy, "null"), AUTH_OK);
    assert_true(policy.allow_null);
    auth_cors_free(&policy);
    assert_false(auth_cors_configured(&policy));
}

static void test_cors_matching(void **state) {
    auth_cors_policy policy;
    auth_cors_init(&policy);
    assert_false(allowed(&policy, "https://app.example.com")); /* nothing configured */
    assert_int_equal(cors_add(&policy, "https://app.example.com"), AUTH_OK);
    assert_int_equal(cors_add(&policy, "http://localhost:3000"), AUTH_OK);
    assert_int_equal(cors_add(&policy, "http://[::1]:8080"), AUTH_OK);
    assert_true(auth_cors_configured(&policy));

    assert_true(allowed(&policy, "https://app.example.com"));
    assert_true(allowed(&policy, "https://APP.Example.com"));
    assert_true(allowed(&policy, "HTTPS://app.example.com"));
    assert_true(allowed(&policy, "https://app.example.com:443"));
    assert_true(allowed(&policy, "http://localhost:3000"));
    assert_true(allowed(&policy, "http://[::1]:8080"));
    assert_true(allowed(&policy, "http://[::1]:8080"));

    assert_false(allowed(&policy, "http://app.example.com"));
    assert_false(allowed(&policy, "https://app.example.com:8443"));
    assert_false(allowed(&policy, "https://app.example.com/"));
    assert_false(allowed(&policy, "https://app.example.com.evil.com"));
    assert_false(allowed(&policy, "https://evil-app.example.com"));
    assert_false(allowed(&policy, "https://example.com"));
    assert_false(allowed(&policy, "https://app.example.co"));
    assert_false(allowed(&policy, "http://localhost"));
    assert_false(allowed(&policy, "http://localhost:30000"));
    assert_false(allowed(&policy, "http://[::2]:8080"));
    assert_false(allowed(&policy, "null"));
    assert_false(allowed(&policy, ""));
    assert_false(allowed(&policy, "*"));
    assert_false(auth_cors_origin_allowed(&policy, NULL, 0));
    assert_false(auth_cors_origin_allowed(NULL, "https://app.example.com", 23));
    /* length governs */
    assert_true(auth_cors_origin_allowed(&policy, "https://app.example.com/x", 23));

    /* '*': every origin but "null" (which must be listed itself) and garbage */
    assert_int_equal(cors_add(&policy, "*"), AUTH_OK);
    assert_true(allowed(&policy, "https://anything.test"));
    assert_true(allowed(&policy, "http://localhost:1"));
    assert_false(allowed(&policy, "null"));
    assert_false(allowed(&policy, "not an origin"));
    assert_int_equal(cors_add(&policy, "null"), AUTH_OK);
    assert_true(allowed(&policy, "null"));
    assert_false(allowed(&policy, "Null"));
    auth_cors_free(&policy);

    auth_cors_init(&policy);
    assert_int_equal(cors_add(&policy, "null"), AUTH_OK);
    assert_true(allowed(&policy, "null"));
    assert_false(allowed(&policy, "https://a.test"));
    auth_cors_free(&policy);
}

#define EXPOSE                                                                                     \
    "Access-Control-Expose-Headers: ETag, Herald-Epoch, Idempotent-Replayed, Retry-After\r\n"

/* The headers of an ordinary response, as a string (static buffer). */
static char headers[2048];

static const char *normal(const auth_cors_policy *policy, const char *origin, bool expect) {
    text out;
    text_init(&out);
    bool result = auth_cors_append_headers(policy, origin, origin ? strlen(origin) : 0, &out);
    assert_int_equal(result, expect);
    assert_false(text_failed(&out));
    snprintf(headers, sizeof headers, "%.*s", (int)out.length, out.data ? out.data : "");
    text_free(&out);
    return headers;
}

static const char *preflight(const auth_cors_policy *policy, const char *origin,
                             const char *request_headers, bool expect) {
    text out;
    text_init(&out);
    bool result =
        auth_cors_append_preflight(policy, origin, origin ? strlen(origin) : 0, request_headers,
                                   request_headers ? strlen(request_headers) : 0, &out);
    assert_int_equal(result, expect);
    snprintf(headers, sizeof headers, "%.*s", (int)out.length, out.data ? out.data : "");
    text_free(&out);
    return headers;
}

static void test_cors_headers(void **state) {
    auth_cors_policy policy;
    auth_cors_init(&policy);
    /* not configured: nothing at all */
    assert_string_equal(normal(&policy, "https://app.example.com", false), "");
    assert_string_equal(preflight(&policy, "https://app.example.com", NULL, false), "");

    assert_int_equal(cors_add(&policy, "https://app.example.com"), AUTH_OK);
    assert_string_equal(normal(&policy, "https://app.example.com", true),
                        "Access-Control-Allow-Origin: https://app.example.com\r\n"
                        "Access-Control-Allow-Credentials: true\r\n" EXPOSE "Vary: Origin\r\n");
    /* echoed as sent */
    assert_string_equal(normal(&policy, "https://App.Example.com:443", true),
                        "Access-Control-Allow-Origin: https://App.Example.com:443\r\n"
                        "Access-Control-Allow-Credentials: true\r\n" EXPOSE "Vary: Origin\r\n");
    assert_string_equal(normal(&policy, "https://evil.test", false), "Vary: Origin\r\n");
    assert_string_equal(normal(&policy, NULL, false), "Vary: Origin\r\n");
    assert_string_equal(normal(&policy, "https://app.example.com\r\nX-Evil: 1", false),
                        "Vary: Origin\r\n");

    assert_string_equal(preflight(&policy, "https://app.example.com", NULL, true),
                        "Access-Control-Allow-Origin: https://app.example.com\r\n"
                        "Access-Control-Allow-Credentials: true\r\n"
                        "Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS\r\n"
                        "Access-Control-Allow-Headers: Authorization, Content-Type, "
                        "Idempotency-Key, If-None-Match, Last-Event-ID\r\n"
                        "Access-Control-Max-Age: 600\r\n"
                        "Vary: Origin, Access-Control-Request-Headers\r\n");
    assert_string_equal(preflight(&policy, "https://app.example.com",
                                  "authorization,content-type,last-event-id", true),
                        "Access-Control-Allow-Origin: https://app.example.com\r\n"
                        "Access-Control-Allow-Credentials: true\r\n"
                        "Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS\r\n"
                        "Access-Control-Allow-Headers: authorization, content-type, "
                        "last-event-id\r\n"
                        "Access-Control-Max-Age: 600\r\n"
                        "Vary: Origin, Access-Control-Request-Headers\r\n");
    assert_string_equal(preflight(&policy, "https://evil.test", "x-a", false),
                        "Vary: Origin, Access-Control-Request-Headers\r\n");
    assert_string_equal(preflight(&policy, NULL, NULL, false),
                        "Vary: Origin, Access-Control-Request-Headers\r\n");

    /* wildcard: "*", no credentials */
    assert_int_equal(cors_add(&policy, "*"), AUTH_OK);
    assert_string_equal(normal(&policy, "https://other.test", true),
                        "Access-Control-Allow-Origin: *\r\n" EXPOSE "Vary: Origin\r\n");
    assert_string_equal(normal(&policy, "https://app.example.com", true),
                        "Access-Control-Allow-Origin: https://app.example.com\r\n"
                        "Access-Control-Allow-Credentials: true\r\n" EXPOSE "Vary: Origin\r\n");
    assert_string_equal(normal(&policy, "null", false), "Vary: Origin\r\n");
    assert_string_equal(preflight(&policy, "https://other.test", "Cache-Control", true),
                        "Access-Control-Allow-Origin: *\r\n"
                        "Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS\r\n"
                        "Access-Control-Allow-Headers: Cache-Control\r\n"
                        "Access-Control-Max-Age: 600\r\n"
                        "Vary: Origin, Access-Control-Request-Headers\r\n");
    /* "null" when listed is echoed */
    assert_int_equal(cors_add(&policy, "null"), AUTH_OK);
    assert_string_equal(normal(&policy, "null", true),
                        "Access-Control-Allow-Origin: null\r\n"
                        "Access-Control-Allow-Credentials: true\r\n" EXPOSE "Vary: Origin\r\n");
    auth_cors_free(&policy);
}

/* Just the Access-Control-Allow-Headers line of a preflight. */
static const char *allow_headers(const auth_cors_policy *policy, const char *request_headers) {
    preflight(policy, "https://a.test", request_headers, true);
    char *line = strstr(headers, "Access-Control-Allow-Headers: ");
    assert_non_null(line);
    line += strlen("Access-Control-Allow-Headers: ");
    *strstr(line, "\r\n") = '\0';
    return line;
}

static void test_cors_request_headers(void **state) {
    auth_cors_policy policy;
    auth_cors_init(&policy);
    assert_int_equal(cors_add(&policy, "https://a.test"), AUTH_OK);
    const char *fixed = AUTH_CORS_DEFAULT_HEADERS;
    assert_string_equal(allow_headers(&policy, NULL), fixed);
    assert_string_equal(allow_headers(&policy, ""), fixed);
    assert_string_equal(allow_headers(&policy, " , ,"), fixed);
    assert_string_equal(allow_headers(&policy, "x-a"), "x-a");
    assert_string_equal(allow_headers(&policy, " x-a ,, x-b\t"), "x-a, x-b");
    assert_string_equal(allow_headers(&policy, "X-Requested-With,Cache-Control"),
                        "X-Requested-With, Cache-Control");
    assert_string_equal(allow_headers(&policy, "!#$%&'*+-.^_`|~"), "!#$%&'*+-.^_`|~");
    assert_string_equal(allow_headers(&policy, "bad header"), fixed);
    assert_string_equal(allow_headers(&policy, "a;b"), fixed);
    assert_string_equal(allow_headers(&policy, "a\r\nX-Evil: 1"), fixed);
    assert_string_equal(allow_headers(&policy, "a:b"), fixed);
    assert_string_equal(allow_headers(&policy, "caf\xc3\xa9"), fixed);

    /* at most 32 names and 1024 bytes */
    char list[2048] = "";
    for (int i = 0; i < 32; i++)
        sprintf(list + strlen(list), "%sh%d", i ? "," : "", i);
    assert_string_not_equal(allow_headers(&policy, list), fixed);
    strcat(list, ",h32");
    assert_string_equal(allow_headers(&policy, list), fixed);
    memset(list, 'x', 1024);
    list[1024] = '\0';
    assert_string_not_equal(allow_headers(&policy, list), fixed);
    list[1024] = 'x';
    list[1025] = '\0';
    assert_string_equal(allow_headers(&policy, list), fixed);
    auth_cors_free(&policy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_add),      cmocka_unit_test(test_key_list),
        cmocka_unit_test(test_key_matches),  cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_query_token),  cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_cors_entries), cmocka_unit_test(test_cors_matching),
        cmocka_unit_test(test_cors_headers), cmocka_unit_test(test_cors_request_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

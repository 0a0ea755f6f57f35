#include "core/encoding.h"

static const char base64_symbols[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int hex_digit_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void base64_encode(const void *data, size_t length, char *out) {
    const unsigned char *p = data;
    size_t o = 0;
    for (size_t i = 0; i < length; i += 3) {
        size_t left = length - i;
        unsigned long group = (unsigned long)p[i] << 16;
        if (left > 1) group |= (unsigned long)p[i + 1] << 8;
        if (left > 2) group |= p[i + 2];
        out[o++] = base64_symbols[(group >> 18) & 63];
        out[o++] = base64_symbols[(group >> 12) & 63];
        out[o++] = left > 1 ? base64_symbols[(group >> 6) & 63] : '=';
        out[o++] = left > 2 ? base64_symbols[group & 63] : '=';
    }
    out[o] = '\0';
}

void base64_append(text *out, const void *data, size_t length) {
    const unsigned char *p = data;
    char chunk[BASE64_LENGTH(48) + 1];
    for (size_t i = 0; i < length; i += 48) {
        size_t n = length - i < 48 ? length - i : 48;
        base64_encode(p + i, n, chunk);
        text_append(out, chunk, BASE64_LENGTH(n));
    }
}

bool base64_decode(const char *in, size_t length, unsigned char *out, size_t capacity,
                   size_t *out_length) {
    if (length % 4 != 0) return false;
    size_t padding = 0;
    if (length > 0 && in[length - 1] == '=') padding++;
    if (length > 1 && in[length - 2] == '=') padding++;
    size_t decoded = length / 4 * 3 - padding;
    if (decoded > capacity) return false;
    size_t o = 0;
    for (size_t i = 0; i < length; i += 4) {
        bool last = i + 4 == length;
        size_t symbols = last ? 4 - padding : 4;
        unsigned long group = 0;
        for (size_t k = 0; k < 4; k++) {
            int v = 0;
            if (k < symbols) {
                v = base64_value((unsigned char)in[i + k]);
                if (v < 0) return false;
            }
            group = group << 6 | (unsigned long)v;
        }
        /* Canonical: the bits a short final group does not use are zero. */
        if (symbols == 2 && (group & 0xFFFF) != 0) return false;
        if (symbols == 3 && (group & 0xFF) != 0) return false;
        out[o++] = (unsigned char)(group >> 16);
        if (symbols > 2) out[o++] = (unsigned char)(group >> 8);
        if (symbols > 3) out[o++] = (unsigned char)group;
    }
    *out_length = o;
    return true;
}

void hex_append(text *out, const void *data, size_t length) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < length; i++) {
        char pair[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        text_append(out, pair, 2);
    }
}

bool hex_decode_exact(const char *in, size_t length, unsigned char *out, size_t expected) {
    if (length != 2 * expected) return false;
    for (size_t i = 0; i < expected; i++) {
        int high = hex_digit_value((unsigned char)in[2 * i]);
        int low = hex_digit_value((unsigned char)in[2 * i + 1]);
        if (high < 0 || low < 0) return false;
        out[i] = (unsigned char)(high << 4 | low);
    }
    return true;
}

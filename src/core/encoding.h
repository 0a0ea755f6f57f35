#ifndef HERALD_CORE_ENCODING_H
#define HERALD_CORE_ENCODING_H
/* Owns: the strict base64 (RFC 4648 §4, standard alphabet, padded) and hex codecs — webhook
 * secrets and signatures, WebSocket keys, percent-escapes, JSON \u escapes, chunk sizes. Decoders
 * accept only the canonical form — length a multiple of 4,
 * '=' only as the final one or two symbols, unused bits zero; hex of even length — and never read
 * or write out of bounds, whatever the input. No allocation in the decoders. */
#include <stdbool.h>
#include <stddef.h>

#include "core/text.h"

/* Symbols needed for n bytes (no NUL counted). */
#define BASE64_LENGTH(n) ((((n) + 2) / 3) * 4)

/* Appends the padded base64 of data. */
void base64_append(text *out, const void *data, size_t length);
/* Writes the padded base64 of data plus a NUL into out, which holds BASE64_LENGTH(length) + 1
 * bytes. */
void base64_encode(const void *data, size_t length, char *out);
/* Decodes canonical base64 into out (capacity bytes). false — out unspecified — when the input is
 * not canonical base64 or decodes to more than capacity bytes. Empty input decodes to 0 bytes. */
bool base64_decode(const char *in, size_t length, unsigned char *out, size_t capacity,
                   size_t *out_length);

/* 0-15 for a hex digit of either case, -1 otherwise. */
int hex_digit_value(unsigned char c);
/* Appends lowercase hex. */
void hex_append(text *out, const void *data, size_t length);
/* Decodes hex (either case) of exactly 2 * expected bytes into out. false on any other length or a
 * non-hex character. */
bool hex_decode_exact(const char *in, size_t length, unsigned char *out, size_t expected);

#endif

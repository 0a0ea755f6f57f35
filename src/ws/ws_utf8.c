/* Incremental UTF-8 validation (Unicode Table 3-7), failing at the first byte that cannot
 * continue a well-formed sequence: the lead byte fixes the allowed range of the first
 * continuation byte (E0 -> A0..BF, ED -> 80..9F, F0 -> 90..BF, F4 -> 80..8F), so overlongs,
 * surrogates and values past U+10FFFF fail at their second byte. */
#include <string.h>

#include "ws/ws.h"

void utf8_stream_init(utf8_stream *s) {
    memset(s, 0, sizeof *s);
}

bool utf8_stream_complete(const utf8_stream *s) {
    return !s->failed && s->need == 0;
}

static inline bool fail(utf8_stream *s, size_t at, size_t *error_offset) {
    s->failed = true;
    if (error_offset) *error_offset = at;
    return false;
}

bool utf8_stream_validate(utf8_stream *s, const void *data, size_t length, size_t *error_offset) {
    if (s->failed) return fail(s, 0, error_offset);
    const unsigned char *p = data;
    size_t i = 0;
    uint8_t need = s->need, low = s->low, high = s->high;
    while (i < length) {
        if (need == 0) {
            /* ASCII fast path: eight bytes at a time while no high bit is set. */
            while (length - i >= 8) {
                uint64_t word;
                memcpy(&word, p + i, 8);
                if (word & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            while (i < length && p[i] < 0x80)
                i++;
            if (i == length) break;
            unsigned char lead = p[i];
            low = 0x80;
            high = 0xBF;
            if (lead >= 0xC2 && lead <= 0xDF) {
                need = 1;
            } else if (lead >= 0xE0 && lead <= 0xEF) {
                need = 2;
                if (lead == 0xE0) low = 0xA0;
                if (lead == 0xED) high = 0x9F;
            } else if (lead >= 0xF0 && lead <= 0xF4) {
                need = 3;
                if (lead == 0xF0) low = 0x90;
                if (lead == 0xF4) high = 0x8F;
            } else {
                return fail(s, i, error_offset); /* 80..C1, F5..FF */
            }
            i++;
        } else {
            unsigned char c = p[i];
            if (c < low || c > high) return fail(s, i, error_offset);
            need--;
            low = 0x80;
            high = 0xBF;
            i++;
        }
    }
    s->need = need;
    s->low = low;
    s->high = high;
    return true;
}

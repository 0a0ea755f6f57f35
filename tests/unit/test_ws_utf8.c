/* The incremental UTF-8 validator: the well-formed boundaries and the ill-formed table, every
 * input split at every position and fed byte by byte, failing exactly at the first impossible
 * byte; and an exhaustive cross-check of short sequences against core/json's utf8_validate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "ws/ws.h"

#define INCOMPLETE ((size_t)-1) /* valid so far, but the input ends inside a sequence */
#define VALID ((size_t)-2)

typedef struct utf8_case {
    const char *bytes;
    size_t length;
    size_t fails_at; /* index of the first impossible byte, INCOMPLETE or VALID */
} utf8_case;

#define CASE(literal, at)                                                                          \
    { literal, sizeof literal - 1, at }

/* Feeds the chunks [0,cut) and [cut,length) (or byte by byte when cut is length + 1) and checks
 * the verdict and where it comes. */
static void check_split(const utf8_case *c, size_t cut) {
    utf8_stream s;
    utf8_stream_init(&s);
    size_t start = 0;
    bool byte_by_byte = cut > c->length;
    while (start < c->length || (start == 0 && c->length == 0)) {
        size_t end = byte_by_byte ? start + 1 : (start < cut ? cut : c->length);
        if (end > c->length) end = c->length;
        size_t offset = 12345;
        bool ok = utf8_stream_validate(&s, c->bytes + start, end - start, &offset);
        bool fault_here = c->fails_at < VALID && c->fails_at >= start && c->fails_at < end;
        if (fault_here) {
            assert_false(ok);
            assert_int_equal(offset, c->fails_at - start);
            /* A failed stream stays failed. */
            assert_false(utf8_stream_validate(&s, "a", 1, NULL));
            assert_false(utf8_stream_complete(&s));
            return;
        }
        assert_true(ok);
        if (end == start) break;
        start = end;
    }
    assert_true(c->fails_at == VALID || c->fails_at == INCOMPLETE); /* no fault was expected */
    if (c->fails_at == VALID)
        assert_true(utf8_stream_complete(&s));
    else
        assert_false(utf8_stream_complete(&s));
}

static void check_cases(const utf8_case *cases, size_t count) {
    for (size_t i = 0; i < count; i++)
        for (size_t cut = 0; cut <= cases[i].length + 1; cut++)
            check_split(&cases[i], cut);
}

static void well_formed_boundaries(void **state) {
    static const utf8_case cases[] = {
        {"\x00", 1, VALID},              /* U+0000 */
        CASE("\x7F", VALID),             /* U+007F */
        CASE("\xC2\x80", VALID),         /* U+0080 */
        CASE("\xDF\xBF", VALID),         /* U+07FF */
        CASE("\xE0\xA0\x80", VALID),     /* U+0800 */
        CASE("\xED\x9F\xBF", VALID),     /* U+D7FF */
        CASE("\xEE\x80\x80", VALID),     /* U+E000 */
        CASE("\xEF\xBF\xBF", VALID),     /* U+FFFF */
        CASE("\xF0\x90\x80\x80", VALID), /* U+10000 */
        CASE("\xF4\x8F\xBF\xBF", VALID), /* U+10FFFF */
        CASE("", VALID),
        CASE("hello, world", VALID),
        CASE("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", VALID), /* κόσμε */
        CASE("a\xC2\x80"
             "b\xE0\xA0\x80"
             "c\xF0\x90\x80\x80"
             "d",
             VALID),
    };
    check_cases(cases, sizeof cases / sizeof cases[0]);
}

static void ill_formed_fail_at_the_first_impossible_byte(void **state) {
    static const utf8_case cases[] = {
        /* overlongs */
        CASE("\xC0\x80", 0),
        CASE("\xC1\xBF", 0),
        CASE("\xE0\x80\x80", 1),
        CASE("\xE0\x9F\xBF", 1),
        CASE("\xF0\x80\x80\x80", 1),
        CASE("\xF0\x8F\xBF\xBF", 1),
        /* surrogates U+D800..U+DFFF */
        CASE("\xED\xA0\x80", 1),
        CASE("\xED\xAD\xBF", 1),
        CASE("\xED\xB0\x80", 1),
        CASE("\xED\xBF\xBF", 1),
        CASE("\xED\xA0", 1),
        /* past U+10FFFF */
        CASE("\xF4\x90\x80\x80", 1),
        CASE("\xF4\x90", 1),
        CASE("\xF4\xBF\xBF\xBF", 1),
        CASE("\xF5\x80\x80\x80", 0),
        CASE("\xF7\xBF\xBF\xBF", 0),
        CASE("\xF8\x88\x80\x80\x80", 0),
        CASE("\xFC\x84\x80\x80\x80\x80", 0),
        CASE("\xFE", 0),
        CASE("\xFF", 0),
        /* stray continuation bytes */
        CASE("\x80", 0),
        CASE("\xBF", 0),
        CASE("a\x80", 1),
        CASE("\xC2\x80\x80", 2),
        CASE("\xE2\x82\xAC\xAC", 3),
        /* a lead byte not followed by a continuation */
        CASE("\xC2\x41", 1),
        CASE("\xE1\x80\x41", 2),
        CASE("\xF1\x80\x80\xC2", 3),
        CASE("\xE2\xE2\x82\xAC", 1),
        /* late in an ASCII run (the fast path) */
        CASE("0123456789abcdefghij\xC0", 20),
        CASE("01234567\xFF", 8),
        CASE("0123456\xFF", 7),
        /* truncated at the message end */
        CASE("\xC2", INCOMPLETE),
        CASE("\xE0\xA0", INCOMPLETE),
        CASE("\xEF\xBF", INCOMPLETE),
        CASE("\xF0\x90\x80", INCOMPLETE),
        CASE("abc\xF4\x8F\xBF", INCOMPLETE),
        CASE("\xE2\x82\xAC\xE2", INCOMPLETE),
    };
    check_cases(cases, sizeof cases / sizeof cases[0]);
}

static void fault_positions_across_a_long_ascii_run(void **state) {
    char data[300];
    for (size_t bad = 0; bad < 64; bad++) {
        memset(data, 'x', sizeof data);
        data[bad] = (char)0xFF;
        utf8_case c = {data, sizeof data, bad};
        check_split(&c, sizeof data + 1);
        check_split(&c, 0);
        check_split(&c, 13);
        check_split(&c, 100);
    }
}

/* Reference: core/json's one-shot validator reports the same fault offset (the input length for
 * a sequence cut short). */
static void expect_same_as_reference(const unsigned char *bytes, size_t length) {
    size_t reference_error = 0, error = 0;
    bool reference_ok = utf8_validate((const char *)bytes, length, &reference_error);
    utf8_stream s;
    utf8_stream_init(&s);
    bool ok = utf8_stream_validate(&s, bytes, length, &error);
    if (ok && !utf8_stream_complete(&s)) {
        ok = false;
        error = length;
    }
    assert_int_equal(ok, reference_ok);
    if (!ok) assert_int_equal(error, reference_error);
}

static void exhaustive_short_sequences_match_the_reference(void **state) {
    unsigned char b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        expect_same_as_reference(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            expect_same_as_reference(b, 2);
            if (x < 0xC2) continue; /* the lead already decided */
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (unsigned char)z;
                expect_same_as_reference(b, 3);
            }
        }
    }
    /* Four-byte leads with every second byte and a few third/fourth bytes. */
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xFF};
    for (unsigned x = 0xF0; x <= 0xF4; x++)
        for (unsigned y = 0; y < 256; y++)
            for (size_t i = 0; i < sizeof tails; i++)
                for (size_t j = 0; j < sizeof tails; j++) {
                    b[0] = (unsigned char)x;
                    b[1] = (unsigned char)y;
                    b[2] = tails[i];
                    b[3] = tails[j];
                    expect_same_as_reference(b, 4);
                }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(well_formed_boundaries),
        cmocka_unit_test(ill_formed_fail_at_the_first_impossible_byte),
        cmocka_unit_test(fault_positions_across_a_long_ascii_run),
        cmocka_unit_test(exhaustive_short_sequences_match_the_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

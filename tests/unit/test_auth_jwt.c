/* Unit tests for src/auth: HS256 JWT verification, claims, and topic pattern subsumption.
 * Every token below was made independently with node:crypto (HMAC-SHA256 over
 * base64url(header) "." base64url(payload), secret SECRET), not with herald's code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "hub/topic.h"

#define SECRET "herald-test-secret-0123456789abcdef"
#define NOW INT64_C(1800000000)

static const char VALID[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                            "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbG"
                            "QiOnsic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJj"
                            "aGF0LyoiXX19.-b8CtOybTbPhD9WHWSCg2H-aO9NCe2uLH3eknh3u_4c";
static const char VALID_NO_TYP_NBF_FRACTION[] =
    "eyJhbGciOiJIUzI1NiJ9."
    "eyJleHAiOjE4MDAwMDAwMDAuNSwibmJmIjoxNzk5OTk5OTkwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbImEvKioiXX19."
    "ol0Hple386VTqyU9vcWwzkPUFrZmR1ak-LmzgtDk0-Q";
static const char VALID_NO_HERALD[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwNjB9.5LFPg60Px1F2oY-"
    "dc3mRdjCE3z3nRiDEjemnEM4f7zQ";
static const char VALID_EXPONENT_EXP[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjEwMDAwMDAwMDAwfQ.meJRw5sK08F8K6w0bp7BGYTL-YkL_"
    "l_mM7QWjHJCXsc";
static const char VALID_EXP_1_8E9[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjEuOGU5LCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm9yZGVyc1wvMSJdLCJwdWJsaXNoIjpbXX19.KlS_"
    "wir8H5txm-kqdS6dRHpaOHUVi-aHoYkbk_UTlPE";
static const char VALID_SPACES_HUGE_EXP[] =
    "IHsgInR5cCIgOiAiSldUIiAsICJhbGciIDogIkhTMjU2IiB9IA."
    "eyJleHAiOjFlNDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIngiXSwidW5rbm93biI6MX19."
    "Edh2NnrMgs9AxsUR6t0lWSbBhHyIFwa23XpISeR7em0";
static const char ALG_NONE_UNSIGNED[] =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.";
static const char ALG_NONE_SIGNED[] =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.IHKRCL_bqD4stJsIiS1LRIz99iS6_"
    "dUlqjw6BKqfltU";
static const char ALG_RS256[] = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
                                "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZX"
                                "JhbGQiOnsic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlz"
                                "aCI6WyJjaGF0LyoiXX19.iLe8vW-Vv5bXBNqjwN9zd1lJOxSpCKeDT-GvAQlpKuw";
static const char ALG_HS512[] =
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.LZr9rCtsvgf6uRYg3ANAdWuZBr1G1vMd_"
    "OFO60encohb7zxyphOEGYk22epEvaBSvNTo5oxAdGBfw3hZHGb4mQ";
static const char ALG_LOWER[] = "eyJhbGciOiJoczI1NiJ9."
                                "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZX"
                                "JhbGQiOnsic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlz"
                                "aCI6WyJjaGF0LyoiXX19.3OuCC3JyKwl6OSmdKN9SIa6Ne0UAenKYzOkxGwGmy0M";
static const char ALG_MISSING[] =
    "eyJ0eXAiOiJKV1QifQ."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "0QcsDtsjZO0RgaBkEqVk8k88iS3Dms5EbzOujx1s86s";
static const char ALG_NUMBER[] =
    "eyJhbGciOjI1Nn0."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.vmHwOrY1K1xTzcy6XcO_pVlQ-"
    "9BEfzi9d7vd3OFRUfQ";
static const char ALG_DUPLICATE[] =
    "eyJhbGciOiJub25lIiwiYWxnIjoiSFMyNTYifQ."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.96_rRHBuFJBgkLPhGWTCScK_"
    "2dQuD4YudCa9QBExNjo";
static const char CRIT[] = "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiYjY0Il0sImI2NCI6ZmFsc2V9."
                           "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQ"
                           "iOnsic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaG"
                           "F0LyoiXX19.XZsnES6NeU7UblNNuDc7D0wCw60kChPNp_pxOgdFQgI";
static const char TYP_NUMBER[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6MX0."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "ru3XLw9sFiO1L84Z6x6RC458Sa0YvFjQVla6GsAwg_k";
static const char BAD_SIGNATURE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "9HYXtwAtEH2KBefyxeUPFs9lhY9ngUD7wrhEqo9DD3c";
static const char ALTERED_PAYLOAD[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIi"
    "oqIl0sInB1Ymxpc2giOlsiKioiXX19.-b8CtOybTbPhD9WHWSCg2H-aO9NCe2uLH3eknh3u_4c";
static const char EXPIRED[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                              "eyJzdWIiOiJ1MSIsImV4cCI6MTc5OTk5OTk5OSwiaWF0IjoxNzk5OTk5MDAwLCJoZXJh"
                              "bGQiOnsic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6"
                              "WyJjaGF0LyoiXX19.VQzLjROtZFtETnD2qnPwaZtdK9CQRdFoHWANeMa-ov0";
static const char EXPIRED_NOW[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMDAwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19.-yUyEAy5un5ThtLRhQpVB8-"
    "yldOupkV7GnwM4AQqYoA";
static const char EXPIRED_NEGATIVE[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOi01fQ."
                                       "eZjEgoxKW7iY0prFrVTBm9Eew8xUqN9SA7MLNy05Xxk";
static const char NBF_FUTURE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX0sIm5iZiI6MTgwMDAwMDA2MH0."
    "GhzoijcDXpd1p_QJCxKIRuwYITHvvdAko3vQHMZror0";
static const char MISSING_EXP[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImhlcmFsZCI6eyJzdWJzY3JpYmUiOlsib3JkZXJzLzEyMyIsImNoYXQvKiJdLCJwdWJsaXNoIjpbIm"
    "NoYXQvKiJdfX0.kQ0EGoVlLl3MyvR9hu-41WZk-HEa-vR94Fq59JWgoig";
static const char EXP_STRING[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6IjE4MDAwMDM2MDAiLCJpYXQiOjE3OTk5OTkwMDAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOl"
    "sib3JkZXJzLzEyMyIsImNoYXQvKiJdLCJwdWJsaXNoIjpbImNoYXQvKiJdfX0."
    "arfDFi2a1EgliFjCNkBd1bXGWTxCVVj1C3uNTr4_Or4";
static const char EXP_NULL[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                               "eyJzdWIiOiJ1MSIsImV4cCI6bnVsbCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOns"
                               "ic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaG"
                               "F0LyoiXX19.acQMHazuIwPG3o3a8yvOs1S9ND7EwMUVcD5uWnn9D5k";
static const char EXP_DUPLICATE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDM2MDAsImV4cCI6MTc5OTk5NjQwMH0."
    "OifBOjGwP1hA4MJAuDFsdQRaGiQ6hg2uViMuPbxIcHM";
static const char NBF_STRING[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX0sIm5iZiI6Im5vdyJ9."
    "MUYVEWnWlCdiTESYIbrU_RXLuSTLkPiqpJlZzv88nRo";
static const char IAT_BOOL[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                               "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0Ijp0cnVlLCJoZXJhbGQiOns"
                               "ic3Vic2NyaWJlIjpbIm9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaG"
                               "F0LyoiXX19.8snedCgbLypCBNU3ygYI8GTanuk8cAKb5mK7sxU3NU0";
static const char PADDED_HEADER[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVDEifQ==."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19._fKqW-"
    "prB5kVI3rzJg2cBkPUboLY9WC62Nkaz0whx08";
static const char NON_OBJECT_HEADER[] =
    "WyJIUzI1NiJd."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "JFcT4K2xMYM6EaQjFIShmYhJITG0zvgUUMOm09dZ6Nc";
static const char STRING_HEADER[] =
    "IkhTMjU2Ig."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "hW018aBWJKW9g175BT8xHoC59RHjbjH6GkGDxfyeeaU";
static const char INVALID_JSON_HEADER[] =
    "eyJhbGciOiJIUzI1NiIsfQ."
    "eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxNzk5OTk5MDAwLCJoZXJhbGQiOnsic3Vic2NyaWJlIjpbIm"
    "9yZGVycy8xMjMiLCJjaGF0LyoiXSwicHVibGlzaCI6WyJjaGF0LyoiXX19."
    "fJSjTKB8AvUVPa1UGmueSKyUC3bKwcPbu8khuxCzxAk";
static const char NON_OBJECT_PAYLOAD[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.WzE4MDAwMDM2MDBd."
                                         "ziUNTXVawKXwp5NeZ6qOOyXV2f33K_Qkakh9u3ddEtk";
static const char INVALID_UTF8_PAYLOAD[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDM2MDAsInN1YiI6Iv8ifQ.u1KN0qC2ABchNYfF-"
    "9OjoZSyJQDWNmEksu-IGz4U09Q";
static const char BAD_PATTERN[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                  "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOlsib3JkZXJz"
                                  "LyoqL2l0ZW1zIl19fQ.eWVHRhi2Fy5xPeSjuo0Q6i9Z6lzUvS2skXAO54vzW5o";
static const char BAD_PATTERN_PUBLISH[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                          "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJwdWJsaXNoIjpbImNo"
                                          "YXQvIl19fQ.zdZrs0dWPxhpuo9RbfOClNX_zXfnNpQMzOpvgf74PU8";
static const char PATTERN_NOT_STRING[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                         "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOlsiY"
                                         "SIsN119fQ.0_hd3ARik7QjFSBvoX_fzDh1is0oqzz8nWWLCobmemc";
static const char SUBSCRIBE_NOT_ARRAY[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOiJvcmRlcnMvKiJ9fQ."
    "iKskuXHABUTqQckqVKLmL4g9TQGZi0kFEbIy0Tc9AIc";
static const char HERALD_NOT_OBJECT[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6WyJvcmRlcnMvKiJdfQ.2-"
    "Br_KAgncBAMykJ1CGc-WSZwWkeBqv0fs5LHE3Smb8";
static const char HERALD_NULL[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6bnVsbH0.3350rv66-"
    "0TkrXlGvGJ69gVU_l772vIIM_VQTkkV1T4";
static const char SUBSCRIBE_DUPLICATE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOlsiYSJdLCJzdWJzY3JpYmUiOlsiKioiXX19."
    "fT03I6W7s8UKc2CHl957T1nj3ZKzKvTQwSmjszzGINo";
static const char EMPTY_PATTERN[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                    "eyJleHAiOjE4MDAwMDAwNjAsImhlcmFsZCI6eyJzdWJzY3JpYmUiOlsiIl19fQ"
                                    "._T_VVvTn2bgQAFAACk1foOKsHOpfunyrWyJp1RS0P7A";

/* The big tokens: header "." PREFIX + "YWFh" (base64 of "aaa") * repeat + SUFFIX "." signature,
 * i.e. the payload {"exp":1800003600,"pad__":"aaa…"}; signatures from node:crypto. */
#define HS256_HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#define BIG_PREFIX "eyJleHAiOjE4MDAwMDM2MDAsInBhZF9fIjoi"
#define BIG_SUFFIX "In0"
#define BIG_OK_SIGNATURE "p4GI0GRCDKphyRqu1rbg7PrTUAbtuy_Lxj9sZic2DqA"
#define BIG_TOO_LONG_SIGNATURE "lXjy5wHSZ9seE6d-MN1TowrU_4a9joznUNxlYveKVro"

static char *big_token(size_t repeat, const char *signature) {
    size_t length = strlen(HS256_HEADER) + 1 + strlen(BIG_PREFIX) + 4 * repeat +
                    strlen(BIG_SUFFIX) + 1 + strlen(signature);
    char *token = malloc(length + 1);
    assert_non_null(token);
    char *p = token;
    p += sprintf(p, "%s.%s", HS256_HEADER, BIG_PREFIX);
    for (size_t i = 0; i < repeat; i++)
        p += sprintf(p, "YWFh");
    sprintf(p, "%s.%s", BIG_SUFFIX, signature);
    assert_int_equal(strlen(token), length);
    return token;
}

static auth_jwt_verdict verify_at(const char *token, size_t length, int64_t now, int64_t leeway,
                                  auth_claims *claims) {
    return auth_verify_jwt(token, length, (const unsigned char *)SECRET, strlen(SECRET), now,
                           leeway, claims);
}

/* Verifies at NOW without leeway and checks that a refused token leaves no claims behind. */
static auth_jwt_verdict verify(const char *token) {
    auth_claims claims;
    auth_jwt_verdict verdict = verify_at(token, strlen(token), NOW, 0, &claims);
    if (verdict != AUTH_JWT_OK) {
        assert_int_equal(claims.subscribe.count, 0);
        assert_int_equal(claims.publish.count, 0);
        assert_null(claims.subscribe.patterns);
        assert_null(claims.publish.patterns);
    }
    auth_claims_free(&claims);
    return verdict;
}

static auth_jwt_verdict verify_with(const char *token, int64_t now, int64_t leeway) {
    auth_claims claims;
    auth_jwt_verdict verdict = verify_at(token, strlen(token), now, leeway, &claims);
    auth_claims_free(&claims);
    return verdict;
}

/* A copy of s with extra appended. */
static char *concat(const char *s, const char *extra) {
    char *out = malloc(strlen(s) + strlen(extra) + 1);
    assert_non_null(out);
    strcpy(out, s);
    strcat(out, extra);
    return out;
}

static bool sub(const auth_claims *claims, const char *topic) {
    return auth_claims_allow_subscribe(claims, topic, strlen(topic));
}

static bool pub(const auth_claims *claims, const char *topic) {
    return auth_claims_allow_publish(claims, topic, strlen(topic));
}

static void test_valid_token_and_claims(void **state) {
    auth_claims claims;
    assert_int_equal(verify_at(VALID, strlen(VALID), NOW, 0, &claims), AUTH_JWT_OK);
    assert_int_equal(claims.subscribe.count, 2);
    assert_string_equal(claims.subscribe.patterns[0], "orders/123");
    assert_string_equal(claims.subscribe.patterns[1], "chat/*");
    assert_int_equal(claims.publish.count, 1);
    assert_string_equal(claims.publish.patterns[0], "chat/*");
    assert_true(claims.expires_at == NOW + 3600);

    assert_true(sub(&claims, "orders/123"));
    assert_false(sub(&claims, "orders/124"));
    assert_false(sub(&claims, "orders/123/items"));
    assert_false(sub(&claims, "orders/*"));
    assert_true(sub(&claims, "chat/room1"));
    assert_true(sub(&claims, "chat/*"));
    assert_false(sub(&claims, "chat/**"));
    assert_false(sub(&claims, "chat"));
    assert_false(sub(&claims, "**"));
    assert_false(sub(&claims, "chat//x")); /* invalid */
    assert_false(sub(&claims, ""));

    assert_true(pub(&claims, "chat/room1"));
    assert_false(pub(&claims, "chat/*")); /* a pattern is not a topic to publish to */
    assert_false(pub(&claims, "chat/room1/x"));
    assert_false(pub(&claims, "orders/123")); /* subscribe-only */
    auth_claims_free(&claims);
    assert_null(claims.subscribe.patterns);
    auth_claims_free(&claims); /* twice is harmless */

    /* exp is exclusive: valid up to the second before */
    assert_int_equal(verify_with(VALID, NOW + 3599, 0), AUTH_JWT_OK);
    assert_int_equal(verify_with(VALID, NOW + 3600, 0), AUTH_JWT_EXPIRED);
    assert_int_equal(verify_with(VALID, NOW + 3600, 1), AUTH_JWT_OK);
    assert_int_equal(verify_with(VALID, NOW + 3600, -5), AUTH_JWT_EXPIRED); /* negative = 0 */
    assert_int_equal(verify_with(VALID, INT64_MAX, INT64_MAX), AUTH_JWT_OK);
    assert_int_equal(verify_with(VALID, INT64_MIN, INT64_MAX), AUTH_JWT_OK);
}

static void test_valid_variants(void **state) {
    auth_claims claims;
    /* {"alg":"HS256"} without typ; exp 1800000000.5 rounds up; nbf NOW-10 */
    const char *t = VALID_NO_TYP_NBF_FRACTION;
    assert_int_equal(verify_at(t, strlen(t), NOW, 0, &claims), AUTH_JWT_OK);
    assert_true(claims.expires_at == NOW + 1);
    assert_true(sub(&claims, "a/b/c"));
    assert_false(sub(&claims, "a"));
    assert_false(pub(&claims, "a/b"));
    auth_claims_free(&claims);
    assert_int_equal(verify_with(t, NOW + 1, 0), AUTH_JWT_EXPIRED);
    assert_int_equal(verify_with(t, NOW - 10, 0), AUTH_JWT_OK);
    assert_int_equal(verify_with(t, NOW - 11, 0), AUTH_JWT_NOT_YET_VALID);
    assert_int_equal(verify_with(t, NOW - 11, 1), AUTH_JWT_OK);

    /* no "herald" claim: valid, allows nothing */
    assert_int_equal(verify_at(VALID_NO_HERALD, strlen(VALID_NO_HERALD), NOW, 0, &claims),
                     AUTH_JWT_OK);
    assert_int_equal(claims.subscribe.count + claims.publish.count, 0);
    assert_false(sub(&claims, "a"));
    assert_false(pub(&claims, "a"));
    auth_claims_free(&claims);

    /* exp 10000000000 */
    assert_int_equal(verify_at(VALID_EXPONENT_EXP, strlen(VALID_EXPONENT_EXP), NOW, 0, &claims),
                     AUTH_JWT_OK);
    assert_true(claims.expires_at == INT64_C(10000000000));
    auth_claims_free(&claims);

    /* exp 1.8e9 == NOW; "orders\/1" decodes to orders/1; empty publish list */
    t = VALID_EXP_1_8E9;
    assert_int_equal(verify_with(t, NOW, 0), AUTH_JWT_EXPIRED);
    assert_int_equal(verify_at(t, strlen(t), NOW - 1, 0, &claims), AUTH_JWT_OK);
    assert_true(claims.expires_at == NOW);
    assert_int_equal(claims.subscribe.count, 1);
    assert_string_equal(claims.subscribe.patterns[0], "orders/1");
    assert_int_equal(claims.publish.count, 0);
    auth_claims_free(&claims);

    /* header with spaces and typ first; exp 1e400 saturates; unknown herald member ignored */
    t = VALID_SPACES_HUGE_EXP;
    assert_int_equal(verify_at(t, strlen(t), NOW, 0, &claims), AUTH_JWT_OK);
    assert_true(claims.expires_at == INT64_MAX);
    assert_true(sub(&claims, "x"));
    auth_claims_free(&claims);
}

static void test_wrong_algorithm(void **state) {
    assert_int_equal(verify(ALG_NONE_UNSIGNED), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_NONE_SIGNED), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_RS256), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_HS512), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_LOWER), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_MISSING), AUTH_JWT_WRONG_ALGORITHM);
    assert_int_equal(verify(ALG_NUMBER), AUTH_JWT_WRONG_ALGORITHM);
    /* header shape problems come first */
    assert_int_equal(verify(ALG_DUPLICATE), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(CRIT), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(TYP_NUMBER), AUTH_JWT_MALFORMED);
}

static void test_signature(void **state) {
    assert_int_equal(verify(BAD_SIGNATURE), AUTH_JWT_BAD_SIGNATURE);
    assert_int_equal(verify(ALTERED_PAYLOAD), AUTH_JWT_BAD_SIGNATURE);
    auth_claims claims;
    /* another secret, and an empty one */
    assert_int_equal(
        auth_verify_jwt(VALID, strlen(VALID), (const unsigned char *)"x", 1, NOW, 0, &claims),
        AUTH_JWT_BAD_SIGNATURE);
    assert_int_equal(
        auth_verify_jwt(VALID, strlen(VALID), (const unsigned char *)"", 0, NOW, 0, &claims),
        AUTH_JWT_BAD_SIGNATURE);
    assert_int_equal(auth_verify_jwt(VALID, strlen(VALID), NULL, 0, NOW, 0, &claims),
                     AUTH_JWT_BAD_SIGNATURE);
    /* the payload is not read before the signature is good */
    const unsigned char wrong[] = "another-secret-another-secret-xx";
    assert_int_equal(auth_verify_jwt(NON_OBJECT_PAYLOAD, strlen(NON_OBJECT_PAYLOAD), wrong,
                                     sizeof wrong - 1, NOW, 0, &claims),
                     AUTH_JWT_BAD_SIGNATURE);
    assert_int_equal(
        auth_verify_jwt(MISSING_EXP, strlen(MISSING_EXP), wrong, sizeof wrong - 1, NOW, 0, &claims),
        AUTH_JWT_BAD_SIGNATURE);
    assert_int_equal(
        auth_verify_jwt(EXPIRED, strlen(EXPIRED), wrong, sizeof wrong - 1, NOW, 0, &claims),
        AUTH_JWT_BAD_SIGNATURE);

    /* a signature of the wrong length (40 chars = 30 bytes), or none */
    char *token = strdup(VALID);
    assert_non_null(token);
    token[strlen(token) - 3] = '\0';
    assert_int_equal(verify(token), AUTH_JWT_BAD_SIGNATURE);
    *(strrchr(token, '.') + 1) = '\0';
    assert_int_equal(verify(token), AUTH_JWT_BAD_SIGNATURE);
    free(token);

    /* a flipped bit in the signature */
    token = strdup(VALID);
    assert_non_null(token);
    char *last = strrchr(token, '.') + 1;
    last[0] = last[0] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(token), AUTH_JWT_BAD_SIGNATURE);
    free(token);
}

static void test_time_claims(void **state) {
    assert_int_equal(verify(EXPIRED), AUTH_JWT_EXPIRED);
    assert_int_equal(verify(EXPIRED_NOW), AUTH_JWT_EXPIRED);
    assert_int_equal(verify(EXPIRED_NEGATIVE), AUTH_JWT_EXPIRED);
    assert_int_equal(verify_with(EXPIRED, NOW, 1), AUTH_JWT_EXPIRED); /* exp NOW-1 */
    assert_int_equal(verify_with(EXPIRED, NOW, 2), AUTH_JWT_OK);
    assert_int_equal(verify_with(EXPIRED, NOW - 2, 0), AUTH_JWT_OK);

    assert_int_equal(verify(NBF_FUTURE), AUTH_JWT_NOT_YET_VALID); /* nbf NOW+60 */
    assert_int_equal(verify_with(NBF_FUTURE, NOW, 59), AUTH_JWT_NOT_YET_VALID);
    assert_int_equal(verify_with(NBF_FUTURE, NOW, 60), AUTH_JWT_OK);
    assert_int_equal(verify_with(NBF_FUTURE, NOW + 60, 0), AUTH_JWT_OK);
    assert_int_equal(verify_with(NBF_FUTURE, NOW + 3600, 0), AUTH_JWT_EXPIRED);

    assert_int_equal(verify(MISSING_EXP), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(EXP_STRING), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(EXP_NULL), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(EXP_DUPLICATE), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(NBF_STRING), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(IAT_BOOL), AUTH_JWT_MALFORMED);
}

static void test_encoding(void **state) {
    /* padding, in the header (signed over the padded text) or after the signature */
    assert_int_equal(verify(PADDED_HEADER), AUTH_JWT_MALFORMED);
    char *token = concat(VALID, "=");
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);

    /* characters outside base64url: standard base64's '+' and '/', space, NUL */
    const char bad[] = {'+', '/', ' ', '\0', '\n', '~', (char)0xC3};
    for (size_t i = 0; i < sizeof bad; i++) {
        for (size_t where = 0; where < 3; where++) {
            token = strdup(VALID);
            assert_non_null(token);
            size_t length = strlen(token);
            char *second = strrchr(token, '.');
            size_t at = where == 0 ? 3 : where == 1 ? (size_t)(second - token) - 3 : length - 5;
            token[at] = bad[i];
            auth_claims claims;
            assert_int_equal(verify_at(token, length, NOW, 0, &claims), AUTH_JWT_MALFORMED);
            free(token);
        }
    }

    /* non-canonical: the unused low bits of the signature's last character set */
    token = strdup(VALID);
    assert_non_null(token);
    char *last = token + strlen(token) - 1;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t value = (size_t)(strchr(alphabet, *last) - alphabet);
    assert_int_equal(value & 3, 0);
    *last = alphabet[value | 1];
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);

    /* a header segment of 4k+1 characters cannot be base64url */
    assert_int_equal(verify("eyJhb." HS256_HEADER ".AAAA"), AUTH_JWT_MALFORMED);
}

static void test_segments(void **state) {
    char *token = concat(VALID, ".e30");
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);
    token = concat(VALID, ".");
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);
    /* five segments (JWE shape) */
    assert_int_equal(verify(HS256_HEADER ".e30.e30.e30.e30"), AUTH_JWT_MALFORMED);

    assert_int_equal(verify(""), AUTH_JWT_MALFORMED);
    assert_int_equal(verify("."), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(".."), AUTH_JWT_MALFORMED);
    assert_int_equal(verify("..."), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HS256_HEADER), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HS256_HEADER "."), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HS256_HEADER ".e30"), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(".e30.AAAA"), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HS256_HEADER "..AAAA"), AUTH_JWT_MALFORMED);
    /* HS256 header, payload, empty signature: an unsigned token */
    assert_int_equal(verify(HS256_HEADER ".e30."), AUTH_JWT_BAD_SIGNATURE);

    auth_claims claims;
    assert_int_equal(
        auth_verify_jwt(NULL, 0, (const unsigned char *)SECRET, strlen(SECRET), NOW, 0, &claims),
        AUTH_JWT_MALFORMED);
    /* length governs, not NUL: the valid token cut short */
    assert_int_equal(verify_at(VALID, strlen(VALID) - 3, NOW, 0, &claims), AUTH_JWT_BAD_SIGNATURE);
}

static void test_size_limit(void **state) {
    char *token = big_token(1967, BIG_OK_SIGNATURE);
    assert_int_equal(strlen(token), 7988);
    assert_int_equal(verify(token), AUTH_JWT_OK);
    free(token);

    token = big_token(2100, BIG_TOO_LONG_SIGNATURE);
    assert_int_equal(strlen(token), 8520);
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);

    size_t length = AUTH_JWT_MAX_LENGTH + 1;
    token = malloc(length + 1);
    assert_non_null(token);
    memset(token, 'a', length);
    token[length] = '\0';
    token[100] = token[200] = '.';
    assert_int_equal(verify(token), AUTH_JWT_MALFORMED);
    free(token);
}

static void test_json_shape(void **state) {
    assert_int_equal(verify(NON_OBJECT_HEADER), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(STRING_HEADER), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(INVALID_JSON_HEADER), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(NON_OBJECT_PAYLOAD), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(INVALID_UTF8_PAYLOAD), AUTH_JWT_MALFORMED);
}

static void test_claim_patterns(void **state) {
    assert_int_equal(verify(BAD_PATTERN), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(BAD_PATTERN_PUBLISH), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(PATTERN_NOT_STRING), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(SUBSCRIBE_NOT_ARRAY), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HERALD_NOT_OBJECT), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(HERALD_NULL), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(SUBSCRIBE_DUPLICATE), AUTH_JWT_MALFORMED);
    assert_int_equal(verify(EMPTY_PATTERN), AUTH_JWT_MALFORMED);

    /* claims functions on empty claims */
    auth_claims claims;
    auth_claims_init(&claims);
    assert_false(sub(&claims, "a"));
    assert_false(pub(&claims, "a"));
    assert_false(auth_claims_allow_subscribe(NULL, "a", 1));
    assert_false(auth_claims_allow_publish(NULL, "a", 1));
}

static void test_verdict_texts(void **state) {
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_OK), "ok");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_MALFORMED), "malformed");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_WRONG_ALGORITHM), "wrong_algorithm");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_EXPIRED), "expired");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_NOT_YET_VALID), "not_yet_valid");
    assert_string_equal(auth_jwt_verdict_name(AUTH_JWT_NO_MEMORY), "no_memory");
    for (int v = AUTH_JWT_OK; v <= AUTH_JWT_NO_MEMORY; v++) {
        const char *message = auth_jwt_verdict_message((auth_jwt_verdict)v);
        assert_true(strlen(message) > 10);
        assert_int_equal(message[strlen(message) - 1], '.');
    }
}

/* ---- subsumption --------------------------------------------------------------------------- */

static bool covers(const char *claim, const char *requested) {
    return auth_pattern_covers(claim, strlen(claim), requested, strlen(requested));
}

static void test_subsumption_table(void **state) {
    static const struct {
        const char *claim, *requested;
        bool expected;
    } table[] = {
        {"orders/**", "orders/*", true},
        {"orders/*", "orders/**", false},
        {"orders/1", "orders/*", false},
        {"orders/*", "orders/1", true},
        {"orders/1", "orders/1", true},
        {"orders/1", "orders/2", false},
        {"orders", "Orders", false},
        {"orders/**", "orders/1/items", true},
        {"orders/**", "orders/*/items", true},
        {"orders/**", "orders/**", true},
        {"orders/**", "orders", false},
        {"orders/*", "orders", false},
        {"orders/*", "orders/1/items", false},
        {"orders/**", "orders2/1", false},
        {"**", "anything/at/all", true},
        {"**", "**", true},
        {"**", "*/**", true},
        {"**", "*", true},
        {"*/**", "**", false},
        {"*/**", "*/*", true},
        {"*", "**", false},
        {"*", "*", true},
        {"*", "a", true},
        {"*", "a/b", false},
        {"a/*/c", "a/*/c", true},
        {"a/*/c", "a/b/c", true},
        {"a/b/c", "a/*/c", false},
        {"a/*/c", "*/b/c", false},
        {"*/*/c", "a/*/c", true},
        {"a/**", "a/*/**", true},
        {"a/*/**", "a/**", false},
        {"a/*/**", "a/b/**", true},
        {"a/*/**", "a/b", false},
        {"a/*/**", "a/b/c", true},
        {"a/**", "b/**", false},
        {"a/*", "a/**", false},
        {"a/b", "a/b/**", false},
        /* invalid on either side: never */
        {"orders/", "orders/1", false},
        {"orders/1", "orders//1", false},
        {"**/a", "x/a", false},
        {"a/**/b", "a/x/b", false},
        {"", "a", false},
        {"a", "", false},
        {"a b", "a b", false},
        {"***", "a", false},
        {"a*", "a*", false},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (covers(table[i].claim, table[i].requested) != table[i].expected)
            fail_msg("covers(\"%s\", \"%s\") should be %s", table[i].claim, table[i].requested,
                     table[i].expected ? "true" : "false");
    }
    assert_false(auth_pattern_covers(NULL, 0, "a", 1));
    assert_false(auth_pattern_covers("a", 1, NULL, 0));
}

/* Every pattern of 1-3 segments over {a, b, *, final **} against every other, compared with the
 * definition over every topic of 1-4 segments over {a, b, c} ('c' stands for any name the patterns
 * do not spell; 4 segments is one more than the longest pattern, enough for a counterexample). */
#define MAX_ITEMS 128

static size_t build(const char *const *alphabet, size_t alphabet_size, bool double_star_last,
                    size_t max_segments, char items[][16]) {
    size_t count = 0;
    for (size_t segments = 1; segments <= max_segments; segments++) {
        size_t total = 1;
        for (size_t s = 0; s < segments; s++)
            total *= alphabet_size + (s == segments - 1 && double_star_last ? 1 : 0);
        for (size_t n = 0; n < total; n++) {
            size_t rest = n;
            char *p = items[count];
            p[0] = '\0';
            for (size_t s = 0; s < segments; s++) {
                size_t base = alphabet_size + (s == segments - 1 && double_star_last ? 1 : 0);
                size_t digit = rest % base;
                rest /= base;
                if (s) strcat(p, "/");
                strcat(p, digit == alphabet_size ? "**" : alphabet[digit]);
            }
            count++;
        }
    }
    return count;
}

static void test_subsumption_exhaustive(void **state) {
    static const char *const pattern_segments[] = {"a", "b", "*"};
    static const char *const topic_segments[] = {"a", "b", "c"};
    static char patterns[MAX_ITEMS][16], topics[MAX_ITEMS][16];
    size_t pattern_count = build(pattern_segments, 3, true, 3, patterns);
    size_t topic_count = build(topic_segments, 3, false, 4, topics);
    assert_int_equal(pattern_count, 4 + 12 + 36);
    assert_int_equal(topic_count, 3 + 9 + 27 + 81);
    size_t covered = 0;
    for (size_t c = 0; c < pattern_count; c++) {
        assert_true(topic_pattern_valid(patterns[c], strlen(patterns[c])));
        for (size_t r = 0; r < pattern_count; r++) {
            bool expected = true;
            for (size_t t = 0; t < topic_count && expected; t++) {
                const char *topic = topics[t];
                if (topic_pattern_matches(patterns[r], strlen(patterns[r]), topic, strlen(topic)) &&
                    !topic_pattern_matches(patterns[c], strlen(patterns[c]), topic, strlen(topic)))
                    expected = false;
            }
            if (covers(patterns[c], patterns[r]) != expected)
                fail_msg("covers(\"%s\", \"%s\") should be %s", patterns[c], patterns[r],
                         expected ? "true" : "false");
            covered += expected;
        }
        /* a plain topic: subsumption is matching */
        for (size_t t = 0; t < topic_count; t++)
            assert_int_equal(covers(patterns[c], topics[t]),
                             topic_pattern_matches(patterns[c], strlen(patterns[c]), topics[t],
                                                   strlen(topics[t])));
    }
    assert_true(covered > pattern_count); /* reflexive, and more */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token_and_claims),
        cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_wrong_algorithm),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_time_claims),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_claim_patterns),
        cmocka_unit_test(test_verdict_texts),
        cmocka_unit_test(test_subsumption_table),
        cmocka_unit_test(test_subsumption_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

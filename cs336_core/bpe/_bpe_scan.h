/* GPT-2's pre-tokenization over UTF-8 bytes, shared by the C encoder and the C trainer.
 *
 * The pattern, from cs336_core/bpe/pretokenize.py:
 *     '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * is matched by hand: at a pre-token start, the alternatives are tried in order, and each is a run
 * of one character class (letter, number, whitespace, other), optionally after one space. The
 * classes come from _unicode_classes.h, generated from the `regex` module that runs the pattern in
 * the pure-Python path, and checked against it over every code point (tests/test_fastbpe_native.py).
 *
 * Everything here expects valid UTF-8 (utf8_valid_length checks it first, as Python's strict
 * decoder does), and the text between two special tokens (special_find splits on those).
 */
#ifndef CS336_BPE_SCAN_H
#define CS336_BPE_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_unicode_classes.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { CLS_OTHER = 0, CLS_LETTER = 1, CLS_DIGIT = 2, CLS_SPACE = 3 };

static unsigned char scan_ascii_class[128];

static void scan_init(void) {
    for (int c = 0; c < 128; c++)
        scan_ascii_class[c] = unicode_class_blocks[unicode_class_stage1[0]][c];
}

static inline unsigned code_point_class(uint32_t cp) {
    if (cp > 0x10FFFF) return CLS_OTHER;
    return unicode_class_blocks[unicode_class_stage1[cp / UNICODE_CLASSES_BLOCK]][cp % UNICODE_CLASSES_BLOCK];
}

/* The class of the character at s[p] (valid UTF-8, p < n); *len gets its length in bytes. */
static inline unsigned class_at(const uint8_t *s, size_t p, size_t *len) {
    const uint8_t c = s[p];
    if (c < 0x80) {
        *len = 1;
        return scan_ascii_class[c];
    }
    uint32_t cp;
    if (c < 0xE0) {
        cp = (uint32_t)(c & 0x1F) << 6 | (s[p + 1] & 0x3F);
        *len = 2;
    } else if (c < 0xF0) {
        cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[p + 1] & 0x3F) << 6 | (s[p + 2] & 0x3F);
        *len = 3;
    } else {
        cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[p + 1] & 0x3F) << 12 | (uint32_t)(s[p + 2] & 0x3F) << 6 |
             (s[p + 3] & 0x3F);
        *len = 4;
    }
    return code_point_class(cp);
}

/* The end of the pre-token that starts at s[p] (p < n) in valid UTF-8 text s[0..n). */
static inline size_t pretoken_end(const uint8_t *s, size_t n, size_t p) {
    const uint8_t c = s[p];
    if (c == '\'' && p + 1 < n) {  /* '(?:[sdmt]|ll|ve|re): literal, so it wins before any class */
        const uint8_t c1 = s[p + 1];
        if (c1 == 's' || c1 == 'd' || c1 == 'm' || c1 == 't') return p + 2;
        if (p + 2 < n) {
            const uint8_t c2 = s[p + 2];
            if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) return p + 3;
        }
    }
    size_t len;
    unsigned cls = class_at(s, p, &len);
    size_t q = p + len;
    if (c == ' ' && q < n) {  /* ` ?X+`: a space leads the run of letters, numbers or others after it */
        size_t len1;
        const unsigned cls1 = class_at(s, q, &len1);
        if (cls1 != CLS_SPACE) {
            cls = cls1;
            q += len1;
        }
    }
    if (cls != CLS_SPACE) {
        while (q < n) {
#if defined(__SSE2__)
            /* Runs of ASCII letters or digits sixteen bytes at a time: one compare and a count of
               trailing ones instead of a branch a byte (a word's end is unpredictable). */
            if (q + 16 <= n && cls != CLS_OTHER) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(s + q));
                __m128i in;
                if (cls == CLS_LETTER) {  /* | 0x20 folds A-Z onto a-z; bytes >= 0x80 stay negative */
                    const __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
                    in = _mm_and_si128(_mm_cmpgt_epi8(folded, _mm_set1_epi8('a' - 1)),
                                       _mm_cmplt_epi8(folded, _mm_set1_epi8('z' + 1)));
                } else {
                    in = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)), _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
                }
                const unsigned outside = ~(unsigned)_mm_movemask_epi8(in) & 0xFFFF;
                if (outside == 0) {
                    q += 16;
                    continue;
                }
                q += (size_t)__builtin_ctz(outside);  /* the first byte that is not an ASCII member */
                if (s[q] < 0x80) break;
                if (class_at(s, q, &len) != cls) break;  /* a non-ASCII letter or digit continues it */
                q += len;
                continue;
            }
#endif
            const uint8_t d = s[q];
            if (d < 0x80) {  /* one table lookup a byte */
                if (scan_ascii_class[d] != cls) break;
                q++;
            } else {
                if (class_at(s, q, &len) != cls) break;
                q += len;
            }
        }
        return q;
    }
    /* Whitespace: `\s+(?!\S)` ends the run one character early when a non-space follows, so that
       character's pre-token can take the last space; a single whitespace character is `\s+`. */
    size_t last = p;  /* where the run's last character starts */
    while (q < n) {
        if (class_at(s, q, &len) != CLS_SPACE) break;
        last = q;
        q += len;
    }
    if (q == n) return q;
    return last > p ? last : q;
}

/* The length of the longest prefix of s[0..n) that is valid UTF-8 by Python's strict decoder
   (no overlong forms, no surrogates, nothing above U+10FFFF): n when all of it is. */
static size_t utf8_valid_length(const uint8_t *s, size_t n) {
    size_t p = 0;
    while (p < n) {
        /* Eight ASCII bytes at a time. */
        while (p + 8 <= n) {
            uint64_t word;
            memcpy(&word, s + p, 8);
            if (word & 0x8080808080808080ULL) break;
            p += 8;
        }
        if (p >= n) break;
        const uint8_t c = s[p];
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;  /* the allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;       /* overlong */
            else if (c == 0xED) hi = 0x9F;  /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;       /* overlong */
            else if (c == 0xF4) hi = 0x8F;  /* above U+10FFFF */
        } else return p;
        if (p + need >= n) return p;  /* truncated */
        if (s[p + 1] < lo || s[p + 1] > hi) return p;
        for (size_t k = 2; k <= need; k++)
            if ((s[p + k] & 0xC0) != 0x80) return p;
        p += need + 1;
    }
    return n;
}

/* The special tokens, as UTF-8 byte strings, and where each occurs next. */
typedef struct {
    size_t count;
    const uint8_t **bytes;
    size_t *lengths;
    size_t *next;   /* the next occurrence at or after the last search start; SIZE_MAX: none left,
                       SPECIAL_UNKNOWN: not searched yet */
} Specials;

static const uint8_t *find_bytes(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m) {
    if (m == 0 || m > n) return NULL;
    const uint8_t first = needle[0];
    const uint8_t *end = hay + n - m + 1;
    for (const uint8_t *p = hay; p < end;) {
        p = memchr(p, first, (size_t)(end - p));
        if (p == NULL) return NULL;
        if (memcmp(p, needle, m) == 0) return p;
        p++;
    }
    return NULL;
}

#define SPECIAL_UNKNOWN (SIZE_MAX - 1)

/* Reset before scanning a new text. */
static void specials_reset(Specials *sp) {
    for (size_t i = 0; i < sp->count; i++) sp->next[i] = SPECIAL_UNKNOWN;
}

/* The first special token at or after `from` in s[0..n), as regex's alternation of the tokens
   longest first finds it: the leftmost start, and there the longest token. Returns its start
   (n when none) and sets *len. `from` must not decrease between calls after specials_reset. */
static size_t special_find(Specials *sp, const uint8_t *s, size_t n, size_t from, size_t *len) {
    size_t best = n, best_len = 0;
    for (size_t i = 0; i < sp->count; i++) {
        if (sp->next[i] == SIZE_MAX) continue;
        if (sp->next[i] == SPECIAL_UNKNOWN || sp->next[i] < from) {
            const uint8_t *hit = find_bytes(s + from, n - from, sp->bytes[i], sp->lengths[i]);
            sp->next[i] = hit == NULL ? SIZE_MAX : (size_t)(hit - s);
            if (hit == NULL) continue;
        }
        if (sp->next[i] < best || (sp->next[i] == best && sp->lengths[i] > best_len)) {
            best = sp->next[i];
            best_len = sp->lengths[i];
        }
    }
    *len = best_len;
    return best;
}

/* The first bytes (< 8) of p, zero-padded, in a few loads and never past p[m - 1]. */
static inline uint64_t load_partial(const uint8_t *p, size_t m) {
    if (m >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + m - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << (8 * (m - 4));  /* the overlap holds equal bytes */
    }
    if (m == 0) return 0;
    return (uint64_t)p[0] | (uint64_t)p[m / 2] << (8 * (m / 2)) | (uint64_t)p[m - 1] << (8 * (m - 1));
}

/* A pre-token as the tables of both modules key it: its first 16 bytes (zero-padded) as two words,
   which decide equality alone for pre-tokens of 16 bytes or fewer, and a hash of all its bytes. */
typedef struct {
    uint64_t w0, w1, hash;
} Key;

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

static inline uint64_t key_hash_short(uint64_t w0, uint64_t w1, size_t n) {
    uint64_t h = (w0 ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (h >> 29) ^ w1) * 0xC2B2AE3D27D4EB4FULL;
    return h ^ (h >> 32);
}

/* make_key for a pre-token of at most 16 bytes with 16 bytes readable at s: two loads and masks,
   no branch on the length (word lengths are unpredictable). */
static inline Key make_key_padded(const uint8_t *s, size_t n) {
    Key k;
    uint64_t w0, w1;
    memcpy(&w0, s, 8);
    memcpy(&w1, s + 8, 8);
    const size_t n0 = n < 8 ? n : 8, n1 = n - n0;
    k.w0 = w0 & (n0 == 8 ? ~0ULL : (1ULL << (8 * n0)) - 1);
    k.w1 = w1 & (n1 == 8 ? ~0ULL : (1ULL << (8 * n1)) - 1);
    k.hash = key_hash_short(k.w0, k.w1, n);
    return k;
}

static inline Key make_key(const uint8_t *s, size_t n) {
    Key k;
    if (n >= 16) {
        memcpy(&k.w0, s, 8);
        memcpy(&k.w1, s + 8, 8);
    } else if (n >= 8) {
        memcpy(&k.w0, s, 8);
        k.w1 = load_partial(s + 8, n - 8);
    } else {
        k.w0 = load_partial(s, n);
        k.w1 = 0;
    }
    /* Two multiplies for a short pre-token (most are), then a word at a time for the rest. */
    uint64_t h = key_hash_short(k.w0, k.w1, n);
    for (size_t p = 16; p < n; p += 8) {  /* the rest of a long pre-token */
        uint64_t w;
        if (p + 8 <= n) memcpy(&w, s + p, 8);
        else w = load_partial(s + p, n - p);
        h = mix64((h ^ w) * 0xFF51AFD7ED558CCDULL);
    }
    k.hash = h;
    return k;
}

#endif

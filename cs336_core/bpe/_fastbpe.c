/* Optional C accelerator of Tokenizer.encode (cs336_core/bpe/tokenizer.py is the reference).
 *
 * A Merger holds a tokenizer's merge ranks, its special tokens and a cache of encoded pre-tokens.
 * Merger.encode(text) does all of Tokenizer.encode in C, without the GIL: the text (as UTF-8) is
 * split on the special tokens, the rest into GPT-2 pre-tokens (_bpe_scan.h, the pattern matched by
 * hand with Unicode classes generated from the `regex` module), and each pre-token's ids come from
 * the cache or from BPE (the algorithm of Tokenizer._bpe / _bpe_long; keep them in step). The ids
 * become a list of shared int objects, or packed bytes for encode_file.
 *
 * One Merger serves one thread at a time (its cache changes); encode_file gives each thread its own.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_bpe_scan.h"

typedef struct {
    uint64_t key;       /* (left << 32 | right) + 1; 0 marks an empty slot */
    uint32_t rank;
} RankSlot;

/* A cached pre-token, inline in the open-addressing table so that a hit reads one cache line. */
typedef struct {
    uint64_t w0, w1;     /* its first 16 bytes, zero-padded (Key) */
    uint32_t length;     /* in bytes; 0: an empty slot (a pre-token is never empty) */
    uint32_t num_ids;
    uint32_t ids;        /* the id itself when num_ids is 1, else where its ids start in id_arena */
    uint32_t entry;      /* its index in `entries` */
} CacheSlot;

typedef struct {
    uint64_t w0;      /* the pre-token's bytes, zero-padded */
    uint32_t length;  /* 0: empty */
    uint32_t id;
} HotSlot;

/* What a slot lacks: the hash (to grow the table) and where all the bytes are (beyond 16). */
typedef struct {
    uint64_t hash;
    uint64_t key_offset;  /* in key_arena */
} CacheEntry;

typedef struct {
    uint32_t *items;
    size_t size, capacity;
} IdBuffer;

typedef struct {
    PyObject_HEAD
    uint32_t byte_ids[256];
    uint32_t *byte_pair_rank;  /* [first byte << 8 | second byte]: every pre-token starts as bytes */
    uint32_t *merged_id_of_rank;
    Py_ssize_t num_ranks;
    RankSlot *slots;
    size_t mask;        /* rank table size - 1 (a power of two) */
    /* special tokens: owned copies of their bytes, and their ids */
    Specials specials;
    uint8_t *special_bytes;
    uint32_t *special_ids;
    /* an int object for every id, shared by the lists that encode returns */
    PyObject **id_objects;
    uint32_t num_id_objects;
    /* the cache of encoded pre-tokens, emptied when it reaches cache_limit entries */
    CacheEntry *entries;
    size_t cache_size, cache_capacity, cache_limit;
    CacheSlot *cache_slots;
    size_t cache_mask;
    HotSlot *hot;  /* recent one-id pre-tokens of 8 bytes or fewer (most of text), direct-mapped:
                      256 KB stay in the CPU's cache, while the whole table (megabytes) misses there */
    uint8_t *key_arena;
    size_t key_size, key_capacity;
    IdBuffer id_arena;
    int busy;  /* an encode is running without the GIL */
} MergerObject;

static inline size_t slot_of(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 17) & mask;
}

/* Rank of the pair (a, b), or `no_merge` if it is not a merge. */
static inline uint32_t pair_rank(const MergerObject *m, uint32_t a, uint32_t b, uint32_t no_merge) {
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    for (size_t i = slot_of(key, m->mask);; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key) return m->slots[i].rank;
        if (m->slots[i].key == 0) return no_merge;
    }
}

static int read_u32(PyObject *obj, uint32_t *value, const char *what) {
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (v >= UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s %llu does not fit in 32 bits", what, v);
        return -1;
    }
    *value = (uint32_t)v;
    return 0;
}

static int ids_reserve(IdBuffer *buffer, size_t more) {
    if (buffer->size + more <= buffer->capacity) return 0;
    size_t capacity = buffer->capacity ? buffer->capacity * 2 : 1 << 12;
    while (capacity < buffer->size + more) capacity *= 2;
    uint32_t *items = realloc(buffer->items, sizeof(uint32_t) * capacity);
    if (items == NULL) return -1;
    buffer->items = items;
    buffer->capacity = capacity;
    return 0;
}

static void cache_free(MergerObject *m) {
    free(m->hot);
    m->hot = NULL;
    free(m->entries);
    free(m->cache_slots);
    free(m->key_arena);
    free(m->id_arena.items);
    m->entries = NULL;
    m->cache_slots = NULL;
    m->key_arena = NULL;
    m->id_arena = (IdBuffer){NULL, 0, 0};
    m->cache_size = m->cache_capacity = m->cache_mask = m->key_size = m->key_capacity = 0;
}

static void merger_free_tables(MergerObject *m) {
    cache_free(m);
    for (uint32_t i = 0; i < m->num_id_objects; i++) Py_XDECREF(m->id_objects[i]);
    PyMem_Free(m->id_objects);
    PyMem_Free(m->slots);
    PyMem_Free(m->byte_pair_rank);
    PyMem_Free(m->merged_id_of_rank);
    PyMem_Free(m->special_bytes);
    PyMem_Free(m->special_ids);
    PyMem_Free(m->specials.bytes);
    PyMem_Free(m->specials.lengths);
    PyMem_Free(m->specials.next);
    m->id_objects = NULL;
    m->num_id_objects = 0;
    m->slots = NULL;
    m->byte_pair_rank = NULL;
    m->merged_id_of_rank = NULL;
    m->special_bytes = NULL;
    m->special_ids = NULL;
    m->specials = (Specials){0, NULL, NULL, NULL};
}

static void Merger_dealloc(MergerObject *self) {
    merger_free_tables(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---------------------------------------------------------------------------------------------
 * BPE of one pre-token (no GIL needed: plain malloc, errors returned as -1)
 */

/* A binary min-heap of uint64 entries `rank << 32 | position`: the lowest rank first, and for one
   rank the leftmost position first. */
typedef struct {
    uint64_t *items;
    size_t size, capacity;
} Heap;

static int heap_push(Heap *heap, uint64_t item) {
    if (heap->size == heap->capacity) {
        size_t capacity = heap->capacity * 2;
        uint64_t *items = realloc(heap->items, sizeof(uint64_t) * capacity);
        if (items == NULL) return -1;
        heap->items = items;
        heap->capacity = capacity;
    }
    size_t i = heap->size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap->items[parent] <= item) break;
        heap->items[i] = heap->items[parent];
        i = parent;
    }
    heap->items[i] = item;
    return 0;
}

static void heap_pop(Heap *heap) {
    uint64_t item = heap->items[--heap->size];
    size_t i = 0, size = heap->size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= size) break;
        if (child + 1 < size && heap->items[child + 1] < heap->items[child]) child++;
        if (heap->items[child] >= item) break;
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (size > 0) heap->items[i] = item;
}

#define DEAD UINT32_MAX  /* the symbol of a position merged into its left neighbour */

/* BPE of a long pre-token into out[] (room for len ids), in O(n log n) instead of O(n) a merge
   step: Tokenizer._bpe_long in C. The symbols are a linked list over their original positions; the
   heap holds `rank << 32 | position` for each ranked pair as it appears, and an entry whose pair
   has changed since is skipped. All entries of the lowest rank come off together and are merged in
   position order, so the pairs those merges make wait for the next round. Returns the number of
   ids, or -1 when out of memory. */
static Py_ssize_t bpe_long(const MergerObject *m, const uint8_t *word, size_t len, uint32_t *out) {
    if ((uint64_t)len >= UINT32_MAX) return -1;
    const uint32_t n = (uint32_t)len, no_merge = (uint32_t)m->num_ranks;
    Py_ssize_t result = -1;
    uint32_t *symbols = malloc(sizeof(uint32_t) * n), *prev = malloc(sizeof(uint32_t) * n);
    uint32_t *next = malloc(sizeof(uint32_t) * n), *positions = malloc(sizeof(uint32_t) * n);
    Heap heap = {malloc(sizeof(uint64_t) * n), 0, n};
    if (symbols == NULL || prev == NULL || next == NULL || positions == NULL || heap.items == NULL) goto done;
    for (uint32_t i = 0; i < n; i++) {
        symbols[i] = m->byte_ids[word[i]];
        prev[i] = i - 1;  /* DEAD (UINT32_MAX) for the first: no previous symbol */
        next[i] = i + 1;  /* n: no next symbol */
    }
    for (uint32_t i = 0; i + 1 < n; i++) {
        uint32_t rank = pair_rank(m, symbols[i], symbols[i + 1], no_merge);
        if (rank != no_merge && heap_push(&heap, (uint64_t)rank << 32 | i) < 0) goto done;
    }
    while (heap.size > 0) {
        const uint32_t rank = (uint32_t)(heap.items[0] >> 32);
        /* One entry a position at most for one rank (a pair never comes back at a position, its
           tokens only grow), so `positions` has room; the bound keeps odd tables memory-safe. */
        uint32_t count = 0;
        while (heap.size > 0 && count < n && (uint32_t)(heap.items[0] >> 32) == rank) {
            positions[count++] = (uint32_t)heap.items[0];
            heap_pop(&heap);
        }
        const uint32_t merged = m->merged_id_of_rank[rank];
        for (uint32_t c = 0; c < count; c++) {
            const uint32_t i = positions[c], j = next[i];
            if (symbols[i] == DEAD || j == n || pair_rank(m, symbols[i], symbols[j], no_merge) != rank) continue;
            const uint32_t k = next[j];
            symbols[i] = merged;
            symbols[j] = DEAD;
            next[i] = k;
            if (k != n) {
                prev[k] = i;
                uint32_t right = pair_rank(m, merged, symbols[k], no_merge);
                if (right != no_merge && heap_push(&heap, (uint64_t)right << 32 | i) < 0) goto done;
            }
            const uint32_t h = prev[i];
            if (h != DEAD) {
                uint32_t left = pair_rank(m, symbols[h], merged, no_merge);
                if (left != no_merge && heap_push(&heap, (uint64_t)left << 32 | h) < 0) goto done;
            }
        }
    }
    result = 0;  /* position 0 is never merged away: walk the survivors */
    for (uint32_t i = 0; i != n; i = next[i]) out[result++] = symbols[i];
done:
    free(symbols);
    free(prev);
    free(next);
    free(positions);
    free(heap.items);
    return result;
}

/* Pre-tokens longer than this many bytes take bpe_long. */
#define LONG_PRETOKEN_BYTES 64

/* BPE of the UTF-8 bytes word[0..len) into out[] (room for len ids): repeatedly the lowest merge
   rank among adjacent pairs; if that pair occurs more than once, all its non-overlapping
   occurrences left to right, else the one. Returns the number of ids, or -1 when out of memory. */
static Py_ssize_t bpe(const MergerObject *m, const uint8_t *word, size_t len, uint32_t *out) {
    if (len > LONG_PRETOKEN_BYTES) return bpe_long(m, word, len, out);
    uint32_t ids[LONG_PRETOKEN_BYTES], ranks[LONG_PRETOKEN_BYTES];
    const uint32_t no_merge = (uint32_t)m->num_ranks;
    Py_ssize_t n = (Py_ssize_t)len;
    for (Py_ssize_t i = 0; i < n; i++) ids[i] = m->byte_ids[word[i]];
    for (Py_ssize_t i = 0; i + 1 < n; i++) ranks[i] = m->byte_pair_rank[(uint32_t)word[i] << 8 | word[i + 1]];
    while (n > 1) {  /* ranks[i], i < n - 1: the rank of (ids[i], ids[i + 1]) */
        uint32_t best = no_merge;
        Py_ssize_t first = -1, occurrences = 0;
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            if (ranks[i] < best) {
                best = ranks[i];
                first = i;
                occurrences = 1;
            } else if (ranks[i] == best) {
                occurrences++;
            }
        }
        if (best == no_merge) break;
        const uint32_t merged = m->merged_id_of_rank[best];
        if (occurrences > 1) {  /* ranks are unique per pair: this pair occurs again */
            const uint32_t a = ids[first], b = ids[first + 1];
            Py_ssize_t w = 0;
            for (Py_ssize_t r = 0; r < n;) {
                if (r + 1 < n && ids[r] == a && ids[r + 1] == b) {
                    ids[w++] = merged;
                    r += 2;
                } else {
                    ids[w++] = ids[r++];
                }
            }
            n = w;
            for (Py_ssize_t i = 0; i + 1 < n; i++) ranks[i] = pair_rank(m, ids[i], ids[i + 1], no_merge);
            continue;
        }
        ids[first] = merged;
        memmove(ids + first + 1, ids + first + 2, sizeof(uint32_t) * (size_t)(n - first - 2));
        memmove(ranks + first, ranks + first + 1, sizeof(uint32_t) * (size_t)(n - first - 2));
        n--;
        if (first > 0) ranks[first - 1] = pair_rank(m, ids[first - 1], merged, no_merge);
        if (first + 1 < n) ranks[first] = pair_rank(m, merged, ids[first + 1], no_merge);
    }
    memcpy(out, ids, sizeof(uint32_t) * (size_t)n);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * The cache and the encoding loop (no GIL)
 */

#define HOT_BITS 14

static inline HotSlot *hot_slot(const MergerObject *m, uint64_t w0, size_t n) {
    return &m->hot[((w0 ^ n) * 0x9E3779B97F4A7C15ULL) >> (64 - HOT_BITS)];
}

static int cache_reset(MergerObject *m) {
    size_t slots = 1 << 17;  /* (calloc'd: pages a small text never touches cost nothing) */
    free(m->hot);
    m->hot = calloc((size_t)1 << HOT_BITS, sizeof(HotSlot));
    if (m->hot == NULL) return -1;
    free(m->cache_slots);
    m->cache_slots = calloc(slots, sizeof(CacheSlot));
    m->cache_mask = slots - 1;
    m->cache_size = 0;
    m->key_size = 0;
    m->id_arena.size = 0;
    if (m->entries == NULL) {
        m->cache_capacity = 1 << 14;
        m->entries = malloc(sizeof(CacheEntry) * m->cache_capacity);
    }
    return m->cache_slots != NULL && m->entries != NULL ? 0 : -1;
}

static int cache_grow_slots(MergerObject *m) {
    const size_t old_size = m->cache_mask + 1, size = old_size * 2;
    CacheSlot *slots = calloc(size, sizeof(CacheSlot));
    if (slots == NULL) return -1;
    for (size_t o = 0; o < old_size; o++) {
        const CacheSlot *slot = &m->cache_slots[o];
        if (slot->length == 0) continue;
        size_t i = (size_t)m->entries[slot->entry].hash & (size - 1);
        while (slots[i].length != 0) i = (i + 1) & (size - 1);
        slots[i] = *slot;
    }
    free(m->cache_slots);
    m->cache_slots = slots;
    m->cache_mask = size - 1;
    return 0;
}

/* Pre-tokens longer than this are encoded every time rather than cached (a line of base64 would
   fill memory); the id arena is emptied with the cache when it passes CACHE_MAX_IDS. */
#define CACHE_MAX_BYTES 4096
#define CACHE_MAX_IDS ((size_t)1 << 28)

/* Append the ids of the pre-token s[0..n) to `out`, from the cache or by BPE (then cached);
   the text's bytes end at `end`. `out` has room for n more ids (a token is at least a byte). */
static inline int append_cached(const MergerObject *m, const CacheSlot *c, IdBuffer *out) {
    if (c->num_ids == 1) {
        out->items[out->size++] = c->ids;
    } else {
        memcpy(out->items + out->size, m->id_arena.items + c->ids, sizeof(uint32_t) * c->num_ids);
        out->size += c->num_ids;
    }
    return 0;
}

static int encode_pretoken(MergerObject *m, const uint8_t *s, size_t n, const uint8_t *end, IdBuffer *out) {
    HotSlot *hot = NULL;
    Key key;
    if (n <= 8 && end - s >= 8) {  /* the hot table first: one load, one multiply */
        uint64_t w;
        memcpy(&w, s, 8);
        w &= n == 8 ? ~0ULL : (1ULL << (8 * n)) - 1;
        hot = hot_slot(m, w, n);
        if (hot->w0 == w && hot->length == n) {
            out->items[out->size++] = hot->id;
            return 0;
        }
        key = (Key){w, 0, key_hash_short(w, 0, n)};  /* make_key's, from the word already loaded */
    } else {
        key = (n <= 16 && end - s >= 16) ? make_key_padded(s, n) : make_key(s, n);
    }
    size_t i = (size_t)key.hash & m->cache_mask;
    for (;;) {
        const CacheSlot *c = &m->cache_slots[i];
        if (c->length == 0) break;
        if (c->length == n && c->w0 == key.w0 && c->w1 == key.w1 &&
            (n <= 16 || memcmp(m->key_arena + m->entries[c->entry].key_offset + 16, s + 16, n - 16) == 0)) {
            if (hot != NULL && c->num_ids == 1) *hot = (HotSlot){key.w0, (uint32_t)n, c->ids};
            return append_cached(m, c, out);
        }
        i = (i + 1) & m->cache_mask;
    }
    const Py_ssize_t num_ids = bpe(m, s, n, out->items + out->size);
    if (num_ids < 0) return -1;
    out->size += (size_t)num_ids;
    if (n > CACHE_MAX_BYTES) return 0;
    if (m->cache_size >= m->cache_limit || m->id_arena.size + (size_t)num_ids > CACHE_MAX_IDS) {
        if (cache_reset(m) < 0) return -1;  /* (a new hot table too) */
        i = (size_t)key.hash & m->cache_mask;
        if (hot != NULL) hot = hot_slot(m, key.w0, n);
    }
    if (m->cache_size == m->cache_capacity) {
        CacheEntry *entries = realloc(m->entries, sizeof(CacheEntry) * m->cache_capacity * 2);
        if (entries == NULL) return -1;
        m->entries = entries;
        m->cache_capacity *= 2;
    }
    if (m->key_size + n > m->key_capacity) {
        size_t capacity = m->key_capacity ? m->key_capacity * 2 : 1 << 16;
        while (capacity < m->key_size + n) capacity *= 2;
        uint8_t *arena = realloc(m->key_arena, capacity);
        if (arena == NULL) return -1;
        m->key_arena = arena;
        m->key_capacity = capacity;
    }
    const uint32_t *ids = out->items + out->size - num_ids;
    uint32_t stored = ids[0];
    if (num_ids > 1) {
        stored = (uint32_t)m->id_arena.size;
        if (ids_reserve(&m->id_arena, (size_t)num_ids) < 0) return -1;
        ids = out->items + out->size - num_ids;
        memcpy(m->id_arena.items + stored, ids, sizeof(uint32_t) * (size_t)num_ids);
        m->id_arena.size += (size_t)num_ids;
    }
    memcpy(m->key_arena + m->key_size, s, n);
    m->entries[m->cache_size] = (CacheEntry){key.hash, m->key_size};
    m->key_size += n;
    m->cache_slots[i] = (CacheSlot){key.w0, key.w1, (uint32_t)n, (uint32_t)num_ids, stored, (uint32_t)m->cache_size};
    m->cache_size++;
    if (hot != NULL && num_ids == 1) *hot = (HotSlot){key.w0, (uint32_t)n, stored};
    if (2 * m->cache_size > m->cache_mask && cache_grow_slots(m) < 0) return -1;
    return 0;
}

/* The ids of the valid UTF-8 text s[0..n), split on the special tokens when `with_specials`. */
static int encode_utf8(MergerObject *m, const uint8_t *s, size_t n, int with_specials, IdBuffer *out) {
    Specials *sp = &m->specials;
    const int split = with_specials && sp->count > 0;
    if (split) specials_reset(sp);
    size_t pos = 0;
    while (pos < n) {
        size_t special_len = 0;
        const size_t special_start = split ? special_find(sp, s, n, pos, &special_len) : n;
        for (size_t p = pos; p < special_start;) {
            const size_t end = pretoken_end(s, special_start, p);
            /* Room for one id a byte (a token is at least one), grown geometrically. */
            if (out->capacity - out->size <= end - p && ids_reserve(out, end - p + 1) < 0) return -1;
            if (encode_pretoken(m, s + p, end - p, s + n, out) < 0) return -1;
            p = end;
        }
        if (special_start < n) {
            size_t which = 0;
            while (sp->lengths[which] != special_len || memcmp(sp->bytes[which], s + special_start, special_len) != 0) which++;
            if (ids_reserve(out, 1) < 0) return -1;
            out->items[out->size++] = m->special_ids[which];
        }
        pos = special_start + special_len;
    }
    return 0;
}

static int merger_claim(MergerObject *m) {
    if (m->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Merger was not initialised");
        return -1;
    }
    if (m->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this Merger is in use by another thread; give each thread its own");
        return -1;
    }
    if (m->cache_slots == NULL && cache_reset(m) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    m->busy = 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The Python type
 */

/* The special tokens from a sequence of (bytes, id); -1 with an exception set on failure. */
static int merger_init_specials(MergerObject *self, PyObject *special_seq, uint32_t *max_id) {
    const Py_ssize_t num_specials = PySequence_Fast_GET_SIZE(special_seq);
    size_t special_total = 0;
    for (Py_ssize_t i = 0; i < num_specials; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(special_seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) ||
            PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0)) == 0) {
            PyErr_SetString(PyExc_TypeError, "specials must be a sequence of (non-empty bytes, id)");
            return -1;
        }
        special_total += (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0));
    }
    self->specials.count = (size_t)num_specials;
    self->specials.bytes = PyMem_Malloc(sizeof(uint8_t *) * (size_t)(num_specials + 1));
    self->specials.lengths = PyMem_Malloc(sizeof(size_t) * (size_t)(num_specials + 1));
    self->specials.next = PyMem_Malloc(sizeof(size_t) * (size_t)(num_specials + 1));
    self->special_bytes = PyMem_Malloc(special_total + 1);
    self->special_ids = PyMem_Malloc(sizeof(uint32_t) * (size_t)(num_specials + 1));
    if (!self->specials.bytes || !self->specials.lengths || !self->specials.next || !self->special_bytes || !self->special_ids) {
        PyErr_NoMemory();
        return -1;
    }
    size_t offset = 0;
    for (Py_ssize_t i = 0; i < num_specials; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(special_seq, i);
        PyObject *token = PyTuple_GET_ITEM(item, 0);
        const size_t length = (size_t)PyBytes_GET_SIZE(token);
        memcpy(self->special_bytes + offset, PyBytes_AS_STRING(token), length);
        self->specials.bytes[i] = self->special_bytes + offset;
        self->specials.lengths[i] = length;
        offset += length;
        if (read_u32(PyTuple_GET_ITEM(item, 1), &self->special_ids[i], "special id") < 0) return -1;
        if (self->special_ids[i] > *max_id) *max_id = self->special_ids[i];
    }
    return 0;
}

/* Merger(byte_ids, merge_ranks, merged_id_of_rank, specials=(), cache_limit=1 << 20): byte_ids is
   a sequence of 256 ids, merge_ranks a dict (left id, right id) -> rank, merged_id_of_rank a
   sequence rank -> id, specials a sequence of (bytes, id). */
static int Merger_init(MergerObject *self, PyObject *args, PyObject *kwds) {
    PyObject *byte_ids, *merge_ranks, *merged_ids, *specials_obj = NULL;
    Py_ssize_t cache_limit = 1 << 20;
    static char *kwlist[] = {"byte_ids", "merge_ranks", "merged_id_of_rank", "specials", "cache_limit", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O|On:Merger", kwlist, &byte_ids, &PyDict_Type, &merge_ranks,
                                     &merged_ids, &specials_obj, &cache_limit))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise a Merger in use");
        return -1;
    }
    merger_free_tables(self);
    if (cache_limit < 1) {
        PyErr_SetString(PyExc_ValueError, "cache_limit must be >= 1");
        return -1;
    }
    self->cache_limit = (size_t)cache_limit;
    uint32_t max_id = 0;
    PyObject *bytes_seq = PySequence_Fast(byte_ids, "byte_ids must be a sequence");
    if (bytes_seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(bytes_seq) != 256) {
        Py_DECREF(bytes_seq);
        PyErr_SetString(PyExc_ValueError, "byte_ids must hold exactly 256 ids");
        return -1;
    }
    for (int b = 0; b < 256; b++) {
        if (read_u32(PySequence_Fast_GET_ITEM(bytes_seq, b), &self->byte_ids[b], "byte id") < 0) {
            Py_DECREF(bytes_seq);
            return -1;
        }
        if (self->byte_ids[b] > max_id) max_id = self->byte_ids[b];
    }
    Py_DECREF(bytes_seq);

    PyObject *merged_seq = PySequence_Fast(merged_ids, "merged_id_of_rank must be a sequence");
    if (merged_seq == NULL) return -1;
    Py_ssize_t num_ranks = PySequence_Fast_GET_SIZE(merged_seq);
    if (num_ranks >= UINT32_MAX) {
        Py_DECREF(merged_seq);
        PyErr_SetString(PyExc_ValueError, "too many merges");
        return -1;
    }
    self->merged_id_of_rank = PyMem_Malloc(sizeof(uint32_t) * (size_t)(num_ranks ? num_ranks : 1));
    if (self->merged_id_of_rank == NULL) {
        Py_DECREF(merged_seq);
        PyErr_NoMemory();
        return -1;
    }
    self->num_ranks = num_ranks;
    for (Py_ssize_t r = 0; r < num_ranks; r++) {
        if (read_u32(PySequence_Fast_GET_ITEM(merged_seq, r), &self->merged_id_of_rank[r], "merged id") < 0) {
            Py_DECREF(merged_seq);
            return -1;
        }
        if (self->merged_id_of_rank[r] > max_id) max_id = self->merged_id_of_rank[r];
    }
    Py_DECREF(merged_seq);

    /* special tokens */
    PyObject *empty = NULL;
    if (specials_obj == NULL || specials_obj == Py_None) specials_obj = empty = PyTuple_New(0);
    PyObject *special_seq = specials_obj ? PySequence_Fast(specials_obj, "specials must be a sequence of (bytes, id)") : NULL;
    Py_XDECREF(empty);  /* (PySequence_Fast of a tuple returns the tuple, with its own reference) */
    if (special_seq == NULL) return -1;
    const int failed = merger_init_specials(self, special_seq, &max_id);
    Py_DECREF(special_seq);
    if (failed) return -1;

    /* the merge ranks */
    size_t size = 16;
    while (size < 2 * (size_t)PyDict_GET_SIZE(merge_ranks) + 1) size <<= 1;
    self->slots = PyMem_Calloc(size, sizeof(RankSlot));
    if (self->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = size - 1;
    Py_ssize_t pos = 0;
    PyObject *pair, *rank_obj;
    while (PyDict_Next(merge_ranks, &pos, &pair, &rank_obj)) {
        uint32_t a, b, rank;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_ValueError, "merge_ranks keys must be (left id, right id) tuples");
            return -1;
        }
        if (read_u32(PyTuple_GET_ITEM(pair, 0), &a, "left id") < 0 || read_u32(PyTuple_GET_ITEM(pair, 1), &b, "right id") < 0 ||
            read_u32(rank_obj, &rank, "rank") < 0)
            return -1;
        if ((Py_ssize_t)rank >= num_ranks) {
            PyErr_Format(PyExc_ValueError, "rank %u has no merged id (%zd merges)", rank, num_ranks);
            return -1;
        }
        uint64_t key = (((uint64_t)a << 32) | b) + 1;
        size_t i = slot_of(key, self->mask);
        while (self->slots[i].key != 0 && self->slots[i].key != key) i = (i + 1) & self->mask;
        self->slots[i].key = key;
        self->slots[i].rank = rank;
    }

    self->byte_pair_rank = PyMem_Malloc(sizeof(uint32_t) * 65536);
    if (self->byte_pair_rank == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t pair = 0; pair < 65536; pair++)
        self->byte_pair_rank[pair] = pair_rank(self, self->byte_ids[pair >> 8], self->byte_ids[pair & 0xFF], (uint32_t)num_ranks);

    /* one int object per id */
    if (max_id >= (1u << 30)) {
        PyErr_Format(PyExc_ValueError, "token id %u is too large", max_id);
        return -1;
    }
    self->id_objects = PyMem_Calloc((size_t)max_id + 1, sizeof(PyObject *));
    if (self->id_objects == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->num_id_objects = max_id + 1;
    for (uint32_t id = 0; id <= max_id; id++)
        if ((self->id_objects[id] = PyLong_FromUnsignedLong(id)) == NULL) return -1;
    return 0;
}

/* The list of ids of `out` (shared int objects). */
static PyObject *list_of_ids(const MergerObject *m, const IdBuffer *out) {
    PyObject *result = PyList_New((Py_ssize_t)out->size);
    if (result == NULL) return NULL;
    for (size_t i = 0; i < out->size; i++) {
        PyObject *id = m->id_objects[out->items[i]];
        Py_INCREF(id);
        PyList_SET_ITEM(result, (Py_ssize_t)i, id);
    }
    return result;
}

PyDoc_STRVAR(Merger_encode_doc,
"encode(text: str, with_specials: bool = True) -> list[int]\n\n"
"The ids of `text`, as Tokenizer.encode gives them (with_specials=False: the text holds no\n"
"special token, as Tokenizer._encode_plain takes it). Runs without the GIL.");

static PyObject *Merger_encode(MergerObject *self, PyObject *args) {
    PyObject *text;
    int with_specials = 1;
    if (!PyArg_ParseTuple(args, "U|p:encode", &text, &with_specials)) return NULL;
    PyObject *utf8_owner = NULL;
    const uint8_t *s;
    Py_ssize_t n;
    if (PyUnicode_IS_COMPACT_ASCII(text)) {  /* ASCII is its own UTF-8: no copy */
        s = PyUnicode_DATA(text);
        n = PyUnicode_GET_LENGTH(text);
    } else {  /* a temporary UTF-8 copy (AsUTF8 would keep one alive with the str) */
        if ((utf8_owner = PyUnicode_AsUTF8String(text)) == NULL) return NULL;
        s = (const uint8_t *)PyBytes_AS_STRING(utf8_owner);
        n = PyBytes_GET_SIZE(utf8_owner);
    }
    if (merger_claim(self) < 0) {
        Py_XDECREF(utf8_owner);
        return NULL;
    }
    IdBuffer out = {NULL, 0, 0};
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = ids_reserve(&out, (size_t)n / 4 + 16) < 0 || encode_utf8(self, s, (size_t)n, with_specials, &out) < 0;
    Py_END_ALLOW_THREADS
    self->busy = 0;
    Py_XDECREF(utf8_owner);
    PyObject *result = failed ? PyErr_NoMemory() : list_of_ids(self, &out);
    free(out.items);
    return result;
}

PyDoc_STRVAR(Merger_encode_bytes_doc,
"encode_bytes(data, itemsize: int) -> bytes | int\n\n"
"The ids of the UTF-8 text `data` (special tokens split off), packed as native unsigned ints of\n"
"`itemsize` bytes (2 or 4; every id must fit). If `data` is not valid UTF-8 (as Python's strict\n"
"decoder), nothing is encoded and the offset of the first invalid byte is returned instead.");

static PyObject *Merger_encode_bytes(MergerObject *self, PyObject *args) {
    Py_buffer buffer;
    int itemsize;
    if (!PyArg_ParseTuple(args, "y*i:encode_bytes", &buffer, &itemsize)) return NULL;
    if (itemsize != 2 && itemsize != 4) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "itemsize must be 2 or 4");
        return NULL;
    }
    if (itemsize == 2 && self->num_id_objects > (1u << 16)) {
        PyBuffer_Release(&buffer);
        PyErr_Format(PyExc_ValueError, "ids up to %u do not fit in 2 bytes", self->num_id_objects - 1);
        return NULL;
    }
    if (merger_claim(self) < 0) {
        PyBuffer_Release(&buffer);
        return NULL;
    }
    const uint8_t *s = buffer.buf;
    const size_t n = (size_t)buffer.len;
    IdBuffer out = {NULL, 0, 0};
    size_t valid;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    valid = utf8_valid_length(s, n);
    if (valid == n) {
        failed = ids_reserve(&out, n / 4 + 16) < 0 || encode_utf8(self, s, n, 1, &out) < 0;
        if (!failed && itemsize == 2) {  /* pack in place: each 2-byte slot lies before its source */
            uint16_t *packed = (uint16_t *)out.items;
            for (size_t i = 0; i < out.size; i++) packed[i] = (uint16_t)out.items[i];
        }
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&buffer);
    PyObject *result;
    if (failed) result = PyErr_NoMemory();
    else if (valid != n) result = PyLong_FromSize_t(valid);
    else result = PyBytes_FromStringAndSize((const char *)out.items, (Py_ssize_t)(out.size * (size_t)itemsize));
    free(out.items);
    return result;
}

static PyObject *Merger_bpe(MergerObject *self, PyObject *pretoken) {
    if (!PyUnicode_Check(pretoken)) {
        PyErr_Format(PyExc_TypeError, "bpe() takes a str, got %.100s", Py_TYPE(pretoken)->tp_name);
        return NULL;
    }
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Merger was not initialised");
        return NULL;
    }
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(pretoken, &len);
    if (utf8 == NULL) return NULL;
    IdBuffer out = {malloc(sizeof(uint32_t) * (size_t)(len ? len : 1)), 0, (size_t)(len ? len : 1)};
    if (out.items == NULL) return PyErr_NoMemory();
    const Py_ssize_t num_ids = bpe(self, (const uint8_t *)utf8, (size_t)len, out.items);
    PyObject *result = NULL;
    if (num_ids < 0) {
        PyErr_NoMemory();
    } else {
        out.size = (size_t)num_ids;
        result = list_of_ids(self, &out);
    }
    free(out.items);
    return result;
}

static PyObject *Merger_cache_size(MergerObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->cache_size);
}

static PyMethodDef Merger_methods[] = {
    {"encode", (PyCFunction)Merger_encode, METH_VARARGS, Merger_encode_doc},
    {"encode_bytes", (PyCFunction)Merger_encode_bytes, METH_VARARGS, Merger_encode_bytes_doc},
    {"bpe", (PyCFunction)Merger_bpe, METH_O, "bpe(pretoken: str) -> list[int]: BPE of one pre-token (as Tokenizer._bpe)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Merger_getset[] = {
    {"cache_size", (getter)Merger_cache_size, NULL, "pre-tokens in the cache now", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MergerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cs336_core.bpe._fastbpe.Merger",
    .tp_basicsize = sizeof(MergerObject),
    .tp_dealloc = (destructor)Merger_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Merger(byte_ids, merge_ranks, merged_id_of_rank, specials=(), cache_limit=1 << 20): "
              "a tokenizer's encoding in C (see the module source).",
    .tp_methods = Merger_methods,
    .tp_getset = Merger_getset,
    .tp_init = (initproc)Merger_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fastbpe_module = {
    PyModuleDef_HEAD_INIT, "_fastbpe",
    "Optional C accelerator of cs336_core.bpe.Tokenizer.encode.",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastbpe(void) {
    scan_init();
    if (PyType_Ready(&MergerType) < 0) return NULL;
    PyObject *module = PyModule_Create(&fastbpe_module);
    if (module == NULL) return NULL;
    Py_INCREF(&MergerType);
    if (PyModule_AddObject(module, "Merger", (PyObject *)&MergerType) < 0) {
        Py_DECREF(&MergerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* Optional accelerator for cs336_core.bpe.tokenizer.Tokenizer.encode (CPython C API, C99).
 *
 * encode_plain(text, out, cache, merger, encode_from) appends to the list `out` the ids of
 * `text` (a str holding no special token), exactly as the pure-Python path does:
 *
 *   - it splits `text` into GPT-2 pre-tokens itself wherever the decision involves only ASCII
 *     characters, following the pattern
 *         '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     with \p{L} = [A-Za-z], \p{N} = [0-9] and \s = [\t\n\v\f\r ] (their ASCII members);
 *   - each pre-token is looked up in a small table of recent pre-tokens kept by the Merger, then in
 *     the tokenizer's cache dict (str -> list of ids); a miss in both is
 *     encoded by `merger` (a Merger: the same merge loop as Tokenizer._bpe, over a C hash table of
 *     the merge ranks) and stored in the cache;
 *   - as soon as deciding a pre-token would need the class of a non-ASCII character (a letter? a
 *     digit? whitespace?), it hands over to encode_from(text, pos, out), the Python regex path,
 *     which encodes from `pos` (always a pre-token boundary) and returns where to resume (again a
 *     pre-token boundary, from the real regex).
 *
 * Every pre-token the C scanner emits is therefore the one the regex would match at that position
 * (the regex only looks forward, so matching from a boundary depends on nothing before it), and
 * everything else is done by the reference code.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { OTHER = 0, LETTER = 1, DIGIT = 2, SPACE = 3 };

static unsigned char ascii_class[128];

static void init_ascii_class(void) {
    for (int c = 0; c < 128; c++) {
        unsigned char cls = OTHER;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) cls = LETTER;
        else if (c >= '0' && c <= '9') cls = DIGIT;
        else if (c == ' ' || (c >= '\t' && c <= '\r')) cls = SPACE;
        ascii_class[c] = cls;
    }
}

#define NEEDS_REGEX (-1)

/* End of the pre-token starting at `p` (< n), or NEEDS_REGEX if that depends on a non-ASCII char. */
static inline Py_ssize_t pretoken_end(int kind, const void *data, Py_ssize_t n, Py_ssize_t p) {
    Py_UCS4 c = PyUnicode_READ(kind, data, p);
    if (c >= 128) return NEEDS_REGEX;
    if (c == '\'' && p + 1 < n) {  /* contractions: literal comparisons, any char may be read */
        Py_UCS4 c1 = PyUnicode_READ(kind, data, p + 1);
        if (c1 == 's' || c1 == 'd' || c1 == 'm' || c1 == 't') return p + 2;
        if (p + 2 < n) {
            Py_UCS4 c2 = PyUnicode_READ(kind, data, p + 2);
            if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) return p + 3;
        }
    }
    int cls = ascii_class[c];
    Py_ssize_t run_start = p;
    if (c == ' ' && p + 1 < n) {  /* ` ?X+`: a space takes the run of letters/digits/other after it */
        Py_UCS4 c1 = PyUnicode_READ(kind, data, p + 1);
        if (c1 >= 128) return NEEDS_REGEX;
        if (ascii_class[c1] != SPACE) {
            cls = ascii_class[c1];
            run_start = p + 1;
        }
    }
    Py_ssize_t q = run_start;
    while (q < n) {
        Py_UCS4 d = PyUnicode_READ(kind, data, q);
        if (d >= 128) return NEEDS_REGEX;
        if (ascii_class[d] != cls) break;
        q++;
    }
    if (cls != SPACE || q == n) return q;
    /* Whitespace followed by a non-space: `\s+(?!\S)` backs off one char so that char can lead
       the next pre-token; a single whitespace char cannot back off and is taken by `\s+`. */
    return q - p >= 2 ? q - 1 : q;
}

/* ---------------------------------------------------------------------------------------------
 * Merger: BPE of one pre-token, the algorithm of Tokenizer._bpe (keep the two in step):
 * repeatedly take the lowest merge rank among adjacent pairs; if that pair occurs more than once,
 * merge all its non-overlapping occurrences left to right, else merge the one occurrence.
 */

typedef struct {
    uint64_t key;       /* (left << 32 | right) + 1; 0 marks an empty slot */
    uint32_t rank;
} RankSlot;

/* A small direct-mapped table of recent pre-tokens in front of the cache dict: a hit costs a short
   hash and compare of the characters in place, instead of making a str, hashing it and probing the
   dict. Entries are (pre-token str, its ids list), both owned; ids never change for a pre-token. */
#define RECENT_SLOTS 8192
#define RECENT_MAX_LEN 24

typedef struct {
    PyObject *pretoken;  /* an ASCII str, or NULL */
    PyObject *ids;
} RecentSlot;

typedef struct {
    PyObject_HEAD
    RecentSlot *recent;
    uint32_t byte_ids[256];
    uint32_t *merged_id_of_rank;
    Py_ssize_t num_ranks;
    RankSlot *slots;
    size_t mask;        /* table size - 1 (a power of two) */
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

static void clear_recent(MergerObject *self) {
    if (self->recent == NULL) return;
    for (size_t i = 0; i < RECENT_SLOTS; i++) {
        Py_CLEAR(self->recent[i].pretoken);
        Py_CLEAR(self->recent[i].ids);
    }
}

static void Merger_dealloc(MergerObject *self) {
    clear_recent(self);
    PyMem_Free(self->recent);
    PyMem_Free(self->slots);
    PyMem_Free(self->merged_id_of_rank);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Merger(byte_ids, merge_ranks, merged_id_of_rank): byte_ids is a sequence of 256 ids,
   merge_ranks a dict (left id, right id) -> rank, merged_id_of_rank a sequence rank -> id. */
static int Merger_init(MergerObject *self, PyObject *args, PyObject *kwds) {
    PyObject *byte_ids, *merge_ranks, *merged_ids;
    static char *kwlist[] = {"byte_ids", "merge_ranks", "merged_id_of_rank", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O:Merger", kwlist, &byte_ids, &PyDict_Type, &merge_ranks, &merged_ids))
        return -1;
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
    PyMem_Free(self->merged_id_of_rank);
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
    }
    Py_DECREF(merged_seq);

    clear_recent(self);
    if (self->recent == NULL && (self->recent = PyMem_Calloc(RECENT_SLOTS, sizeof(RecentSlot))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t size = 16;
    while (size < 2 * (size_t)PyDict_GET_SIZE(merge_ranks) + 1) size <<= 1;
    PyMem_Free(self->slots);
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
    return 0;
}

static PyObject *list_of_ids(const uint32_t *ids, Py_ssize_t n) {
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        PyObject *id = PyLong_FromUnsignedLong(ids[i]);
        if (id == NULL) Py_CLEAR(result);
        else PyList_SET_ITEM(result, i, id);
    }
    return result;
}

/* A binary min-heap of uint64 entries `rank << 32 | position`: the lowest rank first, and for one
   rank the leftmost position first. */
typedef struct {
    uint64_t *items;
    size_t size, capacity;
} Heap;

static int heap_push(Heap *heap, uint64_t item) {
    if (heap->size == heap->capacity) {
        size_t capacity = heap->capacity * 2;
        uint64_t *items = PyMem_Realloc(heap->items, sizeof(uint64_t) * capacity);
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

/* merger_bpe for a long pre-token, in O(n log n) instead of O(n) a merge step: Tokenizer._bpe_long
   in C (keep them in step). The symbols are a linked list over their original positions; the heap
   holds `rank << 32 | position` for each ranked pair as it appears, and an entry whose pair has
   changed since is skipped. All entries of the lowest rank come off together and are merged in
   position order, so the pairs those merges make wait for the next round. */
static PyObject *merger_bpe_long(const MergerObject *m, const unsigned char *word, Py_ssize_t len) {
    if ((uint64_t)len >= UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "pre-token of %zd bytes is too long (the limit is 4 GiB)", len);
        return NULL;
    }
    const uint32_t n = (uint32_t)len, no_merge = (uint32_t)m->num_ranks;
    PyObject *result = NULL;
    uint32_t *symbols = PyMem_Malloc(sizeof(uint32_t) * n), *prev = PyMem_Malloc(sizeof(uint32_t) * n);
    uint32_t *next = PyMem_Malloc(sizeof(uint32_t) * n), *positions = PyMem_Malloc(sizeof(uint32_t) * n);
    Heap heap = {PyMem_Malloc(sizeof(uint64_t) * n), 0, n};
    if (symbols == NULL || prev == NULL || next == NULL || positions == NULL || heap.items == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        symbols[i] = m->byte_ids[word[i]];
        prev[i] = i - 1;  /* DEAD (UINT32_MAX) for the first: no previous symbol */
        next[i] = i + 1;  /* n: no next symbol */
    }
    for (uint32_t i = 0; i + 1 < n; i++) {
        uint32_t rank = pair_rank(m, symbols[i], symbols[i + 1], no_merge);
        if (rank != no_merge && heap_push(&heap, (uint64_t)rank << 32 | i) < 0) goto no_memory;
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
                if (right != no_merge && heap_push(&heap, (uint64_t)right << 32 | i) < 0) goto no_memory;
            }
            const uint32_t h = prev[i];
            if (h != DEAD) {
                uint32_t left = pair_rank(m, symbols[h], merged, no_merge);
                if (left != no_merge && heap_push(&heap, (uint64_t)left << 32 | h) < 0) goto no_memory;
            }
        }
    }
    uint32_t live = 0;  /* position 0 is never merged away: gather the survivors into `positions` */
    for (uint32_t i = 0; i != n; i = next[i]) positions[live++] = symbols[i];
    result = list_of_ids(positions, live);
    goto done;
no_memory:
    PyErr_NoMemory();
done:
    PyMem_Free(symbols);
    PyMem_Free(prev);
    PyMem_Free(next);
    PyMem_Free(positions);
    PyMem_Free(heap.items);
    return result;
}

/* Pre-tokens longer than this many bytes take merger_bpe_long. */
#define LONG_PRETOKEN_BYTES 64

/* The ids of the UTF-8 bytes `word[0..len)` after BPE, as a new list. */
static PyObject *merger_bpe(const MergerObject *m, const unsigned char *word, Py_ssize_t len) {
    if (len > LONG_PRETOKEN_BYTES) return merger_bpe_long(m, word, len);
    uint32_t ids_local[64], ranks_local[64];
    uint32_t *ids = ids_local, *ranks = ranks_local;
    const uint32_t no_merge = (uint32_t)m->num_ranks;
    Py_ssize_t n = len;
    for (Py_ssize_t i = 0; i < n; i++) ids[i] = m->byte_ids[word[i]];
    for (Py_ssize_t i = 0; i + 1 < n; i++) ranks[i] = pair_rank(m, ids[i], ids[i + 1], no_merge);
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
    return list_of_ids(ids, n);
}

static PyObject *merger_bpe_str(const MergerObject *m, PyObject *pretoken) {
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(pretoken, &len);
    if (utf8 == NULL) return NULL;
    return merger_bpe(m, (const unsigned char *)utf8, len);
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
    return merger_bpe_str(self, pretoken);
}

static PyMethodDef Merger_methods[] = {
    {"bpe", (PyCFunction)Merger_bpe, METH_O, "bpe(pretoken: str) -> list[int]: BPE of one pre-token (as Tokenizer._bpe)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MergerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cs336_core.bpe._fastbpe.Merger",
    .tp_basicsize = sizeof(MergerObject),
    .tp_dealloc = (destructor)Merger_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Merger(byte_ids, merge_ranks, merged_id_of_rank): BPE of pre-tokens over a C table of merge ranks.",
    .tp_methods = Merger_methods,
    .tp_init = (initproc)Merger_init,
    .tp_new = PyType_GenericNew,
};

/* --------------------------------------------------------------------------------------------- */

/* Whether text[p:p+len] equals `ascii`, a compact ASCII str. */
static inline int same_ascii_chars(int kind, const void *data, Py_ssize_t p, Py_ssize_t len, PyObject *ascii) {
    if (PyUnicode_GET_LENGTH(ascii) != len) return 0;
    const Py_UCS1 *chars = PyUnicode_1BYTE_DATA(ascii);
    if (kind == PyUnicode_1BYTE_KIND) return memcmp((const Py_UCS1 *)data + p, chars, (size_t)len) == 0;
    for (Py_ssize_t i = 0; i < len; i++)
        if (PyUnicode_READ(kind, data, p + i) != chars[i]) return 0;
    return 1;
}

static int extend_list(PyObject *out, PyObject *ids) {
    if (PyList_CheckExact(ids)) {
        Py_ssize_t k = PyList_GET_SIZE(ids);
        for (Py_ssize_t i = 0; i < k; i++)
            if (PyList_Append(out, PyList_GET_ITEM(ids, i)) < 0) return -1;
        return 0;
    }
    Py_ssize_t size = PyList_GET_SIZE(out);
    return PyList_SetSlice(out, size, size, ids);  /* any other sequence */
}

static PyObject *encode_plain(PyObject *self, PyObject *args) {
    PyObject *text, *out, *cache, *encode_from;
    MergerObject *merger;
    (void)self;
    if (!PyArg_ParseTuple(args, "UO!O!O!O:encode_plain", &text, &PyList_Type, &out, &PyDict_Type, &cache,
                          &MergerType, &merger, &encode_from))
        return NULL;
    if (merger->slots == NULL || merger->recent == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Merger was not initialised");
        return NULL;
    }
    const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t p = 0;
    while (p < n) {
        Py_ssize_t end = pretoken_end(kind, data, n, p);
        if (end == NEEDS_REGEX) {
            PyObject *resumed = PyObject_CallFunction(encode_from, "OnO", text, p, out);
            if (resumed == NULL) return NULL;
            Py_ssize_t next = PyLong_AsSsize_t(resumed);
            Py_DECREF(resumed);
            if (next == -1 && PyErr_Occurred()) return NULL;
            if (next <= p || next > n) {
                PyErr_Format(PyExc_RuntimeError, "encode_from returned position %zd from %zd (text length %zd)", next, p, n);
                return NULL;
            }
            p = next;
            continue;
        }
        const Py_ssize_t len = end - p;
        RecentSlot *slot = NULL;
        if (len <= RECENT_MAX_LEN) {
            uint32_t h = 2166136261u;  /* FNV-1a */
            for (Py_ssize_t i = p; i < end; i++) h = (h ^ PyUnicode_READ(kind, data, i)) * 16777619u;
            slot = &merger->recent[(h ^ (h >> 15)) & (RECENT_SLOTS - 1)];
            if (slot->pretoken != NULL && same_ascii_chars(kind, data, p, len, slot->pretoken)) {
                if (extend_list(out, slot->ids) < 0) return NULL;
                p = end;
                continue;
            }
        }
        PyObject *pretoken = PyUnicode_Substring(text, p, end);
        if (pretoken == NULL) return NULL;
        PyObject *ids = PyDict_GetItemWithError(cache, pretoken);
        if (ids != NULL) {
            Py_INCREF(ids);
        } else if (!PyErr_Occurred()) {
            ids = merger_bpe_str(merger, pretoken);
            if (ids != NULL && PyDict_SetItem(cache, pretoken, ids) < 0) Py_CLEAR(ids);
        }
        if (ids == NULL || extend_list(out, ids) < 0) {
            Py_DECREF(pretoken);
            Py_XDECREF(ids);
            return NULL;
        }
        if (slot != NULL) {  /* the slot takes both references */
            Py_XSETREF(slot->pretoken, pretoken);
            Py_XSETREF(slot->ids, ids);
        } else {
            Py_DECREF(pretoken);
            Py_DECREF(ids);
        }
        p = end;
    }
    Py_RETURN_NONE;
}

static PyMethodDef fastbpe_methods[] = {
    {"encode_plain", encode_plain, METH_VARARGS,
     "encode_plain(text, out, cache, merger, encode_from) -> None\n\n"
     "Append the ids of `text` (no special tokens) to the list `out`; see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastbpe_module = {
    PyModuleDef_HEAD_INIT, "_fastbpe",
    "Optional C accelerator for cs336_core.bpe (pure-ASCII pre-tokenizing and cache lookups).",
    -1, fastbpe_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastbpe(void) {
    init_ascii_class();
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

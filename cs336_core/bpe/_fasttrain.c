/* Optional C accelerator of BPE training (cs336_core/bpe/train.py is the reference; keep in step).
 *
 *   PretokenCounts   a hash table pre-token bytes -> count. `count(chunk, specials)` splits a chunk
 *                    of UTF-8 text on the special tokens, pre-tokenizes the rest with GPT-2's
 *                    pattern (_bpe_scan.h) and counts, without the GIL, so threads count chunks
 *                    in parallel, one table each; `update(other)` adds another table.
 *   train_merges     the merge loop over such a table: the most frequent pair, ties to the greater
 *                    pair of byte strings, as train.merge_pretoken_counts; returns the merged
 *                    pairs as ids.
 *
 * The merge loop keeps every symbol of every distinct word in flat arrays with links to its
 * neighbours, and for each pair the positions where it appeared. A merge visits only the recorded
 * positions of its pair (stale ones, whose symbols have changed since, are skipped), so its cost
 * is the occurrences it merges, whatever the lengths of the words: the long-word path of the
 * Python code (long_words.py) for every word. Counts live in the pair table; a lazily corrected
 * max-heap picks the next pair.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_bpe_scan.h"

/* ---------------------------------------------------------------------------------------------
 * PretokenCounts
 */

typedef struct {
    Key key;
    uint64_t offset;  /* of its bytes in the arena */
    int64_t count;
    uint32_t length;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    size_t size, capacity;
    uint32_t *slots;  /* entry index + 1; 0: empty */
    size_t mask;
    uint8_t *arena;
    size_t arena_size, arena_capacity;
    int busy;  /* a call is running without the GIL: a second one on this table must fail */
} CountsObject;

static int counts_grow_slots(CountsObject *self) {
    size_t size = (self->mask + 1) * 2;
    uint32_t *slots = calloc(size, sizeof(uint32_t));
    if (slots == NULL) return -1;
    for (size_t e = 0; e < self->size; e++) {
        size_t i = (size_t)self->entries[e].key.hash & (size - 1);
        while (slots[i] != 0) i = (i + 1) & (size - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(self->slots);
    self->slots = slots;
    self->mask = size - 1;
    return 0;
}

static int counts_init_storage(CountsObject *self) {
    if (self->slots != NULL) return 0;
    self->mask = (1 << 16) - 1;
    self->slots = calloc(self->mask + 1, sizeof(uint32_t));
    self->capacity = 1 << 15;
    self->entries = malloc(self->capacity * sizeof(Entry));
    self->arena_capacity = 1 << 20;
    self->arena = malloc(self->arena_capacity);
    return (self->slots && self->entries && self->arena) ? 0 : -1;
}

/* Add `count` to the pre-token s[0..n). 0, or -1 when out of memory (the table is unchanged). */
static int counts_add_key(CountsObject *self, const uint8_t *s, size_t n, Key key, int64_t count) {
    size_t i = (size_t)key.hash & self->mask;
    for (;;) {
        const uint32_t slot = self->slots[i];
        if (slot == 0) break;
        Entry *e = &self->entries[slot - 1];
        if (e->key.hash == key.hash && e->length == n && e->key.w0 == key.w0 && e->key.w1 == key.w1 &&
            (n <= 16 || memcmp(self->arena + e->offset + 16, s + 16, n - 16) == 0)) {
            e->count += count;
            return 0;
        }
        i = (i + 1) & self->mask;
    }
    if (self->size >= UINT32_MAX - 1 || n >= UINT32_MAX) return -1;
    if (self->size == self->capacity) {
        Entry *entries = realloc(self->entries, 2 * self->capacity * sizeof(Entry));
        if (entries == NULL) return -1;
        self->entries = entries;
        self->capacity *= 2;
    }
    if (self->arena_size + n > self->arena_capacity) {
        size_t capacity = self->arena_capacity * 2;
        while (capacity < self->arena_size + n) capacity *= 2;
        uint8_t *arena = realloc(self->arena, capacity);
        if (arena == NULL) return -1;
        self->arena = arena;
        self->arena_capacity = capacity;
    }
    memcpy(self->arena + self->arena_size, s, n);
    self->entries[self->size] = (Entry){key, self->arena_size, count, (uint32_t)n};
    self->arena_size += n;
    self->slots[i] = (uint32_t)(++self->size);
    if (2 * self->size > self->mask && counts_grow_slots(self) < 0) return -1;  /* keep it half empty */
    return 0;
}

static int counts_add(CountsObject *self, const uint8_t *s, size_t n, int64_t count) {
    return counts_add_key(self, s, n, make_key(s, n), count);
}

static void counts_clear(CountsObject *self) {
    free(self->entries);
    free(self->slots);
    free(self->arena);
    self->entries = NULL;
    self->slots = NULL;
    self->arena = NULL;
    self->size = self->capacity = self->mask = self->arena_size = self->arena_capacity = 0;
}

static void Counts_dealloc(CountsObject *self) {
    counts_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int counts_claim(CountsObject *self) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this PretokenCounts is in use by another thread; give each thread its own");
        return -1;
    }
    if (counts_init_storage(self) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->busy = 1;
    return 0;
}

/* Specials from a tuple of bytes (borrowed pointers: the tuple must outlive the use). */
static int specials_from_tuple(PyObject *tuple, Specials *sp) {
    sp->count = (size_t)PyTuple_GET_SIZE(tuple);
    sp->bytes = PyMem_Malloc(sizeof(uint8_t *) * (sp->count + 1));
    sp->lengths = PyMem_Malloc(sizeof(size_t) * (sp->count + 1));
    sp->next = PyMem_Malloc(sizeof(size_t) * (sp->count + 1));
    if (sp->bytes == NULL || sp->lengths == NULL || sp->next == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < sp->count; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, (Py_ssize_t)i);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) == 0) {
            PyErr_SetString(PyExc_TypeError, "special tokens must be a tuple of non-empty bytes");
            return -1;
        }
        sp->bytes[i] = (const uint8_t *)PyBytes_AS_STRING(item);
        sp->lengths[i] = (size_t)PyBytes_GET_SIZE(item);
    }
    return 0;
}

static void specials_free(Specials *sp) {
    PyMem_Free(sp->bytes);
    PyMem_Free(sp->lengths);
    PyMem_Free(sp->next);
}

/* Call `emit(context, start, end)` for every pre-token of s[0..n) outside the special tokens; stops
   at the first nonzero return and returns it. */
typedef int (*EmitFn)(void *context, const uint8_t *s, size_t start, size_t end);

static int scan_pretokens(const uint8_t *s, size_t n, Specials *sp, EmitFn emit, void *context) {
    specials_reset(sp);
    size_t pos = 0;
    while (pos < n) {
        size_t special_len = 0;
        const size_t special_start = sp->count ? special_find(sp, s, n, pos, &special_len) : n;
        for (size_t p = pos; p < special_start;) {
            const size_t end = pretoken_end(s, special_start, p);
            const int stop = emit(context, s, p, end);
            if (stop) return stop;
            p = end;
        }
        pos = special_start + special_len;
    }
    return 0;
}

/* Counting wants the end of the whole buffer, for make_key_padded's loads. */
typedef struct {
    CountsObject *table;
    const uint8_t *end;
} CountContext;

static int emit_count(void *context, const uint8_t *s, size_t start, size_t end) {
    const CountContext *c = context;
    const size_t n = end - start;
    const Key key = (n <= 16 && c->end - (s + start) >= 16) ? make_key_padded(s + start, n) : make_key(s + start, n);
    return counts_add_key(c->table, s + start, n, key, 1) < 0 ? -1 : 0;
}

PyDoc_STRVAR(Counts_count_doc,
"count(chunk, specials) -> int\n\n"
"Count the pre-tokens of `chunk` (a bytes-like of UTF-8 text), never across one of `specials`\n"
"(a tuple of bytes), without holding the GIL. Returns len(chunk); if the chunk is not valid\n"
"UTF-8 it counts nothing and returns the offset of the first invalid byte instead.");

static PyObject *Counts_count(CountsObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *special_tuple;
    if (!PyArg_ParseTuple(args, "y*O!:count", &buffer, &PyTuple_Type, &special_tuple)) return NULL;
    Specials sp = {0};
    if (specials_from_tuple(special_tuple, &sp) < 0 || counts_claim(self) < 0) {
        specials_free(&sp);
        PyBuffer_Release(&buffer);
        return NULL;
    }
    const uint8_t *s = buffer.buf;
    const size_t n = (size_t)buffer.len;
    size_t valid;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    valid = utf8_valid_length(s, n);
    CountContext context = {self, s + n};
    if (valid == n) failed = scan_pretokens(s, n, &sp, emit_count, &context);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    specials_free(&sp);
    PyBuffer_Release(&buffer);
    if (failed) return PyErr_NoMemory();
    return PyLong_FromSize_t(valid);
}

static PyObject *Counts_update(CountsObject *self, PyObject *other_obj);

static PyObject *Counts_to_dict(CountsObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *result = PyDict_New();
    for (size_t e = 0; result != NULL && e < self->size; e++) {
        const Entry *entry = &self->entries[e];
        PyObject *key = PyBytes_FromStringAndSize((const char *)self->arena + entry->offset, entry->length);
        PyObject *value = PyLong_FromLongLong(entry->count);
        if (key == NULL || value == NULL || PyDict_SetItem(result, key, value) < 0) Py_CLEAR(result);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return result;
}

static Py_ssize_t Counts_len(CountsObject *self) { return (Py_ssize_t)self->size; }

static PyObject *Counts_nbytes(CountsObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->capacity * sizeof(Entry) + (self->mask + 1) * sizeof(uint32_t) + self->arena_capacity);
}

static PyMethodDef Counts_methods[] = {
    {"count", (PyCFunction)Counts_count, METH_VARARGS, Counts_count_doc},
    {"update", (PyCFunction)Counts_update, METH_O, "update(other: PretokenCounts) -> None: add the counts of another table."},
    {"to_dict", (PyCFunction)Counts_to_dict, METH_NOARGS, "to_dict() -> dict[bytes, int]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Counts_getset[] = {
    {"nbytes", (getter)Counts_nbytes, NULL, "memory held by the table, in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Counts_as_sequence = {.sq_length = (lenfunc)Counts_len};

static PyTypeObject CountsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cs336_core.bpe._fasttrain.PretokenCounts",
    .tp_basicsize = sizeof(CountsObject),
    .tp_dealloc = (destructor)Counts_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PretokenCounts(): counts of pre-tokens (bytes), filled by count() and update().",
    .tp_methods = Counts_methods,
    .tp_getset = Counts_getset,
    .tp_as_sequence = &Counts_as_sequence,
    .tp_new = PyType_GenericNew,
};

static PyObject *Counts_update(CountsObject *self, PyObject *other_obj) {
    if (!PyObject_TypeCheck(other_obj, &CountsType)) {
        PyErr_SetString(PyExc_TypeError, "update() takes a PretokenCounts");
        return NULL;
    }
    CountsObject *other = (CountsObject *)other_obj;
    if (other == self) {
        PyErr_SetString(PyExc_ValueError, "a PretokenCounts cannot add itself");
        return NULL;
    }
    if (other->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the other PretokenCounts is in use by another thread");
        return NULL;
    }
    if (counts_claim(self) < 0) return NULL;
    other->busy = 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (size_t e = 0; e < other->size && !failed; e++) {
        const Entry *entry = &other->entries[e];
        failed = counts_add(self, other->arena + entry->offset, entry->length, entry->count) < 0;
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    other->busy = 0;
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * The merge loop
 */

#define NONE UINT32_MAX  /* no neighbour */
#define DEAD UINT32_MAX  /* the symbol of a position merged into its left neighbour */

typedef struct {
    uint32_t *items;
    uint32_t size, capacity;
} Positions;

typedef struct {
    uint32_t a, b;
    uint32_t stamp;  /* the merge step that last raised its count: pushed once a step */
    int64_t count;
    Positions positions;
} Pair;

typedef struct {
    int64_t count;
    uint32_t pair;
} HeapEntry;

typedef struct {
    /* tokens: bytes of every id */
    uint8_t *token_bytes;
    size_t token_bytes_size, token_bytes_capacity;
    uint64_t *token_offset;
    uint32_t *token_length;
    uint32_t num_tokens;
    /* symbols of the distinct words, flat */
    uint32_t *symbol, *next, *prev, *word_of;
    int64_t *word_count;
    /* pairs */
    Pair *pairs;
    uint32_t num_pairs, pairs_capacity;
    uint32_t *pair_slots;  /* pair index + 1; 0: empty */
    size_t pair_mask;
    HeapEntry *heap;
    size_t heap_size, heap_capacity;
    uint32_t *raised;  /* pairs whose counts went up in this step */
    size_t raised_size, raised_capacity;
} Trainer;

static inline size_t pair_slot_hash(uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(key ^ (key >> 29));
}

static int trainer_grow_pair_slots(Trainer *t) {
    size_t size = t->pair_mask ? (t->pair_mask + 1) * 2 : 1 << 16;
    uint32_t *slots = calloc(size, sizeof(uint32_t));
    if (slots == NULL) return -1;
    for (uint32_t p = 0; p < t->num_pairs; p++) {
        size_t i = pair_slot_hash(t->pairs[p].a, t->pairs[p].b) & (size - 1);
        while (slots[i] != 0) i = (i + 1) & (size - 1);
        slots[i] = p + 1;
    }
    free(t->pair_slots);
    t->pair_slots = slots;
    t->pair_mask = size - 1;
    return 0;
}

/* The index of the pair (a, b), added with count 0 if new; NONE when out of memory. */
static uint32_t pair_index(Trainer *t, uint32_t a, uint32_t b) {
    size_t i = pair_slot_hash(a, b) & t->pair_mask;
    for (;;) {
        const uint32_t slot = t->pair_slots[i];
        if (slot == 0) break;
        const Pair *pair = &t->pairs[slot - 1];
        if (pair->a == a && pair->b == b) return slot - 1;
        i = (i + 1) & t->pair_mask;
    }
    if (t->num_pairs >= NONE - 1) return NONE;
    if (t->num_pairs == t->pairs_capacity) {
        uint32_t capacity = t->pairs_capacity ? t->pairs_capacity * 2 : 1 << 15;
        Pair *pairs = realloc(t->pairs, sizeof(Pair) * capacity);
        if (pairs == NULL) return NONE;
        t->pairs = pairs;
        t->pairs_capacity = capacity;
    }
    const uint32_t p = t->num_pairs++;
    t->pairs[p] = (Pair){a, b, NONE, 0, {NULL, 0, 0}};
    t->pair_slots[i] = p + 1;
    if (2 * (size_t)t->num_pairs > t->pair_mask && trainer_grow_pair_slots(t) < 0) return NONE;
    return p;
}

static int positions_push(Positions *v, uint32_t position) {
    if (v->size == v->capacity) {
        uint32_t capacity = v->capacity ? v->capacity * 2 : 4;
        uint32_t *items = realloc(v->items, sizeof(uint32_t) * capacity);
        if (items == NULL) return -1;
        v->items = items;
        v->capacity = capacity;
    }
    v->items[v->size++] = position;
    return 0;
}

static void positions_free(Positions *v) {
    free(v->items);
    *v = (Positions){NULL, 0, 0};
}

/* Whether token x's bytes sort after token y's (Python's bytes order: a proper prefix first). */
static inline int token_compare(const Trainer *t, uint32_t x, uint32_t y) {
    if (x == y) return 0;
    const uint32_t lx = t->token_length[x], ly = t->token_length[y];
    const int c = memcmp(t->token_bytes + t->token_offset[x], t->token_bytes + t->token_offset[y], lx < ly ? lx : ly);
    if (c != 0) return c;
    return (lx > ly) - (lx < ly);
}

/* Whether heap entry x comes out before y: the higher count, then the greater (bytes a, bytes b);
   pairs with equal bytes (BPE can make one token twice) go by the smaller ids, as the Python
   heap's last key does. */
static inline int heap_before(const Trainer *t, HeapEntry x, HeapEntry y) {
    if (x.count != y.count) return x.count > y.count;
    const Pair *px = &t->pairs[x.pair], *py = &t->pairs[y.pair];
    int c = token_compare(t, px->a, py->a);
    if (c == 0) c = token_compare(t, px->b, py->b);
    if (c != 0) return c > 0;
    return px->a != py->a ? px->a < py->a : px->b < py->b;
}

static int heap_push_entry(Trainer *t, HeapEntry item) {
    if (t->heap_size == t->heap_capacity) {
        size_t capacity = t->heap_capacity ? t->heap_capacity * 2 : 1 << 15;
        HeapEntry *heap = realloc(t->heap, sizeof(HeapEntry) * capacity);
        if (heap == NULL) return -1;
        t->heap = heap;
        t->heap_capacity = capacity;
    }
    size_t i = t->heap_size++;
    while (i > 0) {
        const size_t parent = (i - 1) / 2;
        if (!heap_before(t, item, t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = item;
    return 0;
}

static void heap_sift_down(Trainer *t, size_t i) {
    const HeapEntry item = t->heap[i];
    const size_t size = t->heap_size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= size) break;
        if (child + 1 < size && heap_before(t, t->heap[child + 1], t->heap[child])) child++;
        if (!heap_before(t, t->heap[child], item)) break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    t->heap[i] = item;
}

static HeapEntry heap_pop_entry(Trainer *t) {
    const HeapEntry top = t->heap[0];
    t->heap[0] = t->heap[--t->heap_size];
    if (t->heap_size > 0) heap_sift_down(t, 0);
    return top;
}

/* The pair to merge next, NONE when no pair is left: an entry whose count is stale (too high) is
   put back with the true count, so the first exact entry is the most frequent pair. */
static uint32_t pop_most_frequent(Trainer *t) {
    while (t->heap_size > 0) {
        const HeapEntry top = heap_pop_entry(t);
        const int64_t count = t->pairs[top.pair].count;
        if (count == top.count && count > 0) return top.pair;
        if (count > 0 && heap_push_entry(t, (HeapEntry){count, top.pair}) < 0) return NONE - 1;
    }
    return NONE;
}

static int reserve_token_bytes(Trainer *t, size_t length) {
    if (t->token_bytes_size + length <= t->token_bytes_capacity) return 0;
    size_t capacity = t->token_bytes_capacity ? t->token_bytes_capacity * 2 : 1 << 16;
    while (capacity < t->token_bytes_size + length) capacity *= 2;
    uint8_t *data = realloc(t->token_bytes, capacity);
    if (data == NULL) return -1;
    t->token_bytes = data;
    t->token_bytes_capacity = capacity;
    return 0;
}

/* The next id is `length` bytes from `bytes` (which must not point into token_bytes). */
static int add_token(Trainer *t, const uint8_t *bytes, uint32_t length) {
    if (reserve_token_bytes(t, length) < 0) return -1;
    memcpy(t->token_bytes + t->token_bytes_size, bytes, length);
    t->token_offset[t->num_tokens] = t->token_bytes_size;
    t->token_length[t->num_tokens] = length;
    t->token_bytes_size += length;
    t->num_tokens++;
    return 0;
}

/* The next id is token a's bytes followed by token b's. */
static int add_merged_token(Trainer *t, uint32_t a, uint32_t b) {
    const uint32_t la = t->token_length[a], lb = t->token_length[b];
    if (reserve_token_bytes(t, (size_t)la + lb) < 0) return -1;
    uint8_t *target = t->token_bytes + t->token_bytes_size;
    memcpy(target, t->token_bytes + t->token_offset[a], la);
    memcpy(target + la, t->token_bytes + t->token_offset[b], lb);
    t->token_offset[t->num_tokens] = t->token_bytes_size;
    t->token_length[t->num_tokens] = la + lb;
    t->token_bytes_size += (size_t)la + lb;
    t->num_tokens++;
    return 0;
}

static inline int raise_count(Trainer *t, uint32_t a, uint32_t b, int64_t count, uint32_t position, uint32_t step) {
    const uint32_t p = pair_index(t, a, b);
    if (p == NONE) return -1;
    Pair *pair = &t->pairs[p];
    pair->count += count;
    if (positions_push(&pair->positions, position) < 0) return -1;
    if (pair->stamp != step) {
        pair->stamp = step;
        if (t->raised_size == t->raised_capacity) {
            size_t capacity = t->raised_capacity ? t->raised_capacity * 2 : 1024;
            uint32_t *raised = realloc(t->raised, sizeof(uint32_t) * capacity);
            if (raised == NULL) return -1;
            t->raised = raised;
            t->raised_capacity = capacity;
        }
        t->raised[t->raised_size++] = p;
    }
    return 0;
}

static inline void lower_count(Trainer *t, uint32_t a, uint32_t b, int64_t count) {
    const uint32_t p = pair_index(t, a, b);  /* exists: the pair is live */
    Pair *pair = &t->pairs[p];
    pair->count -= count;
    if (pair->count == 0) positions_free(&pair->positions);  /* every recorded position is stale */
}

static int compare_u32(const void *x, const void *y) {
    const uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Merge every occurrence of pair `p` into `new_id`; -1 when out of memory. */
static int apply_merge(Trainer *t, uint32_t p, uint32_t new_id, uint32_t step) {
    const uint32_t a = t->pairs[p].a, b = t->pairs[p].b;
    Positions found = t->pairs[p].positions;
    t->pairs[p].positions = (Positions){NULL, 0, 0};
    /* Occurrences of (a, b) overlap only when a == b ("x x x" merges left to right): only then does
       the order matter. Otherwise the counts below are updated against the current neighbours, so
       any order gives the same result. */
    if (a == b) qsort(found.items, found.size, sizeof(uint32_t), compare_u32);
    t->raised_size = 0;
    uint32_t *symbol = t->symbol, *next = t->next, *prev = t->prev;
    int failed = 0;
    for (uint32_t f = 0; f < found.size && !failed; f++) {
        const uint32_t i = found.items[f];
        if (symbol[i] != a) continue;
        const uint32_t j = next[i];
        if (j == NONE || symbol[j] != b) continue;  /* stale: a neighbour merged since */
        const int64_t count = t->word_count[t->word_of[i]];
        t->pairs[p].count -= count;
        const uint32_t h = prev[i];
        if (h != NONE) {  /* the left neighbour now pairs with the new token */
            const uint32_t left = symbol[h];
            lower_count(t, left == new_id ? b : left, a, count);
            failed |= raise_count(t, left, new_id, count, h, step);
        }
        const uint32_t k = next[j];
        if (k != NONE) {
            const uint32_t right = symbol[k], after = next[k];
            /* The right neighbour, unless it starts the next occurrence (handled as its left). */
            if (!(right == a && after != NONE && symbol[after] == b)) {
                lower_count(t, b, right, count);
                failed |= raise_count(t, new_id, right, count, i, step);
            }
            prev[k] = i;
        }
        symbol[i] = new_id;
        symbol[j] = DEAD;
        next[i] = k;
    }
    free(found.items);
    if (t->pairs[p].count == 0) positions_free(&t->pairs[p].positions);
    for (size_t r = 0; r < t->raised_size && !failed; r++) {
        const uint32_t q = t->raised[r];
        if (t->pairs[q].count > 0) failed |= heap_push_entry(t, (HeapEntry){t->pairs[q].count, q});
    }
    return failed ? -1 : 0;
}

static void trainer_free(Trainer *t) {
    for (uint32_t p = 0; p < t->num_pairs; p++) free(t->pairs[p].positions.items);
    free(t->pairs);
    free(t->pair_slots);
    free(t->heap);
    free(t->raised);
    free(t->symbol);
    free(t->next);
    free(t->prev);
    free(t->word_of);
    free(t->word_count);
    free(t->token_bytes);
    free(t->token_offset);
    free(t->token_length);
}

/* Words (pre-tokens of two bytes or more) as symbols, and the first count of every pair. */
static int trainer_load_words(Trainer *t, CountsObject *counts, const uint32_t byte_ids[256]) {
    size_t total = 0, words = 0;
    for (size_t e = 0; e < counts->size; e++) {
        if (counts->entries[e].length >= 2) {
            total += counts->entries[e].length;
            words++;
        }
    }
    if (total >= NONE - 1) return -2;
    const size_t n = total ? total : 1;
    t->symbol = malloc(sizeof(uint32_t) * n);
    t->next = malloc(sizeof(uint32_t) * n);
    t->prev = malloc(sizeof(uint32_t) * n);
    t->word_of = malloc(sizeof(uint32_t) * n);
    t->word_count = malloc(sizeof(int64_t) * (words ? words : 1));
    if (!t->symbol || !t->next || !t->prev || !t->word_of || !t->word_count || trainer_grow_pair_slots(t) < 0) return -1;
    uint32_t position = 0, word = 0;
    for (size_t e = 0; e < counts->size; e++) {
        const Entry *entry = &counts->entries[e];
        if (entry->length < 2) continue;
        const uint8_t *bytes = counts->arena + entry->offset;
        const uint32_t start = position;
        t->word_count[word] = entry->count;
        for (uint32_t k = 0; k < entry->length; k++, position++) {
            t->symbol[position] = byte_ids[bytes[k]];
            t->prev[position] = k ? position - 1 : NONE;
            t->next[position] = k + 1 < entry->length ? position + 1 : NONE;
            t->word_of[position] = word;
        }
        for (uint32_t i = start; i + 1 < position; i++) {
            const uint32_t p = pair_index(t, t->symbol[i], t->symbol[i + 1]);
            if (p == NONE) return -1;
            t->pairs[p].count += entry->count;
            if (positions_push(&t->pairs[p].positions, i) < 0) return -1;
        }
        word++;
    }
    return 0;
}

PyDoc_STRVAR(train_merges_doc,
"train_merges(counts, byte_ids, tokens, num_merges, progress=None) -> list[tuple[int, int]]\n\n"
"Up to `num_merges` BPE merges over the pre-token counts `counts` (a PretokenCounts, emptied),\n"
"as cs336_core.bpe.train.merge_pretoken_counts makes them. `byte_ids[b]` is the id of byte b,\n"
"`tokens[i]` the bytes of id i in the initial vocabulary; merge k makes id len(tokens) + k.\n"
"Returns the merged pairs of ids in order. `progress(done)` is called every 100 merges.");

static PyObject *train_merges(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    PyObject *counts_obj, *byte_ids_obj, *tokens_obj, *progress = Py_None;
    Py_ssize_t num_merges;
    static char *kwlist[] = {"counts", "byte_ids", "tokens", "num_merges", "progress", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!n|O:train_merges", kwlist, &CountsType, &counts_obj,
                                     &byte_ids_obj, &PyList_Type, &tokens_obj, &num_merges, &progress))
        return NULL;
    CountsObject *counts = (CountsObject *)counts_obj;
    const Py_ssize_t num_initial = PyList_GET_SIZE(tokens_obj);
    if (num_merges < 0 || num_initial + num_merges >= (Py_ssize_t)NONE - 1) {
        PyErr_Format(PyExc_ValueError, "num_merges %zd is out of range", num_merges);
        return NULL;
    }
    uint32_t byte_ids[256];
    PyObject *byte_seq = PySequence_Fast(byte_ids_obj, "byte_ids must be a sequence");
    if (byte_seq == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(byte_seq) != 256) {
        Py_DECREF(byte_seq);
        PyErr_SetString(PyExc_ValueError, "byte_ids must hold 256 ids");
        return NULL;
    }
    for (int b = 0; b < 256; b++) {
        const long id = PyLong_AsLong(PySequence_Fast_GET_ITEM(byte_seq, b));
        if (id < 0 || id >= num_initial) {
            Py_DECREF(byte_seq);
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "byte id %ld is not an id of `tokens`", id);
            return NULL;
        }
        byte_ids[b] = (uint32_t)id;
    }
    Py_DECREF(byte_seq);
    if (counts->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the PretokenCounts is in use by another thread");
        return NULL;
    }

    Trainer t = {0};
    const size_t num_tokens = (size_t)(num_initial + num_merges);
    t.token_offset = malloc(sizeof(uint64_t) * (num_tokens + 1));
    t.token_length = malloc(sizeof(uint32_t) * (num_tokens + 1));
    if (t.token_offset == NULL || t.token_length == NULL) {
        trainer_free(&t);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < num_initial; i++) {
        PyObject *token = PyList_GET_ITEM(tokens_obj, i);
        if (!PyBytes_Check(token)) {
            trainer_free(&t);
            PyErr_SetString(PyExc_TypeError, "tokens must be a list of bytes");
            return NULL;
        }
        if (add_token(&t, (const uint8_t *)PyBytes_AS_STRING(token), (uint32_t)PyBytes_GET_SIZE(token)) < 0) {
            trainer_free(&t);
            return PyErr_NoMemory();
        }
    }
    PyObject *result = PyList_New(0);
    if (result == NULL) {
        trainer_free(&t);
        return NULL;
    }
    int status;
    counts->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = trainer_load_words(&t, counts, byte_ids);
    Py_END_ALLOW_THREADS
    counts->busy = 0;
    counts_clear(counts);  /* its memory goes before the pairs' grows */
    if (status == -2) {
        PyErr_SetString(PyExc_ValueError, "the distinct pre-tokens hold 4 GiB or more: too large for train_merges");
        goto fail;
    }
    if (status < 0) goto no_memory;
    Py_BEGIN_ALLOW_THREADS
    for (uint32_t p = 0; p < t.num_pairs && status == 0; p++)
        if (t.pairs[p].count > 0) status = heap_push_entry(&t, (HeapEntry){t.pairs[p].count, p});
    Py_END_ALLOW_THREADS
    if (status < 0) goto no_memory;

    uint32_t ids[200];  /* merges made without the GIL, handed to Python a hundred at a time */
    Py_ssize_t done = 0;
    while (done < num_merges) {
        uint32_t made = 0;
        Py_BEGIN_ALLOW_THREADS
        while (made < 100 && done + made < num_merges) {
            const uint32_t p = pop_most_frequent(&t);
            if (p >= NONE - 1) {
                status = p == NONE ? 1 : -1;  /* 1: no pair left */
                break;
            }
            const uint32_t new_id = (uint32_t)t.num_tokens;
            const uint32_t a = t.pairs[p].a, b = t.pairs[p].b;
            if (add_merged_token(&t, a, b) < 0) {
                status = -1;
                break;
            }
            ids[2 * made] = a;
            ids[2 * made + 1] = b;
            made++;
            if (apply_merge(&t, p, new_id, (uint32_t)(done + made)) < 0) {
                status = -1;
                break;
            }
        }
        Py_END_ALLOW_THREADS
        for (uint32_t m = 0; m < made; m++) {
            PyObject *pair = Py_BuildValue("(II)", ids[2 * m], ids[2 * m + 1]);
            if (pair == NULL || PyList_Append(result, pair) < 0) {
                Py_XDECREF(pair);
                goto fail;
            }
            Py_DECREF(pair);
        }
        done += made;
        if (status < 0) goto no_memory;
        if (PyErr_CheckSignals() < 0) goto fail;
        if (progress != Py_None) {
            PyObject *r = PyObject_CallFunction(progress, "n", done);
            if (r == NULL) goto fail;
            Py_DECREF(r);
        }
        if (status == 1) break;
    }
    trainer_free(&t);
    return result;
no_memory:
    PyErr_NoMemory();
fail:
    trainer_free(&t);
    Py_DECREF(result);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * For tests: the pre-tokenizer and the tables on their own
 */

static int emit_list(void *context, const uint8_t *s, size_t start, size_t end) {
    PyObject *piece = PyBytes_FromStringAndSize((const char *)s + start, (Py_ssize_t)(end - start));
    if (piece == NULL) return -1;
    const int failed = PyList_Append((PyObject *)context, piece);
    Py_DECREF(piece);
    return failed ? -1 : 0;
}

static PyObject *pretokenize(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buffer;
    PyObject *special_tuple = NULL;
    if (!PyArg_ParseTuple(args, "y*|O!:pretokenize", &buffer, &PyTuple_Type, &special_tuple)) return NULL;
    Specials sp = {0};
    PyObject *empty = special_tuple ? NULL : PyTuple_New(0);
    PyObject *result = NULL;
    if (specials_from_tuple(special_tuple ? special_tuple : empty, &sp) == 0) {
        const size_t valid = utf8_valid_length(buffer.buf, (size_t)buffer.len);
        if (valid != (size_t)buffer.len) {
            PyErr_Format(PyExc_ValueError, "invalid UTF-8 at byte %zu", valid);
        } else if ((result = PyList_New(0)) != NULL &&
                   scan_pretokens(buffer.buf, (size_t)buffer.len, &sp, emit_list, result) != 0) {
            Py_CLEAR(result);
        }
    }
    specials_free(&sp);
    Py_XDECREF(empty);
    PyBuffer_Release(&buffer);
    return result;
}

static PyObject *utf8_valid_prefix(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer buffer;
    if (PyObject_GetBuffer(arg, &buffer, PyBUF_SIMPLE) < 0) return NULL;
    const size_t valid = utf8_valid_length(buffer.buf, (size_t)buffer.len);
    PyBuffer_Release(&buffer);
    return PyLong_FromSize_t(valid);
}

static PyObject *unicode_classes(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    (void)module;
    PyObject *result = PyBytes_FromStringAndSize(NULL, 0x110000);
    if (result == NULL) return NULL;
    char *data = PyBytes_AS_STRING(result);
    for (uint32_t cp = 0; cp < 0x110000; cp++) data[cp] = (char)code_point_class(cp);
    return result;
}

static PyMethodDef fasttrain_methods[] = {
    {"train_merges", (PyCFunction)(void (*)(void))train_merges, METH_VARARGS | METH_KEYWORDS, train_merges_doc},
    {"pretokenize", pretokenize, METH_VARARGS,
     "pretokenize(text: bytes, specials: tuple[bytes, ...] = ()) -> list[bytes]: the pre-tokens, for tests."},
    {"utf8_valid_prefix", utf8_valid_prefix, METH_O,
     "utf8_valid_prefix(data) -> int: the length of the longest valid UTF-8 prefix (strict, as Python)."},
    {"unicode_classes", unicode_classes, METH_NOARGS,
     "unicode_classes() -> bytes: the class (0 other, 1 letter, 2 number, 3 space) of every code point."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fasttrain_module = {
    PyModuleDef_HEAD_INIT, "_fasttrain",
    "Optional C accelerator of BPE training: pre-token counting and the merge loop.",
    -1, fasttrain_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fasttrain(void) {
    scan_init();
    if (PyType_Ready(&CountsType) < 0) return NULL;
    PyObject *module = PyModule_Create(&fasttrain_module);
    if (module == NULL) return NULL;
    Py_INCREF(&CountsType);
    if (PyModule_AddObject(module, "PretokenCounts", (PyObject *)&CountsType) < 0 ||
        PyModule_AddStringConstant(module, "UNICODE_CLASSES_REGEX_VERSION", UNICODE_CLASSES_REGEX_VERSION) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* Read a batch of prediction events (JSON objects, one per Kafka value) straight into
 * columns, in one pass over the bytes.
 *
 * Why compiled: a per-event `orjson.loads` builds a dict of every event only for the
 * worker to pull its values out again, and no JSON reader on PyPI beats it on one core
 * for this shape of data (pyarrow's and polars' readers are 2x slower single-threaded,
 * msgspec's typed structs about as fast once the structs are read back out). Scanning
 * for the few fields the monitor needs, with the feature values written into a float
 * array, skips building any of that.
 *
 * The scanner is conservative on purpose. It answers only for a batch in which every
 * value is an event it can read exactly as orjson would; anything else, valid or not,
 * makes it return None and the batch goes through the exact path (`decode.py`), which
 * names each bad event's problem. What makes it give a batch back: a string with an
 * escape sequence; non-ASCII bytes in a field it does not read; a feature that is not
 * one of the given names; a duplicate key; a numeric feature that is not a number or
 * null; a number that is not finite or, for a feature, beyond MAX_MAGNITUDE; an integer
 * outside int64; anything after the object but white space; nesting deeper than 32.
 *
 * Numbers are read correctly rounded (so to the same double orjson gives): Clinger's
 * exact path (at most 2^53 as the digits, a power of ten at most 1e22, one IEEE
 * operation) and CPython's own correctly-rounded reader for the rest.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_ID 256
#define MAX_DEPTH 32
#define MAX_MAGNITUDE 1e100
#define SEGMENT_CACHE 8
/* categories kept per categorical feature: a repeat is the same str (its hash made once) */
#define CATEGORY_CACHE 16

typedef struct {
    const char *p, *e;
} Cur;

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Equal bytes: names, ids and categories are short, where a call to memcmp costs more
 * than the compare. */
static inline int same(const char *a, const char *b, Py_ssize_t n) {
    if (n > 16) return memcmp(a, b, (size_t)n) == 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static inline void ws(Cur *c) {
    /* JSON's four white space bytes are all <= ' ': most bytes are ruled out by one test */
    while (c->p < c->e && (unsigned char)*c->p <= ' ' &&
           (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int expect(Cur *c, char ch) {
    ws(c);
    if (c->p < c->e && *c->p == ch) {
        c->p++;
        return 0;
    }
    return -1;
}

/* After an object's member or an array's item: 1 when another follows (its comma read),
 * 0 at the end (`close` read), -1 for anything else. */
static inline int more(Cur *c, char close) {
    ws(c);
    if (c->p < c->e && *c->p == ',') {
        c->p++;
        return 1;
    }
    return expect(c, close) < 0 ? -1 : 0;
}

/* Only white space left: the value held one document. */
static inline int at_end(Cur *c) {
    ws(c);
    return c->p == c->e;
}

/* What a byte inside a string is: 0 an ordinary ASCII byte, else the closing quote, a
 * backslash or control character (refused), or a non-ASCII byte. */
enum { B_QUOTE = 1, B_BAD = 2, B_HIGH = 4 };
static unsigned char BYTE_CLASS[256];

static void init_classes(void) {
    for (int b = 0; b < 256; b++)
        BYTE_CLASS[b] = b < 0x20 ? B_BAD : b >= 0x80 ? B_HIGH : 0;
    BYTE_CLASS['"'] = B_QUOTE;
    BYTE_CLASS['\\'] = B_BAD;
}

/* A string's bytes between its quotes. No escapes (a key spelled with one could name a
 * known field), no control characters (invalid JSON). `high` says non-ASCII bytes are
 * there: they are valid only if they decode as UTF-8. */
static int str_span(Cur *c, const char **s, Py_ssize_t *n, int *high) {
    ws(c);
    if (c->p >= c->e || *c->p != '"') return -1;
    const char *q = ++c->p;
    int h = 0;
    for (;;) {
        /* eight bytes at a time while none is a quote, a backslash, a control character
         * or non-ASCII (the word tests below are exact for "has such a byte") */
        while (c->e - q >= 8) {
            uint64_t w;
            memcpy(&w, q, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
            uint64_t hit = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                           ((w - ones * 0x20) & ~w) | w;
            if (hit & highs) break;
            q += 8;
        }
        while (q < c->e && BYTE_CLASS[(unsigned char)*q] == 0) q++;
        if (q >= c->e) return -1;
        unsigned char k = BYTE_CLASS[(unsigned char)*q];
        if (k == B_QUOTE) break;
        if (k == B_BAD) return -1;
        h = 1;
        q++;
    }
    *s = c->p;
    *n = q - c->p;
    *high = h;
    c->p = q + 1;
    return 0;
}

/* A new str of a span, or NULL (no exception set) when its bytes are not UTF-8. */
static PyObject *make_str(const char *s, Py_ssize_t n, int high) {
    if (!high) {
        PyObject *o = PyUnicode_New(n, 127);
        if (o == NULL) return NULL;
        memcpy(PyUnicode_DATA(o), s, (size_t)n);
        return o;
    }
    PyObject *o = PyUnicode_DecodeUTF8(s, n, "strict");
    if (o == NULL) PyErr_Clear();
    return o;
}

typedef struct {
    double d;      /* the value as a double (finite) */
    int is_int;    /* written with no fraction and no exponent */
    long long iv;  /* the value, when is_int */
} Num;

static inline int is_digit(char ch) { return (unsigned char)(ch - '0') < 10; }

/* Whether the x87 unit rounds to its full 64-bit mantissa now (Linux's default; a
 * library may set it to 53 bits, and then the long double path would round twice
 * unseen): read at the start of each scan. */
static int extended;

static void check_precision(void) {
#if LDBL_MANT_DIG == 64
    volatile long double one = 1.0L, tiny = 0x1p-63L;
    volatile long double sum = one + tiny;
    extended = sum != one;
#else
    extended = 0;
#endif
}

/* A JSON number, by the grammar -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(Cur *c, Num *out) {
    ws(c);
    const char *start = c->p, *q = c->p, *e = c->e;
    int neg = 0;
    if (q < e && *q == '-') {
        neg = 1;
        q++;
    }
    /* the digits are accumulated as they are read: past 19 of them the sum wraps (no
     * harm: it is used only when they fit) */
    uint64_t m = 0;
    const char *int_start = q;
    while (q < e && is_digit(*q)) m = m * 10 + (uint64_t)(*q++ - '0');
    Py_ssize_t int_len = q - int_start;
    if (int_len == 0 || (int_len > 1 && *int_start == '0')) return -1;
    Py_ssize_t frac_len = 0;
    if (q < e && *q == '.') {
        const char *frac_start = ++q;
        while (q < e && is_digit(*q)) m = m * 10 + (uint64_t)(*q++ - '0');
        frac_len = q - frac_start;
        if (frac_len == 0) return -1;
    }
    int is_int = frac_len == 0;
    long exp10 = 0;
    if (q < e && (*q == 'e' || *q == 'E')) {
        is_int = 0;
        q++;
        int eneg = 0;
        if (q < e && (*q == '+' || *q == '-')) {
            eneg = *q == '-';
            q++;
        }
        const char *f = q;
        while (q < e && is_digit(*q)) {
            if (exp10 < 100000) exp10 = exp10 * 10 + (*q - '0');
            q++;
        }
        if (q == f) return -1;
        if (eneg) exp10 = -exp10;
    }
    c->p = q;
    out->is_int = is_int;
    /* at most 19 digits in all (leading zeros of a fraction included) fit a uint64 */
    int fits = int_len + frac_len <= 19;
    if (is_int) {
        /* orjson gives an int here; beyond int64 the exact path decides */
        if (!fits || m > (uint64_t)INT64_MAX) return -1;
        out->iv = neg ? -(long long)m : (long long)m;
        out->d = (double)out->iv; /* correctly rounded, as Python's float(int) */
        return 0;
    }
    long e10 = exp10 - (long)frac_len;
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0 /* doubles rounded as doubles */
    if (fits && m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)m;
        d = e10 < 0 ? d / POW10[-e10] : d * POW10[e10];
        out->d = neg ? -d : d;
        return 0;
    }
#endif
#if LDBL_MANT_DIG == 64
    /* 17 to 19 digits (an epoch time with its fraction): exact in the x87 format's 64-bit
     * mantissa, as is a power of ten up to 1e27. One division or product rounds the value
     * to 64 bits, then to 53: right unless the first rounding lands on a midpoint between
     * two doubles (the second could then go the wrong way), which is checked. */
    if (fits && e10 >= -27 && e10 <= 27 && extended) {
        long double p = 1.0L;
        for (long k = e10 < 0 ? -e10 : e10; k > 0; k--) p *= 10.0L;
        long double v = e10 < 0 ? (long double)m / p : (long double)m * p;
        double d = (double)v;
        long double up = ((long double)d + (long double)nextafter(d, INFINITY)) / 2.0L;
        long double down = ((long double)d + (long double)nextafter(d, -INFINITY)) / 2.0L;
        if (v != up && v != down && isfinite(d) && d >= DBL_MIN) {
            out->d = neg ? -d : d;
            return 0;
        }
    }
#endif
    char buf[128];
    Py_ssize_t len = q - start;
    if (len >= (Py_ssize_t)sizeof(buf)) return -1;
    memcpy(buf, start, (size_t)len);
    buf[len] = 0;
    double d = PyOS_string_to_double(buf, NULL, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (!isfinite(d)) return -1; /* orjson refuses a number that overflows a double */
    out->d = d;
    return 0;
}

static PyObject *num_object(const Num *n) {
    return n->is_int ? PyLong_FromLongLong(n->iv) : PyFloat_FromDouble(n->d);
}

static int literal(Cur *c, const char *word, size_t len) {
    if ((size_t)(c->e - c->p) < len || memcmp(c->p, word, len) != 0) return -1;
    c->p += len;
    return 0;
}

/* Skip any JSON value, checking it is one (a field nothing here reads). */
static int skip_value(Cur *c, int depth) {
    if (depth > MAX_DEPTH) return -1;
    ws(c);
    if (c->p >= c->e) return -1;
    char ch = *c->p;
    const char *s;
    Py_ssize_t n;
    int high;
    Num num;
    switch (ch) {
    case '"':
        if (str_span(c, &s, &n, &high) < 0 || high) return -1;
        return 0;
    case '{':
        c->p++;
        ws(c);
        if (c->p < c->e && *c->p == '}') {
            c->p++;
            return 0;
        }
        for (;;) {
            if (str_span(c, &s, &n, &high) < 0 || high) return -1;
            if (expect(c, ':') < 0 || skip_value(c, depth + 1) < 0) return -1;
            int next = more(c, '}');
            if (next <= 0) return next;
        }
    case '[':
        c->p++;
        ws(c);
        if (c->p < c->e && *c->p == ']') {
            c->p++;
            return 0;
        }
        for (;;) {
            if (skip_value(c, depth + 1) < 0) return -1;
            int next = more(c, ']');
            if (next <= 0) return next;
        }
    case 't':
        return literal(c, "true", 4);
    case 'f':
        return literal(c, "false", 5);
    case 'n':
        return literal(c, "null", 4);
    default:
        return number(c, &num);
    }
}

/* A scalar as orjson gives it: str, int, float, bool or None (`*obj` a new reference).
 * Objects and arrays are refused. */
static int scalar(Cur *c, PyObject **obj, int allow_float) {
    ws(c);
    if (c->p >= c->e) return -1;
    char ch = *c->p;
    if (ch == '"') {
        const char *s;
        Py_ssize_t n;
        int high;
        if (str_span(c, &s, &n, &high) < 0) return -1;
        *obj = make_str(s, n, high);
        return *obj == NULL ? -1 : 0;
    }
    if (ch == 't' || ch == 'f' || ch == 'n') {
        PyObject *v = ch == 't' ? Py_True : ch == 'f' ? Py_False : Py_None;
        if (literal(c, ch == 't' ? "true" : ch == 'f' ? "false" : "null", ch == 'f' ? 5 : 4) < 0)
            return -1;
        Py_INCREF(v);
        *obj = v;
        return 0;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        Num num;
        if (number(c, &num) < 0 || (!num.is_int && !allow_float)) return -1;
        *obj = num_object(&num);
        return *obj == NULL ? -1 : 0;
    }
    return -1;
}

/* A feature name's index in the names (numeric ones first). */
typedef struct {
    const char *s;
    Py_ssize_t n;
    int plain; /* no byte a JSON string must escape: it can be matched in place */
} Name;

static inline Py_ssize_t find(const Name *names, Py_ssize_t k, const char *s, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < k; j++)
        if (names[j].n == n && same(names[j].s, s, n)) return j;
    return -1;
}

/* A str of the same bytes as the last one made, or a new one (model ids and versions
 * repeat through a batch). `last` holds a new reference. */
static PyObject *cached_str(PyObject **last, const char *s, Py_ssize_t n, int high) {
    if (*last != NULL) {
        Py_ssize_t ln;
        const char *ls = PyUnicode_AsUTF8AndSize(*last, &ln);
        if (ls != NULL && ln == n && same(ls, s, n)) {
            Py_INCREF(*last);
            return *last;
        }
    }
    PyObject *o = make_str(s, n, high);
    if (o == NULL) return NULL;
    Py_XDECREF(*last);
    Py_INCREF(o);
    *last = o;
    return o;
}

enum {
    K_MODEL = 1,
    K_PID = 2,
    K_VERSION = 4,
    K_TIME = 8,
    K_FEATURES = 16,
    K_PREDICTION = 32,
    K_SEGMENTS = 64,
};

/* flags of the whole batch, for the caller's checks */
enum { F_SCALAR_PREDICTION = 1, F_OBJECT_PREDICTION = 2 };

typedef struct {
    Py_ssize_t n, kn, kc;
    const Name *names; /* kn numeric, then kc categorical */
    double *numbers;     /* n x kn, row-major */
    Py_ssize_t *seen;    /* kn + kc: the event (1-based) that last set each feature */
    PyObject *model_ids, *pids, *versions, *stamps, *predictions, *scores, *labels, *segments;
    PyObject *categories; /* list of kc lists */
    PyObject **category_cache; /* kc x CATEGORY_CACHE strs, or NULL slots */
    int *category_next;        /* kc: the slot a new category takes (round robin) */
    PyObject *last_model, *last_version;
    /* segments objects as sent, with the dict each became: a repeat is the same dict */
    struct {
        const char *s;
        Py_ssize_t n;
        PyObject *d;
    } seen_segments[SEGMENT_CACHE];
    int next_segments;
    int flags;
} Out;

/* A categorical feature's string value: the str made for the same bytes before, if one
 * of the last CATEGORY_CACHE distinct values of the feature (a new reference). */
static int category(Cur *c, Out *o, Py_ssize_t col, PyObject **obj) {
    const char *s;
    Py_ssize_t n;
    int high;
    if (str_span(c, &s, &n, &high) < 0) return -1;
    PyObject **cache = o->category_cache + col * CATEGORY_CACHE;
    for (int k = 0; k < CATEGORY_CACHE && cache[k] != NULL; k++) {
        Py_ssize_t kn;
        const char *ks = PyUnicode_AsUTF8AndSize(cache[k], &kn);
        if (ks != NULL && kn == n && same(ks, s, n)) {
            Py_INCREF(cache[k]);
            *obj = cache[k];
            return 0;
        }
    }
    PyObject *v = make_str(s, n, high);
    if (v == NULL) return -1;
    int slot = o->category_next[col];
    o->category_next[col] = (slot + 1) % CATEGORY_CACHE;
    Py_XSETREF(cache[slot], v);
    Py_INCREF(v);
    *obj = v;
    return 0;
}

/* The features object. Events list their features in one order, so the name after the
 * last one found is tried first, in place: its quoted bytes against the input's. */
static int features(Cur *c, Out *o, Py_ssize_t i) {
    if (expect(c, '{') < 0) return -1;
    ws(c);
    if (c->p < c->e && *c->p == '}') {
        c->p++;
        return 0;
    }
    Py_ssize_t guess = 0, k = o->kn + o->kc;
    for (;;) {
        ws(c);
        Py_ssize_t j = -1;
        if (guess < k) {
            const Name *g = &o->names[guess];
            if (g->plain && c->e - c->p >= g->n + 2 && c->p[0] == '"' && c->p[g->n + 1] == '"' &&
                same(c->p + 1, g->s, g->n)) {
                j = guess;
                c->p += g->n + 2;
            }
        }
        if (j < 0) {
            const char *s;
            Py_ssize_t n;
            int high;
            if (str_span(c, &s, &n, &high) < 0) return -1;
            j = find(o->names, k, s, n);
            if (j < 0) return -1; /* a feature not named: the exact path counts it */
        }
        if (expect(c, ':') < 0 || o->seen[j] == i + 1) return -1;
        o->seen[j] = i + 1;
        guess = j + 1;
        if (j < o->kn) {
            ws(c);
            if (c->p < c->e && *c->p == 'n') {
                if (literal(c, "null", 4) < 0) return -1; /* missing: NaN stays */
            } else {
                Num num;
                if (number(c, &num) < 0 || fabs(num.d) > MAX_MAGNITUDE) return -1;
                o->numbers[i * o->kn + j] = num.d;
            }
        } else {
            PyObject *v;
            ws(c);
            if (c->p < c->e && *c->p == '"') {
                if (category(c, o, j - o->kn, &v) < 0) return -1;
            } else if (scalar(c, &v, 1) < 0) {
                return -1;
            }
            PyObject *col = PyList_GET_ITEM(o->categories, j - o->kn);
            PyObject *old = PyList_GET_ITEM(col, i);
            PyList_SET_ITEM(col, i, v);
            Py_DECREF(old);
        }
        int next = more(c, '}');
        if (next <= 0) return next;
    }
}

/* The prediction: a bare class or number, or an object of "score" and "label". */
static int prediction(Cur *c, Out *o, Py_ssize_t i) {
    ws(c);
    if (c->p >= c->e) return -1;
    if (*c->p != '{') {
        PyObject *v;
        if (scalar(c, &v, 1) < 0) return -1;
        if (v == Py_None) {
            Py_DECREF(v);
            return -1; /* the exact path: missing_field */
        }
        PyList_SET_ITEM(o->predictions, i, v);
        o->flags |= F_SCALAR_PREDICTION;
        return 0;
    }
    o->flags |= F_OBJECT_PREDICTION;
    Py_INCREF(Py_None);
    PyList_SET_ITEM(o->predictions, i, Py_None);
    c->p++;
    ws(c);
    if (c->p < c->e && *c->p == '}') {
        c->p++;
        return 0;
    }
    int got = 0;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        int high;
        if (str_span(c, &s, &n, &high) < 0 || expect(c, ':') < 0) return -1;
        if (n == 5 && memcmp(s, "score", 5) == 0) {
            if (got & 1) return -1;
            got |= 1;
            PyObject *v;
            if (scalar(c, &v, 1) < 0) return -1;
            if (!(v == Py_None || PyFloat_CheckExact(v) || PyLong_CheckExact(v))) {
                Py_DECREF(v);
                return -1;
            }
            PyObject *old = PyList_GET_ITEM(o->scores, i);
            PyList_SET_ITEM(o->scores, i, v);
            Py_DECREF(old);
        } else if (n == 5 && memcmp(s, "label", 5) == 0) {
            if (got & 2) return -1;
            got |= 2;
            PyObject *v;
            if (scalar(c, &v, 0) < 0) return -1; /* a float label: the exact path decides */
            PyObject *old = PyList_GET_ITEM(o->labels, i);
            PyList_SET_ITEM(o->labels, i, v);
            Py_DECREF(old);
        } else if (high || skip_value(c, 1) < 0) {
            return -1;
        }
        int next = more(c, '}');
        if (next <= 0) return next;
    }
}

/* Segments: null, or an object of str, int and bool values (a dict, in the order sent). */
static int segments_dict(Cur *c, PyObject *d);

/* Segments: null, or an object of str, int and bool values. Events repeat a few
 * combinations (regions, tiers): an object sent as the same bytes as one of the last
 * few read is the same dict, so whatever spells it later spells it once. */
static int segments(Cur *c, Out *o, Py_ssize_t i) {
    ws(c);
    if (c->p < c->e && *c->p == 'n') return literal(c, "null", 4);
    const char *start = c->p;
    Cur probe = *c;
    int spanned = skip_value(&probe, 1) == 0;
    Py_ssize_t n = probe.p - start;
    PyObject *old = PyList_GET_ITEM(o->segments, i);
    if (spanned) {
        for (int k = 0; k < SEGMENT_CACHE; k++) {
            if (o->seen_segments[k].d != NULL && o->seen_segments[k].n == n &&
                same(o->seen_segments[k].s, start, n)) {
                Py_INCREF(o->seen_segments[k].d);
                PyList_SET_ITEM(o->segments, i, o->seen_segments[k].d);
                Py_DECREF(old);
                c->p = probe.p;
                return 0;
            }
        }
    }
    PyObject *d = PyDict_New();
    if (d == NULL) return -1;
    PyList_SET_ITEM(o->segments, i, d);
    Py_DECREF(old);
    if (segments_dict(c, d) < 0) return -1;
    if (spanned) {
        int k = o->next_segments;
        o->next_segments = (k + 1) % SEGMENT_CACHE;
        Py_XDECREF(o->seen_segments[k].d);
        Py_INCREF(d);
        o->seen_segments[k].s = start;
        o->seen_segments[k].n = n;
        o->seen_segments[k].d = d;
    }
    return 0;
}

/* The object's entries into `d`. */
static int segments_dict(Cur *c, PyObject *d) {
    if (expect(c, '{') < 0) return -1;
    ws(c);
    if (c->p < c->e && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const char *s;
        Py_ssize_t n;
        int high;
        if (str_span(c, &s, &n, &high) < 0 || expect(c, ':') < 0) return -1;
        PyObject *key = make_str(s, n, high);
        if (key == NULL) return -1;
        PyObject *v;
        if (scalar(c, &v, 0) < 0) {
            Py_DECREF(key);
            return -1;
        }
        int dup = PyDict_Contains(d, key);
        int bad = v == Py_None || dup != 0 || PyDict_SetItem(d, key, v) < 0;
        Py_DECREF(key);
        Py_DECREF(v);
        if (bad) {
            PyErr_Clear();
            return -1;
        }
        int next = more(c, '}');
        if (next <= 0) return next;
    }
}

static int an_id(Cur *c, PyObject **obj, PyObject **last) {
    const char *s;
    Py_ssize_t n;
    int high;
    if (str_span(c, &s, &n, &high) < 0) return -1;
    *obj = last != NULL ? cached_str(last, s, n, high) : make_str(s, n, high);
    if (*obj == NULL) return -1;
    Py_ssize_t len = PyUnicode_GET_LENGTH(*obj);
    if (len < 1 || len > MAX_ID) {
        Py_DECREF(*obj);
        return -1;
    }
    return 0;
}

static int event(Cur *c, Out *o, Py_ssize_t i) {
    if (expect(c, '{') < 0) return -1;
    int got = 0;
    ws(c);
    if (c->p < c->e && *c->p == '}') return -1;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        int high, key = 0;
        if (str_span(c, &s, &n, &high) < 0 || expect(c, ':') < 0) return -1;
        switch (n) {
        case 8:
            if (memcmp(s, "model_id", 8) == 0) key = K_MODEL;
            else if (memcmp(s, "features", 8) == 0) key = K_FEATURES;
            else if (memcmp(s, "segments", 8) == 0) key = K_SEGMENTS;
            break;
        case 9:
            if (memcmp(s, "timestamp", 9) == 0) key = K_TIME;
            break;
        case 10:
            if (memcmp(s, "prediction", 10) == 0) key = K_PREDICTION;
            break;
        case 13:
            if (memcmp(s, "prediction_id", 13) == 0) key = K_PID;
            else if (memcmp(s, "model_version", 13) == 0) key = K_VERSION;
            break;
        default:
            break;
        }
        if (key & got) return -1; /* a duplicate key: orjson keeps the last, so decide there */
        got |= key;
        PyObject *v;
        switch (key) {
        case K_MODEL:
            if (an_id(c, &v, &o->last_model) < 0) return -1;
            PyList_SET_ITEM(o->model_ids, i, v);
            break;
        case K_PID:
            if (an_id(c, &v, NULL) < 0) return -1;
            PyList_SET_ITEM(o->pids, i, v);
            break;
        case K_VERSION: {
            ws(c);
            if (c->p < c->e && *c->p == 'n') {
                if (literal(c, "null", 4) < 0) return -1;
                break;
            }
            const char *vs;
            Py_ssize_t vn;
            int vh;
            if (str_span(c, &vs, &vn, &vh) < 0) return -1;
            v = cached_str(&o->last_version, vs, vn, vh);
            if (v == NULL) return -1;
            PyObject *old = PyList_GET_ITEM(o->versions, i);
            PyList_SET_ITEM(o->versions, i, v);
            Py_DECREF(old);
            break;
        }
        case K_TIME: {
            if (scalar(c, &v, 1) < 0) return -1;
            if (v == Py_True || v == Py_False) {
                Py_DECREF(v);
                return -1;
            }
            PyObject *old = PyList_GET_ITEM(o->stamps, i);
            PyList_SET_ITEM(o->stamps, i, v);
            Py_DECREF(old);
            break;
        }
        case K_FEATURES:
            if (features(c, o, i) < 0) return -1;
            break;
        case K_PREDICTION:
            if (prediction(c, o, i) < 0) return -1;
            break;
        case K_SEGMENTS:
            if (segments(c, o, i) < 0) return -1;
            break;
        default:
            if (high || skip_value(c, 1) < 0) return -1;
        }
        int next = more(c, '}');
        if (next < 0) return -1;
        if (next == 0) break;
    }
    if (!at_end(c)) return -1; /* more than one document */
    int required = K_MODEL | K_PID | K_FEATURES | K_PREDICTION;
    return (got & required) == required ? 0 : -1;
}

static int names_of(PyObject *tuple, Name *out) {
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(tuple); j++) {
        PyObject *name = PyTuple_GET_ITEM(tuple, j);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "feature names must be a tuple of str");
            return -1;
        }
        out[j].s = PyUnicode_AsUTF8AndSize(name, &out[j].n);
        if (out[j].s == NULL) return -1;
        out[j].plain = 1;
        for (Py_ssize_t b = 0; b < out[j].n; b++)
            if (BYTE_CLASS[(unsigned char)out[j].s[b]] & (B_QUOTE | B_BAD)) out[j].plain = 0;
    }
    return 0;
}

static PyObject *filled(Py_ssize_t n, PyObject *v) {
    PyObject *l = PyList_New(n);
    if (l == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(v);
        PyList_SET_ITEM(l, i, v);
    }
    return l;
}

PyDoc_STRVAR(scan_doc,
             "scan(values, numeric, categorical, max_bytes)\n--\n\n"
             "Read a batch of prediction events into columns, or None when one of them is\n"
             "not an event this reader takes as the exact path would (see the module).\n\n"
             "values: list of bytes; numeric, categorical: tuples of feature names.\n"
             "Returns (model_ids, prediction_ids, versions, timestamps, numbers, categories,\n"
             "predictions, scores, labels, segments, flags): lists per event, `numbers` a\n"
             "bytearray of n x len(numeric) float64 (NaN where missing), row-major,\n"
             "`categories` one list per categorical feature (None where missing).");

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *values, *num_names, *cat_names;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "O!OOn", &PyList_Type, &values, &num_names, &cat_names,
                          &max_bytes))
        return NULL;
    Out o;
    memset(&o, 0, sizeof(o));
    Name *names = NULL;
    PyObject *result = NULL, *numbers = NULL, *held = NULL;
    if (!PyTuple_Check(num_names) || !PyTuple_Check(cat_names)) {
        PyErr_SetString(PyExc_TypeError, "feature names must be a tuple of str");
        return NULL;
    }
    o.kn = PyTuple_GET_SIZE(num_names);
    o.kc = PyTuple_GET_SIZE(cat_names);
    names = PyMem_Calloc((size_t)(o.kn + o.kc + 1), sizeof(Name));
    if (names == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (names_of(num_names, names) < 0 || names_of(cat_names, names + o.kn) < 0) goto done;
    o.names = names;
    /* a tuple of the values: the segments cache points into them, and nothing (not even
     * a finalizer run by the allocator) can take them from under the scan */
    held = PyList_AsTuple(values);
    if (held == NULL) goto done;
    check_precision();
    o.n = PyTuple_GET_SIZE(held);
    Py_ssize_t n = o.n;
    numbers = PyByteArray_FromStringAndSize(NULL, n * o.kn * (Py_ssize_t)sizeof(double));
    o.seen = PyMem_Calloc((size_t)(o.kn + o.kc + 1), sizeof(Py_ssize_t));
    o.category_cache = PyMem_Calloc((size_t)(o.kc * CATEGORY_CACHE + 1), sizeof(PyObject *));
    o.category_next = PyMem_Calloc((size_t)(o.kc + 1), sizeof(int));
    if (numbers == NULL || o.seen == NULL || o.category_cache == NULL || o.category_next == NULL)
        goto done;
    o.numbers = (double *)PyByteArray_AS_STRING(numbers);
    for (Py_ssize_t i = 0; i < n * o.kn; i++) o.numbers[i] = NAN;
    if (!(o.model_ids = PyList_New(n)) || !(o.pids = PyList_New(n)) ||
        !(o.versions = filled(n, Py_None)) || !(o.stamps = filled(n, Py_None)) ||
        !(o.predictions = PyList_New(n)) || !(o.scores = filled(n, Py_None)) ||
        !(o.labels = filled(n, Py_None)) || !(o.segments = filled(n, Py_None)) ||
        !(o.categories = PyList_New(o.kc)))
        goto done;
    for (Py_ssize_t j = 0; j < o.kc; j++) {
        PyObject *col = filled(n, Py_None);
        if (col == NULL) goto done;
        PyList_SET_ITEM(o.categories, j, col);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyTuple_GET_ITEM(held, i);
        if (!PyBytes_CheckExact(raw) || PyBytes_GET_SIZE(raw) > max_bytes) goto refuse;
        Cur c = {PyBytes_AS_STRING(raw), PyBytes_AS_STRING(raw) + PyBytes_GET_SIZE(raw)};
        /* a list freed with empty slots is fine (they are NULL); one returned is not,
         * and every event read in full fills the model id, id and prediction */
        if (event(&c, &o, i) < 0) goto refuse;
    }
    result = Py_BuildValue("(OOOOOOOOOOi)", o.model_ids, o.pids, o.versions, o.stamps, numbers,
                           o.categories, o.predictions, o.scores, o.labels, o.segments, o.flags);
    goto done;
refuse:
    PyErr_Clear();
    Py_INCREF(Py_None);
    result = Py_None;
done:
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    Py_XDECREF(numbers);
    Py_XDECREF(held);
    Py_XDECREF(o.model_ids);
    Py_XDECREF(o.pids);
    Py_XDECREF(o.versions);
    Py_XDECREF(o.stamps);
    Py_XDECREF(o.predictions);
    Py_XDECREF(o.scores);
    Py_XDECREF(o.labels);
    Py_XDECREF(o.segments);
    Py_XDECREF(o.categories);
    Py_XDECREF(o.last_model);
    Py_XDECREF(o.last_version);
    for (int k = 0; k < SEGMENT_CACHE; k++) Py_XDECREF(o.seen_segments[k].d);
    if (o.category_cache != NULL)
        for (Py_ssize_t k = 0; k < o.kc * CATEGORY_CACHE; k++) Py_XDECREF(o.category_cache[k]);
    PyMem_Free(o.category_cache);
    PyMem_Free(o.category_next);
    PyMem_Free(o.seen);
    PyMem_Free(names);
    return result;
}

/* One label event: {"model_id", "prediction_id", "label", "timestamp"?, anything else}. */
static int label_event(Cur *c, Py_ssize_t i, PyObject *model_ids, PyObject *pids,
                       PyObject *labels, PyObject *stamps, PyObject **last_model) {
    if (expect(c, '{') < 0) return -1;
    int got = 0;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        int high, key = 0;
        if (str_span(c, &s, &n, &high) < 0 || expect(c, ':') < 0) return -1;
        if (n == 8 && memcmp(s, "model_id", 8) == 0) key = K_MODEL;
        else if (n == 13 && memcmp(s, "prediction_id", 13) == 0) key = K_PID;
        else if (n == 5 && memcmp(s, "label", 5) == 0) key = K_PREDICTION;
        else if (n == 9 && memcmp(s, "timestamp", 9) == 0) key = K_TIME;
        if (key & got) return -1;
        got |= key;
        PyObject *v, *old;
        switch (key) {
        case K_MODEL:
            if (an_id(c, &v, last_model) < 0) return -1;
            PyList_SET_ITEM(model_ids, i, v);
            break;
        case K_PID:
            if (an_id(c, &v, NULL) < 0) return -1;
            PyList_SET_ITEM(pids, i, v);
            break;
        case K_PREDICTION:
            if (scalar(c, &v, 1) < 0) return -1;
            if (v == Py_None) { /* the exact path: missing_field */
                Py_DECREF(v);
                return -1;
            }
            PyList_SET_ITEM(labels, i, v);
            break;
        case K_TIME:
            if (scalar(c, &v, 1) < 0) return -1;
            if (v == Py_True || v == Py_False) {
                Py_DECREF(v);
                return -1;
            }
            old = PyList_GET_ITEM(stamps, i);
            PyList_SET_ITEM(stamps, i, v);
            Py_DECREF(old);
            break;
        default:
            if (high || skip_value(c, 1) < 0) return -1;
        }
        int next = more(c, '}');
        if (next < 0) return -1;
        if (next == 0) break;
    }
    if (!at_end(c)) return -1; /* more than one document */
    int required = K_MODEL | K_PID | K_PREDICTION;
    return (got & required) == required ? 0 : -1;
}

PyDoc_STRVAR(scan_labels_doc,
             "scan_labels(values, max_bytes)\n--\n\n"
             "Read a batch of label events into columns: (model_ids, prediction_ids,\n"
             "labels, timestamps), each as orjson gives it, or None when one of them is\n"
             "not an event this reader takes as the exact path would.");

static PyObject *scan_labels(PyObject *self, PyObject *args) {
    PyObject *values;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &values, &max_bytes)) return NULL;
    PyObject *held = PyList_AsTuple(values); /* see scan */
    if (held == NULL) return NULL;
    check_precision();
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    PyObject *model_ids = PyList_New(n), *pids = PyList_New(n), *labels = PyList_New(n);
    PyObject *stamps = filled(n, Py_None), *last_model = NULL, *result = NULL;
    if (model_ids == NULL || pids == NULL || labels == NULL || stamps == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyTuple_GET_ITEM(held, i);
        if (!PyBytes_CheckExact(raw) || PyBytes_GET_SIZE(raw) > max_bytes) goto refuse;
        Cur c = {PyBytes_AS_STRING(raw), PyBytes_AS_STRING(raw) + PyBytes_GET_SIZE(raw)};
        if (label_event(&c, i, model_ids, pids, labels, stamps, &last_model) < 0) goto refuse;
    }
    result = PyTuple_Pack(4, model_ids, pids, labels, stamps);
    goto done;
refuse:
    PyErr_Clear();
    Py_INCREF(Py_None);
    result = Py_None;
done:
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    Py_XDECREF(model_ids);
    Py_XDECREF(pids);
    Py_XDECREF(labels);
    Py_XDECREF(stamps);
    Py_XDECREF(last_model);
    Py_DECREF(held);
    return result;
}

PyDoc_STRVAR(bin_columns_doc,
             "bin_columns(x, edges, out)\n--\n\n"
             "`profile.bin_index` for every column of `x` (n x k float64, C order) at once,\n"
             "into `out` (n x k int64): each value's count of `edges[j]` at or below it\n"
             "(numpy's searchsorted, side right; NaN after every edge), the last edge itself\n"
             "in the last inner bin. One pass over the rows instead of k strided searches.");

static PyObject *bin_columns(PyObject *self, PyObject *args) {
    PyObject *xo, *edges, *outo;
    if (!PyArg_ParseTuple(args, "OO!O", &xo, &PyList_Type, &edges, &outo)) return NULL;
    Py_buffer x, out;
    if (PyObject_GetBuffer(xo, &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(outo, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(edges);
    Py_buffer *e = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Py_buffer));
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    if (e == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (x.itemsize != 8 || strcmp(x.format, "d") != 0 || out.itemsize != 8 ||
        (strcmp(out.format, "q") != 0 && strcmp(out.format, "l") != 0) || x.ndim != 2 ||
        out.ndim != 2 || x.shape[1] != k || out.shape[0] != x.shape[0] || out.shape[1] != k) {
        PyErr_SetString(PyExc_ValueError, "x must be n x len(edges) float64, out n x len(edges) int64");
        goto done;
    }
    for (; got < k; got++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(edges, got), &e[got],
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            goto done;
        if (e[got].itemsize != 8 || strcmp(e[got].format, "d") != 0 || e[got].len == 0) {
            got++;
            PyErr_SetString(PyExc_ValueError, "edges must be non-empty float64 arrays");
            goto done;
        }
    }
    const double *xs = x.buf;
    int64_t *bins = out.buf;
    Py_ssize_t n = x.shape[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j = 0; j < k; j++) {
            const double *ed = e[j].buf;
            Py_ssize_t m = e[j].len / 8, lo;
            double v = xs[i * k + j];
            if (v != v) {
                lo = m; /* NaN sorts after everything */
            } else if (v == ed[m - 1]) {
                lo = m - 1; /* the maximum itself: in the last inner bin */
            } else { /* the first edge above v, without a branch per step to mispredict */
                const double *b = ed;
                for (Py_ssize_t len = m; len > 1;) {
                    Py_ssize_t half = len >> 1;
                    b = b[half] <= v ? b + half : b;
                    len -= half;
                }
                lo = (b - ed) + (*b <= v);
            }
            bins[i * k + j] = lo;
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (Py_ssize_t j = 0; j < got; j++) PyBuffer_Release(&e[j]);
    PyMem_Free(e);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* A buffer of `items` elements of one format ("d" or "q"/"l"), C order, or an error. */
static int view(PyObject *o, Py_buffer *b, int writable, char kind, Py_ssize_t items) {
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    int ok = items >= 0 && items <= PY_SSIZE_T_MAX / 8 && b->itemsize == 8 && b->len == items * 8 &&
             (kind == 'd' ? strcmp(b->format, "d") == 0
                          : strcmp(b->format, "q") == 0 || strcmp(b->format, "l") == 0);
    if (!ok) {
        PyBuffer_Release(b);
        PyErr_SetString(PyExc_ValueError, "an array of another type or size than the batch's");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(group_moments_doc,
             "group_moments(x, bins, groups, offsets, low, high, total, hist, n_ok, n_out,\n"
             "              sums, sums_sq, lows, highs)\n--\n\n"
             "Per group (each row's entry of `groups`, 0 to G-1) and column j of `x` (n x k\n"
             "float64; `bins` n x k int64): the histogram into `hist` (G x total int64,\n"
             "column j's bins from offsets[j]), the values present (not NaN) into `n_ok`,\n"
             "those outside [low[j], high[j]] into `n_out`, the sum and the sum of squares in\n"
             "row order into `sums` and `sums_sq` (start them at -0.0: then they equal\n"
             "numpy's reduceat over the rows sorted by group, a missing value adding 0.0),\n"
             "the minimum and maximum into `lows` and `highs` (start them at inf and -inf).\n"
             "Every output is G x k (hist G x total) and added into; one pass over the rows.");

static PyObject *group_moments(PyObject *self, PyObject *args) {
    PyObject *o[14];
    Py_ssize_t total;
    if (!PyArg_ParseTuple(args, "OOOOOOnOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &total, &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13]))
        return NULL;
    Py_buffer b[14];
    int held[14] = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(o[0], &b[0], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        return NULL;
    held[0] = 1;
    if (b[0].ndim != 2 || strcmp(b[0].format, "d") != 0 || total < 1) {
        PyErr_SetString(PyExc_ValueError, "x must be n x k float64, total at least 1");
        goto done;
    }
    Py_ssize_t n = b[0].shape[0], k = b[0].shape[1];
    Py_buffer gb; /* the number of groups comes from n_ok's size */
    if (PyObject_GetBuffer(o[8], &gb, PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_ssize_t groups_n = k ? gb.len / 8 / k : 0;
    PyBuffer_Release(&gb);
    /* every size below fits: n x k and the groups' arrays are arrays already; the
     * histogram's, G x total, is checked before it is multiplied */
    if (groups_n && total > PY_SSIZE_T_MAX / 8 / groups_n) {
        PyErr_SetString(PyExc_ValueError, "total is larger than any histogram");
        goto done;
    }
    const struct {
        int arg, writable;
        char kind;
        Py_ssize_t items;
    } want[] = {
        {1, 0, 'q', n * k},         {2, 0, 'q', n},          {3, 0, 'q', k},
        {4, 0, 'd', k},             {5, 0, 'd', k},          {7, 1, 'q', groups_n * total},
        {8, 1, 'q', groups_n * k},  {9, 1, 'q', groups_n * k}, {10, 1, 'd', groups_n * k},
        {11, 1, 'd', groups_n * k}, {12, 1, 'd', groups_n * k}, {13, 1, 'd', groups_n * k},
    };
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        if (view(o[want[w].arg], &b[want[w].arg], want[w].writable, want[w].kind, want[w].items) < 0)
            goto done;
        held[want[w].arg] = 1;
    }
    const double *x = b[0].buf, *low = b[4].buf, *high = b[5].buf;
    const int64_t *bins = b[1].buf, *grp = b[2].buf, *off = b[3].buf;
    int64_t *hist = b[7].buf, *n_ok = b[8].buf, *n_out = b[9].buf;
    double *sums = b[10].buf, *sums_sq = b[11].buf, *lows = b[12].buf, *highs = b[13].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t g = grp[i];
        if (g < 0 || g >= groups_n) {
            PyErr_SetString(PyExc_ValueError, "a group number outside the arrays given");
            goto done;
        }
        const double *row = x + i * k;
        const int64_t *brow = bins + i * k;
        Py_ssize_t at = g * k;
        for (Py_ssize_t j = 0; j < k; j++) {
            double v = row[j];
            if (v != v) { /* missing: adds 0.0, as numpy's sums of the zero-filled values */
                sums[at + j] += 0.0;
                sums_sq[at + j] += 0.0;
                continue;
            }
            int64_t slot;
            if (off[j] < 0 || brow[j] < 0 || off[j] >= total || brow[j] >= total ||
                (slot = off[j] + brow[j]) >= total) {
                PyErr_SetString(PyExc_ValueError, "a bin outside the histogram");
                goto done;
            }
            hist[g * total + slot]++;
            n_ok[at + j]++;
            n_out[at + j] += v < low[j] || v > high[j];
            sums[at + j] += v;
            sums_sq[at + j] += v * v;
            if (v < lows[at + j]) lows[at + j] = v;
            if (v > highs[at + j]) highs[at + j] = v;
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int a = 0; a < 14; a++)
        if (held[a]) PyBuffer_Release(&b[a]);
    return result;
}

static PyObject *S_ERROR, *S_VALUE, *S_PARTITION, *S_OFFSET, *S_TOPIC;

/* The message methods called for every message of a poll, by their C functions.
 * confluent-kafka's Message is a C type whose methods take no arguments: calling the
 * function of its method descriptor skips the method's lookup on each call (~35 ns,
 * five calls per message). The functions are taken from one type, held while cached,
 * and used only for objects of exactly that type, an immutable type without instance
 * attributes (nothing can shadow or replace a method); anything else (a Python class, a
 * subclass) is called by name. */
enum { M_ERROR, M_VALUE, M_PARTITION, M_OFFSET, M_TOPIC, M_COUNT };
static PyObject **METHOD_NAMES[M_COUNT] = {&S_ERROR, &S_VALUE, &S_PARTITION, &S_OFFSET,
                                           &S_TOPIC};
static PyTypeObject *direct_type;     /* the type the functions are of (a reference) */
static PyCFunction direct[M_COUNT];   /* NULL: that method is called by name */

static void learn_methods(PyTypeObject *t) {
    Py_XSETREF(direct_type, (PyTypeObject *)Py_NewRef(t));
    int plain = (t->tp_flags & Py_TPFLAGS_IMMUTABLETYPE) && t->tp_dictoffset == 0;
    for (int k = 0; k < M_COUNT; k++) {
        direct[k] = NULL;
        if (!plain) continue;
        PyObject *d = PyObject_GetAttr((PyObject *)t, *METHOD_NAMES[k]);
        if (d == NULL) {
            PyErr_Clear();
            continue;
        }
        if (Py_IS_TYPE(d, &PyMethodDescr_Type)) {
            PyMethodDef *def = ((PyMethodDescrObject *)d)->d_method;
            if ((def->ml_flags & ~METH_COEXIST) == METH_NOARGS) direct[k] = def->ml_meth;
        }
        Py_DECREF(d);
    }
}

/* `m`'s method `k`, called with no arguments: a new reference, or NULL with an error. */
static inline PyObject *call_method(PyObject *m, int k) {
    if (Py_TYPE(m) != direct_type) learn_methods(Py_TYPE(m));
    PyCFunction f = direct[k];
    return f != NULL ? f(m, NULL) : PyObject_CallMethodNoArgs(m, *METHOD_NAMES[k]);
}

PyDoc_STRVAR(messages_doc,
             "messages(msgs)\n--\n\n"
             "Each Kafka message's value, partition and offset, and the highest offset per\n"
             "partition: (values, partitions, offsets, last), or None when a message\n"
             "carries an error or no value (the caller's own loop deals with those).\n"
             "Four method calls per message from C (confluent-kafka's by their C functions,\n"
             "see call_method), where a Python loop costs 4x more.");

static PyObject *messages(PyObject *self, PyObject *msgs) {
    if (!PyList_Check(msgs)) {
        PyErr_SetString(PyExc_TypeError, "messages must be a list");
        return NULL;
    }
    /* a tuple of the messages: their methods run Python, which could change the list */
    PyObject *held = PyList_AsTuple(msgs);
    if (held == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    PyObject *values = PyList_New(n), *partitions = PyList_New(n), *offsets = PyList_New(n);
    PyObject *last = PyDict_New(), *result = NULL;
    if (values == NULL || partitions == NULL || offsets == NULL || last == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyTuple_GET_ITEM(held, i);
        PyObject *err = call_method(m, M_ERROR);
        if (err == NULL) goto done;
        Py_DECREF(err);
        if (err != Py_None) goto refuse;
        PyObject *v = call_method(m, M_VALUE);
        if (v == NULL) goto done;
        PyList_SET_ITEM(values, i, v);
        if (!PyBytes_CheckExact(v)) goto refuse;
        PyObject *part = call_method(m, M_PARTITION);
        if (part == NULL) goto done;
        PyList_SET_ITEM(partitions, i, part);
        PyObject *off = call_method(m, M_OFFSET);
        if (off == NULL) goto done;
        PyList_SET_ITEM(offsets, i, off);
        /* offsets rise within a partition, but a lower one must not lower the highest */
        PyObject *seen = PyDict_GetItemWithError(last, part);
        if (seen == NULL && PyErr_Occurred()) goto done;
        int higher = seen == NULL ? 1 : PyObject_RichCompareBool(off, seen, Py_GT);
        if (higher < 0 || (higher && PyDict_SetItem(last, part, off) < 0)) goto done;
    }
    result = PyTuple_Pack(4, values, partitions, offsets, last);
    goto done;
refuse:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(values);
    Py_XDECREF(partitions);
    Py_XDECREF(offsets);
    Py_XDECREF(last);
    Py_DECREF(held);
    return result;
}

PyDoc_STRVAR(by_topic_doc,
             "by_topic(msgs, topic)\n--\n\n"
             "(the messages of `topic`, the others), each list in the polled order: one\n"
             "method call per message from C, where a Python loop costs 3x more.");

static PyObject *by_topic(PyObject *self, PyObject *args) {
    PyObject *msgs, *topic;
    if (!PyArg_ParseTuple(args, "O!U", &PyList_Type, &msgs, &topic)) return NULL;
    PyObject *held = PyList_AsTuple(msgs); /* as in messages(): the list may change */
    if (held == NULL) return NULL;
    PyObject *in = PyList_New(0), *out = PyList_New(0), *result = NULL;
    if (in == NULL || out == NULL) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(held); i++) {
        PyObject *m = PyTuple_GET_ITEM(held, i);
        PyObject *t = call_method(m, M_TOPIC);
        if (t == NULL) goto done;
        int same = PyObject_RichCompareBool(t, topic, Py_EQ);
        Py_DECREF(t);
        if (same < 0 || PyList_Append(same ? in : out, m) < 0) goto done;
    }
    result = PyTuple_Pack(2, in, out);
done:
    Py_XDECREF(in);
    Py_XDECREF(out);
    Py_DECREF(held);
    return result;
}

PyDoc_STRVAR(codes_doc,
             "codes(values)\n--\n\n"
             "(codes, distinct): each value's position among the distinct values in the order\n"
             "first seen, as n int64 in a bytes object (-1 for None). Values of other types\n"
             "are other values (True is not 1); a value the last 8 distinct ones hold (the\n"
             "scanner's shared strs) is found by identity, without a hash.");

#define RECENT 8

static PyObject *codes(PyObject *self, PyObject *values) {
    if (!PyList_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "values must be a list");
        return NULL;
    }
    PyObject *held = PyList_AsTuple(values); /* hashing runs Python: the list may change */
    if (held == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    PyObject *distinct = PyList_New(0), *index = PyDict_New(), *result = NULL;
    if (out == NULL || distinct == NULL || index == NULL) goto done;
    int64_t *c = (int64_t *)PyBytes_AS_STRING(out);
    PyObject *recent[RECENT];
    int64_t recent_code[RECENT];
    int filled = 0, next = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(held, i); /* borrowed: `held` keeps it */
        if (v == Py_None) {
            c[i] = -1;
            continue;
        }
        int64_t found = -1;
        for (int k = 0; k < filled; k++)
            if (recent[k] == v) {
                found = recent_code[k];
                break;
            }
        if (found < 0) {
            PyObject *key;
            if (PyUnicode_CheckExact(v)) {
                Py_INCREF(v);
                key = v;
            } else {
                key = PyTuple_Pack(2, (PyObject *)Py_TYPE(v), v);
                if (key == NULL) goto done;
            }
            PyObject *got = PyDict_GetItemWithError(index, key);
            if (got != NULL) {
                found = PyLong_AsLongLong(got);
            } else if (!PyErr_Occurred()) {
                found = PyList_GET_SIZE(distinct);
                PyObject *code = PyLong_FromLongLong(found);
                int bad = code == NULL || PyDict_SetItem(index, key, code) < 0 ||
                          PyList_Append(distinct, v) < 0;
                Py_XDECREF(code);
                if (bad) found = -1;
            }
            Py_DECREF(key);
            if (found < 0) goto done; /* an unhashable value, or no memory */
            recent[next] = v;
            recent_code[next] = found;
            next = (next + 1) % RECENT;
            if (filled < RECENT) filled++;
        }
        c[i] = found;
    }
    result = PyTuple_Pack(2, out, distinct);
done:
    Py_XDECREF(out);
    Py_XDECREF(distinct);
    Py_XDECREF(index);
    Py_DECREF(held);
    return result;
}

PyDoc_STRVAR(shards_doc,
             "shards(ids, n)\n--\n\n"
             "Each str's zlib.crc32 of its UTF-8 bytes, modulo n, as a list of ints: the\n"
             "join's journal shard of each prediction id (store.records.shards). The same\n"
             "CRC-32 as zlib's (polynomial 0xEDB88320, reflected), a table a byte at a time.");

static uint32_t CRC_TABLE[256];

static void init_crc(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        CRC_TABLE[i] = c;
    }
}

static PyObject *shards(PyObject *self, PyObject *args) {
    PyObject *ids;
    long n;
    if (!PyArg_ParseTuple(args, "Ol", &ids, &n)) return NULL;
    if (n < 1 || n > 0x7FFFFFFFL) {
        PyErr_SetString(PyExc_ValueError, "n must be from 1 to 2**31 - 1");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(ids, "ids must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(count);
    if (out == NULL) goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *v = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "ids must be strs");
            goto fail;
        }
        Py_ssize_t len;
        const char *b = PyUnicode_AsUTF8AndSize(v, &len); /* ASCII: no copy */
        if (b == NULL) goto fail;                           /* a lone surrogate, as encode() */
        uint32_t c = 0xFFFFFFFFu;
        for (Py_ssize_t k = 0; k < len; k++)
            c = CRC_TABLE[(c ^ (unsigned char)b[k]) & 0xFF] ^ (c >> 8);
        c = (c ^ 0xFFFFFFFFu) % (uint32_t)n;
        PyObject *shard = PyLong_FromUnsignedLong((unsigned long)c);
        if (shard == NULL) goto fail;
        PyList_SET_ITEM(out, i, shard);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"scan_labels", scan_labels, METH_VARARGS, scan_labels_doc},
    {"messages", messages, METH_O, messages_doc},
    {"by_topic", by_topic, METH_VARARGS, by_topic_doc},
    {"codes", codes, METH_O, codes_doc},
    {"shards", shards, METH_VARARGS, shards_doc},
    {"bin_columns", bin_columns, METH_VARARGS, bin_columns_doc},
    {"group_moments", group_moments, METH_VARARGS, group_moments_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streamdrift._scan",
    .m_doc = "Prediction events read straight into columns (see scan).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    init_classes();
    init_crc();
    S_ERROR = PyUnicode_InternFromString("error");
    S_VALUE = PyUnicode_InternFromString("value");
    S_PARTITION = PyUnicode_InternFromString("partition");
    S_OFFSET = PyUnicode_InternFromString("offset");
    S_TOPIC = PyUnicode_InternFromString("topic");
    if (!S_ERROR || !S_VALUE || !S_PARTITION || !S_OFFSET || !S_TOPIC) return NULL;
    return PyModule_Create(&module);
}

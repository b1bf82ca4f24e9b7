/* The join's common transitions (`streamdrift.pairing.meet`) for a whole batch at once,
 * and a batch's prediction records (`join.prediction_records`) built in one pass.
 *
 * Why compiled: with labels flowing, `meet` was the worker's largest single cost (~5 µs
 * per message): per id a dictionary lookup, a few string splits and one new record,
 * each a handful of bytecodes that cost more than the work they do.
 *
 * This is a fast path, not a second definition. It takes the transitions of a plain
 * model (no champion, not a regressor): a record met for the first time, a label
 * waiting for its prediction, a prediction met by its waiting label, a pending record
 * labelled, a repeat of either side, a label for a record kept without a label column.
 * Anything else (shadow traffic's second version, a record holding several versions, a
 * record or score the checks would refuse, an argument of another type) makes it
 * return None before anything is changed, and the batch goes through the Python
 * `meet`, which is the reference: it names the record it refuses. A test runs both
 * over the same batches and compares every output.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* `pairing.BOUND`: a score beyond it is refused */
#define BOUND 1e250
/* at most this many digits are read into a long long (a time, a bin) */
#define MAX_DIGITS 18

static PyObject *EMPTY; /* "" */

/* 0: done; 1: not for the fast path (the caller returns None); -1: an exception */
#define FALLBACK 1

typedef struct {
    PyObject *s;
    int kind;
    const void *data;
    Py_ssize_t len;
} Text;

static inline void text_of(Text *t, PyObject *s) {
    t->s = s;
    t->kind = PyUnicode_KIND(s);
    t->data = PyUnicode_DATA(s);
    t->len = PyUnicode_GET_LENGTH(s);
}

static inline Py_UCS4 at(const Text *t, Py_ssize_t i) { return PyUnicode_READ(t->kind, t->data, i); }

/* the first `ch` in [start, end), or -1 */
static inline Py_ssize_t find(const Text *t, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end) {
    if (start >= end) return -1;
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const char *p = memchr((const char *)t->data + start, (int)ch, (size_t)(end - start));
        return p ? p - (const char *)t->data : -1;
    }
    for (Py_ssize_t i = start; i < end; i++)
        if (at(t, i) == ch) return i;
    return -1;
}

/* [start, end) is ASCII digits only, at least one; with `value`, at most MAX_DIGITS of
 * them (more: 0, as for a value too long to read), read into it */
static int ascii_digits(const Text *t, Py_ssize_t start, Py_ssize_t end, long long *value) {
    if (start >= end) return 0;
    if (value && end - start > MAX_DIGITS) return 0;
    long long v = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = at(t, i);
        if (c < '0' || c > '9') return 0;
        if (value) v = v * 10 + (long long)(c - '0');
    }
    if (value) *value = v;
    return 1;
}

/* an integer as "-?digits" (a label's time or bin), at most MAX_DIGITS digits */
static int signed_digits(const Text *t, Py_ssize_t start, Py_ssize_t end, long long *value) {
    int neg = start < end && at(t, start) == '-';
    if (!ascii_digits(t, start + neg, end, value)) return 0;
    if (neg) *value = -*value;
    return 1;
}

/* str.isdigit() of [start, end) */
static int unicode_digits(const Text *t, Py_ssize_t start, Py_ssize_t end) {
    if (start >= end) return 0;
    for (Py_ssize_t i = start; i < end; i++)
        if (!Py_UNICODE_ISDIGIT(at(t, i))) return 0;
    return 1;
}

/* [start, end) of `t` equals all of `v` */
static int same_text(const Text *t, Py_ssize_t start, Py_ssize_t end, const Text *v) {
    if (end - start != v->len) return 0;
    if (t->kind == v->kind)
        return memcmp((const char *)t->data + start * t->kind, v->data,
                      (size_t)(v->len * v->kind)) == 0;
    for (Py_ssize_t i = 0; i < v->len; i++)
        if (at(t, start + i) != at(v, i)) return 0;
    return 1;
}

/* A score the checks pass (`pairing._Checks`): a plain decimal number whose magnitude
 * is below BOUND. 1: passes; 0: refused, or a spelling float() reads that this does
 * not (the Python path decides). */
static int plain_score(const Text *t, Py_ssize_t start, Py_ssize_t end) {
    char buf[64];
    Py_ssize_t n = end - start;
    if (n <= 0 || n >= (Py_ssize_t)sizeof buf) return 0;
    Py_ssize_t i = 0, digits = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_UCS4 c = at(t, start + k);
        if (c > 127) return 0;
        buf[k] = (char)c;
    }
    buf[n] = '\0';
    if (buf[i] == '-' || buf[i] == '+') i++;
    while (i < n && buf[i] >= '0' && buf[i] <= '9') i++, digits++;
    if (i < n && buf[i] == '.') {
        i++;
        while (i < n && buf[i] >= '0' && buf[i] <= '9') i++, digits++;
    }
    if (!digits) return 0;
    if (i < n && (buf[i] == 'e' || buf[i] == 'E')) {
        i++;
        if (i < n && (buf[i] == '-' || buf[i] == '+')) i++;
        Py_ssize_t e = 0;
        while (i < n && buf[i] >= '0' && buf[i] <= '9') i++, e++;
        if (!e) return 0;
    }
    if (i != n) return 0;
    /* below 10^249 by its digits alone: finite, and below BOUND however it rounds */
    Py_ssize_t j = buf[0] == '-' || buf[0] == '+', whole = 0, exp = 0;
    while (j < n && buf[j] == '0') j++;
    while (j < n && buf[j] >= '0' && buf[j] <= '9') j++, whole++;
    while (j < n && buf[j] != 'e' && buf[j] != 'E') j++;
    if (j < n) {
        int neg = buf[++j] == '-';
        j += buf[j] == '-' || buf[j] == '+';
        while (j < n && exp < 100000) exp = exp * 10 + (buf[j++] - '0');
        if (neg) exp = -exp;
    }
    if (whole + exp <= 249) return 1;
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return stop == buf + n && fabs(v) < BOUND;
}

/* A prediction record "<time>|<version>|<class>|<score>[|<segments>]" as `_Checks`
 * reads it: the end of its time and of its version, and its time's value if wanted. */
typedef struct {
    Py_ssize_t time_end, version_end;
    long long time;
} Head;

static int record_head(const Text *t, int check_scores, int need_time, Head *h) {
    h->time = 0;
    Py_ssize_t p0 = find(t, '|', 0, t->len);
    if (p0 < 0) return 0;
    Py_ssize_t p1 = find(t, '|', p0 + 1, t->len);
    if (p1 < 0) return 0;
    Py_ssize_t p2 = find(t, '|', p1 + 1, t->len);
    if (p2 < 0) return 0;
    if (!ascii_digits(t, 0, p0, need_time ? &h->time : NULL)) return 0;
    if (check_scores) {
        Py_ssize_t p3 = find(t, '|', p2 + 1, t->len);
        Py_ssize_t end = p3 < 0 ? t->len : p3;
        if (end > p2 + 1 && !plain_score(t, p2 + 1, end)) return 0;
    }
    h->time_end = p0;
    h->version_end = p1;
    return 1;
}

/* `pairing._has_version`: a line of the "\n"-separated [start, end) has `version` as its
 * version (`_version_of`: the line itself if it has no "|", else its second part if it
 * has three and the first is digits, else "") */
static int has_version(const Text *t, Py_ssize_t start, Py_ssize_t end, const Text *version) {
    Py_ssize_t line = start;
    while (line < end) {
        Py_ssize_t nl = find(t, '\n', line, end);
        Py_ssize_t stop = nl < 0 ? end : nl;
        if (stop > line) {
            Py_ssize_t a = find(t, '|', line, stop);
            if (a < 0) {
                if (same_text(t, line, stop, version)) return 1;
            } else {
                Py_ssize_t b = find(t, '|', a + 1, stop);
                if (b >= 0 && unicode_digits(t, line, a)) {
                    if (same_text(t, a + 1, b, version)) return 1;
                } else if (version->len == 0) {
                    return 1;
                }
            }
        }
        line = stop + 1;
    }
    return 0;
}

/* ---- new records, built from pieces -------------------------------------------------- */
typedef struct {
    const Text *t; /* a range of a str, or (t NULL) ASCII bytes */
    Py_ssize_t start, end;
    const char *ascii;
} Piece;

static Py_UCS4 range_max(const Text *t, Py_ssize_t start, Py_ssize_t end) {
    if (PyUnicode_IS_ASCII(t->s)) return 127;
    Py_UCS4 top = 127;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = at(t, i);
        if (c > top) top = c;
    }
    return top;
}

/* the pieces joined into one str (of the smallest kind that holds it, as str requires) */
static PyObject *joined(const Piece *p, int k) {
    Py_ssize_t n = 0;
    Py_UCS4 top = 127;
    for (int i = 0; i < k; i++) {
        if (p[i].t == NULL) {
            n += p[i].end;
        } else {
            n += p[i].end - p[i].start;
            Py_UCS4 m = range_max(p[i].t, p[i].start, p[i].end);
            if (m > top) top = m;
        }
    }
    PyObject *out = PyUnicode_New(n, top);
    if (out == NULL) return NULL;
    Py_ssize_t at_ = 0;
    for (int i = 0; i < k; i++) {
        if (p[i].t == NULL) {
            if (top == 127) {
                memcpy(PyUnicode_1BYTE_DATA(out) + at_, p[i].ascii, (size_t)p[i].end);
            } else {
                int kind = PyUnicode_KIND(out);
                void *data = PyUnicode_DATA(out);
                for (Py_ssize_t j = 0; j < p[i].end; j++)
                    PyUnicode_WRITE(kind, data, at_ + j, (Py_UCS4)(unsigned char)p[i].ascii[j]);
            }
            at_ += p[i].end;
        } else {
            Py_ssize_t len = p[i].end - p[i].start;
            if (len && PyUnicode_CopyCharacters(out, at_, p[i].t->s, p[i].start, len) < 0) {
                Py_DECREF(out);
                return NULL;
            }
            at_ += len;
        }
    }
    return out;
}

/* `v` in decimal at `out` (as "%lld", without printf's cost); returns the length */
static int decimal(char *out, long long v) {
    char tmp[24];
    int n = 0, k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do tmp[n++] = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    return k;
}

/* "<lead><label time>|<label bin>|" at `out`, the label's part of a record before its
 * text; returns the length */
static int label_head(char *out, char lead, long long lts, long long lbin) {
    int n = 0;
    out[n++] = lead;
    n += decimal(out + n, lts);
    out[n++] = '|';
    n += decimal(out + n, lbin);
    out[n++] = '|';
    return n;
}

static inline Piece ascii_piece(const char *s, int n) { return (Piece){NULL, 0, n, s}; }
static inline Piece text_piece(const Text *t, Py_ssize_t start, Py_ssize_t end) {
    return (Piece){t, start, end, NULL};
}

typedef struct {
    PyObject *records; /* {(shard, id): record} or {shard: {id: record}} */
    int by_shard;
    long long width;
    int check_scores;
    /* every place met, as read ("": none; an empty record makes the batch go back), and
     * the places written, as they become: together, each place as the batch leaves it */
    PyObject *read, *writes, *recs, *labs, *lts, *lbins, *repeats;
    long long duplicate_labels, labels_waiting, labels_without_record;
} Meet;

/* The record at `place` as the batch has left it so far: a new reference (Py_None for
 * none), or NULL with *rc set (FALLBACK or -1). */
static PyObject *current(Meet *m, PyObject *place, PyObject *shard, PyObject *pid, int *rc) {
    PyObject *cur = PyDict_GetItemWithError(m->writes, place);
    if (cur != NULL) return Py_NewRef(cur);
    if (PyErr_Occurred()) return *rc = -1, NULL;
    cur = PyDict_GetItemWithError(m->read, place);
    if (cur != NULL) return Py_NewRef(PyUnicode_GET_LENGTH(cur) ? cur : Py_None);
    if (PyErr_Occurred()) return *rc = -1, NULL;
    if (m->by_shard) {
        PyObject *held = PyDict_GetItemWithError(m->records, shard);
        if (held == NULL || !PyDict_CheckExact(held)) return *rc = PyErr_Occurred() ? -1 : FALLBACK, NULL;
        cur = PyDict_GetItemWithError(held, pid);
    } else {
        cur = PyDict_GetItemWithError(m->records, place);
        if (cur == NULL && !PyErr_Occurred()) return *rc = FALLBACK, NULL; /* Python: KeyError */
    }
    if (cur == NULL) {
        if (PyErr_Occurred()) return *rc = -1, NULL;
        cur = Py_None;
    }
    if (cur != Py_None && !PyUnicode_CheckExact(cur)) return *rc = FALLBACK, NULL;
    PyObject *as_read = (cur == Py_None || PyUnicode_GET_LENGTH(cur) == 0) ? EMPTY : cur;
    if (PyDict_SetItem(m->read, place, as_read) < 0) return *rc = -1, NULL;
    return Py_NewRef(cur);
}

/* the record at `place` becomes `value` (a new reference, taken) */
static int put(Meet *m, PyObject *place, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(m->writes, place, value);
    Py_DECREF(value);
    return rc ? -1 : 0;
}

static int pair(Meet *m, PyObject *record, PyObject *label, PyObject *lt, PyObject *lb) {
    if (label == NULL || lt == NULL || lb == NULL) return -1;
    return PyList_Append(m->recs, record) < 0 || PyList_Append(m->labs, label) < 0 ||
                   PyList_Append(m->lts, lt) < 0 || PyList_Append(m->lbins, lb) < 0
               ? -1
               : 0;
}

/* a repeated prediction, counted in its window with the first one's id */
static int repeat(Meet *m, long long pts, PyObject *pid) {
    long long ws = pts / m->width * m->width;
    PyObject *key = PyLong_FromLongLong(ws);
    if (key == NULL) return -1;
    PyObject *r = PyDict_GetItemWithError(m->repeats, key);
    int rc = -1;
    if (r == NULL) {
        if (PyErr_Occurred()) goto done;
        PyObject *one = PyLong_FromLong(1);
        r = one ? PyList_New(2) : NULL;
        if (r == NULL) {
            Py_XDECREF(one);
            goto done;
        }
        PyList_SET_ITEM(r, 0, one);
        PyList_SET_ITEM(r, 1, Py_NewRef(pid));
        rc = PyDict_SetItem(m->repeats, key, r);
        Py_DECREF(r);
    } else {
        long long count = PyLong_AsLongLong(PyList_GET_ITEM(r, 0));
        PyObject *n = count == -1 && PyErr_Occurred() ? NULL : PyLong_FromLongLong(count + 1);
        rc = n == NULL ? -1 : PyList_SetItem(r, 0, n);
    }
done:
    Py_DECREF(key);
    return rc;
}

/* one `[id, record, shard]` prediction */
static int prediction(Meet *m, PyObject *item) {
    if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 3) return FALLBACK;
    PyObject *pid = PyList_GET_ITEM(item, 0), *rec = PyList_GET_ITEM(item, 1),
             *shard = PyList_GET_ITEM(item, 2);
    if (!PyUnicode_CheckExact(pid) || !PyUnicode_CheckExact(rec) || !PyLong_CheckExact(shard))
        return FALLBACK;
    Text r;
    text_of(&r, rec);
    Head h;
    if (!record_head(&r, m->check_scores, 1, &h)) return FALLBACK;
    Text version = {rec, r.kind,
                    (const char *)r.data + (h.time_end + 1) * r.kind,
                    h.version_end - h.time_end - 1};
    PyObject *place = PyTuple_Pack(2, shard, pid);
    if (place == NULL) return -1;
    int rc = 0;
    PyObject *cur = current(m, place, shard, pid, &rc);
    if (cur == NULL) goto done;
    if (cur == Py_None) {
        rc = put(m, place, Py_NewRef(rec));
        goto done;
    }
    Text c;
    text_of(&c, cur);
    if (c.len == 0) {
        rc = FALLBACK;
    } else if (at(&c, 0) == 'L') { /* its label came first: the pair meets */
        Py_ssize_t q0 = find(&c, '|', 1, c.len), q1 = q0 < 0 ? -1 : find(&c, '|', q0 + 1, c.len);
        long long lts, lbin;
        if (q1 < 0 || !signed_digits(&c, 1, q0, &lts) || !signed_digits(&c, q0 + 1, q1, &lbin)) {
            rc = FALLBACK;
            goto done;
        }
        PyObject *label = PyUnicode_Substring(cur, q1 + 1, c.len);
        PyObject *lt = PyLong_FromLongLong(lts), *lb = PyLong_FromLongLong(lbin);
        rc = pair(m, rec, label, lt, lb);
        Py_XDECREF(label);
        Py_XDECREF(lt);
        Py_XDECREF(lb);
        if (rc < 0) goto done;
        char head[32] = "J";
        int hn = 1 + decimal(head + 1, h.time);
        head[hn++] = '\t'; /* joined below only with the version */
        Piece parts[] = {ascii_piece(head, hn), text_piece(&r, h.time_end + 1, h.version_end),
                         ascii_piece("\t", 1), text_piece(&c, 1, c.len)};
        if (!version.len) parts[0].end = hn - 1;
        rc = put(m, place, joined(parts, version.len ? 4 : 1));
    } else if (at(&c, 0) == 'J') { /* joined: a repeat, unless a new version scores it */
        Py_ssize_t tab = find(&c, '\t', 0, c.len);
        if (tab >= 0 && tab + 1 < c.len && version.len) {
            Py_ssize_t tab2 = find(&c, '\t', tab + 1, c.len);
            if (!has_version(&c, tab + 1, tab2 < 0 ? c.len : tab2, &version)) {
                rc = FALLBACK; /* another version of shadow traffic joins too */
                goto done;
            }
        }
        rc = repeat(m, h.time, pid);
    } else { /* waiting for its label: a repeat, unless another version scored it */
        if (version.len && find(&c, '|', 0, c.len) >= 0 && !has_version(&c, 0, c.len, &version)) {
            rc = FALLBACK;
            goto done;
        }
        rc = repeat(m, h.time, pid);
    }
done:
    Py_XDECREF(cur);
    Py_DECREF(place);
    return rc;
}

/* one `[id, label, label time, label bin, shard]` label */
static int label(Meet *m, PyObject *item) {
    if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 5) return FALLBACK;
    PyObject *pid = PyList_GET_ITEM(item, 0), *lab = PyList_GET_ITEM(item, 1),
             *lt = PyList_GET_ITEM(item, 2), *lb = PyList_GET_ITEM(item, 3),
             *shard = PyList_GET_ITEM(item, 4);
    if (!PyUnicode_CheckExact(pid) || !PyUnicode_CheckExact(lab) || !PyLong_CheckExact(lt) ||
        !PyLong_CheckExact(lb) || !PyLong_CheckExact(shard))
        return FALLBACK;
    int overflow = 0;
    long long lts = PyLong_AsLongLongAndOverflow(lt, &overflow);
    if (overflow) return FALLBACK;
    long long lbin = PyLong_AsLongLongAndOverflow(lb, &overflow);
    if (overflow) return FALLBACK;
    PyObject *place = PyTuple_Pack(2, shard, pid);
    if (place == NULL) return -1;
    int rc = 0;
    PyObject *cur = current(m, place, shard, pid, &rc);
    if (cur == NULL) goto done;
    Text l;
    text_of(&l, lab);
    char nums[64];
    if (cur == Py_None) { /* it waits for its prediction */
        m->labels_waiting++;
        int n = label_head(nums, 'L', lts, lbin);
        Piece parts[] = {ascii_piece(nums, n), text_piece(&l, 0, l.len)};
        rc = put(m, place, joined(parts, 2));
        goto done;
    }
    Text c;
    text_of(&c, cur);
    if (c.len == 0) {
        rc = FALLBACK;
    } else if (at(&c, 0) == 'J' || at(&c, 0) == 'L') {
        m->duplicate_labels++;
    } else if (find(&c, '|', 0, c.len) < 0) {
        /* recorded while the model had no label column: nothing to join it with */
        m->labels_without_record++;
        Piece parts[] = {ascii_piece("J", 1), text_piece(&c, 0, c.len)};
        rc = put(m, place, joined(parts, 2));
    } else if (find(&c, '\n', 0, c.len) < 0) { /* one version's record: the pair meets */
        Head h;
        if (!record_head(&c, m->check_scores, 0, &h)) {
            rc = FALLBACK;
            goto done;
        }
        if ((rc = pair(m, cur, lab, lt, lb)) < 0) goto done;
        int n = label_head(nums, '\t', lts, lbin);
        Piece parts[] = {ascii_piece("J", 1), text_piece(&c, 0, h.time_end), ascii_piece("\t", 1),
                         text_piece(&c, h.time_end + 1, h.version_end), ascii_piece(nums, n),
                         text_piece(&l, 0, l.len)};
        rc = put(m, place, joined(parts, h.version_end == h.time_end + 1 ? 2 : 6));
    } else {
        rc = FALLBACK; /* shadow traffic's records: several versions to pair */
    }
done:
    Py_XDECREF(cur);
    Py_DECREF(place);
    return rc;
}

static PyObject *meet(PyObject *self, PyObject *args) {
    PyObject *preds, *labels;
    Meet m = {0};
    if (!PyArg_ParseTuple(args, "O!O!O!pLp", &PyList_Type, &preds, &PyList_Type, &labels,
                          &PyDict_Type, &m.records, &m.by_shard, &m.width, &m.check_scores))
        return NULL;
    if (m.width <= 0) {
        PyErr_SetString(PyExc_ValueError, "width must be positive");
        return NULL;
    }
    PyObject *out = NULL;
    m.read = PyDict_New();
    m.writes = PyDict_New();
    m.recs = PyList_New(0);
    m.labs = PyList_New(0);
    m.lts = PyList_New(0);
    m.lbins = PyList_New(0);
    m.repeats = PyDict_New();
    if (!m.read || !m.writes || !m.recs || !m.labs || !m.lts || !m.lbins || !m.repeats)
        goto done;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(preds) && rc == 0; i++)
        rc = prediction(&m, PyList_GET_ITEM(preds, i));
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(labels) && rc == 0; i++)
        rc = label(&m, PyList_GET_ITEM(labels, i));
    if (rc < 0) goto done;
    if (rc == FALLBACK) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    out = Py_BuildValue("(OOOOOOOLLL)", m.read, m.writes, m.recs, m.labs, m.lts, m.lbins,
                        m.repeats, m.duplicate_labels, m.labels_waiting, m.labels_without_record);
done:
    Py_XDECREF(m.read);
    Py_XDECREF(m.writes);
    Py_XDECREF(m.recs);
    Py_XDECREF(m.labs);
    Py_XDECREF(m.lts);
    Py_XDECREF(m.lbins);
    Py_XDECREF(m.repeats);
    return out;
}

PyDoc_STRVAR(meet_doc,
             "meet(predictions, labels, records, by_shard, width, check_scores, /)\n--\n\n"
             "The join records' transitions of a batch, as `pairing.meet` makes them, or None\n"
             "when the batch needs the Python path. `records`: {(shard, id): record or None}\n"
             "(by_shard false), or {shard: {id: record}} (true). Returns (read, writes, pair\n"
             "records, pair labels, label times, label bins, repeats, duplicate labels, labels\n"
             "waiting, labels without record).");

/* ---- a batch's prediction records ------------------------------------------------------ */
static PyObject *records(PyObject *self, PyObject *args) {
    PyObject *ids, *seconds, *versions, *classes, *scores, *tails, *shards;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!", &PyList_Type, &ids, &PyList_Type, &seconds,
                          &PyList_Type, &versions, &PyList_Type, &classes, &PyList_Type, &scores,
                          &PyList_Type, &tails, &PyList_Type, &shards))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(ids);
    if (PyList_GET_SIZE(seconds) != n || PyList_GET_SIZE(versions) != n ||
        PyList_GET_SIZE(classes) != n || PyList_GET_SIZE(scores) != n ||
        PyList_GET_SIZE(tails) != n || PyList_GET_SIZE(shards) != n) {
        PyErr_SetString(PyExc_ValueError, "the columns differ in length");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pid = PyList_GET_ITEM(ids, i), *sec = PyList_GET_ITEM(seconds, i),
                 *v = PyList_GET_ITEM(versions, i), *c = PyList_GET_ITEM(classes, i),
                 *sc = PyList_GET_ITEM(scores, i), *tail = PyList_GET_ITEM(tails, i),
                 *shard = PyList_GET_ITEM(shards, i);
        if (!PyLong_CheckExact(sec) || !PyUnicode_CheckExact(v) || !PyUnicode_CheckExact(c) ||
            !PyUnicode_CheckExact(sc) || !PyUnicode_CheckExact(tail)) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        int overflow = 0;
        long long t = PyLong_AsLongLongAndOverflow(sec, &overflow);
        if (overflow || (t == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        char head[32];
        int hn = decimal(head, t);
        head[hn++] = '|';
        Text tv, tc, ts, tt;
        text_of(&tv, v);
        text_of(&tc, c);
        text_of(&ts, sc);
        text_of(&tt, tail);
        Piece parts[] = {ascii_piece(head, hn),      text_piece(&tv, 0, tv.len),
                         ascii_piece("|", 1),        text_piece(&tc, 0, tc.len),
                         ascii_piece("|", 1),        text_piece(&ts, 0, ts.len),
                         text_piece(&tt, 0, tt.len)};
        PyObject *rec = joined(parts, 7);
        PyObject *entry = rec ? PyList_New(3) : NULL;
        if (entry == NULL) {
            Py_XDECREF(rec);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(entry, 0, Py_NewRef(pid));
        PyList_SET_ITEM(entry, 1, rec);
        PyList_SET_ITEM(entry, 2, Py_NewRef(shard));
        PyList_SET_ITEM(out, i, entry);
    }
    return out;
}

PyDoc_STRVAR(records_doc,
             "records(ids, seconds, versions, classes, scores, tails, shards, /)\n--\n\n"
             "`[id, \"<seconds>|<version>|<class>|<score><tail>\", shard]` per prediction, as\n"
             "`join.prediction_records` spells them (the texts given spelled), or None for a\n"
             "column of another type.");

static PyMethodDef methods[] = {
    {"meet", meet, METH_VARARGS, meet_doc},
    {"records", records, METH_VARARGS, records_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streamdrift._pairing",
    .m_doc = "The join's common transitions, and its prediction records, for a batch.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pairing(void) {
    EMPTY = PyUnicode_FromStringAndSize("", 0);
    return EMPTY ? PyModule_Create(&module) : NULL;
}

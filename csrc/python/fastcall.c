/* fastcall.c - pykernel._fastcall: send and recv of a small message while holding the GIL.
 *
 * cffi releases and retakes the GIL around every C call and converts each argument
 * through its type system: ~0.6 us of a ~0.8 us send+recv pair from Python. A message that
 * is there to take, or room that is there to fill, needs no wait, so this module makes that
 * call directly (METH_FASTCALL, GIL held, no conversion beyond two integers) through the
 * core's non-waiting entries pk_send_try / pk_recv_try. Anything else -- a wait, an error,
 * a large message -- returns an int and Python makes the full cffi call, which releases the
 * GIL, waits, counts and raises. The zero-copy calls go the same way: reserve/view hand out
 * memoryviews straight over the slot; commit/release never wait, so they always run here.
 * One copy of the core: the function pointers come from pykernel._core (bind), so both
 * modules run the same code on the same handles.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>

/* Above this a copy is long enough (~2 us+) that other threads should have the GIL. */
#define FAST_MAX (64 * 1024)

typedef int (*send_try_fn)(void *w, const char *data, uint32_t len);
typedef int64_t (*recv_try_fn)(void *r, char *buf, uint32_t cap);
typedef int (*reserve_try_fn)(void *w, void **data);
typedef int (*view_try_fn)(void *r, const void **data, uint32_t *len);
typedef int (*end_fn)(void *end); /* pk_abort, pk_release */
typedef int (*commit_fn)(void *w, uint32_t len);

static send_try_fn send_try;
static recv_try_fn recv_try;
static reserve_try_fn reserve_try;
static view_try_fn view_try;
static commit_fn commit;
static end_fn abort_reserved;
static end_fn release;
static end_fn view_cancel;

enum { N_BOUND = 8 };

static PyObject *fc_bind(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_BOUND) {
        PyErr_SetString(PyExc_TypeError, "bind(send_try, recv_try, reserve_try, view_try, "
                                         "commit, abort, release, view_cancel) takes 8 "
                                         "addresses");
        return NULL;
    }
    void *fn[N_BOUND];
    for (int i = 0; i < N_BOUND; i++) {
        fn[i] = PyLong_AsVoidPtr(args[i]);
        if (PyErr_Occurred())
            return NULL;
        if (!fn[i]) {
            PyErr_SetString(PyExc_ValueError, "bind: a null function address");
            return NULL;
        }
    }
    send_try = (send_try_fn)fn[0];
    recv_try = (recv_try_fn)fn[1];
    reserve_try = (reserve_try_fn)fn[2];
    view_try = (view_try_fn)fn[3];
    commit = (commit_fn)fn[4];
    abort_reserved = (end_fn)fn[5];
    release = (end_fn)fn[6];
    view_cancel = (end_fn)fn[7];
    Py_RETURN_NONE;
}

/* The end (writer or reader) an int argument names; NULL (no exception) when closed. */
static void *end_of(PyObject *arg)
{
    void *end = PyLong_AsVoidPtr(arg);
    if (!end)
        PyErr_Clear();
    return end;
}

/* send(writer, data) -> 1 sent, or a negative errno: then make the full call. */
static PyObject *fc_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !send_try)
        return PyLong_FromLong(-EINVAL);
    void *w = PyLong_AsVoidPtr(args[0]);
    if (!w) {
        PyErr_Clear(); /* closed (0) or not an address: the full call says which */
        return PyLong_FromLong(-EBADF);
    }
    PyObject *data = args[1];
    int rc;
    if (PyBytes_CheckExact(data)) {
        Py_ssize_t n = PyBytes_GET_SIZE(data);
        rc = n > FAST_MAX ? -EAGAIN : send_try(w, PyBytes_AS_STRING(data), (uint32_t)n);
    } else if (PyType_HasFeature(Py_TYPE(data), Py_TPFLAGS_HEAPTYPE)) {
        /* A class defined in Python may export its buffer with Python code (__buffer__),
         * which could close this writer under us: only C types (bytearray, memoryview,
         * numpy arrays ...) are read here; the full call handles the rest. */
        return PyLong_FromLong(-EINVAL);
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear(); /* not a contiguous buffer: the full call names the problem */
            return PyLong_FromLong(-EINVAL);
        }
        rc = view.len > FAST_MAX ? -EAGAIN : send_try(w, view.buf, (uint32_t)view.len);
        PyBuffer_Release(&view);
    }
    return PyLong_FromLong(rc);
}

/* recv(reader, buf, cap) -> the message as bytes, or a negative errno: then the full call.
 * buf is the reader's own buffer of cap bytes (cap at most FAST_MAX; a bigger message is
 * -EMSGSIZE here and stays queued for the full call). */
static PyObject *fc_recv(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !recv_try)
        return PyLong_FromLong(-EINVAL);
    void *r = PyLong_AsVoidPtr(args[0]);
    char *buf = r ? PyLong_AsVoidPtr(args[1]) : NULL;
    Py_ssize_t cap = buf ? PyLong_AsSsize_t(args[2]) : -1;
    if (!r || !buf || cap < 0 || cap > FAST_MAX) {
        PyErr_Clear(); /* closed (0) or not an address: the full call says which */
        return PyLong_FromLong(-EBADF);
    }
    int64_t n = recv_try(r, buf, (uint32_t)cap);
    if (n < 0)
        return PyLong_FromLongLong(n);
    return PyBytes_FromStringAndSize(buf, (Py_ssize_t)n);
}

/* args (end, size): 1 with both read; 0 (no exception left) for a closed end or a bad size. */
static int end_and_size(PyObject *const *args, void **end, Py_ssize_t *n)
{
    *end = end_of(args[0]);
    *n = *end ? PyLong_AsSsize_t(args[1]) : -1;
    if (*n >= 0)
        return 1;
    PyErr_Clear();
    return 0;
}

/* reserve(writer, n) -> a writable memoryview of the n bytes of a free slot, or -errno
 * (then the full call). The view points into the ring: Slot releases it at commit. */
static PyObject *fc_reserve(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    void *w;
    Py_ssize_t n;
    if (nargs != 2 || !reserve_try)
        return PyLong_FromLong(-EINVAL);
    if (!end_and_size(args, &w, &n))
        return PyLong_FromLong(-EBADF);
    void *data;
    int rc = reserve_try(w, &data);
    if (rc != 1)
        return PyLong_FromLong(rc);
    PyObject *view = PyMemoryView_FromMemory(data, n, PyBUF_WRITE);
    if (!view)
        abort_reserved(w); /* no Slot will exist to commit or abort it */
    return view;
}

/* view(reader) -> a read-only memoryview of the next message, or -errno (the full call). */
static PyObject *fc_view(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !view_try)
        return PyLong_FromLong(-EINVAL);
    void *r = end_of(args[0]);
    if (!r)
        return PyLong_FromLong(-EBADF);
    const void *data;
    uint32_t len;
    int rc = view_try(r, &data, &len);
    if (rc != 1)
        return PyLong_FromLong(rc);
    PyObject *view = PyMemoryView_FromMemory((char *)data, len, PyBUF_READ);
    if (!view)
        view_cancel(r); /* no View will exist to release it: the message stays queued */
    return view;
}

/* commit(writer, n) / release(reader) -> the core's result; neither ever waits. */
static PyObject *fc_commit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    void *w;
    Py_ssize_t n;
    if (nargs != 2 || !commit)
        return PyLong_FromLong(-EINVAL);
    if (!end_and_size(args, &w, &n))
        return PyLong_FromLong(-EBADF);
    return PyLong_FromLong(n > UINT32_MAX ? -EMSGSIZE : commit(w, (uint32_t)n));
}

static PyObject *fc_release(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !release)
        return PyLong_FromLong(-EINVAL);
    void *r = end_of(args[0]);
    return PyLong_FromLong(r ? release(r) : -EBADF);
}

static PyMethodDef methods[] = {
    {"bind", (PyCFunction)(void (*)(void))fc_bind, METH_FASTCALL,
     "bind(send_try, recv_try, reserve_try, view_try, commit, abort, release, view_cancel): "
     "the core's "
     "entry addresses (from pykernel._core)."},
    {"reserve", (PyCFunction)(void (*)(void))fc_reserve, METH_FASTCALL,
     "reserve(writer, n) -> writable memoryview, or -errno when the full call must be made."},
    {"view", (PyCFunction)(void (*)(void))fc_view, METH_FASTCALL,
     "view(reader) -> read-only memoryview, or -errno when the full call must be made."},
    {"commit", (PyCFunction)(void (*)(void))fc_commit, METH_FASTCALL,
     "commit(writer, n) -> pk_commit's result."},
    {"release", (PyCFunction)(void (*)(void))fc_release, METH_FASTCALL,
     "release(reader) -> pk_release's result."},
    {"send", (PyCFunction)(void (*)(void))fc_send, METH_FASTCALL,
     "send(writer, data) -> 1, or -errno when the full call must be made."},
    {"recv", (PyCFunction)(void (*)(void))fc_recv, METH_FASTCALL,
     "recv(reader, buf, cap) -> bytes, or -errno when the full call must be made."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pykernel._fastcall",
    "GIL-held send/recv of a message that needs no wait (see csrc/python/fastcall.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastcall(void) { return PyModule_Create(&module); }

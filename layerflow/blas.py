"""BLAS GEMM for kernels, with the alpha and beta that `np.dot(a, b, out)` cannot take.

    gemm(a, b, c, trans_a, trans_b, alpha, beta):   c = alpha op(a) @ op(b) + beta c

a, b, c: C-contiguous 2-D float32 or float64 arrays of one dtype; op(x) is x, or x.T when its
flag is set: op(a) (m, k), op(b) (k, n), c (m, n). With beta = 1 a product accumulates into c in
the same pass (weight gradients: dW += dout.T @ x, no scratch array, no second sweep).

It calls the same SciPy BLAS as Numba's own `np.dot` (scipy.linalg.cython_blas, through Numba's
`numba_xxgemm` helper), so it is just as cacheable (`cache=True`) and uses the same threads.
A row-major c (m, n) is the column-major c.T (n, m) = op(b).T @ op(a).T: the operands swap.
Kernels of other files that call it keep their cache when this file changes (Numba does not
track callees across files): delete their __pycache__/*.nbi after editing `gemm`.
With NUMBA_DISABLE_JIT=1, `gemm` is the same product in plain numpy.

    with serial_blas(): ...     every GEMM runs on its calling thread while inside

For kernels that call `gemm` from several Numba threads at once (a `prange` over images): a
BLAS that also starts its own threads for each of those calls puts 4 threads on 2 cores, and
small GEMMs then run several times slower. The thread count is process-wide (OpenBLAS has no
per-thread setting in its pthreads build), so it is lowered for the kernel call and restored.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
from contextlib import contextmanager

import numpy as np
from numba import config, njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic

_xxgemv = types.ExternalFunction("numba_xxgemv", types.intc(
    types.char, types.char, types.intp, types.intp,  # kind, trans, m, n (column-major a)
    types.voidptr, types.voidptr, types.intp,        # alpha, a, lda
    types.voidptr, types.voidptr, types.voidptr))    # x, beta, y (unit strides)

_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,         # kind ('s' | 'd'), transa, transb
    types.intp, types.intp, types.intp,         # m, n, k
    types.voidptr, types.voidptr, types.intp,   # alpha, a, lda
    types.voidptr, types.intp, types.voidptr,   # b, ldb, beta
    types.voidptr, types.intp))                 # c, ldc


@intrinsic
def _address(typingctx, arr):
    """The data pointer of an array, as a void*."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)
    return types.voidptr(arr), codegen


@intrinsic
def _blas_kind(typingctx, a, b, c):
    """'s' (float32) or 'd' (float64) as a constant; a typing error unless a, b, c are arrays
    of one of these dtypes, all the same."""
    arrays = all(isinstance(t, types.Array) for t in (a, b, c))
    if not arrays or a.dtype not in (types.float32, types.float64) or not (
            a.dtype == b.dtype == c.dtype):
        raise errors.TypingError(f"gemm: a, b and c must be float32 or float64 arrays of one "
                                 f"dtype, got {a}, {b}, {c}")
    kind = ord("s") if a.dtype == types.float32 else ord("d")

    def codegen(context, builder, sig, args):
        return context.get_constant(types.int8, kind)
    return types.int8(a, b, c), codegen


_N, _T = np.int8(ord("n")), np.int8(ord("t"))


@njit(cache=True)
def gemm(a, b, c, trans_a, trans_b, alpha, beta):
    """c (m, n) = alpha op(a) (m, k) @ op(b) (k, n) + beta c; see the module docstring."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if (a.shape[1] if trans_a else a.shape[0]) != m or (
            b.shape[1] if trans_b else b.shape[0]) != k or (
            b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("gemm: shapes do not match")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm: arrays must be C-contiguous")
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0:
            c[:] = 0
        else:
            c *= beta
        return
    scalars = np.empty(2, c.dtype)
    scalars[0] = alpha
    scalars[1] = beta
    kind = _blas_kind(a, b, c)
    if m == 1 or n == 1:
        # A product with one row or one column is a matrix-vector product. GEMM packs the
        # whole matrix into panels on every call, GEMV streams it once: for (1, 784) @
        # (784, 512), batch-1 inference, 174 us against 20 us.
        if beta == 0:
            c[:] = 0  # BLAS may compute beta * c, and 0 * NaN is NaN: c must not be read
        # c's values = op(matrix) @ the k values of the other operand, where the matrix is b
        # (c one row: c.T = op(b).T @ a.T) or a (c one column). Row-major, the matrix is
        # column-major (k, length) when it is transposed in that product, else (length, k).
        length = n if m == 1 else m
        matrix, vector = (b, a) if m == 1 else (a, b)
        transposed = trans_b if m == 1 else not trans_a
        if transposed:
            status = _xxgemv(kind, _T, k, length, _address(scalars[0:1]), _address(matrix), k,
                             _address(vector), _address(scalars[1:2]), _address(c))
        else:
            status = _xxgemv(kind, _N, length, k, _address(scalars[0:1]), _address(matrix),
                             length, _address(vector), _address(scalars[1:2]), _address(c))
    else:
        status = _xxgemm(kind, _T if trans_b else _N, _T if trans_a else _N, n, m, k,
                         _address(scalars[0:1]), _address(b), b.shape[1], _address(a),
                         a.shape[1], _address(scalars[1:2]), _address(c), n)
    if status != 0:
        raise RuntimeError("gemm: no BLAS (SciPy's cython_blas) available")


def _gemm_numpy(a, b, c, trans_a, trans_b, alpha, beta):
    """gemm without Numba (NUMBA_DISABLE_JIT=1): the same contract, in numpy."""
    if not (a.dtype == b.dtype == c.dtype and c.dtype in (np.float32, np.float64)):
        raise TypeError(f"gemm: a, b and c must be float32 or float64 arrays of one dtype, got "
                        f"{a.dtype}, {b.dtype}, {c.dtype}")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm: arrays must be C-contiguous")
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    if op_a.shape[0] != c.shape[0] or op_a.shape[1] != op_b.shape[0] or \
            op_b.shape[1] != c.shape[1]:
        raise ValueError("gemm: shapes do not match")
    prod = np.dot(op_a, op_b)
    if beta == 0:  # as BLAS: c is not read, so a NaN in it does not survive
        c[...] = alpha * prod
    else:
        c *= beta
        c += alpha * prod


if config.DISABLE_JIT:
    gemm = _gemm_numpy  # noqa: F811


# ---- BLAS threads ------------------------------------------------------------------------

# (get, set) thread-count functions: SciPy's wheels prefix OpenBLAS's names; a system OpenBLAS
# keeps them. NumPy's ILP64 OpenBLAS ends its names in 64_, so it is never picked by mistake.
_THREAD_FUNCS = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                 ("openblas_get_num_threads", "openblas_set_num_threads"))


@functools.cache
def _blas_thread_control():
    """(get, set) of the thread count of the OpenBLAS that `gemm` calls, or None if unknown
    (another BLAS, or a platform where the loaded library cannot be found)."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that gemm calls)
    except ImportError:
        return None
    paths = []
    try:
        with open("/proc/self/maps") as maps:  # Linux: every library this process loaded
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and "openblas" in os.path.basename(fields[5]):
                    paths.append(fields[5].strip())
    except OSError:
        pass
    root = os.path.dirname(scipy.__file__)  # elsewhere: where SciPy's wheels put it
    paths += glob.glob(os.path.join(root + ".libs", "*openblas*"))
    paths += glob.glob(os.path.join(root, ".dylibs", "*openblas*"))
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _THREAD_FUNCS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


def can_serialize_blas() -> bool:
    """True when `serial_blas` can hold the BLAS to one thread."""
    return _blas_thread_control() is not None


@contextmanager
def serial_blas(active: bool = True):
    """While inside, the BLAS runs every GEMM on the thread that calls it (one thread); its
    thread count is restored on exit. A no-op when `active` is False or the BLAS is unknown."""
    control = _blas_thread_control() if active else None
    if control is None:
        yield
        return
    get, set_ = control
    before = get()
    if before == 1:
        yield
        return
    set_(1)
    try:
        yield
    finally:
        set_(before)

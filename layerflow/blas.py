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
"""
from __future__ import annotations

import numpy as np
from numba import config, njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic

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
    status = _xxgemm(kind, _T if trans_b else _N, _T if trans_a else _N, n, m, k,
                     _address(scalars[0:1]), _address(b), b.shape[1], _address(a), a.shape[1],
                     _address(scalars[1:2]), _address(c), n)
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

"""layerflow.blas.gemm: c = alpha op(a) @ op(b) + beta c, against numpy."""
import numpy as np
import pytest

from layerflow.blas import gemm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0)])
def test_matches_numpy(dtype, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(7)
    m, n, k = 5, 7, 3
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    want = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + beta * c
    gemm(a, b, c, trans_a, trans_b, alpha, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 7, 5), (6, 1, 5), (1, 1, 4), (1, 300, 257)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 2.0)])
def test_one_row_or_column_matches_numpy(dtype, trans_a, trans_b, m, n, k, alpha, beta):
    """c with one row (batch-1 inference) or one column is a matrix-vector product, which
    gemm hands to BLAS's GEMV: every layout of a and b, and beta 0 never reads c."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    want = alpha * ((a.astype(np.float64).T if trans_a else a.astype(np.float64))
                    @ (b.astype(np.float64).T if trans_b else b.astype(np.float64)))
    if beta == 0:
        c[:] = np.nan
    else:
        want += beta * c
    gemm(a, b, c, trans_a, trans_b, alpha, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol * np.sqrt(k))


def test_beta_zero_does_not_read_c():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    c = np.full((2, 4), np.nan)
    gemm(a, b, c, False, False, 1.0, 0.0)
    np.testing.assert_array_equal(c, np.full((2, 4), 3.0))


def test_accumulates_into_c():
    """The weight-gradient use: dw += dout.T @ x, twice, is twice the product."""
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    dw = np.zeros((3, 4))
    gemm(dout, x, dw, True, False, 1.0, 1.0)
    gemm(dout, x, dw, True, False, 1.0, 1.0)
    np.testing.assert_allclose(dw, 2 * dout.T @ x, rtol=1e-12)


def test_empty_inner_dimension_scales_c():
    c = np.ones((2, 2))
    gemm(np.zeros((2, 0)), np.zeros((0, 2)), c, False, False, 1.0, 0.5)
    np.testing.assert_array_equal(c, np.full((2, 2), 0.5))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shapes"):
        gemm(np.ones((2, 3)), np.ones((4, 2)), np.ones((2, 2)), False, False, 1.0, 0.0)


def test_non_contiguous_raises():
    a = np.ones((3, 4))[:, ::2]  # (3, 2), strided
    with pytest.raises(ValueError, match="contiguous"):
        gemm(a, np.ones((2, 2)), np.ones((3, 2)), False, False, 1.0, 0.0)


def test_mixed_dtypes_are_refused():
    with pytest.raises(Exception, match="float32 or float64 arrays of one dtype"):
        gemm(np.ones((2, 2), np.float32), np.ones((2, 2)), np.ones((2, 2), np.float32),
             False, False, 1.0, 0.0)


def test_serial_blas_holds_one_thread_and_restores():
    from layerflow.blas import _blas_thread_control, serial_blas

    control = _blas_thread_control()
    if control is None:
        pytest.skip("the BLAS behind scipy has no thread control here")
    get, set_ = control
    before = get()
    set_(2)
    try:
        with serial_blas():
            assert get() == 1
            with pytest.raises(ZeroDivisionError):
                with serial_blas():
                    1 / 0
            assert get() == 1
        assert get() == 2
        with serial_blas(active=False):
            assert get() == 2
    finally:
        set_(before)

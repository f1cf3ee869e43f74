"""Importing layerflow makes the idle threads of OpenMP (OMP_WAIT_POLICY=PASSIVE) and of
OpenBLAS (OPENBLAS_THREAD_TIMEOUT=20, 2^20 cycles) sleep unless the user chose otherwise: spinning threads of
one pool otherwise take the cores from the other's between a prange kernel and a GEMM (a LeNet
step: 27 ms with the defaults against 8-9 ms on 2 cores, see layerflow/__init__.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SNIPPET = """
import os, sys
import layerflow
import numba, numpy as np
from numba import njit, prange

@njit(parallel=True)
def twice(x):
    for i in prange(x.size):
        x[i] *= 2

twice(np.ones(8))  # loads the threading layer (libgomp reads the variable as it loads)
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
      numba.threading_layer())
"""


@pytest.mark.parametrize("given, expected", [
    ({}, ("PASSIVE", "20")),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "20")),
    ({"OPENBLAS_THREAD_TIMEOUT": "12"}, ("PASSIVE", "12")),
])
def test_idle_threads_sleep_unless_the_user_chose_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    env.update(given)
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    policy, timeout, layer = out.stdout.split()
    assert (policy, timeout) == expected
    assert layer in ("omp", "tbb", "workqueue")

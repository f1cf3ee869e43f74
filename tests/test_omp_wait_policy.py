"""Importing layerflow makes OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the
user chose a policy: spinning OpenMP threads and OpenBLAS's threads otherwise take the cores
from each other between a prange kernel and a GEMM (a LeNet step: 27 ms against 13-15 ms on
2 cores, see layerflow/__init__.py)."""
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
print(os.environ.get("OMP_WAIT_POLICY"), numba.threading_layer())
"""


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_wait_policy_is_passive_unless_the_user_set_one(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    policy, layer = out.stdout.split()
    assert policy == expected
    assert layer in ("omp", "tbb", "workqueue")

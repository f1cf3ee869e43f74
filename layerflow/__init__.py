"""layerflow: Caffe's workflow in Python. YAML nets of Numba-jitted layers.

The names a plugin author needs are here: `Layer` (`NeuronLayer` for an elementwise one),
`Param`, `register_layer`, `register_solver`, `register_lr_policy`, `register_source` (with
`DataSource`, in `layerflow.sources`), `register_onnx` (a layer's ONNX export, see
`layerflow.onnx`), `FillerSpec`, `fill`, `UserError`, `gradcheck`. Using a trained model:
`deploy_net`.
"""
import os as _os

# Numba's parallel kernels (prange) run on GNU OpenMP's threads, the GEMMs on OpenBLAS's own.
# Idle threads of both spin by default (OpenMP's for a while after each parallel region,
# OpenBLAS's for 2^28 cycles, about 0.1 s, after each GEMM) and hold the cores that the other
# pool's threads need next. OpenMP's are told to sleep at once, OpenBLAS's after 2^20 cycles
# (about 0.4 ms: long enough to stay awake between the GEMMs of one step, short next to a
# convolution's prange). Measured on 2 cores (`python benchmarks/bench_cnn.py --profile`,
# `python benchmarks/bench_mlp.py --sizes 0`): a LeNet training step took 27 ms with the
# defaults, 13-15 ms with OMP_WAIT_POLICY=PASSIVE, 8-9 ms with OPENBLAS_THREAD_TIMEOUT=20 too;
# CIFAR-10 quick 121, 110 and 57-60 ms. A timeout of 4 (sleep at once) was as fast on the CNNs
# but cost the small MLP (784-100-10) 30% (218k against 317k samples/s). libgomp and SciPy's
# OpenBLAS read the variables when they are loaded, at Numba's first parallel kernel and at the
# first GEMM, after this import (a program that imported scipy.linalg before layerflow keeps
# OpenBLAS's default). A value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .errors import UserError
from .fillers import FillerSpec, fill
from .layer import Layer, NeuronLayer, NoParams, Param
# Imported eagerly so that `layerflow.gradcheck` is the function, not its module.
from .gradcheck import GradcheckResult, check_layer, gradcheck
from .registry import (register_layer, register_lr_policy, register_onnx, register_solver,
                       register_source)

__version__ = "0.1.0"


def __getattr__(name):
    # Net, Solver and gradcheck import numba-heavy code; load them on first use only.
    if name == "Net":
        from .net import Net
        return Net
    if name == "deploy_net":
        from .builder import deploy_net
        return deploy_net
    if name in ("Solver",):
        from .solver import Solver
        return Solver
    raise AttributeError(f"module 'layerflow' has no attribute {name!r}")


__all__ = ["UserError", "FillerSpec", "fill", "Layer", "NeuronLayer", "NoParams", "Param",
           "register_layer", "register_lr_policy", "register_onnx", "register_solver",
           "register_source", "Net", "Solver", "deploy_net", "gradcheck", "check_layer",
           "GradcheckResult", "__version__"]

"""layerflow: Caffe's workflow in Python. YAML nets of Numba-jitted layers.

The names a plugin author needs are here: `Layer`, `Param`, `register_layer`,
`register_solver`, `register_lr_policy`, `register_source` (with `DataSource`, in
`layerflow.sources`), `register_onnx` (a layer's ONNX export, see `layerflow.onnx`),
`FillerSpec`, `fill`, `UserError`, `gradcheck`. Using a trained model: `deploy_net`.
"""
from .errors import UserError
from .fillers import FillerSpec, fill
from .layer import Layer, NoParams, Param
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


__all__ = ["UserError", "FillerSpec", "fill", "Layer", "NoParams", "Param", "register_layer",
           "register_lr_policy", "register_onnx", "register_solver", "register_source", "Net",
           "Solver", "deploy_net", "gradcheck", "check_layer", "GradcheckResult", "__version__"]

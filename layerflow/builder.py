"""From files to built objects: the one place that reads a solver or net YAML, applies `--set`
overrides and builds the nets. The command line and the Python API (`Solver.from_yaml`,
`Net.from_yaml`) both come through here; the Solver itself only receives built nets.
"""
from __future__ import annotations

import time
from pathlib import Path

from .config import load_yaml, parse_net, parse_solver
from .deploy import derive
from .errors import UserError
from .net import Net, in_phase
from .overrides import Overrides
from .plugins import load_plugins
from .registry import SOLVERS
from .snapshot import load_weights


def _overrides(overrides) -> Overrides | None:
    if isinstance(overrides, (list, tuple)):
        return Overrides(list(overrides)) if overrides else None
    return overrides or None


def build_net(path: str | Path, phase: str = "train", *, plugins: list[str] | None = None,
              overrides=None, dtype: str | None = None, seed: int = 0,
              deploy: bool = False) -> Net:
    """The net of a YAML file for one phase, after `overrides` (an Overrides, or a list of
    `KEY=VALUE` strings: only their layers./net. keys apply). `deploy`: the deploy net derived
    from it instead (`layerflow.deploy`; `phase` is then not used)."""
    load_plugins(plugins)
    src = load_yaml(path)
    overrides = _overrides(overrides)
    if overrides is not None:
        overrides.apply_net(src)
    config = parse_net(src)
    if deploy:
        return Net(derive(config), "test", seed=seed, dtype=dtype)
    return Net(config, phase, seed=seed, dtype=dtype)


def deploy_net(path: str | Path, weights: str | Path | None = None, *,
               plugins: list[str] | None = None, overrides=None,
               dtype: str | None = None) -> Net:
    """The deploy net of a net YAML (`layerflow.deploy`: test phase, data layers turned into
    Inputs that take raw samples, losses and label readers left out, SoftmaxLoss turned into
    Softmax), with `weights` (a .safetensors file) loaded: `net.forward({"data": x})`.

    Every param of the deploy net must be in the weights file (a UserError lists those that
    are not); the file's other params (of layers left out) are ignored.
    """
    net = build_net(path, plugins=plugins, overrides=overrides, dtype=dtype, deploy=True)
    if weights is not None:
        copied = net.copy_from(load_weights(Path(weights)), str(weights))
        missing = [f"{l}.{p}" for l, ps in net.params.items() for p in ps
                   if f"{l}.{p}" not in copied]
        if missing:
            raise UserError(f"{weights}: has no values for {', '.join(missing)}; were these "
                            f"weights trained for {path}?")
    return net


def build_solver(path: str | Path, *, plugins: list[str] | None = None, overrides=None):
    """Read solver.yaml and its net, build the train net, the test net when the solver tests,
    and the solver of the file's `type`.

    `overrides` edit the solver's and the net's YAML before validation, so their errors name
    the `--set` argument. The seed is `random_seed`, or taken from the clock when it is -1.
    """
    load_plugins(plugins)
    overrides = _overrides(overrides)
    src = load_yaml(path)
    if overrides is not None:
        overrides.apply_solver(src)
    cfg = parse_solver(src)
    try:
        solver_cls = SOLVERS.get(cfg.spec.type)
    except UserError as err:
        raise UserError(f"{src.locate(('type',))}: type: {err}") from None
    spec = cfg.spec
    seed = spec.random_seed if spec.random_seed >= 0 else time.time_ns() % (2 ** 31)
    net_src = load_yaml(cfg.net_path)
    if overrides is not None:
        overrides.apply_net(net_src)
    net_config = parse_net(net_src)
    net = Net(net_config, "train", seed=seed)
    test_nets = []
    if spec.test_interval > 0 or spec.test_iter > 0:
        if not any(in_phase(c, "test") for c in net_config.layers):
            raise UserError(f"{cfg.source.file}: test_interval/test_iter are set but the "
                            f"net has no layers in the test phase")
        test_nets.append(Net(net_config, "test", seed=seed, share_params_with=net))
    return solver_cls(cfg, net, test_nets, seed=seed)

"""From files to built objects: the one place that reads a solver or net YAML, applies `--set`
overrides and builds the nets. The command line and the Python API (`Solver.from_yaml`,
`Net.from_yaml`) both come through here; the Solver itself only receives built nets.
"""
from __future__ import annotations

import time
from pathlib import Path

from .config import load_yaml, parse_net, parse_solver
from .deploy import derive
from .distributed import World
from .errors import UserError
from .net import Net, in_phase
from .overrides import Overrides
from .plugins import load_plugins
from .registry import SOLVERS
from .weights import copy_weight_files


def as_overrides(overrides) -> Overrides | None:
    """An Overrides from a list of `KEY=VALUE` strings (None when there are none)."""
    if isinstance(overrides, (list, tuple)):
        return Overrides(list(overrides)) if overrides else None
    return overrides or None


def _stages(stage) -> tuple[str, ...]:
    """--stage values: repeated and/or comma-separated (Caffe's `-stage a,b`)."""
    if stage is None:
        return ()
    items = [stage] if isinstance(stage, str) else list(stage)
    return tuple(s.strip() for item in items for s in item.split(",") if s.strip())


def build_net(path: str | Path, phase: str = "train", *, plugins: list[str] | None = None,
              overrides=None, dtype: str | None = None, seed: int = 0, level: int = 0,
              stage=None, deploy: bool = False, world=None) -> Net:
    """The net of a YAML file (or Caffe .prototxt) for one phase, level and stages, after
    `overrides` (an Overrides, or a list of `KEY=VALUE` strings: only their layers./net. keys
    apply). `deploy`: the deploy net derived from it instead (`layerflow.deploy`; the phase,
    level and stages are then the test phase's defaults). `world` (layerflow.distributed):
    its data layers read this process's share of every batch."""
    load_plugins(plugins)
    src = load_yaml(path)
    overrides = as_overrides(overrides)
    if overrides is not None:
        overrides.apply_net(src)
    config = parse_net(src)
    if deploy:
        return Net(derive(config), "test", seed=seed, dtype=dtype)
    shard = (world.rank, world.size) if world is not None else (0, 1)
    return Net(config, phase, seed=seed, dtype=dtype, level=level, stages=_stages(stage),
               shard=shard)


def deploy_net(path: str | Path, weights=None, *, plugins: list[str] | None = None,
               overrides=None, dtype: str | None = None) -> Net:
    """The deploy net of a net YAML (`layerflow.deploy`: test phase, data layers turned into
    Inputs that take raw samples, losses and label readers left out, SoftmaxLoss turned into
    Softmax), with `weights` loaded (a .safetensors or .caffemodel file, or a comma-separated
    list of them, as `--weights` takes): `net.forward({"data": x})`.

    Every param of the deploy net must be in the weights (a UserError lists those that are
    not); their other params (of layers left out) are ignored.
    """
    net = build_net(path, plugins=plugins, overrides=overrides, dtype=dtype, deploy=True)
    if weights is not None:
        copied = set(copy_weight_files(net, weights).copied)
        missing = [f"{l}.{p}" for l, ps in net.params.items() for p in ps
                   if f"{l}.{p}" not in copied]
        if missing:
            raise UserError(f"{weights}: has no values for {', '.join(missing)}; were these "
                            f"weights trained for {path}?")
    return net


def build_solver(path: str | Path, *, plugins: list[str] | None = None, overrides=None,
                 level: int | None = None, stage=None, world=None):
    """Read solver.yaml and its net, build the train net, the test net when the solver tests,
    and the solver of the file's `type`.

    `overrides` edit the solver's and the net's YAML before validation, so their errors name
    the `--set` argument. The seed is `random_seed`, or taken from the clock when it is -1.
    `level`/`stage` (the CLI's --level/--stage) replace the solver's train_state, as Caffe's
    `caffe train -level -stage` do; the test net keeps the solver's test_state.
    `world` (layerflow.distributed, default one process): data-parallel training, each net's
    data layers reading this process's share of every global batch; a clock seed is rank 0's.
    """
    world = world if world is not None else World()
    load_plugins(plugins)
    overrides = as_overrides(overrides)
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
    seed = world.bcast_object(seed)  # one seed: one shuffle and one initialization everywhere
    shard = (world.rank, world.size)
    net_src = src.children.get("net") or load_yaml(cfg.net_path)
    if overrides is not None:
        overrides.apply_net(net_src)
    net_config = parse_net(net_src)
    train_level = spec.train_state.level if level is None else level
    train_stages = tuple(spec.train_state.stage) if stage is None else _stages(stage)
    net = Net(net_config, "train", seed=seed, level=train_level, stages=train_stages,
              shard=shard)
    test_nets = []
    if spec.test_interval > 0 or spec.test_iter > 0:
        test_state = (spec.test_state.level, tuple(spec.test_state.stage))
        if not any(in_phase(c, "test", *test_state) for c in net_config.layers):
            raise UserError(f"{cfg.source.file}: test_interval/test_iter are set but the "
                            f"net has no layers in the test phase")
        test_nets.append(Net(net_config, "test", seed=seed, share_params_with=net,
                             level=test_state[0], stages=test_state[1], shard=shard))
    solver = solver_cls(cfg, net, test_nets, seed=seed)
    solver.world = world
    return solver

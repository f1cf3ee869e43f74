"""The training loop around a Solver: tests, display, snapshots, signals, metrics, resume.

Loop order (Caffe's): test if due -> one iteration -> display if due -> test if due ->
snapshot if due or asked for by a signal -> stop if asked. Iterations are counted as done:
the record of iteration N comes after N updates.

Files beside the snapshots (`<prefix>` = snapshot_prefix), one run per prefix: a new run where
an earlier run's files are is refused, unless told to start over (the earlier files are then
moved into a dated folder beside them, `snapshot.move_aside`); resuming continues the run.
    <prefix>_metrics.jsonl  one JSON record per event, appended by the run and its resumes:
        {"event": "train", "iter", "lr" (in force at iteration `iter`: the rate of the next
         update, Caffe's "Iteration N, lr"), "loss" (the mean over the last `smoothed_over`
         iterations: average_loss, fewer at the start), "smoothed_over",
         "outputs": {blob: value of the last iteration}, "elapsed_s"}
        {"event": "test", "iter", "outputs": {blob: mean over one pass over the test data,
         or over test_iter batches when given}, "elapsed_s"}
        {"event": "resume" | "interrupted" | "diverged" | "warning", "iter", ...}
    <prefix>_solver.yaml, <prefix>_net.yaml   the configuration actually run (after --set
        overrides, with the random seed used), rewritten at the start of every run.

Signals: SIGINT (Ctrl-C) writes a snapshot and stops (`train` exits with status 130; a second
Ctrl-C stops at once, snapshots already written are kept); SIGHUP writes a snapshot and goes on.

Divergence: the loss is checked every iteration, the params at every display and before every
snapshot (a non-finite snapshot is never written). The error names the iteration and the first
layer whose top went non-finite, and the last good snapshot.

Resume (`--resume PATH`): a snapshot that is unreadable, truncated, fails its checksum, or was
written by another net or solver type is an error naming the file. `--resume auto` takes the
snapshot written last under the prefix, or starts from scratch when there is none; a resume at
or past max_iter has nothing to do, says so and writes nothing. Writes are atomic,
so a crash never leaves a damaged snapshot, only a missing one (ignored); a snapshot that exists
but fails its checks was damaged afterwards: auto reports it as a warning (stderr and metrics)
and falls back to the next older one; if none is usable it is an error, never a silent fresh
start. A snapshot of a different net or solver type is always an error.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from . import snapshot as snap
from .builder import as_overrides, build_net, build_solver
from .data import share
from .distributed import World
from .distributed import world as the_world
from .errors import DivergenceError, UserError
from .net import Net
from .profile import LayerTimer
from .solver import Solver
from .weights import copy_weight_files, split_list

EXIT_INTERRUPTED = 130


def evaluate(net: Net, iterations: int | None = None, world: World | None = None
             ) -> dict[str, float]:
    """The mean of each output blob (summed over its elements) over one test pass: see
    `evaluate_pass`."""
    return evaluate_pass(net, iterations, world)["outputs"]


def evaluate_pass(net: Net, iterations: int | None = None, world: World | None = None) -> dict:
    """Run a test: {"outputs": {blob: mean}, "batches": forwards run, "samples": samples read}.

    The net's data layers start at their first sample. Without `iterations`: exactly one pass
    over the data (`Net.epoch`), the last batch as small as the rest of the data (the net
    reshapes for it, then back), each output weighted by its batch's size, so the mean is
    over every sample once. With `iterations` (Caffe's test_iter): that many batches of the
    declared size, wrapping around the data if they reach its end (`coverage_warning`). A net
    that reads no data set (Input layers) runs `iterations` or Caffe's 50 forwards.

    With several processes (`world`), each runs its share of every batch (the batch sizes
    here are global) and the outputs, weighted by each share's size, are summed over the
    processes: the means are a single process's, up to rounding.
    """
    world = world if world is not None else World()
    net.rewind()
    batch = net.batch_size()
    if batch is None:  # no data layer: every process runs the same forwards, unshared
        sizes, world = [1] * (iterations or 50), World()
    elif iterations:
        sizes = [batch] * iterations
    else:
        n, batch = net.epoch()
        sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    shard = net.shard if batch is not None else (0, 1)
    totals = np.zeros(len(net.outputs), np.float64)
    current = batch if batch is not None else sizes[0]  # what the net is shaped for now
    with world.agree():  # bad test data in one process stops them all, reported once
        try:
            for size in sizes:
                lo, hi = share(size, shard)
                if hi == lo:  # a last batch smaller than the number of processes
                    continue
                if size != current:
                    net.set_batch_size(size)
                    current = size
                net.run_forward()
                for k, name in enumerate(net.outputs):
                    totals[k] += (hi - lo) * float(net.blobs[name].data.sum())
        finally:
            if batch is not None and current != batch:
                net.set_batch_size(batch)
    world.allreduce(totals)
    weight = sum(sizes)
    return {"outputs": {name: float(total) / weight for name, total in zip(net.outputs, totals)},
            "batches": len(sizes), "samples": weight if batch is not None and not iterations
            else None}


def coverage_warning(net: Net, iterations: int, what: str = "test_iter") -> str | None:
    """The warning for `iterations` batches that do not read the net's data exactly once
    (`what` names the setting: "test_iter", "--iterations"); None when they do."""
    epoch = net.epoch()
    if epoch is None or not iterations:
        return None
    n, batch = epoch
    read = iterations * batch
    if read == n:
        return None
    effect = (f"{n - read} of them are never tested" if read < n else
              f"{read - n} are counted twice" if read <= 2 * n else
              "every one is counted more than once, some more often than others")
    return (f"{what} {iterations} x batch_size {batch} = {read} samples per test, but the "
            f"test data of net {net.name} has {n}: {effect}; leave {what} out for exactly "
            f"one pass over the test data")


class Events:
    """What the loop reports; the CLI subclasses it to print (plainly or with a progress bar)."""

    def start(self, solver: Solver, start_iter: int) -> None: ...
    def display(self, record: dict) -> None: ...
    def test(self, record: dict) -> None: ...
    def snapshot(self, state: Path, weights: Path) -> None: ...
    def iteration(self, it: int) -> None: ...
    def warning(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def done(self, summary: dict) -> None: ...


@dataclass
class Trainer:
    """The loop around `solver`. `start_over`: a new run under a snapshot_prefix that holds
    an earlier run's files moves them aside first (`snapshot.move_aside`); without it such a
    run is refused, so two runs never interleave their snapshots and metrics."""

    solver: Solver
    events: Events = field(default_factory=Events)
    start_over: bool = False

    def __post_init__(self):
        self.world: World = self.solver.world  # rank 0 alone writes files and reports
        self.prefix: Path = self.solver.cfg.snapshot_prefix
        self.metrics_path = Path(f"{self.prefix}_metrics.jsonl")
        self.losses: deque = deque(maxlen=self.solver.spec.average_loss)
        self.elapsed_before = 0.0  # training time of the runs before a resume
        self.started = time.perf_counter()
        self.last_test: dict[str, float] = {}
        self.last_test_iter: int | None = None  # the iteration the last test ran at
        self.last_snapshot: Path | None = None
        self.resumed_from: Path | None = None
        self._requests: deque = deque()  # "snapshot" | "stop", appended by signal handlers
        self._coverage_checked: set[str] = set()  # test nets whose test_iter was checked
        self._auto_found_nothing = False  # --resume auto with no snapshot: a fresh start
        self.moved_to: Path | None = None  # where an earlier run's files were moved

    # -- starting points ----------------------------------------------------------------
    def resume(self, where: str | Path) -> Path | None:
        """Restore from a solverstate path, or 'auto': the snapshot written last under the
        prefix (the newest of the run that wrote last), going back to older ones past damaged
        ones; None (a fresh start) when there is none."""
        if str(where) != "auto":
            self._restore(Path(where))
            self.resumed_from = Path(where)
            return self.resumed_from
        found = snap.by_write_time(self.prefix)
        problems = []
        for _, path in found:
            try:
                self._restore(path)
            except snap.SnapshotError as err:
                # cannot come from a crash (writes are atomic): damaged later; say so, go on
                problems.append(str(err))
                self._warn(f"skipping damaged snapshot: {err}")
                continue
            self.resumed_from = path
            return path
        if problems:
            raise UserError(f"--resume auto: no usable snapshot under {self.prefix}_iter_*: "
                            + "; ".join(problems))
        self._auto_found_nothing = True
        return None

    def _restore(self, path: Path) -> None:
        solver = self.solver
        state, meta, weights = snap.load_snapshot(path)
        snap.check_fingerprint(path, meta, solver.fingerprint())
        solver.net.copy_from(weights, str(path), strict=True)
        solver.load_state(state, str(path))
        for prefix, net in self.nets():
            n = len(prefix)
            net.load_state({k[n:]: v for k, v in state.items() if k.startswith(prefix)},
                           str(path), required=not prefix)
        window = state.get("trainer.losses")
        self.losses.clear()
        if window is not None:
            self.losses.extend(float(x) for x in window)
        if "trainer.elapsed_s" in state:
            self.elapsed_before = float(np.asarray(state["trainer.elapsed_s"]).reshape(-1)[0])

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        """Train until max_iter (or a stop request), testing, displaying and snapshotting as
        the solver says; returns the summary (iterations, loss, last test, snapshot...)."""
        solver, spec = self.solver, self.solver.spec
        self.started = time.perf_counter()
        if self.resumed_from is not None and solver.iter >= spec.max_iter:
            return self._nothing_to_do()
        with self.world.agree():
            if self.world.is_root:
                self._prepare_prefix()
        if self.resumed_from is not None:
            self._log({"event": "resume", "iter": solver.iter,
                       "snapshot": str(self.resumed_from)})
        self.events.start(solver, solver.iter)
        interrupted = False
        with self._signals():
            try:
                if solver.test_nets and spec.test_interval and spec.test_initialization \
                        and solver.iter == 0:
                    self.test()
                while solver.iter < spec.max_iter:
                    # with several processes, signals arrive in each at its own moment: the
                    # requests are shared at the next iteration's agreement, so that all act
                    # on them after the same iteration (one later than a single process does)
                    shared = self.world.size > 1
                    solver.notice = self._take_requests() if shared and self._requests else None
                    loss = solver.iteration()
                    if shared:
                        requests = set().union(*(n for n in solver.notices if n))
                    else:
                        requests = self._take_requests() if self._requests else set()
                    self.losses.append(loss)
                    it = solver.iter
                    self.events.iteration(it)
                    if spec.display and it % spec.display == 0:
                        self._display(it)
                    if solver.test_nets and spec.test_interval and it % spec.test_interval == 0:
                        self.test()
                    if "stop" in requests:
                        interrupted = True
                        self._log({"event": "interrupted", "iter": it})
                        self.snapshot(last=True)
                        break
                    if (spec.snapshot and it % spec.snapshot == 0) or requests:
                        self.snapshot()
                if not interrupted:
                    if spec.snapshot_after_train and not self._snapshot_is_current():
                        self.snapshot()
                    if solver.test_nets and spec.test_interval and \
                            solver.iter % spec.test_interval:
                        self.test()
            except DivergenceError as err:
                self._log({"event": "diverged", "iter": solver.iter, "message": str(err)})
                good = (f"the last good snapshot is {self.last_good_snapshot()}"
                        if self.last_good_snapshot() else "no snapshot was written")
                raise DivergenceError(f"{err}; {good}") from None
        summary = {"iterations": solver.iter, "max_iter": spec.max_iter,
                   "loss": self.smoothed_loss(), "test": self.last_test,
                   "test_iter": self.last_test_iter, "elapsed_s": round(self.elapsed(), 3),
                   "snapshot": str(self.last_snapshot) if self.last_snapshot else None,
                   "weights": (str(snap.weights_of(self.last_snapshot)) if self.last_snapshot
                               else None),
                   "metrics": str(self.metrics_path), "interrupted": interrupted}
        self.events.done(summary)
        return summary

    def _prepare_prefix(self) -> None:
        """The snapshot folder, free of a killed write's temporaries and of another run's
        files, with this run's configuration written in it."""
        try:
            self.prefix.parent.mkdir(parents=True, exist_ok=True)
            snap.remove_temporaries(self.prefix)
            if self.resumed_from is None:
                self._claim_prefix()
            self.save_config()
        except OSError as exc:  # checked before training, as Caffe checks snapshot_prefix
            raise UserError(f"{self.solver.cfg.source.locate(('snapshot_prefix',))}: "
                            f"snapshot_prefix: cannot write under {self.prefix.parent}: "
                            f"{exc.strerror or exc}") from None

    def _claim_prefix(self) -> None:
        """A new run needs a snapshot_prefix of its own: an earlier run's files there are an
        error, unless asked to start over (or `--resume auto` found no snapshot to resume:
        the files of a run that never wrote one), when they are moved into a folder beside."""
        earlier = snap.run_files(self.prefix)
        if not earlier:
            return
        if not (self.start_over or self._auto_found_nothing):
            names = [f.name for f in earlier]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                           else "")
            where = self.solver.cfg.source.locate(("snapshot_prefix",))
            raise UserError(f"{where}: snapshot_prefix {self.prefix} already holds the files "
                            f"of an earlier run ({shown}); continue that run with --resume "
                            f"auto, or start a new one with --start-over (which moves the "
                            f"earlier files into a dated folder beside them)")
        self.moved_to = snap.move_aside(self.prefix)
        message = f"moved the files of the earlier run under {self.prefix} to {self.moved_to}"
        if self._auto_found_nothing:
            self.events.warning(f"--resume auto: no snapshot to resume; {message}")
        else:
            self.events.info(message)

    def _nothing_to_do(self) -> dict:
        """A resume at or past max_iter: say so, write nothing."""
        solver = self.solver
        message = (f"nothing to do: {self.resumed_from.name} is at iteration {solver.iter} "
                   f"and max_iter is {solver.spec.max_iter}; to train further, raise max_iter "
                   f"(e.g. --set max_iter={solver.iter + solver.spec.max_iter})")
        summary = {"iterations": solver.iter, "max_iter": solver.spec.max_iter,
                   "loss": self.smoothed_loss(), "test": {}, "test_iter": None,
                   "elapsed_s": round(self.elapsed_before, 3),
                   "snapshot": str(self.resumed_from),
                   "weights": str(snap.weights_of(self.resumed_from)),
                   "metrics": str(self.metrics_path),
                   "interrupted": False, "nothing_to_do": message}
        self.events.done(summary)
        return summary

    def last_good_snapshot(self) -> Path | None:
        """The snapshot a diverged run can go back to: the last written, else the newest."""
        if self.last_snapshot is not None:
            return self.last_snapshot
        found = snap.list_snapshots(self.prefix)
        return found[0][1] if found else None

    def _snapshot_is_current(self) -> bool:
        return self.last_snapshot is not None and self.last_snapshot.name.endswith(
            f"_iter_{self.solver.iter}.solverstate")

    def smoothed_loss(self) -> float:
        """The mean loss of the last average_loss iterations (NaN before the first)."""
        return float(np.mean(self.losses)) if self.losses else float("nan")

    def elapsed(self) -> float:
        """Seconds of training, the runs before a resume included."""
        return self.elapsed_before + time.perf_counter() - self.started

    def _display(self, it: int) -> None:
        with self.world.agree():  # every process has the same params: one says it
            self.solver.check_params()
        net = self.solver.net
        outputs = {name: float(net.blobs[name].data.sum()) for name in net.outputs}
        # the lr in force at iteration `it` (the rate of the update from it to it + 1), as
        # Caffe logs "Iteration N, lr = ...", so logs compare line by line
        record = {"event": "train", "iter": it, "lr": self.solver.learning_rate(it),
                  "loss": self.smoothed_loss(), "smoothed_over": len(self.losses),
                  "outputs": outputs, "elapsed_s": round(self.elapsed(), 3)}
        self._log(record)
        self.events.display(record)

    def test(self) -> dict[str, float]:
        """Run every test net once (`evaluate`), log and report the means; returns them."""
        solver = self.solver
        results: dict[str, float] = {}
        for net in solver.test_nets:
            if solver.spec.test_iter and net.name not in self._coverage_checked:
                self._coverage_checked.add(net.name)
                warning = coverage_warning(net, solver.spec.test_iter)
                if warning:
                    self._warn(warning)
            results.update(evaluate(net, solver.spec.test_iter or None, self.world))
        self.last_test, self.last_test_iter = results, solver.iter
        record = {"event": "test", "iter": solver.iter, "outputs": results,
                  "elapsed_s": round(self.elapsed(), 3)}
        self._log(record)
        self.events.test(record)
        return results

    def nets(self) -> list[tuple[str, Net]]:
        """(key prefix in the solver state, net): the train net's keys are bare, the test
        nets' start with `test<j>.`."""
        return [("", self.solver.net)] + [(f"test{j}.", n)
                                          for j, n in enumerate(self.solver.test_nets)]

    def state(self) -> dict[str, np.ndarray]:
        """The whole solver state of a snapshot: the solver's (iter, history, lr policy),
        each net's (data cursors, random generators) and the loop's (loss window, time)."""
        state = self.solver.state()
        for prefix, net in self.nets():
            state.update({prefix + k: v for k, v in net.state().items()})
        state["trainer.losses"] = np.array(list(self.losses), np.float64)
        state["trainer.elapsed_s"] = np.array([self.elapsed()], np.float64)
        return state

    def snapshot(self, last: bool = False) -> Path:
        """Write a snapshot of the current iteration (never one with a non-finite param),
        then remove the oldest beyond `snapshot_keep`. Rank 0 writes it; every process agrees
        on how that went (all states are the same in every process).

        `last`: the run is being stopped by a signal. With several processes the launcher
        kills them all a moment after its Ctrl-C (Open MPI 5: about 0.2 s after its SIGTERM),
        so rank 0 writes this one from a child process in a session of its own, which the
        launcher does not kill, and waits for it while it can."""
        with self.world.agree():
            if self.world.is_root:
                if last and self.world.size > 1:
                    return self._snapshot_detached()
                return self._write_snapshot()
        self.last_snapshot = snap.snapshot_paths(self.prefix, self.solver.iter)[1]
        return self.last_snapshot

    def _snapshot_detached(self) -> Path:
        pid = os.fork()
        if pid == 0:  # the child: no MPI, no threads of the parent, only files
            code = 1
            try:
                os.setsid()
                self._write_snapshot()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise UserError(f"{self.prefix}_iter_{self.solver.iter}: the last snapshot could "
                            f"not be written")
        self.last_snapshot = snap.snapshot_paths(self.prefix, self.solver.iter)[1]
        self.events.snapshot(self.last_snapshot, snap.weights_of(self.last_snapshot))
        return self.last_snapshot

    def _write_snapshot(self) -> Path:
        solver = self.solver
        solver.check_params()
        state = self.state()
        meta = {"fingerprint": json.dumps(solver.fingerprint()), "iter": str(solver.iter),
                "solver": solver.spec.type, "net": solver.net.name}
        try:
            path = snap.save_snapshot(self.prefix, solver.iter, solver.net.state_dict(), state,
                                      meta)
        except OSError as exc:  # disk full...: the snapshots already written stay intact
            raise UserError(f"{self.prefix}_iter_{solver.iter}: cannot write the snapshot: "
                            f"{exc}") from None
        self.last_snapshot = path
        snap.prune(self.prefix, solver.spec.snapshot_keep)
        self.events.snapshot(path, snap.weights_of(path))
        return path

    def save_config(self) -> None:
        """Write the configuration of this run beside the snapshots (after overrides)."""
        solver = self.solver
        solver_data = solver.spec.model_dump()
        solver_data["random_seed"] = solver.seed
        solver_data["net"] = f"{self.prefix.name}_net.yaml"
        solver_data["snapshot_prefix"] = self.prefix.name
        head = (f"# the configuration layerflow ran (after --set overrides), written by "
                f"`layerflow train`\n# from {Path(solver.cfg.source.file).resolve()}\n")
        snap.atomic_write(Path(f"{self.prefix}_solver.yaml"),
                          (head + yaml.safe_dump(solver_data, sort_keys=False, default_flow_style=None)).encode())
        net_config = solver.net.config
        net_head = (f"# the net layerflow ran (after --set overrides), from "
                    f"{Path(net_config.source.file).resolve()};\n# relative paths in "
                    f"it are relative to {net_config.base_dir}\n")
        snap.atomic_write(Path(f"{self.prefix}_net.yaml"),
                          (net_head + yaml.safe_dump(net_config.source.data,
                                                     sort_keys=False, default_flow_style=None)).encode())

    def _warn(self, message: str) -> None:
        self._log({"event": "warning", "iter": self.solver.iter, "message": message})
        self.events.warning(message)

    def _log(self, record: dict) -> None:
        if not self.world.is_root:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- signals ------------------------------------------------------------------------
    def request(self, what: str) -> None:
        """Ask the loop to "snapshot" (and go on) or "stop" (snapshot, then return) after the
        current iteration; what the SIGHUP and SIGINT handlers do."""
        self._requests.append(what)

    def _take_requests(self) -> set[str]:
        requests = set()
        while self._requests:  # popleft is atomic: a signal arriving now is never lost
            requests.add(self._requests.popleft())
        return requests

    def _signals(self):
        trainer = self

        class _Handlers:
            def __enter__(self):
                self.old = {}
                if threading.current_thread() is not threading.main_thread():
                    return self

                def on_int(signum, frame):
                    trainer.request("stop")
                    # a second Ctrl-C stops at once (snapshots on disk are always complete)
                    signal.signal(signal.SIGINT, signal.default_int_handler)

                def on_hup(signum, frame):
                    trainer.request("snapshot")

                def on_term(signum, frame):  # a scheduler or mpirun's Ctrl-C: stop cleanly
                    trainer.request("stop")

                self.old[signal.SIGINT] = signal.signal(signal.SIGINT, on_int)
                self.old[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
                if hasattr(signal, "SIGHUP"):
                    self.old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
                return self

            def __exit__(self, *exc):
                for sig, handler in self.old.items():
                    signal.signal(sig, handler)
                return False

        return _Handlers()


def train(solver_path: str | Path, *, resume: str | None = None, weights: str | None = None,
          overrides=None, plugins: list[str] | None = None,
          events: Events | None = None, profile: bool = False,
          start_over: bool = False, level: int | None = None, stage=None) -> dict:
    """Engine entry point of `layerflow train`: build, maybe resume or load weights, run.

    `weights`: a .safetensors or .caffemodel file, or a comma-separated list of them (later
    files override earlier ones; source layers the net lacks are reported as warnings).
    `level`/`stage`: the train net's state (Caffe's -level/-stage), replacing train_state.
    `profile`: time each layer of the train net; the summary gets a "profile" report.
    `start_over`: a new run where snapshot_prefix holds an earlier run's files moves them
    aside (see `Trainer`); without it, such a new run is a UserError.

    `overrides`: an Overrides, or the list of `--set KEY=VALUE` strings.
    The summary's "interrupted" is True when SIGINT stopped the run (the CLI exits 130).
    """
    if resume and weights:
        raise UserError("give --resume or --weights, not both (resume restores the weights)")
    if resume and start_over:
        raise UserError("give --resume or --start-over, not both (--start-over begins a new "
                        "run, --resume continues one)")
    world = the_world()  # more than one process when started by an MPI launcher
    if not world.is_root:
        events = Events()  # rank 0 alone reports
    with world.agree():  # a mistake is found by every process: rank 0 says it
        overrides = as_overrides(overrides)
        solver = build_solver(solver_path, plugins=plugins, overrides=overrides, level=level,
                              stage=stage, world=world)
        trainer = Trainer(solver, events or Events(), start_over=start_over)
        for notice in overrides.notices if overrides else []:
            trainer.events.warning(notice)
        if resume:
            trainer.resume(resume)
        fine_tuned = fine_tune(solver.net, weights, trainer.events) if weights else None
    if world.size > 1:  # rank 0's params everywhere, whatever each process initialized
        for buf in [solver.buffer.data, *solver.history] + [
                n.param_buffer.data for n in solver.test_nets]:
            world.bcast(buf)
        trainer.events.info(f"data-parallel over {world.size} processes: global batch = "
                            f"{world.size} x the net's batch_size")
    if not profile:
        summary = trainer.run()
    else:
        profiler, start = solver.net.add_hook(LayerTimer(solver.net)), solver.iter
        try:
            summary = trainer.run()
        finally:
            solver.net.remove_hook(profiler)
        summary["profile"] = profiler.report(solver.iter - start)
    if fine_tuned is not None:
        summary["weights_from"] = fine_tuned
    return summary


def fine_tune(net: Net, spec, events: Events) -> dict:
    """Copy the params of weights files into `net` by layer name (Caffe's fine-tuning) and
    report what happened, as Caffe logs "Ignoring source layer": the files' layers (and
    params) the net has no use for, and the net's params left to their fillers.

    `spec`: a .safetensors or .caffemodel file (or a .solverstate: its weights), or a
    comma-separated list of them applied in order. Returns {"file", "copied", "ignored",
    "initialized"} (qualified param names)."""
    files = [_weights_file(p, events.info) for p in split_list(spec)]
    done = copy_weight_files(net, files)
    if not done.copied:
        raise UserError(f"{spec}: no param in the file matches a layer of net {net.name} "
                        f"(params are matched by layer name); the file has "
                        f"{', '.join(sorted(done.seen)) or 'no params'}")
    mine = net.state_dict()
    initialized = [key for key in mine if key not in done.copied]
    events.info(f"fine-tuning from {spec}: {len(done.copied)} of the net's {len(mine)} params "
                f"copied")
    for note in done.notes:  # Caffe's "Ignoring source layer"
        events.info(f"  {note}")
    if initialized:
        events.info(f"  not in the file, so initialized by their fillers: "
                    f"{', '.join(initialized)}")
    return {"file": ",".join(map(str, files)), "copied": done.copied, "ignored": done.ignored,
            "initialized": initialized}


def test(net_path: str | Path, weights: str | Path, *, iterations: int | None = None,
         plugins: list[str] | None = None, phase: str = "test", level: int = 0,
         stage=None) -> dict:
    """Engine entry point of `layerflow test`: mean outputs of the net with these weights
    (one file or a comma-separated list, as for `train`), over one exact pass over its test
    data, or over `iterations` batches from its first sample (with a "warning" when they do
    not read it exactly once). Under an MPI launcher the processes share every batch."""
    world = the_world()
    with world.agree():
        net = build_net(net_path, phase, plugins=plugins, level=level, stage=stage,
                        world=world)
        notes: list[str] = []
        files = [_weights_file(p, notes.append) for p in split_list(weights)]
        done = copy_weight_files(net, files)
        copied = done.copied
        notes += done.notes
        missing = [f"{l}.{p}" for l, ps in net.params.items() for p in ps
                   if f"{l}.{p}" not in copied]
        if missing:
            raise UserError(f"{weights}: has no values for {', '.join(missing)}; were these "
                            f"weights trained for {net_path}?")
        warning = coverage_warning(net, iterations, "--iterations") if iterations else None
    t0 = time.perf_counter()
    result = evaluate_pass(net, iterations, world)
    result["elapsed_s"] = round(time.perf_counter() - t0, 3)
    result["iterations"] = result.pop("batches")
    if warning:
        result["warning"] = warning
    if notes:
        result["notes"] = notes
    return result


def _weights_file(path: Path, note) -> Path:
    """`path`, or for a solver state the weights file it was written with (said by `note`)."""
    weights = snap.weights_of_state(path)
    if weights is None:
        return path
    note(f"{path} is a solver state; reading the weights it was written with: {weights}")
    return weights

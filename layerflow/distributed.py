"""The MPI world: which process this is, and the few collectives data-parallel training needs.

`mpirun -n N layerflow train solver.yaml` starts N processes; each learns its rank from the
launcher's environment. With more than one process, layerflow runs data-parallel (see
DESIGN.md): `batch_size` is per process, process r takes the r-th slice of every global batch
of N x batch_size samples, the gradients are summed with one allreduce over the net's grad
buffer and divided by N, and only rank 0 writes files. With one process (no launcher, or
`-n 1`) nothing here imports mpi4py, and `world()` is a `World` whose collectives do nothing.

    w = world()            # World(rank=0, size=1), or MPIWorld over COMM_WORLD
    w.allreduce(buf)       # in place: buf <- sum over processes (float64 or float32 arrays)
    w.bcast(buf)           # in place: every process gets rank 0's values
    w.any(flag)            # True on every process if any process passed True
    with w.agree():        # a failure in any process ends all of them, reported once
        ...

Launchers are recognised by their environment: Open MPI (OMPI_COMM_WORLD_SIZE), MPICH and Intel
MPI's Hydra (PMI_SIZE), PMIx (PMIX_SIZE with OMPI_...). A launcher with N > 1 and no mpi4py is
a user error naming the `layerflow[mpi]` extra.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .errors import ElsewhereError, UserError

_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def launched() -> bool:
    """Whether an MPI launcher started this process (`mpirun -n 1` included)."""
    return any(name in os.environ for name in _SIZE_VARS)


def launched_size() -> int:
    """How many processes the MPI launcher started (1 without a launcher)."""
    return _env_int(_SIZE_VARS, 1)


def launched_rank() -> int:
    """This process's rank as the launcher says (0 without a launcher)."""
    return _env_int(_RANK_VARS, 0) if launched_size() > 1 else 0


def local_size() -> int:
    """How many of them run on this machine (all of them when the launcher does not say)."""
    return max(1, _env_int(_LOCAL_SIZE_VARS, launched_size()))


def default_threads() -> int:
    """Cores per process: the machine's cores shared by the processes on it, at least 1."""
    return max(1, (os.cpu_count() or 1) // local_size())


class World:
    """One process: rank 0 of 1. Every collective returns at once, leaving the data as it is."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        """buf <- the elementwise sum of every process's buf (in place)."""
        return buf

    def bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """buf <- root's buf (in place)."""
        return buf

    def bcast_object(self, obj, root: int = 0):
        """A small Python value (a seed, a message) from root to everyone."""
        return obj

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on at least one."""
        return bool(flag)

    def exchange(self, obj) -> list:
        """Every process's small Python value, in rank order, on every process."""
        return [obj]

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def abort(self, code: int) -> None:
        """End every process of the job with exit status `code`."""
        raise SystemExit(code)

    @contextlib.contextmanager
    def agree(self, note=None):
        """Run the block in every process, then agree on how it went: when it failed in some
        process, every process raises — the first failing one its own error, the others an
        `ElsewhereError` with the same exit status (so the message is shown once and no
        process is left waiting in a collective the failed one never reaches). An error that
        is not a UserError (a bug) keeps its traceback in its process.

        The block gets an `Agreement`: what it puts in `.note` (a small value) every process
        finds, after the block, in `.notes` (one per process, in rank order), with no
        collective of its own."""
        agreement = Agreement(note)
        failure: BaseException | None = None
        try:
            yield agreement
        except Exception as exc:
            failure = exc
        if self.size == 1:
            if failure is not None:
                raise failure
            agreement.notes = [agreement.note]
            return
        mine = None if failure is None else (
            failure.exit_code if isinstance(failure, UserError) else 1, str(failure))
        reports = self.exchange((mine, agreement.note))
        agreement.notes = [note for _, note in reports]
        failed = [(rank, r) for rank, (r, _) in enumerate(reports) if r is not None]
        if not failed:
            return
        if failure is not None and failed[0][0] == self.rank:
            raise failure
        rank, (code, message) = failed[0]
        raise ElsewhereError(f"process {rank} failed: {message}", code) from failure

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class Agreement:
    """What a `World.agree` block shares: its `note` in, every process's `notes` out."""

    __slots__ = ("note", "notes")

    def __init__(self, note=None):
        self.note = note
        self.notes: list = []


class MPIWorld(World):
    """COMM_WORLD of mpi4py: the buffer collectives (no pickling) for arrays."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise UserError(
                f"layerflow was started by an MPI launcher with {launched_size()} processes, "
                f"but mpi4py cannot be imported ({exc}); install the extra: "
                f"pip install 'layerflow[mpi]'") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce(self, buf):
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast(self, buf, root=0):
        if self.size > 1:
            self.comm.Bcast(buf, root=root)
        return buf

    def bcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root) if self.size > 1 else obj

    def any(self, flag):
        if self.size == 1:
            return bool(flag)
        x = np.array([1.0 if flag else 0.0])
        self.comm.Allreduce(self.MPI.IN_PLACE, x, op=self.MPI.MAX)
        return bool(x[0] > 0)

    def exchange(self, obj):
        return self.comm.allgather(obj) if self.size > 1 else [obj]

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code):
        self.comm.Abort(code)


_WORLD: World | None = None


def world() -> World:
    """This process's world: MPI's when a launcher started more than one process."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPIWorld() if launched_size() > 1 else World()
    return _WORLD

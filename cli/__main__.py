"""The console script `layerflow`, also run as `python -m layerflow.cli`."""
import os


def _threads_per_process() -> None:
    """Started by an MPI launcher with several processes on this machine: unless the user set
    them, give each process its share of the cores for BLAS, Numba and OpenMP, so that N
    processes do not oversubscribe the machine. Before numpy, scipy or numba are imported:
    they read these variables when they load."""
    for var in ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_SIZE",
                "PMI_SIZE"):
        if os.environ.get(var, "").isdigit():
            local = int(os.environ[var])
            break
    else:
        return
    if local > 1:
        n = str(max(1, (os.cpu_count() or 1) // local))
        for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS"):
            os.environ.setdefault(var, n)


def main():
    _threads_per_process()
    from layerflow.cli import app

    app()


if __name__ == "__main__":
    main()

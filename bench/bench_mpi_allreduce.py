"""Buffer-based ``Allreduce`` vs pickled ``allreduce`` for one gradient vector (run under mpirun).

    mpirun -n 3 .venv/bin/python bench/bench_mpi_allreduce.py --params 8290000 --repeats 5

The default size is the paper's Table 4 MLP with 4 x 512 hidden units on 14,637 inputs
(8.29 M float32 parameters, 33 MB): the per-step message of mpi-sync. Rank 0 prints the
median seconds per call and the payload rate (bytes of one vector / time).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from mpi4py import MPI


def timed(fn, repeats: int, comm) -> float:
    times = []
    for _ in range(repeats):
        comm.Barrier()
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    slowest = np.empty(repeats)
    comm.Allreduce(np.asarray(times), slowest, op=MPI.MAX)  # the slowest rank counts
    return float(np.median(slowest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=8_290_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    grads = np.random.default_rng(comm.Get_rank()).standard_normal(args.params).astype(np.float32)
    total = np.empty_like(grads)
    buffer_s = timed(lambda: comm.Allreduce(grads, total, op=MPI.SUM), args.repeats, comm)
    pickled_s = timed(lambda: comm.allreduce(grads, op=MPI.SUM), args.repeats, comm)
    assert np.allclose(comm.allreduce(grads, op=MPI.SUM), total, rtol=1e-5, atol=1e-4)
    if comm.Get_rank() == 0:
        mb = grads.nbytes / 2**20
        print(f"ranks {comm.Get_size()}, {args.params:,} float32 ({mb:.1f} MiB), median of {args.repeats}")
        for name, s in (("Allreduce (buffer)", buffer_s), ("allreduce (pickled)", pickled_s)):
            print(f"{name:22s} {s * 1e3:9.1f} ms  {mb / s:8.1f} MiB/s")
        print(f"speed-up {pickled_s / buffer_s:.1f}x")


if __name__ == "__main__":
    main()

"""Time the fused transform's block size: the measurement behind ``_fused.BLOCK_BYTES``.

Runs conv -> abs -> 2x2 max pooling (padding "same", float32, ``auto``'s strategy)
through ``skconv._fused`` on seven problems, with blocks of 1, 2, 4 and 8 MiB of
un-pooled maps, on one thread and on two.  The block sizes are timed in turn
within each round, best of ``--rounds``; the report gives milliseconds and each
size's time over the best size's of its row.

Usage (from the repository root; for OpenBLAS's native kernels unset both
variables, as in the benchmark)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/block_sweep.py
"""

import argparse
import platform
import time

import numpy as np
from threadpoolctl import threadpool_info

from skconv._fused import plan_fused, run_fused

# (images, height, width, filters, filter height, filter width)
PROBLEMS = [
    (20000, 8, 8, 16, 3, 3),
    (20000, 28, 28, 8, 5, 5),
    (5000, 28, 28, 32, 3, 3),
    (3000, 32, 32, 16, 3, 3),
    (2000, 64, 64, 8, 7, 7),
    (1000, 64, 64, 16, 5, 5),
    (500, 96, 96, 4, 15, 15),
]
BLOCK_MIB = (1, 2, 4, 8)


def sweep(rounds):
    rng = np.random.default_rng(0)
    rows = []
    for n, h, w, k, p, q in PROBLEMS:
        images = rng.random((n, h, w), dtype=np.float32)
        bank = rng.standard_normal((k, p, q)).astype(np.float32)
        out = np.empty((n, k, h // 2, w // 2), np.float32)
        for jobs in (1, 2):
            plans = {
                mib: plan_fused(
                    (h, w),
                    np.float32,
                    bank,
                    conv={"padding": "same"},
                    activation="abs",
                    pool={"size": 2},
                    n_jobs=jobs,
                    block_bytes=mib * 2**20,
                )
                for mib in BLOCK_MIB
            }
            best = dict.fromkeys(BLOCK_MIB, np.inf)
            for _ in range(rounds):
                for mib, plan in plans.items():
                    time.sleep(0.05)
                    start = time.perf_counter()
                    run_fused(plan, images, out)
                    best[mib] = min(best[mib], time.perf_counter() - start)
            methods = sorted({plan.method for plan in plans.values()})
            rows.append(((n, h, w, k, p, q), jobs, methods, best))
    return rows


def report(rows):
    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    )
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}, BLAS: {blas}")
    head = " ".join(f"{m} MiB".rjust(15) for m in BLOCK_MIB)
    print(f"{'problem (n, h, w, K, p, q)':32} thr {head}  strategy")
    for problem, jobs, methods, best in rows:
        low = min(best.values())
        cells = " ".join(f"{best[m] * 1e3:7.1f} ({best[m] / low:4.2f})" for m in BLOCK_MIB)
        print(f"{str(problem):32} {jobs:3} {cells}  {'/'.join(methods)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (best counts)")
    report(sweep(parser.parse_args(argv).rounds))


if __name__ == "__main__":
    main()

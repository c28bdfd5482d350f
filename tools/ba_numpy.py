#!/usr/bin/env python3
"""Blahut-Arimoto in NumPy, the same iteration as tokit's dense kernel
(plugins/rate/src/ba_dense.rs), on the same problem as `tokit bench ba`, timed in one run
with tokit's and reported as a ratio.

Problem (n x n, exact in f32 and f64): p(x) proportional to x mod 7 + 1,
d(x, y) = ((31x + 17y) mod 64 + |x - y| mod 64) / 64, slope beta (nats per unit
distortion), iterated until rate and distortion both change by less than tol.

Iteration, from the uniform output law q, with A = exp(-beta d'), d' = d minus its row
minimum, B = A * d':
    c = A q;  b = B q;  q' = q * (A^T (p / c))
    D = D_min + sum p b / c
    R = -beta (D - D_min) - sum p ln c + sum q' ln(q / q')

Usage (from the repository root, after `cargo build --release -p tokit-engine
-p tokit-plugin-rate`):
    python3 tools/ba_numpy.py [--size 1000] [--beta 8] [--tol 1e-10] [--threads 2]
NumPy's matrix-vector products run on its BLAS threads (set by OPENBLAS_NUM_THREADS etc.
before NumPy loads; --threads sets them).
"""

import argparse
import os
import re
import subprocess
import sys
import time


def problem(n, np):
    x = np.arange(n)
    p = (x % 7 + 1).astype(float)
    p /= p.sum()
    xx, yy = np.meshgrid(x, x, indexing="ij")
    d = ((xx * 31 + yy * 17) % 64 + np.abs(xx - yy) % 64) / 64.0
    return p, d


def blahut_arimoto(p, d, beta, tol, np, max_iter=1_000_000):
    dmin_row = d.min(axis=1, keepdims=True)
    ds = d - dmin_row
    d_min = float(p @ dmin_row[:, 0])
    a = np.exp(-beta * ds)
    b = a * ds
    q = np.full(d.shape[1], 1.0 / d.shape[1])
    prev = None
    for it in range(1, max_iter + 1):
        c = a @ q
        bq = b @ q
        qn = q * (a.T @ (p / c))
        dsum = float(p @ (bq / c))
        nz = qn > 0
        cross = float(qn[nz] @ np.log(q[nz] / qn[nz]))
        dist = d_min + dsum
        rate = max(-beta * dsum - float(p @ np.log(c)) + cross, 0.0)
        q = qn
        if prev is not None and abs(dist - prev[0]) < tol and abs(rate - prev[1]) < tol:
            return rate, dist, it
        prev = (dist, rate)
    return rate, dist, max_iter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--beta", type=float, default=8.0)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokit", default="target/release/tokit")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    p, d = problem(args.size, np)
    t = time.perf_counter()
    rate, dist, iters = blahut_arimoto(p, d, args.beta, args.tol, np)
    t_np = time.perf_counter() - t
    print(f"numpy {np.__version__}: {t_np * 1e3:.1f} ms, {iters} iterations, rate {rate:.15f} nats, distortion {dist:.15f}")

    cmd = [args.tokit, "bench", "ba", "--size", str(args.size), "--beta", str(args.beta), "--tol", str(args.tol)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    print(out.strip())
    ms = float(re.search(r": ([0-9.]+) ms", out).group(1))
    r_t = float(re.search(r"rate ([0-9.eE+-]+) nats", out).group(1))
    d_t = float(re.search(r"distortion ([0-9.eE+-]+)", out).group(1))
    print(f"|dR| = {abs(r_t - rate):.2e} nats, |dD| = {abs(d_t - dist):.2e}")
    print(f"time ratio tokit / numpy: {ms / (t_np * 1e3):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

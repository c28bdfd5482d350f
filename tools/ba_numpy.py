#!/usr/bin/env python3
"""Blahut-Arimoto in NumPy, the same iterations as tokit's dense kernel
(plugins/rate/src/blahut_arimoto/dense.rs), plain and SQUAREM-accelerated, on the same
problem, timed in one run with tokit's (same warm-up, best of the same number of runs)
and reported as ratios with the environment.

Problem (n x n, exact in f32 and f64): p(x) proportional to x mod 7 + 1,
d(x, y) = ((31x + 17y) mod 64 + |x - y| mod 64) / 64, slope beta (nats per unit
distortion), iterated until rate and distortion both change by less than tol between two
consecutive BA steps.

Plain iteration, from the uniform output law q, with A = exp(-beta d'), d' = d minus its
row minimum, B = A * d':
    c = A q;  b = B q;  q' = q * (A^T (p / c))
    D = D_min + sum p b / c
    R = -beta (D - D_min) - sum p ln c + sum q' ln(q / q')
SQUAREM (Varadhan & Roland 2008, scheme S3): two BA steps q1 = F(q0), q2 = F(q1),
r = q1 - q0, v = q2 - 2 q1 + q0, alpha = min(-|r|/|v|, -1), next point
q0 - 2 alpha r + alpha^2 v (halved towards alpha = -1 while it leaves the simplex; replaced
by q2 when its next step's R + beta D exceeds q2's). The stopping rule applies between the
two plain steps of a pair. The iteration counts are BA steps. As in tokit, SQUAREM starts
on the kernel A rounded to f32 (entries below f32's smallest normal set to 0; products
summed in f64; R + beta D from c alone, no distortion) until a pair moves q by less than
max(1e-7, tol) in l1, then continues on the f64 kernel from that pair's q2. tokit stores
that kernel in f32; NumPy has no f32-storage, f64-sum product, so it runs the same
arithmetic on an f64 copy of the rounded kernel (same iteration, f64 memory traffic).

tokit runs through `tokit bench metric rate_distortion` (the distortion matrix from an
f32 .npy file, the law as a JSON parameter, restarts 0) with acceleration `squarem` and
`none`; both sides are timed on the whole solve, kernel set-up included, after the same
warm-up and as the best of the same number of runs, in --rounds rounds that alternate
the two sides so that a burst of load on the machine hits both (tokit's time also
includes the channel and Blahut's lower bound it reports, and the metric call). Reported:

1. The identical iteration on both sides at --tol (tokit SQUAREM vs NumPy SQUAREM, plain
   vs plain), with ms per BA step. Plain BA stops up to ~1e-9 away from the fixed point at
   tol 1e-10, so each is also compared with a tight plain NumPy run (tol 1e-14).
2. The same accuracy ("through the iteration count"): each side and iteration at the
   loosest tol of the ladder --tol x (1, 0.3, 0.1, ..., 1e-4) whose rate and distortion
   are within --accuracy (1e-10) of that reference; plain BA needs a tighter tol than
   SQUAREM for that. The ratio tokit SQUAREM / NumPy plain there is the speed-up of
   the accelerated iteration together with the faster step.

Usage (from the repository root, after `cargo build --release -p tokit-engine
-p tokit-plugin-rate`):
    python3 tools/ba_numpy.py [--size 1000] [--beta 8] [--tol 1e-10] [--threads 2]
                              [--repeat 3] [--warmup 1] [--rounds 3] [--accuracy 1e-10]
NumPy's matrix-vector products run on its BLAS threads (OPENBLAS_NUM_THREADS etc. are set
from --threads before NumPy loads); tokit uses every core unless told otherwise. The load
average is printed at the start and the end: figures taken under load are not comparable
with quiet-machine ones (NumPy/OpenBLAS loses more than tokit under load).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def problem(n, np):
    x = np.arange(n)
    p = (x % 7 + 1).astype(float)
    p /= p.sum()
    xx, yy = np.meshgrid(x, x, indexing="ij")
    d = ((xx * 31 + yy * 17) % 64 + np.abs(xx - yy) % 64) / 64.0
    return p, d


def kernel(p, d, beta, np):
    """The f64 step and, when tokit keeps one, the step on the f32-rounded kernel (None)."""
    dmin_row = d.min(axis=1, keepdims=True)
    ds = d - dmin_row
    d_min = float(p @ dmin_row[:, 0])
    a = np.exp(-beta * ds)
    b = a * ds

    def step(q):
        c = a @ q
        bq = b @ q
        qn = q * (a.T @ (p / c))
        dsum = float(p @ (bq / c))
        nz = qn > 0
        cross = float(qn[nz] @ np.log(q[nz] / qn[nz]))
        dist = d_min + dsum
        rate = max(-beta * dsum - float(p @ np.log(c)) + cross, 0.0)
        return qn, dist, rate, rate + beta * dist

    # A rounded to f32 (below the smallest normal: 0), held in f64 so that the products
    # sum in f64 as tokit's do; kept only when it reaches every output that A reaches.
    a32 = a.astype(np.float32)
    a32[a32 < np.finfo(np.float32).tiny] = 0.0
    a32 = a32.astype(float)
    used = p > 0
    if not ((a[used] > 0).any(axis=0) == (a32[used] > 0).any(axis=0)).all():
        return step, None

    def step32(q):
        c = a32 @ q
        qn = q * (a32.T @ (p / c))
        nz = qn > 0
        cross = float(qn[nz] @ np.log(q[nz] / qn[nz]))
        return qn, float("nan"), float("nan"), beta * d_min - float(p @ np.log(c)) + cross

    return step, step32


def plain(p, d, beta, tol, np, max_iter=1_000_000):
    step, _ = kernel(p, d, beta, np)
    q = np.full(d.shape[1], 1.0 / d.shape[1])
    prev = None
    for it in range(1, max_iter + 1):
        q, dist, rate, _ = step(q)
        if prev is not None and abs(dist - prev[0]) < tol and abs(rate - prev[1]) < tol:
            return rate, dist, it
        prev = (dist, rate)
    return rate, dist, max_iter


F32_EXIT = 1e-7


def squarem(p, d, beta, tol, np, max_iter=1_000_000, mixed=True):
    """SQUAREM as tokit runs it; `mixed=False`: on the f64 kernel throughout."""
    step64, step32 = kernel(p, d, beta, np)
    if not mixed:
        step32 = None
    step = step64 if step32 is None else step32
    q = np.full(d.shape[1], 1.0 / d.shape[1])
    it = 0
    fallback = None
    while it + 2 <= max_iter:
        q1, d1, r1, l1 = step(q)
        it += 1
        if fallback is not None:
            q2f, l2 = fallback
            fallback = None
            if l1 > l2 + 1e-13 * abs(l2):
                q = q2f
                if it + 2 > max_iter:
                    continue
                q1, d1, r1, l1 = step(q)
                it += 1
        q2, d2, r2, l2 = step(q1)
        it += 1
        if step is step64:
            if abs(d2 - d1) < tol and abs(r2 - r1) < tol:
                return r2, d2, it
        elif float(np.abs(q2 - q1).sum()) < max(F32_EXIT, tol):
            step = step64
            q = q2
            continue
        r = q1 - q
        v = q2 - 2.0 * q1 + q
        vv = float(v @ v)
        alpha = -np.sqrt(float(r @ r) / vv) if vv > 0 else -1.0
        alpha = min(alpha, -1.0)
        while True:
            nxt = q - 2.0 * alpha * r + alpha * alpha * v
            if (nxt >= 0).all() or alpha >= -1.0:
                break
            alpha = min((alpha - 1.0) / 2.0, -1.0)
            if alpha > -1.0 - 1e-3:
                alpha = -1.0
        if alpha == -1.0:
            q = q2
        else:
            q = nxt / nxt.sum()
            fallback = (q2, l2)
    return r2, d2, it


def timed(f, warmup, repeat):
    for _ in range(warmup):
        f()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3, out


def tokit_run(args, dpath, p, acceleration, tol, quick=False):
    """(best ms, (rate, distortion, steps), threads); `quick`: one run, no warm-up."""
    cmd = [args.tokit, "bench", "metric", "rate_distortion", "--input", f"distortion={dpath}",
           "--param", "source=" + json.dumps([float(v) for v in p]),
           "--param", f"beta={args.beta}", "--param", f"tol={tol}",
           "--param", "restarts=0", "--param", "max_iter=1000000",
           "--param", f"acceleration={acceleration}",
           "--repeat", "1" if quick else str(args.repeat), "--warmup", "0" if quick else str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tokit bench metric failed:\n{out.stderr}")
    r = json.loads(out.stdout)
    s = r["record"]["scalars"]
    return r["best_ms"], (s["rate"], s["distortion"], int(s["iterations"])), r.get("threads")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--beta", type=float, default=8.0)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--accuracy", type=float, default=1e-10,
                    help="the same-accuracy comparison: distance to the reference in rate and distortion")
    ap.add_argument("--tokit", default="target/release/tokit")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = ""
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name', '?')} {b.get('version', '?')}"
    except Exception:
        pass
    print(f"cpu {cpu}, {os.cpu_count()} cores; numpy {np.__version__} ({blas}), "
          f"BLAS threads {args.threads} (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']})")
    print(f"ba {args.size}x{args.size} beta {args.beta} tol {args.tol:g}: {args.rounds} alternating rounds of "
          f"warm-up {args.warmup} then best of {args.repeat} on each side, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    p, d = problem(args.size, np)
    r_ref, d_ref, it_ref = plain(p, d, args.beta, 1e-14, np)
    print(f"reference: plain NumPy to tol 1e-14, {it_ref} steps, rate {r_ref:.15f} nats, distortion {d_ref:.15f}")

    def off(r, dd):
        return max(abs(r - r_ref), abs(dd - d_ref))

    with tempfile.TemporaryDirectory() as tmp:
        dpath = os.path.join(tmp, "d.npy")
        np.save(dpath, d.astype(np.float32))
        iters = (("SQUAREM", squarem, "squarem"), ("plain", plain, "none"))

        def paired(f, accel, tol_np, tol_tk):
            """Both sides in --rounds alternating rounds (each round: warm-up, then best of
            --repeat), so that a burst of load hits both; the best of each side."""
            best_np = best_tk = None
            for _ in range(args.rounds):
                t_np, out_np = timed(lambda: f(p, d, args.beta, tol_np, np), args.warmup, args.repeat)
                t_tk, out_tk, threads = tokit_run(args, dpath, p, accel, tol_tk)
                if best_np is None or t_np < best_np[0]:
                    best_np = (t_np, out_np)
                if best_tk is None or t_tk < best_tk[0]:
                    best_tk = (t_tk, out_tk, threads)
            return best_np, best_tk

        # 1. The identical iteration on both sides, at --tol.
        rows = []
        for name, f, accel in iters:
            (t_np, (r_np, d_np, it_np)), (t_tk, (r_tk, d_tk, it_tk), threads) = paired(f, accel, args.tol, args.tol)
            rows.append((name, t_np, it_np, r_np, d_np, t_tk, it_tk, r_tk, d_tk, threads))
        for name, t_np, it_np, r_np, d_np, t_tk, it_tk, r_tk, d_tk, threads in rows:
            print(f"{name:>8}: numpy {t_np:8.1f} ms {it_np:5d} steps ({t_np / it_np:.3f} ms/step) | "
                  f"tokit {t_tk:8.1f} ms {it_tk:5d} steps ({t_tk / it_tk:.3f} ms/step, threads {threads}) | "
                  f"ratio {t_tk / t_np:.3f} | |dR| {abs(r_tk - r_np):.1e} |dD| {abs(d_tk - d_np):.1e} "
                  f"| to reference: numpy |dR| {abs(r_np - r_ref):.1e} |dD| {abs(d_np - d_ref):.1e}, "
                  f"tokit |dR| {abs(r_tk - r_ref):.1e} |dD| {abs(d_tk - d_ref):.1e}")
        sq, pl = rows
        print(f"same iteration: tokit SQUAREM / numpy SQUAREM {sq[5] / sq[1]:.3f}, tokit plain / numpy plain "
              f"{pl[5] / pl[1]:.3f}, tokit SQUAREM / numpy plain {sq[5] / pl[1]:.3f}")

        # 2. The same accuracy: each side and iteration at the loosest tol of the ladder
        # whose answer is within --accuracy of the reference in both rate and distortion.
        ladder = [args.tol * f for f in (1, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)]
        acc = {}
        for name, f, accel in iters:
            tol_np = next((t for t in ladder if off(*f(p, d, args.beta, t, np)[:2]) <= args.accuracy), None)
            tol_tk = next((t for t in ladder
                           if off(*tokit_run(args, dpath, p, accel, t, quick=True)[1][:2]) <= args.accuracy), None)
            if tol_np is None or tol_tk is None:
                print(f"{name}: no tol down to {ladder[-1]:g} reaches {args.accuracy:g} (numpy {tol_np}, tokit {tol_tk})")
                continue
            (t_np, (r_np, d_np, it_np)), (t_tk, (r_tk, d_tk, it_tk), _) = paired(f, accel, tol_np, tol_tk)
            acc[name] = (t_np, t_tk)
            print(f"{name:>8} within {args.accuracy:g} of the reference: numpy tol {tol_np:.0e} {t_np:8.1f} ms {it_np:5d} "
                  f"steps (off {off(r_np, d_np):.1e}) | tokit tol {tol_tk:.0e} {t_tk:8.1f} ms {it_tk:5d} steps "
                  f"(off {off(r_tk, d_tk):.1e}) | ratio {t_tk / t_np:.3f}")
        # NumPy's own best accelerated iteration: SQUAREM on the f64 kernel throughout
        # (no f32 phase, which saves NumPy the rounded copy but not a byte per step).
        f64sq = lambda t: squarem(p, d, args.beta, t, np, mixed=False)
        tol_f = next((t for t in ladder if off(*f64sq(t)[:2]) <= args.accuracy), None)
        if tol_f is not None and "SQUAREM" in acc:
            t_f, (r_f, d_f, it_f) = timed(lambda: f64sq(tol_f), args.warmup, args.repeat)
            print(f"SQUAREM, f64 throughout (NumPy only) within {args.accuracy:g}: tol {tol_f:.0e} {t_f:8.1f} ms "
                  f"{it_f:5d} steps (off {off(r_f, d_f):.1e}); tokit SQUAREM / this {acc['SQUAREM'][1] / t_f:.3f}")
        if len(acc) == 2:
            print(f"same accuracy: tokit SQUAREM / numpy SQUAREM {acc['SQUAREM'][1] / acc['SQUAREM'][0]:.3f}, "
                  f"tokit SQUAREM / numpy plain {acc['SQUAREM'][1] / acc['plain'][0]:.3f}, "
                  f"tokit plain / numpy plain {acc['plain'][1] / acc['plain'][0]:.3f}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

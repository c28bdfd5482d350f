#!/usr/bin/env python3
"""Plug-in estimators on 10^6-symbol streams: tokit against pyinform 0.2.0 on the same
data, in one run, with the same warm-up, reported as time ratios and value differences.

Streams (NumPy-seeded, saved as .npy so both sides read the same bytes): for alphabet
size b, a source x i.i.d. uniform on 0..b-1 and a target that copies the source's
previous symbol with probability 0.8, else draws uniformly. Measures (pyinform's
conventions, which tokit's defaults reproduce): transfer entropy x -> y at k = 1 and 3,
active information storage of y at k = 3, entropy rate of y at k = 3, all in bits,
global values only (pyinform's default local=False; tokit with local=false and no
permutation test).

Timing: loading excluded on both sides. pyinform: `warmup` calls, then the best and the
median of `repeat` calls on arrays already in memory. tokit: `tokit bench metric` with
the same --warmup and --repeat, which times the metric call on tensors already loaded
from the .npy files.

Usage (from the repository root, after `cargo build --release -p tokit-engine
-p tokit-plugin-info`; pyinform 0.2.0 and NumPy installed, e.g. in a virtual
environment outside the repository):
    python3 tools/bench_streams.py [--n 1000000] [--repeat 7] [--warmup 2]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def environment():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = {v: os.environ.get(v, "unset") for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return f"cpu {cpu}, {os.cpu_count()} cores, " + ", ".join(f"{k}={v}" for k, v in threads.items())


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def streams(n, base, seed, np):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, base, n, dtype=np.int32)
    copy = rng.random(n) < 0.8
    y = rng.integers(0, base, n, dtype=np.int32)
    y[1:] = np.where(copy[1:], x[:-1], y[1:])
    return x, y


def time_py(f, warmup, repeat):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        v = f()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times), statistics.median(times), v


def time_tokit(tokit, metric, inputs, params, warmup, repeat):
    cmd = [tokit, "bench", "metric", metric]
    for name, path in inputs.items():
        cmd += ["--input", f"{name}={path}"]
    for k, v in params.items():
        cmd += ["--param", f"{k}={v}"]
    cmd += ["--repeat", str(repeat), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    r = json.loads(out.stdout)
    return r["best_ms"], r["median_ms"], r["value"], r.get("threads")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--bases", default="2,4")
    ap.add_argument("--tokit", default="target/release/tokit")
    ap.add_argument("--dir", default=None, help="where the .npy files go (default: a temporary folder)")
    args = ap.parse_args()
    import numpy as np
    import pyinform

    print(environment())
    print(f"numpy {np.__version__}, pyinform {getattr(pyinform, '__version__', '0.2.0')}, n = {args.n}, "
          f"warm-up {args.warmup}, best and median of {args.repeat}")
    print(load())
    tmp = tempfile.TemporaryDirectory() if args.dir is None else None
    folder = args.dir or tmp.name
    head = f"{'measure':<22}{'b':>3}{'pyinform ms':>14}{'tokit ms':>14}{'ratio':>8}{'|dvalue| bits':>15}"
    print(head)
    worst = 0.0
    for base in (int(b) for b in args.bases.split(",")):
        x, y = streams(args.n, base, args.seed + base, np)
        xp, yp = os.path.join(folder, f"x{base}.npy"), os.path.join(folder, f"y{base}.npy")
        np.save(xp, x)
        np.save(yp, y)
        # Both sides read the same files; pyinform gets them as loaded, outside the timing.
        x, y = np.load(xp), np.load(yp)
        cases = [
            ("transfer_entropy k=1", "transfer_entropy", {"source": xp, "target": yp}, {"k": 1},
             lambda: pyinform.transfer_entropy(x, y, k=1)),
            ("transfer_entropy k=3", "transfer_entropy", {"source": xp, "target": yp}, {"k": 3},
             lambda: pyinform.transfer_entropy(x, y, k=3)),
            ("active_info k=3", "active_info", {"series": yp}, {"k": 3},
             lambda: pyinform.active_info(y, k=3)),
            ("entropy_rate k=3", "entropy_rate", {"series": yp}, {"k": 3},
             lambda: pyinform.entropy_rate(y, k=3)),
        ]
        for label, metric, inputs, params, py in cases:
            p_best, p_med, p_val = time_py(py, args.warmup, args.repeat)
            params = dict(params, unit="bits", local="false")
            if metric != "entropy_rate":
                params["permutations"] = 0
            t_best, t_med, t_val, threads = time_tokit(args.tokit, metric, inputs, params, args.warmup, args.repeat)
            dv = abs(t_val - p_val)
            worst = max(worst, dv)
            print(f"{label:<22}{base:>3}{p_best:>9.2f} ({p_med:.2f}){t_best:>9.2f} ({t_med:.2f}){t_best / p_best:>8.3f}{dv:>15.2e}"
                  f"   tokit threads {threads}")
    print(load())
    print(f"largest |dvalue| {worst:.2e} bits (best ms, median in parentheses; ratio = tokit best / pyinform best)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

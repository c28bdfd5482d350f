#!/usr/bin/env python3
"""Reference values for tokit's stream estimators, from pyinform and statsmodels.

Reads the committed random sequences in tests/fixtures/crosscheck/inputs.json (binary and
4-symbol symbol streams, single series and several trials; real-valued series for
Granger) and writes tests/fixtures/crosscheck/expected.json with

* pyinform (Inform 1.0.0): transfer entropy (both directions, k = 1..3), conditional
  transfer entropy, active information storage, entropy rate, block entropy, mutual
  information, and some local values, all in bits (conditional TE over several trials
  comes from a plain-Python plug-in instead, because of a pyinform bug; see expected());
* statsmodels: grangercausalitytests ssr_ftest / ssr_chi2test / lrtest for lags 1..3
  ("does column 2 (source) Granger-cause column 1 (target)").

The Rust unit tests of tokit-plugin-info (src/streams/crosscheck.rs) assert that tokit
reproduces these values (information to 1e-9 bits, Granger statistics and p-values to 1e-6).

With --dit (run in a venv that has dit; pyinform and statsmodels are then not needed) it
instead writes tests/fixtures/crosscheck/rd_dit.json: dit's rate-distortion curve
(RDCurve, scipy optimiser and dit's Blahut-Arimoto) of a committed 4-letter source with
Hamming distortion, and dit's Blahut-Arimoto on the same source with a committed
non-Hamming distortion matrix; rates in bits, dit's slope beta in bits per unit distortion
(its update is q(y) 2^(-beta d)). tokit-plugin-rate's tests (src/tests.rs) assert that
tokit's R(D) at each of dit's distortions matches dit's rate.

Usage:
    python -m venv /tmp/xc && /tmp/xc/bin/pip install pyinform statsmodels numpy
    /tmp/xc/bin/python tools/crosscheck.py               # recompute expected.json
    /tmp/xc/bin/python tools/crosscheck.py --regenerate  # also redraw inputs.json (seeded)
    python -m venv /tmp/ditv && /tmp/ditv/bin/pip install dit numpy
    /tmp/ditv/bin/python tools/crosscheck.py --dit       # rd_dit.json

The inputs are drawn with numpy's default_rng(SEED); regenerating with the same numpy
gives the same file. Commit both JSON files.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SEED = 20251103
NLOCAL = 100
ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "tests" / "fixtures" / "crosscheck"
INPUTS = DIR / "inputs.json"
EXPECTED = DIR / "expected.json"
RD_DIT = DIR / "rd_dit.json"
RD_SOURCE = [0.4, 0.3, 0.2, 0.1]
# |x - y| / 3 on letters 0..3: a distortion that is not Hamming.
RD_MATRIX = [[abs(x - y) / 3 for y in range(4)] for x in range(4)]


def generate():
    rng = np.random.default_rng(SEED)

    def binary(n):
        # X i.i.d. fair bits; Y copies X_{t-1} with prob. 0.7, else keeps its own state
        # flipped with prob. 0.3; W is a noisy copy of X_{t-1} (a conditioning stream).
        x = rng.integers(0, 2, n)
        y = np.zeros(n, dtype=int)
        w = np.zeros(n, dtype=int)
        for t in range(1, n):
            y[t] = x[t - 1] if rng.random() < 0.7 else y[t - 1] ^ int(rng.random() < 0.3)
            w[t] = x[t - 1] ^ int(rng.random() < 0.25)
        return x, y, w

    def quaternary(n):
        # X i.i.d. uniform over 4 symbols; Y_t = (X_{t-1} + Y_{t-2}) mod 4 with prob. 0.6,
        # else uniform; W = X_{t-1} mod 2 (a coarser view of the source).
        x = rng.integers(0, 4, n)
        y = np.zeros(n, dtype=int)
        for t in range(2, n):
            y[t] = (x[t - 1] + y[t - 2]) % 4 if rng.random() < 0.6 else rng.integers(0, 4)
        w = np.concatenate([[0], x[:-1] % 2])
        return x, y, w

    def stream_case(gen, n, trials):
        if trials == 1:
            x, y, w = gen(n)
            return {"source": x.tolist(), "target": y.tolist(), "condition": w.tolist()}
        parts = [gen(n) for _ in range(trials)]
        return {k: [p[i].tolist() for p in parts] for i, k in enumerate(["source", "target", "condition"])}

    def real(n, coupling):
        # x AR(1); y AR(2) driven by x at lags 1 and 2.
        x = np.zeros(n)
        y = np.zeros(n)
        for t in range(2, n):
            x[t] = 0.5 * x[t - 1] + rng.normal()
            y[t] = 0.4 * y[t - 1] - 0.2 * y[t - 2] + coupling * (x[t - 1] + 0.5 * x[t - 2]) + rng.normal()
        return {"source": x.tolist(), "target": (y + 3.0).tolist()}

    return {
        "seed": SEED,
        "streams": {
            "binary": stream_case(binary, 1000, 1),
            "binary_trials": stream_case(binary, 150, 6),
            "quaternary": stream_case(quaternary, 2000, 1),
            "quaternary_trials": stream_case(quaternary, 300, 4),
        },
        "real": {
            "strong": real(600, 0.3),
            "weak": real(400, 0.08),
            "none": real(300, 0.0),
        },
    }


def plugin_cte(src, dst, cond, k):
    """Conditional TE in bits, plain Python plug-in with pyinform's conventions (target
    history k, source and condition at lag 1), trials pooled."""
    from collections import Counter
    from math import log2

    src, dst, cond = (np.atleast_2d(a) for a in (src, dst, cond))
    rows = [
        (int(dst[i, t]), int(src[i, t - 1]), tuple(dst[i, t - k:t].tolist()), int(cond[i, t - 1]))
        for i in range(dst.shape[0])
        for t in range(k, dst.shape[1])
    ]
    n = len(rows)
    abc = Counter(rows)
    ac = Counter((a, h, z) for a, _, h, z in rows)
    bc = Counter((b, h, z) for _, b, h, z in rows)
    c = Counter((h, z) for _, _, h, z in rows)
    return sum(m / n * log2(m * c[h, z] / (ac[a, h, z] * bc[b, h, z])) for (a, b, h, z), m in abc.items())


def expected(inputs):
    import importlib.metadata

    import statsmodels
    from pyinform.activeinfo import active_info
    from pyinform.blockentropy import block_entropy
    from pyinform.entropyrate import entropy_rate
    from pyinform.mutualinfo import mutual_info
    from pyinform.transferentropy import transfer_entropy
    from statsmodels.tsa.stattools import grangercausalitytests

    out = {
        "generated_by": "tools/crosscheck.py",
        "pyinform": importlib.metadata.version("pyinform"),
        "statsmodels": statsmodels.__version__,
        "numpy": np.__version__,
        "unit": "bits",
        "streams": {},
        "granger": {},
    }
    for name, case in inputs["streams"].items():
        src, dst, cond = (np.array(case[k]) for k in ("source", "target", "condition"))
        e = {}
        for k in (1, 2, 3):
            e[f"te_k{k}"] = float(transfer_entropy(src, dst, k=k))
            e[f"te_reverse_k{k}"] = float(transfer_entropy(dst, src, k=k))
            e[f"ais_k{k}"] = float(active_info(dst, k=k))
            e[f"entropy_rate_k{k}"] = float(entropy_rate(dst, k=k))
            e[f"block_entropy_k{k}"] = float(block_entropy(dst, k=k))
        for k in (1, 2):
            if src.ndim == 1:
                e[f"cte_k{k}"] = float(transfer_entropy(src, dst, k=k, condition=cond))
                # The plain-Python plug-in agrees with pyinform on one trial...
                assert abs(plugin_cte(src, dst, cond, k) - e[f"cte_k{k}"]) < 1e-12
            else:
                # ...but with several trials the Inform 1.0.0 library bundled with pyinform
                # 0.2.0 reads the condition of trial i at offset n*i instead of m*i (n
                # trials of length m; ELIFE-ASU/Inform#78, fixed upstream after the
                # release), so the reference here is the Python plug-in. pyinform's value is
                # recorded for the record only.
                e[f"cte_k{k}"] = plugin_cte(src, dst, cond, k)
                e[f"cte_k{k}_pyinform_buggy"] = float(transfer_entropy(src, dst, k=k, condition=cond))
        if src.ndim == 1:
            e["mi"] = float(mutual_info(src, dst))
            # Local values at times t = k, k+1, ... (the first NLOCAL of them).
            e["local_te_k2"] = np.asarray(transfer_entropy(src, dst, k=2, local=True)).ravel()[:NLOCAL].tolist()
            e["local_ais_k2"] = np.asarray(active_info(dst, k=2, local=True)).ravel()[:NLOCAL].tolist()
        out["streams"][name] = e
    for name, case in inputs["real"].items():
        data = np.column_stack([case["target"], case["source"]])
        res = grangercausalitytests(data, maxlag=3)
        g = {}
        for lag, (tests, _) in res.items():
            f, fp, df_den, df_num = tests["ssr_ftest"]
            c, cp, _ = tests["ssr_chi2test"]
            lr, lrp, _ = tests["lrtest"]
            g[str(lag)] = {
                "f": float(f), "f_p": float(fp), "df_den": float(df_den), "df_num": int(df_num),
                "chi2": float(c), "chi2_p": float(cp), "lr": float(lr), "lr_p": float(lrp),
            }
        out["granger"][name] = g
    return out


def rate_distortion_dit():
    """dit's rate-distortion points (beta in bits per unit distortion, D, R in bits)."""
    import dit
    from dit.rate_distortion.blahut_arimoto import blahut_arimoto
    from dit.rate_distortion.curves import RDCurve

    d = dit.Distribution([str(i) for i in range(len(RD_SOURCE))], RD_SOURCE)
    out = {"dit": dit.__version__, "source": RD_SOURCE, "matrix": RD_MATRIX, "cases": []}
    for method in ("sp", "ba"):
        c = RDCurve(d, beta_min=0.5, beta_max=10, beta_num=20, method=method)
        out["cases"].append({
            "distortion": "hamming", "method": method,
            "points": [[float(b), float(x), float(r)] for b, x, r in zip(c.betas, c.distortions, c.rates)],
        })
    m = np.array(RD_MATRIX)
    points = []
    for beta in np.linspace(0.5, 10, 20):
        np.random.seed(0)  # dit's restarts draw from numpy's global generator
        (r, x), _ = blahut_arimoto(np.array(RD_SOURCE), beta, distortion=lambda px, q: m)
        points.append([float(beta), float(x), float(r)])
    out["cases"].append({"distortion": "matrix", "method": "ba", "points": points})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regenerate", action="store_true", help="redraw the input sequences (seeded)")
    ap.add_argument("--dit", action="store_true", help="write rd_dit.json from dit instead")
    args = ap.parse_args()
    DIR.mkdir(parents=True, exist_ok=True)
    if args.dit:
        RD_DIT.write_text(json.dumps(rate_distortion_dit(), indent=1) + "\n")
        print(f"wrote {RD_DIT.relative_to(ROOT)}")
        return 0
    if args.regenerate or not INPUTS.exists():
        INPUTS.write_text(json.dumps(generate()) + "\n")
        print(f"wrote {INPUTS.relative_to(ROOT)}")
    inputs = json.loads(INPUTS.read_text())
    EXPECTED.write_text(json.dumps(expected(inputs), indent=1) + "\n")
    print(f"wrote {EXPECTED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

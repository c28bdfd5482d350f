#!/usr/bin/env python3
"""Reference values for tokit's memory-capacity and embedding-geometry measures
(docs/measures.md M9, M11), from SciPy, scikit-learn and POT.

Writes tests/fixtures/crosscheck/m9_m11.json with

* Gardner's alpha_c(kappa) = 1 / int_{-kappa}^inf Dt (t + kappa)^2, by numerical
  integration (scipy.integrate.quad with scipy.stats.norm.pdf), for several kappa;
* Cover's fraction C(P, N) / 2^P = P(Bin(P-1, 1/2) <= N-1) (scipy.stats.binom.cdf);
* sklearn.random_projection.johnson_lindenstrauss_min_dim(n, eps) on a grid;
* two seeded random 200-point clouds (dimensions 6 and 4, numpy default_rng) and POT's
  ot.gromov.gromov_wasserstein2 between their cosine-distance matrices (uniform weights,
  square loss), plus the effective rank of the first cloud (numpy.linalg.svd).

The Rust unit tests of tokit-plugin-info (src/geometry/crosscheck.rs) assert that tokit
reproduces these values (Gardner and Cover to 1e-10, JL exactly, GW to 1e-6, effective
rank to 1e-9).

Usage (a throwaway venv outside the repository):
    python3 -m venv /tmp/xc && /tmp/xc/bin/pip install numpy scipy scikit-learn pot
    /tmp/xc/bin/python tools/crosscheck_m9_m11.py
Commit the JSON file.
"""

import json
from pathlib import Path

import numpy as np
import ot
import scipy
import sklearn
from scipy import integrate, stats
from sklearn.random_projection import johnson_lindenstrauss_min_dim

SEED = 20251103
OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/crosscheck/m9_m11.json"


def gardner(kappa):
    val, _ = integrate.quad(
        lambda t: stats.norm.pdf(t) * (t + kappa) ** 2, -kappa, np.inf, epsabs=1e-14, epsrel=1e-13
    )
    return 1.0 / val


def cosine_cost(x):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = 1.0 - u @ u.T
    np.fill_diagonal(c, 0.0)
    return c


def main():
    rng = np.random.default_rng(SEED)
    kappas = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
    cover = [[p, n] for p in (10, 40, 100, 1000) for n in (5, 20, 50, 500) if n <= p]
    jl = [[n, eps] for n in (10, 1000, 1e4, 1e5, 1e6, 50257, 151936) for eps in (0.01, 0.1, 0.3, 0.5, 0.9)]
    a = rng.standard_normal((200, 6))
    b = rng.standard_normal((200, 4)) + 0.3
    c1, c2 = cosine_cost(a), cosine_cost(b)
    w = np.full(200, 1.0 / 200)
    gw = float(ot.gromov.gromov_wasserstein2(c1, c2, w, w, loss_fun="square_loss"))
    sv = np.linalg.svd(a, compute_uv=False)
    p = sv / sv.sum()
    erank = float(np.exp(-(p * np.log(p)).sum()))
    out = {
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "pot": ot.__version__,
        },
        "gardner": [[k, gardner(k)] for k in kappas],
        "cover": [[p_, n_, float(stats.binom.cdf(n_ - 1, p_ - 1, 0.5))] for p_, n_ in cover],
        "jl": [[n, eps, int(johnson_lindenstrauss_min_dim(int(n), eps=eps))] for n, eps in jl],
        "gw": {"a": a.tolist(), "b": b.tolist(), "value": gw},
        "effective_rank_a": erank,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}: GW = {gw:.12f}, effective rank = {erank:.12f}")


if __name__ == "__main__":
    main()

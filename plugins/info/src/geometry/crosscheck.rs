//! Cross-checks against SciPy, scikit-learn and POT on committed inputs.
//!
//! `tools/crosscheck_m9_m11.py` wrote `tests/fixtures/crosscheck/m9_m11.json`: Gardner's
//! α_c(κ) by numerical integration (`scipy.integrate.quad`), Cover's fraction
//! (`scipy.stats.binom.cdf`), `sklearn.random_projection.johnson_lindenstrauss_min_dim`,
//! and POT's `ot.gromov.gromov_wasserstein2` between the cosine-distance matrices of two
//! seeded 200-point clouds, with numpy's effective rank of the first. tokit must reproduce
//! them: Gardner and Cover to 1e-10, JL exactly, GW to 1e-6, effective rank to 1e-9.

use super::gw::{cosine_cost, gromov_wasserstein};
use super::rows::Cloud;
use super::{effective_rank, jl_min_dim, singular_values};
use crate::capacity::{cover_fraction, gardner_alpha_c};
use serde_json::Value;

const EXPECTED: &str = include_str!("../../../../tests/fixtures/crosscheck/m9_m11.json");

fn load() -> Value {
    serde_json::from_str(EXPECTED).expect("m9_m11.json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn cloud(v: &Value) -> Cloud {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(f).collect())
        .collect();
    let (n, d) = (rows.len(), rows[0].len());
    Cloud {
        n,
        d,
        data: rows.concat(),
    }
}

#[test]
fn gardner_and_cover_match_scipy() {
    let x = load();
    for g in x["gardner"].as_array().unwrap() {
        let (k, want) = (f(&g[0]), f(&g[1]));
        let got = gardner_alpha_c(k);
        eprintln!("α_c({k}): diff {:.3e}", got - want);
        assert!(
            (got - want).abs() < 1e-10,
            "α_c({k}): {got} vs scipy {want}"
        );
    }
    for c in x["cover"].as_array().unwrap() {
        let (p, n, want) = (c[0].as_u64().unwrap(), c[1].as_u64().unwrap(), f(&c[2]));
        let got = cover_fraction(p, n);
        eprintln!("cover({p}, {n}): diff {:.3e}", got - want);
        assert!(
            (got - want).abs() < 1e-10,
            "C({p}, {n})/2^P: {got} vs scipy {want}"
        );
    }
}

#[test]
fn jl_matches_scikit_learn() {
    for c in load()["jl"].as_array().unwrap() {
        let (n, eps, want) = (f(&c[0]), f(&c[1]), c[2].as_u64().unwrap());
        assert_eq!(jl_min_dim(n, eps), want, "({n}, {eps})");
    }
}

#[test]
fn gromov_wasserstein_and_effective_rank_match_pot_and_numpy() {
    let x = load();
    let (a, b) = (cloud(&x["gw"]["a"]), cloud(&x["gw"]["b"]));
    let c1 = cosine_cost(&a.data, a.n, a.d).unwrap();
    let c2 = cosine_cost(&b.data, b.n, b.d).unwrap();
    let gw = gromov_wasserstein(&c1, &c2, a.n, 10_000);
    let want = f(&x["gw"]["value"]);
    eprintln!(
        "GW: tokit {} POT {want} diff {:.3e} ({} iterations)",
        gw.value,
        gw.value - want,
        gw.iterations
    );
    assert!(
        (gw.value - want).abs() < 1e-6,
        "GW {} vs POT {want} (diff {:.3e})",
        gw.value,
        gw.value - want
    );
    let sv = singular_values(&a);
    let er = effective_rank(&sv.iter().map(|s| s * s).collect::<Vec<_>>());
    let want = f(&x["effective_rank_a"]);
    eprintln!("effective rank: diff {:.3e}", er - want);
    assert!(
        (er - want).abs() < 1e-9,
        "effective rank {er} vs numpy {want}"
    );
}

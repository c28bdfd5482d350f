//! Linear-Gaussian Granger causality and Gaussian transfer entropy on real-valued series.
//!
//! Two OLS regressions of the target `y_t` on a constant and
//! * restricted: its own `p` lags `y_{t−1} … y_{t−p}`;
//! * full: those plus the source's `p` lags `x_{t−1} … x_{t−p}`;
//!
//! over the times `t = p ..` of every trial (one constant for all trials). This is exactly
//! the design of statsmodels' `grangercausalitytests(np.column_stack([y, x]), maxlag=p)`
//! (`lagmat2ds(trim="both", dropex=1)` plus `add_constant`), and its tests are reproduced:
//!
//! * `ssr_ftest`: `F = ((RSS_r − RSS_f)/p) / (RSS_f/(n − 2p − 1))`, `p`-value from the
//!   `F(p, n − 2p − 1)` survival function (`n` = number of regression rows);
//! * `ssr_chi2test`: `n (RSS_r − RSS_f)/RSS_f` against `χ²(p)`;
//! * `lrtest`: `n ln(RSS_r/RSS_f)` against `χ²(p)`.
//!
//! Geweke's measure `F_{X→Y} = ln(σ²_r / σ²_f) = ln(RSS_r/RSS_f)` and the Gaussian transfer
//! entropy `TE = F_{X→Y}/2` nats (Barnett, Barrett & Seth 2009). Local Gaussian TE (the
//! log-ratio of the two fitted Gaussian predictive densities at each sample, σ² = RSS/n):
//! `½ ln(σ²_r/σ²_f) − e_f²/(2σ²_f) + e_r²/(2σ²_r)`, whose mean is exactly `TE`.
//! Least squares by Householder QR.

use super::counting::Layout;
use super::series::{same_layout, Reals};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::gamma_ur;

/// Result of a Granger test of `source → target` at `lags` lags (information in nats).
#[derive(Clone, Debug)]
pub struct Granger {
    pub lags: usize,
    /// Regression rows.
    pub n_obs: usize,
    pub rss_restricted: f64,
    pub rss_full: f64,
    /// `ln(RSS_r / RSS_f)`.
    pub geweke: f64,
    pub f_stat: f64,
    pub f_p_value: f64,
    pub df_num: usize,
    pub df_den: usize,
    pub chi2_stat: f64,
    pub chi2_p_value: f64,
    pub lr_stat: f64,
    pub lr_p_value: f64,
    /// Local Gaussian TE per regression row (mean = `geweke / 2`).
    pub local_te: Vec<f64>,
    pub layout: Layout,
}

impl Granger {
    pub fn te(&self) -> f64 {
        self.geweke / 2.0
    }

    /// Standard error of the TE from the spread of its local values (they are close to
    /// independent when the full model is right: the residuals are white).
    pub fn te_se(&self) -> f64 {
        let n = self.local_te.len() as f64;
        let m = self.te();
        (self.local_te.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0) / n).sqrt()
    }
}

/// Upper tail of `F(d1, d2)` at `f` (the form SciPy's `f.sf` evaluates).
pub fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if f <= 0.0 {
        return 1.0;
    }
    beta_reg(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))
}

/// Upper tail of `χ²(k)` at `x`.
pub fn chi2_sf(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    gamma_ur(k / 2.0, x / 2.0)
}

/// Least-squares residuals of `y` on the columns of `cols` (each of length `y.len()`).
pub fn ols_residuals(cols: &[Vec<f64>], y: &[f64]) -> Result<Vec<f64>, String> {
    let n = y.len();
    let q = cols.len();
    if n <= q {
        return Err(format!(
            "least squares needs more rows ({n}) than regressors ({q})"
        ));
    }
    let mut a: Vec<Vec<f64>> = cols.to_vec();
    let mut qty = y.to_vec();
    let scale: Vec<f64> = cols
        .iter()
        .map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let mut diag = vec![0.0; q];
    for j in 0..q {
        let norm = a[j][j..].iter().map(|v| v * v).sum::<f64>().sqrt();
        // (NaN-safe: a NaN norm fails too.)
        if norm.is_nan() || norm <= 1e-12 * scale[j].max(f64::MIN_POSITIVE) {
            return Err(
                "the regressors are collinear (a constant or perfectly predictable series?)".into(),
            );
        }
        let alpha = if a[j][j] > 0.0 { -norm } else { norm };
        // v = a_j[j..] − alpha e_1, H = I − 2 v vᵀ / vᵀv.
        let mut v: Vec<f64> = a[j][j..].to_vec();
        v[0] -= alpha;
        let vv = v.iter().map(|x| x * x).sum::<f64>();
        let reflect = |col: &mut [f64]| {
            let d = 2.0 * v.iter().zip(col.iter()).map(|(a, b)| a * b).sum::<f64>() / vv;
            for (c, vi) in col.iter_mut().zip(&v) {
                *c -= d * vi;
            }
        };
        for col in a.iter_mut().skip(j + 1) {
            reflect(&mut col[j..]);
        }
        reflect(&mut qty[j..]);
        diag[j] = alpha;
        a[j][j] = alpha;
    }
    // Back-substitute R β = (Qᵀy)[..q].
    let mut beta = vec![0.0; q];
    for j in (0..q).rev() {
        let s: f64 = (j + 1..q).map(|i| a[i][j] * beta[i]).sum();
        beta[j] = (qty[j] - s) / diag[j];
    }
    Ok((0..n)
        .map(|t| y[t] - cols.iter().zip(&beta).map(|(c, b)| c[t] * b).sum::<f64>())
        .collect())
}

/// Granger test and Gaussian TE of `source → target` with `lags` lags.
pub fn granger(source: &Reals, target: &Reals, lags: usize) -> Result<Granger, String> {
    if lags == 0 {
        return Err("granger: `p` (number of lags) must be ≥ 1".into());
    }
    same_layout(&["source", "target"], &[source.lens(), target.lens()])?;
    let layout = Layout {
        t0: lags,
        lens: target.lens(),
    };
    let n = layout.samples();
    let k_full = 2 * lags + 1;
    if n <= k_full {
        return Err(format!(
            "granger: {lags} lags need more than {k_full} regression rows (series length > {}), got {n}",
            3 * lags + 1
        ));
    }
    let mut y = Vec::with_capacity(n);
    let mut own: Vec<Vec<f64>> = vec![Vec::with_capacity(n); lags];
    let mut cross: Vec<Vec<f64>> = vec![Vec::with_capacity(n); lags];
    for (xs, ys) in source.0.iter().zip(&target.0) {
        for t in lags..ys.len() {
            y.push(ys[t]);
            for j in 0..lags {
                own[j].push(ys[t - 1 - j]);
                cross[j].push(xs[t - 1 - j]);
            }
        }
    }
    let one = vec![1.0; n];
    let mut restricted = own.clone();
    restricted.push(one.clone());
    let mut full = own;
    full.extend(cross);
    full.push(one);
    let e_r = ols_residuals(&restricted, &y)?;
    let e_f = ols_residuals(&full, &y)?;
    let rss_r: f64 = e_r.iter().map(|e| e * e).sum();
    let rss_f: f64 = e_f.iter().map(|e| e * e).sum();
    if rss_f.is_nan() || rss_f <= 0.0 {
        return Err("granger: the full model fits the target perfectly; the test statistic cannot be computed".into());
    }
    let df_den = n - k_full;
    let (nf, p) = (n as f64, lags as f64);
    let f_stat = (rss_r - rss_f) / rss_f / p * df_den as f64;
    let geweke = (rss_r / rss_f).ln();
    let chi2_stat = nf * (rss_r - rss_f) / rss_f;
    let lr_stat = nf * geweke;
    let (s_r, s_f) = (rss_r / nf, rss_f / nf);
    let local_te = e_r
        .iter()
        .zip(&e_f)
        .map(|(r, f)| 0.5 * geweke - f * f / (2.0 * s_f) + r * r / (2.0 * s_r))
        .collect();
    Ok(Granger {
        lags,
        n_obs: n,
        rss_restricted: rss_r,
        rss_full: rss_f,
        geweke,
        f_stat,
        f_p_value: f_sf(f_stat, p, df_den as f64),
        df_num: lags,
        df_den,
        chi2_stat,
        chi2_p_value: chi2_sf(chi2_stat, p),
        lr_stat,
        lr_p_value: chi2_sf(lr_stat, p),
        local_te,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;

    #[test]
    fn ols_recovers_a_plane_and_rejects_collinearity() {
        let x1: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let x2: Vec<f64> = (0..20).map(|i| ((i * 7) % 5) as f64).collect();
        let one = vec![1.0; 20];
        let y: Vec<f64> = (0..20).map(|i| 3.0 - 2.0 * x1[i] + 0.5 * x2[i]).collect();
        let r = ols_residuals(&[x1.clone(), x2.clone(), one.clone()], &y).unwrap();
        assert!(r.iter().all(|e| e.abs() < 1e-10), "{r:?}");
        let twice: Vec<f64> = x1.iter().map(|v| 2.0 * v).collect();
        assert!(ols_residuals(&[x1, twice, one], &y)
            .unwrap_err()
            .contains("collinear"));
    }

    #[test]
    fn distribution_tails() {
        // SciPy: f.sf(2.5, 3, 40) = 0.07346..., chi2.sf(3.84145882069412, 1) = 0.05.
        assert!((chi2_sf(3.841_458_820_694_124, 1.0) - 0.05).abs() < 1e-12);
        assert!((chi2_sf(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-14);
        // F(2, d2) tail has a closed form: (1 + 2f/d2)^(−d2/2).
        let (f, d2) = (1.7, 13.0);
        let (got, want) = (f_sf(f, 2.0, d2), (1.0 + 2.0 * f / d2).powf(-d2 / 2.0));
        assert!((got - want).abs() < 1e-12 * want, "{got:e} vs {want:e}");
        assert_eq!(f_sf(0.0, 3.0, 4.0), 1.0);
    }

    /// T11 (`docs/measures.md`): `Y_t = a Y_{t−1} + b X_{t−1} + e_t`, `b = σx = σe = 1`:
    /// TE = ½ ln 2 = 0.3465736 nats, Geweke F = ln 2; nothing flows back.
    #[test]
    fn t11_gaussian_te_by_simulation() {
        let mut r = Rng::new(2025);
        let n = 100_000;
        let a = 0.5;
        let x: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mut y = vec![0.0; n];
        for t in 1..n {
            y[t] = a * y[t - 1] + x[t - 1] + r.normal();
        }
        let (xs, ys) = (Reals(vec![x]), Reals(vec![y]));
        for p in [1, 2] {
            let g = granger(&xs, &ys, p).unwrap();
            let se = g.te_se();
            assert!(se > 0.0 && se < 0.005, "se {se}");
            assert!(
                (g.te() - 0.346_573_6).abs() < 3.0 * se,
                "p={p}: TE {} ± {se}",
                g.te()
            );
            assert!(
                (g.geweke - std::f64::consts::LN_2).abs() < 6.0 * se,
                "Geweke {}",
                g.geweke
            );
            assert!(
                (g.local_te.iter().sum::<f64>() / g.local_te.len() as f64 - g.te()).abs() < 1e-12
            );
            assert!(g.f_p_value < 1e-12 && g.f_stat > 1000.0);
            // lr = n·Geweke and the χ² statistic agree with their definitions.
            assert!((g.lr_stat - g.n_obs as f64 * g.geweke).abs() < 1e-9 * g.lr_stat);
            assert_eq!(g.df_den, g.n_obs - 2 * p - 1);
        }
        let back = granger(&ys, &xs, 1).unwrap();
        // Under no coupling n·2·TE = lr ~ χ²(1): TE is of order 1/n.
        assert!(
            back.te() >= 0.0 && back.te() < 1e-4,
            "TE(Y→X) = {}",
            back.te()
        );
        assert!(back.f_p_value > 0.01);
        assert!(granger(&xs, &Reals(vec![vec![1.0; 5]]), 1).is_err());
        assert!(granger(
            &Reals(vec![vec![1.0, 2.0, 3.0, 4.0]]),
            &Reals(vec![vec![1.0, 0.0, 2.0, 5.0]]),
            1
        )
        .unwrap_err()
        .contains("rows"));
    }
}

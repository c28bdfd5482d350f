//! Capacity of a discrete memoryless channel by the (dual) Blahut–Arimoto iteration
//! (Arimoto 1972, Blahut 1972), with the optimal input law.
//!
//! With `D_x = KL(W(·|x) || q)`, `q = pW`, the update is `p(x) ← p(x) e^{D_x} / Σ p e^{D}`
//! (in logs). Every iterate brackets the capacity:
//! `I(p) ≤ ln Σ_x p(x) e^{D_x} ≤ C ≤ max_x D_x`, so the stopping rule is the certified gap
//! `max_x D_x − I(p) < tol`, and the returned value is `I(p)` of the returned input law
//! (within the gap of `C`). Nats throughout.

use crate::util::{check_matrix, lse};
use tokit_sdk::{bail, check_cancelled, Result};

/// Capacity and its certificate.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// `I(p)` of the returned input law (nats).
    pub capacity: f64,
    /// `ln Σ_x p(x) e^{D_x}` (a lower bound on C, ≥ `capacity`).
    pub lower_bound: f64,
    /// `max_x D_x` (an upper bound on C).
    pub upper_bound: f64,
    pub input: Vec<f64>,
    pub output: Vec<f64>,
    /// `D_x = KL(W(·|x) || q)` per input letter.
    pub divergences: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
}

impl Capacity {
    /// `upper_bound − capacity`: how far `capacity` can be from C.
    pub fn gap(&self) -> f64 {
        self.upper_bound - self.capacity
    }
}

/// Validate a row-stochastic `nx × ny` channel (rows are input letters) and renormalise rows.
pub fn check_channel(w: &[f64], nx: usize, ny: usize, sum_tol: f64) -> Result<Vec<f64>> {
    check_matrix("channel", w, nx, ny, true)?;
    let mut out = w.to_vec();
    for x in 0..nx {
        let s: f64 = w[x * ny..(x + 1) * ny].iter().sum();
        if (s - 1.0).abs() > sum_tol {
            bail!(
                "channel: row {x} sums to {s}, expected 1 (rows are W(·|x); tolerance {sum_tol:e})"
            );
        }
        for v in &mut out[x * ny..(x + 1) * ny] {
            *v /= s;
        }
    }
    Ok(out)
}

/// `D_x = Σ_y W(y|x) ln(W(y|x)/q(y))` and `q = pW` for input law `p`.
fn divergences(w: &[f64], p: &[f64], ny: usize) -> (Vec<f64>, Vec<f64>) {
    let nx = p.len();
    let mut q = vec![0.0; ny];
    for x in 0..nx {
        for y in 0..ny {
            q[y] += p[x] * w[x * ny + y];
        }
    }
    let dx = (0..nx)
        .map(|x| {
            (0..ny)
                .filter(|&y| w[x * ny + y] > 0.0)
                .map(|y| {
                    let v = w[x * ny + y];
                    v * (v / q[y]).ln()
                })
                .sum::<f64>()
                .max(0.0)
        })
        .collect();
    (dx, q)
}

/// Capacity of the channel `w` (validated by [`check_channel`]).
pub fn capacity(w: &[f64], nx: usize, ny: usize, tol: f64, max_iter: usize) -> Result<Capacity> {
    if !(tol > 0.0 && tol.is_finite()) {
        bail!("parameter `tol`: expected a positive number, found {tol}");
    }
    if max_iter == 0 {
        bail!("parameter `max_iter`: expected at least 1");
    }
    if nx == 0 || ny == 0 || w.len() != nx * ny {
        bail!("channel: expected {nx} × {ny} entries, found {}", w.len());
    }
    let mut lp = vec![-(nx as f64).ln(); nx];
    let mut p: Vec<f64> = lp.iter().map(|l| l.exp()).collect();
    let (mut iterations, mut converged) = (0, false);
    let mut state;
    loop {
        iterations += 1;
        if iterations % 1024 == 0 {
            check_cancelled()?;
        }
        let (dx, q) = divergences(w, &p, ny);
        let info: f64 = p.iter().zip(&dx).map(|(a, b)| a * b).sum::<f64>().max(0.0);
        let upper = dx.iter().copied().fold(0.0, f64::max);
        let t: Vec<f64> = lp.iter().zip(&dx).map(|(l, d)| l + d).collect();
        let lower = lse(&t);
        state = (info, lower, upper, dx, q);
        if upper - info < tol {
            converged = true;
            break;
        }
        if iterations >= max_iter {
            break;
        }
        lp = t.iter().map(|v| v - lower).collect();
        p = lp.iter().map(|l| l.exp()).collect();
    }
    let (info, lower, upper, dx, q) = state;
    if !(info.is_finite() && upper.is_finite()) {
        bail!("channel capacity: non-finite result (capacity {info}, upper bound {upper})");
    }
    Ok(Capacity {
        capacity: info,
        lower_bound: lower.max(info).min(upper),
        upper_bound: upper,
        input: p,
        output: q,
        divergences: dx,
        iterations,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::{entropy, h2, LN2};

    fn cap(w: &[f64], nx: usize, ny: usize) -> Capacity {
        let w = check_channel(w, nx, ny, 1e-9).unwrap();
        capacity(&w, nx, ny, 1e-12, 1_000_000).unwrap()
    }

    /// `I(X;Y)` of input law `p` through `w`, from entropies.
    fn mutual_information(w: &[f64], p: &[f64], ny: usize) -> f64 {
        let nx = p.len();
        let joint: Vec<f64> = (0..nx * ny).map(|k| p[k / ny] * w[k]).collect();
        let py: Vec<f64> = (0..ny)
            .map(|y| (0..nx).map(|x| joint[x * ny + y]).sum())
            .collect();
        entropy(p) + entropy(&py) - entropy(&joint)
    }

    #[test]
    fn binary_symmetric_channel() {
        let c = cap(&[0.9, 0.1, 0.1, 0.9], 2, 2);
        assert!(c.converged);
        assert!((c.capacity / LN2 - 0.531_004_4).abs() < 1e-6);
        assert!((c.capacity - (LN2 - h2(0.1))).abs() < 1e-11);
        assert!((c.input[0] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn erasure_and_z_and_typewriter() {
        let e = 0.25;
        let c = cap(&[1.0 - e, 0.0, e, 0.0, 1.0 - e, e], 2, 3);
        assert!((c.capacity / LN2 - 0.75).abs() < 1e-10);
        // Z channel: 1 → 0 with probability ε.
        for eps in [0.1, 0.5, 0.9] {
            let c = cap(&[1.0, 0.0, eps, 1.0 - eps], 2, 2);
            let exact = (1.0 + (1.0 - eps) * eps.powf(eps / (1.0 - eps))).ln();
            assert!(
                (c.capacity - exact).abs() < 1e-10,
                "ε = {eps}: {} vs {exact}",
                c.capacity
            );
            assert!(
                (mutual_information(&[1.0, 0.0, eps, 1.0 - eps], &c.input, 2) - c.capacity).abs()
                    < 1e-12
            );
            assert!(c.lower_bound >= c.capacity && c.upper_bound >= c.lower_bound);
            assert!(c.gap() < 1e-12);
        }
        // Noisy typewriter on 5 letters: C = ln 5 − ln 2.
        let mut w = vec![0.0; 25];
        for x in 0..5 {
            w[x * 5 + x] = 0.5;
            w[x * 5 + (x + 1) % 5] = 0.5;
        }
        let c = cap(&w, 5, 5);
        assert!((c.capacity - (5f64 / 2.0).ln()).abs() < 1e-10);
    }

    #[test]
    fn useless_channel_has_zero_capacity() {
        let c = cap(&[0.3, 0.7, 0.3, 0.7, 0.3, 0.7], 3, 2);
        assert!(c.capacity.abs() < 1e-15 && c.converged);
    }

    #[test]
    fn bad_channels_are_errors() {
        assert!(check_channel(&[0.5, 0.6, 0.5, 0.5], 2, 2, 1e-9).is_err());
        assert!(check_channel(&[1.5, -0.5, 0.5, 0.5], 2, 2, 1e-9).is_err());
        assert!(check_channel(&[0.5, 0.5, 0.5], 2, 2, 1e-9).is_err());
        assert!(check_channel(&[0.5, f64::NAN, 0.5, 0.5], 2, 2, 1e-9).is_err());
        assert!(capacity(&[0.5, 0.5, 0.5, 0.5], 2, 2, 0.0, 10).is_err());
        assert!(capacity(&[0.5, 0.5, 0.5, 0.5], 2, 2, 1e-9, 0).is_err());
    }
}

//! The entropy family of a symbol stream (plug-in, trials pooled):
//!
//! * `H(X)`: entropy of the symbol distribution over all times;
//! * block entropy `H(X^k)`: entropy of the length-`k` windows `(x_{t−k+1} … x_t)`,
//!   `t = k−1 ..` (pyinform's `block_entropy`);
//! * entropy rate `h_k = H(X_t | X_{t−k}^{t−1})`, over the times `t = k ..` (pyinform's
//!   `entropy_rate`). This is the block-entropy difference `H(X^{k+1}) − H(X^k)` with both
//!   blocks counted on the same `N − k` windows (the `k`-block being the first `k` symbols
//!   of each `(k+1)`-window), so local values exist and average to it. The difference of
//!   block entropies each counted on all of its own windows is also reported
//!   ([`block_entropy_difference`]); the two differ only by edge terms of order `k/N`.
//!
//! Local values: `−ln p(x_t)`, `−ln p(window_t)`, `−ln p(x_t | past_t)`.

use super::counting::{embed, lags};
use super::dense;
use super::estimate::{cond_entropy, entropy};
use super::measure::{layout, Measured, Options};
use super::series::Symbols;

/// `H(X)` over every symbol of every trial.
pub fn stream_entropy(s: &Symbols, opts: &Options) -> Result<Measured, String> {
    let layout = layout(s.lens(), 0, "entropy")?;
    let estimate = match dense::cond_entropy(&[(s, 0)], &[], &layout, opts.bias, opts.local) {
        Some(e) => e,
        None => entropy(&embed(s, &[0], &layout), opts.bias, opts.local),
    };
    Ok(Measured {
        estimate,
        layout,
        significance: None,
    })
}

/// `H(X^k)`, `k ≥ 1`; the local value of a window sits at its last time.
pub fn block_entropy(s: &Symbols, k: usize, opts: &Options) -> Result<Measured, String> {
    if k == 0 {
        return Err("block entropy needs a block length k ≥ 1".into());
    }
    let layout = layout(s.lens(), k - 1, "block entropy")?;
    let window = lags(0, k, 1);
    let parts: Vec<_> = window.iter().map(|&l| (s, l)).collect();
    let estimate = match dense::cond_entropy(&parts, &[], &layout, opts.bias, opts.local) {
        Some(e) => e,
        None => entropy(&embed(s, &window, &layout), opts.bias, opts.local),
    };
    Ok(Measured {
        estimate,
        layout,
        significance: None,
    })
}

/// `H(X_t | X_{t−k}^{t−1})` (`k = 0`: `H(X)`).
pub fn entropy_rate(s: &Symbols, k: usize, opts: &Options) -> Result<Measured, String> {
    let layout = layout(s.lens(), k, "entropy rate")?;
    let past_lags = lags(1, k, 1);
    let past: Vec<_> = past_lags.iter().map(|&l| (s, l)).collect();
    let estimate = match dense::cond_entropy(&[(s, 0)], &past, &layout, opts.bias, opts.local) {
        Some(e) => e,
        None => {
            let future = embed(s, &[0], &layout);
            let past = embed(s, &past_lags, &layout);
            cond_entropy(&future, &past, opts.bias, opts.local)
        }
    };
    Ok(Measured {
        estimate,
        layout,
        significance: None,
    })
}

/// [`entropy_rate`] and [`block_entropy_difference`] together, from one table of counts
/// when the alphabet allows.
pub fn entropy_rate_and_difference(
    s: &Symbols,
    k: usize,
    opts: &Options,
) -> Result<(Measured, f64), String> {
    let layout = layout(s.lens(), k, "entropy rate")?;
    if let Some((estimate, diff)) =
        dense::entropy_rate_and_difference(s, k, &layout, opts.bias, opts.local)
    {
        let m = Measured {
            estimate,
            layout,
            significance: None,
        };
        return Ok((m, diff));
    }
    let diff = block_entropy_difference(s, k, opts)?;
    Ok((entropy_rate(s, k, opts)?, diff))
}

/// `H(X^{k+1}) − H(X^k)`, each block entropy over all of its own windows (`H(X^0) = 0`).
pub fn block_entropy_difference(s: &Symbols, k: usize, opts: &Options) -> Result<f64, String> {
    let opts = Options {
        local: false,
        ..*opts
    };
    let upper = block_entropy(s, k + 1, &opts)?.value();
    let lower = if k == 0 {
        0.0
    } else {
        block_entropy(s, k, &opts)?.value()
    };
    Ok(upper - lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    #[test]
    fn pyinform_examples() {
        // pyinform 0.2.0: block_entropy([0,0,1,1,1,1,0,0,0], k=1) = 0.9910760598382222,
        // k=2: 1.811278124459133; entropy_rate(k=2) = 0.6792696431662095;
        // with trials [[0,0,1,1,1,1,0,0,0],[1,0,0,1,0,0,1,0,0]]: entropy_rate(k=2) = 0.6253491072973907.
        let xs = Symbols::one(vec![0, 0, 1, 1, 1, 1, 0, 0, 0]);
        let o = Options::default();
        close(
            block_entropy(&xs, 1, &o).unwrap().value() / LN_2,
            0.9910760598382222,
            1e-12,
        );
        close(
            block_entropy(&xs, 2, &o).unwrap().value() / LN_2,
            1.811278124459133,
            1e-12,
        );
        close(
            stream_entropy(&xs, &o).unwrap().value() / LN_2,
            0.9910760598382222,
            1e-12,
        );
        let er = entropy_rate(&xs, 2, &o).unwrap();
        close(er.value() / LN_2, 0.6792696431662095, 1e-12);
        close(
            er.estimate.local.iter().sum::<f64>() / er.estimate.local.len() as f64,
            er.value(),
            1e-14,
        );
        let two = Symbols::new(vec![
            vec![0, 0, 1, 1, 1, 1, 0, 0, 0],
            vec![1, 0, 0, 1, 0, 0, 1, 0, 0],
        ]);
        close(
            entropy_rate(&two, 2, &o).unwrap().value() / LN_2,
            0.6253491072973907,
            1e-12,
        );
        // k = 0 is the plain entropy; the block difference matches on a long periodic stream.
        close(
            entropy_rate(&xs, 0, &o).unwrap().value(),
            stream_entropy(&xs, &o).unwrap().value(),
            1e-15,
        );
        let periodic = Symbols::one((0..3000).map(|t| [0, 1, 1][t % 3]).collect());
        close(entropy_rate(&periodic, 2, &o).unwrap().value(), 0.0, 1e-12);
        // All-window block entropies differ by edge terms of order k/N only.
        let d = block_entropy_difference(&periodic, 2, &o).unwrap();
        assert!(d.abs() < 1e-9 && d != 0.0, "{d}");
        assert!(block_entropy(&xs, 0, &o).is_err());
        assert!(entropy_rate(&xs, 9, &o)
            .unwrap_err()
            .contains("longer than 9"));
    }
}

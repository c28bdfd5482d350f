//! Active information storage (Lizier, Prokopenko & Zomaya 2012):
//! `A_X(k) = I(X_{t−k}^{t−1} ; X_t)`, the information the length-`k` past of a stream holds
//! about its next symbol, over the times `t = k ..` of every trial (pyinform's
//! `active_info`). Local value `ln p(x_t | past_t) / p(x_t)`.
//!
//! The permutation test reorders the past windows over the samples (a surrogate keeps
//! both marginals and breaks their pairing).

use super::counting::{embed, lags};
use super::dense;
use super::measure::{layout, measure_cmi, Measured, Options};
use super::series::Symbols;

pub fn active_info(s: &Symbols, k: usize, opts: &Options) -> Result<Measured, String> {
    if k == 0 {
        return Err("active information storage needs a history length k ≥ 1".into());
    }
    let layout = layout(s.lens(), k, "active information storage")?;
    let past: Vec<_> = lags(1, k, 1).into_iter().map(|l| (s, l)).collect();
    if let Some(m) = dense::measure_cmi(&[(s, 0)], &past, &[], layout.clone(), opts) {
        return Ok(m);
    }
    let future = embed(s, &[0], &layout);
    let past = embed(s, &lags(1, k, 1), &layout);
    Ok(measure_cmi(future, past, None, layout, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    #[test]
    fn pyinform_examples() {
        // pyinform 0.2.0: active_info([0,0,1,1,1,1,0,0,0], k=2) = 0.3059584928680418;
        // two trials [[0,0,1,1,1,1,0,0,0],[1,0,0,1,0,0,1,0,0]], k=2: 0.35987902873686084.
        let o = Options::default();
        let xs = Symbols::one(vec![0, 0, 1, 1, 1, 1, 0, 0, 0]);
        let a = active_info(&xs, 2, &o).unwrap();
        assert!(
            (a.value() / LN_2 - 0.3059584928680418).abs() < 1e-12,
            "{}",
            a.value() / LN_2
        );
        assert!((a.estimate.local.iter().sum::<f64>() / 7.0 - a.value()).abs() < 1e-14);
        let two = Symbols::new(vec![
            vec![0, 0, 1, 1, 1, 1, 0, 0, 0],
            vec![1, 0, 0, 1, 0, 0, 1, 0, 0],
        ]);
        let a = active_info(&two, 2, &o).unwrap();
        assert!(
            (a.value() / LN_2 - 0.35987902873686084).abs() < 1e-12,
            "{}",
            a.value() / LN_2
        );
        assert!(active_info(&xs, 0, &o).is_err());
    }
}

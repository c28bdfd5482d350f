//! Mutual information and conditional mutual information between symbol streams,
//! plug-in, with a lag: `I(X_{t−lag} ; Y_t [| Z_{t−cond_lag}])` over the times
//! `t ≥ max(lag, cond_lag)` of every trial. `lag = 0` with no condition is pyinform's
//! `mutual_info(xs, ys)`. Local value `ln p(x, y | z) / (p(x | z) p(y | z))`.
//!
//! The permutation test reorders the (lagged) source `X` over the samples.

use super::counting::embed;
use super::dense;
use super::measure::{layout, measure_cmi, Measured, Options};
use super::series::{same_layout, Symbols};

/// `I(source_{t−lag} ; target_t | condition_{t−cond_lag})`.
pub fn mutual_info(
    source: &Symbols,
    target: &Symbols,
    lag: usize,
    condition: Option<(&Symbols, usize)>,
    opts: &Options,
) -> Result<Measured, String> {
    let mut names = vec!["source", "target"];
    let mut lens = vec![source.lens(), target.lens()];
    if let Some((c, _)) = condition {
        names.push("condition");
        lens.push(c.lens());
    }
    same_layout(&names, &lens)?;
    let t0 = lag.max(condition.map_or(0, |(_, l)| l));
    let layout = layout(target.lens(), t0, "mutual information")?;
    let c: Vec<_> = condition.into_iter().collect();
    if let Some(m) = dense::measure_cmi(&[(target, 0)], &[(source, lag)], &c, layout.clone(), opts)
    {
        return Ok(m);
    }
    let y = embed(target, &[0], &layout);
    let x = embed(source, &[lag], &layout);
    let z = condition.map(|(c, l)| embed(c, &[l], &layout));
    Ok(measure_cmi(y, x, z, layout, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;
    use crate::streams::significance::{Permutations, Surrogate};
    use std::f64::consts::LN_2;

    #[test]
    fn pyinform_example_and_conditioning() {
        // pyinform 0.2.0: mutual_info([0,0,1,1,1,1,0,0,0], [1,1,1,0,0,1,1,1,0]) = 0.07278022578373289.
        let xs = Symbols::one(vec![0, 0, 1, 1, 1, 1, 0, 0, 0]);
        let ys = Symbols::one(vec![1, 1, 1, 0, 0, 1, 1, 1, 0]);
        let o = Options::default();
        let m = mutual_info(&xs, &ys, 0, None, &o).unwrap();
        assert!((m.value() / LN_2 - 0.07278022578373289).abs() < 1e-12);
        assert!((m.estimate.local.iter().sum::<f64>() / 9.0 - m.value()).abs() < 1e-14);
        // Symmetric at lag 0.
        assert!((mutual_info(&ys, &xs, 0, None, &o).unwrap().value() - m.value()).abs() < 1e-15);

        // Y = X xor Z with X, Z i.i.d. uniform: I(X;Y) = 0 but I(X;Y|Z) = 1 bit.
        let mut r = Rng::new(4);
        let x: Vec<u32> = (0..4000).map(|_| r.below(2) as u32).collect();
        let z: Vec<u32> = (0..4000).map(|_| r.below(2) as u32).collect();
        let y: Vec<u32> = x.iter().zip(&z).map(|(a, b)| a ^ b).collect();
        let (x, y, z) = (Symbols::one(x), Symbols::one(y), Symbols::one(z));
        let o = Options {
            permutations: Permutations {
                kind: Surrogate::Shuffle,
                count: 99,
                first: 0,
                seed: 1,
            },
            ..Options::default()
        };
        let plain = mutual_info(&x, &y, 0, None, &o).unwrap();
        let cond = mutual_info(&x, &y, 0, Some((&z, 0)), &o).unwrap();
        assert!(plain.value() < 0.002, "{}", plain.value());
        assert!(plain.significance.unwrap().p_value > 0.05);
        assert!((cond.value() - LN_2).abs() < 1e-3, "{}", cond.value());
        assert_eq!(cond.significance.unwrap().p_value, 0.01);
        // A lag shifts the pairing: X_{t−1} says nothing about Y_t here.
        assert!(
            mutual_info(&x, &y, 1, Some((&z, 0)), &Options::default())
                .unwrap()
                .value()
                < 0.003
        );
    }
}

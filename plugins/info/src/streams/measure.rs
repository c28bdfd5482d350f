//! A measured stream quantity: the estimate, the sample layout its local values live on,
//! and the permutation test when one was asked for; plus the options every estimator takes.

use super::counting::{Ids, Layout};
use super::estimate::{Bias, Cmi, Estimate};
use super::significance::{permutation_test, Permutations, Significance, Surrogate};

/// Options shared by the plug-in estimators.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub bias: Bias,
    /// Permutation test (`count = 0`: none). Ignored by the entropy family.
    pub permutations: Permutations,
    /// Keep per-sample local values.
    pub local: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bias: Bias::None,
            permutations: Permutations {
                kind: Surrogate::Shuffle,
                count: 0,
                first: 0,
                seed: 0,
            },
            local: true,
        }
    }
}

/// An estimate with its layout (values in nats).
#[derive(Clone, Debug)]
pub struct Measured {
    pub estimate: Estimate,
    pub layout: Layout,
    pub significance: Option<Significance>,
}

impl Measured {
    pub fn value(&self) -> f64 {
        self.estimate.value
    }
}

/// The layout of samples at times `t0..` of trials of lengths `lens`, or an error when no
/// trial is long enough.
pub fn layout(lens: Vec<usize>, t0: usize, what: &str) -> Result<Layout, String> {
    let l = Layout { t0, lens };
    if l.samples() == 0 {
        let longest = l.lens.iter().copied().max().unwrap_or(0);
        return Err(format!("{what} needs a trial longer than {t0} symbols (the largest lag), the longest has {longest}"));
    }
    Ok(l)
}

/// `I(A; B | C)` with local values and, if asked, a permutation test that reorders `B`.
pub fn measure_cmi(a: Ids, b: Ids, c: Option<Ids>, layout: Layout, opts: &Options) -> Measured {
    let cmi = Cmi::new(a, c);
    let estimate = cmi.estimate(&b, opts.bias, opts.local);
    let significance = (opts.permutations.count > 0).then(|| {
        permutation_test(
            &cmi,
            &b,
            &layout.segments(),
            estimate.value,
            opts.bias,
            opts.permutations,
        )
    });
    Measured {
        estimate,
        layout,
        significance,
    }
}

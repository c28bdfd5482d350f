//! The plug-in estimators every stream measure reduces to: entropy `H(A)`, conditional
//! entropy `H(A | C)` and conditional mutual information `I(A; B | C)` of variables given
//! as id arrays over the samples ([`super::counting`]), in nats, with
//!
//! * **local values** (JIDT/PyInform style, one per sample):
//!   `h(a) = −ln p(a)`, `h(a|c) = −ln p(a|c)`,
//!   `i(a; b | c) = ln [ p(a, b, c) p(c) / (p(a, c) p(b, c)) ]`,
//!   with `p` the empirical frequencies, so the global value is exactly their mean;
//! * optional **Miller–Madow** bias correction: each plug-in entropy `Ĥ` over `N` samples
//!   with `m` occupied bins becomes `Ĥ + (m − 1)/(2N)`; a conditional entropy or CMI gets
//!   the signed sum of its entropies' corrections,
//!   `I(A;B|C)`: `(m_AC + m_BC − m_ABC − m_C)/(2N)`, `H(A|C)`: `(m_AC − m_C)/(2N)`.
//!   The local values are shifted by the same constant, so they still average to the
//!   corrected value.
//!
//! The global value is computed from the count tables (a sum over occupied states), not as
//! the mean of the local values, so tests comparing the two check something.

use super::counting::{pair, Ids};

/// Bias correction of the plug-in estimates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    None,
    MillerMadow,
}

impl Bias {
    pub fn parse(s: &str) -> Result<Bias, String> {
        match s {
            "none" | "plugin" | "plug-in" => Ok(Bias::None),
            "miller_madow" | "miller-madow" | "mm" => Ok(Bias::MillerMadow),
            other => Err(format!(
                "`bias_correction`: expected \"none\" or \"miller_madow\", found \"{other}\""
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bias::None => "plug-in",
            Bias::MillerMadow => "plug-in + Miller–Madow",
        }
    }
}

/// An estimate in nats.
#[derive(Clone, Debug, Default)]
pub struct Estimate {
    /// The reported value: plug-in plus `correction`.
    pub value: f64,
    /// The plug-in (maximum-likelihood) value.
    pub plugin: f64,
    /// Miller–Madow term (0 without bias correction).
    pub correction: f64,
    /// Per-sample local values (empty when not requested); their mean is `value`.
    pub local: Vec<f64>,
    pub samples: usize,
    /// Occupied joint states (of `A`, `(A, C)` or `(A, B, C)`).
    pub states: usize,
}

impl Estimate {
    /// Naive standard error of the mean of the local values (treats samples as
    /// independent; serial dependence makes it optimistic).
    pub fn se(&self) -> f64 {
        let n = self.local.len();
        if n < 2 {
            return f64::NAN;
        }
        let m = self.local.iter().sum::<f64>() / n as f64;
        let var = self.local.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt()
    }
}

fn mm(bias: Bias, bins: i64, n: usize) -> f64 {
    match bias {
        Bias::None => 0.0,
        Bias::MillerMadow => bins as f64 / (2.0 * n as f64),
    }
}

/// `H(A)`.
pub fn entropy(a: &Ids, bias: Bias, local: bool) -> Estimate {
    let n = a.len();
    if n == 0 {
        return Estimate {
            value: f64::NAN,
            plugin: f64::NAN,
            ..Default::default()
        };
    }
    let h = a.hist();
    let nf = n as f64;
    let plugin = h
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64 / nf) * (c as f64 / nf).ln())
        .sum::<f64>();
    let correction = mm(bias, a.n as i64 - 1, n);
    let local = if local {
        a.ids
            .iter()
            .map(|&i| -(h[i as usize] as f64 / nf).ln() + correction)
            .collect()
    } else {
        Vec::new()
    };
    Estimate {
        value: plugin + correction,
        plugin,
        correction,
        local,
        samples: n,
        states: a.n as usize,
    }
}

/// `H(A | C)`.
pub fn cond_entropy(a: &Ids, c: &Ids, bias: Bias, local: bool) -> Estimate {
    let n = a.len();
    if n == 0 {
        return Estimate {
            value: f64::NAN,
            plugin: f64::NAN,
            ..Default::default()
        };
    }
    let ac = pair(a, c);
    let (h_ac, h_c) = (ac.hist(), c.hist());
    let mut plugin = 0.0;
    let mut seen = 0u32;
    for (&j, &k) in ac.ids.iter().zip(&c.ids) {
        if j == seen {
            seen += 1;
            let (n_ac, n_c) = (h_ac[j as usize] as f64, h_c[k as usize] as f64);
            plugin -= n_ac / n as f64 * (n_ac / n_c).ln();
        }
    }
    let correction = mm(bias, ac.n as i64 - c.n as i64, n);
    let local = if local {
        ac.ids
            .iter()
            .zip(&c.ids)
            .map(|(&j, &k)| -(h_ac[j as usize] as f64 / h_c[k as usize] as f64).ln() + correction)
            .collect()
    } else {
        Vec::new()
    };
    Estimate {
        value: plugin + correction,
        plugin,
        correction,
        local,
        samples: n,
        states: ac.n as usize,
    }
}

/// `I(A; B | C)` for a fixed `A` and `C` and any number of `B`s (the surrogates of a
/// permutation test change only `B`, so the `(A, C)` and `C` tables are built once).
pub struct Cmi {
    a: Ids,
    c: Ids,
    ac: Ids,
    h_ac: Vec<u32>,
    h_c: Vec<u32>,
}

impl Cmi {
    /// `c = None`: unconditional mutual information.
    pub fn new(a: Ids, c: Option<Ids>) -> Cmi {
        let n = a.len();
        let c = c.unwrap_or_else(|| Ids {
            ids: vec![0; n],
            n: u32::from(n > 0),
        });
        debug_assert_eq!(c.len(), n);
        let ac = pair(&a, &c);
        let (h_ac, h_c) = (ac.hist(), c.hist());
        Cmi {
            a,
            c,
            ac,
            h_ac,
            h_c,
        }
    }

    pub fn samples(&self) -> usize {
        self.a.len()
    }

    /// The estimate for `b` (same samples as `a`).
    pub fn estimate(&self, b: &Ids, bias: Bias, local: bool) -> Estimate {
        let n = self.a.len();
        if n == 0 {
            return Estimate {
                value: f64::NAN,
                plugin: f64::NAN,
                ..Default::default()
            };
        }
        debug_assert_eq!(b.len(), n);
        let bc = pair(b, &self.c);
        let abc = pair(&self.ac, b);
        let (h_bc, h_abc) = (bc.hist(), abc.hist());
        let ratio = |i: usize| {
            let (j, k, l, m) = (
                abc.ids[i] as usize,
                self.c.ids[i] as usize,
                self.ac.ids[i] as usize,
                bc.ids[i] as usize,
            );
            (h_abc[j] as f64 * self.h_c[k] as f64) / (self.h_ac[l] as f64 * h_bc[m] as f64)
        };
        let mut plugin = 0.0;
        let mut seen = 0u32;
        for i in 0..n {
            let j = abc.ids[i];
            if j == seen {
                seen += 1;
                plugin += h_abc[j as usize] as f64 / n as f64 * ratio(i).ln();
            }
        }
        let correction = mm(
            bias,
            self.ac.n as i64 + bc.n as i64 - abc.n as i64 - self.c.n as i64,
            n,
        );
        let local = if local {
            (0..n).map(|i| ratio(i).ln() + correction).collect()
        } else {
            Vec::new()
        };
        Estimate {
            value: plugin + correction,
            plugin,
            correction,
            local,
            samples: n,
            states: abc.n as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Ids {
        Ids::from_labels(v)
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    #[test]
    fn entropy_and_miller_madow() {
        // counts 4, 2, 1, 1 of N = 8: H = 1.75 bits; m = 4 bins.
        let a = ids(&[0, 0, 1, 0, 2, 1, 3, 0]);
        let e = entropy(&a, Bias::None, true);
        close(e.value, 1.75 * std::f64::consts::LN_2, 1e-15);
        close(e.local.iter().sum::<f64>() / 8.0, e.value, 1e-15);
        let m = entropy(&a, Bias::MillerMadow, true);
        close(m.value, e.value + (4.0 - 1.0) / (2.0 * 8.0), 1e-15);
        close(m.correction, 3.0 / 16.0, 1e-15);
        close(m.local.iter().sum::<f64>() / 8.0, m.value, 1e-15);
        // A constant has zero entropy and zero correction.
        let z = entropy(&ids(&[3, 3, 3]), Bias::MillerMadow, false);
        assert_eq!((z.value, z.correction), (0.0, 0.0));
    }

    #[test]
    fn cmi_against_entropy_identities() {
        // I(A;B|C) = H(A|C) − H(A|B,C), H(A|C) = H(A,C) − H(C): check on a small table.
        let a = ids(&[0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0]);
        let b = ids(&[0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]);
        let c = ids(&[0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0]);
        let bc = pair(&b, &c);
        let want = cond_entropy(&a, &c, Bias::None, false).value
            - cond_entropy(&a, &bc, Bias::None, false).value;
        let cmi = Cmi::new(a.clone(), Some(c.clone()));
        let got = cmi.estimate(&b, Bias::None, true);
        close(got.value, want, 1e-14);
        close(got.local.iter().sum::<f64>() / 12.0, got.value, 1e-14);
        // The MM terms telescope the same way.
        let want_mm = cond_entropy(&a, &c, Bias::MillerMadow, false).value
            - cond_entropy(&a, &bc, Bias::MillerMadow, false).value;
        close(
            cmi.estimate(&b, Bias::MillerMadow, false).value,
            want_mm,
            1e-14,
        );
        // MI of a variable with itself is its entropy; with a constant, zero.
        let mi = Cmi::new(a.clone(), None);
        close(
            mi.estimate(&a, Bias::None, false).value,
            entropy(&a, Bias::None, false).value,
            1e-14,
        );
        close(
            mi.estimate(&ids(&[0; 12]), Bias::None, false).value,
            0.0,
            1e-15,
        );
        let h = cond_entropy(&a, &a, Bias::None, true);
        assert_eq!(h.value, 0.0);
    }
}

//! `embedding_geometry` and `gromov_wasserstein` (`docs/measures.md` M11): the geometry of
//! a model's token embeddings and how much of the next token its context vectors capture.
//!
//! - **Vectorization efficiency** (Barber & Agakov 2003): with the model's softmax as the
//!   decoder q, `I(X_{t+1}; h_t) ≥ H(X_{t+1}) + E ln q(X_{t+1} | h_t) = H − CE`; the metric
//!   reports `(H − CE)/H`, H being the plug-in entropy of the text's scored tokens.
//! - **Sphere statistics**: row norms; anisotropy, the mean cosine over distinct pairs of
//!   rows, `(‖Σ u_i‖² − n) / (n(n − 1))` for unit rows u_i; effective rank (Roy & Vetterli
//!   2007), `exp(H(σ/Σσ))` of the singular values σ of the row matrix (uncentred).
//! - **Johnson–Lindenstrauss dimension** for n = |V| points and distortion ε:
//!   `⌊4 ln n / (ε²/2 − ε³/3)⌋` (scikit-learn's `johnson_lindenstrauss_min_dim`).
//! - **PMI geometry** (Levy & Goldberg 2014): the Pearson correlation between `⟨e_w, e_c⟩`
//!   and the text's PMI `ln(n(w,c) N / (n(w) n(c)))` over the distinct token pairs that
//!   co-occur within `window` positions.

#[cfg(test)]
mod crosscheck;
pub mod gw;
pub mod linalg;
pub mod rows;

use crate::streams::rng::Rng;
use rows::{cloud_rows, Cloud};
use serde_json::json;
use std::collections::BTreeMap;
use tokit_sdk::{bail, Metric, MetricInput, MetricOutput, Result, Unit};

/// scikit-learn's `johnson_lindenstrauss_min_dim(n, eps)`: `⌊4 ln n / (ε²/2 − ε³/3)⌋`.
pub fn jl_min_dim(n: f64, eps: f64) -> u64 {
    (4.0 * n.ln() / (eps * eps / 2.0 - eps * eps * eps / 3.0)).floor() as u64
}

/// The Barber–Agakov bound `H(X) + Σ p(x, h) ln q(x | h)` (nats) of a joint law
/// `joint[x][h]` and a decoder `decoder[h][x]`.
pub fn barber_agakov(joint: &[Vec<f64>], decoder: &[Vec<f64>]) -> f64 {
    let h_x: f64 = joint
        .iter()
        .map(|row| row.iter().sum::<f64>())
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    let ell: f64 = joint
        .iter()
        .enumerate()
        .flat_map(|(x, row)| row.iter().enumerate().map(move |(h, &p)| (x, h, p)))
        .filter(|&(_, _, p)| p > 0.0)
        .map(|(x, h, p)| p * decoder[h][x].ln())
        .sum();
    h_x + ell
}

/// Effective rank `exp(H(σ/Σσ))` from the eigenvalues of the Gram matrix (σ = √λ).
pub fn effective_rank(gram_eigenvalues: &[f64]) -> f64 {
    let sv: Vec<f64> = gram_eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .collect();
    let total: f64 = sv.iter().sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    let h: f64 = sv
        .iter()
        .map(|s| s / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    h.exp()
}

/// Singular values (descending) of a cloud's row matrix, through its d × d Gram matrix.
pub fn singular_values(c: &Cloud) -> Vec<f64> {
    let mut g = linalg::gram(&c.data, c.n, c.d);
    linalg::sym_eigenvalues(&mut g, c.d)
        .into_iter()
        .map(|l| l.max(0.0).sqrt())
        .collect()
}

/// Row norms and the mean cosine over distinct pairs of the non-zero rows (a zero row has
/// no direction; NaN with fewer than two non-zero rows).
pub fn norms_and_anisotropy(c: &Cloud) -> (Vec<f64>, f64) {
    let norms: Vec<f64> = c
        .data
        .chunks(c.d)
        .map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    let nonzero = norms.iter().filter(|&&x| x > 0.0).count();
    if nonzero < 2 {
        return (norms, f64::NAN);
    }
    let mut sum = vec![0.0; c.d];
    for (r, &nr) in c.data.chunks(c.d).zip(&norms) {
        if nr > 0.0 {
            sum.iter_mut().zip(r).for_each(|(s, x)| *s += x / nr);
        }
    }
    let n = nonzero as f64;
    let s2: f64 = sum.iter().map(|x| x * x).sum();
    (norms, (s2 - n) / (n * (n - 1.0)))
}

/// Pearson correlation of x and y (NaN when either is constant or fewer than 2 points).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// PMI of the distinct unordered token pairs (w ≠ c) co-occurring within `window`
/// positions: `ln(n(w,c) N / (n(w) n(c)))`, N the number of co-occurrences, n(w) the
/// co-occurrences that involve w (symmetric counts).
pub fn window_pmi(tokens: &[u32], window: usize) -> BTreeMap<(u32, u32), f64> {
    let mut pair: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    let mut single: BTreeMap<u32, f64> = BTreeMap::new();
    let mut total = 0.0;
    for i in 0..tokens.len() {
        for j in i + 1..tokens.len().min(i + window + 1) {
            let (a, b) = (tokens[i], tokens[j]);
            *pair.entry((a.min(b), a.max(b))).or_default() += 1.0;
            *single.entry(a).or_default() += 1.0;
            *single.entry(b).or_default() += 1.0;
            total += 1.0;
        }
    }
    // Over ordered pairs the joint is n(w,c)/(2N) per order and the marginal n(w)/(2N).
    pair.into_iter()
        .filter(|((a, b), _)| a != b)
        .map(|((a, b), k)| {
            let pmi = (k / (2.0 * total)).ln()
                - (single[&a] / (2.0 * total)).ln()
                - (single[&b] / (2.0 * total)).ln();
            ((a, b), pmi)
        })
        .collect()
}

/// The `embedding_geometry` metric.
pub struct EmbeddingGeometry;

tokit_sdk::params! {
    pub struct Params {
        /// distortion ε of the Johnson–Lindenstrauss dimension for n = |V|
        eps: f64 = 0.1,
        /// embedding rows used for norms, anisotropy and effective rank (0: every row)
        max_rows: usize = 0,
        /// seed of the row subsample
        seed: u64 = 0,
        /// co-occurrence window of the PMI pairs (tokens apart, at most)
        window: usize = 2,
    }
}

impl Metric for EmbeddingGeometry {
    const NAME: &'static str = "embedding_geometry";
    const DESCRIPTION: &'static str = "embedding geometry (M11): the Barber–Agakov vectorization efficiency (H − CE)/H on the text; row norms, anisotropy (mean cosine) and effective rank (value) of the token embeddings (hook_embed, or an input tensor `embedding` [V, d]); the Johnson–Lindenstrauss dimension for n = |V| (scalar jl_min_dim, scikit-learn's convention); the correlation of embedding inner products with the text's PMI";
    const UNIT: Unit = Unit::Dimensionless;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        if !(p.eps > 0.0 && p.eps < 1.0) {
            bail!("embedding_geometry: `eps` must be in (0, 1), got {}", p.eps);
        }
        if p.window == 0 {
            bail!("embedding_geometry: `window` must be positive");
        }
        let given = input.tensors.iter().find(|(n, _)| n == "embedding");
        let info = match &input.model {
            Some(m) => Some(m.info()?),
            None => None,
        };
        let full = match given {
            Some((_, t)) => Some(Cloud::from_tensor(t, "embedding")?),
            None => None,
        };
        let vocab = match (&full, &info) {
            (Some(c), _) => c.n,
            (None, Some(i)) => i.vocab_size,
            (None, None) => {
                bail!("embedding_geometry: needs a `model` or an input tensor `embedding` [V, d]")
            }
        };
        let ids = if p.max_rows == 0 || p.max_rows >= vocab {
            (0..vocab).collect()
        } else {
            gw::subsample(vocab, p.max_rows, &mut Rng::new(p.seed))
        };
        let rows = match &full {
            Some(c) => c.select(&ids),
            None => cloud_rows(input.model()?, &ids, Self::NAME)?,
        };
        let sv = singular_values(&rows);
        let erank = effective_rank(&sv.iter().map(|s| s * s).collect::<Vec<_>>());
        let (norms, aniso) = norms_and_anisotropy(&rows);
        let n = norms.len() as f64;
        let mean_norm = norms.iter().sum::<f64>() / n;
        let sd_norm = (norms.iter().map(|x| (x - mean_norm).powi(2)).sum::<f64>() / n).sqrt();
        let jl = jl_min_dim(vocab as f64, p.eps);
        let mut params = input.params.clone();
        params.insert("eps".into(), json!(p.eps));
        params.insert("max_rows".into(), json!(p.max_rows));
        params.insert("seed".into(), json!(p.seed));
        params.insert("window".into(), json!(p.window));
        let mut out = MetricOutput {
            value: Some(erank),
            unit: Unit::Dimensionless,
            estimator: "exact on the embedding rows; plug-in on the text".into(),
            params,
            ..Default::default()
        }
        .scalar("effective_rank", erank)
        .scalar("dimension", rows.d as f64)
        .scalar("rows", n)
        .scalar("anisotropy", aniso)
        .scalar(
            "zero_rows",
            norms.iter().filter(|&&x| x == 0.0).count() as f64,
        )
        .scalar("mean_norm", mean_norm)
        .scalar("sd_norm", sd_norm)
        .scalar(
            "min_norm",
            norms.iter().copied().fold(f64::INFINITY, f64::min),
        )
        .scalar(
            "max_norm",
            norms.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
        .scalar("jl_min_dim", jl as f64)
        .scalar("jl_ratio", rows.d as f64 / jl as f64);
        let tokens = &input.tokens;
        // Barber–Agakov efficiency: needs a causal model and text.
        if let (Some(model), true) = (&input.model, tokens.len() >= 2) {
            if info.as_ref().is_some_and(|i| i.causal) {
                let v = info.as_ref().map_or(0, |i| i.vocab_size);
                let logits = model.logits(tokens)?.to_vec()?;
                if logits.len() != tokens.len() * v {
                    bail!(
                        "embedding_geometry: the model returned {} logits for [{}, {v}]",
                        logits.len(),
                        tokens.len()
                    );
                }
                let mut ce = 0.0;
                let mut counts: BTreeMap<u32, f64> = BTreeMap::new();
                for t in 1..tokens.len() {
                    ce += crate::thermo::surprisal(
                        &logits[(t - 1) * v..t * v],
                        tokens[t] as usize,
                        1.0,
                    )
                    .map_err(|e| tokit_sdk::Error::msg(format!("embedding_geometry: {e}")))?;
                    *counts.entry(tokens[t]).or_default() += 1.0;
                }
                let k = (tokens.len() - 1) as f64;
                ce /= k;
                let h: f64 = counts.values().map(|c| c / k).map(|q| -q * q.ln()).sum();
                out = out
                    .scalar("unigram_entropy", h)
                    .scalar("cross_entropy", ce)
                    .scalar("barber_agakov_bound", h - ce)
                    .scalar("vectorization_efficiency", (h - ce) / h);
            } else {
                out.notes
                    .push("vectorization efficiency left out: the model is not causal".into());
            }
        }
        // PMI geometry over the text's co-occurring pairs.
        if tokens.len() >= 2 {
            let pmi = window_pmi(tokens, p.window);
            let pairs: Vec<((u32, u32), f64)> = pmi
                .into_iter()
                .filter(|((a, b), _)| (*a as usize) < vocab && (*b as usize) < vocab)
                .collect();
            if pairs.len() >= 2 {
                let mut need: Vec<usize> = pairs
                    .iter()
                    .flat_map(|((a, b), _)| [*a as usize, *b as usize])
                    .collect();
                need.sort_unstable();
                need.dedup();
                let e = match &full {
                    Some(c) => c.select(&need),
                    None => cloud_rows(input.model()?, &need, Self::NAME)?,
                };
                let row = |t: u32| {
                    let i = need.binary_search(&(t as usize)).unwrap_or(0);
                    &e.data[i * e.d..(i + 1) * e.d]
                };
                let (ip, pm): (Vec<f64>, Vec<f64>) = pairs
                    .iter()
                    .map(|((a, b), v)| {
                        (
                            row(*a).iter().zip(row(*b)).map(|(x, y)| x * y).sum::<f64>(),
                            *v,
                        )
                    })
                    .unzip();
                out = out
                    .scalar("pmi_correlation", pearson(&ip, &pm))
                    .scalar("pmi_pairs", pairs.len() as f64);
            }
        }
        out.notes.push("effective rank of the uncentred row matrix (Roy & Vetterli); anisotropy = mean cosine over distinct pairs of rows; vectorization_efficiency = (H − CE)/H with H the plug-in entropy of the scored tokens, in nats; pmi_correlation: Pearson over the distinct pairs co-occurring within `window`".into());
        let sv32: Vec<f32> = sv.iter().map(|&x| x as f32).collect();
        let n32: Vec<f32> = norms.iter().map(|&x| x as f32).collect();
        out.tensor("singular_values", &sv32, &[sv32.len()])?
            .tensor("norms", &n32, &[n32.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T24 and the other listed pairs (scikit-learn's convention).
    #[test]
    fn t24_jl_min_dim() {
        for (n, eps, want) in [
            (1e6, 0.5, 663),
            (1e6, 0.1, 11841),
            (1e6, 0.01, 1112658),
            (1e4, 0.1, 7894),
            (1e5, 0.1, 9868),
            (50257.0, 0.1, 9278),
            (151936.0, 0.1, 10226),
        ] {
            assert_eq!(jl_min_dim(n, eps), want, "({n}, {eps})");
        }
    }

    /// Barber–Agakov is tight for the exact posterior: X a uniform bit, h = X ⊕ Z with
    /// Z ~ Bernoulli(0.1): bound = 1 − h(0.1) = 0.5310044 bits = I(X; h).
    #[test]
    fn barber_agakov_is_tight_for_the_posterior() {
        let e = 0.1;
        let joint = vec![
            vec![0.5 * (1.0 - e), 0.5 * e],
            vec![0.5 * e, 0.5 * (1.0 - e)],
        ];
        let posterior = vec![vec![1.0 - e, e], vec![e, 1.0 - e]];
        let bits = barber_agakov(&joint, &posterior) / std::f64::consts::LN_2;
        assert!((bits - 0.5310044).abs() < 5e-8, "{bits}");
        // A worse decoder gives a smaller bound.
        let flat = vec![vec![0.6, 0.4], vec![0.4, 0.6]];
        assert!(barber_agakov(&joint, &flat) / std::f64::consts::LN_2 < bits - 0.1);
    }

    #[test]
    fn effective_rank_of_identity_is_d_and_of_rank_one_is_one() {
        for d in [1, 3, 16] {
            let mut data = vec![0.0; d * d];
            (0..d).for_each(|i| data[i * d + i] = 1.0);
            let c = Cloud { n: d, d, data };
            let sv = singular_values(&c);
            let er = effective_rank(&sv.iter().map(|s| s * s).collect::<Vec<_>>());
            assert!((er - d as f64).abs() < 1e-10, "d = {d}: {er}");
        }
        let c = Cloud {
            n: 3,
            d: 2,
            data: vec![1.0, 2.0, 2.0, 4.0, -1.0, -2.0],
        };
        let sv = singular_values(&c);
        assert!((effective_rank(&sv.iter().map(|s| s * s).collect::<Vec<_>>()) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn anisotropy_is_the_mean_pairwise_cosine() {
        let mut rng = Rng::new(8);
        let (n, d) = (30, 4);
        let data: Vec<f64> = (0..n * d).map(|_| rng.normal() + 0.5).collect();
        let c = Cloud {
            n,
            d,
            data: data.clone(),
        };
        let (norms, a) = norms_and_anisotropy(&c);
        let mut sum = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let dot: f64 = (0..d).map(|k| data[i * d + k] * data[j * d + k]).sum();
                    sum += dot / (norms[i] * norms[j]);
                }
            }
        }
        assert!((a - sum / (n * (n - 1)) as f64).abs() < 1e-12);
        // Identical directions: anisotropy 1, the zero row left out.
        let same = Cloud {
            n: 4,
            d: 2,
            data: vec![1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 0.5, 0.5],
        };
        assert!((norms_and_anisotropy(&same).1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn window_pmi_by_hand() {
        // Pairs within 1 of each other in 1 2 1 3: (1,2), (1,2), (1,3); N = 3,
        // n(1) = 3, n(2) = 2, n(3) = 1 → PMI(1,2) = ln((2/6)/((3/6)(2/6))) = ln 2.
        let pmi = window_pmi(&[1, 2, 1, 3], 1);
        assert!((pmi[&(1, 2)] - 2f64.ln()).abs() < 1e-12);
        assert!((pmi[&(1, 3)] - 2f64.ln()).abs() < 1e-12);
        assert_eq!(pmi.len(), 2);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.9979487).abs() < 1e-6);
    }
}

//! The `ssm_memory` metric (`docs/measures.md` M12, M13): how far a Mamba2 model remembers.
//!
//! From one forward pass it reads every layer's decays `a_t` and, for one layer, `Δ_t`,
//! `B_t`, `C_t` and the states `S_t`, and reports:
//!
//! - the effective memory length `1 / mean_t(−ln a_t)` tokens per layer and head (constant
//!   `a` gives `1 / (−ln a)`: 9.4912 tokens for `a = 0.9`);
//! - on a window of positions, the memory kernel `κ(t, s) = Π_{k=s+1}^{t} a_k` and the SSD
//!   mixing matrix `M_ts = (C_t · B_s) Δ_s κ(t, s)` (`s ≤ t`, else 0) per head: `y = M x`
//!   with `x` the convolution output, Mamba2's `B̄_s = Δ_s B_s`; the `D` skip is left out;
//! - per position, the state's Frobenius norm over all heads and its effective rank
//!   (Roy & Vetterli: `exp` of the entropy of the normalised singular values), averaged
//!   over heads, and the mean decay.

use tokit_sdk::{bail, Error, ForwardRequest, Metric, MetricInput, MetricOutput, Result, Unit};

pub struct SsmMemory;

/// `1 / mean(−ln a)`: the effective memory length, in tokens, of decays `a`.
pub fn memory_length(a: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = a
        .into_iter()
        .fold((0.0, 0usize), |(s, n), a| (s - a.ln(), n + 1));
    n as f64 / sum
}

/// `κ(t, s) = Π_{k=s+1}^{t} a_k` for `s ≤ t` (0 above the diagonal), `[W, W]` row-major,
/// from the decays `a` of the window's positions.
pub fn kernel(a: &[f64]) -> Vec<f64> {
    let w = a.len();
    let mut k = vec![0.0; w * w];
    for t in 0..w {
        let mut prod = 1.0;
        for s in (0..=t).rev() {
            k[t * w + s] = prod;
            prod *= a[s];
        }
    }
    k
}

/// Eigenvalues of a symmetric `[n, n]` matrix by cyclic Jacobi rotations (hand-written:
/// the matrices are tiny, head_dim × head_dim, and a linear-algebra crate is not worth it).
fn sym_eigenvalues(mut m: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i * n + i] * m[i * n + i]).sum::<f64>();
        if off <= 1e-24 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
            }
        }
    }
    (0..n).map(|i| m[i * n + i]).collect()
}

/// Effective rank of a `[rows, cols]` matrix: `exp(−Σ p_i ln p_i)`, `p = σ / Σσ`
/// (0 for the zero matrix).
pub fn effective_rank(x: &[f32], rows: usize, cols: usize) -> f64 {
    // Singular values² are the eigenvalues of the smaller Gram matrix.
    let (n, gram) = if rows <= cols {
        let g = (0..rows * rows)
            .map(|ij| {
                let (i, j) = (ij / rows, ij % rows);
                (0..cols)
                    .map(|k| x[i * cols + k] as f64 * x[j * cols + k] as f64)
                    .sum()
            })
            .collect();
        (rows, g)
    } else {
        let g = (0..cols * cols)
            .map(|ij| {
                let (i, j) = (ij / cols, ij % cols);
                (0..rows)
                    .map(|k| x[k * cols + i] as f64 * x[k * cols + j] as f64)
                    .sum()
            })
            .collect();
        (cols, g)
    };
    let sigma: Vec<f64> = sym_eigenvalues(gram, n)
        .into_iter()
        .map(|e| e.max(0.0).sqrt())
        .collect();
    let total: f64 = sigma.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    let h: f64 = sigma
        .iter()
        .filter(|&&s| s > 0.0)
        .map(|&s| -(s / total) * (s / total).ln())
        .sum();
    h.exp()
}

tokit_sdk::params! {
    pub struct Params {
        /// layer of the kernel, mixing matrix and state measures
        layer: usize = 0,
        /// first position of the window for κ and M
        window_start: usize = 0,
        /// window length for κ and M (clipped to the text)
        window: usize = 32,
    }
}

impl Metric for SsmMemory {
    const NAME: &'static str = "ssm_memory";
    const DESCRIPTION: &'static str = "Mamba2 memory (M12): effective memory length 1/mean(−ln a_t) per layer and head \
                          (value: the chosen layer's), memory kernel κ(t,s) and SSD mixing matrix M_ts on a \
                          window, state norm, effective rank and mean decay per position";
    const UNIT: Unit = Unit::Tokens;
    const NEEDS_MODEL: bool = true;
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        let model = input.model()?;
        let info = model.info()?;
        if info.arch != "mamba2" {
            bail!(
                "ssm_memory: needs a mamba2 model, got a {} model",
                info.arch
            );
        }
        let tokens = input.tokens_at_least(1)?;
        let t = tokens.len();
        let layer = p.layer;
        if layer >= info.n_layers {
            bail!(
                "ssm_memory: parameter `layer` = {layer}, but the model has {} layers",
                info.n_layers
            );
        }
        let w0 = p.window_start;
        if w0 >= t {
            bail!("ssm_memory: parameter `window_start` = {w0} is beyond the {t} tokens");
        }
        let w = p.window.min(t - w0).max(1);
        let x = &info.extra;
        let get = |k: &str| {
            x[k].as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::msg(format!("ssm_memory: model info lacks `{k}`")))
        };
        let (h, p, n, g) = (
            get("n_heads")?,
            get("head_dim")?,
            get("state_size")?,
            get("n_groups")?,
        );
        let name = |i: usize, s: &str| format!("blocks.{i}.ssm.{s}");
        let mut capture = vec!["blocks.*.ssm.hook_decay".to_string()];
        capture.extend(["hook_dt", "hook_B", "hook_C", "hook_state"].map(|s| name(layer, s)));
        let req = ForwardRequest {
            capture,
            ..Default::default()
        };
        let mut out = model.forward(tokens, &req)?;
        let hooks = out
            .pop()
            .ok_or_else(|| Error::msg("ssm_memory: the forward pass returned nothing"))?;
        let data = |k: &str| -> Result<Vec<f32>> {
            hooks
                .get(k)
                .ok_or_else(|| Error::msg(format!("ssm_memory: hook `{k}` was not captured")))?
                .to_vec()
        };

        // Memory length per layer and head.
        let mut lengths = vec![0f32; info.n_layers * h];
        let mut result = MetricOutput {
            unit: Unit::Tokens,
            estimator: "exact (one forward pass)".into(),
            params: input.params.clone(),
            ..Default::default()
        };
        let mut decays = vec![];
        for i in 0..info.n_layers {
            let a = data(&name(i, "hook_decay"))?;
            for hd in 0..h {
                lengths[i * h + hd] = memory_length((0..t).map(|s| a[s * h + hd] as f64)) as f32;
            }
            let all = memory_length(a.iter().map(|&v| v as f64));
            result
                .scalars
                .insert(format!("memory_length_layer{i}"), all);
            if i == layer {
                result.value = Some(all);
                decays = a;
            }
        }
        let (dt, b, c, states) = (
            data(&name(layer, "hook_dt"))?,
            data(&name(layer, "hook_B"))?,
            data(&name(layer, "hook_C"))?,
            data(&name(layer, "hook_state"))?,
        );

        // Kernel and mixing matrix on the window, per head.
        let mut kappa = vec![0f32; h * w * w];
        let mut mixing = vec![0f32; h * w * w];
        for hd in 0..h {
            let gr = hd / (h / g);
            let a: Vec<f64> = (w0..w0 + w).map(|s| decays[s * h + hd] as f64).collect();
            let k = kernel(&a);
            for ti in 0..w {
                for si in 0..=ti {
                    let (tt, ss) = (w0 + ti, w0 + si);
                    let cb: f64 = (0..n)
                        .map(|j| c[(tt * g + gr) * n + j] as f64 * b[(ss * g + gr) * n + j] as f64)
                        .sum();
                    let idx = (hd * w + ti) * w + si;
                    kappa[idx] = k[ti * w + si] as f32;
                    mixing[idx] = (cb * dt[ss * h + hd] as f64 * k[ti * w + si]) as f32;
                }
            }
        }

        // Per-position state measures.
        let size = p * n;
        let mut norm = vec![0f32; t];
        let mut rank = vec![0f32; t];
        let mut decay_mean = vec![0f32; t];
        for s in 0..t {
            let mut sq = 0f64;
            let mut r = 0f64;
            for hd in 0..h {
                let st = &states[(s * h + hd) * size..(s * h + hd + 1) * size];
                sq += st.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
                r += effective_rank(st, p, n);
            }
            norm[s] = sq.sqrt() as f32;
            rank[s] = (r / h as f64) as f32;
            decay_mean[s] =
                ((0..h).map(|hd| decays[s * h + hd] as f64).sum::<f64>() / h as f64) as f32;
        }
        result = result
            .tensor("state_norm", &norm, &[t])?
            .tensor("state_effective_rank", &rank, &[t])?
            .tensor("decay_mean", &decay_mean, &[t])?
            .tensor("memory_length", &lengths, &[info.n_layers, h])?
            .tensor("kernel", &kappa, &[h, w, w])?
            .tensor("mixing", &mixing, &[h, w, w])?;
        result.notes.push(format!(
            "layer {layer}; kernel and mixing on positions {w0}..{} as [head, t, s]; memory_length is [layer, head]",
            w0 + w
        ));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_decay_gives_the_closed_forms() {
        // `docs/measures.md` T25: a = 0.9 → 1 / (−ln 0.9) = 9.4912 tokens.
        let l = memory_length(std::iter::repeat_n(0.9, 50));
        assert!((l - 9.4912).abs() < 5e-5, "{l}");
        assert!((l - 1.0 / -(0.9f64.ln())).abs() < 1e-12);
        // κ(t, s) = a^{t−s} below the diagonal, 0 above.
        let k = kernel(&[0.9; 6]);
        for t in 0..6 {
            for s in 0..6 {
                let want = if s <= t {
                    0.9f64.powi((t - s) as i32)
                } else {
                    0.0
                };
                assert!((k[t * 6 + s] - want).abs() < 1e-12);
            }
        }
        // a = 0: memoryless, only the diagonal survives.
        let k = kernel(&[0.0; 4]);
        for t in 0..4 {
            for s in 0..4 {
                assert_eq!(k[t * 4 + s], if s == t { 1.0 } else { 0.0 });
            }
        }
    }

    #[test]
    fn effective_rank_of_known_matrices() {
        // Identity 3×3: three equal singular values.
        let eye = [1., 0., 0., 0., 1., 0., 0., 0., 1.];
        assert!((effective_rank(&eye, 3, 3) - 3.0).abs() < 1e-9);
        // Rank one (outer product), wide and tall.
        let r1: Vec<f32> = (0..2)
            .flat_map(|i| (0..5).map(move |j| (i + 1) as f32 * (j as f32 - 2.0)))
            .collect();
        assert!((effective_rank(&r1, 2, 5) - 1.0).abs() < 1e-6);
        let tall: Vec<f32> = (0..5)
            .flat_map(|i| (0..2).map(move |j| (i as f32 - 2.0) * (j + 1) as f32))
            .collect();
        assert!((effective_rank(&tall, 5, 2) - 1.0).abs() < 1e-6);
        // Singular values 3 and 1: p = (3/4, 1/4).
        let d = [3., 0., 0., 1.];
        let want = (-(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln())).exp();
        assert!((effective_rank(&d, 2, 2) - want).abs() < 1e-9);
        // A rotated one: same singular values.
        let (c, s) = (0.6f32, 0.8f32);
        let rot = [3. * c, -s, 3. * s, c];
        assert!((effective_rank(&rot, 2, 2) - want).abs() < 1e-6);
        assert_eq!(effective_rank(&[0.0; 4], 2, 2), 0.0);
    }
}

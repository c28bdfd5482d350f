//! Embedding rows for the geometry metrics: from a model (a forward pass over token ids,
//! capturing `hook_embed`, which every architecture exposes as its token-embedding lookup)
//! or from an input tensor `[n, d]`.

use tokit_sdk::{bail, Error, ForwardRequest, ModelRef, Result, Tensor, Variant};

/// Points in f64, row-major.
#[derive(Clone, Debug)]
pub struct Cloud {
    pub n: usize,
    pub d: usize,
    pub data: Vec<f64>,
}

impl Cloud {
    /// A `[n, d]` tensor as a cloud.
    pub fn from_tensor(t: &Tensor, name: &str) -> Result<Cloud> {
        let shape = t.shape()?;
        let [n, d] = shape[..] else {
            bail!("input tensor `{name}` must be [n, d], got {shape:?}");
        };
        if n == 0 || d == 0 {
            bail!("input tensor `{name}` is empty ({shape:?})");
        }
        let data: Vec<f64> = t.to_vec()?.into_iter().map(f64::from).collect();
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!(
                "input tensor `{name}` has a non-finite value at row {}",
                i / d
            );
        }
        Ok(Cloud { n, d, data })
    }

    /// The rows `ids`, in that order.
    pub fn select(&self, ids: &[usize]) -> Cloud {
        let d = self.d;
        Cloud {
            n: ids.len(),
            d,
            data: ids
                .iter()
                .flat_map(|&i| self.data[i * d..(i + 1) * d].iter().copied())
                .collect(),
        }
    }
}

/// Tokens per forward call when reading embedding rows.
const CHUNK: usize = 512;

/// The embedding rows of token ids `ids` (indices below the vocabulary size).
pub fn cloud_rows(model: &ModelRef, ids: &[usize], metric: &str) -> Result<Cloud> {
    let info = model.info()?;
    if !info.hooks.iter().any(|h| h == "hook_embed") {
        bail!(
            "{metric}: the `{}` model exposes no `hook_embed`; pass the rows as an input tensor",
            info.arch
        );
    }
    let chunk = info.context_length.unwrap_or(CHUNK).clamp(1, CHUNK);
    let request = ForwardRequest {
        variants: vec![Variant::default()],
        capture: vec!["hook_embed".into()],
        ..Default::default()
    };
    let mut data = Vec::with_capacity(ids.len() * info.d_model);
    let mut d = 0;
    for (k, part) in ids.chunks(chunk).enumerate() {
        tokit_sdk::check_cancelled()?;
        let tokens: Vec<u32> = part.iter().map(|&i| i as u32).collect();
        let out = model.forward(&tokens, &request)?;
        let e = out
            .first()
            .and_then(|o| o.get("hook_embed"))
            .ok_or_else(|| Error::msg(format!("{metric}: the model did not return `hook_embed`")))?
            .to_vec()?;
        if e.is_empty() || e.len() % part.len() != 0 {
            bail!(
                "{metric}: `hook_embed` has {} values for {} tokens",
                e.len(),
                part.len()
            );
        }
        d = e.len() / part.len();
        data.extend(e.iter().map(|&x| x as f64));
        tokit_sdk::progress(
            ((k + 1) * chunk).min(ids.len()) as u64,
            ids.len() as u64,
            metric,
        );
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        bail!(
            "{metric}: embedding row of token {} is not finite",
            ids[i / d.max(1)]
        );
    }
    Ok(Cloud {
        n: ids.len(),
        d,
        data,
    })
}

//! Decode a host-op call from a plugin (`name`, inputs, ints, floats; layouts in
//! `tokit_sdk::ops`) and run it on the backend.

use anyhow::{anyhow, bail, ensure, Result};
use tokit_compute::{AttnMask, Backend, BinaryOp, ReduceOp, Tensor, UnaryOp};
use tokit_sdk::ops as op;

fn int(ints: &[i64], i: usize, name: &str, what: &str) -> Result<i64> {
    ints.get(i)
        .copied()
        .ok_or_else(|| anyhow!("op {name}: missing integer attribute {i} ({what})"))
}

fn float(floats: &[f64], i: usize, name: &str, what: &str) -> Result<f64> {
    floats
        .get(i)
        .copied()
        .ok_or_else(|| anyhow!("op {name}: missing float attribute {i} ({what})"))
}

fn count(inputs: &[Tensor], n: usize, name: &str) -> Result<()> {
    ensure!(
        inputs.len() == n,
        "op {name}: expected {n} input tensors, got {}",
        inputs.len()
    );
    Ok(())
}

fn usizes(v: &[i64], name: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| anyhow!("op {name}: negative index {x}")))
        .collect()
}

fn mask(ints: &[i64], name: &str) -> Result<AttnMask> {
    let has_keep = int(ints, 3, name, "has_key_keep")? != 0;
    Ok(AttnMask {
        causal: int(ints, 0, name, "causal")? != 0,
        q_offset: usize::try_from(int(ints, 1, name, "q_offset")?)
            .map_err(|_| anyhow!("op {name}: negative q_offset"))?,
        window: match int(ints, 2, name, "window")? {
            w if w < 0 => None,
            w => Some(w as usize),
        },
        key_keep: has_keep.then(|| ints[4..].iter().map(|&k| k != 0).collect()),
    })
}

/// Run op `name` on the backend.
pub fn run(
    b: &dyn Backend,
    name: &str,
    inputs: &[Tensor],
    ints: &[i64],
    floats: &[f64],
) -> Result<Tensor> {
    let binary = match name {
        op::MAXIMUM => Some(BinaryOp::Max),
        op::MINIMUM => Some(BinaryOp::Min),
        n if op::BINARY.contains(&n) => BinaryOp::from_name(n),
        _ => None,
    };
    if let Some(bop) = binary {
        count(inputs, 2, name)?;
        return b.binary(bop, &inputs[0], &inputs[1]);
    }
    if op::UNARY.contains(&name) {
        count(inputs, 1, name)?;
        let uop = UnaryOp::from_name(name)
            .ok_or_else(|| anyhow!("op {name}: not a unary op of this host"))?;
        return b.unary(uop, &inputs[0]);
    }
    if let Some(r) = name.strip_prefix("reduce_") {
        count(inputs, 1, name)?;
        let rop = ReduceOp::from_name(r).ok_or_else(|| anyhow!("unknown host op `{name}`"))?;
        return b.reduce(
            rop,
            &inputs[0],
            int(ints, 0, name, "axis")? as isize,
            int(ints, 1, name, "keepdim")? != 0,
        );
    }
    match name {
        op::MATMUL => {
            count(inputs, 2, name)?;
            b.matmul(&inputs[0], &inputs[1], int(ints, 0, name, "trans_a")? != 0, int(ints, 1, name, "trans_b")? != 0)
        }
        op::AFFINE => {
            count(inputs, 1, name)?;
            b.affine(&inputs[0], float(floats, 0, name, "scale")? as f32, float(floats, 1, name, "shift")? as f32)
        }
        op::SOFTMAX | op::LOG_SOFTMAX => {
            count(inputs, 1, name)?;
            let axis = int(ints, 0, name, "axis")? as isize;
            if name == op::SOFTMAX {
                b.softmax(&inputs[0], axis)
            } else {
                b.log_softmax(&inputs[0], axis)
            }
        }
        op::LAYER_NORM => {
            let has_w = int(ints, 0, name, "has_weight")? != 0;
            let has_b = int(ints, 1, name, "has_bias")? != 0;
            count(inputs, 1 + has_w as usize + has_b as usize, name)?;
            let w = has_w.then(|| &inputs[1]);
            let bias = has_b.then(|| &inputs[1 + has_w as usize]);
            b.layer_norm(&inputs[0], w, bias, float(floats, 0, name, "eps")? as f32)
        }
        op::RMS_NORM => {
            let has_w = int(ints, 0, name, "has_weight")? != 0;
            count(inputs, 1 + has_w as usize, name)?;
            b.rms_norm(&inputs[0], has_w.then(|| &inputs[1]), float(floats, 0, name, "eps")? as f32)
        }
        op::RMS_NORM_GATED => {
            let has_w = int(ints, 0, name, "has_weight")? != 0;
            count(inputs, 2 + has_w as usize, name)?;
            b.rms_norm_gated(
                &inputs[0],
                &inputs[1],
                has_w.then(|| &inputs[2]),
                float(floats, 0, name, "eps")? as f32,
                int(ints, 1, name, "norm_before_gate")? != 0,
            )
        }
        op::EMBEDDING => {
            count(inputs, 1, name)?;
            let ids: Vec<u32> =
                ints.iter().map(|&i| u32::try_from(i).map_err(|_| anyhow!("op {name}: bad token id {i}"))).collect::<Result<_>>()?;
            b.embedding(&inputs[0], &ids)
        }
        op::ROPE => {
            count(inputs, 1, name)?;
            let interleaved = int(ints, 0, name, "interleaved")? != 0;
            let positions = usizes(&ints[1..], name)?;
            let inv_freq: Vec<f32> = floats.iter().map(|&f| f as f32).collect();
            b.rope(&inputs[0], &positions, &inv_freq, interleaved)
        }
        op::ATTENTION => {
            count(inputs, 3, name)?;
            let m = mask(ints, name)?;
            b.attention(&inputs[0], &inputs[1], &inputs[2], &m, float(floats, 0, name, "scale")? as f32)
        }
        op::ATTENTION_SCORES => {
            count(inputs, 2, name)?;
            let m = mask(ints, name)?;
            let k = &inputs[1];
            let (hkv, tk) = match k.shape() {
                [h, t, _] => (*h, *t),
                s => bail!("op {name}: k must be [Hkv, Tk, dh], got {s:?}"),
            };
            // Scores do not depend on v; a one-column v keeps the kernel shared.
            let v = Tensor::zeros(vec![hkv, tk, 1]);
            let (_, scores, _) = b.attention_with_probs(&inputs[0], k, &v, &m, float(floats, 0, name, "scale")? as f32)?;
            Ok(scores)
        }
        op::RESHAPE => {
            count(inputs, 1, name)?;
            let shape: Vec<isize> = ints.iter().map(|&d| d as isize).collect();
            b.reshape(&inputs[0], &shape)
        }
        op::PERMUTE => {
            count(inputs, 1, name)?;
            b.permute(&inputs[0], &usizes(ints, name)?)
        }
        op::SLICE => {
            count(inputs, 1, name)?;
            let (start, end) = (int(ints, 1, name, "start")?, int(ints, 2, name, "end")?);
            ensure!(start >= 0 && end >= 0, "op {name}: negative range {start}..{end}");
            b.slice(&inputs[0], int(ints, 0, name, "axis")? as isize, start as usize, end as usize)
        }
        op::CONCAT => {
            ensure!(!inputs.is_empty(), "op {name}: needs at least one input");
            let parts: Vec<&Tensor> = inputs.iter().collect();
            b.concat(&parts, int(ints, 0, name, "axis")? as isize)
        }
        op::INDEX_SELECT => {
            count(inputs, 1, name)?;
            b.index_select(&inputs[0], int(ints, 0, name, "axis")? as isize, &usizes(&ints[1..], name)?)
        }
        op::CONV1D_CAUSAL => {
            let has_b = int(ints, 0, name, "has_bias")? != 0;
            let has_p = int(ints, 1, name, "has_prefix")? != 0;
            count(inputs, 2 + has_b as usize + has_p as usize, name)?;
            let bias = has_b.then(|| &inputs[2]);
            let prefix = has_p.then(|| &inputs[2 + has_b as usize]);
            b.conv1d_causal(&inputs[0], &inputs[1], bias, prefix)
        }
        op::SSD_SCAN => {
            let chunk = usize::try_from(int(ints, 0, name, "chunk")?)
                .map_err(|_| anyhow!("op {name}: negative chunk size"))?;
            let has_h0 = int(ints, 1, name, "has_h0")? != 0;
            count(inputs, 4 + has_h0 as usize, name)?;
            b.ssd_scan(&inputs[0], &inputs[1], &inputs[2], &inputs[3], has_h0.then(|| &inputs[4]), chunk)
        }
        op::SSM_STATES => {
            let has_h0 = int(ints, 0, name, "has_h0")? != 0;
            count(inputs, 3 + has_h0 as usize, name)?;
            b.ssm_states(&inputs[0], &inputs[1], &inputs[2], has_h0.then(|| &inputs[3]), &usizes(&ints[1..], name)?)
        }
        _ => bail!("unknown host op `{name}` (this tokit {} does not provide it; is the plugin newer than the engine?)", env!("CARGO_PKG_VERSION")),
    }
}

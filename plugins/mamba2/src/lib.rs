//! The `mamba2` architecture plugin: Hugging Face `Mamba2ForCausalLM` checkpoints, with the
//! recurrent state as a first-class object (hooks, caches, the `ssm_memory` metric).
//!
//! One block, top-down (per layer, `n` rows, `I = num_heads · head_dim`):
//!
//! ```text
//! u        = rms_norm(resid)                                       (norm)
//! z | xBC | dt_raw = u W_inᵀ                                        (in_proj)
//! x | B | C = silu(causal_depthwise_conv(xBC))                     (conv1d, kernel K)
//! Δ_t      = clamp(softplus(dt_raw + dt_bias), time_step_limit)
//! a_t      = exp(Δ_t A),  A = −exp(A_log)                           (decay, per head)
//! S_t      = a_t S_{t−1} + (Δ_t x_t) B_tᵀ,  y_t = S_t C_t + D x_t   (SSD, state [P, N])
//! out      = out_proj(gated_rms_norm(y, z))                          (norm groups = n_groups)
//! resid   += out
//! ```
//!
//! then `norm_f` and the (tied or untied) `lm_head`. The scan runs chunked (`chunk_size`,
//! any sequence length) through the host op `ssd_scan`; states come from `ssm_states`.
//!
//! Config quirks: `time_step_limit` may hold `{"__float__": "Infinity"}` (the host reads it
//! as infinity); `time_step_floor`/`time_step_min`/`time_step_max` only shape
//! initialisation and are ignored. Like transformers, the gated norm always gates before
//! normalising and always runs: the `norm_before_gate` and `rms_norm` fields that older
//! transformers wrote into configs (`true` by default, e.g. Mamba-Codestral) were never
//! read by its Mamba2, whose checkpoints were trained gate-first; `info().extra` records
//! them as ignored.
//!
//! # Hook points
//!
//! | hook | shape |
//! |---|---|
//! | `hook_embed` | `[T, d]` |
//! | `blocks.{i}.hook_resid_pre`, `blocks.{i}.hook_resid_post` | `[T, d]` |
//! | `blocks.{i}.ssm.hook_x` (conv output, before Δ) | `[T, H, P]` |
//! | `blocks.{i}.ssm.hook_B`, `blocks.{i}.ssm.hook_C` | `[T, G, N]` |
//! | `blocks.{i}.ssm.hook_dt` (Δ_t), `blocks.{i}.ssm.hook_decay` (a_t) | `[T, H]` |
//! | `blocks.{i}.ssm.hook_state` (S_t after each position; computed only when listened to) | `[T, H, P, N]` |
//! | `blocks.{i}.ssm.hook_y` (scan output with the D skip, before the gated norm) | `[T, H, P]` |
//! | `blocks.{i}.hook_lens_logits` (logit lens: `norm_f` and the head on `hook_resid_post`; only when captured) | `[T, V]` |
//! | `ln_final.hook_normalized` | `[T, d]` |
//! | `hook_logits` | `[T, V]` |
//!
//! Interventions take effect where they happen; one at `hook_state` changes the readout
//! `y_t = S_t C_t + D x_t` at each position (the recurrence has already run).
//!
//! # Position ablation
//!
//! `zero_input` (default): in every layer the ablated token's contribution is removed, its
//! row of the convolution input and its write `Δ_j x_j B_jᵀ` into the state are zero; the
//! state still decays by its `a_j`. `replace`: the token becomes `replace_with`. Positions
//! before the first ablated one are unchanged, bit for bit.
//!
//! # Reuse
//!
//! A layer's memory after position `t` is its last `K − 1` convolution inputs and its SSM
//! state ([`LayerState`]). Batched variants that nobody hooks run the clean sequence once,
//! keep each layer's state just before every variant's first ablated position, and compute
//! each variant from there on (memory: every layer's state at every distinct cut, held
//! through the pass). Generation steps (`last_only`) keep the state after the last
//! token and compute only the new tokens when the call extends the previous one; hooks then
//! see the new positions only. Calls whose hooks are listened to run each variant in full.

pub mod memory;

use serde_json::{json, Value};
use tokit_sdk::{
    bail, ArchSpec, Architecture, Error, ForwardCall, ModelInfo, ModelSource, Result, Tensor,
};

/// Ablation methods, the default first.
const METHODS: [&str; 2] = ["zero_input", "replace"];

/// Sizes read from config.json.
#[derive(Clone, Debug)]
pub struct Config {
    pub d: usize,
    pub layers: usize,
    pub vocab: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub state: usize,
    pub groups: usize,
    pub kernel: usize,
    pub chunk: usize,
    pub eps: f64,
    /// `(min, max)` of Δ.
    pub dt_limit: (f64, f64),
    pub inner: usize,
    pub conv_dim: usize,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        v => v.as_f64(),
    }
}

impl Config {
    fn read(src: &ModelSource) -> Result<Config> {
        let p = &src.path;
        let d = src.config_usize("hidden_size")?;
        let heads = src.config_usize("num_heads")?;
        let head_dim = src.config_usize("head_dim")?;
        let expand = src.opt_config_f64("expand")?.unwrap_or(2.0);
        let inner = heads * head_dim;
        if (expand * d as f64) != inner as f64 {
            bail!(
                "{p}/config.json: `num_heads` * `head_dim` = {heads} * {head_dim} = {inner} does not \
                 equal `expand` * `hidden_size` = {expand} * {d} = {} (the SSM heads must tile the \
                 expanded width)",
                expand * d as f64
            );
        }
        let groups = src.opt_config_usize("n_groups")?.unwrap_or(1);
        if groups == 0 || heads % groups != 0 {
            bail!("{p}/config.json: `n_groups` = {groups} does not divide `num_heads` = {heads}");
        }
        let act = src
            .opt_config_str("hidden_act")?
            .unwrap_or_else(|| "silu".into());
        if act != "silu" && act != "swish" {
            bail!("{p}/config.json: `hidden_act` = \"{act}\" is not supported (silu)");
        }
        let chunk = src.opt_config_usize("chunk_size")?.unwrap_or(256);
        if chunk == 0 {
            bail!("{p}/config.json: `chunk_size` must be at least 1");
        }
        let kernel = src.opt_config_usize("conv_kernel")?.unwrap_or(4);
        if kernel == 0 {
            bail!("{p}/config.json: `conv_kernel` must be at least 1");
        }
        let dt_limit = match src.config.get("time_step_limit") {
            None | Some(Value::Null) => (0.0, f64::INFINITY),
            Some(Value::Array(a)) if a.len() == 2 => match (number(&a[0]), number(&a[1])) {
                (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                _ => bail!("{p}/config.json: `time_step_limit` = {a:?}: expected [min, max] numbers with min ≤ max"),
            },
            Some(v) => bail!("{p}/config.json: `time_step_limit` = {v}: expected [min, max]"),
        };
        let state = src.opt_config_usize("state_size")?.unwrap_or(128);
        Ok(Config {
            d,
            layers: src.config_usize("num_hidden_layers")?,
            vocab: src.config_usize("vocab_size")?,
            heads,
            head_dim,
            state,
            groups,
            kernel,
            chunk,
            eps: src.opt_config_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
            dt_limit,
            inner,
            conv_dim: inner + 2 * groups * state,
        })
    }

    fn describe(&self) -> String {
        format!(
            "hidden_size {}, num_heads {}, head_dim {}, state_size {}, n_groups {}, conv_kernel {}",
            self.d, self.heads, self.head_dim, self.state, self.groups, self.kernel
        )
    }
}

/// A checkpoint's tensors by name, each checked against the shape the config implies.
struct Weights<'a> {
    src: &'a ModelSource,
    index: serde_json::Map<String, Value>,
    dims: String,
}

impl Weights<'_> {
    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let path = &self.src.path;
        if !self.has(name) {
            bail!(
                "{path}: missing weight `{name}` (expected shape {shape:?} from config.json: {})",
                self.dims
            );
        }
        let t = self
            .src
            .weight(name)
            .map_err(|e| e.context(format!("{path}: weight `{name}`")))?;
        let found = t.shape()?;
        if found != shape {
            bail!(
                "{path}: weight `{name}` has shape {found:?}, expected {shape:?} from config.json ({})",
                self.dims
            );
        }
        Ok(t)
    }

    fn opt(&self, name: &str, shape: &[usize], wanted: bool) -> Result<Option<Tensor>> {
        if wanted {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// One Mamba2 block's weights (`A` and `D` stored ready to broadcast).
struct Layer {
    norm: Tensor,
    in_proj: Tensor,
    in_bias: Option<Tensor>,
    conv_w: Tensor,
    conv_b: Option<Tensor>,
    dt_bias: Tensor,
    /// `A = −exp(A_log)`, `[H]`.
    a: Tensor,
    /// `D`, `[H, 1]`.
    d: Tensor,
    gate_norm: Tensor,
    out_proj: Tensor,
    out_bias: Option<Tensor>,
}

/// One layer's memory after some position: the last `K − 1` convolution inputs
/// `[K−1, conv_dim]` and the SSM state `[H, P, N]`.
#[derive(Clone)]
pub struct LayerState {
    conv: Tensor,
    ssm: Tensor,
}

/// The state after the last token of the previous `last_only` call.
struct Cache {
    tokens: Vec<u32>,
    states: Vec<LayerState>,
}

pub struct Mamba2 {
    cfg: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm_f: Tensor,
    head: Tensor,
    /// Group of each head, for reading `C` per head.
    head_group: Vec<usize>,
    info: ModelInfo,
    cache: Option<Cache>,
}

/// Hook point names in forward order.
pub fn hook_names(n_layers: usize) -> Vec<String> {
    let mut hooks = vec!["hook_embed".to_string()];
    for i in 0..n_layers {
        for h in [
            "hook_resid_pre",
            "ssm.hook_x",
            "ssm.hook_B",
            "ssm.hook_C",
            "ssm.hook_dt",
            "ssm.hook_decay",
            "ssm.hook_state",
            "ssm.hook_y",
            "hook_resid_post",
            "hook_lens_logits",
        ] {
            hooks.push(format!("blocks.{i}.{h}"));
        }
    }
    hooks.push("ln_final.hook_normalized".into());
    hooks.push("hook_logits".into());
    hooks
}

/// `x Wᵀ (+ b)` for `W` stored `[out, in]`.
fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul_t(w)?;
    match b {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

/// One pass over rows `start..start + n` of one variant: its hooks, the states it starts
/// from and the states it keeps.
struct Pass<'c, 'a> {
    /// `None`: nobody listens (batched reuse); hooks are skipped.
    call: Option<&'c mut ForwardCall<'a>>,
    variant: usize,
    /// An intervention returned a different tensor.
    changed: bool,
    /// Every layer's memory just before row 0 (`None`: the sequence starts here).
    init: Option<&'c [LayerState]>,
    /// `[n, 1]` 0/1 mask of rows whose input is kept (`zero_input`), if any is removed.
    keep: Option<Tensor>,
    /// Rows after which to keep every layer's memory.
    checkpoints: Vec<usize>,
    /// `saved[k][layer]`: the memory after `checkpoints[k]`.
    saved: Vec<Vec<LayerState>>,
    last_only: bool,
}

impl<'c, 'a> Pass<'c, 'a> {
    fn new(call: Option<&'c mut ForwardCall<'a>>, variant: usize, last_only: bool) -> Self {
        Pass {
            call,
            variant,
            changed: false,
            init: None,
            keep: None,
            checkpoints: vec![],
            saved: vec![],
            last_only,
        }
    }

    /// Keep every layer's memory after each of `rows`.
    fn keeping(mut self, rows: Vec<usize>) -> Self {
        self.saved = vec![vec![]; rows.len()];
        self.checkpoints = rows;
        self
    }

    fn active(&self, name: &str) -> bool {
        self.call.as_ref().is_some_and(|c| c.hook_active(name))
    }

    fn hook(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        if !self.active(name) {
            return Ok(t);
        }
        let Some(call) = self.call.as_deref_mut() else {
            return Ok(t);
        };
        let out = call.hook(self.variant, name, t.clone())?;
        if out.id() != t.id() {
            self.changed = true;
        }
        Ok(out)
    }
}

impl Mamba2 {
    /// Token embeddings → blocks → final norm → logits, for `tokens` at the pass's rows.
    fn run(&self, p: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
        let mut x = p.hook("hook_embed", Tensor::embedding(&self.embed, tokens)?)?;
        for i in 0..self.cfg.layers {
            tokit_sdk::check_cancelled()?;
            x = self.block(i, x, p)?;
            // The logit lens: this layer's residual stream through the final norm and the
            // head. Capture only (the forward goes on from `x`), computed only when captured.
            let lens = format!("blocks.{i}.hook_lens_logits");
            if p.active(&lens) {
                let h = x.rms_norm(Some(&self.norm_f), self.cfg.eps)?;
                p.hook(&lens, h.matmul_t(&self.head)?)?;
            }
        }
        if p.last_only {
            let n = tokens.len();
            x = x.slice(0, n - 1, n)?;
        }
        let x = p.hook(
            "ln_final.hook_normalized",
            x.rms_norm(Some(&self.norm_f), self.cfg.eps)?,
        )?;
        p.hook("hook_logits", x.matmul_t(&self.head)?)
    }

    fn block(&self, i: usize, resid: Tensor, p: &mut Pass) -> Result<Tensor> {
        let (c, l) = (&self.cfg, &self.layers[i]);
        let name = |h: &str| format!("blocks.{i}.{h}");
        let (heads, pd, gn) = (
            c.heads as isize,
            c.head_dim as isize,
            (c.groups * c.state) as isize,
        );
        let resid = p.hook(&name("hook_resid_pre"), resid)?;
        let n = resid.shape()?[0];
        let u = resid.rms_norm(Some(&l.norm), c.eps)?;

        // in_proj: gate z, conv input xBC, time step.
        let zxbcdt = linear(&u, &l.in_proj, l.in_bias.as_ref())?;
        let z = zxbcdt.slice(1, 0, c.inner)?;
        let mut xbc = zxbcdt.slice(1, c.inner, c.inner + c.conv_dim)?;
        let dt = zxbcdt.slice(1, c.inner + c.conv_dim, c.inner + c.conv_dim + c.heads)?;
        if let Some(keep) = &p.keep {
            xbc = xbc.mul(keep)?;
        }

        // Depthwise causal convolution, continuing from the memory before this pass.
        let init = p.init.map(|s| &s[i]);
        let conv = xbc
            .conv1d_causal(&l.conv_w, l.conv_b.as_ref(), init.map(|s| &s.conv))?
            .silu()?;
        let x = p.hook(
            &name("ssm.hook_x"),
            conv.slice(1, 0, c.inner)?.reshape(&[-1, heads, pd])?,
        )?;
        let groups = [-1, c.groups as isize, c.state as isize];
        let b = p.hook(
            &name("ssm.hook_B"),
            conv.slice(1, c.inner, c.inner + gn as usize)?
                .reshape(&groups)?,
        )?;
        let cm = p.hook(
            &name("ssm.hook_C"),
            conv.slice(1, c.inner + gn as usize, c.conv_dim)?
                .reshape(&groups)?,
        )?;

        // Discretisation: Δ_t and the decay a_t = exp(Δ_t A).
        let mut dt = dt.add(&l.dt_bias)?.softplus()?;
        let (lo, hi) = c.dt_limit;
        if lo > 0.0 {
            dt = dt.maximum(&Tensor::full(&[1], lo as f32)?)?;
        }
        if hi.is_finite() {
            dt = dt.minimum(&Tensor::full(&[1], hi as f32)?)?;
        }
        let dt = p.hook(&name("ssm.hook_dt"), dt)?;
        let a = p.hook(&name("ssm.hook_decay"), dt.mul(&l.a)?.exp()?)?;

        // The scan input Δ_t x_t; an ablated row writes nothing into the state.
        let mut xdt = x.mul(&dt.reshape(&[-1, heads, 1])?)?;
        if let Some(keep) = &p.keep {
            xdt = xdt.mul(&keep.reshape(&[-1, 1, 1])?)?;
        }
        let h0 = init.map(|s| &s.ssm);
        if !p.checkpoints.is_empty() {
            let states = Tensor::ssm_states(&xdt, &a, &b, h0, &p.checkpoints)?;
            // Convolution inputs: the memory before this pass, then this pass's rows.
            let k1 = c.kernel - 1;
            let padded = match init {
                Some(s) => Tensor::concat(&[&s.conv, &xbc], 0)?,
                None => Tensor::concat(&[&Tensor::full(&[k1, c.conv_dim], 0.0)?, &xbc], 0)?,
            };
            for (k, (&r, saved)) in p.checkpoints.iter().zip(&mut p.saved).enumerate() {
                let ssm = states
                    .slice(0, k, k + 1)?
                    .reshape(&[heads, pd, c.state as isize])?;
                // Inputs r + 1 − (K − 1) ..= r, in `padded` coordinates (shifted by K − 1).
                let conv = padded.slice(0, r + 1, r + 1 + k1)?;
                saved.push(LayerState { conv, ssm });
            }
        }
        let state_hook = name("ssm.hook_state");
        let y = if p.active(&state_hook) {
            let all: Vec<usize> = (0..n).collect();
            let states = p.hook(&state_hook, Tensor::ssm_states(&xdt, &a, &b, h0, &all)?)?;
            let ch =
                cm.index_select(1, &self.head_group)?
                    .reshape(&[-1, heads, c.state as isize, 1])?;
            states.matmul(&ch)?.reshape(&[-1, heads, pd])?
        } else {
            Tensor::ssd_scan(&xdt, &a, &b, &cm, h0, c.chunk)?
        };
        let y = p.hook(&name("ssm.hook_y"), y.add(&x.mul(&l.d)?)?)?;

        // Gated RMSNorm per group (gate first, as transformers), then out_proj.
        let y = y.reshape(&[-1, c.inner as isize])?;
        let normed = if c.groups == 1 {
            y.rms_norm_gated(&z, Some(&l.gate_norm), c.eps, false)?
        } else {
            let g = [-1, c.groups as isize, (c.inner / c.groups) as isize];
            y.reshape(&g)?
                .rms_norm_gated(&z.reshape(&g)?, None, c.eps, false)?
                .reshape(&[-1, c.inner as isize])?
                .mul(&l.gate_norm)?
        };
        let out = linear(&normed, &l.out_proj, l.out_bias.as_ref())?;
        p.hook(&name("hook_resid_post"), resid.add(&out)?)
    }
}

/// What one variant computes: its tokens, the positions whose input it removes and its
/// first position that differs from the clean pass (`T` when clean).
struct Plan {
    seq: Vec<u32>,
    zero: Vec<usize>,
    first: usize,
}

fn plans(call: &ForwardCall, info: &ModelInfo) -> Result<Vec<Plan>> {
    let tokens = call.tokens();
    let len = tokens.len();
    call.variants()
        .iter()
        .map(|v| {
            if v.is_clean() {
                return Ok(Plan {
                    seq: tokens.to_vec(),
                    zero: vec![],
                    first: len,
                });
            }
            if let Some(&j) = v.ablate.iter().find(|&&j| j >= len) {
                bail!("mamba2: ablated position {j} is beyond the {len} tokens");
            }
            let first = v.ablate.iter().copied().min().unwrap_or(len);
            match v.method_for(info)?.as_str() {
                "zero_input" => Ok(Plan {
                    seq: tokens.to_vec(),
                    zero: v.ablate.clone(),
                    first,
                }),
                "replace" => {
                    let Some(r) = v.replace_with else {
                        bail!(
                            "mamba2: ablation method `replace` needs `replace_with` (a token id)"
                        );
                    };
                    if r as usize >= info.vocab_size {
                        bail!(
                            "mamba2: replace_with token {r} is outside the vocabulary ({} tokens)",
                            info.vocab_size
                        );
                    }
                    let mut seq = tokens.to_vec();
                    for &j in &v.ablate {
                        seq[j] = r;
                    }
                    Ok(Plan {
                        seq,
                        zero: vec![],
                        first,
                    })
                }
                m => bail!("mamba2: unknown ablation method `{m}` (zero_input, replace)"),
            }
        })
        .collect()
}

/// `[n, 1]` mask of rows `start..start + n` that keep their input, or `None` if all do.
fn keep_mask(zero: &[usize], start: usize, n: usize) -> Result<Option<Tensor>> {
    if zero.is_empty() {
        return Ok(None);
    }
    let keep: Vec<f32> = (start..start + n)
        .map(|t| if zero.contains(&t) { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_slice(&keep, &[n, 1]).map(Some)
}

impl Mamba2 {
    /// Compute and emit every variant of `call`.
    fn forward_call(&mut self, call: &mut ForwardCall) -> Result<()> {
        let len = call.tokens().len();
        if len == 0 {
            bail!("mamba2: forward needs at least one token");
        }
        let plans = plans(call, &self.info)?;
        let last_only = call.last_only();
        let hooked = self.info.hooks.iter().any(|h| call.hook_active(h));
        if plans.len() == 1 && last_only && plans[0].first == len {
            return self.step(call, &plans[0]);
        }
        let reuse = plans.iter().any(|p| p.first > 0 && p.first < len);
        if plans.len() == 1 || hooked || !reuse {
            for (v, plan) in plans.iter().enumerate() {
                let mut p = Pass::new(Some(&mut *call), v, last_only);
                p.keep = keep_mask(&plan.zero, 0, len)?;
                let logits = self.run(&mut p, &plan.seq)?;
                call.emit(v, "logits", logits);
            }
            return Ok(());
        }
        self.batched(call, &plans, last_only)
    }

    /// Several variants nobody hooks: the clean sequence once, keeping every layer's memory
    /// just before each variant's first ablated position, then each variant from there.
    fn batched(&self, call: &mut ForwardCall, plans: &[Plan], last_only: bool) -> Result<()> {
        let len = call.tokens().len();
        let mut cuts: Vec<usize> = plans
            .iter()
            .filter(|p| p.first > 0 && p.first < len)
            .map(|p| p.first - 1)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut reference = Pass::new(None, 0, last_only).keeping(cuts.clone());
        let ref_logits = self.run(&mut reference, call.tokens())?;
        for (v, plan) in plans.iter().enumerate() {
            let logits = if plan.first == len {
                ref_logits.clone()
            } else if plan.first == 0 {
                let mut p = Pass::new(None, v, last_only);
                p.keep = keep_mask(&plan.zero, 0, len)?;
                self.run(&mut p, &plan.seq)?
            } else {
                let j = plan.first;
                let k = cuts
                    .binary_search(&(j - 1))
                    .map_err(|_| Error::msg("mamba2: missing checkpoint"))?;
                let mut p = Pass::new(None, v, last_only);
                p.init = Some(&reference.saved[k]);
                p.keep = keep_mask(&plan.zero, j, len - j)?;
                let own = self.run(&mut p, &plan.seq[j..])?;
                if last_only {
                    own
                } else {
                    Tensor::concat(&[&ref_logits.slice(0, 0, j)?, &own], 0)?
                }
            };
            call.emit(v, "logits", logits);
        }
        Ok(())
    }

    /// A generation step (`last_only`, one clean variant): continue from the cached memory
    /// when `tokens` extends the previous call's, else run in full; keep the memory after
    /// the last token.
    fn step(&mut self, call: &mut ForwardCall, plan: &Plan) -> Result<()> {
        let tokens = call.tokens().to_vec();
        let len = tokens.len();
        let cache = self.cache.take();
        let resume = cache
            .as_ref()
            .filter(|c| c.tokens.len() < len && tokens.starts_with(&c.tokens));
        if let Some(c) = resume {
            let start = c.tokens.len();
            let mut p = Pass::new(Some(&mut *call), 0, true).keeping(vec![len - start - 1]);
            p.init = Some(&c.states);
            let logits = self.run(&mut p, &tokens[start..])?;
            if !p.changed {
                let states = p.saved.pop().unwrap_or_default();
                self.cache = Some(Cache { tokens, states });
                call.emit(0, "logits", logits);
                return Ok(());
            }
            // An intervention changed something: recompute in full, interventions in line.
        }
        let mut p = Pass::new(Some(&mut *call), 0, true).keeping(vec![len - 1]);
        let logits = self.run(&mut p, &plan.seq)?;
        if !p.changed {
            let states = p.saved.pop().unwrap_or_default();
            self.cache = Some(Cache { tokens, states });
        }
        call.emit(0, "logits", logits);
        Ok(())
    }
}

impl Architecture for Mamba2 {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "mamba2".into(),
            model_types: vec!["mamba2".into(), "Mamba2ForCausalLM".into()],
            description: "Mamba2 state-space models (SSD), Hugging Face Mamba2ForCausalLM".into(),
        }
    }

    fn load(src: &ModelSource) -> Result<Self> {
        let c = Config::read(src)?;
        let w = Weights {
            src,
            index: src.weight_index()?,
            dims: c.describe(),
        };
        let embed_name = ["backbone.embeddings.weight", "backbone.embedding.weight"]
            .into_iter()
            .find(|n| w.has(n))
            .unwrap_or("backbone.embeddings.weight");
        let embed = w.get(embed_name, &[c.vocab, c.d])?;
        let use_bias = src.opt_config_bool("use_bias")?.unwrap_or(false);
        let conv_bias = src.opt_config_bool("use_conv_bias")?.unwrap_or(true);
        let proj = c.inner + c.conv_dim + c.heads;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let m = |s: &str| format!("backbone.layers.{i}.mixer.{s}");
            let a_log = w.get(&m("A_log"), &[c.heads])?;
            layers.push(Layer {
                norm: w.get(&format!("backbone.layers.{i}.norm.weight"), &[c.d])?,
                in_proj: w.get(&m("in_proj.weight"), &[proj, c.d])?,
                in_bias: w.opt(&m("in_proj.bias"), &[proj], use_bias)?,
                conv_w: w
                    .get(&m("conv1d.weight"), &[c.conv_dim, 1, c.kernel])?
                    .reshape(&[c.conv_dim as isize, c.kernel as isize])?,
                conv_b: w.opt(&m("conv1d.bias"), &[c.conv_dim], conv_bias)?,
                dt_bias: w.get(&m("dt_bias"), &[c.heads])?,
                a: a_log.exp()?.scale(-1.0)?,
                d: w.get(&m("D"), &[c.heads])?
                    .reshape(&[c.heads as isize, 1])?,
                gate_norm: w.get(&m("norm.weight"), &[c.inner])?,
                out_proj: w.get(&m("out_proj.weight"), &[c.d, c.inner])?,
                out_bias: w.opt(&m("out_proj.bias"), &[c.d], use_bias)?,
            });
        }
        let norm_f = w.get("backbone.norm_f.weight", &[c.d])?;
        let tied = src.opt_config_bool("tie_word_embeddings")?.unwrap_or(false);
        let head = if tied {
            embed.clone()
        } else {
            w.get("lm_head.weight", &[c.vocab, c.d])?
        };
        let ignored: Vec<String> = ["norm_before_gate", "rms_norm"]
            .iter()
            .filter(|f| src.config.get(**f).is_some())
            .map(|f| format!("{f} = {}", src.config[*f]))
            .collect();
        let extra = json!({
            "model_type": "mamba2",
            "n_heads": c.heads,
            "head_dim": c.head_dim,
            "state_size": c.state,
            "n_groups": c.groups,
            "conv_kernel": c.kernel,
            "chunk_size": c.chunk,
            "d_inner": c.inner,
            "time_step_limit": [c.dt_limit.0, if c.dt_limit.1.is_finite() { json!(c.dt_limit.1) } else { json!("Infinity") }],
            "tied_head": tied,
            "gated_norm": "gate before norm, per group (as transformers)",
            "ignored_config": ignored,
        });
        let info = ModelInfo {
            arch: "mamba2".into(),
            vocab_size: c.vocab,
            n_layers: c.layers,
            d_model: c.d,
            context_length: None,
            hooks: hook_names(c.layers),
            ablation_methods: METHODS.iter().map(|s| s.to_string()).collect(),
            default_ablation: METHODS[0].into(),
            causal: true,
            extra,
        };
        let head_group = (0..c.heads).map(|h| h / (c.heads / c.groups)).collect();
        Ok(Mamba2 {
            cfg: c,
            embed,
            layers,
            norm_f,
            head,
            head_group,
            info,
            cache: None,
        })
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        self.forward_call(call)
    }
}

tokit_sdk::export_plugin! {
    name: "mamba2",
    version: env!("CARGO_PKG_VERSION"),
    description: "Mamba2 state-space models (Hugging Face Mamba2ForCausalLM) with state hooks, zero_input ablation and the ssm_memory metric (M12)",
    architectures: [Mamba2],
    metrics: [memory::SsmMemory],
}

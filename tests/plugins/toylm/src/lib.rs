//! Test plugin `toylm`: a bigram language model `logits_t = W_head · E[x_t]` read from
//! safetensors (`embed.weight [V, d]`, `head.weight [V, d]`). Used by the engine's tests
//! for weight loading, shape checks against config.json, hooks, and panics: a config with
//! `"panic_on_token": N` panics inside `forward` when token N appears. Built with the
//! feature `double`, its logits are doubled (a "rebuilt" plugin for the reload test).

use tokit_sdk::{
    bail, ArchSpec, Architecture, ForwardCall, ModelInfo, ModelSource, Result, Tensor,
};

pub struct ToyLm {
    embed: Tensor,
    head: Tensor,
    vocab: usize,
    d: usize,
    panic_on: Option<u32>,
}

fn checked(source: &ModelSource, name: &str, expected: [usize; 2]) -> Result<Tensor> {
    let t = source.weight(name)?;
    let shape = t.shape()?;
    if shape != expected {
        bail!(
            "{}: tensor `{name}` has shape {shape:?} but config.json (vocab_size, hidden_size) implies {expected:?}",
            source.path
        );
    }
    Ok(t)
}

impl Architecture for ToyLm {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "toylm".into(),
            model_types: vec!["toylm".into()],
            description: "bigram test model".into(),
        }
    }

    fn load(source: &ModelSource) -> Result<Self> {
        let vocab = source.config_usize("vocab_size")?;
        let d = source.config_usize("hidden_size")?;
        Ok(ToyLm {
            embed: checked(source, "embed.weight", [vocab, d])?,
            head: checked(source, "head.weight", [vocab, d])?,
            vocab,
            d,
            panic_on: source.opt_config_usize("panic_on_token")?.map(|t| t as u32),
        })
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            arch: "toylm".into(),
            vocab_size: self.vocab,
            n_layers: 0,
            d_model: self.d,
            hooks: vec!["hook_embed".into(), "hook_logits".into()],
            causal: true,
            ..Default::default()
        }
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        if let Some(p) = self.panic_on {
            if call.tokens().contains(&p) {
                panic!("toylm was told to panic on token {p}");
            }
        }
        for v in 0..call.variants().len() {
            call.variants()[v].method_for(&self.info())?;
            let h = Tensor::embedding(&self.embed, call.tokens())?;
            let h = call.hook(v, "hook_embed", h)?;
            let mut logits = h.matmul_t(&self.head)?;
            if cfg!(feature = "double") {
                // A build with other code, for the REPL's reload test.
                logits = logits.scale(2.0)?;
            }
            let logits = call.hook(v, "hook_logits", logits)?;
            call.emit(v, "logits", logits);
        }
        Ok(())
    }
}

tokit_sdk::export_plugin! {
    name: "toylm",
    version: env!("CARGO_PKG_VERSION"),
    description: "test plugin: bigram model from safetensors",
    architectures: [ToyLm],
    metrics: [],
}

//! LLaDA (masked diffusion) in the `transformer` plugin against the PyTorch reference of
//! tools/make_fixtures.py (`llada` section), plus its mask-token ablation, hooks, load
//! errors, the diffusion sampler and the `elbo` metric on a real (tiny) model.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokit_engine::{ForwardSpec, LoadOptions, Model};
use tokit_sdk::Variant;
use tokit_tests::*;

const FIXTURES: [&str; 2] = ["llada", "llada_tied_bias"];

fn fixture(name: &str) -> PathBuf {
    tokit_tests::fixture(&format!("llada/{name}"))
}

fn reference(name: &str) -> Reference {
    tokit_tests::reference(&format!("llada/{name}"))
}

fn load_with(dir: &Path, opts: &LoadOptions) -> anyhow::Result<Model> {
    engine().load_model(dir.to_str().unwrap(), opts)
}

fn load(name: &str) -> Model {
    load_with(&fixture(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"))
}

fn clean(m: &Model, tokens: &[u32]) -> Vec<f32> {
    logits(m, tokens, &ForwardSpec::default())[0]
        .data()
        .to_vec()
}

fn variants(vs: Vec<Variant>) -> ForwardSpec {
    ForwardSpec {
        variants: vs,
        ..Default::default()
    }
}

fn mask_variant(pos: &[usize]) -> Variant {
    Variant {
        ablate: pos.to_vec(),
        method: Some("mask_token".into()),
        ..Default::default()
    }
}

fn mask_id(m: &Model) -> u32 {
    m.info().extra["mask_token_id"].as_u64().unwrap() as u32
}

#[test]
fn logits_match_the_pytorch_reference_within_1e4() {
    let mut report = Vec::new();
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let n_masked = r.tokens.iter().filter(|&&t| t == mask_id(&m)).count();
        assert_eq!(
            n_masked,
            r.masked.len(),
            "{name}: the input is partly masked"
        );
        let out = clean(&m, &r.tokens);
        assert_eq!(out.len(), r.tokens.len() * m.info().vocab_size, "{name}");
        let d = max_diff(&out, &r.logits);
        report.push(format!("{name}: max |Δlogit| = {d:.2e}"));
        assert!(d <= 1e-4, "{name}: max |Δlogit| = {d}");
        for (pos, want) in &r.ablations {
            let abl = Variant {
                ablate: pos.clone(),
                method: Some("attention".into()),
                ..Default::default()
            };
            let out = logits(&m, &r.tokens, &variants(vec![abl])).remove(0);
            let d = max_diff(out.data(), want);
            assert!(
                d <= 1e-4,
                "{name} attention-ablate {pos:?}: max |Δlogit| = {d}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn model_info_says_bidirectional_with_a_mask_token() {
    let m = load("llada");
    let i = m.info();
    assert!(!i.causal);
    assert_eq!(i.vocab_size, 128, "logits cover the padded embedding table");
    assert_eq!(i.extra["mask_token_id"], json!(118));
    assert_eq!(i.extra["vocab_size"], json!(120));
    assert_eq!(i.default_ablation, "mask_token");
    assert_eq!(i.hooks[0], "diffusion.hook_mask");
    assert!(i.hooks.contains(&"blocks.1.attn.hook_pattern".to_string()));
}

/// Every position sees every other: a change at the last token moves the first row.
#[test]
fn attention_is_bidirectional_and_pattern_mass_lies_above_the_diagonal() {
    let m = load("llada");
    let r = reference("llada");
    let v = m.info().vocab_size;
    let a = clean(&m, &r.tokens);
    let mut later = r.tokens.clone();
    *later.last_mut().unwrap() = (later.last().unwrap() + 1) % 120;
    let b = clean(&m, &later);
    assert!(max_diff(&a[..v], &b[..v]) > 1e-4);
    // The captured pattern: rows sum to 1 and hold mass above the diagonal.
    let spec = ForwardSpec {
        capture: vec!["blocks.0.attn.hook_pattern".into()],
        ..Default::default()
    };
    let out = m.forward(&r.tokens, &spec).unwrap().remove(0);
    let p = &out["blocks.0.attn.hook_pattern"];
    let t = r.tokens.len();
    assert_eq!(p.shape(), &[4, t, t]);
    let d = p.data();
    let upper: f64 = (0..4 * t)
        .flat_map(|row| (row % t + 1..t).map(move |j| d[row * t + j] as f64))
        .sum();
    assert!(
        upper > 0.1 * (4 * t) as f64,
        "mass above the diagonal: {upper}"
    );
    for row in d.chunks(t) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // With the unfused path (pattern captured) the logits are the fused ones.
    assert!(max_diff(out["logits"].data(), &a) <= 1e-5);
}

/// The logit lens of the last layer is the model's own output; earlier layers differ.
#[test]
fn logit_lens_of_the_last_layer_is_the_output() {
    for name in ["llada", "llada_tied_bias"] {
        let m = load(name);
        let r = reference(name);
        let last = m.info().n_layers - 1;
        let spec = ForwardSpec {
            capture: vec!["blocks.*.hook_lens_logits".into()],
            ..Default::default()
        };
        let out = m.forward(&r.tokens, &spec).unwrap().remove(0);
        let lens = &out[format!("blocks.{last}.hook_lens_logits").as_str()];
        assert_eq!(lens.data(), out["logits"].data(), "{name}");
        assert!(
            max_diff(
                out["blocks.0.hook_lens_logits"].data(),
                out["logits"].data()
            ) > 1e-3
        );
    }
}

#[test]
fn hook_mask_marks_the_masked_positions() {
    let m = load("llada");
    let r = reference("llada");
    let spec = ForwardSpec {
        capture: vec!["diffusion.hook_mask".into()],
        variants: vec![Variant::default(), mask_variant(&[0, 1])],
        ..Default::default()
    };
    let out = m.forward(&r.tokens, &spec).unwrap();
    let want: Vec<f32> = (0..r.tokens.len())
        .map(|j| r.masked.contains(&j) as u8 as f32)
        .collect();
    assert_eq!(out[0]["diffusion.hook_mask"].data(), &want[..]);
    let mut want1 = want.clone();
    want1[0] = 1.0;
    want1[1] = 1.0;
    assert_eq!(out[1]["diffusion.hook_mask"].data(), &want1[..]);
}

/// `mask_token` ablation replaces the token by the mask token; batched variants equal
/// separate runs, and each equals a plain forward of the edited sequence.
#[test]
fn mask_token_ablation_batched_equals_separate_runs() {
    let m = load("llada");
    let mut tokens = reference("llada").tokens;
    tokens.iter_mut().for_each(|t| *t %= 100); // no masks yet
    let sets: Vec<Vec<usize>> = vec![vec![], vec![0], vec![5, 9], vec![23], vec![3, 4, 5]];
    let batched = logits(
        &m,
        &tokens,
        &variants(sets.iter().map(|s| mask_variant(s)).collect()),
    );
    for (s, b) in sets.iter().zip(&batched) {
        let alone = logits(&m, &tokens, &variants(vec![mask_variant(s)])).remove(0);
        assert_eq!(b.data(), alone.data(), "ablate {s:?}");
        let mut edited = tokens.clone();
        for &j in s {
            edited[j] = mask_id(&m);
        }
        assert_eq!(b.data(), &clean(&m, &edited)[..], "ablate {s:?}");
    }
    // Masking moves the logits of positions before the masked one too.
    let v = m.info().vocab_size;
    assert!(max_diff(&batched[3].data()[..v], &batched[0].data()[..v]) > 1e-4);
}

fn edited_fixture(name: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match load_with(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = edited_fixture("llada", |c| c["block_type"] = "sequential".into());
    let err = load_error(dir.path());
    assert!(
        err.contains("`block_type` is \"sequential\"") && err.contains("\"llama\""),
        "{err}"
    );
    let dir = edited_fixture("llada", |c| {
        c.as_object_mut().unwrap().remove("mask_token_id");
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("no `mask_token_id`") && err.contains("load option"),
        "{err}"
    );
    // The load option supplies it.
    let opts = LoadOptions {
        options: [("mask_token_id".to_string(), json!(118))]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let m = load_with(dir.path(), &opts).unwrap();
    assert_eq!(mask_id(&m), 118);
    let dir = edited_fixture("llada", |c| c["mlp_hidden_size"] = 60.into());
    let err = load_error(dir.path());
    assert!(
        err.contains(
            "weight `model.transformer.blocks.0.ff_proj.weight` has shape [64, 32], expected [60, 32]"
        ),
        "{err}"
    );
    let dir = edited_fixture("llada", |c| c["alibi"] = true.into());
    let err = load_error(dir.path());
    assert!(err.contains("`alibi` = true is not supported"), "{err}");
    let dir = edited_fixture("llada", |c| c["mask_token_id"] = 500.into());
    let err = load_error(dir.path());
    assert!(err.contains("mask token id 500 is outside"), "{err}");
}

fn elbo(m: &Model, tokens: &[u32], params: Value) -> tokit_engine::report::Report {
    let input = tokit_engine::engine::AnalyzeInput {
        model: Some(m.clone()),
        text: None,
        tokens: Some(tokens.to_vec()),
        params: params.as_object().unwrap().clone(),
        tensors: vec![],
    };
    engine().analyze("elbo", &input).unwrap()
}

fn log_softmax_at(row: &[f32], target: u32) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[target as usize] as f64 - max - z.ln()
}

/// The bound on the real model: seeded, with a standard error; with one response token it
/// is exactly −ln p(x_last | rest, x_last masked), read off a plain forward pass.
#[test]
fn elbo_on_the_llada_fixture() {
    let m = load("llada");
    let tokens: Vec<u32> = reference("llada").tokens.iter().map(|t| t % 100).collect();
    let t = tokens.len();
    let p = json!({ "prompt_tokens": 8, "draws": 32, "batch": 8, "seed": 3 });
    let a = elbo(&m, &tokens, p.clone());
    let b = elbo(&m, &tokens, p);
    assert_eq!(a.value, b.value, "reproducible from the seed");
    let (v, se) = (a.value.unwrap(), a.scalars["se"]);
    assert!(v.is_finite() && v > 0.0 && se > 0.0, "{v} ± {se}");
    assert_eq!(a.tensors["draw_values"].shape(), &[32]);
    let c = elbo(
        &m,
        &tokens,
        json!({ "prompt_tokens": 8, "draws": 32, "batch": 8, "seed": 4 }),
    );
    assert_ne!(a.value, c.value);

    let one = elbo(
        &m,
        &tokens,
        json!({ "prompt_tokens": t - 1, "draws": 4, "batch": 2 }),
    );
    let mut masked = tokens.clone();
    masked[t - 1] = mask_id(&m);
    let vsz = m.info().vocab_size;
    let l = clean(&m, &masked);
    let want = -log_softmax_at(&l[(t - 1) * vsz..], tokens[t - 1]);
    assert!(
        (one.value.unwrap() - want).abs() < 1e-5,
        "{:?} vs {want}",
        one.value
    );

    // A response that holds the mask token is refused.
    let input = tokit_engine::engine::AnalyzeInput {
        model: Some(m.clone()),
        tokens: Some(masked),
        ..Default::default()
    };
    let err = engine().analyze("elbo", &input).unwrap_err();
    assert!(format!("{err:#}").contains("is the mask token"), "{err:#}");
}

/// For an autoregressive model `elbo` is the exact log-likelihood: the sum of surprisals.
#[test]
fn elbo_of_an_autoregressive_model_is_the_exact_nll() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transformer/llama_gqa_tied");
    let m = load_with(&dir, &LoadOptions::default()).unwrap();
    let tokens: Vec<u32> = (0..20).map(|i| (i * 37 % 128) as u32).collect();
    let r = elbo(&m, &tokens, json!({ "prompt_tokens": 5 }));
    let l = clean(&m, &tokens);
    let v = m.info().vocab_size;
    let want: f64 = (5..20)
        .map(|t| -log_softmax_at(&l[(t - 1) * v..t * v], tokens[t]))
        .sum();
    assert!(
        (r.value.unwrap() - want).abs() < 1e-6,
        "{:?} vs {want}",
        r.value
    );
    assert_eq!(r.scalars["se"], 0.0);
    assert!(r.estimator.starts_with("exact"));
}

fn sample(m: &Model, prompt: &[u32], opts: Value) -> tokit_engine::generate::Generation {
    let opts: tokit_engine::GenerateOptions = serde_json::from_value(opts).unwrap();
    tokit_engine::generate::generate_traced(m, prompt, &opts).unwrap()
}

/// The sampler: seeded and reproducible; fills exactly gen_length positions, each once, in
/// block order; `steps` steps, each committing its share.
#[test]
fn diffusion_sampler_is_reproducible_and_respects_blocks() {
    let m = load("llada");
    let mask = mask_id(&m);
    let prompt: Vec<u32> = (0..6).map(|i| (i * 13 % 100) as u32).collect();
    let opts =
        json!({ "gen_length": 12, "steps": 6, "block_length": 4, "temperature": 1.0, "seed": 5 });
    let a = sample(&m, &prompt, opts.clone());
    assert_eq!(a, sample(&m, &prompt, opts), "same seed, same draw");
    let c = sample(
        &m,
        &prompt,
        json!({ "gen_length": 12, "steps": 6, "block_length": 4, "temperature": 1.0, "seed": 6 }),
    );
    assert_ne!(a.tokens, c.tokens, "another seed, another draw");
    assert_eq!(a.tokens.len(), 12);
    assert!(a.tokens.iter().all(|&t| t != mask));
    // Every position unmasked exactly once, blocks in order, two per step (4 tokens / 2 steps).
    let mut seen = a.order.clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<_>>());
    for (k, &i) in a.order.iter().enumerate() {
        assert_eq!(i / 4, k / 4, "position {i} unmasked outside its block");
        assert_eq!(a.step[i], k / 2);
    }
    // Uneven split: 8 tokens in one block over 3 steps commit 3, 3, 2.
    let u = sample(
        &m,
        &prompt,
        json!({ "gen_length": 8, "steps": 3, "temperature": 0.0 }),
    );
    let per: Vec<usize> = (0..3)
        .map(|s| u.step.iter().filter(|&&x| x == s).count())
        .collect();
    assert_eq!(per, vec![3, 3, 2]);
    // Unconditional: from nothing but masks.
    let free = sample(&m, &[], json!({ "gen_length": 4, "steps": 4, "seed": 1 }));
    assert_eq!(free.tokens.len(), 4);
    // Bad shapes are clear errors.
    let opts: tokit_engine::GenerateOptions =
        serde_json::from_value(json!({ "gen_length": 10, "block_length": 4 })).unwrap();
    let err = tokit_engine::generate::generate_traced(&m, &prompt, &opts).unwrap_err();
    assert!(
        format!("{err}").contains("not a multiple of block_length 4"),
        "{err}"
    );
}

/// Greedy low-confidence remasking, replayed by hand: each step commits the most probable
/// candidate(s) of the current state and never touches a committed token.
#[test]
fn greedy_low_confidence_remasking_replays_step_by_step() {
    let m = load("llada");
    let mask = mask_id(&m);
    let v = m.info().vocab_size;
    let prompt: Vec<u32> = vec![3, 14, 15, 92, 65];
    let g = sample(
        &m,
        &prompt,
        json!({ "gen_length": 6, "steps": 6, "block_length": 3, "temperature": 0.0 }),
    );
    let mut x = prompt.clone();
    x.extend(std::iter::repeat_n(mask, 6));
    for (step, &i) in g.order.iter().enumerate() {
        let l = clean(&m, &x);
        let block = (i / 3) * 3..(i / 3) * 3 + 3;
        let best = block
            .clone()
            .filter(|&j| x[prompt.len() + j] == mask)
            .map(|j| {
                let row = &l[(prompt.len() + j) * v..(prompt.len() + j + 1) * v];
                let t = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                (j, t as u32, log_softmax_at(row, t as u32))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2).then(b.0.cmp(&a.0)))
            .unwrap();
        assert_eq!((best.0, best.1), (i, g.tokens[i]), "step {step}");
        assert_eq!(
            x[prompt.len() + i],
            mask,
            "a committed token is never changed"
        );
        x[prompt.len() + i] = g.tokens[i];
    }
    // Guidance runs and stays reproducible.
    let o = json!({ "gen_length": 6, "steps": 3, "temperature": 0.5, "cfg_scale": 1.5, "seed": 2 });
    assert_eq!(sample(&m, &prompt, o.clone()), sample(&m, &prompt, o));
}

/// The sampler from the command line and from Rhai.
#[test]
fn generate_from_the_cli_and_rhai() {
    let dir = fixture("llada");
    let out = tokit(&[
        "generate",
        dir.to_str().unwrap(),
        "--tokens",
        "1,2,3",
        "--max-tokens",
        "4",
        "--steps",
        "2",
        "--block-length",
        "2",
        "--temperature",
        "0",
        "--trace",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let trace: Value = serde_json::from_str(lines[1]).unwrap();
    let tokens: Vec<String> = trace["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(lines[0], tokens.join(","));
    assert_eq!(trace["step"].as_array().unwrap().len(), 4);

    // Rhai: generate_trace agrees with generate and with the command line.
    let mut host = tokit_engine::script::ScriptHost::new(engine());
    let src = format!(
        r#"let m = load_model("{}");
           let o = #{{ gen_length: 4, steps: 2, block_length: 2, temperature: 0.0 }};
           let g = m.generate_trace([1, 2, 3], o);
           if g.tokens != m.generate([1, 2, 3], o) {{ throw "generate and generate_trace differ"; }}
           [g.tokens, g.order]"#,
        dir.display()
    );
    let r: Vec<rhai::Dynamic> = host
        .eval_named(&src, "t.rhai")
        .unwrap()
        .into_typed_array()
        .unwrap();
    let ints = |d: &rhai::Dynamic| -> Vec<i64> { d.clone().into_typed_array::<i64>().unwrap() };
    let want = |k: &str| -> Vec<i64> {
        trace[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    assert_eq!(ints(&r[0]), want("tokens"));
    assert_eq!(ints(&r[1]), want("order"));
}

/// Next-token metrics refuse a bidirectional model and point at `elbo`.
#[test]
fn next_token_metrics_refuse_a_masked_diffusion_model() {
    let m = load("llada");
    let r = reference("llada");
    for metric in ["surprisal", "token_stats", "granger_map", "logit_lens"] {
        let input = tokit_engine::engine::AnalyzeInput {
            model: Some(m.clone()),
            text: None,
            tokens: Some(r.tokens.clone()),
            params: Default::default(),
            tensors: vec![],
        };
        let err = format!("{:#}", engine().analyze(metric, &input).unwrap_err());
        assert!(
            err.contains(metric) && err.contains("not causal") && err.contains("elbo"),
            "{err}"
        );
    }
}

//! The `tokit` command line: run scripts, list plugins, inspect models, run forward
//! passes and analyses from the shell.

use crate::config::{BackendChoice, Config, CpuWeights, GpuWeights};
use crate::engine::{AnalyzeInput, Engine};
use crate::model::{ForwardSpec, LoadOptions};
use crate::script::ScriptHost;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "tokit",
    version,
    about = "Measure language models with information theory"
)]
pub struct Cli {
    /// Configuration file (default: ./tokit.ron, then ~/.config/tokit/tokit.ron).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Compute backend: auto, cpu or gpu.
    #[arg(long, global = true)]
    pub backend: Option<BackendChoice>,
    /// GPU weight storage: f32 (default) or f16 (half the memory; changes the numbers).
    #[arg(long = "gpu-weights", global = true)]
    pub gpu_weights: Option<GpuWeights>,
    /// CPU weight storage: f32 (default), f16 or bf16 (faster decoding; changes the numbers).
    #[arg(long = "cpu-weights", global = true)]
    pub cpu_weights: Option<CpuWeights>,
    /// Extra plugin directory (repeatable), searched first.
    #[arg(long = "plugin-dir", global = true)]
    pub plugin_dirs: Vec<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Rhai script.
    Run {
        script: PathBuf,
        /// Keep running: re-run the script when it is saved, reload plugins when rebuilt.
        #[arg(long)]
        watch: bool,
        /// Run shard I of N (e.g. 0/4) of the script's grid: `shard_items(array)` gives this
        /// shard's items. Without it, a Slurm array task's variables give I and N.
        #[arg(long)]
        shard: Option<String>,
        /// The number of shards N, with JOB_COMPLETION_INDEX (Kubernetes) or
        /// SLURM_ARRAY_TASK_ID as I.
        #[arg(long)]
        shards: Option<usize>,
    },
    /// Interactive Rhai prompt (scripts given are run first, in its scope).
    Repl { scripts: Vec<PathBuf> },
    /// List loaded plugins with what they provide.
    Plugins,
    /// Describe a model: architecture, sizes, hook points, ablation methods.
    Info { model: String },
    /// Run a forward pass; write logits and captured hooks to a safetensors file.
    Forward {
        model: String,
        #[command(flatten)]
        input: TextInput,
        /// Hook pattern to capture (repeatable), e.g. `blocks.*.hook_resid_post`.
        #[arg(long)]
        capture: Vec<String>,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Continue a text (or token ids) by sampling from the model.
    Generate {
        model: String,
        #[command(flatten)]
        input: TextInput,
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Masked-diffusion models: denoising steps (0 = one per token).
        #[arg(long, default_value_t = 0)]
        steps: usize,
        /// Masked-diffusion models: semi-autoregressive block length (0 = one block).
        #[arg(long, default_value_t = 0)]
        block_length: usize,
        /// Masked-diffusion models: classifier-free guidance scale.
        #[arg(long, default_value_t = 0.0)]
        cfg_scale: f64,
        /// Masked-diffusion models: low_confidence or random.
        #[arg(long, default_value = "low_confidence")]
        remasking: String,
        /// Also print the order in which the tokens were chosen (JSON on a second line).
        #[arg(long)]
        trace: bool,
    },
    /// Measure throughput: `bench forward MODEL --tokens N`, `bench matmul --size N`,
    /// `bench granger MODEL --tokens N`, `bench ba --size N`, `bench metric METRIC ...`.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Compute a metric; write the result JSON.
    Analyze {
        metric: String,
        #[command(flatten)]
        args: MetricArgs,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        corpus: crate::corpus::CorpusArgs,
    },
    /// Merge the shards of a corpus analysis (`analyze --corpus ... --output OUT --shard I/N`)
    /// into OUT and its summary, or of a permutation test (`analyze METRIC ... --output OUT
    /// --shard I/N`) into OUT: the files a single run writes.
    Merge {
        /// The --output the shards were given.
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Full-sequence forward and incremental decoding, tokens/s.
    Forward {
        model: String,
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// Incremental decoding steps (default: --tokens; 0 skips decoding).
        #[arg(long)]
        decode_steps: Option<usize>,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Square matmul on the active backend, GFLOP/s.
    Matmul {
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// Granger map of N tokens (one batched call) against N separate ablated forwards.
    Granger {
        model: String,
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// A metric on inputs loaded once: `warmup` untimed calls, then `repeat` timed ones;
    /// prints one JSON object (best_ms, median_ms, value, record, threads).
    Metric {
        metric: String,
        #[command(flatten)]
        args: MetricArgs,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
    },
    /// Blahut-Arimoto on the size × size problem of tools/ba_numpy.py, to --tol.
    Ba {
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long, default_value_t = 8.0)]
        beta: f64,
        #[arg(long, default_value_t = 1e-10)]
        tol: f64,
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
}

/// What `analyze` and `bench metric` compute on.
#[derive(Args, Debug, Default)]
pub struct MetricArgs {
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    input: TextInput,
    /// A parameter `name=value` (value parsed as JSON, else taken as a string).
    #[arg(long = "param", short = 'p')]
    params: Vec<String>,
    /// An input tensor `NAME=FILE` (repeatable): FILE is `.npy`, `.csv` (`FILE.csv:COLUMN`
    /// for one column) or `FILE.safetensors:TENSOR`.
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,
}

impl MetricArgs {
    /// A corpus analysis (`--corpus`): documents come from the corpus, so a text, token ids
    /// or input tensors beside it are refused.
    fn corpus(
        &self,
        tokit: &Engine,
        metric: &str,
        output: Option<&Path>,
        corpus: &crate::corpus::CorpusArgs,
    ) -> Result<()> {
        let i = &self.input;
        if i.text.is_some() || i.tokens.is_some() || i.file.is_some() {
            bail!("give --corpus or --text/--tokens/--file, not both");
        }
        if !self.inputs.is_empty() {
            bail!("--input is not taken with --corpus (each document is the input)");
        }
        let params = param_map(&self.params)?;
        crate::corpus::cli(tokit, metric, self.model.as_deref(), params, output, corpus)
    }

    /// The analysis input: the model loaded, the inputs read, the parameters parsed.
    fn load(&self, tokit: &Engine) -> Result<AnalyzeInput> {
        let m = match &self.model {
            Some(p) => Some(tokit.load_model(p, &LoadOptions::default())?),
            None => None,
        };
        let mut a = AnalyzeInput {
            tokens: self.input.tokens.clone(),
            text: self.input.text()?,
            model: m,
            ..Default::default()
        };
        a.params = param_map(&self.params)?;
        for spec in &self.inputs {
            let (name, t) = input_tensor(spec)?;
            if a.tensors.iter().any(|(n, _)| *n == name) {
                bail!("--input {name} given twice: keep one");
            }
            if a.params.contains_key(&name) {
                bail!("`{name}` given both as --param and as --input: keep one");
            }
            a.tensors.push((name, t));
        }
        Ok(a)
    }
}

/// `NAME=FILE`, `NAME=FILE.safetensors:TENSOR` or `NAME=FILE.csv:COLUMN`, read.
pub fn input_tensor(spec: &str) -> Result<(String, crate::Tensor)> {
    let (name, file) = spec
        .split_once('=')
        .filter(|(n, f)| !n.is_empty() && !f.is_empty())
        .ok_or_else(|| anyhow!("--input {spec}: expected NAME=FILE"))?;
    // A `:TENSOR` suffix after a .safetensors or .csv file name picks a tensor or column.
    let (path, pick) = match file.rsplit_once(':') {
        Some((p, t))
            if [".safetensors", ".csv"]
                .iter()
                .any(|e| p.to_ascii_lowercase().ends_with(e)) =>
        {
            (p, Some(t))
        }
        _ => (file, None),
    };
    let t = tokit_model::tensor_io::load(std::path::Path::new(path), pick)
        .with_context(|| format!("--input {name}"))?;
    Ok((name.to_string(), t))
}

#[derive(Args, Debug, Default)]
pub struct TextInput {
    /// Input text.
    #[arg(long)]
    pub text: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// Read the input text from a file.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

impl TextInput {
    fn text(&self) -> Result<Option<String>> {
        if self.tokens.is_some() && (self.text.is_some() || self.file.is_some()) {
            bail!("give --tokens or --text/--file, not both (which one should be measured?)");
        }
        match (&self.text, &self.file) {
            (Some(_), Some(_)) => bail!("give --text or --file, not both"),
            (Some(t), None) => Ok(Some(t.clone())),
            (None, Some(f)) => Ok(Some(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            )),
            (None, None) => Ok(None),
        }
    }
}

/// Build the engine from the global options.
pub fn engine(cli: &Cli) -> Result<Engine> {
    let mut config = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::discover()?.0,
    };
    if let Some(b) = cli.backend {
        config.backend = b;
    }
    if let Some(w) = cli.gpu_weights {
        config.gpu_weights = w;
    }
    if let Some(w) = cli.cpu_weights {
        config.cpu_weights = w;
    }
    let mut dirs = cli.plugin_dirs.clone();
    dirs.append(&mut config.plugin_dirs);
    config.plugin_dirs = dirs;
    Engine::new(config)
}

pub fn run(cli: Cli) -> Result<()> {
    let tokit = engine(&cli)?;
    // Where results go when no --output is given: `output_dir` of tokit.ron, else `out`.
    let out_dir = tokit
        .config
        .output_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("out"));
    match cli.command {
        Command::Run {
            script,
            watch: false,
            shard,
            shards,
        } => {
            let shard =
                crate::corpus::shard::resolve(shard.as_deref(), shards, |k| std::env::var(k).ok())?;
            let mut host = ScriptHost::new(Arc::new(tokit));
            host.set_shard(shard);
            let _ = host.run_file(&script)?;
        }
        Command::Run {
            script,
            watch: true,
            shard,
            shards,
        } => {
            if shard.is_some() || shards.is_some() {
                bail!("--watch re-runs one script on this machine: it takes no --shard");
            }
            crate::repl::watch_script(Arc::new(tokit), &script)?
        }
        Command::Repl { scripts } => crate::repl::run(Arc::new(tokit), &scripts)?,
        Command::Bench { what } => match what {
            BenchWhat::Forward {
                model,
                tokens,
                decode_steps,
                repeat,
            } => {
                let steps = decode_steps.unwrap_or(tokens);
                println!(
                    "{}",
                    crate::bench::forward(&tokit, &model, tokens, steps, repeat)?
                )
            }
            BenchWhat::Matmul { size, repeat } => {
                println!("{}", crate::bench::matmul(&tokit, size, repeat)?)
            }
            BenchWhat::Granger {
                model,
                tokens,
                repeat,
            } => println!("{}", crate::bench::granger(&tokit, &model, tokens, repeat)?),
            BenchWhat::Ba {
                size,
                beta,
                tol,
                repeat,
            } => println!("{}", crate::bench::ba(&tokit, size, beta, tol, repeat)?),
            BenchWhat::Metric {
                metric,
                args,
                repeat,
                warmup,
            } => {
                let input = args.load(&tokit)?;
                let out = crate::bench::metric(&tokit, &metric, &input, repeat, warmup)?;
                println!("{}", serde_json::to_string(&out)?);
            }
        },
        Command::Plugins => {
            if tokit.plugins.plugins.is_empty() {
                println!("no plugins loaded");
            }
            for p in &tokit.plugins.plugins {
                println!(
                    "{} {} ({}, ABI {}.{}, sdk {})",
                    p.desc.name, p.desc.version, p.desc.kind, p.abi.0, p.abi.1, p.desc.sdk_version
                );
                println!("  file: {}", p.path.display());
                if !p.desc.description.is_empty() {
                    println!("  {}", p.desc.description);
                }
                for a in &p.desc.architectures {
                    println!(
                        "  architecture {} (model_type: {})",
                        a.name,
                        a.model_types.join(", ")
                    );
                }
                for m in &p.desc.metrics {
                    let r = if m.reconstruction {
                        " [reconstruction]"
                    } else {
                        ""
                    };
                    println!("  metric {} [{}]{r}: {}", m.name, m.unit, m.description);
                }
                for a in &p.desc.actions {
                    println!("  action {a}");
                }
            }
            for (f, why) in &tokit.plugins.failures {
                println!("failed to load {}: {why}", f.display());
            }
        }
        Command::Info { model } => {
            let m = tokit.load_model(&model, &LoadOptions::default())?;
            let i = m.info();
            println!("model:        {}", m.path.display());
            println!(
                "architecture: {} (plugin {} {})",
                i.arch,
                m.plugin.name(),
                m.plugin.desc.version
            );
            println!("fingerprint:  {}", m.fingerprint);
            println!(
                "vocab:        {} (tokenizer: {})",
                i.vocab_size,
                m.tokenizer
                    .as_ref()
                    .map_or("none".into(), |t| t.vocab_size().to_string())
            );
            println!(
                "layers:       {}   d_model: {}   causal: {}",
                i.n_layers, i.d_model, i.causal
            );
            println!(
                "context:      {}",
                i.context_length
                    .map_or("unbounded".into(), |n| n.to_string())
            );
            println!(
                "ablation:     {} (default {})",
                i.ablation_methods.join(", "),
                i.default_ablation
            );
            println!("hooks:        {}", i.hooks.join(", "));
            println!("backend:      {}", tokit.backend_name());
            if !i.extra.is_null() {
                println!("extra:        {}", i.extra);
            }
        }
        Command::Forward {
            model,
            input,
            capture,
            output,
        } => {
            let m = tokit.load_model(&model, &LoadOptions::default())?;
            let tokens = tokens_of(&input, Some(&m))?
                .ok_or_else(|| anyhow!("forward: give --text, --tokens or --file"))?;
            let out = m.forward(
                &tokens,
                &ForwardSpec {
                    capture,
                    ..Default::default()
                },
            )?;
            let v0 = out.into_iter().next().unwrap_or_default();
            let path = output.unwrap_or_else(|| out_dir.join("forward.safetensors"));
            let tensors: Vec<(&str, &crate::Tensor)> =
                v0.iter().map(|(k, t)| (k.as_str(), t)).collect();
            let meta = [
                (
                    "tokens".to_string(),
                    tokens
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("model".to_string(), m.path.display().to_string()),
                ("arch".to_string(), m.arch.clone()),
            ];
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            tokit_model::save_safetensors(&path, &tensors, Some(meta.into_iter().collect()))?;
            println!(
                "wrote {} ({} tensors, logits {:?})",
                path.display(),
                tensors.len(),
                v0.get("logits").map(|t| t.shape().to_vec())
            );
        }
        Command::Generate {
            model,
            input,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            steps,
            block_length,
            cfg_scale,
            remasking,
            trace,
        } => {
            let m = tokit.load_model(&model, &LoadOptions::default())?;
            let prompt = tokens_of(&input, Some(&m))?
                .ok_or_else(|| anyhow!("generate: give --text, --tokens or --file"))?;
            let opts = crate::GenerateOptions {
                max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
                stop: vec![],
                steps,
                block_length,
                cfg_scale,
                remasking,
            };
            let g = crate::generate::generate_traced(&m, &prompt, &opts)?;
            let new = &g.tokens;
            match m.decode(new) {
                Ok(text) => println!("{text}"),
                Err(_) => println!(
                    "{}",
                    new.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ),
            }
            if trace {
                println!("{}", serde_json::to_string(&g)?);
            }
        }
        Command::Merge { output } if crate::surrogates::is_test(&output) => {
            let t0 = std::time::Instant::now();
            let m = crate::surrogates::merge(&output)?;
            println!(
                "merged {} shards: {} surrogates, p = {} in {:.3} s",
                m.shards,
                m.permutations,
                m.p_value,
                t0.elapsed().as_secs_f64()
            );
            println!("wrote {}", m.output.display());
        }
        Command::Merge { output } => {
            let t0 = std::time::Instant::now();
            let m = crate::corpus::merge(&output)?;
            println!(
                "merged {} shards: {} documents, {} tokens in {:.3} s",
                m.shards,
                m.documents,
                m.tokens,
                t0.elapsed().as_secs_f64()
            );
            println!("wrote {} and {}", m.output.display(), m.summary.display());
        }
        Command::Analyze {
            metric,
            args,
            output,
            corpus,
        } => {
            if corpus.corpus.is_some() {
                return args.corpus(&tokit, &metric, output.as_deref(), &corpus);
            }
            let a = args.load(&tokit)?;
            let path = output.unwrap_or_else(|| out_dir.join(format!("{metric}.json")));
            // A permutation test shards only when asked by a flag: a cluster's variables
            // alone do not split a plain analysis (a Slurm array may run a grid of them).
            let shard = match (&corpus.shard, corpus.shards) {
                (None, None) => None,
                (flag, shards) => crate::corpus::shard::resolve(flag.as_deref(), shards, |k| {
                    std::env::var(k).ok()
                })?,
            };
            if let Some(s) = shard {
                let t0 = std::time::Instant::now();
                let r = crate::surrogates::run_shard(&tokit, &metric, &a, &path, s)?;
                let v = r
                    .report
                    .value
                    .map_or("-".to_string(), |v| format!("{v:.6}"));
                println!(
                    "{metric} = {v} {}: shard {} of {}, surrogates {}..{} of {} in {:.3} s",
                    r.report.unit,
                    s.index,
                    s.count,
                    r.surrogates.start,
                    r.surrogates.end,
                    r.permutations,
                    t0.elapsed().as_secs_f64()
                );
                println!(
                    "wrote {}; when all are done, `tokit merge {}` writes the whole",
                    r.part.display(),
                    path.display()
                );
                return Ok(());
            }
            let report = tokit.analyze(&metric, &a)?;
            report.save(&path)?;
            let v = report.value.map_or("-".to_string(), |v| format!("{v:.6}"));
            println!("{metric} = {v} {} ({})", report.unit, report.estimator);
            for (k, s) in &report.scalars {
                println!("  {k}: {s:.6}");
            }
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// `--param name=value` flags as a map (value parsed as JSON, else taken as a string).
fn param_map(params: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param {p}: expected name=value"))?;
        let v =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        if let Some(old) = map.insert(k.to_string(), v) {
            bail!("--param {k} given twice (first {old}, then {p}): keep one");
        }
    }
    Ok(map)
}

fn tokens_of(input: &TextInput, model: Option<&crate::Model>) -> Result<Option<Vec<u32>>> {
    let text = input.text()?;
    if let Some(t) = &input.tokens {
        return Ok(Some(t.clone()));
    }
    match (text, model) {
        (Some(text), Some(m)) => Ok(Some(m.encode(&text)?)),
        (Some(_), None) => bail!("text given without a model to tokenise it"),
        (None, _) => Ok(None),
    }
}

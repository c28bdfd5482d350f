//! Corpus analyses (`tokit analyze METRIC --corpus PATH`, Rhai `analyze_corpus`): a metric
//! over every document of a corpus, streamed, written as a per-token table plus a summary
//! of per-document and corpus aggregates. `docs/corpus.md` describes the whole design:
//!
//! - documents stream through; a packable metric on a model that packs gets several short
//!   documents per forward (each as if alone), long ones are cut into windows whose
//!   overlap is context only, so every token is scored once;
//! - finished documents go to atomically written parts beside the output
//!   (`OUT.parts/part-NNNNNN.parquet` + `.json`), under a manifest of the run's
//!   parameters; a re-run with the same OUT skips them (and refuses other parameters),
//!   Ctrl-C writes what is finished, and the final file is assembled from the parts in
//!   document order, so an interrupted run resumed gives the same file as an
//!   uninterrupted one.

pub mod shard;
pub(crate) mod source;
mod summary;
mod table;

pub use shard::{merge, Merged, Shard};
pub use source::{Corpus, Document};
pub use summary::{DocStats, Moments, Skipped, WindowResult};
pub use table::Rows;

use crate::engine::{AnalyzeInput, Engine};
use crate::model::Model;
use crate::plugin::host::host;
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokit_compute::Tensor;
use tokit_sdk::CorpusMode;

/// Default window: the model's context, at most this many tokens.
pub const DEFAULT_WINDOW: usize = 512;
/// Default overlap of consecutive windows of a long document (context only).
pub const DEFAULT_OVERLAP: usize = 64;
/// Default tokens per part file.
pub const DEFAULT_PART_TOKENS: usize = 16384;

/// The corpus flags of `tokit analyze`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct CorpusArgs {
    /// Run the metric over a corpus: a .txt (one document per line), .jsonl, .parquet
    /// file or a directory of .txt files; --output then names a .parquet, .csv or .jsonl
    /// per-token table (docs/corpus.md).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The text field of a .jsonl corpus, or the string column of a Parquet corpus.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Only the first N documents.
    #[arg(long)]
    pub max_docs: Option<usize>,
    /// Tokens per forward: longer documents are cut into windows (default: the model's
    /// context, at most 512).
    #[arg(long)]
    pub window: Option<usize>,
    /// Tokens that consecutive windows share, as context only (default 64).
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Tokens per part file of a resumable run.
    #[arg(long, default_value_t = DEFAULT_PART_TOKENS, hide = true)]
    pub part_tokens: usize,
    /// Test aid: abort the process (as kill -9 would) after writing this many parts.
    #[arg(long, hide = true)]
    pub abort_after_parts: Option<usize>,
    /// Run shard I of N (e.g. 0/4): with --corpus, a contiguous slice of the documents
    /// holding about 1/N of the tokens, written to OUT.shards/part-I-of-N.*; without, a
    /// contiguous range of a permutation test's surrogates, written to
    /// OUT.shards/part-I-of-N.json. `tokit merge OUT` then writes OUT. With --corpus and
    /// without it, a Slurm array task's variables give I and N.
    #[arg(long)]
    pub shard: Option<String>,
    /// The number of shards N, with a Kubernetes Indexed Job's JOB_COMPLETION_INDEX or a
    /// Slurm array's SLURM_ARRAY_TASK_ID as I.
    #[arg(long)]
    pub shards: Option<usize>,
}

/// Everything a corpus analysis needs besides the engine, metric and model.
#[derive(Clone, Debug)]
pub struct CorpusOptions {
    pub corpus: PathBuf,
    pub output: PathBuf,
    pub text_field: String,
    pub max_docs: Option<usize>,
    pub window: Option<usize>,
    pub overlap: Option<usize>,
    /// The metric's parameters.
    pub params: Map<String, Value>,
    pub part_tokens: usize,
    pub abort_after_parts: Option<usize>,
    /// Compute only this shard's documents, into `OUT.shards/part-I-of-N.parquet`.
    pub shard: Option<Shard>,
}

impl CorpusOptions {
    pub fn new(corpus: &Path, output: &Path) -> CorpusOptions {
        CorpusOptions {
            corpus: corpus.to_path_buf(),
            output: output.to_path_buf(),
            text_field: "text".into(),
            max_docs: None,
            window: None,
            overlap: None,
            params: Map::new(),
            part_tokens: DEFAULT_PART_TOKENS,
            abort_after_parts: None,
            shard: None,
        }
    }
}

impl CorpusOptions {
    /// Options from a script's map (`analyze_corpus`): `corpus`, `output`, `text_field`,
    /// `max_docs`, `window`, `overlap`; every other key is a parameter of the metric.
    pub fn from_json(args: Map<String, Value>) -> Result<CorpusOptions> {
        let text = |v: &Value, k: &str| -> Result<String> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("analyze_corpus: `{k}` must be a string, found {v}"))
        };
        let count = |v: &Value, k: &str| -> Result<usize> {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    anyhow!("analyze_corpus: `{k}` must be a whole number ≥ 0, found {v}")
                })
        };
        let (mut corpus, mut output) = (None, None);
        let mut o = CorpusOptions::new(Path::new(""), Path::new(""));
        for (k, v) in args {
            match k.as_str() {
                "corpus" => corpus = Some(text(&v, &k)?),
                "output" => output = Some(text(&v, &k)?),
                "text_field" => o.text_field = text(&v, &k)?,
                "max_docs" => o.max_docs = Some(count(&v, &k)?),
                "window" => o.window = Some(count(&v, &k)?),
                "overlap" => o.overlap = Some(count(&v, &k)?),
                _ => {
                    o.params.insert(k, v);
                }
            }
        }
        o.corpus = corpus
            .ok_or_else(|| anyhow!("analyze_corpus: give `corpus` (a path)"))?
            .into();
        o.output = output
            .ok_or_else(|| {
                anyhow!("analyze_corpus: give `output` (a .parquet, .csv or .jsonl path)")
            })?
            .into();
        Ok(o)
    }
}

/// What a corpus analysis did.
#[derive(Clone, Debug, Serialize)]
pub struct CorpusRun {
    pub output: PathBuf,
    pub summary: PathBuf,
    /// All documents done (false after Ctrl-C: re-run to finish).
    pub complete: bool,
    /// Documents in the output (finished ones, skipped ones not counted).
    pub documents: usize,
    pub tokens: usize,
    /// Documents this run computed (the rest were finished by an earlier run).
    pub computed: usize,
    /// Tokens per second of this run's forwards and metric calls.
    pub tokens_per_s: f64,
    pub packed: bool,
}

/// Output formats, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
    Jsonl,
}

fn format_of(out: &Path) -> Result<Format> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(Format::Parquet),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") => Ok(Format::Jsonl),
        _ => bail!(
            "--output {}: a corpus analysis writes a .parquet, .csv or .jsonl file",
            out.display()
        ),
    }
}

/// `OUT.parts`: the finished parts and the manifest of a run.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".parts");
    PathBuf::from(s)
}

/// `<OUT stem>.summary.json` beside OUT.
pub fn summary_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.summary.json"))
}

/// The contents of one part's JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Part {
    columns: Vec<String>,
    docs: Vec<DocStats>,
    skipped: Vec<Skipped>,
}

/// One unit of computation: a document, or a window of one.
struct Piece {
    doc: u64,
    /// First token of the piece in the document.
    start: usize,
    /// Leading tokens that are context only (the overlap with the previous window).
    skip: usize,
    tokens: Vec<u32>,
    /// The document's last piece.
    last: bool,
}

/// Cut a document into windows of at most `window` tokens; window k > 0 starts `overlap`
/// tokens before the end of window k − 1, and those tokens are context only.
fn windows(doc: u64, tokens: &[u32], window: usize, overlap: usize) -> Vec<Piece> {
    let n = tokens.len();
    let mut out = Vec::new();
    let mut scored_end = 0;
    while scored_end < n {
        let start = scored_end.saturating_sub(overlap);
        let end = (start + window).min(n);
        out.push(Piece {
            doc,
            start,
            skip: scored_end - start,
            tokens: tokens[start..end].to_vec(),
            last: end == n,
        });
        scored_end = end;
    }
    out
}

/// Per-token results of one piece, and what else the metric returned for it.
struct PieceResult {
    columns: Vec<(String, Vec<f32>)>,
    window: Option<WindowResult>,
}

/// A document being assembled from its pieces.
struct Pending {
    doc: u64,
    tokens: usize,
    rows: Rows,
    windows: Vec<WindowResult>,
}

/// The declared per-token tensors of a result as named columns over the call's `n`
/// tokens (`[n]` one column, `[k, n]` k columns `name_i`), and its declared per-document
/// series.
#[allow(clippy::type_complexity)]
fn split_tensors(
    spec: &tokit_sdk::MetricSpec,
    tensors: &std::collections::BTreeMap<String, Tensor>,
    n: usize,
) -> Result<(Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>)> {
    let mut cols = Vec::new();
    for name in &spec.corpus_columns {
        let t = tensors.get(name).ok_or_else(|| {
            anyhow!(
                "metric `{}` returned no `{name}`, one of its declared corpus columns",
                spec.name
            )
        })?;
        let data = t.try_data()?;
        match t.shape() {
            [m] if *m == n => cols.push((table::column_name(name), data.to_vec())),
            [k, m] if *m == n => {
                for (i, row) in data.chunks(n).enumerate().take(*k) {
                    cols.push((table::column_name(&format!("{name}_{i}")), row.to_vec()));
                }
            }
            s => bail!(
                "metric `{}`: corpus column `{name}` has shape {s:?}, not [{n}] or [k, {n}] over the call's {n} tokens",
                spec.name
            ),
        }
    }
    let series = spec
        .corpus_series
        .iter()
        .filter_map(|name| Some((name.clone(), tensors.get(name)?.try_data().ok()?.to_vec())))
        .collect();
    Ok((cols, series))
}

/// The resumable state of a run in `OUT.parts`.
struct PartStore {
    dir: PathBuf,
    next: usize,
    written: usize,
}

impl PartStore {
    /// Open (or create) the parts of `out` for a run described by `manifest`; returns the
    /// finished documents. Refuses parts of a run with other parameters.
    fn open(out: &Path, manifest: &Value) -> Result<(PartStore, Vec<Part>)> {
        let dir = parts_dir(out);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mpath = dir.join("manifest.json");
        if mpath.exists() {
            let old: Value = serde_json::from_str(&std::fs::read_to_string(&mpath)?)
                .with_context(|| format!("reading {}", mpath.display()))?;
            if &old != manifest {
                let diff: Vec<String> = manifest
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| old.get(k.as_str()) != Some(v))
                    .map(|(k, v)| {
                        format!(
                            "{k}: {} now {v}",
                            old.get(k.as_str()).unwrap_or(&Value::Null)
                        )
                    })
                    .collect();
                bail!(
                    "{} holds a run with other parameters ({}); re-run with the same ones to resume, \
                     or delete it (or choose another --output) to start afresh",
                    dir.display(),
                    diff.join("; ")
                );
            }
        } else {
            let text = serde_json::to_string_pretty(manifest)?;
            tokit_model::atomic::write_atomically(&mpath, |w| w.write_all(text.as_bytes()))?;
        }
        let mut parts = Vec::new();
        let mut next = 0;
        for i in 0.. {
            let j = dir.join(format!("part-{i:06}.json"));
            if !j.exists() {
                next = i;
                break;
            }
            let p: Part = serde_json::from_str(&std::fs::read_to_string(&j)?)
                .with_context(|| format!("reading {}", j.display()))?;
            parts.push(p);
        }
        Ok((
            PartStore {
                dir,
                next,
                written: 0,
            },
            parts,
        ))
    }

    fn parquet(&self, i: usize) -> PathBuf {
        self.dir.join(format!("part-{i:06}.parquet"))
    }

    /// Write a part: the rows first, then the JSON that marks it finished.
    fn write(&mut self, rows: &Rows, part: &Part) -> Result<()> {
        let bytes = rows.to_parquet()?;
        tokit_model::atomic::write_atomically(&self.parquet(self.next), |w| w.write_all(&bytes))?;
        let text = serde_json::to_string(part)?;
        let j = self.dir.join(format!("part-{:06}.json", self.next));
        tokit_model::atomic::write_atomically(&j, |w| w.write_all(text.as_bytes()))?;
        self.next += 1;
        self.written += 1;
        Ok(())
    }
}

/// Run `metric` over the corpus of `opts` with `model`.
pub fn analyze_corpus(
    engine: &Engine,
    metric: &str,
    model: &Model,
    opts: &CorpusOptions,
) -> Result<CorpusRun> {
    let format = format_of(&opts.output)?;
    let (_, spec) = engine.plugins.find_metric(metric)?;
    let spec = spec.clone();
    let mode = spec.corpus;
    if mode == CorpusMode::No {
        let able: Vec<String> = engine
            .metrics()
            .into_iter()
            .filter(|(_, s)| s.corpus != CorpusMode::No)
            .map(|(_, s)| s.name)
            .collect();
        bail!(
            "metric `{metric}` does not run on a corpus (metrics that do: {})",
            able.join(", ")
        );
    }
    let known: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
    if let Some(k) = opts.params.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "metric `{metric}` has no parameter `{k}` (parameters: {})",
            known.join(", ")
        );
    }
    let info = model.info();
    let window = opts.window.unwrap_or_else(|| {
        info.context_length
            .unwrap_or(DEFAULT_WINDOW)
            .min(DEFAULT_WINDOW)
    });
    let overlap = opts.overlap.unwrap_or(DEFAULT_OVERLAP.min(window / 2));
    ensure!(
        window >= 2,
        "--window {window}: a window needs at least 2 tokens"
    );
    if let Some(c) = info.context_length {
        ensure!(
            window <= c,
            "--window {window} exceeds the model's context of {c} tokens"
        );
    }
    ensure!(
        overlap >= 1 && overlap < window,
        "--overlap {overlap}: needs 1 ≤ overlap < window ({window}), so every token after a \
         document's first has context"
    );
    ensure!(opts.part_tokens > 0, "part_tokens must be positive");
    let corpus = Corpus::open(&opts.corpus, &opts.text_field)?;
    let (corpus_bytes, corpus_hash) = corpus.fingerprint()?;
    // The packing contract: several documents per forward when the metric takes them and
    // the model keeps them apart; otherwise one document (window) per call.
    let packed = mode == CorpusMode::Packable && model_packs(model);
    let mut manifest = json!({
        "metric": metric,
        "params": opts.params,
        "model": model.path.display().to_string(),
        "model_fingerprint": model.fingerprint,
        "arch": model.arch,
        "corpus": opts.corpus.display().to_string(),
        "corpus_bytes": corpus_bytes,
        "corpus_hash": corpus_hash,
        "text_field": opts.text_field,
        "max_docs": opts.max_docs,
        "window": window,
        "overlap": overlap,
        "packed": packed,
        "tokit_version": env!("CARGO_PKG_VERSION"),
    });
    // Read the whole corpus once before anything is written: its errors come first.
    let total = {
        let mut n = 0usize;
        for d in corpus.documents()? {
            d?;
            n += 1;
            if opts.max_docs.is_some_and(|m| n >= m) {
                break;
            }
        }
        n
    };
    if total == 0 {
        bail!("corpus {} holds no documents", opts.corpus.display());
    }
    // A shard computes its own documents only, and writes its part of the output.
    let (output, format, mine) = match opts.shard {
        None => (opts.output.clone(), format, None),
        Some(s) => {
            let mut tokens = Vec::with_capacity(total);
            let mut ids = Vec::with_capacity(total);
            for d in corpus.documents()?.take(total) {
                let d = d?;
                let n = model
                    .encode(&d.text)
                    .with_context(|| format!("document {}", d.id))?
                    .len();
                tokens.push(n);
                ids.push(d.id);
            }
            let owned: BTreeSet<u64> = shard::assign(&tokens, s.count)
                .into_iter()
                .zip(ids)
                .filter(|&(i, _)| i == s.index)
                .map(|(_, id)| id)
                .collect();
            manifest["shard"] = json!({"index": s.index, "count": s.count, "documents": total});
            (
                shard::part_output(&opts.output, s),
                Format::Parquet,
                Some(owned),
            )
        }
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let total = mine.as_ref().map_or(total, BTreeSet::len);
    let (mut store, done_parts) = PartStore::open(&output, &manifest)?;
    let mut finished: BTreeSet<u64> = BTreeSet::new();
    let mut columns: Option<Vec<String>> = None;
    for p in &done_parts {
        finished.extend(p.docs.iter().map(|d| d.doc));
        finished.extend(p.skipped.iter().map(|d| d.doc));
        if !p.docs.is_empty() {
            columns.get_or_insert_with(|| p.columns.clone());
        }
    }
    let bar = progress_bar(total as u64, finished.len() as u64);

    let mut run = Runner {
        engine,
        metric,
        spec: spec.clone(),
        model,
        params: &opts.params,
        packed,
        columns,
        pending: None,
        part_rows: None,
        part: Part::default(),
        part_tokens: 0,
        computed: 0,
        tokens: 0,
        busy: std::time::Duration::ZERO,
        corpus: &corpus,
    };
    let mut queue: Vec<Piece> = Vec::new();
    let mut queued = 0usize;
    let mut skipped_now = 0usize;
    let mut stopped = false;
    let mut docs = corpus
        .documents()?
        .take(opts.max_docs.unwrap_or(usize::MAX));
    while !stopped {
        let Some(doc) = docs.next().transpose()? else {
            if !queue.is_empty() {
                stopped = run.step(std::mem::take(&mut queue))?;
            }
            break;
        };
        if finished.contains(&doc.id) || mine.as_ref().is_some_and(|m| !m.contains(&doc.id)) {
            continue;
        }
        let tokens = model
            .encode(&doc.text)
            .with_context(|| format!("document {}", doc.id))?;
        if tokens.len() < 2 {
            run.part.skipped.push(Skipped {
                doc: doc.id,
                tokens: tokens.len(),
                reason: "fewer than 2 tokens".into(),
            });
            skipped_now += 1;
            continue;
        }
        for piece in windows(doc.id, &tokens, window, overlap) {
            let len = piece.tokens.len();
            // Fill a pack while the pieces fit in one window (one piece when not packed).
            if !queue.is_empty() && (!packed || queued + len > window) {
                queued = 0;
                stopped = run.step(std::mem::take(&mut queue))?;
                if stopped {
                    break;
                }
                let wrote = run.flush_if_full(&mut store, opts.part_tokens, false)?;
                bar.set_position((finished.len() + run.computed + skipped_now) as u64);
                bar.set_message(run.rate());
                if wrote && opts.abort_after_parts.is_some_and(|n| store.written >= n) {
                    std::process::abort();
                }
            }
            queued += len;
            queue.push(piece);
        }
    }
    // Ctrl-C: the document in progress is dropped; what is finished is written.
    run.pending = None;
    run.flush_if_full(&mut store, opts.part_tokens, true)?;
    bar.finish_and_clear();
    let complete = !stopped;
    let (documents, tokens) = assemble(&output, format, &store, &manifest, complete)?;
    Ok(CorpusRun {
        summary: summary_path(&output),
        output,
        complete,
        documents,
        tokens,
        computed: run.computed,
        tokens_per_s: run.tokens as f64 / run.busy.as_secs_f64().max(1e-9),
        packed,
    })
}

/// Whether `model` runs several documents in one forward, each as if alone.
fn model_packs(model: &Model) -> bool {
    model.info().packing
}

fn progress_bar(total: u64, done: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "corpus [{bar:30}] {pos}/{len} documents, {msg} ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(done);
    bar
}

/// The loop's state: the document being assembled and the part being filled.
struct Runner<'a> {
    engine: &'a Engine,
    metric: &'a str,
    spec: tokit_sdk::MetricSpec,
    model: &'a Model,
    params: &'a Map<String, Value>,
    packed: bool,
    /// The metric's columns (from the first call, or the finished parts).
    columns: Option<Vec<String>>,
    pending: Option<Pending>,
    part_rows: Option<Rows>,
    part: Part,
    part_tokens: usize,
    /// Documents finished in this run.
    computed: usize,
    tokens: usize,
    busy: std::time::Duration,
    corpus: &'a Corpus,
}

impl Runner<'_> {
    fn rate(&self) -> String {
        format!(
            "{:.0} tokens/s",
            self.tokens as f64 / self.busy.as_secs_f64().max(1e-9)
        )
    }

    /// Compute one pack; returns whether to stop (Ctrl-C, during the call or before it
    /// ended: a pack cut short by it is dropped).
    fn step(&mut self, pieces: Vec<Piece>) -> Result<bool> {
        match self.call(pieces) {
            Ok(()) => Ok(host().is_cancelled()),
            Err(_) if host().is_cancelled() => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Compute one pack of pieces and file the results.
    fn call(&mut self, pieces: Vec<Piece>) -> Result<()> {
        let tokens: Vec<u32> = pieces
            .iter()
            .flat_map(|p| p.tokens.iter().copied())
            .collect();
        let mut input = AnalyzeInput {
            model: Some(self.model.clone()),
            tokens: Some(tokens.clone()),
            params: self.params.clone(),
            ..Default::default()
        };
        if self.packed {
            let lens: Vec<f32> = pieces.iter().map(|p| p.tokens.len() as f32).collect();
            input
                .tensors
                .push(("segments".into(), Tensor::new(vec![lens.len()], lens)?));
        }
        let t0 = Instant::now();
        let report = self.engine.analyze(self.metric, &input).with_context(|| {
            let docs: Vec<String> = pieces.iter().map(|p| p.doc.to_string()).collect();
            format!("documents {}", docs.join(", "))
        })?;
        self.busy += t0.elapsed();
        self.tokens += pieces
            .iter()
            .map(|p| p.tokens.len() - p.skip)
            .sum::<usize>();
        let (cols, other) = split_tensors(&self.spec, &report.tensors, tokens.len())?;
        let mut start = 0;
        for piece in pieces {
            let len = piece.tokens.len();
            let mut pr = PieceResult {
                columns: cols
                    .iter()
                    .map(|(n, v)| (n.clone(), v[start + piece.skip..start + len].to_vec()))
                    .collect(),
                window: None,
            };
            // Scalars and other results belong to one document only when it ran alone.
            if !self.packed {
                pr.window = Some(WindowResult {
                    start: piece.start,
                    value: report.value.filter(|v| v.is_finite()),
                    scalars: report
                        .scalars
                        .iter()
                        .map(|(k, &v)| (k.clone(), Some(v).filter(|v| v.is_finite())))
                        .collect(),
                    series: other
                        .iter()
                        .map(|(k, v)| {
                            let v = v.iter().map(|&x| Some(x).filter(|x| x.is_finite()));
                            (k.clone(), v.collect())
                        })
                        .collect(),
                });
            }
            start += len;
            self.file(piece, pr)?;
        }
        Ok(())
    }

    /// Add a piece's results to its document; a finished document goes to the part.
    fn file(&mut self, piece: Piece, r: PieceResult) -> Result<()> {
        let names: Vec<String> = r.columns.iter().map(|(n, _)| n.clone()).collect();
        match &self.columns {
            None => self.columns = Some(names.clone()),
            Some(c) if *c != names => bail!(
                "metric `{}` returned columns {names:?} for document {}, but {c:?} before",
                self.metric,
                piece.doc
            ),
            Some(_) => {}
        }
        let p = self.pending.get_or_insert_with(|| Pending {
            doc: piece.doc,
            tokens: 0,
            rows: Rows::new(names.clone()),
            windows: Vec::new(),
        });
        let n = piece.tokens.len() - piece.skip;
        for (i, &t) in piece.tokens[piece.skip..].iter().enumerate() {
            p.rows.doc.push(piece.doc as i64);
            p.rows.position.push((piece.start + piece.skip + i) as i32);
            p.rows.token_id.push(t as i32);
            p.rows.token.push(self.model.token_str(t));
        }
        for (k, (_, v)) in r.columns.into_iter().enumerate() {
            p.rows.values[k].extend(v);
        }
        p.tokens += n;
        p.windows.extend(r.window);
        if piece.last {
            let Some(p) = self.pending.take() else {
                return Ok(());
            };
            let stats = DocStats {
                doc: p.doc,
                source: self.corpus.source_of(p.doc),
                tokens: p.tokens,
                columns: p
                    .rows
                    .columns
                    .iter()
                    .zip(&p.rows.values)
                    .map(|(c, v)| (c.clone(), Moments::of(v)))
                    .collect(),
                windows: p.windows,
            };
            self.part.docs.push(stats);
            self.part_tokens += p.tokens;
            self.computed += 1;
            match &mut self.part_rows {
                Some(rows) => rows.append(p.rows),
                None => self.part_rows = Some(p.rows),
            }
        }
        Ok(())
    }

    /// Write the part when it holds `limit` tokens (or, with `last`, anything), at a
    /// point where no document is half done. Returns whether a part was written.
    fn flush_if_full(&mut self, store: &mut PartStore, limit: usize, last: bool) -> Result<bool> {
        if self.pending.is_some() || (self.part_tokens < limit && !last) {
            return Ok(false);
        }
        if self.part.docs.is_empty() && self.part.skipped.is_empty() {
            return Ok(false);
        }
        let cols = self.columns.clone().unwrap_or_default();
        let rows = self
            .part_rows
            .take()
            .unwrap_or_else(|| Rows::new(cols.clone()));
        let mut part = std::mem::take(&mut self.part);
        part.columns = cols;
        store.write(&rows, &part)?;
        self.part_tokens = 0;
        Ok(true)
    }
}

/// Assemble OUT and its summary from every finished part, in document order.
fn assemble(
    out: &Path,
    format: Format,
    store: &PartStore,
    manifest: &Value,
    complete: bool,
) -> Result<(usize, usize)> {
    let mut parts: Vec<(usize, Part)> = Vec::new();
    for i in 0..store.next {
        let j = store.dir.join(format!("part-{i:06}.json"));
        let p: Part = serde_json::from_str(&std::fs::read_to_string(&j)?)
            .with_context(|| format!("reading {}", j.display()))?;
        parts.push((i, p));
    }
    let first = |p: &Part| {
        p.docs
            .iter()
            .map(|d| d.doc)
            .chain(p.skipped.iter().map(|d| d.doc))
            .min()
    };
    parts.sort_by_key(|(_, p)| first(p));
    let columns = parts
        .iter()
        .find(|(_, p)| !p.docs.is_empty())
        .map(|(_, p)| p.columns.clone())
        .unwrap_or_default();
    let mut rows = Rows::new(columns.clone());
    let mut docs: Vec<DocStats> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    for (i, p) in parts {
        if !p.docs.is_empty() {
            ensure!(
                p.columns == columns,
                "part {i} has columns {:?}, others {columns:?}",
                p.columns
            );
            let r = Rows::read_parquet(&store.parquet(i))?;
            ensure!(
                r.columns == columns,
                "{}: columns {:?} differ from its JSON {columns:?}",
                store.parquet(i).display(),
                r.columns
            );
            rows.append(r);
        }
        docs.extend(p.docs);
        skipped.extend(p.skipped);
    }
    ensure!(
        rows.doc.windows(2).all(|w| w[0] <= w[1]),
        "{}: parts overlap (documents out of order); delete it and re-run",
        store.dir.display()
    );
    write_outputs(
        out, format, &columns, rows, docs, skipped, manifest, complete,
    )
}

/// Write OUT (rows in document order) and its summary: the end of a single run, of a
/// shard, and of `tokit merge`, so all three write alike.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    out: &Path,
    format: Format,
    columns: &[String],
    rows: Rows,
    mut docs: Vec<DocStats>,
    mut skipped: Vec<Skipped>,
    manifest: &Value,
    complete: bool,
) -> Result<(usize, usize)> {
    ensure!(
        rows.doc.windows(2).all(|w| w[0] <= w[1]),
        "{}: rows out of document order",
        out.display()
    );
    docs.sort_by_key(|d| d.doc);
    skipped.sort_by_key(|d| d.doc);
    let at = || format!("writing {}", out.display());
    match format {
        Format::Parquet => {
            let bytes = rows.to_parquet()?;
            tokit_model::atomic::write_atomically(out, |w| w.write_all(&bytes)).with_context(at)?
        }
        Format::Csv => {
            tokit_model::atomic::write_atomically(out, |w| rows.write_csv(w)).with_context(at)?
        }
        Format::Jsonl => {
            tokit_model::atomic::write_atomically(out, |w| rows.write_jsonl(w)).with_context(at)?
        }
    }
    let tokens = rows.len();
    let summary = json!({
        "metric": manifest["metric"],
        "complete": complete,
        "documents": docs.len(),
        "tokens": tokens,
        "corpus": summary::aggregates(columns, &docs),
        "skipped": skipped,
        "per_document": docs,
        "provenance": manifest,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    let sp = summary_path(out);
    tokit_model::atomic::write_atomically(&sp, |w| w.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", sp.display()))?;
    Ok((docs.len(), tokens))
}

/// `tokit analyze METRIC --corpus ...`: run and print where the results went.
pub fn cli(
    engine: &Engine,
    metric: &str,
    model: Option<&str>,
    params: Map<String, Value>,
    output: Option<&Path>,
    args: &CorpusArgs,
) -> Result<()> {
    let corpus = args
        .corpus
        .as_ref()
        .ok_or_else(|| anyhow!("--corpus missing"))?;
    let model = model
        .ok_or_else(|| anyhow!("analyze --corpus needs --model (to tokenise the documents)"))?;
    let output = output.ok_or_else(|| {
        anyhow!(
            "analyze --corpus needs --output OUT (.parquet, .csv or .jsonl): the per-token table"
        )
    })?;
    let shard = shard::resolve(args.shard.as_deref(), args.shards, |k| {
        std::env::var(k).ok()
    })?;
    let m = engine.load_model(model, &crate::model::LoadOptions::default())?;
    let opts = CorpusOptions {
        shard,
        text_field: args.text_field.clone(),
        max_docs: args.max_docs,
        window: args.window,
        overlap: args.overlap,
        params,
        part_tokens: args.part_tokens,
        abort_after_parts: args.abort_after_parts,
        ..CorpusOptions::new(corpus, output)
    };
    let r = analyze_corpus(engine, metric, &m, &opts)?;
    println!(
        "{metric}: {} documents, {} tokens ({} computed now, {:.1} tokens/s{})",
        r.documents,
        r.tokens,
        r.computed,
        r.tokens_per_s,
        if r.packed { ", packed" } else { "" }
    );
    println!("wrote {} and {}", r.output.display(), r.summary.display());
    if let Some(s) = shard {
        println!(
            "shard {} of {}: when all are done, `tokit merge {}` writes the whole",
            s.index,
            s.count,
            output.display()
        );
    }
    // An interrupted run is no success: a shell script must not go on as if it were done.
    if !r.complete {
        bail!(
            "interrupted (Ctrl-C) after {} documents; re-run the same command to finish",
            r.documents
        );
    }
    Ok(())
}

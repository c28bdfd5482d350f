//! `tokit repl` and `tokit run --watch`: an interactive Rhai prompt over one persistent
//! scope (variables and functions survive between inputs), with completion from Rhai's
//! metadata and the loaded plugins, `:commands`, Ctrl-C that cancels the running
//! evaluation, and file watching: a watched script re-runs when saved, a plugin library
//! that is rebuilt is reloaded (fresh copy, ABI check, init, swap; models are re-created
//! through the new code; on failure the old version stays and the error is shown).

mod helper;
mod watch;

use crate::engine::Engine;
use crate::model::Model;
use crate::plugin::host::host;
use crate::plugin::PluginSet;
use crate::script::ScriptHost;
use anyhow::{anyhow, Context, Result};
use rhai::{Array, Dynamic, Map, Scope, AST};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Editor, ExternalPrinter};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use helper::COMMANDS;

/// What completion draws from; refreshed after every evaluation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    /// Registered and script-defined function names.
    pub functions: Vec<String>,
    /// Variables in scope.
    pub vars: Vec<String>,
    /// Variables holding a model, with the model's hook names.
    pub models: Vec<(String, Vec<String>)>,
    pub metrics: Vec<String>,
    pub plugins: Vec<String>,
}

/// Where messages go: rustyline's external printer while a prompt is up (so they do not
/// break the line being edited), stdout otherwise.
#[derive(Clone, Default)]
pub(crate) struct Out(Arc<Mutex<Option<Box<dyn ExternalPrinter + Send>>>>);

impl Out {
    fn set(&self, p: Box<dyn ExternalPrinter + Send>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    pub fn line(&self, msg: impl std::fmt::Display) {
        let msg = format!("{msg}\n");
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = guard.as_mut() {
            if p.print(msg.clone()).is_ok() {
                return;
            }
        }
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(msg.as_bytes());
        let _ = o.flush();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The REPL's state: the script host (scope), the functions defined so far, watched
/// scripts and the watcher.
pub(crate) struct State {
    host: ScriptHost,
    functions: AST,
    scripts: BTreeSet<PathBuf>,
    watcher: Option<watch::Watcher>,
    /// The version of each watched file last acted on.
    stamps: HashMap<PathBuf, watch::Stamp>,
    out: Out,
    names: Arc<RwLock<Names>>,
    /// Signatures of every registered function (`name(a: T) -> R`).
    signatures: Vec<String>,
    /// tokit's functions with their documentation, for `:help`.
    docs: Vec<FunctionDoc>,
}

impl State {
    fn new(
        tokit: Arc<Engine>,
        out: Out,
        names: Arc<RwLock<Names>>,
        watcher: Option<watch::Watcher>,
    ) -> State {
        let mut host = ScriptHost::new(tokit);
        route_print(&mut host, &out);
        let mut signatures = host.rhai.gen_fn_signatures(true);
        signatures.sort();
        signatures.dedup();
        let docs = function_docs(&host.rhai);
        let mut s = State {
            host,
            functions: AST::empty(),
            scripts: BTreeSet::new(),
            watcher,
            stamps: HashMap::new(),
            out,
            names,
            signatures,
            docs,
        };
        s.refresh_names();
        s
    }

    fn tokit(&self) -> &Engine {
        &self.host.tokit
    }

    /// Publish the names completion uses.
    fn refresh_names(&mut self) {
        let mut functions: Vec<String> = self
            .signatures
            .iter()
            .filter_map(|s| s.split('(').next())
            .filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .map(str::to_string)
            .collect();
        functions.extend(self.functions.iter_functions().map(|f| f.name.to_string()));
        functions.sort();
        functions.dedup();
        let mut vars = Vec::new();
        let mut models = Vec::new();
        for (name, _, v) in self.host.scope.iter_raw() {
            vars.push(name.to_string());
            if let Some(m) = v.clone().try_cast::<Model>() {
                models.push((name.to_string(), m.info().hooks.clone()));
            }
        }
        let t = self.tokit();
        let names = Names {
            functions,
            vars,
            models,
            metrics: t.metrics().into_iter().map(|(_, m)| m.name).collect(),
            plugins: t.plugins.names(),
        };
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
    }

    /// Evaluate one input and print its value or error.
    fn eval_line(&mut self, src: &str) {
        match self
            .host
            .eval_keeping_functions(src, "repl", &mut self.functions)
        {
            Ok(v) => {
                if let Some(s) = self.show(v) {
                    self.out.line(format!("=> {s}"));
                }
            }
            Err(e) => self.out.line(format!("error: {e:#}")),
        }
        self.refresh_names();
    }

    /// A value as the prompt shows it (`to_debug` for Rhai's own types, the registered
    /// `to_string` for tokit's).
    fn show(&self, v: Dynamic) -> Option<String> {
        if v.is_unit() {
            return None;
        }
        let builtin = v.is_string()
            || v.is_char()
            || v.is_int()
            || v.is_float()
            || v.is_bool()
            || v.is_array()
            || v.is_map();
        let f = if builtin {
            "to_debug(v)"
        } else {
            "to_string(v)"
        };
        let mut scope = Scope::new();
        scope.push_dynamic("v", v.clone());
        Some(
            self.host
                .rhai
                .eval_with_scope::<String>(&mut scope, f)
                .unwrap_or_else(|_| format!("{v:?}")),
        )
    }

    /// Run a script file in the scope (its functions stay defined); print errors.
    fn run_script(&mut self, path: &Path) -> bool {
        let r = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: {e}", path.display()))
            .and_then(|src| {
                self.host.eval_keeping_functions(
                    &src,
                    &path.display().to_string(),
                    &mut self.functions,
                )
            });
        self.refresh_names();
        match r {
            Ok(_) => true,
            Err(e) => {
                self.out.line(format!("error: {e:#}"));
                false
            }
        }
    }

    fn watch_plugins(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for p in &self.host.tokit.plugins.plugins {
            if let Err(e) = w.watch_file(&p.path) {
                tracing::warn!("{e:#}");
            }
            self.stamps.insert(p.path.clone(), watch::stamp(&p.path));
        }
    }

    /// Watch a script and run it now.
    fn watch_script(&mut self, path: &Path) -> Result<()> {
        let path = path
            .canonicalize()
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let w = self
            .watcher
            .as_mut()
            .ok_or_else(|| anyhow!("file watching is not available here"))?;
        w.watch_file(&path)?;
        self.scripts.insert(path.clone());
        self.stamps.insert(path.clone(), watch::stamp(&path));
        self.run_script(&path);
        Ok(())
    }

    /// Load a fresh copy of the plugin at `path`, swap it in, and re-create the models in
    /// scope that were made through it. On failure nothing changes.
    fn reload_plugin(&mut self, path: &Path) -> Result<String> {
        let mut set = self.tokit().plugins.clone();
        let (old, new) = set.reload(path)?;
        let tokit = Arc::new(self.tokit().with_plugins(set));
        let mut host = ScriptHost::new(tokit);
        route_print(&mut host, &self.out);
        let entries: Vec<(String, bool, Dynamic)> = self
            .host
            .scope
            .iter()
            .map(|(n, c, v)| (n.to_string(), c, v))
            .collect();
        let mut done = HashMap::new();
        let mut errors = Vec::new();
        for (name, constant, mut v) in entries {
            refresh_models(
                &mut v,
                &old.path,
                &host.tokit.plugins,
                &mut done,
                &mut errors,
            );
            if constant {
                host.scope.push_constant_dynamic(name, v);
            } else {
                host.scope.push_dynamic(name, v);
            }
        }
        self.host = host;
        self.refresh_names();
        let mut msg = format!(
            "plugin {} {} reloaded from {}",
            new.name(),
            new.desc.version,
            path.display()
        );
        if !done.is_empty() {
            msg.push_str(&format!(
                " ({} model{} re-created)",
                done.len(),
                if done.len() == 1 { "" } else { "s" }
            ));
        }
        for e in errors {
            msg.push_str(&format!("\nkept the old model: {e}"));
        }
        Ok(msg)
    }

    /// React to files that settled: reload rebuilt plugins, re-run saved scripts (all
    /// watched scripts after a plugin reload). True when it did anything.
    fn on_changes(&mut self, paths: &BTreeSet<PathBuf>) -> bool {
        let mut reloaded = false;
        let mut saved = BTreeSet::new();
        for p in paths {
            let is_plugin = self.tokit().plugins.plugins.iter().any(|q| &q.path == p);
            if !is_plugin && !self.scripts.contains(p) {
                continue;
            }
            if is_plugin && !watch::wait_stable(p) {
                continue;
            }
            let now = watch::stamp(p);
            if now.is_none() || self.stamps.get(p) == Some(&now) {
                continue;
            }
            self.stamps.insert(p.clone(), now);
            if !is_plugin {
                saved.insert(p.clone());
                continue;
            }
            match self.reload_plugin(p) {
                Ok(msg) => {
                    self.out.line(msg);
                    reloaded = true;
                }
                Err(e) => self
                    .out
                    .line(format!("reload failed, the loaded version stays: {e:#}")),
            }
        }
        let due: Vec<PathBuf> = self
            .scripts
            .iter()
            .filter(|s| reloaded || saved.contains(*s))
            .cloned()
            .collect();
        let acted = reloaded || !due.is_empty();
        for s in due {
            if s.is_file() {
                self.out.line(format!("-- running {}", s.display()));
                self.run_script(&s);
            }
        }
        acted
    }

    /// Run a `:command`; false to quit.
    fn command(&mut self, line: &str) -> bool {
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim().trim_matches('"')),
            None => (line, ""),
        };
        match cmd {
            ":quit" | ":q" | ":exit" => return false,
            ":help" | ":h" => self.help(arg),
            ":plugins" => {
                let t = self.tokit();
                let mut lines = Vec::new();
                for p in &t.plugins.plugins {
                    let provides: Vec<String> = p
                        .desc
                        .architectures
                        .iter()
                        .map(|a| format!("architecture {}", a.name))
                        .chain(p.desc.metrics.iter().map(|m| format!("metric {}", m.name)))
                        .collect();
                    lines.push(format!(
                        "{} {} ({}, ABI {}.{}) {}\n  {}",
                        p.name(),
                        p.desc.version,
                        p.desc.kind,
                        p.abi.0,
                        p.abi.1,
                        p.path.display(),
                        provides.join(", ")
                    ));
                }
                for (f, why) in &t.plugins.failures {
                    lines.push(format!("failed: {}: {why}", f.display()));
                }
                if lines.is_empty() {
                    lines.push("no plugins loaded".into());
                }
                self.out.line(lines.join("\n"));
            }
            ":metrics" => {
                let lines: Vec<String> = self
                    .tokit()
                    .metrics()
                    .into_iter()
                    .map(|(p, m)| format!("{} [{}] ({p}): {}", m.name, m.unit, m.description))
                    .collect();
                self.out.line(if lines.is_empty() {
                    "no metrics".to_string()
                } else {
                    lines.join("\n")
                });
            }
            ":models" => {
                let lines: Vec<String> = self
                    .host
                    .scope
                    .iter_raw()
                    .filter_map(|(n, _, v)| {
                        let m = v.clone().try_cast::<Model>()?;
                        Some(format!(
                            "{n}: {} (plugin {} {}) {}",
                            m.arch,
                            m.plugin.name(),
                            m.plugin.desc.version,
                            m.path.display()
                        ))
                    })
                    .collect();
                self.out.line(if lines.is_empty() {
                    "no models in scope (load one with load_model(path))".to_string()
                } else {
                    lines.join("\n")
                });
            }
            ":hooks" => {
                let m = self
                    .host
                    .scope
                    .get_value::<Dynamic>(arg)
                    .and_then(|v| v.try_cast::<Model>());
                match m {
                    Some(m) => self.out.line(m.info().hooks.join("\n")),
                    None => self.out.line(format!("`{arg}` is not a model variable")),
                }
            }
            ":load" => {
                self.run_script(Path::new(arg));
            }
            ":watch" => {
                if let Err(e) = self.watch_script(Path::new(arg)) {
                    self.out.line(format!("error: {e:#}"));
                }
            }
            ":unwatch" => {
                let p = Path::new(arg).canonicalize().unwrap_or_else(|_| arg.into());
                if self.scripts.remove(&p) {
                    self.out.line(format!("no longer watching {}", p.display()));
                } else {
                    self.out.line(format!("{arg} is not watched"));
                }
            }
            ":reload" => {
                let targets: Vec<PathBuf> = self
                    .tokit()
                    .plugins
                    .plugins
                    .iter()
                    .filter(|p| arg.is_empty() || p.name() == arg || p.path == Path::new(arg))
                    .map(|p| p.path.clone())
                    .collect();
                if targets.is_empty() {
                    self.out.line(format!("no plugin named {arg}"));
                }
                for t in targets {
                    self.stamps.insert(t.clone(), watch::stamp(&t));
                    match self.reload_plugin(&t) {
                        Ok(msg) => self.out.line(msg),
                        Err(e) => self
                            .out
                            .line(format!("reload failed, the loaded version stays: {e:#}")),
                    }
                }
            }
            ":backend" => self.out.line(self.tokit().backend_name()),
            ":clear" => {
                self.host.scope.clear();
                self.functions = AST::empty();
                self.refresh_names();
                self.out.line("scope cleared");
            }
            other => self
                .out
                .line(format!("unknown command {other} (:help lists them)")),
        }
        true
    }

    fn help(&self, name: &str) {
        if name.is_empty() {
            let mut s: Vec<String> = COMMANDS
                .iter()
                .map(|(c, d)| format!("  {c:<9} {d}"))
                .collect();
            s.insert(0, "commands:".into());
            s.push(
                "Tab completes functions, variables, metrics, plugins, hook names and paths;\n\
                 brackets left open continue on the next line; Ctrl-C cancels a running\n\
                 evaluation (the scope stays) or clears the line; Ctrl-D quits."
                    .into(),
            );
            self.out.line(s.join("\n"));
            return;
        }
        let mut lines = Vec::new();
        if let Some((_, d)) = COMMANDS.iter().find(|(c, _)| *c == name) {
            lines.push(format!("{name} {d}"));
        }
        for (plugin, m) in self.tokit().metrics() {
            if m.name != name {
                continue;
            }
            lines.push(format!(
                "metric {} [{}] (plugin {plugin}){}{}\n  {}",
                m.name,
                m.unit,
                if m.needs_model { ", needs a model" } else { "" },
                if m.reconstruction {
                    ", reconstruction"
                } else {
                    ""
                },
                m.description
            ));
            for p in &m.params {
                lines.push(format!(
                    "  {}: {} = {}  {}",
                    p.name, p.kind, p.default, p.doc
                ));
            }
        }
        let documented: Vec<&FunctionDoc> = self.docs.iter().filter(|d| d.name == name).collect();
        for d in &documented {
            lines.push(d.signature.clone());
            lines.extend(d.doc.lines().map(|l| format!("  {l}")));
        }
        let prefix = format!("{name}(");
        lines.extend(
            self.signatures
                .iter()
                .filter(|s| s.starts_with(&prefix))
                .filter(|s| !documented.iter().any(|d| &d.signature == *s))
                .cloned(),
        );
        lines.extend(
            self.functions
                .iter_functions()
                .filter(|f| f.name == name)
                .map(|f| format!("fn {}({})  (defined here)", f.name, f.params.join(", "))),
        );
        if lines.is_empty() {
            lines.push(format!(
                "nothing named `{name}` (a function, metric or :command)"
            ));
        }
        self.out.line(lines.join("\n"));
    }
}

/// A registered function (or property) and its documentation.
#[derive(Debug)]
struct FunctionDoc {
    /// What `:help` looks up: the function's or property's name.
    name: String,
    /// `name(a: T) -> R`, or `Type.property` for a property.
    signature: String,
    /// The doc comment without its `///` leaders.
    doc: String,
}

/// The documented functions registered in `rhai` (Rhai keeps doc comments as metadata).
fn function_docs(rhai: &rhai::Engine) -> Vec<FunctionDoc> {
    let Ok(json) = rhai.gen_fn_metadata_to_json(false) else {
        return vec![];
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let Some(functions) = v.get("functions").and_then(|f| f.as_array()) else {
        return vec![];
    };
    let mut docs: Vec<FunctionDoc> = functions
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?;
            let comments = f.get("docComments")?.as_array()?;
            let doc = comments
                .iter()
                .filter_map(|c| c.as_str())
                .flat_map(str::lines)
                .map(|l| {
                    l.trim_start_matches("///")
                        .strip_prefix(' ')
                        .unwrap_or(l.trim_start_matches("///"))
                })
                .collect::<Vec<_>>()
                .join("\n");
            let signature = f.get("signature")?.as_str()?.to_string();
            Some(match name.strip_prefix("get$") {
                Some(prop) => {
                    let ty = f
                        .get("params")
                        .and_then(|p| p.get(0))
                        .and_then(|p| p.get("type"))
                        .and_then(|t| t.as_str())
                        .unwrap_or("")
                        .trim_start_matches("&mut ");
                    FunctionDoc {
                        name: prop.to_string(),
                        signature: format!("{ty}.{prop}"),
                        doc,
                    }
                }
                None => FunctionDoc {
                    name: name.to_string(),
                    signature,
                    doc,
                },
            })
        })
        .collect();
    docs.sort_by(|a, b| a.signature.cmp(&b.signature));
    docs
}

/// `print` in scripts goes through [`Out`].
fn route_print(host: &mut ScriptHost, out: &Out) {
    let out = out.clone();
    host.rhai.on_print(move |s| out.line(s));
}

/// Replace models made through the plugin at `plugin` (in `v`, arrays and maps in it)
/// with ones loaded again through `plugins`; a model loaded twice is re-created once.
fn refresh_models(
    v: &mut Dynamic,
    plugin: &Path,
    plugins: &PluginSet,
    done: &mut HashMap<usize, Model>,
    errors: &mut Vec<String>,
) {
    if let Some(m) = v.clone().try_cast::<Model>() {
        if m.plugin.path != plugin {
            return;
        }
        let key = Arc::as_ptr(&m.0) as usize;
        let new = match done.get(&key) {
            Some(n) => n.clone(),
            None => match m.reload(plugins) {
                Ok(n) => {
                    done.insert(key, n.clone());
                    n
                }
                Err(e) => {
                    errors.push(format!("{}: {e:#}", m.source.display()));
                    return;
                }
            },
        };
        *v = Dynamic::from(new);
    } else if v.is_array() {
        if let Some(mut a) = v.write_lock::<Array>() {
            for x in a.iter_mut() {
                refresh_models(x, plugin, plugins, done, errors);
            }
        }
    } else if v.is_map() {
        if let Some(mut m) = v.write_lock::<Map>() {
            for x in m.values_mut() {
                refresh_models(x, plugin, plugins, done, errors);
            }
        }
    }
}

/// `~/.local/share/tokit/history` (or under `$XDG_DATA_HOME`).
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    let dir = base.join("tokit");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}

/// The watcher thread: apply settled file changes to the state.
fn spawn_watch_loop(
    state: Arc<Mutex<State>>,
    rx: mpsc::Receiver<notify_debouncer_mini::DebounceEventResult>,
    busy: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        for events in rx {
            let paths = watch::settled(events);
            if paths.is_empty() {
                continue;
            }
            let mut s = lock(&state);
            busy.store(true, Ordering::SeqCst);
            let _ = s.on_changes(&paths);
            busy.store(false, Ordering::SeqCst);
        }
    });
}

/// `tokit repl [SCRIPT...]`.
pub fn run(tokit: Arc<Engine>, scripts: &[PathBuf]) -> Result<()> {
    let names = Arc::new(RwLock::new(Names::default()));
    let out = Out::default();
    let config = rustyline::Config::builder()
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl: Editor<helper::ReplHelper, DefaultHistory> = Editor::with_config(config)?;
    rl.set_helper(Some(helper::ReplHelper::new(names.clone())));
    if let Ok(p) = rl.create_external_printer() {
        out.set(Box::new(p));
    }
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let (tx, rx) = mpsc::channel();
    let watcher = watch::Watcher::new(tx)
        .map_err(|e| tracing::warn!("{e:#}; :watch and plugin reload on rebuild are off"))
        .ok();
    let state = Arc::new(Mutex::new(State::new(tokit, out.clone(), names, watcher)));
    {
        let mut s = lock(&state);
        s.watch_plugins();
        for script in scripts {
            s.run_script(script);
        }
    }
    let busy = Arc::new(AtomicBool::new(false));
    spawn_watch_loop(state.clone(), rx, busy.clone());
    out.line(format!(
        "tokit {} — Rhai with tokit's API; :help for commands, Tab completes, Ctrl-D quits",
        env!("CARGO_PKG_VERSION")
    ));
    loop {
        match rl.readline("tokit> ") {
            Ok(line) => {
                let input = line.trim();
                if input.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line.as_str());
                if input.starts_with(':') {
                    if !lock(&state).command(input) {
                        break;
                    }
                } else {
                    lock(&state).eval_line(&line);
                }
            }
            Err(ReadlineError::Interrupted) => {
                // At the prompt Ctrl-C clears the line; it also stops a watched script
                // running in the background.
                if busy.load(Ordering::SeqCst) {
                    host().cancel_flag().store(true, Ordering::SeqCst);
                    out.line("cancelling the running script");
                }
            }
            Err(ReadlineError::Eof) => break,
            // A line that is not UTF-8 (a stray byte pasted in) is refused, not fatal.
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                out.line(format!("input ignored: {e}"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        if let Err(e) = rl.save_history(h) {
            tracing::warn!("saving the history to {}: {e}", h.display());
        }
    }
    Ok(())
}

/// `tokit run --watch SCRIPT`: run it, then again whenever it is saved or a plugin is
/// rebuilt (the plugin is reloaded first). Ctrl-C stops a run; Ctrl-C while idle quits.
pub fn watch_script(tokit: Arc<Engine>, script: &Path) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let watcher = watch::Watcher::new(tx)?;
    let mut s = State::new(tokit, Out::default(), Arc::default(), Some(watcher));
    s.watch_plugins();
    s.watch_script(script)?;
    let flag = host().cancel_flag();
    flag.store(false, Ordering::SeqCst);
    eprintln!(
        "watching {} and the plugin files; Ctrl-C to stop",
        script.display()
    );
    loop {
        if flag.load(Ordering::SeqCst) {
            return Ok(());
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            // A Ctrl-C during a run stops only that run.
            Ok(events) => {
                if s.on_changes(&watch::settled(events)) {
                    flag.store(false, Ordering::SeqCst);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendChoice, Config};

    #[test]
    fn help_has_the_docs_of_every_tokit_function() {
        let config = Config {
            no_default_plugins: true,
            backend: BackendChoice::Cpu,
            ..Default::default()
        };
        let host = ScriptHost::new(Arc::new(Engine::new(config).unwrap()));
        let docs = function_docs(&host.rhai);
        let find = |name: &str| docs.iter().filter(|d| d.name == name).collect::<Vec<_>>();
        let analyze = find("analyze");
        assert_eq!(analyze.len(), 1, "{docs:?}");
        assert!(
            analyze[0].signature.starts_with("analyze("),
            "{:?}",
            analyze[0]
        );
        assert!(analyze[0].doc.contains("Example:") && !analyze[0].doc.contains("///"));
        assert_eq!(find("forward").len(), 2);
        let value = find("value");
        assert_eq!(value.len(), 1);
        assert_eq!(value[0].signature, "Result.value");
        for name in [
            "load_model",
            "info",
            "hooks",
            "encode",
            "decode",
            "generate",
            "metrics",
            "plugins",
            "call_plugin",
            "tensor",
            "load_tensor",
            "save_tensor",
            "shape",
            "sum",
            "table",
            "save",
            "plot",
            "to_json",
        ] {
            assert!(
                find(name).iter().all(|d| !d.doc.is_empty()) && !find(name).is_empty(),
                "{name}"
            );
        }
    }
}

//! The Rhai surface: a sandboxed Rhai engine with tokit's API registered, limits that stop
//! runaway scripts (operations, call depth, the process's memory), Ctrl-C cancellation, and
//! errors reported as `file:line:col`.

mod api;
mod convert;
/// Public for the fuzz targets (fuzz/), which feed these readers arbitrary maps.
pub mod options;

use crate::engine::Engine;
use crate::plugin::host::host;
use anyhow::{anyhow, Result};
use rhai::{EvalAltResult, Position, Scope};
use std::path::Path;
use std::sync::Arc;

pub use api::{analyze_input, ScriptReport};

/// A Rhai engine bound to a tokit engine; its scope persists across `eval` calls.
pub struct ScriptHost {
    pub rhai: rhai::Engine,
    pub scope: Scope<'static>,
    pub tokit: Arc<Engine>,
}

impl ScriptHost {
    pub fn new(tokit: Arc<Engine>) -> ScriptHost {
        let mut rhai = rhai::Engine::new();
        let limits = &tokit.config.script;
        if limits.max_operations > 0 {
            rhai.set_max_operations(limits.max_operations);
        }
        rhai.set_max_call_levels(limits.max_call_levels);
        // No array, map or string size limits: with them Rhai re-measures a whole array
        // after each operation, which makes every loop that builds data quadratic. The
        // memory guard below bounds what a script can hold instead.
        rhai.set_strict_variables(true);
        let max_memory = limits.memory_limit();
        // Ctrl-C sets the host's cancel flag; stop the script at its next operation. Stop it
        // too when the process holds more than `script.max_memory` (engine/src/memory.rs).
        rhai.on_progress(move |_| {
            if host().is_cancelled() {
                return Some("cancelled (Ctrl-C)".into());
            }
            let limit = max_memory?;
            let used = crate::memory::live_bytes() as u64;
            (used > limit).then(|| memory_message(used, limit).into())
        });
        // A closed stdout (`| head`) must not panic the script.
        rhai.on_print(|s| {
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{s}");
        });
        rhai.on_debug(|s, src, pos| tracing::debug!("{}:{pos}: {s}", src.unwrap_or("script")));
        api::register(&mut rhai, tokit.clone());
        crate::shard::register(&mut rhai, None);
        ScriptHost {
            rhai,
            scope: Scope::new(),
            tokit,
        }
    }

    /// Make this run shard `s` of a grid: `shard_items` and the other shard functions
    /// (engine/src/shard.rs) then give the script its share.
    pub fn set_shard(&mut self, s: Option<crate::corpus::Shard>) {
        crate::shard::register(&mut self.rhai, s);
    }

    /// Run a script file in the persistent scope.
    pub fn run_file(&mut self, path: &Path) -> Result<rhai::Dynamic> {
        let src = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        self.eval_named(&src, &path.display().to_string())
    }

    /// Evaluate source text; errors name `source:line:col`.
    pub fn eval_named(&mut self, src: &str, source: &str) -> Result<rhai::Dynamic> {
        host()
            .cancel_flag()
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut ast = self
            .rhai
            .compile_with_scope(&self.scope, src)
            .map_err(|e| {
                let pos = e.1;
                anyhow!("{}: syntax error: {}", locate(source, pos), e.0)
            })?;
        ast.set_source(source);
        self.rhai
            .eval_ast_with_scope::<rhai::Dynamic>(&mut self.scope, &ast)
            .map_err(|e| {
                anyhow!(
                    "{}",
                    describe(source, &e, self.tokit.config.script.max_operations)
                )
            })
    }
}

impl ScriptHost {
    /// Evaluate source text in the persistent scope, keeping the functions it defines:
    /// `functions` holds those of earlier calls (the REPL's state, as in rhai-repl).
    pub fn eval_keeping_functions(
        &mut self,
        src: &str,
        source: &str,
        functions: &mut rhai::AST,
    ) -> Result<rhai::Dynamic> {
        host()
            .cancel_flag()
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let ast = self
            .rhai
            .compile_with_scope(&self.scope, src)
            .map_err(|e| anyhow!("{}: syntax error: {}", locate(source, e.1), e.0))?;
        let mut merged = functions.merge(&ast);
        merged.set_source(source);
        let r = self
            .rhai
            .eval_ast_with_scope::<rhai::Dynamic>(&mut self.scope, &merged)
            .map_err(|e| {
                anyhow!(
                    "{}",
                    describe(source, &e, self.tokit.config.script.max_operations)
                )
            });
        merged.clear_statements();
        merged.clear_source();
        *functions = merged;
        r
    }
}

/// Why the memory guard stopped a script.
fn memory_message(used: u64, limit: u64) -> String {
    format!(
        "tokit memory use {} passed script.max_memory = {} (tokit.ron; \"0\" turns the guard off)",
        crate::memory::gib(used),
        crate::memory::gib(limit)
    )
}

fn locate(source: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{source}:{l}:{c}"),
        (Some(l), None) => format!("{source}:{l}"),
        _ => source.to_string(),
    }
}

/// A script error as `file:line:col: message`, with the innermost position.
fn describe(source: &str, e: &EvalAltResult, max_ops: u64) -> String {
    let mut err = e;
    // Errors inside functions wrap the real one; report where it actually happened.
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = err
    {
        if inner.position().is_none() {
            break;
        }
        err = inner;
    }
    let msg = match err {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "script stopped after {max_ops} operations (an endless loop? raise `script.max_operations` in tokit.ron)"
        ),
        EvalAltResult::ErrorTerminated(v, _) => format!("script stopped: {v}"),
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string(),
    };
    // Rhai appends " (line x, position y)" to some messages; the prefix says it already.
    let msg = match msg.rfind(" (line ") {
        Some(i) if msg.ends_with(')') => msg[..i].to_string(),
        _ => msg,
    };
    let pos = if err.position().is_none() {
        e.position()
    } else {
        err.position()
    };
    format!("{}: {msg}", locate(source, pos))
}

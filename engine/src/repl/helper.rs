//! The line editor's helper: completion, history hints, matching-bracket highlighting
//! and multi-line input while brackets are open.

use super::Names;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter, MatchingBracketHighlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};
use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The REPL's `:commands` with a one-line description each.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    (
        ":help",
        "[NAME]  this list, or the signature of a function / parameters of a metric",
    ),
    (":plugins", "loaded plugins and what they provide"),
    (":metrics", "every metric with its unit and plugin"),
    (":models", "models held by variables in scope"),
    (":hooks", "VAR  hook points of the model in VAR"),
    (":load", "FILE  run a script file in this scope"),
    (
        ":watch",
        "FILE  run a script now and again whenever it is saved",
    ),
    (":unwatch", "FILE  stop re-running a script"),
    (
        ":reload",
        "[PLUGIN]  load a fresh copy of a plugin (all when none named); models follow",
    ),
    (":backend", "the compute backend"),
    (":clear", "forget every variable and function"),
    (":quit", "leave (also Ctrl-D)"),
];

/// Methods of a `Model` value, offered after `m.`.
const MODEL_METHODS: &[&str] = &[
    "decode",
    "encode",
    "forward",
    "generate",
    "generate_trace",
    "hooks",
    "info",
    "token_str",
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "break", "continue",
    "return", "true", "false", "print", "debug",
];

pub(crate) struct ReplHelper {
    names: Arc<RwLock<Names>>,
    hinter: HistoryHinter,
    brackets: MatchingBracketHighlighter,
}

impl ReplHelper {
    pub fn new(names: Arc<RwLock<Names>>) -> ReplHelper {
        ReplHelper {
            names,
            hinter: HistoryHinter::new(),
            brackets: MatchingBracketHighlighter::new(),
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let (start, words) = complete(&names, line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        self.hinter.hint(line, pos, ctx)
    }
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, pos: usize) -> Cow<'l, str> {
        self.brackets.highlight(line, pos)
    }
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
    fn highlight_char(&self, line: &str, pos: usize, kind: CmdKind) -> bool {
        self.brackets.highlight_char(line, pos, kind)
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

/// True while brackets are open (outside strings and comments) or a backtick string or
/// block comment is unterminated: Enter then starts a new line of the same input.
/// Mismatched brackets count as complete, so Rhai reports the error.
pub(crate) fn is_incomplete(input: &str) -> bool {
    if input.trim_start().starts_with(':') {
        return false;
    }
    let mut stack = Vec::new();
    let mut chars = input.chars().peekable();
    let mut quote: Option<char> = None;
    let mut block = 0usize;
    while let Some(c) = chars.next() {
        if block > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                block += 1;
            }
            continue;
        }
        if let Some(q) = quote {
            if c == '\\' && q != '`' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                block += 1;
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    !stack.is_empty() || block > 0 || quote == Some('`')
}

/// Where an unterminated `"` string starts before `pos` (the index after the quote).
fn open_string(before: &str) -> Option<usize> {
    let mut start = None;
    let mut escaped = false;
    for (i, c) in before.char_indices() {
        match (start, c) {
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(_), '"') if !escaped => start = None,
            (None, '"') => start = Some(i + 1),
            _ => {}
        }
        escaped = false;
    }
    start
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn matching<'a>(words: impl IntoIterator<Item = &'a String>, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = words
        .into_iter()
        .filter(|w| w.starts_with(prefix))
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}

/// File and directory names completing `partial` (directories end in `/`).
fn paths(partial: &str) -> Vec<String> {
    let (dir, file) = match partial.rfind('/') {
        Some(i) => (&partial[..=i], &partial[i + 1..]),
        None => ("", partial),
    };
    let read_from = if dir.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir)
    };
    let Ok(entries) = std::fs::read_dir(read_from) else {
        return vec![];
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with(file) || (file.is_empty() && name.starts_with('.')) {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{dir}{name}{slash}"))
        })
        .collect();
    v.sort();
    v
}

/// Completions at `pos`: where the replaced word starts, and the candidates.
pub(crate) fn complete(n: &Names, line: &str, pos: usize) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    let before = &line[..pos];
    let trimmed = before.trim_start();
    // `:commands` and their arguments.
    if trimmed.starts_with(':') {
        let offset = before.len() - trimmed.len();
        let Some(space) = trimmed.find(char::is_whitespace) else {
            let cmds: Vec<String> = COMMANDS.iter().map(|(c, _)| c.to_string()).collect();
            return (offset, matching(&cmds, trimmed));
        };
        let cmd = &trimmed[..space];
        let arg_start = before
            .rfind(char::is_whitespace)
            .map_or(before.len(), |i| i + 1);
        let arg = &before[arg_start..];
        let words = match cmd {
            ":help" | ":h" => {
                let mut all = n.functions.clone();
                all.extend(n.metrics.iter().cloned());
                all.extend(COMMANDS.iter().map(|(c, _)| c.to_string()));
                matching(&all, arg)
            }
            ":hooks" => matching(n.models.iter().map(|(v, _)| v), arg),
            ":reload" => matching(&n.plugins, arg),
            ":load" | ":watch" | ":unwatch" => paths(arg),
            _ => vec![],
        };
        return (arg_start, words);
    }
    // Inside a string: hook names in capture lists, metric names, plugin names, paths.
    if let Some(start) = open_string(before) {
        let partial = &before[start..];
        let context = before[..start - 1].trim_end();
        let words = if context.ends_with("analyze(") {
            matching(&n.metrics, partial)
        } else if context.ends_with("call_plugin(") || context.ends_with(":reload") {
            matching(&n.plugins, partial)
        } else {
            let hooks = matching(n.models.iter().flat_map(|(_, h)| h), partial);
            let hook_context = ["capture", "hook", "ablate", "interventions"]
                .iter()
                .any(|k| context.contains(k));
            if hook_context && !hooks.is_empty() {
                hooks
            } else {
                paths(partial)
            }
        };
        return (start, words);
    }
    // An identifier, maybe after `value.`.
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_ident(*c))
        .last()
        .map_or(pos, |(i, _)| i);
    let word = &before[word_start..];
    let head = &before[..word_start];
    if let Some(obj) = head.strip_suffix('.') {
        let var: String = obj
            .chars()
            .rev()
            .take_while(|c| is_ident(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let words = if n.models.iter().any(|(v, _)| *v == var) {
            let m: Vec<String> = MODEL_METHODS.iter().map(|s| s.to_string()).collect();
            matching(&m, word)
        } else {
            matching(&n.functions, word)
        };
        return (word_start, words);
    }
    if word.is_empty() {
        return (pos, vec![]);
    }
    let mut all = n.vars.clone();
    all.extend(n.functions.iter().cloned());
    all.extend(KEYWORDS.iter().map(|s| s.to_string()));
    (word_start, matching(&all, word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            functions: vec!["analyze".into(), "load_model".into(), "len".into()],
            vars: vec!["model".into(), "x".into()],
            models: vec![("m".into(), vec!["hook_embed".into(), "hook_logits".into()])],
            metrics: vec!["surprisal".into(), "entropy".into()],
            plugins: vec!["toylm".into(), "info".into()],
        }
    }

    #[test]
    fn brackets_strings_and_comments_decide_multiline_input() {
        assert!(is_incomplete("fn f(a) {"));
        assert!(is_incomplete("let a = [1,\n 2"));
        assert!(!is_incomplete("fn f(a) { a }"));
        assert!(!is_incomplete(r#"print("{")"#));
        assert!(!is_incomplete("let a = 1; // {"));
        assert!(is_incomplete("/* {"));
        assert!(is_incomplete("let s = `two\nlines"));
        assert!(!is_incomplete("f(]"), "mismatch is left to Rhai");
        assert!(!is_incomplete(":help {"));
    }

    #[test]
    fn completes_commands_identifiers_methods_hooks_metrics() {
        let n = names();
        assert_eq!(complete(&n, ":he", 3), (0, vec![":help".to_string()]));
        assert_eq!(complete(&n, ":hooks ", 7), (7, vec!["m".to_string()]));
        assert_eq!(complete(&n, "loa", 3), (0, vec!["load_model".to_string()]));
        assert_eq!(
            complete(&n, "let y = mo", 10),
            (8, vec!["model".to_string()])
        );
        assert_eq!(complete(&n, "m.hoo", 5), (2, vec!["hooks".to_string()]));
        let line = r#"m.forward(t, #{capture: ["hook_e"#;
        assert_eq!(
            complete(&n, line, line.len()),
            (line.len() - 6, vec!["hook_embed".to_string()])
        );
        let line = r#"analyze("sur"#;
        assert_eq!(
            complete(&n, line, line.len()),
            (9, vec!["surprisal".to_string()])
        );
        assert_eq!(open_string(r#"a("x\"y", "z"#), Some(11));
        assert_eq!(open_string(r#"a("x")"#), None);
    }
}

//! `tokit repl` and `tokit run --watch`, driven through a pseudo-terminal as a person
//! would: type, press Tab / Enter / Ctrl-C, read the screen.

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokit_tests::*;

const PROMPT: &str = "tokit> ";

/// A pseudo-terminal session whose output is read as text: escape sequences (colours,
/// cursor moves, bracketed paste, synchronized output) are dropped by a small state
/// machine that keeps its state across reads.
struct Term {
    p: PtySession,
    /// Text seen and not yet matched.
    seen: String,
    /// 0 text, 1 after ESC, 2 in a CSI sequence, 3 in an OSC string.
    esc: u8,
}

impl Term {
    fn new(p: PtySession) -> Term {
        Term {
            p,
            seen: String::new(),
            esc: 0,
        }
    }

    fn feed(&mut self, c: char) {
        self.esc = match (self.esc, c) {
            (0, '\x1b') => 1,
            (0, c) => {
                self.seen.push(c);
                0
            }
            (1, '[') => 2,
            (1, ']') => 3,
            (1, _) => 0,
            (2, c) if ('\x40'..='\x7e').contains(&c) => 0,
            (2, _) => 2,
            (3, '\x07') => 0,
            (3, '\x1b') => 1,
            (3, _) => 3,
            _ => 0,
        };
    }

    /// Wait until `want` appears; return the text before it and forget through it.
    fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(c) = self.p.try_read() {
                self.feed(c);
            }
            if let Some(i) = self.seen.find(want) {
                let before = self.seen[..i].to_string();
                self.seen.drain(..i + want.len());
                return before;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {want:?}; the screen showed:\n{}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&mut self, s: &str) {
        self.p.send(s).unwrap();
        self.p.flush().unwrap();
    }
}

/// A REPL in a temporary directory holding a toylm model (`toy/`, 256 tokens, d = 4), the
/// toylm and info plugins (alone) under the names a plugin directory needs, and an empty
/// home.
struct Repl {
    t: Term,
    dir: tempfile::TempDir,
}

fn plugin_name(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Replace `to` by a copy of `from` the way cargo and editors do: write aside, rename.
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp-new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn spawn(dir: &Path, args: &[&str]) -> Term {
    ensure_built();
    let plugins = dir.join("plugins");
    if !plugins.exists() {
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(
            plugin_file("tokit_testplugin_toylm"),
            plugins.join(plugin_name("tokit_plugin_toylm")),
        )
        .unwrap();
        std::fs::copy(
            plugin_file("tokit_plugin_info"),
            plugins.join(plugin_name("tokit_plugin_info")),
        )
        .unwrap();
        write_toylm(&dir.join("toy"), 256, 4, serde_json::json!({}));
        // Only the plugin directory above: the workspace's own plugins may be rebuilt by
        // another cargo run meanwhile, and would be reloaded (correctly, but noisily).
        std::fs::write(dir.join("tokit.ron"), "(no_default_plugins: true)\n").unwrap();
    }
    let mut cmd = Command::new(target_dir().join(format!("tokit{}", std::env::consts::EXE_SUFFIX)));
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env_remove("XDG_DATA_HOME")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "error")
        .args(["--plugin-dir", plugins.to_str().unwrap()])
        .args(args);
    Term::new(
        spawn_with_options(
            cmd,
            Options::new()
                .timeout_ms(Some(30_000))
                .strip_ansi_escape_codes(false),
        )
        .expect("starting tokit in a pseudo-terminal"),
    )
}

impl Repl {
    fn start() -> Repl {
        let dir = tempfile::tempdir().unwrap();
        let t = spawn(dir.path(), &["repl"]);
        let mut r = Repl { t, dir };
        r.prompt();
        r
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Wait for a prompt, then a moment: rustyline asks the terminal for the cursor
    /// position when it starts a line and would take typed keys for the answer.
    fn prompt(&mut self) {
        self.expect(PROMPT);
        std::thread::sleep(Duration::from_millis(200));
    }

    fn keys(&mut self, s: &str) {
        self.t.keys(s);
    }

    /// Type a line and press Enter.
    fn enter(&mut self, s: &str) {
        self.keys(s);
        self.keys("\r");
    }

    fn expect(&mut self, s: &str) -> String {
        self.t.expect(s)
    }

    /// Enter statements that print nothing and wait for the next prompt (a value is added
    /// so that its output, not a redrawn prompt, says the input is done).
    fn run(&mut self, line: &str) {
        self.eval(&format!("{line} \"done\""), "=> \"done\"");
    }

    /// Enter a line and wait for `want` in what it prints, then for the next prompt.
    fn eval(&mut self, line: &str, want: &str) -> String {
        self.enter(line);
        let seen = self.expect(want);
        self.prompt();
        seen
    }

    /// Ctrl-D; the directory stays until the returned handle is dropped.
    fn quit(mut self) -> tempfile::TempDir {
        self.keys("\x04");
        self.t.p.exp_eof().unwrap();
        self.dir
    }
}

#[test]
fn tab_completes_hook_names_of_a_loaded_model_and_commands_work() {
    let mut r = Repl::start();
    r.run(r#"let m = load_model("toy");"#);
    // Inside a capture list, Tab completes a hook name of the model in scope.
    r.keys(r#"let out = m.forward([1, 2], #{ capture: ["hook_em"#);
    r.keys("\t");
    r.expect("hook_embed");
    r.enter(r#""] }); out["hook_embed"].shape()"#);
    r.expect("=> [2, 4]");
    r.prompt();
    // `m.` completes the model's methods; a unique prefix completes in place.
    r.keys("m.hoo");
    r.keys("\t");
    r.expect("m.hooks");
    r.enter("()");
    r.expect(r#"=> ["hook_embed", "hook_logits"]"#);
    r.prompt();
    r.eval(":hooks m", "hook_logits");
    r.eval(":models", "m: toylm (plugin toylm");
    r.eval(":plugins", "architecture toylm");
    r.eval(":help load_model", "load_model(");
    // A function's documentation and example come with its signature.
    r.eval(":help analyze", "Compute a metric and return its Result.");
    r.eval(":help forward", "`capture`: hook patterns to return");
    r.eval(":help value", "Result.value");
    r.eval(":backend", "cpu");
    // Metric names complete inside `analyze("`; :help shows a metric's parameters.
    r.keys(r#"analyze("surpr"#);
    r.keys("\t");
    r.expect(r#"analyze("surprisal"#);
    r.keys("\x03");
    r.prompt();
    r.eval(":help surprisal", "metric surprisal [");
    r.eval(":metrics", "surprisal [");
    r.eval(":nope", "unknown command :nope");
    // Completion of a command name.
    r.keys(":hel");
    r.keys("\t");
    r.expect(":help");
    r.enter("");
    r.expect(":watch");
    r.prompt();
    r.quit();
}

#[test]
fn multi_line_function_definitions_persist_between_inputs() {
    let mut r = Repl::start();
    // Enter inside an open bracket continues the input on a new line.
    r.enter("fn add3(a, b, c) {");
    r.enter("    let s = a + b;");
    r.enter("    s + c");
    r.run("}");
    r.eval("add3(1, 2, 3)", "=> 6");
    r.run("let k = add3(10, 20, 30);");
    r.eval("k * 2", "=> 120");
    // A later input can define another function that calls the first.
    r.run("fn twice(x) { add3(x, x, 0) }");
    r.eval("twice(21)", "=> 42");
    r.eval("undefined_name + 1", "error: repl:1:1");
    r.eval("k", "=> 60");
    let home = r.path(".local/share/tokit/history");
    let _dir = r.quit();
    let history = std::fs::read_to_string(&home).expect("history file written on exit");
    assert!(history.contains("add3(1, 2, 3)"), "{history}");
}

#[test]
fn ctrl_c_cancels_a_long_loop_and_keeps_the_scope() {
    let mut r = Repl::start();
    r.run("let x = 0;");
    r.enter("loop { x += 1; }");
    std::thread::sleep(Duration::from_millis(1500));
    r.keys("\x03");
    r.expect("cancelled");
    r.prompt();
    r.eval("x > 0", "=> true");
    r.eval("let y = 5; y + 1", "=> 6");
    // Ctrl-C at the prompt clears the line instead of quitting.
    r.keys("this is not evaluated");
    r.keys("\x03");
    r.prompt();
    r.eval("y", "=> 5");
    r.quit();
}

#[test]
fn a_watched_script_reruns_in_the_repl_scope_when_saved() {
    let mut r = Repl::start();
    let script = r.path("watched.rhai");
    std::fs::write(&script, "let w = 1;\nprint(`version ${w}`);\n").unwrap();
    r.enter(":watch watched.rhai");
    r.expect("version 1");
    r.prompt();
    r.eval("w", "=> 1");
    // Save the way editors that write a new file and rename it over the old one do.
    let new = r.path("new.rhai");
    std::fs::write(
        &new,
        "let w = 2;\nfn from_script() { 7 }\nprint(`version ${w}`);\n",
    )
    .unwrap();
    replace_file(&new, &script);
    r.expect("version 2");
    std::thread::sleep(Duration::from_millis(300));
    r.eval("w * 10 + from_script()", "=> 27");
    // A second save is seen too (the directory is watched, not the replaced inode).
    std::fs::write(&new, "let w = 3;\nprint(`version ${w}`);\n").unwrap();
    replace_file(&new, &script);
    r.expect("version 3");
    std::thread::sleep(Duration::from_millis(300));
    r.eval(":unwatch watched.rhai", "no longer watching");
    r.quit();
}

#[test]
fn a_rebuilt_plugin_is_reloaded_and_a_broken_one_is_refused() {
    let mut r = Repl::start();
    r.run(r#"let m = load_model("toy");"#);
    r.run(r#"let ms = [m, #{ inner: m }];"#);
    let installed = r.path("plugins").join(plugin_name("tokit_plugin_toylm"));
    // A rebuild lands: the new file is loaded, models are re-created through it.
    replace_file(&plugin_file("tokit_testplugin_toylm"), &installed);
    r.expect("plugin toylm 0.1.0 reloaded");
    r.expect("1 model re-created");
    std::thread::sleep(Duration::from_millis(300));
    r.eval(r#"m.forward([1, 2, 3])["logits"].shape()"#, "=> [3, 256]");
    r.eval(
        r#"ms[1].inner.forward([4])["logits"].shape()"#,
        "=> [1, 256]",
    );
    // A library built for another ABI major is refused; the loaded version stays.
    replace_file(&plugin_file("tokit_testplugin_abi2"), &installed);
    r.expect("reload failed, the loaded version stays");
    r.expect("ABI");
    std::thread::sleep(Duration::from_millis(300));
    r.eval(r#"m.forward([5])["logits"].shape()"#, "=> [1, 256]");
    r.eval(":plugins", "toylm 0.1.0");
    r.quit();
}

/// The toylm plugin built with the feature `double` (other code: doubled logits) in a
/// target directory of its own, as a developer's rebuild would produce it.
fn build_double_toylm() -> PathBuf {
    let profile = target_dir();
    let profile = profile.file_name().unwrap().to_str().unwrap().to_string();
    let target = target_dir().parent().unwrap().join("repl-reload");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["build", "--quiet", "-p", "tokit-testplugin-toylm"])
        .args(["--features", "double", "--target-dir"])
        .arg(&target);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build");
    assert!(status.success(), "building toylm with `double` failed");
    target
        .join(profile)
        .join(plugin_name("tokit_testplugin_toylm"))
}

#[test]
fn a_plugin_rebuilt_with_new_code_is_swapped_in_and_models_follow() {
    let rebuilt = build_double_toylm();
    let mut r = Repl::start();
    r.run(r#"let m = load_model("toy");"#);
    r.run(r#"let before = m.forward([1, 2, 3])["logits"].sum();"#);
    let installed = r.path("plugins").join(plugin_name("tokit_plugin_toylm"));
    replace_file(&rebuilt, &installed);
    r.expect("plugin toylm 0.1.0 reloaded");
    r.expect("1 model re-created");
    std::thread::sleep(Duration::from_millis(300));
    // The same variable now runs the new code.
    r.eval(
        r#"let after = m.forward([1, 2, 3])["logits"].sum(); before != 0.0 && after == 2.0 * before"#,
        "=> true",
    );
    r.quit();
}

#[test]
fn a_hundred_reloads_leave_the_repl_responsive() {
    let mut r = Repl::start();
    r.run(r#"let m = load_model("toy");"#);
    for i in 0..100 {
        r.enter(":reload toylm");
        r.expect("reloaded");
        r.prompt();
        if i % 25 == 0 {
            r.eval(r#"m.forward([1])["logits"].shape()"#, "=> [1, 256]");
        }
    }
    r.eval(r#"m.forward([1, 2])["logits"].shape()"#, "=> [2, 256]");
    r.eval("40 + 2", "=> 42");
    r.quit();
}

#[test]
fn run_watch_reruns_a_saved_script_and_ctrl_c_stops() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.rhai");
    std::fs::write(&script, "print(\"run one\");\n").unwrap();
    let mut t = spawn(dir.path(), &["run", "--watch", "s.rhai"]);
    t.expect("run one");
    t.expect("watching");
    std::thread::sleep(Duration::from_millis(300));
    let new = dir.path().join("new.rhai");
    std::fs::write(&new, "print(\"run two\");\n").unwrap();
    replace_file(&new, &script);
    t.expect("run two");
    std::thread::sleep(Duration::from_millis(300));
    t.keys("\x03");
    t.p.exp_eof().unwrap();
}

/// A byte that is not UTF-8 in the input is refused with a message; the REPL goes on.
#[test]
fn invalid_utf8_input_does_not_end_the_repl() {
    use std::io::Write;
    let mut child = tokit_command()
        .arg("repl")
        .env("HOME", tempfile::tempdir().unwrap().path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"print(40 + 1);\nprint(\"\xff\xfe\");\nprint(40 + 2);\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("41") && stdout.contains("42"),
        "{stdout}\n{stderr}"
    );
}

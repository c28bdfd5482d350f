//! Progress bars for long analyses (indicatif), and a log writer that keeps `tracing`
//! lines from breaking them. Plugins report through `HostApi::progress`; the engine's
//! own loops (generation) call [`report`] directly. Bars draw only on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;

static BAR: Mutex<Option<(ProgressBar, String)>> = Mutex::new(None);

fn bar() -> std::sync::MutexGuard<'static, Option<(ProgressBar, String)>> {
    BAR.lock().unwrap_or_else(|e| e.into_inner())
}

/// `done` of `total` steps of `label` (total 0: unknown length, a spinner).
pub fn report(done: u64, total: u64, label: &str) {
    let mut g = bar();
    let same = matches!(&*g, Some((_, l)) if l == label);
    if !same {
        if let Some((old, _)) = g.take() {
            old.finish_and_clear();
        }
        let pb = if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        let style = if total > 0 {
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
        } else {
            ProgressStyle::with_template("{spinner} {msg} {pos}")
        };
        if let Ok(style) = style {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(label.to_string());
        *g = Some((pb, label.to_string()));
    }
    if let Some((pb, _)) = &*g {
        if total > 0 {
            pb.set_length(total);
        }
        pb.set_position(done);
        if total > 0 && done >= total {
            pb.finish_and_clear();
            *g = None;
        }
    }
}

/// Clear any bar left by a call that ended early (error, cancel, or no final report).
pub fn finish() {
    if let Some((pb, _)) = bar().take() {
        pb.finish_and_clear();
    }
}

/// `tracing` writer to stderr that hides the bar while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &*bar() {
            Some((pb, _)) => pb.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_start_advance_and_clear() {
        report(1, 4, "granger_map");
        assert!(
            matches!(&*bar(), Some((pb, l)) if l == "granger_map" && pb.position() == 1 && pb.length() == Some(4))
        );
        report(3, 4, "granger_map");
        assert_eq!(bar().as_ref().map(|(pb, _)| pb.position()), Some(3));
        report(4, 4, "granger_map");
        assert!(bar().is_none(), "a finished bar is cleared");
        report(2, 0, "sampling");
        assert!(bar().is_some());
        finish();
        assert!(bar().is_none());
    }
}

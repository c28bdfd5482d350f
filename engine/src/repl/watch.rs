//! File watching for scripts and plugin libraries. Editors that save by writing a new
//! file and renaming it over the old one replace the inode, so a watch on the file itself
//! goes silent after the first save: watch the parent directory and filter by path.

use anyhow::{Context, Result};
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, DebouncedEventKind, Debouncer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long a file must stay unchanged before it counts as saved (or rebuilt).
const QUIET: Duration = Duration::from_millis(400);

pub(crate) struct Watcher {
    debouncer: Debouncer<RecommendedWatcher>,
    dirs: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Debounced events are sent to `tx`.
    pub fn new(tx: Sender<DebounceEventResult>) -> Result<Watcher> {
        Ok(Watcher {
            debouncer: new_debouncer(QUIET, tx).context("starting the file watcher")?,
            dirs: BTreeSet::new(),
        })
    }

    /// Watch `file` (an absolute, canonical path) through its parent directory.
    pub fn watch_file(&mut self, file: &Path) -> Result<()> {
        let Some(dir) = file.parent() else {
            return Ok(());
        };
        if self.dirs.insert(dir.to_path_buf()) {
            if let Err(e) = self
                .debouncer
                .watcher()
                .watch(dir, RecursiveMode::NonRecursive)
            {
                self.dirs.remove(dir);
                return Err(e).with_context(|| format!("watching {}", dir.display()));
            }
        }
        Ok(())
    }
}

/// The paths that settled (no change for [`QUIET`]) in a batch of events.
pub(crate) fn settled(events: DebounceEventResult) -> BTreeSet<PathBuf> {
    match events {
        Ok(events) => events
            .into_iter()
            .filter(|e| e.kind == DebouncedEventKind::Any)
            .map(|e| e.path)
            .collect(),
        Err(e) => {
            tracing::warn!("file watcher: {e}");
            BTreeSet::new()
        }
    }
}

/// What identifies a version of a file: size, modification time and inode. Watch
/// events also come from merely reading a file (our own copy of a plugin, our own run of
/// a script); acting only when the stamp changed keeps those from looping.
pub(crate) type Stamp = Option<(u64, Option<std::time::SystemTime>, u64)>;

pub(crate) fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.len(), m.modified().ok(), ino))
}

/// Wait until `path` keeps the same size and modification time for a moment (a linker
/// may still be writing it); false if it disappeared or kept changing for 10 s.
pub(crate) fn wait_stable(path: &Path) -> bool {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = stamp(path);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(150));
        let now = stamp(path);
        if now.is_none() {
            return false;
        }
        if now == last && now.is_some_and(|(len, _)| len > 0) {
            return true;
        }
        last = now;
    }
    false
}

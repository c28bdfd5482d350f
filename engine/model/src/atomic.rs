//! Atomic file writes: the data goes to a temporary file beside the target, which is then
//! renamed over it, so readers (and existing memory maps of an older file) see the old file
//! or the new one, never half of one. Temporary files left by a writer that was killed are
//! removed by the next write to the same target.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically with `write`, which gets a buffered writer to the temporary file.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(&dir, &name);
    let tmp = dir.join(format!(
        "{}{}-{}",
        tmp_prefix(&name),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let run = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    };
    if let Err(e) = run() {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!(e).context(format!("writing {}", tmp.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!(e).context(format!("renaming {} to {}", tmp.display(), path.display()))
    })
}

/// `.NAME.tmp-`: the temporary files of `NAME` are this followed by `PID-COUNTER`.
fn tmp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Removes the temporary files of `name` in `dir` whose writing process is gone (on Linux,
/// no `/proc/PID`; elsewhere, untouched for a day).
fn remove_stale(dir: &Path, name: &str) {
    let prefix = tmp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let gone = if Path::new("/proc/self").exists() {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600)
        };
        if gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_sweeps_a_killed_writers_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        // A leftover of a process that no longer exists (pid 0 is never a user process),
        // and a file of another target that must stay.
        let stale = d.path().join(".r.json.tmp-0-3");
        let other = d.path().join(".x.json.tmp-0-1");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&other, "half").unwrap();
        write_atomically(&p, |w| w.write_all(b"{}")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        if Path::new("/proc/self").exists() {
            assert!(!stale.exists(), "stale temporary file left");
        }
        assert!(other.exists());
        // A failing writer leaves the old file and no temporary file.
        let e = write_atomically(&p, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(format!("{e:#}").contains("disk full"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".r.json.tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

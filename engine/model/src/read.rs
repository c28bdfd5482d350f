//! Bounded reads of the small files beside a model (config.json, the safetensors index,
//! tokenizer.json): a device such as `/dev/zero`, a directory, or a multi-gigabyte file
//! given by mistake is refused up front, naming the file, instead of being read in full.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

/// Largest `config.json` (real ones are a few KiB).
pub const CONFIG_LIMIT: u64 = 16 << 20;
/// Largest `model.safetensors.index.json` (real ones are well under 1 MiB).
pub const INDEX_LIMIT: u64 = 64 << 20;
/// Largest `tokenizer.json` (the largest vocabularies give files of tens of MiB).
pub const TOKENIZER_LIMIT: u64 = 512 << 20;

/// The bytes of the regular file `path` (`what` names it in errors), at most `limit` bytes.
pub fn read_bounded(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).map_err(|e| anyhow!("reading {what} {}: {e}", path.display()))?;
    if meta.is_dir() {
        bail!("{what} {}: is a directory, expected a file", path.display());
    }
    if !meta.is_file() {
        bail!(
            "{what} {}: not a regular file (a device, pipe or socket), expected a file",
            path.display()
        );
    }
    if meta.len() > limit {
        bail!(
            "{what} {}: {} bytes, more than the {} MiB such a file can reasonably have",
            path.display(),
            meta.len(),
            limit >> 20
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| anyhow!("reading {what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{what} {}: grew past {} MiB while being read",
            path.display(),
            limit >> 20
        );
    }
    Ok(bytes)
}

/// Like [`read_bounded`], as UTF-8 text.
pub fn read_text_bounded(path: &Path, what: &str, limit: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, what, limit)?)
        .map_err(|e| anyhow!("{what} {}: not UTF-8 text ({e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_directories_devices_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bounded(dir.path(), "model config", 10).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_bounded(Path::new("/dev/zero"), "model config", 10).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        let f = dir.path().join("config.json");
        std::fs::write(&f, "x".repeat(11)).unwrap();
        let e = read_bounded(&f, "model config", 10).unwrap_err();
        assert!(e.to_string().contains("11 bytes"), "{e}");
        assert_eq!(read_text_bounded(&f, "model config", 11).unwrap().len(), 11);
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        let e = read_text_bounded(&f, "model config", 11).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }
}

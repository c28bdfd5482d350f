//! Shared by the fuzz targets: a per-process scratch file for readers that take a path.

use std::path::PathBuf;

/// A scratch directory of this process (under the system temp dir), created once.
pub fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tokit-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("creating the fuzz scratch directory");
    d
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("writing the fuzz scratch file");
    p
}

/// Tensors larger than this are not dequantised (a valid header may declare gigabytes).
pub const MAX_ELEMENTS: u64 = 1 << 20;

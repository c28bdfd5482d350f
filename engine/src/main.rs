//! The `tokit` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Counts the heap the process holds, for the scripts' memory guard (`script.max_memory`).
#[global_allocator]
static ALLOC: tokit_engine::memory::CountingAlloc = tokit_engine::memory::CountingAlloc;

/// Keeps freed large blocks in the heap (glibc only). Every analysis allocates and frees
/// multi-megabyte buffers (tensors, a Blahut–Arimoto kernel and its channel); by default
/// glibc returns each block above 128 KiB to the kernel on `free`, and its pages fault in
/// again on the next call: a third of the time of a 1000 × 1000 rate–distortion solve.
/// Blocks up to 32 MiB now stay in the heap, which is trimmed only above 512 MiB free.
/// Settings the user makes through `GLIBC_TUNABLES` or `MALLOC_*_` win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc"))
        || std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"));
    if !user_set {
        // SAFETY: mallopt only changes allocator parameters; called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    let cli = tokit_engine::cli::Cli::parse();
    if cli.verbose == 0 && std::env::var_os("NODEVICE_SELECT").is_none() {
        // Mesa's Vulkan device-select layer probes for a Wayland display during the GPU probe
        // and prints "XDG_RUNTIME_DIR is invalid" twice on every headless machine, even for
        // CPU-only work. The layer only orders devices, so switching it off hides no error;
        // with -v it stays on. Set before any thread starts (environment writes race reads).
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| tokit_engine::progress::LogWriter)
        .with_target(false)
        .init();
    // Ctrl-C cancels the running analysis or script (checked by scripts and plugins).
    let flag = tokit_engine::plugin::host::host();
    if let Err(e) = ctrlc::set_handler(move || {
        flag.cancel_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed)
    }) {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    match tokit_engine::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

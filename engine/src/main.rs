//! The `tokit` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Counts the heap the process holds, for the scripts' memory guard (`script.max_memory`).
#[global_allocator]
static ALLOC: tokit_engine::memory::CountingAlloc = tokit_engine::memory::CountingAlloc;

fn main() -> std::process::ExitCode {
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

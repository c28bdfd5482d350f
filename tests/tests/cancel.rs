//! Ctrl-C stops a running script. In a test binary of its own: the cancel flag is
//! process-global, so a script running in a neighbouring test would reset or see it.

use tokit_engine::script::ScriptHost;
use tokit_tests::*;

#[test]
fn ctrl_c_flag_stops_a_running_script() {
    ensure_built();
    let mut host = ScriptHost::new(std::sync::Arc::new(
        tokit_engine::Engine::new(tokit_engine::Config::default()).unwrap(),
    ));
    let flag = tokit_engine::plugin::host::host();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        flag.cancel_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let err = format!(
        "{:#}",
        host.eval_named("let i = 0;\nloop { i += 1; }", "spin.rhai")
            .unwrap_err()
    );
    t.join().unwrap();
    assert!(err.contains("cancelled"), "{err}");
    // The flag is reset for the next run.
    assert!(host.eval_named("1 + 1", "ok.rhai").is_ok());
}

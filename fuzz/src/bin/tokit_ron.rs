//! `tokit.ron`, the engine's configuration: RON parsing into `Config`, its checks, the
//! warnings for removed fields, and the values the engine derives from it.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(c) = tokit_engine::config::Config::parse(text, "tokit.ron") else {
            return;
        };
        let _ = c.script.memory_limit();
        let _ = c.script.warnings();
        let _ = c.plugin_search_path();
    });
}

//! The option maps of the Rhai API: a JSON object becomes a Rhai map (integers stay
//! integers, as a script writes them), then goes through the readers of `forward` (with its
//! `interventions`), of one intervention, of `generate`, and of `analyze`'s arguments.

use rhai::{Dynamic, Map};
use tokit_engine::script::{analyze_input, options};

fn main() {
    let arrays = vec!["xs".to_string(), "ys".to_string()];
    afl::fuzz!(|data: &[u8]| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        let Ok(d) = rhai::serde::to_dynamic(&v) else {
            return;
        };
        let Some(map) = d.clone().try_cast::<Map>() else {
            return;
        };
        let _ = options::forward_spec(map.clone());
        let _ = options::intervention(&d);
        let _ = options::options::<tokit_engine::GenerateOptions>(map.clone(), "generate");
        let _ = analyze_input("metric", &map, None);
        let _ = analyze_input("metric", &map, Some(&arrays));
        let _ = Dynamic::from_map(map);
    });
}

//! tokit plugin `transformer` (under construction: provides nothing yet).

tokit_sdk::export_plugin! {
    name: "transformer",
    version: env!("CARGO_PKG_VERSION"),
    description: "under construction",
    architectures: [],
    metrics: [],
}

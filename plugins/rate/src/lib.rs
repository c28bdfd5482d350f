//! tokit plugin `rate` (under construction: provides nothing yet).

tokit_sdk::export_plugin! {
    name: "rate",
    version: env!("CARGO_PKG_VERSION"),
    description: "under construction",
    architectures: [],
    metrics: [],
}

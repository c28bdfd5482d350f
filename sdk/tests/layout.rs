//! ABI layout snapshot: any change to the size, alignment or field offsets of a `repr(C)`
//! struct of the ABI changes this table and fails the test. An intended change means a
//! new ABI minor (append-only) or major; regenerate with `TOKIT_BLESS=1 cargo test -p
//! tokit-sdk --test layout` and say so in the changelog.

use tokit_sdk::abi;

fn render() -> String {
    let mut s = format!(
        "# tokit plugin ABI {}.{} layout on {}-bit targets\n",
        abi::ABI_MAJOR,
        abi::ABI_MINOR,
        usize::BITS
    );
    s.push_str(&format!("layout_hash {:#018x}\n", abi::LAYOUT_HASH));
    for (k, v) in abi::layout_table() {
        s.push_str(&format!("{k} {v}\n"));
    }
    s
}

#[test]
fn abi_layout_matches_the_committed_snapshot() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/abi-layout-64.txt");
    if usize::BITS != 64 {
        return; // The snapshot is for 64-bit targets, where plugins are built in practice.
    }
    let now = render();
    if std::env::var_os("TOKIT_BLESS").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == now,
        "the plugin ABI layout changed:\n--- committed\n{committed}\n--- now\n{now}\n\
         Appending fields needs an ABI_MINOR bump; anything else an ABI_MAJOR bump."
    );
}

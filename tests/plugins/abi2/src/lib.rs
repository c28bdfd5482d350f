//! Test plugin from a hypothetical future SDK: its entry declares ABI major 2, so a
//! tokit speaking ABI 1 must refuse it before calling anything.

use tokit_sdk::abi::{HostApi, PluginEntry, PluginVTable, Status, Str};

unsafe extern "C" fn init(_host: *const HostApi, _out: *mut *const PluginVTable) -> Status {
    // Never reached: the host refuses the major version first.
    Status::ERROR
}

#[no_mangle]
pub static TOKIT_PLUGIN_ENTRY: PluginEntry = PluginEntry {
    abi_major: 2,
    abi_minor: 0,
    struct_size: std::mem::size_of::<PluginEntry>() as u32,
    layout_hash: 0,
    sdk_version: Str::from_static("2.0.0"),
    init,
};

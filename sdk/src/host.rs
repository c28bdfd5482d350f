//! The host's services as plain functions: logging, cancellation, progress, tokenising.
//!
//! The host table arrives in `init` and is stored once per loaded copy of the library.

use crate::abi::{self, HostApi, Str, TextSink};
use crate::error::{Error, Result};
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

static HOST: AtomicPtr<HostApi> = AtomicPtr::new(std::ptr::null_mut());

/// Called by the generated `init`: remember the host table (it lives for the process).
#[doc(hidden)]
pub fn install(host: *const HostApi) {
    HOST.store(host as *mut HostApi, Ordering::Release);
}

pub(crate) fn api() -> Result<&'static HostApi> {
    let p = HOST.load(Ordering::Acquire);
    if p.is_null() {
        return Err(Error::msg(
            "tokit host not initialised (plugin used outside the engine?)",
        ));
    }
    // SAFETY: the host guarantees the table outlives every plugin call.
    let api = unsafe { &*p };
    if (api.struct_size as usize) < std::mem::size_of::<HostApi>() {
        return Err(Error::msg(format!(
            "host table too old: {} bytes, this plugin needs {}",
            api.struct_size,
            std::mem::size_of::<HostApi>()
        )));
    }
    Ok(api)
}

/// Collects text written by the host into a `String`.
pub(crate) struct TextBuf(pub String);

unsafe extern "C" fn write_text(ctx: *mut c_void, text: Str) {
    // SAFETY: ctx is the `TextBuf` passed in `sink()`; text is valid during the call.
    let buf = unsafe { &mut *(ctx as *mut TextBuf) };
    if let Ok(s) = unsafe { text.to_str() } {
        buf.0.push_str(s);
    }
}

impl TextBuf {
    pub fn new() -> TextBuf {
        TextBuf(String::new())
    }
    pub fn sink(&mut self) -> TextSink {
        TextSink {
            ctx: self as *mut TextBuf as *mut c_void,
            write: write_text,
        }
    }
}

/// Turn a host status plus its error text into a `Result`.
pub(crate) fn check(status: abi::Status, err: TextBuf, what: &str) -> Result<()> {
    match status {
        abi::Status::OK => Ok(()),
        abi::Status::CANCELLED => Err(Error::cancelled()),
        _ if err.0.is_empty() => Err(Error::msg(format!("{what} failed (status {})", status.0))),
        _ => Err(Error::msg(err.0)),
    }
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Log through the host's `tracing` subscriber (target = the plugin's name).
pub fn log(level: Level, target: &str, message: &str) {
    let code = match level {
        Level::Error => abi::LOG_ERROR,
        Level::Warn => abi::LOG_WARN,
        Level::Info => abi::LOG_INFO,
        Level::Debug => abi::LOG_DEBUG,
        Level::Trace => abi::LOG_TRACE,
    };
    if let Ok(api) = api() {
        // SAFETY: valid host table; strings live through the call.
        unsafe { (api.log)(api.ctx, code, Str::new(target), Str::new(message)) }
    }
}

/// True once the user asked to cancel. Poll it in long loops and return
/// `Err(Error::cancelled())`.
pub fn is_cancelled() -> bool {
    match api() {
        // SAFETY: valid host table.
        Ok(api) => unsafe { (api.is_cancelled)(api.ctx) },
        Err(_) => false,
    }
}

/// `Err(cancelled)` if the user asked to cancel.
pub fn check_cancelled() -> Result<()> {
    if is_cancelled() {
        Err(Error::cancelled())
    } else {
        Ok(())
    }
}

/// Report progress of the current call (`total` 0 = unknown).
pub fn progress(done: u64, total: u64, label: &str) {
    if let Ok(api) = api() {
        // SAFETY: valid host table.
        unsafe { (api.progress)(api.ctx, done, total, Str::new(label)) }
    }
}

/// Encode `text` with a tokenizer known to the host: a `tokenizer.json` path or `"bytes"`.
pub fn tokenize(tokenizer: &str, text: &str) -> Result<Vec<u32>> {
    unsafe extern "C" fn put(ctx: *mut c_void, ids: *const u32, n: usize) {
        // SAFETY: ctx is the Vec below; ids valid for n during the call.
        let out = unsafe { &mut *(ctx as *mut Vec<u32>) };
        if n > 0 {
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(ids, n) });
        }
    }
    let api = api()?;
    let mut ids: Vec<u32> = Vec::new();
    let sink = abi::IdSink {
        ctx: &mut ids as *mut Vec<u32> as *mut c_void,
        put,
    };
    let mut err = TextBuf::new();
    let e = err.sink();
    // SAFETY: all pointers live through the call.
    let st = unsafe { (api.tokenize)(api.ctx, Str::new(tokenizer), Str::new(text), &sink, &e) };
    check(st, err, "tokenize")?;
    Ok(ids)
}

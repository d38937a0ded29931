//! The gonext plugin SDK for Rust (ABI version 1, see ABI.md).
//!
//! Dependency-free, so it builds offline with a bare `rustc` (no crates.io): the ABI glue
//! (`gn_alloc`, `gn_free`, `gn_handle_hook`, `gn_handle_job`, exported by [`plugin!`]), a panic
//! hook that reports `message at file:line` through `gn_panic`, a small [`Json`] value with
//! parse/serialize, and typed wrappers for the host functions returning `Result<_, HostError>`.
//!
//! ```ignore
//! use gonext::{Hook, HookResult, Json};
//! fn wp_head(_hook: &Hook) -> HookResult { Ok(Some(Json::obj([("meta", Json::Array(vec![]))]))) }
//! gonext::plugin! { actions: { "wp_head" => wp_head }, filters: {}, jobs: {} }
//! ```

use std::alloc::{alloc, dealloc, Layout};
use std::fmt::{self, Write as _};

// --- host imports (module `env`) ----------------------------------------------------------------

#[link(wasm_import_module = "env")]
extern "C" {
    fn gn_log(level: i32, ptr: *const u8, len: i32);
    fn gn_panic(ptr: *const u8, len: i32);
    fn gn_time_ms() -> i64;
    fn gn_host_call(name_ptr: *const u8, name_len: i32, payload_ptr: *const u8, payload_len: i32) -> i64;
}

// --- memory: what the host allocates in, and frees ---------------------------------------------

/// `gn_alloc`: `size` bytes (align 1) or 0; a zero-size request still gets a real block, so the
/// pointer is never confused with "out of memory".
#[doc(hidden)]
pub fn abi_alloc(size: i32) -> i32 {
    if size < 0 {
        return 0;
    }
    match Layout::from_size_align(size.max(1) as usize, 1) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc(layout) as i32 },
        Err(_) => 0,
    }
}

/// `gn_free`: gives back a block from [`abi_alloc`] (or a body this SDK returned) of `size` bytes.
#[doc(hidden)]
pub fn abi_free(ptr: i32, size: i32) {
    if ptr == 0 || size < 0 {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(size.max(1) as usize, 1) {
        // SAFETY: the host hands back exactly the (ptr, size) pairs it got from gn_alloc or a body.
        unsafe { dealloc(ptr as *mut u8, layout) }
    }
}

/// A block the host wrote (its result of a host call): read, then freed with the size it has.
fn take_block(ptr: i32, len: i32) -> Vec<u8> {
    // SAFETY: the host wrote `len` bytes at `ptr`, a block it got from our gn_alloc.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) }.to_vec();
    abi_free(ptr, len);
    bytes
}

/// Packs a body for the host: the block is leaked here and freed by the host's `gn_free(p, n)`.
fn body(bytes: Vec<u8>) -> i64 {
    if bytes.is_empty() {
        return 0;
    }
    let len = bytes.len() as i64;
    let block = Box::into_raw(bytes.into_boxed_slice()) as *mut u8 as u32 as i64;
    (block << 32) | len
}

const STATUS_ERROR: i64 = -1;
const STATUS_OOM: i64 = -2;
const STATUS_BAD_PAYLOAD: i64 = -3;
const STATUS_UNKNOWN_HOOK: i64 = -4;

fn status(len: i64) -> i64 {
    len & 0xffff_ffff
}

// --- panics -> gn_panic ------------------------------------------------------------------------

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = if let Some(text) = info.payload().downcast_ref::<&str>() {
                (*text).to_string()
            } else if let Some(text) = info.payload().downcast_ref::<String>() {
                text.clone()
            } else {
                "panic".to_string()
            };
            let text = match info.location() {
                Some(at) => format!("{message} at {}:{}:{}", at.file(), at.line(), at.column()),
                None => message,
            };
            // SAFETY: gn_panic reads `len` bytes and ends the call; it never returns.
            unsafe { gn_panic(text.as_ptr(), text.len() as i32) }
        }));
    });
}

// --- hooks and jobs -----------------------------------------------------------------------------

/// What a hook or job handler returns: `Ok(None)` no body, `Ok(Some(json))` a body (for a filter:
/// the new value, which the SDK wraps as `{"value": ...}`), `Err` a status.
pub type HookResult = Result<Option<Json>, Error>;

/// A handler's failure, sent to the host as the ABI's status.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// `-1` (`HookError`, status `error`); the message goes to the plugin log at error level.
    Failed(String),
    /// `-2`: out of memory.
    OutOfMemory,
    /// `-3`: the payload is not what this hook expects.
    BadPayload(String),
}

impl From<HostError> for Error {
    /// `?` on a host call inside a handler: the call fails with the host's reason.
    fn from(err: HostError) -> Self {
        match err {
            HostError::OutOfMemory => Error::OutOfMemory,
            other => Error::Failed(other.to_string()),
        }
    }
}

/// One hook or job call, decoded from the host's payload.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `"action"`, `"filter"` or `"job"`.
    pub kind: String,
    /// The hook's (or job's) name.
    pub name: String,
    /// A filter's value (`Json::Null` otherwise).
    pub value: Json,
    /// The hook's arguments (empty for a job).
    pub args: Vec<Json>,
    /// A job's payload (`Json::Null` otherwise).
    pub payload: Json,
    /// A job's id, its idempotency key (empty otherwise).
    pub id: String,
}

impl Hook {
    /// `args[i]`, or `Json::Null` past the end: a hook's optional argument reads as null.
    pub fn arg(&self, i: usize) -> &Json {
        self.args.get(i).unwrap_or(&Json::Null)
    }
}

/// A handler for one hook or job name.
pub type Handler = fn(&Hook) -> HookResult;

/// The table [`plugin!`] builds: name -> handler, per kind.
#[doc(hidden)]
pub struct Table {
    pub actions: &'static [(&'static str, Handler)],
    pub filters: &'static [(&'static str, Handler)],
    pub jobs: &'static [(&'static str, Handler)],
}

fn decode(payload: &[u8], job: bool) -> Result<Hook, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())?;
    let mut fields = match Json::parse(text).map_err(|e| e.to_string())? {
        Json::Object(fields) => fields,
        _ => return Err("payload is not an object".into()),
    };
    // Moved out of the parsed payload, not cloned: a post's body can be most of the call's work.
    let mut take = |key: &str| fields.iter().position(|(k, _)| k == key).map(|i| fields.swap_remove(i).1);
    let kind = match take("kind") { Some(Json::String(kind)) => kind, _ => return Err("payload has no kind".into()) };
    let name = match take(if job { "job" } else { "hook" }) {
        Some(Json::String(name)) => name,
        _ => return Err("payload has no name".into()),
    };
    let args = match take("args") {
        None if job => Vec::new(),
        Some(Json::Array(items)) => items,
        _ => return Err("payload's args is not an array".into()),
    };
    let value = take("value");
    if kind == "filter" && value.is_none() {
        return Err("filter payload has no value".into());
    }
    let id = match take("id") { Some(Json::String(id)) => id, _ => String::new() };
    Ok(Hook { kind, name, value: value.unwrap_or(Json::Null), args, payload: take("payload").unwrap_or(Json::Null), id })
}

fn read_guest(ptr: i32, len: i32) -> &'static [u8] {
    if len <= 0 {
        return &[];
    }
    // SAFETY: the host wrote `len` bytes at `ptr` (a block from gn_alloc) for this call.
    unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) }
}

/// `gn_handle_hook` / `gn_handle_job`: decode, find the handler, encode its result.
#[doc(hidden)]
pub fn dispatch(table: &Table, job: bool, name_ptr: i32, name_len: i32, payload_ptr: i32, payload_len: i32) -> i64 {
    install_panic_hook();
    let name = match std::str::from_utf8(read_guest(name_ptr, name_len)) {
        Ok(name) => name,
        Err(_) => return status(STATUS_BAD_PAYLOAD),
    };
    let lists = [("job", table.jobs), ("action", table.actions), ("filter", table.filters)];
    let found = lists
        .iter()
        .filter(|(kind, _)| (*kind == "job") == job)
        .find_map(|(kind, list)| list.iter().find(|(n, _)| *n == name).map(|(_, h)| (*kind, *h)));
    let (kind, handler) = match found {
        Some(found) => found,
        None => return status(STATUS_UNKNOWN_HOOK),
    };
    let hook = match decode(read_guest(payload_ptr, payload_len), job) {
        Ok(hook) if hook.kind == kind && hook.name == name => hook,
        Ok(_) => return status(STATUS_BAD_PAYLOAD),
        Err(reason) => {
            log(Level::Warning, &format!("{name}: bad payload: {reason}"));
            return status(STATUS_BAD_PAYLOAD);
        }
    };
    match handler(&hook) {
        Ok(None) => 0,
        Ok(Some(value)) if kind == "filter" => body(Json::obj([("value", value)]).to_string().into_bytes()),
        Ok(Some(value)) => body(value.to_string().into_bytes()),
        Err(Error::Failed(message)) => {
            log(Level::Error, &message);
            status(STATUS_ERROR)
        }
        Err(Error::OutOfMemory) => status(STATUS_OOM),
        Err(Error::BadPayload(reason)) => {
            log(Level::Warning, &format!("{name}: bad payload: {reason}"));
            status(STATUS_BAD_PAYLOAD)
        }
    }
}

/// Exports the ABI for a plugin: `gonext::plugin! { actions: { "name" => handler, ... },
/// filters: { ... }, jobs: { ... } }` (each list may be empty; `gn_handle_job` is exported either
/// way, answering `unknown_hook` when there are no jobs).
#[macro_export]
macro_rules! plugin {
    (actions: { $($an:literal => $ah:path),* $(,)? }, filters: { $($fnm:literal => $fh:path),* $(,)? },
     jobs: { $($jn:literal => $jh:path),* $(,)? } $(,)?) => {
        static GONEXT_TABLE: $crate::Table = $crate::Table {
            actions: &[$(($an, $ah as $crate::Handler)),*],
            filters: &[$(($fnm, $fh as $crate::Handler)),*],
            jobs: &[$(($jn, $jh as $crate::Handler)),*],
        };
        #[no_mangle]
        pub extern "C" fn gn_alloc(size: i32) -> i32 { $crate::abi_alloc(size) }
        #[no_mangle]
        pub extern "C" fn gn_free(ptr: i32, size: i32) { $crate::abi_free(ptr, size) }
        #[no_mangle]
        pub extern "C" fn gn_handle_hook(np: i32, nl: i32, pp: i32, pl: i32) -> i64 {
            $crate::dispatch(&GONEXT_TABLE, false, np, nl, pp, pl)
        }
        #[no_mangle]
        pub extern "C" fn gn_handle_job(np: i32, nl: i32, pp: i32, pl: i32) -> i64 {
            $crate::dispatch(&GONEXT_TABLE, true, np, nl, pp, pl)
        }
    };
}

// --- logging and time ---------------------------------------------------------------------------

/// A log line's level (ABI.md: 0 debug ... 3 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
}

/// One line in the plugin's log (the live log page), through `gn_log`.
pub fn log(level: Level, message: &str) {
    // SAFETY: the host reads `len` bytes at `ptr`.
    unsafe { gn_log(level as i32, message.as_ptr(), message.len() as i32) }
}

pub fn debug(message: &str) { log(Level::Debug, message) }
pub fn info(message: &str) { log(Level::Info, message) }
pub fn warn(message: &str) { log(Level::Warning, message) }
pub fn error(message: &str) { log(Level::Error, message) }

/// Wall-clock milliseconds since the Unix epoch (`gn_time_ms`).
pub fn time_ms() -> i64 {
    // SAFETY: no arguments, no memory.
    unsafe { gn_time_ms() }
}

// --- host functions -----------------------------------------------------------------------------

/// Why a host call failed: the ABI's negative statuses, plus a result this SDK could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// `-1`: the host function refused (for example `kv.incr` on a non-integer).
    Failed,
    /// `-2`: out of memory placing the result.
    OutOfMemory,
    /// `-3`: the host could not decode the payload.
    BadPayload,
    /// `-5`: the plugin was not granted the function's capability.
    CapabilityDenied,
    /// `-6`: the site has no function by that name.
    UnknownFunction,
    /// A status or result outside the ABI (named by the text).
    BadResult(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Failed => f.write_str("host function failed"),
            HostError::OutOfMemory => f.write_str("out of memory"),
            HostError::BadPayload => f.write_str("host function refused the payload"),
            HostError::CapabilityDenied => f.write_str("capability denied"),
            HostError::UnknownFunction => f.write_str("unknown host function"),
            HostError::BadResult(why) => write!(f, "unreadable host result: {why}"),
        }
    }
}

/// Calls any host function by name with a JSON payload (`gn_host_call`); built-ins have wrappers below.
pub fn host_call(name: &str, payload: &Json) -> Result<Json, HostError> {
    let text = payload.to_string();
    // SAFETY: the host reads the two ranges; it writes its result into a block from our gn_alloc.
    let packed = unsafe { gn_host_call(name.as_ptr(), name.len() as i32, text.as_ptr(), text.len() as i32) };
    let ptr = (packed >> 32) as u32 as i32;
    let len = packed as i32;
    if ptr == 0 {
        return Err(match len {
            0 => return Ok(Json::Null),
            -1 => HostError::Failed,
            -2 => HostError::OutOfMemory,
            -3 => HostError::BadPayload,
            -5 => HostError::CapabilityDenied,
            -6 => HostError::UnknownFunction,
            other => HostError::BadResult(format!("status {other}")),
        });
    }
    if len <= 0 {
        return Err(HostError::BadResult(format!("length {len}")));
    }
    let bytes = take_block(ptr, len);
    let text = std::str::from_utf8(&bytes).map_err(|_| HostError::BadResult("not UTF-8".into()))?;
    Json::parse(text).map_err(|e| HostError::BadResult(e.to_string()))
}

fn field(result: &Json, key: &str) -> Result<Json, HostError> {
    result.get(key).cloned().ok_or_else(|| HostError::BadResult(format!("no {key:?} in the result")))
}

fn found_value(result: Json) -> Result<Option<Json>, HostError> {
    match result.get("found") {
        Some(Json::Bool(true)) => field(&result, "value").map(Some),
        Some(Json::Bool(false)) => Ok(None),
        _ => Err(HostError::BadResult("no \"found\" in the result".into())),
    }
}

/// The plugin's private key-value store (capability `kv`).
pub mod kv {
    use super::{field, found_value, host_call, HostError, Json};

    /// The value under `key`, `None` when absent (or expired).
    pub fn get(key: &str) -> Result<Option<Json>, HostError> {
        found_value(host_call("kv.get", &Json::obj([("key", Json::from(key))]))?)
    }

    /// Stores `value` under `key`.
    pub fn set(key: &str, value: Json) -> Result<(), HostError> {
        host_call("kv.set", &Json::obj([("key", Json::from(key)), ("value", value)])).map(drop)
    }

    /// Stores `value` under `key` until `ttl_seconds` have passed.
    pub fn set_ttl(key: &str, value: Json, ttl_seconds: i64) -> Result<(), HostError> {
        let payload = Json::obj([("key", Json::from(key)), ("value", value), ("ttlSeconds", Json::Int(ttl_seconds))]);
        host_call("kv.set", &payload).map(drop)
    }

    /// Removes `key`; true when it was there.
    pub fn delete(key: &str) -> Result<bool, HostError> {
        let result = host_call("kv.delete", &Json::obj([("key", Json::from(key))]))?;
        field(&result, "deleted")?.as_bool().ok_or_else(|| HostError::BadResult("deleted".into()))
    }

    /// The keys starting with `prefix` (all keys for "").
    pub fn list(prefix: &str) -> Result<Vec<String>, HostError> {
        let result = host_call("kv.list", &Json::obj([("prefix", Json::from(prefix))]))?;
        match field(&result, "keys")? {
            Json::Array(items) => items
                .iter()
                .map(|k| k.as_str().map(str::to_string).ok_or_else(|| HostError::BadResult("keys".into())))
                .collect(),
            _ => Err(HostError::BadResult("keys".into())),
        }
    }

    /// Adds `by` to the integer under `key` (a missing key counts from 0), atomically; the new value.
    pub fn incr(key: &str, by: i64) -> Result<i64, HostError> {
        let result = host_call("kv.incr", &Json::obj([("key", Json::from(key)), ("by", Json::Int(by))]))?;
        field(&result, "value")?.as_i64().ok_or_else(|| HostError::BadResult("value".into()))
    }

    /// Stores `value` only if the key holds `expected` (`None`: absent); (swapped, value now stored).
    pub fn cas(key: &str, expected: Option<Json>, value: Json) -> Result<(bool, Json), HostError> {
        let payload = Json::obj([
            ("key", Json::from(key)),
            ("expected", expected.unwrap_or(Json::Null)),
            ("value", value),
        ]);
        let result = host_call("kv.cas", &payload)?;
        let ok = field(&result, "ok")?.as_bool().ok_or_else(|| HostError::BadResult("ok".into()))?;
        Ok((ok, field(&result, "value")?))
    }
}

/// The plugin's own settings (the manifest's schema, the admin's values, defaults filled in).
pub mod settings {
    use super::{field, found_value, host_call, Json, HostError};

    /// One setting, `None` when the schema has no such key.
    pub fn get(key: &str) -> Result<Option<Json>, HostError> {
        found_value(host_call("settings.get", &Json::obj([("key", Json::from(key))]))?)
    }

    /// Every setting, as an object.
    pub fn all() -> Result<Json, HostError> {
        field(&host_call("settings.get", &Json::obj::<&str, 0>([]))?, "settings")
    }
}

/// `plugin.info`: slug, version, granted capabilities, hosts, the hooks the site offers.
pub fn plugin_info() -> Result<Json, HostError> {
    host_call("plugin.info", &Json::obj::<&str, 0>([]))
}

/// Background jobs (capability `jobs.enqueue`).
pub mod jobs {
    use super::{field, host_call, HostError, Json};

    /// Queues `job` with `payload` after `delay_seconds` (0: now); the task id.
    pub fn enqueue(job: &str, payload: Json, delay_seconds: i64) -> Result<String, HostError> {
        let mut fields = vec![("job".to_string(), Json::from(job)), ("payload".to_string(), payload)];
        if delay_seconds > 0 {
            fields.push(("delaySeconds".to_string(), Json::Int(delay_seconds)));
        }
        let result = host_call("jobs.enqueue", &Json::Object(fields))?;
        field(&result, "id")?.as_str().map(str::to_string).ok_or_else(|| HostError::BadResult("id".into()))
    }
}

/// Outbound HTTP (capability `http.fetch`, to the hosts the manifest lists and the admin granted).
pub mod http {
    use super::{field, host_call, HostError, Json};

    /// A fetch's answer.
    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: i64,
        /// Header name -> value (an object).
        pub headers: Json,
        /// The body as text (`body_base64` is set instead when it is not UTF-8).
        pub body: String,
        pub body_base64: Option<String>,
        /// The final URL after redirects.
        pub url: String,
    }

    /// `method` `url` with `headers` (an object, or `Json::Null`) and an optional text body.
    pub fn fetch(method: &str, url: &str, headers: Json, body: Option<&str>) -> Result<Response, HostError> {
        let mut fields = vec![("url".to_string(), Json::from(url)), ("method".to_string(), Json::from(method))];
        if !headers.is_null() {
            fields.push(("headers".to_string(), headers));
        }
        if let Some(body) = body {
            fields.push(("body".to_string(), Json::from(body)));
        }
        let result = host_call("http.fetch", &Json::Object(fields))?;
        let text = |key: &str| field(&result, key).map(|v| v.as_str().unwrap_or("").to_string());
        Ok(Response {
            status: field(&result, "status")?.as_i64().ok_or_else(|| HostError::BadResult("status".into()))?,
            headers: field(&result, "headers")?,
            body: text("body")?,
            body_base64: result.get("bodyBase64").and_then(Json::as_str).map(str::to_string),
            url: text("url")?,
        })
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, HostError> {
        fetch("GET", url, Json::Null, None)
    }
}

// --- JSON ---------------------------------------------------------------------------------------

/// A JSON value. Objects keep their keys in order; integers that fit an i64 stay integers.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a text is not JSON, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.reason)
    }
}

impl From<&str> for Json {
    fn from(text: &str) -> Self { Json::String(text.to_string()) }
}
impl From<String> for Json {
    fn from(text: String) -> Self { Json::String(text) }
}
impl From<i64> for Json {
    fn from(n: i64) -> Self { Json::Int(n) }
}
impl From<bool> for Json {
    fn from(b: bool) -> Self { Json::Bool(b) }
}

impl Json {
    /// An object from `(key, value)` pairs, in order.
    pub fn obj<K: Into<String>, const N: usize>(pairs: [(K, Json); N]) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// An object's value for `key` (None for a missing key or a non-object).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool { matches!(self, Json::Null) }

    pub fn as_str(&self) -> Option<&str> {
        match self { Json::String(s) => Some(s), _ => None }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self { Json::Bool(b) => Some(*b), _ => None }
    }

    /// An integer (a float with no fraction counts, as JSON does not tell them apart).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Int(n) => Some(*n),
            Json::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self { Json::Int(n) => Some(*n as f64), Json::Float(x) => Some(*x), _ => None }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self { Json::Array(items) => Some(items), _ => None }
    }

    /// Parses one JSON text (whitespace around it allowed; nesting capped at 128 levels).
    pub fn parse(text: &str) -> Result<Json, ParseError> {
        let mut parser = Parser { bytes: text.as_bytes(), at: 0 };
        let value = parser.value(0)?;
        parser.space();
        if parser.at != parser.bytes.len() {
            return Err(parser.fail("trailing characters"));
        }
        Ok(value)
    }
}

impl fmt::Display for Json {
    /// Compact JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Json::Int(n) => write!(f, "{n}"),
            Json::Float(x) if x.is_finite() => write!(f, "{x}"),
            Json::Float(_) => f.write_str("null"),
            Json::String(s) => write_string(f, s),
            Json::Array(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 { f.write_char(',')?; }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Object(fields) => {
                f.write_char('{')?;
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 { f.write_char(',')?; }
                    write_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    // Runs of characters that need no escape go out in one write: per-character formatting is
    // most of a filter's instruction count when it returns a page of HTML.
    f.write_char('"')?;
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        f.write_str(&text[start..i])?;
        if escape.is_empty() {
            write!(f, "\\u{byte:04x}")?;
        } else {
            f.write_str(escape)?;
        }
        start = i + 1;
    }
    f.write_str(&text[start..])?;
    f.write_char('"')
}

const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn fail(&self, reason: &'static str) -> ParseError {
        ParseError { offset: self.at, reason }
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, ParseError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.fail("unknown literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nested too deeply"));
        }
        self.space();
        match self.bytes.get(self.at) {
            None => Err(self.fail("unexpected end")),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => { self.at += 1; return Ok(Json::Array(items)); }
                        _ => return Err(self.fail("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return Err(self.fail("expected a key"));
                    }
                    let key = self.string()?;
                    self.space();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return Err(self.fail("expected :"));
                    }
                    self.at += 1;
                    let value = self.value(depth + 1)?;
                    fields.push((key, value));
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => { self.at += 1; return Ok(Json::Object(fields)); }
                        _ => return Err(self.fail("expected , or }")),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.fail("unexpected character")),
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.at;
        let mut integral = true;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.at;
            while let Some(b'0'..=b'9') = p.bytes.get(p.at) { p.at += 1; }
            p.at > from
        };
        if !digits(self) {
            return Err(self.fail("expected a digit"));
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            integral = false;
            self.at += 1;
            if !digits(self) { return Err(self.fail("expected a digit")); }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            integral = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) { self.at += 1; }
            if !digits(self) { return Err(self.fail("expected a digit")); }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| self.fail("bad number"))?;
        if integral {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Json::Int(n));
            }
        }
        text.parse::<f64>().map(Json::Float).map_err(|_| self.fail("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or_else(|| self.fail("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.fail("bad \\u escape"))?;
        let code = u32::from_str_radix(text, 16).map_err(|_| self.fail("bad \\u escape"))?;
        self.at += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            let rest = &self.bytes[start..];
            self.at += rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(rest.len());
            // The input is a &str split only at ASCII bytes, so each run is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| self.fail("bad UTF-8"))?);
            match self.bytes.get(self.at) {
                Some(b'"') => { self.at += 1; return Ok(out); }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = *self.bytes.get(self.at).ok_or_else(|| self.fail("unexpected end"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code) && self.bytes[self.at..].starts_with(b"\\u") {
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.fail("bad surrogate pair"));
                                }
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            out.push(char::from_u32(code).ok_or_else(|| self.fail("lone surrogate"))?);
                        }
                        _ => return Err(self.fail("bad escape")),
                    }
                }
                Some(_) => return Err(self.fail("control character in a string")),
                None => return Err(self.fail("unterminated string")),
            }
        }
    }
}

//! gonext plugin SDK for Zig (ABI version 1, see ABI.md). Written for Zig 0.17 (the `ziglang`
//! PyPI package); build with `gonext_plugins.devtools.zigbuild.build_zig`.
//!
//! A plugin is one Zig file that imports this module, lists its handlers and calls `plugin`:
//!
//!     const std = @import("std");
//!     const gn = @import("gonext");
//!
//!     pub const filters = .{ .{ "the_content", theContent } };
//!     pub const actions = .{ .{ "save_post", savePost } };
//!     pub const jobs = .{ .{ "seo.recompute-scores", recompute } };
//!     comptime { gn.plugin(@This()); }            // exports gn_alloc, gn_free, gn_handle_hook/job
//!     pub const panic = gn.PanicHandler;          // optional: Zig panics become gn_panic traps
//!
//!     fn theContent(ctx: *gn.Ctx, html: []const u8, post: gn.Post) ![]const u8 { ... }
//!     fn savePost(ctx: *gn.Ctx, post: gn.Post) !void { ... }
//!     fn recompute(ctx: *gn.Ctx, payload: std.json.Value) !struct { updated: u32 } { ... }
//!
//! Handlers. A handler is any function; its parameters are filled in order:
//!   - a `*gn.Ctx` parameter (anywhere, optional) gets the call context: `ctx.arena` is an arena
//!     reset after the call (allocate everything there), `ctx.name`, `ctx.kind`, `ctx.id` (a job's
//!     task id, the idempotency key), `ctx.envelope_json` (the whole payload) and
//!     `try ctx.envelope()` (the same as `std.json.Value`, parsed on first use);
//!   - every other parameter is parsed straight from the payload into its type, by the rules of
//!     `std.json.parseFromSlice` (unknown object fields ignored; no `std.json.Value` tree is built
//!     unless the parameter is one, see "envelope decoding" below): for a filter the first is the filtered value and the rest are `args[0..]`;
//!     for an action they are `args[0..]`; for a job the first is the job's `payload`. A missing
//!     argument is `null` for an optional parameter; otherwise, and for a value of the wrong shape,
//!     the call fails with status -3 (bad_payload). Extra arguments are ignored. Use
//!     `std.json.Value` to take anything.
//! Results. The return type may be an error union. `void` (or `null` from an optional) means no
//! body: for a filter the value stays unchanged. Anything else is serialized with `std.json`:
//! filters answer `{"value": <result>}`, actions and jobs answer `<result>`. `gn.RawJson` embeds
//! JSON that is already encoded.
//! Statuses. Unknown hook/job name (or a hook registered as a filter called as an action) → -4;
//! a payload that does not parse → -3; `error.OutOfMemory` → -2; any other handler error → -1 and
//! an error log line naming the hook and the error.
//!
//! Host functions (module `env`):
//!   - logging: `gn.debug/info/warn/err(fmt, args)` (formatted into a 1 KiB stack buffer,
//!     truncated), `gn.log(level, msg)`; `gn.logFn` plugs `std.log` into the host
//!     (`pub const std_options: std.Options = .{ .logFn = gn.logFn };`).
//!   - `gn.panic(msg)` / `gn.panicf(fmt, args)`: abort the call (the host raises `PluginTrap`).
//!   - `gn.timeMs()`: wall-clock milliseconds since the Unix epoch.
//!   - `gn.hostCall(arena, name, payload)` → `std.json.Value`; `gn.hostCallAs(T, arena, name,
//!     payload)` → `T`; `gn.hostCallRaw(name, json_bytes)`. Errors (`gn.HostCallError`):
//!     `HostError` (-1), `HostOutOfMemory` (-2), `HostBadPayload` (-3), `CapabilityDenied` (-5),
//!     `UnknownFunction` (-6), `HostBadResult` (any other status or a result that does not parse),
//!     `OutOfMemory` (the guest's own). They are distinct from the hook statuses on purpose: a
//!     handler that lets one propagate fails with -1 (or -2 for OutOfMemory), not -3.
//!     `ctx.hostCall(name, payload)` / `ctx.hostCallAs(T, name, payload)` use the call's arena.
//!   - typed helpers for the built-in host functions of ABI.md's table, same errors:
//!     `gn.settingsGet/settingsGetAs/settingsAll/settingsAs`, `gn.kvGet/kvGetAs/kvSet/kvDelete/
//!     kvList/kvIncr/kvCas`, `gn.pluginInfo` (see "typed host functions" below and the README).
//!
//! Escaping (use them for everything a plugin puts into HTML):
//!   - `gn.writeHtml(w, s)`, `gn.escapeHtml(a, s)`, `gn.fmtHtml(s)` ("{f}"): `&<>"'` become entities;
//!     safe in text and in quoted attribute values.
//!   - `gn.jsonForScript(a, value)`, `gn.fmtJsonForScript(value)`, `gn.writeScriptSafe(w, json)`:
//!     JSON that is inert inside `<script>`: `<`, `>`, `&`, U+2028 and U+2029 become `\u003c`,
//!     `\u003e`, `\u0026`, `\u2028`, `\u2029` (only possible inside JSON strings, so the JSON stays
//!     equal in value).
//!   - `gn.utf8Prefix(s, max_bytes)`: the longest prefix of at most `max_bytes` that ends on a
//!     code point boundary.
//!
//! Memory: `gn_alloc`/`gn_free` and `gn.allocator` are `std.heap.wasm_allocator`. `gn_alloc`
//! returns 0 on out of memory (never traps); `gn_alloc(0)` returns a valid 1-byte block.

const std = @import("std");
const json = std.json;
const Allocator = std.mem.Allocator;
const Writer = std.Io.Writer;

/// The guest ABI this SDK implements (manifest `abi`).
pub const abi_version = 1;

/// The allocator behind `gn_alloc`: blocks the host frees with `gn_free` come from here.
pub const allocator: Allocator = std.heap.wasm_allocator;

// --- host imports ---------------------------------------------------------------------------

const env = struct {
    extern "env" fn gn_log(level: i32, ptr: [*]const u8, len: usize) void;
    extern "env" fn gn_panic(ptr: [*]const u8, len: usize) void;
    extern "env" fn gn_time_ms() i64;
    extern "env" fn gn_host_call(name_ptr: [*]const u8, name_len: usize, payload_ptr: [*]const u8, payload_len: usize) i64;
};

// --- packed results -------------------------------------------------------------------------

/// ABI.md's negative lens for `gn_handle_hook` / `gn_handle_job`.
pub const Status = enum(i32) {
    err = -1,
    out_of_memory = -2,
    bad_payload = -3,
    unknown_hook = -4,
};

/// `(ptr << 32) | (len & 0xffffffff)`.
pub fn pack(ptr: usize, len: i32) i64 {
    const hi: u64 = @as(u64, @as(u32, @intCast(ptr))) << 32;
    return @bitCast(hi | @as(u64, @as(u32, @bitCast(len))));
}

fn status(s: Status) i64 {
    return pack(0, @intFromEnum(s));
}

// --- memory exports -------------------------------------------------------------------------

fn gnAlloc(size: usize) callconv(.c) usize {
    // A zero-size request still gets a real block so the host never sees a dangling pointer.
    const block = allocator.alloc(u8, @max(size, 1)) catch return 0;
    return @intFromPtr(block.ptr);
}

fn gnFree(ptr: usize, size: usize) callconv(.c) void {
    if (ptr == 0) return;
    const p: [*]u8 = @ptrFromInt(ptr);
    allocator.free(p[0..@max(size, 1)]);
}

// --- logging, panic, time -------------------------------------------------------------------

/// ABI.md's log levels.
pub const Level = enum(i32) { debug = 0, info = 1, warn = 2, err = 3 };

/// Send one line to the host's log.
pub fn log(level: Level, msg: []const u8) void {
    env.gn_log(@intFromEnum(level), msg.ptr, msg.len);
}

/// Formatted log line; longer than 1 KiB is truncated (no allocation, so it works when OOM).
pub fn logf(level: Level, comptime fmt: []const u8, args: anytype) void {
    var buf: [1024]u8 = undefined;
    var w: Writer = .fixed(&buf);
    w.print(fmt, args) catch {};
    log(level, w.buffered());
}

pub fn debug(comptime fmt: []const u8, args: anytype) void {
    logf(.debug, fmt, args);
}
pub fn info(comptime fmt: []const u8, args: anytype) void {
    logf(.info, fmt, args);
}
pub fn warn(comptime fmt: []const u8, args: anytype) void {
    logf(.warn, fmt, args);
}
pub fn err(comptime fmt: []const u8, args: anytype) void {
    logf(.err, fmt, args);
}

/// `std.log` backend: `pub const std_options: std.Options = .{ .logFn = gn.logFn };`.
pub fn logFn(
    comptime level: std.log.Level,
    comptime scope: @EnumLiteral(),
    comptime format: []const u8,
    args: anytype,
) void {
    const lvl: Level = switch (level) {
        .debug => .debug,
        .info => .info,
        .warn => .warn,
        .err => .err,
    };
    const prefix = if (scope == .default) "" else "(" ++ @tagName(scope) ++ ") ";
    logf(lvl, prefix ++ format, args);
}

/// Abort the call: the host raises `PluginTrap` carrying `msg`.
pub fn panic(msg: []const u8) noreturn {
    env.gn_panic(msg.ptr, msg.len);
    @trap(); // gn_panic never returns; this keeps the type system honest
}

pub fn panicf(comptime fmt: []const u8, args: anytype) noreturn {
    var buf: [1024]u8 = undefined;
    var w: Writer = .fixed(&buf);
    w.print(fmt, args) catch {};
    panic(w.buffered());
}

fn panicHandlerFn(msg: []const u8, _: ?usize) noreturn {
    panic(msg);
}

/// Zig's panic handler routed to `gn_panic`: `pub const panic = gn.PanicHandler;` in the plugin.
pub const PanicHandler = std.debug.FullPanic(panicHandlerFn);

/// Wall-clock milliseconds since the Unix epoch.
pub fn timeMs() i64 {
    return env.gn_time_ms();
}

// --- host calls -----------------------------------------------------------------------------

pub const HostCallError = error{
    /// -1: the host function failed.
    HostError,
    /// -2: the guest could not give the host a block for the result.
    HostOutOfMemory,
    /// -3: the host could not decode the payload.
    HostBadPayload,
    /// -5: the function's capability is not granted to this plugin.
    CapabilityDenied,
    /// -6: no host function by that name.
    UnknownFunction,
    /// Any other status, or a result that is not the JSON expected.
    HostBadResult,
    OutOfMemory,
};

/// Call host function `name` with already-encoded JSON. Returns the result block (owned by the
/// caller, free it with `gn.allocator.free`), or null when the host returned no body.
pub fn hostCallRaw(name: []const u8, payload_json: []const u8) HostCallError!?[]u8 {
    const packed_result: u64 = @bitCast(env.gn_host_call(name.ptr, name.len, payload_json.ptr, payload_json.len));
    const ptr: u32 = @truncate(packed_result >> 32);
    const len: i32 = @bitCast(@as(u32, @truncate(packed_result)));
    if (ptr == 0) return switch (len) {
        0 => null,
        -1 => error.HostError,
        -2 => error.HostOutOfMemory,
        -3 => error.HostBadPayload,
        -5 => error.CapabilityDenied,
        -6 => error.UnknownFunction,
        else => error.HostBadResult,
    };
    if (len <= 0) return error.HostBadResult;
    const p: [*]u8 = @ptrFromInt(ptr);
    return p[0..@intCast(len)];
}

/// Call host function `name` with any JSON-able `payload`; the parsed result lives in `arena`.
/// A host function that returns no body gives `.null`.
pub fn hostCall(arena: Allocator, name: []const u8, payload: anytype) HostCallError!json.Value {
    const body = try json.Stringify.valueAlloc(arena, payload, .{});
    const result = try hostCallRaw(name, body) orelse return .null;
    defer allocator.free(result);
    return json.parseFromSliceLeaky(json.Value, arena, result, .{ .allocate = .alloc_always }) catch |e| switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        else => error.HostBadResult,
    };
}

/// Like `hostCall`, decoding the result into `T` (unknown object fields ignored).
pub fn hostCallAs(comptime T: type, arena: Allocator, name: []const u8, payload: anytype) HostCallError!T {
    if (T == json.Value) return hostCall(arena, name, payload);
    const body = try json.Stringify.valueAlloc(arena, payload, .{});
    // Parsed straight into `T` (no `std.json.Value` in between), from a copy in `arena` so that
    // strings in the result may point into it once the host's block is freed.
    const text: []const u8 = if (try hostCallRaw(name, body)) |result| blk: {
        defer allocator.free(result);
        break :blk try arena.dupe(u8, result);
    } else "null";
    var s = json.Scanner.initCompleteInput(arena, text);
    const value = decodeValue(T, arena, &s) catch |e| return switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        else => error.HostBadResult,
    };
    if ((s.next() catch return error.HostBadResult) != .end_of_document) return error.HostBadResult;
    return value;
}

// --- typed host functions (ABI.md's table of built-in host functions) ------------------------
//
// Each helper sends exactly the payload ABI.md fixes and decodes exactly its result, so a plugin
// never spells a payload by hand (a typo there is a -3 at run time, not a compile error). They
// return `HostCallError` like `hostCall`: a plugin decides per call whether a status is a fault or
// configuration (e.g. `error.CapabilityDenied` for an optional capability the admin did not grant,
// `error.UnknownFunction` on a host older than the function). Values that point into a result
// live in the allocator passed in (use `ctx.arena`); helpers that return plain values take none.

/// `{}`: a Zig `.{}` is an empty tuple, which `std.json` writes as `[]`.
const empty_object: RawJson = .{ .bytes = "{}" };

/// `hostCallAs` in a scratch arena on `gn.allocator`, for helpers whose result owns no memory.
fn scratchCallAs(comptime T: type, name: []const u8, payload: anytype) HostCallError!T {
    var arena_state = std.heap.ArenaAllocator.init(allocator);
    defer arena_state.deinit();
    return hostCallAs(T, arena_state.allocator(), name, payload);
}

const Found = struct { found: bool, value: json.Value = .null };

/// `settings.get {"key"}`: this plugin's setting `key` (as the admin set it, or the manifest's
/// default), or null when the manifest declares no such setting and none is stored. No capability
/// needed; secrets are included, they are the plugin's own.
pub fn settingsGet(a: Allocator, key: []const u8) HostCallError!?json.Value {
    const r = try hostCallAs(Found, a, "settings.get", .{ .key = key });
    return if (r.found) r.value else null;
}

/// `settingsGet` decoded into `T` (e.g. `[]const u8`, `i64`, `bool`); a value of another shape is
/// `error.HostBadResult`.
pub fn settingsGetAs(comptime T: type, a: Allocator, key: []const u8) HostCallError!?T {
    const v = try settingsGet(a, key) orelse return null;
    return try decodeResult(T, a, v);
}

/// `settings.get {}`: every setting of this plugin as one JSON object.
pub fn settingsAll(a: Allocator) HostCallError!json.ObjectMap {
    const r = try hostCallAs(struct { settings: json.Value }, a, "settings.get", empty_object);
    return if (r.settings == .object) r.settings.object else error.HostBadResult;
}

/// Every setting decoded into struct `T` (unknown keys ignored, so give each field a default for a
/// setting the admin may leave empty): `const s = try gn.settingsAs(struct { twitterSite: []const u8 = "" }, ctx.arena);`.
pub fn settingsAs(comptime T: type, a: Allocator) HostCallError!T {
    return decodeResult(T, a, .{ .object = try settingsAll(a) });
}

/// `kv.get {"key"}`: the stored value, or null when the key is absent (or expired). A key stored
/// with the value `null` gives `.null`, not null.
pub fn kvGet(a: Allocator, key: []const u8) HostCallError!?json.Value {
    const r = try hostCallAs(Found, a, "kv.get", .{ .key = key });
    return if (r.found) r.value else null;
}

/// `kvGet` decoded into `T`.
pub fn kvGetAs(comptime T: type, a: Allocator, key: []const u8) HostCallError!?T {
    const v = try kvGet(a, key) orelse return null;
    return try decodeResult(T, a, v);
}

pub const KvSetOptions = struct {
    /// The key reads as absent this many seconds after the write (a cache entry); null: no expiry.
    ttl_seconds: ?u32 = null,
};

/// `kv.set {"key", "value", "ttlSeconds"?}`, within the host's KV quotas (over one: `HostError`).
pub fn kvSet(key: []const u8, value: anytype, options: KvSetOptions) HostCallError!void {
    // Two payload types so that `ttlSeconds` is absent, not null, without a TTL.
    if (options.ttl_seconds) |ttl| {
        _ = try scratchCallAs(json.Value, "kv.set", .{ .key = key, .value = value, .ttlSeconds = ttl });
    } else {
        _ = try scratchCallAs(json.Value, "kv.set", .{ .key = key, .value = value });
    }
}

/// `kv.delete {"key"}`: whether the key existed.
pub fn kvDelete(key: []const u8) HostCallError!bool {
    return (try scratchCallAs(struct { deleted: bool }, "kv.delete", .{ .key = key })).deleted;
}

/// `kv.list {"prefix"?}`: this plugin's keys (those starting with `prefix`, when given).
pub fn kvList(a: Allocator, prefix: ?[]const u8) HostCallError![]const []const u8 {
    const Keys = struct { keys: []const []const u8 };
    const r = if (prefix) |p|
        try hostCallAs(Keys, a, "kv.list", .{ .prefix = p })
    else
        try hostCallAs(Keys, a, "kv.list", empty_object);
    return r.keys;
}

/// `kv.incr {"key", "by"}`: add `by` to the integer at `key` (a missing key counts from 0) and
/// return the new value, atomically across every process of the site. A key holding anything but
/// an integer is `error.HostError`.
pub fn kvIncr(key: []const u8, by: i64) HostCallError!i64 {
    return (try scratchCallAs(struct { value: i64 }, "kv.incr", .{ .key = key, .by = by })).value;
}

pub const CasResult = struct {
    /// Whether `value` was written (the stored value was `expected`).
    ok: bool,
    /// The value stored now: `value` when `ok`, otherwise what another writer left there.
    value: json.Value = .null,
};

/// `kv.cas {"key", "expected", "value"}`: write `value` only if the stored value equals `expected`
/// (pass `null` for "the key is absent"), atomically. On `ok == false`, `.value` is the current
/// value, so a retry loop needs no extra `kv.get`.
pub fn kvCas(a: Allocator, key: []const u8, expected: anytype, value: anytype) HostCallError!CasResult {
    return hostCallAs(CasResult, a, "kv.cas", .{ .key = key, .expected = expected, .value = value });
}

/// What `plugin.info` says about this plugin and the site.
pub const PluginInfo = struct {
    slug: []const u8,
    version: []const u8,
    /// The capabilities the admin granted (required and optional).
    capabilities: []const []const u8,
    /// The hosts granted for `http.fetch`.
    hosts: []const []const u8,
    /// The names of the hooks the site offers.
    hooks: []const []const u8,

    /// Whether `capability` is granted: check before calling an optional capability's function.
    pub fn granted(self: PluginInfo, capability: []const u8) bool {
        return contains(self.capabilities, capability);
    }

    /// Whether the site offers hook `name`.
    pub fn offersHook(self: PluginInfo, name: []const u8) bool {
        return contains(self.hooks, name);
    }

    fn contains(list: []const []const u8, item: []const u8) bool {
        for (list) |x| if (std.mem.eql(u8, x, item)) return true;
        return false;
    }
};

/// `plugin.info {}` (always allowed): slug, version, granted capabilities and hosts, offered hooks.
pub fn pluginInfo(a: Allocator) HostCallError!PluginInfo {
    const v = try hostCall(a, "plugin.info", empty_object);
    if (v != .object) return error.HostBadResult;
    const o = v.object;
    return .{
        .slug = try stringOf(o.get("slug")),
        .version = try stringOf(o.get("version")),
        .capabilities = try names(a, o.get("capabilities")),
        .hosts = try names(a, o.get("hosts")),
        .hooks = try names(a, o.get("hooks")),
    };
}

fn stringOf(v: ?json.Value) HostCallError![]const u8 {
    const s = v orelse return error.HostBadResult;
    return if (s == .string) s.string else error.HostBadResult;
}

/// A list of names: each item a string, or an object with a string `name` (so a host that
/// describes hooks as `{"name", "kind", ...}` reads the same).
fn names(a: Allocator, v: ?json.Value) HostCallError![]const []const u8 {
    const list = v orelse return &.{};
    if (list != .array) return error.HostBadResult;
    const out = try a.alloc([]const u8, list.array.items.len);
    for (list.array.items, out) |item, *slot| {
        slot.* = switch (item) {
            .string => |s| s,
            .object => |o| try stringOf(o.get("name")),
            else => return error.HostBadResult,
        };
    }
    return out;
}

fn decodeResult(comptime T: type, a: Allocator, v: json.Value) HostCallError!T {
    if (T == json.Value) return v;
    return json.parseFromValueLeaky(T, a, v, .{ .ignore_unknown_fields = true }) catch |e| switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        else => error.HostBadResult,
    };
}

// --- objects the bus sends ------------------------------------------------------------------

/// A post as the hook bus sends it: `{id, title, slug, body, url, published}`. `body` is plain
/// text, `url` a path such as `/posts/slug/`; `published` is whatever the site sends (kept as JSON).
pub const Post = struct {
    id: i64,
    title: []const u8 = "",
    slug: []const u8 = "",
    body: []const u8 = "",
    url: []const u8 = "",
    published: json.Value = .null,
};

/// JSON that is already encoded, embedded as is when a result is serialized.
pub const RawJson = struct {
    bytes: []const u8,

    pub fn jsonStringify(self: RawJson, jws: *json.Stringify) json.Stringify.Error!void {
        try jws.beginWriteRaw();
        try jws.writer.writeAll(self.bytes);
        jws.endWriteRaw();
    }
};

/// One `<meta>` tag of an action's structured output (`{"meta": [...]}`): exactly one of `name` or
/// `property`, and `content`. The host escapes and renders it, so no markup (and no `html.raw`).
pub const Meta = struct {
    name: ?[]const u8 = null,
    property: ?[]const u8 = null,
    content: []const u8,

    pub fn jsonStringify(self: Meta, jws: *json.Stringify) json.Stringify.Error!void {
        try jws.beginObject();
        if (self.name) |n| {
            try jws.objectField("name");
            try writeRawString(jws, n);
        } else {
            try jws.objectField("property");
            try writeRawString(jws, self.property orelse "");
        }
        try jws.objectField("content");
        try writeRawString(jws, self.content);
        try jws.endObject();
    }
};

/// A string value inside a `jsonStringify` method, written by the SDK's fast string writer.
fn writeRawString(jws: *json.Stringify, s: []const u8) json.Stringify.Error!void {
    try jws.beginWriteRaw();
    try writeJsonString(jws.writer, s);
    jws.endWriteRaw();
}

/// One `<link>` of an action's structured output (`{"link": [...]}`); the host allows metadata
/// `rel` values only (canonical, alternate, author, license, next, prev, shortlink, me) and an
/// http(s) or relative `href`.
pub const Link = struct {
    rel: []const u8,
    href: []const u8,
};

// --- escaping -------------------------------------------------------------------------------

/// HTML-escape `s` (`&<>"'`) for text and quoted attribute values.
pub fn writeHtml(w: *Writer, s: []const u8) Writer.Error!void {
    var start: usize = 0;
    for (s, 0..) |c, i| {
        const rep: []const u8 = switch (c) {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#x27;",
            else => continue,
        };
        try w.writeAll(s[start..i]);
        try w.writeAll(rep);
        start = i + 1;
    }
    try w.writeAll(s[start..]);
}

pub fn escapeHtml(a: Allocator, s: []const u8) error{OutOfMemory}![]u8 {
    var out: Writer.Allocating = .init(a);
    defer out.deinit();
    writeHtml(&out.writer, s) catch return error.OutOfMemory;
    return out.toOwnedSlice();
}

pub const HtmlFormatter = struct {
    s: []const u8,
    pub fn format(self: HtmlFormatter, w: *Writer) Writer.Error!void {
        try writeHtml(w, self.s);
    }
};

/// `w.print("<title>{f}</title>", .{gn.fmtHtml(title)})`.
pub fn fmtHtml(s: []const u8) HtmlFormatter {
    return .{ .s = s };
}

/// Write encoded JSON so it is inert inside `<script>`: `<`, `>`, `&`, U+2028, U+2029 escaped.
/// Those characters can only occur inside JSON strings, where `\uXXXX` means the same thing.
pub fn writeScriptSafe(w: *Writer, json_bytes: []const u8) Writer.Error!void {
    var start: usize = 0;
    var i: usize = 0;
    while (i < json_bytes.len) : (i += 1) {
        const c = json_bytes[i];
        const rep: []const u8, const skip: usize = switch (c) {
            '<' => .{ "\\u003c", 1 },
            '>' => .{ "\\u003e", 1 },
            '&' => .{ "\\u0026", 1 },
            0xE2 => blk: {
                // U+2028 is E2 80 A8, U+2029 is E2 80 A9: valid JSON, but line breaks in JS.
                if (i + 2 < json_bytes.len and json_bytes[i + 1] == 0x80) {
                    if (json_bytes[i + 2] == 0xA8) break :blk .{ "\\u2028", 3 };
                    if (json_bytes[i + 2] == 0xA9) break :blk .{ "\\u2029", 3 };
                }
                continue;
            },
            else => continue,
        };
        try w.writeAll(json_bytes[start..i]);
        try w.writeAll(rep);
        i += skip - 1;
        start = i + 1;
    }
    try w.writeAll(json_bytes[start..]);
}

/// `value` as JSON that is safe to put between `<script type="application/ld+json">` tags.
pub fn jsonForScript(a: Allocator, value: anytype) error{OutOfMemory}![]u8 {
    return jsonForScriptWith(a, value, .{});
}

/// `jsonForScript` with `std.json` options (e.g. `.emit_null_optional_fields = false`).
pub fn jsonForScriptWith(a: Allocator, value: anytype, options: json.Stringify.Options) error{OutOfMemory}![]u8 {
    const raw = try json.Stringify.valueAlloc(a, value, options);
    defer a.free(raw);
    var out: Writer.Allocating = .init(a);
    defer out.deinit();
    writeScriptSafe(&out.writer, raw) catch return error.OutOfMemory;
    return out.toOwnedSlice();
}

pub fn ScriptJsonFormatter(comptime T: type) type {
    return struct {
        value: T,
        pub fn format(self: @This(), w: *Writer) Writer.Error!void {
            // Stream through a small buffer so no allocation is needed.
            var filter: ScriptSafeWriter = .{ .out = w, .interface = .{ .buffer = &.{}, .vtable = &ScriptSafeWriter.vtable } };
            try json.Stringify.value(self.value, .{}, &filter.interface);
            try filter.finish();
        }
    };
}

/// `w.print("{f}", .{gn.fmtJsonForScript(value)})`.
pub fn fmtJsonForScript(value: anytype) ScriptJsonFormatter(@TypeOf(value)) {
    return .{ .value = value };
}

/// A streaming `writeScriptSafe`: holds back an incomplete U+2028/U+2029 prefix across writes.
const ScriptSafeWriter = struct {
    out: *Writer,
    pending: [2]u8 = undefined,
    pending_len: usize = 0,
    interface: Writer,

    const vtable: Writer.VTable = .{ .drain = drain };

    fn drain(w: *Writer, data: []const []const u8, splat: usize) Writer.Error!usize {
        const self: *ScriptSafeWriter = @alignCast(@fieldParentPtr("interface", w));
        var n: usize = 0;
        for (data[0 .. data.len - 1]) |chunk| {
            try self.feed(chunk);
            n += chunk.len;
        }
        const last = data[data.len - 1];
        for (0..splat) |_| {
            try self.feed(last);
            n += last.len;
        }
        return n;
    }

    fn feed(self: *ScriptSafeWriter, chunk: []const u8) Writer.Error!void {
        for (chunk) |c| try self.byte(c);
    }

    fn byte(self: *ScriptSafeWriter, c: u8) Writer.Error!void {
        if (self.pending_len > 0) {
            self.pending[self.pending_len] = c;
            const have = self.pending_len + 1;
            if (have == 2) {
                if (c == 0x80) {
                    self.pending_len = 2;
                    return;
                }
            } else if (c == 0xA8 or c == 0xA9) {
                self.pending_len = 0;
                return self.out.writeAll(if (c == 0xA8) "\\u2028" else "\\u2029");
            }
            // Not a separator: flush what was held back, then handle `c` normally.
            const held = self.pending[0..self.pending_len];
            self.pending_len = 0;
            try self.out.writeAll(held);
            return self.byte(c);
        }
        switch (c) {
            '<' => try self.out.writeAll("\\u003c"),
            '>' => try self.out.writeAll("\\u003e"),
            '&' => try self.out.writeAll("\\u0026"),
            0xE2 => {
                self.pending[0] = c;
                self.pending_len = 1;
            },
            else => try self.out.writeByte(c),
        }
    }

    fn finish(self: *ScriptSafeWriter) Writer.Error!void {
        try self.out.writeAll(self.pending[0..self.pending_len]);
        self.pending_len = 0;
    }
};

/// The longest prefix of `s` of at most `max_bytes` bytes that does not split a UTF-8 sequence.
pub fn utf8Prefix(s: []const u8, max_bytes: usize) []const u8 {
    if (s.len <= max_bytes) return s;
    var end = max_bytes;
    // Step back over continuation bytes (10xxxxxx) to the start of the cut sequence.
    while (end > 0 and (s[end] & 0xC0) == 0x80) end -= 1;
    return s[0..end];
}

// --- fast JSON strings and structs ------------------------------------------------------------
//
// `std.json` looks at strings one byte at a time (about 35 wasm instructions a byte to scan, 44 to
// write), and strings are most of what a hook carries (a post's HTML and body). Here runs of plain
// bytes go 8 at a time; anything unusual (a `\u` escape, a type with its own `jsonParse` or
// `jsonStringify`, a tuple) is handed to `std.json`, so the JSON accepted and written is the same.

const ones: u64 = 0x0101010101010101;
const highs: u64 = 0x8080808080808080;

/// Whether one of the 8 bytes of `x` is `"`, `\` or a control character (< 0x20), or, with
/// `non_ascii`, has its high bit set: the bytes where a string scan must look closer.
inline fn hasSpecial(x: u64, comptime non_ascii: bool) bool {
    const quote = x ^ (ones * '"');
    const backslash = x ^ (ones * '\\');
    var m = ((quote -% ones) & ~quote) | ((backslash -% ones) & ~backslash) | ((x -% ones * 0x20) & ~x);
    if (non_ascii) m |= x;
    return m & highs != 0;
}

/// The length of the leading run of `s` that needs no escaping (no `"`, `\`, control character,
/// and, with `non_ascii`, no byte >= 0x80).
fn plainRun(s: []const u8, comptime non_ascii: bool) usize {
    if (s.len == 0 or isSpecial(s[0], non_ascii)) return 0; // escapes often come in a row
    var i: usize = 1;
    while (i + 8 <= s.len and !hasSpecial(std.mem.readInt(u64, s[i..][0..8], .little), non_ascii)) i += 8;
    while (i < s.len and !isSpecial(s[i], non_ascii)) i += 1;
    return i;
}

inline fn isSpecial(c: u8, comptime non_ascii: bool) bool {
    return c == '"' or c == '\\' or c < 0x20 or (non_ascii and c >= 0x80);
}

/// The length of the well-formed UTF-8 sequence starting `s` (its first byte >= 0x80), or null
/// for an ill-formed one: a stray continuation byte, an overlong form, a surrogate, or > U+10FFFF
/// (the table of Unicode 15, 3.9, D92, which `std.json.Scanner` follows too).
fn utf8SequenceLen(s: []const u8) ?usize {
    const c = s[0];
    const n: usize, const lo: u8, const hi: u8 = switch (c) {
        0xC2...0xDF => .{ 2, 0x80, 0xBF },
        0xE0 => .{ 3, 0xA0, 0xBF },
        0xE1...0xEC, 0xEE...0xEF => .{ 3, 0x80, 0xBF },
        0xED => .{ 3, 0x80, 0x9F },
        0xF0 => .{ 4, 0x90, 0xBF },
        0xF1...0xF3 => .{ 4, 0x80, 0xBF },
        0xF4 => .{ 4, 0x80, 0x8F },
        else => return null,
    };
    if (s.len < n or s[1] < lo or s[1] > hi) return null;
    for (s[2..n]) |b| if (b & 0xC0 != 0x80) return null;
    return n;
}

const FastStringError = error{ SyntaxError, OutOfMemory };

/// Reads the string value the scanner is at (after `peekNextTokenType` said `.string`), or returns
/// null, leaving the scanner untouched, for what `std.json` should read (a `\u` escape, or a
/// scanner in a state this does not know). Validates UTF-8 as `std.json.Scanner` does.
fn fastString(s: *json.Scanner, a: Allocator) FastStringError!?[]const u8 {
    if (s.state != .value or s.cursor >= s.input.len or s.input[s.cursor] != '"') return null;
    const in = s.input;
    var i = s.cursor + 1;
    var run_start = i;
    var decoded: std.ArrayList(u8) = .empty; // used once an escape is seen
    var escaped = false;
    while (true) {
        i += plainRun(in[i..], true);
        if (i >= in.len) return error.SyntaxError;
        switch (in[i]) {
            '"' => {
                const result = if (escaped) blk: {
                    try decoded.appendSlice(a, in[run_start..i]);
                    break :blk decoded.items;
                } else in[run_start..i];
                s.cursor = i + 1;
                s.state = .post_value;
                return result;
            },
            '\\' => {
                if (i + 1 >= in.len) return error.SyntaxError;
                const unescaped: u8 = switch (in[i + 1]) {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => 0x08,
                    'f' => 0x0c,
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => return null,
                    else => return error.SyntaxError,
                };
                if (!escaped) {
                    escaped = true;
                    try decoded.ensureTotalCapacity(a, in.len - run_start);
                }
                try decoded.appendSlice(a, in[run_start..i]);
                try decoded.append(a, unescaped);
                i += 2;
                run_start = i;
            },
            0...0x1f => return error.SyntaxError,
            else => { // a UTF-8 sequence: well-formed, no surrogates, no overlong forms
                i += utf8SequenceLen(in[i..]) orelse return error.SyntaxError;
            },
        }
    }
}

fn isConstString(comptime T: type) bool {
    return switch (@typeInfo(T)) {
        .pointer => |p| p.size == .slice and p.child == u8 and p.attrs.@"const" and p.sentinel_ptr == null,
        else => false,
    };
}

const ParseError = json.ParseError(json.Scanner);

/// `std.json.innerParse` with the fast string path, for strings, optionals and plain structs
/// (fields by name, unknown fields ignored, a missing field without default an error, a duplicate
/// field an error, as `std.json` with `ignore_unknown_fields`).
fn decodeValue(comptime T: type, a: Allocator, s: *json.Scanner) ParseError!T {
    switch (@typeInfo(T)) {
        .optional => |o| {
            if (try s.peekNextTokenType() == .null) {
                _ = try s.next();
                return null;
            }
            return try decodeValue(o.child, a, s);
        },
        .pointer => if (comptime isConstString(T)) {
            if (try s.peekNextTokenType() == .string) {
                if (try fastString(s, a)) |str| return str;
            }
        },
        .@"struct" => |st| if (!st.is_tuple and !std.meta.hasFn(T, "jsonParse")) {
            return decodeStruct(T, a, s);
        },
        else => {},
    }
    return json.innerParse(T, a, s, parseOptions(s));
}

fn decodeStruct(comptime T: type, a: Allocator, s: *json.Scanner) ParseError!T {
    const st = @typeInfo(T).@"struct";
    if (try s.next() != .object_begin) return error.UnexpectedToken;
    var r: T = undefined;
    var seen: [st.field_names.len]bool = @splat(false);
    while (true) {
        const key = switch (try s.nextAllocMax(a, .alloc_if_needed, s.input.len)) {
            .string => |k| k,
            .allocated_string => |k| k,
            .object_end => break,
            else => return error.UnexpectedToken,
        };
        inline for (st.field_names, st.field_types, 0..) |f_name, f_type, i| {
            if (std.mem.eql(u8, f_name, key)) {
                if (seen[i]) return error.DuplicateField;
                @field(r, f_name) = try decodeValue(f_type, a, s);
                seen[i] = true;
                break;
            }
        } else try s.skipValue();
    }
    inline for (st.field_names, st.field_types, st.field_attrs, 0..) |f_name, f_type, f_attrs, i| {
        if (!seen[i]) {
            @field(r, f_name) = f_attrs.defaultValue(f_type) orelse return error.MissingField;
        }
    }
    return r;
}

/// Write `s` as a JSON string (the same bytes as `std.json`: `\n`, `\r`, `\t`, `\b`, `\f`, `\"`, `\\`
/// escaped, other control characters as `\u00XX`, everything else as is).
pub fn writeJsonString(w: *Writer, s: []const u8) Writer.Error!void {
    try w.writeByte('"');
    var rest = s;
    while (true) {
        const n = plainRun(rest, false);
        try w.writeAll(rest[0..n]);
        if (n == rest.len) break;
        const c = rest[n];
        switch (c) {
            '"' => try w.writeAll("\\\""),
            '\\' => try w.writeAll("\\\\"),
            '\n' => try w.writeAll("\\n"),
            '\r' => try w.writeAll("\\r"),
            '\t' => try w.writeAll("\\t"),
            0x08 => try w.writeAll("\\b"),
            0x0c => try w.writeAll("\\f"),
            else => try w.print("\\u{x:0>4}", .{c}),
        }
        rest = rest[n + 1 ..];
    }
    try w.writeByte('"');
}

/// `std.json.Stringify.value(value, .{}, w)` with the fast string path for strings, optionals,
/// slices and plain structs; anything else (and types with `jsonStringify`) goes to `std.json`.
fn writeJson(w: *Writer, value: anytype) Writer.Error!void {
    const T = @TypeOf(value);
    switch (@typeInfo(T)) {
        .optional => return if (value) |v| writeJson(w, v) else w.writeAll("null"),
        .pointer => |p| {
            if (comptime p.child == u8 and p.size == .slice) return writeJsonString(w, value);
            if (comptime p.size == .one) switch (@typeInfo(p.child)) {
                .array => |arr| if (arr.child == u8) return writeJsonString(w, value),
                else => return writeJson(w, value.*),
            };
            if (comptime p.size == .slice and !std.meta.hasFn(p.child, "jsonStringify")) {
                try w.writeByte('[');
                for (value, 0..) |item, i| {
                    if (i > 0) try w.writeByte(',');
                    try writeJson(w, item);
                }
                return w.writeByte(']');
            }
        },
        .@"struct" => |st| if (comptime !st.is_tuple and !std.meta.hasFn(T, "jsonStringify") and plainNames(st.field_names)) {
            try w.writeByte('{');
            inline for (st.field_names, 0..) |f_name, i| {
                try w.writeAll((if (i > 0) "," else "") ++ "\"" ++ f_name ++ "\":");
                try writeJson(w, @field(value, f_name));
            }
            return w.writeByte('}');
        },
        else => {},
    }
    return json.Stringify.value(value, .{}, w);
}

/// Field names that need no escaping inside a JSON string (so they can be written as they are).
fn plainNames(comptime field_names: []const []const u8) bool {
    for (field_names) |name| for (name) |c| if (c == '"' or c == '\\' or c < 0x20) return false;
    return true;
}

// --- dispatch -------------------------------------------------------------------------------

pub const Kind = enum { action, filter, job };

/// What a handler can ask about its call. Everything in `arena` is freed when the call returns.
pub const Ctx = struct {
    arena: Allocator,
    kind: Kind,
    /// The hook or job name.
    name: []const u8,
    /// A job's task id (the idempotency key); empty for hooks.
    id: []const u8 = "",
    /// The whole payload as the host sent it (JSON text, valid for this call only).
    envelope_json: []const u8,
    envelope_tree: ?json.Value = null,

    /// The whole payload as a `std.json.Value` tree, built on first use (in `arena`). The SDK
    /// itself builds no tree: parameters are parsed straight from the payload into their types.
    pub fn envelope(self: *Ctx) error{OutOfMemory}!json.Value {
        if (self.envelope_tree) |tree| return tree;
        const tree = json.parseFromSliceLeaky(json.Value, self.arena, self.envelope_json, .{}) catch |e| switch (e) {
            error.OutOfMemory => return error.OutOfMemory,
            // The dispatcher validated the whole payload before the handler ran.
            else => json.Value.null,
        };
        self.envelope_tree = tree;
        return tree;
    }

    pub fn hostCall(self: *Ctx, name: []const u8, payload: anytype) HostCallError!json.Value {
        return hostCallTop(self.arena, name, payload);
    }

    pub fn hostCallAs(self: *Ctx, comptime T: type, name: []const u8, payload: anytype) HostCallError!T {
        return hostCallAsTop(T, self.arena, name, payload);
    }
};

// Aliases: inside `Ctx` the method names shadow the free functions.
const hostCallTop = hostCall;
const hostCallAsTop = hostCallAs;

/// Export the ABI for plugin namespace `P` (call as `comptime { gn.plugin(@This()); }`).
/// `P` may declare `filters`, `actions` and `jobs`: tuples of `.{ "name", handler }`.
pub fn plugin(comptime P: type) void {
    const D = Dispatcher(P);
    @export(&gnAlloc, .{ .name = "gn_alloc" });
    @export(&gnFree, .{ .name = "gn_free" });
    @export(&D.handleHook, .{ .name = "gn_handle_hook" });
    @export(&D.handleJob, .{ .name = "gn_handle_job" });
}

/// Bytes of arena memory kept from one call to the next: a call allocates from pages it already
/// has instead of asking `wasm_allocator` again; a call that needed more gives the rest back.
const arena_retain_bytes = 64 * 1024;

/// The arena behind every call's `ctx.arena`: reset, not freed, after each call (an instance runs
/// one call at a time, and a handler cannot be re-entered from a host function).
var call_arena: std.heap.ArenaAllocator = .init(allocator);

fn Dispatcher(comptime P: type) type {
    const filters = if (@hasDecl(P, "filters")) P.filters else .{};
    const actions = if (@hasDecl(P, "actions")) P.actions else .{};
    const jobs = if (@hasDecl(P, "jobs")) P.jobs else .{};
    comptime checkList(filters, "filters");
    comptime checkList(actions, "actions");
    comptime checkList(jobs, "jobs");

    return struct {
        fn handleHook(name_ptr: [*]const u8, name_len: usize, payload_ptr: [*]const u8, payload_len: usize) callconv(.c) i64 {
            const name = name_ptr[0..name_len];
            const payload = payload_ptr[0..payload_len];
            if (!known(filters, name) and !known(actions, name)) return status(.unknown_hook);
            return run(name, payload, .hook);
        }

        fn handleJob(name_ptr: [*]const u8, name_len: usize, payload_ptr: [*]const u8, payload_len: usize) callconv(.c) i64 {
            const name = name_ptr[0..name_len];
            const payload = payload_ptr[0..payload_len];
            if (!known(jobs, name)) return status(.unknown_hook);
            return run(name, payload, .job);
        }

        fn run(name: []const u8, payload: []const u8, comptime export_kind: enum { hook, job }) i64 {
            defer _ = call_arena.reset(.{ .retain_with_limit = arena_retain_bytes });
            const arena = call_arena.allocator();

            const kind_str = findKind(arena, payload) catch |e| return switch (e) {
                error.OutOfMemory => status(.out_of_memory),
                error.BadPayload => status(.bad_payload),
            };
            var ctx: Ctx = .{ .arena = arena, .kind = .action, .name = name, .envelope_json = payload };
            switch (export_kind) {
                .job => {
                    if (!std.mem.eql(u8, kind_str, "job")) return status(.bad_payload);
                    ctx.kind = .job;
                    inline for (jobs) |entry| {
                        if (std.mem.eql(u8, entry[0], name)) return invoke(entry[1], &ctx, .job);
                    }
                },
                .hook => {
                    if (std.mem.eql(u8, kind_str, "filter")) {
                        ctx.kind = .filter;
                        inline for (filters) |entry| {
                            if (std.mem.eql(u8, entry[0], name)) return invoke(entry[1], &ctx, .filter);
                        }
                    } else if (std.mem.eql(u8, kind_str, "action")) {
                        ctx.kind = .action;
                        inline for (actions) |entry| {
                            if (std.mem.eql(u8, entry[0], name)) return invoke(entry[1], &ctx, .action);
                        }
                    } else return status(.bad_payload);
                },
            }
            // The name is known, but not for this kind (e.g. a filter called as an action). A
            // payload that is not a valid envelope is still a bad payload first.
            return if (validEnvelope(arena, payload, ctx.kind)) status(.unknown_hook) else status(.bad_payload);
        }
    };
}

fn checkList(comptime list: anytype, comptime what: []const u8) void {
    for (list, 0..) |entry, i| {
        if (entry.len != 2) @compileError(what ++ " entries must be .{ \"name\", handler }");
        _ = @as([]const u8, entry[0]);
        if (@typeInfo(@TypeOf(entry[1])) != .@"fn")
            @compileError(std.fmt.comptimePrint("{s}[{d}] ({s}): the handler must be a function", .{ what, i, entry[0] }));
    }
}

fn known(comptime list: anytype, name: []const u8) bool {
    inline for (list) |entry| {
        if (std.mem.eql(u8, entry[0], name)) return true;
    }
    return false;
}

fn isCtxParam(comptime T: type) bool {
    return T == *Ctx or T == *const Ctx;
}

// --- envelope decoding ----------------------------------------------------------------------
//
// No `std.json.Value` tree: a first scan reads the top-level keys up to "kind" (the host sends it
// first, so that is a few bytes), then one scan of the whole payload parses "value"/"payload" and
// each of "args" straight into the handler's parameter types (`std.json.innerParse`), skips what
// no parameter takes, and checks that the rest is valid JSON. Building the tree and converting it
// again cost most of a small call's instructions.

const ScanError = error{ BadPayload, OutOfMemory };

fn scanErr(e: anyerror) ScanError {
    return if (e == error.OutOfMemory) error.OutOfMemory else error.BadPayload;
}

/// The next object key, or null at the end of the object.
fn nextKey(s: *json.Scanner, a: Allocator) ScanError!?[]const u8 {
    return switch (s.nextAllocMax(a, .alloc_if_needed, s.input.len) catch |e| return scanErr(e)) {
        .string => |k| k,
        .allocated_string => |k| k,
        .object_end => null,
        else => error.BadPayload,
    };
}

fn peek(s: *json.Scanner) ScanError!json.TokenType {
    return s.peekNextTokenType() catch |e| scanErr(e);
}

fn skipJson(s: *json.Scanner) ScanError!void {
    s.skipValue() catch |e| return scanErr(e);
}

/// The next value if it is a string, else null (the value is skipped).
fn stringValue(s: *json.Scanner, a: Allocator) ScanError!?[]const u8 {
    if (try peek(s) != .string) {
        try skipJson(s);
        return null;
    }
    return switch (s.nextAllocMax(a, .alloc_if_needed, s.input.len) catch |e| return scanErr(e)) {
        .string => |v| v,
        .allocated_string => |v| v,
        else => error.BadPayload,
    };
}

/// The envelope's "kind" (a string), read without looking further than needed.
fn findKind(arena: Allocator, payload: []const u8) ScanError![]const u8 {
    var s = json.Scanner.initCompleteInput(arena, payload);
    if ((s.next() catch |e| return scanErr(e)) != .object_begin) return error.BadPayload;
    while (try nextKey(&s, arena)) |key| {
        if (std.mem.eql(u8, key, "kind")) return try stringValue(&s, arena) orelse error.BadPayload;
        try skipJson(&s);
    }
    return error.BadPayload;
}

/// Whether `payload` is one JSON object whose "args" (for hooks) is an array or null.
fn validEnvelope(arena: Allocator, payload: []const u8, kind: Kind) bool {
    var s = json.Scanner.initCompleteInput(arena, payload);
    if ((s.next() catch return false) != .object_begin) return false;
    while (nextKey(&s, arena) catch return false) |key| {
        if (kind != .job and std.mem.eql(u8, key, "args")) {
            const t = peek(&s) catch return false;
            if (t != .array_begin and t != .null) return false;
        }
        skipJson(&s) catch return false;
    }
    return (s.next() catch return false) == .end_of_document;
}

/// The positions (in the handler's parameter list) of the parameters filled from JSON.
fn dataSlots(comptime F: type) []const usize {
    comptime {
        var slots: []const usize = &.{};
        for (@typeInfo(F).@"fn".param_types, 0..) |param, i| {
            const T = param orelse @compileError("handler parameters must have concrete types");
            if (!isCtxParam(T)) slots = slots ++ .{i};
        }
        return slots;
    }
}

const DecodeError = error{ BadPayload, OutOfMemory, WrongShape };

/// Parses the handler's JSON parameters out of the envelope into `call_args`.
fn Decoder(comptime F: type, comptime kind: Kind) type {
    const slots = comptime dataSlots(F);
    const params = @typeInfo(F).@"fn".param_types;
    return struct {
        call_args: *std.meta.ArgsTuple(F),
        seen: [slots.len]bool = @splat(false),
        /// The data parameter that did not decode (for the log line).
        failed: usize = 0,

        /// Data parameter `k`: for filters and jobs the value/payload first, then `args[0..]`.
        fn take(self: *@This(), s: *json.Scanner, a: Allocator, k: usize) DecodeError!void {
            inline for (slots, 0..) |slot, j| {
                if (j == k) {
                    const T = params[slot].?;
                    self.call_args[slot] = decodeValue(T, a, s) catch |e| {
                        self.failed = j;
                        return shapeErr(e);
                    };
                    self.seen[j] = true;
                    return;
                }
            }
            s.skipValue() catch |e| return shapeErr(e);
        }

        fn decode(self: *@This(), ctx: *Ctx) DecodeError!void {
            const arena = ctx.arena;
            var s = json.Scanner.initCompleteInput(arena, ctx.envelope_json);
            if ((s.next() catch |e| return shapeErr(e)) != .object_begin) return error.BadPayload;
            while (try nextKey(&s, arena)) |key| {
                if ((kind == .filter and std.mem.eql(u8, key, "value")) or
                    (kind == .job and std.mem.eql(u8, key, "payload")))
                {
                    try self.take(&s, arena, 0);
                } else if (kind != .job and std.mem.eql(u8, key, "args")) {
                    switch (try peek(&s)) {
                        .null => try skipJson(&s),
                        .array_begin => {
                            _ = s.next() catch |e| return shapeErr(e);
                            const first: usize = if (kind == .filter) 1 else 0;
                            var k = first;
                            while (try peek(&s) != .array_end) : (k += 1) try self.take(&s, arena, k);
                            _ = s.next() catch |e| return shapeErr(e);
                        },
                        else => return error.BadPayload,
                    }
                } else if (kind == .job and std.mem.eql(u8, key, "id")) {
                    ctx.id = try stringValue(&s, arena) orelse "";
                } else try skipJson(&s);
            }
            if ((s.next() catch |e| return shapeErr(e)) != .end_of_document) return error.BadPayload;
            // Missing parameters: a filter's absent value (a job's payload) is JSON null; an absent
            // argument is null for an optional parameter and a bad payload otherwise.
            inline for (slots, 0..) |slot, j| {
                if (!self.seen[j]) {
                    const T = params[slot].?;
                    if (j == 0 and kind != .action) {
                        self.call_args[slot] = json.parseFromSliceLeaky(T, ctx.arena, "null", .{}) catch |e| {
                            self.failed = j;
                            return shapeErr(e);
                        };
                    } else if (@typeInfo(T) == .optional) {
                        self.call_args[slot] = null;
                    } else {
                        self.failed = j;
                        return error.WrongShape;
                    }
                }
            }
        }
    };
}

fn parseOptions(s: *const json.Scanner) json.ParseOptions {
    return .{ .ignore_unknown_fields = true, .max_value_len = s.input.len, .allocate = .alloc_if_needed };
}

/// Invalid JSON is a bad payload; valid JSON of the wrong shape is logged too (a plugin bug or
/// a site sending what the plugin does not expect).
fn shapeErr(e: anyerror) DecodeError {
    return switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        error.SyntaxError, error.UnexpectedEndOfInput, error.BufferUnderrun, error.BadPayload => error.BadPayload,
        else => error.WrongShape,
    };
}

fn invoke(comptime handler: anytype, ctx: *Ctx, comptime kind: Kind) i64 {
    const F = @TypeOf(handler);
    var call_args: std.meta.ArgsTuple(F) = undefined;
    inline for (@typeInfo(F).@"fn".param_types, 0..) |param, i| {
        if (comptime isCtxParam(param.?)) call_args[i] = ctx;
    }
    var decoder: Decoder(F, kind) = .{ .call_args = &call_args };
    decoder.decode(ctx) catch |e| return switch (e) {
        error.OutOfMemory => status(.out_of_memory),
        error.BadPayload => status(.bad_payload),
        error.WrongShape => blk: {
            const slots = comptime dataSlots(F);
            inline for (slots, 0..) |slot, j| {
                if (j == decoder.failed) warn("{s} {s}: argument {d} does not decode as {s}", .{
                    @tagName(ctx.kind), ctx.name, j, @typeName(@typeInfo(F).@"fn".param_types[slot].?),
                });
            }
            break :blk status(.bad_payload);
        },
    };
    const ret = @call(.auto, handler, call_args);
    const R = @TypeOf(ret);
    const result = if (@typeInfo(R) == .error_union) ret catch |e| {
        if (e == error.OutOfMemory) return status(.out_of_memory);
        err("{s} {s} failed: {s}", .{ @tagName(ctx.kind), ctx.name, @errorName(e) });
        return status(.err);
    } else ret;
    return respond(ctx, result);
}

/// Only an allocation can fail here: the writer is an `Allocating` one.
fn writeBody(w: *Writer, kind: Kind, result: anytype) Writer.Error!void {
    if (kind == .filter) try w.writeAll("{\"value\":");
    try writeJson(w, result);
    if (kind == .filter) try w.writeAll("}");
}

fn respond(ctx: *Ctx, result: anytype) i64 {
    const T = @TypeOf(result);
    if (T == void) return 0;
    if (@typeInfo(T) == .optional) {
        if (result) |r| return respond(ctx, r);
        return 0;
    }
    var out: Writer.Allocating = .init(ctx.arena);
    writeBody(&out.writer, ctx.kind, result) catch return status(.out_of_memory);
    const body = out.written();
    // The host frees the body with gn_free(ptr, len), so it must be its own exact-size block.
    const block = allocator.alloc(u8, body.len) catch return status(.out_of_memory);
    @memcpy(block, body);
    return pack(@intFromPtr(block.ptr), @intCast(block.len));
}

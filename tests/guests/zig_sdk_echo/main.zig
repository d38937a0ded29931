//! SDK test guest: one handler per SDK feature, driven by tests/runtime/test_zig_sdk.py.

const std = @import("std");
const gn = @import("gonext");

pub const filters = .{
    .{ "escape_html", escapeHtml },
    .{ "fmt_html", fmtHtml },
    .{ "script_json", scriptJson },
    .{ "script_json_fmt", scriptJsonFmt },
    .{ "script_safe", scriptSafe },
    .{ "utf8_prefix", utf8Prefix },
    .{ "ctx_last", ctxLast },
    .{ "keep", keep },
    .{ "both", bothFilter },
};
pub const actions = .{
    .{ "host_call", hostCall },
    .{ "host_call_as", hostCallAs },
    .{ "host_call_big", hostCallBig },
    .{ "fail", fail },
    .{ "oom", oom },
    .{ "panic", panicNow },
    .{ "time", time },
    .{ "log", logAll },
    .{ "post", postEcho },
    .{ "optional_arg", optionalArg },
    .{ "raw", raw },
    .{ "nothing", nothing },
    .{ "typed", typed },
    .{ "envelope", envelopeOf },
};
pub const jobs = .{
    .{ "echo", echoJob },
};

comptime {
    gn.plugin(@This());
}

pub const panic = gn.PanicHandler;
pub const std_options: std.Options = .{ .logFn = gn.logFn };

fn escapeHtml(ctx: *gn.Ctx, s: []const u8) ![]const u8 {
    return gn.escapeHtml(ctx.arena, s);
}

fn fmtHtml(ctx: *gn.Ctx, s: []const u8) ![]const u8 {
    return std.fmt.allocPrint(ctx.arena, "<p title=\"{f}\">{f}</p>", .{ gn.fmtHtml(s), gn.fmtHtml(s) });
}

fn scriptJson(ctx: *gn.Ctx, v: std.json.Value) ![]const u8 {
    return gn.jsonForScript(ctx.arena, v);
}

fn scriptJsonFmt(ctx: *gn.Ctx, v: std.json.Value) ![]const u8 {
    return std.fmt.allocPrint(ctx.arena, "{f}", .{gn.fmtJsonForScript(v)});
}

/// Escapes already-encoded JSON text (the value is the JSON text itself).
fn scriptSafe(ctx: *gn.Ctx, s: []const u8) ![]const u8 {
    var out: std.Io.Writer.Allocating = .init(ctx.arena);
    gn.writeScriptSafe(&out.writer, s) catch return error.OutOfMemory;
    return out.written();
}

fn utf8Prefix(s: []const u8, n: usize) []const u8 {
    return gn.utf8Prefix(s, n);
}

/// The context parameter may come anywhere; data parameters keep their order.
fn ctxLast(v: i64, extra: ?i64, ctx: *gn.Ctx) !struct { v: i64, extra: ?i64, name: []const u8, kind: []const u8 } {
    return .{ .v = v, .extra = extra, .name = ctx.name, .kind = @tagName(ctx.kind) };
}

/// null from an optional result: the filtered value stays unchanged (no body).
fn keep(_: std.json.Value) ?i64 {
    return null;
}

fn bothFilter(v: []const u8) []const u8 {
    return v;
}

const CallResult = struct { ok: ?std.json.Value = null, @"error": ?[]const u8 = null };

fn hostCall(ctx: *gn.Ctx, name: []const u8, payload: std.json.Value) !CallResult {
    const result = ctx.hostCall(name, payload) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = result };
}

const Point = struct { x: i64, y: i64 };

fn hostCallAs(ctx: *gn.Ctx, name: []const u8, payload: std.json.Value) !CallResult {
    const p = ctx.hostCallAs(Point, name, payload) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = .{ .integer = p.x + p.y } };
}

/// Sends a string of `n` 'x's; answers with the length of the echoed JSON string.
fn hostCallBig(ctx: *gn.Ctx, name: []const u8, n: usize) !CallResult {
    const big = try ctx.arena.alloc(u8, n);
    @memset(big, 'x');
    const result = ctx.hostCall(name, big) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = .{ .integer = @intCast(result.string.len + 2) } };
}

fn fail(ctx: *gn.Ctx) !void {
    _ = ctx;
    return error.Boom;
}

fn oom(ctx: *gn.Ctx) ![]u8 {
    // Far over the memory cap: the allocator reports OutOfMemory instead of trapping.
    return ctx.arena.alloc(u8, 1 << 30);
}

fn panicNow(msg: []const u8) void {
    gn.panicf("guest says: {s}", .{msg});
}

fn time() i64 {
    return gn.timeMs();
}

fn logAll(msg: []const u8) void {
    gn.debug("debug {s}", .{msg});
    gn.info("info {s}", .{msg});
    gn.warn("warn {s}", .{msg});
    gn.err("err {s}", .{msg});
    std.log.scoped(.echo).info("std.log {s}", .{msg});
    var long: [3000]u8 = undefined;
    @memset(&long, 'x');
    gn.info("{s}", .{&long}); // truncated to the 1 KiB buffer
}

fn postEcho(post: gn.Post) gn.Post {
    return post;
}

fn optionalArg(a: ?i64, b: ?[]const u8) struct { a: ?i64, b: ?[]const u8 } {
    return .{ .a = a, .b = b };
}

fn raw() gn.RawJson {
    return .{ .bytes = "{\"raw\":[1,2,3]}" };
}

fn nothing() void {}

fn echoJob(ctx: *gn.Ctx, payload: std.json.Value) !struct { id: []const u8, payload: std.json.Value } {
    return .{ .id = ctx.id, .payload = payload };
}

const Typed = struct {
    name: []const u8,
    tags: []const []const u8 = &.{},
    n: ?i64 = null,
    inner: struct { ok: bool, note: ?[]const u8 = null },
    level: enum { low, high } = .low,
};

/// A nested typed parameter, decoded by the SDK and written back.
fn typed(t: Typed, more: ?[]const f64) struct { t: Typed, more: ?[]const f64 } {
    return .{ .t = t, .more = more };
}

/// The envelope as a tree, on demand: its "hook" and how many top-level keys it has.
fn envelopeOf(ctx: *gn.Ctx) !struct { hook: []const u8, keys: usize } {
    const tree = try ctx.envelope();
    return .{ .hook = tree.object.get("hook").?.string, .keys = tree.object.count() };
}

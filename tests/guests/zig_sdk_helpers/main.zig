//! SDK test guest for the typed host-function helpers (settings, kv, plugin.info), driven by
//! tests/runtime/test_zig_sdk_helpers.py. Every action answers `{"ok": <result>}` or
//! `{"error": "<Zig error name>"}`, so a test sees both what the helper decoded and how it failed.

const std = @import("std");
const gn = @import("gonext");

pub const actions = .{
    .{ "settings_get", settingsGet },
    .{ "settings_get_string", settingsGetString },
    .{ "settings_all", settingsAll },
    .{ "settings_as", settingsAs },
    .{ "kv_get", kvGet },
    .{ "kv_set", kvSet },
    .{ "kv_delete", kvDelete },
    .{ "kv_list", kvList },
    .{ "kv_incr", kvIncr },
    .{ "kv_incr_loop", kvIncrLoop },
    .{ "kv_cas", kvCas },
    .{ "kv_cas_absent", kvCasAbsent },
    .{ "plugin_info", pluginInfo },
};

comptime {
    gn.plugin(@This());
}

pub const panic = gn.PanicHandler;

fn Result(comptime T: type) type {
    return struct { ok: ?T = null, @"error": ?[]const u8 = null };
}

fn wrap(comptime T: type, r: gn.HostCallError!T) Result(T) {
    const v = r catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = v };
}

/// `null` in `ok` is "not found" (the helper returned null).
fn settingsGet(ctx: *gn.Ctx, key: []const u8) Result(?std.json.Value) {
    return wrap(?std.json.Value, gn.settingsGet(ctx.arena, key));
}

fn settingsGetString(ctx: *gn.Ctx, key: []const u8) Result(?[]const u8) {
    return wrap(?[]const u8, gn.settingsGetAs([]const u8, ctx.arena, key));
}

fn settingsAll(ctx: *gn.Ctx) Result(std.json.Value) {
    const m = gn.settingsAll(ctx.arena) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = .{ .object = m } };
}

const Typed = struct { twitterSite: []const u8 = "", wordsPerMinute: i64 = 200, enabled: bool = true };

fn settingsAs(ctx: *gn.Ctx) Result(Typed) {
    return wrap(Typed, gn.settingsAs(Typed, ctx.arena));
}

fn kvGet(ctx: *gn.Ctx, key: []const u8) Result(?std.json.Value) {
    return wrap(?std.json.Value, gn.kvGet(ctx.arena, key));
}

/// args: [key, value, ttlSeconds or null]
fn kvSet(key: []const u8, value: std.json.Value, ttl: ?u32) Result(bool) {
    gn.kvSet(key, value, .{ .ttl_seconds = ttl }) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = true };
}

fn kvDelete(key: []const u8) Result(bool) {
    return wrap(bool, gn.kvDelete(key));
}

fn kvList(ctx: *gn.Ctx, prefix: ?[]const u8) Result([]const []const u8) {
    return wrap([]const []const u8, gn.kvList(ctx.arena, prefix));
}

fn kvIncr(key: []const u8, by: i64) Result(i64) {
    return wrap(i64, gn.kvIncr(key, by));
}

/// `n` increments of 1 in one call; answers the last value.
fn kvIncrLoop(key: []const u8, n: u32) Result(i64) {
    var last: i64 = 0;
    for (0..n) |_| last = gn.kvIncr(key, 1) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = last };
}

fn kvCas(ctx: *gn.Ctx, key: []const u8, expected: std.json.Value, value: std.json.Value) Result(gn.CasResult) {
    return wrap(gn.CasResult, gn.kvCas(ctx.arena, key, expected, value));
}

/// `expected` as the Zig `null` literal: "the key is absent".
fn kvCasAbsent(ctx: *gn.Ctx, key: []const u8, value: std.json.Value) Result(gn.CasResult) {
    return wrap(gn.CasResult, gn.kvCas(ctx.arena, key, null, value));
}

const InfoOut = struct {
    info: gn.PluginInfo,
    has_kv: bool,
    has_http: bool,
    offers_wp_head: bool,
};

fn pluginInfo(ctx: *gn.Ctx) Result(InfoOut) {
    const info = gn.pluginInfo(ctx.arena) catch |e| return .{ .@"error" = @errorName(e) };
    return .{ .ok = .{
        .info = info,
        .has_kv = info.granted("kv"),
        .has_http = info.granted("http.fetch"),
        .offers_wp_head = info.offersHook("wp_head"),
    } };
}

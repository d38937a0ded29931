//! Reading time (Zig): the reading-time plugin of examples/plugins/README.md, written with the Zig
//! SDK (sdk/zig/gonext.zig). Counts the words of a post's body, estimates the minutes at the site's
//! reading speed, shows them above the post and in its Twitter card, and stores each saved post's
//! count.
//!
//!   filter `the_content` (value: the post's HTML, args: [post]) → "<p><em>N min read</em></p>" + HTML;
//!   action `wp_head` (args: [post] or []) → {"meta": [twitter:label1, twitter:data1]};
//!   action `save_post` (args: [post]) → logs the count, kv.set "words:{id}", kv.incr
//!       "posts_counted" (skipped without the optional kv capability) → {"words", "minutes"}.

const std = @import("std");
const gn = @import("gonext");

pub const filters = .{
    .{ "the_content", theContent },
};
pub const actions = .{
    .{ "wp_head", wpHead },
    .{ "save_post", savePost },
};

comptime {
    gn.plugin(@This());
}

pub const panic = gn.PanicHandler;

const default_speed = 200;

/// Maximal runs of bytes that are not ASCII whitespace.
fn countWords(text: []const u8) i64 {
    var words: i64 = 0;
    var in_word = false;
    for (text) |c| {
        const space = switch (c) {
            ' ', '\t', '\n', '\r', 0x0c, 0x0b => true,
            else => false,
        };
        if (!space and !in_word) words += 1;
        in_word = !space;
    }
    return words;
}

/// The site's wordsPerMinute when it is an integer from 50 to 1000, else the default.
fn readingSpeed(ctx: *gn.Ctx) i64 {
    const value = gn.settingsGet(ctx.arena, "wordsPerMinute") catch return default_speed;
    if (value) |v| switch (v) {
        .integer => |speed| if (speed >= 50 and speed <= 1000) return speed,
        else => {},
    };
    return default_speed;
}

fn minutesFor(ctx: *gn.Ctx, words: i64) i64 {
    return @max(1, std.math.divCeil(i64, words, readingSpeed(ctx)) catch 1);
}

/// The post's body when the argument is an object with a string `body`.
fn bodyOf(post: ?std.json.Value) ?[]const u8 {
    const p = post orelse return null;
    if (p != .object) return null;
    const body = p.object.get("body") orelse return null;
    return if (body == .string) body.string else null;
}

fn theContent(ctx: *gn.Ctx, value: std.json.Value, post: ?std.json.Value) !?[]const u8 {
    if (value != .string) return null;
    const body = bodyOf(post) orelse return null;
    const minutes = minutesFor(ctx, countWords(body));
    return try std.fmt.allocPrint(ctx.arena, "<p><em>{d} min read</em></p>{s}", .{ minutes, value.string });
}

const Head = struct { meta: []const gn.Meta };
/// A post without a string body is a bad payload (-3), answered by the SDK's decoding.
const HeadPost = struct { body: []const u8 };

fn wpHead(ctx: *gn.Ctx, post: ?HeadPost) !?Head {
    const p = post orelse return null;
    const minutes = minutesFor(ctx, countWords(p.body));
    const meta = try ctx.arena.alloc(gn.Meta, 2);
    meta[0] = .{ .name = "twitter:label1", .content = "Reading time" };
    meta[1] = .{ .name = "twitter:data1", .content = try std.fmt.allocPrint(ctx.arena, "{d} min read", .{minutes}) };
    return .{ .meta = meta };
}

const SavedPost = struct { id: i64, body: []const u8 };

fn savePost(ctx: *gn.Ctx, post: SavedPost) !struct { words: i64, minutes: i64 } {
    const words = countWords(post.body);
    gn.info("post {d}: {d} words", .{ post.id, words });
    // Without the optional kv capability the host answers "denied": skip the counting, silently.
    counted: {
        const key = try std.fmt.allocPrint(ctx.arena, "words:{d}", .{post.id});
        gn.kvSet(key, words, .{}) catch |e| switch (e) {
            error.CapabilityDenied => break :counted,
            else => return e,
        };
        _ = try gn.kvIncr("posts_counted", 1);
    }
    return .{ .words = words, .minutes = minutesFor(ctx, words) };
}

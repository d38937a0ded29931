//! SEO: schema.org JSON-LD on posts, <head> meta tags, and an SEO score per post.
//!
//!   action `wp_head` (args: [post] or []) → the host's structured outputs, no markup:
//!       {"title", "meta": [...], "link": [canonical], "jsonld": Article}, or no body without a
//!       post. The host escapes and renders them, so the plugin needs no `html.raw`. The setting
//!       `twitterSite` (the site's Twitter handle, read with `settings.get`) adds `twitter:site`;
//!   action `save_post` (args: [post]) → scores the post and stores the score with host function
//!       `posts.meta_set` (capability posts.write), then queues `seo.recompute-scores` through
//!       `jobs.enqueue` to refresh every other score in the background, and counts the posts it
//!       scored with `kv.incr` (optional capability kv); → {"score": n, "stored": bool};
//!   job `seo.recompute-scores` (payload: {"offset"?: n}) → pages through `posts.list` and stores
//!       every score; a run that stops early queues the rest as a new job from `next_offset`;
//!       → {"updated": n, "next_offset": null | n}.
//! See README.md for the scoring rules and how to build, sign and install the plugin.

const std = @import("std");
const gn = @import("gonext");

pub const actions = .{
    .{ "wp_head", wpHead },
    .{ "save_post", savePost },
};
pub const jobs = .{
    .{ "seo.recompute-scores", recomputeScores },
};

comptime {
    gn.plugin(@This());
}

pub const panic = gn.PanicHandler;

/// Meta descriptions longer than this are cut (search engines show about 155-160 characters).
const description_max_bytes = 155;
/// posts.list page size.
const page_size = 100;
/// Pages per job run: (page_size + 1) host calls a page stays under the host's default
/// max_host_calls (1000) per call. A run that stops early returns `next_offset`.
const pages_per_run = 9;

// --- wp_head ------------------------------------------------------------------------------------

const Article = struct {
    @"@context": []const u8 = "https://schema.org",
    @"@type": []const u8 = "Article",
    headline: []const u8,
    url: []const u8,
    description: []const u8,
    wordCount: usize,
    datePublished: ?[]const u8 = null,
};

const Head = struct {
    title: []const u8,
    meta: []const gn.Meta,
    link: []const gn.Link,
    jsonld: gn.RawJson,
};

/// <title>, description, canonical, OpenGraph and Twitter card tags and the Article JSON-LD for a
/// post page; no body elsewhere. Values go out as plain data: the host escapes them as it renders
/// (and keeps `</script>` in a title from ending the JSON-LD), so nothing here is markup.
fn wpHead(ctx: *gn.Ctx, post: ?gn.Post) !?Head {
    const p = post orelse return null;
    const desc = try describe(ctx.arena, p.body);
    const article: Article = .{
        .headline = p.title,
        .url = p.url,
        .description = desc,
        .wordCount = wordCount(p.body),
        .datePublished = if (p.published == .string) p.published.string else null,
    };
    const ld = try std.json.Stringify.valueAlloc(ctx.arena, article, .{ .emit_null_optional_fields = false });
    const base = [_]gn.Meta{
        .{ .name = "description", .content = desc },
        .{ .property = "og:type", .content = "article" },
        .{ .property = "og:title", .content = p.title },
        .{ .property = "og:description", .content = desc },
        .{ .property = "og:url", .content = p.url },
        .{ .name = "twitter:card", .content = "summary" },
        .{ .name = "twitter:title", .content = p.title },
        .{ .name = "twitter:description", .content = desc },
    };
    const site_handle = twitterSite(ctx);
    const meta = try ctx.arena.alloc(gn.Meta, base.len + @intFromBool(site_handle != null));
    @memcpy(meta[0..base.len], &base);
    if (site_handle) |h| meta[base.len] = .{ .name = "twitter:site", .content = h };
    const link = try ctx.arena.dupe(gn.Link, &.{.{ .rel = "canonical", .href = p.url }});
    return .{ .title = p.title, .meta = meta, .link = link, .jsonld = .{ .bytes = ld } };
}

/// The setting `twitterSite` (e.g. "@gonext"), or null when it is empty or cannot be read. A
/// missing handle only drops one meta tag, so no failure here may cost the page its head: a host
/// without `settings.get` (-6), a plugin whose settings are not set, a value that is not a string.
fn twitterSite(ctx: *gn.Ctx) ?[]const u8 {
    const handle = gn.settingsGetAs([]const u8, ctx.arena, "twitterSite") catch |e| {
        gn.debug("twitter:site omitted: settings.get failed: {s}", .{@errorName(e)});
        return null;
    } orelse return null;
    const trimmed = std.mem.trim(u8, handle, " \t\r\n");
    return if (trimmed.len == 0) null else trimmed;
}

// --- save_post ----------------------------------------------------------------------------------

const Saved = struct { score: u8, stored: bool };

/// Score the post and store it as post meta `seo_score` at once (the page shows it on the next
/// view), then queue a site-wide refresh in the background so every score follows the current
/// rules. A site that has not granted posts.write gets a warning and `"stored": false`, not a
/// fault: that is configuration, not a plugin bug; the same goes for jobs.enqueue.
fn savePost(ctx: *gn.Ctx, post: gn.Post) !Saved {
    const s = try score(ctx.arena, post);
    gn.info("scored post {d}: {d}", .{ post.id, s });
    countScored();
    queueRecompute(ctx, .{}); // from the first post
    const stored = storeScore(ctx, post.id, s) catch |e| switch (e) {
        error.CapabilityDenied => {
            gn.warn("seo_score of post {d} not stored: capability posts.write not granted", .{post.id});
            return .{ .score = s, .stored = false };
        },
        else => return e,
    };
    return .{ .score = s, .stored = stored };
}

/// kv key of the number of posts scored on save, for the site's statistics.
pub const scored_key = "stats.posts_scored";

/// Count one scored post with `kv.incr` (atomic, so parallel saves lose no count). Best effort: kv
/// is an optional capability, and a host without `kv.incr` answers -6; either way the score stands.
fn countScored() void {
    const n = gn.kvIncr(scored_key, 1) catch |e| {
        gn.debug("posts scored not counted: {s}", .{@errorName(e)});
        return;
    };
    gn.info("posts scored: {d}", .{n});
}

fn storeScore(ctx: *gn.Ctx, id: i64, s: u8) gn.HostCallError!bool {
    _ = try ctx.hostCall("posts.meta_set", .{ .id = id, .key = "seo_score", .value = s });
    return true;
}

// --- seo.recompute-scores -----------------------------------------------------------------------

const Queued = struct { id: []const u8 };

/// Queue `seo.recompute-scores` with `payload` (host function `jobs.enqueue`, capability
/// jobs.enqueue). Best effort: a refusal is logged, the caller's own work stands.
fn queueRecompute(ctx: *gn.Ctx, payload: RecomputeArgs) void {
    const queued = ctx.hostCallAs(Queued, "jobs.enqueue", .{ .job = "seo.recompute-scores", .payload = payload }) catch |e| {
        gn.warn("seo.recompute-scores not queued: {s}", .{@errorName(e)});
        return;
    };
    gn.info("queued seo.recompute-scores (job {s})", .{queued.id});
}

const RecomputeArgs = struct { offset: u32 = 0 };
const Recomputed = struct { updated: u32, next_offset: ?u32 };

/// Re-score every post, page by page. Each page gets its own arena so memory stays flat.
fn recomputeScores(ctx: *gn.Ctx, args: ?RecomputeArgs) !Recomputed {
    var offset: u32 = if (args) |a| a.offset else 0;
    var updated: u32 = 0;
    var page_arena = std.heap.ArenaAllocator.init(gn.allocator);
    defer page_arena.deinit();
    for (0..pages_per_run) |_| {
        _ = page_arena.reset(.retain_capacity);
        const arena = page_arena.allocator();
        const posts = try gn.hostCallAs([]const gn.Post, arena, "posts.list", .{ .limit = page_size, .offset = offset });
        for (posts) |post| {
            const s = try score(arena, post);
            _ = try gn.hostCall(arena, "posts.meta_set", .{ .id = post.id, .key = "seo_score", .value = s });
            updated += 1;
        }
        offset += @intCast(posts.len);
        if (posts.len < page_size) {
            gn.info("recomputed {d} SEO scores (task {s})", .{ updated, ctx.id });
            return .{ .updated = updated, .next_offset = null };
        }
    }
    gn.info("recomputed {d} SEO scores (task {s}); continue at offset {d}", .{ updated, ctx.id, offset });
    queueRecompute(ctx, .{ .offset = offset });
    return .{ .updated = updated, .next_offset = offset };
}

// --- scoring ------------------------------------------------------------------------------------

/// The SEO score, 0-100 (see README.md, "Scoring"):
///   title length in code points: 30-60 → 30, 15-29 or 61-70 → 20, other non-empty → 10, empty → 0;
///   body words: ≥300 → 40, ≥150 → 30, ≥50 → 15, ≥1 → 5, none → 0;
///   slug: non-empty, ≤60 bytes, only a-z 0-9 '-' → 10, other non-empty → 5, empty → 0;
///   keywords: 20 × (title words of ≥4 ASCII letters/digits found in the body, case-insensitive)
///   / (title words of ≥4), rounded down; 0 when the title has none.
pub fn score(arena: std.mem.Allocator, post: gn.Post) !u8 {
    var total: u32 = 0;

    const title_len = std.unicode.utf8CountCodepoints(post.title) catch post.title.len;
    total += if (title_len >= 30 and title_len <= 60) 30 else if ((title_len >= 15 and title_len < 30) or
        (title_len > 60 and title_len <= 70)) 20 else if (title_len > 0) 10 else 0;

    const words = wordCount(post.body);
    total += if (words >= 300) 40 else if (words >= 150) 30 else if (words >= 50) 15 else if (words >= 1) 5 else 0;

    if (post.slug.len > 0) {
        const clean = post.slug.len <= 60 and for (post.slug) |c| {
            if (!(std.ascii.isLower(c) or std.ascii.isDigit(c) or c == '-')) break false;
        } else true;
        total += if (clean) 10 else 5;
    }

    const body = try std.ascii.allocLowerString(arena, post.body);
    var keywords: u32 = 0;
    var found: u32 = 0;
    var it = std.mem.tokenizeAny(u8, post.title, " \t\r\n.,:;!?\"'()[]{}<>/\\|&*+=_-");
    while (it.next()) |word| {
        if (word.len < 4 or !isAsciiAlnum(word)) continue;
        keywords += 1;
        const lower = try std.ascii.allocLowerString(arena, word);
        if (std.mem.indexOf(u8, body, lower) != null) found += 1;
    }
    if (keywords > 0) total += 20 * found / keywords;
    return @intCast(@min(total, 100));
}

fn isAsciiAlnum(s: []const u8) bool {
    for (s) |c| if (!std.ascii.isAlphanumeric(c)) return false;
    return true;
}

fn wordCount(text: []const u8) usize {
    var n: usize = 0;
    var it = std.mem.tokenizeAny(u8, text, " \t\r\n");
    while (it.next()) |_| n += 1;
    return n;
}

/// A one-line description from the plain-text body: whitespace collapsed, cut at a word boundary
/// to at most `description_max_bytes` (never inside a UTF-8 sequence), "…" appended when cut.
fn describe(arena: std.mem.Allocator, body: []const u8) ![]const u8 {
    var out: std.ArrayList(u8) = .empty;
    var it = std.mem.tokenizeAny(u8, body, " \t\r\n");
    var cut = false;
    while (it.next()) |word| {
        const sep: usize = if (out.items.len > 0) 1 else 0;
        if (out.items.len + sep + word.len > description_max_bytes) {
            cut = true;
            if (out.items.len == 0) // one huge word: cut it on a code point boundary
                try out.appendSlice(arena, gn.utf8Prefix(word, description_max_bytes));
            break;
        }
        if (sep == 1) try out.append(arena, ' ');
        try out.appendSlice(arena, word);
    }
    if (cut) try out.appendSlice(arena, "…");
    return out.items;
}

//! The runtime benchmark's filter written with the Zig SDK: `the_content` upper-cases its string
//! (the same work as upper_gonext.wat), so its fuel per call is the SDK's own cost plus a loop.

const std = @import("std");
const gn = @import("gonext");

pub const filters = .{
    .{ "the_content", theContent },
};

comptime {
    gn.plugin(@This());
}

fn theContent(ctx: *gn.Ctx, html: []const u8) ![]const u8 {
    return std.ascii.allocUpperString(ctx.arena, html);
}

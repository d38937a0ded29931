/* The C SDK's behaviours, one action per feature (tests/devtools/test_c.py), plus traps whose lines
 * the tests look up: keep the GN_ASSERT, the far load and the __builtin_trap on their marked lines. */
#define GONEXT_IMPLEMENTATION
#include "gonext.h"

/* args[0] a string: answers it decoded and written again (escaping round trip). */
static int echo_string(gn_ctx *ctx) {
    gn_json arg;
    gn_str s;
    if (!gn_json_at(ctx->args, 0, &arg) || !gn_json_str(arg, &s)) return GN_BAD_PAYLOAD;
    gn_write_strn(ctx->out, s.ptr, s.len);
    return GN_OK;
}

/* args[0] any value: {"type": n, "count": n, "int": n|null, "bool": b|null, "keys": [...]} */
static int describe(gn_ctx *ctx) {
    gn_json v, field;
    gn_json_at(ctx->args, 0, &v);
    gn_writer *w = ctx->out;
    gn_write_object_begin(w);
    gn_write_key(w, "type");
    gn_write_int(w, gn_json_typeof(v));
    gn_write_key(w, "count");
    gn_write_int(w, (int64_t)gn_json_count(v));
    int64_t n;
    bool b;
    gn_write_key(w, "int");
    if (gn_json_int(v, &n)) gn_write_int(w, n);
    else gn_write_null(w);
    gn_write_key(w, "bool");
    if (gn_json_bool(v, &b)) gn_write_bool(w, b);
    else gn_write_null(w);
    gn_write_key(w, "keys");
    gn_write_array_begin(w);
    gn_json_iter it = gn_json_iterate(v);
    gn_str key;
    while (gn_json_next_field(&it, &key, &field)) gn_write_strn(w, key.ptr, key.len);
    gn_write_array_end(w);
    gn_write_key(w, "x");
    if (gn_json_get(v, "x", &field)) gn_write_json(w, field);
    else gn_write_str(w, "absent");
    gn_write_object_end(w);
    return GN_OK;
}

static int format(gn_ctx *ctx) {
    (void)ctx;
    gn_logf(GN_WARN, "%d|%lld|%u|%zu|%x|%c|%s|%.*s|%%", -42, (long long)-9007199254740993LL, 4000000000u,
            (size_t)7, 255u, 'q', "str", 3, "abcdef");
    return GN_NO_BODY;
}

static int kv_roundtrip(gn_ctx *ctx) {
    bool found = false, deleted = false, swapped = false;
    gn_json value, now, keys;
    int64_t counted = 0;
    int status = gn_kv_set_str("name", "caf\xc3\xa9 \"q\"", -1);
    if (!status) status = gn_kv_get("name", &found, &value);
    if (!status) status = gn_kv_incr("n", 5, &counted);
    gn_json expected = {"5", 1}, replacement = {"[1,2]", 5};
    if (!status) status = gn_kv_cas("n", &expected, replacement, &swapped, &now);
    if (!status) status = gn_kv_list(0, &keys);
    if (!status) status = gn_kv_delete("name", &deleted);
    gn_writer *w = ctx->out;
    gn_write_object_begin(w);
    gn_write_key(w, "status");
    gn_write_int(w, status);
    if (!status) {
        gn_write_key(w, "found");
        gn_write_bool(w, found);
        gn_write_key(w, "value");
        gn_write_json(w, value);
        gn_write_key(w, "counted");
        gn_write_int(w, counted);
        gn_write_key(w, "swapped");
        gn_write_bool(w, swapped);
        gn_write_key(w, "now");
        gn_write_json(w, now);
        gn_write_key(w, "keys");
        gn_write_json(w, keys);
        gn_write_key(w, "deleted");
        gn_write_bool(w, deleted);
    }
    gn_write_object_end(w);
    (void)ctx;
    return GN_OK;
}

static int fails(gn_ctx *ctx) {
    (void)ctx;
    return GN_ERROR;
}

static int checked(gn_ctx *ctx) {
    int64_t n = 0;
    gn_json first;
    gn_json_at(ctx->args, 0, &first);
    gn_json_int(first, &n);
    GN_ASSERT(n > 0); /* line: assert */
    return GN_NO_BODY;
}

static int out_of_bounds(gn_ctx *ctx) {
    (void)ctx;
    volatile int *far = (volatile int *)0xfffffff0u;
    return *far; /* line: out of bounds */
}

static int unreachable(gn_ctx *ctx) {
    (void)ctx;
    __builtin_trap(); /* line: unreachable */
}

/* A filter that upper-cases ASCII: the value comes back wrapped in {"value": ...} by the SDK. */
static int shout(gn_ctx *ctx) {
    gn_str s;
    if (!gn_json_str(ctx->value, &s)) return GN_NO_BODY;
    char *up = gn_arena_alloc(s.len + 1);
    if (!up) return GN_OUT_OF_MEMORY;
    for (size_t i = 0; i < s.len; i++) up[i] = s.ptr[i] >= 'a' && s.ptr[i] <= 'z' ? s.ptr[i] - 32 : s.ptr[i];
    gn_write_strn(ctx->out, up, s.len);
    return GN_OK;
}

static int job(gn_ctx *ctx) {
    gn_writer *w = ctx->out;
    gn_write_object_begin(w);
    gn_write_key(w, "id");
    gn_write_strn(w, ctx->id.ptr, ctx->id.len);
    gn_write_key(w, "payload");
    gn_write_json(w, ctx->payload);
    gn_write_object_end(w);
    return GN_OK;
}

GN_HANDLERS(
    GN_ACTION("echo_string", echo_string),
    GN_ACTION("describe", describe),
    GN_ACTION("format", format),
    GN_ACTION("kv_roundtrip", kv_roundtrip),
    GN_ACTION("fails", fails),
    GN_ACTION("checked", checked),
    GN_ACTION("out_of_bounds", out_of_bounds),
    GN_ACTION("unreachable", unreachable),
    GN_FILTER("shout", shout),
    GN_JOB("demo.job", job)
)

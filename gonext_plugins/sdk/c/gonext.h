/* gonext plugin SDK for C (ABI version 1, see ABI.md): one header, no libc.
 *
 * Built with `zig cc --target=wasm32-freestanding` (what `manage.py plugin dev` runs). Single-header,
 * stb style: every file may include it; exactly one file defines GONEXT_IMPLEMENTATION first, which
 * adds the exports (gn_alloc, gn_free, gn_handle_hook, gn_handle_job), the allocator, the JSON
 * reader and writer and the host-function wrappers.
 *
 *     #define GONEXT_IMPLEMENTATION
 *     #include "gonext.h"
 *
 *     static int the_content(gn_ctx *ctx) {          // a filter: ctx->value, ctx->args
 *         gn_str html;
 *         if (!gn_json_str(ctx->value, &html)) return GN_NO_BODY;    // value unchanged
 *         gn_write_strn(ctx->out, html.ptr, html.len);                // the new value (JSON)
 *         return GN_OK;
 *     }
 *     GN_HANDLERS(GN_FILTER("the_content", the_content))
 *
 * A handler returns GN_OK (the body is what it wrote into ctx->out, nothing written = no body),
 * GN_NO_BODY, GN_ERROR (-1), GN_OUT_OF_MEMORY (-2) or GN_BAD_PAYLOAD (-3). A filter writes the new
 * value itself; the SDK wraps it in {"value": ...}. Everything a call allocates (gn_arena_alloc,
 * host-call results, the writer) is freed when the call returns. The README beside this file is the
 * reference.
 */
#ifndef GONEXT_H
#define GONEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GN_ABI_VERSION 1

/* --- statuses ------------------------------------------------------------------------------- */

/* What a handler returns (ABI.md's negative lens for the hook result). */
#define GN_OK 0
#define GN_NO_BODY 1
#define GN_ERROR (-1)
#define GN_OUT_OF_MEMORY (-2)
#define GN_BAD_PAYLOAD (-3)
#define GN_UNKNOWN_HOOK (-4)

/* What a host call returns: 0, or ABI.md's negative lens for gn_host_call, or GN_HOST_BAD_RESULT
 * when the host's answer is not the JSON the function documents. */
#define GN_HOST_OK 0
#define GN_HOST_ERROR (-1)
#define GN_HOST_OUT_OF_MEMORY (-2)
#define GN_HOST_BAD_PAYLOAD (-3)
#define GN_HOST_CAPABILITY_DENIED (-5)
#define GN_HOST_UNKNOWN_FUNCTION (-6)
#define GN_HOST_BAD_RESULT (-7)

/* Log levels (ABI.md). */
#define GN_DEBUG 0
#define GN_INFO 1
#define GN_WARN 2
#define GN_ERR 3

/* --- types ---------------------------------------------------------------------------------- */

/* A byte slice (not NUL-terminated unless said so). */
typedef struct gn_str {
    const char *ptr;
    size_t len;
} gn_str;

/* A JSON value: the slice of the (already validated) document it spans. len 0 = absent. */
typedef struct gn_json {
    const char *ptr;
    size_t len;
} gn_json;

typedef enum gn_json_type {
    GN_JSON_ABSENT = 0,
    GN_JSON_NULL,
    GN_JSON_BOOL,
    GN_JSON_NUMBER,
    GN_JSON_STRING,
    GN_JSON_ARRAY,
    GN_JSON_OBJECT,
} gn_json_type;

/* Iterates an array's elements or an object's fields. */
typedef struct gn_json_iter {
    const char *pos;
    const char *end;
    bool object;
} gn_json_iter;

/* A growable JSON writer on the call's memory; commas and colons are placed for you. */
#define GN_WRITER_MAX_DEPTH 64
typedef struct gn_writer {
    char *buf;
    size_t len;
    size_t cap;
    bool oom;
    uint32_t depth;
    uint8_t comma[GN_WRITER_MAX_DEPTH + 1]; /* 1: the next item at this depth needs a comma */
    bool after_key;
} gn_writer;

typedef enum gn_kind { GN_KIND_ACTION, GN_KIND_FILTER, GN_KIND_JOB } gn_kind;

/* The call a handler serves. */
typedef struct gn_ctx {
    gn_kind kind;
    gn_str name;       /* the hook or job name */
    gn_json envelope;  /* the whole payload */
    gn_json value;     /* filter: the filtered value */
    gn_json args;      /* hooks: the args array (length 0 when the payload had none) */
    gn_json payload;   /* job: its payload (absent when none) */
    gn_str id;         /* job: the task id, the idempotency key */
    gn_writer *out;    /* the body */
} gn_ctx;

typedef int (*gn_handler_fn)(gn_ctx *ctx);

typedef struct gn_handler {
    gn_kind kind;
    const char *name;
    gn_handler_fn fn;
} gn_handler;

#define GN_FILTER(name, fn) {GN_KIND_FILTER, (name), (fn)}
#define GN_ACTION(name, fn) {GN_KIND_ACTION, (name), (fn)}
#define GN_JOB(name, fn) {GN_KIND_JOB, (name), (fn)}
/* The plugin's handler table, once per plugin: GN_HANDLERS(GN_FILTER(...), GN_ACTION(...)) */
#define GN_HANDLERS(...) const gn_handler gn_plugin_handlers[] = {__VA_ARGS__, {GN_KIND_ACTION, 0, 0}};
extern const gn_handler gn_plugin_handlers[];

/* --- host imports (module env) -------------------------------------------------------------- */

#define GN__IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
GN__IMPORT(gn_log) void gn__env_log(int32_t level, const char *ptr, size_t len);
GN__IMPORT(gn_panic) void gn__env_panic(const char *ptr, size_t len);
GN__IMPORT(gn_time_ms) int64_t gn__env_time_ms(void);
GN__IMPORT(gn_host_call) int64_t gn__env_host_call(const char *name, size_t name_len, const char *payload,
                                                   size_t payload_len);

/* --- API ------------------------------------------------------------------------------------ */

/* Memory. gn_arena_alloc: freed when the call returns (0 when out of memory). */
void *gn_arena_alloc(size_t size);
void *gn_malloc(size_t size);            /* lives until gn_free_block(ptr, size) */
void gn_free_block(void *ptr, size_t size);
size_t gn_strlen(const char *s);
bool gn_str_eq(gn_str a, const char *b);
gn_str gn_cstr(const char *s);

/* Logging and panics. gn_logf understands %d %i %u %ld %lld %lu %llu %zu %x %c %s %.*s %%. */
void gn_log(int level, const char *msg, size_t len);
void gn_logf(int level, const char *fmt, ...);
/* The same formatting into the call's arena, NUL-terminated (ptr "" and len 0 when out of memory). */
gn_str gn_format(const char *fmt, ...);
__attribute__((noreturn)) void gn_panic(const char *msg);
__attribute__((noreturn, noinline)) void gn__assert_fail(const char *file, int line, const char *expr);
/* GN_ASSERT(cond): when false, the call ends as a trap "main.c:12: assertion failed: cond". */
#define GN_ASSERT(cond) ((cond) ? (void)0 : gn__assert_fail(__FILE__, __LINE__, #cond))
int64_t gn_time_ms(void);

/* JSON reader. A gn_json is only ever a slice of a validated document. */
bool gn_json_parse(const char *text, size_t len, gn_json *out); /* validates; false if not JSON */
gn_json_type gn_json_typeof(gn_json v);
bool gn_json_get(gn_json object, const char *key, gn_json *out); /* false: not an object or no such key */
bool gn_json_at(gn_json array, size_t index, gn_json *out);
size_t gn_json_count(gn_json array_or_object);
gn_json_iter gn_json_iterate(gn_json array_or_object); /* over nothing when it is neither */
bool gn_json_next(gn_json_iter *it, gn_json *value);                /* arrays */
bool gn_json_next_field(gn_json_iter *it, gn_str *key, gn_json *value); /* objects; key still escaped */
bool gn_json_is_null(gn_json v);
bool gn_json_bool(gn_json v, bool *out);
bool gn_json_int(gn_json v, int64_t *out);        /* an integer literal within int64 (no fraction) */
bool gn_json_str(gn_json v, gn_str *out);         /* decoded UTF-8 (arena); false if not a string */
bool gn_json_str_eq(gn_json v, const char *s);    /* a string equal to s */

/* JSON writer: gn_writer_new() allocates on the call's arena. */
gn_writer *gn_writer_new(void);
void gn_write_raw(gn_writer *w, const char *bytes, size_t len);    /* bytes as they are (not checked) */
void gn_write_json(gn_writer *w, gn_json value);                  /* a value read from JSON */
void gn_write_null(gn_writer *w);
void gn_write_bool(gn_writer *w, bool value);
void gn_write_int(gn_writer *w, int64_t value);
void gn_write_str(gn_writer *w, const char *s);                    /* a JSON string, escaped */
void gn_write_strn(gn_writer *w, const char *s, size_t len);
void gn_write_key(gn_writer *w, const char *key);
void gn_write_object_begin(gn_writer *w);
void gn_write_object_end(gn_writer *w);
void gn_write_array_begin(gn_writer *w);
void gn_write_array_end(gn_writer *w);
/* Text to append to an open string value: gn_write_str_begin, gn_write_str_part..., gn_write_str_end. */
void gn_write_str_begin(gn_writer *w);
void gn_write_str_part(gn_writer *w, const char *s, size_t len);
void gn_write_str_end(gn_writer *w);
gn_str gn_writer_str(const gn_writer *w);

/* Host functions: each returns GN_HOST_OK or a negative GN_HOST_* status; results live in the call's
 * arena. NULL out-parameters are allowed. ttl_seconds / delay_seconds < 0: not sent. */
int gn_host_call(const char *name, const char *payload, size_t payload_len, gn_json *result);
int gn_kv_get(const char *key, bool *found, gn_json *value);
int gn_kv_set(const char *key, gn_json value, int64_t ttl_seconds);
int gn_kv_set_int(const char *key, int64_t value, int64_t ttl_seconds);
int gn_kv_set_str(const char *key, const char *value, int64_t ttl_seconds);
int gn_kv_delete(const char *key, bool *deleted);
int gn_kv_list(const char *prefix, gn_json *keys);                 /* prefix may be NULL */
int gn_kv_incr(const char *key, int64_t by, int64_t *value);
/* expected NULL: "absent" */
int gn_kv_cas(const char *key, const gn_json *expected, gn_json value, bool *ok, gn_json *now);
int gn_settings_get(const char *key, bool *found, gn_json *value);
int gn_settings_all(gn_json *settings);
int gn_plugin_info(gn_json *info);
int gn_jobs_enqueue(const char *job, const gn_json *payload, int64_t delay_seconds, gn_str *id);
int gn_http_fetch(const char *url, const char *method, const gn_json *headers, const char *body,
                  gn_json *response);
int gn_host_log(int level, const char *message);

#endif /* GONEXT_H */

/* ============================================================================================ */
#ifdef GONEXT_IMPLEMENTATION
#ifndef GONEXT_IMPLEMENTED
#define GONEXT_IMPLEMENTED

#include <stdarg.h>

/* Freestanding: the compiler may emit calls to these for struct copies and loops. With wasm's
 * bulk memory (on in zig cc's default CPU) the builtins lower to single memory.copy/memory.fill
 * instructions instead of byte loops. */
#if defined(__wasm_bulk_memory__)
__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) { return __builtin_memcpy(dst, src, n); }
__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) { return __builtin_memmove(dst, src, n); }
__attribute__((weak)) void *memset(void *dst, int c, size_t n) { return __builtin_memset(dst, c, n); }
#else
__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}
__attribute__((weak)) void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
#endif
__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

/* --- allocator: power-of-two size classes with free lists over a bump region ----------------- */
/* Why not a pure bump: the host reuses its input block across calls and an instance serves many
 * calls, so freed blocks must be reusable or memory only grows. */

#define GN__MIN_SHIFT 4
#define GN__CLASSES 28
extern unsigned char __heap_base;
static uintptr_t gn__bump;
static uintptr_t gn__limit;
static void *gn__free_lists[GN__CLASSES];

static int gn__class(size_t size) {
    int c = 0;
    size_t block = (size_t)1 << GN__MIN_SHIFT;
    while (block < size) {
        if (c + 1 >= GN__CLASSES) return -1;
        block <<= 1;
        c++;
    }
    return c;
}

void *gn_malloc(size_t size) {
    int c = gn__class(size ? size : 1);
    if (c < 0) return 0;
    if (gn__free_lists[c]) {
        void *block = gn__free_lists[c];
        gn__free_lists[c] = *(void **)block;
        return block;
    }
    size_t block = (size_t)1 << (c + GN__MIN_SHIFT);
    if (!gn__bump) {
        gn__bump = ((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15;
        gn__limit = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    }
    if (gn__limit - gn__bump < block) {
        size_t need = block - (gn__limit - gn__bump);
        size_t pages = (need + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
        gn__limit += pages * 65536u;
    }
    void *out = (void *)gn__bump;
    gn__bump += block;
    return out;
}

void gn_free_block(void *ptr, size_t size) {
    int c = gn__class(size ? size : 1);
    if (!ptr || c < 0) return;
    *(void **)ptr = gn__free_lists[c];
    gn__free_lists[c] = ptr;
}

__attribute__((export_name("gn_alloc"))) void *gn_alloc(size_t size) { return gn_malloc(size); }
__attribute__((export_name("gn_free"))) void gn_free(void *ptr, size_t size) { gn_free_block(ptr, size); }

/* The call's arena: a chain of blocks, each remembering the previous one and its own size. */
typedef struct gn__chunk {
    struct gn__chunk *prev;
    size_t size;
    size_t used;
} gn__chunk;
static gn__chunk *gn__arena;

void *gn_arena_alloc(size_t size) {
    size = (size + 7) & ~(size_t)7;
    gn__chunk *top = gn__arena;
    if (!top || top->size - top->used < size) {
        size_t want = sizeof(gn__chunk) + size;
        size_t chunk = want < 16384 ? 16384 : want;
        top = gn_malloc(chunk);
        if (!top) return 0;
        top->prev = gn__arena;
        top->size = chunk;
        top->used = (sizeof(gn__chunk) + 7) & ~(size_t)7;
        gn__arena = top;
    }
    void *out = (char *)top + top->used;
    top->used += size;
    return out;
}

static void gn__arena_reset(void) {
    while (gn__arena) {
        gn__chunk *prev = gn__arena->prev;
        gn_free_block(gn__arena, gn__arena->size);
        gn__arena = prev;
    }
}

size_t gn_strlen(const char *s) {
    size_t n = 0;
    while (s && s[n]) n++;
    return n;
}

gn_str gn_cstr(const char *s) {
    gn_str out = {s, gn_strlen(s)};
    return out;
}

bool gn_str_eq(gn_str a, const char *b) {
    size_t n = gn_strlen(b);
    return a.len == n && memcmp(a.ptr, b, n) == 0;
}

/* --- logging, panic, time ------------------------------------------------------------------- */

void gn_log(int level, const char *msg, size_t len) { gn__env_log(level, msg, len); }

int64_t gn_time_ms(void) { return gn__env_time_ms(); }

typedef struct gn__fixed {
    char *buf;
    size_t len, cap;
    size_t need; /* what the whole text takes, even past cap */
} gn__fixed;

static void gn__put(gn__fixed *f, const char *s, size_t n) {
    f->need += n;
    while (n-- && f->len < f->cap) f->buf[f->len++] = *s++;
}

static void gn__put_uint(gn__fixed *f, uint64_t v, unsigned base) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n) gn__put(f, &digits[--n], 1);
}

static void gn__put_int(gn__fixed *f, int64_t v) {
    if (v < 0) {
        gn__put(f, "-", 1);
        gn__put_uint(f, (uint64_t)0 - (uint64_t)v, 10);
    } else {
        gn__put_uint(f, (uint64_t)v, 10);
    }
}

/* Formats into buf (at most cap bytes); returns the full length the text needs. */
static size_t gn__format_need(char *buf, size_t cap, const char *fmt, va_list ap, size_t *written) {
    gn__fixed f = {buf, 0, cap, 0};
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            gn__put(&f, p, 1);
            continue;
        }
        p++;
        int longs = 0;
        bool size = false, precision = false;
        if (*p == '.' && p[1] == '*') {
            precision = true;
            p += 2;
        }
        while (*p == 'l') longs++, p++;
        if (*p == 'z') size = true, p++;
        switch (*p) {
        case 'd':
        case 'i':
            gn__put_int(&f, longs ? va_arg(ap, long long) : size ? (int64_t)va_arg(ap, size_t) : va_arg(ap, int));
            break;
        case 'u':
            gn__put_uint(&f, longs ? va_arg(ap, unsigned long long) : size ? va_arg(ap, size_t) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            gn__put_uint(&f, longs ? va_arg(ap, unsigned long long) : size ? va_arg(ap, size_t) : va_arg(ap, unsigned), 16);
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            gn__put(&f, &c, 1);
            break;
        }
        case 's': {
            size_t n = precision ? (size_t)va_arg(ap, int) : (size_t)-1;
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            if (n == (size_t)-1) n = gn_strlen(s);
            gn__put(&f, s, n);
            break;
        }
        case '%':
            gn__put(&f, "%", 1);
            break;
        case 0:
            *written = f.len;
            return f.need;
        default:
            gn__put(&f, p - 1, 2);
        }
    }
    *written = f.len;
    return f.need;
}

static size_t gn__format(char *buf, size_t cap, const char *fmt, va_list ap) {
    size_t written;
    gn__format_need(buf, cap, fmt, ap, &written);
    return written;
}

gn_str gn_format(const char *fmt, ...) {
    gn_str out = {"", 0};
    va_list ap;
    va_start(ap, fmt);
    size_t written, need = gn__format_need(0, 0, fmt, ap, &written);
    va_end(ap);
    char *buf = gn_arena_alloc(need + 1);
    if (!buf) return out;
    va_start(ap, fmt);
    gn__format_need(buf, need, fmt, ap, &written);
    va_end(ap);
    buf[written] = 0;
    out.ptr = buf;
    out.len = written;
    return out;
}

void gn_logf(int level, const char *fmt, ...) {
    char buf[1024]; /* truncated past 1 KiB; no allocation, so it works when memory is out */
    va_list ap;
    va_start(ap, fmt);
    size_t n = gn__format(buf, sizeof buf, fmt, ap);
    va_end(ap);
    gn__env_log(level, buf, n);
}

void gn_panic(const char *msg) {
    gn__env_panic(msg, gn_strlen(msg));
    __builtin_trap();
}

static __attribute__((noreturn)) void gn__panicf(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = gn__format(buf, sizeof buf, fmt, ap);
    va_end(ap);
    gn__env_panic(buf, n);
    __builtin_trap();
}

void gn__assert_fail(const char *file, int line, const char *expr) {
    gn__panicf("%s:%d: assertion failed: %s", file, line, expr);
}

/* --- JSON reader ---------------------------------------------------------------------------- */

#define GN__MAX_NESTING 256

static const char *gn__ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int gn__hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Past a string starting at its quote; 0 when malformed. */
static const char *gn__skip_string(const char *p, const char *end) {
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (++p >= end) return 0;
            if (*p == 'u') {
                if (end - p < 5) return 0;
                for (int i = 1; i <= 4; i++)
                    if (gn__hex(p[i]) < 0) return 0;
                p += 4;
            } else if (!(*p == '"' || *p == '\\' || *p == '/' || *p == 'b' || *p == 'f' || *p == 'n' ||
                         *p == 'r' || *p == 't')) {
                return 0;
            }
        }
        p++;
    }
    return 0;
}

static const char *gn__skip_number(const char *p, const char *end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

static const char *gn__skip_literal(const char *p, const char *end, const char *word) {
    size_t n = gn_strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) return 0;
    return p + n;
}

/* Past one value starting at p (no leading space); 0 when malformed. */
static const char *gn__skip_value(const char *p, const char *end, int depth) {
    if (p >= end || depth > GN__MAX_NESTING) return 0;
    switch (*p) {
    case '"':
        return gn__skip_string(p, end);
    case 't':
        return gn__skip_literal(p, end, "true");
    case 'f':
        return gn__skip_literal(p, end, "false");
    case 'n':
        return gn__skip_literal(p, end, "null");
    case '[':
    case '{': {
        bool object = *p == '{';
        char close = object ? '}' : ']';
        p = gn__ws(p + 1, end);
        if (p < end && *p == close) return p + 1;
        for (;;) {
            if (object) {
                if (p >= end || *p != '"' || !(p = gn__skip_string(p, end))) return 0;
                p = gn__ws(p, end);
                if (p >= end || *p != ':') return 0;
                p = gn__ws(p + 1, end);
            }
            if (!(p = gn__skip_value(p, end, depth + 1))) return 0;
            p = gn__ws(p, end);
            if (p >= end) return 0;
            if (*p == close) return p + 1;
            if (*p != ',') return 0;
            p = gn__ws(p + 1, end);
        }
    }
    default:
        return gn__skip_number(p, end);
    }
}

/* Past one value of a document gn_json_parse already validated: no checks, just brackets and
 * string ends, so reading a field costs a fraction of validating it again. */
static const char *gn__skip_valid(const char *p) {
    size_t depth = 0;
    do {
        char c = *p++;
        if (c == '"') {
            while (*p != '"') p += *p == '\\' ? 2 : 1;
            p++;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (depth == 0) { /* a number or a literal at the top: up to its delimiter */
            while (*p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                p++;
        }
    } while (depth);
    return p;
}

bool gn_json_parse(const char *text, size_t len, gn_json *out) {
    const char *end = text + len;
    const char *start = gn__ws(text, end);
    const char *stop = gn__skip_value(start, end, 0);
    if (!stop || gn__ws(stop, end) != end) return false;
    if (out) {
        out->ptr = start;
        out->len = (size_t)(stop - start);
    }
    return true;
}

gn_json_type gn_json_typeof(gn_json v) {
    if (!v.ptr || !v.len) return GN_JSON_ABSENT;
    switch (v.ptr[0]) {
    case 'n':
        return GN_JSON_NULL;
    case 't':
    case 'f':
        return GN_JSON_BOOL;
    case '"':
        return GN_JSON_STRING;
    case '[':
        return GN_JSON_ARRAY;
    case '{':
        return GN_JSON_OBJECT;
    default:
        return GN_JSON_NUMBER;
    }
}

gn_json_iter gn_json_iterate(gn_json v) {
    gn_json_iter it = {0, 0, false};
    gn_json_type t = gn_json_typeof(v);
    if (t == GN_JSON_ARRAY || t == GN_JSON_OBJECT) {
        it.end = v.ptr + v.len - 1; /* at the closing bracket */
        it.pos = gn__ws(v.ptr + 1, it.end);
        it.object = t == GN_JSON_OBJECT;
    }
    return it;
}

static bool gn__next(gn_json_iter *it, gn_str *key, gn_json *value) {
    if (!it->pos || it->pos >= it->end) return false;
    const char *p = it->pos;
    gn_str k = {0, 0};
    if (it->object) {
        const char *q = gn__skip_valid(p);
        k.ptr = p + 1;
        k.len = (size_t)(q - p - 2);
        p = gn__ws(gn__ws(q, it->end) + 1, it->end); /* past ':' */
    }
    const char *stop = gn__skip_valid(p);
    if (key) *key = k;
    if (value) {
        value->ptr = p;
        value->len = (size_t)(stop - p);
    }
    p = gn__ws(stop, it->end);
    if (p < it->end && *p == ',') p = gn__ws(p + 1, it->end);
    it->pos = p;
    return true;
}

bool gn_json_next(gn_json_iter *it, gn_json *value) { return !it->object && gn__next(it, 0, value); }

bool gn_json_next_field(gn_json_iter *it, gn_str *key, gn_json *value) {
    return it->object && gn__next(it, key, value);
}

size_t gn_json_count(gn_json v) {
    gn_json_iter it = gn_json_iterate(v);
    size_t n = 0;
    while (gn__next(&it, 0, 0)) n++;
    return n;
}

bool gn_json_at(gn_json array, size_t index, gn_json *out) {
    gn_json_iter it = gn_json_iterate(array);
    gn_json v;
    while (gn_json_next(&it, &v))
        if (index-- == 0) {
            if (out) *out = v;
            return true;
        }
    return false;
}

/* Decodes the escapes of a JSON string body (no quotes) into dst (room for len bytes is enough:
 * no escape decodes longer than itself). Returns the decoded length. */
static size_t gn__unescape(const char *s, size_t len, char *dst) {
    size_t n = 0;
    const char *end = s + len;
    while (s < end) {
        if (*s != '\\') {
            dst[n++] = *s++;
            continue;
        }
        s++;
        char c = *s++;
        switch (c) {
        case 'b': dst[n++] = '\b'; break;
        case 'f': dst[n++] = '\f'; break;
        case 'n': dst[n++] = '\n'; break;
        case 'r': dst[n++] = '\r'; break;
        case 't': dst[n++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int i = 0; i < 4; i++) cp = cp << 4 | (uint32_t)gn__hex(s[i]);
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                uint32_t lo = 0;
                for (int i = 2; i < 6; i++) lo = lo << 4 | (uint32_t)gn__hex(s[i]);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate is no UTF-8 */
            if (cp < 0x80) {
                dst[n++] = (char)cp;
            } else if (cp < 0x800) {
                dst[n++] = (char)(0xC0 | cp >> 6);
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                dst[n++] = (char)(0xE0 | cp >> 12);
                dst[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                dst[n++] = (char)(0xF0 | cp >> 18);
                dst[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
                dst[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                dst[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: dst[n++] = c; /* " \ / */
        }
    }
    return n;
}

static bool gn__has_escape(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\\') return true;
    return false;
}

bool gn_json_str(gn_json v, gn_str *out) {
    if (gn_json_typeof(v) != GN_JSON_STRING) return false;
    const char *body = v.ptr + 1;
    size_t len = v.len - 2;
    if (!gn__has_escape(body, len)) { /* the usual case: no copy */
        if (out) out->ptr = body, out->len = len;
        return true;
    }
    char *dst = gn_arena_alloc(len + 1);
    if (!dst) return false;
    size_t n = gn__unescape(body, len, dst);
    dst[n] = 0;
    if (out) out->ptr = dst, out->len = n;
    return true;
}

/* A key or string body (still escaped) equal to the plain text s, without allocating. */
static bool gn__escaped_eq(const char *body, size_t len, const char *s, size_t n) {
    if (!gn__has_escape(body, len)) return len == n && memcmp(body, s, n) == 0;
    if (len > 4096) return false;
    char tmp[4096];
    size_t m = gn__unescape(body, len, tmp);
    return m == n && memcmp(tmp, s, n) == 0;
}

bool gn_json_str_eq(gn_json v, const char *s) {
    return gn_json_typeof(v) == GN_JSON_STRING && gn__escaped_eq(v.ptr + 1, v.len - 2, s, gn_strlen(s));
}

bool gn_json_get(gn_json object, const char *key, gn_json *out) {
    if (gn_json_typeof(object) != GN_JSON_OBJECT) return false;
    size_t n = gn_strlen(key);
    gn_json_iter it = gn_json_iterate(object);
    gn_str k;
    gn_json v;
    bool found = false;
    while (gn_json_next_field(&it, &k, &v)) /* the last duplicate wins, as in Python's json */
        if (gn__escaped_eq(k.ptr, k.len, key, n)) {
            if (out) *out = v;
            found = true;
        }
    return found;
}

bool gn_json_is_null(gn_json v) { return gn_json_typeof(v) == GN_JSON_NULL; }

bool gn_json_bool(gn_json v, bool *out) {
    if (gn_json_typeof(v) != GN_JSON_BOOL) return false;
    if (out) *out = v.ptr[0] == 't';
    return true;
}

bool gn_json_int(gn_json v, int64_t *out) {
    if (gn_json_typeof(v) != GN_JSON_NUMBER) return false;
    const char *p = v.ptr, *end = v.ptr + v.len;
    bool negative = *p == '-';
    if (negative) p++;
    uint64_t magnitude = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return false; /* a fraction or an exponent: not an integer */
        uint64_t digit = (uint64_t)(*p - '0');
        if (magnitude > (UINT64_MAX - digit) / 10) return false;
        magnitude = magnitude * 10 + digit;
    }
    if (magnitude > (uint64_t)INT64_MAX + (negative ? 1u : 0u)) return false;
    if (out) *out = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    return true;
}

/* --- JSON writer ---------------------------------------------------------------------------- */

gn_writer *gn_writer_new(void) {
    gn_writer *w = gn_arena_alloc(sizeof(gn_writer));
    if (w) memset(w, 0, sizeof *w);
    return w;
}

static void gn__emit(gn_writer *w, const char *bytes, size_t len) {
    if (w->oom) return;
    if (w->cap - w->len < len) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < len) {
            if (cap > ((size_t)1 << 30)) {
                w->oom = true;
                return;
            }
            cap *= 2;
        }
        char *grown = gn_arena_alloc(cap); /* the old block stays in the arena until the call ends */
        if (!grown) {
            w->oom = true;
            return;
        }
        memcpy(grown, w->buf, w->len);
        w->buf = grown;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, bytes, len);
    w->len += len;
}

/* Before a value or a key: the comma its container needs. */
static void gn__item(gn_writer *w) {
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->comma[w->depth]) gn__emit(w, ",", 1);
    w->comma[w->depth] = 1;
}

void gn_write_raw(gn_writer *w, const char *bytes, size_t len) {
    gn__item(w);
    gn__emit(w, bytes, len);
}

void gn_write_json(gn_writer *w, gn_json value) {
    if (gn_json_typeof(value) == GN_JSON_ABSENT) gn_write_null(w);
    else gn_write_raw(w, value.ptr, value.len);
}

void gn_write_null(gn_writer *w) { gn_write_raw(w, "null", 4); }
void gn_write_bool(gn_writer *w, bool value) { value ? gn_write_raw(w, "true", 4) : gn_write_raw(w, "false", 5); }

void gn_write_int(gn_writer *w, int64_t value) {
    char buf[24];
    gn__fixed f = {buf, 0, sizeof buf, 0};
    gn__put_int(&f, value);
    gn_write_raw(w, buf, f.len);
}

/* Length of the valid UTF-8 sequence at s (0 when invalid): overlongs, surrogates, > U+10FFFF refused. */
static size_t gn__utf8_seq(const unsigned char *s, size_t left) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

void gn_write_str_part(gn_writer *w, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    const unsigned char *run = p; /* bytes copied as they are */
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { /* the common case first */
            p++;
            continue;
        }
        const char *escape = 0;
        char hex[7];
        size_t skip = 1;
        if (c == '"') escape = "\\\"";
        else if (c == '\\') escape = "\\\\";
        else if (c == '\n') escape = "\\n";
        else if (c == '\r') escape = "\\r";
        else if (c == '\t') escape = "\\t";
        else if (c == '\b') escape = "\\b";
        else if (c == '\f') escape = "\\f";
        else if (c < 0x20) {
            hex[0] = '\\', hex[1] = 'u', hex[2] = '0', hex[3] = '0';
            hex[4] = "0123456789abcdef"[c >> 4], hex[5] = "0123456789abcdef"[c & 15], hex[6] = 0;
            escape = hex;
        } else if (c >= 0x80) {
            skip = gn__utf8_seq(p, (size_t)(end - p));
            if (!skip) escape = "\\ufffd", skip = 1; /* invalid UTF-8: U+FFFD, never broken JSON */
            else {
                p += skip;
                continue;
            }
        } else {
            p++;
            continue;
        }
        gn__emit(w, (const char *)run, (size_t)(p - run));
        gn__emit(w, escape, gn_strlen(escape));
        p += skip;
        run = p;
    }
    gn__emit(w, (const char *)run, (size_t)(p - run));
}

void gn_write_str_begin(gn_writer *w) {
    gn__item(w);
    gn__emit(w, "\"", 1);
}

void gn_write_str_end(gn_writer *w) { gn__emit(w, "\"", 1); }

void gn_write_strn(gn_writer *w, const char *s, size_t len) {
    gn_write_str_begin(w);
    gn_write_str_part(w, s, len);
    gn_write_str_end(w);
}

void gn_write_str(gn_writer *w, const char *s) { gn_write_strn(w, s, gn_strlen(s)); }

void gn_write_key(gn_writer *w, const char *key) {
    gn_write_str(w, key);
    gn__emit(w, ":", 1);
    w->after_key = true;
}

static void gn__open(gn_writer *w, const char *bracket) {
    gn_write_raw(w, bracket, 1);
    if (w->depth >= GN_WRITER_MAX_DEPTH) {
        w->oom = true; /* deeper than any host accepts */
        return;
    }
    w->comma[++w->depth] = 0;
}

static void gn__close(gn_writer *w, const char *bracket) {
    if (w->depth) w->depth--;
    gn__emit(w, bracket, 1);
}

void gn_write_object_begin(gn_writer *w) { gn__open(w, "{"); }
void gn_write_object_end(gn_writer *w) { gn__close(w, "}"); }
void gn_write_array_begin(gn_writer *w) { gn__open(w, "["); }
void gn_write_array_end(gn_writer *w) { gn__close(w, "]"); }

gn_str gn_writer_str(const gn_writer *w) {
    gn_str out = {w->buf, w->len};
    return out;
}

/* --- host calls ----------------------------------------------------------------------------- */

int gn_host_call(const char *name, const char *payload, size_t payload_len, gn_json *result) {
    int64_t packed = gn__env_host_call(name, gn_strlen(name), payload, payload_len);
    uint32_t ptr = (uint32_t)((uint64_t)packed >> 32);
    int32_t len = (int32_t)(uint32_t)packed;
    if (ptr == 0) {
        if (len == 0) {
            if (result) result->ptr = "null", result->len = 4;
            return GN_HOST_OK;
        }
        return len < 0 && len >= -6 && len != -4 ? len : GN_HOST_BAD_RESULT;
    }
    if (len <= 0) return GN_HOST_BAD_RESULT;
    /* The host placed the result in a gn_alloc block the guest owns: copy it into the call's arena
     * (freed with the call) and give the block back at once. */
    char *copy = gn_arena_alloc((size_t)len);
    if (!copy) {
        gn_free((void *)(uintptr_t)ptr, (size_t)len);
        return GN_HOST_OUT_OF_MEMORY;
    }
    memcpy(copy, (const void *)(uintptr_t)ptr, (size_t)len);
    gn_free((void *)(uintptr_t)ptr, (size_t)len);
    gn_json parsed;
    if (!gn_json_parse(copy, (size_t)len, &parsed)) return GN_HOST_BAD_RESULT;
    if (result) *result = parsed;
    return GN_HOST_OK;
}

static int gn__call(const char *name, gn_writer *w, gn_json *result) {
    if (!w || w->oom) return GN_HOST_OUT_OF_MEMORY;
    return gn_host_call(name, w->buf, w->len, result);
}

static gn_writer *gn__payload_with_key(const char *key) {
    gn_writer *w = gn_writer_new();
    if (!w) return 0;
    gn_write_object_begin(w);
    if (key) {
        gn_write_key(w, "key");
        gn_write_str(w, key);
    }
    return w;
}

static int gn__field(gn_json result, const char *key, gn_json *out) {
    return gn_json_get(result, key, out) ? GN_HOST_OK : GN_HOST_BAD_RESULT;
}

/* {"found": bool, "value": any} -> found, value */
static int gn__found_value(gn_json result, bool *found, gn_json *value) {
    gn_json f, v = {"null", 4};
    bool is_found;
    if (gn__field(result, "found", &f) || !gn_json_bool(f, &is_found)) return GN_HOST_BAD_RESULT;
    gn_json_get(result, "value", &v);
    if (found) *found = is_found;
    if (value) *value = is_found ? v : (gn_json){"null", 4};
    return GN_HOST_OK;
}

int gn_kv_get(const char *key, bool *found, gn_json *value) {
    gn_writer *w = gn__payload_with_key(key);
    gn_json result;
    if (w) gn_write_object_end(w);
    int status = gn__call("kv.get", w, &result);
    return status ? status : gn__found_value(result, found, value);
}

int gn_kv_set(const char *key, gn_json value, int64_t ttl_seconds) {
    gn_writer *w = gn__payload_with_key(key);
    if (w) {
        gn_write_key(w, "value");
        gn_write_json(w, value);
        if (ttl_seconds >= 0) {
            gn_write_key(w, "ttlSeconds");
            gn_write_int(w, ttl_seconds);
        }
        gn_write_object_end(w);
    }
    return gn__call("kv.set", w, 0);
}

int gn_kv_set_int(const char *key, int64_t value, int64_t ttl_seconds) {
    char buf[24];
    gn__fixed f = {buf, 0, sizeof buf, 0};
    gn__put_int(&f, value);
    return gn_kv_set(key, (gn_json){buf, f.len}, ttl_seconds);
}

int gn_kv_set_str(const char *key, const char *value, int64_t ttl_seconds) {
    gn_writer *s = gn_writer_new();
    if (!s) return GN_HOST_OUT_OF_MEMORY;
    gn_write_str(s, value);
    if (s->oom) return GN_HOST_OUT_OF_MEMORY;
    return gn_kv_set(key, (gn_json){s->buf, s->len}, ttl_seconds);
}

int gn_kv_delete(const char *key, bool *deleted) {
    gn_writer *w = gn__payload_with_key(key);
    gn_json result, d;
    if (w) gn_write_object_end(w);
    int status = gn__call("kv.delete", w, &result);
    if (status) return status;
    if (gn__field(result, "deleted", &d) || !gn_json_bool(d, deleted)) return GN_HOST_BAD_RESULT;
    return GN_HOST_OK;
}

int gn_kv_list(const char *prefix, gn_json *keys) {
    gn_writer *w = gn__payload_with_key(0);
    gn_json result, k;
    if (w) {
        if (prefix) {
            gn_write_key(w, "prefix");
            gn_write_str(w, prefix);
        }
        gn_write_object_end(w);
    }
    int status = gn__call("kv.list", w, &result);
    if (status) return status;
    if (gn__field(result, "keys", &k) || gn_json_typeof(k) != GN_JSON_ARRAY) return GN_HOST_BAD_RESULT;
    if (keys) *keys = k;
    return GN_HOST_OK;
}

int gn_kv_incr(const char *key, int64_t by, int64_t *value) {
    gn_writer *w = gn__payload_with_key(key);
    gn_json result, v;
    if (w) {
        gn_write_key(w, "by");
        gn_write_int(w, by);
        gn_write_object_end(w);
    }
    int status = gn__call("kv.incr", w, &result);
    if (status) return status;
    if (gn__field(result, "value", &v) || !gn_json_int(v, value)) return GN_HOST_BAD_RESULT;
    return GN_HOST_OK;
}

int gn_kv_cas(const char *key, const gn_json *expected, gn_json value, bool *ok, gn_json *now) {
    gn_writer *w = gn__payload_with_key(key);
    gn_json result, o, v;
    if (w) {
        gn_write_key(w, "expected");
        if (expected) gn_write_json(w, *expected);
        else gn_write_null(w);
        gn_write_key(w, "value");
        gn_write_json(w, value);
        gn_write_object_end(w);
    }
    int status = gn__call("kv.cas", w, &result);
    if (status) return status;
    if (gn__field(result, "ok", &o) || !gn_json_bool(o, ok) || gn__field(result, "value", &v))
        return GN_HOST_BAD_RESULT;
    if (now) *now = v;
    return GN_HOST_OK;
}

int gn_settings_get(const char *key, bool *found, gn_json *value) {
    gn_writer *w = gn__payload_with_key(key);
    gn_json result;
    if (w) gn_write_object_end(w);
    int status = gn__call("settings.get", w, &result);
    return status ? status : gn__found_value(result, found, value);
}

int gn_settings_all(gn_json *settings) {
    gn_json result, s;
    int status = gn_host_call("settings.get", "{}", 2, &result);
    if (status) return status;
    if (gn__field(result, "settings", &s) || gn_json_typeof(s) != GN_JSON_OBJECT) return GN_HOST_BAD_RESULT;
    if (settings) *settings = s;
    return GN_HOST_OK;
}

int gn_plugin_info(gn_json *info) {
    gn_json result;
    int status = gn_host_call("plugin.info", "{}", 2, &result);
    if (status) return status;
    if (gn_json_typeof(result) != GN_JSON_OBJECT) return GN_HOST_BAD_RESULT;
    if (info) *info = result;
    return GN_HOST_OK;
}

int gn_jobs_enqueue(const char *job, const gn_json *payload, int64_t delay_seconds, gn_str *id) {
    gn_writer *w = gn__payload_with_key(0);
    gn_json result, i;
    if (w) {
        gn_write_key(w, "job");
        gn_write_str(w, job);
        if (payload) {
            gn_write_key(w, "payload");
            gn_write_json(w, *payload);
        }
        if (delay_seconds >= 0) {
            gn_write_key(w, "delaySeconds");
            gn_write_int(w, delay_seconds);
        }
        gn_write_object_end(w);
    }
    int status = gn__call("jobs.enqueue", w, &result);
    if (status) return status;
    if (gn__field(result, "id", &i) || !gn_json_str(i, id)) return GN_HOST_BAD_RESULT;
    return GN_HOST_OK;
}

int gn_http_fetch(const char *url, const char *method, const gn_json *headers, const char *body,
                  gn_json *response) {
    gn_writer *w = gn__payload_with_key(0);
    gn_json result;
    if (w) {
        gn_write_key(w, "url");
        gn_write_str(w, url);
        if (method) {
            gn_write_key(w, "method");
            gn_write_str(w, method);
        }
        if (headers) {
            gn_write_key(w, "headers");
            gn_write_json(w, *headers);
        }
        if (body) {
            gn_write_key(w, "body");
            gn_write_str(w, body);
        }
        gn_write_object_end(w);
    }
    int status = gn__call("http.fetch", w, &result);
    if (status) return status;
    if (gn_json_typeof(result) != GN_JSON_OBJECT) return GN_HOST_BAD_RESULT;
    if (response) *response = result;
    return GN_HOST_OK;
}

int gn_host_log(int level, const char *message) {
    gn_writer *w = gn__payload_with_key(0);
    if (w) {
        gn_write_key(w, "level");
        gn_write_int(w, level);
        gn_write_key(w, "message");
        gn_write_str(w, message);
        gn_write_object_end(w);
    }
    return gn__call("log", w, 0);
}

/* --- dispatch ------------------------------------------------------------------------------- */

static int64_t gn__pack(uintptr_t ptr, int32_t len) {
    return (int64_t)(((uint64_t)(uint32_t)ptr << 32) | (uint64_t)(uint32_t)len);
}

static const gn_handler *gn__find(bool job, gn_str name, bool filter) {
    for (const gn_handler *h = gn_plugin_handlers; h->name; h++) {
        bool kind_matches = job ? h->kind == GN_KIND_JOB
                                : h->kind == (filter ? GN_KIND_FILTER : GN_KIND_ACTION);
        if (kind_matches && gn_str_eq(name, h->name)) return h;
    }
    return 0;
}

static int64_t gn__run(bool job, const char *name, size_t name_len, const char *payload, size_t payload_len) {
    gn_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.name.ptr = name;
    ctx.name.len = name_len;
    /* An unknown name answers -4 before the payload is read (the cheap answer for every hook the
     * site fires that this plugin does not handle). */
    if (!gn__find(job, ctx.name, false) && (job || !gn__find(false, ctx.name, true)))
        return gn__pack(0, GN_UNKNOWN_HOOK);
    if (!gn_json_parse(payload, payload_len, &ctx.envelope) || gn_json_typeof(ctx.envelope) != GN_JSON_OBJECT)
        return gn__pack(0, GN_BAD_PAYLOAD);
    gn_json field;
    if (job) {
        ctx.kind = GN_KIND_JOB;
        gn_json_get(ctx.envelope, "payload", &ctx.payload);
        if (gn_json_get(ctx.envelope, "id", &field) && !gn_json_str(field, &ctx.id)) return gn__pack(0, GN_BAD_PAYLOAD);
    } else {
        bool filter = gn_json_get(ctx.envelope, "kind", &field) && gn_json_str_eq(field, "filter");
        ctx.kind = filter ? GN_KIND_FILTER : GN_KIND_ACTION;
        if (filter) gn_json_get(ctx.envelope, "value", &ctx.value);
        if (!gn_json_get(ctx.envelope, "args", &ctx.args)) ctx.args = (gn_json){"[]", 2};
        if (gn_json_typeof(ctx.args) != GN_JSON_ARRAY) return gn__pack(0, GN_BAD_PAYLOAD);
    }
    const gn_handler *handler = gn__find(job, ctx.name, ctx.kind == GN_KIND_FILTER);
    if (!handler) return gn__pack(0, GN_UNKNOWN_HOOK); /* known under the other kind only */
    ctx.out = gn_writer_new();
    if (!ctx.out) return gn__pack(0, GN_OUT_OF_MEMORY);
    if (ctx.kind == GN_KIND_FILTER) {
        gn_write_raw(ctx.out, "{\"value\":", 9);
        ctx.out->after_key = true; /* the handler's value follows the key */
    }
    size_t empty = ctx.out->len;
    int status = handler->fn(&ctx);
    if (status < 0) return gn__pack(0, status >= GN_BAD_PAYLOAD ? status : GN_ERROR);
    if (ctx.out->oom) return gn__pack(0, GN_OUT_OF_MEMORY);
    if (status == GN_NO_BODY || ctx.out->len == empty) return gn__pack(0, 0);
    if (ctx.kind == GN_KIND_FILTER) gn__emit(ctx.out, "}", 1);
    size_t len = ctx.out->len;
    char *body = ctx.out->oom || len > 0x7fffffff ? 0 : gn_malloc(len); /* the host frees it with gn_free */
    if (!body) return gn__pack(0, GN_OUT_OF_MEMORY);
    memcpy(body, ctx.out->buf, len);
    return gn__pack((uintptr_t)body, (int32_t)len);
}

__attribute__((export_name("gn_handle_hook"))) int64_t gn_handle_hook(const char *name, size_t name_len,
                                                                      const char *payload, size_t payload_len) {
    int64_t packed = gn__run(false, name, name_len, payload, payload_len);
    gn__arena_reset(); /* everything the call allocated, host-call results included */
    return packed;
}

__attribute__((export_name("gn_handle_job"))) int64_t gn_handle_job(const char *name, size_t name_len,
                                                                    const char *payload, size_t payload_len) {
    int64_t packed = gn__run(true, name, name_len, payload, payload_len);
    gn__arena_reset();
    return packed;
}

#endif /* GONEXT_IMPLEMENTED */
#endif /* GONEXT_IMPLEMENTATION */

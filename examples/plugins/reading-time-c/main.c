/* Reading time (C): the reading-time plugin of examples/plugins/README.md, written with the C SDK
 * (sdk/c/gonext.h). Counts the words of a post's body, estimates the minutes at the site's reading
 * speed, shows them above the post and in its Twitter card, and stores each saved post's count. */
#define GONEXT_IMPLEMENTATION
#include "gonext.h"

#define DEFAULT_SPEED 200

/* Maximal runs of bytes that are not ASCII whitespace. */
static int64_t count_words(gn_str text) {
    int64_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < text.len; i++) {
        char c = text.ptr[i];
        bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
        if (!space && !in_word) words++;
        in_word = !space;
    }
    return words;
}

/* The site's wordsPerMinute when it is an integer from 50 to 1000, else the default. */
static int64_t reading_speed(void) {
    bool found = false;
    gn_json value;
    int64_t speed;
    if (gn_settings_get("wordsPerMinute", &found, &value) == GN_HOST_OK && found && gn_json_int(value, &speed) &&
        speed >= 50 && speed <= 1000)
        return speed;
    return DEFAULT_SPEED;
}

static int64_t minutes_for(int64_t words) {
    int64_t speed = reading_speed();
    int64_t minutes = (words + speed - 1) / speed;
    return minutes < 1 ? 1 : minutes;
}

/* The post's body when args[0] is an object with a string body. */
static bool post_body(gn_ctx *ctx, gn_str *body) {
    gn_json post, field;
    return gn_json_at(ctx->args, 0, &post) && gn_json_get(post, "body", &field) && gn_json_str(field, body);
}

static int the_content(gn_ctx *ctx) {
    gn_str html, body;
    if (!gn_json_str(ctx->value, &html) || !post_body(ctx, &body)) return GN_NO_BODY;
    gn_str label = gn_format("<p><em>%lld min read</em></p>", (long long)minutes_for(count_words(body)));
    gn_write_str_begin(ctx->out); /* the new value: one JSON string written in two parts */
    gn_write_str_part(ctx->out, label.ptr, label.len);
    gn_write_str_part(ctx->out, html.ptr, html.len);
    gn_write_str_end(ctx->out);
    return GN_OK;
}

static int wp_head(gn_ctx *ctx) {
    gn_json post;
    if (!gn_json_at(ctx->args, 0, &post)) return GN_NO_BODY;
    gn_str body;
    if (!post_body(ctx, &body)) return GN_BAD_PAYLOAD;
    gn_writer *w = ctx->out;
    gn_write_object_begin(w);
    gn_write_key(w, "meta");
    gn_write_array_begin(w);
    gn_write_object_begin(w);
    gn_write_key(w, "name");
    gn_write_str(w, "twitter:label1");
    gn_write_key(w, "content");
    gn_write_str(w, "Reading time");
    gn_write_object_end(w);
    gn_write_object_begin(w);
    gn_write_key(w, "name");
    gn_write_str(w, "twitter:data1");
    gn_write_key(w, "content");
    gn_write_str(w, gn_format("%lld min read", (long long)minutes_for(count_words(body))).ptr);
    gn_write_object_end(w);
    gn_write_array_end(w);
    gn_write_object_end(w);
    return GN_OK;
}

static int save_post(gn_ctx *ctx) {
    gn_json post, id;
    gn_str body;
    int64_t post_id;
    if (!gn_json_at(ctx->args, 0, &post) || !gn_json_get(post, "id", &id) || !gn_json_int(id, &post_id) ||
        !post_body(ctx, &body))
        return GN_BAD_PAYLOAD;
    int64_t words = count_words(body);
    gn_logf(GN_INFO, "post %lld: %lld words", (long long)post_id, (long long)words);
    /* Without the optional kv capability the host answers "denied": skip the counting, silently. */
    int status = gn_kv_set_int(gn_format("words:%lld", (long long)post_id).ptr, words, -1);
    if (status == GN_HOST_OK) status = gn_kv_incr("posts_counted", 1, 0);
    if (status != GN_HOST_OK && status != GN_HOST_CAPABILITY_DENIED) return GN_ERROR;
    gn_writer *w = ctx->out;
    gn_write_object_begin(w);
    gn_write_key(w, "words");
    gn_write_int(w, words);
    gn_write_key(w, "minutes");
    gn_write_int(w, minutes_for(words));
    gn_write_object_end(w);
    return GN_OK;
}

GN_HANDLERS(
    GN_FILTER("the_content", the_content),
    GN_ACTION("wp_head", wp_head),
    GN_ACTION("save_post", save_post)
)

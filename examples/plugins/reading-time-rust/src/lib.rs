//! Reading time, in Rust: the job every language's example does (examples/plugins/README.md).
//! A minutes estimate above each post and in its Twitter card, and a word count per saved post.

use gonext::{kv, settings, Error, HostError, Hook, HookResult, Json};

const DEFAULT_SPEED: i64 = 200;

/// Maximal runs of bytes that are not ASCII whitespace (space, \t, \n, \r, \f, \v).
fn count_words(body: &str) -> i64 {
    let mut words = 0;
    let mut in_word = false;
    for byte in body.bytes() {
        // \t \n \v \f \r are 9..=13; most bytes are above b' ', so this is one compare for them
        let space = byte <= b' ' && (byte == b' ' || (b'\t'..=b'\r').contains(&byte));
        if !space && !in_word {
            words += 1;
        }
        in_word = !space;
    }
    words
}

/// The `wordsPerMinute` setting when it is an integer from 50 to 1000, else 200.
fn speed() -> i64 {
    match settings::get("wordsPerMinute") {
        Ok(Some(value)) => value.as_i64().filter(|n| (50..=1000).contains(n)).unwrap_or(DEFAULT_SPEED),
        _ => DEFAULT_SPEED,
    }
}

fn minutes(words: i64) -> i64 {
    let speed = speed();
    ((words + speed - 1) / speed).max(1)
}

/// The post's body when `arg` is a post (an object with a string `body`).
fn post_body(arg: &Json) -> Option<&str> {
    arg.get("body").and_then(Json::as_str)
}

fn the_content(hook: &Hook) -> HookResult {
    let (html, body) = match (hook.value.as_str(), post_body(hook.arg(0))) {
        (Some(html), Some(body)) => (html, body),
        _ => return Ok(None),
    };
    Ok(Some(Json::from(format!("<p><em>{} min read</em></p>{html}", minutes(count_words(body))))))
}

fn wp_head(hook: &Hook) -> HookResult {
    let body = match post_body(hook.arg(0)) {
        Some(body) => body,
        None => return Ok(None),
    };
    let label = Json::obj([("name", Json::from("twitter:label1")), ("content", Json::from("Reading time"))]);
    let data = Json::obj([
        ("name", Json::from("twitter:data1")),
        ("content", Json::from(format!("{} min read", minutes(count_words(body))))),
    ]);
    Ok(Some(Json::obj([("meta", Json::Array(vec![label, data]))])))
}

fn save_post(hook: &Hook) -> HookResult {
    let post = hook.arg(0);
    let body = post_body(post).ok_or_else(|| Error::BadPayload("save_post needs a post".into()))?;
    let id = match post.get("id") {
        Some(Json::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => "null".to_string(),
    };
    let words = count_words(body);
    gonext::info(&format!("post {id}: {words} words"));
    match kv::set(&format!("words:{id}"), Json::Int(words)) {
        Ok(()) => {
            kv::incr("posts_counted", 1)?;
        }
        Err(HostError::CapabilityDenied) => {} // kv is optional: without it, count nothing
        Err(other) => return Err(other.into()),
    }
    Ok(Some(Json::obj([("words", Json::Int(words)), ("minutes", Json::Int(minutes(words)))])))
}

gonext::plugin! {
    actions: { "wp_head" => wp_head, "save_post" => save_post },
    filters: { "the_content" => the_content },
    jobs: {},
}

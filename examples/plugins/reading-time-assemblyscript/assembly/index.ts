// The reading-time plugin (examples/plugins/README.md) in AssemblyScript: the same job as every
// other reading-time-<lang> example, checked against reading-time-fixtures/.

import * as gn from "gonext";

export { gn_alloc, gn_free, gn_handle_hook, gn_handle_job } from "gonext";

const DEFAULT_SPEED: i64 = 200;

/** Maximal runs of characters that are not ASCII whitespace. Counting UTF-16 units gives the
 * spec's count over UTF-8 bytes: every non-ASCII character is a non-space in both. */
function countWords(body: string): i64 {
  let words: i64 = 0;
  let inWord = false;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    const space = c == 0x20 || (c >= 0x09 && c <= 0x0d); // space, \t \n \v \f \r
    if (!space && !inWord) words++;
    inWord = !space;
  }
  return words;
}

/** The wordsPerMinute setting when it is an integer from 50 to 1000, else 200. */
function speed(): i64 {
  const setting = gn.settings.get("wordsPerMinute");
  if (!setting.ok || !setting.found || !setting.value.isInteger) return DEFAULT_SPEED;
  const wpm = setting.value.toInt();
  return wpm >= 50 && wpm <= 1000 ? wpm : DEFAULT_SPEED;
}

function minutes(words: i64): i64 {
  const perMinute = speed();
  const m = (words + perMinute - 1) / perMinute;
  return m < 1 ? 1 : m;
}

/** args[0] when it is a post: an object with a string body. */
function post(hook: gn.Hook): gn.Value | null {
  const candidate = hook.arg(0);
  if (candidate == null || !candidate.isObject) return null;
  const body = candidate.get("body");
  return body != null && body.isString ? candidate : null;
}

function bodyOf(p: gn.Value): string {
  return p.get("body")!.text;
}

gn.filter("the_content", (hook: gn.Hook): gn.Value | null => {
  const p = post(hook);
  if (p == null || !hook.value.isString) return null;
  const m = minutes(countWords(bodyOf(p)));
  return gn.Value.str("<p><em>" + m.toString() + " min read</em></p>" + hook.value.text);
});

gn.action("wp_head", (hook: gn.Hook): gn.Value | null => {
  const p = post(hook);
  if (p == null) return null;
  const m = minutes(countWords(bodyOf(p)));
  const label = gn.Value.obj().setString("name", "twitter:label1").setString("content", "Reading time");
  const data = gn.Value.obj().setString("name", "twitter:data1").setString("content", m.toString() + " min read");
  return gn.Value.obj().set("meta", gn.Value.arr().push(label).push(data));
});

gn.action("save_post", (hook: gn.Hook): gn.Value | null => {
  const p = post(hook);
  if (p == null) return gn.badPayload();
  const words = countWords(bodyOf(p));
  const idValue = p.get("id");
  const id = idValue == null ? "null" : (idValue.isString ? idValue.text : gn.stringify(idValue));
  gn.info("post " + id + ": " + words.toString() + " words");
  const stored = gn.kv.set("words:" + id, gn.Value.int(words));
  if (!stored.denied) { // without the optional kv grant: skip, silently
    if (!stored.ok) return gn.fail("kv.set failed with status " + stored.status.toString());
    const counted = gn.kv.incr("posts_counted");
    if (!counted.ok) return gn.fail("kv.incr failed with status " + counted.status.toString());
  }
  return gn.Value.obj().setInt("words", words).setInt("minutes", minutes(words));
});

// A small JSON reader and writer: AssemblyScript has none built in, and every payload and host
// function result of the plugin ABI is JSON. No exceptions in AssemblyScript, so `parse` returns
// null for text that is not JSON (the SDK answers that payload with -3, bad_payload).

export enum Kind { Null, Bool, Number, String, Array, Object }

/** One JSON value. Objects keep their keys in insertion order (what `stringify` writes). */
export class Value {
  kind: Kind = Kind.Null;
  boolean: bool = false;
  number: f64 = 0;
  text: string = "";
  items: Array<Value> = [];
  keys: Array<string> = [];

  static nul(): Value { return new Value(); }
  static bool(b: bool): Value { const v = new Value(); v.kind = Kind.Bool; v.boolean = b; return v; }
  static num(n: f64): Value { const v = new Value(); v.kind = Kind.Number; v.number = n; return v; }
  static int(n: i64): Value { return Value.num(<f64>n); }
  static str(s: string): Value { const v = new Value(); v.kind = Kind.String; v.text = s; return v; }
  static arr(): Value { const v = new Value(); v.kind = Kind.Array; return v; }
  static obj(): Value { const v = new Value(); v.kind = Kind.Object; return v; }

  get isNull(): bool { return this.kind == Kind.Null; }
  get isBool(): bool { return this.kind == Kind.Bool; }
  get isNumber(): bool { return this.kind == Kind.Number; }
  get isString(): bool { return this.kind == Kind.String; }
  get isArray(): bool { return this.kind == Kind.Array; }
  get isObject(): bool { return this.kind == Kind.Object; }
  /** A number with no fraction that an i64 holds exactly (JSON has one number type). */
  get isInteger(): bool {
    return this.kind == Kind.Number && isFinite(this.number) && Math.floor(this.number) == this.number
      && Math.abs(this.number) <= 9007199254740992.0;
  }
  get length(): i32 { return this.kind == Kind.Object ? this.keys.length : this.items.length; }
  toInt(): i64 { return <i64>this.number; }

  /** An object's member (null when absent or this is not an object). */
  get(key: string): Value | null {
    if (this.kind != Kind.Object) return null;
    const at = this.keys.lastIndexOf(key);
    return at < 0 ? null : this.items[at];
  }
  /** An array's element (null when out of range or this is not an array). */
  at(index: i32): Value | null {
    if (this.kind != Kind.Array || index < 0 || index >= this.items.length) return null;
    return this.items[index];
  }
  /** Sets an object member (replacing one with the same key); returns this, for chaining. */
  set(key: string, value: Value): Value {
    const at = this.keys.indexOf(key);
    if (at >= 0) { this.items[at] = value; } else { this.keys.push(key); this.items.push(value); }
    return this;
  }
  setString(key: string, s: string): Value { return this.set(key, Value.str(s)); }
  setInt(key: string, n: i64): Value { return this.set(key, Value.int(n)); }
  setNumber(key: string, n: f64): Value { return this.set(key, Value.num(n)); }
  setBool(key: string, b: bool): Value { return this.set(key, Value.bool(b)); }
  /** Appends to an array; returns this, for chaining. */
  push(value: Value): Value { this.items.push(value); return this; }

  toString(): string { return stringify(this); }
}

/** The JSON text of a value (UTF-16 here; the SDK encodes it as UTF-8 for the host). */
export function stringify(value: Value): string {
  switch (value.kind) {
    case Kind.Null: return "null";
    case Kind.Bool: return value.boolean ? "true" : "false";
    case Kind.Number: return numberText(value.number);
    case Kind.String: return quote(value.text);
    case Kind.Array: {
      const parts = new Array<string>(value.items.length);
      for (let i = 0; i < value.items.length; i++) parts[i] = stringify(value.items[i]);
      return "[" + parts.join(",") + "]";
    }
    default: {
      const parts = new Array<string>(value.keys.length);
      for (let i = 0; i < value.keys.length; i++) parts[i] = quote(value.keys[i]) + ":" + stringify(value.items[i]);
      return "{" + parts.join(",") + "}";
    }
  }
}

function numberText(n: f64): string {
  if (!isFinite(n)) return "null"; // JSON has no NaN or Infinity
  if (Math.floor(n) == n && Math.abs(n) <= 9007199254740992.0) return (<i64>n).toString();
  return n.toString();
}

const HEX = "0123456789abcdef";

/** A JSON string literal: quotes, backslashes and control characters escaped. */
export function quote(s: string): string {
  const out: string[] = ["\""]; // parts joined once: += would copy the string at every escape
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out.push(s.substring(run, i));
    run = i + 1;
    if (c == 0x22) out.push("\\\"");
    else if (c == 0x5c) out.push("\\\\");
    else if (c == 0x0a) out.push("\\n");
    else if (c == 0x0d) out.push("\\r");
    else if (c == 0x09) out.push("\\t");
    else out.push("\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15));
  }
  out.push(s.substring(run));
  out.push("\"");
  return out.join("");
}

/** Parses JSON text; null when it is not exactly one JSON value (with surrounding whitespace). */
export function parse(text: string): Value | null {
  const reader = new Reader(text);
  const value = reader.value(0);
  if (value == null) return null;
  reader.skipSpace();
  return reader.pos == text.length ? value : null;
}

const MAX_DEPTH = 128; // deeper nesting is refused rather than exhausting the stack

class Reader {
  pos: i32 = 0;
  constructor(public text: string) {}

  skipSpace(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  value(depth: i32): Value | null {
    if (depth > MAX_DEPTH) return null;
    this.skipSpace();
    if (this.pos >= this.text.length) return null;
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) { const s = this.string(); return s == null ? null : Value.str(s); }
    if (this.word("true")) return Value.bool(true);
    if (this.word("false")) return Value.bool(false);
    if (this.word("null")) return Value.nul();
    return this.number();
  }

  word(w: string): bool {
    if (this.text.substr(this.pos, w.length) != w) return false;
    this.pos += w.length;
    return true;
  }

  object(depth: i32): Value | null {
    const out = Value.obj();
    this.pos++; // {
    this.skipSpace();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x7d) { this.pos++; return out; }
    while (true) {
      this.skipSpace();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x22) return null;
      const key = this.string();
      if (key == null) return null;
      this.skipSpace();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) return null;
      this.pos++;
      const item = this.value(depth + 1);
      if (item == null) return null;
      out.keys.push(key);
      out.items.push(item);
      this.skipSpace();
      if (this.pos >= this.text.length) return null;
      const c = this.text.charCodeAt(this.pos++);
      if (c == 0x7d) return out;
      if (c != 0x2c) return null;
    }
  }

  array(depth: i32): Value | null {
    const out = Value.arr();
    this.pos++; // [
    this.skipSpace();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x5d) { this.pos++; return out; }
    while (true) {
      const item = this.value(depth + 1);
      if (item == null) return null;
      out.items.push(item);
      this.skipSpace();
      if (this.pos >= this.text.length) return null;
      const c = this.text.charCodeAt(this.pos++);
      if (c == 0x5d) return out;
      if (c != 0x2c) return null;
    }
  }

  string(): string | null {
    const text = this.text;
    let pos = this.pos + 1; // past the opening quote
    const out: string[] = []; // parts joined once: += would copy the string at every escape
    let run = pos;
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c == 0x22) {
        this.pos = pos + 1;
        out.push(text.substring(run, pos));
        return out.join("");
      }
      if (c < 0x20) return null;
      if (c != 0x5c) { pos++; continue; }
      out.push(text.substring(run, pos));
      if (pos + 1 >= text.length) return null;
      const e = text.charCodeAt(pos + 1);
      pos += 2;
      if (e == 0x22) out.push("\"");
      else if (e == 0x5c) out.push("\\");
      else if (e == 0x2f) out.push("/");
      else if (e == 0x62) out.push("\b");
      else if (e == 0x66) out.push("\f");
      else if (e == 0x6e) out.push("\n");
      else if (e == 0x72) out.push("\r");
      else if (e == 0x74) out.push("\t");
      else if (e == 0x75) {
        if (pos + 4 > text.length) return null;
        let unit: i32 = 0;
        for (let k = 0; k < 4; k++) {
          const h = hexDigit(text.charCodeAt(pos + k));
          if (h < 0) return null;
          unit = (unit << 4) | h;
        }
        pos += 4;
        out.push(String.fromCharCode(unit)); // surrogate pairs arrive as two escapes and join up
      } else return null;
      run = pos;
    }
    return null;
  }

  number(): Value | null {
    const text = this.text;
    const start = this.pos;
    let pos = start;
    if (pos < text.length && text.charCodeAt(pos) == 0x2d) pos++;
    const digits = pos;
    while (pos < text.length && isDigit(text.charCodeAt(pos))) pos++;
    if (pos == digits) return null;
    if (text.charCodeAt(digits) == 0x30 && pos - digits > 1) return null; // no leading zeros
    if (pos < text.length && text.charCodeAt(pos) == 0x2e) {
      pos++;
      const frac = pos;
      while (pos < text.length && isDigit(text.charCodeAt(pos))) pos++;
      if (pos == frac) return null;
    }
    if (pos < text.length && (text.charCodeAt(pos) | 0x20) == 0x65) {
      pos++;
      if (pos < text.length && (text.charCodeAt(pos) == 0x2b || text.charCodeAt(pos) == 0x2d)) pos++;
      const exp = pos;
      while (pos < text.length && isDigit(text.charCodeAt(pos))) pos++;
      if (pos == exp) return null;
    }
    this.pos = pos;
    return Value.num(parseFloat(text.substring(start, pos)));
  }
}

function isDigit(c: i32): bool { return c >= 0x30 && c <= 0x39; }

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

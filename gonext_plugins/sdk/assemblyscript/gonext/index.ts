// gonext AssemblyScript SDK: the plugin ABI (version 1, ABI.md) for AssemblyScript plugins.
//
// A plugin registers its handlers at the top level of assembly/index.ts and re-exports the four
// ABI functions:
//
//   import * as gn from "gonext";
//   export { gn_alloc, gn_free, gn_handle_hook, gn_handle_job } from "gonext";
//   gn.filter("the_content", (hook: gn.Hook): gn.Value | null => gn.Value.str("<p>hi</p>"));
//
// Memory: blocks handed to the host (gn_alloc) come from `heap.alloc`, outside the garbage
// collector, so the GC can neither collect nor move them while the host uses them; gn_free
// gives them back. Everything else is ordinary managed AssemblyScript objects.
//
// The builder (gonext_plugins/devtools/build_assemblyscript.py) compiles with
// `--use abort=~lib/gonext/abort/gnAbort --use trace=... --use seed=...`, so a failed assertion,
// an out-of-range index or `throw` becomes gn_panic with its file:line:column, trace() goes to
// the plugin log and Math.random is seeded: the module imports nothing but `env.gn_*`.

import { Value, parse, stringify } from "./json";
export { Value, Kind, parse, stringify, quote } from "./json";
import { panic, gnAbort, gnTrace, gnSeed } from "./abort";
export { panic, gnAbort, gnTrace, gnSeed } from "./abort";

// --- host imports (module env) -------------------------------------------------------------------

@external("env", "gn_log")
declare function gn_log(level: i32, ptr: usize, len: i32): void;
@external("env", "gn_time_ms")
declare function gn_time_ms(): i64;
@external("env", "gn_host_call")
declare function gn_host_call(namePtr: usize, nameLen: i32, payloadPtr: usize, payloadLen: i32): i64;

// --- statuses (the negative lens of ABI.md) ------------------------------------------------------

export const OK: i32 = 0;
export const ERROR: i32 = -1;
export const OUT_OF_MEMORY: i32 = -2;
export const BAD_PAYLOAD: i32 = -3;
export const UNKNOWN_HOOK: i32 = -4;
export const CAPABILITY_DENIED: i32 = -5;
export const UNKNOWN_FUNCTION: i32 = -6;

// --- logging and the runtime's abort/trace/seed ---------------------------------------------------

export const DEBUG: i32 = 0;
export const INFO: i32 = 1;
export const WARNING: i32 = 2;
export const ERROR_LEVEL: i32 = 3;

/** Logs one line (level 0 debug .. 3 error) to the plugin's log. */
export function log(level: i32, message: string): void {
  const bytes = String.UTF8.encode(message);
  gn_log(level, changetype<usize>(bytes), bytes.byteLength);
}
export function debug(message: string): void { log(DEBUG, message); }
export function info(message: string): void { log(INFO, message); }
export function warn(message: string): void { log(WARNING, message); }
export function error(message: string): void { log(ERROR_LEVEL, message); }

/** Wall-clock milliseconds since the Unix epoch. */
export function timeMs(): i64 { return gn_time_ms(); }

// --- hook and job registration ---------------------------------------------------------------------

/** What a hook handler receives: the hook's name, kind ("action" | "filter"), args and (for a
 * filter) the current value. */
export class Hook {
  constructor(public name: string, public kind: string, public args: Value, public value: Value) {}
  /** ``args[index]`` or null. */
  arg(index: i32): Value | null { return this.args.at(index); }
}

/** What a job handler receives: the job's name, its task id (the idempotency key) and payload. */
export class Job {
  constructor(public name: string, public id: string, public payload: Value) {}
}

/** A filter returns the new value, or null to leave it unchanged; an action returns its body
 * (JSON), or null for none; a job returns its result, or null. */
export type HookHandler = (hook: Hook) => Value | null;
export type JobHandler = (job: Job) => Value | null;

const filters = new Map<string, HookHandler>();
const actions = new Map<string, HookHandler>();
const jobs = new Map<string, JobHandler>();
let callStatus: i32 = OK;

export function filter(name: string, handler: HookHandler): void { filters.set(name, handler); }
export function action(name: string, handler: HookHandler): void { actions.set(name, handler); }
export function job(name: string, handler: JobHandler): void { jobs.set(name, handler); }

/** Ends this call as a guest error (HookError, status "error") after logging ``message``; use as
 * ``return gn.fail("...")``. */
export function fail(message: string): Value | null {
  error(message);
  callStatus = ERROR;
  return null;
}

/** Ends this call as bad_payload (-3): the payload is JSON but not what the handler expects. */
export function badPayload(): Value | null {
  callStatus = BAD_PAYLOAD;
  return null;
}

// --- the ABI exports -----------------------------------------------------------------------------

/** ABI export: ``size`` writable bytes outside the GC, or 0 when the request cannot be met. */
export function gn_alloc(size: i32): usize {
  if (size < 0 || size > 0x3fffffff) return 0;
  return heap.alloc(<usize>max(size, 1));
}

/** ABI export: gives back a block from gn_alloc. */
export function gn_free(ptr: usize, size: i32): void {
  if (ptr != 0) heap.free(ptr);
}

function packed(ptr: usize, len: i32): i64 {
  return (<i64>ptr << 32) | <i64>(<u32>len);
}

/** A JSON body as a gn_alloc block, packed for the host (which copies it, then calls gn_free). */
function body(value: Value): i64 {
  const bytes = String.UTF8.encode(stringify(value));
  const len = bytes.byteLength;
  const ptr = gn_alloc(len);
  if (ptr == 0) return packed(0, OUT_OF_MEMORY);
  memory.copy(ptr, changetype<usize>(bytes), len);
  return packed(ptr, len);
}

function readString(ptr: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(ptr, <usize>len);
}

/** ABI export: decodes the payload and runs the registered filter or action. */
export function gn_handle_hook(namePtr: usize, nameLen: i32, payloadPtr: usize, payloadLen: i32): i64 {
  const name = readString(namePtr, nameLen);
  const payload = parse(readString(payloadPtr, payloadLen));
  if (payload == null || !payload.isObject) return packed(0, BAD_PAYLOAD);
  const kind = payload.get("kind");
  let args = payload.get("args");
  if (kind == null || !kind.isString) return packed(0, BAD_PAYLOAD);
  if (args == null) args = Value.arr();
  if (!args.isArray) return packed(0, BAD_PAYLOAD);
  const isFilter = kind.text == "filter";
  if (!isFilter && kind.text != "action") return packed(0, BAD_PAYLOAD);
  const handlers = isFilter ? filters : actions;
  if (!handlers.has(name)) return packed(0, UNKNOWN_HOOK);
  let value = payload.get("value");
  if (value == null) value = Value.nul();
  callStatus = OK;
  const result = handlers.get(name)(new Hook(name, kind.text, args, value));
  if (callStatus != OK) return packed(0, callStatus);
  if (result == null) return 0;
  return body(isFilter ? Value.obj().set("value", result) : result);
}

/** ABI export: decodes a job payload and runs the registered job handler. */
export function gn_handle_job(namePtr: usize, nameLen: i32, payloadPtr: usize, payloadLen: i32): i64 {
  const name = readString(namePtr, nameLen);
  const payload = parse(readString(payloadPtr, payloadLen));
  if (payload == null || !payload.isObject) return packed(0, BAD_PAYLOAD);
  if (!jobs.has(name)) return packed(0, UNKNOWN_HOOK);
  const id = payload.get("id");
  let data = payload.get("payload");
  if (data == null) data = Value.nul();
  callStatus = OK;
  const result = jobs.get(name)(new Job(name, id != null && id.isString ? id.text : "", data));
  if (callStatus != OK) return packed(0, callStatus);
  return result == null ? 0 : body(result);
}

// --- host functions ----------------------------------------------------------------------------

/** What a host function answered: ``status`` 0 (OK) or a negative status (CAPABILITY_DENIED,
 * ERROR, ...); ``value`` the decoded result (or the typed wrapper's part of it); ``found`` the
 * wrapper's yes/no (kv.get: found, kv.remove: deleted, kv.cas: swapped, settings.get: found). */
export class HostResult {
  constructor(public status: i32, public value: Value, public found: bool = false) {}
  get ok(): bool { return this.status == OK; }
  get denied(): bool { return this.status == CAPABILITY_DENIED; }
}

/** Calls any host function by name (a site's own, e.g. "posts.get") with a JSON payload. */
export function hostCall(name: string, payload: Value): HostResult {
  const nameBytes = String.UTF8.encode(name);
  const payloadBytes = String.UTF8.encode(stringify(payload));
  const result = gn_host_call(changetype<usize>(nameBytes), nameBytes.byteLength,
    changetype<usize>(payloadBytes), payloadBytes.byteLength);
  const ptr = <usize>(<u64>result >> 32);
  const len = <i32>(result & 0xffffffff);
  if (len < 0) return new HostResult(len, Value.nul());
  if (ptr == 0) return new HostResult(OK, Value.nul());
  const text = readString(ptr, len);
  heap.free(ptr); // the block came from our gn_alloc: it is ours to free
  const value = parse(text);
  return value == null ? new HostResult(BAD_PAYLOAD, Value.nul()) : new HostResult(OK, value);
}

function member(result: HostResult, key: string): Value {
  const v = result.value.get(key);
  return v == null ? Value.nul() : v;
}

function flag(result: HostResult, key: string): bool {
  const v = result.value.get(key);
  return v != null && v.isBool && v.boolean;
}

/** The plugin's key-value store (capability ``kv``). */
export namespace kv {
  /** ``value``: the stored value (null when absent); ``found``. */
  export function get(key: string): HostResult {
    const r = hostCall("kv.get", Value.obj().setString("key", key));
    return r.ok ? new HostResult(OK, member(r, "value"), flag(r, "found")) : r;
  }
  /** Stores ``value``; with ``ttlSeconds`` > 0 it reads as absent once it expires. */
  export function set(key: string, value: Value, ttlSeconds: i32 = 0): HostResult {
    const payload = Value.obj().setString("key", key).set("value", value);
    if (ttlSeconds > 0) payload.setInt("ttlSeconds", ttlSeconds);
    return hostCall("kv.set", payload);
  }
  /** ``found``: whether a key was deleted. (``delete`` is a reserved word.) */
  export function remove(key: string): HostResult {
    const r = hostCall("kv.delete", Value.obj().setString("key", key));
    return r.ok ? new HostResult(OK, r.value, flag(r, "deleted")) : r;
  }
  /** ``value``: an array of the keys starting with ``prefix``. */
  export function list(prefix: string = ""): HostResult {
    const r = hostCall("kv.list", Value.obj().setString("prefix", prefix));
    return r.ok ? new HostResult(OK, member(r, "keys")) : r;
  }
  /** Atomic add; ``value``: the new integer (``value.toInt()``). */
  export function incr(key: string, by: i64 = 1): HostResult {
    const r = hostCall("kv.incr", Value.obj().setString("key", key).setInt("by", by));
    return r.ok ? new HostResult(OK, member(r, "value")) : r;
  }
  /** Atomic compare-and-set (``expected`` null = absent); ``found``: swapped; ``value``: now stored. */
  export function cas(key: string, expected: Value | null, value: Value): HostResult {
    const r = hostCall("kv.cas", Value.obj().setString("key", key)
      .set("expected", expected != null ? expected : Value.nul()).set("value", value));
    return r.ok ? new HostResult(OK, member(r, "value"), flag(r, "ok")) : r;
  }
}

/** The plugin's own settings (no capability needed). */
export namespace settings {
  /** ``value``: the setting (null when absent); ``found``. */
  export function get(key: string): HostResult {
    const r = hostCall("settings.get", Value.obj().setString("key", key));
    return r.ok ? new HostResult(OK, member(r, "value"), flag(r, "found")) : r;
  }
  /** ``value``: every setting as an object. */
  export function all(): HostResult {
    const r = hostCall("settings.get", Value.obj());
    return r.ok ? new HostResult(OK, member(r, "settings")) : r;
  }
}

/** ``value``: ``{"slug", "version", "capabilities", "hosts", "hooks"}``. */
export function pluginInfo(): HostResult { return hostCall("plugin.info", Value.obj()); }

/** Background jobs (capability ``jobs.enqueue``). */
export namespace jobQueue {
  /** ``value``: the new task's id (a string). */
  export function enqueue(job: string, payload: Value | null = null, delaySeconds: i32 = 0): HostResult {
    const p = Value.obj().setString("job", job);
    if (payload != null) p.set("payload", payload);
    if (delaySeconds > 0) p.setInt("delaySeconds", delaySeconds);
    const r = hostCall("jobs.enqueue", p);
    return r.ok ? new HostResult(OK, member(r, "id")) : r;
  }
}

/** Outbound HTTP (capability ``http.fetch``, to the hosts the manifest lists). */
export namespace http {
  /** ``value``: ``{"status", "headers", "body", "url"}`` (+ ``bodyBase64`` for a binary body). */
  export function fetch(url: string, method: string = "GET", headers: Value | null = null,
                        body: string | null = null): HostResult {
    const p = Value.obj().setString("url", url).setString("method", method);
    if (headers != null) p.set("headers", headers);
    if (body != null) p.setString("body", body);
    return hostCall("http.fetch", p);
  }
}

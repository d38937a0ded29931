// The runtime's abort, trace and seed for a gonext plugin (the builder passes
// `--use abort=~lib/gonext/abort/gnAbort --use trace=~lib/gonext/abort/gnTrace
// --use seed=~lib/gonext/abort/gnSeed`). This file is in the source map's ignoreList, so a trap
// report starts at the frame that called abort, not in this handler.

@external("env", "gn_log")
declare function gn_log(level: i32, ptr: usize, len: i32): void;
@external("env", "gn_panic")
declare function gn_panic(ptr: usize, len: i32): void;
@external("env", "gn_time_ms")
declare function gn_time_ms(): i64;

/** Ends the call as a trap (PluginTrap on the host) carrying ``message``. */
export function panic(message: string): void {
  const bytes = String.UTF8.encode(message);
  gn_panic(changetype<usize>(bytes), bytes.byteLength);
  unreachable();
}

/** The runtime's `abort` (assertions, bounds checks, `throw`): gn_panic with where it happened. */
export function gnAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = message != null ? message : "abort";
  if (fileName != null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  panic(text);
}

/** The runtime's `trace`: a debug line in the plugin log. */
export function gnTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0,
                        a4: f64 = 0): void {
  let text = message;
  const values: f64[] = [a0, a1, a2, a3, a4];
  for (let i = 0; i < n && i < 5; i++) text += (i == 0 ? " " : ", ") + values[i].toString();
  const bytes = String.UTF8.encode(text);
  gn_log(0, changetype<usize>(bytes), bytes.byteLength);
}

/** The runtime's `seed` (Math.random): the clock, so two instances do not share a sequence. Not
 * for secrets. */
export function gnSeed(): f64 {
  return <f64>gn_time_ms();
}


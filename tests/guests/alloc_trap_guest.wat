;; gn_alloc fails while the host places a host call's result: the call's trap must carry the real
;; reason. The hook name's first letter picks how gn_alloc fails once the hook is running:
;; "u" unreachable, "p" gn_panic("allocator exploded"), "f" an endless loop (out of fuel).
;; Before the hook runs (the host placing the payload) gn_alloc is an ordinary bump allocator.
(module
  (import "env" "gn_panic" (func $gn_panic (param i32 i32)))
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 256) "echo")
  (data (i32.const 264) "{}")
  (data (i32.const 272) "allocator exploded")
  (global $mode (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (func $gn_alloc (export "gn_alloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.eq (global.get $mode) (i32.const 117)) (then unreachable))
    (if (i32.eq (global.get $mode) (i32.const 112)) (then
      (call $gn_panic (i32.const 272) (i32.const 18))))
    (if (i32.eq (global.get $mode) (i32.const 102)) (then (loop $spin (br $spin))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "gn_free") (param i32 i32))
  (func $ask_host (result i64)
    (call $gn_host_call (i32.const 256) (i32.const 4) (i32.const 264) (i32.const 2)))
  (func $gn_handle_hook (export "gn_handle_hook") (param $name i32) (param i32 i32 i32) (result i64)
    (global.set $mode (i32.load8_u (local.get $name)))
    (drop (call $ask_host))
    (i64.const 0)))

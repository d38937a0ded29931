;; A WASI reactor: `_initialize` must run once per new instance, before its first call; `_start`
;; must never run (it traps). The hook returns how often `_initialize` ran in this instance, as one
;; decimal digit (a JSON number); a hook name starting with "t" traps, so the test can see a new
;; instance replace the trapped one.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "initialized\n")
  (global $inits (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (i32.store (i32.const 32) (i32.const 256)) (i32.store (i32.const 36) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48))))
  (func (export "_start") unreachable)
  (func (export "gn_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param $name i32) (param i32 i32 i32) (result i64)
    (if (i32.eq (i32.load8_u (local.get $name)) (i32.const 116)) (then unreachable))  ;; "t": trap
    (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (global.get $inits)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 1))))

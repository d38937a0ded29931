;; A WASI reactor whose `_initialize` traps (after writing a line): loading it must fail with a
;; PluginTrap that says `_initialize` failed and why.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "starting up")
  (func $setup (export "_initialize")
    (i32.store (i32.const 32) (i32.const 256)) (i32.store (i32.const 36) (i32.const 11))
    (drop (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 48)))
    unreachable)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))

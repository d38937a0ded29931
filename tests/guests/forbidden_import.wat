;; Imports the pre-snapshot WASI module (wasi_unstable), which ABI.md forbids: must fail to load
;; naming the import (only wasi_snapshot_preview1 is linked).
(module
  (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))

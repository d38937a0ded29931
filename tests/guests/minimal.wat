;; The smallest guest ABI.md allows: no imports, no jobs, every hook answered "no body".
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "gn_alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))

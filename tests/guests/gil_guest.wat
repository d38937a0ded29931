;; A guest for the adaptive GIL policy tests (ABI.md v1). The hook name picks the work:
;;   "short"   returns the body {"ok":1} (the host then calls gn_free: both run with the GIL held
;;             once the policy holds it)
;;   "log"     logs "held" through gn_log (a host call made while the GIL is held), returns no body
;;   "long"    spins 300000 iterations (about 1.8 million fuel: "long" for the policy), no body
;;   "forever" never returns (only the hard deadline, or fuel, ends it)
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $freed (mut i32) (i32.const 0))
  (data (i32.const 16) "short")
  (data (i32.const 24) "log")
  (data (i32.const 32) "long")
  (data (i32.const 40) "forever")
  (data (i32.const 48) "held")
  (data (i32.const 64) "{\"ok\":1}")

  (func (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.const 65536))
      (then (global.set $heap (local.get $p)) (return (i32.const 0))))
    (local.get $p))

  (func (export "gn_free") (param i32 i32)
    (global.set $freed (i32.add (global.get $freed) (i32.const 1))))

  (func (export "freed") (result i32) (global.get $freed))

  (func $is (param $p i32) (param $l i32) (param $q i32) (param $ql i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $l) (local.get $ql)) (then (return (i32.const 0))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $l)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $q) (local.get $i))))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 1))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32)
    (if (call $is (local.get $np) (local.get $nl) (i32.const 16) (i32.const 5))
      (then (return (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 8)))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 24) (i32.const 3))
      (then (call $gn_log (i32.const 1) (i32.const 48) (i32.const 4)) (return (i64.const 0))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 32) (i32.const 4))
      (then
        (local.set $i (i32.const 300000))
        (loop $spin
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $spin (local.get $i)))
        (return (i64.const 0))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 40) (i32.const 7))
      (then (loop $ever (br $ever))))
    (i64.or (i64.shl (i64.const 0) (i64.const 32)) (i64.const 0xFFFFFFFC)))
)

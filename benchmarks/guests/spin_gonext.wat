;; Benchmark guest for gonext's ABI (ABI.md v1): an action that counts down 900k loop iterations
;; (one decrement and one taken branch each; about 0.5 ms bare, 0.9 ms with fuel metering) and
;; returns no body. The runtime benchmark's "tight loop" row: two threads of it gain less than two
;; threads of mix_gonext.wat's arithmetic, with or without the host around it, so the thread rows
;; use that one and print this beside it.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (func (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (if (i32.gt_u (global.get $heap) (i32.const 65536))
      (then (global.set $heap (local.get $p)) (return (i32.const 0))))
    (local.get $p))

  (func (export "gn_free") (param $p i32) (param $size i32)
    (if (i32.eq (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8))
                (global.get $heap))
      (then (global.set $heap (local.get $p)))))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32)
    (local.set $i (i32.const 900000))
    (loop $spin
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $spin (local.get $i)))
    (i64.const 0))
)

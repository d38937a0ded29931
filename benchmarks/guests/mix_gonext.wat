;; Benchmark guest for gonext's ABI (ABI.md v1): an action that does about half a millisecond of
;; arithmetic (120k rounds of four dependent multiply-adds, the shape of a hash or a checksum) and
;; returns no body. The thread rows use it to show that long guest calls run in parallel: the host
;; releases the GIL while the guest runs. Why not spin_gonext.wat's bare countdown: a loop of one
;; decrement and one taken branch gains less from a second thread on this project's VM even with no
;; host around it (wasmtime-py alone on the same loop), so it measures the machine's cores more than
;; the host; the benchmark still prints it, beside wasmtime-py alone on both guests.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $result (mut i32) (i32.const 0))  ;; keeps the arithmetic from being dead code

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
    (local $i i32) (local $x i32)
    (local.set $i (i32.const 120000))
    (local.set $x (i32.const 7))
    (loop $mix
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $mix (local.get $i)))
    (global.set $result (local.get $x))
    (i64.const 0))
)

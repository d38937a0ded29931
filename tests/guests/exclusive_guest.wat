;; A filter that proves the host never runs two calls in one instance at once: it raises a "busy"
;; flag, spins for a while (the host releases the GIL during guest code, so another thread could
;; come in then), and returns the error result (-1) if it ever finds the flag already up. Otherwise
;; it echoes the whole envelope as the body, so {"value": ...} comes back unchanged and each caller
;; can check it got its own value, not another thread's.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $busy (mut i32) (i32.const 0))

  (func $alloc (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (if (i32.lt_s (local.get $size) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                                     (i32.const 65535)) (i32.const 16)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  ;; LIFO free: the host frees the body right after copying it, so the heap never creeps up.
  (func (export "gn_free") (param $p i32) (param $size i32)
    (if (i32.eq (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8))
                (global.get $heap))
      (then (global.set $heap (local.get $p)))))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32) (local $out i32)
    (if (global.get $busy) (then (return (i64.const 0xffffffff))))  ;; (0, -1): error
    (global.set $busy (i32.const 1))
    (local.set $i (i32.const 20000))
    (loop $spin
      (if (i32.ne (global.get $busy) (i32.const 1)) (then (return (i64.const 0xffffffff))))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $spin (local.get $i)))
    (local.set $out (call $alloc (local.get $pl)))
    (if (i32.eqz (local.get $out))
      (then (global.set $busy (i32.const 0)) (return (i64.const 0xfffffffe))))
    (memory.copy (local.get $out) (local.get $pp) (local.get $pl))
    (global.set $busy (i32.const 0))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (local.get $pl))))
)

;; A guest for the log tests and the logs benchmark.
;;   "flood": gn_log N times (level 1, "flood line"), N = the first decimal number in the payload
;;            (so `invoke("action", "flood", 500)` logs 500 lines), 100 when there is none.
;;   "levels": one line at each level: "debug line", "info line", "warning line", "error line".
;;   "crash": gn_panic("flood guest gave up").
;;   any other hook: logs "called <hook>" at info and returns no body (a filter's value unchanged).
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (import "env" "gn_panic" (func $gn_panic (param i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 8192))

  (data (i32.const 16) "flood")
  (data (i32.const 32) "levels")
  (data (i32.const 48) "crash")
  (data (i32.const 64) "flood line")
  (data (i32.const 80) "debug line")
  (data (i32.const 96) "info line")
  (data (i32.const 112) "warning line")
  (data (i32.const 128) "error line")
  (data (i32.const 144) "flood guest gave up")
  (data (i32.const 176) "called ")

  ;; a bump allocator that wraps around (blocks are only used within one call)
  (func $alloc (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.const 131072))
      (then
        (local.set $p (i32.const 8192))
        (local.set $end (i32.add (local.get $p) (local.get $size)))
        (if (i32.gt_u (local.get $end) (i32.const 131072)) (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "gn_free") (param i32 i32))

  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i))))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 1))

  ;; the first run of decimal digits in [p, p+l), or -1
  (func $number (param $p i32) (param $l i32) (result i32)
    (local $i i32) (local $c i32) (local $n i32) (local $seen i32)
    (block $done (loop $scan
      (br_if $done (i32.ge_u (local.get $i) (local.get $l)))
      (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
        (then
          (local.set $seen (i32.const 1))
          (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48)))))
        (else (br_if $done (local.get $seen))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (if (result i32) (local.get $seen) (then (local.get $n)) (else (i32.const -1))))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32)
    (if (call $eq (local.get $np) (local.get $nl) (i32.const 16) (i32.const 5))
      (then
        (local.set $n (call $number (local.get $pp) (local.get $pl)))
        (if (i32.lt_s (local.get $n) (i32.const 0)) (then (local.set $n (i32.const 100))))
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $gn_log (i32.const 1) (i32.const 64) (i32.const 10))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (return (i64.const 0))))
    (if (call $eq (local.get $np) (local.get $nl) (i32.const 32) (i32.const 6))
      (then
        (call $gn_log (i32.const 0) (i32.const 80) (i32.const 10))
        (call $gn_log (i32.const 1) (i32.const 96) (i32.const 9))
        (call $gn_log (i32.const 2) (i32.const 112) (i32.const 12))
        (call $gn_log (i32.const 3) (i32.const 128) (i32.const 10))
        (return (i64.const 0))))
    (if (call $eq (local.get $np) (local.get $nl) (i32.const 48) (i32.const 5))
      (then (call $gn_panic (i32.const 144) (i32.const 19)) (unreachable)))
    ;; "called <hook>"
    (local.set $out (call $alloc (i32.add (local.get $nl) (i32.const 7))))
    (if (i32.eqz (local.get $out)) (then (return (i64.const 0))))
    (memory.copy (local.get $out) (i32.const 176) (i32.const 7))
    (memory.copy (i32.add (local.get $out) (i32.const 7)) (local.get $np) (local.get $nl))
    (call $gn_log (i32.const 1) (local.get $out) (i32.add (local.get $nl) (i32.const 7)))
    (i64.const 0))
)

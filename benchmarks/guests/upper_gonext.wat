;; Benchmark guest for gonext's ABI (ABI.md v1): filter that upper-cases the ASCII letters of the
;; string "value" in the envelope and returns {"value": "..."}. The transform ($upper_json) is the
;; same code as in upper_extism.wat, so both hosts run identical guest work.
(module
  (memory (export "memory") 2)
  (data (i32.const 16) "\"value\":\"")   ;; 9-byte needle
  (data (i32.const 32) "{\"value\":\"")  ;; 10-byte output prefix
  (global $heap (mut i32) (i32.const 1024))

  ;; Bump allocator with LIFO free: enough for a host that frees in reverse order.
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

  (func (export "gn_free") (param $p i32) (param $size i32)
    (if (i32.eq (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8))
                (global.get $heap))
      (then (global.set $heap (local.get $p)))))

  ;; $upper_json(src, len, dst) -> out_len, or -1 when there is no string "value" in the JSON.
  (func $upper_json (param $src i32) (param $len i32) (param $dst i32) (result i32)
    (local $i i32) (local $s i32) (local $j i32) (local $c i32) (local $n i32) (local $k i32)
    ;; find the needle
    (local.set $s (i32.const -1))
    (block $found
      (loop $scan
        (br_if $found (i32.gt_s (i32.add (local.get $i) (i32.const 9)) (local.get $len)))
        (if (i64.eq (i64.load (i32.add (local.get $src) (local.get $i))) (i64.load (i32.const 16)))
          (then (if (i32.eq (i32.load8_u offset=8 (i32.add (local.get $src) (local.get $i))) (i32.const 34))
            (then (local.set $s (i32.add (local.get $i) (i32.const 9))) (br $found)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i32.lt_s (local.get $s) (i32.const 0)) (then (return (i32.const -1))))
    ;; copy the prefix
    (i64.store (local.get $dst) (i64.load (i32.const 32)))
    (i32.store16 offset=8 (local.get $dst) (i32.load16_u (i32.const 40)))
    ;; copy the string, upper-casing a-z, escapes kept
    (local.set $j (local.get $s))
    (local.set $k (i32.add (local.get $dst) (i32.const 10)))
    (block $end
      (loop $copy
        (if (i32.ge_s (local.get $j) (local.get $len)) (then (return (i32.const -1))))
        (local.set $c (i32.load8_u (i32.add (local.get $src) (local.get $j))))
        (br_if $end (i32.eq (local.get $c) (i32.const 34)))
        (if (i32.eq (local.get $c) (i32.const 92))
          (then
            (if (i32.ge_s (i32.add (local.get $j) (i32.const 1)) (local.get $len)) (then (return (i32.const -1))))
            (i32.store8 (local.get $k) (local.get $c))
            (i32.store8 offset=1 (local.get $k)
              (i32.load8_u offset=1 (i32.add (local.get $src) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))
            (local.set $k (i32.add (local.get $k) (i32.const 2)))
            (br $copy)))
        (if (i32.lt_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 26))
          (then (local.set $c (i32.sub (local.get $c) (i32.const 32)))))
        (i32.store8 (local.get $k) (local.get $c))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $copy)))
    (i32.store8 (local.get $k) (i32.const 34))
    (i32.store8 offset=1 (local.get $k) (i32.const 125))
    (i32.sub (i32.add (local.get $k) (i32.const 2)) (local.get $dst)))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $out i32) (local $n i32)
    ;; the output is at most len + 3 bytes ({"value":"...} minus the envelope around it)
    (local.set $out (call $alloc (i32.add (local.get $pl) (i32.const 16))))
    (if (i32.eqz (local.get $out)) (then (return (i64.const 0xfffffffe))))
    (local.set $n (call $upper_json (local.get $pp) (local.get $pl) (local.get $out)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (global.set $heap (local.get $out)) (return (i64.const 0xfffffffd))))
    ;; shrink the block to what was written so gn_free(ptr, n) pops it
    (global.set $heap (i32.and (i32.add (i32.add (local.get $out) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
)

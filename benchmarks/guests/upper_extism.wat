;; Benchmark guest for Extism's guest ABI: export "filter" reads the input through the kernel
;; (input_load_u64/u8), runs the same $upper_json transform as upper_gonext.wat, and writes the output
;; back through alloc/store_u64/store_u8/output_set, as Extism's PDKs do.
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "alloc" (func $ext_alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\"value\":\"")   ;; 9-byte needle
  (data (i32.const 32) "{\"value\":\"")  ;; 10-byte output prefix

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

  (func (export "filter") (result i32)
    (local $len i32) (local $i i32) (local $src i32) (local $dst i32) (local $n i32) (local $need i32)
    (local $have i32) (local $eo i64)
    (local.set $len (i32.wrap_i64 (call $input_length)))
    (local.set $src (i32.const 1024))
    (local.set $dst (i32.add (local.get $src) (i32.and (i32.add (local.get $len) (i32.const 7)) (i32.const -8))))
    (local.set $need (i32.add (i32.add (local.get $dst) (local.get $len)) (i32.const 16)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (local.get $have))
      (then (drop (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $need) (local.get $have))
                                                   (i32.const 65535)) (i32.const 16))))))
    ;; input into our memory, 8 bytes at a time
    (block $done (loop $in
      (br_if $done (i32.gt_s (i32.add (local.get $i) (i32.const 8)) (local.get $len)))
      (i64.store (i32.add (local.get $src) (local.get $i)) (call $input_load_u64 (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $in)))
    (block $done (loop $in
      (br_if $done (i32.ge_s (local.get $i) (local.get $len)))
      (i32.store8 (i32.add (local.get $src) (local.get $i)) (call $input_load_u8 (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $in)))
    (local.set $n (call $upper_json (local.get $src) (local.get $len) (local.get $dst)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 1))))
    ;; output through the kernel
    (local.set $eo (call $ext_alloc (i64.extend_i32_u (local.get $n))))
    (local.set $i (i32.const 0))
    (block $done (loop $out
      (br_if $done (i32.gt_s (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
      (call $store_u64 (i64.add (local.get $eo) (i64.extend_i32_u (local.get $i)))
                       (i64.load (i32.add (local.get $dst) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $out)))
    (block $done (loop $out
      (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $eo) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (i32.add (local.get $dst) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $out)))
    (call $output_set (local.get $eo) (i64.extend_i32_u (local.get $n)))
    (i32.const 0))
)

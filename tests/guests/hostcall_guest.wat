;; A guest written from ABI.md alone, for the built-in host function tests (tests/test_builtin_host.py,
;; tests/test_kv_atomic.py: kv.incr, kv.cas and ttlSeconds with the table's payloads, unchanged).
;;
;; Run it as a filter: the hook name is the host function to call, and the filter's value (any JSON
;; value, copied byte for byte out of the payload envelope) is the payload passed to gn_host_call.
;; The body is {"value": <the host call's JSON result>}, or {"value":{"hc":-N}} for a negative status.
;; A hook name "loop:<fn>" calls <fn> ten times with the same payload and answers with the last result.
;; A bump allocator serves gn_alloc; each hook call starts the heap again just past its inputs.
(module
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 16) "\"value\":")            ;; 8 bytes
  (data (i32.const 32) "{\"value\":")           ;; 9 bytes
  (data (i32.const 48) "{\"value\":{\"hc\":-")  ;; 16 bytes
  (data (i32.const 80) "loop:")                 ;; 5 bytes

  (func $pack (param $p i32) (param $l i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $l))))

  (func $alloc (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $need i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (local.set $need (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                                  (memory.size)))
        (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "gn_free") (param i32 i32))

  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i))))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 1))

  ;; index just past the closing quote of the JSON string starting at $p, or -1
  (func $string_end (param $p i32) (param $end i32) (result i32)
    (local $i i32) (local $c i32)
    (local.set $i (i32.add (local.get $p) (i32.const 1)))
    (loop $l
      (if (i32.ge_u (local.get $i) (local.get $end)) (then (return (i32.const -1))))
      (local.set $c (i32.load8_u (local.get $i)))
      (if (i32.eq (local.get $c) (i32.const 92))  ;; backslash: skip the escaped byte
        (then (local.set $i (i32.add (local.get $i) (i32.const 2))) (br $l)))
      (if (i32.eq (local.get $c) (i32.const 34)) (then (return (i32.add (local.get $i) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))
    (i32.const -1))

  ;; index just past the JSON value starting at $p, or -1
  (func $value_end (param $p i32) (param $end i32) (result i32)
    (local $i i32) (local $c i32) (local $depth i32)
    (local.set $c (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 34)) (then (return (call $string_end (local.get $p) (local.get $end)))))
    (local.set $i (local.get $p))
    (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
      (then
        (loop $l
          (if (i32.ge_u (local.get $i) (local.get $end)) (then (return (i32.const -1))))
          (local.set $c (i32.load8_u (local.get $i)))
          (if (i32.eq (local.get $c) (i32.const 34))
            (then
              (local.set $i (call $string_end (local.get $i) (local.get $end)))
              (if (i32.lt_s (local.get $i) (i32.const 0)) (then (return (i32.const -1))))
              (br $l)))
          (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 125)) (i32.eq (local.get $c) (i32.const 93)))
            (then
              (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
              (if (i32.eqz (local.get $depth)) (then (return (i32.add (local.get $i) (i32.const 1)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l))))
    ;; a number, true, false or null: up to the next delimiter
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $c (i32.load8_u (local.get $i)))
      (br_if $done (i32.or (i32.or (i32.eq (local.get $c) (i32.const 44)) (i32.eq (local.get $c) (i32.const 125)))
                           (i32.or (i32.eq (local.get $c) (i32.const 93)) (i32.le_u (local.get $c) (i32.const 32)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $i))

  ;; the body {"value":<result>} for a host call's packed result
  (func $answer (param $r i64) (result i64)
    (local $len i32) (local $ptr i32) (local $out i32)
    (local.set $len (i32.wrap_i64 (local.get $r)))
    (local.set $ptr (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
    (if (i32.lt_s (local.get $len) (i32.const 0))
      (then
        (local.set $out (call $alloc (i32.const 19)))
        (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
        (memory.copy (local.get $out) (i32.const 48) (i32.const 16))
        (i32.store8 (i32.add (local.get $out) (i32.const 16)) (i32.sub (i32.const 48) (local.get $len)))
        (i32.store16 (i32.add (local.get $out) (i32.const 17)) (i32.const 0x7d7d))  ;; "}}"
        (return (call $pack (local.get $out) (i32.const 19)))))
    (local.set $out (call $alloc (i32.add (local.get $len) (i32.const 10))))
    (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
    (memory.copy (local.get $out) (i32.const 32) (i32.const 9))
    (memory.copy (i32.add (local.get $out) (i32.const 9)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (local.get $out) (i32.add (local.get $len) (i32.const 9))) (i32.const 125))
    (call $pack (local.get $out) (i32.add (local.get $len) (i32.const 10))))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32) (local $vs i32) (local $ve i32) (local $end i32) (local $r i64) (local $n i32)
    ;; everything this call needs lies below max(name end, payload end): restart the heap there
    (local.set $end (i32.add (local.get $pp) (local.get $pl)))
    (if (i32.gt_u (i32.add (local.get $np) (local.get $nl)) (local.get $end))
      (then (local.set $end (i32.add (local.get $np) (local.get $nl)))))
    (if (i32.lt_u (local.get $end) (i32.const 1024)) (then (local.set $end (i32.const 1024))))
    (global.set $heap (local.get $end))
    ;; find "value": and the extent of the value after it
    (local.set $end (i32.add (local.get $pp) (local.get $pl)))
    (local.set $vs (i32.const -1))
    (block $found (loop $scan
      (br_if $found (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $pl)))
      (if (call $eq (i32.add (local.get $pp) (local.get $i)) (i32.const 16) (i32.const 8))
        (then (local.set $vs (i32.add (local.get $pp) (i32.add (local.get $i) (i32.const 8)))) (br $found)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (if (i32.lt_s (local.get $vs) (i32.const 0)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
    (block $ws (loop $l
      (br_if $ws (i32.ge_u (local.get $vs) (local.get $end)))
      (br_if $ws (i32.gt_u (i32.load8_u (local.get $vs)) (i32.const 32)))
      (local.set $vs (i32.add (local.get $vs) (i32.const 1)))
      (br $l)))
    (if (i32.ge_u (local.get $vs) (local.get $end)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
    (local.set $ve (call $value_end (local.get $vs) (local.get $end)))
    (if (i32.lt_s (local.get $ve) (i32.const 0)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
    ;; loop:<fn> calls <fn> ten times
    (if (i32.and (i32.gt_u (local.get $nl) (i32.const 5)) (call $eq (local.get $np) (i32.const 80) (i32.const 5)))
      (then
        (block $done (loop $again
          (br_if $done (i32.ge_u (local.get $n) (i32.const 10)))
          (local.set $r (call $gn_host_call (i32.add (local.get $np) (i32.const 5)) (i32.sub (local.get $nl) (i32.const 5))
                                            (local.get $vs) (i32.sub (local.get $ve) (local.get $vs))))
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br $again)))
        (return (call $answer (local.get $r)))))
    (call $answer (call $gn_host_call (local.get $np) (local.get $nl)
                                      (local.get $vs) (i32.sub (local.get $ve) (local.get $vs)))))
;; Jobs succeed with no body, so manifests that declare jobs can activate (ABI.md: jobs need it).
  (func (export "gn_handle_job") (param i32 i32 i32 i32) (result i64) (i64.const 0))
)

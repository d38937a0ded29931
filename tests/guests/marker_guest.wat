;; A content plugin written from ABI.md alone, for the admin's browser tests: every filter appends a
;; marker paragraph to a string value (the_content), every action returns no body.
;; {"kind":"filter",...,"value":"<escaped>",...} -> {"value":"<escaped><p class=gn-marker>...</p>"}
;; The value's bytes are copied as they are (still JSON-escaped), so any string round-trips.
;; A stack-like bump allocator: freeing the newest block pops it, so a reused instance does not grow.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 16) "\"value\":\"")
  (data (i32.const 32) "{\"value\":\"")
  (data (i32.const 64) "<p class=gn-marker>Marked by the gonext marker plugin</p>\"}")
  ;; the marker plus the closing quote and brace: 57 + 2 bytes

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

  (func (export "gn_free") (param $p i32) (param $size i32)
    (if (i32.eq (i32.add (local.get $p) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $p)))))

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

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32) (local $start i32) (local $end i32) (local $n i32) (local $out i32) (local $c i32)
    ;; payloads start {"kind":"filter" for filters; anything else (actions) gets no body
    (if (i32.lt_u (local.get $pl) (i32.const 16)) (then (return (i64.const 0))))
    (if (i32.ne (i32.load8_u (i32.add (local.get $pp) (i32.const 9))) (i32.const 102)) ;; 'f'
      (then (return (i64.const 0))))
    ;; find "value":" (the first occurrence is the envelope's key: keys inside strings are escaped)
    (local.set $start (i32.const -1))
    (block $found (loop $scan
      (br_if $found (i32.gt_u (i32.add (local.get $i) (i32.const 9)) (local.get $pl)))
      (if (call $eq (i32.add (local.get $pp) (local.get $i)) (i32.const 16) (i32.const 9))
        (then (local.set $start (i32.add (local.get $i) (i32.const 9))) (br $found)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (if (i32.eq (local.get $start) (i32.const -1)) (then (return (i64.const 0)))) ;; not a string
    ;; the closing quote: skip the character after each backslash
    (local.set $end (local.get $start))
    (block $q (loop $l
      (if (i32.ge_u (local.get $end) (local.get $pl)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
      (local.set $c (i32.load8_u (i32.add (local.get $pp) (local.get $end))))
      (br_if $q (i32.eq (local.get $c) (i32.const 34)))
      (if (i32.eq (local.get $c) (i32.const 92))
        (then (local.set $end (i32.add (local.get $end) (i32.const 1)))))
      (local.set $end (i32.add (local.get $end) (i32.const 1)))
      (br $l)))
    (local.set $n (i32.sub (local.get $end) (local.get $start)))
    ;; 10 bytes of {"value":" + the value + 59 bytes of marker, quote and brace
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const 69))))
    (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
    (memory.copy (local.get $out) (i32.const 32) (i32.const 10))
    (memory.copy (i32.add (local.get $out) (i32.const 10)) (i32.add (local.get $pp) (local.get $start))
                 (local.get $n))
    (memory.copy (i32.add (local.get $out) (i32.add (i32.const 10) (local.get $n))) (i32.const 64)
                 (i32.const 59))
    (call $pack (local.get $out) (i32.add (local.get $n) (i32.const 69))))
)

;; A guest written from ABI.md alone that hands the host text with a NUL byte in it, the way a
;; careless or hostile plugin can (tests/security/test_untrusted_strings_postgres.py):
;;   hook "panic"  gn_panic("boom<NUL>after")
;;   hook "log"    gn_log(info, "line<NUL>with nul"), then no body
;;   any job       the body {"text":"a\u0000b"} (a JSON string holding a NUL)
;;   other hooks   -4 (unknown hook)
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (import "env" "gn_panic" (func $gn_panic (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 16) "boom\00after")              ;; 10 bytes
  (data (i32.const 32) "line\00with nul")           ;; 13 bytes
  (data (i32.const 48) "{\"text\":\"a\\u0000b\"}")  ;; 19 bytes
  (data (i32.const 80) "panic")                     ;; 5 bytes
  (data (i32.const 88) "log")                       ;; 3 bytes

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

  (func $is (param $np i32) (param $nl i32) (param $lit i32) (param $len i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $nl) (local.get $len)) (then (return (i32.const 0))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $np) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $lit) (local.get $i))))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 1))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param i32 i32) (result i64)
    (if (call $is (local.get $np) (local.get $nl) (i32.const 80) (i32.const 5))
      (then (call $gn_panic (i32.const 16) (i32.const 10)) unreachable))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 88) (i32.const 3))
      (then
        (call $gn_log (i32.const 1) (i32.const 32) (i32.const 13))
        (return (i64.const 0))))
    (call $pack (i32.const 0) (i32.const -4)))

  (func (export "gn_handle_job") (param i32 i32 i32 i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (i32.const 19)))
    (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
    (memory.copy (local.get $out) (i32.const 48) (i32.const 19))
    (call $pack (local.get $out) (i32.const 19)))
)

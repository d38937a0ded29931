;; A guest written from ABI.md alone, for the results of pure hooks (tests/test_pure_hooks.py).
;;
;; Every call of gn_handle_hook counts itself, and its body says which call it was: {"n":D}, D the
;; call count modulo 10. So a call answered from remembered results shows an older D, and a call that
;; really ran shows the next one. The hook name's length picks what the call does besides:
;;   "n" (1): nothing;                     "kv" (2): gn_host_call kv.get {"key":"k"};
;;   "log" (3): gn_log one info line;      "time" (4): gn_time_ms;
;;   "error" (5): returns a guest error (len -1), no body;
;;   "no_body" (7): returns success with no body;
;;   "settings" (8): gn_host_call settings.get {}.
;; A bump allocator serves gn_alloc (growing memory when needed); gn_free keeps nothing.
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (import "env" "gn_time_ms" (func $gn_time_ms (result i64)))
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $calls (mut i32) (i32.const 0))

  (data (i32.const 16) "{\"n\":0}")          ;; 7 bytes; the digit is at 21
  (data (i32.const 32) "settings.get")       ;; 12 bytes
  (data (i32.const 48) "{}")                 ;; 2 bytes
  (data (i32.const 64) "kv.get")             ;; 6 bytes
  (data (i32.const 80) "{\"key\":\"k\"}")    ;; 11 bytes
  (data (i32.const 96) "pure guest")         ;; 10 bytes

  (func (export "gn_alloc") (param $size i32) (result i32)
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

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (local.get $nl) (i32.const 2))
      (then (drop (call $gn_host_call (i32.const 64) (i32.const 6) (i32.const 80) (i32.const 11)))))
    (if (i32.eq (local.get $nl) (i32.const 3))
      (then (call $gn_log (i32.const 1) (i32.const 96) (i32.const 10))))
    (if (i32.eq (local.get $nl) (i32.const 4))
      (then (drop (call $gn_time_ms))))
    (if (i32.eq (local.get $nl) (i32.const 5))
      (then (return (i64.const 0xffffffff))))  ;; ptr 0, len -1: a guest error
    (if (i32.eq (local.get $nl) (i32.const 7))
      (then (return (i64.const 0))))           ;; success, no body
    (if (i32.eq (local.get $nl) (i32.const 8))
      (then (drop (call $gn_host_call (i32.const 32) (i32.const 12) (i32.const 48) (i32.const 2)))))
    (i32.store8 (i32.const 21) (i32.add (i32.const 48) (i32.rem_u (global.get $calls) (i32.const 10))))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 7))))

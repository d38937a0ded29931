;; A guest written from ABI.md alone that calls host imports from inside gn_alloc and gn_free,
;; where ABI.md says the host is not re-entrant (only gn_log, dropped, and gn_time_ms may be called).
;;
;; The hook name picks the case: its FIRST byte says where the import is made,
;;   'a' (e.g. "alloc:...")   inside gn_alloc while the host places a gn_host_call result;
;;   'f' (e.g. "free:...")    inside gn_free while the host frees the hook's body;
;;   'p' (e.g. "payload:...") inside gn_alloc from the NEXT call on, while the host places a
;;                            payload (send a bigger payload next so the buffer grows);
;;   anything else            as 'a' (so "wp_head" is the crash case of issue #13);
;; and its LAST byte says which import:
;;   'g' gn_log, 'c' gn_panic, 's' gn_time_ms, anything else gn_host_call("log", ...).
;; The hook itself logs "hook ran" through gn_log, and for 'a' makes one gn_host_call("log").
;; A bump allocator serves gn_alloc.
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (import "env" "gn_panic" (func $gn_panic (param i32 i32)))
  (import "env" "gn_time_ms" (func $gn_time_ms (result i64)))
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $where (mut i32) (i32.const 0))  ;; 0 nowhere, 'a', 'f' or 'p'
  (global $what (mut i32) (i32.const 0))   ;; 'g', 'c', 's' or 'h'

  (data (i32.const 16) "log")                                  ;; 3 bytes
  (data (i32.const 32) "{\"message\":\"from the allocator\"}")  ;; 32 bytes
  (data (i32.const 80) "from the allocator")                   ;; 18 bytes
  (data (i32.const 112) "hook ran")                            ;; 8 bytes
  (data (i32.const 128) "{\"message\":\"from the hook\"}")      ;; 27 bytes
  (data (i32.const 160) "[]")                                  ;; 2 bytes: an action body

  ;; The forbidden (or allowed) import, made from inside gn_alloc / gn_free.
  (func $reenter
    (local $r i64)
    (if (i32.eq (global.get $what) (i32.const 103))  ;; 'g'
      (then (call $gn_log (i32.const 1) (i32.const 80) (i32.const 18)) (return)))
    (if (i32.eq (global.get $what) (i32.const 99))   ;; 'c'
      (then (call $gn_panic (i32.const 80) (i32.const 18)) (return)))
    (if (i32.eq (global.get $what) (i32.const 115))  ;; 's'
      (then (local.set $r (call $gn_time_ms)) (return)))
    (local.set $r (call $gn_host_call (i32.const 16) (i32.const 3) (i32.const 32) (i32.const 32))))

  (func (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32)
    (if (i32.or (i32.eq (global.get $where) (i32.const 97)) (i32.eq (global.get $where) (i32.const 112)))
      (then (call $reenter)))
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536))
      (then (global.set $heap (i32.const 4096))  ;; a bump allocator that wraps: inputs are copied out
            (local.set $p (i32.const 4096))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func (export "gn_free") (param i32 i32)
    (if (i32.eq (global.get $where) (i32.const 102))
      (then (call $reenter) (global.set $where (i32.const 0)))))

  (func (export "gn_handle_hook") (param $name i32) (param $name_len i32) (param i32 i32) (result i64)
    (local $first i32) (local $last i32) (local $r i64)
    (local.set $first (i32.load8_u (local.get $name)))
    (local.set $last (i32.load8_u (i32.sub (i32.add (local.get $name) (local.get $name_len)) (i32.const 1))))
    (global.set $what (i32.const 104))  ;; 'h'
    (if (i32.eq (local.get $last) (i32.const 103)) (then (global.set $what (i32.const 103))))
    (if (i32.eq (local.get $last) (i32.const 99)) (then (global.set $what (i32.const 99))))
    (if (i32.eq (local.get $last) (i32.const 115)) (then (global.set $what (i32.const 115))))
    (call $gn_log (i32.const 1) (i32.const 112) (i32.const 8))
    (if (i32.eq (local.get $first) (i32.const 102))  ;; 'f': answer with a body the host frees
      (then (global.set $where (i32.const 102))
            (return (i64.or (i64.shl (i64.const 160) (i64.const 32)) (i64.const 2)))))
    (if (i32.eq (local.get $first) (i32.const 112))  ;; 'p': the next payload placement re-enters
      (then (global.set $where (i32.const 112)) (return (i64.const 0))))
    (global.set $where (i32.const 97))  ;; 'a'
    (local.set $r (call $gn_host_call (i32.const 16) (i32.const 3) (i32.const 128) (i32.const 27)))
    (global.set $where (i32.const 0))
    (i64.const 0)))

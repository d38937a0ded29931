;; A guest written from ABI.md alone that makes many host calls per hook call, for the host-call round
;; trip benchmark (benchmarks/runtime.py) and its tests (tests/runtime/test_host_call_path.py).
;;
;; The hook name is the host function to call; the guest calls it 100 times with the payload "{}" and
;; returns no body, or (0, -1) (a guest error) as soon as one call returns a negative status. The hook
;; name "none" makes no host call at all: the same hook call's cost without them. A bump allocator
;; serves gn_alloc, and the heap starts again after each host call (the guest drops every result).
(module
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 16) "{}")    ;; the payload, 2 bytes
  (data (i32.const 32) "none")  ;; 4 bytes

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

  (func (export "gn_handle_hook") (param $name i32) (param $name_len i32) (param $payload i32)
                                  (param $payload_len i32) (result i64)
    (local $i i32) (local $mark i32) (local $result i64)
    ;; "none": no host call
    (if (i32.and (i32.eq (local.get $name_len) (i32.const 4))
                 (i32.eq (i32.load (local.get $name)) (i32.load (i32.const 32))))
      (then (return (i64.const 0))))
    (local.set $mark (global.get $heap))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const 100)))
      (local.set $result (call $gn_host_call (local.get $name) (local.get $name_len) (i32.const 16) (i32.const 2)))
      (global.set $heap (local.get $mark))
      ;; a negative status has ptr 0: the guest error
      (if (i64.eqz (i64.shr_u (local.get $result) (i64.const 32))) (then (return (i64.const 0xffffffff))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.const 0))
)

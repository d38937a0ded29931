;; A guest written from ABI.md alone, for the preview tests (tests/test_preview.py): on every hook call
;; it calls kv.incr {"key":"views"}, kv.get {"key":"views"}, jobs.enqueue {"job":"ping"} and
;; http.fetch {"url":"https://example.com/"} in that order, and logs each result's JSON at info
;; level (or "refused" at warning level for a negative status), so a test reads in the log what each
;; host function answered. An action (the page's wp_head) answers a meta tag the host renders:
;; <meta name="gn-preview" content="on">; a filter answers no body (value unchanged).
(module
  (import "env" "gn_host_call" (func $hc (param i32 i32 i32 i32) (result i64)))
  (import "env" "gn_log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))

  (data (i32.const 16) "kv.incr")                          ;; 7
  (data (i32.const 32) "{\"key\":\"views\"}")              ;; 15
  (data (i32.const 64) "kv.get")                           ;; 6
  (data (i32.const 80) "jobs.enqueue")                     ;; 12
  (data (i32.const 96) "{\"job\":\"ping\"}")               ;; 14
  (data (i32.const 128) "http.fetch")                      ;; 10
  (data (i32.const 144) "{\"url\":\"https://example.com/\"}") ;; 30
  (data (i32.const 192) "refused")                         ;; 7
  (data (i32.const 208) "{\"meta\":[{\"name\":\"gn-preview\",\"content\":\"on\"}]}") ;; 47

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

  (func $call_and_log (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32)
    (local $r i64) (local $len i32)
    (local.set $r (call $hc (local.get $np) (local.get $nl) (local.get $pp) (local.get $pl)))
    (local.set $len (i32.wrap_i64 (local.get $r)))
    (if (i32.gt_s (local.get $len) (i32.const 0))
      (then (call $log (i32.const 1) (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))) (local.get $len)))
      (else (call $log (i32.const 2) (i32.const 192) (i32.const 7)))))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (call $call_and_log (i32.const 16) (i32.const 7) (i32.const 32) (i32.const 15))
    (call $call_and_log (i32.const 64) (i32.const 6) (i32.const 32) (i32.const 15))
    (call $call_and_log (i32.const 80) (i32.const 12) (i32.const 96) (i32.const 14))
    (call $call_and_log (i32.const 128) (i32.const 10) (i32.const 144) (i32.const 30))
    ;; {"kind":"action"...: byte 9 is 'a' (97) for an action
    (if (result i64) (i32.and (i32.gt_u (local.get $pl) (i32.const 9))
                              (i32.eq (i32.load8_u (i32.add (local.get $pp) (i32.const 9))) (i32.const 97)))
      (then (i64.or (i64.shl (i64.const 208) (i64.const 32)) (i64.const 47)))
      (else (i64.const 0))))

  (func (export "gn_handle_job") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (i64.const 0))
)

;; A guest written from ABI.md alone that loops over slow host calls: any hook makes 20
;; gn_host_call("http.fetch", {"url": "http://127.0.0.1:PORT/slow?s=5"}) calls, whatever each one
;; returns (the loop unrolled), then answers with no body. The test writes the server's port, zero-padded to five
;; digits, over the "00000" below before compiling. Issue #13: without a budget shared by the host
;; calls, each fetch got its own timeout and the loop held the request for 20 of them.
(module
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))

  (data (i32.const 16) "http.fetch")                                    ;; 10 bytes
  (data (i32.const 64) "{\"url\":\"http://127.0.0.1:00000/slow?s=5\"}")  ;; 41 bytes

  (func (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536))
      (then (local.set $p (i32.const 4096))))  ;; wrap: results are never read back
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func (export "gn_free") (param i32 i32))

  ;; The loop over 20 fetches, unrolled as compilers emit a fixed-count loop: no loop header and
  ;; no function entry between the calls, so the epoch deadline is never checked in wasm while the
  ;; failing fetches (which return without calling gn_alloc) run one after another.
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64)
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (drop (call $gn_host_call (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 41)))
    (i64.const 0)))

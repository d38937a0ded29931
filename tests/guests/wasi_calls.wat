;; Calls the WASI functions that have a meaning, one case per hook name (its first letter), and
;; returns what it saw as a JSON array of unsigned decimals: [errno, values...]. Written from ABI.md
;; and the preview-1 witx alone.
;;
;; Memory: 0..255 scratch for results and iovecs, 256.. constant strings, 2048.. the JSON body,
;; 4096.. a bump heap for gn_alloc.
(module
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "hello\nwor")   ;; 9 bytes
  (data (i32.const 272) "ld\n")         ;; 3 bytes
  (data (i32.const 288) "partial")      ;; 7 bytes, no newline
  (global $heap (mut i32) (i32.const 4096))
  (global $pos (mut i32) (i32.const 2048))

  (func $gn_alloc (export "gn_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "gn_free") (param i32 i32))

  ;; Append the unsigned decimal of $v and a comma to the body.
  (func $num (param $v i64)
    (local $start i32) (local $end i32) (local $t i32)
    (local.set $start (global.get $pos))
    (loop $digits
      (i32.store8 (global.get $pos)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $v) (i64.const 0))))
    ;; the digits came out least significant first: reverse them in place
    (local.set $end (i32.sub (global.get $pos) (i32.const 1)))
    (block $done
      (loop $swap
        (br_if $done (i32.ge_u (local.get $start) (local.get $end)))
        (local.set $t (i32.load8_u (local.get $start)))
        (i32.store8 (local.get $start) (i32.load8_u (local.get $end)))
        (i32.store8 (local.get $end) (local.get $t))
        (local.set $start (i32.add (local.get $start) (i32.const 1)))
        (local.set $end (i32.sub (local.get $end) (i32.const 1)))
        (br $swap)))
    (i32.store8 (global.get $pos) (i32.const 44))
    (global.set $pos (i32.add (global.get $pos) (i32.const 1))))
  (func $n32 (param $v i32) (call $num (i64.extend_i32_u (local.get $v))))

  ;; iovecs at 32: [256, 9] [272, 3]
  (func $two_iovecs
    (i32.store (i32.const 32) (i32.const 256)) (i32.store (i32.const 36) (i32.const 9))
    (i32.store (i32.const 40) (i32.const 272)) (i32.store (i32.const 44) (i32.const 3)))

  (func $case (param $c i32)
    ;; a: args_sizes_get writes two zeros over 99s
    (if (i32.eq (local.get $c) (i32.const 97)) (then
      (i32.store (i32.const 0) (i32.const 99)) (i32.store (i32.const 4) (i32.const 99))
      (call $n32 (call $args_sizes_get (i32.const 0) (i32.const 4)))
      (call $n32 (i32.load (i32.const 0))) (call $n32 (i32.load (i32.const 4)))))
    ;; b: environ_sizes_get likewise
    (if (i32.eq (local.get $c) (i32.const 98)) (then
      (i32.store (i32.const 0) (i32.const 99)) (i32.store (i32.const 4) (i32.const 99))
      (call $n32 (call $environ_sizes_get (i32.const 0) (i32.const 4)))
      (call $n32 (i32.load (i32.const 0))) (call $n32 (i32.load (i32.const 4)))))
    ;; c: realtime clock
    (if (i32.eq (local.get $c) (i32.const 99)) (then
      (call $n32 (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 8)))
      (call $num (i64.load (i32.const 8)))))
    ;; d: monotonic clock, read twice
    (if (i32.eq (local.get $c) (i32.const 100)) (then
      (call $n32 (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 8)))
      (call $num (i64.load (i32.const 8)))
      (call $n32 (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 16)))
      (call $num (i64.load (i32.const 16)))))
    ;; e: the process CPU-time clock is not offered
    (if (i32.eq (local.get $c) (i32.const 101)) (then
      (call $n32 (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 8)))
      (call $n32 (call $clock_res_get (i32.const 3) (i32.const 8)))))
    ;; f: clock resolutions
    (if (i32.eq (local.get $c) (i32.const 102)) (then
      (call $n32 (call $clock_res_get (i32.const 0) (i32.const 8)))
      (call $num (i64.load (i32.const 8)))
      (call $n32 (call $clock_res_get (i32.const 1) (i32.const 8)))
      (call $num (i64.load (i32.const 8)))))
    ;; g: 32 random bytes at 64, shown as four u64s
    (if (i32.eq (local.get $c) (i32.const 103)) (then
      (call $n32 (call $random_get (i32.const 64) (i32.const 32)))
      (call $num (i64.load (i32.const 64))) (call $num (i64.load (i32.const 72)))
      (call $num (i64.load (i32.const 80))) (call $num (i64.load (i32.const 88)))))
    ;; h: random_get past the end of memory, and one with a huge length
    (if (i32.eq (local.get $c) (i32.const 104)) (then
      (call $n32 (call $random_get (i32.const 65530) (i32.const 100)))
      (call $n32 (call $random_get (i32.const 0) (i32.const -1)))))
    ;; i: stdout, two iovecs: "hello\nwor" + "ld\n"; nwritten at 48
    (if (i32.eq (local.get $c) (i32.const 105)) (then
      (call $two_iovecs)
      (call $n32 (call $fd_write (i32.const 1) (i32.const 32) (i32.const 2) (i32.const 48)))
      (call $n32 (i32.load (i32.const 48)))))
    ;; j: stderr
    (if (i32.eq (local.get $c) (i32.const 106)) (then
      (call $two_iovecs)
      (call $n32 (call $fd_write (i32.const 2) (i32.const 32) (i32.const 2) (i32.const 48)))
      (call $n32 (i32.load (i32.const 48)))))
    ;; k: any other fd
    (if (i32.eq (local.get $c) (i32.const 107)) (then
      (call $two_iovecs)
      (call $n32 (call $fd_write (i32.const 3) (i32.const 32) (i32.const 2) (i32.const 48)))
      (call $n32 (call $fd_write (i32.const 0) (i32.const 32) (i32.const 2) (i32.const 48)))))
    ;; l: the iovec array itself outside memory; nwritten outside memory
    (if (i32.eq (local.get $c) (i32.const 108)) (then
      (call $two_iovecs)
      (call $n32 (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 2) (i32.const 48)))
      (call $n32 (call $fd_write (i32.const 1) (i32.const 32) (i32.const 2) (i32.const 65534)))))
    ;; m: the second iovec's bytes run past the end of memory (nothing at all is logged)
    (if (i32.eq (local.get $c) (i32.const 109)) (then
      (call $two_iovecs)
      (i32.store (i32.const 40) (i32.const 65000)) (i32.store (i32.const 44) (i32.const 1000))
      (call $n32 (call $fd_write (i32.const 1) (i32.const 32) (i32.const 2) (i32.const 48)))
      (i32.store (i32.const 40) (i32.const -8)) (i32.store (i32.const 44) (i32.const 16))
      (call $n32 (call $fd_write (i32.const 1) (i32.const 32) (i32.const 2) (i32.const 48)))))
    ;; n: too many iovecs
    (if (i32.eq (local.get $c) (i32.const 110)) (then
      (call $n32 (call $fd_write (i32.const 1) (i32.const 0) (i32.const 5000) (i32.const 48)))
      (call $n32 (call $fd_write (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 48)))))
    ;; o: fdstat of stdout and stdin: filetype (2 = character device) and rights
    (if (i32.eq (local.get $c) (i32.const 111)) (then
      (call $n32 (call $fd_fdstat_get (i32.const 1) (i32.const 64)))
      (call $n32 (i32.load8_u (i32.const 64))) (call $num (i64.load (i32.const 72)))
      (call $n32 (call $fd_fdstat_get (i32.const 0) (i32.const 64)))
      (call $n32 (i32.load8_u (i32.const 64)))))
    ;; p: fdstat of a fd that does not exist, and of stdout into a pointer outside memory
    (if (i32.eq (local.get $c) (i32.const 112)) (then
      (call $n32 (call $fd_fdstat_get (i32.const 5) (i32.const 64)))
      (call $n32 (call $fd_fdstat_get (i32.const 1) (i32.const 65530)))))
    ;; q: fd_close, fd_seek, fd_read on the standard fds
    (if (i32.eq (local.get $c) (i32.const 113)) (then
      (call $n32 (call $fd_close (i32.const 1)))
      (call $n32 (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 64)))
      (call $two_iovecs)
      (call $n32 (call $fd_read (i32.const 0) (i32.const 32) (i32.const 2) (i32.const 48)))))
    ;; r: no preopened directory
    (if (i32.eq (local.get $c) (i32.const 114)) (then
      (call $n32 (call $fd_prestat_get (i32.const 3) (i32.const 64)))))
    ;; s: files, polling and sockets do nothing
    (if (i32.eq (local.get $c) (i32.const 115)) (then
      (call $n32 (call $path_open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 5) (i32.const 0)
                                  (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 64)))
      (call $n32 (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 48)))
      (call $n32 (call $sock_send (i32.const 3) (i32.const 32) (i32.const 1) (i32.const 0) (i32.const 48)))))
    ;; t: sched_yield, args_get, environ_get
    (if (i32.eq (local.get $c) (i32.const 116)) (then
      (call $n32 (call $sched_yield))
      (call $n32 (call $args_get (i32.const 0) (i32.const 0)))
      (call $n32 (call $environ_get (i32.const 0) (i32.const 0)))))
    ;; u: proc_exit(0); v: proc_exit(7)
    (if (i32.eq (local.get $c) (i32.const 117)) (then (call $proc_exit (i32.const 0))))
    (if (i32.eq (local.get $c) (i32.const 118)) (then (call $proc_exit (i32.const 7))))
    ;; w: a clock result pointer outside memory
    (if (i32.eq (local.get $c) (i32.const 119)) (then
      (call $n32 (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 65532)))))
    ;; y: stdout without a final newline: logged when the call ends
    (if (i32.eq (local.get $c) (i32.const 121)) (then
      (i32.store (i32.const 32) (i32.const 288)) (i32.store (i32.const 36) (i32.const 7))
      (call $n32 (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48))))))

  (func (export "gn_handle_hook") (param $name i32) (param $name_len i32) (param i32 i32) (result i64)
    (global.set $pos (i32.const 2048))
    (i32.store8 (global.get $pos) (i32.const 91))  ;; [
    (global.set $pos (i32.const 2049))
    (call $case (i32.load8_u (local.get $name)))
    (global.set $pos (i32.sub (global.get $pos) (i32.const 1)))
    (i32.store8 (global.get $pos) (i32.const 93))  ;; ] over the last comma
    (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
    (i64.or (i64.shl (i64.const 2048) (i64.const 32))
            (i64.extend_i32_u (i32.sub (global.get $pos) (i32.const 2048))))))

;; A guest for the background-job tests, written from ABI.md alone (job envelope, gn_handle_job).
;;
;; It finds the job's id (the idempotency key) in the envelope {"kind":"job","job":...,"id":"...",...}
;; and answers by job name:
;;   echo    logs "ran <id>" and returns the whole envelope as its body (so the host records the
;;           id and payload the guest saw);
;;   whoami  returns {"v":"v1"} (the tests rewrite v1 to build a second version of this guest);
;;   flaky   kv.get <id>: not found -> kv.set <id> = 1, then traps (the first attempt fails after
;;           leaving a mark); found -> logs "ran <id>" and returns {"ok":true} (the retry, which
;;           carries the same id, succeeds);
;;   stall   like flaky, but the first attempt spins forever instead of trapping (until its hard
;;           deadline, or until the cluster test kills its worker with SIGKILL);
;;   fail    returns the guest error status (-1);
;;   trap    always traps;
;;   other   -4 (unknown job). Hooks: -4.
(module
  (import "env" "gn_log" (func $gn_log (param i32 i32 i32)))
  (import "env" "gn_host_call" (func $gn_host_call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 16) "\"id\":\"")        ;; 6 bytes
  (data (i32.const 32) "{\"key\":\"")      ;; 8 bytes
  (data (i32.const 48) "\",\"value\":1}")  ;; 12 bytes
  (data (i32.const 64) "\"}")              ;; 2 bytes
  (data (i32.const 72) "ran ")             ;; 4 bytes
  (data (i32.const 80) "kv.get")           ;; 6 bytes
  (data (i32.const 88) "kv.set")           ;; 6 bytes
  (data (i32.const 96) "echo")             ;; 4 bytes
  (data (i32.const 104) "flaky")           ;; 5 bytes
  (data (i32.const 112) "fail")            ;; 4 bytes
  (data (i32.const 120) "trap")            ;; 4 bytes
  (data (i32.const 128) "whoami")          ;; 6 bytes
  (data (i32.const 144) "{\"v\":\"v1\"}")  ;; 10 bytes
  (data (i32.const 160) "{\"ok\":true}")   ;; 11 bytes
  (data (i32.const 176) "stall")           ;; 5 bytes

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

  (func $is (param $np i32) (param $nl i32) (param $lit i32) (param $len i32) (result i32)
    (if (i32.ne (local.get $nl) (local.get $len)) (then (return (i32.const 0))))
    (call $eq (local.get $np) (local.get $lit) (local.get $len)))

  ;; a copy of [src, src+len) in a fresh block, returned as a packed body
  (func $body (param $src i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (local.get $len)))
    (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
    (memory.copy (local.get $out) (local.get $src) (local.get $len))
    (call $pack (local.get $out) (local.get $len)))

  ;; $a (alen bytes) + the id + $b (blen bytes) in a fresh block; returns its address (0: no memory)
  (func $wrap (param $a i32) (param $alen i32) (param $idp i32) (param $idl i32) (param $b i32) (param $blen i32)
              (result i32)
    (local $out i32)
    (local.set $out (call $alloc (i32.add (i32.add (local.get $alen) (local.get $idl)) (local.get $blen))))
    (if (i32.eqz (local.get $out)) (then (return (i32.const 0))))
    (memory.copy (local.get $out) (local.get $a) (local.get $alen))
    (memory.copy (i32.add (local.get $out) (local.get $alen)) (local.get $idp) (local.get $idl))
    (memory.copy (i32.add (local.get $out) (i32.add (local.get $alen) (local.get $idl))) (local.get $b)
                 (local.get $blen))
    (local.get $out))

  (func $log_ran (param $idp i32) (param $idl i32)
    (local $buf i32)
    (local.set $buf (call $wrap (i32.const 72) (i32.const 4) (local.get $idp) (local.get $idl)
                                (i32.const 0) (i32.const 0)))
    (if (local.get $buf)
      (then (call $gn_log (i32.const 1) (local.get $buf) (i32.add (local.get $idl) (i32.const 4))))))

  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64)
    (call $pack (i32.const 0) (i32.const -4)))

  (func (export "gn_handle_job") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $i i32) (local $end i32) (local $idp i32) (local $idl i32) (local $buf i32) (local $r i64)
    (local $rlen i32) (local $rptr i32)
    ;; everything this call needs lies below max(name end, payload end): restart the heap there
    (local.set $end (i32.add (local.get $pp) (local.get $pl)))
    (if (i32.gt_u (i32.add (local.get $np) (local.get $nl)) (local.get $end))
      (then (local.set $end (i32.add (local.get $np) (local.get $nl)))))
    (if (i32.lt_u (local.get $end) (i32.const 1024)) (then (local.set $end (i32.const 1024))))
    (global.set $heap (local.get $end))
    ;; the id: the first "id":"...", which the envelope puts before the payload
    (local.set $end (i32.add (local.get $pp) (local.get $pl)))
    (local.set $idp (i32.const -1))
    (block $found (loop $scan
      (br_if $found (i32.gt_u (i32.add (local.get $i) (i32.const 6)) (local.get $pl)))
      (if (call $eq (i32.add (local.get $pp) (local.get $i)) (i32.const 16) (i32.const 6))
        (then (local.set $idp (i32.add (local.get $pp) (i32.add (local.get $i) (i32.const 6)))) (br $found)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (if (i32.lt_s (local.get $idp) (i32.const 0)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
    (local.set $i (local.get $idp))
    (block $closed (loop $l
      (if (i32.ge_u (local.get $i) (local.get $end)) (then (return (call $pack (i32.const 0) (i32.const -3)))))
      (br_if $closed (i32.eq (i32.load8_u (local.get $i)) (i32.const 34)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.set $idl (i32.sub (local.get $i) (local.get $idp)))

    (if (call $is (local.get $np) (local.get $nl) (i32.const 96) (i32.const 4))  ;; echo
      (then
        (call $log_ran (local.get $idp) (local.get $idl))
        (return (call $body (local.get $pp) (local.get $pl)))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 128) (i32.const 6))  ;; whoami
      (then (return (call $body (i32.const 144) (i32.const 10)))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 112) (i32.const 4))  ;; fail
      (then (return (call $pack (i32.const 0) (i32.const -1)))))
    (if (call $is (local.get $np) (local.get $nl) (i32.const 120) (i32.const 4))  ;; trap
      (then unreachable))
    (if (i32.or (call $is (local.get $np) (local.get $nl) (i32.const 104) (i32.const 5))   ;; flaky
                (call $is (local.get $np) (local.get $nl) (i32.const 176) (i32.const 5)))  ;; stall
      (then
        ;; kv.get {"key":"<id>"}
        (local.set $buf (call $wrap (i32.const 32) (i32.const 8) (local.get $idp) (local.get $idl)
                                    (i32.const 64) (i32.const 2)))
        (if (i32.eqz (local.get $buf)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
        (local.set $r (call $gn_host_call (i32.const 80) (i32.const 6) (local.get $buf)
                                          (i32.add (local.get $idl) (i32.const 10))))
        (local.set $rlen (i32.wrap_i64 (local.get $r)))
        (local.set $rptr (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
        (if (i32.lt_s (local.get $rlen) (i32.const 10)) (then (return (call $pack (i32.const 0) (i32.const -1)))))
        ;; {"found":true,... : byte 9 is 't' when this id was seen before
        (if (i32.eq (i32.load8_u (i32.add (local.get $rptr) (i32.const 9))) (i32.const 116))
          (then
            (call $log_ran (local.get $idp) (local.get $idl))
            (return (call $body (i32.const 160) (i32.const 11)))))
        ;; first attempt: kv.set {"key":"<id>","value":1}, then trap
        (local.set $buf (call $wrap (i32.const 32) (i32.const 8) (local.get $idp) (local.get $idl)
                                    (i32.const 48) (i32.const 12)))
        (if (i32.eqz (local.get $buf)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
        (local.set $r (call $gn_host_call (i32.const 88) (i32.const 6) (local.get $buf)
                                          (i32.add (local.get $idl) (i32.const 20))))
        (if (i32.lt_s (i32.wrap_i64 (local.get $r)) (i32.const 0))
          (then (return (call $pack (i32.const 0) (i32.const -1)))))
        (if (call $is (local.get $np) (local.get $nl) (i32.const 176) (i32.const 5))
          (then (loop $spin (br $spin))))
        unreachable))
    (call $pack (i32.const 0) (i32.const -4)))
)

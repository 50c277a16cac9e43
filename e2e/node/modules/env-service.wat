;; A long-running WASI preview 1 service for the end-to-end node: it prints a greeting and its
;; whole environment (one NAME=value per line, which is how the suite sees OTEL_SERVICE_NAME and
;; the pod and node names the webhook injects), then sleeps one second at a time for ever,
;; printing a heartbeat every minute.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  ;; 0..16: iovec; 16..20: written; 20..24: count; 24..28: size; 32..48: "\n";
  ;; 64..112: the sleep subscription; 128..160: its event; 256..: greeting;
  ;; 4096..: the pointer table; 32768..: the environment strings.
  (memory (export "memory") 2)
  (data (i32.const 32) "\n")
  (data (i32.const 256) "wasm-admission env-service: started under WASI\n")
  (data (i32.const 320) "wasm-admission env-service: alive\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func $sleep_one_second
    ;; subscription: userdata (8), tag 0 = clock (1 + pad 7), clock id 1 = monotonic (4 + pad 4),
    ;; timeout ns (8), precision (8), flags 0 = relative (2)
    (i64.store (i32.const 64) (i64.const 1))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 1000000000))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 160))))
  (func (export "_start")
    (local $i i32) (local $p i32) (local $ticks i32)
    (call $write (i32.const 256) (i32.const 47))
    (drop (call $environ_sizes_get (i32.const 20) (i32.const 24)))
    (drop (call $environ_get (i32.const 4096) (i32.const 32768)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 20))))
        (local.set $p (i32.load (i32.add (i32.const 4096) (i32.mul (local.get $i) (i32.const 4)))))
        (call $write (local.get $p) (call $strlen (local.get $p)))
        (call $write (i32.const 32) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (loop $forever
      (call $sleep_one_second)
      (local.set $ticks (i32.add (local.get $ticks) (i32.const 1)))
      (if (i32.eqz (i32.rem_u (local.get $ticks) (i32.const 60)))
        (then (call $write (i32.const 320) (i32.const 34))))
      (br $forever))))

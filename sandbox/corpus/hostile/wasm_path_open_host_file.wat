;; expect: ok|error
;; absent: root:x:0
(module
  (import "wasi_snapshot_preview1" "path_open" (func $po (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $rd (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "/etc/passwd")
  (func (export "_start") (local $fd i32)
    (loop $try
      (drop (call $po (local.get $fd) (i32.const 0) (i32.const 100) (i32.const 11) (i32.const 0)
                      (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 200)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $try (i32.lt_u (local.get $fd) (i32.const 16))))
    (i32.store (i32.const 300) (i32.const 400)) (i32.store (i32.const 304) (i32.const 1000))
    (drop (call $rd (i32.load (i32.const 200)) (i32.const 300) (i32.const 1) (i32.const 308)))
    (i32.store (i32.const 304) (i32.load (i32.const 308)))
    (drop (call $w (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))))

;; expect: ok
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $a (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $s (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $a (i32.const 3) (i32.const 0) (i32.const 0)))
    (drop (call $s (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))

;; A WASI command: prints a line. Run it with
;;   stackmind sandbox run --wasm sandbox/examples/hello.wat
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from the sandbox\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))  ;; iovec: pointer
    (i32.store (i32.const 4) (i32.const 23))  ;; iovec: length
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))

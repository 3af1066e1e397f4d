;; expect: invalid
(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32) (result i32))) (func (export "_start")))

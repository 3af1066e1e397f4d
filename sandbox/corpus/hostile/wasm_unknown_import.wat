;; expect: invalid
(module (import "env" "system" (func $sys (param i32) (result i32))) (func (export "_start") (drop (call $sys (i32.const 0)))))

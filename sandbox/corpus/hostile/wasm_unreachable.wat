;; expect: error
(module (func (export "_start") unreachable))

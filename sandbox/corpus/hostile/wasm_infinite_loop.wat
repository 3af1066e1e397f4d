;; expect: timeout|out_of_fuel
(module (func (export "_start") (loop $l (br $l))))

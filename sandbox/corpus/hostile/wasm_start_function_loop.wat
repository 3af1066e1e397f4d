;; expect: timeout|out_of_fuel
(module (func $s (loop $l (br $l))) (start $s))

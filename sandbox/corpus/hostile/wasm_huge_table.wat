;; expect: memory|invalid|error
(module (table 1000000000 funcref))

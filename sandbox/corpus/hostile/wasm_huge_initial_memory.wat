;; expect: memory
(module (memory 60000))

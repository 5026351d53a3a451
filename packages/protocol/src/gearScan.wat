;; The gear hash's inner loop (see gear.ts), in WebAssembly: about three
;; times the speed of the same loop in JavaScript. gear.ts holds this module
;; assembled; test/gear.test.ts assembles this text again and checks that the
;; two are the same.
;;
;; Memory: the 256 gear values (i32, little-endian) at 0, the bytes to roll
;; over from 1024 on.
(module
  (memory (export "memory") 5)
  ;; The hash after the last byte rolled, read by the caller.
  (global (export "h") (mut i32) (i32.const 0))
  ;; Rolls the hash `h` over the bytes at [$at, $end), stopping after the first
  ;; byte where (hash & mask) is 0 (a cut point). Answers where it stopped.
  (func (export "roll") (param $at i32) (param $end i32) (param $h i32) (param $mask i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
                               (i32.load (i32.shl (i32.load8_u (local.get $at)) (i32.const 2)))))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br_if $next (i32.and (local.get $h) (local.get $mask)))))
    (global.set 0 (local.get $h))
    (local.get $at)))

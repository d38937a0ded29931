;; A hostile plugin written from ABI.md alone, for tests/security/test_plugin_markup*.py: each hook
;; name it knows answers one fixed body (the JSON in the data segments below): script, on* handlers,
;; javascript:/data: URLs, <base>, meta refresh, a stylesheet, iframe/object/embed/form, and
;; structured title/meta/link/jsonld values that try to break out of their escaping; plus malformed
;; structured outputs. A filter's body replaces the value. An unknown hook name answers -4.
;; The table at 1024 holds 7 entries of (name_ptr, name_len, body_ptr, body_len), little-endian.
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 1024) "\00\10\00\00\07\00\00\00\0f\10\00\00\c5\02\00\00")
  (data (i32.const 1040) "\dc\12\00\00\0b\00\00\00\ef\12\00\00\a0\03\00\00")
  (data (i32.const 1056) "\97\16\00\00\0c\00\00\00\ab\16\00\00\33\00\00\00")
  (data (i32.const 1072) "\e6\16\00\00\08\00\00\00\f6\16\00\00\48\00\00\00")
  (data (i32.const 1088) "\46\17\00\00\0c\00\00\00\5a\17\00\00\37\00\00\00")
  (data (i32.const 1104) "\99\17\00\00\0d\00\00\00\ae\17\00\00\4b\00\00\00")
  (data (i32.const 1120) "\01\18\00\00\08\00\00\00\11\18\00\00\0b\00\00\00")
  (data (i32.const 4096) "wp_head")
;; wp_head
  (data (i32.const 4111) "{\22html\22: \22<script>fetch('/__xss/head-script');window.__xss='head-script'</script>\5cn<base href=\5c\22http://127.0.0.1:9/\5c\22>\5cn<meta http-equiv=\5c\22refresh\5c\22 content=\5c\220;url=/__xss/refresh\5c\22>\5cn<link rel=\5c\22stylesheet\5c\22 href=\5c\22/__xss/css\5c\22>\5cn<style>@import url('/__xss/style');</style>\5cn<img src=\5c\22data:,\5c\22 onerror=\5c\22fetch('/__xss/head-onerror')\5c\22>\22, \22title\22: \22</title><script>fetch('/__xss/title')</script>\22, \22meta\22: [{\22name\22: \22description\22, \22content\22: \22\5c\22><script>fetch('/__xss/meta')</script>\22}, {\22property\22: \22og:title\22, \22content\22: \22x' onfocus='fetch(1)\22}], \22link\22: [{\22rel\22: \22canonical\22, \22href\22: \22/ok\5c\22onload=\5c\22fetch('/__xss/link')\5c\22\22}], \22jsonld\22: {\22headline\22: \22</script><script>fetch('/__xss/jsonld')</script><!--\22}}")
  (data (i32.const 4828) "the_content")
;; the_content
  (data (i32.const 4847) "{\22value\22: \22<p class=\5c\22lead\5c\22>Plugin text survives</p>\5cn<script>fetch('/__xss/content-script');window.__xss='content-script'</script>\5cn<img src=\5c\22data:,\5c\22 onerror=\5c\22fetch('/__xss/onerror')\5c\22 alt=\5c\22x\5c\22>\5cn<a href=\5c\22javascript:fetch('/__xss/javascript-url')\5c\22>xss-link</a>\5cn<a href=\5c\22 JaVaScRiPt:fetch('/__xss/javascript-mixed')\5c\22>xss-link</a>\5cn<a href=\5c\22data:text/html,<script>fetch('/__xss/data-url')</script>\5c\22>xss-link</a>\5cn<iframe srcdoc=\5c\22<script>parent.fetch('/__xss/iframe')</script>\5c\22></iframe>\5cn<svg><animate onbegin=\5c\22fetch('/__xss/svg')\5c\22 attributeName=\5c\22x\5c\22 dur=\5c\221s\5c\22></animate></svg>\5cn<form action=\5c\22/api/keys/\5c\22 method=\5c\22post\5c\22><button>xss-button</button></form>\5cn<object data=\5c\22data:text/html,<script>parent.fetch('/__xss/object')</script>\5c\22></object>\5cn<embed src=\5c\22data:text/html,<script>parent.fetch('/__xss/embed')</script>\5c\22>\5cn<details open ontoggle=\5c\22fetch('/__xss/ontoggle')\5c\22><summary>s</summary></details>\22}")
  (data (i32.const 5783) "plain_action")
;; plain_action
  (data (i32.const 5803) "\22<b>bold</b><script>fetch('/__xss/plain')</script>\22")
  (data (i32.const 5862) "bad_meta")
;; bad_meta
  (data (i32.const 5878) "{\22meta\22: [{\22http-equiv\22: \22refresh\22, \22content\22: \220;url=/__xss/refresh\22}]}")
  (data (i32.const 5958) "bad_link_rel")
;; bad_link_rel
  (data (i32.const 5978) "{\22link\22: [{\22rel\22: \22stylesheet\22, \22href\22: \22/__xss/css\22}]}")
  (data (i32.const 6041) "bad_link_href")
;; bad_link_href
  (data (i32.const 6062) "{\22link\22: [{\22rel\22: \22canonical\22, \22href\22: \22javascript:fetch('/__xss/link')\22}]}")
  (data (i32.const 6145) "bad_html")
;; bad_html
  (data (i32.const 6161) "{\22html\22: 5}")

  (func $pack (param $p i32) (param $l i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $l))))

  (func $alloc (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $need i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (local.set $need (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                                  (memory.size)))
        (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  ;; a stack-like bump allocator: freeing the newest block pops it, so a reused instance does not grow
  (func (export "gn_free") (param $p i32) (param $size i32)
    (if (i32.eq (i32.add (local.get $p) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $p)))))

  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i))))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 1))

  (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32) (result i64)
    (local $entry i32) (local $out i32) (local $len i32)
    (local.set $entry (i32.const 1024))
    (block $none (loop $next
      (br_if $none (i32.ge_u (local.get $entry) (i32.const 1136)))
      (if (i32.and (i32.eq (i32.load offset=4 (local.get $entry)) (local.get $nl))
                   (call $eq (i32.load (local.get $entry)) (local.get $np) (local.get $nl)))
        (then
          (local.set $len (i32.load offset=12 (local.get $entry)))
          (local.set $out (call $alloc (local.get $len)))
          (if (i32.eqz (local.get $out)) (then (return (call $pack (i32.const 0) (i32.const -2)))))
          (memory.copy (local.get $out) (i32.load offset=8 (local.get $entry)) (local.get $len))
          (return (call $pack (local.get $out) (local.get $len)))))
      (local.set $entry (i32.add (local.get $entry) (i32.const 16)))
      (br $next)))
    (call $pack (i32.const 0) (i32.const -4)))
)

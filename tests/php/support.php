<?php
// What the PHP FFI tests share: a failure counter, and taking the library's owned values.

$failures = 0;
function check(bool $ok, string $what): void {
    global $failures;
    if (!$ok) {
        fwrite(STDERR, "FAIL: $what\n");
        $failures++;
    }
}

/** Take an error object: null on success, else [code, family, message, hint] (and free it). */
function take_error(FFI $ffi, $err): ?array {
    if ($err === null) {
        return null;
    }
    $out = [$ffi->wz_error_code($err), $ffi->wz_error_family($err), $ffi->wz_error_message($err),
            $ffi->wz_error_hint($err)];
    $ffi->wz_error_free(FFI::addr($err));
    return $out;
}

/** Take an owned string out-parameter and free it. */
function take_string(FFI $ffi, $ptr): ?string {
    if (FFI::isNull($ptr)) {
        return null;
    }
    $text = FFI::string($ptr);
    $ffi->wz_string_free(FFI::addr($ptr));
    return $text;
}

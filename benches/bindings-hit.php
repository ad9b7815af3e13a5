<?php
// PHP FFI side of benches/bindings-hit.sh. usage: HEADER LIBRARY APP STATE RUNS LIST_FILES
// (LIST_FILES 0: the request says "list_files": false, for a backend that does not read the
// per-file list; it stays in the release's manifest.json.)
[$_, $header, $library, $app, $state, $runs, $listFiles] = $argv;
$ffi = FFI::cdef(file_get_contents($header), $library);
$engine = $ffi->new("wz_engine *");
$config = json_encode(["cache" => ["dir" => "$state/cache"], "storage" => ["artifactsDir" => "$state/artifacts"]]);
if ($ffi->wz_engine_new($config, FFI::addr($engine)) !== null) exit(1);
$request = json_encode(["source" => ["directory" => $app], "list_files" => $listFiles === "1"]);
$build = function () use ($ffi, $engine, $request) {
    $out = $ffi->new("char *");
    $err = $ffi->wz_engine_build($engine, $request, null, null, FFI::addr($out));
    if ($err !== null) { fwrite(STDERR, $ffi->wz_error_message($err) . "\n"); exit(1); }
    $result = json_decode(FFI::string($out), true);   // what the platform does with it
    $ffi->wz_string_free(FFI::addr($out));
    return $result;
};
$build();
// The cold build: the release was just published, so its files are younger than the stat cache trusts (2 s): wait that out, as a real rebuild would.
usleep(2500000);
$times = [];
for ($i = 0; $i < (int)$runs; $i++) {
    $start = hrtime(true);
    $result = $build();
    $times[] = (hrtime(true) - $start) / 1e6;
    if (!$result["cache"]["hit"]) exit(1);
}
sort($times);
printf("%.3f\n", $times[intdiv(count($times), 2)]);

<?php
// The platform's own way in: PHP FFI loads the committed header as it is and the real
// library, builds a fixture app, hits the cache, receives events through a PHP callback,
// and sees a failed build's error code and hint.
//
// usage: php -d ffi.enable=1 build_test.php HEADER LIBRARY SCRATCH_DIR APP_DIR

[$_, $header, $library, $scratch, $app] = $argv;
require __DIR__ . '/support.php';

$ffi = FFI::cdef(file_get_contents($header), $library);
check($ffi->wz_abi_version() === 1, "ABI version");
check(preg_match('/^\d+\.\d+\.\d+/', $ffi->wz_version()) === 1, "version string");

$config = json_encode(["cache" => ["dir" => "$scratch/cache"], "storage" => ["artifactsDir" => "$scratch/artifacts"]]);
$engine = $ffi->new("wz_engine *");
check(take_error($ffi, $ffi->wz_engine_new($config, FFI::addr($engine))) === null, "engine created");

$events = [];
$onEvent = function ($json, $userData) use (&$events) {
    $events[] = json_decode(is_string($json) ? $json : FFI::string($json), true);
};
$build = function (array $request) use ($ffi, $engine, $onEvent): array {
    $result = $ffi->new("char *");
    $err = take_error($ffi, $ffi->wz_engine_build($engine, json_encode($request), $onEvent, null, FFI::addr($result)));
    return [json_decode(take_string($ffi, $result) ?? "null", true), $err];
};

// A build, with its events delivered to the PHP callback on this thread.
[$result, $err] = $build(["source" => ["directory" => $app]]);
check($err === null, "first build succeeds: " . json_encode($err));
check($result["status"] === "succeeded" && $result["cache"]["hit"] === false, "first build is a miss");
check(is_file($result["artifacts"]["path"] . "/index.html"), "the release has index.html");
$types = array_column($events, "type");
check(count($events) > 5 && end($types) === "finished", "events end with finished: " . implode(",", $types));
check($events[0]["build_id"] === $result["build_id"], "events carry the build id");

// The same app again: a cache hit.
$events = [];
[$result, $err] = $build(["source" => ["directory" => $app]]);
check($err === null && $result["cache"]["hit"] === true, "second build hits the cache");
check(in_array("cache_hit", array_column($events, "type"), true), "a cache_hit event");
$paths = array_column($result["artifacts"]["files"], "path");
check(in_array("index.html", $paths, true), "the result lists the published files");

// A backend that does not read the file list asks for a lean result; the list stays in the
// release's manifest.json.
[$lean, $err] = $build(["source" => ["directory" => $app], "list_files" => false]);
check($err === null && $lean["cache"]["hit"] === true && $lean["artifacts"]["files"] === [], "lean result has no file list");
$manifest = json_decode(file_get_contents($lean["artifacts"]["path"] . "/manifest.json"), true);
check(count($manifest["files"]) === count($paths), "manifest.json still lists the files: " . json_encode(array_keys($manifest)));

// A failed build: the error code and hint, and the result still says why.
[$result, $err] = $build(["source" => ["files" => ["index.html" => "<h1>no config</h1>"]]]);
check($err !== null && $err[0] === "app_config_missing" && $err[1] === "config" && $err[3] !== null,
      "a failed build's error: " . json_encode($err));
check($result["status"] === "failed" && $result["error"]["code"] === "app_config_missing", "the failed result");
[$result, $err] = $build(["source" => ["files" => ["workz.json" => '{"name":"x","appType":"javascript"}',
                                                   "main.js" => "let = ;"]]]);
check($err !== null && $err[0] === "validation_failed" && str_contains($err[2], "main.js:1:"),
      "a syntax error names file and line: " . json_encode($err));

// Explain, cache statistics, invalidation.
$out = $ffi->new("char *");
check(take_error($ffi, $ffi->wz_engine_explain($engine, json_encode(["source" => ["directory" => $app]]),
                                               FFI::addr($out))) === null, "explain");
check(json_decode(take_string($ffi, $out), true)["would_hit"] === true, "explain: would hit");
$out = $ffi->new("char *");
check(take_error($ffi, $ffi->wz_engine_cache_stats($engine, FFI::addr($out))) === null, "cache stats");
check(count(json_decode(take_string($ffi, $out), true)["tiers"]) >= 1, "cache tiers");
$removed = $ffi->new("uint64_t");
check(take_error($ffi, $ffi->wz_engine_cache_invalidate($engine, "*", FFI::addr($removed))) === null, "invalidate");
check($removed->cdata >= 1, "invalidated entries");

// Bad input from PHP: errors with codes, never a crash.
$err = take_error($ffi, $ffi->wz_engine_build($engine, "{not json", null, null, FFI::addr($out)));
check($err !== null && $err[0] === "invalid_request", "bad request JSON");
$err = take_error($ffi, $ffi->wz_engine_build(null, "{}", null, null, FFI::addr($out)));
check($err !== null && $err[0] === "invalid_request", "NULL engine");
$bad = $ffi->new("wz_engine *");
$err = take_error($ffi, $ffi->wz_engine_new('{"cache": {"memory": {"maxBytes": -1}}}', FFI::addr($bad)));
check($err !== null && $err[0] === "config_invalid" && FFI::isNull($bad), "bad engine config");

$ffi->wz_engine_free(FFI::addr($engine));
check(FFI::isNull($engine), "engine freed and NULL written back");
if ($failures > 0) {
    fwrite(STDERR, "$failures check(s) failed\n");
    exit(1);
}
echo "PHP FFI: all checks passed\n";

<?php
// The platform's backend on a farm: PHP FFI with an engine config naming Redis submits builds
// with wz_engine_submit; a `workz-build worker` process (started by tests/c/run.sh) builds
// them. PHP still gets the build's events, its result (with the worker and why it was placed
// there) and a working cancel; an idempotency key makes a resubmission the same build.
//
// usage: php -d ffi.enable=1 farm_test.php HEADER LIBRARY ENGINE_CONFIG_JSON APP_DIR SLOW_APP_DIR

[$_, $header, $library, $config, $app, $slowApp] = $argv;
require __DIR__ . '/support.php';

$ffi = FFI::cdef(file_get_contents($header), $library);
$engine = $ffi->new("wz_engine *");
check(take_error($ffi, $ffi->wz_engine_new(file_get_contents($config), FFI::addr($engine))) === null, "farm engine created");

$events = [];
$onEvent = function ($json, $userData) use (&$events) {
    $events[] = json_decode(is_string($json) ? $json : FFI::string($json), true);
};
$submit = function (array $request) use ($ffi, $engine) {
    $build = $ffi->new("wz_build *");
    $err = take_error($ffi, $ffi->wz_engine_submit($engine, json_encode($request), FFI::addr($build)));
    check($err === null, "submitted: " . json_encode($err));
    return $build;
};
$wait = function ($build) use ($ffi, $onEvent): array {
    $result = $ffi->new("char *");
    $err = take_error($ffi, $ffi->wz_build_wait($build, $onEvent, null, FFI::addr($result)));
    return [json_decode(take_string($ffi, $result) ?? "null", true), $err];
};

// A build on the farm, its events delivered to PHP in order.
$build = $submit(["source" => ["directory" => $app]]);
[$result, $err] = $wait($build);
check($err === null && $result["status"] === "succeeded", "the farm built it: " . json_encode($result));
check($result["worker"] === "php-farm", "it ran on the worker: " . json_encode($result["worker"] ?? null));
check(isset($result["placement"]["scores"]["php-farm"]), "with its placement: " . json_encode($result["placement"] ?? null));
$types = array_column($events, "type");
check(end($types) === "finished" && count(array_keys($types, "finished")) === 1, "events end with one finished: " . implode(",", $types));
check(in_array("stage_started", $types, true), "stage events came back from the worker");
$seqs = array_column($events, "seq");
check($seqs === range(0, count($seqs) - 1), "events in order");
$ffi->wz_build_free(FFI::addr($build));

// Cancelled from PHP while it runs on the worker.
$events = [];
$build = $submit(["source" => ["directory" => $slowApp]]);
$finished = $ffi->new("bool");
$deadline = microtime(true) + 30;
do {
    take_error($ffi, $ffi->wz_build_poll($build, $onEvent, null, FFI::addr($finished)));
    usleep(50000);
} while (!in_array("process_started", array_column($events, "type"), true) && microtime(true) < $deadline);
check(in_array("process_started", array_column($events, "type"), true), "the slow hook started on the worker");
$started = microtime(true);
check(take_error($ffi, $ffi->wz_build_cancel($build)) === null, "cancel");
[$result, $err] = $wait($build);
check($result["status"] === "cancelled", "cancelled: " . json_encode($result["status"] ?? null));
check(microtime(true) - $started < 10, "within seconds, not the hook's 60");
$ffi->wz_build_free(FFI::addr($build));

// The same idempotency key twice: one build, one id.
$first = $submit(["source" => ["directory" => $app], "idempotencyKey" => "php-order-7", "force" => true]);
$again = $submit(["source" => ["directory" => $app], "idempotencyKey" => "php-order-7", "force" => true]);
check($ffi->wz_build_id($first) === $ffi->wz_build_id($again), "one id for one key");
[$one, $err] = $wait($first);
[$two, $err2] = $wait($again);
check($one["status"] === "succeeded" && $one === $two, "one result for both");
$ffi->wz_build_free(FFI::addr($first));
$ffi->wz_build_free(FFI::addr($again));

$ffi->wz_engine_free(FFI::addr($engine));
if ($failures > 0) {
    fwrite(STDERR, "$failures check(s) failed\n");
    exit(1);
}
echo "PHP FFI on the farm: all checks passed\n";

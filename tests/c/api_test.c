/*
 * The C ABI end to end, linked against the real libworkz_build: builds a fixture app, reads
 * its events, hits the cache, cancels a build, survives a panic inside the engine, frees an
 * engine while its build runs, and calls every function with NULL and bad input. Run by tests/c/run.sh, also under valgrind.
 *
 * usage: api_test SCRATCH_DIR FIXTURE_APP_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "workz_build.h"

static int failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Expect an error with this code, and free it. */
static void expect_code(wz_error *err, const char *code, const char *what) {
    CHECK(err != NULL, "%s: expected error %s, got success", what, code);
    if (err == NULL) return;
    CHECK(strcmp(wz_error_code(err), code) == 0, "%s: expected %s, got %s (%s)", what, code,
          wz_error_code(err), wz_error_message(err));
    CHECK(wz_error_message(err) != NULL && wz_error_family(err) != NULL, "%s: message and family", what);
    wz_error_free(&err);
    CHECK(err == NULL, "%s: wz_error_free writes NULL back", what);
}

static void expect_ok(wz_error *err, const char *what) {
    if (err != NULL) {
        CHECK(0, "%s: %s: %s", what, wz_error_code(err), wz_error_message(err));
        wz_error_free(&err);
    }
}

struct events {
    int count;
    int finished;
    int cache_hit;
    long last_seq;
    int in_order;
};

static void on_event(const char *event_json, void *user_data) {
    struct events *ev = user_data;
    ev->count++;
    if (strstr(event_json, "\"type\":\"finished\"")) ev->finished++;
    if (strstr(event_json, "\"type\":\"cache_hit\"")) ev->cache_hit++;
    const char *seq = strstr(event_json, "\"seq\":");
    if (seq) {
        long n = strtol(seq + 6, NULL, 10);
        if (n != ev->last_seq + 1) ev->in_order = 0;
        ev->last_seq = n;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SCRATCH_DIR FIXTURE_APP_DIR\n", argv[0]);
        return 2;
    }
    char config[4096], request[4096];
    snprintf(config, sizeof config,
             "{\"cache\": {\"dir\": \"%s/cache\"}, \"storage\": {\"artifactsDir\": \"%s/artifacts\"}}", argv[1],
             argv[1]);
    snprintf(request, sizeof request, "{\"source\": {\"directory\": \"%s\"}}", argv[2]);

    CHECK(wz_abi_version() == WZ_ABI_VERSION, "ABI version %u", wz_abi_version());
    CHECK(wz_version() != NULL && strlen(wz_version()) > 0, "version");

    wz_engine *engine = (wz_engine *)0x1; /* out-parameters are zeroed first */
    expect_code(wz_engine_new("{\"buildSystem\": {\"maxConcurrentBuilds\": \"four\"}}", &engine), "config_invalid",
                "bad config");
    CHECK(engine == NULL, "engine_out zeroed on error");
    expect_code(wz_engine_new("{", &engine), "config_parse_error", "config not JSON");
    expect_code(wz_engine_new("\xff\xfe", &engine), "invalid_request", "config not UTF-8");
    expect_code(wz_engine_new(NULL, NULL), "invalid_request", "NULL engine_out");
    expect_ok(wz_engine_new(config, &engine), "engine");
    if (engine == NULL) return 1;

    /* 1. Build with events, then hit the cache. */
    struct events ev = {0, 0, 0, -1, 1};
    char *result = NULL;
    expect_ok(wz_engine_build(engine, request, on_event, &ev, &result), "first build");
    CHECK(result != NULL && strstr(result, "\"status\":\"succeeded\""), "first result: %s", result);
    CHECK(ev.count > 5 && ev.finished == 1 && ev.in_order, "events: %d, finished %d, in order %d", ev.count,
          ev.finished, ev.in_order);
    wz_string_free(&result);
    CHECK(result == NULL, "wz_string_free writes NULL back");

    struct events ev2 = {0, 0, 0, -1, 1};
    expect_ok(wz_engine_build(engine, request, on_event, &ev2, &result), "second build");
    CHECK(result != NULL && strstr(result, "\"hit\":true"), "second build hits the cache: %s", result);
    CHECK(ev2.cache_hit == 1, "a cache_hit event");
    wz_string_free(&result);

    char *explanation = NULL;
    expect_ok(wz_engine_explain(engine, request, &explanation), "explain");
    CHECK(explanation != NULL && strstr(explanation, "\"would_hit\":true"), "explain: %s", explanation);
    wz_string_free(&explanation);

    /* 2. A failed build: the result is still written, and the error carries the code. */
    const char *broken = "{\"source\": {\"files\": {\"index.html\": \"x\"}}}";
    wz_error *err = wz_engine_build(engine, broken, NULL, NULL, &result);
    CHECK(result != NULL && strstr(result, "\"status\":\"failed\""), "failed result: %s", result);
    CHECK(err != NULL && wz_error_hint(err) != NULL, "the failure has a hint");
    expect_code(err, "app_config_missing", "build without workz.json");
    wz_string_free(&result);

    /* 3. Submit, poll, cancel a build that would run for a minute. */
    const char *slow =
        "{\"source\": {\"files\": {\"index.html\": \"x\"}}, \"app_config\": {\"name\": \"slow\", \"appType\": "
        "\"static\", \"hooks\": {\"preBuild\": [\"sleep 60\"]}}}";
    wz_build *build = NULL;
    expect_ok(wz_engine_submit(engine, slow, &build), "submit");
    CHECK(build != NULL && wz_build_id(build) != NULL && wz_build_id(build)[0] == 'b', "build id");
    struct events ev3 = {0, 0, 0, -1, 1};
    bool finished = true;
    double started = now();
    while (ev3.count < 4 && now() - started < 20) {
        expect_ok(wz_build_poll(build, on_event, &ev3, &finished), "poll");
        CHECK(!finished, "the slow build is not finished yet");
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    expect_ok(wz_build_cancel(build), "cancel");
    expect_code(wz_build_wait(build, on_event, &ev3, &result), "cancelled", "cancelled build");
    CHECK(now() - started < 15, "the cancelled build ended in %.1fs", now() - started);
    CHECK(result != NULL && strstr(result, "\"status\":\"cancelled\""), "cancelled result: %s", result);
    CHECK(ev3.finished == 1, "finished event of the cancelled build");
    wz_string_free(&result);
    expect_code(wz_build_wait(build, NULL, NULL, &result), "cancelled", "waiting again gives the same result");
    wz_string_free(&result);
    expect_ok(wz_build_poll(build, NULL, NULL, &finished), "poll after the end");
    CHECK(finished, "finished after the end");
    wz_build_free(&build);
    CHECK(build == NULL, "wz_build_free writes NULL back");

    /* 4. Cache operations. */
    char *stats = NULL;
    expect_ok(wz_engine_cache_stats(engine, &stats), "stats");
    CHECK(stats != NULL && strstr(stats, "\"tiers\""), "stats: %s", stats);
    wz_string_free(&stats);
    char *pruned = NULL;
    expect_ok(wz_engine_cache_prune(engine, &pruned), "prune");
    wz_string_free(&pruned);
    uint64_t removed = 99;
    expect_ok(wz_engine_cache_invalidate(engine, "workz-static-example/*", &removed), "invalidate");
    CHECK(removed >= 1, "invalidated %llu entries", (unsigned long long)removed);
    expect_code(wz_engine_cache_invalidate(engine, "[", &removed), "invalid_request", "bad pattern");

    /* 5. NULL and bad input everywhere: errors, never crashes. */
    expect_code(wz_engine_build(NULL, request, NULL, NULL, &result), "invalid_request", "build NULL engine");
    expect_code(wz_engine_build(engine, NULL, NULL, NULL, &result), "invalid_request", "build NULL request");
    expect_code(wz_engine_build(engine, request, NULL, NULL, NULL), "invalid_request", "build NULL out");
    expect_code(wz_engine_build(engine, "{\"source\": 5}", NULL, NULL, &result), "invalid_request", "bad request");
    expect_code(wz_engine_build(engine, "not json", NULL, NULL, &result), "invalid_request", "request not JSON");
    expect_code(wz_engine_build(engine, "\"\xc3\x28\"", NULL, NULL, &result), "invalid_request", "bad UTF-8");
    expect_code(wz_engine_build(engine, "{\"source\": {\"directory\": \"/nonexistent/x\"}}", NULL, NULL, &result),
                "source_not_found", "missing directory");
    wz_string_free(&result);
    expect_code(wz_engine_build(engine, "{\"source\": {\"files\": {\"../evil\": \"x\"}}}", NULL, NULL, &result),
                "source_path_invalid", "path escape");
    wz_string_free(&result);
    expect_code(wz_engine_submit(NULL, request, &build), "invalid_request", "submit NULL engine");
    expect_code(wz_engine_submit(engine, NULL, &build), "invalid_request", "submit NULL request");
    expect_code(wz_engine_submit(engine, request, NULL), "invalid_request", "submit NULL out");
    CHECK(wz_build_id(NULL) == NULL, "build id of NULL");
    expect_code(wz_build_poll(NULL, NULL, NULL, &finished), "invalid_request", "poll NULL build");
    expect_code(wz_build_wait(NULL, NULL, NULL, &result), "invalid_request", "wait NULL build");
    expect_code(wz_build_cancel(NULL), "invalid_request", "cancel NULL");
    expect_code(wz_engine_explain(NULL, request, &explanation), "invalid_request", "explain NULL engine");
    expect_code(wz_engine_explain(engine, "{}", &explanation), "invalid_request", "explain bad request");
    expect_code(wz_engine_explain(engine, request, NULL), "invalid_request", "explain NULL out");
    expect_code(wz_engine_cache_stats(NULL, &stats), "invalid_request", "stats NULL engine");
    expect_code(wz_engine_cache_stats(engine, NULL), "invalid_request", "stats NULL out");
    expect_code(wz_engine_cache_invalidate(engine, NULL, &removed), "invalid_request", "invalidate NULL pattern");
    expect_code(wz_engine_cache_invalidate(engine, "*", NULL), "invalid_request", "invalidate NULL out");
    expect_code(wz_engine_cache_prune(NULL, &pruned), "invalid_request", "prune NULL engine");
    CHECK(wz_error_code(NULL) == NULL && wz_error_message(NULL) == NULL && wz_error_hint(NULL) == NULL &&
              wz_error_family(NULL) == NULL,
          "error accessors of NULL");
    wz_error_free(NULL);
    wz_string_free(NULL);
    wz_build_free(NULL);
    wz_engine_free(NULL);
    wz_error *none = NULL;
    wz_error_free(&none);
    char *no_string = NULL;
    wz_string_free(&no_string);

    /* 6. A panic inside the engine is an "internal" error; the process lives on. */
    setenv("WORKZ_BUILD_TEST_PANIC_AT", "explain", 1);
    expect_code(wz_engine_explain(engine, request, &explanation), "internal", "panic in explain");
    setenv("WORKZ_BUILD_TEST_PANIC_AT", "build", 1);
    char forced[4200];
    snprintf(forced, sizeof forced, "{\"source\": {\"directory\": \"%s\"}, \"force\": true}", argv[2]);
    err = wz_engine_build(engine, forced, NULL, NULL, &result);
    CHECK(result != NULL && strstr(result, "panicked"), "panic result: %s", result);
    expect_code(err, "internal", "panic in the build stage");
    wz_string_free(&result);
    unsetenv("WORKZ_BUILD_TEST_PANIC_AT");
    expect_ok(wz_engine_build(engine, request, NULL, NULL, &result), "a build after the panics");
    wz_string_free(&result);

    /* 7. Freeing an engine while its build runs cancels the build; the handle still reports. */
    wz_engine *doomed = NULL;
    expect_ok(wz_engine_new(config, &doomed), "a second engine");
    expect_ok(wz_engine_submit(doomed, slow, &build), "submit on the engine to be freed");
    struct timespec settle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL);
    started = now();
    wz_engine_free(&doomed);
    expect_code(wz_build_wait(build, NULL, NULL, &result), "cancelled", "the build of a freed engine");
    CHECK(now() - started < 15, "ended %.1fs after the engine was freed", now() - started);
    wz_string_free(&result);
    wz_build_free(&build);

    wz_engine_free(&engine);
    CHECK(engine == NULL, "wz_engine_free writes NULL back");
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C API: all checks passed\n");
    return 0;
}

/* astgate.yaml: defaults, overrides, and errors that name file:line:col. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "config.h"

static char path[64];

static void write_config(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/astgate-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_embedded_default(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.upstream, "https://api.openai.com");
    assert_int_equal(cfg.nrules, 1);
    assert_string_equal(cfg.rules[0], "rules/mastra.yaml");
    assert_int_equal(cfg.block_status, 422);
    assert_true(cfg.bare);
    assert_int_equal(cfg.client_timeout_ms, 60000); /* silent clients do not hold connections */
    ag_config_dispose(&cfg);
}

static void test_file_overrides_and_relative_rules(void **state)
{
    write_config("listen: 127.0.0.1:0\nupstream: http://127.0.0.1:9/\n"
                 "rules: [a.yaml, /abs/b.yaml]\nlimits: {max_request_body: 100}\n"
                 "timeouts: {client_ms: 250}\n");
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.listen_port, 0);
    assert_string_equal(cfg.upstream, "http://127.0.0.1:9");
    assert_int_equal(cfg.nrules, 2);
    assert_string_equal(cfg.rules[0], "/tmp/a.yaml");
    assert_string_equal(cfg.rules[1], "/abs/b.yaml");
    assert_int_equal(cfg.max_request_body, 100);
    assert_int_equal(cfg.block_status, 422); /* untouched keys keep the default */
    assert_int_equal(cfg.client_timeout_ms, 250);
    assert_int_equal(cfg.upstream_timeout_ms, 600000);
    ag_config_dispose(&cfg);
    unlink(path);
}

static void expect_error(const char *text, unsigned line, unsigned col, const char *needle)
{
    write_config(text);
    ag_config_t cfg;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_EINVAL);
    assert_string_equal(d.file, path);
    if (d.line != line || d.col != col || strstr(d.msg, needle) == NULL)
        fail_msg("got %u:%u: %s; want %u:%u: ...%s...", d.line, d.col, d.msg, line, col, needle);
    unlink(path);
}

static void test_errors_name_the_place(void **state)
{
    expect_error("listen: 127.0.0.1:8080\nupstraem: http://x\n", 2, 1, "unknown key `upstraem`");
    expect_error("listen: nohost\n", 1, 9, "HOST:PORT");
    expect_error("upstream: ftp://x\n", 1, 11, "http:// or https://");
    expect_error("timeouts: {connect_ms: -1}\n", 1, 24, "whole number");
    expect_error("timeouts:\n  client_ms: soon\n", 2, 14, "whole number");
    expect_error("limits:\n  max_held: 1\n  max_body: 2\n", 3, 3, "unknown key `max_body`");
    expect_error("block_status: 200\n", 1, 15, "400-599");
    expect_error("listen: a:1\nlisten: b:2\n", 2, 1, "duplicate key");
    expect_error("rules: []\n", 1, 8, "non-empty list");
    expect_error("bare: maybe\n", 1, 7, "true or false");
}

static void test_missing_file(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load("/nonexistent/astgate.yaml", &cfg, &d), AG_EIO);
    assert_non_null(strstr(d.msg, "cannot read"));
}

static void test_overrides(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_int_equal(ag_config_set_listen(&cfg, "[::1]:9000", &d), AG_OK);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 9000);
    assert_int_equal(ag_config_set_listen(&cfg, "127.0.0.1:70000", &d), AG_EINVAL);
    assert_int_equal(ag_config_add_rules(&cfg, "x.yaml", true, &d), AG_OK);
    assert_int_equal(ag_config_add_rules(&cfg, "y.yaml", false, &d), AG_OK);
    assert_int_equal(cfg.nrules, 2);
    assert_string_equal(cfg.rules[0], "x.yaml");
    ag_config_dispose(&cfg);
}

/* the front end's limits: nginx-like defaults, overridable, bounded */
static void test_front_end_limits(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_int_equal(cfg.max_header_bytes, 32768);
    assert_int_equal(cfg.max_headers, 100);
    assert_int_equal(cfg.max_url_bytes, 8192);
    assert_int_equal(cfg.max_connections, 4096);
    assert_int_equal(cfg.header_timeout_ms, 30000);
    assert_int_equal(cfg.keepalive_timeout_ms, 75000);
    assert_int_equal(cfg.forwarded, AG_FORWARDED_APPEND);
    ag_config_dispose(&cfg);
    write_config("limits: {max_header_bytes: 4096, max_headers: 10, max_url_bytes: 100,\n"
                 "         max_connections: 2}\n"
                 "timeouts: {header_ms: 500, keepalive_ms: 0}\nforwarded: off\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.max_header_bytes, 4096);
    assert_int_equal(cfg.max_headers, 10);
    assert_int_equal(cfg.max_url_bytes, 100);
    assert_int_equal(cfg.max_connections, 2);
    assert_int_equal(cfg.header_timeout_ms, 500);
    assert_int_equal(cfg.keepalive_timeout_ms, 0);
    assert_int_equal(cfg.forwarded, AG_FORWARDED_OFF);
    ag_config_dispose(&cfg);
    unlink(path);
    expect_error("limits: {max_headers: 0}\n", 1, 23, "`max_headers` must be at least 1");
    expect_error("limits:\n  max_header_bytes: 10\n", 2, 21, "at least 256");
    expect_error("forwarded: sometimes\n", 1, 12, "append, replace or off");
    expect_error("timeouts: {header_ms: -1}\n", 1, 23, "header_ms");
}

static void test_routes(void **state)
{
    write_config("upstream: https://api.openai.com\n"
                 "upstreams: {anthropic: 'https://api.anthropic.com/'}\n"
                 "routes: {/v1/messages: anthropic}\n");
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_string_equal(ag_config_upstream_for(&cfg, "/v1/messages"), "https://api.anthropic.com");
    assert_string_equal(ag_config_upstream_for(&cfg, "/v1/messages/count_tokens"),
                        "https://api.anthropic.com");
    assert_string_equal(ag_config_upstream_for(&cfg, "/v1/messagesX"), "https://api.openai.com");
    assert_string_equal(ag_config_upstream_for(&cfg, "/v1/chat/completions"),
                        "https://api.openai.com");
    ag_config_dispose(&cfg);
    unlink(path);
    expect_error("routes: {/v1/messages: nope}\n", 1, 24, "unknown upstream `nope`");
    expect_error("upstreams: {a: 'ftp://x'}\nroutes: {/x: a}\n", 1, 16, "http://");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_default),
        cmocka_unit_test(test_file_overrides_and_relative_rules),
        cmocka_unit_test(test_errors_name_the_place),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_front_end_limits),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

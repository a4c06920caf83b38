/* astgate.yaml: defaults, overrides, and errors that name file:line:col. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
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
    assert_int_equal(cfg.drain_timeout_ms, 30000);
    assert_int_equal(cfg.forwarded, AG_FORWARDED_APPEND);
    ag_config_dispose(&cfg);
    write_config("limits: {max_header_bytes: 4096, max_headers: 10, max_url_bytes: 100,\n"
                 "         max_connections: 2}\n"
                 "timeouts: {header_ms: 500, keepalive_ms: 0, drain_ms: 1500}\nforwarded: off\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.max_header_bytes, 4096);
    assert_int_equal(cfg.max_headers, 10);
    assert_int_equal(cfg.max_url_bytes, 100);
    assert_int_equal(cfg.max_connections, 2);
    assert_int_equal(cfg.header_timeout_ms, 500);
    assert_int_equal(cfg.keepalive_timeout_ms, 0);
    assert_int_equal(cfg.drain_timeout_ms, 1500);
    assert_int_equal(cfg.forwarded, AG_FORWARDED_OFF);
    ag_config_dispose(&cfg);
    unlink(path);
    expect_error("limits: {max_headers: 0}\n", 1, 23, "`max_headers` must be at least 1");
    expect_error("limits:\n  max_header_bytes: 10\n", 2, 21, "at least 256");
    expect_error("forwarded: sometimes\n", 1, 12, "append, replace or off");
    expect_error("timeouts: {header_ms: -1}\n", 1, 23, "header_ms");
    expect_error("timeouts: {drain_ms: soon}\n", 1, 22, "drain_ms");
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

/* hints: off by default; off, on (or true/false) or {ab: P} at the top level and per named
 * upstream, which starts from the top-level value */
static void test_hints(void **state)
{
    (void)state;
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_int_equal(ag_config_target_hints(&cfg, 0).mode, AG_HINTS_OFF);
    ag_config_dispose(&cfg);

    write_config("hints: on\n"
                 "upstreams:\n"
                 "  plain: https://plain.example\n"
                 "  ab: {url: 'https://ab.example', hints: {ab: 30}}\n"
                 "  off: {url: 'https://off.example', hints: off}\n"
                 "  no: {url: 'https://no.example', hints: false}\n"
                 "routes: {/p: plain, /a: ab, /o: off, /n: no}\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(ag_config_target_hints(&cfg, 0).mode, AG_HINTS_ON);
    assert_int_equal(ag_config_target_hints(&cfg, ag_config_target_for(&cfg, "/p/x")).mode,
                     AG_HINTS_ON); /* inherited */
    ag_hints_cfg_t h = ag_config_target_hints(&cfg, ag_config_target_for(&cfg, "/a/x"));
    assert_int_equal(h.mode, AG_HINTS_AB);
    assert_int_equal(h.ab_pct, 30);
    assert_int_equal(ag_config_target_hints(&cfg, ag_config_target_for(&cfg, "/o/x")).mode,
                     AG_HINTS_OFF);
    assert_int_equal(ag_config_target_hints(&cfg, ag_config_target_for(&cfg, "/n/x")).mode,
                     AG_HINTS_OFF);
    ag_config_dispose(&cfg);
    unlink(path);

    write_config("hints: {ab: 0}\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.hints.mode, AG_HINTS_AB);
    assert_int_equal(cfg.hints.ab_pct, 0);
    ag_config_dispose(&cfg);
    unlink(path);

    expect_error("hints: maybe\n", 1, 8, "`hints` must be off, on or {ab: PERCENT}");
    expect_error("hints: [on]\n", 1, 8, "`hints` must be off, on or {ab: PERCENT}");
    expect_error("hints: {ab: 101}\n", 1, 13,
                 "`hints.ab` must be a whole percentage from 0 to 100");
    expect_error("hints: {ab: half}\n", 1, 13, "`hints.ab` must be a whole percentage");
    expect_error("hints: {}\n", 1, 8, "`hints` needs `ab: PERCENT`");
    expect_error("hints: {ab: 5, ba: 1}\n", 1, 16, "unknown key `ba` in hints");
    expect_error("upstreams: {a: {url: 'https://a.example', hints: sometimes}}\n", 1, 50,
                 "`upstreams.a.hints` must be off, on or {ab: PERCENT}");
}

/* stream.hold: minimal by default; minimal or block at the top level and per named upstream, which
 * starts from the top-level value and reaches requests through its routes */
static void test_stream_hold(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_int_equal(cfg.stream_hold, AG_STREAM_HOLD_MINIMAL);
    assert_int_equal(ag_config_target_hold(&cfg, 0), AG_STREAM_HOLD_MINIMAL);
    ag_config_dispose(&cfg);

    write_config("stream: {hold: minimal}\n"
                 "upstreams:\n"
                 "  plain: https://plain.example\n"
                 "  held: {url: 'https://held.example', stream: {hold: block}}\n"
                 "  empty: {url: 'https://empty.example', stream: {}}\n"
                 "routes: {/p: plain, /h: held, /e: empty}\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.stream_hold, AG_STREAM_HOLD_MINIMAL);
    assert_int_equal(ag_config_target_hold(&cfg, ag_config_target_for(&cfg, "/v1/responses")),
                     AG_STREAM_HOLD_MINIMAL);
    assert_int_equal(ag_config_target_hold(&cfg, ag_config_target_for(&cfg, "/p/v1/messages")),
                     AG_STREAM_HOLD_MINIMAL); /* inherited */
    assert_int_equal(ag_config_target_hold(&cfg, ag_config_target_for(&cfg, "/h/v1/messages")),
                     AG_STREAM_HOLD_BLOCK); /* its own */
    assert_int_equal(ag_config_target_hold(&cfg, ag_config_target_for(&cfg, "/e")),
                     AG_STREAM_HOLD_MINIMAL);
    ag_config_dispose(&cfg);
    unlink(path);

    /* the other way round: block at the top, minimal for one upstream */
    write_config("stream: {hold: block}\n"
                 "upstreams: {fast: {url: 'https://fast.example', stream: {hold: minimal}}}\n"
                 "routes: {/f: fast}\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(ag_config_target_hold(&cfg, 0), AG_STREAM_HOLD_BLOCK);
    assert_int_equal(ag_config_target_hold(&cfg, 1), AG_STREAM_HOLD_MINIMAL);
    ag_config_dispose(&cfg);
    unlink(path);

    expect_error("stream: {hold: some}\n", 1, 16, "`stream.hold` must be minimal or block");
    expect_error("stream:\n  hold: [minimal]\n", 2, 9, "`stream.hold` must be minimal or block");
    expect_error("stream:\n  hold: block\n  held: 1\n", 3, 3, "unknown key `held` in stream");
    expect_error("stream: minimal\n", 1, 9, "`stream` must be a mapping");
    expect_error("upstreams:\n  a:\n    url: 'https://a.example'\n    stream: {hold: all}\n"
                 "routes: {/a: a}\n",
                 4, 20, "`upstreams.a.stream.hold` must be minimal or block");
    expect_error("upstreams: {a: {url: 'https://a.example', stream: {hodl: block}}}\n", 1, 52,
                 "unknown key `hodl` in upstreams.a.stream");
}

/* TLS: a temp dir with PEM files, and configs written into it so relative paths resolve there */
static char tls_dir[64];
static char tls_cfg[128];

static void put_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", tls_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int tls_setup(void **state)
{
    snprintf(tls_dir, sizeof(tls_dir), "/tmp/astgate-tls-XXXXXX");
    if (mkdtemp(tls_dir) == NULL)
        return -1;
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    put_file("ca.pem", pem);
    put_file("other-ca.pem", pem);
    put_file("client.pem", pem);
    put_file("client.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    put_file("notes.txt", "not a certificate\n");
    char p[256];
    snprintf(p, sizeof(p), "%s/certs", tls_dir);
    if (mkdir(p, 0700) != 0)
        return -1;
    snprintf(tls_cfg, sizeof(tls_cfg), "%s/astgate.yaml", tls_dir);
    return 0;
}

static int tls_teardown(void **state)
{
    static const char *const names[] = {"ca.pem",    "other-ca.pem", "client.pem", "client.key",
                                        "notes.txt", "astgate.yaml", NULL};
    char p[256];
    for (const char *const *n = names; *n; n++) {
        snprintf(p, sizeof(p), "%s/%s", tls_dir, *n);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/certs", tls_dir);
    rmdir(p);
    rmdir(tls_dir);
    return 0;
}

static int load_tls_config(const char *text, ag_config_t *cfg, ag_diag_t *d)
{
    FILE *f = fopen(tls_cfg, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memset(d, 0, sizeof(*d));
    return ag_config_load(tls_cfg, cfg, d);
}

/* tls_dir + "/" + name, for comparisons */
static const char *in_dir(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", tls_dir, name);
    return p[k];
}

static void expect_tls_error(const char *text, unsigned line, unsigned col, const char *needle)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(load_tls_config(text, &cfg, &d), AG_EINVAL);
    assert_string_equal(d.file, tls_cfg);
    if (d.line != line || d.col != col || strstr(d.msg, needle) == NULL)
        fail_msg("got %u:%u: %s; want %u:%u: ...%s...", d.line, d.col, d.msg, line, col, needle);
}

static void test_tls_defaults(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    assert_true(cfg.tls.verify);
    assert_string_equal(cfg.tls.ca_file, "");
    assert_string_equal(cfg.tls.ca_path, "");
    assert_string_equal(cfg.tls.client_cert, "");
    assert_string_equal(cfg.tls.client_key, "");
    assert_ptr_equal(ag_config_target_tls(&cfg, 0), &cfg.tls);
    ag_config_dispose(&cfg);
    /* a named upstream without tls gets the defaults too */
    assert_int_equal(
        load_tls_config("upstreams: {a: 'https://a.example'}\nroutes: {/a: a}\n", &cfg, &d), AG_OK);
    const ag_tls_t *t = ag_config_target_tls(&cfg, 1);
    assert_ptr_equal(t, &cfg.routes[0].tls);
    assert_true(t->verify);
    assert_string_equal(t->ca_file, "");
    ag_config_dispose(&cfg);
}

static void test_tls_paths_relative_to_the_config(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    char text[1024];
    snprintf(text, sizeof(text),
             "tls:\n  ca_file: ca.pem\n  ca_path: certs\n  client_cert: %s/client.pem\n"
             "  client_key: ./client.key\n  verify: true\n",
             tls_dir);
    assert_int_equal(load_tls_config(text, &cfg, &d), AG_OK);
    assert_string_equal(cfg.tls.ca_file, in_dir("ca.pem"));
    assert_string_equal(cfg.tls.ca_path, in_dir("certs"));
    assert_string_equal(cfg.tls.client_cert, in_dir("client.pem")); /* absolute: as it is */
    assert_string_equal(cfg.tls.client_key, in_dir("./client.key"));
    assert_true(cfg.tls.verify);
    assert_string_equal(cfg.tls.verify_key, "");
    ag_config_dispose(&cfg);
}

static void test_tls_per_upstream_merge(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    const char *text = "tls: {ca_file: ca.pem, client_cert: client.pem, client_key: client.key,\n"
                       "      verify: false}\n"
                       "upstreams:\n"
                       "  plain: https://plain.example/\n"
                       "  own:\n"
                       "    url: https://own.example\n"
                       "    tls: {ca_file: other-ca.pem, verify: true}\n"
                       "  nocert: {url: 'https://nocert.example', tls: {client_cert: ~, "
                       "client_key: null}}\n"
                       "  unused: {url: 'http://unused.example'}\n"
                       "routes: {/p: plain, /o: own, /n: nocert}\n";
    assert_int_equal(load_tls_config(text, &cfg, &d), AG_OK);
    assert_int_equal(cfg.nroutes, 3);
    /* the default upstream: the top level */
    assert_false(cfg.tls.verify);
    assert_string_equal(cfg.tls.verify_key, "tls.verify");
    assert_string_equal(cfg.tls.ca_file, in_dir("ca.pem"));
    /* a plain URL inherits everything */
    const ag_tls_t *p = ag_config_target_tls(&cfg, ag_config_target_for(&cfg, "/p"));
    assert_string_equal(ag_config_target_url(&cfg, 1), "https://plain.example");
    assert_string_equal(p->ca_file, in_dir("ca.pem"));
    assert_string_equal(p->client_cert, in_dir("client.pem"));
    assert_string_equal(p->client_key, in_dir("client.key"));
    assert_false(p->verify);
    assert_string_equal(p->verify_key, "tls.verify");
    /* its own keys win, the others are inherited */
    const ag_tls_t *o = ag_config_target_tls(&cfg, ag_config_target_for(&cfg, "/o/x"));
    assert_string_equal(cfg.routes[1].url, "https://own.example");
    assert_string_equal(o->ca_file, in_dir("other-ca.pem"));
    assert_string_equal(o->client_cert, in_dir("client.pem"));
    assert_true(o->verify);
    assert_string_equal(o->verify_key, "");
    /* null drops an inherited setting */
    const ag_tls_t *n = ag_config_target_tls(&cfg, 3);
    assert_string_equal(n->client_cert, "");
    assert_string_equal(n->client_key, "");
    assert_string_equal(n->ca_file, in_dir("ca.pem"));
    ag_config_dispose(&cfg);
    /* verify: false set on the upstream itself is named as such */
    assert_int_equal(load_tls_config("upstreams: {lax: {url: 'https://l.example', tls: {verify: "
                                     "false}}}\nroutes: {/l: lax}\n",
                                     &cfg, &d),
                     AG_OK);
    assert_true(cfg.tls.verify);
    assert_false(cfg.routes[0].tls.verify);
    assert_string_equal(cfg.routes[0].tls.verify_key, "upstreams.lax.tls.verify");
    ag_config_dispose(&cfg);
}

static void test_tls_errors(void **state)
{
    expect_tls_error("tls:\n  ca_file: ca.pem\n  cafile: x\n", 3, 3, "unknown key `cafile` in tls");
    expect_tls_error("tls: [ca.pem]\n", 1, 6, "`tls` must be a mapping");
    expect_tls_error("tls: {verify: maybe}\n", 1, 15, "`tls.verify` must be true or false");
    expect_tls_error("tls: {verify: 'false'}\n", 1, 15, "`tls.verify` must be true or false");
    expect_tls_error("tls: {ca_file: [ca.pem]}\n", 1, 16, "`tls.ca_file` must be a string");
    expect_tls_error("tls: {ca_file: ''}\n", 1, 16, "`tls.ca_file` must be a path, not empty");
    expect_tls_error("tls:\n  ca_file: missing.pem\n", 2, 12, "`tls.ca_file`: cannot read");
    expect_tls_error("tls:\n  ca_file: missing.pem\n", 2, 12, "missing.pem: No such file");
    expect_tls_error("tls: {ca_file: certs}\n", 1, 16, "is not a regular file");
    expect_tls_error("tls: {ca_file: notes.txt}\n", 1, 16, "is not a PEM file");
    expect_tls_error("tls: {ca_path: ca.pem}\n", 1, 16, "`tls.ca_path`: cannot open the directory");
    expect_tls_error("tls: {ca_path: nodir}\n", 1, 16, "nodir: No such file or directory");
    expect_tls_error("tls: {client_key: client.key}\n", 1, 19,
                     "`client_key` without `client_cert`");
    expect_tls_error("tls:\n  client_cert: client.pem\n", 2, 16,
                     "`client_cert` without `client_key` for the default upstream");
    /* per named upstream */
    expect_tls_error("upstreams:\n  a:\n    url: https://a.example\n    tls: {verify: 1}\n", 4, 19,
                     "`upstreams.a.tls.verify` must be true or false");
    expect_tls_error("upstreams:\n  a: {url: 'https://a.example', tls: {ca: x}}\n", 2, 39,
                     "unknown key `ca` in upstreams.a.tls");
    expect_tls_error("upstreams:\n  a: {url: 'https://a.example', tls: {ca_file: nope.pem}}\n", 2,
                     48, "`upstreams.a.tls.ca_file`: cannot read");
    expect_tls_error(
        "upstreams:\n  a: {url: 'https://a.example', tls: {client_cert: client.pem}}\n", 2, 52,
        "`client_cert` without `client_key` for upstream `a`");
    /* the top level has both; the upstream drops one */
    expect_tls_error("tls: {client_cert: client.pem, client_key: client.key}\n"
                     "upstreams: {b: {url: 'https://b.example', tls: {client_key: null}}}\n",
                     1, 20, "`client_cert` without `client_key` for upstream `b`");
    expect_tls_error("upstreams:\n  a: {tls: {verify: true}}\n", 2, 6,
                     "`upstreams.a` needs a `url`");
    expect_tls_error("upstreams:\n  a: {url: 'https://a.example', tsl: {}}\n", 2, 33,
                     "unknown key `tsl` in upstreams.a");
    expect_tls_error("upstreams:\n  a: [https://a.example]\n", 2, 6,
                     "`upstreams.a` must be a base URL or a mapping");
    expect_tls_error("upstreams:\n  a: {url: 'ftp://a.example'}\n", 2, 12, "http:// or https://");
    /* every upstream is checked, routed or not */
    expect_tls_error("upstreams: {a: 'https://a.example', b: 'gopher://b'}\n", 1, 40,
                     "http:// or https://");
}

/* ---- tools: ---- */

static const ag_tool_t *tool(const ag_config_t *cfg, const char *name)
{
    return ag_tools_find(&cfg->tools, ag_cstr(name));
}

static void test_tools_presets_by_default(void **state)
{
    ag_config_t cfg;
    ag_diag_t d;
    assert_int_equal(ag_config_load(NULL, &cfg, &d), AG_OK);
    const ag_tool_t *t = tool(&cfg, "Write");
    assert_non_null(t);
    assert_string_equal(t->file, "file_path");
    assert_int_equal(t->nfields, 1);
    assert_string_equal(t->field[0].path, "content");
    assert_int_equal(t->field[0].kind, AG_TOOL_WHOLE);
    t = tool(&cfg, "MultiEdit");
    assert_non_null(t);
    assert_string_equal(t->field[0].path, "edits[*].new_string");
    assert_int_equal(t->field[0].kind, AG_TOOL_FRAGMENT);
    assert_int_equal(tool(&cfg, "replace_in_file")->field[0].kind, AG_TOOL_SEARCH_REPLACE);
    assert_int_equal(tool(&cfg, "apply_patch")->field[0].kind, AG_TOOL_PATCH);
    assert_null(tool(&cfg, "write")); /* names are exact */
    assert_null(tool(&cfg, "get_weather"));
    uint32_t presets = cfg.tools.n;
    ag_config_dispose(&cfg);
    /* a file without tools: has the same set */
    write_config("listen: 127.0.0.1:0\n");
    assert_int_equal(ag_config_load(path, &cfg, &d), AG_OK);
    assert_int_equal(cfg.tools.n, presets);
    assert_non_null(tool(&cfg, "str_replace_based_edit_tool"));
    ag_config_dispose(&cfg);
    unlink(path);
}

static void test_tools_add_override_off(void **state)
{
    write_config("tools:\n"
                 "  my_write: {file: path, whole: [content]}\n"
                 "  my_edit:\n"
                 "    file: file_path\n"
                 "    fragment: [new_text, 'changes[*].new']\n"
                 "    whole: body\n"
                 "  my_diff: {file: path, search_replace: [diff]}\n"
                 "  my_patch: {patch: [patchText, '']}\n"
                 "  Edit: {file: target, fragment: [replacement]}\n"
                 "  Write: off\n"
                 "  MultiEdit: false\n"
                 "  apply_patch: 'off'\n");
    ag_config_t cfg;
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_config_load(path, &cfg, &d) != AG_OK)
        fail_msg("%u:%u: %s", d.line, d.col, d.msg);
    const ag_tool_t *t = tool(&cfg, "my_write");
    assert_non_null(t);
    assert_string_equal(t->file, "path");
    assert_int_equal(t->nfields, 1);
    assert_string_equal(t->field[0].path, "content");
    assert_int_equal(t->field[0].kind, AG_TOOL_WHOLE);
    assert_false(t->off);
    /* fields in the order written, whatever their kind */
    t = tool(&cfg, "my_edit");
    assert_non_null(t);
    assert_string_equal(t->file, "file_path");
    assert_int_equal(t->nfields, 3);
    assert_string_equal(t->field[0].path, "new_text");
    assert_int_equal(t->field[0].kind, AG_TOOL_FRAGMENT);
    assert_string_equal(t->field[1].path, "changes[*].new");
    assert_int_equal(t->field[1].kind, AG_TOOL_FRAGMENT);
    assert_string_equal(t->field[2].path, "body"); /* a single string is a list of one */
    assert_int_equal(t->field[2].kind, AG_TOOL_WHOLE);
    assert_int_equal(tool(&cfg, "my_diff")->field[0].kind, AG_TOOL_SEARCH_REPLACE);
    t = tool(&cfg, "my_patch");
    assert_non_null(t);
    assert_string_equal(t->file, ""); /* no file argument: a patch names its files */
    assert_int_equal(t->nfields, 2);
    assert_string_equal(t->field[1].path, ""); /* a custom tool's free-text input */
    assert_int_equal(t->field[1].kind, AG_TOOL_PATCH);
    /* an entry replaces the preset of its name as a whole */
    t = tool(&cfg, "Edit");
    assert_non_null(t);
    assert_string_equal(t->file, "target");
    assert_int_equal(t->nfields, 1);
    assert_string_equal(t->field[0].path, "replacement");
    /* off (or false) turns a preset off */
    assert_null(tool(&cfg, "Write"));
    assert_null(tool(&cfg, "MultiEdit"));
    assert_null(tool(&cfg, "apply_patch"));
    /* the other presets stay */
    assert_non_null(tool(&cfg, "write_to_file"));
    assert_non_null(tool(&cfg, "mastra_workspace_write_file"));
    ag_config_dispose(&cfg);
    unlink(path);
}

/* every load is a new set (a SIGHUP reload builds a new ag_config_t): nothing leaks from one load
 * into the next, and command-line rules leave the tools alone */
static void test_tools_per_load(void **state)
{
    write_config("tools: {Write: off, mine: {file: f, whole: [c]}}\n");
    ag_config_t a, b;
    ag_diag_t d;
    assert_int_equal(ag_config_load(path, &a, &d), AG_OK);
    assert_int_equal(ag_config_add_rules(&a, "x.yaml", true, &d), AG_OK);
    assert_null(tool(&a, "Write"));
    assert_non_null(tool(&a, "mine"));
    assert_int_equal(ag_config_load(NULL, &b, &d), AG_OK);
    assert_non_null(tool(&b, "Write"));
    assert_null(tool(&b, "mine"));
    ag_config_dispose(&b);
    assert_int_equal(ag_config_load(path, &b, &d), AG_OK);
    assert_int_equal(b.tools.n, a.tools.n);
    assert_null(tool(&b, "Write"));
    ag_config_dispose(&a);
    ag_config_dispose(&b);
    unlink(path);
}

static void test_tools_errors(void **state)
{
    expect_error("tools: [Write]\n", 1, 8, "`tools` must map tool names");
    expect_error("tools:\n  mine: {file: path, wohle: [content]}\n", 2, 22,
                 "unknown key `wohle` in tools.mine, expected one of file, whole, fragment, "
                 "search_replace, patch");
    expect_error("tools:\n  mine: {file: path}\n", 2, 9, "`tools.mine` names no code field");
    expect_error("tools:\n  mine: {whole: []}\n", 2, 9, "`tools.mine` names no code field");
    expect_error("tools:\n  mine: yes\n", 2, 9, "`tools.mine` must be a mapping");
    expect_error("tools:\n  mine:\n", 2, 8, "`tools.mine` must be a mapping");
    expect_error("tools:\n  mine: [content]\n", 2, 9, "`tools.mine` must be a mapping");
    expect_error("tools:\n  write: off\n", 2, 3, "there is no built-in tool `write`");
    expect_error("tools:\n  mine: {file: [path], whole: c}\n", 2, 16,
                 "`tools.mine.file` must be an argument name or path");
    expect_error("tools:\n  mine: {file: '', whole: c}\n", 2, 16,
                 "`tools.mine.file` must name an argument");
    expect_error("tools:\n  mine: {whole: {content: 1}}\n", 2, 17,
                 "`tools.mine.whole` must be a list of argument paths, not a mapping");
    expect_error("tools:\n  mine: {whole: [content, [x]]}\n", 2, 27,
                 "`tools.mine.whole` must be an argument name or path");
    expect_error("tools:\n  mine: {whole: [content, ~]}\n", 2, 27,
                 "`tools.mine.whole` must be an argument name or path");
    /* paths must compile as ag_jscan paths */
    expect_error("tools:\n  mine: {fragment: ['edits[x].new']}\n", 2, 21,
                 "`tools.mine.fragment`: `edits[x].new` is not an argument path");
    expect_error("tools:\n  mine: {file: 'a..b', whole: c}\n", 2, 16,
                 "`tools.mine.file`: `a..b` is not an argument path");
    expect_error("tools:\n  mine: {whole: ['a[*][*][*][*][*]']}\n", 2, 18,
                 "has too many steps, arrays or filters");
    expect_error("tools:\n  mine: {whole: ['a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q']}\n", 2, 18,
                 "has too many steps");
    expect_error("tools:\n  mine: {whole: "
                 "[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]}\n",
                 2, 18, "`tools.mine.whole`: the path is too long (at most 63 bytes)");
    expect_error("tools:\n  mine: {whole: [a, b, c, d], fragment: [e, f, g, h, i]}\n", 2, 54,
                 "`tools.mine` has too many code fields (at most 8)");
    expect_error("tools:\n  mine: {whole: [a], fragment: [a]}\n", 2, 33,
                 "`tools.mine`: the field `a` is listed twice");
    expect_error("tools:\n  "
                 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn: {whole: c}\n",
                 2, 3, "a tool name must be 1 to 63 bytes");
    expect_error("tools:\n  '': {whole: c}\n", 2, 3, "a tool name must be 1 to 63 bytes");
    /* an error after entries were taken frees them (LSan) */
    expect_error("tools:\n  a: {whole: c}\n  Write: off\n  b: [x]\n", 4, 6,
                 "`tools.b` must be a mapping");
    expect_error("tools: {a: {whole: c}}\nroutes: {/x: nowhere}\n", 2, 14, "unknown upstream");
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
        cmocka_unit_test(test_stream_hold),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_front_end_limits),
        cmocka_unit_test_setup_teardown(test_tls_defaults, tls_setup, tls_teardown),
        cmocka_unit_test_setup_teardown(test_tls_paths_relative_to_the_config, tls_setup,
                                        tls_teardown),
        cmocka_unit_test_setup_teardown(test_tls_per_upstream_merge, tls_setup, tls_teardown),
        cmocka_unit_test_setup_teardown(test_tls_errors, tls_setup, tls_teardown),
        cmocka_unit_test(test_tools_presets_by_default),
        cmocka_unit_test(test_tools_add_override_off),
        cmocka_unit_test(test_tools_per_load),
        cmocka_unit_test(test_tools_errors),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

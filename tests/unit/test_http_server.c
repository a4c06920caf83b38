/* The HTTP/1.1 server over a socketpair: requests handed over whole and in order, bodies
 * de-chunked, limits, refusals, and a head split across reads at every byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

#define MAXREQ 8

typedef struct seen {
    int nreq, nerr, ngone;
    char target[MAXREQ][128];
    char body[MAXREQ][256];
    uint32_t nheaders[MAXREQ];
    int err_status;
    char err_code[64];
} seen_t;

typedef struct fixture {
    struct event_base *base;
    ag_http_server_t *srv;
    int peer; /* the client's end */
    seen_t seen;
    char reply[8192];
    size_t nreply;
    bool closed; /* the server closed its end */
} fixture_t;

static void on_request(void *ud, ag_http_req_t *req)
{
    fixture_t *f = ud;
    seen_t *s = &f->seen;
    if (s->nreq < MAXREQ) {
        snprintf(s->target[s->nreq], sizeof(s->target[0]), "%.*s", (int)req->target.len,
                 req->target.ptr);
        snprintf(s->body[s->nreq], sizeof(s->body[0]), "%.*s", (int)req->body.len, req->body.ptr);
        s->nheaders[s->nreq] = req->nheaders;
    }
    s->nreq++;
    ag_http_header_t h[1] = {{ag_cstr("X-N"), ag_cstr("1")}};
    ag_http_respond(req, 200, h, 1, "ok", 2);
}

static void on_error(void *ud, ag_http_req_t *req, int status, const char *code, const char *msg)
{
    fixture_t *f = ud;
    (void)msg;
    f->seen.nerr++;
    f->seen.err_status = status;
    snprintf(f->seen.err_code, sizeof(f->seen.err_code), "%s", code);
    ag_http_respond(req, status, NULL, 0, "e", 1);
}

static void on_gone(void *ud, ag_http_req_t *req)
{
    fixture_t *f = ud;
    f->seen.ngone++;
    ag_http_abort(req);
}

static const ag_http_handlers_t handlers = {on_request, on_error, on_gone};
static void expect_refused_fwd(const char *req);

static fixture_t *fx_new(const ag_http_limits_t *lim)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->base = event_base_new();
    f->srv = ag_http_server_new(f->base, -1, &handlers, lim, f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ag_http_server_adopt(f->srv, sv[0]), AG_OK);
    f->peer = sv[1];
    fcntl(f->peer, F_SETFL, O_NONBLOCK);
    return f;
}

static void fx_free(fixture_t *f)
{
    ag_http_server_free(f->srv);
    event_base_free(f->base);
    close(f->peer);
    free(f);
}

static ag_http_limits_t limits(void)
{
    ag_http_limits_t l;
    memset(&l, 0, sizeof(l));
    l.max_body = 64;
    l.max_header_bytes = 256;
    l.max_headers = 8;
    l.max_url_bytes = 64;
    l.max_connections = 100;
    return l;
}

/* Runs the loop until it has nothing left to do right now, collecting what the server wrote. */
static void pump(fixture_t *f)
{
    for (int i = 0; i < 50; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        for (;;) {
            ssize_t n = read(f->peer, f->reply + f->nreply, sizeof(f->reply) - 1 - f->nreply);
            if (n > 0) {
                f->nreply += (size_t)n;
                f->reply[f->nreply] = '\0';
                continue;
            }
            if (n == 0)
                f->closed = true;
            break;
        }
    }
}

static void send_str(fixture_t *f, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(f->peer, s, n), (ssize_t)n);
    pump(f);
}

static void test_pipelined_in_order_and_chunked_body(void **state)
{
    (void)state;
    ag_http_limits_t l = limits();
    fixture_t *f = fx_new(&l);
    send_str(f, "GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n"
                "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                "GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(f->seen.nreq, 3);
    assert_string_equal(f->seen.target[0], "/b");
    assert_string_equal(f->seen.target[1], "/c");
    assert_string_equal(f->seen.body[1], "abcde");
    assert_string_equal(f->seen.target[2], "/d");
    /* three responses, in order, the connection kept */
    const char *p = f->reply;
    int n = 0;
    while ((p = strstr(p, "HTTP/1.1 200 OK\r\n")) != NULL) {
        n++;
        p++;
    }
    assert_int_equal(n, 3);
    assert_false(f->closed);
    fx_free(f);
}

/* Found by fuzz_http_server: an Upgrade request is answered as HTTP/1.1 and the connection goes
 * on parsing HTTP/1.1; trailer fields do not move the request's views (ASan); a fold onto an
 * empty value is refused. */
static void test_upgrade_trailers_and_folds(void **state)
{
    (void)state;
    ag_http_limits_t l = limits();
    fixture_t *f = fx_new(&l);
    send_str(f, "GET /u HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\nhi\r\n0\r\nX-A-Much-Longer-Trailer-Field-Than-Anything: 1\r\n\r\n"
                "GET /v HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(f->seen.nerr, 0);
    assert_int_equal(f->seen.nreq, 3);
    assert_string_equal(f->seen.target[0], "/u");
    assert_string_equal(f->seen.target[1], "/t");
    assert_string_equal(f->seen.body[1], "hi");
    assert_int_equal(f->seen.nheaders[1], 2); /* the trailer is not a header */
    assert_string_equal(f->seen.target[2], "/v");
    assert_false(f->closed);
    fx_free(f);
    expect_refused_fwd("GET / HTTP/1.1\r\nHost:\r\n evil.example\r\n\r\n");
}

/* A head split at every byte across reads is parsed the same (a value split by a read is not
 * taken for obs-fold). */
static void test_head_split_at_every_byte(void **state)
{
    (void)state;
    static const char req[] = "POST /v1/x HTTP/1.1\r\nHost: example\r\nX-Long: a b c d\r\n"
                              "Content-Length: 3\r\n\r\nxyz";
    for (size_t cut = 1; cut < sizeof(req) - 1; cut++) {
        ag_http_limits_t l = limits();
        fixture_t *f = fx_new(&l);
        assert_int_equal(write(f->peer, req, cut), (ssize_t)cut);
        pump(f);
        size_t rest = sizeof(req) - 1 - cut;
        assert_int_equal(write(f->peer, req + cut, rest), (ssize_t)rest);
        pump(f);
        if (f->seen.nreq != 1)
            fail_msg("cut at %zu: %d requests, %d errors (%s)", cut, f->seen.nreq, f->seen.nerr,
                     f->seen.err_code);
        assert_string_equal(f->seen.body[0], "xyz");
        assert_int_equal(f->seen.nheaders[0], 3);
        fx_free(f);
    }
}

static void expect_refused(const char *req, int status, const char *code);
static void expect_refused_fwd(const char *req)
{
    expect_refused(req, 400, "bad_request");
}

static void expect_refused(const char *req, int status, const char *code)
{
    ag_http_limits_t l = limits();
    fixture_t *f = fx_new(&l);
    send_str(f, req);
    if (f->seen.nerr != 1 || f->seen.err_status != status)
        fail_msg("%s: %d requests, %d errors, status %d (%s)", req, f->seen.nreq, f->seen.nerr,
                 f->seen.err_status, f->seen.err_code);
    assert_int_equal(f->seen.nreq, 0);
    assert_string_equal(f->seen.err_code, code);
    assert_non_null(strstr(f->reply, "Connection: close\r\n"));
    fx_free(f);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
                   400, "bad_request");
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400, "bad_request");
    expect_refused("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "bad_request");
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request");
    expect_refused("GET /../x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request");
    expect_refused("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, "http_version_not_supported");
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nExpect: later\r\n\r\n", 417, "expectation_failed");
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", 413,
                   "request_too_large");
    expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", 413,
                   "request_too_large");
    char big[512];
    snprintf(big, sizeof(big), "GET /%0100d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    expect_refused(big, 414, "uri_too_long");
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-A: %0300d\r\n\r\n", 0);
    expect_refused(big, 431, "request_header_fields_too_large");
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n"
                   "G: 1\r\nH: 1\r\n\r\n",
                   431, "request_header_fields_too_large");
    expect_refused("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented");
}

/* The client leaving while the handler holds the request: on_gone, and the server frees the
 * connection once the handler aborts (ASan checks the lifetime). */
static ag_http_req_t *held;
static void hold_request(void *ud, ag_http_req_t *req)
{
    (void)ud;
    held = req;
}

static void test_client_gone_while_held(void **state)
{
    (void)state;
    ag_http_limits_t l = limits();
    ag_http_handlers_t h = {hold_request, on_error, on_gone};
    fixture_t *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->srv = ag_http_server_new(f->base, -1, &h, &l, f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ag_http_server_adopt(f->srv, sv[0]), AG_OK);
    f->peer = sv[1];
    fcntl(f->peer, F_SETFL, O_NONBLOCK);
    held = NULL;
    send_str(f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(held);
    assert_int_equal(ag_http_server_connections(f->srv), 1);
    close(f->peer);
    f->peer = -1;
    pump(f);
    assert_int_equal(f->seen.ngone, 1);
    assert_int_equal(ag_http_server_connections(f->srv), 0);
    ag_http_server_free(f->srv);
    event_base_free(f->base);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_in_order_and_chunked_body),
        cmocka_unit_test(test_head_split_at_every_byte),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_upgrade_trailers_and_folds),
        cmocka_unit_test(test_client_gone_while_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

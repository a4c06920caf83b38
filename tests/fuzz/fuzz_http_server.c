/* libFuzzer target for the HTTP/1.1 front end (server.c). The input is the bytes a client sends
 * on one connection: one server with small limits lives on a static event_base, and each input
 * is written to one end of a socketpair whose other end the server adopted (whole, or in
 * pseudo-random pieces with a loop turn between); the client then half-closes (at once, or once
 * the server has gone quiet, so that pipelined requests are answered first) and reads what comes
 * back until the server has closed. Checks that
 * - every request handed to on_request is valid: an implemented method; a target that starts
 *   with '/', holds no byte <= 0x20, 0x7F, >= 0x80 or '#', whose path (a prefix of it, ended by
 *   '?' or the end) holds no "//", "/./", "/../", does not end in "/." or "/..", and which
 *   normalises to itself; HTTP/1.0 or 1.1; body <= max_body; nheaders <= max_headers; every
 *   name an RFC 9110 token, every value trimmed and free of CTLs but HTAB; names + values <=
 *   max_header_bytes; exactly one Host on HTTP/1.1 (at most one on 1.0); Expect only
 *   100-continue;
 * - on_error has one of the documented statuses and a code; nothing is handed over after it on
 *   that connection; requests are handed over one at a time; on_gone only for the held request,
 *   once; a drain callback only while the request is held;
 * - an oracle scanning the raw input (first request only, head up to the first CRLFCRLF, and only
 *   when its lines all end in CRLF): a request whose head had two Content-Length fields, a
 *   Content-Length that is not 1*DIGIT or is above max_body, Transfer-Encoding with
 *   Content-Length, an obs-fold line, a Host count other than one (1.1) or at most one (1.0), or
 *   a version other than HTTP/1.0 or HTTP/1.1 is never handed over; when one is, its method,
 *   minor version and normalised target are those of the request line, and with a
 *   Content-Length its body has exactly that length;
 * - what comes back starts with "HTTP/1.1 " (when anything does), the server closes the
 *   connection within a bounded number of loop turns and has no connection left after each
 *   input;
 * - for a quarter of the inputs (answered at once, half-closed once quiet): the handler is given
 *   the same requests (method, target, version, keep-alive, headers, body) and the same number
 *   of errors whether the bytes came whole or in pieces of 1 to 16 bytes.
 * How the handler answers (at once, chunked, abort, 204 with headers the server must drop, later
 * from the loop, started now and ended later; on_gone: abort now or later) is chosen from input
 * bytes. FUZZ_HTTP_SERVER_TRACE=1 prints every callback. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "path.h"
#include "server.h"

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "fuzz_http_server: check failed: %s (line %d)\n", #expr, __LINE__);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_INPUT (32u << 10) /* bytes of an input used; the rest is ignored */
#define MAX_TURNS 1000        /* event loop turns per input, besides one per piece written */
#define QUIET_TURNS 3         /* turns with nothing new before the client half-closes */
#define LATER_TURNS 2         /* a request answered "later" is answered after this many turns */
#define SETTLE_TURNS 2        /* turns run after the server closed, for deferred frees */

static const ag_http_limits_t LIMITS = {
    .max_body = 4096,
    .max_header_bytes = 2048,
    .max_headers = 32,
    .max_url_bytes = 512,
    .max_connections = 4,
    /* header_ms, keepalive_ms, client_ms: 0, so no timer ever fires */
};

typedef enum answer {
    ANS_RESPOND,       /* ag_http_respond at once */
    ANS_CHUNKED,       /* start(-1) + two writes + end at once */
    ANS_ABORT,         /* ag_http_abort at once */
    ANS_NO_BODY,       /* a 204 with response headers the server must filter */
    ANS_LATER,         /* ag_http_respond from the harness a few turns later */
    ANS_LATER_CHUNKED, /* start + write now (with a drain callback), write + end later */
    ANS_COUNT
} answer_t;

typedef struct oracle {
    bool usable;             /* the first head is complete and all its lines end in CRLF */
    const char *must_refuse; /* why the first request must never be handed over, or NULL */
    bool line_simple;        /* the request line is "method SP target SP version" exactly */
    ag_str_t method, target;
    int minor;                /* from the version, -1 when not HTTP/1.0 or HTTP/1.1 */
    long long content_length; /* -1 when absent */
} oracle_t;

typedef struct run {
    const uint8_t *data;
    size_t size;
    unsigned ncalls;      /* on_request + on_error calls of this input */
    bool errored;         /* on_error was called: the connection must close after it */
    ag_http_req_t *held;  /* the request the handler still holds */
    answer_t held_how;    /* ANS_LATER or ANS_LATER_CHUNKED */
    int held_status;      /* for ANS_LATER */
    unsigned held_turns;  /* turns since it was held */
    bool held_gone;       /* on_gone was called for it */
    bool abort_gone_late; /* on a gone request: abort from the harness loop, not from on_gone */
    bool saw_upgrade;     /* a request with an Upgrade field was handed over */
    bool sync_only;       /* answer every request at once (no ANS_LATER*) */
    ag_buf_t *log;        /* when set: what the handler was given, to compare two runs */
    oracle_t oracle;
} run_t;

static run_t g_run;
static bool g_trace; /* FUZZ_HTTP_SERVER_TRACE=1: print every callback (to read a crash) */

/* A byte of the input for the k-th decision (stable under most mutations elsewhere). */
static unsigned pick(const run_t *r, unsigned k)
{
    if (r->size == 0)
        return k;
    return (unsigned)r->data[(r->size - 1) - (k * 7u) % r->size] ^ (k * 0x9Du);
}

/* ---- request invariants ---- */

static bool is_token(ag_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
        if (!ok)
            return false;
    }
    return true;
}

static bool is_field_value(ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
            return false;
    }
    if (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t'))
        return false;
    if (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        return false;
    return true;
}

static bool has(ag_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    for (size_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.ptr + i, lit, n) == 0)
            return true;
    return false;
}

static bool ends_with(ag_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && memcmp(s.ptr + s.len - n, lit, n) == 0;
}

static bool is_hex_upper(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int hexval(unsigned char c)
{
    return c <= '9' ? c - '0' : c - 'A' + 10;
}

/* A target as server.h promises it: normalised by path.c. */
static void check_target(const ag_http_req_t *req)
{
    ag_str_t t = req->target, p = req->path;
    CHECK(t.ptr != NULL && t.len >= 1 && t.ptr[0] == '/');
    CHECK(p.ptr == t.ptr && p.len >= 1 && p.len <= t.len);
    CHECK(p.len == t.len || t.ptr[p.len] == '?');
    CHECK(memchr(p.ptr, '?', p.len) == NULL);
    for (size_t i = 0; i < t.len; i++) {
        unsigned char ch = (unsigned char)t.ptr[i];
        CHECK(ch > 0x20 && ch < 0x7F && ch != '#');
    }
    CHECK(!has(p, "//") && !has(p, "/./") && !has(p, "/../"));
    CHECK(!ends_with(p, "/.") && !ends_with(p, "/.."));
    CHECK(memchr(p.ptr, '\\', p.len) == NULL);
    for (size_t i = 0; i < p.len; i++) {
        if (p.ptr[i] != '%')
            continue;
        CHECK(i + 2 < p.len && is_hex_upper((unsigned char)p.ptr[i + 1]) &&
              is_hex_upper((unsigned char)p.ptr[i + 2]));
        int v = hexval((unsigned char)p.ptr[i + 1]) * 16 + hexval((unsigned char)p.ptr[i + 2]);
        CHECK(v != '/' && v != '\\' && v >= 0x20 && v != 0x7F);
        CHECK(!((v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') ||
                v == '-' || v == '.' || v == '_' || v == '~'));
    }
    /* a fixed point of the normalisation */
    char out[600];
    size_t out_len = 0, path_len = 0;
    const char *why = NULL;
    CHECK(t.len < sizeof(out));
    CHECK(ag_http_path_normalize(t, out, sizeof(out), &out_len, &path_len, &why) == AG_OK);
    CHECK(out_len == t.len && path_len == p.len && memcmp(out, t.ptr, t.len) == 0);
}

/* The header list: on_request always, on_error when the server kept it. */
static void check_headers(const ag_http_req_t *req)
{
    CHECK(req->nheaders <= LIMITS.max_headers);
    CHECK(req->nheaders == 0 || req->headers != NULL);
    size_t total = 0;
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const ag_http_header_t *h = &req->headers[i];
        CHECK(is_token(h->name));
        CHECK(is_field_value(h->value));
        total += h->name.len + h->value.len;
    }
    CHECK(total <= LIMITS.max_header_bytes);
}

static void check_request(const ag_http_req_t *req)
{
    static const char *const methods[] = {"GET",    "POST",    "HEAD", "PUT",
                                          "DELETE", "OPTIONS", "PATCH"};
    bool known = false;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        known |= ag_str_eqc(req->method, methods[i]);
    CHECK(known);
    check_target(req);
    CHECK(req->http_minor <= 1);
    CHECK(req->body.ptr != NULL && req->body.len <= LIMITS.max_body);
    check_headers(req);
    unsigned hosts = 0;
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const ag_http_header_t *h = &req->headers[i];
        if (ag_str_eqci(h->name, "host"))
            hosts++;
        if (ag_str_eqci(h->name, "expect"))
            CHECK(ag_str_eqci(h->value, "100-continue"));
    }
    CHECK(req->http_minor == 1 ? hosts == 1 : hosts <= 1);
}

/* ---- the oracle: a plain scan of the first head as received ---- */

static bool lit_ci(ag_str_t s, const char *lit)
{
    return ag_str_eqci(s, lit);
}

static ag_str_t trim(ag_str_t s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

static void oracle_scan(const uint8_t *d, size_t n, oracle_t *o)
{
    memset(o, 0, sizeof(*o));
    o->minor = -1;
    o->content_length = -1;
    const char *t = (const char *)d;
    size_t start = 0;
    while (start + 1 < n && t[start] == '\r' && t[start + 1] == '\n') /* empty lines first */
        start += 2;
    size_t end = SIZE_MAX; /* the first CRLFCRLF */
    for (size_t i = start; i + 3 < n; i++)
        if (memcmp(t + i, "\r\n\r\n", 4) == 0) {
            end = i;
            break;
        }
    if (end == SIZE_MAX || end == start)
        return;
    /* only CRLF line ends: then the head ends where llhttp sees it end */
    for (size_t i = start; i < end + 2; i++) {
        if (t[i] == '\r' && t[i + 1] != '\n')
            return;
        if (t[i] == '\n' && (i == start || t[i - 1] != '\r'))
            return;
    }
    o->usable = true;

    unsigned ncl = 0, nhost = 0;
    bool te = false, bad_cl = false, fold = false;
    size_t ls = start;
    for (unsigned line = 0; ls < end + 2; line++) {
        const char *le = memchr(t + ls, '\r', end + 2 - ls);
        ag_str_t l = ag_str(t + ls, (size_t)(le - (t + ls)));
        ls += l.len + 2;
        if (line == 0) {
            const char *sp1 = memchr(l.ptr, ' ', l.len);
            const char *sp2 = NULL;
            for (size_t i = l.len; i > 0; i--)
                if (l.ptr[i - 1] == ' ') {
                    sp2 = l.ptr + i - 1;
                    break;
                }
            ag_str_t version = sp2 ? ag_str(sp2 + 1, l.len - (size_t)(sp2 + 1 - l.ptr)) : l;
            if (ag_str_eqc(version, "HTTP/1.0"))
                o->minor = 0;
            else if (ag_str_eqc(version, "HTTP/1.1"))
                o->minor = 1;
            if (version.len >= 8 && memcmp(version.ptr, "HTTP/1.", 7) == 0 &&
                version.ptr[7] >= '2' && version.ptr[7] <= '9')
                o->must_refuse = "HTTP/1.x with x not 0 or 1";
            else if (o->minor < 0)
                o->must_refuse = "a version other than HTTP/1.0 and HTTP/1.1";
            if (sp1 && sp2 && sp1 < sp2 && sp1 > l.ptr && sp2 > sp1 + 1 &&
                memchr(sp1 + 1, ' ', (size_t)(sp2 - sp1 - 1)) == NULL &&
                memchr(l.ptr, '\t', l.len) == NULL) {
                o->line_simple = true;
                o->method = ag_str(l.ptr, (size_t)(sp1 - l.ptr));
                o->target = ag_str(sp1 + 1, (size_t)(sp2 - sp1 - 1));
            }
            continue;
        }
        if (l.len && (l.ptr[0] == ' ' || l.ptr[0] == '\t')) {
            fold = true;
            continue;
        }
        const char *colon = memchr(l.ptr, ':', l.len);
        if (!colon)
            continue; /* llhttp refuses it anyway; nothing to claim */
        ag_str_t name = ag_str(l.ptr, (size_t)(colon - l.ptr));
        ag_str_t value = trim(ag_str(colon + 1, l.len - name.len - 1));
        if (lit_ci(name, "content-length")) {
            ncl++;
            long long v = 0;
            bool digits = value.len > 0;
            for (size_t i = 0; i < value.len && digits; i++) {
                if (value.ptr[i] < '0' || value.ptr[i] > '9')
                    digits = false;
                else if (v <= 1000000000LL)
                    v = v * 10 + (value.ptr[i] - '0');
            }
            if (!digits)
                bad_cl = true;
            else
                o->content_length = v;
        } else if (lit_ci(name, "transfer-encoding")) {
            te = true;
        } else if (lit_ci(name, "host")) {
            nhost++;
        }
    }
    if (o->must_refuse)
        return;
    if (ncl > 1)
        o->must_refuse = "two Content-Length fields";
    else if (bad_cl)
        o->must_refuse = "a Content-Length that is not 1*DIGIT";
    else if (te && ncl)
        o->must_refuse = "Transfer-Encoding with Content-Length";
    else if (fold)
        o->must_refuse = "an obs-fold line";
    else if (o->content_length > (long long)LIMITS.max_body)
        o->must_refuse = "a Content-Length above max_body";
    else if (o->minor == 1 ? nhost != 1 : nhost > 1)
        o->must_refuse = "a bad Host count";
}

static void oracle_check(const oracle_t *o, const ag_http_req_t *req)
{
    if (!o->usable)
        return;
    if (o->must_refuse) {
        fprintf(stderr, "fuzz_http_server: handed over a request with %s\n", o->must_refuse);
        CHECK(o->must_refuse == NULL);
    }
    CHECK(o->minor >= 0 && req->http_minor == (uint8_t)o->minor);
    if (o->content_length >= 0)
        CHECK(req->body.len == (size_t)o->content_length);
    if (o->line_simple) {
        CHECK(ag_str_eq(req->method, o->method));
        char out[600];
        size_t out_len = 0, path_len = 0;
        const char *why = NULL;
        CHECK(o->target.len < sizeof(out));
        CHECK(ag_http_path_normalize(o->target, out, sizeof(out), &out_len, &path_len, &why) ==
              AG_OK);
        CHECK(ag_str_eq(req->target, ag_str(out, out_len)) && req->path.len == path_len);
    }
}

/* ---- the log of what the handler was given ---- */

static void log_put(run_t *r, const void *p, size_t n)
{
    if (r->log)
        CHECK(ag_buf_append(r->log, p, n) == AG_OK);
}

static void log_str(run_t *r, ag_str_t s)
{
    log_put(r, &s.len, sizeof(s.len));
    log_put(r, s.ptr, s.len);
}

static void log_request(run_t *r, const ag_http_req_t *req)
{
    unsigned char head[3] = {'R', req->http_minor, req->keep_alive};
    log_put(r, head, sizeof(head));
    log_str(r, req->method);
    log_str(r, req->target);
    log_put(r, &req->nheaders, sizeof(req->nheaders));
    for (uint32_t i = 0; i < req->nheaders; i++) {
        log_str(r, req->headers[i].name);
        log_str(r, req->headers[i].value);
    }
    log_str(r, req->body);
}

/* Only that there was one: with two faults, which one is reported first may depend on where
 * the pieces end (llhttp hands a span over at the end of each piece, so a long target is 414 in
 * pieces but 400 whole when a bad byte follows within the same piece). */
static void log_error(run_t *r)
{
    log_put(r, "E", 1);
}

/* ---- the handler ---- */

static void on_drained(void *arg)
{
    run_t *r = arg;
    CHECK(r == &g_run && r->held != NULL && r->held_how == ANS_LATER_CHUNKED);
}

static void answer(run_t *r, ag_http_req_t *req, answer_t how, int status)
{
    static const ag_http_header_t hdrs[] = {
        {{"X-Fuzz", 6}, {"1", 1}},
        {{"X-Bad", 5}, {"a\r\nInjected: 1", 14}}, /* must be dropped by the server */
        {{"", 0}, {"empty name", 10}},            /* likewise */
    };
    switch (how) {
    case ANS_RESPOND:
        ag_http_respond(req, status, hdrs, 1, "hello\n", 6);
        break;
    case ANS_CHUNKED:
        ag_http_start(req, status, hdrs, 1, -1);
        ag_http_write(req, "abc", 3);
        ag_http_write(req, "defgh", 5);
        ag_http_end(req);
        break;
    case ANS_ABORT:
        ag_http_abort(req);
        break;
    case ANS_NO_BODY:
        ag_http_start(req, 204, hdrs, 3, -1);
        ag_http_end(req);
        break;
    case ANS_LATER:
        r->held = req;
        r->held_how = ANS_LATER;
        r->held_status = status;
        r->held_turns = 0;
        r->held_gone = false;
        break;
    case ANS_LATER_CHUNKED:
        r->held = req;
        r->held_how = ANS_LATER_CHUNKED;
        r->held_status = status;
        r->held_turns = 0;
        r->held_gone = false;
        ag_http_start(req, status, hdrs, 1, -1);
        ag_http_write(req, "first", 5);
        ag_http_on_drain(req, 0, on_drained, r);
        break;
    default:
        CHECK(0);
    }
}

static void on_request(void *ud, ag_http_req_t *req)
{
    run_t *r = ud;
    CHECK(r == &g_run);
    CHECK(r->held == NULL); /* one at a time */
    CHECK(!r->errored);     /* the connection closes after an error */
    if (g_trace) {
        fprintf(stderr, "on_request #%u: '%.*s' '%.*s' HTTP/1.%u, %u headers, body %zu\n",
                r->ncalls, (int)req->method.len, req->method.ptr, (int)req->target.len,
                req->target.ptr ? req->target.ptr : "(null)", req->http_minor, req->nheaders,
                req->body.len);
        for (uint32_t i = 0; i < req->nheaders; i++)
            fprintf(stderr, "  '%.*s': '%.*s'\n", (int)req->headers[i].name.len,
                    req->headers[i].name.ptr, (int)req->headers[i].value.len,
                    req->headers[i].value.ptr);
    }
    check_request(req);
    for (uint32_t i = 0; i < req->nheaders; i++)
        r->saw_upgrade |= ag_str_eqci(req->headers[i].name, "upgrade");
    if (r->ncalls == 0)
        oracle_check(&r->oracle, req);
    log_request(r, req);
    unsigned k = r->ncalls++;
    answer_t how = (answer_t)(pick(r, k) % ANS_COUNT);
    if (r->sync_only && how == ANS_LATER)
        how = ANS_RESPOND;
    else if (r->sync_only && how == ANS_LATER_CHUNKED)
        how = ANS_CHUNKED;
    answer(r, req, how, 200);
}

static void on_error(void *ud, ag_http_req_t *req, int status, const char *code,
                     const char *message)
{
    run_t *r = ud;
    CHECK(r == &g_run);
    if (g_trace)
        fprintf(stderr, "on_error #%u: %d %s (%s)\n", r->ncalls, status, code ? code : "(null)",
                message ? message : "(null)");
    CHECK(r->held == NULL);
    CHECK(!r->errored);
    CHECK(status == 400 || status == 408 || status == 413 || status == 414 || status == 417 ||
          status == 431 || status == 501 || status == 505);
    CHECK(status != 408); /* no timers are set */
    CHECK(code != NULL && code[0] != '\0' && message != NULL);
    CHECK(req->method.ptr != NULL && req->target.ptr != NULL && req->path.ptr != NULL);
    if (req->target.len > 0)
        check_target(req);
    check_headers(req);
    r->errored = true;
    log_error(r);
    unsigned k = r->ncalls++;
    answer(r, req, pick(r, k) % 3 == 0 && !r->sync_only ? ANS_LATER : ANS_RESPOND, status);
}

static void on_gone(void *ud, ag_http_req_t *req)
{
    run_t *r = ud;
    CHECK(r == &g_run);
    if (g_trace)
        fprintf(stderr, "on_gone\n");
    CHECK(r->held == req && !r->held_gone);
    r->held_gone = true;
    if (!r->abort_gone_late) {
        r->held = NULL;
        ag_http_abort(req);
    }
}

/* From the harness loop: answers a request held for later, or aborts a gone one. */
static void service_held(run_t *r)
{
    ag_http_req_t *req = r->held;
    if (req == NULL)
        return;
    if (r->held_gone) {
        r->held = NULL;
        ag_http_abort(req);
        return;
    }
    if (++r->held_turns < LATER_TURNS)
        return;
    r->held = NULL;
    if (r->held_how == ANS_LATER) {
        ag_http_respond(req, r->held_status, NULL, 0, "later\n", 6);
    } else {
        ag_http_write(req, "second", 6);
        ag_http_end(req);
    }
}

/* ---- the client ---- */

static struct event_base *g_base;
static ag_http_server_t *g_server;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_trace = getenv("FUZZ_HTTP_SERVER_TRACE") != NULL;
    g_base = event_base_new();
    CHECK(g_base != NULL);
    ag_http_handlers_t h = {.on_request = on_request, .on_error = on_error, .on_gone = on_gone};
    g_server = ag_http_server_new(g_base, -1, &h, &LIMITS, &g_run);
    CHECK(g_server != NULL);
}

/* Reads what the server wrote; returns the bytes read, sets *eof on end of stream. */
static size_t read_back(int fd, bool *eof, size_t *total, char first[9])
{
    char buf[4096];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            for (ssize_t i = 0; i < n && *total + (size_t)i < 9; i++)
                first[*total + (size_t)i] = buf[i];
            *total += (size_t)n;
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            *eof = true; /* end, or ECONNRESET */
        if (n < 0 && errno == EINTR)
            continue;
        return got;
    }
}

/* One connection: writes the input (whole, or in pseudo-random pieces of up to 16 or 512 bytes
 * with a loop turn between), half-closes at once or once the server has gone quiet, and runs the
 * loop until the server has closed. */
static void drive(run_t *r, unsigned split, bool shut_early)
{
    const uint8_t *data = r->data;
    size_t size = r->size;
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 16777619u;
    seed |= 1;

    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    CHECK(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK) == 0);
    CHECK(ag_http_server_adopt(g_server, fds[0]) == AG_OK);
    CHECK(ag_http_server_connections(g_server) == 1);

    size_t off = 0, total = 0;
    char first[9] = {0};
    bool shut = false, eof = false;
    unsigned quiet = 0, settle = 0, turn;
    unsigned max_turns = MAX_TURNS + (unsigned)size;
    for (turn = 0; turn < max_turns; turn++) {
        size_t wrote = 0;
        if (off < size) {
            size_t want = size - off;
            if (split > 0) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                size_t piece = 1 + seed % (split == 1 ? 16 : 512);
                want = piece < want ? piece : want;
            }
            ssize_t n = write(fds[1], data + off, want);
            if (n > 0)
                wrote = (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                wrote = size - off; /* EPIPE: the server closed; it reads no more */
            off += wrote;
        }
        event_base_loop(g_base, EVLOOP_NONBLOCK);
        service_held(r);
        size_t got = read_back(fds[1], &eof, &total, first);
        if (!shut && off == size) {
            quiet = wrote || got ? 0 : quiet + 1;
            if (shut_early || quiet >= QUIET_TURNS || eof) {
                shutdown(fds[1], SHUT_WR);
                shut = true;
            }
        }
        if (eof && ag_http_server_connections(g_server) == 0 && r->held == NULL &&
            ++settle > SETTLE_TURNS)
            break;
    }
    if (turn == max_turns)
        fprintf(stderr, "fuzz_http_server: no close after %u turns (eof %d, conns %u, held %d)\n",
                max_turns, eof, ag_http_server_connections(g_server), r->held != NULL);
    CHECK(turn < max_turns);
    CHECK(eof && shut);
    CHECK(ag_http_server_connections(g_server) == 0);
    CHECK(r->held == NULL);
    CHECK(total == 0 || memcmp(first, "HTTP/1.1 ", total < 9 ? total : 9) == 0);
    close(fds[1]);
}

static void run_reset(run_t *r, const uint8_t *data, size_t size, ag_buf_t *log)
{
    memset(r, 0, sizeof(*r));
    r->data = data;
    r->size = size;
    r->abort_gone_late = pick(r, 1000) & 1;
    oracle_scan(data, size, &r->oracle);
    r->log = log;
    if (log)
        ag_buf_reset(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ag_buf_t whole, pieces;
    if (g_base == NULL) {
        setup();
        ag_buf_init(&whole, SIZE_MAX / 4);
        ag_buf_init(&pieces, SIZE_MAX / 4);
    }
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    run_t *r = &g_run;
    run_reset(r, data, size, NULL);
    unsigned how = pick(r, 2000) % 4;
    if (how < 3) {
        /* every way of answering, half-closing early or late, whole or in pieces */
        drive(r, how, size > 0 && data[size / 2] % 4 == 0);
        return 0;
    }
    /* answered at once, half-closed once quiet: the handler must see the same requests and
     * errors whether the bytes came whole or in small pieces */
    run_reset(r, data, size, &whole);
    r->sync_only = true;
    drive(r, 0, false);
    run_reset(r, data, size, &pieces);
    r->sync_only = true;
    drive(r, 1, false);
    if (!ag_str_eq(ag_buf_str(&whole), ag_buf_str(&pieces))) {
        size_t i = 0;
        while (i < whole.len && i < pieces.len && whole.ptr[i] == pieces.ptr[i])
            i++;
        fprintf(stderr, "fuzz_http_server: whole and in pieces differ at log byte %zu of %zu/%zu\n",
                i, whole.len, pieces.len);
        CHECK(ag_str_eq(ag_buf_str(&whole), ag_buf_str(&pieces)));
    }
    return 0;
}

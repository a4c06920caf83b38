/* The HTTP/1.1 server: an accept loop, and per connection a state machine around llhttp with
 * raw libevent events (a read event that stays armed, a write event armed only while the socket
 * is full), so a kept-alive request costs a read and a write and no epoll_ctl. */
#include "server.h"

#include "path.h"

#include <llhttp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event_struct.h>

#define READ_CHUNK 16384           /* bytes per read(2) */
#define PIPELINE_SLACK (64u << 10) /* buffered bytes of requests queued behind the current one */
#define ACCEPTS_PER_WAKE 32        /* accept(2) calls per readable listener */
#define ACCEPT_PAUSE_MS 100        /* a full process or fd table: retry accepting after this */
#define LINGER_MS 2000             /* closing: read and drop the client's bytes for at most this */
#define WARN_EVERY_S 10            /* accept failures: one log line per this many seconds */

typedef enum conn_state {
    CONN_IDLE,    /* waiting for a request's first byte (keep-alive timeout) */
    CONN_HEAD,    /* receiving a request head (header deadline) */
    CONN_BODY,    /* receiving a request body (stall timeout) */
    CONN_HANDLER, /* the handler has the request; reading only to notice a client that leaves */
    CONN_CLOSING, /* the last response is being flushed; then linger */
    CONN_LINGER,  /* written and half-closed: reading and dropping until EOF or LINGER_MS */
    CONN_CLOSED,  /* socket closed; freed once the handler has let go of the request */
} conn_state_t;

typedef struct hspan {
    uint32_t name_off, name_len, value_off, value_len;
} hspan_t;

typedef struct conn conn_t;

struct ag_http_server {
    struct event_base *base;
    int fd;
    struct event lev;    /* the listening socket */
    struct event resume; /* re-arms lev after a pause */
    bool paused;
    bool draining; /* ag_http_server_drain: no accepts, connections close after their reply */
    ag_http_handlers_t h;
    ag_http_limits_t lim;
    void *ud;
    conn_t *conns; /* open connections, a doubly linked list */
    conn_t *dead;  /* closed ones the handler still holds or that wait to be freed */
    uint32_t nconns;
    time_t warned_at; /* last accept warning */
    uint64_t unwarned;
    struct timeval client_tv;
};

struct conn {
    ag_http_server_t *s;
    conn_t *prev, *next;
    int fd;
    conn_state_t state;
    struct event rev, wev, timer, defer;
    struct evbuffer *in, *out;
    llhttp_t parser;
    ag_http_req_t req;
    bool req_active; /* the handler holds req (from on_request/on_error until end/abort) */
    bool gone_called;
    bool resp_started, resp_done, chunked, head_method, close_after;
    bool free_scheduled;
    bool reading; /* rev is armed */
    bool writing; /* wev is armed */
    /* parse state of the current head */
    ag_buf_t head; /* method, target, header names and values, then the normalised target */
    uint32_t method_off, method_len, url_off, url_len;
    hspan_t *spans;
    uint32_t nspans, capspans;
    ag_http_header_t *hdrs;
    uint32_t caphdrs;
    bool in_value;
    uint32_t header_bytes;
    ag_buf_t body;
    int err_status; /* set by a callback that stopped the parser */
    const char *err_code, *err_msg;
    uint8_t scan;     /* SCAN_*: where the obs-fold scan of the current head is */
    bool in_trailers; /* after the head: llhttp reports a chunked body's trailer fields */
    char peer[INET6_ADDRSTRLEN];
    size_t drain_low;
    void (*drain_cb)(void *);
    void *drain_arg;
};

static uint32_t g_conns; /* every server's connections, for max_connections */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval ms_tv(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

const char *ag_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 529:
        return "Overloaded";
    }
    return "Unknown";
}

/* ---- connection lifetime ---- */

static void conn_free(conn_t *c)
{
    ag_http_server_t *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->dead = c->next;
    if (c->next)
        c->next->prev = c->prev;
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    ag_buf_dispose(&c->head);
    ag_buf_dispose(&c->body);
    free(c->spans);
    free(c->hdrs);
    free(c);
}

/* Frees c at the end of this loop turn (through its defer event, see on_defer), once it is
 * closed and the handler let go of it. */
static void maybe_free(conn_t *c)
{
    if (c->state != CONN_CLOSED || c->req_active || c->free_scheduled)
        return;
    c->free_scheduled = true;
    event_active(&c->defer, EV_TIMEOUT, 0);
}

static void accept_resume(ag_http_server_t *s);

/* Closes the socket at once. A handler holding the request hears about it through on_gone. */
static void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSED)
        return;
    ag_http_server_t *s = c->s;
    c->state = CONN_CLOSED;
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->timer);
    c->reading = c->writing = false;
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->dead;
    if (s->dead)
        s->dead->prev = c;
    s->dead = c;
    s->nconns--;
    __atomic_fetch_sub(&g_conns, 1, __ATOMIC_RELAXED);
    if (s->paused)
        accept_resume(s);
    if (c->req_active && !c->gone_called) {
        c->gone_called = true;
        if (s->h.on_gone)
            s->h.on_gone(s->ud, &c->req);
    }
    maybe_free(c);
}

static void set_timer(conn_t *c, uint32_t ms)
{
    if (ms == 0) {
        event_del(&c->timer);
        return;
    }
    struct timeval tv = ms_tv(ms);
    event_add(&c->timer, &tv);
}

static void read_on(conn_t *c)
{
    if (!c->reading && c->state != CONN_CLOSED) {
        event_add(&c->rev, NULL);
        c->reading = true;
    }
}

static void read_off(conn_t *c)
{
    if (c->reading) {
        event_del(&c->rev);
        c->reading = false;
    }
}

/* ---- output ---- */

static void after_flush(conn_t *c);

/* Writes what is queued; arms the write event (with the stall timeout) while the socket is
 * full. Returns false when the connection was closed. */
static bool flush_out(conn_t *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (errno == EINTR)
                continue;
            if (!c->writing) {
                struct timeval tv = c->s->client_tv;
                event_add(&c->wev, evutil_timerisset(&tv) ? &tv : NULL);
                c->writing = true;
            }
            return true;
        }
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return false;
    }
    if (c->writing) {
        event_del(&c->wev);
        c->writing = false;
    }
    return true;
}

static void run_drain_cb(conn_t *c)
{
    if (c->drain_cb && evbuffer_get_length(c->out) <= c->drain_low) {
        void (*cb)(void *) = c->drain_cb;
        c->drain_cb = NULL;
        cb(c->drain_arg);
    }
}

/* Writes what it can; tells a handler waiting for room; moves on once all is written. */
static void write_some(conn_t *c)
{
    if (!flush_out(c))
        return;
    if (c->req_active)
        run_drain_cb(c);
    if (c->state != CONN_CLOSED && evbuffer_get_length(c->out) == 0)
        after_flush(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    (void)fd;
    if (what & EV_TIMEOUT) { /* the client stopped reading */
        conn_close(c);
        return;
    }
    c->writing = true; /* still added (persistent) until flush_out empties the buffer */
    write_some(c);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    (void)fd;
    (void)what;
    if (c->state == CONN_CLOSED) {
        if (c->free_scheduled)
            conn_free(c);
        return;
    }
    write_some(c);
}

/* Output goes at the end of this loop turn: a response's head and body in one write. */
static void schedule(conn_t *c)
{
    if (c->state != CONN_CLOSED)
        event_active(&c->defer, EV_TIMEOUT, 0);
}

/* ---- parsing ---- */

static int fail(conn_t *c, int status, const char *code, const char *msg)
{
    if (c->err_status == 0) {
        c->err_status = status;
        c->err_code = code;
        c->err_msg = msg;
    }
    return -1;
}

static int too_many_header_bytes(conn_t *c)
{
    return fail(c, 431, "request_header_fields_too_large",
                "the request's headers are larger than limits.max_header_bytes");
}

static int too_large_body(conn_t *c)
{
    return fail(c, 413, "request_too_large",
                "the request body is larger than limits.max_request_body");
}

static int head_append(conn_t *c, const char *at, size_t n)
{
    return ag_buf_append(&c->head, at, n) == AG_OK ? 0 : too_many_header_bytes(c);
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = p->data;
    ag_buf_reset(&c->head);
    ag_buf_reset(&c->body);
    c->method_off = c->method_len = c->url_off = c->url_len = 0;
    c->nspans = 0;
    c->in_value = false;
    c->in_trailers = false;
    c->header_bytes = 0;
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->method_len == 0)
        c->method_off = (uint32_t)c->head.len;
    c->method_len += (uint32_t)n;
    if (c->method_len > 32)
        return fail(c, 501, "not_implemented", "astgate does not implement this method");
    return head_append(c, at, n);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->url_len == 0)
        c->url_off = (uint32_t)c->head.len;
    c->url_len += (uint32_t)n;
    if (c->url_len > c->s->lim.max_url_bytes)
        return fail(c, 414, "uri_too_long",
                    "the request target is longer than limits.max_url_bytes");
    return head_append(c, at, n);
}

/* Trailer fields of a chunked body are read and dropped (the body goes on de-chunked), within
 * max_header_bytes. */
static int trailer_bytes(conn_t *c, size_t n)
{
    c->header_bytes += (uint32_t)n;
    if (c->header_bytes > c->s->lim.max_header_bytes)
        return fail(c, 431, "request_header_fields_too_large",
                    "the request's trailers are larger than limits.max_header_bytes");
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->in_trailers)
        return trailer_bytes(c, n + 4);
    if (c->nspans == 0 || c->in_value) {
        if (c->nspans >= c->s->lim.max_headers)
            return fail(c, 431, "request_header_fields_too_large",
                        "the request has more header fields than limits.max_headers");
        if (c->nspans == c->capspans) {
            c->capspans = c->capspans ? c->capspans * 2 : 16;
            c->spans = ag_xrealloc(c->spans, c->capspans * sizeof(*c->spans));
        }
        hspan_t *sp = &c->spans[c->nspans++];
        sp->name_off = (uint32_t)c->head.len;
        sp->name_len = 0;
        sp->value_off = sp->value_len = 0;
        c->in_value = false;
        c->header_bytes += 4; /* ": " and CRLF */
    }
    c->spans[c->nspans - 1].name_len += (uint32_t)n;
    c->header_bytes += (uint32_t)n;
    if (c->header_bytes > c->s->lim.max_header_bytes)
        return too_many_header_bytes(c);
    return head_append(c, at, n);
}

static int on_header_field_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (c->in_trailers)
        return 0;
    hspan_t *sp = &c->spans[c->nspans - 1];
    sp->value_off = (uint32_t)c->head.len;
    c->in_value = true;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->in_trailers)
        return trailer_bytes(c, n);
    c->spans[c->nspans - 1].value_len += (uint32_t)n;
    c->header_bytes += (uint32_t)n;
    if (c->header_bytes > c->s->lim.max_header_bytes)
        return too_many_header_bytes(c);
    return head_append(c, at, n);
}

/* Trims the optional whitespace llhttp leaves at the end of a value. */
static ag_str_t trim_ows(ag_str_t v)
{
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t')) {
        v.ptr++;
        v.len--;
    }
    return v;
}

static bool method_allowed(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
    case HTTP_POST:
    case HTTP_HEAD:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_PATCH:
        return true;
    default:
        return false;
    }
}

static void write_continue(conn_t *c);

/* Normalises the received target into the head buffer, after everything else (it is never
 * longer than the target); sets req.target and req.path. Returns NULL or why it is refused. */
static const char *normalize_target(conn_t *c)
{
    size_t norm_off = c->head.len;
    for (uint32_t i = 0; i <= c->url_len; i++)
        if (ag_buf_appendc(&c->head, '\0') != AG_OK)
            return "the request head is too large";
    size_t out_len = 0, path_len = 0;
    const char *why = NULL;
    int rc =
        ag_http_path_normalize(ag_str(c->head.ptr + c->url_off, c->url_len), c->head.ptr + norm_off,
                               c->url_len + 1, &out_len, &path_len, &why);
    if (rc != AG_OK)
        return why ? why : "bad request target";
    c->req.target = ag_str(c->head.ptr + norm_off, out_len);
    c->req.path = ag_str(c->head.ptr + norm_off, path_len);
    return NULL;
}

/* RFC 9110 5.1: a field name is a token. The table is filled by ag_http_server_new, before any
 * worker runs. */
static bool tchar[256];

static void tchar_init(void)
{
    for (int ch = 0; ch < 256; ch++)
        tchar[ch] = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool token(ag_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!tchar[(unsigned char)s.ptr[i]])
            return false;
    return true;
}

/* RFC 9110 5.5: field-vchar / SP / HTAB (obs-text allowed); a line folded with obs-fold keeps
 * its CRLF in the value, and is refused here (RFC 9112 5.2 lets a server answer 400). */
static bool field_value(ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    ag_http_server_t *s = c->s;
    c->req.http_minor = llhttp_get_http_minor(p);
    if (llhttp_get_http_major(p) != 1 || c->req.http_minor > 1)
        return fail(c, 505, "http_version_not_supported",
                    "astgate speaks HTTP/1.0 and HTTP/1.1 to clients");
    c->req.method = ag_str(c->head.ptr + c->method_off, c->method_len);
    if (!method_allowed(llhttp_get_method(p)))
        return fail(c, 501, "not_implemented", "astgate does not implement this method");
    const char *why = normalize_target(c);
    if (why)
        return fail(c, 400, "bad_request", why);
    /* the views, now that head no longer moves */
    if (c->nspans > c->caphdrs) {
        c->caphdrs = c->nspans;
        c->hdrs = ag_xrealloc(c->hdrs, c->caphdrs * sizeof(*c->hdrs));
    }
    uint32_t hosts = 0;
    bool expect_continue = false;
    for (uint32_t i = 0; i < c->nspans; i++) {
        ag_http_header_t *h = &c->hdrs[i];
        h->name = ag_str(c->head.ptr + c->spans[i].name_off, c->spans[i].name_len);
        h->value = trim_ows(ag_str(c->head.ptr + c->spans[i].value_off, c->spans[i].value_len));
        if (!token(h->name))
            return fail(c, 400, "bad_request", "a header name that is not a token");
        if (!field_value(h->value))
            return fail(c, 400, "bad_request",
                        "a header value with a control character or a folded line");
        if (ag_str_eqci(h->name, "host")) {
            hosts++;
        } else if (ag_str_eqci(h->name, "expect")) {
            if (!ag_str_eqci(h->value, "100-continue"))
                return fail(c, 417, "expectation_failed",
                            "astgate only knows the expectation 100-continue");
            expect_continue = true;
        }
    }
    c->req.headers = c->hdrs;
    c->req.nheaders = c->nspans;
    if (hosts > 1 || (hosts == 0 && c->req.http_minor == 1))
        return fail(c, 400, "bad_request",
                    hosts ? "more than one Host header"
                          : "an HTTP/1.1 request needs a Host header");
    c->req.keep_alive = llhttp_should_keep_alive(p);
    /* astgate upgrades nothing (h2c, websocket): the request is answered as HTTP/1.1 and the
     * connection stays HTTP/1.1 (RFC 9110 7.8 lets a server ignore Upgrade) */
    p->upgrade = 0;
    c->in_trailers = true;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = (p->flags & F_CONTENT_LENGTH) != 0;
    if (has_len && p->content_length > s->lim.max_body)
        return too_large_body(c);
    bool body = chunked || (has_len && p->content_length > 0);
    if (expect_continue && body && c->req.http_minor == 1)
        write_continue(c);
    if (body) {
        c->state = CONN_BODY;
        set_timer(c, s->lim.client_ms);
    } else {
        event_del(&c->timer);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    return ag_buf_append(&c->body, at, n) == AG_OK ? 0 : too_large_body(c);
}

/* A chunk announced larger than the body may still grow: refuse before reading it. */
static int on_chunk_header(llhttp_t *p)
{
    conn_t *c = p->data;
    return p->content_length > c->s->lim.max_body - c->body.len ? too_large_body(c) : 0;
}

static int on_message_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED; /* one request at a time: stop right after it */
}

enum { SCAN_FIRST, SCAN_LINE_START, SCAN_IN_LINE, SCAN_DONE };

/* llhttp (8.x) joins a line folded with obs-fold (CRLF, then SP or HTAB) to the value before it,
 * even an empty one, and says nothing. RFC 9112 5.2 lets a server refuse it, and a proxy must:
 * the next hop may read the fold differently (`Host:` CRLF SP `evil.example`). So the raw bytes
 * of a head are scanned before llhttp sees them: a line after the request line that starts with
 * SP or HTAB is a fold. The scan stops at the empty line that ends the head. */
static bool folded(conn_t *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end && c->scan != SCAN_DONE) {
        if (c->scan != SCAN_LINE_START) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl == NULL)
                return false;
            c->scan = SCAN_LINE_START;
            p = nl + 1;
            continue;
        }
        if (*p == ' ' || *p == '\t')
            return true;
        c->scan = *p == '\r' || *p == '\n' ? SCAN_DONE : SCAN_IN_LINE;
        p++;
    }
    return false;
}

static const llhttp_settings_t *settings(void)
{
    static llhttp_settings_t st;
    static bool init;
    if (!init) {
        llhttp_settings_init(&st);
        st.on_message_begin = on_message_begin;
        st.on_method = on_method;
        st.on_url = on_url;
        st.on_header_field = on_header_field;
        st.on_header_field_complete = on_header_field_complete;
        st.on_header_value = on_header_value;
        st.on_headers_complete = on_headers_complete;
        st.on_body = on_body;
        st.on_chunk_header = on_chunk_header;
        st.on_message_complete = on_message_complete;
        init = true;
    }
    return &st;
}

static void write_continue(conn_t *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    evbuffer_add(c->out, line, sizeof(line) - 1);
    flush_out(c);
}

/* The status and code for a parser error llhttp found. */
static int parse_error_status(llhttp_errno_t e, const char **code)
{
    switch (e) {
    case HPE_INVALID_VERSION:
        *code = "http_version_not_supported";
        return 505;
    case HPE_INVALID_TRANSFER_ENCODING:
        *code = "not_implemented";
        return 501;
    case HPE_INVALID_METHOD:
        *code = "not_implemented";
        return 501;
    default:
        *code = "bad_request";
        return 400;
    }
}

static void start_request_view(conn_t *c)
{
    c->req.method = ag_str(c->head.ptr ? c->head.ptr + c->method_off : "", c->method_len);
    c->req.body = ag_buf_str(&c->body);
    c->req.peer = c->peer;
    c->req.ud = NULL;
    c->resp_started = c->resp_done = c->chunked = false;
    c->head_method = c->req.method.len == 4 && memcmp(c->req.method.ptr, "HEAD", 4) == 0;
    c->close_after = !c->req.keep_alive;
    c->gone_called = false;
    c->drain_cb = NULL;
}

/* The front end refuses this request: the handler answers it, then the connection closes. */
static void refuse(conn_t *c, int status, const char *code, const char *msg)
{
    ag_http_server_t *s = c->s;
    bool in_body = c->state == CONN_BODY;
    event_del(&c->timer);
    c->state = CONN_HANDLER;
    if (c->req.method.len == 0 && c->method_len && c->head.ptr)
        c->req.method = ag_str(c->head.ptr + c->method_off, c->method_len);
    /* the target, for the error's shape and the log, when it arrived whole and is sound */
    if (c->req.target.ptr == NULL && c->url_len && (c->nspans || in_body) && status != 414 &&
        normalize_target(c) != NULL)
        c->req.target = c->req.path = ag_str("", 0);
    if (c->req.target.ptr == NULL)
        c->req.target = c->req.path = ag_str("", 0);
    if (c->req.headers == NULL)
        c->req.nheaders = 0;
    c->req.keep_alive = false;
    start_request_view(c);
    c->close_after = true;
    c->req_active = true;
    read_off(c);
    s->h.on_error(s->ud, &c->req, status, code, msg);
}

static void conn_parse(conn_t *c);

static void dispatch(conn_t *c)
{
    ag_http_server_t *s = c->s;
    event_del(&c->timer);
    c->state = CONN_HANDLER;
    start_request_view(c);
    c->req_active = true;
    /* keep reading to notice a client that leaves, unless it piles up requests */
    if (evbuffer_get_length(c->in) > PIPELINE_SLACK)
        read_off(c);
    s->h.on_request(s->ud, &c->req);
}

static void conn_parse(conn_t *c)
{
    while (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY) {
        size_t avail = evbuffer_get_length(c->in);
        if (avail == 0)
            return;
        if (c->state == CONN_IDLE) {
            c->state = CONN_HEAD;
            memset(&c->req, 0, sizeof(c->req));
            c->req.t_start_ns = now_ns();
            c->err_status = 0;
            c->scan = SCAN_FIRST;
            set_timer(c, c->s->lim.header_ms);
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(c->in, -1, NULL, &v, 1) < 1)
            return;
        const char *base = v.iov_base;
        if (c->state == CONN_HEAD && c->scan != SCAN_DONE && folded(c, base, v.iov_len)) {
            refuse(c, 400, "bad_request", "a header line folded onto the next (obs-fold)");
            return;
        }
        llhttp_errno_t e = llhttp_execute(&c->parser, base, v.iov_len);
        size_t used = v.iov_len;
        if (e != HPE_OK)
            used = (size_t)(llhttp_get_error_pos(&c->parser) - base);
        if (used > v.iov_len)
            used = v.iov_len;
        evbuffer_drain(c->in, used);
        c->req.bytes_in += used;
        if (e == HPE_OK)
            continue;
        if (e == HPE_PAUSED) {
            llhttp_resume(&c->parser);
            dispatch(c);
            return;
        }
        if (e == HPE_PAUSED_UPGRADE) { /* cannot happen: on_headers_complete clears upgrade */
            conn_close(c);
            return;
        }
        if (c->err_status) {
            refuse(c, c->err_status, c->err_code, c->err_msg);
        } else {
            const char *code = NULL;
            int st = parse_error_status(e, &code);
            const char *why = llhttp_get_error_reason(&c->parser);
            refuse(c, st, code, why && why[0] ? why : "malformed request");
        }
        return;
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    (void)fd;
    (void)what;
    int n = evbuffer_read(c->in, c->fd, READ_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* EOF or error: a client that leaves mid-request or mid-response is gone */
        conn_close(c);
        return;
    }
    switch (c->state) {
    case CONN_LINGER:
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        return;
    case CONN_HANDLER:
    case CONN_CLOSING:
        if (evbuffer_get_length(c->in) > PIPELINE_SLACK)
            read_off(c);
        return;
    case CONN_BODY:
        set_timer(c, c->s->lim.client_ms);
        /* fall through */
    default:
        conn_parse(c);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_HEAD:
        refuse(c, 408, "request_timeout", "the request head did not arrive in timeouts.header_ms");
        break;
    case CONN_BODY:
        refuse(c, 408, "request_timeout",
               "the request body stalled for longer than timeouts.client_ms");
        break;
    default: /* idle keep-alive, linger */
        conn_close(c);
    }
}

/* The response is written out: next request, or close. */
static void after_flush(conn_t *c)
{
    if (c->req_active || !c->resp_done)
        return;
    if (c->state == CONN_CLOSING) {
        /* half-close, then read and drop what the client still sends, so that closing with
         * unread bytes does not reset the connection before it has read the response */
        shutdown(c->fd, SHUT_WR);
        c->state = CONN_LINGER;
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        read_on(c);
        set_timer(c, LINGER_MS);
        return;
    }
    if (c->state != CONN_HANDLER)
        return;
    if (c->s->draining) { /* a reply started before the drain, without Connection: close */
        conn_close(c);
        return;
    }
    c->resp_done = false;
    c->state = CONN_IDLE;
    read_on(c);
    set_timer(c, c->s->lim.keepalive_ms);
    conn_parse(c);
}

static void finish(conn_t *c, bool abort)
{
    AG_ASSERT(c->req_active);
    c->req_active = false;
    c->resp_done = true;
    c->drain_cb = NULL;
    if (c->state == CONN_CLOSED) {
        maybe_free(c);
        return;
    }
    if (abort) {
        flush_out(c);
        conn_close(c);
        return;
    }
    if (c->close_after)
        c->state = CONN_CLOSING;
    schedule(c);
}

/* ---- responses ---- */

static conn_t *conn_of(ag_http_req_t *req)
{
    return (conn_t *)((char *)req - offsetof(conn_t, req));
}

static bool clean(ag_str_t s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '\r' || s.ptr[i] == '\n' || s.ptr[i] == '\0')
            return false;
    return true;
}

void ag_http_start(ag_http_req_t *req, int status, const ag_http_header_t *h, uint32_t n,
                   int64_t content_length)
{
    conn_t *c = conn_of(req);
    AG_ASSERT(c->req_active && !c->resp_started);
    c->resp_started = true;
    if (c->state == CONN_CLOSED)
        return;
    if (c->s->draining)
        c->close_after = true;
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (!no_body && content_length < 0 && !c->head_method) {
        if (req->http_minor >= 1)
            c->chunked = true;
        else
            c->close_after = true; /* HTTP/1.0: the body ends when the connection does */
    }
    char line[96];
    int k = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, ag_http_reason(status));
    evbuffer_add(c->out, line, (size_t)k);
    for (uint32_t i = 0; i < n; i++) {
        if (h[i].name.len == 0 || !clean(h[i].name) || !clean(h[i].value))
            continue;
        evbuffer_add(c->out, h[i].name.ptr, h[i].name.len);
        evbuffer_add(c->out, ": ", 2);
        evbuffer_add(c->out, h[i].value.ptr, h[i].value.len);
        evbuffer_add(c->out, "\r\n", 2);
    }
    if (!no_body) {
        if (content_length >= 0) {
            k = snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)content_length);
            evbuffer_add(c->out, line, (size_t)k);
        } else if (c->chunked) {
            evbuffer_add(c->out, "Transfer-Encoding: chunked\r\n", 28);
        }
    }
    if (c->close_after)
        evbuffer_add(c->out, "Connection: close\r\n", 19);
    else if (req->http_minor == 0)
        evbuffer_add(c->out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(c->out, "\r\n", 2);
    schedule(c);
}

void ag_http_write(ag_http_req_t *req, const void *p, size_t n)
{
    conn_t *c = conn_of(req);
    AG_ASSERT(c->req_active && c->resp_started);
    if (n == 0 || c->state == CONN_CLOSED || c->head_method)
        return;
    if (c->chunked) {
        char len[24];
        int k = snprintf(len, sizeof(len), "%zx\r\n", n);
        evbuffer_add(c->out, len, (size_t)k);
        evbuffer_add(c->out, p, n);
        evbuffer_add(c->out, "\r\n", 2);
    } else {
        evbuffer_add(c->out, p, n);
    }
    schedule(c);
}

void ag_http_end(ag_http_req_t *req)
{
    conn_t *c = conn_of(req);
    AG_ASSERT(c->req_active && c->resp_started);
    if (c->chunked && c->state != CONN_CLOSED)
        evbuffer_add(c->out, "0\r\n\r\n", 5);
    finish(c, false);
}

void ag_http_respond(ag_http_req_t *req, int status, const ag_http_header_t *h, uint32_t n,
                     const void *body, size_t len)
{
    ag_http_start(req, status, h, n, (int64_t)len);
    ag_http_write(req, body, len);
    ag_http_end(req);
}

void ag_http_abort(ag_http_req_t *req)
{
    conn_t *c = conn_of(req);
    finish(c, true);
}

size_t ag_http_pending(const ag_http_req_t *req)
{
    const conn_t *c = (const conn_t *)((const char *)req - offsetof(conn_t, req));
    return c->state == CONN_CLOSED ? 0 : evbuffer_get_length(c->out);
}

void ag_http_on_drain(ag_http_req_t *req, size_t low, void (*cb)(void *arg), void *arg)
{
    conn_t *c = conn_of(req);
    c->drain_low = low;
    c->drain_cb = cb;
    c->drain_arg = arg;
}

/* ---- accepting ---- */

static void conn_new(ag_http_server_t *s, int fd, const struct sockaddr_storage *ss)
{
    conn_t *c = ag_xcalloc(1, sizeof(*c));
    c->s = s;
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    AG_ASSERT(c->in && c->out);
    /* method (<= 32), target, headers, then the normalised target (<= the target + NUL) */
    ag_buf_init(&c->head, (size_t)s->lim.max_header_bytes + 2 * (size_t)s->lim.max_url_bytes + 64);
    ag_buf_init(&c->body, s->lim.max_body);
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer,
                  sizeof(c->peer));
    else if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof(c->peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    llhttp_init(&c->parser, HTTP_REQUEST, settings());
    c->parser.data = c;
    event_assign(&c->rev, s->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    event_assign(&c->timer, s->base, -1, 0, on_timer, c);
    event_assign(&c->defer, s->base, -1, 0, on_defer, c);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->state = CONN_IDLE;
    read_on(c);
    set_timer(c, s->lim.header_ms ? s->lim.header_ms : s->lim.keepalive_ms);
}

static void accept_pause(ag_http_server_t *s, uint32_t ms)
{
    if (!s->paused) {
        event_del(&s->lev);
        s->paused = true;
    }
    struct timeval tv = ms_tv(ms);
    event_add(&s->resume, &tv);
}

static void accept_resume(ag_http_server_t *s)
{
    if (!s->paused || s->draining)
        return;
    event_del(&s->resume);
    s->paused = false;
    event_add(&s->lev, NULL);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    ag_http_server_t *s = arg;
    (void)fd;
    (void)what;
    if (__atomic_load_n(&g_conns, __ATOMIC_RELAXED) >= s->lim.max_connections) {
        accept_pause(s, ACCEPT_PAUSE_MS); /* another worker's slot may free: look again */
        return;
    }
    accept_resume(s);
}

static void warn_accept(ag_http_server_t *s, int err)
{
    time_t now = time(NULL);
    if (s->warned_at && now - s->warned_at < WARN_EVERY_S) {
        s->unwarned++;
        return;
    }
    fprintf(stderr,
            "astgate: accept: %s; not accepting for %d ms (%llu more such errors since the last "
            "line)\n",
            strerror(err), ACCEPT_PAUSE_MS, (unsigned long long)s->unwarned);
    s->warned_at = now;
    s->unwarned = 0;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    ag_http_server_t *s = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        if (__atomic_load_n(&g_conns, __ATOMIC_RELAXED) >= s->lim.max_connections) {
            /* full: leave the rest in the backlog until a slot frees */
            accept_pause(s, ACCEPT_PAUSE_MS);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int cfd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: never spin on a listener we cannot serve */
            warn_accept(s, err);
            accept_pause(s, ACCEPT_PAUSE_MS);
            return;
        }
        __atomic_fetch_add(&g_conns, 1, __ATOMIC_RELAXED);
        conn_new(s, cfd, &ss);
    }
}

void ag_http_server_set_limits(ag_http_server_t *s, const ag_http_limits_t *limits)
{
    s->lim = *limits;
    if (s->lim.max_connections == 0)
        s->lim.max_connections = UINT32_MAX;
    if (s->lim.max_headers == 0)
        s->lim.max_headers = 100;
    s->client_tv = ms_tv(limits->client_ms);
}

ag_http_server_t *ag_http_server_new(struct event_base *base, int fd, const ag_http_handlers_t *h,
                                     const ag_http_limits_t *limits, void *ud)
{
    ag_http_server_t *s = ag_xcalloc(1, sizeof(*s));
    if (!tchar['a'])
        tchar_init();
    s->base = base;
    s->fd = fd;
    s->h = *h;
    ag_http_server_set_limits(s, limits);
    s->ud = ud;
    event_assign(&s->resume, base, -1, 0, on_resume, s);
    if (fd >= 0) {
        event_assign(&s->lev, base, fd, EV_READ | EV_PERSIST, on_accept, s);
        event_add(&s->lev, NULL);
    }
    return s;
}

int ag_http_server_adopt(ag_http_server_t *s, int fd)
{
    if (__atomic_load_n(&g_conns, __ATOMIC_RELAXED) >= s->lim.max_connections)
        return AG_ETOOBIG;
    if (evutil_make_socket_nonblocking(fd) != 0)
        return AG_EIO;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        memset(&ss, 0, sizeof(ss));
    __atomic_fetch_add(&g_conns, 1, __ATOMIC_RELAXED);
    conn_new(s, fd, &ss);
    return AG_OK;
}

void ag_http_server_free(ag_http_server_t *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        event_del(&s->lev);
    event_del(&s->resume);
    s->h.on_gone = NULL;
    while (s->conns) {
        conn_t *c = s->conns;
        c->req_active = false; /* the handler is being torn down with us */
        c->free_scheduled = true;
        conn_close(c);
    }
    while (s->dead) {
        event_del(&s->dead->defer);
        conn_free(s->dead);
    }
    free(s);
}

void ag_http_server_drain(ag_http_server_t *s)
{
    if (s->draining)
        return;
    s->draining = true;
    if (s->fd >= 0)
        event_del(&s->lev);
    event_del(&s->resume);
    s->paused = false;
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE && evbuffer_get_length(c->in) == 0)
            conn_close(c);
        else if (c->state == CONN_HANDLER && !c->resp_started)
            c->close_after = true;
    }
}

void ag_http_server_close_all(ag_http_server_t *s)
{
    while (s->conns)
        conn_close(s->conns);
}

uint32_t ag_http_server_connections(const ag_http_server_t *s)
{
    return s->nconns;
}

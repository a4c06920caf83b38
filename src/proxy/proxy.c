/* The proxy: evhttp for clients, curl multi (upstream.c) for the upstream, one loop per worker.
 * A request is forwarded unchanged; the reply is passed through, rewritten whole (non-streamed
 * API replies) or rewritten as it streams (server-sent events). A rewrite never fails a request. */
#include "proxy.h"

#include "api/api.h"
#include "audit.h"
#include "json.h"
#include "metrics.h"
#include "rewrite.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define HIGH_WATERMARK (1u << 20) /* unsent client bytes above which upstream reads pause */

#define LOG_FLUSH_AT (32u << 10) /* bytes of buffered log lines that trigger a write at once */
#define LOG_BUF_MAX (1u << 20)   /* a worker's buffered lines for one log, at most */

/* A log file shared by the workers. Each worker gathers its lines in its own buffer and writes
 * them with one write(2) when its loop has run the callbacks at hand (or the buffer is large):
 * no lock and no syscall per line. The lock is held across that one write so that two workers'
 * lines never interleave, even on a pipe. */
typedef struct log_sink {
    int fd; /* -1 = off */
    bool own_fd;
    pthread_mutex_t lock;
} log_sink_t;

enum { LOG_ACCESS, LOG_REWRITE, LOG_N };

typedef struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop;
    ag_upstream_t *up;
    ag_engine_t *engine;
    const ag_config_t *cfg;
    const ag_rules_t *rules;
    int fd;
    uint64_t seq;
    ag_wmetrics_t m;
    struct evbuffer *chunk; /* reused for every reply chunk (evhttp drains it) */
    ag_buf_t logbuf[LOG_N]; /* lines not yet written, per log */
    struct event *log_flush; /* writes logbuf once the callbacks at hand have run */
    bool flush_pending;
    struct timeval client_tv; /* timeouts.client_ms; zero = none */
} worker_t;

typedef enum req_state {
    REQ_UPSTREAM_HEAD, /* waiting for the upstream's status and headers */
    REQ_PASSING,       /* streaming the upstream body through unchanged */
    REQ_BUFFERING,     /* collecting a non-streamed API reply to rewrite */
    REQ_STREAMING,     /* rewriting a streamed API reply event by event */
    REQ_DONE,          /* reply ended; waiting to be freed */
} req_state_t;

typedef struct hdr {
    char *name, *value;
} hdr_t;

typedef struct preq {
    worker_t *w;
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    CURL *easy;
    uint32_t target;           /* the upstream (ag_config_target_for) */
    struct curl_slist *up_headers;
    char *url;
    char request_id[80];
    char method[16];
    char path[512];
    const ag_api_t *api;       /* NULL: plain passthrough */
    req_state_t state;
    long status;               /* upstream status */
    hdr_t *hdrs;               /* upstream response headers */
    uint32_t nhdrs, cap_hdrs;
    bool head_done;
    bool reply_started;
    bool client_gone;
    bool finished;             /* our side is done with req */
    ag_buf_t body;             /* REQ_BUFFERING: the upstream body */
    ag_buf_t out;              /* scratch for client bytes */
    void *stream;              /* REQ_STREAMING: adapter state */
    ag_api_env_t env;
    ag_api_stats_t stats;
    bool stream_ended;
    bool paused;               /* upstream reads paused: the client is slow */
    struct evbuffer_cb_entry *drain_cb;
    struct event *resume;      /* resumes a paused upstream, outside the buffer callback */
    uint64_t bytes_out;
    uint64_t t_start_ns;
    uint64_t own_ns;           /* time spent in astgate's own work */
    CURLcode result;
} preq_t;

static log_sink_t sinks[LOG_N];
/* the worker buffer each log's lines go to: logs sent to the same place (stderr by default)
 * share one, so their lines stay in order and go out in one write */
static int buf_of[LOG_N] = {LOG_ACCESS, LOG_REWRITE};
/* for /metrics: every worker's counters (set before the workers start, read-only after) */
static ag_wmetrics_t **all_metrics;
static uint32_t nall_metrics;
static const ag_rules_t *metrics_rules;
static int stop_fd[2] = {-1, -1};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- logs ---- */

static int sink_open(log_sink_t *s, const char *spec)
{
    pthread_mutex_init(&s->lock, NULL);
    s->own_fd = false;
    if (strcmp(spec, "off") == 0) {
        s->fd = -1;
        return 0;
    }
    if (strcmp(spec, "-") == 0 || spec[0] == '\0') {
        s->fd = STDERR_FILENO;
        return 0;
    }
    s->fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        fprintf(stderr, "astgate: cannot open log %s: %s\n", spec, strerror(errno));
        return -1;
    }
    s->own_fd = true;
    return 0;
}

static void sink_close(log_sink_t *s)
{
    if (s->own_fd)
        close(s->fd);
    s->fd = -1;
    s->own_fd = false;
}

static void log_flush(worker_t *w)
{
    w->flush_pending = false;
    for (int i = 0; i < LOG_N; i++) {
        ag_buf_t *b = &w->logbuf[i];
        if (b->len == 0)
            continue;
        log_sink_t *s = &sinks[i];
        pthread_mutex_lock(&s->lock);
        size_t off = 0;
        while (off < b->len) {
            ssize_t n = write(s->fd, b->ptr + off, b->len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break; /* a log that cannot be written loses these lines, never the request */
            off += (size_t)n;
        }
        pthread_mutex_unlock(&s->lock);
        ag_buf_reset(b);
    }
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_flush(arg);
}

/* The buffer to append one line of log `which` to, or NULL when that log is off. Pass the length
 * it had before to log_end. */
static ag_buf_t *log_begin(worker_t *w, int which, size_t *mark)
{
    if (sinks[which].fd < 0)
        return NULL;
    which = buf_of[which];
    *mark = w->logbuf[which].len;
    return &w->logbuf[which];
}

/* Ends a line started with log_begin: drops it if formatting failed (rc), else schedules the
 * write. */
static void log_end(worker_t *w, int which, size_t mark, int rc)
{
    ag_buf_t *b = &w->logbuf[buf_of[which]];
    if (rc != AG_OK) {
        b->len = mark;
        return;
    }
    if (b->len >= LOG_FLUSH_AT) {
        log_flush(w);
    } else if (!w->flush_pending) {
        w->flush_pending = true;
        event_active(w->log_flush, EV_TIMEOUT, 0);
    }
}

static void count_events(ag_wmetrics_t *m, const ag_result_t *res)
{
    for (uint32_t i = 0; i < res->nevents; i++) {
        const ag_event_t *ev = &res->events[i];
        uint32_t k = ev->rule_index;
        if (ev->shadow && (ev->action == AG_ACTION_BLOCK ||
                           (ev->action == AG_ACTION_REWRITE && ev->reason &&
                            strcmp(ev->reason, "shadow mode") == 0)))
            ag_m_inc(&m->shadowed[k], 1);
        else if (ev->action == AG_ACTION_REWRITE)
            ag_m_inc(ev->applied ? &m->rewrites[k] : &m->dropped[k], 1);
        else if (ev->action == AG_ACTION_FLAG)
            ag_m_inc(&m->flags[k], 1);
        else
            ag_m_inc(&m->blocks[k], 1);
    }
}

static void on_reply(void *ud, int index, const ag_reply_summary_t *s)
{
    preq_t *r = ud;
    ag_wmetrics_t *m = &r->w->m;
    (void)index;
    ag_m_inc(&m->replies, 1);
    if (!s->had_code)
        return;
    ag_m_inc(&m->replies_code, 1);
    if (s->unjudged)
        ag_m_inc(&m->replies_unjudged, 1);
    if (s->rewrites + s->flags + s->dropped + s->blocked + s->shadowed + s->unjudged == 0)
        ag_m_inc(&m->replies_raw_ok, 1);
    if (s->flags + s->dropped + s->blocked + s->unjudged == 0)
        ag_m_inc(&m->replies_corrected_ok, 1);
    ag_m_observe(m, AG_HIST_PARSE, s->parse_ns);
}

static void on_result(void *ud, int index, const ag_result_t *res)
{
    preq_t *r = ud;
    count_events(&r->w->m, res);
    ag_audit_ctx_t ctx;
    ag_audit_ctx_init(&ctx);
    ctx.request_id = r->request_id;
    ctx.route = r->path;
    ctx.model = r->env.model;
    ctx.choice = index;
    ctx.streamed = r->state == REQ_STREAMING;
    for (uint32_t i = 0; i < res->nevents; i++) {
        size_t mark;
        ag_buf_t *b = log_begin(r->w, LOG_REWRITE, &mark);
        if (b == NULL)
            break;
        log_end(r->w, LOG_REWRITE, mark, ag_audit_format(b, &res->events[i], &ctx, 0));
    }
}

static void access_line(preq_t *r, int status)
{
    ag_wmetrics_t *m = &r->w->m;
    int route = r->api == &ag_api_openai_chat        ? AG_M_ROUTE_CHAT
                : r->api == &ag_api_openai_responses ? AG_M_ROUTE_RESPONSES
                : r->api == &ag_api_anthropic        ? AG_M_ROUTE_MESSAGES
                                                     : AG_M_ROUTE_PASS;
    if (status >= 100 && status < 600)
        ag_m_inc(&m->requests[route][status], 1);
    ag_m_observe(m, AG_HIST_ADDED, r->own_ns);
    curl_off_t up_us = 0;
    if (r->easy && (curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &up_us) != CURLE_OK ||
                    up_us < 0))
        up_us = 0;
    if (up_us > 0)
        ag_m_observe(m, AG_HIST_UPSTREAM, (uint64_t)up_us * 1000u);
    if (r->state == REQ_STREAMING)
        __atomic_fetch_sub(&m->streams_in_flight, 1, __ATOMIC_RELAXED);
    size_t mark;
    ag_buf_t *b = log_begin(r->w, LOG_ACCESS, &mark);
    if (b == NULL)
        return;
    uint64_t total_us = (now_ns() - r->t_start_ns) / 1000u;
    uint64_t own_us = r->own_ns / 1000u;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* one snprintf into a stack buffer: times as integer microseconds printed as ms.mmm */
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"type\":\"access\","
                     "\"request_id\":\"%s\",\"method\":\"%s\",\"path\":",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, r->request_id, r->method);
    int rc = n > 0 && (size_t)n < sizeof(head) ? ag_buf_append(b, head, (size_t)n) : AG_EINVAL;
    if (rc == AG_OK)
        rc = ag_json_append_str(b, ag_cstr(r->path));
    if (rc == AG_OK) {
        n = snprintf(head, sizeof(head),
                     ",\"status\":%d,\"upstream_status\":%ld,\"bytes_in\":%zu,"
                     "\"bytes_out\":%llu,\"upstream_ms\":%llu.%03u,\"total_ms\":%llu.%03u,"
                     "\"added_ms\":%llu.%03u,\"rewrites\":%u,\"streamed\":%s}\n",
                     status, r->status,
                     r->req ? evbuffer_get_length(evhttp_request_get_input_buffer(r->req))
                            : (size_t)0,
                     (unsigned long long)r->bytes_out, (unsigned long long)up_us / 1000u,
                     (unsigned)(up_us % 1000), (unsigned long long)total_us / 1000u,
                     (unsigned)(total_us % 1000), (unsigned long long)own_us / 1000u,
                     (unsigned)(own_us % 1000), r->stats.rewrites,
                     r->state == REQ_STREAMING ? "true" : "false");
        rc = n > 0 && (size_t)n < sizeof(head) ? ag_buf_append(b, head, (size_t)n) : AG_EINVAL;
    }
    log_end(r->w, LOG_ACCESS, mark, rc);
}

/* ---- request lifetime ---- */

static void preq_free(preq_t *r)
{
    if (r->resume)
        event_free(r->resume);
    if (r->easy) {
        /* the pooled handle keeps its constant options; drop pointers into r */
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(r->easy, CURLOPT_NOBODY, 0L);
        ag_upstream_easy_put(r->w->up, r->easy, r->target);
    }
    curl_slist_free_all(r->up_headers);
    free(r->url);
    for (uint32_t i = 0; i < r->nhdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    if (r->stream && r->api)
        r->api->stream_free(r->stream);
    ag_buf_dispose(&r->body);
    ag_buf_dispose(&r->out);
    free(r);
}

static void deferred_free(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    preq_free(arg);
}

/* Frees r after the current callback returns (never inside its own callbacks). */
static void release(preq_t *r)
{
    struct timeval zero = {0, 0};
    if (event_base_once(r->w->base, -1, EV_TIMEOUT, deferred_free, r, &zero) != 0)
        preq_free(r);
}

static struct evbuffer *client_output(preq_t *r)
{
    if (r->client_gone || r->conn == NULL)
        return NULL;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->conn);
    return bev ? bufferevent_get_output(bev) : NULL;
}

/* Our side is done with the client request: detach from the connection so a later close does not
 * reach r. */
static void detach(preq_t *r)
{
    if (r->conn && !r->client_gone) {
        evhttp_connection_set_closecb(r->conn, NULL, NULL);
        struct evbuffer *o = client_output(r);
        if (o && r->drain_cb)
            evbuffer_remove_cb_entry(o, r->drain_cb);
    }
    r->drain_cb = NULL;
    r->finished = true;
}

static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    preq_t *r = arg;
    (void)conn;
    r->client_gone = true;
    r->conn = NULL;
    if (r->state == REQ_DONE)
        return;
    /* the client went away: cancel the upstream transfer at once */
    if (r->easy && !r->finished) {
        ag_upstream_cancel(r->w->up, r->easy);
        access_line(r, 499);
        r->state = REQ_DONE;
        /* evhttp kept req for us: ending the reply frees it */
        if (r->reply_started)
            evhttp_send_reply_end(r->req);
        else
            evhttp_send_reply(r->req, 499, "Client Closed Request", NULL);
        r->req = NULL;
        r->finished = true;
        release(r);
    }
}

/* While astgate produces a reply the client has nothing to send, so its connection has no read
 * timeout then (a stream may pause for longer than timeouts.client_ms), only the write timeout
 * for a client that stops reading. The read timeout, which also bounds an idle keep-alive
 * connection, comes back before the reply's last bytes are queued. */
static void client_timeouts(preq_t *r, bool replying)
{
    const struct timeval *tv = &r->w->client_tv;
    if (!evutil_timerisset(tv) || r->conn == NULL || r->client_gone)
        return;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->conn);
    if (bev != NULL)
        bufferevent_set_timeouts(bev, replying ? NULL : tv, tv);
}

static void add_header(struct evkeyvalq *h, const char *name, const char *value)
{
    evhttp_add_header(h, name, value);
}

static void send_error(preq_t *r, int status, const char *reason, const char *type,
                       const char *code, const char *message)
{
    struct evbuffer *b = evbuffer_new();
    ag_buf_t j;
    ag_buf_init(&j, 1u << 16);
    int rc;
    if (r->api == &ag_api_anthropic) {
        /* the Anthropic SDK reads {"type":"error","error":{"type","message"}} */
        static const char head[] = "{\"type\":\"error\",\"error\":{\"type\":";
        rc = ag_buf_append(&j, head, sizeof(head) - 1);
        if (rc == AG_OK)
            rc = ag_json_append_str(&j, ag_cstr(type));
        if (rc == AG_OK)
            rc = ag_buf_append(&j, ",\"message\":", 11);
        if (rc == AG_OK)
            rc = ag_json_append_str(&j, ag_cstr(message));
        if (rc == AG_OK && code) {
            rc = ag_buf_append(&j, ",\"code\":", 8);
            if (rc == AG_OK)
                rc = ag_json_append_str(&j, ag_cstr(code));
        }
        if (rc == AG_OK)
            rc = ag_buf_appendf(&j, "},\"request_id\":\"%s\"}\n", r->request_id);
    } else {
        rc = ag_buf_append(&j, "{\"error\":{\"message\":", 20);
        if (rc == AG_OK)
            rc = ag_json_append_str(&j, ag_cstr(message));
        if (rc == AG_OK)
            rc = ag_buf_append(&j, ",\"type\":", 8);
        if (rc == AG_OK)
            rc = ag_json_append_str(&j, ag_cstr(type));
        if (rc == AG_OK)
            rc = ag_buf_append(&j, ",\"param\":null,\"code\":", 21);
        if (rc == AG_OK)
            rc = code ? ag_json_append_str(&j, ag_cstr(code)) : ag_buf_append(&j, "null", 4);
        if (rc == AG_OK)
            rc = ag_buf_append(&j, "}}\n", 3);
    }
    evbuffer_add(b, j.ptr, j.len);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    add_header(oh, "Content-Type", "application/json");
    add_header(oh, "x-request-id", r->request_id);
    r->bytes_out += j.len;
    access_line(r, status);
    client_timeouts(r, false);
    evhttp_send_reply(r->req, status, reason, b);
    evbuffer_free(b);
    ag_buf_dispose(&j);
}

/* ---- headers ---- */

static bool hop_by_hop(const char *name)
{
    static const char *const names[] = {
        "connection",      "keep-alive",        "proxy-connection", "proxy-authenticate",
        "proxy-authorization", "te",            "trailer",          "trailers",
        "transfer-encoding", "upgrade",         "host",             "content-length",
        "expect",          "accept-encoding",   "x-request-id",     NULL};
    for (const char *const *n = names; *n; n++)
        if (strcasecmp(name, *n) == 0)
            return true;
    return false;
}

/* Headers named in the client's Connection header are hop-by-hop too. */
static bool in_connection_header(const char *conn, const char *name)
{
    if (conn == NULL)
        return false;
    size_t n = strlen(name);
    for (const char *p = conn; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == n && strncasecmp(s, name, n) == 0)
            return true;
    }
    return false;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    preq_t *r = arg;
    size_t n = size * nitems;
    uint64_t t0 = now_ns();
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response head (after 1xx ones): start over */
        for (uint32_t i = 0; i < r->nhdrs; i++) {
            free(r->hdrs[i].name);
            free(r->hdrs[i].value);
        }
        r->nhdrs = 0;
        const char *sp = memchr(buf, ' ', n);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (r->status >= 200)
            r->head_done = true;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (colon == NULL)
        return n;
    size_t nl = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (r->nhdrs == r->cap_hdrs) {
        r->cap_hdrs = r->cap_hdrs ? r->cap_hdrs * 2 : 16;
        r->hdrs = ag_xrealloc(r->hdrs, r->cap_hdrs * sizeof(*r->hdrs));
    }
    r->hdrs[r->nhdrs].name = ag_xstrndup(buf, nl);
    r->hdrs[r->nhdrs].value = ag_xstrndup(v, (size_t)(end - v));
    r->nhdrs++;
    r->own_ns += now_ns() - t0;
    return n;
}

static const char *up_header(const preq_t *r, const char *name)
{
    for (uint32_t i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    return NULL;
}

/* Copies the upstream's end-to-end headers to the client reply. */
static void copy_headers(preq_t *r)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    const char *conn = up_header(r, "connection");
    for (uint32_t i = 0; i < r->nhdrs; i++) {
        const char *n = r->hdrs[i].name;
        if (hop_by_hop(n) || strcasecmp(n, "content-encoding") == 0 ||
            in_connection_header(conn, n))
            continue;
        add_header(oh, n, r->hdrs[i].value);
    }
    add_header(oh, "x-request-id", r->request_id);
}

static bool is_event_stream(const preq_t *r)
{
    const char *ct = up_header(r, "content-type");
    return ct && strncasecmp(ct, "text/event-stream", 17) == 0;
}

static bool is_json(const preq_t *r)
{
    const char *ct = up_header(r, "content-type");
    return ct && (strncasecmp(ct, "application/json", 16) == 0 || strstr(ct, "+json") != NULL);
}

/* ---- the reply ---- */

static void resume_upstream(evutil_socket_t fd, short what, void *arg)
{
    preq_t *r = arg;
    (void)fd;
    (void)what;
    if (r->state == REQ_DONE || r->client_gone || !r->paused)
        return;
    r->paused = false;
    curl_easy_pause(r->easy, CURLPAUSE_CONT);
    ag_upstream_kick(r->w->up);
}

/* Resume reading the upstream once the client has taken half of what waited (le-proxy). */
static void on_drain(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    preq_t *r = arg;
    (void)info;
    if (!r->paused || evbuffer_get_length(buf) > HIGH_WATERMARK / 2)
        return;
    evbuffer_remove_cb_entry(buf, r->drain_cb);
    r->drain_cb = NULL;
    event_active(r->resume, EV_TIMEOUT, 0); /* not from inside this buffer's callback */
}

static void send_chunk(preq_t *r, const void *p, size_t n)
{
    if (n == 0 || r->client_gone)
        return;
    struct evbuffer *b = r->w->chunk;
    evbuffer_add(b, p, n);
    r->bytes_out += n;
    evhttp_send_reply_chunk(r->req, b); /* moves the bytes out of b */
    struct evbuffer *o = client_output(r);
    if (o && !r->paused && evbuffer_get_length(o) > HIGH_WATERMARK) {
        r->paused = true;
        curl_easy_pause(r->easy, CURLPAUSE_RECV);
        r->drain_cb = evbuffer_add_cb(o, on_drain, r);
    }
}

static void start_reply(preq_t *r)
{
    copy_headers(r);
    r->reply_started = true;
    evhttp_send_reply_start(r->req, (int)r->status, NULL);
}

/* The upstream's head is in: choose how the body goes to the client. */
static void on_head(preq_t *r)
{
    bool ok = r->status >= 200 && r->status < 300;
    if (r->api && ok && is_event_stream(r)) {
        r->state = REQ_STREAMING;
        __atomic_fetch_add(&r->w->m.streams_in_flight, 1, __ATOMIC_RELAXED);
        r->stream = r->api->stream_new(&r->env, &r->stats);
        start_reply(r);
    } else if (r->api && ok && is_json(r)) {
        r->state = REQ_BUFFERING;
        ag_buf_init(&r->body, r->w->cfg->max_response_body);
    } else {
        r->state = REQ_PASSING;
        start_reply(r);
    }
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    preq_t *r = arg;
    size_t n = size * nmemb;
    if (r->client_gone)
        return 0; /* aborts the transfer */
    if (!r->head_done)
        return n;
    if (r->state == REQ_UPSTREAM_HEAD)
        on_head(r);
    uint64_t t0 = now_ns();
    switch (r->state) {
    case REQ_PASSING:
        send_chunk(r, ptr, n);
        break;
    case REQ_BUFFERING:
        if (ag_buf_append(&r->body, ptr, n) != AG_OK) {
            /* too large to rewrite: pass it through as it is */
            r->state = REQ_PASSING;
            start_reply(r);
            send_chunk(r, r->body.ptr, r->body.len);
            send_chunk(r, ptr, n);
            ag_buf_dispose(&r->body);
        }
        break;
    case REQ_STREAMING:
        if (r->stream_ended)
            break;
        ag_buf_reset(&r->out);
        if (r->api->stream_feed(r->stream, ag_str(ptr, n), &r->out, &r->stream_ended) != AG_OK) {
            /* cannot rewrite this stream any further: pass the rest through */
            send_chunk(r, r->out.ptr, r->out.len);
            r->api->stream_free(r->stream);
            r->stream = NULL;
            r->state = REQ_PASSING;
            send_chunk(r, ptr, n);
            break;
        }
        send_chunk(r, r->out.ptr, r->out.len);
        break;
    default:
        break;
    }
    r->own_ns += now_ns() - t0;
    if (r->stream_ended)
        return 0; /* a block rule ended the stream: stop the upstream */
    return n;
}

static void finish_buffered(preq_t *r)
{
    uint64_t t0 = now_ns();
    ag_buf_reset(&r->out);
    r->out.max = r->body.len * 2 + (1u << 20);
    int rc = r->api->rewrite_body(&r->env, ag_buf_str(&r->body), &r->out, &r->stats);
    r->own_ns += now_ns() - t0;
    if (rc == AG_OK && r->stats.blocked_rule) {
        char msg[512];
        snprintf(msg, sizeof(msg), "astgate blocked the reply: %s",
                 r->stats.blocked_message && r->stats.blocked_message[0]
                     ? r->stats.blocked_message
                     : r->stats.blocked_rule);
        send_error(r, r->w->cfg->block_status, "Blocked", "astgate_blocked",
                   r->stats.blocked_rule, msg);
        return;
    }
    const ag_buf_t *body = rc == AG_OK ? &r->out : &r->body;
    copy_headers(r);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    char num[32];
    snprintf(num, sizeof(num), "%u", r->stats.rewrites);
    add_header(oh, "x-astgate-rewrites", num);
    if (r->stats.nrule_ids) {
        char ids[1024] = "";
        size_t off = 0;
        for (uint32_t i = 0; i < r->stats.nrule_ids && off < sizeof(ids); i++)
            off += (size_t)snprintf(ids + off, sizeof(ids) - off, "%s%s", i ? "," : "",
                                    r->stats.rule_ids[i]);
        add_header(oh, "x-astgate-rules", ids);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body->ptr ? body->ptr : "", body->len);
    r->bytes_out += body->len;
    access_line(r, (int)r->status);
    client_timeouts(r, false);
    evhttp_send_reply(r->req, (int)r->status, NULL, b);
    evbuffer_free(b);
}

static void on_done(CURL *easy, CURLcode result, void *priv)
{
    preq_t *r = priv;
    (void)easy;
    r->result = result;
    if (r->state == REQ_DONE)
        return;
    /* detach first: ending the reply may free the connection */
    detach(r);
    if (!r->head_done || r->state == REQ_UPSTREAM_HEAD) {
        if (r->head_done && result == CURLE_OK) {
            /* a reply without a body */
            on_head(r);
        } else {
            int st = 502;
            const char *code = ag_upstream_error_code(result, &st);
            char msg[512];
            snprintf(msg, sizeof(msg), "astgate could not get a reply from the upstream: %s",
                     curl_easy_strerror(result));
            send_error(r, st, st == 504 ? "Gateway Timeout" : "Bad Gateway",
                       st == 504 ? "astgate_upstream_timeout" : "astgate_upstream_error", code,
                       msg);
            goto out;
        }
    }
    switch (r->state) {
    case REQ_BUFFERING:
        finish_buffered(r);
        goto out;
    case REQ_STREAMING:
        if (!r->stream_ended) {
            ag_buf_reset(&r->out);
            uint64_t t0 = now_ns();
            if (r->api->stream_end(r->stream, &r->out) == AG_OK)
                send_chunk(r, r->out.ptr, r->out.len);
            r->own_ns += now_ns() - t0;
        }
        break;
    default:
        break;
    }
    access_line(r, (int)r->status);
    if (!r->client_gone) {
        client_timeouts(r, false);
        evhttp_send_reply_end(r->req);
    }
out:
    r->state = REQ_DONE;
    release(r);
}

/* ---- /metrics and /healthz ---- */

static bool admin_path(const char *path)
{
    return strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0;
}

static void serve_admin(struct evhttp_request *req)
{
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?");
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    int status = 200;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        status = 405;
        evbuffer_add_printf(b, "method not allowed\n");
    } else if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
        evbuffer_add_printf(b, "ok\n");
    } else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
        ag_buf_t t;
        ag_buf_init(&t, 16u << 20);
        if (ag_metrics_render(&t, all_metrics, nall_metrics, metrics_rules) == AG_OK)
            evbuffer_add(b, t.ptr, t.len);
        else
            status = 500;
        ag_buf_dispose(&t);
        evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    } else {
        status = 404;
        evbuffer_add_printf(b, "not found\n");
    }
    if (evhttp_find_header(oh, "Content-Type") == NULL)
        evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

static void handle_admin(struct evhttp_request *req, void *arg)
{
    (void)arg;
    serve_admin(req);
}

/* ---- the request handler ---- */

static const ag_api_t *const APIS[] = {&ag_api_openai_chat, &ag_api_openai_responses,
                                       &ag_api_anthropic, NULL};

static void new_request_id(worker_t *w, char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)w->id << 56) ^
                 (++w->seq * 0x9E3779B97F4A7C15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    snprintf(out, cap, "ag-%016llx%04llx", (unsigned long long)x,
             (unsigned long long)(w->seq & 0xffff));
}

static bool valid_request_id(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= 80)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f || v[i] == '"' ||
            v[i] == '\\')
            return false;
    return true;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "GET";
}

static void handle(struct evhttp_request *req, void *arg)
{
    worker_t *w = arg;
    if (w->cfg->admin_port == 0 && w->cfg->admin_host[0] == '\0') {
        const char *u = evhttp_request_get_uri(req);
        char p[16];
        snprintf(p, sizeof(p), "%.*s", (int)strcspn(u, "?"), u);
        if (admin_path(p)) {
            serve_admin(req);
            return;
        }
    }
    preq_t *r = ag_xcalloc(1, sizeof(*r));
    r->t_start_ns = now_ns();
    r->w = w;
    r->req = req;
    r->conn = evhttp_request_get_connection(req);
    r->state = REQ_UPSTREAM_HEAD;
    client_timeouts(r, true);
    ag_buf_init(&r->out, 64u << 20);
    r->resume = event_new(w->base, -1, 0, resume_upstream, r);
    snprintf(r->method, sizeof(r->method), "%s", method_name(evhttp_request_get_command(req)));
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *rid = evhttp_find_header(ih, "x-request-id");
    if (rid && valid_request_id(rid))
        snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    else
        new_request_id(w, r->request_id, sizeof(r->request_id));
    /* the path without the query, for routing and logs */
    size_t plen = strcspn(uri, "?");
    snprintf(r->path, sizeof(r->path), "%.*s", (int)(plen < sizeof(r->path) ? plen : 0), uri);
    if (uri[0] != '/') {
        send_error(r, 400, "Bad Request", "invalid_request_error", "bad_uri",
                   "astgate only proxies origin-form request targets (a path)");
        preq_free(r);
        return;
    }
    if (strcmp(r->method, "POST") == 0)
        for (const ag_api_t *const *a = APIS; *a; a++)
            if (strcmp(r->path, (*a)->path) == 0)
                r->api = *a;
    r->env.engine = w->engine;
    r->env.max_held = w->cfg->max_held;
    r->env.on_result = on_result;
    r->env.on_reply = on_reply;
    r->env.ud = r;

    r->target = ag_config_target_for(w->cfg, r->path);
    const char *base = ag_config_target_url(w->cfg, r->target);
    size_t ulen = strlen(base) + strlen(uri) + 1;
    r->url = ag_xmalloc(ulen);
    snprintf(r->url, ulen, "%s%s", base, uri);
    CURL *e = ag_upstream_easy(w->up, r->target);
    r->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);

    /* the request goes on unchanged: method, body and end-to-end headers */
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    const char *m = r->method;
    /* a pooled handle remembers the last request's method: set every method option */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(m, "POST") != 0) {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* no body unless there is one */
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        }
        if (blen || strcmp(m, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, blen ? (char *)evbuffer_pullup(in, -1) : "");
        }
    }
    if (strcmp(m, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    const char *conn = evhttp_find_header(ih, "connection");
    struct curl_slist *hl = NULL;
    bool has_ct = false;
    for (struct evkeyval *h = ih->tqh_first; h; h = h->next.tqe_next) {
        if (hop_by_hop(h->key) || in_connection_header(conn, h->key))
            continue;
        if (strcasecmp(h->key, "content-type") == 0)
            has_ct = true;
        size_t n = strlen(h->key) + strlen(h->value) + 3;
        char *line = ag_xmalloc(n);
        snprintf(line, n, "%s: %s", h->key, h->value);
        hl = curl_slist_append(hl, line);
        free(line);
    }
    if (!has_ct)
        hl = curl_slist_append(hl, "Content-Type:"); /* curl must not invent one */
    char ridh[128];
    snprintf(ridh, sizeof(ridh), "x-request-id: %s", r->request_id);
    hl = curl_slist_append(hl, ridh);
    hl = curl_slist_append(hl, "Expect:");
    r->up_headers = hl;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    if (r->conn)
        evhttp_connection_set_closecb(r->conn, on_client_close, r);
    r->own_ns += now_ns() - r->t_start_ns;
    if (ag_upstream_start(w->up, e) != AG_OK) {
        send_error(r, 502, "Bad Gateway", "astgate_upstream_error", "upstream_unreachable",
                   "astgate could not start the upstream request");
        detach(r);
        preq_free(r);
        return;
    }
    /* send now rather than on the next loop turn (curl asked for a 0 ms timer); r may be done
     * when this returns, but it is only freed by the loop */
    ag_upstream_kick(w->up);
}

/* ---- workers ---- */

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static int open_listener(const char *host, uint16_t port, uint16_t *bound, char *err, size_t n)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int g = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
    if (g != 0) {
        snprintf(err, n, "cannot resolve listen host %s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, n, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int ag_proxy_run(const ag_config_t *cfg, const ag_rules_t *rules)
{
    int status = 1;
    uint32_t nw = cfg->workers;
    if (nw == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nw = c > 0 ? (uint32_t)c : 1;
    }
    if (nw > MAX_WORKERS)
        nw = MAX_WORKERS;
    if (sink_open(&sinks[LOG_ACCESS], cfg->access_log) != 0)
        return 1;
    ag_upstream_warn(cfg);
    if (sink_open(&sinks[LOG_REWRITE], cfg->rewrite_log) != 0) {
        sink_close(&sinks[LOG_ACCESS]);
        return 1;
    }
    buf_of[LOG_REWRITE] = !sinks[LOG_REWRITE].own_fd && sinks[LOG_REWRITE].fd >= 0 &&
                                  sinks[LOG_REWRITE].fd == sinks[LOG_ACCESS].fd
                              ? LOG_ACCESS
                              : LOG_REWRITE;
    /* Workers share nothing through libevent (each has its own base; the stop signal is a
     * pipe), so libevent runs without its locks. */
    if (pipe2(stop_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "astgate: cannot create a pipe: %s\n", strerror(errno));
        sink_close(&sinks[LOG_ACCESS]);
        sink_close(&sinks[LOG_REWRITE]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "astgate: cannot initialise libcurl\n");
        return 1;
    }
    worker_t *ws = ag_xcalloc(nw, sizeof(*ws));
    all_metrics = ag_xcalloc(nw, sizeof(*all_metrics));
    nall_metrics = nw;
    metrics_rules = rules;
    struct evhttp *admin = NULL;
    uint16_t admin_port = 0;
    uint16_t port = cfg->listen_port;
    char err[512];
    uint32_t started = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit the mask; main waits below */
    for (uint32_t i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        w->id = (int)i;
        w->cfg = cfg;
        w->rules = rules;
        uint16_t bound = 0;
        w->fd = open_listener(cfg->listen_host, port, &bound, err, sizeof(err));
        if (w->fd < 0) {
            fprintf(stderr, "astgate: %s\n", err);
            goto out;
        }
        port = bound; /* port 0: the others share the port the first one got */
        /* the changelist folds a worker's epoll_ctl calls within one loop turn into one per fd
         * (evhttp and curl each re-arm their sockets on every request) */
        struct event_config *ecfg = event_config_new();
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
        if (w->base == NULL) {
            fprintf(stderr, "astgate: cannot create an event loop\n");
            goto out;
        }
        w->http = evhttp_new(w->base);
        evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->max_request_body);
        w->client_tv.tv_sec = (time_t)(cfg->client_timeout_ms / 1000);
        w->client_tv.tv_usec = (suseconds_t)(cfg->client_timeout_ms % 1000) * 1000;
        if (evutil_timerisset(&w->client_tv)) /* else evhttp keeps a silent client forever */
            evhttp_set_timeout_tv(w->http, &w->client_tv);
        evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
        evhttp_set_gencb(w->http, handle, w);
        if (evhttp_accept_socket(w->http, w->fd) != 0) {
            fprintf(stderr, "astgate: cannot accept on the listening socket\n");
            goto out;
        }
        ag_wmetrics_init(&w->m, ag_rules_count(rules));
        all_metrics[i] = &w->m;
        ag_engine_opts_t eo;
        memset(&eo, 0, sizeof(eo));
        eo.bare = cfg->bare;
        eo.shadow = cfg->shadow;
        eo.parse_timeout_us = cfg->parse_timeout_us;
        eo.max_reply = cfg->max_response_body;
        w->engine = ag_engine_new(rules, &eo);
        w->up = ag_upstream_new(w->base, on_done, cfg);
        /* every worker sees the pipe readable once main writes to it, and nobody reads it */
        w->stop = event_new(w->base, stop_fd[0], EV_READ, on_stop, w);
        event_add(w->stop, NULL);
        w->chunk = evbuffer_new();
        for (int k = 0; k < LOG_N; k++)
            ag_buf_init(&w->logbuf[k], LOG_BUF_MAX);
        w->log_flush = event_new(w->base, -1, 0, on_log_flush, w);
    }
    if (cfg->admin_host[0]) {
        /* the admin listener runs on the first worker's loop */
        int afd = open_listener(cfg->admin_host, cfg->admin_port, &admin_port, err, sizeof(err));
        if (afd < 0) {
            fprintf(stderr, "astgate: admin: %s\n", err);
            goto out;
        }
        admin = evhttp_new(ws[0].base);
        evhttp_set_gencb(admin, handle_admin, NULL);
        if (evhttp_accept_socket(admin, afd) != 0) {
            fprintf(stderr, "astgate: cannot accept on the admin socket\n");
            close(afd);
            goto out;
        }
    }
    for (uint32_t i = 0; i < nw; i++) {
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "astgate: cannot start worker %u\n", i);
            goto stop;
        }
        started++;
    }
    fprintf(stderr, "astgate: listening on http://%s:%u (%u worker%s, upstream %s, config %s%s)\n",
            cfg->listen_host, port, nw, nw == 1 ? "" : "s", cfg->upstream, cfg->source,
            cfg->shadow ? ", shadow mode" : "");
    if (admin)
        fprintf(stderr, "astgate: admin (/metrics, /healthz) on http://%s:%u\n", cfg->admin_host,
                admin_port);
    fflush(stderr);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "astgate: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
stop:
    if (started) {
        ssize_t wn;
        do
            wn = write(stop_fd[1], "x", 1);
        while (wn < 0 && errno == EINTR);
    }
    for (uint32_t i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
out:
    if (admin)
        evhttp_free(admin);
    for (uint32_t i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        log_flush(w);
        for (int k = 0; k < LOG_N; k++)
            ag_buf_dispose(&w->logbuf[k]);
        if (w->log_flush)
            event_free(w->log_flush);
        ag_wmetrics_dispose(&w->m);
        if (w->chunk)
            evbuffer_free(w->chunk);
        if (w->stop)
            event_free(w->stop);
        ag_upstream_free(w->up);
        if (w->http)
            evhttp_free(w->http);
        ag_engine_free(w->engine);
        if (w->base)
            event_base_free(w->base);
    }
    free(ws);
    free(all_metrics);
    all_metrics = NULL;
    curl_global_cleanup();
    close(stop_fd[0]);
    close(stop_fd[1]);
    stop_fd[0] = stop_fd[1] = -1;
    sink_close(&sinks[LOG_ACCESS]);
    sink_close(&sinks[LOG_REWRITE]);
    return status;
}

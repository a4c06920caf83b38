/* The proxy: the HTTP/1.1 server (src/http) for clients, curl multi (upstream.c) for the
 * upstream, one loop per worker.
 * A request is forwarded unchanged; the reply is passed through, rewritten whole (non-streamed
 * API replies) or rewritten as it streams (server-sent events). A rewrite never fails a request. */
#include "proxy.h"

#include "api/api.h"
#include "audit.h"
#include "json.h"
#include "hint.h"
#include "metrics.h"
#include "rewrite.h"
#include "server.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define HIGH_WATERMARK (1u << 20) /* unsent client bytes above which upstream reads pause */
#define AG_HDR_MAX_REPLY 256      /* headers passed to a client reply, at most */
#define AG_HDR_MAX_CONN 8         /* Connection headers of an upstream reply looked at */

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
    char path[1024]; /* own_fd: the file, reopened on SIGUSR1 */
} log_sink_t;

enum { LOG_ACCESS, LOG_REWRITE, LOG_N };

/* A generation: a configuration and its rules, as loaded at start or by a reload (SIGHUP).
 * Shared by the workers and counted with atomics, but never on the request path: main holds a
 * reference while it is the current one, and each worker one for as long as it serves with it
 * (its wgen); a request holds its worker's wgen. */
typedef struct gen {
    uint32_t refs; /* atomic */
    uint64_t id;   /* 1 at start, +1 per successful reload */
    ag_config_t *cfg;
    ag_rules_t *rules;
    bool owned;            /* cfg and rules are freed with the generation (all but the first) */
    ag_engine_t **engines; /* one per worker, built by main; a worker takes its own (NULLs it) */
    uint32_t nengines;
    ag_buf_t hint;    /* the rules' combined hint (ag_rules_hint); empty: no rule has one */
    char *hint_rules; /* JSON array of the ids of the rules with a hint, for the logs (owned) */
} gen_t;

/* What one worker serves with under one generation. Only that worker touches it, so its count
 * is a plain integer: one per request that started under it, plus one while it is current. When
 * it drops to 0 the engine, the upstream connections and the rule counters (folded into the
 * registry by rule id) go, and the generation loses a reference. */
typedef struct wgen {
    gen_t *g;
    ag_engine_t *engine;
    ag_upstream_t *up; /* its own connection pools: a reload may change upstreams and TLS */
    ag_rmetrics_t *rm;
    uint32_t refs;
} wgen_t;

typedef struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    ag_http_server_t *http;
    struct event *stop;       /* stop_fd readable: close everything now */
    struct event *drain;      /* drain_fd readable: SIGTERM */
    struct event *drain_tick; /* while draining: is anything left? */
    struct event *drain_end;  /* timeouts.drain_ms: abort what is left */
    bool draining;
    wgen_t *cur;          /* what new requests start with */
    gen_t *pending;       /* atomic: a reloaded generation main handed over, not yet taken */
    int wake;             /* eventfd: main wrote a pending generation */
    struct event *reload; /* wake readable */
    int fd;
    uint64_t seq;
    ag_wmetrics_t m;
    ag_buf_t logbuf[LOG_N];  /* lines not yet written, per log */
    struct event *log_flush; /* writes logbuf once the callbacks at hand have run */
    time_t log_sec;          /* the second log_prefix was made for */
    char log_prefix[48];     /* {"time":"YYYY-MM-DDTHH:MM:SS. */
    bool flush_pending;
    uint32_t ab_acc; /* hints: {ab: P}: P added per request, the hint arm each time it passes 100 */
} worker_t;

typedef enum req_state {
    REQ_UPSTREAM_HEAD, /* waiting for the upstream's status and headers */
    REQ_PASSING,       /* streaming the upstream body through unchanged */
    REQ_BUFFERING,     /* collecting a non-streamed API reply to rewrite */
    REQ_STREAMING,     /* rewriting a streamed API reply event by event */
    REQ_DONE,          /* reply ended; waiting to be freed */
} req_state_t;

typedef struct uspan {
    uint32_t no, nl, vo, vl; /* name and value offsets and lengths in preq.uhead */
} uspan_t;

typedef struct preq {
    worker_t *w;
    wgen_t *wg;          /* the generation the request started with, to its end */
    ag_http_req_t *hreq; /* the client's request; NULL once answered */
    CURL *easy;
    uint32_t target;             /* the upstream (ag_config_target_for) */
    struct curl_slist *up_nodes; /* request headers for the upstream, over up_lines */
    ag_buf_t up_lines;
    char request_id[80];
    char method[16];
    char path[512];
    const ag_api_t *api; /* NULL: plain passthrough */
    bool anthropic;      /* errors in Anthropic's shape (/v1/messages) */
    req_state_t state;
    long status;    /* upstream status */
    ag_buf_t uhead; /* upstream response header names and values */
    uspan_t *uspans;
    uint32_t nuspans, capuspans;
    bool head_done;
    bool reply_started;
    bool client_gone;
    bool finished; /* our side is done with hreq */
    ag_buf_t body; /* REQ_BUFFERING: the upstream body */
    ag_buf_t out;  /* scratch for client bytes */
    void *stream;  /* REQ_STREAMING: adapter state */
    ag_api_env_t env;
    ag_api_stats_t stats;
    bool stream_ended;
    bool paused;  /* upstream reads paused: the client is slow */
    char tail[2]; /* the last two bytes sent to the client */
    uint64_t bytes_in;
    uint64_t bytes_out;
    ag_buf_t reqbody;    /* the request body with the hint added (sent instead of the client's) */
    uint8_t arm;         /* AG_M_ARM_*: what hints did to the request */
    uint8_t hint_slot;   /* ag_hint_slot_t, AG_M_ARM_HINT */
    uint32_t hint_bytes; /* AG_M_ARM_HINT: bytes added */
    uint64_t t_start_ns;
    uint64_t own_ns; /* time spent in astgate's own work */
    CURLcode result;
    char errbuf[CURL_ERROR_SIZE]; /* curl's words for a failed transfer (classification only) */
} preq_t;

static log_sink_t sinks[LOG_N];
/* the worker buffer each log's lines go to: logs sent to the same place (stderr by default)
 * share one, so their lines stay in order and go out in one write */
static int buf_of[LOG_N] = {LOG_ACCESS, LOG_REWRITE};
/* for /metrics: every worker's counters (set before the workers start, read-only after) */
static ag_wmetrics_t **all_metrics;
static uint32_t nall_metrics;
static ag_mreg_t g_mreg; /* per-rule counters by rule id, across reloads */
static int stop_fd[2] = {-1, -1};
static int drain_fd[2] = {-1, -1};
static int g_draining; /* /readyz: 503 once set */
static uint32_t g_workers_done;
static ag_proxy_loader_fn g_loader;
static void *g_loader_ud;

void ag_proxy_set_loader(ag_proxy_loader_fn fn, void *ud)
{
    g_loader = fn;
    g_loader_ud = ud;
}

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
    snprintf(s->path, sizeof(s->path), "%s", spec);
    return 0;
}

static void sink_close(log_sink_t *s)
{
    if (s->own_fd)
        close(s->fd);
    s->fd = -1;
    s->own_fd = false;
}

/* SIGUSR1: the log files are opened again by name (after logrotate moved them); the new file
 * takes the old descriptor's number under the sink's lock, so workers never see a closed fd. */
static void sinks_reopen(void)
{
    for (int i = 0; i < LOG_N; i++) {
        log_sink_t *s = &sinks[i];
        if (!s->own_fd)
            continue;
        int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "astgate: cannot reopen log %s: %s (still writing the old file)\n",
                    s->path, strerror(errno));
            continue;
        }
        pthread_mutex_lock(&s->lock);
        if (dup3(fd, s->fd, O_CLOEXEC) < 0)
            fprintf(stderr, "astgate: cannot reopen log %s: %s\n", s->path, strerror(errno));
        pthread_mutex_unlock(&s->lock);
        close(fd);
    }
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

static void count_events(ag_rmetrics_t *m, const ag_result_t *res)
{
    for (uint32_t i = 0; i < res->nevents; i++) {
        const ag_event_t *ev = &res->events[i];
        uint32_t k = ev->rule_index;
        if (ev->shadow &&
            (ev->action == AG_ACTION_BLOCK || (ev->action == AG_ACTION_REWRITE && ev->reason &&
                                               strcmp(ev->reason, "shadow mode") == 0)))
            ag_rm_inc(m, k, AG_RM_SHADOWED);
        else if (ev->action == AG_ACTION_REWRITE)
            ag_rm_inc(m, k, ev->applied ? AG_RM_REWRITES : AG_RM_DROPPED);
        else if (ev->action == AG_ACTION_FLAG)
            ag_rm_inc(m, k, AG_RM_FLAGS);
        else
            ag_rm_inc(m, k, AG_RM_BLOCKS);
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
    ag_m_inc(&m->arm_replies[r->arm][AG_M_AR_CODE], 1);
    if (s->unjudged)
        ag_m_inc(&m->replies_unjudged, 1);
    if (s->rewrites + s->flags + s->dropped + s->blocked + s->shadowed + s->unjudged == 0) {
        ag_m_inc(&m->replies_raw_ok, 1);
        ag_m_inc(&m->arm_replies[r->arm][AG_M_AR_RAW_OK], 1);
    }
    if (s->flags + s->dropped + s->blocked + s->unjudged == 0) {
        ag_m_inc(&m->replies_corrected_ok, 1);
        ag_m_inc(&m->arm_replies[r->arm][AG_M_AR_CORRECTED_OK], 1);
    }
    ag_m_observe(m, AG_HIST_PARSE, s->parse_ns);
}

static void on_hold(void *ud, const ag_stream_hold_stats_t *st)
{
    preq_t *r = ud;
    ag_wmetrics_t *m = &r->w->m;
    ag_m_observe(m, AG_HIST_HELD_BYTES, st->held_max);
    if (st->violations)
        ag_m_inc(&m->hold_violations, st->violations);
}

static void on_held_wait(void *ud, uint64_t ns)
{
    preq_t *r = ud;
    ag_m_observe(&r->w->m, AG_HIST_HELD, ns);
}

/* Starts a rewrite-log line of another kind than an event's: `{"time":...,"type":TYPE,
 * "request_id":...,"route":...`; NULL when the log is off. *rc: formatting so far; end the line
 * with log_end. */
static ag_buf_t *note_begin(preq_t *r, const char *type, size_t *mark, int *rc)
{
    ag_buf_t *b = log_begin(r->w, LOG_REWRITE, mark);
    if (b == NULL)
        return NULL;
    *rc = ag_audit_begin(b, 0);
    if (*rc == AG_OK)
        *rc = ag_buf_appendf(b, ",\"type\":\"%s\",\"request_id\":\"%s\",\"route\":", type,
                             r->request_id);
    if (*rc == AG_OK)
        *rc = ag_json_append_str(b, ag_cstr(r->path));
    return b;
}

static void on_result(void *ud, int index, const ag_result_t *res)
{
    preq_t *r = ud;
    count_events(r->wg->rm, res);
    ag_audit_ctx_t ctx;
    ag_audit_ctx_init(&ctx);
    ctx.request_id = r->request_id;
    ctx.route = r->path;
    ctx.model = r->env.model;
    ctx.choice = index;
    ctx.streamed = r->state == REQ_STREAMING;
    if (r->env.tool) {
        ctx.tool = r->env.tool->call->name;
        ctx.call_id = r->env.tool->call->id;
        ctx.argument = r->env.tool->field;
        ctx.tool_file = r->env.tool->file;
    }
    for (uint32_t i = 0; i < res->nevents; i++) {
        size_t mark;
        ag_buf_t *b = log_begin(r->w, LOG_REWRITE, &mark);
        if (b == NULL)
            break;
        log_end(r->w, LOG_REWRITE, mark, ag_audit_format(b, &res->events[i], &ctx, 0));
    }
    if (res->held_max) {
        /* how much of this streamed block astgate held back at once, at most */
        size_t mark;
        int rc;
        ag_buf_t *b = note_begin(r, "hold", &mark, &rc);
        if (b == NULL)
            return;
        if (rc == AG_OK)
            rc = ag_buf_appendf(b, ",\"choice\":%d,\"block\":%u,\"held_max\":%u}\n", index,
                                res->held_block, res->held_max);
        log_end(r->w, LOG_REWRITE, mark, rc);
    }
}

/* A tool call passed through unchanged (its arguments are not JSON): a line in the rewrite log,
 * so that what astgate could not look at is never silent. */
static void on_tool_skip(void *ud, int index, const ag_tool_call_t *call, const char *why)
{
    preq_t *r = ud;
    size_t mark;
    int rc;
    ag_buf_t *b = note_begin(r, "tool_call_skipped", &mark, &rc);
    if (b == NULL)
        return;
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, ",\"choice\":%d,\"tool\":", index);
    if (rc == AG_OK)
        rc = ag_json_append_str(b, call->name);
    if (rc == AG_OK)
        rc = ag_buf_append(b, ",\"call_id\":", 11);
    if (rc == AG_OK)
        rc = ag_json_append_str(b, call->id);
    if (rc == AG_OK)
        rc = ag_buf_append(b, ",\"reason\":", 10);
    if (rc == AG_OK)
        rc = ag_json_append_str(b, ag_cstr(why));
    if (rc == AG_OK)
        rc = ag_buf_append(b, "}\n", 2);
    log_end(r->w, LOG_REWRITE, mark, rc);
}

/* Small formatters for the access line: each writes at p and returns the end. */
static char *put_lit(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char t[20];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

/* microseconds as milliseconds with three decimals */
static char *put_ms(char *p, uint64_t us)
{
    p = put_u64(p, us / 1000u);
    unsigned f = (unsigned)(us % 1000u);
    *p++ = '.';
    *p++ = (char)('0' + f / 100);
    *p++ = (char)('0' + f / 10 % 10);
    *p++ = (char)('0' + f % 10);
    return p;
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
    if (r->easy &&
        (curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &up_us) != CURLE_OK || up_us < 0))
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
    worker_t *w = r->w;
    if (ts.tv_sec != w->log_sec || w->log_prefix[0] == '\0') {
        /* the date and time to the second change once a second: formatted once */
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(w->log_prefix, sizeof(w->log_prefix), "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        w->log_sec = ts.tv_sec;
    }
    /* the line by hand (snprintf was most of a passthrough request's own instructions);
     * times as integer microseconds printed as ms.mmm */
    char head[384]; /* the longest line: about 300 bytes with every number at its widest */
    char *p = head;
    p = put_lit(p, w->log_prefix);
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    p = put_lit(p, "Z\",\"type\":\"access\",\"request_id\":\"");
    p = put_lit(p, r->request_id); /* checked: printable, no quote or backslash, < 80 */
    p = put_lit(p, "\",\"method\":\"");
    p = put_lit(p, r->method); /* a token, < 16 */
    p = put_lit(p, "\",\"path\":");
    int rc = ag_buf_append(b, head, (size_t)(p - head));
    if (rc == AG_OK)
        rc = ag_json_append_str(b, ag_cstr(r->path));
    p = head;
    p = put_lit(p, ",\"status\":");
    p = put_u64(p, (uint64_t)(status < 0 ? 0 : status));
    p = put_lit(p, ",\"upstream_status\":");
    p = put_u64(p, (uint64_t)(r->status < 0 ? 0 : r->status));
    p = put_lit(p, ",\"bytes_in\":");
    p = put_u64(p, r->bytes_in);
    p = put_lit(p, ",\"bytes_out\":");
    p = put_u64(p, r->bytes_out);
    p = put_lit(p, ",\"upstream_ms\":");
    p = put_ms(p, (uint64_t)up_us);
    p = put_lit(p, ",\"total_ms\":");
    p = put_ms(p, total_us);
    p = put_lit(p, ",\"added_ms\":");
    p = put_ms(p, own_us);
    p = put_lit(p, ",\"rewrites\":");
    p = put_u64(p, r->stats.rewrites);
    p = put_lit(p, r->state == REQ_STREAMING ? ",\"streamed\":true" : ",\"streamed\":false");
    if (r->arm != AG_M_ARM_OFF) {
        /* the request's hints arm; with the hint: its size and the rules it came from */
        p = put_lit(p, ",\"arm\":\"");
        p = put_lit(p, ag_m_arm_names[r->arm]);
        p = put_lit(p, "\"");
        if (r->arm == AG_M_ARM_HINT) {
            p = put_lit(p, ",\"hint_bytes\":");
            p = put_u64(p, r->hint_bytes);
            p = put_lit(p, ",\"hint_rules\":");
        }
    }
    if (rc == AG_OK)
        rc = ag_buf_append(b, head, (size_t)(p - head));
    if (rc == AG_OK && r->arm == AG_M_ARM_HINT)
        rc = ag_buf_append(b, r->wg->g->hint_rules, strlen(r->wg->g->hint_rules));
    if (rc == AG_OK)
        rc = ag_buf_append(b, "}\n", 2);
    log_end(r->w, LOG_ACCESS, mark, rc);
}

/* ---- generations (reload) ---- */

static void on_done(CURL *easy, CURLcode result, void *priv);

static void limits_of(const ag_config_t *cfg, ag_http_limits_t *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->max_body = cfg->max_request_body;
    lim->max_header_bytes = cfg->max_header_bytes;
    lim->max_headers = cfg->max_headers;
    lim->max_url_bytes = cfg->max_url_bytes;
    lim->max_connections = cfg->max_connections;
    lim->header_ms = cfg->header_timeout_ms;
    lim->keepalive_ms = cfg->keepalive_timeout_ms;
    lim->client_ms = cfg->client_timeout_ms;
}

/* The rules' hint and the ids it comes from; a warning when `hints` asks for hints that no rule
 * has (requests then go on as they came, counted under arm "off"). */
static void gen_hints(gen_t *g)
{
    ag_buf_init(&g->hint, 1u << 20);
    ag_buf_t ids;
    ag_buf_init(&ids, 1u << 20);
    int rc = ag_rules_hint(g->rules, &g->hint, NULL);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&ids, '[');
    ag_str_t t, e;
    for (uint32_t i = 0, k = 0; i < ag_rules_count(g->rules) && rc == AG_OK; i++) {
        if (!ag_rules_rule_hint(g->rules, i, &t, &e))
            continue;
        if (k++)
            rc = ag_buf_appendc(&ids, ',');
        if (rc == AG_OK)
            rc = ag_json_append_str(&ids, ag_cstr(ag_rules_rule_id(g->rules, i)));
    }
    if (rc == AG_OK)
        rc = ag_buf_appendc(&ids, ']');
    if (rc != AG_OK) { /* over 1 MiB of hints: none are given, and it is said */
        fprintf(stderr,
                "astgate: the rules' hints are larger than 1 MiB together: none is given\n");
        ag_buf_reset(&g->hint);
        ag_buf_reset(&ids);
        AG_ASSERT(ag_buf_append(&ids, "[]", 2) == AG_OK);
    }
    g->hint_rules = ag_xstrndup(ids.ptr, ids.len);
    ag_buf_dispose(&ids);
    const ag_config_t *cfg = g->cfg;
    bool wanted = cfg->hints.mode != AG_HINTS_OFF;
    for (uint32_t i = 0; i < cfg->nroutes; i++)
        wanted = wanted || cfg->routes[i].hints.mode != AG_HINTS_OFF;
    if (wanted && g->hint.len == 0)
        fprintf(stderr, "astgate: warning: `hints` is on for some requests, but no loaded rule has "
                        "metadata.astgate.hint: requests go on unchanged\n");
}

/* A generation for nw workers, with one reference (the caller's); takes cfg and rules when
 * owned. The engines are built here, on main's thread, so a worker's switch costs little. */
static gen_t *gen_new(ag_config_t *cfg, ag_rules_t *rules, bool owned, uint32_t nw, uint64_t id)
{
    gen_t *g = ag_xcalloc(1, sizeof(*g));
    g->refs = 1;
    g->id = id;
    g->cfg = cfg;
    g->rules = rules;
    g->owned = owned;
    g->nengines = nw;
    g->engines = ag_xcalloc(nw, sizeof(*g->engines));
    ag_engine_opts_t eo;
    memset(&eo, 0, sizeof(eo));
    eo.bare = cfg->bare;
    eo.shadow = cfg->shadow;
    eo.parse_timeout_us = cfg->parse_timeout_us;
    eo.max_reply = cfg->max_response_body;
    for (uint32_t i = 0; i < nw; i++)
        g->engines[i] = ag_engine_new(rules, &eo);
    gen_hints(g);
    return g;
}

static void gen_retain(gen_t *g)
{
    __atomic_fetch_add(&g->refs, 1, __ATOMIC_RELAXED);
}

/* Any thread; the last reference frees it (engines no worker took, and what it owns). */
static void gen_release(gen_t *g)
{
    if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (uint32_t i = 0; i < g->nengines; i++)
        ag_engine_free(g->engines[i]);
    free(g->engines);
    ag_buf_dispose(&g->hint);
    free(g->hint_rules);
    if (g->owned) {
        ag_rules_free(g->rules);
        ag_config_dispose(g->cfg);
        free(g->cfg);
    }
    free(g);
}

/* w's view of g (takes the caller's reference to g), with one reference: the worker's. Runs on
 * w's thread, or before it starts. */
static wgen_t *wgen_new(worker_t *w, gen_t *g)
{
    wgen_t *wg = ag_xcalloc(1, sizeof(*wg));
    wg->g = g;
    wg->refs = 1;
    wg->engine = g->engines[w->id];
    g->engines[w->id] = NULL;
    wg->up = ag_upstream_new(w->base, on_done, g->cfg);
    wg->rm = ag_rmetrics_new(&g_mreg, g->rules);
    return wg;
}

/* Called from a request's deferred free or the worker's switch, never inside a curl callback
 * (the upstream may go with it). */
static void wgen_release(wgen_t *wg)
{
    if (wg == NULL || --wg->refs != 0)
        return;
    ag_upstream_free(wg->up);
    ag_engine_free(wg->engine);
    ag_rmetrics_free(&g_mreg, wg->rm);
    gen_release(wg->g);
    free(wg);
}

/* Takes the generation main published, if any: new requests start with it; requests in flight
 * keep theirs to their end. */
static void worker_switch(worker_t *w)
{
    gen_t *g = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    if (g == NULL)
        return;
    wgen_t *old = w->cur;
    w->cur = wgen_new(w, g);
    ag_http_limits_t lim;
    limits_of(g->cfg, &lim);
    ag_http_server_set_limits(w->http, &lim);
    wgen_release(old);
}

static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t v;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    worker_switch(arg);
}

/* ---- request lifetime ---- */

static void preq_free(preq_t *r)
{
    if (r->easy) {
        /* the pooled handle keeps its constant options; drop pointers into r */
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(r->easy, CURLOPT_NOBODY, 0L);
        ag_upstream_easy_put(r->wg->up, r->easy, r->target);
    }
    free(r->up_nodes);
    ag_buf_dispose(&r->up_lines);
    ag_buf_dispose(&r->uhead);
    free(r->uspans);
    if (r->stream && r->api)
        r->api->stream_free(r->stream);
    ag_buf_dispose(&r->body);
    ag_buf_dispose(&r->out);
    ag_buf_dispose(&r->reqbody);
    wgen_release(r->wg);
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

/* Our side is done with the client request: it is answered (or aborted), and r no longer
 * touches it. */
static void detach(preq_t *r)
{
    r->hreq = NULL;
    r->finished = true;
}

/* The front end tells us the client left (or stopped reading): cancel the upstream transfer at
 * once, whatever it was doing. */
static void on_client_gone(void *ud, ag_http_req_t *req)
{
    preq_t *r = req->ud;
    (void)ud;
    if (r == NULL || r->finished)
        return;
    r->client_gone = true;
    if (r->state != REQ_DONE && r->easy) {
        ag_upstream_cancel(r->wg->up, r->easy);
        access_line(r, 499);
        r->state = REQ_DONE;
    }
    ag_http_abort(req);
    detach(r);
    release(r);
}

static bool anthropic_path(ag_str_t path)
{
    return path.len >= 12 && memcmp(path.ptr, "/v1/messages", 12) == 0 &&
           (path.len == 12 || path.ptr[12] == '/');
}

/* An error body in the API's shape: OpenAI's, or Anthropic's on /v1/messages. */
static int error_json(ag_buf_t *j, bool anthropic, const char *type, const char *code,
                      const char *message, const char *request_id)
{
    int rc;
    if (anthropic) {
        /* the Anthropic SDK reads {"type":"error","error":{"type","message"}} */
        static const char head[] = "{\"type\":\"error\",\"error\":{\"type\":";
        rc = ag_buf_append(j, head, sizeof(head) - 1);
        if (rc == AG_OK)
            rc = ag_json_append_str(j, ag_cstr(type));
        if (rc == AG_OK)
            rc = ag_buf_append(j, ",\"message\":", 11);
        if (rc == AG_OK)
            rc = ag_json_append_str(j, ag_cstr(message));
        if (rc == AG_OK && code) {
            rc = ag_buf_append(j, ",\"code\":", 8);
            if (rc == AG_OK)
                rc = ag_json_append_str(j, ag_cstr(code));
        }
        if (rc == AG_OK)
            rc = ag_buf_appendf(j, "},\"request_id\":\"%s\"}", request_id);
    } else {
        rc = ag_buf_append(j, "{\"error\":{\"message\":", 20);
        if (rc == AG_OK)
            rc = ag_json_append_str(j, ag_cstr(message));
        if (rc == AG_OK)
            rc = ag_buf_append(j, ",\"type\":", 8);
        if (rc == AG_OK)
            rc = ag_json_append_str(j, ag_cstr(type));
        if (rc == AG_OK)
            rc = ag_buf_append(j, ",\"param\":null,\"code\":", 21);
        if (rc == AG_OK)
            rc = code ? ag_json_append_str(j, ag_cstr(code)) : ag_buf_append(j, "null", 4);
        if (rc == AG_OK)
            rc = ag_buf_append(j, "}}", 2);
    }
    return rc;
}

static void send_error(preq_t *r, int status, const char *type, const char *code,
                       const char *message)
{
    ag_buf_t j;
    ag_buf_init(&j, 1u << 16);
    int rc = error_json(&j, r->anthropic, type, code, message, r->request_id);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&j, '\n');
    ag_http_header_t h[2] = {
        {ag_cstr("Content-Type"), ag_cstr("application/json")},
        {ag_cstr("x-request-id"), ag_cstr(r->request_id)},
    };
    r->bytes_out += j.len;
    access_line(r, status);
    ag_http_respond(r->hreq, status, h, 2, j.ptr ? j.ptr : "", j.len);
    detach(r);
    ag_buf_dispose(&j);
}

/* ---- headers ---- */

static bool hop_by_hop(ag_str_t name)
{
    /* by length first: most names are of none of these lengths */
    static const struct {
        uint8_t len;
        const char *name;
    } names[] = {{10, "connection"},
                 {10, "keep-alive"},
                 {16, "proxy-connection"},
                 {18, "proxy-authenticate"},
                 {19, "proxy-authorization"},
                 {2, "te"},
                 {7, "trailer"},
                 {8, "trailers"},
                 {17, "transfer-encoding"},
                 {7, "upgrade"},
                 {4, "host"},
                 {14, "content-length"},
                 {6, "expect"},
                 {15, "accept-encoding"},
                 {12, "x-request-id"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name.len == names[i].len && ag_str_eqci(name, names[i].name))
            return true;
    return false;
}

/* Headers named in a Connection header (any of them) are hop-by-hop too. */
static bool in_connection(const ag_http_header_t *h, uint32_t n, ag_str_t name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!ag_str_eqci(h[i].name, "connection"))
            continue;
        const char *p = h[i].value.ptr, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',')
                p++;
            const char *e = p;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if ((size_t)(e - s) == name.len && strncasecmp(s, name.ptr, name.len) == 0)
                return true;
        }
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
        ag_buf_reset(&r->uhead);
        r->nuspans = 0;
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
    if (r->nuspans == r->capuspans) {
        r->capuspans = r->capuspans ? r->capuspans * 2 : 16;
        r->uspans = ag_xrealloc(r->uspans, r->capuspans * sizeof(*r->uspans));
    }
    uint32_t no = (uint32_t)r->uhead.len;
    if (ag_buf_append(&r->uhead, buf, nl) != AG_OK)
        return 0; /* an upstream head beyond its cap: fail the transfer */
    uint32_t vo = (uint32_t)r->uhead.len;
    if (ag_buf_append(&r->uhead, v, (size_t)(end - v)) != AG_OK)
        return 0;
    r->uspans[r->nuspans++] = (uspan_t){no, (uint32_t)nl, vo, (uint32_t)(end - v)};
    r->own_ns += now_ns() - t0;
    return n;
}

static ag_str_t span_name(const preq_t *r, uint32_t i)
{
    return ag_str(r->uhead.ptr + r->uspans[i].no, r->uspans[i].nl);
}

static ag_str_t span_value(const preq_t *r, uint32_t i)
{
    return ag_str(r->uhead.ptr + r->uspans[i].vo, r->uspans[i].vl);
}

static bool up_header(const preq_t *r, const char *name, ag_str_t *out)
{
    for (uint32_t i = 0; i < r->nuspans; i++)
        if (ag_str_eqci(span_name(r, i), name)) {
            *out = span_value(r, i);
            return true;
        }
    return false;
}

/* Validators of the upstream's body, which a rewritten body no longer matches. */
static bool validator(ag_str_t name)
{
    return ag_str_eqci(name, "etag") || ag_str_eqci(name, "last-modified") ||
           ag_str_eqci(name, "content-md5");
}

/* The upstream's end-to-end headers for the client reply, plus ours (extra), in h (cap
 * entries). */
static uint32_t reply_headers(preq_t *r, ag_http_header_t *h, uint32_t cap, bool rewritten,
                              const ag_http_header_t *extra, uint32_t nextra)
{
    uint32_t n = 0;
    ag_http_header_t conn_h[AG_HDR_MAX_CONN];
    uint32_t nconn = 0;
    for (uint32_t i = 0; i < r->nuspans && nconn < AG_HDR_MAX_CONN; i++)
        if (ag_str_eqci(span_name(r, i), "connection"))
            conn_h[nconn++] = (ag_http_header_t){span_name(r, i), span_value(r, i)};
    for (uint32_t i = 0; i < r->nuspans && n + nextra + 1 < cap; i++) {
        ag_str_t name = span_name(r, i);
        if (hop_by_hop(name) || ag_str_eqci(name, "content-encoding") ||
            (nconn && in_connection(conn_h, nconn, name)) || (rewritten && validator(name)))
            continue;
        h[n++] = (ag_http_header_t){name, span_value(r, i)};
    }
    for (uint32_t i = 0; i < nextra && n < cap; i++)
        h[n++] = extra[i];
    if (n < cap)
        h[n++] = (ag_http_header_t){ag_cstr("x-request-id"), ag_cstr(r->request_id)};
    return n;
}

static bool is_event_stream(const preq_t *r)
{
    ag_str_t ct;
    return up_header(r, "content-type", &ct) && ct.len >= 17 &&
           strncasecmp(ct.ptr, "text/event-stream", 17) == 0;
}

static bool is_json(const preq_t *r)
{
    ag_str_t ct;
    if (!up_header(r, "content-type", &ct))
        return false;
    if (ct.len >= 16 && strncasecmp(ct.ptr, "application/json", 16) == 0)
        return true;
    for (size_t i = 0; i + 5 <= ct.len; i++)
        if (memcmp(ct.ptr + i, "+json", 5) == 0)
            return true;
    return false;
}

/* ---- the reply ---- */

/* The client took half of what waited: read the upstream again (le-proxy). */
static void on_client_drained(void *arg)
{
    preq_t *r = arg;
    if (r->state == REQ_DONE || r->client_gone || !r->paused)
        return;
    r->paused = false;
    curl_easy_pause(r->easy, CURLPAUSE_CONT);
    ag_upstream_kick(r->wg->up);
}

static void send_chunk(preq_t *r, const void *p, size_t n)
{
    if (n == 0 || r->client_gone || r->hreq == NULL)
        return;
    ag_http_write(r->hreq, p, n);
    r->bytes_out += n;
    /* remember whether the client's bytes end at a server-sent event's boundary */
    const char *b = p;
    r->tail[0] = n >= 2 ? b[n - 2] : r->tail[1];
    r->tail[1] = b[n - 1];
    if (!r->paused && ag_http_pending(r->hreq) > HIGH_WATERMARK) {
        r->paused = true;
        curl_easy_pause(r->easy, CURLPAUSE_RECV);
        ag_http_on_drain(r->hreq, HIGH_WATERMARK / 2, on_client_drained, r);
    }
}

static void start_reply(preq_t *r)
{
    ag_http_header_t h[AG_HDR_MAX_REPLY];
    /* a streamed API reply may be rewritten: the upstream's validators would lie */
    uint32_t n = reply_headers(r, h, AG_HDR_MAX_REPLY, r->state == REQ_STREAMING, NULL, 0);
    r->reply_started = true;
    ag_http_start(r->hreq, (int)r->status, h, n, -1);
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
        ag_buf_init(&r->body, r->wg->g->cfg->max_response_body);
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
                 r->stats.blocked_message && r->stats.blocked_message[0] ? r->stats.blocked_message
                                                                         : r->stats.blocked_rule);
        send_error(r, r->wg->g->cfg->block_status, "astgate_blocked", r->stats.blocked_rule, msg);
        return;
    }
    const ag_buf_t *body = rc == AG_OK ? &r->out : &r->body;
    bool rewritten = rc == AG_OK && !(r->out.len == r->body.len &&
                                      memcmp(r->out.ptr, r->body.ptr, r->out.len) == 0);
    char num[32];
    snprintf(num, sizeof(num), "%u", r->stats.rewrites);
    char ids[1024] = "";
    ag_http_header_t extra[2] = {{ag_cstr("x-astgate-rewrites"), ag_cstr(num)}};
    uint32_t nextra = 1;
    if (r->stats.nrule_ids) {
        size_t off = 0;
        for (uint32_t i = 0; i < r->stats.nrule_ids && off < sizeof(ids); i++)
            off += (size_t)snprintf(ids + off, sizeof(ids) - off, "%s%s", i ? "," : "",
                                    r->stats.rule_ids[i]);
        extra[nextra++] = (ag_http_header_t){ag_cstr("x-astgate-rules"), ag_cstr(ids)};
    }
    ag_http_header_t h[AG_HDR_MAX_REPLY];
    uint32_t n = reply_headers(r, h, AG_HDR_MAX_REPLY, rewritten, extra, nextra);
    r->bytes_out += body->len;
    access_line(r, (int)r->status);
    ag_http_respond(r->hreq, (int)r->status, h, n, body->ptr ? body->ptr : "", body->len);
    detach(r);
}

/* What a failed transfer tells the client: the JSON error code and status (from
 * ag_upstream_error_code) and a message for people (curl's generic text: upstream addresses are
 * not told to clients). */
static const char *upstream_failure(const preq_t *r, CURLcode result, bool mid_reply, int *st,
                                    char *msg, size_t cap)
{
    *st = 502;
    const char *code = ag_upstream_error_code(result, r->errbuf, st);
    snprintf(msg, cap, "astgate %s: %s",
             mid_reply ? "lost the upstream mid-reply" : "could not get a reply from the upstream",
             curl_easy_strerror(result));
    return code;
}

/* The upstream failed after the reply started: the client must be able to tell. At an event
 * boundary of a server-sent event stream, an error event in the API's shape goes first; then
 * the connection is closed without the last chunk (as nginx does). */
static void abort_reply(preq_t *r, CURLcode result)
{
    int st;
    char msg[512];
    const char *code = upstream_failure(r, result, true, &st, msg, sizeof(msg));
    bool boundary = r->bytes_out == 0 || (r->tail[0] == '\n' && r->tail[1] == '\n');
    if (r->state == REQ_STREAMING && boundary) {
        ag_buf_t j;
        ag_buf_init(&j, 1u << 16);
        int rc;
        if (r->anthropic || r->api == &ag_api_openai_responses)
            rc = ag_buf_append(&j, "event: error\ndata: ", 19);
        else
            rc = ag_buf_append(&j, "data: ", 6);
        if (rc == AG_OK && r->api == &ag_api_openai_responses)
            rc = ag_buf_appendf(&j, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
        if (rc == AG_OK && r->api == &ag_api_openai_responses)
            rc = ag_json_append_str(&j, ag_cstr(msg));
        if (rc == AG_OK && r->api == &ag_api_openai_responses)
            rc = ag_buf_append(&j, ",\"param\":null}", 14);
        else if (rc == AG_OK)
            rc = error_json(&j, r->anthropic, "astgate_upstream_error", code, msg, r->request_id);
        if (rc == AG_OK)
            rc = ag_buf_append(&j, "\n\n", 2);
        if (rc == AG_OK)
            send_chunk(r, j.ptr, j.len);
        ag_buf_dispose(&j);
    }
    access_line(r, st);
    ag_http_abort(r->hreq);
    detach(r);
}

static void on_done(CURL *easy, CURLcode result, void *priv)
{
    preq_t *r = priv;
    (void)easy;
    r->result = result;
    if (r->state == REQ_DONE || r->finished)
        return;
    if (!r->head_done || r->state == REQ_UPSTREAM_HEAD) {
        if (r->head_done && result == CURLE_OK) {
            /* a reply without a body */
            on_head(r);
        } else {
            int st;
            char msg[512];
            const char *code = upstream_failure(r, result, false, &st, msg, sizeof(msg));
            send_error(r, st, st == 504 ? "astgate_upstream_timeout" : "astgate_upstream_error",
                       code, msg);
            goto out;
        }
    }
    bool failed = result != CURLE_OK && !r->stream_ended;
    switch (r->state) {
    case REQ_BUFFERING:
        if (failed) {
            int st;
            char msg[512];
            const char *code = upstream_failure(r, result, true, &st, msg, sizeof(msg));
            send_error(r, st, "astgate_upstream_error", code, msg);
        } else {
            finish_buffered(r);
        }
        goto out;
    case REQ_STREAMING:
        if (failed)
            break;
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
    if (failed) {
        abort_reply(r, result);
        goto out;
    }
    access_line(r, (int)r->status);
    ag_http_end(r->hreq);
    detach(r);
out:
    r->state = REQ_DONE;
    release(r);
}

/* Appends to a buffer without a cap (or one the caller sized): cannot fail but on OOM. */
static void put(ag_buf_t *b, const void *p, size_t n)
{
    if (ag_buf_append(b, p, n) != AG_OK)
        AG_ASSERT(!"append to an uncapped buffer failed");
}

static void put_str(ag_buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* ---- /metrics and /healthz ---- */

static bool admin_path(ag_str_t path)
{
    return ag_str_eqc(path, "/metrics") || ag_str_eqc(path, "/healthz") ||
           ag_str_eqc(path, "/readyz");
}

static void serve_admin(ag_http_req_t *req)
{
    int status = 200;
    ag_buf_t t;
    ag_buf_init(&t, 16u << 20);
    const char *ct = "text/plain; charset=utf-8";
    if (!ag_str_eqc(req->method, "GET") && !ag_str_eqc(req->method, "HEAD")) {
        status = 405;
        put_str(&t, "method not allowed\n");
    } else if (ag_str_eqc(req->path, "/healthz")) {
        put_str(&t, "ok\n");
    } else if (ag_str_eqc(req->path, "/readyz")) {
        /* ready while serving; from SIGTERM on, load balancers should stop sending */
        bool draining = __atomic_load_n(&g_draining, __ATOMIC_RELAXED);
        status = draining ? 503 : 200;
        put_str(&t, draining ? "draining\n" : "ok\n");
    } else if (ag_str_eqc(req->path, "/metrics")) {
        if (ag_metrics_render(&t, all_metrics, nall_metrics, &g_mreg) != AG_OK) {
            status = 500;
            ag_buf_reset(&t);
        }
        ct = "text/plain; version=0.0.4; charset=utf-8";
    } else {
        status = 404;
        put_str(&t, "not found\n");
    }
    ag_http_header_t h[1] = {{ag_cstr("Content-Type"), ag_cstr(ct)}};
    ag_http_respond(req, status, h, 1, t.ptr ? t.ptr : "", t.len);
    ag_buf_dispose(&t);
}

static void admin_request(void *ud, ag_http_req_t *req)
{
    (void)ud;
    serve_admin(req);
}

static void admin_error(void *ud, ag_http_req_t *req, int status, const char *code,
                        const char *message)
{
    (void)ud;
    (void)code;
    char body[300];
    int n = snprintf(body, sizeof(body), "%s\n", message);
    ag_http_header_t h[1] = {{ag_cstr("Content-Type"), ag_cstr("text/plain; charset=utf-8")}};
    ag_http_respond(req, status, h, 1, body, (size_t)n < sizeof(body) ? (size_t)n : 0);
}

static void admin_gone(void *ud, ag_http_req_t *req)
{
    (void)ud;
    ag_http_abort(req);
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

static bool valid_request_id(ag_str_t v)
{
    if (v.len == 0 || v.len >= 80)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.ptr[i] <= 0x20 || (unsigned char)v.ptr[i] >= 0x7f || v.ptr[i] == '"' ||
            v.ptr[i] == '\\')
            return false;
    return true;
}

/* A request record for a request the front end handed over (or refused). */
static preq_t *preq_new(worker_t *w, ag_http_req_t *req)
{
    preq_t *r = ag_xcalloc(1, sizeof(*r));
    r->t_start_ns = req->t_start_ns ? req->t_start_ns : now_ns();
    r->w = w;
    /* a reload main has published is taken before the first request after it: one atomic load */
    if (__atomic_load_n(&w->pending, __ATOMIC_ACQUIRE) != NULL)
        worker_switch(w);
    r->wg = w->cur;
    r->wg->refs++;
    r->hreq = req;
    req->ud = r;
    r->state = REQ_UPSTREAM_HEAD;
    r->bytes_in = req->bytes_in;
    snprintf(r->method, sizeof(r->method), "%.*s", (int)req->method.len, req->method.ptr);
    size_t plen = req->path.len < sizeof(r->path) ? req->path.len : sizeof(r->path) - 1;
    memcpy(r->path, req->path.ptr ? req->path.ptr : "", plen);
    r->path[plen] = '\0';
    r->anthropic = anthropic_path(req->path);
    const ag_str_t *rid = NULL;
    for (uint32_t i = 0; i < req->nheaders; i++)
        if (ag_str_eqci(req->headers[i].name, "x-request-id"))
            rid = &req->headers[i].value;
    if (rid && valid_request_id(*rid))
        snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)rid->len, rid->ptr);
    else
        new_request_id(w, r->request_id, sizeof(r->request_id));
    if (ag_str_eqc(req->method, "POST"))
        for (const ag_api_t *const *a = APIS; *a; a++)
            if (ag_str_eqc(req->path, (*a)->path))
                r->api = *a;
    return r;
}

static void on_refused(void *ud, ag_http_req_t *req, int status, const char *code,
                       const char *message)
{
    worker_t *w = ud;
    preq_t *r = preq_new(w, req);
    r->state = REQ_DONE;
    char msg[300];
    snprintf(msg, sizeof(msg), "astgate refused the request: %s", message);
    send_error(r, status, "invalid_request_error", code, msg);
    release(r);
}

static ag_hint_api_t hint_api(const ag_api_t *api)
{
    return api == &ag_api_openai_responses ? AG_HINT_RESPONSES
           : api == &ag_api_anthropic      ? AG_HINT_ANTHROPIC
                                           : AG_HINT_CHAT;
}

/* A rewrite-log line for a request that got the hint: where it went, its size, its rules. */
static void hint_note(preq_t *r)
{
    size_t mark;
    int rc;
    ag_buf_t *b = note_begin(r, "hint", &mark, &rc);
    if (b == NULL)
        return;
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, ",\"api\":\"%s\",\"slot\":\"%s\",\"bytes\":%u,\"rules\":%s}\n",
                            r->api->name, ag_hint_slot_name((ag_hint_slot_t)r->hint_slot),
                            r->hint_bytes, r->wg->g->hint_rules);
    log_end(r->w, LOG_REWRITE, mark, rc);
}

/* Request-side hints (`hints:` of the request's target): the body to send upstream, the client's
 * or r->reqbody with the rules' hint added; r->arm says which and why. Under {ab: P} the draw is
 * a per-worker counter, not a random number: P is added per request that can take the hint and
 * every time the sum passes 100 the request gets it, so of any 100 consecutive such requests a
 * worker serves, P get it (50: every other one). Only requests that have a slot are drawn, so
 * that both arms hold the same kind of request. */
static ag_str_t hint_request(preq_t *r, ag_str_t body)
{
    const gen_t *g = r->wg->g;
    ag_hints_cfg_t h = ag_config_target_hints(g->cfg, r->target);
    if (r->api == NULL || h.mode == AG_HINTS_OFF || g->hint.len == 0)
        return body;
    ag_wmetrics_t *m = &r->w->m;
    int route = r->api == &ag_api_openai_chat        ? AG_M_ROUTE_CHAT
                : r->api == &ag_api_openai_responses ? AG_M_ROUTE_RESPONSES
                                                     : AG_M_ROUTE_MESSAGES;
    /* the slot first: the control arm and a body without one are sent as they came, uncopied */
    ag_hint_place_t at;
    if (ag_hint_locate(hint_api(r->api), body, &at) != AG_OK) {
        r->arm = AG_M_ARM_NO_SLOT;
    } else if (h.mode == AG_HINTS_AB && (r->w->ab_acc += h.ab_pct) < 100) {
        r->arm = AG_M_ARM_CONTROL;
    } else {
        if (h.mode == AG_HINTS_AB)
            r->w->ab_acc -= 100;
        /* escaping grows a byte to 6 at most; the slot's own syntax is under 64 bytes */
        ag_buf_init(&r->reqbody, body.len + g->hint.len * 6 + 256);
        if (ag_hint_emit(body, ag_buf_str(&g->hint), &at, &r->reqbody) == AG_OK) {
            r->arm = AG_M_ARM_HINT;
            r->hint_slot = (uint8_t)at.slot;
            r->hint_bytes = (uint32_t)(r->reqbody.len - body.len);
        } else {
            ag_buf_dispose(&r->reqbody);
            r->arm = AG_M_ARM_NO_SLOT;
        }
    }
    ag_m_inc(&m->hint_requests[route][r->arm], 1);
    if (r->arm != AG_M_ARM_HINT)
        return body;
    ag_m_inc(&m->hint_bytes, r->hint_bytes);
    hint_note(r);
    return ag_buf_str(&r->reqbody);
}

/* Appends "Name: value" for the upstream to r->up_lines; its offset is kept in offs. */
static int up_line(preq_t *r, uint32_t *offs, uint32_t *n, ag_str_t name, ag_str_t value,
                   ag_str_t more)
{
    offs[(*n)++] = (uint32_t)r->up_lines.len;
    int rc = ag_buf_append(&r->up_lines, name.ptr, name.len);
    if (rc == AG_OK)
        rc = ag_buf_append(&r->up_lines, ": ", value.len || more.len ? 2 : 1);
    if (rc == AG_OK)
        rc = ag_buf_append(&r->up_lines, value.ptr, value.len);
    if (rc == AG_OK && more.len)
        rc = ag_buf_append(&r->up_lines, more.ptr, more.len);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&r->up_lines, '\0');
    return rc;
}

/* The request's end-to-end headers for the upstream, as a curl_slist built in one pass over
 * one buffer (curl_slist_append walks the whole list on every call). */
static void build_up_headers(preq_t *r, const ag_http_req_t *req)
{
    uint32_t cap = req->nheaders + 8;
    uint32_t *offs = ag_xmalloc(cap * sizeof(*offs));
    uint32_t n = 0;
    ag_buf_init(&r->up_lines, SIZE_MAX);
    bool has_ct = false, fwd_done = false;
    int mode = r->wg->g->cfg->forwarded;
    ag_http_header_t conn_h[AG_HDR_MAX_CONN];
    uint32_t nconn = 0;
    for (uint32_t i = 0; i < req->nheaders && nconn < AG_HDR_MAX_CONN; i++)
        if (req->headers[i].name.len == 10 && ag_str_eqci(req->headers[i].name, "connection"))
            conn_h[nconn++] = req->headers[i];
    /* X-Forwarded-For: the client's values joined in order, then its address */
    ag_buf_t xff;
    ag_buf_init(&xff, SIZE_MAX);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const ag_http_header_t *h = &req->headers[i];
        if (hop_by_hop(h->name) || (nconn && in_connection(conn_h, nconn, h->name)))
            continue;
        if (mode != AG_FORWARDED_OFF && ag_str_eqci(h->name, "x-forwarded-for")) {
            if (mode == AG_FORWARDED_APPEND && h->value.len) {
                if (xff.len)
                    put(&xff, ", ", 2);
                put(&xff, h->value.ptr, h->value.len);
            }
            continue;
        }
        if (ag_str_eqci(h->name, "content-type"))
            has_ct = true;
        if (mode == AG_FORWARDED_APPEND && !fwd_done && ag_str_eqci(h->name, "forwarded")) {
            /* RFC 7239: the client's element, once, on the first Forwarded header; IPv6
             * quoted and bracketed */
            char el[INET6_ADDRSTRLEN + 16];
            snprintf(el, sizeof(el), strchr(req->peer, ':') ? ", for=\"[%s]\"" : ", for=%s",
                     req->peer);
            (void)up_line(r, offs, &n, h->name, h->value, ag_cstr(el));
            fwd_done = true;
            continue;
        }
        (void)up_line(r, offs, &n, h->name, h->value, ag_str("", 0));
    }
    if (mode != AG_FORWARDED_OFF) {
        if (xff.len)
            put(&xff, ", ", 2);
        put(&xff, req->peer, strlen(req->peer));
        (void)up_line(r, offs, &n, ag_cstr("X-Forwarded-For"), ag_buf_str(&xff), ag_str("", 0));
    }
    ag_buf_dispose(&xff);
    if (!has_ct) /* curl must not invent one */
        (void)up_line(r, offs, &n, ag_cstr("Content-Type"), ag_str("", 0), ag_str("", 0));
    (void)up_line(r, offs, &n, ag_cstr("x-request-id"), ag_cstr(r->request_id), ag_str("", 0));
    (void)up_line(r, offs, &n, ag_cstr("Expect"), ag_str("", 0), ag_str("", 0));
    r->up_nodes = ag_xcalloc(n, sizeof(*r->up_nodes));
    for (uint32_t i = 0; i < n; i++) {
        r->up_nodes[i].data = r->up_lines.ptr + offs[i];
        r->up_nodes[i].next = i + 1 < n ? &r->up_nodes[i + 1] : NULL;
    }
    free(offs);
}

static void on_request(void *ud, ag_http_req_t *req)
{
    worker_t *w = ud;
    uint64_t t0 = now_ns();
    /* the admin listener's place is a restart setting: every generation has the first one's */
    const ag_config_t *cfg = w->cur->g->cfg;
    if (cfg->admin_port == 0 && cfg->admin_host[0] == '\0' && admin_path(req->path)) {
        serve_admin(req);
        return;
    }
    preq_t *r = preq_new(w, req);
    wgen_t *wg = r->wg;
    cfg = wg->g->cfg;
    ag_buf_init(&r->out, 64u << 20);
    ag_buf_init(&r->uhead, 1u << 20);
    r->env.engine = wg->engine;
    r->env.max_held = cfg->max_held;
    r->env.on_result = on_result;
    r->env.on_reply = on_reply;
    r->env.on_tool_skip = on_tool_skip;
    r->env.tools = &cfg->tools;
    r->env.on_hold = on_hold;
    r->env.on_held_wait = on_held_wait;
    r->env.ud = r;

    r->target = ag_config_target_for(cfg, r->path);
    r->env.hold = ag_config_target_hold(cfg, r->target);
    const char *base = ag_config_target_url(cfg, r->target);
    /* the URL: the target's base, then exactly the path routing saw (sent as is) */
    char *url = NULL;
    size_t blen = strlen(base);
    url = ag_xmalloc(blen + req->target.len + 1);
    memcpy(url, base, blen);
    memcpy(url + blen, req->target.ptr, req->target.len);
    url[blen + req->target.len] = '\0';
    CURL *e = ag_upstream_easy(wg->up, r->target);
    r->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, url); /* curl copies it */
    free(url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);

    /* the request goes on unchanged: method, body and end-to-end headers; only `hints` may add
     * to an API request's body (curl then sends the new Content-Length: the client's is a
     * hop-by-hop header here) */
    const char *m = r->method;
    ag_str_t sent = hint_request(r, req->body);
    size_t bl = sent.len;
    /* a pooled handle remembers the last request's method: set every method option */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(m, "POST") != 0) {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* no body unless there is one */
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        }
        if (bl || strcmp(m, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bl);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, bl ? sent.ptr : "");
        }
    }
    if (strcmp(m, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    build_up_headers(r, req);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->up_nodes);
    r->own_ns += now_ns() - t0;
    if (ag_upstream_start(wg->up, e) != AG_OK) {
        r->state = REQ_DONE;
        send_error(r, 502, "astgate_upstream_error", "upstream_unreachable",
                   "astgate could not start the upstream request");
        release(r);
        return;
    }
    /* send now rather than on the next loop turn (curl asked for a 0 ms timer); r may be done
     * when this returns, but it is only freed by the loop */
    ag_upstream_kick(wg->up);
}

/* ---- workers ---- */

/* Second SIGTERM, SIGINT, SIGQUIT, or the drain's end: every connection closes now (a request in
 * flight is cancelled upstream and logged as 499), then the loop ends. */
static void stop_now(worker_t *w)
{
    ag_http_server_close_all(w->http);
    event_base_loopbreak(w->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stop_now(arg);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    if (ag_http_server_connections(w->http) == 0)
        stop_now(w);
}

static void on_drain_end(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    fprintf(stderr, "astgate: worker %d: timeouts.drain_ms is over, closing %u connection%s\n",
            w->id, ag_http_server_connections(w->http),
            ag_http_server_connections(w->http) == 1 ? "" : "s");
    stop_now(w);
}

/* SIGTERM: stop accepting (the listening socket closes, so new connections are refused), close
 * idle connections, answer what was received, give replies in flight timeouts.drain_ms. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    if (w->draining)
        return;
    w->draining = true;
    ag_http_server_drain(w->http);
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    /* a poll, only while draining: a few wake-ups, no bookkeeping on the request path */
    struct timeval tick = {0, 20000};
    event_add(w->drain_tick, &tick);
    uint32_t ms = w->cur->g->cfg->drain_timeout_ms;
    if (ms) {
        struct timeval end = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        event_add(w->drain_end, &end);
    }
    on_drain_tick(-1, 0, w);
}

/* The admin listener (/metrics, /healthz, /readyz) has a thread and loop of its own, so that it
 * answers for as long as the process runs, through a drain, whichever workers end first. */
typedef struct admin_loop {
    struct event_base *base;
    ag_http_server_t *http;
    struct event *stop; /* stop_fd readable: written once every worker has ended */
    pthread_t thread;
} admin_loop_t;

static void on_admin_stop(evutil_socket_t fd, short what, void *arg)
{
    admin_loop_t *a = arg;
    (void)fd;
    (void)what;
    ag_http_server_close_all(a->http);
    event_base_loopbreak(a->base);
}

static void *admin_main(void *arg)
{
    admin_loop_t *a = arg;
    event_base_dispatch(a->base);
    for (int i = 0; i < 4; i++)
        event_base_loop(a->base, EVLOOP_NONBLOCK);
    return NULL;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    event_base_dispatch(w->base);
    /* what stop_now scheduled: the cancelled requests' and closed connections' deferred frees */
    for (int i = 0; i < 4; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    log_flush(w);
    __atomic_fetch_add(&g_workers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to
 * $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@'). */
static void notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        fprintf(stderr, "astgate: sd_notify %s: %s\n", msg, strerror(errno));
    close(fd);
}

/* ---- reload (SIGHUP), on main's thread ---- */

static void restart_only(const char *key, const char *was, const char *now)
{
    fprintf(stderr, "astgate: reload: %s changed (%s -> %s): that takes a restart; still %s\n", key,
            was, now, was);
}

/* Settings that only a restart can change: the new configuration gets the old values, and the
 * log says which ones differed. */
static void keep_restart_settings(const ag_config_t *old, ag_config_t *cfg)
{
    char was[300], now[300];
    if (strcmp(old->listen_host, cfg->listen_host) != 0 || old->listen_port != cfg->listen_port) {
        snprintf(was, sizeof(was), "%s:%u", old->listen_host, old->listen_port);
        snprintf(now, sizeof(now), "%s:%u", cfg->listen_host, cfg->listen_port);
        restart_only("listen", was, now);
    }
    if (strcmp(old->admin_host, cfg->admin_host) != 0 || old->admin_port != cfg->admin_port) {
        snprintf(was, sizeof(was), "%s:%u", old->admin_host[0] ? old->admin_host : "(on listen)",
                 old->admin_port);
        snprintf(now, sizeof(now), "%s:%u", cfg->admin_host[0] ? cfg->admin_host : "(on listen)",
                 cfg->admin_port);
        restart_only("admin", was, now);
    }
    if (old->workers != cfg->workers) {
        snprintf(was, sizeof(was), "%u", old->workers);
        snprintf(now, sizeof(now), "%u", cfg->workers);
        restart_only("workers", was, now);
    }
    if (strcmp(old->access_log, cfg->access_log) != 0)
        restart_only("logs.access", old->access_log, cfg->access_log);
    if (strcmp(old->rewrite_log, cfg->rewrite_log) != 0)
        restart_only("logs.rewrite", old->rewrite_log, cfg->rewrite_log);
    memcpy(cfg->listen_host, old->listen_host, sizeof(cfg->listen_host));
    cfg->listen_port = old->listen_port;
    memcpy(cfg->admin_host, old->admin_host, sizeof(cfg->admin_host));
    cfg->admin_port = old->admin_port;
    cfg->workers = old->workers;
    memcpy(cfg->access_log, old->access_log, sizeof(cfg->access_log));
    memcpy(cfg->rewrite_log, old->rewrite_log, sizeof(cfg->rewrite_log));
}

static void notify(const char *msg);

/* SIGHUP: load and check everything (the loader serve started with); on success hand the new
 * generation to every worker (it takes it before its next request) and make it main's current
 * one; on failure keep serving with the old one. The outcome goes to the log and /metrics. */
static void reload(worker_t *ws, uint32_t nw, gen_t **curp, ag_reload_stats_t *st)
{
    gen_t *cur = *curp;
    char msg[64];
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)mono.tv_sec * 1000000ull +
                 (unsigned long long)mono.tv_nsec / 1000);
    notify(msg);
    ag_config_t *cfg = ag_xcalloc(1, sizeof(*cfg));
    ag_rules_t *rules = NULL;
    if (g_loader == NULL || g_loader(g_loader_ud, cfg, &rules) != 0) {
        free(cfg);
        st->failure++;
        st->last_ok = false;
        ag_mreg_set_reload(&g_mreg, st);
        fprintf(stderr,
                "astgate: SIGHUP received: reload failed%s; still serving with generation %llu "
                "(%s, %u rule%s)\n",
                g_loader ? " (errors above)" : ": no loader", (unsigned long long)cur->id,
                cur->cfg->source, ag_rules_count(cur->rules),
                ag_rules_count(cur->rules) == 1 ? "" : "s");
        notify("READY=1");
        return;
    }
    keep_restart_settings(cur->cfg, cfg);
    ag_upstream_warn(cfg);
    gen_t *g = gen_new(cfg, rules, true, nw, cur->id + 1);
    for (uint32_t i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        gen_retain(g);
        gen_release(__atomic_exchange_n(&w->pending, g, __ATOMIC_ACQ_REL));
        uint64_t one = 1;
        while (write(w->wake, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    *curp = g;
    gen_release(cur);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    st->success++;
    st->last_ok = true;
    st->last_ok_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    st->generation = g->id;
    ag_mreg_set_reload(&g_mreg, st);
    ag_mreg_set_params(&g_mreg, rules);
    fprintf(stderr,
            "astgate: SIGHUP received: configuration reloaded (%s, %u rule%s, generation %llu); "
            "new requests use it, requests in flight finish with the one they started with\n",
            cfg->source, ag_rules_count(rules), ag_rules_count(rules) == 1 ? "" : "s",
            (unsigned long long)g->id);
    notify("READY=1");
}

static void wake_all(int fd)
{
    ssize_t wn;
    do
        wn = write(fd, "x", 1);
    while (wn < 0 && errno == EINTR);
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
    if (pipe2(stop_fd, O_CLOEXEC | O_NONBLOCK) != 0 ||
        pipe2(drain_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
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
    for (uint32_t i = 0; i < nw; i++)
        ws[i].wake = -1;
    all_metrics = ag_xcalloc(nw, sizeof(*all_metrics));
    nall_metrics = nw;
    ag_mreg_init(&g_mreg);
    ag_reload_stats_t rst = {0, 0, true, 0, 1};
    {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        rst.last_ok_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    }
    ag_mreg_set_reload(&g_mreg, &rst);
    ag_mreg_set_params(&g_mreg, rules);
    /* the caller's configuration and rules: the first generation borrows them */
    gen_t *cur = gen_new((ag_config_t *)cfg, (ag_rules_t *)rules, false, nw, 1);
    admin_loop_t adm;
    memset(&adm, 0, sizeof(adm));
    bool admin_started = false;
    ag_http_server_t *admin = NULL;
    int admin_fd = -1;
    ag_http_limits_t lim;
    limits_of(cfg, &lim);
    static const ag_http_handlers_t handlers = {on_request, on_refused, on_client_gone};
    static const ag_http_handlers_t admin_handlers = {admin_request, admin_error, admin_gone};
    uint16_t admin_port = 0;
    uint16_t port = cfg->listen_port;
    char err[512];
    uint32_t started = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    __atomic_store_n(&g_draining, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_workers_done, 0, __ATOMIC_RELAXED);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit the mask; main waits below */
    for (uint32_t i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        w->id = (int)i;
        uint16_t bound = 0;
        w->fd = open_listener(cfg->listen_host, port, &bound, err, sizeof(err));
        if (w->fd < 0) {
            fprintf(stderr, "astgate: %s\n", err);
            goto out;
        }
        port = bound; /* port 0: the others share the port the first one got */
        /* the changelist folds a worker's epoll_ctl calls within one loop turn into one per fd
         * (curl re-arms its sockets on every request) */
        struct event_config *ecfg = event_config_new();
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
        if (w->base == NULL) {
            fprintf(stderr, "astgate: cannot create an event loop\n");
            goto out;
        }
        w->http = ag_http_server_new(w->base, w->fd, &handlers, &lim, w);
        ag_wmetrics_init(&w->m);
        all_metrics[i] = &w->m;
        gen_retain(cur);
        w->cur = wgen_new(w, cur);
        w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake < 0) {
            fprintf(stderr, "astgate: cannot create an eventfd: %s\n", strerror(errno));
            goto out;
        }
        w->reload = event_new(w->base, w->wake, EV_READ | EV_PERSIST, on_reload, w);
        event_add(w->reload, NULL);
        /* every worker sees the pipe readable once main writes to it, and nobody reads it */
        w->stop = event_new(w->base, stop_fd[0], EV_READ, on_stop, w);
        event_add(w->stop, NULL);
        w->drain = event_new(w->base, drain_fd[0], EV_READ, on_drain, w);
        event_add(w->drain, NULL);
        w->drain_tick = event_new(w->base, -1, EV_PERSIST, on_drain_tick, w);
        w->drain_end = event_new(w->base, -1, 0, on_drain_end, w);
        for (int k = 0; k < LOG_N; k++)
            ag_buf_init(&w->logbuf[k], LOG_BUF_MAX);
        w->log_flush = event_new(w->base, -1, 0, on_log_flush, w);
    }
    if (cfg->admin_host[0]) {
        int afd = open_listener(cfg->admin_host, cfg->admin_port, &admin_port, err, sizeof(err));
        if (afd < 0) {
            fprintf(stderr, "astgate: admin: %s\n", err);
            goto out;
        }
        admin_fd = afd;
        struct event_config *acfg = event_config_new();
        event_config_set_flag(acfg, EVENT_BASE_FLAG_NOLOCK);
        adm.base = event_base_new_with_config(acfg);
        event_config_free(acfg);
        if (adm.base == NULL) {
            fprintf(stderr, "astgate: cannot create an event loop\n");
            goto out;
        }
        admin = ag_http_server_new(adm.base, afd, &admin_handlers, &lim, NULL);
        adm.http = admin;
        adm.stop = event_new(adm.base, stop_fd[0], EV_READ, on_admin_stop, &adm);
        event_add(adm.stop, NULL);
    }
    for (uint32_t i = 0; i < nw; i++) {
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "astgate: cannot start worker %u\n", i);
            goto stop;
        }
        started++;
    }
    if (adm.base) {
        if (pthread_create(&adm.thread, NULL, admin_main, &adm) != 0) {
            fprintf(stderr, "astgate: cannot start the admin listener\n");
            goto stop;
        }
        admin_started = true;
    }
    fprintf(stderr, "astgate: listening on http://%s:%u (%u worker%s, upstream %s, config %s%s)\n",
            cfg->listen_host, port, nw, nw == 1 ? "" : "s", cfg->upstream, cfg->source,
            cfg->shadow ? ", shadow mode" : "");
    if (admin)
        fprintf(stderr, "astgate: admin (/metrics, /healthz, /readyz) on http://%s:%u\n",
                cfg->admin_host, admin_port);
    fflush(stderr);
    notify("READY=1");
    /* signals: SIGTERM drains (a second one stops at once), SIGINT and SIGQUIT stop at once,
     * SIGHUP reloads, SIGUSR1 reopens the log files; the loop ends when every worker has ended */
    bool stopping = false;
    while (__atomic_load_n(&g_workers_done, __ATOMIC_ACQUIRE) < started) {
        struct timespec to = {0, 50 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &to);
        if (sig < 0)
            continue;
        if (sig == SIGUSR1) {
            sinks_reopen();
            fprintf(stderr, "astgate: SIGUSR1 received, log files reopened\n");
        } else if (sig == SIGHUP) {
            reload(ws, started, &cur, &rst);
        } else if (sig == SIGTERM && !__atomic_load_n(&g_draining, __ATOMIC_RELAXED)) {
            __atomic_store_n(&g_draining, 1, __ATOMIC_RELAXED);
            fprintf(stderr,
                    "astgate: SIGTERM received, draining: no new connections, replies in flight "
                    "get up to %u ms (SIGTERM again or SIGINT: stop now)\n",
                    cur->cfg->drain_timeout_ms);
            notify("STOPPING=1");
            wake_all(drain_fd[1]);
        } else if (!stopping) {
            stopping = true;
            fprintf(stderr, "astgate: %s received, stopping now\n",
                    sig == SIGINT    ? "SIGINT"
                    : sig == SIGQUIT ? "SIGQUIT"
                                     : "SIGTERM");
            notify("STOPPING=1");
            wake_all(stop_fd[1]);
        }
    }
    fflush(stderr);
    status = 0;
stop:
    if (started && __atomic_load_n(&g_workers_done, __ATOMIC_ACQUIRE) < started)
        wake_all(stop_fd[1]);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (admin_started) {
        wake_all(stop_fd[1]); /* every worker has ended: the admin listener goes last */
        pthread_join(adm.thread, NULL);
    }
out:
    ag_http_server_free(admin);
    if (adm.stop)
        event_free(adm.stop);
    if (adm.base)
        event_base_free(adm.base);
    if (admin_fd >= 0)
        close(admin_fd);
    for (uint32_t i = 0; i < nw; i++) {
        worker_t *w = &ws[i];
        log_flush(w);
        for (int k = 0; k < LOG_N; k++)
            ag_buf_dispose(&w->logbuf[k]);
        if (w->log_flush)
            event_free(w->log_flush);
        if (w->stop)
            event_free(w->stop);
        if (w->drain)
            event_free(w->drain);
        if (w->drain_tick)
            event_free(w->drain_tick);
        if (w->drain_end)
            event_free(w->drain_end);
        if (w->reload)
            event_free(w->reload);
        if (w->wake >= 0)
            close(w->wake);
        gen_release(__atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL));
        wgen_release(w->cur);
        ag_http_server_free(w->http);
        if (w->fd > 0)
            close(w->fd);
        if (w->base)
            event_base_free(w->base);
    }
    free(ws);
    free(all_metrics);
    all_metrics = NULL;
    gen_release(cur);
    ag_mreg_dispose(&g_mreg);
    curl_global_cleanup();
    close(stop_fd[0]);
    close(stop_fd[1]);
    stop_fd[0] = stop_fd[1] = -1;
    close(drain_fd[0]);
    close(drain_fd[1]);
    drain_fd[0] = drain_fd[1] = -1;
    sink_close(&sinks[LOG_ACCESS]);
    sink_close(&sinks[LOG_REWRITE]);
    return status;
}

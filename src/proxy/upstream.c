/* curl multi on libevent: curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to wake it (CURLMOPT_TIMERFUNCTION); every event goes back to curl_multi_socket_action, and
 * finished transfers are collected after each call. */
#include "upstream.h"

#include <event2/event_struct.h>

#define EASY_POOL 64 /* idle handles kept per target */
/* seconds curl keeps the CA store it built from a CA file: a day, so that the bundle (~20 ms of
 * CPU with OpenSSL 3) is parsed once a day instead of once per connection and an update is still
 * seen. curl 7.88 keeps one store per multi handle: targets with different CA files replace each
 * other's, so they pay the parse on each new connection. */
#define CA_CACHE_SECONDS 86400L
/* when curl was built without a default CA file */
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

typedef struct easy_pool {
    CURL *h[EASY_POOL];
    uint32_t n;
} easy_pool_t;

struct ag_upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    ag_upstream_done_cb done;
    int running;
    const ag_config_t *cfg;
    CURLSH *share; /* DNS cache and TLS sessions of the worker's handles; one thread: no locks */
    easy_pool_t pools[AG_CONFIG_MAX_ROUTES + 1]; /* by target */
};

typedef struct sock_ctx {
    struct event ev; /* re-armed in place when curl changes what it waits for */
    bool added;
    ag_upstream_t *u;
} sock_ctx_t;

static void check_done(ag_upstream_t *u)
{
    CURLMsg *msg;
    int left;
    for (;;) {
        msg = curl_multi_info_read(u->multi, &left);
        if (msg == NULL)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        void *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&priv);
        curl_multi_remove_handle(u->multi, easy);
        u->done(easy, rc, priv);
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    ag_upstream_t *u = arg;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(u->multi, fd, flags, &u->running);
    check_done(u);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    ag_upstream_t *u = arg;
    (void)fd;
    (void)what;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &u->running);
    check_done(u);
}

static int socket_cb(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
    ag_upstream_t *u = userp;
    sock_ctx_t *sc = socketp;
    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (sc) {
            if (sc->added)
                event_del(&sc->ev);
            free(sc);
            curl_multi_assign(u->multi, s, NULL);
        }
        return 0;
    }
    short what = EV_PERSIST | (action & CURL_POLL_IN ? EV_READ : 0) |
                 (action & CURL_POLL_OUT ? EV_WRITE : 0);
    if (sc == NULL) {
        sc = ag_xcalloc(1, sizeof(*sc));
        sc->u = u;
        curl_multi_assign(u->multi, s, sc);
    } else if (sc->added) {
        if (event_get_events(&sc->ev) == what)
            return 0; /* already waiting for that */
        event_del(&sc->ev);
    }
    event_assign(&sc->ev, u->base, s, what, on_socket, u);
    event_add(&sc->ev, NULL);
    sc->added = true;
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ag_upstream_t *u = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(u->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(u->timer, &tv);
    return 0;
}

ag_upstream_t *ag_upstream_new(struct event_base *base, ag_upstream_done_cb done,
                               const ag_config_t *cfg)
{
    ag_upstream_t *u = ag_xcalloc(1, sizeof(*u));
    u->base = base;
    u->done = done;
    u->cfg = cfg;
    u->multi = curl_multi_init();
    AG_ASSERT(u->multi != NULL);
    u->timer = evtimer_new(base, on_timer, u);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    /* keep idle upstream connections: by default curl caps its cache at 4 x the transfers in
     * flight and closes connections whenever that number dips */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    /* The multi handle already pools connections (and DNS) for every handle added to it; the
     * share adds TLS session resumption across handles (curl keeps sessions per easy handle
     * otherwise). Connections stay in the multi: a share's connection cache would replace the
     * multi's and its CURLMOPT_MAXCONNECTS, for nothing with one multi handle per thread.
     * curl 7.88 keeps one session per peer, and OpenSSL uses a TLS 1.3 session once on the
     * client side: of several connections opened at once, those that start after the first one
     * finished its handshake do a full one. */
    u->share = curl_share_init();
    AG_ASSERT(u->share != NULL);
    curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return u;
}

void ag_upstream_free(ag_upstream_t *u)
{
    if (u == NULL)
        return;
    for (uint32_t t = 0; t <= AG_CONFIG_MAX_ROUTES; t++)
        for (uint32_t i = 0; i < u->pools[t].n; i++)
            curl_easy_cleanup(u->pools[t].h[i]);
    curl_multi_cleanup(u->multi);
    /* after every handle that used it; CURLSHE_IN_USE would mean one is still out there */
    curl_share_cleanup(u->share);
    event_free(u->timer);
    free(u);
}

int ag_upstream_start(ag_upstream_t *u, CURL *easy)
{
    if (curl_multi_add_handle(u->multi, easy) != CURLM_OK)
        return AG_EINVAL;
    return AG_OK;
}

void ag_upstream_cancel(ag_upstream_t *u, CURL *easy)
{
    curl_multi_remove_handle(u->multi, easy);
}

void ag_upstream_kick(ag_upstream_t *u)
{
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &u->running);
    check_done(u);
}

int ag_upstream_running(const ag_upstream_t *u)
{
    return u->running;
}

/* Sets where a target's trusted CAs come from. The first source that names anything is the
 * whole store: the config's ca_file/ca_path, else $SSL_CERT_FILE/$SSL_CERT_DIR, else the system
 * bundle. Never a CA directory that nobody asked for: Debian's libcurl has /etc/ssl/certs built
 * in as CURLOPT_CAPATH, and with a CA path set curl does not cache the CA store, so each new
 * connection would parse the bundle again and look issuers up in the directory. */
static void set_ca(CURL *e, const ag_tls_t *t)
{
    const char *file = NULL, *dir = NULL;
    if (t->ca_file[0] || t->ca_path[0]) {
        file = t->ca_file[0] ? t->ca_file : NULL;
        dir = t->ca_path[0] ? t->ca_path : NULL;
    } else {
        file = getenv("SSL_CERT_FILE");
        dir = getenv("SSL_CERT_DIR");
        if (file && file[0] == '\0')
            file = NULL;
        if (dir && dir[0] == '\0')
            dir = NULL;
    }
    if (file == NULL && dir == NULL) {
        /* on a fresh handle CURLINFO_CAINFO is curl's built-in default: the system bundle */
        char *builtin = NULL;
        curl_easy_getinfo(e, CURLINFO_CAINFO, &builtin);
        if (builtin == NULL)
            file = SYSTEM_CA_BUNDLE;
    }
    if (file)
        curl_easy_setopt(e, CURLOPT_CAINFO, file);
    else if (dir)
        curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(e, CURLOPT_CAPATH, dir);
}

static void easy_defaults(ag_upstream_t *u, CURL *e, uint32_t target)
{
    const ag_config_t *cfg = u->cfg;
    const ag_tls_t *tls = ag_config_target_tls(cfg, target);
    curl_easy_setopt(e, CURLOPT_SHARE, u->share);
    /* over HTTP/2 a burst waits for the one connection to multiplex on instead of opening many */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    set_ca(e, tls);
    curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, CA_CACHE_SECONDS);
    if (tls->client_cert[0]) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, tls->client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, tls->client_key);
    }
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls->verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls->verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* curl decodes what it offers */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->upstream_timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* the front end normalised the path; curl must send exactly that */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
}

CURL *ag_upstream_easy(ag_upstream_t *u, uint32_t target)
{
    AG_ASSERT(u->cfg != NULL);
    if (target > AG_CONFIG_MAX_ROUTES)
        target = 0;
    easy_pool_t *p = &u->pools[target];
    if (p->n)
        return p->h[--p->n];
    CURL *e = curl_easy_init();
    AG_ASSERT(e != NULL);
    easy_defaults(u, e, target);
    return e;
}

void ag_upstream_easy_put(ag_upstream_t *u, CURL *easy, uint32_t target)
{
    if (easy == NULL)
        return;
    if (target > AG_CONFIG_MAX_ROUTES)
        target = 0;
    easy_pool_t *p = &u->pools[target];
    if (p->n < EASY_POOL)
        p->h[p->n++] = easy;
    else
        curl_easy_cleanup(easy);
}

const char *ag_upstream_error_code(CURLcode rc, const char *detail, int *status)
{
    switch (rc) {
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        *status = 502;
        /* OpenSSL's messages: "OpenSSL SSL_read: ...:tlsv13 alert certificate required" */
        return detail && (strstr(detail, "SSL") || strstr(detail, "TLS") || strstr(detail, "tlsv1"))
                   ? "upstream_tls_error"
                   : "upstream_unreachable";
    case CURLE_OPERATION_TIMEDOUT:
        *status = 504;
        return "upstream_timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        *status = 502;
        return "upstream_tls_error";
    default:
        *status = 502;
        return "upstream_unreachable";
    }
}

static void warn_tls(const char *url, const ag_tls_t *t, const char *source)
{
    /* an http:// upstream has no TLS to weaken */
    if (!t->verify && strncmp(url, "https://", 8) == 0)
        fprintf(stderr,
                "astgate: warning: TLS verification is off for upstream %s (%s: false in %s)\n",
                url, t->verify_key[0] ? t->verify_key : "tls.verify", source);
}

void ag_upstream_warn(const ag_config_t *cfg)
{
    warn_tls(cfg->upstream, &cfg->tls, cfg->source);
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        bool seen = false; /* several routes to one upstream: one line */
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(cfg->routes[j].name, cfg->routes[i].name) == 0)
                seen = true;
        if (!seen)
            warn_tls(cfg->routes[i].url, &cfg->routes[i].tls, cfg->source);
    }
}

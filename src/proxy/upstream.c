/* curl multi on libevent: curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to wake it (CURLMOPT_TIMERFUNCTION); every event goes back to curl_multi_socket_action, and
 * finished transfers are collected after each call. */
#include "upstream.h"

#include <event2/event_struct.h>

struct ag_upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    ag_upstream_done_cb done;
    int running;
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

ag_upstream_t *ag_upstream_new(struct event_base *base, ag_upstream_done_cb done)
{
    ag_upstream_t *u = ag_xcalloc(1, sizeof(*u));
    u->base = base;
    u->done = done;
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
    return u;
}

void ag_upstream_free(ag_upstream_t *u)
{
    if (u == NULL)
        return;
    curl_multi_cleanup(u->multi);
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

/* libcurl's multi interface driven by a libevent loop: one ag_upstream_t per worker thread, no
 * blocking call on the loop (curl docs/examples/multi-event.c shows the pattern). */
#ifndef AG_UPSTREAM_H
#define AG_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

#include "config.h"
#include "util.h"

typedef struct ag_upstream ag_upstream_t;

/* Called once per finished transfer (done or failed), after curl is done with the handle; the
 * handle is already removed from the multi handle. priv is CURLOPT_PRIVATE. */
typedef void (*ag_upstream_done_cb)(CURL *easy, CURLcode result, void *priv);

/* cfg is borrowed for the upstream's lifetime (timeouts, targets, TLS); NULL when the caller
 * makes its own easy handles (ag_upstream_easy is then not to be called). The handles from
 * ag_upstream_easy share one DNS cache and one TLS session cache (a CURLSH without locks) and the
 * multi handle's connections and CA store: an upstream belongs to one thread. */
ag_upstream_t *ag_upstream_new(struct event_base *base, ag_upstream_done_cb done,
                               const ag_config_t *cfg);
void ag_upstream_free(ag_upstream_t *u);

/* An easy handle for a request to `target` (ag_config_target_for), taken from the worker's pool,
 * with every option that stays the same from request to request already set: timeouts, TLS,
 * HTTP version, decoding, the share handle, no signals, no redirects, the path sent as is.
 * The caller sets URL, callbacks, private pointer, method, body and headers, and undoes any
 * per-request option it set before ag_upstream_easy_put. Never NULL (aborts on OOM). */
CURL *ag_upstream_easy(ag_upstream_t *u, uint32_t target);
/* Returns a handle (not in the multi handle) to the pool of the target it was taken for, or
 * frees it. NULL: no-op. */
void ag_upstream_easy_put(ag_upstream_t *u, CURL *easy, uint32_t target);

/* What a failed transfer means for the client: the error code for the JSON body
 * ("upstream_timeout", "upstream_tls_error" or "upstream_unreachable") and the HTTP status
 * (504 or 502). detail is the transfer's CURLOPT_ERRORBUFFER text (NULL or "" when none): a
 * failed read or write that TLS reported (over TLS 1.3 an upstream refuses a client certificate
 * only after the handshake, with an alert) is a TLS error too. */
const char *ag_upstream_error_code(CURLcode rc, const char *detail, int *status);

/* Prints to stderr, once at start, what in cfg weakens the upstream side, one line each: every
 * https upstream whose tls.verify is false ("astgate: warning: TLS verification is off for
 * upstream URL (KEY: false in FILE)"). */
void ag_upstream_warn(const ag_config_t *cfg);

/* Starts easy (CURLOPT_PRIVATE must be set). */
AG_MUSTCHECK int ag_upstream_start(ag_upstream_t *u, CURL *easy);
/* Cancels a transfer at once (the client went away); the done callback is not called. */
void ag_upstream_cancel(ag_upstream_t *u, CURL *easy);
/* Lets curl resume a paused transfer and run what is due. */
void ag_upstream_kick(ag_upstream_t *u);
/* Transfers in flight. */
int ag_upstream_running(const ag_upstream_t *u);

#endif

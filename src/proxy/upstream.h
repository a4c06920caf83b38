/* libcurl's multi interface driven by a libevent loop: one ag_upstream_t per worker thread, no
 * blocking call on the loop (curl docs/examples/multi-event.c shows the pattern). */
#ifndef AG_UPSTREAM_H
#define AG_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

#include "util.h"

typedef struct ag_upstream ag_upstream_t;

/* Called once per finished transfer (done or failed), after curl is done with the handle; the
 * handle is already removed from the multi handle. priv is CURLOPT_PRIVATE. */
typedef void (*ag_upstream_done_cb)(CURL *easy, CURLcode result, void *priv);

ag_upstream_t *ag_upstream_new(struct event_base *base, ag_upstream_done_cb done);
void ag_upstream_free(ag_upstream_t *u);

/* Starts easy (CURLOPT_PRIVATE must be set). */
AG_MUSTCHECK int ag_upstream_start(ag_upstream_t *u, CURL *easy);
/* Cancels a transfer at once (the client went away); the done callback is not called. */
void ag_upstream_cancel(ag_upstream_t *u, CURL *easy);
/* Lets curl resume a paused transfer and run what is due. */
void ag_upstream_kick(ag_upstream_t *u);
/* Transfers in flight. */
int ag_upstream_running(const ag_upstream_t *u);

#endif

/* `astgate serve`: the reverse proxy. Worker threads, each with its own libevent loop, evhttp
 * server (the port shared with SO_REUSEPORT), libcurl multi handle and rewrite engine. */
#ifndef AG_PROXY_H
#define AG_PROXY_H

#include "config.h"
#include "rules.h"

/* Runs until SIGINT or SIGTERM. Prints "astgate: listening on http://HOST:PORT" to stderr once
 * every worker accepts. rules is borrowed and shared read-only by the workers. Returns 0 on a
 * clean stop, 1 when it cannot start (the reason printed). */
int ag_proxy_run(const ag_config_t *cfg, const ag_rules_t *rules);

#endif

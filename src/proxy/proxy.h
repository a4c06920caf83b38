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

/* Loads the configuration and rules the way `serve` did at start (file, then command-line
 * overrides), printing errors with file:line:col; returns 0 and fills cfg and *rules (the caller
 * disposes of both), or 1. Used on SIGHUP. */
typedef int (*ag_proxy_loader_fn)(void *ud, ag_config_t *cfg, ag_rules_t **rules);
/* The loader SIGHUP checks the configuration on disk with (NULL: none). Set before ag_proxy_run. */
void ag_proxy_set_loader(ag_proxy_loader_fn fn, void *ud);

#endif

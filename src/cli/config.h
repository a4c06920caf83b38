/* astgate.yaml: the proxy's configuration, its embedded default, and command-line overrides. */
#ifndef AG_CONFIG_H
#define AG_CONFIG_H

#include "rules.h"
#include "stream.h"
#include "toolcode.h"
#include "util.h"

#define AG_CONFIG_MAX_RULES 64
#define AG_CONFIG_MAX_ROUTES 32

enum {
    AG_FORWARDED_APPEND,  /* append the client's address to X-Forwarded-For (nginx's
                             $proxy_add_x_forwarded_for) */
    AG_FORWARDED_REPLACE, /* X-Forwarded-For: the client's address only */
    AG_FORWARDED_OFF,     /* the client's headers as they are, nothing added */
};

/* `hints:` (request-side hints, the loaded rules' metadata.astgate.hint): off (the default), on
 * (every API request gets them), or {ab: P} (P % of API requests get them, the others are the
 * control arm; see the proxy). Per named upstream over the top level, like `stream.hold`. */
typedef enum ag_hints_mode {
    AG_HINTS_OFF, /* requests go on as they came */
    AG_HINTS_ON,  /* every request to a known API */
    AG_HINTS_AB,  /* ab_pct % of them; the rest are the control arm */
} ag_hints_mode_t;

typedef struct ag_hints_cfg {
    uint8_t mode;   /* ag_hints_mode_t */
    uint8_t ab_pct; /* AG_HINTS_AB: 0..100 */
} ag_hints_cfg_t;

/* TLS to one upstream: the top-level `tls:` section, or a named upstream's own `tls:` merged over
 * it key by key. Paths are resolved against the config file's directory and were readable PEM
 * files (ca_path: a readable directory) when the configuration was loaded. "" = not set. */
typedef struct ag_tls {
    char ca_file[1024];     /* trusted CAs (PEM bundle); "" and no ca_path: $SSL_CERT_FILE /
                               $SSL_CERT_DIR, else the system bundle */
    char ca_path[1024];     /* directory of hashed CA certificates (openssl rehash); re-read per
                               connection, so ca_file is cheaper */
    char client_cert[1024]; /* PEM client certificate; set together with client_key */
    char client_key[1024];  /* its PEM private key (not encrypted) */
    bool verify;            /* check the upstream's certificate and host name; default true */
    char verify_key[192];   /* the key that turned verify off ("tls.verify",
                               "upstreams.NAME.tls.verify"), for the start-up warning */
} ag_tls_t;

/* A path prefix served by another upstream than the default one. */
typedef struct ag_route {
    char prefix[256];      /* e.g. "/v1/messages" */
    char name[64];         /* the upstream's name in `upstreams` */
    char url[1024];        /* its base URL */
    ag_tls_t tls;          /* merged: its own `tls` over the top-level one */
    ag_stream_hold_t hold; /* its upstream's `stream.hold`, else the top-level one */
    ag_hints_cfg_t hints;  /* its upstream's `hints`, else the top-level one */
} ag_route_t;

typedef struct ag_config {
    char listen_host[256];
    uint16_t listen_port;                    /* 0 = any free port (tests) */
    char upstream[1024];                     /* scheme://host[:port][/prefix], no trailing slash */
    ag_tls_t tls;                            /* TLS to `upstream` (the top-level `tls`) */
    ag_route_t routes[AG_CONFIG_MAX_ROUTES]; /* longest prefix first wins; else `upstream` */
    uint32_t nroutes;
    char *rules[AG_CONFIG_MAX_RULES]; /* owned paths, resolved against the config file's dir */
    uint32_t nrules;
    ag_rules_set_t *rule_sets[AG_CONFIG_MAX_RULES]; /* rules[i]'s `set:` (owned, strings too) */
    uint32_t nrule_sets[AG_CONFIG_MAX_RULES];
    ag_rules_set_t *sets; /* --set NAME=VALUE: every file declaring NAME (owned, strings too) */
    uint32_t nsets;
    uint32_t workers; /* threads; 0 = one per core */
    uint32_t connect_timeout_ms;
    uint32_t upstream_timeout_ms;  /* whole upstream exchange; 0 = none */
    uint32_t client_timeout_ms;    /* a client's silence while it sends a request or between
                                      requests, and its stall while we write; 0 = none */
    size_t max_request_body;       /* bytes; larger requests get 413 */
    size_t max_response_body;      /* bytes buffered to rewrite a non-streamed reply */
    size_t max_held;               /* bytes of text held per streamed choice */
    uint32_t max_header_bytes;     /* request line + header block, bytes; beyond: 431 */
    uint32_t max_headers;          /* header fields per request; beyond: 431 */
    uint32_t max_url_bytes;        /* request target, bytes; beyond: 414 */
    uint32_t max_connections;      /* client connections per process; beyond: accept pauses */
    uint32_t header_timeout_ms;    /* to receive a whole request head; 0 = none */
    uint32_t keepalive_timeout_ms; /* an idle kept-alive connection; 0 = none */
    uint32_t drain_timeout_ms;     /* SIGTERM: replies in flight get this long; 0 = none */
    int forwarded;                 /* AG_FORWARDED_*: X-Forwarded-For to the upstream */
    uint64_t parse_timeout_us;     /* per code block */
    char access_log[1024];         /* path, "-" = stderr, "off" */
    char rewrite_log[1024];        /* path, "-" = stderr, "off" */
    int block_status;              /* HTTP status for a blocked reply */
    ag_stream_hold_t stream_hold;  /* `stream.hold`: how much of a streamed code block is held
                                      back (the default upstream's; routes: ag_route_t.hold) */
    ag_hints_cfg_t hints;          /* `hints` (the default upstream's; routes: ag_route_t.hints) */
    bool bare;                     /* try replies without fences as code */
    bool shadow;                   /* mode: shadow: log and count, change nothing */
    char admin_host[256];          /* /metrics and /healthz listener; empty = on `listen` */
    uint16_t admin_port;
    ag_tools_t tools;  /* tools whose calls carry code: the presets, then `tools:` (owned) */
    char source[1024]; /* the config file, or "(embedded default)" */
} ag_config_t;

/* Loads path (NULL = the embedded default) into cfg. Errors fill d with file:line:col. */
AG_MUSTCHECK int ag_config_load(const char *path, ag_config_t *cfg, ag_diag_t *d);
void ag_config_dispose(ag_config_t *cfg);

/* Command-line overrides. */
AG_MUSTCHECK int ag_config_set_listen(ag_config_t *cfg, const char *hostport, ag_diag_t *d);
AG_MUSTCHECK int ag_config_set_upstream(ag_config_t *cfg, const char *url, ag_diag_t *d);
/* Replaces the rule list on the first call, appends on the next ones. */
AG_MUSTCHECK int ag_config_add_rules(ag_config_t *cfg, const char *path, bool first, ag_diag_t *d);
/* Adds a --set NAME=VALUE (it wins over the files' `set:`); AG_EINVAL with d when malformed. */
AG_MUSTCHECK int ag_config_add_set(ag_config_t *cfg, const char *arg, ag_diag_t *d);
/* Loads cfg's rule files with their `set:` values and the --set ones (ag_rules_load_srcs). */
AG_MUSTCHECK int ag_config_load_rules(const ag_config_t *cfg, ag_rules_t **out, ag_diag_t *d);

/* The upstream base URL for a request path. */
const char *ag_config_upstream_for(const ag_config_t *cfg, const char *path);
/* The upstream target for a request path: 0 = `upstream`, 1 + i = routes[i]. */
uint32_t ag_config_target_for(const ag_config_t *cfg, const char *path);
/* A target's base URL (scheme://host[:port][/prefix], no trailing slash). */
const char *ag_config_target_url(const ag_config_t *cfg, uint32_t target);
/* A target's TLS settings (merged; see ag_tls_t). */
const ag_tls_t *ag_config_target_tls(const ag_config_t *cfg, uint32_t target);
/* A target's hold policy for streamed code (`stream.hold`, per upstream over the top level). */
ag_stream_hold_t ag_config_target_hold(const ag_config_t *cfg, uint32_t target);

/* A target's `hints` setting (per upstream over the top level). */
ag_hints_cfg_t ag_config_target_hints(const ag_config_t *cfg, uint32_t target);

/* The embedded default as YAML text. */
extern const char ag_config_default_yaml[];

#endif

/* The client-side HTTP/1.1 server: one per worker thread, on that worker's libevent loop. It
 * accepts connections, parses requests with llhttp (strict: what RFC 9112 says to reject is
 * rejected), enforces the limits, and hands each complete request to its handler, which answers
 * through the ag_http_* calls below. Keep-alive, pipelining (one request at a time per
 * connection, in order), Expect: 100-continue, HTTP/1.0, chunked and Content-Length bodies.
 * Nothing here knows about the proxy: errors the front end makes are reported to the handler,
 * which writes them in the API's shape, logs and counts them. */
#ifndef AG_HTTP_SERVER_H
#define AG_HTTP_SERVER_H

#include "util.h"

#include <event2/event.h>

typedef struct ag_http_server ag_http_server_t;
typedef struct ag_http_req ag_http_req_t;

typedef struct ag_http_header {
    ag_str_t name, value; /* as received (name case kept); no CR, LF or NUL inside */
} ag_http_header_t;

/* A request: everything borrowed from the connection, valid until the response ends (or
 * ag_http_abort). */
struct ag_http_req {
    ag_str_t method;                 /* e.g. "POST"; empty when the request line was bad */
    ag_str_t target;                 /* normalised: path[?query]; empty when it was bad */
    ag_str_t path;                   /* the path part of target */
    uint8_t http_minor;              /* HTTP/1.x */
    bool keep_alive;                 /* the client wants the connection kept */
    const ag_http_header_t *headers; /* in order, duplicates kept */
    uint32_t nheaders;
    ag_str_t body;       /* de-chunked */
    const char *peer;    /* the client's address, e.g. "127.0.0.1" */
    uint64_t t_start_ns; /* CLOCK_MONOTONIC at the request's first byte */
    uint64_t bytes_in;   /* bytes of the request on the wire */
    void *ud;            /* the handler's, for on_gone */
};

typedef struct ag_http_handlers {
    /* A complete, valid request. The handler answers it with ag_http_start/write/end (now or
     * later) or ag_http_respond, or drops it with ag_http_abort. */
    void (*on_request)(void *ud, ag_http_req_t *req);
    /* A request the front end refused (status 400, 408, 413, 414, 417, 431, 501 or 505;
     * code e.g. "bad_request", message for people). req holds what was parsed (method and
     * target may be empty). The handler answers it like a request; the connection closes
     * after. */
    void (*on_error)(void *ud, ag_http_req_t *req, int status, const char *code,
                     const char *message);
    /* The client went away (or stalled past the write timeout) before the response ended.
     * Nothing reaches it any more; the handler still ends req with ag_http_abort, now or
     * later (never frees anything of the server's). */
    void (*on_gone)(void *ud, ag_http_req_t *req);
} ag_http_handlers_t;

typedef struct ag_http_limits {
    size_t max_body;           /* bytes; beyond: 413 */
    uint32_t max_header_bytes; /* request line + headers; beyond: 431 */
    uint32_t max_headers;      /* fields; beyond: 431 */
    uint32_t max_url_bytes;    /* request target; beyond: 414 */
    uint32_t max_connections;  /* per process (all servers together) */
    uint32_t header_ms;        /* to receive a whole head, from its first byte; 0 = none */
    uint32_t keepalive_ms;     /* idle between requests; 0 = none */
    uint32_t client_ms;        /* body read stall, and write stall; 0 = none */
} ag_http_limits_t;

/* Serves on the listening socket fd (non-blocking, already listening; not closed by
 * ag_http_server_free; -1 = no listener, connections come through ag_http_server_adopt) on
 * base. h and limits are copied; ud is passed to the handlers. */
ag_http_server_t *ag_http_server_new(struct event_base *base, int fd, const ag_http_handlers_t *h,
                                     const ag_http_limits_t *limits, void *ud);
/* Replaces the limits (a reload): what a connection checks from now on uses them; the buffers of
 * connections already open keep the caps they were opened with (a request beyond those gets its
 * 431 or 413 there). Call on the server's loop thread. */
void ag_http_server_set_limits(ag_http_server_t *s, const ag_http_limits_t *limits);
/* Serves an already connected socket (e.g. one end of a socketpair in tests and fuzzers); takes
 * ownership of fd on AG_OK. AG_ETOOBIG when max_connections is reached. */
AG_MUSTCHECK int ag_http_server_adopt(ag_http_server_t *s, int fd);
/* Closes every connection (handlers are not called) and frees the server. NULL: no-op. */
void ag_http_server_free(ag_http_server_t *s);
/* Drain: accept no more connections (the caller closes the listening socket), close the idle
 * kept-alive ones now, and close every other one once its current request is answered
 * (responses say `Connection: close`). Requests already being received are still served. */
void ag_http_server_drain(ag_http_server_t *s);
/* Closes every connection at once; a handler holding a request hears it through on_gone. */
void ag_http_server_close_all(ag_http_server_t *s);
/* Open client connections of this server. */
uint32_t ag_http_server_connections(const ag_http_server_t *s);

/* Starts a response: the status line, the headers given, then what the server adds: framing
 * (Content-Length when content_length >= 0; else chunked on HTTP/1.1, or a close-delimited
 * body on HTTP/1.0) and `Connection: close` when the connection will close. Once per req. */
void ag_http_start(ag_http_req_t *req, int status, const ag_http_header_t *h, uint32_t n,
                   int64_t content_length);
/* Queues body bytes (nothing for a HEAD request); they go out at the end of the current loop
 * turn, coalesced with what else was queued. */
void ag_http_write(ag_http_req_t *req, const void *p, size_t n);
/* Ends the response (the last chunk when chunked). req is gone after this call. */
void ag_http_end(ag_http_req_t *req);
/* A whole response with a body of known length: start + write + end. */
void ag_http_respond(ag_http_req_t *req, int status, const ag_http_header_t *h, uint32_t n,
                     const void *body, size_t len);
/* Ends the exchange without a proper end: what was queued is flushed, then the connection is
 * closed (no last chunk, so the client can tell the body was cut). req is gone after. */
void ag_http_abort(ag_http_req_t *req);

/* Bytes queued for the client and not yet written. */
size_t ag_http_pending(const ag_http_req_t *req);
/* Calls cb(arg) once, when the unsent bytes have fallen to `low` or fewer (from the loop, never
 * from inside an ag_http_* call). One at a time; NULL cancels. */
void ag_http_on_drain(ag_http_req_t *req, size_t low, void (*cb)(void *arg), void *arg);

/* The reason phrase for a status ("OK", "Bad Request", ...; "Unknown" for others). */
const char *ag_http_reason(int status);

#endif

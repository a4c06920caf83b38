#!/usr/bin/env python3
"""Where astgate's CPU time goes, from `perf script` output of a call-graph profile.

    perf record --call-graph dwarf -p PID -o FILE -- sleep S
    perf script -i FILE -F comm,tid,ip,sym,dso | perf-split.py [US_PER_REQUEST]

Every sample is put in one category by the functions on its stack (first rule that matches, see
RULES); prints each category's share of the samples and, given astgate's CPU time per request in
microseconds, its cost per request. Used by bench/run-proxy.sh (PROXY_PERF=1)."""
import sys

# (category, test on the set of function names of a sample's stack), first match wins
ENGINE = [
    ('engine: parse check, errors_after', lambda s: 'errors_after' in s),
    ('engine: flatten, ag_flat_build', lambda s: 'ag_flat_build' in s),
    ('engine: tree-sitter parse', lambda s: any(f.startswith('ts_parser_parse') for f in s)),
    ('engine: tree delete', lambda s: 'ts_tree_delete' in s),
    ('engine: match (scan, ensure)', lambda s: bool(s & {'scan', 'ag_ensure_run', 'ag_match_node'})),
    ('engine: other', lambda s: True),
]
SYSCALL_CONNECT = {'__libc_connect', '__sys_connect', '__x64_sys_connect'}
SYSCALL_CLOSE = {'__close', '__GI___close', '__x64_sys_close'}
CURL = [
    ('curl: connect to the upstream', lambda s: bool(s & SYSCALL_CONNECT)),
    ('curl: close upstream connections', lambda s: bool(s & SYSCALL_CLOSE)),
    ('curl: socket watch changes (socket_cb, epoll_ctl)',
     lambda s: bool(s & {'socket_cb', 'epoll_ctl', '__GI_epoll_ctl'})),
    ('curl: header callback (on_header)', lambda s: 'on_header' in s),
    ('curl: body callback (on_body: buffering; streamed: send_chunk to the client)',
     lambda s: 'on_body' in s),
    ('curl: send request (syscalls)', lambda s: bool(s & {'__libc_send', '__send', 'sendto',
                                                           '__x64_sys_sendto'})),
    ('curl: receive reply (syscalls)', lambda s: bool(s & {'__libc_recv', '__recv',
                                                            '__x64_sys_recvfrom'})),
    ('curl: remove the finished transfer (curl_multi_remove_handle)',
     lambda s: 'curl_multi_remove_handle' in s),
    ('curl: own code (HTTP, connection cache, timers; no symbols)', lambda s: True),
]
RULES = [
    ('engine', lambda s: bool(s & {'ag_engine_rewrite', 'ag_engine_rewrite_block'})),
    ('rewrite log (on_result: format into the worker buffer)', lambda s: 'on_result' in s),
    ('access log (access_line: format into the worker buffer)', lambda s: 'access_line' in s),
    ('logs: write the worker buffers (log_flush)', lambda s: bool(s & {'log_flush',
                                                                      'on_log_flush'})),
    ('JSON body: scan, decode, splice (rewrite_body)', lambda s: 'rewrite_body' in s),
    ('SSE: parse, re-encode (stream_feed/stream_end)',
     lambda s: bool(s & {'stream_feed', 'stream_end'})),
    # handle() sends the request itself (ag_upstream_kick): that part is curl's
    ('curl', lambda s: bool(s & {'ag_upstream_kick', 'curl_multi_socket_action'})),
    # request setup: handle() before the llhttp front end, on_request() since
    ('request setup (on_request/handle: upstream headers, curl easy handle)',
     lambda s: bool(s & {'handle', 'on_request', 'build_up_headers', 'preq_new'})),
    ('request teardown (preq_free: curl_easy_cleanup, frees)',
     lambda s: bool(s & {'preq_free', 'deferred_free', 'release'})),
    ('curl', lambda s: any(f.startswith('curl_') for f in s)),
    ('reply to the client: headers, evhttp_send_reply* / ag_http_start (on_done, on_head)',
     lambda s: bool(s & {'finish_buffered', 'on_done', 'on_head', 'start_reply', 'send_chunk',
                         'copy_headers', 'reply_headers'})),
    # evhttp (before) or src/http/server.c (since the llhttp front end)
    ('client: write the reply (writev)',
     lambda s: bool(s & {'evbuffer_write_atmost', 'evhttp_send_reply', 'evhttp_send_reply_chunk',
                         'evhttp_send_reply_end', '__GI___writev', '__writev', 'flush_out',
                         'on_write', 'ag_http_write', 'ag_http_end', 'after_flush'})),
    ('client: read and parse the request (evhttp, or on_read + llhttp)',
     lambda s: bool(s & {'bufferevent_run_readcb_', 'evbuffer_read', 'on_read', 'conn_parse',
                         'llhttp_execute', 'on_accept'})),
    ('event loop: epoll_wait', lambda s: bool(s & {'epoll_wait', '__GI_epoll_wait'})),
    ('other (event loop, timers, allocator)', lambda s: True),
]
SUB = {'engine': ENGINE, 'curl': CURL}


def samples(lines):
    funcs = None
    for line in lines:
        line = line.rstrip('\n')
        if not line.strip():
            if funcs is not None:
                yield funcs
            funcs = None
        elif not line[0].isspace():
            funcs = set()
        elif funcs is not None:
            parts = line.split(None, 1)
            if len(parts) == 2:
                sym = parts[1].rsplit(' (', 1)[0]
                funcs.add(sym.split('+', 1)[0])
    if funcs is not None:
        yield funcs


def classify(s):
    for name, test in RULES:
        if test(s):
            for sub, t in SUB.get(name, []):
                if t(s):
                    return name, sub
            return name, None
    return 'other', None


def main():
    us = float(sys.argv[1]) if len(sys.argv) > 1 else None
    top, sub, n = {}, {}, 0
    for s in samples(sys.stdin):
        n += 1
        a, b = classify(s)
        top[a] = top.get(a, 0) + 1
        if b:
            sub[(a, b)] = sub.get((a, b), 0) + 1
    if n == 0:
        print('perf-split: no samples')
        return 1
    print('%-68s %7s %s' % ('category (samples: %d)' % n, '%', ' us/req' if us else ''))
    for a, c in sorted(top.items(), key=lambda x: -x[1]):
        print('%-68s %6.1f%% %s' % (a, 100.0 * c / n, '%7.1f' % (us * c / n) if us else ''))
        for (x, b), d in sorted(sub.items(), key=lambda x: -x[1]):
            if x == a:
                print('  %-66s %6.1f%% %s' % (b, 100.0 * d / n,
                                              '%7.1f' % (us * d / n) if us else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())

// HTTP/1.1 conformance and abuse: what astgate's own HTTP server accepts, rejects and forwards, with
// raw bytes on both sides. The client side writes bytes over net.connect and parses the responses
// itself (status line, headers, Content-Length or chunked body, whether the server closed); the
// upstream side is raw-upstream.mjs, which records every byte astgate sends it.
//
// The contract under test:
// - every error astgate makes itself is JSON (Content-Type: application/json, an x-request-id
//   header), {"error":{"message","type","param":null,"code"}}, or on /v1/messages...
//   {"type":"error","error":{"type","message"},"request_id"}; after a malformed request the
//   connection is closed (Connection: close, then EOF); each such request has one access log line
//   and counts in astgate_requests_total{route,status};
// - ambiguous framing (request smuggling) is refused before anything reaches the upstream;
// - limits on header bytes, header count, URL length, header time and connections hold;
// - dot segments are resolved (and may not climb above the root), %2F and control characters
//   are refused; hop-by-hop headers are dropped, X-Forwarded-For is appended (or not, or replaced);
// - keep-alive, pipelining, HTTP/1.0, Expect: 100-continue, chunked request bodies work;
// - a client that leaves cancels the upstream (logged 499), an upstream that resets in the middle
//   of a reply makes the client connection end without the last chunk;
// - a rewritten body does not carry the upstream's validators (ETag, Last-Modified, Content-MD5).

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
    API_KEY,
    NEEDS_PROXY,
    ROOT,
    RULES,
    Astgate,
    writeConfig,
    withTimeout,
    chatBody,
    closedPort,
    parseSSE,
} from './helpers.mjs';
import { RawUpstream, chatChunkJson, sseEvent } from './raw-upstream.mjs';

const RULES_ABS = path.join(ROOT, RULES);

// A reply astgate rewrites: golden case 020 (a Mastra agent with model: openai(...)), its model
// set to 'gpt-4'; what the client must get is the case's expected.md (pinned to gpt-4.1-nano).
const GOLDEN = path.join(ROOT, 'tests', 'golden', '020-provider-call');
const REWRITE_INPUT = fs.readFileSync(path.join(GOLDEN, 'input.md'), 'utf8').replace("openai('gpt-4o')", "openai('gpt-4')");
const REWRITE_EXPECTED = fs.readFileSync(path.join(GOLDEN, 'expected.md'), 'utf8');
assert.ok(REWRITE_INPUT.includes("model: openai('gpt-4'),"), 'golden case 020 no longer has the line this file edits');
assert.ok(REWRITE_EXPECTED.includes("model: openai('gpt-4.1-nano'),"));

const EMPTY = Buffer.alloc(0);
const MB = 1024 * 1024;

/* ------------------------------------------------------------------------------------------ */
/* raw client                                                                                   */

// Decodes a chunked body at buf[pos...] as far as it goes: {body, complete, end}.
function decodeChunked(buf, pos) {
    const parts = [];
    for (let guard = 0; guard < 1_000_000; guard++) {
        const eol = buf.indexOf('\r\n', pos);
        if (eol < 0) break;
        const line = buf.subarray(pos, eol).toString('latin1');
        if (!/^[0-9a-fA-F]+(;.*)?$/.test(line)) throw new Error(`bad chunk size line from astgate: ${JSON.stringify(line)}`);
        const size = parseInt(line, 16);
        if (size === 0) {
            for (let p = eol + 2, g = 0; g < 1000; g++) {
                const e = buf.indexOf('\r\n', p);
                if (e < 0) return { body: Buffer.concat(parts), complete: false, end: buf.length };
                if (e === p) return { body: Buffer.concat(parts), complete: true, end: e + 2 };
                p = e + 2;
            }
            throw new Error('too many trailers');
        }
        const start = eol + 2;
        if (buf.length < start + size + 2) {
            parts.push(buf.subarray(start, Math.min(buf.length, start + size)));
            break;
        }
        parts.push(buf.subarray(start, start + size));
        pos = start + size + 2;
    }
    return { body: Buffer.concat(parts), complete: false, end: buf.length };
}

// One response at buf[pos...]: null while more bytes may complete it. After the connection
// closed it returns what there is (complete: false when the body was cut short).
function parseResponseAt(buf, pos, { closed = false, method = 'GET' } = {}) {
    const he = buf.indexOf('\r\n\r\n', pos);
    if (he < 0) return null;
    const headText = buf.subarray(pos, he).toString('latin1');
    const lines = headText.split('\r\n');
    const statusLine = lines[0];
    const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!m) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const rawHeaders = lines.slice(1).map((l) => {
        const c = l.indexOf(':');
        return c < 0 ? [l, ''] : [l.slice(0, c), l.slice(c + 1).trim()];
    });
    const headers = {};
    for (const [k, v] of rawHeaders) {
        const lk = k.toLowerCase();
        headers[lk] = lk in headers ? `${headers[lk]}, ${v}` : v;
    }
    const status = Number(m[2]);
    const start = he + 4;
    const base = { version: m[1], status, statusLine, rawHeaders, headers, headText, chunked: false };
    if (status < 200 || status === 204 || status === 304 || method === 'HEAD') return { ...base, body: EMPTY, complete: true, end: start };
    if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
        const d = decodeChunked(buf, start);
        if (!d.complete && !closed) return null;
        return { ...base, chunked: true, body: d.body, complete: d.complete, end: d.end };
    }
    if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        if (buf.length < start + n) {
            if (!closed) return null;
            return { ...base, body: buf.subarray(start), complete: false, end: buf.length };
        }
        return { ...base, body: buf.subarray(start, start + n), complete: true, end: start + n };
    }
    if (!closed) return null;
    return { ...base, body: buf.subarray(start), complete: true, untilClose: true, end: buf.length };
}

// A client connection that writes raw bytes and reads raw responses.
class RawConn {
    static open(port) {
        return new Promise((resolve, reject) => {
            const s = net.connect({ host: '127.0.0.1', port });
            s.once('connect', () => {
                s.off('error', reject);
                resolve(new RawConn(s));
            });
            s.once('error', reject);
        });
    }

    constructor(sock) {
        this.sock = sock;
        this.chunks = [];
        this.length = 0;
        this.pos = 0; // where the next response starts
        this.closed = false;
        this.error = null;
        this.waiters = new Set();
        this.firstDataAt = null;
        let closeGate;
        this.closedP = new Promise((r) => (closeGate = r));
        sock.on('data', (d) => {
            this.firstDataAt ??= Date.now();
            this.chunks.push(d);
            this.length += d.length;
            this.poke();
        });
        // a reset or a write to a closed connection: what was read stays readable
        sock.on('error', (err) => (this.error = err));
        sock.on('close', () => {
            this.closed = true;
            closeGate();
            this.poke();
        });
    }

    poke() {
        for (const w of [...this.waiters]) w();
    }

    bytes() {
        if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
        return this.chunks[0] ?? EMPTY;
    }

    write(data) {
        if (!this.sock.destroyed && this.sock.writable) this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    }

    destroy() {
        this.sock.destroy();
    }

    // Resolves with the next response on the connection (a 1xx counts as one). Rejects when the
    // connection closes before a status line and head arrived. No timeout of its own.
    response({ method = 'GET' } = {}) {
        return new Promise((resolve, reject) => {
            const check = () => {
                let r;
                try {
                    r = parseResponseAt(this.bytes(), this.pos, { closed: this.closed, method });
                } catch (err) {
                    this.waiters.delete(check);
                    reject(err);
                    return;
                }
                if (r) {
                    this.waiters.delete(check);
                    this.pos = r.end;
                    resolve(r);
                } else if (this.closed) {
                    this.waiters.delete(check);
                    const got = this.bytes().subarray(this.pos);
                    reject(new Error(`connection closed${this.error ? ` (${this.error.code ?? this.error.message})` : ''} without a response; got ${got.length} bytes: ${JSON.stringify(got.subarray(0, 300).toString('latin1'))}`));
                }
            };
            this.waiters.add(check);
            check();
        });
    }

    // Resolves once everything received satisfies pred; rejects when the connection closes first.
    waitData(pred) {
        return new Promise((resolve, reject) => {
            const check = () => {
                if (pred(this.bytes())) {
                    this.waiters.delete(check);
                    resolve(this.bytes());
                } else if (this.closed) {
                    this.waiters.delete(check);
                    reject(new Error(`connection closed before the expected bytes; got ${JSON.stringify(this.bytes().toString('latin1').slice(-500))}`));
                }
            };
            this.waiters.add(check);
            check();
        });
    }

    waitClose() {
        return this.closedP;
    }

    // Resolves once pred() holds, checked whenever bytes arrive or the connection closes.
    waitFor(pred) {
        return new Promise((resolve) => {
            const check = () => {
                if (pred()) {
                    this.waiters.delete(check);
                    resolve();
                }
            };
            this.waiters.add(check);
            check();
        });
    }
}

// Request bytes: the request line, Host (unless host: false), headers (object or [[k, v]]), and
// Content-Length for a body unless a framing header is given.
function request(method, target, { headers = [], body = null, version = 'HTTP/1.1', host = true } = {}) {
    const list = Array.isArray(headers) ? headers : Object.entries(headers);
    const lines = [`${method} ${target} ${version}`];
    if (host) lines.push('Host: 127.0.0.1');
    for (const [k, v] of list) lines.push(`${k}: ${v}`);
    const b = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(body);
    if (b && !list.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k))) lines.push(`Content-Length: ${b.length}`);
    return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b ?? EMPTY]);
}

function chatRequest(target = '/v1/chat/completions', { stream = false, headers = {}, body = null } = {}) {
    return request('POST', target, {
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}`, ...headers },
        body: body ?? chatBody({ stream }),
    });
}

// One request on a fresh connection: {c, res}.
async function exchange(port, bytes, { ms = 5000, what = 'the response', method } = {}) {
    const c = await RawConn.open(port);
    c.write(bytes);
    try {
        const res = await withTimeout(c.response({ method }), ms, what);
        return { c, res };
    } catch (err) {
        c.destroy();
        throw err;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* assertions                                                                                   */

const TYPE_FOR = { 400: 'invalid_request_error' };

// An error response astgate made itself: status, JSON body of the right shape, x-request-id.
function assertOwnError(res, status, code, { anthropic = false } = {}) {
    const where = `${res.statusLine}\n${res.headText}\n\n${res.body.toString('utf8').slice(0, 500)}`;
    assert.equal(res.status, status, where);
    assert.ok(res.complete, `incomplete error response:\n${where}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json\b/i, `Content-Type of\n${where}`);
    const rid = res.headers['x-request-id'];
    assert.ok(typeof rid === 'string' && rid.length > 0, `no x-request-id header in\n${where}`);
    let j;
    try {
        j = JSON.parse(res.body.toString('utf8'));
    } catch (err) {
        assert.fail(`the error body is not JSON (${err.message}):\n${where}`);
    }
    if (anthropic) {
        assert.equal(j.type, 'error', `"type" of ${JSON.stringify(j)}`);
        assert.ok(j.error && typeof j.error === 'object', `no "error" object in ${JSON.stringify(j)}`);
        assert.equal(typeof j.error.type, 'string');
        if (TYPE_FOR[status]) assert.equal(j.error.type, TYPE_FOR[status]);
        assert.equal(typeof j.error.message, 'string');
        assert.ok(j.error.message.length > 0, 'empty error.message');
        assert.equal(j.request_id, rid, 'request_id in the body = the x-request-id header');
    } else {
        assert.ok(j.error && typeof j.error === 'object', `no "error" object in ${JSON.stringify(j)}`);
        assert.equal(typeof j.error.message, 'string');
        assert.ok(j.error.message.length > 0, 'empty error.message');
        assert.equal(typeof j.error.type, 'string');
        if (TYPE_FOR[status]) assert.equal(j.error.type, TYPE_FOR[status], `error.type of ${JSON.stringify(j)}`);
        assert.ok('param' in j.error && j.error.param === null, `error.param must be null: ${JSON.stringify(j)}`);
        assert.equal(j.error.code, code, `error.code of ${JSON.stringify(j)}`);
    }
    return j;
}

// After a malformed request: Connection: close, then EOF.
async function assertClosedAfter(c, res) {
    assert.match(res.headers.connection ?? '', /\bclose\b/i, `no Connection: close in\n${res.headText}`);
    await withTimeout(c.waitClose(), 3000, 'astgate to close the connection after the error');
}

// The access log line of a request id (logs.access: '-', i.e. astgate's stderr).
async function accessLine(proc, id, ms = 5000) {
    const l = await withTimeout(
        proc.waitLine((x) => {
            if (!x.includes(id)) return false;
            try {
                const j = JSON.parse(x);
                return j.type === 'access' && j.request_id === id;
            } catch {
                return false;
            }
        }),
        ms,
        `the access log line of request ${id}`,
    );
    return JSON.parse(l);
}

function accessLines(proc, id) {
    return proc.jsonLines().filter((j) => j.type === 'access' && j.request_id === id);
}

// A marker unique to one request (letters and digits only): put in its target, it tells whether
// any byte of that request reached the upstream, whatever else the upstream received meanwhile.
let tagSeq = 0;
function newTag() {
    return `e2etag${process.pid}n${++tagSeq}z`;
}

function assertNotForwarded(up, t) {
    const got = up.received();
    const at = got.indexOf(t);
    assert.ok(at < 0, `the upstream received (part of) the refused request: ${JSON.stringify(got.subarray(Math.max(0, at - 300), at + 200).toString('latin1'))}`);
}

// The one upstream request that carries tag t (in its target or its x-request-id).
function upstreamRequest(up, t) {
    const recs = up.requests.filter((r) => r.target.includes(t) || r.get('x-request-id') === t);
    assert.equal(recs.length, 1, `upstream requests with ${t}`);
    return recs[0];
}

const byId = (id) => ({ when: (rec) => rec.get('x-request-id') === id });
const byTarget = (t) => ({ when: (rec) => rec.target.includes(t) });

function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
        assert.ok(m, `not a metric line: ${JSON.stringify(line)}`);
        out.set(m[1] + (m[2] ?? ''), Number(m[3]));
    }
    return out;
}

async function metrics(port) {
    const { c, res } = await exchange(port, request('GET', '/metrics'));
    c.destroy();
    assert.equal(res.status, 200, `GET /metrics: ${res.statusLine}`);
    return parseMetrics(res.body.toString('utf8'));
}

function rssBytes(pid) {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(s);
    assert.ok(m, 'no VmRSS in /proc/PID/status');
    return Number(m[1]) * 1024;
}

function endsWithLastChunk(buf) {
    return buf.subarray(-5).toString('latin1') === '0\r\n\r\n';
}

// An SSE body (decoded) → its data payloads parsed as JSON where they are JSON.
function ssePayloads(body) {
    return parseSSE(body.toString('utf8')).events.map((e) => {
        try {
            return JSON.parse(e.data);
        } catch {
            return e.data;
        }
    });
}

/* ------------------------------------------------------------------------------------------ */
/* astgate in front of a raw upstream                                                           */

async function startGate(upstream, cfg = {}) {
    const config = writeConfig({
        listen: '127.0.0.1:0',
        upstream,
        rules: [RULES_ABS],
        logs: { access: '-', rewrite: 'off' },
        ...cfg,
    });
    return Astgate.start({ upstream, config });
}

// A shared astgate + raw upstream for a describe.
function harness(cfg = {}, { upstreamPath = '' } = {}) {
    const h = { up: null, proc: null, port: 0 };
    before(async () => {
        h.up = await RawUpstream.start();
        try {
            h.proc = await startGate(h.up.url + upstreamPath, typeof cfg === 'function' ? await cfg(h.up) : cfg);
        } catch (err) {
            await h.up.close();
            h.up = null;
            throw err;
        }
        h.port = h.proc.port;
    });
    after(async () => {
        try {
            await h.proc?.stop();
        } finally {
            await h.up?.close();
        }
    });
    beforeEach(() => h.proc?.assertAlive());
    return h;
}

/* ------------------------------------------------------------------------------------------ */

describe('strict HTTP/1.1 front end (default limits)', { skip: NEEDS_PROXY }, () => {
    const h = harness();

    // Sends the bytes make(tag) that astgate must refuse (tag goes into the request target, and
    // into the one smuggled behind it); checks the error, the close, and that not one byte of the
    // request reached the upstream.
    async function refused(make, status, code, { anthropic = false } = {}) {
        const t = newTag();
        const bytes = make(t);
        const { c, res } = await exchange(h.port, typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
        try {
            assertOwnError(res, status, code, { anthropic });
            await assertClosedAfter(c, res);
        } finally {
            c.destroy();
        }
        assertNotForwarded(h.up, t);
        return res;
    }

    describe('errors astgate makes itself', () => {
        const twoLengths = (path) => (t) =>
            `POST ${path}?t=${t} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{} `;

        it('a malformed request → 400 bad_request (invalid_request_error), JSON body, x-request-id, Connection: close, then EOF', async () => {
            await refused(twoLengths('/v1/embeddings'), 400, 'bad_request');
        });

        it('on /v1/messages the error body is Anthropic-shaped: {"type":"error","error":{type,message},"request_id"}', async () => {
            await refused(twoLengths('/v1/messages'), 400, 'bad_request', { anthropic: true });
        });

        it('a malformed request writes one access log line ("type":"access") with status 400', async () => {
            const res = await refused(twoLengths('/v1/embeddings'), 400, 'bad_request');
            const id = res.headers['x-request-id'];
            const a = await accessLine(h.proc, id);
            assert.equal(a.status, 400, JSON.stringify(a));
            assert.equal(accessLines(h.proc, id).length, 1, `access lines of ${id}`);
        });

        it('malformed requests count in /metrics: route passthrough or chat.completions (POST), by status', async () => {
            const before = await metrics(h.port);
            await refused(twoLengths('/v1/embeddings'), 400, 'bad_request');
            await refused(twoLengths('/v1/chat/completions'), 400, 'bad_request');
            await refused((t) => `GET /v1/models?t=${t} HTTP/1.2\r\nHost: 127.0.0.1\r\n\r\n`, 505, 'http_version_not_supported');
            const after = await metrics(h.port);
            const d = (k) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
            assert.equal(d('astgate_requests_total{route="passthrough",status="400"}'), 1, 'passthrough 400');
            assert.equal(d('astgate_requests_total{route="chat.completions",status="400"}'), 1, 'chat.completions 400');
            assert.equal(d('astgate_requests_total{route="passthrough",status="505"}'), 1, 'passthrough 505');
        });
    });

    describe('request smuggling: refused, nothing reaches the upstream', () => {
        const SMUGGLED = (t) => `GET /smuggled-${t} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
        const HEAD = (t) => `POST /v1/embeddings?t=${t} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`;
        const cases = [
            ['two different Content-Length headers', (t) => `${HEAD(t)}Content-Length: 2\r\nContent-Length: ${2 + SMUGGLED(t).length}\r\n\r\n{}${SMUGGLED(t)}`],
            ['two identical Content-Length headers', (t) => `${HEAD(t)}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['Content-Length: +2', (t) => `${HEAD(t)}Content-Length: +2\r\n\r\n{}${SMUGGLED(t)}`],
            ['Content-Length together with Transfer-Encoding: chunked', (t) => `${HEAD(t)}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED(t)}`],
            ['chunk size 0x2', (t) => `${HEAD(t)}Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n${SMUGGLED(t)}`],
            ['chunk size with a leading space (" 2")', (t) => `${HEAD(t)}Transfer-Encoding: chunked\r\n\r\n 2\r\n{}\r\n0\r\n\r\n${SMUGGLED(t)}`],
            ['"Transfer-Encoding : chunked" (space before the colon)', (t) => `${HEAD(t)}Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n${SMUGGLED(t)}`],
            ['a header name with "[" (X-Bad[: 1)', (t) => `${HEAD(t)}X-Bad[: 1\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['a header name with a space (X Bad: 1)', (t) => `${HEAD(t)}X Bad: 1\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['a header value with a NUL byte', (t) => `${HEAD(t)}X-Nul: a\x00b\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['a bare LF line end inside the head', (t) => `${HEAD(t)}X-Lf: 1\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['obs-fold (a header line starting with a space)', (t) => `${HEAD(t)}X-Fold: 1\r\n folded\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['HTTP/1.1 without Host', (t) => `POST /v1/embeddings?t=${t} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
            ['two Host headers', (t) => `${HEAD(t)}Host: 127.0.0.2\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED(t)}`],
        ];
        for (const [name, bytes] of cases) {
            it(`${name} → 400`, async () => {
                await refused(bytes, 400, 'bad_request');
            });
        }

        it('HTTP/1.2 → 505 http_version_not_supported, answered as HTTP/1.1 (never echoing 1.2)', async () => {
            const res = await refused((t) => `GET /v1/models?t=${t} HTTP/1.2\r\nHost: 127.0.0.1\r\n\r\n${SMUGGLED(t)}`, 505, 'http_version_not_supported');
            assert.match(res.statusLine, /^HTTP\/1\.1 505\b/);
        });

        it('HTTP/2.0 on the request line → 505', async () => {
            const res = await refused((t) => `GET /v1/models?t=${t} HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n${SMUGGLED(t)}`, 505, 'http_version_not_supported');
            assert.match(res.statusLine, /^HTTP\/1\.1 505\b/);
        });

        it('Transfer-Encoding: gzip (chunked not final) → 501 not_implemented', async () => {
            await refused((t) => `${HEAD(t)}Transfer-Encoding: gzip\r\n\r\n{}${SMUGGLED(t)}`, 501, 'not_implemented');
        });
    });

    describe('denial of service (default limits)', () => {
        it('90,000 tiny headers → 431 within 2 s; the next connection is served', async () => {
            const t = newTag();
            const c = await RawConn.open(h.port);
            try {
                c.write(`GET /v1/models?t=${t} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
                c.write(Buffer.from('X-A: 1\r\n'.repeat(90000)));
                c.write('\r\n');
                const res = await withTimeout(c.response(), 2000, 'the 431 to 90,000 headers');
                assertOwnError(res, 431, 'request_header_fields_too_large');
            } finally {
                c.destroy();
            }
            assertNotForwarded(h.up, t);
            const { c: c2, res } = await exchange(h.port, request('GET', '/v1/models'));
            c2.destroy();
            assert.equal(res.status, 200, `a normal request after the flood: ${res.statusLine}`);
        });

        it('one 256 KiB header → 431 (default max_header_bytes 32768) and the RSS stays under 200 MB', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { 'X-Big': 'b'.repeat(256 * 1024) } }));
            try {
                assertOwnError(res, 431, 'request_header_fields_too_large');
                await assertClosedAfter(c, res);
            } finally {
                c.destroy();
            }
            assertNotForwarded(h.up, t);
            const rss = rssBytes(h.proc.child.pid);
            assert.ok(rss < 200 * MB, `astgate RSS ${Math.round(rss / MB)} MB`);
        });

        it('a 16 KiB URL → 414 uri_too_long (default max_url_bytes 8192)', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, request('GET', `/v1/models?t=${t}&q=${'u'.repeat(16 * 1024)}`));
            try {
                assertOwnError(res, 414, 'uri_too_long');
                await assertClosedAfter(c, res);
            } finally {
                c.destroy();
            }
            assertNotForwarded(h.up, t);
        });

        it('more headers than limits.max_headers (default 100) → 431; 50 headers pass', async () => {
            const many = Array.from({ length: 101 }, (_, i) => [`X-H${i}`, '1']);
            const t = newTag();
            const { c, res } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: many }));
            try {
                assertOwnError(res, 431, 'request_header_fields_too_large');
            } finally {
                c.destroy();
            }
            assertNotForwarded(h.up, t);
            const { c: c2, res: ok } = await exchange(h.port, request('GET', '/v1/models', { headers: many.slice(0, 50) }));
            c2.destroy();
            assert.equal(ok.status, 200, ok.statusLine);
        });
    });

    describe('the request target: dot segments, %2F, control characters', () => {
        for (const [label, target] of [
            ['/v1/x/../chat/completions', '/v1/x/../chat/completions'],
            ['/v1/x/%2e%2e/chat/completions', '/v1/x/%2e%2e/chat/completions'],
        ]) {
            it(`POST ${label} → the upstream gets POST /v1/chat/completions and the client the rewritten reply`, async () => {
                const id = newTag();
                h.up.enqueue({ chat: REWRITE_INPUT }, byId(id));
                const { c, res } = await exchange(h.port, chatRequest(target, { headers: { 'x-request-id': id } }));
                c.destroy();
                assert.equal(upstreamRequest(h.up, id).requestLine, 'POST /v1/chat/completions HTTP/1.1');
                assert.equal(res.status, 200, res.statusLine);
                const content = JSON.parse(res.body.toString('utf8')).choices[0].message.content;
                assert.ok(content.includes('gpt-4.1-nano'), 'the model was not pinned');
                assert.equal(content, REWRITE_EXPECTED);
                assert.equal(res.headers['x-astgate-rewrites'], '1');
            });
        }

        it('/../v1/chat/completions (above the root) → 400, nothing upstream', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, chatRequest(`/../v1/chat/completions?t=${t}`));
            try {
                assertOwnError(res, 400, 'bad_request');
                await assertClosedAfter(c, res);
            } finally {
                c.destroy();
            }
            assertNotForwarded(h.up, t);
        });

        it('%2F in the path → 400, nothing upstream', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, request('GET', `/v1/files%2F..%2Fmodels?t=${t}`));
            c.destroy();
            assertOwnError(res, 400, 'bad_request');
            assertNotForwarded(h.up, t);
        });

        it('a control character (\\x01) in the target → 400, not 502', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, request('GET', `/v1/mo\x01dels?t=${t}`));
            c.destroy();
            assertOwnError(res, 400, 'bad_request');
            assertNotForwarded(h.up, t);
        });
    });

    describe('keep-alive, pipelining, HTTP/1.0, Expect, chunked bodies', () => {
        it('two requests on one connection: both answered, both reach the upstream', async () => {
            const t = newTag();
            const c = await RawConn.open(h.port);
            try {
                c.write(request('GET', `/v1/models?one=${t}`));
                const a = await withTimeout(c.response(), 5000, 'the first response');
                assert.equal(a.status, 200, a.statusLine);
                assert.ok(!c.closed, 'the connection was closed after the first response');
                c.write(request('GET', `/v1/models?two=${t}`));
                const b = await withTimeout(c.response(), 5000, 'the second response');
                assert.equal(b.status, 200, b.statusLine);
            } finally {
                c.destroy();
            }
            assert.deepEqual(
                h.up.requests.filter((r) => r.target.includes(t)).map((r) => r.target),
                [`/v1/models?one=${t}`, `/v1/models?two=${t}`],
            );
        });

        it('two pipelined requests (written at once) → two responses, in order', async () => {
            const t = newTag();
            const echo = (rec) => ({ body: JSON.stringify({ target: rec.target }) });
            h.up.enqueue(echo, byTarget(t));
            h.up.enqueue(echo, byTarget(t));
            const c = await RawConn.open(h.port);
            try {
                c.write(Buffer.concat([request('GET', `/v1/models?p=1&t=${t}`), request('GET', `/v1/models?p=2&t=${t}`)]));
                const a = await withTimeout(c.response(), 5000, 'the first pipelined response');
                const b = await withTimeout(c.response(), 5000, 'the second pipelined response');
                assert.equal(a.status, 200, a.statusLine);
                assert.equal(b.status, 200, b.statusLine);
                assert.equal(JSON.parse(a.body).target, `/v1/models?p=1&t=${t}`);
                assert.equal(JSON.parse(b.body).target, `/v1/models?p=2&t=${t}`);
            } finally {
                c.destroy();
            }
        });

        it('an HTTP/1.0 request without Host is answered, then the connection is closed', async () => {
            const { c, res } = await exchange(h.port, request('GET', '/v1/models', { version: 'HTTP/1.0', host: false }));
            try {
                assert.equal(res.status, 200, res.statusLine);
                await withTimeout(c.waitClose(), 3000, 'astgate to close the HTTP/1.0 connection');
            } finally {
                c.destroy();
            }
        });

        it('Expect: 100-continue → "HTTP/1.1 100 Continue" before the body is sent, then the final response', async () => {
            const t = newTag();
            const body = '{"model":"text-embedding-3-small","input":"expect me"}';
            const c = await RawConn.open(h.port);
            try {
                c.write(
                    request('POST', `/v1/embeddings?t=${t}`, {
                        headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length), Expect: '100-continue' },
                    }),
                );
                const interim = await withTimeout(c.response(), 5000, '100 Continue');
                assert.match(interim.statusLine, /^HTTP\/1\.1 100 Continue$/);
                c.write(body);
                const res = await withTimeout(c.response(), 5000, 'the final response');
                assert.equal(res.status, 200, res.statusLine);
            } finally {
                c.destroy();
            }
            assert.equal(upstreamRequest(h.up, t).body.toString(), body);
        });

        it('Expect: something-else → 417 expectation_failed, nothing upstream', async () => {
            const t = newTag();
            const { c, res } = await exchange(h.port, request('POST', `/v1/embeddings?t=${t}`, { headers: { 'Content-Type': 'application/json', Expect: 'something-else' }, body: '{}' }));
            c.destroy();
            assertOwnError(res, 417, 'expectation_failed');
            assertNotForwarded(h.up, t);
        });

        it('a chunked request body reaches the upstream whole', async () => {
            const t = newTag();
            const parts = ['{"model":"text-embedding-3-small",', '"input":"chunked ', 'body é"}'];
            const bytes = Buffer.concat([
                request('POST', `/v1/embeddings?t=${t}`, { headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }),
                ...parts.map((p) => {
                    const b = Buffer.from(p);
                    return Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
                }),
                Buffer.from('0\r\n\r\n'),
            ]);
            const { c, res } = await exchange(h.port, bytes);
            c.destroy();
            assert.equal(res.status, 200, res.statusLine);
            const rec = upstreamRequest(h.up, t);
            assert.ok(rec.body.equals(Buffer.from(parts.join(''))), `upstream body: ${rec.body}`);
        });
    });

    describe('headers to the upstream', () => {
        it('hop-by-hop headers (Connection, Keep-Alive, TE, Upgrade, Proxy-Connection, names in Connection) are not forwarded', async () => {
            const t = newTag();
            const { c, res } = await exchange(
                h.port,
                request('GET', `/v1/models?t=${t}`, {
                    headers: [
                        ['Connection', 'keep-alive, X-Hop-Named'],
                        ['X-Hop-Named', 'drop-me'],
                        ['Keep-Alive', 'timeout=5'],
                        ['TE', 'trailers'],
                        ['Upgrade', 'foo/1'],
                        ['Proxy-Connection', 'keep-alive'],
                        ['X-Custom-E2e', 'kept'],
                    ],
                }),
            );
            c.destroy();
            assert.equal(res.status, 200, res.statusLine);
            const rec = upstreamRequest(h.up, t);
            assert.equal(rec.get('x-custom-e2e'), 'kept');
            for (const name of ['x-hop-named', 'keep-alive', 'te', 'upgrade', 'proxy-connection']) {
                assert.equal(rec.get(name), undefined, `${name} was forwarded:\n${rec.head}`);
            }
            for (const v of rec.all('connection')) {
                assert.match(v, /^\s*(keep-alive|close)\s*$/i, `the client's Connection header was forwarded:\n${rec.head}`);
            }
        });

        it('X-Forwarded-For: 1.2.3.4 from the client arrives as "1.2.3.4, 127.0.0.1"', async () => {
            const t = newTag();
            const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { 'X-Forwarded-For': '1.2.3.4' } }));
            c.destroy();
            assert.deepEqual(upstreamRequest(h.up, t).all('x-forwarded-for'), ['1.2.3.4, 127.0.0.1']);
        });

        it('Forwarded headers from the client get the client\'s for= element once, on the first', async () => {
            const t = newTag();
            const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: [['Forwarded', 'for=1.2.3.4'], ['Forwarded', 'for=5.6.7.8']] }));
            c.destroy();
            assert.deepEqual(upstreamRequest(h.up, t).all('forwarded'), ['for=1.2.3.4, for=127.0.0.1', 'for=5.6.7.8']);
        });

        it('without X-Forwarded-For the upstream gets X-Forwarded-For: 127.0.0.1', async () => {
            const t = newTag();
            const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`));
            c.destroy();
            assert.deepEqual(upstreamRequest(h.up, t).all('x-forwarded-for'), ['127.0.0.1']);
        });

        it('the Authorization header arrives byte-identical', async () => {
            const value = `Bearer ${API_KEY}  Odd.Case_x/+=~`;
            const t = newTag();
            const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { Authorization: value } }));
            c.destroy();
            const rec = upstreamRequest(h.up, t);
            assert.deepEqual(rec.all('authorization'), [value]);
            assert.ok(rec.head.toLowerCase().includes(`\r\nauthorization: ${value.toLowerCase()}\r\n`), `raw head:\n${rec.head}`);
        });
    });

    describe('cancellation and upstream resets', () => {
        it('a client that leaves while the upstream has not answered: the upstream sees the close; access log 499', async () => {
            const id = newTag();
            h.up.enqueue({ hold: true }, byId(id));
            const c = await RawConn.open(h.port);
            c.write(chatRequest('/v1/chat/completions', { headers: { 'x-request-id': id } }));
            const rec = await withTimeout(h.up.waitRequest((r) => r.get('x-request-id') === id), 5000, 'the request to reach the upstream');
            c.destroy();
            await withTimeout(rec.closed, 5000, "the upstream to see the client's cancellation");
            const a = await accessLine(h.proc, id);
            assert.equal(a.status, 499, JSON.stringify(a));
        });

        // A streamed chat completion whose upstream sends two events, then (at rec.reset()) a TCP
        // reset; cut: 'middle' writes half of a third event first.
        async function sseReset(cut) {
            const events = [sseEvent(chatChunkJson({ role: 'assistant', content: '' })), sseEvent(chatChunkJson({ content: 'Hello there, the agent follows.\n\n' }))];
            const id = newTag();
            h.up.enqueue({ stream: events, cut, reset: 'manual' }, byId(id));
            const c = await RawConn.open(h.port);
            try {
                c.write(chatRequest('/v1/chat/completions', { stream: true, headers: { 'x-request-id': id, Accept: 'text/event-stream' } }));
                const rec = await withTimeout(h.up.waitRequest((r) => r.get('x-request-id') === id), 5000, 'the request to reach the upstream');
                await withTimeout(c.waitData((b) => b.includes('Hello there')), 5000, 'the first events to reach the client');
                rec.reset();
                await withTimeout(
                    c.waitFor(() => c.closed || endsWithLastChunk(c.bytes())),
                    5000,
                    'astgate to close the client connection (or end the body)',
                );
                const raw = c.bytes();
                assert.ok(!endsWithLastChunk(raw), `the body ended with the terminating chunk 0\\r\\n\\r\\n after an upstream reset; the client sees a clean end:\n${raw.toString('latin1').slice(-400)}`);
                assert.ok(c.closed, 'the connection is not closed');
                const res = parseResponseAt(raw, 0, { closed: true });
                assert.equal(res.status, 200, res.statusLine);
                assert.ok(res.chunked, `the stream is not chunked, so its end cannot tell a cut:\n${res.headText}`);
                assert.equal(res.complete, false, 'the chunked body is complete');
                const payloads = ssePayloads(res.body);
                const hello = payloads.findIndex((p) => p?.choices?.[0]?.delta?.content?.includes('Hello there'));
                const err = payloads.findIndex((p) => p && typeof p === 'object' && 'error' in p);
                assert.ok(hello >= 0, 'the events before the reset did not reach the client');
                assert.ok(err > hello, `no data: {"error":...} event after the forwarded events: ${JSON.stringify(payloads).slice(0, 800)}`);
                assert.ok(!payloads.includes('[DONE]'), 'data: [DONE] after an upstream reset');
            } finally {
                c.destroy();
            }
        }

        it('an SSE reply reset at an event boundary → an error event, then close without the terminating chunk', async () => {
            await sseReset('boundary');
        });

        it('an SSE reply reset in the middle of an event → an error event, then close without the terminating chunk', async () => {
            await sseReset('middle');
        });

        it('a chunked passthrough reply (not an event stream) reset mid-body → the client connection closes without the terminating chunk', async () => {
            const t = newTag();
            h.up.enqueue({ stream: ['first part of the file\n'], contentType: 'application/octet-stream', reset: 'manual' }, byTarget(t));
            const c = await RawConn.open(h.port);
            try {
                c.write(request('GET', `/v1/files/file-e2e/content?t=${t}`));
                const rec = await withTimeout(h.up.waitRequest((r) => r.target.includes(t)), 5000, 'the request to reach the upstream');
                await withTimeout(c.waitData((b) => b.includes('first part')), 5000, 'the first part to reach the client');
                rec.reset();
                await withTimeout(
                    c.waitFor(() => c.closed || endsWithLastChunk(c.bytes())),
                    5000,
                    'astgate to close the client connection (or end the body)',
                );
                const raw = c.bytes();
                assert.ok(!endsWithLastChunk(raw), `the body ended with the terminating chunk 0\\r\\n\\r\\n after an upstream reset; the client sees a clean end:\n${raw.toString('latin1').slice(-400)}`);
                assert.ok(c.closed, 'the connection is not closed');
                const res = parseResponseAt(raw, 0, { closed: true });
                assert.equal(res.status, 200, res.statusLine);
                assert.ok(res.chunked, `the reply is not chunked, so its end cannot tell a cut:\n${res.headText}`);
                assert.equal(res.complete, false, 'the chunked body is complete');
            } finally {
                c.destroy();
            }
        });
    });

    describe('validators on rewritten bodies', () => {
        it('a rewritten chat completion arrives without ETag (or weakened to W/), Last-Modified and Content-MD5', async () => {
            const id = newTag();
            h.up.enqueue({ chat: REWRITE_INPUT, etag: '"e2e-etag-1"', lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT', contentMd5: 'Q2hlY2sgSW50ZWdyaXR5IQ==' }, byId(id));
            const { c, res } = await exchange(h.port, chatRequest('/v1/chat/completions', { headers: { 'x-request-id': id } }));
            c.destroy();
            assert.equal(res.status, 200, res.statusLine);
            assert.equal(JSON.parse(res.body).choices[0].message.content, REWRITE_EXPECTED);
            assert.equal(res.headers['x-astgate-rewrites'], '1');
            const etag = res.headers.etag;
            assert.ok(etag === undefined || etag.startsWith('W/'), `a strong ETag on a rewritten body: ${etag}`);
            assert.equal(res.headers['last-modified'], undefined, 'Last-Modified on a rewritten body');
            assert.equal(res.headers['content-md5'], undefined, 'Content-MD5 on a rewritten body');
        });

        it('a passthrough reply (GET /v1/models) keeps its ETag', async () => {
            const t = newTag();
            h.up.enqueue({ headers: { ETag: '"models-v1"' }, body: '{"object":"list","data":[]}' }, byTarget(t));
            const { c, res } = await exchange(h.port, request('GET', `/v1/models?t=${t}`));
            c.destroy();
            assert.equal(res.status, 200, res.statusLine);
            assert.equal(res.headers.etag, '"models-v1"');
        });
    });
});

describe('configured limits and timeouts', { skip: NEEDS_PROXY }, () => {
    const MAX_BODY = 1000;
    const h = harness({
        limits: { max_request_body: MAX_BODY, max_header_bytes: 32768, max_headers: 20 },
        timeouts: { header_ms: 500 },
    });

    it(`a body over limits.max_request_body (${MAX_BODY}, Content-Length) → 413 request_too_large, nothing upstream`, async () => {
        const t = newTag();
        const { c, res } = await exchange(h.port, request('POST', `/v1/embeddings?t=${t}`, { headers: { 'Content-Type': 'application/json' }, body: `{"input":"${'x'.repeat(2 * MAX_BODY)}"}` }));
        c.destroy();
        assertOwnError(res, 413, 'request_too_large');
        assertNotForwarded(h.up, t);
    });

    it('a chunked body over limits.max_request_body → 413 request_too_large, nothing upstream', async () => {
        const t = newTag();
        const piece = Buffer.from('y'.repeat(400));
        const chunks = [Buffer.from('{"model":"gpt-4o-mini","padding":"'), piece, piece, piece, Buffer.from('"}')];
        const bytes = Buffer.concat([
            request('POST', `/v1/chat/completions?t=${t}`, { headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }),
            ...chunks.map((b) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')])),
            Buffer.from('0\r\n\r\n'),
        ]);
        const { c, res } = await exchange(h.port, bytes);
        c.destroy();
        assertOwnError(res, 413, 'request_too_large');
        assertNotForwarded(h.up, t);
    });

    it('one 256 KiB header with limits.max_header_bytes: 32768 → 431, RSS under 200 MB', async () => {
        const t = newTag();
        const { c, res } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { 'X-Big': 'b'.repeat(256 * 1024) } }));
        c.destroy();
        assertOwnError(res, 431, 'request_header_fields_too_large');
        assertNotForwarded(h.up, t);
        const rss = rssBytes(h.proc.child.pid);
        assert.ok(rss < 200 * MB, `astgate RSS ${Math.round(rss / MB)} MB`);
    });

    it('more headers than limits.max_headers (20) → 431; 10 pass', async () => {
        const many = Array.from({ length: 21 }, (_, i) => [`X-H${i}`, '1']);
        const { c, res } = await exchange(h.port, request('GET', '/v1/models', { headers: many }));
        c.destroy();
        assertOwnError(res, 431, 'request_header_fields_too_large');
        const { c: c2, res: ok } = await exchange(h.port, request('GET', '/v1/models', { headers: many.slice(0, 10) }));
        c2.destroy();
        assert.equal(ok.status, 200, ok.statusLine);
    });

    it('a client trickling one header line per 100 ms (timeouts.header_ms: 500) → 408 or a close within 3 s', async () => {
        const t = newTag();
        const c = await RawConn.open(h.port);
        const started = Date.now();
        c.write(`GET /v1/models?t=${t} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
        let i = 0;
        // the trickle itself is the load, not a wait: at most 40 lines (4 s), stopped on close
        const timer = setInterval(() => {
            if (c.closed || i >= 40) return clearInterval(timer);
            c.write(`X-Trickle-${i++}: 1\r\n`);
        }, 100);
        try {
            await withTimeout(c.waitClose(), 3000, 'astgate to end the trickling client');
        } finally {
            clearInterval(timer);
            c.destroy();
        }
        const ms = Date.now() - started;
        assert.ok(ms < 3000, `closed after ${ms} ms`);
        if (c.bytes().length > 0) {
            const res = parseResponseAt(c.bytes(), 0, { closed: true });
            assertOwnError(res, 408, 'request_timeout');
        }
        assertNotForwarded(h.up, t);
    });
});

describe('limits.max_connections: 4', { skip: NEEDS_PROXY }, () => {
    const h = harness({ workers: 1, limits: { max_connections: 4 } });

    it('a 5th connection is not served while 4 are open, and is served once one of them closes; no log flood', async () => {
        const open = [];
        let fifth = null;
        try {
            for (let i = 0; i < 4; i++) {
                const c = await RawConn.open(h.port);
                open.push(c);
                c.write(request('GET', `/v1/models?conn=${i}`));
                const r = await withTimeout(c.response(), 5000, `the response on connection ${i}`);
                assert.equal(r.status, 200, r.statusLine);
            }
            fifth = await RawConn.open(h.port);
            fifth.write(request('GET', '/v1/models?conn=5th'));
            // the server keeps working meanwhile: one more round trip on each of the 4
            for (const [i, c] of open.entries()) {
                c.write(request('GET', `/v1/models?again=${i}`));
                const r = await withTimeout(c.response(), 5000, `the second response on connection ${i}`);
                assert.equal(r.status, 200, r.statusLine);
            }
            assert.equal(fifth.bytes().length, 0, `the 5th connection got an answer while 4 were open: ${JSON.stringify(fifth.bytes().toString('latin1').slice(0, 200))}`);
            assert.ok(!fifth.closed, 'the 5th connection was closed instead of waiting');
            assert.ok(!h.up.requests.some((r) => r.target === '/v1/models?conn=5th'), 'the 5th request reached the upstream');
            const closedAt = Date.now();
            open[0].destroy();
            await open[0].waitClose();
            const res = await withTimeout(fifth.response(), 5000, 'the 5th connection to be served after one closed');
            assert.equal(res.status, 200, res.statusLine);
            assert.ok(fifth.firstDataAt >= closedAt, 'the 5th answer came before a connection closed');
            // access log lines are one per request, not per refused attempt: they do not count
            const noisy = h.proc.lines.filter((l) => /connection/i.test(l) && !/"type":\s*"access"/.test(l));
            assert.ok(noisy.length < 10, `${noisy.length} stderr lines mention connections:\n${noisy.slice(0, 10).join('\n')}`);
        } finally {
            for (const c of open) c.destroy();
            fifth?.destroy();
        }
    });
});

describe('an upstream with a path prefix (/tenant-a/openai)', { skip: NEEDS_PROXY }, () => {
    const h = harness({}, { upstreamPath: '/tenant-a/openai' });

    it('GET /v1/models reaches the upstream as /tenant-a/openai/v1/models', async () => {
        const id = newTag();
        const { c, res } = await exchange(h.port, request('GET', '/v1/models', { headers: { 'x-request-id': id } }));
        c.destroy();
        assert.equal(res.status, 200, res.statusLine);
        assert.equal(upstreamRequest(h.up, id).requestLine, 'GET /tenant-a/openai/v1/models HTTP/1.1');
    });

    it('GET /v1/../../x (climbs above the root) → 400, nothing upstream', async () => {
        const t = newTag();
        const { c, res } = await exchange(h.port, request('GET', `/v1/../../x?t=${t}`));
        c.destroy();
        assertOwnError(res, 400, 'bad_request');
        assertNotForwarded(h.up, t);
    });
});

describe('forwarded: off', { skip: NEEDS_PROXY }, () => {
    const h = harness({ forwarded: 'off' });

    it("the client's X-Forwarded-For is forwarded untouched, and none is added", async () => {
        const t = newTag();
        const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { 'X-Forwarded-For': '1.2.3.4' } }));
        c.destroy();
        assert.deepEqual(upstreamRequest(h.up, t).all('x-forwarded-for'), ['1.2.3.4']);
        const t2 = newTag();
        const { c: c2 } = await exchange(h.port, request('GET', `/v1/models?t=${t2}`));
        c2.destroy();
        assert.deepEqual(upstreamRequest(h.up, t2).all('x-forwarded-for'), []);
    });
});

describe('forwarded: replace', { skip: NEEDS_PROXY }, () => {
    const h = harness({ forwarded: 'replace' });

    it('only X-Forwarded-For: 127.0.0.1 reaches the upstream', async () => {
        const t = newTag();
        const { c } = await exchange(h.port, request('GET', `/v1/models?t=${t}`, { headers: { 'X-Forwarded-For': '1.2.3.4' } }));
        c.destroy();
        assert.deepEqual(upstreamRequest(h.up, t).all('x-forwarded-for'), ['127.0.0.1']);
    });
});

describe('upstream failures: 502 and 504 codes', { skip: NEEDS_PROXY }, () => {
    const h = harness(async (up) => ({
        upstreams: { dead: `http://127.0.0.1:${await closedPort()}`, tls: `https://127.0.0.1:${up.port}` },
        routes: { '/v1/dead': 'dead', '/v1/tls': 'tls' },
        timeouts: { connect_ms: 2000, upstream_ms: 300 },
    }));

    it('an unreachable upstream → 502 upstream_unreachable', async () => {
        const { c, res } = await exchange(h.port, request('GET', '/v1/dead/models'));
        c.destroy();
        assertOwnError(res, 502, 'upstream_unreachable');
    });

    it('a TLS handshake that fails (the upstream speaks plain HTTP) → 502 upstream_tls_error', async () => {
        const { c, res } = await exchange(h.port, request('GET', '/v1/tls/models'));
        c.destroy();
        assertOwnError(res, 502, 'upstream_tls_error');
    });

    it('an upstream that never answers → 504 upstream_timeout', async () => {
        h.up.enqueue({ hold: true });
        const { c, res } = await exchange(h.port, request('GET', '/v1/models'), { ms: 10000 });
        c.destroy();
        assertOwnError(res, 504, 'upstream_timeout');
    });
});

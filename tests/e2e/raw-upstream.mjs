// A raw TCP upstream for the HTTP conformance tests (http-strict.test.mjs): a net server on
// 127.0.0.1 that records every byte it receives, per connection, parses HTTP/1.1 requests
// minimally (head up to CRLFCRLF, then a Content-Length or chunked body) and answers each with a
// canned reply. Unlike fake-upstream.mjs (node:http) it sees the bytes exactly as astgate sent
// them, and it can misbehave at the TCP level (reset a connection in the middle of a body).
//
//   const up = await RawUpstream.start();
//   up.url                                  // http://127.0.0.1:PORT
//   up.enqueue({ chat: text, etag: '"v1"' }) // what the next request gets (FIFO; default: {"ok":true})
//   up.enqueue(reply, { when: (rec) => rec.get('x-request-id') === id })   // ... the next one that matches
//   up.enqueue({ hold: true })              // never answered: await rec.closed to see astgate leave
//   up.enqueue({ stream: [...], contentType, cut: 'boundary' | 'middle', reset: 'auto' | 'manual' })
//   const rec = await up.nextRequest();     // {method, target, version, headers, head, body, conn, ...}
//   up.bytes(), up.received(), up.connections, up.requestCount, up.requests, up.conns
//   await up.close();
//
// Replies:
//   (default)                  200, Content-Type: application/json, Content-Length, keep-alive, {"ok":true}
//   {status, reason, headers, body}   any reply with a Content-Length body (headers: object or [[k, v]])
//   {chat: text, etag, lastModified, contentMd5, headers}   a chat.completion whose message.content is text
//   {stream: [strings], contentType, cut, reset, tail}       a chunked reply, one chunk per string; then
//        cut: 'middle' writes the first half of `tail` (an unfinished event) as one more chunk;
//        reset: 'auto' resets the connection (TCP RST) at once, 'manual' leaves it to rec.reset();
//        reset: false ends the body properly (0\r\n\r\n)
//   {hold: true}               never answers
//   {raw: Buffer|string, end}  these bytes as they are (end: close the connection after them)
//   a function (rec) => one of the above
// Nothing here sleeps.

import net from 'node:net';

export const CHAT_ID = 'chatcmpl-rawUpstream0001';
export const CHAT_MODEL = 'gpt-4o-2024-08-06';
export const CHAT_CREATED = 1741569952;

// A chat.completion body (compact JSON, the OpenAI key order) whose one choice has content text.
export function chatCompletionJson(text, { id = CHAT_ID, model = CHAT_MODEL } = {}) {
    return JSON.stringify({
        id,
        object: 'chat.completion',
        created: CHAT_CREATED,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
        usage: { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140 },
        service_tier: 'default',
        system_fingerprint: 'fp_raw0001',
    });
}

// One chat.completion.chunk payload (the JSON text of a data: line).
export function chatChunkJson({ role = null, content = null, finish = null } = {}) {
    const delta = {};
    if (role) delta.role = role;
    if (content !== null) delta.content = content;
    return JSON.stringify({
        id: CHAT_ID,
        object: 'chat.completion.chunk',
        created: CHAT_CREATED,
        model: CHAT_MODEL,
        system_fingerprint: 'fp_raw0001',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
}

export function sseEvent(payload) {
    return `data: ${payload}\n\n`;
}

const REASONS = {
    100: 'Continue',
    200: 'OK',
    201: 'Created',
    204: 'No Content',
    400: 'Bad Request',
    401: 'Unauthorized',
    404: 'Not Found',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    502: 'Bad Gateway',
    503: 'Service Unavailable',
};

function headerList(h) {
    if (!h) return [];
    return Array.isArray(h) ? h : Object.entries(h);
}

function head(status, reason, headers) {
    let s = `HTTP/1.1 ${status} ${reason ?? REASONS[status] ?? 'Status'}\r\n`;
    for (const [k, v] of headers) s += `${k}: ${v}\r\n`;
    return s + '\r\n';
}

function chunk(data) {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
    return Buffer.concat([Buffer.from(b.length.toString(16) + '\r\n'), b, Buffer.from('\r\n')]);
}

// A request head: request line and header lines. Returns null when the bytes are not a request
// this minimal parser understands.
function parseHead(text) {
    const lines = text.split('\r\n');
    const m = /^([A-Z]+) (\S+) (HTTP\/\d\.\d)$/.exec(lines[0]);
    if (!m) return null;
    const headers = [];
    for (const l of lines.slice(1)) {
        const c = l.indexOf(':');
        if (c <= 0) return null;
        headers.push([l.slice(0, c), l.slice(c + 1).trim()]);
    }
    return { method: m[1], target: m[2], version: m[3], headers };
}

// Decodes a chunked body at buf[pos...]. Returns {body, end} or null when incomplete; throws on
// bad framing.
function parseChunked(buf, pos) {
    const parts = [];
    for (let guard = 0; guard < 1_000_000; guard++) {
        const eol = buf.indexOf('\r\n', pos);
        if (eol < 0) return null;
        const line = buf.subarray(pos, eol).toString('latin1');
        const size = parseInt(line.split(';')[0], 16);
        if (!/^[0-9a-fA-F]+/.test(line) || !Number.isFinite(size)) throw new Error(`bad chunk size line ${JSON.stringify(line)}`);
        pos = eol + 2;
        if (size === 0) {
            // trailers until an empty line
            for (let g = 0; g < 1000; g++) {
                const e = buf.indexOf('\r\n', pos);
                if (e < 0) return null;
                const empty = e === pos;
                pos = e + 2;
                if (empty) return { body: Buffer.concat(parts), end: pos };
            }
            throw new Error('too many trailers');
        }
        if (buf.length < pos + size + 2) return null;
        parts.push(buf.subarray(pos, pos + size));
        pos += size + 2;
    }
    throw new Error('too many chunks');
}

export class RawUpstream {
    static async start(opts = {}) {
        const u = new RawUpstream(opts);
        await new Promise((resolve, reject) => {
            u.server.once('error', reject);
            u.server.listen(0, '127.0.0.1', () => {
                u.server.off('error', reject);
                resolve();
            });
        });
        u.port = u.server.address().port;
        return u;
    }

    constructor({ defaultReply = null } = {}) {
        this.conns = []; // {id, socket, chunks: Buffer[], requests: [], closed, isClosed, parseError}
        this.requests = []; // every parsed request, in arrival order
        this.queue = [];
        this.defaultReply = defaultReply;
        this.waiters = new Set();
        this.server = net.createServer((s) => this.accept(s));
    }

    get url() {
        return `http://127.0.0.1:${this.port}`;
    }

    get connections() {
        return this.conns.length;
    }

    get requestCount() {
        return this.requests.length;
    }

    // Every byte received, on every connection, in connection order.
    received() {
        return Buffer.concat(this.conns.flatMap((c) => c.chunks));
    }

    // How many bytes were received in all.
    bytes() {
        let n = 0;
        for (const c of this.conns) for (const b of c.chunks) n += b.length;
        return n;
    }

    // Queues a reply for the next request; with `when`, for the next request that matches it
    // (when(rec) → true), so that other requests arriving meanwhile do not take it.
    enqueue(reply, { when = null } = {}) {
        this.queue.push({ reply, when });
    }

    take(rec) {
        const i = this.queue.findIndex((q) => q.when === null || q.when(rec));
        if (i < 0) return this.defaultReply;
        return this.queue.splice(i, 1)[0].reply;
    }

    poke() {
        for (const w of [...this.waiters]) w();
    }

    // Resolves with the first request at index >= from that matches pred (default: the next
    // request to arrive). No timeout of its own: wrap it in withTimeout().
    waitRequest(pred = () => true, from = this.requests.length) {
        return new Promise((resolve) => {
            let seen = from;
            const check = () => {
                for (; seen < this.requests.length; seen++) {
                    if (pred(this.requests[seen])) {
                        this.waiters.delete(check);
                        resolve(this.requests[seen]);
                        return;
                    }
                }
            };
            this.waiters.add(check);
            check();
        });
    }

    nextRequest() {
        return this.waitRequest();
    }

    accept(socket) {
        let closeGate;
        const conn = {
            id: this.conns.length,
            socket,
            chunks: [],
            requests: [],
            isClosed: false,
            parseError: null,
            closed: new Promise((r) => (closeGate = r)),
            received: () => Buffer.concat(conn.chunks),
        };
        this.conns.push(conn);
        let buf = Buffer.alloc(0);
        let busy = false; // a reply is in progress: answer in order, one at a time
        const pump = () => {
            if (busy || conn.parseError || conn.isClosed) return;
            const r = this.parseOne(conn, buf);
            if (r === null) return;
            buf = buf.subarray(r.end);
            busy = true;
            this.answer(conn, r.rec).then(
                (more) => {
                    busy = false;
                    if (more) pump();
                },
                () => {
                    busy = false;
                },
            );
        };
        socket.on('data', (d) => {
            conn.chunks.push(Buffer.from(d));
            buf = Buffer.concat([buf, d]);
            pump();
            this.poke();
        });
        socket.on('error', () => {});
        socket.on('close', () => {
            conn.isClosed = true;
            closeGate();
            this.poke();
        });
    }

    // Parses one request at the start of buf: {rec, end} or null (incomplete or not a request).
    parseOne(conn, buf) {
        const bad = (why) => {
            conn.parseError = why;
            const s = conn.socket;
            if (!s.destroyed) s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
            return null;
        };
        // not text at all (a TLS ClientHello, say): no head will ever come
        const probe = buf.subarray(0, Math.min(buf.length, 64));
        for (const b of probe) {
            if (b === 0x0d || b === 0x0a) break;
            if (b < 0x20 || b > 0x7e) return bad(`not HTTP: starts with ${probe.toString('hex')}`);
        }
        const he = buf.indexOf('\r\n\r\n');
        if (he < 0) return null;
        const headText = buf.subarray(0, he).toString('latin1');
        const h = parseHead(headText);
        if (!h) return bad(`unparsable head ${JSON.stringify(headText.slice(0, 200))}`);
        const get = (name) => {
            const v = h.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, x]) => x);
            return v.length === 0 ? undefined : v.join(', ');
        };
        let body = Buffer.alloc(0);
        let end = he + 4;
        const te = get('transfer-encoding');
        const cl = get('content-length');
        if (te !== undefined && /chunked/i.test(te)) {
            let r;
            try {
                r = parseChunked(buf, end);
            } catch (err) {
                return bad(err.message);
            }
            if (r === null) return null;
            body = r.body;
            end = r.end;
        } else if (cl !== undefined) {
            const n = Number(cl);
            if (!/^\d+$/.test(cl) || !Number.isSafeInteger(n)) return bad(`bad Content-Length ${cl}`);
            if (buf.length < end + n) return null;
            body = buf.subarray(end, end + n);
            end += n;
        }
        let closeGate;
        const rec = {
            ...h,
            path: h.target,
            head: buf.subarray(0, he + 4).toString('latin1'),
            requestLine: headText.split('\r\n')[0],
            body: Buffer.from(body),
            conn,
            closed: conn.closed,
            get,
            // every value of a header (case-insensitive name), in order
            all: (name) => h.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, x]) => x),
            text: () => body.toString('utf8'),
            json: () => JSON.parse(body.toString('utf8')),
            reset: () => {
                if (!conn.socket.destroyed) conn.socket.resetAndDestroy();
            },
        };
        rec.index = this.requests.length;
        conn.requests.push(rec);
        this.requests.push(rec);
        return { rec, end };
    }

    // Writes the reply to rec. Resolves true when the connection may carry another request.
    async answer(conn, rec) {
        let reply = this.take(rec);
        if (typeof reply === 'function') reply = reply(rec);
        reply ??= {};
        rec.reply = reply;
        const s = conn.socket;
        const write = (data) =>
            new Promise((resolve) => {
                if (s.destroyed) return resolve(false);
                s.write(data, () => resolve(true));
            });
        if (reply.hold) return false;
        if (reply.raw !== undefined) {
            await write(reply.raw);
            if (reply.end) s.end();
            return !reply.end;
        }
        if (reply.stream) {
            const headers = [
                ['Content-Type', reply.contentType ?? 'text/event-stream; charset=utf-8'],
                ['Transfer-Encoding', 'chunked'],
                ['Connection', 'keep-alive'],
                ...headerList(reply.headers),
            ];
            await write(head(reply.status ?? 200, reply.reason, headers));
            for (const part of reply.stream) await write(chunk(part));
            if (reply.cut === 'middle') {
                const tail = reply.tail ?? sseEvent(chatChunkJson({ content: 'This event never ends properly, it is cut right here in the middle.' }));
                await write(chunk(tail.slice(0, Math.floor(tail.length / 2))));
            }
            rec.sent = true;
            this.poke();
            if (reply.reset === 'auto') {
                rec.reset();
                return false;
            }
            if (reply.reset === 'manual') return false; // the test calls rec.reset()
            await write('0\r\n\r\n');
            return true;
        }
        let status = reply.status ?? 200;
        let body;
        const headers = [];
        if (reply.chat !== undefined) {
            body = Buffer.from(chatCompletionJson(reply.chat));
            headers.push(['Content-Type', 'application/json']);
            if (reply.etag) headers.push(['ETag', reply.etag]);
            if (reply.lastModified) headers.push(['Last-Modified', reply.lastModified]);
            if (reply.contentMd5) headers.push(['Content-MD5', reply.contentMd5]);
            headers.push(['openai-processing-ms', '123']);
        } else {
            body = reply.body === undefined ? Buffer.from('{"ok":true}') : Buffer.from(reply.body);
            if (!headerList(reply.headers).some(([k]) => k.toLowerCase() === 'content-type')) headers.push(['Content-Type', 'application/json']);
        }
        headers.push(...headerList(reply.headers));
        headers.push(['Content-Length', String(body.length)]);
        headers.push(['Connection', reply.close ? 'close' : 'keep-alive']);
        await write(Buffer.concat([Buffer.from(head(status, reply.reason, headers)), body]));
        rec.sent = true;
        this.poke();
        if (reply.close) {
            s.end();
            return false;
        }
        return true;
    }

    async close() {
        for (const c of this.conns) c.socket.destroy();
        await new Promise((resolve) => this.server.close(() => resolve()));
    }
}

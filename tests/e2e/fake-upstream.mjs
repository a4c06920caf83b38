// A fake OpenAI upstream for the e2e tests: an HTTP server on 127.0.0.1 that replays canned
// replies. Tests program what the next POST /v1/chat/completions gets with enqueue() and read back
// every request it received (method, path, headers, body) and every reply it sent.
//
//   const fake = await FakeUpstream.start();
//   fake.enqueue({ content: [text0, text1], seed: 7 });   // stream or not: as the request asks
//   fake.enqueue({ status: 401, error: {...}, headers });   // an HTTP error (default: 401)
//   fake.enqueue({ hang: true });                           // never answers (504 tests)
//   fake.enqueue({ infinite: 'prose' | 'code' });           // endless slow stream (cancel tests)
//   fake.enqueue(async (rec, res, h) => { ... });           // a handler of the test's own
//   fake.enqueue({ content: [null], tool_calls: [[{ id, name, arguments }]], seed, interleave });
//                                     // tool calls per choice (see "tool calls" below)
//   ... fake.requests[i] / await fake.nextRequest() ...
//   await fake.close();
//
// Streamed replies are chat.completion.chunk SSE (role chunk, content chunks, finish chunk with
// delta {}, optional usage chunk with "choices": [], data: [DONE]). Contents are split at seeded
// pseudo-random points, with cuts placed on purpose inside and right after fences; n > 1 choices
// interleave (sometimes several choices share one chunk); the bytes of an event go out in several
// awaited TCP writes that cut SSE lines and multi-byte UTF-8 characters in the middle.
// Tool calls (spec.tool_calls[i]: the calls of choice i, each {id, name, arguments} for a function
// tool or {id, type: 'custom', name, input} for a custom one): not streamed, message.tool_calls;
// streamed, after the choice's content, a first fragment per call (id, type, name, an empty input
// or, sometimes, its first piece) then the input in fragments cut at seeded points, also inside
// escapes (\n, \", \u00e9, between the halves of a \u surrogate pair) and around non-ASCII
// characters (the writes then cut their UTF-8 bytes). spec.interleave mixes the fragments of the
// choice's calls (each call's own in order, sometimes two calls in one chunk); spec.eventStyle:
// 'python' writes the events as Python's json.dumps does (\u escapes, ", " separators).
// Nothing here sleeps except the pacing timer of the infinite mode.

import http from 'node:http';
import zlib from 'node:zlib';
import { EventEmitter } from 'node:events';

export const DEFAULT_ID = 'chatcmpl-e2eFake0001';
export const DEFAULT_MODEL = 'gpt-4o-mini-2024-07-18';
export const DEFAULT_CREATED = 1741569952;
export const DEFAULT_FINGERPRINT = 'fp_44709d6fcb';

/* ------------------------------------------------------------------------------------------ */
/* seeded randomness                                                                            */

export class Rng {
    constructor(seed) {
        this.s = (Number(seed) >>> 0) ^ 0x9e3779b9;
        if (this.s === 0) this.s = 1;
    }
    next() {
        // mulberry32
        this.s = (this.s + 0x6d2b79f5) >>> 0;
        let t = this.s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    }
    int(lo, hi) {
        return lo + Math.floor(this.next() * (hi - lo + 1));
    }
    chance(p) {
        return this.next() < p;
    }
    pick(a) {
        return a[Math.floor(this.next() * a.length)];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* splitting a reply into content deltas                                                        */

// Lines that open or close a fence (any indent, so list items count too).
const FENCE_LINE = /^[ \t]*(`{3,}|~{3,})([^\r\n]*)/gm;

function isCodePointBoundary(text, i) {
    if (i <= 0 || i >= text.length) return false;
    const hi = text.charCodeAt(i - 1);
    const lo = text.charCodeAt(i);
    return !(hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff);
}

// Cut points that stress a fence detector: before the fence, between its backticks, right after
// them, inside the info string, before and after its line end (and between \r and \n).
export function fenceCutPoints(text) {
    const cuts = [];
    for (const m of text.matchAll(FENCE_LINE)) {
        const lineStart = m.index;
        const p = lineStart + m[0].length - m[1].length - m[2].length; // first fence char
        const L = m[1].length;
        const e = lineStart + m[0].length; // end of the info string
        const group = [lineStart, p, p + 1, p + 2, p + L - 1, p + L, p + L + 1, e, e + 1];
        if (text[e] === '\r') group.push(e + 2);
        cuts.push(group);
    }
    return cuts;
}

// Split text into non-empty deltas whose concatenation is text. The seed picks a mode:
//   0: tiny deltas (1-4 chars)   1: small (1-24)   2: large (8-80)   3: the whole text at once
//   4: one delta per line (cut between \r and \n too)
// Every mode but 3 adds a seeded selection of fenceCutPoints(). Cuts fall on code point
// boundaries (a delta is a JSON string: never half a surrogate pair).
export function splitText(text, seed) {
    const rng = new Rng(seed * 7919 + 13);
    const mode = ((seed % 5) + 5) % 5;
    const cuts = new Set();
    if (mode === 0 || mode === 1 || mode === 2) {
        const [lo, hi] = mode === 0 ? [1, 4] : mode === 1 ? [1, 24] : [8, 80];
        for (let pos = rng.int(lo, hi); pos < text.length; pos += rng.int(lo, hi)) cuts.add(pos);
    }
    if (mode === 4) {
        for (let i = 0; i < text.length; i++) {
            if (text[i] === '\n') cuts.add(i + 1);
            if (text[i] === '\r' && text[i + 1] === '\n' && rng.chance(0.5)) cuts.add(i + 1);
        }
    }
    if (mode !== 3) {
        for (const group of fenceCutPoints(text)) {
            for (const c of group) if (rng.chance(0.5)) cuts.add(c);
        }
    }
    const sorted = [...cuts].filter((c) => isCodePointBoundary(text, c)).sort((a, b) => a - b);
    const out = [];
    let prev = 0;
    for (const c of sorted) {
        out.push(text.slice(prev, c));
        prev = c;
    }
    out.push(text.slice(prev));
    return out.filter((d) => d.length > 0);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON serialisations                                                                          */

// Python's json.dumps(obj) defaults: ", " and ": " separators, ensure_ascii (every char outside
// space..~ as \uXXXX, lowercase hex). Some OpenAI-compatible servers answer like this.
export function pyString(s) {
    let out = '"';
    for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        const ch = s[i];
        if (ch === '"') out += '\\"';
        else if (ch === '\\') out += '\\\\';
        else if (ch === '\n') out += '\\n';
        else if (ch === '\r') out += '\\r';
        else if (ch === '\t') out += '\\t';
        else if (ch === '\b') out += '\\b';
        else if (ch === '\f') out += '\\f';
        else if (c < 0x20 || c > 0x7e) out += '\\u' + c.toString(16).padStart(4, '0');
        else out += ch;
    }
    return out + '"';
}

export function pyDumps(v) {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return pyString(v);
    if (typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v);
    if (Array.isArray(v)) return '[' + v.map(pyDumps).join(', ') + ']';
    return (
        '{' +
        Object.entries(v)
            .filter(([, x]) => x !== undefined)
            .map(([k, x]) => pyString(k) + ': ' + pyDumps(x))
            .join(', ') +
        '}'
    );
}

export const STYLES = ['compact', 'pretty', 'python'];

export function serialize(obj, style) {
    if (style === 'pretty') return JSON.stringify(obj, null, 2) + '\n';
    if (style === 'python') return pyDumps(obj);
    return JSON.stringify(obj);
}

function stringLiteral(text, style) {
    return style === 'python' ? pyString(text) : JSON.stringify(text);
}

/* ------------------------------------------------------------------------------------------ */
/* reply shapes                                                                                 */

function usageFor(contents) {
    const completion = contents.reduce((a, t) => a + Math.ceil((t ?? '').length / 4), 0);
    return {
        prompt_tokens: 19,
        completion_tokens: completion,
        total_tokens: 19 + completion,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
            reasoning_tokens: 0,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    };
}

function metaOf(spec) {
    return {
        id: spec.id ?? DEFAULT_ID,
        created: spec.created ?? DEFAULT_CREATED,
        model: spec.model ?? DEFAULT_MODEL,
        system_fingerprint: spec.system_fingerprint === undefined ? DEFAULT_FINGERPRINT : spec.system_fingerprint,
    };
}

/* ------------------------------------------------------------------------------------------ */
/* tool calls                                                                                   */

// A call as message.tool_calls[] holds it.
export function wireToolCall(c) {
    if (c.type === 'custom') return { id: c.id, type: 'custom', custom: { name: c.name, input: c.input } };
    return { id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } };
}

// Splits a call's input (JSON text or free text) into non-empty fragments whose concatenation is
// text: seeded steps of 1-12 characters, plus cuts right after a backslash (inside \n, \", and
// inside the hex digits of \uXXXX, so also between the halves of a surrogate pair written as
// escapes) and before/after non-ASCII characters. Never inside a UTF-16 surrogate pair (a
// fragment is a JSON string of its own).
export function splitArgs(text, rng) {
    const cuts = new Set();
    for (let pos = rng.int(1, 12); pos < text.length; pos += rng.int(1, 12)) cuts.add(pos);
    for (let i = 0; i < text.length; i++) {
        if (text[i] === '\\' && rng.chance(0.5)) {
            cuts.add(i + 1);
            if (text[i + 1] === 'u') cuts.add(i + 2 + rng.int(0, 3));
        }
        if (text.charCodeAt(i) > 0x7f && rng.chance(0.5)) {
            cuts.add(i);
            cuts.add(i + 1);
        }
    }
    const sorted = [...cuts].filter((c) => isCodePointBoundary(text, c)).sort((a, b) => a - b);
    const out = [];
    let prev = 0;
    for (const c of sorted) {
        out.push(text.slice(prev, c));
        prev = c;
    }
    out.push(text.slice(prev));
    return out.filter((d) => d.length > 0);
}

// The streamed items of one choice's calls: arrays of tool_calls elements, one chunk each.
function toolCallItems(calls, rng, interleave) {
    const seqs = calls.map((c, k) => {
        const custom = c.type === 'custom';
        const input = custom ? c.input : c.arguments;
        const pieces = splitArgs(input, rng);
        const first = custom
            ? { index: k, id: c.id, type: 'custom', custom: { name: c.name, input: '' } }
            : { index: k, id: c.id, type: 'function', function: { name: c.name, arguments: '' } };
        if (pieces.length > 1 && rng.chance(0.3)) {
            // the first fragment carries the first piece of the input too
            if (custom) first.custom.input = pieces.shift();
            else first.function.arguments = pieces.shift();
        }
        const seq = [first];
        for (const p of pieces) seq.push(custom ? { index: k, custom: { input: p } } : { index: k, function: { arguments: p } });
        return seq;
    });
    const items = [];
    if (!interleave) {
        for (const seq of seqs) for (const el of seq) items.push([el]);
        return items;
    }
    for (;;) {
        const live = seqs.map((q, k) => (q.length ? k : -1)).filter((k) => k >= 0);
        if (!live.length) break;
        const k = rng.pick(live);
        const els = [seqs[k].shift()];
        const others = live.filter((j) => j !== k && seqs[j].length);
        if (others.length && rng.chance(0.25)) els.push(seqs[rng.pick(others)].shift());
        items.push(els);
    }
    return items;
}

// A chat.completion object (wire-formats §1.1). contents[i] null = a tool-call-only choice.
export function buildCompletion(spec) {
    const m = metaOf(spec);
    const contents = spec.content;
    const choices = contents.map((text, index) => {
        const message = { role: 'assistant', content: text, refusal: null, annotations: [] };
        const calls = spec.tool_calls?.[index];
        if (calls) {
            message.tool_calls = calls.map(wireToolCall);
        } else if (text === null) {
            message.tool_calls = [
                {
                    id: `call_e2e${index}`,
                    type: 'function',
                    function: { name: 'write_file', arguments: '{"path":"agent.ts","code":"new Agent({ model: \'gpt-4o\' })"}' },
                },
            ];
        }
        return {
            index,
            message,
            logprobs: null,
            finish_reason: spec.finish_reason?.[index] ?? (text === null || calls?.length ? 'tool_calls' : 'stop'),
        };
    });
    const obj = {
        id: m.id,
        object: 'chat.completion',
        created: m.created,
        model: m.model,
        choices,
        usage: usageFor(contents),
        service_tier: 'default',
        system_fingerprint: m.system_fingerprint,
    };
    if (m.system_fingerprint === null) delete obj.system_fingerprint;
    if (spec.extra) Object.assign(obj, spec.extra);
    return obj;
}

/* ------------------------------------------------------------------------------------------ */
/* SSE writer                                                                                   */

function writeAsync(res, buf) {
    return new Promise((resolve, reject) => {
        if (res.destroyed || res.writableEnded) {
            reject(new Error('fake upstream: connection closed'));
            return;
        }
        res.write(buf, (err) => (err ? reject(err) : resolve()));
    });
}

// Writes chat.completion.chunk events, each in one or more awaited TCP writes.
export class SseWriter {
    // opts: meta {id, created, model, system_fingerprint}, usageNull (every chunk carries
    // "usage": null, as with include_usage), rng (null = one write per event), eol ('\n' or
    // '\r\n'), noSpace (data:{...}), comments (": keep-alive" lines now and then), style
    // ('python': events written as pyDumps does)
    constructor(res, rec, opts) {
        this.res = res;
        this.rec = rec;
        this.meta = opts.meta;
        this.usageNull = !!opts.usageNull;
        this.rng = opts.rng ?? null;
        this.eol = opts.eol ?? '\n';
        this.noSpace = !!opts.noSpace;
        this.comments = !!opts.comments;
        this.style = opts.style ?? 'compact';
        this.pending = null;
        this.seq = 0;
    }

    chunk(choices, extraTop) {
        const c = {
            id: this.meta.id,
            object: 'chat.completion.chunk',
            created: this.meta.created,
            model: this.meta.model,
            service_tier: 'default',
            system_fingerprint: this.meta.system_fingerprint,
            choices,
        };
        if (this.meta.system_fingerprint === null) delete c.system_fingerprint;
        if (this.usageNull) c.usage = null;
        if (extraTop) Object.assign(c, extraTop);
        c.obfuscation = 'x'.repeat(1 + (this.seq++ % 7));
        return c;
    }

    // Sends one event. data is an object (JSON) or a string sent as is ('[DONE]').
    async send(data, { flush = false } = {}) {
        const payload = typeof data === 'string' ? data : this.style === 'python' ? pyDumps(data) : JSON.stringify(data);
        this.rec.reply.events.push(payload);
        const e = this.eol;
        let text = (this.noSpace ? 'data:' : 'data: ') + payload + e + e;
        if (this.comments && this.rng?.chance(0.2)) text = ': keep-alive' + e + e + text;
        let bytes = Buffer.from(text, 'utf8');
        if (this.pending) {
            bytes = Buffer.concat([this.pending, bytes]);
            this.pending = null;
        }
        if (this.rng && !flush && this.rng.chance(0.25)) {
            this.pending = bytes; // coalesced with the next event
            return;
        }
        await this.writePieces(bytes);
    }

    async writePieces(bytes) {
        const cuts = [];
        if (this.rng && bytes.length > 1) {
            // a cut inside a multi-byte UTF-8 character when there is one
            const cont = [];
            for (let i = 1; i < bytes.length; i++) if ((bytes[i] & 0xc0) === 0x80) cont.push(i);
            if (cont.length && this.rng.chance(0.7)) cuts.push(this.rng.pick(cont));
            // a cut in the middle of the data line, one in the blank line, one right after "data:"
            if (this.rng.chance(0.6)) cuts.push(this.rng.int(1, bytes.length - 1));
            if (this.rng.chance(0.3)) cuts.push(bytes.length - 1);
            if (this.rng.chance(0.2)) cuts.push(5);
        }
        const sorted = [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b);
        let prev = 0;
        for (const c of [...sorted, bytes.length]) {
            const piece = bytes.subarray(prev, c);
            this.rec.reply.pieces.push(piece.length);
            await writeAsync(this.res, piece);
            prev = c;
        }
    }

    async flush() {
        if (this.pending) {
            const b = this.pending;
            this.pending = null;
            await this.writePieces(b);
        }
    }

    role(index, extraTop) {
        return this.send(
            this.chunk(
                [{ index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }],
                extraTop,
            ),
        );
    }

    content(index, text, extraTop) {
        return this.send(this.chunk([{ index, delta: { content: text }, logprobs: null, finish_reason: null }], extraTop));
    }

    finish(index, reason = 'stop', extraTop) {
        return this.send(this.chunk([{ index, delta: {}, logprobs: null, finish_reason: reason }], extraTop));
    }

    usage(contents) {
        const c = this.chunk([], { x_e2e: { kind: 'usage', note: 'café ✓' } });
        c.usage = usageFor(contents);
        return this.send(c);
    }

    async done() {
        await this.send('[DONE]', { flush: true });
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the server                                                                                   */

const MODELS_BODY = Buffer.from(
    JSON.stringify(
        {
            object: 'list',
            data: [
                { id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' },
                { id: 'gpt-4.1-nano', object: 'model', created: 1744321707, owned_by: 'system' },
                { id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' },
            ],
        },
        null,
        2,
    ) + '\n',
);

const EMBEDDINGS_BODY = Buffer.from(
    JSON.stringify({
        object: 'list',
        data: [{ object: 'embedding', index: 0, embedding: [0.0023064255, -0.009327292, 0.015797347, -0.0077780345, 1e-7] }],
        model: 'text-embedding-3-small',
        usage: { prompt_tokens: 8, total_tokens: 8 },
    }),
);

export const FIXED = { models: MODELS_BODY, embeddings: EMBEDDINGS_BODY };

const STD_HEADERS = {
    'openai-organization': 'org-e2e',
    'openai-processing-ms': '321',
    'openai-version': '2020-10-01',
    'x-ratelimit-remaining-requests': '4999',
};

export const API_ERROR_401 = {
    error: {
        message: 'Incorrect API key provided: sk-test-****-123. You can find your API key at https://platform.openai.com/account/api-keys.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
    },
};

export class FakeUpstream extends EventEmitter {
    static async start() {
        const f = new FakeUpstream();
        await new Promise((resolve, reject) => {
            f.server.once('error', reject);
            f.server.listen(0, '127.0.0.1', resolve);
        });
        f.port = f.server.address().port;
        f.url = `http://127.0.0.1:${f.port}`;
        return f;
    }

    constructor() {
        super();
        this.queue = [];
        this.requests = [];
        this.closing = false;
        this.server = http.createServer((req, res) => this.onRequest(req, res));
        this.server.keepAliveTimeout = 5000;
    }

    // Programs the reply to the next POST /v1/chat/completions (FIFO). spec: see the file header.
    enqueue(spec) {
        this.queue.push(spec);
        return this;
    }

    // Resolves with the record of the next request the fake receives (or the n-th, 0-based).
    nextRequest(index = this.requests.length) {
        if (this.requests.length > index) return Promise.resolve(this.requests[index]);
        return new Promise((resolve) => {
            const on = () => {
                if (this.requests.length > index) {
                    this.off('request', on);
                    resolve(this.requests[index]);
                }
            };
            this.on('request', on);
        });
    }

    async close() {
        this.closing = true;
        this.server.closeAllConnections();
        await new Promise((resolve) => this.server.close(() => resolve()));
    }

    onRequest(req, res) {
        res.socket?.setNoDelay(true);
        const rec = {
            method: req.method,
            path: req.url,
            headers: req.headers,
            rawHeaders: req.rawHeaders,
            body: null,
            json: undefined,
            reply: { status: null, headers: null, body: null, literals: null, events: [], pieces: [], contents: null },
            receivedAt: Date.now(),
            closedAt: null,
            aborted: null, // true when the connection closed before the fake ended its reply
            progress: 0, // events sent by the infinite mode
        };
        rec.closed = new Promise((resolve) => {
            res.once('close', () => {
                rec.closedAt = Date.now();
                rec.aborted = !res.writableFinished;
                resolve(rec);
            });
        });
        const parts = [];
        req.on('data', (d) => parts.push(d));
        req.on('error', () => {});
        req.on('end', () => {
            rec.body = Buffer.concat(parts);
            try {
                rec.json = JSON.parse(rec.body.toString('utf8'));
            } catch {
                rec.json = undefined;
            }
            this.requests.push(rec);
            this.emit('request', rec);
            this.dispatch(rec, req, res).catch((err) => {
                rec.handlerError = err;
                if (!res.headersSent && !res.destroyed) {
                    res.writeHead(500, { 'content-type': 'application/json' });
                    res.end(JSON.stringify({ error: { message: `fake upstream: ${err.message}`, type: 'fake_error', param: null, code: null } }));
                } else if (!res.destroyed) {
                    res.destroy();
                }
            });
        });
    }

    async dispatch(rec, req, res) {
        const path = rec.path.split('?')[0];
        if (req.method === 'GET' && path === '/v1/models') {
            return this.sendBody(rec, res, 200, { 'content-type': 'application/json', ...STD_HEADERS }, MODELS_BODY);
        }
        if (req.method === 'POST' && path === '/v1/embeddings') {
            return this.sendBody(rec, res, 200, { 'content-type': 'application/json', ...STD_HEADERS }, EMBEDDINGS_BODY);
        }
        if (req.method === 'POST' && path === '/v1/chat/completions') {
            const spec = this.queue.shift();
            if (spec === undefined) {
                return this.sendError(rec, res, 500, 'fake upstream: no reply queued for this request');
            }
            if (typeof spec === 'function') return spec(rec, res, this.helpers(rec, res));
            return this.reply(rec, res, spec);
        }
        return this.sendError(rec, res, 404, `fake upstream: no route ${req.method} ${path}`);
    }

    helpers(rec, res) {
        return {
            sse: (opts = {}) => {
                res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...STD_HEADERS });
                res.flushHeaders();
                rec.reply.status = 200;
                return new SseWriter(res, rec, { ...opts, meta: opts.meta ?? metaOf(opts) });
            },
            send: (status, headers, body) => this.sendBody(rec, res, status, headers, Buffer.from(body)),
        };
    }

    sendBody(rec, res, status, headers, body) {
        rec.reply.status = status;
        rec.reply.headers = { ...headers, 'content-length': String(body.length) };
        rec.reply.body = body;
        res.writeHead(status, rec.reply.headers);
        res.end(body);
    }

    sendError(rec, res, status, message) {
        const body = JSON.stringify({ error: { message, type: 'fake_error', param: null, code: null } });
        this.sendBody(rec, res, status, { 'content-type': 'application/json' }, Buffer.from(body));
    }

    async reply(rec, res, spec) {
        if (spec.hang) return; // never answers; rec.closed tells when the client gave up
        if (spec.status && spec.status >= 400) {
            const body = Buffer.from(spec.rawBody ?? JSON.stringify(spec.error ?? API_ERROR_401, null, 2));
            const headers = { 'content-type': 'application/json; charset=utf-8', 'x-fake-error': 'yes', ...STD_HEADERS, ...spec.headers };
            return this.sendBody(rec, res, spec.status, headers, body);
        }
        if (spec.infinite) return this.infinite(rec, res, spec);
        const stream = spec.stream ?? rec.json?.stream === true;
        rec.reply.contents = spec.content;
        if (!stream) return this.replyJson(rec, res, spec);
        return this.replyStream(rec, res, spec);
    }

    replyJson(rec, res, spec) {
        const obj = buildCompletion(spec);
        const style = spec.style ?? 'compact';
        const text = serialize(obj, style);
        const body = Buffer.from(text, 'utf8');
        // where each content string literal sits in the body (byte offsets), for the tests
        const sep = style === 'compact' ? '"content":' : '"content": ';
        const literals = [];
        let from = 0;
        for (const c of spec.content) {
            if (c === null) {
                literals.push(null);
                continue;
            }
            const needle = Buffer.from(sep + stringLiteral(c, style), 'utf8');
            const at = body.indexOf(needle, from);
            if (at < 0) throw new Error('fake upstream: content literal not found in its own body');
            const start = at + Buffer.byteLength(sep);
            literals.push({ start, end: at + needle.length });
            from = at + needle.length;
        }
        rec.reply.literals = literals;
        rec.reply.object = obj;
        const headers = { 'content-type': 'application/json', ...STD_HEADERS };
        const ae = String(rec.headers['accept-encoding'] ?? '');
        if (spec.gzip && /\bgzip\b/.test(ae)) {
            rec.reply.identityBody = body;
            return this.sendBody(rec, res, 200, { ...headers, 'content-encoding': 'gzip' }, zlib.gzipSync(body));
        }
        return this.sendBody(rec, res, 200, headers, body);
    }

    async replyStream(rec, res, spec) {
        const contents = spec.content;
        const n = contents.length;
        const seed = spec.seed ?? 1;
        const rng = new Rng(seed);
        const includeUsage = spec.usage ?? rec.json?.stream_options?.include_usage === true;
        const h = this.helpers(rec, res);
        const w = h.sse({
            meta: metaOf(spec),
            usageNull: includeUsage,
            rng: spec.wholeWrites ? null : rng,
            eol: spec.eol,
            noSpace: spec.noSpace,
            comments: spec.comments,
            style: spec.eventStyle,
        });
        const queues = contents.map((text, i) => {
            const q = [{ kind: 'role', index: i }];
            if (text !== null) for (const d of splitText(text, seed * 31 + i)) q.push({ kind: 'content', index: i, text: d });
            const calls = spec.tool_calls?.[i];
            if (calls) for (const els of toolCallItems(calls, rng, !!spec.interleave)) q.push({ kind: 'tool', index: i, els });
            q.push({ kind: 'finish', index: i, reason: spec.finish_reason?.[i] ?? (calls?.length ? 'tool_calls' : 'stop') });
            return q;
        });
        const extraFor = (item) =>
            item.kind === 'content' || (item.kind === 'tool' && !rng.chance(0.2))
                ? undefined
                : { x_e2e: { kind: item.kind, index: item.index, note: 'ünïcödé ✓' } };
        const choiceOf = (item) => {
            if (item.kind === 'role') return { index: item.index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null };
            if (item.kind === 'content') return { index: item.index, delta: { content: item.text }, logprobs: null, finish_reason: null };
            if (item.kind === 'tool') return { index: item.index, delta: { tool_calls: item.els }, logprobs: null, finish_reason: null };
            return { index: item.index, delta: {}, logprobs: null, finish_reason: item.reason };
        };
        for (;;) {
            const live = queues.map((q, i) => (q.length ? i : -1)).filter((i) => i >= 0);
            if (!live.length) break;
            if (live.length > 1 && rng.chance(0.25)) {
                // several choices in one chunk (content items only: keeps role/finish chunks single)
                const items = live.map((i) => queues[i][0]);
                if (items.every((it) => it.kind === 'content' || it.kind === 'tool')) {
                    for (const i of live) queues[i].shift();
                    await w.send(w.chunk(items.map(choiceOf)));
                    continue;
                }
            }
            const i = rng.pick(live);
            const item = queues[i].shift();
            await w.send(w.chunk([choiceOf(item)], extraFor(item)));
        }
        if (includeUsage) await w.usage(contents);
        await w.done();
        res.end();
    }

    // An endless stream, one event every intervalMs (bounded by maxEvents), that stops when the
    // connection closes. infinite: 'prose' sends plain sentences; 'code' opens a ts fence first
    // and never closes it (a proxy holds all of it).
    async infinite(rec, res, spec) {
        const interval = spec.intervalMs ?? 20;
        const max = spec.maxEvents ?? 1500;
        const h = this.helpers(rec, res);
        const w = h.sse({ meta: metaOf(spec) });
        let stopped = false;
        res.once('close', () => (stopped = true));
        try {
            await w.role(0);
            if (spec.infinite === 'code') await w.content(0, 'Here you go:\n\n```ts\n');
            for (let i = 0; i < max && !stopped && !this.closing; i++) {
                const line = spec.infinite === 'code' ? `const v${i} = new Agent({ name: 'a${i}', model: 'gpt-4o' });\n` : `Sentence number ${i} of an endless answer. `;
                await w.content(0, line);
                rec.progress++;
                this.emit('progress', rec);
                await new Promise((r) => setTimeout(r, interval));
            }
        } catch {
            // the connection went away while writing
        }
        if (!stopped && !res.destroyed) res.end();
    }

    // Resolves once rec.progress reaches count.
    waitProgress(rec, count) {
        if (rec.progress >= count) return Promise.resolve();
        return new Promise((resolve) => {
            const on = (r) => {
                if (r === rec && r.progress >= count) {
                    this.off('progress', on);
                    resolve();
                }
            };
            this.on('progress', on);
        });
    }
}

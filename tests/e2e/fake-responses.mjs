// A fake upstream for the OpenAI Responses API (POST /v1/responses) and, with fake-anthropic.mjs,
// the Anthropic Messages API (POST /v1/messages): one HTTP server on 127.0.0.1 serving both paths,
// so one astgate --upstream reaches both. Tests program the next reply per path and read back
// every request (method, path, headers, raw body) and every reply (events sent, body).
//
//   const fake = await FakeApis.start();
//   fake.enqueue('/v1/responses', { texts: [text], layout: { reasoning: true }, seed: 3 });
//   fake.enqueue('/v1/messages', { texts: [a, b], layout: { tool: true } });
//   fake.enqueue(path, { status: 429, error: {...} });      // an HTTP error
//   ... fake.requests[i] ...
//   await fake.close();
//
// Streamed or not follows the request's "stream". Streamed Responses replies are the event
// sequence of wire-formats.md section 2.2 (response.created ... response.completed), text split
// into output_text.delta events at seeded points with fences cut on purpose, sequence_number from
// 0 without gaps. Each event goes out as `event: NAME` + `data: JSON` in one or more awaited TCP
// writes that cut lines and UTF-8 characters; some events are coalesced with the next.
//
// A Responses spec:
//   texts: [string, ...]  the output_text parts of the message (usually one)
//   layout: { reasoning, func, noDone, outputText, obfuscation, pretty }
//     reasoning:  a reasoning item first (the message is output 1); its summary holds code
//     func:       a function_call item after the message, with code in its arguments
//     noDone:     no output_text.done / content_part.done / output_item.done for the message
//     outputText: response.completed (and the JSON body) carry "output_text"
//     obfuscation: deltas carry an "obfuscation" field
//     pretty:     the JSON body (not streamed) is pretty-printed
//   seed, cut (see fake-anthropic.mjs), status (for the last event: 'completed' or 'incomplete')
//   items: [tool call, ...]  tool-call output items after the message (or alone, when texts is
//     empty; then there is no message item):
//       {type: 'function_call', name, arguments}   {type: 'custom_tool_call', name, input}
//       {type: 'apply_patch_call', operation: {type: 'create_file'|'update_file', path, diff}}
//     (id and call_id optional). Streamed: output_item.added (input empty), the input in deltas
//     cut at seeded points (inside JSON escapes such as \n, \" and \u00e9 and around multi-byte
//     characters; splitToolText), its .done event, output_item.done. layout flags for them:
//       interleave:  every item's added first, then their deltas interleaved, then their dones
//       noToolDone:  no function_call_arguments.done / custom_tool_call_input.done
//       patchDeltas: apply_patch_call streams its diff in response.apply_patch_call_operation_diff
//                    .delta/.done (servers that follow OpenRouter; unknown to the openai SDK's
//                    helper); without it the item has only output_item.added and .done
//       patchInAdded: apply_patch_call's output_item.added already holds the whole operation
//                    (unless its diff streams)
//   cutCall: true   the stream ends in the middle of the last item's deltas
//   style: 'python' events and bodies serialized like Python's json.dumps (ensure_ascii)

import http from 'node:http';
import { EventEmitter } from 'node:events';
import { Rng, splitText, pyDumps } from './fake-upstream.mjs';
import { messageObject, messageEvents, serializeMessages } from './fake-anthropic.mjs';

export const RESPONSES_MODEL = 'gpt-4.1-2025-04-14';
export const RESPONSE_ID = 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b';
export const MSG_ID = 'msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b';
export const REASONING = "Plan: a ```ts block with new Agent({ model: 'gpt-4o' }).";
export const FUNC_ARGS = JSON.stringify({ path: 'agent.ts', code: "```ts\nnew Agent({ model: 'gpt-4o' })\n```" });

const REASONING_ID = 'rs_67ccd2bf17f0819081ff3bb2cf6508e6';
const FUNC_ID = 'fc_67ccd2bf17f0819081ff3bb2cf6508e6';

function responseShell(status, output, usage, extra = {}) {
    return {
        id: RESPONSE_ID,
        object: 'response',
        created_at: 1741476542,
        status,
        background: false,
        error: null,
        incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
        instructions: null,
        max_output_tokens: null,
        model: RESPONSES_MODEL,
        output,
        parallel_tool_calls: true,
        previous_response_id: null,
        reasoning: { effort: null, summary: null },
        store: true,
        temperature: 1.0,
        text: { format: { type: 'text' } },
        tool_choice: 'auto',
        tools: [],
        top_p: 1.0,
        truncation: 'disabled',
        usage,
        user: null,
        metadata: {},
        ...extra,
    };
}

function usageOf(texts) {
    const out = texts.reduce((a, t) => a + Math.ceil(t.length / 4), 0);
    return { input_tokens: 36, input_tokens_details: { cached_tokens: 0 }, output_tokens: out, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 36 + out };
}

const reasoningItem = () => ({ id: REASONING_ID, type: 'reasoning', summary: [{ type: 'summary_text', text: REASONING }] });
const part = (text) => ({ type: 'output_text', annotations: [], logprobs: [], text });
const messageItem = (texts, status = 'completed') => ({ id: MSG_ID, type: 'message', status, role: 'assistant', content: texts.map(part) });
const funcItem = (status = 'completed', args = FUNC_ARGS) => ({ id: FUNC_ID, type: 'function_call', status, arguments: args, call_id: 'call_e2e1', name: 'write_file' });

const TOOL_PREFIX = { function_call: 'fc', custom_tool_call: 'ctc', apply_patch_call: 'apc' };
const TOOL_DELTA = {
    function_call: 'response.function_call_arguments',
    custom_tool_call: 'response.custom_tool_call_input',
    apply_patch_call: 'response.apply_patch_call_operation_diff',
};
const TOOL_FIELD = { function_call: 'arguments', custom_tool_call: 'input', apply_patch_call: 'diff' };

// The ids of tool item k of a spec: {id, call_id}.
export function toolIds(t, k) {
    return { id: t.id ?? `${TOOL_PREFIX[t.type]}_67ccd2bf17f08190${k}e2e`, call_id: t.call_id ?? `call_e2e_${k}_Xq3Z` };
}

// The code-carrying text of a tool item spec (arguments, input or operation.diff).
export function toolInput(t) {
    return t.type === 'function_call' ? t.arguments : t.type === 'custom_tool_call' ? t.input : t.operation.diff ?? '';
}

// Tool item k as the API shows it; empty: with its input still empty (output_item.added).
export function toolItem(t, k, status = 'completed', empty = false) {
    const { id, call_id } = toolIds(t, k);
    const input = empty ? '' : toolInput(t);
    switch (t.type) {
        case 'function_call':
            return { id, type: t.type, status, arguments: input, call_id, name: t.name };
        case 'custom_tool_call':
            return { id, type: t.type, call_id, input, name: t.name }; // no status in ResponseCustomToolCall
        case 'apply_patch_call':
            if (t.operation.type === 'delete_file') return { id, type: t.type, status, call_id, operation: { type: 'delete_file', path: t.operation.path } };
            return { id, type: t.type, status, call_id, operation: { ...t.operation, diff: input } };
        default:
            throw new Error(`fake: unknown tool item type ${t.type}`);
    }
}

function hasMessage(texts, layout) {
    return texts.length > 0 || !(layout.items?.length > 0);
}

// The output index of tool item k.
export function toolIndex(texts, layout, k) {
    return (layout.reasoning ? 1 : 0) + (hasMessage(texts, layout) ? 1 : 0) + (layout.func ? 1 : 0) + k;
}

// Cut points of a tool call's input, whose deltas a server streams: seeded positions plus, on
// purpose, the inside of JSON escapes (between the backslash and its letter, inside \uXXXX) and
// both sides of non-ASCII characters. Never inside a surrogate pair (a delta is a JSON string).
export function splitToolText(text, seed) {
    const rng = new Rng(seed * 7907 + 3);
    const mode = ((seed % 4) + 4) % 4;
    const cuts = new Set();
    if (mode !== 3) {
        const [lo, hi] = mode === 0 ? [1, 5] : mode === 1 ? [3, 40] : [20, 200];
        for (let pos = rng.int(lo, hi); pos < text.length; pos += rng.int(lo, hi)) cuts.add(pos);
        for (let i = 0; i < text.length; i++) {
            if (text[i] === '\\' && rng.chance(0.5)) cuts.add(i + 1 + (text[i + 1] === 'u' ? rng.int(0, 4) : 0));
            if (text.charCodeAt(i) > 0x7f && rng.chance(0.5)) cuts.add(rng.chance(0.5) ? i : i + 1);
        }
    }
    const sorted = [...cuts]
        .filter((c) => c > 0 && c < text.length)
        .filter((c) => !(text.charCodeAt(c - 1) >= 0xd800 && text.charCodeAt(c - 1) <= 0xdbff))
        .sort((a, b) => a - b);
    const out = [];
    let prev = 0;
    for (const c of sorted) {
        out.push(text.slice(prev, c));
        prev = c;
    }
    out.push(text.slice(prev));
    return out.filter((d) => d.length > 0);
}

// The output items of a finished response.
export function outputOf(texts, layout = {}) {
    const out = [];
    if (layout.reasoning) out.push(reasoningItem());
    if (hasMessage(texts, layout)) out.push(messageItem(texts));
    if (layout.func) out.push(funcItem());
    for (const [k, t] of (layout.items ?? []).entries()) out.push(toolItem(t, k));
    return out;
}

// The output_index of the message.
export function messageIndex(layout = {}) {
    return layout.reasoning ? 1 : 0;
}

// A non-streamed Response (wire-formats.md 2.1).
export function responseObject(texts, layout = {}) {
    const extra = layout.outputText ? { output_text: texts.join('') } : {};
    return responseShell('completed', outputOf(texts, layout), usageOf(texts), extra);
}

// The events of a streamed response: [{event, data}] with data an object (sequence_number set).
export function responseEvents(texts, { layout = {}, seed = 1, cut = null, status = 'completed', cutCall = false } = {}) {
    const ev = [];
    const add = (data) => {
        data.sequence_number = ev.length;
        ev.push({ event: data.type, data });
    };
    add({ type: 'response.created', response: responseShell('in_progress', [], null) });
    add({ type: 'response.in_progress', response: responseShell('in_progress', [], null) });
    const o = messageIndex(layout);
    const items = layout.items ?? [];
    if (layout.reasoning) {
        const base = { item_id: REASONING_ID, output_index: 0, summary_index: 0 };
        add({ type: 'response.output_item.added', output_index: 0, item: { id: REASONING_ID, type: 'reasoning', summary: [] } });
        add({ type: 'response.reasoning_summary_part.added', ...base, part: { type: 'summary_text', text: '' } });
        add({ type: 'response.reasoning_summary_text.delta', ...base, delta: REASONING });
        add({ type: 'response.reasoning_summary_text.done', ...base, text: REASONING });
        add({ type: 'response.reasoning_summary_part.done', ...base, part: { type: 'summary_text', text: REASONING } });
        add({ type: 'response.output_item.done', output_index: 0, item: reasoningItem() });
    }
    if (hasMessage(texts, layout)) add({ type: 'response.output_item.added', output_index: o, item: messageItem([], 'in_progress') });
    for (const [c, text] of texts.entries()) {
        const at = { item_id: MSG_ID, output_index: o, content_index: c };
        add({ type: 'response.content_part.added', ...at, part: part('') });
        let sent = 0;
        for (const d of splitText(text, seed * 31 + c)) {
            const e = { type: 'response.output_text.delta', ...at, delta: d, logprobs: [] };
            if (layout.obfuscation) e.obfuscation = 'k3Q'.slice(0, 1 + (ev.length % 3));
            add(e);
            sent += d.length;
            if (c === texts.length - 1 && cut !== null && sent >= cut) return ev; // cut off
        }
        if (!layout.noDone) {
            add({ type: 'response.output_text.done', ...at, text, logprobs: [] });
            add({ type: 'response.content_part.done', ...at, part: part(text) });
        }
    }
    if (!layout.noDone && hasMessage(texts, layout)) add({ type: 'response.output_item.done', output_index: o, item: messageItem(texts) });
    if (layout.func) {
        const f = { item_id: FUNC_ID, output_index: o + 1 };
        add({ type: 'response.output_item.added', output_index: o + 1, item: funcItem('in_progress', '') });
        add({ type: 'response.function_call_arguments.delta', ...f, delta: FUNC_ARGS.slice(0, 20) });
        add({ type: 'response.function_call_arguments.delta', ...f, delta: FUNC_ARGS.slice(20) });
        add({ type: 'response.function_call_arguments.done', ...f, arguments: FUNC_ARGS });
        add({ type: 'response.output_item.done', output_index: o + 1, item: funcItem() });
    }
    if (items.length && toolEvents(texts, layout, seed, add, cutCall)) return ev;
    const extra = layout.outputText ? { output_text: texts.join('') } : {};
    const fin = responseShell(status, outputOf(texts, layout), usageOf(texts), extra);
    add({ type: `response.${status}`, response: fin });
    return ev;
}

// The events of the tool items (added through add); true when the stream was cut off in them.
function toolEvents(texts, layout, seed, add, cutCall) {
    const items = layout.items;
    const streamsInput = (t) => t.type !== 'apply_patch_call' || (layout.patchDeltas && t.operation.type !== 'delete_file');
    const st = items.map((t, k) => {
        const { id } = toolIds(t, k);
        const at = { item_id: id, output_index: toolIndex(texts, layout, k) };
        return { t, k, at, deltas: streamsInput(t) ? splitToolText(toolInput(t), seed * 17 + k) : [] };
    });
    const added = ({ t, k, at }) => {
        const item = toolItem(t, k, 'in_progress', !(t.type === 'apply_patch_call' && layout.patchInAdded && !streamsInput(t)));
        add({ type: 'response.output_item.added', output_index: at.output_index, item });
    };
    const delta = ({ t, at }, d) => {
        const e = { type: `${TOOL_DELTA[t.type]}.delta`, ...at, delta: d };
        if (layout.obfuscation) e.obfuscation = 'Zr8'.slice(0, 1 + (d.length % 3));
        add(e);
    };
    const done = ({ t, k, at }) => {
        if (streamsInput(t) && !layout.noToolDone) add({ type: `${TOOL_DELTA[t.type]}.done`, ...at, [TOOL_FIELD[t.type]]: toolInput(t) });
        add({ type: 'response.output_item.done', output_index: at.output_index, item: toolItem(t, k) });
    };
    const last = st.at(-1);
    const cutAt = cutCall ? Math.max(1, Math.floor(last.deltas.length / 2)) : Infinity;
    const cutNow = (s, i) => s === last && i + 1 >= cutAt;
    if (layout.interleave) {
        st.forEach(added);
        const n = Math.max(...st.map((s) => s.deltas.length));
        for (let i = 0; i < n; i++) {
            for (const s of st) {
                if (i >= s.deltas.length) continue;
                delta(s, s.deltas[i]);
                if (cutNow(s, i)) return true;
            }
        }
        st.forEach(done);
        return false;
    }
    for (const s of st) {
        added(s);
        for (const [i, d] of s.deltas.entries()) {
            delta(s, d);
            if (cutNow(s, i)) return true;
        }
        done(s);
    }
    return false;
}

// The text of the last part of a response cut at `cut`.
export function cutText(texts, { layout = {}, seed = 1, cut }) {
    const c = texts.length - 1;
    let s = '';
    for (const { data } of responseEvents(texts, { layout, seed, cut })) {
        if (data.type === 'response.output_text.delta' && data.content_index === c) s += data.delta;
    }
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* the server                                                                                   */

function writeAsync(res, buf) {
    return new Promise((resolve, reject) => {
        if (res.destroyed || res.writableEnded) {
            reject(new Error('fake upstream: connection closed'));
            return;
        }
        res.write(buf, (err) => (err ? reject(err) : resolve()));
    });
}

// Writes [{event, data}] as SSE: `event:` and `data:` lines, the bytes of each event in awaited
// writes cut at seeded points (inside UTF-8 characters too), some events coalesced.
async function writeEvents(res, rec, events, { seed = 1, serialize = JSON.stringify, eol = '\n' } = {}) {
    const rng = new Rng(seed * 13 + 5);
    let pending = null;
    for (const [k, { event, data }] of events.entries()) {
        const payload = serialize(data);
        rec.reply.events.push({ event, data: JSON.parse(payload), raw: payload });
        let bytes = Buffer.from(`event: ${event}${eol}data: ${payload}${eol}${eol}`, 'utf8');
        if (pending) {
            bytes = Buffer.concat([pending, bytes]);
            pending = null;
        }
        if (k < events.length - 1 && rng.chance(0.25)) {
            pending = bytes;
            continue;
        }
        const cuts = [];
        const cont = [];
        for (let i = 1; i < bytes.length; i++) if ((bytes[i] & 0xc0) === 0x80) cont.push(i);
        if (cont.length && rng.chance(0.6)) cuts.push(rng.pick(cont));
        if (rng.chance(0.5)) cuts.push(rng.int(1, bytes.length - 1));
        if (rng.chance(0.3)) cuts.push(bytes.length - 1);
        let prev = 0;
        for (const c of [...new Set(cuts)].filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b).concat([bytes.length])) {
            await writeAsync(res, bytes.subarray(prev, c));
            prev = c;
        }
    }
    if (pending) await writeAsync(res, pending);
}

const HEADERS = {
    '/v1/responses': { 'openai-organization': 'org-e2e', 'openai-processing-ms': '321', 'openai-version': '2020-10-01' },
    '/v1/messages': { 'anthropic-organization-id': 'org-e2e', 'request-id': 'req_011CSHoEeqs5C35K2UUqR7Fy' },
};

export class FakeApis extends EventEmitter {
    static async start() {
        const f = new FakeApis();
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
        this.queues = { '/v1/responses': [], '/v1/messages': [] };
        this.requests = [];
        this.server = http.createServer((req, res) => this.onRequest(req, res));
        this.server.keepAliveTimeout = 5000;
    }

    // Programs the reply to the next POST on path (FIFO per path).
    enqueue(path, spec) {
        this.queues[path].push(spec);
        return this;
    }

    async close() {
        this.server.closeAllConnections();
        await new Promise((resolve) => this.server.close(() => resolve()));
    }

    onRequest(req, res) {
        res.socket?.setNoDelay(true);
        const rec = {
            method: req.method,
            path: req.url,
            headers: req.headers,
            body: null,
            json: undefined,
            reply: { status: null, events: [], body: null, object: null },
        };
        const parts = [];
        req.on('data', (d) => parts.push(d));
        req.on('end', () => {
            rec.body = Buffer.concat(parts);
            try {
                rec.json = JSON.parse(rec.body.toString('utf8'));
            } catch {
                rec.json = undefined;
            }
            this.requests.push(rec);
            this.emit('request', rec);
            this.dispatch(rec, res).catch((err) => {
                rec.handlerError = err;
                if (!res.headersSent && !res.destroyed) {
                    res.writeHead(500, { 'content-type': 'application/json' });
                    res.end(JSON.stringify({ error: { message: `fake upstream: ${err.message}`, type: 'fake_error' } }));
                } else if (!res.destroyed) {
                    res.destroy();
                }
            });
        });
    }

    send(rec, res, status, headers, body) {
        rec.reply.status = status;
        rec.reply.body = body;
        res.writeHead(status, { ...headers, 'content-length': String(body.length) });
        res.end(body);
    }

    async dispatch(rec, res) {
        const path = rec.path.split('?')[0];
        const queue = this.queues[path];
        if (rec.method !== 'POST' || !queue) {
            return this.send(rec, res, 404, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ error: { message: `fake upstream: no route ${rec.method} ${path}` } })));
        }
        const spec = queue.shift();
        if (spec === undefined) {
            return this.send(rec, res, 500, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ error: { message: 'fake upstream: no reply queued' } })));
        }
        const headers = HEADERS[path];
        if (spec.status && spec.status >= 400) {
            return this.send(rec, res, spec.status, { 'content-type': 'application/json', ...headers }, Buffer.from(JSON.stringify(spec.error)));
        }
        const anthropic = path === '/v1/messages';
        const layout = spec.items ? { ...(spec.layout ?? {}), items: spec.items } : spec.layout ?? {};
        const texts = spec.texts ?? [];
        if (rec.json?.stream !== true) {
            const obj = anthropic ? messageObject(texts, layout) : responseObject(texts, layout);
            rec.reply.object = obj;
            const text = anthropic
                ? serializeMessages(obj, layout)
                : spec.style === 'python'
                  ? pyDumps(obj)
                  : layout.pretty
                    ? JSON.stringify(obj, null, 2) + '\n'
                    : JSON.stringify(obj);
            return this.send(rec, res, 200, { 'content-type': 'application/json', ...headers }, Buffer.from(text, 'utf8'));
        }
        const opts = { layout, seed: spec.seed ?? 1, cut: spec.cut ?? null, status: spec.finalStatus ?? 'completed', cutCall: spec.cutCall ?? false };
        const events = anthropic ? messageEvents(texts, opts) : responseEvents(texts, opts);
        rec.reply.status = 200;
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...headers });
        res.flushHeaders();
        await writeEvents(res, rec, events, {
            seed: opts.seed,
            serialize: anthropic ? (d) => serializeMessages(d, layout) : spec.style === 'python' ? pyDumps : JSON.stringify,
            eol: spec.eol ?? '\n',
        });
        res.end();
    }
}

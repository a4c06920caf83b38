// POST /v1/messages (Anthropic Messages API) over the golden corpus, with @anthropic-ai/sdk
// against the fake of fake-anthropic.mjs (served by FakeApis). Not streamed: the SDK's text
// blocks and the body bytes (only the text strings changed). Streamed: raw events (every event
// keeps its `event:` line, the text of each text block adds up to the rewrite before its
// content_block_stop, held code arrives in a content_block_delta astgate adds, every other event
// is the upstream's), messages.create({stream: true}) and messages.stream() with finalMessage()
// and its text events. Layouts: a thinking block first, a tool_use block with code in its input,
// two text blocks, pings, text in content_block_start, JSON with spaces; a stream cut off inside
// a code block. Also: x-api-key, anthropic-version and anthropic-beta reach the upstream, rewrite
// log lines carry the upstream's model, and a block rule ends the stream with an error event the
// SDK throws. Without ASTGATE_BIN the same tests run against the fake alone and expect the
// replies unchanged.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { FakeApis } from './fake-responses.mjs';
import { ANTHROPIC_MODEL, MESSAGE_ID, TOOL_INPUT, THINKING, textIndexes, cutText, spacedJson } from './fake-anthropic.mjs';
import {
    API_KEY,
    PROXIED,
    NEEDS_PROXY,
    ROOT,
    RULES,
    Astgate,
    loadCorpus,
    want,
    cliLog,
    cliRewriteText,
    writeRules,
    parseSSE,
    assertRewriteLogs,
    assertNoSecrets,
    annotate,
    withTimeout,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const corpus = loadCorpus();
const REQ_MODEL = 'claude-haiku-4-5'; // (a name the SDK does not warn about)
const MESSAGES = [{ role: 'user', content: 'Write me a Mastra agent, please.' }];
const BETA = 'interleaved-thinking-2025-05-14';
const LAYOUTS = [
    {},
    { thinking: true, tool: true, pings: true },
    { spaces: true, startText: true },
    { tool: true, spaces: true },
    { thinking: true, pings: true, startText: true },
];

async function openFake({ rules = RULES } = {}) {
    const fake = await FakeApis.start();
    let proc = null;
    try {
        if (PROXIED) proc = await Astgate.start({ upstream: fake.url, rules });
    } catch (err) {
        await fake.close();
        throw err;
    }
    const origin = proc ? proc.origin : fake.url;
    return {
        fake,
        proc,
        origin,
        client: new Anthropic({ baseURL: origin, apiKey: API_KEY, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS, defaultHeaders: { 'anthropic-beta': BETA } }),
        async close() {
            try {
                if (proc) await proc.stop();
            } finally {
                await fake.close();
            }
        },
    };
}

function headers(extra = {}) {
    return { 'content-type': 'application/json', 'x-api-key': API_KEY, 'anthropic-version': '2023-06-01', ...extra };
}

// The event without the text of text blocks.
function stripEvent(d) {
    const x = structuredClone(d);
    if (x.type === 'content_block_delta' && x.delta?.type === 'text_delta') delete x.delta.text;
    if (x.type === 'content_block_start' && x.content_block?.type === 'text') delete x.content_block.text;
    return x;
}

// Checks a streamed reply against the events the fake sent; wants[t]: what text block t (at
// block index idx[t]) must add up to. Returns {texts, added}.
function assertMessagesStream(upEvents, body, wants, idx, { complete = true } = {}) {
    const px = parseSSE(body);
    assert.ok(!px.unterminated && px.trailing === '', `the stream ends inside an event: ${JSON.stringify(px.trailing)}`);
    const texts = wants.map(() => '');
    const stopped = new Set();
    let u = 0;
    let added = 0;
    px.events.forEach((ev, i) => {
        const d = JSON.parse(ev.data);
        const where = `event ${i} (${d.type})`;
        assert.equal(ev.event, d.type, `${where}: the event line names the type (the SDK drops events without one)`);
        const t = idx.indexOf(d.index);
        if (t >= 0) {
            const piece = d.type === 'content_block_delta' && d.delta.type === 'text_delta' ? d.delta.text : d.type === 'content_block_start' ? d.content_block.text : null;
            if (piece !== null) {
                assert.ok(!stopped.has(t), `${where}: text after the block's stop`);
                texts[t] += piece;
            }
            if (d.type === 'content_block_stop') {
                stopped.add(t);
                assert.equal(texts[t], wants[t], `${where}: block ${d.index} is complete at its stop`);
            }
        }
        if (u < upEvents.length && JSON.stringify(stripEvent(d)) === JSON.stringify(stripEvent(upEvents[u].data)) && ev.event === upEvents[u].event) {
            u++;
            return;
        }
        assert.ok(t >= 0 && d.type === 'content_block_delta' && d.delta.type === 'text_delta', `${where} is neither the upstream's next event (${upEvents[u]?.event}) nor a text delta astgate added`);
        assert.deepEqual(Object.keys(d), ['type', 'index', 'delta']);
        added++;
    });
    assert.equal(u, upEvents.length, 'every upstream event reached the client, in order');
    if (complete) wants.forEach((w, t) => assert.equal(texts[t], w, `text block ${idx[t]}`));
    return { texts, added };
}

async function rawStream(t, spec, { rid } = {}) {
    const before = t.fake.requests.length;
    t.fake.enqueue('/v1/messages', spec);
    const res = await fetch(`${t.origin}/v1/messages`, {
        method: 'POST',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: headers(rid ? { 'x-request-id': rid } : {}),
        body: JSON.stringify({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES, stream: true }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    return { res, body, rec: t.fake.requests[before] };
}

describe('anthropic messages API', () => {
    let t;
    before(async () => {
        t = await openFake();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('x-api-key, anthropic-version and anthropic-beta reach the upstream', async () => {
        const c = corpus[0];
        // raw, as curl or an older SDK sends them
        t.fake.enqueue('/v1/messages', { texts: [c.input] });
        let before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/messages`, {
            method: 'POST',
            headers: headers({ 'anthropic-beta': `${BETA},output-128k-2025-02-19` }),
            body: JSON.stringify({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }),
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        assert.equal(res.status, 200);
        assert.equal((await res.json()).content[0].text, want(c));
        let rec = t.fake.requests[before];
        assert.equal(rec.path, '/v1/messages');
        assert.equal(rec.headers['x-api-key'], API_KEY);
        assert.equal(rec.headers['anthropic-version'], '2023-06-01');
        assert.equal(rec.headers['anthropic-beta'], `${BETA},output-128k-2025-02-19`);
        // the SDK (this version authenticates with a Bearer token)
        t.fake.enqueue('/v1/messages', { texts: [c.input] });
        before = t.fake.requests.length;
        const m = await t.client.messages.create({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES });
        rec = t.fake.requests[before];
        assert.ok(rec.headers['x-api-key'] === API_KEY || rec.headers.authorization === `Bearer ${API_KEY}`, 'the key');
        assert.match(rec.headers['anthropic-version'] ?? '', /^\d{4}-\d{2}-\d{2}$/);
        assert.equal(rec.headers['anthropic-beta'], BETA);
        assert.equal(m.content[0].text, want(c));
        assert.equal(m.id, MESSAGE_ID);
    });

    corpus.forEach((c, k) => {
        it(`not streamed ${c.name}: text blocks, body bytes`, async () => {
            const layout = LAYOUTS[k % LAYOUTS.length];
            const texts = k % 3 === 0 ? [c.input, corpus[(k + 1) % corpus.length].input] : [c.input];
            const wants = texts.map((x, i) => (i === 0 ? want(c) : want(corpus[(k + 1) % corpus.length])));
            t.fake.enqueue('/v1/messages', { texts, layout });
            t.fake.enqueue('/v1/messages', { texts, layout });
            const before = t.fake.requests.length;
            const m = await t.client.messages.create({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES });
            assert.deepEqual(m.content.filter((b) => b.type === 'text').map((b) => b.text), wants);
            assert.equal(m.model, ANTHROPIC_MODEL);
            assert.equal(m.stop_reason, 'end_turn');
            if (layout.thinking) assert.equal(m.content[0].thinking, THINKING, 'thinking untouched');
            if (layout.tool) assert.deepEqual(m.content.find((b) => b.type === 'tool_use').input, TOOL_INPUT, 'tool input untouched');
            // raw: the upstream's body with only the text strings changed
            const res = await fetch(`${t.origin}/v1/messages`, {
                method: 'POST',
                headers: headers(),
                body: JSON.stringify({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }),
                signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            });
            const body = await res.text();
            assert.equal(res.status, 200, body);
            assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(body)));
            let back = body;
            texts.forEach((x, i) => (back = back.split(JSON.stringify(wants[i])).join(JSON.stringify(x))));
            assert.equal(back, t.fake.requests[before + 1].reply.body.toString('utf8'), 'the body is the upstream body with only the text changed');
        });
    });

    corpus.forEach((c, k) => {
        it(`streamed ${c.name}: raw events, messages.create stream, messages.stream finalMessage()`, async () => {
            for (const s of [0, 1, 2]) {
                const seed = 5 * k + s;
                const layout = LAYOUTS[(k + s) % LAYOUTS.length];
                try {
                    const { body, rec } = await rawStream(t, { texts: [c.input], layout, seed });
                    assertMessagesStream(rec.reply.events, body, [want(c)], textIndexes([c.input], layout));
                } catch (err) {
                    throw annotate(err, `seed ${seed} layout ${JSON.stringify(layout)}`);
                }
            }
            // the SDK's raw stream
            const layout = LAYOUTS[k % LAYOUTS.length];
            t.fake.enqueue('/v1/messages', { texts: [c.input], layout, seed: 1000 + k });
            const stream = await t.client.messages.create({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES, stream: true });
            const idx = textIndexes([c.input], layout)[0];
            let text = '';
            const types = [];
            for await (const ev of stream) {
                types.push(ev.type);
                if (ev.type === 'content_block_start' && ev.index === idx) text += ev.content_block.text;
                if (ev.type === 'content_block_delta' && ev.index === idx && ev.delta.type === 'text_delta') text += ev.delta.text;
            }
            assert.equal(text, want(c), 'the text of the SDK stream');
            assert.equal(types[0], 'message_start');
            assert.equal(types.at(-1), 'message_stop');
            // the helper
            t.fake.enqueue('/v1/messages', { texts: [c.input], layout: LAYOUTS[(k + 2) % LAYOUTS.length], seed: 2000 + k });
            const helper = t.client.messages.stream({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES });
            let textEvents = '';
            helper.on('text', (delta) => (textEvents += delta));
            const final = await helper.finalMessage();
            assert.equal(final.content.find((b) => b.type === 'text').text, want(c), 'finalMessage()');
            assert.equal(final.stop_reason, 'end_turn');
            assert.ok(textEvents.endsWith(want(c).slice(-20)), 'the text events');
        });
    });

    it('two text blocks around a tool_use block, thinking first, pings', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 6);
        for (const [k, c] of cases.entries()) {
            const other = cases[(k + 1) % cases.length];
            const layout = k % 2 ? { thinking: true, tool: true, pings: true } : { spaces: true, startText: true };
            const texts = [c.input, other.input];
            const { body, rec } = await rawStream(t, { texts, layout, seed: 3000 + k });
            assertMessagesStream(rec.reply.events, body, [want(c), want(other)], textIndexes(texts, layout));
            t.fake.enqueue('/v1/messages', { texts, layout, seed: 3100 + k });
            const final = await t.client.messages.stream({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }).finalMessage();
            assert.deepEqual(final.content.filter((b) => b.type === 'text').map((b) => b.text), [want(c), want(other)]);
            if (layout.tool) assert.deepEqual(final.content.find((b) => b.type === 'tool_use').input, TOOL_INPUT);
        }
    });

    it('a stream cut off inside a code block: the held code arrives, rewritten', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected && c.input.includes('model:')).slice(0, 6);
        assert.ok(cases.length > 0);
        for (const [k, c] of cases.entries()) {
            const cut = c.input.lastIndexOf('model:') + 8;
            const spec = { texts: [c.input], seed: 3300 + 7 * k, cut, layout: k % 2 ? { thinking: true } : { spaces: true } };
            while (cutText([c.input], spec).length === c.input.length) spec.seed++;
            const prefix = cutText([c.input], spec);
            const { body, rec } = await rawStream(t, spec);
            const r = assertMessagesStream(rec.reply.events, body, [cliRewriteText(prefix)], textIndexes([c.input], spec.layout));
            if (PROXIED) assert.ok(r.added <= 1);
        }
    });

    it('rewrite log lines carry the upstream model, per block, streamed and not', { skip: NEEDS_PROXY }, async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 3);
        for (const [k, c] of cases.entries()) {
            const rid = `e2e-msg-log-s${k}`;
            await rawStream(t, { texts: [c.input], seed: 3400 + k }, { rid });
            await assertRewriteLogs(t.proc, rid, [cliLog(c)], { streamed: true, models: [ANTHROPIC_MODEL] });
            const rid2 = `e2e-msg-log-n${k}`;
            t.fake.enqueue('/v1/messages', { texts: [c.input] });
            const res = await fetch(`${t.origin}/v1/messages`, {
                method: 'POST',
                headers: headers({ 'x-request-id': rid2 }),
                body: JSON.stringify({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }),
                signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            });
            await res.text();
            assert.ok(Number(res.headers.get('x-astgate-rewrites')) > 0);
            await assertRewriteLogs(t.proc, rid2, [cliLog(c)], { streamed: false, models: [ANTHROPIC_MODEL] });
        }
    });

    it('an upstream error passes through: status, body, the SDK error class', async () => {
        const error = { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } };
        t.fake.enqueue('/v1/messages', { status: 529, error });
        await assert.rejects(t.client.messages.create({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }), (err) => {
            assert.ok(err instanceof Anthropic.APIError, String(err));
            assert.equal(err.status, 529);
            assert.equal(err.type, 'overloaded_error');
            return true;
        });
        assert.equal(spacedJson({ a: [1, 'x'] }), '{"a": [1, "x"]}');
    });

    it('the API key never appears in what astgate prints', { skip: NEEDS_PROXY }, () => {
        assertNoSecrets(t.proc);
    });
});

const BLOCK_RULE = `id: no-eval
language: TypeScript
severity: error
message: eval runs arbitrary code
rule:
  pattern: eval($X)
metadata:
  astgate:
    action: block
`;
const PROSE = 'Careful: this evaluates whatever the user typed.\n\n';
const EVAL_REPLY = PROSE + "```ts\nexport function calc(userInput: string) {\n  return eval(userInput);\n}\n```\n\nPrefer a real parser.\n";

describe('anthropic messages API, block rule', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        const rules = writeRules(fs.readFileSync(path.join(ROOT, RULES), 'utf8') + '\n---\n' + BLOCK_RULE);
        t = await openFake({ rules });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    for (const seed of [0, 1, 2, 3, 4]) {
        it(`streamed (seed ${seed}): the prose, then an error event with its event line, then the end`, async () => {
            const { body } = await rawStream(t, { texts: [EVAL_REPLY], seed, layout: seed % 2 ? { thinking: true } : {} }, { rid: `e2e-msg-block-${seed}` });
            const px = parseSSE(body);
            assert.equal(px.trailing, '');
            let text = '';
            px.events.forEach((ev, i) => {
                const d = JSON.parse(ev.data);
                assert.equal(ev.event, d.type);
                if (i < px.events.length - 1) assert.notEqual(d.type, 'error', 'the error comes last');
                if (d.type === 'content_block_delta' && d.delta.type === 'text_delta') text += d.delta.text;
                if (d.type === 'content_block_start' && d.content_block.type === 'text') text += d.content_block.text;
            });
            const last = px.events.at(-1);
            assert.equal(last.event, 'error');
            const err = JSON.parse(last.data);
            assert.equal(err.type, 'error');
            assert.equal(err.error.type, 'astgate_blocked');
            assert.match(err.error.message, /eval runs arbitrary code/);
            assert.match(err.error.message, /no-eval/);
            assert.equal(text, PROSE, 'the client gets exactly the prose before the blocked block');
            assert.ok(!body.includes('eval(userInput)'), 'blocked code reached the client');
            const line = await withTimeout(t.proc.waitLine((l) => l.includes(`e2e-msg-block-${seed}`) && l.includes('no-eval')), 5000, 'the block log line');
            assert.equal(JSON.parse(line).streamed, true);
        });
    }

    it('streamed through the SDK: finalMessage() rejects with astgate_blocked', async () => {
        t.fake.enqueue('/v1/messages', { texts: [EVAL_REPLY], seed: 9 });
        const helper = t.client.messages.stream({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES });
        let text = '';
        helper.on('text', (d) => (text += d));
        await assert.rejects(helper.finalMessage(), (err) => {
            assert.ok(err instanceof Anthropic.APIError, String(err));
            assert.equal(err.type, 'astgate_blocked');
            assert.match(err.message, /no-eval/);
            return true;
        });
        assert.equal(text, PROSE);
    });

    it('not streamed: 422', async () => {
        t.fake.enqueue('/v1/messages', { texts: [EVAL_REPLY] });
        await assert.rejects(t.client.messages.create({ model: REQ_MODEL, max_tokens: 1024, messages: MESSAGES }), (err) => {
            assert.ok(err instanceof Anthropic.APIError, String(err));
            assert.equal(err.status, 422);
            // an Anthropic-shaped error body ({"type":"error","error":{"type","message"}}): the SDK
            // reads the error type and message from it
            assert.equal(err.type, 'astgate_blocked', JSON.stringify(err.error));
            assert.match(err.message, /no-eval/);
            return true;
        });
    });
});

// POST /v1/responses (OpenAI Responses API) over the golden corpus, against the fake of
// fake-responses.mjs. Not streamed: the openai SDK's output_text and output[].content[].text, and
// the body bytes (only the text strings changed). Streamed: raw events (every delta adds up to the
// rewrite, output_text.done / content_part.done / output_item.done / response.completed hold the
// same text, sequence_number 0, 1, 2, ... without gaps, every other event the upstream's, each
// with its event line), the SDK's raw stream, and the helper's finalResponse() (what the user
// finally sees comes from response.completed). Layouts: a reasoning item first, a function call
// with code in its arguments, two text parts, no done events, output_text in the response, a
// stream cut off inside a code block. Also: previous_response_id / store requests go upstream
// unchanged, rewrite log lines carry the upstream's model, and a block rule ends the stream with
// an error event the SDK throws.
// Without ASTGATE_BIN the same tests run against the fake alone and expect the replies unchanged.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { FakeApis, RESPONSES_MODEL, RESPONSE_ID, REASONING, FUNC_ARGS, messageIndex, cutText } from './fake-responses.mjs';
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
const REQ_MODEL = 'gpt-4.1';
const INPUT = 'Write me a Mastra agent, please.';
const LAYOUTS = [
    {},
    { reasoning: true, func: true },
    { noDone: true, obfuscation: true },
    { outputText: true, func: true, pretty: true },
    { reasoning: true, noDone: true, outputText: true },
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
        client: new OpenAI({ baseURL: origin + '/v1', apiKey: API_KEY, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS }),
        async close() {
            try {
                if (proc) await proc.stop();
            } finally {
                await fake.close();
            }
        },
    };
}

// The event without what may change: its sequence_number and the text of output_text parts.
function stripEvent(d) {
    const x = structuredClone(d);
    delete x.sequence_number;
    const parts = (content) => (content ?? []).forEach((p) => p.type === 'output_text' && delete p.text);
    switch (x.type) {
        case 'response.output_text.delta':
            delete x.delta;
            break;
        case 'response.output_text.done':
            delete x.text;
            break;
        case 'response.content_part.done':
            if (x.part?.type === 'output_text') delete x.part.text;
            break;
        case 'response.output_item.done':
            parts(x.item?.content);
            break;
        case 'response.completed':
        case 'response.incomplete':
        case 'response.failed':
            for (const item of x.response?.output ?? []) parts(item.content);
            delete x.response?.output_text;
            break;
        default:
            break;
    }
    return x;
}

// Checks a streamed reply (the proxy's body text) against the events the fake sent; wants[c]:
// what part c of the message must hold. complete: the stream ran to its end (parts are checked
// at their done events too). Returns {texts, added}.
function assertResponsesStream(upEvents, body, wants, { o, complete = true }) {
    const px = parseSSE(body);
    assert.ok(!px.unterminated && px.trailing === '', `the stream ends inside an event: ${JSON.stringify(px.trailing)}`);
    const texts = wants.map(() => '');
    let u = 0;
    let added = 0;
    px.events.forEach((ev, i) => {
        let d;
        try {
            d = JSON.parse(ev.data);
        } catch (err) {
            assert.fail(`event ${i} is not JSON (${err.message}): ${ev.data.slice(0, 200)}`);
        }
        const where = `event ${i} (${d.type})`;
        assert.equal(ev.event, d.type, `${where}: the event line names the type`);
        assert.equal(d.sequence_number, i, `${where}: sequence_number`);
        if (d.type === 'response.output_text.delta') {
            assert.equal(d.output_index, o, `${where}: output_index`);
            assert.ok(d.content_index < wants.length, `${where}: content_index`);
            texts[d.content_index] += d.delta;
        }
        const full = (c, text, what) => {
            assert.equal(text, wants[c], `${where}: ${what} of part ${c}`);
            assert.equal(texts[c], wants[c], `${where}: the deltas of part ${c} before it`);
        };
        if (d.type === 'response.output_text.done') full(d.content_index, d.text, 'text');
        if (d.type === 'response.content_part.done') full(d.content_index, d.part.text, 'part.text');
        if (d.type === 'response.output_item.done' && d.item.type === 'message') d.item.content.forEach((p, c) => full(c, p.text, 'item.content[].text'));
        if (d.type === 'response.completed' || d.type === 'response.incomplete') {
            d.response.output.filter((it) => it.type === 'message').forEach((it) => it.content.forEach((p, c) => full(c, p.text, 'response.output[].content[].text')));
            if ('output_text' in d.response) assert.equal(d.response.output_text, wants.join(''), `${where}: response.output_text`);
        }
        if (u < upEvents.length && JSON.stringify(stripEvent(d)) === JSON.stringify(stripEvent(upEvents[u].data)) && ev.event === upEvents[u].event) {
            u++;
            return;
        }
        assert.equal(d.type, 'response.output_text.delta', `${where} is neither the upstream's next event (${upEvents[u]?.event}) nor a delta astgate added`);
        assert.equal(d.item_id, upEvents.find((e) => e.data.type === 'response.output_text.delta')?.data.item_id, `${where}: item_id of an added delta`);
        added++;
    });
    assert.equal(u, upEvents.length, 'every upstream event reached the client, in order');
    if (complete) wants.forEach((w, c) => assert.equal(texts[c], w, `the deltas of part ${c}`));
    return { texts, added };
}

async function rawStream(t, spec, { rid } = {}) {
    const before = t.fake.requests.length;
    t.fake.enqueue('/v1/responses', spec);
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` };
    if (rid) headers['x-request-id'] = rid;
    const res = await fetch(`${t.origin}/v1/responses`, {
        method: 'POST',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers,
        body: JSON.stringify({ model: REQ_MODEL, input: INPUT, stream: true }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    return { res, body, rec: t.fake.requests[before] };
}

describe('responses API', () => {
    let t;
    before(async () => {
        t = await openFake();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    corpus.forEach((c, k) => {
        it(`not streamed ${c.name}: output_text, output[].content[].text, body bytes`, async () => {
            const layout = LAYOUTS[k % LAYOUTS.length];
            t.fake.enqueue('/v1/responses', { texts: [c.input], layout });
            t.fake.enqueue('/v1/responses', { texts: [c.input], layout });
            const before = t.fake.requests.length;
            const r = await t.client.responses.create({ model: REQ_MODEL, input: INPUT });
            const rec = t.fake.requests[before];
            assert.equal(r.output_text, want(c), 'output_text');
            const msg = r.output[messageIndex(layout)];
            assert.equal(msg.type, 'message');
            assert.equal(msg.content[0].text, want(c));
            assert.equal(r.id, RESPONSE_ID);
            assert.equal(r.model, RESPONSES_MODEL);
            assert.deepEqual(r.usage, rec.reply.object.usage);
            if (layout.reasoning) assert.equal(r.output[0].summary[0].text, REASONING, 'reasoning untouched');
            if (layout.func) assert.equal(r.output.at(-1).arguments, FUNC_ARGS, 'function call arguments untouched');
            // raw: the upstream's body with only the text strings changed
            const res = await fetch(`${t.origin}/v1/responses`, {
                method: 'POST',
                headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
                body: JSON.stringify({ model: REQ_MODEL, input: INPUT }),
                signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            });
            const body = await res.text();
            assert.equal(res.status, 200, body);
            assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
            assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(body)));
            const up = t.fake.requests[before + 1].reply.body.toString('utf8');
            const lit = JSON.stringify;
            assert.equal(body.split(lit(want(c))).join(lit(c.input)), up, 'the body is the upstream body with only the text changed');
        });
    });

    corpus.forEach((c, k) => {
        it(`streamed ${c.name}: raw events, the SDK stream, finalResponse()`, async () => {
            for (const s of [0, 1, 2]) {
                const seed = 5 * k + s;
                const layout = LAYOUTS[(k + s) % LAYOUTS.length];
                try {
                    const { body, rec } = await rawStream(t, { texts: [c.input], layout, seed });
                    assertResponsesStream(rec.reply.events, body, [want(c)], { o: messageIndex(layout) });
                } catch (err) {
                    throw annotate(err, `seed ${seed} layout ${JSON.stringify(layout)}`);
                }
            }
            // the SDK's raw stream
            t.fake.enqueue('/v1/responses', { texts: [c.input], layout: LAYOUTS[k % LAYOUTS.length], seed: 1000 + k });
            const stream = await t.client.responses.create({ model: REQ_MODEL, input: INPUT, stream: true });
            let deltas = '';
            let completed = null;
            for await (const ev of stream) {
                if (ev.type === 'response.output_text.delta') deltas += ev.delta;
                if (ev.type === 'response.completed') completed = ev.response;
            }
            assert.equal(deltas, want(c), 'the deltas of the SDK stream');
            assert.ok(completed, 'response.completed');
            assert.equal(completed.output.find((it) => it.type === 'message').content[0].text, want(c));
            // the helper: what the user finally gets comes from response.completed
            t.fake.enqueue('/v1/responses', { texts: [c.input], layout: LAYOUTS[(k + 2) % LAYOUTS.length], seed: 2000 + k });
            const helper = t.client.responses.stream({ model: REQ_MODEL, input: INPUT });
            let helperDeltas = '';
            helper.on('response.output_text.delta', (e) => (helperDeltas += e.delta));
            const final = await helper.finalResponse();
            assert.equal(final.output_text, want(c), 'finalResponse().output_text');
            assert.equal(helperDeltas, want(c), 'the helper delta events');
        });
    });

    it('two output_text parts with a reasoning item and a function call', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 6);
        for (const [k, c] of cases.entries()) {
            const other = cases[(k + 1) % cases.length];
            const layout = k % 2 ? { reasoning: true, func: true, outputText: true } : { noDone: true };
            const { body, rec } = await rawStream(t, { texts: [c.input, other.input], layout, seed: 3000 + k });
            assertResponsesStream(rec.reply.events, body, [want(c), want(other)], { o: messageIndex(layout) });
            t.fake.enqueue('/v1/responses', { texts: [c.input, other.input], layout, seed: 3100 + k });
            const final = await t.client.responses.stream({ model: REQ_MODEL, input: INPUT }).finalResponse();
            assert.equal(final.output_text, want(c) + want(other));
            t.fake.enqueue('/v1/responses', { texts: [c.input, other.input], layout });
            const r = await t.client.responses.create({ model: REQ_MODEL, input: INPUT });
            assert.deepEqual(r.output[messageIndex(layout)].content.map((p) => p.text), [want(c), want(other)]);
        }
    });

    it('response.incomplete (max_output_tokens) holds the rewritten text too', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 4);
        for (const [k, c] of cases.entries()) {
            const { body, rec } = await rawStream(t, { texts: [c.input], seed: 3200 + k, finalStatus: 'incomplete' });
            assertResponsesStream(rec.reply.events, body, [want(c)], { o: 0 });
        }
    });

    it('a stream cut off inside a code block: the held code arrives, rewritten', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected && c.input.includes('model:')).slice(0, 6);
        assert.ok(cases.length > 0);
        for (const [k, c] of cases.entries()) {
            const cut = c.input.lastIndexOf('model:') + 8; // inside the block, before its fence closes
            const spec = { texts: [c.input], seed: 3300 + 7 * k, cut, layout: k % 2 ? { reasoning: true } : {} };
            // a split whose delta with byte cut ends before the reply does
            while (cutText([c.input], spec).length === c.input.length) spec.seed++;
            const prefix = cutText([c.input], spec);
            assert.ok(prefix.length >= cut);
            const { body, rec } = await rawStream(t, spec);
            const r = assertResponsesStream(rec.reply.events, body, [cliRewriteText(prefix)], { o: messageIndex(spec.layout), complete: true });
            if (PROXIED) assert.ok(r.added <= 1);
        }
    });

    it('previous_response_id and store: the request goes upstream byte for byte, the reply is rewritten', async () => {
        const c = corpus.find((x) => x.input !== x.expected);
        const reqBody = JSON.stringify({ model: REQ_MODEL, input: [{ role: 'user', content: 'And now with tools, please. ```ts\nnew Agent({ model: "gpt-4o" })\n```' }], previous_response_id: 'resp_prev_0001', store: true });
        t.fake.enqueue('/v1/responses', { texts: [c.input] });
        const before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/responses`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, 'openai-beta': 'responses=v1' },
            body: reqBody,
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const j = await res.json();
        const rec = t.fake.requests[before];
        assert.equal(rec.body.toString('utf8'), reqBody, 'the request body is not rewritten');
        assert.equal(rec.headers.authorization, `Bearer ${API_KEY}`);
        assert.equal(rec.headers['openai-beta'], 'responses=v1');
        assert.equal(j.output[0].content[0].text, want(c));
        // the SDK with previous_response_id, streamed
        t.fake.enqueue('/v1/responses', { texts: [c.input], seed: 7 });
        const final = await t.client.responses.stream({ model: REQ_MODEL, input: INPUT, previous_response_id: 'resp_prev_0001', store: true }).finalResponse();
        assert.equal(final.output_text, want(c));
        assert.equal(t.fake.requests.at(-1).json.previous_response_id, 'resp_prev_0001');
    });

    it('rewrite log lines carry the upstream model, per part, streamed and not', { skip: NEEDS_PROXY }, async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 3);
        for (const [k, c] of cases.entries()) {
            const rid = `e2e-resp-log-s${k}`;
            await rawStream(t, { texts: [c.input], seed: 3400 + k }, { rid });
            await assertRewriteLogs(t.proc, rid, [cliLog(c)], { streamed: true, models: [RESPONSES_MODEL] });
            const rid2 = `e2e-resp-log-n${k}`;
            t.fake.enqueue('/v1/responses', { texts: [c.input] });
            const res = await fetch(`${t.origin}/v1/responses`, {
                method: 'POST',
                headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, 'x-request-id': rid2 },
                body: JSON.stringify({ model: REQ_MODEL, input: INPUT }),
                signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            });
            await res.text();
            assert.ok(Number(res.headers.get('x-astgate-rewrites')) > 0);
            await assertRewriteLogs(t.proc, rid2, [cliLog(c)], { streamed: false, models: [RESPONSES_MODEL] });
        }
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

describe('responses API, block rule', { skip: NEEDS_PROXY }, () => {
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
        it(`streamed (seed ${seed}): the prose, then an error event numbered next, then the end`, async () => {
            const { body } = await rawStream(t, { texts: [EVAL_REPLY], seed, layout: seed % 2 ? { reasoning: true } : {} }, { rid: `e2e-resp-block-${seed}` });
            const px = parseSSE(body);
            assert.equal(px.trailing, '');
            let text = '';
            px.events.forEach((ev, i) => {
                const d = JSON.parse(ev.data);
                assert.equal(d.sequence_number, i, 'sequence_number');
                if (i < px.events.length - 1) assert.notEqual(d.type, 'error', 'the error comes last');
                if (d.type === 'response.output_text.delta') text += d.delta;
            });
            const last = px.events.at(-1);
            assert.equal(last.event, 'error');
            const err = JSON.parse(last.data);
            assert.equal(err.type, 'error');
            assert.equal(err.code, 'no-eval');
            assert.match(err.message, /eval runs arbitrary code/);
            assert.equal(err.param, null);
            assert.equal(err.error.type, 'astgate_blocked');
            assert.equal(text, PROSE, 'the client gets exactly the prose before the blocked block');
            assert.ok(!body.includes('eval(userInput)'), 'blocked code reached the client');
            const line = await withTimeout(t.proc.waitLine((l) => l.includes(`e2e-resp-block-${seed}`) && l.includes('no-eval')), 5000, 'the block log line');
            assert.equal(JSON.parse(line).streamed, true);
        });
    }

    it('streamed through the SDK: finalResponse() rejects with the rule id', async () => {
        t.fake.enqueue('/v1/responses', { texts: [EVAL_REPLY], seed: 9 });
        const helper = t.client.responses.stream({ model: REQ_MODEL, input: INPUT });
        let text = '';
        helper.on('response.output_text.delta', (e) => (text += e.delta));
        await assert.rejects(helper.finalResponse(), (err) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.code, 'no-eval');
            assert.equal(err.type, 'astgate_blocked');
            return true;
        });
        assert.equal(text, PROSE);
    });

    it('not streamed: 422 with the rule id', async () => {
        t.fake.enqueue('/v1/responses', { texts: [EVAL_REPLY] });
        await assert.rejects(t.client.responses.create({ model: REQ_MODEL, input: INPUT }), (err) => {
            assert.ok(err instanceof OpenAI.UnprocessableEntityError, String(err));
            assert.equal(err.code, 'no-eval');
            return true;
        });
    });
});

// Issue 16, request-side hints: with `hints: on` astgate adds the loaded rules' hints (the Mastra
// pack's: its text and an example built from its `model` parameter) to each API request as its
// system instruction, in every slot shape of Chat Completions, Responses and Anthropic Messages,
// and nothing else changes (the body the upstream receives is the client's with one splice);
// `hints: off` (the default) sends the client's bytes; `hints: {ab: 50}` hints every other
// request of a worker and /metrics and the access log show the arms side by side; a body with no
// slot goes on untouched and is counted. The official SDKs talk to astgate; a recording upstream
// answers like the experiment's model that writes the required value only when it was shown it.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { API_KEY, NEEDS_PROXY, ROOT, RULES, Astgate, assertNoSecrets, rawRequest, tmpDir, withTimeout } from './helpers.mjs';

const GOOD = "```ts\nimport { Agent } from '@mastra/core/agent';\nimport { openai } from '@ai-sdk/openai';\n\nexport const a = new Agent({ name: 'a', model: openai('gpt-4.1-nano') });\n```\n";
const BAD = GOOD.replace("openai('gpt-4.1-nano')", "openai('gpt-4o')");

// An upstream for the three APIs that records every request (raw body and headers) and, like the
// experiment's second model, writes the required model only when the request shows it.
class RecordingUpstream {
    static async start() {
        const u = new RecordingUpstream();
        await new Promise((resolve) => u.server.listen(0, '127.0.0.1', resolve));
        u.url = `http://127.0.0.1:${u.server.address().port}`;
        return u;
    }

    constructor() {
        this.requests = [];
        this.server = http.createServer((req, res) => {
            const parts = [];
            req.on('data', (d) => parts.push(d));
            req.on('end', () => {
                const body = Buffer.concat(parts);
                this.requests.push({ path: req.url, headers: req.headers, body });
                const text = body.includes("model: openai('gpt-4.1-nano')") ? GOOD : BAD;
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify(reply(req.url, text)));
            });
        });
    }

    last() {
        return this.requests[this.requests.length - 1];
    }

    close() {
        this.server.closeAllConnections?.();
        return new Promise((resolve) => this.server.close(resolve));
    }
}

function reply(url, text) {
    const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
    if (url.startsWith('/v1/responses'))
        return {
            id: 'resp_1', object: 'response', created_at: 1, status: 'completed', model: 'gpt-4o', output: [
                { type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] },
            ], usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 },
        };
    if (url.startsWith('/v1/messages'))
        return {
            id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-x', content: [{ type: 'text', text }],
            stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 1, output_tokens: 1 },
        };
    return {
        id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage,
    };
}

// Prometheus text → Map('name{labels}' → value)
function metrics(text) {
    const out = new Map();
    for (const l of text.split('\n')) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(l);
        if (m) out.set(m[1], Number(m[2]));
    }
    return out;
}

async function getMetrics(origin) {
    const r = await rawRequest(origin, { method: 'GET', path: '/metrics' });
    assert.equal(r.status, 200);
    return metrics(r.body.toString('utf8'));
}

// Starts astgate with astgate.yaml `yaml` (text) in front of a recording upstream.
async function harness(yaml, rules = undefined) {
    const up = await RecordingUpstream.start();
    const configPath = path.join(tmpDir(), 'astgate.yaml');
    fs.writeFileSync(configPath, yaml);
    let ag;
    try {
        ag = await Astgate.start({ upstream: up.url, config: configPath, rules });
    } catch (err) {
        await up.close();
        throw err;
    }
    // the client's exact bytes: every SDK request goes through this fetch, which records them
    const sent = [];
    const fetchRec = async (url, init) => {
        sent.push(Buffer.from(init?.body ?? ''));
        return fetch(url, init);
    };
    return {
        up, ag, configPath, sent,
        openai: new OpenAI({ apiKey: API_KEY, baseURL: `${ag.origin}/v1`, fetch: fetchRec, maxRetries: 0 }),
        anthropic: new Anthropic({ apiKey: API_KEY, baseURL: ag.origin, fetch: fetchRec, maxRetries: 0 }),
        async close() {
            try {
                await ag.stop();
            } finally {
                await up.close();
            }
        },
    };
}

const RID = (n) => ({ headers: { 'x-request-id': `hints-${n}` } });

describe('request-side hints', { skip: NEEDS_PROXY }, () => {
    describe('hints: on', () => {
        let h;
        let HINT;
        before(async () => {
            h = await harness("hints: on\nworkers: 1\n");
        });
        after(async () => {
            if (h) assertNoSecrets(h.ag);
            await h?.close();
        });

        // The upstream received the client's body with exactly `expect(sentObject)` changed:
        // byte for byte what JSON.stringify gives for the changed object (the SDKs send
        // JSON.stringify's bytes, and astgate escapes the hint the same way), and Content-Length
        // is the new length.
        function assertSpliced(expect) {
            const sentBody = h.sent[h.sent.length - 1];
            const got = h.up.last();
            const want = JSON.stringify(expect(JSON.parse(sentBody.toString('utf8'))));
            assert.equal(got.body.toString('utf8'), want);
            assert.equal(Number(got.headers['content-length']), got.body.length);
            return { sentBody, got };
        }

        it('Chat Completions without a system message: a new first message carries the hint', async () => {
            const r = await h.openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Write a Mastra agent.' }] }, RID('chat-new'));
            const body = JSON.parse(h.up.last().body);
            assert.equal(body.messages.length, 2);
            assert.equal(body.messages[0].role, 'system');
            HINT = body.messages[0].content;
            assert.match(HINT, /^astgate rules for generated code:\n- A Mastra agent's `model` must be gpt-4\.1-nano/);
            assert.ok(HINT.includes("```ts\nimport { Agent } from '@mastra/core/agent';"), HINT);
            assert.ok(HINT.includes("  model: openai('gpt-4.1-nano'),\n});\n```"), HINT);
            assertSpliced((o) => ({ ...o, messages: [{ role: 'system', content: HINT }, ...o.messages] }));
            // the model was shown the example and wrote the required value: nothing to rewrite
            assert.equal(r.choices[0].message.content, GOOD);
            const sent = h.sent[h.sent.length - 1];
            const access = await h.ag.waitAccessLine('hints-chat-new');
            assert.equal(access.arm, 'hint');
            assert.equal(access.hint_bytes, h.up.last().body.length - sent.length);
            assert.deepEqual(access.hint_rules, ['mastra-agent-model']);
            assert.equal(access.bytes_in > 0, true);
            const note = h.ag.jsonLines().find((j) => j.type === 'hint' && j.request_id === 'hints-chat-new');
            assert.ok(note, 'a rewrite-log line of type hint');
            assert.deepEqual([note.api, note.slot, note.bytes, note.rules], ['chat.completions', 'message', access.hint_bytes, ['mastra-agent-model']]);
        });

        it('Chat Completions: appended to the first system (or developer) message, string or parts', async () => {
            await h.openai.chat.completions.create({
                model: 'gpt-4o',
                messages: [{ role: 'user', content: 'u' }, { role: 'system', content: 'Be brief. "Quoted" \\ and\ttab' }, { role: 'system', content: 'second' }],
            });
            assertSpliced((o) => {
                o.messages[1].content += `\n\n${HINT}`;
                return o;
            });
            await h.openai.chat.completions.create({
                model: 'gpt-4o',
                messages: [{ role: 'developer', content: [{ type: 'text', text: 'Dev.' }] }, { role: 'user', content: 'u' }],
            });
            assertSpliced((o) => {
                o.messages[0].content.push({ type: 'text', text: HINT });
                return o;
            });
        });

        it('Responses: instructions appended, or added as the first key', async () => {
            await h.openai.responses.create({ model: 'gpt-4o', instructions: 'Be brief.', input: 'Write a Mastra agent.' });
            assertSpliced((o) => ({ ...o, instructions: `Be brief.\n\n${HINT}` }));
            const r = await h.openai.responses.create({ model: 'gpt-4o', input: 'Write a Mastra agent.' });
            assertSpliced((o) => ({ instructions: HINT, ...o }));
            assert.equal(r.output_text, GOOD);
        });

        it('Anthropic Messages: system string appended, blocks get a new block, absent added', async () => {
            const base = { model: 'claude-x', max_tokens: 64, messages: [{ role: 'user', content: 'Write a Mastra agent.' }] };
            await h.anthropic.messages.create({ ...base, system: 'Be brief.' });
            assertSpliced((o) => ({ ...o, system: `Be brief.\n\n${HINT}` }));
            await h.anthropic.messages.create({ ...base, system: [{ type: 'text', text: 'Cached.', cache_control: { type: 'ephemeral' } }] });
            assertSpliced((o) => ({ ...o, system: [...o.system, { type: 'text', text: HINT }] }));
            const r = await h.anthropic.messages.create(base);
            assertSpliced((o) => ({ system: HINT, ...o }));
            assert.equal(r.content[0].text, GOOD);
        });

        it('a body with no slot goes on untouched and is counted; other paths are never touched', async () => {
            const before = await getMetrics(h.ag.origin);
            const odd = '{"model":"gpt-4o","prompt":"no messages here"}';
            const r = await rawRequest(h.ag.origin, { headers: { 'content-type': 'application/json', 'x-request-id': 'hints-noslot' }, body: odd });
            assert.equal(r.status, 200);
            assert.equal(h.up.last().body.toString(), odd);
            const weird = '{"messages":[{"role":"system","content":null}]}';
            await rawRequest(h.ag.origin, { headers: { 'content-type': 'application/json' }, body: weird });
            assert.equal(h.up.last().body.toString(), weird);
            const other = '{"messages":[]}';
            await rawRequest(h.ag.origin, { path: '/v1/embeddings', headers: { 'content-type': 'application/json' }, body: other });
            assert.equal(h.up.last().body.toString(), other);
            const after = await getMetrics(h.ag.origin);
            const k = 'astgate_hint_requests_total{route="chat.completions",arm="no_slot"}';
            assert.equal((after.get(k) ?? 0) - (before.get(k) ?? 0), 2);
            const access = await h.ag.waitAccessLine('hints-noslot');
            assert.equal(access.arm, 'no_slot');
            assert.equal(access.hint_bytes, undefined);
            const hinted = after.get('astgate_hint_requests_total{route="chat.completions",arm="hint"}');
            assert.equal(hinted, 3);
            assert.equal(after.get('astgate_hint_requests_total{route="responses",arm="hint"}'), 2);
            assert.equal(after.get('astgate_hint_requests_total{route="messages",arm="hint"}'), 3);
            const added = h.up.requests.reduce((s, q, i) => s + q.body.length, 0) - h.sent.reduce((s, b) => s + b.length, 0) - odd.length - weird.length - other.length;
            assert.equal(after.get('astgate_hint_bytes_total'), added);
        });
    });

    it('hints: off (the default): the upstream gets the client\'s bytes, and the logs say nothing of hints', async () => {
        const h = await harness('workers: 1\n');
        try {
            await h.openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'u' }] }, RID('off-chat'));
            assert.deepEqual(h.up.last().body, h.sent[h.sent.length - 1]);
            await h.openai.responses.create({ model: 'gpt-4o', input: 'x' });
            assert.deepEqual(h.up.last().body, h.sent[h.sent.length - 1]);
            await h.anthropic.messages.create({ model: 'claude-x', max_tokens: 8, messages: [{ role: 'user', content: 'u' }] });
            assert.deepEqual(h.up.last().body, h.sent[h.sent.length - 1]);
            const access = await h.ag.waitAccessLine('hints-off-chat');
            assert.equal('arm' in access, false);
            assert.equal(h.ag.jsonLines().some((j) => j.type === 'hint'), false);
            const m = await getMetrics(h.ag.origin);
            assert.equal(m.get('astgate_hint_bytes_total'), 0);
            assert.equal(m.get('astgate_arm_replies_with_code_total{arm="off"}'), 3);
            assert.equal(m.get('astgate_arm_replies_raw_compliant_total{arm="off"}'), 0);
        } finally {
            await h.close();
        }
    });

    it('hints: {ab: 50}: every other request gets the hint; /metrics shows raw accuracy per arm side by side, the access log each arm', async () => {
        const h = await harness('hints: {ab: 50}\nworkers: 1\n');
        try {
            const N = 10;
            for (let i = 0; i < N; i++)
                await h.openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Write a Mastra agent.' }] }, RID(`ab-${i}`));
            const arms = [];
            for (let i = 0; i < N; i++) arms.push((await h.ag.waitAccessLine(`hints-ab-${i}`)).arm);
            // the per-worker counter: 50 + 50 reaches 100 on every second request
            assert.deepEqual(arms, Array.from({ length: N }, (_, i) => (i % 2 ? 'hint' : 'control')));
            for (let i = 0; i < N; i++) {
                const hinted = JSON.parse(h.up.requests[i].body).messages[0].role === 'system';
                assert.equal(hinted, arms[i] === 'hint');
                if (!hinted) assert.deepEqual(h.up.requests[i].body, h.sent[i]);
            }
            const m = await getMetrics(h.ag.origin);
            assert.equal(m.get('astgate_hint_requests_total{route="chat.completions",arm="hint"}'), N / 2);
            assert.equal(m.get('astgate_hint_requests_total{route="chat.completions",arm="control"}'), N / 2);
            // the experiment's table: with hints the raw accuracy is 100 %, without 0 %; corrected 100 % both
            const row = (arm) => ['with_code', 'raw_compliant', 'corrected_compliant'].map((k) => m.get(`astgate_arm_replies_${k}_total{arm="${arm}"}`));
            assert.deepEqual(row('hint'), [N / 2, N / 2, N / 2]);
            assert.deepEqual(row('control'), [N / 2, 0, N / 2]);
            // the totals are the sum of the arms, as before hints existed
            assert.equal(m.get('astgate_replies_raw_compliant_total'), N / 2);
            assert.equal(m.get('astgate_replies_with_code_total'), N);
        } finally {
            await h.close();
        }
    });

    it('SIGHUP picks up a changed `hints` (per named upstream too) and changed hints in the rules', async () => {
        const rulesFile = path.join(tmpDir(), 'mastra.yaml');
        const original = fs.readFileSync(path.join(ROOT, RULES), 'utf8');
        fs.writeFileSync(rulesFile, original);
        const h = await harness('workers: 1\n', rulesFile);
        try {
            const first = { model: 'gpt-4o', messages: [{ role: 'user', content: 'u' }] };
            await h.openai.chat.completions.create(first);
            assert.deepEqual(h.up.last().body, h.sent[h.sent.length - 1]);
            // on for the upstream of one route only
            fs.writeFileSync(h.configPath, `workers: 1\nupstreams: {hinted: {url: '${h.up.url}', hints: on}}\nroutes: {/v1/messages: hinted}\n`);
            h.ag.child.kill('SIGHUP');
            await withTimeout(h.ag.waitLine((l) => l.includes('configuration reloaded') && l.includes('generation 2')), 5000, 'the reload line');
            await h.openai.chat.completions.create(first);
            assert.deepEqual(h.up.last().body, h.sent[h.sent.length - 1]);
            await h.anthropic.messages.create({ model: 'claude-x', max_tokens: 8, messages: [{ role: 'user', content: 'u' }] });
            const hint1 = JSON.parse(h.up.last().body).system;
            assert.match(hint1, /^astgate rules for generated code:/);
            assert.ok(hint1.includes("model: openai('gpt-4.1-nano')"), hint1);
            // the pack's default model changes: the hint, built from it, follows on the next reload
            fs.writeFileSync(rulesFile, original.replace('default: gpt-4.1-nano', 'default: gpt-4.1-mini'));
            h.ag.child.kill('SIGHUP');
            await withTimeout(h.ag.waitLine((l) => l.includes('configuration reloaded') && l.includes('generation 3')), 5000, 'the second reload line');
            await h.anthropic.messages.create({ model: 'claude-x', max_tokens: 8, messages: [{ role: 'user', content: 'u' }] });
            const hint2 = JSON.parse(h.up.last().body).system;
            assert.ok(hint2.includes("model: openai('gpt-4.1-mini')"), hint2);
            assert.equal(hint2.includes('gpt-4.1-nano'), false);
        } finally {
            await h.close();
        }
    });
});

// Issue 4 in the proxy: shadow mode (the reply comes back byte for byte as the upstream sent it,
// the rewrite log says what would have changed with "applied": false) and GET /metrics (the
// Prometheus text is parsed back and its counters checked against the requests made).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
    NEEDS_PROXY,
    loadCorpus,
    want,
    openTarget,
    rawRequest,
    jsonHeaders,
    chatBody,
    tmpDir,
} from './helpers.mjs';

// Prometheus text format → { 'name{labels}': value }; fails on any line that is not valid.
function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
        assert.ok(m, `not a metric line: ${JSON.stringify(line)}`);
        out.set(m[1] + (m[2] ?? ''), Number(m[3]));
    }
    return out;
}

const corpus = loadCorpus();
const changed = corpus.filter((c) => want(c) !== c.input);
const unchangedWithCode = corpus.find((c) => c.name.startsWith('040'));

async function getMetrics(origin) {
    const r = await rawRequest(origin, { method: 'GET', path: '/metrics' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    return parseMetrics(r.body.toString('utf8'));
}

describe('metrics', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        t = await openTarget();
    });
    after(async () => {
        await t?.close();
    });

    it('/healthz answers ok', async () => {
        const r = await rawRequest(t.origin, { method: 'GET', path: '/healthz' });
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok\n');
    });

    it('counts requests, replies with code, raw and corrected compliance, rewrites by rule', async () => {
        const before = await getMetrics(t.origin);
        const n = 3;
        for (let i = 0; i < n; i++) {
            t.fake.enqueue({ content: [changed[i].input] });
            const r = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
            assert.equal(r.status, 200);
        }
        t.fake.enqueue({ content: [unchangedWithCode.input] });
        await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        t.fake.enqueue({ content: ['No code here, just prose.'] });
        await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        const after = await getMetrics(t.origin);
        const d = (k) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
        assert.equal(d('astgate_requests_total{route="chat.completions",status="200"}'), n + 2);
        assert.equal(d('astgate_replies_total'), n + 2);
        assert.equal(d('astgate_replies_with_code_total'), n + 1);
        assert.equal(d('astgate_replies_raw_compliant_total'), 1);
        assert.equal(d('astgate_replies_corrected_compliant_total'), n + 1);
        assert.ok(d('astgate_rewrites_total{rule="mastra-agent-model"}') >= n);
        assert.equal(d('astgate_upstream_seconds_count'), n + 2);
        assert.equal(d('astgate_added_seconds_count'), n + 2);
        assert.equal(after.get('astgate_streams_in_flight'), 0);
        // histogram buckets are cumulative and end with +Inf == count
        assert.equal(after.get('astgate_added_seconds_bucket{le="+Inf"}'), after.get('astgate_added_seconds_count'));
    });

    it('a flagged agent and code too broken to judge are never counted compliant', async () => {
        const before = await getMetrics(t.origin);
        const flagged = "```ts\nexport const a = new Agent({ name: 'a', model: ({ requestContext }) => {} });\n```\n";
        const broken = '```ts\nnew Agent(]]] ))) }}} ;; ) ] } Agent(((\n```\n';
        for (const content of [flagged, broken]) {
            t.fake.enqueue({ content: [content] });
            const r = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
            assert.equal(r.status, 200);
        }
        const after = await getMetrics(t.origin);
        const d = (k) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
        assert.equal(d('astgate_replies_with_code_total'), 2);
        assert.equal(d('astgate_replies_raw_compliant_total'), 0);
        assert.equal(d('astgate_replies_corrected_compliant_total'), 0);
        assert.equal(d('astgate_replies_unjudged_total'), 1);
        assert.ok(d('astgate_flags_total{rule="mastra-agent-model"}') >= 1);
    });
});

describe('shadow mode', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        t = await openTarget({
            config: (fake) => {
                const file = path.join(tmpDir(), 'astgate.yaml');
                fs.writeFileSync(file, `mode: shadow\nrules: [${path.resolve('rules/mastra.yaml')}]\n`);
                return file;
            },
        });
    });
    after(async () => {
        await t?.close();
    });

    it('returns the upstream body byte for byte and logs what it would have changed', async () => {
        for (const c of changed.slice(0, 5)) {
            t.fake.enqueue({ content: [c.input] });
            const r = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
            assert.equal(r.status, 200);
            const rec = t.fake.requests.at(-1);
            assert.ok(rec.reply.body.equals(r.body), `${c.name}: body not byte-identical`);
            assert.ok(!r.headers['x-astgate-rules'], 'no rule applied in shadow mode');
        }
        const logs = t.proc.jsonLines().filter((l) => l.rule === 'mastra-agent-model');
        assert.ok(logs.length >= 5);
        for (const l of logs) {
            assert.equal(l.applied, false);
            assert.equal(l.mode, 'shadow');
        }
        const m = await getMetrics(t.origin);
        assert.ok(m.get('astgate_shadowed_total{rule="mastra-agent-model"}') >= 5);
        assert.equal(m.get('astgate_rewrites_total{rule="mastra-agent-model"}'), 0);
    });

    it('a streamed reply passes through unchanged too', async () => {
        const c = changed[0];
        t.fake.enqueue({ content: [c.input], seed: 3 });
        const r = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ stream: true }) });
        let text = '';
        for (const line of r.body.toString('utf8').split('\n')) {
            if (!line.startsWith('data: {')) continue;
            for (const ch of JSON.parse(line.slice(6)).choices) text += ch.delta?.content ?? '';
        }
        assert.equal(text, c.input);
    });
});

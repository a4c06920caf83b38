// Credentials in generated code never reach a log (rules/secrets.yaml, metadata.astgate.redact):
// the reply gets process.env.NAME, while the rewrite log gives the rule, the place and the size
// of what it replaced, never the key; streamed and not, and the CLI's --log alike.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NEEDS_PROXY, BIN, ROOT, Astgate, withTimeout, rawRequest, jsonHeaders, chatBody, tmpDir } from './helpers.mjs';
import { FakeUpstream } from './fake-upstream.mjs';

const SECRETS = path.join(ROOT, 'rules', 'secrets.yaml');
const OPENAI_KEY = 'sk-proj-Q7vT2mXr9LpZk3WbN8yHc4DfJs6GaRe1Uo5Ti0';
const GH_TOKEN = 'ghp_Q7vT2mXr9LpZk3WbN8yHc4DfJs6GaRe1Uo5T';
const OPAQUE = 'Zq8wLm2Rt6Yp4Kx9Vb3Nc7Hd';
const REPLY =
    "Here:\n\n```ts\nimport OpenAI from 'openai';\n\n" +
    `const client = new OpenAI({ apiKey: '${OPENAI_KEY}' });\n` +
    `const gh = { Authorization: 'Bearer ${GH_TOKEN}' };\n` +
    `const db = { password: '${OPAQUE}' };\n` +
    '```\n';

function assertNoSecret(text, where) {
    for (const s of [OPENAI_KEY, GH_TOKEN, OPAQUE, OPENAI_KEY.slice(8, 28), GH_TOKEN.slice(4, 24)])
        assert.ok(!text.includes(s), `${where} holds a credential (${s.slice(0, 6)}...):\n${text}`);
}

function assertRedactedLines(lines) {
    const ev = lines.filter((l) => l.startsWith('{') && l.includes('"rule":"secret-')).map((l) => JSON.parse(l)).sort((a, b) => a.line - b.line);
    assert.deepEqual(
        ev.map((e) => [e.rule, e.action, e.redacted, e.before, e.after]),
        [
            ['secret-hardcoded-key', 'rewrite', true, undefined, undefined],
            ['secret-hardcoded-key', 'rewrite', true, undefined, undefined],
            ['secret-unknown-credential', 'flag', true, undefined, undefined],
        ],
    );
    assert.deepEqual(ev.map((e) => e.before_bytes), [OPENAI_KEY.length + 2, GH_TOKEN.length + 9, OPAQUE.length + 2]);
}

describe('credentials in generated code stay out of the logs', { skip: NEEDS_PROXY }, () => {
    for (const stream of [false, true]) {
        it(`serve (${stream ? 'streamed' : 'non-streamed'}): the reply reads process.env, the rewrite log names sizes only`, async () => {
            const fake = await FakeUpstream.start();
            const ag = await Astgate.start({ upstream: fake.url, rules: [SECRETS] });
            try {
                fake.enqueue({ content: [REPLY] });
                const r = await rawRequest(ag.origin, { headers: jsonHeaders(), body: chatBody({ stream }) });
                assert.equal(r.status, 200, r.body.toString());
                const body = r.body.toString('utf8');
                assert.ok(body.includes('process.env.OPENAI_API_KEY'), body);
                assert.ok(body.includes('process.env.GITHUB_TOKEN'), body);
                assertNoSecret(body.replace(OPAQUE, ''), 'the reply'); // the opaque one is only flagged
                await withTimeout(ag.waitLine((l) => l.includes('"rule":"secret-unknown-credential"')), 5000, 'the flag line');
                assertRedactedLines(ag.lines);
            } finally {
                await ag.stop();
                await fake.close();
            }
            assertNoSecret(ag.stderr + ag.stdout, "astgate's logs");
        });
    }

    it('rewrite --log FILE: the same lines, no credential in the file', () => {
        const dir = tmpDir();
        const log = path.join(dir, 'rewrite.log');
        const r = spawnSync(BIN, ['rewrite', '--rules', SECRETS, '--log', log], { cwd: ROOT, input: REPLY, encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.ok(r.stdout.includes("apiKey: process.env.OPENAI_API_KEY"), r.stdout);
        const text = fs.readFileSync(log, 'utf8');
        assertNoSecret(text + r.stderr, 'the rewrite log');
        assertRedactedLines(text.trim().split('\n'));
    });
});

// Rule parameters (issue 15): rules/mastra.yaml's `model` set in astgate.yaml
// (`rules: [{file, set: {model: ...}}]`) and by --set; the value in force in /metrics
// (astgate_rule_param_info) and in the audit lines ("params"); SIGHUP picks up a changed value;
// an unknown parameter stops the start with the place that names it.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NEEDS_PROXY, BIN, ROOT, RULES, Astgate, withTimeout, rawRequest, jsonHeaders, chatBody, tmpDir } from './helpers.mjs';
import { FakeUpstream } from './fake-upstream.mjs';

const AGENT =
    "```ts\nimport { Agent } from '@mastra/core/agent';\nimport { anthropic } from '@ai-sdk/anthropic';\n\n" +
    "export const a = new Agent({\n  name: 'a',\n  model: anthropic('claude-3-5-sonnet'),\n});\n" +
    "export const b = new Agent({ name: 'b', model: 'openai/gpt-4o' });\n```\n";
const RULES_ABS = path.join(ROOT, RULES);

function config(dir, model) {
    const file = path.join(dir, 'astgate.yaml');
    fs.writeFileSync(file, `rules:\n  - file: ${RULES_ABS}\n    set: {model: ${model}}\n`);
    return file;
}

async function ask(origin) {
    const r = await rawRequest(origin, { headers: jsonHeaders(), body: chatBody() });
    assert.equal(r.status, 200, r.body.toString());
    return JSON.parse(r.body.toString('utf8')).choices[0].message.content;
}

async function metrics(origin) {
    const r = await rawRequest(origin, { method: 'GET', path: '/metrics' });
    assert.equal(r.status, 200);
    return r.body.toString('utf8');
}

const info = (model) => `astgate_rule_param_info{rule="mastra-agent-model",param="model",value="${model}"} 1\n`;

describe('rule parameters', { skip: NEEDS_PROXY }, () => {
    it('serve: `set:` in astgate.yaml pins the set model, names it in /metrics and the audit line; SIGHUP picks up a new value', async () => {
        const fake = await FakeUpstream.start();
        const dir = tmpDir();
        const file = config(dir, 'gpt-4.1-mini');
        const ag = await Astgate.start({ upstream: fake.url, rules: [], config: file });
        try {
            fake.enqueue({ content: [AGENT] });
            const text = await ask(ag.origin);
            assert.match(text, /model: openai\('gpt-4\.1-mini'\),/);
            assert.match(text, /model: 'openai\/gpt-4\.1-mini' \}/);
            assert.ok(!text.includes('nano'), text);
            assert.ok((await metrics(ag.origin)).includes(info('gpt-4.1-mini')));
            await withTimeout(
                ag.waitLine((l) => l.includes('"rule":"mastra-agent-model"') && l.includes('"params":{"model":"gpt-4.1-mini"}')),
                5000,
                'an audit line naming the parameter',
            );

            // a new value: reloaded like any other change of the rules
            config(dir, 'gpt-4.1');
            ag.child.kill('SIGHUP');
            await withTimeout(ag.waitLine((l) => l.includes('configuration reloaded') && l.includes('generation 2')), 5000, 'the reload line');
            fake.enqueue({ content: [AGENT] });
            assert.match(await ask(ag.origin), /model: openai\('gpt-4\.1'\),/);
            const m = await metrics(ag.origin);
            assert.ok(m.includes(info('gpt-4.1')), m);
            assert.ok(!m.includes(info('gpt-4.1-mini')), m);

            // a bad value: the reload fails with its place and the old value stays
            fs.writeFileSync(file, `rules:\n  - file: ${RULES_ABS}\n    set: {model: "it's"}\n`);
            ag.child.kill('SIGHUP');
            await withTimeout(ag.waitLine((l) => l.includes('reload failed')), 5000, 'the failure line');
            assert.ok(ag.lines.some((l) => l.startsWith(`${file}:3:18: parameter \`model\``)), ag.stderr.slice(-2000));
            fake.enqueue({ content: [AGENT] });
            assert.match(await ask(ag.origin), /model: openai\('gpt-4\.1'\),/);
        } finally {
            await ag.stop();
            await fake.close();
        }
    });

    it('serve --set wins over astgate.yaml; without any, the default (today\'s behaviour) and no "params" in the audit line', async () => {
        const fake = await FakeUpstream.start();
        const file = config(tmpDir(), 'gpt-4.1-mini');
        let ag = await Astgate.start({ upstream: fake.url, rules: [], config: file, extraArgs: ['--set', 'model=o4-mini'] });
        try {
            fake.enqueue({ content: [AGENT] });
            assert.match(await ask(ag.origin), /model: openai\('o4-mini'\),/);
        } finally {
            await ag.stop();
        }
        ag = await Astgate.start({ upstream: fake.url });
        try {
            fake.enqueue({ content: [AGENT] });
            assert.match(await ask(ag.origin), /model: openai\('gpt-4\.1-nano'\),/);
            assert.ok((await metrics(ag.origin)).includes(info('gpt-4.1-nano')));
            await withTimeout(ag.waitLine((l) => l.includes('"rule":"mastra-agent-model"')), 5000, 'an audit line');
            assert.ok(!ag.stderr.includes('"params"'), ag.stderr);
        } finally {
            await ag.stop();
            await fake.close();
        }
    });

    it('an unknown parameter stops the start: file:line:col in astgate.yaml, or the --set that names it', () => {
        const dir = tmpDir();
        const file = path.join(dir, 'astgate.yaml');
        fs.writeFileSync(file, `listen: 127.0.0.1:0\nrules:\n  - {file: ${RULES_ABS}, set: {modle: gpt-4.1-mini}}\n`);
        let r = spawnSync(BIN, ['serve', '--config', file, '--check'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
        assert.equal(r.status, 1, r.stderr);
        const col = `  - {file: ${RULES_ABS}, set: {modle: `.length + 1;
        assert.ok(r.stderr.includes(`${file}:3:${col}: \`set\`: ${RULES_ABS} declares no parameter \`modle\` (its parameters: model)`), r.stderr);
        r = spawnSync(BIN, ['serve', '--check', '--set', 'modle=x'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
        assert.equal(r.status, 1, r.stderr);
        assert.ok(r.stderr.includes('--set modle: no rule file declares a parameter `modle`'), r.stderr);
        r = spawnSync(BIN, ['serve', '--check', '--set', 'model=gpt-4.1-mini'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
        assert.equal(r.status, 0, r.stderr);
    });
});

describe('rule parameters on the command line', { skip: NEEDS_PROXY }, () => {
    const run = (args, input) => spawnSync(BIN, args, { cwd: ROOT, input, encoding: 'utf8', timeout: 20000 });

    it('rewrite --set model=... pins that model and logs it', () => {
        const r = run(['rewrite', '--rules', RULES, '--set', 'model=gpt-4.1-mini'], AGENT);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /model: openai\('gpt-4\.1-mini'\),/);
        assert.match(r.stdout, /model: 'openai\/gpt-4\.1-mini' \}/);
        const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
        assert.ok(lines.length >= 2);
        for (const l of lines) assert.deepEqual(l.params, { model: 'gpt-4.1-mini' });
        // the default: byte for byte what it was before parameters
        const d = run(['rewrite', '--rules', RULES], AGENT);
        assert.equal(d.stdout, r.stdout.replaceAll('gpt-4.1-mini', 'gpt-4.1-nano'));
        assert.ok(!d.stderr.includes('"params"'));
    });

    it('rewrite and eval refuse an unknown parameter or a bad value', () => {
        let r = run(['rewrite', '--rules', RULES, '--set', 'modle=gpt-4.1-mini'], AGENT);
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes('--set modle: no rule file declares a parameter `modle`'), r.stderr);
        r = run(['rewrite', '--rules', RULES, '--set', 'model=a b'], AGENT);
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes("parameter `model` of rules/mastra.yaml: the value does not match the parameter's pattern"), r.stderr);
        r = run(['rewrite', '--rules', RULES, '--set', 'model'], AGENT);
        assert.equal(r.status, 2);
        const data = path.join(tmpDir(), 'data.jsonl');
        fs.writeFileSync(data, JSON.stringify({ completion: AGENT }) + '\n');
        r = run(['eval', '--rules', RULES, '--set', 'modle=x', data]);
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes('--set modle: no rule file declares a parameter `modle`'), r.stderr);
        r = run(['eval', '--rules', RULES, '--set', 'model=gpt-4.1-mini', '--json', data]);
        assert.equal(r.status, 0, r.stderr);
    });

    it('check-rules --set checks a value as the other commands do', () => {
        let r = run(['check-rules', '--set', 'model=gpt-4.1-mini', RULES]);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /^astgate: 1 rule in 1 file ok$/m);
        r = run(['check-rules', '--set=model=a b', RULES]);
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes("parameter `model` of rules/mastra.yaml: the value does not match the parameter's pattern"), r.stderr);
        r = run(['check-rules', '--set', 'modle=x', RULES]);
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes('--set modle: no rule file declares a parameter `modle`'), r.stderr);
        r = run(['check-rules', '--set', 'model', RULES]);
        assert.equal(r.status, 2);
    });
});

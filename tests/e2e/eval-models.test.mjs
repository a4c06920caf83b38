// `astgate eval` across models (issue 16): --live over the fake models of the experiment
// (fake-models.mjs) reproduces its table (raw 100 % / 0 % / n/a, corrected 100 % / 100 % / n/a) in
// the printed table and in --json's models[]; --save keeps each answer's model so that an offline
// run groups the same way; offline, several data files and records' "model" fields are grouped;
// one model keeps the single-model output; --html writes a page with everything escaped; --hint
// both adds the rules' hints to every other request; the live bar on a terminal.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FakeModels, MODELS } from './fake-models.mjs';
import { API_KEY, BIN, NEEDS_PROXY, ROOT, RULES, tmpDir, withTimeout } from './helpers.mjs';
import { runEval, assertClean, parseJson, PROMPTS } from './eval-helpers.mjs';

let fm;
before(async () => {
    if (BIN) fm = await FakeModels.start();
});
after(async () => {
    if (fm) await fm.close();
});

function promptsFile() {
    const file = path.join(tmpDir(), 'prompts.txt');
    fs.writeFileSync(file, PROMPTS.join('\n') + '\n');
    return file;
}

const liveArgs = (prompts, extra = []) => ['--live', '--upstream', fm.url, '--model', MODELS.join(','), '--prompts', prompts, '-n', '2', '--rules', RULES, ...extra];

// The experiment's figures, for rows of models[] (or the whole of one model's counts).
function assertExperiment(models) {
    assert.deepEqual(
        models.map((m) => m.model),
        MODELS,
    );
    const by = Object.fromEntries(models.map((m) => [m.model, m]));
    for (const m of models) {
        assert.equal(m.hint, 'off');
        assert.equal(m.replies, 2 * PROMPTS.length, `${m.model}: replies`);
    }
    const s = by.steady;
    assert.equal(s.with_code, 2 * PROMPTS.length);
    assert.equal(s.raw_accuracy_pct, 100);
    assert.equal(s.corrected_accuracy_pct, 100);
    assert.equal(s.difference_pp, 0);
    assert.equal(s.rewritten, 0);
    const st = by.stubborn;
    assert.equal(st.with_code, 2 * PROMPTS.length);
    assert.equal(st.raw_compliant, 0);
    assert.equal(st.raw_accuracy_pct, 0);
    assert.equal(st.corrected_compliant, st.with_code);
    assert.equal(st.corrected_accuracy_pct, 100);
    assert.equal(st.difference_pp, 100);
    assert.equal(st.rewritten, st.with_code);
    assert.equal(st.unfixable, 0);
    const p = by.prose;
    assert.equal(p.with_code, 0);
    assert.equal(p.no_code, 2 * PROMPTS.length);
    assert.equal(p.raw_accuracy_pct, null);
    assert.equal(p.corrected_accuracy_pct, null);
    assert.equal(p.difference_pp, null);
    for (const m of models) {
        assert.equal(m.rules.length, 1);
        assert.equal(m.rules[0].id, 'mastra-agent-model');
        assert.equal(m.rules[0].raw_accuracy_pct, m.raw_accuracy_pct, `${m.model}: the one rule's raw is the model's`);
        assert.equal(m.rules[0].corrected_accuracy_pct, m.corrected_accuracy_pct);
    }
}

test('live --model A,B,C: the experiment table in --json models[], each prompt to each model', { skip: NEEDS_PROXY }, async () => {
    const start = fm.requests.length;
    const r = await runEval(liveArgs(promptsFile(), ['--json']));
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assertExperiment(j.models);
    // 2 prompts x 2 samples x 3 models, each request for one model, the same prompts to each
    const sent = fm.requests.slice(start);
    assert.equal(sent.length, PROMPTS.length * 2 * MODELS.length);
    for (const m of MODELS) {
        const mine = sent.filter((b) => b.model === m);
        assert.equal(mine.length, PROMPTS.length * 2, m);
        assert.deepEqual([...new Set(mine.map((b) => b.messages[0].content))].sort(), [...PROMPTS].sort());
    }
    // the whole run stays at the top
    assert.equal(j.replies, PROMPTS.length * 2 * MODELS.length);
    assert.equal(j.with_code, PROMPTS.length * 2 * 2);
    assert.equal(j.raw_accuracy_pct, 50);
    assert.equal(j.live.requests, 12);
    assert.equal(j.live.model, MODELS.join(','));
    for (const m of j.models) assert.equal(m.requests, 4);
});

test('live: --model A --model B is --model A,B; the printed table has one row per model', { skip: NEEDS_PROXY }, async () => {
    const args = liveArgs(promptsFile()).flatMap((a) => (a === MODELS.join(',') ? [MODELS[0], '--model', MODELS[1], '--model', MODELS[2]] : [a]));
    const r = await runEval(args);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^astgate eval --live: models steady,stubborn,prose at http:\/\/127\.0\.0\.1:\d+\n/);
    assert.match(r.stdout, /\nprompts 2 x 2 x 3 models = 12 requests: 12 answered, 0 failed\n/);
    const row = (name, ...cells) => new RegExp(`\\n  ${name} +${cells.join(' +')}\\n`);
    assert.match(r.stdout, /\n {2}model +replies +with code +raw +corrected +difference +rewritten +flagged +unfixable +failed\n/);
    assert.match(r.stdout, row('steady', '4', '4', '100\\.0%', '100\\.0%', '\\+0\\.0 pp', '0', '0', '0', '0'));
    assert.match(r.stdout, row('stubborn', '4', '4', '0\\.0%', '100\\.0%', '\\+100\\.0 pp', '4', '0', '0', '0'));
    assert.match(r.stdout, row('prose', '4', '0', 'n/a', 'n/a', 'n/a', '0', '0', '0', '0'));
    assert.match(r.stdout, /\n {2}mastra-agent-model steady +100\.0% +100\.0% +\+0\.0 pp +0 +0 +0\n {21}stubborn +0\.0% +100\.0% +\+100\.0 pp +4 +0 +0\n/);
    assert.match(r.stdout, /\n {2}all models:\n {2}replies +12 +8 with code, 4 without code/);
});

test('live --save, then offline: the saved answers group by their model as the live run did', { skip: NEEDS_PROXY }, async () => {
    const save = path.join(tmpDir(), 'saved.jsonl');
    const live = await runEval(liveArgs(promptsFile(), ['--json', '--save', save]));
    assert.equal(live.code, 0, live.stderr);
    const lines = fs.readFileSync(save, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 12);
    for (const l of lines) assert.ok(MODELS.includes(l.model), `saved line has model ${l.model}`);
    const off = await runEval(['--rules', RULES, '--json', save]);
    assertClean(off);
    assert.equal(off.code, 0, off.stderr);
    const j = parseJson(off);
    assertExperiment(j.models);
    const strip = (m) => {
        const { requests, failed, ...rest } = m;
        return rest;
    };
    assert.deepEqual(j.models.map(strip), parseJson(live).models.map(strip));
});

const agent = (model) => `\`\`\`ts\nimport { Agent } from '@mastra/core/agent';\n\nexport const a = new Agent({\n  name: 'A',\n  instructions: 'Help.',\n  model: ${model},\n});\n\`\`\`\n`;
const ftRecord = (reply, extra = {}) => JSON.stringify({ ...extra, messages: [{ role: 'user', content: 'Write an agent.' }, { role: 'assistant', content: reply }] });
const chatObject = (model, reply) => JSON.stringify({ object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content: reply } }] });

test('offline: several data files and records\' "model" fields are grouped by model', { skip: NEEDS_PROXY }, async () => {
    const dir = tmpDir();
    // a file of fine-tuning records without a model: grouped under the file's name
    const a = path.join(dir, 'a.jsonl');
    fs.writeFileSync(a, [ftRecord(agent("openai('gpt-4.1-nano')")), ftRecord(agent("openai('gpt-4o')"))].join('\n') + '\n');
    // a file whose records name two models (a top-level "model" on a fine-tuning record too)
    const b = path.join(dir, 'b.jsonl');
    fs.writeFileSync(
        b,
        [
            chatObject('m-one', agent("openai('gpt-4o')")),
            ftRecord(agent("openai('gpt-4.1-nano')"), { model: 'm-two' }),
            chatObject('m-one', agent("openai('gpt-4.1-nano')")),
            chatObject('m-two', 'no code here'),
        ].join('\n') + '\n',
    );
    const r = await runEval(['--rules', RULES, '--json', a, b]);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assert.deepEqual(
        j.models.map((m) => [m.model, m.replies, m.with_code, m.raw_compliant, m.corrected_compliant, m.raw_accuracy_pct]),
        [
            [a, 2, 2, 1, 2, 50],
            ['m-one', 2, 2, 1, 2, 50],
            ['m-two', 2, 1, 1, 1, 100],
        ],
    );
    assert.equal(j.replies, 6);
    assert.equal(j.input.file, `${a}, ${b}`);
    const t = await runEval(['--rules', RULES, a, b]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, new RegExp(`\\n  ${a.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} +2 +2 +50\\.0% +100\\.0% +\\+50\\.0 pp +1 +0 +0\\n`));
    assert.match(t.stdout, /\n {2}m-two +2 +1 +100\.0% +100\.0% +\+0\.0 pp +0 +0 +0\n/);
});

test('offline: one model keeps the single-model table; records without a model join the file\'s one model', { skip: NEEDS_PROXY }, async () => {
    const file = path.join(tmpDir(), 'one.jsonl');
    fs.writeFileSync(file, [chatObject('only', agent("openai('gpt-4o')")), ftRecord(agent("openai('gpt-4.1-nano')"))].join('\n') + '\n');
    const t = await runEval(['--rules', RULES, file]);
    assert.equal(t.code, 0, t.stderr);
    assert.doesNotMatch(t.stdout, /\n {2}model +replies/);
    assert.doesNotMatch(t.stdout, /all models:/);
    assert.match(t.stdout, /\n {2}raw accuracy +50\.0% +1 of 2 compliant as written\n/);
    const j = parseJson(await runEval(['--rules', RULES, '--json', file]));
    assert.deepEqual(
        j.models.map((m) => [m.model, m.replies, m.raw_compliant]),
        [['only', 2, 1]],
    );
});

test('percentages are rounded down: 2 of 3 is 66.6 % (66.66 in --json), never more than the truth', { skip: NEEDS_PROXY }, async () => {
    const file = path.join(tmpDir(), 'thirds.jsonl');
    fs.writeFileSync(file, [ftRecord(agent("openai('gpt-4.1-nano')")), ftRecord(agent("openai('gpt-4.1-nano')")), ftRecord(agent("openai('gpt-4o')"))].join('\n') + '\n');
    const t = await runEval(['--rules', RULES, file]);
    assert.match(t.stdout, /\n {2}raw accuracy +66\.6% +2 of 3 compliant as written\n/);
    assert.match(t.stdout, /\n {2}difference +\+33\.4 pp\n/);
    const j = parseJson(await runEval(['--rules', RULES, '--json', file]));
    assert.equal(j.raw_accuracy_pct, 66.66);
    assert.equal(j.models[0].raw_accuracy_pct, 66.66);
    assert.equal(j.difference_pp, 33.34);
});

const HOSTILE_MODEL = '<script>alert("m")</script>';
const HOSTILE_CODE = `// "><img src=x onerror=alert(1)> </script><script>alert(2)</script>\n`;

test('--html: the page holds the table and the examples, every model-written string escaped', { skip: NEEDS_PROXY }, async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'hostile.jsonl');
    fs.writeFileSync(
        file,
        [
            chatObject(HOSTILE_MODEL, agent(`openai('gpt-4o')`).replace('  model:', HOSTILE_CODE + '  model:')),
            chatObject('plain', agent("openai('gpt-4.1-nano')")),
        ].join('\n') + '\n',
    );
    const html = path.join(dir, 'report.html');
    const r = await runEval(['--rules', RULES, '--html', html, file]);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const page = fs.readFileSync(html, 'utf8');
    assert.ok(page.startsWith('<!DOCTYPE html>'));
    assert.doesNotMatch(page, /<script|<img|onerror=alert\(1\)>/i, 'markup from a reply reached the page unescaped');
    assert.doesNotMatch(page, /<[^>]*\s(src|href)\s*=/i, 'the page refers to something outside itself');
    assert.match(page, /&lt;script&gt;alert\(&quot;m&quot;\)&lt;\/script&gt;/, 'the hostile model name, escaped');
    assert.match(page, /&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;/, 'the hostile code, escaped');
    assert.match(page, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/);
    // the rewrite as a unified diff
    assert.match(page, /<span class="del">-  model: openai\(&#39;gpt-4o&#39;\),<\/span><span class="add">\+  model: openai\(&#39;gpt-4\.1-nano&#39;\),<\/span>/);
    assert.match(page, /<table id="models">/);
});

test('--html: a file that cannot be written fails with its name and the cause', { skip: NEEDS_PROXY }, async () => {
    const file = path.join(tmpDir(), 'd.jsonl');
    fs.writeFileSync(file, ftRecord(agent("openai('gpt-4o')")) + '\n');
    const bad = path.join(tmpDir(), 'no-such-dir', 'r.html');
    const r = await runEval(['--rules', RULES, '--html', bad, file]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`astgate: cannot open ${bad}: No such file or directory`), r.stderr);
});

test('live --hint both: each prompt with and without the rules\' hint; with it the stubborn model\'s raw goes to 100 %', { skip: NEEDS_PROXY }, async () => {
    const start = fm.requests.length;
    const r = await runEval(liveArgs(promptsFile(), ['--json', '--hint', 'both']));
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assert.equal(j.live.hint, 'both');
    assert.deepEqual(
        j.models.map((m) => [m.model, m.hint, m.replies, m.raw_accuracy_pct, m.corrected_accuracy_pct]),
        [
            ['steady', 'off', 4, 100, 100],
            ['steady', 'on', 4, 100, 100],
            ['stubborn', 'off', 4, 0, 100],
            ['stubborn', 'on', 4, 100, 100],
            ['prose', 'off', 4, null, null],
            ['prose', 'on', 4, null, null],
        ],
    );
    // the hint is the request's system message (a new first one: the prompts have none), with the
    // required value in its example; the other arm's requests are the prompts as they are
    const sent = fm.requests.slice(start);
    assert.equal(sent.length, 24);
    const hinted = sent.filter((b) => b.messages[0].role === 'system');
    assert.equal(hinted.length, 12);
    for (const b of hinted) {
        assert.match(b.messages[0].content, /model: openai\('gpt-4\.1-nano'\)/);
        assert.equal(b.messages.length, 2);
        assert.ok(PROMPTS.includes(b.messages[1].content));
    }
    for (const b of sent.filter((x) => x.messages[0].role !== 'system')) assert.deepEqual(b.messages.map((m) => m.role), ['user']);
    const t = await runEval(liveArgs(promptsFile(), ['--hint', 'both']));
    assert.match(t.stdout, /, hint both\n/);
    assert.match(t.stdout, /\nprompts 2 x 2 x 3 models x 2 \(without and with the hint\) = 24 requests: 24 answered, 0 failed\n/);
    assert.match(t.stdout, /\n {2}stubborn +4 +4 +0\.0% +100\.0% +\+100\.0 pp +4 +0 +0 +0\n {2}stubborn \+hint +4 +4 +100\.0% +100\.0% +\+0\.0 pp +0 +0 +0 +0\n/);
});

test('live --hint both --save, then offline: the hinted answers keep a row of their own', { skip: NEEDS_PROXY }, async () => {
    const save = path.join(tmpDir(), 'saved-hint.jsonl');
    const live = await runEval(liveArgs(promptsFile(), ['--json', '--hint', 'both', '--save', save]));
    assert.equal(live.code, 0, live.stderr);
    const lines = fs.readFileSync(save, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 24);
    assert.equal(lines.filter((l) => l.hint === 'on').length, 12);
    assert.equal(lines.filter((l) => l.hint === undefined).length, 12);
    const off = await runEval(['--rules', RULES, '--json', save]);
    assertClean(off);
    assert.equal(off.code, 0, off.stderr);
    const rows = (j) => j.models.map((m) => [m.model, m.hint, m.replies, m.raw_accuracy_pct, m.corrected_accuracy_pct]);
    const want = rows(parseJson(live));
    assert.deepEqual(rows(parseJson(off)).sort(), want.sort());
    assert.ok(want.some((r) => r[0] === 'stubborn' && r[1] === 'on' && r[3] === 100));
});

test('--hint: on without a rule that has a hint is an error; a bad value or no --live is a usage error', { skip: NEEDS_PROXY }, async () => {
    const rules = path.join(tmpDir(), 'nohint.yaml');
    fs.writeFileSync(rules, 'id: no-eval\nlanguage: TypeScript\nmessage: do not eval\nrule: {pattern: "eval($X)"}\n');
    const start = fm.requests.length;
    const r = await runEval(['--live', '--upstream', fm.url, '--model', 'steady', '--prompts', promptsFile(), '--rules', rules, '--hint', 'on']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /astgate: --hint on: no loaded rule has a hint \(metadata\.astgate\.hint\)\n/);
    assert.equal(fm.requests.length, start, 'nothing was sent');
    const bad = await runEval(['--live', '--upstream', fm.url, '--model', 'steady', '--prompts', promptsFile(), '--rules', RULES, '--hint', 'sometimes']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--hint takes off, on or both, not 'sometimes'/);
    const off = await runEval(['--rules', RULES, '--hint', 'on', promptsFile()]);
    assert.equal(off.code, 2);
    assert.match(off.stderr, /--hint needs --live/);
});

// Runs `BIN eval ARGS` on a terminal (script(1) from util-linux, in every Debian: a pty for stdout
// and stderr); resolves {code, out} with what the terminal showed.
function runOnTty(args) {
    const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
    const child = spawn('script', ['-qefc', [BIN, 'eval', ...args].map(quote).join(' '), '/dev/null'], {
        cwd: ROOT,
        env: { ...process.env, OPENAI_API_KEY: API_KEY, TERM: 'dumb' },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const done = new Promise((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code) => resolve({ code, out }));
    });
    return withTimeout(done, 60000, 'astgate eval on a terminal').catch((err) => {
        child.kill('SIGKILL');
        throw err;
    });
}

test('live on a terminal: a bar with requests done of all, failures and elapsed time; none off a terminal', { skip: NEEDS_PROXY }, async () => {
    // nosuch is a model the fake does not have: its requests fail (404)
    const args = ['--live', '--upstream', fm.url, '--model', 'steady,nosuch', '--prompts', promptsFile(), '-n', '2', '--rules', RULES];
    const tty = await runOnTty(args);
    assert.equal(tty.code, 0, tty.out);
    const bars = [...tty.out.matchAll(/\r\[([#.]{30})\] +(\d+)% (\d+)\/8 requests, (\d+) failed, (\d+\.\d) s/g)];
    assert.ok(bars.length > 0, `no bar on the terminal:\n${JSON.stringify(tty.out.slice(0, 2000))}`);
    const last = bars[bars.length - 1];
    assert.deepEqual([last[1], last[2], last[3], last[4]], ['#'.repeat(30), '100', '8', '4']);
    for (let i = 1; i < bars.length; i++) {
        assert.ok(Number(bars[i][3]) >= Number(bars[i - 1][3]), 'requests done only grow');
        assert.ok(Number(bars[i][5]) >= Number(bars[i - 1][5]), 'elapsed time only grows');
    }
    assert.match(tty.out, /\r\x1b\[K/, 'the bar is cleared before the table');
    assert.match(tty.out, /\n {2}nosuch +0 +0 +n\/a +n\/a +n\/a +0 +0 +0 +4\r?\n/);
    const plain = await runEval(args);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /\r|requests, \d+ failed/, 'a bar off a terminal');
});

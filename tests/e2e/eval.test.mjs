// `astgate eval`: the live mode against the fake upstream (what it sends: K requests per prompt,
// the Authorization header, the model, temperature and messages; what it counts from the canned
// replies; upstream errors counted without aborting; exit 1 when every request fails), and the
// offline mode on the bench/accuracy data set, whose table must match its README.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeUpstream } from './fake-upstream.mjs';
import { API_KEY, BIN, NEEDS_PROXY, ROOT, RULES, closedPort, tmpDir, writeRules } from './helpers.mjs';
import { assertClean, parseJson, runEval } from './eval-helpers.mjs';

const MODEL = 'gpt-4.1-nano-ft';
const FLAG_EVAL = 'id: no-eval\nlanguage: TypeScript\nmessage: do not eval\nrule: {pattern: "eval($X)"}\n';

const fenced = (code) => `Here you go:\n\n\`\`\`ts\n${code}\`\`\`\n`;
const agent = (model) => `import { Agent } from '@mastra/core/agent';\n\nexport const a = new Agent({\n  name: 'A',\n  instructions: 'Help.',\n  model: ${model},\n});\n`;

let fake;
before(async () => {
    if (BIN) fake = await FakeUpstream.start();
});
after(async () => {
    if (fake) await fake.close();
});

function promptsFile(lines) {
    const file = path.join(tmpDir(), 'prompts.txt');
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
}

test('live: K requests per prompt with the key, the model, the temperature; counts in --json', { skip: NEEDS_PROXY }, async () => {
    const start = fake.requests.length;
    const prompts = promptsFile([
        'Write a Mastra weather agent.',
        '',
        JSON.stringify({
            messages: [
                { role: 'system', content: 'You write Mastra code.' },
                { role: 'user', content: 'A support agent, please.' },
                { role: 'assistant', content: 'the fine-tuning answer: dropped from the prompt' },
            ],
        }),
        'Explain Mastra workflows in one sentence.',
    ]);
    // 3 prompts x 2 = 6 requests; the replies are handed out in arrival order, the counts do not
    // depend on which prompt gets which
    const replies = [
        fenced(agent(`openai('gpt-4o')`)), // rewritten
        fenced(agent(`'openai/gpt-4o'`)), // rewritten
        agent(`{ provider: 'OPEN_AI', name: 'gpt-4' }`), // bare code, rewritten
        fenced(agent(`openai('gpt-4.1-nano')`)), // compliant
        'Workflows chain steps in a fixed order.', // no code
        fenced(agent(`openai('gpt-4o')`) + 'eval(input);\n'), // rewritten, and flagged: unfixable
    ];
    for (const content of replies) fake.enqueue({ content: [content] });
    const save = path.join(tmpDir(), 'answers.jsonl');
    const flag = writeRules(FLAG_EVAL);
    const r = await runEval([
        '--live', '--upstream', fake.url, '--model', MODEL, '--prompts', prompts, '-n', '2',
        '--temperature', '0.3', '--parallel', '3', '--rules', RULES, '--rules', flag, '--json', '--save', save,
    ]);
    assertClean(r);
    assert.equal(r.code, 0, `exit status; stderr:\n${r.stderr}`);
    const j = parseJson(r);
    assert.equal(j.mode, 'live');
    assert.equal(j.replies, 6);
    assert.equal(j.with_code, 5);
    assert.equal(j.no_code, 1);
    assert.equal(j.raw_compliant, 1);
    assert.equal(j.rewritten, 4);
    assert.equal(j.corrected_compliant, 4);
    assert.equal(j.unfixable, 1);
    assert.equal(j.raw_accuracy_pct, 20);
    assert.equal(j.corrected_accuracy_pct, 80);
    assert.equal(j.difference_pp, 60);
    const byId = Object.fromEntries(j.rules.map((x) => [x.id, x]));
    assert.deepEqual(
        [byId['mastra-agent-model'].raw_compliant, byId['mastra-agent-model'].corrected_compliant, byId['mastra-agent-model'].rewritten],
        [1, 5, 4],
    );
    assert.deepEqual([byId['no-eval'].raw_compliant, byId['no-eval'].unfixable], [4, 1]);
    assert.equal(j.input.lines, 4);
    assert.equal(j.input.used, 3);
    assert.equal(j.input.blank, 1);
    assert.deepEqual(
        { ...j.live, errors: j.live.errors.length },
        { upstream: fake.url, model: MODEL, hint: 'off', prompts: 3, samples: 2, temperature: 0.3, requests: 6, answered: 6, failed: 0, errors: 0 },
    );

    // what the fake received
    const got = fake.requests.slice(start);
    assert.equal(got.length, 6, 'K x prompts requests');
    const perPrompt = new Map();
    for (const q of got) {
        assert.equal(q.method, 'POST');
        assert.equal(q.path, '/v1/chat/completions');
        assert.equal(q.headers.authorization, `Bearer ${API_KEY}`);
        assert.match(String(q.headers['content-type']), /^application\/json/);
        assert.equal(q.json.model, MODEL);
        assert.equal(q.json.temperature, 0.3);
        assert.ok(!q.json.stream, 'not streamed');
        const last = q.json.messages[q.json.messages.length - 1];
        assert.equal(last.role, 'user');
        perPrompt.set(last.content, (perPrompt.get(last.content) ?? 0) + 1);
        if (last.content === 'A support agent, please.') {
            assert.deepEqual(q.json.messages.map((m) => m.role), ['system', 'user'], 'the assistant answer is dropped');
        } else {
            assert.equal(q.json.messages.length, 1);
        }
    }
    assert.deepEqual(
        [...perPrompt.entries()].sort(),
        [
            ['A support agent, please.', 2],
            ['Explain Mastra workflows in one sentence.', 2],
            ['Write a Mastra weather agent.', 2],
        ],
    );

    // --save keeps every answer; evaluated offline it gives the same counts
    const saved = fs.readFileSync(save, 'utf8').trim().split('\n');
    assert.equal(saved.length, 6);
    const off = await runEval(['--rules', RULES, '--rules', flag, '--json', save]);
    assertClean(off);
    assert.equal(off.code, 0, off.stderr);
    const o = parseJson(off);
    for (const k of ['replies', 'with_code', 'no_code', 'raw_compliant', 'corrected_compliant', 'rewritten', 'unfixable']) {
        assert.equal(o[k], j[k], `offline ${k} of the saved answers`);
    }
});

test('live: upstream errors are counted and reported, the run goes on', { skip: NEEDS_PROXY }, async () => {
    const start = fake.requests.length;
    const prompts = promptsFile(['one', 'two']);
    fake.enqueue({ content: [fenced(agent(`openai('gpt-4o')`))] });
    fake.enqueue({ status: 429, error: { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } } });
    fake.enqueue({ content: [fenced(agent(`'openai/gpt-4.1-nano'`))] });
    fake.enqueue({ status: 500, rawBody: 'upstream exploded' });
    const r = await runEval(['--live', '--upstream', fake.url + '/v1/', '--model', MODEL, '--prompts', prompts, '-n', '2', '--parallel', '1', '--rules', RULES, '--json']);
    assertClean(r);
    assert.equal(r.code, 0, `exit status; stderr:\n${r.stderr}`);
    const j = parseJson(r);
    assert.equal(fake.requests.length - start, 4);
    assert.ok(fake.requests.slice(start).every((q) => q.path === '/v1/chat/completions'), 'a base URL ending in /v1/ is not doubled');
    assert.equal(j.live.requests, 4);
    assert.equal(j.live.answered, 2);
    assert.equal(j.live.failed, 2);
    assert.deepEqual(
        j.live.errors.map((e) => [e.status, e.message, e.count]).sort(),
        [
            [429, 'Rate limit reached for requests', 1],
            [500, 'upstream exploded', 1],
        ],
    );
    assert.equal(j.replies, 2);
    assert.equal(j.raw_compliant, 1);
    assert.equal(j.corrected_compliant, 2);
    assert.equal(temperatureSent(fake.requests.slice(start)), false, 'no temperature unless given');
});

function temperatureSent(reqs) {
    return reqs.some((q) => 'temperature' in q.json);
}

test('live: every request failing exits 1 with the errors in the table', { skip: NEEDS_PROXY }, async () => {
    const prompts = promptsFile(['only prompt']);
    fake.enqueue({ status: 401 });
    fake.enqueue({ status: 401 });
    // an upstream that echoes the whole key: the report must not repeat it
    fake.enqueue({ status: 401, error: { error: { message: `Incorrect API key provided: ${API_KEY}.`, type: 'invalid_request_error' } } });
    const r = await runEval(['--live', '--upstream', fake.url, '--model', MODEL, '--prompts', prompts, '-n', '3', '--parallel', '1', '--rules', RULES]);
    assertClean(r);
    assert.equal(r.code, 1, `exit status; stderr:\n${r.stderr}`);
    assert.match(r.stderr, /every request failed/);
    assert.match(r.stdout, /prompts 1 x 3 = 3 requests: 0 answered, 3 failed/);
    assert.match(r.stdout, /upstream errors 3:\n {4}2 x HTTP 401: Incorrect API key provided: sk-test-\*\*\*\*-123\./);
    assert.match(r.stdout, /\n {4}1 x HTTP 401: Incorrect API key provided: \*\*\*\.\n/);
});

test('live: no upstream at all is an error per request (status 0), exit 1', { skip: NEEDS_PROXY }, async () => {
    const port = await closedPort();
    const r = await runEval(['--live', '--upstream', `http://127.0.0.1:${port}`, '--model', MODEL, '--prompts', promptsFile(['p']), '--rules', RULES, '--json']);
    assertClean(r);
    assert.equal(r.code, 1);
    const j = parseJson(r);
    assert.equal(j.live.failed, 1);
    assert.equal(j.live.errors[0].status, 0);
    assert.equal(j.live.errors[0].count, 1);
});

test('live: a request without an answer within --timeout is an error, the others count', { skip: NEEDS_PROXY }, async () => {
    fake.enqueue({ hang: true });
    fake.enqueue({ content: [fenced(agent(`openai('gpt-4o')`))] });
    const r = await runEval(['--live', '--upstream', fake.url, '--model', MODEL, '--prompts', promptsFile(['p']), '-n', '2', '--parallel', '1', '--timeout', '0.5', '--rules', RULES, '--json']);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assert.deepEqual(j.live.errors, [{ status: 0, message: 'no complete answer within 0.5 s (--timeout)', count: 1 }]);
    assert.equal(j.live.answered, 1);
    assert.equal(j.rewritten, 1);
});

test('offline: bench/accuracy reproduces the table in its README', { skip: NEEDS_PROXY }, async () => {
    const readme = fs.readFileSync(path.join(ROOT, 'bench', 'accuracy', 'README.md'), 'utf8');
    const cmd = 'build/astgate eval --rules rules/mastra.yaml bench/accuracy/finetuned.jsonl';
    const at = readme.indexOf('$ ' + cmd + '\n');
    assert.ok(at >= 0, `the README shows ${cmd}`);
    const end = readme.indexOf('```', at);
    const want = readme.slice(at + cmd.length + 3, end);
    const r = await runEval(['--rules', 'rules/mastra.yaml', 'bench/accuracy/finetuned.jsonl']);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, want);
    assert.equal(r.stderr, '', 'no bad line, no progress bar without a terminal');
});

// ---- tool calls ----

const write = (name, file, code, key = 'content', fileKey = 'file_path') =>
    ({ id: `call_${name}`, type: 'function', function: { name, arguments: JSON.stringify({ [fileKey]: file, [key]: code }) } });

function dataFile(records) {
    const file = path.join(tmpDir(), 'calls.jsonl');
    fs.writeFileSync(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    return file;
}

test('offline: tool calls in fine-tuning, Chat and Responses records are judged like replies', { skip: NEEDS_PROXY }, async () => {
    const file = dataFile([
        // fine-tuning: a Write that needs the rewrite, then the assistant's prose
        {
            messages: [
                { role: 'user', content: 'Write a Mastra agent in src/agent.ts' },
                { role: 'assistant', content: null, tool_calls: [write('Write', 'src/agent.ts', agent(`openai('gpt-4o')`))] },
                { role: 'tool', tool_call_id: 'call_Write', content: 'ok' },
                { role: 'assistant', content: 'Done.' },
            ],
        },
        // Chat: a compliant write_to_file and a call without code
        {
            object: 'chat.completion',
            choices: [{
                index: 0,
                message: {
                    role: 'assistant',
                    content: null,
                    tool_calls: [
                        write('write_to_file', 'src/a.ts', agent(`openai('gpt-4.1-nano')`), 'content', 'path'),
                        { id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
                    ],
                },
                finish_reason: 'tool_calls',
            }],
        },
        // Responses: Codex's apply_patch as a custom tool call, adding a file
        {
            object: 'response',
            output: [{
                type: 'custom_tool_call',
                call_id: 'call_p',
                name: 'apply_patch',
                input: '*** Begin Patch\n*** Add File: src/b.ts\n' +
                    agent(`anthropic('claude-3-5-sonnet')`).replace(/^/gm, '+').replace(/\+$/, '') + '*** End Patch\n',
            }],
        },
    ]);
    const r = await runEval(['--rules', RULES, '--json', file]);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assert.equal(j.input.used, 3);
    assert.deepEqual(j.bad_lines, []);
    // replies: Write, "Done.", write_to_file, apply_patch
    assert.deepEqual([j.replies, j.tool_calls, j.with_code, j.no_code], [4, 3, 3, 1]);
    assert.deepEqual([j.raw_compliant, j.corrected_compliant, j.rewritten, j.unfixable], [1, 3, 2, 0]);
    const table = await runEval(['--rules', RULES, file]);
    assert.match(table.stdout, /\n {2}tool calls {19}3 {3}of the replies: calls to tools that carry code\n/);
});

test('offline: --config takes the tools (and, without --rules, the rules) of an astgate.yaml', { skip: NEEDS_PROXY }, async () => {
    const dir = tmpDir();
    const config = path.join(dir, 'astgate.yaml');
    fs.writeFileSync(config, [
        `rules: [${path.join(ROOT, RULES)}]`,
        'tools:',
        '  my_write: {file: target, whole: [body]}',
        '  Write: off',
        '',
    ].join('\n'));
    const file = dataFile([{
        choices: [{
            message: {
                role: 'assistant',
                content: null,
                tool_calls: [
                    write('Write', 'src/a.ts', agent(`openai('gpt-4o')`)),
                    write('my_write', 'src/b.ts', agent(`openai('gpt-4o')`), 'body', 'target'),
                ],
            },
        }],
    }]);
    const withConfig = await runEval(['--config', config, '--json', file]);
    assertClean(withConfig);
    assert.equal(withConfig.code, 0, withConfig.stderr);
    const c = parseJson(withConfig);
    assert.deepEqual(c.rule_files, [path.join(ROOT, RULES)], 'the rules of the config');
    const presets = await runEval(['--rules', RULES, '--json', file]);
    assertClean(presets);
    assert.equal(presets.code, 0, presets.stderr);
    const p = parseJson(presets);
    // the config: my_write is judged, Write is off; the presets: the other way round
    assert.deepEqual([c.replies, c.tool_calls, c.rewritten, c.corrected_compliant], [1, 1, 1, 1]);
    assert.deepEqual([p.replies, p.tool_calls, p.rewritten, p.corrected_compliant], [1, 1, 1, 1]);

    // a bad tools: entry stops eval with file:line:col, like serve
    fs.writeFileSync(config, 'tools:\n  my_write: {file: target, wohle: [body]}\n');
    const bad = await runEval(['--config', config, '--rules', RULES, file]);
    assertClean(bad);
    assert.equal(bad.code, 1);
    assert.ok(bad.stderr.includes(`${config}:2:28: unknown key \`wohle\` in tools.my_write`), bad.stderr);
    const none = await runEval([file]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--rules FILE \(or --config FILE\) is required/);
});

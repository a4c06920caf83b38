// Shared by the eval*.test.mjs files: run `astgate eval`, check its output is clean, parse --json.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { API_KEY, BIN, ROOT, withTimeout } from './helpers.mjs';

// The experiment's prompts: asked for a Mastra agent, in words only (no example of the model).
export const PROMPTS = ['Write a Mastra weather agent.', 'Write a Mastra agent that answers questions about the weather.'];

// Runs `BIN eval ARGS` from the repo root; resolves {code, signal, stdout, stderr}.
export function runEval(args, { env = {}, ms = 60000 } = {}) {
    const child = spawn(BIN, ['eval', ...args], {
        cwd: ROOT,
        env: { ...process.env, OPENAI_API_KEY: API_KEY, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const done = new Promise((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
    return withTimeout(done, ms, `astgate eval ${args.join(' ')}`).catch((err) => {
        child.kill('SIGKILL');
        throw err;
    });
}

// No sanitizer report, no API key in the output.
export function assertClean(r) {
    const report = r.stderr.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/);
    assert.ok(report < 0, `sanitizer report:\n${r.stderr.slice(report, report + 4000)}`);
    for (const s of [API_KEY, `Bearer ${API_KEY}`]) {
        assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), 'astgate eval printed the API key');
    }
}

export function parseJson(r) {
    try {
        return JSON.parse(r.stdout);
    } catch (err) {
        assert.fail(`--json output is not JSON (${err.message}); exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    }
}

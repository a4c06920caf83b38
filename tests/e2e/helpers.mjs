// Shared helpers for the e2e tests: where things are, the astgate process, the test target (astgate
// in front of a fake upstream, or the fake alone), raw HTTP, SSE parsing and the byte-level checks.
//
// Mode: with ASTGATE_BIN set, every test goes through `ASTGATE_BIN serve` and expects the rewrite
// (expected.md). Without it the tests that make sense run straight against the fake upstream and
// expect the reply unchanged (input.md): that checks the fake and the tests themselves; the tests
// that only make sense through the proxy are skipped.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { FakeUpstream } from './fake-upstream.mjs';

export const API_KEY = 'sk-test-secret-123';
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(process.env.ASTGATE_ROOT || path.join(HERE, '..', '..'));
export const BIN = process.env.ASTGATE_BIN ? path.resolve(process.env.ASTGATE_BIN) : null;
export const PROXIED = BIN !== null;
export const RULES = 'rules/mastra.yaml';
export const MASTRA_RULE_ID = 'mastra-agent-model';
// {skip: NEEDS_PROXY} on tests that only make sense through astgate
export const NEEDS_PROXY = PROXIED ? false : 'needs astgate: set ASTGATE_BIN (tests/e2e/run.sh BINARY)';

/* ------------------------------------------------------------------------------------------ */
/* small utilities                                                                              */

// Rejects when p has not settled after ms: a guard against hangs, never a way to wait.
export function withTimeout(p, ms, what) {
    let timer;
    const guard = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

// Prefixes an error's message (and its stack, which is what the test runner prints).
export function annotate(err, prefix) {
    if (err && typeof err === 'object' && typeof err.message === 'string') {
        const old = err.message;
        err.message = `${prefix}: ${old}`;
        if (typeof err.stack === 'string') err.stack = err.stack.replace(old, err.message);
    }
    return err;
}

// A promise with its resolve function, for gates a test opens when an event happened.
export function gate() {
    let open;
    const p = new Promise((resolve) => (open = resolve));
    return { promise: p, open };
}

const tmpDirs = [];
export function tmpDir() {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'astgate-e2e-'));
    tmpDirs.push(d);
    return d;
}
process.on('exit', () => {
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

// A port nobody listens on (bound, then closed).
export async function closedPort() {
    const s = net.createServer();
    await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
    const port = s.address().port;
    await new Promise((resolve) => s.close(resolve));
    return port;
}

function yamlScalar(v) {
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    return JSON.stringify(String(v)); // a double-quoted YAML scalar
}

export function toYaml(obj, indent = '') {
    let out = '';
    for (const [k, v] of Object.entries(obj)) {
        if (Array.isArray(v)) {
            out += `${indent}${k}:\n`;
            for (const x of v) out += `${indent}  - ${yamlScalar(x)}\n`;
        } else if (v !== null && typeof v === 'object') {
            out += `${indent}${k}:\n` + toYaml(v, indent + '  ');
        } else {
            out += `${indent}${k}: ${yamlScalar(v)}\n`;
        }
    }
    return out;
}

// Writes an astgate.yaml into a fresh temp dir and returns its path.
export function writeConfig(obj) {
    const file = path.join(tmpDir(), 'astgate.yaml');
    fs.writeFileSync(file, toYaml(obj));
    return file;
}

// Writes a rules file (text) into a fresh temp dir and returns its absolute path.
export function writeRules(text) {
    const file = path.join(tmpDir(), 'rules.yaml');
    fs.writeFileSync(file, text);
    return file;
}

/* ------------------------------------------------------------------------------------------ */
/* the golden corpus                                                                            */

// Every tests/golden case that runs with rules/mastra.yaml: {name, dir, input, expected}.
// expected is input when the case has no expected.md (the reply must come out unchanged).
export function loadCorpus() {
    const base = path.join(ROOT, 'tests', 'golden');
    const out = [];
    for (const name of fs.readdirSync(base).sort()) {
        const dir = path.join(base, name);
        if (!fs.statSync(dir).isDirectory()) continue;
        if (!fs.existsSync(path.join(dir, 'input.md'))) continue;
        if (fs.existsSync(path.join(dir, 'rules.yaml'))) continue; // the proxy runs one rule set
        const input = fs.readFileSync(path.join(dir, 'input.md'), 'utf8');
        const exp = path.join(dir, 'expected.md');
        const expected = fs.existsSync(exp) ? fs.readFileSync(exp, 'utf8') : input;
        out.push({ name, dir, input, expected });
    }
    if (out.length === 0) throw new Error(`no golden cases under ${base}`);
    return out;
}

// What the client must get for a case in this mode.
export function want(c) {
    return PROXIED ? c.expected : c.input;
}

const cliCache = new Map();
// The log lines `astgate rewrite` writes for a case (rewrites, dropped edits, flags), parsed.
export function cliLog(c) {
    if (!PROXIED) return [];
    if (cliCache.has(c.name)) return cliCache.get(c.name);
    const log = path.join(tmpDir(), 'cli.jsonl');
    execFileSync(BIN, ['rewrite', '--rules', RULES, '--log', log, path.join(c.dir, 'input.md')], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
    });
    const lines = fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l));
    cliCache.set(c.name, lines);
    return lines;
}

// What `astgate rewrite` makes of a reply (the reply itself without the proxy).
export function cliRewriteText(text, rules = RULES) {
    if (!PROXIED) return text;
    return execFileSync(BIN, ['rewrite', '--rules', rules], { cwd: ROOT, input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
}

export function appliedRewrites(lines) {
    return lines.filter((l) => l.action === 'rewrite' && l.applied === true);
}

/* ------------------------------------------------------------------------------------------ */
/* the astgate process                                                                          */

// Every astgate still running when this test process ends (normally or by a signal) is killed.
const live = new Set();
function killAll() {
    for (const p of live) {
        try {
            p.child.kill('SIGKILL');
        } catch {
            // already gone
        }
    }
}
process.on('exit', killAll);
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.once(sig, () => {
        killAll();
        process.exit(code);
    });
}

export class Astgate {
    // Starts `BIN serve` from the repo root and resolves once it printed its listening line.
    static async start({ upstream, rules = RULES, config = null, extraArgs = [], readyMs = 20000, wrap = null }) {
        const args = ['serve', '--listen', '127.0.0.1:0', '--upstream', upstream];
        for (const r of Array.isArray(rules) ? rules : [rules]) args.push('--rules', r);
        if (config) args.push('--config', config);
        args.push(...extraArgs);
        const a = new Astgate(args, wrap);
        try {
            await withTimeout(a.ready, readyMs, `astgate to print its listening line (${a.cmd})`);
        } catch (err) {
            await a.stop().catch(() => {});
            err.message += `\nstderr:\n${a.stderr}`;
            throw err;
        }
        return a;
    }

    // wrap: a command that runs astgate, e.g. ['prlimit', '--nofile=40'] (its pid is astgate's
    // when the wrapper execs it)
    constructor(args, wrap = null) {
        this.args = args;
        this.cmd = [BIN, ...args].join(' ');
        this.stderr = '';
        this.stdout = '';
        this.lines = []; // stderr lines, in order
        this.exitInfo = null;
        this.waiters = new Set();
        this.child = wrap
            ? spawn(wrap[0], [...wrap.slice(1), BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
            : spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        live.add(this);
        this.exited = new Promise((resolve) => {
            this.child.once('exit', (code, signal) => {
                this.exitInfo = { code, signal };
                live.delete(this);
                resolve(this.exitInfo);
                this.poke();
            });
        });
        this.child.once('error', (err) => {
            this.spawnError = err;
            this.poke();
        });
        let partial = '';
        this.child.stderr.setEncoding('utf8');
        this.child.stderr.on('data', (d) => {
            this.stderr += d;
            partial += d;
            const parts = partial.split('\n');
            partial = parts.pop();
            for (const l of parts) this.lines.push(l);
            this.poke();
        });
        this.child.stdout.setEncoding('utf8');
        this.child.stdout.on('data', (d) => (this.stdout += d));
        // "astgate: listening on http://127.0.0.1:PORT", possibly followed by " (details)"
        const READY = /^astgate: listening on (http:\/\/127\.0\.0\.1:\d+)(?:\s|$)/;
        this.ready = this.waitLine((l) => READY.test(l)).then((l) => {
            this.origin = l.match(READY)[1];
            this.port = Number(this.origin.split(':')[2]);
            return this;
        });
    }

    poke() {
        for (const w of [...this.waiters]) w();
    }

    // Resolves with the first stderr line (from the start) that matches pred; rejects when the
    // process ends first. No timeout of its own: wrap it in withTimeout().
    waitLine(pred) {
        return new Promise((resolve, reject) => {
            let seen = 0;
            const check = () => {
                for (; seen < this.lines.length; seen++) {
                    if (pred(this.lines[seen])) {
                        this.waiters.delete(check);
                        resolve(this.lines[seen]);
                        return;
                    }
                }
                if (this.exitInfo || this.spawnError) {
                    this.waiters.delete(check);
                    reject(new Error(`astgate ended (${JSON.stringify(this.exitInfo ?? String(this.spawnError))}) before the expected line`));
                }
            };
            this.waiters.add(check);
            check();
        });
    }

    // Throws, with the end of its stderr, when the process is no longer running: tests after a
    // crash then say so instead of failing on refused connections.
    assertAlive() {
        if (this.exitInfo || this.spawnError) {
            throw new Error(`astgate is not running (${JSON.stringify(this.exitInfo ?? String(this.spawnError))}); its stderr ends with:\n${this.stderr.slice(-4000)}`);
        }
    }

    // stderr lines that are JSON objects
    jsonLines() {
        const out = [];
        for (const l of this.lines) {
            const t = l.trim();
            if (!t.startsWith('{')) continue;
            try {
                out.push(JSON.parse(t));
            } catch {
                // not JSON
            }
        }
        return out;
    }

    // Rewrite log lines of one request (lines with request_id and a rule).
    rewriteLines(requestId) {
        return this.jsonLines().filter((j) => j.request_id === requestId && 'rule' in j);
    }

    // Resolves once count rewrite lines of requestId are there (guarded).
    async waitRewriteLines(requestId, count, ms = 5000) {
        if (count > 0) {
            let n = 0;
            await withTimeout(
                this.waitLine((l) => {
                    if (!l.includes(requestId)) return false;
                    try {
                        const j = JSON.parse(l);
                        if (j.request_id === requestId && 'rule' in j) n++;
                    } catch {
                        return false;
                    }
                    return n >= count;
                }),
                ms,
                `${count} rewrite log lines for request ${requestId}`,
            );
        }
        return this.rewriteLines(requestId);
    }

    // Resolves with the access log line of requestId (guarded).
    async waitAccessLine(requestId, ms = 5000) {
        const l = await withTimeout(
            this.waitLine((x) => {
                if (!x.includes(requestId)) return false;
                try {
                    const j = JSON.parse(x);
                    return j.request_id === requestId && 'status' in j && 'method' in j;
                } catch {
                    return false;
                }
            }),
            ms,
            `the access log line of request ${requestId}`,
        );
        return JSON.parse(l);
    }

    // SIGTERM, then wait for the exit. Throws (after a SIGKILL) when it did not exit in time, and
    // when it had already ended on its own (a crash, a sanitizer report) with the end of its stderr.
    async stop(ms = 10000) {
        if (this.exitInfo) {
            if (this.stopping) return this.exitInfo;
            throw new Error(`astgate ended on its own during the tests (${JSON.stringify(this.exitInfo)}); its stderr ends with:\n${this.stderr.slice(-4000)}`);
        }
        if (this.spawnError) return null;
        this.stopping = true;
        this.child.kill('SIGTERM');
        let info;
        try {
            info = await withTimeout(this.exited, ms, 'astgate to exit after SIGTERM');
        } catch (err) {
            this.child.kill('SIGKILL');
            await this.exited;
            throw err;
        }
        // a clean stop: status 0 (or the default action of SIGTERM), no sanitizer report
        const report = this.stderr.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/);
        if (report >= 0) throw new Error(`astgate printed a sanitizer report:\n${this.stderr.slice(report, report + 4000)}`);
        if (!(info.code === 0 || (info.code === null && info.signal === 'SIGTERM'))) {
            throw new Error(`astgate exited with ${JSON.stringify(info)} after SIGTERM; its stderr ends with:\n${this.stderr.slice(-4000)}`);
        }
        return info;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the test target                                                                              */

export function makeClient(baseURL, opts = {}) {
    return new OpenAI({ baseURL, apiKey: API_KEY, maxRetries: 0, timeout: 30000, ...opts });
}

// A fake upstream and, when proxy is true, astgate in front of it. opts: rules, config (a path, or
// a function (fake) => path, to write a config that names the fake), upstream (override, e.g. a
// closed port).
export async function openTarget({ proxy = PROXIED, rules = RULES, config = null, upstream = null } = {}) {
    const fake = await FakeUpstream.start();
    let proc = null;
    try {
        const cfg = typeof config === 'function' ? config(fake) : config;
        if (proxy) proc = await Astgate.start({ upstream: upstream ?? fake.url, rules, config: cfg });
    } catch (err) {
        await fake.close();
        throw err;
    }
    const origin = proc ? proc.origin : fake.url;
    return {
        fake,
        proc,
        origin,
        baseURL: origin + '/v1',
        proxied: proc !== null,
        client: (opts) => makeClient(origin + '/v1', opts),
        async close() {
            try {
                if (proc) await proc.stop();
            } finally {
                await fake.close();
            }
        },
    };
}

// Asserts that nothing astgate printed contains the API key (or its Bearer form).
export function assertNoSecrets(proc, secrets = [API_KEY]) {
    if (!proc) return;
    const all = proc.stderr + proc.stdout;
    for (const s of secrets) {
        const at = all.indexOf(s);
        assert.ok(at < 0, `astgate's output contains the secret ${JSON.stringify(s)}: ...${all.slice(Math.max(0, at - 200), at + 50)}`);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* raw HTTP                                                                                     */

export const REQUEST_TIMEOUT_MS = 30000;

// One request on a fresh connection. body: string | Buffer | Buffer[] (the array is sent as
// separate chunks with Transfer-Encoding: chunked). Resolves {status, headers, rawHeaders, body};
// rejects when the exchange takes longer than REQUEST_TIMEOUT_MS.
export function rawRequest(origin, { method = 'POST', path: p = '/v1/chat/completions', headers = {}, body = null } = {}) {
    const u = new URL(origin);
    return new Promise((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, method, path: p, headers, agent: false, timeout: REQUEST_TIMEOUT_MS }, (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }));
            res.on('error', reject);
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${p} within ${REQUEST_TIMEOUT_MS} ms`)));
        if (Array.isArray(body)) {
            for (const b of body) req.write(b);
            req.end();
        } else {
            req.end(body ?? undefined);
        }
    });
}

export function jsonHeaders(extra = {}) {
    return { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, ...extra };
}

export function chatBody({ n = 1, stream = false, includeUsage = null, model = 'gpt-4o-mini', extra = {} } = {}) {
    const b = { model, messages: [{ role: 'user', content: 'Write me a Mastra agent, please.' }] };
    if (n !== 1) b.n = n;
    if (stream) b.stream = true;
    if (includeUsage !== null) b.stream_options = { include_usage: includeUsage };
    return JSON.stringify({ ...b, ...extra });
}

/* ------------------------------------------------------------------------------------------ */
/* SSE                                                                                          */

// Parses a complete SSE body (per the HTML spec: \r\n, \r or \n line ends; ':' comments; one
// optional space after the colon). Returns {events: [{event, data, id}], comments, trailing}.
export function parseSSE(text) {
    const events = [];
    let comments = 0;
    let data = null;
    let event = null;
    let id = null;
    const lines = text.split(/\r\n|\r|\n/);
    const trailing = lines.pop(); // text after the last line end (an unfinished line)
    for (const line of lines) {
        if (line === '') {
            if (data !== null) events.push({ event, data: data.join('\n'), id });
            data = null;
            event = null;
            continue;
        }
        if (line.startsWith(':')) {
            comments++;
            continue;
        }
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let value = c < 0 ? '' : line.slice(c + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') (data ??= []).push(value);
        else if (field === 'event') event = value;
        else if (field === 'id') id = value;
    }
    return { events, comments, trailing, unterminated: data !== null };
}

// Incremental SSE over a fetch Response: yields events as their blank line arrives.
export async function* iterSSE(response) {
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of response.body) {
        buf += decoder.decode(chunk, { stream: true });
        for (;;) {
            const m = buf.match(/\r\n\r\n|\n\n|\r\r/);
            if (!m) break;
            const block = buf.slice(0, m.index + m[0].length);
            buf = buf.slice(m.index + m[0].length);
            for (const ev of parseSSE(block).events) yield ev;
        }
    }
    buf += decoder.decode();
    for (const ev of parseSSE(buf + '\n\n').events) yield ev;
}

/* ------------------------------------------------------------------------------------------ */
/* byte-level checks                                                                            */

// End (exclusive) of the JSON string literal that starts at buf[pos] ('"').
export function scanJsonString(buf, pos) {
    assert.equal(buf[pos], 0x22, `expected a JSON string at byte ${pos}, got ${JSON.stringify(buf.subarray(pos, pos + 20).toString())}`);
    for (let i = pos + 1; i < buf.length; i++) {
        if (buf[i] === 0x5c) i++;
        else if (buf[i] === 0x22) return i + 1;
    }
    throw new Error(`unterminated JSON string at byte ${pos}`);
}

function firstDiff(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return n;
}

function bytesAround(buf, at) {
    return JSON.stringify(buf.subarray(Math.max(0, at - 40), at + 40).toString('utf8'));
}

// The proxy's body must be the upstream body with only the content string literals replaced:
// every byte outside them identical, each new literal decoding to the wanted text. literals are
// the upstream's {start, end} byte spans (null = no content string). Returns the byte arithmetic
// {upstream, proxy, removed, added} with proxy === upstream - removed + added.
export function assertOnlyContentChanged(up, literals, px, wantTexts) {
    let pu = 0;
    let pp = 0;
    let removed = 0;
    let added = 0;
    literals.forEach((lit, k) => {
        if (lit === null) return;
        const seg = up.subarray(pu, lit.start);
        const got = px.subarray(pp, pp + seg.length);
        if (!got.equals(seg)) {
            const at = firstDiff(seg, got);
            assert.fail(
                `bytes before content ${k} differ at proxy byte ${pp + at}: upstream ${bytesAround(up, pu + at)} vs proxy ${bytesAround(px, pp + at)}`,
            );
        }
        pp += seg.length;
        const end = scanJsonString(px, pp);
        const text = JSON.parse(px.subarray(pp, end).toString('utf8'));
        assert.equal(text, wantTexts[k], `content of choice ${k}`);
        removed += lit.end - lit.start;
        added += end - pp;
        pp = end;
        pu = lit.end;
    });
    const tail = up.subarray(pu);
    const gotTail = px.subarray(pp);
    if (!gotTail.equals(tail)) {
        const at = firstDiff(tail, gotTail);
        assert.fail(`bytes after the last content differ at proxy byte ${pp + at}: upstream ${bytesAround(up, pu + at)} vs proxy ${bytesAround(px, pp + at)}`);
    }
    assert.equal(px.length, up.length - removed + added, 'byte length arithmetic');
    return { upstream: up.length, proxy: px.length, removed, added };
}

// x-astgate-rewrites / x-astgate-rules against the applied rewrites astgate rewrite logs.
// headers: a plain object (node http) or a fetch Headers.
export function assertRewriteHeaders(headers, applied) {
    const get = (k) => (typeof headers.get === 'function' ? headers.get(k) : headers[k] ?? null);
    const n = get('x-astgate-rewrites');
    const rules = get('x-astgate-rules');
    if (applied.length === 0) {
        assert.ok(n === null || n === '0', `x-astgate-rewrites is ${n} for a reply with no rewrite`);
        assert.ok(rules === null || rules === '', `x-astgate-rules is ${rules} for a reply with no rewrite`);
        return;
    }
    assert.equal(n, String(applied.length), 'x-astgate-rewrites');
    assert.ok(rules, 'x-astgate-rules is missing');
    const got = [...new Set(rules.split(',').map((s) => s.trim()))].sort();
    const exp = [...new Set(applied.map((l) => l.rule))].sort();
    assert.deepEqual(got, exp, 'x-astgate-rules');
}

const LOG_KEYS = ['rule', 'action', 'applied', 'before', 'after'];

function logKey(choice, l) {
    return JSON.stringify([choice, ...LOG_KEYS.map((k) => l[k] ?? null)]);
}

// The proxy's rewrite log lines for a request equal the CLI's lines per choice (as a multiset of
// choice, rule, action, applied, before, after), with request_id, route, model, streamed set.
export async function assertRewriteLogs(proc, requestId, perChoiceCli, { streamed, models }) {
    const exp = [];
    perChoiceCli.forEach((lines, choice) => lines.forEach((l) => exp.push(logKey(choice, l))));
    const got = await proc.waitRewriteLines(requestId, exp.length);
    for (const l of got) {
        assert.equal(typeof l.route, 'string', `route in ${JSON.stringify(l)}`);
        assert.ok(l.route.length > 0, 'route is empty');
        assert.ok(models.includes(l.model), `model ${l.model} in the log is neither of ${models.join(', ')}`);
        assert.equal(typeof l.choice, 'number', 'choice');
        assert.equal(l.streamed, streamed, 'streamed');
    }
    assert.deepEqual(got.map((l) => logKey(l.choice, l)).sort(), exp.sort(), `rewrite log lines of request ${requestId}`);
}

// Checks a streamed reply as the proxy sent it against the upstream's events.
//   upPayloads: the data payloads the fake sent (JSON text or '[DONE]')
//   px: parseSSE() of the proxy's body
//   wantTexts: what each choice must add up to
// Returns the assembled text per choice.
export function assertStreamFaithful(upPayloads, px, wantTexts, { includeUsage }) {
    const n = wantTexts.length;
    const up = upPayloads.filter((p) => p !== '[DONE]').map((p) => JSON.parse(p));
    const first = up[0];
    assert.ok(!px.unterminated && px.trailing === '', `stream ends inside an event: ${JSON.stringify(px.trailing)}`);
    const datas = px.events.map((e) => e.data);
    assert.ok(datas.length > 0, 'no events');
    assert.equal(datas[datas.length - 1], '[DONE]', 'the last event is data: [DONE]');
    assert.equal(datas.filter((d) => d === '[DONE]').length, 1, 'exactly one [DONE]');
    const chunks = datas.slice(0, -1).map((d, i) => {
        try {
            return JSON.parse(d);
        } catch (err) {
            const at = Number((err.message.match(/position (\d+)/) ?? [])[1] ?? 0);
            assert.fail(`event ${i} is not JSON (${err.message}): ...${JSON.stringify(d.slice(Math.max(0, at - 100), at + 60))}...`);
        }
    });
    const items = (list) => {
        const out = [];
        list.forEach((c, ei) => {
            if (c.usage && Array.isArray(c.choices) && c.choices.length === 0) out.push({ key: 'usage', ei, usage: c.usage });
            for (const ch of c.choices ?? []) {
                if (ch.delta?.role) out.push({ key: `role:${ch.index}:${ch.delta.role}`, ei });
                if (ch.finish_reason) out.push({ key: `finish:${ch.index}:${ch.finish_reason}`, ei });
            }
        });
        return out;
    };
    const assembled = Array.from({ length: n }, () => '');
    const started = Array(n).fill(false);
    const finished = Array(n).fill(false);
    let usageSeen = false;
    chunks.forEach((c, ei) => {
        const where = `event ${ei} ${JSON.stringify(c).slice(0, 300)}`;
        assert.ok(!('error' in c), `unexpected error event: ${where}`);
        assert.equal(c.id, first.id, `id of ${where}`);
        assert.equal(c.object, 'chat.completion.chunk', `object of ${where}`);
        assert.equal(c.created, first.created, `created of ${where}`);
        assert.equal(c.model, first.model, `model of ${where}`);
        if ('system_fingerprint' in first) assert.equal(c.system_fingerprint, first.system_fingerprint, `system_fingerprint of ${where}`);
        assert.ok(Array.isArray(c.choices), `choices is not an array in ${where}`);
        assert.ok(!usageSeen, `an event after the usage chunk: ${where}`);
        if (c.choices.length === 0 && c.usage) usageSeen = true;
        for (const ch of c.choices) {
            assert.ok(Number.isInteger(ch.index) && ch.index >= 0 && ch.index < n, `choice index in ${where}`);
            if (ch.delta?.role) started[ch.index] = true;
            const t = ch.delta?.content;
            if (typeof t === 'string' && t.length > 0) {
                assert.ok(started[ch.index], `content before the role chunk of choice ${ch.index}: ${where}`);
                assert.ok(!finished[ch.index], `content after finish_reason of choice ${ch.index}: ${where}`);
                assembled[ch.index] += t;
            }
            if (ch.finish_reason) finished[ch.index] = true;
        }
    });
    for (let i = 0; i < n; i++) assert.equal(assembled[i], wantTexts[i], `assembled content of choice ${i}`);
    // role, finish_reason and usage items in the upstream's order, with their unknown fields
    const upItems = items(up);
    const pxItems = items(chunks);
    assert.deepEqual(
        pxItems.map((x) => x.key),
        upItems.map((x) => x.key),
        'role / finish_reason / usage events in the upstream order',
    );
    upItems.forEach((u, k) => {
        const p = pxItems[k];
        assert.deepEqual(chunks[p.ei].x_e2e, up[u.ei].x_e2e, `unknown field x_e2e of the ${u.key} event`);
        if (u.key === 'usage') assert.deepEqual(p.usage, u.usage, 'usage');
    });
    assert.equal(usageSeen, includeUsage, 'usage chunk present iff include_usage');
    return assembled;
}

// Reads a streamed reply through the SDK's raw stream: content per choice, and the chunks.
export async function sdkStreamContents(stream, n) {
    const out = Array.from({ length: n }, () => '');
    const chunks = [];
    for await (const chunk of stream) {
        chunks.push(chunk);
        for (const ch of chunk.choices) if (ch.delta?.content) out[ch.index] += ch.delta.content;
    }
    return { contents: out, chunks };
}

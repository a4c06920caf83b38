// The process lifecycle under signals, with the ASan build: SIGTERM drains (no new connections,
// /readyz 503, replies in flight finish, exit 0), a second SIGTERM or SIGINT stops at once (the
// request in flight logged as 499), timeouts.drain_ms ends a drain, SIGUSR1 reopens the log files,
// SIGHUP reloads the configuration and rules (requests in flight keep the ones they started with). Each test starts its own astgate in front of an upstream whose streamed
// reply the test releases event by event: no sleeps, every wait is on an event.

import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { NEEDS_PROXY, ROOT, RULES, Astgate, writeConfig, withTimeout, tmpDir } from './helpers.mjs';

// An upstream that answers a GET at once and every other request with an SSE stream it holds open: the test sends each
// event (send) and ends it (end). Resolves `arrived` when a request is in.
class HeldUpstream {
    static async start() {
        const u = new HeldUpstream();
        await new Promise((r) => u.server.listen(0, '127.0.0.1', r));
        return u;
    }
    constructor() {
        this.pending = [];
        this.waiters = [];
        this.server = http.createServer((req, res) => {
            req.resume();
            req.on('end', () => {
                if (req.method === 'GET') {
                    res.writeHead(200, { 'Content-Type': 'application/json' });
                    res.end('{"object":"list","data":[]}');
                    return;
                }
                res.writeHead(200, { 'Content-Type': 'text/event-stream' });
                res.flushHeaders();
                this.pending.push(res);
                for (const w of this.waiters.splice(0)) w();
            });
        });
    }
    get url() {
        return `http://127.0.0.1:${this.server.address().port}`;
    }
    async next() {
        while (this.pending.length === 0) await new Promise((r) => this.waiters.push(r));
        return this.pending.shift();
    }
    close() {
        this.server.closeAllConnections?.();
        return new Promise((r) => this.server.close(r));
    }
}

const chunk = (text) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`;

// A streamed chat completion through astgate; `got(n)` resolves once n bytes of body arrived.
function streamRequest(port) {
    const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let data = '';
    const waiters = [];
    const done = new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
            res.setEncoding('utf8');
            res.on('data', (d) => {
                data += d;
                for (const w of [...waiters]) w();
            });
            res.on('end', () => resolve({ status: res.statusCode, data, complete: res.complete }));
            res.on('error', (err) => resolve({ status: res.statusCode, data, error: err }));
            res.on('aborted', () => resolve({ status: res.statusCode, data, aborted: true }));
        });
        req.on('error', (err) => resolve({ data, error: err }));
        req.end(body);
    });
    const got = (text) =>
        new Promise((resolve) => {
            const check = () => {
                if (data.includes(text)) {
                    waiters.splice(waiters.indexOf(check), 1);
                    resolve();
                }
            };
            waiters.push(check);
            check();
        });
    return { done, got };
}

function httpGet(port, p) {
    return new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve({ status: res.statusCode, body: b }));
        }).on('error', reject);
    });
}

function connectRefused(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('connect', () => {
            s.destroy();
            resolve(false);
        });
        s.on('error', (err) => resolve(err.code === 'ECONNREFUSED'));
    });
}

async function freePort() {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const p = s.address().port;
    await new Promise((r) => s.close(r));
    return p;
}

function accessLines(gate) {
    return gate.jsonLines().filter((j) => j.type === 'access');
}

describe('signals and drain', { skip: NEEDS_PROXY }, () => {
    let up;
    let ag;
    let adminPort;
    let dir;
    let configPath;

    async function start(extra = {}, rules = RULES) {
        adminPort = await freePort();
        const config = writeConfig({
            listen: '127.0.0.1:0',
            upstream: up.url,
            rules: [path.join(ROOT, RULES)],
            admin: `127.0.0.1:${adminPort}`,
            workers: 2,
            logs: { access: '-', rewrite: 'off' },
            ...extra,
        });
        configPath = config;
        ag = await Astgate.start({ upstream: up.url, config, rules });
    }

    beforeEach(async () => {
        up = await HeldUpstream.start();
        dir = tmpDir();
    });

    afterEach(async () => {
        if (ag && !ag.exitInfo) {
            ag.child.kill('SIGKILL');
            await ag.exited;
        }
        ag = null;
        await up.close();
    });

    // the exit after the signals a test sent: 0, and no sanitizer report
    async function exitClean(ms = 10000) {
        const info = await withTimeout(ag.exited, ms, 'astgate to exit');
        const report = ag.stderr.search(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/);
        assert.equal(report, -1, `sanitizer report:\n${ag.stderr.slice(report, report + 3000)}`);
        assert.deepEqual(info, { code: 0, signal: null });
    }

    it('SIGTERM drains: /readyz 503, new connections refused, the stream in flight completes, exit 0', async () => {
        await start();
        assert.equal((await httpGet(adminPort, '/readyz')).status, 200);
        const s = streamRequest(ag.port);
        const res = await withTimeout(up.next(), 5000, 'the request upstream');
        res.write(chunk('first '));
        await withTimeout(s.got('first'), 5000, 'the first event');
        ag.child.kill('SIGTERM');
        await withTimeout(ag.waitLine((l) => l.includes('SIGTERM received, draining')), 5000, 'the drain line');
        assert.equal((await httpGet(adminPort, '/readyz')).status, 503);
        assert.equal((await httpGet(adminPort, '/healthz')).status, 200, 'liveness stays 200');
        // the listening sockets are closed once the workers took the drain
        await withTimeout(
            (async () => {
                while (!(await connectRefused(ag.port))) await new Promise((r) => setImmediate(r));
            })(),
            5000,
            'new connections refused',
        );
        res.write(chunk('second'));
        res.end('data: [DONE]\n\n');
        const r = await withTimeout(s.done, 5000, 'the stream to end');
        assert.equal(r.status, 200);
        assert.ok(r.complete, 'the stream ended properly (last chunk received)');
        assert.match(r.data, /second/);
        assert.match(r.data, /\[DONE\]/);
        await exitClean();
        const lines = accessLines(ag);
        assert.equal(lines.filter((l) => l.path === '/v1/chat/completions').length, 1, JSON.stringify(lines));
        assert.equal(lines.filter((l) => l.path === '/v1/chat/completions')[0].status, 200);
    });

    it('a second SIGTERM stops at once; the request in flight is logged as 499', async () => {
        await start();
        const s = streamRequest(ag.port);
        const res = await withTimeout(up.next(), 5000, 'the request upstream');
        res.write(chunk('first '));
        await withTimeout(s.got('first'), 5000, 'the first event');
        ag.child.kill('SIGTERM');
        await withTimeout(ag.waitLine((l) => l.includes('SIGTERM received, draining')), 5000, 'the drain line');
        ag.child.kill('SIGTERM');
        await exitClean(5000);
        const r = await s.done;
        assert.ok(!r.complete, 'the client can tell the stream was cut');
        const lines = accessLines(ag).filter((l) => l.path === '/v1/chat/completions');
        assert.equal(lines.length, 1);
        assert.equal(lines[0].status, 499);
    });

    for (const sig of ['SIGINT', 'SIGQUIT']) {
        it(`${sig} stops at once, with the access line of the request in flight`, async () => {
            await start();
            const s = streamRequest(ag.port);
            await withTimeout(up.next(), 5000, 'the request upstream');
            ag.child.kill(sig);
            await exitClean(5000);
            await s.done;
            assert.ok(ag.lines.some((l) => l.includes(`${sig} received, stopping now`)));
            assert.equal(accessLines(ag).filter((l) => l.status === 499).length, 1);
        });
    }

    it('timeouts.drain_ms ends a drain: the stream still open is cut and logged as 499', async () => {
        await start({ timeouts: { drain_ms: 200 } });
        const s = streamRequest(ag.port);
        const res = await withTimeout(up.next(), 5000, 'the request upstream');
        res.write(chunk('first '));
        await withTimeout(s.got('first'), 5000, 'the first event');
        ag.child.kill('SIGTERM');
        await exitClean(5000);
        assert.ok(ag.lines.some((l) => l.includes('timeouts.drain_ms is over')));
        const r = await s.done;
        assert.ok(!r.complete);
        assert.equal(accessLines(ag).filter((l) => l.status === 499).length, 1);
    });

    it('SIGUSR1 reopens the access log after it was moved', async () => {
        const log = path.join(dir, 'access.log');
        await start({ logs: { access: log, rewrite: 'off' } });
        await httpGet(ag.port, '/v1/models/first');
        // the line is written once the worker's callbacks at hand ran: wait for it in the file
        await withTimeout(
            (async () => {
                while (!(fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('first'))) await new Promise((r) => setTimeout(r, 10));
            })(),
            5000,
            'the first access line',
        );
        fs.renameSync(log, `${log}.1`);
        ag.child.kill('SIGUSR1');
        await withTimeout(ag.waitLine((l) => l.includes('SIGUSR1 received')), 5000, 'the reopen line');
        await httpGet(ag.port, '/v1/models/second');
        await withTimeout(
            (async () => {
                while (!(fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('second'))) await new Promise((r) => setTimeout(r, 10));
            })(),
            5000,
            'the second access line in the new file',
        );
        assert.ok(!fs.readFileSync(`${log}.1`, 'utf8').includes('second'));
        ag.child.kill('SIGTERM');
        await exitClean();
    });

    const metric = (text, name) => {
        const m = text.match(new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm'));
        return m ? Number(m[1]) : null;
    };
    const AGENT = "```ts\nimport { openai } from '@ai-sdk/openai';\nimport { Agent } from '@mastra/core/agent';\n\nexport const a = new Agent({\n  name: 'a',\n  instructions: 'be brief',\n  model: openai('gpt-4o'),\n});\n```\n";
    const content = (sse) =>
        sse
            .split('\n')
            .filter((l) => l.startsWith('data: {'))
            .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content ?? '')
            .join('');

    it('SIGHUP reloads: a stream in flight ends with the rules it started with, the next request gets the new ones; broken files keep the old configuration', async () => {
        const original = fs.readFileSync(path.join(ROOT, RULES), 'utf8');
        const rulesFile = path.join(dir, 'mastra.yaml');
        fs.writeFileSync(rulesFile, original);
        await start({}, [rulesFile]);
        const m0 = (await httpGet(adminPort, '/metrics')).body;
        assert.equal(metric(m0, 'astgate_config_last_reload_successful'), 1);
        assert.equal(metric(m0, 'astgate_config_reloads_total{result="success"}'), 0);
        const t0 = metric(m0, 'astgate_config_last_reload_success_timestamp_seconds');
        assert.ok(t0 > 1.7e9, `start time as the last successful load: ${t0}`);

        // a stream starts under the first rules and is half-way through its code block
        const s1 = streamRequest(ag.port);
        const res1 = await withTimeout(up.next(), 5000, 'the first request upstream');
        const half = AGENT.indexOf('  model');
        res1.write(chunk(`Here it is:\n\n${AGENT.slice(0, half)}`));
        await withTimeout(s1.got('Here it is'), 5000, 'the first event');

        // reload: the pack now pins gpt-4.1-mini, and astgate.yaml asks for a restart setting
        fs.writeFileSync(rulesFile, original.replaceAll('gpt-4.1-nano', 'gpt-4.1-mini'));
        fs.writeFileSync(configPath, fs.readFileSync(configPath, 'utf8').replace('workers: 2', 'workers: 3'));
        ag.child.kill('SIGHUP');
        await withTimeout(ag.waitLine((l) => l.includes('configuration reloaded') && l.includes('generation 2')), 5000, 'the reload line');
        assert.ok(ag.lines.some((l) => l.includes('workers changed (2 -> 3): that takes a restart; still 2')), ag.stderr.slice(-2000));

        // a request after the reload: the new rules
        const s2 = streamRequest(ag.port);
        const res2 = await withTimeout(up.next(), 5000, 'the second request upstream');
        res2.write(chunk(AGENT));
        res2.end('data: [DONE]\n\n');
        const r2 = await withTimeout(s2.done, 5000, 'the second stream');
        assert.match(content(r2.data), /openai\('gpt-4\.1-mini'\)/);

        // the first stream ends with the rules it started with
        res1.write(chunk(AGENT.slice(half)));
        res1.end('data: [DONE]\n\n');
        const r1 = await withTimeout(s1.done, 5000, 'the first stream');
        assert.ok(r1.complete);
        assert.match(content(r1.data), /openai\('gpt-4\.1-nano'\)/);
        assert.doesNotMatch(content(r1.data), /gpt-4\.1-mini/);

        // a broken rules file, then a broken astgate.yaml: each reported with file:line:col,
        // counted, and the configuration in force stays
        fs.writeFileSync(rulesFile, `${original}\nbogus_key: 1\n`);
        ag.child.kill('SIGHUP');
        await withTimeout(ag.waitLine((l) => l.includes('reload failed') && l.includes('generation 2')), 5000, 'the first failure line');
        assert.ok(ag.lines.some((l) => l.startsWith(`${rulesFile}:`) && /^[^:]+:\d+:\d+: /.test(l)), ag.stderr.slice(-2000));
        fs.writeFileSync(rulesFile, original.replaceAll('gpt-4.1-nano', 'gpt-4.1-mini'));
        const good = fs.readFileSync(configPath, 'utf8');
        fs.writeFileSync(configPath, `${good}\nlistne: 127.0.0.1:1\n`);
        const failures = ag.lines.filter((l) => l.includes('reload failed')).length;
        ag.child.kill('SIGHUP');
        await withTimeout(ag.waitLine(() => ag.lines.filter((l) => l.includes('reload failed')).length > failures), 5000, 'the second failure line');
        assert.ok(ag.lines.some((l) => l.startsWith(`${configPath}:`) && /:\d+:\d+: .*unknown key `listne`/.test(l)), ag.stderr.slice(-2000));
        const m1 = (await httpGet(adminPort, '/metrics')).body;
        assert.equal(metric(m1, 'astgate_config_last_reload_successful'), 0);
        assert.equal(metric(m1, 'astgate_config_reloads_total{result="success"}'), 1);
        assert.equal(metric(m1, 'astgate_config_reloads_total{result="failure"}'), 2);
        assert.equal(metric(m1, 'astgate_config_generation'), 2);
        assert.ok(metric(m1, 'astgate_config_last_reload_success_timestamp_seconds') >= t0);
        // both rewrites are counted under the rule's id, the first generation's included
        assert.equal(metric(m1, 'astgate_rewrites_total{rule="mastra-agent-model"}'), 2);

        // still the reloaded rules
        const s3 = streamRequest(ag.port);
        const res3 = await withTimeout(up.next(), 5000, 'the third request upstream');
        res3.end(`${chunk(AGENT)}data: [DONE]\n\n`);
        assert.match(content((await withTimeout(s3.done, 5000, 'the third stream')).data), /gpt-4\.1-mini/);

        // fixed: the next reload succeeds
        fs.writeFileSync(configPath, good);
        ag.child.kill('SIGHUP');
        await withTimeout(ag.waitLine((l) => l.includes('configuration reloaded') && l.includes('generation 3')), 5000, 'the third reload');
        const m2 = (await httpGet(adminPort, '/metrics')).body;
        assert.equal(metric(m2, 'astgate_config_last_reload_successful'), 1);
        assert.equal(metric(m2, 'astgate_config_reloads_total{result="success"}'), 2);
        assert.equal(metric(m2, 'astgate_rewrites_total{rule="mastra-agent-model"}'), 3);
        ag.child.kill('SIGTERM');
        await exitClean();
    });

    it('SIGHUP under load: every request is answered with one generation\'s rules, whole, while reloads swap them', async () => {
        // an upstream that answers at once: the agent, streamed or not as asked
        const fast = http.createServer((req, res) => {
            let b = '';
            req.on('data', (d) => (b += d));
            req.on('end', () => {
                const stream = JSON.parse(b).stream === true;
                if (stream) {
                    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
                    const cut = AGENT.indexOf('model');
                    res.end(`${chunk(AGENT.slice(0, cut))}${chunk(AGENT.slice(cut))}data: [DONE]\n\n`);
                } else {
                    res.writeHead(200, { 'Content-Type': 'application/json' });
                    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: AGENT }, finish_reason: 'stop' }] }));
                }
            });
        });
        await new Promise((r) => fast.listen(0, '127.0.0.1', r));
        try {
            const original = fs.readFileSync(path.join(ROOT, RULES), 'utf8');
            const rulesFile = path.join(dir, 'mastra.yaml');
            fs.writeFileSync(rulesFile, original);
            adminPort = await freePort();
            configPath = writeConfig({ listen: '127.0.0.1:0', upstream: `http://127.0.0.1:${fast.address().port}`, admin: `127.0.0.1:${adminPort}`, workers: 2, logs: { access: 'off', rewrite: 'off' } });
            ag = await Astgate.start({ upstream: `http://127.0.0.1:${fast.address().port}`, config: configPath, rules: [rulesFile] });
            const want = new Set(['gpt-4.1-nano', 'gpt-4.1-mini'].map((m) => AGENT.replace("openai('gpt-4o')", `openai('${m}')`)));
            const TOTAL = 240;
            const seen = { 'gpt-4.1-nano': 0, 'gpt-4.1-mini': 0 };
            let sent = 0;
            const one = (stream) =>
                new Promise((resolve, reject) => {
                    const body = JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] });
                    const req = http.request({ host: '127.0.0.1', port: ag.port, method: 'POST', path: '/v1/chat/completions', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
                        let d = '';
                        res.setEncoding('utf8');
                        res.on('data', (x) => (d += x));
                        res.on('end', () => resolve({ status: res.statusCode, text: stream ? content(d) : JSON.parse(d).choices[0].message.content }));
                    });
                    req.on('error', reject);
                    req.end(body);
                });
            const client = async () => {
                while (sent < TOTAL) {
                    const stream = sent++ % 2 === 0;
                    const r = await one(stream);
                    assert.equal(r.status, 200);
                    assert.ok(want.has(r.text), `a whole reply under one generation's rules:\n${r.text}`);
                    seen[r.text.includes('gpt-4.1-mini') ? 'gpt-4.1-mini' : 'gpt-4.1-nano']++;
                }
            };
            // reloads while the clients run, each waited for (signals of one kind coalesce)
            const reloader = async () => {
                for (let i = 1; i <= 6 && sent < TOTAL; i++) {
                    fs.writeFileSync(rulesFile, i % 2 ? original.replaceAll('gpt-4.1-nano', 'gpt-4.1-mini') : original);
                    ag.child.kill('SIGHUP');
                    await withTimeout(ag.waitLine((l) => l.includes(`generation ${i + 1})`)), 5000, `reload ${i}`);
                }
            };
            await withTimeout(Promise.all([client(), client(), client(), client(), reloader()]), 60000, 'the load');
            assert.ok(seen['gpt-4.1-mini'] > 0 && seen['gpt-4.1-nano'] > 0, JSON.stringify(seen));
            const m = (await httpGet(adminPort, '/metrics')).body;
            assert.equal(metric(m, 'astgate_rewrites_total{rule="mastra-agent-model"}'), TOTAL);
            assert.equal(metric(m, 'astgate_config_reloads_total{result="failure"}'), 0);
            ag.child.kill('SIGTERM');
            await exitClean();
        } finally {
            fast.closeAllConnections?.();
            await new Promise((r) => fast.close(r));
        }
    });
});

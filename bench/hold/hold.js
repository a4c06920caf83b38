#!/usr/bin/env node
// The hold bench (issue 14, "Streamed code without the freeze"): how long streamed code waits in
// astgate, per hold policy, against the same replies streamed directly.
//
//   node bench/hold/hold.js        (bench/run-hold.sh runs it; knobs below, all environment)
//
// A fake upstream (bench/hold/upstream.js, a worker thread) streams every golden reply
// (tests/golden/*/input.md; the tool-call cases left out) as Chat Completions SSE at HOLD_RATE
// characters per second, in deltas of HOLD_MIN..HOLD_MAX characters (seeded per case: the same
// cut in every mode), and records when it wrote each delta. A client (this thread) sends every
// reply's request HOLD_CONC at a time, parses the SSE, and records when each character of the
// assembled content arrived. Modes: direct (the upstream itself), block and minimal (astgate serve
// with `stream: {hold: block|minimal}`; a binary that refuses the `stream` key runs block as its
// default and skips minimal). HOLD_ROUNDS rounds, the modes in an order rotated each round; every
// figure is computed per round against that round's direct pass, then the median over rounds.
//
// Figures, per mode (characters are UTF-16 units; code = inside fenced ts/tsx/js/jsx/unlabeled
// blocks (src/engine/fence.h default languages) or a bare reply; prose = outside every block and
// its fence lines):
//   early    share of code characters the client had before the upstream wrote the first
//            character of that block's closing fence line (unclosed block: the last delta)
//   delay    per character: (arrival - upstream write) through astgate minus the same in the
//            direct pass; characters aligned on the original (text.js align: common prefix and
//            suffix, then an LCS keeping runs of >= 4), characters the rewrite put there left out
//   block    per block, at the upstream: write of its first code character to write of its
//            closing fence
//   CPU      astgate's utime+stime (/proc/PID/stat) over the pass / replies
// Writes HOLD_OUT/hold.json (everything, per case too) and HOLD_OUT/summary.txt.
// Knobs: HOLD_ASTGATE (build/astgate), HOLD_ROUNDS (5), HOLD_CONC (8), HOLD_RATE (800),
// HOLD_MIN (4), HOLD_MAX (8), HOLD_MODES (direct,block,minimal), HOLD_FILTER (case name part),
// HOLD_OUT (bench/out/hold), HOLD_TIMEOUT (280 s: the whole run stops past it), HOLD_TRACE (a
// case name part: write how those replies arrived, per mode, to HOLD_OUT/trace-*.txt).
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const {spawn, spawnSync} = require('child_process');
const {Worker} = require('worker_threads');
const {monitorEventLoopDelay} = require('perf_hooks');
const T = require('./text.js');

const root = path.resolve(__dirname, '../..');
const env = process.env;
const cfg = {
    astgate: path.resolve(root, env.HOLD_ASTGATE || 'build/astgate'),
    rounds: Number(env.HOLD_ROUNDS || 5),
    conc: Number(env.HOLD_CONC || 8),
    rate: Number(env.HOLD_RATE || 800),
    minLen: Number(env.HOLD_MIN || 4),
    maxLen: Number(env.HOLD_MAX || 8),
    modes: (env.HOLD_MODES || 'direct,block,minimal').split(','),
    filter: env.HOLD_FILTER || '',
    trace: env.HOLD_TRACE || '',
    out: path.resolve(root, env.HOLD_OUT || 'bench/out/hold'),
    timeout: Number(env.HOLD_TIMEOUT || 280),
    rules: 'rules/mastra.yaml',
};
const origin = process.hrtime.bigint();
const now = () => Number(process.hrtime.bigint() - origin) / 1e6; // ms, same clock as the worker
const hz = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;

const children = [];
let worker = null;
function cleanup() {
    for (const c of children)
        if (c.exitCode === null && c.signalCode === null)
            c.kill('SIGTERM');
    if (worker)
        worker.terminate();
}
process.on('SIGTERM', () => { cleanup(); process.exit(143); });
process.on('SIGINT', () => { cleanup(); process.exit(130); });
const deadline = setTimeout(() => {
    console.error(`hold: still running after ${cfg.timeout} s: stopped`);
    cleanup();
    process.exit(2);
}, cfg.timeout * 1000);

// ---- statistics ----
function sorted(v) {
    return Float64Array.from(v).sort();
}
function pct(s, p) { // s sorted; nearest rank
    if (s.length === 0)
        return NaN;
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))];
}
function median(v) {
    const s = sorted(v);
    if (s.length === 0)
        return NaN;
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---- processes ----
function cpuTicks(pid) {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

function startUpstream(cases) {
    return new Promise((resolve, reject) => {
        const recs = new Map();
        worker = new Worker(path.join(__dirname, 'upstream.js'), {workerData: {
            cases: cases.map((c) => ({name: c.name, input: c.input})), rate: cfg.rate,
            minLen: cfg.minLen, maxLen: cfg.maxLen, origin: origin.toString()}});
        worker.on('message', (m) => {
            if (m.port)
                resolve({port: m.port, recs});
            else
                recs.set(m.tag, m);
        });
        worker.on('error', reject);
    });
}

function astgateArgs(conf, upPort) {
    return ['serve', '--config', conf, '--listen', '127.0.0.1:0', '--upstream',
        `http://127.0.0.1:${upPort}`, '--rules', cfg.rules];
}

function check(conf, upPort) {
    const r = spawnSync(cfg.astgate, [...astgateArgs(conf, upPort), '--check'],
        {cwd: root, encoding: 'utf8', timeout: 20000});
    return {ok: r.status === 0, msg: (r.stderr + r.stdout).trim()};
}

// The configuration for a hold mode; null (and why) when the binary refuses it.
function modeConfig(mode, upPort, notes) {
    const logs = `logs: {access: ${path.join(cfg.out, `access-${mode}.log`)}, ` +
        `rewrite: ${path.join(cfg.out, `rewrite-${mode}.log`)}}\n`;
    const base = `workers: 1\n${logs}`;
    const conf = path.join(cfg.out, `astgate-${mode}.yaml`);
    fs.writeFileSync(conf, `stream: {hold: ${mode}}\n${base}`);
    const c = check(conf, upPort);
    if (c.ok) {
        notes[mode] = `stream: {hold: ${mode}}`;
        return conf;
    }
    if (mode === 'block' && /stream/.test(c.msg)) {
        // before the hold policy existed, holding the whole block was the only behaviour
        fs.writeFileSync(conf, base);
        const c2 = check(conf, upPort);
        if (c2.ok) {
            notes[mode] = `no stream key (this binary refuses it: ${c.msg.split('\n')[0]}); ` +
                'holding the whole block is its only behaviour';
            return conf;
        }
        notes[mode] = `refused: ${c2.msg}`;
        return null;
    }
    notes[mode] = `refused: ${c.msg.split('\n')[0]}`;
    return null;
}

function startAstgate(conf, upPort) {
    return new Promise((resolve, reject) => {
        const p = spawn(cfg.astgate, astgateArgs(conf, upPort), {cwd: root,
            stdio: ['ignore', 'ignore', 'pipe']});
        children.push(p);
        let err = '';
        const t = setTimeout(() => reject(new Error(`astgate did not listen in 10 s: ${err}`)), 10000);
        p.stderr.setEncoding('utf8');
        p.stderr.on('data', (d) => {
            err += d;
            const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err);
            if (m && !p.port) {
                p.port = Number(m[1]);
                clearTimeout(t);
                resolve(p);
            }
        });
        p.on('exit', (code) => reject(new Error(`astgate exited (${code}): ${err}`)));
    });
}

function get(port, p) {
    return new Promise((resolve) => {
        http.get({host: '127.0.0.1', port, path: p, timeout: 5000}, (res) => {
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { b += d; });
            res.on('end', () => resolve(b));
        }).on('error', () => resolve(''));
    });
}

// ---- the client ----
const body = JSON.stringify({model: 'gpt-4o', stream: true,
    messages: [{role: 'user', content: 'Write a Mastra agent in TypeScript'}]});

// One streamed reply: the assembled content of choice 0 and the arrival time of each character.
function request(agent, port, n, tag) {
    return new Promise((resolve) => {
        const r = {text: '', arr: [], status: 0, err: null, done: false};
        const req = http.request({host: '127.0.0.1', port, path: '/v1/chat/completions',
            method: 'POST', agent, timeout: 30000, headers: {'Content-Type': 'application/json',
                'Content-Length': Buffer.byteLength(body), 'x-hold-case': String(n),
                'x-hold-tag': tag}}, (res) => {
            r.status = res.statusCode;
            res.setEncoding('utf8');
            let buf = '';
            res.on('data', (d) => {
                const t = now();
                buf += d;
                let e;
                while ((e = buf.search(/\r?\n\r?\n/)) >= 0) {
                    const ev = buf.slice(0, e);
                    buf = buf.slice(e + (buf[e] === '\r' ? 4 : 2));
                    const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:'))
                        .map((l) => l.slice(l[5] === ' ' ? 6 : 5)).join('\n');
                    if (data === '')
                        continue;
                    if (data === '[DONE]') {
                        r.done = true;
                        continue;
                    }
                    let j;
                    try {
                        j = JSON.parse(data);
                    } catch (x) {
                        r.err = `bad JSON event: ${data.slice(0, 80)}`;
                        continue;
                    }
                    if (j.error)
                        r.err = `error event: ${JSON.stringify(j.error).slice(0, 120)}`;
                    for (const ch of j.choices || []) {
                        const c = ch.index === 0 && ch.delta && ch.delta.content;
                        if (typeof c === 'string' && c.length) {
                            r.text += c;
                            for (let i = 0; i < c.length; i++)
                                r.arr.push(t);
                        }
                    }
                }
            });
            res.on('end', () => resolve(r));
            res.on('error', (x) => { r.err = String(x); resolve(r); });
        });
        req.on('timeout', () => { req.destroy(new Error('timeout')); });
        req.on('error', (x) => { r.err = String(x); resolve(r); });
        req.end(body);
    });
}

async function pass(cases, port, mode, round, recs, pid, pids) {
    const agent = new http.Agent({keepAlive: true, maxSockets: cfg.conc});
    const res = new Array(cases.length);
    let next = 0;
    const all0 = pids.map(cpuTicks);
    const c0 = pid ? cpuTicks(pid) : 0;
    const t0 = now();
    const tags = cases.map((c, n) => `${round}-${mode}-${n}`);
    await Promise.all(Array.from({length: Math.min(cfg.conc, cases.length)}, async () => {
        while (next < cases.length) {
            const n = next++;
            res[n] = await request(agent, port, n, tags[n]);
        }
    }));
    const wall = now() - t0;
    // the worker posts its record right after the reply's last write
    for (let i = 0; i < 200 && tags.some((t) => !recs.has(t)); i++)
        await new Promise((r) => setTimeout(r, 10));
    const ticks = pid ? cpuTicks(pid) - c0 : 0;
    const all = pids.map((q, i) => cpuTicks(q) - all0[i]);
    agent.destroy();
    for (let n = 0; n < cases.length; n++) {
        res[n].up = recs.get(tags[n]) || null;
        recs.delete(tags[n]);
    }
    return {mode, round, wall, cpuMsPerReply: ticks * 1000 / hz / cases.length, ticks, all, res};
}

// ---- figures ----
function prepare(cases) {
    for (const c of cases) {
        c.blocks = T.scanBlocks(c.input);
        c.cls = T.classify(c.input, c.blocks);
        c.rule = c.blocks.filter((b) => b.rule);
        c.plan = T.cutDeltas(c.input, c.name, cfg.minLen, cfg.maxLen, cfg.rate);
        c.deltaOf = new Int32Array(c.input.length);
        c.plan.forEach((d, k) => c.deltaOf.fill(k, d.off, d.off + d.len));
    }
}

// Upstream write time of every character of case c in one pass, and its blocks' fence times.
function upTimes(c, up) {
    const sent = new Float64Array(c.input.length);
    for (let i = 0; i < sent.length; i++)
        sent[i] = up.sent[c.deltaOf[i]];
    const last = sent.length ? sent[sent.length - 1] : 0;
    const fence = c.rule.map((b) => (b.closed ? sent[b.closeStart] : last));
    const blockMs = c.rule.map((b, k) => (b.end > b.start ? fence[k] - sent[b.start] : NaN));
    return {sent, fence, blockMs};
}

// HOLD_TRACE: the assembled text of the matching cases as it arrived, one line per arrival
// (ms after the upstream's first delta), with the times the upstream wrote the closing fences.
function trace(c, r, u, p) {
    const L = [`${c.name} ${p.mode} round ${p.round + 1}; closing fences written at ` +
        u.fence.map((t) => `+${fmt(t - r.up.start, 1)}`).join(' ') + ' ms'];
    for (let j = 0; j < r.text.length;) {
        let e = j + 1;
        while (e < r.text.length && r.arr[e] === r.arr[j])
            e++;
        L.push(`+${fmt(r.arr[j] - r.up.start, 1).padStart(7)} ${JSON.stringify(r.text.slice(j, e))}`);
        j = e;
    }
    fs.writeFileSync(path.join(cfg.out, `trace-${c.name}-${p.mode}-${p.round + 1}.txt`),
        L.join('\n') + '\n');
}

function figures(cases, p, direct) {
    const f = {mode: p.mode, round: p.round, wall_s: p.wall / 1000, cpu_ms_per_reply: p.cpuMsPerReply,
        cpu_ticks: p.ticks, replies: cases.length, failed: [], mismatched: [], blocks_differ: []};
    let code = 0, early = 0;
    const delay = {c: [], p: [], o: []};
    const rel = []; // a code character's delay / its own block's time
    const proseHeld = []; // prose characters delayed > 5 ms: where astgate waits outside code
    const lag = {c: [], p: []};
    const blockMs = [];
    const late = [];
    const perCase = [];
    cases.forEach((c, n) => {
        const r = p.res[n];
        if (!r || r.err || r.status !== 200 || !r.done || !r.up || r.arr.length !== r.text.length) {
            f.failed.push({name: c.name, status: r && r.status, err: r && r.err,
                up: !!(r && r.up), done: r && r.done});
            return;
        }
        const want = p.mode === 'direct' ? c.input : c.expected;
        if (r.text !== want)
            f.mismatched.push(c.name);
        const u = upTimes(c, r.up);
        if (cfg.trace && c.name.includes(cfg.trace))
            trace(c, r, u, p);
        u.blockMs.forEach((v) => { if (!Number.isNaN(v)) blockMs.push(v); });
        r.up.sent.forEach((s, k) => late.push(s - r.up.due[k]));
        // share: code characters of the assembled text, by block
        const ob = T.scanBlocks(r.text).filter((b) => b.rule);
        let cc = 0, ce = 0;
        if (ob.length !== c.rule.length) {
            f.blocks_differ.push(c.name);
        } else {
            ob.forEach((b, k) => {
                for (let j = b.start; j < b.end; j++) {
                    cc++;
                    if (r.arr[j] < u.fence[k])
                        ce++;
                }
            });
        }
        code += cc;
        early += ce;
        // delays, on characters aligned with the original
        const map = r.text === c.input ? null : T.align(c.input, r.text);
        const d = direct && direct.res[n];
        const du = d && d.up && !d.err && d.text === c.input ? upTimes(c, d.up) : null;
        const cd = [];
        for (let j = 0; j < r.text.length; j++) {
            const i = map ? map[j] : j;
            if (i < 0)
                continue;
            const kind = c.cls.kind[i];
            const l = r.arr[j] - u.sent[i];
            if (kind !== 'o')
                lag[kind].push(l);
            if (du && p.mode !== 'direct') {
                const v = l - (d.arr[i] - du.sent[i]);
                delay[kind].push(v);
                if (kind === 'c') {
                    cd.push(v);
                    const bt = u.blockMs[c.cls.blk[i]];
                    if (bt > 0)
                        rel.push(v / bt);
                }
                if (kind === 'p' && v > 5) {
                    const ls = c.input.lastIndexOf('\n', i - 1) + 1;
                    const last = proseHeld[proseHeld.length - 1];
                    if (last && last.name === c.name && last.line_at === ls) {
                        last.chars++;
                        last.max_ms = Math.max(last.max_ms, Math.round(v * 10) / 10);
                    } else {
                        proseHeld.push({name: c.name, line_at: ls, chars: 1, max_ms: Math.round(v * 10) / 10,
                            line: c.input.slice(ls, ls + 60).split('\n')[0]});
                    }
                }
            }
        }
        perCase.push({name: c.name, code_chars: cc, early: ce, code_delay_ms_p50: median(cd),
            code_delay_ms_max: cd.length ? Math.max(...cd) : NaN,
            block_ms: u.blockMs.map((v) => Math.round(v)), same_as_expected: r.text === want});
    });
    const cs = sorted(delay.c), ps = sorted(delay.p), os = sorted(delay.o);
    Object.assign(f, {
        code_chars: code, early_chars: early, early_share: code ? early / code : NaN,
        code_delay_ms_p50: pct(cs, 50), code_delay_ms_p90: pct(cs, 90),
        code_delay_ms_mean: cs.length ? cs.reduce((a, b) => a + b, 0) / cs.length : NaN,
        code_delay_chars: cs.length, code_delay_rel_p50: median(rel),
        prose_held_chars: proseHeld.reduce((a, h) => a + h.chars, 0), prose_held: proseHeld,
        block_ms_p50: median(blockMs), blocks: blockMs.length,
        prose_delay_ms_p50: pct(ps, 50), prose_delay_ms_p99: pct(ps, 99), prose_chars: ps.length,
        other_delay_ms_p50: pct(os, 50),
        code_lag_ms_p50: median(lag.c), prose_lag_ms_p50: median(lag.p),
        prose_lag_ms_p99: pct(sorted(lag.p), 99),
        upstream_late_ms_p50: median(late), upstream_late_ms_p99: pct(sorted(late), 99),
        per_case: perCase,
    });
    f.delay_over_block = f.code_delay_ms_p50 / f.block_ms_p50;
    return f;
}

function fmt(v, d = 1) {
    return Number.isFinite(v) ? v.toFixed(d) : '-';
}

// ---- main ----
async function main() {
    fs.mkdirSync(cfg.out, {recursive: true});
    let cases = T.loadCorpus(path.join(root, 'tests/golden'));
    if (cfg.filter)
        cases = cases.filter((c) => c.name.includes(cfg.filter));
    prepare(cases);
    const chars = cases.reduce((a, c) => a + c.input.length, 0);
    const codeChars = cases.reduce((a, c) => a + c.rule.reduce((s, b) => s + b.end - b.start, 0), 0);
    console.log(`corpus: ${cases.length} golden replies, ${chars} characters (${codeChars} code, ` +
        `${cases.reduce((a, c) => a + c.rule.length, 0)} rule blocks); ${cfg.rate} chars/s in ` +
        `deltas of ${cfg.minLen}-${cfg.maxLen}: ${fmt(chars / cfg.rate, 0)} s of streaming per ` +
        `mode, ${cfg.conc} at once`);

    const {port: upPort, recs} = await startUpstream(cases);
    const notes = {};
    const targets = [];
    for (const mode of cfg.modes) {
        if (mode === 'direct') {
            targets.push({mode, port: upPort, pid: 0});
            continue;
        }
        const conf = modeConfig(mode, upPort, notes);
        console.log(`${mode}: ${notes[mode]}`);
        if (!conf)
            continue;
        const p = await startAstgate(conf, upPort);
        targets.push({mode, port: p.port, pid: p.pid, proc: p});
    }
    const version = spawnSync(cfg.astgate, ['--version'], {encoding: 'utf8'}).stdout.trim();

    // one reply through each astgate first, not counted: lazy set-up (parsers, queries, the
    // upstream connection) is not a streamed reply's cost
    for (const t of targets)
        if (t.pid) {
            const agent = new http.Agent({keepAlive: false});
            await request(agent, t.port, 0, `warm-${t.mode}`);
            recs.delete(`warm-${t.mode}`);
        }

    const agTargets = targets.filter((t) => t.pid);
    const pids = agTargets.map((t) => t.pid);
    const eld = monitorEventLoopDelay({resolution: 1});
    eld.enable();
    const passes = [];
    for (let round = 0; round < cfg.rounds; round++) {
        const order = targets.map((_, i) => targets[(i + round) % targets.length]);
        for (const t of order) {
            const p = await pass(cases, t.port, t.mode, round, recs, t.pid, pids);
            passes.push(p);
            console.log(`  round ${round + 1} ${t.mode.padEnd(7)} ${fmt(p.wall / 1000)} s` +
                (t.pid ? `, astgate CPU ${fmt(p.cpuMsPerReply, 2)} ms/reply` : ''));
        }
    }
    eld.disable();

    const figs = [];
    for (const p of passes) {
        const direct = passes.find((q) => q.round === p.round && q.mode === 'direct');
        figs.push(figures(cases, p, direct));
    }
    // each astgate's CPU while the others' passes ran: its idle cost (timers, wake-ups)
    const idle = {};
    agTargets.forEach((t, i) => {
        const other = passes.filter((p) => p.mode !== t.mode);
        const ms = other.reduce((a, p) => a + p.all[i], 0) * 1000 / hz;
        const wall = other.reduce((a, p) => a + p.wall, 0) / 1000;
        idle[t.mode] = {cpu_ms: ms, wall_s: wall, cpu_ms_per_s: wall ? ms / wall : NaN};
    });
    const metrics = {};
    for (const t of targets)
        if (t.pid)
            metrics[t.mode] = (await get(t.port, '/metrics')).split('\n')
                .filter((l) => /^astgate_held|^astgate_stream/.test(l));

    // medians over rounds
    const keys = ['early_share', 'code_delay_ms_p50', 'code_delay_ms_p90', 'block_ms_p50',
        'delay_over_block', 'code_delay_rel_p50', 'prose_delay_ms_p50', 'prose_delay_ms_p99', 'other_delay_ms_p50',
        'code_lag_ms_p50', 'prose_lag_ms_p50', 'prose_lag_ms_p99', 'cpu_ms_per_reply',
        'upstream_late_ms_p50', 'upstream_late_ms_p99', 'wall_s'];
    const summary = {};
    for (const t of targets) {
        const fs_ = figs.filter((f) => f.mode === t.mode);
        const s = {rounds: fs_.length};
        for (const k of keys) {
            const v = fs_.map((f) => f[k]).filter(Number.isFinite);
            s[k] = {median: median(v), min: Math.min(...v), max: Math.max(...v)};
        }
        s.failed = fs_.reduce((a, f) => a + f.failed.length, 0);
        s.mismatched = [...new Set(fs_.flatMap((f) => f.mismatched))];
        s.blocks_differ = [...new Set(fs_.flatMap((f) => f.blocks_differ))];
        summary[t.mode] = s;
    }

    // ---- report ----
    const L = [];
    const m = (mode, k) => summary[mode] && summary[mode][k].median;
    const rng = (mode, k, d, mul = 1) => {
        const s = summary[mode][k];
        return `${fmt(s.median * mul, d)} [${fmt(s.min * mul, d)}..${fmt(s.max * mul, d)}]`;
    };
    L.push(`medians over ${cfg.rounds} rounds [min..max of the rounds]; delays in ms ` +
        '(through astgate minus directly, character by character)');
    L.push('mode     code early %         code delay p50        code delay p90        ' +
        'block p50 ms       delay/block %    prose delay p50     prose delay p99     ' +
        'CPU ms/reply     outputs');
    for (const t of targets) {
        const s = summary[t.mode];
        const d = t.mode === 'direct';
        const ok = `${cases.length - s.mismatched.length}/${cases.length}` +
            (s.failed ? `, ${s.failed} failed` : '');
        L.push(`${t.mode.padEnd(8)} ${rng(t.mode, 'early_share', 1, 100).padEnd(20)} ` +
            `${(d ? '-' : rng(t.mode, 'code_delay_ms_p50', 1)).padEnd(21)} ` +
            `${(d ? '-' : rng(t.mode, 'code_delay_ms_p90', 1)).padEnd(21)} ` +
            `${rng(t.mode, 'block_ms_p50', 0).padEnd(18)} ` +
            `${(d ? '-' : rng(t.mode, 'delay_over_block', 1, 100)).padEnd(16)} ` +
            `${(d ? '-' : rng(t.mode, 'prose_delay_ms_p50', 2)).padEnd(19)} ` +
            `${(d ? '-' : rng(t.mode, 'prose_delay_ms_p99', 2)).padEnd(19)} ` +
            `${(d ? '-' : rng(t.mode, 'cpu_ms_per_reply', 2)).padEnd(16)} ${ok}`);
    }
    L.push('a code character\'s delay / its own block\'s time, p50 %: ' + targets.filter((t) =>
        t.mode !== 'direct').map((t) => `${t.mode} ${rng(t.mode, 'code_delay_rel_p50', 1, 100)}`).join('; '));
    L.push('prose characters delayed > 5 ms (last round): ' + targets.filter((t) => t.mode !== 'direct')
        .map((t) => {
            const f = figs.filter((q) => q.mode === t.mode).pop();
            return `${t.mode} ${f.prose_held_chars} of ${f.prose_chars}`;
        }).join('; ') + ' (examples in hold.json, rounds[].prose_held)');
    L.push('transport (arrival - upstream write), p50 code / prose, p99 prose, ms: ' +
        targets.map((t) => `${t.mode} ${fmt(m(t.mode, 'code_lag_ms_p50'), 2)} / ` +
            `${fmt(m(t.mode, 'prose_lag_ms_p50'), 2)}, ${fmt(m(t.mode, 'prose_lag_ms_p99'), 2)}`)
            .join('; '));
    L.push(`upstream pacing: a delta written ${fmt(m('direct', 'upstream_late_ms_p50'), 2)} ms ` +
        `after it was due (p50), ${fmt(m('direct', 'upstream_late_ms_p99'), 2)} ms (p99), direct ` +
        `passes; client event-loop delay p50 ${fmt(eld.percentile(50) / 1e6, 2)} ms, p99 ` +
        `${fmt(eld.percentile(99) / 1e6, 2)} ms`);
    for (const t of targets) {
        const s = summary[t.mode];
        if (s.mismatched.length)
            L.push(`${t.mode}: assembled text differs from the non-streamed rewrite (expected.md) ` +
                `in ${s.mismatched.length}: ${s.mismatched.join(' ')}`);
        if (s.blocks_differ.length)
            L.push(`${t.mode}: rule blocks differ from the original's (left out of the share): ` +
                s.blocks_differ.join(' '));
        if (s.failed)
            L.push(`${t.mode}: ${s.failed} replies failed: ` + JSON.stringify(
                figs.filter((f) => f.mode === t.mode).flatMap((f) => f.failed).slice(0, 3)));
    }
    L.push('astgate idle (while the other modes ran), CPU ms per s of wall time: ' +
        Object.entries(idle).map(([k, v]) => `${k} ${fmt(v.cpu_ms_per_s, 2)} ` +
            `(= ${fmt(v.cpu_ms_per_s * m(k, 'wall_s') / cases.length, 3)} ms of a reply's CPU)`)
            .join('; '));
    for (const t of targets) {
        if (t.mode === 'direct' || t.mode === 'block')
            continue;
        // the replies whose code waited most, in the last round: where the hold analysis stops
        const last = figs.filter((f) => f.mode === t.mode).pop();
        const worst = last.per_case.filter((c) => c.code_chars > 0)
            .sort((a, b) => a.early / a.code_chars - b.early / b.code_chars).slice(0, 8);
        L.push(`${t.mode}: least code released early (last round): ` + worst.map((c) =>
            `${c.name} ${fmt(100 * c.early / c.code_chars, 0)} %`).join(', '));
    }
    for (const [mode, lines] of Object.entries(metrics))
        if (lines.length)
            L.push(`${mode} /metrics: ${lines.filter((l) => !/_bucket/.test(l)).join('; ')}`);
    L.push('');
    L.push('targets (issue 14):');
    if (summary.minimal) {
        const sh = m('minimal', 'early_share'), r = m('minimal', 'delay_over_block');
        const pb = m('block', 'prose_delay_ms_p50'), pm = m('minimal', 'prose_delay_ms_p50');
        const cb = m('block', 'cpu_ms_per_reply'), cm = m('minimal', 'cpu_ms_per_reply');
        L.push(`  code early >= 70 %: ${fmt(sh * 100)} % (block ${fmt(m('block', 'early_share') * 100)} %): ` +
            (sh >= 0.7 ? 'MET' : 'NOT MET'));
        L.push(`  median code delay <= 25 % of the median block time: ${fmt(m('minimal', 'code_delay_ms_p50'))} ms ` +
            `= ${fmt(r * 100)} % of ${fmt(m('minimal', 'block_ms_p50'), 0)} ms (block ${fmt(m('block', 'delay_over_block') * 100)} %): ` +
            (r <= 0.25 ? 'MET' : 'NOT MET'));
        L.push(`  prose delay unchanged (p50 within 0.1 ms of block): ${fmt(pm, 2)} ms vs ${fmt(pb, 2)} ms ` +
            `(p99 ${fmt(m('minimal', 'prose_delay_ms_p99'), 2)} vs ${fmt(m('block', 'prose_delay_ms_p99'), 2)}): ` +
            (pm <= pb + 0.1 ? 'MET' : 'NOT MET'));
        L.push(`  CPU per reply <= 1.5 x block: ${fmt(cm, 2)} / ${fmt(cb, 2)} ms = ${fmt(cm / cb, 2)} x: ` +
            (cm <= 1.5 * cb ? 'MET' : 'NOT MET'));
    } else {
        L.push(`  minimal not run (${notes.minimal || 'not in HOLD_MODES'}); block is the baseline: ` +
            `early ${fmt(m('block', 'early_share') * 100)} %, delay ${fmt(m('block', 'delay_over_block') * 100)} % ` +
            'of the block time');
    }
    const text = L.join('\n');
    console.log('\n' + text);
    fs.writeFileSync(path.join(cfg.out, 'summary.txt'), text + '\n');
    fs.writeFileSync(path.join(cfg.out, 'hold.json'), JSON.stringify({
        config: {...cfg, clk_tck: hz, astgate_version: version, cases: cases.length, chars,
            code_chars: codeChars, modes: notes},
        summary, idle, metrics, rounds: figs,
    }, (k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1));
    console.log(`\nwrote ${path.join(cfg.out, 'hold.json')} and summary.txt`);
}

main().then(() => {
    clearTimeout(deadline);
    cleanup();
}, (e) => {
    console.error('hold:', e && e.stack || e);
    cleanup();
    process.exit(1);
});

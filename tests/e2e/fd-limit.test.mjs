// Out of file descriptors: astgate must not spin on accept() (100% CPU, a warning per attempt)
// when the process's fd table is full, and must serve again once descriptors free up. astgate runs
// under `prlimit --nofile` with one worker; the test opens connections until accept() fails.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NEEDS_PROXY, ROOT, RULES, Astgate, writeConfig, withTimeout } from './helpers.mjs';
import { RawUpstream } from './raw-upstream.mjs';

const NOFILE = 40;

// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat)
function cpuTicks(pid) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
}

function connect(port) {
    return new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
        s.on('error', reject);
    });
}

// One GET on a fresh connection; resolves with the status line.
function get(port) {
    return new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port }, () =>
            s.write('GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        let data = '';
        s.setEncoding('latin1');
        s.on('data', (d) => (data += d));
        s.on('end', () => resolve(data.split('\r\n')[0]));
        s.on('error', reject);
    });
}

describe('out of file descriptors (EMFILE)', { skip: NEEDS_PROXY }, () => {
    let up;
    let gate;
    const socks = [];

    before(async () => {
        up = await RawUpstream.start();
        const config = writeConfig({
            listen: '127.0.0.1:0',
            upstream: up.url,
            rules: [path.join(ROOT, RULES)],
            workers: 1,
            logs: { access: 'off', rewrite: 'off' },
        });
        gate = await Astgate.start({ upstream: up.url, config, wrap: ['prlimit', `--nofile=${NOFILE}`] });
    });

    after(async () => {
        for (const s of socks) s.destroy();
        await gate?.stop();
        await up?.close();
    });

    it('pauses accepting with one log line instead of spinning, and serves again once fds free up', async () => {
        // more connections than the fd table can hold: the kernel queues them in the backlog
        for (let i = 0; i < NOFILE + 10; i++) socks.push(await connect(gate.port));
        const warned = await withTimeout(gate.waitLine((l) => l.startsWith('astgate: accept:')), 10000, 'the accept warning');
        assert.match(warned, /Too many open files/);
        // a spinning accept loop burns a whole core: measure the CPU astgate uses over one second
        // while the table stays full (a measurement window, not a synchronisation)
        const t0 = cpuTicks(gate.child.pid);
        await new Promise((r) => setTimeout(r, 1000));
        const used = cpuTicks(gate.child.pid) - t0;
        assert.ok(used < 30, `astgate used ${used} ticks of CPU in one second with its fd table full`);
        const warnings = gate.lines.filter((l) => l.startsWith('astgate: accept:')).length;
        assert.ok(warnings <= 2, `${warnings} accept warnings in about a second`);
        // free the descriptors: astgate closes the ones it accepted when their clients leave
        for (const s of socks.splice(0)) s.destroy();
        const status = await withTimeout(
            (async () => {
                for (;;) {
                    try {
                        return await get(gate.port);
                    } catch {
                        // a queued connection reset while the table was full: try again
                    }
                }
            })(),
            10000,
            'a request served after the fds were freed',
        );
        assert.equal(status, 'HTTP/1.1 200 OK');
        gate.assertAlive();
    });
});

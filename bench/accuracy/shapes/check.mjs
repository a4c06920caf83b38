// Checks astgate against the corpus's manifest, reply by reply: no silent miss.
//   node bench/accuracy/shapes/check.mjs [BINARY]    (default build/astgate)
// For each reply it runs `BINARY rewrite --log LOG` and reads the audit lines:
//   - a reply whose manifest says `flag` for an agent must have a flag line;
//   - one whose agents are all `pin`/`ok` must have no flag and no dropped edit, and must change
//     when some agent is `pin`;
//   - `none` (no agent) must come out byte-identical with no audit line.
// Prints one line per mismatch and a summary; exits 1 on any mismatch.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2] || path.join(here, '..', '..', '..', 'build', 'astgate');
const rules = path.join(here, '..', '..', '..', 'rules', 'mastra.yaml');
const rows = readFileSync(path.join(here, 'manifest.tsv'), 'utf8').trim().split('\n').slice(1)
    .map((l) => l.split('\t'));
const tmp = mkdtempSync(path.join(tmpdir(), 'shapes-'));
let bad = 0, pinned = 0, flagged = 0, ok = 0, none = 0;
for (const [file, shape, agents, expected] of rows) {
    const src = path.join(here, 'src', file);
    const log = path.join(tmp, 'log');
    rmSync(log, { force: true });
    const out = execFileSync(bin, ['rewrite', '--rules', rules, '--log', log, src]);
    let lines = [];
    try { lines = readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch {}
    const flags = lines.filter((l) => l.action === 'flag').length;
    const dropped = lines.filter((l) => l.action === 'rewrite' && !l.applied).length;
    const applied = lines.filter((l) => l.action === 'rewrite' && l.applied).length;
    const changed = !out.equals(readFileSync(src));
    const want = expected.split(',');
    let why = null;
    if (want.includes('flag')) {
        flagged++;
        if (flags + dropped === 0) why = 'expected a flag, got none';
    } else if (want.every((w) => w === 'none')) {
        none++;
        if (changed || lines.length) why = 'expected no change and no audit line';
    } else {
        if (flags || dropped) why = `unexpected ${flags} flag(s), ${dropped} dropped edit(s): ${lines.filter((l) => l.action === 'flag' || !l.applied).map((l) => l.reason).join('; ')}`;
        else if (want.includes('pin') && !(changed && applied)) why = 'expected a rewrite, nothing changed (silent miss)';
        else if (!want.includes('pin') && changed) why = 'expected no change';
        want.includes('pin') ? pinned++ : ok++;
    }
    if (why) {
        bad++;
        console.log(`MISMATCH ${file} (${shape}, ${agents} agent(s), expected ${expected}): ${why}`);
    }
}
rmSync(tmp, { recursive: true, force: true });
console.log(`shapes: ${rows.length} replies (${pinned} to pin, ${ok} already right, ${flagged} to flag, ${none} without agents), ${bad} mismatched`);
process.exit(bad ? 1 : 0);

#!/usr/bin/env node
// Checks `astgate eval`'s view of the pack data sets (gen-packs.mjs) against what each reply
// really is. eval counts a reply as compliant when no rule would change or flag it, so a reply the
// rules miss (the key in a comment, generateText in a block without its import) counts as
// compliant there; this script knows each reply's kind, says what the pack should do with it, runs
// `astgate rewrite` on it, and prints the true raw and corrected figures next to any mismatch.
//
//   node bench/accuracy/check-packs.mjs build/astgate ai-sdk|openai-sdk|secrets
//
// Exit status: 0 when every reply got what its kind expects (known misses included), 1 otherwise.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [bin, pack] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

// kind -> [compliant as written, what the pack does: none | rewrite | flag | nocode]
// A kind with `false, 'none'` is a known miss: not compliant, and the pack does not see it.
const TRUTH = {
    'ai-sdk': {
        right: [true, 'none'], 'openai-old': [false, 'rewrite'], 'other-provider': [false, 'rewrite'],
        missing: [false, 'rewrite'], gateway: [false, 'rewrite'], 'embed-old': [false, 'rewrite'],
        const: [false, 'rewrite'], alias: [false, 'rewrite'], namespace: [false, 'rewrite'],
        wrap: [false, 'rewrite'], env: [false, 'rewrite'], agent: [false, 'rewrite'],
        'hard-spread': [false, 'rewrite'], 'hard-opts-const': [false, 'rewrite'],
        'hard-split': [false, 'none'], 'hard-client': [true, 'none'], 'hard-cutoff': [false, 'rewrite'],
        'hard-mastra': [true, 'none'], prose: [true, 'nocode'],
    },
    'openai-sdk': {
        right: [true, 'none'], 'chat-old': [false, 'rewrite'], 'responses-old': [false, 'rewrite'],
        missing: [false, 'rewrite'], 'claude-old': [false, 'rewrite'], 'claude-missing': [false, 'rewrite'],
        'claude-stream': [false, 'rewrite'], 'embed-old': [false, 'rewrite'], parse: [false, 'rewrite'],
        stream: [false, 'rewrite'], env: [false, 'rewrite'], const: [false, 'rewrite'],
        'hard-baseurl': [false, 'flag'], 'hard-groq': [true, 'none'], 'hard-fetch': [false, 'none'],
        'hard-python': [true, 'nocode'], 'hard-curl': [true, 'nocode'], 'hard-twilio': [true, 'none'],
        'hard-param': [false, 'rewrite'], prose: [true, 'nocode'],
    },
    secrets: {
        right: [true, 'none'], placeholder: [true, 'none'], 'openai-key': [false, 'rewrite'],
        'anthropic-key': [false, 'rewrite'], 'aws-keys': [false, 'rewrite'], 'github-token': [false, 'rewrite'],
        'google-key': [false, 'rewrite'], 'const-key': [false, 'rewrite'], bearer: [false, 'rewrite'],
        'unknown-key': [false, 'flag'], eval: [false, 'flag'], exec: [false, 'flag'],
        'hard-comment': [false, 'none'], 'hard-url': [false, 'none'], 'hard-concat': [false, 'none'],
        'hard-env': [false, 'nocode'], 'hard-dotenv': [true, 'none'], 'hard-regex': [true, 'none'],
        'hard-exec-const': [true, 'none'], prose: [true, 'nocode'],
    },
}[pack];
if (!bin || !TRUTH) {
    process.stderr.write('usage: check-packs.mjs ASTGATE ai-sdk|openai-sdk|secrets\n');
    process.exit(2);
}

const gen = spawnSync(process.execPath, [join(here, 'gen-packs.mjs'), pack], {
    env: { ...process.env, GEN_PACKS_KINDS: '1' },
    encoding: 'utf8',
});
const kinds = gen.stderr.trim().split('\n').map((l) => l.split(' ')[1]);
const lines = readFileSync(join(here, `${pack}.jsonl`), 'utf8').trim().split('\n');
if (gen.stdout.trim() !== lines.join('\n')) {
    process.stderr.write(`${pack}.jsonl differs from gen-packs.mjs ${pack}: regenerate it\n`);
    process.exit(1);
}

const text = (o) => o.completion ?? (o.messages ? o.messages[2].content : o.choices[0].message.content);
const rules = join(root, 'rules', `${pack}.yaml`);
function run(input) {
    const r = spawnSync(bin, ['rewrite', '--rules', rules], { input, encoding: 'utf8' });
    const ev = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    return { out: r.stdout, ev };
}

let withCode = 0, rawTrue = 0, fixedTrue = 0, bad = 0;
const misses = [], flagged = [];
const perKind = new Map();
lines.forEach((line, i) => {
    const kind = kinds[i];
    const [compliant, expect] = TRUTH[kind];
    const first = run(text(JSON.parse(line)));
    const rewrote = first.ev.some((e) => e.action === 'rewrite' && e.applied);
    const flags = first.ev.some((e) => e.action === 'flag' || e.applied === false);
    const after = rewrote ? run(first.out).ev.length === 0 : false;
    let got = flags ? 'flag' : rewrote ? 'rewrite' : 'none';
    if (expect === 'nocode') got = first.ev.length ? got : 'nocode';
    const ok = got === expect && (got !== 'rewrite' || after);
    if (!ok) {
        bad++;
        process.stdout.write(`MISMATCH line ${i + 1} (${kind}): expected ${expect}, got ${got}${got === 'rewrite' && !after ? ' (not settled)' : ''}\n`);
    }
    const k = perKind.get(kind) ?? { n: 0, ok: 0 };
    k.n++;
    k.ok += ok;
    perKind.set(kind, k);
    if (expect === 'nocode') return;
    withCode++;
    if (compliant) rawTrue++;
    if (compliant || (got === 'rewrite' && after)) fixedTrue++;
    if (!compliant && expect === 'none') misses.push(`${i + 1} (${kind})`);
    if (got === 'flag') flagged.push(`${i + 1} (${kind})`);
});

const pct = (a, b) => ((100 * a) / b).toFixed(1) + '%';
for (const [kind, k] of perKind) process.stdout.write(`  ${kind.padEnd(16)} ${k.ok}/${k.n} as expected (${TRUTH[kind][1]})\n`);
process.stdout.write(
    `${pack}: ${withCode} replies with code; truly compliant as written ${rawTrue} (${pct(rawTrue, withCode)}), ` +
        `after the rewrite ${fixedTrue} (${pct(fixedTrue, withCode)})\n` +
        `  flagged (not fixable): ${flagged.join(', ') || 'none'}\n` +
        `  missed (not compliant, not seen by the pack): ${misses.join(', ') || 'none'}\n` +
        `check-packs: ${lines.length - bad} passed, ${bad} failed\n`,
);
process.exit(bad ? 1 : 0);

#!/usr/bin/env node
// Builds shapes.jsonl from src/*.md: one line per reply, in file-name order,
// {"id": "NNN-short-name", "completion": "<the file's text, byte for byte>"}.
// Also checks manifest.tsv against src/ (every reply listed once, agent counts
// matching the expected list) and exits 1 on a mismatch. Node 20, no dependencies.
//
//   node bench/accuracy/shapes/build.mjs
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, 'src');
const files = readdirSync(srcDir)
  .filter((f) => /^\d{3}-[a-z0-9-]+\.md$/.test(f))
  .sort();

const problems = [];
const manifest = new Map();
const lines = readFileSync(join(here, 'manifest.tsv'), 'utf8').split('\n').filter(Boolean);
if (lines[0] !== 'file\tshape\tagents\texpected') problems.push('manifest.tsv: unexpected header');
for (const [i, line] of lines.slice(1).entries()) {
  const [file, shape, agents, expected, ...rest] = line.split('\t');
  const where = `manifest.tsv:${i + 2}`;
  if (rest.length || expected === undefined) { problems.push(`${where}: expected 4 columns`); continue; }
  if (manifest.has(file)) problems.push(`${where}: ${file} listed twice`);
  manifest.set(file, { shape, agents: Number(agents), expected: expected.split(',') });
  const words = expected.split(',');
  if (!words.every((w) => ['pin', 'ok', 'flag', 'none'].includes(w))) problems.push(`${where}: bad expected "${expected}"`);
  const n = Number(agents);
  if (n === 0 ? expected !== 'none' : words.length !== n || words.includes('none')) {
    problems.push(`${where}: ${agents} agents but expected "${expected}"`);
  }
}
for (const f of files) if (!manifest.has(f)) problems.push(`src/${f}: not in manifest.tsv`);
for (const f of manifest.keys()) if (!files.includes(f)) problems.push(`manifest.tsv: ${f} has no file in src/`);

const out = files.map((f) => JSON.stringify({
  id: f.replace(/\.md$/, ''),
  completion: readFileSync(join(srcDir, f), 'utf8'),
}) + '\n');
writeFileSync(join(here, 'shapes.jsonl'), out.join(''));
console.log(`shapes.jsonl: ${out.length} replies`);

if (problems.length) {
  for (const p of problems) console.error(`build.mjs: ${p}`);
  process.exit(1);
}

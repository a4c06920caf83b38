// The differential suite: every case in cases/<name>/ (a rule.yml and its inputs) runs through
// `astgate scan` and the pinned ast-grep CLI (bench/package-lock.json); the matches (rule, byte
// range, line/column range, text, replacement) and the files each one fixes must be equal.
// known-differences.json lists the cases where the tools differ, each with its reason. Kind
// "ast-grep-wrong": ast-grep is visibly wrong; the match ranges must still agree, astgate's fixed
// files must equal cases/<name>/expected/<input>, and ast-grep's must still differ from them.
// Kind "astgate-bug": astgate is wrong and the bug is open; the case runs as a todo (reported,
// not failing) until it is fixed and the entry removed.
// Kind "astgate-declines": astgate does not apply the fix on purpose and flags the match with
// the entry's "flag" as its reason; the match ranges agree, astgate's fixed files equal
// cases/<name>/expected/<input> and ast-grep's differ from them.
// A case named refused-* holds a rule both tools must refuse: ast-grep exits non-zero, astgate
// exits 1 with the cause at rule.yml:line:col.
//   ASTGATE_BIN=build/asan/astgate AST_GREP_BIN=bench/node_modules/.bin/ast-grep \
//     node --test tests/parity/parity.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const astgate = process.env.ASTGATE_BIN ? resolve(process.env.ASTGATE_BIN) : join(root, 'build/astgate');
const sg = process.env.AST_GREP_BIN ? resolve(process.env.AST_GREP_BIN)
  : join(root, 'bench/node_modules/.bin/ast-grep');
const known = JSON.parse(readFileSync(join(here, 'known-differences.json'), 'utf8'));
const casesDir = join(here, 'cases');
const cases = readdirSync(casesDir).sort();
const skip = existsSync(sg) ? false : `no ${sg} (npm ci in bench/ failed or npm is missing)`;

// stdin closed (ast-grep would read it), a bound on every run (no hang without a report)
const opts = (cwd) => ({
  cwd, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'],
});

function run(bin, args, cwd) {
  return execFileSync(bin, args, opts(cwd));
}

function inputsOf(dir) {
  return readdirSync(dir).filter((f) => /\.(ts|tsx|js|jsx)$/.test(f)).sort();
}

// A match as both tools print it, reduced to what is compared.
function norm(m) {
  const r = m.range;
  const o = {
    ruleId: m.ruleId,
    file: m.file,
    bytes: [r.byteOffset.start, r.byteOffset.end],
    start: [r.start.line, r.start.column],
    end: [r.end.line, r.end.column],
    text: m.text,
  };
  if (m.replacement !== undefined) o.replacement = m.replacement;
  return o;
}

function order(a, b) {
  return a.file.localeCompare(b.file) || a.bytes[0] - b.bytes[0] || b.bytes[1] - a.bytes[1] ||
    a.ruleId.localeCompare(b.ruleId);
}

function matches(out) {
  return out.split('\n').filter((l) => l.trim()).map((l) => norm(JSON.parse(l))).sort(order);
}

// Runs one tool over a copy of the inputs: its matches and the files after its fixes.
function runTool(tool, rule, dir, files) {
  const work = mkdtempSync(join(tmpdir(), `parity-${tool}-`));
  try {
    for (const f of files) cpSync(join(dir, f), join(work, f));
    let out, fixed = {};
    if (tool === 'ast-grep') {
      out = run(sg, ['scan', '-r', rule, '--json=stream', ...files], work);
      run(sg, ['scan', '-r', rule, '--update-all', ...files], work);
    } else {
      out = run(astgate, ['scan', '--rules', rule, '--json', '-U', ...files], work);
    }
    for (const f of files) fixed[f] = readFileSync(join(work, f), 'utf8');
    return { list: matches(out), raw: out, fixed };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// Both tools refuse the rule; astgate says where.
function checkRefused(name, rule, dir, files) {
  const sgRun = spawnSync(sg, ['scan', '-r', rule, ...files], opts(dir));
  assert.notEqual(sgRun.status, 0, `${name}: ast-grep accepts the rule`);
  const a = spawnSync(astgate, ['scan', '--rules', rule, ...files], opts(dir));
  assert.equal(a.status, 1, `${name}: astgate accepts the rule (exit ${a.status}): ${a.stdout}`);
  assert.equal(a.stdout, '');
  const esc = rule.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(a.stderr, new RegExp(`^${esc}:\\d+:\\d+: \\S`), `${name}: no file:line:col`);
}

for (const name of cases) {
  const dir = join(casesDir, name);
  const rule = join(dir, 'rule.yml');
  const files = inputsOf(dir);
  const diff = known[name];
  const todo = diff?.kind === 'astgate-bug' ? diff.reason : false;
  test(name, { skip, todo }, () => {
    assert.ok(files.length > 0, `${name}: no input files`);
    if (name.startsWith('refused-')) return checkRefused(name, rule, dir, files);
    const a = runTool('astgate', rule, dir, files);
    const s = runTool('ast-grep', rule, dir, files);
    assert.ok(s.list.length > 0, `${name}: ast-grep finds nothing: the case tests nothing`);
    if (diff?.kind === 'ast-grep-wrong' || diff?.kind === 'astgate-declines') {
      // ast-grep is wrong here: the ranges still agree, the fix is checked against expected/
      const strip = (l) => l.map(({ replacement, ...rest }) => rest);
      assert.deepEqual(strip(a.list), strip(s.list), `${name}: match ranges differ`);
      if (diff.kind === 'astgate-declines') {
        const flagged = a.raw.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
          .filter((m) => m.action === 'flag' && m.reason === diff.flag);
        assert.ok(flagged.length > 0, `${name}: astgate flags no match with "${diff.flag}"`);
      }
      for (const f of files) {
        const want = readFileSync(join(dir, 'expected', f), 'utf8');
        assert.equal(a.fixed[f], want, `${name}/${f}: astgate's fix is not the expected one`);
        assert.notEqual(s.fixed[f], want,
          `${name}/${f}: ast-grep now gives the expected fix: remove the case from known-differences.json`);
      }
      return;
    }
    assert.deepEqual(a.list, s.list, `${name}: matches differ (actual: astgate, expected: ast-grep)`);
    for (const f of files)
      assert.equal(a.fixed[f], s.fixed[f],
        `${name}/${f}: fixed file differs (actual: astgate, expected: ast-grep)`);
  });
}

test('known-differences.json names existing cases, each with a reason', () => {
  for (const [name, d] of Object.entries(known)) {
    assert.ok(cases.includes(name), `${name}: no such case`);
    assert.ok(typeof d.reason === 'string' && d.reason.length > 0, `${name}: no reason`);
    assert.ok(['ast-grep-wrong', 'astgate-bug', 'astgate-declines'].includes(d.kind),
      `${name}: unknown kind ${d.kind}`);
    if (d.kind === 'astgate-declines')
      assert.ok(typeof d.flag === 'string' && d.flag.length > 0, `${name}: no flag`);
  }
});

test('astgate scan says so when it stops reporting at 4096 matches', () => {
  const work = mkdtempSync(join(tmpdir(), 'parity-many-'));
  try {
    writeFileSync(join(work, 'many.ts'), 'var a = 1;\n'.repeat(4100));
    const r = spawnSync(astgate, ['scan', '--rules', join(root, 'rules/examples/no-var.yml'), '--json',
      'many.ts'], opts(work));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter(Boolean).length, 4096);
    assert.match(r.stderr, /many\.ts: stopped at 4096 matches; the rest are not reported/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

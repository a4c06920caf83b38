// A bad configuration or rule set never starts the proxy: `astgate serve` exits 1 and names the
// file, line and column of the cause; `serve --check` validates like `nginx -t`.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NEEDS_PROXY, BIN, ROOT, RULES, tmpDir, writeRules } from './helpers.mjs';

function serve(args) {
    return spawnSync(BIN, ['serve', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
}

describe('configuration errors', { skip: NEEDS_PROXY }, () => {
    it('an unknown key in astgate.yaml stops the start with file:line:col', () => {
        const file = path.join(tmpDir(), 'astgate.yaml');
        fs.writeFileSync(file, 'listen: 127.0.0.1:0\nupstraem: http://127.0.0.1:9\n');
        const r = serve(['--config', file]);
        assert.equal(r.status, 1, r.stderr);
        assert.ok(r.stderr.includes(`${file}:2:1: unknown key \`upstraem\``), r.stderr);
        assert.ok(!r.stderr.includes('listening on'), r.stderr);
    });

    it('a bad rule file stops the start with file:line:col', () => {
        const rules = writeRules('id: x\nlanguage: ts\nrule:\n  pattren: foo($A)\n');
        const r = serve(['--listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:9', '--rules', rules]);
        assert.equal(r.status, 1, r.stderr);
        assert.ok(r.stderr.includes(`${rules}:4:3: unknown field \`pattren\``), r.stderr);
        assert.ok(!r.stderr.includes('listening on'), r.stderr);
    });

    it('tools: in astgate.yaml is checked by --check: a bad entry names file:line:col', () => {
        const dir = tmpDir();
        const good = path.join(dir, 'good.yaml');
        fs.writeFileSync(good, [
            'listen: 127.0.0.1:0',
            'tools:',
            '  my_write: {file: path, whole: [content]}',
            '  my_edit: {file: file_path, fragment: [new_text, "changes[*].new"]}',
            '  my_patch: {patch: [patchText, ""]}',
            '  Write: off',
            '',
        ].join('\n'));
        let r = serve(['--config', good, '--check']);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /configuration .*good\.yaml ok/);
        const bad = path.join(dir, 'bad.yaml');
        fs.writeFileSync(bad, 'tools:\n  my_edit: {file: file_path, fragment: ["changes[x].new"]}\n');
        r = serve(['--config', bad, '--check']);
        assert.equal(r.status, 1, r.stderr);
        assert.ok(r.stderr.includes(`${bad}:2:41: \`tools.my_edit.fragment\`: \`changes[x].new\` is not an argument path`), r.stderr);
        fs.writeFileSync(bad, 'tools:\n  write: off\n');
        r = serve(['--config', bad, '--check']);
        assert.equal(r.status, 1, r.stderr);
        assert.ok(r.stderr.includes(`${bad}:2:3: \`tools.write: off\`: there is no built-in tool \`write\``), r.stderr);
    });

    it('--check validates and exits', () => {
        const r = serve(['--check', '--rules', RULES]);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /configuration \(embedded default\) ok \(1 rule\)/);
    });
});

// Text helpers for the hold bench (bench/hold/hold.js): the golden corpus, the fenced blocks of a
// reply as astgate's engine finds them (src/engine/fence.h, default fence languages, bare replies),
// the seeded cut of a reply into deltas, and the alignment of a rewritten reply on its original.
// Offsets are JavaScript string indices (UTF-16 units); a delta never splits a surrogate pair.
'use strict';
const fs = require('fs');
const path = require('path');

// The golden replies: tests/golden/*/input.md, tool-call cases (tool.txt) left out. expected is
// the non-streamed rewrite (expected.md, or the input itself when the case has none).
function loadCorpus(dir) {
    const out = [];
    for (const name of fs.readdirSync(dir).sort()) {
        const d = path.join(dir, name);
        if (fs.existsSync(path.join(d, 'tool.txt')) || !fs.existsSync(path.join(d, 'input.md')))
            continue;
        const input = fs.readFileSync(path.join(d, 'input.md'), 'utf8');
        const exp = path.join(d, 'expected.md');
        const expected = fs.existsSync(exp) ? fs.readFileSync(exp, 'utf8') : input;
        out.push({name, input, expected});
    }
    return out;
}

// ag_fence_langs_default (src/engine/fence.h): the languages the rules look at, "" = unlabeled.
const RULE_LANGS = new Set(['ts', 'typescript', 'tsx', 'js', 'javascript', 'jsx', 'mts', 'cts',
    'mjs', 'cjs', '']);

// ag_engine_bare_start (src/engine/rewrite.c): a reply without fences that starts like this is
// one bare block.
const BARE_STARTS = ['import ', 'import{', 'export ', 'const ', 'let ', 'var ', 'function ',
    'async ', 'class ', 'interface ', 'type ', 'enum ', 'new ', '//', '/*', "'use ", '"use ', '@',
    'declare ', 'module.exports', 'require(', 'abstract '];

function bareStart(s) {
    const rest = s.replace(/^[ \t\r\n]*/, '');
    return BARE_STARTS.some((p) => rest.startsWith(p));
}

// The fenced blocks of s, CommonMark fences as src/engine/fence.h states them: 0-3 spaces, 3+
// backticks or tildes (a backtick opener's info has no backtick); closed by a line of 0-3 spaces,
// a run of the same character at least as long, then only spaces/tabs. A CR before LF (or last)
// belongs to the line ending. Each block: {openStart, start, end, closeStart, closeEnd, regionEnd,
// lang, rule, closed, bare}. [start, end) is the code; [openStart, regionEnd) is the block with
// its fence lines (and the closing line's line ending); rule: the rules look at this block.
function scanBlocks(s) {
    const blocks = [];
    const n = s.length;
    let pos = 0;
    let open = null;
    while (pos < n) {
        const eol = s.indexOf('\n', pos);
        const next = eol < 0 ? n : eol + 1;
        let lineEnd = eol < 0 ? n : eol;
        if (lineEnd > pos && s[lineEnd - 1] === '\r')
            lineEnd--;
        const line = s.slice(pos, lineEnd);
        if (!open) {
            const m = /^ {0,3}(`{3,}|~{3,})([^]*)$/.exec(line);
            if (m && !(m[1][0] === '`' && m[2].includes('`'))) {
                const info = m[2].replace(/^[ \t]+|[ \t]+$/g, '');
                const lang = info.split(/[ \t]/)[0].toLowerCase();
                open = {ch: m[1][0], len: m[1].length, lang, openStart: pos, start: next};
            }
        } else {
            const m = /^ {0,3}(`+|~+)[ \t]*$/.exec(line);
            if (m && m[1][0] === open.ch && m[1].length >= open.len) {
                blocks.push(block(open, pos, lineEnd, next, true));
                open = null;
            }
        }
        pos = next;
    }
    if (open)
        blocks.push(block(open, n, n, n, false));
    if (blocks.length === 0 && bareStart(s))
        blocks.push({openStart: 0, start: 0, end: n, closeStart: n, closeEnd: n, regionEnd: n,
            lang: '', rule: true, closed: false, bare: true});
    return blocks;
}

function block(open, end, closeEnd, regionEnd, closed) {
    return {openStart: open.openStart, start: Math.min(open.start, end), end, closeStart: end,
        closeEnd, regionEnd, lang: open.lang, rule: RULE_LANGS.has(open.lang), closed,
        bare: false};
}

// Per character of s: 'c' code the rules look at, 'p' prose (outside every block and its fence
// lines), 'o' other (fence lines, blocks in other languages). Also the index of the rule block
// (among rule blocks) each code character belongs to, -1 elsewhere.
function classify(s, blocks) {
    const kind = new Array(s.length).fill('p');
    const blk = new Int32Array(s.length).fill(-1);
    let k = 0;
    for (const b of blocks) {
        for (let i = b.openStart; i < b.regionEnd; i++)
            kind[i] = 'o';
        if (b.rule) {
            for (let i = b.start; i < b.end; i++) {
                kind[i] = 'c';
                blk[i] = k;
            }
            k++;
        }
    }
    return {kind, blk};
}

// mulberry32: a small seeded generator, so a case is cut the same way in every mode and round.
function rng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6D2B79F5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function hash(str) {
    let h = 2166136261;
    for (let i = 0; i < str.length; i++)
        h = Math.imul(h ^ str.charCodeAt(i), 16777619);
    return h >>> 0;
}

// s cut into deltas of minLen..maxLen units (seeded by key), each with the time it is due at
// `rate` characters per second: a delta is due when every character before it has had its time,
// so a 4-character delta is followed 5 ms later at 800/s, an 8-character one 10 ms later.
function cutDeltas(s, key, minLen, maxLen, rate) {
    const r = rng(hash(key));
    const out = [];
    let off = 0;
    while (off < s.length) {
        let len = minLen + Math.floor(r() * (maxLen - minLen + 1));
        let end = Math.min(s.length, off + len);
        const c = s.charCodeAt(end - 1);
        if (end < s.length && c >= 0xD800 && c <= 0xDBFF)
            end++; // keep a surrogate pair together
        out.push({off, len: end - off, due: off * 1000 / rate});
        off = end;
    }
    return out;
}

// Aligns b (the text the client assembled) on a (the reply the upstream sent): map[j] = the index
// in a of b[j] when b[j] is an unchanged character, -1 when the rewrite put it there. The common
// prefix and suffix are unchanged; in between, a longest common subsequence, keeping only runs of
// at least minRun characters that advance together in a and b (a shorter run inside a changed
// span, such as the "gpt-4" shared by 'gpt-4o' and 'gpt-4.1-nano', counts as changed).
function align(a, b, minRun = 4) {
    const map = new Int32Array(b.length).fill(-1);
    let p = 0;
    while (p < a.length && p < b.length && a[p] === b[p])
        p++;
    let s = 0;
    while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s])
        s++;
    for (let j = 0; j < p; j++)
        map[j] = j;
    for (let t = 0; t < s; t++)
        map[b.length - 1 - t] = a.length - 1 - t;
    const A = a.slice(p, a.length - s);
    const B = b.slice(p, b.length - s);
    const n = A.length, m = B.length;
    if (n === 0 || m === 0)
        return map;
    // L[i][j] = LCS of A[i..] and B[j..]
    const w = m + 1;
    const L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--)
        for (let j = m - 1; j >= 0; j--)
            L[i * w + j] = A[i] === B[j] ? L[(i + 1) * w + j + 1] + 1
                : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
    const pairs = [];
    for (let i = 0, j = 0; i < n && j < m;) {
        if (A[i] === B[j] && L[i * w + j] === L[(i + 1) * w + j + 1] + 1) {
            pairs.push([i, j]);
            i++;
            j++;
        } else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) {
            i++;
        } else {
            j++;
        }
    }
    for (let k = 0; k < pairs.length;) {
        let e = k + 1;
        while (e < pairs.length && pairs[e][0] === pairs[e - 1][0] + 1 &&
               pairs[e][1] === pairs[e - 1][1] + 1)
            e++;
        if (e - k >= minRun)
            for (let q = k; q < e; q++)
                map[p + pairs[q][1]] = p + pairs[q][0];
        k = e;
    }
    return map;
}

module.exports = {loadCorpus, scanBlocks, classify, cutDeltas, align, hash, RULE_LANGS};

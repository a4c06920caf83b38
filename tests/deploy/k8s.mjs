// Checks deploy/k8s: renders the kustomization (kubectl kustomize's output when run.sh passes one,
// and always this file's own rendering of kustomization.yaml's resources and configMapGenerator),
// validates every object against the Kubernetes schemas of kubernetes-models by apiVersion/kind,
// refusing fields the schema does not know, and checks what astgate needs of each object. Also
// checks the image's and the ConfigMap's astgate.yaml against the embedded default.
//
//   node k8s.mjs ROOT [KUBECTL_RENDERED.yaml]
//
// One line per check: `ok - ...`, `not ok - ...: why`, `skip - ...: why`. Exit 1 on any failure.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import YAML from 'yaml';

const root = path.resolve(process.argv[2] || '../..');
const kubectlRendered = process.argv[3];
const k8sDir = path.join(root, 'deploy/k8s');
let failed = 0;

function ok(name) {
    console.log(`ok - ${name}`);
}
function notOk(name, why) {
    failed++;
    console.log(`not ok - ${name}: ${why}`);
}
function skip(name, why) {
    console.log(`skip - ${name}: ${why}`);
}
// runs fn; a thrown Error is the failure's reason, a returned string is a skip's reason
async function check(name, fn) {
    try {
        const r = await fn();
        if (typeof r === 'string') skip(name, r);
        else ok(name);
    } catch (e) {
        notOk(name, e && e.message ? e.message : String(e));
    }
}
function expect(cond, why) {
    if (!cond) throw new Error(why);
}

function parseDocs(text, file) {
    const docs = YAML.parseAllDocuments(text);
    const out = [];
    for (const d of docs) {
        if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
        const v = d.toJS();
        if (v !== null && v !== undefined) out.push(v);
    }
    return out;
}

// ---- kustomize, the part this kustomization uses ----

const KUSTOMIZE_KEYS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'generatorOptions', 'images']);

function suffixHash(data) {
    // kustomize's own hash is over its JSON encoding; any content hash does for these checks
    const h = crypto.createHash('sha256').update(JSON.stringify(Object.entries(data).sort())).digest('hex');
    return h.slice(0, 10);
}

// every place a pod template names a ConfigMap: kustomize rewrites these to the generated name
function renameConfigMapRefs(obj, names) {
    const spec = obj.spec && obj.spec.template && obj.spec.template.spec;
    if (!spec) return;
    const fix = (ref) => {
        if (ref && names.has(ref.name)) ref.name = names.get(ref.name);
    };
    for (const v of spec.volumes || []) {
        fix(v.configMap);
        for (const s of (v.projected && v.projected.sources) || []) fix(s.configMap);
    }
    for (const c of [...(spec.containers || []), ...(spec.initContainers || [])]) {
        for (const e of c.env || []) fix(e.valueFrom && e.valueFrom.configMapKeyRef);
        for (const e of c.envFrom || []) fix(e.configMapRef);
    }
}

function setImages(obj, images) {
    const spec = obj.spec && obj.spec.template && obj.spec.template.spec;
    if (!spec) return;
    for (const c of [...(spec.containers || []), ...(spec.initContainers || [])]) {
        const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image);
        for (const im of images) {
            if (m[1] !== im.name) continue;
            let ref = im.newName || m[1];
            if (im.digest) ref += `@${im.digest}`;
            else if (im.newTag) ref += `:${im.newTag}`;
            else if (m[2]) ref += `:${m[2]}`;
            c.image = ref;
        }
    }
}

function renderKustomization(dir) {
    const kfile = path.join(dir, 'kustomization.yaml');
    const k = YAML.parse(fs.readFileSync(kfile, 'utf8'));
    for (const key of Object.keys(k)) {
        if (!KUSTOMIZE_KEYS.has(key))
            throw new Error(`kustomization.yaml: \`${key}\` is not handled by this renderer (install kubectl, or extend tests/deploy/k8s.mjs)`);
    }
    const objs = [];
    for (const r of k.resources || []) {
        const f = path.join(dir, r);
        expect(fs.existsSync(f) && fs.statSync(f).isFile(), `resource ${r}: not a file in deploy/k8s`);
        objs.push(...parseDocs(fs.readFileSync(f, 'utf8'), r));
    }
    const names = new Map();
    const gopts = k.generatorOptions || {};
    for (const g of k.configMapGenerator || []) {
        const data = {};
        for (const spec of g.files || []) {
            const eq = spec.indexOf('=');
            const key = eq >= 0 ? spec.slice(0, eq) : path.basename(spec);
            const file = eq >= 0 ? spec.slice(eq + 1) : spec;
            const abs = path.resolve(dir, file);
            expect(abs.startsWith(dir + path.sep), `configMapGenerator ${g.name}: ${file} is outside deploy/k8s (kustomize refuses it)`);
            expect(!(key in data), `configMapGenerator ${g.name}: key ${key} twice`);
            data[key] = fs.readFileSync(abs, 'utf8');
        }
        for (const lit of g.literals || []) {
            const eq = lit.indexOf('=');
            data[lit.slice(0, eq)] = lit.slice(eq + 1);
        }
        const opts = { ...gopts, ...(g.options || {}) };
        const name = opts.disableNameSuffixHash ? g.name : `${g.name}-${suffixHash(data)}`;
        names.set(g.name, name);
        const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data };
        if (opts.labels) cm.metadata.labels = { ...opts.labels };
        if (opts.annotations) cm.metadata.annotations = { ...opts.annotations };
        objs.push(cm);
    }
    for (const o of objs) {
        renameConfigMapRefs(o, names);
        setImages(o, k.images || []);
    }
    return objs;
}

// objects compared with generated names' hash suffixes taken off
function normalise(objs, generated) {
    const strip = (n) => {
        for (const g of generated) if (n.startsWith(`${g}-`) && /^[a-z0-9]{10}$/.test(n.slice(g.length + 1))) return g;
        return n;
    };
    const s = JSON.stringify(objs, (key, v) => (typeof v === 'string' ? strip(v) : v));
    const out = JSON.parse(s);
    out.sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
    return out;
}

// ---- schemas ----

// the schema's validator reads every property it knows; a property it never read is unknown
// (the API server refuses those under kubectl's default strict field validation)
function tracked(value, at, seen) {
    if (value === null || typeof value !== 'object') return value;
    return new Proxy(value, {
        get(target, prop, recv) {
            if (typeof prop === 'string') seen.add(`${at}/${prop}`);
            const v = Reflect.get(target, prop, recv);
            return typeof prop === 'string' ? tracked(v, `${at}/${prop}`, seen) : v;
        },
    });
}

function unknownFields(value, at, seen, out) {
    if (value === null || typeof value !== 'object') return;
    for (const k of Object.keys(value)) {
        const p = `${at}/${k}`;
        if (!seen.has(p)) out.push(p);
        else unknownFields(value[k], p, seen, out);
    }
}

async function modelFor(apiVersion, kind) {
    const slash = apiVersion.indexOf('/');
    const group = slash < 0 ? '' : apiVersion.slice(0, slash);
    const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
    const candidates = group === 'monitoring.coreos.com'
        ? [`@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`]
        : [group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`];
    for (const spec of candidates) {
        try {
            const mod = await import(spec);
            if (mod[kind]) return mod[kind];
        } catch (e) {
            if (e.code !== 'ERR_MODULE_NOT_FOUND' && e.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e;
        }
    }
    return null;
}

async function validateObject(o) {
    expect(o && typeof o.apiVersion === 'string' && typeof o.kind === 'string', 'no apiVersion/kind');
    const Model = await modelFor(o.apiVersion, o.kind);
    expect(Model, `kubernetes-models has no schema for ${o.apiVersion} ${o.kind}`);
    const seen = new Set();
    try {
        Model.prototype.validate.call(tracked(o, '', seen));
    } catch (e) {
        const errs = (e.errors || []).map((x) => `${x.instancePath || '/'} ${x.message}`);
        throw new Error(errs.length ? errs.join('; ') : e.message);
    }
    const unknown = [];
    unknownFields(o, '', seen, unknown);
    expect(unknown.length === 0, `field(s) not in the ${o.apiVersion} ${o.kind} schema: ${unknown.join(', ')}`);
}

// ---- astgate's configuration ----

// the embedded default, from the C string in src/cli/config.c
function embeddedDefault() {
    const src = fs.readFileSync(path.join(root, 'src/cli/config.c'), 'utf8');
    const m = /ag_config_default_yaml\[\]\s*=\s*((?:\s*"(?:[^"\\]|\\.)*")+)\s*;/.exec(src);
    if (!m) return null;
    let text = '';
    for (const lit of m[1].matchAll(/"((?:[^"\\]|\\.)*)"/g))
        text += lit[1].replace(/\\(.)/g, (_, c) => ({ n: '\n', t: '\t', '"': '"', '\\': '\\' })[c] ?? c);
    return YAML.parse(text);
}

// every key the file sets has the default's value, but those in `changed`
function sameDefaults(cfg, def, changed, at = '') {
    const diffs = [];
    for (const [k, v] of Object.entries(cfg)) {
        const p = at ? `${at}.${k}` : k;
        if (changed.includes(p)) continue;
        if (!(k in def)) {
            if (!changed.includes(`${p}?`)) diffs.push(`${p} is not in the embedded default`);
        } else if (v && typeof v === 'object' && !Array.isArray(v) && def[k] && typeof def[k] === 'object') {
            diffs.push(...sameDefaults(v, def[k], changed, p));
        } else if (!isDeepStrictEqual(v, def[k])) {
            diffs.push(`${p}: ${JSON.stringify(v)} (default ${JSON.stringify(def[k])})`);
        }
    }
    return diffs;
}

function port(hostport) {
    const m = /:(\d+)$/.exec(String(hostport || ''));
    return m ? Number(m[1]) : null;
}

// "2", "1500m" -> cores; "128Mi", "1Gi", "500M" -> bytes
function cpu(q) {
    const s = String(q);
    return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}
function bytes(q) {
    const m = /^(\d+(?:\.\d+)?)([KMGT]i?)?$/.exec(String(q));
    if (!m) return NaN;
    const unit = { K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
    return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}

function matches(selector, labels) {
    return Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);
}

// ---- main ----

let objs = null;
await check('k8s: kustomization.yaml renders (resources, configMapGenerator) without kubectl', () => {
    objs = renderKustomization(k8sDir);
    expect(objs.length > 0, 'no object');
});

if (kubectlRendered) {
    await check('k8s: kubectl kustomize renders the same objects as the fallback renderer', () => {
        const kobjs = parseDocs(fs.readFileSync(kubectlRendered, 'utf8'), 'kubectl kustomize output');
        const k = YAML.parse(fs.readFileSync(path.join(k8sDir, 'kustomization.yaml'), 'utf8'));
        const gen = (k.configMapGenerator || []).map((g) => g.name);
        expect(objs, 'the fallback rendering failed');
        const a = normalise(kobjs, gen);
        const b = normalise(objs, gen);
        const ka = a.map((o) => `${o.kind}/${o.metadata.name}`).join(' ');
        const kb = b.map((o) => `${o.kind}/${o.metadata.name}`).join(' ');
        expect(ka === kb, `kubectl: ${ka}; fallback: ${kb}`);
        for (let i = 0; i < a.length; i++)
            expect(isDeepStrictEqual(a[i], b[i]), `${a[i].kind}/${a[i].metadata.name} differs`);
        objs = kobjs; // the rest checks what kubectl apply -k would send
    });
} else {
    skip('k8s: kubectl kustomize renders the same objects as the fallback renderer', 'kubectl is not installed: the fallback rendering is checked');
}

if (!objs) {
    console.log(`k8s: rendering failed, nothing more to check`);
    process.exit(1);
}

for (const o of objs) {
    const name = `k8s: schema ${o.apiVersion} ${o.kind} ${o.metadata && o.metadata.name}`;
    try {
        await validateObject(o);
        ok(name);
    } catch (e) {
        notOk(name, e.message);
    }
}

const find = (kind, apiVersion) => objs.filter((o) => o.kind === kind && (!apiVersion || o.apiVersion === apiVersion));
const dep = find('Deployment')[0];
const svc = find('Service')[0];
const cms = find('ConfigMap');
const podSpec = dep && dep.spec && dep.spec.template && dep.spec.template.spec;
const container = podSpec && (podSpec.containers || []).find((c) => c.name === 'astgate');
const podLabels = dep && dep.spec.template.metadata && dep.spec.template.metadata.labels;

await check('k8s: a Deployment with the container astgate', () => {
    expect(dep, 'no Deployment');
    expect(container, 'no container named astgate');
    expect(find('Deployment').length === 1, 'more than one Deployment');
});

// the ConfigMap the Deployment mounts at /etc/astgate, and astgate.yaml in it
let mount = null;
let volume = null;
let cm = null;
let cfg = null;
await check('k8s: the ConfigMap is mounted read-only at /etc/astgate, astgate.yaml and every rules file in it', () => {
    expect(container, 'no container');
    mount = (container.volumeMounts || []).find((m) => m.mountPath === '/etc/astgate');
    expect(mount, 'no volumeMount at /etc/astgate');
    volume = (podSpec.volumes || []).find((v) => v.name === mount.name);
    expect(volume && volume.configMap, `volume ${mount.name} is not a configMap volume`);
    cm = cms.find((c) => c.metadata.name === volume.configMap.name);
    expect(cm, `the volume names ConfigMap ${volume.configMap.name}, which the kustomization does not make`);
    const files = new Map(); // path under /etc/astgate -> key
    const missing = [];
    if (volume.configMap.items) {
        for (const it of volume.configMap.items) {
            if (it.key in cm.data) files.set(it.path, it.key);
            else missing.push(it.key);
        }
    } else {
        for (const k of Object.keys(cm.data)) files.set(k, k);
    }
    expect(files.has('astgate.yaml'), 'no astgate.yaml at /etc/astgate/astgate.yaml');
    cfg = YAML.parse(cm.data[files.get('astgate.yaml')]);
    expect(missing.length === 0, `items: key(s) ${missing.join(', ')} not in the ConfigMap`);
    const rules = cfg.rules || ['rules/mastra.yaml'];
    for (const r of rules) {
        expect(!path.isAbsolute(r) || r.startsWith('/etc/astgate/'), `rules ${r} is outside the mount`);
        const rel = path.isAbsolute(r) ? r.slice('/etc/astgate/'.length) : path.normalize(r);
        expect(files.has(rel), `rules: ${r} is not mounted (paths: ${[...files.keys()].join(', ')})`);
    }
    const args = [...(container.command || []), ...(container.args || [])];
    const i = args.indexOf('--config');
    expect(i >= 0 && args[i + 1] === '/etc/astgate/astgate.yaml', `the container does not run with --config /etc/astgate/astgate.yaml: ${JSON.stringify(args)}`);
    const size = Object.values(cm.data).reduce((n, v) => n + Buffer.byteLength(v), 0);
    expect(size < 1024 * 1024, `the ConfigMap holds ${size} bytes: over the 1 MiB limit`);
});

await check('k8s: the mount is readOnly, without subPath (which never sees a ConfigMap update)', () => {
    expect(mount, 'no volumeMount at /etc/astgate');
    expect(mount.readOnly === true, 'the mount is not readOnly');
    expect(!mount.subPath && !mount.subPathExpr, 'a subPath mount');
});

await check('k8s: the ConfigMap\'s rules are the repository\'s rules/ byte for byte', () => {
    const mine = fs.readdirSync(path.join(root, 'rules')).filter((f) => f.endsWith('.yaml')).sort();
    for (const f of mine) {
        const a = fs.readFileSync(path.join(root, 'rules', f));
        const p = path.join(k8sDir, 'rules', f);
        expect(fs.existsSync(p), `deploy/k8s/rules/${f} is missing: cp rules/${f} deploy/k8s/rules/ (and add it to configMapGenerator, the volume's items and astgate.yaml)`);
        expect(a.equals(fs.readFileSync(p)), `deploy/k8s/rules/${f} differs from rules/${f}: cp rules/${f} deploy/k8s/rules/`);
    }
    for (const f of fs.readdirSync(path.join(k8sDir, 'rules')))
        expect(mine.includes(f), `deploy/k8s/rules/${f} is not in rules/`);
});

const def = (() => {
    try {
        return embeddedDefault();
    } catch {
        return null;
    }
})();

await check('k8s: astgate.yaml keeps the embedded defaults but listen, admin and workers', () => {
    expect(cfg, 'no astgate.yaml');
    if (!def) return 'the embedded default was not found in src/cli/config.c';
    const diffs = sameDefaults(cfg, def, ['listen', 'admin?', 'workers']);
    expect(diffs.length === 0, diffs.join('; '));
});

await check('image: deploy/astgate.yaml keeps the embedded defaults but listen 0.0.0.0:8080', () => {
    const img = YAML.parse(fs.readFileSync(path.join(root, 'deploy/astgate.yaml'), 'utf8'));
    expect(img.listen === '0.0.0.0:8080', `listen is ${img.listen}`);
    expect(JSON.stringify(img.rules) === JSON.stringify(['rules/mastra.yaml']), `rules are ${JSON.stringify(img.rules)}`);
    if (!def) return 'the embedded default was not found in src/cli/config.c';
    const diffs = sameDefaults(img, def, ['listen', 'admin?']);
    expect(diffs.length === 0, diffs.join('; '));
});

// the ports astgate listens on, as the Deployment names them
const ports = new Map(((container && container.ports) || []).map((p) => [p.name, p.containerPort]));
const resolvePort = (p) => (typeof p === 'number' ? p : ports.get(p));

await check('k8s: container ports match astgate.yaml (http = listen, admin = admin)', () => {
    expect(cfg, 'no astgate.yaml');
    expect(ports.get('http') === port(cfg.listen), `port http ${ports.get('http')}, listen ${cfg.listen}`);
    expect(String(cfg.listen).startsWith('0.0.0.0:') || String(cfg.listen).startsWith('[::]:'), `listen ${cfg.listen} is not reachable from outside the pod`);
    if (cfg.admin) expect(ports.get('admin') === port(cfg.admin), `port admin ${ports.get('admin')}, admin ${cfg.admin}`);
});

const probePort = cfg && cfg.admin ? port(cfg.admin) : cfg && port(cfg.listen);
await check('k8s: livenessProbe GET /healthz on the port that serves it', () => {
    const p = container.livenessProbe && container.livenessProbe.httpGet;
    expect(p, 'no livenessProbe.httpGet');
    expect(p.path === '/healthz', `path ${p.path}`);
    expect(resolvePort(p.port) === probePort, `port ${p.port}: /healthz is on ${probePort}`);
});
await check('k8s: readinessProbe GET /readyz on the port that serves it', () => {
    const p = container.readinessProbe && container.readinessProbe.httpGet;
    expect(p, 'no readinessProbe.httpGet');
    expect(p.path === '/readyz', `path ${p.path}`);
    expect(resolvePort(p.port) === probePort, `port ${p.port}: /readyz is on ${probePort}`);
});

let preStopSeconds = 0;
await check('k8s: a preStop hook that waits for the load balancer, without a shell', () => {
    const h = container.lifecycle && container.lifecycle.preStop;
    expect(h, 'no lifecycle.preStop');
    expect(!h.exec, 'an exec hook: the image has no shell and no sleep binary');
    if (h.sleep) {
        preStopSeconds = h.sleep.seconds;
        expect(Number.isInteger(preStopSeconds) && preStopSeconds >= 1, `sleep.seconds ${preStopSeconds}`);
    } else {
        expect(h.httpGet, 'neither sleep nor httpGet');
    }
});

await check('k8s: terminationGracePeriodSeconds > preStop + timeouts.drain_ms', () => {
    const drainMs = (cfg && cfg.timeouts && cfg.timeouts.drain_ms) ?? (def && def.timeouts && def.timeouts.drain_ms) ?? 30000;
    const g = podSpec.terminationGracePeriodSeconds;
    expect(Number.isInteger(g), 'terminationGracePeriodSeconds is not set (default 30 s)');
    expect(g > preStopSeconds + drainMs / 1000, `${g} s <= ${preStopSeconds} s + ${drainMs} ms`);
});

await check('k8s: securityContext: runAsNonRoot, the image\'s user, readOnlyRootFilesystem, no privilege escalation, capabilities dropped', () => {
    const pod = podSpec.securityContext || {};
    const c = container.securityContext || {};
    expect((c.runAsNonRoot ?? pod.runAsNonRoot) === true, 'runAsNonRoot is not true');
    const uid = c.runAsUser ?? pod.runAsUser;
    const df = fs.readFileSync(path.join(root, 'deploy/Dockerfile'), 'utf8');
    const m = /^USER\s+(\d+)(?::(\d+))?\s*$/m.exec(df);
    expect(m, 'deploy/Dockerfile has no numeric USER');
    expect(uid === undefined || uid === Number(m[1]), `runAsUser ${uid}, the image's USER ${m[1]}`);
    expect(c.readOnlyRootFilesystem === true, 'readOnlyRootFilesystem is not true');
    expect(c.allowPrivilegeEscalation === false, 'allowPrivilegeEscalation is not false');
    expect(!c.privileged, 'privileged');
    const drop = (c.capabilities && c.capabilities.drop) || [];
    expect(drop.includes('ALL'), `capabilities.drop ${JSON.stringify(drop)}`);
    expect(!(c.capabilities && c.capabilities.add && c.capabilities.add.length), 'capabilities added');
    const sp = c.seccompProfile || pod.seccompProfile;
    expect(sp && sp.type === 'RuntimeDefault', 'no RuntimeDefault seccompProfile');
});

await check('k8s: resources: cpu and memory requests within limits, workers = the CPU limit', () => {
    const r = container.resources || {};
    for (const k of ['cpu', 'memory']) {
        expect(r.requests && r.requests[k] !== undefined, `no requests.${k}`);
        expect(r.limits && r.limits[k] !== undefined, `no limits.${k}`);
    }
    expect(cpu(r.requests.cpu) <= cpu(r.limits.cpu), `cpu ${r.requests.cpu} > ${r.limits.cpu}`);
    expect(bytes(r.requests.memory) <= bytes(r.limits.memory), `memory ${r.requests.memory} > ${r.limits.memory}`);
    const w = cfg && cfg.workers;
    expect(w === Math.ceil(cpu(r.limits.cpu)), `workers ${w} in astgate.yaml, CPU limit ${r.limits.cpu} (0 would start one worker per node core)`);
});

await check('k8s: the Service selects the pods and targets their ports', () => {
    expect(svc, 'no Service');
    expect(Object.keys(svc.spec.selector || {}).length && matches(svc.spec.selector, podLabels), 'the selector does not match the pod template');
    expect(matches(dep.spec.selector.matchLabels, podLabels), 'the Deployment\'s selector does not match its template');
    for (const p of svc.spec.ports) expect(resolvePort(p.targetPort ?? p.port) !== undefined, `targetPort ${p.targetPort} is not a container port`);
    expect(svc.spec.ports.some((p) => resolvePort(p.targetPort) === ports.get('http')), 'no Service port to http');
});

await check('k8s: HorizontalPodAutoscaler autoscaling/v2 on CPU utilization of the Deployment', () => {
    const hpas = find('HorizontalPodAutoscaler');
    expect(hpas.length === 1, `${hpas.length} HorizontalPodAutoscalers`);
    const h = hpas[0];
    expect(h.apiVersion === 'autoscaling/v2', `apiVersion ${h.apiVersion}`);
    const t = h.spec.scaleTargetRef;
    expect(t.kind === 'Deployment' && t.name === dep.metadata.name && t.apiVersion === 'apps/v1', `scaleTargetRef ${JSON.stringify(t)}`);
    const m = (h.spec.metrics || []).find((x) => x.type === 'Resource' && x.resource.name === 'cpu');
    expect(m && m.resource.target.type === 'Utilization' && m.resource.target.averageUtilization > 0, 'no cpu Utilization metric');
    expect(h.spec.minReplicas >= 2, `minReplicas ${h.spec.minReplicas}: one replica cannot drain without an outage`);
    expect(dep.spec.replicas === undefined, 'the Deployment sets replicas: each kubectl apply would reset the autoscaler\'s count');
});

await check('k8s: PodDisruptionBudget policy/v1 over the pods, that lets a node drain', () => {
    const pdbs = find('PodDisruptionBudget');
    expect(pdbs.length === 1, `${pdbs.length} PodDisruptionBudgets`);
    const p = pdbs[0];
    expect(p.apiVersion === 'policy/v1', `apiVersion ${p.apiVersion}`);
    expect(matches(p.spec.selector.matchLabels, podLabels), 'the selector does not match the pods');
    const h = find('HorizontalPodAutoscaler')[0];
    if (p.spec.maxUnavailable !== undefined) expect(p.spec.maxUnavailable !== 0 && p.spec.maxUnavailable !== '0%', 'maxUnavailable 0 blocks every drain');
    else expect(h && Number(p.spec.minAvailable) < h.spec.minReplicas, `minAvailable ${p.spec.minAvailable} blocks drains at minReplicas`);
});

// the ServiceMonitor ships commented out (it needs the Prometheus operator's CRDs)
await check('k8s: the commented ServiceMonitor, uncommented, is valid and scrapes /metrics on the Service', async () => {
    const text = fs.readFileSync(path.join(k8sDir, 'servicemonitor.yaml'), 'utf8');
    const lines = text.split('\n');
    const start = lines.findIndex((l) => /^#\s*apiVersion:\s*monitoring\.coreos\.com\//.test(l));
    expect(start >= 0, 'no commented apiVersion: monitoring.coreos.com/... line');
    expect(lines.every((l) => l === '' || l.startsWith('#')), 'has uncommented lines: kubectl apply -k would need the CRDs');
    const sm = YAML.parse(lines.slice(start).map((l) => l.replace(/^# ?/, '')).join('\n'));
    expect(sm.kind === 'ServiceMonitor', `kind ${sm.kind}`);
    await validateObject(sm);
    checkMonitor(sm);
});
function checkMonitor(sm) {
    expect(svc && cfg, 'no Service or no astgate.yaml');
    expect(matches(sm.spec.selector.matchLabels, svc.metadata.labels), 'its selector does not match the Service\'s labels');
    for (const e of sm.spec.endpoints) {
        const sp = svc.spec.ports.find((p) => p.name === e.port);
        expect(sp, `endpoint port ${e.port} is not a Service port name`);
        expect((e.path || '/metrics') === '/metrics', `path ${e.path}`);
        const target = resolvePort(sp.targetPort);
        expect(target === (cfg.admin ? port(cfg.admin) : port(cfg.listen)), `port ${e.port} does not reach /metrics`);
    }
}

process.exitCode = failed ? 1 : 0;

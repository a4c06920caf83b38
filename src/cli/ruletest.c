/* `astgate test`: ast-grep's rule tests (sgconfig.yml, test files, __snapshots__) run through the
 * engine. A snapshot's `fixed` is astgate's rewrite (fix and ensure edits of the rule under test),
 * its primary label the first event's span; astgate-only expectations sit under `astgate:` in a
 * snapshot entry, a key ast-grep ignores. */
#include "ruletest.h"
#include "lang.h"
#include "rewrite.h"
#include "rules.h"
#include "rules_int.h"
#include "yamldoc.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#define MAX_FILES 1024            /* rule files, and test files, per run */
#define MAX_DIFF_LINES 4000       /* a longer side is shown whole instead of diffed */
#define OUT_MAX (64u << 20)       /* bytes of one rewritten case */
#define SNAP_FILE_MAX (64u << 20) /* bytes of one snapshot file written */

typedef struct ostr {
    char *ptr; /* owned, NUL-terminated */
    size_t len;
} ostr_t;

typedef struct label {
    ostr_t source, style, message; /* message.ptr NULL when absent */
    long start, end;               /* byte offsets into the case's code */
} label_t;

/* An astgate-only expectation: a flag with its reason, a dropped edit, a block. */
typedef struct extra {
    ostr_t action; /* "flag", "dropped" or "block" */
    ostr_t reason;
    long start, end;
} extra_t;

typedef struct snap {
    ostr_t code; /* the invalid case it belongs to (the key) */
    bool has_fixed;
    ostr_t fixed;
    label_t *labels;
    uint32_t nlabels;
    extra_t *extras;
    uint32_t nextras;
} snap_t;

typedef struct snapfile {
    char *id;
    char *dir; /* where <id>-snapshot.yml is written; NULL until a test names it */
    snap_t *snaps;
    uint32_t n, cap;
    bool dirty; /* changed by -U */
} snapfile_t;

typedef struct tcode {
    ostr_t code;
    unsigned line, col; /* of the item in the test file */
} tcode_t;

typedef struct tcase {
    char *id, *file, *snapdir;
    unsigned line, col;
    tcode_t *valid, *invalid;
    uint32_t nvalid, ninvalid;
} tcase_t;

typedef struct strlist {
    char **v;
    uint32_t n, cap;
} strlist_t;

typedef struct run {
    tcase_t *cases;
    uint32_t ncases, cases_cap;
    snapfile_t *files;
    uint32_t nfiles, files_cap;
    pcre2_code *filter; /* --filter on rule ids; NULL = all */
    pcre2_match_data *fmd;
    bool update; /* -U */
    ag_rules_t *rules;
    ag_engine_t *engine;
    ag_buf_t out, text; /* the engine's output; the rule's own rewrite */
    uint32_t passed, failed, updated, rules_passed, rules_failed;
    const ag_rules_set_t *sets; /* --set NAME=VALUE, for every rule file that declares NAME */
    uint32_t nsets;
} run_t;

/* ---- small helpers ---- */

static ostr_t ostr_dup(ag_str_t s)
{
    ostr_t o;
    o.ptr = ag_xmalloc(s.len + 1);
    if (s.len)
        memcpy(o.ptr, s.ptr, s.len);
    o.ptr[s.len] = '\0';
    o.len = s.len;
    return o;
}

static ag_str_t ostr_view(ostr_t o)
{
    return ag_str(o.ptr ? o.ptr : "", o.len);
}

static void strlist_push(strlist_t *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = ag_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = ag_xstrndup(s, strlen(s));
}

static void strlist_free(strlist_t *l)
{
    for (uint32_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void snap_dispose(snap_t *s)
{
    free(s->code.ptr);
    free(s->fixed.ptr);
    for (uint32_t i = 0; i < s->nlabels; i++) {
        free(s->labels[i].source.ptr);
        free(s->labels[i].style.ptr);
        free(s->labels[i].message.ptr);
    }
    free(s->labels);
    for (uint32_t i = 0; i < s->nextras; i++) {
        free(s->extras[i].action.ptr);
        free(s->extras[i].reason.ptr);
    }
    free(s->extras);
    memset(s, 0, sizeof(*s));
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* base/rel, or rel alone when it is absolute or base is "." */
static char *path_join(const char *base, const char *rel)
{
    if (rel[0] == '/' || strcmp(base, ".") == 0)
        return ag_xstrndup(rel, strlen(rel));
    size_t n = strlen(base) + strlen(rel) + 2;
    char *p = ag_xmalloc(n);
    snprintf(p, n, "%s/%s", base, rel);
    return p;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.yml / *.yaml under dir (hidden entries skipped), sorted per directory. */
static int walk_yaml(const char *dir, strlist_t *out, ag_diag_t *d, const char *cfg,
                     const ag_ynode_t *at)
{
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        ag_diag_set(d, cfg, at->line, at->col, "cannot read directory %s: %s", dir,
                    strerror(errno));
        return AG_EIO;
    }
    strlist_t names = {0};
    struct dirent *de;
    while ((de = readdir(dh)) != NULL)
        if (de->d_name[0] != '.')
            strlist_push(&names, de->d_name);
    closedir(dh);
    if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), entry_cmp);
    int rc = AG_OK;
    for (uint32_t i = 0; i < names.n && rc == AG_OK; i++) {
        char *p = path_join(dir, names.v[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = walk_yaml(p, out, d, cfg, at);
        } else if (has_suffix(p, ".yml") || has_suffix(p, ".yaml")) {
            if (out->n == MAX_FILES) {
                ag_diag_set(d, cfg, at->line, at->col, "more than %d files under %s", MAX_FILES,
                            dir);
                rc = AG_ETOOBIG;
            } else {
                strlist_push(out, p);
            }
        }
        free(p);
    }
    strlist_free(&names);
    return rc;
}

static bool filter_ok(run_t *r, const char *id)
{
    if (r->filter == NULL)
        return true;
    return pcre2_match(r->filter, (PCRE2_SPTR)id, strlen(id), 0, 0, r->fmd, NULL) >= 0;
}

static int want_scalar(const ag_ynode_t *n, const char *file, const char *what, ag_diag_t *d)
{
    if (n->type == AG_Y_SCALAR)
        return AG_OK;
    ag_diag_set(d, file, n->line, n->col, "%s must be a string, not %s", what,
                ag_ytype_name(n->type));
    return AG_EINVAL;
}

static int want_type(const ag_ynode_t *n, ag_ytype_t t, const char *file, const char *what,
                     ag_diag_t *d)
{
    if (n->type == t)
        return AG_OK;
    ag_diag_set(d, file, n->line, n->col, "%s must be %s, not %s", what, ag_ytype_name(t),
                ag_ytype_name(n->type));
    return AG_EINVAL;
}

static int want_int(const ag_ynode_t *n, const char *file, const char *what, long *out,
                    ag_diag_t *d)
{
    if (n->type != AG_Y_SCALAR || ag_yscalar_int(n, out) != AG_OK) {
        ag_diag_set(d, file, n->line, n->col, "%s must be an integer", what);
        return AG_EINVAL;
    }
    return AG_OK;
}

static snapfile_t *snapfile_get(run_t *r, const char *id, bool create)
{
    for (uint32_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].id, id) == 0)
            return &r->files[i];
    if (!create)
        return NULL;
    if (r->nfiles == r->files_cap) {
        r->files_cap = r->files_cap ? r->files_cap * 2 : 8;
        r->files = ag_xrealloc(r->files, r->files_cap * sizeof(*r->files));
    }
    snapfile_t *f = &r->files[r->nfiles++];
    memset(f, 0, sizeof(*f));
    f->id = ag_xstrndup(id, strlen(id));
    return f;
}

static snap_t *snap_find(snapfile_t *f, ag_str_t code)
{
    for (uint32_t i = 0; f && i < f->n; i++)
        if (ag_str_eq(ostr_view(f->snaps[i].code), code))
            return &f->snaps[i];
    return NULL;
}

static snap_t *snap_add(snapfile_t *f)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->snaps = ag_xrealloc(f->snaps, f->cap * sizeof(*f->snaps));
    }
    snap_t *s = &f->snaps[f->n++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* ---- reading snapshot and test files ---- */

static int parse_labels(const ag_ynode_t *seq, const char *file, snap_t *s, ag_diag_t *d)
{
    if (want_type(seq, AG_Y_SEQ, file, "`labels`", d) != AG_OK)
        return AG_EINVAL;
    s->labels = ag_xcalloc(seq->n ? seq->n : 1, sizeof(*s->labels));
    for (uint32_t i = 0; i < seq->n; i++) {
        const ag_ynode_t *m = seq->items[i];
        if (want_type(m, AG_Y_MAP, file, "a label", d) != AG_OK)
            return AG_EINVAL;
        label_t *l = &s->labels[s->nlabels++];
        const ag_ynode_t *src = ag_ymap_get(m, "source"), *style = ag_ymap_get(m, "style");
        const ag_ynode_t *msg = ag_ymap_get(m, "message"), *st = ag_ymap_get(m, "start");
        const ag_ynode_t *en = ag_ymap_get(m, "end");
        if (!src || !style || !st || !en) {
            ag_diag_set(d, file, m->line, m->col,
                        "a label needs `source`, `style`, `start` and `end`");
            return AG_EINVAL;
        }
        if (want_scalar(src, file, "`source`", d) != AG_OK ||
            want_scalar(style, file, "`style`", d) != AG_OK ||
            (msg && want_scalar(msg, file, "`message`", d) != AG_OK) ||
            want_int(st, file, "`start`", &l->start, d) != AG_OK ||
            want_int(en, file, "`end`", &l->end, d) != AG_OK)
            return AG_EINVAL;
        l->source = ostr_dup(ag_yscalar_str(src));
        l->style = ostr_dup(ag_yscalar_str(style));
        if (msg)
            l->message = ostr_dup(ag_yscalar_str(msg));
    }
    return AG_OK;
}

static int parse_extras(const ag_ynode_t *m, const char *file, snap_t *s, ag_diag_t *d)
{
    if (want_type(m, AG_Y_MAP, file, "`astgate`", d) != AG_OK)
        return AG_EINVAL;
    for (uint32_t i = 0; i < m->n; i++)
        if (!ag_str_eqc(ag_yscalar_str(m->pairs[i].key), "events")) {
            ag_diag_set(d, file, m->pairs[i].key->line, m->pairs[i].key->col,
                        "unknown key `%s` in `astgate` (expected events)", m->pairs[i].key->text);
            return AG_EINVAL;
        }
    const ag_ynode_t *seq = ag_ymap_get(m, "events");
    if (seq == NULL)
        return AG_OK;
    if (want_type(seq, AG_Y_SEQ, file, "`events`", d) != AG_OK)
        return AG_EINVAL;
    s->extras = ag_xcalloc(seq->n ? seq->n : 1, sizeof(*s->extras));
    for (uint32_t i = 0; i < seq->n; i++) {
        const ag_ynode_t *e = seq->items[i];
        if (want_type(e, AG_Y_MAP, file, "an event", d) != AG_OK)
            return AG_EINVAL;
        extra_t *x = &s->extras[s->nextras++];
        const ag_ynode_t *act = ag_ymap_get(e, "action"), *rs = ag_ymap_get(e, "reason");
        const ag_ynode_t *st = ag_ymap_get(e, "start"), *en = ag_ymap_get(e, "end");
        if (!act || !st || !en) {
            ag_diag_set(d, file, e->line, e->col, "an event needs `action`, `start` and `end`");
            return AG_EINVAL;
        }
        if (want_scalar(act, file, "`action`", d) != AG_OK ||
            (rs && want_scalar(rs, file, "`reason`", d) != AG_OK) ||
            want_int(st, file, "`start`", &x->start, d) != AG_OK ||
            want_int(en, file, "`end`", &x->end, d) != AG_OK)
            return AG_EINVAL;
        ag_str_t a = ag_yscalar_str(act);
        if (!ag_str_eqc(a, "flag") && !ag_str_eqc(a, "dropped") && !ag_str_eqc(a, "block")) {
            ag_diag_set(d, file, act->line, act->col,
                        "`action` is flag, dropped or block, not `%s`", act->text);
            return AG_EINVAL;
        }
        x->action = ostr_dup(a);
        x->reason = ostr_dup(rs ? ag_yscalar_str(rs) : ag_str("", 0));
    }
    return AG_OK;
}

/* Reads path and parses its YAML documents into docs (text holds the bytes they point into; the
 * caller disposes of both, whatever the outcome). */
static int read_yaml(const char *path, ag_buf_t *text, ag_ydocs_t *docs, ag_diag_t *d)
{
    memset(docs, 0, sizeof(*docs));
    ag_buf_init(text, SNAP_FILE_MAX);
    if (ag_read_file(path, text) != AG_OK) {
        ag_diag_set(d, path, 0, 0, "cannot read: %s", strerror(errno));
        return AG_EIO;
    }
    return ag_yaml_load(ag_buf_str(text), path, docs, d);
}

static int load_snapshot_file(run_t *r, const char *path, ag_diag_t *d)
{
    ag_buf_t text;
    ag_ydocs_t docs;
    int rc = read_yaml(path, &text, &docs, d);
    if (rc != AG_OK)
        goto out;
    rc = AG_EINVAL;
    if (docs.n == 0) {
        ag_diag_set(d, path, 1, 1, "empty snapshot file");
        goto out;
    }
    const ag_ynode_t *root = docs.roots[0];
    if (want_type(root, AG_Y_MAP, path, "a snapshot file", d) != AG_OK)
        goto out;
    const ag_ynode_t *id = ag_ymap_get(root, "id"), *snaps = ag_ymap_get(root, "snapshots");
    if (id == NULL || snaps == NULL) {
        ag_diag_set(d, path, root->line, root->col, "a snapshot file needs `id` and `snapshots`");
        goto out;
    }
    if (want_scalar(id, path, "`id`", d) != AG_OK ||
        want_type(snaps, AG_Y_MAP, path, "`snapshots`", d) != AG_OK)
        goto out;
    rc = AG_OK;
    if (!filter_ok(r, id->text))
        goto out;
    snapfile_t *f = snapfile_get(r, id->text, true);
    for (uint32_t i = 0; i < snaps->n && rc == AG_OK; i++) {
        const ag_ynode_t *e = snaps->pairs[i].value;
        rc = want_type(e, AG_Y_MAP, path, "a snapshot", d);
        if (rc != AG_OK)
            break;
        snap_t *s = snap_find(f, ag_yscalar_str(snaps->pairs[i].key));
        if (s)
            snap_dispose(s);
        else
            s = snap_add(f);
        s->code = ostr_dup(ag_yscalar_str(snaps->pairs[i].key));
        const ag_ynode_t *fixed = ag_ymap_get(e, "fixed"), *labels = ag_ymap_get(e, "labels");
        const ag_ynode_t *ext = ag_ymap_get(e, "astgate");
        if (fixed && !ag_yscalar_is_null(fixed)) {
            rc = want_scalar(fixed, path, "`fixed`", d);
            if (rc != AG_OK)
                break;
            s->has_fixed = true;
            s->fixed = ostr_dup(ag_yscalar_str(fixed));
        }
        if (labels)
            rc = parse_labels(labels, path, s, d);
        if (rc == AG_OK && ext)
            rc = parse_extras(ext, path, s, d);
    }
out:
    ag_ydocs_dispose(&docs);
    ag_buf_dispose(&text);
    return rc;
}

static int parse_codes(const ag_ynode_t *seq, const char *file, const char *what, tcode_t **out,
                       uint32_t *n, ag_diag_t *d)
{
    if (want_type(seq, AG_Y_SEQ, file, what, d) != AG_OK)
        return AG_EINVAL;
    *out = ag_xcalloc(seq->n ? seq->n : 1, sizeof(**out));
    for (uint32_t i = 0; i < seq->n; i++) {
        const ag_ynode_t *it = seq->items[i];
        if (want_scalar(it, file, "a test case", d) != AG_OK)
            return AG_EINVAL;
        tcode_t *c = &(*out)[(*n)++];
        c->code = ostr_dup(ag_yscalar_str(it));
        c->line = it->line;
        c->col = it->col;
    }
    return AG_OK;
}

static int load_test_file(run_t *r, const char *path, const char *snapdir, ag_diag_t *d)
{
    ag_buf_t text;
    ag_ydocs_t docs;
    int rc = read_yaml(path, &text, &docs, d);
    for (uint32_t k = 0; rc == AG_OK && k < docs.n; k++) {
        const ag_ynode_t *root = docs.roots[k];
        rc = want_type(root, AG_Y_MAP, path, "a rule test", d);
        if (rc != AG_OK)
            break;
        const ag_ynode_t *id = ag_ymap_get(root, "id");
        const ag_ynode_t *valid = ag_ymap_get(root, "valid");
        const ag_ynode_t *invalid = ag_ymap_get(root, "invalid");
        if (id == NULL) {
            ag_diag_set(d, path, root->line, root->col, "a rule test needs `id`");
            rc = AG_EINVAL;
            break;
        }
        rc = want_scalar(id, path, "`id`", d);
        if (rc != AG_OK || !filter_ok(r, id->text))
            continue;
        if (r->ncases == r->cases_cap) {
            r->cases_cap = r->cases_cap ? r->cases_cap * 2 : 8;
            r->cases = ag_xrealloc(r->cases, r->cases_cap * sizeof(*r->cases));
        }
        tcase_t *c = &r->cases[r->ncases++];
        memset(c, 0, sizeof(*c));
        c->id = ag_xstrndup(id->text, id->len);
        c->file = ag_xstrndup(path, strlen(path));
        c->snapdir = ag_xstrndup(snapdir, strlen(snapdir));
        c->line = id->line;
        c->col = id->col;
        if (valid && !ag_yscalar_is_null(valid))
            rc = parse_codes(valid, path, "`valid`", &c->valid, &c->nvalid, d);
        if (rc == AG_OK && invalid && !ag_yscalar_is_null(invalid))
            rc = parse_codes(invalid, path, "`invalid`", &c->invalid, &c->ninvalid, d);
    }
    ag_ydocs_dispose(&docs);
    ag_buf_dispose(&text);
    return rc;
}

/* One `testConfigs` entry: every file under testDir; those under its snapshot directory are
 * snapshot files, the others test files (as ast-grep reads them). */
static int load_test_dir(run_t *r, const char *cfg, const char *base, const ag_ynode_t *tc,
                         ag_diag_t *d)
{
    if (want_type(tc, AG_Y_MAP, cfg, "a `testConfigs` entry", d) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *td = ag_ymap_get(tc, "testDir"), *sd = ag_ymap_get(tc, "snapshotDir");
    if (td == NULL) {
        ag_diag_set(d, cfg, tc->line, tc->col, "a `testConfigs` entry needs `testDir`");
        return AG_EINVAL;
    }
    if (want_scalar(td, cfg, "`testDir`", d) != AG_OK ||
        (sd && want_scalar(sd, cfg, "`snapshotDir`", d) != AG_OK))
        return AG_EINVAL;
    char *dir = path_join(base, td->text);
    char *snapdir = path_join(dir, sd ? sd->text : "__snapshots__");
    size_t sl = strlen(snapdir);
    strlist_t files = {0};
    int rc = walk_yaml(dir, &files, d, cfg, td);
    for (uint32_t i = 0; i < files.n && rc == AG_OK; i++) {
        if (strncmp(files.v[i], snapdir, sl) == 0 && files.v[i][sl] == '/')
            rc = load_snapshot_file(r, files.v[i], d);
        else
            rc = load_test_file(r, files.v[i], snapdir, d);
    }
    strlist_free(&files);
    free(snapdir);
    free(dir);
    return rc;
}

/* sgconfig.yml: the rules of `ruleDirs` (with the global utils of `utilDirs`), the tests and
 * snapshots of `testConfigs`. */
static int load_config(run_t *r, const char *cfg, ag_diag_t *d)
{
    ag_buf_t text;
    ag_ydocs_t docs;
    strlist_t rule_files = {0};
    char *base = NULL;
    int rc = read_yaml(cfg, &text, &docs, d);
    if (rc != AG_OK)
        goto out;
    rc = AG_EINVAL;
    if (docs.n == 0) {
        ag_diag_set(d, cfg, 1, 1, "empty configuration: `ruleDirs` and `testConfigs` needed");
        goto out;
    }
    const ag_ynode_t *root = docs.roots[0];
    if (want_type(root, AG_Y_MAP, cfg, "sgconfig.yml", d) != AG_OK)
        goto out;
    const ag_ynode_t *rd = ag_ymap_get(root, "ruleDirs"), *tcs = ag_ymap_get(root, "testConfigs");
    const ag_ynode_t *ud = ag_ymap_get(root, "utilDirs");
    if (rd == NULL || tcs == NULL) {
        ag_diag_set(d, cfg, root->line, root->col, "sgconfig.yml needs `%s`",
                    rd ? "testConfigs" : "ruleDirs");
        goto out;
    }
    if (want_type(rd, AG_Y_SEQ, cfg, "`ruleDirs`", d) != AG_OK ||
        want_type(tcs, AG_Y_SEQ, cfg, "`testConfigs`", d) != AG_OK ||
        (ud && want_type(ud, AG_Y_SEQ, cfg, "`utilDirs`", d) != AG_OK))
        goto out;
    const char *slash = strrchr(cfg, '/');
    base = slash ? ag_xstrndup(cfg, slash == cfg ? 1 : (size_t)(slash - cfg)) : ag_xstrndup(".", 1);
    rc = AG_OK;
    for (uint32_t i = 0; i < rd->n && rc == AG_OK; i++) {
        rc = want_scalar(rd->items[i], cfg, "a rule directory", d);
        if (rc != AG_OK)
            break;
        char *dir = path_join(base, rd->items[i]->text);
        rc = walk_yaml(dir, &rule_files, d, cfg, rd->items[i]);
        free(dir);
    }
    /* utilDirs: files of global utils, loaded before the rules that use them */
    uint32_t nrule_files = rule_files.n;
    for (uint32_t i = 0; ud && i < ud->n && rc == AG_OK; i++) {
        rc = want_scalar(ud->items[i], cfg, "a util directory", d);
        if (rc != AG_OK)
            break;
        char *dir = path_join(base, ud->items[i]->text);
        rc = walk_yaml(dir, &rule_files, d, cfg, ud->items[i]);
        free(dir);
    }
    if (rc != AG_OK)
        goto out;
    ag_rules_src_t *srcs = ag_xcalloc(rule_files.n ? rule_files.n : 1, sizeof(*srcs));
    for (uint32_t i = 0; i < rule_files.n; i++) {
        srcs[i].path = rule_files.v[i];
        srcs[i].utils = i >= nrule_files;
    }
    rc = ag_rules_load_srcs(srcs, rule_files.n, r->sets, r->nsets, &r->rules, d);
    free(srcs);
    if (rc == AG_OK)
        ag_rules_print_warnings(r->rules, stderr);
    for (uint32_t i = 0; i < tcs->n && rc == AG_OK; i++)
        rc = load_test_dir(r, cfg, base, tcs->items[i], d);
out:
    free(base);
    strlist_free(&rule_files);
    ag_ydocs_dispose(&docs);
    ag_buf_dispose(&text);
    return rc;
}

/* ---- running one case ---- */

typedef struct evref {
    const ag_event_t *ev;
    uint32_t seq;
} evref_t;

static int evref_cmp(const void *a, const void *b)
{
    const evref_t *x = a, *y = b;
    if (x->ev->offset != y->ev->offset)
        return x->ev->offset < y->ev->offset ? -1 : 1;
    if (x->ev->before.len != y->ev->before.len) /* the outer span first */
        return x->ev->before.len > y->ev->before.len ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The fence label a rule's cases are run under: "ts" unless the rule's fences leave it out. */
static ag_str_t rule_label(const ag_rule_def_t *def)
{
    if (def->fences == NULL || def->nfences == 0)
        return AG_STR_LIT("ts");
    for (uint32_t i = 0; i < def->nfences; i++)
        if (strcmp(def->fences[i], "ts") == 0)
            return AG_STR_LIT("ts");
    return ag_cstr(def->fences[0]);
}

/* Runs rule ri on code as one block; *matched tells whether it reported anything. When it did,
 * act gets the snapshot: the rule's own applied edits spliced into code (when it has a fix or an
 * ensure), the first event's span as the primary label (an insertion only when there is nothing
 * else), and the astgate-only events. */
static int run_case(run_t *r, uint32_t ri, ag_str_t code, bool *matched, snap_t *act)
{
    const ag_rule_def_t *def = &r->rules->rules[ri];
    ag_result_t res;
    ag_buf_reset(&r->out);
    ag_buf_reset(&r->text);
    *matched = false;
    int rc = ag_engine_rewrite_code(r->engine, code, rule_label(def), false, &r->out, &res);
    if (rc != AG_OK)
        return rc;
    evref_t *refs = ag_xcalloc(res.nevents ? res.nevents : 1, sizeof(*refs));
    uint32_t n = 0;
    for (uint32_t i = 0; i < res.nevents; i++)
        if (res.events[i].rule_index == ri)
            refs[n++] = (evref_t){&res.events[i], i};
    if (n == 0)
        goto out;
    *matched = true;
    qsort(refs, n, sizeof(*refs), evref_cmp);
    memset(act, 0, sizeof(*act));
    act->code = ostr_dup(code);
    /* the first span that covers code: an insertion (an import an ensure adds) says less */
    const ag_event_t *first = refs[0].ev;
    for (uint32_t i = 0; i < n; i++)
        if (refs[i].ev->before.len > 0) {
            first = refs[i].ev;
            break;
        }
    act->labels = ag_xcalloc(1, sizeof(*act->labels));
    act->nlabels = 1;
    act->labels[0].source = ostr_dup(first->before);
    act->labels[0].style = ostr_dup(AG_STR_LIT("primary"));
    act->labels[0].start = first->offset;
    act->labels[0].end = (long)(first->offset + first->before.len);
    act->extras = ag_xcalloc(n, sizeof(*act->extras));
    size_t pos = 0;
    for (uint32_t i = 0; i < n && rc == AG_OK; i++) {
        const ag_event_t *ev = refs[i].ev;
        const char *action = NULL;
        if (ev->action == AG_ACTION_REWRITE && ev->applied) {
            if (ev->offset < pos || ev->offset + ev->before.len > code.len)
                continue; /* the same edit twice; an edit in a cut-off completion */
            rc = ag_buf_append(&r->text, code.ptr + pos, ev->offset - pos);
            if (rc == AG_OK)
                rc = ag_buf_append(&r->text, ev->after.ptr, ev->after.len);
            pos = ev->offset + ev->before.len;
            continue;
        }
        if (ev->action == AG_ACTION_REWRITE)
            action = "dropped";
        else if (ev->action == AG_ACTION_BLOCK)
            action = "block";
        else if (ev->reason && ev->reason[0])
            action = "flag";
        if (action == NULL)
            continue; /* a plain flag rule's match: the label says it */
        extra_t *x = &act->extras[act->nextras++];
        x->action = ostr_dup(ag_cstr(action));
        x->reason = ostr_dup(ag_cstr(ev->reason ? ev->reason : ""));
        x->start = ev->offset;
        x->end = (long)(ev->offset + ev->before.len);
    }
    if (rc == AG_OK)
        rc = ag_buf_append(&r->text, code.ptr + pos, code.len - pos);
    if (def->fix || def->ensure) {
        act->has_fixed = true;
        act->fixed = ostr_dup(ag_buf_str(&r->text));
    }
out:
    free(refs);
    return rc;
}

static const label_t *primary(const snap_t *s)
{
    for (uint32_t i = 0; i < s->nlabels; i++)
        if (ag_str_eqc(ostr_view(s->labels[i].style), "primary"))
            return &s->labels[i];
    return NULL;
}

/* Equal as `astgate test` judges: fixed, the primary label's span and source, the astgate-only
 * events (secondary labels and messages, which astgate does not produce, are not compared). */
static bool snap_eq(const snap_t *a, const snap_t *b)
{
    if (a->has_fixed != b->has_fixed ||
        (a->has_fixed && !ag_str_eq(ostr_view(a->fixed), ostr_view(b->fixed))))
        return false;
    const label_t *x = primary(a), *y = primary(b);
    if ((x == NULL) != (y == NULL))
        return false;
    if (x && (x->start != y->start || x->end != y->end ||
              !ag_str_eq(ostr_view(x->source), ostr_view(y->source))))
        return false;
    if (a->nextras != b->nextras)
        return false;
    for (uint32_t i = 0; i < a->nextras; i++) {
        const extra_t *p = &a->extras[i], *q = &b->extras[i];
        if (p->start != q->start || p->end != q->end ||
            !ag_str_eq(ostr_view(p->action), ostr_view(q->action)) ||
            !ag_str_eq(ostr_view(p->reason), ostr_view(q->reason)))
            return false;
    }
    return true;
}

/* ---- writing YAML ---- */

/* A literal block scalar keeps multi-line code readable in snapshots and diffs; it cannot carry
 * CR or other control bytes, nor a text of line breaks only. */
static bool block_ok(ag_str_t s)
{
    bool nl = false, text = false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n')
            nl = true;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
        else
            text = true;
    }
    return nl && text;
}

static int emit_quoted(ag_buf_t *b, ag_str_t s)
{
    int rc = ag_buf_appendc(b, '"');
    for (size_t i = 0; i < s.len && rc == AG_OK; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\')
            rc = ag_buf_appendf(b, "\\%c", c);
        else if (c == '\n')
            rc = ag_buf_append(b, "\\n", 2);
        else if (c == '\t')
            rc = ag_buf_append(b, "\\t", 2);
        else if (c == '\r')
            rc = ag_buf_append(b, "\\r", 2);
        else if (c < 0x20 || c == 0x7f)
            rc = ag_buf_appendf(b, "\\x%02x", c);
        else
            rc = ag_buf_appendc(b, (char)c);
    }
    return rc == AG_OK ? ag_buf_appendc(b, '"') : rc;
}

/* A scalar value after "key: ", the key being at column ind (0-based); ends the line. */
static int emit_scalar(ag_buf_t *b, ag_str_t s, unsigned ind)
{
    int rc;
    if (!block_ok(s)) {
        rc = emit_quoted(b, s);
        return rc == AG_OK ? ag_buf_appendc(b, '\n') : rc;
    }
    size_t end = s.len, trailing = 0;
    while (end > 0 && s.ptr[end - 1] == '\n') {
        end--;
        trailing++;
    }
    rc = ag_buf_appendf(b, "|2%s\n", trailing == 0 ? "-" : trailing == 1 ? "" : "+");
    size_t i = 0;
    while (i <= end && rc == AG_OK) {
        size_t j = i;
        while (j < end && s.ptr[j] != '\n')
            j++;
        if (j > i)
            rc = ag_buf_appendf(b, "%*s%.*s", ind + 2, "", (int)(j - i), s.ptr + i);
        if (rc == AG_OK)
            rc = ag_buf_appendc(b, '\n');
        i = j + 1;
    }
    for (size_t k = 1; k < trailing && rc == AG_OK; k++)
        rc = ag_buf_appendc(b, '\n');
    return rc;
}

/* One snapshot entry's body (fixed, labels, astgate), its keys at column ind. */
static int emit_snap(ag_buf_t *b, const snap_t *s, unsigned ind)
{
    int rc = AG_OK;
    if (s->has_fixed) {
        rc = ag_buf_appendf(b, "%*sfixed: ", ind, "");
        if (rc == AG_OK)
            rc = emit_scalar(b, ostr_view(s->fixed), ind);
    }
    if (rc == AG_OK)
        rc = ag_buf_appendf(b, "%*slabels:%s\n", ind, "", s->nlabels ? "" : " []");
    for (uint32_t i = 0; i < s->nlabels && rc == AG_OK; i++) {
        const label_t *l = &s->labels[i];
        rc = ag_buf_appendf(b, "%*s- source: ", ind, "");
        if (rc == AG_OK)
            rc = emit_scalar(b, ostr_view(l->source), ind + 2);
        if (rc == AG_OK && l->message.ptr) {
            rc = ag_buf_appendf(b, "%*smessage: ", ind + 2, "");
            if (rc == AG_OK)
                rc = emit_scalar(b, ostr_view(l->message), ind + 2);
        }
        if (rc == AG_OK)
            rc = ag_buf_appendf(b, "%*sstyle: %s\n%*sstart: %ld\n%*send: %ld\n", ind + 2, "",
                                l->style.ptr, ind + 2, "", l->start, ind + 2, "", l->end);
    }
    if (rc == AG_OK && s->nextras)
        rc = ag_buf_appendf(b, "%*sastgate:\n%*sevents:\n", ind, "", ind + 2, "");
    for (uint32_t i = 0; i < s->nextras && rc == AG_OK; i++) {
        const extra_t *x = &s->extras[i];
        rc = ag_buf_appendf(b, "%*s- action: %s\n%*sreason: ", ind + 2, "", x->action.ptr, ind + 4,
                            "");
        if (rc == AG_OK)
            rc = emit_scalar(b, ostr_view(x->reason), ind + 4);
        if (rc == AG_OK)
            rc = ag_buf_appendf(b, "%*sstart: %ld\n%*send: %ld\n", ind + 4, "", x->start, ind + 4,
                                "", x->end);
    }
    return rc;
}

static int snap_cmp(const void *a, const void *b)
{
    const snap_t *x = a, *y = b;
    size_t n = x->code.len < y->code.len ? x->code.len : y->code.len;
    int c = n ? memcmp(x->code.ptr, y->code.ptr, n) : 0;
    if (c)
        return c;
    return x->code.len < y->code.len ? -1 : x->code.len > y->code.len;
}

/* <dir>/<id>-snapshot.yml, as ast-grep names and orders it (entries sorted by code). */
static int write_snapfile(snapfile_t *f)
{
    ag_buf_t b;
    ag_buf_init(&b, SNAP_FILE_MAX);
    char *path = NULL, *tmp = NULL;
    int rc = AG_EIO;
    if (mkdir(f->dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "astgate: cannot create %s: %s\n", f->dir, strerror(errno));
        goto out;
    }
    size_t n = strlen(f->dir) + strlen(f->id) + 32;
    path = ag_xmalloc(n);
    tmp = ag_xmalloc(n);
    snprintf(path, n, "%s/%s-snapshot.yml", f->dir, f->id);
    snprintf(tmp, n, "%s/.%s-snapshot.yml.tmp", f->dir, f->id);
    if (f->n)
        qsort(f->snaps, f->n, sizeof(*f->snaps), snap_cmp);
    rc = ag_buf_append(&b, "id: ", 4);
    if (rc == AG_OK)
        rc = emit_quoted(&b, ag_cstr(f->id));
    if (rc == AG_OK)
        rc = ag_buf_appendf(&b, "\nsnapshots:%s\n", f->n ? "" : " {}");
    for (uint32_t i = 0; i < f->n && rc == AG_OK; i++) {
        rc = ag_buf_append(&b, "  ", 2);
        if (rc == AG_OK)
            rc = emit_quoted(&b, ostr_view(f->snaps[i].code));
        if (rc == AG_OK)
            rc = ag_buf_append(&b, ":\n", 2);
        if (rc == AG_OK)
            rc = emit_snap(&b, &f->snaps[i], 4);
    }
    if (rc != AG_OK) {
        fprintf(stderr, "astgate: %s: the snapshot file is too large\n", path);
        goto out;
    }
    rc = AG_EIO;
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL) {
        fprintf(stderr, "astgate: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    size_t w = fwrite(b.ptr, 1, b.len, fp);
    if (fclose(fp) != 0 || w != b.len || rename(tmp, path) != 0) {
        fprintf(stderr, "astgate: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        goto out;
    }
    rc = AG_OK;
out:
    free(path);
    free(tmp);
    ag_buf_dispose(&b);
    return rc;
}

/* ---- reporting ---- */

typedef struct lines {
    const char **p;
    uint32_t *len;
    uint32_t n;
} lines_t;

static void split_lines(ag_str_t s, lines_t *l)
{
    uint32_t cap = 1;
    for (size_t i = 0; i < s.len; i++)
        cap += s.ptr[i] == '\n';
    l->p = ag_xcalloc(cap, sizeof(*l->p));
    l->len = ag_xcalloc(cap, sizeof(*l->len));
    l->n = 0;
    size_t i = 0;
    while (i < s.len) {
        size_t j = i;
        while (j < s.len && s.ptr[j] != '\n')
            j++;
        l->p[l->n] = s.ptr + i;
        l->len[l->n++] = (uint32_t)(j - i);
        i = j + 1;
    }
}

static bool line_eq(const lines_t *a, uint32_t i, const lines_t *b, uint32_t j)
{
    return a->len[i] == b->len[j] && memcmp(a->p[i], b->p[j], a->len[i]) == 0;
}

/* A unified diff of exp vs act as one hunk with every line as context (snapshots are short);
 * the longest common subsequence decides what is kept. */
static void print_diff(ag_str_t exp, ag_str_t act, const char *exp_name)
{
    lines_t a, b;
    split_lines(exp, &a);
    split_lines(act, &b);
    printf("  --- %s\n  +++ actual\n  @@ -%u,%u +%u,%u @@\n", exp_name, a.n ? 1u : 0u, a.n,
           b.n ? 1u : 0u, b.n);
    if (a.n > MAX_DIFF_LINES || b.n > MAX_DIFF_LINES) {
        for (uint32_t i = 0; i < a.n; i++)
            printf("  -%.*s\n", (int)a.len[i], a.p[i]);
        for (uint32_t j = 0; j < b.n; j++)
            printf("  +%.*s\n", (int)b.len[j], b.p[j]);
        goto out;
    }
    size_t w = (size_t)b.n + 1;
    uint32_t *t = ag_xcalloc(((size_t)a.n + 1) * w, sizeof(*t));
    for (uint32_t i = a.n; i-- > 0;)
        for (uint32_t j = b.n; j-- > 0;)
            t[i * w + j] = line_eq(&a, i, &b, j)                   ? t[(i + 1) * w + j + 1] + 1
                           : t[(i + 1) * w + j] > t[i * w + j + 1] ? t[(i + 1) * w + j]
                                                                   : t[i * w + j + 1];
    uint32_t i = 0, j = 0;
    while (i < a.n || j < b.n) {
        if (i < a.n && j < b.n && line_eq(&a, i, &b, j)) {
            printf("   %.*s\n", (int)a.len[i], a.p[i]);
            i++;
            j++;
        } else if (i < a.n && (j == b.n || t[(i + 1) * w + j] >= t[i * w + j + 1])) {
            printf("  -%.*s\n", (int)a.len[i], a.p[i]);
            i++;
        } else {
            printf("  +%.*s\n", (int)b.len[j], b.p[j]);
            j++;
        }
    }
    free(t);
out:
    free(a.p);
    free(a.len);
    free(b.p);
    free(b.len);
}

static void print_code(ag_str_t code)
{
    lines_t l;
    split_lines(code, &l);
    for (uint32_t i = 0; i < l.n; i++)
        printf("  | %.*s\n", (int)l.len[i], l.p[i]);
    free(l.p);
    free(l.len);
}

static int find_rule(const run_t *r, const char *id)
{
    for (uint32_t i = 0; i < ag_rules_count(r->rules); i++)
        if (strcmp(ag_rules_rule_id(r->rules, i), id) == 0)
            return (int)i;
    return -1;
}

/* Runs one rule test; marks[] gets a character per case (. passed, U updated, N noisy,
 * M missing, W wrong snapshot, E error). Returns false when a case failed. */
static bool run_test(run_t *r, const tcase_t *c, ag_buf_t *marks)
{
    int ri = find_rule(r, c->id);
    if (ri < 0) {
        printf("FAIL %s (%s:%u:%u): no rule with this id in ruleDirs\n", c->id, c->file, c->line,
               c->col);
        r->failed++;
        if (ag_buf_appendc(marks, 'E') != AG_OK) {
            /* 1 MiB of marks: the line is cut short */
        }
        return false;
    }
    bool ok = true;
    ag_buf_t exp_text, act_text;
    ag_buf_init(&exp_text, SNAP_FILE_MAX);
    ag_buf_init(&act_text, SNAP_FILE_MAX);
    snapfile_t *f = snapfile_get(r, c->id, false);
    for (uint32_t k = 0; k < c->nvalid + c->ninvalid; k++) {
        bool valid = k < c->nvalid;
        const tcode_t *tc = valid ? &c->valid[k] : &c->invalid[k - c->nvalid];
        uint32_t num = valid ? k + 1 : k - c->nvalid + 1;
        const char *kind = valid ? "valid" : "invalid";
        ag_str_t code = ostr_view(tc->code);
        snap_t act;
        memset(&act, 0, sizeof(act));
        bool matched = false;
        char mark = '.';
        if (run_case(r, (uint32_t)ri, code, &matched, &act) != AG_OK) {
            printf("FAIL %s %s #%u (%s:%u:%u): the rewrite is too large\n", c->id, kind, num,
                   c->file, tc->line, tc->col);
            mark = 'E';
        } else if (valid && matched) {
            printf("FAIL %s %s #%u (%s:%u:%u): the rule reported valid code\n", c->id, kind, num,
                   c->file, tc->line, tc->col);
            ag_buf_reset(&act_text);
            if (emit_snap(&act_text, &act, 0) == AG_OK)
                print_diff(ag_str("", 0), ag_buf_str(&act_text), "expected (no match)");
            mark = 'N';
        } else if (!valid && !matched) {
            printf("FAIL %s %s #%u (%s:%u:%u): the rule reported nothing on\n", c->id, kind, num,
                   c->file, tc->line, tc->col);
            print_code(code);
            mark = 'M';
        } else if (!valid) {
            snap_t *exp = snap_find(f, code);
            if (exp == NULL || !snap_eq(exp, &act)) {
                if (r->update) {
                    if (f == NULL)
                        f = snapfile_get(r, c->id, true);
                    if (exp == NULL)
                        exp = snap_add(f);
                    else
                        snap_dispose(exp);
                    *exp = act;
                    memset(&act, 0, sizeof(act));
                    if (f->dir == NULL)
                        f->dir = ag_xstrndup(c->snapdir, strlen(c->snapdir));
                    f->dirty = true;
                    r->updated++;
                    mark = 'U';
                } else {
                    printf("FAIL %s %s #%u (%s:%u:%u): %s\n", c->id, kind, num, c->file, tc->line,
                           tc->col,
                           exp ? "the snapshot differs"
                               : "no snapshot (astgate test -U writes it)");
                    ag_buf_reset(&exp_text);
                    ag_buf_reset(&act_text);
                    if ((exp == NULL || emit_snap(&exp_text, exp, 0) == AG_OK) &&
                        emit_snap(&act_text, &act, 0) == AG_OK)
                        print_diff(ag_buf_str(&exp_text), ag_buf_str(&act_text),
                                   exp ? "expected" : "expected (none)");
                    mark = 'W';
                }
            }
        }
        snap_dispose(&act);
        if (mark == '.' || mark == 'U') {
            r->passed++;
        } else {
            r->failed++;
            ok = false;
        }
        if (ag_buf_appendc(marks, mark) != AG_OK) {
            /* 1 MiB of marks: the line is cut short */
        }
    }
    ag_buf_dispose(&exp_text);
    ag_buf_dispose(&act_text);
    return ok;
}

static const char TEST_USAGE[] =
    "usage: astgate test [-c sgconfig.yml] [--filter REGEX] [-U|--update-all] [--set NAME=VALUE]\n"
    "\n"
    "Runs the rule tests of an ast-grep project (sgconfig.yml: ruleDirs, testConfigs) through\n"
    "astgate: a valid case must give no event of its rule, an invalid case must give one, and\n"
    "its snapshot (<snapshotDir>/<id>-snapshot.yml) must equal astgate's rewrite, primary label\n"
    "and astgate-only events. Exit 0 when every case passes, 1 otherwise.\n"
    "  -c, --config FILE    the project file (default sgconfig.yml)\n"
    "  -f, --filter REGEX   only the rule tests whose id matches REGEX\n"
    "  -U, --update-all     write the snapshots that are new or differ\n"
    "  --set NAME=VALUE     a rule parameter, for every rule file that declares NAME\n";

int ag_ruletest_main(int argc, char **argv)
{
    const char *cfg = "sgconfig.yml", *filter = NULL;
    bool update = false;
    enum { MAX_SETS = 64 };
    ag_rules_set_t sets[MAX_SETS];
    char set_names[MAX_SETS][128];
    uint32_t nsets = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "-f") == 0 ||
            strcmp(a, "--filter") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "astgate: test: %s needs a value\nTry 'astgate test --help'.\n", a);
                return 2;
            }
            if (a[1] == 'c' || a[2] == 'c')
                cfg = argv[++i];
            else
                filter = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cfg = a + 9;
        } else if (strncmp(a, "--filter=", 9) == 0) {
            filter = a + 9;
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            ag_diag_t sd;
            memset(&sd, 0, sizeof(sd));
            if (v == NULL || nsets == MAX_SETS ||
                ag_rules_parse_set(v, set_names[nsets], sizeof(set_names[0]), &sets[nsets], &sd) !=
                    AG_OK) {
                fprintf(stderr, "astgate: test: %s\nTry 'astgate test --help'.\n",
                        v == NULL           ? "--set needs NAME=VALUE"
                        : nsets == MAX_SETS ? "too many --set (at most 64)"
                                            : sd.msg);
                return 2;
            }
            nsets++;
        } else if (strcmp(a, "-U") == 0 || strcmp(a, "--update-all") == 0) {
            update = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(TEST_USAGE, stdout);
            return 0;
        } else {
            fprintf(stderr, "astgate: test: unknown argument '%s'\nTry 'astgate test --help'.\n",
                    a);
            return 2;
        }
    }
    ag_diag_t d;
    memset(&d, 0, sizeof(d));
    if (ag_lang_check(&d) != AG_OK) {
        fprintf(stderr, "astgate: ");
        ag_diag_print(&d, stderr);
        return 1;
    }
    run_t r;
    memset(&r, 0, sizeof(r));
    r.update = update;
    r.sets = sets;
    r.nsets = nsets;
    ag_buf_init(&r.out, OUT_MAX);
    ag_buf_init(&r.text, OUT_MAX);
    ag_buf_t marks;
    ag_buf_init(&marks, 1u << 20);
    int status = 1;
    if (filter) {
        int err;
        PCRE2_SIZE eoff;
        r.filter =
            pcre2_compile((PCRE2_SPTR)filter, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, NULL);
        if (r.filter == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof(msg));
            fprintf(stderr, "astgate: test: bad --filter at offset %zu: %s\n", (size_t)eoff,
                    (const char *)msg);
            status = 2;
            goto out;
        }
        r.fmd = pcre2_match_data_create_from_pattern(r.filter, NULL);
    }
    memset(&d, 0, sizeof(d));
    if (load_config(&r, cfg, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        goto out;
    }
    ag_engine_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.max_reply = OUT_MAX;
    r.engine = ag_engine_new(r.rules, &opts);
    printf("Running %u tests\n", r.ncases);
    uint32_t *mark_off = ag_xcalloc(r.ncases + 1, sizeof(*mark_off));
    bool *ok = ag_xcalloc(r.ncases + 1, sizeof(*ok));
    for (uint32_t i = 0; i < r.ncases; i++) {
        mark_off[i] = (uint32_t)marks.len;
        ok[i] = run_test(&r, &r.cases[i], &marks);
    }
    mark_off[r.ncases] = (uint32_t)marks.len;
    for (uint32_t i = 0; i < r.ncases; i++) {
        printf("%s %s  %.*s\n", ok[i] ? "PASS" : "FAIL", r.cases[i].id,
               (int)(mark_off[i + 1] - mark_off[i]), marks.ptr + mark_off[i]);
        if (ok[i])
            r.rules_passed++;
        else
            r.rules_failed++;
    }
    free(mark_off);
    free(ok);
    bool write_failed = false;
    for (uint32_t i = 0; i < r.nfiles; i++)
        if (r.files[i].dirty && write_snapfile(&r.files[i]) != AG_OK)
            write_failed = true;
    printf("test: %u passed, %u failed (rules: %u passed, %u failed; %u snapshot%s updated)\n",
           r.passed, r.failed, r.rules_passed, r.rules_failed, r.updated,
           r.updated == 1 ? "" : "s");
    status = r.failed || write_failed ? 1 : 0;
out:
    for (uint32_t i = 0; i < r.ncases; i++) {
        tcase_t *c = &r.cases[i];
        for (uint32_t k = 0; k < c->nvalid; k++)
            free(c->valid[k].code.ptr);
        for (uint32_t k = 0; k < c->ninvalid; k++)
            free(c->invalid[k].code.ptr);
        free(c->valid);
        free(c->invalid);
        free(c->id);
        free(c->file);
        free(c->snapdir);
    }
    free(r.cases);
    for (uint32_t i = 0; i < r.nfiles; i++) {
        for (uint32_t k = 0; k < r.files[i].n; k++)
            snap_dispose(&r.files[i].snaps[k]);
        free(r.files[i].snaps);
        free(r.files[i].id);
        free(r.files[i].dir);
    }
    free(r.files);
    pcre2_match_data_free(r.fmd);
    pcre2_code_free(r.filter);
    ag_engine_free(r.engine);
    ag_rules_free(r.rules);
    ag_buf_dispose(&r.out);
    ag_buf_dispose(&r.text);
    ag_buf_dispose(&marks);
    return status;
}

/* astgate.yaml, validated like the rule files: unknown or duplicate keys and bad values are
 * refused with file:line:col, so a bad config never starts. */
#include "config.h"

#include "jsonscan.h"
#include "yamldoc.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

const char ag_config_default_yaml[] =
    "# astgate's embedded default configuration\n"
    "listen: 127.0.0.1:8080\n"
    "upstream: https://api.openai.com\n"
    "rules: [rules/mastra.yaml]\n"
    "workers: 0\n"
    "timeouts: {connect_ms: 10000, upstream_ms: 600000, client_ms: 60000, header_ms: 30000,\n"
    "           keepalive_ms: 75000, drain_ms: 30000}\n"
    "limits: {max_request_body: 16777216, max_response_body: 33554432, max_held: 4194304,\n"
    "         max_header_bytes: 32768, max_headers: 100, max_url_bytes: 8192,\n"
    "         max_connections: 4096}\n"
    "forwarded: append\n"
    "logs: {access: '-', rewrite: '-'}\n"
    "block_status: 422\n"
    "bare: true\n"
    "stream: {hold: minimal}\n"
    "hints: off\n";

static int fail(ag_diag_t *d, const char *file, const ag_ynode_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ag_diag_t *d, const char *file, const ag_ynode_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ag_diag_set(d, file, n ? n->line : 0, n ? n->col : 0, "%s", msg);
    return AG_EINVAL;
}

static void free_sets(ag_rules_set_t *sets, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free((char *)sets[i].name);
        free((char *)sets[i].value);
        free((char *)sets[i].file);
    }
    free(sets);
}

static void free_rules(ag_config_t *cfg)
{
    for (uint32_t i = 0; i < cfg->nrules; i++) {
        free(cfg->rules[i]);
        free_sets(cfg->rule_sets[i], cfg->nrule_sets[i]);
        cfg->rule_sets[i] = NULL;
        cfg->nrule_sets[i] = 0;
    }
    cfg->nrules = 0;
}

void ag_config_dispose(ag_config_t *cfg)
{
    free_rules(cfg);
    free_sets(cfg->sets, cfg->nsets);
    cfg->sets = NULL;
    cfg->nsets = 0;
    ag_tools_dispose(&cfg->tools);
}

static char *xstrdup_or_null(const char *s)
{
    return s ? ag_xstrndup(s, strlen(s)) : NULL;
}

int ag_config_add_set(ag_config_t *cfg, const char *arg, ag_diag_t *d)
{
    char name[128];
    ag_rules_set_t st;
    if (ag_rules_parse_set(arg, name, sizeof(name), &st, d) != AG_OK)
        return AG_EINVAL;
    cfg->sets = ag_xrealloc(cfg->sets, (cfg->nsets + 1) * sizeof(*cfg->sets));
    ag_rules_set_t *o = &cfg->sets[cfg->nsets++];
    memset(o, 0, sizeof(*o));
    o->name = xstrdup_or_null(st.name);
    o->value = xstrdup_or_null(st.value);
    return AG_OK;
}

int ag_config_load_rules(const ag_config_t *cfg, ag_rules_t **out, ag_diag_t *d)
{
    ag_rules_src_t srcs[AG_CONFIG_MAX_RULES];
    memset(srcs, 0, sizeof(srcs));
    for (uint32_t i = 0; i < cfg->nrules; i++) {
        srcs[i].path = cfg->rules[i];
        srcs[i].sets = cfg->rule_sets[i];
        srcs[i].nsets = cfg->nrule_sets[i];
    }
    int rc = ag_rules_load_srcs(srcs, cfg->nrules, cfg->sets, cfg->nsets, out, d);
    if (rc == AG_OK)
        ag_rules_print_warnings(*out, stderr);
    return rc;
}

/* `set: {NAME: VALUE, ...}` of rules entry i: each value a scalar, kept with its place. */
static int rule_sets(const char *file, const ag_ynode_t *set, ag_config_t *cfg, uint32_t i,
                     ag_diag_t *d)
{
    if (set->type != AG_Y_MAP)
        return fail(d, file, set, "`set` must be a mapping of parameter names to values");
    cfg->rule_sets[i] = ag_xcalloc(set->n ? set->n : 1, sizeof(ag_rules_set_t));
    for (uint32_t j = 0; j < set->n; j++) {
        const ag_ynode_t *k = set->pairs[j].key, *v = set->pairs[j].value;
        if (v->type != AG_Y_SCALAR || ag_yscalar_is_null(v) || memchr(v->text, '\0', v->len))
            return fail(d, file, v, "`set.%s` must be a string, a number or true/false", k->text);
        ag_rules_set_t *o = &cfg->rule_sets[i][cfg->nrule_sets[i]++];
        o->name = ag_xstrndup(k->text, k->len);
        o->value = ag_xstrndup(v->text, v->len);
        o->file = ag_xstrndup(file, strlen(file));
        o->line = v->line;
        o->col = v->col;
    }
    return AG_OK;
}

int ag_config_set_listen(ag_config_t *cfg, const char *hostport, ag_diag_t *d)
{
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || colon == hostport || colon[1] == '\0') {
        ag_diag_set(d, NULL, 0, 0, "listen address `%s` is not HOST:PORT", hostport);
        return AG_EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end != '\0' || port > 65535) {
        ag_diag_set(d, NULL, 0, 0, "listen address `%s` has a bad port", hostport);
        return AG_EINVAL;
    }
    size_t hl = (size_t)(colon - hostport);
    const char *h = hostport;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(cfg->listen_host)) {
        ag_diag_set(d, NULL, 0, 0, "listen host is too long");
        return AG_EINVAL;
    }
    memcpy(cfg->listen_host, h, hl);
    cfg->listen_host[hl] = '\0';
    cfg->listen_port = (uint16_t)port;
    return AG_OK;
}

/* url without its trailing slashes into out[cap], or AG_EINVAL with a message in d. */
static int base_url(const char *url, char *out, size_t cap, ag_diag_t *d)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (!(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) || n <= 8) {
        ag_diag_set(d, NULL, 0, 0, "upstream `%s` must be an http:// or https:// URL", url);
        return AG_EINVAL;
    }
    if (n >= cap) {
        ag_diag_set(d, NULL, 0, 0, "upstream URL is too long");
        return AG_EINVAL;
    }
    memcpy(out, url, n);
    out[n] = '\0';
    return AG_OK;
}

int ag_config_set_upstream(ag_config_t *cfg, const char *url, ag_diag_t *d)
{
    return base_url(url, cfg->upstream, sizeof(cfg->upstream), d);
}

int ag_config_add_rules(ag_config_t *cfg, const char *path, bool first, ag_diag_t *d)
{
    if (first)
        free_rules(cfg);
    if (cfg->nrules == AG_CONFIG_MAX_RULES) {
        ag_diag_set(d, NULL, 0, 0, "too many rule files (at most %d)", AG_CONFIG_MAX_RULES);
        return AG_EINVAL;
    }
    cfg->rules[cfg->nrules++] = ag_xstrndup(path, strlen(path));
    return AG_OK;
}

static int get_uint(const char *file, const ag_ynode_t *n, uint64_t max, uint64_t *out,
                    ag_diag_t *d, const char *what)
{
    long v;
    if (n->type != AG_Y_SCALAR || ag_yscalar_int(n, &v) != AG_OK || v < 0 || (uint64_t)v > max)
        return fail(d, file, n, "`%s` must be a whole number from 0 to %llu", what,
                    (unsigned long long)max);
    *out = (uint64_t)v;
    return AG_OK;
}

static int get_str(const char *file, const ag_ynode_t *n, char *out, size_t cap, ag_diag_t *d,
                   const char *what)
{
    if (n->type != AG_Y_SCALAR || ag_yscalar_is_null(n) || n->len >= cap ||
        memchr(n->text, '\0', n->len))
        return fail(d, file, n, "`%s` must be a string", what);
    memcpy(out, n->text, n->len);
    out[n->len] = '\0';
    return AG_OK;
}

static int check_keys(const char *file, const ag_ynode_t *map, const char *const *keys,
                      const char *where, ag_diag_t *d)
{
    if (map->type != AG_Y_MAP)
        return fail(d, file, map, "`%s` must be a mapping", where);
    for (uint32_t i = 0; i < map->n; i++) {
        bool ok = false;
        for (const char *const *k = keys; *k; k++)
            if (ag_str_eqc(ag_yscalar_str(map->pairs[i].key), *k))
                ok = true;
        if (!ok) {
            char list[256] = "";
            size_t off = 0;
            for (const char *const *k = keys; *k; k++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                        k == keys ? "" : ", ", *k);
            return fail(d, file, map->pairs[i].key, "unknown key `%s` in %s, expected one of %s",
                        map->pairs[i].key->text, where, list);
        }
    }
    return AG_OK;
}

/* One argument path of tools.NAME (where: "tools.NAME.whole") into out[AG_TOOL_PATH_MAX]: a
 * string that compiles as an ag_jscan path ("content", "edits[*].new_string"; "" = the whole
 * free-text input of a custom tool, for the code fields only). */
static int tool_path(const char *file, const ag_ynode_t *n, const char *where, bool code, char *out,
                     ag_diag_t *d)
{
    ag_jscan_path_t p;
    if (n->type != AG_Y_SCALAR || ag_yscalar_is_null(n) || memchr(n->text, '\0', n->len))
        return fail(d, file, n, "`%s` must be an argument name or path (a string)", where);
    if (n->len == 0 && !code)
        return fail(d, file, n, "`%s` must name an argument; leave it out when the tool has none",
                    where);
    if (n->len >= AG_TOOL_PATH_MAX)
        return fail(d, file, n, "`%s`: the path is too long (at most %d bytes)", where,
                    AG_TOOL_PATH_MAX - 1);
    int rc = ag_jscan_path_compile(&p, ag_str(n->text, n->len), AG_JSCAN_STRING);
    if (rc == AG_ETOOBIG)
        return fail(d, file, n,
                    "`%s`: `%s` has too many steps, arrays or filters for an argument path", where,
                    n->text);
    if (rc != AG_OK)
        return fail(d, file, n,
                    "`%s`: `%s` is not an argument path (NAME, NAME.NAME, NAME[*].NAME, "
                    "NAME[N])",
                    where, n->text);
    memcpy(out, n->text, n->len + 1);
    return AG_OK;
}

/* tools.NAME: {file, whole, fragment, search_replace, patch} into *t (name already set). */
static int parse_tool(const char *file, const ag_ynode_t *v, ag_tool_t *t, ag_diag_t *d)
{
    static const char *const keys[] = {"file",           "whole", "fragment",
                                       "search_replace", "patch", NULL};
    static const uint8_t kinds[] = {AG_TOOL_WHOLE, AG_TOOL_FRAGMENT, AG_TOOL_SEARCH_REPLACE,
                                    AG_TOOL_PATCH};
    char where[AG_TOOL_NAME_MAX + 32];
    snprintf(where, sizeof(where), "tools.%s", t->name);
    if (check_keys(file, v, keys, where, d) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *x = ag_ymap_get(v, "file");
    snprintf(where, sizeof(where), "tools.%s.file", t->name);
    if (x && tool_path(file, x, where, false, t->file, d) != AG_OK)
        return AG_EINVAL;
    /* the fields in the order written, whatever their kind */
    for (uint32_t i = 0; i < v->n; i++) {
        const ag_ynode_t *k = v->pairs[i].key, *list = v->pairs[i].value;
        uint32_t kind = 1;
        while (keys[kind] && !ag_str_eqc(ag_yscalar_str(k), keys[kind]))
            kind++;
        if (keys[kind] == NULL)
            continue; /* file */
        snprintf(where, sizeof(where), "tools.%s.%s", t->name, keys[kind]);
        if (list->type == AG_Y_MAP)
            return fail(d, file, list, "`%s` must be a list of argument paths, not a mapping",
                        where);
        uint32_t nitems = list->type == AG_Y_SEQ ? list->n : 1;
        for (uint32_t j = 0; j < nitems; j++) {
            const ag_ynode_t *item = list->type == AG_Y_SEQ ? list->items[j] : list;
            if (t->nfields == AG_TOOL_MAX_FIELDS)
                return fail(d, file, item, "`tools.%s` has too many code fields (at most %d)",
                            t->name, AG_TOOL_MAX_FIELDS);
            ag_tool_field_t *f = &t->field[t->nfields];
            if (tool_path(file, item, where, true, f->path, d) != AG_OK)
                return AG_EINVAL;
            for (uint32_t m = 0; m < t->nfields; m++)
                if (strcmp(t->field[m].path, f->path) == 0)
                    return fail(d, file, item, "`tools.%s`: the field `%s` is listed twice",
                                t->name, f->path);
            f->kind = kinds[kind - 1];
            t->nfields++;
        }
    }
    if (t->nfields == 0)
        return fail(d, file, v,
                    "`tools.%s` names no code field: give whole, fragment, search_replace or "
                    "patch",
                    t->name);
    return AG_OK;
}

/* `tools:` over the presets already in *tools: an entry adds a tool or replaces the preset of
 * its name as a whole; `NAME: off` turns a preset off. */
static int parse_tools(const char *file, const ag_ynode_t *n, ag_tools_t *tools, ag_diag_t *d)
{
    if (n->type != AG_Y_MAP)
        return fail(d, file, n,
                    "`tools` must map tool names to {file, whole, fragment, search_replace, "
                    "patch} or off");
    for (uint32_t i = 0; i < n->n; i++) {
        const ag_ynode_t *k = n->pairs[i].key, *v = n->pairs[i].value;
        ag_tool_t t;
        memset(&t, 0, sizeof(t));
        if (k->len == 0 || k->len >= AG_TOOL_NAME_MAX || memchr(k->text, '\0', k->len))
            return fail(d, file, k, "a tool name must be 1 to %d bytes", AG_TOOL_NAME_MAX - 1);
        memcpy(t.name, k->text, k->len + 1);
        bool b = true;
        if (v->type == AG_Y_SCALAR &&
            (ag_str_eqc(ag_yscalar_str(v), "off") || (ag_yscalar_bool(v, &b) == AG_OK && !b))) {
            /* only a preset can be turned off: another name is a typo (names are exact) */
            const ag_tool_t *preset = NULL;
            for (uint32_t j = 0; j < tools->n && preset == NULL; j++)
                if (strcmp(tools->t[j].name, t.name) == 0)
                    preset = &tools->t[j];
            if (preset == NULL)
                return fail(d, file, k,
                            "`tools.%s: off`: there is no built-in tool `%s` (names are "
                            "compared exactly: Write, apply_patch, ...)",
                            t.name, t.name);
            t = *preset;
            t.off = true;
        } else if (v->type == AG_Y_MAP) {
            if (parse_tool(file, v, &t, d) != AG_OK)
                return AG_EINVAL;
        } else {
            return fail(d, file, v,
                        "`tools.%s` must be a mapping {file, whole, fragment, search_replace, "
                        "patch} or off",
                        t.name);
        }
        ag_tools_set(tools, &t);
    }
    return AG_OK;
}

static void rel_path(const char *config_path, const char *p, char *out, size_t cap)
{
    const char *slash = config_path ? strrchr(config_path, '/') : NULL;
    if (p[0] == '/' || slash == NULL) {
        snprintf(out, cap, "%s", p);
        return;
    }
    snprintf(out, cap, "%.*s/%s", (int)(slash - config_path), config_path, p);
}

static void tls_defaults(ag_tls_t *t)
{
    memset(t, 0, sizeof(*t));
    t->verify = true;
}

/* Which YAML nodes set client_cert and client_key (NULL: not set), to place a pair error. */
typedef struct tls_src {
    const ag_ynode_t *cert;
    const ag_ynode_t *key;
} tls_src_t;

/* A TLS file must be there, be readable and hold PEM, or the first request would find out. */
static int check_tls_file(const char *file, const ag_ynode_t *n, const char *key, const char *p,
                          bool dir, ag_diag_t *d)
{
    if (dir) {
        DIR *dh = opendir(p);
        if (dh == NULL)
            return fail(d, file, n, "`%s`: cannot open the directory %s: %s", key, p,
                        strerror(errno));
        closedir(dh);
        return AG_OK;
    }
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return fail(d, file, n, "`%s`: cannot read %s: %s", key, p, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(d, file, n, "`%s`: %s is not a regular file", key, p);
    }
    /* look for a PEM header; keep the last bytes of each chunk for one split across two */
    static const char begin[] = "-----BEGIN ";
    const size_t blen = sizeof(begin) - 1;
    char chunk[16384];
    size_t keep = 0;
    bool pem = false, err = false;
    for (;;) {
        size_t got = fread(chunk + keep, 1, sizeof(chunk) - keep, f);
        if (got == 0) {
            err = ferror(f) != 0;
            break;
        }
        size_t len = keep + got;
        if (memmem(chunk, len, begin, blen) != NULL) {
            pem = true;
            break;
        }
        keep = len < blen - 1 ? len : blen - 1;
        memmove(chunk, chunk + len - keep, keep);
    }
    int e = errno;
    fclose(f);
    if (err)
        return fail(d, file, n, "`%s`: cannot read %s: %s", key, p, strerror(e));
    if (!pem)
        return fail(d, file, n, "`%s`: %s is not a PEM file (no -----BEGIN line)", key, p);
    return AG_OK;
}

/* A `tls` mapping (where: "tls" or "upstreams.NAME.tls") over *t, key by key. A path key set to
 * null clears what t had (a named upstream drops a top-level setting that way). */
static int parse_tls(const char *path, const char *file, const ag_ynode_t *n, const char *where,
                     ag_tls_t *t, tls_src_t *src, ag_diag_t *d)
{
    static const char *const keys[] = {"ca_file",    "ca_path", "client_cert",
                                       "client_key", "verify",  NULL};
    static const struct {
        const char *key;
        size_t off;
        bool dir;
    } paths[] = {
        {"ca_file", offsetof(ag_tls_t, ca_file), false},
        {"ca_path", offsetof(ag_tls_t, ca_path), true},
        {"client_cert", offsetof(ag_tls_t, client_cert), false},
        {"client_key", offsetof(ag_tls_t, client_key), false},
    };
    if (check_keys(file, n, keys, where, d) != AG_OK)
        return AG_EINVAL;
    char key[192];
    const ag_ynode_t *x;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if ((x = ag_ymap_get(n, paths[i].key)) == NULL)
            continue;
        char *out = (char *)t + paths[i].off;
        const ag_ynode_t **from = i == 2 ? &src->cert : i == 3 ? &src->key : NULL;
        snprintf(key, sizeof(key), "%s.%s", where, paths[i].key);
        if (x->type == AG_Y_SCALAR && ag_yscalar_is_null(x)) {
            out[0] = '\0';
            if (from)
                *from = NULL;
            continue;
        }
        char rel[1024], full[2048];
        if (get_str(file, x, rel, sizeof(rel), d, key) != AG_OK)
            return AG_EINVAL;
        if (rel[0] == '\0')
            return fail(d, file, x, "`%s` must be a path, not empty", key);
        rel_path(path, rel, full, sizeof(full));
        if (strlen(full) >= sizeof(t->ca_file))
            return fail(d, file, x, "`%s`: the path is too long", key);
        if (check_tls_file(file, x, key, full, paths[i].dir, d) != AG_OK)
            return AG_EINVAL;
        memcpy(out, full, strlen(full) + 1);
        if (from)
            *from = x;
    }
    if ((x = ag_ymap_get(n, "verify")) != NULL) {
        snprintf(key, sizeof(key), "%s.verify", where);
        if (ag_yscalar_bool(x, &t->verify) != AG_OK)
            return fail(d, file, x, "`%s` must be true or false", key);
        snprintf(t->verify_key, sizeof(t->verify_key), "%s", t->verify ? "" : key);
    }
    return AG_OK;
}

/* A client certificate goes with its key: one without the other is refused. */
static int check_client_pair(const char *file, const ag_tls_t *t, const tls_src_t *src,
                             const char *whose, ag_diag_t *d)
{
    if (t->client_cert[0] && !t->client_key[0])
        return fail(d, file, src->cert,
                    "`client_cert` without `client_key` for %s: set both or "
                    "neither",
                    whose);
    if (t->client_key[0] && !t->client_cert[0])
        return fail(d, file, src->key,
                    "`client_key` without `client_cert` for %s: set both or "
                    "neither",
                    whose);
    return AG_OK;
}

/* A `stream` mapping (where: "stream" or "upstreams.NAME.stream") over *hold. */
static int parse_stream(const char *file, const ag_ynode_t *n, const char *where,
                        ag_stream_hold_t *hold, ag_diag_t *d)
{
    static const char *const keys[] = {"hold", NULL};
    if (check_keys(file, n, keys, where, d) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *x = ag_ymap_get(n, "hold");
    if (x == NULL)
        return AG_OK;
    if (x->type == AG_Y_SCALAR && ag_str_eqc(ag_yscalar_str(x), "minimal"))
        *hold = AG_STREAM_HOLD_MINIMAL;
    else if (x->type == AG_Y_SCALAR && ag_str_eqc(ag_yscalar_str(x), "block"))
        *hold = AG_STREAM_HOLD_BLOCK;
    else
        return fail(d, file, x, "`%s.hold` must be minimal or block", where);
    return AG_OK;
}

/* `hints` (where: "hints" or "upstreams.NAME.hints"): off | on | {ab: PERCENT}. YAML 1.1
 * readers take a bare on/off as booleans; astgate's reader does not, and true/false mean on/off. */
static int parse_hints(const char *file, const ag_ynode_t *n, const char *where, ag_hints_cfg_t *h,
                       ag_diag_t *d)
{
    bool b;
    if (n->type == AG_Y_SCALAR) {
        ag_str_t s = ag_yscalar_str(n);
        if (ag_str_eqc(s, "on") || (ag_yscalar_bool(n, &b) == AG_OK && b))
            *h = (ag_hints_cfg_t){AG_HINTS_ON, 100};
        else if (ag_str_eqc(s, "off") || (ag_yscalar_bool(n, &b) == AG_OK && !b))
            *h = (ag_hints_cfg_t){AG_HINTS_OFF, 0};
        else
            return fail(d, file, n, "`%s` must be off, on or {ab: PERCENT}", where);
        return AG_OK;
    }
    if (n->type != AG_Y_MAP)
        return fail(d, file, n, "`%s` must be off, on or {ab: PERCENT}", where);
    static const char *const keys[] = {"ab", NULL};
    if (check_keys(file, n, keys, where, d) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *ab = ag_ymap_get(n, "ab");
    if (ab == NULL)
        return fail(d, file, n, "`%s` needs `ab: PERCENT` (the share of requests that get hints)",
                    where);
    long v;
    if (ab->type != AG_Y_SCALAR || ag_yscalar_int(ab, &v) != AG_OK || v < 0 || v > 100)
        return fail(d, file, ab, "`%s.ab` must be a whole percentage from 0 to 100", where);
    *h = (ag_hints_cfg_t){AG_HINTS_AB, (uint8_t)v};
    return AG_OK;
}

/* One entry of `upstreams`: a URL, or {url: URL, tls: {...}, stream: {...}, hints: ...} whose
 * tls, stream and hints go over the top-level ones (base, *hold and *hints on entry). */
static int parse_upstream(const char *path, const char *file, const ag_ynode_t *name,
                          const ag_ynode_t *v, const ag_tls_t *base, const tls_src_t *base_src,
                          char *url, size_t url_cap, ag_tls_t *tls, ag_stream_hold_t *hold,
                          ag_hints_cfg_t *hints, ag_diag_t *d)
{
    char where[128], whose[128], tmp[1024];
    snprintf(where, sizeof(where), "upstreams.%s", name->text);
    snprintf(whose, sizeof(whose), "upstream `%s`", name->text);
    *tls = *base;
    tls_src_t src = *base_src;
    const ag_ynode_t *u = v;
    if (v->type == AG_Y_MAP) {
        static const char *const keys[] = {"url", "tls", "stream", "hints", NULL};
        if (check_keys(file, v, keys, where, d) != AG_OK)
            return AG_EINVAL;
        if ((u = ag_ymap_get(v, "url")) == NULL)
            return fail(d, file, v, "`%s` needs a `url`", where);
        const ag_ynode_t *t = ag_ymap_get(v, "tls");
        char tw[160];
        snprintf(tw, sizeof(tw), "%s.tls", where);
        if (t && parse_tls(path, file, t, tw, tls, &src, d) != AG_OK)
            return AG_EINVAL;
        snprintf(tw, sizeof(tw), "%s.stream", where);
        if ((t = ag_ymap_get(v, "stream")) != NULL && parse_stream(file, t, tw, hold, d) != AG_OK)
            return AG_EINVAL;
        snprintf(tw, sizeof(tw), "%s.hints", where);
        if ((t = ag_ymap_get(v, "hints")) != NULL && parse_hints(file, t, tw, hints, d) != AG_OK)
            return AG_EINVAL;
    } else if (v->type != AG_Y_SCALAR) {
        return fail(d, file, v,
                    "`%s` must be a base URL or a mapping {url: ..., tls: {...}, stream: {...}, "
                    "hints: ...}",
                    where);
    }
    if (get_str(file, u, tmp, sizeof(tmp), d, "upstream") != AG_OK)
        return AG_EINVAL;
    if (base_url(tmp, url, url_cap, d) != AG_OK)
        return fail(d, file, u, "%s", d->msg);
    return check_client_pair(file, tls, &src, whose, d);
}

typedef struct parsed_upstream {
    char url[1024];
    ag_tls_t tls;
    ag_stream_hold_t hold;
    ag_hints_cfg_t hints;
} parsed_upstream_t;

/* `upstreams` (every entry checked, used or not) and `routes`. */
static int apply_routes(const char *path, const char *file, const ag_ynode_t *root,
                        const tls_src_t *tsrc, ag_config_t *cfg, ag_diag_t *d)
{
    const ag_ynode_t *ups = ag_ymap_get(root, "upstreams");
    const ag_ynode_t *n = ag_ymap_get(root, "routes");
    parsed_upstream_t *pu = NULL;
    int rc = AG_EINVAL;
    if (ups && ups->type != AG_Y_MAP)
        return fail(d, file, ups, "`upstreams` must map names to base URLs");
    if (ups && ups->n > 0) {
        pu = ag_xcalloc(ups->n, sizeof(*pu));
        for (uint32_t i = 0; i < ups->n; i++) {
            pu[i].hold = cfg->stream_hold;
            pu[i].hints = cfg->hints;
            if (parse_upstream(path, file, ups->pairs[i].key, ups->pairs[i].value, &cfg->tls, tsrc,
                               pu[i].url, sizeof(pu[i].url), &pu[i].tls, &pu[i].hold, &pu[i].hints,
                               d) != AG_OK)
                goto out;
        }
    }
    if (n != NULL) {
        if (n->type != AG_Y_MAP) {
            fail(d, file, n, "`routes` must map path prefixes to upstream names");
            goto out;
        }
        if (n->n > AG_CONFIG_MAX_ROUTES) {
            fail(d, file, n, "too many routes (at most %d)", AG_CONFIG_MAX_ROUTES);
            goto out;
        }
        cfg->nroutes = 0;
        for (uint32_t i = 0; i < n->n; i++) {
            const ag_ynode_t *k = n->pairs[i].key, *val = n->pairs[i].value;
            ag_route_t *rt = &cfg->routes[cfg->nroutes];
            if (k->len == 0 || k->text[0] != '/' || k->len >= sizeof(rt->prefix)) {
                fail(d, file, k, "a route must be a path prefix starting with /");
                goto out;
            }
            if (get_str(file, val, rt->name, sizeof(rt->name), d, "route upstream") != AG_OK)
                goto out;
            uint32_t j = 0;
            while (ups && j < ups->n && !ag_str_eqc(ag_yscalar_str(ups->pairs[j].key), rt->name))
                j++;
            if (ups == NULL || j == ups->n) {
                fail(d, file, val,
                     "route `%s` names an unknown upstream `%s` (define it under `upstreams`)",
                     k->text, rt->name);
                goto out;
            }
            memcpy(rt->prefix, k->text, k->len + 1);
            memcpy(rt->url, pu[j].url, sizeof(rt->url));
            rt->tls = pu[j].tls;
            rt->hold = pu[j].hold;
            rt->hints = pu[j].hints;
            cfg->nroutes++;
        }
    }
    rc = AG_OK;
out:
    free(pu);
    return rc;
}

static int apply(const char *path, const char *file, const ag_ynode_t *root, ag_config_t *cfg,
                 ag_diag_t *d)
{
    static const char *const top[] = {
        "listen",       "upstream", "rules",  "workers", "timeouts",  "limits", "logs",
        "block_status", "bare",     "mode",   "admin",   "upstreams", "routes", "forwarded",
        "tls",          "tools",    "stream", "hints",   NULL};
    if (check_keys(file, root, top, "the configuration", d) != AG_OK)
        return AG_EINVAL;
    const ag_ynode_t *n;
    char tmp[1024];
    uint64_t v = 0;
    if ((n = ag_ymap_get(root, "listen")) != NULL) {
        if (get_str(file, n, tmp, sizeof(tmp), d, "listen") != AG_OK)
            return AG_EINVAL;
        if (ag_config_set_listen(cfg, tmp, d) != AG_OK)
            return fail(d, file, n, "%s", d->msg);
    }
    if ((n = ag_ymap_get(root, "upstream")) != NULL) {
        if (get_str(file, n, tmp, sizeof(tmp), d, "upstream") != AG_OK)
            return AG_EINVAL;
        if (ag_config_set_upstream(cfg, tmp, d) != AG_OK)
            return fail(d, file, n, "%s", d->msg);
    }
    if ((n = ag_ymap_get(root, "rules")) != NULL) {
        if (n->type != AG_Y_SEQ || n->n == 0)
            return fail(d, file, n, "`rules` must be a non-empty list of rule files");
        for (uint32_t i = 0; i < n->n; i++) {
            const ag_ynode_t *it = n->items[i], *fn = it, *set = NULL;
            if (it->type == AG_Y_MAP) { /* {file: PATH, set: {NAME: VALUE}} */
                static const char *const keys[] = {"file", "set", NULL};
                if (check_keys(file, it, keys, "a rules entry", d) != AG_OK)
                    return AG_EINVAL;
                fn = ag_ymap_get(it, "file");
                set = ag_ymap_get(it, "set");
                if (fn == NULL)
                    return fail(d, file, it, "a rules entry needs `file`");
            }
            if (get_str(file, fn, tmp, sizeof(tmp), d, "rules") != AG_OK)
                return AG_EINVAL;
            char full[2048];
            rel_path(path, tmp, full, sizeof(full));
            if (ag_config_add_rules(cfg, full, i == 0, d) != AG_OK)
                return fail(d, file, n->items[i], "%s", d->msg);
            if (set && rule_sets(file, set, cfg, cfg->nrules - 1, d) != AG_OK)
                return AG_EINVAL;
        }
    }
    if ((n = ag_ymap_get(root, "workers")) != NULL) {
        if (get_uint(file, n, 256, &v, d, "workers") != AG_OK)
            return AG_EINVAL;
        cfg->workers = (uint32_t)v;
    }
    if ((n = ag_ymap_get(root, "timeouts")) != NULL) {
        static const char *const keys[] = {"connect_ms", "upstream_ms",  "client_ms", "parse_us",
                                           "header_ms",  "keepalive_ms", "drain_ms",  NULL};
        if (check_keys(file, n, keys, "timeouts", d) != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *x;
        if ((x = ag_ymap_get(n, "connect_ms")) != NULL) {
            if (get_uint(file, x, 3600000, &v, d, "connect_ms") != AG_OK)
                return AG_EINVAL;
            cfg->connect_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "upstream_ms")) != NULL) {
            if (get_uint(file, x, 86400000, &v, d, "upstream_ms") != AG_OK)
                return AG_EINVAL;
            cfg->upstream_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "client_ms")) != NULL) {
            if (get_uint(file, x, 86400000, &v, d, "client_ms") != AG_OK)
                return AG_EINVAL;
            cfg->client_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "header_ms")) != NULL) {
            if (get_uint(file, x, 86400000, &v, d, "header_ms") != AG_OK)
                return AG_EINVAL;
            cfg->header_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "drain_ms")) != NULL) {
            if (get_uint(file, x, 86400000, &v, d, "drain_ms") != AG_OK)
                return AG_EINVAL;
            cfg->drain_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "keepalive_ms")) != NULL) {
            if (get_uint(file, x, 86400000, &v, d, "keepalive_ms") != AG_OK)
                return AG_EINVAL;
            cfg->keepalive_timeout_ms = (uint32_t)v;
        }
        if ((x = ag_ymap_get(n, "parse_us")) != NULL) {
            if (get_uint(file, x, 60000000, &v, d, "parse_us") != AG_OK)
                return AG_EINVAL;
            cfg->parse_timeout_us = v;
        }
    }
    if ((n = ag_ymap_get(root, "limits")) != NULL) {
        static const char *const keys[] = {
            "max_request_body", "max_response_body", "max_held",        "max_header_bytes",
            "max_headers",      "max_url_bytes",     "max_connections", NULL};
        if (check_keys(file, n, keys, "limits", d) != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *x;
        if ((x = ag_ymap_get(n, "max_request_body")) != NULL) {
            if (get_uint(file, x, 1ull << 32, &v, d, "max_request_body") != AG_OK)
                return AG_EINVAL;
            cfg->max_request_body = v;
        }
        if ((x = ag_ymap_get(n, "max_response_body")) != NULL) {
            if (get_uint(file, x, 1ull << 32, &v, d, "max_response_body") != AG_OK)
                return AG_EINVAL;
            cfg->max_response_body = v;
        }
        if ((x = ag_ymap_get(n, "max_held")) != NULL) {
            if (get_uint(file, x, 1ull << 30, &v, d, "max_held") != AG_OK)
                return AG_EINVAL;
            cfg->max_held = v;
        }
        /* a head must hold at least a request line and a Host header; the upper bounds keep
         * one client's head well inside a worker's memory */
        static const struct {
            const char *key;
            uint64_t min, max;
            size_t off;
        } u32[] = {
            {"max_header_bytes", 256, 16u << 20, offsetof(ag_config_t, max_header_bytes)},
            {"max_headers", 1, 100000, offsetof(ag_config_t, max_headers)},
            {"max_url_bytes", 16, 16u << 20, offsetof(ag_config_t, max_url_bytes)},
            {"max_connections", 1, 10000000, offsetof(ag_config_t, max_connections)},
        };
        for (size_t i = 0; i < sizeof(u32) / sizeof(u32[0]); i++) {
            if ((x = ag_ymap_get(n, u32[i].key)) == NULL)
                continue;
            if (get_uint(file, x, u32[i].max, &v, d, u32[i].key) != AG_OK)
                return AG_EINVAL;
            if (v < u32[i].min)
                return fail(d, file, x, "`%s` must be at least %llu", u32[i].key,
                            (unsigned long long)u32[i].min);
            *(uint32_t *)((char *)cfg + u32[i].off) = (uint32_t)v;
        }
    }
    if ((n = ag_ymap_get(root, "forwarded")) != NULL) {
        static const char *const modes[] = {"append", "replace", "off"};
        int mode = -1;
        for (int i = 0; i < 3; i++)
            if (n->type == AG_Y_SCALAR && ag_str_eqc(ag_yscalar_str(n), modes[i]))
                mode = i;
        /* YAML reads a bare `off` as a boolean; take it as the word */
        bool b;
        if (mode < 0 && n->type == AG_Y_SCALAR && ag_yscalar_bool(n, &b) == AG_OK && !b)
            mode = AG_FORWARDED_OFF;
        if (mode < 0)
            return fail(d, file, n, "`forwarded` must be append, replace or off");
        cfg->forwarded = mode;
    }
    if ((n = ag_ymap_get(root, "logs")) != NULL) {
        static const char *const keys[] = {"access", "rewrite", NULL};
        if (check_keys(file, n, keys, "logs", d) != AG_OK)
            return AG_EINVAL;
        const ag_ynode_t *x;
        if ((x = ag_ymap_get(n, "access")) != NULL &&
            get_str(file, x, cfg->access_log, sizeof(cfg->access_log), d, "access") != AG_OK)
            return AG_EINVAL;
        if ((x = ag_ymap_get(n, "rewrite")) != NULL &&
            get_str(file, x, cfg->rewrite_log, sizeof(cfg->rewrite_log), d, "rewrite") != AG_OK)
            return AG_EINVAL;
    }
    if ((n = ag_ymap_get(root, "block_status")) != NULL) {
        if (get_uint(file, n, 599, &v, d, "block_status") != AG_OK || v < 400)
            return fail(d, file, n, "`block_status` must be an HTTP error status (400-599)");
        cfg->block_status = (int)v;
    }
    if ((n = ag_ymap_get(root, "bare")) != NULL && ag_yscalar_bool(n, &cfg->bare) != AG_OK)
        return fail(d, file, n, "`bare` must be true or false");
    if ((n = ag_ymap_get(root, "mode")) != NULL) {
        if (n->type == AG_Y_SCALAR && ag_str_eqc(ag_yscalar_str(n), "shadow"))
            cfg->shadow = true;
        else if (n->type == AG_Y_SCALAR && ag_str_eqc(ag_yscalar_str(n), "enforce"))
            cfg->shadow = false;
        else
            return fail(d, file, n, "`mode` must be enforce or shadow");
    }
    if ((n = ag_ymap_get(root, "tools")) != NULL && parse_tools(file, n, &cfg->tools, d) != AG_OK)
        return AG_EINVAL;
    /* the top-level stream, hints and tls first: named upstreams start from them */
    if ((n = ag_ymap_get(root, "stream")) != NULL &&
        parse_stream(file, n, "stream", &cfg->stream_hold, d) != AG_OK)
        return AG_EINVAL;
    if ((n = ag_ymap_get(root, "hints")) != NULL &&
        parse_hints(file, n, "hints", &cfg->hints, d) != AG_OK)
        return AG_EINVAL;
    tls_src_t tsrc = {NULL, NULL};
    if ((n = ag_ymap_get(root, "tls")) != NULL) {
        if (parse_tls(path, file, n, "tls", &cfg->tls, &tsrc, d) != AG_OK)
            return AG_EINVAL;
        if (check_client_pair(file, &cfg->tls, &tsrc, "the default upstream", d) != AG_OK)
            return AG_EINVAL;
    }
    if (apply_routes(path, file, root, &tsrc, cfg, d) != AG_OK)
        return AG_EINVAL;
    if ((n = ag_ymap_get(root, "admin")) != NULL) {
        if (get_str(file, n, tmp, sizeof(tmp), d, "admin") != AG_OK)
            return AG_EINVAL;
        ag_config_t probe = *cfg;
        if (ag_config_set_listen(&probe, tmp, d) != AG_OK)
            return fail(d, file, n, "admin: %s", d->msg);
        memcpy(cfg->admin_host, probe.listen_host, sizeof(cfg->admin_host));
        cfg->admin_port = probe.listen_port;
    }
    return AG_OK;
}

static int load_text(const char *path, ag_str_t text, ag_config_t *cfg, ag_diag_t *d)
{
    const char *file = path ? path : "(embedded default)";
    ag_ydocs_t docs;
    memset(&docs, 0, sizeof(docs));
    int rc = ag_yaml_load(text, file, &docs, d);
    if (rc != AG_OK)
        return rc;
    if (docs.n != 1 || docs.roots[0]->type != AG_Y_MAP)
        rc = fail(d, file, docs.n ? docs.roots[0] : NULL,
                  "the configuration must be one YAML mapping");
    else
        rc = apply(path, file, docs.roots[0], cfg, d);
    ag_ydocs_dispose(&docs);
    return rc;
}

int ag_config_load(const char *path, ag_config_t *cfg, ag_diag_t *d)
{
    memset(cfg, 0, sizeof(*cfg));
    tls_defaults(&cfg->tls);
    ag_tools_presets(&cfg->tools);
    /* the embedded default first; a file overrides what it sets */
    int rc =
        load_text(NULL, ag_str(ag_config_default_yaml, strlen(ag_config_default_yaml)), cfg, d);
    AG_ASSERT(rc == AG_OK);
    snprintf(cfg->source, sizeof(cfg->source), "(embedded default)");
    if (path == NULL)
        return AG_OK;
    ag_buf_t b;
    ag_buf_init(&b, 1u << 20);
    rc = ag_read_file(path, &b);
    if (rc != AG_OK) {
        ag_diag_set(d, path, 0, 0, "cannot read the configuration: %s",
                    rc == AG_ETOOBIG ? "larger than 1 MiB" : strerror(errno));
        ag_buf_dispose(&b);
        ag_config_dispose(cfg);
        return rc == AG_ETOOBIG ? AG_EINVAL : AG_EIO;
    }
    rc = load_text(path, ag_buf_str(&b), cfg, d);
    ag_buf_dispose(&b);
    if (rc != AG_OK) {
        ag_config_dispose(cfg);
        return rc;
    }
    snprintf(cfg->source, sizeof(cfg->source), "%s", path);
    return AG_OK;
}

const char *ag_config_upstream_for(const ag_config_t *cfg, const char *path)
{
    return ag_config_target_url(cfg, ag_config_target_for(cfg, path));
}

const char *ag_config_target_url(const ag_config_t *cfg, uint32_t target)
{
    return target == 0 || target > cfg->nroutes ? cfg->upstream : cfg->routes[target - 1].url;
}

const ag_tls_t *ag_config_target_tls(const ag_config_t *cfg, uint32_t target)
{
    return target == 0 || target > cfg->nroutes ? &cfg->tls : &cfg->routes[target - 1].tls;
}

ag_stream_hold_t ag_config_target_hold(const ag_config_t *cfg, uint32_t target)
{
    return target == 0 || target > cfg->nroutes ? cfg->stream_hold : cfg->routes[target - 1].hold;
}

ag_hints_cfg_t ag_config_target_hints(const ag_config_t *cfg, uint32_t target)
{
    return target == 0 || target > cfg->nroutes ? cfg->hints : cfg->routes[target - 1].hints;
}

uint32_t ag_config_target_for(const ag_config_t *cfg, const char *path)
{
    uint32_t best = 0;
    size_t best_len = 0;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        size_t n = strlen(cfg->routes[i].prefix);
        if (n > best_len && strncmp(path, cfg->routes[i].prefix, n) == 0 &&
            (path[n] == '\0' || path[n] == '/' || path[n] == '?' ||
             cfg->routes[i].prefix[n - 1] == '/')) {
            best = i + 1;
            best_len = n;
        }
    }
    return best;
}

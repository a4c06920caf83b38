/* The rewrite of the code in one tool call's input (see toolcode.h): the fields that hold code, the
 * pieces of code in them (a whole file, a fragment, the REPLACE sides of Cline's blocks, the +
 * lines of a Codex patch), each rewritten by the engine, and the new text spliced back with only
 * the changed bytes re-encoded. */
#include "toolcode.h"

#include "changes.h"
#include "jsonscan.h"

#define MAX_MATCHES 4096      /* field values in one call's arguments (MultiEdit's edits) */
#define MAX_TEXT (256u << 20) /* bytes of a decoded field, of code, of a rewritten piece */
#define FIELD_NAME_MAX 160    /* "edits[12].new_string" */

/* One change to the field's decoded text. */
typedef struct tc_edit {
    size_t start, end; /* decoded bytes replaced */
    size_t off, len;   /* the new text, in tc->etext */
} tc_edit_t;

/* One + line of a patch piece. */
typedef struct tc_line {
    size_t at;   /* in the field's text, just after the '+' */
    size_t len;  /* bytes after the '+', the line ending included */
    size_t code; /* where the line starts in the piece's code */
} tc_line_t;

/* One piece of code in the field's text. */
typedef struct tc_piece {
    ag_str_t label;    /* engine label: "ts", "tsx", ..., "md" */
    ag_str_t file;     /* for reports */
    bool fragment;     /* a piece of a file */
    bool plus;         /* the code is tc->lines with their '+' stripped */
    bool keep_eol;     /* the piece ends a line that must stay ended (a marker line follows) */
    size_t start, end; /* the piece in the field's text (plus: from the first '+') */
    uint32_t index;    /* the piece's number in the field (events' block) */
    uint32_t line0;    /* lines of the field's text before the piece */
} tc_piece_t;

typedef struct tc {
    ag_engine_t *e;
    const ag_tool_call_t *call;
    ag_tool_report_fn report;
    void *ud;
    ag_str_t text;     /* the field's decoded text */
    const char *field; /* its name, for reports */
    tc_edit_t *ed;     /* the field's edits, in order */
    size_t ned, edcap;
    tc_line_t *lines; /* the + lines of the patch piece being gathered */
    size_t nlines, linecap;
    ag_buf_t etext;          /* edit texts */
    ag_buf_t code, rw, want; /* a piece's code, the engine's output, the piece's new text */
    ag_buf_t trial;          /* the piece's text with the mapped edits applied */
    size_t lf_off;           /* lines_before: line feeds before lf_off in text ... */
    uint32_t lf_n;           /* ... are lf_n */
    bool code_seen;          /* some field held code (by extension, or a patch's files) */
    int rc;                  /* first failure (AG_ETOOBIG) */
} tc_t;

static bool utf8_cont(ag_str_t s, size_t i)
{
    return i < s.len && ((unsigned char)s.ptr[i] & 0xc0) == 0x80;
}

static bool starts(ag_str_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.ptr, prefix, n) == 0;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static ag_str_t trim(ag_str_t s)
{
    while (s.len && blank(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len && blank(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* The engine label of the code a file holds: its extension when it is one of the TypeScript
 * family's (the default fence languages), or Markdown's; len 0 when the file is not code. */
static ag_str_t file_label(ag_str_t path)
{
    static const char *const names[] = {"ts",  "tsx", "js", "jsx", "mts", "cts",
                                        "mjs", "cjs", "md", "mdx", NULL};
    size_t i = path.len;
    while (i > 0 && path.ptr[i - 1] != '.' && path.ptr[i - 1] != '/' && path.ptr[i - 1] != '\\')
        i--;
    if (i == 0 || path.ptr[i - 1] != '.')
        return ag_str(NULL, 0);
    ag_str_t ext = ag_str(path.ptr + i, path.len - i);
    for (const char *const *n = names; *n; n++)
        if (ag_str_eqci(ext, *n))
            return ext;
    return ag_str(NULL, 0);
}

/* ---- edits ---- */

static ag_str_t edit_text(const tc_t *tc, const tc_edit_t *ed)
{
    return ag_str(ag_buf_str(&tc->etext).ptr + ed->off, ed->len);
}

static void edit_add(tc_t *tc, size_t start, size_t end, ag_str_t text, bool plus_after,
                     bool last_eol_bare, bool plus_before)
{
    if (tc->rc != AG_OK)
        return;
    if (tc->ned == tc->edcap) {
        tc->edcap = tc->edcap ? tc->edcap * 2 : 16;
        tc->ed = ag_xrealloc(tc->ed, tc->edcap * sizeof(*tc->ed));
    }
    tc_edit_t *ed = &tc->ed[tc->ned];
    ed->start = start;
    ed->end = end;
    ed->off = tc->etext.len;
    int rc = plus_before && text.len ? ag_buf_appendc(&tc->etext, '+') : AG_OK;
    for (size_t i = 0; i < text.len && rc == AG_OK; i++) {
        rc = ag_buf_appendc(&tc->etext, text.ptr[i]);
        /* in + lines, every line the new text starts gets its '+' */
        if (rc == AG_OK && plus_after && text.ptr[i] == '\n' &&
            !(i + 1 == text.len && last_eol_bare))
            rc = ag_buf_appendc(&tc->etext, '+');
    }
    if (rc != AG_OK) {
        tc->rc = rc;
        return;
    }
    ed->len = tc->etext.len - ed->off;
    tc->ned++;
}

/* One edit turning old (at start in the field's text) into want, over the span that differs. */
static void edit_diff(tc_t *tc, size_t start, ag_str_t old, ag_str_t want)
{
    size_t lim = old.len < want.len ? old.len : want.len;
    size_t p = 0, q = 0;
    while (p < lim && old.ptr[p] == want.ptr[p])
        p++;
    while (p > 0 && utf8_cont(old, p))
        p--;
    while (q < lim - p && old.ptr[old.len - 1 - q] == want.ptr[want.len - 1 - q])
        q++;
    while (q > 0 && utf8_cont(old, old.len - q))
        q--;
    edit_add(tc, start + p, start + old.len - q, ag_str(want.ptr + p, want.len - q - p), false,
             false, false);
}

/* ---- one piece ---- */

/* Where code offset c of a plus piece is in the field's text (a line start: just after its '+'). */
static size_t plus_at(const tc_t *tc, size_t c, size_t code_len)
{
    const tc_line_t *l = tc->lines;
    size_t lo = 0, hi = tc->nlines;
    if (c >= code_len)
        return l[tc->nlines - 1].at + l[tc->nlines - 1].len;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (l[mid].code <= c)
            lo = mid;
        else
            hi = mid;
    }
    return l[lo].at + (c - l[lo].code);
}

/* The piece's new text from the engine's output: as it is, or with a '+' on every line. */
static int piece_want(tc_t *tc, const tc_piece_t *p)
{
    ag_str_t code = ag_buf_str(&tc->code), rw = ag_buf_str(&tc->rw);
    int rc = AG_OK;
    ag_buf_reset(&tc->want);
    for (size_t i = 0; i < rw.len && rc == AG_OK; i++) {
        if (p->plus && (i == 0 || rw.ptr[i - 1] == '\n'))
            rc = ag_buf_appendc(&tc->want, '+');
        if (rc == AG_OK)
            rc = ag_buf_appendc(&tc->want, rw.ptr[i]);
    }
    /* the marker line after the piece stays a line of its own */
    if (rc == AG_OK && p->keep_eol && code.len && code.ptr[code.len - 1] == '\n' &&
        (rw.len == 0 || rw.ptr[rw.len - 1] != '\n'))
        rc = ag_buf_appendc(&tc->want, '\n');
    return rc;
}

/* The engine's applied edits, as edits of the field's text; false when they do not map. */
static bool map_edits(tc_t *tc, const tc_piece_t *p, const ag_result_t *res)
{
    ag_str_t code = ag_buf_str(&tc->code);
    size_t prev = 0;
    for (uint32_t k = 0; k < res->nevents; k++) {
        const ag_event_t *ev = &res->events[k];
        if (ev->action != AG_ACTION_REWRITE || !ev->applied)
            continue;
        size_t s = ev->offset, en = s + ev->before.len;
        if (s < prev || en > code.len || utf8_cont(code, s) || utf8_cont(code, en) ||
            (ev->before.len && memcmp(code.ptr + s, ev->before.ptr, ev->before.len) != 0))
            return false;
        prev = en;
        if (p->plus) {
            bool at_end_line = code.len && code.ptr[code.len - 1] == '\n';
            edit_add(tc, plus_at(tc, s, code.len), plus_at(tc, en, code.len), ev->after, true,
                     en == code.len, s == code.len && at_end_line);
        } else {
            edit_add(tc, p->start + s, p->start + en, ev->after, false, false, false);
        }
    }
    return tc->rc == AG_OK;
}

/* Whether the edits from first on turn the piece's text into tc->want. */
static bool edits_give_want(tc_t *tc, const tc_piece_t *p, size_t first)
{
    ag_buf_reset(&tc->trial);
    size_t pos = p->start;
    int rc = AG_OK;
    for (size_t i = first; i < tc->ned && rc == AG_OK; i++) {
        const tc_edit_t *ed = &tc->ed[i];
        if (ed->start < pos || ed->end < ed->start || ed->end > p->end)
            return false;
        ag_str_t t = edit_text(tc, ed);
        rc = ag_buf_append(&tc->trial, tc->text.ptr + pos, ed->start - pos);
        if (rc == AG_OK)
            rc = ag_buf_append(&tc->trial, t.ptr, t.len);
        pos = ed->end;
    }
    if (rc == AG_OK)
        rc = ag_buf_append(&tc->trial, tc->text.ptr + pos, p->end - pos);
    return rc == AG_OK && ag_str_eq(ag_buf_str(&tc->trial), ag_buf_str(&tc->want));
}

/* Rewrites one piece of code, reports it, and records the edits of the field's text. */
static void piece(tc_t *tc, const tc_piece_t *p)
{
    if (tc->rc != AG_OK)
        return;
    tc->code_seen = true;
    ag_buf_reset(&tc->code);
    int rc = AG_OK;
    if (p->plus)
        for (size_t i = 0; i < tc->nlines && rc == AG_OK; i++)
            rc = ag_buf_append(&tc->code, tc->text.ptr + tc->lines[i].at, tc->lines[i].len);
    else
        rc = ag_buf_append(&tc->code, tc->text.ptr + p->start, p->end - p->start);
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    ag_buf_reset(&tc->rw);
    if (rc == AG_OK) {
        ag_engine_set_origin(tc->e, p->index, p->line0, 0);
        rc = ag_engine_rewrite_code(tc->e, ag_buf_str(&tc->code), p->label, p->fragment, &tc->rw,
                                    &res);
        ag_engine_set_origin(tc->e, 0, 0, 0);
    }
    if (rc != AG_OK) {
        tc->rc = rc;
        return;
    }
    if (res.blocks && tc->report) {
        ag_tool_site_t site;
        memset(&site, 0, sizeof(site));
        site.call = tc->call;
        site.field = tc->field;
        site.file = p->file;
        site.fragment = p->fragment;
        tc->report(tc->ud, &site, &res);
    }
    if (ag_str_eq(ag_buf_str(&tc->rw), ag_buf_str(&tc->code)))
        return;
    rc = piece_want(tc, p);
    if (rc != AG_OK) {
        tc->rc = rc;
        return;
    }
    /* the engine's own edits keep every other byte (and escape) of the field; checked against
     * the piece rebuilt from the engine's output, which wins when they differ */
    size_t first = tc->ned;
    if (!map_edits(tc, p, &res) || !edits_give_want(tc, p, first)) {
        if (tc->rc != AG_OK)
            return;
        tc->ned = first;
        edit_diff(tc, p->start, ag_str(tc->text.ptr + p->start, p->end - p->start),
                  ag_buf_str(&tc->want));
    }
}

/* Number of line feeds in the field's text before off (pieces come in order: counted on from
 * the last one). */
static uint32_t lines_before(tc_t *tc, size_t off)
{
    if (off < tc->lf_off) {
        tc->lf_off = 0;
        tc->lf_n = 0;
    }
    for (size_t i = tc->lf_off; i < off; i++)
        tc->lf_n += tc->text.ptr[i] == '\n';
    tc->lf_off = off;
    return tc->lf_n;
}

/* ---- the kinds of fields ---- */

/* Cline's blocks: ------- SEARCH / old / ======= / new / +++++++ REPLACE (also the older
 * <<<<<<< SEARCH and >>>>>>> REPLACE, and a '>' after the word, as Cline's parser takes them). */
static bool sr_marker(ag_str_t line, char ch, const char *word)
{
    while (line.len && (line.ptr[line.len - 1] == '\r'))
        line.len--;
    size_t i = 0;
    while (i < line.len && line.ptr[i] == ch)
        i++;
    if (i < 3)
        return false;
    if (word == NULL)
        return i == line.len;
    ag_str_t rest = ag_str(line.ptr + i, line.len - i);
    size_t wl = strlen(word);
    if (rest.len && rest.ptr[rest.len - 1] == '>')
        rest.len--;
    return rest.len == wl + 1 && rest.ptr[0] == ' ' && memcmp(rest.ptr + 1, word, wl) == 0;
}

static void search_replace(tc_t *tc, ag_str_t label, ag_str_t file)
{
    enum { OUT, SEARCH, REPLACE } st = OUT;
    ag_str_t t = tc->text;
    size_t search_from = 0, replace_from = 0;
    tc_piece_t p;
    memset(&p, 0, sizeof(p));
    p.label = label;
    p.file = file;
    p.keep_eol = true;
    for (size_t pos = 0; pos < t.len;) {
        const char *nl = memchr(t.ptr + pos, '\n', t.len - pos);
        size_t next = nl ? (size_t)(nl - t.ptr) + 1 : t.len;
        ag_str_t line = ag_str(t.ptr + pos, (nl ? (size_t)(nl - t.ptr) : t.len) - pos);
        if (st == OUT && (sr_marker(line, '-', "SEARCH") || sr_marker(line, '<', "SEARCH"))) {
            st = SEARCH;
            search_from = next;
        } else if (st == SEARCH && sr_marker(line, '=', NULL)) {
            st = REPLACE;
            replace_from = next;
            /* an empty SEARCH side: the REPLACE side is the whole file */
            p.fragment = pos != search_from;
        } else if (st == REPLACE &&
                   (sr_marker(line, '+', "REPLACE") || sr_marker(line, '>', "REPLACE"))) {
            st = OUT;
            p.start = replace_from;
            p.end = pos;
            p.line0 = lines_before(tc, replace_from);
            if (p.end > p.start)
                piece(tc, &p);
            p.index++;
        }
        pos = next;
    }
    if (st == REPLACE && replace_from < t.len) {
        /* no REPLACE marker: the rest is the new text, of which we cannot see the end */
        p.start = replace_from;
        p.end = t.len;
        p.line0 = lines_before(tc, replace_from);
        p.fragment = true;
        p.keep_eol = false;
        piece(tc, &p);
    }
}

enum { PATCH_ENVELOPE, PATCH_CREATE, PATCH_UPDATE };
enum { SEC_NONE, SEC_ADD, SEC_UPDATE };

static void line_push(tc_t *tc, size_t at, size_t len, size_t code)
{
    if (tc->nlines == tc->linecap) {
        tc->linecap = tc->linecap ? tc->linecap * 2 : 64;
        tc->lines = ag_xrealloc(tc->lines, tc->linecap * sizeof(*tc->lines));
    }
    tc->lines[tc->nlines++] = (tc_line_t){at, len, code};
}

/* The run of + lines gathered: one piece (when its file is code). */
static void run_flush(tc_t *tc, tc_piece_t *p, bool whole, bool keep_eol)
{
    if (tc->nlines == 0)
        return;
    if (p->label.len) {
        const tc_line_t *last = &tc->lines[tc->nlines - 1];
        p->fragment = !whole;
        p->plus = true;
        p->keep_eol = keep_eol;
        p->start = tc->lines[0].at - 1;
        p->end = last->at + last->len;
        p->line0 = lines_before(tc, p->start);
        piece(tc, p);
        p->index++;
    }
    tc->nlines = 0;
}

/* Codex's patch envelope (mode PATCH_ENVELOPE), or the diff of a Responses apply_patch_call's
 * create_file / update_file operation on path (no envelope). Only + lines ever change: an Add
 * File body (a create_file diff) is a whole file, each run of + lines in an update a fragment. */
static void patch(tc_t *tc, int mode, ag_str_t path)
{
    ag_str_t t = tc->text;
    bool in = mode != PATCH_ENVELOPE;
    int sec = mode == PATCH_CREATE ? SEC_ADD : mode == PATCH_UPDATE ? SEC_UPDATE : SEC_NONE;
    bool first_run = true; /* the gathered run is the first thing of an Add File body */
    tc_piece_t p;
    memset(&p, 0, sizeof(p));
    p.file = path;
    p.label = file_label(path);
    tc->nlines = 0;
    size_t code = 0;
    for (size_t pos = 0; pos < t.len;) {
        const char *nl = memchr(t.ptr + pos, '\n', t.len - pos);
        size_t next = nl ? (size_t)(nl - t.ptr) + 1 : t.len;
        ag_str_t line = ag_str(t.ptr + pos, next - pos);
        if (in && sec != SEC_NONE && line.ptr[0] == '+') {
            if (tc->nlines == 0)
                code = 0;
            line_push(tc, pos + 1, line.len - 1, code);
            code += line.len - 1;
            pos = next;
            continue;
        }
        ag_str_t mk = trim(line);
        bool marker = in && starts(mk, "*** ");
        /* an Add File body is whole when the next marker ends it */
        run_flush(tc, &p, sec == SEC_ADD && first_run && marker, true);
        if (sec == SEC_ADD)
            first_run = false;
        if (!in) {
            in = ag_str_eqc(mk, "*** Begin Patch");
        } else if (marker) {
            bool add = starts(mk, "*** Add File:"), upd = starts(mk, "*** Update File:");
            if (add || upd) {
                size_t n = add ? strlen("*** Add File:") : strlen("*** Update File:");
                sec = add ? SEC_ADD : SEC_UPDATE;
                p.file = trim(ag_str(mk.ptr + n, mk.len - n));
                p.label = file_label(p.file);
                first_run = true;
            } else if (starts(mk, "*** Move to:") && sec == SEC_UPDATE) {
                /* the code ends up in the new file: its name picks the language */
                size_t n = strlen("*** Move to:");
                p.label = file_label(trim(ag_str(mk.ptr + n, mk.len - n)));
            } else if (starts(mk, "*** Delete File:")) {
                sec = SEC_NONE;
            } else if (ag_str_eqc(mk, "*** End Patch") && mode == PATCH_ENVELOPE) {
                in = false;
                sec = SEC_NONE;
            }
        }
        pos = next;
    }
    /* the text ends in a run: a create_file diff ends so; an envelope without its end marker may
     * be cut, so its last run is a fragment */
    run_flush(tc, &p, sec == SEC_ADD && first_run && mode == PATCH_CREATE, false);
}

/* The field's code, by kind; label/file: the call's file (ARGS) when it names one. */
static void field(tc_t *tc, int kind, ag_str_t label, ag_str_t file)
{
    tc->ned = 0;
    tc->lf_off = 0;
    tc->lf_n = 0;
    if (kind == AG_TOOL_PATCH) {
        patch(tc, PATCH_ENVELOPE, ag_str(NULL, 0));
        return;
    }
    if (label.len == 0)
        return; /* the file is not code */
    if (kind == AG_TOOL_SEARCH_REPLACE) {
        search_replace(tc, label, file);
        return;
    }
    tc_piece_t p;
    memset(&p, 0, sizeof(p));
    p.label = label;
    p.file = file;
    p.fragment = kind == AG_TOOL_FRAGMENT;
    p.end = tc->text.len;
    piece(tc, &p);
}

/* ---- the inputs ---- */

/* The field's name with the concrete array indexes of m: "edits[*].new_string" -> "edits[1]...". */
static void field_name(char *dst, size_t cap, const char *pattern, const ag_jscan_match_t *m)
{
    size_t o = 0, k = 0;
    for (const char *s = pattern; *s && o + 1 < cap; s++) {
        if (s[0] == '[' && s[1] == '*' && s[2] == ']' && k < m->nidx) {
            int w = snprintf(dst + o, cap - o, "[%zu]", m->idx[k++]);
            if (w < 0 || (size_t)w >= cap - o)
                break;
            o += (size_t)w;
            s += 2;
            continue;
        }
        dst[o++] = *s;
    }
    dst[o] = '\0';
}

static int rewrite_args(tc_t *tc, const ag_tool_t *tool, ag_str_t input, ag_buf_t *out)
{
    ag_jscan_path_t paths[AG_TOOL_MAX_FIELDS + 1];
    int kind[AG_TOOL_MAX_FIELDS + 1];
    const char *pattern[AG_TOOL_MAX_FIELDS + 1];
    size_t np = 0;
    int file_path = -1;
    if (tool->file[0] &&
        ag_jscan_path_compile(&paths[np], ag_cstr(tool->file), AG_JSCAN_STRING) == AG_OK)
        file_path = (int)np++;
    for (uint32_t i = 0; i < tool->nfields && i < AG_TOOL_MAX_FIELDS; i++) {
        const ag_tool_field_t *f = &tool->field[i];
        if (f->path[0] == '\0' ||
            ag_jscan_path_compile(&paths[np], ag_cstr(f->path), AG_JSCAN_STRING) != AG_OK)
            continue;
        kind[np] = f->kind;
        pattern[np] = f->path;
        np++;
    }
    /* few values as a rule; a long MultiEdit takes a second pass */
    size_t cap = 64, n = 0, *map = NULL;
    ag_jscan_match_t *m = ag_xmalloc(cap * sizeof(*m));
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t dec, file;
    ag_buf_init(&dec, MAX_TEXT);
    ag_buf_init(&file, 4096);
    int rc = ag_jscan_find(input, paths, np, m, cap, &n, NULL);
    if (rc == AG_ETOOBIG) {
        cap = MAX_MATCHES;
        m = ag_xrealloc(m, cap * sizeof(*m));
        rc = ag_jscan_find(input, paths, np, m, cap, &n, NULL);
    }
    if (rc != AG_OK)
        goto out;
    /* the file the call writes (the last one, as JSON.parse takes duplicate keys); a tool that
     * names no file carries TypeScript */
    ag_str_t label = AG_STR_LIT("ts");
    if (file_path >= 0) {
        for (size_t i = 0; i < n; i++)
            if (m[i].path == file_path) {
                ag_buf_reset(&file);
                if (ag_jscan_decode(input, m[i].off, m[i].len, &file, NULL, 0, NULL) != AG_OK)
                    ag_buf_reset(&file);
            }
        label = file_label(ag_buf_str(&file));
    }
    size_t last_off = SIZE_MAX;
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if ((int)m[i].path == file_path || m[i].off == last_off)
            continue; /* a value that two paths name is rewritten once */
        last_off = m[i].off;
        char name[FIELD_NAME_MAX];
        field_name(name, sizeof(name), pattern[m[i].path], &m[i]);
        ag_buf_reset(&dec);
        size_t map_len = 0;
        map = ag_xmalloc((m[i].len + 1) * sizeof(*map));
        rc = ag_jscan_decode(input, m[i].off, m[i].len, &dec, map, m[i].len + 1, &map_len);
        if (rc != AG_OK)
            break;
        tc->text = ag_buf_str(&dec);
        tc->field = name;
        field(tc, kind[m[i].path], label, ag_buf_str(&file));
        rc = tc->rc;
        if (rc == AG_OK && tc->ned) {
            ag_change_t *c = ag_changes_add(&ch, m[i].off, m[i].len);
            c->map = map; /* the change set owns it now */
            c->map_len = map_len;
            map = NULL;
            for (size_t k = 0; k < tc->ned && rc == AG_OK; k++)
                rc = ag_changes_edit(&ch, c, tc->ed[k].start, tc->ed[k].end,
                                     edit_text(tc, &tc->ed[k]));
        }
        free(map);
        map = NULL;
    }
    if (rc == AG_OK && !tc->code_seen)
        rc = AG_ENOENT;
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, input, out);
out:
    free(map);
    free(m);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&dec);
    ag_buf_dispose(&file);
    return rc;
}

/* Free text (a custom tool's input, an apply_patch_call's diff): the whole input is the field. */
static int rewrite_text(tc_t *tc, const ag_tool_t *tool, ag_str_t input, ag_buf_t *out)
{
    tc->text = input;
    tc->ned = 0;
    if (tc->call->input == AG_TOOL_IN_TEXT) {
        const ag_tool_field_t *f = NULL;
        for (uint32_t i = 0; i < tool->nfields && i < AG_TOOL_MAX_FIELDS && f == NULL; i++)
            if (tool->field[i].path[0] == '\0')
                f = &tool->field[i];
        if (f == NULL)
            return AG_ENOENT;
        tc->field = "input";
        field(tc, f->kind, AG_STR_LIT("ts"), ag_str(NULL, 0));
    } else {
        tc->field = "diff";
        patch(tc, tc->call->input == AG_TOOL_IN_PATCH_CREATE ? PATCH_CREATE : PATCH_UPDATE,
              tc->call->file);
    }
    if (tc->rc != AG_OK)
        return tc->rc;
    if (!tc->code_seen)
        return AG_ENOENT;
    size_t mark = out->len, pos = 0;
    int rc = AG_OK;
    for (size_t k = 0; k < tc->ned && rc == AG_OK; k++) {
        ag_str_t t = edit_text(tc, &tc->ed[k]);
        rc = ag_buf_append(out, input.ptr + pos, tc->ed[k].start - pos);
        if (rc == AG_OK)
            rc = ag_buf_append(out, t.ptr, t.len);
        pos = tc->ed[k].end;
    }
    if (rc == AG_OK)
        rc = ag_buf_append(out, input.ptr + pos, input.len - pos);
    if (rc != AG_OK) {
        out->len = mark; /* out untouched */
        if (out->ptr)
            out->ptr[mark] = '\0';
    }
    return rc;
}

int ag_toolcode_rewrite(ag_engine_t *e, const ag_tools_t *tools, const ag_tool_call_t *call,
                        ag_str_t input, ag_buf_t *out, bool *changed, ag_tool_report_fn report,
                        void *ud)
{
    *changed = false;
    if (input.ptr == NULL)
        input.ptr = "";
    const ag_tool_t *tool = ag_tools_find(tools, call->name);
    if (tool == NULL)
        return AG_ENOENT;
    tc_t tc;
    memset(&tc, 0, sizeof(tc));
    tc.e = e;
    tc.call = call;
    tc.report = report;
    tc.ud = ud;
    ag_buf_init(&tc.etext, MAX_TEXT);
    ag_buf_init(&tc.code, MAX_TEXT);
    ag_buf_init(&tc.rw, MAX_TEXT);
    ag_buf_init(&tc.want, MAX_TEXT);
    ag_buf_init(&tc.trial, MAX_TEXT);
    size_t mark = out->len;
    int rc = call->input == AG_TOOL_IN_ARGS ? rewrite_args(&tc, tool, input, out)
                                            : rewrite_text(&tc, tool, input, out);
    if (rc == AG_OK)
        *changed = !ag_str_eq(ag_str(ag_buf_str(out).ptr + mark, out->len - mark), input);
    free(tc.ed);
    free(tc.lines);
    ag_buf_dispose(&tc.etext);
    ag_buf_dispose(&tc.code);
    ag_buf_dispose(&tc.rw);
    ag_buf_dispose(&tc.want);
    ag_buf_dispose(&tc.trial);
    return rc;
}

/* The rewrite engine: blocks → parse → match → edits → overlap resolution → parse check → splice.
 * Edits are minimal: every byte outside an edit span is copied from the reply unchanged. */
#include "rewrite.h"

#include "fence.h"
#include "flat.h"
#include "indent.h"
#include "match.h"
#include "rewrite_int.h"
#include "rules_int.h"

#include <time.h>

#define MAX_BLOCKS 256
#define MAX_EDITS 4096
#define MAX_EVENTS 4096

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

ag_engine_t *ag_engine_new(const ag_rules_t *rules, const ag_engine_opts_t *opts)
{
    ag_engine_t *e = ag_xcalloc(1, sizeof(*e));
    e->rules = rules;
    if (opts)
        e->opts = *opts;
    if (e->opts.max_reply == 0)
        e->opts.max_reply = 16u << 20;
    for (int li = 0; li < AG_LANG_COUNT; li++)
        e->parser[li] = ag_lang_parser_new((ag_lang_t)li, e->opts.parse_timeout_us);
    ag_matcher_init(&e->m, e->opts.regex_match_limit);
    e->kinds = ag_ensure_kinds_new();
    ag_flat_init(&e->flat);
    ag_fence_langs_default(&e->default_langs);
    ag_buf_init(&e->text, e->opts.max_reply * 2 + 65536);
    ag_buf_init(&e->code, e->opts.max_reply + 65536);
    ag_buf_init(&e->evtext, e->opts.max_reply * 2 + 65536);
    ag_buf_init(&e->scratch, e->opts.max_reply + 65536);
    e->blocks = ag_xmalloc(MAX_BLOCKS * sizeof(*e->blocks));
    /* per-rule fence sets, resolved once */
    uint32_t n = rules->n;
    e->rule_fences = ag_xcalloc(n ? n : 1, sizeof(*e->rule_fences));
    for (uint32_t r = 0; r < n; r++) {
        const ag_rule_def_t *def = &rules->rules[r];
        if (def->fences == NULL) {
            e->rule_fences[r] = e->default_langs;
            continue;
        }
        ag_fence_langs_clear(&e->rule_fences[r]);
        for (uint32_t i = 0; i < def->nfences; i++)
            if (ag_fence_langs_add(&e->rule_fences[r], ag_cstr(def->fences[i])) != AG_OK)
                break;
    }
    return e;
}

void ag_engine_set_origin(ag_engine_t *e, uint32_t block_base, uint32_t line_base,
                          uint32_t offset_base)
{
    e->block_base = block_base;
    e->line_base = line_base;
    e->offset_base = offset_base;
}

void ag_engine_free(ag_engine_t *e)
{
    if (e == NULL)
        return;
    for (int li = 0; li < AG_LANG_COUNT; li++)
        ts_parser_delete(e->parser[li]);
    ag_matcher_dispose(&e->m);
    ag_flat_dispose(&e->flat);
    ag_buf_dispose(&e->text);
    ag_buf_dispose(&e->code);
    ag_buf_dispose(&e->evtext);
    ag_buf_dispose(&e->scratch);
    free(e->blocks);
    free(e->ev_off);
    free(e->active);
    free(e->edits);
    free(e->events);
    free(e->rule_fences);
    free(e->kinds);
    free(e->ens);
    free(e->uses);
    ag_engine_free(e->verifier);
    free(e);
}

/* ---- positions ---- */

static void line_col(ag_str_t reply, uint32_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1, start = 0;
    for (uint32_t i = 0; i < off && i < reply.len; i++)
        if (reply.ptr[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = off - start + 1;
}

/* ---- events ---- */

static ag_event_t *event_add(ag_engine_t *e, uint32_t rule, ag_action_t action)
{
    if (e->nevents == MAX_EVENTS)
        return NULL;
    if (e->nevents == e->events_cap) {
        e->events_cap = e->events_cap ? e->events_cap * 2 : 16;
        e->events = ag_xrealloc(e->events, e->events_cap * sizeof(*e->events));
        e->ev_off = ag_xrealloc(e->ev_off, e->events_cap * sizeof(*e->ev_off));
    }
    ag_event_t *ev = &e->events[e->nevents];
    memset(ev, 0, sizeof(*ev));
    memset(&e->ev_off[e->nevents], 0, sizeof(e->ev_off[0]));
    e->nevents++;
    const ag_rule_def_t *def = &e->rules->rules[rule];
    ev->rule = def->id;
    ev->rule_index = rule;
    ev->action = action;
    ev->message = def->message;
    ev->params = def->params_json;
    ev->reason = "";
    ev->shadow = e->opts.shadow || def->shadow;
    ev->redact = def->redact;
    ev->block = e->block_base + e->cur_block;
    return ev;
}

/* Copies before/after texts so they survive scratch reuse; views are fixed up at the end. */
static void event_texts(ag_engine_t *e, ag_event_t *ev, ag_str_t before, ag_str_t after)
{
    struct ev_off *o = &e->ev_off[ev - e->events];
    o->before = (uint32_t)e->evtext.len;
    if (ag_buf_append(&e->evtext, before.ptr, before.len) != AG_OK)
        before.len = 0;
    o->before_len = (uint32_t)before.len;
    o->after = (uint32_t)e->evtext.len;
    if (ag_buf_append(&e->evtext, after.ptr, after.len) != AG_OK)
        after.len = 0;
    o->after_len = (uint32_t)after.len;
}

void ag_engine_flag(ag_engine_t *e, uint32_t rule, uint32_t node, const char *reason)
{
    const ag_fnode_t *n = &e->flat.nodes[node];
    ag_event_t *ev = event_add(e, rule, AG_ACTION_FLAG);
    if (ev == NULL)
        return;
    uint32_t off = e->code_off + n->start;
    line_col(e->reply, off, &ev->line, &ev->col);
    ev->offset = off;
    ev->reason = reason ? reason : "";
    uint32_t end = n->end < e->orig_len ? n->end : e->orig_len;
    ev->match_offset = off;
    ev->match_len = end > n->start ? end - n->start : 0;
    event_texts(e, ev, ag_str(e->reply.ptr + off, ev->match_len), ag_str(NULL, 0));
    e->res.flags++;
}

/* ---- edits ---- */

int ag_engine_edit(ag_engine_t *e, uint32_t rule, uint32_t start, uint32_t end, ag_str_t text,
                   uint32_t guard_end)
{
    if (e->nedits == MAX_EDITS)
        return AG_ETOOBIG;
    if (e->nedits == e->edits_cap) {
        e->edits_cap = e->edits_cap ? e->edits_cap * 2 : 16;
        e->edits = ag_xrealloc(e->edits, e->edits_cap * sizeof(*e->edits));
    }
    ag_edit_t *ed = &e->edits[e->nedits];
    ed->start = start;
    ed->end = end;
    ed->match_start = start;
    ed->match_end = end;
    ed->rule = rule;
    ed->text_off = (uint32_t)e->text.len;
    ed->text_len = (uint32_t)text.len;
    ed->guard_end = guard_end > end ? guard_end : end;
    ed->keep = true;
    ed->safe = false;
    ed->reason = NULL;
    ed->dup = false;
    ed->fragment = false;
    ed->winner = -1;
    ed->seq = e->nedits;
    if (ag_buf_append(&e->text, text.ptr, text.len) != AG_OK)
        return AG_ETOOBIG;
    e->nedits++;
    return AG_OK;
}

void ag_engine_edit_is_safe(ag_engine_t *e)
{
    if (e->nedits)
        e->edits[e->nedits - 1].safe = true;
}

static ag_str_t edit_text(const ag_engine_t *e, const ag_edit_t *ed)
{
    return ag_str(e->text.ptr + ed->text_off, ed->text_len);
}

static int edit_cmp(const void *a, const void *b)
{
    const ag_edit_t *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->rule != y->rule)
        return x->rule < y->rule ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- transforms and fix templates ---- */

#define MAX_REWRITE_DEPTH 16 /* rewriters that rewrite inside their own fixes */

static bool constraints_ok(ag_engine_t *e, const ag_rule_lang_t *rl, const ag_env_t *env);
static int render_fix(ag_engine_t *e, const ag_rule_def_t *def, const char *t, uint32_t len,
                      uint32_t node, const ag_env_t *env, ag_buf_t *out);
static void run_transforms(ag_engine_t *e, ag_lang_t lang, const ag_rule_def_t *def,
                           const ag_transform_t *ts, uint32_t nts, const ag_env_t *base,
                           ag_env_t *env, int depth);
static void fix_range(ag_engine_t *e, const ag_rule_lang_t *rl, uint32_t node, const ag_env_t *env,
                      uint32_t *start, uint32_t *end);

typedef struct rw_edit {
    uint32_t start, end; /* bytes of the block's code */
    size_t off, len;     /* the fix, in the caller's text buffer */
} rw_edit_t;

/* transform.rewrite as ast-grep runs it: every node of the source (and every descendant, in
 * pre-order) gets the fix of the first listed rewriter that matches it, starting from the
 * enclosing rule's bindings; an edit inside one already made is skipped, so the outermost wins.
 * The result is the source with the edits spliced in, or with joinBy only the fixes joined. */
static int run_rewrite(ag_engine_t *e, ag_lang_t lang, const ag_rule_def_t *def,
                       const ag_transform_t *t, const ag_env_t *base, const ag_env_t *env,
                       int depth, ag_buf_t *res)
{
    const ag_slot_t *sl = &env->s[t->source];
    uint32_t first, last;
    if (sl->state == AG_SLOT_SINGLE)
        first = last = sl->node;
    else if (sl->state == AG_SLOT_MULTI && sl->multi_first != AG_NONE)
        first = sl->multi_first, last = sl->multi_last;
    else
        return AG_OK;
    if (depth >= MAX_REWRITE_DEPTH)
        return AG_ETOOBIG;
    const ag_flat_t *f = &e->flat;
    rw_edit_t *eds = NULL;
    uint32_t neds = 0, cap = 0;
    ag_buf_t texts;
    ag_buf_init(&texts, e->text.max);
    int rc = AG_OK;
    for (uint32_t n = first; n != AG_NONE && rc == AG_OK; n = f->nodes[n].next_sib) {
        for (uint32_t d = n; d < f->nodes[n].subtree_end && rc == AG_OK; d++) {
            for (uint32_t k = 0; k < t->nrewriters; k++) {
                const ag_rewriter_t *w = &def->rewriters[t->rewriters[k]];
                const ag_rule_lang_t *rl = &w->lang[lang];
                if (!rl->enabled)
                    continue;
                ag_env_t env2 = *base;
                if (!ag_match_rnode(&e->m, rl->rule, d, &env2) || !constraints_ok(e, rl, &env2))
                    continue;
                run_transforms(e, lang, def, w->transforms, w->ntransforms, base, &env2, depth + 1);
                size_t off = texts.len;
                rc = render_fix(e, def, w->fix, w->fix_len, d, &env2, &texts);
                if (neds == cap) {
                    cap = cap ? cap * 2 : 8;
                    eds = ag_xrealloc(eds, cap * sizeof(*eds));
                }
                uint32_t es, ee;
                fix_range(e, rl, d, &env2, &es, &ee);
                eds[neds++] = (rw_edit_t){es, ee, off, texts.len - off};
                break;
            }
        }
        if (n == last)
            break;
    }
    uint32_t pos = f->nodes[first].start;
    bool joined = false;
    for (uint32_t i = 0; i < neds && rc == AG_OK; i++) {
        if (eds[i].start < pos)
            continue; /* inside an edit already made */
        if (t->join_by) {
            if (joined)
                rc = ag_buf_append(res, t->join_by, t->join_len);
            joined = true;
        } else {
            rc = ag_buf_append(res, f->src + pos, eds[i].start - pos);
        }
        if (rc == AG_OK)
            rc = ag_buf_append(res, texts.ptr + eds[i].off, eds[i].len);
        pos = eds[i].end;
    }
    if (rc == AG_OK && !t->join_by && f->nodes[last].end > pos)
        rc = ag_buf_append(res, f->src + pos, f->nodes[last].end - pos);
    free(eds);
    ag_buf_dispose(&texts);
    return rc;
}

/* Runs transforms ts in order, each output a TEXT slot of env. base: the enclosing rule's
 * bindings, where a rewriter's match starts. */
static void run_transforms(ag_engine_t *e, ag_lang_t lang, const ag_rule_def_t *def,
                           const ag_transform_t *ts, uint32_t nts, const ag_env_t *base,
                           ag_env_t *env, int depth)
{
    for (uint32_t i = 0; i < nts; i++) {
        const ag_transform_t *t = &ts[i];
        ag_str_t src = ag_env_text(&e->flat, env, t->source, ag_buf_str(&e->text));
        /* src may point into e->text, which the appends below can move: copy it first */
        ag_buf_t tmp, outb;
        ag_buf_init(&tmp, e->text.max);
        ag_buf_init(&outb, e->text.max);
        if (ag_buf_append(&tmp, src.ptr, src.len) != AG_OK) {
            ag_buf_dispose(&tmp);
            ag_buf_dispose(&outb);
            continue;
        }
        if (t->kind == AG_TRANSFORM_REPLACE) {
            PCRE2_SIZE outlen = tmp.len * 2 + 256;
            for (int attempt = 0; attempt < 4; attempt++) {
                char *outp = ag_xmalloc(outlen + 1);
                PCRE2_SIZE got = outlen;
                int rc = pcre2_substitute(
                    t->re, (PCRE2_SPTR)(tmp.ptr ? tmp.ptr : ""), tmp.len, 0,
                    PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, NULL, e->m.mctx,
                    (PCRE2_SPTR)t->by, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)outp, &got);
                if (rc >= 0) {
                    if (ag_buf_append(&outb, outp, got) != AG_OK)
                        outb.len = 0;
                    free(outp);
                    break;
                }
                free(outp);
                if (rc != PCRE2_ERROR_NOMEMORY)
                    break;
                outlen = got + 1;
            }
        } else if (t->kind == AG_TRANSFORM_CONVERT) {
            if (ag_case_convert(ag_buf_str(&tmp), (ag_case_t)t->to_case, t->seps, &outb) != AG_OK)
                outb.len = 0; /* past the text limit: the output is empty */
        } else if (t->kind == AG_TRANSFORM_REWRITE) {
            if (run_rewrite(e, lang, def, t, base, env, depth, &outb) != AG_OK)
                outb.len = 0;
        } else {
            /* substring by Unicode characters, negative indices from the end */
            uint32_t nchars = 0;
            for (size_t k = 0; k < tmp.len; k++)
                if (((unsigned char)tmp.ptr[k] & 0xC0) != 0x80)
                    nchars++;
            int64_t s = t->has_start ? t->start_char : 0;
            int64_t en = t->has_end ? t->end_char : (int64_t)nchars;
            if (s < 0)
                s += nchars;
            if (en < 0)
                en += nchars;
            if (s < 0)
                s = 0;
            if (en > (int64_t)nchars)
                en = nchars;
            int64_t ci = -1;
            size_t bs = tmp.len, be = tmp.len;
            for (size_t k = 0; k <= tmp.len; k++) {
                if (k == tmp.len || ((unsigned char)tmp.ptr[k] & 0xC0) != 0x80) {
                    ci++;
                    if (ci == s)
                        bs = k;
                    if (ci == en) {
                        be = k;
                        break;
                    }
                }
            }
            if (s < en && bs < be && ag_buf_append(&outb, tmp.ptr + bs, be - bs) != AG_OK)
                outb.len = 0;
        }
        ag_buf_dispose(&tmp);
        uint32_t off = (uint32_t)e->text.len;
        if (ag_buf_append(&e->text, outb.ptr ? outb.ptr : "", outb.len) != AG_OK)
            e->text.len = off;
        ag_buf_dispose(&outb);
        env->s[t->var].state = AG_SLOT_TEXT;
        env->s[t->var].text_off = off;
        env->s[t->var].text_len = (uint32_t)e->text.len - off;
    }
}

/* Leading whitespace bytes of the line holding off, and that line's line ending. */
void ag_engine_line_info(const ag_engine_t *e, uint32_t off, ag_str_t *indent, ag_str_t *eol)
{
    const char *s = e->code.ptr;
    uint32_t ls = off;
    while (ls > 0 && s[ls - 1] != '\n')
        ls--;
    uint32_t ie = ls;
    while (ie < e->code_len && (s[ie] == ' ' || s[ie] == '\t'))
        ie++;
    *indent = ag_str(s + ls, ie - ls);
    uint32_t le = off;
    while (le < e->code_len && s[le] != '\n')
        le++;
    bool crlf = le < e->code_len && le > 0 && s[le - 1] == '\r';
    *eol = crlf ? AG_STR_LIT("\r\n") : AG_STR_LIT("\n");
}

/* Appends the fix template t for node to out: metavariables replaced by their text, each new
 * line indented as the node's line. */
static int render_fix(ag_engine_t *e, const ag_rule_def_t *def, const char *t, uint32_t len,
                      uint32_t node, const ag_env_t *env, ag_buf_t *out)
{
    const ag_fnode_t *n = &e->flat.nodes[node];
    ag_str_t indent, eol;
    ag_engine_line_info(e, n->start, &indent, &eol);
    int rc = AG_OK;
    for (uint32_t i = 0; i < len && rc == AG_OK; i++) {
        if (t[i] == '\n') {
            rc = ag_buf_append(out, eol.ptr, eol.len);
            if (rc == AG_OK)
                rc = ag_buf_append(out, indent.ptr, indent.len);
            continue;
        }
        if (t[i] == '$') {
            uint32_t j = i;
            while (j < len && t[j] == '$' && j - i < 3)
                j++;
            uint32_t s = j;
            while (j < len && ((t[j] >= 'A' && t[j] <= 'Z') || t[j] == '_' ||
                               (j > s && t[j] >= '0' && t[j] <= '9')))
                j++;
            if (j > s) {
                int v = ag_vars_find(&def->vars, ag_str(t + s, j - s));
                if (v >= 0) {
                    ag_str_t vt = ag_env_text(&e->flat, env, v, ag_buf_str(&e->text));
                    const ag_slot_t *sl = &env->s[v];
                    uint32_t vs = sl->state == AG_SLOT_SINGLE  ? sl->node
                                  : sl->state == AG_SLOT_MULTI ? sl->multi_first
                                                               : AG_NONE;
                    if (vs == AG_NONE) /* a transform's output, or an empty run */
                        /* no place in the source: as ast-grep 0.51.1, each later line only
                         * gains the template line's indentation, not the matched line's */
                        rc = ag_indent_append_var(out, AG_STR_LIT(""), 0, vt,
                                                  ag_indent_of_line(ag_str(t, len), i),
                                                  AG_STR_LIT(""));
                    else
                        rc = ag_indent_append_var(out, ag_str(e->flat.src, e->flat.src_len),
                                                  e->flat.nodes[vs].start, vt,
                                                  ag_indent_of_line(ag_str(t, len), i), indent);
                }
                i = j - 1;
                continue;
            }
        }
        rc = ag_buf_appendc(out, t[i]);
    }
    return rc;
}

/* The bytes a fix of node replaces: the node, and with expandStart/expandEnd the sibling just
 * before/after it when that sibling matches (one sibling each way, as ast-grep 0.51.1 does:
 * `[1,,, 2]` with expandEnd `,` on 1 takes one comma). */
static void fix_range(ag_engine_t *e, const ag_rule_lang_t *rl, uint32_t node, const ag_env_t *env,
                      uint32_t *start, uint32_t *end)
{
    const ag_fnode_t *n = &e->flat.nodes[node];
    *start = n->start;
    *end = n->end;
    if (rl->expand_start && n->prev_sib != AG_NONE) {
        ag_env_t probe = *env;
        if (ag_match_rnode(&e->m, rl->expand_start, n->prev_sib, &probe))
            *start = e->flat.nodes[n->prev_sib].start;
    }
    if (rl->expand_end && n->next_sib != AG_NONE) {
        ag_env_t probe = *env;
        if (ag_match_rnode(&e->m, rl->expand_end, n->next_sib, &probe))
            *end = e->flat.nodes[n->next_sib].end;
    }
}

static int apply_fix(ag_engine_t *e, uint32_t rule, const ag_rule_def_t *def,
                     const ag_rule_lang_t *rl, uint32_t node, ag_env_t *env)
{
    uint32_t start, end;
    fix_range(e, rl, node, env, &start, &end);
    ag_buf_t out;
    ag_buf_init(&out, e->text.max);
    int rc = render_fix(e, def, def->fix, def->fix_len, node, env, &out);
    if (rc == AG_OK)
        rc = ag_engine_edit(e, rule, start, end, ag_buf_str(&out), end);
    if (rc == AG_OK) { /* the event reports the match, as ast-grep does, the edit beside it */
        e->edits[e->nedits - 1].match_start = e->flat.nodes[node].start;
        e->edits[e->nedits - 1].match_end = e->flat.nodes[node].end;
    }
    ag_buf_dispose(&out);
    return rc;
}

/* ---- matching one block ---- */

static bool literal_present(const ag_rule_def_t *def, ag_str_t code)
{
    if (def->nliterals == 0)
        return true;
    for (uint32_t i = 0; i < def->nliterals; i++)
        if (ag_memmem(code, ag_str(def->literals[i], def->literal_lens[i])))
            return true;
    return false;
}

static bool constraints_ok(ag_engine_t *e, const ag_rule_lang_t *rl, const ag_env_t *env)
{
    for (int v = 0; v < AG_MAX_VARS; v++) {
        if (rl->constraints[v] == NULL)
            continue;
        /* as in ast-grep: a constraint judges a single node; a metavariable the matching branch
         * left unbound (`any`) or bound to a run of nodes ($$$) is not constrained */
        if (env->s[v].state != AG_SLOT_SINGLE)
            continue;
        ag_env_t probe = *env;
        if (!ag_match_rnode(&e->m, rl->constraints[v], env->s[v].node, &probe))
            return false;
    }
    return true;
}

static void scan(ag_engine_t *e, ag_lang_t lang, const bool *active)
{
    const struct ag_rules *rs = e->rules;
    const uint32_t *off = rs->by_kind_off[lang];
    const uint32_t *idx = rs->by_kind_idx[lang];
    for (uint32_t i = 0; i < e->flat.count; i++) {
        TSSymbol sym = e->flat.nodes[i].sym;
        if (sym >= rs->nsyms[lang])
            continue; /* ERROR nodes */
        /* rules apply where the tree is sound; an ensure rule also where it is not, since it
         * pins only values the parser placed and flags what a syntax error may hide */
        bool sound = !e->flat.nodes[i].has_error;
        for (uint32_t k = off[sym]; k < off[sym + 1]; k++) {
            uint32_t r = idx[k];
            if (!active[r])
                continue;
            const ag_rule_def_t *def = &rs->rules[r];
            const ag_rule_lang_t *rl = &def->lang[lang];
            ag_matcher_bind(&e->m, &e->flat, rl->utils, rl->nutils);
            ag_env_t env;
            memset(&env, 0, sizeof(env));
            if (!ag_match_rnode(&e->m, rl->rule, i, &env) || !constraints_ok(e, rl, &env))
                continue;
            if (!sound && !(def->ensure && def->action == AG_ACTION_REWRITE)) {
                /* ast-grep would apply it here; astgate does not, and says so */
                ag_engine_flag(e, r, i, "not applied: the code has a parse error here");
                continue;
            }
            ag_env_t base = env;
            run_transforms(e, lang, def, def->transforms, def->ntransforms, &base, &env, 0);
            switch ((ag_action_t)def->action) {
            case AG_ACTION_REWRITE:
                if (def->ensure) {
                    if (e->nens == e->ens_cap) {
                        e->ens_cap = e->ens_cap ? e->ens_cap * 2 : 8;
                        e->ens = ag_xrealloc(e->ens, e->ens_cap * sizeof(*e->ens));
                    }
                    e->ens[e->nens++] = (ag_ens_match_t){.rule = r, .node = i, .env = env};
                } else if (def->fix)
                    (void)apply_fix(e, r, def, rl, i, &env);
                break;
            case AG_ACTION_FLAG:
                ag_engine_flag(e, r, i, NULL);
                break;
            case AG_ACTION_BLOCK: {
                ag_event_t *ev = event_add(e, r, AG_ACTION_BLOCK);
                if (ev) {
                    const ag_fnode_t *n = &e->flat.nodes[i];
                    line_col(e->reply, e->code_off + n->start, &ev->line, &ev->col);
                    ev->offset = e->code_off + n->start;
                    uint32_t end = n->end < e->orig_len ? n->end : e->orig_len;
                    ev->match_offset = ev->offset;
                    ev->match_len = end > n->start ? end - n->start : 0;
                    event_texts(e, ev,
                                ag_str(e->reply.ptr + e->code_off + n->start,
                                       end > n->start ? end - n->start : 0),
                                ag_str(NULL, 0));
                }
                if (e->opts.shadow || def->shadow)
                    e->res.shadowed++;
                else
                    e->res.blocked++;
                break;
            }
            }
        }
    }
    ag_ensure_block(e, lang);
}

/* ---- truncated code: close what the cut left open ---- */

/* Appends to e->code the closers for brackets, strings, template literals and comments that are
 * open at the end of code[0..len). A small JS lexer: regex literals are not tracked (a `/` starts
 * a comment only when followed by / or *). */
static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || (unsigned char)c >= 0x80;
}

/* Whether a '/' after the code s[0, end) starts a regular expression rather than a division: after
 * an operator or an opening bracket, at the start, after '}' (a statement starts more often than an
 * object is divided), or after a keyword that an expression follows. last: index of the last
 * significant byte before the '/', or UINT32_MAX. */
static bool regex_starts(const char *s, uint32_t last)
{
    if (last == UINT32_MAX)
        return true;
    char p = s[last];
    if (p == ')' || p == ']' || p == '\'' || p == '"' || p == '`')
        return false; /* the end of an expression: a division follows */
    if (!ident_char(p))
        return true;
    uint32_t b = last + 1;
    while (b > 0 && ident_char(s[b - 1]))
        b--;
    static const char *const kw[] = {"return", "typeof", "instanceof", "in",    "of",
                                     "new",    "delete", "void",       "throw", "case",
                                     "do",     "else",   "yield",      "await", NULL};
    size_t n = last + 1 - b;
    for (const char *const *k = kw; *k; k++)
        if (strlen(*k) == n && memcmp(s + b, *k, n) == 0)
            return true;
    return false;
}

static void close_open(ag_engine_t *e, uint32_t len)
{
    char stack[256];
    uint32_t sp = 0;
    const char *s = e->code.ptr;
    char in_str = 0;            /* ' " or ` when inside one */
    int comment = 0;            /* 1 line, 2 block */
    int in_re = 0;              /* 1 in a regular expression literal, 2 in its [class] */
    uint32_t last = UINT32_MAX; /* last significant byte outside strings and comments */
    for (uint32_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_re) {
            if (ch == '\\') {
                i++;
            } else if (ch == '\n') {
                in_re = 0; /* not a regex after all (or a broken one): the parser recovers here */
            } else if (in_re == 2) {
                if (ch == ']')
                    in_re = 1;
            } else if (ch == '[') {
                in_re = 2;
            } else if (ch == '/') {
                in_re = 0;
                last = i; /* flags follow; a '/' after the literal divides */
                while (i + 1 < len && ident_char(s[i + 1]))
                    last = ++i;
            }
            continue;
        }
        if (comment == 1) {
            if (ch == '\n')
                comment = 0;
            continue;
        }
        if (comment == 2) {
            if (ch == '*' && i + 1 < len && s[i + 1] == '/') {
                comment = 0;
                i++;
            }
            continue;
        }
        if (in_str) {
            if (ch == '\\') {
                i++;
                continue;
            }
            if (ch == in_str) {
                in_str = 0;
                last = i;
                if (ch == '`' && sp && stack[sp - 1] == '`')
                    sp--;
                continue;
            }
            if (in_str == '`' && ch == '$' && i + 1 < len && s[i + 1] == '{') {
                if (sp < sizeof(stack))
                    stack[sp++] = '$';
                in_str = 0;
                i++;
                continue;
            }
            if (in_str != '`' && ch == '\n')
                in_str = 0; /* unterminated ordinary string: the parser recovers at the line */
            continue;
        }
        if (ch == '/' && i + 1 < len && (s[i + 1] == '/' || s[i + 1] == '*')) {
            comment = s[i + 1] == '/' ? 1 : 2;
            i += comment == 2;
            continue;
        }
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            if (ch == '/' && regex_starts(s, last)) {
                in_re = 1;
                continue;
            }
            last = i;
        }
        switch (ch) {
        case '\'':
        case '"':
            in_str = ch;
            break;
        case '`':
            in_str = '`';
            if (sp < sizeof(stack))
                stack[sp++] = '`';
            break;
        case '(':
        case '[':
        case '{':
            if (sp < sizeof(stack))
                stack[sp++] = ch;
            break;
        case ')':
        case ']':
        case '}':
            if (sp && stack[sp - 1] == '$' && ch == '}') {
                sp--;
                in_str = '`';
            } else if (sp) {
                sp--;
            }
            break;
        default:
            break;
        }
    }
    int rc = AG_OK;
    if (in_re == 2)
        rc = ag_buf_appendc(&e->code, ']');
    if (in_re && rc == AG_OK)
        rc = ag_buf_appendc(&e->code, '/');
    if (comment == 1)
        rc = ag_buf_appendc(&e->code, '\n');
    else if (comment == 2)
        rc = ag_buf_append(&e->code, "*/", 2);
    if (in_str && in_str != '`' && rc == AG_OK)
        rc = ag_buf_appendc(&e->code, in_str);
    while (sp && rc == AG_OK) {
        char o = stack[--sp];
        rc = ag_buf_appendc(&e->code, o == '(' ? ')' : o == '[' ? ']' : o == '`' ? '`' : '}');
    }
}

uint32_t ag_engine_count_errors(TSNode root)
{
    uint32_t n = 0;
    if (!ts_node_has_error(root))
        return 0;
    TSTreeCursor c = ts_tree_cursor_new(root);
    for (;;) {
        TSNode node = ts_tree_cursor_current_node(&c);
        if (ts_node_symbol(node) == (TSSymbol)-1 || ts_node_is_missing(node))
            n++;
        if (ts_node_has_error(node) && ts_tree_cursor_goto_first_child(&c))
            continue;
        while (!ts_tree_cursor_goto_next_sibling(&c))
            if (!ts_tree_cursor_goto_parent(&c))
                goto done;
    }
done:
    ts_tree_cursor_delete(&c);
    return n;
}

/* ---- overlap resolution and the parse check ---- */

static void edit_event(ag_engine_t *e, const ag_edit_t *ed)
{
    uint32_t saved = e->cur_block;
    e->cur_block = ed->block;
    ag_event_t *ev = event_add(e, ed->rule, ed->fragment ? AG_ACTION_FLAG : AG_ACTION_REWRITE);
    e->cur_block = saved;
    if (ev == NULL)
        return;
    ev->applied = ed->keep;
    ev->reason = ed->reason ? ed->reason : "";
    ev->other_rule = ed->winner >= 0 ? e->rules->rules[ed->winner].id : NULL;
    /* an edit dropped for a cut-off reply may start in the completion: point at the cut */
    uint32_t start = ed->start < ed->orig_len ? ed->start : ed->orig_len;
    line_col(e->reply, ed->code_off + start, &ev->line, &ev->col);
    ev->offset = ed->code_off + start;
    uint32_t end = ed->end < ed->orig_len ? ed->end : ed->orig_len;
    uint32_t ms = ed->match_start < ed->orig_len ? ed->match_start : ed->orig_len;
    uint32_t me = ed->match_end < ed->orig_len ? ed->match_end : ed->orig_len;
    ev->match_offset = ed->code_off + ms;
    ev->match_len = me > ms ? me - ms : 0;
    event_texts(e, ev, ag_str(e->reply.ptr + ed->code_off + start, end > start ? end - start : 0),
                ed->fragment ? ag_str(NULL, 0) : edit_text(e, ed));
}

/* Applies the kept edits of ed[0..n) to e->code into e->scratch (the completion included). */
static int apply_to_scratch(ag_engine_t *e, const ag_edit_t *ed, uint32_t n, int only_upto)
{
    ag_buf_reset(&e->scratch);
    uint32_t pos = 0;
    int rc = AG_OK;
    for (uint32_t i = 0; i < n && rc == AG_OK; i++) {
        if (!ed[i].keep || (only_upto >= 0 && i > (uint32_t)only_upto))
            continue;
        rc = ag_buf_append(&e->scratch, e->code.ptr + pos, ed[i].start - pos);
        if (rc == AG_OK)
            rc = ag_buf_append(&e->scratch, e->text.ptr + ed[i].text_off, ed[i].text_len);
        pos = ed[i].end;
    }
    if (rc == AG_OK)
        rc = ag_buf_append(&e->scratch, e->code.ptr + pos, e->code_len - pos);
    return rc;
}

static TSPoint point_at(const char *s, uint32_t off)
{
    TSPoint p = {0, 0};
    for (uint32_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            p.row++;
            p.column = 0;
        } else {
            p.column++;
        }
    }
    return p;
}

/* Errors in the code with the kept edits applied: an incremental reparse of tree. */
static uint32_t errors_after(ag_engine_t *e, ag_lang_t lang, const TSTree *tree,
                             const ag_edit_t *ed, uint32_t n, int only_upto)
{
    if (apply_to_scratch(e, ed, n, only_upto) != AG_OK)
        return UINT32_MAX;
    TSTree *copy = ts_tree_copy(tree);
    for (uint32_t k = n; k-- > 0;) {
        if (!ed[k].keep || (only_upto >= 0 && k > (uint32_t)only_upto))
            continue;
        TSPoint sp = point_at(e->code.ptr, ed[k].start);
        TSPoint oe = point_at(e->code.ptr, ed[k].end);
        TSPoint ne = sp;
        const char *t = e->text.ptr + ed[k].text_off;
        for (uint32_t j = 0; j < ed[k].text_len; j++) {
            if (t[j] == '\n') {
                ne.row++;
                ne.column = 0;
            } else {
                ne.column++;
            }
        }
        TSInputEdit ie = {ed[k].start, ed[k].end, ed[k].start + ed[k].text_len, sp, oe, ne};
        ts_tree_edit(copy, &ie);
    }
    TSTree *nt =
        ts_parser_parse_string(e->parser[lang], copy, e->scratch.ptr, (uint32_t)e->scratch.len);
    ts_tree_delete(copy);
    if (nt == NULL) {
        ts_parser_reset(e->parser[lang]);
        return UINT32_MAX;
    }
    uint32_t errs = ag_engine_count_errors(ts_tree_root_node(nt));
    ts_tree_delete(nt);
    return errs;
}

static void resolve(ag_engine_t *e, uint32_t first, ag_lang_t lang, const TSTree *tree,
                    uint32_t base_errors)
{
    uint32_t n = e->nedits - first;
    if (n == 0)
        return;
    ag_edit_t *ed = e->edits + first;
    qsort(ed, n, sizeof(*ed), edit_cmp);
    int last = -1;
    uint32_t last_end = 0;
    for (uint32_t i = 0; i < n; i++) {
        ed[i].code_off = e->code_off;
        ed[i].orig_len = e->orig_len;
        ed[i].block = e->cur_block;
        if (ed[i].guard_end > e->orig_len) {
            ed[i].keep = false;
            ed[i].reason = e->cur_cut ? "the reply is cut off inside the code this edit needs"
                                      : "the code this edit needs is unfinished (an unclosed "
                                        "string, comment or bracket)";
            continue;
        }
        if (last >= 0) {
            const ag_edit_t *p = &ed[last];
            if (p->start == ed[i].start && p->end == ed[i].end &&
                ag_str_eq(edit_text(e, p), edit_text(e, &ed[i]))) {
                ed[i].keep = false;
                ed[i].dup = true;
                continue;
            }
            if (ed[i].start < last_end) {
                ed[i].keep = false;
                ed[i].reason = "it overlaps an edit that comes first";
                ed[i].winner = (int32_t)p->rule;
                continue;
            }
        }
        last = (int)i;
        last_end = ed[i].end;
    }
    /* the parse check: no edit may add a parse error (literal swaps cannot) */
    bool all_safe = true;
    for (uint32_t i = 0; i < n; i++)
        if (ed[i].keep && !ed[i].safe)
            all_safe = false;
    uint32_t errs = all_safe ? base_errors : errors_after(e, lang, tree, ed, n, -1);
    if (errs > base_errors) {
        /* find the culprits: accept edits one at a time */
        for (uint32_t i = 0; i < n; i++) {
            if (!ed[i].keep)
                continue;
            if (errors_after(e, lang, tree, ed, n, (int)i) > base_errors) {
                ed[i].keep = false;
                ed[i].reason = "the edit would break the parse";
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (ed[i].dup)
            continue;
        if (ed[i].keep && (e->opts.shadow || e->rules->rules[ed[i].rule].shadow)) {
            /* checked like the others, but shadow mode changes nothing */
            ed[i].keep = false;
            ed[i].reason = "shadow mode";
            e->res.shadowed++;
        } else if (ed[i].keep) {
            e->res.rewrites++;
        } else {
            e->res.dropped++;
        }
    }
}

/* ---- blocks ---- */

/* In code that still has parse errors, error recovery is not local: an edit can change what the
 * parser makes of code elsewhere, and a second rewrite would then find more to do. Rewrite the
 * result once more with a second engine; if it would change anything, the block's edits are
 * dropped (the reply stays as the model wrote it). Only blocks with errors pay for this. */
static void check_stable(ag_engine_t *e, uint32_t first, ag_lang_t lang, bool cut)
{
    uint32_t n = e->nedits - first, kept = 0;
    if (n == 0)
        return;
    ag_edit_t *ed = e->edits + first;
    for (uint32_t i = 0; i < n; i++)
        kept += ed[i].keep;
    if (kept == 0)
        return;
    if (e->verifier == NULL) {
        ag_engine_opts_t o = e->opts;
        o.bare = false;
        o.shadow = false;
        e->verifier = ag_engine_new(e->rules, &o);
    }
    ag_buf_t mini, out;
    ag_buf_init(&mini, e->code.max + 64);
    ag_buf_init(&out, e->code.max * 2 + 64);
    /* the block as a reply of its own: the same fence language, the rewritten code */
    int rc = ag_buf_append(&mini, lang == AG_LANG_TSX ? "```tsx\n" : "```ts\n",
                           lang == AG_LANG_TSX ? 7 : 6);
    uint32_t pos = 0;
    for (uint32_t i = 0; i < n && rc == AG_OK; i++) {
        if (!ed[i].keep)
            continue;
        rc = ag_buf_append(&mini, e->code.ptr + pos, ed[i].start - pos);
        if (rc == AG_OK)
            rc = ag_buf_append(&mini, e->text.ptr + ed[i].text_off, ed[i].text_len);
        pos = ed[i].end;
    }
    if (rc == AG_OK)
        rc = ag_buf_append(&mini, e->code.ptr + pos, e->orig_len - pos);
    if (rc == AG_OK && !cut)
        rc = ag_buf_append(&mini, "```", 3); /* the code ends with the line before the fence */
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    if (rc == AG_OK)
        rc = ag_engine_rewrite(e->verifier, ag_buf_str(&mini), &out, &res);
    if (rc != AG_OK || res.rewrites > 0) {
        for (uint32_t i = 0; i < n; i++)
            if (ed[i].keep) {
                ed[i].keep = false;
                ed[i].reason = "the code has parse errors and the rewrite would not be stable";
                e->res.rewrites--;
                e->res.dropped++;
            }
    }
    ag_buf_dispose(&mini);
    ag_buf_dispose(&out);
}

/* A reply without fences is tried as code only when its first non-blank line starts like code, so
 * that a streaming proxy can decide from the first line whether to hold the reply back. */
bool ag_engine_bare_start(ag_str_t text, bool *undecided)
{
    static const char *const starts[] = {
        "import ",   "import{", "export ",    "const ", "let ",     "var ",           "function ",
        "async ",    "class ",  "interface ", "type ",  "enum ",    "new ",           "//",
        "/*",        "'use ",   "\"use ",     "@",      "declare ", "module.exports", "require(",
        "abstract ", NULL};
    size_t i = 0;
    while (i < text.len && (text.ptr[i] == ' ' || text.ptr[i] == '\t' || text.ptr[i] == '\n' ||
                            text.ptr[i] == '\r'))
        i++;
    ag_str_t rest = ag_str(text.ptr + i, text.len - i);
    if (undecided)
        *undecided = false;
    for (const char *const *s = starts; *s; s++) {
        size_t n = strlen(*s);
        size_t m = rest.len < n ? rest.len : n;
        if (memcmp(rest.ptr, *s, m) != 0)
            continue;
        if (m == n)
            return true;
        if (undecided)
            *undecided = true; /* a prefix of a code start: more text decides */
    }
    if (undecided && rest.len == 0)
        *undecided = true;
    return false;
}

/* Bytes of the code inside ERROR nodes. */
static uint64_t error_bytes(const ag_flat_t *f)
{
    uint64_t bad = 0;
    for (uint32_t i = 0; i < f->count;) {
        if (f->nodes[i].error) {
            bad += f->nodes[i].end - f->nodes[i].start;
            i = f->nodes[i].subtree_end;
        } else {
            i++;
        }
    }
    return bad;
}

static bool bare_code(const ag_flat_t *f, uint32_t errors, uint32_t len)
{
    if (errors == 0)
        return true;
    if (errors > 3)
        return false;
    return error_bytes(f) * 20 <= len;
}

/* A fragment (a piece of a file) that does not parse on its own: the edits its matches would make
 * are guesses about code we cannot see, so none is applied; each is reported as a flag. */
static void fragment_flags(ag_engine_t *e, uint32_t first)
{
    uint32_t n = e->nedits - first;
    if (n == 0)
        return;
    ag_edit_t *ed = e->edits + first;
    qsort(ed, n, sizeof(*ed), edit_cmp);
    for (uint32_t i = 0; i < n; i++) {
        ed[i].code_off = e->code_off;
        ed[i].orig_len = e->orig_len;
        ed[i].block = e->cur_block;
        ed[i].keep = false;
        ed[i].dup = i > 0 && ed[i - 1].start == ed[i].start && ed[i - 1].end == ed[i].end &&
                    ag_str_eq(edit_text(e, &ed[i - 1]), edit_text(e, &ed[i]));
        if (ed[i].dup)
            continue;
        ed[i].fragment = true;
        ed[i].reason = "fragment";
        e->res.flags++;
    }
}

/* frag: the code is a piece of a file, rewritten only when it parses on its own as a sound tree
 * (no ERROR or MISSING node, nothing left open that a completion would close). */
static void process_block(ag_engine_t *e, uint32_t start, uint32_t end, ag_lang_t lang, bool bare,
                          bool cut, bool frag)
{
    ag_str_t code = ag_str(e->reply.ptr + start, end - start);
    const struct ag_rules *rs = e->rules;
    bool any = false;
    for (uint32_t r = 0; r < rs->n; r++) {
        if (e->active[r])
            e->active[r] = rs->rules[r].lang[lang].enabled && literal_present(&rs->rules[r], code);
        any |= e->active[r];
    }
    if (!any)
        return;
    /* the grammar's scanner reads a NUL byte as the end of the input: such a tree would not
     * describe the bytes, and no model writes NUL into code */
    if (memchr(code.ptr, '\0', code.len)) {
        e->res.unjudged += !bare;
        return;
    }
    e->res.parsed++;
    e->cur_cut = cut;
    e->cur_frag = frag;
    ag_buf_reset(&e->code);
    if (ag_buf_append(&e->code, code.ptr, code.len) != AG_OK)
        return;
    e->code_off = start;
    e->orig_len = e->code_len = (uint32_t)code.len;
    uint64_t t0 = now_ns();
    TSParser *p = e->parser[lang];
    if (cut && !frag) {
        /* a block the reply ends in was likely cut off (max_tokens): close what the cut left open
         * before the one parse, rather than parsing twice */
        close_open(e, e->orig_len);
        e->code_len = (uint32_t)e->code.len;
    }
    TSTree *tree = ts_parser_parse_string(p, NULL, e->code.ptr, e->code_len);
    if (tree == NULL) {
        ts_parser_reset(p);
        e->res.unjudged += !bare; /* the parse ran out of time */
        return;
    }
    uint32_t errors = ag_engine_count_errors(ts_tree_root_node(tree));
    if (errors && (!cut || frag)) {
        size_t before = e->code.len;
        close_open(e, e->orig_len);
        if (e->code.len > before) {
            TSTree *t2 = ts_parser_parse_string(p, NULL, e->code.ptr, (uint32_t)e->code.len);
            uint32_t e2 = t2 ? ag_engine_count_errors(ts_tree_root_node(t2)) : UINT32_MAX;
            if (t2 == NULL)
                ts_parser_reset(p);
            if (e2 < errors) {
                ts_tree_delete(tree);
                tree = t2;
                errors = e2;
                e->code_len = (uint32_t)e->code.len;
            } else {
                if (t2)
                    ts_tree_delete(t2);
                e->code.len = before;
                e->code.ptr[before] = '\0';
            }
        }
    }
    ag_flat_build(&e->flat, tree, e->code.ptr, e->code_len);
    uint64_t t1 = now_ns();
    e->res.parse_ns += t1 - t0;
    if (bare && !bare_code(&e->flat, errors, e->code_len)) {
        ts_tree_delete(tree);
        return;
    }
    if (!bare && errors && error_bytes(&e->flat) * 2 > e->code_len)
        e->res.unjudged++; /* mostly unparsable: still rewritten where it can be, not judged */
    /* a fragment is unsound with parse errors, or when it parsed only completed */
    bool unsound = frag && (errors || e->code_len > e->orig_len);
    e->m.steps = 0;
    uint32_t first = e->nedits;
    scan(e, lang, e->active);
    uint64_t t2 = now_ns();
    e->res.match_ns += t2 - t1;
    if (unsound) {
        fragment_flags(e, first);
    } else {
        resolve(e, first, lang, tree, errors);
        if (errors)
            check_stable(e, first, lang, cut);
    }
    e->res.splice_ns += now_ns() - t2;
    ts_tree_delete(tree);
}

/* The grammar for blk, or -1 when no rule looks at its language; active[r] (may be NULL) tells
 * which rules do. */
static int block_lang(const ag_engine_t *e, const ag_block_t *blk, bool *active)
{
    int lang = -1;
    for (uint32_t r = 0; r < e->rules->n; r++) {
        int l = ag_fence_classify(blk, &e->rule_fences[r]);
        if (active)
            active[r] = l >= 0;
        if (l > lang)
            lang = l;
    }
    return lang;
}

int ag_engine_block_lang(const ag_engine_t *e, const ag_block_t *blk)
{
    return block_lang(e, blk, NULL);
}

bool ag_engine_bare(const ag_engine_t *e)
{
    return e->opts.bare;
}

/* Starts a rewrite of reply: forgets the previous result. */
static void begin(ag_engine_t *e, ag_str_t reply)
{
    memset(&e->res, 0, sizeof(e->res));
    e->nedits = 0;
    e->nevents = 0;
    ag_buf_reset(&e->text);
    ag_buf_reset(&e->evtext);
    e->reply = reply;
    if (e->active == NULL)
        e->active = ag_xcalloc(e->rules->n ? e->rules->n : 1, sizeof(bool));
}

/* The fenced blocks of e->reply (and the reply as one bare block when bare and it has none).
 * frag: the reply is a piece of a document; a block it cuts off is a fragment. */
static void reply_blocks(ag_engine_t *e, bool bare, bool frag)
{
    const struct ag_rules *rs = e->rules;
    ag_str_t reply = e->reply;
    uint32_t nblocks = 0;
    if (reply.len >= UINT32_MAX / 2 || rs->n == 0)
        return;
    if (ag_fence_find(reply, e->blocks, MAX_BLOCKS, &nblocks) == AG_ETOOBIG && nblocks == 0)
        nblocks = 0;
    for (uint32_t b = 0; b < nblocks; b++) {
        const ag_block_t *blk = &e->blocks[b];
        int lang = block_lang(e, blk, e->active);
        if (lang < 0)
            continue;
        e->res.blocks++;
        e->cur_block = b;
        process_block(e, blk->start, blk->end, (ag_lang_t)lang, false, !blk->closed,
                      frag && !blk->closed);
    }
    if (nblocks == 0 && bare && ag_engine_bare_start(reply, NULL)) {
        for (uint32_t r = 0; r < rs->n; r++)
            e->active[r] = true;
        e->cur_block = 0;
        e->res.blocks++;
        process_block(e, 0, (uint32_t)reply.len, AG_LANG_TS, true, true, false);
    }
}

/* Splices the kept edits into out and fills res. */
static int finish(ag_engine_t *e, ag_buf_t *out, ag_result_t *res)
{
    ag_str_t reply = e->reply;
    /* the kept edits are sorted per block and blocks are in order */
    uint64_t t0 = now_ns();
    size_t pos = 0;
    int rc = AG_OK;
    for (uint32_t i = 0; i < e->nedits && rc == AG_OK; i++) {
        const ag_edit_t *ed = &e->edits[i];
        if (!ed->keep)
            continue;
        size_t s = ed->code_off + ed->start;
        rc = ag_buf_append(out, reply.ptr + pos, s - pos);
        if (rc == AG_OK)
            rc = ag_buf_append(out, e->text.ptr + ed->text_off, ed->text_len);
        pos = ed->code_off + ed->end;
    }
    if (rc == AG_OK)
        rc = ag_buf_append(out, reply.ptr + pos, reply.len - pos);
    e->res.splice_ns += now_ns() - t0;
    /* events in reply order: the edits (applied and dropped), after the flags found while
     * matching */
    for (uint32_t i = 0; i < e->nedits; i++)
        if (!e->edits[i].dup)
            edit_event(e, &e->edits[i]);
    for (uint32_t i = 0; i < e->nevents; i++) {
        const struct ev_off *o = &e->ev_off[i];
        e->events[i].line += e->line_base;
        e->events[i].offset += e->offset_base;
        e->events[i].match_offset += e->offset_base;
        e->events[i].before = ag_str(e->evtext.ptr + o->before, o->before_len);
        e->events[i].after = ag_str(e->evtext.ptr + o->after, o->after_len);
    }
    e->res.events = e->events;
    e->res.nevents = e->nevents;
    if (res)
        *res = e->res;
    return rc;
}

int ag_engine_rewrite(ag_engine_t *e, ag_str_t reply, ag_buf_t *out, ag_result_t *res)
{
    begin(e, reply);
    reply_blocks(e, e->opts.bare, false);
    return finish(e, out, res);
}

static bool is_markdown(ag_str_t label)
{
    return ag_str_eqci(label, "md") || ag_str_eqci(label, "mdx") || ag_str_eqci(label, "markdown");
}

int ag_engine_rewrite_code(ag_engine_t *e, ag_str_t code, ag_str_t label, bool fragment,
                           ag_buf_t *out, ag_result_t *res)
{
    begin(e, code);
    if (is_markdown(label)) {
        reply_blocks(e, false, fragment);
    } else if (code.len < UINT32_MAX / 2 && e->rules->n > 0) {
        /* the code as the one block of a fence labelled label */
        ag_block_t blk;
        memset(&blk, 0, sizeof(blk));
        blk.end = blk.close_end = (uint32_t)code.len;
        blk.info = blk.lang = label;
        blk.closed = true;
        int lang = block_lang(e, &blk, e->active);
        if (lang >= 0) {
            e->cur_block = 0;
            e->res.blocks++;
            process_block(e, 0, (uint32_t)code.len, (ag_lang_t)lang, false, false, fragment);
        }
    }
    return finish(e, out, res);
}

/* ---- for the streaming hold (hold.c) ---- */

TSTree *ag_engine_probe(ag_engine_t *e, ag_str_t code, ag_lang_t lang, const bool *active,
                        struct ag_hold_memo *memo, uint32_t *edit_at)
{
    begin(e, code);
    *edit_at = (uint32_t)code.len;
    TSTree *old = memo->tree;
    memo->tree = NULL;
    TSTree *tree = NULL;
    if (code.len >= UINT32_MAX / 2 || old == NULL || memo->len > code.len) {
        if (old)
            ts_tree_delete(old);
        old = NULL;
    }
    ag_buf_reset(&e->code);
    if (code.len >= UINT32_MAX / 2 || ag_buf_append(&e->code, code.ptr, code.len) != AG_OK)
        goto out;
    e->code_off = 0;
    e->orig_len = (uint32_t)code.len;
    e->cur_block = 0;
    e->cur_cut = true;
    e->cur_frag = false;
    /* as process_block treats the start of a cut-off block: completed, then parsed once */
    close_open(e, e->orig_len);
    e->code_len = (uint32_t)e->code.len;
    TSPoint end = point_at(e->code.ptr, e->code_len);
    if (old) {
        /* the code only grew since: the old completion is replaced by the new bytes and the new
         * completion, and everything before it can be reused */
        TSInputEdit ie = {memo->len, memo->total, e->code_len, point_at(e->code.ptr, memo->len),
                          memo->end, end};
        ts_tree_edit(old, &ie);
    }
    TSParser *p = e->parser[lang];
    tree = ts_parser_parse_string(p, old, e->code.ptr, e->code_len);
    if (tree == NULL) {
        ts_parser_reset(p); /* the parse ran out of time */
        goto out;
    }
    ag_flat_build(&e->flat, tree, e->code.ptr, e->code_len);
    memo->tree = tree;
    memo->len = e->orig_len;
    memo->total = e->code_len;
    memo->end = end;
    bool any = false;
    for (uint32_t r = 0; r < e->rules->n; r++) {
        e->active[r] = active[r] && e->rules->rules[r].lang[lang].enabled &&
                       literal_present(&e->rules->rules[r], code);
        any |= e->active[r];
    }
    if (!any)
        goto out;
    /* the edits as matching makes them: which of them the overlap and parse checks would keep
     * does not matter here, an edit dropped now may be kept once more code has come */
    e->m.steps = 0;
    scan(e, lang, e->active);
    for (uint32_t i = 0; i < e->nedits; i++)
        if (e->edits[i].start < *edit_at)
            *edit_at = e->edits[i].start;
    e->nedits = 0;
    e->nevents = 0;
out:
    if (old)
        ts_tree_delete(old);
    return tree;
}

void ag_engine_probe_memo_dispose(struct ag_hold_memo *memo)
{
    if (memo->tree)
        ts_tree_delete(memo->tree);
    memset(memo, 0, sizeof(*memo));
}

int ag_engine_block_rules(const ag_engine_t *e, const ag_block_t *blk, bool *active)
{
    return block_lang(e, blk, active);
}

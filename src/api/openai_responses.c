/* OpenAI Responses API: the output_text parts of output[].content[] (not streamed) and the
 * response.output_text.delta events (streamed, one stream key per (output_index, content_index));
 * the code in tool calls: function_call arguments, custom_tool_call input, apply_patch_call
 * operation.diff (not streamed), and their delta events, held per call until it is complete
 * (streamed). Every event that repeats a part's text or a call's input is kept equal to what the
 * client was sent, and sequence_number stays gapless when astgate adds or drops an event. Every
 * other byte passes unchanged. */
#include "api.h"
#include "changes.h"

#include "json.h"
#include "jsonscan.h"
#include "sse.h"

#define MAX_MATCHES 4096       /* values found in a body */
#define MAX_EVENT_MATCHES 1024 /* values found in one event */
#define MAX_PARTS 256          /* output_text parts tracked per stream; others pass unchanged */
#define MAX_INDEX 0xffffu      /* output_index and content_index must fit 16 bits for the key */
#define MAX_CALLS 256          /* tool calls tracked per stream; others pass unchanged */

static int put(ag_buf_t *b, const char *s)
{
    return ag_buf_append(b, s, strlen(s));
}

static uint64_t part_key(uint64_t output_index, uint64_t content_index)
{
    return output_index << 16 | content_index;
}

/* ---- tool calls: what an output item says about itself ---- */

/* The output items that are tool calls. */
enum {
    K_NONE,
    K_FUNCTION, /* function_call: arguments, the JSON text of the arguments */
    K_CUSTOM,   /* custom_tool_call: input, free text */
    K_PATCH,    /* apply_patch_call: operation.diff */
};

#define IN_UNKNOWN (-1) /* an apply_patch_call whose operation is not known (yet) */
#define IN_NONE (-2)    /* an apply_patch_call that deletes a file: no code */

/* The string members of one output item (or of a .done event), as tokens of the JSON text. */
typedef struct tool_item {
    uint64_t index;                                               /* output index */
    const ag_jscan_match_t *type, *name, *call_id, *args, *input; /* item.* */
    const ag_jscan_match_t *op_type, *op_path, *diff;             /* item.operation.* */
} tool_item_t;

/* A tool call, decoded: what ag_api_tool_rewrite is told. */
typedef struct call_meta {
    int kind;                    /* K_* */
    int input;                   /* ag_tool_input_t, or IN_UNKNOWN / IN_NONE */
    char name[AG_TOOL_NAME_MAX]; /* "" when longer: no tool has such a name */
    char id[256];                /* call_id; "" when longer (the audit log goes without) */
    char file[4096];             /* apply_patch_call: operation.path */
} call_meta_t;

static bool key_is(ag_str_t json, const ag_jscan_match_t *m, const char *name)
{
    if (m->key_len < 2)
        return false;
    ag_jscan_match_t k = *m;
    k.off = m->key_off;
    k.len = m->key_len;
    k.type = AG_JSCAN_STRING;
    return ag_jscan_str_eq(json, &k, ag_cstr(name));
}

/* Files a string member of an item (op: of its operation); with duplicate keys the last one
 * counts, as in JSON.parse. */
static void item_take(tool_item_t *ti, ag_str_t json, const ag_jscan_match_t *m, bool op)
{
    const ag_jscan_match_t **slot = NULL;
    if (op) {
        if (key_is(json, m, "type"))
            slot = &ti->op_type;
        else if (key_is(json, m, "path"))
            slot = &ti->op_path;
        else if (key_is(json, m, "diff"))
            slot = &ti->diff;
    } else if (key_is(json, m, "type")) {
        slot = &ti->type;
    } else if (key_is(json, m, "name")) {
        slot = &ti->name;
    } else if (key_is(json, m, "call_id")) {
        slot = &ti->call_id;
    } else if (key_is(json, m, "arguments")) {
        slot = &ti->args;
    } else if (key_is(json, m, "input")) {
        slot = &ti->input;
    }
    if (slot)
        *slot = m;
}

static int item_kind(ag_str_t json, const tool_item_t *ti)
{
    if (ti->type == NULL)
        return K_NONE;
    if (ag_jscan_str_eq(json, ti->type, AG_STR_LIT("function_call")))
        return K_FUNCTION;
    if (ag_jscan_str_eq(json, ti->type, AG_STR_LIT("custom_tool_call")))
        return K_CUSTOM;
    if (ag_jscan_str_eq(json, ti->type, AG_STR_LIT("apply_patch_call")))
        return K_PATCH;
    return K_NONE;
}

/* The token that holds the call's input in an item of that kind (NULL: none). */
static const ag_jscan_match_t *item_text(const tool_item_t *ti, int kind)
{
    return kind == K_FUNCTION ? ti->args : kind == K_CUSTOM ? ti->input : ti->diff;
}

/* The decoded string m into dst (NUL-terminated); "" when it does not fit or holds a NUL. */
static void copy_str(ag_str_t json, const ag_jscan_match_t *m, char *dst, size_t cap,
                     ag_buf_t *scratch)
{
    dst[0] = '\0';
    if (m == NULL || m->len > 6 * cap + 2)
        return;
    ag_buf_reset(scratch);
    if (ag_jscan_decode(json, m->off, m->len, scratch, NULL, 0, NULL) != AG_OK ||
        scratch->len >= cap || memchr(scratch->ptr, 0, scratch->len) != NULL)
        return;
    memcpy(dst, scratch->ptr, scratch->len);
    dst[scratch->len] = '\0';
}

/* The operation of an apply_patch_call: create_file and update_file carry a diff of code. */
static void meta_operation(call_meta_t *cm, ag_str_t json, const tool_item_t *ti, ag_buf_t *scratch)
{
    if (ti->op_type == NULL)
        return;
    if (ag_jscan_str_eq(json, ti->op_type, AG_STR_LIT("create_file")))
        cm->input = AG_TOOL_IN_PATCH_CREATE;
    else if (ag_jscan_str_eq(json, ti->op_type, AG_STR_LIT("update_file")))
        cm->input = AG_TOOL_IN_PATCH_UPDATE;
    else
        cm->input = IN_NONE;
    copy_str(json, ti->op_path, cm->file, sizeof(cm->file), scratch);
}

static void meta_fill(call_meta_t *cm, int kind, ag_str_t json, const tool_item_t *ti,
                      ag_buf_t *scratch)
{
    memset(cm, 0, sizeof(*cm));
    cm->kind = kind;
    copy_str(json, ti->call_id, cm->id, sizeof(cm->id), scratch);
    if (kind == K_PATCH) {
        snprintf(cm->name, sizeof(cm->name), "apply_patch"); /* the native tool's preset */
        cm->input = IN_UNKNOWN;
        meta_operation(cm, json, ti, scratch);
    } else {
        copy_str(json, ti->name, cm->name, sizeof(cm->name), scratch);
        cm->input = kind == K_FUNCTION ? AG_TOOL_IN_ARGS : AG_TOOL_IN_TEXT;
    }
}

/* Whether the call is one astgate looks into: a tool it knows that may carry code. */
static bool meta_known(const ag_api_env_t *env, const call_meta_t *cm)
{
    return cm->kind != K_NONE && cm->input != IN_NONE && cm->name[0] &&
           ag_tools_find(env->tools, ag_cstr(cm->name)) != NULL;
}

/* A complete call's input rewritten into out (appended). AG_OK: out holds the input, changed or
 * not; otherwise out is as it was and the input passes as it came. */
static int rewrite_call(ag_api_env_t *env, ag_api_stats_t *st, const call_meta_t *cm,
                        uint64_t index, ag_str_t input, ag_buf_t *out, bool *changed)
{
    *changed = false;
    if (cm->input < 0)
        return AG_ENOENT;
    ag_tool_call_t call;
    memset(&call, 0, sizeof(call));
    call.name = ag_cstr(cm->name);
    call.id = ag_cstr(cm->id);
    call.file = ag_cstr(cm->file);
    call.input = cm->input;
    size_t mark = out->len;
    int rc = ag_api_tool_rewrite(env, st, (int)(index & 0x7fffffff), &call, input, out, changed);
    if (rc != AG_OK) {
        out->len = mark;
        *changed = false;
    }
    return rc;
}

/* ---- not streamed ---- */

enum { B_TEXT, B_MODEL, B_OUTPUT_TEXT, B_ITEM, B_ITEM_OP, B_NPATHS };

/* Scratch for the tool calls of a body. */
typedef struct body_tools {
    ag_buf_t small; /* a decoded name, id or path */
    ag_buf_t input; /* a call's input, decoded */
    ag_buf_t out;   /* its rewrite */
} body_tools_t;

/* One output item of a body: when it is a tool call astgate knows, the code in its input is
 * rewritten, and the string token that holds it gets the new input (minimal edits, its own
 * escaping style). */
static int body_tool(ag_api_env_t *env, ag_api_stats_t *st, ag_str_t body, const tool_item_t *ti,
                     ag_changes_t *ch, body_tools_t *bt)
{
    int kind = item_kind(body, ti);
    const ag_jscan_match_t *text = item_text(ti, kind);
    if (kind == K_NONE || text == NULL)
        return AG_OK;
    call_meta_t cm;
    meta_fill(&cm, kind, body, ti, &bt->small);
    if (!meta_known(env, &cm))
        return AG_OK;
    ag_buf_reset(&bt->input);
    if (ag_jscan_decode(body, text->off, text->len, &bt->input, NULL, 0, NULL) != AG_OK)
        return AG_OK;
    ag_buf_reset(&bt->out);
    bool changed = false;
    if (rewrite_call(env, st, &cm, ti->index, ag_buf_str(&bt->input), &bt->out, &changed) !=
            AG_OK ||
        !changed)
        return AG_OK;
    return ag_changes_text(ch, body, text, ag_buf_str(&bt->out));
}

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    static const char *const pats[B_NPATHS] = {"output[*].content[*]{type=output_text}.text",
                                               "model", "output_text", "output[*].*",
                                               "output[*].operation.*"};
    ag_jscan_path_t paths[B_NPATHS];
    for (int i = 0; i < B_NPATHS; i++)
        if (ag_jscan_path_compile(&paths[i], ag_cstr(pats[i]), AG_JSCAN_STRING) != AG_OK)
            return AG_EINVAL;
    ag_jscan_match_t *m = ag_xmalloc(MAX_MATCHES * sizeof(*m));
    ag_changes_t ch;
    ag_changes_init(&ch);
    ag_buf_t plain, rewritten, old_all, new_all;
    ag_buf_init(&plain, 64u << 20);
    ag_buf_init(&rewritten, 128u << 20);
    ag_buf_init(&old_all, 128u << 20);
    ag_buf_init(&new_all, 256u << 20);
    body_tools_t bt;
    ag_buf_init(&bt.small, 1u << 16);
    ag_buf_init(&bt.input, 64u << 20);
    ag_buf_init(&bt.out, 128u << 20);
    tool_item_t ti;
    memset(&ti, 0, sizeof(ti));
    bool in_item = false;
    bool changed = false;
    const ag_jscan_match_t *output_text = NULL;
    size_t n = 0;
    int rc = ag_jscan_find(body, paths, B_NPATHS, m, MAX_MATCHES, &n, NULL);
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if (m[i].path == B_ITEM || m[i].path == B_ITEM_OP) {
            if (env->tools == NULL)
                continue;
            /* the members of output[k] come together, in document order */
            if (in_item && ti.index != m[i].idx[0]) {
                rc = body_tool(env, st, body, &ti, &ch, &bt);
                memset(&ti, 0, sizeof(ti));
            }
            in_item = true;
            ti.index = m[i].idx[0];
            item_take(&ti, body, &m[i], m[i].path == B_ITEM_OP);
            continue;
        }
        if (m[i].path == B_MODEL) {
            if (env->model.len == 0 && m[i].len >= 2)
                env->model = ag_str(body.ptr + m[i].off + 1, m[i].len - 2); /* body outlives */
            continue;
        }
        if (m[i].path == B_OUTPUT_TEXT) {
            output_text = &m[i];
            continue;
        }
        uint64_t key = part_key(m[i].idx[0] & MAX_INDEX, m[i].idx[1] & MAX_INDEX);
        ag_buf_reset(&plain);
        rc = ag_jscan_decode(body, m[i].off, m[i].len, &plain, NULL, 0, NULL);
        if (rc != AG_OK)
            break;
        ag_result_t res;
        ag_buf_reset(&rewritten);
        rc = ag_engine_rewrite(env->engine, ag_buf_str(&plain), &rewritten, &res);
        if (rc != AG_OK)
            break;
        ag_reply_summary_t sum;
        memset(&sum, 0, sizeof(sum));
        ag_api_report(env, key, &res, &sum);
        if (env->on_reply)
            env->on_reply(env->ud, (int)(key & 0x7fffffff), &sum);
        ag_api_stats_add(st, &res);
        changed |= res.rewrites > 0;
        rc = ag_changes_result(&ch, body, &m[i], &res, ag_buf_str(&rewritten));
        if (rc == AG_OK)
            rc = ag_buf_append(&old_all, plain.ptr, plain.len);
        if (rc == AG_OK)
            rc = ag_buf_append(&new_all, rewritten.ptr, rewritten.len);
    }
    if (rc == AG_OK && in_item)
        rc = body_tool(env, st, body, &ti, &ch, &bt);
    /* a server-side output_text (the SDK's convenience field) follows its parts */
    if (rc == AG_OK && changed && output_text) {
        ag_buf_reset(&plain);
        if (ag_jscan_decode(body, output_text->off, output_text->len, &plain, NULL, 0, NULL) ==
                AG_OK &&
            ag_str_eq(ag_buf_str(&plain), ag_buf_str(&old_all)))
            rc = ag_changes_text(&ch, body, output_text, ag_buf_str(&new_all));
    }
    if (rc == AG_OK)
        rc = ag_changes_apply(&ch, body, out);
    ag_changes_dispose(&ch);
    ag_buf_dispose(&plain);
    ag_buf_dispose(&rewritten);
    ag_buf_dispose(&old_all);
    ag_buf_dispose(&new_all);
    ag_buf_dispose(&bt.small);
    ag_buf_dispose(&bt.input);
    ag_buf_dispose(&bt.out);
    free(m);
    return rc == AG_OK ? AG_OK : AG_EINVAL;
}

/* ---- streamed ---- */

/* One output_text part of the reply. */
typedef struct part {
    uint64_t key;
    ag_buf_t sent;     /* what the client was sent of its text, in order */
    char item_id[256]; /* the raw item_id token of its deltas, for deltas astgate adds */
    bool open;         /* deltas went to the core and the part is not finished */
    bool final;        /* sent is the part's whole text */
    bool lost;         /* sent overflowed: events repeating the text are left alone */
    ag_reply_summary_t sum;
} part_t;

enum {
    P_TYPE,
    P_SEQ,
    P_OUT,
    P_CONT,
    P_ITEM_ID,
    P_DELTA,
    P_TEXT,
    P_PART,
    P_ITEM,
    P_RESP,
    P_RESP_OT,
    P_MODEL,
    P_NPATHS
};

/* Paths looked up in the events that carry a tool call's item or its whole input. */
enum { T_ITEM, T_ITEM_OP, T_RESP, T_RESP_OP, T_ARGS, T_INPUT, T_DIFF, T_NPATHS };
/* ... and in the template of a delta astgate sends */
enum { D_DELTA, D_SEQ, D_NPATHS };

/* One tool call of the reply, by output_index. */
typedef struct call {
    uint64_t index; /* output_index */
    int state;      /* C_* */
    call_meta_t meta;
    ag_buf_t held;       /* C_HOLD: its deltas, decoded and joined; max: max_held */
    ag_buf_t final;      /* C_FINAL: its input as the client was sent it */
    ag_buf_t tmpl;       /* the first held delta event's data with its delta emptied: the form of
                            the delta astgate sends */
    char tmpl_event[64]; /* that event's event line ("" = none) */
    bool has_tmpl;
    unsigned style; /* escaping style of the upstream's deltas (ag_jscan_str_style) */
} call_t;

enum {
    C_HOLD,  /* a tool astgate knows: its deltas are held until the call is complete */
    C_PASS,  /* not looked into (unknown tool, a delete, released past max_held): passes as is */
    C_FINAL, /* complete: every later copy of its input gets final */
};

typedef struct resp_stream {
    ag_api_env_t *env;
    ag_api_stats_t *st;
    ag_sse_parser_t sse;
    ag_stream_t *core;
    ag_buf_t *out;    /* the client bytes of the current feed */
    ag_buf_t data;    /* the current event's data (a copy: the SSE view is short-lived) */
    ag_buf_t text;    /* what the core let through */
    ag_buf_t plain;   /* scratch: a decoded string */
    ag_buf_t spliced; /* the current event, rewritten */
    ag_buf_t added;   /* an event astgate adds */
    ag_changes_t ch;  /* changes to the current event */
    ag_jscan_path_t paths[P_NPATHS];
    ag_jscan_match_t *m;
    part_t *parts;
    uint32_t nparts, cap;
    size_t sent_max;
    /* tool calls */
    call_t *calls;
    uint32_t ncalls, ccap;
    size_t held_max; /* bytes of one call's input held back */
    ag_jscan_path_t tpaths[T_NPATHS];
    ag_jscan_path_t dpaths[D_NPATHS];
    ag_jscan_match_t *tm; /* matches of tpaths in the current event */
    ag_changes_t tch;     /* changes to a delta astgate sends */
    ag_buf_t tplain;      /* a call's input or delta, decoded */
    ag_buf_t tesc;        /* a delta's new token */
    ag_buf_t tsmall;      /* a decoded name, id or path */
    char model[256];
    int64_t offset;    /* events added minus events dropped so far: added to each later
                          sequence_number */
    uint64_t next_seq; /* the number of the next event out */
    bool ended;        /* a block rule ended the stream */
    bool done;         /* a [DONE] passed: the rest goes through as it is */
} resp_stream_t;

/* The current event, as scanned. */
typedef struct ev {
    const ag_sse_item_t *it;
    ag_str_t json;
    size_t n;
    const ag_jscan_match_t *type, *seqm, *delta, *text, *part, *item_id;
    bool has_seq, has_out, has_cont;
    uint64_t seq, out_idx, cont_idx;
} ev_t;

static part_t *find_part(resp_stream_t *rs, uint64_t key)
{
    for (uint32_t i = 0; i < rs->nparts; i++)
        if (rs->parts[i].key == key)
            return &rs->parts[i];
    return NULL;
}

static part_t *get_part(resp_stream_t *rs, uint64_t key)
{
    part_t *p = find_part(rs, key);
    if (p || rs->nparts == MAX_PARTS)
        return p;
    if (rs->nparts == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 4;
        rs->parts = ag_xrealloc(rs->parts, rs->cap * sizeof(*rs->parts));
    }
    p = &rs->parts[rs->nparts++];
    memset(p, 0, sizeof(*p));
    p->key = key;
    ag_buf_init(&p->sent, rs->sent_max);
    return p;
}

static void sent_append(part_t *p, ag_str_t text)
{
    if (!p->lost && ag_buf_append(&p->sent, text.ptr, text.len) != AG_OK)
        p->lost = true;
}

static void on_core_wait(void *ud, uint64_t key, uint64_t wait_ns, size_t bytes)
{
    resp_stream_t *rs = ud;
    ag_api_report_wait(rs->env, wait_ns);
}

static void on_core_result(void *ud, uint64_t key, const ag_result_t *res)
{
    resp_stream_t *rs = ud;
    ag_api_stats_add(rs->st, res);
    part_t *p = find_part(rs, key);
    ag_reply_summary_t scratch;
    memset(&scratch, 0, sizeof(scratch));
    ag_api_report(rs->env, key, res, p ? &p->sum : &scratch);
}

static void *stream_new(ag_api_env_t *env, ag_api_stats_t *st)
{
    resp_stream_t *rs = ag_xcalloc(1, sizeof(*rs));
    rs->env = env;
    rs->st = st;
    ag_sse_init(&rs->sse, AG_SSE_MAX_EVENT_DEFAULT);
    rs->core = ag_stream_new(env->engine, env->max_held, on_core_result, rs);
    ag_stream_set_hold(rs->core, env->hold);
    ag_stream_set_wait(rs->core, on_core_wait);
    ag_buf_init(&rs->data, 64u << 20);
    ag_buf_init(&rs->text, 64u << 20);
    ag_buf_init(&rs->plain, 64u << 20);
    ag_buf_init(&rs->spliced, 256u << 20);
    ag_buf_init(&rs->added, 64u << 20);
    ag_changes_init(&rs->ch);
    rs->m = ag_xmalloc(MAX_EVENT_MATCHES * sizeof(*rs->m));
    size_t held = env->max_held ? env->max_held : (8u << 20);
    rs->sent_max = held * 4 + (1u << 20);
    rs->held_max = held;
    rs->tm = ag_xmalloc(MAX_EVENT_MATCHES * sizeof(*rs->tm));
    ag_changes_init(&rs->tch);
    ag_buf_init(&rs->tplain, 64u << 20);
    ag_buf_init(&rs->tesc, 256u << 20);
    ag_buf_init(&rs->tsmall, 1u << 16);
    static const char *const tpats[T_NPATHS] = {
        "item.*",
        "item.operation.*",
        "response.output[*].*",
        "response.output[*].operation.*",
        "arguments",
        "input",
        "diff",
    };
    for (int i = 0; i < T_NPATHS; i++) {
        int rc = ag_jscan_path_compile(&rs->tpaths[i], ag_cstr(tpats[i]), AG_JSCAN_STRING);
        AG_ASSERT(rc == AG_OK);
    }
    int drc = ag_jscan_path_compile(&rs->dpaths[D_DELTA], AG_STR_LIT("delta"), AG_JSCAN_STRING);
    AG_ASSERT(drc == AG_OK);
    drc = ag_jscan_path_compile(&rs->dpaths[D_SEQ], AG_STR_LIT("sequence_number"), AG_JSCAN_NUMBER);
    AG_ASSERT(drc == AG_OK);
    static const char *const pats[P_NPATHS] = {
        "type",
        "sequence_number",
        "output_index",
        "content_index",
        "item_id",
        "delta",
        "text",
        "part{type=output_text}.text",
        "item.content[*]{type=output_text}.text",
        "response.output[*].content[*]{type=output_text}.text",
        "response.output_text",
        "response.model",
    };
    for (int i = 0; i < P_NPATHS; i++) {
        unsigned types =
            i == P_SEQ || i == P_OUT || i == P_CONT ? AG_JSCAN_NUMBER : AG_JSCAN_STRING;
        int rc = ag_jscan_path_compile(&rs->paths[i], ag_cstr(pats[i]), types);
        AG_ASSERT(rc == AG_OK);
    }
    return rs;
}

static void stream_free(void *state)
{
    resp_stream_t *rs = state;
    if (rs == NULL)
        return;
    ag_sse_dispose(&rs->sse);
    ag_api_report_hold(rs->env, rs->core); /* every stream once, however it ended */
    ag_stream_free(rs->core);
    ag_buf_dispose(&rs->data);
    ag_buf_dispose(&rs->text);
    ag_buf_dispose(&rs->plain);
    ag_buf_dispose(&rs->spliced);
    ag_buf_dispose(&rs->added);
    ag_changes_dispose(&rs->ch);
    for (uint32_t i = 0; i < rs->nparts; i++)
        ag_buf_dispose(&rs->parts[i].sent);
    free(rs->parts);
    for (uint32_t i = 0; i < rs->ncalls; i++) {
        ag_buf_dispose(&rs->calls[i].held);
        ag_buf_dispose(&rs->calls[i].final);
        ag_buf_dispose(&rs->calls[i].tmpl);
    }
    free(rs->calls);
    free(rs->tm);
    ag_changes_dispose(&rs->tch);
    ag_buf_dispose(&rs->tplain);
    ag_buf_dispose(&rs->tesc);
    ag_buf_dispose(&rs->tsmall);
    free(rs->m);
    free(rs);
}

/* Passes an item on as it came; an event cut off at the end of the stream gets its blank line. */
static int pass_raw(resp_stream_t *rs, const ag_sse_item_t *it)
{
    int rc = ag_buf_append(rs->out, it->raw.ptr, it->raw.len);
    if (rc == AG_OK && it->kind == AG_SSE_EVENT && it->eof) {
        bool eol = it->raw.len &&
                   (it->raw.ptr[it->raw.len - 1] == '\n' || it->raw.ptr[it->raw.len - 1] == '\r');
        rc = ag_buf_append(rs->out, "\n\n", eol ? 1 : 2);
    }
    return rc;
}

/* The number the client sees for upstream number seq. */
static uint64_t seq_out(const resp_stream_t *rs, uint64_t seq)
{
    int64_t v = (int64_t)seq + rs->offset; /* seq < UINT64_MAX / 2 */
    return v < 0 ? 0 : (uint64_t)v;
}

/* The number an event astgate adds gets: the slot of the event it goes before; every later
 * upstream number moves up by one. */
static uint64_t take_seq(resp_stream_t *rs)
{
    rs->offset++;
    return rs->next_seq++;
}

static int emit_block_error(resp_stream_t *rs)
{
    char msg[512];
    const char *rule = rs->st->blocked_rule ? rs->st->blocked_rule : "";
    snprintf(msg, sizeof(msg), "astgate blocked the reply: %s",
             rs->st->blocked_message && rs->st->blocked_message[0] ? rs->st->blocked_message
                                                                   : rule);
    /* the Responses error event; its "error" object is what makes the openai SDK (6.x) throw
     * instead of ending with a partial response */
    ag_buf_t fields;
    ag_buf_init(&fields, 1u << 16);
    int rc = put(&fields, "\"code\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(&fields, ag_cstr(rule));
    if (rc == AG_OK)
        rc = put(&fields, ",\"message\":");
    if (rc == AG_OK)
        rc = ag_json_append_str(&fields, ag_cstr(msg));
    if (rc == AG_OK)
        rc = put(&fields, ",\"param\":null");
    ag_buf_reset(&rs->added);
    if (rc == AG_OK)
        rc = ag_buf_appendf(&rs->added,
                            "{\"type\":\"error\",%s,\"error\":{\"type\":\"astgate_blocked\",%s},"
                            "\"sequence_number\":%llu}",
                            fields.ptr, fields.ptr, (unsigned long long)take_seq(rs));
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, AG_STR_LIT("error"), ag_buf_str(&rs->added));
    ag_buf_dispose(&fields);
    rs->ended = true;
    return rc;
}

/* A response.output_text.delta astgate adds: text the core held for a part that is ending. */
static int emit_delta(resp_stream_t *rs, const part_t *p, ag_str_t text)
{
    if (text.len == 0)
        return AG_OK;
    ag_buf_reset(&rs->added);
    int rc = put(&rs->added, "{\"type\":\"response.output_text.delta\",\"item_id\":");
    if (rc == AG_OK)
        rc =
            ag_buf_appendf(&rs->added, "%s,\"output_index\":%llu,\"content_index\":%llu,\"delta\":",
                           p->item_id[0] ? p->item_id : "\"\"", (unsigned long long)(p->key >> 16),
                           (unsigned long long)(p->key & MAX_INDEX));
    if (rc == AG_OK)
        rc = ag_json_append_str(&rs->added, text);
    if (rc == AG_OK)
        rc = ag_buf_appendf(&rs->added, ",\"logprobs\":[],\"sequence_number\":%llu}",
                            (unsigned long long)take_seq(rs));
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, AG_STR_LIT("response.output_text.delta"),
                                ag_buf_str(&rs->added));
    return rc;
}

/* A part's text is complete: what the core still held goes out in a delta of its own. */
static int finish_part(resp_stream_t *rs, part_t *p)
{
    if (!p->open)
        return AG_OK;
    p->open = false;
    ag_stream_status_t status;
    ag_buf_reset(&rs->text);
    int rc = ag_stream_finish(rs->core, p->key, &rs->text, &status);
    if (rs->env->on_reply)
        rs->env->on_reply(rs->env->ud, (int)(p->key & 0x7fffffff), &p->sum);
    if (rc != AG_OK)
        return rc;
    sent_append(p, ag_buf_str(&rs->text));
    p->final = true;
    rc = emit_delta(rs, p, ag_buf_str(&rs->text));
    if (rc == AG_OK && status == AG_STREAM_BLOCKED)
        rc = emit_block_error(rs);
    return rc;
}

/* Finishes the open parts of one output item (all of them when output_index is UINT64_MAX). */
static int finish_parts(resp_stream_t *rs, uint64_t output_index)
{
    for (uint32_t i = 0; i < rs->nparts && !rs->ended; i++) {
        if (output_index != UINT64_MAX && rs->parts[i].key >> 16 != output_index)
            continue;
        int rc = finish_part(rs, &rs->parts[i]);
        if (rc != AG_OK)
            return rc;
    }
    return AG_OK;
}

/* The final text of part key, for an event that repeats it; NULL: leave that text alone. A part
 * that was never streamed (its full text is all there is) is rewritten whole, once. */
static const ag_buf_t *final_text(resp_stream_t *rs, uint64_t key, ag_str_t json,
                                  const ag_jscan_match_t *m, int *rc)
{
    *rc = AG_OK;
    part_t *p = find_part(rs, key);
    if (p && p->open) {
        *rc = finish_part(rs, p);
        if (*rc != AG_OK || rs->ended)
            return NULL;
    }
    if (p == NULL)
        p = get_part(rs, key);
    if (p == NULL || p->lost)
        return NULL;
    if (p->final)
        return &p->sent;
    ag_buf_reset(&rs->plain);
    if (ag_jscan_decode(json, m->off, m->len, &rs->plain, NULL, 0, NULL) != AG_OK)
        return NULL;
    ag_result_t res;
    memset(&res, 0, sizeof(res));
    ag_buf_reset(&p->sent);
    if (ag_engine_rewrite(rs->env->engine, ag_buf_str(&rs->plain), &p->sent, &res) != AG_OK) {
        ag_buf_reset(&p->sent);
        memset(&res, 0, sizeof(res));
        if (ag_buf_append(&p->sent, rs->plain.ptr, rs->plain.len) != AG_OK)
            p->lost = true;
    }
    p->final = true;
    ag_api_stats_add(rs->st, &res);
    ag_api_report(rs->env, key, &res, &p->sum);
    if (rs->env->on_reply)
        rs->env->on_reply(rs->env->ud, (int)(key & 0x7fffffff), &p->sum);
    if (res.blocked) {
        *rc = emit_block_error(rs);
        return NULL;
    }
    return p->lost ? NULL : &p->sent;
}

/* The full text at m (of part key) becomes what the client was sent. */
static int fix_full_text(resp_stream_t *rs, const ev_t *ev, uint64_t out_idx, uint64_t cont_idx,
                         const ag_jscan_match_t *m)
{
    if (out_idx > MAX_INDEX || cont_idx > MAX_INDEX)
        return AG_OK;
    int rc;
    const ag_buf_t *t = final_text(rs, part_key(out_idx, cont_idx), ev->json, m, &rc);
    if (rc != AG_OK || t == NULL)
        return rc;
    return ag_changes_text(&rs->ch, ev->json, m, ag_buf_str(t));
}

/* Writes the current event with its changes and its renumbered sequence_number. */
static int write_event(resp_stream_t *rs, const ev_t *ev)
{
    int rc = AG_OK;
    if (ev->has_seq) {
        uint64_t out = seq_out(rs, ev->seq);
        if (out != ev->seq) {
            char num[32];
            int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)out);
            rc = ag_changes_raw(&rs->ch, ev->seqm, ag_str(num, (size_t)len));
        }
        rs->next_seq = out + 1;
    }
    if (rc != AG_OK || rs->ch.n == 0)
        return rc == AG_OK ? pass_raw(rs, ev->it) : rc;
    ag_buf_reset(&rs->spliced);
    rc = ag_changes_apply(&rs->ch, ev->json, &rs->spliced);
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, ev->it->event, ag_buf_str(&rs->spliced));
    return rc;
}

static int on_delta(resp_stream_t *rs, ev_t *ev)
{
    if (!ev->delta || !ev->has_out || !ev->has_cont || ev->out_idx > MAX_INDEX ||
        ev->cont_idx > MAX_INDEX)
        return write_event(rs, ev);
    part_t *p = get_part(rs, part_key(ev->out_idx, ev->cont_idx));
    if (p == NULL || p->final)
        return write_event(rs, ev);
    if (ev->item_id && ev->item_id->len < sizeof(p->item_id)) {
        memcpy(p->item_id, ev->json.ptr + ev->item_id->off, ev->item_id->len);
        p->item_id[ev->item_id->len] = '\0';
    }
    ag_buf_reset(&rs->plain);
    if (ag_jscan_decode(ev->json, ev->delta->off, ev->delta->len, &rs->plain, NULL, 0, NULL) !=
        AG_OK)
        return write_event(rs, ev);
    p->open = true;
    ag_stream_status_t status;
    ag_buf_reset(&rs->text);
    int rc = ag_stream_push(rs->core, p->key, ag_buf_str(&rs->plain), &rs->text, &status);
    if (rc != AG_OK)
        return rc;
    sent_append(p, ag_buf_str(&rs->text));
    if (status == AG_STREAM_BLOCKED) {
        /* what came before the blocked block still reaches the client, then the error */
        p->open = false;
        if (rs->env->on_reply)
            rs->env->on_reply(rs->env->ud, (int)(p->key & 0x7fffffff), &p->sum);
        if (rs->text.len) {
            rc = ag_changes_text(&rs->ch, ev->json, ev->delta, ag_buf_str(&rs->text));
            if (rc == AG_OK)
                rc = write_event(rs, ev);
        }
        return rc == AG_OK ? emit_block_error(rs) : rc;
    }
    rc = ag_changes_text(&rs->ch, ev->json, ev->delta, ag_buf_str(&rs->text));
    return rc == AG_OK ? write_event(rs, ev) : rc;
}

static bool type_is(const ev_t *ev, const char *name)
{
    if (ev->type)
        return ag_jscan_str_eq(ev->json, ev->type, ag_cstr(name));
    return ag_str_eqc(ev->it->event, name);
}

/* ---- streamed tool calls ---- */

static call_t *find_call(resp_stream_t *rs, uint64_t index)
{
    for (uint32_t i = 0; i < rs->ncalls; i++)
        if (rs->calls[i].index == index)
            return &rs->calls[i];
    return NULL;
}

static void buf_free(ag_buf_t *b)
{
    size_t max = b->max;
    ag_buf_dispose(b);
    ag_buf_init(b, max);
}

/* The call at output_index index, new (an earlier one there is forgotten); NULL past MAX_CALLS. */
static call_t *new_call(resp_stream_t *rs, uint64_t index)
{
    call_t *c = find_call(rs, index);
    if (c == NULL) {
        if (rs->ncalls == MAX_CALLS)
            return NULL;
        if (rs->ncalls == rs->ccap) {
            rs->ccap = rs->ccap ? rs->ccap * 2 : 4;
            rs->calls = ag_xrealloc(rs->calls, rs->ccap * sizeof(*rs->calls));
        }
        c = &rs->calls[rs->ncalls++];
        ag_buf_init(&c->held, rs->held_max);
        ag_buf_init(&c->final, rs->sent_max);
        ag_buf_init(&c->tmpl, 1u << 16);
    }
    c->index = index;
    c->state = C_PASS;
    memset(&c->meta, 0, sizeof(c->meta));
    buf_free(&c->held);
    buf_free(&c->final);
    ag_buf_reset(&c->tmpl);
    c->tmpl_event[0] = '\0';
    c->has_tmpl = false;
    c->style = 0;
    return c;
}

static int scan_tools(resp_stream_t *rs, const ev_t *ev, size_t *n)
{
    return ag_jscan_find(ev->json, rs->tpaths, T_NPATHS, rs->tm, MAX_EVENT_MATCHES, n, NULL);
}

/* The kind of call a tool call's delta or .done event belongs to (K_NONE: another event). */
static int tool_event_kind(const ev_t *ev, bool *is_done)
{
    static const struct {
        const char *type;
        int kind;
        bool done;
    } types[] = {
        {"response.function_call_arguments.delta", K_FUNCTION, false},
        {"response.function_call_arguments.done", K_FUNCTION, true},
        {"response.custom_tool_call_input.delta", K_CUSTOM, false},
        {"response.custom_tool_call_input.done", K_CUSTOM, true},
        {"response.apply_patch_call_operation_diff.delta", K_PATCH, false},
        {"response.apply_patch_call_operation_diff.done", K_PATCH, true},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (type_is(ev, types[i].type)) {
            *is_done = types[i].done;
            return types[i].kind;
        }
    return K_NONE;
}

static void tool_call_of(const call_meta_t *cm, ag_tool_call_t *call)
{
    memset(call, 0, sizeof(*call));
    call->name = ag_cstr(cm->name);
    call->id = ag_cstr(cm->id);
    call->file = ag_cstr(cm->file);
    call->input = cm->input;
}

/* A call that passes unchanged for a reason worth a log line. */
static void skip_log(resp_stream_t *rs, const call_t *c, const char *why)
{
    if (rs->env->on_tool_skip == NULL)
        return;
    ag_tool_call_t call;
    tool_call_of(&c->meta, &call);
    rs->env->on_tool_skip(rs->env->ud, (int)(c->index & 0x7fffffff), &call, why);
}

/* ag_api_tool_rewrite reports each engine result to the proxy; on the way, the stream notes
 * whether a block rule was enforced (one in shadow mode is reported but blocks nothing). */
typedef struct tap {
    void (*on_result)(void *ud, int index, const ag_result_t *res);
    void (*on_reply)(void *ud, int index, const ag_reply_summary_t *s);
    void (*on_tool_skip)(void *ud, int index, const ag_tool_call_t *call, const char *why);
    void *ud;
    uint32_t blocked;
} tap_t;

static void tap_result(void *ud, int index, const ag_result_t *res)
{
    tap_t *t = ud;
    t->blocked += res->blocked;
    if (t->on_result)
        t->on_result(t->ud, index, res);
}

static void tap_reply(void *ud, int index, const ag_reply_summary_t *s)
{
    tap_t *t = ud;
    if (t->on_reply)
        t->on_reply(t->ud, index, s);
}

static void tap_skip(void *ud, int index, const ag_tool_call_t *call, const char *why)
{
    tap_t *t = ud;
    if (t->on_tool_skip)
        t->on_tool_skip(t->ud, index, call, why);
}

static int rewrite_call_tapped(resp_stream_t *rs, const call_t *c, ag_str_t input, ag_buf_t *out,
                               uint32_t *blocked)
{
    ag_api_env_t *env = rs->env;
    tap_t t = {env->on_result, env->on_reply, env->on_tool_skip, env->ud, 0};
    env->on_result = tap_result;
    env->on_reply = tap_reply;
    env->on_tool_skip = tap_skip;
    env->ud = &t;
    bool changed = false;
    int rc = rewrite_call(env, rs->st, &c->meta, c->index, input, out, &changed);
    env->on_result = t.on_result;
    env->on_reply = t.on_reply;
    env->on_tool_skip = t.on_tool_skip;
    env->ud = t.ud;
    *blocked = t.blocked;
    return rc;
}

/* The current event (a delta of a held call) is not sent: every later number moves down. */
static void drop_event(resp_stream_t *rs, const ev_t *ev)
{
    if (ev->has_seq)
        rs->offset--;
}

/* Keeps the current delta event, its delta emptied, as the form of the delta astgate sends for c
 * (its other fields, e.g. obfuscation, as the upstream wrote them). */
static int save_template(resp_stream_t *rs, call_t *c, const ev_t *ev)
{
    if (ev->it->event.len >= sizeof(c->tmpl_event))
        return AG_ETOOBIG;
    ag_changes_reset(&rs->tch);
    ag_buf_reset(&c->tmpl);
    int rc = ag_changes_raw(&rs->tch, ev->delta, AG_STR_LIT("\"\""));
    if (rc == AG_OK)
        rc = ag_changes_apply(&rs->tch, ev->json, &c->tmpl);
    if (rc != AG_OK)
        return rc;
    memcpy(c->tmpl_event, ev->it->event.ptr, ev->it->event.len);
    c->tmpl_event[ev->it->event.len] = '\0';
    c->has_tmpl = true;
    return AG_OK;
}

/* Sends text as one delta of call c, before the current event (nothing when no delta of c was
 * held). One delta: no escape or character is ever split. */
static int emit_call_delta(resp_stream_t *rs, const call_t *c, ag_str_t text, unsigned style)
{
    if (!c->has_tmpl || text.len == 0)
        return AG_OK;
    ag_str_t t = ag_buf_str(&c->tmpl);
    ag_jscan_match_t dm[8];
    size_t n = 0;
    int rc = ag_jscan_find(t, rs->dpaths, D_NPATHS, dm, 8, &n, NULL);
    const ag_jscan_match_t *delta = NULL, *seq = NULL;
    for (size_t i = 0; i < n && rc == AG_OK; i++) {
        if (dm[i].path == D_DELTA && delta == NULL)
            delta = &dm[i];
        if (dm[i].path == D_SEQ && seq == NULL)
            seq = &dm[i];
    }
    if (rc != AG_OK || delta == NULL)
        return AG_EINVAL; /* not what save_template kept */
    ag_buf_reset(&rs->tesc);
    rc = ag_buf_appendc(&rs->tesc, '"');
    if (rc == AG_OK)
        rc = ag_jscan_escape(&rs->tesc, text, style);
    if (rc == AG_OK)
        rc = ag_buf_appendc(&rs->tesc, '"');
    ag_changes_reset(&rs->tch);
    if (rc == AG_OK)
        rc = ag_changes_raw(&rs->tch, delta, ag_buf_str(&rs->tesc));
    uint64_t v;
    if (rc == AG_OK && seq && ag_jscan_get_u64(t, seq, &v) == AG_OK && v < UINT64_MAX / 2) {
        char num[32];
        int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)take_seq(rs));
        rc = ag_changes_raw(&rs->tch, seq, ag_str(num, (size_t)len));
    }
    ag_buf_reset(&rs->added);
    if (rc == AG_OK)
        rc = ag_changes_apply(&rs->tch, t, &rs->added);
    if (rc == AG_OK)
        rc = ag_sse_write_event(rs->out, ag_cstr(c->tmpl_event), ag_buf_str(&rs->added));
    return rc;
}

/* A held call astgate lets go of unchanged: what it held goes out, the rest as it comes. */
static int release_call(resp_stream_t *rs, call_t *c, const char *why)
{
    int rc = emit_call_delta(rs, c, ag_buf_str(&c->held), c->style);
    c->state = C_PASS;
    buf_free(&c->held);
    skip_log(rs, c, why);
    return rc;
}

/* Held call c is complete and orig is its whole input as the upstream sent it: the code in it is
 * rewritten, once; what was held goes out as one delta with the result (before the current
 * event), and final keeps it for the events that repeat the input. A block rule ends the stream
 * instead: the client never sees the call's input. */
static int complete_call(resp_stream_t *rs, call_t *c, ag_str_t orig, unsigned style)
{
    c->state = C_FINAL;
    ag_buf_reset(&c->final);
    uint32_t blocked = 0;
    int rc = AG_ENOENT;
    if (orig.len > rs->held_max)
        skip_log(rs, c, "the input is larger than limits.max_held");
    else if (orig.len > 0)
        rc = rewrite_call_tapped(rs, c, orig, &c->final, &blocked);
    if (blocked) {
        buf_free(&c->held);
        return emit_block_error(rs);
    }
    if (rc != AG_OK && ag_buf_append(&c->final, orig.ptr, orig.len) != AG_OK) {
        c->state = C_PASS; /* no room for a copy: the events that repeat it stay as they are */
        rc = emit_call_delta(rs, c, orig, style);
    } else {
        rc = emit_call_delta(rs, c, ag_buf_str(&c->final), style);
    }
    buf_free(&c->held);
    return rc;
}

/* Completes held call c with the copy of its whole input at m in json (NULL: with what it held). */
static int complete_from(resp_stream_t *rs, call_t *c, ag_str_t json, const ag_jscan_match_t *m)
{
    if (m) {
        ag_buf_reset(&rs->tplain);
        if (ag_jscan_decode(json, m->off, m->len, &rs->tplain, NULL, 0, NULL) == AG_OK)
            return complete_call(rs, c, ag_buf_str(&rs->tplain),
                                 c->style ? c->style : ag_jscan_str_style(json, m->off, m->len));
    }
    return complete_call(rs, c, ag_buf_str(&c->held), c->style);
}

/* The response ends (or its stream does): every call still held is complete with what it has. */
static int finish_calls(resp_stream_t *rs)
{
    int rc = AG_OK;
    for (uint32_t i = 0; i < rs->ncalls && rc == AG_OK && !rs->ended; i++)
        if (rs->calls[i].state == C_HOLD)
            rc = complete_call(rs, &rs->calls[i], ag_buf_str(&rs->calls[i].held),
                               rs->calls[i].style);
    return rc;
}

/* response.output_item.added: a tool call starts; astgate holds its deltas when it knows the
 * tool. */
static int on_item_added(resp_stream_t *rs, ev_t *ev)
{
    size_t tn = 0;
    if (rs->env->tools == NULL || !ev->has_out || scan_tools(rs, ev, &tn) != AG_OK)
        return write_event(rs, ev);
    int rc = AG_OK;
    call_t *c = find_call(rs, ev->out_idx);
    if (c && c->state == C_HOLD) /* a new item at the same index: the old one ended */
        rc = complete_call(rs, c, ag_buf_str(&c->held), c->style);
    if (rc != AG_OK || rs->ended)
        return rc;
    tool_item_t ti;
    memset(&ti, 0, sizeof(ti));
    for (size_t i = 0; i < tn; i++)
        if (rs->tm[i].path == T_ITEM || rs->tm[i].path == T_ITEM_OP)
            item_take(&ti, ev->json, &rs->tm[i], rs->tm[i].path == T_ITEM_OP);
    int kind = item_kind(ev->json, &ti);
    c = kind != K_NONE ? new_call(rs, ev->out_idx) : NULL;
    if (c == NULL)
        return write_event(rs, ev);
    meta_fill(&c->meta, kind, ev->json, &ti, &rs->tsmall);
    c->state = meta_known(rs->env, &c->meta) ? C_HOLD : C_PASS;
    /* an item that comes with its input already (an apply_patch_call's operation, as some
     * servers send it) is complete here */
    const ag_jscan_match_t *text = item_text(&ti, kind);
    if (c->state == C_HOLD && text && text->len > 2) {
        rc = complete_from(rs, c, ev->json, text);
        if (rc == AG_OK && !rs->ended && c->state == C_FINAL)
            rc = ag_changes_text(&rs->ch, ev->json, text, ag_buf_str(&c->final));
        if (rc != AG_OK || rs->ended)
            return rc;
    }
    return write_event(rs, ev);
}

/* A delta of a call's input: held when astgate holds the call, else sent on. */
static int on_tool_delta(resp_stream_t *rs, ev_t *ev, int kind)
{
    call_t *c = ev->has_out ? find_call(rs, ev->out_idx) : NULL;
    if (c == NULL || c->state != C_HOLD || c->meta.kind != kind || ev->delta == NULL)
        return write_event(rs, ev);
    ag_buf_reset(&rs->tplain);
    int rc = ag_jscan_decode(ev->json, ev->delta->off, ev->delta->len, &rs->tplain, NULL, 0, NULL);
    if (rc == AG_OK && !c->has_tmpl)
        rc = save_template(rs, c, ev);
    if (rc == AG_OK)
        rc = ag_buf_append(&c->held, rs->tplain.ptr, rs->tplain.len);
    if (rc != AG_OK) {
        rc = release_call(rs, c, "the input is larger than limits.max_held");
        return rc == AG_OK ? write_event(rs, ev) : rc;
    }
    if (c->style == 0)
        c->style = ag_jscan_str_style(ev->json, ev->delta->off, ev->delta->len);
    drop_event(rs, ev);
    return AG_OK;
}

/* A call's .done event: a held call is complete; its full input becomes what the client got. */
static int on_tool_done(resp_stream_t *rs, ev_t *ev, int kind)
{
    call_t *c = ev->has_out ? find_call(rs, ev->out_idx) : NULL;
    if (c == NULL || c->state == C_PASS || c->meta.kind != kind)
        return write_event(rs, ev);
    int want = kind == K_FUNCTION ? T_ARGS : kind == K_CUSTOM ? T_INPUT : T_DIFF;
    const ag_jscan_match_t *full = NULL;
    size_t tn = 0;
    if (scan_tools(rs, ev, &tn) == AG_OK)
        for (size_t i = 0; i < tn && full == NULL; i++)
            if (rs->tm[i].path == want)
                full = &rs->tm[i];
    int rc = AG_OK;
    if (c->state == C_HOLD)
        rc = complete_from(rs, c, ev->json, full);
    if (rc != AG_OK || rs->ended)
        return rc;
    if (c->state == C_FINAL && full)
        rc = ag_changes_text(&rs->ch, ev->json, full, ag_buf_str(&c->final));
    return rc == AG_OK ? write_event(rs, ev) : rc;
}

/* A full copy of a tool item (output_item.done's item, response.completed's output[k]): a call
 * still held completes with it (a call never streamed is rewritten from it), and the token of
 * its input gets what the client was sent. */
static int on_tool_copy(resp_stream_t *rs, const ev_t *ev, const tool_item_t *ti)
{
    int kind = item_kind(ev->json, ti);
    if (kind == K_NONE)
        return AG_OK;
    int rc = AG_OK;
    call_t *c = find_call(rs, ti->index);
    if (c == NULL || c->meta.kind != kind) {
        if (c && c->state == C_HOLD)
            rc = complete_call(rs, c, ag_buf_str(&c->held), c->style);
        if (rc != AG_OK || rs->ended)
            return rc;
        c = new_call(rs, ti->index);
        if (c == NULL)
            return AG_OK;
        meta_fill(&c->meta, kind, ev->json, ti, &rs->tsmall);
        c->state = meta_known(rs->env, &c->meta) ? C_HOLD : C_PASS;
    } else if (c->state == C_HOLD && kind == K_PATCH && c->meta.input == IN_UNKNOWN) {
        meta_operation(&c->meta, ev->json, ti, &rs->tsmall); /* the operation, known at last */
    }
    const ag_jscan_match_t *text = item_text(ti, kind);
    if (c->state == C_HOLD)
        rc = complete_from(rs, c, ev->json, text);
    if (rc != AG_OK || rs->ended)
        return rc;
    if (c->state == C_FINAL && text)
        rc = ag_changes_text(&rs->ch, ev->json, text, ag_buf_str(&c->final));
    return rc;
}

/* response.output_item.done of a tool call. */
static int item_done_tools(resp_stream_t *rs, const ev_t *ev)
{
    size_t tn = 0;
    if (rs->env->tools == NULL || !ev->has_out || scan_tools(rs, ev, &tn) != AG_OK)
        return AG_OK;
    tool_item_t ti;
    memset(&ti, 0, sizeof(ti));
    ti.index = ev->out_idx;
    for (size_t i = 0; i < tn; i++)
        if (rs->tm[i].path == T_ITEM || rs->tm[i].path == T_ITEM_OP)
            item_take(&ti, ev->json, &rs->tm[i], rs->tm[i].path == T_ITEM_OP);
    return on_tool_copy(rs, ev, &ti);
}

/* response.completed / incomplete / failed: the tool items of response.output, then every call
 * still held. */
static int final_tools(resp_stream_t *rs, const ev_t *ev)
{
    size_t tn = 0;
    int rc = AG_OK;
    if (rs->env->tools && scan_tools(rs, ev, &tn) == AG_OK) {
        tool_item_t ti;
        memset(&ti, 0, sizeof(ti));
        bool in_item = false;
        for (size_t i = 0; i < tn && rc == AG_OK && !rs->ended; i++) {
            const ag_jscan_match_t *m = &rs->tm[i];
            if (m->path != T_RESP && m->path != T_RESP_OP)
                continue;
            /* the members of output[k] come together, in document order */
            if (in_item && ti.index != m->idx[0]) {
                rc = on_tool_copy(rs, ev, &ti);
                memset(&ti, 0, sizeof(ti));
            }
            in_item = true;
            ti.index = m->idx[0];
            item_take(&ti, ev->json, m, m->path == T_RESP_OP);
        }
        if (rc == AG_OK && in_item && !rs->ended)
            rc = on_tool_copy(rs, ev, &ti);
    }
    if (rc == AG_OK && !rs->ended)
        rc = finish_calls(rs);
    return rc;
}

/* response.completed / incomplete / failed: every part and call finishes, and the response's
 * output holds the texts and inputs the client was sent (its output_text too, when a server adds
 * one). */
static int on_final_response(resp_stream_t *rs, ev_t *ev)
{
    int rc = finish_parts(rs, UINT64_MAX);
    if (rc == AG_OK && !rs->ended)
        rc = final_tools(rs, ev);
    const ag_jscan_match_t *ot = NULL;
    ag_buf_t old_all, new_all;
    ag_buf_init(&old_all, 256u << 20);
    ag_buf_init(&new_all, 256u << 20);
    bool ok_all = true;
    for (size_t i = 0; i < ev->n && rc == AG_OK && !rs->ended; i++) {
        const ag_jscan_match_t *m = &rs->m[i];
        if (m->path == P_RESP_OT)
            ot = m;
        if (m->path != P_RESP)
            continue;
        ag_buf_reset(&rs->plain);
        if (ag_jscan_decode(ev->json, m->off, m->len, &rs->plain, NULL, 0, NULL) != AG_OK ||
            ag_buf_append(&old_all, rs->plain.ptr, rs->plain.len) != AG_OK)
            ok_all = false;
        if (m->idx[0] > MAX_INDEX || m->idx[1] > MAX_INDEX) {
            ok_all = false;
            continue;
        }
        const ag_buf_t *t = final_text(rs, part_key(m->idx[0], m->idx[1]), ev->json, m, &rc);
        if (rc != AG_OK || rs->ended)
            break;
        if (t == NULL || ag_buf_append(&new_all, t->ptr, t->len) != AG_OK) {
            ok_all = false;
            continue;
        }
        rc = ag_changes_text(&rs->ch, ev->json, m, ag_buf_str(t));
    }
    if (rc == AG_OK && !rs->ended && ot && ok_all) {
        ag_buf_reset(&rs->plain);
        if (ag_jscan_decode(ev->json, ot->off, ot->len, &rs->plain, NULL, 0, NULL) == AG_OK &&
            ag_str_eq(ag_buf_str(&rs->plain), ag_buf_str(&old_all)))
            rc = ag_changes_text(&rs->ch, ev->json, ot, ag_buf_str(&new_all));
    }
    ag_buf_dispose(&old_all);
    ag_buf_dispose(&new_all);
    if (rc != AG_OK || rs->ended)
        return rc;
    return write_event(rs, ev);
}

static void keep_model(resp_stream_t *rs, ag_str_t json, const ag_jscan_match_t *m)
{
    if (rs->env->model.len || m->len < 2 || m->len - 2 >= sizeof(rs->model))
        return;
    memcpy(rs->model, json.ptr + m->off + 1, m->len - 2);
    rs->model[m->len - 2] = '\0';
    rs->env->model = ag_str(rs->model, m->len - 2);
}

static int on_event(resp_stream_t *rs, const ag_sse_item_t *it)
{
    if (ag_str_eqc(it->data, "[DONE]")) {
        int rc = finish_parts(rs, UINT64_MAX);
        if (rc == AG_OK && !rs->ended)
            rc = finish_calls(rs);
        if (rc == AG_OK && !rs->ended)
            rc = pass_raw(rs, it);
        rs->done = true;
        return rc;
    }
    ag_buf_reset(&rs->data);
    if (ag_buf_append(&rs->data, it->data.ptr, it->data.len) != AG_OK)
        return pass_raw(rs, it);
    ev_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.it = it;
    ev.json = ag_buf_str(&rs->data);
    if (ag_jscan_find(ev.json, rs->paths, P_NPATHS, rs->m, MAX_EVENT_MATCHES, &ev.n, NULL) != AG_OK)
        return pass_raw(rs, it); /* not JSON we know: as it came */
    for (size_t i = 0; i < ev.n; i++) {
        const ag_jscan_match_t *m = &rs->m[i];
        switch (m->path) {
        case P_TYPE:
            ev.type = ev.type ? ev.type : m;
            break;
        case P_SEQ:
            if (!ev.has_seq && ag_jscan_get_u64(ev.json, m, &ev.seq) == AG_OK &&
                ev.seq < UINT64_MAX / 2) {
                ev.has_seq = true;
                ev.seqm = m;
            }
            break;
        case P_OUT:
            ev.has_out = ev.has_out || ag_jscan_get_u64(ev.json, m, &ev.out_idx) == AG_OK;
            break;
        case P_CONT:
            ev.has_cont = ev.has_cont || ag_jscan_get_u64(ev.json, m, &ev.cont_idx) == AG_OK;
            break;
        case P_ITEM_ID:
            ev.item_id = ev.item_id ? ev.item_id : m;
            break;
        case P_DELTA:
            ev.delta = ev.delta ? ev.delta : m;
            break;
        case P_TEXT:
            ev.text = ev.text ? ev.text : m;
            break;
        case P_PART:
            ev.part = ev.part ? ev.part : m;
            break;
        case P_MODEL:
            keep_model(rs, ev.json, m);
            break;
        default:
            break;
        }
    }
    if (ev.has_seq)
        rs->next_seq = seq_out(rs, ev.seq);
    ag_changes_reset(&rs->ch);
    int rc = AG_OK;
    if (type_is(&ev, "response.output_text.delta"))
        return on_delta(rs, &ev);
    bool is_done = false;
    int kind = tool_event_kind(&ev, &is_done);
    if (kind != K_NONE)
        return is_done ? on_tool_done(rs, &ev, kind) : on_tool_delta(rs, &ev, kind);
    if (type_is(&ev, "response.output_item.added"))
        return on_item_added(rs, &ev);
    if (type_is(&ev, "response.output_text.done") || type_is(&ev, "response.content_part.done")) {
        const ag_jscan_match_t *m = type_is(&ev, "response.output_text.done") ? ev.text : ev.part;
        if (ev.has_out && ev.has_cont && m)
            rc = fix_full_text(rs, &ev, ev.out_idx, ev.cont_idx, m);
        else if (ev.has_out && ev.has_cont && ev.out_idx <= MAX_INDEX && ev.cont_idx <= MAX_INDEX) {
            part_t *p = find_part(rs, part_key(ev.out_idx, ev.cont_idx));
            rc = p ? finish_part(rs, p) : AG_OK;
        }
    } else if (type_is(&ev, "response.output_item.done")) {
        if (ev.has_out)
            rc = finish_parts(rs, ev.out_idx);
        for (size_t i = 0; i < ev.n && rc == AG_OK && !rs->ended && ev.has_out; i++)
            if (rs->m[i].path == P_ITEM)
                rc = fix_full_text(rs, &ev, ev.out_idx, rs->m[i].idx[0], &rs->m[i]);
        if (rc == AG_OK && !rs->ended)
            rc = item_done_tools(rs, &ev);
    } else if (type_is(&ev, "response.completed") || type_is(&ev, "response.incomplete") ||
               type_is(&ev, "response.failed")) {
        return on_final_response(rs, &ev);
    } else if (type_is(&ev, "error")) {
        rc = finish_parts(rs, UINT64_MAX); /* the client gets what came before the error */
        if (rc == AG_OK && !rs->ended)
            rc = finish_calls(rs);
    }
    if (rc != AG_OK || rs->ended)
        return rc;
    return write_event(rs, &ev);
}

static int on_item(void *ud, const ag_sse_item_t *it)
{
    resp_stream_t *rs = ud;
    if (rs->ended)
        return AG_OK;
    if (it->kind != AG_SSE_EVENT || rs->done)
        return pass_raw(rs, it);
    return on_event(rs, it);
}

static int stream_feed(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended)
{
    resp_stream_t *rs = state;
    rs->out = out;
    int rc = ag_sse_feed(&rs->sse, bytes, on_item, rs);
    *ended = rs->ended;
    return rc;
}

static int stream_end(void *state, ag_buf_t *out)
{
    resp_stream_t *rs = state;
    rs->out = out;
    int rc = ag_sse_finish(&rs->sse, on_item, rs);
    if (rc == AG_OK && !rs->ended && !rs->done)
        rc = finish_parts(rs, UINT64_MAX);
    if (rc == AG_OK && !rs->ended && !rs->done)
        rc = finish_calls(rs);
    return rc;
}

const ag_api_t ag_api_openai_responses = {
    "responses", "/v1/responses", rewrite_body, stream_new, stream_feed, stream_end, stream_free,
};

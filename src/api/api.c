/* Helpers shared by the API adapters. */
#include "api.h"

void ag_api_stats_rule(ag_api_stats_t *st, const char *id)
{
    for (uint32_t i = 0; i < st->nrule_ids; i++)
        if (strcmp(st->rule_ids[i], id) == 0)
            return;
    if (st->nrule_ids < AG_API_MAX_RULE_IDS)
        st->rule_ids[st->nrule_ids++] = id;
}

void ag_api_stats_add(ag_api_stats_t *st, const ag_result_t *res)
{
    st->rewrites += res->rewrites;
    st->flags += res->flags;
    st->dropped += res->dropped;
    if (res->blocks)
        st->had_code = true;
    for (uint32_t i = 0; i < res->nevents; i++) {
        const ag_event_t *ev = &res->events[i];
        if (ev->action == AG_ACTION_REWRITE && ev->applied)
            ag_api_stats_rule(st, ev->rule);
        if (ev->action == AG_ACTION_BLOCK && !ev->shadow && st->blocked_rule == NULL) {
            st->blocked_rule = ev->rule;
            st->blocked_message = ev->message;
        }
    }
}

void ag_reply_summary_add(ag_reply_summary_t *s, const ag_result_t *res)
{
    s->had_code |= res->blocks > 0;
    s->rewrites += res->rewrites;
    s->flags += res->flags;
    s->dropped += res->dropped;
    s->blocked += res->blocked;
    s->shadowed += res->shadowed;
    s->unjudged += res->unjudged;
    s->parse_ns += res->parse_ns;
}

void ag_api_report(ag_api_env_t *env, uint64_t key, const ag_result_t *res, ag_reply_summary_t *sum)
{
    ag_reply_summary_add(sum, res);
    if (env->on_result && (res->nevents || res->held_max))
        env->on_result(env->ud, (int)(key & 0x7fffffff), res);
}

void ag_api_report_wait(ag_api_env_t *env, uint64_t wait_ns)
{
    if (env->on_held_wait)
        env->on_held_wait(env->ud, wait_ns);
}

void ag_api_report_hold(ag_api_env_t *env, const ag_stream_t *core)
{
    if (env->on_hold == NULL || core == NULL)
        return;
    ag_stream_hold_stats_t st;
    ag_stream_hold_stats(core, &st);
    env->on_hold(env->ud, &st);
}

typedef struct tool_report {
    ag_api_env_t *env;
    ag_api_stats_t *st;
    int index;
    ag_reply_summary_t sum;
} tool_report_t;

static void on_tool_result(void *ud, const ag_tool_site_t *site, const ag_result_t *res)
{
    tool_report_t *t = ud;
    ag_reply_summary_add(&t->sum, res);
    ag_api_stats_add(t->st, res);
    if (t->env->on_result && res->nevents) {
        t->env->tool = site;
        t->env->on_result(t->env->ud, t->index, res);
        t->env->tool = NULL;
    }
}

int ag_api_tool_rewrite(ag_api_env_t *env, ag_api_stats_t *st, int index,
                        const ag_tool_call_t *call, ag_str_t input, ag_buf_t *out, bool *changed)
{
    *changed = false;
    if (env->tools == NULL)
        return AG_ENOENT;
    tool_report_t t;
    memset(&t, 0, sizeof(t));
    t.env = env;
    t.st = st;
    t.index = index;
    int rc =
        ag_toolcode_rewrite(env->engine, env->tools, call, input, out, changed, on_tool_result, &t);
    if (rc == AG_EINVAL && env->on_tool_skip)
        env->on_tool_skip(env->ud, index, call, "the arguments are not valid JSON");
    if (t.sum.had_code && env->on_reply)
        env->on_reply(env->ud, index, &t.sum);
    return rc;
}

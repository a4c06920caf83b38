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
        if (ev->action == AG_ACTION_BLOCK && st->blocked_rule == NULL) {
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
    if (env->on_result && res->nevents)
        env->on_result(env->ud, (int)(key & 0x7fffffff), res);
}

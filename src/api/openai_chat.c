/* OpenAI Chat Completions: choices[].message.content (not streamed) and choices[].delta.content
 * (streamed, one key per choice index). */
#include "api.h"

static int rewrite_body(ag_api_env_t *env, ag_str_t body, ag_buf_t *out, ag_api_stats_t *st)
{
    (void)env;
    (void)st;
    return ag_buf_append(out, body.ptr, body.len) == AG_OK ? AG_EINVAL : AG_EINVAL;
}

static void *stream_new(ag_api_env_t *env, ag_api_stats_t *st)
{
    (void)env;
    (void)st;
    return ag_xcalloc(1, 1);
}

static int stream_feed(void *state, ag_str_t bytes, ag_buf_t *out, bool *ended)
{
    (void)state;
    (void)ended;
    return ag_buf_append(out, bytes.ptr, bytes.len);
}

static int stream_end(void *state, ag_buf_t *out)
{
    (void)state;
    (void)out;
    return AG_OK;
}

static void stream_free(void *state)
{
    free(state);
}

const ag_api_t ag_api_openai_chat = {
    "chat.completions", "/v1/chat/completions", rewrite_body, stream_new, stream_feed,
    stream_end, stream_free,
};

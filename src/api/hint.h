/* Request-side hints: puts a text (the loaded rules' hints) into a request body as the API's
 * system instruction, splicing it into the original bytes so that nothing else changes. */
#ifndef AG_HINT_H
#define AG_HINT_H

#include "util.h"

/* The request shapes astgate knows. */
typedef enum ag_hint_api {
    AG_HINT_CHAT,      /* OpenAI Chat Completions: messages[] */
    AG_HINT_RESPONSES, /* OpenAI Responses: instructions */
    AG_HINT_ANTHROPIC, /* Anthropic Messages: system */
} ag_hint_api_t;

/* Where the hint went (for logs and tests). */
typedef enum ag_hint_slot {
    AG_HINT_SLOT_NONE,         /* not added */
    AG_HINT_SLOT_APPEND_STR,   /* appended to an existing string after "\n\n" */
    AG_HINT_SLOT_APPEND_PART,  /* a text part / block appended to an existing array */
    AG_HINT_SLOT_NEW_MESSAGE,  /* Chat: a new first message {"role":"system"} */
    AG_HINT_SLOT_NEW_KEY,      /* Responses/Anthropic: a new first key of the body */
    AG_HINT_SLOT_REPLACE_NULL, /* Responses/Anthropic: `instructions`/`system` was null */
} ag_hint_slot_t;

/* Name of a slot for logs: "none", "append", "part", "message", "key", "null". */
const char *ag_hint_slot_name(ag_hint_slot_t s);

/*
 * Appends body to out with hint added as api's system instruction:
 *   Chat:      the first message whose role is "system" or "developer": string content gets
 *              "\n\n" + hint appended, array content a {"type":"text","text":hint} part at its
 *              end; without such a message, {"role":"system","content":hint} becomes the first
 *              element of `messages`;
 *   Responses: `instructions`: a string gets "\n\n" + hint, null becomes hint, absent: a new
 *              first member "instructions":hint;
 *   Anthropic: `system`: a string gets "\n\n" + hint, an array of blocks a new
 *              {"type":"text","text":hint} block at its end, null becomes hint, absent: a new
 *              first member "system":hint.
 * Every other byte of body is copied as it is (one insertion, or the null replaced); the hint is
 * JSON-escaped (in the style of the string it joins, see ag_jscan_str_style). Appending keeps
 * the caller's prompt-cache prefix intact.
 * Returns AG_OK (*slot, when not NULL, says where), AG_ENOENT when there is no slot that can take
 * it: body is not valid JSON, not an object of api's shape (Chat/Anthropic: a `messages` array;
 * Responses: `input` or `model`), a top-level key that matters given twice, the slot holds
 * another type (a system message's content null, a number), more than 256 system messages;
 * AG_ETOOBIG past out->max. On any error out is left as it was. Thread-safe; allocates nothing
 * but out's growth.
 */
AG_MUSTCHECK int ag_hint_apply(ag_hint_api_t api, ag_str_t body, ag_str_t hint, ag_buf_t *out,
                               ag_hint_slot_t *slot);

/* ag_hint_apply in two steps, for a caller that decides after finding the slot whether to add
 * the hint at all (the proxy's {ab: P} draw counts only requests with a slot): locate scans the
 * body once (AG_OK or AG_ENOENT as above; *at says where, at->slot which kind), emit copies body
 * into out with the hint there (AG_OK, AG_ETOOBIG; out as it was on error). */
typedef struct ag_hint_place {
    size_t at;        /* offset in the body */
    size_t cut;       /* body bytes replaced from `at` (a null) */
    const char *pre;  /* before the escaped separator and hint */
    const char *sep;  /* escaped like the hint, before it */
    unsigned style;   /* the escaping style of the string the hint joins */
    const char *post; /* after the hint */
    ag_hint_slot_t slot;
} ag_hint_place_t;

AG_MUSTCHECK int ag_hint_locate(ag_hint_api_t api, ag_str_t body, ag_hint_place_t *at);
AG_MUSTCHECK int ag_hint_emit(ag_str_t body, ag_str_t hint, const ag_hint_place_t *at,
                              ag_buf_t *out);

#endif

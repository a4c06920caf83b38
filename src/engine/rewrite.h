/* The rewrite engine: finds the code blocks of a reply, parses those that can concern a rule,
 * matches, builds minimal edits, resolves overlaps, checks the result still parses, and splices.
 * An ag_engine_t is per thread (parsers, matcher and scratch are reused); the rules it runs are
 * shared and read-only. */
#ifndef AG_REWRITE_H
#define AG_REWRITE_H

#include "rules.h"

typedef struct ag_engine ag_engine_t;

typedef enum ag_action {
    AG_ACTION_REWRITE,
    AG_ACTION_FLAG,
    AG_ACTION_BLOCK,
} ag_action_t;

/* One thing the engine did or would do; borrowed views valid until the next call. */
typedef struct ag_event {
    const char *rule;    /* rule id */
    uint32_t rule_index; /* position of the rule in the rule set (ag_rules_rule_id) */
    ag_action_t action;
    bool applied;           /* rewrite: the edit is in the output; false when dropped or shadowed */
    bool shadow;            /* the rule runs in shadow mode: reported, not applied (nor blocked) */
    const char *reason;     /* when not applied: why, as a sentence for people */
    const char *other_rule; /* dropped for an overlap: the id of the rule whose edit was kept */
    uint32_t block;         /* 0-based index of the code block in the reply */
    uint32_t line, col;     /* 1-based position in the reply of the edit (or the match) */
    uint32_t offset;        /* byte offset of the same place; an applied edit replaced
                               reply[offset, offset + before.len) with after */
    ag_str_t before;        /* text replaced (empty for an insertion) */
    uint32_t match_offset;  /* byte offset of the matched node, as offset; differs from offset
                               only when a fix's expandStart/expandEnd widened the edit */
    uint32_t match_len;     /* bytes of the matched node (before.len unless widened) */
    ag_str_t after;         /* text put in its place (empty for flag/block) */
    const char *message;    /* the rule's message, may be "" */
    bool redact;            /* the rule says before/after may hold a secret: logs leave them
                               out (metadata.astgate.redact) */
    const char *params;     /* the rule's parameters set by the configuration, as a JSON object
                               ({"model":"gpt-4.1-mini"}); NULL = none (all at their defaults) */
} ag_event_t;

typedef struct ag_engine_opts {
    uint64_t parse_timeout_us;  /* per block parse budget; 0 = none */
    uint32_t regex_match_limit; /* PCRE2 match limit; 0 = default */
    size_t max_reply;           /* bytes of output; 0 = 16 MiB */
    bool bare;                  /* treat a reply without fences that parses as TS as one block */
    bool shadow;                /* every rule in shadow mode: log, change and block nothing */
} ag_engine_opts_t;

typedef struct ag_result {
    uint32_t blocks;   /* code blocks considered */
    uint32_t parsed;   /* blocks actually parsed (the others lacked every rule literal) */
    uint32_t rewrites; /* edits applied */
    uint32_t flags;    /* flagged violations */
    uint32_t dropped;  /* edits dropped (overlap, parse check) */
    uint32_t blocked;  /* block-action matches (enforced); the caller decides what to do */
    uint32_t shadowed; /* rewrites and blocks a shadow-mode rule would have made */
    uint32_t unjudged; /* fenced blocks a rule looks at that are too broken to judge: no parse
                          at all, or more than half of the code inside ERROR nodes */
    const ag_event_t *events; /* borrowed, valid until the next ag_engine_rewrite */
    uint32_t nevents;
    uint64_t parse_ns, match_ns, splice_ns; /* time spent, for benchmarks */
    uint32_t held_max;   /* streamed: bytes held back at once at most while this block was open
                            (set by the streaming core; 0 otherwise) */
    uint32_t held_block; /* ... and that block's index in the reply */
} ag_result_t;

/* rules is borrowed and must outlive the engine. opts may be NULL for defaults. */
ag_engine_t *ag_engine_new(const ag_rules_t *rules, const ag_engine_opts_t *opts);
void ag_engine_free(ag_engine_t *e);

/* Added to the block index, line and offset of every event from now on: a streaming caller
 * rewrites one block at a time (starting at a line start) and numbers events in the whole reply. */
void ag_engine_set_origin(ag_engine_t *e, uint32_t block_base, uint32_t line_base,
                          uint32_t offset_base);

/* Whether a reply without fences starts like code (import, export, const, //, ...), the condition
 * for trying it as one bare block. *undecided (may be NULL) is set when text is too short to tell
 * (blank, or a prefix of a code start). */
bool ag_engine_bare_start(ag_str_t text, bool *undecided);

struct ag_block;
/* The grammar (ag_lang_t) a fenced block is parsed with, or -1 when no rule applies to its
 * language. */
int ag_engine_block_lang(const ag_engine_t *e, const struct ag_block *blk);
/* Whether the engine tries replies without fences as code (opts.bare). */
bool ag_engine_bare(const ag_engine_t *e);

/* Rewrites one reply (markdown or bare code) into out (appended; the whole reply, changed or
 * not). Returns AG_OK, or AG_ETOOBIG when out's limit is reached (out is then unusable and the
 * caller passes the reply through). Never fails because of what the reply contains. */
AG_MUSTCHECK int ag_engine_rewrite(ag_engine_t *e, ag_str_t reply, ag_buf_t *out, ag_result_t *res);

/* Rewrites one piece of code without fences (the code of a tool call) into out (appended; all of
 * code, changed or not), as if it were the one block of a fence labelled label ("ts", "tsx",
 * "mjs", ...: the grammar is chosen as for a fence, and only rules whose fence languages include
 * label run). Events are in block 0, with line, column and offset into code (plus the origin, as
 * for ag_engine_rewrite). res->blocks is 1 when some rule looked at the code, else 0.
 * fragment: the code is a piece of a file (an edit's new text). It is rewritten only when it
 * parses on its own as a sound tree: no ERROR or MISSING node, and no unclosed string, comment or
 * bracket. Otherwise nothing changes and each edit a rule would have made is a flag event with
 * reason "fragment" (flags and blocks that rules report stay as they are). In a sound fragment,
 * what depends on the rest of the file is not guessed either: a value whose pinned code needs an
 * import the fragment lacks is a flag (reason "fragment"), and a const at the fragment's top
 * level is not edited where it is defined (other code may use it) but pinned where it is used.
 * label "md", "mdx" or "markdown": code is a Markdown document, rewritten like a reply (its fenced
 * blocks, never as bare code); with fragment, a block the piece cuts off is a fragment.
 * Returns AG_OK or AG_ETOOBIG as ag_engine_rewrite does. */
AG_MUSTCHECK int ag_engine_rewrite_code(ag_engine_t *e, ag_str_t code, ag_str_t label,
                                        bool fragment, ag_buf_t *out, ag_result_t *res);

#endif

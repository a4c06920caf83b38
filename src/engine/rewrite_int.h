/* Private state of the rewrite engine, shared by rewrite.c and ensure.c. */
#ifndef AG_REWRITE_INT_H
#define AG_REWRITE_INT_H

#include "fence.h"
#include "flat.h"
#include "match.h"
#include "rewrite.h"
#include "rules_int.h"

typedef struct ag_edit {
    uint32_t start, end;             /* bytes in the block's code (e->code) */
    uint32_t match_start, match_end; /* the matched node: start/end unless expandStart/expandEnd
                                        widened the edit */
    uint32_t code_off;               /* where the block's code starts in the reply */
    uint32_t orig_len;               /* bytes of the block's code in the reply */
    uint32_t block;
    uint32_t rule;
    uint32_t text_off, text_len; /* replacement, in e->text */
    uint32_t guard_end;          /* bytes up to here must be in the reply (not a completion) */
    uint32_t seq;                /* creation order, for a stable sort */
    bool keep;
    bool safe;          /* cannot break the parse: a literal replaced by a literal */
    bool dup;           /* the same edit made twice (two matches reached the same code) */
    bool fragment;      /* in a fragment that does not parse on its own: reported as a flag */
    const char *reason; /* why it was dropped */
    int32_t winner;     /* dropped for an overlap: the rule whose edit was kept */
} ag_edit_t;

/* A match of an ensure rule, kept until the block's matching is done: ensure runs once every
 * match is known (ensure.c decides which consts only agents use). */
typedef struct ag_ens_match {
    uint32_t rule;
    uint32_t node;
    ag_env_t env;
} ag_ens_match_t;

struct ev_off {
    uint32_t before, before_len, after, after_len; /* into e->evtext */
};

struct ag_engine {
    const struct ag_rules *rules;
    ag_engine_opts_t opts;
    TSParser *parser[AG_LANG_COUNT];
    ag_matcher_t m;
    ag_flat_t flat;
    ag_fence_langs_t default_langs;
    ag_fence_langs_t *rule_fences; /* per rule */
    bool *active;                  /* per rule, for the block being processed */
    ag_block_t *blocks;
    /* the reply and block being processed */
    ag_str_t reply;
    uint32_t cur_block;
    bool cur_cut;         /* the block is the end of a reply that stops inside it */
    bool cur_frag;        /* the block is a fragment of a file (ag_engine_rewrite_code): the
                             file's imports and other uses of its top-level names are unseen */
    uint32_t block_base;  /* added to block indices in events */
    uint32_t line_base;   /* added to line numbers in events */
    uint32_t offset_base; /* added to offsets in events */
    uint32_t code_off;    /* block code start in the reply */
    uint32_t orig_len;    /* bytes of the block's code that are in the reply */
    uint32_t code_len;    /* bytes parsed: orig_len plus any completion of a cut-off block */
    ag_buf_t code;        /* the block's code (+ completion) */
    ag_buf_t text;        /* edit replacements and transform outputs */
    ag_buf_t evtext;      /* event texts */
    ag_buf_t scratch;     /* reparse checks */
    ag_edit_t *edits;
    uint32_t nedits, edits_cap;
    ag_event_t *events;
    struct ev_off *ev_off;
    uint32_t nevents, events_cap;
    ag_result_t res;
    struct kinds *kinds; /* per grammar: kind and field ids ensure.c needs */
    ag_ens_match_t *ens; /* the block's ensure matches */
    uint32_t nens, ens_cap;
    uint8_t *uses; /* per flat node: bits ensure.c keeps while it follows values */
    uint32_t uses_cap;
    struct ag_engine *verifier; /* checks rewrites of code with parse errors; made on first use */
};

/* Records an edit of e->code[start, end) to text by rule. guard_end: the edit is dropped when the
 * code up to there is not all in the reply (a cut-off reply completed for parsing). */
AG_MUSTCHECK int ag_engine_edit(ag_engine_t *e, uint32_t rule, uint32_t start, uint32_t end,
                                ag_str_t text, uint32_t guard_end);
/* Marks the last edit recorded as one that cannot change the parse (a complete string literal
 * replaced by a string literal escaped for its quote): the parse check skips it. */
void ag_engine_edit_is_safe(ag_engine_t *e);
/* Records a flag event at node. */
void ag_engine_flag(ag_engine_t *e, uint32_t rule, uint32_t node, const char *reason);
/* Indentation bytes of the line holding off in e->code, and its line ending. */
void ag_engine_line_info(const ag_engine_t *e, uint32_t off, ag_str_t *indent, ag_str_t *eol);
uint32_t ag_engine_count_errors(TSNode root);

/* For the streaming hold (hold.c). */
/* What one probe leaves for the next on the same block, whose code only grows at the end. */
struct ag_hold_memo {
    TSTree *tree;   /* owned: the last parse (code + completion); NULL = none */
    uint32_t len;   /* bytes of code it parsed */
    uint32_t total; /* ... and with the completion */
    TSPoint end;    /* the point at total */
};
/* Parses code as the start of a cut-off block (completed for the parse, as a reply cut by
 * max_tokens is) into e->code and e->flat, incrementally from memo's tree when memo holds the
 * parse of a prefix of code; runs the rules active[] over it and sets *edit_at to the smallest
 * offset an edit would start at, kept or dropped, or code.len when none would; nothing is
 * reported. Returns the tree (owned by memo, valid until the next probe with it or its
 * disposal), or NULL when the parse ran out of time (memo is then empty and e->flat stale). */
TSTree *ag_engine_probe(ag_engine_t *e, ag_str_t code, ag_lang_t lang, const bool *active,
                        struct ag_hold_memo *memo, uint32_t *edit_at);
/* Frees memo's tree and empties it. */
void ag_engine_probe_memo_dispose(struct ag_hold_memo *memo);
/* The grammar for blk (-1: no rule looks at it), and which rules do (active[rule]). */
int ag_engine_block_rules(const ag_engine_t *e, const ag_block_t *blk, bool *active);

/* Kind and field ids for every grammar (an array of AG_LANG_COUNT); free with free(). */
struct kinds *ag_ensure_kinds_new(void);
/* Runs metadata.astgate.ensure for every match in e->ens[0..nens) of the block in e->flat
 * (ensure.c): first without edits, to learn which consts only the matched values use (those are
 * edited where they are defined; a const something else also uses is pinned where the match uses
 * it), then for real. */
void ag_ensure_block(ag_engine_t *e, ag_lang_t lang);

#endif

/* The streaming hold: how much of a code block that is still arriving can be sent before it
 * closes, because no rule can edit it whatever comes next. */
#ifndef AG_HOLD_H
#define AG_HOLD_H

#include "fence.h"
#include "rewrite.h"

/*
 * The number of leading bytes of code (the block's code received so far, blk its fence) that the
 * block's final rewrite leaves as they are, whatever text follows: every edit of the final
 * rewrite starts at or after it. 0 = hold it all (today's whole-block hold).
 *
 * Derived from the rules that look at the block (shadow and flag-only rules never edit):
 *  - a rule with action block, or one that edits with `fix`, or an `ensure` whose target is not
 *    a property (`key:`) of the matched value: 0 (where such rules edit cannot be bounded);
 *  - `ensure` rules with a key K (the Mastra pack: `model`) edit only (1) inside a property K or a
 *    spread of an object (and what K's value refers to), (2) right after the last property of a
 *    matched object (a missing K inserted), (3) the initializer of a declaration that a value
 *    they follow refers to, (4) the import section (an `import:` for a name no import binds).
 *    So the code is held from the earliest of: the start of any property K (or one being typed
 *    whose name is a prefix of K) or spread in an object; the start of any top-level declaration
 *    that is not exported (a later value may still refer to it); the end of the last import's
 *    line when some `import:` name is not bound yet; where the rules, run on the code so far
 *    (completed as a cut-off block), would edit now; and the first syntax error;
 * Assumes imports come before the code that uses them (a later import could make a call a
 * match). Runs the engine on the code: not for use inside a rewrite.
 */
/* How the code ends, as the parser sees it: the caller may skip the next analyses while the
 * text only grows inside the same string or line comment (nothing in there changes the
 * frontier, and when the frontier was the end, the new text can go out as it comes). */
typedef struct ag_hold_end {
    char quote;        /* the code ends inside a '…' or "…" string opened with this quote */
    bool line_comment; /* ... inside a // comment */
    bool settled;      /* the frontier cannot move before the block closes (held from a pinned
                          property, a spread, a top-level declaration or the import point):
                          no further analysis of this block is needed */
    bool free;         /* no rule edits this block: all of it goes out as it comes */
} ag_hold_end_t;

/* What an analysis keeps for the next one of the same block (its parse, reused for an
 * incremental parse while the code only grows at the end). Not shared between threads. */
typedef struct ag_hold_memo ag_hold_memo_t;
ag_hold_memo_t *ag_hold_memo_new(void);
/* Forgets the block (the next analysis parses from scratch). */
void ag_hold_memo_reset(ag_hold_memo_t *m);
void ag_hold_memo_free(ag_hold_memo_t *m);

/* memo: borrowed; holds the parse of an earlier analysis of a prefix of code (the same block),
 * or nothing (reset). */
uint32_t ag_hold_frontier(ag_engine_t *e, const ag_block_t *blk, ag_str_t code,
                          ag_hold_memo_t *memo, ag_hold_end_t *end);

#endif

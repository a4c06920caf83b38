/* Markdown fenced code blocks (CommonMark ``` and ~~~ fences) in a model reply, and which of them
 * hold code we parse. One linear pass over the text, no allocation. */
#ifndef AG_FENCE_H
#define AG_FENCE_H

#include "util.h"

/*
 * The rules (CommonMark 0.31 fenced code blocks, without container blocks):
 * - A line ends at LF. A CR right before the LF, or a CR that is the last byte of the text,
 *   belongs to the line ending (a reply cut between CR and LF reads the same); any other CR is a
 *   plain byte.
 * - Opening fence line: 0-3 spaces (a tab is 4 columns: no fence), then 3+ backticks or 3+ tildes,
 *   then the info string. A backtick fence's info string may not contain a backtick, so a line like
 *   "```ts const x```" is inline code, not a fence. Inline code spans never open a block.
 * - Closing fence line: 0-3 spaces, then a run of the opener's character at least as long as the
 *   opener's, then only spaces/tabs. Nothing else closes a block (fences do not nest).
 * - No closer: the block runs to the end of the text and is not closed (a cut-off reply).
 * Not handled: fences inside block quotes or after list markers ("> ```", "- ```"), and fences
 * indented 4+ spaces under a nested list item; those lines are ordinary text here.
 */

/* One fenced block: offsets are bytes into the scanned text, views are borrowed from it. */
typedef struct ag_block {
    uint32_t start;      /* code start: just after the opening fence line's line ending */
    uint32_t end;        /* code end: start of the closing fence line; text length when unclosed */
    uint32_t open_start; /* start of the opening fence line, its indent included */
    uint32_t close_end;  /* end of the closing fence line without its line ending; == end when
                          * unclosed */
    ag_str_t info;       /* info string, trimmed of spaces/tabs (escapes are not processed) */
    ag_str_t lang;       /* first word of info (up to space/tab); len 0 when unlabeled */
    bool closed;         /* false: the text ended inside the block */
} ag_block_t;

/* The code is raw bytes: unlike a markdown renderer we do not strip the opener's indent from the
 * code lines, so offsets map 1:1 onto the reply. Lines in [start, end) keep their line endings. */
static inline ag_str_t ag_block_code(ag_str_t text, const ag_block_t *b)
{
    return (ag_str_t){text.ptr + b->start, b->end - b->start};
}

/* Finds the next block at or after *pos, which must be the start of a line (0 at first). On AG_OK
 * fills *b and moves *pos to the start of the line after the block (the text length when it ran to
 * the end). AG_ENOENT: no further block. AG_ETOOBIG: text longer than UINT32_MAX bytes. */
AG_MUSTCHECK int ag_fence_next(ag_str_t text, uint32_t *pos, ag_block_t *b);

/* Finds the blocks of text in order, every language included, into out[0..max). *n gets the count.
 * AG_ETOOBIG when there are more than max blocks (out holds the first max, *n == max) or the text
 * is longer than UINT32_MAX bytes (*n == 0). out may be NULL when max is 0. */
AG_MUSTCHECK int ag_fence_find(ag_str_t text, ag_block_t *out, uint32_t max, uint32_t *n);

/* Whether text holds at least one fence opener (so ag_fence_find would find a block); stops at the
 * first one. False for texts longer than UINT32_MAX bytes. */
bool ag_fence_any(ag_str_t text);

#define AG_FENCE_LANGS_MAX 32    /* names in a set */
#define AG_FENCE_LANG_MAX_LEN 31 /* bytes in a name */

/* A set of fence languages, compared case-insensitively (ASCII) with a block's lang. The name ""
 * stands for unlabeled fences. Plain value, no allocation: zero-initialised = empty set. */
typedef struct ag_fence_langs {
    uint32_t n;                                           /* names in use */
    uint8_t len[AG_FENCE_LANGS_MAX];                      /* bytes of each name */
    char name[AG_FENCE_LANGS_MAX][AG_FENCE_LANG_MAX_LEN]; /* lower-cased, not NUL-terminated */
} ag_fence_langs_t;

/* Sets l to the default set: ts typescript tsx js javascript jsx mts cts mjs cjs and "". */
void ag_fence_langs_default(ag_fence_langs_t *l);
/* Empties l. */
void ag_fence_langs_clear(ag_fence_langs_t *l);
/* Adds a copy of name (a name already present is AG_OK). AG_ETOOBIG when l is full or name is
 * longer than AG_FENCE_LANG_MAX_LEN; AG_EINVAL when name holds a space, tab, CR or LF (it could
 * never equal a first word). */
AG_MUSTCHECK int ag_fence_langs_add(ag_fence_langs_t *l, ag_str_t name);

/* The grammar to parse b with (an ag_lang_t from lang.h: AG_LANG_TSX for tsx and jsx, AG_LANG_TS
 * for every other name), or -1 when b's lang is not in l. */
int ag_fence_classify(const ag_block_t *b, const ag_fence_langs_t *l);

#endif

/* The indentation of a metavariable's text where a fix template inserts it: multi-line text keeps
 * its shape relative to the template line it lands on and to the matched line, as ast-grep's
 * replacer does (checked against ast-grep 0.51.1 by tests/parity). */
#ifndef AG_INDENT_H
#define AG_INDENT_H

#include "util.h"

/* Leading spaces and tabs of the line of s that holds off. */
ag_str_t ag_indent_of_line(ag_str_t s, uint32_t off);

/* Appends text, a metavariable's source that starts at src[start], to out as a fix template
 * inserts it. Text on one line is copied as it is. For text over several lines, with orig the
 * indentation of the line of src where text starts and tmpl that of the template line it is
 * inserted on (ag_indent_of_line), each later line of text:
 *   - when orig is longer: loses orig's first len(orig) - len(tmpl) bytes, if it starts with them
 *     (a line indented less than that is kept as it is);
 *   - when tmpl is longer: gains tmpl's last len(tmpl) - len(orig) bytes (an empty line too);
 * and then gets match_indent in front (the matched line's indentation, which the template's own
 * line breaks get as well). Line endings in text are kept. Returns AG_OK, or ag_buf_append's
 * error (AG_ETOOBIG past out's limit). With spaces only this is ast-grep's rule; tabs count as
 * indentation here, where ast-grep counts only spaces. */
AG_MUSTCHECK int ag_indent_append_var(ag_buf_t *out, ag_str_t src, uint32_t start, ag_str_t text,
                                      ag_str_t tmpl, ag_str_t match_indent);

#endif

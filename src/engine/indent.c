/* Re-indentation of a metavariable's multi-line text inside a fix (ast-grep's replacer rule):
 * the text is made relative to the line it starts on, then placed at the template line's
 * indentation under the matched line's. */
#include "indent.h"

ag_str_t ag_indent_of_line(ag_str_t s, uint32_t off)
{
    uint32_t ls = off < s.len ? off : (uint32_t)s.len;
    while (ls > 0 && s.ptr[ls - 1] != '\n')
        ls--;
    uint32_t ie = ls;
    while (ie < s.len && (s.ptr[ie] == ' ' || s.ptr[ie] == '\t'))
        ie++;
    return ag_str(s.ptr + ls, ie - ls);
}

int ag_indent_append_var(ag_buf_t *out, ag_str_t src, uint32_t start, ag_str_t text, ag_str_t tmpl,
                         ag_str_t match_indent)
{
    const char *nl = memchr(text.ptr ? text.ptr : "", '\n', text.len);
    if (nl == NULL)
        return ag_buf_append(out, text.ptr, text.len);
    ag_str_t orig = ag_indent_of_line(src, start);
    /* what each later line loses (strip) or gains (add) */
    ag_str_t strip = ag_str(NULL, 0), add = ag_str(NULL, 0);
    if (orig.len > tmpl.len)
        strip = ag_str(orig.ptr, orig.len - tmpl.len);
    else
        add = ag_str(tmpl.ptr + orig.len, tmpl.len - orig.len);
    size_t first = (size_t)(nl - text.ptr) + 1;
    int rc = ag_buf_append(out, text.ptr, first);
    size_t pos = first;
    while (rc == AG_OK && pos <= text.len) {
        const char *e = memchr(text.ptr + pos, '\n', text.len - pos);
        size_t end = e ? (size_t)(e - text.ptr) + 1 : text.len;
        ag_str_t line = ag_str(text.ptr + pos, end - pos);
        if (strip.len && line.len >= strip.len && memcmp(line.ptr, strip.ptr, strip.len) == 0) {
            line.ptr += strip.len;
            line.len -= strip.len;
        }
        rc = ag_buf_append(out, match_indent.ptr, match_indent.len);
        if (rc == AG_OK)
            rc = ag_buf_append(out, add.ptr, add.len);
        if (rc == AG_OK)
            rc = ag_buf_append(out, line.ptr, line.len);
        if (e == NULL)
            break;
        pos = end;
    }
    return rc;
}

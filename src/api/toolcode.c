/* The rewrite of the code in one tool call's input (see toolcode.h). */
#include "toolcode.h"

int ag_toolcode_rewrite(ag_engine_t *e, const ag_tools_t *tools, const ag_tool_call_t *call,
                        ag_str_t input, ag_buf_t *out, bool *changed, ag_tool_report_fn report,
                        void *ud)
{
    (void)e;
    (void)tools;
    (void)call;
    (void)input;
    (void)out;
    (void)report;
    (void)ud;
    *changed = false;
    return AG_ENOENT; /* not there yet: every call passes through */
}

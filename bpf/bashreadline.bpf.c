/* bashreadline: one event per line bash reads interactively: a uretprobe on
 * readline() (in /bin/bash, or a shared libreadline) reads the returned
 * string. A uprobe is the tool's own event. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#define LINE_LEN 256

struct event {
    u64 ts;
    u32 pid;
    u32 tid;
    char comm[TASK_COMM_LEN];
    char line[LINE_LEN];
};

int on_readline_return(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    const char *line = (const char *)PT_REGS_RC(ctx);
    if (!line)
        return 0;              /* end of input (Ctrl-D): no line */
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->ts = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_read_user_str(e->line, sizeof(e->line), line);
    ptk_submit(e, sizeof(*e));
    return 0;
}

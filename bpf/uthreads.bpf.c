/* uthreads: one event per thread started with pthread_create: the new
 * thread's id and its start routine. A uprobe on libc's pthread_create keeps
 * the start routine per creating thread; the clone it makes fires
 * sched_process_fork (raw tracepoint) in that thread, with the new task, and
 * emits. A uprobe is the tool's own event; a raw tracepoint's return value is
 * ignored, so neither touches other users of these events. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

BPF_HASH(creating, u32, u64, 10240);   /* creating tid -> start routine */

struct event {
    u64 ts;
    u64 start_routine;
    u32 pid;
    u32 tid;          /* the new thread */
    u32 creator;      /* the thread that called pthread_create */
    u32 pad;
    char comm[TASK_COMM_LEN];
};

int on_pthread_create(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 routine = PT_REGS_PARM3(ctx);
    if (creating.update(&tid, &routine))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* pthread_create's clone ends in the creator (or fails): forget it there. */
int on_pthread_create_return(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    creating.delete(&tid);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 creator = pid_tgid;
    u64 *routine = creating.lookup(&creator);
    if (!routine)
        return 0;
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    u32 pid = 0, tgid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), &child->pid);
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &child->tgid);
    if (tgid != (pid_tgid >> 32))
        return 0;   /* not a thread of this process */
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->ts = bpf_ktime_get_ns();
    e->start_routine = *routine;
    e->pid = tgid;
    e->tid = pid;
    e->creator = creator;
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return 0;
}

/* threadsnoop: one event per new thread (task:task_newtask with CLONE_THREAD,
 * in the creating thread), with the start routine a uprobe on libc's
 * pthread_create kept for that creating thread (0: a thread made by a raw
 * clone, not pthread_create). The uprobes are the tool's own events. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#define PTK_CLONE_THREAD 0x00010000

BPF_HASH(creating, u32, u64, 10240);   /* creating tid -> start routine */

struct event {
    u64 ts;
    u64 start_routine;
    u32 pid;
    u32 tid;          /* the new thread */
    u32 creator;      /* the thread that made it */
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

int on_pthread_create_return(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    creating.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(task, task_newtask)
{
    if (!(args->clone_flags & PTK_CLONE_THREAD) || !ptk_selected())
        return PTK_TP_PASS;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 creator = pid_tgid;
    u64 *routine = creating.lookup(&creator);
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts = bpf_ktime_get_ns();
    e->start_routine = routine ? *routine : 0;
    e->pid = pid_tgid >> 32;
    e->tid = args->pid;
    e->creator = creator;
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}

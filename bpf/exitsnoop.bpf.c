/* exitsnoop: one event per process (or, with PER_THREAD, thread) exit, from
 * sched:sched_process_exit, with its age and exit code. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef PER_THREAD
#define PER_THREAD 0
#endif
#ifndef FAILED_ONLY            /* only non-zero exit codes (errors, signals) */
#define FAILED_ONLY 0
#endif

struct event {
    u64 ts;
    u64 start_time;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 exit_code;             /* status << 8 | core dump 0x80 | signal */
    char comm[TASK_COMM_LEN];
};

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (!PER_THREAD && (u32)pid_tgid != pid_tgid >> 32)
        return PTK_TP_PASS;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    int exit_code = 0;
    PTK_READ_FIELD(exit_code, task, struct task_struct, exit_code);
    if (FAILED_ONLY && exit_code == 0)
        return PTK_TP_PASS;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    struct task_struct *parent = NULL;
    PTK_READ_FIELD(parent, task, struct task_struct, real_parent);
    e->ppid = 0;
    PTK_READ_FIELD(e->ppid, parent, struct task_struct, tgid);
    e->start_time = 0;
    PTK_READ_FIELD(e->start_time, task, struct task_struct, start_time);
    e->ts = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->exit_code = exit_code;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}

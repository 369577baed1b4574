/* timehist: one record per switch-out of a task, like `perf sched timehist`:
 * its run time (switch-in to this switch-out), the wait before that run
 * (previous switch-out to switch-in) and the scheduling delay in it (wakeup
 * to switch-in), computed here so that user space only prints. As in perf, a
 * preempted task is never woken: its wait (out_state R) has no sch delay,
 * though it was runnable all along.
 * With BLOCK_IO (timechart), block requests' issue and completion too.
 *
 * Raw tracepoints give the task pointers (their return value is ignored);
 * block tracepoints are shared and return PTK_TP_PASS. Tasks are those of
 * the followed processes (ptk_follow.h: -p, or a command and what it
 * forks, or all); the idle task never.
 *
 * Not every switch reaches a tracepoint: while some tasks are on a CPU (on
 * these VMs the VM agent's threads) no tracepoint fires at all, not even in
 * an interrupt. So a task can be switched in, or woken, unseen. A run whose
 * switch-in was unseen still ends in a record: it began after the CPU's last
 * traced switch (as perf sched timehist counts every run: from the CPU's
 * previous switch), so its run time is an upper bound (FLAG_START_UNSEEN). A
 * wait that began asleep and ended without a traced wakeup has no known sch
 * delay (FLAG_WAKEUP_UNSEEN: printed as unknown, not as 0). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_sched.h"

#define PTK_CALLS_FOLLOW_EXEC 1   /* our sched_process_exec probe calls it */
#define PTK_CALLS_FOLLOW_FREE 1   /* our sched_process_free probe calls it */
#include "ptk_follow.h"

#ifndef BLOCK_IO
#define BLOCK_IO 0
#endif
#define TASK_RUNNING 0
#define STATE_UNKNOWN 0xffffffff
#define FLAG_START_UNSEEN 1     /* the run's switch-in was not traced */
#define FLAG_WAKEUP_UNSEEN 2    /* a sleep ended with no traced wakeup */

enum kind { KIND_SWITCH, KIND_BLOCK_ISSUE, KIND_BLOCK_COMPLETE };

struct task_times {
    u64 last_in;        /* switched in (0: not seen yet) */
    u64 last_out;       /* switched out (0: not seen yet) */
    u64 ready;          /* woken, not yet running (0: none) */
    u32 out_state;      /* prev_state at last_out: what the wait was */
    u32 flags;          /* FLAG_*, of the run in progress */
};

struct event {
    u64 ts;
    u64 run_ns;         /* block: the sector */
    u64 wait_ns;
    u64 delay_ns;
    u32 pid;
    u32 tid;
    u32 cpu;
    u32 kind;
    u32 wait_state;     /* the state the wait before this run began in (STATE_UNKNOWN) */
    u32 state;          /* block: the device; switch: prev_state now (0: preempted) */
    u32 bytes;
    u32 flags;          /* FLAG_* */
    char comm[TASK_COMM_LEN];
};

BPF_HASH(tasks, u32, struct task_times, 65536);

PTK_INLINE bool read_ids(struct task_struct *p, u32 *tgid, u32 *pid)
{
    bpf_probe_read_kernel(tgid, sizeof(*tgid), &p->tgid);
    bpf_probe_read_kernel(pid, sizeof(*pid), &p->pid);
    if (!*pid || (FILTER_TID && *pid != FILTER_TID))
        return false;
    return ptk_followed(*tgid);
}

PTK_INLINE struct task_times *times_of(u32 pid)
{
    struct task_times zero = {.out_state = STATE_UNKNOWN};
    struct task_times *t = tasks.lookup_or_try_init(&pid, &zero);
    if (!t)
        ptk_count_loss(PTK_MAP_FULL);
    return t;
}

PTK_INLINE int woken(struct task_struct *p)
{
    u32 tgid = 0, pid = 0;
    if (!read_ids(p, &tgid, &pid))
        return 0;
    struct task_times *t = times_of(pid);
    if (t && !t->ready)
        t->ready = bpf_ktime_get_ns();
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return woken((struct task_struct *)ctx->args[0]);
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    return woken((struct task_struct *)ctx->args[0]);
}

/* A wait that began asleep (not preempted) must have ended with a wakeup. */
PTK_INLINE u32 wakeup_flag(struct task_times *t)
{
    return t->last_out && t->out_state != TASK_RUNNING && !t->ready ? FLAG_WAKEUP_UNSEEN : 0;
}

/* The run that ends now: a record from what was noted at its start. A task
 * seen before (switched out or woken) that is running now was switched in
 * unseen: no earlier than this CPU's last traced switch, its wakeup, its
 * last switch-out. */
PTK_INLINE void switched_out(struct task_struct *prev, u32 state, u64 now, u64 cpu_last)
{
    u32 tgid = 0, pid = 0;
    if (!read_ids(prev, &tgid, &pid))
        return;
    struct task_times *t = times_of(pid);
    if (!t)
        return;
    if (!t->last_in && (t->last_out || t->ready)) {
        u64 start = cpu_last;
        if (t->ready > start)
            start = t->ready;
        if (t->last_out > start)
            start = t->last_out;
        t->last_in = start;
        t->flags = FLAG_START_UNSEEN | wakeup_flag(t);
    }
    if (t->last_in) {
        struct event *e = events.ringbuf_reserve(sizeof(*e));
        if (!e) {
            ptk_count_loss(PTK_LOST_EVENTS);
        } else {
            e->ts = now;
            e->run_ns = now - t->last_in;
            e->wait_ns = t->last_out && t->last_out <= t->last_in ? t->last_in - t->last_out : 0;
            e->delay_ns = t->ready && t->ready <= t->last_in ? t->last_in - t->ready : 0;
            e->pid = tgid;
            e->tid = pid;
            e->cpu = bpf_get_smp_processor_id();
            e->kind = KIND_SWITCH;
            e->wait_state = t->last_out ? t->out_state : STATE_UNKNOWN;
            e->state = state;
            e->bytes = 0;
            e->flags = t->flags;
            bpf_probe_read_kernel_str(&e->comm, sizeof(e->comm), &prev->comm);
            ptk_submit(e, sizeof(*e));
        }
    }
    t->last_out = now;
    t->out_state = state;
    t->ready = 0;
    t->last_in = 0;
    t->flags = 0;
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    u64 now = bpf_ktime_get_ns();
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u32 next_tid = 0;
    bpf_probe_read_kernel(&next_tid, sizeof(next_tid), &next->pid);
    struct ptk_cpu_switch last = ptk_cpu_switched(next_tid, now);
    u32 state = ctx->args[0] ? TASK_RUNNING : (unsigned int)ctx->args[3];
    switched_out((struct task_struct *)ctx->args[1], state, now, last.ts);
    u32 tgid = 0, pid = 0;
    if (!read_ids(next, &tgid, &pid))
        return 0;
    struct task_times *t = times_of(pid);
    if (t) {
        t->last_in = now;
        t->flags = wakeup_flag(t);
    }
    return 0;
}

/* A command's run starts at its exec (nothing before it is traced): without
 * this its first run would show only if it was switched out and in again.
 * The command itself may not be followed yet (ptk_follow.h's exec hook may
 * run after this one): its root's pid says. */
PTK_INLINE bool exec_selected(u32 tgid)
{
#if FOLLOW_MODE == 2
    if (tgid == FOLLOW_ROOT)
        return true;
#endif
    return ptk_followed(tgid);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    ptk_follow_exec();   /* a command is followed from its exec on */
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32, pid = pid_tgid;
    if (!pid || (FILTER_TID && pid != FILTER_TID) || !exec_selected(tgid))
        return PTK_TP_PASS;
    struct task_times *t = times_of(pid);
    if (t && !t->last_in)
        t->last_in = bpf_ktime_get_ns();
    return PTK_TP_PASS;
}

RAW_TRACEPOINT_PROBE(sched_process_free)
{
    u32 pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), &((struct task_struct *)ctx->args[0])->pid);
    tasks.delete(&pid);
    ptk_follow_free(pid);
    return 0;
}

#if BLOCK_IO
PTK_INLINE void block_event(u32 kind, u32 dev, u64 sector, u32 bytes)
{
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->run_ns = sector;
    e->wait_ns = 0;
    e->delay_ns = 0;
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->cpu = bpf_get_smp_processor_id();
    e->kind = kind;
    e->wait_state = STATE_UNKNOWN;
    e->state = dev;
    e->bytes = bytes;
    e->flags = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    block_event(KIND_BLOCK_ISSUE, args->dev, args->sector, args->bytes);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    block_event(KIND_BLOCK_COMPLETE, args->dev, args->sector, args->nr_sector * 512);
    return PTK_TP_PASS;
}
#endif

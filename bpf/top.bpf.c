/* top: on-CPU time per thread, accumulated at every context switch.
 *
 * The time a task ran is added to its entry when it is switched out, so a
 * process that lives 20 ms between two refreshes is still counted: its
 * entry stays until user space has reported it (exited marks it for
 * removal). `running` holds what each CPU runs now and since when, so user
 * space can add the slice still in progress. Thread id 0 collects idle time.
 *
 * Not every switch reaches the tracepoint: while some tasks are on a CPU (on
 * these VMs the VM agent's threads) no tracepoint fires, so a task can be
 * switched in unseen, and `running` then names the unseen task's
 * predecessor. So a thread is charged the growth of its own CPU time (the
 * scheduler's sum_exec_runtime, up to date at the switch) since its previous
 * switch-out: exact however it was switched in. A thread forked while
 * tracing is charged from its birth (its sum_exec_runtime starts at 0 then),
 * so only a thread that was alive at attach has its first switch-out, and
 * the idle task every switch-out, charged from `running`. At its exit a
 * thread is charged its sum to then, as its last switch-out may go unseen. */
#include "vmlinux.h"
#include "pytracekit.h"

/* `-- COMMAND`: the command (from its exec on) and the processes it forks
 * are in `followed`, kept after they are freed, so user space can show the
 * command's processes only, the exited ones included. */
#define PTK_CALLS_FOLLOW_FORK 1   /* our sched_process_fork probe calls it */
#include "ptk_follow.h"

#ifndef MAX_TASKS
#define MAX_TASKS 16384
#endif
#ifndef MAX_CPUS
#define MAX_CPUS 256
#endif

struct task_time {
    u64 ns;
    u64 exec_ns;        /* sum_exec_runtime at its last switch-out */
    u32 tgid;
    u16 exited;
    u8 counted;         /* exec_ns is a base: a switch-out was seen, or it was born traced */
    u8 born;            /* forked while tracing: all its time is in ns (none before) */
    char comm[TASK_COMM_LEN];
};

struct running_t {
    u64 since;
    u32 tid;
    u32 tgid;
};

BPF_HASH(times, u32, struct task_time, MAX_TASKS);
BPF_ARRAY(running, struct running_t, MAX_CPUS);

/* `slice`: from `running` (0 if it names another task). */
PTK_INLINE void account(struct task_struct *task, u32 tid, u64 slice)
{
    struct task_time *entry = times.lookup(&tid);
    if (!entry) {
        struct task_time fresh = {};
        bpf_probe_read_kernel(&fresh.tgid, sizeof(fresh.tgid), &task->tgid);
        if (times.insert(&tid, &fresh) != 0 && !times.lookup(&tid)) {
            ptk_count_loss(PTK_MAP_FULL);
            return;
        }
        entry = times.lookup(&tid);
        if (!entry)
            return;
    }
    /* comm can change at exec: keep the latest */
    bpf_probe_read_kernel_str(entry->comm, sizeof(entry->comm), task->comm);
    u64 delta = slice;
    if (tid) {
        u64 exec = 0;
        bpf_probe_read_kernel(&exec, sizeof(exec), &task->se.sum_exec_runtime);
        if (entry->counted && exec >= entry->exec_ns)
            delta = exec - entry->exec_ns;
        entry->exec_ns = exec;
        entry->counted = 1;
    }
    __sync_fetch_and_add(&entry->ns, delta);
}

RAW_TRACEPOINT_PROBE(sched_switch)
{
    /* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...) */
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u32 cpu = bpf_get_smp_processor_id();
    struct running_t *run = running.lookup(&cpu);
    if (!run)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u32 prev_tid = 0;
    bpf_probe_read_kernel(&prev_tid, sizeof(prev_tid), &prev->pid);
    account(prev, prev_tid, run->since && run->tid == prev_tid ? now - run->since : 0);
    u32 next_tid = 0, next_tgid = 0;
    bpf_probe_read_kernel(&next_tid, sizeof(next_tid), &next->pid);
    bpf_probe_read_kernel(&next_tgid, sizeof(next_tgid), &next->tgid);
    run->since = now;
    run->tid = next_tid;
    run->tgid = next_tgid;
    return 0;
}

/* sched_process_fork(struct task_struct *parent, struct task_struct *child):
 * the child has run for 0 ns, so its first switch-out is charged in full. */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    ptk_follow_fork(child);
    struct task_time fresh = { .counted = 1, .born = 1 };
    u32 tid = 0;
    bpf_probe_read_kernel(&tid, sizeof(tid), &child->pid);
    bpf_probe_read_kernel(&fresh.tgid, sizeof(fresh.tgid), &child->tgid);
    bpf_probe_read_kernel_str(fresh.comm, sizeof(fresh.comm), child->comm);
    int err = times.insert(&tid, &fresh);
    if (err && err != -17 /* EEXIST: a reused tid not reported yet */)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    struct task_time *entry = times.lookup(&tid);
    if (!entry) {
        /* never switched out yet (a short task that ran straight through): its
         * last switch-out fills this entry, which must already say it exited */
        struct task_time fresh = { .tgid = id >> 32, .exited = 1 };
        bpf_get_current_comm(&fresh.comm, sizeof(fresh.comm));
        if (times.insert(&tid, &fresh) != 0 && !times.lookup(&tid))
            ptk_count_loss(PTK_MAP_FULL);
        entry = times.lookup(&tid);
    }
    if (entry) {
        /* its time to now, from the scheduler's sum (up to a tick behind): not
         * left to a last switch-out that may go unseen, with `running` still
         * naming the dead task (user space adds no slice in progress to an
         * exited one); that switch-out adds the rest */
        struct task_struct *task = (struct task_struct *)bpf_get_current_task();
        u64 exec = 0;
        bpf_probe_read_kernel(&exec, sizeof(exec), &task->se.sum_exec_runtime);
        if (entry->counted && exec >= entry->exec_ns) {
            __sync_fetch_and_add(&entry->ns, exec - entry->exec_ns);
            entry->exec_ns = exec;
        }
        entry->exited = 1;
    }
    return PTK_TP_PASS;
}

/* systrace: one event per system call (arguments, path strings, return
 * value, duration), like perf trace, through the ring buffer.
 *
 * sys_enter saves the arguments (and up to two strings read from user
 * memory, for the arguments user space marked in string_args) per thread;
 * sys_exit completes the record and submits it. exit and exit_group never
 * return, so they are sent at entry. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef STR_LEN
#define STR_LEN 128
#endif
#ifndef FILTER_SYSCALLS
#define FILTER_SYSCALLS 0     /* 1: only the syscalls set in `wanted` */
#endif
#ifndef FAILED_ONLY
#define FAILED_ONLY 0
#endif
#define MAX_NR 512
#define NR_EXIT 60
#define NR_EXIT_GROUP 231

/*PTK_FOLLOW*/

struct call {
    u64 ts;
    u64 args[6];
    s64 ret;
    u64 duration;
    u32 nr;
    u32 pid;
    u32 tid;
    u32 returned;             /* 0: the call never returns (exit) */
    char comm[TASK_COMM_LEN];
    char str[2][STR_LEN];
};

BPF_ARRAY(string_args, u8, MAX_NR);   /* bit i: argument i is a user string */
BPF_ARRAY(wanted, u8, MAX_NR);
BPF_PERCPU_ARRAY(scratch, struct call, 1);
BPF_HASH(inflight, u32, struct call, 10240);
BPF_RINGBUF_OUTPUT(events, 4096);    /* 16 MiB, as the streaming tools: a storm of calls fits */

PTK_INLINE bool selected(u64 pid_tgid, u32 nr)
{
    if (FILTER_TID && (u32)pid_tgid != FILTER_TID)
        return false;
    /* the command's own execve comes before its exec event: show it too */
    if (!ptk_followed(pid_tgid >> 32) && !ptk_command_entering_exec(pid_tgid >> 32, nr))
        return false;
    if (FILTER_SYSCALLS) {
        u8 *yes = wanted.lookup(&nr);
        if (!yes || !*yes)
            return false;
    }
    return true;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 nr = args->id, zero = 0, tid = pid_tgid;
    if (!selected(pid_tgid, nr))
        return PTK_TP_PASS;
    struct call *c = scratch.lookup(&zero);
    if (!c)
        return PTK_TP_PASS;
    c->ts = bpf_ktime_get_ns();
    c->nr = nr;
    c->pid = pid_tgid >> 32;
    c->tid = tid;
    c->ret = 0;
    c->duration = 0;
    c->returned = 1;
    bpf_get_current_comm(&c->comm, sizeof(c->comm));
    u8 mask = 0, *m = string_args.lookup(&nr);
    if (m)
        mask = *m;
    u32 used = 0;
#pragma unroll
    for (int i = 0; i < 6; i++) {
        c->args[i] = args->args[i];
        if (!(mask & (1 << i)))
            continue;
        if (used == 0)
            ptk_read_user_str(c->str[0], STR_LEN, (void *)c->args[i]);
        else if (used == 1)
            ptk_read_user_str(c->str[1], STR_LEN, (void *)c->args[i]);
        used++;
    }
    if (nr == NR_EXIT || nr == NR_EXIT_GROUP) {
        if (FAILED_ONLY)
            return PTK_TP_PASS;
        c->returned = 0;
        struct call *e = events.ringbuf_reserve(sizeof(struct call));
        if (!e) {
            ptk_count_loss(PTK_LOST_EVENTS);
            return PTK_TP_PASS;
        }
        __builtin_memcpy(e, c, sizeof(struct call));
        events.ringbuf_submit(e, 0);
        return PTK_TP_PASS;
    }
    if (inflight.update(&tid, c) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct call *c = inflight.lookup(&tid);
    if (!c)
        return PTK_TP_PASS;             /* entered before tracing began, or not selected */
    if (FAILED_ONLY && args->ret >= 0) {
        inflight.delete(&tid);
        return PTK_TP_PASS;
    }
    struct call *e = events.ringbuf_reserve(sizeof(struct call));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        inflight.delete(&tid);
        return PTK_TP_PASS;
    }
    __builtin_memcpy(e, c, sizeof(struct call));
    e->ret = args->ret;
    e->duration = bpf_ktime_get_ns() - c->ts;
    events.ringbuf_submit(e, 0);
    inflight.delete(&tid);
    return PTK_TP_PASS;
}

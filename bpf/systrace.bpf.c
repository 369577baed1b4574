/* systrace: one event per system call (arguments, path strings, return
 * value, duration), like perf trace, through the ring buffer.
 *
 * sys_enter saves the arguments (and up to two strings read from user
 * memory, for the arguments user space marked in string_args) per thread;
 * sys_exit completes the record and submits it. exit and exit_group never
 * return, so they are sent at entry. MIN_DURATION_NS: only calls that took
 * that long (perf trace --duration). USER_STACKS: each call's user stack,
 * taken at entry (ptk_ustack.h: unwound in the kernel from CFI, else the
 * frame-pointer walk). FAULTS: on_fault, attached by user space to the
 * major-faults and/or minor-faults software events (perf trace -F), sends
 * each fault of a followed thread as a record of its own kind. */
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
#ifndef MIN_DURATION_NS
#define MIN_DURATION_NS 0
#endif
#ifndef USER_STACKS
#define USER_STACKS 0
#endif
#define MAX_NR 512
#define NR_EXIT 60
#define NR_EXIT_GROUP 231

#include "ptk_follow.h"

#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (USER_STACKS ? 4096 : 1)
#include "ptk_unwind.h"
#include "ptk_ustack.h"

enum kind { KIND_SYSCALL, KIND_MAJFAULT, KIND_MINFAULT };

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
    u64 user_stack_hash;      /* nonzero: the user stack is in `ustacks` */
    s32 user_stack_id;        /* < 0 and no hash: none */
    u32 kind;                 /* a fault: args[0] its ip, args[1] its address */
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
    c->kind = KIND_SYSCALL;
    c->user_stack_hash = 0;
    c->user_stack_id = -1;
    if (USER_STACKS)
        c->user_stack_id = ptk_user_stack(args, pid_tgid >> 32, &c->user_stack_hash);
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
        if (FAILED_ONLY || MIN_DURATION_NS)     /* no result, no duration */
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
    u64 duration = bpf_ktime_get_ns() - c->ts;
    if ((FAILED_ONLY && args->ret >= 0) || duration < MIN_DURATION_NS) {
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
    e->duration = duration;
    events.ringbuf_submit(e, 0);
    inflight.delete(&tid);
    return PTK_TP_PASS;
}

#ifdef FAULTS
PTK_INLINE int fault(struct bpf_perf_event_data *ctx, u32 kind)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (FILTER_TID && (u32)pid_tgid != FILTER_TID)
        return 0;
    if (!ptk_followed(pid_tgid >> 32))
        return 0;
    struct call *e = events.ringbuf_reserve(sizeof(struct call));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(struct call));
    e->ts = bpf_ktime_get_ns();
    e->args[0] = PT_REGS_IP(&ctx->regs);
    e->args[1] = ctx->addr;
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->kind = kind;
    e->user_stack_id = -1;
    if (USER_STACKS)
        e->user_stack_id = ptk_user_stack(ctx, e->pid, &e->user_stack_hash);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, 0);
    return 0;
}

int on_majfault(struct bpf_perf_event_data *ctx)
{
    return fault(ctx, KIND_MAJFAULT);
}

int on_minfault(struct bpf_perf_event_data *ctx)
{
    return fault(ctx, KIND_MINFAULT);
}
#endif

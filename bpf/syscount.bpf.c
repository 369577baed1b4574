/* syscount: system calls counted (and timed with LATENCY) in the kernel, by
 * syscall or by process, counted at sys_exit as BCC's syscount does. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef BY_PROCESS
#define BY_PROCESS 0      /* key by process instead of by syscall */
#endif
#ifndef LATENCY
#define LATENCY 0         /* time each call from sys_enter to sys_exit */
#endif
#ifndef FAILED_ONLY
#define FAILED_ONLY 0     /* only calls that returned an error */
#endif
#ifndef FILTER_ERRNO
#define FILTER_ERRNO 0    /* only calls that failed with this errno */
#endif
#ifndef FILTER_SYSCALL
#define FILTER_SYSCALL -1 /* only this syscall number */
#endif

#include "ptk_follow.h"

struct key_t {
    u32 id;               /* syscall number, or pid with BY_PROCESS */
    char comm[TASK_COMM_LEN];
};

struct stats_t {
    u64 count;
    u64 total_ns;
};

BPF_HASH(stats, struct key_t, struct stats_t, 10240);
BPF_HASH(start, u32, u64, 10240);
/* execve's start per process: an exec from a non-leader thread returns as
 * the leader (the thread takes the leader's pid). */
BPF_HASH(exec_start, u32, u64, 1024);
/* rt_sigreturn's number per thread, from its own enter tracepoint: on x86
 * its sys_exit carries id -1 (it resets orig_ax so the interrupted call is
 * not restarted). */
BPF_HASH(sigreturn_nr, u32, u32, 10240);

PTK_INLINE bool selected(u64 pid_tgid, long nr)
{
    if (FILTER_TID && (u32)pid_tgid != FILTER_TID)
        return false;
    if (FILTER_SYSCALL >= 0 && nr != FILTER_SYSCALL)
        return false;
    return ptk_followed(pid_tgid >> 32);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rt_sigreturn)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!selected(pid_tgid, args->__syscall_nr))
        return PTK_TP_PASS;
    u32 tid = pid_tgid, nr = args->__syscall_nr;
    if (sigreturn_nr.update(&tid, &nr) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

#if LATENCY
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    bool command_exec = ptk_command_entering_exec(pid_tgid >> 32, args->id);
    if (!selected(pid_tgid, args->id) && !command_exec)
        return PTK_TP_PASS;
    u32 tid = pid_tgid, tgid = pid_tgid >> 32;
    u64 now = bpf_ktime_get_ns();
    int err = ptk_is_exec_nr(args->id) ? exec_start.update(&tgid, &now)
                                       : start.update(&tid, &now);
    if (err != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}
#endif

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid, tgid = pid_tgid >> 32;
    long id = args->id;
    if (id == -1) {
        u32 *nr = sigreturn_nr.lookup(&tid);
        if (nr) {
            id = *nr;
            sigreturn_nr.delete(&tid);
        }
    }
    if (!selected(pid_tgid, id))
        return PTK_TP_PASS;
    if (FAILED_ONLY && args->ret >= 0)
        return PTK_TP_PASS;
    if (FILTER_ERRNO && args->ret != -FILTER_ERRNO)
        return PTK_TP_PASS;
    u64 delta = 0;
#if LATENCY
    u64 *began;
    if (ptk_is_exec_nr(id))
        began = exec_start.lookup(&tgid);
    else
        began = start.lookup(&tid);
    if (!began)
        return PTK_TP_PASS;   /* entered before tracing began: no duration to add */
    delta = bpf_ktime_get_ns() - *began;
    if (ptk_is_exec_nr(id))
        exec_start.delete(&tgid);
    else
        start.delete(&tid);
#endif
    struct key_t key = {};
    if (BY_PROCESS) {
        key.id = tgid;
        bpf_get_current_comm(&key.comm, sizeof(key.comm));
    } else {
        key.id = id;
    }
    struct stats_t zero = {};
    struct stats_t *value = stats.lookup_or_try_init(&key, &zero);
    if (!value) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    __sync_fetch_and_add(&value->count, 1);
    __sync_fetch_and_add(&value->total_ns, delta);
    return PTK_TP_PASS;
}

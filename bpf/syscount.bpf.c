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

/*PTK_FOLLOW*/

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

PTK_INLINE bool selected(u64 pid_tgid, long nr)
{
    if (FILTER_TID && (u32)pid_tgid != FILTER_TID)
        return false;
    if (FILTER_SYSCALL >= 0 && nr != FILTER_SYSCALL)
        return false;
    return ptk_followed(pid_tgid >> 32);
}

#if LATENCY
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!selected(pid_tgid, args->id))
        return PTK_TP_PASS;
    u32 tid = pid_tgid;
    u64 now = bpf_ktime_get_ns();
    if (start.update(&tid, &now) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}
#endif

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!selected(pid_tgid, args->id))
        return PTK_TP_PASS;
    if (FAILED_ONLY && args->ret >= 0)
        return PTK_TP_PASS;
    if (FILTER_ERRNO && args->ret != -FILTER_ERRNO)
        return PTK_TP_PASS;
    u64 delta = 0;
#if LATENCY
    u32 tid = pid_tgid;
    u64 *began = start.lookup(&tid);
    if (!began)
        return PTK_TP_PASS;         /* entered before tracing began: no duration to add */
    delta = bpf_ktime_get_ns() - *began;
    start.delete(&tid);
#endif
    struct key_t key = {};
    if (BY_PROCESS) {
        key.id = pid_tgid >> 32;
        bpf_get_current_comm(&key.comm, sizeof(key.comm));
    } else {
        key.id = args->id;
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

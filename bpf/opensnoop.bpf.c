/* opensnoop: one event per open()/openat()/openat2() that returns.
 *
 * The enter tracepoint remembers the path pointer and flags per thread; the
 * exit tracepoint reads the path and emits the event with the result. All
 * filters run here, before anything is copied. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_UID
#define FILTER_UID -1
#endif
#ifndef FAILED_ONLY
#define FAILED_ONLY 0
#endif
#ifndef FILTER_FLAGS            /* any of these flags set */
#define FILTER_FLAGS 0
#endif
#ifndef FILTER_RDONLY           /* -f O_RDONLY: the access mode is read-only */
#define FILTER_RDONLY 0
#endif
#ifndef FILTER_NAME             /* process names containing this */
#define FILTER_NAME ""
#endif
#define FILTER_NAME_LEN (sizeof(FILTER_NAME) - 1)
#define PATH_BYTES 256

struct pending_open {
    const char *path;
    u32 flags;
    u32 mode;
};

BPF_HASH(pending, u32, struct pending_open, 10240);

struct event {
    u64 ts;
    u32 pid;
    u32 tid;
    u32 uid;
    s32 ret;
    u32 flags;
    u32 mode;
    char comm[TASK_COMM_LEN];
    char path[PATH_BYTES];
};

PTK_INLINE bool name_matches(void)
{
    if (FILTER_NAME_LEN == 0)
        return true;
    char comm[TASK_COMM_LEN];
    const char name[] = FILTER_NAME;
    bpf_get_current_comm(&comm, sizeof(comm));
#pragma unroll
    for (int start = 0; start + FILTER_NAME_LEN < TASK_COMM_LEN; start++) {
        int i = 0;
#pragma unroll
        for (; i < FILTER_NAME_LEN; i++)
            if (comm[start + i] != name[i])
                break;
        if (i == FILTER_NAME_LEN)
            return true;
    }
    return false;
}

PTK_INLINE int enter_open(const char *path, u32 flags, u32 mode)
{
    if (!ptk_selected())
        return 0;
    if (FILTER_UID >= 0 && (u32)bpf_get_current_uid_gid() != (u32)FILTER_UID)
        return 0;
    if (FILTER_FLAGS && !(flags & FILTER_FLAGS))
        return 0;
    if (FILTER_RDONLY && (flags & 3) != 0)
        return 0;
    if (!name_matches())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_open open = { .path = path, .flags = flags, .mode = mode };
    if (pending.update(&tid, &open))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

PTK_INLINE int exit_open(long ret)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct pending_open *open = pending.lookup(&tid);
    if (!open)
        return 0;
    if (FAILED_ONLY && ret >= 0) {
        pending.delete(&tid);
        return 0;
    }
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        pending.delete(&tid);
        return 0;
    }
    e->ts = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->uid = bpf_get_current_uid_gid();
    e->ret = ret;
    e->flags = open->flags;
    e->mode = open->mode;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_probe_read_user_str(&e->path, sizeof(e->path), open->path);
    pending.delete(&tid);
    ptk_submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return enter_open(args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return enter_open(args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    struct open_how how = {};
    bpf_probe_read_user(&how, sizeof(how), args->how);
    return enter_open(args->filename, how.flags, how.mode);
}

TRACEPOINT_PROBE(syscalls, sys_exit_open) { return exit_open(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return exit_open(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return exit_open(args->ret); }

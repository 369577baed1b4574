/* ptk_pathcall.h: system calls that take a path, reported as they return
 * (opensnoop, statsnoop). Pasted in by pytracekit/collect/stream.py.
 *
 * path_call_enter() remembers the path pointer and flags per thread after the
 * filters (all compiled in: pid, tid, uid, flags, process name);
 * path_call_exit() reads the path and emits one `struct event`. */
#ifndef PTK_PATHCALL_H
#define PTK_PATHCALL_H

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

struct pending_call {
    const char *path;
    u32 flags;
    u32 mode;
};

BPF_HASH(pending, u32, struct pending_call, 10240);

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

PTK_INLINE int path_call_enter(const char *path, u32 flags, u32 mode)
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
    struct pending_call call = { .path = path, .flags = flags, .mode = mode };
    if (pending.update(&tid, &call))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

PTK_INLINE int path_call_exit(long ret)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct pending_call *call = pending.lookup(&tid);
    if (!call)
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
    e->flags = call->flags;
    e->mode = call->mode;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_read_user_str(e->path, sizeof(e->path), call->path);
    pending.delete(&tid);
    ptk_submit(e, sizeof(*e));
    return 0;
}

#endif /* PTK_PATHCALL_H */

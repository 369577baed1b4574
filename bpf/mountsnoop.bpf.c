/* mountsnoop: one event per mount(), umount2(), fsopen(), fsmount() and
 * move_mount() that returns. The enter tracepoint keeps the arguments per
 * thread; the exit reads the strings (the kernel has just read them: paged
 * in) and emits with the result and the caller's mount namespace. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FAILED_ONLY
#define FAILED_ONLY 0
#endif
#define STR_LEN 128

enum call { CALL_MOUNT = 1, CALL_UMOUNT, CALL_FSOPEN, CALL_FSMOUNT, CALL_MOVE_MOUNT };

struct pending_call {
    u64 arg[5];
    u32 call;
};

BPF_HASH(pending, u32, struct pending_call, 10240);

struct event {
    u64 ts;
    u64 arg[5];                /* the integer arguments (string ones: their pointers) */
    s64 ret;
    u32 pid;
    u32 tid;
    u32 mnt_ns;
    u32 call;
    char comm[TASK_COMM_LEN];
    char str[4][STR_LEN];      /* the string arguments, in order */
};

PTK_INLINE void remember(u32 call, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4)
{
    if (!ptk_selected())
        return;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_call p = { .arg = { a0, a1, a2, a3, a4 }, .call = call };
    if (pending.update(&tid, &p))
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE u32 mount_namespace(void)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct nsproxy *ns = NULL;
    struct mnt_namespace *mnt = NULL;
    u32 inum = 0;
    PTK_READ_FIELD(ns, task, struct task_struct, nsproxy);
    if (ns)
        PTK_READ_FIELD(mnt, ns, struct nsproxy, mnt_ns);
    if (mnt)
        PTK_READ_FIELD(inum, mnt, struct mnt_namespace, ns.inum);
    return inum;
}

/* which arguments are strings, per call (bit i: arg[i]) */
PTK_INLINE u32 string_args(u32 call)
{
    switch (call) {
    case CALL_MOUNT: return 0x17;        /* source, target, fstype, data */
    case CALL_UMOUNT: return 0x1;
    case CALL_FSOPEN: return 0x1;
    case CALL_MOVE_MOUNT: return 0xa;    /* from_path, to_path */
    default: return 0;
    }
}

PTK_INLINE void emit(s64 ret)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct pending_call *p = pending.lookup(&tid);
    if (!p)
        return;
    struct pending_call saved = *p;
    pending.delete(&tid);
    if (FAILED_ONLY && ret >= 0)
        return;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts = bpf_ktime_get_ns();
    e->ret = ret;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->mnt_ns = mount_namespace();
    e->call = saved.call;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    u32 strings = string_args(saved.call);
    u32 slot = 0;
#pragma unroll
    for (int i = 0; i < 5; i++) {
        e->arg[i] = saved.arg[i];
        if ((strings >> i) & 1) {
            if (slot < 4)
                ptk_read_user_str(e->str[slot & 3], STR_LEN, (const void *)saved.arg[i]);
            slot++;
        }
    }
    for (u32 s = slot; s < 4; s++)
        e->str[s & 3][0] = 0;
    ptk_submit(e, sizeof(*e));
}

TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    remember(CALL_MOUNT, (u64)args->dev_name, (u64)args->dir_name, (u64)args->type,
             args->flags, (u64)args->data);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_umount)
{
    remember(CALL_UMOUNT, (u64)args->name, args->flags, 0, 0, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_fsopen)
{
    remember(CALL_FSOPEN, (u64)args->_fs_name, args->flags, 0, 0, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_fsmount)
{
    remember(CALL_FSMOUNT, args->fs_fd, args->flags, args->attr_flags, 0, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_move_mount)
{
    remember(CALL_MOVE_MOUNT, args->from_dfd, (u64)args->from_pathname, args->to_dfd,
             (u64)args->to_pathname, args->flags);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_mount)
{
    emit(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_umount)
{
    emit(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_fsopen)
{
    emit(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_fsmount)
{
    emit(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_move_mount)
{
    emit(args->ret);
    return PTK_TP_PASS;
}

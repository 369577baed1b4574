/* execsnoop: one event per exec().
 *
 * A successful exec is reported from sched:sched_process_exec, in the new
 * process: its arguments are read in one copy from the new image's argument
 * area (mm->arg_start..arg_end). A failed one (-x) is reported from the
 * syscall's exit, with the arguments read through the argv pointers the
 * enter tracepoint kept (the caller's memory is still there). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_UID
#define FILTER_UID -1
#endif
#ifndef FILTER_PPID            /* only children of this process; 0: any */
#define FILTER_PPID 0
#endif
#ifndef FAILED_TOO
#define FAILED_TOO 0
#endif
#ifndef MAX_ARGS
#define MAX_ARGS 20
#endif
#define ARGS_BYTES 4096          /* a power of two */
#define ARG_BYTES 256            /* one argument, failed execs only */
#define PATH_BYTES 256

struct pending_exec {
    const char *filename;
    const char *const *argv;
};

BPF_HASH(pending, u32, struct pending_exec, 10240);

struct event {
    u64 ts;
    u32 pid;
    u32 ppid;
    u32 uid;
    s32 ret;
    u32 args_len;
    u32 truncated;
    char comm[TASK_COMM_LEN];
    char filename[PATH_BYTES];
    char args[ARGS_BYTES];       /* NUL-separated, argv[0] first */
};

PTK_INLINE u32 parent_pid(void)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct task_struct *parent = NULL;
    u32 ppid = 0;
    PTK_READ_FIELD(parent, task, struct task_struct, real_parent);
    PTK_READ_FIELD(ppid, parent, struct task_struct, tgid);
    return ppid;
}

PTK_INLINE bool task_selected(void)
{
    if (FILTER_PPID && parent_pid() != FILTER_PPID)
        return false;
    return FILTER_UID < 0 || (u32)bpf_get_current_uid_gid() == (u32)FILTER_UID;
}

PTK_INLINE struct event *new_event(s32 ret)
{
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return NULL;
    }
    e->ppid = parent_pid();
    e->ts = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->uid = bpf_get_current_uid_gid();
    e->ret = ret;
    e->args_len = 0;
    e->truncated = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    if (!ptk_selected() || !task_selected())
        return PTK_TP_PASS;
    struct event *e = new_event(0);
    if (!e)
        return PTK_TP_PASS;
    u32 loc = args->data_loc_filename;
    bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), (void *)args + (loc & 0xFFFF));
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct mm_struct *mm = NULL;
    u64 start = 0, end = 0;
    PTK_READ_FIELD(mm, task, struct task_struct, mm);
    PTK_READ_FIELD(start, mm, struct mm_struct, arg_start);
    PTK_READ_FIELD(end, mm, struct mm_struct, arg_end);
    u64 len = end - start;
    if (len > ARGS_BYTES - 1) {
        len = ARGS_BYTES - 1;
        e->truncated = 1;
    }
    len &= ARGS_BYTES - 1;
    if (bpf_probe_read_user(&e->args, len, (void *)start) == 0)
        e->args_len = len;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}

PTK_INLINE int enter_exec(const char *filename, const char *const *argv)
{
    if (!FAILED_TOO || !ptk_selected() || !task_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_exec exec = { .filename = filename, .argv = argv };
    if (pending.update(&tid, &exec))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

PTK_INLINE int exit_exec(long ret)
{
    if (!FAILED_TOO)
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_exec *exec = pending.lookup(&tid);
    if (!exec)
        return 0;
    struct pending_exec saved = *exec;
    pending.delete(&tid);
    if (ret >= 0)                 /* reported by sched_process_exec */
        return 0;
    struct event *e = new_event(ret);
    if (!e)
        return 0;
    bpf_probe_read_user_str(&e->filename, sizeof(e->filename), saved.filename);
    u32 off = 0;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        bpf_probe_read_user(&arg, sizeof(arg), &saved.argv[i]);
        if (!arg)
            goto done;
        if (off > ARGS_BYTES - ARG_BYTES) {
            e->truncated = 1;
            goto done;
        }
        long n = bpf_probe_read_user_str(&e->args[off], ARG_BYTES, arg);
        if (n <= 0)
            goto done;
        off += n;
    }
    const char *more = NULL;      /* MAX_ARGS read: is there another? */
    bpf_probe_read_user(&more, sizeof(more), &saved.argv[MAX_ARGS]);
    e->truncated = more != NULL;
done:
    e->args_len = off;
    ptk_submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    enter_exec(args->filename, args->argv);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    enter_exec(args->filename, args->argv);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve) { exit_exec(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_execveat) { exit_exec(args->ret); return PTK_TP_PASS; }

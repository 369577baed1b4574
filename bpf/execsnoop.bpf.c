/* execsnoop: one event per exec().
 *
 * A successful exec is reported from sched:sched_process_exec, in the new
 * process: its arguments are read in one copy from the new image's argument
 * area (mm->arg_start..arg_end), which the kernel has just written (the
 * caller's strings may not be paged in: a child right after fork has no page
 * tables yet for the parent's string literals). For a script that area holds
 * the interpreter's rewritten argv (`/bin/sh ./s.sh a b` for `./s.sh a b`):
 * the enter tracepoint counts the argv the caller passed, and the front-end
 * shows that many words from the area's end, as BCC shows what was executed.
 * A failed exec (-x) is reported from the syscall's exit, with the arguments
 * read through the argv pointers the enter tracepoint kept (the caller's
 * memory is still there). */
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
#define UNREADABLE_ARGS 2         /* `truncated` bit: an argument could not be read */
#define COUNT_ARGS 1024          /* argv counted up to this; past it: 0, unknown */

struct pending_exec {
    const char *filename;
    const char *const *argv;
    u32 argc;                    /* as passed; 0: not known */
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
    u32 argc;                    /* the argv passed (0: not known) */
    u32 pad;
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
    e->argc = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old_pid = args->old_pid;   /* the exec'ing thread, before it became the leader */
    struct pending_exec *exec = pending.lookup(&old_pid);
    u32 argc = exec ? exec->argc : 0;
    if (exec)
        pending.delete(&old_pid);
    if (!ptk_selected() || !task_selected())
        return PTK_TP_PASS;
    struct event *e = new_event(0);
    if (!e)
        return PTK_TP_PASS;
    e->argc = argc;
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
    if (bpf_probe_read_user(&e->args, len, (void *)start) == 0) {
        e->args_len = len;
    } else {
        e->truncated |= UNREADABLE_ARGS;
        ptk_count_loss(PTK_UNREADABLE_STRINGS);
    }
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}

/* How many argv pointers the caller passed (the array is on its stack). */
PTK_INLINE u32 count_args(const char *const *argv)
{
    u32 n = 0;
    for (u32 i = 0; i < COUNT_ARGS; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), (void *)argv + i * sizeof(arg)) != 0)
            return 0;
        if (!arg)
            return n;
        n++;
    }
    return 0;
}

PTK_INLINE int enter_exec(const char *filename, const char *const *argv)
{
    if (!ptk_selected() || !task_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_exec exec = { .filename = filename, .argv = argv,
                                 .argc = count_args(argv) };
    if (pending.update(&tid, &exec))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

PTK_INLINE int exit_exec(long ret)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_exec *exec = pending.lookup(&tid);
    if (!exec)
        return 0;                 /* a successful exec: sched_process_exec took it */
    struct pending_exec saved = *exec;
    pending.delete(&tid);
    if (!FAILED_TOO || ret >= 0)
        return 0;
    struct event *e = new_event(ret);
    if (!e)
        return 0;
    ptk_read_user_str(e->filename, sizeof(e->filename), saved.filename);
    u32 off = 0;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        bpf_probe_read_user(&arg, sizeof(arg), &saved.argv[i]);
        if (!arg)
            goto done;
        if (off > ARGS_BYTES - ARG_BYTES) {
            e->truncated |= 1;
            goto done;
        }
        long n = bpf_probe_read_user_str(&e->args[off], ARG_BYTES, arg);
        if (n <= 0) {
            e->truncated |= UNREADABLE_ARGS;
            ptk_count_loss(PTK_UNREADABLE_STRINGS);
            goto done;
        }
        off += n;
    }
    const char *more = NULL;      /* MAX_ARGS read: is there another? */
    bpf_probe_read_user(&more, sizeof(more), &saved.argv[MAX_ARGS]);
    if (more)
        e->truncated |= 1;
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

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    exit_exec(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    exit_exec(args->ret);
    return PTK_TP_PASS;
}

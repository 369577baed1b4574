/* Which processes (or threads) a run follows: the one implementation of
 * "this process and the children it forks" (pytracekit/engine/follow.py).
 * Pasted in place of its #include by the loader, like every ptk_*.h.
 *
 * FOLLOW_MODE 0: every process. 1: the process FOLLOW_PID (all its threads),
 * like perf's -p. 2: a command pytracekit started: from its exec on (so the
 * launcher's own calls between fork and exec are not counted), with every
 * process it forks, like perf's `-- COMMAND` (enable_on_exec + inherit).
 * 3: the processes user space puts in `followed` (several -p pids). 4: the
 * threads user space puts in `followed` (-t tids; ptk_followed_thread).
 * The command's pid is FOLLOW_ROOT, a run-time id (a ptk_config slot, see
 * pytracekit.h), so one program serves several runs (stat -r rewrites it).
 * FOLLOW_KEEPS_FREED 1: a followed process stays in `followed` after it is
 * freed (top lists the command's exited processes from the map). */
#ifndef PTK_FOLLOW_H
#define PTK_FOLLOW_H

#ifndef FOLLOW_MODE
#define FOLLOW_MODE 0
#endif
#ifndef FOLLOW_PID
#define FOLLOW_PID 0
#endif
#ifndef FOLLOW_ROOT
#define FOLLOW_ROOT 0
#endif
#ifndef FOLLOW_KEEPS_FREED
#define FOLLOW_KEEPS_FREED 0
#endif

/* tgids (modes 2, 3) or tids (mode 4); not preallocated: written by user
 * space and the exec and fork tracepoints only (process context) */
BPF_F_TABLE("hash", u32, u8, followed, 10240, BPF_F_NO_PREALLOC);

#if FOLLOW_MODE == 2
PTK_INLINE void ptk_follow_exec(void)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid == FOLLOW_ROOT) {
        u8 yes = 1;
        if (followed.update(&tgid, &yes) != 0)
            ptk_count_loss(PTK_MAP_FULL);
    }
}

/* A program with its own sched_process_exec probe (one per program) defines
 * PTK_CALLS_FOLLOW_EXEC and calls ptk_follow_exec() first in it. */
#ifndef PTK_CALLS_FOLLOW_EXEC
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    ptk_follow_exec();
    return PTK_TP_PASS;
}
#endif

PTK_INLINE void ptk_follow_fork(struct task_struct *child)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 pid = 0, tgid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), &child->pid);
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &child->tgid);
    if (pid != tgid || !followed.lookup(&parent))
        return;   /* a new thread is followed through its process already */
    u8 yes = 1;
    if (followed.update(&tgid, &yes) != 0)
        ptk_count_loss(PTK_MAP_FULL);
}

/* A program with its own raw sched_process_fork probe (one per program)
 * defines PTK_CALLS_FOLLOW_FORK and calls ptk_follow_fork() in it. */
#ifndef PTK_CALLS_FOLLOW_FORK
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    ptk_follow_fork((struct task_struct *)ctx->args[1]);
    return 0;
}
#endif

/* Forgotten when freed, not at exit: a tool may count the exit itself. A
 * freed thread's tid is never a followed tgid, so deleting it is harmless. */
#if !FOLLOW_KEEPS_FREED
PTK_INLINE void ptk_follow_free(u32 pid)
{
    followed.delete(&pid);
}

/* A program with its own raw sched_process_free probe defines
 * PTK_CALLS_FOLLOW_FREE and calls ptk_follow_free() in it. Raw: see ptk_stacks.h. */
#ifndef PTK_CALLS_FOLLOW_FREE
RAW_TRACEPOINT_PROBE(sched_process_free)   /* (struct task_struct *p) */
{
    u32 pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), &((struct task_struct *)ctx->args[0])->pid);
    ptk_follow_free(pid);
    return 0;
}
#endif
#endif
#endif

#if FOLLOW_MODE != 2
PTK_INLINE void ptk_follow_exec(void) {}
PTK_INLINE void ptk_follow_fork(struct task_struct *child) {}
#endif
#if FOLLOW_MODE != 2 || FOLLOW_KEEPS_FREED
PTK_INLINE void ptk_follow_free(u32 pid) {}
#endif

/* Whether the process is followed; by thread (mode 4) every process is,
 * ptk_followed_thread says which of its threads. */
PTK_INLINE bool ptk_followed(u32 tgid)
{
    if (FOLLOW_MODE == 1)
        return tgid == FOLLOW_PID;
    if (FOLLOW_MODE == 2 || FOLLOW_MODE == 3)
        return followed.lookup(&tgid) != 0;
    return true;
}

PTK_INLINE bool ptk_followed_thread(u32 tgid, u32 tid)
{
    if (FOLLOW_MODE == 4)
        return followed.lookup(&tid) != 0;
    return ptk_followed(tgid);
}

/* The command's own execve enters before the command is followed (it is
 * followed from its exec on): a tool timing calls from sys_enter starts the
 * clock on that one too, or -L would leave the command's exec out. */
#ifndef FOLLOW_NR_EXECVE
#define FOLLOW_NR_EXECVE 59
#endif
#ifndef FOLLOW_NR_EXECVEAT
#define FOLLOW_NR_EXECVEAT 322
#endif
PTK_INLINE bool ptk_is_exec_nr(long nr)
{
    return nr == FOLLOW_NR_EXECVE || nr == FOLLOW_NR_EXECVEAT;
}

PTK_INLINE bool ptk_command_entering_exec(u32 tgid, long nr)
{
#if FOLLOW_MODE == 2
    return ptk_is_exec_nr(nr) && tgid == FOLLOW_ROOT;
#else
    return false;
#endif
}

#endif /* PTK_FOLLOW_H */

/* vfsstat: BCC's five VFS counts, taken at the system-call level (BCC's
 * vfs_read/vfs_write/vfs_fsync_range/vfs_open/vfs_create need kprobes):
 * each syscall's sys_enter tracepoint counts one call of its kind, per CPU,
 * into running totals never cleared (user space prints the growth, so
 * nothing is lost between a read and a clear). */
#include "vmlinux.h"
#include "pytracekit.h"

enum stat_kind { S_READ, S_WRITE, S_FSYNC, S_OPEN, S_CREATE, S_KINDS };

#ifndef O_CREAT
#define O_CREAT 0100
#endif

BPF_PERCPU_ARRAY(stats, u64, S_KINDS);

static inline void count(u32 kind)
{
    u64 *value = stats.lookup(&kind);
    if (value)
        (*value)++;
}

static inline void count_open(u64 flags)
{
    if (!ptk_selected())
        return;
    count(S_OPEN);
    if (flags & O_CREAT)
        count(S_CREATE);
}

/* Written out one by one: the header generator finds each tracepoint's field
 * types by its TRACEPOINT_PROBE line. */
TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    if (ptk_selected())
        count(S_READ);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_pread64)
{
    if (ptk_selected())
        count(S_READ);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_readv)
{
    if (ptk_selected())
        count(S_READ);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_preadv)
{
    if (ptk_selected())
        count(S_READ);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_preadv2)
{
    if (ptk_selected())
        count(S_READ);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write)
{
    if (ptk_selected())
        count(S_WRITE);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_pwrite64)
{
    if (ptk_selected())
        count(S_WRITE);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_writev)
{
    if (ptk_selected())
        count(S_WRITE);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_pwritev)
{
    if (ptk_selected())
        count(S_WRITE);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_pwritev2)
{
    if (ptk_selected())
        count(S_WRITE);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_fsync)
{
    if (ptk_selected())
        count(S_FSYNC);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_fdatasync)
{
    if (ptk_selected())
        count(S_FSYNC);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open_by_handle_at)
{
    if (ptk_selected())
        count(S_OPEN);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    count_open(args->flags);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    count_open(args->flags);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    count_open(O_CREAT);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 flags = 0;   /* struct open_how starts with its flags */
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->how);
    count_open(flags);
    return PTK_TP_PASS;
}

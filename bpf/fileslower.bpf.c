/* fileslower: reads and writes slower than MIN_NS, one event each.
 *
 * Without kprobes on vfs_read/vfs_write: the read and write system calls
 * (read, write, pread64, pwrite64, readv, writev) keep their fd and start
 * time at entry; at exit a call at least MIN_NS long is followed to its file
 * (ptk_file.h) and reported with the bytes it returned. Failed calls are not
 * reported. ALL_FILES: 0 regular files only (as BCC without -a).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_file.h"

#ifndef MIN_NS
#define MIN_NS 10000000ULL
#endif
#ifndef ALL_FILES
#define ALL_FILES 0
#endif
#ifndef MAX_CALLS
#define MAX_CALLS 10240
#endif

struct call {
    u64 ts_ns;
    u32 fd;
    u32 pad;
};

struct event {
    u64 ts_ns;
    u64 latency_ns;
    s64 bytes;
    u32 pid;
    u32 tid;
    char direction;     /* 'R' or 'W' */
    char type;          /* 'R' regular, 'S' socket, 'O' other */
    char pad[6];
    char comm[TASK_COMM_LEN];
    char name[PTK_FILE_NAME_BYTES];
};

BPF_HASH(calls, u32, struct call, MAX_CALLS);     /* tid -> its read/write */

PTK_INLINE void call_enter(u32 fd)
{
    if (!ptk_selected())
        return;
    u32 tid = bpf_get_current_pid_tgid();
    struct call c = { .ts_ns = bpf_ktime_get_ns(), .fd = fd };
    if (calls.update(&tid, &c) != 0)
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE void call_exit(long ret, char direction)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct call *found = calls.lookup(&tid);
    if (!found)
        return;
    struct call c = *found;
    calls.delete(&tid);
    u64 now = bpf_ktime_get_ns();
    if (ret < 0 || now - c.ts_ns < MIN_NS)
        return;
    struct file *file = ptk_file_of_fd(c.fd);
    if (!file)
        return;
    char type = ptk_file_type(file);
    if (!ALL_FILES && type != 'R')
        return;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts_ns = now;
    e->latency_ns = now - c.ts_ns;
    e->bytes = ret;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->direction = direction;
    e->type = type;
    __builtin_memset(e->pad, 0, sizeof(e->pad));
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_file_name(file, e->name, sizeof(e->name));
    ptk_submit(e, sizeof(*e));
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pread64) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pwrite64) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { call_exit(args->ret, 'R'); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pread64) { call_exit(args->ret, 'R'); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { call_exit(args->ret, 'R'); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { call_exit(args->ret, 'W'); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pwrite64) { call_exit(args->ret, 'W'); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { call_exit(args->ret, 'W'); return PTK_TP_PASS; }

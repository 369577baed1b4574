/* filetop: reads and writes per thread and file, summed in the kernel and
 * read (then cleared) every interval.
 *
 * Without kprobes on vfs_read/vfs_write: the read and write system calls
 * (read, write, pread64, pwrite64, readv, writev, preadv,
 * pwritev, preadv2, pwritev2) keep their fd at entry;
 * at exit the fd is followed to the file (ptk_file.h) and the call and the
 * bytes it moved (its return value, not the size asked for) are added. A
 * failed call is not counted. Files are told apart by device and inode, named
 * by their dentry. ALL_FILES: 0 regular files only (as BCC without -a).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_file.h"

#ifndef ALL_FILES
#define ALL_FILES 0
#endif
#ifndef MAX_FILES
#define MAX_FILES 16384
#endif
#ifndef MAX_CALLS
#define MAX_CALLS 10240
#endif

struct file_key {
    u64 ino;
    u32 dev;
    u32 pid;
    u32 tid;
    char type;
    char pad[3];
    char comm[TASK_COMM_LEN];
    char name[PTK_FILE_NAME_BYTES];
};

struct file_io {
    u64 reads;
    u64 writes;
    u64 rbytes;
    u64 wbytes;
};

BPF_HASH(calls, u32, u32, MAX_CALLS);             /* tid -> fd of its read/write */
BPF_HASH(files, struct file_key, struct file_io, MAX_FILES);
BPF_PERCPU_ARRAY(key_buf, struct file_key, 1);   /* too large for the stack with the rest */

PTK_INLINE void call_enter(u32 fd)
{
    if (!ptk_selected())
        return;
    u32 tid = bpf_get_current_pid_tgid();
    if (calls.update(&tid, &fd) != 0)
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE void call_exit(long ret, bool write)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u32 *fdp = calls.lookup(&tid);
    if (!fdp)
        return;
    u32 fd = *fdp;
    calls.delete(&tid);
    if (ret < 0)
        return;
    struct file *file = ptk_file_of_fd(fd);
    if (!file)
        return;
    char type = ptk_file_type(file);
    if (!ALL_FILES && type != 'R')
        return;
    int zero = 0;
    struct file_key *key = key_buf.lookup(&zero);
    if (!key)
        return;
    __builtin_memset(key, 0, sizeof(*key));
    struct inode *inode = NULL;
    struct super_block *sb = NULL;
    PTK_READ_FIELD(inode, file, struct file, f_inode);
    PTK_READ_FIELD(key->ino, inode, struct inode, i_ino);
    PTK_READ_FIELD(sb, inode, struct inode, i_sb);
    PTK_READ_FIELD(key->dev, sb, struct super_block, s_dev);
    key->pid = pid_tgid >> 32;
    key->tid = tid;
    key->type = type;
    bpf_get_current_comm(&key->comm, sizeof(key->comm));
    ptk_file_name(file, key->name, sizeof(key->name));
    struct file_io none = {}, *io = files.lookup_or_try_init(key, &none);
    if (!io) {
        ptk_count_loss(PTK_MAP_FULL);
        return;
    }
    if (write) {
        __sync_fetch_and_add(&io->writes, 1);
        __sync_fetch_and_add(&io->wbytes, ret);
    } else {
        __sync_fetch_and_add(&io->reads, 1);
        __sync_fetch_and_add(&io->rbytes, ret);
    }
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pread64) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pwrite64) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { call_exit(args->ret, false); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pread64) { call_exit(args->ret, false); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { call_exit(args->ret, false); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { call_exit(args->ret, true); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pwrite64) { call_exit(args->ret, true); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { call_exit(args->ret, true); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_preadv) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_preadv2) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev2) { call_enter(args->fd); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_preadv) { call_exit(args->ret, false); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_preadv2) { call_exit(args->ret, false); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pwritev) { call_exit(args->ret, true); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_pwritev2) { call_exit(args->ret, true); return PTK_TP_PASS; }

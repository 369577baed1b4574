/* biotop: block I/O per process, direction and disk, summed in the kernel
 * and read (then cleared) every interval.
 *
 * A request is followed from block:block_io_start (the process that started
 * it: pid and comm, as BCC takes them at submission) through issue to
 * block:block_rq_complete (ptk_block.h); at completion its count, bytes and
 * issue-to-completion time are added. A request whose start was not seen
 * (issued before the tool attached, or by a path that does not fire
 * block_io_start) is counted under pid 0 and the comm of whoever issued it.
 * FILTER_PID: only requests the selected process started.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_block.h"

#ifndef MAX_ROWS
#define MAX_ROWS 10240
#endif

struct io_key {
    u32 pid;
    u32 dev;
    char rw;            /* 'R' or 'W' */
    char pad[7];
    char comm[TASK_COMM_LEN];
};

struct io_sum {
    u64 io;
    u64 bytes;
    u64 ns;
};

BPF_HASH(io_by_process, struct io_key, struct io_sum, MAX_ROWS);

TRACEPOINT_PROBE(block, block_io_start)
{
    if (FILTER_PID && !ptk_selected())
        return PTK_TP_PASS;
    block_note(args->dev, args->sector, BLOCK_START, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_start start;
    if (!block_take(args->dev, args->sector, &start))
        return PTK_TP_PASS;
    if (FILTER_PID && !start.pid)           /* not started by the selected process */
        return PTK_TP_PASS;
    struct io_key key = { .pid = start.pid, .dev = args->dev, .rw = 'R' };
    char rwbs[8] = {};
    bpf_probe_read_kernel(rwbs, sizeof(rwbs), args->rwbs);
#pragma unroll
    for (int i = 0; i < sizeof(rwbs); i++)
        if (rwbs[i] == 'W')
            key.rw = 'W';
    __builtin_memcpy(key.comm, start.comm, sizeof(key.comm));
    if (!start.comm[0])
        bpf_get_current_comm(&key.comm, sizeof(key.comm));
    struct io_sum zero = {}, *sum = io_by_process.lookup_or_try_init(&key, &zero);
    if (!sum) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    __sync_fetch_and_add(&sum->io, 1);
    __sync_fetch_and_add(&sum->bytes, start.bytes);
    __sync_fetch_and_add(&sum->ns, bpf_ktime_get_ns() - start.issued);
    return PTK_TP_PASS;
}

/* oomkill: one event per OOM kill, from oom:mark_victim, which the kernel
 * fires in the task whose allocation triggered the kill (memcg or global)
 * with the victim's pid, name and memory. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

struct event {
    u64 ts;
    u64 total_vm;              /* kB, as the tracepoint gives them */
    u64 anon_rss;
    u64 file_rss;
    u64 shmem_rss;
    u64 pgtables;
    u32 pid;                   /* the triggering process and thread */
    u32 tid;
    s32 victim;
    u32 uid;                   /* the victim's */
    s32 oom_score_adj;
    u32 pad;
    char comm[TASK_COMM_LEN];
    char victim_comm[TASK_COMM_LEN];
};

TRACEPOINT_PROBE(oom, mark_victim)
{
    /* -p / -- COMMAND: kills it triggered, or of it */
    if (!ptk_selected() && !(FILTER_PID && args->pid == FILTER_PID))
        return PTK_TP_PASS;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->total_vm = args->total_vm;
    e->anon_rss = args->anon_rss;
    e->file_rss = args->file_rss;
    e->shmem_rss = args->shmem_rss;
    e->pgtables = args->pgtables;
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->victim = args->pid;
    e->uid = args->uid;
    e->oom_score_adj = args->oom_score_adj;
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    u32 loc = args->data_loc_comm;
    bpf_probe_read_kernel_str(&e->victim_comm, sizeof(e->victim_comm),
                              (void *)args + (loc & 0xFFFF));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}

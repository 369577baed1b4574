/* The sample log (`record`, read by `pytracekit script`): with SAMPLE_LOG,
 * every counted sample or event is also sent, with its time, CPU and thread,
 * to the `sample_log` ring under the key it was counted with, so user space
 * can tie each one to its aggregated stack. A full ring is counted in
 * lost_events (the aggregate still has the sample).
 *
 * Parameters: SAMPLE_LOG (0: nothing is compiled), SAMPLE_LOG_PAGES.
 * Include after the header defining struct ptk_stack_key (pytracekit.h).
 */
#ifndef PTK_SAMPLE_LOG_H
#define PTK_SAMPLE_LOG_H

#ifndef SAMPLE_LOG
#define SAMPLE_LOG 0
#endif
#ifndef SAMPLE_LOG_PAGES
#define SAMPLE_LOG_PAGES 256
#endif

#if SAMPLE_LOG
/* pytracekit/collect/samplelog.py mirrors this layout */
struct ptk_sample_rec {
    u64 time_ns;       /* CLOCK_MONOTONIC, as perf's sample times */
    u64 weight;        /* what it added to its key's count (1, or ns blocked) */
    u64 py_stack_id;   /* the Python stack counted with it, 0 for none */
    u32 cpu;
    u32 tid;
    struct ptk_stack_key key;
};
BPF_RINGBUF_OUTPUT(sample_log, SAMPLE_LOG_PAGES);

/* A sample of thread `tid` at `time_ns` weighing `weight` (offcputime: the
 * time it went off CPU and how long it stayed off) */
PTK_INLINE void ptk_log_sample_at(struct ptk_stack_key *key, u64 py_stack_id, u32 tid,
                                  u64 time_ns, u64 weight)
{
    struct ptk_sample_rec *rec = sample_log.ringbuf_reserve(sizeof(struct ptk_sample_rec));
    if (!rec) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    rec->time_ns = time_ns;
    rec->weight = weight;
    rec->py_stack_id = py_stack_id;
    rec->cpu = bpf_get_smp_processor_id();
    rec->tid = tid;
    __builtin_memcpy(&rec->key, key, sizeof(struct ptk_stack_key));
    sample_log.ringbuf_submit(rec, 0);
}

/* A sample of the current thread, now, weighing 1 */
PTK_INLINE void ptk_log_sample(struct ptk_stack_key *key, u64 py_stack_id)
{
    ptk_log_sample_at(key, py_stack_id, (u32)bpf_get_current_pid_tgid(), bpf_ktime_get_ns(), 1);
}
#else
#define ptk_log_sample(key, py_stack_id) do {} while (0)
#define ptk_log_sample_at(key, py_stack_id, tid, time_ns, weight) do {} while (0)
#endif

#endif /* PTK_SAMPLE_LOG_H */

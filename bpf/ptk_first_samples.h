/* The first samples of a process the unwinder has not loaded yet (profile,
 * system-wide and the programs a -p process execs): instead of counting the
 * kernel's frame-pointer walk (wrong or short in code built without frame
 * pointers), a sample sends its key (that walk included), its user registers
 * and the top of its user stack to `first_samples`; user space unwinds the
 * copy with the same CFI tables once it has the process's mappings
 * (pytracekit/collect/first_samples.py), else counts the key as it is.
 * At most FIRST_SAMPLES_PER_PROC copies per program (an exec starts again);
 * a full ring or an unreadable stack leaves the sample to the fallback.
 * docs/design/unwinding.md §9 has the bounds' measurements.
 *
 * Pasted before ptk_stacks.h (its exec and exit probes reset the count).
 * Parameters: FIRST_SAMPLES (0: nothing is compiled), FIRST_SAMPLE_BYTES,
 * FIRST_SAMPLES_PER_PROC, FIRST_SAMPLES_PAGES.
 */
#ifndef PTK_FIRST_SAMPLES_H
#define PTK_FIRST_SAMPLES_H

#ifndef FIRST_SAMPLES
#define FIRST_SAMPLES 0
#endif

#if FIRST_SAMPLES   /* only with CFI_UNWIND: the fallback it replaces is ptk_unwind.h's */
#ifndef FIRST_SAMPLE_BYTES
#define FIRST_SAMPLE_BYTES 32768
#endif
#ifndef FIRST_SAMPLES_PER_PROC
#define FIRST_SAMPLES_PER_PROC 32
#endif
#ifndef FIRST_SAMPLES_PAGES
#define FIRST_SAMPLES_PAGES 1024   /* 4 MB: 124 copies */
#endif
/* read in aligned chunks: one never crosses a page, so the copy ends at the
 * first unmapped (or not present) page, the stack's end, with what came before */
#define PTK_COPY_CHUNK 512

struct ptk_first_sample {
    struct ptk_stack_key key;   /* as it would be counted: the frame-pointer walk */
    u64 ip;
    u64 sp;
    u64 bp;
    u64 base;                   /* the user address of stack[0] (sp rounded down) */
    u64 exe_ino;                /* the program's inode and text: a copy taken */
    u64 start_code;             /* before an exec is never unwound with the new maps */
    u32 len;                    /* bytes of stack[] read */
    u32 pad;
    u8 stack[FIRST_SAMPLE_BYTES];
};
BPF_RINGBUF_OUTPUT(first_samples, FIRST_SAMPLES_PAGES);
/* copies sent per process (deleted at its exec and exit: ptk_stacks.h) */
BPF_TABLE("lru_hash", u32, u32, first_copied, 10240);

/* Send this sample (key: its frame-pointer walk, counted in unwind_fallback)
 * as a copy instead of counting it: 1 sent (uncounted here), 0 count it. */
PTK_INLINE int ptk_copy_first(struct ptk_stack_key *key)
{
    u32 pid = key->pid, one = 1;
    u32 *copied = first_copied.lookup(&pid);
    if (copied && *copied >= FIRST_SAMPLES_PER_PROC)
        return 0;
    struct ptk_first_sample *rec = first_samples.ringbuf_reserve(sizeof(struct ptk_first_sample));
    if (!rec)
        return 0;
    void *task = bpf_get_current_task_btf();
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    bpf_probe_read_kernel(&rec->ip, sizeof(rec->ip), &regs->ip);
    bpf_probe_read_kernel(&rec->sp, sizeof(rec->sp), &regs->sp);
    bpf_probe_read_kernel(&rec->bp, sizeof(rec->bp), &regs->bp);
    u64 mm = 0, file = 0, inode = 0;
    rec->exe_ino = 0;
    rec->start_code = 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), task + __builtin_offsetof(struct task_struct, mm));
    if (mm) {
        bpf_probe_read_kernel(&file, sizeof(file),
                              (void *)mm + __builtin_offsetof(struct mm_struct, exe_file));
        bpf_probe_read_kernel(&rec->start_code, sizeof(rec->start_code),
                              (void *)mm + __builtin_offsetof(struct mm_struct, start_code));
    }
    if (file)
        bpf_probe_read_kernel(&inode, sizeof(inode),
                              (void *)file + __builtin_offsetof(struct file, f_inode));
    if (inode)
        bpf_probe_read_kernel(&rec->exe_ino, sizeof(rec->exe_ino),
                              (void *)inode + __builtin_offsetof(struct inode, i_ino));
    u64 base = rec->sp & ~(u64)(PTK_COPY_CHUNK - 1);
    u32 len = 0;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < FIRST_SAMPLE_BYTES / PTK_COPY_CHUNK; i++) {
        if (bpf_probe_read_user(rec->stack + i * PTK_COPY_CHUNK, PTK_COPY_CHUNK,
                                (void *)(base + i * PTK_COPY_CHUNK)))
            break;
        len += PTK_COPY_CHUNK;
    }
    if (len == 0) {
        first_samples.ringbuf_discard(rec, 0);
        return 0;
    }
    __builtin_memcpy(&rec->key, key, sizeof(struct ptk_stack_key));
    rec->base = base;
    rec->len = len;
    rec->pad = 0;
    first_samples.ringbuf_submit(rec, 0);
    if (copied)
        __sync_fetch_and_add(copied, 1);
    else
        first_copied.update(&pid, &one);
    /* the walk's count taken back (on this CPU, where it was just added):
     * user space counts the copy if it cannot unwind it */
    u32 slot = PTK_UNWIND_FALLBACK;
    u64 *fallbacks = ptk_loss.lookup(&slot);
    if (fallbacks)
        *fallbacks -= 1;
    return 1;
}
#endif

#endif /* PTK_FIRST_SAMPLES_H */

/* Kernel stacks stored in `kstacks` under a 64-bit hash of their frames
 * (KSTACK_HASH=1): keys that never collide, unlike a stack map's buckets,
 * whose collisions drop stacks. User space: symbols.Symbolizer's
 * hashed_kernel_stack. Pasted before ptk_stacks.h (profile, offcputime,
 * offwaketime, wakeuptime) or by an event tool (stackcount), like
 * pytracekit.h. Parameters: KSTACK_HASH, KSTACKS_SIZE (distinct stacks).
 */
#ifndef PTK_KSTACK_H
#define PTK_KSTACK_H

#ifndef KSTACK_HASH
#define KSTACK_HASH 0
#endif
#ifndef KSTACKS_SIZE
#define KSTACKS_SIZE 16384
#endif
#define PTK_KSTACK_DEPTH 127   /* kernel.perf_event_max_stack's default */

#if KSTACK_HASH
struct ptk_kstack {
    u32 len;
    u32 pad;
    u64 ips[PTK_KSTACK_DEPTH];
};
PTK_PROBE_HASH(kstacks, u64, struct ptk_kstack, KSTACKS_SIZE);   /* see pytracekit.h */
BPF_PERCPU_ARRAY(kstack_scratch, struct ptk_kstack, 1);

/* The current kernel stack into `kstacks`: returns its hash (0: none) and
 * sets *stack_id for a key's s32 kernel stack id: -EFAULT ("no stack in a
 * stack map") when stored or when there is no kernel stack, else the error
 * (counted; -ENOMEM when `kstacks` is full). */
PTK_INLINE u64 ptk_kernel_stack_hash(void *ctx, s32 *stack_id)
{
    u32 zero = 0;
    *stack_id = -14;   /* EFAULT */
    struct ptk_kstack *ks = kstack_scratch.lookup(&zero);
    if (!ks)
        return 0;
    /* the helper zeroes the buffer past the stack: hash every word, no branch per depth */
    long n = bpf_get_stack(ctx, ks->ips, sizeof(ks->ips), 0);
    if (n <= 0) {
        *stack_id = n ? ptk_checked_stack_id(n) : -14;
        return 0;
    }
    u64 hash = ptk_hash_words(0xcbf29ce484222325ULL, ks->ips, PTK_KSTACK_DEPTH);
    ks->len = n / sizeof(u64);
    ks->pad = 0;
    hash = ptk_mix(hash, ks->len);
    hash = hash ? hash : 1;   /* 0 means "not in kstacks" */
    if (!kstacks.lookup(&hash)) {
        int err = kstacks.insert(&hash, ks);
        if (err && err != -17 /* EEXIST: another CPU stored it first */) {
            ptk_count_loss(PTK_STACK_ERRORS);
            *stack_id = -12;   /* ENOMEM: missed */
            return 0;
        }
    }
    return hash;
}
#endif /* KSTACK_HASH */
#endif /* PTK_KSTACK_H */

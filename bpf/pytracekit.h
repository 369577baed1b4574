/* Shared by every pytracekit BPF program.
 *
 * The loader pastes this file in place of `#include "pytracekit.h"`: BCC
 * rewrites map calls (`map.lookup()`) only in the main file, and the loss
 * counters below need them. Kernel types come from the per-program
 * vmlinux.h, generated from BTF.
 *
 * Parameters arrive as -D flags; each has a default here so a program
 * compiles on its own (the dry run and --ebpf show it that way).
 */
#ifndef PYTRACEKIT_H
#define PYTRACEKIT_H

#define PTK_INLINE static inline __attribute__((always_inline))

/* A hash map a probe inserts into. In a program that defines
 * PTK_PROBE_MAPS_FILLED_ON_INSERT (profile: the sampling interrupt, once per
 * CPU and sample) it is not preallocated: since Linux 6.1 its elements come
 * from per-CPU caches (bpf_mem_alloc) that irq_work tops up right after the
 * probe, and a full map still refuses an insert (-E2BIG, counted as a loss as
 * before); preallocating zeroed the whole capacity at every start (~2.5 ms of
 * CPU per 16 MB map). Elsewhere it is: a sched_switch program inserts in
 * bursts faster than irq_work refills the cache, and an insert failed
 * (-ENOMEM: a kernel stack lost by offwaketime, tests/test_kstacks_hashed.py). */
#if defined(PTK_PROBE_MAPS_FILLED_ON_INSERT) && PTK_PROBE_MAPS_FILLED_ON_INSERT
#define PTK_PROBE_HASH(name, key_type, leaf_type, size) \
    BPF_F_TABLE("hash", key_type, leaf_type, name, size, BPF_F_NO_PREALLOC)
#else   /* BPF_HASH's own expansion */
#define PTK_PROBE_HASH(name, key_type, leaf_type, size) \
    BPF_F_TABLE("hash", key_type, leaf_type, name, size, 0)
#endif

/* Argument n (1-based, a literal) of a kernel function, for programs written
 * by hand: a register under a kprobe, the trampoline's context array under
 * fentry/fexit. The front-end defines PTK_FENTRY from ResolvedProbe.via_fentry
 * (generated probes get the same from expr_c). */
#ifndef PTK_FENTRY
#define PTK_FENTRY 0
#endif
#if PTK_FENTRY
#define PTK_FUNC_ARG(ctx, n) (((u64 *)(ctx))[(n) - 1])
#else
#define PTK_FUNC_ARG(ctx, n) PT_REGS_PARM##n((struct pt_regs *)(ctx))
#endif

/* bpf_loop()'s callback argument. BCC 0.26 does not relocate a callback's
 * address, so a caller passes this tag instead, and the loader links the
 * callback it names (pytracekit/engine/bpfloop.py, CALLBACKS: 1 is
 * bpf_loop_cb__py_step, 2 bpf_loop_cb__unwind_step, 3 bpf_loop_cb__py_tstate_step,
 * 4 bpf_loop_cb__py_hash_step). */
#define PTK_LOOP_CB(id) ((void *)(0x70746b0000000000ULL | (id)))

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* What every program on a tracepoint returns. A tracepoint is shared by all
 * its users: a BPF program that returns 0 makes the kernel drop the event for
 * every perf user of that tracepoint, system-wide (perf stat counts 0, perf
 * trace loses return values). pytracekit only watches, so it lets it through. */
#define PTK_TP_PASS 1

/* Filters: 0 means "any". FILTER_PID matches the process (tgid),
 * FILTER_TID one thread. */
#ifndef FILTER_PID
#define FILTER_PID 0
#endif
#ifndef FILTER_TID
#define FILTER_TID 0
#endif

/* Process and thread ids given at run time. A nonzero FILTER_PID, FILTER_TID,
 * EXEC_PID... (loader.RUN_TIME_IDS) is compiled as ptk_config_value(slot),
 * and the loader writes the id into that slot before anything attaches: the
 * text, so the program cache's entry, is the same whatever the pid. Until
 * then (BCC attaches TRACEPOINT_PROBEs while loading) a slot reads as
 * PTK_NO_ID, which no pid, tid or sign-extended pid_t equals: nothing is
 * selected. An array lookup of a constant key: the verifier inlines it. */
#define PTK_NO_ID 0x100000000ULL
#ifdef PTK_CONFIG_SLOTS
BPF_ARRAY(ptk_config, u64, PTK_CONFIG_SLOTS);

PTK_INLINE u64 ptk_config_value(u32 slot)
{
    u64 *value = ptk_config.lookup(&slot);
    return value && *value ? *value : PTK_NO_ID;
}
#endif

/* Loss counters, read by the loader after every run and printed by every
 * tool: nothing is dropped silently. Python names the slots, in this order,
 * in the tuple LOSS_SLOTS of pytracekit/engine/loader.py (LossReport's fields);
 * PTK_LOSS_SLOTS here is their count. test_cli checks the two agree. */
enum ptk_loss {
    PTK_LOST_EVENTS = 0,   /* ring/perf buffer full: an event was not delivered */
    PTK_STACK_ERRORS = 1,  /* a stack could not be stored (map full, collision) */
    PTK_MAP_FULL = 2,      /* an aggregation map had no room for a new key */
    PTK_UNREADABLE_STRINGS = 3, /* a user string could not be read (not paged in) */
    /* user stacks not wholly unwound by CFI (ptk_unwind.h): still stored, but
     * less exact; counted per sample so none of it is silent */
    PTK_UNWIND_FALLBACK = 4,    /* frame-pointer walk: the process was not loaded yet */
    PTK_UNWIND_FP_STEPS = 5,    /* a frame-pointer step where the module has CFI (a gap) */
    PTK_UNWIND_INCOMPLETE = 6,  /* the walk stopped before the stack's start */
    PTK_LOSS_SLOTS = 7,
};

BPF_PERCPU_ARRAY(ptk_loss, u64, PTK_LOSS_SLOTS);

/* The tool itself left out (trace, argdist): SELF_PID is its pid, a run-time
 * id like FILTER_PID (a ptk_config slot, so the text is the same every run);
 * 0 leaves nobody out. */
#ifndef SELF_PID
#define SELF_PID 0
#endif

PTK_INLINE bool ptk_is_self(void)
{
    return SELF_PID && (bpf_get_current_pid_tgid() >> 32) == SELF_PID;
}

/* Signed division and remainder as C defines them (truncating toward zero),
 * on magnitudes: BPF before ISA v4 has unsigned division only and LLVM
 * aborts on a signed one. Used by filter and format expressions (expr_c.py). */
PTK_INLINE s64 ptk_sdiv(s64 a, s64 b)
{
    u64 ua = a < 0 ? -(u64)a : (u64)a, ub = b < 0 ? -(u64)b : (u64)b;
    u64 q = ua / ub;   /* BPF: x / 0 is 0 */
    return (a < 0) != (b < 0) ? -(s64)q : (s64)q;
}

PTK_INLINE s64 ptk_smod(s64 a, s64 b)
{
    u64 ua = a < 0 ? -(u64)a : (u64)a, ub = b < 0 ? -(u64)b : (u64)b;
    u64 r = ua % ub;   /* BPF: x % 0 is x */
    return a < 0 ? -(s64)r : (s64)r;
}

PTK_INLINE void ptk_count_loss(u32 slot)
{
    u64 *value = ptk_loss.lookup(&slot);
    if (value)
        (*value)++;   /* per-CPU: no atomic needed */
}

/* A string from user memory into dst (size >= 2). BPF cannot fault a page
 * in, so a string not paged in (or at a bad address) cannot be read: the run
 * counts it and dst holds "\0\xff" (an empty string, then a byte that no
 * successful read leaves there), which user space shows as [unreadable]
 * rather than as a real empty string. A NULL pointer gives "\0\xfe", shown
 * as (null), not counted. A read of "" leaves "\0\0". */
#define PTK_STR_UNREADABLE 0xff
#define PTK_STR_NULL 0xfe
/* bpf_probe_read_user and _str under names of their own, declared as BCC
 * declares them: the same helpers and instructions. BCC's front end looks every
 * call by those names up in /proc/kallsyms (a fallback for kernels before 5.5)
 * and rebuilds a table of all ~120,000 kernel symbols for each: 60-140 ms of
 * CPU per call site, nine in profile's program. The macros keep the helpers'
 * names readable in the programs while BCC sees others; every program includes
 * this file first. */
static int (*ptk_probe_read_user)(void *dst, u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_user;
static int (*ptk_probe_read_user_str)(void *dst, u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_user_str;
#define bpf_probe_read_user ptk_probe_read_user
#define bpf_probe_read_user_str ptk_probe_read_user_str
PTK_INLINE long ptk_read_user_str(char *dst, u32 size, const void *src)
{
    if (!src) {
        dst[0] = 0;
        dst[1] = (char)PTK_STR_NULL;
        return -14;
    }
    long n = ptk_probe_read_user_str(dst, size, src);
    if (n < 0) {
        dst[0] = 0;
        dst[1] = (char)PTK_STR_UNREADABLE;
        ptk_count_loss(PTK_UNREADABLE_STRINGS);
    } else if (n <= 1) {
        dst[1] = 0;
    }
    return n;
}

/* FILTER_AFTER_EXEC: FILTER_PID is a command pytracekit forked and holds
 * before exec (the loader sets it). Like perf's enable_on_exec, the filters
 * pass only from that exec on, so what the launcher's child does between
 * fork and exec (waiting for the go, returning from that read) is never
 * counted as the command's. A raw tracepoint: tools may have their own
 * TRACEPOINT_PROBE(sched, sched_process_exec). */
#ifndef FILTER_AFTER_EXEC
#define FILTER_AFTER_EXEC 0
#endif
#if FILTER_AFTER_EXEC
BPF_ARRAY(ptk_exec_seen, u32, 1);

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    u32 zero = 0;
    u32 *seen = ptk_exec_seen.lookup(&zero);
    if (seen && (bpf_get_current_pid_tgid() >> 32) == FILTER_PID)
        *seen = 1;
    return 0;
}

PTK_INLINE bool ptk_exec_done(void)
{
    u32 zero = 0;
    u32 *seen = ptk_exec_seen.lookup(&zero);
    return seen && *seen;
}
#else
PTK_INLINE bool ptk_exec_done(void)
{
    return true;
}
#endif

/* True when the current task passes the pid/tid filters. */
PTK_INLINE bool ptk_selected(void)
{
    if (FILTER_PID || FILTER_TID) {   /* unfiltered: no helper call (kmem's hot events) */
        u64 pid_tgid = bpf_get_current_pid_tgid();
        if (FILTER_PID && (pid_tgid >> 32) != FILTER_PID)
            return false;
        if (FILTER_TID && (u32)pid_tgid != FILTER_TID)
            return false;
    }
    return ptk_exec_done();   /* last: a map lookup, only for the target */
}

/* The same filters for a task given by its ids (a sched tracepoint's prev or
 * next, not the current task); the idle task (pid 0) is never selected. */
PTK_INLINE bool ptk_task_selected(u32 tgid, u32 pid)
{
    if (pid == 0)
        return false;
    if (FILTER_PID && tgid != FILTER_PID)
        return false;
    if (FILTER_TID && pid != FILTER_TID)
        return false;
    return ptk_exec_done();
}

/* log2 bucket as BCC numbers them: 0 holds 0, k holds [2^(k-1), 2^k - 1]. */
PTK_INLINE u32 ptk_log2_slot(u64 v)
{
    u32 slot = 0;
#pragma unroll
    for (int shift = 32; shift > 0; shift >>= 1) {
        if (v >= (1ULL << shift)) {
            v >>= shift;
            slot += shift;
        }
    }
    return v ? slot + 1 : 0;
}

/* A histogram key: one log2 slot, optionally split by a small label. */
struct ptk_hist_key {
    u64 label;
    u32 slot;
    u32 pad;
};

/* A stack sample key shared by the stack tools (profile, stackcount...). */
struct ptk_stack_key {
    u32 pid;
    u32 tid;
    s32 user_stack_id;
    s32 kernel_stack_id;
    char comm[TASK_COMM_LEN];
    u64 user_stack_hash;   /* nonzero: the user stack is in `ustacks` (ptk_unwind.h) */
    u64 kernel_stack_hash; /* nonzero: the kernel stack is in `kstacks` (ptk_stacks.h) */
};

/* One step of the 64-bit hash that keys stacks stored by their frames
 * (`ustacks`, `kstacks`): keys that never collide, unlike a stack map's buckets. */
PTK_INLINE u64 ptk_mix(u64 h, u64 v)
{
    h ^= v;
    h *= 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 31);
}

/* The first n words of a stack buffer (n a constant) hashed two at a step:
 * each folded in by xor and multiply (a bijection of the hash, so stacks that
 * differ in one word never collide), mixed once a step. Half ptk_mix's
 * instructions a word, for the verifier too: it walks every step. */
PTK_INLINE u64 ptk_hash_words(u64 h, const u64 *words, const int n)
{
#pragma clang loop unroll(disable)
    for (int i = 0; i + 1 < n; i += 2) {
        h = (h ^ words[i]) * 0x9e3779b97f4a7c15ULL;
        h = (h ^ words[i + 1]) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 31;
    }
    return n & 1 ? ptk_mix(h, words[n - 1]) : h;
}

/* Stack ids below 0 are errors; -EFAULT means "no stack of this kind"
 * (a kernel thread has no user stack), which is not a loss. */
PTK_INLINE s32 ptk_checked_stack_id(s32 id)
{
    if (id < 0 && id != -14 /* EFAULT */)
        ptk_count_loss(PTK_STACK_ERRORS);
    return id;
}

#endif /* PYTRACEKIT_H */

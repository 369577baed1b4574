/* stackcount: how often each distinct stack reaches the probes.
 *
 * Every probe gets a generated function calling count_stack() (see
 * PTK_PROBE_FUNCTIONS). User stacks are unwound in the kernel from CFI
 * tables (CFI_UNWIND, ptk_ustack.h) once a process's mappings are loaded;
 * else (and with --unwind fp) they are frame-pointer walks stored as (build
 * id, file offset) frames. Both can be named after a short-lived process
 * has exited.
 * Keys hold the pid whenever user stacks are taken (frames without a build
 * id are named through that process's maps); without per-process output
 * (-P) pytracekit merges the symbolized stacks.
 * Kernel stacks are stored by a hash of their frames (KSTACK_HASH,
 * ptk_kstack.h), else in the stack map, whose bucket collisions drop some.
 * PYTHON_STACKS: a CPython thread's Python stack is read at the probe too (as
 * at a perf event: the thread is current), and it is counted in py_counts
 * under (stacks, Python stack id) instead of counts; other processes pay one
 * py_procs lookup.
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef STACKCOUNT_CPU
#define STACKCOUNT_CPU -1
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif
#ifndef PER_PID
#define PER_PID 0
#endif
#ifndef STACK_STORAGE
#define STACK_STORAGE 16384
#endif
#ifndef MAX_STACKS
#define MAX_STACKS 10240
#endif
#ifndef PYTHON_STACKS
#define PYTHON_STACKS 0
#endif

BPF_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);
#include "ptk_kstack.h"
/* A map for a kind of stack not asked for keeps one slot: they are allocated
 * up front (a build-id stack slot is 4 KiB). */
BPF_STACK_TRACE(stack_traces, KERNEL_STACKS && !KSTACK_HASH ? STACK_STORAGE : 1);
#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (USER_STACKS ? STACK_STORAGE : 1)
#include "ptk_unwind.h"
#include "ptk_ustack.h"
#include "ptk_sample_log.h"
#if PYTHON_STACKS
#include "ptk_python.h"
BPF_HASH(py_counts, struct ptk_py_sample_key, u64, MAX_STACKS);
#endif

PTK_INLINE int count_stack(void *ctx)
{
    if (STACKCOUNT_CPU >= 0 && bpf_get_smp_processor_id() != STACKCOUNT_CPU)
        return 0;
    if (!ptk_selected())
        return 0;
    struct ptk_stack_key key = {};
    key.user_stack_id = -1;
    key.kernel_stack_id = -1;
    if (USER_STACKS || PER_PID)
        key.pid = bpf_get_current_pid_tgid() >> 32;
    if (PER_PID)
        bpf_get_current_comm(&key.comm, sizeof(key.comm));
    if (USER_STACKS)
        key.user_stack_id = ptk_user_stack(ctx, key.pid, &key.user_stack_hash);
#if KSTACK_HASH
    if (KERNEL_STACKS)
        key.kernel_stack_hash = ptk_kernel_stack_hash(ctx, &key.kernel_stack_id);
#else
    if (KERNEL_STACKS)
        key.kernel_stack_id = ptk_checked_stack_id(stack_traces.get_stackid(ctx, 0));
#endif
    u64 zero = 0, *count;
#if PYTHON_STACKS
    u64 py_stack_id = ptk_python_stack(key.pid, (u32)bpf_get_current_pid_tgid());
    if (py_stack_id) {
        struct ptk_py_sample_key py_key = {.key = key, .py_stack_id = py_stack_id};
        count = py_counts.lookup_or_try_init(&py_key, &zero);
        if (count)
            __sync_fetch_and_add(count, 1);
        else
            ptk_count_loss(PTK_MAP_FULL);
        ptk_log_sample(&key, py_stack_id);
        return 0;
    }
#endif
    ptk_log_sample(&key, 0);
    count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

#ifndef STACKCOUNT_MULTI
#define STACKCOUNT_MULTI 0
#endif
#if STACKCOUNT_MULTI
/* Entry uprobes through uprobe_multi links: one program for all of them (a
 * stack needs no probe number). */
int stack_multi(void *ctx) { return count_stack(ctx); }
#endif

/* One per probe: int stack_N(void *ctx) { count_stack(ctx); return R; }
 * (R: PTK_TP_PASS on a tracepoint, else 0) replaces the placeholder;
 * alone, the file compiles with stack_0. */
#ifndef PTK_GENERATED_PROBES
int stack_0(void *ctx) { return count_stack(ctx); }
#endif
/* PTK_SLOT PTK_PROBE_FUNCTIONS */

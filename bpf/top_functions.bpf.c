/* top --functions: sample cpu-clock on every CPU and count the interrupted
 * instruction pointer per process (user or kernel), like perf top.
 * PYTHON_STACKS: a user-mode sample of a CPython thread also carries the code
 * object of its innermost Python function (ptk_python.h); user space charges
 * the sample to it when the IP is in the interpreter. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif
#ifndef PYTHON_STACKS
#define PYTHON_STACKS 0
#endif
#if PYTHON_STACKS
#include "ptk_python.h"
#endif

struct ip_key {
    u32 pid;
    u32 kernel;
    u64 ip;
    u64 py_code;   /* the innermost Python function's code object, 0: none */
};

BPF_HASH(samples, struct ip_key, u64, 65536);

int on_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 pid = id >> 32;
    if (pid == 0 && !INCLUDE_IDLE)
        return 0;
    if (!ptk_selected())
        return 0;
    struct ip_key key = { .pid = pid };
    key.ip = PT_REGS_IP(&ctx->regs);
    key.kernel = key.ip >= 0xffff800000000000ULL;
#if PYTHON_STACKS
    if (!key.kernel && pid)
        key.py_code = ptk_python_leaf_code(pid, (u32)id);
#endif
    u64 zero = 0, *count = samples.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

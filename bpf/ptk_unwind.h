/* User stacks unwound in the kernel from compact CFI tables (the design is
 * docs/design/unwinding.md; the user half is pytracekit/symbolize/unwinder.py, the
 * rows' layout pytracekit/symbolize/unwind_table.py, which also holds the same walk in
 * Python as unwind_python, the test oracle).
 *
 * User space writes each module's rows once (`unwind_rows`, located by
 * `unwind_modules[module_id]`) and each process's executable mappings
 * (`proc_maps[pid]`, sorted by start). A frame is `module_id << 32 | link-time
 * vaddr` (module_id: bit 31 set, a generation and a reusable slot; 0: an
 * absolute address, e.g. JIT code, bit 63 clear), a stack is stored in
 * `ustacks` under a 64-bit hash of its frames: no bucket collisions.
 * User space changes a module's entry before it reuses the module's rows,
 * then waits for a grace period (bpfsys.GracePeriod): a walk never reads
 * rows that another module's table is being written to.
 * A pid without `proc_maps` takes the frame-pointer fallback of ptk_stacks.h.
 *
 * Pasted like ptk_stacks.h (before it); compiled only with CFI_UNWIND=1.
 * Parameters: PTK_MAX_FRAMES (127), UNWIND_ROWS (2^20 rows of 8 bytes),
 * UNWIND_MODULES, UNWIND_PROCS (processes loaded at once), USTACKS_SIZE.
 */
#ifndef PTK_UNWIND_H
#define PTK_UNWIND_H

#ifndef CFI_UNWIND
#define CFI_UNWIND 0
#endif
#if CFI_UNWIND

#ifndef PTK_MAX_FRAMES
#define PTK_MAX_FRAMES 127
#endif
#ifndef UNWIND_ROWS
#define UNWIND_ROWS 1048576
#endif
#ifndef UNWIND_MODULES
#define UNWIND_MODULES 4096
#endif
#ifndef UNWIND_PROCS
#define UNWIND_PROCS 1024
#endif
#ifndef USTACKS_SIZE
#define USTACKS_SIZE 16384
#endif
#define PTK_MAX_MAPS 64        /* executable mappings per process */
#ifndef PTK_MAP_STEPS
#define PTK_MAP_STEPS 6        /* log2(PTK_MAX_MAPS) */
#endif
#ifndef PTK_ROW_STEPS
#define PTK_ROW_STEPS 21       /* up to 2^21 rows per module */
#endif
#define PTK_FP_SPAN (8ULL << 20)

/* row kinds: keep in sync with unwind_table.KIND_* */
#define PTK_KIND_NONE 0
#define PTK_KIND_CFA_RSP 1
#define PTK_KIND_CFA_RBP 2
#define PTK_KIND_PLT 3
#define PTK_KIND_END 4

/* struct ptk_ustack.flags */
#define PTK_USTACK_TRUNCATED 1   /* PTK_MAX_FRAMES reached */
#define PTK_USTACK_INCOMPLETE 2  /* stopped before an END row (no rule, bad read, bad RA) */
#define PTK_USTACK_FP_STEPS 4    /* some frame came from a frame-pointer step */
#define PTK_USTACK_FALLBACK 8    /* absolute addresses of the kernel's frame-pointer walk */

struct ptk_unwind_row {
    u32 pc;          /* link-time vaddr where this rule starts */
    u16 cfa_off8;
    u8 kind;
    u8 rbp_off8;     /* rbp saved at CFA - 8*n; 0: unchanged (PLT: the threshold) */
};

struct ptk_unwind_module {
    u32 first_row;   /* PTK_ROWS_NO_ROOM (n_rows 0): it has CFI, but no room */
    u32 n_rows;
    u32 sampled;     /* bpf_ktime_get_ns() >> 30 when a walk last looked it up */
    u32 pad;         /* (user space evicts the table least recently sampled) */
};
/* a module whose table did not fit in `unwind_rows`: its frame-pointer steps
 * are counted (unwind_fp_steps) as gaps in code that has CFI */
#define PTK_ROWS_NO_ROOM 0xffffffffU

struct ptk_proc_map {
    u64 start;
    u64 end;
    u64 bias;        /* link-time vaddr = address - bias */
    u32 module_id;   /* 0: no table (anonymous/JIT code): frame-pointer steps */
    u32 flags;
};

/* A process's mappings are m[first .. first + n) of `unwind_maps`, sorted by
 * start (a global array: indexing a map value's own array by a searched
 * index makes the verifier track every search path, ~50k insns per frame). */
struct ptk_proc_maps {
    u32 first;
    u32 n;
    u32 miss_sent;   /* an unwind_miss was sent since user space wrote this entry */
    u32 pad;
};

struct ptk_ustack {
    u16 len;
    u16 flags;
    u32 pad;
    u64 frames[PTK_MAX_FRAMES];
};

struct ptk_unwind_miss {
    u32 pid;
    u32 pad;
    u64 pc;
};

/* mappable: user space copies a module's rows in with one memcpy (a batch
 * update of 10^6 rows costs ~0.5 s of CPU) */
BPF_F_TABLE("array", int, struct ptk_unwind_row, unwind_rows, UNWIND_ROWS,
            1024 /* BPF_F_MMAPABLE */);
/* unwind_modules, proc_maps, hold_tree (and ptk_follow.h's followed): not
 * preallocated, as each is written only by user space and by tracepoint or
 * uprobe programs (process context), never in the sampling interrupt, which
 * only looks them up; preallocating is most of creating the maps at a start
 * from the program cache */
BPF_F_TABLE("hash", u32, struct ptk_unwind_module, unwind_modules, UNWIND_MODULES,
            BPF_F_NO_PREALLOC);
/* more entries than slots: the fork probe (ptk_stacks.h) copies a parent's
 * entry to each new thread too, until that thread exits */
BPF_F_TABLE("hash", u32, struct ptk_proc_maps, proc_maps, UNWIND_PROCS * 16,
            BPF_F_NO_PREALLOC);
BPF_ARRAY(unwind_maps, struct ptk_proc_map, UNWIND_PROCS * PTK_MAX_MAPS);
PTK_PROBE_HASH(ustacks, u64, struct ptk_ustack, USTACKS_SIZE);   /* see pytracekit.h */
BPF_PERCPU_ARRAY(unwind_scratch, struct ptk_ustack, 1);
BPF_RINGBUF_OUTPUT(unwind_miss, 1);

/* A held command's process tree (`-- COMMAND`: its pid written by user space
 * before it execs, forks added) is stopped in each program it runs once ld.so
 * has mapped that program's libraries (`ptk_stop_in_ldso` on ld.so's
 * _dl_debug_state with r_debug.r_state RT_CONSISTENT: also after each
 * dlopen), or at the entry point of a static command (`ptk_stop_at_entry`),
 * until user space has loaded its mappings (then SIGCONT): so that a
 * program's first samples unwind with tables too, also one the command execs.
 * Value: 1 a new program (since its exec), 2 held once since. */
BPF_F_TABLE("hash", u32, u32, hold_tree, 10240, BPF_F_NO_PREALLOC);   /* see unwind_modules */
/* Held by a hold (PTK_HELD) until the switch-in after its stopped switch-out
 * (PTK_HELD_STOPPED) or after user space's SIGCONT (PTK_HELD_CONTINUED,
 * written just before it): the hold's window for the blocked-time tools */
BPF_HASH(entry_held, u32, u8, 1024);
#define PTK_HELD 1
#define PTK_HELD_CONTINUED 2
#define PTK_HELD_STOPPED 3
/* 1 once user space holds a command: only then are switches looked up above */
BPF_ARRAY(holds_armed, u32, 1);
/* r_debug.r_state's link-time vaddr minus _dl_debug_state's page: written by
 * user space, which knows ld.so's symbols (0: no ld.so hook) */
BPF_ARRAY(ldso_r_state, u64, 1);
struct ptk_unwind_hold {
    u32 pid;
    u32 first;       /* the first hold of this program: its interpreter is mapped */
};
BPF_RINGBUF_OUTPUT(unwind_stopped, 1);

PTK_INLINE void ptk_hold(u32 tgid, u32 *state)
{
    struct ptk_unwind_hold *rec = unwind_stopped.ringbuf_reserve(sizeof(*rec));
    if (!rec)
        return;   /* user space would never hear of it: do not stop */
    u8 one = PTK_HELD;
    rec->pid = tgid;
    rec->first = *state == 1;
    *state = 2;
    entry_held.update(&tgid, &one);
    bpf_send_signal(19 /* SIGSTOP */);
    unwind_stopped.ringbuf_submit(rec, 0);
}

int ptk_stop_at_entry(struct pt_regs *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 *state = hold_tree.lookup(&tgid);
    if (state && *state == 1)
        ptk_hold(tgid, state);
    return 0;
}

int ptk_stop_in_ldso(struct pt_regs *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
    u32 *state = hold_tree.lookup(&tgid);
    u64 *delta = ldso_r_state.lookup(&zero);
    if (!state || !delta || !*delta)
        return 0;
    /* ld.so's load bias is page-aligned: the probe's page locates r_debug */
    s32 r_state = -1;
    if (bpf_probe_read_user(&r_state, sizeof(r_state),
                            (void *)((PT_REGS_IP(ctx) & ~0xfffULL) + *delta)) == 0 &&
        r_state == 0 /* RT_CONSISTENT */)
        ptk_hold(tgid, state);
    return 0;
}

/* At an exec: the old mappings are void (the fallback until user space, told
 * again, has loaded the new ones); a program of the held tree is new. */
PTK_INLINE void ptk_unwind_exec(u32 tgid)
{
    proc_maps.delete(&tgid);
    u32 *state = hold_tree.lookup(&tgid);
    if (state)
        *state = 1;
}

/* A fork: the child unwinds with its parent's mappings until user space
 * loads it on its own (a thread's copy is never looked up), and is in the
 * held tree if its parent is. */
PTK_INLINE void ptk_unwind_fork(u32 parent, u32 child)
{
    struct ptk_proc_maps *maps = proc_maps.lookup(&parent);
    if (maps) {
        struct ptk_proc_maps copy = *maps;
        copy.miss_sent = 0;
        proc_maps.update(&child, &copy);
    }
    u32 *state = hold_tree.lookup(&parent);
    if (state) {
        u32 same = *state;
        hold_tree.update(&child, &same);
    }
}

PTK_INLINE void ptk_unwind_exit(u32 tid)
{
    proc_maps.delete(&tid);
    hold_tree.delete(&tid);
    entry_held.delete(&tid);
}

/* Has user space held a command (hold_command)? Else no switch is looked up. */
PTK_INLINE bool ptk_holds_armed(void)
{
    u32 zero = 0;
    u32 *armed = holds_armed.lookup(&zero);
    return armed && *armed;
}

/* For the blocked-time tools: true for a switch-out inside a hold's window,
 * from the hold's SIGSTOP to the switch-in after the stop (ours, not the
 * program's blocking; its waker would be the SIGCONT). Not only the stopped
 * switch-out: do_signal_stop may switch out with state 0 (our SIGCONT came
 * before its schedule()) or be preempted before it (prev_state is the raw
 * state: __TASK_STOPPED (4) already). */
PTK_INLINE bool ptk_held_switched_out(u32 tid, long state, bool preempt)
{
    if (!ptk_holds_armed())
        return false;
    u8 *held = entry_held.lookup(&tid);
    if (!held)
        return false;
    if ((state & 4) && !preempt)
        *held = PTK_HELD_STOPPED;   /* whoever continues it ends the window */
    return true;
}

/* A switch-in: the window ends at the one after the stop or our SIGCONT. */
PTK_INLINE void ptk_held_switched_in(u32 tid)
{
    if (!ptk_holds_armed())
        return;
    u8 *held = entry_held.lookup(&tid);
    if (held && *held != PTK_HELD)
        entry_held.delete(&tid);
}

PTK_INLINE void ptk_add_loss(u32 slot, u64 n)
{
    u64 *value = ptk_loss.lookup(&slot);
    if (value)
        *value += n;
}

/* Both searches below read array elements through bpf_probe_read_kernel at
 * base + index * size (an array map's values are contiguous) and choose the
 * half without a branch: a map lookup per step needs a NULL branch, and the
 * verifier keeps every pending branch of a 127-frame walk on one stack (8192
 * at most, reached at 96 frames that way). 1 when x > y (both < 2^63). */
PTK_INLINE u64 ptk_gt(u64 x, u64 y)
{
    return (y - x) >> 63;
}

/* The mapping holding addr, copied into *out; false if none. A process's
 * mappings are m[first .. first + n) of unwind_maps. */
PTK_INLINE bool ptk_find_map(u64 maps_base, u32 first, u32 n, u64 addr,
                             struct ptk_proc_map *out)
{
    if (n == 0 || n > PTK_MAX_MAPS)
        return false;
    u64 lo = first, hi = (u64)first + n;   /* the last mapping starting <= addr */
#pragma clang loop unroll(disable)
    for (int s = 0; s < PTK_MAP_STEPS; s++) {
        u64 mid = lo + (hi - lo) / 2, start = 0;
        bpf_probe_read_kernel(&start, sizeof(start),
                              (void *)(maps_base + mid * sizeof(struct ptk_proc_map)));
        u64 keep = -ptk_gt(start, addr);   /* all ones: keep lo, hi = mid */
        lo = mid + ((lo - mid) & keep);
        hi = hi + ((mid - hi) & keep);
    }
    if (bpf_probe_read_kernel(out, sizeof(*out),
                              (void *)(maps_base + lo * sizeof(struct ptk_proc_map))))
        return false;
    return out->start <= addr && addr < out->end;
}

/* The last row of [first, first + n) whose pc <= vaddr, copied into *out. */
PTK_INLINE bool ptk_find_row(u64 rows_base, u32 first, u32 n, u32 vaddr,
                             struct ptk_unwind_row *out)
{
    /* (never past the array, whatever an entry read in passing holds) */
    if (n == 0 || first >= UNWIND_ROWS || n > UNWIND_ROWS - first)
        return false;
    u64 lo = first, hi = (u64)first + n;
#pragma clang loop unroll(disable)
    for (int s = 0; s < PTK_ROW_STEPS; s++) {
        if (hi - lo <= 1)
            break;
        u64 mid = lo + (hi - lo) / 2;
        u32 pc = 0;
        bpf_probe_read_kernel(&pc, sizeof(pc),
                              (void *)(rows_base + mid * sizeof(struct ptk_unwind_row)));
        u64 keep = -ptk_gt(pc, vaddr);
        lo = mid + ((lo - mid) & keep);
        hi = hi + ((mid - hi) & keep);
    }
    if (bpf_probe_read_kernel(out, sizeof(*out),
                              (void *)(rows_base + lo * sizeof(struct ptk_unwind_row))))
        return false;
    return out->pc <= vaddr;
}

PTK_INLINE void ptk_report_miss(u32 pid, u64 pc)
{
    struct ptk_proc_maps *maps = proc_maps.lookup(&pid);
    if (!maps || maps->miss_sent)
        return;
    maps->miss_sent = 1;
    struct ptk_unwind_miss *miss = unwind_miss.ringbuf_reserve(sizeof(*miss));
    if (!miss) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    miss->pid = pid;
    miss->pad = 0;
    miss->pc = pc;
    unwind_miss.ringbuf_submit(miss, 0);
}

/* The walk's state from one frame to the next (ptk_unwind_step). */
struct ptk_unwind_walk {
    u64 rows_base, maps_base;   /* the arrays' addresses as plain numbers (see ptk_gt) */
    u64 sp, bp;
    u64 addr;                   /* the frame's address (the pc, then return addresses) */
    u64 lookup;                 /* where its rule is looked up: the call, not what follows */
    u64 hash;
    u32 pid, maps_first, maps_n;
    u32 now;                    /* bpf_ktime_get_ns() >> 30 (ptk_unwind_module.sampled) */
    u32 i;                      /* the next frame's index */
    u32 len;
    u16 flags;
    u8 leaf_found, cfi_gap;
};
BPF_PERCPU_ARRAY(unwind_walk, struct ptk_unwind_walk, 1);

/* One frame of the walk: stored in st->frames[w->i], then the caller's
 * registers from the frame's rule (CFI) or its frame pointer. 1: stop. */
PTK_INLINE long ptk_unwind_step(struct ptk_unwind_walk *w, struct ptk_ustack *st)
{
    u32 i = w->i;
    if (i >= PTK_MAX_FRAMES)
        return 1;
    struct ptk_proc_map m = {};
    struct ptk_unwind_row row = {};
    u64 addr = w->addr, lookup = w->lookup, sp = w->sp, bp = w->bp;
    if (!ptk_find_map(w->maps_base, w->maps_first, w->maps_n, lookup, &m)) {
        /* mapped since user space looked (dlopen), or a bad return address */
        ptk_report_miss(w->pid, addr);
        return 1;
    }
    u32 module_id = m.module_id;   /* user space: its vaddrs fit in 32 bits */
    u64 frame = module_id ? ((u64)module_id << 32) | (u32)(addr - m.bias) : addr;
    st->frames[i] = frame;
    w->hash = ptk_mix(w->hash, frame);
    w->len = i + 1;
    w->leaf_found = 1;

    u8 kind = PTK_KIND_NONE, has_cfi = 0;
    if (module_id) {
        struct ptk_unwind_module *mod = unwind_modules.lookup(&module_id);
        if (mod) {   /* its run of rows, read once */
            u32 first = mod->first_row, n = mod->n_rows;
            has_cfi = n || first == PTK_ROWS_NO_ROOM;
            if (mod->sampled != w->now)   /* written about once a second */
                mod->sampled = w->now;
            if (ptk_find_row(w->rows_base, first, n, (u32)(lookup - m.bias), &row))
                kind = row.kind;
        }
    }
    u64 cfa = 0, next_bp = bp, ra = 0;
    if (kind == PTK_KIND_END) {
        w->flags &= ~PTK_USTACK_INCOMPLETE;
        return 1;
    }
    if (kind == PTK_KIND_NONE) {
        /* no CFI here (JIT, a gap): a frame-pointer step if rbp looks like one */
        if (bp < sp || bp >= sp + PTK_FP_SPAN || (bp & 7))
            return 1;
        cfa = bp + 16;
        if (bpf_probe_read_user(&next_bp, sizeof(next_bp), (void *)bp))
            return 1;
        w->flags |= PTK_USTACK_FP_STEPS;
        w->cfi_gap |= has_cfi;   /* JIT code or a module without CFI: expected */
    } else {
        if (kind == PTK_KIND_CFA_RSP)
            cfa = sp + 8 * (u64)row.cfa_off8;
        else if (kind == PTK_KIND_CFA_RBP)
            cfa = bp + 8 * (u64)row.cfa_off8;
        else if (kind == PTK_KIND_PLT)
            cfa = sp + 8 + ((lookup & 15) >= row.rbp_off8 ? 8 : 0);
        else
            return 1;
        if (kind != PTK_KIND_PLT && row.rbp_off8 &&
            bpf_probe_read_user(&next_bp, sizeof(next_bp),
                                (void *)(cfa - 8 * (u64)row.rbp_off8)))
            return 1;
    }
    if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)) || ra == 0)
        return 1;
    if (i == PTK_MAX_FRAMES - 1) {
        w->flags |= PTK_USTACK_TRUNCATED;
        return 1;
    }
    w->sp = cfa;
    w->bp = next_bp;
    w->addr = ra;
    w->lookup = ra - 1;   /* the call, not what follows it (it may be another function) */
    w->i = i + 1;
    return 0;
}

#if !PTK_FENTRY
/* The walk's frames through bpf_loop: the verifier checks one step, not one
 * per frame as in a bounded loop (a launch spent ~0.3 s of CPU verifying a
 * 127-frame loop). Linked to the call by the loader (PTK_LOOP_CB(2),
 * pytracekit/engine/bpfloop.py). */
long bpf_loop_cb__unwind_step(void *unused)
{
    u32 zero = 0;
    struct ptk_unwind_walk *w = unwind_walk.lookup(&zero);
    struct ptk_ustack *st = unwind_scratch.lookup(&zero);
    if (!w || !st)
        return 1;
    return ptk_unwind_step(w, st);
}
#endif

/* Unwind the current thread's user stack (pid: its process) into `ustacks`,
 * from its user registers (bpf_task_pt_regs: in a uprobe the probe's own
 * pt_regs). 1: stored, its hash in *stack_hash; 0: the process is not loaded
 * (use the fallback); -1: it could not be stored (counted). Any key struct
 * with a u64 for the hash can take it (ptk_ustack.h). */
PTK_INLINE int ptk_unwind_current(u32 pid, u64 *stack_hash)
{
    u32 zero = 0;
    struct ptk_proc_maps *maps = proc_maps.lookup(&pid);
    if (!maps)
        return 0;
    struct ptk_ustack *st = unwind_scratch.lookup(&zero);
    struct ptk_unwind_walk *w = unwind_walk.lookup(&zero);
    void *rows0 = unwind_rows.lookup(&zero), *maps0 = unwind_maps.lookup(&zero);
    if (!st || !w || !rows0 || !maps0)
        return 0;
    bpf_probe_read_kernel(&w->rows_base, sizeof(w->rows_base), &rows0);
    bpf_probe_read_kernel(&w->maps_base, sizeof(w->maps_base), &maps0);
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    u64 pc = 0;
    bpf_probe_read_kernel(&pc, sizeof(pc), &regs->ip);
    bpf_probe_read_kernel(&w->sp, sizeof(w->sp), &regs->sp);
    bpf_probe_read_kernel(&w->bp, sizeof(w->bp), &regs->bp);
    w->addr = pc;
    w->lookup = pc;
    w->hash = 0xcbf29ce484222325ULL;
    w->pid = pid;
    w->now = bpf_ktime_get_ns() >> 30;
    w->maps_first = maps->first;
    w->maps_n = maps->n;
    w->i = 0;
    w->len = 0;
    w->flags = PTK_USTACK_INCOMPLETE;
    w->leaf_found = 0;
    w->cfi_gap = 0;
#if PTK_FENTRY   /* BCC loads trampoline programs itself: no linked callback */
#pragma clang loop unroll(disable)
    for (int i = 0; i < PTK_MAX_FRAMES; i++)
        if (ptk_unwind_step(w, st))
            break;
#else
    bpf_loop(PTK_MAX_FRAMES, PTK_LOOP_CB(2), 0, 0);   /* unwind_step */
#endif
    /* (a flag, not len: a branch on len would make the verifier tell apart
     * every depth at which the walk can stop) */
    if (!w->leaf_found)
        return 0;   /* the pc is in no known mapping: the fallback may still name it */
    u16 flags = w->flags;
    u32 len = w->len;
    /* added, not branched on: a branch on these would split the verifier's states */
    ptk_add_loss(PTK_UNWIND_INCOMPLETE, (flags & PTK_USTACK_INCOMPLETE) != 0);
    ptk_add_loss(PTK_UNWIND_FP_STEPS, w->cfi_gap);
    st->len = len;
    st->flags = flags;
    st->pad = 0;
    u64 hash = ptk_mix(w->hash, len);
    hash = hash ? hash : 1;   /* 0 means "not in ustacks" */
    if (!ustacks.lookup(&hash)) {
        int err = ustacks.insert(&hash, st);
        if (err && err != -17 /* EEXIST: another CPU stored it first */) {
            ptk_count_loss(PTK_STACK_ERRORS);
            return -1;
        }
    }
    *stack_hash = hash;
    return 1;
}

/* The same into a struct ptk_stack_key (ptk_current_stack, ptk_stacks.h). */
PTK_INLINE int ptk_unwind_user(struct ptk_stack_key *key)
{
    return ptk_unwind_current(key->pid, &key->user_stack_hash);
}

/* A process not loaded yet: the kernel's frame-pointer walk (absolute
 * addresses), stored in `ustacks` too, so that a storm of new processes
 * (each one's addresses apart) cannot collide in a stack map's buckets.
 * 1: stored, counted as a fallback; -1: not stored (counted); 0: no user stack. */
PTK_INLINE int ptk_fallback_user(struct ptk_stack_key *key, void *ctx)
{
    u32 zero = 0;
    struct ptk_ustack *st = unwind_scratch.lookup(&zero);
    if (!st)
        return 0;
    /* the helper zeroes the buffer past the stack: hash every word, no branch per depth */
    long n = bpf_get_stack(ctx, st->frames, sizeof(st->frames), BPF_F_USER_STACK);
    if (n == 0 || n == -14 /* EFAULT: no user stack */)
        return 0;
    if (n < 0) {
        ptk_count_loss(PTK_STACK_ERRORS);
        return -1;
    }
    u64 hash = ptk_hash_words(0x84222325cbf29ce4ULL, st->frames, PTK_MAX_FRAMES);
    st->len = n / sizeof(u64);
    st->flags = PTK_USTACK_FALLBACK;
    st->pad = 0;
    hash = ptk_mix(hash, st->len);
    hash = hash ? hash : 1;
    ptk_count_loss(PTK_UNWIND_FALLBACK);
    if (!ustacks.lookup(&hash)) {
        int err = ustacks.insert(&hash, st);
        if (err && err != -17) {
            ptk_count_loss(PTK_STACK_ERRORS);
            return -1;
        }
    }
    key->user_stack_hash = hash;
    return 1;
}

#endif /* CFI_UNWIND */
#endif /* PTK_UNWIND_H */

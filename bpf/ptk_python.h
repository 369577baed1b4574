/* Python (CPython 3.8-3.13) stacks of the sampled thread, walked in BPF:
 * fs base -> the PyThreadState whose thread_id equals it (over every
 * interpreter's thread list) -> frame chain -> (code object, instruction byte
 * offset) per frame. No strings here: user space names the code objects
 * (pytracekit/symbolize/python). Design: docs/design/python-frames.md sections 4-5.
 *
 * Per process, user space writes the runtime address and the layout (offsets
 * in pyframes_layouts.FIELDS order, PYL_<FIELD> indices) into py_procs: one
 * program serves every version, the control flow follows which offsets are
 * present (PY_ABSENT otherwise). A process seen for the first time gets a
 * pending entry and is announced on py_events; until user space says it is
 * Python its samples carry native frames only.
 *
 * Parameters (from pytracekit/symbolize/python/bpf.py): PY_NFIELDS, PYL_*, PY_ABSENT,
 * PY_STACKS_SIZE. Stats in py_stats (PY_STAT_*), read by user space.
 */
#ifndef PTK_PYTHON_H
#define PTK_PYTHON_H

#ifndef PY_STACKS_SIZE
#define PY_STACKS_SIZE 4096
#endif
#define PY_MAX_FRAMES 128      /* recorded; deeper stacks are counted in `truncated` */
#define PY_MAX_VISITS 160      /* frames visited for them (3.12+ shim frames are skipped) */
#define PY_MAX_EXTRA 1024      /* frames counted beyond the recorded ones */
#define PY_MAX_THREAD_VISITS 128   /* thread states looked at, all interpreters */
#define PY_BLOCK 128           /* one read per frame covers every field used (<= 112) */
#define PY_OWNED_BY_CSTACK 3   /* 3.12+ shim frame: one _PyEval_EvalFrameDefault entry */
#define PY_FRAME_BOUNDARY 1    /* flags: outermost frame of one eval call */
/* flags' other bits: which code object the frame ran, folded from its line
 * table's address (PY_CODE_IDENT). A code object can be freed, and its address
 * reused, before user space reads it: a name read earlier is used only for
 * the same ident (a freed object's type and refcount are a free list's now) */
#define PY_CODE_IDENT(table) ((u32)((table) ^ ((table) >> 32)) & ~(u32)PY_FRAME_BOUNDARY)

enum ptk_py_state { PY_PENDING = 0, PY_PYTHON = 1, PY_NOT_PYTHON = 2 };
enum ptk_py_stat {
    PY_STAT_STACKS = 0,      /* samples given a Python stack */
    PY_STAT_NO_TSTATE = 1,   /* Python process, no thread state for this thread */
    PY_STAT_READ_FAULT = 2,  /* a frame could not be read: the stack ends there */
    PY_STAT_PENDING = 3,     /* samples before user space registered the process */
    PY_STAT_MAP_FULL = 4,    /* py_stacks had no room: native frames only */
    PY_STAT_SLOTS = 5,
};
enum ptk_py_event_kind { PY_EVENT_PROCESS = 0, PY_EVENT_STACK = 1 };

struct ptk_py_proc {
    u64 runtime;             /* address of _PyRuntime */
    u64 mm;                  /* task->mm when announced: an exec makes a new one */
    u16 layout[PY_NFIELDS];
    u16 block_start;         /* the frame fields used: [start, start + len) */
    u16 block_len;
    u8 minor;
    u8 state;                /* enum ptk_py_state */
};

struct ptk_py_frame {
    u64 code;
    s32 offset;              /* instruction byte offset; -2 possible on 3.11+ entry */
    u32 flags;               /* PY_FRAME_BOUNDARY | PY_CODE_IDENT */
};

struct ptk_py_stack {
    u32 pid;
    u16 depth;
    u16 pad;
    u32 truncated;           /* frames beyond PY_MAX_FRAMES (counted up to PY_MAX_EXTRA) */
    u32 pad2;
    struct ptk_py_frame frames[PY_MAX_FRAMES];
};

/* The frame walk's state between bpf_loop steps; offsets are relative to
 * the frame block (block_start). */
struct ptk_py_walk {
    u64 frame;               /* next frame to visit; 0: done */
    u64 adaptive;            /* 3.11+: the code object's offset of its instructions */
    u16 block_start, block_len, count_len;
    u16 code, previous, lasti, instr_ptr, is_entry, owner;
    u16 code_linetable;      /* in the code object: its ident's field */
    u8 has_lasti, has_owner, has_entry, minor;
};

/* The thread-state search's state between bpf_loop steps (ptk_py_tstate). */
struct ptk_py_tsearch {
    u64 interp, ts, found, fsbase;
    u16 thread_id, threads_head, interp_next, tstate_next;   /* layout offsets */
    u8 first;                /* ts is to be read from interp's list head */
};

struct ptk_py_scratch {
    struct ptk_py_stack stack;
    struct ptk_py_walk walk;
    struct ptk_py_tsearch search;
    u64 hash;                /* ptk_py_hash: the hash so far, the next frame */
    u32 hash_next;
    u8 block[PY_BLOCK + 24];   /* field reads are masked to & 127: an 8-byte read stays inside */
};

struct ptk_py_event {
    u32 kind;
    u32 pid;
    u64 stack_id;
};

/* A stack tool's key plus the Python stack (py_counts), kept apart from
 * struct ptk_stack_key so that tools without Python keep their key. */
struct ptk_py_sample_key {
    struct ptk_stack_key key;
    u64 py_stack_id;
};

PTK_PROBE_HASH(py_procs, u32, struct ptk_py_proc, 8192);   /* see pytracekit.h */
BPF_TABLE("lru_hash", u32, u64, py_tstates, 16384);         /* tid -> its PyThreadState */
PTK_PROBE_HASH(py_stacks, u64, struct ptk_py_stack, PY_STACKS_SIZE);
BPF_PERCPU_ARRAY(py_scratch, struct ptk_py_scratch, 1);
BPF_PERCPU_ARRAY(py_stats, u64, PY_STAT_SLOTS);
BPF_RINGBUF_OUTPUT(py_events, 16);

PTK_INLINE void ptk_py_stat(u32 slot)
{
    u64 *value = py_stats.lookup(&slot);
    if (value)
        (*value)++;
}

PTK_INLINE u64 ptk_py_u64(u64 addr)
{
    u64 v = 0;
    bpf_probe_read_user(&v, sizeof(v), (void *)addr);
    return v;
}

PTK_INLINE void ptk_py_event(u32 kind, u32 pid, u64 stack_id)
{
    struct ptk_py_event *e = py_events.ringbuf_reserve(sizeof(*e));
    if (!e)
        return;   /* user space reads a missed stack at the end instead */
    e->kind = kind;
    e->pid = pid;
    e->stack_id = stack_id;
    py_events.ringbuf_submit(e, 0);
}

#define PYL(proc, f) ((u64)(proc)->layout[PYL_##f])
#define PY_HAS(proc, f) ((proc)->layout[PYL_##f] != PY_ABSENT)
/* a field of the frame block read last */
#define PY_WBLK(s, type, off) (*(type *)((s)->block + ((off) & 127)))

/* The process's entry; a new (or exec'd) process gets a pending one and is
 * announced. NULL unless user space found CPython in it. An entry with mm 0
 * was written by user space before the process's first event (a command
 * held at its entry point: no exec can come between): it takes this mm. */
PTK_INLINE struct ptk_py_proc *ptk_py_process(u32 pid)
{
    u64 mm = 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    bpf_probe_read_kernel(&mm, sizeof(mm),
                          (void *)task + __builtin_offsetof(struct task_struct, mm));
    if (!mm)
        return 0;   /* an exiting thread past exit_mm: not a new program of its process */
    struct ptk_py_proc *proc = py_procs.lookup(&pid);
    if (proc && !proc->mm)
        proc->mm = mm;
    if (proc && proc->mm == mm) {
        if (proc->state == PY_PYTHON)
            return proc;
        if (proc->state == PY_PENDING)
            ptk_py_stat(PY_STAT_PENDING);
        return 0;
    }
    struct ptk_py_proc fresh = {};
    fresh.mm = mm;
    if (py_procs.update(&pid, &fresh) == 0)   /* full: no announcement flood */
        ptk_py_event(PY_EVENT_PROCESS, pid, 0);
    ptk_py_stat(PY_STAT_PENDING);
    return 0;
}

/* One step of the thread-state search (ptk_py_tstate), run by bpf_loop: the
 * verifier checks it once, not once per visit. Returns 1 to stop. */
long bpf_loop_cb__py_tstate_step(void *unused)
{
    u32 zero = 0;
    struct ptk_py_scratch *s = py_scratch.lookup(&zero);
    if (!s || !s->search.interp)
        return 1;
    struct ptk_py_tsearch *t = &s->search;
    if (t->first) {
        t->ts = ptk_py_u64(t->interp + t->threads_head);
        t->first = 0;
    }
    if (!t->ts) {
        t->interp = ptk_py_u64(t->interp + t->interp_next);
        t->first = 1;
        return 0;
    }
    if (ptk_py_u64(t->ts + t->thread_id) == t->fsbase) {
        t->found = t->ts;
        return 1;
    }
    t->ts = ptk_py_u64(t->ts + t->tstate_next);
    return 0;
}

/* The thread state whose thread_id is `fsbase`: the cached one if it still
 * says so (a freed state can be reused), else a walk over every interpreter. */
PTK_INLINE u64 ptk_py_tstate(struct ptk_py_proc *proc, u32 tid, u64 fsbase)
{
    u64 *cached = py_tstates.lookup(&tid);
    if (cached && *cached && ptk_py_u64(*cached + PYL(proc, TSTATE_THREAD_ID)) == fsbase)
        return *cached;
    u32 zero = 0;
    struct ptk_py_scratch *s = py_scratch.lookup(&zero);
    if (!s)
        return 0;
    struct ptk_py_tsearch *t = &s->search;
    t->interp = ptk_py_u64(proc->runtime + PYL(proc, RUNTIME_INTERPRETERS_HEAD));
    t->ts = 0;
    t->found = 0;
    t->fsbase = fsbase;
    t->first = 1;
    t->thread_id = PYL(proc, TSTATE_THREAD_ID);
    t->threads_head = PYL(proc, INTERP_THREADS_HEAD);
    t->interp_next = PYL(proc, INTERP_NEXT);
    t->tstate_next = PYL(proc, TSTATE_NEXT);
    bpf_loop(PY_MAX_THREAD_VISITS, PTK_LOOP_CB(3), 0, 0);   /* py_tstate_step */
    u64 found = t->found;
    if (found)
        py_tstates.update(&tid, &found);
    return found;
}

/* One recorded frame into the stack's hash (ptk_py_hash), run by bpf_loop. */
long bpf_loop_cb__py_hash_step(void *unused)
{
    u32 zero = 0;
    struct ptk_py_scratch *s = py_scratch.lookup(&zero);
    if (!s)
        return 1;
    u32 i = s->hash_next;
    if (i >= s->stack.depth || i >= PY_MAX_FRAMES)
        return 1;
    struct ptk_py_frame *f = &s->stack.frames[i & (PY_MAX_FRAMES - 1)];
    u64 h = s->hash;
    h = (h ^ f->code) * 0x100000001b3ULL;
    h = (h ^ ((u64)(u32)f->offset << 32 | f->flags)) * 0x100000001b3ULL;
    s->hash = h;
    s->hash_next = i + 1;
    return 0;
}

/* Hash of the recorded part of a stack (FNV-1a over its words); never 0. */
PTK_INLINE u64 ptk_py_hash(struct ptk_py_scratch *s)
{
    struct ptk_py_stack *st = &s->stack;
    s->hash = 0xcbf29ce484222325ULL ^ st->pid ^ ((u64)st->truncated << 32) ^
              ((u64)st->depth << 48);
    s->hash_next = 0;
    bpf_loop(PY_MAX_FRAMES, PTK_LOOP_CB(4), 0, 0);   /* py_hash_step */
    return s->hash ? s->hash : 1;
}

/* The current thread's innermost Python frame (0: no thread state, or no frame). */
PTK_INLINE u64 ptk_py_current_frame(struct ptk_py_proc *proc, u32 tid)
{
    u64 fsbase = 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    bpf_probe_read_kernel(&fsbase, sizeof(fsbase),
                          (void *)task + __builtin_offsetof(struct task_struct, thread.fsbase));
    u64 ts = ptk_py_tstate(proc, tid, fsbase);
    if (!ts) {
        ptk_py_stat(PY_STAT_NO_TSTATE);
        return 0;
    }
    if (PY_HAS(proc, TSTATE_CFRAME))      /* 3.11, 3.12 */
        return ptk_py_u64(ptk_py_u64(ts + PYL(proc, TSTATE_CFRAME)) +
                          PYL(proc, CFRAME_CURRENT_FRAME));
    return ptk_py_u64(ts + PYL(proc, TSTATE_FRAME));   /* 3.8-3.10 frame, 3.13 current_frame */
}

/* The code object of the current thread's innermost Python function, or 0
 * (not Python, no frame): what top --functions charges an interpreter leaf to. */
PTK_INLINE u64 ptk_python_leaf_code(u32 pid, u32 tid)
{
    struct ptk_py_proc *proc = ptk_py_process(pid);
    if (!proc)
        return 0;
    u64 frame = ptk_py_current_frame(proc, tid);
    bool has_owner = PY_HAS(proc, FRAME_OWNER);
    for (int i = 0; i < 4; i++) {         /* 3.12+: shim frames hold no code of their own */
        if (!frame)
            break;
        if (!has_owner || (u8)ptk_py_u64(frame + PYL(proc, FRAME_OWNER)) != PY_OWNED_BY_CSTACK) {
            ptk_py_stat(PY_STAT_STACKS);
            return ptk_py_u64(frame + PYL(proc, FRAME_CODE));
        }
        frame = ptk_py_u64(frame + PYL(proc, FRAME_PREVIOUS));
    }
    return 0;
}

/* One step of the frame walk, run by bpf_loop (the verifier checks it once,
 * not once per frame as an unrolled loop: issue 13's launch time). Its state
 * is in the per-CPU scratch; user space links it to the bpf_loop call
 * (pytracekit/engine/bpfloop.py: BCC does not relocate a callback's
 * address). Up to PY_MAX_FRAMES frames are recorded, the rest counted in
 * `truncated`. Returns 1 to stop. */
long bpf_loop_cb__py_step(void *unused)
{
    u32 zero = 0;
    struct ptk_py_scratch *s = py_scratch.lookup(&zero);
    if (!s || !s->walk.frame)
        return 1;
    struct ptk_py_walk *w = &s->walk;
    struct ptk_py_stack *st = &s->stack;
    u32 len = w->block_len & (PY_BLOCK - 1);   /* <= PY_BLOCK by construction */
    if (st->depth >= PY_MAX_FRAMES)
        len = w->count_len & (PY_BLOCK - 1);   /* only `previous` and `owner` */
    if (bpf_probe_read_user(s->block, len, (void *)(w->frame + w->block_start))) {
        if (st->depth < PY_MAX_FRAMES)
            ptk_py_stat(PY_STAT_READ_FAULT);
        w->frame = 0;
        return 1;
    }
    u64 code = PY_WBLK(s, u64, w->code);
    w->frame = PY_WBLK(s, u64, w->previous);
    bool shim = w->has_owner && PY_WBLK(s, u8, w->owner) == PY_OWNED_BY_CSTACK;
    if (st->depth >= PY_MAX_FRAMES) {
        if (!shim)
            st->truncated++;
        return 0;
    }
    if (shim) {   /* the frame before it was an eval call's outermost */
        if (st->depth > 0)
            st->frames[(st->depth - 1) & (PY_MAX_FRAMES - 1)].flags |= PY_FRAME_BOUNDARY;
        return 0;
    }
    struct ptk_py_frame *f = &st->frames[st->depth & (PY_MAX_FRAMES - 1)];
    f->code = code;
    u32 ident = PY_CODE_IDENT(ptk_py_u64(code + w->code_linetable));
    if (w->has_lasti) {      /* 3.8-3.10: one eval call per frame; 3.10 counts code units */
        s32 lasti = PY_WBLK(s, s32, w->lasti);
        f->offset = w->minor == 10 ? lasti * 2 : lasti;
        f->flags = PY_FRAME_BOUNDARY | ident;
    } else {
        f->offset = (s32)(PY_WBLK(s, u64, w->instr_ptr) - (code + w->adaptive));
        f->flags = (w->has_entry && PY_WBLK(s, u8, w->is_entry) ? PY_FRAME_BOUNDARY : 0) | ident;
    }
    st->depth++;
    return 0;
}

/* A frame field's offset within the frame block, or 0 when absent (never read then). */
#define PY_BOFF(proc, f) (PY_HAS(proc, f) ? (u16)(PYL(proc, f) - (proc)->block_start) : 0)

/* The current thread's Python stack stored in py_stacks; its id, or 0 when
 * the process is not (yet) Python or the thread has no Python state. */
PTK_INLINE u64 ptk_python_stack(u32 pid, u32 tid)
{
    struct ptk_py_proc *proc = ptk_py_process(pid);
    if (!proc)
        return 0;
    u64 frame = ptk_py_current_frame(proc, tid);
    if (!frame)
        return 0;

    u32 zero = 0;
    struct ptk_py_scratch *s = py_scratch.lookup(&zero);
    if (!s)
        return 0;
    struct ptk_py_walk *w = &s->walk;
    w->frame = frame;
    w->adaptive = PYL(proc, CODE_ADAPTIVE);
    w->block_start = proc->block_start;
    w->block_len = proc->block_len;
    w->code = PY_BOFF(proc, FRAME_CODE);
    w->previous = PY_BOFF(proc, FRAME_PREVIOUS);
    w->lasti = PY_BOFF(proc, FRAME_LASTI);
    w->instr_ptr = PY_BOFF(proc, FRAME_INSTR_PTR);
    w->is_entry = PY_BOFF(proc, FRAME_IS_ENTRY);
    w->owner = PY_BOFF(proc, FRAME_OWNER);
    w->code_linetable = PYL(proc, CODE_LINETABLE);
    w->has_lasti = PY_HAS(proc, FRAME_LASTI);
    w->has_owner = PY_HAS(proc, FRAME_OWNER);
    w->has_entry = PY_HAS(proc, FRAME_IS_ENTRY);
    w->minor = proc->minor;
    /* counting needs the bytes up to the later of `previous` and `owner` */
    u16 count_len = w->previous + 8;
    if (w->has_owner && w->owner + 1 > count_len)
        count_len = w->owner + 1;
    w->count_len = count_len > w->block_len ? w->block_len : count_len;
    struct ptk_py_stack *st = &s->stack;
    st->depth = 0;
    st->truncated = 0;
    bpf_loop(PY_MAX_VISITS + PY_MAX_EXTRA, PTK_LOOP_CB(1), 0, 0);   /* py_step */
    if (!st->depth)
        return 0;
    st->pid = pid;
    u64 id = ptk_py_hash(s);
    if (!py_stacks.lookup(&id)) {
        if (py_stacks.update(&id, st)) {
            ptk_py_stat(PY_STAT_MAP_FULL);
            return 0;
        }
        ptk_py_event(PY_EVENT_STACK, pid, id);
    }
    ptk_py_stat(PY_STAT_STACKS);
    return id;
}

#endif /* PTK_PYTHON_H */

/* The ground-truth workload every tool's tests run.
 *
 * Each mode does something a known number of times along known stacks, so
 * tests can assert exact counts and exact symbol names. Built with frame
 * pointers and without inlining so every function below keeps its frame.
 * The tests also build it at -O2 without frame pointers (conftest's
 * workload_nofp, workload_stripped) for the CFI unwinder.
 *
 *   workload [--go-file PATH] MODE ARGS...
 *     calls N              call counted_function() exactly N times
 *     stacks N             stack_leaf() N times via stack_path_a, 2N via stack_path_b
 *     spin SECONDS         spin in spin_outer() -> spin_inner()
 *     hotloop SECONDS      call hot_loop(1000000) for SECONDS: one cheap line, then a
 *                          loop on a line of its own (annotate's hot line)
 *     sleep N MS           N sleeps of MS milliseconds in sleeper()
 *     sleeptimed N MS      the same, then prints "slept_ns=T longest_ns=L": the
 *                          wall time (CLOCK_MONOTONIC) from before the first
 *                          sleeper() call to after the last, and of the longest
 *                          call: upper bounds of their off-CPU time however
 *                          late the scheduler ran them
 *     open PATH N          open PATH (O_RDONLY|O_CREAT) N times
 *     exec N [ARG]         fork+exec `workload child ARG` N times, waiting for each
 *     busy N US            call busy_call() N times; each busy-waits US microseconds
 *     timedbusy N US       busy, and after each call prints on stderr how long it took by
 *                          the workload's own clock: "busy_call INNER OUTER" (ns; INNER from
 *                          busy_call's first clock read to its last, OUTER around the
 *                          call): a uprobe's timing of the call lies between the two, even
 *                          when the call was preempted
 *     malloc N SIZE        malloc(SIZE) and free it, N times, in alloc_known()
 *     leak N SIZE          leak N blocks of SIZE bytes from leak_path() -> leak_alloc()
 *     mutex N              two threads each take a contended mutex N times
 *     child [ARG]          exit 0 at once (the marker child for exec)
 *     forkchild MS         fork a child that spins MS ms of CPU time in child_spin() and exits
 *     stackswait N MS      like stacks, then sleep MS ms (so a tool can read the live process)
 *     jit MS [NAME]        spin MS ms in generated code named jit_spin_loop (or NAME)
 *                          in /tmp/perf-PID.map (as a JIT would write it); NAME "-":
 *                          write no map (a test plants one at that path first)
 *     cpuburst N US [MS]   N times: sleep 1 ms, then busy_call(US); then prints its
 *                          context switch counts as "nvcsw=V nivcsw=I" and sleeps
 *                          MS ms (default 1000: a -p test stops the tool then: no
 *                          exit path seen)
 *     sleepspin N SLEEP SPIN  N times: sleep SLEEP ms in sleeper(), then spin SPIN ms of
 *                          this thread's CPU time in child_spin() (so a scheduler tool
 *                          sees N sleeps of SLEEP ms and N*SPIN ms of run time, however
 *                          often the spins are preempted)
 *     touch N [MS]         mmap N fresh pages (no THP) and write each in touch_pages(),
 *                          then stay alive MS ms (default 300; 0: exit at once)
 *     kcontend N           four threads each mmap+touch+munmap 64 pages N times
 *                          (kernel mmap_lock contention: more threads than CPUs)
 *     mutexlinger N        the mutex mode, but main holds the mutex for the first
 *                          100 ms so both workers' first lock waits; then stays
 *                          alive 300 ms (for symbols)
 *     openpaced PATH N MS  open PATH (O_RDONLY|O_CREAT) N times, sleeping MS ms after each
 *     mutexhandoff N MS    N rounds on the global mutex `handoff`: main locks it, lets
 *                          handoff_worker() block on it (waits until the worker is in
 *                          futex), holds it MS ms, unlocks; the worker then takes and
 *                          releases it. So exactly N contended acquisitions from
 *                          handoff_worker (each waiting about MS ms) and N uncontended
 *                          ones from main (each held at least MS ms); then stays alive
 *                          300 ms (for symbols)
 *     mutexcond N          cond_waiter() locks the global mutex `condlock` once and holds it
 *                          through N pthread_cond_waits; main takes it N times, each time
 *                          signalling and keeping it until the waiter's relock inside
 *                          pthread_cond_wait waits in futex. So the waiter's one lock call
 *                          is uncontended (its relocks are no lock calls); main's N are
 *                          counted; then stays alive 300 ms (for symbols)
 *     gatedburst N US      wait for a line on stdin; N times: sleep 1 ms, then
 *                          busy_call(US); print "done"; wait for stdin to close (a
 *                          test reads /proc/PID/schedstat while it is blocked,
 *                          before and after)
 *     signals N            N each of: kill(getpid(), SIGUSR1), raise(SIGUSR2) (tgkill),
 *                          tkill(gettid(), SIGURG), pthread_kill(worker, SIGWINCH); every
 *                          one handled (4N handlers, 4N rt_sigreturns), then prints
 *                          "worker_tid=T handled=H" and exits (the worker still in pause)
 *     unreadable N FILE    write FILE holding its own path; N times: map FILE afresh
 *                          (never touched: no page table entry, so BPF cannot read it)
 *                          and open() the path in that mapping (it succeeds: the kernel
 *                          faults the page in); then N times execve(FILE, [FILE, arg
 *                          in a fresh mapping]) (fails: FILE is not executable, before
 *                          the kernel reads the argument)
 *     threadexec [ARG]     a second thread execs `workload child ARG` (the exec returns
 *                          in the thread group leader's pid)
 *     threads N [MS]       start N threads with pthread_create, one at a time, each
 *                          running started_thread(); then stay alive MS ms (default 300)
 *     runqdelay N MS       two SCHED_FIFO threads pinned to CPU 0: N times the waiter
 *                          (main, priority 1) wakes the spinner (priority 2), which
 *                          preempts it and busy-waits MS ms: exactly N waits on the run
 *                          queue of at least MS ms, each by the waiter behind the
 *                          spinner; prints "spinner_tid=S waiter_tid=W" (needs root)
 *     clonethreads N       start N threads with glibc's clone() (CLONE_THREAD, not
 *                          pthread_create), one at a time, each running cloned_thread()
 *     fileio PATH N        open PATH (O_RDWR|O_CREAT|O_TRUNC) once, then N times: write,
 *                          pwrite, writev, read, pread, readv of one byte, fsync, fdatasync
 *     lockorder [MS]       thread lock_ab() takes mutex lock_a then lock_b; after it ends,
 *                          thread lock_ba() takes lock_b then lock_a (an order inversion,
 *                          never a deadlock: they run one after the other); then stays
 *                          alive MS ms (default 300)
 *     lineloop N           line_loop(N): N iterations whose locals at the line marked
 *                          LINE_PROBE are i = 0..N-1, sq = i*i + 7 and parity ("even"
 *                          or "odd"): source-line probes read them by name
 *     spinchild MS         spin MS ms of CPU time in child_spin() and exit
 *     cpuspin MS           spinchild, then print on stderr "cpu_ns=C wall_ns=W": the
 *                          process's CPU time (since its fork: before the exec too) and
 *                          the wall time since main began
 *     storm N MS           fork+exec `workload spinchild MS` N times, two at a time
 *                          (a storm of short processes, each new to a profiler)
 *     jitfp MS             spin MS ms in spin_inner() called from generated code that
 *                          keeps a frame pointer and has no CFI (JIT-like, named
 *                          jit_fp_stub in /tmp/perf-PID.map): jit_fp_run -> jit_fp_stub
 *                          -> jit_callback -> spin_inner; then MS ms the same through
 *                          fp_gap_stub, the same code in this binary's .text without
 *                          CFI (a gap in its tables): fp_gap_run -> fp_gap_stub ->
 *                          jit_callback -> spin_inner. The generated code is mapped
 *                          before --go-file is waited for, so a tool started meanwhile
 *                          sees it
 *
 * --go-file PATH: wait until PATH exists before starting (for -p tests: the
 * tool attaches first, then the test creates the file).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* noipa too: the -O2 builds (workload_nofp) must not clone or rename a
 * function (.isra.0, .constprop.0), so stacks keep these exact names. */
#define NOINLINE __attribute__((noinline, noipa))

static volatile uint64_t sink;

NOINLINE static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

NOINLINE void counted_function(uint64_t i) { sink += i; }

NOINLINE void stack_leaf(uint64_t i) { sink += i; }

NOINLINE void line_sink(int i, long sq, const char *parity) { sink += i + sq + parity[0]; }

NOINLINE void line_loop(int n)
{
    for (int i = 0; i < n; i++) {
        long sq = (long)i * i + 7;
        const char *parity = i % 2 ? "odd" : "even";
        line_sink(i, sq, parity);   /* LINE_PROBE */
    }
}
NOINLINE void stack_path_a(uint64_t i) { stack_leaf(i); sink++; }
NOINLINE void stack_path_b(uint64_t i) { stack_leaf(i); sink++; }

/* The clock spin_inner's deadline is on: wall time, or (child_spin) the
 * thread's CPU time, so a child that must burn a known CPU time does so even
 * when the machine is loaded. */
static clockid_t spin_clock = CLOCK_MONOTONIC;

NOINLINE static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

NOINLINE void spin_inner(uint64_t deadline)
{
    while (clock_ns(spin_clock) < deadline)
        for (int i = 0; i < 1000; i++)
            sink += i;
}
NOINLINE void spin_outer(uint64_t deadline) { spin_inner(deadline); sink++; }

/* annotate's ground truth: a cheap line run once per call, then a hot loop on
 * one line (tests/test_annotate.py finds both lines by these comments). */
NOINLINE void hot_loop(uint64_t n)
{
    sink += n;                                   /* annotate: cheap line */
    for (uint64_t k = 0; k < n; k++) sink += k;  /* annotate: hot loop */
}

NOINLINE void sleeper(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t main_began;   /* for cpuspin */

/* busy_call's first and last clock reads, for timedbusy */
static uint64_t busy_began, busy_ended;

NOINLINE void busy_call(long us)
{
    uint64_t t = now_ns(), end = t + (uint64_t)us * 1000;
    busy_began = t;
    while ((t = now_ns()) < end)
        sink++;
    busy_ended = t;
}

NOINLINE void *alloc_known(size_t size)
{
    void *p = malloc(size);
    sink += (uintptr_t)p;
    return p;
}

NOINLINE void *leak_alloc(size_t size) { return malloc(size); }
NOINLINE void *leak_path(size_t size) { void *p = leak_alloc(size); sink++; return p; }

NOINLINE void child_spin(long ms)
{
    spin_clock = CLOCK_THREAD_CPUTIME_ID;
    spin_inner(clock_ns(spin_clock) + (uint64_t)ms * 1000000);
}

/* x86-64: mov rax, rdi; 1: dec rax; jnz 1b; ret */
static const unsigned char jit_code[] = { 0x48, 0x89, 0xf8, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3 };

NOINLINE void jit_run(long ms, const char *name)
{
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) { perror("mmap"); exit(1); }
    memcpy(code, jit_code, sizeof(jit_code));
    if (strcmp(name, "-") != 0) {
        char path[64];
        snprintf(path, sizeof(path), "/tmp/perf-%d.map", getpid());
        FILE *map = fopen(path, "w");
        if (!map) { perror(path); exit(1); }
        fprintf(map, "%lx %zx %s\n", (unsigned long)code, sizeof(jit_code), name);
        fclose(map);
    }
    void (*fn)(long) = (void (*)(long))code;
    uint64_t deadline = now_ns() + (uint64_t)ms * 1000000;
    while (now_ns() < deadline)
        fn(100000);
}

/* x86-64: push rbp; mov rbp, rsp; call *rsi; pop rbp; ret (a frame, no CFI) */
static const unsigned char jit_fp_code[] = { 0x55, 0x48, 0x89, 0xe5, 0xff, 0xd6, 0x5d, 0xc3 };
static void (*jit_fp_stub)(uint64_t deadline, void (*callback)(uint64_t));

static void jit_fp_prepare(void)
{
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) { perror("mmap"); exit(1); }
    memcpy(code, jit_fp_code, sizeof(jit_fp_code));
    char path[64];
    snprintf(path, sizeof(path), "/tmp/perf-%d.map", getpid());
    FILE *map = fopen(path, "w");
    if (!map) { perror(path); exit(1); }
    fprintf(map, "%lx %zx jit_fp_stub\n", (unsigned long)code, sizeof(jit_fp_code));
    fclose(map);
    jit_fp_stub = (void (*)(uint64_t, void (*)(uint64_t)))code;
}

NOINLINE void jit_callback(uint64_t deadline) { spin_inner(deadline); sink++; }

NOINLINE void jit_fp_run(long ms)
{
    jit_fp_stub(now_ns() + (uint64_t)ms * 1000000, jit_callback);
    sink++;
}

/* The stub's code as a function of this binary, without .cfi directives: no
 * FDE covers it (hand-written assembly often has none) */
__asm__(".text\n.globl fp_gap_stub\n.type fp_gap_stub, @function\nfp_gap_stub:\n"
        "push %rbp\nmov %rsp, %rbp\ncall *%rsi\npop %rbp\nret\n"
        ".size fp_gap_stub, .-fp_gap_stub\n");
void fp_gap_stub(uint64_t deadline, void (*callback)(uint64_t));

NOINLINE void fp_gap_run(long ms)
{
    fp_gap_stub(now_ns() + (uint64_t)ms * 1000000, jit_callback);
    sink++;
}

static pthread_mutex_t contended = PTHREAD_MUTEX_INITIALIZER;
static long mutex_rounds;

NOINLINE void *mutex_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < mutex_rounds; i++) {
        pthread_mutex_lock(&contended);
        busy_call(200);
        pthread_mutex_unlock(&contended);
    }
    return NULL;
}

static pthread_mutex_t handoff = PTHREAD_MUTEX_INITIALIZER;
static long handoff_rounds;
static sem_t handoff_go, handoff_done;

NOINLINE void *handoff_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < handoff_rounds; i++) {
        sem_wait(&handoff_go);
        pthread_mutex_lock(&handoff);
        pthread_mutex_unlock(&handoff);
        sem_post(&handoff_done);
    }
    return NULL;
}

/* glibc marks a normal mutex 2 ("locked, with waiters") just before a
 * waiter calls futex(FUTEX_WAIT): from then on its lock call is contended. */
static void wait_for_waiter(pthread_mutex_t *m)
{
    while (__atomic_load_n(&m->__data.__lock, __ATOMIC_ACQUIRE) != 2)
        usleep(200);
}

static pthread_mutex_t condlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_ready = PTHREAD_COND_INITIALIZER;
static long cond_rounds, cond_signals;
static sem_t cond_locked;

NOINLINE void *cond_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&condlock);
    sem_post(&cond_locked);
    for (long seen = 0; seen < cond_rounds; seen++) {
        while (cond_signals <= seen)
            pthread_cond_wait(&cond_ready, &condlock);
    }
    pthread_mutex_unlock(&condlock);
    return NULL;
}

NOINLINE void touch_pages(char *base, long n, long page)
{
    for (long k = 0; k < n; k++)
        base[k * page] = 1;
}

static long kcontend_rounds;

NOINLINE void *started_thread(void *arg)
{
    return arg;
}

static sem_t spinner_go;
static long spin_ms;
static volatile pid_t spinner_tid;

static int fifo_on_cpu0(int priority)
{
    cpu_set_t cpu0;
    struct sched_param param = { .sched_priority = priority };
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    /* FIFO first: moving to CPU 0 as a normal task could wait there behind others */
    if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
        return -1;
    return sched_setaffinity(0, sizeof(cpu0), &cpu0);
}

NOINLINE void *runq_spinner(void *arg)
{
    (void)arg;
    spinner_tid = gettid();
    if (fifo_on_cpu0(2) != 0)
        exit(3);
    for (;;) {
        while (sem_wait(&spinner_go) != 0)
            ;
        busy_call(spin_ms * 1000);
    }
    return NULL;
}

/* The waiter posts, the spinner (higher priority, same CPU) preempts it at
 * once and spins: the waiter waits on the run queue for the whole spin. */
NOINLINE void runq_delay(long n, long ms)
{
    pthread_t spinner;
    spin_ms = ms;
    sem_init(&spinner_go, 0, 0);
    if (fifo_on_cpu0(1) != 0)
        exit(3);
    pthread_create(&spinner, NULL, runq_spinner, NULL);
    while (!spinner_tid)
        sched_yield();
    sleeper(50);   /* the spinner is in sem_wait, FIFO, on CPU 0 */
    for (long k = 0; k < n; k++)
        sem_post(&spinner_go);
    printf("spinner_tid=%d waiter_tid=%d\n", (int)spinner_tid, (int)gettid());
    fflush(stdout);
}

static volatile int cloned_done;

/* A thread made by clone(): no glibc thread state, so it leaves by the raw
 * exit system call (the thread only, not the process). */
NOINLINE int cloned_thread(void *arg)
{
    (void)arg;
    __atomic_store_n(&cloned_done, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_exit, 0);
    return 0;
}

NOINLINE void clone_threads(long n)
{
    const int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                      CLONE_SYSVSEM;
    size_t size = 64 * 1024;
    for (long k = 0; k < n; k++) {
        char *stack = malloc(size);     /* leaked: the thread may still be on it */
        cloned_done = 0;
        if (clone(cloned_thread, stack + size, flags, NULL) < 0)
            exit(1);
        while (!__atomic_load_n(&cloned_done, __ATOMIC_SEQ_CST))
            usleep(1000);
    }
}

NOINLINE void *kcontend_worker(void *arg)
{
    long page = sysconf(_SC_PAGESIZE);
    (void)arg;
    for (long k = 0; k < kcontend_rounds; k++) {
        char *p = mmap(NULL, 64 * page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            break;
        p[0] = 1;
        munmap(p, 64 * page);
    }
    return NULL;
}

static volatile sig_atomic_t signals_handled;
static sem_t winch_seen;
static volatile pid_t signals_worker_tid;

static void on_signal(int sig)
{
    (void)sig;
    signals_handled++;
}

/* Takes only SIGWINCH (the others are blocked here), so each process-directed
 * kill lands on the main thread. SIGWINCH too is blocked except inside
 * sigsuspend, which returns once the handler has run and returned
 * (rt_sigreturn): posting only then, the process cannot exit before the last
 * rt_sigreturn, and a signal sent before the worker waits stays pending. */
NOINLINE void *signals_worker(void *arg)
{
    sigset_t all, only_winch;
    (void)arg;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    sigfillset(&only_winch);
    sigdelset(&only_winch, SIGWINCH);
    signals_worker_tid = gettid();
    sem_post(&winch_seen);
    for (;;) {   /* until the process exits */
        sigsuspend(&only_winch);
        sem_post(&winch_seen);
    }
    return NULL;
}

NOINLINE void send_signals(long n)
{
    struct sigaction sa = { .sa_handler = on_signal };
    const int sigs[] = { SIGUSR1, SIGUSR2, SIGURG, SIGWINCH };
    pthread_t worker;
    for (int k = 0; k < 4; k++)
        sigaction(sigs[k], &sa, NULL);
    sem_init(&winch_seen, 0, 0);
    pthread_create(&worker, NULL, signals_worker, NULL);
    while (sem_wait(&winch_seen) != 0)
        ;
    for (long k = 0; k < n; k++)
        kill(getpid(), SIGUSR1);
    for (long k = 0; k < n; k++)
        raise(SIGUSR2);
    for (long k = 0; k < n; k++)
        syscall(SYS_tkill, gettid(), SIGURG);
    for (long k = 0; k < n; k++) {
        pthread_kill(worker, SIGWINCH);
        while (sem_wait(&winch_seen) != 0)   /* one at a time: none coalesce */
            ;
    }
    printf("worker_tid=%d handled=%d\n", (int)signals_worker_tid, (int)signals_handled);
    fflush(stdout);
}

NOINLINE void *exec_from_thread(void *arg)
{
    execl("/proc/self/exe", "workload", "child", (const char *)arg, (char *)NULL);
    _exit(127);
}

/* FILE mapped afresh: its bytes are in the page cache, not in our page tables. */
static const char *fresh_mapping(int fd)
{
    const char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}

NOINLINE void unreadable_paths(long n, const char *file)
{
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, file, strlen(file) + 1) < 0) { perror(file); exit(1); }
    for (long k = 0; k < n; k++) {
        const char *path = fresh_mapping(fd);
        int opened = open(path, O_RDONLY);
        if (opened < 0) { perror("open"); exit(1); }
        close(opened);
        munmap((void *)path, 4096);
    }
    for (long k = 0; k < n; k++) {
        const char *arg = fresh_mapping(fd);
        char *const args[] = { (char *)file, (char *)arg, NULL };
        execve(file, args, NULL);   /* EACCES: not executable */
        munmap((void *)arg, 4096);
    }
    close(fd);
}

NOINLINE void file_io(const char *path, long n)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char c = 'x';
    struct iovec iov = { &c, 1 };
    if (fd < 0) { perror(path); exit(1); }
    for (long k = 0; k < n; k++) {
        if (write(fd, &c, 1) != 1 || pwrite(fd, &c, 1, 0) != 1 || writev(fd, &iov, 1) != 1)
            { perror("write"); exit(1); }
        lseek(fd, 0, SEEK_SET);
        if (read(fd, &c, 1) != 1 || pread(fd, &c, 1, 0) != 1 || readv(fd, &iov, 1) != 1)
            { perror("read"); exit(1); }
        fsync(fd);
        fdatasync(fd);
    }
    close(fd);
}

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER, lock_b = PTHREAD_MUTEX_INITIALIZER;

NOINLINE void *lock_ab(void *arg)
{
    pthread_mutex_lock(&lock_a);
    pthread_mutex_lock(&lock_b);
    pthread_mutex_unlock(&lock_b);
    pthread_mutex_unlock(&lock_a);
    return arg;
}

NOINLINE void *lock_ba(void *arg)
{
    pthread_mutex_lock(&lock_b);
    pthread_mutex_lock(&lock_a);
    pthread_mutex_unlock(&lock_a);
    pthread_mutex_unlock(&lock_b);
    return arg;
}

static void lock_order(long ms)
{
    pthread_t t;
    pthread_create(&t, NULL, lock_ab, NULL);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, lock_ba, NULL);
    pthread_join(t, NULL);
    if (ms > 0)
        sleeper(ms);   /* stay alive so stacks can be symbolized */
}

static void wait_for_file(const char *path)
{
    while (access(path, F_OK) != 0)
        usleep(2000);
}

static long arg_long(int argc, char **argv, int i, const char *what)
{
    if (i >= argc) {
        fprintf(stderr, "workload: missing %s\n", what);
        exit(2);
    }
    return strtol(argv[i], NULL, 10);
}

int main(int argc, char **argv)
{
    main_began = now_ns();
    int i = 1;
    int mode_at = argc > 2 && strcmp(argv[1], "--go-file") == 0 ? 3 : 1;
    if (mode_at < argc && strcmp(argv[mode_at], "jitfp") == 0)
        jit_fp_prepare();   /* before the go file: see the mode's comment */
    if (i + 1 < argc && strcmp(argv[i], "--go-file") == 0) {
        wait_for_file(argv[i + 1]);
        i += 2;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: workload [--go-file PATH] MODE ARGS...\n");
        return 2;
    }
    const char *mode = argv[i++];

    if (strcmp(mode, "calls") == 0) {
        long n = arg_long(argc, argv, i, "N");
        for (long k = 0; k < n; k++)
            counted_function(k);
    } else if (strcmp(mode, "stacks") == 0) {
        long n = arg_long(argc, argv, i, "N");
        for (long k = 0; k < n; k++)
            stack_path_a(k);
        for (long k = 0; k < 2 * n; k++)
            stack_path_b(k);
    } else if (strcmp(mode, "spin") == 0) {
        double s = strtod(i < argc ? argv[i] : "1", NULL);
        spin_outer(now_ns() + (uint64_t)(s * 1e9));
    } else if (strcmp(mode, "hotloop") == 0) {
        uint64_t end = now_ns() + (uint64_t)(strtod(i < argc ? argv[i] : "1", NULL) * 1e9);
        while (now_ns() < end)
            hot_loop(1000000);
    } else if (strcmp(mode, "sleep") == 0) {
        long n = arg_long(argc, argv, i, "N"), ms = arg_long(argc, argv, i + 1, "MS");
        for (long k = 0; k < n; k++)
            sleeper(ms);
    } else if (strcmp(mode, "sleeptimed") == 0) {
        long n = arg_long(argc, argv, i, "N"), ms = arg_long(argc, argv, i + 1, "MS");
        uint64_t began = now_ns(), longest = 0;
        for (long k = 0; k < n; k++) {
            uint64_t t = now_ns();
            sleeper(ms);
            t = now_ns() - t;
            longest = t > longest ? t : longest;
        }
        printf("slept_ns=%llu longest_ns=%llu\n", (unsigned long long)(now_ns() - began),
               (unsigned long long)longest);
    } else if (strcmp(mode, "open") == 0) {
        if (i >= argc) { fprintf(stderr, "workload: missing PATH\n"); return 2; }
        const char *path = argv[i];
        long n = arg_long(argc, argv, i + 1, "N");
        for (long k = 0; k < n; k++) {
            int fd = open(path, O_RDONLY | O_CREAT, 0644);
            if (fd >= 0)
                close(fd);
        }
    } else if (strcmp(mode, "exec") == 0) {
        long n = arg_long(argc, argv, i, "N");
        const char *arg = i + 1 < argc ? argv[i + 1] : "marker";
        for (long k = 0; k < n; k++) {
            pid_t pid = fork();
            if (pid == 0) {
                execl("/proc/self/exe", "workload", "child", arg, (char *)NULL);
                _exit(127);
            }
            waitpid(pid, NULL, 0);
        }
    } else if (strcmp(mode, "busy") == 0) {
        long n = arg_long(argc, argv, i, "N"), us = arg_long(argc, argv, i + 1, "US");
        for (long k = 0; k < n; k++)
            busy_call(us);
    } else if (strcmp(mode, "timedbusy") == 0) {
        long n = arg_long(argc, argv, i, "N"), us = arg_long(argc, argv, i + 1, "US");
        for (long k = 0; k < n; k++) {
            uint64_t before = now_ns();
            busy_call(us);
            uint64_t after = now_ns();
            fprintf(stderr, "busy_call %llu %llu\n", (unsigned long long)(busy_ended - busy_began),
                    (unsigned long long)(after - before));
        }
    } else if (strcmp(mode, "malloc") == 0) {
        long n = arg_long(argc, argv, i, "N"), size = arg_long(argc, argv, i + 1, "SIZE");
        for (long k = 0; k < n; k++)
            free(alloc_known((size_t)size));
    } else if (strcmp(mode, "leak") == 0) {
        long n = arg_long(argc, argv, i, "N"), size = arg_long(argc, argv, i + 1, "SIZE");
        for (long k = 0; k < n; k++)
            sink += (uintptr_t)leak_path((size_t)size);
        sleeper(300);   /* stay alive so outstanding blocks can be read */
    } else if (strcmp(mode, "mutex") == 0) {
        pthread_t a, b;
        mutex_rounds = arg_long(argc, argv, i, "N");
        pthread_create(&a, NULL, mutex_worker, NULL);
        pthread_create(&b, NULL, mutex_worker, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else if (strcmp(mode, "child") == 0) {
        return 0;
    } else if (strcmp(mode, "forkchild") == 0) {
        long ms = arg_long(argc, argv, i, "MS");
        pid_t pid = fork();
        if (pid == 0) {
            child_spin(ms);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    } else if (strcmp(mode, "spinchild") == 0) {
        child_spin(arg_long(argc, argv, i, "MS"));
    } else if (strcmp(mode, "cpuspin") == 0) {
        child_spin(arg_long(argc, argv, i, "MS"));
        fprintf(stderr, "cpu_ns=%llu wall_ns=%llu\n",
                (unsigned long long)clock_ns(CLOCK_PROCESS_CPUTIME_ID),
                (unsigned long long)(now_ns() - main_began));
    } else if (strcmp(mode, "storm") == 0) {
        long n = arg_long(argc, argv, i, "N");
        const char *ms = i + 1 < argc ? argv[i + 1] : "1";
        for (long k = 0; k < n; k += 2) {
            pid_t pids[2];
            for (int j = 0; j < 2; j++) {
                pids[j] = fork();
                if (pids[j] == 0) {
                    execl("/proc/self/exe", "workload", "spinchild", ms, (char *)NULL);
                    _exit(127);
                }
            }
            waitpid(pids[0], NULL, 0);
            waitpid(pids[1], NULL, 0);
        }
    } else if (strcmp(mode, "jitfp") == 0) {
        if (!jit_fp_stub) { fprintf(stderr, "workload: jitfp: no stub\n"); return 2; }
        jit_fp_run(arg_long(argc, argv, i, "MS"));
        fp_gap_run(arg_long(argc, argv, i, "MS"));
    } else if (strcmp(mode, "stackswait") == 0) {
        long n = arg_long(argc, argv, i, "N"), ms = arg_long(argc, argv, i + 1, "MS");
        for (long k = 0; k < n; k++)
            stack_path_a(k);
        for (long k = 0; k < 2 * n; k++)
            stack_path_b(k);
        sleeper(ms);
    } else if (strcmp(mode, "jit") == 0) {
        jit_run(arg_long(argc, argv, i, "MS"), i + 1 < argc ? argv[i + 1] : "jit_spin_loop");
    } else if (strcmp(mode, "cpuburst") == 0) {
        long n = arg_long(argc, argv, i, "N"), us = arg_long(argc, argv, i + 1, "US");
        struct rusage ru;
        for (long k = 0; k < n; k++) {
            sleeper(1);
            busy_call(us);
        }
        getrusage(RUSAGE_SELF, &ru);
        printf("nvcsw=%ld nivcsw=%ld\n", ru.ru_nvcsw, ru.ru_nivcsw);
        fflush(stdout);
        sleeper(i + 2 < argc ? arg_long(argc, argv, i + 2, "MS") : 1000);
    } else if (strcmp(mode, "sleepspin") == 0) {
        long n = arg_long(argc, argv, i, "N"), sleep_ms = arg_long(argc, argv, i + 1, "SLEEP");
        long spin_ms = arg_long(argc, argv, i + 2, "SPIN");
        for (long k = 0; k < n; k++) {
            sleeper(sleep_ms);
            child_spin(spin_ms);
        }
    } else if (strcmp(mode, "touch") == 0) {
        long n = arg_long(argc, argv, i, "N"), page = sysconf(_SC_PAGESIZE);
        char *base = mmap(NULL, n * page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return 1;
        madvise(base, n * page, MADV_NOHUGEPAGE);
        touch_pages(base, n, page);
        long ms = i + 1 < argc ? arg_long(argc, argv, i + 1, "MS") : 300;
        if (ms > 0)
            sleeper(ms);   /* stay alive so stacks can be symbolized */
    } else if (strcmp(mode, "threads") == 0) {
        long n = arg_long(argc, argv, i, "N");
        for (long k = 0; k < n; k++) {
            pthread_t t;
            if (pthread_create(&t, NULL, started_thread, NULL) != 0)
                return 1;
            pthread_join(t, NULL);
        }
        long ms = i + 1 < argc ? arg_long(argc, argv, i + 1, "MS") : 300;
        if (ms > 0)
            sleeper(ms);   /* stay alive so start routines can be symbolized */
    } else if (strcmp(mode, "kcontend") == 0) {
        pthread_t t[4];
        kcontend_rounds = arg_long(argc, argv, i, "N");
        for (int k = 0; k < 4; k++)
            pthread_create(&t[k], NULL, kcontend_worker, NULL);
        for (int k = 0; k < 4; k++)
            pthread_join(t[k], NULL);
    } else if (strcmp(mode, "mutexlinger") == 0) {
        pthread_t a, b;
        mutex_rounds = arg_long(argc, argv, i, "N");
        pthread_mutex_lock(&contended);
        pthread_create(&a, NULL, mutex_worker, NULL);
        pthread_create(&b, NULL, mutex_worker, NULL);
        sleeper(100);
        pthread_mutex_unlock(&contended);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        sleeper(300);   /* stay alive so stacks can be symbolized */
    } else if (strcmp(mode, "openpaced") == 0) {
        if (i >= argc) { fprintf(stderr, "workload: missing PATH\n"); return 2; }
        const char *path = argv[i];
        long n = arg_long(argc, argv, i + 1, "N"), ms = arg_long(argc, argv, i + 2, "MS");
        for (long k = 0; k < n; k++) {
            int fd = open(path, O_RDONLY | O_CREAT, 0644);
            if (fd >= 0)
                close(fd);
            sleeper(ms);
        }
    } else if (strcmp(mode, "mutexhandoff") == 0) {
        pthread_t t;
        long ms = arg_long(argc, argv, i + 1, "MS");
        handoff_rounds = arg_long(argc, argv, i, "N");
        sem_init(&handoff_go, 0, 0);
        sem_init(&handoff_done, 0, 0);
        pthread_create(&t, NULL, handoff_worker, NULL);
        for (long k = 0; k < handoff_rounds; k++) {
            pthread_mutex_lock(&handoff);
            sem_post(&handoff_go);
            wait_for_waiter(&handoff);
            sleeper(ms);
            pthread_mutex_unlock(&handoff);
            sem_wait(&handoff_done);
        }
        pthread_join(t, NULL);
        sleeper(300);   /* stay alive so stacks can be symbolized */
    } else if (strcmp(mode, "mutexcond") == 0) {
        pthread_t t;
        cond_rounds = arg_long(argc, argv, i, "N");
        sem_init(&cond_locked, 0, 0);
        pthread_create(&t, NULL, cond_waiter, NULL);
        sem_wait(&cond_locked);
        for (long k = 0; k < cond_rounds; k++) {
            pthread_mutex_lock(&condlock);
            cond_signals++;
            pthread_cond_signal(&cond_ready);
            wait_for_waiter(&condlock);     /* the waiter's relock sleeps on it */
            pthread_mutex_unlock(&condlock);
        }
        pthread_join(t, NULL);
        sleeper(300);   /* stay alive so stacks can be symbolized */
    } else if (strcmp(mode, "gatedburst") == 0) {
        long n = arg_long(argc, argv, i, "N"), us = arg_long(argc, argv, i + 1, "US");
        char line[64];
        if (!fgets(line, sizeof(line), stdin))
            return 1;
        for (long k = 0; k < n; k++) {
            sleeper(1);
            busy_call(us);
        }
        printf("done\n");
        fflush(stdout);
        while (fgets(line, sizeof(line), stdin))
            ;
    } else if (strcmp(mode, "signals") == 0) {
        send_signals(arg_long(argc, argv, i, "N"));
    } else if (strcmp(mode, "unreadable") == 0) {
        long n = arg_long(argc, argv, i, "N");
        if (i + 1 >= argc) { fprintf(stderr, "workload: missing FILE\n"); return 2; }
        unreadable_paths(n, argv[i + 1]);
    } else if (strcmp(mode, "runqdelay") == 0) {
        runq_delay(arg_long(argc, argv, i, "N"), arg_long(argc, argv, i + 1, "MS"));
    } else if (strcmp(mode, "clonethreads") == 0) {
        clone_threads(arg_long(argc, argv, i, "N"));
    } else if (strcmp(mode, "fileio") == 0) {
        if (i >= argc) { fprintf(stderr, "workload: missing PATH\n"); return 2; }
        file_io(argv[i], arg_long(argc, argv, i + 1, "N"));
    } else if (strcmp(mode, "lockorder") == 0) {
        lock_order(i < argc ? arg_long(argc, argv, i, "MS") : 300);
    } else if (strcmp(mode, "lineloop") == 0) {
        line_loop((int)arg_long(argc, argv, i, "N"));
    } else if (strcmp(mode, "threadexec") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exec_from_thread, (void *)(i < argc ? argv[i] : "marker"));
        pthread_join(t, NULL);   /* never returns: the exec replaces the process */
    } else {
        fprintf(stderr, "workload: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}

/* opensnoop: one event per open()/openat()/openat2() that returns
 * (the enter/exit pairing and all filters are in ptk_pathcall.h). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_pathcall.h"

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    path_call_enter(args->filename, args->flags, args->mode);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    path_call_enter(args->filename, args->flags, args->mode);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    struct open_how how = {};
    bpf_probe_read_user(&how, sizeof(how), args->how);
    path_call_enter(args->filename, how.flags, how.mode);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_open) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { path_call_exit(args->ret); return PTK_TP_PASS; }

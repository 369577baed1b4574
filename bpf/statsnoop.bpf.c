/* statsnoop: one event per stat()-family call that returns
 * (the enter/exit pairing and the filters are in ptk_pathcall.h). */

#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_pathcall.h"

TRACEPOINT_PROBE(syscalls, sys_enter_statfs) { path_call_enter(args->pathname, 0, 0); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_newstat) { path_call_enter(args->filename, 0, 0); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_newlstat) { path_call_enter(args->filename, 0, 0); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_newfstatat) { path_call_enter(args->filename, 0, 0); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_enter_statx) { path_call_enter(args->filename, 0, 0); return PTK_TP_PASS; }

TRACEPOINT_PROBE(syscalls, sys_exit_statfs) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_newstat) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_newlstat) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_newfstatat) { path_call_exit(args->ret); return PTK_TP_PASS; }
TRACEPOINT_PROBE(syscalls, sys_exit_statx) { path_call_exit(args->ret); return PTK_TP_PASS; }

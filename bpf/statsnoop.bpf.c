/* statsnoop: one event per stat()-family call that returns
 * (the enter/exit pairing and the filters are in ptk_pathcall.h). */

#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_pathcall.h"

TRACEPOINT_PROBE(syscalls, sys_enter_statfs) { return path_call_enter(args->pathname, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_enter_newstat) { return path_call_enter(args->filename, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_enter_newlstat) { return path_call_enter(args->filename, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_enter_newfstatat) { return path_call_enter(args->filename, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_enter_statx) { return path_call_enter(args->filename, 0, 0); }

TRACEPOINT_PROBE(syscalls, sys_exit_statfs) { return path_call_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_newstat) { return path_call_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_newlstat) { return path_call_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_newfstatat) { return path_call_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_statx) { return path_call_exit(args->ret); }

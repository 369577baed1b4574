/* list: reads tracefs, ELF files and USDT notes and loads no BPF for that.
 * This program exists for --dry-run/--ebpf: attaching it to sched_switch
 * proves that the tracepoints `list` shows can be attached on this kernel. */
#include "vmlinux.h"
#include "pytracekit.h"

int on_tracepoint(void *ctx)
{
    return PTK_TP_PASS;
}

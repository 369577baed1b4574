/* doctor: does this kernel load fentry (BPF trampoline) programs? */
#include "vmlinux.h"

KFUNC_PROBE(do_nanosleep)
{
    return 0;
}

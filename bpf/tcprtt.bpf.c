/* tcprtt: the smoothed RTT of TCP sockets as a log2 histogram, in the kernel.
 *
 * tcp:tcp_probe fires for each segment an established socket receives
 * (tcp_rcv_established) with that socket's srtt (tp->srtt_us >> 3, in
 * microseconds) after the segment was processed. BCC's tcprtt reads the same
 * value from a kprobe on tcp_rcv_established.
 *
 * BY_ADDR: 0 one histogram, 1 per local address (-b), 2 per remote (-B).
 * FILTER_LADDR/FILTER_RADDR: only this address (wanted_addrs[0]/[1]).
 * UNIT_US: 1 microseconds, 1000 milliseconds.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_tcp.h"

#ifndef BY_ADDR
#define BY_ADDR 0
#endif
#ifndef FILTER_LADDR
#define FILTER_LADDR 0
#endif
#ifndef FILTER_RADDR
#define FILTER_RADDR 0
#endif
#ifndef UNIT_US
#define UNIT_US 1
#endif

struct addr_key {
    u8 addr[16];
    u16 family;
    u16 pad;
    u32 slot;
};
#define HIST_KEY struct addr_key
#include "ptk_hist.h"

struct addr_sum {
    u64 total;
    u64 count;
};

BPF_ARRAY(wanted_addrs, struct tcp_endpoints, 1);    /* its laddr/raddr (family set) */
BPF_HASH(sums, struct addr_key, struct addr_sum, 1024);   /* slot 0: per label */

PTK_INLINE bool same_addr(u8 *a, u8 *b, u16 family)
{
    u32 n = family == PTK_AF_INET6 ? 16 : 4;
#pragma unroll
    for (int i = 0; i < 16; i++)
        if (i < n && a[i] != b[i])
            return false;
    return true;
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
    struct tcp_endpoints ep = { .family = args->family, .lport = args->sport,
                                .rport = args->dport };
    /* saddr/daddr hold a sockaddr_in (address at 4) or sockaddr_in6 (at 8);
     * copied out first: the verifier refuses context reads at computed offsets */
    u8 saddr[28], daddr[28];
    bpf_probe_read_kernel(saddr, sizeof(saddr), args->saddr);
    bpf_probe_read_kernel(daddr, sizeof(daddr), args->daddr);
    if (args->family == PTK_AF_INET6) {
        __builtin_memcpy(ep.laddr, &saddr[8], 16);
        __builtin_memcpy(ep.raddr, &daddr[8], 16);
    } else {
        __builtin_memcpy(ep.laddr, &saddr[4], 4);
        __builtin_memcpy(ep.raddr, &daddr[4], 4);
    }
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;
    if (FILTER_LADDR || FILTER_RADDR) {
        int zero = 0;
        struct tcp_endpoints *want = wanted_addrs.lookup(&zero);
        if (!want || want->family != ep.family)
            return PTK_TP_PASS;
        if (FILTER_LADDR && !same_addr(want->laddr, ep.laddr, ep.family))
            return PTK_TP_PASS;
        if (FILTER_RADDR && !same_addr(want->raddr, ep.raddr, ep.family))
            return PTK_TP_PASS;
    }
    u64 rtt = args->srtt / UNIT_US;
    struct addr_key key = {};
    if (BY_ADDR) {
        key.family = ep.family;
        __builtin_memcpy(key.addr, BY_ADDR == 1 ? ep.laddr : ep.raddr, 16);
    }
    struct addr_sum zero_sum = {}, *sum = sums.lookup_or_try_init(&key, &zero_sum);
    if (sum) {
        __sync_fetch_and_add(&sum->total, rtt);
        __sync_fetch_and_add(&sum->count, 1);
    } else {
        ptk_count_loss(PTK_MAP_FULL);
    }
    key.slot = ptk_log2_slot(rtt);
    ptk_hist_add(&key, 1);
    return PTK_TP_PASS;
}

/* Test helper: a tc ingress classifier that drops the first DROP_COUNT TCP
 * segments carrying data to port DROP_PORT, then lets everything pass. The
 * sender believes them sent, so it must retransmit: a known number of
 * retransmissions for tcpretrans's test. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef DROP_PORT
#define DROP_PORT 0
#endif
#ifndef DROP_COUNT
#define DROP_COUNT 1
#endif

BPF_ARRAY(dropped, u64, 1);

int drop_once(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || eth->h_proto != __builtin_bswap16(0x0800) ||
        ip->protocol != 6)
        return 0;
    struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
    if ((void *)(tcp + 1) > data_end || tcp->dest != __builtin_bswap16(DROP_PORT))
        return 0;
    if (__builtin_bswap16(ip->tot_len) <= ip->ihl * 4 + tcp->doff * 4)
        return 0;                 /* no payload: SYN, ACK, FIN */
    u32 zero = 0;
    u64 *count = dropped.lookup(&zero);
    if (!count || *count >= DROP_COUNT)
        return 0;
    __sync_fetch_and_add(count, 1);
    return 2;                     /* TC_ACT_SHOT */
}

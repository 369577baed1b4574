/* pktcount: packets and bytes per interface, direction, protocol and port.
 *
 * The same parser runs as a tc (clsact, direct-action) classifier on ingress
 * and egress, or as an XDP program (ingress only). It never changes a
 * packet's fate: tc programs return TC_ACT_OK, XDP returns XDP_PASS.
 *
 * The port counted is the destination port (0 for protocols without ports).
 * PORT_FILTER: count a packet only when its source or destination port is
 * in `wanted_ports` (filled by the front-end).
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif
#ifndef PORT_FILTER
#define PORT_FILTER 0
#endif
#define PTK_TC_ACT_OK 0
#define PTK_XDP_PASS 2
#define PTK_ETH_P_IP 0x0800
#define PTK_ETH_P_IPV6 0x86DD
#define PTK_IPV6_HDRLEN 40

enum direction { DIR_INGRESS = 0, DIR_EGRESS = 1 };

struct packet_key {
    u32 ifindex;
    u16 ethertype;    /* host order */
    u8 direction;
    u8 ipproto;       /* 0 when not IP */
    u16 dport;        /* host order, 0 when the protocol has none */
    u16 pad;
};

struct packet_value {
    u64 packets;
    u64 bytes;
};

BPF_PERCPU_HASH(packets, struct packet_key, struct packet_value, MAX_ENTRIES);

BPF_HASH(wanted_ports, u16, u8, 64);

PTK_INLINE bool port_selected(u16 sport, u16 dport)
{
    if (!PORT_FILTER)
        return true;
    return wanted_ports.lookup(&sport) || wanted_ports.lookup(&dport);
}

/* Fills key->ethertype/ipproto/dport from the frame; returns the source port
 * (for the filter). Headers beyond data_end leave the fields at 0. */
PTK_INLINE u16 parse(void *data, void *data_end, struct packet_key *key)
{
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return 0;
    key->ethertype = __builtin_bswap16(eth->h_proto);
    void *l4;
    if (key->ethertype == PTK_ETH_P_IP) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return 0;
        key->ipproto = ip->protocol;
        /* fragments after the first carry no L4 header */
        if (__builtin_bswap16(ip->frag_off) & 0x1fff)
            return 0;
        l4 = (void *)ip + ip->ihl * 4;
    } else if (key->ethertype == PTK_ETH_P_IPV6) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return 0;
        key->ipproto = ip6->nexthdr;   /* extension headers are not followed */
        l4 = (void *)ip6 + PTK_IPV6_HDRLEN;
    } else {
        return 0;
    }
    if (key->ipproto != IPPROTO_TCP && key->ipproto != IPPROTO_UDP)
        return 0;
    /* sport and dport are the first 4 bytes of both TCP and UDP headers */
    u16 *ports = l4;
    if ((void *)(ports + 2) > data_end)
        return 0;
    key->dport = __builtin_bswap16(ports[1]);
    return __builtin_bswap16(ports[0]);
}

PTK_INLINE void count(void *data, void *data_end, u32 ifindex, u8 direction, u64 len)
{
    struct packet_key key = { .ifindex = ifindex, .direction = direction };
    u16 sport = parse(data, data_end, &key);
    if (!port_selected(sport, key.dport))
        return;
    struct packet_value zero = {}, *value = packets.lookup_or_try_init(&key, &zero);
    if (!value) {
        ptk_count_loss(PTK_MAP_FULL);
        return;
    }
    value->packets++;     /* per-CPU values: no atomics needed */
    value->bytes += len;
}

int tc_ingress(struct __sk_buff *skb)
{
    count((void *)(long)skb->data, (void *)(long)skb->data_end, skb->ifindex, DIR_INGRESS,
          skb->len);
    return PTK_TC_ACT_OK;
}

int tc_egress(struct __sk_buff *skb)
{
    count((void *)(long)skb->data, (void *)(long)skb->data_end, skb->ifindex, DIR_EGRESS,
          skb->len);
    return PTK_TC_ACT_OK;
}

int xdp_ingress(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
    count(data, data_end, ctx->ingress_ifindex, DIR_INGRESS, data_end - data);
    return PTK_XDP_PASS;
}

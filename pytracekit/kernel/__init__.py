"""What the running kernel offers and how it names things: BTF, the generated headers, tracefs, perf events, bpf(2) calls, features, system calls, block devices."""

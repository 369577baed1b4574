"""pytracekit: eBPF tracing and profiling on kernels with BTF and no headers."""

__version__ = "0.1.0"

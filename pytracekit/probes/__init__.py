"""Probes: specs parsed and resolved (specs), user expressions (expr, expr_c), the BPF C generated for them (codegen), tracepoint filters, perf events, source-line probes."""

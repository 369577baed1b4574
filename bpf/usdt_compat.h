/* Force-included (clang -include) when a program has USDT probes: BCC
 * prepends its generated USDT argument readers to the program, before
 * vmlinux.h, and they use the kernel's __always_inline and <stdint.h> names,
 * which the BTF-derived include tree does not provide. The typedefs match
 * the kernel's own, so a later identical typedef in vmlinux.h is harmless. */
#ifndef PYTRACEKIT_USDT_COMPAT_H
#define PYTRACEKIT_USDT_COMPAT_H
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#endif

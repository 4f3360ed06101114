/*
 * The instruction sets the CPU backend's op paths need, oldest first. A
 * backend takes the fastest path of each op that its CPU runs within a cap:
 * the newest set, or the one TURBODIFF_CPU_MAX_ISA names when the backend
 * is created (generic, avx2, avx512, amx), so that one machine can time and
 * test what an older CPU runs. OpenBLAS's sgemm follows its own
 * OPENBLAS_CORETYPE.
 */
#ifndef TD_BACKEND_CPU_ISA_H
#define TD_BACKEND_CPU_ISA_H

typedef enum { TD_ISA_GENERIC, TD_ISA_AVX2, TD_ISA_AVX512, TD_ISA_AMX } td_isa;

#endif

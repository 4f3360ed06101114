/*
 * td_now: a monotonic clock in seconds, for stage timings, the estimate's
 * probe and the debug tools' timings (wall time, not affected by clock
 * changes).
 */
#ifndef TD_CORE_CLOCK_H
#define TD_CORE_CLOCK_H

#include <time.h>

static inline double td_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif

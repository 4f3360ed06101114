/*
 * How much host memory a process may still allocate (backend.h): what the
 * CPU backend reports as its device's free memory.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

/* The kB value of a /proc/meminfo line "key: N kB", or 0 when absent. */
static uint64_t meminfo_kb(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t n = strlen(key);
    uint64_t v = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            if (sscanf(line + n + 1, "%" SCNu64, &v) != 1)
                v = 0;
            break;
        }
    fclose(f);
    return v;
}

/* One number from a cgroup file; 0 when it is missing or "max". */
static uint64_t cgroup_value(const char *path)
{
    FILE *f = fopen(path, "r");
    uint64_t v = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%" SCNu64, &v) != 1)
        v = 0;
    fclose(f);
    return v;
}

/* The limit left by this process's cgroup v2 (/proc/self/cgroup names it
 * "0::/path"), or UINT64_MAX when there is none. */
static uint64_t cgroup_left(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[512], path[768];
    uint64_t max, cur;
    if (!f)
        return UINT64_MAX;
    path[0] = '\0';
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
            break;
        }
    fclose(f);
    if (!path[0])
        return UINT64_MAX;
    {
        char file[800];
        snprintf(file, sizeof(file), "%s/memory.max", path);
        max = cgroup_value(file);
        snprintf(file, sizeof(file), "%s/memory.current", path);
        cur = cgroup_value(file);
    }
    if (!max)
        return UINT64_MAX;
    return max > cur ? max - cur : 0;
}

size_t td_host_memory_available(void)
{
    uint64_t avail = meminfo_kb("MemAvailable") * 1024, left = cgroup_left();
    if (!avail) {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    }
    if (left < avail)
        avail = left;
    return avail > SIZE_MAX ? SIZE_MAX : (size_t)avail;
}

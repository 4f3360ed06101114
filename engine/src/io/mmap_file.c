#include "mmap_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int td_bytes_map(td_ctx *ctx, const char *path, td_bytes *out)
{
    struct stat st;
    int fd;

    memset(out, 0, sizeof(*out));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(ctx, TD_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return td_fail(ctx, TD_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return td_fail(ctx, TD_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return td_fail(ctx, TD_EIO, "%s: cannot map %lld bytes: %s", path,
                           (long long)st.st_size, strerror(e));
        }
        out->data = p;
        out->size = (size_t)st.st_size;
        out->kind = TD_BYTES_MMAP;
    }
    /* The mapping outlives the descriptor. */
    close(fd);
    return 0;
}

void td_bytes_release(td_bytes *b)
{
    if (b->kind == TD_BYTES_MMAP)
        munmap((void *)b->data, b->size);
    else if (b->kind == TD_BYTES_HEAP)
        free((void *)b->data);
    memset(b, 0, sizeof(*b));
}

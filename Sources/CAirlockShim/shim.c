#if defined(__linux__)
#include "CAirlockShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/xattr.h>
#include <unistd.h>

int airlock_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int airlock_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int airlock_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_CLOEXEC); }

int airlock_signalfd_read(int fd) {
    struct signalfd_siginfo si;
    ssize_t n;
    do { n = read(fd, &si, sizeof(si)); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    return n == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

int airlock_random(void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom((char *)buf + done, len - done, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}
#endif

#if defined(__linux__)
int airlock_mark_placeholder(int fd, const char *instance) {
    return fsetxattr(fd, AIRLOCK_PLACEHOLDER_XATTR, instance, strlen(instance), 0);
}

int airlock_is_placeholder(int fd) { return fgetxattr(fd, AIRLOCK_PLACEHOLDER_XATTR, NULL, 0) > 0; }
#endif

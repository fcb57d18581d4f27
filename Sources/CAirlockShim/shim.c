#if defined(__linux__)
#include "CAirlockShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <sys/xattr.h>
#include <unistd.h>

long airlock_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int) * 8)];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 8) { errno = EINVAL; return -1; }
    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.space;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return (long)n;
}

int airlock_open_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    long fd;
    do { fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how)); } while (fd < 0 && errno == EINTR);
    return (int)fd;
}

int airlock_seqpacket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

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

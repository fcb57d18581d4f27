/*
 * CAirlockShim: the only C in Airlock. It holds what Swift cannot do safely or
 * cannot reach through the Glibc module:
 *  - the sandbox helper (helper.c, init.c, mounts.c, landlock.c, plan.c), a
 *    single-threaded program that enters namespaces and execs the command;
 *  - thin wrappers for Linux calls the Glibc module hides behind _GNU_SOURCE.
 * Every name is prefixed `airlock_` (Swift-facing) or `al_` (helper-internal).
 */
#ifndef CAIRLOCK_SHIM_H
#define CAIRLOCK_SHIM_H
#if defined(__linux__)

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AIRLOCK_O_PATH 010000000

/* memfd_create(name, MFD_CLOEXEC) */
int airlock_memfd(const char *name);
/* pipe2(fds, O_CLOEXEC) */
int airlock_pipe_cloexec(int fds[2]);
/* signalfd(-1, mask, SFD_CLOEXEC) */
int airlock_signalfd(const sigset_t *mask);
/* Reads one signalfd_siginfo; returns the signal number, 0 if none, -1 on error. */
int airlock_signalfd_read(int fd);
/* getrandom(buf, len, 0), retrying short reads and EINTR; 0 on success. */
int airlock_random(void *buf, size_t len);

/* The xattr that marks a workspace placeholder directory as airlock's. */
#define AIRLOCK_PLACEHOLDER_XATTR "user.airlock.placeholder"
/* Marks the directory `fd` as a placeholder owned by run `instance`; 0 on success. */
int airlock_mark_placeholder(int fd, const char *instance);
/* 1 if the directory `fd` carries the placeholder mark, else 0. */
int airlock_is_placeholder(int fd);

/* The control socket of a long-lived sandbox (service.c): fixed-size header, then payload. */
struct al_svc_msg {
    uint32_t kind;
    uint32_t id;
    uint32_t arg;
    uint32_t reserved;
};
enum {
    AL_SVC_EXEC = 1,
    AL_SVC_SIGNAL = 2,
    AL_SVC_STARTED = 101,
    AL_SVC_FAILED = 102,
    AL_SVC_EXITED = 103,
    AL_SVC_REFUSED = 104,
};
/* The largest request (header + argv/env/cwd plan) PID 1 accepts. */
#define AL_SVC_MAX_MESSAGE (192u * 1024u)

/* sendmsg(sock, buf, MSG_NOSIGNAL) with `nfds` descriptors as SCM_RIGHTS; bytes sent or -1. */
long airlock_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC) */
int airlock_seqpacket_pair(int fds[2]);

/* openat2(dirfd, path, {flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_XDEV}): `path` is resolved inside `dirfd` and may not leave it ("..", an absolute
 * path or a mount crossing: EXDEV), and no symlink in it is followed, not even one that stays
 * inside (ELOOP): what a sandbox can write is never resolved through a link it planted.
 * -1 with errno (ENOSYS before Linux 5.6). */
int airlock_open_beneath(int dirfd, const char *path, int flags, unsigned int mode);

/* Entry point of the airlock-sandbox executable. */
int al_helper_main(int argc, char **argv);

#endif
#endif

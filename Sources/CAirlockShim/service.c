/*
 * PID 1 of a long-lived sandbox (plan record AL_SERVICE): instead of one
 * command, it runs the execs the daemon asks for on the control socket
 * (fd 7, SOCK_SEQPACKET, the other end held by airlock serve).
 *
 * PID 1 is fully confined before it gets here (privileges dropped, Landlock,
 * rlimits, seccomp), so every exec is forked from an already-confined process
 * and is confined exactly like `airlock run`'s command. The control socket is
 * close-on-exec: no command ever holds it, and PID 1 is not dumpable, so no
 * process of the sandbox can read or write it.
 *
 * Messages are struct al_svc_msg (below), host byte order (both ends are on
 * this host):
 *   daemon -> PID 1
 *     EXEC   id, payload: an "ALP1" plan of AL_ARG, AL_ENV and AL_CWD records;
 *            SCM_RIGHTS: exactly 3 descriptors, the command's stdin, stdout, stderr
 *     SIGNAL id, arg = signal number: sent to the exec's process group
 *   PID 1 -> daemon
 *     STARTED id, value = pid in the sandbox
 *     FAILED  id, value = errno of the failed execve, or -errno of a failed chdir to
 *             the working directory (EXITED follows)
 *     EXITED  id, value = wait status
 *     REFUSED id, value = errno: the request was malformed (EINVAL) or too many
 *             execs run already (EAGAIN); nothing was started
 * End of file on the control socket (the daemon closed it or died) ends PID 1,
 * and the kernel kills every process of the sandbox with it.
 */
#if defined(__linux__)
#include "sandbox.h"
#include "CAirlockShim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SVC_MAX_EXECS 256

struct exec_slot {
    uint32_t id;
    pid_t pid;
};

static struct exec_slot slots[SVC_MAX_EXECS];
static size_t nslots;

static void reply(int ctl, uint32_t kind, uint32_t id, int32_t value) {
    struct al_svc_msg m = {.kind = kind, .id = id, .arg = (uint32_t)value, .reserved = 0};
    ssize_t n;
    do { n = send(ctl, &m, sizeof(m), MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EPIPE) _exit(0); /* the daemon is gone: so is the sandbox */
}

static void start_exec(int ctl, uint32_t id, uint8_t *payload, size_t len, const int fds[3]) {
    if (nslots >= SVC_MAX_EXECS) { reply(ctl, AL_SVC_REFUSED, id, EAGAIN); return; }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) { reply(ctl, AL_SVC_REFUSED, id, ENOMEM); return; }
    memcpy(copy, payload, len);
    struct al_plan plan;
    if (al_plan_parse(copy, len, &plan) < 0) { reply(ctl, AL_SVC_REFUSED, id, EINVAL); return; }
    char **argv = al_collect(&plan, AL_ARG);
    char **envp = al_collect(&plan, AL_ENV);
    char *cwd = NULL;
    for (size_t i = 0; i < plan.count; i++)
        if (plan.records[i].tag == AL_CWD) { free(cwd); cwd = al_field_str(&plan.records[i], 0); }
    al_plan_free(&plan);
    if (!argv || !envp || !argv[0] || !argv[0][0]) {
        al_free_vector(argv); al_free_vector(envp); free(cwd);
        reply(ctl, AL_SVC_REFUSED, id, EINVAL);
        return;
    }
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0) {
        al_free_vector(argv); al_free_vector(envp); free(cwd);
        reply(ctl, AL_SVC_REFUSED, id, errno);
        return;
    }
    pid_t child = fork();
    if (child == 0) {
        close(exec_pipe[0]);
        al_child_reset(); /* its own process group: SIGNAL and timeouts reach everything it starts */
        /* The received descriptors are >= 3 (PID 1 keeps 0-2 open), so no dup2 clobbers another. */
        for (int i = 0; i < 3; i++) {
            if (dup2(fds[i], i) < 0) {
                int e = errno;
                (void)!write(exec_pipe[1], &e, sizeof(e));
                _exit(126);
            }
        }
        if (cwd && chdir(cwd) < 0) {
            int e = -errno; /* negative: the working directory, not the command, failed */
            (void)!write(exec_pipe[1], &e, sizeof(e));
            _exit(126);
        }
        al_exec_command(argv, envp, exec_pipe[1]);
    }
    int fork_err = errno;
    close(exec_pipe[1]);
    al_free_vector(argv); al_free_vector(envp); free(cwd);
    if (child < 0) {
        close(exec_pipe[0]);
        reply(ctl, AL_SVC_REFUSED, id, fork_err);
        return;
    }
    slots[nslots++] = (struct exec_slot){.id = id, .pid = child};
    int exec_err = 0;
    ssize_t got = al_read_all(exec_pipe[0], &exec_err, sizeof(exec_err));
    close(exec_pipe[0]);
    if (got == (ssize_t)sizeof(exec_err)) reply(ctl, AL_SVC_FAILED, id, exec_err);
    else reply(ctl, AL_SVC_STARTED, id, (int32_t)child);
}

static void signal_exec(uint32_t id, int signo) {
    if (signo <= 0 || signo >= NSIG) return;
    for (size_t i = 0; i < nslots; i++) {
        if (slots[i].id != id) continue;
        kill(-slots[i].pid, signo);
        kill(slots[i].pid, signo); /* in case it left its process group */
    }
}

static int readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0) > 0;
}

/* One request; returns 0 when the daemon closed the socket. */
static int serve_one(int ctl, uint8_t *buf, size_t cap) {
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int) * 8)];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof(control.space);
    ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n == 0) return 0;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 1 : 0;
    int fds[8];
    int nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && nfds < 8; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    struct al_svc_msg m;
    int bad = (size_t)n < sizeof(m) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
    if (!bad) memcpy(&m, buf, sizeof(m));
    if (bad) {
        reply(ctl, AL_SVC_REFUSED, (size_t)n >= sizeof(m) ? ((struct al_svc_msg *)(void *)buf)->id : 0, EINVAL);
    } else if (m.kind == AL_SVC_EXEC && nfds == 3) {
        start_exec(ctl, m.id, buf + sizeof(m), (size_t)n - sizeof(m), fds);
    } else if (m.kind == AL_SVC_SIGNAL && nfds == 0) {
        signal_exec(m.id, (int)m.arg);
    } else {
        reply(ctl, AL_SVC_REFUSED, m.id, EINVAL);
    }
    for (int i = 0; i < nfds; i++) close(fds[i]);
    return 1;
}

void al_service_main(int ctl, int sfd, struct al_relay *relay) {
    size_t cap = AL_SVC_MAX_MESSAGE;
    uint8_t *buf = malloc(cap);
    if (!buf) _exit(AL_EXIT_SETUP);
    al_status("ready");
    for (;;) {
        al_relay_wait2(relay, sfd, ctl);
        if (readable(sfd)) {
            struct signalfd_siginfo si;
            ssize_t n = read(sfd, &si, sizeof(si));
            if (n == (ssize_t)sizeof(si) && si.ssi_signo != SIGCHLD) {
                /* The helper forwards what the daemon sends it: an end-of-sandbox request. */
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP ||
                    si.ssi_signo == SIGQUIT)
                    _exit(0);
            }
            int status;
            pid_t w;
            while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
                for (size_t i = 0; i < nslots; i++) {
                    if (slots[i].pid != w) continue;
                    reply(ctl, AL_SVC_EXITED, slots[i].id, status);
                    slots[i] = slots[--nslots];
                    break;
                }
            }
        }
        if (readable(ctl) && !serve_one(ctl, buf, cap)) _exit(0);
    }
}
#endif

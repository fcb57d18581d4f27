/*
 * PID 1 of the sandbox. Runs in the new namespaces with every capability of
 * its own user namespace and none outside it. In order: wait for the id maps,
 * hostname, loopback, root file system and pivot_root, then drop everything
 * (capabilities, bounding set, securebits, no_new_privs), Landlock, rlimits,
 * seccomp last; then start the command and reap until it exits, relaying the
 * egress gateway's loopback port meanwhile (relay.c) when the network is proxied.
 * When PID 1 exits, the kernel kills every process left in the namespace.
 */
#if defined(__linux__)
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void bring_up_loopback(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) al_fail("network", errno, "socket for loopback");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) al_fail("network", errno, "read loopback flags");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) al_fail("network", errno, "bring loopback up");
    close(s);
}

static void drop_privileges(void) {
    /* Lock root out for good: even a uid-0 user inside gains nothing at execve. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) < 0)
        al_fail("privileges", errno, "set securebits");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        al_fail("privileges", errno, "clear ambient capabilities");
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            al_fail("privileges", errno, "drop capability %d from the bounding set", cap);
    }
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0) al_fail("privileges", errno, "drop capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) al_fail("privileges", errno, "set no_new_privs");
}

static void apply_rlimits(const struct al_plan *plan) {
    for (size_t i = 0; i < plan->count; i++) {
        const struct al_record *r = &plan->records[i];
        if (r->tag != AL_RLIMIT) continue;
        uint64_t res, soft, hard;
        if (al_field_u64(r, 0, &res) || al_field_u64(r, 1, &soft) || al_field_u64(r, 2, &hard))
            al_fail("rlimits", EINVAL, "malformed rlimit record");
        struct rlimit rl = {.rlim_cur = soft == UINT64_MAX ? RLIM_INFINITY : soft,
                            .rlim_max = hard == UINT64_MAX ? RLIM_INFINITY : hard};
        struct rlimit cur;
        /* never raise a hard limit the caller already had */
        if (getrlimit((int)res, &cur) == 0 && cur.rlim_max != RLIM_INFINITY) {
            if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > cur.rlim_max) rl.rlim_max = cur.rlim_max;
            if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
        }
        if (setrlimit((int)res, &rl) < 0) al_fail("rlimits", errno, "setrlimit(%llu)", (unsigned long long)res);
    }
}

static void install_seccomp(const struct al_plan *plan) {
    for (size_t i = 0; i < plan->count; i++) {
        const struct al_record *r = &plan->records[i];
        if (r->tag != AL_SECCOMP) continue;
        if (r->nfields != 1 || r->fields[0].len == 0 || r->fields[0].len % sizeof(struct sock_filter) != 0 ||
            r->fields[0].len / sizeof(struct sock_filter) > BPF_MAXINSNS)
            al_fail("seccomp", EINVAL, "malformed seccomp program");
        size_t n = r->fields[0].len / sizeof(struct sock_filter);
        struct sock_filter *insns = malloc(r->fields[0].len);
        if (!insns) al_fail("seccomp", ENOMEM, "allocate filter");
        memcpy(insns, r->fields[0].data, r->fields[0].len);
        struct sock_fprog prog = {.len = (unsigned short)n, .filter = insns};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            al_fail("seccomp", errno, "install the seccomp filter");
        free(insns);
    }
}

/* The NULL-terminated vector of a plan's string records of `tag` (AL_ARG, AL_ENV); NULL when
 * out of memory or a value holds a NUL. */
char **al_collect(const struct al_plan *plan, uint32_t tag) {
    size_t n = 0;
    for (size_t i = 0; i < plan->count; i++) n += plan->records[i].tag == tag;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < plan->count; i++) {
        if (plan->records[i].tag != tag) continue;
        v[k] = al_field_str(&plan->records[i], 0);
        if (!v[k]) {
            al_free_vector(v);
            return NULL;
        }
        k++;
    }
    return v;
}

void al_free_vector(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

/* In a child forked to become a command: default signal dispositions, nothing blocked, and
 * a session (process group) of its own, so a signal to the group reaches all it starts. */
void al_child_reset(void) {
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    setsid();
}

static char **collect(const struct al_plan *plan, uint32_t tag) {
    char **v = al_collect(plan, tag);
    if (!v) al_fail("exec", EINVAL, "malformed argument or environment entry");
    return v;
}

static const char *plan_string(const struct al_plan *plan, uint32_t tag) {
    for (size_t i = 0; i < plan->count; i++)
        if (plan->records[i].tag == tag) return al_field_str(&plan->records[i], 0);
    return NULL;
}

/* execvpe() searches the *caller's* PATH; the command must be found in the
 * sandbox's own. Only async-signal-safe calls here: we are a forked child. */
void al_exec_command(char **argv, char **envp, int report_fd) {
    int err = ENOENT;
    if (strchr(argv[0], '/')) {
        execve(argv[0], argv, envp);
        err = errno;
    } else {
        const char *path = "/usr/local/bin:/usr/bin:/bin";
        for (char **e = envp; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
        char buf[4096];
        const char *p = path;
        int saw_eacces = 0;
        while (*p) {
            const char *colon = strchr(p, ':');
            size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
            size_t alen = strlen(argv[0]);
            if (dlen + alen + 2 < sizeof(buf)) {
                memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
                size_t o = dlen ? dlen : 1;
                buf[o++] = '/';
                memcpy(buf + o, argv[0], alen + 1);
                execve(buf, argv, envp);
                if (errno == EACCES) saw_eacces = 1;
                else if (errno != ENOENT && errno != ENOTDIR) { err = errno; break; }
            }
            if (!colon) break;
            p = colon + 1;
        }
        if (saw_eacces && err == ENOENT) err = EACCES;
    }
    (void)!write(report_fd, &err, sizeof(err));
    _exit(err == ENOENT ? 127 : 126);
}

void al_init_main(const struct al_plan *plan, int sync_fd, const int *prepared) {
    /* PID 1 must not outlive the helper that supervises it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    char go;
    if (al_read_all(sync_fd, &go, 1) != 1) _exit(AL_EXIT_SETUP); /* helper failed; it reported why */
    close(sync_fd);

    al_status("init");
    /* Become the sandbox user. PID 1 keeps the caller's kuid across clone; when that is
     * not the mapped one (a root caller runs the sandbox as an unprivileged host uid),
     * nothing could be created until it switches. NO_SETUID_FIXUP keeps this namespace's
     * capabilities for the rest of the setup; they are all dropped before the command. */
    for (size_t i = 0; i < plan->count; i++) {
        if (plan->records[i].tag != AL_ID_MAP) continue;
        uint64_t uid, gid;
        if (al_field_u64(&plan->records[i], 0, &uid) || al_field_u64(&plan->records[i], 2, &gid))
            al_fail("idmap", EINVAL, "malformed id map record");
        if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0) al_fail("privileges", errno, "set securebits");
        if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) al_fail("privileges", errno, "become gid %llu", (unsigned long long)gid);
        if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) al_fail("privileges", errno, "become uid %llu", (unsigned long long)uid);
    }
    const char *hostname = plan_string(plan, AL_HOSTNAME);
    if (hostname && sethostname(hostname, strlen(hostname)) < 0) al_fail("hostname", errno, "sethostname");
    bring_up_loopback();
    al_build_root(plan, prepared);

    al_status("root-built");
    /* Proxied network: the loopback listeners exist before the command does, and with
     * the privileges a port below 1024 needs. */
    struct al_relay *relay = al_relay_open(plan);
    int service = 0;
    for (size_t i = 0; i < plan->count; i++) service |= plan->records[i].tag == AL_SERVICE;
    const char *cwd = plan_string(plan, AL_CWD);
    char **argv = collect(plan, AL_ARG);
    char **envp = collect(plan, AL_ENV);
    if (!argv[0] && !service) al_fail("exec", EINVAL, "no command");

    /* /proc/1 (fds, memory, environ) must not be readable by the command. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    drop_privileges();
    al_apply_landlock(plan);
    apply_rlimits(plan);

    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    int fwd[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++) sigaddset(&mask, fwd[i]);
    sigprocmask(SIG_BLOCK, &mask, &old);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) al_fail("signals", errno, "signalfd");

    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0) al_fail("exec", errno, "pipe2");

    install_seccomp(plan); /* last: nothing after this needs a refused call */
    if (service) {
        close(exec_pipe[0]);
        close(exec_pipe[1]);
        al_service_main(AL_CONTROL_FD, sfd, relay);
    }

    pid_t child = fork();
    if (child < 0) al_fail("exec", errno, "fork");
    if (child == 0) {
        close(exec_pipe[0]);
        al_child_reset();
        if (cwd && chdir(cwd) < 0) {
            int e = errno;
            (void)!write(exec_pipe[1], &e, sizeof(e));
            _exit(126);
        }
        al_exec_command(argv, envp, exec_pipe[1]);
    }
    close(exec_pipe[1]);
    int exec_err = 0;
    ssize_t got = al_read_all(exec_pipe[0], &exec_err, sizeof(exec_err));
    close(exec_pipe[0]);
    if (got == (ssize_t)sizeof(exec_err))
        al_status("exec-failed %d %s", exec_err, argv[0]);
    else
        al_status("started %d", (int)child);

    for (;;) {
        al_relay_wait(relay, sfd); /* serves the egress relay, if any, until a signal is pending */
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n < 0 && errno == EINTR) continue;
        if (n == (ssize_t)sizeof(si) && si.ssi_signo != SIGCHLD) {
            kill(child, (int)si.ssi_signo);
            continue;
        }
        int status;
        pid_t w;
        while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
            if (w != child) continue; /* an orphan: reaped */
            if (WIFEXITED(status)) {
                al_status("exit %d", WEXITSTATUS(status));
                _exit(WEXITSTATUS(status));
            }
            int sig = WTERMSIG(status);
            al_status("signal %d%s", sig, WCOREDUMP(status) ? " core" : "");
            _exit(128 + sig);
        }
    }
}
#endif

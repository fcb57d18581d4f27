/*
 * The outer half of the helper: it stays in the host's namespaces, joins the
 * sandbox's cgroups, clones PID 1 into fresh namespaces, writes its id maps and
 * supervises it (wall clock, signals, lifeline). See sandbox.h.
 */
#if defined(__linux__)
#include "sandbox.h"
#include "CAirlockShim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_id_maps(pid_t pid, const struct al_record *map) {
    uint64_t in_uid, out_uid, in_gid, out_gid;
    if (al_field_u64(map, 0, &in_uid) || al_field_u64(map, 1, &out_uid) || al_field_u64(map, 2, &in_gid) ||
        al_field_u64(map, 3, &out_gid))
        al_fail("idmap", EINVAL, "malformed id map record");
    char path[64], line[96];
    snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
    if (al_write_file(path, "deny") < 0 && errno != ENOENT) al_fail("idmap", errno, "cannot write %s", path);
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    snprintf(line, sizeof(line), "%llu %llu 1\n", (unsigned long long)in_uid, (unsigned long long)out_uid);
    if (al_write_file(path, line) < 0) al_fail("idmap", errno, "cannot write uid map '%llu %llu 1'", (unsigned long long)in_uid, (unsigned long long)out_uid);
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    snprintf(line, sizeof(line), "%llu %llu 1\n", (unsigned long long)in_gid, (unsigned long long)out_gid);
    if (al_write_file(path, line) < 0) al_fail("idmap", errno, "cannot write gid map '%llu %llu 1'", (unsigned long long)in_gid, (unsigned long long)out_gid);
}

/* A frozen cgroup holds SIGKILLed tasks until it is thawed: v1 freezer.state next to each
 * joined cgroup.procs, v2 cgroup.freeze in the cgroup directory. Errors are ignored (the
 * group may have no freezer, or not be frozen). */
static void thaw_cgroups(const struct al_plan *plan) {
    for (size_t i = 0; i < plan->count; i++) {
        const struct al_record *r = &plan->records[i];
        if (r->tag != AL_CGROUP_JOIN && r->tag != AL_CGROUP_DIR) continue;
        char *p = al_field_str(r, 0);
        if (!p) continue;
        char path[4096];
        if (r->tag == AL_CGROUP_JOIN) {
            char *slash = strrchr(p, '/');
            if (slash) *slash = 0;
            if ((size_t)snprintf(path, sizeof(path), "%s/freezer.state", p) < sizeof(path)) (void)al_write_file(path, "THAWED");
        } else if ((size_t)snprintf(path, sizeof(path), "%s/cgroup.freeze", p) < sizeof(path)) {
            (void)al_write_file(path, "0");
        }
        free(p);
    }
}

/* airlock died mid-run, so nobody else will tidy up: leave the v1 cgroups (a task
 * keeps its cgroup busy) and remove the cgroup directories the plan lists, newest
 * first; if no other run holds the workspace, remove the placeholders, through the
 * workspace fd, only those carrying airlock's xattr (never a path string). */
static void cleanup_orphaned(const struct al_plan *plan, int have_workspace) {
    for (size_t i = 0; i < plan->count; i++) {
        if (plan->records[i].tag != AL_CGROUP_JOIN) continue;
        char *p = al_field_str(&plan->records[i], 0);
        if (!p) continue;
        /* <hierarchy>/airlock/airlock-<id>/cgroup.procs -> <hierarchy>/airlock/cgroup.procs */
        char *slash = strrchr(p, '/');
        if (slash) *slash = 0;
        slash = strrchr(p, '/');
        if (slash) {
            *slash = 0;
            char parent[4096];
            if ((size_t)snprintf(parent, sizeof(parent), "%s/cgroup.procs", p) < sizeof(parent))
                (void)al_write_file(parent, "0");
        }
        free(p);
    }
    for (size_t i = plan->count; i-- > 0;) {
        if (plan->records[i].tag != AL_CLEANUP_DIR) continue;
        char *p = al_field_str(&plan->records[i], 0);
        if (p) (void)rmdir(p);
        free(p);
    }
    if (!have_workspace || flock(AL_WORKSPACE_FD, LOCK_EX | LOCK_NB) != 0) return;
    for (size_t i = 0; i < plan->count; i++) {
        if (plan->records[i].tag != AL_PLACEHOLDER) continue;
        char *name = al_field_str(&plan->records[i], 0);
        if (!name || strchr(name, '/')) { free(name); continue; }
        int fd = openat(AL_WORKSPACE_FD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            if (airlock_is_placeholder(fd)) (void)unlinkat(AL_WORKSPACE_FD, name, AT_REMOVEDIR);
            close(fd);
        }
        free(name);
    }
}

int al_helper_main(int argc, char **argv) {
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "airlock-sandbox is started by airlock; it is not meant to be run by hand\n");
        return 2;
    }
    /* Nothing but fds 0-7 may reach PID 1: it is cloned, not exec'ed, so close-on-exec is
     * not enough. Whatever else the caller leaked (a daemon's listening sockets) is closed
     * here, before anything else runs. fd 7 is the control socket of a long-lived sandbox;
     * the plan says below whether it is one, and closes it otherwise. */
    if (syscall(SYS_close_range, 8u, ~0u, 0) < 0) {
        for (int fd = 8; fd < 65536; fd++) close(fd);
    }
    fcntl(AL_CONTROL_FD, F_SETFD, FD_CLOEXEC);
    fcntl(AL_STATUS_FD, F_SETFD, FD_CLOEXEC);
    fcntl(AL_LIFELINE_FD, F_SETFD, FD_CLOEXEC);

    /* If airlock dies, writes to the status pipe must fail with EPIPE, not kill us:
     * we still have a sandbox to take down and directories to remove. */
    signal(SIGPIPE, SIG_IGN);

    /* A new session: the sandbox has no controlling terminal, so it cannot
     * inject keystrokes (TIOCSTI) into the caller's terminal. */
    (void)setsid();

    struct al_plan plan;
    al_status("helper");
    if (al_plan_read(AL_PLAN_FD, &plan) < 0) al_fail("plan", errno, "cannot read the sandbox plan");
    close(AL_PLAN_FD);
    int have_workspace = 0;
    for (size_t i = 0; i < plan.count; i++) have_workspace |= plan.records[i].tag == AL_WORKSPACE_LOCK;
    if (have_workspace) fcntl(AL_WORKSPACE_FD, F_SETFD, FD_CLOEXEC);
    else close(AL_WORKSPACE_FD); /* whatever it is, it is not ours to pass on */

    uint64_t ns_flags = 0, wall_ms = 0;
    int service = 0;
    const struct al_record *idmap = NULL;
    for (size_t i = 0; i < plan.count; i++) {
        const struct al_record *r = &plan.records[i];
        if (r->tag == AL_SERVICE) service = 1;
        if (r->tag == AL_NS_FLAGS) al_field_u64(r, 0, &ns_flags);
        else if (r->tag == AL_WALL_CLOCK) al_field_u64(r, 0, &wall_ms);
        else if (r->tag == AL_ID_MAP) idmap = r;
    }
    if (!idmap || !(ns_flags & CLONE_NEWUSER)) al_fail("plan", EINVAL, "plan has no user namespace or id map");
    if (!service) close(AL_CONTROL_FD); /* whatever it is, it is not ours to pass on */
    if (service) {
        /* PID 1 inherits the control socket through clone (it stays close-on-exec). */
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(AL_CONTROL_FD, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
            al_fail("plan", EBADF, "a long-lived sandbox needs its control socket on fd %d", AL_CONTROL_FD);
    }

    if (geteuid() == 0) (void)setgroups(0, NULL); /* drop the caller's supplementary groups */

    /* Join the sandbox's cgroups before cloning, so PID 1 and everything it
     * starts are accounted and limited from their first instruction. */
    for (size_t i = 0; i < plan.count; i++) {
        if (plan.records[i].tag != AL_CGROUP_JOIN) continue;
        char *p = al_field_str(&plan.records[i], 0);
        if (!p || al_write_file(p, "0") < 0) al_fail("cgroup", errno, "cannot join cgroup %s", p ? p : "?");
        free(p);
    }

    /* cgroup v2: PID 1 is created directly inside its cgroup (CLONE_INTO_CGROUP),
     * which avoids moving a task, the slow path of cgroup attachment. */
    int cgroup_fd = -1;
    for (size_t i = 0; i < plan.count; i++) {
        if (plan.records[i].tag != AL_CGROUP_DIR) continue;
        char *p = al_field_str(&plan.records[i], 0);
        if (!p) al_fail("cgroup", EINVAL, "malformed cgroup record");
        cgroup_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cgroup_fd < 0) al_fail("cgroup", errno, "cannot open cgroup %s", p);
        free(p);
    }
    al_status("joined");
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
        sigaddset(&mask, forwarded_signals[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    int *prepared = al_prepare_idmapped(&plan);

    int sync_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) < 0) al_fail("clone", errno, "pipe2");

    uint64_t start = now_ms();
    pid_t pid = -1;
    if (cgroup_fd >= 0) {
        struct clone_args args;
        memset(&args, 0, sizeof(args));
        args.flags = ns_flags | CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)cgroup_fd;
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
        if (pid < 0 && (errno == ENOSYS || errno == E2BIG)) {
            /* Kernel older than 5.7: join the cgroup ourselves, then clone. */
            if (fchdir(cgroup_fd) < 0 || al_write_file("cgroup.procs", "0") < 0 || chdir("/") < 0)
                al_fail("cgroup", errno, "cannot join the sandbox cgroup");
            close(cgroup_fd);
            cgroup_fd = -1;
        } else if (pid < 0) {
            al_fail("cgroup", errno, "cannot create PID 1 in the sandbox cgroup (clone3 CLONE_INTO_CGROUP)");
        }
    }
    if (cgroup_fd < 0 && pid < 0)
        pid = (pid_t)syscall(SYS_clone, (unsigned long)ns_flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0) {
        int e = errno;
        al_fail("namespaces", e,
                "cannot create namespaces (clone): %s; user namespaces may be disabled "
                "(check kernel.unprivileged_userns_clone / user.max_user_namespaces)",
                strerror(e));
    }
    if (pid == 0) {
        al_status("cloned");
        if (cgroup_fd >= 0) close(cgroup_fd);
        close(sync_pipe[1]);
        al_init_main(&plan, sync_pipe[0], prepared);
    }
    close(sync_pipe[0]);
    if (service) close(AL_CONTROL_FD); /* PID 1's alone: its end of file ends the sandbox */
    if (cgroup_fd >= 0) close(cgroup_fd);
    if (prepared) /* PID 1 has its own copies now */
        for (size_t i = 0; i < plan.count; i++)
            if (prepared[i] >= 0) close(prepared[i]);
    write_id_maps(pid, idmap);
    if (al_write_all(sync_pipe[1], "g", 1) != 1) al_fail("clone", errno, "cannot release PID 1");
    close(sync_pipe[1]);
    al_status("pid1 %d", (int)pid);

    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) { kill(pid, SIGKILL); al_fail("signals", errno, "signalfd"); }

    int timed_out = 0, lifeline = AL_LIFELINE_FD, orphaned = 0;
    for (;;) {
        int timeout = -1;
        if (wall_ms) {
            uint64_t elapsed = now_ms() - start;
            if (elapsed >= wall_ms) {
                if (!timed_out) {
                    timed_out = 1;
                    al_status("timeout %llu", (unsigned long long)wall_ms);
                    kill(pid, SIGKILL); /* PID 1 dies; the kernel kills every process of its namespace */
                }
                timeout = -1;
            } else {
                uint64_t left = wall_ms - elapsed;
                timeout = left > INT32_MAX ? INT32_MAX : (int)left; /* poll again later for very long limits */
            }
        }
        struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lifeline, .events = POLLIN}};
        int n = poll(fds, 2, timeout);
        if (n < 0 && errno != EINTR) { kill(pid, SIGKILL); al_fail("supervise", errno, "poll"); }
        ssize_t got = -1;
        uint64_t rearm = 0;
        if (n > 0 && (fds[1].revents & POLLIN)) {
            do { got = read(lifeline, &rearm, sizeof(rearm)); } while (got < 0 && errno == EINTR);
        }
        if (got == (ssize_t)sizeof(rearm)) {
            /* The parent re-arms the wall clock: the sandbox ends `rearm` ms from now (a pooled
             * sandbox gets the TTL of the request that claimed it). */
            wall_ms = (now_ms() - start) + (rearm ? rearm : 1);
            al_status("wall-clock %llu", (unsigned long long)rearm);
        } else if (n > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            /* The airlock process is gone: nobody supervises this sandbox any more. A frozen
             * sandbox (contained) cannot die until it is thawed, so thaw it first. */
            thaw_cgroups(&plan);
            kill(pid, SIGKILL);
            close(lifeline);
            lifeline = -1;
            orphaned = 1;
            al_status("lifeline");
        }
        if (n > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD) continue;
                kill(pid, (int)si.ssi_signo);
            }
        }
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            if (orphaned) cleanup_orphaned(&plan, have_workspace);
            if (WIFEXITED(status)) {
                al_status("pid1-exit %d", WEXITSTATUS(status));
                return WEXITSTATUS(status);
            }
            int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
            al_status("pid1-signal %d", sig);
            return 128 + sig;
        }
    }
}
#endif

/*
 * airlock-sandbox: the single-threaded helper that enters the sandbox.
 *
 * The Swift runtime resolves a SandboxSpec into a *plan* (a flat list of
 * records, format below), writes it to a memfd and posix_spawns this helper
 * with:
 *   fd 3  the plan (read from offset 0)
 *   fd 4  the status pipe (write end): one text line per event, see status()
 *   fd 5  the lifeline (read end of a pipe): EOF means the parent died, and the
 *         sandbox is killed. The parent may write 8 bytes, a u64 in host byte
 *         order: the wall clock is re-armed to end the sandbox that many ms later.
 *
 * The helper (outside every namespace) joins the sandbox's cgroups, clones the
 * sandbox's PID 1 into new user/mount/pid/net/ipc/uts/cgroup namespaces, writes
 * its uid/gid maps, then supervises it: wall-clock limit, signal forwarding,
 * lifeline. PID 1 builds the root file system, pivots into it, drops every
 * privilege, installs Landlock and seccomp, starts the command and reaps.
 *
 * Plan wire format (little-endian):
 *   "ALP1"                       magic
 *   repeated: u32 tag, u32 nfields, nfields x (u32 len, len bytes)
 * Integer fields are 8-byte little-endian; strings carry no NUL.
 * The Swift encoder is Sources/AirlockRuntime/Plan/PlanEncoder.swift; the two
 * must agree on the tags below.
 */
#ifndef AIRLOCK_SANDBOX_H
#define AIRLOCK_SANDBOX_H
#if defined(__linux__)

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum al_tag {
    AL_NS_FLAGS = 1,     /* u64 clone flags */
    AL_ID_MAP = 2,       /* u64 inside uid, u64 outside uid, u64 inside gid, u64 outside gid */
    AL_CGROUP_JOIN = 3,  /* str path of a cgroup.procs file */
    AL_HOSTNAME = 4,     /* str */
    AL_WALL_CLOCK = 5,   /* u64 milliseconds (0 = none) */
    AL_ROOT_TMPFS = 6,   /* u64 size in bytes of the root tmpfs */
    AL_BIND = 7,         /* str src, str dst, u64 flags (AL_MNT_*) */
    AL_TMPFS = 8,        /* str dst, u64 size, u64 mode, u64 flags */
    AL_PROC = 9,         /* str dst */
    AL_DEVPTS = 10,      /* str dst */
    AL_DIR = 11,         /* str dst, u64 mode */
    AL_SYMLINK = 12,     /* str target, str linkpath */
    AL_FILE = 13,        /* str dst, str content, u64 mode */
    AL_DENY = 14,        /* str workspace dst (in sandbox), str relative path */
    AL_MASK = 15,        /* str dst: hide with /dev/null (file) or an empty read-only tmpfs (dir) */
    AL_REMOUNT_RO = 16,  /* str dst: make an existing mount read-only (e.g. the root tmpfs, last) */
    AL_LANDLOCK = 17,    /* str path (in sandbox), u64 access class (AL_LL_*), u64 optional */
    AL_LANDLOCK_MODE = 18, /* u64 0 = best effort, 1 = required */
    AL_RLIMIT = 19,      /* u64 resource, u64 soft, u64 hard */
    AL_SECCOMP = 20,     /* bytes: struct sock_filter[] */
    AL_ENV = 21,         /* str NAME=value */
    AL_ARG = 22,         /* str */
    AL_CWD = 23,         /* str */
    /* 24: unused */
    AL_CGROUP_DIR = 25,  /* str: a cgroup v2 directory PID 1 is cloned into (clone3 CLONE_INTO_CGROUP) */
    AL_CLEANUP_DIR = 26, /* str: an empty host directory (cgroup, placeholder) the helper removes if airlock died */
    AL_PLACEHOLDER = 27, /* str: top-level workspace name that may be a placeholder (see helper.c) */
    AL_WORKSPACE_LOCK = 28, /* no fields: fd 6 is the workspace directory, flock'ed shared */
    AL_IDMAP = 29,       /* u64 disk uid, u64 disk gid, u64 host uid, u64 host gid: binds flagged
                            AL_MNT_IDMAP show files owned by the disk ids as owned by the sandbox */
    AL_EGRESS = 30,      /* u64 port, str socket path (in sandbox): PID 1 relays 127.0.0.1:port and
                            [::1]:port to that Unix socket (relay.c) */
    AL_SERVICE = 31,     /* no fields: a long-lived sandbox. fd 7 is a SOCK_SEQPACKET control socket;
                            PID 1 starts no command of its own but runs the execs asked for on it
                            (service.c), and exits, ending the sandbox, when it is closed */
    AL_UNMOUNT = 32,     /* str dst: detach a staging mount (binds taken from it stay) and rmdir it */
};

/* AL_BIND flags */
#define AL_MNT_RO        0x01u
#define AL_MNT_NOSUID    0x02u
#define AL_MNT_NODEV     0x04u
#define AL_MNT_NOEXEC    0x08u
#define AL_MNT_OPTIONAL  0x10u  /* a missing source is skipped, not an error */
#define AL_MNT_RECURSIVE 0x20u
#define AL_MNT_SRC_SANDBOX 0x40u /* src is a path inside the new root, not on the host */
#define AL_MNT_IDMAP     0x80u  /* idmapped with the plan's AL_IDMAP (prepared by the helper, outside) */

/* AL_LANDLOCK access classes */
#define AL_LL_READ   1u  /* read files, list directories, execute */
#define AL_LL_WRITE  2u  /* everything READ grants, plus create/remove/write/truncate */
#define AL_LL_DEVICE 3u  /* WRITE plus device ioctls (for /dev) */
#define AL_LL_LIST   4u  /* list directories only (for "/") */

struct al_field {
    const uint8_t *data;
    uint32_t len;
};

struct al_record {
    uint32_t tag;
    uint32_t nfields;
    struct al_field *fields;
};

struct al_plan {
    struct al_record *records;
    size_t count;
    uint8_t *buffer;
};

/* plan.c */
int al_plan_read(int fd, struct al_plan *plan);
int al_plan_parse(uint8_t *buf, size_t size, struct al_plan *plan); /* owns buf */
void al_plan_free(struct al_plan *plan);
int al_field_u64(const struct al_record *r, uint32_t i, uint64_t *out);
char *al_field_str(const struct al_record *r, uint32_t i); /* malloc'd, NUL-terminated; NULL on error */

/* util.c */
void al_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void al_fail(const char *stage, int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
int al_write_file(const char *path, const char *data);
int al_mkdir_p(const char *path, mode_t mode);
ssize_t al_read_all(int fd, void *buf, size_t len);
ssize_t al_write_all(int fd, const void *buf, size_t len);

/* mounts.c */
/* In the helper, before PID 1 exists: detached idmapped copies of the AL_MNT_IDMAP binds
 * (only a process privileged over the file system may idmap it). Returns an array with
 * one fd per plan record (-1 where none), or NULL when the plan has no idmapped bind. */
int *al_prepare_idmapped(const struct al_plan *plan);
/* In PID 1, inside the new mount namespace. */
void al_build_root(const struct al_plan *plan, const int *prepared);

/* landlock.c */
void al_apply_landlock(const struct al_plan *plan);

/* relay.c: PID 1's loopback relay to the egress gateway */
struct al_relay;
/* Listens on the loopback port of the plan's AL_EGRESS record (call it before privileges
 * are dropped); NULL when the plan has none. A listener that cannot be opened fails the
 * setup, except [::1] where the namespace has no IPv6. */
struct al_relay *al_relay_open(const struct al_plan *plan);
/* Relays connections until `sfd` (a signalfd) is readable; never blocks anywhere else.
 * With no relay it just waits for `sfd`. */
void al_relay_wait(struct al_relay *relay, int sfd);
/* The same, also returning when `ctl` (>= 0) is readable. */
void al_relay_wait2(struct al_relay *relay, int sfd, int ctl);

/* service.c: PID 1 of a long-lived sandbox (AL_SERVICE); the wire format of the control
 * socket is in CAirlockShim.h (airlock serve speaks it too). */
void al_service_main(int ctl, int sfd, struct al_relay *relay) __attribute__((noreturn));

/* helper.c: the outer half */
int al_helper_main(int argc, char **argv);

/* init.c: PID 1 */
/* execve argv[0] through the sandbox PATH of envp; on failure writes errno to report_fd
 * and _exits 127 (not found) or 126. Async-signal-safe: for forked children. */
void al_exec_command(char **argv, char **envp, int report_fd) __attribute__((noreturn));
char **al_collect(const struct al_plan *plan, uint32_t tag);
void al_free_vector(char **v);
void al_child_reset(void);
void al_init_main(const struct al_plan *plan, int sync_fd, const int *prepared) __attribute__((noreturn));

#define AL_STATUS_FD 4
#define AL_PLAN_FD 3
#define AL_LIFELINE_FD 5
#define AL_WORKSPACE_FD 6
#define AL_CONTROL_FD 7

/* exit status of the helper when the sandbox could not be built */
#define AL_EXIT_SETUP 125

#endif
#endif

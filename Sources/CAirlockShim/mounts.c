/*
 * The sandbox's root file system, built by PID 1 inside its own mount
 * namespace. A small tmpfs is mounted over /tmp (only in this namespace) and
 * pivoted into, so the host's root is reachable at /oldroot while binds are
 * made from it into /newroot; then /oldroot is detached and /newroot becomes
 * "/". Binds use the new mount API (open_tree/mount_setattr/move_mount, Linux
 * 5.12+): a detached copy is made read-only *before* it is attached, and
 * workspace paths are resolved beneath the workspace without following any
 * symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS).
 */
#if defined(__linux__)
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define OLD "/oldroot"
#define NEW "/newroot"

static int sys_open_tree(int dfd, const char *path, unsigned flags) {
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags) {
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}
static int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct mount_attr *attr) {
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}

static void join(char *out, size_t n, const char *prefix, const char *path) {
    if ((size_t)snprintf(out, n, "%s%s", prefix, path) >= n) al_fail("mounts", ENAMETOOLONG, "path too long: %s", path);
}

static uint64_t mount_attrs(uint64_t flags) {
    uint64_t a = 0;
    if (flags & AL_MNT_RO) a |= MOUNT_ATTR_RDONLY;
    if (flags & AL_MNT_NOSUID) a |= MOUNT_ATTR_NOSUID;
    if (flags & AL_MNT_NODEV) a |= MOUNT_ATTR_NODEV;
    if (flags & AL_MNT_NOEXEC) a |= MOUNT_ATTR_NOEXEC;
    return a;
}

/* Creates the mount point (a directory or an empty file, like the source). */
static void make_mountpoint(const char *dst, int is_dir) {
    if (is_dir) {
        if (al_mkdir_p(dst, 0755) < 0) al_fail("mounts", errno, "create mount point %s", dst);
        return;
    }
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", dst);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        if (al_mkdir_p(parent, 0755) < 0) al_fail("mounts", errno, "create directory %s", parent);
    }
    int fd = open(dst, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EISDIR) al_fail("mounts", errno, "create mount point %s", dst);
    if (fd >= 0) close(fd);
}

/* Attaches a detached copy of `tree` (already restricted) at `dst`. */
static void attach(int tree, const char *dst, uint64_t flags, unsigned recursive, int create, const char *what) {
    struct mount_attr attr = {.attr_set = mount_attrs(flags)};
    if (attr.attr_set && sys_mount_setattr(tree, "", AT_EMPTY_PATH | recursive, &attr) < 0)
        al_fail("mounts", errno, "restrict %s", what);
    struct stat st;
    if (fstat(tree, &st) < 0) al_fail("mounts", errno, "stat %s", what);
    if (create) make_mountpoint(dst, S_ISDIR(st.st_mode));
    if (sys_move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        al_fail("mounts", errno, "attach %s at %s", what, dst + strlen(NEW));
    close(tree);
}

/* A user namespace whose only mapping is disk id -> host id, for MOUNT_ATTR_IDMAP:
 * through such a mount, files owned by the disk ids appear owned by the host ids the
 * sandbox runs as, and files it creates are stored with the disk ids. */
static int idmap_userns(uint64_t disk_uid, uint64_t disk_gid, uint64_t host_uid, uint64_t host_gid) {
    int hold[2];
    if (pipe2(hold, O_CLOEXEC) < 0) al_fail("idmap", errno, "pipe2");
    pid_t child = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (child < 0) al_fail("idmap", errno, "create the user namespace for the idmapped workspace");
    if (child == 0) {
        char c;
        close(hold[1]);
        (void)!read(hold[0], &c, 1); /* wait until the parent has what it needs */
        _exit(0);
    }
    close(hold[0]);
    char path[64], line[96];
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)child);
    snprintf(line, sizeof(line), "%llu %llu 1\n", (unsigned long long)disk_uid, (unsigned long long)host_uid);
    if (al_write_file(path, line) < 0) al_fail("idmap", errno, "write the idmap uid map");
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)child);
    snprintf(line, sizeof(line), "%llu %llu 1\n", (unsigned long long)disk_gid, (unsigned long long)host_gid);
    if (al_write_file(path, line) < 0) al_fail("idmap", errno, "write the idmap gid map");
    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)child);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) al_fail("idmap", errno, "open the idmap user namespace");
    close(hold[1]);
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    return ns;
}

int *al_prepare_idmapped(const struct al_plan *plan) {
    const struct al_record *map = NULL;
    for (size_t i = 0; i < plan->count; i++)
        if (plan->records[i].tag == AL_IDMAP) map = &plan->records[i];
    if (!map) return NULL;
    uint64_t du, dg, hu, hg;
    if (al_field_u64(map, 0, &du) || al_field_u64(map, 1, &dg) || al_field_u64(map, 2, &hu) || al_field_u64(map, 3, &hg))
        al_fail("idmap", EINVAL, "malformed idmap record");
    int ns = idmap_userns(du, dg, hu, hg);
    int *prepared = malloc(plan->count * sizeof(int));
    if (!prepared) al_fail("idmap", ENOMEM, "allocate");
    for (size_t i = 0; i < plan->count; i++) {
        prepared[i] = -1;
        const struct al_record *r = &plan->records[i];
        uint64_t flags;
        if (r->tag != AL_BIND || al_field_u64(r, 2, &flags) || !(flags & AL_MNT_IDMAP)) continue;
        char *src = al_field_str(r, 0);
        if (!src) al_fail("idmap", EINVAL, "malformed bind record");
        unsigned rec = (flags & AL_MNT_RECURSIVE) ? AT_RECURSIVE : 0;
        int tree = sys_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
        if (tree < 0) al_fail("idmap", errno, "bind %s", src);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | mount_attrs(flags), .userns_fd = (uint64_t)ns};
        if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr) < 0) {
            int e = errno;
            al_fail("idmap", e,
                    "cannot make an idmapped mount of %s (%s): its file system may not support idmapped mounts "
                    "(ext4, xfs, btrfs, tmpfs and overlayfs do; NFS does not). Run airlock as an unprivileged user "
                    "instead, or use a workspace on a local file system",
                    src, strerror(e));
        }
        prepared[i] = tree;
        free(src);
    }
    close(ns);
    return prepared;
}

static void op_bind(const struct al_record *r, int prepared) {
    char *src = al_field_str(r, 0), *dst = al_field_str(r, 1);
    uint64_t flags;
    if (!src || !dst || al_field_u64(r, 2, &flags)) al_fail("mounts", EINVAL, "malformed bind record");
    char from[4096], to[4096];
    join(from, sizeof(from), (flags & AL_MNT_SRC_SANDBOX) ? NEW : OLD, src);
    join(to, sizeof(to), NEW, dst);
    unsigned rec = (flags & AL_MNT_RECURSIVE) ? AT_RECURSIVE : 0;
    if (prepared >= 0) { /* idmapped and restricted by the helper already */
        attach(prepared, to, 0, rec, 1, src);
        free(src);
        free(dst);
        return;
    }
    if (flags & AL_MNT_IDMAP) al_fail("mounts", EINVAL, "idmapped bind of %s was not prepared", src);
    int tree = sys_open_tree(AT_FDCWD, from, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (tree < 0) {
        if (errno == ENOENT && (flags & AL_MNT_OPTIONAL)) goto out;
        if (errno == ENOSYS) al_fail("mounts", errno, "this kernel lacks the mount API airlock needs (Linux 5.12 or later)");
        al_fail("mounts", errno, "bind %s", src);
    }
    attach(tree, to, flags, rec, 1, src);
out:
    free(src);
    free(dst);
}

/* A workspace path that must stay read-only: resolved beneath the workspace,
 * refusing symlinks and mount crossings, then covered by a read-only copy of
 * itself. A planted symlink makes the run fail instead of exposing its target. */
static void op_deny(const struct al_record *r) {
    char *ws = al_field_str(r, 0), *rel = al_field_str(r, 1);
    if (!ws || !rel) al_fail("mounts", EINVAL, "malformed deny record");
    char wpath[4096];
    join(wpath, sizeof(wpath), NEW, ws);
    int wfd = open(wpath, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (wfd < 0) al_fail("mounts", errno, "open workspace %s", ws);
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int t = (int)syscall(SYS_openat2, wfd, rel, &how, sizeof(how));
    if (t < 0) {
        int e = errno;
        if (e == ENOENT) al_fail("deny", e, "protected workspace path %s vanished while the sandbox was built", rel);
        if (e == ELOOP || e == EXDEV)
            al_fail("deny", e, "protected workspace path %s is or passes through a symlink or mount; refusing to run (remove it or fix the link)", rel);
        al_fail("deny", e, "resolve protected workspace path %s", rel);
    }
    struct stat st;
    if (fstat(t, &st) < 0) al_fail("deny", errno, "stat protected workspace path %s", rel);
    if (S_ISLNK(st.st_mode))
        al_fail("deny", ELOOP,
                "protected workspace path %s is a symlink; its target could be rewritten from inside the sandbox, "
                "so airlock refuses to run (replace the link with the file it points to, or remove it)", rel);
    int tree = sys_open_tree(t, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0) al_fail("deny", errno, "copy %s", rel);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (sys_mount_setattr(tree, "", AT_EMPTY_PATH, &attr) < 0) al_fail("deny", errno, "make %s read-only", rel);
    if (sys_move_mount(tree, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        al_fail("deny", errno, "protect %s", rel);
    close(tree);
    close(t);
    close(wfd);
    free(ws);
    free(rel);
}

static void op_tmpfs(const struct al_record *r) {
    char *dst = al_field_str(r, 0);
    uint64_t size, mode, flags;
    if (!dst || al_field_u64(r, 1, &size) || al_field_u64(r, 2, &mode) || al_field_u64(r, 3, &flags))
        al_fail("mounts", EINVAL, "malformed tmpfs record");
    char to[4096], opts[96];
    join(to, sizeof(to), NEW, dst);
    if (al_mkdir_p(to, 0755) < 0) al_fail("mounts", errno, "create %s", dst);
    snprintf(opts, sizeof(opts), "size=%llu,mode=%04llo", (unsigned long long)size, (unsigned long long)mode);
    unsigned long mf = MS_NOSUID | MS_NODEV;
    if (flags & AL_MNT_NOEXEC) mf |= MS_NOEXEC;
    if (flags & AL_MNT_RO) mf |= MS_RDONLY;
    if (mount("tmpfs", to, "tmpfs", mf, opts) < 0) al_fail("mounts", errno, "mount tmpfs on %s", dst);
    free(dst);
}

static void op_simple(const struct al_record *r) {
    char *dst = al_field_str(r, 0);
    if (!dst) al_fail("mounts", EINVAL, "malformed record");
    char to[4096];
    join(to, sizeof(to), NEW, dst);
    switch (r->tag) {
    case AL_PROC:
        if (al_mkdir_p(to, 0555) < 0) al_fail("mounts", errno, "create %s", dst);
        if (mount("proc", to, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            al_fail("mounts", errno, "mount a fresh /proc");
        break;
    case AL_DEVPTS:
        if (al_mkdir_p(to, 0755) < 0) al_fail("mounts", errno, "create %s", dst);
        if (mount("devpts", to, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
            al_fail("mounts", errno, "mount devpts");
        break;
    case AL_MASK: {
        struct stat st;
        if (lstat(to, &st) < 0) break; /* nothing to hide */
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", to, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") < 0)
                al_fail("mounts", errno, "mask %s", dst);
        } else {
            int tree = sys_open_tree(AT_FDCWD, OLD "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
            if (tree < 0) al_fail("mounts", errno, "mask %s", dst);
            attach(tree, to, AL_MNT_RO | AL_MNT_NOSUID | AL_MNT_NOEXEC, 0, 0, dst);
        }
        break;
    }
    case AL_REMOUNT_RO: {
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
        if (sys_mount_setattr(AT_FDCWD, to, 0, &attr) < 0) al_fail("mounts", errno, "make %s read-only", dst);
        break;
    }
    case AL_UNMOUNT:
        if (umount2(to, MNT_DETACH) < 0) al_fail("mounts", errno, "detach %s", dst);
        if (rmdir(to) < 0) al_fail("mounts", errno, "remove %s", dst);
        break;
    }
    free(dst);
}

static void op_dir_symlink_file(const struct al_record *r) {
    char *a = al_field_str(r, 0);
    if (!a) al_fail("mounts", EINVAL, "malformed record");
    char to[4096];
    uint64_t mode = 0755;
    if (r->tag == AL_DIR) {
        join(to, sizeof(to), NEW, a);
        if (al_field_u64(r, 1, &mode)) al_fail("mounts", EINVAL, "malformed dir record");
        if (al_mkdir_p(to, 0755) < 0 || chmod(to, (mode_t)mode) < 0) al_fail("mounts", errno, "create %s", a);
    } else if (r->tag == AL_SYMLINK) {
        char *link = al_field_str(r, 1);
        if (!link) al_fail("mounts", EINVAL, "malformed symlink record");
        join(to, sizeof(to), NEW, link);
        if (symlink(a, to) < 0 && errno != EEXIST) al_fail("mounts", errno, "symlink %s", link);
        free(link);
    } else {
        char *content = al_field_str(r, 1);
        if (!content || al_field_u64(r, 2, &mode)) al_fail("mounts", EINVAL, "malformed file record");
        join(to, sizeof(to), NEW, a);
        int fd = open(to, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) al_fail("mounts", errno, "create %s", a);
        size_t len = strlen(content);
        if (al_write_all(fd, content, len) != (ssize_t)len || fchmod(fd, (mode_t)mode) < 0)
            al_fail("mounts", errno, "write %s", a);
        close(fd);
        free(content);
    }
    free(a);
}

void al_build_root(const struct al_plan *plan, const int *prepared) {
    uint64_t root_size = 8u << 20;
    for (size_t i = 0; i < plan->count; i++)
        if (plan->records[i].tag == AL_ROOT_TMPFS) al_field_u64(&plan->records[i], 0, &root_size);

    umask(022);
    /* Nothing we mount propagates back to the host; host unmounts still reach us. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) al_fail("mounts", errno, "make / a slave mount");
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700") < 0)
        al_fail("mounts", errno, "mount the staging tmpfs");
    if (mkdir("/tmp/newroot", 0755) < 0 || mkdir("/tmp/oldroot", 0755) < 0) al_fail("mounts", errno, "staging dirs");
    if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") < 0) al_fail("mounts", errno, "pivot_root into staging");
    if (chdir("/") < 0) al_fail("mounts", errno, "chdir /");

    char opts[64];
    snprintf(opts, sizeof(opts), "size=%llu,mode=0755", (unsigned long long)root_size);
    if (mount("tmpfs", NEW, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) al_fail("mounts", errno, "mount the root tmpfs");

    for (size_t i = 0; i < plan->count; i++) {
        const struct al_record *r = &plan->records[i];
        switch (r->tag) {
        case AL_BIND: op_bind(r, prepared ? prepared[i] : -1); break;
        case AL_DENY: op_deny(r); break;
        case AL_TMPFS: op_tmpfs(r); break;
        case AL_PROC: case AL_DEVPTS: case AL_MASK: case AL_REMOUNT_RO: case AL_UNMOUNT: op_simple(r); break;
        case AL_DIR: case AL_SYMLINK: case AL_FILE: op_dir_symlink_file(r); break;
        default: break;
        }
    }

    if (umount2(OLD, MNT_DETACH) < 0) al_fail("mounts", errno, "detach the host root");
    if (chdir(NEW) < 0) al_fail("mounts", errno, "chdir new root");
    if (syscall(SYS_pivot_root, ".", ".") < 0) al_fail("mounts", errno, "pivot_root into the sandbox root");
    if (umount2(".", MNT_DETACH) < 0) al_fail("mounts", errno, "detach the staging root");
    if (chdir("/") < 0) al_fail("mounts", errno, "chdir /");
}
#endif

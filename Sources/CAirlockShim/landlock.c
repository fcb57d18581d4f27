/*
 * Landlock: a second fence, independent of the mount table. Read-only trees get
 * read/execute rights, writable trees get write rights too, /dev gets device
 * ioctls; everything else on the file system is refused. Where the kernel has
 * no Landlock, a best-effort plan records a warning; a required plan fails.
 */
#if defined(__linux__)
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

/* Kernel ABI constants (include/uapi/linux/landlock.h), spelled out so the
 * helper builds against older headers and still uses a newer kernel's rights. */
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_EXECUTE (1ULL << 0)
#define LL_WRITE_FILE (1ULL << 1)
#define LL_READ_FILE (1ULL << 2)
#define LL_READ_DIR (1ULL << 3)
#define LL_REFER (1ULL << 13)
#define LL_TRUNCATE (1ULL << 14)
#define LL_IOCTL_DEV (1ULL << 15)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};
struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

void al_apply_landlock(const struct al_plan *plan) {
    uint64_t required = 0;
    int have_rules = 0;
    for (size_t i = 0; i < plan->count; i++) {
        if (plan->records[i].tag == AL_LANDLOCK_MODE) al_field_u64(&plan->records[i], 0, &required);
        if (plan->records[i].tag == AL_LANDLOCK) have_rules = 1;
    }
    if (!have_rules) return;

    int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 1) {
        int e = errno;
        if (required) al_fail("landlock", e, "Landlock is required by the profile but this kernel does not offer it");
        al_status("warn landlock Landlock unavailable on this kernel (errno %d): file access is fenced by the mount table only", e);
        return;
    }
    uint64_t handled = (1ULL << 13) - 1; /* ABI 1 */
    if (abi >= 2) handled |= LL_REFER;
    if (abi >= 3) handled |= LL_TRUNCATE;
    if (abi >= 5) handled |= LL_IOCTL_DEV;
    const uint64_t file_rights = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV;
    const uint64_t read_rights = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR;
    const uint64_t write_rights = handled & ~LL_IOCTL_DEV;

    struct ll_ruleset_attr attr = {.handled_access_fs = handled};
    size_t attr_size = sizeof(attr);
    if (abi >= 6) attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
    else attr_size = offsetof(struct ll_ruleset_attr, scoped);
    if (abi < 4) attr_size = offsetof(struct ll_ruleset_attr, handled_access_net);
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (rs < 0) al_fail("landlock", errno, "create the Landlock ruleset");

    for (size_t i = 0; i < plan->count; i++) {
        const struct al_record *r = &plan->records[i];
        if (r->tag != AL_LANDLOCK) continue;
        char *path = al_field_str(r, 0);
        uint64_t cls, optional;
        if (!path || al_field_u64(r, 1, &cls) || al_field_u64(r, 2, &optional))
            al_fail("landlock", EINVAL, "malformed Landlock rule");
        int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT && optional) { free(path); continue; }
            al_fail("landlock", errno, "open %s for a Landlock rule", path);
        }
        struct stat st;
        if (fstat(fd, &st) < 0) al_fail("landlock", errno, "stat %s", path);
        uint64_t access;
        switch (cls) {
        case AL_LL_READ: access = read_rights; break;
        case AL_LL_WRITE: access = write_rights; break;
        case AL_LL_DEVICE: access = handled; break;
        case AL_LL_LIST: access = LL_READ_DIR; break;
        default: al_fail("landlock", EINVAL, "unknown Landlock access class %llu for %s", (unsigned long long)cls, path);
        }
        access &= handled;
        if (!S_ISDIR(st.st_mode)) access &= file_rights;
        struct ll_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
        if (syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
            al_fail("landlock", errno, "add the Landlock rule for %s", path);
        close(fd);
        free(path);
    }
    if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) al_fail("landlock", errno, "enforce Landlock");
    close(rs);
    al_status("landlock %d", abi);
}
#endif

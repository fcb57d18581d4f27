import AirlockCore

/// The reviewed system-call policy of a sandbox: a deny table on top of default allow.
///
/// Refused calls fail with EPERM (or ENOSYS where callers need that to fall back),
/// never with a kill, so programs degrade gracefully; only a syscall made through a
/// foreign ABI kills the process. `docs/seccomp.md` is this table for reviewers, and a
/// test keeps the two identical. Change a row here and there together, with a reason.
public enum SeccompTable {
    /// Rows that apply to both profiles.
    private static let both: Set<SyscallProfile> = [.default, .strict]
    /// Rows only the `strict` profile adds.
    private static let strictOnly: Set<SyscallProfile> = [.strict]

    /// The highest system-call number this table was reviewed against: `file_setattr`,
    /// the last call of Linux 6.18. Calls numbered above it — added by kernels newer
    /// than the review — fail with ENOSYS ("not implemented", which every caller of a new
    /// syscall must already handle) instead of passing unreviewed: new kernels keep adding
    /// mount and namespace interfaces (`open_tree_attr` arrived in 6.15).
    public static let newestReviewedSyscall: Int32 = 469
    /// The kernel release `newestReviewedSyscall` belongs to.
    public static let reviewedKernel = "Linux 6.18"

    /// The rows, in the order `docs/seccomp.md` lists them.
    public static let rules: [SyscallRule] = processAccess + mounts + namespaces + kernelState + narrowedInterfaces + setuidGuard + strictRows

    /// The rows a profile includes.
    public static func rules(for profile: SyscallProfile) -> [SyscallRule] {
        rules.filter { $0.profiles.contains(profile) }
    }

    /// The call's number on an ABI, or nil where the call does not exist there.
    public static func number(of name: String, on arch: SeccompArch) -> Int32? {
        SyscallNumbers.table(for: arch)[name]
    }

    // MARK: - Constants the conditions use (values from the uapi headers; same on both ABIs)

    static let namespaceFlags: [SyscallConstant] = [
        SyscallConstant("CLONE_NEWNS", 0x0002_0000), SyscallConstant("CLONE_NEWCGROUP", 0x0200_0000),
        SyscallConstant("CLONE_NEWUTS", 0x0400_0000), SyscallConstant("CLONE_NEWIPC", 0x0800_0000),
        SyscallConstant("CLONE_NEWUSER", 0x1000_0000), SyscallConstant("CLONE_NEWPID", 0x2000_0000),
        SyscallConstant("CLONE_NEWNET", 0x4000_0000), SyscallConstant("CLONE_NEWTIME", 0x0000_0080),
    ]
    static let allowedSocketDomains: [SyscallConstant] = [
        SyscallConstant("AF_UNIX", 1), SyscallConstant("AF_INET", 2), SyscallConstant("AF_INET6", 10),
    ]
    static let refusedTTYRequests: [SyscallConstant] = [
        SyscallConstant("TIOCSTI", 0x5412), SyscallConstant("TIOCLINUX", 0x541C),
    ]
    static let allowedPersonas: [SyscallConstant] = [
        SyscallConstant("PER_LINUX", 0x0), SyscallConstant("PER_LINUX32", 0x8), SyscallConstant("UNAME26", 0x2_0000),
        SyscallConstant("UNAME26|PER_LINUX32", 0x2_0008), SyscallConstant("0xffffffff (query)", 0xFFFF_FFFF),
    ]
    static let setIDBits: [SyscallConstant] = [SyscallConstant("S_ISUID", 0o4000), SyscallConstant("S_ISGID", 0o2000)]
    /// `O_TMPFILE` is `__O_TMPFILE | O_DIRECTORY`; only the `__O_TMPFILE` bit means "create".
    static let creatingOpenFlags: [SyscallConstant] = [SyscallConstant("O_CREAT", 0o100), SyscallConstant("__O_TMPFILE", 0o2000_0000)]

    private static func setID(_ index: Int) -> ArgumentCondition {
        .hasAnyBit(SyscallArgument(index, "mode"), setIDBits)
    }
    private static func creatingWithSetID(flags: Int, mode: Int) -> ArgumentCondition {
        .all([.hasAnyBit(SyscallArgument(flags, "flags"), creatingOpenFlags), setID(mode)])
    }

    // MARK: - The rows

    private static let processAccess: [SyscallRule] = [
        SyscallRule("ptrace", why: "Reads and rewrites another process's memory and registers: the classic way to steal a sibling's secrets or hijack it."),
        SyscallRule("process_vm_readv", why: "Reads another process's memory directly."),
        SyscallRule("process_vm_writev", why: "Writes another process's memory directly."),
        SyscallRule("pidfd_getfd", why: "Copies a file descriptor out of another process."),
        SyscallRule("kcmp", why: "Compares kernel objects of two processes; only checkpoint/restore needs it and it leaks kernel pointer order."),
    ]

    private static let mounts: [SyscallRule] = [
        SyscallRule("mount", why: "The sandbox's filesystem view is fixed by the runtime before the filter is installed."),
        SyscallRule("umount2", why: "Removing a mount the runtime placed would expose what it covers."),
        SyscallRule("pivot_root", why: "Changes the root of the mount namespace; only the runtime does that."),
        SyscallRule("move_mount", why: "New mount API: attaches mounts."),
        SyscallRule("open_tree", why: "New mount API: clones or detaches mount trees."),
        SyscallRule("open_tree_attr", why: "New mount API (Linux 6.15): open_tree with attribute changes."),
        SyscallRule("fsopen", why: "New mount API: creates a filesystem context."),
        SyscallRule("fsconfig", why: "New mount API: configures a filesystem context (the path of CVE-2022-0185)."),
        SyscallRule("fsmount", why: "New mount API: turns a filesystem context into a mount."),
        SyscallRule("fspick", why: "New mount API: reconfigures an existing mount."),
        SyscallRule("mount_setattr", why: "Changes mount attributes (read-only, nosuid, idmapping)."),
    ]

    private static let kernelState: [SyscallRule] = [
        SyscallRule("bpf", why: "eBPF programs and maps: a large, often exploited kernel attack surface (verifier bugs)."),
        SyscallRule("perf_event_open", why: "Performance counters: a large kernel attack surface and a side channel on other processes."),
        SyscallRule("kexec_load", why: "Replaces the running kernel."),
        SyscallRule("kexec_file_load", why: "Replaces the running kernel."),
        SyscallRule("init_module", why: "Loads kernel code."),
        SyscallRule("finit_module", why: "Loads kernel code."),
        SyscallRule("delete_module", why: "Unloads kernel code."),
        SyscallRule("keyctl", why: "Kernel keyrings are only partly namespaced and have a history of exploitable bugs; sandboxed code needs none."),
        SyscallRule("add_key", why: "Kernel keyrings: see keyctl."),
        SyscallRule("request_key", why: "Kernel keyrings: see keyctl; may also start the host's request-key helper."),
        SyscallRule("io_uring_setup", why: "A second system-call interface whose operations this filter cannot see, and a leading source of kernel exploits."),
        SyscallRule("io_uring_enter", why: "io_uring: see io_uring_setup."),
        SyscallRule("io_uring_register", why: "io_uring: see io_uring_setup."),
        SyscallRule("userfaultfd", why: "Stalls the kernel in the middle of a copy from user memory: the standard way to win kernel race conditions."),
        SyscallRule("open_by_handle_at", why: "Opens files by handle, bypassing path-based confinement (the \"shocker\" container escape)."),
        SyscallRule("name_to_handle_at", why: "Makes file handles, only useful with open_by_handle_at."),
        SyscallRule("acct", why: "Switches process accounting to a file of the caller's choice."),
        SyscallRule("swapon", why: "Changes the host's swap."),
        SyscallRule("swapoff", why: "Changes the host's swap."),
        SyscallRule("reboot", why: "Reboots the host, or kills the sandbox's init from inside; the supervisor owns the lifecycle."),
        SyscallRule("syslog", why: "Reads the kernel log: kernel addresses and other workloads' messages."),
        SyscallRule("quotactl", why: "Manages disk quotas."),
        SyscallRule("quotactl_fd", why: "Manages disk quotas."),
        SyscallRule("lookup_dcookie", why: "Old profiling interface (removed in Linux 6.8) that turns cookies into paths."),
        SyscallRule("uselib", why: "Obsolete a.out library loader, unused by ELF programs."),
        SyscallRule("iopl", why: "Raw access to hardware I/O ports."),
        SyscallRule("ioperm", why: "Raw access to hardware I/O ports."),
        SyscallRule("settimeofday", why: "Sets the host clock (time is not namespaced)."),
        SyscallRule("clock_settime", why: "Sets the host clock (time is not namespaced)."),
        SyscallRule("clock_adjtime", why: "Adjusts the host clock; read-only use (ntp_gettime) is refused too because the mode is in a struct."),
        SyscallRule("adjtimex", why: "Adjusts the host clock; read-only use (ntp_gettime) is refused too because the mode is in a struct."),
        SyscallRule("vhangup", why: "Hangs up the controlling terminal, which may be the operator's."),
        SyscallRule("fanotify_init", why: "Filesystem-wide event monitoring and access decisions."),
        SyscallRule("nfsservctl", why: "Removed NFS server control call; kept refused so the number stays dead."),
        SyscallRule("_sysctl", why: "Removed sysctl interface; kept refused so the number stays dead."),
        SyscallRule("create_module", why: "Removed module interface; kept refused so the number stays dead."),
        SyscallRule("get_kernel_syms", why: "Removed module interface; kept refused so the number stays dead."),
        SyscallRule("query_module", why: "Removed module interface; kept refused so the number stays dead."),
    ]

    private static let namespaces: [SyscallRule] = [
        SyscallRule("setns", why: "Joins another namespace; membership is fixed by the runtime."),
        SyscallRule(
            "unshare", when: .hasAnyBit(SyscallArgument(0, "flags"), namespaceFlags),
            why: "New namespaces are the runtime's job, and user namespaces open kernel code otherwise reserved to root (the common path to container escapes). Other flags pass."),
        SyscallRule(
            "clone", when: .hasAnyBit(SyscallArgument(0, "flags"), namespaceFlags),
            why: "As unshare, for namespaces made at fork; thread and fork flags pass. clone() cannot make a time namespace: 0x80 is in its exit-signal byte, where no valid signal sets it."),
        SyscallRule(
            "clone3", .enosys,
            why: "Its flags are in a struct the filter cannot read. ENOSYS, not EPERM, makes glibc ≥ 2.34 and other runtimes fall back to clone(), which is checked."),
    ]

    private static let narrowedInterfaces: [SyscallRule] = [
        SyscallRule(
            "personality", when: .isNoneOf(SyscallArgument(0, "persona"), allowedPersonas),
            why: "Only the personas ordinary programs use; ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the like switch off exploit mitigations."),
        SyscallRule(
            "socket", when: .isNoneOf(SyscallArgument(0, "domain"), allowedSocketDomains),
            why: "Only Unix and IP sockets; netlink, packet, vsock, AF_ALG, Bluetooth… reach kernel subsystems and host devices."),
        SyscallRule(
            "socketpair", when: .isNoneOf(SyscallArgument(0, "domain"), allowedSocketDomains),
            why: "Same domain check as socket."),
        SyscallRule(
            "ioctl", when: .isAnyOf(SyscallArgument(1, "request"), refusedTTYRequests),
            why: "TIOCSTI and TIOCLINUX inject input into a terminal: commands typed into the operator's shell after the sandbox exits."),
    ]

    private static let setuidGuard: [SyscallRule] = [
        SyscallRule("chmod", when: setID(1), why: "Setuid/setgid bits: the sandbox user may map to the invoking host user, so a setuid file left in the workspace would run as that user on the host."),
        SyscallRule("fchmod", when: setID(1), why: "Setuid/setgid bits: as chmod."),
        SyscallRule("fchmodat", when: setID(2), why: "Setuid/setgid bits: as chmod."),
        SyscallRule("fchmodat2", when: setID(2), why: "Setuid/setgid bits: as chmod."),
        SyscallRule("open", when: creatingWithSetID(flags: 1, mode: 2), why: "Creating a file with setuid/setgid bits: as chmod."),
        SyscallRule("openat", when: creatingWithSetID(flags: 2, mode: 3), why: "Creating a file with setuid/setgid bits: as chmod."),
        SyscallRule("creat", when: setID(1), why: "Creating a file with setuid/setgid bits: as chmod."),
        SyscallRule(
            "openat2", .enosys,
            why: "Its flags and mode are in a struct the filter cannot read, so it would bypass the setuid guard; ENOSYS makes callers fall back to openat."),
        SyscallRule("mknod", when: setID(1), why: "Creating a node with setuid/setgid bits: as chmod (device nodes need CAP_MKNOD anyway)."),
        SyscallRule("mknodat", when: setID(2), why: "Creating a node with setuid/setgid bits: as mknod."),
    ]

    private static let strictRows: [SyscallRule] = [
        SyscallRule(
            "chroot", profiles: strictOnly,
            why: "Changes the root directory. Without capabilities and inside a pivot_root'ed mount namespace it cannot escape, and package tools (dpkg --root, debootstrap) use it, so only strict refuses it."),
        SyscallRule("mbind", profiles: strictOnly, why: "NUMA memory policy: nothing a sandbox needs."),
        SyscallRule("set_mempolicy", profiles: strictOnly, why: "NUMA memory policy: nothing a sandbox needs."),
        SyscallRule("set_mempolicy_home_node", profiles: strictOnly, why: "NUMA memory policy: nothing a sandbox needs."),
        SyscallRule("migrate_pages", profiles: strictOnly, why: "Moves another process's pages between NUMA nodes."),
        SyscallRule("move_pages", profiles: strictOnly, why: "Moves (or inspects) another process's pages between NUMA nodes."),
        SyscallRule("process_madvise", profiles: strictOnly, why: "Gives memory advice on behalf of another process."),
        SyscallRule("remap_file_pages", profiles: strictOnly, why: "Deprecated (emulated since Linux 4.0) and an old source of bugs."),
        SyscallRule("modify_ldt", profiles: strictOnly, why: "x86 local descriptor tables: only Wine and 16-bit code need them, and they are a recurring source of kernel bugs."),
        SyscallRule("sysfs", profiles: strictOnly, why: "Obsolete filesystem-type query."),
        SyscallRule("ustat", profiles: strictOnly, why: "Obsolete filesystem statistics call."),
        SyscallRule("memfd_secret", profiles: strictOnly, why: "Memory removed from the kernel's direct map: hidden from the forensic snapshot the supervisor takes on containment."),
        SyscallRule("sethostname", profiles: strictOnly, why: "The runtime sets the hostname; generated code has no reason to."),
        SyscallRule("setdomainname", profiles: strictOnly, why: "The runtime sets the domain name; generated code has no reason to."),
        SyscallRule("statmount", profiles: strictOnly, why: "Mount enumeration by id (Linux 6.8); programs read /proc/self/mountinfo instead."),
        SyscallRule("listmount", profiles: strictOnly, why: "Mount enumeration by id (Linux 6.8); programs read /proc/self/mountinfo instead."),
    ]
}

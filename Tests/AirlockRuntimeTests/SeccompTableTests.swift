import AirlockCore
import Foundation
import Testing

@testable import AirlockRuntime

/// Calls newer than Debian bookworm's kernel headers (Linux 6.1): the tables carry
/// them, the headers on the build machine may not.
private let newerThanBookwormHeaders: Set<String> = ["fchmodat2", "statmount", "listmount", "open_tree_attr"]

/// `#define __NR_name number` lines of a unistd header.
private func parseUnistd(_ text: String) -> [String: Int32] {
    var out: [String: Int32] = [:]
    for line in text.split(separator: "\n") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count >= 3, fields[0] == "#define", fields[1].hasPrefix("__NR_"), let n = Int32(fields[2]) else { continue }
        out[String(fields[1].dropFirst(5))] = n
    }
    return out
}

private func readHeader(_ candidates: [String]) -> String? {
    for path in candidates {
        if let text = try? String(contentsOfFile: path, encoding: .utf8) { return text }
    }
    return nil
}

/// The repository root, found from this file (through the mini package's symlinks if need be).
private func repositoryRoot() -> URL {
    URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

@Suite("Seccomp table")
struct SeccompTableTests {
    func checkNumbers(_ arch: SeccompArch, header: [String: Int32]) {
        #expect(header.count > 300, "header parsed to \(header.count) entries")
        let ours = SyscallNumbers.table(for: arch)
        for (name, number) in ours {
            if let expected = header[name] {
                #expect(number == expected, "\(arch) \(name): table says \(number), header says \(expected)")
            } else {
                #expect(newerThanBookwormHeaders.contains(name), "\(arch) \(name) is not in the header and not listed as newer")
            }
        }
        // A row skipped on this ABI must really not exist there.
        for rule in SeccompTable.rules where ours[rule.name] == nil {
            #expect(header[rule.name] == nil, "\(arch) has \(rule.name) (\(header[rule.name] ?? -1)) but the table skips it")
        }
    }

    @Test("x86_64 numbers match asm/unistd_64.h")
    func x86Numbers() throws {
        #if os(Linux)
        let text = try #require(
            readHeader(["/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"]),
            "asm/unistd_64.h is missing: install linux-libc-dev")
        checkNumbers(.x86_64, header: parseUnistd(text))
        #endif
    }

    @Test("aarch64 numbers match asm-generic/unistd.h")
    func aarch64Numbers() throws {
        #if os(Linux)
        let text = try #require(readHeader(["/usr/include/asm-generic/unistd.h"]), "asm-generic/unistd.h is missing: install linux-libc-dev")
        checkNumbers(.aarch64, header: parseUnistd(text))
        #endif
    }

    @Test("the table is well formed")
    func wellFormed() throws {
        var names = Set<String>()
        for rule in SeccompTable.rules {
            #expect(names.insert(rule.name).inserted, "\(rule.name) is listed twice")
            #expect(SeccompArch.allCases.contains { SeccompTable.number(of: rule.name, on: $0) != nil }, "\(rule.name) has no number")
            #expect(!rule.profiles.isEmpty)
            #expect(rule.profiles.contains(.strict), "\(rule.name): strict must include every default row")
            #expect(rule.rationale.count > 10 && !rule.rationale.contains("\n"), "\(rule.name): one-line rationale")
            #expect(rule.action == .eperm || rule.action == .enosys)
            #expect(rule.action != .enosys || rule.condition == nil)
        }
        #expect(SeccompTable.rules(for: .strict).count > SeccompTable.rules(for: .default).count)
        #expect(!SeccompTable.rules(for: .default).contains { $0.name == "chroot" })
        #expect(SeccompTable.rules(for: .strict).contains { $0.name == "chroot" })
        for arch in SeccompArch.allCases {
            let numbers = SyscallNumbers.table(for: arch).values
            #expect(Set(numbers).count == numbers.count, "\(arch): two names share a number")
            #expect(numbers.allSatisfy { $0 >= 0 && $0 <= SeccompTable.newestReviewedSyscall })
            // Every name in the number tables is used by some row.
            for name in SyscallNumbers.table(for: arch).keys {
                #expect(names.contains(name), "\(arch) table has \(name), which no row uses")
            }
        }
    }

    @Test("docs/seccomp.md lists every row exactly as the table has it")
    func documentationMatches() throws {
        let path = repositoryRoot().appendingPathComponent("docs/seccomp.md").path
        let doc = try #require(try? String(contentsOfFile: path, encoding: .utf8), "cannot read \(path)")
        let docLines = doc.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let expected = SeccompSummary.markdownTable()
        let docRows = Set(docLines.filter { $0.hasPrefix("| `") })
        var missing: [String] = []
        for row in expected where !docLines.contains(row) { missing.append(row) }
        let stale = docRows.subtracting(expected)
        #expect(missing.count == 0, "docs/seccomp.md lacks or differs in these rows:\n\(missing.joined(separator: "\n"))")
        #expect(stale.count == 0, "docs/seccomp.md has rows the table does not:\n\(stale.sorted().joined(separator: "\n"))")
        if !missing.isEmpty || !stale.isEmpty {
            print("The table as docs/seccomp.md should have it:\n" + expected.joined(separator: "\n"))
        }
        // Every row's name, checked separately so a formatting change still names the syscall.
        for rule in SeccompTable.rules {
            let listed = docRows.contains { $0.hasPrefix("| `\(rule.name)`") }
            #expect(listed, "docs/seccomp.md has no row for \(rule.name)")
        }
        #expect(doc.contains("\(SeccompTable.newestReviewedSyscall)"), "the doc names the newest reviewed syscall number")
        // The program sizes the doc quotes.
        for profile in SyscallProfile.allCases {
            for arch in SeccompArch.allCases {
                let count = try SeccompCompiler.instructions(profile: profile, arch: arch).count
                let row = "| \(profile.rawValue) | \(arch) | \(count) |"
                let documented = docLines.contains(row)
                #expect(documented, "docs/seccomp.md should say \(row)")
            }
        }
    }

    @Test("the native ABI is the machine's")
    func nativeArch() {
        #if arch(x86_64)
        #expect(SeccompArch.native == .x86_64)
        #elseif arch(arm64)
        #expect(SeccompArch.native == .aarch64)
        #endif
        #expect(SeccompArch.x86_64.auditArch == 0xC000_003E)
        #expect(SeccompArch.aarch64.auditArch == 0xC000_00B7)
    }

    @Test("the --explain summary names what is refused and how")
    func summary() throws {
        let x86 = SeccompSummary.lines(profile: .default, arch: .x86_64)
        #expect(x86.first == "killed: foreign architecture (not x86_64), x32 ABI")
        let eperm = try #require(x86.first { $0.hasPrefix("refused with EPERM: ") })
        #expect(eperm.contains("ptrace, process_vm_readv"))
        #expect(eperm.contains("iopl"))
        #expect(!eperm.contains("chroot"))
        #expect(x86.contains { $0.hasPrefix("argument checks (EPERM): ") && $0.contains("socket(domain ∉ {AF_UNIX, AF_INET, AF_INET6})") })
        #expect(x86.contains { $0.contains("ioctl(request ∈ {TIOCSTI, TIOCLINUX})") })
        #expect(x86.contains { $0.contains("openat(flags & (O_CREAT|__O_TMPFILE) and mode & (S_ISUID|S_ISGID))") })
        #expect(x86.contains { $0.hasPrefix("ENOSYS (callers fall back): clone3, openat2, every syscall numbered above 469") })
        #expect(x86.last == "everything else: allowed")

        let arm = SeccompSummary.lines(profile: .strict, arch: .aarch64)
        #expect(arm.first == "killed: foreign architecture (not aarch64)")
        #expect(arm.contains { $0.contains("chroot") })
        #expect(!arm.joined().contains("iopl"))
        #expect(!arm.joined().contains("modify_ldt"))
        for line in x86 { print("summary: \(line)") }
    }
}

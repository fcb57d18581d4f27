/// The profiles every installation has, written in the same YAML as policy files and read by
/// the same reader (a test asserts they read without a diagnostic).
///
/// `untrusted` deliberately extends nothing: it spells out every setting, so that loosening
/// `default` can never loosen the profile used for generated code.
enum BuiltinProfiles {
    static let origin = "built-in"

    static let yaml = """
        profiles:
          default:
            description: "Run an agent on a repository: workspace read-write, no network, 1h, 4G, 2 cpus"
            runtime: namespace
            user: agent
            filesystem:
              workspace: rw
              tmp_size: 1G
            network:
              mode: none
            environment:
              pass: [TERM, LANG, LC_ALL, TZ, COLORTERM]
            limits:
              wall_clock: 1h
              memory: 4G
              cpus: 2
              pids: 1024
              disk: 1G
              open_files: 4096
            syscalls: default
            landlock: best-effort
            cgroups: best-effort

          review:
            description: "Let an agent read and analyse a repository without changing it: default with a read-only workspace"
            extends: default
            filesystem:
              workspace: ro

          untrusted:
            description: "Run generated code: read-only workspace, no network, 5m, 512M, 1 cpu, strict syscalls, Landlock required"
            runtime: namespace
            user: agent
            filesystem:
              workspace: ro
              tmp_size: 256M
            network:
              mode: none
            environment:
              pass: [TERM, LANG, LC_ALL, TZ]
            limits:
              wall_clock: 5m
              memory: 512M
              cpus: 1
              pids: 128
              disk: 256M
              open_files: 1024
              file_size: 256M
            syscalls: strict
            landlock: required
            cgroups: best-effort
        """
}

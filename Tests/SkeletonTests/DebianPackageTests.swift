import Foundation
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The systemd unit as written, and the Debian package built by deploy/build-deb.sh, installed on this machine,
/// upgraded over itself with state and an edited config in place, removed and purged. The machine is left as it was
/// found, also when a check fails: the package is purged and what the test made (state, user, group) removed.
/// Needs root (dpkg -i); PID 1 need not be systemd (every systemctl call in the package is guarded, and
/// systemd-analyze, systemd-sysusers and systemd-tmpfiles work without it).
@Suite("Debian package and systemd unit", .serialized)
struct DebianPackageTests {
    static let unitFile = RepoPaths.root.appendingPathComponent("systemd/kilntallyd.service").path

    // MARK: - The unit as written

    @Test("the unit's exposure is at most 2.0 (systemd-analyze security --threshold=20) and it passes systemd-analyze verify")
    func unitSecurityAndVerify() async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-unit")
        let security = try await Run.program("/usr/bin/systemd-analyze",
                                             ["security", "--offline=true", "--threshold=20", Self.unitFile], logs: dir)
        #expect(security.status == 0, "systemd-analyze security --threshold=20 failed:\n\(security.output)")
        let exposure = try #require(Self.exposure(in: security.output), "no exposure level in:\n\(security.output)")
        #expect(exposure <= 2.0, "exposure \(exposure):\n\(security.output)")

        // `verify` checks that ExecStart= is an executable: point it at this build's daemon (the installed unit is
        // verified as it is in the package test).
        let daemon = try RepoPaths.builtProduct("kilntallyd")
        let text = try String(contentsOfFile: Self.unitFile, encoding: .utf8)
        #expect(text.contains("ExecStart=/usr/bin/kilntallyd "))
        let copy = dir.file("kilntallyd.service")
        try text.replacingOccurrences(of: "ExecStart=/usr/bin/kilntallyd ", with: "ExecStart=\(daemon) ")
            .write(toFile: copy, atomically: true, encoding: .utf8)
        let verify = try await Run.program("/usr/bin/systemd-analyze", ["verify", copy], logs: dir)
        #expect(verify.status == 0 && verify.output.isEmpty, "systemd-analyze verify:\n\(verify.output)")
    }

    /// The directives the daemon and the package rely on; a change to one of them is a decision, not an accident.
    @Test("the unit has the directives the daemon and the package rely on", arguments: [
        ("Type", "notify"), ("NotifyAccess", "main"), ("WatchdogSec", "30s"), ("Restart", "on-failure"),
        ("RestartSec", "5s"), ("StartLimitIntervalSec", "0"), ("RestartPreventExitStatus", "78"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"), ("TimeoutStopSec", "20s"),
        ("User", "kilntally"), ("Group", "kilntally"), ("SupplementaryGroups", "dialout"),
        ("StateDirectory", "kilntally"), ("StateDirectoryMode", "0750"),
        ("RuntimeDirectory", "kilntally"), ("RuntimeDirectoryMode", "0750"), ("ConfigurationDirectory", "kilntally"),
        ("DevicePolicy", "closed"), ("DeviceAllow", "char-ttyS rw"), ("DeviceAllow", "char-ttyUSB rw"),
        ("DeviceAllow", "char-ttyACM rw"), ("ReadWritePaths", "-/run/lock"), ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""), ("AmbientCapabilities", ""), ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "adjtimex clock_adjtime"), ("SystemCallErrorNumber", "EPERM"), ("UMask", "0027"),
    ])
    func unitDirective(_ key: String, _ value: String) throws {
        let lines = try String(contentsOfFile: Self.unitFile, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.contains("\(key)=\(value)"), "\(key)=\(value) is not in systemd/kilntallyd.service")
        // No DynamicUser= (the state must keep its owner), no ProtectClock= (it blocks the clock-sync query).
        #expect(!lines.contains { $0.hasPrefix("DynamicUser=") || $0.hasPrefix("ProtectClock=") })
    }

    static func exposure(in output: String) -> Double? {
        // "→ Overall exposure level for kilntallyd.service: 1.9 OK 🙂"
        guard let line = output.split(separator: "\n").last(where: { $0.contains("Overall exposure level") }),
              let colon = line.lastIndex(of: ":") else { return nil }
        return Double(line[line.index(after: colon)...].split(separator: " ").first ?? "")
    }

    // MARK: - The package

    @Test("the .deb: build; install (ldd, Depends, user, modes, config check, verify); upgrade over itself with state and an edited config in place; remove; purge",
          .timeLimit(.minutes(20)))
    func package() async throws {
        guard getuid() == 0 else { throw PeerError("the package test installs a .deb: run it as root") }
        let lock = try await MachineLock.acquire("/run/lock/kilntally-deb-test.lock")
        defer { lock.release() }
        let dir = try TemporaryDirectory(prefix: "kilntally-deb")
        let machine = try Machine.before(logs: dir)
        defer { machine.restore(logs: dir) }
        let version = try Self.sourceVersion()

        // Build (once: the upgrade's package reuses the build and only packages again).
        var clock = ContinuousClock.now
        let deb = try await Self.buildDeb(["--out", dir.path, "--compress", "zstd"], logs: dir)
        #expect(deb.hasSuffix("/kilntally_\(version)_amd64.deb"))
        print("debian package: built \(deb) in \(ContinuousClock.now - clock)")
        clock = ContinuousClock.now

        // Install. The maintainer scripts run with a systemctl that records its calls, and (in a mount namespace of
        // their own) with /run/systemd/system present as on a machine booted with systemd: a first install reloads
        // the units and neither enables nor starts kilntallyd.
        let systemctl = try RecordingSystemctl(in: dir)
        let install = try await Run.dpkg(["-i", deb], systemd: true, systemctl: systemctl, logs: dir)
        try #require(install.status == 0, "dpkg -i:\n\(install.output)")
        #expect(install.output.contains("kilntallyd is neither enabled nor started"), "\(install.output)")
        #expect(systemctl.takeCalls() == ["--system daemon-reload"])
        #expect(try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Abbrev}${Version}", "kilntally"], logs: dir)
            .output.hasPrefix("ii \(version)"))

        try await Self.checkLibraries(logs: dir)
        try await Self.checkUserAndFiles(logs: dir)

        // The installed programs work without the source tree: the built-in profiles come from /usr/share.
        let check = try await Run.asKilntally(["/usr/bin/kilntally", "config", "check", "--config", "/etc/kilntally/kilntally.toml"], logs: dir)
        #expect(check.status == 0 && check.output.contains(": ok ("), "config check as user kilntally:\n\(check.output)")
        let profiles = try await Run.program("/usr/bin/kilntally", ["profiles", "list"], logs: dir)
        let shipped = try FileManager.default.contentsOfDirectory(atPath: RepoPaths.root.appendingPathComponent("profiles").path)
            .filter { $0.hasSuffix(".toml") }.map { String($0.dropLast(5)) }
        #expect(!shipped.isEmpty)
        for name in shipped { #expect(profiles.output.contains(name), "profile \(name) missing:\n\(profiles.output)") }
        for program in ["kilntally", "kilntallyd"] {
            let v = try await Run.program("/usr/bin/\(program)", ["--version"], logs: dir)
            #expect(v.status == 0 && v.output.trimmingCharacters(in: .whitespacesAndNewlines) == version, "\(program) --version: \(v.output)")
        }

        // Man pages and shell completions as installed; the man page renders.
        for file in ["/usr/share/man/man1/kilntally.1.gz", "/usr/share/man/man1/kilntallyd.1.gz",
                     "/usr/share/bash-completion/completions/kilntally", "/usr/share/zsh/vendor-completions/_kilntally",
                     "/usr/share/fish/vendor_completions.d/kilntally.fish"] {
            #expect(FileManager.default.fileExists(atPath: file), "\(file) is not installed")
        }
        let man = try await Run.program("/bin/sh", ["-c", "zcat /usr/share/man/man1/kilntally.1.gz"], logs: dir)
        #expect(man.status == 0 && man.output.contains(".Dt KILNTALLY 1") && man.output.contains("status"), "\(man.output.prefix(300))")
        let completion = try String(contentsOfFile: "/usr/share/bash-completion/completions/kilntally", encoding: .utf8)
        #expect(completion.contains("complete") && completion.contains("status") && completion.contains("resend"))

        // The unit as installed.
        let verify = try await Run.program("/usr/bin/systemd-analyze", ["verify", "/lib/systemd/system/kilntallyd.service"], logs: dir)
        #expect(verify.status == 0 && verify.output.isEmpty, "systemd-analyze verify:\n\(verify.output)")
        let security = try await Run.program("/usr/bin/systemd-analyze",
                                             ["security", "--offline=true", "--threshold=20", "/lib/systemd/system/kilntallyd.service"], logs: dir)
        #expect(security.status == 0, "\(security.output)")

        // State in place: the installed daemon runs as kilntally on the shipped config for a moment (its buses and
        // broker are not here: it stores the failed polls and the bus events), then stops on SIGTERM.
        try await Self.runDaemonBriefly(logs: dir)
        let state = try Snapshot.of("/var/lib/kilntally")
        #expect(state.files.keys.contains { $0.hasPrefix("readings/segments/") }, "\(state.files.keys.sorted())")
        #expect(state.files.keys.contains { $0.hasPrefix("ledger/segments/") }, "\(state.files.keys.sorted())")
        #expect(state.files.keys.contains("tally/checkpoint.json"), "\(state.files.keys.sorted())")
        try await Self.verifyStores(logs: dir)

        // The engineer edits the config and enables the service.
        let config = "/etc/kilntally/kilntally.toml"
        let edited = try String(contentsOfFile: config, encoding: .utf8) + "# edited on site by the package test\n"
        try Data(edited.utf8).write(to: URL(fileURLWithPath: config))
        let enable = try await Run.program("/usr/bin/systemctl", ["enable", "kilntallyd.service"], logs: dir)
        #expect(enable.status == 0, "systemctl enable:\n\(enable.output)")
        let wants = "/etc/systemd/system/multi-user.target.wants/kilntallyd.service"
        #expect(Stat.isSymlink(wants))
        print("debian package: installed and checked in \(ContinuousClock.now - clock)")
        clock = ContinuousClock.now

        // Upgrade over itself: a newer version whose shipped config changed too (dpkg would ask; --force-confold
        // keeps the engineer's and puts the new one beside it).
        let newVersion = version + "+debtest1"
        let newExample = try String(contentsOfFile: RepoPaths.root.appendingPathComponent("deploy/kilntally.example.toml").path, encoding: .utf8)
            + "# \(newVersion): the shipped example changed\n"
        try newExample.write(toFile: dir.file("example-\(newVersion).toml"), atomically: true, encoding: .utf8)
        let deb2 = try await Self.buildDeb(["--out", dir.path, "--compress", "zstd", "--version", newVersion,
                                            "--config", dir.file("example-\(newVersion).toml")], logs: dir)
        print("debian package: packaged \(newVersion) again in \(ContinuousClock.now - clock)")
        clock = ContinuousClock.now
        let upgrade = try await Run.dpkg(["-i", "--force-confold", deb2], systemd: true, systemctl: systemctl, logs: dir)
        try #require(upgrade.status == 0, "dpkg -i (upgrade):\n\(upgrade.output)")
        // The old daemon keeps running through the unpack; postinst restarts it only if it runs (try-restart).
        #expect(systemctl.takeCalls() == ["--system daemon-reload", "--system try-restart kilntallyd.service"])
        #expect(!upgrade.output.contains("neither enabled nor started"), "an upgrade prints no first-install steps")
        #expect(try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${Version}", "kilntally"], logs: dir).output == newVersion)
        #expect(try String(contentsOfFile: config, encoding: .utf8) == edited, "the edited config did not survive the upgrade")
        #expect(try String(contentsOfFile: config + ".dpkg-dist", encoding: .utf8) == newExample)
        #expect(Stat.of(config) == Stat(mode: 0o640, user: "root", group: "kilntally", isDirectory: false))
        #expect(try Snapshot.of("/var/lib/kilntally") == state, "the state changed in the upgrade")
        #expect(Stat.isSymlink(wants), "the upgrade changed the service's enablement")
        try await Self.verifyStores(logs: dir)

        // Remove: programs go, config and state stay.
        // Without systemd as PID 1 (this machine) no script calls systemctl.
        let remove = try await Run.dpkg(["-r", "kilntally"], systemd: false, systemctl: systemctl, logs: dir)
        try #require(remove.status == 0, "dpkg -r:\n\(remove.output)")
        #expect(systemctl.takeCalls() == [])
        for gone in ["/usr/bin/kilntallyd", "/usr/bin/kilntally", "/lib/systemd/system/kilntallyd.service",
                     "/usr/share/kilntally", "/usr/share/doc/kilntally", "/usr/lib/sysusers.d/kilntally.conf"] {
            #expect(!Stat.exists(gone), "\(gone) is still there after dpkg -r")
        }
        #expect(try String(contentsOfFile: config, encoding: .utf8) == edited)
        #expect(try Snapshot.of("/var/lib/kilntally") == state)
        #expect(try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kilntally"], logs: dir).output.hasPrefix("rc"))

        // Purge: the config, its statoverride and the enablement link go; the state and the user stay (README).
        let purge = try await Run.dpkg(["-P", "kilntally"], systemd: true, systemctl: systemctl, logs: dir)
        try #require(purge.status == 0, "dpkg -P:\n\(purge.output)")
        #expect(systemctl.takeCalls() == ["--system daemon-reload"])
        #expect(purge.output.contains("kept /var/lib/kilntally"), "\(purge.output)")
        #expect(!Stat.exists("/etc/kilntally"), "\(try? FileManager.default.subpathsOfDirectory(atPath: "/etc/kilntally"))")
        #expect(!Stat.exists(wants) && !Stat.isSymlink(wants))
        let overrides = try await Run.program("/usr/bin/dpkg-statoverride", ["--list"], logs: dir)
        #expect(!overrides.output.contains("kilntally"), "\(overrides.output)")
        #expect(try Snapshot.of("/var/lib/kilntally") == state, "purge changed the state")
        #expect(try await Run.program("/usr/bin/getent", ["passwd", "kilntally"], logs: dir).status == 0, "purge removed the user")
        #expect(try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kilntally"], logs: dir).status != 0)
        print("debian package: upgraded, removed and purged in \(ContinuousClock.now - clock)")
    }

    // MARK: - Steps

    static func sourceVersion() throws -> String {
        let text = try String(contentsOfFile: RepoPaths.root.appendingPathComponent("Sources/KilnTallyCore/Version.swift").path, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.contains("static let current") })
        return String(try #require(line.split(separator: "\"").dropFirst().first))
    }

    /// deploy/build-deb.sh; the .deb's path (its last line of output).
    static func buildDeb(_ arguments: [String], logs: TemporaryDirectory) async throws -> String {
        let build = try await Run.program(RepoPaths.root.appendingPathComponent("deploy/build-deb.sh").path, arguments,
                                          logs: logs, timeout: .seconds(900))
        try #require(build.status == 0, "deploy/build-deb.sh \(arguments.joined(separator: " ")):\n\(build.output.suffix(6000))")
        let deb = try #require(build.output.split(separator: "\n").last.map(String.init))
        try #require(deb.hasSuffix(".deb") && Stat.exists(deb), "\(build.output.suffix(2000))")
        return deb
    }

    /// Every library of both binaries resolves to a file of an installed Debian package (none missing, none from the
    /// Swift toolchain); the package of every directly linked library is in Depends:, and every other one is
    /// reached through Depends:.
    static func checkLibraries(logs: TemporaryDirectory) async throws {
        let control = try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${Depends}", "kilntally"], logs: logs).output
        let depends = Set(DependsField.names(control))
        let closure = try await DependsField.closure(of: depends, logs: logs)
        for binary in ["/usr/bin/kilntallyd", "/usr/bin/kilntally"] {
            let ldd = try await Run.program("/usr/bin/ldd", [binary], logs: logs)
            try #require(ldd.status == 0, "ldd \(binary):\n\(ldd.output)")
            #expect(!ldd.output.contains("not found"), "ldd \(binary):\n\(ldd.output)")
            #expect(!ldd.output.lowercased().contains("swift"), "a library from the Swift toolchain:\n\(ldd.output)")
            let libraries = LddLine.parse(ldd.output)
            #expect(libraries.count >= 5, "\(ldd.output)")
            let needed = try await Run.program("/usr/bin/readelf", ["-d", binary], logs: logs).output
                .split(separator: "\n").filter { $0.contains("(NEEDED)") }
                .compactMap { $0.split(separator: "[").last?.split(separator: "]").first.map(String.init) }
            #expect(needed.contains("libmodbus.so.5") && needed.contains("libmosquitto.so.1"), "\(needed)")
            #expect(!(try await Run.program("/usr/bin/readelf", ["-d", binary], logs: logs).output.contains("RUNPATH")),
                    "\(binary) has a RUNPATH")
            for library in libraries {
                #expect(library.path.hasPrefix("/lib/") || library.path.hasPrefix("/lib64/") || library.path.hasPrefix("/usr/lib/"),
                        "\(library.name) from \(library.path)")
                let package = try #require(try await DependsField.owner(of: library.path, logs: logs),
                                           "\(library.path) belongs to no installed package")
                if needed.contains(library.name) {
                    #expect(depends.contains(package), "\(binary) links \(library.name) (\(package)) but Depends: is \(control)")
                } else {
                    #expect(closure.contains(package), "\(library.name) (\(package)) is not reached through Depends: \(control)")
                }
            }
        }
        for required in ["libmodbus5", "libmosquitto1", "libc6", "tzdata"] {
            #expect(depends.contains(required), "Depends: \(control)")
        }
    }

    static func checkUserAndFiles(logs: TemporaryDirectory) async throws {
        let passwd = try await Run.program("/usr/bin/getent", ["passwd", "kilntally"], logs: logs)
        #expect(passwd.status == 0, "no user kilntally")
        let fields = passwd.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":", omittingEmptySubsequences: false)
        #expect(fields.count == 7 && fields[5] == "/var/lib/kilntally" && fields[6] == "/usr/sbin/nologin", "\(passwd.output)")
        #expect(try await Run.program("/usr/bin/getent", ["group", "kilntally"], logs: logs).status == 0)
        let groups = try await Run.program("/usr/bin/id", ["-nG", "kilntally"], logs: logs).output.split(whereSeparator: \.isWhitespace)
        #expect(groups.contains("kilntally") && groups.contains("dialout"), "groups of kilntally: \(groups)")

        #expect(Stat.of("/var/lib/kilntally") == Stat(mode: 0o750, user: "kilntally", group: "kilntally", isDirectory: true))
        #expect(Stat.of("/etc/kilntally/kilntally.toml") == Stat(mode: 0o640, user: "root", group: "kilntally", isDirectory: false))
        #expect(Stat.of("/etc/kilntally/profiles") == Stat(mode: 0o755, user: "root", group: "root", isDirectory: true))
        #expect(Stat.of("/usr/bin/kilntallyd") == Stat(mode: 0o755, user: "root", group: "root", isDirectory: false))
        #expect(Stat.of("/lib/systemd/system/kilntallyd.service")?.mode == 0o644)
        #expect(try String(contentsOfFile: "/etc/kilntally/kilntally.toml", encoding: .utf8)
            == String(contentsOfFile: RepoPaths.root.appendingPathComponent("deploy/kilntally.example.toml").path, encoding: .utf8))
        #expect(try String(contentsOfFile: "/var/lib/dpkg/info/kilntally.conffiles", encoding: .utf8) == "/etc/kilntally/kilntally.toml\n")
        for doc in ["README.md", "copyright", "docs/CONFIG.md", "docs/UPLINK.md", "examples/kilntally.example.toml"] {
            #expect(Stat.exists("/usr/share/doc/kilntally/\(doc)"), "/usr/share/doc/kilntally/\(doc)")
        }
        for file in ["/usr/lib/sysusers.d/kilntally.conf", "/usr/lib/tmpfiles.d/kilntally.conf"] { #expect(Stat.exists(file), "\(file)") }
    }

    /// Runs the installed kilntallyd as user kilntally (setpriv, the unit's user and groups) with its defaults until
    /// it has stored readings, then stops it with SIGTERM; /run/kilntally is made as RuntimeDirectory= would.
    static func runDaemonBriefly(logs: TemporaryDirectory) async throws {
        let mkdir = try await Run.program("/usr/bin/install", ["-d", "-m", "0750", "-o", "kilntally", "-g", "kilntally", "/run/kilntally"], logs: logs)
        try #require(mkdir.status == 0, "\(mkdir.output)")
        defer { try? FileManager.default.removeItem(atPath: "/run/kilntally") }
        let daemon = try PeerProcess(name: "kilntallyd-installed", executable: "/usr/bin/setpriv",
                                     arguments: ["--reuid=kilntally", "--regid=kilntally", "--init-groups", "--", "/usr/bin/kilntallyd"],
                                     logDirectory: logs.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("readings stored and the control socket made", timeout: .seconds(30)) {
            Stat.exists("/run/kilntally/kilntally.sock") && Stat.exists("/var/lib/kilntally/ledger/segments")
                && ((try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/kilntally/readings/segments")) ?? [])
                    .contains { (Stat.size("/var/lib/kilntally/readings/segments/\($0)") ?? 0) > 0 }
        }
        #expect(Stat.of("/run/kilntally/kilntally.sock")?.mode == 0o660)
        daemon.signal(SIGTERM)
        let status = try await daemon.waitForExit(timeout: .seconds(20))
        #expect(status == 0, "kilntallyd exited with \(status):\n\(daemon.log())")
    }

    /// `kilntally store verify` and `ledger verify` on the installed state, as user kilntally.
    static func verifyStores(logs: TemporaryDirectory) async throws {
        for command in [["store", "verify"], ["ledger", "verify"]] {
            let r = try await Run.asKilntally(["/usr/bin/kilntally"] + command + ["--state-dir", "/var/lib/kilntally"], logs: logs)
            #expect(r.status == 0, "kilntally \(command.joined(separator: " ")):\n\(r.output)")
        }
    }
}

// MARK: - Helpers

/// Programs run to completion, output and error together.
enum Run {
    private static let counter = Mutex(0)

    static func program(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                        logs: TemporaryDirectory, timeout: Duration = .seconds(120)) async throws -> (status: Int32, output: String) {
        let p = try start(executable, arguments, environment: environment, logs: logs)
        return (try await p.waitForExit(timeout: timeout), p.log())
    }

    /// The same, blocking: for clean-up in `defer`.
    @discardableResult
    static func now(_ executable: String, _ arguments: [String], logs: TemporaryDirectory) -> (status: Int32, output: String) {
        guard let p = try? start(executable, arguments, environment: ["DEBIAN_FRONTEND": "noninteractive"], logs: logs) else {
            return (-1, "")
        }
        let deadline = ContinuousClock.now + .seconds(120)
        while p.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        p.stop()
        return (p.terminationStatus, p.log())
    }

    /// dpkg with `systemctl` replaced by a recorder; with `systemd`, in a mount namespace where a fresh /run has
    /// /run/systemd/system (what the maintainer scripts test for), invisible to every other process.
    static func dpkg(_ arguments: [String], systemd: Bool, systemctl: RecordingSystemctl,
                     logs: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        let script = (systemd ? "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/system && " : "")
            + "PATH=\"$1:$PATH\"; shift; exec /usr/bin/dpkg \"$@\""
        let (executable, prefix) = systemd ? ("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh"]) : ("/bin/sh", [])
        return try await program(executable, prefix + ["-c", script, "sh", systemctl.directory] + arguments,
                                 environment: ["DEBIAN_FRONTEND": "noninteractive"], logs: logs)
    }

    static func asKilntally(_ command: [String], logs: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        try await program("/usr/bin/setpriv", ["--reuid=kilntally", "--regid=kilntally", "--init-groups", "--"] + command, logs: logs)
    }

    private static func start(_ executable: String, _ arguments: [String], environment: [String: String]?,
                              logs: TemporaryDirectory) throws -> PeerProcess {
        let n = counter.withLock { $0 += 1; return $0 }
        let name = "\(n)-" + (executable as NSString).lastPathComponent
        return try PeerProcess(name: name, executable: executable, arguments: arguments, environment: environment,
                               logDirectory: logs.path, workingDirectory: "/")
    }
}

/// A `systemctl` first on the maintainer scripts' PATH that records its arguments and does nothing.
struct RecordingSystemctl {
    let directory: String
    let callsFile: String

    init(in dir: TemporaryDirectory) throws {
        directory = dir.file("fake-bin")
        callsFile = dir.file("systemctl-calls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let path = directory + "/systemctl"
        try "#!/bin/sh\necho \"$*\" >> '\(callsFile)'\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    /// The calls since the last take, one "arguments" string each.
    func takeCalls() -> [String] {
        defer { try? FileManager.default.removeItem(atPath: callsFile) }
        return ((try? String(contentsOfFile: callsFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}

/// What a path is: mode bits, owner and group names.
struct Stat: Equatable {
    var mode: mode_t
    var user: String
    var group: String
    var isDirectory: Bool

    static func of(_ path: String) -> Stat? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let user = getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(st.st_uid)"
        let group = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(st.st_gid)"
        return Stat(mode: st.st_mode & 0o7777, user: user, group: group, isDirectory: (st.st_mode & S_IFMT) == S_IFDIR)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }
}

/// Every file under a directory with its bytes, owner and mode.
struct Snapshot: Equatable {
    struct File: Equatable {
        var bytes: Data
        var stat: Stat?
    }
    var files: [String: File]

    static func of(_ root: String) throws -> Snapshot {
        var files: [String: File] = [:]
        for path in try FileManager.default.subpathsOfDirectory(atPath: root) {
            let full = root + "/" + path
            let st = Stat.of(full)
            files[path] = File(bytes: st?.isDirectory == true ? Data() : try Data(contentsOf: URL(fileURLWithPath: full)), stat: st)
        }
        return Snapshot(files: files)
    }
}

/// One resolved library of `ldd`'s output.
struct LddLine {
    var name: String
    var path: String

    /// "libX.so.1 => /lib/…/libX.so.1 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no file.
    static func parse(_ output: String) -> [LddLine] {
        output.split(separator: "\n").compactMap { raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("linux-vdso") { return nil }
            let parts = line.components(separatedBy: " => ")
            if parts.count == 2 {
                let path = parts[1].split(separator: " ").first.map(String.init) ?? parts[1]
                return LddLine(name: parts[0], path: path)
            }
            guard line.hasPrefix("/"), let path = line.split(separator: " ").first.map(String.init) else { return nil }
            return LddLine(name: (path as NSString).lastPathComponent, path: path)
        }
    }
}

/// Package names in a Depends: field, and what they pull in.
enum DependsField {
    /// "libc6 (>= 2.35), systemd-sysusers | adduser" → ["libc6", "systemd-sysusers", "adduser"].
    static func names(_ field: String) -> [String] {
        field.split(separator: ",").flatMap { $0.split(separator: "|") }.compactMap { alternative in
            alternative.trimmingCharacters(in: .whitespaces).split(separator: " ").first
                .map { String($0.split(separator: ":").first ?? $0) }
        }
    }

    /// The installed packages reached from `roots` through Depends: and Pre-Depends:.
    static func closure(of roots: Set<String>, logs: TemporaryDirectory) async throws -> Set<String> {
        var seen = Set<String>()
        var queue = Array(roots)
        while let package = queue.popLast() {
            guard seen.insert(package).inserted else { continue }
            let r = try await Run.program("/usr/bin/dpkg-query", ["-W", "-f=${Depends}, ${Pre-Depends}", package], logs: logs)
            guard r.status == 0 else { continue }  // a virtual package (systemd-sysusers) or one not installed
            queue += names(r.output).filter { !seen.contains($0) }
        }
        return seen
    }

    /// The package that installed `path` (dpkg knows /lib and /usr/lib files by the path the package shipped).
    static func owner(of path: String, logs: TemporaryDirectory) async throws -> String? {
        var candidates = [path, (path as NSString).resolvingSymlinksInPath]
        for c in candidates where c.hasPrefix("/lib") { candidates.append("/usr" + c) }
        for c in candidates where c.hasPrefix("/usr/lib") { candidates.append(String(c.dropFirst(4))) }
        for c in candidates {
            let r = try await Run.program("/usr/bin/dpkg-query", ["-S", c], logs: logs)
            if r.status == 0, let package = r.output.split(separator: ":").first { return String(package) }
        }
        return nil
    }
}

/// An flock(2) held across processes, so that two test runs on one machine (two worktrees) do not install the
/// package at the same time.
struct MachineLock {
    let fd: Int32

    static func acquire(_ path: String, timeout: Duration = .seconds(1200)) async throws -> MachineLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PeerError("cannot open \(path): errno \(errno)") }
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw PeerError("\(path) stayed locked for \(timeout): another package test is running")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        return MachineLock(fd: fd)
    }

    func release() { close(fd) }
}

/// What the machine had before the test, so that the test removes only what it made.
struct Machine {
    var hadUser: Bool
    var hadGroup: Bool

    static func before(logs: TemporaryDirectory) throws -> Machine {
        let status = Run.now("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kilntally"], logs: logs)
        if status.status == 0, !status.output.hasPrefix("un") {
            throw PeerError("kilntally is installed on this machine (dpkg status '\(status.output)'); the test would replace it. " +
                            "If a killed test run left it, `dpkg -P kilntally` and remove /var/lib/kilntally.")
        }
        for path in ["/var/lib/kilntally", "/etc/kilntally", "/run/kilntally"] where Stat.exists(path) {
            throw PeerError("\(path) exists on this machine; the test would change it. Remove it if a killed test run left it.")
        }
        return Machine(hadUser: getpwnam("kilntally") != nil, hadGroup: getgrnam("kilntally") != nil)
    }

    /// Purges the package if it is still there and removes what the test made. Blocking: runs in `defer`.
    func restore(logs: TemporaryDirectory) {
        let status = Run.now("/usr/bin/dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kilntally"], logs: logs)
        if status.status == 0, !status.output.hasPrefix("un") {
            Run.now("/usr/bin/dpkg", ["-P", "--force-remove-reinstreq", "kilntally"], logs: logs)
        }
        if Run.now("/usr/bin/dpkg-statoverride", ["--list", "/etc/kilntally/kilntally.toml"], logs: logs).status == 0 {
            Run.now("/usr/bin/dpkg-statoverride", ["--remove", "/etc/kilntally/kilntally.toml"], logs: logs)
        }
        for path in ["/var/lib/kilntally", "/etc/kilntally", "/run/kilntally"] { try? FileManager.default.removeItem(atPath: path) }
        Run.now("/usr/bin/find", ["/etc/systemd/system", "-type", "l", "-name", "kilntallyd.service", "-delete"], logs: logs)
        if !hadUser, getpwnam("kilntally") != nil { Run.now("/usr/sbin/userdel", ["kilntally"], logs: logs) }
        if !hadGroup, getgrnam("kilntally") != nil { Run.now("/usr/sbin/groupdel", ["kilntally"], logs: logs) }
    }
}

import ArgumentParser
import AirlockControl
import AirlockCore
import Foundation

/// `airlock kill`: the stop paths of a running `airlock serve`, by scope.
struct KillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill",
        abstract: "Stop sandboxes of airlock serve: one instance, a session, a workflow, a label selector, or all.")

    @Option(help: "A sandbox id (sbx-…).") var instance: String?
    @Option(help: "Every sandbox labelled session=VALUE.") var session: String?
    @Option(help: "Every sandbox labelled workflow=VALUE.") var workflow: String?
    @Option(name: .customLong("selector"), help: "Every sandbox with all these labels: k=v,k2=v2.") var selector: String?
    @Flag(help: "Every sandbox (the global kill switch; needs the admin role).") var all = false
    @Option(help: "Why (recorded as the stop reason).") var reason: String = "killed"
    @Option(help: "The daemon's socket (default: <state-dir>/airlock.sock).") var socket: String?
    @Option(help: "The daemon's state directory, to find its socket.") var stateDir: String?
    @Option(help: "A bearer token (default: $AIRLOCK_TOKEN; not needed on the socket as its owner).") var token: String?

    func run() throws {
        var body: [String: Any] = ["reason": reason]
        var scopes = 0
        if let instance { body["instance"] = instance; scopes += 1 }
        if let session { body["session"] = session; scopes += 1 }
        if let workflow { body["workflow"] = workflow; scopes += 1 }
        if let selector {
            var m: [String: String] = [:]
            for part in selector.split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { throw fail(AirlockError(.usage, "--selector takes k=v pairs separated by commas")) }
                m[String(kv[0])] = String(kv[1])
            }
            body["selector"] = m
            scopes += 1
        }
        if all { body["all"] = true; scopes += 1 }
        guard scopes == 1 else { throw fail(AirlockError(.usage, "give exactly one of --instance, --session, --workflow, --selector, --all")) }
        let env = ProcessInfo.processInfo.environment
        let path = socket ?? Daemon.socketPath(stateDirectory: stateDir ?? Daemon.defaultStateDirectory(environment: env))
        let client = ControlClient(socket: path, token: token ?? env["AIRLOCK_TOKEN"])
        do {
            let data = try JSONSerialization.data(withJSONObject: body)
            let reply = try client.request("POST", "/v1/kill", body: [UInt8](data))
            guard reply.status == 200, let o = reply.json else {
                let detail = reply.json?["detail"] as? String ?? reply.text
                throw fail(AirlockError(.usage, "the daemon refused: \(detail)"))
            }
            for id in o["stopped"] as? [String] ?? [] { print(id) }
            printError("airlock: stopped \(o["count"] ?? 0) sandbox(es)")
        } catch let e as AirlockError {
            throw fail(e)
        }
    }
}

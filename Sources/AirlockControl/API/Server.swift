import AirlockAudit
import AirlockCore
import AirlockPolicy
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The request context: the principal, once authenticated.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    /// Bodies are collected by the handlers with their own limits.
    public var maxUploadSize: Int { 512 << 20 }
}

/// How a request reached the daemon: the owner-only Unix socket, or TCP (TLS).
public enum Transport: Sendable {
    case unix
    case tcp
}

/// Turns every error into an RFC 9457 problem (and never leaks an internal error's text).
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let logger: Logger
    /// The routes, to tell a path no method serves (404) from a method the path does not
    /// allow (405).
    var routes = RouteTable()

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let p as Problem {
            return API.problem(p)
        } catch let e as HTTPResponseError {
            let status = Int(e.status.code)
            switch status {
            case 404:
                let allowed = routes.methods(for: request.uri.path)
                guard !allowed.isEmpty else {
                    return API.problem(.notFound("there is no \(request.method.rawValue) \(request.uri.path) in this API; see docs/openapi.yaml"))
                }
                var response = API.problem(Problem(
                    405, "method-not-allowed", "Method Not Allowed",
                    "\(request.method.rawValue) is not allowed on \(request.uri.path); it allows \(allowed.joined(separator: ", ")) (see docs/openapi.yaml)"))
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            case 405:
                return API.problem(Problem(405, "method-not-allowed", "Method Not Allowed", "\(request.method.rawValue) is not allowed on \(request.uri.path); see docs/openapi.yaml"))
            case 413:
                return API.problem(.tooLarge("the request body is too large"))
            default:
                return API.problem(Problem(status, status < 500 ? "bad-request" : "internal", e.status.reasonPhrase, "the request could not be handled (\(e.status.reasonPhrase))"))
            }
        } catch {
            logger.error("internal error on \(request.method.rawValue) \(request.uri.path): \(error)")
            return API.problem(.internalError("an internal error occurred; it was logged by the daemon"))
        }
    }
}

/// Authentication: a bearer token, or — on the owner-only Unix socket only — no header at all,
/// which is the local owner with the admin role.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let transport: Transport
    let tokens: Tokens

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw Problem.unauthorized("the Authorization header must be 'Bearer <token>'")
            }
            context.principal = try tokens.authenticate(String(parts[1]).trimmingCharacters(in: .whitespaces))
        } else if transport == .unix {
            context.principal = Principal(name: "local", role: .admin, expiresAt: nil)
        } else if request.uri.path != "/v1/health" {
            throw Problem.unauthorized("this endpoint needs 'Authorization: Bearer <token>'; create a token with `airlock token create --role operator`")
        }
        return try await next(request, context)
    }
}

enum API {
    static func problem(_ p: Problem) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        if p.status == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"airlock\"" }
        return Response(status: .init(code: p.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: p.json)))
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: JSONResponse.encode(object))))
    }

    static func require(_ context: APIContext, _ role: Role, to action: String) throws(Problem) -> Principal {
        guard let p = context.principal else { throw Problem.unauthorized("this endpoint needs a token") }
        guard p.role >= role else {
            let article = role == .admin || role == .operator ? "an" : "a"
            throw Problem.forbidden("\(p.name) has the role \(p.role.rawValue); \(action) needs \(role.rawValue) (ask an admin for \(article) \(role.rawValue) token)")
        }
        return p
    }

    static func body(_ request: inout Request, limit: Int, what: String = "the request body") async throws(Problem) -> [UInt8] {
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw Problem.tooLarge("\(what) is larger than \(Units.formatBytes(UInt64(limit)))")
        } catch {
            // A malformed body (a bad chunk size, a connection cut short) is the client's error.
            throw Problem.badRequest("\(what) could not be read (\(error)); send it with a Content-Length or valid chunked encoding")
        }
    }

    static func jsonBody(_ request: inout Request, limit: Int = 1 << 20) async throws(Problem) -> [UInt8] {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw Problem.unsupportedMedia("send JSON with Content-Type: application/json (got \(type))")
        }
        return try await body(&request, limit: limit)
    }

    static func requireMedia(_ request: Request, _ accepted: [String]) throws(Problem) {
        if let type = request.headers[.contentType]?.lowercased(), !accepted.contains(where: { type.hasPrefix($0) }) {
            throw Problem.unsupportedMedia("send \(accepted.joined(separator: " or ")) (got \(type))")
        }
    }

    static func timestamp(_ d: Date?) -> Any { d.map { Supervisor.timestamp($0) } ?? NSNull() }

    static func text(_ bytes: [UInt8]) -> (String, Bool) {
        if let s = String(validating: bytes, as: UTF8.self) { return (s, false) }
        return (Data(bytes).base64EncodedString(), true)
    }
}

/// Builds the router of the control-plane API (docs/openapi.yaml is its contract).
public struct ControlAPI: Sendable {
    let supervisor: Supervisor
    let tokens: Tokens

    public init(supervisor: Supervisor) {
        self.supervisor = supervisor
        self.tokens = Tokens(store: supervisor.store) { [supervisor] in supervisor.audit.redact($0) }
    }

    public func router(transport: Transport) -> Router<APIContext> {
        let routes = RouteTable()
        let base = Router(context: APIContext.self)
        base.add(middleware: ProblemMiddleware(logger: supervisor.logger, routes: routes))
        base.add(middleware: AuthMiddleware(transport: transport, tokens: tokens))
        // Every route below is recorded as it is added (for 405 and its Allow header).
        let router = RouteTable.Recorder(base, routes)
        let s = supervisor
        let api = self

        router.get("/v1/health") { _, _ in API.json(["status": "ok", "version": ControlAPI.version]) }
        router.get("/v1/whoami") { _, c in
            let p = try API.require(c, .viewer, to: "whoami")
            return API.json(["principal": p.name, "role": p.role.rawValue, "expires_at": API.timestamp(p.expiresAt)])
        }
        // The audit log's newest signed head, for a witness that polls (docs/audit.md).
        router.get("/v1/audit/head") { _, c in
            _ = try API.require(c, .viewer, to: "reading the audit head")
            guard let head = s.audit.log?.head else { throw Problem.notFound("this daemon's audit log has no signed head yet") }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: head.line)))
        }
        router.get("/v1/profiles") { _, c in
            _ = try API.require(c, .viewer, to: "listing profiles")
            return API.json(["profiles": api.profiles()])
        }
        router.put("/v1/policy") { request, c in
            let p = try API.require(c, .admin, to: "replacing the policy")
            var request = request
            try API.requireMedia(request, ["application/yaml", "application/x-yaml", "text/yaml", "text/plain"])
            let bytes = try await API.body(&request, limit: 1 << 20, what: "the policy")
            let text = String(decoding: bytes, as: UTF8.self)
            switch Policy.parse(text, file: "policy") {
            case .success(let doc):
                s.replacePolicy(doc)
                s.emit("control.policy.replaced", nil, principal: p.name, [("airlock.profiles", .array(doc.profiles.keys.sorted().map { .string($0) }))], instance: "")
                return Response(status: .noContent)
            case .failure(let f):
                throw Problem.validation("the policy is invalid: \(f.airlockError.description)")
            }
        }

        // Tokens (admin).
        router.post("/v1/tokens") { request, c in
            let p = try API.require(c, .admin, to: "creating tokens")
            var request = request
            let b = try JSONBody(try await API.jsonBody(&request), allowed: ["role", "ttl", "name"])
            guard let roleText = try b.string("role"), let role = Role(rawValue: roleText) else {
                throw Problem.field("role", "is required: one of admin, operator, viewer")
            }
            guard let ttl = try b.duration("ttl") else { throw Problem.field("ttl", "is required, e.g. \"30d\" (at most 365 days)") }
            let name = try b.string("name") ?? ""
            guard name.utf8.count <= 128 else { throw Problem.field("name", "is longer than 128 bytes") }
            let (record, text): (TokenRecord, String)
            do throws(AirlockError) { (record, text) = try api.tokens.create(role: role, ttl: ttl, name: name, createdBy: p.name) } catch { throw Problem.from(error) }
            s.emit("control.token.created", nil, principal: p.name, [("airlock.token.id", .string(record.id)), ("airlock.token.role", .string(role.rawValue))], instance: "")
            var o = ControlAPI.tokenJSON(record)
            o["token"] = text
            return API.json(o, status: .created)
        }
        router.get("/v1/tokens") { _, c in
            _ = try API.require(c, .admin, to: "listing tokens")
            let all = (try? s.store.tokens()) ?? []
            return API.json(["tokens": all.map(ControlAPI.tokenJSON)])
        }
        router.delete("/v1/tokens/:id") { _, c in
            let p = try API.require(c, .admin, to: "revoking tokens")
            let id = c.parameters.get("id") ?? ""
            guard Identifiers.isHex(Substring(id), count: 12), (try? s.store.revokeToken(id: id, at: Date())) == true else {
                throw Problem.notFound("there is no token \(id)")
            }
            s.emit("control.token.revoked", nil, principal: p.name, [("airlock.token.id", .string(id))], instance: "")
            return Response(status: .noContent)
        }

        // Sandboxes.
        router.post("/v1/sandboxes") { request, c in
            let p = try API.require(c, .operator, to: "creating a sandbox")
            var request = request
            let req = try CreateRequest(try await API.jsonBody(&request))
            let record = try await s.create(req, principal: p.name)
            return API.json(api.sandboxJSON(record), status: .created)
        }
        router.get("/v1/sandboxes") { request, c in
            _ = try API.require(c, .viewer, to: "listing sandboxes")
            let q = request.uri.queryParameters
            var state: SandboxState?
            if let st = q["state"] {
                guard let v = SandboxState(rawValue: String(st)) else { throw Problem.badRequest("state must be running, frozen or stopped") }
                state = v
            }
            var labels: [String: String] = [:]
            for l in q[values: "label"] {
                let kv = l.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { throw Problem.badRequest("label filters are key=value, e.g. ?label=workflow=triage") }
                labels[String(kv[0])] = String(kv[1])
            }
            let all = try s.list().filter { r in
                (state == nil || r.state == state) && labels.allSatisfy { r.labels[$0.key] == $0.value }
            }
            return API.json(["sandboxes": all.map { api.sandboxJSON($0) }])
        }
        router.get("/v1/sandboxes/:id") { _, c in
            _ = try API.require(c, .viewer, to: "reading a sandbox")
            return API.json(api.sandboxJSON(try s.get(c.parameters.get("id") ?? "")))
        }
        router.delete("/v1/sandboxes/:id") { _, c in
            let p = try API.require(c, .operator, to: "deleting a sandbox")
            let id = c.parameters.get("id") ?? ""
            _ = try s.get(id)
            return API.json(api.sandboxJSON(try await s.stop(id: id, reason: "deleted", principal: p.name)))
        }
        router.post("/v1/sandboxes/:id/exec") { request, c in
            let p = try API.require(c, .operator, to: "running a command")
            var request = request
            let params = try ExecParameters(try await API.jsonBody(&request, limit: 64 << 20))
            let run = try s.exec(c.parameters.get("id") ?? "", params, principal: p.name)
            let cap = 16 << 20
            var out: [UInt8] = [], err: [UInt8] = []
            var outTrunc = false, errTrunc = false
            var outcome: ExecRun.Outcome?
            for await e in run.events {
                run.consumed()
                switch e {
                case .stdout(let b): if out.count + b.count <= cap { out += b } else { outTrunc = true }
                case .stderr(let b): if err.count + b.count <= cap { err += b } else { errTrunc = true }
                case .exit(let o): outcome = o
                }
            }
            await run.recorded?.value
            guard let o = outcome else { throw Problem.internalError("the command ended without a status") }
            if let f = o.failure, o.exitCode == nil, o.signal == nil { throw Problem.conflict(f) }
            var r = ControlAPI.exitJSON(o)
            let (so, sob) = API.text(out), (se, seb) = API.text(err)
            r["stdout"] = so
            r["stderr"] = se
            if sob { r["stdout_encoding"] = "base64" }
            if seb { r["stderr_encoding"] = "base64" }
            r["stdout_truncated"] = outTrunc
            r["stderr_truncated"] = errTrunc
            return API.json(r)
        }
        router.post("/v1/sandboxes/:id/exec/stream") { request, c in
            let p = try API.require(c, .operator, to: "running a command")
            var request = request
            let params = try ExecParameters(try await API.jsonBody(&request, limit: 64 << 20))
            let run = try s.exec(c.parameters.get("id") ?? "", params, principal: p.name)
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-store"],
                body: ResponseBody { writer in
                    var writing = true
                    for await e in run.events {
                        run.consumed()
                        guard writing else { continue }
                        var line: [String: Any]
                        switch e {
                        case .stdout(let b), .stderr(let b):
                            let (t, b64) = API.text(b)
                            line = ["type": { if case .stdout = e { return "stdout" } else { return "stderr" } }(), "data": t]
                            if b64 { line["encoding"] = "base64" }
                        case .exit(let o):
                            await run.recorded?.value
                            line = ControlAPI.exitJSON(o)
                            line["type"] = "exit"
                        }
                        var data = JSONResponse.encode(line)
                        data.append(10)
                        do { try await writer.write(ByteBuffer(bytes: data)) } catch {
                            // The client went away: the command is stopped, its output drained.
                            writing = false
                            run.cancel()
                        }
                    }
                    if writing { try await writer.finish(nil) }
                })
        }
        router.put("/v1/sandboxes/:id/files") { request, c in
            let p = try API.require(c, .operator, to: "writing a file")
            var request = request
            let path = request.uri.queryParameters["path"].map(String.init)
            _ = try WorkspacePath.check(path)
            let body = try await API.body(&request, limit: s.settings.maxFileBytes, what: "the file")
            let n = try s.writeFile(c.parameters.get("id") ?? "", path: path, body: body, principal: p.name)
            return API.json(["path": try WorkspacePath.check(path), "size": n], status: .created)
        }
        router.get("/v1/sandboxes/:id/files") { request, c in
            let p = try API.require(c, .operator, to: "reading a file")
            let bytes = try s.readFile(c.parameters.get("id") ?? "", path: request.uri.queryParameters["path"].map(String.init), principal: p.name)
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.put("/v1/sandboxes/:id/archive") { request, c in
            let p = try API.require(c, .operator, to: "uploading an archive")
            var request = request
            try API.requireMedia(request, ["application/x-tar", "application/octet-stream"])
            let path = request.uri.queryParameters["path"].map(String.init)
            let dir = try WorkspacePath.check(path, allowRoot: true)
            let body = try await API.body(&request, limit: s.settings.maxArchiveBytes, what: "the archive")
            try await s.putArchive(c.parameters.get("id") ?? "", path: path, body: body, principal: p.name)
            return API.json(["path": dir], status: .created)
        }
        router.get("/v1/sandboxes/:id/archive") { request, c in
            let p = try API.require(c, .operator, to: "downloading an archive")
            let bytes = try await s.getArchive(c.parameters.get("id") ?? "", path: request.uri.queryParameters["path"].map(String.init), principal: p.name)
            return Response(status: .ok, headers: [.contentType: "application/x-tar"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.post("/v1/sandboxes/:id/contain") { request, c in
            let p = try API.require(c, .operator, to: "containing a sandbox")
            var request = request
            let b = try JSONBody(try await API.jsonBody(&request), allowed: ["reason"])
            let reason = try b.string("reason") ?? "contained"
            guard reason.utf8.count <= 1024 else { throw Problem.field("reason", "is longer than 1024 bytes") }
            let id = c.parameters.get("id") ?? ""
            _ = try s.get(id)
            let (record, snapshot, summary) = try await s.contain(id, reason: reason, principal: p.name)
            var snap = ControlAPI.snapshotJSON(snapshot)
            snap["processes"] = summary["processes"]
            return API.json(["sandbox": api.sandboxJSON(record), "snapshot": snap])
        }
        router.post("/v1/kill") { request, c in
            var request = request
            let b = try JSONBody(try await API.jsonBody(&request), allowed: ["instance", "session", "workflow", "selector", "all", "reason"])
            let scopes = ["instance", "session", "workflow", "selector", "all"].filter { b.has($0) }
            guard scopes.count == 1 else {
                throw Problem.validation("give exactly one of instance, session, workflow, selector or all (got \(scopes.isEmpty ? "none" : scopes.joined(separator: ", ")))")
            }
            let selector: Supervisor.Selector
            let p: Principal
            switch scopes[0] {
            case "instance":
                p = try API.require(c, .operator, to: "stopping a sandbox")
                selector = .instance(try b.string("instance") ?? "")
            case "session":
                p = try API.require(c, .operator, to: "stopping a session")
                selector = .labels(["session": try b.string("session") ?? ""])
            case "workflow":
                p = try API.require(c, .operator, to: "stopping a workflow")
                selector = .labels(["workflow": try b.string("workflow") ?? ""])
            case "selector":
                p = try API.require(c, .operator, to: "stopping sandboxes by label")
                let l = try b.map("selector") ?? [:]
                guard !l.isEmpty else { throw Problem.field("selector", "must name at least one label; use all: true to stop everything") }
                selector = .labels(l)
            default:
                p = try API.require(c, .admin, to: "the global kill switch (all)")
                guard try b.bool("all") == true else { throw Problem.field("all", "must be true") }
                selector = .all
            }
            let reason = try b.string("reason") ?? "killed"
            let ids = await s.kill(selector, reason: reason, principal: p.name)
            return API.json(["stopped": ids, "count": ids.count])
        }

        // Sealed objects.
        router.get("/v1/snapshots") { _, c in
            _ = try API.require(c, .operator, to: "listing snapshots")
            return API.json(["snapshots": ((try? s.store.sealedObjects(kind: .snapshot)) ?? []).map(ControlAPI.snapshotJSON)])
        }
        router.get("/v1/snapshots/:id") { _, c in
            _ = try API.require(c, .operator, to: "reading a snapshot")
            let id = c.parameters.get("id") ?? ""
            let r = try s.snapshot(id)
            return API.json(ControlAPI.snapshotJSON(r))
        }
        router.get("/v1/snapshots/:id/archive") { _, c in
            let p = try API.require(c, .admin, to: "reading a snapshot's contents")
            let id = c.parameters.get("id") ?? ""
            let r = try s.snapshot(id)
            let bytes = try s.unseal(r)
            s.emit("control.snapshot.read", nil, principal: p.name, [("airlock.sealed.id", .string(id))], instance: r.sandbox)
            return Response(status: .ok, headers: [.contentType: "application/x-tar"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.delete("/v1/snapshots/:id") { _, c in
            let p = try API.require(c, .admin, to: "erasing a snapshot")
            let id = c.parameters.get("id") ?? ""
            guard Identifiers.isSnapshot(id) else { throw Problem.notFound("there is no snapshot \(id)") }
            try s.erase(id, kind: .snapshot, principal: p.name)
            return Response(status: .noContent)
        }
        router.get("/v1/workspaces") { _, c in
            _ = try API.require(c, .operator, to: "listing persisted workspaces")
            return API.json(["workspaces": ((try? s.store.sealedObjects(kind: .workspace)) ?? []).map(ControlAPI.workspaceJSON)])
        }
        router.delete("/v1/workspaces/:id") { _, c in
            let p = try API.require(c, .operator, to: "erasing a persisted workspace")
            let id = c.parameters.get("id") ?? ""
            guard Identifiers.isWorkspace(id) else { throw Problem.notFound("there is no persisted workspace \(id)") }
            try s.erase(id, kind: .workspace, principal: p.name)
            return Response(status: .noContent)
        }
        return base
    }

    public static let version = "0.5.0"

    // MARK: JSON shapes (docs/openapi.yaml)

    func profiles() -> [[String: Any]] {
        Policy.profileNames(in: supervisor.policy).map { entry in
            var o: [String: Any] = ["name": entry.name, "description": entry.description.isEmpty ? NSNull() : entry.description]
            if case .success(let p) = Policy.flatten(entry.name, in: supervisor.policy) {
                o["network_mode"] = (p.network.mode ?? .none).rawValue
                o["workspace"] = (p.filesystem.workspace ?? .ro).rawValue
                o["limits"] = [
                    "wall_clock_seconds": p.limits.wallClock.map { Double($0.components.seconds) as Any } ?? NSNull(),
                    "memory_bytes": p.limits.memory.map { Int($0) as Any } ?? NSNull(),
                    "cpus": p.limits.cpus.map { $0 as Any } ?? NSNull(),
                    "pids": p.limits.pids.map { $0 as Any } ?? NSNull(),
                    "disk_bytes": (p.limits.disk ?? p.filesystem.tmpSize).map { Int($0) as Any } ?? NSNull(),
                ]
            }
            return o
        }
    }

    func sandboxJSON(_ r: SandboxRecord) -> [String: Any] {
        let now = Date()
        let end = r.stoppedAt ?? now
        let age = end.timeIntervalSince(r.createdAt)
        let expires = r.createdAt.addingTimeInterval(r.ttlSeconds)
        let spec = supervisor.liveSandbox(r.id).map { SpecSummary($0.spec) } ?? (try? JSONDecoder().decode(SpecSummary.self, from: Data(r.spec.utf8)))
        let live = r.state != .stopped
        var remaining: [String: Any] = [
            "ttl_seconds": live ? max(0, expires.timeIntervalSince(now)) : 0,
            "execs": r.maxExecs.map { max(0, $0 - r.execCount) as Any } ?? NSNull(),
            "idle_seconds": r.idleTimeoutSeconds.map { live ? max(0, r.lastActivityAt.addingTimeInterval($0).timeIntervalSince(now)) : 0 as Any } ?? NSNull(),
        ]
        if !live { remaining["ttl_seconds"] = 0 }
        var usage: [String: Any] = ["cpu_seconds": NSNull(), "memory_bytes": NSNull(), "memory_peak_bytes": NSNull(), "pids": NSNull()]
        if live, let u = supervisor.usage(r.id) {
            usage["cpu_seconds"] = u.cpuNanos.map { Double($0) / 1e9 as Any } ?? NSNull()
            usage["memory_bytes"] = u.memoryCurrentBytes.map { Int($0) as Any } ?? NSNull()
            usage["memory_peak_bytes"] = u.memoryPeakBytes.map { Int($0) as Any } ?? NSNull()
            usage["pids"] = u.pidsCurrent.map { $0 as Any } ?? NSNull()
        } else if let text = r.usage {
            // Written by `Supervisor.usageJSON` (numbers only); integral values print without
            // a fraction, so pids stay an integer.
            let o = JSONResponse.object(text)
            for k in ["cpu_seconds", "memory_bytes", "memory_peak_bytes", "pids"] { if let v = o[k] { usage[k] = v } }
        }
        var network: [String: Any] = ["mode": spec?.network.mode.rawValue ?? "none"]
        if spec?.network.mode == .proxied { network["proxy_port"] = Int(spec?.network.proxyPort ?? 0) }
        return [
            "id": r.id, "profile": r.profile, "state": r.state.rawValue, "stop_reason": r.stopReason ?? NSNull(),
            "labels": r.labels, "created_at": Supervisor.timestamp(r.createdAt), "stopped_at": API.timestamp(r.stoppedAt),
            "age_seconds": age, "ttl_seconds": r.ttlSeconds, "expires_at": Supervisor.timestamp(expires),
            "idle_timeout_seconds": r.idleTimeoutSeconds.map { $0 as Any } ?? NSNull(), "max_execs": r.maxExecs.map { $0 as Any } ?? NSNull(),
            "execs": r.execCount, "running_execs": supervisor.runningExecs(r.id), "last_activity_at": Supervisor.timestamp(r.lastActivityAt),
            "remaining": remaining,
            "limits": [
                "memory_bytes": spec?.limits.memoryBytes.map { Int($0) as Any } ?? NSNull(),
                "cpus": spec?.limits.cpus.map { $0 as Any } ?? NSNull(),
                "pids": spec?.limits.pids.map { $0 as Any } ?? NSNull(),
                "disk_bytes": spec.map { Int($0.filesystem.tmpSize) as Any } ?? NSNull(),
            ],
            "usage": usage, "network": network, "persist": r.persist, "workspace_id": r.workspaceID ?? NSNull(),
        ]
    }

    /// What a sandbox's JSON shows of its spec. A stopped sandbox's comes from the stored spec,
    /// decoded into just these fields (decoding a whole `SandboxSpec` per row made listing
    /// a long history slow).
    struct SpecSummary: Decodable {
        struct Network: Decodable {
            var mode: NetworkSpec.Mode
            var proxyPort: Int
        }
        struct Limits: Decodable {
            var memoryBytes: UInt64?
            var cpus: Double?
            var pids: Int?
        }
        struct Filesystem: Decodable {
            var tmpSize: UInt64
        }
        var network: Network
        var limits: Limits
        var filesystem: Filesystem

        init(_ s: SandboxSpec) {
            network = Network(mode: s.network.mode, proxyPort: s.network.proxyPort)
            limits = Limits(memoryBytes: s.limits.memoryBytes, cpus: s.limits.cpus, pids: s.limits.pids)
            filesystem = Filesystem(tmpSize: s.filesystem.tmpSize)
        }
    }

    static func tokenJSON(_ t: TokenRecord) -> [String: Any] {
        [
            "id": t.id, "role": t.role.rawValue, "name": t.name, "created_at": Supervisor.timestamp(t.createdAt),
            "expires_at": Supervisor.timestamp(t.expiresAt), "revoked_at": API.timestamp(t.revokedAt),
        ]
    }

    static func exitJSON(_ o: ExecRun.Outcome) -> [String: Any] {
        [
            "exit_code": o.exitCode.map { Int($0) as Any } ?? NSNull(), "signal": o.signal.map { Int($0) as Any } ?? NSNull(),
            "timed_out": o.timedOut, "duration_ms": o.durationMs,
        ]
    }

    static func meta(_ r: SealedRecord) -> [String: Any] {
        JSONResponse.object(r.meta)
    }

    static func snapshotJSON(_ r: SealedRecord) -> [String: Any] {
        let m = meta(r)
        return [
            "id": r.id, "sandbox": r.sandbox, "created_at": Supervisor.timestamp(r.createdAt), "reason": m["reason"] ?? "",
            "size_bytes": Int(r.size), "links": m["links"] ?? [], "revoked": m["revoked"] ?? [], "process_count": m["process_count"] ?? 0,
        ]
    }

    static func workspaceJSON(_ r: SealedRecord) -> [String: Any] {
        ["id": r.id, "sandbox": r.sandbox, "created_at": Supervisor.timestamp(r.createdAt), "size_bytes": Int(r.size), "labels": meta(r)["labels"] ?? [:]]
    }
}

/// The API's routes by path pattern, with the methods each allows: what a 405 answer needs
/// and the router does not expose.
final class RouteTable: Sendable {
    private let entries = Mutex<[(path: RouterPath, method: HTTPRequest.Method)]>([])

    func add(_ path: RouterPath, _ method: HTTPRequest.Method) { entries.withLock { $0.append((path, method)) } }

    /// The methods allowed on `path` (none: no route has this path).
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let all = entries.withLock { $0 }
        var methods: [String] = []
        for e in all where e.path.components.count == segments.count && zip(e.path.components, segments).allSatisfy({ $0 ~= $1 }) {
            if !methods.contains(e.method.rawValue) { methods.append(e.method.rawValue) }
        }
        return methods
    }

    /// A router that records each route it adds to the table, then adds it to `base`.
    final class Recorder: RouterMethods {
        typealias Context = APIContext
        let base: Router<APIContext>
        let table: RouteTable

        init(_ base: Router<APIContext>, _ table: RouteTable) {
            self.base = base
            self.table = table
        }

        @discardableResult
        func on<Responder: HTTPResponder>(_ path: RouterPath, method: HTTPRequest.Method, responder: Responder) -> Self where Responder.Context == APIContext {
            table.add(path, method)
            base.on(path, method: method, responder: responder)
            return self
        }

        @discardableResult
        func add(middleware: any MiddlewareProtocol<Request, Response, APIContext>) -> Self {
            base.add(middleware: middleware)
            return self
        }
    }
}

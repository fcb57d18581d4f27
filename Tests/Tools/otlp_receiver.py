#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for Airlock's tests.

Listens on 127.0.0.1 (an ephemeral port unless --port is given), prints
"PORT <n>" on stdout once it accepts connections, decodes each POST /v1/traces
body as an ExportTraceServiceRequest (opentelemetry-proto) and appends one JSON
object per span to --out, then answers with an empty ExportTraceServiceResponse.
Requests it cannot decode are answered 400 and recorded as {"error": ...}.

    pip install opentelemetry-proto
"""
import argparse
import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "int_value":
        return int(v.int_value)
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def spans_of(request):
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "resource": resource,
                    "scope": ss.scope.name,
                    "name": s.name,
                    "kind": int(s.kind),
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "start_time_unix_nano": int(s.start_time_unix_nano),
                    "end_time_unix_nano": int(s.end_time_unix_nano),
                    "attributes": attributes(s.attributes),
                    "events": [
                        {
                            "name": e.name,
                            "time_unix_nano": int(e.time_unix_nano),
                            "attributes": attributes(e.attributes),
                        }
                        for e in s.events
                    ],
                    "status": {"code": int(s.status.code), "message": s.status.message},
                }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            if headers.get("content-type", "").startswith("application/json"):
                json_format.Parse(body, request)
            else:
                request.ParseFromString(body)
            records = [dict(span, path=self.path, headers=headers) for span in spans_of(request)]
        except Exception as error:  # noqa: BLE001 - report anything as a bad request
            self.server.write([{"error": repr(error), "path": self.path}])
            self.send_response(400)
            self.end_headers()
            return
        self.server.write(records)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def __init__(self, address, out):
        super().__init__(address, Handler)
        self.out = out

    def write(self, records):
        with open(self.out, "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), args.out)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A grpcurl-style client that needs no .proto files: it learns the API from
the server's reflection service (grpcurl itself is not packaged in Debian 12).

  scripts/grpc_call.py [--server HOST:PORT] list
  scripts/grpc_call.py [--server HOST:PORT] describe moegraph.v1.Generation
  scripts/grpc_call.py [--server HOST:PORT] call moegraph.v1.Generation/GetModelInfo '{}'
  scripts/grpc_call.py call moegraph.v1.Generation/Generate \\
      '{"text": "Hello", "max_tokens": 8}'

Requests and responses are JSON (protobuf's JSON mapping, field names as in
the proto); a server-streaming method prints one JSON object per message.
Needs Debian's python3-grpcio and python3-grpc-tools.
"""
import argparse
import json
import os
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
REFLECTION_PROTO = os.path.join(HERE, "..", "tests", "python", "protos", "grpc", "reflection",
                                "v1alpha", "reflection.proto")


def reflection_stubs():
    """Compiles the reflection protocol's proto into a temporary module."""
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="grpc-call-")
    path = os.path.abspath(REFLECTION_PROTO)
    if protoc.main(["protoc", "-I" + os.path.dirname(path), "--python_out=" + out,
                    "--grpc_python_out=" + out, path]) != 0:
        sys.exit("grpc_call: cannot compile " + path)
    sys.path.insert(0, out)
    import reflection_pb2
    import reflection_pb2_grpc
    return reflection_pb2, reflection_pb2_grpc


class Reflector:
    def __init__(self, channel):
        self.pb2, pb2_grpc = reflection_stubs()
        self.stub = pb2_grpc.ServerReflectionStub(channel)
        self.pool = descriptor_pool.DescriptorPool()
        self.loaded = set()

    def _ask(self, **kwargs):
        req = self.pb2.ServerReflectionRequest(**kwargs)
        resp = next(iter(self.stub.ServerReflectionInfo(iter([req]), timeout=10)))
        if resp.HasField("error_response"):
            sys.exit("grpc_call: reflection: " + resp.error_response.error_message)
        return resp

    def services(self):
        return [s.name for s in self._ask(list_services="").list_services_response.service]

    def _add_files(self, blobs):
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in blobs]
        pending = {p.name: p for p in protos if p.name not in self.loaded}
        while pending:  # add dependencies before the files that import them
            progressed = False
            for name, p in list(pending.items()):
                if all(d in self.loaded or d not in pending for d in p.dependency):
                    for d in p.dependency:
                        if d not in self.loaded:
                            self._add_files(self._ask(file_by_filename=d)
                                            .file_descriptor_response.file_descriptor_proto)
                    self.pool.Add(p)
                    self.loaded.add(name)
                    del pending[name]
                    progressed = True
            if not progressed:
                sys.exit("grpc_call: circular imports in reflected files")

    def service(self, name):
        resp = self._ask(file_containing_symbol=name)
        self._add_files(resp.file_descriptor_response.file_descriptor_proto)
        return self.pool.FindServiceByName(name)


def message_class(desc):
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default=os.environ.get("MOEGRAPH_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--timeout", type=float, default=60.0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the services")
    d = sub.add_parser("describe", help="show a service's methods and message types")
    d.add_argument("service")
    c = sub.add_parser("call", help="call SERVICE/METHOD with a JSON request")
    c.add_argument("method", help="e.g. moegraph.v1.Generation/Generate")
    c.add_argument("request", nargs="?", default="{}", help="JSON request ('-' reads stdin)")
    args = ap.parse_args()

    channel = grpc.insecure_channel(args.server)
    ref = Reflector(channel)
    if args.cmd == "list":
        print("\n".join(ref.services()))
        return 0
    if args.cmd == "describe":
        svc = ref.service(args.service)
        for m in svc.methods:
            stream = "stream " if m.server_streaming else ""
            print(f"rpc {m.name}({m.input_type.full_name}) returns ({stream}{m.output_type.full_name})")
        return 0

    service_name, _, method_name = args.method.rpartition("/")
    if not service_name or not method_name:
        sys.exit("grpc_call: method must be SERVICE/METHOD, got " + args.method)
    svc = ref.service(service_name)
    method = svc.methods_by_name.get(method_name)
    if method is None:
        sys.exit(f"grpc_call: {service_name} has no method {method_name} "
                 f"(has: {', '.join(m.name for m in svc.methods)})")
    req_cls, resp_cls = message_class(method.input_type), message_class(method.output_type)
    text = sys.stdin.read() if args.request == "-" else args.request
    try:
        request = json_format.Parse(text, req_cls())
    except json_format.ParseError as e:
        sys.exit(f"grpc_call: bad request JSON for {method.input_type.full_name}: {e}")
    path = f"/{service_name}/{method_name}"
    kw = dict(request_serializer=req_cls.SerializeToString,
              response_deserializer=resp_cls.FromString)
    try:
        if method.server_streaming:
            for msg in channel.unary_stream(path, **kw)(request, timeout=args.timeout):
                print(json.dumps(json_format.MessageToDict(msg)))
        else:
            msg = channel.unary_unary(path, **kw)(request, timeout=args.timeout)
            print(json.dumps(json_format.MessageToDict(msg), indent=1))
    except grpc.RpcError as e:
        print(f"ERROR: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

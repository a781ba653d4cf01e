"""A CRI client for the vm tier (tests/src/cri.rs runs it): one JSON request a line on stdin, one JSON answer a
line on stdout. Message classes come from api_pb2, which protoc generates from the CRI api.proto beside this
file; methods are called by their gRPC path, as the kubelet's generated stubs call them
(k8s.io/cri-api pkg/apis/runtime/v1/api.proto: `service RuntimeService`, `service ImageService`).
Usage: cri.py 127.0.0.1:PORT"""

import json
import sys

import grpc
from google.protobuf import json_format

import api_pb2

# api.proto's `service ImageService`; every other method is RuntimeService's.
IMAGE_SERVICE = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}


def to_dict(message):
    """The message as JSON with fields at their default printed too: proto3's JSON mapping leaves them out, and
    the CRI's zero values say something (PodSandboxState SANDBOX_READY and ContainerState CONTAINER_CREATED are
    0, an exit code of 0 is a success). The argument was renamed in protobuf 26; Debian 12 ships 3.21."""
    try:
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:
        return json_format.MessageToDict(message, preserving_proto_field_name=True, including_default_value_fields=True)


def main():
    # Straight to the loopback forward: an http_proxy in the environment must not take the connection elsewhere.
    channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.enable_http_proxy", 0)])
    for line in sys.stdin:
        ask = json.loads(line)
        method = ask["method"]
        service = "ImageService" if method in IMAGE_SERVICE else "RuntimeService"
        request_class = getattr(api_pb2, method + "Request")
        response_class = getattr(api_pb2, method + "Response")
        call = channel.unary_unary(
            "/runtime.v1.%s/%s" % (service, method),
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            request = json_format.ParseDict(ask["request"], request_class())
            response = call(request, timeout=ask["timeout_s"])
            answer = {"ok": to_dict(response)}
        except grpc.RpcError as e:
            answer = {"error": "%s: %s" % (e.code().name, e.details())}
        except json_format.ParseError as e:
            answer = {"error": "not a %s: %s" % (request_class.__name__, e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()

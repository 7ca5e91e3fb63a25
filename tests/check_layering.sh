#!/usr/bin/env bash
# Dependencies flow downwards only (design.md): kernels/ knows nothing of
# engine/ or server/; engine/ never includes gRPC, protobuf or server/ headers.
set -u
root=${1:-.}
fail=0
if grep -rnE '#include +"(engine|server)/' "$root/kernels" 2>/dev/null; then
  echo "layering: kernels/ includes engine/ or server/"; fail=1
fi
if grep -rnE '#include +[<"](grpc|grpcpp|google/protobuf|server/|proto/|moegraph/v1)' "$root/engine" 2>/dev/null; then
  echo "layering: engine/ includes gRPC, protobuf or server/"; fail=1
fi
[ $fail -eq 0 ] && echo "layering: ok (kernels -> nothing, engine -> kernels only)"
exit $fail

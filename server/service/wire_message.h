// Requests and responses as raw gRPC byte buffers. The service parses its
// own requests: with gRPC's generated handlers a message that does not parse
// ends the call with UNIMPLEMENTED and an empty message (the callback API's
// default), which tells a client nothing.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"

namespace moegraph {

// Parses `buffer` into `message`: INVALID_ARGUMENT naming the message type
// when the bytes are not one (malformed wire format, or a string field that
// is not valid UTF-8).
inline absl::Status ParseWireMessage(const grpc::ByteBuffer& buffer,
                                     google::protobuf::Message* message) {
  grpc::ByteBuffer copy(buffer);  // shares the slices; the reader consumes its buffer
  grpc::ProtoBufferReader reader(&copy);
  if (!reader.status().ok() || !message->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request: not a valid ", message->GetDescriptor()->full_name(), " (", buffer.Length(),
        " bytes of malformed protobuf, or a string field that is not valid UTF-8)"));
  }
  return absl::OkStatus();
}

// Serializes `message` into `buffer` (replacing what it held).
inline void SerializeWireMessage(const google::protobuf::Message& message,
                                 grpc::ByteBuffer* buffer) {
  buffer->Clear();
  const size_t size = message.ByteSizeLong();
  grpc::ProtoBufferWriter writer(buffer, grpc::kProtoBufferWriterMaxBufferLength,
                                 static_cast<int>(size));
  message.SerializeToZeroCopyStream(&writer);
}

}  // namespace moegraph

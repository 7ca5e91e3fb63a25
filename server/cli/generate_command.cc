// `moegraph generate`: streams a completion from moegraphd to the terminal.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/common/cli_registry.h"
#include "grpcpp/grpcpp.h"
#include "moegraph/v1/generation.grpc.pb.h"
#include "server/client/cli_args.h"
#include "server/service/grpc_status.h"

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraph generate TEXT [--max-tokens N] [--temperature T] [--top-p P]\n"
    "         [--top-k K] [--min-p P] [--stop STRING]... [--stop-token-id ID]... [--seed N]\n"
    "         [--min-tokens N] [--repetition-penalty R] [--presence-penalty P]\n"
    "         [--frequency-penalty P] [--ids ID,ID,...] [--bos | --no-bos] [--ignore-eos]\n"
    "         [--include-stop] [--show-special] [--show-ids] [--request-id ID]\n"
    "         [--timeout SECONDS] [--server HOST:PORT]\n"
    "\n"
    "Streams the completion of TEXT (or of the token ids given with --ids) to\n"
    "stdout, and a summary (finish reason, tokens, timings) to stderr. Unset\n"
    "sampling flags take the server's defaults. The server is --server, else\n"
    "$MOEGRAPH_SERVER, else 127.0.0.1:50051.\n";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "moegraph generate: %s\n", status.ToString().c_str());
  return 1;
}

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    case v1::FINISH_REASON_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

// Fills `request` from the flags.
absl::Status BuildRequest(const CliArgs& args, v1::GenerateRequest* request) {
  auto dbl = [&](const char* flag, auto setter) -> absl::Status {
    if (!args.has(flag)) return absl::OkStatus();
    absl::StatusOr<double> v = ParseDoubleFlag(flag, args.get(flag));
    if (!v.ok()) return v.status();
    setter(*v);
    return absl::OkStatus();
  };
  auto num = [&](const char* flag, auto setter) -> absl::Status {
    if (!args.has(flag)) return absl::OkStatus();
    absl::StatusOr<long long> v = ParseIntFlag(flag, args.get(flag));
    if (!v.ok()) return v.status();
    setter(*v);
    return absl::OkStatus();
  };
  if (args.has("--ids")) {
    for (absl::string_view piece : absl::StrSplit(args.get("--ids"), ',', absl::SkipEmpty())) {
      int id = 0;
      if (!absl::SimpleAtoi(piece, &id)) {
        return absl::InvalidArgumentError(absl::StrFormat("--ids: not a token id: '%s'", piece));
      }
      request->mutable_token_ids()->add_ids(id);
    }
  } else {
    std::string text;
    for (const std::string& p : args.positionals) text += (text.empty() ? "" : " ") + p;
    request->set_text(text);
  }
  if (args.has("--bos")) request->set_add_bos(true);
  if (args.has("--no-bos")) request->set_add_bos(false);
  request->set_request_id(args.get("--request-id"));
  v1::SamplingParams* s = request->mutable_sampling();
  v1::StoppingParams* st = request->mutable_stopping();
  absl::Status status;
  for (absl::Status st_ : {
           dbl("--temperature", [&](double v) { s->set_temperature(static_cast<float>(v)); }),
           dbl("--top-p", [&](double v) { s->set_top_p(static_cast<float>(v)); }),
           dbl("--min-p", [&](double v) { s->set_min_p(static_cast<float>(v)); }),
           dbl("--repetition-penalty",
               [&](double v) { s->set_repetition_penalty(static_cast<float>(v)); }),
           dbl("--presence-penalty",
               [&](double v) { s->set_presence_penalty(static_cast<float>(v)); }),
           dbl("--frequency-penalty",
               [&](double v) { s->set_frequency_penalty(static_cast<float>(v)); }),
           num("--top-k", [&](long long v) { s->set_top_k(static_cast<int>(v)); }),
           num("--seed", [&](long long v) { s->set_seed(static_cast<uint64_t>(v)); }),
           num("--max-tokens", [&](long long v) { st->set_max_tokens(static_cast<int>(v)); }),
           num("--min-tokens", [&](long long v) { st->set_min_tokens(static_cast<int>(v)); }),
       }) {
    if (!st_.ok()) return st_;
  }
  for (const std::string& stop : args.all("--stop")) st->add_stop(stop);
  for (const std::string& id : args.all("--stop-token-id")) {
    absl::StatusOr<long long> v = ParseIntFlag("--stop-token-id", id);
    if (!v.ok()) return v.status();
    st->add_stop_token_ids(static_cast<int>(*v));
  }
  st->set_ignore_eos(args.has("--ignore-eos"));
  st->set_include_stop_str_in_output(args.has("--include-stop"));
  if (args.has("--show-special")) request->mutable_output()->set_skip_special_tokens(false);
  return absl::OkStatus();
}

int RunGenerate(int argc, char** argv) {
  absl::StatusOr<CliArgs> args = ParseCliArgs(
      argc, argv,
      {"--max-tokens", "--min-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
       "--repetition-penalty", "--presence-penalty", "--frequency-penalty", "--stop",
       "--stop-token-id", "--seed", "--ids", "--request-id", "--timeout", "--server"},
      {"--help", "--bos", "--no-bos", "--ignore-eos", "--include-stop", "--show-special",
       "--show-ids"});
  if (std::optional<int> exit = HandleUsage(args, "generate", kUsage, true)) return *exit;
  if (args->positionals.empty() && !args->has("--ids")) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  v1::GenerateRequest request;
  if (absl::Status s = BuildRequest(*args, &request); !s.ok()) return Fail(s);

  auto channel = grpc::CreateChannel(ServerAddress(*args), grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  if (args->has("--timeout")) {
    absl::StatusOr<double> t = ParseDoubleFlag("--timeout", args->get("--timeout"));
    if (!t.ok()) return Fail(t.status());
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(*t)));
  }
  const bool show_ids = args->has("--show-ids");
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  v1::GenerateResponse response;
  std::optional<v1::Final> last;
  bool ends_with_newline = true;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      const std::string& text = response.chunk().text();
      std::fwrite(text.data(), 1, text.size(), stdout);
      if (!text.empty()) ends_with_newline = text.back() == '\n';
      if (show_ids) {
        for (int id : response.chunk().token_ids()) std::fprintf(stderr, "[%d]", id);
      }
      std::fflush(stdout);
    } else if (response.has_final()) {
      last = response.final();
    }
  }
  grpc::Status status = reader->Finish();
  if (!ends_with_newline) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!status.ok()) return Fail(FromGrpcStatus(status));
  if (!last.has_value())
    return Fail(absl::InternalError("the stream ended without a final message"));
  std::string stop;
  if (last->has_stop_string()) stop = absl::StrFormat(" on \"%s\"", last->stop_string());
  if (last->has_stop_token_id()) stop = absl::StrFormat(" on token %d", last->stop_token_id());
  std::fprintf(
      stderr,
      "[%s: finish %s%s, %d prompt + %d generated tokens, ttft %.1f ms, total %.1f ms%s%s]\n",
      response.request_id().c_str(), FinishName(last->finish_reason()), stop.c_str(),
      last->usage().prompt_tokens(), last->usage().completion_tokens(),
      1e3 * last->timings().time_to_first_token_seconds(), 1e3 * last->timings().total_seconds(),
      last->error_message().empty() ? "" : ", error: ", last->error_message().c_str());
  return last->finish_reason() == v1::FINISH_REASON_STOP ||
                 last->finish_reason() == v1::FINISH_REASON_LENGTH
             ? 0
             : 1;
}

}  // namespace
}  // namespace moegraph

MOEGRAPH_CLI_COMMAND(generate, "generate",
                     "generate TEXT [--max-tokens N --temperature T --top-p P --stop S ... "
                     "--seed N --server ADDR]",
                     "stream a completion from moegraphd", moegraph::RunGenerate);

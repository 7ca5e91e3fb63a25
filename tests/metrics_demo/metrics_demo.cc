// moegraph_metrics_demo: the daemon's metric set (RegisterServerMetrics) served
// by the real exporter, with values the caller sets over stdin, so that tests
// can scrape it with promtool and Prometheus and know what they must find.
//
//   moegraph_metrics_demo [--address HOST:PORT]     (default 127.0.0.1:0)
// prints "port N", then reads one command a line and answers "ok" or
// "error: ..." to each:
//   inc NAME LABELS VALUE | set NAME LABELS VALUE | observe NAME LABELS VALUE
// LABELS is "-" or "name=value,name=value". It exits at the end of stdin.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "server/metrics/metrics.h"
#include "server/metrics/server_metrics.h"

namespace {

using moegraph::metrics::Labels;
using moegraph::metrics::Registry;

bool ParseLabels(const std::string& text, Labels* labels) {
  if (text == "-") return true;
  for (absl::string_view pair : absl::StrSplit(text, ',')) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return false;
    labels->emplace_back(kv[0], kv[1]);
  }
  return true;
}

std::string Apply(Registry& registry, const std::string& line) {
  std::istringstream in(line);
  std::string verb, name, label_text;
  double value = 0;
  if (!(in >> verb >> name >> label_text >> value)) return "error: expected VERB NAME LABELS VALUE";
  Labels labels;
  if (!ParseLabels(label_text, &labels)) return "error: labels are - or name=value,...";
  if (verb == "inc") {
    moegraph::metrics::Counter* c = registry.FindCounter(name, labels);
    if (c == nullptr) return "error: no counter " + name + " " + label_text;
    c->Inc(value);
  } else if (verb == "set") {
    moegraph::metrics::Gauge* g = registry.FindGauge(name, labels);
    if (g == nullptr) return "error: no gauge " + name + " " + label_text;
    g->Set(value);
  } else if (verb == "observe") {
    moegraph::metrics::Histogram* h = registry.FindHistogram(name, labels);
    if (h == nullptr) return "error: no histogram " + name + " " + label_text;
    h->Observe(value);
  } else {
    return "error: unknown verb " + verb;
  }
  return "ok";
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--address" && i + 1 < argc) {
      address = argv[++i];
    } else {
      std::cerr << "usage: moegraph_metrics_demo [--address HOST:PORT]\n";
      return 2;
    }
  }
  Registry registry;
  absl::StatusOr<moegraph::metrics::ServerMetrics> metrics =
      moegraph::metrics::RegisterServerMetrics(&registry);
  if (!metrics.ok()) {
    std::cerr << metrics.status() << "\n";
    return 1;
  }
  auto server = moegraph::metrics::MetricsHttpServer::Start(address, &registry);
  if (!server.ok()) {
    std::cerr << server.status() << "\n";
    return 1;
  }
  std::cout << "port " << (*server)->port() << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    if (line.empty()) continue;
    std::cout << Apply(registry, line) << std::endl;
  }
  return 0;
}

// Metric values, the registry and its text-format rendering. The HTTP side is
// in metrics_http_server.cc.
#include "server/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moegraph::metrics {

void Counter::Inc(double v) {
  if (!(v >= 0)) return;
  value_.fetch_add(v, std::memory_order_relaxed);
}
double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double v) { value_.store(v, std::memory_order_relaxed); }
void Gauge::Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  bounds_.erase(
      std::remove_if(bounds_.begin(), bounds_.end(), [](double b) { return !std::isfinite(b); }),
      bounds_.end());
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // Bucket i holds bounds_[i-1] < v <= bounds_[i]; the last one is +Inf.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[bucket];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot snap;
  snap.upper_bounds = bounds_;
  snap.cumulative_counts.reserve(counts_.size());
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    snap.cumulative_counts.push_back(running);
  }
  snap.sum = sum_;
  snap.count = count_;
  return snap;
}

namespace {

enum class MetricType { kCounter, kGauge, kHistogram };

template <typename T>
constexpr MetricType TypeOf() {
  if constexpr (std::is_same_v<T, Counter>) return MetricType::kCounter;
  if constexpr (std::is_same_v<T, Gauge>) return MetricType::kGauge;
  return MetricType::kHistogram;
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool IsNameStart(char c, bool allow_colon) {
  return absl::ascii_isalpha(c) || c == '_' || (allow_colon && c == ':');
}
bool IsNameChar(char c, bool allow_colon) {
  return IsNameStart(c, allow_colon) || absl::ascii_isdigit(c);
}
bool IsValidName(const std::string& name, bool allow_colon) {
  if (name.empty() || !IsNameStart(name[0], allow_colon)) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return IsNameChar(c, allow_colon); });
}

absl::Status ValidateMetricName(const std::string& name, MetricType type) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("metric \"", name, "\": ", why));
  };
  if (!IsValidName(name, /*allow_colon=*/true)) {
    return bad("name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  const bool total = absl::EndsWith(name, "_total");
  if (type == MetricType::kCounter && !total) return bad("a counter's name must end in _total");
  if (type != MetricType::kCounter && total) {
    return bad(absl::StrCat("only counters may end in _total, this is a ", TypeName(type)));
  }
  // These suffixes belong to the series a histogram renders; a family named
  // so would clash with them (and promtool refuses them).
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(name, suffix)) {
      return bad(absl::StrCat("the suffix ", suffix, " is reserved for histogram series"));
    }
  }
  return absl::OkStatus();
}

// Sorts the pairs by label name and checks the names.
absl::StatusOr<Labels> CanonicalLabels(const std::string& metric, Labels labels, MetricType type) {
  std::sort(labels.begin(), labels.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& label = labels[i].first;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", metric, "\": label \"", label, "\": ", why));
    };
    if (!IsValidName(label, /*allow_colon=*/false)) {
      return bad("name must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if (absl::StartsWith(label, "__")) return bad("names starting with __ are reserved");
    if (type == MetricType::kHistogram && label == "le") {
      return bad("reserved for histogram buckets");
    }
    if (i > 0 && labels[i - 1].first == label) return bad("given twice");
  }
  return labels;
}

absl::Status ValidateBuckets(const std::string& metric, const std::vector<double>& bounds) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("metric \"", metric, "\": buckets ", why));
  };
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (std::isnan(bounds[i]) || (std::isinf(bounds[i]) && i + 1 < bounds.size())) {
      return bad("must be finite (+Inf is implied and may only come last)");
    }
    if (i > 0 && !(bounds[i - 1] < bounds[i])) return bad("must be strictly ascending");
  }
  return absl::OkStatus();
}

// Go's strconv.ParseFloat reads these; integers stay free of exponents.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {  // 2^53: exact integers
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round trip
  return std::string(buf, result.ptr);
}

std::string EscapeHelp(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}`, with `extra` (le="...") appended; "" for no labels at all.
std::string FormatLabels(const Labels& labels, const std::string& extra = "") {
  if (labels.empty() && extra.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ',';
    absl::StrAppend(&out, name, "=\"", EscapeLabelValue(value), "\"");
  }
  if (!extra.empty()) {
    if (out.size() > 1) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

std::vector<std::string> LabelNames(const Labels& labels) {
  std::vector<std::string> names;
  names.reserve(labels.size());
  for (const auto& label : labels) names.push_back(label.first);
  return names;
}

}  // namespace

struct Registry::Family {
  MetricType type;
  std::string help;
  std::vector<std::string> label_names;  // sorted; the same for every child
  std::vector<double> upper_bounds;      // histograms only
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;

  template <typename T>
  std::map<Labels, std::unique_ptr<T>>& Children() {
    if constexpr (std::is_same_v<T, Counter>) return counters;
    if constexpr (std::is_same_v<T, Gauge>) return gauges;
    if constexpr (std::is_same_v<T, Histogram>) return histograms;
  }
};

Registry::Registry() = default;
Registry::~Registry() = default;

template <typename T>
absl::StatusOr<T*> Registry::Add(const std::string& name, const std::string& help,
                                 const Labels& labels, std::vector<double> upper_bounds) {
  constexpr MetricType type = TypeOf<T>();
  if (absl::Status s = ValidateMetricName(name, type); !s.ok()) return s;
  if (help.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("metric \"", name, "\": help is empty"));
  }
  absl::StatusOr<Labels> canonical = CanonicalLabels(name, labels, type);
  if (!canonical.ok()) return canonical.status();
  if constexpr (type == MetricType::kHistogram) {
    if (absl::Status s = ValidateBuckets(name, upper_bounds); !s.ok()) return s;
    if (!upper_bounds.empty() && std::isinf(upper_bounds.back())) upper_bounds.pop_back();
  }

  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<Family>& family = families_[name];
  if (family == nullptr) {
    family = std::make_unique<Family>();
    family->type = type;
    family->help = help;
    family->label_names = LabelNames(*canonical);
    family->upper_bounds = upper_bounds;
  } else {
    auto clash = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", name, "\": already registered with another ", what));
    };
    if (family->type != type) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", name, "\": already registered as a ", TypeName(family->type)));
    }
    if (family->help != help) return clash("help text");
    if (family->label_names != LabelNames(*canonical)) {
      return clash(
          absl::StrCat("set of label names (", absl::StrJoin(family->label_names, ","), ")"));
    }
    if (family->upper_bounds != upper_bounds) return clash("set of buckets");
  }
  std::unique_ptr<T>& child = family->template Children<T>()[*canonical];
  if (child != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("metric \"", name, FormatLabels(*canonical), "\": already registered"));
  }
  if constexpr (type == MetricType::kHistogram) {
    child = std::make_unique<Histogram>(std::move(upper_bounds));
  } else {
    child = std::make_unique<T>();
  }
  return child.get();
}

template <typename T>
T* Registry::Find(const std::string& name, const Labels& labels) const {
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  std::lock_guard<std::mutex> lock(mu_);
  auto family = families_.find(name);
  if (family == families_.end() || family->second->type != TypeOf<T>()) return nullptr;
  const auto& children = family->second->template Children<T>();
  auto child = children.find(sorted);
  return child == children.end() ? nullptr : child->second.get();
}

absl::StatusOr<Counter*> Registry::AddCounter(const std::string& name, const std::string& help,
                                              const Labels& labels) {
  return Add<Counter>(name, help, labels, {});
}
absl::StatusOr<Gauge*> Registry::AddGauge(const std::string& name, const std::string& help,
                                          const Labels& labels) {
  return Add<Gauge>(name, help, labels, {});
}
absl::StatusOr<Histogram*> Registry::AddHistogram(const std::string& name, const std::string& help,
                                                  std::vector<double> upper_bounds,
                                                  const Labels& labels) {
  return Add<Histogram>(name, help, labels, std::move(upper_bounds));
}

Counter* Registry::FindCounter(const std::string& name, const Labels& labels) const {
  return Find<Counter>(name, labels);
}
Gauge* Registry::FindGauge(const std::string& name, const Labels& labels) const {
  return Find<Gauge>(name, labels);
}
Histogram* Registry::FindHistogram(const std::string& name, const Labels& labels) const {
  return Find<Histogram>(name, labels);
}

std::string Registry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(family->help), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", TypeName(family->type), "\n");
    for (const auto& [labels, counter] : family->counters) {
      absl::StrAppend(&out, name, FormatLabels(labels), " ", FormatValue(counter->Value()), "\n");
    }
    for (const auto& [labels, gauge] : family->gauges) {
      absl::StrAppend(&out, name, FormatLabels(labels), " ", FormatValue(gauge->Value()), "\n");
    }
    for (const auto& [labels, histogram] : family->histograms) {
      const Histogram::Snapshot snap = histogram->Snap();
      for (size_t i = 0; i < snap.cumulative_counts.size(); ++i) {
        const std::string le =
            i < snap.upper_bounds.size() ? FormatValue(snap.upper_bounds[i]) : std::string("+Inf");
        absl::StrAppend(&out, name, "_bucket", FormatLabels(labels, "le=\"" + le + "\""), " ",
                        snap.cumulative_counts[i], "\n");
      }
      absl::StrAppend(&out, name, "_sum", FormatLabels(labels), " ", FormatValue(snap.sum), "\n");
      absl::StrAppend(&out, name, "_count", FormatLabels(labels), " ", snap.count, "\n");
    }
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

std::vector<double> FineLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015,
          0.02,   0.03,    0.05,   0.075, 0.1,   0.25,  0.5,   1,     2.5};
}

}  // namespace moegraph::metrics

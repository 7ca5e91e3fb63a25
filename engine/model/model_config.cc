// DeepSeek-V4 config.json -> ModelConfig, resolving the current and legacy
// spellings the way transformers' DeepseekV4Config.__post_init__ does, and the
// rotary tables the way modeling_rope_utils computes them (in fp32).
#include "engine/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <numbers>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace moegraph {
namespace {

using json = nlohmann::json;

constexpr const char* kSlidingName = "sliding_attention";
constexpr const char* kCsaName = "compressed_sparse_attention";
constexpr const char* kHcaName = "heavily_compressed_attention";

// transformers' defaults (configuration_deepseek_v4.py).
constexpr double kDefaultPartialRotaryFactor = 64.0 / 512.0;
constexpr int kDefaultCsaRate = 4;
constexpr int kDefaultHcaRate = 128;
constexpr int kDefaultNumHashLayers = 3;

// A short description of a JSON value for "found ..." in error messages.
// Containers are described, not dumped: a fuzzed file may nest deeply.
std::string Describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::string: {
      std::string s = v.get<std::string>();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return v.dump();
    case json::value_t::array:
      return absl::StrCat("an array of ", v.size(), " entries");
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  return "an unsupported JSON value";
}

absl::Status Mismatch(const std::string& field, const std::string& expected, const json& found) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected ", expected, ", found ", Describe(found)));
}

absl::Status MissingField(const std::string& field, const std::string& expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": required field is missing (expected ", expected, ")"));
}

std::string Range(int64_t lo, int64_t hi) {
  if (hi == std::numeric_limits<int>::max()) return absl::StrCat("an integer >= ", lo);
  return absl::StrCat("an integer in [", lo, ", ", hi, "]");
}

// Typed access to the members of one JSON object; `prefix` makes field names
// in errors read as paths ("rope_parameters.compress.factor"). JSON null counts
// as absent, as None does for transformers' optional keys.
class Fields {
 public:
  Fields(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  std::string Name(const std::string& key) const { return absl::StrCat(prefix_, key); }
  const json* Find(const std::string& key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const std::string& key) const { return Find(key) != nullptr; }

  absl::StatusOr<int> Int(const std::string& key, int64_t lo, int64_t hi) const {
    const json* v = Find(key);
    if (!v) return MissingField(Name(key), Range(lo, hi));
    return CheckInt(Name(key), *v, lo, hi);
  }
  absl::StatusOr<int> IntOr(const std::string& key, int fallback, int64_t lo, int64_t hi) const {
    const json* v = Find(key);
    if (!v) return fallback;
    return CheckInt(Name(key), *v, lo, hi);
  }
  // A finite number with lo < value (or lo <= value when `inclusive`).
  absl::StatusOr<double> NumberOr(const std::string& key, double fallback, double lo,
                                  bool inclusive) const {
    const json* v = Find(key);
    if (!v) return fallback;
    return CheckNumber(Name(key), *v, lo, inclusive);
  }
  absl::StatusOr<double> Number(const std::string& key, double lo, bool inclusive) const {
    const json* v = Find(key);
    if (!v) return MissingField(Name(key), absl::StrCat("a number ", inclusive ? ">= " : "> ", lo));
    return CheckNumber(Name(key), *v, lo, inclusive);
  }
  absl::StatusOr<bool> BoolOr(const std::string& key, bool fallback) const {
    const json* v = Find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) return Mismatch(Name(key), "true or false", *v);
    return v->get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key) const {
    const json* v = Find(key);
    if (!v) return MissingField(Name(key), "a string");
    if (!v->is_string()) return Mismatch(Name(key), "a string", *v);
    return v->get<std::string>();
  }

  static absl::StatusOr<int> CheckInt(const std::string& name, const json& v, int64_t lo,
                                      int64_t hi) {
    int64_t x;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) return Mismatch(name, Range(lo, hi), v);
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else {
      return Mismatch(name, Range(lo, hi), v);
    }
    if (x < lo || x > hi) return Mismatch(name, Range(lo, hi), v);
    return static_cast<int>(x);
  }
  static absl::StatusOr<double> CheckNumber(const std::string& name, const json& v, double lo,
                                            bool inclusive) {
    std::string expected = absl::StrCat("a number ", inclusive ? ">= " : "> ", lo);
    if (!v.is_number()) return Mismatch(name, expected, v);
    double x = v.get<double>();
    if (!std::isfinite(x) || (inclusive ? x < lo : x <= lo)) return Mismatch(name, expected, v);
    return x;
  }

 private:
  const json& obj_;
  std::string prefix_;
};

constexpr int kIntMax = std::numeric_limits<int>::max();

absl::StatusOr<AttnKind> ParseAttnKind(const std::string& name, const json& v) {
  std::string expected = absl::StrCat("one of ", kSlidingName, ", ", kCsaName, ", ", kHcaName);
  if (!v.is_string()) return Mismatch(name, expected, v);
  const std::string& s = v.get_ref<const std::string&>();
  if (s == kSlidingName) return AttnKind::kSliding;
  if (s == kCsaName) return AttnKind::kCsa;
  if (s == kHcaName) return AttnKind::kHca;
  return Mismatch(name, expected, v);
}

absl::StatusOr<MlpKind> ParseMlpKind(const std::string& name, const json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "hash_moe") return MlpKind::kHashMoe;
    if (s == "moe") return MlpKind::kMoe;
  }
  return Mismatch(name, "one of hash_moe, moe", v);
}

// The attention schedule from `layer_types` and/or legacy `compress_ratios`;
// also settles the compress rates. transformers maps ratios through a fixed
// {0, 4, 128} table; this accepts any two rates (the smaller is CSA) unless
// compress_rates pins them.
absl::Status ParseSchedule(const Fields& f, ModelConfig& c) {
  const int n = c.num_layers;
  bool rates_given = false;
  c.csa_rate = kDefaultCsaRate;
  c.hca_rate = kDefaultHcaRate;
  if (const json* rates = f.Find("compress_rates")) {
    if (!rates->is_object()) {
      return Mismatch("compress_rates",
                      absl::StrCat("an object {", kCsaName, ": m, ", kHcaName, ": M}"), *rates);
    }
    Fields r(*rates, "compress_rates.");
    ASSIGN_OR_RETURN(c.csa_rate, r.Int(kCsaName, 1, kIntMax));
    ASSIGN_OR_RETURN(c.hca_rate, r.Int(kHcaName, 1, kIntMax));
    rates_given = true;
  }
  if (f.Has("compress_rate_csa")) {
    ASSIGN_OR_RETURN(c.csa_rate, f.Int("compress_rate_csa", 1, kIntMax));
    rates_given = true;
  }
  if (f.Has("compress_rate_hca")) {
    ASSIGN_OR_RETURN(c.hca_rate, f.Int("compress_rate_hca", 1, kIntMax));
    rates_given = true;
  }

  std::vector<AttnKind> from_types, from_ratios;
  const json* types = f.Find("layer_types");
  if (types) {
    if (!types->is_array()) return Mismatch("layer_types", "an array of layer type names", *types);
    if (types->size() != static_cast<size_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer_types: expected ", n, " entries (num_hidden_layers), found ", types->size()));
    }
    for (size_t i = 0; i < types->size(); ++i) {
      ASSIGN_OR_RETURN(AttnKind k,
                       ParseAttnKind(absl::StrCat("layer_types[", i, "]"), (*types)[i]));
      from_types.push_back(k);
    }
  }

  const json* ratios = f.Find("compress_ratios");
  if (ratios) {
    if (!ratios->is_array()) return Mismatch("compress_ratios", "an array of integers", *ratios);
    const size_t with_mtp =
        static_cast<size_t>(n) + static_cast<size_t>(c.num_nextn_predict_layers);
    if (ratios->size() != with_mtp && ratios->size() != static_cast<size_t>(n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("compress_ratios: expected ", with_mtp,
                       " entries (num_hidden_layers + num_nextn_predict_layers) or ", n, ", found ",
                       ratios->size()));
    }
    std::vector<int> values;
    std::set<int> rates_seen;
    for (size_t i = 0; i < ratios->size(); ++i) {
      ASSIGN_OR_RETURN(int v, Fields::CheckInt(absl::StrCat("compress_ratios[", i, "]"),
                                               (*ratios)[i], 0, kIntMax));
      values.push_back(v);
      if (i < static_cast<size_t>(n) && v != 0) rates_seen.insert(v);
    }
    if (!rates_given && !rates_seen.empty() &&
        !(rates_seen.size() <= 2 && std::all_of(rates_seen.begin(), rates_seen.end(), [&](int v) {
            return v == c.csa_rate || v == c.hca_rate;
          }))) {
      // Rates other than the defaults: the smaller is CSA, the larger HCA.
      if (rates_seen.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            "compress_ratios: cannot tell CSA from HCA rates without compress_rates; expected 0, ",
            c.csa_rate, " or ", c.hca_rate, " per layer, found rates {",
            absl::StrJoin(rates_seen, ", "), "}"));
      }
      c.csa_rate = *rates_seen.begin();
      c.hca_rate = *rates_seen.rbegin();
    }
    for (int i = 0; i < n; ++i) {
      int v = values[i];
      if (v == 0) {
        from_ratios.push_back(AttnKind::kSliding);
      } else if (v == c.csa_rate) {
        from_ratios.push_back(AttnKind::kCsa);
      } else if (v == c.hca_rate) {
        from_ratios.push_back(AttnKind::kHca);
      } else {
        return Mismatch(absl::StrCat("compress_ratios[", i, "]"),
                        absl::StrCat("0 (sliding), ", c.csa_rate, " (CSA) or ", c.hca_rate,
                                     " (HCA) as set by compress_rates"),
                        json(v));
      }
    }
  }

  if (!types && !ratios) {
    return MissingField("layer_types",
                        absl::StrCat("one entry per layer, or legacy compress_ratios"));
  }
  if (types && ratios) {
    for (int i = 0; i < n; ++i) {
      if (from_types[i] != from_ratios[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "compress_ratios[", i, "]: says ", AttnKindName(from_ratios[i]), " but layer_types[", i,
            "] is ", AttnKindName(from_types[i]), "; the two fields must agree"));
      }
    }
  }
  c.layer_types = types ? std::move(from_types) : std::move(from_ratios);
  if (c.csa_rate == c.hca_rate && c.num_layers_of(AttnKind::kCsa) &&
      c.num_layers_of(AttnKind::kHca)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compress_rates: expected different CSA and HCA rates, found both ", c.csa_rate));
  }
  return absl::OkStatus();
}

absl::Status ParseMlpSchedule(const Fields& f, ModelConfig& c) {
  const int n = c.num_layers;
  const json* types = f.Find("mlp_layer_types");
  int num_hash = kDefaultNumHashLayers;
  const bool hash_given = f.Has("num_hash_layers");
  if (hash_given) {
    ASSIGN_OR_RETURN(num_hash, f.Int("num_hash_layers", 0, kIntMax));
  }
  std::vector<MlpKind> from_count;
  for (int i = 0; i < n; ++i)
    from_count.push_back(i < num_hash ? MlpKind::kHashMoe : MlpKind::kMoe);
  if (!types) {
    c.mlp_types = std::move(from_count);
    return absl::OkStatus();
  }
  if (!types->is_array()) return Mismatch("mlp_layer_types", "an array of hash_moe|moe", *types);
  if (types->size() != static_cast<size_t>(n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlp_layer_types: expected ", n, " entries (num_hidden_layers), found ", types->size()));
  }
  for (size_t i = 0; i < types->size(); ++i) {
    ASSIGN_OR_RETURN(MlpKind k,
                     ParseMlpKind(absl::StrCat("mlp_layer_types[", i, "]"), (*types)[i]));
    if (hash_given && k != from_count[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mlp_layer_types[", i, "]: is ", MlpKindName(k), " but num_hash_layers = ", num_hash,
          " makes it ", MlpKindName(from_count[i]), "; the two fields must agree"));
    }
    c.mlp_types.push_back(k);
  }
  return absl::OkStatus();
}

// transformers' get_mscale (YaRN attention factor).
double YarnMscale(double scale, double mscale) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// One rope table from a dict of rope parameters. `nested` is the
// rope_parameters.{main,compress} form, whose YaRN attention factor transformers
// derives from mscale when absent; in the flat/legacy form it is forced to 1.
absl::Status ParseRopeDict(const json& dict, const std::string& prefix, double default_theta,
                           bool theta_from_dict, bool nested, const ModelConfig& c,
                           double partial_rotary_factor, RopeTable& t) {
  Fields r(dict, prefix);
  std::string rope_type = "default";
  const json* rt = r.Find("rope_type");
  const json* legacy_type = r.Find("type");
  if (rt && legacy_type && *rt != *legacy_type) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "rope_type: is ", Describe(*rt), " but ",
                                                   prefix, "type is ", Describe(*legacy_type),
                                                   "; the two must agree"));
  }
  if (!rt) rt = legacy_type;
  if (rt) {
    if (!rt->is_string()) return Mismatch(r.Name("rope_type"), "\"default\" or \"yarn\"", *rt);
    rope_type = rt->get<std::string>();
  }
  if (rope_type != "default" && rope_type != "yarn") {
    return Mismatch(r.Name("rope_type"), "\"default\" or \"yarn\"", *rt);
  }
  t.theta = default_theta;
  if (theta_from_dict) {
    ASSIGN_OR_RETURN(t.theta, r.NumberOr("rope_theta", default_theta, 1.0, false));
  }
  if (nested && r.Has("partial_rotary_factor")) {
    ASSIGN_OR_RETURN(double prf, r.Number("partial_rotary_factor", 0.0, false));
    const double dim = std::floor(c.head_dim * prf);
    if (dim != c.rope_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          r.Name("partial_rotary_factor"), ": expected a factor giving head_dim * factor = ",
          c.rope_dim, " rope dims (top-level partial_rotary_factor ", partial_rotary_factor,
          "), found ", prf, " giving ", dim));
    }
  }
  t.yarn = rope_type == "yarn";
  t.attention_factor = 1.0;
  if (!t.yarn) return absl::OkStatus();

  ASSIGN_OR_RETURN(t.original_max_position,
                   r.Number("original_max_position_embeddings", 0.0, false));
  // transformers indexes ["factor"] (so the key must be there) and takes
  // max_position_embeddings / original_max_position_embeddings when it is None.
  if (!dict.contains("factor")) return MissingField(r.Name("factor"), "a number > 0");
  ASSIGN_OR_RETURN(
      t.factor,
      r.NumberOr("factor", c.max_position_embeddings / t.original_max_position, 0.0, false));
  // `get("beta_fast") or 32`: absent, null and 0 all mean the default.
  ASSIGN_OR_RETURN(t.beta_fast, r.NumberOr("beta_fast", 32.0, 0.0, true));
  if (t.beta_fast == 0) t.beta_fast = 32.0;
  ASSIGN_OR_RETURN(t.beta_slow, r.NumberOr("beta_slow", 1.0, 0.0, true));
  if (t.beta_slow == 0) t.beta_slow = 1.0;
  if (r.Has("truncate")) {
    // transformers reads `truncate` from the top level of rope_parameters, which
    // for V4 is {main, compress}: the key in a table never takes effect.
    ASSIGN_OR_RETURN(bool unused, r.BoolOr("truncate", true));
    (void)unused;
  }
  if (r.Has("attention_factor")) {
    ASSIGN_OR_RETURN(t.attention_factor, r.Number("attention_factor", 0.0, false));
  } else if (nested) {
    ASSIGN_OR_RETURN(double mscale, r.NumberOr("mscale", 0.0, 0.0, true));
    ASSIGN_OR_RETURN(double mscale_all_dim, r.NumberOr("mscale_all_dim", 0.0, 0.0, true));
    t.attention_factor = (mscale != 0 && mscale_all_dim != 0)
                             ? YarnMscale(t.factor, mscale) / YarnMscale(t.factor, mscale_all_dim)
                             : YarnMscale(t.factor, 1.0);
  }
  return absl::OkStatus();
}

absl::Status ParseRope(const Fields& f, double partial_rotary_factor, ModelConfig& c) {
  ASSIGN_OR_RETURN(double rope_theta, f.NumberOr("rope_theta", 10000.0, 1.0, false));
  ASSIGN_OR_RETURN(double compress_theta, f.NumberOr("compress_rope_theta", 160000.0, 1.0, false));
  const json* params = f.Find("rope_parameters");
  const json* scaling = f.Find("rope_scaling");
  if (params && !params->is_object()) return Mismatch("rope_parameters", "an object", *params);
  if (scaling && !scaling->is_object()) return Mismatch("rope_scaling", "an object", *scaling);
  if (params && scaling) {
    return absl::InvalidArgumentError(
        "rope_parameters: found together with legacy rope_scaling; expected only one of them");
  }

  if (params && (params->contains("main") || params->contains("compress"))) {
    const json* main = Fields(*params, "").Find("main");
    const json* compress = Fields(*params, "").Find("compress");
    if (!main || !compress || !main->is_object() || !compress->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope_parameters: expected both `main` and `compress` tables (objects), found main = ",
          main ? Describe(*main) : "absent",
          ", compress = ", compress ? Describe(*compress) : "absent"));
    }
    RETURN_IF_ERROR(ParseRopeDict(*main, "rope_parameters.main.", rope_theta, true, true, c,
                                  partial_rotary_factor, c.rope_main));
    RETURN_IF_ERROR(ParseRopeDict(*compress, "rope_parameters.compress.", compress_theta, true,
                                  true, c, partial_rotary_factor, c.rope_compress));
    return absl::OkStatus();
  }

  // Flat form (rope_parameters as transformers' config class accepts it, or
  // legacy rope_scaling): it describes the compress table, whose theta is
  // compress_rope_theta; the main table is default rope at rope_theta.
  c.rope_main = RopeTable{};
  c.rope_main.theta = rope_theta;
  const json empty = json::object();
  const json& flat = params ? *params : scaling ? *scaling : empty;
  const std::string prefix = params ? "rope_parameters." : "rope_scaling.";
  return ParseRopeDict(flat, prefix, compress_theta, false, false, c, partial_rotary_factor,
                       c.rope_compress);
}

// quantization_config (optional) and expert_dtype, in both places releases put it.
absl::Status ParseQuant(const json& root, QuantConfig& q) {
  auto one_of = [](const std::string& name, const json& v,
                   std::initializer_list<const char*> allowed) -> absl::Status {
    std::vector<std::string> quoted;
    for (const char* a : allowed) {
      if (v.is_string() && v.get_ref<const std::string&>() == a) return absl::OkStatus();
      quoted.push_back(absl::StrCat("\"", a, "\""));
    }
    return Mismatch(name, absl::StrCat("one of ", absl::StrJoin(quoted, ", ")), v);
  };
  const json* expert_top = nullptr;
  if (auto it = root.find("expert_dtype"); it != root.end() && !it->is_null()) expert_top = &*it;
  const json* expert_inner = nullptr;
  if (auto it = root.find("quantization_config"); it != root.end() && !it->is_null()) {
    const json& qc = *it;
    if (!qc.is_object()) return Mismatch("quantization_config", "an object", qc);
    Fields f(qc, "quantization_config.");
    const json* method = f.Find("quant_method");
    if (!method) return MissingField("quantization_config.quant_method", "\"fp8\"");
    RETURN_IF_ERROR(one_of("quantization_config.quant_method", *method, {"fp8"}));
    q.fp8 = true;
    if (const json* fmt = f.Find("fmt")) {
      RETURN_IF_ERROR(one_of("quantization_config.fmt", *fmt, {"e4m3"}));
    }
    if (const json* act = f.Find("activation_scheme")) {
      RETURN_IF_ERROR(one_of("quantization_config.activation_scheme", *act, {"dynamic"}));
    }
    if (const json* sf = f.Find("scale_fmt")) {
      RETURN_IF_ERROR(one_of("quantization_config.scale_fmt", *sf, {"ue8m0"}));
      q.pow2_scales = true;
    }
    if (const json* bs = f.Find("weight_block_size")) {
      if (!bs->is_array() || bs->size() != 2 || (*bs)[0] != 128 || (*bs)[1] != 128) {
        return Mismatch("quantization_config.weight_block_size", "[128, 128]", *bs);
      }
    }
    expert_inner = f.Find("expert_dtype");
  }
  for (auto [name, v] : {std::pair{"expert_dtype", expert_top},
                         std::pair{"quantization_config.expert_dtype", expert_inner}}) {
    if (v) RETURN_IF_ERROR(one_of(name, *v, {"fp4", "fp8"}));
  }
  if (expert_top && expert_inner && *expert_top != *expert_inner) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert_dtype ", Describe(*expert_top),
                     " disagrees with quantization_config.expert_dtype ", Describe(*expert_inner)));
  }
  if (const json* v = expert_top ? expert_top : expert_inner) {
    q.expert_dtype = v->get<std::string>();
    if (!q.fp8) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert_dtype ", Describe(*v),
                       " needs quantization_config with quant_method \"fp8\" (none given)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseObject(const json& root) {
  Fields f(root, "");
  ModelConfig c;
  ASSIGN_OR_RETURN(c.model_type, f.String("model_type"));
  if (c.model_type != "deepseek_v4") {
    return Mismatch("model_type", "\"deepseek_v4\"", *f.Find("model_type"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size", 1, kIntMax));
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size", 1, kIntMax));
  ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", 1, kIntMax));
  ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads", 1, kIntMax));
  ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", 1, kIntMax));
  ASSIGN_OR_RETURN(c.q_lora_rank, f.Int("q_lora_rank", 1, kIntMax));
  ASSIGN_OR_RETURN(c.o_groups, f.Int("o_groups", 1, kIntMax));
  ASSIGN_OR_RETURN(c.o_lora_rank, f.Int("o_lora_rank", 1, kIntMax));
  ASSIGN_OR_RETURN(c.n_routed_experts, f.Int("n_routed_experts", 1, kIntMax));
  ASSIGN_OR_RETURN(c.num_experts_per_tok, f.Int("num_experts_per_tok", 1, c.n_routed_experts));
  ASSIGN_OR_RETURN(c.moe_intermediate_size, f.Int("moe_intermediate_size", 1, kIntMax));
  ASSIGN_OR_RETURN(c.sliding_window, f.Int("sliding_window", 1, kIntMax));
  ASSIGN_OR_RETURN(c.index_n_heads, f.Int("index_n_heads", 1, kIntMax));
  ASSIGN_OR_RETURN(c.index_head_dim, f.Int("index_head_dim", 1, kIntMax));
  ASSIGN_OR_RETURN(c.index_topk, f.Int("index_topk", 1, kIntMax));

  ASSIGN_OR_RETURN(c.n_shared_experts, f.IntOr("n_shared_experts", 1, 0, kIntMax));
  ASSIGN_OR_RETURN(c.routed_scaling_factor, f.NumberOr("routed_scaling_factor", 1.5, 0.0, false));
  ASSIGN_OR_RETURN(c.swiglu_limit, f.NumberOr("swiglu_limit", 10.0, 0.0, false));
  ASSIGN_OR_RETURN(c.hc_mult, f.IntOr("hc_mult", 4, 1, kIntMax));
  ASSIGN_OR_RETURN(c.hc_sinkhorn_iters, f.IntOr("hc_sinkhorn_iters", 20, 1, kIntMax));
  ASSIGN_OR_RETURN(c.hc_eps, f.NumberOr("hc_eps", 1e-6, 0.0, true));
  ASSIGN_OR_RETURN(c.rms_norm_eps, f.NumberOr("rms_norm_eps", 1e-6, 0.0, true));
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   f.IntOr("max_position_embeddings", 1048576, 1, kIntMax));
  ASSIGN_OR_RETURN(c.num_nextn_predict_layers, f.IntOr("num_nextn_predict_layers", 1, 0, kIntMax));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, f.BoolOr("tie_word_embeddings", false));
  // transformers' default bos is 0; JSON null means "none".
  if (!root.contains("bos_token_id")) {
    c.bos_token_id = 0;
  } else {
    ASSIGN_OR_RETURN(c.bos_token_id, f.IntOr("bos_token_id", -1, 0, kIntMax));
  }
  if (!root.contains("eos_token_id")) {
    c.eos_token_ids = {1};
  } else if (const json* eos = f.Find("eos_token_id")) {
    if (eos->is_array()) {
      for (size_t i = 0; i < eos->size(); ++i) {
        ASSIGN_OR_RETURN(
            int id, Fields::CheckInt(absl::StrCat("eos_token_id[", i, "]"), (*eos)[i], 0, kIntMax));
        c.eos_token_ids.push_back(id);
      }
    } else {
      ASSIGN_OR_RETURN(int id, f.Int("eos_token_id", 0, kIntMax));
      c.eos_token_ids.push_back(id);
    }
  }

  // What the engine implements, where transformers offers alternatives.
  if (f.Has("num_key_value_heads")) {
    RETURN_IF_ERROR(f.Int("num_key_value_heads", 1, 1).status());
  }
  if (const json* scoring = f.Find("scoring_func")) {
    if (*scoring != "sqrtsoftplus") {
      return Mismatch("scoring_func", "\"sqrtsoftplus\" (the only router scoring implemented)",
                      *scoring);
    }
  }
  if (c.num_heads % c.o_groups != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("o_groups: expected a divisor of num_attention_heads (", c.num_heads,
                     "), found ", c.o_groups));
  }

  // Rope dims: partial_rotary_factor wins; else legacy qk_rope_head_dim / head_dim.
  double prf = kDefaultPartialRotaryFactor;
  const bool prf_given = f.Has("partial_rotary_factor");
  const bool qk_given = f.Has("qk_rope_head_dim");
  int qk_rope = 0;
  if (qk_given) {
    ASSIGN_OR_RETURN(qk_rope, f.Int("qk_rope_head_dim", 1, kIntMax));
  }
  if (prf_given) {
    ASSIGN_OR_RETURN(prf, f.Number("partial_rotary_factor", 0.0, false));
    if (prf > 1.0)
      return Mismatch("partial_rotary_factor", "a number in (0, 1]",
                      *f.Find("partial_rotary_factor"));
  } else if (qk_given) {
    prf = static_cast<double>(qk_rope) / c.head_dim;
  }
  const double rope_dim = std::floor(c.head_dim * prf);  // Python int() of a positive float
  if (prf_given && qk_given && rope_dim != qk_rope) {
    return absl::InvalidArgumentError(
        absl::StrCat("qk_rope_head_dim: expected head_dim * partial_rotary_factor = ", c.head_dim,
                     " * ", prf, " = ", rope_dim, ", found ", qk_rope));
  }
  if (rope_dim < 2 || rope_dim > c.head_dim || std::fmod(rope_dim, 2.0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prf_given ? "partial_rotary_factor" : "qk_rope_head_dim",
                     ": expected an even number of rope dims in [2, head_dim = ", c.head_dim,
                     "], found ", rope_dim, " (head_dim * ", prf, ")"));
  }
  c.rope_dim = static_cast<int>(rope_dim);
  if (c.index_head_dim < c.rope_dim) {
    return absl::InvalidArgumentError(absl::StrCat("index_head_dim: expected >= the rope dims (",
                                                   c.rope_dim, "), found ", c.index_head_dim));
  }

  RETURN_IF_ERROR(ParseSchedule(f, c));
  RETURN_IF_ERROR(ParseMlpSchedule(f, c));
  RETURN_IF_ERROR(ParseRope(f, prf, c));
  RETURN_IF_ERROR(ParseQuant(root, c.quant));
  return c;
}

}  // namespace

int ModelConfig::num_layers_of(AttnKind k) const {
  return static_cast<int>(std::count(layer_types.begin(), layer_types.end(), k));
}

int ModelConfig::index_within_kind(int layer) const {
  if (layer < 0 || layer >= static_cast<int>(layer_types.size())) return -1;
  return static_cast<int>(
      std::count(layer_types.begin(), layer_types.begin() + layer, layer_types[layer]));
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: expected a JSON object at the top level, found ", Describe(root)));
  }
  try {
    return ParseObject(root);
  } catch (const json::exception& e) {
    // Every access above is type-checked; this is a backstop, not a path.
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text.str());
  if (!c.ok())
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  return c;
}

std::vector<float> RopeInvFreq(const RopeTable& table, int rope_dim) {
  // transformers computes these in fp32 tensors from Python-double scalars;
  // each step below rounds where a torch op would.
  const int pairs = rope_dim / 2;
  const float base = static_cast<float>(table.theta);
  std::vector<float> pos_freqs(pairs);
  for (int i = 0; i < pairs; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rope_dim);
    pos_freqs[i] =
        static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
  }
  std::vector<float> inv(pairs);
  if (!table.yarn) {
    for (int i = 0; i < pairs; ++i) inv[i] = 1.0f / pos_freqs[i];
    return inv;
  }
  // YaRN (_compute_yarn_parameters) with truncate = true: blend interpolated
  // (divided by factor) and extrapolated frequencies by a linear ramp over pair
  // index between the correction dims of beta_fast and beta_slow.
  auto correction_dim = [&](double rotations) {
    return rope_dim * std::log(table.original_max_position / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(table.theta));
  };
  double low = std::max(std::floor(correction_dim(table.beta_fast)), 0.0);
  double high =
      std::min(std::ceil(correction_dim(table.beta_slow)), static_cast<double>(rope_dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  const float low_f = static_cast<float>(low);
  const float span = static_cast<float>(high - low);
  const float factor = static_cast<float>(table.factor);
  for (int i = 0; i < pairs; ++i) {
    const float extrapolated = 1.0f / pos_freqs[i];
    const float interpolated = 1.0f / (factor * pos_freqs[i]);
    const float ramp = std::clamp((static_cast<float>(i) - low_f) / span, 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    inv[i] = interpolated * (1.0f - extrapolation_factor) + extrapolated * extrapolation_factor;
  }
  return inv;
}

const char* AttnKindName(AttnKind k) {
  switch (k) {
    case AttnKind::kSliding:
      return kSlidingName;
    case AttnKind::kCsa:
      return kCsaName;
    case AttnKind::kHca:
      return kHcaName;
  }
  return "?";
}

const char* MlpKindName(MlpKind k) {
  switch (k) {
    case MlpKind::kHashMoe:
      return "hash_moe";
    case MlpKind::kMoe:
      return "moe";
  }
  return "?";
}

}  // namespace moegraph

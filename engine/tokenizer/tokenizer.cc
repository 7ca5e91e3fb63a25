// Loading tokenizer.json into the pipeline tokenizers runs for one sequence:
// added tokens on the raw text, normalizer, added tokens on the normalized
// text, pre-tokenizer, BPE, then the post-processor's template. Decoding is the
// ByteLevel decoder followed by a lossy UTF-8 reading.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/nfc.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace moegraph {

using nlohmann::json;

struct Tokenizer::Impl {
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  bool nfc = false;
  std::unique_ptr<AddedTokenMatcher> raw_matcher;         // added tokens with normalized=false
  std::unique_ptr<AddedTokenMatcher> normalized_matcher;  // added tokens with normalized=true
  absl::flat_hash_map<std::string, int32_t> added_ids;    // content -> id
  std::vector<std::string> token_bytes;                   // per id: decoded bytes
  std::vector<bool> special;                              // per id
  int vocab_size = 0;
  std::optional<int32_t> bos_id, eos_id;
  bool add_bos = false;
  bool has_template = false;  // post_processor TemplateProcessing
  std::vector<int32_t> template_prefix, template_suffix;

  // Each stops adding ids once `ids` holds more than `max_ids`.
  absl::Status EncodeText(std::string_view text, size_t max_ids, std::vector<int32_t>* ids) const;
  absl::Status EncodeNormalized(std::string_view segment, size_t max_ids,
                                std::vector<int32_t>* ids) const;
  void EncodeWords(std::string_view normalized, size_t max_ids, std::vector<int32_t>* ids) const {
    pre_tokenizer->Split(normalized, [&](std::string_view word) {
      if (ids->size() <= max_ids) model->Tokenize(word, ids);
    });
  }
};

namespace {

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", where, ": ", what));
}
absl::Status Unsupported(absl::string_view where, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat("tokenizer.json: ", where, ": ", what));
}

std::string TypeOf(const json& spec) {
  if (spec.is_object() && spec.contains("type") && spec["type"].is_string()) {
    return spec["type"].get<std::string>();
  }
  return spec.dump().substr(0, 60);
}

// Whether the normalizer is NFC (true) or absent (false).
absl::StatusOr<bool> ParseNormalizer(const json& spec) {
  if (spec.is_null()) return false;
  const std::string type = TypeOf(spec);
  if (type == "NFC") return true;
  if (type == "Sequence" && spec.contains("normalizers") && spec["normalizers"].is_array()) {
    bool nfc = false;
    for (const json& n : spec["normalizers"]) {
      if (TypeOf(n) != "NFC") {
        return Unsupported("normalizer",
                           absl::StrCat("type \"", TypeOf(n), "\" is not supported (only NFC)"));
      }
      nfc = true;
    }
    return nfc;
  }
  return Unsupported("normalizer",
                     absl::StrCat("type \"", type, "\" is not supported (only null or NFC)"));
}

absl::Status ParsePostProcessor(const json& spec, Tokenizer::Impl* impl) {
  if (spec.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(spec);
  if (type == "ByteLevel") return absl::OkStatus();  // only trims offsets
  if (type == "Sequence" && spec.contains("processors") && spec["processors"].is_array()) {
    for (const json& p : spec["processors"]) RETURN_IF_ERROR(ParsePostProcessor(p, impl));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return Unsupported(
        "post_processor",
        absl::StrCat("type \"", type,
                     "\" is not supported (ByteLevel, TemplateProcessing, Sequence are)"));
  }
  if (impl->has_template) return Unsupported("post_processor", "more than one TemplateProcessing");
  if (!spec.contains("single") || !spec["single"].is_array()) {
    return Invalid("post_processor.single", "expected an array");
  }
  const json no_specials = json::object();
  const json& specials = spec.contains("special_tokens") && spec["special_tokens"].is_object()
                             ? spec["special_tokens"]
                             : no_specials;
  bool seen_sequence = false;
  for (const json& piece : spec["single"]) {
    if (piece.is_object() && piece.contains("Sequence")) {
      const json& seq = piece["Sequence"];
      if (!seq.is_object() || seq.value("id", json()) != "A" || seen_sequence) {
        return Unsupported("post_processor.single", "only one Sequence A is supported");
      }
      seen_sequence = true;
    } else if (piece.is_object() && piece.contains("SpecialToken") &&
               piece["SpecialToken"].is_object() && piece["SpecialToken"].contains("id") &&
               piece["SpecialToken"]["id"].is_string()) {
      const std::string& name = piece["SpecialToken"]["id"].get_ref<const std::string&>();
      if (!specials.contains(name) || !specials[name].is_object() ||
          !specials[name].contains("ids") || !specials[name]["ids"].is_array()) {
        return Invalid("post_processor.special_tokens", absl::StrCat("no ids for \"", name, "\""));
      }
      for (const json& id : specials[name]["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
          return Invalid("post_processor.special_tokens",
                         absl::StrCat("bad id for \"", name, "\""));
        }
        (seen_sequence ? impl->template_suffix : impl->template_prefix)
            .push_back(id.get<int32_t>());
      }
    } else {
      return Unsupported("post_processor.single",
                         absl::StrCat("piece ", piece.dump().substr(0, 60), " is not supported"));
    }
  }
  if (!seen_sequence) return Unsupported("post_processor.single", "template without Sequence A");
  impl->has_template = true;
  return absl::OkStatus();
}

absl::Status CheckDecoder(const json& spec) {
  if (TypeOf(spec) != "ByteLevel") {
    return Unsupported("decoder", absl::StrCat("type \"", spec.is_null() ? "null" : TypeOf(spec),
                                               "\" is not supported (only ByteLevel)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ss.str();
}

// tokenizer_config.json spells special tokens as a string or as an
// AddedToken object with "content".
std::optional<std::string> ConfigTokenName(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

struct AddedTokenSpec {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

absl::StatusOr<std::unique_ptr<Tokenizer::Impl>> Build(const json& root, const json& config) {
  auto impl = std::make_unique<Tokenizer::Impl>();
  if (!root.is_object()) return Invalid("top level", "expected an object");
  for (const char* key : {"truncation", "padding"}) {
    if (root.contains(key) && !root[key].is_null()) {
      return Unsupported(key, "must be null (truncation and padding are the caller's business)");
    }
  }
  ASSIGN_OR_RETURN(impl->nfc, ParseNormalizer(root.value("normalizer", json())));
  ASSIGN_OR_RETURN(impl->pre_tokenizer, PreTokenizer::Create(root.value("pre_tokenizer", json())));
  RETURN_IF_ERROR(CheckDecoder(root.value("decoder", json())));
  if (!root.contains("model")) return Invalid("model", "missing");
  ASSIGN_OR_RETURN(impl->model, BpeModel::Create(root["model"], impl->pre_tokenizer->byte_level()));

  // Added tokens get ids as tokenizers' AddedVocabulary::add_tokens assigns
  // them: the vocabulary's id when the content is in it, else the next free
  // id after the vocabulary. (Real files list exactly these ids.)
  std::vector<std::pair<AddedTokenSpec, int32_t>> added;
  const auto& vocab = impl->model->vocab();
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    if (!list.is_array()) return Invalid("added_tokens", "expected an array");
    std::optional<int64_t> max_added;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& t = list[i];
      const std::string where = absl::StrCat("added_tokens[", i, "]");
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string()) {
        return Invalid(where, "expected an object with a string \"content\"");
      }
      AddedTokenSpec spec;
      spec.content = t["content"].get<std::string>();
      if (!utf8::IsValid(spec.content)) return Invalid(where, "content is not valid UTF-8");
      for (auto [key, field] : {std::pair{"single_word", &spec.single_word},
                                {"lstrip", &spec.lstrip},
                                {"rstrip", &spec.rstrip},
                                {"normalized", &spec.normalized},
                                {"special", &spec.special}}) {
        if (!t.contains(key)) continue;
        if (!t[key].is_boolean()) return Invalid(where, absl::StrCat(key, " must be a boolean"));
        *field = t[key].get<bool>();
      }
      if (spec.content.empty() || impl->added_ids.contains(spec.content)) continue;
      int64_t id;
      if (auto it = vocab.find(spec.content); it != vocab.end()) {
        id = it->second;
      } else {
        const auto model_size = static_cast<int64_t>(vocab.size());
        id = !max_added
                 ? model_size
                 : (*max_added >= model_size || model_size == 0 ? *max_added + 1 : model_size);
      }
      if (id >= (1 << 24)) return Invalid(where, "id too large");
      max_added = std::max(max_added.value_or(id), id);
      impl->added_ids.emplace(spec.content, static_cast<int32_t>(id));
      added.emplace_back(std::move(spec), static_cast<int32_t>(id));
    }
  }

  // Decoded bytes per id, as the ByteLevel decoder: a token whose every
  // character is in the byte alphabet stands for those bytes, any other
  // token (e.g. <｜end▁of▁sentence｜>) for its own UTF-8.
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) max_id = std::max(max_id, id);
  for (const auto& [spec, id] : added) max_id = std::max(max_id, id);
  impl->vocab_size = max_id + 1;
  impl->token_bytes.resize(impl->vocab_size);
  impl->special.resize(impl->vocab_size, false);
  std::vector<bool> has_token(impl->vocab_size, false);
  auto set_token = [&](int32_t id, const std::string& token) {
    auto bytes = byte_level::TokenToBytes(token);
    impl->token_bytes[id] = bytes ? std::move(*bytes) : token;
    has_token[id] = true;
  };
  for (const auto& [spec, id] : added) set_token(id, spec.content);
  for (const auto& [token, id] : vocab) {
    if (!has_token[id]) set_token(id, token);
  }
  // tokenizers skips a token when its *content* is a special token's.
  absl::flat_hash_map<std::string, bool> special_contents;
  for (const auto& [spec, id] : added) {
    if (spec.special) special_contents[spec.content] = true;
  }
  if (!special_contents.empty()) {
    for (const auto& [spec, id] : added)
      impl->special[id] = special_contents.contains(spec.content);
    for (const auto& [token, id] : vocab) {
      if (special_contents.contains(token) && !impl->added_ids.contains(token))
        impl->special[id] = true;
    }
  }

  std::vector<AddedTokenMatcher::Token> raw, normalized;
  // Special tokens first, then the others, as tokenizers builds its tries.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [spec, id] : added) {
      if (spec.special != (pass == 0)) continue;
      AddedTokenMatcher::Token token{spec.content, id, spec.single_word, spec.lstrip, spec.rstrip};
      if (spec.normalized) {
        if (impl->nfc) {
          ASSIGN_OR_RETURN(token.content, NormalizeNfc(token.content));
        }
        normalized.push_back(std::move(token));
      } else {
        raw.push_back(std::move(token));
      }
    }
  }
  impl->raw_matcher = std::make_unique<AddedTokenMatcher>(std::move(raw));
  impl->normalized_matcher = std::make_unique<AddedTokenMatcher>(std::move(normalized));

  RETURN_IF_ERROR(ParsePostProcessor(root.value("post_processor", json()), impl.get()));

  if (!config.is_null()) {
    if (!config.is_object())
      return absl::InvalidArgumentError("tokenizer_config.json: expected an object");
    auto resolve = [&](const char* key, std::optional<int32_t>* out) -> absl::Status {
      std::optional<std::string> name = ConfigTokenName(config, key);
      if (!name) return absl::OkStatus();
      if (auto it = impl->added_ids.find(*name); it != impl->added_ids.end()) {
        *out = it->second;
      } else if (auto it2 = vocab.find(*name); it2 != vocab.end()) {
        *out = it2->second;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", key, " \"", *name,
                                                       "\" is not a token of tokenizer.json"));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(resolve("bos_token", &impl->bos_id));
    RETURN_IF_ERROR(resolve("eos_token", &impl->eos_id));
    if (config.contains("add_bos_token") && !config["add_bos_token"].is_null()) {
      if (!config["add_bos_token"].is_boolean()) {
        return absl::InvalidArgumentError("tokenizer_config.json: add_bos_token must be a boolean");
      }
      impl->add_bos = config["add_bos_token"].get<bool>();
    }
    if (impl->add_bos && !impl->bos_id) {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: add_bos_token is true but bos_token is not set");
    }
  }
  return impl;
}

}  // namespace

absl::Status Tokenizer::Impl::EncodeText(std::string_view text, size_t max_ids,
                                         std::vector<int32_t>* ids) const {
  if (text.empty()) return absl::OkStatus();
  if (raw_matcher->empty()) return EncodeNormalized(text, max_ids, ids);
  std::vector<AddedTokenMatcher::Piece> pieces;
  raw_matcher->Split(text, &pieces);
  for (const auto& p : pieces) {
    if (ids->size() > max_ids) break;
    if (p.id >= 0) {
      ids->push_back(p.id);
    } else if (p.end > p.begin) {
      RETURN_IF_ERROR(EncodeNormalized(text.substr(p.begin, p.end - p.begin), max_ids, ids));
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::EncodeNormalized(std::string_view segment, size_t max_ids,
                                               std::vector<int32_t>* ids) const {
  std::string normalized_storage;
  std::string_view normalized = segment;
  if (nfc) {
    ASSIGN_OR_RETURN(normalized_storage, NormalizeNfc(segment));
    normalized = normalized_storage;
  }
  if (normalized_matcher->empty()) {
    EncodeWords(normalized, max_ids, ids);
    return absl::OkStatus();
  }
  std::vector<AddedTokenMatcher::Piece> pieces;
  normalized_matcher->Split(normalized, &pieces);
  for (const auto& p : pieces) {
    if (ids->size() > max_ids) break;
    if (p.id >= 0) {
      ids->push_back(p.id);
    } else if (p.end > p.begin) {
      EncodeWords(normalized.substr(p.begin, p.end - p.begin), max_ids, ids);
    }
  }
  return absl::OkStatus();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json) {
  json root = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("tokenizer.json: not valid JSON");
  json config;
  if (!tokenizer_config_json.empty()) {
    config = json::parse(tokenizer_config_json, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded())
      return absl::InvalidArgumentError("tokenizer_config.json: not valid JSON");
  }
  try {
    ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Build(root, config));
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  } catch (const json::exception& e) {
    // A field of an unexpected type that the checks above did not foresee.
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(model_dir + "/tokenizer.json"));
  std::string config_json;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  if (std::ifstream(config_path).good()) {
    ASSIGN_OR_RETURN(config_json, ReadFile(config_path));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = FromJson(tokenizer_json, config_json);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(model_dir, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens,
                                                       size_t max_ids) const {
  if (!utf8::IsValid(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(std::min(text.size() / 3 + 4, max_ids == SIZE_MAX ? max_ids : max_ids + 1));
  if (add_special_tokens) {
    if (impl_->has_template) {
      ids = impl_->template_prefix;
    } else if (impl_->add_bos) {
      ids.push_back(*impl_->bos_id);
    }
  }
  RETURN_IF_ERROR(impl_->EncodeText(text, max_ids, &ids));
  if (add_special_tokens && impl_->has_template) {
    ids.insert(ids.end(), impl_->template_suffix.begin(), impl_->template_suffix.end());
  }
  // BPE of the last word may have gone past the limit by more than one.
  if (ids.size() > max_ids) ids.resize(max_ids + 1);
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= impl_->vocab_size) continue;
    if (skip_special_tokens && impl_->special[id]) continue;
    bytes += impl_->token_bytes[id];
  }
  std::string text;
  text.reserve(bytes.size());
  utf8::AppendLossy(bytes, /*final=*/true, &text);
  return text;
}

int Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->special[id];
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto it = impl_->added_ids.find(AbslView(token)); it != impl_->added_ids.end())
    return it->second;
  const auto& vocab = impl_->model->vocab();
  if (auto it = vocab.find(AbslView(token)); it != vocab.end()) return it->second;
  return std::nullopt;
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size) return {};
  return impl_->token_bytes[id];
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamingDetokenizer::Add(int32_t id) {
  if (skip_special_tokens_ && tokenizer_.IsSpecial(id)) return {};
  const std::string_view bytes = tokenizer_.TokenBytes(id);
  if (bytes.empty()) return {};
  pending_.append(bytes);
  std::string delta;
  const size_t used = utf8::AppendLossy(pending_, /*final=*/false, &delta);
  pending_.erase(0, used);
  return delta;
}

std::string StreamingDetokenizer::Flush() {
  std::string delta;
  utf8::AppendLossy(pending_, /*final=*/true, &delta);
  pending_.clear();
  return delta;
}

}  // namespace moegraph

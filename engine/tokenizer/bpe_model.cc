// BPE as `tokenizers`' models/bpe does it, keyed on ids: merges map an id
// pair to (rank, merged id); the merge loop pops the lowest (rank, position)
// from a heap and skips entries that went stale.
#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <functional>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace moegraph {
namespace {

// Ids above this are refused so a hostile file cannot make us allocate
// gigabytes for the id -> token table.
constexpr int64_t kMaxId = 1 << 24;

absl::Status ParseMerge(const nlohmann::json& m, size_t index, std::string* a, std::string* b) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    *a = m[0].get<std::string>();
    *b = m[1].get<std::string>();
    return absl::OkStatus();
  }
  if (m.is_string()) {
    const std::string& s = m.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space != std::string::npos && s.find(' ', space + 1) == std::string::npos) {
      *a = s.substr(0, space);
      *b = s.substr(space + 1);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("model.merges[", index,
                                                 "]: expected \"a b\" or [\"a\", \"b\"], got ",
                                                 m.dump().substr(0, 80)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const nlohmann::json& model,
                                                           bool byte_level) {
  if (!model.is_object()) return absl::InvalidArgumentError("model: expected an object");
  if (model.contains("type") && model["type"] != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("model: type ", model["type"].dump(), " is not supported (only BPE)"));
  }
  auto is_unset_string = [&](const char* key) {
    return !model.contains(key) || model[key].is_null() ||
           (model[key].is_string() && model[key].get_ref<const std::string&>().empty());
  };
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0)) {
    return absl::UnimplementedError("model: BPE dropout is not supported");
  }
  if (!is_unset_string("continuing_subword_prefix")) {
    return absl::UnimplementedError("model: BPE continuing_subword_prefix is not supported");
  }
  if (!is_unset_string("end_of_word_suffix")) {
    return absl::UnimplementedError("model: BPE end_of_word_suffix is not supported");
  }
  auto flag = [&](const char* key) -> absl::StatusOr<bool> {
    if (!model.contains(key) || model[key].is_null()) return false;
    if (!model[key].is_boolean())
      return absl::InvalidArgumentError(absl::StrCat("model.", key, ": expected a boolean"));
    return model[key].get<bool>();
  };
  auto model_ptr = std::unique_ptr<BpeModel>(new BpeModel());
  BpeModel& m = *model_ptr;
  m.byte_level_ = byte_level;
  absl::StatusOr<bool> byte_fallback = flag("byte_fallback");
  if (!byte_fallback.ok()) return byte_fallback.status();
  if (*byte_fallback) return absl::UnimplementedError("model: BPE byte_fallback is not supported");
  absl::StatusOr<bool> ignore_merges = flag("ignore_merges");
  if (!ignore_merges.ok()) return ignore_merges.status();
  m.ignore_merges_ = *ignore_merges;
  absl::StatusOr<bool> fuse_unk = flag("fuse_unk");
  if (!fuse_unk.ok()) return fuse_unk.status();
  m.fuse_unk_ = *fuse_unk;

  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError("model.vocab: expected an object of token -> id");
  }
  const nlohmann::json& vocab = model["vocab"];
  m.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= kMaxId) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.vocab[\"", it.key(), "\"]: id must be an integer in [0, ", kMaxId, ")"));
    }
    if (!utf8::IsValid(it.key()))
      return absl::InvalidArgumentError("model.vocab: a token is not valid UTF-8");
    m.vocab_.emplace(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
  }

  if (!is_unset_string("unk_token")) {
    if (!model["unk_token"].is_string())
      return absl::InvalidArgumentError("model.unk_token: expected a string");
    auto it = m.vocab_.find(model["unk_token"].get_ref<const std::string&>());
    if (it == m.vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.unk_token ", model["unk_token"].dump(), " is not in the vocabulary"));
    }
    m.unk_id_ = it->second;
  }

  const nlohmann::json empty = nlohmann::json::array();
  const nlohmann::json& merges = model.contains("merges") ? model["merges"] : empty;
  if (!merges.is_array()) return absl::InvalidArgumentError("model.merges: expected an array");
  m.merges_.reserve(merges.size());
  std::string a, b;
  for (size_t i = 0; i < merges.size(); ++i) {
    if (absl::Status s = ParseMerge(merges[i], i, &a, &b); !s.ok()) return s;
    auto ia = m.vocab_.find(a), ib = m.vocab_.find(b), inew = m.vocab_.find(a + b);
    for (const auto* missing : {&ia, &ib, &inew}) {
      if (*missing == m.vocab_.end()) {
        const std::string& tok = missing == &ia ? a : missing == &ib ? b : a + b;
        return absl::InvalidArgumentError(
            absl::StrCat("model.merges[", i, "]: token \"", tok, "\" is not in the vocabulary"));
      }
    }
    // A repeated pair keeps its last rank, as a Rust HashMap collect does.
    m.merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(i), inew->second};
  }

  m.byte_ids_.fill(-1);
  if (byte_level) {
    for (int byte = 0; byte < 256; ++byte) {
      auto it = m.vocab_.find(byte_level::ByteToUtf8(static_cast<uint8_t>(byte)));
      if (it != m.vocab_.end()) m.byte_ids_[byte] = it->second;
    }
  }
  if (m.ignore_merges_) {
    for (const auto& [token, id] : m.vocab_) {
      if (!byte_level) {
        m.word_vocab_.emplace(token, id);
      } else if (auto bytes = byte_level::TokenToBytes(token)) {
        m.word_vocab_.emplace(std::move(*bytes), id);
      }
    }
  }
  return model_ptr;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const {
  symbols->clear();
  // Pending run of unknown characters: tokenizers emits one unk per character,
  // or one per run with fuse_unk; without an unk token they vanish.
  bool pending_unk = false;
  auto flush_unk = [&] {
    if (pending_unk) symbols->push_back(*unk_id_);
    pending_unk = false;
  };
  auto add = [&](int32_t id) {
    if (id >= 0) {
      flush_unk();
      symbols->push_back(id);
    } else if (unk_id_) {
      if (!fuse_unk_) flush_unk();
      pending_unk = true;
    }
  };
  if (byte_level_) {
    for (char c : word) add(byte_ids_[static_cast<unsigned char>(c)]);
  } else {
    size_t i = 0;
    while (i < word.size()) {
      const size_t n =
          std::min(utf8::SequenceLength(static_cast<unsigned char>(word[i])), word.size() - i);
      auto it = vocab_.find(AbslView(word.substr(i, n)));
      add(it == vocab_.end() ? -1 : it->second);
      i += n;
    }
  }
  flush_unk();
}

void BpeModel::MergeAll(std::vector<int32_t>* symbols_io) const {
  std::vector<int32_t>& ids = *symbols_io;
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  struct Link {
    int32_t prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Link> links;
  thread_local std::vector<Candidate> heap;
  links.resize(n);
  for (int i = 0; i < n; ++i) links[i] = {i - 1, i + 1 < n ? i + 1 : -1, true};
  heap.clear();
  const auto later = std::greater<Candidate>();  // min-heap on (rank, pos)
  auto push = [&](const MergeTarget* t, int32_t pos) {
    heap.push_back({t->rank, pos, t->new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int i = 0; i + 1 < n; ++i) {
    if (const MergeTarget* t = FindMerge(ids[i], ids[i + 1])) push(t, i);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Link& cur = links[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const int right = cur.next;
    // Stale when the pair at this position no longer merges into new_id.
    const MergeTarget* now = FindMerge(ids[top.pos], ids[right]);
    if (now == nullptr || now->new_id != top.new_id) continue;
    ids[top.pos] = top.new_id;
    links[right].alive = false;
    cur.next = links[right].next;
    if (cur.next >= 0) links[cur.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeTarget* t = FindMerge(ids[cur.prev], ids[top.pos])) push(t, cur.prev);
    }
    if (cur.next >= 0) {
      if (const MergeTarget* t = FindMerge(ids[top.pos], ids[cur.next])) push(t, top.pos);
    }
  }
  int out = 0;
  for (int i = 0; i >= 0 && i < n; i = links[i].next) ids[out++] = ids[i];
  ids.resize(out);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (byte_level_ && word.size() == 1 && byte_ids_[static_cast<unsigned char>(word[0])] >= 0) {
    ids->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = word_vocab_.find(AbslView(word));
    if (it != word_vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  CacheShard* shard = nullptr;
  if (cacheable) {
    shard = &cache_[absl::Hash<std::string_view>{}(word) % kCacheShards];
    std::lock_guard<std::mutex> lock(shard->mu);
    auto it = shard->words.find(AbslView(word));
    if (it != shard->words.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  InitialSymbols(word, &symbols);
  MergeAll(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard->mu);
    if (shard->words.size() >= kCacheShardCapacity) shard->words.clear();
    shard->words.emplace(word, symbols);
  }
}

}  // namespace moegraph

// TextCodec over engine/tokenizer's Tokenizer and StreamingDetokenizer.
#include "server/text/text_codec.h"

#include "engine/tokenizer/tokenizer.h"

namespace moegraph {

namespace {

class TokenizerDetokenizerStream final : public DetokenizerStream {
 public:
  TokenizerDetokenizerStream(const Tokenizer& tokenizer, bool skip_special_tokens)
      : stream_(tokenizer, skip_special_tokens) {}
  std::string Add(int32_t id) override { return stream_.Add(id); }
  std::string Flush() override { return stream_.Flush(); }

 private:
  StreamingDetokenizer stream_;
};

class TokenizerCodec final : public TextCodec {
 public:
  explicit TokenizerCodec(std::unique_ptr<Tokenizer> tokenizer)
      : tokenizer_(std::move(tokenizer)) {}

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos,
                                              size_t max_ids) const override {
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer_->Encode(text, /*add_special_tokens=*/false, max_ids);
    if (!ids.ok()) return ids.status();
    std::optional<int32_t> bos = tokenizer_->bos_id();
    if (add_bos && bos.has_value() && (ids->empty() || ids->front() != *bos)) {
      ids->insert(ids->begin(), *bos);
    }
    return ids;
  }
  std::unique_ptr<DetokenizerStream> NewDetokenizer(bool skip_special_tokens) const override {
    return std::make_unique<TokenizerDetokenizerStream>(*tokenizer_, skip_special_tokens);
  }
  bool default_add_bos() const override { return tokenizer_->add_bos(); }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TextCodec>> LoadTokenizerCodec(const std::string& model_dir) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  return std::unique_ptr<TextCodec>(std::make_unique<TokenizerCodec>(std::move(*tokenizer)));
}

}  // namespace moegraph

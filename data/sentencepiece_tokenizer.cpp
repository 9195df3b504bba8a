#include "data/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <tuple>

#include "core/error.h"

namespace tq::data {

SentencePieceTokenizer::SentencePieceTokenizer(std::string path)
    : path_(std::move(path)), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  std::error_code ec;
  TQ_CHECK(std::filesystem::is_regular_file(path_, ec),
           "[sentencepiece] cannot load {}: no such file", path_);
  const auto status = sp_->Load(path_);
  TQ_CHECK(status.ok(),
           "[sentencepiece] cannot load {}: {} — hint: is it a SentencePiece model (ModelProto)?",
           path_, status.ToString());
  vocab_size_ = static_cast<int32_t>(sp_->GetPieceSize());
  TQ_CHECK(vocab_size_ > 0, "[sentencepiece] {}: empty vocabulary", path_);
  bos_id_ = static_cast<int32_t>(sp_->bos_id());
  eos_id_ = static_cast<int32_t>(sp_->eos_id());
  pad_id_ = static_cast<int32_t>(sp_->pad_id());
  unk_id_ = static_cast<int32_t>(sp_->unk_id());
  // The library reports disabled ids as -1 already; out-of-range ids would be a corrupt spec.
  for (int32_t* id : {&bos_id_, &eos_id_, &pad_id_, &unk_id_}) {
    if (*id >= vocab_size_) *id = -1;
  }
  // See Note [SentencePiece chunking]: exact only if no piece spans a word boundary and each
  // chunk gets the dummy "▁" prefix that the space it replaces would have produced.
  const std::string kSpace = "\xE2\x96\x81";  // U+2581
  bool spans = false;
  for (int i = 0; i < vocab_size_ && !spans; ++i) {
    const std::string& p = sp_->IdToPiece(i);
    size_t k = 0;
    while (k < p.size() && p.compare(k, 3, kSpace) == 0) k += 3;  // leading ▁ run is fine
    spans = p.find(kSpace, k) != std::string::npos;
  }
  auto enc = [&](std::string_view t) {
    std::vector<int> v;
    sp_->Encode(t, &v).IgnoreError();
    return v;
  };
  bool additive = !spans;
  for (const auto& [whole, a, b] :
       {std::tuple<const char*, const char*, const char*>{"hello world", "hello", "world"},
        {"a b", "a", "b"},
        {"x.y z", "x.y", "z"}}) {
    std::vector<int> joined = enc(a);
    const std::vector<int> tail = enc(b);
    joined.insert(joined.end(), tail.begin(), tail.end());
    additive = additive && joined == enc(whole);
  }
  chunked_ = additive;
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

// Note [SentencePiece chunking]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// libsentencepiece's BPE encoder slows down on long inputs (1 MB: ~1 MB/s, 25 MB: ~0.4 MB/s;
// 4 KB pieces: several MB/s). Long texts are therefore cut at a single ASCII space between two
// printable ASCII characters; the space is dropped and the next chunk's dummy-prefix "▁" stands
// in for it. This is exact when no vocabulary piece holds "▁" after a non-"▁" character (so no
// piece crosses the cut) and "a b" encodes as "a" followed by "b" (checked at load; otherwise
// the text is encoded in one call).
void SentencePieceTokenizer::encode_ids(std::string_view text, std::vector<int32_t>& out) const {
  constexpr size_t kChunk = 4096;
  auto printable = [](char c) { return c > ' ' && c < 0x7F; };
  std::vector<int> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.size();
    if (chunked_ && text.size() - start > 2 * kChunk) {
      for (size_t i = start + kChunk; i + 1 < text.size(); ++i) {
        if (text[i] == ' ' && printable(text[i - 1]) && printable(text[i + 1])) {
          end = i;
          break;
        }
      }
    }
    const auto status = sp_->Encode(text.substr(start, end - start), &ids);
    TQ_CHECK(status.ok(), "[sentencepiece] {}: encode failed: {}", path_, status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
    start = end == text.size() ? end : end + 1;
  }
}

std::vector<int32_t> SentencePieceTokenizer::encode_whole(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  TQ_CHECK(status.ok(), "[sentencepiece] {}: encode failed: {}", path_, status.ToString());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> v(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    TQ_CHECK(ids[i] >= 0 && ids[i] < vocab_size_,
             "[sentencepiece] {}: cannot decode id {} at position {} (vocab size {})", path_,
             ids[i], i, vocab_size_);
    v[i] = ids[i];
  }
  std::string text;
  const auto status = sp_->Decode(v, &text);
  TQ_CHECK(status.ok(), "[sentencepiece] {}: decode failed: {}", path_, status.ToString());
  return text;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
  TQ_CHECK(id >= 0 && id < vocab_size_, "[sentencepiece] {}: id {} out of range (vocab size {})",
           path_, id, vocab_size_);
  return sp_->IdToPiece(id);
}

int32_t SentencePieceTokenizer::piece_to_id(std::string_view piece) const {
  const int id = sp_->PieceToId(piece);
  // PieceToId maps unknown pieces to unk_id; tell them apart from the unk piece itself.
  if (id < 0) return -1;
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != piece) return -1;
  return static_cast<int32_t>(id);
}

}  // namespace tq::data

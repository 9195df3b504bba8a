#include "data/document_stream.h"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/rng.h"

namespace tq::data {

namespace {

constexpr uint64_t kShardChunkTokens = 65536;  // document length in shards without BOS/EOS

}  // namespace

Split parse_split(const std::string& name, const std::string& context) {
  if (name == "all") return Split::all;
  if (name == "train") return Split::train;
  if (name == "valid") return Split::valid;
  TQ_THROW("[{}] field 'split': expected all, train or valid, got '{}'", context, name);
}

double split_hash(const std::string& file, int64_t index) {
  const uint64_t h = fnv1a64(file.data(), file.size());
  const uint64_t x = mix64(h ^ mix64(static_cast<uint64_t>(index)));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

DocumentStream::DocumentStream(std::vector<std::string> files,
                               std::shared_ptr<const Tokenizer> tokenizer, StreamOptions opts)
    : files_(std::move(files)), tokenizer_(std::move(tokenizer)), opts_(std::move(opts)) {
  for (const std::string& f : files_) {
    const SourceKind kind = source_kind_of(f);
    TQ_CHECK(kind == SourceKind::shard || tokenizer_ != nullptr,
             "[{}] {} is text but no tokenizer was given (only .tqshard sources need none)",
             opts_.context, f);
    basenames_.push_back(std::filesystem::path(f).filename().string());
  }
}

DocumentStream::~DocumentStream() = default;

bool DocumentStream::keep(int64_t file, int64_t index) const {
  if (opts_.split == Split::all) return true;
  const bool valid = split_hash(basenames_[static_cast<size_t>(file)], index) < opts_.valid_fraction;
  return opts_.split == Split::valid ? valid : !valid;
}

void DocumentStream::report_bad(const std::string& message) {
  ++bad_records_;
  TQ_CHECK(!opts_.stop_on_bad_data, "[{}] bad data: {} (on_bad_data: stop)", opts_.context,
           message);
  if (bad_records_ <= 10) {
    spdlog::warn("[{}] skipping bad record #{}: {}", opts_.context, bad_records_, message);
  } else if (bad_records_ % 1000 == 0) {
    spdlog::warn("[{}] {} bad records skipped so far", opts_.context, bad_records_);
  }
}

void DocumentStream::open_file(int64_t index) {
  text_.reset();
  shard_.reset();
  shard_pos_ = 0;
  shard_index_ = 0;
  file_open_ = true;
  const std::string& path = files_[static_cast<size_t>(index)];
  const SourceKind kind = source_kind_of(path);
  if (kind != SourceKind::shard) {
    text_ = std::make_unique<TextFileReader>(path, kind, opts_.jsonl_field, opts_.txt_document);
    return;
  }
  if (const auto it = shard_cache_.find(index); it != shard_cache_.end()) {
    shard_ = it->second;
    return;
  }
  std::shared_ptr<const ShardFile> shard;
  try {
    shard = ShardFile::open(path);
  } catch (const Error& e) {
    report_bad(e.message());
    return;
  }
  const int64_t vocab = shard->header().vocab_size;
  if (tokenizer_ != nullptr && vocab != tokenizer_->vocab_size()) {
    report_bad(fmt::format("{}: shard vocab size {} differs from the tokenizer's {} ({})", path,
                           vocab, tokenizer_->vocab_size(), tokenizer_->path()));
    return;
  }
  if (tokenizer_ == nullptr) {
    if (shard_vocab_ < 0) shard_vocab_ = vocab;
    if (vocab != shard_vocab_) {
      report_bad(fmt::format("{}: shard vocab size {} differs from the first shard's {}", path,
                             vocab, shard_vocab_));
      return;
    }
  }
  shard_cache_[index] = shard;
  shard_ = std::move(shard);
}

void DocumentStream::seek(const DocPos& pos) {
  TQ_CHECK(pos.file >= 0 && pos.file <= static_cast<int64_t>(files_.size()),
           "[{}] resume position: file index {} outside [0, {}]", opts_.context, pos.file,
           files_.size());
  file_ = pos.file;
  text_.reset();
  shard_.reset();
  file_open_ = false;
  if (file_ == static_cast<int64_t>(files_.size())) return;
  open_file(file_);
  if (text_) {
    text_->seek(pos.offset, pos.line, pos.index);
  } else if (shard_) {
    TQ_CHECK(pos.offset <= shard_->num_tokens(),
             "[{}] resume position: token {} beyond the end of {} ({} tokens)", opts_.context,
             pos.offset, shard_->path(), shard_->num_tokens());
    shard_pos_ = pos.offset;
    shard_index_ = pos.index;
  }
}

bool DocumentStream::next(Document& doc) {
  const int64_t n = static_cast<int64_t>(files_.size());
  while (file_ < n) {
    if (!file_open_) open_file(file_);
    if (text_) {
      while (text_->next(rec_)) {
        if (rec_.bad) {
          report_bad(rec_.error);
          continue;
        }
        if (rec_.text.empty() || !keep(file_, rec_.index)) continue;
        doc.pos = DocPos{file_, rec_.offset, rec_.line, rec_.index};
        doc.tokens = tokenizer_->encode(rec_.text, tokenizer_->bos_id() >= 0,
                                        tokenizer_->eos_id() >= 0);
        if (doc.tokens.empty()) continue;
        ++documents_;
        return true;
      }
    } else if (shard_) {
      const uint32_t* t = shard_->tokens();
      const uint64_t count = shard_->num_tokens();
      const int64_t bos = shard_->header().bos_id;
      const int64_t eos = shard_->header().eos_id;
      while (shard_pos_ < count) {
        const uint64_t start = shard_pos_;
        uint64_t end = start;
        if (eos >= 0) {
          while (end < count && t[end] != static_cast<uint32_t>(eos)) ++end;
          end = std::min(end + 1, count);  // the EOS belongs to its document
        } else if (bos >= 0) {
          end = start + 1;
          while (end < count && t[end] != static_cast<uint32_t>(bos)) ++end;
        } else {
          end = std::min(start + kShardChunkTokens, count);
        }
        const int64_t index = shard_index_++;
        shard_pos_ = end;
        if (!keep(file_, index)) continue;
        doc.pos = DocPos{file_, start, 0, index};
        doc.tokens.assign(t + start, t + end);
        ++documents_;
        return true;
      }
    }
    ++file_;
    file_open_ = false;
    text_.reset();
    shard_.reset();
  }
  return false;
}

}  // namespace tq::data

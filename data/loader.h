// TokenLoader: the training/validation batches of a run — documents tokenized on a background
// thread, joined into one stream, cut into seq_len+1 windows, block-shuffled, strided over MPI
// ranks — with a JSON cursor that resumes exactly. The full contract is in docs/data.md.
//
//   LoaderOptions o;
//   o.sources = {"data-cache/corpora/brown/train/*.txt"};
//   o.seq_len = 256;
//   TokenLoader loader(tok, o, "data.train");
//   Tensor ids, targets;                        // i32 [B, seq_len] each
//   loader.next_batch(8, ids, targets);
//   Json c = loader.cursor();                   // into trainer_state.json
//   ...
//   TokenLoader resumed(tok, o, "data.train");
//   resumed.restore(c);                         // the next batch is the one that would have come
//
// Packing: each document is [BOS] + encode(doc) + [EOS]; the concatenated stream of an epoch gives
// window k = tokens [k*seq_len, k*seq_len + seq_len] (seq_len+1 tokens; consecutive windows share
// one token); ids = window[0, seq_len), targets = window[1, seq_len]. A final partial window is
// dropped. Shuffle: windows are grouped into blocks of shuffle_block consecutive windows; each block
// is permuted by an Rng seeded from (seed, epoch, block) and emitted; the last partial block is
// permuted too; then the next epoch starts. Global window g (counted across epochs, post-shuffle)
// goes to rank g % world.
//
// Threading: one producer std::thread fills a bounded queue of `prefetch` windows. next_batch,
// cursor, restore and stats are meant for one consumer thread. Producer exceptions are re-thrown by
// next_batch (the windows of a failed batch stay queued; the cursor does not move).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"
#include "data/document_stream.h"
#include "data/tokenizer.h"

namespace tq::data {

struct LoaderOptions {
  std::vector<std::string> sources;   // glob patterns (.txt, .jsonl, .tqshard)
  std::string jsonl_field = "text";
  int64_t seq_len = 256;              // windows hold seq_len + 1 tokens
  bool shuffle = true;
  int64_t shuffle_block = 1024;       // windows per shuffle block
  uint64_t seed = 42;
  int rank = 0, world = 1;            // this loader yields global windows k with k % world == rank
  std::string on_bad_data = "skip";   // skip | stop
  int64_t prefetch = 4096;            // windows prepared ahead on the background thread
  double valid_fraction = 0.0;        // documents hashed below this go to the validation split
  std::string split = "all";          // all | train | valid
  std::string txt_document = "paragraph";  // paragraph | line | file: what a .txt document is
  void validate(const std::string& context) const;  // tq::Error naming the field
};

class TokenLoader {
 public:
  // tokenizer may be null only when every source is a shard. context names the loader in errors.
  TokenLoader(std::shared_ptr<const Tokenizer> tokenizer, LoaderOptions opts,
              std::string context = "data");
  ~TokenLoader();
  TokenLoader(const TokenLoader&) = delete;
  TokenLoader& operator=(const TokenLoader&) = delete;

  // The next B windows of this rank: ids, targets i32 [B, seq_len] (freshly allocated each call).
  void next_batch(int64_t B, Tensor& ids, Tensor& targets);
  Json cursor() const;                // resumes right after the last window returned by next_batch
  void restore(const Json& cursor);   // the next next_batch continues exactly from there
  struct Stats {
    int64_t epoch = 0, windows = 0, tokens = 0, documents = 0, bad_records = 0;
  };
  // epoch: of the last window returned; windows/tokens: returned by next_batch (tokens = windows *
  // seq_len); documents/bad_records: read/skipped by the producer so far (it runs ahead, and every
  // epoch reads the data again).
  Stats stats() const;
  const LoaderOptions& options() const;
  // The expanded, sorted source files.
  const std::vector<std::string>& files() const { return files_; }

  // Where a shuffle block starts: everything the producer needs to regenerate it.
  struct BlockStart {
    int64_t epoch = 0;
    int64_t block = 0;         // block index within the epoch
    int64_t global = 0;        // global index of the block's first window (across epochs)
    DocPos pos;                // the document holding the block's first token
    int64_t doc_token = 0;     // that token's index within the document's tokens
  };

 private:
  struct Item {
    std::vector<int32_t> window;              // [seq_len + 1]
    std::shared_ptr<const BlockStart> start;  // cursor after this item: start + skip
    int64_t skip = 0;
    int64_t epoch = 0;
  };

  void start_producer(BlockStart start, int64_t skip);
  void stop_producer();
  void produce(BlockStart start, int64_t skip);
  bool push(Item&& item);  // false when stopping
  uint64_t fingerprint() const;

  std::shared_ptr<const Tokenizer> tokenizer_;
  LoaderOptions opts_;
  std::string context_;
  std::vector<std::string> files_;
  StreamOptions stream_opts_;

  // Consumer-side position (the cursor).
  std::shared_ptr<const BlockStart> cur_start_;
  int64_t cur_skip_ = 0;
  Stats stats_;

  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Item> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  int64_t producer_documents_ = 0, producer_bad_ = 0;  // guarded by mu_
  std::thread thread_;
};

}  // namespace tq::data

#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace tq::data {

namespace {

constexpr int64_t kCursorVersion = 1;

}  // namespace

void LoaderOptions::validate(const std::string& context) const {
  TQ_CHECK(!sources.empty(), "[{}] field 'sources': at least one glob pattern is needed", context);
  TQ_CHECK(!jsonl_field.empty(), "[{}] field 'jsonl_field': must not be empty", context);
  TQ_CHECK(seq_len >= 1, "[{}] field 'seq_len': must be >= 1, got {}", context, seq_len);
  TQ_CHECK(shuffle_block >= 1, "[{}] field 'shuffle_block': must be >= 1, got {}", context,
           shuffle_block);
  TQ_CHECK(world >= 1, "[{}] field 'world': must be >= 1, got {}", context, world);
  TQ_CHECK(rank >= 0 && rank < world, "[{}] field 'rank': must be in [0, world={}), got {}",
           context, world, rank);
  TQ_CHECK(on_bad_data == "skip" || on_bad_data == "stop",
           "[{}] field 'on_bad_data': expected skip or stop, got '{}'", context, on_bad_data);
  TQ_CHECK(prefetch >= 1, "[{}] field 'prefetch': must be >= 1, got {}", context, prefetch);
  TQ_CHECK(valid_fraction >= 0.0 && valid_fraction <= 1.0,
           "[{}] field 'valid_fraction': must be in [0, 1], got {}", context, valid_fraction);
  const Split s = parse_split(split, context);
  TQ_CHECK(!(s == Split::valid && valid_fraction <= 0.0),
           "[{}] field 'split': 'valid' with valid_fraction 0 selects no document", context);
  TQ_CHECK(!(s == Split::train && valid_fraction >= 1.0),
           "[{}] field 'split': 'train' with valid_fraction 1 selects no document", context);
  parse_txt_document(txt_document, context);
}

TokenLoader::TokenLoader(std::shared_ptr<const Tokenizer> tokenizer, LoaderOptions opts,
                         std::string context)
    : tokenizer_(std::move(tokenizer)), opts_(std::move(opts)), context_(std::move(context)) {
  opts_.validate(context_);
  files_ = expand_sources(opts_.sources, context_);
  stream_opts_.jsonl_field = opts_.jsonl_field;
  stream_opts_.txt_document = parse_txt_document(opts_.txt_document, context_);
  stream_opts_.stop_on_bad_data = opts_.on_bad_data == "stop";
  stream_opts_.valid_fraction = opts_.valid_fraction;
  stream_opts_.split = parse_split(opts_.split, context_);
  stream_opts_.context = context_;
  // Checks the tokenizer/text combination now rather than on the thread.
  DocumentStream check(files_, tokenizer_, stream_opts_);
  cur_start_ = std::make_shared<const BlockStart>();
  start_producer(BlockStart{}, 0);
}

TokenLoader::~TokenLoader() { stop_producer(); }

const LoaderOptions& TokenLoader::options() const { return opts_; }

void TokenLoader::start_producer(BlockStart start, int64_t skip) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    error_ = nullptr;
    queue_.clear();
  }
  thread_ = std::thread([this, start, skip] {
    try {
      produce(start, skip);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    not_empty_.notify_all();
  });
}

void TokenLoader::stop_producer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  not_full_.notify_all();
  not_empty_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool TokenLoader::push(Item&& item) {
  std::unique_lock<std::mutex> lock(mu_);
  not_full_.wait(lock, [&] {
    return stop_ || static_cast<int64_t>(queue_.size()) < opts_.prefetch;
  });
  if (stop_) return false;
  queue_.push_back(std::move(item));
  lock.unlock();
  not_empty_.notify_one();
  return true;
}

void TokenLoader::produce(BlockStart start, int64_t skip) {
  const int64_t S = opts_.seq_len;
  const int64_t K = opts_.shuffle_block;
  const int64_t world = opts_.world;
  const int64_t rank = opts_.rank;
  DocumentStream stream(files_, tokenizer_, stream_opts_);
  stream.seek(start.pos);

  std::deque<Document> live;  // documents holding the not yet consumed tokens
  int64_t off = start.doc_token;  // index of the next token within live.front()
  int64_t avail = 0;              // tokens in live from off on
  int64_t docs_seen = 0, bad_seen = 0;
  auto sync_stats = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    producer_documents_ += stream.documents() - docs_seen;
    producer_bad_ += stream.bad_records() - bad_seen;
    docs_seen = stream.documents();
    bad_seen = stream.bad_records();
  };
  auto ensure = [&](int64_t need) {
    while (avail < need) {
      Document d;
      if (!stream.next(d)) return false;
      avail += static_cast<int64_t>(d.tokens.size());
      live.push_back(std::move(d));
    }
    return true;
  };
  // The first document must be the one the cursor names, and hold the cursor's token (the
  // default position, the very beginning, names no particular document).
  if (!(start.pos == DocPos{}) || off > 0) {
    ensure(1);
    TQ_CHECK(!live.empty() && live.front().pos == start.pos &&
                 off < static_cast<int64_t>(live.front().tokens.size()),
             "[{}] cursor: no document holding token {} starts at file {} ({}) offset {} line {} — "
             "the sources changed since the cursor was taken",
             context_, off, start.pos.file,
             start.pos.file < static_cast<int64_t>(files_.size())
                 ? files_[static_cast<size_t>(start.pos.file)]
                 : std::string("end"),
             start.pos.offset, start.pos.line);
    avail -= off;
  }

  int64_t epoch = start.epoch, block = start.block, global = start.global;
  std::deque<std::shared_ptr<const BlockStart>> history;
  std::vector<std::vector<int32_t>> windows;
  std::vector<int64_t> perm;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    ensure(1);
    auto st = std::make_shared<BlockStart>();
    st->epoch = epoch;
    st->block = block;
    st->global = global;
    if (!live.empty()) st->pos = live.front().pos;
    st->doc_token = off;
    windows.clear();
    while (static_cast<int64_t>(windows.size()) < K && ensure(S + 1)) {
      std::vector<int32_t> w(static_cast<size_t>(S + 1));
      int64_t filled = 0, doc_off = off;
      for (size_t d = 0; filled < S + 1; ++d) {
        const auto& toks = live[d].tokens;
        const int64_t take =
            std::min<int64_t>(S + 1 - filled, static_cast<int64_t>(toks.size()) - doc_off);
        std::memcpy(w.data() + filled, toks.data() + doc_off, static_cast<size_t>(take) * 4);
        filled += take;
        doc_off = 0;
      }
      windows.push_back(std::move(w));
      off += S;
      avail -= S;
      while (!live.empty() && off >= static_cast<int64_t>(live.front().tokens.size())) {
        off -= static_cast<int64_t>(live.front().tokens.size());
        live.pop_front();
      }
    }
    sync_stats();
    const int64_t n = static_cast<int64_t>(windows.size());
    if (n == 0) {
      TQ_CHECK(block > 0,
               "[{}] the sources ({} files, split '{}') hold no window of seq_len+1 = {} tokens "
               "({} documents read, {} bad records skipped)",
               context_, files_.size(), opts_.split, S + 1, stream.documents(),
               stream.bad_records());
      // End of the data exactly at a block boundary: the next epoch starts.
    } else {
      history.push_back(st);
      while (history.size() >= 2 && history[1]->global <= global - world + 1) history.pop_front();
      perm.resize(static_cast<size_t>(n));
      std::iota(perm.begin(), perm.end(), int64_t{0});
      if (opts_.shuffle) {
        Rng rng(mix64(opts_.seed ^ mix64(static_cast<uint64_t>(epoch) ^
                                         mix64(static_cast<uint64_t>(block)))));
        for (int64_t i = n - 1; i > 0; --i) {
          const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
          std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t g = global + i;
        if (skip > 0) {
          --skip;
          continue;
        }
        if (g % world != rank) continue;
        // The cursor after this window: the start of the next round of `world` windows, counted
        // from the block holding the round's first window — identical on every rank.
        const int64_t round = g - rank;
        size_t h = history.size() - 1;
        while (h > 0 && history[h]->global > round) --h;
        Item item;
        item.window = std::move(windows[static_cast<size_t>(perm[static_cast<size_t>(i)])]);
        item.start = history[h];
        item.skip = round + world - history[h]->global;
        item.epoch = epoch;
        if (!push(std::move(item))) return;
      }
      global += n;
      ++block;
    }
    if (n < K) {  // the data ended: next epoch from the beginning
      ++epoch;
      block = 0;
      stream.seek(DocPos{});
      live.clear();
      off = 0;
      avail = 0;
    }
  }
}

void TokenLoader::next_batch(int64_t B, Tensor& ids, Tensor& targets) {
  TQ_CHECK(B >= 1, "[{}] next_batch: batch size must be >= 1, got {}", context_, B);
  const int64_t S = opts_.seq_len;
  std::vector<Item> items;
  items.reserve(static_cast<size_t>(B));
  {
    std::unique_lock<std::mutex> lock(mu_);
    while (static_cast<int64_t>(items.size()) < B) {
      not_empty_.wait(lock, [&] { return !queue_.empty() || error_ != nullptr; });
      if (queue_.empty()) {
        // Put back what this batch took, so a retry (or the cursor) sees an unchanged loader.
        for (auto it = items.rbegin(); it != items.rend(); ++it) queue_.push_front(std::move(*it));
        std::rethrow_exception(error_);
      }
      items.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  not_full_.notify_one();
  ids = Tensor::empty({B, S}, DType::i32);
  targets = Tensor::empty({B, S}, DType::i32);
  int32_t* pi = ids.data<int32_t>();
  int32_t* pt = targets.data<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* w = items[static_cast<size_t>(b)].window.data();
    std::memcpy(pi + b * S, w, static_cast<size_t>(S) * 4);
    std::memcpy(pt + b * S, w + 1, static_cast<size_t>(S) * 4);
  }
  const Item& last = items.back();
  cur_start_ = last.start;
  cur_skip_ = last.skip;
  stats_.epoch = last.epoch;
  stats_.windows += B;
  stats_.tokens += B * S;
}

TokenLoader::Stats TokenLoader::stats() const {
  Stats s = stats_;
  std::lock_guard<std::mutex> lock(mu_);
  s.documents = producer_documents_;
  s.bad_records = producer_bad_;
  return s;
}

uint64_t TokenLoader::fingerprint() const {
  // Names (not directories) of the files plus every option that changes the window sequence.
  uint64_t h = kFnvOffset;
  auto add = [&](const std::string& s) { h = fnv1a64(s.data(), s.size() + 1, h); };
  for (const auto& f : files_) add(std::filesystem::path(f).filename().string());
  add(opts_.jsonl_field);
  add(opts_.txt_document);
  add(opts_.split);
  add(fmt::format("{}", opts_.valid_fraction));
  if (tokenizer_) add(fmt::format("vocab {}", tokenizer_->vocab_size()));
  return h;
}

Json TokenLoader::cursor() const {
  const BlockStart& s = *cur_start_;
  Json j;
  j["version"] = kCursorVersion;
  j["epoch"] = s.epoch;
  j["block"] = s.block;
  j["global_window"] = s.global;
  j["skip"] = cur_skip_;
  j["file"] = s.pos.file;
  j["file_name"] = s.pos.file < static_cast<int64_t>(files_.size())
                       ? files_[static_cast<size_t>(s.pos.file)]
                       : std::string();
  j["offset"] = s.pos.offset;
  j["line"] = s.pos.line;
  j["doc_index"] = s.pos.index;
  j["doc_token"] = s.doc_token;
  j["num_files"] = files_.size();
  j["seq_len"] = opts_.seq_len;
  j["shuffle"] = opts_.shuffle;
  j["shuffle_block"] = opts_.shuffle_block;
  j["seed"] = opts_.seed;
  j["fingerprint"] = fmt::format("{:016x}", fingerprint());
  return j;
}

void TokenLoader::restore(const Json& c) {
  const std::string ctx = context_ + " cursor";
  json_check_keys(c,
                  {"version", "epoch", "block", "global_window", "skip", "file", "file_name",
                   "offset", "line", "doc_index", "doc_token", "num_files", "seq_len", "shuffle",
                   "shuffle_block", "seed", "fingerprint"},
                  ctx);
  const auto version = json_get<int64_t>(c, "version", ctx);
  TQ_CHECK(version == kCursorVersion, "[{}] field 'version': {} is not supported (expected {})",
           ctx, version, kCursorVersion);
  auto same = [&](const char* key, auto mine) {
    using T = decltype(mine);
    const T v = json_get<T>(c, key, ctx);
    TQ_CHECK(v == mine, "[{}] field '{}': the cursor has {} but this loader has {}", ctx, key, v,
             mine);
  };
  same("num_files", static_cast<int64_t>(files_.size()));
  same("seq_len", opts_.seq_len);
  same("shuffle", opts_.shuffle);
  same("shuffle_block", opts_.shuffle_block);
  same("seed", opts_.seed);
  same("fingerprint", fmt::format("{:016x}", fingerprint()));
  BlockStart st;
  auto nonneg = [&](const char* key) {
    const auto v = json_get<int64_t>(c, key, ctx);
    TQ_CHECK(v >= 0, "[{}] field '{}': must be >= 0, got {}", ctx, key, v);
    return v;
  };
  st.epoch = nonneg("epoch");
  st.block = nonneg("block");
  st.global = nonneg("global_window");
  const int64_t skip = nonneg("skip");
  st.pos.file = nonneg("file");
  TQ_CHECK(st.pos.file < static_cast<int64_t>(files_.size()) ||
               (st.pos.file == static_cast<int64_t>(files_.size()) && st.doc_token == 0),
           "[{}] field 'file': {} is not a file index (the loader has {} files)", ctx,
           st.pos.file, files_.size());
  st.pos.offset = json_get<uint64_t>(c, "offset", ctx);
  st.pos.line = nonneg("line");
  st.pos.index = nonneg("doc_index");
  st.doc_token = nonneg("doc_token");
  stop_producer();
  cur_start_ = std::make_shared<const BlockStart>(st);
  cur_skip_ = skip;
  stats_.epoch = st.epoch;
  start_producer(st, skip);
}

}  // namespace tq::data

// HF checkpoint directories: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor: shard file}}).
// load_llama / save_llama are declared in nn/llama.h; the pieces below are for other importers.
//
// On import, tensors HF itself ignores are dropped: `*.rotary_emb.inv_freq` buffers and, with
// tie_word_embeddings, a redundant lm_head.weight. Everything else must match the model exactly
// (Module::load_state_dict, strict). Errors name the file involved.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "nn/llama.h"

namespace tq::nn {

// The opened weight files of a checkpoint directory and the tensors in them (zero-copy views that
// keep their file mapped).
struct HfWeights {
  std::vector<std::string> files;         // paths, in the order opened
  std::map<std::string, Tensor> tensors;  // name -> view in its file's dtype
};

// Opens dir/model.safetensors when present (as transformers does), else the shards listed in
// dir/model.safetensors.index.json (each listed tensor must be in the shard the index names).
// Unsupported dtypes (I64, F8, ...) are errors.
HfWeights read_hf_weights(const std::string& dir);

}  // namespace tq::nn

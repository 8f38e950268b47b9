// Calibration: token windows sampled from real text, and the activation statistics of every linear layer
// the quantization methods spend precision by (imatrix importances, AWQ's channel magnitudes, spikes).
//
// The statistics file is a GGUF that llama.cpp's imatrix readers understand: for each linear weight W,
// `W.in_sum2` (sum over tokens of x^2 per input channel) and `W.counts` (tokens), with the keys
// imatrix.datasets / imatrix.chunk_count / imatrix.chunk_size. mixq adds `W.in_sum_abs`, `W.in_max_abs`
// (per input channel), `W.out_max_abs` (per output channel) and `W.tok_max_abs` (summary of each token's
// largest |x|: mean, p50, p90, p99, max), and mixq.calib.* keys. docs/calibration.md lists it all.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "mixq/model/model.h"

namespace mixq {

inline constexpr int kCalibrationVersion = 1;

struct CalibrationOptions {
  std::string data_path;  // plain text, or JSONL with a "text" field per line (by extension .jsonl/.json)
  int64_t samples = 128;  // windows
  int64_t ctx = 512;      // tokens per window
  uint64_t seed = 0;
};

// Tokenizes the file (a plain text as one document, JSONL one document per line, each with BOS) and
// returns up to `samples` windows of `ctx` tokens: the token stream cut into consecutive windows, of which
// a seeded random subset is taken in stream order; each window's first token is BOS (as llama.cpp's
// imatrix and perplexity do). Warns when the text holds fewer windows than asked; throws mixq::Error
// naming the file or option when it holds none, when ctx or samples is out of range, or for bad JSONL.
std::vector<std::vector<int32_t>> SampleCalibrationWindows(const Model& model, const CalibrationOptions& options);

// The statistics of one linear layer's input (and output) over the calibration tokens.
struct LinearStats {
  int64_t in_dim = 0;
  int64_t out_dim = 0;
  double count = 0.0;                  // tokens seen
  std::vector<double> in_sum2;         // [in_dim] sum of x^2
  std::vector<double> in_sum_abs;      // [in_dim] sum of |x| (empty when read from a llama.cpp imatrix)
  std::vector<float> in_max_abs;       // [in_dim] max |x| (empty when read from a llama.cpp imatrix)
  std::vector<float> out_max_abs;      // [out_dim] max |y| (empty when read from a llama.cpp imatrix)
  std::vector<float> token_max_abs;    // each token's max |x| while collecting (not stored in files)
  std::array<float, 5> token_max_summary{};  // mean, p50, p90, p99, max of token_max_abs

  // The imatrix importance of each input channel: mean x^2.
  std::vector<float> Importance() const;
  // mean |x| per input channel (AWQ's s_x); empty when the file lacks it.
  std::vector<float> MeanAbs() const;
  float MaxInput() const;   // max over channels of in_max_abs (0 when absent)
  float MaxOutput() const;  // max over channels of out_max_abs (0 when absent)
};

struct CalibrationStats {
  std::string source;       // the file it was read from, or the data it was collected on
  std::string dataset;      // calibration data file
  int64_t chunks = 0;       // windows
  int64_t chunk_size = 0;   // tokens per window
  uint64_t seed = 0;
  bool from_llamacpp = false;  // read from a llama.cpp imatrix (in_sum2 and counts only)
  std::map<std::string, LinearStats> linears;  // by weight name, e.g. "blk.0.attn_q.weight"

  const LinearStats* Find(const std::string& weight_name) const;
};

// Runs the model over the windows (one forward pass each, observing every linear layer's input and output)
// and accumulates the statistics; a progress bar on a terminal.
CalibrationStats CollectCalibrationStats(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                                         const std::string& dataset);

// Writes the statistics as GGUF (atomically).
void SaveCalibrationStats(const CalibrationStats& stats, const std::string& path);

// Reads a statistics file: mixq's, a llama.cpp imatrix GGUF (in_sum2/counts), or llama.cpp's legacy binary
// imatrix (.dat). Throws mixq::Error naming the file and entry for a bad file (truncated, non-finite or
// negative sums, zero counts, a length that disagrees with its counterpart).
CalibrationStats LoadCalibrationStats(const std::string& path);
// The same from bytes in memory (`name` labels errors): what the fuzz target drives.
CalibrationStats ParseCalibrationStats(std::span<const std::byte> bytes, const std::string& name);

// Checks the statistics against a model: each entry that names a linear weight of the model must have that
// weight's input size; entries for other tensors are ignored. Throws mixq::Error naming file and tensor.
// Returns how many of the model's linear weights have statistics.
int64_t CheckCalibrationStats(const CalibrationStats& stats, const Model& model);

// One line per linear layer, ranked by how far its largest input (and output) stands above the model-wide
// median of that quantity: the activation spikes of seed 001.
struct SpikeRank {
  std::string name;
  float max_input = 0.0f;
  float max_output = 0.0f;
  double input_ratio = 0.0;   // max_input / median over layers
  double output_ratio = 0.0;  // max_output / median over layers
};
std::vector<SpikeRank> RankSpikes(const CalibrationStats& stats);

}  // namespace mixq

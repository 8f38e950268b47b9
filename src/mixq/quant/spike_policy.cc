// Spike-aware policies: rank the calibrated inputs, keep the spikes at FP16/FP8, the rest W8A8, as rules.
#include "mixq/quant/spike_policy.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mixq/base/error.h"

namespace mixq {
namespace {

// A whole-name regex for a GGUF tensor name ("blk.0.ffn_down.weight" -> "^blk\.0\.ffn_down\.weight$").
std::string AnchoredPattern(std::string_view name) {
  std::string pattern = "^";
  for (char c : name) {
    if (std::string_view(".[]{}()*+?^$|\\").find(c) != std::string_view::npos) pattern += '\\';
    pattern += c;
  }
  return pattern + "$";
}

}  // namespace

SpikePolicy MakeSpikePolicy(const CalibrationStats& stats, const SpikePolicyOptions& options) {
  if (!std::isfinite(options.threshold) || options.threshold <= kMinSpikeThreshold ||
      options.threshold > kMaxSpikeThreshold) {
    Fail("--spike-threshold {} is out of range: expected more than {} and at most {} (a multiple of the median "
         "layer's max|input|; default {})", options.threshold, kMinSpikeThreshold, kMaxSpikeThreshold,
         kDefaultSpikeThreshold);
  }
  if (options.spike_type != "f16" && options.spike_type != "fp8") {
    Fail("--spike-type '{}' is not a spike precision; expected f16 or fp8", options.spike_type);
  }
  if (stats.linears.empty()) Fail("{}: no linear-layer statistics to find spikes in (--calib)", stats.source);
  for (const auto& [name, s] : stats.linears) {
    if (s.in_max_abs.empty()) {
      Fail("{}: tensor '{}' has no max|input| statistics (a llama.cpp imatrix has only sums of squares): "
           "--spike-aware needs a statistics file from `mixq calibrate` (--calib)", stats.source, name);
    }
  }
  SpikePolicy result;
  std::vector<SpikeRank> lookup;  // token_embd.weight over the threshold (statistics of a tied head)
  for (const SpikeRank& r : RankSpikes(stats)) {
    if (!(r.input_ratio > options.threshold)) continue;
    // The embedding table never takes activation quantization (a lookup; as a tied head it runs weight-only
    // int8, docs/w8a8.md), so keeping it at spike precision would buy nothing against W8A8.
    (r.name == "token_embd.weight" ? lookup : result.spikes).push_back(r);
  }
  std::sort(result.spikes.begin(), result.spikes.end(),
            [](const SpikeRank& a, const SpikeRank& b) { return a.input_ratio > b.input_ratio; });

  std::string& t = result.text;
  t += fmt::format("# spike-aware mixed precision (docs/w8a8.md), from {}\n", stats.source);
  t += fmt::format("# projections whose max|input| exceeds {:g} x the median layer's stay {}; the rest are {}\n",
                   options.threshold, options.spike_type, WeightFormatName(options.base));
  for (const SpikeRank& r : lookup) {
    t += fmt::format("# token_embd.weight ({:.2f} x median, the tied head's input) is not W8A8: left to the "
                     "default\n", r.input_ratio);
  }
  if (result.spikes.empty()) t += "# no projection exceeds the threshold\n";
  for (const SpikeRank& r : result.spikes) {
    t += fmt::format("{} = {}  # max|input| {:.4g}, {:.2f} x median\n", AnchoredPattern(r.name), options.spike_type,
                     r.max_input, r.input_ratio);
  }
  t += fmt::format("default = {}\n", WeightFormatName(options.base));
  result.policy = ParsePolicy(t, "spike-aware");
  return result;
}

}  // namespace mixq

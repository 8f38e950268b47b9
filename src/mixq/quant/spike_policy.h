// Spike-aware mixed precision (seed 001, docs/w8a8.md): the projections whose inputs carry activation
// spikes stay FP16 or FP8 and everything else is W8A8 per tensor, written as an ordinary QuantPolicy so the
// recipe is also a policy file (`--save-policy`, then `--policy FILE` gives the same bytes).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/quant/calibration.h"
#include "mixq/quant/policy.h"

namespace mixq {

// A projection is a spike when its largest calibrated input is this many times the model-wide median of
// that quantity (RankSpikes' input_ratio). Seed 001 and the massive-activation literature describe LLaMA's
// spikes as orders of magnitude above the typical layer (down_proj inputs of an early and a late layer), so
// an order of magnitude separates them with room on both sides; docs/w8a8.md gives the numbers measured here.
inline constexpr double kDefaultSpikeThreshold = 10.0;
// Thresholds outside (kMinSpikeThreshold, kMaxSpikeThreshold] are refused: at or below 1 at least half of
// the model would be "spikes" (the ratio is to the median), and beyond 1e6 nothing ever is.
inline constexpr double kMinSpikeThreshold = 1.0;
inline constexpr double kMaxSpikeThreshold = 1e6;

struct SpikePolicyOptions {
  double threshold = kDefaultSpikeThreshold;  // --spike-threshold
  std::string spike_type = "f16";             // --spike-type: f16 or fp8 (E4M3, a scale per output channel)
  WeightFormat base;                          // every other tensor; w8a8 unless --type says otherwise
  SpikePolicyOptions() : base(*ParseWeightFormat("w8a8")) {}
};

struct SpikePolicy {
  // The projections kept at spike precision, largest ratio first. token_embd.weight (whose statistics are
  // a tied head's) is never one: the embedding table takes no activation quantization.
  std::vector<SpikeRank> spikes;
  std::string text;               // the policy as a file (ParsePolicy reads it back)
  QuantPolicy policy;             // ParsePolicy(text)
};

// Builds the policy from calibration statistics. Throws mixq::Error naming the option for a threshold out
// of range (--spike-threshold), an unknown spike type (--spike-type), or statistics without max|input|
// (a llama.cpp imatrix: --calib).
SpikePolicy MakeSpikePolicy(const CalibrationStats& stats, const SpikePolicyOptions& options);

}  // namespace mixq

// Per-tensor mixed precision as data: ordered rules "pattern = format", the first match wins, and the
// built-in presets that reproduce llama.cpp's Q4_K_M / Q3_K_M / ... mixes as such rules.
//
// Precedence, documented for users in docs/quantize.md:
//   1. norm weights are never quantized (they stay F32, whatever the rules say);
//   2. otherwise the first rule whose pattern is found in the tensor's GGUF name decides (regex search, as
//      llama-quantize --tensor-type does; anchor with ^...$ for whole names);
//   3. otherwise the policy's `default` line;
//   4. otherwise the format given with --type; with neither, the tensor is kept as stored.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/formats/weight_format.h"

namespace mixq {

// A rule's or the default's target: a format, or "keep" (copy the tensor as stored in the input).
struct PolicyTarget {
  std::optional<WeightFormat> format;  // nullopt = keep
};

struct PolicyRule {
  std::string pattern;
  std::regex regex;
  PolicyTarget target;
  int line = 0;  // 1-based line in the policy text
};

struct QuantPolicy {
  std::string source;  // the file or preset it came from, for messages
  std::vector<PolicyRule> rules;
  std::optional<PolicyTarget> default_target;
};

// What the policy says for one tensor, and which line said it.
struct PolicyDecision {
  PolicyTarget target;
  std::string reason;  // "rule 3 (attn_v)", "default", "--type"
};

// Parses policy text: one `PATTERN = FORMAT|keep` rule per line, an optional `default = FORMAT|keep`
// line, blank lines and `#` comments. Throws mixq::Error naming `source` and the line for a bad regex,
// an unknown format, or a line that is not a rule.
QuantPolicy ParsePolicy(std::string_view text, const std::string& source);

// A built-in preset by name (case-insensitive: q3_k_m, q4_k_s, q4_k_m, q5_k_m) for a model of `n_layers`
// layers, tied or not; nullopt for an unknown name.
std::optional<QuantPolicy> PresetPolicy(std::string_view name, int64_t n_layers, bool tied_embeddings);
std::string PresetPolicyNames();

// A preset name, or else a policy file to read; throws mixq::Error if neither.
QuantPolicy LoadPolicy(const std::string& name_or_path, int64_t n_layers, bool tied_embeddings);

// The decision for a non-norm tensor; `fallback` is --type's format (nullopt: none given).
PolicyDecision DecideFormat(const QuantPolicy& policy, std::string_view tensor_name,
                            const std::optional<WeightFormat>& fallback);

// The policy as text ParsePolicy reads back (how `--dump-policy` shows a preset).
std::string PolicyToText(const QuantPolicy& policy);

}  // namespace mixq

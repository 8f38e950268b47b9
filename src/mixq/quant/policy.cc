// Quantization policies: parsing rule text, deciding a tensor's format, and llama.cpp's mixes as data.
#include "mixq/quant/policy.h"

#include <array>
#include <cctype>
#include <filesystem>
#include <functional>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"

namespace mixq {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

PolicyTarget ParseTarget(std::string_view text, const std::string& source, int line) {
  if (Lower(text) == "keep") return PolicyTarget{std::nullopt};
  const std::optional<WeightFormat> format = ParseWeightFormat(text);
  if (!format) {
    Fail("{}:{}: unknown format '{}'; expected keep or one of: {}", source, line, text, WeightFormatNames());
  }
  return PolicyTarget{*format};
}

std::string TargetName(const PolicyTarget& t) { return t.format ? WeightFormatName(*t.format) : "keep"; }

// Which layers of a model a preset rule covers, in llama.cpp's own terms (llama-quant.cpp).
enum class Layers {
  kAll,
  kMoreBits,     // use_more_bits(): the first and last eighth, and every third layer between
  kFirst2,
  kFirst4,
  kFirstEighth,
  kFirstSixteenth,
};

bool InLayers(Layers layers, int64_t i, int64_t n) {
  switch (layers) {
    case Layers::kAll:
      return true;
    case Layers::kMoreBits:
      return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    case Layers::kFirst2:
      return i < 2;
    case Layers::kFirst4:
      return i < 4;
    case Layers::kFirstEighth:
      return i < n / 8;
    case Layers::kFirstSixteenth:
      return i < n / 16;
  }
  return false;
}

struct PresetRule {
  const char* tensor;  // the GGUF name's part after "blk.N."
  Layers layers;
  const char* format;
};

struct Preset {
  const char* name;
  const char* base;  // the type of every tensor no rule names (llama.cpp's default_type)
  std::vector<PresetRule> rules;
};

// llama.cpp's llama_tensor_get_type() for LLaMA-architecture models, as rules. Every preset also stores
// output.weight (and tied embeddings, which are the output) as Q6_K; rows that Q6_K/Q5_K/Q4_K cannot
// hold fall back as llama.cpp falls back (quantize_model.cc).
const std::vector<Preset>& Presets() {
  static const std::vector<Preset> presets = {
      {"q3_k_m", "q3_k",
       {{"attn_v", Layers::kFirst2, "q5_k"},
        {"attn_v", Layers::kAll, "q4_k"},
        {"ffn_down", Layers::kFirstSixteenth, "q5_k"},
        {"ffn_down", Layers::kAll, "q4_k"},
        {"attn_output", Layers::kAll, "q4_k"}}},
      {"q4_k_s", "q4_k", {{"attn_v", Layers::kFirst4, "q5_k"}, {"ffn_down", Layers::kFirstEighth, "q5_k"}}},
      {"q4_k_m", "q4_k", {{"attn_v", Layers::kMoreBits, "q6_k"}, {"ffn_down", Layers::kMoreBits, "q6_k"}}},
      {"q5_k_m", "q5_k", {{"attn_v", Layers::kMoreBits, "q6_k"}, {"ffn_down", Layers::kMoreBits, "q6_k"}}},
  };
  return presets;
}

void AddRule(QuantPolicy& p, std::string pattern, std::string_view format) {
  const int line = static_cast<int>(p.rules.size()) + 1;
  p.rules.push_back(PolicyRule{pattern, std::regex(pattern), ParseTarget(format, p.source, line), line});
}

}  // namespace

QuantPolicy ParsePolicy(std::string_view text, const std::string& source) {
  QuantPolicy policy;
  policy.source = source;
  int line_no = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    // The last '=' splits: a pattern may contain '=' but a format name never does.
    const size_t eq = line.rfind('=');
    if (eq == std::string_view::npos) {
      Fail("{}:{}: expected 'PATTERN = FORMAT' or 'default = FORMAT', got '{}'", source, line_no, line);
    }
    const std::string_view pattern = Trim(line.substr(0, eq));
    const PolicyTarget target = ParseTarget(Trim(line.substr(eq + 1)), source, line_no);
    if (pattern.empty()) Fail("{}:{}: the rule has no pattern before '='", source, line_no);
    if (pattern == "default") {
      if (policy.default_target) Fail("{}:{}: a second 'default' line", source, line_no);
      policy.default_target = target;
      continue;
    }
    std::regex regex;
    try {
      regex = std::regex(std::string(pattern), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      Fail("{}:{}: pattern '{}' is not a valid regular expression: {}", source, line_no, pattern, e.what());
    }
    policy.rules.push_back(PolicyRule{std::string(pattern), std::move(regex), target, line_no});
  }
  return policy;
}

std::optional<QuantPolicy> PresetPolicy(std::string_view name, int64_t n_layers, bool tied_embeddings) {
  const std::string lower = Lower(name);
  for (const Preset& preset : Presets()) {
    if (lower != preset.name) continue;
    QuantPolicy p;
    p.source = fmt::format("preset {} ({} layers{})", preset.name, n_layers, tied_embeddings ? ", tied embeddings" : "");
    AddRule(p, R"(^output\.weight$)", "q6_k");
    if (tied_embeddings) AddRule(p, R"(^token_embd\.weight$)", "q6_k");
    for (const PresetRule& rule : preset.rules) {
      std::vector<std::string> layers;
      for (int64_t i = 0; i < n_layers; ++i) {
        if (InLayers(rule.layers, i, n_layers)) layers.push_back(std::to_string(i));
      }
      if (layers.empty()) continue;
      const std::string alternatives = rule.layers == Layers::kAll ? std::string(R"(\d+)")
                                                                   : fmt::format("({})", fmt::join(layers, "|"));
      AddRule(p, fmt::format(R"(^blk\.{}\.{}\.weight$)", alternatives, rule.tensor), rule.format);
    }
    p.default_target = PolicyTarget{ParseWeightFormat(preset.base)};
    return p;
  }
  return std::nullopt;
}

std::string PresetPolicyNames() {
  std::vector<std::string> names;
  for (const Preset& p : Presets()) names.push_back(p.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

QuantPolicy LoadPolicy(const std::string& name_or_path, int64_t n_layers, bool tied_embeddings) {
  if (auto preset = PresetPolicy(name_or_path, n_layers, tied_embeddings)) return *preset;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(name_or_path, ec)) {
    Fail("--policy '{}' is neither a preset ({}) nor a readable policy file", name_or_path, PresetPolicyNames());
  }
  return ParsePolicy(ReadFileToString(name_or_path), name_or_path);
}

PolicyDecision DecideFormat(const QuantPolicy& policy, std::string_view tensor_name,
                            const std::optional<WeightFormat>& fallback) {
  const std::string name(tensor_name);
  for (const PolicyRule& rule : policy.rules) {
    if (std::regex_search(name, rule.regex)) {
      return PolicyDecision{rule.target, fmt::format("line {}: {}", rule.line, rule.pattern)};
    }
  }
  if (policy.default_target) return PolicyDecision{*policy.default_target, "default"};
  if (fallback) return PolicyDecision{PolicyTarget{*fallback}, "--type"};
  return PolicyDecision{PolicyTarget{std::nullopt}, "no rule: kept"};
}

std::string PolicyToText(const QuantPolicy& policy) {
  std::string text = fmt::format("# mixq quantization policy: {}\n# first matching rule wins; norms stay F32\n", policy.source);
  for (const PolicyRule& rule : policy.rules) text += fmt::format("{} = {}\n", rule.pattern, TargetName(rule.target));
  if (policy.default_target) text += fmt::format("default = {}\n", TargetName(*policy.default_target));
  return text;
}

}  // namespace mixq

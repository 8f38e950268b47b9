// Calibration windows, activation statistics of every linear layer, and their GGUF / imatrix files.
#include "mixq/quant/calibration.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/log.h"
#include "mixq/base/progress.h"
#include "mixq/model/forward.h"

namespace mixq {

namespace {

bool IsJsonl(const std::string& path) { return path.ends_with(".jsonl") || path.ends_with(".json"); }

// The documents of a calibration file: the whole text, or the "text" field of each JSONL line.
std::vector<std::string> ReadDocuments(const std::string& path) {
  const std::string text = ReadFileToString(path);
  if (!IsJsonl(path)) return {text};
  std::vector<std::string> docs;
  size_t line_start = 0;
  int line_no = 0;
  while (line_start < text.size()) {
    size_t end = text.find('\n', line_start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + line_start, end - line_start);
    ++line_no;
    line_start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      Fail("{}:{}: not a JSON object: {}", path, line_no, e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      Fail("{}:{}: expected an object with a string field \"text\"", path, line_no);
    }
    docs.push_back(j["text"].get<std::string>());
  }
  if (docs.empty()) Fail("{}: no JSONL lines with a \"text\" field", path);
  return docs;
}

// Accumulates one observed linear call into its statistics.
void Accumulate(LinearStats& s, const LinearCall& call) {
  if (s.in_dim == 0) {
    s.in_dim = call.in_dim;
    s.out_dim = call.out_dim;
    s.in_sum2.assign(static_cast<size_t>(s.in_dim), 0.0);
    s.in_sum_abs.assign(static_cast<size_t>(s.in_dim), 0.0);
    s.in_max_abs.assign(static_cast<size_t>(s.in_dim), 0.0f);
    s.out_max_abs.assign(static_cast<size_t>(s.out_dim), 0.0f);
  }
  MIXQ_CHECK_EQ(s.in_dim, call.in_dim);
  MIXQ_CHECK_EQ(s.out_dim, call.out_dim);
  for (int64_t t = 0; t < call.n_tokens; ++t) {
    const float* x = call.input + t * call.in_dim;
    float token_max = 0.0f;
    for (int64_t j = 0; j < call.in_dim; ++j) {
      const float a = std::fabs(x[j]);
      s.in_sum2[static_cast<size_t>(j)] += static_cast<double>(x[j]) * x[j];
      s.in_sum_abs[static_cast<size_t>(j)] += a;
      s.in_max_abs[static_cast<size_t>(j)] = std::max(s.in_max_abs[static_cast<size_t>(j)], a);
      token_max = std::max(token_max, a);
    }
    s.token_max_abs.push_back(token_max);
    const float* y = call.output + t * call.out_dim;
    for (int64_t i = 0; i < call.out_dim; ++i) {
      s.out_max_abs[static_cast<size_t>(i)] = std::max(s.out_max_abs[static_cast<size_t>(i)], std::fabs(y[i]));
    }
  }
  s.count += static_cast<double>(call.n_tokens);
}

void Summarise(LinearStats& s) {
  if (s.token_max_abs.empty()) return;
  std::vector<float> v = s.token_max_abs;
  std::sort(v.begin(), v.end());
  auto quantile = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  s.token_max_summary = {static_cast<float>(mean), quantile(0.5), quantile(0.9), quantile(0.99), v.back()};
}

}  // namespace

std::vector<std::vector<int32_t>> SampleCalibrationWindows(const Model& model, const CalibrationOptions& o) {
  if (o.ctx < 2 || o.ctx > 1 << 20) Fail("--ctx {} is out of range (2 .. 1048576)", o.ctx);
  if (o.samples < 1 || o.samples > 1 << 20) Fail("--samples {} is out of range (1 .. 1048576)", o.samples);
  std::vector<int32_t> stream;
  for (const std::string& doc : ReadDocuments(o.data_path)) {
    const std::vector<int32_t> ids = model.tokenizer.Encode(doc, true);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  const int64_t available = static_cast<int64_t>(stream.size()) / o.ctx;
  if (available == 0) {
    Fail("{}: {} tokens, fewer than one window of --ctx {}", o.data_path, stream.size(), o.ctx);
  }
  if (available < o.samples) {
    Warn("{}: {} tokens hold {} windows of {}; using all of them instead of --samples {}", o.data_path,
         stream.size(), available, o.ctx, o.samples);
  }
  std::vector<int64_t> order(static_cast<size_t>(available));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(static_cast<size_t>(std::min(available, o.samples)));
  std::sort(order.begin(), order.end());
  std::vector<std::vector<int32_t>> windows;
  for (int64_t w : order) {
    const auto begin = stream.begin() + w * o.ctx;
    std::vector<int32_t> window(begin, begin + o.ctx);
    window[0] = model.tokenizer.bos();
    windows.push_back(std::move(window));
  }
  return windows;
}

CalibrationStats CollectCalibrationStats(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                                         const std::string& dataset) {
  MIXQ_CHECK(!windows.empty());
  const int64_t ctx = static_cast<int64_t>(windows.front().size());
  CalibrationStats stats;
  stats.source = dataset;
  stats.dataset = dataset;
  stats.chunks = static_cast<int64_t>(windows.size());
  stats.chunk_size = ctx;
  InferenceState state = MakeInferenceState(model.config, ctx, ctx);
  // A tied head is the embedding matrix: its statistics go under that tensor's name, as llama.cpp's do.
  const bool tied = model.weights.output.empty();
  state.observer = [&](const LinearCall& call) {
    const bool embd = tied && call.kind == LinearKind::kOutput;
    Accumulate(stats.linears[embd ? "token_embd.weight" : LinearWeightName(call.layer, call.kind)], call);
  };
  ProgressBar progress("calibrating", stats.chunks);
  for (size_t w = 0; w < windows.size(); ++w) {
    MIXQ_CHECK_EQ(static_cast<int64_t>(windows[w].size()), ctx);
    Forward(model, state, windows[w], 0, /*all_logits=*/true);  // every token's head input counts
    progress.Update(static_cast<int64_t>(w) + 1);
  }
  progress.Finish();
  for (auto& [name, s] : stats.linears) Summarise(s);
  return stats;
}

int64_t CheckCalibrationStats(const CalibrationStats& stats, const Model& model) {
  int64_t matched = 0;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    const LinearStats* s = stats.Find(slot.name);
    if (s == nullptr) return;
    if (s->in_dim != slot.view->cols()) {
      Fail("{}: statistics of '{}' have {} input channels, but the model's tensor has {} columns", stats.source,
           slot.name, s->in_dim, slot.view->cols());
    }
    if (slot.role == TensorRole::kLinear) ++matched;
  });
  return matched;
}

}  // namespace mixq

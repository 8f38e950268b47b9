// Calibration windows, activation statistics of every linear layer, and their GGUF / imatrix files.
#include "mixq/quant/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/log.h"
#include "mixq/base/progress.h"
#include "mixq/io/gguf.h"
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

std::vector<float> ToFloats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// A float vector tensor of the statistics file, checked for length and finite, non-negative values.
std::vector<float> ReadVector(const GgufFile& file, const std::string& name, int64_t expected) {
  const GgufTensorInfo* info = file.FindTensor(name);
  if (info == nullptr) return {};
  if (info->dtype != DType::kF32) Fail("{}: tensor '{}' is {}, expected F32", file.path, name, DTypeName(info->dtype));
  const int64_t n = ElementCount(info->shape);
  if (expected >= 0 && n != expected) {
    Fail("{}: tensor '{}' has {} values, expected {}", file.path, name, n, expected);
  }
  const TensorView view = file.View(*info);
  std::vector<float> out(static_cast<size_t>(n));
  std::memcpy(out.data(), view.data, static_cast<size_t>(n) * sizeof(float));
  for (float v : out) {
    if (!std::isfinite(v) || v < 0.0f) Fail("{}: tensor '{}' holds {} (expected finite, >= 0)", file.path, name, v);
  }
  return out;
}

CalibrationStats LoadGgufStats(const std::string& path) {
  const GgufFile file = ReadGguf(path);
  CalibrationStats stats;
  stats.source = path;
  stats.from_llamacpp = !file.GetInt("mixq.calib.version").has_value();
  if (!stats.from_llamacpp && *file.GetInt("mixq.calib.version") > kCalibrationVersion) {
    Fail("{}: statistics version {} is newer than this mixq reads ({})", path, *file.GetInt("mixq.calib.version"),
         kCalibrationVersion);
  }
  if (const GgufValue* d = file.Find("imatrix.datasets"); d != nullptr && !d->strings.empty()) {
    stats.dataset = d->strings.front();
  }
  stats.chunks = file.GetInt("imatrix.chunk_count").value_or(0);
  stats.chunk_size = file.GetInt("imatrix.chunk_size").value_or(0);
  stats.seed = static_cast<uint64_t>(file.GetInt("mixq.calib.seed").value_or(0));
  const std::string kSum2 = ".in_sum2";
  for (const GgufTensorInfo& info : file.tensors) {
    if (!info.name.ends_with(kSum2)) continue;
    const std::string name = info.name.substr(0, info.name.size() - kSum2.size());
    if (info.shape.size() == 2 && info.shape[0] != 1) {
      Fail("{}: '{}' holds {} matrices (mixture-of-experts statistics are not supported)", path, info.name,
           info.shape[0]);
    }
    LinearStats s;
    const std::vector<float> sum2 = ReadVector(file, info.name, -1);
    s.in_dim = static_cast<int64_t>(sum2.size());
    s.in_sum2.assign(sum2.begin(), sum2.end());
    const std::vector<float> counts = ReadVector(file, name + ".counts", 1);
    if (counts.empty()) Fail("{}: '{}' has no '{}.counts'", path, info.name, name);
    if (!(counts[0] > 0.0f)) Fail("{}: '{}.counts' is {} (expected > 0)", path, name, counts[0]);
    s.count = counts[0];
    const std::vector<float> sum_abs = ReadVector(file, name + ".in_sum_abs", s.in_dim);
    s.in_sum_abs.assign(sum_abs.begin(), sum_abs.end());
    s.in_max_abs = ReadVector(file, name + ".in_max_abs", s.in_dim);
    s.out_max_abs = ReadVector(file, name + ".out_max_abs", -1);
    s.out_dim = static_cast<int64_t>(s.out_max_abs.size());
    const std::vector<float> summary = ReadVector(file, name + ".tok_max_abs", 5);
    if (!summary.empty()) std::copy(summary.begin(), summary.end(), s.token_max_summary.begin());
    stats.linears.emplace(name, std::move(s));
  }
  if (stats.linears.empty()) Fail("{}: no '<tensor>.in_sum2' entries: not an imatrix or mixq statistics file", path);
  return stats;
}

// llama.cpp's legacy imatrix: int32 n; n x {int32 len, name, int32 ncall, int32 nval, float[nval]}; then
// optionally int32 last_chunk, int32 len, dataset name. Values are mean x^2 times ncall.
CalibrationStats LoadLegacyImatrix(const std::string& path) {
  const std::string bytes = ReadFileToString(path);
  size_t pos = 0;
  auto read_i32 = [&](const char* what) {
    if (pos + 4 > bytes.size()) Fail("{}: truncated at byte {} reading {}", path, pos, what);
    int32_t v;
    std::memcpy(&v, bytes.data() + pos, 4);
    pos += 4;
    return v;
  };
  CalibrationStats stats;
  stats.source = path;
  stats.from_llamacpp = true;
  const int32_t n = read_i32("the entry count");
  if (n <= 0 || n > 1'000'000) Fail("{}: {} entries: not an imatrix file", path, n);
  for (int32_t e = 0; e < n; ++e) {
    const int32_t len = read_i32("a name length");
    if (len <= 0 || len > 4096 || pos + static_cast<size_t>(len) > bytes.size()) {
      Fail("{}: entry {} has a bad name length {}", path, e, len);
    }
    std::string name(bytes.data() + pos, static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    const int32_t ncall = read_i32("ncall");
    const int32_t nval = read_i32("nval");
    if (ncall <= 0) Fail("{}: entry '{}' has ncall {} (expected > 0)", path, name, ncall);
    if (nval <= 0 || pos + static_cast<size_t>(nval) * 4 > bytes.size()) {
      Fail("{}: entry '{}' declares {} values past the end of the file", path, name, nval);
    }
    LinearStats s;
    s.in_dim = nval;
    s.count = ncall;
    s.in_sum2.resize(static_cast<size_t>(nval));
    for (int32_t j = 0; j < nval; ++j) {
      float v;
      std::memcpy(&v, bytes.data() + pos + static_cast<size_t>(j) * 4, 4);
      if (!std::isfinite(v) || v < 0.0f) Fail("{}: entry '{}' value {} is {}", path, name, j, v);
      s.in_sum2[static_cast<size_t>(j)] = v;
    }
    pos += static_cast<size_t>(nval) * 4;
    stats.linears.emplace(std::move(name), std::move(s));
  }
  if (pos + 8 <= bytes.size()) {
    stats.chunks = read_i32("last_chunk");
    const int32_t len = read_i32("the dataset name length");
    if (len > 0 && pos + static_cast<size_t>(len) <= bytes.size()) stats.dataset.assign(bytes.data() + pos, len);
  }
  return stats;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
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

std::vector<float> LinearStats::Importance() const {
  std::vector<float> v(in_sum2.size());
  for (size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(in_sum2[j] / count);
  return v;
}

std::vector<float> LinearStats::MeanAbs() const {
  std::vector<float> v(in_sum_abs.size());
  for (size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(in_sum_abs[j] / count);
  return v;
}

float LinearStats::MaxInput() const {
  return in_max_abs.empty() ? 0.0f : *std::max_element(in_max_abs.begin(), in_max_abs.end());
}

float LinearStats::MaxOutput() const {
  return out_max_abs.empty() ? 0.0f : *std::max_element(out_max_abs.begin(), out_max_abs.end());
}

const LinearStats* CalibrationStats::Find(const std::string& weight_name) const {
  const auto it = linears.find(weight_name);
  return it == linears.end() ? nullptr : &it->second;
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

void SaveCalibrationStats(const CalibrationStats& stats, const std::string& path) {
  GgufWriter writer;
  writer.SetString("general.type", "imatrix");
  writer.SetStringArray("imatrix.datasets", {stats.dataset});
  writer.SetUint32("imatrix.chunk_count", static_cast<uint32_t>(stats.chunks));
  writer.SetUint32("imatrix.chunk_size", static_cast<uint32_t>(stats.chunk_size));
  writer.SetUint32("mixq.calib.version", kCalibrationVersion);
  writer.SetUint64("mixq.calib.seed", stats.seed);
  // The writer keeps pointers until Write: hold every vector here.
  std::vector<std::vector<float>> keep;
  keep.reserve(stats.linears.size() * 6);
  auto add = [&](const std::string& name, std::vector<float> values, Shape shape) {
    keep.push_back(std::move(values));
    const std::vector<float>& v = keep.back();
    writer.AddTensor(name, DType::kF32, std::move(shape), v.data(), v.size() * sizeof(float));
  };
  for (const auto& [name, s] : stats.linears) {
    add(name + ".in_sum2", ToFloats(s.in_sum2), {1, s.in_dim});
    add(name + ".counts", {static_cast<float>(s.count)}, {1});
    if (!s.in_sum_abs.empty()) add(name + ".in_sum_abs", ToFloats(s.in_sum_abs), {s.in_dim});
    if (!s.in_max_abs.empty()) add(name + ".in_max_abs", s.in_max_abs, {s.in_dim});
    if (!s.out_max_abs.empty()) add(name + ".out_max_abs", s.out_max_abs, {s.out_dim});
    if (s.token_max_summary[4] > 0.0f) {
      add(name + ".tok_max_abs", {s.token_max_summary.begin(), s.token_max_summary.end()}, {5});
    }
  }
  writer.Write(path);
}

CalibrationStats LoadCalibrationStats(const std::string& path) {
  const std::string head = ReadFileHead(path, 4);
  if (head == "GGUF") return LoadGgufStats(path);
  return LoadLegacyImatrix(path);
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

std::vector<SpikeRank> RankSpikes(const CalibrationStats& stats) {
  std::vector<SpikeRank> ranks;
  std::vector<double> inputs;
  std::vector<double> outputs;
  for (const auto& [name, s] : stats.linears) {
    ranks.push_back(SpikeRank{name, s.MaxInput(), s.MaxOutput(), 0.0, 0.0});
    inputs.push_back(s.MaxInput());
    outputs.push_back(s.MaxOutput());
  }
  const double in_median = Median(inputs);
  const double out_median = Median(outputs);
  for (SpikeRank& r : ranks) {
    r.input_ratio = in_median > 0.0 ? r.max_input / in_median : 0.0;
    r.output_ratio = out_median > 0.0 ? r.max_output / out_median : 0.0;
  }
  std::sort(ranks.begin(), ranks.end(), [](const SpikeRank& a, const SpikeRank& b) {
    return std::max(a.input_ratio, a.output_ratio) > std::max(b.input_ratio, b.output_ratio);
  });
  return ranks;
}

}  // namespace mixq

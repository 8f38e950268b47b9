// The calibration statistics file: mixq's GGUF, llama.cpp's imatrix GGUF and legacy .dat, and the spike
// ranking. Apart from collecting (calibration.cc), so readers need no forward pass (the fuzz target).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/io/gguf.h"
#include "mixq/quant/calibration.h"

namespace mixq {
namespace {

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

CalibrationStats StatsFromGguf(const GgufFile& file) {
  const std::string& path = file.path;
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
CalibrationStats ParseLegacyImatrix(std::string_view bytes, const std::string& path) {
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
  if (ReadFileHead(path, 4) == "GGUF") return StatsFromGguf(ReadGguf(path));
  return ParseLegacyImatrix(ReadFileToString(path), path);
}

CalibrationStats ParseCalibrationStats(std::span<const std::byte> bytes, const std::string& name) {
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0) {
    GgufFile file = ParseGguf(bytes, name);
    file.path = name;
    return StatsFromGguf(file);
  }
  return ParseLegacyImatrix(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), name);
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

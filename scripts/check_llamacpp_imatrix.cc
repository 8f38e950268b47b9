// Developer helper for scripts/check_llamacpp_imatrix: compares mixq's imatrix-weighted ggml quantizers
// (QuantizeRowGgml with importance) byte for byte with llama.cpp's quantize_<type>(..., imatrix), called
// from a real libggml-base.so through dlopen. Not part of the CMake build; the script compiles it against
// build/'s static libraries.
//
// Usage: check_llamacpp_imatrix LIBGGML_BASE MODEL CALIB_TEXT [TENSOR ... | all]
// For each of the 12 weight types and each tensor (default blk.1.ffn_down.weight, blk.0.attn_q.weight;
// `all`: every linear weight and the output head that the calibration saw)
// it quantizes the tensor's real weights with five importance sets: none (the control: must always be
// identical), the real imatrix (mean x^2 per input channel from mixq's calibration over CALIB_TEXT), the
// real imatrix with its first 256 channels zero (whole blocks of zero weight), random log-uniform
// importances over 12 decades, and a random set with 10% of the channels exactly zero. llama.cpp gets the whole tensor in one call (nrows, n_per_row, one shared imatrix vector),
// mixq one row at a time, as QuantizeRowGgml's contract says. Exit status 1 if any block differs.
// The table also counts the blocks where llama.cpp's bytes with the imatrix differ from its bytes
// without: the share of the comparison that actually exercises the importance-weighted search.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mixq/formats/convert.h"
#include "mixq/formats/ggml_quant.h"
#include "mixq/model/model.h"
#include "mixq/quant/calibration.h"
#include "mixq/tensor/dtype.h"

namespace {

// llama.cpp's signature for every quantize_<type> in ggml-quants.h.
using QuantizeFn = size_t (*)(const float* src, void* dst, int64_t nrows, int64_t n_per_row, const float* imatrix);

struct Type {
  mixq::DType dtype;
  const char* symbol;  // exported by libggml-base.so
};

const Type kTypes[] = {
    {mixq::DType::kQ4_0, "quantize_q4_0"},   {mixq::DType::kQ4_1, "quantize_q4_1"},
    {mixq::DType::kQ5_0, "quantize_q5_0"},   {mixq::DType::kQ5_1, "quantize_q5_1"},
    {mixq::DType::kQ8_0, "quantize_q8_0"},   {mixq::DType::kQ2_K, "quantize_q2_K"},
    {mixq::DType::kQ3_K, "quantize_q3_K"},   {mixq::DType::kQ4_K, "quantize_q4_K"},
    {mixq::DType::kQ5_K, "quantize_q5_K"},   {mixq::DType::kQ6_K, "quantize_q6_K"},
    {mixq::DType::kIQ4_NL, "quantize_iq4_nl"}, {mixq::DType::kIQ4_XS, "quantize_iq4_xs"},
};

struct Weights {
  std::string name;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;  // [rows, cols]
};

struct ImportanceSet {
  std::string label;
  std::vector<float> values;  // [cols]; empty: no imatrix
};

// Totals of one (type, importance set) over all tensors.
struct Result {
  int64_t rows = 0;
  int64_t blocks = 0;
  int64_t identical = 0;
  std::string first_diff;  // "tensor row r block b", empty when every block matched
  double max_dequant_diff = 0.0;
  int64_t changed = 0;  // llama.cpp's blocks that differ from its own no-imatrix bytes: the imatrix mattered
};

std::vector<float> RandomImportance(int64_t cols, uint64_t seed, double zero_fraction) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log10(-6.0, 6.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<float> v(static_cast<size_t>(cols));
  for (auto& x : v) {
    x = static_cast<float>(std::pow(10.0, log10(rng)));
    if (unit(rng) < zero_fraction) x = 0.0f;
  }
  return v;
}

void Compare(const Type& type, QuantizeFn llama, const Weights& w, const ImportanceSet& imp, Result& r,
             std::vector<uint8_t>& plain) {
  const int64_t block = mixq::Traits(type.dtype).block_size;
  const size_t block_bytes = mixq::Traits(type.dtype).block_bytes;
  const size_t row_bytes = *mixq::StorageBytes(type.dtype, w.cols);
  const float* imatrix = imp.values.empty() ? nullptr : imp.values.data();

  std::vector<uint8_t> ref(row_bytes * static_cast<size_t>(w.rows));
  const size_t written = llama(w.values.data(), ref.data(), w.rows, w.cols, imatrix);
  if (written != ref.size()) {
    throw std::runtime_error(fmt::format("{} wrote {} bytes for {}, expected {}", type.symbol, written, w.name,
                                         ref.size()));
  }
  if (imatrix == nullptr) plain = ref;  // the "none" set runs first for each tensor
  for (size_t off = 0; off < ref.size(); off += block_bytes) {
    r.changed += std::memcmp(ref.data() + off, plain.data() + off, block_bytes) != 0 ? 1 : 0;
  }
  std::vector<uint8_t> ours(row_bytes);
  std::vector<float> a(static_cast<size_t>(w.cols)), b(static_cast<size_t>(w.cols));
  for (int64_t row = 0; row < w.rows; ++row) {
    const float* src = w.values.data() + row * w.cols;
    mixq::QuantizeRowGgml(type.dtype, src, ours.data(), w.cols, imatrix);
    const uint8_t* theirs = ref.data() + row * row_bytes;
    bool row_same = true;
    for (int64_t blk = 0; blk < w.cols / block; ++blk) {
      ++r.blocks;
      if (std::memcmp(ours.data() + blk * block_bytes, theirs + blk * block_bytes, block_bytes) == 0) {
        ++r.identical;
        continue;
      }
      row_same = false;
      if (r.first_diff.empty()) r.first_diff = fmt::format("{} row {} block {}", w.name, row, blk);
    }
    if (!row_same) {
      mixq::RowToFloat(type.dtype, ours.data(), a.data(), w.cols);
      mixq::RowToFloat(type.dtype, theirs, b.data(), w.cols);
      for (int64_t i = 0; i < w.cols; ++i) {
        r.max_dequant_diff = std::max(r.max_dequant_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
      }
    }
  }
  r.rows += w.rows;
}

int Run(int argc, char** argv) {
  if (argc < 4) {
    fmt::print(stderr, "usage: {} LIBGGML_BASE MODEL CALIB_TEXT [TENSOR ...]\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    fmt::print(stderr, "dlopen {}: {}\n", argv[1], dlerror());
    return 2;
  }
  std::vector<std::string> names;
  for (int i = 4; i < argc; ++i) names.emplace_back(argv[i]);
  if (names.empty()) names = {"blk.1.ffn_down.weight", "blk.0.attn_q.weight"};

  const mixq::Model model = mixq::LoadModel(argv[2]);
  std::map<std::string, const mixq::TensorView*> views;
  mixq::ForEachTensor(model.config, model.weights,
                      [&](const mixq::TensorSlot& slot) { views[slot.name] = slot.view; });

  // A few windows are enough: what matters is a real, uneven importance profile, not its precision.
  mixq::CalibrationOptions copt;
  copt.data_path = argv[3];
  copt.samples = 8;
  copt.ctx = 256;
  const auto windows = mixq::SampleCalibrationWindows(model, copt);
  const mixq::CalibrationStats stats = mixq::CollectCalibrationStats(model, windows, argv[3]);

  if (names.size() == 1 && names[0] == "all") {
    names.clear();
    mixq::ForEachTensor(model.config, model.weights, [&](const mixq::TensorSlot& slot) {
      if ((slot.role == mixq::TensorRole::kLinear || slot.role == mixq::TensorRole::kOutput) &&
          stats.Find(slot.name) != nullptr) {
        names.push_back(slot.name);
      }
    });
  }

  std::vector<Weights> tensors;
  std::map<std::string, std::vector<ImportanceSet>> sets;  // by tensor
  uint64_t seed = 1;
  for (const auto& name : names) {
    auto it = views.find(name);
    if (it == views.end()) throw std::runtime_error("no tensor " + name + " in " + argv[2]);
    const mixq::TensorView& v = *it->second;
    Weights w{name, v.rows(), v.cols(), {}};
    w.values.resize(static_cast<size_t>(w.rows * w.cols));
    for (int64_t r = 0; r < w.rows; ++r) mixq::RowToFloat(v.dtype, v.row(r), w.values.data() + r * w.cols, w.cols);
    const mixq::LinearStats* ls = stats.Find(name);
    if (ls == nullptr) throw std::runtime_error("no calibration statistics for " + name);
    std::vector<float> real = ls->Importance();
    if (static_cast<int64_t>(real.size()) != w.cols) throw std::runtime_error("importance size for " + name);
    const auto [lo, hi] = std::minmax_element(real.begin(), real.end());
    fmt::print("{}: {} x {} ({}), real importance {:.3g} .. {:.3g} over {} tokens\n", name, w.rows, w.cols,
               mixq::DTypeName(v.dtype), *lo, *hi, ls->count);
    // Degenerate blocks: the first super-block's worth of channels (256, i.e. 8 small blocks) with zero
    // importance, which sends the weighted searches through their all-weights-zero branches.
    std::vector<float> zero_block = real;
    std::fill(zero_block.begin(), zero_block.begin() + std::min<int64_t>(256, w.cols), 0.0f);
    sets[name] = {{"none", {}},
                  {"real", std::move(real)},
                  {"real, 256 zeros", std::move(zero_block)},
                  {"random", RandomImportance(w.cols, seed, 0.0)},
                  {"random+zeros", RandomImportance(w.cols, seed + 1, 0.1)}};
    seed += 2;
    tensors.push_back(std::move(w));
  }
  const std::vector<std::string> labels = {"none", "real", "real, 256 zeros", "random", "random+zeros"};

  fmt::print("\n| type | importance | rows | blocks | changed by imatrix | identical | first differing block "
             "| max abs dequant diff |\n");
  fmt::print("|---|---|---:|---:|---:|---:|---|---:|\n");
  bool all_ok = true;
  for (const Type& type : kTypes) {
    auto fn = reinterpret_cast<QuantizeFn>(dlsym(lib, type.symbol));
    if (fn == nullptr) throw std::runtime_error(std::string("missing symbol ") + type.symbol);
    std::vector<std::vector<uint8_t>> plain(tensors.size());  // llama.cpp's no-imatrix bytes per tensor
    for (size_t s = 0; s < labels.size(); ++s) {
      Result r;
      for (size_t t = 0; t < tensors.size(); ++t) Compare(type, fn, tensors[t], sets[tensors[t].name][s], r, plain[t]);
      const bool ok = r.identical == r.blocks;
      all_ok = all_ok && ok;
      fmt::print("| {} | {} | {} | {} | {:.1f}% | {:.2f}% | {} | {} |\n", mixq::DTypeName(type.dtype), labels[s],
                 r.rows, r.blocks, 100.0 * static_cast<double>(r.changed) / static_cast<double>(r.blocks),
                 100.0 * static_cast<double>(r.identical) / static_cast<double>(r.blocks),
                 ok ? "-" : r.first_diff, ok ? "-" : fmt::format("{:.3g}", r.max_dequant_diff));
    }
  }
  fmt::print("\n{}\n", all_ok ? "all blocks identical" : "MISMATCH: some blocks differ");
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "check_llamacpp_imatrix: {}\n", e.what());
    return 2;
  }
}

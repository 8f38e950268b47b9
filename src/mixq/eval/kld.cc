// KL divergence between two models' next-token distributions, its statistics, and the base-logits file.
#include "mixq/eval/kld.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/formats/float16.h"
#include "mixq/io/atomic_file.h"

namespace mixq {

// ---- Per-position measures -------------------------------------------------------------------

int64_t ArgMax(std::span<const float> values) {
  MIXQ_CHECK(!values.empty());
  int64_t best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[static_cast<size_t>(best)]) best = static_cast<int64_t>(i);
  }
  return best;
}

RowComparison CompareRows(const LogProbRow& base, const LogProbRow& quant) {
  MIXQ_CHECK_EQ(base.logits.size(), quant.logits.size());
  RowComparison r;
  // Every token with non-zero base probability counts (llama.cpp skips log p <= -16, an artefact of its
  // 16-bit file; those terms are below 1e-7 each).
  for (size_t i = 0; i < base.logits.size(); ++i) {
    const double lp = static_cast<double>(base.logits[i]) - base.log_normalizer;
    if (lp == -std::numeric_limits<double>::infinity()) continue;
    const double lq = static_cast<double>(quant.logits[i]) - quant.log_normalizer;
    r.kld += std::exp(lp) * (lp - lq);
  }
  r.same_top = ArgMax(base.logits) == ArgMax(quant.logits);
  return r;
}

// ---- Statistics ------------------------------------------------------------------------------

namespace {

// llama.cpp's mean_and_uncertainty: the mean and its standard error, the error 0 for 10 values or fewer.
ValueWithError MeanAndError(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double n = static_cast<double>(count);
  const double mean = sum / n;
  const double variance = sum2 / n - mean * mean;
  return {mean, variance > 0.0 && count > 10 ? std::sqrt(variance / (n - 1)) : 0.0};
}

// llama.cpp's covariance of the two means (0 for fewer than 10 values).
double CovarianceOfMeans(double sum_a, double sum_b, double sum_ab, int64_t count) {
  if (count < 10) return 0.0;
  const double n = static_cast<double>(count);
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1);
}

// sqrt of a variance that rounding may push a hair below zero (identical models: a - a).
double SqrtClamped(double variance) { return std::sqrt(std::max(variance, 0.0)); }

}  // namespace

double Percentile(std::span<const double> sorted_values, double fraction) {
  MIXQ_CHECK(!sorted_values.empty());
  if (fraction <= 0.0) return sorted_values.front();
  if (fraction >= 1.0) return sorted_values.back();
  double position = fraction * static_cast<double>(sorted_values.size() - 1);
  const size_t index = static_cast<size_t>(position);
  position -= static_cast<double>(index);
  const size_t next = std::min(index + 1, sorted_values.size() - 1);
  return (1.0 - position) * sorted_values[index] + position * sorted_values[next];
}

Percentiles ComputePercentiles(std::vector<double> values) {
  Percentiles p;
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  p.maximum = values.back();
  p.p99_9 = Percentile(values, 0.999);
  p.p99 = Percentile(values, 0.99);
  p.p95 = Percentile(values, 0.95);
  p.p90 = Percentile(values, 0.90);
  p.p75 = Percentile(values, 0.75);
  p.median = Percentile(values, 0.5);
  p.p25 = Percentile(values, 0.25);
  p.p10 = Percentile(values, 0.10);
  p.p5 = Percentile(values, 0.05);
  p.p1 = Percentile(values, 0.01);
  p.p0_1 = Percentile(values, 0.001);
  p.minimum = values.front();
  return p;
}

void KldStats::Add(double kld, bool same_top, double log_prob_quant, double log_prob_base) {
  const double nll = -log_prob_quant;
  const double nll_base = -log_prob_base;
  sum_nll_ += nll;
  sum_nll2_ += nll * nll;
  sum_nll_base_ += nll_base;
  sum_nll_base2_ += nll_base * nll_base;
  sum_nll_nll_base_ += nll * nll_base;
  sum_kld_ += kld;
  sum_kld2_ += kld * kld;
  const double p_diff = std::exp(log_prob_quant) - std::exp(log_prob_base);
  const double p_diff2 = p_diff * p_diff;
  sum_p_diff_ += p_diff;
  sum_p_diff2_ += p_diff2;
  sum_p_diff4_ += p_diff2 * p_diff2;
  n_same_top_ += same_top ? 1 : 0;
  ++count_;
  kld_values_.push_back(kld);
  p_diff_values_.push_back(p_diff);
}

KldSummary KldStats::Summarize(bool with_percentiles) const {
  KldSummary s;
  s.count = count_;
  if (count_ == 0) return s;
  // Perplexities: the error of the mean NLL carried through exp (d exp(x) = exp(x) dx).
  const ValueWithError log_ppl = MeanAndError(sum_nll_, sum_nll2_, count_);
  const ValueWithError log_ppl_base = MeanAndError(sum_nll_base_, sum_nll_base2_, count_);
  s.ppl_quant = {std::exp(log_ppl.value), std::exp(log_ppl.value) * log_ppl.error};
  s.ppl_base = {std::exp(log_ppl_base.value), std::exp(log_ppl_base.value) * log_ppl_base.error};
  const double cov = CovarianceOfMeans(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  const double error_product = log_ppl.error * log_ppl_base.error;
  s.log_ppl_correlation = error_product > 0.0 ? cov / error_product : std::numeric_limits<double>::quiet_NaN();
  // The two means are correlated (same tokens), so the error of their difference subtracts 2 cov.
  s.log_ppl_ratio = {log_ppl.value - log_ppl_base.value,
                     SqrtClamped(log_ppl.error * log_ppl.error + log_ppl_base.error * log_ppl_base.error - 2.0 * cov)};
  s.ppl_ratio = {std::exp(s.log_ppl_ratio.value), std::exp(s.log_ppl_ratio.value) * s.log_ppl_ratio.error};
  const double ppl_cov = s.ppl_quant.value * s.ppl_base.value * cov;
  s.ppl_diff = {s.ppl_quant.value - s.ppl_base.value,
                SqrtClamped(s.ppl_quant.error * s.ppl_quant.error + s.ppl_base.error * s.ppl_base.error - 2.0 * ppl_cov)};
  s.kld = MeanAndError(sum_kld_, sum_kld2_, count_);
  s.p_diff = MeanAndError(sum_p_diff_, sum_p_diff2_, count_);
  const ValueWithError p_diff_mse = MeanAndError(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(p_diff_mse.value);
  s.p_diff_rms = {rms, rms > 0.0 ? 0.5 / rms * p_diff_mse.error : 0.0};
  const double n = static_cast<double>(count_);
  const double same = static_cast<double>(n_same_top_) / n;
  s.same_top = {same, count_ > 1 ? std::sqrt(same * (1.0 - same) / (n - 1)) : 0.0};
  if (with_percentiles) {
    s.kld_percentiles = ComputePercentiles(kld_values_);
    s.p_diff_percentiles = ComputePercentiles(p_diff_values_);
  }
  return s;
}

// ---- Base-logits file ------------------------------------------------------------------------

namespace {

constexpr char kMagic[8] = {'M', 'I', 'X', 'Q', 'K', 'L', 'D', '\0'};
constexpr uint32_t kVersion = 1;

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

uint64_t Fnv1a(const void* data, size_t bytes, uint64_t hash = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    hash ^= p[i];
    hash *= kFnvPrime;
  }
  return hash;
}

template <typename T>
void Put(unsigned char* out, size_t offset, T value) {
  std::memcpy(out + offset, &value, sizeof value);
}
template <typename T>
T Get(const unsigned char* in, size_t offset) {
  T value;
  std::memcpy(&value, in + offset, sizeof value);
  return value;
}

// One chunk of one model's side: each scored position's logits and log-normalizer, and the
// log-probability of the token that follows as LogSoftmaxAt gives it (so PPL(base) is EvaluatePerplexity's).
struct BaseChunk {
  std::vector<float> logits;            // [rows, vocab]
  std::vector<double> log_normalizer;   // [rows]
  std::vector<double> target_log_prob;  // [rows]

  LogProbRow Row(int64_t r, int64_t vocab) const {
    return {{logits.data() + r * vocab, static_cast<size_t>(vocab)}, log_normalizer[static_cast<size_t>(r)]};
  }
};

void EncodeHeader(const BaseLogitsHeader& h, unsigned char* out) {
  std::memset(out, 0, kBaseLogitsHeaderBytes);
  std::memcpy(out, kMagic, sizeof kMagic);
  Put<uint32_t>(out, 8, h.version);
  Put<uint32_t>(out, 12, static_cast<uint32_t>(h.encoding));
  Put<uint32_t>(out, 16, h.scoring == PerplexityScoring::kLlamaCpp ? 0u : 1u);
  Put<int64_t>(out, 24, h.vocab);
  Put<int64_t>(out, 32, h.ctx);
  Put<int64_t>(out, 40, h.n_chunks);
  Put<int64_t>(out, 48, h.first_scored);
  Put<uint64_t>(out, 56, h.tokens_hash);
  Put<uint64_t>(out, 64, Fnv1a(out, 64));
}

class BaseLogitsWriter {
 public:
  BaseLogitsWriter(const std::string& path, const BaseLogitsHeader& header) : header_(header), file_(path) {
    unsigned char bytes[kBaseLogitsHeaderBytes];
    EncodeHeader(header_, bytes);
    file_.Write(bytes, sizeof bytes);
    buffer_.resize(static_cast<size_t>(header_.chunk_bytes()));
  }

  void WriteChunk(const BaseChunk& chunk) {
    const int64_t rows = header_.rows_per_chunk();
    const size_t vocab = static_cast<size_t>(header_.vocab);
    unsigned char* out = buffer_.data();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = chunk.logits.data() + r * header_.vocab;
      Put<double>(out, 0, chunk.target_log_prob[static_cast<size_t>(r)]);
      out += 8;
      if (header_.encoding == BaseLogitsEncoding::kF32) {
        Put<double>(out, 0, chunk.log_normalizer[static_cast<size_t>(r)]);
        std::memcpy(out + 8, row, vocab * sizeof(float));
        out += 8 + vocab * sizeof(float);
      } else {
        // Shifted so the top token is exactly 0, where float16 is finest and most probability lies.
        const float top = row[ArgMax({row, vocab})];
        for (size_t i = 0; i < vocab; ++i) Put<uint16_t>(out, 2 * i, F32ToF16(row[i] - top));
        out += 2 * vocab;
      }
    }
    const size_t data_bytes = static_cast<size_t>(out - buffer_.data());
    Put<uint64_t>(out, 0, Fnv1a(buffer_.data(), data_bytes));
    file_.Write(buffer_.data(), data_bytes + 8);
  }

  void Commit() { file_.Commit(); }

 private:
  BaseLogitsHeader header_;
  AtomicFile file_;
  std::vector<unsigned char> buffer_;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

class BaseLogitsReader {
 public:
  explicit BaseLogitsReader(const std::string& path) : path_(path), header_(ReadBaseLogitsHeader(path)) {
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) Fail("cannot open base logits file {}: {}", path, std::strerror(errno));
    if (std::fseek(file_.get(), kBaseLogitsHeaderBytes, SEEK_SET) != 0) {
      Fail("cannot seek in base logits file {}", path);
    }
    buffer_.resize(static_cast<size_t>(header_.chunk_bytes()));
  }

  const BaseLogitsHeader& header() const { return header_; }

  // Reads the next chunk (chunks are read in order) and checks its checksum.
  void ReadChunk(int64_t chunk, BaseChunk& out) {
    if (std::fread(buffer_.data(), 1, buffer_.size(), file_.get()) != buffer_.size()) {
      Fail("base logits file {}: cannot read chunk {} of {} ({} bytes)", path_, chunk + 1, header_.n_chunks,
           buffer_.size());
    }
    const size_t data_bytes = buffer_.size() - 8;
    const uint64_t stored = Get<uint64_t>(buffer_.data(), data_bytes);
    const uint64_t actual = Fnv1a(buffer_.data(), data_bytes);
    if (stored != actual) {
      Fail("base logits file {} is corrupt: chunk {} checksum is {:016x}, its data hashes to {:016x}", path_,
           chunk + 1, stored, actual);
    }
    const int64_t rows = header_.rows_per_chunk();
    const size_t vocab = static_cast<size_t>(header_.vocab);
    out.logits.resize(static_cast<size_t>(rows) * vocab);
    out.log_normalizer.resize(static_cast<size_t>(rows));
    out.target_log_prob.resize(static_cast<size_t>(rows));
    const unsigned char* in = buffer_.data();
    for (int64_t r = 0; r < rows; ++r) {
      float* row = out.logits.data() + r * header_.vocab;
      out.target_log_prob[static_cast<size_t>(r)] = Get<double>(in, 0);
      in += 8;
      if (header_.encoding == BaseLogitsEncoding::kF32) {
        out.log_normalizer[static_cast<size_t>(r)] = Get<double>(in, 0);
        std::memcpy(row, in + 8, vocab * sizeof(float));
        in += 8 + vocab * sizeof(float);
      } else {
        // The normalizer of the decoded values, so the decoded row is a distribution and KLD stays >= 0.
        for (size_t i = 0; i < vocab; ++i) row[i] = F16ToF32(Get<uint16_t>(in, 2 * i));
        out.log_normalizer[static_cast<size_t>(r)] = LogNormalizer({row, vocab});
        in += 2 * vocab;
      }
    }
  }

 private:
  std::string path_;
  BaseLogitsHeader header_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::vector<unsigned char> buffer_;
};

}  // namespace

const char* BaseLogitsEncodingName(BaseLogitsEncoding encoding) {
  return encoding == BaseLogitsEncoding::kF32 ? "f32" : "f16";
}

int64_t BaseLogitsHeader::row_bytes() const {
  return encoding == BaseLogitsEncoding::kF32 ? 16 + 4 * vocab : 8 + 2 * vocab;
}
int64_t BaseLogitsHeader::chunk_bytes() const { return rows_per_chunk() * row_bytes() + 8; }
int64_t BaseLogitsHeader::file_bytes() const { return kBaseLogitsHeaderBytes + n_chunks * chunk_bytes(); }

uint64_t TokensHash(std::span<const int32_t> tokens) {
  uint64_t hash = kFnvOffset;
  for (int32_t t : tokens) {
    const auto u = static_cast<uint32_t>(t);
    const unsigned char le[4] = {static_cast<unsigned char>(u), static_cast<unsigned char>(u >> 8),
                                 static_cast<unsigned char>(u >> 16), static_cast<unsigned char>(u >> 24)};
    hash = Fnv1a(le, 4, hash);
  }
  return hash;
}

BaseLogitsHeader ReadBaseLogitsHeader(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) Fail("cannot open base logits file {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fileno(file.get()), &st) != 0) Fail("cannot stat base logits file {}", path);
  unsigned char bytes[kBaseLogitsHeaderBytes];
  if (st.st_size < kBaseLogitsHeaderBytes || std::fread(bytes, 1, sizeof bytes, file.get()) != sizeof bytes) {
    Fail("{} is not a mixq base logits file: {} bytes, shorter than the {}-byte header", path,
         static_cast<int64_t>(st.st_size), kBaseLogitsHeaderBytes);
  }
  if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0) {
    Fail("{} is not a mixq base logits file (it does not start with \"MIXQKLD\")", path);
  }
  BaseLogitsHeader h;
  h.version = Get<uint32_t>(bytes, 8);
  if (h.version != kVersion) Fail("base logits file {} has version {}; this mixq reads version {}", path, h.version, kVersion);
  const uint64_t stored = Get<uint64_t>(bytes, 64);
  if (stored != Fnv1a(bytes, 64)) Fail("base logits file {} is corrupt: its header checksum does not match", path);
  const uint32_t encoding = Get<uint32_t>(bytes, 12);
  if (encoding != 1 && encoding != 2) Fail("base logits file {}: unknown encoding {} (expected 1 f32 or 2 f16)", path, encoding);
  h.encoding = static_cast<BaseLogitsEncoding>(encoding);
  const uint32_t scoring = Get<uint32_t>(bytes, 16);
  if (scoring > 1) Fail("base logits file {}: unknown scoring {} (expected 0 llamacpp or 1 gptq)", path, scoring);
  h.scoring = scoring == 0 ? PerplexityScoring::kLlamaCpp : PerplexityScoring::kGptq;
  h.vocab = Get<int64_t>(bytes, 24);
  h.ctx = Get<int64_t>(bytes, 32);
  h.n_chunks = Get<int64_t>(bytes, 40);
  h.first_scored = Get<int64_t>(bytes, 48);
  h.tokens_hash = Get<uint64_t>(bytes, 56);
  // Bounds that keep the size arithmetic below from overflowing; the checksum already vouches for them.
  if (h.vocab < 1 || h.vocab > (int64_t{1} << 24) || h.ctx < 2 || h.ctx > (int64_t{1} << 24) || h.n_chunks < 1 ||
      h.n_chunks > (int64_t{1} << 24) || h.first_scored < 0 || h.first_scored > h.ctx - 2) {
    Fail("base logits file {}: implausible header (vocab {}, ctx {}, chunks {}, first scored {})", path, h.vocab,
         h.ctx, h.n_chunks, h.first_scored);
  }
  if (static_cast<int64_t>(st.st_size) != h.file_bytes()) {
    Fail("base logits file {} has {} bytes, but its header ({} chunks of {} positions x {} tokens, {}) needs {}{}",
         path, static_cast<int64_t>(st.st_size), h.n_chunks, h.rows_per_chunk(), h.vocab,
         BaseLogitsEncodingName(h.encoding), h.file_bytes(),
         static_cast<int64_t>(st.st_size) < h.file_bytes() ? " (truncated?)" : "");
  }
  return h;
}

// ---- Evaluation ------------------------------------------------------------------------------

namespace {

// Fills `out` with the base side of chunk `chunk` (whose window starts at chunk * ctx).
using BaseSourceFn = std::function<void(int64_t chunk, BaseChunk& out)>;

void ScoreWindow(const ChunkPlan& plan, int64_t vocab, const float* logits, std::span<const int32_t> window,
                 BaseChunk& out) {
  const int64_t rows = plan.ctx - 1 - plan.first_scored;
  out.logits.resize(static_cast<size_t>(rows * vocab));
  out.log_normalizer.resize(static_cast<size_t>(rows));
  out.target_log_prob.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = plan.first_scored + r;
    const std::span<const float> row{logits + i * vocab, static_cast<size_t>(vocab)};
    std::copy(row.begin(), row.end(), out.logits.begin() + r * vocab);
    out.log_normalizer[static_cast<size_t>(r)] = LogNormalizer(row);
    out.target_log_prob[static_cast<size_t>(r)] = LogSoftmaxAt(row, window[static_cast<size_t>(i + 1)]).log_prob;
  }
}

// Runs `model` on one window only: ForEachChunkLogits over a one-chunk plan of the window's tokens.
void EvaluateWindow(const Model& model, std::span<const int32_t> tokens, const ChunkPlan& plan, int64_t chunk,
                    BaseChunk& out) {
  ChunkPlan one = plan;
  one.n_chunks = 1;
  try {
    ForEachChunkLogits(model, tokens.subspan(static_cast<size_t>(chunk * plan.ctx), static_cast<size_t>(plan.ctx)),
                       one, [&](int64_t, const float* logits, std::span<const int32_t> window) {
                         ScoreWindow(plan, model.config.vocab_size, logits, window, out);
                       });
  } catch (const Error& e) {
    Fail("{}, chunk {}: {}", model.path, chunk + 1, e.what());
  }
}

KldResult RunKld(const Model& quant, std::span<const int32_t> tokens, const ChunkPlan& plan,
                 const BaseSourceFn& base_source, BaseLogitsWriter* writer, const KldOptions& options) {
  const int64_t vocab = quant.config.vocab_size;
  const int64_t rows = plan.ctx - 1 - plan.first_scored;
  KldResult result;
  result.ctx = plan.ctx;
  result.n_chunks = plan.n_chunks;
  result.text_tokens = static_cast<int64_t>(tokens.size());
  KldStats stats;
  BaseChunk base_chunk;
  BaseChunk quant_chunk;
  Timer timer;
  for (int64_t chunk = 0; chunk < plan.n_chunks; ++chunk) {
    base_source(chunk, base_chunk);
    MIXQ_CHECK_EQ(base_chunk.logits.size(), static_cast<size_t>(rows * vocab));
    if (writer != nullptr) writer->WriteChunk(base_chunk);
    EvaluateWindow(quant, tokens, plan, chunk, quant_chunk);
    for (int64_t r = 0; r < rows; ++r) {
      const RowComparison c = CompareRows(base_chunk.Row(r, vocab), quant_chunk.Row(r, vocab));
      stats.Add(c.kld, c.same_top, quant_chunk.target_log_prob[static_cast<size_t>(r)],
                base_chunk.target_log_prob[static_cast<size_t>(r)]);
    }
    if (options.on_chunk) options.on_chunk(chunk, plan.n_chunks, stats.Summarize(/*with_percentiles=*/false));
  }
  if (writer != nullptr) writer->Commit();
  result.seconds = timer.ElapsedSeconds();
  result.summary = stats.Summarize();
  return result;
}

void CheckTokens(std::span<const int32_t> tokens, int64_t vocab, const std::string& model_path) {
  for (int32_t t : tokens) {
    if (t < 0 || t >= vocab) Fail("token {} is outside the vocabulary ({} tokens) of {}", t, vocab, model_path);
  }
}

}  // namespace

std::vector<int32_t> TokensForKld(const std::string& text, const Model& base, const Model& quant, std::string* note) {
  const Vocab& base_vocab = base.tokenizer.vocab();
  const Vocab& quant_vocab = quant.tokenizer.vocab();
  if (base.config.vocab_size != quant.config.vocab_size) {
    throw Error(fmt::format("the models' vocabularies differ: BASE {} has {} tokens, QUANT {} has {}; KL divergence "
                            "compares distributions over the same tokens",
                            base.path, base.config.vocab_size, quant.path, quant.config.vocab_size));
  }
  std::vector<int32_t> base_tokens = TokenizeForPerplexity(base, text);
  const std::vector<int32_t> quant_tokens = TokenizeForPerplexity(quant, text);
  if (base_tokens == quant_tokens) return base_tokens;
  size_t first = 0;
  while (first < base_tokens.size() && first < quant_tokens.size() && base_tokens[first] == quant_tokens[first]) {
    ++first;
  }
  if (base_vocab.model != quant_vocab.model || base_vocab.pieces != quant_vocab.pieces) {
    size_t piece = 0;
    while (piece < base_vocab.pieces.size() && piece < quant_vocab.pieces.size() &&
           base_vocab.pieces[piece] == quant_vocab.pieces[piece]) {
      ++piece;
    }
    throw Error(fmt::format("the models' tokenizers differ: BASE {} gives {} tokens, QUANT {} gives {} (first "
                            "different at token {}), and their vocabularies differ from piece {} on",
                            base.path, base_tokens.size(), quant.path, quant_tokens.size(), first, piece));
  }
  if (note != nullptr) {
    *note = fmt::format("QUANT {} cuts the text into {} tokens, BASE {} into {} (first different at token {}) with "
                        "the same vocabulary (a text normalization the GGUF does not keep?); both are scored on "
                        "BASE's tokens, as llama.cpp's --kl-divergence does. --tokenizer FILE gives both one "
                        "tokenizer.",
                        quant.path, quant_tokens.size(), base.path, base_tokens.size(), first);
  }
  return base_tokens;
}

KldResult EvaluateKld(const Model& base, const Model& quant, std::span<const int32_t> tokens,
                      const KldOptions& options) {
  if (base.config.vocab_size != quant.config.vocab_size) {
    Fail("the models' vocabularies differ: BASE {} has {} tokens, QUANT {} has {}; KL divergence compares "
         "distributions over the same tokens",
         base.path, base.config.vocab_size, quant.path, quant.config.vocab_size);
  }
  CheckTokens(tokens, base.config.vocab_size, base.path);
  const ChunkPlan plan =
      PlanChunks(static_cast<int64_t>(tokens.size()), options.ctx, options.max_chunks, options.scoring);
  std::unique_ptr<BaseLogitsWriter> writer;
  if (!options.save_base_path.empty()) {
    BaseLogitsHeader header;
    header.encoding = options.save_encoding;
    header.scoring = plan.scoring;
    header.vocab = base.config.vocab_size;
    header.ctx = plan.ctx;
    header.n_chunks = plan.n_chunks;
    header.first_scored = plan.first_scored;
    header.tokens_hash = TokensHash(tokens.first(static_cast<size_t>(plan.n_chunks * plan.ctx)));
    writer = std::make_unique<BaseLogitsWriter>(options.save_base_path, header);
  }
  return RunKld(
      quant, tokens, plan, [&](int64_t chunk, BaseChunk& out) { EvaluateWindow(base, tokens, plan, chunk, out); },
      writer.get(), options);
}

KldResult EvaluateKldFromFile(const std::string& base_logits_path, const Model& quant,
                              std::span<const int32_t> tokens, const KldOptions& options) {
  if (!options.save_base_path.empty()) {
    Fail("--save-base {} with --base-logits {}: the base logits are read, not computed, so there is nothing to save",
         options.save_base_path, base_logits_path);
  }
  BaseLogitsReader reader(base_logits_path);
  const BaseLogitsHeader& h = reader.header();
  if (h.vocab != quant.config.vocab_size) {
    Fail("base logits file {} has a vocabulary of {} tokens, but QUANT {} has {}", base_logits_path, h.vocab,
         quant.path, quant.config.vocab_size);
  }
  if (h.ctx != options.ctx) {
    Fail("base logits file {} was made with --ctx {}, not {}", base_logits_path, h.ctx, options.ctx);
  }
  if (h.scoring != options.scoring) {
    Fail("base logits file {} was made with --scoring {}, not {}", base_logits_path, PerplexityScoringName(h.scoring),
         PerplexityScoringName(options.scoring));
  }
  CheckTokens(tokens, quant.config.vocab_size, quant.path);
  const ChunkPlan plan =
      PlanChunks(static_cast<int64_t>(tokens.size()), options.ctx, options.max_chunks, options.scoring);
  if (plan.n_chunks != h.n_chunks) {
    Fail("base logits file {} holds {} chunks, but this text and --chunks give {}; pass --chunks {}", base_logits_path,
         h.n_chunks, plan.n_chunks, h.n_chunks);
  }
  MIXQ_CHECK_EQ(plan.first_scored, h.first_scored);
  const uint64_t hash = TokensHash(tokens.first(static_cast<size_t>(plan.n_chunks * plan.ctx)));
  if (hash != h.tokens_hash) {
    Fail("base logits file {} was made from other tokens (hash {:016x}, this text gives {:016x}): a different "
         "text or tokenizer",
         base_logits_path, h.tokens_hash, hash);
  }
  return RunKld(
      quant, tokens, plan, [&](int64_t chunk, BaseChunk& out) { reader.ReadChunk(chunk, out); }, nullptr, options);
}

}  // namespace mixq

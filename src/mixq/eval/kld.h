// KL divergence of a quantized model's next-token distributions from a base model's, with the
// statistics llama.cpp's `llama-perplexity --kl-divergence` reports, and the base-logits file that
// lets the base model's side be computed once and reused.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mixq/eval/perplexity.h"
#include "mixq/kernels/ops.h"
#include "mixq/model/model.h"

namespace mixq {

// ---- Per-position measures -------------------------------------------------------------------

// log sum_i exp(logits_i): kernels/ops.h's LogSumExp, under the name llama.cpp's KLD code gives it.
inline double LogNormalizer(std::span<const float> logits) { return LogSumExp(logits); }

// Index of the first largest value.
int64_t ArgMax(std::span<const float> values);

// One next-token distribution: log p_i = logits[i] - log_normalizer.
struct LogProbRow {
  std::span<const float> logits;
  double log_normalizer = 0.0;
};

struct RowComparison {
  double kld = 0.0;       // sum_i p_i (log p_i - log q_i), p = base, q = quant; every token counted
  bool same_top = false;  // the two rows' first argmax is the same token
};
// Compares two distributions over the same vocabulary (base first).
RowComparison CompareRows(const LogProbRow& base, const LogProbRow& quant);

// ---- Statistics ------------------------------------------------------------------------------

struct ValueWithError {
  double value = 0.0;
  double error = 0.0;  // llama.cpp's "±": a standard error, 0 with 10 values or fewer
};

// llama.cpp's order statistics: `Percentile` interpolates linearly between the sorted values at
// fraction * (n - 1); the median is Percentile(0.5).
struct Percentiles {
  double maximum = 0.0, p99_9 = 0.0, p99 = 0.0, p95 = 0.0, p90 = 0.0, p75 = 0.0, median = 0.0, p25 = 0.0,
         p10 = 0.0, p5 = 0.0, p1 = 0.0, p0_1 = 0.0, minimum = 0.0;
};
double Percentile(std::span<const double> sorted_values, double fraction);
Percentiles ComputePercentiles(std::vector<double> values);

struct KldSummary {
  int64_t count = 0;  // positions compared
  ValueWithError ppl_quant;          // Mean PPL(Q)
  ValueWithError ppl_base;           // Mean PPL(base)
  double log_ppl_correlation = 0.0;  // Cor(ln PPL(Q), ln PPL(base)); NaN when either error is 0
  ValueWithError log_ppl_ratio;      // Mean ln(PPL(Q)/PPL(base))
  ValueWithError ppl_ratio;          // Mean PPL(Q)/PPL(base)
  ValueWithError ppl_diff;           // Mean PPL(Q)-PPL(base)
  ValueWithError kld;                // Mean KLD
  Percentiles kld_percentiles;
  ValueWithError p_diff;             // Mean Δp = p_Q(token) - p_base(token), as a fraction (not %)
  Percentiles p_diff_percentiles;
  ValueWithError p_diff_rms;         // RMS Δp
  ValueWithError same_top;           // fraction of positions whose top token agrees
};

// Sums and per-position values, in the order positions are added (so results are reproducible).
class KldStats {
 public:
  // One scored position: its KL divergence, whether the top tokens agree, and the log-probability each
  // model gives the token that actually follows.
  void Add(double kld, bool same_top, double log_prob_quant, double log_prob_base);
  int64_t count() const { return count_; }
  // Everything llama.cpp prints; percentiles only when `with_percentiles` (they sort copies).
  KldSummary Summarize(bool with_percentiles = true) const;

 private:
  int64_t count_ = 0;
  int64_t n_same_top_ = 0;
  double sum_nll_ = 0.0, sum_nll2_ = 0.0;
  double sum_nll_base_ = 0.0, sum_nll_base2_ = 0.0, sum_nll_nll_base_ = 0.0;
  double sum_kld_ = 0.0, sum_kld2_ = 0.0;
  double sum_p_diff_ = 0.0, sum_p_diff2_ = 0.0, sum_p_diff4_ = 0.0;
  std::vector<double> kld_values_;
  std::vector<double> p_diff_values_;
};

// ---- Base-logits file (layout in docs/kld.md) ------------------------------------------------

enum class BaseLogitsEncoding : uint32_t {
  kF32 = 1,  // the logits as float32 and their log-normalizer as float64: reuse is bit-exact
  kF16 = 2,  // the logits minus their maximum as float16, renormalised on reading: half the size
};
const char* BaseLogitsEncodingName(BaseLogitsEncoding encoding);

struct BaseLogitsHeader {
  uint32_t version = 1;
  BaseLogitsEncoding encoding = BaseLogitsEncoding::kF16;
  PerplexityScoring scoring = PerplexityScoring::kLlamaCpp;
  int64_t vocab = 0;
  int64_t ctx = 0;
  int64_t n_chunks = 0;
  int64_t first_scored = 0;
  uint64_t tokens_hash = 0;  // TokensHash of the n_chunks * ctx text tokens evaluated

  int64_t rows_per_chunk() const { return ctx - 1 - first_scored; }
  int64_t row_bytes() const;    // one scored position (see docs/kld.md)
  int64_t chunk_bytes() const;  // rows + the chunk's u64 checksum
  int64_t file_bytes() const;
};
inline constexpr int64_t kBaseLogitsHeaderBytes = 72;

// FNV-1a 64 of the token ids as little-endian int32: ties a base-logits file to its text and windows.
uint64_t TokensHash(std::span<const int32_t> tokens);

// Reads and validates the header (magic, version, encoding, sizes, header checksum, file length);
// throws mixq::Error naming `path` if anything is wrong.
BaseLogitsHeader ReadBaseLogitsHeader(const std::string& path);

// ---- Evaluation ------------------------------------------------------------------------------

struct KldOptions {
  int64_t ctx = 512;
  int64_t max_chunks = -1;
  PerplexityScoring scoring = PerplexityScoring::kLlamaCpp;
  // When set, EvaluateKld writes the base model's log-probabilities here (atomically).
  std::string save_base_path;
  BaseLogitsEncoding save_encoding = BaseLogitsEncoding::kF16;
  // Called after each chunk with the running statistics (no percentiles), e.g. to print a row.
  std::function<void(int64_t chunk, int64_t n_chunks, const KldSummary& running)> on_chunk;
};

struct KldResult {
  KldSummary summary;
  int64_t ctx = 0;
  int64_t n_chunks = 0;
  int64_t text_tokens = 0;
  double seconds = 0.0;
};

// The tokens BASE and QUANT are both scored on: BASE's cut of `text` (TokenizeForPerplexity). QUANT's own
// cut may differ only where the two vocabularies are the same piece for piece and only the text's
// normalization differs (a GGUF keeps no sentencepiece normalizer, so docs-5M's HF folder and its GGUF cut
// runs of spaces differently); QUANT is then scored on BASE's tokens, as llama.cpp's --kl-divergence scores
// the quantized model on the tokens saved with the base logits, and `note` (if given) says so. Different
// vocabularies are a mixq::Error: the distributions would be over different tokens.
std::vector<int32_t> TokensForKld(const std::string& text, const Model& base, const Model& quant,
                                  std::string* note = nullptr);

// Compares `quant` with `base` on `tokens` (TokenizeForPerplexity of BASE), chunk by chunk over the
// same windows and scored positions as EvaluatePerplexity, so PPL(base) equals `mixq ppl BASE`. Only
// one chunk's base log-probabilities are held at a time. Throws mixq::Error if the vocabularies differ.
KldResult EvaluateKld(const Model& base, const Model& quant, std::span<const int32_t> tokens,
                      const KldOptions& options);

// The same with the base side read from a file EvaluateKld saved. The file must match `quant`'s
// vocabulary, options.ctx, options.scoring, the number of chunks the options and text give, and the
// tokens themselves (by hash); anything else is a mixq::Error naming the file.
KldResult EvaluateKldFromFile(const std::string& base_logits_path, const Model& quant,
                              std::span<const int32_t> tokens, const KldOptions& options);

}  // namespace mixq

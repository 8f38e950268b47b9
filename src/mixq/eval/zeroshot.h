// Zero-shot evaluation: log-likelihood of each candidate continuation given its context, with the
// shared context run once and its KV cache reused for every candidate; acc, acc_norm and their errors.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mixq/eval/zeroshot_data.h"
#include "mixq/model/model.h"

namespace mixq {

// A candidate as tokens: context then continuation, tokenized together (as lm-evaluation-harness does,
// so the boundary merges as in running text); tokens from `first_scored` on are the continuation.
struct TokenizedCandidate {
  std::vector<int32_t> tokens;
  int64_t first_scored = 1;  // >= 1: the first token is never scored (it has nothing before it)
};

struct CandidateScore {
  double log_prob = 0.0;  // sum of log p(token | all tokens before it) over the continuation
  int64_t n_tokens = 0;   // continuation tokens scored
  bool greedy = true;     // every continuation token was the arg-max of its logits (ties count as hits)
};

// What the scorer needs from a model: run `tokens` at positions pos0, pos0 + 1, ... on top of whatever
// the cache holds below pos0, and return logits [tokens.size(), vocab] (all_logits) or the last row only.
// The pointer stays valid until the next call. Forward() is one; tests pass a fake with known logits.
using LogitsFn = std::function<const float*(std::span<const int32_t> tokens, int64_t pos0, bool all_logits)>;

// Log-likelihoods of every candidate of one item. With `reuse_prefix`, the longest token prefix all
// candidates share (up to the earliest first_scored) is run once and each candidate continues from
// pos0 = that length, overwriting the cache rows past it; without, each candidate runs from position 0.
// Both give the same numbers up to float rounding. Adds the tokens run to `*tokens_run` when given.
std::vector<CandidateScore> ScoreCandidates(std::span<const TokenizedCandidate> candidates, int64_t vocab,
                                            const LogitsFn& logits_fn, bool reuse_prefix,
                                            int64_t* tokens_run = nullptr);

// The candidates of `item` as `tokenizer` encodes them (BOS first when the vocabulary adds one), cut
// from the left to at most `max_tokens` as lm-eval does for long inputs; sets *truncated if any was cut.
std::vector<TokenizedCandidate> TokenizeItem(const Tokenizer& tokenizer, const TaskItem& item, int64_t max_tokens,
                                             bool* truncated = nullptr);

// Which candidate an item's scores pick: acc takes the highest log-likelihood, acc_norm the highest
// log-likelihood per byte of continuation (lm-eval's acc_norm); ties go to the first. LAMBADA's single
// candidate is right when it is the greedy continuation.
struct ItemOutcome {
  int32_t predicted = 0;
  int32_t predicted_norm = 0;
  bool correct = false;
  bool correct_norm = false;
  double gold_log_prob = 0.0;  // log-likelihood of the right continuation (LAMBADA's target perplexity)
};
ItemOutcome JudgeItem(ZeroShotTask task, const TaskItem& item, std::span<const CandidateScore> scores);

// `limit` items out of `n_items`, chosen by a seeded Fisher-Yates shuffle (mt19937_64, so the same on
// every platform) and returned in file order; limit <= 0 or >= n_items means all of them.
std::vector<int64_t> SelectItems(int64_t n_items, int64_t limit, uint64_t seed);

struct ZeroShotOptions {
  int64_t limit = 0;  // 0: all items
  uint64_t seed = 1234;
  bool reuse_prefix = true;
  int64_t max_tokens = 0;  // 0: the model's trained context
  bool progress = true;
  // > 1: that many items run at once, each on its own thread and KV cache, the kernels single-threaded
  // inside (OpenMP does not nest). 1: one item at a time, the kernels using every thread. Small models
  // want the first: their kernels are too short to share between threads.
  int item_threads = 1;
};

struct TaskResult {
  ZeroShotTask task = ZeroShotTask::kHellaSwag;
  int64_t n_items = 0;       // evaluated
  int64_t n_available = 0;   // in the file
  double acc = 0.0;
  double acc_stderr = 0.0;   // sqrt(p (1 - p) / (n - 1)), lm-eval's sample standard error
  double acc_norm = 0.0;     // = acc where normalisation changes nothing (WinoGrande, LAMBADA, MMLU)
  double acc_norm_stderr = 0.0;
  bool has_target_ppl = false;  // LAMBADA: perplexity of the target word, exp(-mean log-likelihood)
  double target_ppl = 0.0;
  double target_ppl_stderr = 0.0;
  int64_t truncated = 0;     // items cut on the left to fit max_tokens
  int64_t tokens_run = 0;    // tokens through the model
  double seconds = 0.0;
  double items_per_second = 0.0;
  std::vector<int64_t> item_indices;       // which items (indices into the file's items)
  std::vector<ItemOutcome> outcomes;       // one per evaluated item
  std::vector<std::vector<CandidateScore>> scores;  // per item, per candidate
};

// The item_threads `--parallel auto` picks: every thread on separate items for models narrower than
// 1024 (their matrix products and attention are too short to split across threads), else 1.
int AutoItemThreads(const Model& model);

// Tokenizes, scores and judges the selected items of `data` with `model`.
TaskResult EvaluateZeroShotTask(const Model& model, const TaskData& data, const ZeroShotOptions& options);

// The same with any logits source (tests): one LogitsFn per worker thread (each called by one thread
// at a time, as ScoreCandidates calls it); options.item_threads is ignored in favour of workers.size().
TaskResult EvaluateZeroShotTaskWith(const Tokenizer& tokenizer, int64_t vocab, std::span<const LogitsFn> workers,
                                    const TaskData& data, const ZeroShotOptions& options, int64_t max_tokens);

// Mean of acc and of acc_norm over tasks (each task weighs the same), with errors combined as for
// independent samples: sqrt(sum stderr^2) / n_tasks.
struct ZeroShotAverage {
  double acc = 0.0, acc_stderr = 0.0, acc_norm = 0.0, acc_norm_stderr = 0.0;
};
ZeroShotAverage AverageTasks(std::span<const TaskResult> results);

// Mean and standard error of the paired per-item difference (b - a) in correctness, for two runs over
// the same items: the error of a Δ is smaller than either run's because the items are shared.
struct PairedDelta {
  double delta = 0.0;
  double stderr_value = 0.0;
};
PairedDelta PairedAccuracyDelta(const TaskResult& a, const TaskResult& b, bool norm);

}  // namespace mixq

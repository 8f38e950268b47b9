// Zero-shot scoring: candidates tokenized as lm-eval does, contexts run once (KV prefix reuse), metrics.
#include "mixq/eval/zeroshot.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <exception>
#include <random>

#include <omp.h>

#include <fmt/format.h>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/progress.h"
#include "mixq/base/threads.h"
#include "mixq/base/timer.h"
#include "mixq/eval/perplexity.h"
#include "mixq/model/forward.h"

namespace mixq {
namespace {

// lm-eval's acc_norm divides by len(continuation) of the Python string: code points, not bytes.
int64_t CodePoints(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

size_t ArgMax(std::span<const double> values) {
  return static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

// The standard error of a mean, as lm-eval's mean_stderr: sample standard deviation / sqrt(n).
double MeanStderr(std::span<const double> values) {
  const auto n = static_cast<double>(values.size());
  if (values.size() < 2) return 0.0;
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double ss = 0.0;
  for (double v : values) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (n - 1) / n);
}

double Mean(std::span<const double> values) {
  return values.empty() ? 0.0 : std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

}  // namespace

std::vector<CandidateScore> ScoreCandidates(std::span<const TokenizedCandidate> candidates, int64_t vocab,
                                            const LogitsFn& logits_fn, bool reuse_prefix, int64_t* tokens_run) {
  MIXQ_CHECK(!candidates.empty());
  for (const TokenizedCandidate& c : candidates) {
    MIXQ_CHECK_GE(c.first_scored, 1);
    MIXQ_CHECK_LT(c.first_scored, static_cast<int64_t>(c.tokens.size()));
  }
  // The prefix must end at or before every candidate's first scored token, so that each candidate's
  // scored positions are either the prefix's last logits row or rows of its own continuation run.
  int64_t prefix = 0;
  if (reuse_prefix) {
    prefix = static_cast<int64_t>(candidates[0].tokens.size());
    for (const TokenizedCandidate& c : candidates) {
      const auto mismatch = std::mismatch(c.tokens.begin(), c.tokens.end(), candidates[0].tokens.begin(),
                                          candidates[0].tokens.end());
      prefix = std::min<int64_t>(prefix, mismatch.first - c.tokens.begin());
      prefix = std::min(prefix, c.first_scored);
    }
  }
  std::vector<float> prefix_logits;
  int64_t run = 0;
  if (prefix > 0) {
    const float* last = logits_fn(std::span(candidates[0].tokens).first(static_cast<size_t>(prefix)), 0, false);
    prefix_logits.assign(last, last + vocab);
    run += prefix;
  }
  std::vector<CandidateScore> scores;
  scores.reserve(candidates.size());
  for (const TokenizedCandidate& c : candidates) {
    const auto n = static_cast<int64_t>(c.tokens.size());
    const float* rows = logits_fn(std::span(c.tokens).subspan(static_cast<size_t>(prefix)), prefix, true);
    run += n - prefix;
    CandidateScore score;
    for (int64_t t = c.first_scored; t < n; ++t) {
      const int64_t pos = t - 1;  // the position whose logits predict token t
      const float* row = pos < prefix ? prefix_logits.data() : rows + (pos - prefix) * vocab;
      const std::span<const float> logits(row, static_cast<size_t>(vocab));
      const int32_t token = c.tokens[static_cast<size_t>(t)];
      score.log_prob += LogSoftmaxAt(logits, token).log_prob;
      score.greedy = score.greedy && logits[static_cast<size_t>(token)] >= *std::max_element(logits.begin(), logits.end());
      ++score.n_tokens;
    }
    scores.push_back(score);
  }
  if (tokens_run != nullptr) *tokens_run += run;
  return scores;
}

std::vector<TokenizedCandidate> TokenizeItem(const Tokenizer& tokenizer, const TaskItem& item, int64_t max_tokens,
                                             bool* truncated) {
  MIXQ_CHECK_EQ(item.contexts.size(), item.continuations.size());
  MIXQ_CHECK_GE(max_tokens, 2);
  const bool add_bos = tokenizer.vocab().add_bos;
  std::vector<TokenizedCandidate> out;
  std::string last_context;
  int64_t last_context_tokens = -1;
  for (size_t i = 0; i < item.contexts.size(); ++i) {
    std::string context = item.contexts[i];
    std::string continuation = item.continuations[i];
    // lm-eval moves a context's trailing spaces to the continuation, so the space joins the next word.
    while (!context.empty() && context.back() == ' ') {
      context.pop_back();
      continuation.insert(continuation.begin(), ' ');
    }
    if (continuation.empty()) Fail("{}: candidate {} has an empty continuation", item.source, i);
    TokenizedCandidate c;
    c.tokens = tokenizer.Encode(context + continuation, add_bos);
    if (context != last_context || last_context_tokens < 0) {
      last_context = context;
      last_context_tokens = static_cast<int64_t>(tokenizer.Encode(context, add_bos).size());
    }
    c.first_scored = last_context_tokens;
    if (c.first_scored == 0) {  // no BOS and no context: BOS stands in, as lm-eval's prefix token does
      c.tokens.insert(c.tokens.begin(), tokenizer.bos());
      c.first_scored = 1;
    }
    // BPE can merge the continuation's first bytes into the context's last token; that token is then
    // the first scored one, so every candidate scores at least one token.
    c.first_scored = std::min<int64_t>(c.first_scored, static_cast<int64_t>(c.tokens.size()) - 1);
    MIXQ_CHECK_GE(c.first_scored, 1);
    if (static_cast<int64_t>(c.tokens.size()) > max_tokens) {
      const int64_t drop = static_cast<int64_t>(c.tokens.size()) - max_tokens;
      c.tokens.erase(c.tokens.begin(), c.tokens.begin() + drop);
      c.first_scored = std::max<int64_t>(1, c.first_scored - drop);
      if (truncated != nullptr) *truncated = true;
    }
    out.push_back(std::move(c));
  }
  return out;
}

ItemOutcome JudgeItem(ZeroShotTask task, const TaskItem& item, std::span<const CandidateScore> scores) {
  MIXQ_CHECK_EQ(scores.size(), item.continuations.size());
  ItemOutcome o;
  o.gold_log_prob = scores[static_cast<size_t>(item.gold)].log_prob;
  if (task == ZeroShotTask::kLambada) {
    o.correct = o.correct_norm = scores[0].greedy;
    return o;
  }
  std::vector<double> ll, ll_norm;
  for (size_t i = 0; i < scores.size(); ++i) {
    ll.push_back(scores[i].log_prob);
    ll_norm.push_back(scores[i].log_prob / static_cast<double>(std::max<int64_t>(1, CodePoints(item.continuations[i]))));
  }
  o.predicted = static_cast<int32_t>(ArgMax(ll));
  o.predicted_norm = static_cast<int32_t>(ArgMax(ll_norm));
  o.correct = o.predicted == item.gold;
  o.correct_norm = o.predicted_norm == item.gold;
  return o;
}

std::vector<int64_t> SelectItems(int64_t n_items, int64_t limit, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(n_items));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (limit <= 0 || limit >= n_items) return order;
  std::mt19937_64 rng(seed);
  for (int64_t i = n_items - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  order.resize(static_cast<size_t>(limit));
  std::sort(order.begin(), order.end());
  return order;
}

TaskResult EvaluateZeroShotTaskWith(const Tokenizer& tokenizer, int64_t vocab, std::span<const LogitsFn> workers,
                                    const TaskData& data, const ZeroShotOptions& options, int64_t max_tokens) {
  MIXQ_CHECK(!workers.empty());
  if (data.items.empty()) Fail("{}: no items to evaluate", ZeroShotTaskName(data.task));
  TaskResult r;
  r.task = data.task;
  r.n_available = static_cast<int64_t>(data.items.size());
  r.item_indices = SelectItems(r.n_available, options.limit, options.seed);
  r.n_items = static_cast<int64_t>(r.item_indices.size());
  const auto n = static_cast<size_t>(r.n_items);
  r.outcomes.resize(n);
  r.scores.resize(n);
  std::vector<int64_t> tokens_run(n, 0);
  std::vector<char> truncated(n, 0);
  ProgressBar progress(ZeroShotTaskName(data.task), r.n_items);
  int64_t done = 0, done_correct = 0, done_correct_norm = 0;
  std::exception_ptr error;
  const int n_workers = static_cast<int>(workers.size());
  Timer timer;
  // Results land in their item's slot, so the order of completion never changes what is reported.
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_workers) if (n_workers > 1)
  for (size_t i = 0; i < n; ++i) {
    const LogitsFn& logits_fn = workers[static_cast<size_t>(omp_get_thread_num())];
    try {
      const TaskItem& item = data.items[static_cast<size_t>(r.item_indices[i])];
      bool cut = false;
      const std::vector<TokenizedCandidate> candidates = TokenizeItem(tokenizer, item, max_tokens, &cut);
      truncated[i] = cut ? 1 : 0;
      r.scores[i] = ScoreCandidates(candidates, vocab, logits_fn, options.reuse_prefix, &tokens_run[i]);
      r.outcomes[i] = JudgeItem(data.task, item, r.scores[i]);
    } catch (...) {
#pragma omp critical(zeroshot_error)
      if (!error) error = std::current_exception();
    }
#pragma omp critical(zeroshot_progress)
    {
      ++done;
      done_correct += r.outcomes[i].correct ? 1 : 0;
      done_correct_norm += r.outcomes[i].correct_norm ? 1 : 0;
      if (options.progress) {
        progress.Update(done, fmt::format("acc {:.4f} acc_norm {:.4f}", static_cast<double>(done_correct) / done,
                                          static_cast<double>(done_correct_norm) / done));
      }
    }
  }
  progress.Finish();
  if (error) std::rethrow_exception(error);
  r.seconds = timer.ElapsedSeconds();
  r.items_per_second = static_cast<double>(r.n_items) / std::max(r.seconds, 1e-9);
  std::vector<double> acc, acc_norm, gold_ll;
  for (size_t i = 0; i < n; ++i) {
    acc.push_back(r.outcomes[i].correct ? 1.0 : 0.0);
    acc_norm.push_back(r.outcomes[i].correct_norm ? 1.0 : 0.0);
    gold_ll.push_back(r.outcomes[i].gold_log_prob);
    r.tokens_run += tokens_run[i];
    r.truncated += truncated[i];
  }
  r.acc = Mean(acc);
  r.acc_stderr = MeanStderr(acc);
  r.acc_norm = Mean(acc_norm);
  r.acc_norm_stderr = MeanStderr(acc_norm);
  if (data.task == ZeroShotTask::kLambada) {
    // lm-eval's perplexity aggregation: exp(-mean per-item log-likelihood of the target); its error is
    // the mean's, carried through exp as llama.cpp does for perplexity.
    r.has_target_ppl = true;
    r.target_ppl = std::exp(-Mean(gold_ll));
    r.target_ppl_stderr = r.target_ppl * MeanStderr(gold_ll);
  }
  return r;
}

int AutoItemThreads(const Model& model) { return model.config.dim < 1024 ? ThreadCount() : 1; }

TaskResult EvaluateZeroShotTask(const Model& model, const TaskData& data, const ZeroShotOptions& options) {
  if (!model.tokenizer.loaded()) Fail("{}: zero-shot evaluation needs a tokenizer (pass --tokenizer)", model.path);
  // Long contexts cost nothing unless used (the cache is mapped lazily), but a 128K-context model would
  // still reserve address space for all of it; no item here needs more than a few thousand tokens.
  const int64_t max_tokens = options.max_tokens > 0 ? options.max_tokens
                                                    : std::min<int64_t>(model.config.context_length, 4096);
  if (max_tokens < 2) Fail("--max-tokens {} is too small: a candidate needs at least 2 tokens", max_tokens);
  const int n_workers = std::max(1, options.item_threads);
  std::vector<InferenceState> states;
  std::vector<LogitsFn> workers;
  states.reserve(static_cast<size_t>(n_workers));
  for (int w = 0; w < n_workers; ++w) {
    states.push_back(MakeInferenceState(model.config, max_tokens, std::min<int64_t>(max_tokens, 512)));
  }
  for (int w = 0; w < n_workers; ++w) {
    InferenceState* state = &states[static_cast<size_t>(w)];
    workers.push_back([&model, state](std::span<const int32_t> tokens, int64_t pos0, bool all_logits) {
      return Forward(model, *state, tokens, pos0, all_logits);
    });
  }
  return EvaluateZeroShotTaskWith(model.tokenizer, model.config.vocab_size, workers, data, options, max_tokens);
}

ZeroShotAverage AverageTasks(std::span<const TaskResult> results) {
  ZeroShotAverage avg;
  if (results.empty()) return avg;
  const auto n = static_cast<double>(results.size());
  double acc_var = 0.0, norm_var = 0.0;
  for (const TaskResult& r : results) {
    avg.acc += r.acc / n;
    avg.acc_norm += r.acc_norm / n;
    acc_var += r.acc_stderr * r.acc_stderr;
    norm_var += r.acc_norm_stderr * r.acc_norm_stderr;
  }
  avg.acc_stderr = std::sqrt(acc_var) / n;
  avg.acc_norm_stderr = std::sqrt(norm_var) / n;
  return avg;
}

PairedDelta PairedAccuracyDelta(const TaskResult& a, const TaskResult& b, bool norm) {
  MIXQ_CHECK(a.item_indices == b.item_indices);
  std::vector<double> d;
  for (size_t i = 0; i < a.outcomes.size(); ++i) {
    const bool ca = norm ? a.outcomes[i].correct_norm : a.outcomes[i].correct;
    const bool cb = norm ? b.outcomes[i].correct_norm : b.outcomes[i].correct;
    d.push_back((cb ? 1.0 : 0.0) - (ca ? 1.0 : 0.0));
  }
  return {Mean(d), MeanStderr(d)};
}

}  // namespace mixq

// Zero-shot scorer: known answers from fake logits, KV prefix reuse against from-scratch runs on
// stories260K, judging (acc / acc_norm / greedy), subsets, metrics, and determinism.
#include "mixq/eval/zeroshot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "mixq/base/threads.h"
#include "mixq/eval/perplexity.h"
#include "mixq/model/forward.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

// A fake model with a KV "cache": it remembers the tokens at each position and refuses (test failure)
// a call whose pos0 is past what it holds, as a real cache would hold garbage there. The logits at
// position p are a function of every token at 0..p, so a wrong reuse of history changes the numbers.
class FakeModel {
 public:
  static constexpr int64_t kVocab = 5;

  // Bigram log-probabilities log P(next | cur), shifted by a history term when `history_matters`.
  explicit FakeModel(bool history_matters) : history_matters_(history_matters) {}

  LogitsFn Fn() {
    return [this](std::span<const int32_t> tokens, int64_t pos0, bool all_logits) -> const float* {
      EXPECT_LE(pos0, static_cast<int64_t>(history_.size())) << "continuing from a position never run";
      history_.resize(static_cast<size_t>(pos0));
      history_.insert(history_.end(), tokens.begin(), tokens.end());
      ++calls_;
      rows_.clear();
      const size_t first = all_logits ? static_cast<size_t>(pos0) : history_.size() - 1;
      for (size_t p = first; p < history_.size(); ++p) {
        const std::vector<float> row = Row(p);
        rows_.insert(rows_.end(), row.begin(), row.end());
      }
      return rows_.data();
    };
  }

  // The logits at position p of the sequence held now.
  std::vector<float> Row(size_t p) const {
    static const float kProb[kVocab][kVocab] = {
        // next:  0     1     2     3     4
        {0.05f, 0.80f, 0.05f, 0.05f, 0.05f},  // after BOS (0)
        {0.05f, 0.05f, 0.30f, 0.25f, 0.35f},  // after 1: 2 beats 3 on one token
        {0.20f, 0.20f, 0.20f, 0.20f, 0.20f},
        {0.05f, 0.05f, 0.05f, 0.80f, 0.05f},  // after 3: 3 again is likely
        {0.20f, 0.20f, 0.20f, 0.20f, 0.20f},
    };
    std::vector<float> row(kVocab);
    int64_t sum = 0;
    for (size_t i = 0; i <= p; ++i) sum += history_[i];
    for (int64_t v = 0; v < kVocab; ++v) {
      row[static_cast<size_t>(v)] = std::log(kProb[history_[p]][v]);
      if (history_matters_) row[static_cast<size_t>(v)] += 0.1f * static_cast<float>((sum + v) % 3);
    }
    return row;
  }

  int calls() const { return calls_; }

 private:
  bool history_matters_;
  std::vector<int32_t> history_;
  std::vector<float> rows_;
  int calls_ = 0;
};

TEST(ZeroShotScorerTest, HandBuiltItemHasKnownLogLikelihoodsAndAnswers) {
  // Context BOS 1; candidate 0 continues with token 2 (" b"), candidate 1 with 3 3 (" cc cc").
  const std::vector<TokenizedCandidate> candidates = {{{0, 1, 2}, 2}, {{0, 1, 3, 3}, 2}};
  for (const bool reuse : {true, false}) {
    FakeModel fake(/*history_matters=*/false);
    int64_t tokens_run = 0;
    const std::vector<CandidateScore> s = ScoreCandidates(candidates, FakeModel::kVocab, fake.Fn(), reuse, &tokens_run);
    ASSERT_EQ(s.size(), 2u);
    // The logits are log-probabilities that sum to 1, so log-softmax gives them back.
    EXPECT_NEAR(s[0].log_prob, std::log(0.30), 1e-6);
    EXPECT_NEAR(s[1].log_prob, std::log(0.25) + std::log(0.80), 1e-6);
    EXPECT_EQ(s[0].n_tokens, 1);
    EXPECT_EQ(s[1].n_tokens, 2);
    EXPECT_FALSE(s[0].greedy);  // 4 (0.35) is the arg-max after 1
    EXPECT_FALSE(s[1].greedy);
    // With reuse the shared BOS 1 runs once: 2 + 1 + 2 tokens, and 3 calls; without, 3 + 4 tokens.
    EXPECT_EQ(tokens_run, reuse ? 5 : 7);
    EXPECT_EQ(fake.calls(), reuse ? 3 : 2);

    TaskItem item;
    item.contexts = {"a", "a"};
    item.continuations = {" b", " cc cc"};
    item.gold = 1;
    const ItemOutcome o = JudgeItem(ZeroShotTask::kHellaSwag, item, s);
    // Sum: log .3 = -1.20 beats -1.61, so acc picks 0; per character -0.60 loses to -0.27, so acc_norm picks 1.
    EXPECT_EQ(o.predicted, 0);
    EXPECT_EQ(o.predicted_norm, 1);
    EXPECT_FALSE(o.correct);
    EXPECT_TRUE(o.correct_norm);
    EXPECT_NEAR(o.gold_log_prob, s[1].log_prob, 0.0);
  }
}

TEST(ZeroShotScorerTest, GreedyTargetForLambada) {
  FakeModel fake(false);
  // After BOS, 1 is the arg-max (0.8); after 1, 4 is (0.35).
  const std::vector<TokenizedCandidate> hit = {{{0, 1, 4}, 1}};
  const std::vector<TokenizedCandidate> miss = {{{0, 1, 2}, 1}};
  TaskItem item;
  item.contexts = {"x"};
  item.continuations = {" y"};
  const std::vector<CandidateScore> s_hit = ScoreCandidates(hit, FakeModel::kVocab, fake.Fn(), true);
  EXPECT_TRUE(JudgeItem(ZeroShotTask::kLambada, item, s_hit).correct);
  EXPECT_NEAR(s_hit[0].log_prob, std::log(0.8) + std::log(0.35), 1e-6);
  const std::vector<CandidateScore> s_miss = ScoreCandidates(miss, FakeModel::kVocab, fake.Fn(), true);
  EXPECT_FALSE(JudgeItem(ZeroShotTask::kLambada, item, s_miss).correct);
}

TEST(ZeroShotScorerTest, ReuseWithDifferentContextsMatchesFromScratch) {
  // WinoGrande-like: the candidates share BOS 1 then differ (2 vs 3) inside the context, and share the
  // continuation. The history-dependent fake makes any misuse of the cached prefix visible.
  const std::vector<TokenizedCandidate> candidates = {{{0, 1, 2, 4, 1, 3}, 4}, {{0, 1, 3, 4, 1, 3}, 4}, {{0, 1, 1, 3}, 3}};
  FakeModel with_reuse(true), without(true);
  int64_t run_reuse = 0, run_scratch = 0;
  const auto a = ScoreCandidates(candidates, FakeModel::kVocab, with_reuse.Fn(), true, &run_reuse);
  const auto b = ScoreCandidates(candidates, FakeModel::kVocab, without.Fn(), false, &run_scratch);
  for (size_t i = 0; i < candidates.size(); ++i) {
    EXPECT_EQ(a[i].log_prob, b[i].log_prob) << i;
    EXPECT_EQ(a[i].n_tokens, b[i].n_tokens);
  }
  EXPECT_EQ(run_scratch, 16);
  EXPECT_EQ(run_reuse, 2 + 4 + 4 + 2);
}

class ZeroShotModelTest : public ::testing::Test {
 protected:
  // One kernel thread: stories260K's products are too small to share, and on a busy 2-core machine the
  // attention's OpenMP loop then spends seconds in barriers (20x slower tests). Item-level threads are
  // tested explicitly below.
  static void SetUpTestSuite() {
    model_ = new Model(LoadModel(Stories260KPath()));
    saved_threads_ = ThreadCount();
    SetThreadCount(1);
  }
  static void TearDownTestSuite() {
    SetThreadCount(saved_threads_);
    delete model_;
    model_ = nullptr;
  }
  static Model* model_;
  static int saved_threads_;
};
Model* ZeroShotModelTest::model_ = nullptr;
int ZeroShotModelTest::saved_threads_ = 0;

// log-likelihood of tokens[first..] computed the plain way: one fresh state, the whole sequence, all logits.
double FromScratch(const Model& model, const TokenizedCandidate& c) {
  InferenceState state = MakeInferenceState(model.config, static_cast<int64_t>(c.tokens.size()));
  const float* logits = Forward(model, state, c.tokens, 0, true);
  const int64_t vocab = model.config.vocab_size;
  double ll = 0.0;
  for (size_t t = static_cast<size_t>(c.first_scored); t < c.tokens.size(); ++t) {
    ll += LogSoftmaxAt({logits + (t - 1) * vocab, static_cast<size_t>(vocab)}, c.tokens[t]).log_prob;
  }
  return ll;
}

TEST_F(ZeroShotModelTest, TokenizeItemScoresTheContinuationTokens) {
  const Tokenizer& tok = model_->tokenizer;
  TaskItem item;
  item.contexts = {"Lily went to the park", "Lily went to the park "};
  item.continuations = {" and played.", "and played."};  // the trailing space moves to the continuation
  const auto c = TokenizeItem(tok, item, 512);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].tokens, tok.Encode("Lily went to the park and played.", true));
  EXPECT_EQ(c[0].first_scored, static_cast<int64_t>(tok.Encode("Lily went to the park", true).size()));
  EXPECT_EQ(c[1].tokens, c[0].tokens);
  EXPECT_EQ(c[1].first_scored, c[0].first_scored);
  // Cut from the left to 6 tokens: the scored part keeps its tokens as long as they fit.
  bool truncated = false;
  const auto cut = TokenizeItem(tok, item, 6, &truncated);
  EXPECT_TRUE(truncated);
  ASSERT_EQ(cut[0].tokens.size(), 6u);
  const int64_t continuation = static_cast<int64_t>(c[0].tokens.size()) - c[0].first_scored;
  EXPECT_EQ(cut[0].first_scored, std::max<int64_t>(1, 6 - continuation));
  EXPECT_TRUE(std::equal(cut[0].tokens.begin(), cut[0].tokens.end(), c[0].tokens.end() - 6));
}

TEST_F(ZeroShotModelTest, PrefixReuseMatchesFromScratchOnStories260K) {
  const TaskData hellaswag = LoadHellaSwag(SharedPath("data/hellaswag/hellaswag_val_full.txt"));
  const TaskData wino = LoadWinoGrande(SharedPath("data/winogrande/dev.jsonl"), SharedPath("data/winogrande/dev-labels.lst"));
  InferenceState state = MakeInferenceState(model_->config, 512);
  const LogitsFn fn = [&](std::span<const int32_t> t, int64_t pos0, bool all) {
    return Forward(*model_, state, t, pos0, all);
  };
  int checked = 0;
  for (const TaskItem* item : {&hellaswag.items[0], &hellaswag.items[1], &hellaswag.items[5000], &wino.items[0], &wino.items[7]}) {
    const auto candidates = TokenizeItem(model_->tokenizer, *item, 512);
    int64_t run_reuse = 0, run_scratch = 0;
    const auto reused = ScoreCandidates(candidates, model_->config.vocab_size, fn, true, &run_reuse);
    const auto scratch = ScoreCandidates(candidates, model_->config.vocab_size, fn, false, &run_scratch);
    EXPECT_LT(run_reuse, run_scratch) << item->source;  // the shared prefix really is run once
    for (size_t i = 0; i < candidates.size(); ++i) {
      const double plain = FromScratch(*model_, candidates[i]);
      EXPECT_NEAR(reused[i].log_prob, plain, 1e-4) << item->source << " candidate " << i;
      EXPECT_NEAR(scratch[i].log_prob, plain, 1e-4) << item->source << " candidate " << i;
      EXPECT_LT(reused[i].log_prob, 0.0);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * 3 + 2 * 2);
}

TEST_F(ZeroShotModelTest, SameResultTwiceInParallelAndWithoutReuse) {
  const TaskData piqa = LoadPiqa(SharedPath("data/piqa/valid.jsonl"), SharedPath("data/piqa/valid-labels.lst"));
  ZeroShotOptions options;
  options.limit = 12;
  options.seed = 7;
  options.progress = false;
  const TaskResult a = EvaluateZeroShotTask(*model_, piqa, options);
  const TaskResult b = EvaluateZeroShotTask(*model_, piqa, options);
  options.item_threads = 2;
  const TaskResult parallel = EvaluateZeroShotTask(*model_, piqa, options);
  options.item_threads = 1;
  options.reuse_prefix = false;
  const TaskResult c = EvaluateZeroShotTask(*model_, piqa, options);
  ASSERT_EQ(a.n_items, 12);
  EXPECT_EQ(a.item_indices, b.item_indices);
  EXPECT_EQ(a.acc, b.acc);
  EXPECT_EQ(a.acc_norm, b.acc_norm);
  EXPECT_GT(c.tokens_run, a.tokens_run);
  for (size_t i = 0; i < a.scores.size(); ++i) {
    for (size_t k = 0; k < a.scores[i].size(); ++k) {
      EXPECT_EQ(a.scores[i][k].log_prob, b.scores[i][k].log_prob);
      EXPECT_EQ(a.scores[i][k].log_prob, parallel.scores[i][k].log_prob);  // one thread per item either way
      EXPECT_NEAR(a.scores[i][k].log_prob, c.scores[i][k].log_prob, 1e-4);
    }
  }
  // The paired Δ of a run against itself is exactly zero.
  const PairedDelta d = PairedAccuracyDelta(a, b, false);
  EXPECT_EQ(d.delta, 0.0);
  EXPECT_EQ(d.stderr_value, 0.0);
  // acc's standard error is sqrt(p (1 - p) / (n - 1)).
  EXPECT_NEAR(a.acc_stderr, std::sqrt(a.acc * (1 - a.acc) / 11.0), 1e-12);
}

TEST(ZeroShotSubsetTest, SeededSubsetIsDistinctSortedAndReproducible) {
  const auto a = SelectItems(1000, 50, 42);
  ASSERT_EQ(a.size(), 50u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 50u);
  EXPECT_EQ(a, SelectItems(1000, 50, 42));
  EXPECT_NE(a, SelectItems(1000, 50, 43));
  EXPECT_GE(a.front(), 0);
  EXPECT_LT(a.back(), 1000);
  EXPECT_GT(a.back() - a.front(), 500);  // spread over the file, not its head
  EXPECT_EQ(SelectItems(5, 0, 1), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(SelectItems(5, 9, 1).size(), 5u);
}

TEST(ZeroShotMetricsTest, AverageAndPairedDelta) {
  TaskResult a, b;
  a.acc = 0.5;
  a.acc_stderr = 0.1;
  a.acc_norm = 0.6;
  a.acc_norm_stderr = 0.1;
  b.acc = 0.7;
  b.acc_stderr = 0.2;
  b.acc_norm = 0.7;
  b.acc_norm_stderr = 0.2;
  const std::vector<TaskResult> both = {a, b};
  const ZeroShotAverage avg = AverageTasks(both);
  EXPECT_DOUBLE_EQ(avg.acc, 0.6);
  EXPECT_DOUBLE_EQ(avg.acc_norm, 0.65);
  EXPECT_DOUBLE_EQ(avg.acc_stderr, std::sqrt(0.01 + 0.04) / 2);

  // Four shared items: b fixes item 0 and breaks item 3, so Δ = 0 with differences (+1, 0, 0, -1).
  TaskResult x, y;
  x.item_indices = y.item_indices = {0, 1, 2, 3};
  for (const bool c : {false, true, true, true}) x.outcomes.push_back({0, 0, c, c, 0.0});
  for (const bool c : {true, true, true, false}) y.outcomes.push_back({0, 0, c, c, 0.0});
  const PairedDelta d = PairedAccuracyDelta(x, y, false);
  EXPECT_DOUBLE_EQ(d.delta, 0.0);
  EXPECT_NEAR(d.stderr_value, std::sqrt(2.0 / 3.0 / 4.0), 1e-12);
}

}  // namespace
}  // namespace mixq

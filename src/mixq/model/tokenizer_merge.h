// The pair-merging loop both BPE flavours share: sentencepiece-style (pairs ranked by the score of
// their concatenation) and byte-level (pairs ranked by merge order). Private to the tokenizers.
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <string_view>
#include <vector>

namespace mixq::tokenizer_internal {

// One character or merged run of the text; a doubly linked list in text order.
struct MergeSymbol {
  int32_t prev;
  int32_t next;
  uint32_t offset;  // into the text being merged
  uint32_t bytes;   // 0 once merged into its left neighbour
};

// Splits `text` into UTF-8 characters (a truncated last character keeps the bytes that remain).
std::vector<MergeSymbol> SplitUtf8Symbols(std::string_view text);

// Repeatedly merges the adjacent pair with the highest priority (ties: the leftmost pair) until no pair
// has one. `priority(left, right)` returns the pair's priority, or nullopt if it may not merge; it is
// asked again whenever a neighbour changes. Afterwards the surviving symbols, followed from index 0
// through `next`, are the merged runs.
template <typename PairPriority>
void MergePairs(std::vector<MergeSymbol>& symbols, PairPriority&& priority) {
  struct Candidate {
    int32_t left;
    int32_t right;
    double priority;
    uint32_t bytes;  // left + right when queued: a later mismatch means the entry is stale
  };
  auto lower = [](const Candidate& a, const Candidate& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower)> queue(lower, std::move(storage));
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const std::optional<double> p = priority(symbols[left], symbols[right]);
    if (p) queue.push({left, right, *p, symbols[left].bytes + symbols[right].bytes});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    MergeSymbol& left = symbols[c.left];
    MergeSymbol& right = symbols[c.right];
    if (left.bytes == 0 || right.bytes == 0 || left.bytes + right.bytes != c.bytes) continue;
    left.bytes += right.bytes;
    right.bytes = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
}

}  // namespace mixq::tokenizer_internal

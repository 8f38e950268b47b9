// The multiple-choice knapsack behind `--target-bpw`: convex hulls, a Lagrangian greedy, a local exchange
// pass, and the allocation written as an editable policy.
//
// Optimality, stated plainly. Choosing one (bytes, sensitivity) point per tensor under a byte budget is
// the multiple-choice knapsack problem (NP-hard in general). Its linear relaxation is solved exactly by
// walking each tensor's lower convex hull in order of decreasing sensitivity-saved-per-byte (Sinha and
// Zoltners, 1979): that optimum is `Allocation::lower_bound`, a bound no integer choice beats. The greedy
// takes the same steps while they fit, skipping a tensor whose next step does not; it never reaches points
// inside a hull and never gives bytes back. A local pass then applies the best single or paired change
// (one tensor may step down to pay for another's step up) until none helps. That is exact when every hull
// step of every tensor costs the same bytes (its k steps are then the k largest savings, which convexity
// keeps in order); otherwise it is a local optimum, and on small tables with sensitivities spanning
// decades it can miss the optimum by a lot (tests/quant/budget_test.cc states the gaps measured against
// brute force). So a dynamic programme over bytes runs beside it and the better choice wins: exact when
// the costs' common divisor gives a small enough grid (small models, hand-made tables), otherwise on a
// grid of rounded-up costs whose loss is at most (tensors x grid step) bytes of budget, small next to the
// budget of a model with many tensors. `Allocation::method` says which choice won.
#include "mixq/quant/budget.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>

#include <fmt/format.h>

#include "mixq/base/check.h"
#include "mixq/base/error.h"

namespace mixq {
namespace {

struct Point {
  int64_t bytes;
  double sensitivity;
  size_t index;  // into the tensor's candidates
};

// The tensor's candidates from the cheapest on: the cheapest (least sensitive among equally cheap), then
// the lower convex hull of the points that are both dearer and strictly less sensitive.
std::vector<Point> LowerHull(const TensorCandidates& t) {
  std::vector<Point> points;
  for (size_t i = 0; i < t.candidates.size(); ++i) {
    points.push_back({static_cast<int64_t>(t.candidates[i].bytes), t.candidates[i].sensitivity, i});
  }
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.bytes != b.bytes ? a.bytes < b.bytes : a.sensitivity < b.sensitivity;
  });
  std::vector<Point> hull;
  for (const Point& p : points) {
    if (!hull.empty() && (p.bytes == hull.back().bytes || p.sensitivity >= hull.back().sensitivity)) continue;
    // Drop the last point while it lies on or above the segment from the one before it to p.
    while (hull.size() >= 2) {
      const Point& a = hull[hull.size() - 2];
      const Point& b = hull.back();
      const double cross = static_cast<double>(b.bytes - a.bytes) * (p.sensitivity - a.sensitivity) -
                           (b.sensitivity - a.sensitivity) * static_cast<double>(p.bytes - a.bytes);
      if (cross > 0.0) break;
      hull.pop_back();
    }
    hull.push_back(p);
  }
  return hull;
}

double Efficiency(const Point& from, const Point& to) {
  return (from.sensitivity - to.sensitivity) / static_cast<double>(to.bytes - from.bytes);
}

std::string EscapeRegex(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (std::string_view(R"(\^$.|?*+()[]{}/)").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

double Bpw(int64_t bytes, int64_t parameters) {
  return parameters == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / static_cast<double>(parameters);
}

// Leftover bytes and exchanges: the change of one tensor, or of two at once (one may give bytes up for
// the other), that lowers the total most and fits, until none does. The greedy's hull walk cannot leave
// a tensor's hull or give bytes back; this pass does both, locally. Every move lowers the total by more
// than a rounding error, so it ends; the round cap only bounds the time.
void ImproveLocally(const SensitivityTable& table, std::vector<size_t>& choice, int64_t& left) {
  struct Move {
    size_t tensor;
    size_t index;
    int64_t cost;
    double saving;
  };
  const size_t n = table.tensors.size();
  for (size_t round = 0; round < 8 * n + 64; ++round) {
    std::vector<Move> moves;
    double scale = 0.0;
    for (size_t t = 0; t < n; ++t) {
      const auto& cs = table.tensors[t].candidates;
      const CandidateCost& cur = cs[choice[t]];
      scale += std::abs(cur.sensitivity);
      for (size_t i = 0; i < cs.size(); ++i) {
        if (i == choice[t]) continue;
        moves.push_back({t, i, static_cast<int64_t>(cs[i].bytes) - static_cast<int64_t>(cur.bytes),
                         cur.sensitivity - cs[i].sensitivity});
      }
    }
    const double min_saving = 1e-12 * scale;
    double best_saving = min_saving;
    int64_t best_cost = 0;
    const Move* best_a = nullptr;
    const Move* best_b = nullptr;
    auto consider = [&](double saving, int64_t cost, const Move* a, const Move* b) {
      if (cost > left || saving < best_saving || (saving == best_saving && (best_a == nullptr || cost >= best_cost))) {
        return;
      }
      best_saving = saving, best_cost = cost, best_a = a, best_b = b;
    };
    for (size_t x = 0; x < moves.size(); ++x) {
      consider(moves[x].saving, moves[x].cost, &moves[x], nullptr);
      for (size_t y = x + 1; y < moves.size(); ++y) {
        if (moves[y].tensor == moves[x].tensor) continue;
        consider(moves[x].saving + moves[y].saving, moves[x].cost + moves[y].cost, &moves[x], &moves[y]);
      }
    }
    if (best_a == nullptr) return;
    choice[best_a->tensor] = best_a->index;
    if (best_b != nullptr) choice[best_b->tensor] = best_b->index;
    left -= best_cost;
  }
}

// The least total sensitivity with each tensor's bytes over its cheapest candidate counted in whole
// `unit`-byte steps, rounded up, within `left` bytes over the cheapest choice: exact when `unit` divides
// every such cost, and never over budget (rounding up only overcounts). Returns candidate indices.
std::vector<size_t> GridDp(const SensitivityTable& table, const std::vector<int64_t>& cheapest, int64_t left,
                           int64_t unit) {
  const size_t n = table.tensors.size();
  const size_t width = static_cast<size_t>(left / unit) + 1;
  std::vector<double> best(width, 0.0);  // best[w]: least total of the tensors so far within w steps
  std::vector<double> next(width);
  std::vector<uint8_t> pick(n * width);
  auto steps_of = [&](size_t t, const CandidateCost& c) {
    const int64_t extra = static_cast<int64_t>(c.bytes) - cheapest[t];
    return static_cast<size_t>((extra + unit - 1) / unit);
  };
  for (size_t t = 0; t < n; ++t) {
    std::fill(next.begin(), next.end(), std::numeric_limits<double>::infinity());
    const auto& cs = table.tensors[t].candidates;
    for (size_t i = 0; i < cs.size(); ++i) {
      const size_t u = steps_of(t, cs[i]);
      for (size_t w = u; w < width; ++w) {
        const double v = best[w - u] + cs[i].sensitivity;
        if (v < next[w]) next[w] = v, pick[t * width + w] = static_cast<uint8_t>(i);
      }
    }
    best.swap(next);
  }
  std::vector<size_t> choice(n);
  size_t w = width - 1;
  for (size_t t = n; t-- > 0;) {
    choice[t] = pick[t * width + w];
    w -= steps_of(t, table.tensors[t].candidates[choice[t]]);
  }
  return choice;
}

double Total(const SensitivityTable& table, const std::vector<size_t>& choice) {
  double total = 0.0;
  for (size_t t = 0; t < choice.size(); ++t) total += table.tensors[t].candidates[choice[t]].sensitivity;
  return total;
}

}  // namespace

Allocation AllocateBudget(const SensitivityTable& table, double target_bpw, const AllocateOptions& options) {
  if (!std::isfinite(target_bpw) || target_bpw <= 0.0) {
    Fail("--target-bpw must be a positive number of bits per weight, got {}", target_bpw);
  }
  if (table.total_parameters <= 0) Fail("--target-bpw: the model has no parameters");
  Allocation a;
  a.target_bpw = target_bpw;
  a.total_parameters = table.total_parameters;
  a.fixed_bytes = table.fixed_bytes;
  a.budget_bytes = static_cast<int64_t>(std::floor(target_bpw * static_cast<double>(table.total_parameters) / 8.0));

  const size_t n = table.tensors.size();
  std::vector<std::vector<Point>> hulls(n);
  int64_t min_bytes = table.fixed_bytes;
  int64_t max_bytes = table.fixed_bytes;
  for (size_t t = 0; t < n; ++t) {
    const TensorCandidates& tc = table.tensors[t];
    if (tc.candidates.empty()) Fail("--target-bpw: tensor '{}' has no candidate format that can store it", tc.name);
    for (const CandidateCost& c : tc.candidates) {
      if (!std::isfinite(c.sensitivity)) {
        Fail("--target-bpw: tensor '{}' as {} has sensitivity {}, expected a finite number", tc.name,
             WeightFormatName(c.format), c.sensitivity);
      }
    }
    hulls[t] = LowerHull(tc);
    min_bytes += hulls[t].front().bytes;
    int64_t most = 0;
    for (const CandidateCost& c : tc.candidates) most = std::max(most, static_cast<int64_t>(c.bytes));
    max_bytes += most;
  }
  if (min_bytes > a.budget_bytes) {
    Fail("--target-bpw {} is below the smallest reachable {:.4f} bpw: every allocated tensor at its cheapest "
         "candidate ({} bytes) plus {} bytes of norms and fixed tensors, over {} parameters; add a cheaper "
         "candidate or raise --target-bpw",
         target_bpw, Bpw(min_bytes, table.total_parameters), min_bytes - table.fixed_bytes, table.fixed_bytes,
         table.total_parameters);
  }

  std::vector<size_t> choice(n);  // index into the tensor's candidates
  if (max_bytes <= a.budget_bytes) {
    // More bytes than every tensor's dearest candidate: the dearest everywhere (least sensitive among equal
    // sizes), rather than trusting small differences at the top end, which are mostly measurement noise.
    a.capped = true;
    a.method = "every tensor's most expensive candidate";
    for (size_t t = 0; t < n; ++t) {
      const auto& cs = table.tensors[t].candidates;
      size_t best = 0;
      for (size_t i = 1; i < cs.size(); ++i) {
        if (cs[i].bytes > cs[best].bytes || (cs[i].bytes == cs[best].bytes && cs[i].sensitivity < cs[best].sensitivity)) {
          best = i;
        }
      }
      choice[t] = best;
    }
    a.note = fmt::format("the target {} bpw exceeds the most expensive choice ({:.4f} bpw): every tensor takes its "
                         "most expensive candidate",
                         target_bpw, Bpw(max_bytes, table.total_parameters));
  } else {
    // The linear relaxation's optimum, for the bound: all hull steps by decreasing efficiency, the last
    // one that does not fit taken fractionally. Within a tensor the efficiencies decrease (the hull is
    // convex), so the global order keeps each tensor's steps in order.
    struct Step {
      double efficiency;
      int64_t bytes;
      double saving;
    };
    std::vector<Step> steps;
    double lower_bound = 0.0;
    for (size_t t = 0; t < n; ++t) {
      lower_bound += hulls[t].front().sensitivity;
      for (size_t k = 0; k + 1 < hulls[t].size(); ++k) {
        steps.push_back({Efficiency(hulls[t][k], hulls[t][k + 1]), hulls[t][k + 1].bytes - hulls[t][k].bytes,
                         hulls[t][k].sensitivity - hulls[t][k + 1].sensitivity});
      }
    }
    std::stable_sort(steps.begin(), steps.end(), [](const Step& x, const Step& y) { return x.efficiency > y.efficiency; });
    int64_t lp_left = a.budget_bytes - min_bytes;
    for (const Step& s : steps) {
      if (s.bytes <= lp_left) {
        lp_left -= s.bytes;
        lower_bound -= s.saving;
      } else {
        lower_bound -= s.saving * static_cast<double>(lp_left) / static_cast<double>(s.bytes);
        break;
      }
    }
    a.lower_bound = lower_bound;

    // The greedy: every tensor at its cheapest point, then the best hull step that still fits, until none
    // does. A tensor whose next step does not fit is done: its later steps cost more still.
    int64_t left = a.budget_bytes - min_bytes;
    std::vector<size_t> at(n, 0);  // position on the tensor's hull
    using Entry = std::pair<double, int64_t>;  // efficiency, -tensor (ties: the earlier tensor)
    std::priority_queue<Entry> queue;
    for (size_t t = 0; t < n; ++t) {
      if (hulls[t].size() > 1) queue.push({Efficiency(hulls[t][0], hulls[t][1]), -static_cast<int64_t>(t)});
    }
    while (!queue.empty()) {
      const size_t t = static_cast<size_t>(-queue.top().second);
      queue.pop();
      const int64_t cost = hulls[t][at[t] + 1].bytes - hulls[t][at[t]].bytes;
      if (cost > left) continue;
      left -= cost;
      ++at[t];
      if (at[t] + 1 < hulls[t].size()) queue.push({Efficiency(hulls[t][at[t]], hulls[t][at[t] + 1]), -static_cast<int64_t>(t)});
    }
    for (size_t t = 0; t < n; ++t) choice[t] = hulls[t][at[t]].index;
    ImproveLocally(table, choice, left);
    a.method = "convex-hull greedy + exchanges";

    // The dynamic programme on the finest grid that fits max_dp_cells.
    std::vector<int64_t> cheapest(n);
    int64_t divisor = 0;
    for (size_t t = 0; t < n; ++t) {
      cheapest[t] = hulls[t].front().bytes;
      for (const CandidateCost& c : table.tensors[t].candidates) {
        divisor = std::gcd(divisor, static_cast<int64_t>(c.bytes) - cheapest[t]);
      }
    }
    const int64_t dp_left = a.budget_bytes - min_bytes;
    // Also at most 4M budget steps: the two rows of totals are 16 bytes a step.
    const int64_t max_width = n == 0 ? 0 : std::min<int64_t>(options.max_dp_cells / static_cast<int64_t>(n), int64_t{1} << 22);
    bool few_candidates = true;
    for (const TensorCandidates& tc : table.tensors) few_candidates = few_candidates && tc.candidates.size() <= 255;
    if (divisor > 0 && max_width >= 2 && few_candidates) {
      int64_t unit = divisor;
      if (dp_left / unit + 1 > max_width) unit = (dp_left + max_width - 2) / (max_width - 1);
      const bool exact = unit == divisor;
      std::vector<size_t> dp_choice = GridDp(table, cheapest, dp_left, unit);
      int64_t dp_spare = dp_left;
      for (size_t t = 0; t < n; ++t) {
        dp_spare -= static_cast<int64_t>(table.tensors[t].candidates[dp_choice[t]].bytes) - cheapest[t];
      }
      MIXQ_CHECK_GE(dp_spare, 0);
      if (!exact) ImproveLocally(table, dp_choice, dp_spare);
      const double dp_total = Total(table, dp_choice);
      if (dp_total < Total(table, choice) || (exact && dp_total == Total(table, choice))) {
        choice = std::move(dp_choice);
        a.method = exact ? "dynamic programme over bytes (exact)"
                         : fmt::format("dynamic programme on a {}-byte grid + exchanges", unit);
      }
    }
  }

  for (size_t t = 0; t < n; ++t) {
    const TensorCandidates& tc = table.tensors[t];
    const CandidateCost& c = tc.candidates[choice[t]];
    a.tensors.push_back({tc.name, c.format, c.bytes, c.sensitivity, tc.parameters()});
    a.allocated_bytes += static_cast<int64_t>(c.bytes);
    a.total_sensitivity += c.sensitivity;
  }
  if (a.capped) {
    a.lower_bound = 0.0;
    for (const TensorCandidates& tc : table.tensors) {
      double least = tc.candidates.front().sensitivity;
      for (const CandidateCost& c : tc.candidates) least = std::min(least, c.sensitivity);
      a.lower_bound += least;
    }
  }
  a.total_bytes = a.allocated_bytes + a.fixed_bytes;
  a.bits_per_weight = Bpw(a.total_bytes, a.total_parameters);
  MIXQ_CHECK_LE(a.total_bytes, a.budget_bytes);
  return a;
}

std::string AllocationPolicyText(const Allocation& a, const SensitivityTable& table) {
  std::vector<std::string> candidates;
  for (const WeightFormat& f : table.candidates) candidates.push_back(WeightFormatName(f));
  std::string measure = table.mode == SensitivityMode::kKl
                            ? fmt::format("mean KL(base || only this tensor quantized) over {} windows, {} positions",
                                          table.kl_windows, table.kl_positions)
                            : std::string("importance-weighted relative weight error");
  if (table.importance_weighted) measure += "; imatrix-weighted quantization";
  std::string text;
  text += fmt::format("# mixq --target-bpw {}: {:.4f} bpw reached ({} of {} bytes budgeted, {} parameters)\n",
                      a.target_bpw, a.bits_per_weight, a.total_bytes, a.budget_bytes, a.total_parameters);
  text += fmt::format("# sensitivity mode {}: {}\n", SensitivityModeName(table.mode), measure);
  text += fmt::format("# candidates {}; total sensitivity {:.6g} (no choice within the budget goes below {:.6g})\n",
                      fmt::join(candidates, ","), a.total_sensitivity, a.lower_bound);
  text += fmt::format("# chosen by {}\n", a.method);
  if (!a.note.empty()) text += fmt::format("# note: {}\n", a.note);
  for (const TensorCandidates& t : table.tensors) {
    if (!t.note.empty()) text += fmt::format("# {}: {}\n", t.name, t.note);
  }
  text += "# one rule per allocated tensor, first match wins, norms stay F32; edit and pass back with --policy\n";
  for (const TensorAllocation& t : a.tensors) {
    text += fmt::format("^{}$ = {}  # {} bytes, {:.4f} bpw, sensitivity {:.4g}\n", EscapeRegex(t.name),
                        WeightFormatName(t.format), t.bytes, Bpw(static_cast<int64_t>(t.bytes), t.parameters),
                        t.sensitivity);
  }
  text += fmt::format("default = {}\n", table.fixed_format ? WeightFormatName(*table.fixed_format) : "keep");
  return text;
}

QuantPolicy AllocationToPolicy(const Allocation& a, const SensitivityTable& table) {
  return ParsePolicy(AllocationPolicyText(a, table), fmt::format("--target-bpw {} allocation", a.target_bpw));
}

TargetBpwResult AllocateTargetBpw(const Model& model, const TargetBpwOptions& options) {
  TargetBpwResult r;
  r.table = MeasureSensitivity(model, options.sensitivity);
  r.allocation = AllocateBudget(r.table, options.target_bpw);
  r.policy_text = AllocationPolicyText(r.allocation, r.table);
  r.policy = ParsePolicy(r.policy_text, fmt::format("--target-bpw {} allocation", options.target_bpw));
  return r;
}

}  // namespace mixq

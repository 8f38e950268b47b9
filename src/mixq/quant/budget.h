// Bits under a budget (`--target-bpw`): one candidate format per tensor minimising the summed
// sensitivity (sensitivity.h) within a bits-per-weight target over the whole model file, written out as a
// policy of one anchored rule per tensor that the user can edit and re-use with `--policy`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/model/model.h"
#include "mixq/quant/policy.h"
#include "mixq/quant/sensitivity.h"

namespace mixq {

struct TensorAllocation {
  std::string name;
  WeightFormat format;
  size_t bytes = 0;
  double sensitivity = 0.0;
  int64_t parameters = 0;
};

struct Allocation {
  double target_bpw = 0.0;
  int64_t budget_bytes = 0;      // floor(target_bpw * total_parameters / 8): the whole file's tensors
  std::vector<TensorAllocation> tensors;  // the table's order
  int64_t allocated_bytes = 0;   // of the allocated tensors
  int64_t fixed_bytes = 0;       // norms and tensors not allocated
  int64_t total_bytes = 0;       // allocated + fixed <= budget_bytes
  int64_t total_parameters = 0;
  double bits_per_weight = 0.0;  // 8 * total_bytes / total_parameters, as llama.cpp reports it
  double total_sensitivity = 0.0;
  // A proven lower bound on the total sensitivity any choice within the budget can reach (the optimum of
  // the linear relaxation, from the same convex hulls): total_sensitivity - lower_bound bounds the gap.
  double lower_bound = 0.0;
  // The budget reached past every tensor's most expensive candidate: all of them were taken.
  bool capped = false;
  std::string method;  // which solver's choice this is (see AllocateOptions)
  std::string note;  // what the user should know about how the budget was met ("" when nothing to say)
};

struct AllocateOptions {
  // Beside the greedy, a dynamic programme over bytes; the better choice wins. It is exact when the
  // grid of the costs' common divisor has at most this many cells (tensors x budget steps, one byte of
  // memory each), and otherwise runs on a coarser grid with every cost rounded up (still within budget,
  // near-optimal when there are many tensors). 0: the greedy alone.
  int64_t max_dp_cells = int64_t{1} << 25;
};

// Chooses one candidate per tensor of `table` for `target_bpw` (bits over all the file's parameters):
// the multiple-choice knapsack by convex hulls and a Lagrangian greedy, then a pass of single and paired
// changes that spends leftover bytes, compared with a dynamic programme (budget.cc states the optimality
// limits). Throws mixq::Error for a target that is not a positive
// finite number, for a tensor with no candidate, and — naming the smallest reachable bpw — for a target
// that even every tensor's cheapest candidate exceeds. A target beyond the most expensive choice takes
// every tensor's most expensive candidate and says so in `note`.
Allocation AllocateBudget(const SensitivityTable& table, double target_bpw, const AllocateOptions& options = {});

// The allocation as policy text: a comment header saying how it was made (target, reached bpw, mode,
// candidates, windows), one `^name$ = format` rule per allocated tensor (regex-escaped, with its bytes and
// sensitivity as a trailing comment), and a `default` line for the tensors not allocated (the table's
// fixed format, or keep). ParsePolicy reads it back; DecideFormat then gives every allocated tensor its
// chosen format.
std::string AllocationPolicyText(const Allocation& allocation, const SensitivityTable& table);
// The same text parsed (source names the target), ready for QuantizeOptions::policy.
QuantPolicy AllocationToPolicy(const Allocation& allocation, const SensitivityTable& table);

// Everything `mixq quantize --target-bpw` needs before QuantizeModel: measure, allocate, make the
// policy. QuantizeModel(model, out, {.policy = result.policy}) then writes a file of
// allocation.total_bytes tensor bytes.
struct TargetBpwOptions {
  double target_bpw = 0.0;
  SensitivityOptions sensitivity;
};
struct TargetBpwResult {
  SensitivityTable table;
  Allocation allocation;
  std::string policy_text;
  QuantPolicy policy;
};
TargetBpwResult AllocateTargetBpw(const Model& model, const TargetBpwOptions& options);

}  // namespace mixq

// `mixq quantize IN OUT.gguf --type T [--policy FILE|PRESET]`: round-to-nearest quantization of every
// weight matrix, a table of what each tensor became and what it cost, written atomically.
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mixq/base/error.h"
#include "mixq/io/atomic_file.h"
#include "mixq/quant/budget.h"
#include "mixq/quant/calibration.h"
#include "mixq/quant/quantize_model.h"
#include "mixq/quant/salient.h"
#include "mixq/quant/spike_policy.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct QuantizeArgs {
  ModelArgs model;
  std::string output;
  std::string type;
  std::string policy;
  bool strict = false;
  bool json = false;
  bool dump_policy = false;
  std::string method;
  std::string calib;
  CalibrationOptions data;  // --data/--samples/--ctx/--seed for the layer-by-layer methods
  bool act_order = false;
  double damp = 0.01;
  double target_bpw = 0.0;
  std::string candidates = "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0";
  std::string sensitivity = "kl";
  std::string save_policy;
  // Salient weights (docs/salient.md); empty: none.
  std::string salient;
  std::string salient_by;
  std::string salient_scope;
  // --spike-aware (docs/w8a8.md)
  bool spike_aware = false;
  std::optional<double> spike_threshold;
  std::optional<std::string> spike_type;
};

// --salient / --salient-by / --salient-scope into options.salient. --salient-by defaults to magnitude (the
// one criterion that needs no statistics); scope to tensor (docs/salient.md says why).
SalientOptions ParseSalientArgs(const QuantizeArgs& args) {
  SalientOptions s;
  if (args.salient.empty()) {
    if (!args.salient_by.empty()) Fail("--salient-by {} needs --salient FRACTION (e.g. 0.5%)", args.salient_by);
    if (!args.salient_scope.empty()) Fail("--salient-scope {} needs --salient FRACTION (e.g. 0.5%)", args.salient_scope);
    return s;
  }
  s.fraction = ParseSalientFraction(args.salient, "--salient");
  const std::string by = args.salient_by.empty() ? "magnitude" : args.salient_by;
  s.criterion = FindSalientCriterion(by);
  if (s.criterion == nullptr) Fail("--salient-by '{}' is not a criterion; expected one of: {}", by, SalientCriterionNames());
  if (!args.salient_scope.empty()) {
    const std::optional<SalientScope> scope = ParseSalientScope(args.salient_scope);
    if (!scope) Fail("--salient-scope '{}' is not a scope; expected row or tensor", args.salient_scope);
    s.scope = *scope;
  }
  if (args.target_bpw != 0.0 && s.enabled()) {
    Fail("--salient with --target-bpw: the allocation does not count a sparse part yet; give --type or --policy");
  }
  return s;
}

std::vector<WeightFormat> ParseCandidates(const std::string& list) {
  std::vector<WeightFormat> formats;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const std::string name = list.substr(start, end - start);
    const std::optional<WeightFormat> f = ParseWeightFormat(name);
    if (!f) Fail("--candidates: '{}' is not a format; expected a list of: {}", name, WeightFormatNames());
    formats.push_back(*f);
    start = end + 1;
  }
  if (formats.size() < 2) Fail("--candidates needs at least two formats to choose between");
  return formats;
}

// --target-bpw: measures each tensor's sensitivity to each candidate, allocates formats under the size
// budget, prints the allocation and returns it as the policy to quantize by.
QuantPolicy AllocateForTarget(const QuantizeArgs& args, const Model& model, const QuantizeOptions& options) {
  TargetBpwOptions t;
  t.target_bpw = args.target_bpw;
  const std::optional<SensitivityMode> mode = ParseSensitivityMode(args.sensitivity);
  if (!mode) Fail("--sensitivity '{}' is not a mode; expected kl or output", args.sensitivity);
  t.sensitivity.mode = *mode;
  t.sensitivity.candidates = ParseCandidates(args.candidates);
  t.sensitivity.fixed_format = options.type;
  if (options.calib != nullptr) {
    for (const auto& [name, stats] : options.calib->linears) t.sensitivity.importance[name] = stats.Importance();
  }
  if (*mode == SensitivityMode::kKl) {
    if (args.data.data_path.empty()) Fail("--target-bpw with --sensitivity kl needs calibration text: --data FILE");
    t.sensitivity.windows = SampleCalibrationWindows(model, args.data);
  }
  const TargetBpwResult r = AllocateTargetBpw(model, t);
  const Allocation& a = r.allocation;
  fmt::print(stderr, "target {:.3f} bpw: allocated {:.3f} bpw ({} bytes), total sensitivity {:.4g} (lower bound "
             "{:.4g}), {}{}\n", a.target_bpw, a.bits_per_weight, a.total_bytes, a.total_sensitivity, a.lower_bound,
             a.method, a.note.empty() ? "" : "; " + a.note);
  if (!args.save_policy.empty()) {
    AtomicFile file(args.save_policy);
    file.Write(r.policy_text.data(), r.policy_text.size());
    file.Commit();
    fmt::print(stderr, "wrote the allocation as a policy to {}\n", args.save_policy);
  }
  return r.policy;
}

void SavePolicyText(const std::string& path, const std::string& text) {
  AtomicFile file(path);
  file.Write(text.data(), text.size());
  file.Commit();
}

// --spike-aware: the policy that keeps the calibrated spike projections at --spike-type and quantizes the
// rest as --type (default w8a8); printed, and saved with --save-policy.
QuantPolicy SpikeAwarePolicy(const QuantizeArgs& args, const QuantizeOptions& options) {
  if (options.calib == nullptr) {
    Fail("--spike-aware ranks projections by their calibrated max|input|: give --calib STATS (from `mixq calibrate`)");
  }
  if (!args.policy.empty() || args.target_bpw != 0.0) {
    Fail("--spike-aware makes the policy: give it, --policy or --target-bpw, not several");
  }
  SpikePolicyOptions spike;
  if (args.spike_threshold) spike.threshold = *args.spike_threshold;
  if (args.spike_type) spike.spike_type = *args.spike_type;
  if (options.type) spike.base = *options.type;
  const SpikePolicy p = MakeSpikePolicy(*options.calib, spike);
  fmt::print(stderr, "spike-aware: {} projection(s) above {:g} x the median max|input| stay {}:\n{}",
             p.spikes.size(), spike.threshold, spike.spike_type, p.text);
  if (!args.save_policy.empty()) {
    SavePolicyText(args.save_policy, p.text);
    fmt::print(stderr, "wrote the spike-aware recipe as a policy to {}\n", args.save_policy);
  }
  return p.policy;
}

std::string ActivationColumn(const TensorQuantReport& t) {
  if (t.activation.empty()) return "-";
  if (t.activation_scale > 0.0f) return fmt::format("{} {:.4g}", t.activation, t.activation_scale);
  return t.activation;
}

void PrintTable(const QuantizeReport& r) {
  int64_t salient = 0;
  for (const TensorQuantReport& t : r.tensors) salient += t.salient_nnz;
  // The salient column only when a sparse part was asked for; bytes and bpw include it.
  const std::string salient_head = salient > 0 ? fmt::format(" {:>8}", "salient") : "";
  fmt::print("{:<28} {:<16} {:<6} {:<12} {:<22} {:<20}{} {:>12} {:>7} {:>10}  {}\n", "tensor", "shape", "from", "to",
             "method", "activations", salient_head, "bytes", "bpw", "rel.rmse", "chosen by");
  for (const TensorQuantReport& t : r.tensors) {
    const std::string salient_cell = salient > 0 ? fmt::format(" {:>8}", t.salient_nnz) : "";
    fmt::print("{:<28} {:<16} {:<6} {:<12} {:<22} {:<20}{} {:>12} {:>7.3f} {:>10.3e}  {}\n", t.name,
               ShapeString(t.shape), DTypeName(t.from), t.format, t.method.empty() ? "-" : t.method,
               ActivationColumn(t), salient_cell, t.bytes, t.bits_per_weight, t.relative_rmse, t.reason);
  }
  if (salient > 0) {
    size_t salient_bytes = 0;
    for (const TensorQuantReport& t : r.tensors) salient_bytes += t.salient_bytes;
    fmt::print("salient: {} weights kept in FP16 ({:.3f}% of all parameters), sparse part {} bytes ({:.3f} bits per "
               "weight of the model, included below)\n",
               salient, 100.0 * static_cast<double>(salient) / static_cast<double>(r.output.parameters),
               salient_bytes, 8.0 * static_cast<double>(salient_bytes) / static_cast<double>(r.output.parameters));
  }
  fmt::print("size: {:.2f} MiB ({:.3f} bits per weight) -> {:.2f} MiB ({:.3f} bits per weight), {} parameters, "
             "{:.1f} s\n",
             r.input.bytes / 1048576.0, r.input.bits_per_weight(), r.output.bytes / 1048576.0,
             r.output.bits_per_weight(), r.output.parameters, r.seconds);
}

void PrintJson(const QuantizeReport& r, const std::string& output) {
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const TensorQuantReport& t : r.tensors) {
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"from", DTypeName(t.from)},
                       {"to", t.format},
                       {"method", t.method},
                       {"activation", t.activation},
                       {"activation_scale", t.activation_scale},
                       {"bytes", t.bytes},
                       {"bits_per_weight", t.bits_per_weight},
                       {"salient_nnz", t.salient_nnz},
                       {"salient_bytes", t.salient_bytes},
                       {"relative_rmse", t.relative_rmse},
                       {"chosen_by", t.reason}});
  }
  nlohmann::ordered_json j = {{"output", output},
                              {"parameters", r.output.parameters},
                              {"input_bytes", r.input.bytes},
                              {"output_bytes", r.output.bytes},
                              {"input_bits_per_weight", r.input.bits_per_weight()},
                              {"output_bits_per_weight", r.output.bits_per_weight()},
                              {"seconds", r.seconds},
                              {"tensors", tensors}};
  fmt::print("{}\n", j.dump(2));
}

void RunQuantize(const QuantizeArgs& args) {
  if (!args.dump_policy && !args.output.ends_with(".gguf")) {
    Fail("output '{}' must end in .gguf (quantize writes GGUF)", args.output);
  }
  if (args.type.empty() && args.policy.empty() && args.target_bpw == 0.0 && !args.spike_aware) {
    Fail("give --type (e.g. q4_k, int4-g128, w8a8), --policy, --target-bpw or --spike-aware");
  }
  if (!args.spike_aware && (args.spike_threshold || args.spike_type)) {
    Fail("--spike-threshold and --spike-type choose how --spike-aware works: add --spike-aware");
  }
  if (args.target_bpw != 0.0 && !args.policy.empty()) Fail("--target-bpw makes the policy: give it or --policy");
  if (args.target_bpw < 0.0 || args.target_bpw > 32.0) Fail("--target-bpw {} is out of range (0 .. 32)", args.target_bpw);
  QuantizeOptions options;
  if (!args.type.empty()) {
    options.type = ParseWeightFormat(args.type);
    if (!options.type) Fail("--type '{}' is not a format; expected one of: {}", args.type, WeightFormatNames());
  }
  options.strict = args.strict;
  CalibrationStats calib;
  if (!args.calib.empty()) {
    calib = LoadCalibrationStats(args.calib);
    options.calib = &calib;
    options.method = QuantMethod::kImatrix;  // llama-quantize --imatrix's meaning, unless --method says else
  }
  if (!args.method.empty()) {
    const std::optional<QuantMethod> method = ParseQuantMethod(args.method);
    if (!method) Fail("--method '{}' is not a method; expected rtn, imatrix, awq, gptq or awq+gptq", args.method);
    options.method = *method;
  }
  if (args.damp < 0.0 || args.damp > 1.0) Fail("--damp {} is out of range (0 .. 1)", args.damp);
  options.gptq.act_order = args.act_order;
  options.gptq.damp = args.damp;
  options.salient = ParseSalientArgs(args);
  const Model model = LoadModelFromArgs(args.model, /*require_tokenizer=*/!args.dump_policy);
  const bool layerwise = options.method != QuantMethod::kRtn && options.method != QuantMethod::kImatrix;
  const bool salient_impact = options.salient.enabled() && options.salient.criterion->need == SalientNeed::kHessian;
  if (!args.data.data_path.empty() && !layerwise && !salient_impact && args.target_bpw == 0.0) {
    Fail("--data is calibration text for --method awq, gptq, awq+gptq, --salient-by impact or --target-bpw "
         "(imatrix reads --calib)");
  }
  if ((layerwise || salient_impact) && !args.data.data_path.empty()) {
    options.windows = SampleCalibrationWindows(model, args.data);
  }
  if (args.spike_aware) options.policy = SpikeAwarePolicy(args, options);
  if (args.target_bpw != 0.0) options.policy = AllocateForTarget(args, model, options);
  if (!args.policy.empty()) {
    options.policy = LoadPolicy(args.policy, model.config.n_layers, model.weights.output.empty());
  }
  if (args.dump_policy) {
    fmt::print("{}", PolicyToText(options.policy));
    return;
  }
  const QuantizeReport report = QuantizeModel(model, args.output, options);
  if (args.json) {
    PrintJson(report, args.output);
  } else {
    PrintTable(report);
    fmt::print("wrote {}\n", args.output);
  }
}

}  // namespace

void RegisterQuantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a model's weights into a GGUF file");
  cmd->add_option("model", args->model.path, "llama2.c checkpoint, GGUF file, or Hugging Face folder")->required();
  cmd->add_option("output", args->output, "the GGUF file to write (never the input)");
  cmd->add_option("--type", args->type,
                  "format of every weight matrix no policy rule names: q4_k, q8_0, ..., int4-g128, int8-pc, "
                  "int4-pt, with -sym for symmetric, fp8, w8a8 (int8 activations, static scales: needs --calib), "
                  "w8a8-token (dynamic per-token); norms stay f32");
  cmd->add_option("--policy", args->policy,
                  "per-tensor formats: a preset (q3_k_m, q4_k_s, q4_k_m, q5_k_m) or a file of "
                  "'REGEX = FORMAT|keep' lines, first match wins (docs/quantize.md)");
  cmd->add_flag("--strict", args->strict,
                "fail when a format cannot hold a tensor's rows, instead of llama.cpp's fallback types");
  cmd->add_option("--method", args->method,
                  "rtn (default), imatrix (needs --calib; the default when --calib is given), awq, gptq, "
                  "awq+gptq (docs/calibration.md)");
  cmd->add_option("--calib,--imatrix", args->calib,
                  "activation statistics: from `mixq calibrate`, or a llama.cpp imatrix (.gguf or legacy .dat)");
  cmd->add_option("--data", args->data.data_path,
                  "calibration text for awq/gptq (plain text, or JSONL with \"text\")");
  cmd->add_option("--samples", args->data.samples, "calibration windows (default 128)");
  cmd->add_option("--ctx", args->data.ctx, "tokens per calibration window (default 512)");
  cmd->add_option("--seed", args->data.seed, "seed of the window sampling (default 0)");
  cmd->add_flag("--act-order", args->act_order, "gptq: quantize columns by decreasing Hessian diagonal");
  cmd->add_option("--damp", args->damp, "gptq: damping as a fraction of the Hessian's mean diagonal (default 0.01)");
  cmd->add_option("--target-bpw", args->target_bpw,
                  "choose each tensor's format from --candidates to fit this many bits per weight with the "
                  "least measured sensitivity (docs/target-bpw.md)");
  cmd->add_option("--candidates", args->candidates,
                  "formats --target-bpw chooses from (default q2_k,q3_k,q4_k,q5_k,q6_k,q8_0)");
  cmd->add_option("--sensitivity", args->sensitivity,
                  "kl (default: model KL with one tensor quantized, on --data) or output (weighted weight "
                  "error, cheap; uses --calib)");
  cmd->add_option("--save-policy", args->save_policy,
                  "write --target-bpw's allocation or the --spike-aware recipe as a policy file");
  cmd->add_flag("--spike-aware", args->spike_aware,
                "keep the projections whose calibrated max|input| is a spike (--spike-threshold x the median) "
                "at --spike-type, quantize the rest as --type (default w8a8); needs --calib (docs/w8a8.md)");
  cmd->add_option("--spike-threshold", args->spike_threshold,
                  fmt::format("--spike-aware: a spike's max|input| over the median layer's (default {:g})",
                              kDefaultSpikeThreshold));
  cmd->add_option("--spike-type", args->spike_type,
                  "--spike-aware: precision of the spike projections: f16 (default) or fp8 (E4M3 per channel)");
  cmd->add_option("--salient", args->salient,
                  "keep this fraction of every block linear's weights in FP16 beside a mixq INT format, e.g. "
                  "0.5% or 0.005 (docs/salient.md)");
  cmd->add_option("--salient-by", args->salient_by,
                  "how salient weights are chosen: magnitude (default, |w|), activation (|w| * ||x||; --calib, or "
                  "the awq/gptq pass) or impact (w^2 / [H^-1]_jj; needs --data)");
  cmd->add_option("--salient-scope", args->salient_scope,
                  "tensor (default: the top fraction of the whole matrix) or row (the same count in every row)");
  cmd->add_flag("--dump-policy", args->dump_policy, "print the policy as rules (e.g. a preset) and exit");
  cmd->add_flag("--json", args->json, "print the report as JSON");
  cmd->add_option("--tokenizer", args->model.tokenizer,
                  "tokenizer file (llama2.c tokenizer.bin, tokenizer.model or a GGUF vocabulary)");
  cmd->add_option("-t,--threads", args->model.threads, "threads (default: one per core)");
  cmd->callback([args] {
    if (!args->dump_policy && args->output.empty()) Fail("quantize needs an OUTPUT file");
    RunQuantize(*args);
  });
}

}  // namespace mixq::cli

// llama-bench's pp/tg measurements in real llama.cpp (through node-llama-cpp), then `mixq bench` on the
// same file with the same threads: prompt processing of -p tokens in one batch, and -n single-token
// generation steps, each repeated -r times (mean ± stdev of tokens/s). Run through scripts/bench_llamacpp.
import {execFileSync} from "node:child_process";
import process from "node:process";

const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");

const args = process.argv.slice(2);
function Opt(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
}
const mixq = Opt("--mixq");
const model_path = args.find((a, i) => !a.startsWith("-") && !(i > 0 && args[i - 1].startsWith("-")));
const threads = Number(Opt("-t", "2"));
const pp = Number(Opt("-p", "512"));
const tg = Number(Opt("-n", "128"));
const reps = Number(Opt("-r", "3"));
if (!model_path) throw new Error("usage: bench_llamacpp MODEL.gguf [-t 2] [-p 512] [-n 128] [-r 3]");

function Stats(values) {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, values.length - 1));
  return `${mean.toFixed(2)} ± ${sd.toFixed(2)}`;
}

const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: model_path, gpuLayers: 0});
const context = await model.createContext({contextSize: pp + tg + 8, batchSize: Math.max(pp, 1), threads,
                                           sequences: 1});
const sequence = context.getSequence();
// Token ids as llama-bench uses them: arbitrary valid ids (content does not change the work).
const ids = (n) => Array.from({length: n}, (_, i) => 1 + (i * 7919) % 500);
const ppRates = [];
const tgRates = [];
// One warm-up run of each, as llama-bench does.
for (let r = -1; r < reps; r++) {
  if (pp > 0) {
    await sequence.clearHistory();
    const t0 = process.hrtime.bigint();
    await sequence.controlledEvaluate(ids(pp));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= 0) ppRates.push(pp / s);
  }
  if (tg > 0) {
    await sequence.clearHistory();
    const one = ids(tg);
    const t0 = process.hrtime.bigint();
    // Each step asks for logits, as llama-bench's decode does: a token with no generateNext option
    // is evaluated with no output, so llama.cpp would skip the output matrix (13% of an F16
    // LLaMA-2-7B-shaped 4-layer file's bytes) and beat the bandwidth bound.
    const logits = {generateNext: {logits: {filter: {tokens: [0]}}}};
    for (let i = 0; i < tg; i++) await sequence.controlledEvaluate([[one[i], logits]]);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= 0) tgRates.push(tg / s);
  }
}
console.log(`llama.cpp ${llama.llamaCppRelease?.release ?? "?"} (node-llama-cpp), ${model.typeDescription}, ` +
            `${threads} threads`);
if (pp > 0) console.log(`  pp${pp}: ${Stats(ppRates)} t/s`);
if (tg > 0) console.log(`  tg${tg}: ${Stats(tgRates)} t/s`);
await context.dispose();
await model.dispose();
// --mixq none: llama.cpp only (scripts/bench_alternate runs mixq itself, between llama.cpp's rounds).
if (mixq === "none") process.exit(0);
console.log(`mixq bench ${model_path} -t ${threads} -p ${pp} -n ${tg} -r ${reps}`);
console.log(execFileSync(mixq, ["bench", model_path, "-t", String(threads), "-p", String(pp), "-n", String(tg),
                                "-r", String(reps)], {encoding: "utf8"}));

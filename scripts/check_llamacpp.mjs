// Developer check, NOT run by CI (it needs node-llama-cpp from the npm registry): GGUF files written by
// `mixq convert` load and run in real llama.cpp and give mixq's tokens, greedy text and perplexity.
// Run it through scripts/check_llamacpp, which installs node-llama-cpp (prebuilt llama.cpp CPU binaries)
// into a folder outside the repository, compiles scripts/check_llamacpp_tokenize.cc and calls this file:
//   node check_llamacpp.mjs --root REPO --tokenize HELPER --work DIR
// Exits 1 if any check fails; docs/llamacpp-compat.md records what it checks and a run's numbers.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");

function Arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) throw new Error(`missing --${name}`);
  return fallback;
}
const root = path.resolve(Arg("root"));
const mixq = Arg("mixq", path.join(root, "build/mixq"));
const tokenizeHelper = Arg("tokenize");
const work = path.resolve(Arg("work"));
const shared = path.resolve(Arg("shared", path.join(root, "../shared")));
const skipPpl = process.argv.includes("--skip-ppl");
const quantOnly = process.argv.includes("--quant-only");  // only the files `mixq quantize` writes
fs.mkdirSync(work, {recursive: true});

let failures = 0;
function Check(ok, what, detail = "") {
  console.log(`${ok ? "PASS" : "FAIL"}  ${what}${detail ? `: ${detail}` : ""}`);
  if (!ok) failures++;
  return ok;
}
function Mixq(args) {
  return execFileSync(mixq, args, {encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"]});
}
// mixq's ids (with BOS) for each text, from the helper compiled against mixq's own libraries.
function MixqTokenize(model, texts) {
  const out = execFileSync(tokenizeHelper, [model], {input: JSON.stringify(texts), encoding: "utf8"});
  return out.trim().split("\n").map((line) => JSON.parse(line).ids);
}
// `mixq generate` prints the prompt as decoded, the generated text, then one "\n" (statistics go to stderr).
function MixqGenerate(model, prompt, n) {
  const out = Mixq(["generate", model, "-p", prompt, "-n", String(n), "--temp", "0"]);
  return out.endsWith("\n") ? out.slice(0, -1) : out;
}

const stories = path.join(shared, "models/stories260K/stories260K.bin");
const docs = path.join(shared, "models/docs-5M");
// Hyper-parameters as shared/models/README.md documents the checkpoints.
const models = [
  {
    name: "stories260K", source: stories, types: ["f32", "f16"],
    hparams: {block_count: 5, embedding_length: 64, feed_forward_length: 172, head_count: 8, head_count_kv: 4,
              context_length: 512, vocab: 512},
    // Texts whose llama.cpp and mixq ids must agree (byte fallback, spaces, newlines, punctuation).
    texts: ["Once upon a time, there was a little girl named Lily.", "Hello world", " leading space",
            "two  spaces\nand a new line", "caf\u00e9 na\u00efve \u65e5\u672c 123!", "Tim said, \"Let's go!\""],
    prompts: ["", "Once upon a time, there was a"],
    // llama2.c's doc/stories260K.md: greedy generation from BOS begins with this sentence.
    published: "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    ppl: {file: path.join(shared, "data/tinystories/TinyStories-valid.head30k.txt"), ctx: 512},
  },
  {
    name: "docs-5M", source: docs, types: ["f32", "bf16"],
    // Written by `mixq quantize` (every matrix in the type; q4_k_m/q3_k_m are llama.cpp's mixes as presets).
    quantTypes: ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs",
                 "q4_k_m", "q3_k_m"],
    hparams: {block_count: 4, embedding_length: 256, feed_forward_length: 768, head_count: 4, head_count_kv: 4,
              context_length: 256, vocab: 4096},
    // Normalized text (one space between words, no new lines): sentencepiece's nmt_nfkc normalization, which
    // mixq applies for docs-5M's tokenizer.model, leaves it unchanged, so llama.cpp must give the same ids.
    texts: ["The Python interpreter is easily extended with new functions and data types implemented in C.",
            "Use the kernel command line parameter mem=512M to limit memory.", "x = 42 # a comment",
            "caf\u00e9 \u00fcber 3.14159"],
    prompts: ["The Python interpreter", "The kernel"],
    ppl: {file: path.join(shared, "data/docs/docs-heldout.norm.txt"), ctx: 256, chunks: 16},
  },
];

const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error});
let version = "?";
try {
  const pkg = new URL("./node_modules/node-llama-cpp/package.json", import.meta.url);
  version = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
} catch {}
console.log(`node-llama-cpp ${version}, llama.cpp ${llama.llamaCppRelease?.release ?? "?"} (${llama.buildType}, ` +
            `gpu ${llama.gpu}); ${llama.systemInfo.trim()}`);

// llama.cpp's greedy continuation of BOS + prompt, stopping at end of text like mixq.
async function LlamaGenerate(model, context, prompt, n) {
  const sequence = context.getSequence();
  const promptTokens = [model.tokens.bos, ...model.tokenize(prompt)];
  const generated = [];
  for await (const token of sequence.evaluate(promptTokens, {temperature: 0})) {
    if (model.isEogToken(token)) break;
    generated.push(token);
    if (generated.length >= n) break;
  }
  sequence.dispose();
  // mixq drops sentencepiece's dummy-prefix space once, at the very start of the text (as llama.cpp's
  // llama_detokenize does); node-llama-cpp's detokenize keeps even that one.
  const all = [...promptTokens, ...generated];
  const raw = model.detokenize(all);
  return {tokens: all, text: raw.startsWith(" ") ? raw.slice(1) : raw, raw};
}

// llama-perplexity's algorithm: tokens with BOS; windows of ctx tokens whose first token becomes BOS;
// positions ctx/2 .. ctx-2 predict the next token; PPL = exp(mean NLL).
async function LlamaPerplexity(model, context, text, ctx, maxChunks) {
  const tokens = [model.tokens.bos, ...model.tokenize(text)];
  let chunks = Math.floor(tokens.length / ctx);
  if (maxChunks) chunks = Math.min(chunks, maxChunks);
  const first = ctx / 2;
  let nll = 0;
  let count = 0;
  let entries = Infinity;
  const sequence = context.getSequence();
  for (let c = 0; c < chunks; c++) {
    const window = tokens.slice(c * ctx, (c + 1) * ctx);
    window[0] = model.tokens.bos;
    const input = window.map((t, j) => (j >= first && j < ctx - 1 ? [t, {generateNext: {logits: true}}] : t));
    await sequence.clearHistory();
    const out = await sequence.controlledEvaluate(input);
    for (let j = first; j < ctx - 1; j++) {
      const logits = out[j].next.logits;  // Map token -> raw logit
      entries = Math.min(entries, logits.size);
      let max = -Infinity;
      for (const v of logits.values()) max = Math.max(max, v);
      let sum = 0;
      for (const v of logits.values()) sum += Math.exp(v - max);
      nll += -(logits.get(window[j + 1]) - max - Math.log(sum));
      count++;
    }
  }
  sequence.dispose();
  return {ppl: Math.exp(nll / count), tokens: tokens.length, chunks, scored: count, entries};
}

const presets = ["q4_k_m", "q3_k_m"];
for (const spec of models) {
  for (const type of [...(quantOnly ? [] : spec.types), ...(spec.quantTypes ?? [])]) {
    const gguf = path.join(work, `${spec.name}.${type}.gguf`);
    // Quantized files: both engines quantize activations to 8 bits for the integer dot products, in a
    // different order of float operations, so greedy text may part after a near-tie and PPL agrees to 1%.
    const quantized = !spec.types.includes(type);
    if (quantized) {
      const how = presets.includes(type) ? ["--policy", type] : ["--type", type];
      console.log(`\n== ${spec.name} ${type}: mixq quantize ${spec.source} ${gguf} ${how.join(" ")}`);
      console.log(Mixq(["quantize", spec.source, gguf, ...how]).trim().split("\n").slice(-2).join("\n"));
    } else {
      console.log(`\n== ${spec.name} ${type}: mixq convert ${spec.source} ${gguf} --type ${type}`);
      console.log(Mixq(["convert", spec.source, gguf, "--type", type]).trim());
    }

    // a. llama.cpp loads it (every tensor's shape and type is checked against the hyper-parameters).
    let model;
    try {
      model = await llama.loadModel({modelPath: gguf, gpuLayers: 0});
    } catch (e) {
      Check(false, `${spec.name} ${type} loads in llama.cpp`, String(e));
      continue;
    }
    const meta = model.fileInfo.metadata;
    const h = meta.llama ?? {};
    const got = {block_count: h.block_count, embedding_length: model.embeddingVectorSize,
                 feed_forward_length: h.feed_forward_length, head_count: h.attention?.head_count,
                 head_count_kv: h.attention?.head_count_kv, context_length: model.trainContextSize,
                 vocab: model.fileInsights.vocabularySize ?? meta.tokenizer?.ggml?.tokens?.length};
    Check(meta.general?.architecture === "llama" && JSON.stringify(got) === JSON.stringify(spec.hparams),
          `${spec.name} ${type} loads as llama`,
          `${model.typeDescription}; ${JSON.stringify(got)} vocab type ${model.vocabularyType}`);

    // b. Tokenization: llama.cpp's ids (BOS + text) against mixq's, from the GGUF and from the source model.
    const fromGguf = MixqTokenize(gguf, spec.texts);
    const fromSource = MixqTokenize(spec.source, spec.texts);
    spec.texts.forEach((text, i) => {
      const ids = [model.tokens.bos, ...model.tokenize(text)];
      const same = JSON.stringify(ids) === JSON.stringify(fromGguf[i]) &&
                   JSON.stringify(ids) === JSON.stringify(fromSource[i]);
      Check(same, `${spec.name} ${type} tokens of ${JSON.stringify(text)}`,
            same ? `${ids.length} ids` : `llama.cpp ${ids} mixq(gguf) ${fromGguf[i]} mixq(source) ${fromSource[i]}`);
    });

    // c. Greedy generation: the same text from llama.cpp, mixq on the GGUF, and mixq on the source model.
    const context = await model.createContext({contextSize: spec.hparams.context_length,
                                               batchSize: spec.hparams.context_length, sequences: 1});
    for (const prompt of spec.prompts) {
      const n = 60;
      const ours = await LlamaGenerate(model, context, prompt, n);
      const mixqGguf = MixqGenerate(gguf, prompt, n);
      const mixqSource = quantized ? mixqGguf : MixqGenerate(spec.source, prompt, n);
      const same = ours.text === mixqGguf && ours.text === mixqSource;
      if (quantized) {
        let common = 0;
        while (common < Math.min(ours.text.length, mixqGguf.length) && ours.text[common] === mixqGguf[common]) common++;
        console.log(`INFO  ${spec.name} ${type} greedy text from ${JSON.stringify(prompt)}: ` +
                    (same ? "identical" : `same for ${common} of ${ours.text.length} characters`));
        continue;
      }
      const bos = ours.tokens.filter((t) => t === model.tokens.bos).length;
      Check(same, `${spec.name} ${type} greedy text from ${JSON.stringify(prompt)} (${ours.tokens.length} tokens, ` +
            `${bos} BOS)`,
            same ? JSON.stringify(ours.text) + (bos > 1 ? `\n  llama.cpp detokenize: ${JSON.stringify(ours.raw)}` : "")
                 : `\n  llama.cpp    ${JSON.stringify(ours.text)}\n  mixq(gguf)   ${JSON.stringify(mixqGguf)}` +
                   `\n  mixq(source) ${JSON.stringify(mixqSource)}`);
      if (prompt === "" && spec.published) {
        Check(ours.text.startsWith(spec.published), `${spec.name} ${type} llama.cpp gives the published story`);
      }
    }

    // d. Perplexity as llama-perplexity computes it, against `mixq ppl` on the same GGUF.
    // llama.cpp's default KV cache is F16 (as llama-perplexity runs); a second context with an F32 cache
    // shows how much of the difference to mixq (F32 cache) that rounding explains.
    if (!skipPpl && spec.ppl) {
      const text = fs.readFileSync(spec.ppl.file, "utf8");
      const t0 = Date.now();
      const r = await LlamaPerplexity(model, context, text, spec.ppl.ctx, spec.ppl.chunks);
      const seconds = (Date.now() - t0) / 1000;
      const f32Context = await model.createContext({
        contextSize: spec.ppl.ctx, batchSize: spec.ppl.ctx, sequences: 1,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
      const r32 = await LlamaPerplexity(model, f32Context, text, spec.ppl.ctx, spec.ppl.chunks);
      await f32Context.dispose();
      const args = ["ppl", gguf, "-f", spec.ppl.file, "-c", String(spec.ppl.ctx)];
      if (spec.ppl.chunks) args.push("--chunks", String(spec.ppl.chunks));
      const m = Mixq(args).match(/Final estimate: PPL = ([0-9.]+)/);
      const mixqPpl = m ? Number(m[1]) : NaN;
      // Same tokens and weights; the two engines differ only in float summation order (and F16/BF16 matmul
      // paths), so the PPLs must agree to 0.1%.
      const rel = Math.abs(r.ppl - mixqPpl) / mixqPpl;
      const rel32 = Math.abs(r32.ppl - mixqPpl) / mixqPpl;
      const tolerance = quantized ? 1e-2 : 1e-3;
      Check(r.entries === spec.hparams.vocab && r32.entries === spec.hparams.vocab && rel < tolerance && rel32 < tolerance,
            `${spec.name} ${type} perplexity (${path.basename(spec.ppl.file)}, ctx ${spec.ppl.ctx}, ${r.chunks} chunks, ` +
            `${r.scored} scored of ${r.tokens} tokens)`,
            `llama.cpp ${r.ppl.toFixed(4)} (${seconds.toFixed(1)} s), mixq ${mixqPpl.toFixed(4)}, ` +
            `relative difference ${rel.toExponential(2)}; with an F32 KV cache llama.cpp ${r32.ppl.toFixed(4)}, ` +
            `relative difference ${rel32.toExponential(2)}; \`mixq ${args.join(" ")}\``);
    }
    await context.dispose();
    await model.dispose();
  }
}

console.log(failures === 0 ? "\nall checks passed" : `\n${failures} check(s) FAILED`);
process.exit(failures === 0 ? 0 : 1);

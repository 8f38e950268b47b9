// Zero-shot task data: the files of HellaSwag, WinoGrande, PIQA, LAMBADA and MMLU parsed into
// (context, continuation) candidates, with the prompt conventions of lm-evaluation-harness.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mixq {

enum class ZeroShotTask { kHellaSwag, kWinoGrande, kPiqa, kLambada, kMmlu };

const char* ZeroShotTaskName(ZeroShotTask task);  // "hellaswag", "winogrande", ...
// "hellaswag,piqa" -> tasks in the order given; throws mixq::Error naming an unknown task and the valid ones.
std::vector<ZeroShotTask> ParseZeroShotTasks(const std::string& comma_list);

// One question. Candidate i is continuations[i] scored after contexts[i]. Most tasks share one context
// (every entry equal); WinoGrande's candidates differ in context and share the continuation. LAMBADA has
// a single candidate (the last word) and gold 0.
struct TaskItem {
  std::string source;  // "file:line" where the item starts, for messages
  std::vector<std::string> contexts;
  std::vector<std::string> continuations;
  int32_t gold = 0;  // index of the right candidate
};

struct TaskData {
  ZeroShotTask task = ZeroShotTask::kHellaSwag;
  std::vector<TaskItem> items;
};

// Each loader throws mixq::Error naming the file and line of anything it cannot read.
// llama.cpp's hellaswag_val_full.txt: 6 lines per item (context, gold 0-3, 4 endings).
TaskData LoadHellaSwag(const std::string& path);
// WinoGrande jsonl {sentence with one "_", option1, option2} and labels "1"/"2", one per line.
TaskData LoadWinoGrande(const std::string& jsonl_path, const std::string& labels_path);
// PIQA jsonl {goal, sol1, sol2} and labels "0"/"1", one per line.
TaskData LoadPiqa(const std::string& jsonl_path, const std::string& labels_path);
// LAMBADA (OpenAI) jsonl {text}: the target is the text after its last space.
TaskData LoadLambada(const std::string& jsonl_path);
// One MMLU(-Redux) CSV (columns found by name in the header; ',' or ';' separated; UTF-8 or cp1252).
std::vector<TaskItem> LoadMmluFile(const std::string& path);
// Every mmlu_*.csv in `dir`, in file-name order.
TaskData LoadMmlu(const std::string& dir);
// A task's files under `data_dir`, laid out as ../shared/data (see docs/eval.md).
TaskData LoadTask(ZeroShotTask task, const std::string& data_dir);

// Parsing pieces, exposed for tests.
struct CsvRecord {
  int64_t line = 0;  // 1-based line where the record starts
  std::vector<std::string> fields;
};
// RFC 4180: `delimiter`-separated fields, "quoted" fields holding delimiters, newlines and "" for a quote;
// records end at \n or \r\n. Throws mixq::Error naming `file` and line for an unterminated quote or text
// after a closing quote.
std::vector<CsvRecord> ParseCsv(std::string_view text, char delimiter, const std::string& file);
// A Python list of string literals, as str(list) writes it: ['a', "b's", 'c\'d', '\xa0']. Throws
// mixq::Error (without a location: callers add it) for anything else.
std::vector<std::string> ParsePythonStringList(std::string_view text);
bool IsValidUtf8(std::string_view bytes);
std::string Cp1252ToUtf8(std::string_view bytes);

}  // namespace mixq

// Parsers for the zero-shot task files, and the prompts lm-evaluation-harness builds from them.
#include "mixq/eval/zeroshot_data.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/log.h"

namespace mixq {
namespace {

constexpr std::array<const char*, 5> kTaskNames = {"hellaswag", "winogrande", "piqa", "lambada", "mmlu"};

// Lines of a text file without their \n or \r\n; a final newline does not start an empty line.
std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::string_view Trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Python's str.strip(): lm-eval strips with it, and it removes Unicode spaces too (an MMLU question ends
// in U+0085). Code points are read from UTF-8; ASCII whitespace includes \x1c-\x1f as in Python.
bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// The code point starting at s[i] and its length in bytes (1 for a stray byte).
std::pair<uint32_t, size_t> CodePointAt(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
  if (n == 1 || i + n > s.size()) return {b, 1};
  uint32_t cp = b & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return {cp, n};
}

std::string_view PythonStrip(std::string_view s) {
  while (!s.empty()) {
    const auto [cp, n] = CodePointAt(s, 0);
    if (!IsPythonSpace(cp)) break;
    s.remove_prefix(n);
  }
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const auto [cp, n] = CodePointAt(s, start);
    if (start + n != s.size() || !IsPythonSpace(cp)) break;
    s.remove_suffix(n);
  }
  return s;
}

// An integer in [lo, hi] or a mixq::Error naming where it came from.
int32_t ParseIndex(std::string_view text, int32_t lo, int32_t hi, const std::string& where, const char* what) {
  text = Trim(text);
  int32_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) {
    Fail("{}: {} must be an integer in {}..{}, got \"{}\"", where, what, lo, hi, text);
  }
  return value;
}

// One object per non-empty line.
std::vector<std::pair<int64_t, nlohmann::json>> ReadJsonLines(const std::string& path) {
  const std::string text = ReadFileToString(path);
  std::vector<std::pair<int64_t, nlohmann::json>> objects;
  const std::vector<std::string_view> lines = SplitLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Trim(lines[i]).empty()) continue;
    nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) Fail("{}:{}: not a JSON object", path, i + 1);
    objects.emplace_back(static_cast<int64_t>(i + 1), std::move(j));
  }
  return objects;
}

std::string StringField(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) Fail("{}: missing string field \"{}\"", where, key);
  return it->get<std::string>();
}

// The non-empty lines of a labels file, with their line numbers.
std::vector<std::pair<int64_t, std::string_view>> LabelLines(const std::string& text) {
  std::vector<std::pair<int64_t, std::string_view>> labels;
  const std::vector<std::string_view> lines = SplitLines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!Trim(lines[i]).empty()) labels.emplace_back(static_cast<int64_t>(i + 1), lines[i]);
  }
  return labels;
}

void CheckSameCount(size_t n_labels, size_t n_items, const std::string& labels_path, const std::string& jsonl_path) {
  if (n_labels != n_items) {
    Fail("{} has {} labels but {} has {} items: they must match one to one", labels_path, n_labels, jsonl_path,
         n_items);
  }
}

std::string Location(const std::string& path, int64_t line) { return path + ":" + std::to_string(line); }

// lm-evaluation-harness moves a context's trailing spaces to the start of the continuation; every task here
// builds continuations that start with the space already, so the contexts are only trimmed on the right.
TaskItem SharedContextItem(std::string source, const std::string& context, const std::vector<std::string>& endings,
                           int32_t gold) {
  TaskItem item;
  item.source = std::move(source);
  for (const std::string& ending : endings) {
    item.contexts.push_back(context);
    item.continuations.push_back(" " + ending);
  }
  item.gold = gold;
  return item;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "high_school_us_history" from "mmlu_high_school_us_history.csv", spaces for underscores as lm-eval writes it.
std::string MmluSubject(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  if (stem.rfind("mmlu_", 0) == 0) stem = stem.substr(5);
  std::replace(stem.begin(), stem.end(), '_', ' ');
  return stem;
}

}  // namespace

const char* ZeroShotTaskName(ZeroShotTask task) { return kTaskNames[static_cast<size_t>(task)]; }

std::vector<ZeroShotTask> ParseZeroShotTasks(const std::string& comma_list) {
  std::vector<ZeroShotTask> tasks;
  size_t start = 0;
  while (start <= comma_list.size()) {
    size_t end = comma_list.find(',', start);
    if (end == std::string::npos) end = comma_list.size();
    const std::string name(Trim(std::string_view(comma_list).substr(start, end - start)));
    const auto it = std::find_if(kTaskNames.begin(), kTaskNames.end(), [&](const char* n) { return name == n; });
    if (it == kTaskNames.end()) {
      Fail("--task: unknown task \"{}\" (expected a comma-separated list of hellaswag, winogrande, piqa, lambada, mmlu)",
           name);
    }
    const auto task = static_cast<ZeroShotTask>(it - kTaskNames.begin());
    if (std::find(tasks.begin(), tasks.end(), task) != tasks.end()) Fail("--task: \"{}\" is listed twice", name);
    tasks.push_back(task);
    start = end + 1;
  }
  return tasks;
}

TaskData LoadHellaSwag(const std::string& path) {
  const std::string text = ReadFileToString(path);
  std::vector<std::string_view> lines = SplitLines(text);
  while (!lines.empty() && Trim(lines.back()).empty()) lines.pop_back();
  if (lines.empty() || lines.size() % 6 != 0) {
    Fail("{}: {} lines, expected a multiple of 6 (context, gold index, 4 endings per item)", path, lines.size());
  }
  TaskData data{ZeroShotTask::kHellaSwag, {}};
  data.items.reserve(lines.size() / 6);
  for (size_t i = 0; i < lines.size(); i += 6) {
    const int32_t gold = ParseIndex(lines[i + 1], 0, 3, Location(path, static_cast<int64_t>(i + 2)), "the gold ending");
    std::vector<std::string> endings;
    for (size_t k = 0; k < 4; ++k) {
      const std::string_view ending = Trim(lines[i + 2 + k]);
      if (ending.empty()) Fail("{}: empty ending", Location(path, static_cast<int64_t>(i + 3 + k)));
      endings.emplace_back(ending);
    }
    const std::string_view context = Trim(lines[i]);
    if (context.empty()) Fail("{}: empty context", Location(path, static_cast<int64_t>(i + 1)));
    data.items.push_back(SharedContextItem(Location(path, static_cast<int64_t>(i + 1)), std::string(context), endings, gold));
  }
  return data;
}

TaskData LoadWinoGrande(const std::string& jsonl_path, const std::string& labels_path) {
  const auto objects = ReadJsonLines(jsonl_path);
  const std::string labels_text = ReadFileToString(labels_path);
  const auto labels = LabelLines(labels_text);
  CheckSameCount(labels.size(), objects.size(), labels_path, jsonl_path);
  TaskData data{ZeroShotTask::kWinoGrande, {}};
  for (size_t i = 0; i < objects.size(); ++i) {
    const std::string where = Location(jsonl_path, objects[i].first);
    const std::string sentence = StringField(objects[i].second, "sentence", where);
    const size_t blank = sentence.find('_');
    if (blank == std::string::npos || sentence.find('_', blank + 1) != std::string::npos) {
      Fail("{}: the sentence must hold exactly one \"_\" blank", where);
    }
    // lm-eval's partial scoring: the context is the sentence up to the blank with the option filled in,
    // the continuation (the same for both options) is the rest of the sentence.
    const std::string rest(PythonStrip(std::string_view(sentence).substr(blank + 1)));
    if (rest.empty()) Fail("{}: nothing follows the blank, so there is nothing to score", where);
    TaskItem item;
    item.source = where;
    for (const char* key : {"option1", "option2"}) {
      item.contexts.push_back(sentence.substr(0, blank) + StringField(objects[i].second, key, where));
      item.continuations.push_back(" " + rest);
    }
    item.gold = ParseIndex(labels[i].second, 1, 2, Location(labels_path, labels[i].first), "the label") - 1;
    data.items.push_back(std::move(item));
  }
  return data;
}

TaskData LoadPiqa(const std::string& jsonl_path, const std::string& labels_path) {
  const auto objects = ReadJsonLines(jsonl_path);
  const std::string labels_text = ReadFileToString(labels_path);
  const auto labels = LabelLines(labels_text);
  CheckSameCount(labels.size(), objects.size(), labels_path, jsonl_path);
  TaskData data{ZeroShotTask::kPiqa, {}};
  for (size_t i = 0; i < objects.size(); ++i) {
    const std::string where = Location(jsonl_path, objects[i].first);
    const nlohmann::json& j = objects[i].second;
    const std::string context = "Question: " + StringField(j, "goal", where) + "\nAnswer:";
    const int32_t gold = ParseIndex(labels[i].second, 0, 1, Location(labels_path, labels[i].first), "the label");
    data.items.push_back(
        SharedContextItem(where, context, {StringField(j, "sol1", where), StringField(j, "sol2", where)}, gold));
  }
  return data;
}

TaskData LoadLambada(const std::string& jsonl_path) {
  TaskData data{ZeroShotTask::kLambada, {}};
  for (const auto& [line, j] : ReadJsonLines(jsonl_path)) {
    const std::string where = Location(jsonl_path, line);
    const std::string text = StringField(j, "text", where);
    // lm-eval's lambada_openai: text.split(' ')[:-1] joined is the context, ' ' + the last piece the target.
    const size_t space = text.rfind(' ');
    if (space == std::string::npos || space == 0 || space + 1 == text.size()) {
      Fail("{}: the text needs a context, a space and a last word", where);
    }
    TaskItem item;
    item.source = where;
    item.contexts.push_back(text.substr(0, space));
    item.continuations.push_back(text.substr(space));
    data.items.push_back(std::move(item));
  }
  return data;
}

std::vector<TaskItem> LoadMmluFile(const std::string& path) {
  std::string text = ReadFileToString(path);
  if (!IsValidUtf8(text)) {
    Info("{} is not UTF-8; read as cp1252", path);
    text = Cp1252ToUtf8(text);
  }
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  // A view into `text` itself (text.substr would make a temporary string, freed before the count below).
  const std::string_view header = std::string_view(text).substr(0, text.find('\n'));
  const char delimiter =
      std::count(header.begin(), header.end(), ';') > std::count(header.begin(), header.end(), ',') ? ';' : ',';
  const std::vector<CsvRecord> records = ParseCsv(text, delimiter, path);
  if (records.empty()) Fail("{}: empty file, expected a header with question, choices, answer", path);
  const auto column = [&](const char* name) {
    const auto& h = records[0].fields;
    const auto it = std::find_if(h.begin(), h.end(), [&](const std::string& f) { return Trim(f) == name; });
    if (it == h.end()) Fail("{}:1: the header has no \"{}\" column", path, name);
    return static_cast<size_t>(it - h.begin());
  };
  const size_t question_col = column("question");
  const size_t choices_col = column("choices");
  const size_t answer_col = column("answer");
  const size_t needed = std::max({question_col, choices_col, answer_col}) + 1;
  const std::string subject = MmluSubject(path);
  std::vector<TaskItem> items;
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& record = records[r];
    const std::string where = Location(path, record.line);
    if (record.fields.size() == 1 && Trim(record.fields[0]).empty()) continue;  // a blank line
    if (record.fields.size() < needed) {
      Fail("{}: {} fields, expected at least {} (question, choices, answer)", where, record.fields.size(), needed);
    }
    std::vector<std::string> choices;
    try {
      choices = ParsePythonStringList(record.fields[choices_col]);
    } catch (const Error& e) {
      Fail("{}: the choices column: {}", where, e.what());
    }
    if (choices.size() < 2 || choices.size() > 26) Fail("{}: {} choices, expected 2 to 26", where, choices.size());
    const int32_t gold =
        ParseIndex(record.fields[answer_col], 0, static_cast<int32_t>(choices.size()) - 1, where, "the answer");
    // lm-eval's default mmlu task: subject description, the question, lettered choices, "Answer:", and the
    // letters as continuations (target delimiter " ").
    std::string prompt = fmt::format("The following are multiple choice questions (with answers) about {}.\n\n{}\n",
                                     subject, PythonStrip(record.fields[question_col]));
    std::vector<std::string> letters;
    for (size_t c = 0; c < choices.size(); ++c) {
      const char letter = static_cast<char>('A' + c);
      prompt += fmt::format("{}. {}\n", letter, choices[c]);
      letters.emplace_back(1, letter);
    }
    prompt += "Answer:";
    items.push_back(SharedContextItem(where, prompt, letters, gold));
  }
  return items;
}

TaskData LoadMmlu(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("mmlu_", 0) == 0 && entry.path().extension() == ".csv") files.push_back(entry.path().string());
  }
  if (ec) Fail("{}: cannot list the MMLU folder: {}", dir, ec.message());
  if (files.empty()) Fail("{}: no mmlu_*.csv files", dir);
  std::sort(files.begin(), files.end());
  TaskData data{ZeroShotTask::kMmlu, {}};
  for (const std::string& file : files) {
    std::vector<TaskItem> items = LoadMmluFile(file);
    std::move(items.begin(), items.end(), std::back_inserter(data.items));
  }
  return data;
}

TaskData LoadTask(ZeroShotTask task, const std::string& data_dir) {
  switch (task) {
    case ZeroShotTask::kHellaSwag:
      return LoadHellaSwag(data_dir + "/hellaswag/hellaswag_val_full.txt");
    case ZeroShotTask::kWinoGrande:
      return LoadWinoGrande(data_dir + "/winogrande/dev.jsonl", data_dir + "/winogrande/dev-labels.lst");
    case ZeroShotTask::kPiqa:
      return LoadPiqa(data_dir + "/piqa/valid.jsonl", data_dir + "/piqa/valid-labels.lst");
    case ZeroShotTask::kLambada:
      return LoadLambada(data_dir + "/lambada/lambada_test.jsonl");
    case ZeroShotTask::kMmlu:
      return LoadMmlu(data_dir + "/mmlu_redux");
  }
  Fail("unknown task id {}", static_cast<int>(task));
}

std::vector<CsvRecord> ParseCsv(std::string_view text, char delimiter, const std::string& file) {
  std::vector<CsvRecord> records;
  int64_t line = 1;
  size_t i = 0;
  while (i < text.size()) {
    CsvRecord record;
    record.line = line;
    bool end_of_record = false;
    while (!end_of_record) {
      std::string field;
      if (i < text.size() && text[i] == '"') {
        const int64_t quote_line = line;
        ++i;
        while (true) {
          if (i >= text.size()) Fail("{}:{}: a quoted field is never closed", file, quote_line);
          const char c = text[i++];
          if (c == '"') {
            if (i < text.size() && text[i] == '"') {
              field += '"';
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n') ++line;
          field += c;
        }
        if (i < text.size() && text[i] != delimiter && text[i] != '\n' && text[i] != '\r') {
          Fail("{}:{}: unexpected '{}' after a closing quote (expected '{}' or the end of the line)", file, line,
               text[i], delimiter);
        }
      } else {
        while (i < text.size() && text[i] != delimiter && text[i] != '\n') field += text[i++];
        if (!field.empty() && field.back() == '\r' && (i >= text.size() || text[i] == '\n')) field.pop_back();
      }
      record.fields.push_back(std::move(field));
      if (i < text.size() && text[i] == delimiter) {
        ++i;
        continue;
      }
      if (i < text.size() && text[i] == '\r') ++i;
      if (i < text.size() && text[i] == '\n') {
        ++i;
        ++line;
      }
      end_of_record = true;
    }
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<std::string> ParsePythonStringList(std::string_view text) {
  size_t i = 0;
  const auto skip_space = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
  };
  skip_space();
  if (i >= text.size() || text[i] != '[') Fail("expected a Python list starting with '['");
  ++i;
  std::vector<std::string> items;
  skip_space();
  if (i < text.size() && text[i] == ']') return items;
  while (true) {
    skip_space();
    if (i >= text.size() || (text[i] != '\'' && text[i] != '"')) {
      Fail("expected a quoted string at offset {} of the list", i);
    }
    const char quote = text[i++];
    std::string value;
    while (true) {
      if (i >= text.size()) Fail("a string in the list is never closed");
      const char c = text[i++];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (i >= text.size()) Fail("the list ends inside an escape");
      const char e = text[i++];
      switch (e) {
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '\n': break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + digits > text.size()) Fail("a truncated \\{} escape", e);
          uint32_t cp = 0;
          for (size_t k = 0; k < digits; ++k) {
            const int d = HexDigit(text[i + k]);
            if (d < 0) Fail("a bad hex digit in a \\{} escape", e);
            cp = cp * 16 + static_cast<uint32_t>(d);
          }
          if (cp > 0x10FFFF) Fail("\\{} escape beyond Unicode", e);
          i += digits;
          AppendUtf8(cp, value);
          break;
        }
        default:  // Python keeps an unknown escape as written
          value += '\\';
          value += e;
      }
    }
    items.push_back(std::move(value));
    skip_space();
    if (i < text.size() && text[i] == ',') {
      ++i;
      skip_space();
      if (i < text.size() && text[i] == ']') break;  // a trailing comma
      continue;
    }
    if (i < text.size() && text[i] == ']') break;
    Fail("expected ',' or ']' at offset {} of the list", i);
  }
  ++i;
  skip_space();
  if (i != text.size()) Fail("text after the list's closing ']'");
  return items;
}

bool IsValidUtf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 1;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n >= bytes.size()) return false;  // the sequence runs past the end
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(bytes[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string Cp1252ToUtf8(std::string_view bytes) {
  // 0x80..0x9F are cp1252's additions to Latin-1; its five unassigned bytes keep their Latin-1 code points.
  static constexpr uint16_t kHigh[32] = {0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                         0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
                                         0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                         0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  std::string out;
  out.reserve(bytes.size());
  for (const char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    AppendUtf8(b >= 0x80 && b < 0xA0 ? kHigh[b - 0x80] : b, out);
  }
  return out;
}

}  // namespace mixq

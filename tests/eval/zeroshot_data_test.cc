// Zero-shot task parsers on the real files (counts, prompts, tricky rows) and on broken input.
#include "mixq/eval/zeroshot_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "mixq/base/error.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;

std::string Data(const std::string& relative) { return SharedPath("data/" + relative); }

// Writes `text` to a fresh file under the test temp dir and returns its path. The name carries the test's
// own name: ctest runs this file's tests as parallel processes sharing one temp dir.
std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const std::string path = ::testing::TempDir() + "/zeroshot_data_" + test + "_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Runs `fn`, expecting a mixq::Error whose message holds every one of `needles`.
template <typename Fn>
void ExpectErrorMentioning(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no mixq::Error thrown";
  } catch (const Error& e) {
    for (const std::string& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "'" << needle << "' not in: " << e.what();
    }
  }
}

TEST(ZeroShotDataTest, HellaSwagHasAllItemsWithLlamaCppContextAndSpacedEndings) {
  const TaskData d = LoadHellaSwag(Data("hellaswag/hellaswag_val_full.txt"));
  ASSERT_EQ(d.items.size(), 10042u);
  const TaskItem& first = d.items[0];
  EXPECT_EQ(first.contexts.size(), 4u);
  EXPECT_EQ(first.contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(first.contexts[3], first.contexts[0]);
  EXPECT_EQ(first.continuations[3], " starts pulling up roofing on a roof.");
  EXPECT_EQ(first.gold, 3);
  EXPECT_NE(first.source.find("hellaswag_val_full.txt:1"), std::string::npos);
  std::map<int32_t, int> golds;
  for (const TaskItem& item : d.items) ++golds[item.gold];
  EXPECT_EQ(golds.size(), 4u);  // all four positions are used as the answer
}

TEST(ZeroShotDataTest, WinoGrandeSplitsAtTheBlankForPartialScoring) {
  const TaskData d = LoadWinoGrande(Data("winogrande/dev.jsonl"), Data("winogrande/dev-labels.lst"));
  ASSERT_EQ(d.items.size(), 1267u);
  const TaskItem& first = d.items[0];
  // "Sarah was a much better surgeon than Maria so _ always got the easier cases.", answer 2.
  EXPECT_EQ(first.contexts[0], "Sarah was a much better surgeon than Maria so Sarah");
  EXPECT_EQ(first.contexts[1], "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(first.continuations[0], " always got the easier cases.");
  EXPECT_EQ(first.continuations[1], first.continuations[0]);
  EXPECT_EQ(first.gold, 1);
  EXPECT_EQ(d.items[1].gold, 0);
}

TEST(ZeroShotDataTest, PiqaUsesTheQuestionAnswerPrompt) {
  const TaskData d = LoadPiqa(Data("piqa/valid.jsonl"), Data("piqa/valid-labels.lst"));
  ASSERT_EQ(d.items.size(), 1838u);
  EXPECT_EQ(d.items[0].contexts[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(d.items[0].continuations[0].rfind(" Provide the guinea pig with a cage full", 0), 0u);
  EXPECT_EQ(d.items[0].gold, 0);
  EXPECT_EQ(d.items[1].gold, 1);
}

TEST(ZeroShotDataTest, LambadaTargetIsTheLastWord) {
  const TaskData d = LoadLambada(Data("lambada/lambada_test.jsonl"));
  ASSERT_EQ(d.items.size(), 5153u);
  ASSERT_EQ(d.items[0].continuations.size(), 1u);
  EXPECT_EQ(d.items[0].continuations[0], " signs");
  const std::string& context = d.items[0].contexts[0];
  EXPECT_EQ(context.substr(context.size() - 18), "I don't care about");
  for (const TaskItem& item : d.items) ASSERT_EQ(item.continuations[0].find(' ', 1), std::string::npos) << item.source;
}

TEST(ZeroShotDataTest, MmluReduxHas57SubjectsOf100WithLetterChoices) {
  const std::string dir = Data("mmlu_redux");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".csv") continue;
    ++files;
    EXPECT_EQ(LoadMmluFile(entry.path().string()).size(), 100u) << entry.path();
  }
  EXPECT_EQ(files, 57);
  const TaskData d = LoadMmlu(dir);
  ASSERT_EQ(d.items.size(), 5700u);
  for (const TaskItem& item : d.items) {
    ASSERT_EQ(item.continuations.size(), 4u) << item.source;
    EXPECT_EQ(item.continuations[2], " C");
    EXPECT_TRUE(IsValidUtf8(item.contexts[0])) << item.source;
    EXPECT_EQ(item.contexts[0].substr(item.contexts[0].size() - 8), "\nAnswer:");
  }
  // The first file in name order, first row: lm-eval's 0-shot prompt.
  EXPECT_EQ(d.items[0].contexts[0].rfind("The following are multiple choice questions (with answers) about abstract "
                                         "algebra.\n\n",
                                         0),
            0u);
}

TEST(ZeroShotDataTest, MmluTrickyRowsParseLikePython) {
  // Double-quoted choices holding an apostrophe and CSV-doubled quotes, and \' inside a single-quoted one.
  const std::vector<TaskItem> astronomy = LoadMmluFile(Data("mmlu_redux/mmlu_astronomy.csv"));
  bool found = false;
  for (const TaskItem& item : astronomy) {
    if (item.contexts[0].find("A. it is about 20000 times stronger than Earth's magnetic field\n"
                              "B. it traps charged particles from Io's volcanoes in a \"plasma torus\" around the planet\n") !=
        std::string::npos) {
      found = true;
    }
  }
  EXPECT_TRUE(found);
  // A list written with spaces inside the brackets and double quotes.
  const std::vector<TaskItem> facts = LoadMmluFile(Data("mmlu_redux/mmlu_global_facts.csv"));
  EXPECT_NE(facts[19].contexts[0].find("\nA. 23%\nB. 38%\nC. 53%\nD. 68%\nAnswer:"), std::string::npos)
      << facts[19].contexts[0];
  // Python's strip() removes the U+0085 ending this question, so lm-eval's prompt has none.
  const std::vector<TaskItem> sociology = LoadMmluFile(Data("mmlu_redux/mmlu_sociology.csv"));
  bool stripped = false;
  for (const TaskItem& item : sociology) {
    stripped = stripped || item.contexts[0].find("Role-learning theory suggests that\nA. ") != std::string::npos;
  }
  EXPECT_TRUE(stripped);
  // The cp1252 file comes out as UTF-8 (its one non-ASCII byte 0xD5 is 'Õ' in cp1252).
  const std::vector<TaskItem> moral = LoadMmluFile(Data("mmlu_redux/mmlu_moral_scenarios.csv"));
  ASSERT_EQ(moral.size(), 100u);
  bool decoded = false;
  for (const TaskItem& item : moral) decoded = decoded || item.contexts[0].find("sister\xC3\x95s head") != std::string::npos;
  EXPECT_TRUE(decoded);
}

TEST(ZeroShotDataTest, PythonStringListEscapes) {
  EXPECT_EQ(ParsePythonStringList(R"(['a', "b's", 'c\'d', 'e\\f', '\xa0', '\in'])"),
            (std::vector<std::string>{"a", "b's", "c'd", "e\\f", "\xC2\xA0", "\\in"}));
  EXPECT_EQ(ParsePythonStringList(R"([ "x" , 'y', ])"), (std::vector<std::string>{"x", "y"}));
  EXPECT_THROW(ParsePythonStringList("'a', 'b'"), Error);
  EXPECT_THROW(ParsePythonStringList("['a', 'b'"), Error);
  EXPECT_THROW(ParsePythonStringList("['a' 'b']"), Error);
  EXPECT_THROW(ParsePythonStringList("['a'] x"), Error);
}

TEST(ZeroShotDataTest, CsvQuotedFieldsAndLineNumbers) {
  const auto records = ParseCsv("a;b\r\n\"x;\"\"y\"\"\nz\";2\r\nlast;3\n", ';', "t.csv");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].fields, (std::vector<std::string>{"x;\"y\"\nz", "2"}));
  EXPECT_EQ(records[1].line, 2);
  EXPECT_EQ(records[2].line, 4);
  EXPECT_EQ(records[2].fields, (std::vector<std::string>{"last", "3"}));
  ExpectErrorMentioning([] { ParseCsv("a,b\nc,\"open\n", ',', "t.csv"); }, {"t.csv:2", "never closed"});
  ExpectErrorMentioning([] { ParseCsv("a,b\n\"q\"x,1\n", ',', "t.csv"); }, {"t.csv:2"});
}

TEST(ZeroShotDataTest, Cp1252AndUtf8) {
  EXPECT_TRUE(IsValidUtf8("plain \xC3\xA9 \xE2\x80\x99"));
  EXPECT_FALSE(IsValidUtf8("sister\xD5s"));
  EXPECT_FALSE(IsValidUtf8("\xE2\x80"));  // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));  // overlong
  EXPECT_EQ(Cp1252ToUtf8("\x93q\x94 \x80 \xE9"), "\xE2\x80\x9Cq\xE2\x80\x9D \xE2\x82\xAC \xC3\xA9");
}

TEST(ZeroShotDataTest, BadInputNamesFileAndLine) {
  ExpectErrorMentioning([] { LoadHellaSwag("/nonexistent/hellaswag.txt"); }, {"/nonexistent/hellaswag.txt"});
  const std::string hs = WriteTemp("hs.txt", "ctx\n1\na\nb\nc\nd\nctx2\n9\na\nb\nc\nd\n");
  ExpectErrorMentioning([&] { LoadHellaSwag(hs); }, {hs + ":8", "gold"});
  const std::string short_hs = WriteTemp("hs_short.txt", "ctx\n1\na\nb\n");
  ExpectErrorMentioning([&] { LoadHellaSwag(short_hs); }, {short_hs, "multiple of 6"});

  const std::string piqa = WriteTemp("piqa.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\",\n");
  const std::string labels = WriteTemp("piqa.lst", "0\n1\n");
  ExpectErrorMentioning([&] { LoadPiqa(piqa, labels); }, {piqa + ":2", "JSON"});
  const std::string piqa_ok = WriteTemp("piqa_ok.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n"
                                                         "{\"goal\": \"g\", \"sol1\": \"a\"}\n");
  ExpectErrorMentioning([&] { LoadPiqa(piqa_ok, labels); }, {piqa_ok + ":2", "sol2"});
  const std::string bad_label = WriteTemp("piqa_bad.lst", "0\n5\n");
  const std::string piqa_two = WriteTemp("piqa_two.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n"
                                                           "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n");
  ExpectErrorMentioning([&] { LoadPiqa(piqa_two, bad_label); }, {bad_label + ":2", "label"});
  const std::string one_label = WriteTemp("piqa_one.lst", "0\n");
  ExpectErrorMentioning([&] { LoadPiqa(piqa_two, one_label); }, {one_label, "1 labels", "2 items"});

  const std::string wino = WriteTemp("wino.jsonl", "{\"sentence\": \"no blank here\", \"option1\": \"a\", \"option2\": \"b\"}\n");
  const std::string wino_labels = WriteTemp("wino.lst", "1\n");
  ExpectErrorMentioning([&] { LoadWinoGrande(wino, wino_labels); }, {wino + ":1", "_"});

  const std::string lambada = WriteTemp("lambada.jsonl", "{\"text\": \"two words\"}\n\n{\"text\": \"oneword\"}\n");
  ExpectErrorMentioning([&] { LoadLambada(lambada); }, {lambada + ":3"});

  const std::string mmlu = WriteTemp("mmlu_bad.csv", "question,choices,answer\nq1,\"['a', 'b']\",1\nq2,\"['a', 'b\",0\n");
  ExpectErrorMentioning([&] { LoadMmluFile(mmlu); }, {mmlu + ":3", "choices"});
  const std::string mmlu_answer = WriteTemp("mmlu_answer.csv", "question;choices;answer\nq1;['a', 'b'];2\n");
  ExpectErrorMentioning([&] { LoadMmluFile(mmlu_answer); }, {mmlu_answer + ":2", "answer"});
  const std::string mmlu_header = WriteTemp("mmlu_header.csv", "q,choices,answer\nq1,\"['a', 'b']\",1\n");
  ExpectErrorMentioning([&] { LoadMmluFile(mmlu_header); }, {mmlu_header + ":1", "question"});
  ExpectErrorMentioning([] { LoadMmlu("/nonexistent/mmlu"); }, {"/nonexistent/mmlu"});
}

TEST(ZeroShotDataTest, TaskListParsing) {
  EXPECT_EQ(ParseZeroShotTasks("piqa,hellaswag"), (std::vector<ZeroShotTask>{ZeroShotTask::kPiqa, ZeroShotTask::kHellaSwag}));
  EXPECT_EQ(ParseZeroShotTasks("mmlu"), (std::vector<ZeroShotTask>{ZeroShotTask::kMmlu}));
  ExpectErrorMentioning([] { ParseZeroShotTasks("piqa,arc"); }, {"\"arc\"", "hellaswag"});
  EXPECT_THROW(ParseZeroShotTasks("piqa,piqa"), Error);
  EXPECT_THROW(ParseZeroShotTasks(""), Error);
}

}  // namespace
}  // namespace mixq

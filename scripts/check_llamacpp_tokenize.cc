// Developer helper for scripts/check_llamacpp: prints mixq's token ids for texts, one JSON line per text.
// Not part of the CMake build (no mixq CLI command exposes raw ids); scripts/check_llamacpp compiles it
// against the build's static libraries. Usage: check_llamacpp_tokenize MODEL < texts.json (an array of
// strings); writes {"text":..., "ids":[...]} lines, ids with BOS as `mixq generate` encodes a prompt.
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "mixq/model/model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " MODEL < texts.json\n";
    return 2;
  }
  try {
    const mixq::Model model = mixq::LoadModel(argv[1]);
    const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const nlohmann::json texts = nlohmann::json::parse(input);
    for (const auto& text : texts) {
      const std::string s = text.get<std::string>();
      nlohmann::json line = {{"text", s}, {"ids", model.tokenizer.Encode(s, /*add_bos=*/true)}};
      std::cout << line.dump() << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "check_llamacpp_tokenize: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

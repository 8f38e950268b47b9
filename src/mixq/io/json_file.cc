// JSON files: read, parsed, and required to be an object.
#include "mixq/io/json_file.h"

#include "mixq/base/error.h"
#include "mixq/base/file.h"

namespace mixq {

nlohmann::json ReadJsonObjectFile(const std::string& path) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(ReadFileToString(path));
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!json.is_object()) Fail("{}: expected a JSON object, got {}", path, json.type_name());
  return json;
}

}  // namespace mixq

// JSON files (config.json, safetensors indexes): read, parsed, and required to be an object.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace mixq {

// Throws mixq::Error naming the file if it cannot be read, is not valid JSON, or is not an object.
nlohmann::json ReadJsonObjectFile(const std::string& path);

}  // namespace mixq

# Sourced by the developer scripts that run real llama.cpp (check_llamacpp, bench_llamacpp); NOT used by CI.
# Installs node-llama-cpp 3.x (prebuilt llama.cpp CPU binaries; nothing is compiled or fetched from GitHub)
# into $dir, a folder outside the repository: MIXQ_LLAMACPP_DIR, default ${TMPDIR:-/tmp}/mixq-llamacpp-check.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${MIXQ_LLAMACPP_DIR:-${TMPDIR:-/tmp}/mixq-llamacpp-check}
case "$dir" in "$root"|"$root"/*) echo "MIXQ_LLAMACPP_DIR must be outside the repository" >&2; exit 2 ;; esac
[ -x "$root/build/mixq" ] || { echo "build mixq first (build/mixq is missing)" >&2; exit 2; }
mkdir -p "$dir"
if [ ! -d "$dir/node_modules/node-llama-cpp" ]; then
  [ -f "$dir/package.json" ] || (cd "$dir" && npm init -y >/dev/null)
  # The prebuilt @node-llama-cpp/linux-x64 binaries come as optional dependencies; skip the postinstall
  # step that would otherwise try to fetch llama.cpp sources.
  (cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund node-llama-cpp@3)
fi

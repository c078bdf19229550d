#!/usr/bin/env bash
# Side by side with another build of the library (e.g. the commit before a change to the loop):
#   src/Microsoft.ML.Continual.Benchmarks/scripts/compare-builds.sh <commit> [rounds] [-- performance arguments]
# Builds <commit> in a temporary worktree, then runs the 'performance' benchmark alternately in that build and in this
# one, <rounds> times (default 3), so that load changes hit both; prints every run's FineTune and raw-loop epoch times.
# With 'parity' as the benchmark argument it compares every trainer's weights byte for byte instead.
set -euo pipefail
cd "$(dirname "$0")/../../.."
commit=${1:?usage: compare-builds.sh <commit> [rounds] [-- benchmark arguments]}
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
args=("${@:-performance}")
other=$(mktemp -d /tmp/continual-baseline.XXXXXX)
trap 'git worktree remove --force "$other" >/dev/null 2>&1 || rm -rf "$other"' EXIT
git worktree add --detach "$other" "$commit" >/dev/null
dotnet build -c Release "$other/src/Microsoft.ML.Continual.Benchmarks" -v q -nologo >/dev/null
dotnet build -c Release src/Microsoft.ML.Continual.Benchmarks -v q -nologo >/dev/null
bench=bin/Release/net10.0/Microsoft.ML.Continual.Benchmarks.dll
if [ "${args[0]}" = "parity" ]; then
  dotnet "$other/src/Microsoft.ML.Continual.Benchmarks/$bench" parity --out "$other/parity" >/dev/null
  dotnet "src/Microsoft.ML.Continual.Benchmarks/$bench" parity --out "$other/parity-this" --compare "$other/parity"
  exit 0
fi
for r in $(seq 1 "$rounds"); do
  echo "== round $r: $commit"
  dotnet "$other/src/Microsoft.ML.Continual.Benchmarks/$bench" "${args[@]}" | grep -E '^\| (raw TorchSharp|FineTune) '
  echo "== round $r: this build"
  dotnet "src/Microsoft.ML.Continual.Benchmarks/$bench" "${args[@]}" | grep -E '^\| (raw TorchSharp|FineTune) '
done

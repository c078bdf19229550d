#!/usr/bin/env bash
# The tests (README's second command). The data-parallel tests run real processes under OpenMPI's mpirun; when OpenMPI 4
# is missing it is installed from Debian's packages (openmpi-bin), as root or through sudo. Everything else is NuGet's.
# --baseline-kernels: run with libtorch's and MKL's baseline CPU code paths forced (ATEN_CPU_CAPABILITY=default,
# MKL_CBWR=COMPATIBLE), as on a machine without AVX2; the suite must pass both ways.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--baseline-kernels" ]; then
  shift
  export ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE
  echo "test.sh: baseline CPU kernels forced (ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE)"
fi
if ! command -v mpirun >/dev/null 2>&1 || ! compgen -G '/usr/lib/*/libmpi.so.40' >/dev/null; then
  echo "test.sh: installing OpenMPI (Debian package openmpi-bin) for the data-parallel tests"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openmpi-bin >/dev/null; }; then
    echo "test.sh: could not install OpenMPI; the data-parallel tests will fail with a message saying so" >&2
  fi
fi
exec dotnet test ContinualML.sln "$@"

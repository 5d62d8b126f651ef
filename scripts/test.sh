#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (they never skip),
# checks formatting and lints, then runs every test with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: nats-server (bus and JetStream), kubectl (against the
# Kubernetes simulator), nftables + iproute2 (enforcement in network namespaces).
declare -A package_of=([curl]=curl [nats-server]=nats-server [kubectl]=kubernetes-client [nft]=nftables [ip]=iproute2)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${package_of[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --all-targets --locked --profile ci

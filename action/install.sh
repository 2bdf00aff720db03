#!/usr/bin/env bash
# Installs a released pwdrift binary: downloads the release archive for this platform, checks its
# SHA-256 against the release's .sha256 file (and its build-provenance attestation with
# `gh attestation verify` where gh is installed and signed in), unpacks it, and reports where the
# binary is. Used by the GitHub Action (action.yml) and usable on any runner or machine:
#
#   PWDRIFT_VERSION=0.2.0 bash install.sh
#
# Settings (environment):
#   PWDRIFT_VERSION       the release, `0.2.0` or `v0.2.0` (required)
#   PWDRIFT_REPO          the GitHub repository, OWNER/NAME (default OWNER/pwdrift)
#   PWDRIFT_BASE_URL      where releases are (default https://github.com/$PWDRIFT_REPO/releases/download);
#                         the archive is $PWDRIFT_BASE_URL/vVERSION/pwdrift-VERSION-TARGET.tar.gz
#   PWDRIFT_TARGET        the Rust target triple (default: this machine's; `--print-target` shows it)
#   PWDRIFT_INSTALL_DIR   where to install (default $HOME/.local/share/pwdrift/VERSION); the binary
#                         goes into its bin/
#   PWDRIFT_FALLBACK      `source` (default): when the release has no archive for this platform,
#                         `cargo install --locked` that release's tag from the repository; `none`: fail
#   PWDRIFT_ATTESTATION   `auto` (default: verify when `gh` is on PATH and GH_TOKEN is set),
#                         `require`, or `skip`
#
# On success the last line of stdout is the directory holding the binary, and, when GITHUB_PATH is
# set (GitHub Actions), that directory is appended to it so later steps find `pwdrift` on PATH.
# A failed check installs nothing.
set -euo pipefail

say() { printf 'pwdrift install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# The Rust target triple of this machine, as the release archives name it.
detect_target() {
  local os arch
  os=$(uname -s)
  arch=$(uname -m)
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
  esac
  case "$os" in
    Linux) echo "$arch-unknown-linux-gnu" ;;
    Darwin) echo "$arch-apple-darwin" ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT) echo "$arch-pc-windows-msvc" ;;
    *) echo "$arch-unknown-$(printf '%s' "$os" | tr '[:upper:]' '[:lower:]')" ;;
  esac
}

if [ "${1:-}" = "--print-target" ]; then
  echo "${PWDRIFT_TARGET:-$(detect_target)}"
  exit 0
fi

version=${PWDRIFT_VERSION:-}
version=${version#v}
[ -n "$version" ] || die "PWDRIFT_VERSION is not set (the release to install, e.g. 0.2.0)"
case "$version" in
  *[!0-9A-Za-z.+-]*) die "PWDRIFT_VERSION is not a version: $version" ;;
esac
repo=${PWDRIFT_REPO:-OWNER/pwdrift}
base=${PWDRIFT_BASE_URL:-https://github.com/$repo/releases/download}
base=${base%/}
target=${PWDRIFT_TARGET:-$(detect_target)}
dest=${PWDRIFT_INSTALL_DIR:-${HOME:?}/.local/share/pwdrift/$version}
fallback=${PWDRIFT_FALLBACK:-source}
attestation=${PWDRIFT_ATTESTATION:-auto}
case "$fallback" in source | none) ;; *) die "PWDRIFT_FALLBACK must be source or none, not $fallback" ;; esac
case "$attestation" in auto | require | skip) ;; *) die "PWDRIFT_ATTESTATION must be auto, require or skip, not $attestation" ;; esac

case "$target" in
  *-windows-*) exe=.exe suffix=.zip ;;
  *) exe="" suffix=.tar.gz ;;
esac
name="pwdrift-$version-$target"
archive="$name$suffix"
url="$base/v$version/$archive"
bin_dir="$dest/bin"

report() {
  if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$bin_dir" >> "$GITHUB_PATH"
  fi
  say "installed $("$bin_dir/pwdrift$exe" --version)"
  echo "$bin_dir"
}

# Already installed (a cache hit): nothing to download.
if [ -x "$bin_dir/pwdrift$exe" ] && "$bin_dir/pwdrift$exe" -V 2> /dev/null | grep -qxF "pwdrift $version"; then
  say "pwdrift $version already in $bin_dir"
  report
  exit 0
fi

# fetch URL FILE: 0 when downloaded, 4 when the server has no such file, 1 otherwise
fetch() {
  local code
  if command -v curl > /dev/null; then
    code=$(curl -sSL --retry 3 -o "$2" -w '%{http_code}' "$1") || return 1
    case "$code" in 2??) return 0 ;; 404) return 4 ;; *) say "$1: HTTP $code"; return 1 ;; esac
  elif command -v wget > /dev/null; then
    local err
    err=$(wget -q --server-response -O "$2" "$1" 2>&1) && return 0
    case "$err" in *" 404 "*) return 4 ;; *) return 1 ;; esac
  else
    die "neither curl nor wget is installed"
  fi
}

sha256_of() {
  if command -v sha256sum > /dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum > /dev/null; then
    shasum -a 256 "$1" | cut -d' ' -f1
  elif command -v openssl > /dev/null; then
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else
    die "no sha256sum, shasum or openssl to check the checksum with"
  fi
}

from_source() {
  case "$fallback" in
    none)
      die "release v$version has no binary for $target ($url), and the source fallback is off (PWDRIFT_FALLBACK=none)"
      ;;
  esac
  command -v cargo > /dev/null \
    || die "release v$version has no binary for $target, and cargo is not installed for the source fallback"
  say "release v$version has no binary for $target: building it from source (cargo install --locked --git https://github.com/$repo --tag v$version pwdrift)"
  cargo install --locked --git "https://github.com/$repo" --tag "v$version" --root "$dest" pwdrift >&2
  report
  exit 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "downloading $url"
status=0
fetch "$url" "$work/$archive" || status=$?
case "$status" in
  0) ;;
  4) from_source ;;
  *) die "cannot download $url" ;;
esac
fetch "$url.sha256" "$work/$archive.sha256" || die "cannot download the checksum $url.sha256"

expected=$(cut -d' ' -f1 < "$work/$archive.sha256" | tr -d '\r' | tr '[:upper:]' '[:lower:]')
case "$expected" in
  *[!0-9a-f]* | "") die "$url.sha256 holds no SHA-256" ;;
esac
[ "${#expected}" -eq 64 ] || die "$url.sha256 holds no SHA-256"
actual=$(sha256_of "$work/$archive")
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $archive: expected $expected, got $actual; nothing installed"
fi
say "checksum verified: sha256 $actual"

verify_attestation() {
  gh attestation verify "$work/$archive" --repo "$repo" >&2 \
    || die "the build-provenance attestation of $archive does not verify (gh attestation verify --repo $repo); nothing installed"
  say "attestation verified (built by a workflow of $repo)"
}
case "$attestation" in
  require)
    command -v gh > /dev/null || die "PWDRIFT_ATTESTATION=require, but gh is not installed"
    verify_attestation
    ;;
  auto)
    if command -v gh > /dev/null && [ -n "${GH_TOKEN:-${GITHUB_TOKEN:-}}" ]; then
      verify_attestation
    else
      say "attestation not checked (needs gh and GH_TOKEN)"
    fi
    ;;
  skip) say "attestation not checked (PWDRIFT_ATTESTATION=skip)" ;;
esac

mkdir "$work/unpacked"
if [ "$suffix" = .zip ]; then
  if command -v unzip > /dev/null; then
    unzip -q "$work/$archive" -d "$work/unpacked"
  elif command -v 7z > /dev/null; then
    7z x -bd -o"$work/unpacked" "$work/$archive" > /dev/null
  else
    tar -xf "$work/$archive" -C "$work/unpacked"
  fi
else
  tar -xzf "$work/$archive" -C "$work/unpacked"
fi
[ -f "$work/unpacked/$name/pwdrift$exe" ] || die "$archive holds no $name/pwdrift$exe"
mkdir -p "$bin_dir"
cp "$work/unpacked/$name/pwdrift$exe" "$bin_dir/pwdrift$exe.tmp"
chmod 755 "$bin_dir/pwdrift$exe.tmp"
mv -f "$bin_dir/pwdrift$exe.tmp" "$bin_dir/pwdrift$exe"
report

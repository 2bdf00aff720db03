#!/usr/bin/env bash
# Packs one release archive of pwdrift and its checksum, as the release workflow publishes them:
#
#   package.sh VERSION TARGET BINARY OUTDIR
#
# writes OUTDIR/pwdrift-VERSION-TARGET.tar.gz (.zip for a Windows target), holding the directory
# pwdrift-VERSION-TARGET/ with the binary (pwdrift, pwdrift.exe on Windows), README.md,
# CHANGELOG.md and LICENSE, and OUTDIR/ARCHIVE.sha256 ("HASH  ARCHIVE", as sha256sum writes it).
# These names are the ones action/install.sh downloads and the `[package.metadata.binstall]`
# pkg-url of Cargo.toml names (tests/it/release.rs checks that they agree).
set -euo pipefail

if [ "$#" -ne 4 ]; then
  echo "usage: package.sh VERSION TARGET BINARY OUTDIR" >&2
  exit 2
fi
version=$1 target=$2 binary=$3 outdir=$4
root=$(cd "$(dirname "$0")/../.." && pwd)

case "$target" in
  *-windows-*) exe=.exe suffix=.zip ;;
  *) exe="" suffix=.tar.gz ;;
esac
name="pwdrift-$version-$target"
archive="$name$suffix"

[ -f "$binary" ] || { echo "package.sh: no binary at $binary" >&2; exit 1; }
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
cp "$binary" "$stage/$name/pwdrift$exe"
chmod 755 "$stage/$name/pwdrift$exe"
for f in README.md CHANGELOG.md LICENSE; do
  cp "$root/$f" "$stage/$name/"
done

(
  cd "$stage"
  if [ "$suffix" = .zip ]; then
    if command -v 7z > /dev/null; then
      7z a -tzip -bd "$outdir/$archive" "$name" > /dev/null
    elif command -v zip > /dev/null; then
      zip -qr "$outdir/$archive" "$name"
    else
      # bsdtar (Windows' tar.exe, macOS) writes zip when the name ends in .zip
      tar -a -cf "$outdir/$archive" "$name"
    fi
  else
    tar -czf "$outdir/$archive" "$name"
  fi
)

(
  cd "$outdir"
  if command -v sha256sum > /dev/null; then
    sha256sum "$archive" > "$archive.sha256"
  else
    shasum -a 256 "$archive" > "$archive.sha256"
  fi
)
echo "$outdir/$archive"

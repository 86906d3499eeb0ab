#!/usr/bin/env bash
# An older Mender Server release, for the tests that cross versions (a backup of chart 6.9.0's
# v4.0.1 restored into 8.2.1; the upgrade guard from 7.9.4's v4.1.2): the shared recipes
# (../shared/mender-server/build.sh, ../shared/mender-on-k8s/build-images.sh) build one version,
# v4.1.3, named in build.sh. Its README says how to build another: a source tarball made the
# same way at that tag (testenv/sources/, made with `git archive` from
# github.com/mendersoftware/mender-server as the README's "Source" shows) and build.sh's
# `version` and `commit` changed. This runs a copy of both recipes with those two lines changed,
# laid out as ../shared is (build-images.sh calls ../mender-server/build.sh), so the shared
# recipes stay the single source of how Mender is built.
#
#   usage: mender-version.sh VERSION COMMIT PREFIX [IMAGES_DIR]
#     PREFIX        binaries and config, as build.sh's PREFIX (returns at once when built)
#     IMAGES_DIR    also the images, tagged VERSION, into IMAGES_DIR/mender-images.tar; NATS is
#                   named docker.io/library/nats:<the nats-server VERSION pins>-scratch
#   GO_REPLACE="module=module@version"  one dependency taken at another version, when the Go
#                   module proxy here refuses the one go.mod pins (v4.0.1's mender-artifact
#                   pseudo-version of 2025-05-15 is refused: 403). The change is a
#                   `go mod edit -replace` made before the build and named in PREFIX/VERSION;
#                   the Mender sources themselves are untouched.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shared=${MENDER_BACKUP_SHARED:-$here/../../shared}
version=${1:?usage: mender-version.sh VERSION COMMIT PREFIX [IMAGES_DIR]}
commit=${2:?commit of the tag}
prefix=$(realpath -m "${3:?prefix}")
images=${4:-}
tarball=$here/sources/mender-server-$version-backend-src.tar.gz
[[ -s $tarball ]] || { echo "no source tarball $tarball" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/mender-server" "$work/mender-on-k8s"
sed -e "s/^version=.*/version=$version/" -e "s/^commit=.*/commit=$commit/" \
  "$shared/mender-server/build.sh" > "$work/mender-server/build.sh"
grep -q "^version=$version\$" "$work/mender-server/build.sh" && grep -q "^commit=$commit\$" "$work/mender-server/build.sh" \
  || { echo "build.sh no longer names its version and commit on lines of their own" >&2; exit 1; }
if [[ -n ${GO_REPLACE:-} ]]; then
  # after build.sh enters the sources: the replacement, and go.sum completed by the build itself
  sed -i -e "/^cd \"\$src\"\$/a go mod edit -replace '$GO_REPLACE'; export GOFLAGS=\"\$GOFLAGS -mod=mod\"" \
    -e "s|^stamp=.*|stamp=\"mender-server $version ($commit) with $GO_REPLACE\"|" "$work/mender-server/build.sh"
  grep -q "go mod edit -replace" "$work/mender-server/build.sh" || { echo "build.sh no longer has cd \"\$src\"" >&2; exit 1; }
fi
chmod +x "$work/mender-server/build.sh"
ln -s "$tarball" "$work/mender-server/"
"$work/mender-server/build.sh" "$prefix"
[[ -n $images ]] || exit 0

nats=$("$prefix/bin/nats-server" --version | sed -n 's/^nats-server: v//p')
install -m 755 "$shared/mender-on-k8s/build-images.sh" "$work/mender-on-k8s/build-images.sh"
MENDER_PREFIX=$prefix TAG=$version NATS_IMAGE=docker.io/library/nats:$nats-scratch \
  "$work/mender-on-k8s/build-images.sh" "$images"

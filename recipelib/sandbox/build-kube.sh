#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v1.20.2 offline from Debian's source package and
# caches them: the only way to get a real API server from the registries we can reach (NOTES.md).
# Usage: build-kube.sh [CACHE_DIR]   (default ~/.cache/recipelib/kube-v1.20.2)
# Needs: apt-get (root) for golang-go rsync golang-github-modern-go-reflect2-dev etcd-server.
set -euo pipefail
cache=${1:-${RECIPELIB_KUBE_CACHE:-$HOME/.cache/recipelib/kube-v1.20.2}}
install() {
  echo "installing $* (Debian packages)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "installing them needs root; run this, then run again:  sudo apt-get update && sudo apt-get install -y $*" >&2; exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v etcd >/dev/null || install etcd-server   # needed at run time, cached build or not
if [ -x "$cache/kube-apiserver" ] && [ -x "$cache/kube-controller-manager" ]; then
  echo "kube binaries cached in $cache"; exit 0
fi
need=()
command -v go >/dev/null || need+=(golang-go)
command -v rsync >/dev/null || need+=(rsync)
command -v make >/dev/null || need+=(make)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
[ ${#need[@]} -eq 0 ] || install "${need[@]}"
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources" "$work/lists/partial"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/sources/src.sources"
opts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$work/sources" -o "Dir::State::Lists=$work/lists")
apt-get "${opts[@]}" update -qq
(cd "$work" && apt-get "${opts[@]}" source --download-only kubernetes >/dev/null)
tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
mkdir -p "$work/src"
tar -xzf "$tarball" -C "$work/src" --strip-components=1
rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"
echo "building kube-apiserver and kube-controller-manager (about 4 minutes on 2 cores)"
(cd "$work/src" && env GOPROXY=off CGO_ENABLED=0 KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean \
  GOLDFLAGS="-s -w" GOCACHE="$work/gocache" HOME="$work/home" \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1) || { tail -n 40 "$work/build.log"; exit 1; }
mkdir -p "$cache.tmp"
cp "$work"/src/_output/local/bin/linux/*/kube-apiserver "$work"/src/_output/local/bin/linux/*/kube-controller-manager "$cache.tmp/"
rm -rf "$cache" && mv "$cache.tmp" "$cache"
echo "kube binaries cached in $cache"

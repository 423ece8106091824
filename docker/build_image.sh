#!/usr/bin/env bash
# Build axon/triton-cpu:<axon version> with no registry and no network inside the build:
#   1. a Debian bookworm minbase rootfs (debootstrap), imported as axon/bookworm-minbase:local;
#   2. a wheelhouse of nvidia-pytriton, onnxruntime and numpy at the venv's pins (host-side
#      `pip download`: pip inside a container cannot verify the index's certificate here);
#   3. `docker build --network none` of docker/Dockerfile.cpu.
# The rootfs tarball and the wheelhouse stay in $AXON_IMAGE_CACHE (default .cache/image), so a
# rebuild takes seconds; an image that already has the tag is not rebuilt (AXON_IMAGE_REBUILD=1 forces).
# Needs root (debootstrap) only for step 1, and only the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "axon image: $PY not found: run make setup first" >&2; exit 2; }
version=$("$PY" -c 'import axon; print(axon.version())')
tag=${AXON_CPU_IMAGE:-axon/triton-cpu:$version}
cache=${AXON_IMAGE_CACHE:-.cache/image}
base=axon/bookworm-minbase:local
mirror=${AXON_DEBIAN_MIRROR:-http://deb.debian.org/debian}

command -v docker >/dev/null || { echo "axon image: the docker command is not installed (Debian: apt-get install docker.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "axon image: no Docker engine answers (start one: dockerd --bridge=none --iptables=false)" >&2; exit 2; }
if [ -z "${AXON_IMAGE_REBUILD:-}" ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "axon image: $tag exists ($(docker image inspect -f '{{.Id}}' "$tag" | cut -c1-19)); not rebuilt"
  exit 0
fi
mkdir -p "$cache"
t0=$(date +%s)

# 1. The base: debootstrap once, keep the tarball; import it when the engine lacks it.
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ ! -s "$cache/bookworm-minbase.tar" ]; then
    [ "$(id -u)" = 0 ] || { echo "axon image: debootstrap of the base needs root (or a $cache/bookworm-minbase.tar)" >&2; exit 2; }
    command -v debootstrap >/dev/null || { echo "axon image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
    rootfs="$cache/rootfs.partial"
    rm -rf "$rootfs"
    echo "axon image: debootstrap bookworm minbase from $mirror (about a minute)"
    # libpython3.11: the python-backend stub links libpython3.11.so.1.0; without it every model is UNAVAILABLE.
    debootstrap --variant=minbase --include=python3,python3-venv,libpython3.11,ca-certificates bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { echo "axon image: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$cache/bookworm-minbase.tar.partial" .
    mv "$cache/bookworm-minbase.tar.partial" "$cache/bookworm-minbase.tar"
    rm -rf "$rootfs"
  fi
  docker import "$cache/bookworm-minbase.tar" "$base" >/dev/null
  echo "axon image: imported $base"
fi

# 2. The wheelhouse, keyed by the pins; constraints pin onnxruntime's own dependencies to the venv's.
pins=$("$PY" - <<'PY'
from importlib.metadata import version
print(f"nvidia-pytriton=={version('nvidia-pytriton')} onnxruntime=={version('onnxruntime')} numpy=={version('numpy')}")
PY
)
read -r pytriton_pin ort_pin numpy_pin <<<"$pins"
wheels="$cache/wheels-$(echo "$pins" | sha256sum | cut -c1-12)"
if [ ! -f "$wheels/.complete" ]; then
  rm -rf "$wheels" && mkdir -p "$wheels"
  "$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v ' @ ' >"$wheels/constraints.txt"
  echo "axon image: pip download $pins"
  # cp311 manylinux wheels whatever the host's Python: the image's Python is bookworm's 3.11.
  common=(--disable-pip-version-check -q --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
          --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$wheels")
  # pip's output goes to a log, shown only on failure (the host's pip config may warn about local indexes).
  { "$PY" -m pip download "${common[@]}" --no-deps "$pytriton_pin" \
    && "$PY" -m pip download "${common[@]}" -c "$wheels/constraints.txt" "$ort_pin" "$numpy_pin"; } >"$cache/pip.log" 2>&1 \
    || { tail -20 "$cache/pip.log" >&2; echo "axon image: pip download failed; see $cache/pip.log" >&2; exit 1; }
  touch "$wheels/.complete"
fi

# 3. The image, built offline from a context holding only what it needs (wheels hard-linked).
context="$cache/context"
rm -rf "$context" && mkdir -p "$context"
cp docker/Dockerfile.cpu docker/entrypoint.sh "$context/"
cp -l "$wheels"/*.whl "$wheels/constraints.txt" "$context/" 2>/dev/null || cp "$wheels"/*.whl "$wheels/constraints.txt" "$context/"
mkdir "$context/wheels" && mv "$context"/*.whl "$context/constraints.txt" "$context/wheels/"
echo "axon image: docker build --network none -t $tag"
docker build -q --network none -f "$context/Dockerfile.cpu" \
  --build-arg BASE="$base" --build-arg PYTRITON_PIN="$pytriton_pin" --build-arg ONNXRUNTIME_PIN="$ort_pin" --build-arg NUMPY_PIN="$numpy_pin" \
  --label org.axon.version="$version" --label org.axon.pins="$pins" \
  -t "$tag" -t axon/triton-cpu:latest "$context" >"$cache/build.log" 2>&1 \
  || { tail -20 "$cache/build.log" >&2; echo "axon image: docker build failed; see $cache/build.log" >&2; exit 1; }
rm -rf "$context"
echo "axon image: built $tag ($(docker image inspect -f '{{.Id}}' "$tag" | cut -c1-19), $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')) in $(( $(date +%s) - t0 )) s"

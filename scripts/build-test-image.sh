#!/usr/bin/env bash
# Build the local test image `wharf-test/busybox:latest` (also tagged `:2`).
#
# A `FROM scratch` image containing a statically linked busybox (from Debian's
# busybox-static), a handful of applet symlinks, /etc/passwd (root, nobody),
# /tmp and `CMD ["sh"]`. No registry access is needed.
#
# Idempotent: does nothing if the image already exists, unless --force is given.
# Safe to run concurrently (serialised with flock when available).
set -euo pipefail

IMAGE="wharf-test/busybox"
TAGS=(latest 2)
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force | -f) FORCE=1 ;;
        -h | --help)
            echo "usage: $0 [--force]"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

if ! command -v docker >/dev/null 2>&1; then
    echo "build-test-image: docker CLI not found" >&2
    exit 1
fi

# Serialise concurrent invocations (e.g. parallel test binaries).
LOCK_FILE="${TMPDIR:-/tmp}/wharf-build-test-image.lock"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock 9
fi

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

all_tags_present() {
    local t
    for t in "${TAGS[@]}"; do
        image_exists "$IMAGE:$t" || return 1
    done
    return 0
}

if [[ "$FORCE" -eq 0 ]] && all_tags_present; then
    echo "build-test-image: $IMAGE:${TAGS[0]} already present (use --force to rebuild)"
    exit 0
fi

# Only :latest missing a sibling tag? Just retag, no rebuild needed.
if [[ "$FORCE" -eq 0 ]] && image_exists "$IMAGE:latest"; then
    for t in "${TAGS[@]}"; do
        docker tag "$IMAGE:latest" "$IMAGE:$t"
    done
    echo "build-test-image: retagged $IMAGE:latest"
    exit 0
fi

BUSYBOX=/bin/busybox
if [[ ! -x "$BUSYBOX" ]]; then
    echo "build-test-image: $BUSYBOX missing, installing busybox-static" >&2
    SUDO=""
    if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq busybox-static
fi
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
    echo "build-test-image: $BUSYBOX is not a working busybox" >&2
    exit 1
fi
# It must be static: the image has no libc.
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    echo "build-test-image: $BUSYBOX is not statically linked (install busybox-static)" >&2
    exit 1
fi

CTX="$(mktemp -d "${TMPDIR:-/tmp}/wharf-test-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT

ROOT="$CTX/rootfs"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root" "$ROOT/var/www"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"

APPLETS=(sh sleep echo cat ls httpd nc wget true false env id pwd printf kill
    date hostname mkdir touch test grep)
for a in "${APPLETS[@]}"; do
    ln -s busybox "$ROOT/bin/$a"
done

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

cat >"$CTX/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["sh"]
EOF

OLD_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)"

echo "build-test-image: building $IMAGE:latest"
# Legacy builder: works with any daemon version and needs no buildx plugin.
if ! build_log="$(DOCKER_BUILDKIT=0 docker build -t "$IMAGE:latest" "$CTX" 2>&1)"; then
    echo "$build_log" >&2
    echo "build-test-image: docker build failed" >&2
    exit 1
fi
NEW_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE:latest")"
for t in "${TAGS[@]}"; do
    [[ "$t" == latest ]] || docker tag "$IMAGE:latest" "$IMAGE:$t"
done

# Drop the previous image if --force replaced it (ignore failures: it may be in use).
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi

# Smoke test.
if ! out="$(docker run --rm --network none "$IMAGE:latest" sh -c 'echo ok' 2>&1)" || [[ "$out" != ok ]]; then
    echo "build-test-image: smoke test failed: $out" >&2
    exit 1
fi
echo "build-test-image: built $IMAGE:{$(
    IFS=,
    echo "${TAGS[*]}"
)}"

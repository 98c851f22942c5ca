#!/usr/bin/env bash
# System packages shift needs on Debian 12: PostgreSQL 15 with PL/Python,
# pgvector built from Debian's own source package (bookworm does not ship it;
# trixie's source is fetched through apt -o options, leaving the system's
# apt sources untouched), and a few free fonts for the benchmark's glyph tasks.
# Idempotent: does nothing when all is in place.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi

# the fonts are drawn by the search-quality benchmark's glyph tasks (bench/quality/datasets.py)
packages=(postgresql-$PG_MAJOR postgresql-plpython3-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
          python3-venv python3-dev build-essential dpkg-dev
          fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf fonts-urw-base35)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # the cluster that Debian's postgresql package would create is not used: shift runs its own
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/shift.conf >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

sharedir=$("$PG_CONFIG" --sharedir)
if [ ! -f "$sharedir/extension/vector.control" ]; then
    echo "setup: building pgvector from Debian's source package"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "deb-src http://deb.debian.org/debian trixie main" > "$work/trixie.list"
    mkdir -p "$work/lists/partial"
    apt_opts=(-o "Dir::Etc::SourceList=$work/trixie.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq pgvector >/dev/null \
        && dpkg-source -x pgvector_*.dsc src >/dev/null 2>&1)  # apt checked the files against the signed index
    make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" >/dev/null
    $SUDO make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
echo "setup: PostgreSQL $PG_MAJOR, plpython3u and pgvector are in place"

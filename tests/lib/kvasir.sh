# shellcheck shell=bash
# Shared by the shell tests: real data to run the pipeline on. Source it.

# Copies the first N image/mask pairs of kvasir-seg (SEG_DATASETS_DIR, default
# ../shared/datasets) into DEST/images and DEST/masks; fails loudly when fewer are there.
copy_kvasir_pairs() { # n dest
  local n="$1" dest="$2" datasets="${SEG_DATASETS_DIR:-../shared/datasets}" f stem
  mkdir -p "$dest/images" "$dest/masks"
  find "$datasets/kvasir-seg/images" -type f | sort | sed -n "1,${n}p" | while read -r f; do
    stem="$(basename "${f%.*}")"
    cp "$f" "$dest/images/"
    cp "$datasets/kvasir-seg/masks/$stem".* "$dest/masks/"
  done
  if [ "$(find "$dest/images" -type f | wc -l)" != "$n" ]; then
    echo "could not copy $n kvasir-seg pairs from $datasets" >&2
    return 1
  fi
}

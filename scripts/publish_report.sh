#!/usr/bin/env bash
# Copies a finished comparison's report into docs/: docs/<name>.md with its plots as
# docs/images/<name>_<plot>.png (the image links rewritten). How docs/example-report.md,
# docs/compare-thorough.md and docs/compare-clm.md are refreshed after a re-run:
#
#   remask compare                    --out runs/example  && scripts/publish_report.sh runs/example  example-report
#   remask compare --preset thorough  --out runs/thorough && scripts/publish_report.sh runs/thorough compare-thorough
#   remask compare --preset clm       --out runs/clm      && scripts/publish_report.sh runs/clm      compare-clm
#   remask compare --leaderboard      --out runs/lb       && scripts/publish_report.sh runs/lb       leaderboard
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RUN_DIR NAME" >&2; exit 2; }
run="$1"; name="$2"
cd "$(dirname "$0")/.."
[ -f "$run/report.md" ] || { echo "$run/report.md not found: is $run a finished comparison?" >&2; exit 1; }
mkdir -p docs/images
sed_args=()
for png in "$run"/*.png; do
    base="$(basename "$png" .png)"
    cp "$png" "docs/images/${name}_${base}.png"
    sed_args+=(-e "s|](${base}.png)|](images/${name}_${base}.png)|g")
done
sed "${sed_args[@]}" "$run/report.md" > "docs/$name.md"
echo "wrote docs/$name.md and its plots in docs/images/${name}_*.png"

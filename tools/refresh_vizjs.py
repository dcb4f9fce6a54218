"""Refresh the vendored Viz.js (Graphviz in WebAssembly) that the explorer page inlines.

    python tools/refresh_vizjs.py            # the version pinned in tinygrad_lstm/viz/vendor/VERSION
    python tools/refresh_vizjs.py 3.31.0     # another version: pins it

Runs ``npm pack @viz-js/viz@VERSION`` in a temporary directory (the npm client, no other download), checks the
package (its name, version and MIT licence field; the standalone script embeds its WebAssembly and holds no
``</script``, which would end the page's script element), then replaces ``vendor/viz-global.js`` and ``VERSION``.
The licence text in ``vendor/LICENSE`` is kept: the npm package ships none, and a change of licence field stops
the refresh so that a person reads the new terms first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@viz-js/viz"
VENDOR = Path(__file__).resolve().parent.parent / "tinygrad_lstm" / "viz" / "vendor"
SCRIPT = "package/dist/viz-global.js"


def refresh(version: str) -> Path:
    """Fetch ``PACKAGE@version`` with ``npm pack``, check it, and install its standalone script in ``VENDOR``."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("refresh_vizjs: npm is not on PATH (install Node.js / npm first)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--json", "--silent"], cwd=tmp, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"refresh_vizjs: npm pack {PACKAGE}@{version} failed: {proc.stderr.strip()}")
        tgz = Path(tmp) / json.loads(proc.stdout)[0]["filename"]
        with tarfile.open(tgz) as tar:
            meta = json.load(tar.extractfile("package/package.json"))
            member = tar.extractfile(SCRIPT)
            if member is None:
                raise SystemExit(f"refresh_vizjs: {SCRIPT} is missing from {tgz.name}")
            script = member.read().decode("utf-8")
    if meta.get("name") != PACKAGE or meta.get("version") != version:
        raise SystemExit(f"refresh_vizjs: got {meta.get('name')}@{meta.get('version')}, wanted {PACKAGE}@{version}")
    if meta.get("license") != "MIT":
        raise SystemExit(f"refresh_vizjs: licence is now {meta.get('license')!r}: read it and update vendor/LICENSE")
    if "</script" in script.lower():
        raise SystemExit("refresh_vizjs: the script contains '</script' and cannot be inlined in the page as is")
    if f"Viz.js {version}" not in script[:400]:
        raise SystemExit("refresh_vizjs: the script's header does not name the version: not the standalone build?")
    (VENDOR / "viz-global.js").write_text(script, encoding="utf-8")
    (VENDOR / "VERSION").write_text(version + "\n", encoding="utf-8")
    return VENDOR / "viz-global.js"


def main(argv: list[str] | None = None) -> int:
    """Parse the optional version and refresh."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("version", nargs="?", default=None, help="the @viz-js/viz version (default: vendor/VERSION)")
    args = p.parse_args(argv)
    version = args.version or (VENDOR / "VERSION").read_text().strip()
    path = refresh(version)
    print(f"{path} <- {PACKAGE}@{version} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

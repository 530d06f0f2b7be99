"""The npm packages the README's browser example needs (``graphql-ws`` and, for Node, ``ws``),
pinned here and installed once into a git-ignored cache of the repository. ``.ci/run`` installs
them before the tests (``python3 -m tests.support.npm_live``); standard library only."""

from __future__ import annotations

import json
import subprocess

from tests.support.readme import ROOT

NPM_DIR = ROOT / ".cache" / "npm-live"
NODE_MODULES = NPM_DIR / "node_modules"
PACKAGES = {"graphql-ws": "6.4.2", "ws": "8.23.0", "graphql": "16.15.0"}


def _version(package: str) -> str | None:
    manifest = NODE_MODULES / package / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def install() -> None:
    """``npm install`` the pinned packages into ``NPM_DIR``, unless they are there already."""
    if all(_version(name) == version for name, version in PACKAGES.items()):
        return
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    command = ["npm", "install", "--prefix", str(NPM_DIR), "--no-save", "--no-audit", "--no-fund"]
    subprocess.run([*command, *specs], check=True, timeout=300)


if __name__ == "__main__":
    install()

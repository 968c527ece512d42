"""Parse a Dockerfile's COPY instructions and a Spin manifest's component sources."""
from __future__ import annotations

import json
import pathlib
import posixpath
import shlex
import tomllib


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def copied_files(text: str, stage: int = -1) -> dict[str, str]:
    """{destination path in the image: source path in the build context} for the COPY
    lines of one stage (the last by default); COPY --from=... is not from the context."""
    files: dict[str, str] = {}
    for word, args in stages(text)[stage]:
        if word not in ("COPY", "ADD"):
            continue
        if args.startswith("["):
            parts = json.loads(args)
        else:
            parts = shlex.split(args)
        flags = [p for p in parts if p.startswith("--")]
        parts = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        *srcs, dest = parts
        for src in srcs:
            if dest.endswith("/") or len(srcs) > 1:
                target = posixpath.join(dest, posixpath.basename(src))
            else:
                target = dest
            files[posixpath.normpath(posixpath.join("/", target))] = posixpath.normpath(src)
    return files


def from_images(text: str) -> list[str]:
    return [args.split()[-1] if " AS " not in args.upper() else args.split()[-3]
            for word, args in instructions(text) if word == "FROM"]


def component_sources(manifest: pathlib.Path) -> dict[str, str]:
    """{component id: local source path relative to the manifest's directory}."""
    data = tomllib.loads(manifest.read_text())
    out = {}
    for cid, comp in (data.get("component") or {}).items():
        src = comp.get("source")
        if isinstance(src, str):
            out[cid] = posixpath.normpath(src)
        # {url, digest} sources are downloaded by Spin, not copied into the image
    return out


def layout_problems(dockerfile_text: str, manifest: pathlib.Path) -> list[str]:
    files = copied_files(dockerfile_text)
    problems = []
    if from_images(dockerfile_text)[-1] != "scratch":
        problems.append("the final stage is not FROM scratch")
    if files.get("/spin.toml") != "spin.toml":
        problems.append("spin.toml is not copied to /spin.toml")
    sources = component_sources(manifest)
    if not sources:
        problems.append("the manifest names no component source")
    for cid, src in sources.items():
        want = posixpath.normpath(posixpath.join("/", src))
        if files.get(want) != src:
            problems.append(f"component {cid}: source {src} is not copied to {want} (COPY {src} {want})")
    return problems

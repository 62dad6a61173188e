"""Files the program reads at run time that are not Python, and a new project made from them.

The templates and the sample content live at the repository root (`templates/`, `content/`). pyproject.toml
maps them into the package as `flows/templates` and `flows/sample_content`, so a wheel carries them; an
editable install or a plain checkout has no such folders inside `flows/` and reads the repository's.
Entry point of `briefing init`: `init_project`.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from flows.core.errors import ContentError

logger = logging.getLogger(__name__)

CONTENT_FOLDER = "content"  # the default BRIEFING_CONTENT_DIR, relative to the working directory
GITIGNORE = "# Everything generated (outbox, archive, the store with its send ledger) lands here.\noutputs/\n"


def shipped_folder(packaged_name: str, checkout_name: str) -> Path:
    """`flows/<packaged_name>` in an installed wheel, else `<checkout>/<checkout_name>` beside `flows/`."""
    packaged = resources.files("flows") / packaged_name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / checkout_name  # flows/core/resources.py → the checkout


def templates_dir() -> Path:
    """The jinja2 templates shipped with the package (BRIEFING_TEMPLATES_DIR overrides them)."""
    return shipped_folder("templates", "templates")


def sample_content_dir() -> Path:
    """The sample content (audiences, feeds, subscribers, a sample feed, sample briefings) `briefing init` copies."""
    return shipped_folder("sample_content", "content")


def sample_files() -> list[Path]:
    """Every file of the sample content, relative to its folder, in a stable order (no dotfiles or caches)."""
    root = sample_content_dir()
    files = [
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith((".", "__")) for part in path.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.as_posix())


@dataclass
class InitReport:
    folder: Path
    created: list[Path] = field(default_factory=list)

    @property
    def next_command(self) -> str:
        if self.folder.resolve() == Path.cwd().resolve():
            return "briefing run"
        return f"cd {shlex.quote(str(self.folder))} && briefing run"

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "content_dir": str(self.folder / CONTENT_FOLDER),
            "created": [str(path) for path in self.created],
            "next": self.next_command,
        }


def _refuse_existing(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ContentError(folder, "exists and is not a folder", hint="give `briefing init` a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        raise ContentError(
            folder,
            "is not empty; `briefing init` never overwrites or mixes in files",
            hint="give it a new (or empty) folder, or copy the files you need by hand",
        )


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("xb") as handle:  # "x": fails rather than replace a file that appeared meanwhile
            handle.write(data)
    except FileExistsError:
        raise ContentError(path, "already exists; `briefing init` never overwrites a file") from None


def init_project(folder: Path) -> InitReport:
    """Create `folder` with a working `content/` (the sample content) and a .gitignore for `outputs/`.

    Refuses a folder that exists and is not empty, so nothing is ever overwritten. Running `briefing run` in
    the new folder with default settings reads `content/` and writes `outputs/`."""
    _refuse_existing(folder)
    report = InitReport(folder)
    source = sample_content_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for relative in sample_files():
            target = folder / CONTENT_FOLDER / relative
            _write_new(target, (source / relative).read_bytes())
            report.created.append(target)
        gitignore = folder / ".gitignore"
        _write_new(gitignore, GITIGNORE.encode())
        report.created.append(gitignore)
    except OSError as exc:
        raise ContentError(
            exc.filename or folder, f"cannot write: {exc.strerror}", hint="choose a folder you can write to"
        ) from None
    logger.info("created %d files under %s", len(report.created), folder)
    return report

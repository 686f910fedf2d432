"""The one way a service reads a YAML file of entries it is configured with (the safety desk's
users, ingest's sending systems): named by an environment variable, one top-level key holding a
non-empty list. Every problem is raised as the caller's error type, naming the file and why, so
a bad file stops the service with a message an operator can act on."""

import os
from collections.abc import Mapping
from pathlib import Path

import yaml


def path_from_env(
    environ: Mapping[str, str] | None, variable: str, what: str, error: type[ValueError]
) -> Path:
    """The file `variable` names (`what`: the file's name in the message when it is unset)."""
    environ = os.environ if environ is None else environ
    path = environ.get(variable)
    if not path:
        raise error(f"{variable} is not set: name {what}")
    return Path(path)


def read_text(path: str | Path, error: type[ValueError]) -> tuple[str, str]:
    """The file's text and its name, for messages."""
    path = Path(path)
    try:
        return path.read_text(), str(path)
    except OSError as problem:
        raise error(f"{path}: {problem.strerror}") from None


def entries(text: str, origin: str, key: str, what: str, error: type[ValueError]) -> list[object]:
    """The list under the single top-level `key` (`what`: what the list holds, for messages)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"{origin}: not valid YAML: {problem}") from None
    if not isinstance(data, dict) or set(data) != {key}:
        raise error(f"{origin}: expected one top-level key '{key}' ({what})")
    listed = data[key]
    if not isinstance(listed, list) or not listed:
        raise error(f"{origin}: '{key}' must be a non-empty list")
    return listed

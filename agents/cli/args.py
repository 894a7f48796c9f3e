"""Command-line flags generated from config dataclasses, plus ``--config FILE`` (YAML or TOML).

A dataclass field becomes ``--name`` (and ``--name-with-dashes``) through
:class:`transformers.HfArgumentParser`, which reads the field's type, default and
``metadata["help"]``: the dataclass is the one source of names, defaults and help text.

Precedence when :func:`parse_dataclasses` builds the instances, lowest first: the dataclass
default, the ``defaults`` a caller passes (e.g. tuned hyperparameters), the ``--config`` file, the
flags given on the command line. To tell a flag the user typed from a default, every generated flag
defaults to an :class:`Unset` marker (shown in ``--help`` as the dataclass default). Path settings
(a dataclass's ``PATHS``) read from a config file are relative to that file's folder and checked
there (:mod:`agents.cli.paths`).

Example::

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, SFTConfig)
    (config,) = parse_dataclasses(parser.parse_args(), SFTConfig)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.cli.config_types import check_config_value, field_types
from agents.cli.paths import path_kinds, resolve_config_paths, resolve_path

# The namespace attributes that list the dests generated from dataclass fields, and their path kinds.
_FIELDS_ATTR = "_dataclass_fields"
_PATHS_ATTR = "_dataclass_paths"
_HINTS_ATTR = "_dataclass_hints"
CONFIG_SUFFIXES = (".yaml", ".yml", ".toml")


class Unset:
    """The default of a generated flag: the user did not type it. Prints as the dataclass default."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __str__(self) -> str:
        return str(self.value)


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_dataclass_arguments(parser: argparse.ArgumentParser, *dataclass_types: type) -> None:
    """Add a flag per field of each dataclass (and ``--config FILE`` once) to ``parser``.

    A field whose name already has a flag (another dataclass, or an argument the caller added, such
    as a positional) is skipped, so several configs sharing a field (``learning_rate``) share one flag.

    Args:
        parser: the (sub)command's parser.
        *dataclass_types: config dataclasses whose fields carry ``metadata={"help": ...}``.

    Raises:
        TypeError: a type that is not a dataclass.
    """
    from transformers import HfArgumentParser

    known = {action.dest for action in parser._actions}
    if "config" not in known:
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=None,
            help="YAML (.yaml/.yml) or TOML (.toml) file of settings, keyed by the flag names without "
            "dashes (underscores); flags on the command line override it. Relative paths in it are relative "
            "to the file's folder, and input paths are checked to exist before anything runs",
        )
        known.add("config")
    fields: dict[str, Any] = dict(parser.get_default(_FIELDS_ATTR) or {})  # dest -> its argparse type
    paths: dict[str, str] = dict(parser.get_default(_PATHS_ATTR) or {})  # dest -> its path kind
    hints: dict[str, Any] = dict(parser.get_default(_HINTS_ATTR) or {})  # dest -> its field's annotation
    for dtype in dataclass_types:
        if not (isinstance(dtype, type) and dataclasses.is_dataclass(dtype)):
            raise TypeError(f"add_dataclass_arguments() takes dataclass types, got {dtype!r}")
        group = parser.add_argument_group(f"{dtype.__name__} settings")
        scratch = HfArgumentParser(dtype, add_help=False)  # type: ignore[arg-type]  # resolves the type hints, builds the actions
        defaults = {f.name: _field_default(f) for f in dataclasses.fields(dtype) if f.init}
        for action in scratch._actions:
            if action.dest not in defaults or (action.dest in known and action.dest not in fields):
                continue
            if any(option in parser._option_string_actions for option in action.option_strings):
                continue  # the flag exists already (a field shared with an earlier dataclass)
            action = copy.copy(action)
            action.default = Unset(defaults[action.dest])
            action.help = (action.help or "").replace("%", "%%")  # argparse formats help with %
            action.container = group  # type: ignore[attr-defined]
            group._add_action(action)  # the public add_argument would rebuild it from kwargs
            fields.setdefault(action.dest, action.type)
        for name, kind in path_kinds([dtype]).items():
            paths.setdefault(name, kind)
        for name, hint in field_types([dtype]).items():
            hints.setdefault(name, hint)
        known |= set(fields)
    parser.set_defaults(**{_FIELDS_ATTR: fields, _PATHS_ATTR: paths, _HINTS_ATTR: hints})


def add_positional(
    parser: argparse.ArgumentParser, dtype: type, name: str, metavar: str | None = None
) -> None:
    """Add dataclass field ``name`` as an optional positional argument (before :func:`add_dataclass_arguments`).

    Its help text is the field's ``metadata["help"]``; a config file may set it instead, and
    :func:`parse_dataclasses` treats it like the generated flags.
    """
    field = {f.name: f for f in dataclasses.fields(dtype)}[name]
    parser.add_argument(
        name,
        nargs="?",
        metavar=metavar or name.upper(),
        default=Unset(_field_default(field)),
        help=str(field.metadata.get("help", "")).replace("%", "%%"),
    )
    fields = dict(parser.get_default(_FIELDS_ATTR) or {})
    fields[name] = None
    paths = dict(parser.get_default(_PATHS_ATTR) or {})
    if name in (kinds := path_kinds([dtype])):
        paths[name] = kinds[name]
    hints = dict(parser.get_default(_HINTS_ATTR) or {})
    hints[name] = field_types([dtype])[name]
    parser.set_defaults(**{_FIELDS_ATTR: fields, _PATHS_ATTR: paths, _HINTS_ATTR: hints})


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a YAML or TOML file, as a flat mapping of field name to value.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, a parse error, or a file that is not a mapping.
    """
    file = Path(path)
    if file.suffix.lower() not in CONFIG_SUFFIXES:
        raise ValueError(
            f"--config {os.fspath(path)}: unknown file type {file.suffix!r}; use a YAML (.yaml, .yml) or TOML "
            "(.toml) file"
        )
    if not file.is_file():
        raise FileNotFoundError(f"--config {os.fspath(path)}: no such file; check the path")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".toml":
            data: Any = _toml().loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # each parser has its own error class; all mean "not valid"
        raise ValueError(f"--config {os.fspath(path)} is not valid {file.suffix[1:].upper()}: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"--config {os.fspath(path)} holds a {type(data).__name__}; expected a mapping of setting names "
            "to values (e.g. `learning_rate: 0.001`)"
        )
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ImportError as err:  # pragma: no cover - Python 3.10 without tomli
        raise ValueError(
            "reading TOML on Python 3.10 needs tomli: pip install tomli (or use a YAML file)"
        ) from err
    return tomli


def existing_file(path: str | os.PathLike[str], what: str) -> str:
    """``path`` if it is a file; a FileNotFoundError naming it, what it should hold, and the fix otherwise."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{what} {os.fspath(path)} not found; check the path (it should be a file holding {what})"
        )
    return os.fspath(path)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags the user typed on the command line, with their values."""
    names = getattr(args, _FIELDS_ATTR, {})
    return {name: value for name in names if not isinstance(value := getattr(args, name), Unset)}


def peek_setting(args: argparse.Namespace, name: str, default: Any) -> Any:
    """One setting before the dataclasses are built: the flag if typed, else ``--config``'s, else ``default``.

    Lets a command pick which dataclass to build from a setting (``textrl train --agent ppo``).
    """
    value = getattr(args, name, None)
    if value is not None and not isinstance(value, Unset):
        return value
    config = getattr(args, "config", None)
    if config is not None:
        from_file = load_config_file(config)
        if name in from_file:
            where = f"--config {config}"
            value = _coerce(name, from_file[name], getattr(args, _FIELDS_ATTR, {}), where)
            hint = getattr(args, _HINTS_ATTR, {}).get(name)
            kind = getattr(args, _PATHS_ATTR, {}).get(name)
            # The checks parse_dataclasses makes later, before the value is used (a path's own check
            # says more about a value that is not one).
            if hint is not None and (kind is None or value is None):
                value = check_config_value(name, value, hint, where)
            return value if kind is None else resolve_path(name, value, kind, config)
    return default


def _coerce(name: str, value: Any, types: Mapping[str, Any], where: str) -> Any:
    """A config-file string converted as its flag would be (YAML reads ``1e-3`` as a string)."""
    convert = types.get(name)
    if not isinstance(value, str) or convert in (None, str):
        return value
    try:
        return convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
        expected = {int: "an integer", float: "a number"}.get(convert)
        why = f"expected {expected}" if expected else f"({err})"  # int()'s own words name no setting
        raise ValueError(f"{where}: {name}={value!r} is not a valid value; {why}") from err


def _unknown(name: str, valid: set[str], where: str, owners: str) -> ValueError:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else f" Valid settings: {', '.join(sorted(valid))}."
    return ValueError(f"{where} {name!r} is not a setting of {owners}.{hint}")


def parse_dataclasses(
    args: argparse.Namespace, *dataclass_types: type, defaults: Mapping[str, Any] | None = None
) -> tuple[Any, ...]:
    """One instance per dataclass type, from defaults, ``--config``, then the command line.

    Args:
        args: the parsed namespace of a parser set up by :func:`add_dataclass_arguments`.
        *dataclass_types: the dataclasses to build (a subset of those that made the flags is fine).
        defaults: values that replace the dataclass defaults (lowest precedence after them); keys
            that no dataclass has are ignored, so one table can serve several configs.

    Returns:
        The instances, in the order of ``dataclass_types``.

    Raises:
        ValueError: a key of the config file, or a flag given, that none of the dataclasses has
            (naming the closest field), or a value the dataclass itself refuses.
        FileNotFoundError: an input path of the config file that does not exist (resolved against
            the file's folder).
        TypeError: a config value that is not a path where a path is expected.
    """
    valid = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}
    owners = " / ".join(dtype.__name__ for dtype in dataclass_types)
    merged: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if k in valid}
    config = getattr(args, "config", None)
    if config is not None:
        types = getattr(args, _FIELDS_ATTR, {})
        hints = field_types(dataclass_types)
        from_file = load_config_file(config)
        kinds = path_kinds(dataclass_types)
        for name, value in from_file.items():
            if name not in valid:
                raise _unknown(name, valid, f"--config {config}: key", owners)
            value = _coerce(name, value, types, f"--config {config}")
            if name not in kinds or value is None:  # a path's own check says more (resolve_config_paths)
                value = check_config_value(name, value, hints[name], f"--config {config}")
            from_file[name] = value
        # A flag typed on the command line wins, so a config path it replaces is not checked.
        typed = given_settings(args)
        kept = {name: value for name, value in from_file.items() if name not in typed}
        merged.update(resolve_config_paths(kept, kinds, config))
    for name, value in given_settings(args).items():
        if name not in valid:
            raise _unknown(name, valid, "flag", owners)
        merged[name] = value
    instances = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        instances.append(dtype(**{k: v for k, v in merged.items() if k in names}))
    return tuple(instances)


__all__ = [
    "Unset",
    "add_dataclass_arguments",
    "add_positional",
    "existing_file",
    "given_settings",
    "peek_setting",
    "load_config_file",
    "parse_dataclasses",
]

"""The project's netdoctor config: defaults for `check` and a baseline of accepted findings.

Found from the working directory upwards: the first directory holding `.netdoctor.yml` (or `.yaml`), or a
`pyproject.toml` with a `[tool.netdoctor]` table, wins; `--config PATH` names one instead.

    checks: [mtu, ip_forward]        # defaults; a flag given on the command line replaces its default
    fail-on: fail
    timeout: 3
    accept:
      - check: mtu
        target: "container:web-*"    # fnmatch on the target label; without a colon, on the name alone
        reason: uplink MTU raised in INFRA-123
        expires: 2027-01-31          # inclusive; after it the finding trips the gate again
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netdoctor.errors import FAIL_ON, BadInput
from netdoctor.model import Acceptance, Finding, Status

CONFIG_NAMES = (".netdoctor.yml", ".netdoctor.yaml")
LIST_KEYS = ("checks", "skip", "probes", "resolve", "peers")
DEFAULT_KEYS = LIST_KEYS + ("fail-on", "timeout")
ACCEPT_KEYS = {"check", "target", "reason", "expires"}
# only findings that could trip the gate can be accepted: an `error` means the check could not judge,
# which a baseline must not hide
ACCEPTABLE = (Status.WARN, Status.FAIL)


class ConfigError(BadInput):
    """The config file is unreadable or malformed (exit 2)."""


@dataclass(frozen=True)
class Accept:
    check: str
    target: str
    reason: str
    expires: dt.date

    def matches(self, finding: Finding) -> bool:
        if finding.check != self.check or finding.status not in ACCEPTABLE:
            return False
        if fnmatch.fnmatchcase(finding.target, self.target):
            return True
        # "web-*" means the container's name: match the part after "container:"
        return ":" not in self.target and fnmatch.fnmatchcase(finding.target.partition(":")[2], self.target)


@dataclass(frozen=True)
class Config:
    path: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    accept: tuple[Accept, ...] = ()

    def apply(self, finding: Finding, today: dt.date | None = None) -> Finding:
        """The finding marked accepted by the first matching live acceptance, or as expired when only expired
        ones match (a renewed entry further down wins over the stale one)."""
        today = today or dt.date.today()
        matching = [a for a in self.accept if a.matches(finding)]
        if not matching:
            return finding
        live = [a for a in matching if a.expires >= today]
        chosen = (live or matching)[0]
        return replace(finding, accepted=Acceptance(chosen.reason, chosen.expires.isoformat(), expired=not live))


def discover(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        for name in CONFIG_NAMES:
            if (directory / name).is_file():
                return directory / name
        pyproject = directory / "pyproject.toml"
        # parse only a pyproject that mentions us: someone else's broken one must not stop the run
        if pyproject.is_file() and "tool.netdoctor" in pyproject.read_text(errors="replace") \
                and "netdoctor" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def load(path: Path | None) -> Config:
    """Parse and validate a config file; no path means no config (built-in defaults, no baseline)."""
    if path is None:
        return Config()
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory: name a file")
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.name == "pyproject.toml":
        data = _read_toml(path).get("tool", {}).get("netdoctor")
        if data is None:
            raise ConfigError(f"{path} has no [tool.netdoctor] table")
    else:
        data = _read_yaml(path)
    return _parse(data, str(path))


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: it is not UTF-8 text") from None
    except ValueError as exc:  # TOMLDecodeError, or a date that does not exist (2099-02-30)
        raise ConfigError(f"cannot read {path}: not valid TOML: {exc}") from None


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: it is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # a value YAML recognises but cannot build, e.g. the date 2099-02-30
        raise ConfigError(f"cannot read {path}: {exc} (a date that does not exist? dates are YYYY-MM-DD)") from None


def _parse(data: Any, where: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    data = {str(k).replace("_", "-"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(DEFAULT_KEYS) - {"accept"})
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} "
                          f"(known: {', '.join(DEFAULT_KEYS)}, accept)")
    defaults: dict[str, Any] = {}
    for key in LIST_KEYS:
        if key in data:
            defaults[key] = _string_list(data[key], f"{where}: {key}")
    if "fail-on" in data:
        if data["fail-on"] not in FAIL_ON:
            raise ConfigError(f"{where}: fail-on must be one of {', '.join(FAIL_ON)}, not {data['fail-on']!r}")
        defaults["fail-on"] = data["fail-on"]
    if "timeout" in data:
        timeout = data["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 120:
            raise ConfigError(f"{where}: timeout must be a number of seconds between 0.1 and 120, not {timeout!r}")
        defaults["timeout"] = float(timeout)
    entries = data.get("accept") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: accept must be a list of {{check, target, reason, expires}}")
    accept = tuple(_acceptance(entry, f"{where}: accept[{i}]") for i, entry in enumerate(entries))
    return Config(where, defaults, accept)


def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return [str(v).strip() for v in value if str(v).strip()]


def _acceptance(entry: Any, where: str) -> Accept:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with check, target, reason, expires")
    unknown = sorted(set(entry) - ACCEPT_KEYS)
    missing = sorted({"check", "reason", "expires"} - set(entry))
    if unknown or missing:
        problems = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + \
                   ([f"missing {', '.join(missing)}"] if missing else [])
        raise ConfigError(f"{where}: {'; '.join(problems)} (an acceptance needs check, reason and expires; "
                          "target defaults to every target)")
    reason = str(entry["reason"]).strip() if isinstance(entry["reason"], (str, int, float)) else ""
    if not reason:
        raise ConfigError(f"{where}: reason must say why the finding is accepted")
    return Accept(check=str(entry["check"]), target=str(entry.get("target") or "*"), reason=reason,
                  expires=_date(entry["expires"], where))


def _date(value: Any, where: str) -> dt.date:
    # YAML and TOML both turn an unquoted 2027-01-31 into a date already
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: expires must be a date YYYY-MM-DD, not {value!r}") from None

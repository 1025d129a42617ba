"""Prints the `--set key=value` overrides that turn one preset into another, one argument per
line (what `make demo` passes to give its schedule hicl-plus's keys beyond the paper's)."""
from __future__ import annotations

import json
import sys

from trainer.config import ConfigError, load_config


def preset_overrides(preset: str, base: str) -> list[str]:
    """`key=value` for every key except `name` where `preset` differs from `base`."""
    chosen, reference = load_config(preset).to_dict(), load_config(base).to_dict()
    return [f"{key}={json.dumps(value)}" for key, value in chosen.items()
            if key != "name" and reference[key] != value]


def main(argv: list[str]) -> None:
    """python -m trainer.presets_diff PRESET BASE; one line on stderr and exit 1 when a preset
    does not load or the two do not differ."""
    if len(argv) != 2:
        sys.exit("usage: python -m trainer.presets_diff PRESET BASE")
    try:
        overrides = preset_overrides(argv[0], argv[1])
    except ConfigError as exc:
        sys.exit(f"presets_diff: {exc}")
    if not overrides:
        sys.exit(f"presets_diff: {argv[0]} sets nothing beyond {argv[1]}")
    for override in overrides:
        print("--set")
        print(override)


if __name__ == "__main__":
    main(sys.argv[1:])

"""One vocabulary across the commands (edgecnn/cli_vocab.py, docs/cli.md): walks every subcommand's parser."""

from __future__ import annotations

import argparse

import pytest

from edgecnn.cli import build_parser
from edgecnn.cli_vocab import EXCEPTIONS, VOCABULARY


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _visible(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def test_no_two_commands_name_one_concept_differently():
    commands = _commands()
    assert len(commands) >= 15
    clashes = []
    for concept, (canonical, rivals) in VOCABULARY.items():
        for name, p in commands.items():
            for flag in _visible(p):
                if flag in rivals and (name, flag) not in EXCEPTIONS:
                    clashes.append(f"edgecnn {name} {flag}: {concept} is {canonical}")
    assert not clashes, "\n".join(clashes)


def test_each_concept_has_its_one_name_where_it_appears():
    commands = _commands()
    has = {name: _visible(p) for name, p in commands.items()}
    for name in ("eval", "export", "verify", "benchmark", "prune", "qat", "compress"):
        assert "--eval-limit" in has[name], name  # the evaluation/verification subset, everywhere
    for name in ("train", "eval"):
        assert "--torch-device" in has[name] and "--device" not in has[name], name
    for name, flags in has.items():
        if "--device" in flags:  # --device is always a device profile
            assert flags["--device"].metavar == "PROFILE", name
        if "--out" in flags:  # --out always has a default (said in --help)
            assert not flags["--out"].required, name
    assert commands["qat"].get_default("epochs") == commands["compress"].get_default("qat_epochs") == 3
    assert "--qat-epochs" in has["train"] and "--qat-epochs" in has["qat"]
    for p in commands.values():
        p.format_help()  # every --help renders


@pytest.mark.parametrize("argv, dest, value", [
    (["eval", "x.pt", "--limit", "7"], "limit", 7),
    (["export", "x.pt", "--verify-samples", "9"], "verify_samples", 9),
    (["verify", "b", "--samples", "11"], "samples", 11),
    (["benchmark", "x.pt", "--data", "digits", "--test-limit", "13"], "test_limit", 13),
    (["train", "lenet5", "--device", "cpu"], "device", "cpu"),
    (["train", "lenet5", "--qat"], "qat", 3),
    (["train", "lenet5", "--qat", "1"], "qat", 1),
    (["qat", "x.pt", "--epochs", "2"], "epochs", 2),
])
def test_old_spellings_still_parse_as_hidden_aliases(argv, dest, value, capsys):
    parser = build_parser()
    new = parser.parse_args(argv)
    assert getattr(new, dest) == value
    assert "is now --" in capsys.readouterr().err  # one note naming the new flag
    sub = _commands()[argv[0]]
    assert argv[2 if argv[0] != "benchmark" else 4] not in _visible(sub)  # not shown in --help


def test_canonical_spellings_parse_and_defaults_hold():
    parser = build_parser()
    assert parser.parse_args(["eval", "x.pt", "--eval-limit", "5"]).limit == 5
    assert parser.parse_args(["eval", "x.pt"]).limit is None
    assert parser.parse_args(["train", "lenet5"]).device == "auto"
    assert parser.parse_args(["train", "lenet5", "--torch-device", "cpu"]).device == "cpu"
    assert parser.parse_args(["train", "lenet5"]).qat == 0
    assert parser.parse_args(["benchmark", "x.pt", "--data", "digits", "--eval-limit", "3"]).test_limit == 3
    assert parser.parse_args(["prune", "x.pt", "--ratio", "0.5"]).out is None  # default folder chosen later

from medvlm.cli import VERBS, main


def test_top_level_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert f"  {verb}" in out


def test_unknown_verb_is_an_error(capsys):
    assert main(["no-such-verb"]) == 2
    assert "unknown verb" in capsys.readouterr().err

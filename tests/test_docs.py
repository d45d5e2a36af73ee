"""The README stays true: every setting has its flag documented, and the quick start exists."""

import dataclasses
import re

from conftest import REPO
from plexicorn.cli import build_parser, flag_name
from plexicorn.config import Config

README = (REPO / "README.md").read_text()


def test_every_config_field_is_a_documented_cli_flag():
    parser_flags = {option for action in build_parser()._actions for option in action.option_strings}
    for config_field in dataclasses.fields(Config):
        flag = flag_name(config_field)
        assert flag in parser_flags, f"{flag} is not a CLI flag"
        assert re.search(rf"^\| `(-\w, )?{re.escape(flag)}[ `]", README, re.M), f"{flag} is missing from README.md's flag table"


def test_readme_quick_start_has_the_run_and_test_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick_start and "make test" in quick_start
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_config_cipher_default_is_the_tls_packages():
    # Written twice so that Config does not load the TLS package (cryptography) for cleartext servers.
    from plexicorn.tls import DEFAULT_TLS12_CIPHERS
    assert Config().tls_ciphers == DEFAULT_TLS12_CIPHERS

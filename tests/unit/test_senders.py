"""Ingest's senders file: tokens kept as sha256 hashes, each sender scoped to sites; a bad file
is refused naming the file, the sender and why; ingest does not start without one."""

import hashlib
import textwrap
from pathlib import Path

import pytest

from services.cli import main as safetymon
from services.ingest.app import create_app, load_senders
from services.ingest.interop.common import study_directory
from services.ingest.senders import EVERY_SITE, Sender, SenderDirectory, SenderFileError
from shared.settings import Settings
from tests.support import INGEST_TOKEN, SENDERS_FILE

LIS_GZ01_TOKEN = "local-only-token-sender-lis-gz01-not-for-production"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def senders_yaml(*entries: str) -> str:
    return "senders:\n" + "".join(textwrap.indent(textwrap.dedent(e), "  ") for e in entries)


def entry(system: str, sites: str, token: str) -> str:
    return f"""\
    - system: {system}
      sites: {sites}
      token_sha256: {sha256(token)}
    """


# -- the example file ----------------------------------------------------------------------------


def test_the_example_file_has_the_tokens_its_header_and_the_tests_use() -> None:
    directory = SenderDirectory.load(SENDERS_FILE)
    assert directory.authenticate(INGEST_TOKEN) == Sender("edc", frozenset({EVERY_SITE}))
    assert directory.authenticate(LIS_GZ01_TOKEN) == Sender("lis-gz01", frozenset({"GZ01"}))
    sh02 = directory.authenticate("local-only-token-sender-lis-sh02-not-for-production")
    assert sh02 == Sender("lis-sh02", frozenset({"SH02"}))
    header = Path(SENDERS_FILE).read_text().split("senders:")[0]
    for sender in directory.senders():
        assert f"local-only-token-sender-{sender.system}-not-for-production" in header


def test_the_file_holds_hashes_never_tokens() -> None:
    text = Path(SENDERS_FILE).read_text()
    body = text.split("\nsenders:", 1)[1]
    assert "local-only-token" not in body
    assert sha256(INGEST_TOKEN) in body


# -- authentication and scope ------------------------------------------------------------------


def test_a_token_is_matched_by_its_hash_and_nothing_else() -> None:
    directory = SenderDirectory.parse(senders_yaml(entry("lis-gz01", "[GZ01]", "t-gz01")))
    assert directory.authenticate("t-gz01") == Sender("lis-gz01", frozenset({"GZ01"}))
    for wrong in ("", "t-gz0", "t-gz01 ", "T-GZ01", sha256("t-gz01")):
        assert directory.authenticate(wrong) is None, wrong


def test_a_sender_submits_for_its_sites_only_and_star_is_every_site() -> None:
    gz01 = Sender("lis-gz01", frozenset({"GZ01"}))
    assert gz01.may_submit_for("GZ01")
    assert not gz01.may_submit_for("SH02")
    assert not gz01.may_submit_for("gz01")
    assert "sender 'lis-gz01' may not submit for site SH02 (its sites: GZ01)" == gz01.refusal(
        "SH02"
    )
    edc = Sender("edc", frozenset({EVERY_SITE}))
    assert all(edc.may_submit_for(site) for site in ("GZ01", "SH02", "BJ03", "XX99"))


def test_two_sites_and_a_token_being_replaced() -> None:
    text = f"""\
senders:
  - system: lis-south
    sites: [GZ01, SH02]
    token_sha256: [{sha256("old")}, {sha256("new")}]
"""
    directory = SenderDirectory.parse(text)
    assert directory.authenticate("old") == directory.authenticate("new")
    sender = directory.authenticate("new")
    assert sender is not None and sender.sites == {"GZ01", "SH02"}


# -- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("senders: [", "not valid YAML"),
        ("users: []", "expected one top-level key 'senders'"),
        ("senders: []", "'senders' must be a non-empty list"),
        (
            senders_yaml("- system: edc\n  sites: ['*']\n  token_sha256: local-only-token\n"),
            "sender #1 (edc): token_sha256: must be the sha256 hex",
        ),
        (
            senders_yaml("- system: edc\n  sites: []\n  token_sha256: " + sha256("x") + "\n"),
            "sender #1 (edc): sites: List should have at least 1 item",
        ),
        (
            senders_yaml("- system: edc\n  sites: ['*', GZ01]\n  token_sha256: " + sha256("x")),
            "sender #1 (edc): sites: '*' (every site) stands alone",
        ),
        (
            senders_yaml("- system: edc\n  token_sha256: " + sha256("x") + "\n"),
            "sender #1 (edc): sites: Field required",
        ),
        (
            senders_yaml(
                "- system: edc\n  sites: ['*']\n  token_sha256: " + sha256("x") + "\n  role: x\n"
            ),
            "sender #1 (edc): role: Extra inputs are not permitted",
        ),
        (
            senders_yaml("- system: 'has space'\n  sites: [GZ01]\n  token_sha256: " + sha256("x")),
            "sender #1 (has space): system: String should match pattern",
        ),
        (
            senders_yaml(entry("edc", "['*']", "a"), entry("edc", "[GZ01]", "b")),
            "sender #2 (edc): system 'edc' is listed twice",
        ),
        (
            senders_yaml(entry("lis-gz01", "[GZ01]", "same"), entry("lis-sh02", "[SH02]", "same")),
            "sender #2 (lis-sh02): token hash",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_sender_and_why(text: str, message: str) -> None:
    with pytest.raises(SenderFileError, match=r"^senders\.yaml: ") as refused:
        SenderDirectory.parse(text, "senders.yaml")
    assert message in str(refused.value)


def test_a_missing_file_or_variable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SenderFileError, match="No such file"):
        SenderDirectory.load(tmp_path / "absent.yaml")
    with pytest.raises(SenderFileError, match="INGEST_SENDERS_FILE is not set"):
        SenderDirectory.from_env({})
    assert len(SenderDirectory.from_env({"INGEST_SENDERS_FILE": SENDERS_FILE}).senders()) == 4


# -- the service -----------------------------------------------------------------------------


def test_ingest_does_not_start_without_its_senders_file() -> None:
    with pytest.raises(RuntimeError, match="INGEST_SENDERS_FILE is not set"):
        create_app(Settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"))


def test_ingest_does_not_start_with_a_site_the_study_does_not_have(tmp_path: Path) -> None:
    path = tmp_path / "senders.yaml"
    path.write_text(senders_yaml(entry("lis-xx", "[GZ01, XX99]", "t")))
    settings = Settings(INGEST_SENDERS_FILE=str(path))
    with pytest.raises(RuntimeError, match=r"site\(s\) XX99 are not sites of NCT05173246"):
        load_senders(settings, study_directory(settings.study_id))


def test_safetymon_import_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("SAFETYMON_TOKEN", raising=False)
    assert safetymon(["import", str(tmp_path / "lb.csv")]) == 2
    assert "set SAFETYMON_TOKEN (or pass --token)" in capsys.readouterr().err

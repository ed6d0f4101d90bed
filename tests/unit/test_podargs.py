"""rkt's per-image command line: app flags apply to the image before them."""

from __future__ import annotations

import pytest

from rktcfg.cli.main import main
from rktcfg.cli.podargs import parse_images
from rktcfg.errors import UsageError


def test_cpu_and_memory_apply_to_the_image_before_them() -> None:
    images = parse_images(
        ["img1", "--memory=128M", "--cpu=500m", "---", "img2", "--cpu", "250m", "--", "-x"]
    )
    assert [i.ref for i in images] == ["img1", "img2"]
    first = {i["name"]: i["value"] for i in images[0].cli_isolators}
    second = {i["name"]: i["value"] for i in images[1].cli_isolators}
    assert first["resource/memory"]["limit"] == "128M"
    assert first["resource/cpu"]["limit"] == "500m"
    assert "resource/memory" not in second and second["resource/cpu"]["limit"] == "250m"
    assert images[1].args == ("-x",)


def test_caps_and_read_only_rootfs() -> None:
    (image,) = parse_images(
        ["img", "--caps-retain", "CAP_NET_ADMIN,CAP_KILL", "--read-only-rootfs"]
    )
    names = {i["name"]: i["value"] for i in image.cli_isolators}
    assert set(names["os/linux/capabilities-retain-set"]["set"]) == {"CAP_NET_ADMIN", "CAP_KILL"}
    assert image.read_only_rootfs
    assert not parse_images(["img"])[0].read_only_rootfs


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["img", "--cpu", "1", "--cpu", "2"], "--cpu specified multiple times"),
        (["img", "--memory"], "--memory needs a value"),
        (["img", "--memory", "16m"], "at least 4096 bytes"),
        (["img", "--caps-retain", "CAP_KILL", "--caps-remove", "CAP_CHOWN"], "caps"),
        (["img", "--caps-retain", "CAP_NOPE"], "CAP_NOPE"),
        (["img", "--bogus"], "only app flags"),
        (["--cpu", "1", "img"], "--cpu must follow an image"),
    ],
)
def test_bad_app_flags_are_usage_errors(words: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_images(words)
    assert message in str(caught.value)


def test_cpu_before_the_first_image_is_refused_by_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--memory", "64Mi", "example.com/x"]) == 2
    assert "--memory must follow an image" in capsys.readouterr().err


def test_rkt_syntax_a_plain_word_starts_the_next_image() -> None:
    images = parse_images(["img1", "--memory=128M", "--cpu=500m", "img2", "--cpu=250m"])
    assert [i.ref for i in images] == ["img1", "img2"]
    cpu = [{i["name"]: i["value"] for i in image.cli_isolators} for image in images]
    assert cpu[0]["resource/cpu"]["limit"] == "500m" and cpu[1]["resource/cpu"]["limit"] == "250m"
    images = parse_images(["img1", "--", "a", "img2", "---", "img3", "--exec", "/bin/x"])
    assert [(i.ref, i.args, i.exec) for i in images] == [
        ("img1", ("a", "img2"), None),
        ("img3", (), "/bin/x"),
    ]
    with pytest.raises(UsageError, match="an image is missing"):
        parse_images(["img1", "---"])

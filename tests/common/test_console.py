import io

from common.console import echo


def test_echo_replaces_what_an_ascii_console_cannot_show():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    echo("53.4 → 77.4 ml, 23.7 ± 26.3 %", file=stream)
    stream.flush()
    assert raw.getvalue() == b"53.4 ? 77.4 ml, 23.7 ? 26.3 %\n"


def test_echo_keeps_unicode_on_a_utf8_console():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    echo("2024-01-10 → 2025-02-01", file=stream)
    stream.flush()
    assert raw.getvalue().decode("utf-8") == "2024-01-10 → 2025-02-01\n"

"""The fault tests' summary lines, repeated at the end of the session whatever the verbosity."""

from tests.faults.harness import SUMMARY_LINES


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY_LINES:
        terminalreporter.section("fault injection summary")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)

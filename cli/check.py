"""`storesafe check`: the fleet as one monitoring-plugin result (Nagios exit codes).

0 OK: every site ok. 1 WARNING: some site warning. 2 CRITICAL: some site
stale, failing, never backed up or offline. 3 UNKNOWN: the server could not
be asked (unreachable, token refused, ...), or there is no site to judge (none
enrolled, or none in the group asked for: a filter that matches nothing is
never "all ok").
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from cli import output, values
from cli.context import admin
from cli.models import STATUSES, CheckResult, SiteSummary
from common.errors import StoreSafeError

app = typer.Typer()

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SEVERITY = {"ok": OK, "warning": WARNING}  # any other status, even an unknown one, is critical
WORST_FIRST = ("offline", "never", "failing", "stale", "warning")
MAX_NAMED = 10


def severity(status: str) -> int:
    """The plugin exit code one site's status calls for."""
    return SEVERITY.get(status, CRITICAL)


def _order(site: SiteSummary) -> tuple[int, int, str]:
    rank = WORST_FIRST.index(site.status) if site.status in WORST_FIRST else -1
    return (-severity(site.status), rank, site.site)


def evaluate(sites: list[SiteSummary], *, group: str | None = None) -> CheckResult:
    """Judge the fleet (or `group`): exit code, state and the one summary line."""
    if not sites:
        return unknown(f"no site in group {group!r}" if group else "no sites enrolled")
    counts = {status: 0 for status in STATUSES}
    for site in sites:
        counts[site.status] = counts.get(site.status, 0) + 1
    attention = sorted((s for s in sites if severity(s.status) != OK), key=_order)
    code = max((severity(s.status) for s in attention), default=OK)
    total = len(sites)
    if not attention:
        text = f"all {total} sites ok"
    else:
        named = ", ".join(f"{s.site} {s.status}" for s in attention[:MAX_NAMED])
        if len(attention) > MAX_NAMED:
            named += f", and {len(attention) - MAX_NAMED} more"
        verb = "needs" if len(attention) == 1 else "need"
        text = f"{len(attention)} of {total} sites {verb} attention: {named}"
    perfdata = " ".join(f"{status}={n}" for status, n in counts.items())
    return CheckResult(
        state=STATES[code],
        exit_code=code,
        summary=f"STORESAFE {STATES[code]} - {text} | sites={total} {perfdata}",
        counts=counts,
        attention=tuple(attention),
    )


def unknown(reason: str) -> CheckResult:
    """The result when the fleet could not be judged at all."""
    return CheckResult(state="UNKNOWN", exit_code=UNKNOWN, summary=f"STORESAFE UNKNOWN - {reason}")


class PluginCommand(TyperCommand):
    """A command whose bad arguments are UNKNOWN (3), as monitoring plugins report them."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except typer.TyperException as err:
            if getattr(err, "ctx", None) is None:
                raise
            output.print_check(unknown(err.format_message().strip()), as_json=False)
            raise typer.Exit(UNKNOWN) from None


@app.command("check", cls=PluginCommand)
def check(
    ctx: typer.Context,
    group: Annotated[
        str | None, typer.Option(help="Check only this group (one check per customer).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check the whole fleet for a monitoring system (Nagios, Icinga, Zabbix, ...).

    Prints one line and exits 0 when every site is ok, 1 when any site has a
    warning, 2 when any site is stale, failing, never backed up or offline,
    and 3 when the server cannot be asked, the arguments are wrong, or there
    is no site to judge (none enrolled, or none in the group).
    """
    try:
        group = values.name(group, "group") if group is not None else None
        result = evaluate(admin(ctx).list_sites(group=group), group=group)
    except StoreSafeError as err:
        result = unknown(err.message)
    output.print_check(result, as_json=as_json)
    raise typer.Exit(result.exit_code)

"""Renders the okta-ldap-hook dashboard's panels as PNG images, straight from Prometheus.

There is no Grafana server in CI, so this runs each panel's queries (query_range; stat panels as instant
queries) against a Prometheus and draws them with matplotlib, for the README and for reviews:

    python dashboards/render_panels.py --prometheus http://127.0.0.1:9090 --since 30m --out docs/images
    python dashboards/render_panels.py --prometheus http://prom:9090 \\
        --start 2026-01-01T10:00:00Z --end 2026-01-01T11:00:00Z --out /tmp/panels --job okta-ldap-hook

Writes one PNG per time-series / heatmap / state panel (`<panel id>-<slug>.png`), `00-overview.png` with the
stat panels, and `manifest.json` (file, title, number of series drawn). Exit status 1 if a query failed,
2 if Prometheus cannot be reached. Only the standard library and matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib
import queries

matplotlib.use("Agg")
import matplotlib.colors
import matplotlib.dates as mdates
import matplotlib.patches
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

COLORS = {  # Grafana's named colours used by the dashboard
    "green": "#56A64B",
    "orange": "#FF9830",
    "red": "#E02F44",
    "blue": "#3274D9",
    "yellow": "#F2CC0C",
}
LINE_STYLES = ("-", "--", ":", "-.")


class QueryError(RuntimeError):
    pass


@dataclass
class Series:
    labels: dict[str, str]
    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class Settings:
    prometheus: str
    start: float
    end: float
    step: float
    job: str
    namespace: str
    rate_interval: str
    timeout: float = 30.0


# ---------------------------------------------------------------------------------------------- Prometheus


def _get(settings: Settings, path: str, params: dict[str, str]) -> Any:
    url = settings.prometheus.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=settings.timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error body
        try:
            body = json.load(e)
        except ValueError:
            raise QueryError(f"{path}: HTTP {e.code}") from e
    except (urllib.error.URLError, TimeoutError) as e:
        raise QueryError(f"cannot reach {settings.prometheus}: {e}") from e
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType')}: {body.get('error')} (query {params.get('query')!r})")
    return body["data"]


def _value(text: str) -> float:
    return float(text)  # handles "NaN", "+Inf", "-Inf"


def query_range(settings: Settings, expr: str) -> list[Series]:
    data = _get(
        settings,
        "/api/v1/query_range",
        {
            "query": expr,
            "start": f"{settings.start:.3f}",
            "end": f"{settings.end:.3f}",
            "step": f"{settings.step:g}",
        },
    )
    found = []
    for item in data["result"]:
        s = Series(labels=item["metric"])
        for ts, val in item["values"]:
            s.times.append(datetime.fromtimestamp(float(ts), tz=UTC))
            s.values.append(_value(val))
        found.append(s)
    return found


def query_instant(settings: Settings, expr: str) -> list[Series]:
    data = _get(settings, "/api/v1/query", {"query": expr, "time": f"{settings.end:.3f}"})
    if data["resultType"] == "scalar":
        return [Series(labels={}, values=[_value(data["result"][1])])]
    return [Series(labels=item["metric"], values=[_value(item["value"][1])]) for item in data["result"]]


# ---------------------------------------------------------------------------------------------- formatting


def legend(fmt: str, labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    if not fmt or fmt == "__auto":
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}" if shown else "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def format_value(value: float, unit: str, decimals: int | None = None) -> str:
    if math.isnan(value):
        return "no data"
    if math.isinf(value):
        return "∞"
    if unit == "percentunit":
        d = 2 if decimals is None else decimals
        return f"{value * 100:.{d}f} %"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s"
    if unit == "bytes":
        for suffix, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.0f} B"
    suffix = {"reqps": " req/s", "ops": " ops/s", "opm": " /min"}.get(unit, "")
    if decimals is not None:
        return f"{value:.{decimals}f}{suffix}"
    return f"{value:.3g}{suffix}"


def axis_formatter(unit: str) -> FuncFormatter:
    def fmt(value: float, _pos: int) -> str:
        if unit == "percentunit":
            return f"{value * 100:.3g} %"
        if unit == "s":
            return f"{value * 1000:.0f} ms" if 0 < abs(value) < 1 else f"{value:g} s"
        if unit == "bytes":  # draw_timeseries plots bytes in MiB
            return f"{value:g} MiB"
        if abs(value) >= 1000:
            return f"{value / 1000:g}k"
        return f"{value:g}"

    return FuncFormatter(fmt)


def axis_label(unit: str) -> str:
    return {
        "reqps": "requests / s",
        "ops": "operations / s",
        "opm": "per minute",
        "bytes": "memory",
        "s": "seconds",
        "percentunit": "share",
    }.get(unit, "")


def threshold_color(value: float, panel: dict[str, Any]) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    color = "blue"
    for step in steps:
        if step["value"] is None or (not math.isnan(value) and value >= step["value"]):
            color = step["color"]
    return COLORS.get(color, color)


def mapped_text(value: float, panel: dict[str, Any]) -> str | None:
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        if mapping.get("type") == "value" and not math.isnan(value):
            hit = mapping["options"].get(f"{value:g}")
            if hit:
                return str(hit["text"])
    return None


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# ---------------------------------------------------------------------------------------------- drawing


def _frame(title: str, settings: Settings, width: float = 11, height: float = 4.2) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    span = f"{_utc(settings.start)} to {_utc(settings.end)} UTC"
    ax.set_title(title, loc="left", fontsize=13, fontweight="bold", pad=10)
    ax.set_title(span, loc="right", fontsize=8, color="#666666", pad=10)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(datetime.fromtimestamp(settings.start, tz=UTC), datetime.fromtimestamp(settings.end, tz=UTC))
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    return fig, ax


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#999999")


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)


def draw_timeseries(panel: dict[str, Any], settings: Settings, path: Path) -> int:
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    results = []
    for t in panel["targets"]:
        found = query_range(settings, expand(t["expr"], settings))
        results.append((t, sorted(found, key=lambda s: sorted(s.labels.items()))))
    drawn = sum(len(found) for _, found in results)
    # Targets that split the same label sets (p50/p95/p99 per route): one colour per label set, one line
    # style per target. Otherwise one colour per series.
    label_sets = [[tuple(sorted(s.labels.items())) for s in found] for _, found in results]
    paired = len(results) > 1 and any(label_sets[0]) and all(ls == label_sets[0] for ls in label_sets)
    colours = len(label_sets[0]) if paired else drawn
    palette = plt.get_cmap("tab10" if colours <= 10 else "tab20").colors
    legend_below = drawn > 12
    scale = 1 / 2**20 if unit == "bytes" else 1.0  # MiB give round axis ticks
    fig, ax = _frame(panel["title"], settings, height=4.2 + (0.2 * math.ceil(drawn / 4) if legend_below else 0))
    k = 0
    for i, (t, found) in enumerate(results):
        for j, s in enumerate(found):
            ax.plot(
                s.times,
                [v * scale for v in s.values],
                linewidth=1.4,
                color=palette[(j if paired else k) % len(palette)],
                linestyle=LINE_STYLES[i % len(LINE_STYLES)] if paired else "-",
                label=legend(t.get("legendFormat", ""), s.labels),
            )
            k += 1
    custom = defaults.get("custom", {})
    if custom.get("thresholdsStyle", {}).get("mode", "off") != "off":
        for step in defaults.get("thresholds", {}).get("steps", []):
            if step["value"] is not None:
                ax.axhline(
                    step["value"],
                    color=COLORS.get(step["color"], step["color"]),
                    linestyle="--",
                    linewidth=1.2,
                    label=f"threshold {format_value(step['value'], unit)}",
                )
    bottom = defaults.get("min")
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
        # Headroom above the highest point, like Grafana (autoscale only pads by the data's range).
        peak = max((v * scale for _, found in results for s in found for v in s.values if math.isfinite(v)), default=0)
        if peak > 0 and ax.get_ylim()[1] < peak * 1.1:
            ax.set_ylim(top=peak * 1.1)
    soft_max = custom.get("axisSoftMax")
    if soft_max is not None and ax.get_ylim()[1] < soft_max:
        ax.set_ylim(top=soft_max)
    if drawn == 0:
        _no_data(ax)
    ax.yaxis.set_major_formatter(axis_formatter(unit))
    ax.set_ylabel(axis_label(unit))
    if ax.get_legend_handles_labels()[0]:
        if legend_below:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=4, frameon=False)
        else:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)
    return drawn


def _le(labels: dict[str, str]) -> float:
    return float(labels.get("le", "nan"))


def draw_heatmap(panel: dict[str, Any], settings: Settings, path: Path) -> int:
    fig, ax = _frame(panel["title"], settings)
    series = sorted(query_range(settings, expand(panel["targets"][0]["expr"], settings)), key=lambda s: _le(s.labels))
    if not series:
        _no_data(ax)
        _save(fig, path)
        return 0
    times = sorted({t for s in series for t in s.times})
    index = {t: i for i, t in enumerate(times)}
    cumulative = [[0.0] * len(times) for _ in series]
    for row, s in enumerate(series):
        for t, v in zip(s.times, s.values, strict=True):
            cumulative[row][index[t]] = 0.0 if math.isnan(v) else v
    # Prometheus buckets are cumulative: the count of bucket i is le_i minus le_(i-1).
    counts = [
        [max(cumulative[r][c] - (cumulative[r - 1][c] if r else 0.0), 0.0) for c in range(len(times))]
        for r in range(len(series))
    ]
    labels = []
    for s in series:
        le = _le(s.labels)
        labels.append("+Inf" if math.isinf(le) else format_value(le, "s"))
    x_edges = [*times, times[-1] + timedelta(seconds=settings.step)]
    mesh = ax.pcolormesh(
        mdates.date2num(x_edges),
        list(range(len(series) + 1)),
        counts,
        cmap="Oranges",
        shading="flat",
        norm=matplotlib.colors.PowerNorm(0.5),
    )
    ax.set_yticks([i + 0.5 for i in range(len(series))], labels, fontsize=7)
    ax.set_ylabel("latency bucket (upper bound)")
    ax.grid(False)
    fig.colorbar(mesh, ax=ax, label="calls per interval", pad=0.01)
    _save(fig, path)
    return len(series)


def draw_state_timeline(panel: dict[str, Any], settings: Settings, path: Path) -> int:
    t = panel["targets"][0]
    series = query_range(settings, expand(t["expr"], settings))
    fig, ax = _frame(panel["title"], settings, height=max(2.2, 1.2 + 0.6 * len(series)))
    if not series:
        _no_data(ax)
    width = settings.step / 86400  # matplotlib dates are days
    names = []
    for row, s in enumerate(series):
        names.append(legend(t.get("legendFormat", ""), s.labels))
        for when, value in zip(s.times, s.values, strict=True):
            if math.isnan(value):
                continue
            ax.broken_barh(
                [(mdates.date2num(when), width)],
                (row + 0.1, 0.8),
                color=threshold_color(value, panel),
                linewidth=0,
            )
    ax.set_yticks([i + 0.5 for i in range(len(series))], names, fontsize=8)
    ax.set_ylim(0, max(len(series), 1))
    ax.grid(False)
    handles = [
        matplotlib.patches.Patch(color=COLORS["green"], label="up"),
        matplotlib.patches.Patch(color=COLORS["red"], label="down"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)
    return len(series)


def draw_overview(stats: Sequence[dict[str, Any]], settings: Settings, path: Path) -> int:
    """The stat panels as coloured tiles, values at the end of the time range."""
    cols = min(4, max(len(stats), 1))
    rows = math.ceil(len(stats) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.0 * rows + 0.5), dpi=100, squeeze=False)
    fig.suptitle(f"okta-ldap-hook at {_utc(settings.end)} UTC", x=0.01, ha="left", fontsize=13, fontweight="bold")
    drawn = 0
    for ax, panel in zip([a for row in axes for a in row], stats, strict=False):
        defaults = panel["fieldConfig"]["defaults"]
        unit, decimals = defaults.get("unit", "short"), defaults.get("decimals")
        t = panel["targets"][0]
        results = query_instant(settings, expand(t["expr"], settings))
        drawn += len(results)
        if not results:
            lines, color = ["no data"], "#999999"
        elif len(results) == 1 and not defaults.get("mappings"):
            value = results[0].values[0]
            lines, color = [format_value(value, unit, decimals)], threshold_color(value, panel)
        else:  # one line per series, e.g. one per LDAP server
            lines = []
            worst = math.inf
            for s in sorted(results, key=lambda r: legend(t.get("legendFormat", ""), r.labels)):
                value = s.values[0]
                worst = min(worst, value)
                text = mapped_text(value, panel) or format_value(value, unit, decimals)
                lines.append(f"{legend(t.get('legendFormat', ''), s.labels)}: {text}")
            color = threshold_color(worst, panel)
        ax.set_facecolor(color)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.text(
            0.05,
            0.9,
            textwrap.fill(panel["title"], 30),
            transform=ax.transAxes,
            fontsize=8.5,
            color="white",
            va="top",
            fontweight="bold",
            wrap=True,
        )
        # Fit the longest line into the tile (bold DejaVu Sans is about 0.65 em per character).
        width_pt = ax.get_window_extent().width * 72 / fig.dpi
        size = min(20 if len(lines) == 1 else 12, 0.9 * width_pt / (0.65 * max(len(line) for line in lines)))
        ax.text(
            0.5,
            0.38,
            "\n".join(lines),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=size,
            color="white",
            fontweight="bold",
        )
    for ax in [a for row in axes for a in row][len(stats) :]:
        ax.axis("off")
    _save(fig, path)
    return drawn


# ---------------------------------------------------------------------------------------------- driver


def expand(expr: str, settings: Settings) -> str:
    return queries.expand(
        expr,
        job=settings.job,
        namespace=settings.namespace,
        rate_interval=settings.rate_interval,
        interval=f"{settings.step:g}s",
        range_=f"{int(settings.end - settings.start)}s",
    )


def render(
    settings: Settings, out: Path, dashboard: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Draws every panel into `out`. Returns the manifest and the errors (one per failed panel)."""
    dashboard = dashboard if dashboard is not None else queries.load_dashboard()
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    errors: list[str] = []
    panels = list(queries.iter_panels(dashboard))
    stats = [p for p in panels if p.get("type") == "stat"]
    jobs: list[tuple[str, str, Any]] = []
    if stats:
        jobs.append(("00-overview.png", "Overview (stat panels)", lambda path: draw_overview(stats, settings, path)))
    drawers = {"timeseries": draw_timeseries, "heatmap": draw_heatmap, "state-timeline": draw_state_timeline}
    for p in panels:
        if p.get("type") in drawers:
            draw = drawers[p["type"]]
            jobs.append(
                (
                    f"{p['id']:02d}-{slug(p['title'])}.png",
                    p["title"],
                    lambda path, p=p, draw=draw: draw(p, settings, path),
                )
            )
    for name, title, job in jobs:
        try:
            count = job(out / name)
        except QueryError as e:
            plt.close("all")
            errors.append(f"{title}: {e}")
            continue
        manifest.append({"file": name, "title": title, "series": count})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest, errors


def parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 6h, 2d)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--since", type=parse_duration, help="time range ending now, e.g. 30m, 6h (default 1h)")
    when.add_argument("--start", type=parse_time, help="unix seconds or ISO 8601, e.g. 2026-01-01T10:00:00Z")
    parser.add_argument("--end", type=parse_time, help="unix seconds or ISO 8601 (default: now)")
    parser.add_argument("--step", type=parse_duration, help="query step (default: range / 240, at least 1s)")
    parser.add_argument(
        "--scrape-interval",
        type=parse_duration,
        default=15.0,
        help="the job's scrape interval, for $__rate_interval (default 15s)",
    )
    parser.add_argument("--job", default=queries.JOB, help="regex for the $job variable (default okta-ldap-hook)")
    parser.add_argument("--namespace", default=".*", help="regex for the $namespace variable (default .*)")
    parser.add_argument("--dashboard", type=Path, default=queries.DASHBOARD_PATH)
    args = parser.parse_args(argv)

    end = args.end if args.end is not None else time.time()
    start = args.start if args.start is not None else end - (args.since or 3600.0)
    if start >= end:
        parser.error("the start of the range must be before its end")
    step = args.step or max(1.0, round((end - start) / 240))
    # Grafana's $__rate_interval: max(4 x scrape interval, step + scrape interval)
    rate_interval = f"{max(4 * args.scrape_interval, step + args.scrape_interval):g}s"
    settings = Settings(
        prometheus=args.prometheus,
        start=start,
        end=end,
        step=step,
        job=args.job,
        namespace=args.namespace,
        rate_interval=rate_interval,
    )
    try:
        _get(settings, "/api/v1/status/buildinfo", {})
    except QueryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest, errors = render(settings, args.out, queries.load_dashboard(args.dashboard))
    for item in manifest:
        print(f"{args.out / item['file']}: {item['series']} series  ({item['title']})")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

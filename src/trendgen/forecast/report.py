"""`report.html` of a forecast run: the backtest table (models x metrics), each shown series' history with its
forecast and interval, the largest risers and fallers with their tests."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from trendgen.html_report import figure_png, img_tag, page

_METRICS = ("mase", "mae", "smape", "wape", "coverage")


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def backtest_table(backtest: dict[str, Any], level: float) -> str:
    """The per-model backtest scores as an HTML table, the chosen model highlighted."""
    chosen = backtest.get("chosen")
    head = "".join(f"<th>{m if m != 'coverage' else f'coverage ({level:g}%)'}</th>" for m in _METRICS)
    rows = []
    scored = sorted(backtest["scores"].items(), key=lambda kv: _or_inf(kv[1]["mase"]))
    for model, score in scored:
        cells = "".join(f"<td>{_cell(score[m])}</td>" for m in _METRICS)
        mark = " class='target'" if model == chosen else ""
        name = f"{html.escape(model)}{' (forecasts)' if model == chosen else ''}"
        rows.append(f"<tr{mark}><td>{name}</td>{cells}</tr>")
    return (
        f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"
        f"<p class='muted'>{len(backtest['cutoffs'])} origins (history lengths {backtest['cutoffs']}), "
        f"{backtest['horizon']} periods ahead, {backtest['step']} apart; seasonal MASE scaled by the "
        "in-sample seasonal naive error; coverage out of sample (each origin's interval calibrated on the "
        "others; none with one origin).</p>"
    )


def series_chart(
    dates: list[str], values: np.ndarray, forecast: dict[str, Any], name: str, label: str
) -> bytes:
    """One series' history with its forecast and interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    past = np.asarray(dates, dtype="datetime64[D]")
    ahead = np.asarray(forecast["dates"], dtype="datetime64[D]")
    ax.plot(past, values, color="#444", lw=1, label="history")
    ax.fill_between(ahead, forecast["lo"], forecast["hi"], color="tab:blue", alpha=0.25, label="interval")
    ax.plot(ahead, forecast["mean"], color="tab:blue", lw=1.5, label="forecast")
    ax.set_title(f"{name}: {label}", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.margins(x=0.01)
    return figure_png(fig)


def _risers_table(labels: dict[str, dict[str, Any]], sign: int, top: int = 10) -> str:
    moving = [(n, g) for n, g in labels.items() if g["label"] == ("emerging" if sign > 0 else "fading")]
    moving.sort(key=lambda ng: -sign * ng[1]["slope"])
    if not moving:
        return "<p class='muted'>none</p>"
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{g['slope']:+.4f}</td><td>{g['statistic']:.2f}</td>"
        f"<td>{g['p']:.2g}</td><td>{g['q']:.2g}</td></tr>"
        for n, g in moving[:top]
    )
    head = "<tr><th>series</th><th>slope / period</th><th>statistic</th><th>p</th><th>q</th></tr>"
    return f"<table>{head}{rows}</table>"


def render(
    record: dict[str, Any], dates: list[str], values: np.ndarray, names: list[str], shown: list[str]
) -> str:
    """The whole report page for a forecast run (`record`: forecast.json's content)."""
    esc = html.escape
    tests = record["growth_tests"]
    parts = [
        "<h1>trendgen forecast</h1>",
        f"<p>{len(names)} series, {len(dates)} periods ({esc(record['unit'])}ly, {esc(dates[0])} to "
        f"{esc(dates[-1])}); forecast {record['horizon']} periods ahead by <b>{esc(record['model'])}</b>, "
        f"{record['level']:g}% intervals ({esc(record['interval_method'])}); season length "
        f"{record['season_length']}.</p>",
    ]
    parts += [f"<p class='muted'>{esc(note)}</p>" for note in record["notes"]]
    if record.get("backtest"):
        parts += ["<h2>Backtest</h2>", backtest_table(record["backtest"], record["level"])]
    parts.append("<h2>Forecasts</h2>")
    index = {n: i for i, n in enumerate(names)}
    for name in shown:
        label = record["labels"][name]
        text = f"{label['label']} (slope {label['slope']:+.4f}/period, q {label['q']:.2g})"
        parts.append(
            img_tag(series_chart(dates, values[index[name]], record["forecasts"][name], name, text), name)
        )
    parts += [
        f"<h2>Largest risers</h2><p>{tests['count']} growth tests over the last {tests['window']} periods, "
        f"labels at a false-discovery rate of {tests['fdr']:g} (Benjamini-Hochberg): {tests['emerging']} "
        f"emerging, {tests['fading']} fading.</p>",
        _risers_table(record["labels"], +1),
        "<h2>Largest fallers</h2>",
        _risers_table(record["labels"], -1),
    ]
    return page("trendgen forecast report", "\n".join(parts))
